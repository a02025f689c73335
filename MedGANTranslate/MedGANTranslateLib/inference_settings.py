"""The card's ``inference`` section as typed, checked settings, and what they mean for one network call.

:class:`InferenceSettings` is what every part of a run reads: the window (ROI, overlap, blending), the batch of
windows per call, the precision asked for, whether the network is fully convolutional, the planes of a 2D
network and the test-time variants. It is built once from the card and the user's overrides
(:meth:`InferenceSettings.from_card`), so a wrong ROI or overlap is refused before anything loads; the voxels and
memory one call holds (:func:`window_voxels`, :func:`estimate_window_bytes`) follow from it, for the job's memory
check.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

from .devices import CPU_PRECISIONS
from .errors import MedGANError

#: ``sw_batch_size: "auto"`` batches windows up to this many voxels (4 windows of 64^3), and at most
#: ``AUTO_BATCH_MAX`` windows so progress and cancellation stay fine-grained. One window runs the network's
#: coarse levels on a few voxels, where per-call overhead dominates; larger batches stop fitting in the CPU's
#: cache (measured with benchmarks/run_benchmark.py).
AUTO_BATCH_VOXELS = 4 * 64 ** 3
AUTO_BATCH_MAX = 8
#: The same for a 2D network's slices, which cost far less per window: up to 16 slices of 256^2 per call.
AUTO_BATCH_MAX_PLANAR = 32


@dataclass(frozen=True)
class InferenceSettings:
    """Sliding-window parameters in array order (z, y, x), as the card's ``inference`` section gives them. With
    ``planes`` (a 2D network) ``roi_size`` is a slice's window in array order of the plane's two axes.

    Settings made in code run one window at a time in float32 unless told otherwise; :meth:`from_card` applies
    the card's defaults (``sw_batch_size`` and ``cpu_precision`` ``"auto"``).

    ``grid_shift`` (voxels per array axis, z, y, x; empty: none) moves the window grid towards the start of each
    axis relative to the anatomy, for the uncertainty map's shifted variants (:mod:`.uncertainty`): the volume
    is padded at its start, so MONAI's windows fall that much earlier on the anatomy, and a fully convolutional
    network's large windows start that much before their usual place (:func:`.window_planning.plan_body_windows`)."""

    roi_size: Tuple[int, int, int]
    overlap: "float | Tuple[float, float, float]" = 0.25
    blend: str = "gaussian"
    sigma_scale: float = 0.125
    padding_value: float = -1.0
    sw_batch_size: int = 1
    amp: bool = True
    skip_background: bool = True
    cpu_precision: str = "float32"
    divisor: int = 1
    fully_convolutional: bool = False
    max_window_voxels: int = 2 ** 23
    window_context: int = 16
    test_time_mirror: Tuple[str, ...] = ()
    planes: Tuple[str, ...] = ()
    grid_shift: Tuple[int, ...] = ()

    @classmethod
    def from_card(
        cls,
        inference: Dict[str, Any],
        divisor: int = 1,
        roi_xyz: Optional[Sequence[int]] = None,
        overlap: Optional[float] = None,
    ) -> "InferenceSettings":
        """Card values (ROI in x, y, z; for a 2D network the two in-plane sides) with optional user overrides;
        checks the ROI fits the network. A user's ROI or overlap means windows of that ROI and overlap, even for a
        fully convolutional network."""
        planes = tuple(inference.get("planes") or ())
        roi = tuple(int(v) for v in (roi_xyz if roi_xyz is not None else inference["roi_size"]))
        if planes and (len(roi) != 2 or min(roi) < 1):
            raise MedGANError(
                f"This model is a 2D network (planes: {', '.join(planes)}): its ROI size is the in-plane window of a "
                f"slice, two positive integers, got {list(roi)}."
            )
        if not planes and (len(roi) != 3 or min(roi) < 1):
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
        user_windows = roi_xyz is not None or overlap is not None
        batch = inference.get("sw_batch_size", "auto")
        precision = inference.get("cpu_precision", "auto")
        if precision not in CPU_PRECISIONS:
            raise MedGANError(f"cpu_precision must be one of {', '.join(CPU_PRECISIONS)}, got {precision!r}.")
        return cls(
            roi_size=tuple(reversed(roi)),  # type: ignore[arg-type]
            overlap=ov,
            blend=inference.get("blend", "gaussian"),
            sigma_scale=float(inference.get("sigma_scale", 0.125)),
            padding_value=float(inference.get("padding_value", -1.0)),
            sw_batch_size=auto_batch_size(roi) if batch == "auto" else int(batch),
            amp=bool(inference.get("amp", True)),
            skip_background=bool(inference.get("skip_background", True)),
            cpu_precision=precision,
            divisor=divisor,
            fully_convolutional=bool(inference.get("fully_convolutional", False)) and not user_windows,
            max_window_voxels=int(inference.get("max_window_voxels", cls.max_window_voxels)),
            window_context=int(inference.get("window_context", cls.window_context)),
            test_time_mirror=tuple(inference.get("test_time_mirror", ())),
            planes=planes,
        )

    def card_window(self) -> str:
        """The card's words for this window, for messages: planes and roi_size as the card gives them (x first)."""
        roi = list(reversed(self.roi_size))
        if self.planes:
            return f"a 2D network: inference.planes {list(self.planes)}, inference.roi_size {roi}"
        return f"a 3D network: no inference.planes, inference.roi_size {roi}"


def auto_batch_size(roi_size: Sequence[int]) -> int:
    """Windows per network call for ``sw_batch_size: "auto"``: as many as fit in :data:`AUTO_BATCH_VOXELS`,
    between 1 and :data:`AUTO_BATCH_MAX` (:data:`AUTO_BATCH_MAX_PLANAR` for a 2D network's slices)."""
    most = AUTO_BATCH_MAX if len(roi_size) == 3 else AUTO_BATCH_MAX_PLANAR
    return min(most, max(1, AUTO_BATCH_VOXELS // math.prod(roi_size)))


def window_voxels(settings: InferenceSettings) -> int:
    """Input voxels one network call holds at most: a batch of windows, or one large window."""
    if settings.fully_convolutional:
        return settings.max_window_voxels
    return math.prod(settings.roi_size) * settings.sw_batch_size


def estimate_window_bytes(settings: InferenceSettings, channels: int, width: int = 64) -> int:
    """Quick upper bound on the activation memory of one network call: a few full-resolution feature maps of
    ``width`` channels. The bundled networks trace at 32 (U-Net) to 74 (ResNet) B/voxel in float32, 4-8x
    below it at their widths; :func:`~MedGANTranslateLib.resources.traced_activation_bytes_per_voxel` gives
    the precise figure when the bound matters."""
    return int(window_voxels(settings) * 4 * (channels + 4 * width))
