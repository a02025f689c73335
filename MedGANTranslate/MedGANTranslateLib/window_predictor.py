"""What the network does with each window MONAI hands it, between the sliding window and the network.

:class:`WindowPredictor` is the ``predictor`` of :func:`monai.inferers.sliding_window_inference`: it runs the
network in the run's precision (autocast), skips windows that hold no body voxel (their output is the background
value anyway), averages each window with its mirror images for test-time mirroring, counts progress and checks
for a cancel between windows. The first window is where a network that cannot take the card's window fails, so
that failure is turned into a refusal that names the card's fields.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from .devices import compute_precision, is_cuda_oom
from .errors import CardError
from .inference_settings import InferenceSettings
from .progress import StageTimer


def _window_refused(exc: BaseException) -> bool:
    """An error of a network's first window: the network cannot take a window of that rank or size (torch's
    ``expected 5D input (got 4D input)``, onnxruntime's ``Invalid rank for input``, or a size a deep network
    reduces to nothing, as SwinUNETR does with 32³: ``Expected more than 1 spatial element``)."""
    onnx = type(exc).__module__.startswith("onnxruntime")
    return onnx or isinstance(exc, (RuntimeError, ValueError, AssertionError, IndexError))


class WindowPredictor:
    """Runs the network on the windows MONAI hands over (with their coordinates); skips windows without a
    voxel of ``mask`` (batch, then spatial axes as the windows') when one is given, counts progress and checks the
    cancel token between windows. With ``mirror`` (spatial axes of the windows), each window's output is the mean
    of the network on the window and, mirrored back, on its mirror image along each axis (test-time
    augmentation). A first window the network cannot take is refused naming the card's window."""

    def __init__(
        self,
        network: torch.nn.Module,
        settings: InferenceSettings,
        device: torch.device,
        background_out: float,
        timer: StageTimer,
        mask: Optional[np.ndarray],
        mirror: Sequence[int] = (),
    ) -> None:
        self.network = network
        self.mirror = tuple(d + 2 for d in mirror)
        self.settings = settings
        self.device = device
        self.background_out = background_out
        self.timer = timer
        self.mask = mask
        self.precision = compute_precision(settings, device)
        self.computed = 0
        self.skipped = 0
        self.ran = False

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ran:
            return self._mirrored(x)
        try:
            out = self._mirrored(x)
        except Exception as exc:  # onnxruntime's errors derive from Exception only
            if not _window_refused(exc) or is_cuda_oom(exc):
                raise
            sides = "H × W" if len(x.shape) == 4 else "D × H × W"
            lines = [line for line in str(exc).splitlines() if line.strip()]
            raise CardError(  # TorchScript's errors end with the error itself, after the script's traceback
                f"The network cannot run on a window of {' × '.join(str(n) for n in x.shape)} (N × C × {sides}), "
                f"which is what the card describes ({self.settings.card_window()}): {lines[-1] if lines else exc}. "
                "Give a window the network takes (--roi, or inference.roi_size and divisible_by in the card)."
            ) from exc
        self.ran = True
        return out

    def _mirrored(self, x: torch.Tensor) -> torch.Tensor:
        out = self._network(x)
        for dim in self.mirror:
            out += torch.flip(self._network(torch.flip(x, (dim,))), (dim,))
        return out / (1 + len(self.mirror)) if self.mirror else out

    def _network(self, x: torch.Tensor) -> torch.Tensor:
        if self.precision == "float32":
            return self.network(x).float()
        with torch.autocast(device_type=self.device.type, dtype=getattr(torch, self.precision)):
            return self.network(x).float()

    def __call__(self, window: torch.Tensor, coords: Sequence[Sequence[slice]]) -> torch.Tensor:
        if self.timer.cancel is not None:
            self.timer.cancel.raise_if_cancelled()
        n = window.shape[0]
        if self.mask is None:
            out = self._forward(window)
            self.computed += n
            self.timer.advance(n)
            return out
        keep = [bool(self.mask[(c[0],) + tuple(c[2:])].any()) for c in coords]
        n_keep = sum(keep)
        if n_keep == n:
            out = self._forward(window)
        else:
            out = torch.full((n, 1, *window.shape[2:]), self.background_out, device=window.device)
            if n_keep:
                index = torch.tensor(keep, device=window.device)
                result = self._forward(window[index])
                if result.shape[1] != 1:
                    out = out.expand(-1, result.shape[1], *out.shape[2:]).clone()
                out[index] = result
        self.computed += n_keep
        self.skipped += n - n_keep
        self.timer.advance(n)
        return out
