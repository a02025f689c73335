"""The result does not depend on how the scan is stored: a card names the orientation its model was trained in,
and every scan is reoriented to it (permutations and flips, never interpolated) and back."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import SimpleITK as sitk

from MedGANTranslateLib.card import load_card
from MedGANTranslateLib.errors import CardError
from MedGANTranslateLib.pipeline import Translator
from MedGANTranslateLib.run_options import RunOptions

from volumes import head_volume, rotation

MODELS = __import__("pathlib").Path(__file__).resolve().parents[2] / "models"

#: All 48 ways to store a volume: each assignment of the three patient axes to the array's axes, each signed.
ORIENTATIONS = ["".join(letters) for axes in itertools.permutations([("L", "R"), ("P", "A"), ("S", "I")])
                for letters in itertools.product(*axes)]


def lps_values(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS"))


def test_the_same_head_stored_in_all_48_orientations_gives_the_same_synthetic_values(make_model):
    assert len(set(ORIENTATIONS)) == 48
    card = make_model(edit=lambda data: data["preprocessing"].update(orientation="LPS"), roi=(16, 16, 16))
    translator = Translator(card, RunOptions(device="cpu"))
    head = head_volume(size=(24, 28, 20), direction=rotation(0.05, -0.03, 0.02))  # slightly oblique, as scans are
    expected = lps_values(translator.translate([head]).synthetic)
    for code in ORIENTATIONS:
        stored = sitk.DICOMOrient(head, code)
        synthetic = translator.translate([stored]).synthetic
        assert synthetic.GetSize() == stored.GetSize() and synthetic.GetDirection() == stored.GetDirection()
        np.testing.assert_array_equal(lps_values(synthetic), expected, err_msg=f"stored as {code}")


def test_without_a_card_orientation_the_storage_order_changes_the_result(make_model):
    """Why the card must say it: the same random network on the same head stored two ways differs."""
    card = make_model(roi=(16, 16, 16))  # orientation null
    translator = Translator(card, RunOptions(device="cpu"))
    head = head_volume(size=(24, 28, 20))
    as_lps = lps_values(translator.translate([head]).synthetic)
    as_asl = lps_values(translator.translate([sitk.DICOMOrient(head, "ASL")]).synthetic)
    assert not np.array_equal(as_lps, as_asl)


@pytest.mark.parametrize("model_dir", sorted(p.name for p in MODELS.iterdir() if (p / "model.json").is_file()))
def test_every_bundled_card_names_the_orientation_its_phantoms_were_stored_in(model_dir):
    assert load_card(MODELS / model_dir).preprocessing["orientation"] == "LPS"


def test_a_card_that_does_not_say_its_orientation_is_refused(make_model):
    with pytest.raises(CardError, match="orientation"):
        make_model(edit=lambda data: data["preprocessing"].pop("orientation"))
