"""Generator networks and the card's ``architecture`` → ``nn.Module`` factory.

The built-in generators reproduce the published layouts of the pix2pix/CycleGAN generators (Isola et al. 2017,
Zhu et al. 2017) and their medical ports module for module, in 2D or 3D, so the peers' state_dict keys
(``model.1.weight``, ``model.model.1.model.3.weight``...) load unchanged and compute what the peers' code does:

- junyanz pytorch-CycleGAN-and-pix2pix: reflection-padded ResNet, U-Net; biases only before instance norm;
- davidiommi 3D-CycleGan-Pytorch-MedImaging: replication padding everywhere (``padding: reflect`` in its
  options still builds replication pads), and its U-Net never has biases before a norm (its instance-norm test
  compares with the 2D class);
- ganslate: Resnet3D pads by replication, Resnet2D by reflection, their transposed convolutions always have a
  bias and their output convolution has one only with instance norm; Unet2D/3D are junyanz's; Vnet2D/3D are
  in :mod:`.vnet`.

Padding layers hold no weights, so a checkpoint loads whatever padding the card says: only the card can tell
the layouts apart, which is why it names every choice. Any ``monai.networks.nets`` class can be named too.
"""
from __future__ import annotations

import difflib
import math
from functools import reduce
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
from torch import nn

from .errors import CardError
from .layers import Layers, bias_rule, layers_for
from .vnet import VnetGenerator

#: Paddings of the ResNet's 7-wide stem and output convolutions in the published layouts.
EDGE_PADDINGS = ("reflect", "replicate")
BUILTIN_NAMES = ("resnet_generator", "unet_generator", "vnet_generator")


class ResnetBlock(nn.Module):
    """Residual block: x + (pad, conv3, norm, ReLU, [dropout], pad, conv3, norm)(x)."""

    def __init__(self, dim: int, padding: str, norm: str, use_dropout: bool, bias: bool, layers: Layers) -> None:
        super().__init__()
        norm_layer = layers.norm(norm)
        body: List[nn.Module] = []
        for half in (0, 1):
            pad, conv_pad = layers.padding(padding, 1)
            body += pad + [layers.conv(dim, dim, kernel_size=3, padding=conv_pad, bias=bias), norm_layer(dim)]
            if half == 0:
                body.append(nn.ReLU(True))
                if use_dropout:
                    body.append(nn.Dropout(0.5))
        self.conv_block = nn.Sequential(*body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """CycleGAN ResNet generator. ``padding`` applies to the residual blocks, ``edge_padding`` to the 7-wide stem
    and output convolutions (reflection in junyanz's and ganslate's 2D layouts, replication in davidiommi's and
    ganslate's Resnet3D). ``encoder_alias`` also registers the layers up to the last residual block as
    ``encoder.*``, as ganslate's Resnet2D does (its checkpoints hold those weights twice). Spatial sizes must be
    multiples of 4."""

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
        bias: Optional[Mapping[str, bool]] = None,
        spatial_dims: int = 3,
        encoder_alias: bool = False,
    ) -> None:
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        if edge_padding not in EDGE_PADDINGS:  # a zero-padded stem would drop a layer and move every weight's key
            raise ValueError(f"edge_padding must be one of {', '.join(EDGE_PADDINGS)}, got {edge_padding!r}")
        ops, has_bias = layers_for(spatial_dims), bias_rule(norm, bias)
        norm_layer = ops.norm(norm)
        body: List[nn.Module] = ops.padding(edge_padding, 3)[0] + [
            ops.conv(in_channels, ngf, kernel_size=7, bias=has_bias["conv"]),
            norm_layer(ngf),
            nn.ReLU(True),
        ]
        for mult in (1, 2):
            body += [
                ops.conv(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=has_bias["conv"]),
                norm_layer(ngf * mult * 2),
                nn.ReLU(True),
            ]
        body += [ResnetBlock(ngf * 4, padding, norm, use_dropout, has_bias["conv"], ops) for _ in range(n_blocks)]
        encoder_layers = len(body)
        for mult in (4, 2):
            body += [
                ops.transposed(ngf * mult, ngf * mult // 2, kernel_size=3, stride=2, padding=1, output_padding=1,
                               bias=has_bias["transposed"]),
                norm_layer(ngf * mult // 2),
                nn.ReLU(True),
            ]
        body += ops.padding(edge_padding, 3)[0] + [
            ops.conv(ngf, out_channels, kernel_size=7, bias=has_bias["output"]),
            nn.Tanh(),
        ]
        if encoder_alias:
            self.encoder = nn.ModuleList(body[:encoder_layers])
        self.model = nn.Sequential(*body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: down (4-wide stride-2 conv), ``submodule``, up (4-wide stride-2 transposed conv); all but
    the outermost level concatenate their input to their output (the skip connection)."""

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        layers: Layers,
        bias: Mapping[str, bool],
        input_nc: Optional[int] = None,
        submodule: Optional[nn.Module] = None,
        outermost: bool = False,
        innermost: bool = False,
        norm: str = "batch",
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        norm_layer = layers.norm(norm)
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = layers.conv(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=bias["conv"])
        up_in = inner_nc if innermost else inner_nc * 2
        up_bias = bias["output"] if outermost else bias["transposed"]
        upconv = layers.transposed(up_in, outer_nc, kernel_size=4, stride=2, padding=1, bias=up_bias)
        if outermost:
            body = [downconv, submodule, nn.ReLU(True), upconv, nn.Tanh()]
        elif innermost:
            body = [nn.LeakyReLU(0.2, True), downconv, nn.ReLU(True), upconv, norm_layer(outer_nc)]
        else:
            body = [nn.LeakyReLU(0.2, True), downconv, norm_layer(inner_nc), submodule,
                    nn.ReLU(True), upconv, norm_layer(outer_nc)]
            if use_dropout:
                body.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """pix2pix U-Net with ``num_downs`` stride-2 levels (sizes must be multiples of 2**num_downs).

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
        bias: Optional[Mapping[str, bool]] = None,
        spatial_dims: int = 3,
    ) -> None:
        super().__init__()
        if num_downs < 2:
            raise ValueError(f"num_downs must be >= 2, got {num_downs}")
        ops, has_bias = layers_for(spatial_dims), bias_rule(norm, bias)
        ops.norm(norm)
        level = dict(layers=ops, bias=has_bias, norm=norm)
        widths = [ngf * min(2 ** k, 8) for k in range(num_downs)]
        block = UnetSkipConnectionBlock(widths[-2], widths[-1], innermost=True, **level)
        for k in range(num_downs - 2, 0, -1):
            block = UnetSkipConnectionBlock(widths[k - 1], widths[k], submodule=block,
                                            use_dropout=use_dropout and k >= 4, **level)
        self.model = UnetSkipConnectionBlock(out_channels, ngf, input_nc=in_channels, submodule=block,
                                             outermost=True, **level)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


_BUILTINS: Dict[str, type] = {
    "resnet_generator": ResnetGenerator,
    "unet_generator": UnetGenerator,
    "vnet_generator": VnetGenerator,
}


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
    if kind == "builtin" and name == "vnet_generator":
        return 2 ** len(params.get("down_blocks", (1, 2, 3, 2)))
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
