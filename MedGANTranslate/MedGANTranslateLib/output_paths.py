"""Checking output paths before any work starts, so a job never replaces a file it did not create.

An output is an image file with its companions (a MetaImage's data file, a NIfTI image's JSON sidecar) or a
DICOM folder. :func:`check_output_path` and :func:`check_output_paths` refuse, naming both files, an output that
would overwrite an input or one of its companions, another output of the same job, a folder, or a file inside
a DICOM output folder, and an extension that cannot be written, before anything is computed; the writer
(:mod:`.image_writing`) checks the path again when it stages the file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Mapping, Sequence, Tuple

from .errors import OutputError
from .image_formats import WRITABLE_EXTENSIONS, PathLike, extension

_DATA_FILE_EXTENSIONS = (".raw", ".zraw")


def is_dicom_output(path: PathLike) -> bool:
    """A DICOM output is a folder: a path ending with a separator, an existing folder, or a name without suffix."""
    text = os.fspath(path)
    return text.endswith(("/", os.sep)) or Path(text).is_dir() or Path(text).suffix == ""


def companions(path: Path) -> List[Path]:
    """Files written besides ``path``: the data file of a .mhd, the JSON sidecar of a NIfTI image."""
    ext = extension(path)
    stem = path.name[: -len(ext)] if ext else path.name
    if ext == ".mhd":
        return [path.with_name(stem + e) for e in _DATA_FILE_EXTENSIONS]
    if ext in (".nii", ".nii.gz"):
        return [path.with_name(stem + ".json")]
    return []


def _files_of(path: Path, owner: str) -> List[Tuple[Path, str]]:
    """``path`` and its companion files, each with the words that name it in a message: for ``owner`` 'the
    input', 'the input /a/t1.nii.gz' and 'the sidecar /a/t1.json of the input /a/t1.nii.gz'."""
    return [(path, f"{owner} {path}")] + [
        (item, f"the {'sidecar' if item.suffix == '.json' else 'data file'} {item} of {owner} {path}")
        for item in companions(path)
    ]


def _sentence(words: str) -> str:
    return words[:1].upper() + words[1:]


def _same_file(a: Path, b: Path) -> bool:
    def norm(p: Path) -> str:
        return os.path.normcase(os.path.normpath(os.path.realpath(os.path.abspath(os.fspath(p)))))

    try:
        resolved = a.resolve() == b.resolve()
    except (OSError, RuntimeError):  # a symbolic link loop (RuntimeError before Python 3.13): the input refuses it
        resolved = False
    return resolved or norm(a) == norm(b)


def check_output_path(path: PathLike, inputs: Sequence[PathLike], role: str = "output") -> Path:
    """Validates an output path before any work starts; returns it absolute.

    A DICOM output (see :func:`is_dicom_output`) must be a new or empty folder; a file output must have a
    writable extension and no folder where it or its companions go. The parent folder must exist, and no file
    written may be an input or one of an input's files (the BIDS sidecar ``sub-01_T1w.json`` of the input
    ``sub-01_T1w.nii.gz`` is also the sidecar of a ``sub-01_T1w.nii`` output)."""
    dicom = is_dicom_output(path)
    path = Path(os.path.abspath(os.fspath(path)))
    parent = path.parent
    if not parent.is_dir():
        raise OutputError(f"The output folder {parent} does not exist; create it first.")
    if dicom:
        if path.is_dir() and any(path.iterdir()):
            raise OutputError(
                f"The DICOM output folder {path} is not empty; give a new or empty folder, or a file name ending "
                f"in {', '.join(WRITABLE_EXTENSIONS)}."
            )
        if path.exists() and not path.is_dir():
            raise OutputError(f"The DICOM output folder {path} is an existing file; give a folder path.")
    elif extension(path) not in WRITABLE_EXTENSIONS:
        raise OutputError(
            f"Cannot write the output {path}: unsupported extension '{extension(path)}'. Use one of "
            f"{', '.join(WRITABLE_EXTENSIONS)}, or a folder path (ending with '/') for a DICOM series."
        )
    _refuse_taken(_files_of(path, f"the {role}"), inputs, role, folders=not dicom)
    return path


def _refuse_taken(files: Sequence[Tuple[Path, str]], inputs: Sequence[PathLike], role: str, folders: bool) -> None:
    """Refuses output files (path, words) that are an input's, or with ``folders`` where a folder is."""
    for target, words in files:
        if folders and target.is_dir():
            raise OutputError(f"{_sentence(words)} is an existing folder; give the {role} another name.")
        for owned, owner in (pair for item in inputs for pair in _files_of(Path(item), "the input")):
            if _same_file(target, owned):
                raise OutputError(f"{_sentence(words)} is {owner}; choose another name for the {role} so the "
                                  "input is kept.")


def check_output_paths(images: Mapping[str, PathLike], files: Mapping[str, PathLike],
                       inputs: Sequence[PathLike]) -> None:
    """Refuses, before any work starts, a job whose outputs would replace a file it did not create or each
    other, naming both: each image output (role: path) as :func:`check_output_path` checks it; each plain
    file (role: path, such as the metrics) in an existing folder, not a folder, not an input's; no two outputs
    writing one file (a path given twice, ``a.nii`` and ``a.nii.gz`` sharing ``a.json``, metrics at an image's
    sidecar); nothing inside a DICOM output folder, which must hold its series alone."""
    absolute = {role: Path(os.path.abspath(os.fspath(path))) for role, path in {**images, **files}.items()}
    for role, path in images.items():
        check_output_path(path, inputs, role)
    for role in files:
        path = absolute[role]
        if not path.parent.is_dir():
            raise OutputError(f"The folder {path.parent} of the {role} {path} does not exist; create it first.")
        _refuse_taken([(path, f"the {role} {path}")], inputs, role, folders=True)
    claimed = [pair for role in images for pair in _files_of(absolute[role], f"the {role}")]
    claimed += [(absolute[role], f"the {role} {absolute[role]}") for role in files]
    for i, (a, words_a) in enumerate(claimed):
        for b, words_b in claimed[i + 1:]:
            if _same_file(a, b):
                raise OutputError(f"{_sentence(words_a)} and {words_b} are one file; give each output its own name.")
    for role in (role for role, path in images.items() if is_dicom_output(path)):
        for item, words in claimed:
            if absolute[role] in item.parents:
                raise OutputError(f"{_sentence(words)} is inside the DICOM folder {absolute[role]} of the {role}, "
                                  "which must hold its series alone; write it elsewhere.")
