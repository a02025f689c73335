"""``init_weights`` in a training config: start the generator from a model's weights (fine-tuning) instead of
from random ones. Only a fresh run reads them; a resumed run continues from its checkpoint. The published card
says where the run started (:func:`initial_weights_record`), so a fine-tuned model's cost and lineage are its
own run's plus the one it started from."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Dict

import torch

_REPO = Path(__file__).resolve().parents[3]
_COST_KEYS = ("steps", "wall_seconds", "cpu_threads", "device", "precision")  # of the card's training block


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
    digest = _sha256(file)
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(file))
    else:
        state = torch.load(file, map_location="cpu", weights_only=True)
    generator.load_state_dict(state, strict=True)
    say("info", f"generator initialised from {file} (sha256 {digest[:12]})")
    return digest


def initial_weights_record(path: "str | Path") -> Dict[str, Any]:
    """A card's ``training.init_weights``: the file as configured and its sha256 and, when it is a model folder's
    weights (a ``model.json`` beside it with this checksum), that model's id, version and training cost, so that
    what the fine-tuned model cost counts both runs. Made when the run publishes, from the file then."""
    file = resolve_weights(path)
    record: Dict[str, Any] = {"file": str(path), "sha256": _sha256(file)}
    card_file = file.parent / "model.json"
    if card_file.is_file():
        card = json.loads(card_file.read_text(encoding="utf-8"))
        if card.get("weights", {}).get("sha256") == record["sha256"]:
            training = card.get("training", {})
            cost = {k: training[k] for k in _COST_KEYS if k in training}
            record["model"] = {"id": card.get("id"), "version": card.get("version"), **cost}
    return record


def _sha256(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()
