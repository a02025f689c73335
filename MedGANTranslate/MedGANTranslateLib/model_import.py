"""``medgan-translate models import``: a checkpoint from a peer's training code becomes a model folder.

The checkpoint is read without running any of its code (``torch.load(weights_only=True)``, safetensors, or a
TorchScript/ONNX file that the engine runs as it is); the architecture and its parameters are read from the key
names and tensor shapes, and :func:`.layout_fit.fit_builtin` finds the layout options (biases, norm, aliases) that
fit exactly. What the weights cannot show is asked for by flags and never guessed silently: padding holds no
weights, so a junyanz, davidiommi or ganslate ResNet loads into any of their layouts and computes something else
in the wrong one; the framework decides it. Nothing is written where the model is to go until the card validates
and one forward pass (the probe) has run: the folder is staged beside it and renamed into place. The source
checkpoint is copied, never modified.

The card then says how the network was trained to be run, but only its training code can prove it:
``medgan-translate models check`` compares the bare network's output with one saved there.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import re
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch

from .card import RESEARCH_ONLY, ModelCard, load_card
from .errors import MedGANError
from .layers import NORMS, bias_rule

#: Values of ``--framework``: the peers whose layouts are built in, MONAI (a class of monai.networks.nets, or a
#: bundle folder) and the self-contained formats.
FRAMEWORKS = ("junyanz", "ganslate", "davidiommi", "monai", "monai-bundle", "torchscript", "onnx")
PEERS = ("junyanz", "davidiommi", "ganslate")
GENERATOR_KEYS = ("G_AB", "G")
PLANES = ("axial", "coronal", "sagittal")
MODALITIES_IN = ("MR", "CT", "CBCT", "PET", "SPECT", "US")
MODALITIES_OUT = ("MR", "CT", "CBCT", "PET", "SPECT")
NORM_STATISTICS = ("running", "window")
DEFAULT_VERSION = "0.1.0"
#: Size multiple assumed for a TorchScript or ONNX network when --divisible-by is not given: a multiple of what
#: 5-level U-Nets need is harmless for smaller ones (the engine pads to it).
DEFAULT_SELF_CONTAINED_DIVISOR = 32
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
_VERSION = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$")
_SHOW = 6


class ImportRefused(MedGANError):
    """A checkpoint ``models import`` cannot turn into a model folder as asked: unreadable, matching no layout,
    a layout the keys cannot decide, or answers missing. The message says what was found and what to pass."""

    kind = "import"


@dataclass
class ImportOptions:
    """The answers the weights cannot give (the command line's flags)."""

    framework: Optional[str] = None
    key: Optional[str] = None
    model_id: Optional[str] = None
    version: str = DEFAULT_VERSION
    title: Optional[str] = None
    description: Optional[str] = None
    inputs: Sequence[str] = ()
    output_modality: Optional[str] = None
    output_range: Optional[Sequence[float]] = None
    network_range: Sequence[float] = (-1.0, 1.0)
    spacing: Optional[Sequence[float]] = None
    orientation: Optional[str] = None
    normalization: Sequence[str] = ()
    roi: Optional[Sequence[int]] = None
    planes: Sequence[str] = ()
    site: str = ""
    license: Optional[str] = None
    intended_use: Optional[str] = None
    norm: Optional[str] = None
    norm_statistics: Optional[str] = None
    dropout: bool = False
    network: Optional[str] = None
    params: Optional[Mapping[str, Any]] = None
    divisible_by: Optional[int] = None
    direction: Optional[str] = None


@dataclass
class Checkpoint:
    """What was read from the source: the weights format the card will name, the generator's tensors (``module.``
    stripped) and, for nested checkpoints, the key they are under and the other keys found."""

    path: Path
    fmt: str
    state: Optional[Dict[str, torch.Tensor]] = None
    key: Optional[str] = None
    container: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


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


@dataclass
class BundleSettings:
    """What a MONAI bundle's inference config says in plain values (None where it does not)."""

    network: str
    params: Dict[str, Any]
    weights: Path
    config: Path
    orientation: Optional[str] = None
    spacing: Optional[List[float]] = None
    normalization: Optional[Dict[str, Any]] = None
    roi: Optional[List[int]] = None
    notes: List[str] = field(default_factory=list)


@dataclass
class ImportResult:
    card: ModelCard
    source: Path
    framework: str
    family: str
    decided_by: str
    probe: Dict[str, Any]
    notes: List[str]

    @property
    def check_command(self) -> str:
        return f"medgan-translate models check {self.card.folder} --tensor x.npy --expect y.npy"

    def to_dict(self) -> Dict[str, Any]:
        return {
            "card": str(self.card.path),
            "folder": str(self.card.folder),
            "id": self.card.id,
            "version": self.card.version,
            "title": self.card.title,
            "license": self.card.data.get("license", ""),
            "intended_use": self.card.intended_use,
            "source": str(self.source),
            "framework": self.framework,
            "family": self.family,
            "decided_by": self.decided_by,
            "architecture": self.card.architecture,
            "weights": {"file": self.card.weights["file"], "format": self.card.weights["format"],
                        "key": self.card.weights.get("key"), "sha256": self.card.sha256},
            "probe": self.probe,
            "notes": list(self.notes),
            "next": self.check_command,
        }


# --- reading the checkpoint ---------------------------------------------------------------------------------


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _strip_module(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def _first(items: Sequence[str], n: int = _SHOW) -> str:
    items = list(items)
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names)


def _is_safetensors(path: Path) -> bool:
    """A safetensors file starts with the little-endian length of a JSON header, then ``{``."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
            size = path.stat().st_size
    except OSError:
        return False
    if len(head) < 9:
        return False
    length = int.from_bytes(head[:8], "little")
    return 0 < length < size and head[8:9] == b"{"


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = str(exc)
        if "Unsupported global" in detail:
            needed = detail.split("Unsupported global:", 1)[1].split(" was not", 1)[0].replace("GLOBAL", "").strip()
            raise ImportRefused(
                f"Checkpoint {path} was refused: it needs Python objects unpickled ({needed}), and models import "
                "reads only weights-only checkpoints (tensors in plain dicts), so that no file can run code. Convert "
                "it once in the environment you trained in, which you trust: load it there and save the generator's "
                "weights with torch.save(net.state_dict(), 'generator.pth') (or safetensors), then import that file."
            ) from exc
        raise ImportRefused(f"Checkpoint {path} is not a readable PyTorch checkpoint: {exc}") from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ImportRefused(f"Checkpoint {path} is not a readable PyTorch checkpoint: {exc}") from exc


def _pick_generator(obj: Mapping[str, Any], path: Path, key: Optional[str]) -> Tuple[Dict[str, torch.Tensor], str]:
    keys = [str(k) for k in obj]
    nested = [k for k in keys if _is_state_dict(obj[k])]
    if key is not None:
        if key not in keys or not _is_state_dict(obj[key]):
            raise ImportRefused(
                f"Checkpoint {path} has no state_dict of tensors under --key {key!r}; keys found: {_first(keys, 12)}"
                + (f" (state_dicts under: {', '.join(nested)})." if nested else ".")
            )
        return dict(obj[key]), key
    chosen = next((k for k in GENERATOR_KEYS if k in nested), None)
    if chosen is None and len(nested) == 1:
        chosen = nested[0]
    if chosen is None:
        raise ImportRefused(
            f"Checkpoint {path} bundles several things (keys {_first(keys, 12)}) and none is a generator under "
            f"{' or '.join(GENERATOR_KEYS)}. Give --key with the generator's key"
            + (f" (state_dicts found under: {', '.join(nested)})." if nested else "; no key holds a state_dict of tensors.")
        )
    return dict(obj[chosen]), chosen


def read_checkpoint(path: "str | Path", key: Optional[str] = None) -> Checkpoint:
    """Reads the source without running any of its code. Formats: safetensors, a PyTorch state_dict (also one
    saved from DataParallel, ``module.``), a dict of networks (ganslate: ``G_AB``/``G`` or ``key``), TorchScript
    and ONNX files (read by the engine as they are)."""
    path = Path(path)
    if not path.is_file():
        raise ImportRefused(f"Checkpoint {path} does not exist or is not a file.")
    if path.suffix.lower() == ".onnx":
        return Checkpoint(path, "onnx")
    if _is_torchscript(path):
        return Checkpoint(path, "torchscript")
    if path.suffix.lower() == ".safetensors" or _is_safetensors(path):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise ImportRefused(f"Checkpoint {path} is not a readable safetensors file: {exc}") from exc
        return Checkpoint(path, "safetensors", _strip_module(state))
    obj = _torch_load(path)
    if _is_state_dict(obj):
        return Checkpoint(path, "state_dict", _strip_module(obj))
    if not isinstance(obj, Mapping):
        raise ImportRefused(f"Checkpoint {path} holds a {type(obj).__name__}, not a state_dict or a dict of them.")
    state, chosen = _pick_generator(obj, path, key)
    notes = [] if key else [f"generator weights taken from the checkpoint's key {chosen!r} (others: "
                            f"{_first([str(k) for k in obj if k != chosen], 8) or 'none'}); --key picks another"]
    return Checkpoint(path, "ganslate", _strip_module(state), chosen, [str(k) for k in obj], notes)


def _looks_like_ganslate_checkpoint(ckpt: Checkpoint) -> bool:
    """ganslate's save_checkpoint writes every network and the optimisers: G_AB, G_BA, D_A, D_B, optimizer_G..."""
    found = set(ckpt.container)
    return bool(found & {"G_AB", "G"}) and bool(found & {"D_A", "D_B", "D", "optimizer_G", "optimizer_D"})


# --- the peers' layouts -------------------------------------------------------------------------------------


def _conv_rank(tensor: torch.Tensor) -> int:
    return tensor.dim() - 2


def _indices(state: Mapping[str, Any], pattern: str) -> List[int]:
    found = set()
    regex = re.compile(pattern)
    for k in state:
        m = regex.match(k)
        if m:
            found.add(int(m.group(1)))
    return sorted(found)


def _norm_hint(state: Mapping[str, torch.Tensor], prefix: str) -> str:
    if f"{prefix}.weight" in state:
        return "batch"
    return "instance"


def _resnet_structure(state: Mapping[str, torch.Tensor]) -> Optional[Dict[str, Any]]:
    """The structural parameters of a junyanz-style ResNet generator: ``model.1`` a 7-wide stem convolution."""
    first = state.get("model.1.weight")
    if first is None or first.dim() not in (4, 5) or first.shape[-1] != 7:
        return None
    dims = _conv_rank(first)
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


def _unet_structure(state: Mapping[str, torch.Tensor]) -> Optional[Dict[str, Any]]:
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
            "num_downs": levels, "spatial_dims": _conv_rank(first),
            "norm_hint": _norm_hint(state, "model.model.1.model.2")}


def _vnet_structure(state: Mapping[str, torch.Tensor]) -> Optional[Dict[str, Any]]:
    """ganslate's V-Net: ``in_ab.conv1``, ``downs.K``/``ups.K`` with ``core.sequence.N`` couplings, ``out_ab``."""
    first, out = state.get("in_ab.conv1.weight"), state.get("out_ab.conv2.weight")
    if first is None or out is None or first.dim() not in (4, 5):
        return None

    def blocks(kind: str) -> List[int]:
        return [len(_indices(state, rf"{kind}\.{i}\.core\.sequence\.(\d+)\.")) for i in _indices(state, rf"{kind}\.(\d+)\.")]

    return {"in_channels": int(first.shape[1]), "out_channels": int(out.shape[0]),
            "first_layer_channels": int(first.shape[0]), "down_blocks": blocks("downs"), "up_blocks": blocks("ups"),
            "use_inverse": any(k.startswith("in_ba.") for k in state), "spatial_dims": _conv_rank(first),
            "norm_hint": _norm_hint(state, "in_ab.bn1")}


def _basicunet_params(state: Mapping[str, torch.Tensor]) -> Optional[Dict[str, Any]]:
    """MONAI BasicUNet: ``conv_0``, ``down_1..4``, ``upcat_4..1`` and ``final_conv``; its features are the widths."""
    names = ["conv_0.conv_0.conv.weight"] + [f"down_{i}.convs.conv_0.conv.weight" for i in range(1, 5)] + [
        "upcat_1.convs.conv_1.conv.weight", "final_conv.weight"]
    if not all(n in state for n in names):
        return None
    first = state[names[0]]
    params: Dict[str, Any] = {"spatial_dims": _conv_rank(first), "in_channels": int(first.shape[1]),
                              "out_channels": int(state["final_conv.weight"].shape[0]),
                              "features": [int(state[n].shape[0]) for n in names[:6]]}
    if "conv_0.conv_0.adn.N.running_mean" in state:
        params["norm"] = "batch"
    return params


_FAMILIES = {
    "resnet_generator": "ResNet",
    "unet_generator": "U-Net",
    "vnet_generator": "V-Net",
}
#: The peers that publish each built-in layout.
_PUBLISHERS = {"resnet_generator": PEERS, "unet_generator": PEERS, "vnet_generator": ("ganslate",)}


def _peer_bias(framework: str, name: str, norm: str) -> Dict[str, bool]:
    """Which layer kinds have a bias in the peer's own code, for its norm."""
    instance = norm == "instance"
    if framework == "ganslate" and name == "resnet_generator":
        return {"conv": instance, "transposed": True, "output": instance}
    if framework == "davidiommi" and name == "unet_generator":
        return {"conv": False, "transposed": False, "output": True}
    return bias_rule(norm)


def _peer_fits(framework: str, name: str, variant: Mapping[str, Any]) -> bool:
    """Whether a fitting variant is what the peer's code builds: its bias rule, its aliases, its dimensions."""
    dims = variant.get("spatial_dims", 3)
    if framework == "davidiommi" and dims != 3:
        return False
    if dict(variant["bias"]) != _peer_bias(framework, name, variant["norm"]):
        return False
    if name == "resnet_generator":
        return bool(variant.get("encoder_alias")) == (framework == "ganslate" and dims == 2)
    return True


def _peer_paddings(framework: str, dims: int) -> Tuple[str, str]:
    """(residual block padding, stem/output padding): the one thing about a ResNet its weights cannot show."""
    if framework == "junyanz" or (framework == "ganslate" and dims == 2):
        return "reflect", "reflect"
    return "replicate", "replicate"


_PARAM_ORDER = ("in_channels", "out_channels", "ngf", "n_blocks", "num_downs", "first_layer_channels", "down_blocks",
                "up_blocks", "norm", "padding", "edge_padding", "use_dropout", "bias", "encoder_alias", "use_inverse",
                "direction", "spatial_dims")


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


def _forward(framework: str, options: ImportOptions, active_dropout: bool) -> Dict[str, Any]:
    """How the peer's test script runs the network: davidiommi's never calls eval() (batch statistics of each
    window, dropout on); the flags override."""
    statistics = "window" if framework == "davidiommi" else "running"
    dropout = active_dropout and framework == "davidiommi"
    if options.norm_statistics:
        statistics = options.norm_statistics
    if options.dropout:
        dropout = True
    forward: Dict[str, Any] = {}
    if statistics != "running":
        forward["norm_statistics"] = statistics
    if dropout:
        forward["dropout"] = True
    return forward


@dataclass
class _Candidate:
    framework: str
    architecture: Dict[str, Any]


class _Undecided(Exception):
    """The keys fit several layouts that compute different things: ``lines`` say which and what flag decides."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _describe_structure(name: str, structure: Mapping[str, Any]) -> str:
    keys = [k for k in _PARAM_ORDER if k in structure and k != "spatial_dims" and structure[k] is not False]
    shown = ", ".join(f"{k} {structure[k]}" for k in keys)
    return f"a {structure['spatial_dims']}D {_FAMILIES[name]} ({shown})"


def _describe_fit(variant: Mapping[str, Any]) -> str:
    bias = variant["bias"]
    with_bias = [k for k in ("conv", "transposed", "output") if bias[k]]
    flags = [f for f in ("encoder_alias", "use_inverse") if variant.get(f)]
    return (f"norm {variant['norm']}, biases on {', '.join(with_bias) or 'no'} layers"
            + (f", {', '.join(flags)}" if flags else ""))


def _builtin(ckpt: Checkpoint, name: str, structure: Dict[str, Any], options: ImportOptions) -> Inferred:
    from .layout_fit import fit_builtin, mismatches
    from .networks import build_network

    state = ckpt.state or {}
    dims = structure["spatial_dims"]
    family = _FAMILIES[name]
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
    fits = fit_builtin(name, params, state)
    if options.norm:
        fits = [f for f in fits if f["norm"] == options.norm]
    if not fits:
        with torch.device("meta"):
            try:
                net = build_network({"type": "builtin", "name": name, "params": params})
                missing, unexpected, shapes = mismatches(net, state)
            except MedGANError:
                missing, unexpected, shapes = [], [], []
        found = "; ".join(f"{label}: {_first(keys)}" for label, keys in
                          (("missing", missing), ("unexpected", unexpected), ("shape mismatches", shapes)) if keys)
        told = f" with --norm {options.norm}" if options.norm else ""
        raise ImportRefused(
            f"Checkpoint {ckpt.path} looks like {_describe_structure(name, structure)}, but no layout of the "
            f"built-in {name}{told} has exactly its keys and shapes" + (f" ({found})" if found else "")
            + ". It may be a modified network: export it to TorchScript or ONNX in your training environment and "
            "import that file (--framework torchscript|onnx)."
        )
    publishers = _PUBLISHERS[name]
    if options.framework in PEERS and options.framework not in publishers:
        raise ImportRefused(
            f"Checkpoint {ckpt.path} is {_describe_structure(name, structure)}, a layout {options.framework} does "
            f"not publish (it is {', '.join(publishers)}'s). Give --framework {'|'.join(publishers)}."
        )
    if options.framework in PEERS:
        frameworks, decided_by = [options.framework], "--framework"
    elif _looks_like_ganslate_checkpoint(ckpt) and "ganslate" in publishers:
        frameworks = ["ganslate"]
        decided_by = f"the checkpoint holds {', '.join(ckpt.container[:6])}: networks and optimisers, as ganslate saves"
    else:
        frameworks, decided_by = list(publishers), "the weights' layout"
    candidates: List[_Candidate] = []
    for framework in frameworks:
        for variant in fits:
            if not _peer_fits(framework, name, variant):
                continue
            arch_params = dict(variant)
            if name == "resnet_generator":
                padding, edge = _peer_paddings(framework, dims)
                arch_params["padding"] = padding if structure["padded_blocks"] is not False else "zeros"
                arch_params["edge_padding"] = edge
            arch = {"type": "builtin", "name": name, "params": _tidy(arch_params)}
            forward = _forward(framework, options, bool(variant.get("use_dropout")))
            if forward:
                arch["forward"] = forward
            candidates.append(_Candidate(framework, arch))
    if not candidates:
        said = options.framework or " or ".join(frameworks)
        wanted = "; ".join(f"{fw}: biases on {', '.join(k for k, v in _peer_bias(fw, name, f['norm']).items() if v) or 'no'} "
                           f"layers with norm {f['norm']}" for fw in frameworks for f in fits[:1])
        others = [fw for fw in publishers if fw not in frameworks and any(_peer_fits(fw, name, v) for v in fits)]
        raise ImportRefused(
            f"Checkpoint {ckpt.path} is {_describe_structure(name, structure)} whose weights fit "
            f"{' or '.join(_describe_fit(f) for f in fits[:3])}, which is not how {said} builds it ({wanted})."
            + (f" It is the layout of {', '.join(others)}: give --framework {'|'.join(others)}." if others else
               " Check --framework and --norm, or export the network to TorchScript or ONNX and import that.")
        )
    return _decide(ckpt, name, family, structure, candidates, decided_by, options)


def _decide(ckpt: Checkpoint, name: str, family: str, structure: Mapping[str, Any], candidates: List[_Candidate],
            decided_by: str, options: ImportOptions) -> Inferred:
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
    notes: List[str] = []
    arch = chosen[0].architecture
    forward = arch.get("forward", {})
    if "junyanz" in frameworks and not options.norm_statistics and (
            arch["params"]["norm"] == "batch" or arch["params"].get("use_dropout") or name == "unet_generator"):
        notes.append("junyanz's test.py calls eval() only with --eval: if you ran it without, the network used each "
                     "image's batch statistics (and active dropout); import again with --norm-statistics window "
                     "(and --dropout for a network with dropout)")
    if forward.get("norm_statistics") == "window" and "davidiommi" in frameworks and not options.norm_statistics:
        notes.append("davidiommi's test.py never calls eval(): norm layers use each window's own statistics "
                     "(architecture.forward.norm_statistics window)")
    if forward.get("dropout"):
        notes.append("dropout stays active (architecture.forward.dropout): the output varies from run to run, "
                     "so models check cannot match it exactly")
    if name == "unet_generator" and "davidiommi" in frameworks and not options.dropout:
        notes.append("a U-Net's dropout layers hold no weights: if davidiommi's network was trained with dropout, "
                     "import again with --dropout")
    if len(frameworks) > 1:
        decided_by = f"the weights' layout, which {' and '.join(frameworks)} build alike"
    return Inferred(arch, family, " or ".join(frameworks), decided_by, structure["in_channels"],
                    structure["spatial_dims"], notes)


def _monai(ckpt: Checkpoint, network: Optional[str], params: Optional[Mapping[str, Any]],
           missing: List[str], decided_by: str = "--framework monai") -> Optional[Inferred]:
    from .layout_fit import mismatches
    from .networks import _monai_classes, build_network

    state = ckpt.state or {}
    inferred = _basicunet_params(state)
    notes: List[str] = []
    if network is None and params is None and inferred is not None:
        network, params = "BasicUNet", inferred
        notes.append("MONAI BasicUNet recognised by its keys; its features read from the weights")
    if network is None:
        missing.append("--network NAME: the monai.networks.nets class the checkpoint was saved from (e.g. UNet, "
                       "SegResNet, SwinUNETR); its keys begin " + _first(list(state), 4))
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
    problems = [f"{label}: {_first(keys)}" for label, keys in zip(("missing keys", "unexpected keys", "shape mismatches"),
                                                                   mismatches(net, state)) if keys]
    if problems:
        raise ImportRefused(
            f"Checkpoint {ckpt.path} does not fit MONAI {network} with params {json.dumps(dict(params))}: "
            + "; ".join(problems) + ". Give the --network and --params the network was trained with.")
    convs = [v for k, v in state.items() if k.endswith("weight") and v.dim() in (4, 5)]
    dims = int(params.get("spatial_dims", _conv_rank(convs[0]) if convs else 3))
    in_channels = params.get("in_channels")
    return Inferred(arch, f"MONAI {network}", "monai", decided_by, int(in_channels) if in_channels else None, dims,
                    notes)


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
        from .inference import network_spatial_dims

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
        result = _monai(ckpt, options.network, options.params, missing)
    else:
        state = ckpt.state or {}
        for name, reader in (("resnet_generator", _resnet_structure), ("unet_generator", _unet_structure),
                             ("vnet_generator", _vnet_structure)):
            structure = reader(state)
            if structure is None:
                continue
            try:
                result = _builtin(ckpt, name, structure, options)
            except _Undecided as undecided:
                missing.append(undecided.message)
            break
        else:
            if options.network or options.params or _basicunet_params(state) is not None:
                result = _monai(ckpt, options.network, options.params, missing,
                                decided_by="the keys (a MONAI network)")
            else:
                raise ImportRefused(
                    f"Checkpoint {ckpt.path} holds {len(state)} tensors (keys {_first(list(state))}) that match none "
                    "of the layouts models import reads: a ResNet (model.1.weight, a 7-wide stem convolution), a "
                    "U-Net (model.model.0.weight, nested model.model.1.model...), a V-Net (in_ab.conv1.weight, "
                    "downs.K, ups.K) of junyanz, davidiommi or ganslate, or MONAI's BasicUNet. For another MONAI "
                    "network give --framework monai --network NAME --params JSON; for anything else export the "
                    "network to TorchScript or ONNX in your training environment and import that file."
                )
    if result is None and not collect:
        raise refusal(missing)
    return result


# --- MONAI bundles ------------------------------------------------------------------------------------------

_BUNDLE_CONFIGS = ("inference.json", "inference.yaml", "inference.yml")
_PLAIN_SKIP = ("_target_", "_requires_", "_desc_", "_mode_")


def _expressions(value: Any, where: str) -> List[str]:
    """Places in a config value that would run code or refer elsewhere: ``$`` expressions, ``@`` references,
    ``%`` macros, nested ``_target_`` objects."""
    found: List[str] = []
    if isinstance(value, str):
        if value.startswith("$") or value.startswith("%") or "@" in value:
            found.append(f"{where} = {value!r}")
    elif isinstance(value, Mapping):
        if "_target_" in value:
            found.append(f"{where} = an object ({value['_target_']!r})")
        else:
            for k, v in value.items():
                found += _expressions(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found += _expressions(v, f"{where}[{i}]")
    return found


def _transforms(config: Any) -> Iterable[Mapping[str, Any]]:
    """Every dict with a ``_target_`` anywhere in the config."""
    if isinstance(config, Mapping):
        if "_target_" in config:
            yield config
        for v in config.values():
            yield from _transforms(v)
    elif isinstance(config, list):
        for v in config:
            yield from _transforms(v)


def _target_name(target: Any) -> str:
    return str(target).rsplit(".", 1)[-1]


def _plain_numbers(value: Any, n: Optional[int] = None) -> Optional[List[float]]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value] * (n or 1)
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        if n is None or len(value) == n:
            return [float(v) for v in value]
    return None


def read_bundle(folder: "str | Path") -> BundleSettings:
    """Reads a MONAI bundle's inference config without executing it: the network's class and arguments from
    ``network_def`` (only ``monai.networks.nets`` classes, only plain values), and spacing, orientation, intensity
    scaling and ROI from its transforms and inferer where they are plain values."""
    folder = Path(folder)
    config_path = next((folder / "configs" / n for n in _BUNDLE_CONFIGS if (folder / "configs" / n).is_file()), None)
    if config_path is None:
        raise ImportRefused(f"{folder} is not a MONAI bundle: it has no configs/inference.json or .yaml.")
    try:
        text = config_path.read_text(encoding="utf-8")
        if config_path.suffix == ".json":
            config = json.loads(text)
        else:
            import yaml

            config = yaml.safe_load(text)
    except (OSError, ValueError) as exc:
        raise ImportRefused(f"Bundle config {config_path} cannot be read: {exc}") from exc
    except Exception as exc:  # yaml.YAMLError
        raise ImportRefused(f"Bundle config {config_path} is not valid YAML: {exc}") from exc
    if not isinstance(config, Mapping) or "network_def" not in config:
        raise ImportRefused(f"Bundle config {config_path} has no network_def: models import reads the network's "
                            "class and arguments from it.")
    network_def = config["network_def"]
    if not isinstance(network_def, Mapping) or "_target_" not in network_def:
        raise ImportRefused(
            f"Bundle config {config_path}: network_def is {json.dumps(network_def)[:120]}, not an object with "
            "_target_: models import never executes a config's expressions. Give --framework monai with --network "
            "and --params instead, and the bundle's models/model.pt as the checkpoint.")
    target = str(network_def["_target_"])
    name = _target_name(target)
    from .networks import _monai_classes

    allowed = target == name or target.startswith("monai.networks.nets.")
    if not allowed or name not in _monai_classes():
        raise ImportRefused(
            f"Bundle config {config_path}: network_def._target_ {target!r} is not a class of monai.networks.nets; "
            "models import builds only those (a custom class would have to run the bundle's own code). Export the "
            "network to TorchScript or ONNX and import that file.")
    if network_def.get("_disabled_"):
        raise ImportRefused(f"Bundle config {config_path}: network_def is disabled (_disabled_).")
    params = {k: v for k, v in network_def.items() if k not in _PLAIN_SKIP and k != "_disabled_"}
    dynamic = [e for k, v in params.items() for e in _expressions(v, f"network_def.{k}")]
    if dynamic:
        raise ImportRefused(
            f"Bundle config {config_path}: the network's arguments hold expressions or references that models import "
            f"does not evaluate: {'; '.join(dynamic)}. Give --framework monai --network {name} --params JSON with "
            "their values, and the bundle's models/model.pt as the checkpoint.")
    weights = folder / "models" / "model.pt"
    if not weights.is_file():
        ts = folder / "models" / "model.ts"
        raise ImportRefused(f"Bundle {folder} has no models/model.pt" + (
            f"; it has {ts}: import that TorchScript file with --framework torchscript." if ts.is_file() else "."))
    settings = BundleSettings(name, params, weights, config_path)
    settings.notes.append(f"network {name} and its arguments read from {config_path.relative_to(folder)}")
    intensity = []
    for t in _transforms(config):
        kind = _target_name(t.get("_target_"))
        if _expressions({k: v for k, v in t.items() if k not in ("_target_", "keys")}, kind):
            continue  # not plain: the flags must say it
        if kind in ("Orientationd", "Orientation") and isinstance(t.get("axcodes"), str):
            codes = t["axcodes"].upper()
            if re.fullmatch(r"[LRAPSI]{3}", codes):
                settings.orientation = codes
        elif kind in ("Spacingd", "Spacing"):
            settings.spacing = _plain_numbers(t.get("pixdim"), 3)
        elif kind in ("ScaleIntensityRanged", "ScaleIntensityRange"):
            values = [t.get(k) for k in ("a_min", "a_max", "b_min", "b_max")]
            if all(isinstance(v, (int, float)) for v in values):
                intensity.append({"method": "range", "source_range": values[:2], "target_range": values[2:]})
        elif kind in ("ScaleIntensityRangePercentilesd", "ScaleIntensityRangePercentiles"):
            values = [t.get(k) for k in ("lower", "upper", "b_min", "b_max")]
            if all(isinstance(v, (int, float)) for v in values):
                intensity.append({"method": "percentile", "lower": values[0], "upper": values[1],
                                  "target_range": values[2:], "mask": "all"})
        elif kind in ("NormalizeIntensityd", "NormalizeIntensity"):
            intensity.append({"method": "zscore", "mask": "body" if t.get("nonzero") else "all"})
        elif kind in ("ScaleIntensityd", "ScaleIntensity"):
            low, high = t.get("minv", 0.0), t.get("maxv", 1.0)
            if isinstance(low, (int, float)) and isinstance(high, (int, float)):
                intensity.append({"method": "percentile", "lower": 0, "upper": 100, "target_range": [low, high],
                                  "mask": "all"})
        elif kind == "SlidingWindowInferer":
            roi = t.get("roi_size")
            if isinstance(roi, list) and all(isinstance(v, int) for v in roi):
                settings.roi = roi
    if len(intensity) == 1:
        settings.normalization = intensity[0]
    elif len(intensity) > 1:
        settings.notes.append(f"{len(intensity)} intensity transforms in the config: --normalization must say "
                              "which one the network's input had")
    return settings


# --- the answers ------------------------------------------------------------------------------------------


_OUTPUT_DEFAULTS = {
    "CT": {"unit": "HU", "dtype": "int16", "valid_range": (-1024, 3071), "background": -1000,
           "display": {"window": 400, "level": 40}},
    "CBCT": {"unit": "HU", "dtype": "int16", "valid_range": (-1024, 3071), "background": -1000,
             "display": {"window": 400, "level": 40}},
    "PET": {"unit": "SUV", "dtype": "float32", "background": 0, "display": {"colormap": "PET-Heat"}},
    "SPECT": {"unit": "a.u.", "dtype": "float32", "background": 0, "display": {"colormap": "PET-Heat"}},
    "MR": {"unit": "a.u.", "dtype": "float32", "display": {}},
}


def parse_input(text: str) -> Dict[str, str]:
    """``MODALITY[:SEQUENCE]`` → an input entry of the card."""
    modality, _, sequence = text.partition(":")
    modality = modality.strip().upper()
    if modality not in MODALITIES_IN:
        raise ImportRefused(f"--input {text!r}: the modality must be one of {', '.join(MODALITIES_IN)} "
                            "(e.g. MR:T1w, CT).")
    entry = {"modality": modality}
    if sequence.strip():
        entry["sequence"] = sequence.strip()
    return entry


def _number(text: str, flag: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ImportRefused(f"{flag}: {text!r} is not a number.") from None
    if not math.isfinite(value):
        raise ImportRefused(f"{flag}: {text!r} is not a finite number.")
    return value


def parse_normalization(text: str) -> Dict[str, Any]:
    """``percentile:LOW:HIGH[:A:B][:body|all]``, ``range:MIN:MAX[:A:B]``, ``zscore[:body|all]`` or
    ``minmax[:A:B]`` (the scan's minimum and maximum to A..B); A..B, the network's input range, defaults to -1..1."""
    parts = [p.strip() for p in text.split(":")]
    method, args = parts[0].lower(), parts[1:]
    flag = f"--normalization {text!r}"
    mask = None
    if args and args[-1].lower() in ("body", "all"):
        mask = args.pop().lower()
    numbers = [_number(a, flag) for a in args]
    usage = ("percentile:LOW:HIGH[:A:B][:body|all] (percentiles to A..B), range:MIN:MAX[:A:B] (fixed intensities, "
             "e.g. CT in HU), zscore[:body|all] or minmax[:A:B]; A..B defaults to -1..1")
    if method == "percentile" and len(numbers) in (2, 4):
        low, high = numbers[:2]
        if not 0 <= low < high <= 100:
            raise ImportRefused(f"{flag}: the percentiles must satisfy 0 <= LOW < HIGH <= 100.")
        spec = {"method": "percentile", "lower": low, "upper": high,
                "target_range": numbers[2:] if len(numbers) == 4 else [-1.0, 1.0]}
        if mask:
            spec["mask"] = mask
        return spec
    if method == "range" and len(numbers) in (2, 4) and not mask:
        return {"method": "range", "source_range": numbers[:2],
                "target_range": numbers[2:] if len(numbers) == 4 else [-1.0, 1.0]}
    if method == "zscore" and not numbers:
        return {"method": "zscore", **({"mask": mask} if mask else {})}
    if method == "minmax" and len(numbers) in (0, 2) and not mask:
        return {"method": "percentile", "lower": 0, "upper": 100, "mask": "all",
                "target_range": numbers if numbers else [-1.0, 1.0]}
    raise ImportRefused(f"{flag} is not a normalisation: give {usage}.")


def _round_up(value: int, divisor: int) -> int:
    return -(-value // divisor) * divisor


def default_roi(dims: int, divisor: int) -> List[int]:
    side = _round_up(max(64 if dims == 3 else 256, divisor), max(1, divisor))
    return [side] * dims


def _input_names(entries: List[Dict[str, str]]) -> None:
    used: Dict[str, int] = {}
    for entry in entries:
        base = re.sub(r"[^a-z0-9_-]", "", (entry.get("sequence") or entry["modality"]).lower()) or "input"
        used[base] = used.get(base, 0) + 1
        entry["name"] = base if used[base] == 1 else f"{base}{used[base]}"
    for entry in entries:  # put name first, as in the other cards
        name = entry.pop("name")
        rest = dict(entry)
        entry.clear()
        entry.update({"name": name, **rest})


def _output(modality: str, low: float, high: float) -> Tuple[Dict[str, Any], Dict[str, Any], Dict[str, Any]]:
    spec = _OUTPUT_DEFAULTS[modality]
    lo, hi = min(low, high), max(low, high)
    valid = [min(spec["valid_range"][0], lo), max(spec["valid_range"][1], hi)] if "valid_range" in spec else [lo, hi]
    output = {"modality": modality, "unit": spec["unit"], "valid_range": valid, "dtype": spec["dtype"]}
    background = spec.get("background", lo)
    if not lo <= background <= hi:
        background = lo
    display = dict(spec["display"])
    if modality not in ("CT", "CBCT"):
        display.update(window=hi - lo if hi > lo else 1, level=(hi + lo) / 2)
    return output, {"clip": valid, "background_value": background}, display


def _num(value: float) -> Any:
    return int(value) if float(value).is_integer() else value


def _answers(options: ImportOptions, bundle: Optional[BundleSettings], inferred: Optional[Inferred],
             missing: List[str], wrong: List[str], notes: List[str]) -> Dict[str, Any]:
    """Checks the answers, appending what is missing or wrong; returns them parsed. Without ``inferred`` (the
    architecture is itself undecided) the checks that depend on it are left out."""
    if not options.model_id:
        missing.append("--id ID (lower-case letters, digits, '.', '_' and '-'; e.g. mr-t1-to-ct-myresnet)")
    elif not _ID.match(options.model_id):
        wrong.append(f"--id {options.model_id!r}: use 2-64 lower-case letters, digits, '.', '_' or '-'")
    if not _VERSION.match(options.version or ""):
        wrong.append(f"--version {options.version!r}: use major.minor.patch, e.g. 0.1.0")
    inputs: List[Dict[str, str]] = []
    for text in options.inputs:
        try:
            inputs.append(parse_input(text))
        except ImportRefused as exc:
            wrong.append(str(exc))
    channels = inferred.in_channels if inferred else None
    if not options.inputs:
        count = f"{channels} times, once per input channel" if channels else "once per input channel"
        missing.append(f"--input MODALITY[:SEQUENCE] ({count}, in channel order; e.g. --input MR:T1w)")
    elif channels and len(options.inputs) != channels and len(inputs) == len(options.inputs):
        wrong.append(f"--input was given {len(options.inputs)} times, but the network takes {channels} input "
                     f"channel(s): give one --input per channel, in channel order")
    if not options.output_modality:
        missing.append(f"--output-modality {'|'.join(MODALITIES_OUT)} (what the network synthesises)")
    elif options.output_modality.upper() not in MODALITIES_OUT:
        wrong.append(f"--output-modality {options.output_modality!r}: one of {', '.join(MODALITIES_OUT)}")
    if options.output_range is None:
        missing.append("--output-range LOW HIGH (the output values, in the output's unit, that the network's "
                       f"{_num(options.network_range[0])}..{_num(options.network_range[1])} maps to: the range the "
                       "training targets were scaled from, e.g. -1024 3071 for CT in HU)")
    elif len(options.output_range) != 2 or options.output_range[0] == options.output_range[1]:
        wrong.append(f"--output-range {options.output_range}: two different numbers, LOW HIGH")
    spacing = list(options.spacing) if options.spacing else (bundle.spacing if bundle else None)
    if spacing is None:
        missing.append("--spacing X Y Z (the voxel spacing in mm the network was trained on)")
    elif len(spacing) != 3 or not all(s > 0 for s in spacing):
        wrong.append(f"--spacing {spacing}: three positive numbers (mm)")
    normalization: List[Dict[str, Any]] = []
    for text in options.normalization:
        try:
            normalization.append(parse_normalization(text))
        except ImportRefused as exc:
            wrong.append(str(exc))
    if not options.normalization:
        if bundle is not None and bundle.normalization is not None:
            normalization = [bundle.normalization]
        else:
            missing.append("--normalization SPEC (how the training inputs were scaled: percentile:0.5:99.5, "
                           "range:-1024:3071, zscore or minmax; to -1..1 unless :A:B is added)")
    orientation = options.orientation or (bundle.orientation if bundle else None)
    if orientation is not None and not re.fullmatch(r"[LRAPSI]{3}", orientation.upper()):
        wrong.append(f"--orientation {orientation!r}: three letters from L/R, A/P, S/I, e.g. LPS or RAS")
    n_inputs = len(options.inputs) or channels or 1
    if normalization and len(normalization) not in (1, n_inputs):
        wrong.append(f"--normalization was given {len(normalization)} times for {n_inputs} inputs: give it once "
                     "(for every input) or once per input")
    answers = {"inputs": inputs, "spacing": spacing, "normalization": normalization, "orientation": orientation}
    if inferred is None:
        return answers
    dims = inferred.spatial_dims
    planes = list(options.planes)
    if planes and dims == 3:
        wrong.append(f"--planes {' '.join(planes)}: the network is 3D; planes are for 2D networks")
    if dims == 2 and not planes:
        planes = ["axial"]
        notes.append("a 2D network: it runs on axial slices (inference.planes); --planes chooses others")
    from .networks import required_divisor

    divisor = required_divisor(inferred.architecture)
    if inferred.architecture["type"] in ("torchscript", "onnx"):
        if options.divisible_by:
            divisor = options.divisible_by
        else:
            divisor = DEFAULT_SELF_CONTAINED_DIVISOR
            notes.append(f"the file does not say which sizes the network takes: inference.divisible_by "
                         f"{divisor} assumed (--divisible-by sets it)")
    elif options.divisible_by:
        divisor = max(divisor, options.divisible_by)
    roi = list(options.roi) if options.roi else (list(bundle.roi) if bundle and bundle.roi else None)
    if roi is None:
        roi = default_roi(dims, divisor)
    elif len(roi) != dims:
        wrong.append(f"--roi {' '.join(map(str, roi))}: a {dims}D network takes {dims} numbers")
    elif any(r % divisor for r in roi) or any(r < 8 for r in roi):
        wrong.append(f"--roi {' '.join(map(str, roi))}: each side must be at least 8 and a multiple of {divisor}")
    answers.update(planes=planes, divisor=divisor, roi=roi)
    return answers


def refusal(missing: Sequence[str], wrong: Sequence[str] = ()) -> ImportRefused:
    """One refusal naming every missing and wrong answer."""
    return ImportRefused(
        "models import needs more answers than the weights give:\n"
        + "".join(f"  missing {m}\n" for m in missing) + "".join(f"  {w}\n" for w in wrong)
        + "Nothing was written.")


def build_card_data(inferred: Inferred, ckpt: Checkpoint, options: ImportOptions,
                    bundle: Optional[BundleSettings] = None) -> Tuple[Dict[str, Any], List[str]]:
    """The card for an inferred architecture and the answers; refuses, naming every missing or wrong answer at
    once."""
    missing: List[str] = []
    wrong: List[str] = []
    notes: List[str] = []
    answers = _answers(options, bundle, inferred, missing, wrong, notes)
    if missing or wrong:
        raise refusal(missing, wrong)
    inputs, spacing, normalization = answers["inputs"], answers["spacing"], answers["normalization"]
    orientation, planes, divisor, roi = answers["orientation"], answers["planes"], answers["divisor"], answers["roi"]
    assert options.output_modality is not None and options.output_range is not None
    modality = options.output_modality.upper()
    low, high = (float(v) for v in options.output_range)
    output, post, display = _output(modality, low, high)
    _input_names(inputs)
    if len(normalization) == 1:
        normalization = [dict(normalization[0]) for _ in inputs]
    first = normalization[0]
    padding_value = float(first["target_range"][0]) if "target_range" in first else -1.0
    inference: Dict[str, Any] = {"roi_size": roi, "divisible_by": divisor, "padding_value": padding_value,
                                 "amp": False, "cpu_precision": "float32"}
    if planes:
        inference["planes"] = planes
    source = ckpt.path.name if bundle is None else f"the MONAI bundle {bundle.config.parents[1].name}"
    labels = " + ".join(f"{i['modality']} {i.get('sequence', '')}".strip() for i in inputs)
    title = options.title or f"{labels} to {modality} ({inferred.framework} {inferred.family}, imported)"
    description = options.description or (
        f"{inferred.family} generator ({inferred.framework}) imported with 'medgan-translate models import' from "
        f"{source}; architecture read from its weights ({inferred.decided_by}). Its weights were not trained or "
        "validated by MedGANTranslate.")
    if options.orientation is None and orientation is None:
        notes.append("no --orientation: each scan reaches the network in its stored axis order; give the orientation "
                     "of the training data (e.g. LPS or RAS) so that every scan is reoriented to it")
    data = {
        "schema_version": "1.0",
        "id": options.model_id,
        "version": options.version,
        "title": title[:120],
        "description": description,
        "inputs": inputs,
        "output": output,
        "site": options.site,
        "architecture": inferred.architecture,
        "weights": {"key": ckpt.key} if ckpt.fmt == "ganslate" and ckpt.key else {},
        "preprocessing": {"orientation": orientation.upper() if orientation else None, "spacing": spacing,
                          "normalization": normalization},
        "inference": inference,
        "postprocessing": {
            "output_mapping": {"source_range": [float(v) for v in options.network_range], "target_range": [low, high]},
            **post,
        },
        "display": display,
        "intended_use": options.intended_use or (
            f"{RESEARCH_ONLY} Imported from a third-party checkpoint ({source}); its accuracy was not validated "
            "by MedGANTranslate."),
        "license": options.license or "unspecified (see the checkpoint's source)",
    }
    if not options.license:
        notes.append("no --license: the card says 'unspecified'; give the weights' licence with --license")
    return data, notes


# --- writing the folder -------------------------------------------------------------------------------------


def probe(card: ModelCard, device: str = "cpu") -> Dict[str, Any]:
    """Loads the card's network and runs it once on zeros of the ROI size: that it loads, takes the card's window
    and answers with the same spatial size; returns shapes, output range and time."""
    from .checkpoints import load_generator

    start = time.perf_counter()
    net = load_generator(card, device=device)
    roi = [int(v) for v in card.inference["roi_size"]]
    x = torch.zeros(1, len(card.inputs), *roi, device=device)
    try:
        with torch.inference_mode():
            y = net(x)
    except Exception as exc:  # the network's own error on the card's window
        raise ImportRefused(
            f"The imported network failed on a window of the card's size {tuple(x.shape)}: {exc}. Check --roi "
            "(and --divisible-by), --planes and the number of --input flags."
        ) from exc
    if not isinstance(y, torch.Tensor) or y.dim() != x.dim() or tuple(y.shape[2:]) != tuple(x.shape[2:]):
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ImportRefused(
            f"The imported network answered a window of {tuple(x.shape)} with {shape}: the engine needs an output "
            "of the window's spatial size (N x 1 x the same sides).")
    y = y.float()
    return {"input_shape": list(x.shape), "output_shape": list(y.shape), "output_min": float(y.min()),
            "output_max": float(y.max()), "output_mean": float(y.mean()), "finite": bool(torch.isfinite(y).all()),
            "seconds": round(time.perf_counter() - start, 3), "device": str(device)}


def _prepare_out(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ImportRefused(f"--out {out_dir} exists and is not an empty folder; choose a new folder for the model "
                            "(models import never overwrites one).")


def import_checkpoint(source: "str | Path", out_dir: "str | Path", options: ImportOptions,
                      device: str = "cpu", log: Optional[Callable[[str, str], None]] = None) -> ImportResult:
    """Imports ``source`` (a checkpoint file, or a MONAI bundle folder with ``framework`` monai-bundle) as the
    model folder ``out_dir``: copy of the checkpoint, ``model.json``, probe. Nothing is left at ``out_dir`` when
    it refuses."""
    say = log or (lambda level, message: None)
    source, out_dir = Path(source), Path(out_dir)
    if options.framework is not None and options.framework not in FRAMEWORKS:
        raise ImportRefused(f"--framework {options.framework!r}: one of {', '.join(FRAMEWORKS)}.")
    for flag, value, allowed in (("--norm", options.norm, NORMS), ("--norm-statistics", options.norm_statistics,
                                                                     NORM_STATISTICS)):
        if value is not None and value not in allowed:
            raise ImportRefused(f"{flag} {value!r}: one of {', '.join(allowed)}.")
    for plane in options.planes:
        if plane not in PLANES:
            raise ImportRefused(f"--planes {plane!r}: one of {', '.join(PLANES)}.")
    _prepare_out(out_dir)
    bundle = None
    if source.is_dir() or options.framework == "monai-bundle":
        if not source.is_dir():
            raise ImportRefused(f"--framework monai-bundle takes the bundle's folder; {source} is not a folder.")
        if options.framework not in (None, "monai-bundle"):
            raise ImportRefused(f"{source} is a folder: give --framework monai-bundle for a MONAI bundle, or the "
                                "checkpoint file itself.")
        bundle = read_bundle(source)
        ckpt = read_checkpoint(bundle.weights, options.key)
        if ckpt.fmt in ("torchscript", "onnx"):
            raise ImportRefused(f"{bundle.weights} is a {ckpt.fmt} file; import it with --framework {ckpt.fmt}.")
        network = options.network or bundle.network
        params = options.params if options.params is not None else bundle.params
    else:
        ckpt = read_checkpoint(source, options.key)
    say("info", f"read {ckpt.path} ({ckpt.fmt}" + (f", key {ckpt.key}" if ckpt.key else "") + ")")
    missing: List[str] = []
    if bundle is not None:
        inferred = _monai(ckpt, network, params, missing, decided_by=f"the bundle's {bundle.config.name}")
        if inferred is not None:
            inferred.notes[:0] = bundle.notes
    else:
        inferred = infer_architecture(ckpt, options, missing)
    if inferred is None:  # name the other missing answers too, all at once
        wrong: List[str] = []
        _answers(options, bundle, None, missing, wrong, [])
        raise refusal(missing, wrong)
    card_data, notes = build_card_data(inferred, ckpt, options, bundle)
    notes = ckpt.notes + inferred.notes + notes
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        os.chmod(staging, 0o777 & ~_umask())
        weights_file = ckpt.path.name if ckpt.path.name != "model.json" else "weights" + ckpt.path.suffix
        shutil.copyfile(ckpt.path, staging / weights_file)
        from .model_folder import save_model_folder

        card = save_model_folder(staging, card_data, fmt=ckpt.fmt, weights_file=weights_file)
        say("info", f"card written; probing the network on zeros of {card.inference['roi_size']}")
        result_probe = probe(card, device)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    card = load_card(out_dir)
    from .registry import sha256_file

    if sha256_file(ckpt.path) != card.sha256:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise ImportRefused(f"Checkpoint {ckpt.path} changed while it was imported; nothing was kept. Try again.")
    if not result_probe["finite"]:
        notes.append("the probe's output holds NaN or Inf values on zeros")
    return ImportResult(card, source, inferred.framework, inferred.family, inferred.decided_by, result_probe, notes)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def describe_architecture(architecture: Mapping[str, Any]) -> str:
    """One line: ``resnet_generator {in_channels: 1, ...}`` and its forward mode."""
    kind = architecture.get("type")
    if kind in ("torchscript", "onnx"):
        return f"{kind} (the file holds the network)"
    params = ", ".join(f"{k}: {json.dumps(v)}" for k, v in (architecture.get("params") or {}).items())
    forward = architecture.get("forward")
    return f"{architecture.get('name')} {{{params}}}" + (f", forward {json.dumps(forward)}" if forward else "")
