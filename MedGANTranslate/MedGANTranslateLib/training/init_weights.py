"""``init_weights`` in a training config: start the generator from a model's weights (fine-tuning) instead of
from random ones. Only a fresh run reads them; a resumed run continues from its checkpoint."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import torch

_REPO = Path(__file__).resolve().parents[3]


def resolve_weights(path: "str | Path") -> Path:
    """``path`` as given, else relative to the repository root (configs name ``models/<id>/weights.safetensors``)."""
    given = Path(path)
    if given.is_file():
        return given
    if not given.is_absolute() and (_REPO / given).is_file():
        return _REPO / given
    raise FileNotFoundError(f"init_weights: {path} not found (looked as given and under {_REPO}).")


def load_initial_weights(generator: torch.nn.Module, path: "str | Path",
                         say: Callable[[str, str], None] = lambda level, message: None) -> str:
    """Loads a safetensors (or torch) state dict into ``generator`` (every key must match) and returns its sha256."""
    file = resolve_weights(path)
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(file))
    else:
        state = torch.load(file, map_location="cpu", weights_only=True)
    generator.load_state_dict(state, strict=True)
    say("info", f"generator initialised from {file} (sha256 {digest[:12]})")
    return digest
