"""Real native / post-contrast T1w pairs (``real-data/t1c``): reading, alignment check, brain and normal-appearing
white matter masks, and the one intensity scale that the T1c model, its training and its real-data yardstick
(``benchmarks/t1c_real.py``) share.

The T1c model works on the phantom's MR scale (0-1600 a.u.), while real scans come on any scale (the BraTS T1 has
white matter near 1000, the open_ms MNI T1 near 360, and each post-contrast scan its own gain). Its card (since
v1.2.0) puts any T1w there by the engine's white-matter estimate (:mod:`MedGANTranslateLib.white_matter`, 20 mm
deep); here, for the pairs, one linear factor per image does it with the whole brain: its *normal-appearing white
matter* (NAWM) median becomes :data:`PHANTOM_NAWM_T1`, the value the same estimator gives on the training
phantoms' brains (the engine then finds the scaled T1's white matter within 4 % of it). Post-contrast scans are
put on it the same way, with the NAWM found on the native T1 (white matter barely enhances; its own few per cent
of enhancement are scaled away with the scanner's gain), so on a pair "T1c minus T1" is the enhancement relative to
white matter, as in the phantom, where white matter keeps its value and only the tumour rim, scalp and muscle
change.

Definitions (all on the native T1's grid):

- *brain*: voxels where both the T1 and the (aligned) T1c are above 0 (the pairs are skull-stripped), the largest
  connected piece with its holes filled, eroded by :data:`BRAIN_EROSION_MM` (the stripping edge and the partial
  volume at it are left out);
- *NAWM*: the brightest of three intensity classes of the T1 inside the whole brain (the engine's
  :func:`~MedGANTranslateLib.white_matter.nawm_mask`: CSF, grey matter, white matter), eroded by one voxel; its
  median is the image's white-matter value. It is found on the T1 alone, so it is the same voxels for every T1c
  (true, predicted, baseline) compared;
- *alignment*: the pairs come co-registered. :func:`check_alignment` registers the T1c rigidly to the T1 (Mattes
  mutual information, 2 mm copies) and reports how far that moves the brain; at or under
  :data:`ALIGN_TOLERANCE_MM` the T1c is used as it is, beyond it resampled through the found transform.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..white_matter import nawm_mask

#: Median T1w of the training phantoms' NAWM: :func:`nawm_mask` on the brain labels (CSF, grey and white matter,
#: ventricles, tumour; eroded by 2 voxels) of phantoms 100-111 gives 679-941 a.u., mean 812 (each phantom draws
#: its white matter around 780 a.u. and shades it with its bias field); ``tests/test_t1c_real.py`` re-measures it.
PHANTOM_NAWM_T1 = 810.0
BRAIN_EROSION_MM = 2.0
ALIGN_TOLERANCE_MM = 1.0


@dataclass(frozen=True)
class RealPair:
    name: str
    t1: str  #: path under the real-data folder
    t1c: str
    what: str
    licence: str


PAIRS: Dict[str, RealPair] = {
    "brats_gli_00001": RealPair(
        "brats_gli_00001", "t1c/brats_gli_00001_t1n.nii.gz", "t1c/brats_gli_00001_t1c.nii.gz",
        "BraTS glioma patient, native and post-gadolinium T1, skull-stripped, 1 mm",
        "BraTS data terms: use from the shared folder, do not commit"),
    "open_ms_patient07": RealPair(
        "open_ms_patient07", "t1c/open_ms_patient07_T1_mni.nii.gz", "t1c/open_ms_patient07_T1POST_mni.nii.gz",
        "MS patient (open_ms_data), T1 and post-contrast T1, brain only, MNI space, 1 mm",
        "CC-BY (Lesjak et al., Neuroinformatics 2018)"),
}


def real_data_root(root: "str | Path | None" = None) -> Path:
    """``root``, else ``MEDGAN_REAL_DATA``, else ``shared/real-data`` beside the repository (as the tests look)."""
    if root:
        return Path(root)
    if os.environ.get("MEDGAN_REAL_DATA"):
        return Path(os.environ["MEDGAN_REAL_DATA"])
    return Path(__file__).resolve().parents[4] / "shared" / "real-data"


def pair_files(name: str, root: "str | Path | None" = None) -> Tuple[Path, Path]:
    if name not in PAIRS:
        raise KeyError(f"Unknown real pair {name!r}; known: {', '.join(PAIRS)}.")
    base = real_data_root(root)
    return base / PAIRS[name].t1, base / PAIRS[name].t1c


def read_pair(name: str, root: "str | Path | None" = None) -> Tuple[sitk.Image, sitk.Image]:
    """The pair's T1 and T1c as float32 images, negative values (interpolation ringing in the MNI pair) set to 0."""
    out = []
    for path in pair_files(name, root):
        if not path.is_file():
            raise FileNotFoundError(f"Real pair {name}: {path} not found (set MEDGAN_REAL_DATA to the real-data folder).")
        out.append(sitk.Maximum(sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkFloat32), 0.0))
    return out[0], out[1]


# ------------------------------------------------------------------------------------------------ alignment


def _two_mm(image: sitk.Image) -> sitk.Image:
    smooth = sitk.SmoothingRecursiveGaussian(image, 1.0)
    size = [max(2, int(round(n * s / 2.0))) for n, s in zip(image.GetSize(), image.GetSpacing())]
    return sitk.Resample(smooth, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), [2.0] * 3,
                         image.GetDirection(), 0.0, sitk.sitkFloat32)


def check_alignment(t1: sitk.Image, t1c: sitk.Image, seed: int = 7) -> Dict[str, Any]:
    """Rigid registration of ``t1c`` to ``t1`` (Mattes MI, 32 bins, 2 mm copies, shrink 2 then 1, centred on the
    geometric centre, from the identity) and how far it moves things: ``translation_mm``, ``rotation_deg`` and
    ``max_shift_mm``, the largest displacement of the T1's brain bounding-box corners. ``transform``: the
    Euler3DTransform (T1 points to T1c points)."""
    fixed, moving = _two_mm(t1), _two_mm(t1c)
    transform = sitk.Euler3DTransform()
    transform.SetCenter(fixed.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2.0 for n in fixed.GetSize()]))
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.2, seed)
    method.SetMetricFixedMask(sitk.Cast(fixed > 0, sitk.sitkUInt8))
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(1.0, 1e-3, 150)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([1.0, 0.0])
    method.SetInitialTransform(transform, inPlace=True)
    method.Execute(fixed, moving)
    values = sitk.GetArrayViewFromImage(t1)
    lo, hi = _bounds(values > 0)
    corners = [t1.TransformIndexToPhysicalPoint([int(c[2]), int(c[1]), int(c[0])])
               for c in np.array(np.meshgrid(*zip(lo, hi), indexing="ij")).reshape(3, -1).T]
    shift = max(float(np.linalg.norm(np.subtract(transform.TransformPoint(p), p))) for p in corners)
    angles = transform.GetParameters()[:3]
    return {"translation_mm": [round(float(t), 3) for t in transform.GetTranslation()],
            "rotation_deg": [round(math.degrees(a), 3) for a in angles],
            "max_shift_mm": round(shift, 3), "transform": transform}


def _bounds(mask: np.ndarray) -> Tuple[Sequence[int], Sequence[int]]:
    idx = np.argwhere(mask)
    return idx.min(0), idx.max(0)


def align(t1: sitk.Image, t1c: sitk.Image, tolerance_mm: float = ALIGN_TOLERANCE_MM) -> Tuple[sitk.Image, Dict[str, Any]]:
    """The T1c on the T1's grid: as it is when :func:`check_alignment` moves the brain by at most ``tolerance_mm``
    (the pairs' own registration is kept; a re-registration would only add interpolation), else resampled
    (linear) through the rigid transform. The report says which (``resampled``)."""
    report = check_alignment(t1, t1c)
    transform = report.pop("transform")
    moved = report["max_shift_mm"] > tolerance_mm
    same_grid = (t1.GetSize() == t1c.GetSize() and np.allclose(t1.GetOrigin(), t1c.GetOrigin())
                 and np.allclose(t1.GetSpacing(), t1c.GetSpacing()) and np.allclose(t1.GetDirection(), t1c.GetDirection()))
    if moved or not same_grid:
        t1c = sitk.Resample(t1c, t1, transform if moved else sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    report["resampled"] = bool(moved)
    return t1c, report


# ------------------------------------------------------------------------------------------------ masks


def _ball(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    z, y, x = np.meshgrid(r, r, r, indexing="ij")
    return z * z + y * y + x * x <= radius * radius


def brain_mask(t1: np.ndarray, t1c: np.ndarray, spacing_mm: float = 1.0,
               erosion_mm: float = BRAIN_EROSION_MM) -> np.ndarray:
    """Both images above 0, largest piece, holes filled, eroded by ``erosion_mm`` (see the module's text)."""
    inside = (t1 > 0) & (t1c > 0)
    labels, count = ndimage.label(inside)
    if count == 0:
        return inside
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    inside = ndimage.binary_fill_holes(labels == int(np.argmax(sizes)))
    radius = int(round(erosion_mm / spacing_mm))
    return ndimage.binary_erosion(inside, _ball(radius)) if radius > 0 else inside


def nawm_value(values: np.ndarray, nawm: np.ndarray) -> float:
    value = float(np.median(values[nawm]))
    if not value > 0:
        raise ValueError("The normal-appearing white matter has no positive median: cannot normalise.")
    return value


# ------------------------------------------------------------------------------------------------ scale


@dataclass
class PreparedPair:
    """A pair on the T1's grid and the phantom's scale, with its masks (arrays are (z, y, x))."""

    name: str
    t1: sitk.Image  #: native T1 times ``t1_factor`` (NAWM at PHANTOM_NAWM_T1)
    t1c: sitk.Image  #: aligned T1c times ``t1c_factor`` (its median over the T1's NAWM at PHANTOM_NAWM_T1)
    brain: np.ndarray
    nawm: np.ndarray
    t1_factor: float
    t1c_factor: float
    alignment: Dict[str, Any]


def scaled(image: sitk.Image, factor: float) -> sitk.Image:
    return sitk.Cast(image, sitk.sitkFloat32) * float(factor)


def prepare_pair(name: str, root: "str | Path | None" = None, check: bool = True) -> PreparedPair:
    """Reads, aligns (``check``: run :func:`align`; without it the T1c is only put on the T1's grid, which the
    yardstick found it already is, within :data:`ALIGN_TOLERANCE_MM`), masks and scales a real pair."""
    t1, t1c = read_pair(name, root)
    if check:
        t1c, report = align(t1, t1c)
    else:
        report = {"checked": False, "resampled": False}
        t1c = sitk.Resample(t1c, t1, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    a1, ac = sitk.GetArrayViewFromImage(t1), sitk.GetArrayViewFromImage(t1c)
    brain = brain_mask(a1, ac, float(min(t1.GetSpacing())))
    nawm = nawm_mask(np.asarray(a1), brain)
    f1 = PHANTOM_NAWM_T1 / nawm_value(a1, nawm)
    fc = PHANTOM_NAWM_T1 / nawm_value(ac, nawm)
    return PreparedPair(name, scaled(t1, f1), scaled(t1c, fc), brain, nawm, f1, fc, report)


def real_pair_volumes(spec: Dict[str, Any], card: Dict[str, Any], input_names: Sequence[str], target_name: str,
                      focus_threshold: Optional[float]):
    """Training volumes (:class:`~.data.Volume`) of the config's ``data.real_pairs`` (``pairs``: names of
    :data:`PAIRS`; ``root``: the real-data folder, default :func:`real_data_root`; ``check_alignment``), each
    pair prepared by :func:`prepare_pair` and then exactly as a phantom is (:func:`~.data.prepare_volume`)."""
    from .data import prepare_volume

    if list(input_names) != ["t1"] or target_name != "t1c":
        raise ValueError("data.real_pairs holds native T1 / T1c pairs: the config's inputs must be [t1] and its target t1c.")
    volumes = []
    for name in spec["pairs"]:
        pair = prepare_pair(name, spec.get("root"), check=bool(spec.get("check_alignment", False)))
        volumes.append(prepare_volume({"t1": pair.t1, "t1c": pair.t1c}, ["t1"], "t1c", card, focus_threshold))
    return volumes


def with_share(phantoms: List[Any], real: List[Any], share: Optional[float]) -> List[Any]:
    """The sampler's volume list with the real volumes repeated so that about ``share`` of the patches come from
    them (the sampler picks a volume uniformly; repeating a volume costs no memory). Without ``share``, each real
    pair counts as one more phantom."""
    if not real:
        return list(phantoms)
    if share is None or not phantoms:
        return list(phantoms) + list(real)
    share = float(share)
    if not 0.0 < share < 1.0:
        raise ValueError("data.real_pairs.share must lie between 0 and 1.")
    copies = max(1, int(round(share / (1.0 - share) * len(phantoms) / len(real))))
    return list(phantoms) + [v for v in real for _ in range(copies)]
