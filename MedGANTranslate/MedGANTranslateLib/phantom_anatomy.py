"""The phantom's per-seed anatomy and the head frame its structures are drawn in.

:class:`Anatomy` holds every seed-dependent shape parameter (pose and size, smooth warp, scalp and skull
thickness, folding, grey matter and CSF widths, ventricle size, the tumour), drawn in a fixed order before any
grid-sized draw. :class:`Frame` gives each voxel of a :class:`Grid` its canonical head-frame coordinates under
that pose and warp, and the box of voxels a canonical shape can reach, so that :mod:`.phantom_labels` evaluates
each structure only where it may lie.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .head_fields import PlaneWaves, SmoothField

Slices = Tuple[slice, slice, slice]
Coords = Tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass
class Anatomy:
    """Every seed-dependent shape parameter, drawn in a fixed order before any grid-sized draw."""

    matrix: np.ndarray  # canonical → physical: rotation · diag(scales)
    inverse: np.ndarray
    shift: np.ndarray
    warp_mm: float
    warp: List[SmoothField]
    scalp: SmoothField
    diploe: SmoothField
    sulcal: SmoothField
    folds: PlaneWaves
    folia: PlaneWaves
    grey_mm: float
    csf_mm: float
    ventricle_scale: float
    tumour_centre: np.ndarray
    tumour_radius: float
    tumour_rim_mm: float
    tumour_lobes: PlaneWaves
    mucosa_mm: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "Anatomy":
        angles = np.radians(rng.uniform(-3.0, 3.0, 3))
        scales = rng.uniform(0.97, 1.03, 3)
        shift = rng.uniform(-2.0, 2.0, 3)
        cx, cy, cz = np.cos(angles)
        sx, sy, sz = np.sin(angles)
        rot = np.einsum("ij,jk,kl->il", np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]),
                        np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]),
                        np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]))
        warp_mm = rng.uniform(2.0, 4.0)
        warp = [SmoothField(rng, 30.0) for _ in range(3)]
        scalp, diploe, sulcal = SmoothField(rng, 20.0), SmoothField(rng, 20.0), SmoothField(rng, 15.0)
        folds, folia = PlaneWaves.draw(rng, rng.uniform(20.0, 26.0)), PlaneWaves.draw(rng, rng.uniform(8.0, 10.0))
        grey_mm, csf_mm, ventricle_scale = rng.uniform(2.4, 3.0), rng.uniform(1.5, 3.0), rng.uniform(0.8, 1.3)
        side = rng.choice([-1.0, 1.0])
        centre = np.array([side * rng.uniform(15.0, 36.0), rng.uniform(-40.0, 45.0), rng.uniform(8.0, 45.0)])
        radius, rim = rng.uniform(9.0, 16.0), rng.uniform(2.5, 4.5)
        lobes = PlaneWaves.draw(rng, 1.5 * radius, count=3)
        return cls(rot * scales[None, :], rot.T / scales[:, None], shift, warp_mm, warp, scalp, diploe, sulcal,
                   folds, folia, grey_mm, csf_mm, ventricle_scale, centre, radius, rim, lobes, rng.uniform(0.5, 2.5))


@dataclass
class Grid:
    """The output grid: voxel-centre axes in physical mm (x, y, z), centred on the physical origin."""

    shape: np.ndarray
    spacing: np.ndarray
    origin: np.ndarray
    axes: List[np.ndarray]


class Frame:
    """Canonical head-frame coordinates of every voxel, q = M⁻¹ (p − shift) + u(p), with M the jitter
    (rotation and scale) and u the smooth warp; ``None`` gives the undeformed head."""

    def __init__(self, grid: Grid, anatomy: Optional["Anatomy"]) -> None:
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
        self.q: Coords = (q[0], q[1], q[2])

    def box(self, lo: Sequence[float], hi: Sequence[float]) -> Tuple[Slices, Coords]:
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
                  ) -> Tuple[Slices, Coords]:
        c, a = np.asarray(centre), np.asarray(axes) + margin
        return self.box(c - a, c + a)
