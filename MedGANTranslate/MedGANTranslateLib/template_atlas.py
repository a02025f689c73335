"""The average-head templates as one atlas of fields on their 2 mm MNI grid.

:func:`templates_folder` finds the template files, :func:`cormack_to_hounsfield` maps the average CT's Cormack
units back to HU, and :func:`load_atlas` stacks the templates (once per folder) with the fields derived from them:
the head's hull, the signed distance from the intracranial surface and the skull's inner table, padded with air in
front and behind and with the lowest slice repeated below, where the template heads' procedural lower head goes.
:func:`sample_atlas` reads the stack at any template points. The files are described in :mod:`.template_head`.
"""
from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .errors import InputError

TEMPLATE_FILES = {"ct": "scct.nii.gz", "grey": "scgrey.nii.gz", "white": "scwhite.nii.gz", "csf": "sccsf.nii.gz",
                  "t1": "avg152T1.nii.gz"}
#: Atlas channels, in order: HU, grey, white and CSF probabilities, avg152T1 on [0, 1], inside-the-head hull, the
#: signed distance (mm, positive outside) from the intracranial surface (grey + white + CSF >= 0.5), and that
#: distance at the skull's inner table nearby (see :func:`_inner_table`).
CHANNELS = ("hu", "grey", "white", "csf", "t1", "hull", "icv_distance", "inner_table")
TEMPLATE_BOTTOM = -72.0  # the templates' lowest plane (mm); below it the lower head is procedural
_PAD_BELOW = 42  # 2 mm slices added below the templates: the border slice, extruded, for the procedural part
_PAD_FRONT = 6  # 2 mm rows of air added in front: the template's nose touches its field of view
_PAD_BACK = 4  # and behind, where the occiput touches it


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
    and with the lowest slice repeated below, where :func:`.template_head.make_template_head` builds the lower head."""
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


def sample_atlas(atlas: Atlas, q: Sequence[np.ndarray]) -> np.ndarray:
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
