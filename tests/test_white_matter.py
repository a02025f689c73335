"""White-matter normalisation (``"method": "white_matter"``): a T1w on any intensity scale reaches the model on its
training scale, and with ``output_mapping.input_units`` the output comes back in the input's own units.

Known answers on a synthetic head (white matter under grey matter under a bright fat layer), the scale
equivariance of the whole pipeline on a real phantom through the bundled T1c model, training's target scaled
with the input, the card rule and the scan check, and the estimator on the real T1w scans and pairs in
``../shared/real-data`` (skipped without them)."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk

from MedGANTranslateLib.card import OUTPUT_SCALE_KEY, output_display, validate_card_data
from MedGANTranslateLib.errors import CardError, InputError
from MedGANTranslateLib.network_grid import NetworkGrid
from MedGANTranslateLib.normalisation import normalize
from MedGANTranslateLib.phantom import make_phantom
from MedGANTranslateLib.pipeline import Translator
from MedGANTranslateLib.registry import resolve_model
from MedGANTranslateLib.run_options import RunOptions
from MedGANTranslateLib.scan_checks import check_white_matter
from MedGANTranslateLib.training.data import prepare_volume
from MedGANTranslateLib.white_matter import DOUBTFUL_SPREAD, WhiteMatter, three_class_thresholds, white_matter

from real_data import REAL_DATA, real_file

MODEL = "mr-t1-to-t1c-pix2pix"


def synthetic_head(seed: int = 0):
    """A 1 mm ball of radius 60: ventricles (CSF, 150) inside 10 mm, white matter (800) to 35 mm, grey matter (500)
    to 50 mm, CSF to 52 mm, then fat (1200) to the skin, all with a little noise; returns (t1, body)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices((130, 130, 130))
    r = np.sqrt((z - 65.0) ** 2 + (y - 65.0) ** 2 + (x - 65.0) ** 2)
    body = r <= 60
    t1 = np.select([r < 10, r < 35, r < 50, r < 52, body], [150.0, 800.0, 500.0, 150.0, 1200.0], 0.0)
    t1 = (t1 + rng.normal(0, 15, t1.shape) * body).astype(np.float32)
    return t1, body


def test_white_matter_is_found_deep_inside_where_the_bright_fat_of_the_skin_is_left_out():
    t1, body = synthetic_head()
    found = white_matter(t1, body, (1.0, 1.0, 1.0), depth_mm=20)
    assert found.value == pytest.approx(800, rel=0.01) and found.spread < 0.1 and not found.doubtful
    at_skin = white_matter(t1, body, (1.0, 1.0, 1.0), depth_mm=0)
    assert at_skin.value > 1100  # the brightest class at the surface is the fat: why the depth exists


def test_the_estimate_scales_with_the_scan():
    t1, body = synthetic_head()
    a = white_matter(t1, body, (1.0, 1.0, 1.0))
    b = white_matter(t1 * 0.37, body, (1.0, 1.0, 1.0))
    assert b.value == pytest.approx(0.37 * a.value, rel=1e-5) and b.spread == pytest.approx(a.spread, abs=1e-5)
    assert three_class_thresholds(t1[body])[1] == pytest.approx(three_class_thresholds(t1[body] * 0.37)[1] / 0.37,
                                                                rel=1e-4)


def test_no_deep_voxels_or_no_positive_white_matter_is_an_input_error():
    t1, body = synthetic_head()
    with pytest.raises(InputError, match="mm inside its surface"):
        white_matter(t1, body, (1.0, 1.0, 1.0), depth_mm=70)
    with pytest.raises(InputError, match="T1-weighted"):
        white_matter(np.where(body, -t1, 0), body, (1.0, 1.0, 1.0))


def test_white_matter_normalisation_maps_the_scaled_range():
    spec = {"method": "white_matter", "reference": 810, "source_range": [0, 1600], "target_range": [-1, 1]}
    values = np.array([0.0, 405.0, 800.0, 2000.0], np.float32)
    out = normalize(values, spec, scale=2.0)  # 405 -> 810 (the reference) -> 0.0125; 800 -> 1600 -> 1
    np.testing.assert_allclose(out, [-1.0, 0.0125, 1.0, 1.0], atol=1e-6)


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(3)


def _scaled(image: sitk.Image, factor: float) -> sitk.Image:
    return sitk.Cast(image, sitk.sitkFloat32) * factor


def test_a_t1w_on_another_scale_gives_the_same_synthetic_t1c_in_its_own_units(phantom):
    """Half a scanner's gain in, half the synthetic T1c and half the enhancement map out, voxel for voxel."""
    translator = Translator(resolve_model(MODEL), RunOptions(device="cpu"))
    native = translator.translate([phantom.t1])
    halved = translator.translate([_scaled(phantom.t1, 0.45)])
    a, b = (sitk.GetArrayFromImage(r.synthetic) for r in (native, halved))
    assert float(np.abs(a).max()) > 900  # it predicted something bright (scalp fat, enhancement)
    # Equal up to float rounding of the scaled input, which a bfloat16 network turns into up to 0.4 % of a value:
    # within 0.5 % of the halved 0-1600 scale anywhere, and 0.1 a.u. on average (a fixed-scale card: hundreds).
    tolerance = 0.005 * 0.45 * 1600
    np.testing.assert_allclose(b, 0.45 * a, rtol=0, atol=tolerance)
    assert float(np.mean(np.abs(b - 0.45 * a))) < 0.1
    da, db = (sitk.GetArrayFromImage(r.difference) for r in (native, halved))
    np.testing.assert_allclose(db, 0.45 * da, rtol=0, atol=tolerance)
    assert "scaled by" in halved.provenance["MedGANTranslate.WhiteMatterReference"]
    scales = [float(r.provenance[OUTPUT_SCALE_KEY]) for r in (native, halved)]
    assert scales[1] == pytest.approx(0.45 * scales[0], rel=1e-5)


def test_the_display_preset_follows_the_outputs_units():
    card_display = {"window": 1200, "level": 600, "difference_window": 600, "colormap": "Grey"}
    assert output_display(card_display, {OUTPUT_SCALE_KEY: "0.5"}) == {"window": 600, "level": 300,
                                                                        "difference_window": 300, "colormap": "Grey"}
    assert output_display(card_display, {}) == card_display


def test_training_scales_the_target_with_its_input(phantom):
    """The network sees the same patch and the same target whatever the pair's common gain."""
    card = json.loads((resolve_model(MODEL).folder / "model.json").read_text())
    a = prepare_volume({"t1": phantom.t1, "t1c": phantom.t1c}, ["t1"], "t1c", card)
    b = prepare_volume({"t1": _scaled(phantom.t1, 3.0), "t1c": _scaled(phantom.t1c, 3.0)}, ["t1"], "t1c", card)
    np.testing.assert_allclose(b.inputs, a.inputs, atol=1e-5)
    np.testing.assert_allclose(b.target, a.target, atol=1e-5)


def test_output_in_input_units_needs_a_white_matter_normalised_first_input():
    data = json.loads((resolve_model(MODEL).folder / "model.json").read_text())
    validate_card_data(data)
    data["preprocessing"]["normalization"] = [{"method": "range", "source_range": [0, 1600], "target_range": [-1, 1]}]
    with pytest.raises(CardError, match="input_units"):
        validate_card_data(data)


def test_a_doubtful_white_matter_is_a_warning_with_its_numbers():
    spec = resolve_model(MODEL).inputs[0]
    grid = NetworkGrid((0.0,) * 3, (1.0,) * 3, (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0), True)
    measurements = {}
    clean = replace(grid, white_matter=WhiteMatter(500, 0.08, 9999))
    assert check_white_matter(spec, clean, measurements) is None and measurements["white_matter_spread"] == 0.08
    assert DOUBTFUL_SPREAD < 0.23
    warning = check_white_matter(spec, replace(grid, white_matter=WhiteMatter(500, 0.23, 9999)), {})
    assert warning.code == "white_matter" and "spread 23 %" in warning.message and warning.input == "t1"
    assert check_white_matter(spec, grid, {}) is None  # a card without white-matter normalisation


#: White matter of the real T1w heads as the avg152 template's white-matter map (> 0.9), registered affinely to each
#: head (Mattes MI, 2 mm), gives it: a method independent of the estimator's Otsu classes and depth.
TEMPLATE_WHITE_MATTER = {"open_ms_patient01_T1W.nii.gz": 354, "open_ms_patient04_T1W.nii.gz": 362,
                         "philips_adni_mprage_1mm.nii.gz": 61452}


def _engine_white_matter(image: sitk.Image) -> WhiteMatter:
    translator = Translator(resolve_model(MODEL), RunOptions(device="cpu"))
    _, _, grid = translator.prepare([image])
    return grid.white_matter


@pytest.mark.parametrize("name", sorted(TEMPLATE_WHITE_MATTER))
def test_real_heads_white_matter_agrees_with_a_registered_template(name):
    from MedGANTranslateLib.imageio import read_image

    found = _engine_white_matter(read_image(real_file(f"t1/{name}")))
    assert found.value == pytest.approx(TEMPLATE_WHITE_MATTER[name], rel=0.03) and not found.doubtful


@pytest.mark.parametrize("name", ["brats_gli_00001", "open_ms_patient07"])
def test_skull_stripped_brains_white_matter_agrees_with_the_whole_brains(name):
    """On a brain-only scan the 20 mm deep region is the brain's inner half; the yardstick's NAWM uses it all."""
    from MedGANTranslateLib.training.real_pairs import PAIRS, nawm_value, prepare_pair

    real_file(PAIRS[name].t1)
    pair = prepare_pair(name, REAL_DATA, check=False)
    native = sitk.Cast(pair.t1, sitk.sitkFloat32) / pair.t1_factor
    whole_brain = nawm_value(sitk.GetArrayFromImage(native), pair.nawm)
    assert _engine_white_matter(native).value == pytest.approx(whole_brain, rel=0.04)


def test_the_bias_ridden_siemens_scan_is_flagged_doubtful():
    from MedGANTranslateLib.imageio import read_image

    assert _engine_white_matter(read_image(real_file("t1/siemens_xa30_t1w_2mm.nii.gz"))).doubtful


def test_the_deep_region_on_the_bodys_box_is_the_whole_arrays():
    """Exact: the same voxels as the distance transform of the whole array, for a body inside the array and one
    that touches its edges (anisotropic voxels)."""
    from scipy import ndimage

    from MedGANTranslateLib.white_matter import deep_region

    _, body = synthetic_head()
    for mask in (body, body[20:, :100, 5:]):
        spacing = (0.9, 1.1, 1.3)
        whole = ndimage.distance_transform_edt(mask, sampling=spacing[::-1]) >= 20
        assert whole.any() and np.array_equal(deep_region(mask, spacing, 20), whole)
