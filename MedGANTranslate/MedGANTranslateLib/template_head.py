"""Template heads: label maps and CTs built on real average anatomy, for training data that looks like real heads.

The digital phantom (:mod:`.phantom`) draws its head from ellipsoids: its skull is a smooth shell, its skull base
a tilted floor, its sinuses six ellipsoids. Real heads differ most from it exactly there, and a network trained on
it gives real T1w scans a thin broken skull and a chaotic skull base. This module starts from real average
anatomy instead, the templates in ``shared/real-data/templates`` (see :func:`templates_folder`):

* ``scct.nii.gz``, an average head CT **with skull** on the MNI 2 mm grid, in Cormack units (Rorden et al. 2012;
  :func:`cormack_to_hounsfield` maps them back to HU as ``clinical_c2h.m`` does): skull, skull base, petrous
  bones, orbits, nasal cavity, sphenoid and maxillary sinuses where the average holds them;
* ``scgrey``/``scwhite``/``sccsf.nii.gz``, tissue probability maps on that grid (brain, CSF);
* ``avg152T1.nii.gz``, the average T1w of 152 heads with scalp, on that grid: fat (scalp, orbits) is bright on it.

Each seed deforms these fields (random head size and shape per axis, pose, smooth elastic warp, all in physical
millimetres) and derives the labels of :data:`LABEL_NAMES` (the phantom's, plus teeth) at the output grid's
resolution with random thresholds (skull thickness, pneumatisation), random per-sinus pneumatisation and
opacification, a frontal sinus and mastoid air cells of random size, cortical sulci, and below the template's field
of view (which ends at the maxillary sinuses and the first vertebra) a procedural lower head: hard palate,
upper and lower teeth in their alveolar bone, mandible with rami, cervical vertebrae with discs and the spinal canal,
pharyngeal airway, neck with subcutaneous fat. The CT is the phantom's physics on these labels (per-head tissue
densities, texture, partial-volume blur, noise); MR images are made from the labels by the training code
(:mod:`.training.synth`), so they and the CT agree voxel for voxel.

Coordinates are SimpleITK's LPS millimetres (+x left, +y posterior, +z superior); the output grid has an identity
direction and its centre at the head frame's origin, as the phantom's. Every random choice is drawn from the seed
before any grid-sized work, so one seed gives one head.
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .errors import InputError
from .head_fields import PlaneWaves, SmoothField, ellipsoid_depth
from .phantom_acquisition import CT_SD as PHANTOM_CT_SD
from .phantom_acquisition import NOMINAL
from .phantom_acquisition import TEXTURE as PHANTOM_TEXTURE
from .phantom_labels import LABEL_NAMES as PHANTOM_LABELS

TEETH = 13
LABEL_NAMES: Dict[int, str] = {**PHANTOM_LABELS, TEETH: "teeth"}
AIR, FAT, CORTICAL, DIPLOE, CSF, GREY, WHITE, VENTRICLES, EYES, SINUS, RIM, CORE, SOFT = range(13)

#: CT means (HU) and their per-head standard deviations for every label; teeth are dentine and enamel.
CT_MEANS = np.array(list(NOMINAL["ct"]) + [2300.0], np.float32)
CT_SD = np.array(list(PHANTOM_CT_SD) + [250.0], np.float32)
TEXTURE = np.array(list(PHANTOM_TEXTURE) + [0.05], np.float32)

TEMPLATE_FILES = {"ct": "scct.nii.gz", "grey": "scgrey.nii.gz", "white": "scwhite.nii.gz", "csf": "sccsf.nii.gz",
                  "t1": "avg152T1.nii.gz"}
#: Atlas channels, in order: HU, grey, white and CSF probabilities, avg152T1 on [0, 1], inside-the-head hull, the
#: signed distance (mm, positive outside) from the intracranial surface (grey + white + CSF >= 0.5), and that
#: distance at the skull's inner table nearby (see :func:`_inner_table`).
CHANNELS = ("hu", "grey", "white", "csf", "t1", "hull", "icv_distance", "inner_table")
DEFAULT_SHAPE = (192, 232, 240)  # x, y, z at 1 mm: the whole head down to the fourth cervical vertebra
#: Template point (mm) at the output grid's centre: the middle of the head from the vertex to the neck.
HEAD_CENTRE = np.array([0.0, 14.0, -22.0])
_TEMPLATE_BOTTOM = -72.0  # the templates' lowest plane (mm); below it the lower head is procedural
_PAD_BELOW = 42  # 2 mm slices added below the templates: the border slice, extruded, for the procedural part
_PAD_FRONT = 6  # 2 mm rows of air added in front: the template's nose touches its field of view
_PAD_BACK = 4  # and behind, where the occiput touches it


# -------------------------------------------------------------------------------------------- templates


def templates_folder(folder: "str | Path | None" = None) -> Path:
    """The folder holding :data:`TEMPLATE_FILES`: ``folder``, else ``$MEDGAN_REAL_DATA/templates``, else
    ``shared/real-data/templates`` beside the checkout. Missing files are an :class:`InputError` naming them."""
    if folder is None:
        root = os.environ.get("MEDGAN_REAL_DATA")
        base = Path(root) if root else Path(__file__).resolve().parents[3] / "shared" / "real-data"
        folder = base / "templates"
    path = Path(folder)
    missing = [name for name in TEMPLATE_FILES.values() if not (path / name).is_file()]
    if missing:
        raise InputError(
            f"Template heads need the average head templates {', '.join(missing)} in {path}. They are public: "
            "scct, scgrey, scwhite and sccsf from github.com/neurolabusc/Clinical (BSD-2), avg152T1 from SPM/MNI. "
            "Put them there, set MEDGAN_REAL_DATA to the folder above 'templates', or give data.synth.templates.")
    return path


def cormack_to_hounsfield(values: np.ndarray) -> np.ndarray:
    """Cormack units back to HU as ``clinical_c2h.m`` of neurolabusc/Clinical does (the templates' own toolbox):
    0..900 is -1024..-124 HU, 900..3100 is -124..+76 HU expanded elevenfold, above that one unit per HU. It puts
    the average head's white matter at 20 HU, grey matter at 32 HU. (The Python ``h2c`` package's inverse, with a
    tenfold expansion from -1000 HU, would put them at 58 and 72 HU.)"""
    c = np.asarray(values, np.float32)
    return np.where(c <= 900.0, c - 1024.0, np.where(c <= 3100.0, -124.0 + (c - 900.0) / 11.0, c - 3024.0)
                    ).astype(np.float32)


@dataclass
class Atlas:
    """The templates as one stack of fields (channel, z, y, x) on a 2 mm LPS grid with an identity direction."""

    fields: np.ndarray
    origin: np.ndarray  # x, y, z of voxel (0, 0, 0), mm
    spacing: float
    digest: str  # SHA-256 of the template files, for cache keys

    def __post_init__(self) -> None:
        self.index = {name: i for i, name in enumerate(CHANNELS)}


def _read_lps(path: Path) -> np.ndarray:
    """A template as (z, y, x) float32 on an identity-direction grid (the MNI files store y flipped)."""
    image = sitk.DICOMOrient(sitk.ReadImage(str(path), sitk.sitkFloat32), "LPS")
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    array = sitk.GetArrayFromImage(image)
    for axis in range(3):  # DICOMOrient to LPS leaves a positive diagonal; flip any axis it could not
        if direction[axis, axis] < 0:
            array = np.flip(array, axis=2 - axis)
    return np.ascontiguousarray(array)


def _inner_table(hu: np.ndarray, icv_distance: np.ndarray, spacing: float) -> np.ndarray:
    """How far (mm, in ``icv_distance``) outside the intracranial surface the skull's inner table lies: the
    template's tissue maps are more blurred than its CT, so over the vertex its intracranial surface lies up to
    6 mm inside the bone (HU > 200); where no bone lies within 6 mm (the thin temporal squama, which averaging
    all but erases) 1 mm. Smoothed over 3 mm so the vault's inner surface has no steps."""
    nearest = ndimage.minimum_filter(np.where(hu > 200.0, icv_distance, np.inf), size=2 * int(round(6.0 / spacing)) + 1)
    found = np.isfinite(nearest) & (nearest > -2.0)
    table = np.where(found, np.clip(nearest, 0.0, 8.0), 1.0).astype(np.float32)
    return ndimage.gaussian_filter(table, 3.0 / spacing / 2.0)


@functools.lru_cache(maxsize=2)
def load_atlas(folder: "str | Path | None" = None) -> Atlas:
    """Reads and stacks the templates (cached per folder): HU, tissue probabilities, avg152T1 scaled to [0, 1]
    and the head's hull (the body with its air spaces, closed over nostrils and mouth), padded with air in front
    and with the lowest slice repeated below, where :func:`make_template_head` builds the lower head."""
    path = templates_folder(folder)
    digest = hashlib.sha256()
    first = sitk.ReadImage(str(path / TEMPLATE_FILES["ct"]))
    spacing = float(first.GetSpacing()[0])
    arrays = {}
    for key, name in TEMPLATE_FILES.items():
        digest.update((path / name).read_bytes())
        arrays[key] = _read_lps(path / name)
    oriented = sitk.DICOMOrient(first, "LPS")
    direction = np.asarray(oriented.GetDirection()).reshape(3, 3)
    size = np.asarray(oriented.GetSize())
    origin = np.asarray(oriented.GetOrigin(), float)
    for axis in range(3):
        if direction[axis, axis] < 0:
            origin[axis] -= spacing * (size[axis] - 1)
    hu = cormack_to_hounsfield(arrays["ct"])
    t1 = arrays["t1"] / max(float(np.percentile(arrays["t1"], 99.9)), 1e-6)
    body = ndimage.binary_closing(hu > -420.0, ndimage.generate_binary_structure(3, 1), iterations=4)
    hull = ndimage.binary_fill_holes(body)
    for axis in range(3):  # air spaces open to the outside only through nose or mouth
        hull = np.stack([ndimage.binary_fill_holes(s) for s in np.moveaxis(hull, axis, 0)], axis=0)
        hull = np.moveaxis(hull, 0, axis)
    hull = ndimage.binary_erosion(hull, ndimage.generate_binary_structure(3, 1), iterations=3) | (hu > -420.0)
    icv = (arrays["grey"] + arrays["white"] + arrays["csf"]) >= 0.5
    icv_distance = (ndimage.distance_transform_edt(~icv) - ndimage.distance_transform_edt(icv)) * spacing
    fields = np.stack([hu, arrays["grey"], arrays["white"], arrays["csf"], t1, hull.astype(np.float32),
                       icv_distance.astype(np.float32), _inner_table(hu, icv_distance, spacing)])
    fields = np.pad(fields, ((0, 0), (_PAD_BELOW, 0), (_PAD_FRONT, _PAD_BACK), (0, 0)), mode="edge")
    for rows in (slice(0, _PAD_FRONT), slice(fields.shape[2] - _PAD_BACK, None)):
        fields[:, :, rows] = 0.0
        fields[0, :, rows] = -1024.0
        fields[-2, :, rows] = 50.0
        fields[-1, :, rows] = 1.0
    origin = origin - np.array([0.0, _PAD_FRONT * spacing, _PAD_BELOW * spacing])
    return Atlas(fields.astype(np.float32), origin, spacing, digest.hexdigest())


# ------------------------------------------------------------------------------------------- parameters


def _rotation(angles_deg: Sequence[float]) -> np.ndarray:
    ax, ay, az = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


#: Paranasal sinuses and mastoids in template millimetres: (centre, semi-axes); each gets its own pneumatisation.
SINUS_REGIONS = {
    "maxillary_left": ((27.0, -38.0, -68.0), (17.0, 20.0, 22.0)),
    "maxillary_right": ((-27.0, -38.0, -68.0), (17.0, 20.0, 22.0)),
    "sphenoid": ((0.0, -8.0, -38.0), (16.0, 16.0, 14.0)),
    "ethmoid": ((0.0, -62.0, -24.0), (14.0, 20.0, 14.0)),
}
MASTOIDS = (((52.0, 34.0, -46.0), (13.0, 16.0, 15.0)), ((-52.0, 34.0, -46.0), (13.0, 16.0, 15.0)))
FRONTAL_SINUS = (0.0, -71.0, 10.0)


@dataclass
class HeadParameters:
    """Every random choice of one template head, drawn in a fixed order from its seed."""

    matrix_inverse: np.ndarray  # physical offset from the centre -> template offset (rotation and per-axis scale)
    scales: np.ndarray
    angles: np.ndarray
    shift: np.ndarray
    warp_mm: float
    warp: List[SmoothField]
    hull_noise: SmoothField
    bone_noise: SmoothField
    air_threshold: float  # template HU below which the head is air
    bone_threshold: float  # template HU above which it is bone
    vault_mm: float  # the least thickness of the vault: the skull above the skull base encloses the brain
    inner_table_shift: float  # mm added to the atlas' inner table (thinner or thicker CSF and dura)
    csf_weight: float
    cortical_mm: float  # thickness of the cortical tables; the rest of thick bone is diploe
    sinus_offsets: Dict[str, float]  # HU added to a sinus' template values: < 0 more air, > 0 less
    sinus_fill: Dict[str, float]  # opacified fraction of each sinus (mucosal thickening, fluid), 0 for most
    frontal_axes: np.ndarray  # semi-axes of the frontal sinus (0: absent)
    mastoid_cells: SmoothField
    mastoid_level: Tuple[float, float]  # per side, the cell field's threshold: lower means more air cells
    tissue_noise: List[SmoothField]
    folds: PlaneWaves
    sulcus_mm: float
    fat_threshold: float
    scalp_fat_mm: float
    palate_z: float
    occlusal_z: float
    mandible_scale: float
    teeth_missing: np.ndarray  # 32 booleans: upper 16 then lower 16, right to left
    mouth_air: float  # probability-like size of the air between tongue and palate
    airway_scale: float
    neck_axes: np.ndarray
    vertebra_phase: float
    texture: SmoothField
    ct_means: np.ndarray
    partial_volume: float
    ct_sigma: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "HeadParameters":
        # MNI heads are larger than most: sizes from 84 % to 103 % of the template, per axis (head shapes)
        scales = rng.uniform(0.84, 1.03, 3)
        scales[1:] = np.clip(scales[1:] * 0.5 + 0.5 * scales[0] * rng.uniform(0.95, 1.05, 2), 0.82, 1.05)
        angles = np.array([rng.uniform(-15.0, 15.0), rng.uniform(-6.0, 6.0), rng.uniform(-6.0, 6.0)])
        rot = _rotation(angles)
        inverse = (rot.T / scales[:, None])  # (R S)^-1 = S^-1 R^T
        shift = rng.uniform(-6.0, 6.0, 3)
        warp_mm = rng.uniform(2.0, 5.0)
        warp = [SmoothField(rng, 35.0) for _ in range(3)]
        hull_noise, bone_noise = SmoothField(rng, 12.0), SmoothField(rng, 10.0)
        air = rng.uniform(-585.0, -325.0)
        bone = rng.uniform(230.0, 330.0)  # gives the average's vertex 6-8 mm, parietal 4-5 mm
        vault = rng.uniform(2.0, 4.0)  # where the average is too blurred to reach it (temporal squama)
        table_shift = rng.uniform(-1.0, 0.5)
        csf_weight = rng.uniform(0.65, 0.95)
        cortical = float(rng.uniform(1.0, 2.5))
        offsets = {name: float(rng.uniform(-260.0, 220.0)) for name in SINUS_REGIONS}
        fill = {name: (float(rng.uniform(0.1, 0.7)) if rng.random() < 0.15 else 0.0) for name in SINUS_REGIONS}
        frontal = np.array([rng.uniform(4.0, 22.0), rng.uniform(4.0, 7.5), rng.uniform(5.0, 17.0)])
        if rng.random() < 0.1:
            frontal[:] = 0.0
        cells = SmoothField(rng, 2.5)
        mastoid = (float(rng.uniform(0.0, 1.6)), float(rng.uniform(0.0, 1.6)))  # 50 % air cells to none
        tissue_noise = [SmoothField(rng, 6.0) for _ in range(3)]
        folds = PlaneWaves.draw(rng, rng.uniform(16.0, 24.0), count=14)
        sulcus = rng.uniform(0.5, 1.3)
        fat = rng.uniform(0.52, 0.62)
        scalp_fat = rng.uniform(2.0, 7.0)
        palate = rng.uniform(-84.0, -78.0)
        occlusal = palate - rng.uniform(17.0, 23.0)
        mandible = rng.uniform(0.92, 1.08)
        missing = rng.random(32) < rng.uniform(0.0, 0.25)
        mouth = rng.uniform(0.0, 1.0) if rng.random() < 0.4 else 0.0
        airway = rng.uniform(0.6, 1.3)
        neck = np.array([rng.uniform(44.0, 56.0), rng.uniform(48.0, 60.0)])
        phase = rng.uniform(-4.0, 4.0)
        texture = SmoothField(rng, 5.0)
        means = (CT_MEANS + rng.standard_normal(CT_MEANS.size) * CT_SD).astype(np.float32)
        return cls(inverse, scales, angles, shift, warp_mm, warp, hull_noise, bone_noise, air, bone, vault, table_shift,
                   csf_weight, cortical, offsets, fill, frontal, cells, mastoid, tissue_noise, folds, sulcus, fat, scalp_fat, palate,
                   occlusal, mandible, missing, mouth, airway, neck, phase, texture, means, rng.uniform(0.5, 0.7),
                   rng.uniform(10.0, 20.0))


# -------------------------------------------------------------------------------------------- sampling


def _grid_axes(shape: Sequence[int], spacing: Sequence[float]) -> List[np.ndarray]:
    """Voxel-centre axes (x, y, z) in mm of a grid centred on the origin, as the phantom's."""
    return [(np.arange(n) - (n - 1) / 2.0) * s for n, s in zip(shape, spacing)]


def _template_coordinates(axes: Sequence[np.ndarray], p: HeadParameters) -> List[np.ndarray]:
    """Template mm of every output voxel, (z, y, x) arrays: q = c + M^-1 (x - shift) + warp(x)."""
    d = [(ax - s).astype(np.float32) for ax, s in zip(axes, p.shift)]
    inv = p.matrix_inverse
    out = []
    for r in range(3):
        q = (np.float32(inv[r, 0]) * d[0])[None, None, :] + (np.float32(inv[r, 1]) * d[1])[None, :, None]
        q = q + (np.float32(inv[r, 2]) * d[2])[:, None, None]
        q += np.float32(p.warp_mm) * np.tanh(p.warp[r](axes))
        q += np.float32(HEAD_CENTRE[r])
        out.append(q.astype(np.float32, copy=False))
    return out


def _sample(atlas: Atlas, q: Sequence[np.ndarray]) -> np.ndarray:
    """The atlas' fields at template points ``q`` (trilinear; edge values beyond the atlas): (C, z, y, x)."""
    import torch
    from torch.nn import functional as F

    c, nz, ny, nx = atlas.fields.shape
    size = np.array([nx, ny, nz], float)
    source = torch.from_numpy(atlas.fields)[None]
    out = np.empty((c,) + q[0].shape, np.float32)
    step = max(1, int(4_000_000 // (q[0].shape[1] * q[0].shape[2])))
    for z0 in range(0, q[0].shape[0], step):
        sl = slice(z0, z0 + step)
        grid = np.stack([(q[a][sl] - atlas.origin[a]) / atlas.spacing / (size[a] - 1) * 2.0 - 1.0 for a in range(3)],
                        axis=-1)
        sampled = F.grid_sample(source, torch.from_numpy(grid.astype(np.float32))[None], mode="bilinear",
                                padding_mode="border", align_corners=True)
        out[:, sl] = sampled[0].numpy()
    return out


def _inside(coords: Sequence[np.ndarray], centre: Sequence[float], axes: Sequence) -> np.ndarray:
    """Inside an ellipse or ellipsoid whose semi-axes may vary voxel by voxel (arrays)."""
    total = 0.0
    for v, c, a in zip(coords, centre, axes):
        total = total + ((v - np.float32(c)) / a) ** 2
    return total < 1.0


# ------------------------------------------------------------------------------------------- labels


def _erode(mask: np.ndarray, voxels: int) -> np.ndarray:
    return ndimage.minimum_filter(mask.view(np.uint8), size=2 * voxels + 1).astype(bool) if voxels else mask


def _dilate(mask: np.ndarray, voxels: int) -> np.ndarray:
    return ndimage.maximum_filter(mask.view(np.uint8), size=2 * voxels + 1).astype(bool) if voxels else mask


def _template_labels(f: np.ndarray, q: Sequence[np.ndarray], axes: Sequence[np.ndarray], p: HeadParameters,
                     spacing: float) -> np.ndarray:
    """Labels from the deformed template fields, with random thresholds and the paranasal/mastoid variations."""
    hu, grey, white, csf, t1, hull, icv_distance, inner_table = f
    x, y, z = q
    hull = (hull + 0.15 * np.tanh(p.hull_noise(axes))) > 0.5
    adjusted = hu.copy()
    regions = {}
    for name, (centre, semi) in SINUS_REGIONS.items():
        weight = np.clip(ellipsoid_depth(q, centre, semi) / 6.0, 0.0, 1.0)
        regions[name] = weight > 0.0
        adjusted += np.float32(p.sinus_offsets[name]) * weight
    air = hull & (adjusted < p.air_threshold)
    bone_values = hu + np.float32(25.0) * p.bone_noise(axes)
    bone = hull & ~air & (bone_values > p.bone_threshold)
    # the average skull is blurred most where skulls differ most (temporal squama): a vault of at least vault_mm
    # from its inner table outwards all around the intracranial space (its floor is the skull base, around the
    # medulla the foramen magnum), so that no training skull has a hole; between the
    # intracranial surface and the inner table, CSF and dura
    table = inner_table + np.float32(p.inner_table_shift)
    vault = hull & ~air & (z > _TEMPLATE_BOTTOM)
    thickness = np.float32(max(p.vault_mm, 1.5 * spacing))  # at least 1.5 voxels: closed on coarse grids too
    bone |= vault & (icv_distance > table) & (icv_distance < table + thickness)
    meninges = vault & ~bone & (icv_distance > -1.0) & (icv_distance <= table)

    labels = np.full(hu.shape, SOFT, np.uint8)
    # brain and CSF inside the skull: the most probable class after a smooth random tilt of the probabilities
    tilt = [1.0 + 0.12 * np.tanh(field(axes)) for field in p.tissue_noise]
    g, w, c = grey * tilt[0], white * tilt[1], csf * tilt[2] * np.float32(p.csf_weight)
    brainy = (grey + white + csf) > 0.45
    labels[brainy & (c >= g) & (c >= w)] = CSF
    labels[brainy & (g > c) & (g >= w)] = GREY
    labels[brainy & (w > c) & (w > g)] = WHITE
    labels[meninges & ~brainy] = CSF
    # sulci: CSF along the folding waves' zero set, through the cortical ribbon
    ribbon = labels == GREY
    idx = np.flatnonzero(ribbon)
    sulci = p.folds.distance(x.reshape(-1)[idx], y.reshape(-1)[idx], z.reshape(-1)[idx]) < np.float32(p.sulcus_mm)
    labels.reshape(-1)[idx[sulci]] = CSF
    # ventricles: CSF deep in the middle of the cerebrum
    deep = (np.abs(x) < 30.0) & (y > -38.0) & (y < 48.0) & (z > -20.0) & (z < 32.0) & ((grey + white) > 0.25)
    labels[(labels == CSF) & deep & (csf > 0.5)] = VENTRICLES
    # fat (bright on the average T1: scalp, orbits, marrow-free soft tissue) versus muscle and other soft tissue
    soft = ~brainy & hull
    labels[soft & (t1 > p.fat_threshold)] = FAT
    eyes = np.zeros(hu.shape, bool)
    for side in (1.0, -1.0):
        eyes |= ellipsoid_depth(q, (side * 29.5, -76.0, -17.0), (11.0, 11.5, 11.0)) > 0.0
    labels[eyes & soft] = EYES
    orbit_fat = np.zeros(hu.shape, bool)
    orbit_wall = np.zeros(hu.shape, bool)
    for side in (1.0, -1.0):  # the orbits' thin bony walls, which the average blurs away, open in front of the eye
        depth = ellipsoid_depth(q, (side * 29.0, -62.0, -19.0), (16.0, 24.0, 16.0))
        orbit_fat |= (depth > 0) & soft & ~eyes
        orbit_wall |= (depth <= 0) & (depth > -max(1.5, 1.5 * spacing)) & (y > -78.0) & hull
    labels[orbit_fat] = FAT
    labels[bone] = CORTICAL
    labels[bone & _erode(bone, max(1, int(round(p.cortical_mm / spacing))))] = DIPLOE
    labels[orbit_wall & ~bone & ~eyes & ~brainy] = CORTICAL
    labels[air] = SINUS
    labels[~hull] = AIR

    # the paranasal sinuses are walled by thin bone and lined by mucosa; some are partly opacified
    for name, inside in regions.items():
        cavity = air & inside
        if not cavity.any():
            continue
        labels[_dilate(cavity, 1) & inside & ~cavity & (labels != AIR)] = CORTICAL
        if p.sinus_fill[name] > 0:
            zs = z[cavity]
            level = np.quantile(zs, p.sinus_fill[name])
            labels[cavity & (z < level)] = SOFT
    wall = max(1.5, 1.5 * spacing)
    _frontal_sinus(labels, q, p, icv_distance > table + np.float32(wall), wall)
    _mastoid_cells(labels, q, axes, p)
    return labels


def _frontal_sinus(labels: np.ndarray, q: Sequence[np.ndarray], p: HeadParameters, outside_table: np.ndarray,
                   wall: float) -> None:
    """A frontal sinus of random size between the tables of the frontal bone (only where ``outside_table``: never
    into the cranial cavity), walled by ``wall`` mm of bone, split by a septum; absent in one head of ten."""
    if not p.frontal_axes.any():
        return
    centre = FRONTAL_SINUS
    depth = ellipsoid_depth(q, centre, p.frontal_axes)
    cavity = (depth > 0) & outside_table
    shell = (depth > -wall) & (labels != AIR) & ~cavity
    labels[shell] = CORTICAL
    septum = np.abs(q[0] - np.float32(centre[0] + 0.2 * p.frontal_axes[0])) < 0.8
    labels[cavity & ~septum] = SINUS


def _mastoid_cells(labels: np.ndarray, q: Sequence[np.ndarray], axes: Sequence[np.ndarray], p: HeadParameters) -> None:
    """Mastoid air cells: blobs of a fine random field inside the mastoid bone, their extent per side random
    (from none to a fully pneumatised mastoid)."""
    bone = (labels == CORTICAL) | (labels == DIPLOE)
    inner = _erode(bone, 1)
    cells = None
    for (centre, semi), level in zip(MASTOIDS, p.mastoid_level):
        region = ellipsoid_depth(q, centre, semi) > 0.0
        if not region.any():
            continue
        if cells is None:
            cells = p.mastoid_cells(axes)
        labels[region & inner & (cells > np.float32(level))] = SINUS


def _arch(x: np.ndarray, front_y: float, half_width: float, back_y: float) -> np.ndarray:
    """y of a parabolic dental arch at x: front_y at x = 0, back_y at |x| = half_width."""
    return front_y + (back_y - front_y) * (x / half_width) ** 2


def _lower_head(labels: np.ndarray, q: Sequence[np.ndarray], axes: Sequence[np.ndarray], p: HeadParameters) -> None:
    """The head below the templates' field of view, in template mm: neck outline with subcutaneous fat, hard
    palate, maxillary alveolus, teeth, mandible with rami, cervical vertebrae, spinal canal and cord, airway."""
    x, y, z = q
    below = z < _TEMPLATE_BOTTOM - 1.0
    if not below.any():
        return
    zz = np.flatnonzero(below.any(axis=(1, 2)))
    sl = (slice(zz.min(), zz.max() + 1), slice(None), slice(None))
    lab = labels[sl]
    x, y, z = (c[sl] for c in q)
    below = below[sl]
    m = np.float32(p.mandible_scale)
    # outline: the extruded template narrows to the jaw (an ellipse in front) and the neck (one behind), the
    # jaw ending under the chin on a plane that rises towards the neck
    menton = p.occlusal_z - 32.0 * m
    flare = np.clip((z - (_TEMPLATE_BOTTOM - 24.0)) / 24.0, 0.0, 1.0)
    jaw_axes = (60.0 * m + 30.0 * flare, 90.0 * m + 10.0 * flare)
    jaw = _inside((x, y), (0.0, 4.0), jaw_axes) & (z > menton + 0.25 * np.maximum(y + 80.0 * m, 0.0))
    neck = _inside((x, y), (0.0, 45.0), (p.neck_axes[0] + 30.0 * flare, p.neck_axes[1] + 12.0 * flare))
    body = below & (jaw | neck)
    lab[below & ~body] = AIR
    # the extruded template keeps only its air spaces (maxillary sinuses, nasopharynx) and fat down to the palate
    cavities = body & ((lab == SINUS) | (lab == AIR)) & (z > p.palate_z)
    keep = cavities | ((lab == FAT) & (z > p.palate_z))
    lab[body & ~keep] = SOFT
    lab[cavities] = SINUS
    head = body | (~below & (lab != AIR))  # the head above the slab counts, so its top face is not skin
    inner = _erode(head, 1)
    fat_layer = body & ~_erode(head, max(1, int(round(p.scalp_fat_mm))))
    lab[fat_layer & inner] = FAT

    # hard palate and maxillary alveolus with the upper teeth; the maxillary sinuses end on it
    upper_arch = _arch(x, -72.0 * m, 30.0 * m, -20.0)
    in_upper = (y > upper_arch) & (y < upper_arch + 10.0) & (np.abs(x) < 34.0 * m)
    palate = (z < p.palate_z + 1.5) & (z > p.palate_z - 1.5) & (y > upper_arch) & (y < -22.0) & (np.abs(x) < 26.0 * m)
    alveolus = below & in_upper & (z < p.palate_z + 2.0) & (z > p.occlusal_z + 9.0)
    lab[below & palate] = CORTICAL
    lab[alveolus] = DIPLOE
    lab[alveolus & ~_erode(alveolus, 1)] = CORTICAL
    # lower arch (mandible body) and rami
    lower_arch = _arch(x, -74.0 * m, 46.0 * m, 12.0)
    across = y - lower_arch
    lower_border = menton + 0.22 * np.maximum(y + 74.0 * m, 0.0)
    mandible_body = below & (np.abs(x) < 50.0 * m) & (across > -3.0) & (across < 9.0) & \
        (z < p.occlusal_z - 6.0) & (z > lower_border)
    chin = below & (ellipsoid_depth((x, y, z), (0.0, -72.0 * m, menton + 9.0), (14.0, 7.0, 10.0)) > 0)
    ramus = below & (np.abs(np.abs(x) - 47.0 * m) < 3.5) & (y > 2.0) & (y < 24.0) & (z > lower_border) & \
        (z < _TEMPLATE_BOTTOM + 4.0)
    mandible = mandible_body | ramus | chin
    lab[mandible] = DIPLOE
    lab[mandible & ~_erode(mandible, 2)] = CORTICAL
    # teeth: 16 per arch along the arches, crowns meeting at the occlusal plane
    for arch_index, (arch, top, bottom, half) in enumerate(((upper_arch, p.palate_z - 1.0, p.occlusal_z, 30.0 * m),
                                                           (lower_arch, p.occlusal_z, p.occlusal_z - 20.0, 46.0 * m))):
        band = below & (z < top) & (z > bottom) & (np.abs(y - arch - 4.0) < 4.0) & (np.abs(x) < half * 0.98)
        if not band.any():
            continue
        position = np.clip(np.round((x[band] / (half * 0.98) + 1.0) * 8.0 - 0.5), 0, 15).astype(int)
        keep = ~p.teeth_missing[arch_index * 16 + position]
        gap = np.abs(((x[band] / (half * 0.98) + 1.0) * 8.0) % 1.0 - 0.5) < 0.42
        band_idx = np.flatnonzero(band)
        lab.reshape(-1)[band_idx[keep & gap]] = TEETH
    # oral cavity: some air between the tongue and the palate
    if p.mouth_air > 0:
        mouth = below & (y > upper_arch + 8.0) & (y < -20.0) & (np.abs(x) < 22.0 * m) & \
            (z < p.palate_z - 2.0) & (z > p.palate_z - 2.0 - 6.0 * p.mouth_air)
        lab[mouth & (lab == SOFT)] = SINUS
    # cervical spine: bodies and discs, arches around the canal, cord in CSF
    yc = 30.0 + 0.12 * (_TEMPLATE_BOTTOM - z)
    segment = np.cos(2.0 * math.pi * (z - p.vertebra_phase) / 18.0) < 0.72
    vb = ellipsoid_depth((x, y - yc), (0.0, 0.0), (11.0, 8.5)) > 0
    canal_r = np.sqrt(x * x + (y - yc - 21.0) ** 2)
    arch_ring = (canal_r > 8.0) & (canal_r < 12.0) & (y > yc + 12.0) & (np.abs(x) < 22.0)
    spinous = (np.abs(x) < 3.0) & (y > yc + 31.0) & (y < yc + 48.0)
    vertebra = below & segment & (vb | arch_ring | spinous) & (z < _TEMPLATE_BOTTOM - 4.0)
    lab[below & (canal_r < 8.0)] = CSF
    lab[below & (canal_r < 4.5)] = WHITE
    lab[vertebra] = DIPLOE
    lab[vertebra & ~_erode(vertebra, 1)] = CORTICAL
    # pharyngeal airway in front of the spine
    airway = below & (ellipsoid_depth((x, y - (yc - 22.0)), (0.0, 0.0),
                                      (10.0 * p.airway_scale, 5.5 * p.airway_scale)) > 0) & (z < p.palate_z)
    lab[airway] = SINUS


def _ct(labels: np.ndarray, axes: Sequence[np.ndarray], p: HeadParameters, rng: np.random.Generator) -> np.ndarray:
    """The phantom's CT physics on the labels: per-head tissue densities with smooth texture, partial-volume blur,
    Gaussian noise."""
    texture = TEXTURE[labels]
    texture *= p.texture(axes)
    texture += 1.0
    ct = ndimage.gaussian_filter(p.ct_means[labels] * texture, p.partial_volume, mode="nearest")
    ct += np.float32(p.ct_sigma) * rng.standard_normal(labels.shape, dtype=np.float32)
    return ct


@dataclass
class TemplateHead:
    """Co-registered label map and CT of one template head; ``parameters`` are its random choices."""

    labels: sitk.Image
    ct: sitk.Image
    parameters: HeadParameters


def make_template_head(seed: int, shape: Sequence[int] = DEFAULT_SHAPE, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                       templates: "str | Path | None" = None) -> TemplateHead:
    """One template head (labels and CT in HU); ``shape`` and ``spacing`` in (x, y, z) order."""
    atlas = load_atlas(templates)
    rng = np.random.default_rng([int(seed), 0x7E4D])
    params = HeadParameters.draw(rng)
    shape = [int(n) for n in shape]
    spacing = [float(s) for s in spacing]
    axes = _grid_axes(shape, spacing)
    q = _template_coordinates(axes, params)
    fields = _sample(atlas, q)
    labels = _template_labels(fields, q, axes, params, min(spacing))
    del fields
    _lower_head(labels, q, axes, params)
    del q
    ct = _ct(labels, axes, params, rng)
    origin = [float(a[0]) for a in axes]
    images = []
    for array in (labels, ct):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(spacing)
        image.SetOrigin(origin)
        images.append(image)
    return TemplateHead(images[0], images[1], params)
