"""N4 bias-field correction asked for per run (``RunOptions(n4=True)``, ``--n4``, the Slicer module's box), for a
model whose card does not apply it: the MR input is corrected before normalisation and the output says so."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from test_cli import run_cli
from volumes import head_volume, write
from MedGANTranslateLib.errors import MedGANError
from MedGANTranslateLib.pipeline import Translator
from MedGANTranslateLib.run_options import RunOptions


def biased_head() -> sitk.Image:
    """The test head with a smooth multiplicative field: twice as bright on one side as on the other."""
    image = head_volume(size=(40, 44, 36), seed=2)
    values = sitk.GetArrayFromImage(image)
    x = np.linspace(-1.0, 1.0, values.shape[2])[None, None, :]
    biased = sitk.GetImageFromArray((values * np.exp(0.35 * x)).astype(np.float32))
    biased.CopyInformation(image)
    return biased


def spread_across_the_head(volume: np.ndarray, mask: np.ndarray) -> float:
    """Difference of the mean normalised intensity between the head's two halves along x."""
    half = mask.shape[2] // 2
    left, right = mask.copy(), mask.copy()
    left[..., half:] = False
    right[..., :half] = False
    return abs(float(volume[0][right].mean() - volume[0][left].mean()))


def test_n4_flattens_the_input_and_is_recorded(make_model):
    card = make_model()
    assert not card.preprocessing.get("n4")
    image = biased_head()
    plain, corrected = Translator(card, RunOptions(device="cpu")), Translator(card, RunOptions(device="cpu", n4=True))
    volume, mask, _ = plain.prepare([image])
    volume_n4, mask_n4, _ = corrected.prepare([image])
    assert np.array_equal(mask, mask_n4)
    assert spread_across_the_head(volume_n4, mask) < 0.5 * spread_across_the_head(volume, mask)
    assert corrected.translate([image]).provenance["MedGANTranslate.BiasCorrection"] == "N4"
    assert "MedGANTranslate.BiasCorrection" not in plain.translate([image]).provenance


def test_n4_is_refused_for_a_model_without_mr_input(make_model):
    def ct_input(data):
        data["inputs"][0]["modality"] = "CT"
        data["inputs"][0].pop("sequence", None)

    with pytest.raises(MedGANError, match="no MR input.*--n4"):
        Translator(make_model("ct-in", edit=ct_input), RunOptions(device="cpu", n4=True))


def test_cli_n4_writes_the_tag(make_model, tmp_path):
    mr = write(biased_head(), tmp_path / "t1.nrrd")
    out = tmp_path / "sct.nrrd"
    proc = run_cli("run", "-m", make_model().folder, "-i", mr, "-o", out, "--n4", "--progress", "none")
    assert proc.returncode == 0, proc.stderr
    assert sitk.ReadImage(str(out)).GetMetaData("MedGANTranslate.BiasCorrection") == "N4"
