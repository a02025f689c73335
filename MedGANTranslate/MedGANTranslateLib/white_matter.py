"""A T1w scan's white-matter intensity: the reference that puts a scan from any scanner on a model's scale.

Real T1w scans come on any intensity scale (white matter near 360 on one scanner, 61 000 on another), while a
model trained on a fixed scale reads only that one. Tissue contrast is what carries over between scanners, so a
card may normalise to white matter (``"method": "white_matter"``): one factor per scan puts its
*normal-appearing white matter* (NAWM) at the value the model was trained with.

NAWM here is the brightest of three intensity classes (CSF, grey matter, white matter; ITK's multi-level Otsu
on a 256-bin histogram between the 0.1th and 99.9th percentiles) among the body voxels at least ``depth_mm``
inside the body's surface, eroded by one voxel; its median is the scan's white-matter value. The depth keeps out
the scalp's fat and the marrow of the skull, brighter than white matter on most T1w and all within about 15 mm
of the skin: on the open_ms heads the brightest class is fat at 0 and 10 mm deep (780-925 against white matter
near 355) and white matter from 20 mm on; at 20 mm the estimate is within 2 % of the white matter an affinely
registered template's white-matter map finds on the open_ms and Philips heads, and within 4 % of the whole-brain
estimate on the skull-stripped pairs. On a skull-stripped brain the body is the brain, and 20 mm keeps its deep
half. The spread (interquartile range over the median) says how cleanly one
tissue was found: a strong bias field smears white matter into grey matter and fat (see
:data:`DOUBTFUL_SPREAD`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .body_mask import foreground_box
from .errors import InputError

DEFAULT_DEPTH_MM = 20.0
#: Fewer NAWM voxels than this after the erosion: the eroded class is too thin to trust, the class itself is used.
MIN_ERODED_VOXELS = 100
#: A spread above this is reported as a doubtful reference. Measured at 20 mm: phantoms 1-10 and 100-111
#: 0.05-0.19, the open_ms heads 0.08, the Philips MPRAGE 0.13, the skull-stripped pairs 0.06-0.09; the Siemens XA30
#: with its strong bias field 0.23 (its deep class mixes white matter with brighter cortex and vessels).
DOUBTFUL_SPREAD = 0.21


@dataclass(frozen=True)
class WhiteMatter:
    """A scan's NAWM: ``value`` (median intensity), ``spread`` (interquartile range / median), ``voxels``."""

    value: float
    spread: float
    voxels: int

    @property
    def doubtful(self) -> bool:
        return self.spread > DOUBTFUL_SPREAD


def three_class_thresholds(values: np.ndarray, bins: int = 256) -> Tuple[float, float]:
    """The two thresholds that split ``values`` into three classes of largest between-class variance (ITK's
    OtsuMultipleThresholds on a ``bins``-bin histogram of the values clipped to their 0.1-99.9th percentiles)."""
    flat = np.asarray(values, np.float32).ravel()
    low, high = np.percentile(flat, [0.1, 99.9])
    otsu = sitk.OtsuMultipleThresholdsImageFilter()
    otsu.SetNumberOfThresholds(2)
    otsu.SetNumberOfHistogramBins(bins)
    otsu.Execute(sitk.GetImageFromArray(np.clip(flat, low, high)[None]))
    first, second = otsu.GetThresholds()
    return float(first), float(second)


def nawm_mask(t1: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The brightest of three T1 classes inside ``region`` (boolean, same shape), eroded by one voxel unless
    that leaves fewer than :data:`MIN_ERODED_VOXELS`."""
    region = np.asarray(region, bool)
    wm = region & (t1 > three_class_thresholds(t1[region])[1])
    eroded = ndimage.binary_erosion(wm, ndimage.generate_binary_structure(3, 1))
    return eroded if np.count_nonzero(eroded) >= MIN_ERODED_VOXELS else wm


def deep_region(body: np.ndarray, spacing_mm: Sequence[float], depth_mm: float) -> np.ndarray:
    """The ``body`` voxels at least ``depth_mm`` from the nearest voxel outside it, as the Euclidean distance
    transform of the whole array gives them, computed on the body's bounding box with one voxel of outside around
    it (where the array has it): nothing beyond that layer, all outside, is nearer. SciPy's transform holds about
    45 bytes a voxel while it runs; on the box the whole estimate's peak fell from 303 to 205 MB on the open_ms 01
    head's 1 mm grid and from 546 to 497 MB on the Philips MPRAGE's, whose head fills its field of view."""
    box = foreground_box(body, [1, 1, 1])
    deep = np.zeros(body.shape, bool)
    deep[box] = ndimage.distance_transform_edt(body[box], sampling=tuple(spacing_mm)[::-1]) >= depth_mm
    return deep


def white_matter(t1: np.ndarray, body: np.ndarray, spacing_mm: Sequence[float],
                 depth_mm: float = DEFAULT_DEPTH_MM) -> WhiteMatter:
    """The NAWM of a T1w array (z, y, x) with its ``body`` mask and voxel ``spacing_mm`` (x, y, z): see the
    module's text. An :class:`InputError` when the body holds no voxel that deep or no positive white matter."""
    body = np.asarray(body, bool)
    region = deep_region(body, spacing_mm, depth_mm) if depth_mm > 0 and body.any() else body
    if np.count_nonzero(region) < MIN_ERODED_VOXELS:
        raise InputError(
            f"The body holds almost no voxels {depth_mm:g} mm inside its surface, so its white matter cannot be "
            "found to put the scan on the model's intensity scale; give a scan of the whole head or brain."
        )
    values = np.asarray(t1, np.float32)[nawm_mask(t1, region)]
    q1, median, q3 = (float(v) for v in np.percentile(values, [25, 50, 75]))
    if not median > 0:
        raise InputError(
            f"The brightest tissue deep inside the body has intensity {median:g}, not above 0, so it cannot be "
            "white matter of a T1w scan; check that the input is a T1-weighted MR image."
        )
    return WhiteMatter(median, (q3 - q1) / median, int(values.size))
