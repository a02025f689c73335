"""Process-wide memory allocator setting for the engine's worker processes.

glibc serves every allocation above 32 MB (a 3D network's activations: 440 MB per 16-channel layer on a 1 mm
head) with a fresh ``mmap`` and returns it to the kernel on ``free``, so each layer's output faults in new
zeroed pages, in every call. Keeping freed memory in the process makes the next layer reuse pages already
touched. It changes the whole process, so the command line and the benchmark call it, never an import.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_KEEP_BYTES = 2**31 - 1  # the largest value mallopt takes: freed heap memory is kept up to 2 GB


def keep_freed_memory() -> bool:
    """Serves large allocations from the heap (``M_MMAP_MAX = 0``) and keeps freed heap memory for reuse
    (``M_TRIM_THRESHOLD`` at 2 GB). Returns whether it applied: only with glibc on Linux; elsewhere the
    allocator is left as it is. Freed memory is reused, not returned to the system before the process
    ends, which suits a process that runs one job and exits."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
