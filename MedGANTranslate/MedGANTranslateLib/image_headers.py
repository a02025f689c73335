"""An image's geometry and pixel type read without its voxels, for the memory a job needs before it starts.

:func:`read_header` answers what :func:`.imageio.read_image` would return (size, spacing, orientation, pixel
type, bytes) from the file's header alone, with the same checks and refusals, so a job too large for the machine
is refused before anything large is read (:mod:`.resources`). A DICOM series' header comes from its first and
last slices, or from the regular grid an irregular series or an enhanced file is resampled onto.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset

from . import dicom_geometry, file_checks
from .dicom_reading import (
    dicom_headers,
    dicom_series,
    enhanced_layout,
    is_multiframe,
    multiframe_dataset,
    rescaled_dtype,
    slice_layout,
)
from .errors import InputError
from .image_formats import FORMATS_HINT, READABLE_EXTENSIONS, PathLike, extension, itk_reason
from .imageio import check_readable, check_stored


@dataclass(frozen=True)
class ImageHeader:
    """Geometry and pixel type of an image file, read without its voxels (for memory estimates)."""

    size: Tuple[int, ...]
    spacing: Tuple[float, ...]
    origin: Tuple[float, ...]
    direction: Tuple[float, ...]
    components: int
    dimension: int
    pixel_id: str
    bytes_per_voxel: int

    @property
    def voxels(self) -> int:
        return int(np.prod(self.size, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.voxels * self.bytes_per_voxel


def _information(path: str, role: str) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(
            f"Cannot read the header of the {role} image {path}: {itk_reason(exc)}. Re-export it ({FORMATS_HINT})."
        ) from exc
    return reader


def _bytes_per_voxel(pixel_id: int, components: int) -> int:
    """Size of one voxel, found from the NumPy dtype SimpleITK uses for this pixel type."""
    probe = sitk.Image([1, 1], pixel_id, components) if components > 1 else sitk.Image([1, 1], pixel_id)
    return int(sitk.GetArrayViewFromImage(probe).dtype.itemsize * components)


def _header(reader: sitk.ImageFileReader, dimension: int, size: Sequence[int], spacing: Sequence[float],
            direction: Sequence[float]) -> ImageHeader:
    components = reader.GetNumberOfComponents()
    return ImageHeader(
        size=tuple(int(s) for s in size),
        spacing=tuple(float(s) for s in spacing),
        origin=tuple(float(o) for o in reader.GetOrigin()[:len(size)]),
        direction=tuple(float(d) for d in direction),
        components=int(components),
        dimension=int(dimension),
        pixel_id=sitk.GetPixelIDValueAsString(reader.GetPixelID()),
        bytes_per_voxel=_bytes_per_voxel(reader.GetPixelID(), components),
    )


def _grid_header(grid: dicom_geometry.Grid, dtype: np.dtype) -> ImageHeader:
    """The header of a DICOM volume built on ``grid`` (a regularised series, an enhanced file)."""
    pixel_id = sitk.GetImageFromArray(np.zeros((1, 1), dtype)).GetPixelID()
    return ImageHeader(
        size=grid.size, spacing=grid.spacing, origin=grid.origin, direction=grid.direction, components=1,
        dimension=3, pixel_id=sitk.GetPixelIDValueAsString(pixel_id), bytes_per_voxel=np.dtype(dtype).itemsize,
    )


def _enhanced_header(ds: Dataset, path: Path, role: str) -> ImageHeader:
    layout = enhanced_layout(ds, path, role)
    return _grid_header(layout.grid, rescaled_dtype(ds) if layout.regular else np.float32)


def _dicom_folder_header(folder: Path, role: str) -> ImageHeader:
    """A series' header: the regularised grid of an irregular series; otherwise the first slice's plus the
    number of slices and their spacing (from the first and last positions, along the slice normal)."""
    files = dicom_series(folder, role)
    headers = dicom_headers(files, role)
    if is_multiframe(headers, folder, role):
        return _enhanced_header(headers[0], Path(files[0]), role)
    layout = slice_layout(dicom_geometry.instance_planes(headers), folder, role)
    if layout is not None and not layout.regular:
        return _grid_header(layout.grid, np.float32)
    first = _information(files[0], role)
    spacing = list(first.GetSpacing()[:2]) + [first.GetSpacing()[2] if first.GetDimension() > 2 else 1.0]
    direction = first.GetDirection()
    if len(files) > 1:
        last = _information(files[-1], role)
        normal = np.asarray(direction, dtype=float).reshape(3, 3)[:, 2]
        gap = np.dot(np.subtract(last.GetOrigin(), first.GetOrigin()), normal)
        spacing[2] = abs(float(gap)) / (len(files) - 1)
    size = list(first.GetSize()[:2]) + [len(files)]
    return _header(first, 3 if len(files) > 1 else 2, size, spacing, direction)


def read_header(path: PathLike, role: str = "input") -> ImageHeader:
    """Geometry and pixel type of what :func:`.imageio.read_image` returns, without reading the voxels."""
    path = Path(path)
    check_readable(path, role)
    if path.is_dir():
        return _dicom_folder_header(path, role)
    if extension(path) not in READABLE_EXTENSIONS:
        return _enhanced_header(multiframe_dataset(path, role), path, role)
    file_checks.check_image_file(path, role, extension(path), voxels=False)
    reader = _information(str(path), role)
    check_stored(reader, path, role)
    dimension = reader.GetDimension()
    while dimension > 3 and reader.GetSize()[dimension - 1] == 1:  # as :func:`.imageio.read_image` drops them
        dimension -= 1
    direction = np.asarray(reader.GetDirection()).reshape(reader.GetDimension(), -1)[:dimension, :dimension]
    return _header(reader, dimension, reader.GetSize()[:dimension], reader.GetSpacing()[:dimension], direction.ravel())
