"""Loads a card's generator from its weights file, whatever the format, and exports networks to those formats.

Weights are checked against the card's SHA-256 before anything is read, and pickled PyTorch files are only
read with ``weights_only=True``: a model folder from elsewhere can never run code through unpickling.
Every format comes back as an ``nn.Module`` in eval mode, so inference treats them all the same.
"""
from __future__ import annotations

import contextlib
import pickle
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

import torch
from torch import nn

from .card import ModelCard
from .errors import MedGANError, WeightsError, first_few
from .forward_mode import apply_forward_mode
from .layout_fit import (clean_state_dict, describe_changes, fit_builtin, instance_norm_statistics, mismatches,
                         track_instance_statistics)
from .networks import build_network
from .registry import verify_weights

GANSLATE_DEFAULT_KEYS = ("G_AB", "G")
_SHOW_KEYS = 5


class OnnxGenerator(nn.Module):
    """An onnxruntime session behind the ``nn.Module`` interface: torch tensors in, torch tensors out."""

    def __init__(self, session: Any) -> None:
        super().__init__()
        self.session = session
        first = session.get_inputs()[0]
        self.input_name = first.name
        #: The batch size an export fixed (often 1), or None when its batch axis is dynamic: the engine sends
        #: several windows per call, so a fixed batch is fed in parts of that size.
        self.batch: Optional[int] = first.shape[0] if isinstance(first.shape[0], int) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch is None or x.shape[0] == self.batch:
            return self._run(x)
        parts = []
        for part in x.split(self.batch):
            missing = self.batch - part.shape[0]  # the last part, filled up with copies of its first window
            padded = torch.cat([part, part[:1].expand(missing, *part.shape[1:])]) if missing else part
            parts.append(self._run(padded)[: part.shape[0]])
        return torch.cat(parts)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        out = self.session.run(None, {self.input_name: array})[0]
        return torch.from_numpy(out).to(device=x.device, dtype=x.dtype)


def _describe(card: ModelCard) -> str:
    return f"model '{card.id}' v{card.version}"


def read_weights_only(path: Path, refuse: Callable[[Exception, Optional[str]], MedGANError]) -> Any:
    """``torch.load(weights_only=True)``: no file can run code through unpickling. A file it cannot read becomes
    the caller's own error, ``refuse(exc, needed)``: ``needed`` names the Python objects a pickle of objects asked
    for (they are what makes it unsafe), None when the file is simply unreadable."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = str(exc)
        needed = None
        if "Unsupported global" in detail:
            needed = detail.split("Unsupported global:", 1)[1].split(" was not", 1)[0].replace("GLOBAL", "").strip()
        raise refuse(exc, needed) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise refuse(exc, None) from exc


def is_state_dict(obj: Any) -> bool:
    """A non-empty mapping of tensors, as ``module.state_dict()`` saves it."""
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _torch_load(card: ModelCard, path: Path) -> Any:
    def refuse(exc: Exception, needed: Optional[str]) -> WeightsError:
        if needed is None:
            return WeightsError(f"Weights {path} of {_describe(card)} are not a readable PyTorch checkpoint: {exc}")
        return WeightsError(
            f"Weights {path} of {_describe(card)} were refused: only weights-only checkpoints (tensors in plain "
            f"dicts) are accepted, and this file needs arbitrary Python objects unpickled ({needed}). To convert it, load "
            "it once yourself in a trusted environment and save the network's state_dict() with torch.save, or as "
            "safetensors, then update the card's weights.file, format and sha256."
        )

    return read_weights_only(path, refuse)


def _read_state_dict(card: ModelCard, path: Path, fmt: str) -> Dict[str, torch.Tensor]:
    if fmt == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as exc:
            raise WeightsError(f"Weights {path} of {_describe(card)} are not a readable safetensors file: {exc}") from exc
    obj = _torch_load(card, path)
    keys = [str(k) for k in obj] if isinstance(obj, Mapping) else []
    if fmt == "state_dict":
        if not is_state_dict(obj):
            raise WeightsError(
                f"Weights {path} of {_describe(card)} hold {type(obj).__name__} with keys "
                f"[{first_few(keys, _SHOW_KEYS)}], not a state_dict of tensors. If it bundles several networks, set "
                "weights.format to 'ganslate' and weights.key to the generator's key."
            )
        return dict(obj)
    key = card.weights.get("key") or next((k for k in GANSLATE_DEFAULT_KEYS if k in keys), None)
    if key is None or key not in keys or not is_state_dict(obj[key]):
        wanted = f"'{key}'" if key else "one of " + ", ".join(GANSLATE_DEFAULT_KEYS)
        raise WeightsError(
            f"Checkpoint {path} of {_describe(card)} has no generator state_dict under {wanted}; keys found: "
            f"{', '.join(keys) or 'none'}. Set weights.key in the card to the generator's key."
        )
    return dict(obj[key])


def _shared_tensors_agree(net: nn.Module, state: Dict[str, torch.Tensor]) -> List[str]:
    """Keys that name one tensor twice in the network (ganslate's ``encoder`` aliases) but hold different values
    in the file: loading would silently keep one of them."""
    first: Dict[Tuple[int, Tuple[int, ...]], str] = {}
    differing = []
    for key, tensor in net.state_dict(keep_vars=True).items():
        if tensor.numel() == 0 or key not in state:
            continue
        other = first.setdefault((tensor.data_ptr(), tuple(tensor.shape)), key)
        if other != key and other in state and not torch.equal(state[other], state[key]):
            differing.append(f"{key} vs {other}")
    return differing


def _instance_statistics(net: nn.Module, state: Dict[str, torch.Tensor], card: ModelCard, path: Path) -> None:
    """Instance-norm statistics in the file: all used (eval mode) when the card says ``norm_statistics: running``,
    ignored when it says ``window``, and refused when it says neither and they were trained, since the two compute
    different things."""
    names, trained = instance_norm_statistics(net, state)
    statistics = (card.architecture.get("forward") or {}).get("norm_statistics")
    if not names or (statistics is None and not trained):  # initial values, as PyTorch 0.4 conversions leave
        return
    if statistics is None:
        raise WeightsError(
            f"Weights {path} of {_describe(card)} hold running statistics for instance-norm layers "
            f"({first_few(names, _SHOW_KEYS)}), saved with track_running_stats=True (old pytorch-CycleGAN-and-pix2pix, "
            "3D-CycleGan-Pytorch-MedImaging). Their own code uses them only in eval mode (test.py --eval) and each "
            "window's own statistics otherwise, and the outputs differ: set architecture.forward.norm_statistics to "
            "'running' (eval mode) or 'window' (no eval) in the card."
        )
    if statistics == "running":
        track_instance_statistics(net, names)


def _load_strict(net: nn.Module, state: Dict[str, torch.Tensor], card: ModelCard, path: Path) -> None:
    _instance_statistics(net, state, card, path)
    missing, unexpected, mismatched = mismatches(net, state)
    problems = [f"{label}: {first_few(keys, _SHOW_KEYS)}" for label, keys in
                (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)) if keys]
    arch = card.architecture
    if problems:
        fits = fit_builtin(arch["name"], arch.get("params") or {}, state) if arch.get("type") == "builtin" else []
        changes = " or ".join(f"({describe_changes(arch['name'], arch['params'], fit)})" for fit in fits[:3])
        advice = (f"The weights fit the same network with {changes}" + (
            ": the keys cannot tell these apart, so set the one the network was trained with" if len(fits) > 1 else
            ": set that in architecture.params if it is how the network was trained") + "." if fits else
                  "Check architecture.params in the card (channels, ngf, n_blocks/num_downs, norm, bias, spatial_dims) "
                  "against the options the weights were trained with; `medgan-translate models import` infers them.")
        raise WeightsError(
            f"Weights {path} do not fit the network of {_describe(card)} ({arch.get('type')} "
            f"{arch.get('name')} {arch.get('params')}): " + "; ".join(problems) + ". " + advice
        )
    state = clean_state_dict(net, state)
    differing = _shared_tensors_agree(net, state)
    if differing:
        raise WeightsError(
            f"Weights {path} of {_describe(card)} hold different values for keys the network shares "
            f"({first_few(differing, _SHOW_KEYS)}); the file was not saved from this layout."
        )
    net.load_state_dict(state, strict=True)


def _load_onnx(card: ModelCard, path: Path, device: torch.device) -> OnnxGenerator:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise WeightsError(
            f"{_describe(card)} is an ONNX model and needs onnxruntime: pip install onnxruntime "
            "(or onnxruntime-gpu for CUDA)."
        ) from exc
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime's error classes are private and derive from Exception directly
        raise WeightsError(f"Weights {path} of {_describe(card)} are not a loadable ONNX model: {exc}") from exc
    return OnnxGenerator(session).eval()


def load_generator(card: ModelCard, device: "str | torch.device" = "cpu", verify: bool = True) -> nn.Module:
    """The card's generator in eval mode on ``device``; refuses weights whose SHA-256 differs from the card's."""
    if verify:
        path = verify_weights(card)
    else:
        path = card.weights_path
        if not path.is_file():
            raise WeightsError(f"Weights of {_describe(card)} are missing: expected {path}.")
    device = torch.device(device)
    fmt = card.weights["format"]
    if fmt == "onnx":
        return _load_onnx(card, path, device)
    if fmt == "torchscript":
        try:
            net = torch.jit.load(str(path), map_location=device)
        except RuntimeError as exc:
            raise WeightsError(f"Weights {path} of {_describe(card)} are not a TorchScript archive: {exc}") from exc
    else:
        net = build_network(card.architecture)
        _load_strict(net, _read_state_dict(card, path, fmt), card, path)
        apply_forward_mode(net, card.architecture.get("forward"))
    return net.to(device).eval()


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Exports run in eval mode (dropout off, BatchNorm running stats) and leave the caller's mode as it was."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def save_safetensors(module: nn.Module, path: "str | Path") -> Path:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt"})
    return Path(path)


def export_torchscript(module: nn.Module, path: "str | Path", example_input: torch.Tensor) -> Path:
    """Traces the module; the generators have no data-dependent control flow, so the trace fits any size."""
    with _eval_mode(module), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(module, example_input)
    traced.save(str(path))
    return Path(path)


def export_onnx(module: nn.Module, path: "str | Path", example_input: torch.Tensor) -> Path:
    """Exports with the torch.export-based exporter (needs onnxscript): the legacy TorchScript exporter is
    deprecated in torch 2.13. Batch and spatial axes are dynamic; weights are stored inside the one file."""
    from torch.export import Dim

    dims = {axis: Dim.DYNAMIC for axis in [0] + list(range(2, example_input.dim()))}
    with _eval_mode(module):
        torch.onnx.export(
            module,
            (example_input,),
            str(path),
            dynamo=True,
            external_data=False,
            input_names=["input"],
            output_names=["output"],
            dynamic_shapes=(dims,),
            verbose=False,
        )
    return Path(path)
