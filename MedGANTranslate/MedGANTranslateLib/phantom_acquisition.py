"""How the phantom's scanners see its labels: T1w, T2w, T1w+Gd, CT and FDG-PET.

Each seed draws its own tissue values around :data:`NOMINAL`, a smooth intra-tissue texture, a partial-volume
blur and each modality's noise levels, before any grid-sized draw (:class:`Acquisition`); :func:`contrasts` then
maps the labels to those values and adds each modality's own artefacts: MR bias field and Rician noise, CT
Gaussian noise, PET count noise and resolution blur. Only the noise draws depend on the grid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np
from scipy import ndimage

from .head_fields import SmoothField
from .phantom_anatomy import Grid
from .phantom_vessels import VENOUS_SINUS, VESSEL_TEXTURE, VesselAnatomy

#: Nominal value of each label (index = label) per contrast: MR in arbitrary units, CT in HU, PET in SUV.
#: Each seed draws its own tissue means around these (5 % for MR and PET, ``CT_SD`` HU for CT).
NOMINAL: Dict[str, Tuple[float, ...]] = {
    #        air  scalp  bone  diploe  csf    gm    wm  vent   eye  sinus   rim  core  muscle
    "t1": (0.0, 950.0, 40.0, 550.0, 180.0, 520.0, 780.0, 170.0, 150.0, 15.0, 470.0, 230.0, 450.0),
    "t2": (0.0, 650.0, 30.0, 400.0, 1000.0, 620.0, 450.0, 1000.0, 1050.0, 15.0, 750.0, 1100.0, 300.0),
    "t1c": (0.0, 980.0, 40.0, 580.0, 180.0, 520.0, 780.0, 170.0, 150.0, 15.0, 1150.0, 230.0, 500.0),
    "ct": (-1000.0, -50.0, 1500.0, 550.0, 8.0, 38.0, 28.0, 8.0, 12.0, -1000.0, 45.0, 20.0, 50.0),
    "pet": (0.0, 1.0, 0.8, 1.2, 0.3, 8.0, 3.0, 0.3, 1.0, 0.0, 11.0, 1.0, 1.2),
}
#: Standard deviation (HU) of each label's per-seed CT mean.
CT_SD = (0.0, 8.0, 120.0, 60.0, 3.0, 3.0, 3.0, 3.0, 3.0, 0.0, 5.0, 5.0, 5.0)
#: Relative amplitude of the smooth intra-tissue texture per label (air and sinus air stay flat).
TEXTURE = (0.0, 0.08, 0.06, 0.12, 0.02, 0.04, 0.03, 0.02, 0.01, 0.0, 0.08, 0.06, 0.05)
_MEAN_JITTER = 0.05


@dataclass
class Acquisition:
    """Per-seed tissue means, texture, blur and noise settings for every contrast (shape-independent)."""

    means: Dict[str, np.ndarray]
    texture: SmoothField
    bias_t1: SmoothField
    bias_t2: SmoothField
    bias_amplitude: Tuple[float, float]
    partial_volume: float
    mr_sigma: Dict[str, float]
    ct_sigma: float
    pet_fwhm_mm: float
    pet_counts: float  # counts per SUV per mm^3 before reconstruction blur

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "Acquisition":
        means = {}
        for name, nominal in NOMINAL.items():
            values = np.asarray(nominal)
            if name == "ct":
                values = values + rng.standard_normal(values.size) * np.asarray(CT_SD)
            else:
                values = values * np.clip(1.0 + _MEAN_JITTER * rng.standard_normal(values.size), 0.85, 1.15)
            means[name] = values.astype(np.float32)
        return cls(means, SmoothField(rng, 5.0), SmoothField(rng, 50.0), SmoothField(rng, 50.0),
                   (rng.uniform(0.1, 0.2), rng.uniform(0.1, 0.2)), rng.uniform(0.5, 0.7),
                   {name: rng.uniform(10.0, 30.0) for name in ("t1", "t1c", "t2")}, rng.uniform(10.0, 20.0),
                   rng.uniform(4.0, 5.0), rng.uniform(0.06, 0.15))


def _rician(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the signal plus complex Gaussian noise, as an MR magnitude image is."""
    real = rng.standard_normal(image.shape, dtype=np.float32)
    real *= np.float32(sigma)
    real += image
    real *= real
    imaginary = rng.standard_normal(image.shape, dtype=np.float32)
    imaginary *= np.float32(sigma)
    imaginary *= imaginary
    real += imaginary
    return np.sqrt(real, out=real)


def _with_vessels(table: np.ndarray, vessels: np.ndarray) -> np.ndarray:
    """A per-label table extended to the vessel labels (the template heads' teeth, 13, between them: never in a
    phantom)."""
    out = np.zeros(VENOUS_SINUS + len(vessels), np.float32)
    out[:len(table)] = table
    out[VENOUS_SINUS:] = vessels
    return out


def contrasts(labels: np.ndarray, grid: Grid, acq: Acquisition, noise: bool, rng: np.random.Generator,
              vessels: Optional[VesselAnatomy] = None) -> Dict[str, np.ndarray]:
    """Every contrast of ``labels`` by name, float32 (z, y, x): the seed's tissue values with texture and
    partial-volume blur, and with ``noise`` each modality's bias field and noise (PET: count noise, then blur).
    ``vessels``: the values of the vessel labels (:mod:`.phantom_vessels`) when ``labels`` has them."""
    texture_table = np.asarray(TEXTURE, np.float32)
    means_by_name = acq.means
    if vessels is not None:
        texture_table = _with_vessels(texture_table, np.asarray(VESSEL_TEXTURE, np.float32))
        means_by_name = {name: _with_vessels(m, vessels.means[name]) for name, m in acq.means.items()}
    texture = texture_table[labels]
    texture *= acq.texture(grid.axes)
    texture += 1.0
    spacing_zyx = grid.spacing[::-1]
    clean = {name: ndimage.gaussian_filter(means[labels] * texture, acq.partial_volume, mode="nearest")
             for name, means in means_by_name.items() if name != "pet"}
    out: Dict[str, np.ndarray] = {}
    if noise:
        bias_t1 = 1.0 + acq.bias_amplitude[0] * np.tanh(acq.bias_t1(grid.axes))
        bias_t2 = 1.0 + acq.bias_amplitude[1] * np.tanh(acq.bias_t2(grid.axes))
        for name, bias in (("t1", bias_t1), ("t1c", bias_t1), ("t2", bias_t2)):
            out[name] = _rician(clean[name] * bias, acq.mr_sigma[name], rng)
        out["ct"] = clean["ct"] + np.float32(acq.ct_sigma) * rng.standard_normal(labels.shape, dtype=np.float32)
    else:
        out.update(clean)

    pet = means_by_name["pet"][labels] * texture
    if noise:
        per_voxel = acq.pet_counts * float(np.prod(grid.spacing))
        body = pet > 0
        pet[body] = (rng.poisson(pet[body] * per_voxel) / per_voxel).astype(np.float32)
    sigma_mm = acq.pet_fwhm_mm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    out["pet"] = ndimage.gaussian_filter(pet, sigma_mm / spacing_zyx, mode="nearest")
    return {name: image.astype(np.float32, copy=False) for name, image in out.items()}
