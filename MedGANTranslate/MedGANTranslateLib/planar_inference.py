"""A 2D network (card ``inference.planes``) over a volume, slice by slice in each of its planes.

Each plane's pass moves the array axis its slices are stacked along into the batch and runs MONAI's 2D sliding
window over batches of slices, only those holding body voxels; a fully convolutional 2D network runs on large
in-plane windows over the body instead. Several planes (tri-planar: all three) are run one after the other and
averaged, so memory holds one pass's output at a time, and progress counts the windows of every pass together.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from .anatomical_axes import plane_axes
from .devices import compute_precision
from .inference_settings import AUTO_BATCH_MAX_PLANAR, InferenceSettings
from .progress import CancelToken, ProgressCallback, StageTimer
from .sliding_window import InferenceReport, padded_like_monai, slide_windows
from .window_planning import core_weights, count_windows, plan_body_windows
from .window_predictor import WindowPredictor

#: The direction of an LPS grid, on which the planes' default slice axes are axial 0, coronal 1, sagittal 2.
_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class PlanePass:
    """One pass of a 2D network: its ``plane``, the array ``axis`` (z, y, x) its slices are stacked along, the
    ``slices`` computed (those holding body voxels), the in-plane ``box`` computed of each, the window
    ``settings`` of a slice, the stitching ``weights`` (None: the settings' blending) and its ``windows``."""

    plane: str
    axis: int
    slices: slice
    box: Tuple[slice, ...]
    settings: InferenceSettings
    weights: Optional[torch.Tensor]
    windows: int


def plan_plane_passes(
    shape: Sequence[int], mask: Optional[np.ndarray], settings: InferenceSettings, axes: Sequence[int],
    shift: Sequence[int] = (),
) -> List[PlanePass]:
    """The passes of a 2D network over a volume of ``shape`` (z, y, x), one per plane of ``settings.planes``
    along the matching array axis of ``axes``. With ``mask`` (and ``skip_background``) only the slices holding
    body voxels are computed. A fully convolutional network runs on large in-plane windows over the body's
    bounding box in the slices (:func:`plan_body_windows`), as many slices per call as ``max_window_voxels``
    allows (at most :data:`AUTO_BATCH_MAX_PLANAR`). ``shift`` (z, y, x): a shifted window grid's in-plane parts
    move those large windows (:func:`plan_body_windows`)."""
    passes = []
    for plane, axis in zip(settings.planes, axes):
        in_plane = tuple(int(shape[d]) for d in range(3) if d != axis)
        lo, hi = 0, int(shape[axis])
        stacked = None if mask is None else np.moveaxis(mask, axis, 0)
        if stacked is not None and settings.skip_background:
            holding = np.flatnonzero(stacked.reshape(stacked.shape[0], -1).any(axis=1))
            if holding.size:
                lo, hi = int(holding[0]), int(holding[-1]) + 1
        box: Tuple[slice, ...] = tuple(slice(0, n) for n in in_plane)
        windows, weights = settings, None
        if settings.fully_convolutional:
            moved = tuple(shift[d] for d in range(3) if d != axis) if any(shift) else ()
            plan = plan_body_windows(in_plane, None if stacked is None else stacked[lo:hi].any(axis=0), settings,
                                     moved)
            per_call = max(1, min(AUTO_BATCH_MAX_PLANAR, settings.max_window_voxels // math.prod(plan.roi_size)))
            windows = replace(settings, roi_size=plan.roi_size, overlap=plan.overlap, sw_batch_size=per_call,
                              blend="constant", fully_convolutional=False)
            box = plan.box
            weights = core_weights(plan, settings.window_context) if any(plan.overlap) else None
        count = (hi - lo) * count_windows([b.stop - b.start for b in box], windows)
        passes.append(PlanePass(plane, axis, slice(lo, hi), box, windows, weights, count))
    return passes


def run_planes(
    network: torch.nn.Module,
    volume: np.ndarray,
    settings: InferenceSettings,
    device: torch.device,
    mask: Optional[np.ndarray] = None,
    background_out: float = -1.0,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    mirror: Sequence[int] = (),
    stitch_device: Optional[torch.device] = None,
    slice_axes: Optional[Sequence[int]] = None,
    shift: Sequence[int] = (),
) -> Tuple[np.ndarray, InferenceReport]:
    """A 2D network over ``volume`` (channels, z, y, x) slice by slice in each plane of ``settings.planes``,
    stacked along the array axes ``slice_axes`` (default: axial 0, coronal 1, sagittal 2, as on an LPS grid;
    the pipeline finds them on the network grid's direction): each pass moves that axis into the batch and runs
    MONAI's 2D sliding window over batches of slices; slices without body voxels give ``background_out``. The
    passes' outputs are averaged (z, y, x). ``mirror`` (array axes): test-time mirroring of each slice along
    those of its two axes (mirroring along the slice axis would change nothing). Progress counts the windows of
    every pass together, so it rises steadily to the end of the last. ``shift``: the grid shift the volume was
    padded for (:func:`.inference.run_windows`), which moves a fully convolutional network's in-plane windows."""
    if volume.ndim != 4:
        raise ValueError(f"volume must be (channels, z, y, x), got shape {volume.shape}")
    stitch_device = stitch_device or device
    axes = tuple(slice_axes) if slice_axes else plane_axes(_IDENTITY, settings.planes)
    skip = mask is not None and settings.skip_background
    passes = plan_plane_passes(volume.shape[1:], mask, settings, axes, shift)
    total = sum(p.windows for p in passes)
    timer = StageTimer("infer", total, progress, cancel)
    network = network.to(device)
    timer.start(f"{total} windows in {len(passes)} plane(s) ({', '.join(settings.planes)}) on {device}")
    out: Optional[np.ndarray] = None
    computed = skipped = 0
    mirrored = set()
    for p in passes:
        in_plane = [d for d in range(3) if d != p.axis]
        flips = tuple(in_plane.index(d) for d in mirror if d != p.axis)
        mirrored.update(in_plane[i] for i in flips)
        stack = np.moveaxis(volume, p.axis + 1, 0)[(p.slices, slice(None)) + p.box]  # (slices, channels, h, w)
        inputs = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32))
        window_mask = None
        if skip:
            stacked_mask = np.moveaxis(np.asarray(mask, dtype=bool), p.axis, 0)[(p.slices,) + p.box]
            window_mask = padded_like_monai(stacked_mask, p.settings.roi_size)
        predictor = WindowPredictor(network, p.settings, device, background_out, timer, window_mask, flips)
        result = slide_windows(predictor, inputs, p.settings, device, stitch_device, p.weights)
        del inputs, stack
        plane_out = np.full(volume.shape[1:], background_out, dtype=np.float32)
        np.moveaxis(plane_out, p.axis, 0)[(p.slices,) + p.box] = result[:, 0].cpu().numpy()
        del result
        computed += predictor.computed
        skipped += predictor.skipped
        if out is None:
            out = plane_out
        else:
            out += plane_out
            del plane_out
    assert out is not None
    if len(passes) > 1:
        out /= len(passes)
    report = InferenceReport(str(device), total, computed, skipped, None, compute_precision(settings, device),
                             tuple(settings.roi_size), tuple(sorted(mirrored)), tuple(settings.planes))
    return out, report
