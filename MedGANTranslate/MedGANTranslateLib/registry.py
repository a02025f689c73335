"""Finds model cards: the bundled ``models/`` folder, folders named in ``MEDGAN_TRANSLATE_MODELS``
(separated by the OS path separator), folders given on the command line (``--models-dir``) and the user's model
store, where ``medgan-translate models install`` puts models (:func:`model_store`).

A model folder is any directory holding ``model.json``; a models directory is searched one level deep.
When two folders hold the same id, the newest version wins and the others stay listed as alternatives. A card
that cannot be read is skipped with a warning naming its file and what is wrong; asking for it by id or path
gives its error.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from .card import CARD_FILENAME, CardSummary, ModelCard, load_card, read_card_summary
from .errors import CardError, ModelNotFoundError, WeightsError

#: The model ``medgan-translate demo`` runs and the Slicer panel pre-selects when nothing was chosen yet.
DEFAULT_MODEL = "mr-t1-to-ct-pix2pix"
ENV_VAR = "MEDGAN_TRANSLATE_MODELS"
HOME_ENV_VAR = "MEDGAN_TRANSLATE_HOME"
APP_NAME = "MedGANTranslate"
_HERE = Path(__file__).resolve().parent


def user_data_dir() -> Path:
    """The tool's per-user data folder: ``$MEDGAN_TRANSLATE_HOME`` when set, else platformdirs' user data
    folder for "MedGANTranslate" (``~/.local/share/MedGANTranslate`` on Linux, ``~/Library/Application
    Support/MedGANTranslate`` on macOS, ``%LOCALAPPDATA%\\MedGANTranslate`` on Windows). Without platformdirs
    (Slicer's Python lists models before the engine's packages are installed) the same rules are applied here."""
    home = os.environ.get(HOME_ENV_VAR, "")
    if home:
        return Path(home).expanduser()
    try:
        import platformdirs
    except ImportError:
        return _fallback_user_data_dir()
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def _fallback_user_data_dir() -> Path:
    """platformdirs' answer for ``user_data_dir(APP_NAME, appauthor=False)``, for when it is not installed."""
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = str(Path.home() / "Library" / "Application Support")
    else:
        base = os.environ.get("XDG_DATA_HOME", "").strip() or str(Path.home() / ".local" / "share")
    return Path(base) / APP_NAME


def model_store() -> Path:
    """Where installed models live, one folder ``<id>-<version>`` each (it need not exist yet)."""
    return user_data_dir() / "models"


def bundled_models_dirs() -> List[Path]:
    """The source tree's ``models/`` and the Slicer extension's ``Resources/Models``, where present."""
    candidates = [_HERE.parents[1] / "models", _HERE.parent / "Resources" / "Models"]
    return [p for p in candidates if p.is_dir()]


def search_dirs(extra: Sequence["str | Path"] = ()) -> List[Path]:
    dirs: List[Path] = [Path(p) for p in extra]
    env = os.environ.get(ENV_VAR, "")
    dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs += bundled_models_dirs()
    try:
        dirs.append(model_store())  # last: an installed model never shadows one of the same id and version
    except (OSError, RuntimeError, KeyError):  # no home folder to put a store in: nothing installed to list
        pass
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


@dataclass(frozen=True)
class BrokenCard:
    """A card on the search path that cannot be listed: its file, what is wrong, and the id it declares ('' when
    none can be read), so that asking for that id gets the card's error rather than 'unknown model'."""

    path: Path
    error: CardError
    declared_id: str

    def warning(self) -> str:
        """What a listing or a run of another model says about it."""
        return f"{self.error} The card is skipped; the other models are available."


def _declared_id(path: Path) -> str:
    """The id a broken card's JSON declares, if it has one ('' otherwise)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    model_id = data.get("id") if isinstance(data, dict) else None
    return model_id if isinstance(model_id, str) else ""


def scan_models(extra_dirs: Sequence["str | Path"] = ()) -> Tuple[List[CardSummary], List[BrokenCard]]:
    """Summaries of every readable card, newest version of each id first, and the cards that cannot be read:
    one broken card must not hide the others."""
    summaries: Dict[str, List[CardSummary]] = {}
    broken: List[BrokenCard] = []
    for f in _card_files(search_dirs(extra_dirs)):
        try:
            s = read_card_summary(f)
        except CardError as exc:
            broken.append(BrokenCard(f, exc, _declared_id(f)))
            continue
        summaries.setdefault(s.id, []).append(s)
    out: List[CardSummary] = []
    for model_id in sorted(summaries):
        out += sorted(summaries[model_id], key=lambda s: _version_key(s.version), reverse=True)
    return out, broken


def list_models(extra_dirs: Sequence["str | Path"] = ()) -> List[CardSummary]:
    """Summaries of every readable card, newest version of each id first; unreadable cards are left out
    (:func:`scan_models` names them)."""
    return scan_models(extra_dirs)[0]


def resolve_model(model: str, extra_dirs: Sequence["str | Path"] = (),
                  log: Optional[Callable[[str, str], None]] = None) -> ModelCard:
    """``model`` is a folder or card path, or an id (optionally ``id@version``) found in the registry. A broken
    card declaring that id raises its own error; the other broken cards go to ``log`` as warnings."""
    as_path = Path(model)
    if as_path.exists():
        return load_card(as_path)
    model_id, _, version = model.partition("@")
    summaries, broken = scan_models(extra_dirs)
    matches = [s for s in summaries if s.id == model_id and (not version or s.version == version)]
    if not matches:
        for card in broken:
            if card.declared_id == model_id:
                raise card.error
        known = ", ".join(sorted({s.id for s in summaries})) or "none"
        where = ", ".join(str(d) for d in search_dirs(extra_dirs)) or "no folders"
        unreadable = f" Cards that cannot be read: {', '.join(str(c.path) for c in broken)}." if broken else ""
        raise ModelNotFoundError(
            f"Unknown model '{model}'. Known models: {known}. Searched: {where}.{unreadable} "
            f"Give a model folder path, add a folder with --models-dir or ${ENV_VAR}, "
            "or run 'medgan-translate models list'."
        )
    if log is not None:
        for card in broken:
            log("warning", card.warning())
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

