"""Reading an input image, with every check it must pass, and the checks of a volume before translation.

:func:`read_image` is the one way the engine reads an input: an image file (NIfTI, NRRD, MetaImage), a folder
holding one DICOM series or one enhanced DICOM file (:mod:`.dicom_reading`). Every problem a user can cause (a
missing or unreadable path, an unsupported format, a file cut short, complex voxels, a sheared grid, non-finite
values) is raised as :class:`InputError` naming the file, its role and what to do; :func:`check_volume` then
refuses what a 3D generator cannot translate. :mod:`.image_headers` reads the same inputs without their voxels.
"""
from __future__ import annotations

import errno
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Union

import numpy as np
import SimpleITK as sitk

from . import file_checks
from .dicom_reading import is_dicom_file, read_dicom_folder, read_enhanced
from .errors import InputError
from .image_formats import FORMATS_HINT, READABLE_EXTENSIONS, PathLike, extension, itk_reason


def _unreachable(path: Path, role: str, exc: OSError) -> str:
    """Why ``path`` cannot be found, as the operating system said it (``exc``, from stat)."""
    if exc.errno == errno.ELOOP:
        return (f"The {role} image {path} is a symbolic link loop ({exc.strerror}): the links lead back to "
                "themselves and to no file; give the real image file.")
    if exc.errno == errno.ENOENT and path.is_symlink():
        return (f"The {role} image {path} is a symbolic link to {os.readlink(path)}, which does not exist; give "
                "the real image file, or move it back where the link points.")
    if exc.errno == errno.ENOENT or exc.errno == errno.ENOTDIR:
        return f"The {role} image {path} does not exist; check the path and the file name."
    return (f"The {role} image {path} cannot be reached ({exc.strerror}); check the path and that you may open "
            "each folder on it.")


def check_readable(path: Path, role: str) -> None:
    """Refuses a path that cannot be read, saying why (missing, a symbolic link to nowhere, no permission), and
    a file in a format that is not supported."""
    try:
        os.stat(path)
    except OSError as exc:
        raise InputError(_unreachable(path, role, exc)) from exc
    try:
        if path.is_dir():
            os.scandir(path).close()
        else:
            open(path, "rb").close()
    except OSError as exc:
        raise InputError(
            f"The {role} image {path} is not readable ({exc.strerror}); ask its owner for read permission (e.g. "
            "chmod u+r, and u+x for a folder) or copy it somewhere you can read."
        ) from exc
    if not path.is_dir() and extension(path) not in READABLE_EXTENSIONS and not is_dicom_file(path):
        suffix = extension(path) or "no extension"
        dicom_hint = " For DICOM, give the folder that holds the series, not one file." if suffix in (
            "no extension", ".dcm", ".ima") else ""
        raise InputError(f"The {role} image {path} has an unsupported format ({suffix}); {FORMATS_HINT}.{dicom_hint}")


def _squeezed(image: sitk.Image) -> sitk.Image:
    """Drops trailing dimensions of size 1 beyond the third (NRRD, MetaImage and enhanced DICOM readers may
    keep them): a 128 x 128 x 96 x 1 image is a 3D volume, not a 4D one."""
    while image.GetDimension() > 3 and image.GetSize()[-1] == 1:
        squeezed = sitk.Extract(image, list(image.GetSize()[:-1]) + [0], [0] * image.GetDimension())
        for key in image.GetMetaDataKeys():
            squeezed.SetMetaData(key, image.GetMetaData(key))
        image = squeezed
    return image


def read_image(path: PathLike, role: str = "input") -> sitk.Image:
    """Reads an image file, a folder holding one DICOM series or one enhanced (multi-frame) DICOM file
    (patient/study tags kept in its metadata; an irregular DICOM series regularised, see
    :mod:`.dicom_geometry`, with a warning under :data:`.dicom_reading.INPUT_WARNING`)."""
    path = Path(path)
    check_readable(path, role)
    if path.is_dir():
        return read_dicom_folder(path, role)
    if extension(path) not in READABLE_EXTENSIONS:
        return read_enhanced(path, role)
    file_checks.check_image_file(path, role, extension(path), voxels=False)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The voxels' own checks decompress the file while ITK reads it (both release the GIL): a 0.5 mm head
        # is read in 1.4 instead of 2.1 s. Their finding is raised before ITK's voxels are used.
        checked = pool.submit(file_checks.check_image_file, path, role, extension(path), True)
        try:
            image = _squeezed(sitk.ReadImage(str(path)))
        except RuntimeError as exc:
            checked.result()  # the file's own fault, when the checks find one, says more than ITK does
            raise InputError(
                f"Cannot read the {role} image {path}: {itk_reason(exc)}. The file may be damaged or not a "
                f"{extension(path)} file; re-export it ({FORMATS_HINT})."
            ) from exc
        checked.result()
    check_stored(image, path, role)
    values = sitk.GetArrayViewFromImage(image)
    file_checks.refuse_non_finite(f"The {role} image {path}", file_checks.count_non_finite(values), values.size)
    return image


def check_stored(info: Union[sitk.Image, sitk.ImageFileReader], path: Path, role: str) -> None:
    """Refuses, naming the file, what would fail or go wrong later: complex voxels (no model translates them,
    and the header's size estimate cannot take them) and a sheared grid, which the NRRD and MetaImage readers
    keep as it is."""
    if info.GetPixelID() in (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64):
        raise InputError(
            f"The {role} image {path} holds complex voxels ({sitk.GetPixelIDValueAsString(info.GetPixelID())}: a "
            "real and an imaginary part each), and the models translate real-valued scans: save its magnitude "
            "(e.g. SimpleITK's ComplexToModulus, or numpy.abs) as a scalar image and give that."
        )
    dimension = info.GetDimension()
    file_checks.check_axes(np.reshape(info.GetDirection(), (dimension, dimension)), path, role, extension(path))


def check_volume(image: sitk.Image, role: str) -> None:
    """Refuses what a 3D generator cannot translate: 2D, 4D, vector, empty, non-finite or constant volumes."""
    size = tuple(image.GetSize())
    shape = " x ".join(str(s) for s in size)
    components = image.GetNumberOfComponentsPerPixel()
    if components > 1 or image.GetPixelID() in (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64):
        raise InputError(
            f"The {role} image has {components} component(s) per voxel ({image.GetPixelIDTypeAsString()}: vector, "
            "RGB or complex); give a scalar grey-level volume."
        )
    if image.GetDimension() > 3:
        raise InputError(
            f"The {role} image is {image.GetDimension()}D ({shape}); extract one 3D volume (one time point, echo or "
            "b-value) first."
        )
    if image.GetNumberOfPixels() == 0:
        raise InputError(f"The {role} image is empty (0 voxels, size {shape}); check the file.")
    if image.GetDimension() < 3 or min(size) == 1:
        raise InputError(
            f"The {role} image is 2D (size {shape}); the models translate 3D volumes: give the whole series or volume."
        )
    values = sitk.GetArrayViewFromImage(image)
    file_checks.refuse_non_finite(f"The {role} image", file_checks.count_non_finite(values), values.size)
    low, high = values.min(), values.max()
    if low == high:
        raise InputError(f"The {role} image is constant (every voxel is {low}); it holds no image to translate.")
