"""The image formats the engine reads and writes, and the words shared by every message about them.

Reading, header reading, output checks and writing all need the same few facts: which extensions are read and
written (``.nii.gz`` counted as one extension), how to tell the user which formats to give, and the useful line
of a SimpleITK error. They live here so those modules agree on them without depending on one another.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

PathLike = Union[str, "os.PathLike[str]"]

WRITABLE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
READABLE_EXTENSIONS = WRITABLE_EXTENSIONS + (".nhdr",)
FORMATS_HINT = (
    "use NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd), a folder holding one DICOM series "
    "or one enhanced (multi-frame) DICOM file"
)


def extension(path: Path) -> str:
    """Lower-case extension, with ``.nii.gz`` as one extension."""
    name = path.name.lower()
    for ext in READABLE_EXTENSIONS:
        if name.endswith(ext):
            return ext
    return path.suffix.lower()


def itk_reason(exc: Exception) -> str:
    """The useful last line of a SimpleITK exception, without the C++ source location."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[-1] if lines else str(exc)).split("ERROR:", 1)[-1].strip()
