"""Reads a network's structure from a state_dict's key names and tensor shapes alone.

A checkpoint holds no architecture, only tensors; but the peers' generators name their layers the same way every
time (junyanz's ``model.N``, ganslate's ``in_ab``/``downs.K``, MONAI's ``conv_0``/``down_1``), so which network it
is, and its channels, widths, depth and dimensionality, can be read off the keys without building anything. The
layout options the shapes cannot show on their own (biases, norm) are left to :func:`.layout_fit.fit_builtin`.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Mapping, Optional

import torch


def conv_rank(tensor: torch.Tensor) -> int:
    """2 or 3: a convolution's weight is out x in x the kernel's sides."""
    return tensor.dim() - 2


def _indices(state: Mapping[str, Any], pattern: str) -> List[int]:
    """The numbers that ``pattern``'s group matches in the keys, sorted: a Sequential's layer indices."""
    found = set()
    regex = re.compile(pattern)
    for k in state:
        m = regex.match(k)
        if m:
            found.add(int(m.group(1)))
    return sorted(found)


def _norm_hint(state: Mapping[str, torch.Tensor], prefix: str) -> str:
    """Batch norm where the first norm layer has affine weights; instance norm (usually without) otherwise."""
    if f"{prefix}.weight" in state:
        return "batch"
    return "instance"


def resnet_structure(state: Mapping[str, torch.Tensor]) -> Optional[Dict[str, Any]]:
    """The structural parameters of a junyanz-style ResNet generator: ``model.1`` a 7-wide stem convolution."""
    first = state.get("model.1.weight")
    if first is None or first.dim() not in (4, 5) or first.shape[-1] != 7:
        return None
    dims = conv_rank(first)
    top = _indices(state, r"model\.(\d+)\.weight$")
    sevens = [i for i in top if i != 1 and state[f"model.{i}.weight"].dim() == first.dim()
              and state[f"model.{i}.weight"].shape[-1] == 7]
    if not sevens:
        return None
    last = state[f"model.{max(sevens)}.weight"]
    blocks = _indices(state, r"model\.(\d+)\.conv_block\.")
    structure = {"in_channels": int(first.shape[1]), "out_channels": int(last.shape[0]), "ngf": int(first.shape[0]),
                 "n_blocks": len(blocks), "spatial_dims": dims, "padded_blocks": None, "use_dropout": False}
    if blocks:
        convs = [j for j in _indices(state, rf"model\.{blocks[0]}\.conv_block\.(\d+)\.weight$")
                 if state[f"model.{blocks[0]}.conv_block.{j}.weight"].dim() == first.dim()]
        if len(convs) == 2:
            padded = convs[0] == 1
            structure["padded_blocks"] = padded
            structure["use_dropout"] = convs[1] - convs[0] == (5 if padded else 4)
    structure["norm_hint"] = _norm_hint(state, "model.2")
    return structure


def unet_structure(state: Mapping[str, torch.Tensor]) -> Optional[Dict[str, Any]]:
    """junyanz's nested U-Net: ``model.model.0`` the outermost 4-wide down convolution, each level's submodule
    under ``model.1`` (outermost) or ``model.3`` (the others)."""
    first, up = state.get("model.model.0.weight"), state.get("model.model.3.weight")
    if first is None or up is None or first.dim() not in (4, 5) or first.shape[-1] != 4:
        return None
    levels, prefix = 1, "model.model.1.model."
    while any(k.startswith(prefix) for k in state):
        levels += 1
        prefix += "3.model."
    return {"in_channels": int(first.shape[1]), "out_channels": int(up.shape[1]), "ngf": int(first.shape[0]),
            "num_downs": levels, "spatial_dims": conv_rank(first),
            "norm_hint": _norm_hint(state, "model.model.1.model.2")}


def vnet_structure(state: Mapping[str, torch.Tensor]) -> Optional[Dict[str, Any]]:
    """ganslate's V-Net: ``in_ab.conv1``, ``downs.K``/``ups.K`` with ``core.sequence.N`` couplings, ``out_ab``."""
    first, out = state.get("in_ab.conv1.weight"), state.get("out_ab.conv2.weight")
    if first is None or out is None or first.dim() not in (4, 5):
        return None

    def blocks(kind: str) -> List[int]:
        return [len(_indices(state, rf"{kind}\.{i}\.core\.sequence\.(\d+)\.")) for i in _indices(state, rf"{kind}\.(\d+)\.")]

    return {"in_channels": int(first.shape[1]), "out_channels": int(out.shape[0]),
            "first_layer_channels": int(first.shape[0]), "down_blocks": blocks("downs"), "up_blocks": blocks("ups"),
            "use_inverse": any(k.startswith("in_ba.") for k in state), "spatial_dims": conv_rank(first),
            "norm_hint": _norm_hint(state, "in_ab.bn1")}


def basicunet_params(state: Mapping[str, torch.Tensor]) -> Optional[Dict[str, Any]]:
    """MONAI BasicUNet: ``conv_0``, ``down_1..4``, ``upcat_4..1`` and ``final_conv``; its features are the widths."""
    names = ["conv_0.conv_0.conv.weight"] + [f"down_{i}.convs.conv_0.conv.weight" for i in range(1, 5)] + [
        "upcat_1.convs.conv_1.conv.weight", "final_conv.weight"]
    if not all(n in state for n in names):
        return None
    first = state[names[0]]
    params: Dict[str, Any] = {"spatial_dims": conv_rank(first), "in_channels": int(first.shape[1]),
                              "out_channels": int(state["final_conv.weight"].shape[0]),
                              "features": [int(state[n].shape[0]) for n in names[:6]]}
    if "conv_0.conv_0.adn.N.running_mean" in state:
        params["norm"] = "batch"
    return params


#: The built-ins whose structure the keys show, in the order they are tried.
BUILTIN_STRUCTURES: Dict[str, Callable[[Mapping[str, torch.Tensor]], Optional[Dict[str, Any]]]] = {
    "resnet_generator": resnet_structure,
    "unet_generator": unet_structure,
    "vnet_generator": vnet_structure,
}
