"""A job's outputs written as one transaction: each staged beside its destination and verified, then all moved
into place together.

A job writes up to three outputs (synthetic image, difference map, metrics), some with companion files (a NIfTI
image's JSON sidecar, a .mhd header's data file). Written and moved one at a time, a failure of a later one (a
full disk) or a cancel left the earlier ones replaced, and the clean-up then deleted them: the files that had
been at those paths were lost while the message said that nothing was written. So:

1. :meth:`OutputSet.stage` writes one output into a staging folder of its own, ``.<name>.<random>.partial`` in
   the destination's folder (the same file system, so the final move is a rename); the writer reads what it
   wrote back and compares it with what it meant to write (:mod:`.image_writing`), then the files are flushed to the
   disk (a network file system or a quota may report a failed write only then). A failure is an
   :class:`~.errors.OutputError` that says why in the user's terms (:func:`failure_reason`).
2. :meth:`OutputSet.commit`, once every output is staged, looks at the cancel token a last time (a cancel after
   that comes too late: the job completes), then renames everything into place, each output's companions
   before its main file, holding a lock on each destination folder so that two jobs writing the same paths
   cannot interleave their renames. If a rename fails, those done are undone: each earlier file comes back
   from a hard link taken just before it was replaced.
3. Leaving the ``with`` block removes the staging folders, whatever happened.

Files get the modes the umask gives (a DICOM output folder is its staging folder renamed). Only files the job
created are ever removed.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Mapping, Optional, Sequence, Tuple

from .errors import OutputError
from .progress import CancelToken

try:  # POSIX: commits into one folder take turns
    import fcntl
except ImportError:  # Windows: no lock on a folder; two jobs writing one path at the same moment may mix
    fcntl = None  # type: ignore[assignment]
try:
    import resource
except ImportError:  # Windows: no file size limit to look at
    resource = None  # type: ignore[assignment]

#: The end of every write failure's message: true because nothing is moved before everything is verified.
NOTHING_WRITTEN = "Nothing was written: the files at the output paths are as they were."
_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_NOT_ALLOWED = (errno.EACCES, errno.EPERM, errno.EROFS)


class StagingError(Exception):
    """A staged output that its writer could not write, or that does not read back as it was meant; the message
    says what happened, in words for the user."""


@dataclass
class _Staged:
    path: Path  # where the output goes: a file, or a DICOM series folder
    role: str  # what it is, for messages ("synthetic image")
    staging: Path  # its staging folder
    folder: bool  # the staging folder itself becomes ``path`` (a DICOM series) instead of holding its files

    def moves(self) -> List[Tuple[Path, Path]]:
        """(staged, destination) pairs in the order they are renamed: a folder whole; files with the main file
        last, so that whoever sees it finds its sidecar or data file already there."""
        if self.folder:
            return [(self.staging, self.path)]
        files = sorted(self.staging.iterdir(), key=lambda item: item.name == self.path.name)
        return [(item, self.path.parent / item.name) for item in files]


class OutputSet:
    """The outputs of one job: ``with OutputSet(cancel) as outputs: outputs.stage(...); ...; outputs.commit()``.

    ``cancel`` is checked after each staged output and once more just before the first rename."""

    def __init__(self, cancel: Optional[CancelToken] = None) -> None:
        self.cancel = cancel
        self._staged: List[_Staged] = []

    def __enter__(self) -> "OutputSet":
        return self

    def __exit__(self, *exc_info) -> None:
        self.discard()

    def discard(self) -> None:
        """Removes the staging folders: what is left of them after a commit (the hard links that kept the
        replaced files), or everything staged after a failure or a cancel."""
        for staged in self._staged:
            shutil.rmtree(staged.staging, ignore_errors=True)

    def stage(self, path: Path, role: str, write: Callable[[Path], None], size: int, largest: Optional[int] = None,
              folder: bool = False) -> Path:
        """Writes the output for ``path`` with ``write(staging_folder)``: its files under their final names in
        that folder, or with ``folder`` the DICOM series into it; ``write`` reads them back and raises
        :class:`StagingError` when they differ from what it meant. ``size`` (bytes it takes, uncompressed) and
        ``largest`` (of its largest file; ``size`` by default) tell a full disk and the file size limit apart
        when the writer does not (see :func:`failure_reason`)."""
        try:
            staging = _staging_folder(path)
            self._staged.append(_Staged(path, role, staging, folder))
            write(staging)
            for item in [staging] + sorted(staging.iterdir()):
                _flush(item)
        except (OSError, StagingError) as exc:
            self.discard()  # first, so that the message sees the free space the user will see
            reason = failure_reason(exc, path.parent, size, size if largest is None else largest)
            raise OutputError(f"Cannot write the {role} {path}: {reason} {NOTHING_WRITTEN}") from exc
        if self.cancel is not None:
            self.cancel.raise_if_cancelled()
        return path

    def stage_json(self, path: Path, role: str, data: Mapping) -> Path:
        """Stages ``data`` as an indented JSON file for ``path``."""
        return self.stage_text(path, role, json_text(data))

    def stage_text(self, path: Path, role: str, text: str) -> Path:
        """Stages ``text`` as a UTF-8 file for ``path`` (a metrics file, a QA report)."""
        return self.stage(path, role, lambda staging: write_text(staging / path.name, text), len(text.encode()))

    def commit(self) -> None:
        """Moves every staged output into place. The cancel token's last check comes first: from the first
        rename on, the job completes, and a cancel arriving now is too late (the command line exits 0: the
        outputs are in place). A rename that fails undoes those done and raises :class:`OutputError`."""
        if self.cancel is not None:
            self.cancel.raise_if_cancelled()
        moves = [(staged, move) for staged in self._staged for move in staged.moves()]
        folders = sorted({staged.path.parent for staged in self._staged})
        with _locked(folders):
            undo: List[Callable[[], None]] = []
            for staged, (source, target) in moves:
                try:
                    undo.append(_replace(source, target, staged.staging))
                except OSError as exc:
                    raise OutputError(f"Cannot move the {staged.role} into place at {target}: "
                                      f"{failure_reason(exc, target.parent, 0, 0)} {_undo(undo)}") from exc
        for folder in folders:
            _flush(folder)


def json_text(data: Mapping) -> str:
    """How the engine writes JSON files (metrics, NIfTI sidecars): indented, keys sorted, one final newline."""
    return json.dumps(dict(data), indent=2, sort_keys=True) + "\n"


def write_text(path: Path, text: str) -> None:
    """Writes ``text`` to the new file ``path`` and reads it back; :class:`StagingError` if it differs."""
    with open(path, "x", encoding="utf-8", newline="\n") as f:
        f.write(text)
    with open(path, encoding="utf-8", newline="\n") as f:
        if f.read() != text:
            raise StagingError(f"{path.name} reads back different from what was written")


def failure_reason(exc: BaseException, folder: Path, size: int, largest: int) -> str:
    """Why writing an output of ``size`` bytes (its largest file ``largest``) into ``folder`` failed, and what
    to do, in the user's terms. An OSError's errno says it. ITK's writers report a full disk or the file size
    limit as something else ('DICOM does not support this component type') or only on stderr (the NIfTI writer
    cuts the file short and goes on; the read-back then finds it), so for them the free space (once the staged
    files are removed) and the file size limit are looked at before their own words."""
    code = exc.errno if isinstance(exc, OSError) and exc.errno else _limit_in_the_way(folder, size, largest)
    if code in _DISK_FULL:
        needs = f", and the output needs about {_human(size)}" if size else ""
        return (f"the disk is full ({_human(shutil.disk_usage(folder).free)} free in {folder}{needs}). Free some "
                "space there or write the outputs to another disk.")
    if code == errno.EFBIG:
        limit = _file_size_limit()
        stated = f", {_human(limit)}" if limit is not None else ""
        return (f"the file size limit of this process (ulimit -f{stated}) is smaller than the file, which needs "
                f"about {_human(largest)}. Raise the limit (ulimit -f unlimited in the shell that runs the job).")
    if isinstance(exc, OSError):
        advice = " Write to a folder you may write to." if exc.errno in _NOT_ALLOWED else ""
        return f"{exc.strerror or exc}.{advice}"
    return f"{exc}."


def _limit_in_the_way(folder: Path, size: int, largest: int) -> Optional[int]:
    """The errno that writing ``size`` bytes into ``folder``, ``largest`` of them into one file, meets: EFBIG
    beyond the file size limit, ENOSPC where the disk has less than ``size`` free; None when neither is in the
    way."""
    limit = _file_size_limit()
    if limit is not None and largest > limit:
        return errno.EFBIG
    return errno.ENOSPC if shutil.disk_usage(folder).free < size else None


def _file_size_limit() -> Optional[int]:
    """The largest file this process may write (RLIMIT_FSIZE, ``ulimit -f``), None when unlimited."""
    if resource is None:
        return None
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else int(soft)


def _human(size: int) -> str:
    """A byte count for people: 258 kB, 2.1 MB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} B"


def _staging_folder(path: Path) -> Path:
    """A new folder ``.<name>.<random>.partial`` beside ``path``, with the mode the umask gives (tempfile's
    would be 0700, and a DICOM output folder is this folder renamed)."""
    folder = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.partial"
    folder.mkdir()
    return folder


def _flush(path: Path) -> None:
    """Flushes a file to the disk (fsync: a network file system or a quota may report a failed write only
    then), and a folder's entries where the system can: Windows cannot open a folder, some network file
    systems refuse to flush one, and that only makes the renames durable later."""
    if not path.is_dir():
        _fsync(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)  # Windows flushes files open for writing
    elif os.name != "nt":
        with suppress(OSError):
            _fsync(path, os.O_RDONLY)


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _locked(folders: Sequence[Path]) -> Iterator[None]:
    """An exclusive lock (flock) on each folder, taken in sorted order so that two jobs never wait for each
    other's; nothing where there is no flock."""
    with ExitStack() as stack:
        if fcntl is not None:
            for folder in folders:
                fd = os.open(folder, os.O_RDONLY)
                stack.callback(os.close, fd)
                fcntl.flock(fd, fcntl.LOCK_EX)
        yield


def _replace(source: Path, target: Path, keep_in: Path) -> Callable[[], None]:
    """Renames ``source`` to ``target``, replacing what is there, and returns how to undo that: ours goes back
    to ``source`` and the file that was at ``target`` comes back from a hard link kept in ``keep_in``; an empty
    folder that was there is made again."""
    if target.is_dir() and not target.is_symlink():
        target.rmdir()  # an empty DICOM output folder (checked before the job); Windows renames onto no folder
        os.replace(source, target)
        return lambda: (os.replace(target, source), target.mkdir())
    kept = _hard_link(target, keep_in)
    os.replace(source, target)

    def undo() -> None:
        os.replace(target, source)
        if kept is not None:
            os.replace(kept, target)

    return undo


def _hard_link(path: Path, folder: Path) -> Optional[Path]:
    """A hard link in ``folder`` to the file at ``path``: None when there is none, or where the file system has
    no hard links (a later rename that fails then cannot bring that file back)."""
    kept = folder / f".kept.{path.name}"
    try:
        os.link(path, kept, follow_symlinks=False)
    except (OSError, NotImplementedError):
        return None
    return kept


def _undo(undo: Sequence[Callable[[], None]]) -> str:
    """Undoes the renames done, latest first; returns what the message can say about the output paths."""
    failed = []
    for step in reversed(undo):
        try:
            step()
        except OSError as exc:
            failed.append(f"{exc.filename}: {exc.strerror}")
    return f"Could not put back every earlier file ({'; '.join(failed)})." if failed else NOTHING_WRITTEN
