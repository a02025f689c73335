"""Installs a model folder, zipped, from a URL into the user's model store (``medgan-translate models install``).

What an install promises:

* The zip is downloaded with the standard library into ``<store>/.downloads/<sha256>.part``; a download that
  stops (a cut connection, a timeout, a cancel) leaves that file, and the next install of the same SHA-256
  resumes it with an HTTP ``Range`` request (a server that answers with the whole file restarts it cleanly).
* The zip's SHA-256 is compared with the one given **before anything is extracted**; a mismatch deletes the
  download.
* The archive is checked before a byte is written: no absolute paths, no ``..``, no links or special files, at
  most :data:`MAX_MEMBERS` members, at most :data:`MAX_TOTAL_BYTES` unpacked, and no member above
  :data:`RATIO_MIN_BYTES` that unpacks to more than :data:`MAX_RATIO` times its compressed size (zip bombs).
* It is unpacked into a staging folder inside the store (same file system), its card is validated, its weights
  are checked against the card's SHA-256 and loaded once as the engine would load them; only then is the
  folder renamed, in one step, to ``<store>/<id>-<version>``. Any failure removes the staging folder: the store
  holds either the whole model or nothing of it.
* Nothing in the package is imported or run: Python files or programs in it are kept as files, never executed.
  Weights load only as the engine loads any model's (safetensors, weights-only PyTorch pickles, TorchScript or
  ONNX graphs).
"""
from __future__ import annotations

import filecmp
import http.client
import os
import re
import shutil
import socket
import stat
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from .card import CARD_FILENAME, ModelCard, load_card, read_card_summary
from .errors import Cancelled, CardError, InstallError, MedGANError, ModelNotFoundError, WeightsError
from .progress import ProgressCallback, ProgressEvent, StageTimer
from .registry import _declared_id, _version_key, model_store, scan_models, sha256_file, verify_weights

try:  # POSIX: two installs of one package take turns
    import fcntl
except ImportError:  # Windows: no lock
    fcntl = None  # type: ignore[assignment]

#: Limits on what a package may unpack to (module attributes, so that tests can lower them).
MAX_MEMBERS = 1000
MAX_TOTAL_BYTES = 2 * 1024 ** 3
MAX_RATIO = 200
#: Members smaller than this are not held to :data:`MAX_RATIO`: a small file that compresses well is no bomb.
RATIO_MIN_BYTES = 1024 ** 2
#: The zip itself may be no larger than what it may unpack to.
MAX_DOWNLOAD_BYTES = MAX_TOTAL_BYTES
TIMEOUT_S = 30.0
CHUNK_BYTES = 1 << 16
PROGRESS_INTERVAL_S = 0.2

DOWNLOADS = ".downloads"
STAGING = ".staging"
#: Extensions of files that could be programs: reported, kept, never run.
CODE_SUFFIXES = (".py", ".pyc", ".pyw", ".ipynb", ".sh", ".bash", ".bat", ".cmd", ".ps1", ".exe", ".dll", ".so",
                 ".dylib", ".js", ".jar")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

CancelHook = Union[Callable[[], bool], Any]  # a callable, a threading.Event or a progress.CancelToken
LogCallback = Callable[[str, str], None]


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


def human_size(size: Optional[float]) -> str:
    if size is None:
        return "an unknown size"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{int(size)} B"


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
            _check_sha256(part, expected, url, progress)
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


# ------------------------------------------------------------------------------------------------ download


def download(url: str, part: Path, progress: Optional[ProgressCallback] = None,
             is_cancelled: Callable[[], bool] = lambda: False, log: LogCallback = lambda level, message: None,
             timeout: float = TIMEOUT_S) -> Path:
    """Streams ``url`` into ``part``, resuming what is there with a ``Range`` request. Raises
    :class:`InstallError` (the part kept when the transfer stopped, so the next call resumes it) or
    :class:`Cancelled`."""
    for attempt in range(3):
        have = part.stat().st_size if part.exists() else 0
        response = _open(url, have, timeout)
        if response is None:  # 416: nothing more to send; the hash check decides whether the part is whole
            return part
        with response:
            status = response.status
            length = response.headers.get("Content-Length")
            length = int(length) if length and length.isdigit() else None
            if have and status == 206:
                start, total = _content_range(response.headers.get("Content-Range", ""))
                if start != have:  # not the range asked for: start again from nothing
                    log("warning", f"The server sent bytes from {start} instead of {have}; downloading again.")
                    part.unlink()
                    continue
                if total is None and length is not None:
                    total = have + length
                mode = "ab"
            else:
                if have:
                    log("info", "The server does not resume downloads; downloading the whole file again.")
                have, total, mode = 0, length, "wb"
            if total is not None and total > MAX_DOWNLOAD_BYTES:
                part.unlink(missing_ok=True)
                raise InstallError(f"The file at {url} is {human_size(total)}, more than the {human_size(MAX_DOWNLOAD_BYTES)} "
                                   "a model package may be. It was not downloaded.")
            if have:
                log("info", f"Resuming the download of {url} at {human_size(have)}.")
            _stream(response, part, mode, have, total, url, progress, is_cancelled)
            return part
    raise InstallError(f"The server at {url} did not send the part of the file asked for; try again later.")


def _open(url: str, have: int, timeout: float):
    headers = {"User-Agent": "medgan-translate model installer", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - the scheme is checked: http(s)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and have:
            return None
        raise InstallError(f"The server answered {exc.code} {exc.reason} for {url}; check the URL. Nothing was "
                           "installed.") from exc
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, socket.timeout) or isinstance(reason, TimeoutError):
            reason = f"no answer within {timeout:g} s"
        raise InstallError(f"Could not reach {url}: {reason}. Check the URL and the network connection; nothing was "
                           "installed.") from exc
    except (socket.timeout, TimeoutError) as exc:
        raise InstallError(f"The server at {url} did not answer within {timeout:g} s; try again later. Nothing was "
                           "installed.") from exc
    except (http.client.HTTPException, OSError) as exc:
        raise InstallError(f"Could not download {url}: {exc}. Nothing was installed.") from exc


def _content_range(value: str) -> Tuple[Optional[int], Optional[int]]:
    """``bytes START-END/TOTAL`` → (START, TOTAL); TOTAL None when ``*``."""
    match = re.match(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)", value)
    if not match:
        return None, None
    total = match.group(3)
    return int(match.group(1)), (int(total) if total != "*" else None)


def _stream(response, part: Path, mode: str, have: int, total: Optional[int], url: str,
            progress: Optional[ProgressCallback], is_cancelled: Callable[[], bool]) -> None:
    done, start = have, time.perf_counter()
    last = {"time": 0.0}

    def report(final: bool = False) -> None:
        if progress is None:
            return
        now = time.perf_counter()
        if not final and now - last["time"] < PROGRESS_INTERVAL_S and done != have:
            return
        last["time"] = now
        elapsed = now - start
        eta = None
        if total and done > have and done < total:
            eta = elapsed / (done - have) * (total - done)
        elif total and done >= total:
            eta = 0.0
        message = f"{human_size(done)} of {human_size(total)}" if total else human_size(done)
        progress(ProgressEvent("download", done, total or 0, message, eta, elapsed))

    def stopped(reason: str) -> InstallError:
        of = f" of {human_size(total)}" if total else ""
        return InstallError(f"The download of {url} stopped after {human_size(done)}{of}: {reason}. What was downloaded "
                            f"is kept ({part}); run the same install again to resume. Nothing was installed.")

    read = getattr(response, "read1", response.read)  # what has arrived, so that a slow server still reports progress
    with open(part, mode) as f:
        report()
        while True:
            if is_cancelled():
                f.flush()
                raise Cancelled(f"Install cancelled; nothing was installed. The {human_size(done)} downloaded so far "
                                f"are kept in {part}, and the same install resumes from there.")
            try:
                block = read(CHUNK_BYTES)
            except (socket.timeout, TimeoutError) as exc:
                raise stopped("no data for too long") from exc
            except (http.client.HTTPException, OSError) as exc:
                raise stopped(f"the connection broke ({exc.__class__.__name__}: {exc})") from exc
            if not block:
                break
            f.write(block)
            done += len(block)
            if done > MAX_DOWNLOAD_BYTES:
                f.close()
                part.unlink(missing_ok=True)
                raise InstallError(f"The file at {url} is larger than the {human_size(MAX_DOWNLOAD_BYTES)} a model "
                                   "package may be; the download was stopped and deleted.")
            report()
    if total is not None and done < total:
        raise stopped("the server closed the connection")
    report(final=True)


def _check_sha256(part: Path, expected: str, url: str, progress: Optional[ProgressCallback]) -> None:
    timer = StageTimer("verify", 1, progress)
    timer.start("SHA-256 of the download")
    actual = sha256_file(part)
    if actual != expected:
        part.unlink(missing_ok=True)
        raise InstallError(f"The file downloaded from {url} has SHA-256 {actual}, not {expected} as given with --sha256. "
                           "It was deleted and nothing was extracted or installed. Check the URL and the hash the "
                           "model's publisher gives.")
    timer.finish()


# --------------------------------------------------------------------------------------------- extraction


def check_archive(archive: zipfile.ZipFile, source: str) -> List[Tuple[zipfile.ZipInfo, Tuple[str, ...]]]:
    """Each member with its path parts, after refusing anything unsafe (before a byte is written)."""
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise InstallError(f"The package from {source} holds {len(infos)} files and folders, more than the "
                           f"{MAX_MEMBERS} a model package may hold. Nothing was installed.")
    members, seen, total = [], set(), 0
    for info in infos:
        name = info.filename

        def refuse(why: str) -> InstallError:
            return InstallError(f"The package from {source} was refused: its member '{name}' {why}. Nothing was "
                                "extracted or installed.")

        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
            raise refuse("has an absolute path")
        parts = tuple(p for p in re.split(r"[\\/]", name) if p not in ("", "."))
        if ".." in parts:
            raise refuse("has a path that leaves the model folder ('..')")
        if "\x00" in name:
            raise refuse("has a NUL character in its name")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise refuse("is a symbolic link")
        if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise refuse("is a special file (not a regular file or folder)")
        if info.flag_bits & 0x1:
            raise refuse("is encrypted")
        if not parts:
            continue
        key = "/".join(parts).lower()
        if key in seen:
            raise refuse("appears twice (names that differ only in case count as one)")
        seen.add(key)
        total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise InstallError(f"The package from {source} unpacks to more than {human_size(MAX_TOTAL_BYTES)}, the most "
                               "a model package may hold. Nothing was extracted or installed.")
        if info.file_size > RATIO_MIN_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise refuse(f"unpacks to {human_size(info.file_size)} from {human_size(info.compress_size)}, more than "
                         f"{MAX_RATIO} times its size (a zip bomb)")
        members.append((info, parts))
    return members


def extract(archive: zipfile.ZipFile, members: List[Tuple[zipfile.ZipInfo, Tuple[str, ...]]], folder: Path,
            source: str, progress: Optional[ProgressCallback] = None,
            is_cancelled: Callable[[], bool] = lambda: False) -> None:
    """Writes the checked members under ``folder`` (which must be empty), counting the bytes as they come: the
    sizes in a zip's directory are not trusted to bound what it unpacks to. File modes are the umask's."""
    timer = StageTimer("extract", max(1, len(members)), progress)
    timer.start()
    written = 0
    for info, parts in members:
        if is_cancelled():
            raise Cancelled("Install cancelled; nothing was installed.")
        target = folder.joinpath(*parts)
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(target, "xb") as dst:
                while True:
                    block = src.read(CHUNK_BYTES)
                    if not block:
                        break
                    written += len(block)
                    if written > MAX_TOTAL_BYTES:
                        raise InstallError(f"The package from {source} unpacks to more than "
                                           f"{human_size(MAX_TOTAL_BYTES)}. Nothing was installed.")
                    dst.write(block)
        timer.advance()
    timer.finish()


def _model_root(unpacked: Path, source: str) -> Path:
    """The folder holding ``model.json``: the zip's top level, or its one top-level folder."""
    if (unpacked / CARD_FILENAME).is_file():
        return unpacked
    entries = [p for p in unpacked.iterdir() if p.name != "__MACOSX"]  # macOS Finder's resource forks
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / CARD_FILENAME).is_file():
        return entries[0]
    raise InstallError(f"The package from {source} holds no {CARD_FILENAME} at its top level or in a single top-level "
                       "folder: zip a model folder (model.json and its weights), or the files in it. Nothing was "
                       "installed.")


def _code_files(root: Path) -> List[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in CODE_SUFFIXES)


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
    root = _model_root(unpacked, url)
    timer = StageTimer("check", 1, progress)
    timer.start("card, weights and network")
    card = _checked_card(root, url)
    code = _code_files(root)
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
