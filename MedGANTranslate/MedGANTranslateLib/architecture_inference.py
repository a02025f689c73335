"""Infers a card's architecture from a checkpoint: which network, whose layout, and how it is run.

The structure (channels, widths, depth) comes from the key names and shapes (:mod:`.structure_from_keys`); the
layout options the shapes cannot show alone (biases, norm, aliases) from :func:`.layout_fit.fit_builtin`, which
builds each variant on the meta device; the peers' rules (:mod:`.peer_layouts`) then keep the variants each
peer's code builds. What is left is either one architecture, or several that compute differently: then the flag
that decides between them is asked for and nothing is guessed. MONAI classes are checked against the checkpoint
the same way; TorchScript and ONNX files hold their network and only their input is read.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from .checkpoint_inspection import Checkpoint, looks_like_ganslate_checkpoint
from .errors import ImportRefused, MedGANError, first_few
from .import_options import ImportOptions, refusal
from .layers import bias_rule
from .layout_fit import fit_builtin, mismatches
from .networks import _monai_classes, build_network
from .peer_layouts import PEERS, PUBLISHERS, peer_bias, peer_fits, peer_forward, peer_paddings, peer_script_notes
from .structure_from_keys import BUILTIN_STRUCTURES, basicunet_params, conv_rank


@dataclass
class Inferred:
    """The architecture for the card, which peer's layout it is and how that was decided."""

    architecture: Dict[str, Any]
    family: str
    framework: str
    decided_by: str
    in_channels: Optional[int]
    spatial_dims: int
    notes: List[str] = field(default_factory=list)


def infer_architecture(ckpt: Checkpoint, options: ImportOptions, missing: Optional[List[str]] = None
                       ) -> Optional[Inferred]:
    """The card's architecture for a checkpoint. Refuses (:class:`ImportRefused`) what matches no layout; what
    the keys cannot decide goes into ``missing`` (the flag that decides it, and the candidates) and None is
    returned when ``missing`` is given, else it is raised."""
    collect = missing is not None
    missing = [] if missing is None else missing
    framework = options.framework
    result: Optional[Inferred] = None
    if ckpt.fmt in ("torchscript", "onnx"):
        if framework not in (None, ckpt.fmt):
            raise ImportRefused(f"{ckpt.path} is a {ckpt.fmt} file, not a {framework} checkpoint: give --framework "
                                f"{ckpt.fmt} or leave it out.")
        result = _self_contained(ckpt)
    elif framework in ("torchscript", "onnx"):
        raise ImportRefused(f"{ckpt.path} is a PyTorch checkpoint ({ckpt.fmt}), not a {framework} file.")
    elif framework == "monai":
        result = infer_monai(ckpt, options.network, options.params, missing)
    else:
        state = ckpt.state or {}
        for name, reader in BUILTIN_STRUCTURES.items():
            structure = reader(state)
            if structure is None:
                continue
            try:
                result = _builtin(ckpt, name, structure, options)
            except _Undecided as undecided:
                missing.append(undecided.message)
            break
        else:
            if options.network or options.params or basicunet_params(state) is not None:
                result = infer_monai(ckpt, options.network, options.params, missing,
                                     decided_by="the keys (a MONAI network)")
            else:
                raise ImportRefused(
                    f"Checkpoint {ckpt.path} holds {len(state)} tensors (keys {first_few(list(state))}) that match "
                    "none of the layouts models import reads: a ResNet (model.1.weight, a 7-wide stem convolution), a "
                    "U-Net (model.model.0.weight, nested model.model.1.model...), a V-Net (in_ab.conv1.weight, "
                    "downs.K, ups.K) of junyanz, davidiommi or ganslate, or MONAI's BasicUNet. For another MONAI "
                    "network give --framework monai --network NAME --params JSON; for anything else export the "
                    "network to TorchScript or ONNX in your training environment and import that file."
                )
    if result is None and not collect:
        raise refusal(missing)
    return result


def infer_monai(ckpt: Checkpoint, network: Optional[str], params: Optional[Mapping[str, Any]],
                missing: List[str], decided_by: str = "--framework monai") -> Optional[Inferred]:
    """A class of monai.networks.nets built with ``params`` on the meta device, whose keys and shapes must be
    exactly the checkpoint's. BasicUNet is recognised by its keys; for other classes a missing --network or
    --params goes into ``missing`` and None is returned."""
    state = ckpt.state or {}
    inferred = basicunet_params(state)
    notes: List[str] = []
    if network is None and params is None and inferred is not None:
        network, params = "BasicUNet", inferred
        notes.append("MONAI BasicUNet recognised by its keys; its features read from the weights")
    if network is None:
        missing.append("--network NAME: the monai.networks.nets class the checkpoint was saved from (e.g. UNet, "
                       "SegResNet, SwinUNETR); its keys begin " + first_few(list(state), 4))
    if params is None:
        missing.append("--params JSON: that class's keyword arguments as in training, e.g. '{\"spatial_dims\": 3, "
                       "\"in_channels\": 1, \"out_channels\": 1, \"channels\": [16, 32, 64], \"strides\": [2, 2]}'")
    if network is None or params is None:
        return None
    classes = _monai_classes()
    if network not in classes:
        raise ImportRefused(f"--network {network!r} is not a class of monai.networks.nets.")
    arch = {"type": "monai", "name": network, "params": dict(params)}
    try:
        with torch.device("meta"):
            net = build_network(arch)
    except MedGANError as exc:
        raise ImportRefused(f"MONAI {network} cannot be built with --params {json.dumps(dict(params))}: {exc}") from exc
    except Exception:  # some networks compute at construction; the CPU can
        net = build_network(arch)
    labels = ("missing keys", "unexpected keys", "shape mismatches")
    problems = [f"{label}: {first_few(keys)}" for label, keys in zip(labels, mismatches(net, state)) if keys]
    if problems:
        raise ImportRefused(
            f"Checkpoint {ckpt.path} does not fit MONAI {network} with params {json.dumps(dict(params))}: "
            + "; ".join(problems) + ". Give the --network and --params the network was trained with.")
    convs = [v for k, v in state.items() if k.endswith("weight") and v.dim() in (4, 5)]
    dims = int(params.get("spatial_dims", conv_rank(convs[0]) if convs else 3))
    in_channels = params.get("in_channels")
    return Inferred(arch, f"MONAI {network}", "monai", decided_by, int(in_channels) if in_channels else None, dims,
                    notes)


_FAMILIES = {
    "resnet_generator": "ResNet",
    "unet_generator": "U-Net",
    "vnet_generator": "V-Net",
}

_PARAM_ORDER = ("in_channels", "out_channels", "ngf", "n_blocks", "num_downs", "first_layer_channels", "down_blocks",
                "up_blocks", "norm", "padding", "edge_padding", "use_dropout", "bias", "encoder_alias", "use_inverse",
                "direction", "spatial_dims")


@dataclass
class _Candidate:
    """A card architecture that fits the keys, as ``framework``'s code builds it."""

    framework: str
    architecture: Dict[str, Any]


class _Undecided(Exception):
    """The keys fit several layouts that compute different things: the message says which, and what flag
    decides."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _builtin(ckpt: Checkpoint, name: str, structure: Dict[str, Any], options: ImportOptions) -> Inferred:
    """A built-in network: the layout variants that fit the keys, those the peers' code builds, then one decision."""
    params = _asked_params(ckpt, name, structure, options)
    fits = _fitting_variants(ckpt, name, structure, params, options.norm)
    frameworks, decided_by = _possible_peers(ckpt, name, structure, options.framework)
    candidates = _candidates(ckpt, name, structure, fits, frameworks, options)
    return _decide(ckpt, name, structure, candidates, decided_by, options)


def _asked_params(ckpt: Checkpoint, name: str, structure: Mapping[str, Any], options: ImportOptions
                  ) -> Dict[str, Any]:
    """The structure read from the keys, with what the flags add to it (norm, dropout, direction)."""
    params = {k: v for k, v in structure.items() if k not in ("norm_hint", "padded_blocks")}
    params["norm"] = options.norm or structure["norm_hint"]
    if name == "unet_generator" and options.dropout:
        params["use_dropout"] = True  # dropout layers hold no weights: the keys cannot show them
    if options.direction is not None:
        if name != "vnet_generator" or not structure["use_inverse"]:
            raise ImportRefused(
                f"--direction {options.direction}: only a ganslate V-Net with its B-to-A layers (in_ba.*) can run "
                f"the other way; {ckpt.path.name} is {_describe_structure(name, structure)}.")
        params["direction"] = options.direction
    if name == "resnet_generator" and options.dropout and not structure["use_dropout"]:
        raise ImportRefused(
            f"--dropout was given, but the checkpoint's residual blocks hold no dropout layer (their second "
            f"convolution follows the first directly): {_describe_structure(name, structure)} trained without "
            "dropout has none to keep active. Leave out --dropout."
        )
    return params


def _fitting_variants(ckpt: Checkpoint, name: str, structure: Mapping[str, Any], params: Mapping[str, Any],
                      norm: Optional[str]) -> List[Dict[str, Any]]:
    """The layout variants of ``params`` with exactly the checkpoint's keys and shapes (of ``norm`` when given);
    refuses, naming the differences, when there is none."""
    state = ckpt.state or {}
    fits = fit_builtin(name, params, state)
    if norm:
        fits = [f for f in fits if f["norm"] == norm]
    if not fits:
        with torch.device("meta"):
            try:
                net = build_network({"type": "builtin", "name": name, "params": params})
                missing, unexpected, shapes = mismatches(net, state)
            except MedGANError:
                missing, unexpected, shapes = [], [], []
        found = "; ".join(f"{label}: {first_few(keys)}" for label, keys in
                          (("missing", missing), ("unexpected", unexpected), ("shape mismatches", shapes)) if keys)
        told = f" with --norm {norm}" if norm else ""
        raise ImportRefused(
            f"Checkpoint {ckpt.path} looks like {_describe_structure(name, structure)}, but no layout of the "
            f"built-in {name}{told} has exactly its keys and shapes" + (f" ({found})" if found else "")
            + ". It may be a modified network: export it to TorchScript or ONNX in your training environment and "
            "import that file (--framework torchscript|onnx)."
        )
    return fits


def _possible_peers(ckpt: Checkpoint, name: str, structure: Mapping[str, Any], framework: Optional[str]
                    ) -> Tuple[List[str], str]:
    """The peers whose code may have trained it, and what said so: --framework, ganslate's way of saving, or
    every peer that publishes the layout."""
    publishers = PUBLISHERS[name]
    if framework in PEERS and framework not in publishers:
        raise ImportRefused(
            f"Checkpoint {ckpt.path} is {_describe_structure(name, structure)}, a layout {framework} does "
            f"not publish (it is {', '.join(publishers)}'s). Give --framework {'|'.join(publishers)}."
        )
    if framework in PEERS:
        return [framework], "--framework"
    if looks_like_ganslate_checkpoint(ckpt) and "ganslate" in publishers:
        return ["ganslate"], (f"the checkpoint holds {', '.join(ckpt.container[:6])}: networks and optimisers, "
                              "as ganslate saves")
    return list(publishers), "the weights' layout"


def _candidates(ckpt: Checkpoint, name: str, structure: Mapping[str, Any], fits: List[Dict[str, Any]],
                frameworks: List[str], options: ImportOptions) -> List[_Candidate]:
    """The card architectures the peers' code builds among the fitting variants; refuses when it builds none."""
    dims = structure["spatial_dims"]
    candidates: List[_Candidate] = []
    for framework in frameworks:
        for variant in fits:
            if not peer_fits(framework, name, variant):
                continue
            arch_params = dict(variant)
            if name == "resnet_generator":
                padding, edge = peer_paddings(framework, dims)
                arch_params["padding"] = padding if structure["padded_blocks"] is not False else "zeros"
                arch_params["edge_padding"] = edge
            arch = {"type": "builtin", "name": name, "params": _tidy(arch_params)}
            forward = peer_forward(framework, bool(variant.get("use_dropout")), options.norm_statistics,
                                   options.dropout)
            if forward:
                arch["forward"] = forward
            candidates.append(_Candidate(framework, arch))
    if not candidates:
        said = options.framework or " or ".join(frameworks)
        wanted = "; ".join(f"{fw}: biases on {', '.join(k for k, v in peer_bias(fw, name, f['norm']).items() if v) or 'no'} "
                           f"layers with norm {f['norm']}" for fw in frameworks for f in fits[:1])
        others = [fw for fw in PUBLISHERS[name] if fw not in frameworks and any(peer_fits(fw, name, v) for v in fits)]
        raise ImportRefused(
            f"Checkpoint {ckpt.path} is {_describe_structure(name, structure)} whose weights fit "
            f"{' or '.join(_describe_fit(f) for f in fits[:3])}, which is not how {said} builds it ({wanted})."
            + (f" It is the layout of {', '.join(others)}: give --framework {'|'.join(others)}." if others else
               " Check --framework and --norm, or export the network to TorchScript or ONNX and import that.")
        )
    return candidates


def _decide(ckpt: Checkpoint, name: str, structure: Mapping[str, Any], candidates: List[_Candidate],
            decided_by: str, options: ImportOptions) -> Inferred:
    """The one architecture all candidates agree on; when they differ, :class:`_Undecided` names the flag that
    decides between them and what each would make of the network."""
    groups: Dict[str, List[_Candidate]] = {}
    for c in candidates:
        groups.setdefault(json.dumps(c.architecture, sort_keys=True), []).append(c)
    if len(groups) > 1:
        archs = [g[0].architecture for g in groups.values()]
        varying = sorted({k for a in archs for k in set(a["params"]) | {"forward"}
                          if any(a["params"].get(k) != archs[0]["params"].get(k) for a in archs)
                          or (k == "forward" and any(a.get("forward") != archs[0].get("forward") for a in archs))})
        lines = []
        for group in groups.values():
            arch = group[0].architecture
            shown = [f"{k} {arch['params'].get(k, '(default)')}" for k in varying if k != "forward"]
            if "forward" in varying:
                forward = arch.get("forward", {})
                shown.append("each window's own norm statistics" if forward.get("norm_statistics") == "window"
                             else "eval mode")
            lines.append(f"{'/'.join(c.framework for c in group)} ({', '.join(shown)})")
        frameworks = sorted({c.framework for c in candidates})
        norms = sorted({c.architecture["params"]["norm"] for c in candidates})
        if len(frameworks) > 1:
            why = ("padding holds no weights, and with the wrong one the network loads and computes something else"
                   if name == "resnet_generator" else "its weights fit layouts of several that compute differently")
            fix = f"--framework {'|'.join(frameworks)} (which code trained it: {why})"
        else:
            fix = f"--norm {'|'.join(norms)} (the norm it was trained with)"
        raise _Undecided(
            f"{fix}: {ckpt.path.name} is {_describe_structure(name, structure)} that fits " + "; ".join(lines))
    chosen = next(iter(groups.values()))
    frameworks = [c.framework for c in chosen]
    arch = chosen[0].architecture
    notes = peer_script_notes(name, frameworks, arch, bool(options.norm_statistics), options.dropout)
    if len(frameworks) > 1:
        decided_by = f"the weights' layout, which {' and '.join(frameworks)} build alike"
    return Inferred(arch, _FAMILIES[name], " or ".join(frameworks), decided_by, structure["in_channels"],
                    structure["spatial_dims"], notes)


def _tidy(variant: Mapping[str, Any]) -> Dict[str, Any]:
    """The card's params: the layout options written only where they differ from the built-in's default."""
    params = dict(variant)
    rule = bias_rule(params["norm"])
    differing = {k: v for k, v in params.pop("bias").items() if rule[k] != v}
    if differing:
        params["bias"] = differing
    for flag in ("encoder_alias", "use_inverse", "use_dropout"):
        if not params.get(flag):
            params.pop(flag, None)
    if params.get("direction") == "forward":
        params.pop("direction")
    return {k: params[k] for k in sorted(params, key=lambda k: _PARAM_ORDER.index(k) if k in _PARAM_ORDER else 99)}


def _describe_structure(name: str, structure: Mapping[str, Any]) -> str:
    """``a 3D ResNet (in_channels 1, ...)``: what the keys showed, for refusals."""
    keys = [k for k in _PARAM_ORDER if k in structure and k != "spatial_dims" and structure[k] is not False]
    shown = ", ".join(f"{k} {structure[k]}" for k in keys)
    return f"a {structure['spatial_dims']}D {_FAMILIES[name]} ({shown})"


def _describe_fit(variant: Mapping[str, Any]) -> str:
    """``norm instance, biases on conv layers``: a fitting variant's layout options, for refusals."""
    bias = variant["bias"]
    with_bias = [k for k in ("conv", "transposed", "output") if bias[k]]
    flags = [f for f in ("encoder_alias", "use_inverse") if variant.get(f)]
    return (f"norm {variant['norm']}, biases on {', '.join(with_bias) or 'no'} layers"
            + (f", {', '.join(flags)}" if flags else ""))


def _self_contained(ckpt: Checkpoint) -> Inferred:
    """TorchScript and ONNX files hold the network: its input rank and channels are read where they can be."""
    dims, channels, notes = None, None, []
    if ckpt.fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ImportRefused("Importing an ONNX model needs onnxruntime: pip install onnxruntime.") from exc
        try:
            session = ort.InferenceSession(str(ckpt.path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's errors derive from Exception directly
            raise ImportRefused(f"{ckpt.path} is not a loadable ONNX model: {exc}") from exc
        shape = session.get_inputs()[0].shape
        if len(shape) not in (4, 5):
            raise ImportRefused(f"ONNX model {ckpt.path} takes a rank-{len(shape)} input {shape}; the engine gives "
                                "N x C x H x W (2D) or N x C x D x H x W (3D) windows.")
        dims = len(shape) - 2
        channels = shape[1] if isinstance(shape[1], int) else None
        notes.append(f"ONNX input {session.get_inputs()[0].name} {shape}")
    else:
        from .network_checks import network_spatial_dims

        try:
            module = torch.jit.load(str(ckpt.path), map_location="cpu")
        except RuntimeError as exc:
            raise ImportRefused(f"{ckpt.path} is not a loadable TorchScript archive: {exc}") from exc
        dims = network_spatial_dims(module)
        for sub in module.modules():
            name = getattr(sub, "original_name", "")
            if re.fullmatch(r"Conv[23]d", str(name)) and hasattr(sub, "weight"):
                channels = int(sub.weight.shape[1])
                break
    return Inferred({"type": ckpt.fmt}, "TorchScript" if ckpt.fmt == "torchscript" else "ONNX", ckpt.fmt,
                    "the file's format", channels, dims or 3, notes)
