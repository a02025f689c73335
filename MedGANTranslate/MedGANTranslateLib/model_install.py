"""Installs a model folder, zipped, from a URL into the user's model store (``medgan-translate models install``),
and lists and uninstalls what is there. An install downloads into ``<store>/.downloads/<sha256>.part`` and
compares the zip's SHA-256 with the one given before anything is extracted (:mod:`.model_download`; a mismatch
deletes the download), checks and unpacks the archive into a staging folder inside the store
(:mod:`.model_archive`), validates its card, checks its weights against the card's SHA-256 and loads them once as
the engine would; only then is the folder renamed, in one step, to ``<store>/<id>-<version>``. Any failure
removes the staging folder, so the store holds either the whole model or nothing of it. Nothing in the package
is imported or run: Python files or programs in it are kept as files, and weights load only as the engine loads
any model's (safetensors, weights-only PyTorch pickles, TorchScript or ONNX graphs).
"""
from __future__ import annotations

import filecmp
import os
import re
import shutil
import time
import urllib.parse
import uuid
import zipfile
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from .card import CARD_FILENAME, ModelCard, load_card, read_card_summary
from .errors import Cancelled, CardError, InstallError, MedGANError, ModelNotFoundError, WeightsError
from .model_archive import check_archive, code_files, extract, model_root
from .model_download import TIMEOUT_S, LogCallback, check_sha256, download
from .progress import ProgressCallback, StageTimer
from .registry import _declared_id, _version_key, model_store, scan_models, verify_weights

try:  # POSIX: two installs of one package take turns
    import fcntl
except ImportError:  # Windows: no lock
    fcntl = None  # type: ignore[assignment]

DOWNLOADS = ".downloads"
STAGING = ".staging"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

CancelHook = Union[Callable[[], bool], Any]  # a callable, a threading.Event or a progress.CancelToken


@dataclass
class InstallResult:
    """What an install did: ``status`` is ``installed``, ``already-installed`` (the same files were there) or
    ``replaced`` (``force``); ``notes`` are things the user should know (also sent to ``log``)."""

    card: ModelCard
    status: str
    url: str
    sha256: str
    notes: List[str] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        return self.card.folder

    def to_dict(self) -> Dict[str, Any]:
        data = self.card.data
        return {
            "id": self.card.id,
            "version": self.card.version,
            "title": self.card.title,
            "license": data.get("license", ""),
            "intended_use": self.card.intended_use,
            "folder": str(self.folder),
            "weights_sha256": self.card.sha256,
        }


def _is_cancelled_fn(cancel: Optional[CancelHook]) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    for attribute in ("is_set", "cancelled"):  # threading.Event, progress.CancelToken
        if hasattr(cancel, attribute):
            value = getattr(cancel, attribute)
            return value if callable(value) else (lambda: bool(getattr(cancel, attribute)))
    if callable(cancel):
        return lambda: bool(cancel())
    raise TypeError(f"cancel must be a callable, a threading.Event or a CancelToken, got {type(cancel).__name__}")


def normalise_sha256(sha256: str) -> str:
    """The hex digest in lower case (a ``sha256:`` prefix is allowed); refuses anything else."""
    text = str(sha256).strip().lower()
    if text.startswith("sha256:"):
        text = text[len("sha256:"):]
    if not _SHA256.match(text):
        raise InstallError(f"--sha256 must be the 64 hexadecimal digits of the zip's SHA-256, got '{sha256}'.")
    return text


def install_model(
    url: str,
    sha256: str,
    store: "Optional[str | Path]" = None,
    force: bool = False,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelHook] = None,
    log: Optional[LogCallback] = None,
    timeout: float = TIMEOUT_S,
) -> InstallResult:
    """Downloads the zip at ``url``, checks it against ``sha256`` and installs the model folder it holds into
    ``store`` (default :func:`~.registry.model_store`). Raises :class:`InstallError`, :class:`CardError` or
    :class:`WeightsError` (nothing installed), or :class:`Cancelled` (nothing installed; a partial download kept
    for the next try)."""
    expected = normalise_sha256(sha256)
    if urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):
        raise InstallError(f"Only http:// and https:// URLs can be installed from, got '{url}'.")
    store = Path(store) if store is not None else model_store()
    is_cancelled = _is_cancelled_fn(cancel)
    say = log or (lambda level, message: None)
    try:
        (store / DOWNLOADS).mkdir(parents=True, exist_ok=True)
        (store / STAGING).mkdir(exist_ok=True)
    except OSError as exc:
        raise InstallError(f"The model store {store} cannot be written: {exc.strerror or exc}. Set "
                           "MEDGAN_TRANSLATE_HOME to a folder you may write to.") from exc
    part = store / DOWNLOADS / f"{expected}.part"
    with _exclusive(part, url):
        download(url, part, progress=progress, is_cancelled=is_cancelled, log=say, timeout=timeout)
        try:
            check_sha256(part, expected, url, progress)
            return _install_archive(part, url, expected, store, force, progress, is_cancelled, say)
        finally:
            part.unlink(missing_ok=True)  # checked: a failure from here on is no interrupted download


@contextmanager
def _exclusive(part: Path, url: str) -> Iterator[None]:
    """Two installs of the same package at once would write one ``.part``: the second is refused."""
    with ExitStack() as stack:
        if fcntl is not None:
            fd = os.open(str(part) + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
            stack.callback(os.close, fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                raise InstallError(f"Another install of {url} (the same SHA-256) is running; wait for it to "
                                   "finish.") from exc
            stack.callback(_remove_lock, Path(str(part) + ".lock"))
        yield


def _remove_lock(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _checked_card(root: Path, source: str) -> ModelCard:
    """The card validated, its weights matching its SHA-256 and loaded once as the engine loads them."""
    try:
        card = load_card(root)
        weights = card.weights_path.resolve()
        if root.resolve() not in weights.parents:
            raise CardError(f"Model card {card.path}: field 'weights.file' ('{card.weights['file']}') lies outside the "
                            "model folder.")
        verify_weights(card)
        from .checkpoints import load_generator  # torch: only once the package has passed every other check

        load_generator(card, "cpu", verify=False)
    except MedGANError as exc:
        raise type(exc)(_refused(source, str(exc), root)) from exc
    except Exception as exc:  # the network cannot be built from the card or loaded: refused like a bad card
        raise WeightsError(_refused(source, f"its network could not be loaded ({exc.__class__.__name__}: {exc}).",
                                    root)) from exc
    return card


def _refused(source: str, message: str, root: Path) -> str:
    for prefix in (str(root.resolve()), str(root)):
        message = message.replace(prefix, "<package>")
    return f"The model package from {source} was refused: {message} Nothing was installed."


def _same_files(a: Path, b: Path) -> bool:
    def files(root: Path) -> List[str]:
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    names = files(a)
    return names == files(b) and all(filecmp.cmp(a / n, b / n, shallow=False) for n in names)


@contextmanager
def _store_lock(store: Path) -> Iterator[None]:
    """Installs and uninstalls into one store take turns for the compare-and-rename step."""
    with ExitStack() as stack:
        if fcntl is not None:
            fd = os.open(store, os.O_RDONLY)
            stack.callback(os.close, fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield


STALE_AFTER_S = 60.0


@contextmanager
def _staging_folder(store: Path) -> Iterator[Path]:
    """A new folder in ``<store>/.staging``, locked while in use and removed afterwards; folders that a killed
    install or uninstall left there (unlocked, untouched for a minute) are removed first."""
    _sweep(store / STAGING)
    folder = store / STAGING / uuid.uuid4().hex[:12]
    folder.mkdir()
    with ExitStack() as stack:
        if fcntl is not None:
            fd = os.open(folder, os.O_RDONLY)
            stack.callback(os.close, fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _sweep(staging: Path) -> None:
    if fcntl is None or not staging.is_dir():
        return
    for folder in staging.iterdir():
        try:
            if time.time() - folder.stat().st_mtime < STALE_AFTER_S:
                continue
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # in use
        else:
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            os.close(fd)


def _install_archive(part: Path, url: str, sha256: str, store: Path, force: bool,
                     progress: Optional[ProgressCallback], is_cancelled: Callable[[], bool],
                     log: LogCallback) -> InstallResult:
    with _staging_folder(store) as staging:
        return _install_from(staging, part, url, sha256, store, force, progress, is_cancelled, log)


def _install_from(staging: Path, part: Path, url: str, sha256: str, store: Path, force: bool,
                  progress: Optional[ProgressCallback], is_cancelled: Callable[[], bool],
                  log: LogCallback) -> InstallResult:
    notes: List[Tuple[str, str]] = []
    try:
        archive = zipfile.ZipFile(part)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InstallError(f"The file downloaded from {url} is not a zip archive ({exc}). Nothing was installed.") from exc
    with archive:
        members = check_archive(archive, url)
        unpacked = staging / "unpacked"
        unpacked.mkdir()
        try:
            extract(archive, members, unpacked, url, progress, is_cancelled)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError) as exc:
            raise InstallError(f"The package from {url} could not be unpacked: {exc}. Nothing was installed.") from exc
        except OSError as exc:
            raise InstallError(f"The package from {url} could not be unpacked into {store}: {exc}. Nothing was "
                               "installed.") from exc
    root = model_root(unpacked, url)
    timer = StageTimer("check", 1, progress)
    timer.start("card, weights and network")
    card = _checked_card(root, url)
    code = code_files(root)
    if code:
        notes.append(("info", f"The package holds files that could be programs ({', '.join(code[:5])}"
                     f"{', ...' if len(code) > 5 else ''}); they are kept as files and never imported or run."))
    timer.finish()
    if is_cancelled():
        raise Cancelled("Install cancelled; nothing was installed.")
    target = store / f"{card.id}-{card.version}"
    with _store_lock(store):
        status = _move_into_place(root, target, staging, card, force)
    installed = load_card(target)
    notes += _shadowing_notes(installed, store)
    for level, note in notes:
        log(level, note)
    return InstallResult(installed, status, url, sha256, [note for _, note in notes])


def _move_into_place(root: Path, target: Path, staging: Path, card: ModelCard, force: bool) -> str:
    if not target.exists():
        os.rename(root, target)
        return "installed"
    try:
        there = read_card_summary(target)
        there_is = (there.id, there.version)
    except CardError:
        there_is = ("", "")
    if there_is != (card.id, card.version):
        raise InstallError(f"The folder {target} is in the way: it does not hold model '{card.id}' v{card.version}. "
                           "Move it out of the model store, then install again. Nothing was changed.")
    if _same_files(root, target):
        return "already-installed"
    if not force:
        raise InstallError(f"Model '{card.id}' v{card.version} is already installed in {target}, with different files. "
                           "A published model changes its version when its files change; to replace the installed "
                           "files anyway, install again with --force. Nothing was changed.")
    previous = staging / "previous"
    os.rename(target, previous)
    try:
        os.rename(root, target)
    except OSError:
        os.rename(previous, target)
        raise
    return "replaced"


def _shadowing_notes(card: ModelCard, store: Path) -> List[Tuple[str, str]]:
    """(level, message) about what ``--model ID`` picks when other folders hold the same id."""
    store = store.resolve()
    same_id = [s for s in scan_models()[0] if s.id == card.id]  # newest version first
    notes = []
    shadowing = [s for s in same_id if s.version == card.version and store not in s.path.parents]
    if shadowing:
        notes.append(("warning", f"Model '{card.id}' v{card.version} is also in {shadowing[0].path.parent}, which is "
                                 "used instead of the installed copy for --model ID and ID@VERSION."))
    if same_id and _version_key(same_id[0].version) > _version_key(card.version):
        notes.append(("info", f"--model {card.id} picks the newest version, {same_id[0].version}; give "
                              f"--model {card.id}@{card.version} for the one installed."))
    return notes


# -------------------------------------------------------------------------------------------- uninstall


def installed_models(store: "Optional[str | Path]" = None) -> List[Tuple[str, str, Path]]:
    """(id, version, folder) of every model folder in the store; a card that cannot be read gives the id it
    declares (or '') and version ''."""
    store = Path(store) if store is not None else model_store()
    found = []
    if not store.is_dir():
        return found
    for folder in sorted(store.iterdir()):
        if folder.name.startswith(".") or not (folder / CARD_FILENAME).is_file():
            continue
        try:
            summary = read_card_summary(folder)
            found.append((summary.id, summary.version, folder))
        except CardError:
            found.append((_declared_id(folder / CARD_FILENAME), "", folder))
    return found


def uninstall_model(model: str, store: "Optional[str | Path]" = None) -> Tuple[str, str, Path]:
    """Removes the model ``ID`` or ``ID@VERSION`` (or the store folder of that name) from the store and returns
    its (id, version, folder). Only the store is ever touched: bundled models and --models-dir folders are not."""
    store = Path(store) if store is not None else model_store()
    model_id, _, version = model.partition("@")
    installed = installed_models(store)
    matches = [m for m in installed if m[2].name == model
               or (m[0] == model_id and (not version or m[1] == version))]
    if not matches:
        known = ", ".join(f"{i}@{v}" if v else p.name for i, v, p in installed) or "none"
        elsewhere = next((s.path.parent for s in scan_models()[0] if s.id == model_id), None)
        where = f" '{model_id}' is in {elsewhere}, outside the store." if elsewhere is not None else ""
        raise ModelNotFoundError(f"No model '{model}' is installed in the model store {store} (installed: {known}).{where} "
                                 "Only models installed with 'medgan-translate models install' can be uninstalled; "
                                 "bundled models and --models-dir folders are never removed.")
    if len(matches) > 1:
        versions = ", ".join(f"{i}@{v}" for i, v, _ in matches)
        raise InstallError(f"Several versions of '{model_id}' are installed ({versions}); name the one to remove, "
                           f"e.g. 'medgan-translate models uninstall {model_id}@{matches[0][1]}'.")
    found = matches[0]
    trash = store / STAGING / f"{uuid.uuid4().hex[:12]}-removed"
    try:
        trash.parent.mkdir(exist_ok=True)
        with _store_lock(store):
            os.rename(found[2], trash)
    except OSError as exc:
        raise InstallError(f"Could not remove {found[2]}: {exc.strerror or exc}.") from exc
    shutil.rmtree(trash, ignore_errors=True)
    return found
