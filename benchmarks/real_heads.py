"""Synthetic CTs of real heads, measured without a CT of the same person (issue 23, item 2).

No real T1w here has a CT of the same head, so a synthetic CT is judged by what any head CT must show, with the
real head CT of ``real-data/ct`` measured by the same code as the reference row, and trivial baselines beside
the models so that a number can be read as "better than nothing" or not.

Where the numbers are taken. Each scan (T1w, or the real CT) is registered affinely to the MNI templates of
``real-data/templates`` (avg152T1 for a T1w, the average head CT ``scct`` in HU for the CT; Mattes mutual
information, similarity then affine, on a 2 mm copy of the scan), and the synthetic CT, the pipeline's body
mask ("the head") and the input are resampled onto a 1 mm grid in template space (linear; the mask nearest
neighbour). Slices are then axial in the template's anatomy, whatever the scan's orientation, slice thickness,
gantry tilt or head pitch, and anatomical levels are template heights z (MNI mm, 0 at the anterior commissure):

- *covered slices*: those where the scan's field of view holds at least 99 % of the template head's cross-section
  (the template CT above -500 HU); only these count, so a scan that cuts the top of the head loses slices, not
  correctness;
- *the head*: the pipeline's body mask of the T1w (the default model's translation's, whichever models are
  measured), or for the real CT the same ``body_mask`` on the CT after its head-holder is removed (see
  :func:`ct_head_mask`), at z from -40 to +65 (skull base, orbits, sinuses and the vault, which every scan
  here covers; the open_ms scans are defaced, so they lack the face);
- *cranial slices*: covered slices at z from +20 to +65, above the orbits, the frontal sinus and the skull
  base, below the vertex: every axial section there shows only scalp, vault and brain;
- *the brain*: where the template's grey + white matter probability is at least 0.5, eroded by 4 mm (so an
  affine registration's error does not reach the inner table), at z from +0 to +65, in covered slices.

The metrics (pure numpy/scipy, importable: :func:`bone_share`, :func:`skull_ring_share`,
:func:`enclosed_share`, :func:`bone_in_region`, :func:`air_in_region`, :func:`wasserstein_hu`):

- ``bone % head`` / ``bone % cranium``: share of the head's voxels above 300 HU, in the head region / in the
  cranial slices;
- ``closed rings %``: share of cranial slices in which the skull forms a closed ring. In one axial slice, bone
  is the head's voxels above 300 HU; the slice's non-bone voxels (inside and outside the head) are split into
  4-connected pieces (so a diagonal step between two bone voxels is no gap), and the pieces not connected to
  the outside of the slice are *enclosed*. The ring is closed when the enclosed voxels of the head make at
  least 25 % of the head's cross-section (a skull around a brain encloses ~40-70 % of it here; a ring
  with one gap, or a few shut pockets of diploe, encloses ~0);
- ``brain bone mL (%)``: voxels above 300 HU in the brain region, in mL of the scan's own space (the
  template grid's voxels times the registration's volume change) and in % of the region (should be ~0; the
  real CT has a few calcifications);
- ``air in solid mL (%)``: voxels below -400 HU where every head is solid: template head voxels whose average CT
  is at least 0 HU and at least 5 mm from any voxel of it below -200 HU (the outside, the sinuses, the airway and
  the mastoids as averaged), and at least 5 mm inside the scan's own head (a head smaller than the template's does
  not count its outside), from the skull base down to the first vertebra (z -70 to +65), in covered slices; in
  mL of the scan's space and % of the region. A model that reads a dark T1w region (clivus, petrous bone, spine,
  signal voids of a low-SNR scan) as a sinus puts air where no head has any; the real CT has some, where its
  sinuses or mastoid cells reach beyond the average's;
- ``W1 head`` / ``W1 brain``: 1-D Wasserstein distance (earth mover's distance, in HU) between the HU histogram
  of the synthetic CT and that of the real head CT in the same region (head, brain), over the slices covered by
  both, values clipped to [-1024, 3071] and binned at 1 HU: the mean number of HU each voxel's value must move
  to turn one distribution into the other.

Baselines, measured with the same code on the same head masks:
- ``bulk water``: the head 0 HU (air -1000 outside), the card's own baseline;
- ``dark rim``: bulk water plus bone where the T1w is dark near the surface: head voxels 3-20 mm deep
  (template-space distance from the outside of the head) darker than 0.4 times their neighbourhood's mean T1w
  (Gaussian, 15 mm) become 650 HU (the real CT's voxels above 300 HU in the cranial slices have a median of
  640 HU);
- ``atlas``: the average head CT (``scct``, in HU) as registered, inside the head: what an affine atlas gives.

    .venv/bin/python benchmarks/real_heads.py [--real-data ../shared/real-data] [--out benchmarks/out/real_heads]
        [--overview docs/images/real_heads.png] [--models mr-t1-to-ct-pix2pix mr-t1-to-ct-cyclegan] [--n4]

prints the phantom goals and the cards' held-out phantom numbers, then a Markdown table (rows: scan x model or
baseline, the real CT as reference; ``s``: the model's translation through ``Translator.translate`` with
default settings, preprocessing to output on the input grid, or with N4 bias-field correction under ``--n4``);
writes ``<scan>.png`` per scan (input T1w and each synthetic CT in a bone window, three template-space planes)
and an overview picture (``overview.png`` there unless ``--overview`` names another place). About 2 minutes on
2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from MedGANTranslateLib.template_atlas import cormack_to_hounsfield

BONE_HU = 300.0  #: bone: above this
CLOSED_SHARE = 0.25  #: a ring is closed when what it encloses is at least this share of the head's section
HEAD_Z = (-40.0, 65.0)  #: template heights (MNI mm) of the head region
CRANIAL_Z = (20.0, 65.0)  #: template heights of the cranial slices
BRAIN_Z = (0.0, 65.0)  #: template heights of the brain region
BRAIN_EROSION_MM = 4.0
SOLID_Z = (-70.0, 65.0)  #: template heights of the solid region (air in solid)
SOLID_MARGIN_MM = 5.0  #: the solid region keeps this far from the template's air and inside the scan's own head
AIR_HU = -400.0
COVERED = 0.99  #: a slice counts when the scan's field of view holds this share of the template head's section
HU_RANGE = (-1024, 3071)  #: the cards' valid CT range; histograms are compared over it
BONE_WINDOW = (-450.0, 1050.0)  #: level 300, width 1500 (the CT cards' display window)
RIM_MM = (3.0, 20.0)  #: dark-rim baseline: depth band under the head's surface
RIM_DARK = 0.4  #: dark-rim baseline: darker than this times the neighbourhood's mean
RIM_SIGMA_MM = 15.0
RIM_BONE_HU = 650.0
MODELS = ("mr-t1-to-ct-pix2pix", "mr-t1-to-ct-cyclegan")
T1_SCANS = ("open_ms_patient01_T1W", "open_ms_patient04_T1W", "philips_adni_mprage_1mm", "siemens_xa30_t1w_2mm")
REAL_CT = "ct/ge_head_ct_dicom"
GOALS = {"mae": 35.0, "bone_dice": 0.85}  #: the project's phantom goals (docs/models.md)


# ---------------------------------------------------------------------------------------------- metrics


def bone_share(ct: np.ndarray, region: np.ndarray, bone_hu: float = BONE_HU) -> float:
    """% of ``region``'s voxels above ``bone_hu`` (nan for an empty region)."""
    values = np.asarray(ct)[np.asarray(region, bool)]
    return 100.0 * float((values > bone_hu).mean()) if values.size else float("nan")


def bone_share_per_slice(ct: np.ndarray, head: np.ndarray, slices: Sequence[int]) -> np.ndarray:
    """:func:`bone_share` of each axial slice (array axis 0) in ``slices``."""
    return np.array([bone_share(ct[z], head[z]) for z in slices])


def enclosed_share(ct_slice: np.ndarray, head_slice: np.ndarray, bone_hu: float = BONE_HU) -> float:
    """Share of one slice's head cross-section that is non-bone cut off from the slice's outside by bone (the
    head's voxels above ``bone_hu``), 4-connected: 0 for a ring with a gap, the inside's share for a closed one."""
    head_slice = np.asarray(head_slice, bool)
    if not head_slice.any():
        return 0.0
    bone = head_slice & (np.asarray(ct_slice) > bone_hu)
    free = np.pad(~bone, 1, constant_values=True)  # the frame joins every piece that reaches the slice's edge
    labels, _ = ndimage.label(free)
    enclosed = (labels != labels[0, 0]) & free
    return float(enclosed[1:-1, 1:-1][head_slice].sum()) / float(head_slice.sum())


def skull_ring_share(ct: np.ndarray, head: np.ndarray, slices: Optional[Sequence[int]] = None,
                     closed_share: float = CLOSED_SHARE, bone_hu: float = BONE_HU) -> float:
    """% of the axial slices (array axis 0; ``slices``, or every slice holding head) in which bone forms a closed
    ring: :func:`enclosed_share` at least ``closed_share``. nan without slices."""
    if slices is None:
        slices = np.flatnonzero(np.asarray(head).any(axis=(1, 2)))
    closed = [enclosed_share(ct[z], head[z], bone_hu) >= closed_share for z in slices]
    return 100.0 * float(np.mean(closed)) if closed else float("nan")


def bone_in_region(ct: np.ndarray, region: np.ndarray, voxel_ml: float = 0.001,
                   bone_hu: float = BONE_HU) -> Tuple[float, float]:
    """(mL, % of the region) of ``region``'s voxels above ``bone_hu``."""
    region = np.asarray(region, bool)
    count = int((np.asarray(ct)[region] > bone_hu).sum())
    return count * voxel_ml, 100.0 * count / max(1, int(region.sum()))


def air_in_region(ct: np.ndarray, region: np.ndarray, voxel_ml: float = 0.001,
                  air_hu: float = AIR_HU) -> Tuple[float, float]:
    """(mL, % of the region) of ``region``'s voxels below ``air_hu``."""
    return bone_in_region(-np.asarray(ct), region, voxel_ml, -air_hu)


def wasserstein_hu(values: np.ndarray, reference: np.ndarray, hu_range: Tuple[int, int] = HU_RANGE) -> float:
    """1-D Wasserstein distance in HU between the distributions of ``values`` and ``reference`` (any shapes),
    clipped to ``hu_range`` and binned at 1 HU: the area between their cumulative distributions."""
    values, reference = np.ravel(values), np.ravel(reference)
    if not values.size or not reference.size:
        return float("nan")
    edges = np.arange(hu_range[0], hu_range[1] + 2, dtype=np.float64) - 0.5
    cdfs = [np.cumsum(np.histogram(np.clip(v, *hu_range), edges)[0]) / v.size for v in (values, reference)]
    return float(np.abs(cdfs[0] - cdfs[1]).sum())


# ---------------------------------------------------------------------------------------------- template space


def _image(array: np.ndarray, like: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(like)
    return image


def _zs(grid: sitk.Image) -> np.ndarray:
    """Template height (MNI z, mm) of each axial slice of a template-space grid (z axis along +z)."""
    return np.array([grid.TransformIndexToPhysicalPoint((0, 0, k))[2] for k in range(grid.GetSize()[2])])


def _between(zs: np.ndarray, bounds: Tuple[float, float]) -> np.ndarray:
    return (zs >= bounds[0] - 1e-6) & (zs <= bounds[1] + 1e-6)


@dataclass
class Template:
    """The MNI templates: the average T1w and head CT (HU) as stored (2 mm, for registration), and on the 1 mm
    grid where everything is measured, the head CT, the brain region and the template head (CT above -500 HU)."""
    grid: sitk.Image
    t1: sitk.Image
    ct: sitk.Image
    fine_ct: np.ndarray
    brain: np.ndarray
    head: np.ndarray
    solid: np.ndarray
    zs: np.ndarray

    @classmethod
    def load(cls, folder: Path) -> "Template":
        t1 = sitk.ReadImage(str(folder / "avg152T1.nii.gz"), sitk.sitkFloat32)
        size = [int(round((n - 1) * s)) + 1 for n, s in zip(t1.GetSize(), t1.GetSpacing())]
        grid = sitk.Image(size, sitk.sitkUInt8)
        grid.SetOrigin(t1.GetOrigin())
        grid.SetDirection(t1.GetDirection())

        def fine(image: sitk.Image) -> sitk.Image:
            return sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)

        scct = sitk.ReadImage(str(folder / "scct.nii.gz"), sitk.sitkFloat32)
        ct = _image(cormack_to_hounsfield(sitk.GetArrayViewFromImage(scct)), scct)
        matter = sum(sitk.GetArrayFromImage(fine(sitk.ReadImage(str(folder / f"sc{n}.nii.gz"), sitk.sitkFloat32)))
                     for n in ("grey", "white"))
        zs = _zs(grid)
        depth = ndimage.distance_transform_edt(np.pad(matter >= 0.5, 1))[1:-1, 1:-1, 1:-1]
        brain = (depth > BRAIN_EROSION_MM) & _between(zs, BRAIN_Z)[:, None, None]
        # outside the template's box: air (0 Cormack units is -1024 HU)
        fine_ct = sitk.Resample(ct, grid, sitk.Transform(), sitk.sitkLinear, -1024.0, sitk.sitkFloat32)
        values = sitk.GetArrayFromImage(fine_ct)
        head = values > -500
        clear = ndimage.distance_transform_edt(values >= -200)  # 1 mm grid: mm from the nearest air
        solid = head & (values >= 0) & (clear >= SOLID_MARGIN_MM) & _between(zs, SOLID_Z)[:, None, None]
        return cls(grid, t1, ct, values, brain, head, solid, zs)

    def rows(self, bounds: Tuple[float, float]) -> np.ndarray:
        return _between(self.zs, bounds)


def _two_mm(image: sitk.Image) -> sitk.Image:
    """The scan smoothed and resampled to 2 mm over its own extent and orientation (what registration needs)."""
    smooth = sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), 1.0)
    size = [max(2, int(round(n * s / 2.0))) for n, s in zip(image.GetSize(), image.GetSpacing())]
    reference = sitk.Image(size, sitk.sitkFloat32)
    reference.SetSpacing([2.0] * 3)
    reference.SetOrigin(image.GetOrigin())
    reference.SetDirection(image.GetDirection())
    floor = float(np.min(sitk.GetArrayViewFromImage(smooth)))
    return sitk.Resample(smooth, reference, sitk.Transform(), sitk.sitkLinear, floor, sitk.sitkFloat32)


def register(template: sitk.Image, scan: sitk.Image) -> sitk.AffineTransform:
    """Affine transform from template points to ``scan`` points (Mattes MI; moments, similarity, then affine)."""
    fixed = sitk.Cast(template, sitk.sitkFloat32)
    moving = _two_mm(scan)
    similarity = sitk.CenteredTransformInitializer(fixed, moving, sitk.Similarity3DTransform(),
                                                   sitk.CenteredTransformInitializerFilter.MOMENTS)

    def fit(transform: sitk.Transform, shrink: Sequence[int], step: float) -> None:
        method = sitk.ImageRegistrationMethod()
        method.SetMetricAsMattesMutualInformation(32)
        method.SetMetricSamplingStrategy(method.RANDOM)
        method.SetMetricSamplingPercentage(0.1, 1)
        method.SetInterpolator(sitk.sitkLinear)
        method.SetOptimizerAsRegularStepGradientDescent(step, 1e-4, 100)
        method.SetOptimizerScalesFromPhysicalShift()
        method.SetShrinkFactorsPerLevel(list(shrink))
        method.SetSmoothingSigmasPerLevel([s / 2.0 for s in shrink])
        method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
        method.SetInitialTransform(transform, inPlace=True)
        method.Execute(fixed, moving)

    fit(similarity, (4, 2), 1.0)
    affine = sitk.AffineTransform(3)
    affine.SetCenter(similarity.GetCenter())
    affine.SetMatrix(similarity.GetMatrix())
    affine.SetTranslation(similarity.GetTranslation())
    fit(affine, (2, 1), 0.5)
    return affine


def in_template(image: sitk.Image, transform: sitk.Transform, template: Template, nearest: bool = False,
                default: float = 0.0) -> np.ndarray:
    """``image`` resampled onto the template's 1 mm grid (float32; uint8-valued with ``nearest``)."""
    return sitk.GetArrayFromImage(sitk.Resample(
        image, template.grid, transform, sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear, default,
        sitk.sitkUInt8 if nearest else sitk.sitkFloat32))


def covered_slices(scan: sitk.Image, transform: sitk.Transform, template: Template) -> np.ndarray:
    """Per template slice: the scan's field of view holds at least ``COVERED`` of the template head's section."""
    ones = sitk.Image(scan.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(scan)
    inside = in_template(ones, transform, template, nearest=True) > 0
    held = (inside & template.head).sum(axis=(1, 2))
    return held >= COVERED * np.maximum(1, template.head.sum(axis=(1, 2)))


def ct_head_mask(ct: sitk.Image, spec: Mapping[str, object]) -> sitk.Image:
    """The pipeline's body mask (``body_mask`` with the card's ``spec``) of a real CT whose head-holder, pads and
    table are removed first: voxels above -500 HU in the largest piece left by a 4 mm opening, grown back by
    4 mm within the voxels above -500 HU; everything else set to -1000 HU. Without this the plastic holder
    (partly above 300 HU) and its foam (around -900 HU) count as head."""
    from MedGANTranslateLib.body_mask import body_mask

    values = sitk.GetArrayFromImage(ct)
    tissue = values > -500
    sampling = ct.GetSpacing()[::-1]
    core = ndimage.distance_transform_edt(tissue, sampling=sampling) > 4.0  # the opening, by distances
    core = ndimage.distance_transform_edt(~core, sampling=sampling) <= 4.0
    labels, count = ndimage.label(core & tissue)
    if count == 0:
        raise ValueError("no head above -500 HU in the CT")
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    kept = (ndimage.distance_transform_edt(labels != sizes.argmax(), sampling=sampling) <= 4.0) & tissue
    return body_mask(_image(np.where(kept, values, -1000.0).astype(np.float32), ct), spec)


# ---------------------------------------------------------------------------------------------- measuring


@dataclass
class Placed:
    """One scan in template space: its head mask, covered slices, input (T1w or CT) and the volume factor."""
    name: str
    head: np.ndarray
    covered: np.ndarray
    input: np.ndarray
    voxel_ml: float
    transform: sitk.Transform
    ct: Optional[np.ndarray] = None  # the real CT itself (reference only)

    @cached_property
    def interior(self) -> np.ndarray:
        """The head's voxels at least :data:`SOLID_MARGIN_MM` inside its surface (once per scan, not per model)."""
        return ndimage.distance_transform_edt(np.pad(self.head, 1))[1:-1, 1:-1, 1:-1] >= SOLID_MARGIN_MM


def place(name: str, scan: sitk.Image, head: sitk.Image, template: Template, is_ct: bool) -> Placed:
    """Registers ``scan`` to the template (the CT template for a CT) and brings its head mask and itself there."""
    if is_ct:
        moving = sitk.Clamp(sitk.Cast(scan, sitk.sitkFloat32), sitk.sitkFloat32, -1000.0, 2000.0)
        transform = register(template.ct, sitk.Mask(moving, head, outsideValue=-1000.0))
    else:
        transform = register(template.t1, scan)
    floor = float(np.min(sitk.GetArrayViewFromImage(scan)))
    values = in_template(scan, transform, template, default=-1000.0 if is_ct else floor)
    volume = abs(float(np.linalg.det(np.reshape(transform.GetMatrix(), (3, 3)))))
    placed = Placed(name, in_template(head, transform, template, nearest=True) > 0,
                    covered_slices(scan, transform, template), values, volume / 1000.0, transform)
    if is_ct:
        placed.ct = values
    return placed


def measure(ct: np.ndarray, scan: Placed, template: Template, reference: Placed) -> Dict[str, float]:
    """The metrics of the module docstring for a synthetic (or real) CT ``ct`` in template space."""
    head = scan.head
    both = scan.covered & reference.covered
    head_rows = template.rows(HEAD_Z) & scan.covered
    cranial = np.flatnonzero(template.rows(CRANIAL_Z) & scan.covered)
    brain = template.brain & scan.covered[:, None, None] & head
    millilitres, percent = bone_in_region(ct, brain, scan.voxel_ml)
    air_ml, air_percent = air_in_region(ct, template.solid & scan.covered[:, None, None] & scan.interior,
                                        scan.voxel_ml)
    matched = template.rows(HEAD_Z) & both
    reference_brain = template.brain & both[:, None, None]
    return {
        "bone_head": bone_share(ct, head & head_rows[:, None, None]),
        "bone_cranium": bone_share(ct[cranial], head[cranial]),
        "rings": skull_ring_share(ct, head, cranial),
        "cranial_slices": len(cranial),
        "brain_bone_ml": millilitres,
        "brain_bone_pct": percent,
        "solid_air_ml": air_ml,
        "solid_air_pct": air_percent,
        "w1_head": wasserstein_hu(ct[head & matched[:, None, None]],
                                  reference.ct[reference.head & matched[:, None, None]]),
        "w1_brain": wasserstein_hu(ct[brain & both[:, None, None]],
                                   reference.ct[reference_brain & reference.head]),
    }


def dark_rim(t1: np.ndarray, head: np.ndarray) -> np.ndarray:
    """The dark-rim baseline (module docstring) on a template-space T1w and head mask."""
    depth = ndimage.distance_transform_edt(np.pad(head, 1))[1:-1, 1:-1, 1:-1]
    weight = ndimage.gaussian_filter(head.astype(np.float32), RIM_SIGMA_MM)
    local = ndimage.gaussian_filter(np.where(head, t1, 0).astype(np.float32), RIM_SIGMA_MM) / np.maximum(weight, 1e-6)
    bone = head & (depth >= RIM_MM[0]) & (depth <= RIM_MM[1]) & (t1 < RIM_DARK * local)
    return np.where(bone, RIM_BONE_HU, np.where(head, 0.0, -1000.0)).astype(np.float32)


def baselines(scan: Placed, template: Template) -> Dict[str, np.ndarray]:
    head = scan.head
    return {
        "bulk water": np.where(head, 0.0, -1000.0).astype(np.float32),
        "dark rim": dark_rim(scan.input, head),
        "atlas": np.where(head, template.fine_ct, -1000.0).astype(np.float32),
    }


# ---------------------------------------------------------------------------------------------- pictures


def _planes(template: Template) -> List[Tuple[str, Tuple[int, ...]]]:
    """Axial at z = +40 (the vault), coronal at y = -18 (ears, petrous bones), sagittal 25 mm right of the
    midline (orbit, maxillary sinus, skull base), as template-grid indices (MNI mm are RAS; ITK's are LPS)."""
    index = template.grid.TransformPhysicalPointToIndex((-25.0, 18.0, 40.0))
    return [("axial", (index[2], slice(None), slice(None))), ("coronal", (slice(None), index[1], slice(None))),
            ("sagittal", (slice(None), slice(None), index[0]))]


PLANE_TITLES = ("axial, z = +40", "coronal, y = -18", "sagittal, x = +25")


def draw_row(axes, volume: np.ndarray, window: Tuple[float, float], template: Template, label: str,
             outline: Optional[np.ndarray] = None, titles: bool = False) -> None:
    """One volume in the three planes of :func:`_planes`; dashed lines mark the cranial slices, ``outline``
    (the brain region, on the input) shows where the registration put the template."""
    for ax, (plane, cut), title in zip(axes, _planes(template), PLANE_TITLES):
        picture = volume[cut]
        contour = None if outline is None else outline[cut].astype(np.float32)
        if plane == "sagittal":  # anterior on the left
            picture = picture[:, ::-1]
            contour = None if contour is None else contour[:, ::-1]
        ax.imshow(picture, cmap="gray", origin="lower", vmin=window[0], vmax=window[1], interpolation="nearest")
        if contour is not None and contour.any():
            ax.contour(contour, [0.5], colors="gold", linewidths=0.5)
        if plane != "axial":
            for z in CRANIAL_Z:
                ax.axhline(int(np.argmin(np.abs(template.zs - z))), color="tab:orange", lw=0.6, ls="--")
        ax.set_xticks([])
        ax.set_yticks([])
        if titles:
            ax.set_title(title, fontsize=8)
    axes[0].set_ylabel(label, fontsize=8)


def t1_window(t1: np.ndarray, head: np.ndarray) -> Tuple[float, float]:
    values = t1[head]
    return (float(np.percentile(values, 0.5)), float(np.percentile(values, 99.5))) if values.size else (0.0, 1.0)


# ---------------------------------------------------------------------------------------------- driver


@dataclass
class Row:
    scan: str
    what: str
    metrics: Dict[str, float]
    seconds: Optional[float] = None


def default_card():
    """The bundled default model's card: its grid and body mask define the reference CT and every scan's head,
    whichever models are measured (a 2 mm model's grid would blur the one and coarsen the other)."""
    from MedGANTranslateLib.registry import resolve_model

    return resolve_model(MODELS[0])


def reference_ct(real_data: Path, template: Template, card) -> Placed:
    """The real head CT on ``card``'s network grid (the default model's, :func:`default_card`: 1 mm, LPS) with
    that card's body mask, in template space."""
    from MedGANTranslateLib.imageio import read_image
    from MedGANTranslateLib.network_grid import to_network_grid

    ct = to_network_grid(read_image(real_data / REAL_CT), card.preprocessing)
    return place("real head CT", ct, ct_head_mask(ct, card.postprocessing.get("body_mask", {})), template,
                 is_ct=True)


def format_table(rows: Sequence[Row]) -> str:
    lines = ["| scan | CT from | bone % head | bone % cranium | closed rings % (slices) | bone in brain mL (%) "
             "| air in solid mL (%) | W1 head HU | W1 brain HU | s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        m = row.metrics
        seconds = f"{row.seconds:.1f}" if row.seconds is not None else "–"
        lines.append(
            f"| {row.scan} | {row.what} | {m['bone_head']:.1f} | {m['bone_cranium']:.1f} | "
            f"{m['rings']:.0f} ({m['cranial_slices']}) | {m['brain_bone_ml']:.1f} ({m['brain_bone_pct']:.2f}) | "
            f"{m['solid_air_ml']:.1f} ({m['solid_air_pct']:.2f}) | {m['w1_head']:.0f} | {m['w1_brain']:.0f} | {seconds} |")
    return "\n".join(lines)


def card_section(rows: Sequence[Row], model: str, source: str) -> Dict[str, object]:
    """A card's ``validation.real_heads``: the model's numbers on each real T1w with the trivial baselines beside
    them and the real head CT's as the reference, as this benchmark measured them (``--write-cards``)."""
    def numbers(metrics: Mapping[str, float]) -> Dict[str, float]:
        return {k: round(float(v), 2) for k, v in metrics.items()}

    scans = []
    for name in dict.fromkeys(r.scan for r in rows if r.what.startswith(model + " v")):
        mine = next(r for r in rows if r.scan == name and r.what.startswith(model + " v"))
        baselines = {r.what[len("baseline: "):]: numbers(r.metrics) for r in rows
                     if r.scan == name and r.what.startswith("baseline: ")}
        scans.append({"scan": name, **numbers(mine.metrics), "baselines": baselines})
    return {
        "dataset": "Real T1w scans without a CT of the same head (../shared/real-data/t1: open_ms patients 01 and 04, "
                   "Philips ADNI MPRAGE, Siemens XA30 2 mm), measured in MNI template space against what any head CT "
                   "shows, with the real GE head CT measured the same way as the reference; metrics and baselines "
                   f"as defined in {source}. Bone is above 300 HU; rings in % of cranial slices; W1 in HU.",
        "reference": numbers(rows[0].metrics),
        "scans": scans,
    }


def write_card_section(card, key: str, section: Dict[str, object], models_folder: Path) -> Optional[Path]:
    """Writes ``validation.<key>`` into ``card`` when it is a bundled card (``models_folder/<id>/model.json``);
    returns its path, or None for a card elsewhere (left alone)."""
    path = models_folder / card.id / "model.json"
    if not path.is_file() or path.resolve() != Path(card.path).resolve():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    data.setdefault("validation", {})[key] = section
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def write_cards(rows: Sequence[Row], cards, models_folder: Path) -> List[Path]:
    """Writes each bundled card's ``validation.real_heads`` (cards outside ``models_folder`` are left alone)."""
    written = [write_card_section(card, "real_heads", card_section(rows, card.id, "benchmarks/real_heads.py"),
                                  models_folder) for card in cards]
    return [path for path in written if path is not None]


def phantom_lines(cards) -> List[str]:
    lines = [f"Phantom goals (docs/models.md): body MAE <= {GOALS['mae']:.0f} HU, bone Dice >= "
             f"{GOALS['bone_dice']:.2f} on held-out phantoms. The cards' numbers (10 held-out phantoms, not re-run):"]
    for card in cards:
        m = card.data.get("validation", {}).get("metrics", {})
        lines.append(f"- {card.id} v{card.version}: body MAE {m.get('mae', float('nan')):.1f} HU, "
                     f"bone Dice {m.get('bone_dice', float('nan')):.3f}")
    return lines


def main(argv=None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from MedGANTranslateLib.imageio import read_image
    from MedGANTranslateLib.pipeline import Translator
    from MedGANTranslateLib.registry import resolve_model
    from MedGANTranslateLib.run_options import RunOptions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = Path(__file__).resolve().parents[1]
    parser.add_argument("--real-data", type=Path, default=here.parent / "shared" / "real-data")
    parser.add_argument("--out", type=Path, default=here / "benchmarks" / "out" / "real_heads")
    parser.add_argument("--overview", type=Path, default=None,
                        help="the overview picture (default: overview.png in --out; docs/images/real_heads.png is "
                             "the one the docs show, so name it only when measuring the bundled models)")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--scans", nargs="+", default=list(T1_SCANS), help="T1w file names under t1/, no suffix")
    parser.add_argument("--n4", action="store_true",
                        help="translate with N4 bias-field correction (as --n4 does); rows and pictures say '+ N4', "
                             "the heads stay the default model's without it; not with --write-cards")
    parser.add_argument("--write-cards", action="store_true",
                        help="write each bundled model's numbers into models/<id>/model.json (validation.real_heads)")
    args = parser.parse_args(argv)
    if args.n4 and args.write_cards:
        parser.error("--write-cards records the cards' own runs, without N4: leave out --n4")
    args.out.mkdir(parents=True, exist_ok=True)
    args.overview = args.overview or args.out / "overview.png"

    cards = [resolve_model(m) for m in args.models]
    print("\n".join(phantom_lines(cards)) + "\n", flush=True)
    template = Template.load(args.real_data / "templates")
    default = default_card()
    reference = reference_ct(args.real_data, template, default)
    rows = [Row("real head CT", "the real CT (reference)", measure(reference.ct, reference, template, reference))]
    translators = [Translator(card, RunOptions(n4=args.n4)) for card in cards]
    labels = [f"{card.id} v{card.version}" + (" + N4" if args.n4 else "") for card in cards]
    head_translator = next((t for c, t in zip(cards, translators) if not args.n4
                            and (c.id, c.version) == (default.id, default.version)), None) or Translator(default)
    overview: List[Tuple[str, Placed, np.ndarray]] = [("real head CT (GE, the reference)", reference, reference.ct)]
    for name in args.scans:
        path = args.real_data / "t1" / f"{name}.nii.gz"
        if not path.exists():
            print(f"skipped {name}: not found under {args.real_data / 't1'}", file=sys.stderr)
            continue
        image = read_image(path)
        results = [(label, translator, translator.translate([image])) for label, translator in zip(labels, translators)]
        head = next((r for _, t, r in results if t is head_translator), None) or head_translator.translate([image])
        placed = place(name, image, head.body_mask, template, is_ct=False)
        volumes = []
        for label, _, result in results:
            synthetic = in_template(result.synthetic, placed.transform, template, default=-1000.0)
            rows.append(Row(name, label, measure(synthetic, placed, template, reference), result.seconds))
            volumes.append((label, synthetic))
            print(format_table(rows[-1:]).splitlines()[-1], flush=True)
        for what, values in baselines(placed, template).items():
            rows.append(Row(name, f"baseline: {what}", measure(values, placed, template, reference)))
        window = t1_window(placed.input, placed.head)
        figure, axes = plt.subplots(1 + len(volumes), 3, figsize=(7.5, 2.6 * (1 + len(volumes))))
        draw_row(axes[0], placed.input, window, template, f"{name}\ninput T1w", template.brain, titles=True)
        for row_axes, (model, values) in zip(axes[1:], volumes):
            draw_row(row_axes, values, BONE_WINDOW, template, f"{model}\nbone window")
        figure.tight_layout()
        figure.savefig(args.out / f"{name}.png", dpi=80)
        plt.close(figure)
        overview.append((name, placed, volumes[0][1]))

    figure, axes = plt.subplots(len(overview), 6, figsize=(13, 2.3 * len(overview)))
    for number, (row_axes, (name, placed, values)) in enumerate(zip(np.atleast_2d(axes), overview)):
        if placed.ct is not None:
            draw_row(row_axes[:3], placed.ct, (-100.0, 150.0), template, f"{name}\nsoft window", template.brain,
                     titles=number == 0)
        else:
            draw_row(row_axes[:3], placed.input, t1_window(placed.input, placed.head), template, f"{name}\nT1w",
                     template.brain, titles=number == 0)
        draw_row(row_axes[3:], values, BONE_WINDOW, template, "the CT, bone window" if placed.ct is not None
                 else f"{labels[0]}\nbone window", titles=number == 0)
    figure.suptitle("Real heads in template (MNI) space: input, and synthetic CT in a bone window (L 300 / W 1500); "
                    "dashed: the cranial slices; gold: the brain region", fontsize=9)
    figure.tight_layout()
    args.overview.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.overview, dpi=55)
    plt.close(figure)

    print()
    print(format_table(rows))
    (args.out / "real_heads.json").write_text(json.dumps(
        [{"scan": r.scan, "what": r.what, "metrics": r.metrics, "seconds": r.seconds} for r in rows], indent=1))
    print(f"\npictures in {args.out}, overview {args.overview}, numbers in {args.out / 'real_heads.json'}")
    if args.write_cards:
        for path in write_cards(rows, cards, here / "models"):
            print(f"wrote validation.real_heads into {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
