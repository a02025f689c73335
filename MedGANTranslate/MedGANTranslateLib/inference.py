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

A 2D network (card ``inference.planes``) runs slice by slice: each plane's pass moves the axis its slices are
stacked along into the batch dimension and runs MONAI's 2D sliding window over batches of slices (only the slices
that hold body voxels); several planes (tri-planar: all three) are run one after the other and averaged.
"""
from __future__ import annotations

import copy
import itertools
import math
import os
import re
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from monai.data.utils import dense_patch_slices
from monai.inferers import sliding_window_inference
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .forward_mode import WindowStatisticsNorm
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
#: The same for a 2D network's slices, which cost far less per window: up to 16 slices of 256^2 per call.
AUTO_BATCH_MAX_PLANAR = 32
#: Modules whose output depends on statistics of the whole window: a network holding one is not fully
#: convolutional, whatever its card says.
PER_WINDOW_NORMS = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.GroupNorm, nn.LayerNorm,
                    WindowStatisticsNorm)


@dataclass(frozen=True)
class InferenceSettings:
    """Sliding-window parameters in array order (z, y, x), as the card's ``inference`` section gives them. With
    ``planes`` (a 2D network) ``roi_size`` is a slice's window in array order of the plane's two axes.

    Settings made in code run one window at a time in float32 unless told otherwise; :meth:`from_card` applies
    the card's defaults (``sw_batch_size`` and ``cpu_precision`` ``"auto"``).

    ``grid_shift`` (voxels per array axis, z, y, x; empty: none) moves the window grid towards the start of each
    axis relative to the anatomy, for the uncertainty map's shifted variants (:mod:`.uncertainty`): the volume
    is padded at its start, so MONAI's windows fall that much earlier on the anatomy, and a fully convolutional
    network's large windows start that much before their usual place (:func:`plan_body_windows`)."""

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


#: The planes a 2D network may run in, by the anatomical axis (of :data:`MIRROR_AXES`) its slices are stacked along.
PLANES = {"axial": "superior-inferior", "coronal": "anterior-posterior", "sagittal": "left-right"}


def anatomical_array_axes(direction: Sequence[float]) -> Dict[str, int]:
    """Array axis (z, y, x order) along which each anatomical axis of :data:`MIRROR_AXES` runs on a grid with this
    row-major 3×3 ``direction``: the one-to-one assignment that follows the direction cosines most closely, so
    an oblique grid still gets three different axes. On an LPS or RAS grid: superior-inferior 0,
    anterior-posterior 1, left-right 2."""
    matrix = np.abs(np.asarray(direction, dtype=float).reshape(3, 3))
    best = max(itertools.permutations(range(3)), key=lambda p: sum(matrix[r, p[r]] for r in range(3)))
    return {name: 2 - best[row] for name, row in MIRROR_AXES.items()}


def plane_axes(direction: Sequence[float], planes: Sequence[str]) -> Tuple[int, ...]:
    """For each of ``planes``, the array axis (z, y, x order) its slices are stacked along on a grid with this
    ``direction``: axial slices along superior-inferior, coronal along anterior-posterior, sagittal along
    left-right (on the network grid of an LPS card: array axes 0, 1 and 2)."""
    unknown = [p for p in planes if p not in PLANES]
    if unknown:
        raise CardError(f"Unknown plane {unknown[0]!r} in inference.planes; use {', '.join(PLANES)}.")
    axes = anatomical_array_axes(direction)
    return tuple(axes[PLANES[p]] for p in planes)


_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


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


#: Convolutions a BatchNorm of the same rank right after them is folded into.
_FOLDABLE = ((nn.Conv3d, nn.ConvTranspose3d, nn.BatchNorm3d), (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d))
_TRANSPOSED = (nn.ConvTranspose2d, nn.ConvTranspose3d)


def _conv_batchnorm_pairs(network: nn.Module) -> List[Tuple[nn.Sequential, int]]:
    """(container, index) of each convolution (3D, or 2D for 2D networks) directly followed by a BatchNorm of its
    rank in a ``Sequential``."""
    pairs = []
    for seq in network.modules():
        if isinstance(seq, nn.Sequential):
            for i, (conv, norm) in enumerate(zip(seq, list(seq)[1:])):
                if (any(isinstance(conv, (c, t)) and isinstance(norm, b) for c, t, b in _FOLDABLE)
                        and norm.track_running_stats and norm.running_mean is not None):
                    pairs.append((seq, i))
    return pairs


def optimise_for_inference(network: nn.Module, precision: str = "float32", device_type: str = "cpu") -> nn.Module:
    """A copy of ``network`` computing the same function faster in ``precision``: BatchNorm layers (running
    statistics) folded into the convolution before them (3D and 2D), narrow ``ConvTranspose3d(4, 2, 1)`` layers
    (:func:`subpixel_max_channels` for ``precision`` on ``device_type``) replaced by
    :class:`SubpixelConvTranspose3d`, and large-kernel convolutions with an image on one side computed
    space-to-depth (:mod:`.fastconv`); the last two are 3D layers, which 2D networks do not have. TorchScript and
    ONNX networks, and networks without such layers, come back unchanged."""
    max_channels = subpixel_max_channels(precision, device_type)
    if isinstance(network, torch.jit.ScriptModule):
        return network
    if not _conv_batchnorm_pairs(network) and not any(
        _subpixel_eligible(m, max_channels) or space_to_depth_eligible(m) for m in network.modules()
    ):
        return network
    network = copy.deepcopy(network).eval()
    for seq, i in _conv_batchnorm_pairs(network):
        seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1], transpose=isinstance(seq[i], _TRANSPOSED))
        seq[i + 1] = nn.Identity()
    replace_layers(network, lambda m: _subpixel_eligible(m, max_channels), SubpixelConvTranspose3d)
    return use_space_to_depth(network)


def count_windows(image_size: Sequence[int], settings: InferenceSettings) -> int:
    """Number of windows MONAI will visit for this image (after its padding to at least the ROI); for a 2D
    network, ``image_size`` is a slice's and the count per slice."""
    size = [max(s, r) for s, r in zip(image_size, settings.roi_size)]
    overlap = settings.overlap if isinstance(settings.overlap, tuple) else (settings.overlap,) * len(size)
    interval = [r if r == s else max(1, int(r * (1 - o))) for s, r, o in zip(size, settings.roi_size, overlap)]
    return len(dense_patch_slices(size, settings.roi_size, interval))


@dataclass(frozen=True)
class BodyWindows:
    """Where a fully convolutional network runs: ``box`` (the body's bounding box, grown to whole windows
    inside the volume) and MONAI sliding-window parameters that cover it with few large windows."""

    box: Tuple[slice, ...]
    roi_size: Tuple[int, ...]
    overlap: Tuple[float, ...]


def _round_up(value: int, divisor: int) -> int:
    return -(-value // divisor) * divisor


def plan_body_windows(shape: Sequence[int], mask: Optional[np.ndarray], settings: InferenceSettings,
                      shift: Sequence[int] = ()) -> BodyWindows:
    """Large windows over the voxels of ``mask`` (the whole volume without one): the body's bounding box is
    split along its longest side until one window holds at most ``max_window_voxels``; neighbouring windows
    overlap by ``window_context`` voxels on each side, and every side is a multiple of the network's divisor.
    For a 2D network, ``shape`` and ``mask`` are a slice's (the mask: of every slice of a pass together).

    ``shift`` (voxels per axis): the usual box is moved that much towards the start of each axis and, where the
    body then reaches past its end, grown there by a multiple of the divisor, so it still covers the body with
    sides that suit the network; the caller leaves room for it (:func:`run_windows` pads the volume by the shift
    rounded up to the divisor at the end)."""
    if mask is not None and mask.any():
        lo, hi = foreground_bounds(mask)
    else:
        lo, hi = [0] * len(shape), [int(n) for n in shape]
    if any(shift):
        plan = _windows_over(shape, lo, hi, settings)
        start = [max(0, b.start - s) for b, s in zip(plan.box, shift)]
        stop = [min(int(n), a + (b.stop - b.start) + _round_up(max(0, end - (a + b.stop - b.start)), settings.divisor))
                for a, b, end, n in zip(start, plan.box, hi, shape)]
        return _windows_over(shape, start, stop, settings)
    return _windows_over(shape, lo, hi, settings)


def _windows_over(shape: Sequence[int], lo: Sequence[int], hi: Sequence[int], settings: InferenceSettings) -> BodyWindows:
    """:func:`plan_body_windows` for the box from ``lo`` to ``hi`` (one past the end) along each axis."""
    dims = range(len(shape))
    size = [b - a for a, b in zip(lo, hi)]
    counts = [1] * len(shape)
    context, divisor = settings.window_context, settings.divisor

    def side(axis: int) -> int:
        n = counts[axis]
        return _round_up(-(-size[axis] // n) + (2 * context if n > 1 else 0), divisor)

    while math.prod(side(i) for i in dims) > settings.max_window_voxels:
        axis = max(dims, key=side)
        if side(axis) <= 2 * context + divisor:
            break
        counts[axis] += 1
    roi = tuple(side(i) for i in dims)
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
    weights = profiles[0]
    for p in profiles[1:]:
        weights = np.multiply.outer(weights, p)
    return torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float32))[None, None]


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


def network_spatial_dims(network: nn.Module) -> Optional[int]:
    """2 or 3: the rank of the network's first convolution (TorchScript modules keep their layers' class names);
    None when it has none to see (ONNX sessions, networks without convolutions)."""
    for module in network.modules():
        name = getattr(module, "original_name", None) or type(module).__name__
        found = re.fullmatch(r"(?:Conv|ConvTranspose)([123])d", str(name))
        if found:
            return int(found.group(1))
    return None


def check_network_rank(network: nn.Module, settings: InferenceSettings) -> None:
    """Refuses a network whose convolutions do not have the rank the card describes (a 3D network with
    ``inference.planes``, or a 2D one without), naming what the card says, instead of failing in the first
    window. Networks whose rank cannot be seen are checked by their first window (:class:`_WindowPredictor`)."""
    dims = network_spatial_dims(network) if isinstance(network, nn.Module) else None
    wanted = len(settings.roi_size)
    if dims is None or dims == wanted:
        return
    fix = ("remove inference.planes and give inference.roi_size three numbers (x, y, z), or give the 2D network's "
           "weights" if settings.planes else
           'add inference.planes (e.g. ["axial"]) and give inference.roi_size two numbers, the in-plane window')
    raise CardError(
        f"The card describes {settings.card_window()}, but the network's convolutions are {dims}D: it takes "
        f"windows of N × C × {'D × H × W' if dims == 3 else 'H × W'}. Fix the card: {fix}."
    )


def _window_refused(exc: BaseException) -> bool:
    """An error of a network's first window: the network cannot take a window of that rank or size (torch's
    ``expected 5D input (got 4D input)``, onnxruntime's ``Invalid rank for input``, or a size a deep network
    reduces to nothing, as SwinUNETR does with 32³: ``Expected more than 1 spatial element``)."""
    onnx = type(exc).__module__.startswith("onnxruntime")
    return onnx or isinstance(exc, (RuntimeError, ValueError, AssertionError, IndexError))


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
            if not _window_refused(exc) or _is_cuda_oom(exc):
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
    planes: Tuple[str, ...] = ()  # a 2D network's planes, averaged (windows: of every pass together)


def _is_cuda_oom(exc: BaseException) -> bool:
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(exc, oom)) or "CUDA out of memory" in str(exc)


def _padded_like_monai(mask: np.ndarray, roi_size: Sequence[int]) -> np.ndarray:
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
    window_mask = _padded_like_monai(np.asarray(mask, dtype=bool)[None], settings.roi_size) if skip else None
    total = count_windows(volume.shape[1:], settings)
    timer = StageTimer("infer", total, progress, cancel)
    predictor = _WindowPredictor(network.to(device), settings, device, background_out, timer, window_mask, mirror)
    timer.start(f"{total} windows on {device}")
    out = _slide(predictor, inputs, settings, device, stitch_device, roi_weight_map)
    report = InferenceReport(str(device), total, predictor.computed, predictor.skipped, None, predictor.precision,
                             tuple(settings.roi_size), tuple(mirror))
    return out[0, 0].cpu().numpy().astype(np.float32, copy=False), report


def _slide(
    predictor: _WindowPredictor,
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


@dataclass(frozen=True)
class PlanePass:
    """One pass of a 2D network: its ``plane``, the array ``axis`` (z, y, x) its slices are stacked along, the
    ``slices`` computed (those holding body voxels), the in-plane ``box`` computed of each, the window
    ``settings`` of a slice, the stitching ``weights`` (None: the settings' blending) and its ``windows``."""

    plane: str
    axis: int
    slices: slice
    box: Tuple[slice, ...]
    settings: InferenceSettings
    weights: Optional[torch.Tensor]
    windows: int


def plan_plane_passes(
    shape: Sequence[int], mask: Optional[np.ndarray], settings: InferenceSettings, axes: Sequence[int],
    shift: Sequence[int] = (),
) -> List[PlanePass]:
    """The passes of a 2D network over a volume of ``shape`` (z, y, x), one per plane of ``settings.planes``
    along the matching array axis of ``axes``. With ``mask`` (and ``skip_background``) only the slices holding
    body voxels are computed. A fully convolutional network runs on large in-plane windows over the body's
    bounding box in the slices (:func:`plan_body_windows`), as many slices per call as ``max_window_voxels``
    allows (at most :data:`AUTO_BATCH_MAX_PLANAR`). ``shift`` (z, y, x): a shifted window grid's in-plane parts
    move those large windows (:func:`plan_body_windows`)."""
    passes = []
    for plane, axis in zip(settings.planes, axes):
        in_plane = tuple(int(shape[d]) for d in range(3) if d != axis)
        lo, hi = 0, int(shape[axis])
        stacked = None if mask is None else np.moveaxis(mask, axis, 0)
        if stacked is not None and settings.skip_background:
            holding = np.flatnonzero(stacked.reshape(stacked.shape[0], -1).any(axis=1))
            if holding.size:
                lo, hi = int(holding[0]), int(holding[-1]) + 1
        box: Tuple[slice, ...] = tuple(slice(0, n) for n in in_plane)
        windows, weights = settings, None
        if settings.fully_convolutional:
            moved = tuple(shift[d] for d in range(3) if d != axis) if any(shift) else ()
            plan = plan_body_windows(in_plane, None if stacked is None else stacked[lo:hi].any(axis=0), settings,
                                     moved)
            per_call = max(1, min(AUTO_BATCH_MAX_PLANAR, settings.max_window_voxels // math.prod(plan.roi_size)))
            windows = replace(settings, roi_size=plan.roi_size, overlap=plan.overlap, sw_batch_size=per_call,
                              blend="constant", fully_convolutional=False)
            box = plan.box
            weights = core_weights(plan, settings.window_context) if any(plan.overlap) else None
        count = (hi - lo) * count_windows([b.stop - b.start for b in box], windows)
        passes.append(PlanePass(plane, axis, slice(lo, hi), box, windows, weights, count))
    return passes


def run_planes(
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
    slice_axes: Optional[Sequence[int]] = None,
    shift: Sequence[int] = (),
) -> Tuple[np.ndarray, InferenceReport]:
    """A 2D network over ``volume`` (channels, z, y, x) slice by slice in each plane of ``settings.planes``,
    stacked along the array axes ``slice_axes`` (default: axial 0, coronal 1, sagittal 2, as on an LPS grid;
    the pipeline finds them on the network grid's direction): each pass moves that axis into the batch and runs
    MONAI's 2D sliding window over batches of slices; slices without body voxels give ``background_out``. The
    passes' outputs are averaged (z, y, x). ``mirror`` (array axes): test-time mirroring of each slice along
    those of its two axes (mirroring along the slice axis would change nothing). Progress counts the windows of
    every pass together, so it rises steadily to the end of the last. ``shift``: the grid shift the volume was
    padded for (:func:`run_windows`), which moves a fully convolutional network's in-plane windows."""
    if volume.ndim != 4:
        raise ValueError(f"volume must be (channels, z, y, x), got shape {volume.shape}")
    stitch_device = stitch_device or device
    axes = tuple(slice_axes) if slice_axes else plane_axes(_IDENTITY, settings.planes)
    skip = mask is not None and settings.skip_background
    passes = plan_plane_passes(volume.shape[1:], mask, settings, axes, shift)
    total = sum(p.windows for p in passes)
    timer = StageTimer("infer", total, progress, cancel)
    network = network.to(device)
    timer.start(f"{total} windows in {len(passes)} plane(s) ({', '.join(settings.planes)}) on {device}")
    out: Optional[np.ndarray] = None
    computed = skipped = 0
    mirrored = set()
    for p in passes:
        in_plane = [d for d in range(3) if d != p.axis]
        flips = tuple(in_plane.index(d) for d in mirror if d != p.axis)
        mirrored.update(in_plane[i] for i in flips)
        stack = np.moveaxis(volume, p.axis + 1, 0)[(p.slices, slice(None)) + p.box]  # (slices, channels, h, w)
        inputs = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32))
        window_mask = None
        if skip:
            stacked_mask = np.moveaxis(np.asarray(mask, dtype=bool), p.axis, 0)[(p.slices,) + p.box]
            window_mask = _padded_like_monai(stacked_mask, p.settings.roi_size)
        predictor = _WindowPredictor(network, p.settings, device, background_out, timer, window_mask, flips)
        result = _slide(predictor, inputs, p.settings, device, stitch_device, p.weights)
        del inputs, stack
        plane_out = np.full(volume.shape[1:], background_out, dtype=np.float32)
        np.moveaxis(plane_out, p.axis, 0)[(p.slices,) + p.box] = result[:, 0].cpu().numpy()
        del result
        computed += predictor.computed
        skipped += predictor.skipped
        if out is None:
            out = plane_out
        else:
            out += plane_out
            del plane_out
    assert out is not None
    if len(passes) > 1:
        out /= len(passes)
    report = InferenceReport(str(device), total, computed, skipped, None, compute_precision(settings, device),
                             tuple(settings.roi_size), tuple(sorted(mirrored)), tuple(settings.planes))
    return out, report


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
    slice_axes: Optional[Sequence[int]] = None,
) -> Tuple[np.ndarray, InferenceReport]:
    """:func:`run_windows` on ``device``, retried as :func:`memory_fallbacks` lists while CUDA runs out of memory.
    ``slice_axes``: for a 2D network, the array axis of each plane (:func:`plane_axes`)."""
    attempts = memory_fallbacks(settings, device, volume.shape[1:], mask)
    return run_attempts(attempts, network, volume, mask, background_out, progress, cancel, log, mirror, slice_axes)


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
    slice_axes: Optional[Sequence[int]] = None,
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
                                      mirror, stitch_device, slice_axes)
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
    slice_axes: Optional[Sequence[int]] = None,
) -> Tuple[np.ndarray, InferenceReport]:
    """:func:`run_sliding_window` with the card's windows, or, for a fully convolutional network, with the large
    windows of :func:`plan_body_windows` over the body's box (``background_out`` elsewhere), stitched by
    :func:`core_weights`; a 2D network runs slice by slice in its planes (:func:`run_planes`). With
    ``settings.grid_shift`` the volume is padded by the shift at the start of each axis (and, for a fully
    convolutional network's grown box, by the shift rounded up to the divisor at the end) and the output cut
    back to the volume's voxels: for card windows exactly the output for the scan moved by the shift, moved back."""
    shift = tuple(int(v) for v in settings.grid_shift)
    if not any(shift):
        return _run_windows(network, volume, settings, device, mask, background_out, progress, cancel, mirror,
                            stitch_device, slice_axes)
    if len(shift) != 3 or min(shift) < 0:
        raise ValueError(f"grid_shift must be three voxel counts >= 0 (z, y, x), got {shift}")
    grown = settings.fully_convolutional  # only the large windows' box grows at its end (plan_body_windows)
    after = [_round_up(v, settings.divisor) if grown else 0 for v in shift]
    pad = [(v, a) for v, a in zip(shift, after)]
    padded = np.pad(volume, [(0, 0)] + pad, constant_values=settings.padding_value)
    padded_mask = None if mask is None else np.pad(np.asarray(mask, dtype=bool), pad)
    out, report = _run_windows(network, padded, settings, device, padded_mask, background_out, progress, cancel,
                               mirror, stitch_device, slice_axes, shift)
    inside = tuple(slice(v, v + n) for v, n in zip(shift, volume.shape[1:]))
    return np.ascontiguousarray(out[inside]), report


def _run_windows(network, volume, settings, device, mask, background_out, progress, cancel, mirror, stitch_device,
                 slice_axes, shift: Sequence[int] = ()) -> Tuple[np.ndarray, InferenceReport]:
    """:func:`run_windows` on a volume already padded for ``shift`` (a fully convolutional plan moves by it)."""
    if settings.planes:
        return run_planes(network, volume, settings, device, mask, background_out, progress, cancel, mirror,
                          stitch_device, slice_axes, shift)
    if not settings.fully_convolutional:
        return run_sliding_window(network, volume, settings, device, mask, background_out, progress, cancel,
                                  mirror=mirror, stitch_device=stitch_device)
    plan = plan_body_windows(volume.shape[1:], mask, settings, shift)
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
