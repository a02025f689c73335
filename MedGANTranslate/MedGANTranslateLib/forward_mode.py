"""Runs a loaded network the way its training code's own test script does, when that is not eval mode.

junyanz's ``test.py`` without ``--eval`` and davidiommi's ``test.py`` never call ``eval()``: batch norm then
normalises with the statistics of the batch it is given (one window: those test scripts use a batch of one) and
dropout stays on. The card's ``architecture.forward`` says so; these layers reproduce it whatever mode the engine
puts the network in, and whatever number of windows it sends per call.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from torch import nn
from torch.nn import functional as F

from .fastconv import replace_layers

NORM_STATISTICS = ("running", "window")
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


class WindowStatisticsNorm(nn.Module):
    """A batch or instance norm that normalises each window by its own statistics, then applies the layer's
    affine weight and bias: what batch norm in train mode computes on a batch of one window."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.weight: Optional[nn.Parameter] = norm.weight
        self.bias: Optional[nn.Parameter] = norm.bias
        self.eps = norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)


class ActiveDropout(nn.Module):
    """Keeps the wrapped dropout layer in train mode, however the network around it is switched."""

    def __init__(self, dropout: nn.Module) -> None:
        super().__init__()
        self.dropout = dropout.train()

    def train(self, mode: bool = True) -> "ActiveDropout":
        self.training = True
        self.dropout.train(True)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(x)


def apply_forward_mode(network: nn.Module, forward: Optional[Mapping[str, Any]]) -> nn.Module:
    """Applies the card's ``architecture.forward`` to a loaded network, in place; returns it in eval mode.
    Call it after the weights are loaded: the replacement layers share the loaded parameters."""
    forward = forward or {}
    statistics = forward.get("norm_statistics", "running")
    if statistics not in NORM_STATISTICS:
        raise ValueError(f"norm_statistics must be one of {', '.join(NORM_STATISTICS)}, got {statistics!r}")
    if statistics == "window":
        replace_layers(network, lambda m: isinstance(m, _NORMS), WindowStatisticsNorm)
    if forward.get("dropout", False):
        replace_layers(network, lambda m: isinstance(m, nn.modules.dropout._DropoutNd), ActiveDropout)
    return network.eval()
