"""Test-time mirroring (``--tta``): the axes come from the card in anatomical terms and are found on each scan's
own grid; the averaged output is mirror-symmetric in the way the model was trained to be."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from test_cli import run_cli
from volumes import head_volume, write
from MedGANTranslateLib.anatomical_axes import MIRROR_AXES, mirror_dims
from MedGANTranslateLib.card import load_schema
from MedGANTranslateLib.checkpoints import load_generator
from MedGANTranslateLib.errors import CardError, MedGANError
from MedGANTranslateLib.inference_settings import InferenceSettings
from MedGANTranslateLib.pipeline import Translator
from MedGANTranslateLib.run_options import RunOptions
from MedGANTranslateLib.sliding_window import run_sliding_window

IDENTITY = (1, 0, 0, 0, 1, 0, 0, 0, 1)
#: Index axis i runs along physical z (superior), j along y, k along x (left-right): a sagittal-like grid.
SAGITTAL = (0, 0, 1, 0, 1, 0, 1, 0, 0)


def _mirrored(data):
    data["inference"]["test_time_mirror"] = ["left-right"]


@pytest.mark.parametrize("direction, axes, expected", [
    (IDENTITY, ["left-right"], (2,)),
    ((-1, 0, 0, 0, -1, 0, 0, 0, 1), ["left-right"], (2,)),
    (SAGITTAL, ["left-right"], (0,)),
    (SAGITTAL, ["superior-inferior", "anterior-posterior"], (1, 2)),
    (tuple(np.array([[0.96, -0.28, 0], [0.28, 0.96, 0], [0, 0, 1]]).ravel()), ["anterior-posterior"], (1,)),
])
def test_anatomical_axes_are_found_on_the_scans_own_grid(direction, axes, expected):
    assert mirror_dims(direction, axes) == expected


def test_the_engine_knows_exactly_the_axis_names_the_card_schema_allows():
    allowed = load_schema()["properties"]["inference"]["properties"]["test_time_mirror"]["items"]["enum"]
    assert sorted(allowed) == sorted(MIRROR_AXES)


def test_an_unknown_axis_name_is_a_card_error():
    with pytest.raises(CardError, match="left-right"):
        mirror_dims(IDENTITY, ["sideways"])


def test_mirrored_input_gives_the_mirrored_output_only_with_tta(make_model):
    net = load_generator(make_model())
    vol = np.random.default_rng(3).uniform(-1, 1, size=(1, 16, 16, 24)).astype(np.float32)
    flipped = np.ascontiguousarray(vol[..., ::-1])
    settings = InferenceSettings(roi_size=(16, 16, 24), skip_background=False)
    cpu = torch.device("cpu")

    def run(v, mirror=()):
        return run_sliding_window(net, v, settings, cpu, mirror=mirror)

    plain, plain_flipped = run(vol)[0], run(flipped)[0]
    assert np.abs(plain_flipped[..., ::-1] - plain).mean() > 1e-3, "a random network is not mirror-symmetric"
    (tta, report), tta_flipped = run(vol, (2,)), run(flipped, (2,))[0]
    np.testing.assert_allclose(tta_flipped[..., ::-1], tta, atol=1e-5)
    assert report.mirrored == (2,)
    with torch.no_grad():
        x = torch.from_numpy(vol)[None]
        expected = (net(x) + net(x.flip(4)).flip(4)) / 2
    np.testing.assert_allclose(tta, expected[0, 0].numpy(), atol=1e-5)


def test_translator_mirrors_along_left_right_of_a_sagittal_scan_and_records_it(make_model):
    card = make_model(edit=_mirrored)
    image = head_volume(size=(20, 22, 18), direction=np.array(SAGITTAL, float).reshape(3, 3))
    result = Translator(card, RunOptions(device="cpu", tta=True)).translate([image])
    assert result.report.mirrored == (0,)
    assert result.provenance["MedGANTranslate.TestTimeMirror"] == "left-right"
    plain = Translator(card, RunOptions(device="cpu")).translate([image])
    assert plain.report.mirrored == () and "MedGANTranslate.TestTimeMirror" not in plain.provenance
    assert not np.array_equal(sitk.GetArrayFromImage(result.synthetic), sitk.GetArrayFromImage(plain.synthetic))


def test_tta_is_refused_for_a_model_trained_without_mirroring(make_model):
    with pytest.raises(MedGANError, match="no test-time mirror axes"):
        Translator(make_model(), RunOptions(device="cpu", tta=True))


def test_cli_tta_writes_the_tag_and_refuses_models_without_mirror_axes(make_model, tmp_path):
    mr = write(head_volume(size=(20, 22, 18)), tmp_path / "t1.nrrd")
    out = tmp_path / "sct.nrrd"
    proc = run_cli("run", "-m", make_model("mirrored", edit=_mirrored).folder, "-i", mr, "-o", out, "--tta",
                   "--progress", "none")
    assert proc.returncode == 0, proc.stderr
    assert sitk.ReadImage(str(out)).GetMetaData("MedGANTranslate.TestTimeMirror") == "left-right"
    refused = tmp_path / "refused.nrrd"
    proc = run_cli("run", "-m", make_model("plain").folder, "-i", mr, "-o", refused, "--tta", "--progress", "none")
    assert proc.returncode != 0 and "--tta" in proc.stderr and not refused.exists()
