"""Checks of an image file's own bytes, for what ITK's readers would hide or misreport.

ITK reads a NIfTI file that ends early with the missing voxels as zeros, NaN/Inf stored in a NIfTI file as 0, a
gzip stream whose end (CRC-32 and length) is missing as if it were whole (NIfTI, NRRD), and a NIfTI file whose
sform is sheared on the qform's grid, without a word. Its MetaImage and NRRD readers refuse data that end early,
but with messages such as "No such file or directory". :func:`check_image_file` reads the header as its format
defines it (NIfTI-1's 348 bytes, NRRD's ``field: value`` lines, MetaImage's ``Key = Value`` lines), finds where
the voxels are stored and how many bytes they take, and refuses a file that does not hold them whole, saying
what is missing and what to do. Layouts it does not know (NRRD line skips, lists of data files, bzip2 or text
encodings; MetaImage lists of data files; NIfTI-2, which ITK does not read) are left to ITK's own checks.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from isal import isal_zlib

from .errors import InputError

#: Deflate's largest ratio: no stream decodes to more than 1032 bytes per compressed byte.
_DEFLATE_MAX_RATIO = 1032
#: Compressed bytes fed to the decompressor at a time: at deflate's largest ratio they decode to at
#: most 68 MB, so an all-zero volume cannot make one piece huge.
_CHUNK = 1 << 16
_RAW_CHUNK = 1 << 24
_GZIP_MAGIC = b"\x1f\x8b"
_ANY_ZLIB_HEADER = 47  # wbits: a gzip or a zlib stream, whichever it starts with
#: The largest |cosine| between two axes of a grid that still counts as orthogonal: ITK's NIfTI reader takes a
#: sform as a rotation up to this (0.0057°), which moves a voxel 256 mm from the origin by 0.026 mm.
_ORTHOGONAL_COSINE = 1e-4
_AGAIN = "Copy, download or export it again (an interrupted transfer or a full disk cuts files short)."
_AXES_FIELD = {
    ".nii": "its sform (srow_x, srow_y, srow_z)",
    ".nii.gz": "its sform (srow_x, srow_y, srow_z)",
    ".nrrd": "its NRRD 'space directions'",
    ".nhdr": "its NRRD 'space directions'",
    ".mha": "its MetaImage TransformMatrix",
    ".mhd": "its MetaImage TransformMatrix",
}


@dataclass(frozen=True)
class Storage:
    """Where a file's voxels are and how they are stored, as its header says."""

    file: Path  # the file that holds them: the image itself, or the data file its header names
    start: int  # offset in ``file`` of their stream (compressed or not)
    skip: int  # bytes of the decoded stream before the first voxel (a .nii.gz holds its header in the stream)
    nbytes: int  # bytes the voxels take, decoded
    compressed: bool  # a gzip or zlib stream
    what: str  # the voxels in words, for messages: "24 x 28 x 20 voxels of 4 bytes"
    floats: Optional[np.dtype] = None  # stored floats whose NaN/Inf ITK would not pass on (NIfTI)
    at_end: bool = False  # they are the file's last bytes (NRRD byte skip, MetaImage HeaderSize -1), after ``start``


class _Unfinished(Exception):
    """The file ends inside a compressed stream, before its end marker and checksum."""


# ---------------------------------------------------------------------------------------------- public


def check_image_file(path: Path, role: str, ext: str, voxels: bool) -> None:
    """Refuses an image file (``ext`` as :mod:`.image_formats` names it) whose header or voxels are cut short or
    damaged, whose NIfTI sform is sheared, or whose NIfTI floats hold NaN/Inf. ``voxels=False`` (for a header
    read before the model loads, and before the voxels are read) checks only what the header and the file
    sizes show; ``voxels=True`` also decompresses the data to its checksum and reads NIfTI floats."""
    reader = {".nii": _nifti, ".nii.gz": _nifti, ".nrrd": _nrrd, ".nhdr": _nrrd, ".mha": _metaimage,
              ".mhd": _metaimage}.get(ext)
    storage = reader(path, role) if reader else None
    if storage is None:
        return
    if voxels or not storage.compressed:
        _check_voxels(storage, path, role, voxels)
    else:
        _check_ratio(storage, path, role)


def _check_ratio(storage: Storage, path: Path, role: str) -> None:
    """Refuses compressed voxels that their stream cannot hold even at deflate's largest ratio: a file cut far
    short, found from its size alone, before anything allocates the voxels the header promises."""
    if not storage.file.is_file():
        return  # left to read_image, as in _check_voxels
    stream = storage.file.stat().st_size - storage.start
    if storage.skip + storage.nbytes > _DEFLATE_MAX_RATIO * stream:
        raise InputError(
            f"The {role} image {path} is cut short: its header says its voxels take {storage.nbytes:,} bytes "
            f"({storage.what}), more than the {stream:,} compressed bytes left in "
            f"{_holder(storage, path)} can hold. {_AGAIN}"
        )


def check_axes(direction: np.ndarray, path: Path, role: str, ext: str) -> None:
    """Refuses a grid whose axes (the columns of ``direction``) are not orthogonal: ITK reads a sheared NIfTI
    sform as the qform or a rotation, and writes a sheared grid to NIfTI or DICOM as a rotation."""
    axes = np.asarray(direction, dtype=float)
    lengths = np.linalg.norm(axes, axis=0)
    if not np.all(lengths > 0):
        return  # a degenerate matrix: ITK refuses it itself
    unit = axes / lengths
    cosine = float(np.max(np.abs(unit.T @ unit)[np.triu_indices(len(unit), 1)], initial=0.0))
    if cosine <= _ORTHOGONAL_COSINE:
        return
    angle = math.degrees(math.asin(min(cosine, 1.0)))
    raise InputError(
        f"The {role} image {path} has a sheared voxel grid: {_AXES_FIELD.get(ext, 'its header')} puts two of its "
        f"axes {angle:.3g}° from orthogonal. Such a grid cannot be kept exactly: ITK's NIfTI reader and writer, "
        "and DICOM, replace a shear by a rotation, so the input would be read, or the synthetic image written, on "
        "another grid. Resample the image onto an orthogonal grid with a tool that applies its full affine "
        "(e.g. Python: nibabel.processing.resample_to_output; FSL: flirt -applyxfm) and translate that; if the "
        "shear is a header error, correct the header."
    )


def count_non_finite(values: np.ndarray) -> int:
    """NaN and ±Inf among ``values`` (0 for integer types)."""
    if values.dtype.kind not in "fc":
        return 0
    return int(values.size - np.count_nonzero(np.isfinite(values)))


def refuse_non_finite(subject: str, bad: int, total: int, note: str = "") -> None:
    """Refuses ``subject`` ("The input image x.nrrd") when ``bad`` of its ``total`` voxels are NaN/Inf."""
    if bad:
        raise InputError(
            f"{subject} has {bad:,} NaN/Inf voxel(s) of {total:,}{note}; fix or re-export the image (e.g. replace "
            "them by the background value)."
        )


# ---------------------------------------------------------------------------------------------- voxels


def _inflate(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """The decompressed bytes of the gzip member(s) or the zlib stream in ``pieces``.

    Raises :class:`_Unfinished` when the input ends inside a stream and ``isal_zlib.error`` when a checksum
    does not match or the data do not decompress."""
    stream = None
    for piece in pieces:
        while piece:
            if stream is not None and stream.eof and piece[:2] != _GZIP_MAGIC:
                return  # what follows the last gzip member is padding (gzip ignores it too)
            if stream is None or stream.eof:
                stream = isal_zlib.decompressobj(_ANY_ZLIB_HEADER)
            yield stream.decompress(piece)
            piece = stream.unused_data if stream.eof else b""
    if stream is None or not stream.eof:
        raise _Unfinished()


def _decoded(file: Path, start: int, compressed: bool) -> Iterator[bytes]:
    """The stream from ``start`` in ``file``, decompressed when ``compressed``, in pieces."""
    with open(file, "rb") as f:
        f.seek(start)
        pieces = iter(lambda: f.read(_CHUNK if compressed else _RAW_CHUNK), b"")
        yield from (_inflate(pieces) if compressed else pieces)


def _voxel_bytes(storage: Storage) -> Iterator[bytes]:
    """The voxels' bytes, decompressed, in pieces; a compressed stream is read to its end (its checksum is
    what tells the voxels are whole), a raw one only as far as the voxels go."""
    skip, left = storage.skip, storage.nbytes
    for piece in _decoded(storage.file, storage.start, storage.compressed):
        if skip:
            piece, skip = piece[skip:], max(0, skip - len(piece))
        piece, left = piece[:left], left - min(left, len(piece))
        if piece:
            yield piece
        if not left and not storage.compressed:
            return


def _scan(storage: Storage) -> Tuple[int, int, Optional[Exception]]:
    """(voxel bytes found, NaN/Inf among them when ``storage.floats``, what stopped a compressed stream early:
    :class:`_Unfinished` or the decompressor's error; None when it ended whole)."""
    found, bad, rest = 0, 0, b""
    try:
        for piece in _voxel_bytes(storage):
            found += len(piece)
            if storage.floats is not None:
                whole = rest + piece
                usable = len(whole) - len(whole) % storage.floats.itemsize
                bad += count_non_finite(np.frombuffer(whole, storage.floats, usable // storage.floats.itemsize))
                rest = whole[usable:]
    except (_Unfinished, isal_zlib.error) as exc:
        return found, bad, exc
    return found, bad, None


def _holder(storage: Storage, path: Path) -> str:
    """The file that holds the voxels of the image ``path``, in words for messages."""
    return "the file" if storage.file == path else f"its data file {storage.file}"


def _check_voxels(storage: Storage, path: Path, role: str, read: bool) -> None:
    """Refuses voxels that end early or fail their checksum, and NIfTI floats that hold NaN/Inf. Unless ``read``
    (and for raw integers, where it is enough), the file's size is all that is looked at."""
    where = _holder(storage, path)
    if not storage.file.is_file():
        if not read:
            return  # left to read_image: the memory estimate that follows read_header needs only the header
        raise InputError(
            f"The data file {storage.file} named in the header of the {role} image {path} does not exist; keep the "
            "header and its data file together in one folder (move or copy both), or export the image again."
        )
    if storage.at_end:
        storage = replace(storage, start=max(storage.start, storage.file.stat().st_size - storage.nbytes))
    if read and (storage.compressed or storage.floats is not None):
        found, bad, stop = _scan(storage)
    else:
        found, bad, stop = min(storage.nbytes, max(0, storage.file.stat().st_size - storage.start)), 0, None
    if stop is not None and not isinstance(stop, _Unfinished):
        raise InputError(
            f"The {role} image {path} is damaged: the compressed data in {where} fail their checksum or do not "
            f"decompress ({stop}). {_AGAIN}"
        ) from stop
    if found < storage.nbytes:
        raise InputError(
            f"The {role} image {path} is cut short: its header says its voxels take {storage.nbytes:,} bytes "
            f"({storage.what}), but {where} holds only {found:,}{' once decompressed' if storage.compressed else ''} "
            f"({found / storage.nbytes:.1%}); the rest cannot be read. {_AGAIN}"
        )
    if stop is not None:
        raise InputError(
            f"The {role} image {path} is cut short: the compressed data in {where} end before their last bytes, "
            f"the checksum that shows the voxels are whole. {_AGAIN}"
        )
    if storage.floats is not None:
        refuse_non_finite(f"The {role} image {path}", bad, storage.nbytes // storage.floats.itemsize,
                          " (ITK's NIfTI reader would read them as 0)")


def _cut_header(path: Path, role: str, detail: str) -> InputError:
    return InputError(f"The {role} image {path} is cut short: it ends inside its header ({detail}). {_AGAIN}")


def _ints(text: str) -> Optional[List[int]]:
    """The whole numbers in a header value; None when it holds anything else (a malformed header: ITK says so)."""
    try:
        return [int(word) for word in text.split()]
    except ValueError:
        return None


def _what(shape: Sequence[int], itemsize: int) -> str:
    return f"{' x '.join(str(n) for n in shape)} voxels of {itemsize} byte(s)"


def _data_file(path: Path, name: str) -> Path:
    """The detached data file ``name`` of the header ``path`` (relative to its folder unless absolute)."""
    return Path(name) if os.path.isabs(name) else path.parent / name


# ---------------------------------------------------------------------------------------------- NIfTI-1

#: The NIfTI-1 header fields the checks need, at their byte offsets in its 348 bytes.
_NIFTI1 = np.dtype({
    "names": ["sizeof_hdr", "dim", "bitpix", "vox_offset", "sform_code", "srow", "magic", "datatype"],
    "formats": ["i4", ("i2", 8), "i2", "f4", "i2", ("f4", (3, 4)), "S4", "i2"],
    "offsets": [0, 40, 72, 108, 254, 280, 344, 70],
    "itemsize": 348,
})
_NIFTI_FLOATS = {16: "f4", 64: "f8"}  # NIFTI_TYPE_FLOAT32, NIFTI_TYPE_FLOAT64


def _nifti_header(path: Path, role: str) -> Tuple[bytes, bool]:
    """The first 348 bytes (decompressed) and whether the file is gzipped; refuses a gzip stream that ends or
    fails before them."""
    with open(path, "rb") as f:
        head = f.read(_NIFTI1.itemsize)
    if head[:2] != _GZIP_MAGIC:
        return head, False
    head = b""
    try:
        for piece in _decoded(path, 0, True):
            head += piece
            if len(head) >= _NIFTI1.itemsize:
                break
    except _Unfinished:
        raise _cut_header(path, role, f"its gzip stream ends after {len(head)} of the 348 bytes of a NIfTI-1 "
                                      "header") from None
    except isal_zlib.error as exc:
        raise InputError(
            f"The {role} image {path} is damaged: its gzip data do not decompress ({exc}). {_AGAIN}"
        ) from exc
    return head[:_NIFTI1.itemsize], True


def _nifti(path: Path, role: str) -> Optional[Storage]:
    """A single-file NIfTI-1 image's storage; refuses a sheared sform. None for what is not NIfTI-1 (ITK
    decides)."""
    head, compressed = _nifti_header(path, role)
    order = next((o for o in "<>" if len(head) >= 4 and np.frombuffer(head[:4], o + "i4")[0] == 348), None)
    if order is None:
        return None
    if len(head) < _NIFTI1.itemsize:
        raise _cut_header(path, role, f"the file ends after {len(head)} of the 348 bytes of a NIfTI-1 header")
    header = np.frombuffer(head, _NIFTI1.newbyteorder(order))[0]
    ndim = int(header["dim"][0])
    shape = [int(n) for n in header["dim"][1:ndim + 1]]
    if header["magic"] != b"n+1" or not 1 <= ndim <= 7 or min(shape) < 1 or header["bitpix"] % 8:
        return None  # a header/image pair, or a malformed header: ITK's message says which
    if header["sform_code"] > 0:
        check_axes(header["srow"][:, :3], path, role, ".nii")
    offset = max(int(header["vox_offset"]), 352)
    floats = _NIFTI_FLOATS.get(int(header["datatype"]))
    itemsize = int(header["bitpix"]) // 8
    return Storage(file=path, start=0 if compressed else offset, skip=offset if compressed else 0,
                   nbytes=math.prod(shape) * itemsize, compressed=compressed, what=_what(shape, itemsize),
                   floats=np.dtype(order + floats) if floats else None)


# ---------------------------------------------------------------------------------------------- NRRD

_NRRD_TYPES = {
    1: "signed char, int8, int8_t, uchar, unsigned char, uint8, uint8_t",
    2: "short, short int, signed short, signed short int, int16, int16_t, ushort, unsigned short, "
       "unsigned short int, uint16, uint16_t",
    4: "int, signed int, int32, int32_t, uint, unsigned int, uint32, uint32_t, float",
    8: "longlong, long long, long long int, signed long long, signed long long int, int64, int64_t, ulonglong, "
       "unsigned long long, unsigned long long int, uint64, uint64_t, double",
}
_NRRD_TYPE_BYTES = {name.strip(): size for size, names in _NRRD_TYPES.items() for name in names.split(",")}


def _nrrd_fields(path: Path) -> Optional[Tuple[Dict[str, str], Optional[int]]]:
    """The header's fields (names in lower case, without spaces) and where the attached data start (None when
    the file ends before the blank line that closes the header); None when a whole line is neither a field, a
    key/value pair nor a comment (not an NRRD header: ITK says so)."""
    fields: Dict[str, str] = {}
    with open(path, "rb") as f:
        f.readline()  # NRRD000x
        for line in iter(lambda: f.readline(1 << 16), b""):
            if not line.endswith(b"\n"):
                break  # the file ends inside this line
            text = line.decode("latin-1").rstrip("\r\n")
            if not text:
                return fields, f.tell()
            name, sep, value = text.partition(": ")
            if text.startswith("#") or ":=" in name:
                continue
            if not sep:
                return None
            fields[name.replace(" ", "").lower()] = value.strip()
    return fields, None


def _nrrd(path: Path, role: str) -> Optional[Storage]:
    """An NRRD image's storage (attached or in one data file; raw or gzip). None for other layouts."""
    with open(path, "rb") as f:
        if not f.read(8).startswith(b"NRRD000"):
            return None
    header = _nrrd_fields(path)
    if header is None:
        return None
    fields, end = header
    if "datafile" not in fields and end is None:
        raise _cut_header(path, role, "no blank line closes it and it names no data file")
    itemsize = _NRRD_TYPE_BYTES.get(fields.get("type", ""))
    encoding = fields.get("encoding", "")
    shape, skip = _ints(fields.get("sizes", "")), _ints(fields.get("byteskip", "0"))
    name = fields.get("datafile", "")
    if (itemsize is None or not shape or not skip or encoding not in ("raw", "gz", "gzip")
            or fields.get("lineskip", "0") != "0" or name.startswith("LIST") or len(name.split()) > 1
            or (encoding != "raw" and skip[0])):
        return None
    first = 0 if name else int(end or 0)
    return Storage(file=_data_file(path, name) if name else path, start=first + max(skip[0], 0), skip=0,
                   nbytes=math.prod(shape) * itemsize, compressed=encoding != "raw", what=_what(shape, itemsize),
                   at_end=skip[0] == -1)


# ---------------------------------------------------------------------------------------------- MetaImage

_MET_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
              "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
              "MET_DOUBLE": 8}


def _metaimage_fields(path: Path) -> Tuple[Dict[str, str], Optional[int]]:
    """The header's ``Key = Value`` fields and where the header ends (after ElementDataFile, its last line;
    None when the file ends first)."""
    fields: Dict[str, str] = {}
    with open(path, "rb") as f:
        for line in iter(lambda: f.readline(1 << 16), b""):
            key, sep, value = line.decode("latin-1").partition("=")
            if not sep:
                break
            fields[key.strip()] = value.strip()
            if key.strip() == "ElementDataFile":
                return fields, f.tell()
    return fields, None


def _metaimage(path: Path, role: str) -> Optional[Storage]:
    """A MetaImage's storage (LOCAL or one data file; raw or zlib). None for other layouts."""
    fields, end = _metaimage_fields(path)
    if end is None:
        if "NDims" in fields or "ObjectType" in fields:
            raise _cut_header(path, role, "it stops before its last line, ElementDataFile")
        return None
    itemsize = _MET_BYTES.get(fields.get("ElementType", ""))
    name = fields["ElementDataFile"]
    if not name:
        raise _cut_header(path, role, "its last line, ElementDataFile, names no file")
    shape, channels = _ints(fields.get("DimSize", "")), _ints(fields.get("ElementNumberOfChannels", "1"))
    header_size = _ints(fields.get("HeaderSize", "0"))
    compressed = fields.get("CompressedData", "False").lower() == "true"
    if (itemsize is None or not shape or not channels or not header_size
            or fields.get("BinaryData", "True").lower() != "true" or name.startswith("LIST") or len(name.split()) > 1
            or (header_size[0] and (compressed or name == "LOCAL"))):
        return None
    itemsize *= channels[0]
    local = name == "LOCAL"
    return Storage(file=path if local else _data_file(path, name), start=end if local else max(header_size[0], 0),
                   skip=0, nbytes=math.prod(shape) * itemsize, compressed=compressed, what=_what(shape, itemsize),
                   at_end=header_size[0] == -1)
