"""The zip of a model package, checked and unpacked (``medgan-translate models install``): every member is checked
before a byte is written (no absolute paths, no ``..``, no links or special files, no encrypted members, no two
names that differ only in case, at most :data:`MAX_MEMBERS` members and :data:`MAX_TOTAL_BYTES` unpacked, no
member above :data:`RATIO_MIN_BYTES` that unpacks to more than :data:`MAX_RATIO` times its compressed size), and
the bytes are counted again while unpacking, since a zip's directory may understate them. Apart from the
download and the model store so that what a package may hold is stated, and tested, in one place.
"""
from __future__ import annotations

import re
import stat
import zipfile
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from .card import CARD_FILENAME
from .errors import Cancelled, InstallError
from .progress import ProgressCallback, StageTimer

#: Limits on what a package may unpack to (module attributes, so that tests can lower them).
MAX_MEMBERS = 1000
MAX_TOTAL_BYTES = 2 * 1024 ** 3
MAX_RATIO = 200
#: Members smaller than this are not held to :data:`MAX_RATIO`: a small file that compresses well is no bomb.
RATIO_MIN_BYTES = 1024 ** 2
CHUNK_BYTES = 1 << 16
#: Extensions of files that could be programs: reported, kept, never run.
CODE_SUFFIXES = (".py", ".pyc", ".pyw", ".ipynb", ".sh", ".bash", ".bat", ".cmd", ".ps1", ".exe", ".dll", ".so",
                 ".dylib", ".js", ".jar")


def human_size(size: Optional[float]) -> str:
    if size is None:
        return "an unknown size"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{int(size)} B"



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


def model_root(unpacked: Path, source: str) -> Path:
    """The folder holding ``model.json``: the zip's top level, or its one top-level folder."""
    if (unpacked / CARD_FILENAME).is_file():
        return unpacked
    entries = [p for p in unpacked.iterdir() if p.name != "__MACOSX"]  # macOS Finder's resource forks
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / CARD_FILENAME).is_file():
        return entries[0]
    raise InstallError(f"The package from {source} holds no {CARD_FILENAME} at its top level or in a single top-level "
                       "folder: zip a model folder (model.json and its weights), or the files in it. Nothing was "
                       "installed.")


def code_files(root: Path) -> List[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in CODE_SUFFIXES)
