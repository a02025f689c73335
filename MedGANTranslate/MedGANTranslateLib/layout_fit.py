"""Finds the built-in layout options under which a checkpoint's keys and shapes match exactly.

Checkpoints from the peers' code differ from a card's layout in options that leave no trace in the shapes of
most tensors (a bias here, a norm there, ganslate's duplicated ``encoder`` keys). When a checkpoint does not fit
the card, these options are searched on the meta device (no memory, no weights) so the refusal can say what the
card would need; ``models import`` uses the same search.
"""
from __future__ import annotations

import itertools
from typing import Any, Dict, Iterator, List, Mapping, Tuple

import torch
from torch import nn

from .errors import CardError
from .layers import BIAS_KINDS, NORMS, bias_rule

_RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")
#: Yes/no layout options per built-in that show in the keys.
_FLAGS = {"resnet_generator": ("encoder_alias",), "vnet_generator": ("use_inverse",)}


def strip_module_prefix(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The keys as the bare network names them: DataParallel saves every one under ``module.``."""
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def clean_state_dict(net: nn.Module, state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Strips DataParallel's ``module.`` prefix and drops the running-stat buffers of InstanceNorm layers that keep
    none here (old PyTorch versions, and ``track_running_stats=True`` in old junyanz and in davidiommi, saved
    them): such a layer uses each window's own statistics, as the peers' code does outside eval mode.
    :func:`instance_norm_statistics` finds the files where that choice matters."""
    state = strip_module_prefix(state)
    stale = {
        f"{name}.{buf}"
        for name, module in net.named_modules()
        if isinstance(module, nn.modules.instancenorm._InstanceNorm) and not module.track_running_stats
        for buf in _RUNNING_STATS
    }
    return {k: v for k, v in state.items() if k not in stale}


def instance_norm_statistics(net: nn.Module, state: Mapping[str, torch.Tensor]) -> Tuple[List[str], bool]:
    """Names of ``net``'s InstanceNorm layers for which ``state`` holds running statistics, and whether any of them
    differs from the initial ones (mean 0, variance 1). The peer's code uses them in eval mode and ignores them in
    train mode, so trained statistics give two different outputs and only the card can say which was run."""
    state = strip_module_prefix(state)
    names, trained = [], False
    for name, module in net.named_modules():
        mean, var = state.get(f"{name}.running_mean"), state.get(f"{name}.running_var")
        if isinstance(module, nn.modules.instancenorm._InstanceNorm) and mean is not None and var is not None:
            names.append(name)
            trained = trained or bool(mean.abs().max() > 0 or (var - 1).abs().max() > 0)
    return names, trained


def track_instance_statistics(net: nn.Module, names: List[str]) -> None:
    """Gives the named InstanceNorm layers running-statistics buffers, so saved statistics load and are used in
    eval mode (PyTorch's ``track_running_stats=True``)."""
    modules = dict(net.named_modules())
    for name in names:
        norm = modules[name]
        norm.track_running_stats = True
        norm.register_buffer("running_mean", torch.zeros(norm.num_features))
        norm.register_buffer("running_var", torch.ones(norm.num_features))
        norm.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))


def mismatches(net: nn.Module, state: Mapping[str, torch.Tensor]) -> Tuple[List[str], List[str], List[str]]:
    """(missing, unexpected, shape mismatches) of ``state`` against ``net``, in the network's key order."""
    state = clean_state_dict(net, state)
    expected = net.state_dict()
    # BatchNorm fills a missing num_batches_tracked itself (checkpoints from before PyTorch 0.4.1 lack it)
    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} (file {tuple(state[k].shape)}, network {tuple(v.shape)})"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    return missing, unexpected, shapes


def _effective(name: str, params: Mapping[str, Any]) -> Dict[str, Any]:
    """``params`` with the layout options spelled out as the built-in applies them."""
    norm = params.get("norm", "batch" if name == "unet_generator" else "instance")
    effective = dict(params, norm=norm, bias=bias_rule(norm, params.get("bias")))
    for flag in _FLAGS.get(name, ()):
        effective[flag] = bool(params.get(flag, False))
    return effective


def _options(name: str, params: Mapping[str, Any]) -> Iterator[Dict[str, Any]]:
    """Variants of ``params`` over the options that keys and shapes can tell apart, the card's own first."""
    own = _effective(name, params)
    norms = [own["norm"]] + [n for n in NORMS if n != own["norm"]]
    biases = [own["bias"]] + [b for b in (dict(zip(BIAS_KINDS, c)) for c in itertools.product((False, True), repeat=3))
                              if b != own["bias"]]
    flags = _FLAGS.get(name, ())
    for norm, bias, *values in itertools.product(norms, biases, *([own[f], not own[f]] for f in flags)):
        variant = dict(own, norm=norm, bias=bias, **dict(zip(flags, values)))
        if not (variant.get("direction") == "inverse" and not variant.get("use_inverse")):
            yield variant


def fit_builtin(name: str, params: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> List[Dict[str, Any]]:
    """The variants of a built-in's ``params`` whose keys and shapes are exactly those of ``state``, fewest
    changes first. Structural parameters (channels, widths, depth, dimensionality) are taken as given. Several
    fits mean the keys cannot tell them apart (e.g. no norm vs. instance norm without affine weights)."""
    from .networks import build_network

    fits = []
    for variant in _options(name, params):
        with torch.device("meta"):
            try:
                net = build_network({"type": "builtin", "name": name, "params": variant})
            except CardError:  # a variant the network rejects is not a fit
                continue
        if not any(mismatches(net, state)):
            fits.append(variant)
    own = _effective(name, params)
    return sorted(fits, key=lambda v: sum(own.get(k) != x for k, x in v.items()))


def describe_changes(name: str, params: Mapping[str, Any], fitted: Mapping[str, Any]) -> str:
    """The card edits that turn ``params`` into ``fitted``, e.g. ``norm 'batch', bias {...}``."""
    own = _effective(name, params)
    return ", ".join(f"{key} {value!r}" for key, value in fitted.items() if own.get(key) != value)
