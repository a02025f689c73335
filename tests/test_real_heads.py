"""The yardstick for synthetic CTs of real heads (``benchmarks/real_heads.py``, issue 23).

The metric functions on shapes where the right answer is known; then, with ``../shared/real-data`` (skipped
without it), the real head CT must pass its own yardstick (a skull of the stated bone share, closed rings, no
bone in the brain), and the default model's synthetic CT of one real T1w must give finite numbers. Nothing here
asserts that the model is good: it is not yet."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from real_data import REAL_DATA, real_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import real_heads  # noqa: E402
from real_heads import (  # noqa: E402
    air_in_region,
    bone_in_region,
    bone_share,
    cormack_to_hounsfield,
    ct_head_mask,
    enclosed_share,
    skull_ring_share,
    wasserstein_hu,
)


def head_slices(count: int = 6, size: int = 96, gap_in: tuple = ()) -> tuple:
    """A stack of axial slices of a round head: scalp (radius 44) 40 HU, a skull ring of radii 34-40 at 900 HU,
    brain 30 HU inside; the slices in ``gap_in`` have a 3-voxel gap cut through the ring. Returns (ct, head)."""
    y, x = np.indices((size, size)) - size // 2
    radius = np.hypot(x, y)
    ct = np.full((count, size, size), -1000.0, np.float32)
    head = np.zeros(ct.shape, bool)
    for z in range(count):
        ct[z][radius <= 44] = 40.0
        ct[z][(radius >= 34) & (radius <= 40)] = 900.0
        ct[z][radius < 34] = 30.0
        if z in gap_in:
            ct[z][(np.abs(y) <= 1) & (x > 0) & (radius >= 33)] = 40.0
        head[z] = radius <= 46  # the mask reaches a little into the air, as the pipeline's does
    return ct, head


def test_n4_runs_are_never_written_into_the_cards(capsys):
    """The cards hold the models as run by default; a run with --n4 only prints its rows."""
    with pytest.raises(SystemExit):
        real_heads.main(["--n4", "--write-cards"])
    assert "without N4" in capsys.readouterr().err


def test_a_closed_ring_encloses_the_inside_and_a_ring_with_a_gap_encloses_nothing():
    ct, head = head_slices(gap_in=(1,))
    inside = (np.hypot(*(np.indices((96, 96)) - 48)) < 34).sum()
    assert enclosed_share(ct[0], head[0]) == pytest.approx(inside / head[0].sum())
    assert enclosed_share(ct[1], head[1]) == 0.0
    assert skull_ring_share(ct, head) == pytest.approx(100 * 5 / 6)
    assert skull_ring_share(ct, head, slices=[1]) == 0.0
    assert skull_ring_share(ct, head, slices=[0, 2]) == 100.0


def test_a_ring_one_voxel_thick_with_diagonal_steps_is_closed_and_pockets_of_bone_are_not_a_ring():
    size = 64
    ct = np.full((size, size), 30.0, np.float32)
    head = np.ones((size, size), bool)
    head[[0, -1]] = head[:, [0, -1]] = False
    for angle in np.linspace(0, 2 * np.pi, 2000):  # a digital circle: 8-connected, corners touch diagonally
        ct[int(round(32 + 20 * np.sin(angle))), int(round(32 + 20 * np.cos(angle)))] = 1000.0
    assert enclosed_share(ct, head) > 0.25
    pockets = np.full((size, size), 30.0, np.float32)
    for cy, cx in ((10, 10), (10, 50), (50, 30)):  # three small closed loops of bone, no skull
        pockets[cy - 2:cy + 3, cx - 2:cx + 3] = 1000.0
        pockets[cy, cx] = 30.0
    assert 0 < enclosed_share(pockets, head) < 0.01
    assert skull_ring_share(pockets[None], head[None]) == 0.0


def test_bone_in_the_brain_counts_a_blob_and_nothing_else():
    ct = np.full((40, 40, 40), 30.0, np.float32)
    brain = np.zeros(ct.shape, bool)
    brain[10:30, 10:30, 10:30] = True
    assert bone_in_region(ct, brain) == (0.0, 0.0)
    ct[0:4] = 1000.0  # bone outside the region does not count
    ct[15:18, 15:18, 15:20] = 800.0  # 45 voxels
    millilitres, percent = bone_in_region(ct, brain, voxel_ml=0.008)
    assert millilitres == pytest.approx(45 * 0.008)
    assert percent == pytest.approx(100 * 45 / 8000)


def test_air_in_a_solid_region_counts_voxels_below_minus_400_hu_inside_it_only():
    ct = np.full((40, 40, 40), 30.0, np.float32)
    solid = np.zeros(ct.shape, bool)
    solid[10:30, 10:30, 10:30] = True
    ct[0:5] = -1000.0  # air outside the region does not count
    ct[12:14, 12:14, 12:20] = -400.0  # -400 HU itself is not air
    assert air_in_region(ct, solid) == (0.0, 0.0)
    ct[20:23, 20:23, 20:25] = -700.0  # 45 voxels
    assert air_in_region(ct, solid, voxel_ml=0.008) == (pytest.approx(45 * 0.008), pytest.approx(100 * 45 / 8000))


def test_bone_share_is_the_share_of_the_region_above_300_hu():
    ct, head = head_slices()
    expected = 100.0 * (ct[head] > 300).sum() / head.sum()
    assert bone_share(ct, head) == pytest.approx(expected)
    assert bone_share(np.full((2, 2), 300.0), np.ones((2, 2), bool)) == 0.0, "300 HU itself is not bone"
    assert math.isnan(bone_share(ct, np.zeros_like(head)))


def test_wasserstein_distance_of_histograms_in_hu():
    rng = np.random.default_rng(0)
    values = rng.normal(30, 200, 50_000).round()
    assert wasserstein_hu(values, values) == 0.0
    assert wasserstein_hu(values, rng.permutation(values)) == 0.0, "the order of voxels does not matter"
    assert wasserstein_hu(values, values + 100) == pytest.approx(100, abs=1)
    assert wasserstein_hu(np.zeros(10), np.full(30, -1000.0)) == pytest.approx(1000)
    half = np.concatenate([np.zeros(500), np.full(500, 1000.0)])
    assert wasserstein_hu(half, np.zeros(1000)) == pytest.approx(500)
    assert wasserstein_hu(np.full(5, -3000.0), np.full(5, -1024.0)) == 0.0, "compared inside the cards' range"


def test_cormack_units_to_hounsfield_as_clinical_c2h():
    units = np.array([0.0, 900.0, 1000.0, 3100.0, 3794.4343])
    np.testing.assert_allclose(cormack_to_hounsfield(units), [-1024, -124, -124 + 100 / 11, 76, 770.4343],
                               atol=1e-3)


def test_ct_head_mask_leaves_out_a_head_holder_touching_the_head():
    z, y, x = np.indices((60, 80, 80)) - np.array([30, 40, 40])[:, None, None, None]
    values = np.full(z.shape, -1000.0, np.float32)
    ball = np.sqrt(x ** 2 + y ** 2 + z ** 2)
    values[ball <= 28] = 40.0
    values[(ball > 22) & (ball <= 25)] = 900.0  # skull under 3 mm of scalp
    values[(np.abs(y - 29) <= 1) & (np.abs(x) <= 25) & (np.abs(z) <= 25)] = 400.0  # a 3 mm plate at the scalp
    ct = sitk.GetImageFromArray(values)
    head = sitk.GetArrayFromImage(ct_head_mask(ct, {})) > 0
    assert head[ball <= 28].all()
    assert not head[(np.abs(y - 29) <= 1) & (np.abs(x) >= 12) & (np.abs(z) >= 12)].any(), "the plate's far parts"


# ---------------------------------------------------------------------------------------------- real scans


@pytest.fixture(scope="module")
def template():
    real_file("templates", "scct.nii.gz")
    return real_heads.Template.load(REAL_DATA / "templates")


@pytest.fixture(scope="module")
def real_ct(template):
    real_file("ct", "ge_head_ct_dicom")
    return real_heads.reference_ct(REAL_DATA, template, real_heads.default_card())


def test_the_real_head_ct_passes_its_own_yardstick(template, real_ct):
    """About 17 % of the cranial head above 300 HU, 11-25 % in most cranial slices (the top slices cut the vault
    obliquely and reach ~28 %), a closed skull in every cranial slice, and no bone in the brain."""
    metrics = real_heads.measure(real_ct.ct, real_ct, template, real_ct)
    assert metrics["cranial_slices"] >= 40
    assert 15.0 <= metrics["bone_cranium"] <= 20.0
    cranial = np.flatnonzero(template.rows(real_heads.CRANIAL_Z) & real_ct.covered)
    per_slice = real_heads.bone_share_per_slice(real_ct.ct, real_ct.head, cranial)
    assert np.mean((per_slice >= 11.0) & (per_slice <= 25.0)) >= 0.75
    assert per_slice.min() >= 10.0 and per_slice.max() <= 32.0
    assert 11.0 <= metrics["bone_head"] <= 20.0
    assert metrics["rings"] >= 90.0, "a real skull is a closed ring above the orbits"
    assert metrics["brain_bone_ml"] < 0.5, "calcifications at most"
    assert metrics["solid_air_ml"] < 5.0, "air only where its sinuses reach beyond the average head's"
    assert template.solid.sum() > 1_000_000, "the solid region spans skull base, brain and vault (> 1 L)"
    assert not (template.solid & (template.fine_ct < -200)).any()
    assert metrics["w1_head"] == 0.0 and metrics["w1_brain"] == 0.0


def test_the_default_models_synthetic_ct_of_a_real_t1w_gives_finite_numbers(template, real_ct):
    from MedGANTranslateLib.imageio import read_image
    from MedGANTranslateLib.pipeline import Translator
    from MedGANTranslateLib.registry import resolve_model

    image = read_image(real_file("t1", "open_ms_patient01_T1W.nii.gz"))
    result = Translator(resolve_model("mr-t1-to-ct-pix2pix")).translate([image])
    placed = real_heads.place("open_ms_patient01_T1W", image, result.body_mask, template, is_ct=False)
    synthetic = real_heads.in_template(result.synthetic, placed.transform, template, default=-1000.0)
    metrics = real_heads.measure(synthetic, placed, template, real_ct)
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert metrics["cranial_slices"] >= 30, "the scan cuts the top of the head, but most of the vault is there"
    for key in ("bone_head", "bone_cranium", "rings", "brain_bone_pct"):
        assert 0.0 <= metrics[key] <= 100.0
    assert metrics["w1_head"] > 0.0
    bulk = real_heads.measure(real_heads.baselines(placed, template)["bulk water"], placed, template, real_ct)
    assert bulk["bone_head"] == 0.0 and bulk["rings"] == 0.0


def test_card_section_holds_each_scan_with_its_baselines_and_the_schema_takes_it():
    from MedGANTranslateLib.card import validate_card_data
    from MedGANTranslateLib.errors import CardError
    from MedGANTranslateLib.model_folder import tiny_card_data

    metrics = {"bone_head": 5.0, "bone_cranium": 12.5, "rings": 50.0, "cranial_slices": 46}
    rows = [real_heads.Row("real head CT", "the real CT (reference)", dict(metrics, bone_head=15.0)),
            real_heads.Row("scan a", "model-x v1.0.0", dict(metrics, rings=25.0), 3.0),
            real_heads.Row("scan a", "model-x-large v2.0.0", dict(metrics, rings=99.0), 3.0),
            real_heads.Row("scan a", "baseline: bulk water", dict(metrics, rings=0.0)),
            real_heads.Row("scan b", "model-x v1.0.0", dict(metrics, rings=75.0), 3.0),
            real_heads.Row("scan b", "baseline: bulk water", dict(metrics, rings=1.0))]
    section = real_heads.card_section(rows, "model-x", "benchmarks/real_heads.py")
    assert section["reference"]["bone_head"] == 15.0
    assert [(s["scan"], s["rings"], s["baselines"]["bulk water"]["rings"]) for s in section["scans"]] == [
        ("scan a", 25.0, 0.0), ("scan b", 75.0, 1.0)]
    data = tiny_card_data("model-x")
    data["validation"] = {"real_heads": section}
    validate_card_data(data, "model.json")
    section["scans"][0]["rings"] = "many"
    with pytest.raises(CardError, match="real_heads"):
        validate_card_data(data, "model.json")
