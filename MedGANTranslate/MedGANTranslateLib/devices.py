"""Where the network runs and in which precision.

A translation picks its device once (:func:`select_device`: CUDA when present, the CPU otherwise, Apple MPS only
by name) and its precision from that device (:func:`compute_precision`: float16 autocast on CUDA, bfloat16 on
CPUs that compute it natively, float32 elsewhere); everything downstream, from rewriting the network to running
its windows, follows these two answers. The thread count, the device list for the faces and the CPU's name live here too, and
the test for CUDA running out of memory that the fallbacks act on.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import torch

from .errors import MedGANError

if TYPE_CHECKING:
    from .inference_settings import InferenceSettings

THREADS_ENV = "MEDGAN_TRANSLATE_THREADS"
CPU_PRECISIONS = ("float32", "bfloat16", "auto")


def configure_threads(threads: Optional[int] = None) -> int:
    """Uses every core on small machines and leaves one free for the viewer on larger ones."""
    if threads is None:
        env = os.environ.get(THREADS_ENV)
        cores = os.cpu_count() or 1
        threads = int(env) if env else (cores if cores <= 4 else cores - 1)
    torch.set_num_threads(max(1, threads))
    return torch.get_num_threads()


def cuda_usable() -> bool:
    return torch.cuda.is_available() and torch.cuda.device_count() > 0


def select_device(requested: str = "auto") -> torch.device:
    """``auto`` takes CUDA when present, else the CPU. MPS is used only when asked for by name, because
    several 3D operations (ConvTranspose3d, 3D reflection padding) are missing or slow there."""
    requested = (requested or "auto").lower()
    if requested == "auto":
        return torch.device("cuda:0" if cuda_usable() else "cpu")
    if requested == "cpu":
        return torch.device("cpu")
    if requested.startswith("cuda"):
        if not cuda_usable():
            raise MedGANError(
                f"Device '{requested}' was asked for but CUDA is not available in this Python "
                "(no NVIDIA GPU, or a CPU-only torch build). Use --device cpu or install a CUDA build of torch."
            )
        dev = torch.device(requested if ":" in requested else "cuda:0")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise MedGANError(f"Device '{requested}' does not exist: {torch.cuda.device_count()} CUDA device(s) found.")
        return dev
    if requested == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise MedGANError("Device 'mps' was asked for but Apple MPS is not available; use --device cpu.")
        return torch.device("mps")
    raise MedGANError(f"Unknown device '{requested}'. Use auto, cpu, cuda, cuda:N or mps.")


def list_devices() -> list:
    """Devices a user can pick, with readable names (for the Slicer panel and ``devices --json``)."""
    out = [{"id": "cpu", "name": f"CPU ({torch.get_num_threads()} threads)"}]
    if cuda_usable():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            out.append({"id": f"cuda:{i}", "name": f"{props.name} ({props.total_memory / 2**30:.1f} GB)"})
    return out


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what the platform says: for records of where a
    measurement ran."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def is_cuda_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is CUDA running out of memory (a retry in less memory may succeed)."""
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(exc, oom)) or "CUDA out of memory" in str(exc)


def cpu_bfloat16_native() -> bool:
    """True when oneDNN computes bfloat16 natively on this CPU (AVX512-BF16 or AMX), where it is faster than
    float32; elsewhere it would be emulated, and slower."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(torch.backends.mkldnn.is_available() and check is not None and check())


def compute_precision(settings: InferenceSettings, device: torch.device) -> str:
    """The precision the network runs in: float16 autocast on CUDA with ``amp``, bfloat16 autocast on the CPU
    when ``cpu_precision`` asks for it (``auto``: where the CPU computes it natively), float32 otherwise."""
    if device.type == "cuda":
        return "float16" if settings.amp else "float32"
    if device.type == "cpu" and (
        settings.cpu_precision == "bfloat16" or (settings.cpu_precision == "auto" and cpu_bfloat16_native())
    ):
        return "bfloat16"
    return "float32"
