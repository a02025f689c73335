"""Digital head phantom: one synthetic head as co-registered labels, T1w, T2w, T1w+Gd, CT and FDG-PET.

Patient data cannot be downloaded here, so paired training and test volumes come from this phantom. Each seed
draws one label map from implicit shapes (approximate ellipsoid depths) evaluated on a randomly jittered and
smoothly deformed coordinate grid; every contrast then maps the labels to per-seed tissue values with smooth
texture, partial-volume blur and its own artefacts (MR bias field and Rician noise, CT Gaussian noise, PET
resolution blur and count noise). The bony air spaces (sinuses, nasal cavity) are included on purpose: they
are dark on MR like bone but -1000 HU on CT, the classic ambiguity an MR-to-CT generator must learn.

Coordinates are SimpleITK's LPS millimetres: +x towards the patient's left, +y posterior, +z superior; the
head frame's origin sits at the centre of the grid. Random fields live in physical millimetres and every
seed-dependent shape parameter is drawn before any grid-sized draw, so one seed gives the same head at any
shape or spacing; only the noise draws depend on the grid.

The parts: :mod:`.phantom_anatomy` (per-seed shape parameters, the deformed head frame), :mod:`.phantom_labels`
(the label map), :mod:`.phantom_acquisition` (each contrast's tissue values and artefacts) and
:mod:`.head_fields` (random fields in millimetres); this module checks the grid and puts them together.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np
import SimpleITK as sitk

from .errors import InputError, OutputError
from .phantom_acquisition import Acquisition, contrasts
from .phantom_anatomy import Anatomy, Frame, Grid
from .phantom_labels import LABEL_NAMES, label_map
from .phantom_vessels import VESSEL_LABELS, VesselAnatomy

VOLUMES = ("t1", "t2", "ct", "pet", "t1c", "labels")
WRITABLE_FORMATS = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
#: Field of view (x, y, z mm) used when ``shape`` is None: the whole head down to the upper neck.
DEFAULT_FOV_MM = (192.0, 224.0, 192.0)


@dataclass
class Phantom:
    """Co-registered volumes of one synthetic head; all share one grid (identity direction, LPS)."""

    labels: sitk.Image
    t1: sitk.Image
    t2: sitk.Image
    ct: sitk.Image
    pet: sitk.Image
    t1c: sitk.Image
    label_names: Dict[int, str] = field(default_factory=lambda: dict(LABEL_NAMES))

    def images(self) -> Dict[str, sitk.Image]:
        """The volumes by name, in :data:`VOLUMES` order."""
        return {name: getattr(self, name) for name in VOLUMES}


def _grid(shape: Optional[Sequence[int]], spacing: Sequence[float]) -> Grid:
    """Checked grid centred on the physical origin; ``shape=None`` covers :data:`DEFAULT_FOV_MM` at this spacing."""
    try:
        sp = np.array([float(s) for s in spacing])
        size = np.ceil(np.array(DEFAULT_FOV_MM) / sp - 1e-9) if shape is None else np.array(shape, float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"Phantom grid: shape {shape!r} and spacing {spacing!r} must be numbers.") from exc
    if sp.shape != (3,) or size.shape != (3,) or not (np.isfinite(sp).all() and (sp > 0).all()) \
            or (size < 1).any() or (size != np.round(size)).any():
        raise InputError(f"Phantom grid: need 3 whole sizes >= 1 (x, y, z) and 3 positive spacings in mm; "
                         f"got shape {shape!r}, spacing {spacing!r}.")
    size = size.astype(int)
    origin = -(size - 1) * sp / 2.0
    return Grid(size, sp, origin, [origin[d] + sp[d] * np.arange(size[d]) for d in range(3)])


def _image(array: np.ndarray, grid: Grid) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in grid.spacing))
    image.SetOrigin(tuple(float(o) for o in grid.origin))
    return image


def make_phantom(seed: int = 0, shape: Optional[Sequence[int]] = (192, 224, 192),
                 spacing: Sequence[float] = (1.0, 1.0, 1.0), tumour: bool = True, deform: bool = True,
                 noise: bool = True, vessels: bool = False) -> Phantom:
    """One synthetic head; ``shape`` and ``spacing`` in (x, y, z) order. The head keeps its physical size
    (about 150 × 190 × 170 mm) whatever the spacing; ``shape=None`` covers 192 × 224 × 192 mm.

    ``deform=False`` gives the canonical head (no jitter, no warp); ``noise=False`` drops the bias field and
    the acquisition noise but keeps texture and blur; ``vessels`` adds the dural venous sinuses and the choroid
    plexus (:mod:`.phantom_vessels`), the anatomy that enhances on every post-contrast T1w. The same seed gives
    bit-identical arrays.
    """
    grid = _grid(shape, spacing)
    rng = np.random.default_rng(seed)
    anatomy = Anatomy.draw(rng)
    acquisition = Acquisition.draw(rng)
    vessel_anatomy = VesselAnatomy.draw(seed) if vessels else None
    labels = label_map(Frame(grid, anatomy if deform else None), anatomy, tumour, vessel_anatomy)  # frees the coordinates
    images = {name: _image(array, grid)
              for name, array in contrasts(labels, grid, acquisition, noise, rng, vessel_anatomy).items()}
    names = {**LABEL_NAMES, **(VESSEL_LABELS if vessels else {})}
    return Phantom(labels=_image(labels, grid), label_names=names, **images)


def save_phantom(phantom: Phantom, out_dir: Union[str, Path], fmt: str = ".nii.gz") -> Dict[str, Path]:
    """Write every volume as ``<name><fmt>`` and the label table as ``label_table.json``; returns the paths."""
    if fmt not in WRITABLE_FORMATS:
        raise OutputError(f"Phantom format {fmt!r} is not supported; use one of {', '.join(WRITABLE_FORMATS)}.")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, image in phantom.images().items():
            paths[name] = out / f"{name}{fmt}"
            sitk.WriteImage(image, str(paths[name]), True)
        paths["label_table"] = out / "label_table.json"
        table = {str(k): v for k, v in sorted(phantom.label_names.items())}
        paths["label_table"].write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
    except (OSError, RuntimeError) as exc:
        raise OutputError(f"Cannot write the phantom into {out}: {exc}. Choose a writable folder.") from exc
    return paths
