"""The card's ``training_inputs`` block, both sides of it: :func:`reference_statistics` computes it from the
training inputs as the network saw them (spacing range, body extents and volumes, the mean contrast histogram of
the head's core per channel), and the checks compare a scan with it: the body's extent (``field_of_view``), the
voxel spacing (``spacing``) and the core's contrast as a Wasserstein-1 distance between histograms
(``intensity_distribution``). Both sides measure with :func:`core_contrast` and the settings stored in the card,
so a scan is measured as the training inputs were.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from .body_sample import BodySample
from .card import InputSpec
from .network_grid import NetworkGrid
from .scan_report import ScanWarning

#: Field of view: warn when the body spans less than this fraction of the smallest training body along an
#: anatomical axis. The real whole heads reach down to 0.70 of it (a 2D scan holding 117 mm of the head from top
#: to bottom); a 30 mm slab is at 0.17.
EXTENT_MIN_FRACTION = 0.5
AXIS_NAMES = ("left-right", "anterior-posterior", "superior-inferior")

#: Spacing: warn when a voxel side is coarser than both this factor times the finest training spacing and
#: :data:`SPACING_BEYOND_COARSEST` times the coarsest, or finer than the finest by this factor. For a model trained
#: at 1 mm only, the coarsest routine scans here, 3 mm 2D T1w slices, are 3x; at more than 4x the network grid
#: interpolates at least three of every four planes, so the skull and the sinus walls (2-7 mm) are smeared in a
#: way the network never saw (v1.6.0 on a held-out phantom: body MAE 46, 76, 116 HU at 1, 3, 5 mm slices).
SPACING_MAX_FACTOR = 4.0
#: A model trained on thick slices too (v2.0.0: 1 to 5.9 mm) holds up somewhat beyond them and then degrades:
#: on the same phantom 77, 59, 61, 69, 70, 88, 104 HU body MAE at 1, 3, 6, 7, 8, 10, 12 mm (bone Dice 0.94 at
#: 1 mm, 0.89 at 8, 0.82 at 10). Slices more than 1.5x its coarsest (8.9 mm) warn.
SPACING_BEYOND_COARSEST = 1.5

#: The head's core, where the intensity distribution is compared: at least ``core_depth_mm`` under the body's
#: surface (the scalp, skull and outer cortex above it) and within ``core_below_top_mm`` of the top of the body
#: (the brain, not the neck). Its values are put on their own scale (minus the median, over the interquartile
#: range), so the distance compares the shape of the brain's contrast, which tells T1w from T2w from CT, and not
#: where the normalisation happened to put it, which differs between any two scanners.
#: These settings are stored with the histograms in the card, and an input is measured with the card's.
CONTRAST_SETTINGS = {"core_depth_mm": 20.0, "core_below_top_mm": 110.0, "range": [-4.0, 4.0], "bins": 80}
CORE_MIN_ML = 8.0
#: Wasserstein-1 distance (in interquartile ranges of the core) above which the contrast differs from the
#: training inputs'. Measured on the default model: its 48 training phantoms up to 0.21, held-out phantoms up
#: to 0.11, real T1w scans up to 0.19; phantom T2w 0.37-0.38, CTs 0.32-0.66, an MNI-space skull-stripped T1w
#: 0.30 (a BraTS one 0.10: the skull-stripped check is what finds those).
CONTRAST_DISTANCE_MAX = 0.26


def contrast_histogram(values: np.ndarray, settings: Mapping[str, Any]) -> np.ndarray:
    """Histogram (shares over the settings' ``bins`` over ``range``) of ``values`` minus their median, over
    their interquartile range. A flat region (no interquartile range) puts everything in the middle bin, which
    is as far from a brain's contrast as it gets."""
    q25, q50, q75 = np.quantile(values, [0.25, 0.5, 0.75])
    scaled = (values - q50) / max(float(q75 - q25), 1e-6)
    low, high = (float(v) for v in settings["range"])
    counts = np.histogram(np.clip(scaled, low, high - 1e-6), int(settings["bins"]), (low, high))[0]
    return counts / counts.sum()


def wasserstein1(p: Sequence[float], q: Sequence[float], settings: Mapping[str, Any]) -> float:
    """Wasserstein-1 (earth mover's) distance between two histograms on the contrast bins, in the bins' unit:
    the area between their cumulative distributions. It grows with how far mass has to move, so a shifted
    peak counts by its shift, where a bin-by-bin divergence would saturate."""
    low, high = (float(v) for v in settings["range"])
    return float(np.abs(np.cumsum(p) - np.cumsum(q)).sum() * (high - low) / int(settings["bins"]))


def core_contrast(sample: BodySample, settings: Mapping[str, Any]) -> Optional[List[np.ndarray]]:
    """:func:`contrast_histogram` of each channel in the head's core; None when the core is smaller than
    :data:`CORE_MIN_ML` (a body too thin or too small to have one)."""
    core = sample.core(settings)
    if np.count_nonzero(core) * sample.voxel_ml < CORE_MIN_ML:
        return None
    return [contrast_histogram(channel[core], settings) for channel in sample.channels]


def check_field_of_view(sample: BodySample, reference: Mapping[str, Any]) -> Tuple[List[ScanWarning], List[float]]:
    """Warnings for each anatomical axis along which the body spans less than :data:`EXTENT_MIN_FRACTION` of
    the smallest training body, and the fraction along each axis."""
    extent = sample.extent_mm
    smallest = [float(v) for v in reference["body_extent_mm"]["min"]]
    fractions = [e / s if s > 0 else math.inf for e, s in zip(extent, smallest)]
    warnings = [
        ScanWarning(
            "field_of_view",
            f"The body spans {e:.0f} mm {axis}, {100 * f:.0f} % of the {s:.0f} mm of the smallest training input: "
            "the model has not seen so little of the anatomy.",
            "Give a scan whose field of view covers the whole region the model was trained on, or expect errors "
            "near the cut faces.",
        )
        for axis, e, s, f in zip(AXIS_NAMES, extent, smallest, fractions) if f < EXTENT_MIN_FRACTION
    ]
    return warnings, fractions


def spacing_limit_mm(reference: Mapping[str, Any]) -> float:
    """The coarsest voxel side that gets no spacing warning, from the training inputs' ``spacing_mm`` range."""
    finest, coarsest = (float(v) for v in reference["spacing_mm"])
    return max(SPACING_MAX_FACTOR * finest, SPACING_BEYOND_COARSEST * coarsest)


def check_spacing(spec: InputSpec, image: sitk.Image, reference: Mapping[str, Any]) -> Optional[ScanWarning]:
    """A warning when the input's voxels are coarser than :func:`spacing_limit_mm` along any axis, or more than
    :data:`SPACING_MAX_FACTOR` finer than the finest training spacing."""
    finest, coarsest = (float(v) for v in reference["spacing_mm"])
    limit = spacing_limit_mm(reference)
    spacing = image.GetSpacing()
    if max(spacing) <= limit and min(spacing) * SPACING_MAX_FACTOR >= finest:
        return None
    shown = " × ".join(f"{s:.3g}" for s in spacing)
    trained = f"{finest:g} mm" if finest == coarsest else f"{finest:g}-{coarsest:.2g} mm"
    detail = (f"coarser than the {limit:.2g} mm this model handles (trained on {trained} voxels)"
              if max(spacing) > limit else f"more than {SPACING_MAX_FACTOR:g}x finer than the {finest:g} mm it was "
              "trained on at the finest")
    return ScanWarning(
        "spacing",
        f"Input '{spec.name}' has {shown} mm voxels, {detail}: structures thinner than a voxel (skull, sinus "
        "walls) look unlike anything it has seen.",
        "Give a scan acquired at a resolution nearer the training spacing (thinner slices).",
        spec.name,
    )


def check_intensity(spec: InputSpec, histogram: np.ndarray, contrast: Mapping[str, Any],
                    channel: Mapping[str, Any]) -> Tuple[Optional[ScanWarning], float]:
    """A warning when the core's contrast is farther than :data:`CONTRAST_DISTANCE_MAX` from the training
    input's ``channel`` of the card's ``training_inputs.contrast``, and the distance."""
    distance = wasserstein1(histogram, channel["histogram"], contrast)
    if distance <= CONTRAST_DISTANCE_MAX:
        return None, distance
    return ScanWarning(
        "intensity_distribution",
        f"The contrast inside input '{spec.name}' is far from the training inputs': Wasserstein-1 distance "
        f"{distance:.2f} of the head core's intensity distribution from theirs (training inputs: up to "
        f"{float(channel['training_distance_max']):.2f}; limit {CONTRAST_DISTANCE_MAX:g}).",
        f"Check that it is a {spec.label} scan like those the model was trained on (not another sequence or "
        "modality, not a processed or scaled image).",
        spec.name,
    ), distance


@dataclass(frozen=True)
class TrainingCase:
    """One training input as the network saw it: the images as given, and what ``network_inputs`` made."""

    images: Sequence[sitk.Image]
    volume: np.ndarray
    mask: np.ndarray
    grid: NetworkGrid


def reference_statistics(cases: Iterable[TrainingCase], source: str) -> Dict[str, Any]:
    """The card's ``training_inputs`` block from the training inputs: their voxel spacing and body extent
    ranges, body volumes, and per channel the mean :func:`core_contrast` histogram with the largest distance
    of a training input from it. ``source`` says which inputs they were."""
    spacings, extents, volumes, histograms = [], [], [], []
    for case in cases:
        sample = BodySample.of(case.volume, case.mask, case.grid)
        spacings.extend(s for image in case.images for s in image.GetSpacing())
        extents.append(sample.extent_mm)
        volumes.append(sample.volume_ml)
        contrast = core_contrast(sample, CONTRAST_SETTINGS)
        if contrast is None:
            raise ValueError(f"A training input has no core {CONTRAST_SETTINGS['core_depth_mm']:g} mm under its "
                             "surface; the scan checks need inputs of a body at least as large as a head.")
        histograms.append(contrast)
    if not histograms:
        raise ValueError("No training inputs to describe.")
    stacked = np.asarray(histograms)  # (cases, channels, bins)
    mean = stacked.mean(axis=0)
    extents_array = np.asarray(extents)
    return {
        "source": source,
        "cases": len(histograms),
        "spacing_mm": [round(float(min(spacings)), 4), round(float(max(spacings)), 4)],
        "body_extent_mm": {"min": _rounded(extents_array.min(axis=0), 1), "max": _rounded(extents_array.max(axis=0), 1)},
        "body_volume_ml": [round(float(min(volumes)), 1), round(float(max(volumes)), 1)],
        "contrast": {
            **CONTRAST_SETTINGS,
            "channels": [
                {"histogram": _rounded(mean[c], 6),
                 "training_distance_max": round(max(wasserstein1(h[c], mean[c], CONTRAST_SETTINGS) for h in stacked), 4)}
                for c in range(mean.shape[0])
            ],
        },
    }


def _rounded(values: Iterable[float], digits: int) -> List[float]:
    return [round(float(v), digits) for v in values]
