"""Synthetic head-like volumes for engine tests (imported by the test modules)."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def head_volume(
    size: Sequence[int] = (24, 28, 20),
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    direction: Optional[np.ndarray] = None,
    origin: Sequence[float] = (-10.0, 5.0, 3.0),
    seed: int = 0,
) -> sitk.Image:
    """An MR-like ellipsoid 'head' in air with an internal dark cavity; size and spacing in (x, y, z)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n) for n in size[::-1]), indexing="ij")
    r = (x / 0.7) ** 2 + (y / 0.8) ** 2 + (z / 0.75) ** 2
    arr = np.where(r < 1, 600.0 + 300.0 * (1 - r), 0.0)
    arr[((x - 0.1) ** 2 + y ** 2 + (z + 0.1) ** 2) < 0.04] = 20.0
    arr += rng.normal(0, 5, arr.shape)
    image = sitk.GetImageFromArray(np.abs(arr).astype(np.float32))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    if direction is not None:
        image.SetDirection(tuple(float(v) for v in np.asarray(direction).ravel()))
    return image


def write(image: sitk.Image, path) -> str:
    sitk.WriteImage(image, str(path))
    return str(path)
