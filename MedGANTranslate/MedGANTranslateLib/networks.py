"""Generator networks and the card's ``architecture`` → ``nn.Module`` factory.

The two built-in generators are 3D versions of the pix2pix/CycleGAN generators (Isola et al. 2017, Zhu et al.
2017) with the module layout of the reference PyTorch implementation, so the state_dict keys of 3D ports
(``model.1.weight``, ``model.model.1.model.3.weight``...) load unchanged. Any ``monai.networks.nets`` class
can be named in a card as well.
"""
from __future__ import annotations

import difflib
import math
from functools import reduce
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .errors import CardError

NORMS = ("instance", "batch", "none")
PADDINGS = ("reflect", "replicate", "zeros")
#: Paddings of the ResNet's 7³ stem and output convolutions in the published layouts.
EDGE_PADDINGS = ("reflect", "replicate")
BUILTIN_NAMES = ("resnet_generator", "unet_generator")


def _norm_layer(norm: str) -> Callable[[int], nn.Module]:
    """Factory for one norm layer; ``none`` keeps an ``Identity`` so module indices match the original."""
    if norm == "instance":
        return lambda ch: nn.InstanceNorm3d(ch, affine=False, track_running_stats=False)
    if norm == "batch":
        return lambda ch: nn.BatchNorm3d(ch, affine=True)
    if norm == "none":
        return lambda ch: nn.Identity()
    raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")


def _conv_bias(norm: str) -> bool:
    """junyanz's rule (``use_bias = norm_layer == InstanceNorm``): convolutions have a bias only before instance
    norm, so with batch norm (which has its own shift) and with none; the output convolutions always do."""
    return norm == "instance"


def _padding(mode: str, width: int) -> Tuple[List[nn.Module], int]:
    """The padding layer a convolution of ``mode`` needs (none for zeros) and the convolution's own padding."""
    if mode not in PADDINGS:
        raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {mode!r}")
    if mode == "reflect":
        return [nn.ReflectionPad3d(width)], 0
    if mode == "replicate":
        return [nn.ReplicationPad3d(width)], 0
    return [], width


class ResnetBlock3D(nn.Module):
    """Residual block: x + (pad, conv3, norm, ReLU, [dropout], pad, conv3, norm)(x)."""

    def __init__(self, dim: int, padding: str, norm: str, use_dropout: bool) -> None:
        super().__init__()
        norm_layer, bias = _norm_layer(norm), _conv_bias(norm)
        layers: List[nn.Module] = []
        for half in (0, 1):
            pad, conv_pad = _padding(padding, 1)
            layers += pad + [nn.Conv3d(dim, dim, kernel_size=3, padding=conv_pad, bias=bias), norm_layer(dim)]
            if half == 0:
                layers.append(nn.ReLU(True))
                if use_dropout:
                    layers.append(nn.Dropout(0.5))
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator3D(nn.Module):
    """CycleGAN ResNet generator in 3D. ``padding`` applies to the residual blocks, ``edge_padding`` to the 7³
    stem and output convolutions: reflection in junyanz's original, replication in davidiommi's
    3D-CycleGan-Pytorch-MedImaging and ganslate's Resnet3D. Padding layers hold no weights, so a checkpoint
    loads whatever the card says: only the card can tell them apart. Spatial sizes must be multiples of 4."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        ngf: int = 64,
        n_blocks: int = 9,
        norm: str = "instance",
        padding: str = "reflect",
        use_dropout: bool = False,
        edge_padding: str = "reflect",
    ) -> None:
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        norm_layer, bias = _norm_layer(norm), _conv_bias(norm)
        if edge_padding not in EDGE_PADDINGS:  # a zero-padded stem would drop a layer and move every weight's key
            raise ValueError(f"edge_padding must be one of {', '.join(EDGE_PADDINGS)}, got {edge_padding!r}")
        layers: List[nn.Module] = _padding(edge_padding, 3)[0] + [
            nn.Conv3d(in_channels, ngf, kernel_size=7, bias=bias),
            norm_layer(ngf),
            nn.ReLU(True),
        ]
        for mult in (1, 2):
            layers += [
                nn.Conv3d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=bias),
                norm_layer(ngf * mult * 2),
                nn.ReLU(True),
            ]
        layers += [ResnetBlock3D(ngf * 4, padding, norm, use_dropout) for _ in range(n_blocks)]
        for mult in (4, 2):
            layers += [
                nn.ConvTranspose3d(ngf * mult, ngf * mult // 2, kernel_size=3, stride=2, padding=1,
                                   output_padding=1, bias=bias),
                norm_layer(ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += _padding(edge_padding, 3)[0] + [nn.Conv3d(ngf, out_channels, kernel_size=7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class UnetSkipConnectionBlock3D(nn.Module):
    """One U-Net level: down (4³ stride-2 conv), ``submodule``, up (4³ stride-2 transposed conv); all but the
    outermost level concatenate their input to their output (the skip connection)."""

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        input_nc: Optional[int] = None,
        submodule: Optional[nn.Module] = None,
        outermost: bool = False,
        innermost: bool = False,
        norm: str = "batch",
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        norm_layer, bias = _norm_layer(norm), _conv_bias(norm)
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv3d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=bias)
        up_in = inner_nc if innermost else inner_nc * 2
        if outermost:
            upconv = nn.ConvTranspose3d(up_in, outer_nc, kernel_size=4, stride=2, padding=1)
            layers = [downconv, submodule, nn.ReLU(True), upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose3d(up_in, outer_nc, kernel_size=4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), downconv, nn.ReLU(True), upconv, norm_layer(outer_nc)]
        else:
            upconv = nn.ConvTranspose3d(up_in, outer_nc, kernel_size=4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), downconv, norm_layer(inner_nc), submodule,
                      nn.ReLU(True), upconv, norm_layer(outer_nc)]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator3D(nn.Module):
    """pix2pix U-Net in 3D with ``num_downs`` stride-2 levels (sizes must be multiples of 2**num_downs).

    Level k (0 = outermost) has ngf * min(2**k, 8) inner channels, which for num_downs >= 5 is exactly the
    original layout; dropout goes in the ngf*8 levels between the fourth and the innermost, as in the original.
    Smaller num_downs (>= 2) give the same pattern truncated, for small volumes.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_downs: int,
        ngf: int = 64,
        norm: str = "batch",
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        if num_downs < 2:
            raise ValueError(f"num_downs must be >= 2, got {num_downs}")
        _norm_layer(norm)
        widths = [ngf * min(2 ** k, 8) for k in range(num_downs)]
        block = UnetSkipConnectionBlock3D(widths[-2], widths[-1], innermost=True, norm=norm)
        for k in range(num_downs - 2, 0, -1):
            block = UnetSkipConnectionBlock3D(widths[k - 1], widths[k], submodule=block, norm=norm,
                                              use_dropout=use_dropout and k >= 4)
        self.model = UnetSkipConnectionBlock3D(out_channels, ngf, input_nc=in_channels, submodule=block,
                                               outermost=True, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


_BUILTINS: Dict[str, type] = {"resnet_generator": ResnetGenerator3D, "unet_generator": UnetGenerator3D}


def _monai_classes() -> Dict[str, type]:
    from monai.networks import nets

    return {name: obj for name, obj in vars(nets).items()
            if isinstance(obj, type) and issubclass(obj, nn.Module)}


def _describe(architecture: Dict[str, Any]) -> str:
    return f"architecture {architecture.get('type')!r}/{architecture.get('name')!r}"


def build_network(architecture: Dict[str, Any]) -> nn.Module:
    """A freshly initialised network for a card's ``architecture`` (type ``builtin`` or ``monai``)."""
    kind, name = architecture.get("type"), architecture.get("name")
    params = dict(architecture.get("params") or {})
    if kind == "builtin":
        classes = _BUILTINS
        accepted = f"builtin names: {', '.join(BUILTIN_NAMES)}"
    elif kind == "monai":
        classes = _monai_classes()
        close = difflib.get_close_matches(str(name), list(classes), n=3)
        accepted = "a network class of monai.networks.nets" + (f" (did you mean {', '.join(close)}?)" if close else "")
    elif kind in ("torchscript", "onnx"):
        raise CardError(f"Architecture type {kind!r} is a self-contained file; load it with load_generator, not build_network.")
    else:
        raise CardError(f"Unknown architecture type {kind!r}; accepted: builtin, monai, torchscript, onnx.")
    if name not in classes:
        raise CardError(f"Unknown network in {_describe(architecture)}; accepted: {accepted}.")
    try:
        return classes[name](**params)
    except (TypeError, ValueError, AssertionError) as exc:
        raise CardError(f"Cannot build {_describe(architecture)} with params {params}: {exc}.") from exc


def _product_of_strides(strides: Sequence[Any]) -> int:
    """Least multiple that every axis's total stride divides; strides may be ints or per-axis tuples."""
    per_level = [tuple(s) if isinstance(s, (list, tuple)) else (s,) * 3 for s in strides]
    per_axis = [math.prod(level[axis] for level in per_level) for axis in range(3)]
    return reduce(lambda a, b: a * b // math.gcd(a, b), per_axis, 1)


def required_divisor(architecture: Dict[str, Any]) -> int:
    """Spatial sizes the network accepts are multiples of this (1 when it cannot be told from the card)."""
    kind, name = architecture.get("type"), architecture.get("name")
    params = architecture.get("params") or {}
    if kind == "builtin" and name == "unet_generator":
        return 2 ** int(params.get("num_downs", 0))
    if kind == "builtin" and name == "resnet_generator":
        return 4
    cls = _monai_classes().get(name) if kind == "monai" else None
    canonical = cls.__name__ if cls is not None else ""
    if canonical in ("UNet", "AttentionUnet", "DynUNet"):
        return _product_of_strides(params.get("strides", ()))
    if canonical in ("BasicUNet", "BasicUNetPlusPlus"):
        return 16
    if canonical == "SegResNet":
        return 2 ** (len(params.get("blocks_down", (1, 2, 2, 4))) - 1)
    if canonical == "SwinUNETR":
        return 32
    return 1
