"""Uncertainty without a reference (``--uncertainty``): the plan of test-time variants, the spread being zero
where the variants agree and positive where they differ, the synthetic image being their mean, shifted windows
really shifting, the map on the input's grid, provenance, the command line's file and refusals, ensembles and
Monte-Carlo dropout."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch import nn

import cli_in_process
from test_cli import run_cli
from volumes import head_volume, rotation, write
from MedGANTranslateLib import file_translation
from MedGANTranslateLib.card import load_card, read_card_summary
from MedGANTranslateLib.errors import CardError, MedGANError, WeightsError
from MedGANTranslateLib.inference import run_inference, run_windows
from MedGANTranslateLib.inference_settings import InferenceSettings
from MedGANTranslateLib.model_folder import save_model_folder, tiny_card_data
from MedGANTranslateLib.networks import build_network
from MedGANTranslateLib.output_mapping import map_output, normalised_background_output
from MedGANTranslateLib.pipeline import Translator
from MedGANTranslateLib.run_options import RunOptions
from MedGANTranslateLib.window_planning import plan_body_windows
from MedGANTranslateLib.uncertainty import (
    RunningMoments,
    card_variation,
    describe,
    Variant,
    has_dropout,
    plan_variants,
    shift_base,
)

CPU = torch.device("cpu")


def _mirrored(data):
    data["inference"]["test_time_mirror"] = ["left-right"]


def _array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image).astype(np.float64)


# ------------------------------------------------------------------------------------------------ the plan


def test_the_default_plan_is_the_scan_its_mirror_image_and_two_shifts():
    variants = plan_variants(None, ("left-right",), (16, 16, 16), dropout=False)
    assert [(v.mirror, v.shift) for v in variants] == [
        ((), (0, 0, 0)), (("left-right",), (0, 0, 0)), ((), (5, 5, 5)), ((), (11, 11, 11))]
    assert describe(variants) == "std over 4 variants: as is, mirror left-right, 2 window-grid shifts (5 and 11 voxels)"
    two = plan_variants(2, ("left-right", "superior-inferior"), (16, 16, 16), dropout=False)
    assert [v.mirror for v in two] == [(), ("left-right",)]
    six = plan_variants(6, ("left-right", "superior-inferior"), (16, 24, 16), dropout=False)
    assert [v.mirror for v in six[:4]] == [(), ("left-right",), ("superior-inferior",),
                                          ("left-right", "superior-inferior")]
    assert [v.shift for v in six[4:]] == [(5, 8, 5), (11, 16, 11)], "a third and two thirds of the window, per axis"


def test_a_fully_convolutional_networks_shifts_are_fractions_of_its_size_multiple():
    assert shift_base((48, 64, 48), 16, fully_convolutional=True) == (16, 16, 16)
    assert shift_base((48, 64, 48), 16, fully_convolutional=False) == (48, 64, 48)
    shifts = [v.shift for v in plan_variants(None, ("left-right",), (16, 16, 16), False)[2:]]
    assert all(0 < s[0] < 16 for s in shifts), "a whole multiple would repeat the unshifted output"
    for name, passes in (("mr-t1-to-ct-pix2pix", 4), ("mr-t1-to-ct-cyclegan", 4)):
        data = json.loads((Path(__file__).parents[1] / "models" / name / "model.json").read_text())
        assert card_variation(data)[0] == passes


def test_plans_that_cannot_give_a_spread_are_refused_by_name():
    with pytest.raises(MedGANError, match="nothing to vary"):
        plan_variants(None, (), (1, 1, 1), dropout=False, model="Model 'flat'")
    with pytest.raises(MedGANError, match="at least 2 variants"):
        plan_variants(1, ("left-right",), (16, 16, 16), dropout=False)
    with pytest.raises(MedGANError, match="give --uncertainty-variants 4 or fewer"):
        plan_variants(5, ("left-right",), (3, 3, 3), dropout=False)
    assert len(plan_variants(1, (), (1, 1, 1), dropout=False, members=2)) == 2, "two ensemble members vary"
    draws = plan_variants(3, (), (1, 1, 1), dropout=True)
    assert [(v.shift, v.draw) for v in draws] == [((0, 0, 0), 0), ((0, 0, 0), 1), ((0, 0, 0), 2)]
    assert describe(draws, dropout=True) == ("std over 3 variants: as is (3 draws), each with a new Monte-Carlo "
                                             "dropout draw")


def test_running_moments_are_the_mean_and_standard_deviation():
    rng = np.random.default_rng(1)
    values = rng.normal(size=(5, 4, 3, 2)).astype(np.float32)
    moments = RunningMoments()
    for v in values:
        moments.add(v.copy())
    np.testing.assert_allclose(moments.mean, values.mean(0), atol=1e-6)
    np.testing.assert_allclose(moments.std(), values.std(0), atol=1e-6)


# ------------------------------------------------------------------------------------------- the variants


class PartlyPositional(nn.Module):
    """Voxel by voxel where the input is at most 0.3 (every variant gives the same there); above it adds a ramp
    across the window, which moves with the window grid and turns round with a mirror image."""

    def forward(self, x):
        ramp = torch.linspace(-1.0, 1.0, x.shape[-1]).view(1, 1, 1, 1, -1)
        return torch.tanh(x[:, :1]) * 0.5 + 0.3 * ramp * (x[:, :1] > 0.3)


def test_the_map_is_zero_where_the_variants_agree_and_positive_where_they_differ(make_model):
    card = make_model(edit=_mirrored)
    image = head_volume(size=(30, 28, 22))
    translator = Translator(card, RunOptions(device="cpu", uncertainty=True))
    translator.inference_network = PartlyPositional()
    result = translator.translate([image])
    volume, mask, grid = translator.prepare([image])
    assert grid.same_as_input
    spread = _array(result.uncertainty)
    agree, differ = mask & (volume[0] < 0.25), mask & (volume[0] > 0.35)
    assert agree.sum() > 1000 and differ.sum() > 1000
    assert spread[agree].max() < 0.05, "all variants give the same HU there"
    assert (spread[differ] > 1.0).mean() > 0.99 and spread[differ].mean() > 20
    assert spread[~mask].max() == 0


def _manual_variants(translator, volume, mask, shifts):
    """The variants computed by hand with the plain inference step: as is, mirror left-right, and the scan moved
    by each shift (padded at its start), translated, and moved back."""
    settings, net = translator.settings, translator.inference_network
    background = normalised_background_output(translator.card.postprocessing)

    def run(v, m):
        return run_inference(net, np.ascontiguousarray(v), settings, CPU, mask=np.ascontiguousarray(m),
                             background_out=background)[0]

    out = [run(volume, mask), run(volume[..., ::-1], mask[..., ::-1])[..., ::-1]]
    for s in shifts:
        pad = [(s[0], 0), (s[1], 0), (s[2], 0)]
        moved = np.pad(volume, [(0, 0)] + pad, constant_values=settings.padding_value)
        result = run(moved, np.pad(mask, pad))
        out.append(result[s[0]:, s[1]:, s[2]:])
    return out


def test_the_synthetic_image_is_the_mean_of_the_variants_and_the_shifts_really_shift(make_model):
    card = make_model(edit=_mirrored, output_modality="PET")  # float32 output: nothing rounded
    image = head_volume(size=(30, 28, 22), seed=2)
    translator = Translator(card, RunOptions(device="cpu", uncertainty=True))
    result = translator.translate([image])
    volume, mask, _ = translator.prepare([image])
    shifts = [v.shift for v in translator.uncertainty.variants if any(v.shift)]
    assert shifts == [(5, 5, 5), (11, 11, 11)]
    variants = _manual_variants(translator, volume, mask, shifts)
    for shifted in variants[2:]:
        assert np.abs(shifted - variants[0])[mask].mean() > 1e-3, "a shifted window grid changes the output"
    post = card.postprocessing
    mean = map_output(np.mean(variants, axis=0), post)
    std = np.std(variants, axis=0) * 10.0  # PET: 2 network units are 20 SUV
    np.testing.assert_allclose(_array(result.synthetic)[mask], mean[mask], atol=1e-4)
    np.testing.assert_allclose(_array(result.uncertainty)[mask], std[mask], atol=1e-4)
    assert _array(result.uncertainty)[mask].min() > 0
    plain = Translator(card, RunOptions(device="cpu")).translate([image])
    assert np.abs(_array(plain.synthetic) - _array(result.synthetic))[mask].max() > 1e-3


def test_a_shift_moves_a_fully_convolutional_networks_large_windows():
    settings = InferenceSettings(roi_size=(16, 16, 16), divisor=8, fully_convolutional=True)
    mask = np.zeros((40, 44, 36), bool)
    mask[8:30, 6:33, 5:29] = True
    plain = plan_body_windows(mask.shape, mask, settings)
    moved = plan_body_windows(mask.shape, mask, settings, (5, 3, 2))
    assert [b.start for b in moved.box] == [b.start - s for b, s in zip(plain.box, (5, 3, 2))]
    assert all(b.stop >= end for b, end in zip(moved.box, (30, 33, 29))), "the body stays covered"
    assert plain.roi_size == (24, 32, 24) and moved.roi_size == (32, 32, 32), \
        "grown by the divisor only where the body reaches past the moved box (not along y: 3 voxels to spare)"
    net = build_network({"type": "builtin", "name": "unet_generator",
                         "params": {"in_channels": 1, "out_channels": 1, "num_downs": 3, "ngf": 4, "norm": "batch"}})
    volume = np.random.default_rng(0).uniform(-1, 1, (1,) + mask.shape).astype(np.float32)
    same, _ = run_windows(net.eval(), volume, settings, CPU, mask)
    shifted, _ = run_windows(net, volume, replace(settings, grid_shift=(5, 3, 2)), CPU, mask)
    whole, _ = run_windows(net, volume, replace(settings, grid_shift=(8, 8, 8)), CPU, mask)
    assert shifted.shape == same.shape
    assert np.abs(shifted - same)[mask].mean() > 1e-4, "another phase of the downsampling grid"
    assert np.abs(whole - same)[mask].mean() < np.abs(shifted - same)[mask].mean()


def test_the_map_lies_on_the_inputs_grid_in_float32(make_model):
    image = head_volume(size=(26, 22, 14), spacing=(0.9, 1.1, 2.5), direction=rotation(0.2, -0.1, 0.4),
                        origin=(12.5, -30.0, 7.0))
    result = Translator(make_model(edit=_mirrored), RunOptions(device="cpu", uncertainty=True)).translate([image])
    u = result.uncertainty
    assert u.GetPixelID() == sitk.sitkFloat32
    assert u.GetSize() == image.GetSize()
    np.testing.assert_allclose(u.GetSpacing(), image.GetSpacing())
    np.testing.assert_allclose(u.GetOrigin(), image.GetOrigin())
    np.testing.assert_allclose(u.GetDirection(), image.GetDirection())
    values, body = _array(u), _array(result.body_mask) > 0
    assert values[~body].max() == 0 and values[body].mean() > 0


def test_provenance_records_the_variants_and_only_when_asked(make_model):
    card = make_model(edit=_mirrored)
    image = head_volume(size=(20, 22, 18))
    result = Translator(card, RunOptions(device="cpu", uncertainty=True, uncertainty_variants=3)).translate([image])
    assert result.provenance["MedGANTranslate.Uncertainty"] == (
        "std over 3 variants: as is, mirror left-right, 1 window-grid shift (8 voxels)")
    assert [label for label, _ in result.variant_seconds] == ["as is", "mirror left-right", "window grid moved 8 voxels"]
    assert all(t > 0 for _, t in result.variant_seconds)
    assert result.report.mirrored == () and "MedGANTranslate.TestTimeMirror" not in result.provenance
    plain = Translator(card, RunOptions(device="cpu")).translate([image])
    assert plain.uncertainty is None and "MedGANTranslate.Uncertainty" not in plain.provenance


def test_the_translator_refuses_mixed_up_requests(make_model):
    card = make_model(edit=_mirrored)
    with pytest.raises(MedGANError, match="Drop --tta"):
        Translator(card, RunOptions(device="cpu", uncertainty=True, tta=True))
    with pytest.raises(MedGANError, match="without asking for the uncertainty map"):
        Translator(card, RunOptions(device="cpu", uncertainty_variants=3))
    with pytest.raises(MedGANError, match="at least 2 variants"):
        Translator(make_model("plain"), RunOptions(device="cpu", uncertainty=True, uncertainty_variants=1))


# ------------------------------------------------------------------------------------------- ensembles, dropout


def _ensemble_model(tmp_path, members, name="ens"):
    """A tiny model whose card lists further members; each ``members`` entry is a seed (a weights file of the same
    architecture, written beside the card) or a dict as the card gives it."""
    data = tiny_card_data(model_id=name)
    torch.manual_seed(0)
    card = save_model_folder(tmp_path / name, data, network=build_network(data["architecture"]))
    entries = []
    for member in members:
        if isinstance(member, int):
            torch.manual_seed(member)
            other = save_model_folder(tmp_path / f"{name}-{member}", data, network=build_network(data["architecture"]))
            file = f"member{member}.safetensors"
            (card.folder / file).write_bytes(other.weights_path.read_bytes())
            entries.append({"file": file, "sha256": other.sha256})
        else:
            entries.append(member)
    raw = json.loads(card.path.read_text())
    raw["ensemble"] = entries
    card.path.write_text(json.dumps(raw))
    return load_card(card.folder)


def test_ensemble_members_are_averaged_and_spread(tmp_path):
    card = _ensemble_model(tmp_path, [1, 2])
    image = head_volume(size=(20, 22, 18))
    translator = Translator(card, RunOptions(device="cpu", uncertainty=True, uncertainty_variants=1))
    result = translator.translate([image])
    assert result.provenance["MedGANTranslate.Uncertainty"] == (
        "std over 3 variants: 3 ensemble members (model.safetensors, member1.safetensors, member2.safetensors) "
        "× (as is)")
    body = _array(result.body_mask) > 0
    assert _array(result.uncertainty)[body].mean() > 1.0, "different weights give different outputs"
    assert read_card_summary(card.folder).uncertainty_passes == 3 * 3, "3 members, each as is and 2 shifts"


def test_ensemble_members_that_cannot_be_used_are_refused_by_name(tmp_path, make_model):
    wrong = _ensemble_model(tmp_path, [{"file": "model.safetensors.bak", "sha256": "0" * 64}], name="bad-sha")
    (wrong.folder / "model.safetensors.bak").write_bytes(wrong.weights_path.read_bytes())
    with pytest.raises(WeightsError, match="do not match the card's SHA-256"):
        Translator(wrong, RunOptions(device="cpu", uncertainty=True))
    Translator(wrong, RunOptions(device="cpu"))  # the card's own weights alone still run without --uncertainty
    with pytest.raises(CardError, match="names both a model"):
        _ensemble_model(tmp_path, [{"model": "x", "file": "a", "sha256": "0" * 64}], name="both")
    with pytest.raises(CardError, match="needs 'file' and 'sha256'"):
        _ensemble_model(tmp_path, [{"file": "a.safetensors"}], name="no-sha")
    with pytest.raises(CardError, match="repeats the card's own weights"):
        _ensemble_model(tmp_path, [{"file": "model.safetensors", "sha256": "0" * 64}], name="self")
    other = make_model("pet", output_modality="PET")
    mixed = _ensemble_model(tmp_path, [{"model": str(other.folder)}], name="mixed")
    with pytest.raises(CardError, match=r"ensemble member 1 \('pet' v0.1.0\) cannot be averaged with it: .*output_mapping"):
        Translator(mixed, RunOptions(device="cpu", uncertainty=True))
    missing = _ensemble_model(tmp_path, [{"model": "no-such-model"}], name="missing")
    with pytest.raises(CardError, match="'no-such-model'\\) cannot be found"):
        Translator(missing, RunOptions(device="cpu", uncertainty=True))


def test_an_ensemble_member_may_be_another_model(tmp_path, make_model):
    other = make_model("sibling", seed=3)
    card = _ensemble_model(tmp_path, [{"model": "sibling"}], name="with-sibling")
    options = RunOptions(device="cpu", uncertainty=True, uncertainty_variants=1, models_dirs=[str(other.folder.parent)])
    result = Translator(card, options).translate([head_volume(size=(20, 22, 18))])
    assert "2 ensemble members (model.safetensors, sibling v0.1.0)" in result.provenance["MedGANTranslate.Uncertainty"]


def _dropout(data):
    data["architecture"] = {"type": "builtin", "name": "resnet_generator",
                            "params": {"in_channels": 1, "out_channels": 1, "ngf": 4, "n_blocks": 1,
                                       "norm": "instance", "use_dropout": True}}
    data["inference"]["divisible_by"] = 4


def test_a_network_with_dropout_gets_monte_carlo_draws(make_model):
    card = make_model("dropout", edit=_dropout)
    image = head_volume(size=(20, 22, 18))
    translator = Translator(card, RunOptions(device="cpu", uncertainty=True, uncertainty_variants=2))
    assert has_dropout(translator.network) and translator.uncertainty.dropout
    result = translator.translate([image])
    assert result.provenance["MedGANTranslate.Uncertainty"].endswith("each with a new Monte-Carlo dropout draw")
    again = translator.translate([image])
    np.testing.assert_array_equal(_array(result.uncertainty), _array(again.uncertainty))  # seeded draws
    translator.uncertainty.variants = [Variant(), Variant(draw=1)]  # the same scan, two draws
    drawn = translator.translate([image])
    body = _array(drawn.body_mask) > 0
    assert _array(drawn.uncertainty)[body].mean() > 1.0, "dropout is active in the variants"
    dropouts = [m for m in translator.inference_network.modules() if isinstance(m, nn.Dropout)]
    assert dropouts and not any(m.training for m in dropouts), "the plain path keeps the card's eval mode"
    assert not Translator(make_model("plain"), RunOptions(device="cpu", uncertainty=True)).uncertainty.dropout


# ------------------------------------------------------------------------------------------ the command line


def test_cli_writes_the_map_with_its_own_metadata(make_model, tmp_path):
    mr = write(head_volume(size=(20, 22, 18)), tmp_path / "t1.nrrd")
    out, unc = tmp_path / "sct.nrrd", tmp_path / "unc.nii.gz"
    proc = run_cli("run", "-m", make_model("mirrored", edit=_mirrored).folder, "-i", mr, "-o", out, "--uncertainty", unc,
                   "--uncertainty-variants", "3", "--progress", "json")
    assert proc.returncode == 0, proc.stderr
    done = [json.loads(line) for line in proc.stdout.splitlines() if json.loads(line).get("event") == "done"][0]
    assert done["outputs"]["uncertainty"] == str(unc)
    infer = [json.loads(line) for line in proc.stdout.splitlines() if '"stage": "infer"' in line]
    assert [e["done"] for e in infer] == sorted(e["done"] for e in infer) and infer[-1]["done"] == infer[-1]["total"]
    assert "variant 3 of 3 (window grid moved 8 voxels)" in " ".join(e["message"] for e in infer)
    image = sitk.ReadImage(str(unc))
    assert image.GetPixelID() == sitk.sitkFloat32 and image.GetSize() == (20, 22, 18)
    assert "UNCERTAINTY std HU" in image.GetMetaData("descrip")
    sidecar = json.loads((tmp_path / "unc.json").read_text())
    assert sidecar["MedGANTranslate.Kind"] == "uncertainty" and sidecar["MedGANTranslate.Unit"] == "HU"
    assert sidecar["MedGANTranslate.Uncertainty"] == "std over 3 variants: as is, mirror left-right, 1 window-grid shift (8 voxels)"
    synthetic = sitk.ReadImage(str(out))
    assert synthetic.GetMetaData("MedGANTranslate.Uncertainty") == sidecar["MedGANTranslate.Uncertainty"]
    assert not synthetic.HasMetaDataKey("MedGANTranslate.Kind")


@pytest.mark.parametrize("extra, message", [
    (["--uncertainty-variants", "3"], "without asking for the uncertainty map"),
    (["--uncertainty", "{tmp}/u.nrrd", "--tta"], "Drop --tta"),
    (["--uncertainty", "{tmp}/u.nrrd", "--uncertainty-variants", "1"], "at least 2 variants"),
    (["--uncertainty", "{tmp}/sct.nrrd"], "one file"),
    (["--uncertainty", "{tmp}/u.nrrd", "--uncertainty-variants", "0"], "must be a positive whole number"),
])
def test_cli_refuses_bad_combinations_writing_nothing(make_model, tmp_path, extra, message):
    mr = write(head_volume(size=(20, 22, 18)), tmp_path / "t1.nrrd")
    model = make_model("mirrored", edit=_mirrored).folder
    with cli_in_process.process_settings_kept():
        code, _, err = cli_in_process.run("run", "-m", model, "-i", mr, "-o", tmp_path / "sct.nrrd",
                                          *[a.format(tmp=tmp_path) for a in extra], "--progress", "none")
    assert code == 2 and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "t1.nrrd"]


def test_cli_writes_the_map_with_the_other_outputs_or_none_of_them(make_model, tmp_path, monkeypatch):
    mr = write(head_volume(size=(20, 22, 18)), tmp_path / "t1.nrrd")
    out = tmp_path / "sct.nrrd"
    out.write_bytes(b"an earlier result")
    original = file_translation.stage_image

    def failing(outputs, image, path, metadata, role="output", *args, **kwargs):
        if role == "uncertainty map":
            raise file_translation.MedGANError("disk full (simulated)")
        return original(outputs, image, path, metadata, role, *args, **kwargs)

    monkeypatch.setattr(file_translation, "stage_image", failing)
    with cli_in_process.process_settings_kept():
        code, _, err = cli_in_process.run("run", "-m", make_model("mirrored", edit=_mirrored).folder, "-i", mr, "-o", out,
                                          "--uncertainty", tmp_path / "u.nrrd", "--progress", "none")
    assert code == 2 and "disk full" in err, err
    assert out.read_bytes() == b"an earlier result" and not (tmp_path / "u.nrrd").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "sct.nrrd", "t1.nrrd"], "no staging left"


# ------------------------------------------------------------------------------------------ the evaluation


def _benchmarks():
    import sys

    folder = str(Path(__file__).resolve().parents[1] / "benchmarks")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    import uncertainty_eval

    return uncertainty_eval


def test_the_evaluation_scores_known_answers():
    scores = _benchmarks().uncertainty_scores
    error = np.arange(100, dtype=np.float32)
    perfect = scores(error.copy(), error, top=5.0)
    assert perfect["spearman"] == pytest.approx(1.0) and perfect["top_error_overlap"] == 1.0
    assert perfect["mae_top"] == pytest.approx(97.0) and perfect["mae_rest"] == pytest.approx(47.0)
    assert perfect["uncertainty_threshold"] == 95.0
    backwards = scores(-error, error, top=5.0)
    assert backwards["spearman"] == pytest.approx(-1.0) and backwards["top_error_overlap"] == 0.0
    assert backwards["mae_top"] == pytest.approx(2.0)


def test_the_rank_correlation_without_scipy_is_spearmans():
    evaluation = _benchmarks()
    rng = np.random.default_rng(4)
    a = rng.integers(0, 7, 300).astype(np.float32)  # many ties
    b = a + rng.normal(0, 3, 300).astype(np.float32)
    from scipy.stats import spearmanr

    fallback = float(np.corrcoef(evaluation._ranks(a), evaluation._ranks(b))[0, 1])
    assert fallback == pytest.approx(spearmanr(a, b).statistic, abs=1e-9)
    np.testing.assert_array_equal(evaluation._ranks(np.array([3.0, 1.0, 3.0, 2.0])), [2.5, 0.0, 2.5, 1.0])


def test_the_benchmark_times_each_variant(make_model, tmp_path, capsys):
    _benchmarks()  # puts benchmarks/ on the path
    import run_benchmark

    card = make_model("mirrored", edit=_mirrored)
    mr = write(head_volume(size=(20, 22, 18)), tmp_path / "t1.nrrd")
    run_benchmark.main(["child", "uncertainty", json.dumps({"model": str(card.folder), "inputs": [mr], "repeats": 1,
                                                             "threads": 1})])
    timing = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [v["variant"] for v in timing["variants"]] == ["as is", "mirror left-right", "window grid moved 5 voxels",
                                                          "window grid moved 11 voxels"]
    assert all(v["infer_s"] > 0 for v in timing["variants"]) and timing["plain_infer_s"] > 0
    assert timing["uncertainty_total_s"] > timing["plain_infer_s"]


def test_a_2d_networks_window_grid_moves_in_plane():
    from test_planar_inference import local_network, random_volume, settings

    net, volume = local_network(), random_volume(seed=3)
    small = settings(("axial",), roi=(8, 8), overlap=0.25)
    moved, _ = run_windows(net, volume, replace(small, grid_shift=(3, 3, 3)), CPU)
    padded = np.pad(volume, [(0, 0), (3, 0), (3, 0), (3, 0)], constant_values=small.padding_value)
    np.testing.assert_allclose(moved, run_windows(net, padded, small, CPU)[0][3:, 3:, 3:], atol=1e-6)
    plain, _ = run_windows(net, volume, small, CPU)
    assert np.abs(moved - plain).max() > 1e-3, "windows padded at other places"
    large = settings(("axial", "coronal"), roi=(8, 8), fully_convolutional=True, max_window_voxels=12 * 12,
                     window_context=2, divisor=4)
    shifted, report = run_windows(net, volume, replace(large, grid_shift=(1, 2, 2)), CPU)
    assert shifted.shape == volume.shape[1:] and report.planes == ("axial", "coronal")
    assert np.abs(shifted - run_windows(net, volume, large, CPU)[0]).max() > 1e-4
