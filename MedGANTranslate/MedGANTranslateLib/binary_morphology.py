"""Binary morphology of the body mask in NumPy: the median vote, ITK's ball, closing, per-slice hole filling, largest
component.

The body mask's steps need ITK's exact shapes (``sitk.sitkBall`` and its safe-border closing, ``BinaryFillhole``
per slice, ITK's component labelling and ordering), so the voxels are the ones the mask has always had; done as
shifted boolean copies and one labelling of the whole array, the dilation is 5-15x faster than SciPy's on a 2 mm
head. The arrays are (z, y, x) and the radii (x, y, z) voxels, as ITK gives them.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage


def ball_radius(mm: float, spacing: Sequence[float]) -> List[int]:
    """Per-axis radius in voxels of a ball of ``mm`` millimetres."""
    return [int(round(mm / s)) for s in spacing]


def _ball_rows(radius: Sequence[int]) -> Dict[Tuple[int, int], int]:
    """ITK's ball structuring element of ``radius`` (x, y, z voxels) as rows along x: for each (dz, dy) offset
    that the ball reaches, the half-length of its run of x offsets (a ball is convex, so each row is one run).
    The ball is a single voxel dilated by ITK, so the shape is exactly the one ``sitk.sitkBall`` means."""
    point = np.zeros([2 * r + 1 for r in radius[::-1]], np.uint8)
    point[tuple(radius[::-1])] = 1
    ball = sitk.GetArrayFromImage(sitk.BinaryDilate(sitk.GetImageFromArray(point), list(radius), sitk.sitkBall)) > 0
    rz, ry, rx = radius[::-1]
    return {
        (z - rz, y - ry): int(np.flatnonzero(ball[z, y]).max()) - rx
        for z in range(ball.shape[0]) for y in range(ball.shape[1]) if ball[z, y].any()
    }


def dilate(values: np.ndarray, radius: Sequence[int], outside: bool = False) -> np.ndarray:
    """Binary dilation of a (z, y, x) boolean array by ITK's ball of ``radius`` (x, y, z), with ``outside``
    beyond the array's faces: the OR of shifted copies, one per row of the ball, each row first dilated along x
    (runs of 1, 3, 5... voxels). The same voxels as ITK's and SciPy's filters, 5-15x faster than SciPy's on a
    2 mm head (21 instead of 81 shifts for a radius of 2)."""
    rz, ry, rx = radius[::-1]
    nz, ny, nx = values.shape
    padded = np.pad(values, ((rz, rz), (ry, ry), (rx, rx)), constant_values=outside)
    runs = [padded[:, :, rx:rx + nx]]
    for k in range(1, rx + 1):
        runs.append(runs[-1] | padded[:, :, rx - k:rx - k + nx] | padded[:, :, rx + k:rx + k + nx])
    out = np.zeros(values.shape, bool)
    for (dz, dy), k in _ball_rows(radius).items():
        out |= runs[k][rz + dz:rz + dz + nz, ry + dy:ry + dy + ny]
    return out


def median_vote(values: np.ndarray) -> np.ndarray:
    """Voxels of a (z, y, x) boolean array set in at least 14 of the 27 of their 3 x 3 x 3 neighbourhood, with the
    faces replicated outwards: thresholding ITK's 3 x 3 x 3 median (``sitk.Median``, zero-flux boundary) gives
    exactly these voxels, since the 14th of 27 sorted values lies above a threshold when 14 of them do. Three
    sums of shifted uint8 copies, ~20x faster than the median of the floats."""
    counts = np.pad(values, 1, mode="edge").view(np.uint8)
    for axis in range(3):
        n = counts.shape[axis] - 2
        counts = sum(np.take(counts, range(k, k + n), axis=axis) for k in range(3))
    return counts >= 14


def close(values: np.ndarray, radius: Sequence[int]) -> np.ndarray:
    """Binary closing by ITK's ball with a safe border (as ``sitk.BinaryMorphologicalClosing(..., True)``):
    the array is padded by the radius first, so objects at its faces are not eaten. The erosion is the
    complement of the dilation of the complement, with the padding's outside counting as background."""
    pad = [(r, r) for r in radius[::-1]]
    inner = tuple(slice(r, -r if r else None) for r in radius[::-1])
    return ~dilate(~dilate(np.pad(values, pad), radius), radius, outside=True)[inner]


def fill_slice_holes(values: np.ndarray, axis: int) -> np.ndarray:
    """Fills the holes of each slice across array ``axis``: background regions (face-connected within the slice,
    as ``sitk.BinaryFillhole`` with fullyConnected off) that do not reach the slice's edge. One labelling of the
    whole array with an in-slice connectivity does every slice.

    Cavities open to the outside only through the nose, mouth or neck (airways, sinuses) become body. A hole
    in 3D is a hole of every slice it crosses, so no separate 3D filling is needed."""
    structure = np.zeros((3, 3, 3), bool)
    in_slice = [slice(None)] * 3
    in_slice[axis] = 1
    structure[tuple(in_slice)] = ndimage.generate_binary_structure(2, 1)
    labels, count = ndimage.label(~values, structure)
    outside = np.zeros(count + 1, bool)
    outside[0] = True  # label 0: the body itself
    for edge_axis in (a for a in range(3) if a != axis):
        for end in (0, -1):
            outside[np.take(labels, end, axis=edge_axis)] = True
    return values | ~outside[labels]


def largest_component(values: np.ndarray) -> np.ndarray:
    """The largest face-connected component (ITK's labelling and ordering, so ties go as they always did)."""
    labels = sitk.ConnectedComponent(sitk.GetImageFromArray(values.view(np.uint8)))
    return sitk.GetArrayFromImage(sitk.RelabelComponent(labels, sortByObjectSize=True) == 1) > 0
