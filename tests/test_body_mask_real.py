"""The body mask on real scans and on noise the engine must tell from tissue.

Real scans (``../shared/real-data``, skipped without it): every whole-head T1w keeps its whole head, with no
holes and no more air than the dilation margin around it, measured as ``benchmarks/body_mask_real.py`` does."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from MedGANTranslateLib.body_mask import body_mask
from MedGANTranslateLib.network_grid import to_network_grid
from MedGANTranslateLib.noise_floor import _finest_step, _frequent_values, _sorted_histogram, noise_floor
from MedGANTranslateLib.registry import resolve_model

from real_data import REAL_T1, real_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from body_mask_real import mask_quality  # noqa: E402


def noisy_head(scale: float = 1.0, fill_share: float = 0.0, quantum: float = 0.0, seed: int = 0) -> np.ndarray:
    """A head (tissue 300-900 under a 3x bias field, falling to 100 at one end) in Rayleigh noise of sigma 5,
    times ``scale``; ``fill_share`` of the air zero-filled (as scanners and defacing do); values rounded to
    multiples of ``quantum`` (a scaled integer scan)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices((60, 64, 56), dtype=float)
    head = ((x - 28) / 22) ** 2 + ((y - 32) / 26) ** 2 + ((z - 30) / 25) ** 2 <= 1
    values = np.hypot(rng.normal(0, 5, head.shape), rng.normal(0, 5, head.shape))
    bias = 1.0 / 3.0 + (2.0 / 3.0) * z / z.max()
    values[head] = (rng.uniform(300, 900, head.sum()) * bias[head])
    values[~head & (rng.random(head.shape) < fill_share)] = 0.0
    values = values * scale
    return np.round(values / quantum) * quantum if quantum else values


@pytest.mark.parametrize("scale", [1.0, 0.001, 160.0])
def test_noise_floor_lies_above_rayleigh_air_and_far_below_dim_tissue_at_any_scale(scale):
    floor = noise_floor(noisy_head(scale)) / scale
    assert 5 * 4 < floor < 5 * 7, "between 4 and 7 sigma of the air's noise"


def test_noise_floor_ignores_zero_filled_air_and_a_quantised_scale():
    assert 20 < noise_floor(noisy_head(fill_share=0.6)) < 35
    quantised = noise_floor(noisy_head(scale=27.0, quantum=27.0 * 2.5)) / 27.0
    assert 20 < quantised < 50


def test_noise_floor_of_a_noise_free_or_skull_stripped_image_is_its_fill_value():
    values = noisy_head()
    values[values < 100] = 0.0  # a skull-stripped brain's zero background
    assert noise_floor(values) == 0.0
    assert noise_floor(values - 75.0) == -75.0


@pytest.mark.parametrize("size", [1, 19, 20, 21, 400, 1000])
def test_noise_floor_helpers_on_sorted_samples_are_what_numpy_gives(size):
    rng = np.random.default_rng(size)
    ordered = np.sort(np.round(rng.exponential(3.0, size)) * 0.25)  # few levels, some exactly at 5 % of the voxels
    levels, counts = np.unique(ordered, return_counts=True)
    np.testing.assert_array_equal(_frequent_values(ordered, 0.05), levels[counts > 0.05 * size])
    assert _finest_step(ordered) == (np.diff(levels).min() if levels.size > 1 else 0.0)
    edges = np.array([0.25, 0.5, 1.0, 1.75, 2.0])  # values on the inner and both outer edges
    np.testing.assert_array_equal(_sorted_histogram(ordered, edges), np.histogram(ordered, edges)[0])
    exactly = np.repeat([1.0, 2.0, 3.0], [5, 90, 5])  # 5 of 100 is not more than 5 %
    np.testing.assert_array_equal(_frequent_values(exactly, 0.05), [2.0])


def test_body_mask_keeps_a_head_dimmed_by_a_bias_field():
    values = noisy_head(scale=160.0).astype(np.float32)
    image = sitk.GetImageFromArray(values)
    mask = sitk.GetArrayFromImage(body_mask(image, {})) > 0
    assert mask[values > 100 * 160.0 / 3].all(), "the dim end of the head stays inside"
    assert mask.mean() < 0.5


@pytest.mark.parametrize("name", REAL_T1)
def test_body_mask_keeps_the_whole_head_of_real_t1w_scans(name):
    card = resolve_model("mr-t1-to-ct-pix2pix")
    image = to_network_grid(sitk.ReadImage(str(real_file("t1", name))), card.preprocessing)
    quality = mask_quality(image, body_mask(image, card.postprocessing["body_mask"]), margin_mm=4.0)
    assert quality["outside_pct"] <= 0.5, "tissue above the scan's own noise floor left outside the mask"
    assert quality["holes_ml"] == 0
    assert quality["excess_ml"] <= 5.0, "air beyond the dilation margin and one working block"
    assert quality["tissue_ml"] > 2000, "a whole head, not a brain"


@pytest.mark.parametrize("spike", [1e6, 1e30, -1e6])
def test_a_few_absurd_voxels_move_neither_the_noise_floor_nor_the_mask(spike):
    values = noisy_head().astype(np.float32)
    clean = body_mask(sitk.GetImageFromArray(values), {})
    values[30, 32, 28] = spike
    values[5, 5, 5] = spike
    assert noise_floor(values) == pytest.approx(noise_floor(noisy_head()), rel=0.05)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(body_mask(sitk.GetImageFromArray(values), {})),
                                  sitk.GetArrayFromImage(clean))


def test_noise_floor_of_a_ct_lies_in_its_air_not_at_its_padding():
    """A CT's field of view is a cylinder padded with -1500 outside; a regularised tilted series blends padding and
    air over a few % of its voxels. The floor must separate the air (-1000 +- 10 HU) from tissue, not padding
    from air, or the whole cylinder of air becomes body."""
    rng = np.random.default_rng(1)
    z, y, x = np.indices((40, 96, 96), dtype=float)
    radius = np.hypot(x - 48, y - 48)
    values = np.where(radius < 46, rng.normal(-1000, 10, radius.shape), -1500.0)
    ring = (radius >= 45) & (radius < 46)
    values[ring] = -1500 + 500 * (46 - radius[ring])  # padding blended into air, 3 % of the non-fill voxels
    head = ((x - 48) / 30) ** 2 + ((y - 48) / 36) ** 2 + ((z - 20) / 25) ** 2 <= 1
    values[head] = rng.uniform(0, 80, head.sum())
    floor = noise_floor(values)
    assert -1000 + 3 * 10 < floor < -1000 + 8 * 10
