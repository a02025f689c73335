"""Which array axis each anatomical axis runs along, for test-time mirroring and a 2D network's planes.

A card names anatomy (mirror left-right; run on axial slices), while the network sees an array whose axes
follow the scan's direction matrix. These functions turn the card's words into array axes (z, y, x order) on a
given grid, so a mirror flips the same anatomy and an axial pass stacks the same slices whatever the scan's
orientation.
"""
from __future__ import annotations

import itertools
from typing import Dict, Sequence, Tuple

import numpy as np

from .errors import CardError

#: Anatomical axes a card may name for test-time mirroring, and the row of a (LPS) direction matrix each runs along.
MIRROR_AXES = {"left-right": 0, "anterior-posterior": 1, "superior-inferior": 2}


def mirror_dims(direction: Sequence[float], axes: Sequence[str]) -> Tuple[int, ...]:
    """Array axes (z, y, x order) of a grid with this row-major 3×3 ``direction`` along which the anatomical
    ``axes`` run, so a mirror flips the same anatomy whatever the scan's orientation."""
    matrix = np.abs(np.asarray(direction, dtype=float).reshape(3, 3))
    unknown = [a for a in axes if a not in MIRROR_AXES]
    if unknown:
        raise CardError(f"Unknown test-time mirror axis {unknown[0]!r}; use {', '.join(MIRROR_AXES)}.")
    return tuple(sorted({2 - int(np.argmax(matrix[MIRROR_AXES[a]])) for a in axes}))


#: The planes a 2D network may run in, by the anatomical axis (of :data:`MIRROR_AXES`) its slices are stacked along.
PLANES = {"axial": "superior-inferior", "coronal": "anterior-posterior", "sagittal": "left-right"}


def anatomical_array_axes(direction: Sequence[float]) -> Dict[str, int]:
    """Array axis (z, y, x order) along which each anatomical axis of :data:`MIRROR_AXES` runs on a grid with this
    row-major 3×3 ``direction``: the one-to-one assignment that follows the direction cosines most closely, so
    an oblique grid still gets three different axes. On an LPS or RAS grid: superior-inferior 0,
    anterior-posterior 1, left-right 2."""
    matrix = np.abs(np.asarray(direction, dtype=float).reshape(3, 3))
    best = max(itertools.permutations(range(3)), key=lambda p: sum(matrix[r, p[r]] for r in range(3)))
    return {name: 2 - best[row] for name, row in MIRROR_AXES.items()}


def plane_axes(direction: Sequence[float], planes: Sequence[str]) -> Tuple[int, ...]:
    """For each of ``planes``, the array axis (z, y, x order) its slices are stacked along on a grid with this
    ``direction``: axial slices along superior-inferior, coronal along anterior-posterior, sagittal along
    left-right (on the network grid of an LPS card: array axes 0, 1 and 2)."""
    unknown = [p for p in planes if p not in PLANES]
    if unknown:
        raise CardError(f"Unknown plane {unknown[0]!r} in inference.planes; use {', '.join(PLANES)}.")
    axes = anatomical_array_axes(direction)
    return tuple(axes[PLANES[p]] for p in planes)
