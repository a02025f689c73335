"""Sliding-window inference of a generator over a whole volume, on the best device available.

Built on :func:`monai.inferers.sliding_window_inference`; this module adds what a clinical tool needs
around it: device choice, mixed precision on CUDA, a fallback when CUDA runs out of memory, progress with an
ETA, prompt cancellation, and skipping windows that hold no body voxel (their output is replaced by the
background value anyway, so skipping them changes nothing in the result).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from monai.data.utils import dense_patch_slices
from monai.inferers import sliding_window_inference

from .errors import MedGANError
from .progress import CancelToken, ProgressCallback, StageTimer

LogCallback = Callable[[str, str], None]
THREADS_ENV = "MEDGAN_TRANSLATE_THREADS"


@dataclass(frozen=True)
class InferenceSettings:
    """Sliding-window parameters in array order (z, y, x), as the card's ``inference`` section gives them."""

    roi_size: Tuple[int, int, int]
    overlap: float = 0.25
    blend: str = "gaussian"
    sigma_scale: float = 0.125
    padding_value: float = -1.0
    sw_batch_size: int = 1
    amp: bool = True
    skip_background: bool = True
    divisor: int = 1

    @classmethod
    def from_card(
        cls,
        inference: Dict[str, Any],
        divisor: int = 1,
        roi_xyz: Optional[Sequence[int]] = None,
        overlap: Optional[float] = None,
    ) -> "InferenceSettings":
        """Card values (ROI in x, y, z) with optional user overrides; checks the ROI fits the network."""
        roi = tuple(int(v) for v in (roi_xyz if roi_xyz is not None else inference["roi_size"]))
        if len(roi) != 3 or min(roi) < 1:
            raise MedGANError(f"ROI size must be three positive integers (x y z), got {list(roi)}.")
        bad = [v for v in roi if v % divisor]
        if bad:
            raise MedGANError(
                f"ROI size {list(roi)} does not suit this network: every side must be a multiple of {divisor} "
                f"(for example {[max(divisor, int(round(v / divisor)) * divisor) for v in roi]})."
            )
        ov = float(inference.get("overlap", 0.25) if overlap is None else overlap)
        if not 0.0 <= ov < 1.0:
            raise MedGANError(f"Overlap must be in [0, 1), got {ov}.")
        return cls(
            roi_size=(roi[2], roi[1], roi[0]),
            overlap=ov,
            blend=inference.get("blend", "gaussian"),
            sigma_scale=float(inference.get("sigma_scale", 0.125)),
            padding_value=float(inference.get("padding_value", -1.0)),
            sw_batch_size=int(inference.get("sw_batch_size", 1)),
            amp=bool(inference.get("amp", True)),
            skip_background=bool(inference.get("skip_background", True)),
            divisor=divisor,
        )


def count_windows(image_size: Sequence[int], settings: InferenceSettings) -> int:
    """Number of windows MONAI will visit for this image (after its padding to at least the ROI)."""
    size = [max(s, r) for s, r in zip(image_size, settings.roi_size)]
    interval = [r if r == s else max(1, int(r * (1 - settings.overlap))) for s, r in zip(size, settings.roi_size)]
    return len(dense_patch_slices(size, settings.roi_size, interval))


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


class _WindowPredictor:
    """Runs the network on the windows MONAI hands over; skips windows without body voxels, counts
    progress and checks the cancel token between windows."""

    def __init__(
        self,
        network: torch.nn.Module,
        settings: InferenceSettings,
        device: torch.device,
        background_out: float,
        timer: StageTimer,
        has_mask: bool,
    ) -> None:
        self.network = network
        self.settings = settings
        self.device = device
        self.background_out = background_out
        self.timer = timer
        self.has_mask = has_mask
        self.computed = 0
        self.skipped = 0

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        use_amp = self.settings.amp and self.device.type == "cuda"
        with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=use_amp):
            y = self.network(x)
        return y.float()

    def __call__(self, window: torch.Tensor) -> torch.Tensor:
        if self.timer.cancel is not None:
            self.timer.cancel.raise_if_cancelled()
        if not self.has_mask:
            out = self._forward(window)
            self.computed += window.shape[0]
            self.timer.advance(window.shape[0])
            return out
        data, mask = window[:, :-1], window[:, -1:]
        keep = (mask > 0.5).flatten(1).any(dim=1) if self.settings.skip_background else torch.ones(
            window.shape[0], dtype=torch.bool, device=window.device
        )
        out = torch.full_like(mask, self.background_out)
        if bool(keep.any()):
            result = self._forward(data[keep])
            if result.shape[1] != 1:
                out = out.expand(-1, result.shape[1], *out.shape[2:]).clone()
            out[keep] = result
        n_keep = int(keep.sum())
        self.computed += n_keep
        self.skipped += window.shape[0] - n_keep
        self.timer.advance(window.shape[0])
        return out


@dataclass
class InferenceReport:
    device: str
    windows_total: int
    windows_computed: int
    windows_skipped: int
    fallback: Optional[str] = None


def _is_cuda_oom(exc: BaseException) -> bool:
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(exc, oom)) or "CUDA out of memory" in str(exc)


def run_sliding_window(
    network: torch.nn.Module,
    volume: np.ndarray,
    settings: InferenceSettings,
    device: torch.device,
    mask: Optional[np.ndarray] = None,
    background_out: float = -1.0,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    log: Optional[LogCallback] = None,
) -> Tuple[np.ndarray, InferenceReport]:
    """Translates ``volume`` (channels, z, y, x; normalised float32) and returns (z, y, x) float32 in the
    network's output range. ``mask`` (z, y, x) marks body voxels for background skipping.

    On CUDA out-of-memory the run is repeated with stitching on the CPU, then entirely on the CPU, and
    ``log`` is told each time.
    """
    if volume.ndim != 4:
        raise ValueError(f"volume must be (channels, z, y, x), got shape {volume.shape}")
    channels = [torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))]
    if mask is not None:
        channels.append(torch.from_numpy(mask.astype(np.float32))[None])
    inputs = torch.cat(channels, dim=0)[None]
    total = count_windows(volume.shape[1:], settings)

    attempts = [(device, device, None)]
    if device.type == "cuda":
        attempts += [
            (device, torch.device("cpu"), "CUDA ran out of memory; retrying with the stitching on the CPU."),
            (torch.device("cpu"), torch.device("cpu"), "CUDA ran out of memory again; retrying entirely on the CPU."),
        ]
    for i, (sw_device, stitch_device, reason) in enumerate(attempts):
        if reason and log:
            log("warning", reason)
        timer = StageTimer("infer", total, progress, cancel)
        predictor = _WindowPredictor(network.to(sw_device), settings, sw_device, background_out, timer, mask is not None)
        timer.start(f"{total} windows on {sw_device}")
        try:
            with torch.inference_mode():
                out = sliding_window_inference(
                    inputs.to(stitch_device),
                    roi_size=settings.roi_size,
                    sw_batch_size=settings.sw_batch_size,
                    predictor=predictor,
                    overlap=settings.overlap,
                    mode=settings.blend,
                    sigma_scale=settings.sigma_scale,
                    padding_mode="constant",
                    cval=settings.padding_value,
                    sw_device=sw_device,
                    device=stitch_device,
                )
        except RuntimeError as exc:
            if not _is_cuda_oom(exc) or i == len(attempts) - 1:
                raise
            network.to("cpu")
            torch.cuda.empty_cache()
            continue
        report = InferenceReport(str(sw_device), total, predictor.computed, predictor.skipped, reason)
        return out[0, 0].cpu().numpy().astype(np.float32, copy=False), report
    raise AssertionError("unreachable")


def normalised_background_output(postprocessing: Dict[str, Any]) -> float:
    """The network-range value that maps to the card's physical background (e.g. -1000 HU)."""
    mapping = postprocessing["output_mapping"]
    (s0, s1), (t0, t1) = mapping["source_range"], mapping["target_range"]
    value = postprocessing.get("background_value")
    if value is None:
        return float(s0)
    return float(s0 + (value - t0) * (s1 - s0) / (t1 - t0))


def estimate_window_bytes(settings: InferenceSettings, channels: int, width: int = 64) -> int:
    """Rough activation memory of one batch of windows: a few full-resolution feature maps of ``width``."""
    voxels = math.prod(settings.roi_size)
    return int(voxels * 4 * (channels + 4 * width) * settings.sw_batch_size)

