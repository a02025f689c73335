"""DICOM output: a synthetic volume written with pydicom as a classic DICOM series that a planning system imports
next to the scan it was made from.

A synthetic CT becomes a CT Image Storage series (a PET a PET Image, an MR an MR Image, anything else a Secondary
Capture) carrying every Type 1 and 2 attribute of its IOD's modules: the input's patient, study and Frame of
Reference UID (so structures drawn on the MR lie on the synthetic CT), a new series and new instances, each slice
exactly where the output grid puts it (the input's grid), values in HU through Rescale Slope/Intercept stored
exactly in 12 or 16 bits, the card's display window, and ``DERIVED\\SECONDARY`` image type, series description,
derivation description and image comments that say it is synthetic and which model (id, version, weights) made
it. Each slice refers to the input images it lies on or between (Source Image Sequence, Common Instance Reference
module). Without a DICOM input the study and Frame of Reference UIDs are new, and the caller warns the user that
the series joins no scan's study (:func:`new_identifiers`). :func:`write_series` writes; the caller
(:func:`.image_writing.stage_image`) stages the files, reads them back and checks them before anything is moved into
place. ``dciodvfy`` (Debian's dicom3tools) validates the files; see docs/outputs.md, "DICOM output".
"""
from __future__ import annotations

import copy
import re
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from pydicom import config
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import validate_value

from . import __version__
from .dicom_geometry import frame_count, instance_planes

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
PET_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
SECONDARY_CAPTURE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
#: DICOM Modality (0008,0060) of a card's output modality, and the storage class each is written as.
MODALITY = {"CT": "CT", "CBCT": "CT", "MR": "MR", "PET": "PT", "SPECT": "NM"}
SOP_CLASS = {"CT": CT_IMAGE_STORAGE, "MR": MR_IMAGE_STORAGE, "PT": PET_IMAGE_STORAGE}
#: The Image Type's third value (the CT Image module wants AXIAL or LOCALIZER; the MR Image module a value).
_IMAGE_TYPE_3 = {"CT": "AXIAL", "MR": "OTHER"}
#: Patient, study and frame-of-reference attributes a derived series shares with the scan it comes from.
SHARED_KEYWORDS = (
    "SpecificCharacterSet",
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientBirthTime", "PatientSex",
    "PatientIdentityRemoved", "DeidentificationMethod", "PatientAge", "PatientSize", "PatientWeight",
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
    "StudyDescription", "FrameOfReferenceUID", "PositionReferenceIndicator",
    "PatientPosition", "BodyPartExamined", "Laterality",
)
#: Units (0054,1001) of a PET output's unit: SUV (body weight) is g/ml.
_PET_UNITS = {"SUV": "GML", "BQML": "BQML", "BQ/ML": "BQML", "CNTS": "CNTS"}
_ITK_TAG = re.compile(r"^([0-9A-Fa-f]{4})\|([0-9A-Fa-f]{4})$")
_TEXT = {"°": " deg", "×": "x", "≥": ">=", "≤": "<=", "±": "+/-", "µ": "u", "–": "-", "—": "-", "→": "->"}
#: A source image counts as lying on an output slice within this distance (mm) along the slice normal.
_ON_SLICE_MM = 1e-3


@dataclass(frozen=True)
class SourceImage:
    """One image (a slice, or a frame of a multi-frame instance) of the scan an output is derived from."""

    sop_class: str
    sop_instance: str
    frame: Optional[int]  # 1-based frame number in a multi-frame instance, None for a single-frame one
    origin: Optional[np.ndarray]  # centre of its first pixel, None when not recorded


@dataclass(frozen=True)
class Source:
    """The DICOM scan an output is derived from: its top-level header (patient, study, frame of reference;
    pixel data left out), its series and its images."""

    header: Dataset
    series_uid: str
    series_number: Optional[int]
    images: Tuple[SourceImage, ...]


def source_from_headers(headers: Sequence[Dataset]) -> Source:
    """The :class:`Source` of a series' headers (one per file; a multi-frame file is one header)."""
    planes = instance_planes(headers)
    images = []
    for ds in headers:
        count = frame_count(ds)
        for frame in range(count):
            plane = planes[len(images)] if planes is not None else None
            images.append(SourceImage(str(ds.SOPClassUID), str(ds.SOPInstanceUID), frame + 1 if count > 1 else None,
                                      None if plane is None else plane.origin))
    header = Dataset()
    for keyword in SHARED_KEYWORDS:
        if keyword in headers[0]:
            header[keyword] = headers[0][keyword]
    number = headers[0].get("SeriesNumber")
    return Source(header, str(headers[0].get("SeriesInstanceUID", "")), None if number in (None, "") else int(number),
                  tuple(images))


def _metadata_header(metadata: Mapping[str, str]) -> Dataset:
    """The shared attributes given as ITK-style tag keys ('0020|000d') in an image's metadata (see
    :func:`.dicom_reading.study_tags`), for a caller without the source series."""
    header = Dataset()
    for key, value in metadata.items():
        match = _ITK_TAG.match(str(key))
        if not match or not str(value).strip():
            continue
        tag = Tag(int(match.group(1), 16), int(match.group(2), 16))
        if keyword_for_tag(tag) in SHARED_KEYWORDS:
            header.add_new(tag, dictionary_VR(tag), str(value).strip())
    if any(not str(element.value).isascii() for element in header):
        header.SpecificCharacterSet = "ISO_IR 192"
    return header


def shared_header(source: Optional[Source], metadata: Mapping[str, str]) -> Dataset:
    """The patient, study and frame-of-reference attributes of an output: the source series', else those in
    ``metadata``."""
    return source.header if source is not None else _metadata_header(metadata)


def new_identifiers(source: Optional[Source], metadata: Mapping[str, str]) -> List[str]:
    """Which of Study Instance UID and Frame of Reference UID a DICOM output cannot take from its input and
    gets new (then it joins no scan's study, and structures drawn on the scan do not carry over)."""
    header = shared_header(source, metadata)
    return [name for name in ("StudyInstanceUID", "FrameOfReferenceUID") if not str(header.get(name) or "")]


# ---------------------------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Storage:
    """How the values are stored: ``stored`` (slices x rows x columns, uint16 or int16), ``bits`` stored,
    rescale ``slope`` and ``intercept``; ``values`` what a reader gets back and ``step`` how far from the
    values given it may be (0: exactly them)."""

    stored: np.ndarray
    bits: int
    slope: float
    intercept: float
    values: np.ndarray
    step: float


def storage(values: np.ndarray, modality: str) -> Storage:
    """Whole numbers are stored exactly: CT numbers within -1024..3071 as 12-bit unsigned with intercept -1024
    (as CT scanners store them), others in int16 or uint16 with intercept 0. Anything else (floats, whole numbers
    beyond 16 bits) is stored in 16 bits over its range with a rescale slope; a PET image keeps intercept 0, as
    its IOD requires."""
    low, high = float(values.min()), float(values.max())
    whole = values.dtype.kind in "iu" or bool(np.all(np.round(values) == values))
    if whole and modality == "CT" and -1024 <= low and high <= 3071:
        return Storage((values + 1024).astype(np.uint16), 12, 1.0, -1024.0, values.astype(np.int16), 0.0)
    if whole and -32768 <= low and high <= 32767:
        return Storage(values.astype(np.int16), 16, 1.0, 0.0, values.astype(np.int16), 0.0)
    if whole and 0 <= low and high <= 65535:
        return Storage(values.astype(np.uint16), 16, 1.0, 0.0, values.astype(np.uint16), 0.0)
    if modality == "PT":
        unsigned = low >= 0
        top = high if unsigned else max(-low, high)
        slope = (abs(high) if low == high else top / (65535.0 if unsigned else 32767.0)) or 1.0  # a constant: exact
        intercept = 0.0
        dtype = np.uint16 if unsigned else np.int16
    else:
        slope = (high - low) / 65535.0 or 1.0
        intercept, dtype = low + 32768 * slope, np.int16
    slope, intercept = float(_ds(slope)), float(_ds(intercept))  # exactly the values the files hold
    limits = np.iinfo(dtype)
    stored = np.clip(np.round((values.astype(np.float64) - intercept) / slope), limits.min, limits.max).astype(dtype)
    return Storage(stored, 16, slope, intercept, values, slope)


# ---------------------------------------------------------------------------------------------- text


def _ds(value: float) -> str:
    """A DICOM decimal string (at most 16 characters) with as many digits as fit."""
    return next(text for text in (f"{value:.{digits}g}" for digits in range(15, 5, -1)) if len(text) <= 16)


def _text(value: Any, limit: int) -> str:
    """One line of plain ASCII (the default character repertoire every reader takes), at most ``limit``
    characters; the engine's own words hold a few symbols (°, ×, …)."""
    text = " ".join(str(value).split())
    for symbol, words in _TEXT.items():
        text = text.replace(symbol, words)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return text.replace("\\", "/")[:limit]


def _model(metadata: Mapping[str, str]) -> str:
    return f"{metadata.get('MedGANTranslate.ModelId', '')} v{metadata.get('MedGANTranslate.ModelVersion', '?')}".strip()


def _comments(metadata: Mapping[str, str], label: str) -> str:
    """Image Comments: what the image is in a sentence, then every provenance entry (key=value)."""
    entries = "; ".join(f"{k}={v}" for k, v in sorted(metadata.items()) if not _ITK_TAG.match(str(k)))
    return _text(f"{label}, made by MedGANTranslate model {_model(metadata)}: not an acquired image. "
                 f"{metadata.get('MedGANTranslate.IntendedUse', '')} {entries}", 10240)


# ---------------------------------------------------------------------------------------------- datasets


def _put(ds: Dataset, keyword: str, value: Any) -> None:
    """Sets an attribute the engine makes, refusing a value its VR does not allow (a bug, not the user's)."""
    setattr(ds, keyword, value)
    element = ds[keyword]
    if element.VR != "SQ" and element.value is not None:
        for item in (element.value if element.VM > 1 else [element.value]):
            validate_value(element.VR, str(item) if element.VR in ("IS", "DS") else item, config.RAISE)


def _series_uids(shared: Dataset) -> Dict[str, str]:
    """The study and frame of reference of the output: the shared ones, else new ones."""
    return {name: str(shared.get(name) or "") or generate_uid(prefix=None)
            for name in ("StudyInstanceUID", "FrameOfReferenceUID")}


def _image_type(modality: str, kind: str) -> List[str]:
    """DERIVED\\SECONDARY (a PET image must say PRIMARY), the value 3 CT and MR images need, and what it is:
    SYNTHETIC, or the kind of map (DIFFERENCE, UNCERTAINTY)."""
    kind = _text(kind.upper(), 16) if kind else "SYNTHETIC"
    if modality == "PT":
        return ["DERIVED", "PRIMARY", "", kind]
    return ["DERIVED", "SECONDARY", _IMAGE_TYPE_3.get(modality, "OTHER"), kind]


def _template(image: sitk.Image, metadata: Mapping[str, str], label: str, shared: Dataset, modality: str,
              values: Storage, window: Optional[Tuple[float, float]], series_number: int) -> FileDataset:
    """The attributes every slice of the series shares."""
    sop_class = SOP_CLASS.get(modality, SECONDARY_CAPTURE_STORAGE)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationVersionName = _text(f"MEDGAN_{__version__}", 16)
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    kind = str(metadata.get("MedGANTranslate.Kind") or "")  # a map (difference, uncertainty): not a synthetic image
    now_date, now_time = time.strftime("%Y%m%d"), time.strftime("%H%M%S")
    model = _model(metadata)
    for element in shared:  # patient, study, frame of reference: the input's, as they are
        ds.add(copy.deepcopy(element))
    uids = _series_uids(shared)
    new_study = not str(shared.get("StudyInstanceUID") or "")
    study = {"StudyInstanceUID": uids["StudyInstanceUID"], "FrameOfReferenceUID": uids["FrameOfReferenceUID"]}
    if new_study:
        study.update(StudyDate=now_date, StudyTime=now_time)
    for keyword, value in study.items():
        _put(ds, keyword, value)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                    "ReferringPhysicianName", "StudyID", "AccessionNumber", "PositionReferenceIndicator"):
        if keyword not in ds:  # Type 2: present, empty when unknown
            _put(ds, keyword, "")
    if modality in ("CT", "MR") and "PatientPosition" not in ds:
        _put(ds, "PatientPosition", "")
    if modality == "PT" and "PatientPosition" in ds:  # a PET image says it by Patient Orientation Code Sequence
        del ds.PatientPosition
    if "BodyPartExamined" not in ds and "Laterality" not in ds:  # unknown whether it is a paired body part
        _put(ds, "Laterality", "")
    attributes: Dict[str, Any] = {
        # SOP Common
        "SOPClassUID": sop_class,
        "InstanceCreationDate": now_date,
        "InstanceCreationTime": now_time,
        # General Series
        "Modality": modality,
        "SeriesInstanceUID": generate_uid(prefix=None),
        "SeriesNumber": series_number,
        "SeriesDate": now_date,
        "SeriesTime": now_time,
        "SeriesDescription": _text(f"{label} {model}", 64),
        # General Equipment
        "Manufacturer": "MedGANTranslate",
        "ManufacturerModelName": _text(f"MedGANTranslate {model}", 64),
        "SoftwareVersions": [_text(f"MedGANTranslate {__version__}", 64), _text(f"model {model}", 64)],
        # General Image
        "ImageType": _image_type(modality, kind),
        "ContentDate": now_date,
        "ContentTime": now_time,
        "DerivationDescription": _text(f"{label} computed from the input scan by the MedGANTranslate model {model} "
                                       f"(weights SHA-256 {metadata.get('MedGANTranslate.WeightsSHA256', '?')}). "
                                       f"{metadata.get('MedGANTranslate.IntendedUse', '')}", 1024),
        "ImageComments": _comments(metadata, label),
        "BurnedInAnnotation": "NO",
        "LossyImageCompression": "00",
        # Image Plane (per slice: Image Position, Slice Location)
        **_plane(image),
        # Image Pixel
        "SamplesPerPixel": 1,
        "PhotometricInterpretation": "MONOCHROME2",
        "Rows": image.GetSize()[1],
        "Columns": image.GetSize()[0],
        "BitsAllocated": 16,
        "BitsStored": values.bits,
        "HighBit": values.bits - 1,
        "PixelRepresentation": int(values.stored.dtype.kind == "i"),
    }
    if modality != "MR" or (values.slope, values.intercept) != (1.0, 0.0):  # the MR IOD has no rescale
        attributes.update(RescaleIntercept=_ds(values.intercept), RescaleSlope=_ds(values.slope))
    if modality == "CT" or modality not in SOP_CLASS:
        attributes["RescaleType"] = "HU" if modality == "CT" and not kind else "US"  # US: unspecified
    if window is not None:  # VOI LUT
        attributes.update(WindowCenter=_ds(window[0]), WindowWidth=_ds(window[1]),
                          WindowCenterWidthExplanation=_text(f"{kind or 'model card'} display", 64))
    for keyword, value in {**attributes, **_modality_attributes(modality, metadata, image)}.items():
        _put(ds, keyword, value)
    return ds


def _plane(image: sitk.Image) -> Dict[str, Any]:
    """Image Plane attributes every slice shares: the grid's orientation, pixel spacing and slice spacing."""
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    spacing = image.GetSpacing()
    return {
        "ImageOrientationPatient": [_ds(v) for v in list(direction[:, 0]) + list(direction[:, 1])],
        "PixelSpacing": [_ds(spacing[1]), _ds(spacing[0])],  # between rows, between columns
        "SliceThickness": _ds(spacing[2]),
        "SpacingBetweenSlices": _ds(spacing[2]),
    }


def _modality_attributes(modality: str, metadata: Mapping[str, str], image: sitk.Image) -> Dict[str, Any]:
    """The Type 1 and 2 attributes of the IOD's own modules (CT Image; MR Image; PET Series, Isotope, Image and
    NM/PET Patient Orientation; SC Equipment), none of them an acquisition parameter the image never had."""
    if modality == "CT":
        return {"KVP": "", "AcquisitionNumber": ""}
    if modality == "MR":
        return {"ScanningSequence": "RM", "SequenceVariant": "NONE", "ScanOptions": "", "MRAcquisitionType": "",
                "RepetitionTime": "", "EchoTime": "", "EchoTrainLength": ""}
    if modality == "PT":
        unit = _PET_UNITS.get(str(metadata.get("MedGANTranslate.Unit", "")).upper().replace(" ", ""), "NONE")
        return {"Units": unit, "CountsSource": "EMISSION", "SeriesType": ["STATIC", "IMAGE"],
                "NumberOfSlices": image.GetSize()[2], "CorrectedImage": "", "DecayCorrection": "NONE",
                "CollimatorType": "", "RadiopharmaceuticalInformationSequence": DicomSequence(),
                "PatientOrientationCodeSequence": DicomSequence(),
                "PatientGantryRelationshipCodeSequence": DicomSequence(),
                "FrameReferenceTime": "0", "AcquisitionDate": "", "AcquisitionTime": "", "ActualFrameDuration": ""}
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    return {"ConversionType": "WSD",
            "PatientOrientation": [_orientation(direction[:, 0]), _orientation(direction[:, 1])]}


def _orientation(axis: np.ndarray) -> str:
    """Patient Orientation of a row or column direction (LPS): its main directions, largest first ('LP')."""
    letters = [("L", "R"), ("P", "A"), ("H", "F")]
    order = [i for i in np.argsort(-np.abs(axis)) if abs(axis[i]) > 1e-4][:3]
    return "".join(letters[i][0 if axis[i] > 0 else 1] for i in order)


def _references(images: Sequence[SourceImage], heights: np.ndarray, height: float) -> List[SourceImage]:
    """The source ``images`` (at ``heights`` along the output's slice normal) an output slice at ``height``
    derives from: the one it lies on, else the nearest on either side (those a regularised input was
    interpolated between)."""
    if not len(images):
        return []
    distance = heights - height
    if np.abs(distance).min() <= _ON_SLICE_MM:
        return [images[int(np.abs(distance).argmin())]]
    below, above = np.flatnonzero(distance < 0), np.flatnonzero(distance > 0)
    return ([images[int(below[distance[below].argmax()])]] if below.size else []) + \
        ([images[int(above[distance[above].argmin()])]] if above.size else [])


def _reference_items(source: Source, images: Sequence[SourceImage]) -> Dict[str, DicomSequence]:
    """Source Image Sequence (General Image) and the Common Instance Reference module's Referenced Series
    Sequence for one slice."""
    items, instances = [], {}
    for image in images:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = image.sop_class, image.sop_instance
        if image.frame is not None:
            item.ReferencedFrameNumber = image.frame
        items.append(item)
        instances[image.sop_instance] = image.sop_class
    series = Dataset()
    series.SeriesInstanceUID = source.series_uid
    series.ReferencedInstanceSequence = DicomSequence()
    for uid, sop_class in instances.items():
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, uid
        series.ReferencedInstanceSequence.append(item)
    return {"SourceImageSequence": DicomSequence(items), "ReferencedSeriesSequence": DicomSequence([series])}


def _save(ds: FileDataset, path: Path) -> None:
    """A DICOM Part 10 file (explicit VR little endian), its file meta checked by pydicom."""
    try:
        ds.save_as(str(path), enforce_file_format=True)
    except TypeError:  # pydicom 2 has no enforce_file_format
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(str(path), write_like_original=False)


# ---------------------------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class Written:
    """The files of a series in slice order, the values a reader should get back and how far from them."""

    files: List[Path]
    values: np.ndarray
    step: float


def write_series(image: sitk.Image, folder: Path, metadata: Mapping[str, str], label: str,
                 source: Optional[Source] = None, window: Optional[Tuple[float, float]] = None) -> Written:
    """Writes the scalar 3D ``image`` into ``folder`` as one file per slice, ``IM00001.dcm`` on. ``metadata``:
    the provenance (``MedGANTranslate.*``) and, without ``source``, the shared patient/study tags as ITK keys;
    ``label``: what the image is ('SYNTHETIC CT'); ``source``: the DICOM input it derives from; ``window``:
    the display centre and width."""
    name = str(metadata.get("MedGANTranslate.Modality", ""))
    modality = MODALITY.get(name, name) or "OT"
    values = storage(sitk.GetArrayViewFromImage(image), modality)
    shared = shared_header(source, metadata)
    base = 1 if source is None else 1000 + (source.series_number or 0)
    kind = metadata.get("MedGANTranslate.Kind")
    series_number = base + ({"difference": 1, "uncertainty": 2}.get(kind, 3) if kind else 0)
    ds = _template(image, metadata, label, shared, modality, values, window, series_number)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    normal = np.cross(direction[:, 0], direction[:, 1])
    placed = [item for item in (source.images if source is not None else ()) if item.origin is not None]
    heights = np.array([float(np.dot(item.origin, normal)) for item in placed])
    files = []
    for k in range(values.stored.shape[0]):
        position = np.asarray(image.TransformIndexToPhysicalPoint((0, 0, k)), dtype=float)
        uid = generate_uid(prefix=None)
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        _put(ds, "SOPInstanceUID", uid)
        _put(ds, "InstanceNumber", k + 1)
        _put(ds, "ImagePositionPatient", [_ds(p) for p in position])
        _put(ds, "SliceLocation", _ds(float(np.dot(position, normal))))
        if modality == "PT":
            _put(ds, "ImageIndex", k + 1)
        references = _references(placed, heights, float(np.dot(position, normal)))
        for keyword in ("SourceImageSequence", "ReferencedSeriesSequence"):
            if keyword in ds:
                del ds[keyword]
        if references and source is not None:
            for keyword, sequence in _reference_items(source, references).items():
                setattr(ds, keyword, sequence)
        ds.PixelData = np.ascontiguousarray(values.stored[k]).astype(values.stored.dtype.newbyteorder("<")).tobytes()
        files.append(folder / f"IM{k + 1:05d}.dcm")
        _save(ds, files[-1])
    return Written(files, values.values, values.step)
