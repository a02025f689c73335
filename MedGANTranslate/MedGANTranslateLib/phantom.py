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
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .errors import InputError, OutputError

LABEL_NAMES: Dict[int, str] = {
    0: "air",
    1: "scalp_fat",
    2: "cortical_bone",
    3: "diploe",
    4: "csf",
    5: "grey_matter",
    6: "white_matter",
    7: "ventricles",
    8: "eyes",
    9: "sinus_airway",
    10: "tumour_enhancing",
    11: "tumour_necrotic",
    12: "muscle_soft_tissue",
}

#: Nominal value of each label (index = label) per contrast: MR in arbitrary units, CT in HU, PET in SUV.
#: Each seed draws its own tissue means around these (5 % for MR and PET, ``_CT_SD`` HU for CT).
NOMINAL: Dict[str, Tuple[float, ...]] = {
    #        air  scalp  bone  diploe  csf    gm    wm  vent   eye  sinus   rim  core  muscle
    "t1": (0.0, 950.0, 40.0, 550.0, 180.0, 520.0, 780.0, 170.0, 150.0, 15.0, 470.0, 230.0, 450.0),
    "t2": (0.0, 650.0, 30.0, 400.0, 1000.0, 620.0, 450.0, 1000.0, 1050.0, 15.0, 750.0, 1100.0, 300.0),
    "t1c": (0.0, 980.0, 40.0, 580.0, 180.0, 520.0, 780.0, 170.0, 150.0, 15.0, 1150.0, 230.0, 500.0),
    "ct": (-1000.0, -50.0, 1500.0, 550.0, 8.0, 38.0, 28.0, 8.0, 12.0, -1000.0, 45.0, 20.0, 50.0),
    "pet": (0.0, 1.0, 0.8, 1.2, 0.3, 8.0, 3.0, 0.3, 1.0, 0.0, 11.0, 1.0, 1.2),
}
_CT_SD = (0.0, 8.0, 120.0, 60.0, 3.0, 3.0, 3.0, 3.0, 3.0, 0.0, 5.0, 5.0, 5.0)
#: Relative amplitude of the smooth intra-tissue texture per label (air and sinus air stay flat).
_TEXTURE = (0.0, 0.08, 0.06, 0.12, 0.02, 0.04, 0.03, 0.02, 0.01, 0.0, 0.08, 0.06, 0.05)
_MEAN_JITTER = 0.05

VOLUMES = ("t1", "t2", "ct", "pet", "t1c", "labels")
WRITABLE_FORMATS = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
#: Field of view (x, y, z mm) used when ``shape`` is None: the whole head down to the upper neck.
DEFAULT_FOV_MM = (192.0, 224.0, 192.0)
_FIELD_HALF_MM = 160.0  # random fields are defined on [-160, 160] mm and held constant beyond

# Canonical head geometry (mm, LPS, centred on the head): (centre, semi-axes).
_VAULT = ((0.0, 6.0, 4.0), (75.0, 93.0, 76.0))
_FACE = ((0.0, -20.0, -28.0), (68.0, 72.0, 60.0))
_NOSE = ((0.0, -88.0, -42.0), (10.0, 13.0, 20.0))
_NECK = ((0.0, 18.0), (50.0, 52.0), -40.0)  # elliptic cylinder (centre xy, semi-axes xy, top z)
_SINUSES = (  # air spaces walled by bone and lined by mucosa
    ((0.0, -73.0, 2.0), (14.0, 5.0, 9.0)),  # frontal
    ((0.0, -52.0, -14.0), (8.0, 13.0, 7.0)),  # ethmoid
    ((0.0, -25.0, -30.0), (11.0, 10.0, 9.0)),  # sphenoid
    ((24.0, -50.0, -50.0), (11.0, 15.0, 12.0)),  # maxillary, left
    ((-24.0, -50.0, -50.0), (11.0, 15.0, 12.0)),  # maxillary, right
    ((0.0, -52.0, -42.0), (8.5, 28.0, 19.0)),  # nasal cavity
)
_NASOPHARYNX = ((0.0, -18.0, -50.0), (10.0, 14.0, 7.0))
_PHARYNX = ((0.0, -6.0), (9.0, 6.0), -52.0)
_EYE_CENTRE, _EYE_RADIUS = (31.0, -60.0, -20.0), 11.5
_ORBIT = ((30.0, -50.0, -20.0), (15.0, 20.0, 14.0))
_DEEP_GREY = (  # thalamus, lentiform nucleus, caudate head (left; mirrored)
    ((11.0, 12.0, 8.0), (8.0, 13.0, 8.0)),
    ((22.0, -5.0, 10.0), (6.0, 14.0, 10.0)),
    ((14.0, -15.0, 18.0), (5.0, 9.0, 7.0)),
)
_VENTRICLES = (  # lateral ventricle pieces (left; mirrored), then midline third and fourth ventricles
    ((9.0, -22.0, 16.0), (6.0, 12.0, 8.0)),
    ((10.0, 0.0, 20.0), (6.0, 20.0, 6.0)),
    ((16.0, 25.0, 14.0), (7.0, 10.0, 8.0)),
    ((15.0, 42.0, 12.0), (4.0, 12.0, 5.0)),
    ((23.0, 18.0, 2.0), (4.0, 7.0, 9.0)),
    ((28.0, 5.0, -8.0), (4.0, 16.0, 5.0)),
)
_MIDLINE_VENTRICLES = (((0.0, 5.0, 0.0), (1.8, 14.0, 9.0)), ((0.0, 38.0, -28.0), (5.0, 4.0, 6.0)))
_VENTRICLE_CENTRE = np.array([0.0, 8.0, 12.0])

_Slices = Tuple[slice, slice, slice]
_Coords = Tuple[np.ndarray, np.ndarray, np.ndarray]


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


# ------------------------------------------------------------------------------------------ random fields


class _SmoothField:
    """Unit-variance Gaussian random field, smooth on ``step`` mm, in physical mm so that it does not depend
    on the grid. The coefficients are drawn at construction (shape-independent), evaluated later as a
    separable tensor product, which is far cheaper than filtering a full-size volume. The products use
    ``einsum`` rather than BLAS, whose results change with the thread count, to keep seeds bit-exact."""

    def __init__(self, rng: np.random.Generator, step: float) -> None:
        n = int(round(2 * _FIELD_HALF_MM / step)) + 1
        self.step = step
        self.centres = np.linspace(-_FIELD_HALF_MM, _FIELD_HALF_MM, n)
        self.coef = rng.standard_normal((n, n, n), dtype=np.float32)  # (z, y, x)

    def _basis(self, axis: np.ndarray) -> np.ndarray:
        d = (np.clip(axis, -_FIELD_HALF_MM, _FIELD_HALF_MM)[:, None] - self.centres[None, :]) / self.step
        w = np.exp(-0.5 * d * d)
        return (w / np.sqrt((w * w).sum(axis=1, keepdims=True))).astype(np.float32)  # unit L2 rows: variance 1

    def __call__(self, axes: Sequence[np.ndarray]) -> np.ndarray:
        """The field on the grid whose physical x, y, z axes are given; array order (z, y, x)."""
        wx, wy, wz = (self._basis(a) for a in axes)
        t = np.einsum("abc,xc->abx", self.coef, wx)
        t = np.einsum("abx,yb->ayx", t, wy)
        return np.einsum("ayx,za->zyx", t, wz)


# ---------------------------------------------------------------------------------------------- geometry


@dataclass
class _Grid:
    """The output grid: voxel-centre axes in physical mm (x, y, z), centred on the physical origin."""

    shape: np.ndarray
    spacing: np.ndarray
    origin: np.ndarray
    axes: List[np.ndarray]

    @classmethod
    def make(cls, shape: Optional[Sequence[int]], spacing: Sequence[float]) -> "_Grid":
        """Checked grid; ``shape=None`` covers :data:`DEFAULT_FOV_MM` at this spacing."""
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
        return cls(size, sp, origin, [origin[d] + sp[d] * np.arange(size[d]) for d in range(3)])


class _Frame:
    """Canonical head-frame coordinates of every voxel, q = M⁻¹ (p − shift) + u(p), with M the jitter
    (rotation and scale) and u the smooth warp; ``None`` gives the undeformed head."""

    def __init__(self, grid: _Grid, anatomy: Optional["_Anatomy"]) -> None:
        self.grid = grid
        if anatomy is None:
            self.matrix, inverse, self.shift, self.slack = np.eye(3), np.eye(3), np.zeros(3), 0.0
            warp: List[Optional[np.ndarray]] = [None, None, None]
        else:
            self.matrix, self.shift, self.slack = anatomy.matrix, anatomy.shift, anatomy.warp_mm
            inverse = anatomy.inverse
            warp = [np.float32(anatomy.warp_mm) * np.tanh(f(grid.axes)) for f in anatomy.warp]
        d = [(ax - s) for ax, s in zip(grid.axes, self.shift)]
        q = []
        for r in range(3):
            plane = (inverse[r, 0] * d[0]).astype(np.float32)[None, None, :] \
                + (inverse[r, 1] * d[1]).astype(np.float32)[None, :, None]
            full = plane + (inverse[r, 2] * d[2]).astype(np.float32)[:, None, None]  # array order (z, y, x)
            if warp[r] is not None:
                full += warp[r]
            q.append(full)
        self.q: _Coords = (q[0], q[1], q[2])

    def box(self, lo: Sequence[float], hi: Sequence[float]) -> Tuple[_Slices, _Coords]:
        """Array slices holding every voxel whose canonical point may lie in [lo, hi], and their coordinates."""
        lo_, hi_ = np.asarray(lo, float) - self.slack, np.asarray(hi, float) + self.slack
        corners = np.array(list(product(*zip(lo_, hi_))))
        p = np.einsum("ij,cj->ci", self.matrix, corners) + self.shift
        g = self.grid
        first = np.clip(np.floor((p.min(0) - g.origin) / g.spacing).astype(int) - 1, 0, g.shape)
        last = np.clip(np.ceil((p.max(0) - g.origin) / g.spacing).astype(int) + 2, 0, g.shape)
        sl = (slice(first[2], last[2]), slice(first[1], last[1]), slice(first[0], last[0]))
        return sl, (self.q[0][sl], self.q[1][sl], self.q[2][sl])

    def ellipsoid(self, centre: Sequence[float], axes: Sequence[float], margin: float = 0.0
                  ) -> Tuple[_Slices, _Coords]:
        c, a = np.asarray(centre), np.asarray(axes) + margin
        return self.box(c - a, c + a)


def _depth(coords: Sequence[np.ndarray], centre: Sequence[float], axes: Sequence[float]) -> np.ndarray:
    """Approximate depth (mm) below the surface of an ellipsoid (or elliptic cylinder when given two axes),
    positive inside: (1 − ρ)/|∇ρ|, first-order accurate near the surface and monotonic inside."""
    rho2 = np.zeros_like(coords[0])
    grad2 = np.zeros_like(coords[0])
    for v, c, a in zip(coords, centre, axes):
        u = v - np.float32(c)
        u /= np.float32(a)
        rho2 += u * u
        u /= np.float32(a)
        grad2 += u * u
    rho = np.sqrt(rho2)
    grad = np.sqrt(grad2)
    ratio = np.divide(rho, grad, out=np.full_like(rho, min(axes)), where=grad > 0)
    return (1.0 - rho) * ratio


def _mirrored(shapes: Sequence[Tuple[Sequence[float], Sequence[float]]]
              ) -> Iterator[Tuple[Tuple[float, float, float], Sequence[float]]]:
    """Each left-sided shape and its mirror image on the right."""
    for centre, axes in shapes:
        for side in (1.0, -1.0):
            yield (side * centre[0], centre[1], centre[2]), axes


def _floor(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Height of the cranial floor: high over the orbits, dipping laterally into the middle fossa (temporal
    lobes) and posteriorly into the bowl of the posterior fossa (cerebellum)."""
    lateral = np.minimum(np.abs(x) / 45.0, 1.0) ** 2
    posterior = 0.5 + 0.5 * np.tanh((y - 10.0) / 10.0)
    bowl = 10.0 * (x / 55.0) ** 2 + 20.0 * (np.maximum(y - 40.0, 0.0) / 45.0) ** 2
    return (-24.0 - 18.0 * np.tanh(y / 25.0) - 12.0 * lateral * np.exp(-(((y + 15.0) / 22.0) ** 2))
            + posterior * bowl)


def _tentorium(y: np.ndarray) -> np.ndarray:
    """Height of the tentorium (cerebrum above, cerebellum below), sloping down towards the occiput."""
    return -4.0 - 0.25 * (y - 5.0)


def _midline_bridge(y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Where the hemispheres join (corpus callosum arch, diencephalon), which the midline fissure spares."""
    top = 30.0 - 10.0 * ((y - 3.0) / 35.0) ** 2
    callosum = (y > -32.0) & (y < 38.0) & (z < top) & (z > top - 7.0)
    diencephalon = (y > -15.0) & (y < 25.0) & (z < top) & (z > -12.0)
    return callosum | diencephalon


@dataclass
class _Waves:
    """Random plane waves whose zero set makes the sulci: |F|/k approximates the distance to it (mm)."""

    vectors: np.ndarray  # (K, 3) wave vectors of length k
    phases: np.ndarray
    k: float  # wavenumber 2π/λ

    @classmethod
    def draw(cls, rng: np.random.Generator, wavelength: float, count: int = 12) -> "_Waves":
        k = 2 * math.pi / wavelength
        directions = rng.standard_normal((count, 3))
        directions /= np.sqrt((directions * directions).sum(axis=1, keepdims=True))
        return cls(directions * k, rng.uniform(0, 2 * math.pi, count), k)

    def field(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Sum of the waves scaled to unit variance."""
        total = np.zeros_like(x)
        for (kx, ky, kz), phase in zip(self.vectors.astype(np.float32), self.phases.astype(np.float32)):
            total += np.cos(kx * x + ky * y + kz * z + phase)
        return total * np.float32(math.sqrt(2.0 / len(self.phases)))

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Approximate distance (mm) to the zero set: the field over its RMS gradient, |k|."""
        return np.abs(self.field(x, y, z)) / np.float32(self.k)


@dataclass
class _Anatomy:
    """Every seed-dependent shape parameter, drawn in a fixed order before any grid-sized draw."""

    matrix: np.ndarray  # canonical → physical: rotation · diag(scales)
    inverse: np.ndarray
    shift: np.ndarray
    warp_mm: float
    warp: List[_SmoothField]
    scalp: _SmoothField
    diploe: _SmoothField
    sulcal: _SmoothField
    folds: _Waves
    folia: _Waves
    grey_mm: float
    csf_mm: float
    ventricle_scale: float
    tumour_centre: np.ndarray
    tumour_radius: float
    tumour_rim_mm: float
    tumour_lobes: _Waves
    mucosa_mm: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "_Anatomy":
        angles = np.radians(rng.uniform(-3.0, 3.0, 3))
        scales = rng.uniform(0.97, 1.03, 3)
        shift = rng.uniform(-2.0, 2.0, 3)
        cx, cy, cz = np.cos(angles)
        sx, sy, sz = np.sin(angles)
        rot = np.einsum("ij,jk,kl->il", np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]),
                        np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]),
                        np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]))
        warp_mm = rng.uniform(2.0, 4.0)
        warp = [_SmoothField(rng, 30.0) for _ in range(3)]
        scalp, diploe, sulcal = _SmoothField(rng, 20.0), _SmoothField(rng, 20.0), _SmoothField(rng, 15.0)
        folds, folia = _Waves.draw(rng, rng.uniform(20.0, 26.0)), _Waves.draw(rng, rng.uniform(8.0, 10.0))
        grey_mm, csf_mm, ventricle_scale = rng.uniform(2.4, 3.0), rng.uniform(1.5, 3.0), rng.uniform(0.8, 1.3)
        side = rng.choice([-1.0, 1.0])
        centre = np.array([side * rng.uniform(15.0, 36.0), rng.uniform(-40.0, 45.0), rng.uniform(8.0, 45.0)])
        radius, rim = rng.uniform(9.0, 16.0), rng.uniform(2.5, 4.5)
        lobes = _Waves.draw(rng, 1.5 * radius, count=3)
        return cls(rot * scales[None, :], rot.T / scales[:, None], shift, warp_mm, warp, scalp, diploe, sulcal,
                   folds, folia, grey_mm, csf_mm, ventricle_scale, centre, radius, rim, lobes, rng.uniform(0.5, 2.5))


# -------------------------------------------------------------------------------------------- label map


def _paint(labels: np.ndarray, sl: _Slices, mask: np.ndarray, value: int, spare: Sequence[int] = ()) -> None:
    """Set ``value`` where ``mask`` holds inside the box, leaving the labels in ``spare`` untouched."""
    view = labels[sl]
    if spare:
        mask = mask & ~np.isin(view, spare)
    view[mask] = value


def _only(labels: np.ndarray, sl: _Slices, mask: np.ndarray, value: int, within: Sequence[int]) -> None:
    """Set ``value`` where ``mask`` holds inside the box, only over the labels in ``within``."""
    view = labels[sl]
    view[mask & np.isin(view, within)] = value


def _body(frame: _Frame, a: _Anatomy) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Skin, skull layers, CSF and a brain placeholder from the depth below the head's outer surface.
    Returns the labels, the brain mask and the depth below the brain surface."""
    x, y, z = frame.q
    depth = _depth(frame.q, *_VAULT)
    for centre, axes in (_FACE, _NOSE):
        sl, q = frame.ellipsoid(centre, axes)
        np.maximum(depth[sl], _depth(q, centre, axes), out=depth[sl])
    (nx, ny), neck_axes, top = _NECK
    sl, q = frame.box((nx - neck_axes[0], ny - neck_axes[1], -1e4), (nx + neck_axes[0], ny + neck_axes[1], top))
    neck = np.minimum(_depth(q[:2], (nx, ny), neck_axes), np.float32(top) - q[2])
    np.maximum(depth[sl], neck, out=depth[sl])

    scalp = 5.0 + 1.5 * np.tanh(a.scalp(frame.grid.axes))
    outer = scalp + 1.8
    inner = outer + 2.5 + 1.5 * np.tanh(a.diploe(frame.grid.axes))
    dura = inner + 1.5
    brain_top = dura + np.float32(a.csf_mm)
    floor = _floor(x, y)

    labels = np.zeros(depth.shape, np.uint8)
    labels[depth >= 0] = 12
    labels[(depth >= 0) & (depth < scalp)] = 1
    vault = (z > floor - 6.0) & (depth >= scalp)
    labels[vault] = 2
    labels[vault & (depth >= outer) & (depth < inner) & (z > floor)] = 3
    labels[vault & (depth >= outer) & (z > floor - 4.5) & (z < floor - 1.5)] = 3  # skull base marrow
    cavity = vault & (depth >= dura) & (z > floor)
    labels[cavity] = 4
    below_surface = np.minimum(depth - brain_top, z - floor - np.float32(a.csf_mm))
    brain = cavity & (below_surface > 0)
    return labels, brain, below_surface


def _cortex(labels: np.ndarray, brain: np.ndarray, below_surface: np.ndarray, frame: _Frame, a: _Anatomy) -> None:
    """Grey matter, white matter and sulcal CSF inside the brain mask, from the distance to the nearest CSF
    boundary (outer surface, tentorium, interhemispheric fissure) and to the folding waves' zero set."""
    index = np.flatnonzero(brain)
    x, y, z = (c.reshape(-1)[index] for c in frame.q)
    depth = below_surface.reshape(-1)[index]
    sulcal_depth = 9.0 + 4.0 * np.tanh(a.sulcal(frame.grid.axes).reshape(-1)[index])

    tentorium = np.where(y > 5.0, np.abs(z - _tentorium(y)) - 1.0, np.inf).astype(np.float32)
    cerebellum = (y > 5.0) & (z < _tentorium(y))
    fissure = np.where(~cerebellum & ~_midline_bridge(y, z), np.abs(x) - 1.0 - 0.3 * a.csf_mm,
                       np.inf).astype(np.float32)
    depth = np.minimum(depth, np.minimum(tentorium, fissure))

    gaps = np.where(cerebellum, a.folia.distance(x, y, z), a.folds.distance(x, y, z))
    width = 0.4 + 0.15 * a.csf_mm
    grey = np.where(cerebellum, 1.4, a.grey_mm).astype(np.float32)
    sulcal_depth = np.where(cerebellum, 5.0, sulcal_depth)
    tissue = np.full(index.shape, 6, np.uint8)
    tissue[(depth < grey) | ((gaps < width + grey) & (depth < sulcal_depth + grey))] = 5
    tissue[(depth < 0) | ((gaps < width) & (depth < sulcal_depth))] = 4
    for centre, axes in _mirrored(_DEEP_GREY):
        tissue[_depth((x, y, z), centre, axes) > 0] = 5
    labels.reshape(-1)[index] = tissue


def _brainstem_and_spine(labels: np.ndarray, frame: _Frame) -> None:
    """Brainstem and spinal cord in their CSF sheath through the foramen magnum, cervical vertebrae."""
    sl, (x, y, z) = frame.box((-20.0, 0.0, -1e4), (20.0, 50.0, 0.0))
    centre_y = 22.0 + 9.0 * np.clip((-z - 10.0) / 50.0, 0.0, 1.0)
    rx = 5.0 + 8.0 * np.clip((z + 60.0) / 45.0, 0.0, 1.0)
    radius = np.sqrt((x / rx) ** 2 + ((y - centre_y) / (0.85 * rx)) ** 2)
    radius_sheath = np.sqrt((x / (rx + 3.0)) ** 2 + ((y - centre_y) / (0.85 * rx + 3.0)) ** 2)
    _paint(labels, sl, (radius_sheath < 1) & (z < -12.0), 4, spare=(0, 1))
    _paint(labels, sl, (radius < 1) & (z < -8.0), 6, spare=(0, 1))

    sl, (x, y, z) = frame.box((-16.0, -2.0, -1e4), (16.0, 45.0, -45.0))
    segment = np.cos(2 * math.pi * (z + 45.0) / 17.0) < 0.8  # intervertebral discs stay soft tissue
    body = _depth((x, y), (0.0, 10.0), (12.0, 9.0)) * (z < -48.0)
    _paint(labels, sl, (body > 0) & segment, 2)
    _paint(labels, sl, (body > 1.5) & segment, 3)
    canal = np.sqrt(x ** 2 + (y - 31.0) ** 2)
    _paint(labels, sl, (canal > 8.5) & (canal < 12.5) & (y > 27.0) & segment, 2)


def _ventricles(labels: np.ndarray, frame: _Frame, a: _Anatomy) -> None:
    """Lateral ventricles (overlapping ellipsoids along the C shape), third and fourth ventricles; their size
    varies per seed like atrophy does."""
    for centre, axes in list(_mirrored(_VENTRICLES)) + list(_MIDLINE_VENTRICLES):
        c = _VENTRICLE_CENTRE + a.ventricle_scale * (np.asarray(centre) - _VENTRICLE_CENTRE)
        s = a.ventricle_scale * np.asarray(axes)
        sl, q = frame.ellipsoid(c, s)
        _only(labels, sl, _depth(q, c, s) > 0, 7, within=(4, 5, 6))


def _face(labels: np.ndarray, frame: _Frame, a: _Anatomy) -> None:
    """Facial bones, orbits and eyes, and the air spaces: sinuses (walled by bone, lined by mucosa),
    nasal cavity with its septum, naso- and oropharynx."""
    soft = (0, 1, 8)
    palate = ((0.0, -48.0, -64.0), (24.0, 30.0, 2.5))
    sl, q = frame.ellipsoid(*palate)
    _paint(labels, sl, _depth(q, *palate) > 0, 2, spare=soft)

    sl, (x, y, z) = frame.box((-70.0, -95.0, -92.0), (70.0, 12.0, -36.0))
    jaw_top = -66.0 + 28.0 * np.clip((y + 10.0) / 18.0, 0.0, 1.0)
    face_depth = _depth((x, y, z), *_FACE)
    mandible = (z < jaw_top) & (y < 10.0)
    _paint(labels, sl, mandible & (face_depth >= 4.5) & (face_depth < 11.0), 2, spare=soft)
    _paint(labels, sl, mandible & (face_depth >= 6.5) & (face_depth < 9.0) & (z < jaw_top - 2.0), 3, spare=soft)

    for centre, axes in _SINUSES:
        sl, q = frame.ellipsoid(centre, axes, margin=2.5)
        _paint(labels, sl, _depth(q, centre, axes) > -2.5, 2, spare=soft)
    globe = (_EYE_RADIUS,) * 3
    for side in (1.0, -1.0):
        (ox, oy, oz), axes = _ORBIT
        centre, eye = (side * ox, oy, oz), (side * _EYE_CENTRE[0], _EYE_CENTRE[1], _EYE_CENTRE[2])
        sl, q = frame.ellipsoid(centre, axes, margin=2.0)
        orbit = _depth(q, centre, axes)
        _paint(labels, sl, (orbit > -2.0) & (q[1] > eye[1] - 2.0), 2, spare=(0, 1))  # walls behind the globe
        _paint(labels, sl, orbit > 0, 1, spare=(0,))  # orbital fat
        sl, q = frame.ellipsoid(eye, globe)
        _paint(labels, sl, _depth(q, eye, globe) > 0, 8, spare=(0,))
    for centre, axes in _SINUSES:
        sl, q = frame.ellipsoid(centre, axes)
        wall = _depth(q, centre, axes)
        _paint(labels, sl, wall > 0, 12, spare=soft)
        _paint(labels, sl, wall > a.mucosa_mm, 9, spare=soft)
    centre, axes = _SINUSES[-1]
    sl, q = frame.ellipsoid(centre, axes)
    _paint(labels, sl, (np.abs(q[0]) < 0.9) & (_depth(q, centre, axes) > 0), 2)  # nasal septum

    sl, q = frame.ellipsoid(*_NASOPHARYNX)
    _paint(labels, sl, _depth(q, *_NASOPHARYNX) > 0, 9, spare=(0, 1))
    (px, py), p_axes, top = _PHARYNX
    sl, q = frame.box((px - p_axes[0], py - p_axes[1], -1e4), (px + p_axes[0], py + p_axes[1], top))
    _paint(labels, sl, (_depth(q[:2], (px, py), p_axes) > 0) & (q[2] < top), 9, spare=(0, 1))


def _tumour(labels: np.ndarray, frame: _Frame, a: _Anatomy) -> None:
    """A lobulated tumour inside the cranial cavity: enhancing rim around a necrotic core."""
    r = a.tumour_radius * 1.2
    sl, (x, y, z) = frame.box(a.tumour_centre - r, a.tumour_centre + r)
    cx, cy, cz = (np.float32(v) for v in a.tumour_centre)
    dx, dy, dz = x - cx, y - cy, z - cz
    radius = np.float32(a.tumour_radius) * (1.0 + 0.15 * a.tumour_lobes.field(dx, dy, dz))
    distance = np.sqrt(dx * dx + dy * dy + dz * dz)
    _only(labels, sl, distance < radius, 10, within=(4, 5, 6, 7))
    _only(labels, sl, distance < radius - np.float32(a.tumour_rim_mm), 11, within=(10,))


def _label_map(frame: _Frame, a: _Anatomy, tumour: bool) -> np.ndarray:
    """The label volume (z, y, x); each step overwrites the previous ones where its structures lie."""
    labels, brain, below_surface = _body(frame, a)
    _cortex(labels, brain, below_surface, frame, a)
    del brain, below_surface
    _brainstem_and_spine(labels, frame)
    _ventricles(labels, frame, a)
    _face(labels, frame, a)
    if tumour:
        _tumour(labels, frame, a)
    return labels


# ------------------------------------------------------------------------------------------- contrasts


@dataclass
class _Acquisition:
    """Per-seed tissue means, texture, blur and noise settings for every contrast (shape-independent)."""

    means: Dict[str, np.ndarray]
    texture: _SmoothField
    bias_t1: _SmoothField
    bias_t2: _SmoothField
    bias_amplitude: Tuple[float, float]
    partial_volume: float
    mr_sigma: Dict[str, float]
    ct_sigma: float
    pet_fwhm_mm: float
    pet_counts: float  # counts per SUV per mm^3 before reconstruction blur

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "_Acquisition":
        means = {}
        for name, nominal in NOMINAL.items():
            values = np.asarray(nominal)
            if name == "ct":
                values = values + rng.standard_normal(values.size) * np.asarray(_CT_SD)
            else:
                values = values * np.clip(1.0 + _MEAN_JITTER * rng.standard_normal(values.size), 0.85, 1.15)
            means[name] = values.astype(np.float32)
        return cls(means, _SmoothField(rng, 5.0), _SmoothField(rng, 50.0), _SmoothField(rng, 50.0),
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


def _contrasts(labels: np.ndarray, grid: _Grid, acq: _Acquisition, noise: bool, rng: np.random.Generator
               ) -> Dict[str, np.ndarray]:
    texture = np.asarray(_TEXTURE, np.float32)[labels]
    texture *= acq.texture(grid.axes)
    texture += 1.0
    spacing_zyx = grid.spacing[::-1]
    clean = {name: ndimage.gaussian_filter(means[labels] * texture, acq.partial_volume, mode="nearest")
             for name, means in acq.means.items() if name != "pet"}
    out: Dict[str, np.ndarray] = {}
    if noise:
        bias_t1 = 1.0 + acq.bias_amplitude[0] * np.tanh(acq.bias_t1(grid.axes))
        bias_t2 = 1.0 + acq.bias_amplitude[1] * np.tanh(acq.bias_t2(grid.axes))
        for name, bias in (("t1", bias_t1), ("t1c", bias_t1), ("t2", bias_t2)):
            out[name] = _rician(clean[name] * bias, acq.mr_sigma[name], rng)
        out["ct"] = clean["ct"] + np.float32(acq.ct_sigma) * rng.standard_normal(labels.shape, dtype=np.float32)
    else:
        out.update(clean)

    pet = acq.means["pet"][labels] * texture
    if noise:
        per_voxel = acq.pet_counts * float(np.prod(grid.spacing))
        body = pet > 0
        pet[body] = (rng.poisson(pet[body] * per_voxel) / per_voxel).astype(np.float32)
    sigma_mm = acq.pet_fwhm_mm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    out["pet"] = ndimage.gaussian_filter(pet, sigma_mm / spacing_zyx, mode="nearest")
    return {name: image.astype(np.float32, copy=False) for name, image in out.items()}


# ------------------------------------------------------------------------------------------- public API


def _image(array: np.ndarray, grid: _Grid) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in grid.spacing))
    image.SetOrigin(tuple(float(o) for o in grid.origin))
    return image


def make_phantom(seed: int = 0, shape: Optional[Sequence[int]] = (192, 224, 192),
                 spacing: Sequence[float] = (1.0, 1.0, 1.0), tumour: bool = True, deform: bool = True,
                 noise: bool = True) -> Phantom:
    """One synthetic head; ``shape`` and ``spacing`` in (x, y, z) order. The head keeps its physical size
    (about 150 × 190 × 170 mm) whatever the spacing; ``shape=None`` covers 192 × 224 × 192 mm.

    ``deform=False`` gives the canonical head (no jitter, no warp); ``noise=False`` drops the bias field and
    the acquisition noise but keeps texture and blur. The same seed gives bit-identical arrays.
    """
    grid = _Grid.make(shape, spacing)
    rng = np.random.default_rng(seed)
    anatomy = _Anatomy.draw(rng)
    acquisition = _Acquisition.draw(rng)
    labels = _label_map(_Frame(grid, anatomy if deform else None), anatomy, tumour)  # frees the coordinates
    images = {name: _image(array, grid) for name, array in _contrasts(labels, grid, acquisition, noise, rng).items()}
    return Phantom(labels=_image(labels, grid), **images)


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
