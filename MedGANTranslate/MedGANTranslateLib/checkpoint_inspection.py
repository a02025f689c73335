"""Reads a checkpoint of any format into a :class:`Checkpoint`, without running any of its code.

``models import`` is handed what other people's training code saved: a bare state_dict (also one saved from
DataParallel), ganslate's dict of every network and optimiser, safetensors, or a TorchScript or ONNX file that
holds its own network. The format is told from the file's content, not its name, and the generator's tensors are
taken out, so that the architecture can be read from key names and shapes alone. Pickles are read weights-only:
a file that needs Python objects unpickled is refused with the one-line conversion that makes it importable.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from .checkpoints import GANSLATE_DEFAULT_KEYS, is_state_dict, read_weights_only
from .errors import ImportRefused, first_few
from .layout_fit import strip_module_prefix


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
        return Checkpoint(path, "safetensors", strip_module_prefix(state))
    obj = _read_pickle(path)
    if is_state_dict(obj):
        return Checkpoint(path, "state_dict", strip_module_prefix(obj))
    if not isinstance(obj, Mapping):
        raise ImportRefused(f"Checkpoint {path} holds a {type(obj).__name__}, not a state_dict or a dict of them.")
    state, chosen = _pick_generator(obj, path, key)
    notes = [] if key else [f"generator weights taken from the checkpoint's key {chosen!r} (others: "
                            f"{first_few([str(k) for k in obj if k != chosen], 8) or 'none'}); --key picks another"]
    return Checkpoint(path, "ganslate", strip_module_prefix(state), chosen, [str(k) for k in obj], notes)


def looks_like_ganslate_checkpoint(ckpt: Checkpoint) -> bool:
    """ganslate's save_checkpoint writes every network and the optimisers: G_AB, G_BA, D_A, D_B, optimizer_G..."""
    found = set(ckpt.container)
    return bool(found & {"G_AB", "G"}) and bool(found & {"D_A", "D_B", "D", "optimizer_G", "optimizer_D"})


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


def _read_pickle(path: Path) -> Any:
    def refuse(exc: Exception, needed: Optional[str]) -> ImportRefused:
        if needed is None:
            return ImportRefused(f"Checkpoint {path} is not a readable PyTorch checkpoint: {exc}")
        return ImportRefused(
            f"Checkpoint {path} was refused: it needs Python objects unpickled ({needed}), and models import "
            "reads only weights-only checkpoints (tensors in plain dicts), so that no file can run code. Convert "
            "it once in the environment you trained in, which you trust: load it there and save the generator's "
            "weights with torch.save(net.state_dict(), 'generator.pth') (or safetensors), then import that file.")

    return read_weights_only(path, refuse)


def _pick_generator(obj: Mapping[str, Any], path: Path, key: Optional[str]) -> Tuple[Dict[str, torch.Tensor], str]:
    """The generator's state_dict in a dict of several: under ``key``, ganslate's default keys, or the only one."""
    keys = [str(k) for k in obj]
    nested = [k for k in keys if is_state_dict(obj[k])]
    if key is not None:
        if key not in keys or not is_state_dict(obj[key]):
            raise ImportRefused(
                f"Checkpoint {path} has no state_dict of tensors under --key {key!r}; keys found: {first_few(keys, 12)}"
                + (f" (state_dicts under: {', '.join(nested)})." if nested else ".")
            )
        return dict(obj[key]), key
    chosen = next((k for k in GANSLATE_DEFAULT_KEYS if k in nested), None)
    if chosen is None and len(nested) == 1:
        chosen = nested[0]
    if chosen is None:
        raise ImportRefused(
            f"Checkpoint {path} bundles several things (keys {first_few(keys, 12)}) and none is a generator under "
            f"{' or '.join(GANSLATE_DEFAULT_KEYS)}. Give --key with the generator's key"
            + (f" (state_dicts found under: {', '.join(nested)})." if nested else "; no key holds a state_dict of tensors.")
        )
    return dict(obj[chosen]), chosen
