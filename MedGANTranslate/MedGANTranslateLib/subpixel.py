"""Stride-2 transposed 3D convolutions computed as one ordinary convolution and a pixel shuffle.

oneDNN runs ``ConvTranspose3d(kernel_size=4, stride=2, padding=1)`` slowly when it has few output channels, as
the image-producing last layer of the pix2pix U-Net has. :class:`SubpixelConvTranspose3d` computes the same
output as a size-2 convolution with one group of output channels per output phase; which layers are worth it
depends on the precision and the CPU's vector width (:func:`subpixel_max_channels`), as measured.
"""
from __future__ import annotations

import itertools

import torch
from torch import nn

from .fastconv import replace_layers


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


def subpixel_eligible(module: nn.Module, max_channels: int) -> bool:
    """A ``ConvTranspose3d(4, 2, 1)`` without output padding, dilation or groups, and at most ``max_channels``
    output channels."""
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


def use_subpixel(network: nn.Module, max_channels: int) -> nn.Module:
    """Replaces, in place, each eligible ``ConvTranspose3d`` of ``network`` with at most ``max_channels`` output
    channels by a :class:`SubpixelConvTranspose3d`; returns ``network``."""
    return replace_layers(network, lambda m: subpixel_eligible(m, max_channels), SubpixelConvTranspose3d)
