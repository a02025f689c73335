"""The T1c model on real native / post-contrast pairs (``benchmarks/t1c_real.py``, issue 23 item 4).

The metrics on arrays with known answers, the pieces training shares with the yardstick (NAWM estimator, phantom
scale, patch share, fine-tuning start), and on the real pairs (``../shared/real-data``, skipped without them):
the alignment finding, the scaling, and the shipped model measured as the benchmark measures it."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from MedGANTranslateLib.registry import resolve_model
from MedGANTranslateLib.run_options import RunOptions
from MedGANTranslateLib.training.real_pairs import (ALIGN_TOLERANCE_MM, PAIRS, PHANTOM_NAWM_T1, brain_mask,
                                                     nawm_mask, nawm_value, prepare_pair, with_share)
from MedGANTranslateLib.white_matter import three_class_thresholds

from real_data import REAL_DATA, real_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import t1c_real  # noqa: E402
from t1c_real import deep_region, fit_linear, t1c_scores, top_by_depth, trained_pairs  # noqa: E402


def toy_pair(seed: int = 0):
    """A 'brain' of white matter (1.0) and grey matter (0.7) with an enhancing shell (T1 0.6 -> T1c 1.8) inside."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices((40, 48, 44))
    r = np.sqrt((z - 20) ** 2 + (y - 24) ** 2 + (x - 22) ** 2)
    brain = r < 18
    t1 = np.where(brain, np.where(x < 22, 1.0, 0.7), 0.0) + rng.normal(0, 0.01, brain.shape) * brain
    t1c = t1.copy()
    shell = (np.abs(np.sqrt((z - 20) ** 2 + (y - 24) ** 2 + (x - 28) ** 2) - 4) < 1.0) & brain
    t1[shell], t1c[shell] = 0.6, 1.8
    return t1, t1c, brain


def test_scores_no_enhancement_perfect_and_half():
    t1, t1c, brain = toy_pair()
    none = t1c_scores(t1, t1c, t1, brain, ssim=False)
    perfect = t1c_scores(t1, t1c, t1c, brain, ssim=False)
    half = t1c_scores(t1, t1c, t1 + 0.5 * (t1c - t1), brain, ssim=False)
    assert none["E_true"] == pytest.approx(1.2, abs=0.05) and none["E_pred"] == 0 and none["captured"] == 0
    assert none["r_E"] is None  # a constant prediction has no correlation
    assert none["ratio_true"] == pytest.approx(3.0, rel=0.05) and none["ratio_pred"] == pytest.approx(1.0)
    assert perfect["mae"] == 0 and perfect["captured"] == pytest.approx(1) and perfect["r_E"] == pytest.approx(1)
    assert perfect["mae_E_top"] == 0
    assert half["captured"] == pytest.approx(0.5) and half["r_E"] == pytest.approx(1)
    assert half["mae_E_top"] == pytest.approx(0.5 * half["E_true"])
    assert none["top_voxels"] >= 0.01 * brain.sum()


def test_top_voxels_by_depth_say_where_the_enhancement_lies_and_what_each_prediction_adds_there():
    t1, t1c, brain = toy_pair()
    edge = brain & ~deep_region(brain, 2.0)
    t1c = np.where(edge & (np.indices(brain.shape)[0] < 20), 0.5 + 3.0, t1c)  # half the rim of the brain enhances most
    t1 = np.where(edge & (np.indices(brain.shape)[0] < 20), 0.5, t1)
    rows = top_by_depth(t1, t1c, {"none": t1, "perfect": t1c}, brain)
    assert [r["band_mm"] for r in rows] == [[0.0, 3.0]], "every top voxel at the edge: the shell's are not in the top"
    assert rows[0]["share"] == 1.0 and rows[0]["t1"] == pytest.approx(0.5)
    assert rows[0]["e_true"] == pytest.approx(3.0) and rows[0]["e_pred"] == {"none": 0.0, "perfect": pytest.approx(3.0)}
    t1, t1c, brain = toy_pair()
    deep = top_by_depth(t1, t1c, {"none": t1}, brain)
    assert sum(r["share"] for r in deep) == pytest.approx(1.0) and all(r["band_mm"][0] >= 3.0 for r in deep), \
        "the shell lies 7 or more voxels inside"


def test_deep_region_and_scores_there():
    t1, t1c, brain = toy_pair()
    deep = deep_region(brain, 5.0)
    assert deep.sum() < brain.sum() and not (deep & ~brain).any()
    from scipy import ndimage
    assert ndimage.distance_transform_edt(brain)[deep].min() >= 5.0
    s = t1c_scores(t1, t1c, t1c, brain, ssim=False, deep=deep)
    assert s["captured_deep"] == pytest.approx(1) and s["E_true_deep"] == pytest.approx(1.2, abs=0.05)


def test_ssim_of_a_perfect_prediction_is_one():
    t1, t1c, brain = toy_pair()
    assert t1c_scores(t1, t1c, t1c, brain)["ssim"] == pytest.approx(1.0)


def test_global_linear_fit_recovers_a_known_map():
    t1, _, brain = toy_pair()
    assert fit_linear(t1, 0.4 * t1 + 0.6, brain) == pytest.approx((0.4, 0.6), abs=1e-6)


def test_three_classes_split_three_tissues_and_nawm_is_the_brightest():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(200, 20, 3000), rng.normal(500, 25, 5000), rng.normal(800, 25, 5000)])
    low, high = three_class_thresholds(values)
    assert 250 < low < 450 and 550 < high < 750
    t1, t1c, brain = toy_pair()
    nawm = nawm_mask(t1 * 800, brain)
    assert nawm.any() and np.all(t1[nawm] > 0.85)
    assert nawm_value(t1 * 800, nawm) == pytest.approx(800, rel=0.02)


def test_brain_mask_keeps_the_largest_piece_filled_and_eroded():
    t1 = np.zeros((30, 30, 30))
    t1[5:25, 5:25, 5:25] = 1.0
    t1[12:15, 12:15, 12:15] = 0.0  # a hole
    t1[0, 0, 0] = 1.0  # a speck
    mask = brain_mask(t1, t1, erosion_mm=2.0)
    assert not mask[0, 0, 0] and mask[13, 13, 13] and mask.sum() == 16 ** 3
    assert mask[7:23, 7:23, 7:23].all() and not mask[6, 15, 15]


def test_with_share_repeats_the_real_volumes():
    phantoms, real = list(range(12)), ["a"]
    mixed = with_share(phantoms, real, 0.5)
    assert mixed.count("a") == 12 and len(mixed) == 24
    assert with_share(phantoms, real, None) == phantoms + real
    with pytest.raises(ValueError):
        with_share(phantoms, real, 1.0)


def test_phantom_white_matter_sits_at_the_constant():
    """PHANTOM_NAWM_T1 is what the estimator gives on a training phantom's brain (seed 100: 820 a.u.)."""
    from scipy import ndimage

    from MedGANTranslateLib.phantom import make_phantom

    p = make_phantom(100)
    labels, t1 = sitk.GetArrayFromImage(p.labels), sitk.GetArrayFromImage(p.t1)
    brain = ndimage.binary_erosion(np.isin(labels, [4, 5, 6, 7, 10, 11]), iterations=2)
    assert nawm_value(t1, nawm_mask(t1, brain)) == pytest.approx(PHANTOM_NAWM_T1, rel=0.05)


def test_fine_tuning_starts_from_the_shipped_weights():
    import torch

    from MedGANTranslateLib.training.init_weights import load_initial_weights
    from MedGANTranslateLib.training.recipes import _generator

    card = resolve_model("mr-t1-to-t1c-pix2pix")
    net = _generator(card.data["architecture"], torch.device("cpu"))
    digest = load_initial_weights(net, "models/mr-t1-to-t1c-pix2pix/weights.safetensors")
    assert digest == card.data["weights"]["sha256"]


def test_a_model_is_never_measured_on_a_pair_it_was_trained_on():
    class Card:
        data = {"training": {"config": {"data": {"real_pairs": {"pairs": ["open_ms_patient07"]}}}}}

    assert trained_pairs(Card()) == ["open_ms_patient07"]
    assert trained_pairs(resolve_model("mr-t1-to-t1c-pix2pix")) == []

    class Refuser:
        def translate(self, images):
            raise AssertionError("measured on its own training pair")

    real_file(PAIRS["open_ms_patient07"].t1)
    m = t1c_real.measure_pair("open_ms_patient07", REAL_DATA, [("fold", Card(), Refuser())], None)
    assert [label for label, _ in m.rows if label == "fold"] == []


def test_real_pairs_alignment_and_scale():
    for name in PAIRS:
        real_file(PAIRS[name].t1)
        real_file(PAIRS[name].t1c)
    ms = prepare_pair("open_ms_patient07")
    assert ms.alignment["max_shift_mm"] < ALIGN_TOLERANCE_MM and not ms.alignment["resampled"]
    brats = prepare_pair("brats_gli_00001")
    assert brats.alignment["max_shift_mm"] > ALIGN_TOLERANCE_MM and brats.alignment["resampled"]
    for pair in (ms, brats):
        t1, t1c = sitk.GetArrayFromImage(pair.t1), sitk.GetArrayFromImage(pair.t1c)
        assert nawm_value(t1, pair.nawm) == pytest.approx(PHANTOM_NAWM_T1, rel=1e-4)
        assert nawm_value(t1c, pair.nawm) == pytest.approx(PHANTOM_NAWM_T1, rel=1e-4)
        assert pair.nawm.sum() > 100_000 and pair.brain.sum() > 900_000


def test_shipped_model_on_the_open_ms_pair_as_the_benchmark_measures_it():
    """The before-numbers of docs/models.md (On real T1/T1c pairs): the shipped model predicts almost none of the
    real enhancement."""
    from MedGANTranslateLib.pipeline import Translator

    real_file(PAIRS["open_ms_patient07"].t1)
    card = resolve_model("mr-t1-to-t1c-pix2pix")
    models = [("shipped", card, Translator(card, RunOptions(device="cpu", threads=1)))]
    m = t1c_real.measure_pair("open_ms_patient07", REAL_DATA, models, None)
    rows = dict(m.rows)
    shipped, identity = rows["shipped"], rows["baseline: T1c = T1 (no enhancement)"]
    assert identity["ratio_true"] > 3.0 and identity["E_true"] > 1.0  # the real scan enhances strongly there
    assert shipped["captured"] < 0.2
    assert np.isfinite(shipped["mae"]) and 0 < shipped["ssim"] < 1


RECIPES = {"brats_gli_00001": "train_real_pairs_heldout_brats.yaml",
           "open_ms_patient07": "train_real_pairs_heldout_open_ms.yaml"}


@pytest.mark.parametrize("held_out", sorted(RECIPES))
def test_fold_recipes_train_on_the_other_pair_only(held_out):
    from MedGANTranslateLib.training import load_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "models" / "mr-t1-to-t1c-pix2pix" / RECIPES[held_out])
    pairs = cfg["data"]["real_pairs"]["pairs"]
    assert held_out not in pairs and len(pairs) == 1 and pairs[0] in PAIRS
    assert cfg["init_weights"] == "models/mr-t1-to-t1c-pix2pix/weights.safetensors"
    assert cfg["card"]["version"] != resolve_model("mr-t1-to-t1c-pix2pix").version
    assert "Research use only" in cfg["card"]["intended_use"]


def test_a_real_pair_becomes_a_training_volume_on_the_network_scale():
    from MedGANTranslateLib.training import load_config
    from MedGANTranslateLib.training.loop import card_template
    from MedGANTranslateLib.training.real_pairs import real_pair_volumes

    real_file(PAIRS["open_ms_patient07"].t1)
    cfg = load_config(Path(__file__).resolve().parents[1] / "models" / "mr-t1-to-t1c-pix2pix" / RECIPES["brats_gli_00001"])
    card = card_template(cfg)
    (volume,) = real_pair_volumes({"pairs": ["open_ms_patient07"]}, card, ["t1"], "t1c", 0.2)
    pair = prepare_pair("open_ms_patient07", check=False)
    assert volume.inputs.shape[1:] == volume.target.shape == volume.mask.shape
    assert volume.mask.sum() >= pair.brain.sum() * 0.9  # the pipeline's body mask of a brain-only scan: the brain
    # the network grid is the scan reoriented to LPS: the same tissue voxels, times the engine's white-matter factor
    # (its 20 mm deep estimate against the pair's whole-brain one: within 4 %), on the card's 0-1600 -> [-1, 1] scale
    from MedGANTranslateLib.training.data import card_network_inputs

    scale = card_network_inputs([pair.t1], card)[2].input_scale
    assert scale == pytest.approx(1.0, abs=0.04) and scale != 1.0
    tissue = sitk.GetArrayFromImage(pair.t1) * scale
    tissue = tissue[tissue > 40.0]
    network = volume.inputs[0][volume.inputs[0] > 40.0 / 800.0 - 1.0]
    assert np.median(network) == pytest.approx(np.median(np.minimum(tissue, 1600.0)) / 800.0 - 1.0, abs=0.002)
    target = volume.target[volume.target > 40.0 / 800.0 - 1.0]
    assert np.median(target) > np.median(network) - 0.1  # the T1c on the same scale: white matter stays put
    assert 0 < volume.focus_index.size < volume.body_index.size


def test_the_card_sections_the_benchmark_writes_validate_and_carry_the_models_row():
    import json

    from MedGANTranslateLib.card import validate_card_data

    t1, t1c, brain = toy_pair()
    m = t1c_real.Measured("toy", t1, t1c, brain, brain, {}, brain, False)
    m.rows = [("baseline: T1c = T1 (no enhancement)", t1c_scores(t1, t1c, t1, brain)), ("model", t1c_scores(t1, t1c, t1c, brain))]
    heads = [{"head": "toy_head", "rows": {"model": {"white_matter_ratio": 0.96, "enhancing_ml": 1.5, "warnings": []}}}]
    data = json.loads((resolve_model("mr-t1-to-t1c-pix2pix").folder / "model.json").read_text())
    data["validation"]["real_pairs"] = t1c_real.pairs_section([m], "model")
    data["validation"]["real_heads_enhancement"] = t1c_real.heads_section(heads, "model")
    validate_card_data(data)
    (pair,) = data["validation"]["real_pairs"]["pairs"]
    assert pair["pair"] == "toy" and pair["mae"] == 0 and pair["captured"] == 1.0
    assert pair["baselines"]["T1c = T1 (no enhancement)"]["captured"] == 0
    assert data["validation"]["real_heads_enhancement"]["scans"] == [{"scan": "toy_head", **heads[0]["rows"]["model"]}]
