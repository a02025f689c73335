"""Memory estimates, so a job that cannot fit is refused before it starts (naming the sizes).

A quick bound decides first; only when it would refuse the job is the network's own activation memory
traced (:func:`traced_activation_bytes_per_voxel`, ~0.5 s the first time in a process), so a job is never
refused on the bound alone.
"""
from __future__ import annotations

import math
import os
import sys
import weakref
from typing import Any, Callable, Dict, Optional, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .errors import CardError, ResourceError
from .image_headers import ImageHeader

_MODEL_OVERHEAD = 300 * 2**20  # torch, MONAI and the network itself


def available_memory_bytes() -> Optional[int]:
    """Memory the OS can give us now (Linux MemAvailable, else physical pages); None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    if sys.platform != "win32" and hasattr(os, "sysconf"):
        try:
            return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
        except (ValueError, OSError):
            return None
    return None


def network_grid_voxels(header: ImageHeader, spacing: Optional[Sequence[float]]) -> int:
    if not spacing:
        return math.prod(header.size)
    return math.prod(max(1, int(round(n * s / t))) for n, s, t in zip(header.size, header.spacing, spacing))


def estimate_job_bytes(headers: Sequence[ImageHeader], spacing: Optional[Sequence[float]], window_bytes: int) -> int:
    """Peak resident memory of one translation: inputs as read and as float32, the network-grid stack
    (normalised inputs, mask, MONAI's output and weight accumulators), the output on the input grid
    (float, cast copy, difference) and one batch of window activations."""
    n_in = [math.prod(h.size) for h in headers]
    n_net = network_grid_voxels(headers[0], spacing)
    inputs = sum(n * (h.bytes_per_voxel * max(1, h.components) + 4) for n, h in zip(n_in, headers))
    net = n_net * 4 * (2 * len(headers) + 5)
    outputs = n_in[0] * 4 * 3
    return int(inputs + net + outputs + window_bytes + _MODEL_OVERHEAD)


class _LiveTensorBytes(TorchDispatchMode):
    """Peak bytes of the tensors an operator sequence holds at once: every freshly allocated result (not
    views or in-place results) counts until its Python object is freed."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0

    def _free(self, nbytes: int) -> None:
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        results = out if isinstance(out, (tuple, list)) else (out,)
        for tensor, spec in zip(results, func._schema.returns):
            if isinstance(tensor, torch.Tensor) and spec.alias_info is None:
                nbytes = tensor.numel() * tensor.element_size()
                self.live += nbytes
                weakref.finalize(tensor, self._free, nbytes)
        self.peak = max(self.peak, self.live)
        return out


def traced_activation_bytes_per_voxel(architecture: Dict[str, Any], channels: int, side: int,
                                      spatial_dims: int = 3) -> Optional[float]:
    """Peak float32 activation bytes per input voxel of one forward pass, traced on the meta device (no
    memory, no arithmetic) on a window of ``side`` in each of ``spatial_dims`` (3, or 2 for a 2D network's
    slices); None for self-contained files (TorchScript, ONNX) and for a network that cannot take such a window
    (the card's rank is refused by name when the model loads)."""
    from .networks import build_network

    try:
        with torch.device("meta"):
            network = build_network(architecture).eval()
    except CardError:
        return None
    x = torch.zeros((1, channels) + (side,) * spatial_dims, device="meta")
    try:
        with torch.inference_mode(), _LiveTensorBytes() as trace:
            out = network(x)
            del out
    except (RuntimeError, ValueError):
        return None
    return trace.peak / side ** spatial_dims


def check_fits(needed: int, what: str, available: Optional[int] = None,
               refine: Optional[Callable[[], int]] = None) -> None:
    """Refuses the job when ``needed`` bytes exceed 90 % of the available memory. ``needed`` may be a quick
    upper bound: ``refine`` (called only then) gives the precise figure that decides."""
    available = available_memory_bytes() if available is None else available
    if available is not None and needed > 0.9 * available and refine is not None:
        needed = refine()
    if available is not None and needed > 0.9 * available:
        raise ResourceError(
            f"{what} needs about {needed / 2**30:.1f} GB of memory but only {available / 2**30:.1f} GB is available. "
            "Crop the volume to the region of interest, resample it to a coarser spacing, or use a machine with more memory."
        )
