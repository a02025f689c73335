"""Image metrics with known answers (SynthRAD2023 conventions)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from MedGANTranslateLib.metrics import ct_tissue_metrics, image_metrics

SHAPE = (20, 22, 24)


def ct_pair(seed: int = 0):
    rng = np.random.default_rng(seed)
    reference = rng.normal(0, 400, SHAPE)
    synthetic = reference + rng.normal(0, 80, SHAPE)
    mask = np.zeros(SHAPE, bool)
    mask[2:18, 3:19, 4:20] = True
    return synthetic, reference, mask


def skimage_style_ssim(x: np.ndarray, y: np.ndarray, data_range: float) -> np.ndarray:
    """Independent reference: scikit-image's SSIM map (7-voxel uniform window, sample covariance)."""
    n = 7 ** 3
    cov = n / (n - 1)
    ux, uy = uniform_filter(x, 7), uniform_filter(y, 7)
    vx = cov * (uniform_filter(x * x, 7) - ux * ux)
    vy = cov * (uniform_filter(y * y, 7) - uy * uy)
    vxy = cov * (uniform_filter(x * y, 7) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))


def test_identical_images():
    _, reference, mask = ct_pair()
    result = image_metrics(reference, reference, mask, "CT")
    assert result["mae"] == 0 and result["me"] == 0 and result["rmse"] == 0
    assert result["psnr"] is None  # infinite: not JSON-safe, reported as None
    assert result["ssim"] == pytest.approx(1.0, abs=1e-6)
    json.dumps(result, allow_nan=False)


def test_constant_offset():
    _, reference, mask = ct_pair()
    result = image_metrics(reference + 10, reference, mask, "CT")
    assert result["mae"] == pytest.approx(10) and result["me"] == pytest.approx(10)
    assert result["rmse"] == pytest.approx(10)
    result = image_metrics(reference - 10, reference, mask, "MR")
    assert result["me"] == pytest.approx(-10) and result["mae"] == pytest.approx(10)


def test_ct_psnr_uses_the_synthrad_range_on_clipped_images():
    synthetic, reference, mask = ct_pair()
    synthetic[mask.nonzero()[0][:5], mask.nonzero()[1][:5], mask.nonzero()[2][:5]] = 5000  # clipped to 3000
    s, r = np.clip(synthetic[mask], -1024, 3000), np.clip(reference[mask], -1024, 3000)
    expected = 10 * math.log10(4024 ** 2 / np.mean((s - r) ** 2))
    result = image_metrics(synthetic, reference, mask, "CT")
    assert result["psnr"] == pytest.approx(expected, rel=1e-9)
    assert result["mae"] == pytest.approx(np.mean(np.abs(synthetic[mask] - reference[mask])))  # unclipped


def test_non_ct_psnr_uses_the_reference_range_inside_the_mask():
    rng = np.random.default_rng(2)
    reference = rng.uniform(0, 15, SHAPE)
    synthetic = reference + rng.normal(0, 0.5, SHAPE)
    mask = reference > 3
    reference[~mask] = 1000  # outside the mask: must not set the range
    peak = reference[mask].max() - reference[mask].min()
    expected = 20 * math.log10(peak) - 10 * math.log10(np.mean((synthetic[mask] - reference[mask]) ** 2))
    assert image_metrics(synthetic, reference, mask, "PET")["psnr"] == pytest.approx(expected, rel=1e-9)
    fixed = 20 * math.log10(30) - 10 * math.log10(np.mean((synthetic[mask] - reference[mask]) ** 2))
    assert image_metrics(synthetic, reference, mask, "PET", data_range=30)["psnr"] == pytest.approx(fixed, rel=1e-9)


def test_ct_ssim_matches_the_synthrad_recipe():
    synthetic, reference, mask = ct_pair(1)
    low = -1024.0
    x = np.where(mask, np.clip(synthetic, low, 3000), low) - low
    y = np.where(mask, np.clip(reference, low, 3000), low) - low
    crop = (slice(3, -3),) * 3
    expected = skimage_style_ssim(x, y, 4024)[crop][mask[crop]].mean()
    assert image_metrics(synthetic, reference, mask, "CT")["ssim"] == pytest.approx(expected, abs=1e-5)


def test_mask_excludes_outside_voxels():
    synthetic, reference, mask = ct_pair()
    inside = image_metrics(synthetic, reference, mask, "CT")
    synthetic[~mask] += 3000
    assert image_metrics(synthetic, reference, mask, "CT") == inside


def test_mask_volume_uses_spacing():
    synthetic, reference, mask = ct_pair()
    result = image_metrics(synthetic, reference, mask, "CT", spacing=(0.5, 1.0, 2.0))
    assert result["mask_volume_ml"] == pytest.approx(mask.sum() / 1000.0)


def test_small_images_have_no_ssim():
    reference = np.arange(5 * 5 * 5, dtype=float).reshape(5, 5, 5)
    result = image_metrics(reference + 1, reference, np.ones_like(reference, bool), "MR")
    assert result["ssim"] is None and result["mae"] == pytest.approx(1)


def test_bad_inputs():
    synthetic, reference, mask = ct_pair()
    with pytest.raises(ValueError, match="same shape"):
        image_metrics(synthetic[1:], reference, mask, "CT")
    with pytest.raises(ValueError, match="no voxel"):
        ct_tissue_metrics(synthetic, reference, np.zeros_like(mask))


def test_tissue_metrics_on_a_constructed_volume():
    reference = np.zeros((10, 10, 10))
    reference[:3] = -1000  # air
    reference[3:7] = 40  # soft tissue
    reference[7:] = 1000  # bone
    synthetic = reference.copy()
    synthetic[:3] += 50
    synthetic[3:7] -= 20
    synthetic[7:] += 100
    mask = np.ones(reference.shape, bool)
    mask[:, :, 0] = False
    synthetic[:, :, 0] = 9999  # outside the mask
    result = ct_tissue_metrics(synthetic, reference, mask)
    assert result["mae_air"] == pytest.approx(50)
    assert result["mae_soft_tissue"] == pytest.approx(20)
    assert result["mae_bone"] == pytest.approx(100)
    assert result["bone_dice"] == pytest.approx(1.0)


def test_tissue_class_boundaries():
    reference = np.array([-201.0, -200.0, 249.0, 250.0]).reshape(1, 1, 4)
    synthetic = reference + np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 4)
    result = ct_tissue_metrics(synthetic, reference, np.ones_like(reference, bool))
    assert result["mae_air"] == pytest.approx(1)
    assert result["mae_soft_tissue"] == pytest.approx(2.5)
    assert result["mae_bone"] == pytest.approx(4)


def test_bone_dice_for_a_known_overlap():
    reference = np.full((10, 10, 10), 40.0)
    synthetic = np.full((10, 10, 10), 40.0)
    reference[0:4] = 700  # 400 bone voxels
    synthetic[2:8] = 700  # 600 bone voxels, 200 shared
    result = ct_tissue_metrics(synthetic, reference, np.ones_like(reference, bool))
    assert result["bone_dice"] == pytest.approx(2 * 200 / (400 + 600))


def test_empty_classes_give_none():
    reference = np.full((8, 8, 8), 40.0)
    synthetic = reference.copy()
    synthetic[:2] = 500  # bone in the synthetic only: Dice undefined without reference bone
    result = ct_tissue_metrics(synthetic, reference, np.ones_like(reference, bool))
    assert result["mae_air"] is None and result["mae_bone"] is None and result["bone_dice"] is None
    assert result["mae_soft_tissue"] == pytest.approx(460 * 2 / 8)
    json.dumps(result, allow_nan=False)
