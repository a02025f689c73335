"""Large-kernel 3D convolutions with an image on one side, computed in a layout oneDNN runs fast.

oneDNN vectorises a convolution over its channels. The CycleGAN ResNet generator's 7³ layers that read the
image (1 → 8 channels) and write it (8 → 1) have almost none, so on the CPU they took 80 % of a training step
and most of the generator's inference. Rearranging the input 2×2×2 space-to-depth turns such a layer into a
convolution with 8× the channels and a kernel of about half the size, computing the same sums.
"""
from __future__ import annotations

from typing import Callable, Tuple

import torch
from monai.networks.utils import pixelshuffle, pixelunshuffle
from torch import nn

#: Smallest kernel and widest narrow side worth rewriting (2 threads, fwd+bwd, 54³ input, float32 / bfloat16):
#: 8 → 1 channels with a 7³ kernel 283 → 59 / 373 → 28 ms, 1 → 8 channels 165 → 37 / 150 → 13 ms; with
#: 16 → 8 channels and a 5³ kernel the rewrite is slower (26 → 38 ms).
MIN_KERNEL = 5
MAX_NARROW_CHANNELS = 2


def _phase_taps(kernel: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Along one axis, output voxel 2m + r sums input voxels 2(m + a) + s through kernel tap 2a + s - r
    (r, s in {0, 1}); returns that tap index, clamped, and whether it lies inside the kernel, both [r, a, s]."""
    r = torch.arange(2).view(2, 1, 1)
    a = torch.arange(kernel // 2 + 1).view(1, -1, 1)
    s = torch.arange(2).view(1, 1, 2)
    tap = 2 * a + s - r
    inside = (tap >= 0) & (tap < kernel)
    return tap.clamp(0, kernel - 1), inside


class SpaceToDepthConv3d(nn.Module):
    """The same function as an unpadded, stride-1 ``Conv3d`` with an odd cubic kernel, computed as a convolution of
    the input's 2×2×2 space-to-depth rearrangement (8× the input channels, kernel k // 2 + 1) whose 8× output
    channels are shuffled back into space. It shares the convolution's ``weight`` and ``bias`` parameters, so it
    trains them and its ``state_dict`` has the convolution's keys."""

    def __init__(self, conv: nn.Conv3d) -> None:
        super().__init__()
        if not _odd_cubic_unpadded(conv):
            raise ValueError(f"{conv} is not an unpadded, undilated, ungrouped stride-1 convolution with an odd cubic kernel")
        self.weight = conv.weight
        self.bias = conv.bias
        self.kernel = conv.kernel_size[0]
        tap, inside = _phase_taps(self.kernel)
        self.register_buffer("tap", tap, persistent=False)
        self.register_buffer("inside", inside, persistent=False)

    def phase_weight(self) -> torch.Tensor:
        """(out · 8, in · 8, K, K, K): output channels ordered (out, rz, ry, rx) for ``pixelshuffle``, input
        channels (in, sz, sy, sx) as ``pixelunshuffle`` orders them."""
        w, tap, inside = self.weight, self.tap, self.inside.to(self.weight.dtype)
        w = w[:, :, tap] * inside.view(1, 1, *inside.shape, 1, 1)  # (O, C, rz, az, sz, k, k)
        w = w[:, :, :, :, :, tap] * inside.view(1, 1, 1, 1, 1, *inside.shape, 1)
        w = w[..., tap] * inside
        k2 = tap.shape[1]  # (O, C, rz, az, sz, ry, ay, sy, rx, ax, sx)
        w = w.permute(0, 2, 5, 8, 1, 4, 7, 10, 3, 6, 9)
        return w.reshape(w.shape[0] * 8, w.shape[4] * 8, k2, k2, k2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        odd = [n % 2 for n in reversed(size)]
        if any(odd):
            x = nn.functional.pad(x, [p for n in odd for p in (0, n)])
        y = nn.functional.conv3d(pixelunshuffle(x, spatial_dims=3, scale_factor=2), self.phase_weight())
        y = pixelshuffle(y, spatial_dims=3, scale_factor=2)
        y = y[:, :, : size[0] - self.kernel + 1, : size[1] - self.kernel + 1, : size[2] - self.kernel + 1]
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1, 1)


def _odd_cubic_unpadded(module: nn.Module) -> bool:
    return (
        type(module) is nn.Conv3d
        and len(set(module.kernel_size)) == 1
        and module.kernel_size[0] % 2 == 1
        and module.stride == (1, 1, 1)
        and module.padding == (0, 0, 0)
        and module.dilation == (1, 1, 1)
        and module.groups == 1
    )


def space_to_depth_eligible(module: nn.Module) -> bool:
    """An unpadded ``Conv3d`` with a large odd cubic kernel and an image (at most two channels) on one side."""
    return (
        _odd_cubic_unpadded(module)
        and module.kernel_size[0] >= MIN_KERNEL
        and min(module.in_channels, module.out_channels) <= MAX_NARROW_CHANNELS
    )


def replace_layers(network: nn.Module, eligible: Callable[[nn.Module], bool],
                   replacement: Callable[[nn.Module], nn.Module]) -> nn.Module:
    """Replaces, in place, each submodule of ``network`` that is ``eligible`` by ``replacement(submodule)``."""
    for parent in list(network.modules()):
        for name, child in list(parent.named_children()):
            if eligible(child):
                setattr(parent, name, replacement(child))
    return network


def use_space_to_depth(network: nn.Module) -> nn.Module:
    """Replaces, in place, each image-side large-kernel ``Conv3d`` of ``network`` by a
    :class:`SpaceToDepthConv3d` sharing its parameters; returns ``network``."""
    return replace_layers(network, space_to_depth_eligible, SpaceToDepthConv3d)
