"""Checks, before the network runs, that a scan is the kind of scan the model was trained on.

A generator gives an answer for any input, and a confident-looking synthetic CT from a CT, from a
skull-stripped brain or from a 30 mm slab is worse than none. :func:`check_scan` compares the scan (as the
pipeline prepared it: normalised channels, body mask, network grid) with what the model card says about its
training inputs and returns a :class:`ScanReport`: one :class:`ScanWarning` per problem (code, what is wrong,
what to do), the checks that could not run and why, and the measurements behind them.

The checks:

- ``modality_mismatch``: the DICOM Modality tag (``0008|0060``), or, without one, the histogram: a scan with a
  large share of voxels near -1000 and values below -500 is in Hounsfield units, i.e. a CT.
- ``skull_stripped``: for inputs the card declares ``anatomy: whole_head``, a body smaller than a head that
  lacks the bright scalp fat under its surface.
- ``field_of_view``: the body's extent along each anatomical axis against the training inputs'.
- ``spacing``: the voxel spacing against the training inputs'.
- ``intensity_distribution``: the contrast of the head's core (where the brain is) against the training
  inputs', as a Wasserstein-1 distance.
- ``irregular_geometry``: the image reader's note (metadata key ``MedGANTranslate.InputWarning``) that it had
  to regularise a tilted or unevenly spaced series.
- ``input_overlap``: for multi-input models, each later input's field of view against the body found on the
  first (refused before this when it holds none of the first's field of view).

:func:`check_reference` checks a reference given for metrics the same way (``reference_modality`` against the
model's output modality, ``reference_overlap``); a reference that fails them gets no metrics, and the reason.

``field_of_view``, ``spacing`` and ``intensity_distribution`` need the card's ``training_inputs`` block, which
:func:`reference_statistics` computes from the training inputs; without it they are skipped, and the report says
so (as it does for ``skull_stripped`` when no input is declared a whole head).

The thresholds are measured, not guessed: ``benchmarks/scan_check_calibration.py`` prints every measurement on
the phantoms and the real scans, and the comment of each constant gives the margins it had.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from .body_mask import foreground_bounds
from .card import InputSpec, ModelCard
from .network_grid import NetworkGrid

#: Metadata key in which an image reader leaves a note about a series it had to regularise.
INPUT_WARNING_KEY = "MedGANTranslate.InputWarning"
DICOM_MODALITY_TAG = "0008|0060"
#: DICOM Modality codes (0008,0060) of each card modality.
DICOM_MODALITIES = {"MR": ("MR",), "CT": ("CT",), "CBCT": ("CT",), "PET": ("PT",), "SPECT": ("NM",), "US": ("US",)}

#: Hounsfield air: a CT has at least this share of its voxels within ``HU_AIR_WINDOW`` of -1000 (the air
#: around and inside the head) and its 1st percentile below ``HU_BELOW``. Measured: the GE head CT 27 % (its
#: padding outside the reconstruction circle is at -1500), the MNI-space average CT 32 %, the phantom CT 66 %;
#: MR scans 0 % (none reaches below -500).
HU_AIR_SHARE = 0.05
HU_AIR_WINDOW = (-1100.0, -900.0)
HU_BELOW = -500.0

#: Spacing of the grid the shape measurements work on (mm): depth below the surface, extents, the head's
#: core. About the body mask's own working spacing, so 2 mm structures (scalp fat) still show.
WORKING_SPACING_MM = 2.0

#: Skull stripping: a body smaller than ``BRAIN_ONLY_MAX_ML`` without a bright layer under its surface. A
#: brain's mask holds 1.1-1.6 L of brain plus the mask's margin; a head with scalp and skull, 3-5 L when the field
#: of view covers it. Scalp fat is the brightest tissue of a T1w head and lies in a continuous layer under the
#: skin, so some ``SCALP_LAYER_STEP_MM`` layer within ``SCALP_DEPTH_MM`` of the surface is largely brighter than
#: ``SCALP_BRIGHT_QUANTILE`` of the body; under a bare brain's surface lie cortex and CSF, with white matter only
#: in the gyri. Both conditions must hold, so a head cut by its field of view (small, but with its scalp) or a
#: large brain (no scalp, but big) is not called skull-stripped. Measured (benchmarks/scan_check_calibration.py):
#: skull-stripped brains 1.35-1.91 L with a brightest layer of 0.08-0.14; whole heads 2.62-5.68 L (the smallest a
#: 2D scan holding 117 mm of the head) with 0.38-0.78.
BRAIN_ONLY_MAX_ML = 2200.0
SCALP_BRIGHT_MIN = 0.25
SCALP_DEPTH_MM = 12.0
SCALP_LAYER_STEP_MM = 2.0
SCALP_BRIGHT_QUANTILE = 0.9

#: Field of view: warn when the body spans less than this fraction of the smallest training body along an
#: anatomical axis. The real whole heads reach down to 0.70 of it (a 2D scan holding 117 mm of the head from top
#: to bottom); a 30 mm slab is at 0.17.
EXTENT_MIN_FRACTION = 0.5
AXIS_NAMES = ("left-right", "anterior-posterior", "superior-inferior")

#: Spacing: warn when a voxel side is more than this factor coarser than the coarsest training spacing, or
#: finer than the finest by it. The coarsest routine scans here, 3 mm 2D T1w slices, are 3x the bundled models'
#: 1 mm; at more than 4x the network grid interpolates at least three of every four planes, so the skull and
#: the sinus walls (2-7 mm) are smeared in a way the network never saw. 7 mm slices warn.
SPACING_MAX_FACTOR = 4.0

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

#: Coverage: a scan covers the body when at least this share of the body (found on the first input) lies in its
#: field of view. Over the rest, a later input of a multi-input model gives the network only padding (its darkest
#: value), and a reference gives metrics of part of the body only.
COVERED_SHARE = 0.95
#: Below this share of the body in the reference's field of view, metrics against it are left out: they would
#: describe another region than the synthetic image, or compare it with padding.
REFERENCE_MIN_SHARE = 0.5

#: A voxel further than this many robust ranges (0.01st to 99.99th percentile) beyond that range holds an
#: absurd value: one at 1e6 in a head of values up to 1000 once emptied the body mask. The mask and the
#: normalisation ignore such voxels, but a scan that holds them may be corrupt. Real scans' maxima lie within
#: 1 range of their 99.99th percentile (the Philips MPRAGE: 1.6e5 against 1.3e5).
OUTLIER_RANGES = 10.0

CHECKS = ("modality_mismatch", "skull_stripped", "field_of_view", "spacing", "intensity_distribution",
          "irregular_geometry", "input_overlap", "reference_modality", "reference_overlap", "intensity_outliers")


@dataclass(frozen=True)
class ScanWarning:
    """One reason to distrust a translation of this scan: ``code`` (one of :data:`CHECKS`), ``message`` (what
    was found, with the numbers), ``advice`` (what to do), ``input`` (the card input it is about, if any)."""

    code: str
    message: str
    advice: str
    input: str = ""

    def text(self) -> str:
        return f"{self.message} {self.advice}"

    def to_dict(self) -> Dict[str, str]:
        return asdict(self)


WarningCallback = Callable[[ScanWarning], None]


@dataclass
class ScanReport:
    """What :func:`check_scan` found: ``warnings``, ``skipped`` (check → why it could not run) and the
    ``measurements`` behind both (printed by the calibration script)."""

    warnings: List[ScanWarning] = field(default_factory=list)
    skipped: Dict[str, str] = field(default_factory=dict)
    measurements: Dict[str, Any] = field(default_factory=dict)

    def skipped_text(self) -> str:
        """The checks that did not run, grouped by reason: 'a, b (reason); c (other reason)'."""
        by_reason: Dict[str, List[str]] = {}
        for check, reason in self.skipped.items():
            by_reason.setdefault(reason, []).append(check)
        return "; ".join(f"{', '.join(checks)} ({reason})" for reason, checks in by_reason.items())

    def provenance(self) -> Dict[str, str]:
        """Output metadata: the warnings and the checks that did not run, as JSON lists."""
        return {
            "MedGANTranslate.Warnings": json.dumps([w.to_dict() for w in self.warnings], sort_keys=True),
            "MedGANTranslate.ChecksNotRun": json.dumps(
                [{"check": k, "reason": v} for k, v in self.skipped.items()], sort_keys=True),
        }


# ---------------------------------------------------------------------------------------------- the body


@dataclass(frozen=True)
class BodySample:
    """The body on a grid of about :data:`WORKING_SPACING_MM`: its normalised channels (C, z, y, x, every
    ``factors``-th voxel), mask, depth under the surface (mm), height below the body's top (mm) and extent
    along the anatomical axes, plus the full-resolution body volume."""

    channels: np.ndarray
    mask: np.ndarray
    depth_mm: np.ndarray
    below_top_mm: np.ndarray
    extent_mm: Tuple[float, float, float]
    voxel_ml: float
    volume_ml: float

    @classmethod
    def of(cls, volume: np.ndarray, mask: np.ndarray, grid: NetworkGrid) -> "BodySample":
        spacing = np.asarray(grid.spacing, dtype=float)
        factors, step = _working_step(spacing)
        coarse = np.asarray(mask[step], dtype=bool)
        if not coarse.any():
            raise ValueError("The body mask is empty; there is no body to check.")
        coarse_spacing = spacing * factors
        direction = np.asarray(grid.direction, dtype=float).reshape(3, 3)
        superior = _superior_mm(coarse.shape, coarse_spacing, direction)
        voxel_ml = float(np.prod(spacing)) / 1000.0
        return cls(volume[(slice(None),) + step], coarse, _depth_mm(coarse, coarse_spacing),
                   superior[coarse].max() - superior, _extent_mm(coarse, coarse_spacing, direction),
                   voxel_ml * float(np.prod(factors)), voxel_ml * float(np.count_nonzero(mask)))

    def layers(self, depth_mm: float, step_mm: float) -> Iterator[np.ndarray]:
        """Boolean (z, y, x) selections of the body's layers ``step_mm`` thick down to ``depth_mm``."""
        for top in np.arange(0.0, depth_mm, step_mm):
            yield self.mask & (self.depth_mm > top) & (self.depth_mm <= top + step_mm)

    def core(self, settings: Mapping[str, Any]) -> np.ndarray:
        """Boolean (z, y, x) selection of the head's core (see :data:`CONTRAST_SETTINGS`)."""
        return (self.mask & (self.depth_mm >= float(settings["core_depth_mm"]))
                & (self.below_top_mm <= float(settings["core_below_top_mm"])))


def _working_step(spacing: Sequence[float]) -> Tuple[List[int], Tuple[slice, ...]]:
    """Voxel steps (x, y, z) that sample a grid of ``spacing`` about every :data:`WORKING_SPACING_MM`, and the
    (z, y, x) slices that take them from an array."""
    factors = [max(1, int(WORKING_SPACING_MM // s)) for s in spacing]
    return factors, tuple(slice(None, None, f) for f in factors[::-1])


def _depth_mm(mask: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance (mm) from each body voxel to the nearest voxel outside the body, 0 outside: SciPy's Euclidean
    distance transform, computed by ITK's signed Maurer distance of the background (threaded: 0.08 s instead of
    0.13 s on a 2 mm head) on the body's bounding box. Faces of the field of view are not surface: a head cut
    at the neck keeps its core where it was."""
    lo, hi = foreground_bounds(mask)
    padded = np.pad(~mask, 1, constant_values=False)  # the field of view's faces: body continues beyond them
    box = tuple(slice(a, b + 2) for a, b in zip(lo, hi))  # one voxel beyond the body on each side
    image = sitk.GetImageFromArray(padded[box].view(np.uint8))
    image.SetSpacing([float(s) for s in spacing])
    distance = sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    depth = np.zeros(mask.shape, np.float32)
    inner = tuple(slice(a, b) for a, b in zip(lo, hi))
    depth[inner] = sitk.GetArrayViewFromImage(distance)[1:-1, 1:-1, 1:-1]
    depth[~mask] = 0.0
    return depth


def _superior_mm(shape: Sequence[int], spacing: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Each voxel's physical superior coordinate (LPS z, mm) up to a constant, on a (z, y, x) array."""
    axes = [np.arange(n) * s * direction[2, i] for i, (n, s) in enumerate(zip(shape[::-1], spacing))]
    return axes[2][:, None, None] + axes[1][None, :, None] + axes[0][None, None, :]


def _extent_mm(mask: np.ndarray, spacing: np.ndarray, direction: np.ndarray) -> Tuple[float, float, float]:
    """The body's extent along left-right, anterior-posterior and superior-inferior (mm): from the far side of its
    first voxel to the far side of its last. A coordinate is linear along each row of voxels, so its extremes over
    the body lie at the rows' first and last body voxels: two points per row instead of every voxel, and exact
    on oblique grids too."""
    rows = np.nonzero(mask.any(axis=2))
    first = np.argmax(mask, axis=2)[rows]
    last = mask.shape[2] - 1 - np.argmax(mask[:, :, ::-1], axis=2)[rows]
    ends = np.concatenate([np.stack([first, rows[1], rows[0]], axis=1), np.stack([last, rows[1], rows[0]], axis=1)])
    points = (ends * spacing) @ direction.T
    voxel = np.abs(direction) @ spacing  # one voxel's extent along each physical axis
    return tuple(float(v) for v in points.max(axis=0) - points.min(axis=0) + voxel)


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


def scalp_bright_fraction(sample: BodySample, channel: int) -> float:
    """The largest share, among the layers within :data:`SCALP_DEPTH_MM` of the surface, of voxels brighter than
    :data:`SCALP_BRIGHT_QUANTILE` of the body: high where scalp fat lies over the skull, low over a bare brain's
    cortex. The layer is found wherever it lies, so it does not matter how far outside the skin the mask ends."""
    values = sample.channels[channel]
    bright = values > np.quantile(values[sample.mask], SCALP_BRIGHT_QUANTILE)
    shares = [float(np.mean(bright[layer])) for layer in sample.layers(SCALP_DEPTH_MM, SCALP_LAYER_STEP_MM)
              if layer.any()]
    return max(shares, default=0.0)


# ---------------------------------------------------------------------------------------------- coverage


def _transformed(vectors: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``vectors @ matrix.T`` for (n, 3) vectors, as three broadcast products: 15x faster than BLAS's matrix
    product on such thin arrays (1.5 instead of 25 ms for a head's 74 000 points)."""
    return sum(vectors[:, j:j + 1] * matrix[:, j] for j in range(3))


def _physical(index: np.ndarray, origin: Sequence[float], spacing: Sequence[float],
              direction: Sequence[float]) -> np.ndarray:
    """Physical points (n, 3; LPS mm) of voxel indices (n, 3; x, y, z) on a grid."""
    matrix = np.asarray(direction, dtype=float).reshape(3, 3) * np.asarray(spacing, dtype=float)
    return np.asarray(origin, dtype=float) + _transformed(index, matrix)


def body_points(mask: np.ndarray, grid: NetworkGrid, most: int = 1 << 16) -> np.ndarray:
    """Physical points (n, 3) of the body: the voxels of ``mask`` (z, y, x, on the network grid), sampled about
    every :data:`WORKING_SPACING_MM`, and evenly thinned to at most about ``most`` (a share to a percent needs
    no more; a 1 mm head has 370 000 at 2 mm)."""
    factors, step = _working_step(grid.spacing)
    coarse = mask[step]
    voxels = np.flatnonzero(coarse)
    voxels = voxels[:: max(1, len(voxels) // most)]
    index = np.stack(np.unravel_index(voxels, coarse.shape)[::-1], axis=1) * np.asarray(factors)
    return _physical(index, grid.origin, grid.spacing, grid.direction)


def field_points(image: sitk.Image, per_axis: int = 32) -> np.ndarray:
    """Physical points (n, 3) of a lattice of about ``per_axis`` voxel centres along each axis spanning
    ``image``'s field of view, corners included."""
    axes = [np.unique(np.round(np.linspace(0, n - 1, min(n, per_axis)))) for n in image.GetSize()]
    index = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    return _physical(index, image.GetOrigin(), image.GetSpacing(), image.GetDirection())


def share_inside(image: sitk.Image, points: np.ndarray) -> float:
    """Share of ``points`` (n, 3; physical) in ``image``'s field of view: within half a voxel of its voxel
    centres, where ITK's resampling (and so the pipeline) finds values of the image rather than padding."""
    if len(points) == 0:
        return 0.0
    matrix = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3) * np.asarray(image.GetSpacing(), dtype=float)
    index = _transformed(points - np.asarray(image.GetOrigin(), dtype=float), np.linalg.inv(matrix))
    inside = np.all((index >= -0.5) & (index < np.asarray(image.GetSize(), dtype=float) - 0.5), axis=1)
    return float(np.mean(inside))


def check_input_overlap(specs: Sequence[InputSpec], images: Sequence[sitk.Image],
                        points: np.ndarray) -> Tuple[List[ScanWarning], List[float]]:
    """For each input after the first: a warning when its field of view holds less than :data:`COVERED_SHARE`
    of the body (``points``, found on the first input), and that share."""
    first, warnings, shares = specs[0], [], []
    for spec, image in zip(specs[1:], images[1:]):
        share = share_inside(image, points)
        shares.append(share)
        if share < COVERED_SHARE:
            warnings.append(ScanWarning(
                "input_overlap",
                f"Input '{spec.name}' covers only {100 * share:.0f} % of the body in input '{first.name}': where it "
                "has no data the model sees padding instead, so the synthetic image there is unreliable.",
                f"Give a {spec.label} scan of the same region as '{first.name}', in the same physical coordinates "
                "(the same session, or registered to it).",
                spec.name,
            ))
    return warnings, shares


# ---------------------------------------------------------------------------------------------- modality


def dicom_modality(image: sitk.Image) -> str:
    """The DICOM Modality tag an image read from DICOM carries (upper case), or ''."""
    return image.GetMetaData(DICOM_MODALITY_TAG).strip().upper() if image.HasMetaDataKey(DICOM_MODALITY_TAG) else ""


def hounsfield_air_share(image: sitk.Image) -> float:
    """Share of voxels in :data:`HU_AIR_WINDOW` when the 1st percentile is below :data:`HU_BELOW` (else 0), on
    a strided sample of about a million voxels."""
    flat = sitk.GetArrayViewFromImage(image).ravel()
    sample = flat[:: max(1, flat.size >> 20)].astype(np.float32)
    if np.quantile(sample, 0.01) >= HU_BELOW:
        return 0.0
    low, high = HU_AIR_WINDOW
    return float(np.mean((sample >= low) & (sample <= high)))


def modality_evidence(modality: str, image: sitk.Image) -> Tuple[str, float]:
    """What says that ``image`` is not a scan of ``modality`` ('' when nothing does), and the share of
    Hounsfield air found. The DICOM tag decides when there is one; otherwise Hounsfield air means CT, and its
    absence means not CT."""
    tag = dicom_modality(image)
    share = hounsfield_air_share(image)
    is_ct = modality in ("CT", "CBCT")
    if tag:
        wrong = tag not in DICOM_MODALITIES.get(modality, (tag,))
        evidence = f"its DICOM Modality tag says {tag}"
    elif share >= HU_AIR_SHARE:
        wrong = not is_ct
        evidence = f"it looks like a CT: {100 * share:.0f} % of its voxels lie near -1000, as air does in Hounsfield units"
    else:
        wrong = is_ct
        evidence = (f"it does not look like a CT: {100 * share:.0f} % of its voxels lie near -1000, where a CT's air "
                    f"puts {100 * HU_AIR_SHARE:.0f} % or more")
    return (evidence if wrong else ""), share


def check_modality(spec: InputSpec, image: sitk.Image) -> Tuple[Optional[ScanWarning], float]:
    """A warning when the scan is not of the modality the input expects (:func:`modality_evidence`), and the
    share of Hounsfield air found."""
    evidence, share = modality_evidence(spec.modality, image)
    if not evidence:
        return None, share
    return ScanWarning(
        "modality_mismatch",
        f"Input '{spec.name}' should be {spec.label}, but {evidence}.",
        f"Give the {spec.label} scan this model was trained on.",
        spec.name,
    ), share


def check_outliers(spec: InputSpec, image: sitk.Image) -> Optional[ScanWarning]:
    """A warning when some voxels lie absurdly far outside the scan's own intensity range
    (:data:`OUTLIER_RANGES`): the robust steps ignore them, but the user should know the scan holds them."""
    values = sitk.GetArrayViewFromImage(image)
    flat = values.ravel()
    low, high = np.percentile(flat[:: max(1, flat.size >> 21)], [0.01, 99.99])
    span = OUTLIER_RANGES * max(float(high - low), 1e-6)
    if values.min() >= low - span and values.max() <= high + span:
        return None
    far = (values < low - span) | (values > high + span)
    extreme = float(values[far].max() if values.max() > high + span else values[far].min())
    return ScanWarning(
        "intensity_outliers",
        f"Input '{spec.name}' holds {int(np.count_nonzero(far))} voxel(s) far outside its intensity range (e.g. "
        f"{extreme:.3g}, while 99.98 % of its voxels lie within [{low:.4g}, {high:.4g}]); the body mask and the "
        "normalisation ignored them.",
        "Check the scan for a corrupt slice or a wrong scale before relying on the result.",
        spec.name,
    )


# ---------------------------------------------------------------------------------------------- shape


def check_skull_stripped(spec: InputSpec, sample: BodySample, channel: int) -> Tuple[Optional[ScanWarning], float]:
    """For whole-head inputs: a warning when the body is brain-sized and has no scalp fat under its surface."""
    bright = scalp_bright_fraction(sample, channel)
    if sample.volume_ml >= BRAIN_ONLY_MAX_ML or bright >= SCALP_BRIGHT_MIN:
        return None, bright
    return ScanWarning(
        "skull_stripped",
        f"Input '{spec.name}' looks skull-stripped: its body holds {sample.volume_ml / 1000:.2f} L (a head with "
        f"scalp and skull holds 3-5 L) and no layer under its surface is bright as scalp fat is (at most "
        f"{100 * bright:.0f} % of a layer; whole heads: {100 * SCALP_BRIGHT_MIN:.0f} % or more).",
        "This model was trained on whole heads; give the scan before skull stripping.",
        spec.name,
    ), bright


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


def check_spacing(spec: InputSpec, image: sitk.Image, reference: Mapping[str, Any]) -> Optional[ScanWarning]:
    """A warning when the input's voxels are more than :data:`SPACING_MAX_FACTOR` coarser (or finer) than the
    training inputs' along any axis."""
    finest, coarsest = (float(v) for v in reference["spacing_mm"])
    spacing = image.GetSpacing()
    if max(spacing) <= SPACING_MAX_FACTOR * coarsest and min(spacing) * SPACING_MAX_FACTOR >= finest:
        return None
    shown = " × ".join(f"{s:.3g}" for s in spacing)
    trained = f"{finest:g} mm" if finest == coarsest else f"{finest:g}-{coarsest:g} mm"
    return ScanWarning(
        "spacing",
        f"Input '{spec.name}' has {shown} mm voxels, more than {SPACING_MAX_FACTOR:g}x the {trained} the model was "
        "trained on: structures thinner than a voxel (skull, sinus walls) look unlike anything it has seen.",
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


def check_input_notes(specs: Sequence[InputSpec], images: Sequence[sitk.Image]) -> List[ScanWarning]:
    """The image reader's notes about series it had to regularise, passed on."""
    return [
        ScanWarning("irregular_geometry", f"Input '{spec.name}': {image.GetMetaData(INPUT_WARNING_KEY).strip().rstrip('.')}.",
                    "Compare the result with the original slices before relying on it.", spec.name)
        for spec, image in zip(specs, images) if image.HasMetaDataKey(INPUT_WARNING_KEY)
    ]


# ---------------------------------------------------------------------------------------------- entry point


def check_scan(card: ModelCard, images: Sequence[sitk.Image], volume: np.ndarray, mask: np.ndarray,
               grid: NetworkGrid) -> ScanReport:
    """Runs every check on a scan as the pipeline prepared it: ``images`` as read, ``volume`` the normalised
    channels (C, z, y, x) on the network grid, ``mask`` the body mask (z, y, x) on it. The checks that need the
    card's ``training_inputs`` are skipped, with the reason, when it has none."""
    report = ScanReport()
    specs = card.inputs
    sample = BodySample.of(volume, mask, grid)
    report.measurements.update(body_volume_ml=round(sample.volume_ml, 1),
                               extent_mm=[round(e, 1) for e in sample.extent_mm],
                               spacing_mm=[round(s, 4) for s in images[0].GetSpacing()])
    air = []
    for spec, image in zip(specs, images):
        warning, share = check_modality(spec, image)
        air.append(round(share, 4))
        _add(report, warning)
        _add(report, check_outliers(spec, image))
    report.measurements["hounsfield_air_share"] = air
    _check_anatomy(report, specs, sample)
    if len(specs) > 1:
        warnings, shares = check_input_overlap(specs, images, body_points(mask, grid))
        report.warnings.extend(warnings)
        report.measurements["input_body_share"] = [round(s, 4) for s in shares]
    reference = card.training_inputs
    if reference is None:
        reason = "the model card has no training_inputs block: 'medgan-translate models describe-training' adds it"
        report.skipped.update({name: reason for name in ("field_of_view", "spacing", "intensity_distribution")})
    else:
        _check_against_training(report, specs, images, sample, reference)
    report.warnings.extend(check_input_notes(specs, images))
    return report


def _add(report: ScanReport, warning: Optional[ScanWarning]) -> None:
    if warning is not None:
        report.warnings.append(warning)


def _check_anatomy(report: ScanReport, specs: Sequence[InputSpec], sample: BodySample) -> None:
    heads = [(i, spec) for i, spec in enumerate(specs) if spec.anatomy == "whole_head"]
    if not heads:
        report.skipped["skull_stripped"] = "no input of the model card is declared anatomy: whole_head"
        return
    fractions = []
    for channel, spec in heads:
        warning, bright = check_skull_stripped(spec, sample, channel)
        fractions.append(round(bright, 3))
        _add(report, warning)
    report.measurements["scalp_bright_fraction"] = fractions


def _check_against_training(report: ScanReport, specs: Sequence[InputSpec], images: Sequence[sitk.Image],
                            sample: BodySample, reference: Mapping[str, Any]) -> None:
    warnings, fractions = check_field_of_view(sample, reference)
    report.warnings.extend(warnings)
    report.measurements["extent_fraction"] = [round(f, 3) for f in fractions]
    for spec, image in zip(specs, images):
        _add(report, check_spacing(spec, image, reference))
    contrast = reference["contrast"]
    histograms = core_contrast(sample, contrast)
    if histograms is None:
        report.skipped["intensity_distribution"] = (
            f"the body has less than {CORE_MIN_ML:g} mL at least {contrast['core_depth_mm']:g} mm under its surface "
            "to compare")
        return
    distances = []
    for spec, histogram, channel in zip(specs, histograms, contrast["channels"]):
        warning, distance = check_intensity(spec, histogram, contrast, channel)
        distances.append(round(distance, 4))
        _add(report, warning)
    report.measurements["contrast_distance"] = distances


# ---------------------------------------------------------------------------------------------- the reference


@dataclass(frozen=True)
class ReferenceCheck:
    """What :func:`check_reference` found: its warnings, the share of the body in the reference's field of
    view, and why metrics against it are left out ('' when they mean something)."""

    warnings: List[ScanWarning]
    body_share: float
    omitted: str


def check_reference(card: ModelCard, reference: sitk.Image, mask: np.ndarray, grid: NetworkGrid) -> ReferenceCheck:
    """Whether a reference (a real scan to compute metrics against) can be compared with the synthetic image:
    it must be of the model's output modality (:func:`modality_evidence`) and its field of view must hold at
    least :data:`REFERENCE_MIN_SHARE` of the body (``mask`` on the network grid); otherwise metrics and the
    difference map are left out. Under :data:`COVERED_SHARE` they cover the overlap only, and a warning says so."""
    output, first = card.output["modality"], card.inputs[0].name
    blocking, warnings = [], []
    evidence, _ = modality_evidence(output, reference)
    if evidence:
        blocking.append(ScanWarning(
            "reference_modality",
            f"The reference should be {output}, as the model's output is, but {evidence}. Metrics and the difference "
            "map against it are left out.",
            f"Give a real {output} scan of the same patient as the reference.",
            "reference",
        ))
    share = share_inside(reference, body_points(mask, grid))
    if share < COVERED_SHARE:
        partial = share >= REFERENCE_MIN_SHARE
        (warnings if partial else blocking).append(ScanWarning(
            "reference_overlap",
            f"The reference's field of view holds {100 * share:.0f} % of the body in input '{first}': "
            + ("metrics and the difference map cover only that part." if partial else
               "metrics and the difference map against it are left out, as they would compare the synthetic image "
               "with another region or with padding."),
            f"Give a reference of the same region as '{first}', in the same physical coordinates (the same patient, "
            "registered to it).",
            "reference",
        ))
    return ReferenceCheck(blocking + warnings, share, " ".join(w.message for w in blocking))


# ---------------------------------------------------------------------------------------------- references


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
