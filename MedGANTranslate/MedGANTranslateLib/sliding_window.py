"""A 3D network over a volume with MONAI's sliding window, and the report of what ran where.

:func:`run_sliding_window` is one pass of MONAI's :func:`~monai.inferers.sliding_window_inference` over a volume
(or, through :func:`slide_windows`, over a stack of slices for a 2D network): the windows go through a
:class:`.window_predictor.WindowPredictor` on the run's device, and their outputs are blended on the stitching
device, which the memory fallbacks may move to the CPU. Windows the size of the image skip MONAI altogether.
:class:`InferenceReport` says what a run did: its device, precision, windows computed and skipped, fallback.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from .inference_settings import InferenceSettings
from .progress import CancelToken, ProgressCallback, StageTimer
from .window_planning import count_windows
from .window_predictor import WindowPredictor


@dataclass
class InferenceReport:
    """What a run did, for the provenance and the log: where and in which precision the network ran, how many
    windows it computed and skipped, and which memory fallback, if any, finished the job."""

    device: str
    windows_total: int
    windows_computed: int
    windows_skipped: int
    fallback: Optional[str] = None
    precision: str = "float32"
    roi_size: Tuple[int, ...] = ()
    mirrored: Tuple[int, ...] = ()  # array axes averaged with their mirror image (test-time augmentation)
    planes: Tuple[str, ...] = ()  # a 2D network's planes, averaged (windows: of every pass together)


def padded_like_monai(mask: np.ndarray, roi_size: Sequence[int]) -> np.ndarray:
    """``mask`` padded (with False) as sliding_window_inference pads an image smaller than the ROI, so window
    coordinates index both the same way; the ROI applies to the last axes (leading ones: a batch of slices)."""
    lead = mask.ndim - len(roi_size)
    diff = [max(r - s, 0) for r, s in zip(roi_size, mask.shape[lead:])]
    if not any(diff):
        return mask
    return np.pad(mask, [(0, 0)] * lead + [(d // 2, d - d // 2) for d in diff])


def run_sliding_window(
    network: torch.nn.Module,
    volume: np.ndarray,
    settings: InferenceSettings,
    device: torch.device,
    mask: Optional[np.ndarray] = None,
    background_out: float = -1.0,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    roi_weight_map: Optional[torch.Tensor] = None,
    mirror: Sequence[int] = (),
    stitch_device: Optional[torch.device] = None,
) -> Tuple[np.ndarray, InferenceReport]:
    """Translates ``volume`` (channels, z, y, x; normalised float32) and returns (z, y, x) float32 in the
    network's output range. ``mask`` (z, y, x) marks body voxels: with ``skip_background``, windows without
    body voxels are not computed and give ``background_out``. ``roi_weight_map`` replaces the blending weights.
    ``mirror``: array axes (z, y, x order) along which each window is also mirrored, its outputs averaged.
    The network runs on ``device``; the blended output is kept on ``stitch_device`` (default: the same).
    """
    if volume.ndim != 4:
        raise ValueError(f"volume must be (channels, z, y, x), got shape {volume.shape}")
    stitch_device = stitch_device or device
    inputs = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None]
    skip = mask is not None and settings.skip_background
    window_mask = padded_like_monai(np.asarray(mask, dtype=bool)[None], settings.roi_size) if skip else None
    total = count_windows(volume.shape[1:], settings)
    timer = StageTimer("infer", total, progress, cancel)
    predictor = WindowPredictor(network.to(device), settings, device, background_out, timer, window_mask, mirror)
    timer.start(f"{total} windows on {device}")
    out = slide_windows(predictor, inputs, settings, device, stitch_device, roi_weight_map)
    report = InferenceReport(str(device), total, predictor.computed, predictor.skipped, None, predictor.precision,
                             tuple(settings.roi_size), tuple(mirror))
    return out[0, 0].cpu().numpy().astype(np.float32, copy=False), report


def slide_windows(
    predictor: WindowPredictor,
    inputs: torch.Tensor,
    settings: InferenceSettings,
    device: torch.device,
    stitch_device: torch.device,
    roi_weight_map: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """MONAI's sliding window of ``settings`` over ``inputs`` (batch, channels, *spatial: one volume, or a stack of
    slices for a 2D network) through ``predictor``: (batch, output channels, *spatial) on ``stitch_device``.
    Windows the size of the image go straight to the network, ``sw_batch_size`` at a time, with nothing to pad
    or blend (-25 ms for one large window)."""
    spatial = tuple(inputs.shape[2:])
    with torch.inference_mode():
        if spatial == tuple(settings.roi_size):
            step = max(1, settings.sw_batch_size)
            parts = []
            for start in range(0, inputs.shape[0], step):
                stop = min(inputs.shape[0], start + step)
                coords = [[slice(i, i + 1), slice(None)] + [slice(0, n) for n in spatial] for i in range(start, stop)]
                parts.append(predictor(inputs[start:stop].to(device), coords).to(stitch_device))
            return parts[0] if len(parts) == 1 else torch.cat(parts)
        return sliding_window_inference(
            inputs.to(stitch_device),
            roi_size=settings.roi_size,
            sw_batch_size=settings.sw_batch_size,
            predictor=predictor,
            overlap=settings.overlap,
            mode=settings.blend,
            sigma_scale=settings.sigma_scale,
            padding_mode="constant",
            cval=settings.padding_value,
            sw_device=device,
            device=stitch_device,
            with_coord=True,
            roi_weight_map=roi_weight_map,
        )
