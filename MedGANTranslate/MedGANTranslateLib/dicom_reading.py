"""Reading DICOM inputs: a folder holding one series, or one enhanced (multi-frame) file, as a 3D volume.

GDCM and ITK read DICOM, but stay silent on what would make a wrong volume: a slice left out of the series, pixel
data cut short (read as zeros), slices each with their own rescale, irregular slice positions, a multi-frame file
among single slices. This module reads the headers with pydicom first and refuses those, naming the file and
what to do, regularises an irregular series (:mod:`.dicom_geometry`) with a warning stored under
:data:`INPUT_WARNING`, decodes enhanced files frame by frame with their per-frame rescale, and keeps the
patient/study tags a DICOM output needs to join the input's study (:func:`study_tags`, :func:`dicom_source`).
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from . import dicom_geometry, dicom_output
from .errors import InputError
from .image_formats import FORMATS_HINT, READABLE_EXTENSIONS, PathLike, extension, itk_reason

#: Patient/study tags read from a DICOM input into the image's metadata (and so into NRRD/MetaImage headers and
#: NIfTI sidecars). A DICOM output written without its DICOM source (:func:`dicom_source`) takes them from there
#: to join the input's study and frame of reference (it is aligned voxel for voxel with the input).
DICOM_STUDY_TAGS = (
    "0010|0010",  # PatientName
    "0010|0020",  # PatientID
    "0010|0030",  # PatientBirthDate
    "0010|0040",  # PatientSex
    "0008|0020",  # StudyDate
    "0008|0030",  # StudyTime
    "0008|0050",  # AccessionNumber
    "0008|0090",  # ReferringPhysicianName
    "0008|1030",  # StudyDescription
    "0020|000d",  # StudyInstanceUID
    "0020|0010",  # StudyID
    "0020|0052",  # FrameOfReferenceUID
)
#: Series tags also copied from a DICOM input into the image's metadata (for display, never re-written).
DICOM_SERIES_TAGS = ("0008|0060", "0008|103e", "0020|000e")
_PIXEL_DATA = 0x7FE00010
#: What pydicom raises on a file cut inside its header (at once, or when a value is first used).
_DICOM_DAMAGE = (InvalidDicomError, BytesLengthException, OSError, ValueError, EOFError, struct.error)
_OTHER_PIXEL_DATA = {0x7FE00008, 0x7FE00009}  # Float / Double Float Pixel Data
#: Values larger than this (pixel data) are left in the file when only the headers are wanted.
_DEFER_PIXELS = 1 << 16
#: Metadata key of the warning stored with an input that was changed on reading (an irregular DICOM series
#: resampled onto a regular grid), for the caller to show the user.
INPUT_WARNING = "MedGANTranslate.InputWarning"


def _series_description(path: str) -> str:
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return "(unreadable)"
    return reader.GetMetaData("0008|103e").strip() if reader.HasMetaDataKey("0008|103e") else "(no description)"


def dicom_series(folder: PathLike, role: str = "input") -> List[str]:
    """File names of the single DICOM series in ``folder``, sorted by slice position.

    Raises :class:`InputError` when the folder holds no series or several (listing them, since the user must
    choose one)."""
    folder = Path(folder)
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if len(series_ids) < 2:
        files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_ids[0])) if series_ids else []
        _check_left_out(folder, files, role)
    if not series_ids:
        raise InputError(
            f"The {role} folder {folder} holds no DICOM series; give a folder with the DICOM files of one "
            f"series, or an image file ({FORMATS_HINT})."
        )
    if len(series_ids) > 1:
        listing = []
        for uid in series_ids:
            files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
            listing.append(f"  {_series_description(files[0])!r}: {len(files)} file(s), SeriesInstanceUID {uid}")
        raise InputError(
            f"The {role} folder {folder} holds {len(series_ids)} DICOM series:\n" + "\n".join(listing)
            + "\nGive a folder that holds only one series (move the others out, or export the one you want)."
        )
    return files


def _check_left_out(folder: Path, files: Sequence[str], role: str) -> None:
    """Refuses a DICOM file in ``folder`` that GDCM left out of the series' ``files`` although it cannot be read
    or is a slice of the same kind (SOP class): GDCM drops a file cut short without a word, and the series then
    lacks a slice (a file with no SOP class, or nothing after its meta header, is cut inside that header). Other
    objects (a DICOMDIR, a report) are left alone."""
    kept = {os.path.abspath(name) for name in files}
    kind = dicom_headers(files[:1], role)[0].file_meta.get("MediaStorageSOPClassUID") if files else None
    for item in sorted(folder.iterdir()):
        if not item.is_file() or os.path.abspath(item) in kept or not is_dicom_file(item):
            continue
        left_out = dicom_headers([str(item)], role)[0]  # refuses a file that is cut short or does not parse
        same_kind = left_out.file_meta.get("MediaStorageSOPClassUID") in (kind, None) or not len(left_out)
        if kind is not None and same_kind:
            raise InputError(
                f"The {role} DICOM file {item} is left out of the series in {folder}: it is an image of the same "
                "kind, but the DICOM reader cannot read it with the others (it may be cut short or damaged). Copy or "
                "export the series again, or move the file out if it does not belong to the series."
            )


def dicom_headers(files: Sequence[str], role: str, pixels: bool = False) -> List[Dataset]:
    """The DICOM headers of ``files`` (pydicom), their large pixel data left unread (deferred) unless
    ``pixels``; refuses a file whose pixel data are cut short (see :func:`_check_pixel_data`)."""
    headers = []
    for name in files:
        try:
            ds = pydicom.dcmread(name, defer_size=None if pixels else _DEFER_PIXELS)
            _check_pixel_data(ds, name, role)
        except _DICOM_DAMAGE as exc:
            raise InputError(
                f"Cannot read the {role} DICOM file {name}: {str(exc).rstrip('.')}. It may be cut short or damaged; "
                "copy or export the series again."
            ) from exc
        headers.append(ds)
    return headers


def _stored_pixel_bytes(ds: Dataset, name: str) -> int:
    """Bytes of pixel data the file holds: of a deferred value, from where it starts to the end of the file
    (its declared length when shorter); of a value read, its length."""
    try:
        element = ds.get_item(_PIXEL_DATA, keep_deferred=True)  # pydicom 3 would read a deferred value
    except TypeError:  # pydicom 2: get_item leaves it deferred
        element = ds.get_item(_PIXEL_DATA)
    if element.value is None:
        return min(int(element.length), os.path.getsize(name) - int(element.value_tell))
    return len(element.value)


def _check_pixel_data(ds: Dataset, name: str, role: str) -> None:
    """Refuses uncompressed pixel data shorter than rows x columns x frames x samples x bits need: ITK's DICOM
    reader reads the missing pixels as zeros. (Compressed data are the decoder's to check.)"""
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    needed = [ds.get(key) for key in ("Rows", "Columns", "BitsAllocated")]
    if syntax is None or syntax.is_encapsulated or None in needed or _OTHER_PIXEL_DATA.intersection(ds.keys()):
        return
    rows, columns, bits = (int(v) for v in needed)
    frames = dicom_geometry.frame_count(ds)
    samples = rows * columns * frames * int(ds.get("SamplesPerPixel") or 1)
    if ds.get("PhotometricInterpretation") == "YBR_FULL_422":
        samples = samples // 3 * 2  # two chroma samples for every two pixels
    expected = (samples * bits + 7) // 8
    stored = _stored_pixel_bytes(ds, name) if _PIXEL_DATA in ds else 0
    if stored < expected:
        raise InputError(
            f"The {role} DICOM file {name} is cut short: its pixel data should take {expected:,} bytes ({rows} x "
            f"{columns} pixels x {frames} frame(s) of {bits} bits), but the file holds only {stored:,} "
            f"({stored / expected:.1%}); the rest would be read as zeros. Copy or export the series again (an "
            "interrupted transfer or a full disk cuts files short)."
        )


def is_multiframe(headers: Sequence[Dataset], folder: Path, role: str) -> bool:
    """Whether the series is one multi-frame (enhanced) file; refuses several files with a multi-frame one
    among them, whose frames and files would have to be merged into one volume."""
    multiframe = sum(dicom_geometry.frame_count(ds) > 1 for ds in headers)
    if multiframe and len(headers) > 1:
        raise InputError(
            f"The {role} folder {folder} holds {len(headers)} files of one DICOM series, {multiframe} of them "
            "multi-frame (enhanced DICOM): give one multi-frame file, or a folder that holds only that file."
        )
    return bool(multiframe)


def slice_layout(planes: Optional[List[dicom_geometry.Plane]], source: Path,
                 role: str) -> Optional[dicom_geometry.Layout]:
    """The slices' layout (None when their geometry is not recorded), refusals worded for the user."""
    if planes is None:
        return None
    try:
        return dicom_geometry.layout(planes)
    except dicom_geometry.GeometryError as exc:
        raise InputError(f"The {role} DICOM series in {source} {exc}") from exc


def _copy_tags(image: sitk.Image, header: Dataset) -> sitk.Image:
    """Keeps the study/series tags the engine uses, from the pydicom ``header``: decoded in the file's
    character set (GDCM gives a tag's raw bytes, and a Latin-1 patient name would not pass into ITK)."""
    for key in DICOM_STUDY_TAGS + DICOM_SERIES_TAGS:
        element = header.get(Tag(*(int(part, 16) for part in key.split("|"))))
        value = None if element is None else element.value
        text = "\\".join(str(v) for v in value) if isinstance(value, MultiValue) else str(value or "")
        if text.strip():
            image.SetMetaData(key, text.strip())
    return image


def _on_grid(values: np.ndarray, grid: dicom_geometry.Grid) -> sitk.Image:
    image = sitk.GetImageFromArray(values)
    image.SetSpacing(grid.spacing)
    image.SetOrigin(grid.origin)
    image.SetDirection(grid.direction)
    return image


def _volume(values: np.ndarray, layout: dicom_geometry.Layout, source: Path, role: str) -> sitk.Image:
    """The slices (K x rows x columns, in file/frame order) as a volume: stacked when regular, otherwise
    resampled onto the layout's regular grid with a warning saying what was irregular and what was done."""
    if layout.regular:
        return _on_grid(np.ascontiguousarray(values[layout.order]), layout.grid)
    volume, fill = dicom_geometry.regularise(values, layout)
    image = _on_grid(volume, layout.grid)
    image.SetMetaData(
        INPUT_WARNING, f"The {role} DICOM series in {source} is irregular: {dicom_geometry.describe(layout, fill)}"
    )
    return image


def _read_stack(files: Sequence[str], folder: Path, role: str, header: Dataset) -> sitk.Image:
    """A regular series (or one without recorded geometry) as ITK stacks it."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(files))
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(
            f"Cannot read the {role} DICOM series in {folder}: {itk_reason(exc)}. Re-export the series."
        ) from exc
    for key in image.GetMetaDataKeys():  # ITK's own keys (e.g. its spacing note): only the tags below are kept
        image.EraseMetaData(key)
    return _copy_tags(image, header)


def _read_slice(name: str, role: str) -> np.ndarray:
    """One slice's values as float32 (with its own rescale: ITK's series reader would cast every slice to the
    first one's pixel type)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(name)
    try:
        return sitk.GetArrayFromImage(reader.Execute()).astype(np.float32)
    except RuntimeError as exc:
        raise InputError(f"Cannot read the {role} DICOM file {name}: {itk_reason(exc)}. Re-export the series.") from exc


def _read_slices(files: Sequence[str], layout: dicom_geometry.Layout, folder: Path, role: str,
                 header: Dataset) -> sitk.Image:
    """An irregular series, read slice by slice and regularised."""
    shape = layout.planes[0].size[::-1]
    image = _volume(np.stack([_read_slice(name, role).reshape(shape) for name in files]), layout, folder, role)
    return _copy_tags(image, header)


def read_dicom_folder(folder: Path, role: str) -> sitk.Image:
    files = dicom_series(folder, role)
    headers = dicom_headers(files, role)
    if is_multiframe(headers, folder, role):
        return read_enhanced(Path(files[0]), role)
    layout = slice_layout(dicom_geometry.instance_planes(headers), folder, role)
    if layout is None or layout.regular:
        return _read_stack(files, folder, role, headers[0])
    return _read_slices(files, layout, folder, role, headers[0])


def _stored_dtype(ds: Dataset) -> np.dtype:
    return np.dtype(f"{'i' if int(ds.get('PixelRepresentation') or 0) else 'u'}{int(ds.BitsAllocated) // 8}")


def _rescale(ds: Dataset) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """Per-frame rescale slope and intercept (Pixel Value Transformation, per-frame then shared, else the top
    level, as DICOM defines them); None when every frame's is the identity."""
    count = dicom_geometry.frame_count(ds)
    group = "PixelValueTransformationSequence"
    slopes = np.array([float(dicom_geometry.frame_value(ds, k, group, "RescaleSlope", 1)) for k in range(count)])
    intercepts = np.array([float(dicom_geometry.frame_value(ds, k, group, "RescaleIntercept", 0)) for k in range(count)])
    return None if np.all(slopes == 1) and np.all(intercepts == 0) else (slopes, intercepts)


def rescaled_dtype(ds: Dataset) -> np.dtype:
    """The type that holds the rescaled values: the stored type when there is no rescale, int16 for whole
    numbers that fit (as ITK reads classic CT), float32 otherwise."""
    stored, rescale = _stored_dtype(ds), _rescale(ds)
    if rescale is None:
        return stored
    slopes, intercepts = rescale
    bits = int(ds.get("BitsStored") or ds.BitsAllocated)
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if stored.kind == "i" else (0, 2 ** bits - 1)
    ends = np.concatenate([slopes * low + intercepts, slopes * high + intercepts])
    whole = np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts))
    fits = -32768 <= ends.min() and ends.max() <= 32767
    return np.dtype(np.int16 if whole and fits else np.float32)


def _frame_values(ds: Dataset, source: Path, role: str) -> np.ndarray:
    """The frames' values (frames x rows x columns) with each frame's rescale applied, as DICOM defines it."""
    try:
        stored = ds.pixel_array
    except (NotImplementedError, RuntimeError, ValueError, AttributeError) as exc:  # no decoder, or no pixel data
        syntax = getattr(ds.file_meta.get("TransferSyntaxUID"), "name", "unknown transfer syntax")
        raise InputError(
            f"Cannot decode the pixel data of the {role} DICOM file {source} ({syntax}): {exc}. Convert it to an "
            f"uncompressed DICOM (e.g. gdcmconv --raw) or to NIfTI (dcm2niix) first."
        ) from exc
    stored = stored.reshape(-1, int(ds.Rows), int(ds.Columns))
    rescale = _rescale(ds)
    if rescale is None:
        return stored
    slopes, intercepts = rescale
    return (stored * slopes[:, None, None] + intercepts[:, None, None]).astype(rescaled_dtype(ds))


def enhanced_layout(ds: Dataset, path: Path, role: str) -> dicom_geometry.Layout:
    planes = dicom_geometry.instance_planes([ds])
    if planes is None:
        raise InputError(
            f"The {role} DICOM file {path} has frames without a position, orientation or pixel spacing "
            "(Plane Position, Plane Orientation, Pixel Measures): their place in space is unknown. Re-export it."
        )
    return slice_layout(planes, path, role)


def multiframe_dataset(path: Path, role: str, pixels: bool = False) -> Dataset:
    """A DICOM file given on its own, which must be multi-frame: a single slice is one file of a series."""
    ds = dicom_headers([str(path)], role, pixels)[0]
    if "Rows" not in ds:
        raise InputError(
            f"The {role} DICOM file {path} holds no image (no Rows): it is another kind of DICOM object, or it is "
            "cut short inside its header. Give an enhanced (multi-frame) DICOM file or a series folder; copy it again "
            "if it was cut."
        )
    if dicom_geometry.frame_count(ds) < 2:
        raise InputError(f"The {role} image {path} is a single DICOM slice; give the folder that holds the whole series.")
    return ds


def read_enhanced(path: Path, role: str) -> sitk.Image:
    """An enhanced (multi-frame) DICOM file as the 3D volume its frames make, geometry from the per-frame
    functional groups; the study/series tags from the file's top level."""
    ds = multiframe_dataset(path, role, pixels=True)
    image = _volume(_frame_values(ds, path, role), enhanced_layout(ds, path, role), path, role)
    return _copy_tags(image, ds)


def is_dicom_file(path: Path) -> bool:
    """A DICOM Part 10 file: 128-byte preamble, then 'DICM'."""
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def study_tags(image: sitk.Image) -> Dict[str, str]:
    """Patient/study DICOM tags carried by an image read from DICOM, ready to pass to
    :func:`.image_writing.write_image`."""
    return {tag: image.GetMetaData(tag) for tag in DICOM_STUDY_TAGS if image.HasMetaDataKey(tag)}


def dicom_source(path: PathLike, role: str = "input") -> Optional[dicom_output.Source]:
    """The DICOM series (or enhanced file) at ``path`` as a DICOM output derived from it refers to it: its
    patient/study header, series and images (headers only, pixel data left unread); None for an image file."""
    path = Path(path)
    if path.is_dir():
        headers = dicom_headers(dicom_series(path, role), role)
    elif extension(path) not in READABLE_EXTENSIONS:
        headers = [multiframe_dataset(path, role)]
    else:
        return None
    return dicom_output.source_from_headers(headers)
