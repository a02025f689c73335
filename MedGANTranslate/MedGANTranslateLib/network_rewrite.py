"""A loaded network rewritten into a faster equivalent for inference on its device and precision.

The weights stay what the card's checksum vouches for; only how they are computed changes. Batch norms with
running statistics are folded into the convolution before them, narrow stride-2 transposed 3D convolutions
become sub-pixel convolutions (:mod:`.subpixel`) and large-kernel convolutions with an image on one side run
space-to-depth (:mod:`.fastconv`). :func:`optimise_for_inference` is the one entry: it takes the precision and
device type the run chose (:mod:`.devices`) and decides every rewrite from them, so the original network is
left untouched and the rewritten one computes the same function.
"""
from __future__ import annotations

import copy
from typing import List, Tuple

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .fastconv import space_to_depth_eligible, use_space_to_depth
from .subpixel import subpixel_eligible, subpixel_max_channels, use_subpixel

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
    (:func:`.subpixel.subpixel_max_channels` for ``precision`` on ``device_type``) replaced by
    :class:`.subpixel.SubpixelConvTranspose3d`, and large-kernel convolutions with an image on one side computed
    space-to-depth (:mod:`.fastconv`); the last two are 3D layers, which 2D networks do not have. TorchScript and
    ONNX networks, and networks without such layers, come back unchanged."""
    max_channels = subpixel_max_channels(precision, device_type)
    if isinstance(network, torch.jit.ScriptModule):
        return network
    if not _conv_batchnorm_pairs(network) and not any(
        subpixel_eligible(m, max_channels) or space_to_depth_eligible(m) for m in network.modules()
    ):
        return network
    network = copy.deepcopy(network).eval()
    for seq, i in _conv_batchnorm_pairs(network):
        seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1], transpose=isinstance(seq[i], _TRANSPOSED))
        seq[i + 1] = nn.Identity()
    use_subpixel(network, max_channels)
    return use_space_to_depth(network)
