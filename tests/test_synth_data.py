"""Synthetic training data (``data.source: template_synth``): domain-randomised T1w made from label maps, the
realisations of a run, and the pool sampler that feeds training.

Small grids throughout (phantom anatomies at 4.8 mm, coarse acquisitions, hand-made label maps), so each test
takes seconds and none needs the templates (template heads: tests/test_template_head.py)."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import SimpleITK as sitk

from MedGANTranslateLib.errors import MedGANError
from MedGANTranslateLib.template_head_labels import TEETH
from MedGANTranslateLib.training import train
from MedGANTranslateLib.training.config import complete_config
from MedGANTranslateLib.training.loop import LOSS_LOG, card_template
from MedGANTranslateLib.training.synth import (SYNTH_DEFAULTS, T1W_BOUNDS, Acquisition, SynthSampler,
                                               random_field_of_view, realisation_rng, realise, synthesize_t1w)

from test_training import tiny_config

COARSE = {"in_plane_mm": [4.0, 5.0], "iso_mm": [4.0, 6.0], "slice_mm": [6.0, 12.0]}  # tiny scans of tiny heads


def synth_config(steps: int = 4, **synth) -> dict:
    """The training tests' tiny config on synthetic data: phantom anatomies only (no templates needed)."""
    cfg = tiny_config("pix2pix", steps=steps)
    settings = dict(COARSE, phantom_seeds=[100, 101], phantom_share=1.0, pool=2, patches_per_volume=3,
                    describe_cases=2)
    settings.update(synth)
    cfg["data"].update({"source": "template_synth", "train_seeds": [1000], "synth": settings})
    return cfg


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("synth_cache")


def blocks(spacing=1.0) -> sitk.Image:
    """A 1 mm label map of 12 mm cubes of several labels inside a block of white matter, in air."""
    labels = np.zeros((48, 48, 48), np.uint8)
    labels[6:42, 6:42, 6:42] = 6
    for i, label in enumerate((1, 2, 3, 4, 5, 12, 9, TEETH)):
        z, y = divmod(i, 3)
        labels[8 + 12 * z:20 + 12 * z, 8 + 12 * y:20 + 12 * y, 18:30] = label if z < 3 else 6
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing((spacing,) * 3)
    return image


def plain(spacing, fwhm=None, noise=0.0, **changes) -> Acquisition:
    """An acquisition without bias, gamma, noise or scaling, means at the middle of the T1w bounds."""
    means = np.array([np.mean(b[0]) for b in T1W_BOUNDS], np.float32)
    fields = dict(means=means, stds=np.zeros(len(T1W_BOUNDS), np.float32), spacing=np.asarray(spacing, float),
                  blur_fwhm_mm=np.asarray(fwhm if fwhm is not None else spacing, float), phase=np.zeros(3),
                  bias_coefficient=0.0, bias_seed=0, gamma=1.0, gamma_seed=0, noise_std=noise, rician=True,
                  noise_seed=0, scale=1.0, integer=False, deface=None, description="test")
    fields.update(changes)
    return Acquisition(**fields)


# ---------------------------------------------------------------------------------------------- config


def test_config_fills_the_synthesis_defaults_and_refuses_what_it_cannot_make():
    cfg = complete_config(synth_config())
    assert cfg["data"]["synth"]["pool"] == 2 and cfg["data"]["synth"]["gamma"] == SYNTH_DEFAULTS["gamma"]
    assert "synth" not in complete_config(tiny_config())["data"], "phantom runs keep their settings unchanged"
    bad = synth_config()
    bad["data"]["target"] = "pet"
    with pytest.raises(MedGANError, match="data.target: ct"):
        complete_config(bad)
    bad = synth_config(phantom_seeds=[])
    with pytest.raises(MedGANError, match="phantom_seeds"):
        complete_config(bad)
    bad = synth_config()
    bad["data"]["source"] = "real"
    with pytest.raises(MedGANError, match="data.source"):
        complete_config(bad)
    bad = synth_config()
    bad["validation"] = {"seeds": [101]}
    with pytest.raises(MedGANError, match="overlap"):
        complete_config(bad)
    for share, phantom_share in ((1.5, 1.0), (0.5, 0.0)):
        with pytest.raises(MedGANError, match="phantom_own_scan_share"):
            complete_config(synth_config(phantom_own_scan_share=share, phantom_share=phantom_share))


# ------------------------------------------------------------------------------------------- synthesis


def test_thick_slices_are_blurred_and_sampled_along_their_axis_only():
    labels = np.zeros((40, 40, 40), np.uint8)
    labels[20:] = 6  # white matter above z = 20 mm, air below
    image = sitk.GetImageFromArray(labels)
    scan = synthesize_t1w(image, plain((1.0, 1.0, 5.0), phase=np.array([0.0, 0.0, 0.6])), np.random.default_rng(0))
    assert scan.GetSpacing() == (1.0, 1.0, 5.0)
    assert scan.GetSize() == (40, 40, 8), "slice centres only where the label map is"
    assert scan.GetOrigin() == pytest.approx((0.0, 0.0, 0.6 * 4.0)), "first slice at the drawn phase"
    assert scan.GetOrigin()[2] + 5.0 * 7 <= 39.0
    values = sitk.GetArrayFromImage(scan)
    profile = values[:, 20, 20]
    assert np.all(np.diff(profile) >= -1e-6) and profile[0] < 0.01 and profile[-1] > 0.99
    z = scan.GetOrigin()[2] + 5.0 * np.arange(8)
    partial = (profile > 0.02) & (profile < 0.98)
    assert partial.any() and np.all(np.abs(z[partial] - 19.5) < 6.0), "partial volume within a slice of the edge"
    assert np.ptp(values[5, 5:35, 5:35]) < 1e-5, "no blur in-plane"
    fine = sitk.GetArrayFromImage(synthesize_t1w(image, plain((1.0, 1.0, 1.0)), np.random.default_rng(0)))
    assert np.sum((fine[:, 20, 20] > 0.02) & (fine[:, 20, 20] < 0.98)) <= 3, "a 1 mm scan keeps the edge sharp"


def test_contrast_is_drawn_per_label_within_t1w_bounds():
    rng = np.random.default_rng(1)
    draws = [Acquisition.draw(rng, SYNTH_DEFAULTS) for _ in range(200)]
    means = np.array([a.means for a in draws])
    for label, ((low, high), _) in enumerate(T1W_BOUNDS):
        assert means[:, label].min() >= low and means[:, label].max() <= high
    assert np.all(means[:, 6] > means[:, 5]) and np.all(means[:, 5] > means[:, 4]), "WM > GM > CSF always"
    assert np.all(means[:, 1] > means[:, 2]) and np.all(means[:, 12] > means[:, 9]), "fat bright, bone and air dark"
    assert (means[:, 3] > means[:, 12]).any() and (means[:, 3] < means[:, 12]).any(), "marrow vs muscle varies"
    assert (means[:, 1] > 1.0).any() and (means[:, 1] < 1.0).any(), "fat brighter or darker than white matter"
    kinds = {a.description.split(" mm")[0].split(" ")[0] + " " + a.description.split(" ")[1] for a in draws}
    assert any(k.startswith("3D") for k in kinds) and {"2D axial", "2D coronal", "2D sagittal"} <= kinds
    slices = np.array([a.spacing.max() for a in draws])
    assert slices.min() < 1.5 and slices.max() > 5.0
    assert 0.1 < np.mean([a.deface is not None for a in draws]) < 0.25
    assert np.ptp([a.bias_coefficient for a in draws]) > 0.08 and np.ptp([a.gamma for a in draws]) > 0.5


def test_scans_differ_in_contrast_bias_and_noise_from_draw_to_draw():
    image = blocks()
    rng = np.random.default_rng(3)
    synth = dict(SYNTH_DEFAULTS, thick_slice_probability=0.0, iso_mm=[1.0, 1.0], deface_probability=0.0)
    ratios, spreads, noise = [], [], []
    for _ in range(6):
        acq = Acquisition.draw(rng, synth)
        values = sitk.GetArrayFromImage(synthesize_t1w(image, acq, rng)) / acq.scale
        wm, gm, fat = (np.median(values[z, y, 20:28]) for z, y in ((38, 38), (12 + 12, 12 + 12), (12, 12)))
        ratios.append((gm / wm, fat / wm))
        spreads.append(values[6:42, 6:42, 6:42][values[6:42, 6:42, 6:42] > 0].std())
        noise.append(values[:4, :4, :4].mean())
    ratios = np.array(ratios)
    assert np.ptp(ratios[:, 0]) > 0.1 and np.ptp(ratios[:, 1]) > 0.2
    assert np.ptp(noise) > 0.003, "the air's noise floor changes with the noise level"
    assert len(set(np.round(spreads, 4))) == 6


def test_defacing_zeroes_the_face_in_front_of_and_below_the_eyes():
    labels = np.full((40, 40, 40), 12, np.uint8)
    labels[20:24, 8:12, 10:14] = 8  # eyes at z 21.5, y 9.5
    image = sitk.GetImageFromArray(labels)
    scan = sitk.GetArrayFromImage(synthesize_t1w(image, plain((1, 1, 1), deface=(4.0, 2.0), noise=0.02),
                                                 np.random.default_rng(0)))
    assert np.all(scan[:23, :13] == 0) and np.all(scan[24:, :, :] > 0) and np.all(scan[:, 14:] > 0)


# ------------------------------------------------------------------------------------------ realisations


def test_realisations_are_a_function_of_seed_and_index_and_the_ct_matches_the_labels(cache):
    data = complete_config(synth_config())["data"]
    a, b, c = realise(3, 7, data, cache), realise(3, 7, data, cache), realise(4, 7, data, cache)
    for x, y in ((a.mr, b.mr), (a.ct, b.ct), (a.labels, b.labels)):
        assert np.array_equal(sitk.GetArrayViewFromImage(x), sitk.GetArrayViewFromImage(y))
    assert a.acquisition.description == b.acquisition.description != c.acquisition.description
    assert a.ct.GetSize() == a.labels.GetSize() and a.ct.GetOrigin() == a.labels.GetOrigin()
    mr = sitk.GetArrayViewFromImage(a.mr)
    assert np.isfinite(mr).all() and mr.min() >= 0 and mr.max() > 0
    labels, ct = sitk.GetArrayViewFromImage(a.labels), sitk.GetArrayViewFromImage(a.ct)
    assert np.median(ct[labels == 0]) < -900 and np.median(ct[labels == 2]) > 400  # 4.8 mm: partial volume
    assert -100 < np.median(ct[labels == 6]) < 100
    mr_extent = np.asarray(a.mr.GetOrigin()) + np.asarray(a.mr.GetSpacing()) * (np.asarray(a.mr.GetSize()) - 1)
    labels_extent = np.asarray(a.labels.GetOrigin()) + np.asarray(a.labels.GetSpacing()) * (np.asarray(a.labels.GetSize()) - 1)
    assert np.all(np.asarray(a.mr.GetOrigin()) >= np.asarray(a.labels.GetOrigin()) - 1e-6)
    assert np.all(mr_extent <= labels_extent + 1e-6), "the scan lies inside its label map"


def test_a_phantom_realisation_may_keep_the_phantoms_own_t1w_cut_to_its_field_of_view(cache):
    """phantom_own_scan_share: the phantom's simulated scanner joins the random ones; without it (the default) no
    extra random draw is made, so existing recipes realise exactly what they did."""
    from MedGANTranslateLib.training.data import load_phantom

    own = complete_config(synth_config(phantom_own_scan_share=1.0))["data"]
    mixed = complete_config(synth_config(phantom_own_scan_share=0.5))["data"]
    never = complete_config(synth_config())["data"]
    a = realise(3, 7, own, cache)
    assert a.acquisition is None and a.description == "its own T1w"
    phantom_t1 = load_phantom(int(a.anatomy.split()[1]), own["phantom"], cache)["t1"]
    index = phantom_t1.TransformPhysicalPointToIndex(a.mr.GetOrigin())
    size = a.mr.GetSize()
    expected = phantom_t1[index[0]:index[0] + size[0], index[1]:index[1] + size[1], index[2]:index[2] + size[2]]
    assert np.array_equal(sitk.GetArrayViewFromImage(a.mr), sitk.GetArrayViewFromImage(expected))
    assert a.mr.GetSize() == a.ct.GetSize() == a.labels.GetSize() and a.mr.GetOrigin() == a.ct.GetOrigin()
    kinds = {realise(i, 7, mixed, cache).acquisition is None for i in range(12)}
    assert kinds == {True, False}, "a share of one half gives both kinds"
    plain = realise(4, 7, never, cache)
    rng = realisation_rng(7, 4)  # the draws as they were before the option: anatomy, field of view, scan
    rng.random()
    seed = never["synth"]["phantom_seeds"][int(rng.integers(len(never["synth"]["phantom_seeds"])))]
    random_field_of_view(load_phantom(seed, never["phantom"], cache)["labels"], rng, never["synth"])
    assert Acquisition.draw(rng, never["synth"]).description == plain.description


def test_sampler_replaces_spent_realisations_and_resumes_exactly(cache):
    cfg = complete_config(synth_config(pool=2, patches_per_volume=3))
    card = card_template(cfg)
    first = SynthSampler(cfg, card, cache)
    rng = np.random.default_rng(0)
    for _ in range(4):
        first.paired(rng, 2)
    assert first.next_index > 2, "realisations beyond the first pool were made"
    assert all(s["served"] <= 3 for s in first.slots)
    state, rng_state = copy.deepcopy(first.state_dict()), copy.deepcopy(rng.bit_generator.state)
    expected = [first.paired(rng, 2) for _ in range(3)]
    second = SynthSampler(cfg, card, cache)
    second.load_state_dict(state)
    rng.bit_generator.state = rng_state
    for x, y in expected:
        x2, y2 = second.paired(rng, 2)
        assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert x.shape == (2, 1, 16, 16, 16) and np.abs(x).max() <= 1.0 + 1e-6 and np.abs(y).max() <= 1.0 + 1e-6


def test_training_on_synthetic_data_runs_resumes_exactly_and_describes_its_inputs(tmp_path, cache):
    full = train(synth_config(steps=6), tmp_path / "full", cache_dir=cache)
    rows = [json.loads(line) for line in (tmp_path / "full" / LOSS_LOG).read_text().splitlines()]

    class Crash(Exception):
        pass

    def crash(event):
        if event.done >= 5:
            raise Crash()

    with pytest.raises(Crash):
        train(synth_config(steps=6), tmp_path / "part", cache_dir=cache, progress=crash)
    train(synth_config(steps=6), tmp_path / "part", cache_dir=cache)
    resumed = [json.loads(line) for line in (tmp_path / "part" / LOSS_LOG).read_text().splitlines()]
    drop = lambda rs: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rs]  # noqa: E731
    assert drop(resumed) == drop(rows)
    inputs = full.data["training_inputs"]
    assert inputs["cases"] == 2 and "template_synth" in inputs["source"]
    assert full.data["training"]["config"]["data"]["synth"]["phantom_share"] == 1.0


def test_the_phantom_recipe_still_loads_and_trains_the_bundled_network():
    """train_phantoms.yaml (v1.6.0's recipe, which needs no shared data: benchmarks/gpu_kit.sh times training with
    it) trains the bundled model's network on the same grid, normalisation and output mapping."""
    from pathlib import Path

    from MedGANTranslateLib.training.config import load_config

    folder = Path(__file__).resolve().parents[1] / "models" / "mr-t1-to-ct-pix2pix"
    phantoms, bundled = load_config(folder / "train_phantoms.yaml"), load_config(folder / "train.yaml")
    assert "source" not in phantoms["data"] and bundled["data"]["source"] == "template_synth"
    for key in ("generator", "discriminator", "losses", "cpu_bfloat16"):
        assert phantoms[key] == bundled[key], key
    for key in ("id", "inputs", "output", "preprocessing", "inference", "postprocessing", "display"):
        assert phantoms["card"][key] == bundled["card"][key], key
    assert phantoms["card"]["version"] != bundled["card"]["version"]


def test_the_bundled_recipe_fine_tunes_stage_one_with_real_scanner_bias_fields():
    """train.yaml (stage 2, the bundled weights' recipe) starts from train_stage1.yaml's weights: the same network,
    card settings and phantoms, a subset of its template heads, a learning rate that starts below where stage 1's
    began, bias fields as strong as the real scans' (stage 1's reach a log spread of ~0.18, the real T1w 0.24-0.66),
    and no selection, so the last step's weights are published."""
    from pathlib import Path

    from MedGANTranslateLib.training.config import load_config

    folder = Path(__file__).resolve().parents[1] / "models" / "mr-t1-to-ct-pix2pix"
    first, second = load_config(folder / "train_stage1.yaml"), load_config(folder / "train.yaml")
    assert second["init_weights"] and "init_weights" not in first
    for key in ("generator", "discriminator", "losses", "cpu_bfloat16"):
        assert second[key] == first[key], key
    for key in ("id", "inputs", "output", "preprocessing", "inference", "postprocessing", "display", "version"):
        assert second["card"][key] == first["card"][key], key
    assert set(second["data"]["train_seeds"]) < set(first["data"]["train_seeds"])
    assert second["data"]["synth"]["phantom_seeds"] == first["data"]["synth"]["phantom_seeds"]
    assert second["data"]["synth"]["phantom_share"] > first["data"]["synth"]["phantom_share"]
    assert second["optim"]["lr"] < first["optim"]["lr"] and second["optim"]["steps"] < first["optim"]["steps"]
    assert second["data"]["synth"]["bias_coefficient"][1] >= 4 * first["data"]["synth"]["bias_coefficient"][1]
    assert first["selection"]["seeds"] and not second["selection"]["seeds"]
