"""Every random choice of one template head, drawn in a fixed order from its seed before any grid-sized work.

:class:`HeadParameters` holds the head's pose, per-axis size and smooth warp, the thresholds that make air, bone
and fat of the deformed templates, the vault's least thickness, each paranasal sinus' pneumatisation and
opacification (:data:`SINUS_REGIONS`), the frontal sinus and mastoid cells, cortical folding, the procedural lower
head's proportions (palate, bite, mandible, teeth, mouth, airway, neck, vertebrae) and the CT's per-head tissue
densities around :data:`CT_MEANS`. Regions are in template millimetres.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .head_fields import PlaneWaves, SmoothField
from .phantom_acquisition import CT_SD as PHANTOM_CT_SD
from .phantom_acquisition import NOMINAL

#: CT means (HU) and their per-head standard deviations for every label; teeth are dentine and enamel.
CT_MEANS = np.array(list(NOMINAL["ct"]) + [2300.0], np.float32)
CT_SD = np.array(list(PHANTOM_CT_SD) + [250.0], np.float32)


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
    fissure_mm: float  # width of the interhemispheric fissure with the falx
    tentorium_mm: float  # thickness of the tentorium with the CSF around it

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
                   rng.uniform(10.0, 20.0), rng.uniform(1.5, 4.0), rng.uniform(1.5, 3.0))
