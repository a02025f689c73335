"""Finds model cards: the bundled ``models/`` folder, folders named in ``MEDGAN_TRANSLATE_MODELS``
(separated by the OS path separator) and folders given on the command line (``--models-dir``).

A model folder is any directory holding ``model.json``; a models directory is searched one level deep.
When two folders hold the same id, the newest version wins and the others stay listed as alternatives.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Dict, Iterable, List, Sequence

from .card import CARD_FILENAME, CardSummary, ModelCard, load_card, read_card_summary
from .errors import CardError, ModelNotFoundError, WeightsError

ENV_VAR = "MEDGAN_TRANSLATE_MODELS"
_HERE = Path(__file__).resolve().parent


def bundled_models_dirs() -> List[Path]:
    """The source tree's ``models/`` and the Slicer extension's ``Resources/Models``, where present."""
    candidates = [_HERE.parents[1] / "models", _HERE.parent / "Resources" / "Models"]
    return [p for p in candidates if p.is_dir()]


def search_dirs(extra: Sequence["str | Path"] = ()) -> List[Path]:
    dirs: List[Path] = [Path(p) for p in extra]
    env = os.environ.get(ENV_VAR, "")
    dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs += bundled_models_dirs()
    seen, unique = set(), []
    for d in dirs:
        key = d.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(d)
    return unique


def _card_files(dirs: Iterable[Path]) -> List[Path]:
    files = []
    for d in dirs:
        if (d / CARD_FILENAME).is_file():
            files.append(d / CARD_FILENAME)
        elif d.is_dir():
            files += sorted(p / CARD_FILENAME for p in d.iterdir() if (p / CARD_FILENAME).is_file())
    return files


def _version_key(version: str):
    core = version.split("-")[0]
    return tuple(int(x) for x in core.split("."))


def list_models(extra_dirs: Sequence["str | Path"] = ()) -> List[CardSummary]:
    """Summaries of every readable card, newest version of each id first; unreadable cards are skipped."""
    summaries: Dict[str, List[CardSummary]] = {}
    for f in _card_files(search_dirs(extra_dirs)):
        try:
            s = read_card_summary(f)
        except CardError:
            continue
        summaries.setdefault(s.id, []).append(s)
    out: List[CardSummary] = []
    for model_id in sorted(summaries):
        out += sorted(summaries[model_id], key=lambda s: _version_key(s.version), reverse=True)
    return out


def resolve_model(model: str, extra_dirs: Sequence["str | Path"] = ()) -> ModelCard:
    """``model`` is a folder or card path, or an id (optionally ``id@version``) found in the registry."""
    as_path = Path(model)
    if as_path.exists():
        return load_card(as_path)
    model_id, _, version = model.partition("@")
    matches = [s for s in list_models(extra_dirs) if s.id == model_id and (not version or s.version == version)]
    if not matches:
        known = ", ".join(sorted({s.id for s in list_models(extra_dirs)})) or "none"
        where = ", ".join(str(d) for d in search_dirs(extra_dirs)) or "no folders"
        raise ModelNotFoundError(
            f"Unknown model '{model}'. Known models: {known}. Searched: {where}. "
            f"Give a model folder path, add a folder with --models-dir or ${ENV_VAR}, "
            "or run 'medgan-translate models list'."
        )
    return load_card(matches[0].path)


def sha256_file(path: "str | Path", chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_weights(card: ModelCard) -> Path:
    """Returns the weights path when present and matching the card's SHA-256; raises otherwise."""
    path = card.weights_path
    if not path.is_file():
        raise WeightsError(
            f"Weights of model '{card.id}' v{card.version} are missing: expected {path}. "
            "Reinstall the model folder or download the weights named in the card."
        )
    actual = sha256_file(path)
    if actual != card.sha256:
        raise WeightsError(
            f"Weights of model '{card.id}' v{card.version} at {path} do not match the card's SHA-256 "
            f"(expected {card.sha256[:12]}..., found {actual[:12]}...). The file is corrupt or was changed; "
            "restore the original file. It was not loaded."
        )
    return path

