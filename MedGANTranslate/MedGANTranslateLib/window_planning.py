"""Where the windows fall: MONAI's window count, and the few large windows a fully convolutional network runs on.

A network that normalises per window must see MONAI's regular grid over the whole volume, so its output does not
depend on where the body lies; :func:`count_windows` says how many windows that grid has, for progress. A fully
convolutional network gives the same output whatever the window, so :func:`plan_body_windows` covers only the
body's bounding box with windows as large as memory allows, each overlapping its neighbours by a margin of
context, and :func:`core_weights` stitches them so every voxel takes the value of a window in which it lies
well inside.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from monai.data.utils import dense_patch_slices

from .body_mask import foreground_bounds
from .inference_settings import InferenceSettings


def count_windows(image_size: Sequence[int], settings: InferenceSettings) -> int:
    """Number of windows MONAI will visit for this image (after its padding to at least the ROI); for a 2D
    network, ``image_size`` is a slice's and the count per slice."""
    size = [max(s, r) for s, r in zip(image_size, settings.roi_size)]
    overlap = settings.overlap if isinstance(settings.overlap, tuple) else (settings.overlap,) * len(size)
    interval = [r if r == s else max(1, int(r * (1 - o))) for s, r, o in zip(size, settings.roi_size, overlap)]
    return len(dense_patch_slices(size, settings.roi_size, interval))


@dataclass(frozen=True)
class BodyWindows:
    """Where a fully convolutional network runs: ``box`` (the body's bounding box, grown to whole windows
    inside the volume) and MONAI sliding-window parameters that cover it with few large windows."""

    box: Tuple[slice, ...]
    roi_size: Tuple[int, ...]
    overlap: Tuple[float, ...]


def round_up(value: int, divisor: int) -> int:
    """``value`` rounded up to a multiple of ``divisor``."""
    return -(-value // divisor) * divisor


def plan_body_windows(shape: Sequence[int], mask: Optional[np.ndarray], settings: InferenceSettings,
                      shift: Sequence[int] = ()) -> BodyWindows:
    """Large windows over the voxels of ``mask`` (the whole volume without one): the body's bounding box is
    split along its longest side until one window holds at most ``max_window_voxels``; neighbouring windows
    overlap by ``window_context`` voxels on each side, and every side is a multiple of the network's divisor.
    For a 2D network, ``shape`` and ``mask`` are a slice's (the mask: of every slice of a pass together).

    ``shift`` (voxels per axis): the usual box is moved that much towards the start of each axis and, where the
    body then reaches past its end, grown there by a multiple of the divisor, so it still covers the body with
    sides that suit the network; the caller leaves room for it (:func:`.inference.run_windows` pads the volume
    by the shift rounded up to the divisor at the end)."""
    if mask is not None and mask.any():
        lo, hi = foreground_bounds(mask)
    else:
        lo, hi = [0] * len(shape), [int(n) for n in shape]
    if any(shift):
        plan = _windows_over(shape, lo, hi, settings)
        start = [max(0, b.start - s) for b, s in zip(plan.box, shift)]
        stop = [min(int(n), a + (b.stop - b.start) + round_up(max(0, end - (a + b.stop - b.start)), settings.divisor))
                for a, b, end, n in zip(start, plan.box, hi, shape)]
        return _windows_over(shape, start, stop, settings)
    return _windows_over(shape, lo, hi, settings)


def _windows_over(shape: Sequence[int], lo: Sequence[int], hi: Sequence[int], settings: InferenceSettings) -> BodyWindows:
    """:func:`plan_body_windows` for the box from ``lo`` to ``hi`` (one past the end) along each axis."""
    dims = range(len(shape))
    size = [b - a for a, b in zip(lo, hi)]
    counts = [1] * len(shape)
    context, divisor = settings.window_context, settings.divisor

    def side(axis: int) -> int:
        n = counts[axis]
        return round_up(-(-size[axis] // n) + (2 * context if n > 1 else 0), divisor)

    while math.prod(side(i) for i in dims) > settings.max_window_voxels:
        axis = max(dims, key=side)
        if side(axis) <= 2 * context + divisor:
            break
        counts[axis] += 1
    roi = tuple(side(i) for i in dims)
    box = []
    for a, b, r, n in zip(lo, hi, roi, shape):
        if b - a < r:  # a window larger than the box sees real voxels around it where the volume has them
            a = max(0, min(a - (r - (b - a)) // 2, n - r))
            b = min(n, a + r)
        box.append(slice(a, b))
    overlap = tuple(0.0 if c == 1 else (2 * context - 0.5) / r for c, r in zip(counts, roi))
    return BodyWindows(tuple(box), roi, overlap)  # type: ignore[arg-type]


def core_weights(plan: BodyWindows, context: int) -> torch.Tensor:
    """Stitching weights of one large window: 1 in its core, 1e-6 in the ``context`` voxels at each side shared
    with a neighbour. Every shared voxel lies in exactly one neighbour's core, so it takes that window's value,
    computed with at least ``context`` voxels around it, instead of a blend with a window's edge."""
    profiles = []
    for r, o in zip(plan.roi_size, plan.overlap):
        p = np.ones(r, dtype=np.float32)
        if o:
            p[:context] = p[r - context:] = 1e-6
        profiles.append(p)
    weights = profiles[0]
    for p in profiles[1:]:
        weights = np.multiply.outer(weights, p)
    return torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float32))[None, None]
