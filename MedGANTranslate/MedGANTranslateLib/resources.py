"""Memory estimates, so a job that cannot fit is refused before it starts (naming the sizes)."""
from __future__ import annotations

import math
import os
import sys
from typing import Optional, Sequence

from .errors import ResourceError
from .imageio import ImageHeader

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


def check_fits(needed: int, what: str, available: Optional[int] = None) -> None:
    available = available_memory_bytes() if available is None else available
    if available is not None and needed > 0.9 * available:
        raise ResourceError(
            f"{what} needs about {needed / 2**30:.1f} GB of memory but only {available / 2**30:.1f} GB is available. "
            "Crop the volume to the region of interest, resample it to a coarser spacing, or use a machine with more memory."
        )
