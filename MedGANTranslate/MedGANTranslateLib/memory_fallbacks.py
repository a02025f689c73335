"""What a run tries, in order, when CUDA runs out of memory, so a small GPU still finishes the job.

A job planned for the GPU may not fit a 4-8 GB card. Rather than fail, it is retried with smaller windows on
the GPU (which keeps most of its speed), then with the blended output kept on the CPU, then entirely on the CPU.
:func:`memory_fallbacks` lists these attempts (:class:`Attempt`) lazily; :func:`.inference.run_attempts` runs them.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Iterator, NamedTuple, Optional, Sequence

import numpy as np
import torch

from .inference_settings import InferenceSettings
from .window_planning import plan_body_windows


def _smaller_windows(
    settings: InferenceSettings, shape: Sequence[int], mask: Optional[np.ndarray]
) -> Optional[InferenceSettings]:
    """The same job in less memory per network call, or None: a fully convolutional network gets large windows
    of at most a quarter of the voxels it now gets (never below the card's ROI), card windows go one at a time.
    A 2D network goes straight to the card's window, one slice per call."""
    if settings.planes:
        smallest = replace(settings, fully_convolutional=False, sw_batch_size=1)
        return smallest if smallest != settings else None
    if settings.fully_convolutional:
        now = math.prod(plan_body_windows(shape, mask, settings).roi_size)
        smaller = replace(settings, max_window_voxels=now // 4)
        if smaller.max_window_voxels < math.prod(settings.roi_size):
            return None
        return smaller if math.prod(plan_body_windows(shape, mask, smaller).roi_size) < now else None
    return replace(settings, sw_batch_size=1) if settings.sw_batch_size > 1 else None


class Attempt(NamedTuple):
    """One way to run the job: its windows, where the network runs, where the output is blended, and why
    (None for the plan itself)."""

    settings: InferenceSettings
    device: torch.device
    stitch_device: torch.device
    reason: Optional[str]


def memory_fallbacks(
    settings: InferenceSettings, device: torch.device, shape: Sequence[int], mask: Optional[np.ndarray] = None
) -> Iterator[Attempt]:
    """What a run on a volume of ``shape`` tries, in order, while CUDA runs out of memory: as planned; then
    smaller windows on the GPU (a 4-8 GB card keeps its speed); then the smallest windows with the blended output
    on the CPU; then everything on the CPU, as planned. Lazy: each retry is planned only when it is needed."""
    yield Attempt(settings, device, device, None)
    if device.type != "cuda":
        return
    smallest = settings
    while True:
        smaller = _smaller_windows(smallest, shape, mask)
        if smaller is None:
            break
        smallest = smaller
        what = (f"windows of at most {smaller.max_window_voxels / 1e6:.2g} M voxels" if smaller.fully_convolutional
                else "one window per network call")
        yield Attempt(smaller, device, device, f"CUDA ran out of memory; retrying on {device} with {what}.")
    cpu = torch.device("cpu")
    yield Attempt(smallest, device, cpu, "CUDA ran out of memory again; retrying with the stitching on the CPU.")
    yield Attempt(settings, cpu, cpu, "CUDA ran out of memory again; retrying entirely on the CPU.")
