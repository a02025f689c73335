"""Fields in physical millimetres that both synthetic heads are drawn from.

Smooth Gaussian random fields (warps, texture, bias fields, thickness variations), random plane waves whose zero
set makes the sulci and a tumour's lobes, and the approximate depth below an ellipsoid's surface, shared by the
phantom (:mod:`.phantom`) and the template heads (:mod:`.template_head`). The fields live in millimetres rather
than voxels and draw all their randomness at construction, so one seed gives the same head at any grid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

_FIELD_HALF_MM = 160.0  # random fields are defined on [-160, 160] mm and held constant beyond


class SmoothField:
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


@dataclass
class PlaneWaves:
    """Random plane waves whose zero set makes the sulci: |F|/k approximates the distance to it (mm)."""

    vectors: np.ndarray  # (K, 3) wave vectors of length k
    phases: np.ndarray
    k: float  # wavenumber 2π/λ

    @classmethod
    def draw(cls, rng: np.random.Generator, wavelength: float, count: int = 12) -> "PlaneWaves":
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


def ellipsoid_depth(coords: Sequence[np.ndarray], centre: Sequence[float], axes: Sequence[float]) -> np.ndarray:
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
