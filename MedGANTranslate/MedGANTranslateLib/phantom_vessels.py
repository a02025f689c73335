"""The head's normally enhancing anatomy, an option of the phantom: dural venous sinuses and choroid plexus.

On a real post-contrast T1w much of the brightest enhancement is not a lesion but blood: the superior sagittal,
straight and transverse sinuses, their confluence, cortical veins, and the choroid plexus in the ventricles' atria
and bodies (the top 1 % enhancing voxels of both real pairs in ``real-data/t1c``, beside the glioma's rim;
docs/models.md). A phantom without them teaches a T1→T1c model that nothing but a tumour enhances. With ``vessels`` the phantom
paints them as two labels of :data:`VESSEL_LABELS` (14 and 15, after the template heads' teeth, 13) and gives each
contrast their values (:data:`VESSEL_NOMINAL`): on the native T1w darker than grey matter (flowing blood, a
vascular tuft in CSF), on the T1w+Gd far brighter than white matter, on T2w dark (flow void) and bright, blood
on CT and in PET.

Their size, the transverse sinuses' asymmetry (one side, more often the right, is dominant) and their tissue values vary per
seed from a random stream of their own (:class:`VesselAnatomy`), so a phantom without vessels is bit for bit the
one the project made before the option existed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Sequence, Tuple

import numpy as np

from .head_fields import ellipsoid_depth
from .phantom_anatomy import Anatomy, Frame

VENOUS_SINUS, CHOROID_PLEXUS = 14, 15
VESSEL_LABELS: Dict[int, str] = {VENOUS_SINUS: "venous_sinus", CHOROID_PLEXUS: "choroid_plexus"}
#: Nominal value of each vessel label per contrast (as phantom_acquisition.NOMINAL: MR a.u., CT HU, PET SUV).
VESSEL_NOMINAL: Dict[str, Tuple[float, float]] = {
    #      sinus  choroid plexus
    "t1": (380.0, 450.0),
    "t2": (250.0, 800.0),
    "t1c": (1450.0, 1200.0),
    "ct": (50.0, 40.0),
    "pet": (1.8, 1.5),
}
VESSEL_TEXTURE = (0.03, 0.05)
_MEAN_JITTER = 0.08
_STREAM = 0x7E55E1  # the vessels' own random stream: (seed, _STREAM)
Point = Tuple[float, float, float]


@dataclass
class VesselAnatomy:
    """Per-seed size of the sinuses and plexus and their tissue values."""

    sagittal_mm: float  # half-width of the superior sagittal sinus's base at the torcula
    sagittal_depth_mm: float  # its triangular cross-section's height below the inner table
    transverse_mm: Tuple[float, float]  # half-height of the left and right transverse sinus
    straight_mm: float
    plexus_scale: float
    means: Dict[str, np.ndarray]  # per contrast, indexed by label - VENOUS_SINUS

    @classmethod
    def draw(cls, seed: int) -> "VesselAnatomy":
        rng = np.random.default_rng([int(seed), _STREAM])
        dominant = rng.uniform(3.5, 5.0)
        other = dominant * rng.uniform(0.55, 1.0)
        # (left, right): +x is the patient's left; the right one is dominant more often
        transverse = (other, dominant) if rng.random() < 0.6 else (dominant, other)
        sagittal, sagittal_depth = rng.uniform(3.5, 5.0), rng.uniform(6.0, 9.0)
        straight, plexus = rng.uniform(2.0, 3.0), rng.uniform(0.8, 1.25)
        means = {name: (np.asarray(v) * np.clip(1.0 + _MEAN_JITTER * rng.standard_normal(2), 0.8, 1.2)
                        if name != "ct" else np.asarray(v) + 5.0 * rng.standard_normal(2)).astype(np.float32)
                 for name, v in VESSEL_NOMINAL.items()}
        return cls(sagittal, sagittal_depth, transverse, straight, plexus, means)


def paint_vessels(labels: np.ndarray, frame: Frame, a: Anatomy, v: VesselAnatomy, below_table: np.ndarray,
                  tentorium: Callable[[np.ndarray], np.ndarray], plexus: Sequence[Tuple[Point, Point]],
                  ventricle_centre: np.ndarray) -> None:
    """Paint the sinuses into the dura, CSF and cortex under the vault's inner table, and the plexus into the
    ventricles.

    ``below_table`` is every voxel's depth (mm) below the inner table of the skull, ``tentorium`` the tentorium's
    height as a function of y, ``plexus`` the (left) ellipsoids of the choroid plexus, scaled with the ventricles
    about ``ventricle_centre`` as they are."""
    sl, (x, y, z) = frame.box((-75.0, -95.0, -45.0), (75.0, 105.0, 85.0))
    view, depth = labels[sl], below_table[sl]
    shell = (depth > 0.0) & np.isin(view, (2, 4, 5, 6))  # the dura (labelled bone), CSF and cortex below the table
    tent = tentorium(y)
    # superior sagittal sinus: triangular, its base on the inner table, widening from the frontal pole backwards
    half = np.float32(v.sagittal_mm) * np.clip(0.35 + 0.65 * (y + 70.0) / 150.0, 0.35, 1.0)
    sagittal = shell & (np.abs(x) < half * (1.0 - depth / np.float32(v.sagittal_depth_mm))) & (z > tent)
    # transverse sinuses: along the occipital inner table where the tentorium meets it, from the torcula outwards
    height = np.where(x >= 0, np.float32(v.transverse_mm[0]), np.float32(v.transverse_mm[1]))
    transverse = shell & (depth < 2.0 * height) & (np.abs(z - tent) < height) & (y > 25.0)
    # straight sinus: along the tentorium's ridge, from the vein of Galen back to the torcula
    radius = np.float32(v.straight_mm)
    straight = (np.abs(x) < radius) & (np.abs(z - tent - radius) < radius) & (y > 32.0) & (depth > 0.0) \
        & np.isin(view, (4, 5, 6))
    view[sagittal | transverse | straight] = VENOUS_SINUS

    for centre, axes in plexus:
        for side in (1.0, -1.0):
            c = ventricle_centre + a.ventricle_scale * (np.array([side * centre[0], centre[1], centre[2]])
                                                        - ventricle_centre)
            s = a.ventricle_scale * v.plexus_scale * np.asarray(axes)
            sl, q = frame.ellipsoid(c, s)
            view = labels[sl]
            view[(ellipsoid_depth(q, c, s) > 0) & (view == 7)] = CHOROID_PLEXUS
