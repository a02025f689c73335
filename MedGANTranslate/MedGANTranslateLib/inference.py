"""Sliding-window inference of a generator over a whole volume, on the best device available.

Built on :func:`monai.inferers.sliding_window_inference`; this module adds what a clinical tool needs around
it: device choice, mixed precision (float16 on CUDA, bfloat16 on CPUs that compute it natively), a fallback
when CUDA runs out of memory (smaller windows on the GPU first, then the CPU), progress with an ETA, prompt
cancellation, windows batched by size, skipping windows that hold no body voxel (their output is replaced by
the background value anyway, so skipping them changes nothing in the result), and a faster equivalent of the
transposed convolutions that oneDNN runs slowly. For networks that normalise per window (instance
normalisation) the windows are always MONAI's over the whole volume, so the output does not depend on where
the body lies in the field of view. A fully convolutional network (card ``inference.fully_convolutional``)
gives the same output whatever the window, so it runs on a few large windows over the body's bounding box
instead: each voxel is computed about once instead of 2.4 times (64^3 windows at overlap 0.25), and no voxel
far from the body is computed at all.
"""
from __future__ import annotations

import copy
import itertools
import math
import os
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from monai.data.utils import dense_patch_slices
from monai.inferers import sliding_window_inference
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .fastconv import replace_layers, space_to_depth_eligible, use_space_to_depth
from .errors import CardError, MedGANError
from .preprocessing import foreground_bounds
from .progress import CancelToken, ProgressCallback, StageTimer

LogCallback = Callable[[str, str], None]
THREADS_ENV = "MEDGAN_TRANSLATE_THREADS"
CPU_PRECISIONS = ("float32", "bfloat16", "auto")
#: ``sw_batch_size: "auto"`` batches windows up to this many voxels (4 windows of 64^3), and at most
#: ``AUTO_BATCH_MAX`` windows so progress and cancellation stay fine-grained. One window runs the network's
#: coarse levels on a few voxels, where per-call overhead dominates; larger batches stop fitting in the CPU's
#: cache (measured with benchmarks/run_benchmark.py).
AUTO_BATCH_VOXELS = 4 * 64 ** 3
AUTO_BATCH_MAX = 8
#: Modules whose output depends on statistics of the whole window: a network holding one is not fully
#: convolutional, whatever its card says.
PER_WINDOW_NORMS = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.GroupNorm, nn.LayerNorm)


@dataclass(frozen=True)
class InferenceSettings:
    """Sliding-window parameters in array order (z, y, x), as the card's ``inference`` section gives them.

    Settings made in code run one window at a time in float32 unless told otherwise; :meth:`from_card` applies
    the card's defaults (``sw_batch_size`` and ``cpu_precision`` ``"auto"``)."""

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

    @classmethod
    def from_card(
        cls,
        inference: Dict[str, Any],
        divisor: int = 1,
        roi_xyz: Optional[Sequence[int]] = None,
        overlap: Optional[float] = None,
    ) -> "InferenceSettings":
        """Card values (ROI in x, y, z) with optional user overrides; checks the ROI fits the network. A user's
        ROI or overlap means windows of that ROI and overlap, even for a fully convolutional network."""
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
        user_windows = roi_xyz is not None or overlap is not None
        batch = inference.get("sw_batch_size", "auto")
        precision = inference.get("cpu_precision", "auto")
        if precision not in CPU_PRECISIONS:
            raise MedGANError(f"cpu_precision must be one of {', '.join(CPU_PRECISIONS)}, got {precision!r}.")
        return cls(
            roi_size=(roi[2], roi[1], roi[0]),
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
        )


def auto_batch_size(roi_size: Sequence[int]) -> int:
    """Windows per network call for ``sw_batch_size: "auto"``: as many as fit in :data:`AUTO_BATCH_VOXELS`,
    between 1 and :data:`AUTO_BATCH_MAX`."""
    return min(AUTO_BATCH_MAX, max(1, AUTO_BATCH_VOXELS // math.prod(roi_size)))


#: Anatomical axes a card may name for test-time mirroring, and the row of a (LPS) direction matrix each runs along.
MIRROR_AXES = {"left-right": 0, "anterior-posterior": 1, "superior-inferior": 2}


def mirror_dims(direction: Sequence[float], axes: Sequence[str]) -> Tuple[int, ...]:
    """Array axes (z, y, x order) of a grid with this row-major 3×3 ``direction`` along which the anatomical
    ``axes`` run, so a mirror flips the same anatomy whatever the scan's orientation."""
    matrix = np.abs(np.asarray(direction, dtype=float).reshape(3, 3))
    unknown = [a for a in axes if a not in MIRROR_AXES]
    if unknown:
        raise CardError(f"Unknown test-time mirror axis {unknown[0]!r}; use {', '.join(MIRROR_AXES)}.")
    return tuple(sorted({2 - int(np.argmax(matrix[MIRROR_AXES[a]])) for a in axes}))


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


class SubpixelConvTranspose3d(nn.Module):
    """A ``ConvTranspose3d(kernel_size=4, stride=2, padding=1)`` computed as one ``Conv3d(kernel_size=2,
    padding=1)`` with one group of output channels per output phase (even/odd along each axis), each group
    written to its phase's voxels of the output (a pixel shuffle). Same result; oneDNN runs it several times
    faster when the layer has few output channels, as the image-producing last layer of the pix2pix U-Net has.

    Output voxel 2m + r (r = 0, 1) of a transposed convolution with kernel 4, stride 2, padding 1 sums input
    voxels m + r - 1 + a (a = 0, 1) through kernel tap 3 - r - 2a; a size-2 convolution of the input padded by
    one, read at offset r, computes exactly that sum.
    """

    def __init__(self, layer: nn.ConvTranspose3d) -> None:
        super().__init__()
        weight = layer.weight.detach()  # (in, out, 4, 4, 4)
        taps = torch.tensor([[3, 1], [2, 0]])  # taps[r, a]
        kz = taps[:, None, None, :, None, None]
        ky = taps[None, :, None, None, :, None]
        kx = taps[None, None, :, None, None, :]
        phases = weight[:, :, kz, ky, kx]  # (in, out, rz, ry, rx, a, b, c)
        self.out_channels = layer.out_channels
        kernel = phases.permute(2, 3, 4, 1, 0, 5, 6, 7).reshape(8 * layer.out_channels, layer.in_channels, 2, 2, 2)
        self.register_buffer("weight", kernel.contiguous())
        self.register_buffer("bias", None if layer.bias is None else layer.bias.detach().repeat(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Each phase is written straight into its voxels of the output (one copy; stacking the phases and
        shuffling them held a third full-size tensor: +537 MB at the 16-channel layer of a 512^3 input)."""
        y = nn.functional.conv3d(x, self.weight, self.bias, padding=1)
        c, n = self.out_channels, x.shape[2:]
        out = y.new_empty((x.shape[0], c, 2 * n[0], 2 * n[1], 2 * n[2]))
        for p, (rz, ry, rx) in enumerate(itertools.product((0, 1), repeat=3)):
            out[:, :, rz::2, ry::2, rx::2] = y[:, p * c:(p + 1) * c, rz:rz + n[0], ry:ry + n[1], rx:rx + n[2]]
        return out


#: Widest ``ConvTranspose3d(4, 2, 1)`` (output channels) worth computing as a sub-pixel convolution, per
#: precision (oneDNN, 2 threads). bfloat16: up to 16 channels (73 -> 35 ms for the U-Net's 64->16 layer; 32 and
#: 64 channels: no gain). float32 on AVX512 CPUs: only the 1-channel image layer (the 16-channel one got 1.3x
#: slower); on AVX2 CPUs also the 16-channel one (127 -> 102 ms alone, whose transposed form also pays a
#: 28 ms copy of its output; the default U-Net's 192x224x160 window 0.370 -> 0.345 s, median of 10).
SUBPIXEL_MAX_CHANNELS = {"float32": 2, "float32-avx2": 16, "bfloat16": 16, "float16": 2}


def subpixel_max_channels(precision: str, device_type: str = "cpu") -> int:
    """:data:`SUBPIXEL_MAX_CHANNELS` for ``precision`` on ``device_type`` (on a CPU, by its vector width)."""
    if device_type == "cpu" and precision == "float32" and torch.backends.cpu.get_cpu_capability() == "AVX2":
        return SUBPIXEL_MAX_CHANNELS["float32-avx2"]
    return SUBPIXEL_MAX_CHANNELS.get(precision, 2)


def _subpixel_eligible(module: nn.Module, max_channels: int = 2) -> bool:
    return (
        type(module) is nn.ConvTranspose3d
        and module.kernel_size == (4, 4, 4)
        and module.stride == (2, 2, 2)
        and module.padding == (1, 1, 1)
        and module.output_padding == (0, 0, 0)
        and module.dilation == (1, 1, 1)
        and module.groups == 1
        and module.out_channels <= max_channels
    )


def _conv_batchnorm_pairs(network: nn.Module) -> List[Tuple[nn.Sequential, int]]:
    """(container, index) of each convolution directly followed by a BatchNorm in a ``Sequential``."""
    pairs = []
    for seq in network.modules():
        if isinstance(seq, nn.Sequential):
            for i, (conv, norm) in enumerate(zip(seq, list(seq)[1:])):
                if (isinstance(conv, (nn.Conv3d, nn.ConvTranspose3d)) and isinstance(norm, nn.BatchNorm3d)
                        and norm.track_running_stats and norm.running_mean is not None):
                    pairs.append((seq, i))
    return pairs


def optimise_for_inference(network: nn.Module, precision: str = "float32", device_type: str = "cpu") -> nn.Module:
    """A copy of ``network`` computing the same function faster in ``precision``: BatchNorm layers (running
    statistics) folded into the convolution before them, narrow ``ConvTranspose3d(4, 2, 1)`` layers
    (:func:`subpixel_max_channels` for ``precision`` on ``device_type``) replaced by
    :class:`SubpixelConvTranspose3d`, and large-kernel convolutions with an image on one side computed
    space-to-depth (:mod:`.fastconv`). TorchScript and ONNX networks, and networks without such layers, come
    back unchanged."""
    max_channels = subpixel_max_channels(precision, device_type)
    if isinstance(network, torch.jit.ScriptModule):
        return network
    if not _conv_batchnorm_pairs(network) and not any(
        _subpixel_eligible(m, max_channels) or space_to_depth_eligible(m) for m in network.modules()
    ):
        return network
    network = copy.deepcopy(network).eval()
    for seq, i in _conv_batchnorm_pairs(network):
        seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1], transpose=isinstance(seq[i], nn.ConvTranspose3d))
        seq[i + 1] = nn.Identity()
    replace_layers(network, lambda m: _subpixel_eligible(m, max_channels), SubpixelConvTranspose3d)
    return use_space_to_depth(network)


def count_windows(image_size: Sequence[int], settings: InferenceSettings) -> int:
    """Number of windows MONAI will visit for this image (after its padding to at least the ROI)."""
    size = [max(s, r) for s, r in zip(image_size, settings.roi_size)]
    overlap = settings.overlap if isinstance(settings.overlap, tuple) else (settings.overlap,) * 3
    interval = [r if r == s else max(1, int(r * (1 - o))) for s, r, o in zip(size, settings.roi_size, overlap)]
    return len(dense_patch_slices(size, settings.roi_size, interval))


@dataclass(frozen=True)
class BodyWindows:
    """Where a fully convolutional network runs: ``box`` (the body's bounding box, grown to whole windows
    inside the volume) and MONAI sliding-window parameters that cover it with few large windows."""

    box: Tuple[slice, slice, slice]
    roi_size: Tuple[int, int, int]
    overlap: Tuple[float, float, float]


def _round_up(value: int, divisor: int) -> int:
    return -(-value // divisor) * divisor


def plan_body_windows(shape: Sequence[int], mask: Optional[np.ndarray], settings: InferenceSettings) -> BodyWindows:
    """Large windows over the voxels of ``mask`` (the whole volume without one): the body's bounding box is
    split along its longest side until one window holds at most ``max_window_voxels``; neighbouring windows
    overlap by ``window_context`` voxels on each side, and every side is a multiple of the network's divisor."""
    if mask is not None and mask.any():
        lo, hi = foreground_bounds(mask)
    else:
        lo, hi = [0, 0, 0], [int(n) for n in shape]
    size = [b - a for a, b in zip(lo, hi)]
    counts = [1, 1, 1]
    context, divisor = settings.window_context, settings.divisor

    def side(axis: int) -> int:
        n = counts[axis]
        return _round_up(-(-size[axis] // n) + (2 * context if n > 1 else 0), divisor)

    while math.prod(side(i) for i in range(3)) > settings.max_window_voxels:
        axis = max(range(3), key=side)
        if side(axis) <= 2 * context + divisor:
            break
        counts[axis] += 1
    roi = tuple(side(i) for i in range(3))
    box = []
    for a, b, r, n in zip(lo, hi, roi, shape):
        if b - a < r:  # a window larger than the box sees real voxels around it where the volume has them
            a = max(0, min(a - (r - (b - a)) // 2, n - r))
            b = min(n, a + r)
        box.append(slice(a, b))
    overlap = tuple(0.0 if c == 1 else (2 * context - 0.5) / r for c, r in zip(counts, roi))
    return BodyWindows(tuple(box), roi, overlap)  # type: ignore[arg-type]


def core_weights(plan: BodyWindows, context: int) -> torch.Tensor:
    """Stitching weights of one large window: 1 in its core, 1e-6 in the ``context`` voxels at each side shared
    with a neighbour. Every shared voxel lies in exactly one neighbour's core, so it takes that window's value,
    computed with at least ``context`` voxels around it, instead of a blend with a window's edge."""
    profiles = []
    for r, o in zip(plan.roi_size, plan.overlap):
        p = np.ones(r, dtype=np.float32)
        if o:
            p[:context] = p[r - context:] = 1e-6
        profiles.append(p)
    weights = profiles[0][:, None, None] * profiles[1][None, :, None] * profiles[2][None, None, :]
    return torch.from_numpy(weights)[None, None]


def check_fully_convolutional(network: nn.Module, settings: InferenceSettings) -> None:
    """Refuses a card that calls a network fully convolutional when the network normalises per window."""
    if not settings.fully_convolutional or not isinstance(network, nn.Module):
        return
    found = sorted({type(m).__name__ for m in network.modules() if isinstance(m, PER_WINDOW_NORMS)})
    if found:
        raise CardError(
            f"The card sets inference.fully_convolutional, but the network normalises each window "
            f"({', '.join(found)}), so its output depends on the window; remove fully_convolutional from the card."
        )


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
    """Runs the network on the windows MONAI hands over (with their coordinates); skips windows without a
    voxel of ``mask`` when one is given, counts progress and checks the cancel token between windows. With
    ``mirror`` (array axes), each window's output is the mean of the network on the window and, mirrored
    back, on its mirror image along each axis (test-time augmentation)."""

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

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
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
        keep = [bool(self.mask[tuple(c[2:])].any()) for c in coords]
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


@dataclass
class InferenceReport:
    device: str
    windows_total: int
    windows_computed: int
    windows_skipped: int
    fallback: Optional[str] = None
    precision: str = "float32"
    roi_size: Tuple[int, ...] = ()
    mirrored: Tuple[int, ...] = ()  # array axes averaged with their mirror image (test-time augmentation)


def _is_cuda_oom(exc: BaseException) -> bool:
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(exc, oom)) or "CUDA out of memory" in str(exc)


def _padded_like_monai(mask: np.ndarray, roi_size: Sequence[int]) -> np.ndarray:
    """``mask`` padded (with False) as sliding_window_inference pads an image smaller than the ROI, so window
    coordinates index both the same way."""
    diff = [max(r - s, 0) for r, s in zip(roi_size, mask.shape)]
    if not any(diff):
        return mask
    return np.pad(mask, [(d // 2, d - d // 2) for d in diff])


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
    window_mask = _padded_like_monai(np.asarray(mask, dtype=bool), settings.roi_size) if skip else None
    total = count_windows(volume.shape[1:], settings)
    timer = StageTimer("infer", total, progress, cancel)
    predictor = _WindowPredictor(network.to(device), settings, device, background_out, timer, window_mask, mirror)
    timer.start(f"{total} windows on {device}")
    with torch.inference_mode():
        if tuple(volume.shape[1:]) == tuple(settings.roi_size):  # one window: nothing to pad or blend (-25 ms)
            whole = (slice(None), slice(None)) + tuple(slice(0, n) for n in volume.shape[1:])
            out = predictor(inputs.to(device), [whole]).to(stitch_device)
        else:
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
                sw_device=device,
                device=stitch_device,
                with_coord=True,
                roi_weight_map=roi_weight_map,
            )
    report = InferenceReport(str(device), total, predictor.computed, predictor.skipped, None, predictor.precision,
                             tuple(settings.roi_size), tuple(mirror))
    return out[0, 0].cpu().numpy().astype(np.float32, copy=False), report


def _smaller_windows(
    settings: InferenceSettings, shape: Sequence[int], mask: Optional[np.ndarray]
) -> Optional[InferenceSettings]:
    """The same job in less memory per network call, or None: a fully convolutional network gets large windows
    of at most a quarter of the voxels it now gets (never below the card's ROI), card windows go one at a time."""
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
) -> Tuple[np.ndarray, InferenceReport]:
    """:func:`run_windows` on ``device``, retried as :func:`memory_fallbacks` lists while CUDA runs out of memory."""
    attempts = memory_fallbacks(settings, device, volume.shape[1:], mask)
    return run_attempts(attempts, network, volume, mask, background_out, progress, cancel, log, mirror)


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
                                      mirror, stitch_device)
            return out, replace(report, fallback=reason)
        except RuntimeError as exc:
            attempt = next(pending, None) if _is_cuda_oom(exc) else None
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
) -> Tuple[np.ndarray, InferenceReport]:
    """:func:`run_sliding_window` with the card's windows, or, for a fully convolutional network, with the large
    windows of :func:`plan_body_windows` over the body's box (``background_out`` elsewhere), stitched by
    :func:`core_weights`."""
    if not settings.fully_convolutional:
        return run_sliding_window(network, volume, settings, device, mask, background_out, progress, cancel,
                                  mirror=mirror, stitch_device=stitch_device)
    plan = plan_body_windows(volume.shape[1:], mask, settings)
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


def normalised_background_output(postprocessing: Dict[str, Any]) -> float:
    """The network-range value that maps to the card's physical background (e.g. -1000 HU)."""
    mapping = postprocessing["output_mapping"]
    (s0, s1), (t0, t1) = mapping["source_range"], mapping["target_range"]
    value = postprocessing.get("background_value")
    if value is None:
        return float(s0)
    return float(s0 + (value - t0) * (s1 - s0) / (t1 - t0))


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
