"""A generator over a whole volume: the entry point that picks how the windows run and retries in less memory.

:func:`run_inference` translates a prepared volume on the chosen device (:mod:`.devices`) with the card's
settings (:mod:`.inference_settings`). For networks that normalise per window (instance normalisation) the
windows are MONAI's over the whole volume (:mod:`.sliding_window`), so the output does not depend on where the
body lies in the field of view; windows that hold no body voxel are skipped, since their output is replaced by
the background value anyway (:mod:`.window_predictor`). A fully convolutional network (card
``inference.fully_convolutional``) gives the same output whatever the window, so it runs on a few large windows
over the body's bounding box instead (:mod:`.window_planning`): each voxel is computed about once instead of 2.4
times (64^3 windows at overlap 0.25), and no voxel far from the body is computed at all. A 2D network (card
``inference.planes``) runs slice by slice in each of its planes (:mod:`.planar_inference`). When CUDA runs out
of memory the job is retried as :mod:`.memory_fallbacks` lists. The network itself is made faster beforehand by
:mod:`.network_rewrite`, and checked against its card by :mod:`.network_checks`.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Iterable, Optional, Sequence, Tuple

import numpy as np
import torch

from .devices import is_cuda_oom
from .inference_settings import InferenceSettings
from .memory_fallbacks import Attempt, memory_fallbacks
from .planar_inference import run_planes
from .progress import CancelToken, ProgressCallback
from .sliding_window import InferenceReport, run_sliding_window
from .window_planning import core_weights, plan_body_windows, round_up

LogCallback = Callable[[str, str], None]


def run_inference(
    network: torch.nn.Module,
    volume: np.ndarray,
    settings: InferenceSettings,
    device: torch.device,
    mask: Optional[np.ndarray] = None,
    background_out: float = -1.0,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    log: Optional[LogCallback] = None,
    mirror: Sequence[int] = (),
    slice_axes: Optional[Sequence[int]] = None,
) -> Tuple[np.ndarray, InferenceReport]:
    """:func:`run_windows` on ``device``, retried as :func:`.memory_fallbacks.memory_fallbacks` lists while CUDA
    runs out of memory. ``slice_axes``: for a 2D network, the array axis of each plane
    (:func:`.anatomical_axes.plane_axes`)."""
    attempts = memory_fallbacks(settings, device, volume.shape[1:], mask)
    return run_attempts(attempts, network, volume, mask, background_out, progress, cancel, log, mirror, slice_axes)


def run_attempts(
    attempts: Iterable[Attempt],
    network: torch.nn.Module,
    volume: np.ndarray,
    mask: Optional[np.ndarray] = None,
    background_out: float = -1.0,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    log: Optional[LogCallback] = None,
    mirror: Sequence[int] = (),
    slice_axes: Optional[Sequence[int]] = None,
) -> Tuple[np.ndarray, InferenceReport]:
    """:func:`run_windows` with each of ``attempts`` in turn until one does not run out of CUDA memory; ``log``
    is told why before each retry, and the report's ``fallback`` says which retry finished the job. Any other
    error, or running out in the last, is raised. The next attempt is taken only after one ran out."""
    pending = iter(attempts)
    attempt = next(pending, None)
    if attempt is None:
        raise ValueError("run_attempts needs at least one attempt.")
    while True:
        settings, device, stitch_device, reason = attempt
        if reason and log:
            log("warning", reason)
        try:
            out, report = run_windows(network, volume, settings, device, mask, background_out, progress, cancel,
                                      mirror, stitch_device, slice_axes)
            return out, replace(report, fallback=reason)
        except RuntimeError as exc:
            attempt = next(pending, None) if is_cuda_oom(exc) else None
            if attempt is None:
                raise
        network.to("cpu")  # outside the handler, so the failed attempt's tensors are free to be released
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def run_windows(
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
) -> Tuple[np.ndarray, InferenceReport]:
    """:func:`run_sliding_window` with the card's windows, or, for a fully convolutional network, with the large
    windows of :func:`plan_body_windows` over the body's box (``background_out`` elsewhere), stitched by
    :func:`core_weights`; a 2D network runs slice by slice in its planes (:func:`run_planes`). With
    ``settings.grid_shift`` the volume is padded by the shift at the start of each axis (and, for a fully
    convolutional network's grown box, by the shift rounded up to the divisor at the end) and the output cut
    back to the volume's voxels: for card windows exactly the output for the scan moved by the shift, moved back."""
    shift = tuple(int(v) for v in settings.grid_shift)
    if not any(shift):
        return _run_windows(network, volume, settings, device, mask, background_out, progress, cancel, mirror,
                            stitch_device, slice_axes)
    if len(shift) != 3 or min(shift) < 0:
        raise ValueError(f"grid_shift must be three voxel counts >= 0 (z, y, x), got {shift}")
    grown = settings.fully_convolutional  # only the large windows' box grows at its end (plan_body_windows)
    after = [round_up(v, settings.divisor) if grown else 0 for v in shift]
    pad = [(v, a) for v, a in zip(shift, after)]
    padded = np.pad(volume, [(0, 0)] + pad, constant_values=settings.padding_value)
    padded_mask = None if mask is None else np.pad(np.asarray(mask, dtype=bool), pad)
    out, report = _run_windows(network, padded, settings, device, padded_mask, background_out, progress, cancel,
                               mirror, stitch_device, slice_axes, shift)
    inside = tuple(slice(v, v + n) for v, n in zip(shift, volume.shape[1:]))
    return np.ascontiguousarray(out[inside]), report


def _run_windows(network, volume, settings, device, mask, background_out, progress, cancel, mirror, stitch_device,
                 slice_axes, shift: Sequence[int] = ()) -> Tuple[np.ndarray, InferenceReport]:
    """:func:`run_windows` on a volume already padded for ``shift`` (a fully convolutional plan moves by it)."""
    if settings.planes:
        return run_planes(network, volume, settings, device, mask, background_out, progress, cancel, mirror,
                          stitch_device, slice_axes, shift)
    if not settings.fully_convolutional:
        return run_sliding_window(network, volume, settings, device, mask, background_out, progress, cancel,
                                  mirror=mirror, stitch_device=stitch_device)
    plan = plan_body_windows(volume.shape[1:], mask, settings, shift)
    windows = replace(settings, roi_size=plan.roi_size, overlap=plan.overlap, sw_batch_size=1, blend="constant",
                      fully_convolutional=False)
    whole = all(s.start == 0 and s.stop == n for s, n in zip(plan.box, volume.shape[1:]))
    crop = volume if whole else volume[(slice(None),) + plan.box]
    weights = core_weights(plan, settings.window_context) if any(plan.overlap) else None
    out_box, report = run_sliding_window(network, crop, windows, device, None if mask is None else mask[plan.box],
                                         background_out, progress, cancel, weights, mirror, stitch_device)
    if whole:
        return out_box, report
    del crop
    out = np.full(volume.shape[1:], background_out, dtype=np.float32)
    out[plan.box] = out_box
    return out, report
