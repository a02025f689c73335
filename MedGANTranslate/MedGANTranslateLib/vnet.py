"""ganslate's partially invertible V-Net generator (Vnet2D/Vnet3D), with its module layout.

Each level's core is a sequence of additive couplings (RevNet, as memcnn's ``AdditiveCoupling`` inside
``InvertibleModuleWrapper``): the channels are split in halves x1, x2 and y1 = x1 + F(x2), y2 = x2 + G(y1).
ganslate's memory saving only changes how gradients are computed, never the output, so it needs no setting here.
With ``use_inverse`` the network also holds the B→A input, output and resampling layers; ``direction: inverse``
runs that path, with every coupling inverted (x2 = y2 - G(y1), x1 = y1 - F(x2)), as ganslate's
``forward(x, inverse=True)`` does. ganslate registers the input block and the down blocks a second time as
``encoder``, so its checkpoints hold those weights twice; the same aliases are registered here.
"""
from __future__ import annotations

import copy
from typing import List, Mapping, Optional, Sequence

import torch
from torch import nn

from .layers import Layers, bias_rule, layers_for

DIRECTIONS = ("forward", "inverse")


class AdditiveCoupling(nn.Module):
    """y1 = x1 + Fm(x2), y2 = x2 + Gm(y1) over the channel halves; ``inverse`` undoes it exactly."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.Gm = copy.deepcopy(block)
        self.Fm = copy.deepcopy(block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = torch.chunk(x, 2, dim=1)
        y1 = x1 + self.Fm(x2.contiguous())
        return torch.cat([y1, x2 + self.Gm(y1)], dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y1, y2 = torch.chunk(y, 2, dim=1)
        x2 = y2 - self.Gm(y1.contiguous())
        return torch.cat([y1 - self.Fm(x2), x2], dim=1)


class InvertibleModuleWrapper(nn.Module):
    """Holds the coupling under ``_fn`` (memcnn's key name)."""

    def __init__(self, fn: AdditiveCoupling) -> None:
        super().__init__()
        self._fn = fn


class InvertibleBlock(nn.Module):
    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.invertible_block = InvertibleModuleWrapper(AdditiveCoupling(block))

    def forward(self, x: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        coupling = self.invertible_block._fn
        return coupling.inverse(x) if inverse else coupling(x)


class InvertibleSequence(nn.Module):
    def __init__(self, block: nn.Module, n_blocks: int) -> None:
        super().__init__()
        self.sequence = nn.Sequential(*[InvertibleBlock(block) for _ in range(n_blocks)])

    def forward(self, x: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        for block in (reversed(self.sequence) if inverse else self.sequence):
            x = block(x, inverse=inverse)
        return x


def _conv_norm_prelu(layer: nn.Module, channels: int, layers: Layers, norm: str) -> nn.Sequential:
    return nn.Sequential(layer, layers.norm(norm)(channels), nn.PReLU(channels))


class InputBlock(nn.Module):
    """5-wide convolution, norm, plus the input repeated to the block's width; PReLU."""

    def __init__(self, in_channels: int, out_channels: int, layers: Layers, norm: str, bias: bool) -> None:
        super().__init__()
        self.n_repeats = out_channels // in_channels
        self.conv1 = layers.conv(in_channels, out_channels, kernel_size=5, padding=2, bias=bias)
        self.bn1 = layers.norm(norm)(out_channels)
        self.relu = nn.PReLU(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        repeats = (1, self.n_repeats) + (1,) * (x.dim() - 2)
        return self.relu(self.bn1(self.conv1(x)) + x.repeat(*repeats))


class _Level(nn.Module):
    """A resampling layer per direction, then the invertible core with a residual connection and a PReLU."""

    def _core(self, channels: int, n_blocks: int, layers: Layers, norm: str, bias: bool) -> None:
        half = channels // 2
        block = _conv_norm_prelu(layers.conv(half, half, kernel_size=5, padding=2, bias=bias), half, layers, norm)
        self.core = InvertibleSequence(block, n_blocks)
        self.relu = nn.PReLU(channels)

    def _finish(self, x: torch.Tensor, inverse: bool) -> torch.Tensor:
        return self.relu(self.core(x, inverse) + x)


class DownBlock(_Level):
    def __init__(self, in_channels: int, n_blocks: int, layers: Layers, norm: str, bias: bool,
                 use_inverse: bool) -> None:
        super().__init__()
        out_channels = 2 * in_channels

        def down() -> nn.Sequential:
            conv = layers.conv(in_channels, out_channels, kernel_size=2, stride=2, bias=bias)
            return _conv_norm_prelu(conv, out_channels, layers, norm)

        self.down_conv_ab = down()
        if use_inverse:
            self.down_conv_ba = down()
        self._core(out_channels, n_blocks, layers, norm, bias)

    def forward(self, x: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        return self._finish((self.down_conv_ba if inverse else self.down_conv_ab)(x), inverse)


class UpBlock(_Level):
    def __init__(self, in_channels: int, out_channels: int, n_blocks: int, layers: Layers, norm: str,
                 bias: bool, transposed_bias: bool, use_inverse: bool) -> None:
        super().__init__()

        def up() -> nn.Sequential:
            conv = layers.transposed(in_channels, out_channels // 2, kernel_size=2, stride=2, bias=transposed_bias)
            return _conv_norm_prelu(conv, out_channels // 2, layers, norm)

        self.up_conv_ab = up()
        if use_inverse:
            self.up_conv_ba = up()
        self._core(out_channels, n_blocks, layers, norm, bias)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        up = (self.up_conv_ba if inverse else self.up_conv_ab)(x)
        return self._finish(torch.cat((up, skip), 1), inverse)


class OutBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, layers: Layers, norm: str, bias: bool,
                 output_bias: bool) -> None:
        super().__init__()
        self.conv1 = layers.conv(in_channels, in_channels, kernel_size=5, padding=2, bias=bias)
        self.bn1 = layers.norm(norm)(in_channels)
        self.relu1 = nn.PReLU(in_channels)
        self.conv2 = layers.conv(in_channels, out_channels, kernel_size=1, bias=output_bias)
        self.tanh = nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tanh(self.conv2(self.relu1(self.bn1(self.conv1(x)))))


class VnetGenerator(nn.Module):
    """ganslate's Vnet2D/Vnet3D. Spatial sizes must be multiples of 2 ** len(down_blocks)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        norm: str = "instance",
        first_layer_channels: int = 16,
        down_blocks: Sequence[int] = (1, 2, 3, 2),
        up_blocks: Sequence[int] = (2, 2, 1, 1),
        use_inverse: bool = False,
        direction: str = "forward",
        bias: Optional[Mapping[str, bool]] = None,
        spatial_dims: int = 3,
    ) -> None:
        super().__init__()
        if first_layer_channels % in_channels:
            raise ValueError("first_layer_channels has to be divisible by in_channels")
        if len(down_blocks) != len(up_blocks) or not down_blocks:
            raise ValueError("down_blocks and up_blocks need the same, non-zero number of levels")
        if direction not in DIRECTIONS or (direction == "inverse" and not use_inverse):
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}; inverse needs use_inverse")
        ops, has_bias = layers_for(spatial_dims), bias_rule(norm, bias)
        self.inverse = direction == "inverse"
        flc, conv_bias = first_layer_channels, has_bias["conv"]
        self.in_ab = InputBlock(in_channels, flc, ops, norm, conv_bias)
        if use_inverse:
            self.in_ba = InputBlock(in_channels, flc, ops, norm, conv_bias)
        self.out_ab = OutBlock(flc * 2, out_channels, ops, norm, conv_bias, has_bias["output"])
        if use_inverse:
            self.out_ba = OutBlock(flc * 2, out_channels, ops, norm, conv_bias, has_bias["output"])
        self.downs = nn.ModuleList(
            DownBlock(flc * 2 ** i, n, ops, norm, conv_bias, use_inverse) for i, n in enumerate(down_blocks))
        self.encoder = nn.ModuleList([self.in_ab]).extend(self.downs)
        factors: List[int] = [2 ** (i + 1) for i in reversed(range(len(down_blocks)))]
        widths = [factors[0]] + factors
        self.ups = nn.ModuleList(
            UpBlock(flc * widths[i], flc * widths[i + 1], n, ops, norm, conv_bias, has_bias["transposed"], use_inverse)
            for i, n in enumerate(up_blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inverse = self.inverse
        first = (self.in_ba if inverse else self.in_ab)(x)
        skips = [first]
        for down in self.downs:
            skips.append(down(skips[-1], inverse))
        out = skips.pop()
        for up in self.ups:
            out = up(out, skips.pop(), inverse)
        return (self.out_ba if inverse else self.out_ab)(out)
