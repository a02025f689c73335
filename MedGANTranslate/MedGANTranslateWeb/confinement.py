"""What the browser may name: files under the data root only, uploads of known image formats only, zipped
DICOM series unpacked without escaping their folder or growing past a limit. Everything here refuses with a
:class:`RequestError` that says what was wrong and what to do; nothing outside the data root is ever opened."""
from __future__ import annotations

import os
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Dict, List

#: Image files a session can open; a ``.zip`` holds one DICOM series, a folder of ``.dcm`` files is one too.
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".dcm")
UPLOAD_SUFFIXES = IMAGE_SUFFIXES + (".zip",)
MAX_LISTED = 2000
MAX_ZIP_FILES = 5000


class RequestError(Exception):
    """A refused request: ``status`` is the HTTP status, the message says why and what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def suffix_of(name: str) -> str:
    """The image suffix of a file name ('' when it has none of :data:`UPLOAD_SUFFIXES`)."""
    lower = name.lower()
    return next((s for s in UPLOAD_SUFFIXES if lower.endswith(s)), "")


def inside(root: Path, relative: str) -> Path:
    """``relative`` (a path under the data root, as the file list gives it) resolved, symbolic links followed,
    and refused unless it exists and stays under ``root``."""
    if not relative or "\x00" in relative or PurePosixPath(relative).is_absolute() \
            or PureWindowsPath(relative).is_absolute() or PureWindowsPath(relative).drive:
        raise RequestError(403, f"'{relative}' is not a path under the data root; choose a file from the list.")
    root = root.resolve()
    candidate = (root / relative).resolve()
    if candidate != root and root not in candidate.parents:
        raise RequestError(403, f"'{relative}' is outside the data root; only files under it can be opened.")
    if not candidate.exists():
        raise RequestError(404, f"'{relative}' does not exist under the data root; refresh the file list.")
    return candidate


def _is_dicom_folder(folder: Path) -> bool:
    try:
        return any(entry.is_file() and entry.name.lower().endswith(".dcm") for entry in os.scandir(folder))
    except OSError:
        return False


def listing(root: Path) -> List[Dict[str, str]]:
    """Image files and DICOM folders under ``root`` (hidden entries and links leading out of it left out), as
    ``{"path": relative POSIX path, "kind": "file" | "dicom"}``, at most :data:`MAX_LISTED`."""
    root = root.resolve()
    found: List[Dict[str, str]] = []
    for folder, folders, files in os.walk(root):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        here = Path(folder)
        if here != root and _is_dicom_folder(here):
            found.append({"path": here.relative_to(root).as_posix(), "kind": "dicom"})
            folders[:] = []
            continue
        for name in sorted(files):
            if name.startswith(".") or not suffix_of(name) or name.lower().endswith((".dcm", ".zip")):
                continue
            path = here / name
            if root not in path.resolve().parents:
                continue
            found.append({"path": path.relative_to(root).as_posix(), "kind": "file"})
        if len(found) >= MAX_LISTED:
            break
    return found[:MAX_LISTED]


def extract_dicom_zip(archive: Path, folder: Path, max_bytes: int) -> Path:
    """Unpacks a zip holding one DICOM series into ``folder`` (an empty folder, created if missing) and returns it. Refused: members with
    absolute paths, '..', links or devices, more than :data:`MAX_ZIP_FILES` members, or more than ``max_bytes``
    unpacked (counted while copying, so a header that lies does not help)."""
    try:
        bundle = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise RequestError(400, f"The upload is not a readable zip ({exc}); zip the folder of the DICOM series again.") from exc
    with bundle:
        members = [m for m in bundle.infolist() if not m.is_dir()]
        if len(members) > MAX_ZIP_FILES:
            raise RequestError(413, f"The zip holds {len(members)} files; at most {MAX_ZIP_FILES} are unpacked. "
                                    "Upload one series.")
        folder.mkdir(parents=True, exist_ok=True)
        written = 0
        for index, member in enumerate(members):
            name = PurePosixPath(member.filename.replace("\\", "/"))
            mode = member.external_attr >> 16
            if name.is_absolute() or ".." in name.parts or (mode and not stat.S_ISREG(mode)):
                raise RequestError(400, f"The zip member '{member.filename}' is not a plain file inside the zip "
                                        "(absolute path, '..' or a link); zip the series folder again.")
            # flat, numbered names: the series' geometry comes from the headers, not from the file names
            with bundle.open(member) as source, open(folder / f"{index:05d}.dcm", "wb") as target:
                while True:
                    chunk = source.read(1 << 20)
                    if not chunk:
                        break
                    written += len(chunk)
                    if written > max_bytes:
                        raise RequestError(413, f"The zip unpacks to more than {max_bytes // (1 << 20)} MB; "
                                                "upload one series, or ask for a larger limit (--max-upload-mb).")
                    target.write(chunk)
    return folder


def remove_quietly(path: Path) -> None:
    """Removes a file or folder that may not exist."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()
