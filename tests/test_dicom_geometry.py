"""DICOM geometry: irregular series (gantry tilt, uneven gaps, non-parallel slices) regularised, enhanced
(multi-frame) files read as volumes, refusals that say what is wrong; on synthetic series written here with
pydicom, and on the real GE head CT and Siemens XA30 enhanced MR through ``real_data``."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pytest
import SimpleITK as sitk
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from real_data import real_file
from MedGANTranslateLib.errors import InputError
from MedGANTranslateLib.dicom_reading import DICOM_SERIES_TAGS, DICOM_STUDY_TAGS, INPUT_WARNING
from MedGANTranslateLib.image_headers import read_header
from MedGANTranslateLib.imageio import read_image

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
SIZE = (40, 36)  # columns, rows
SPACING = (1.5, 1.25)  # along a row, down a column
#: A linear intensity field in patient coordinates (LPS, mm): linear interpolation reproduces it exactly.
RAMP = np.array([0.05, -0.08, -0.11])
RAMP_AT_ORIGIN = 3.0
SLOPE = 1e-3  # stored values quantise the ramp to 0.5e-3

Slice = Tuple[np.ndarray, np.ndarray, np.ndarray]  # origin, row, column


def ramp(points: np.ndarray) -> np.ndarray:
    return points @ RAMP + RAMP_AT_ORIGIN


def pixel_points(origin, row, column, size=SIZE, spacing=SPACING) -> np.ndarray:
    """Patient coordinates of every pixel centre of a slice (rows x columns x 3)."""
    j, i = np.mgrid[: size[1], : size[0]]
    return origin + (i * spacing[0])[..., None] * row + (j * spacing[1])[..., None] * column


def tilted(angle_deg: float) -> Tuple[np.ndarray, np.ndarray]:
    """Row and column of an axial slice on a gantry tilted by ``angle_deg`` about the x axis."""
    a = math.radians(angle_deg)
    return np.array([1.0, 0, 0]), np.array([0, math.cos(a), -math.sin(a)])


def save(ds: FileDataset, path: Path) -> None:
    """A DICOM Part 10 file, with pydicom 3 or 2."""
    try:
        ds.save_as(str(path), enforce_file_format=True)
    except TypeError:  # pydicom 2 has no enforce_file_format
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(str(path), write_like_original=False)


def new_dataset(path: Path, sop_class: str, series: Optional[str] = None) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3.4", series or "1.2.3.4.5"
    ds.FrameOfReferenceUID, ds.PatientName, ds.PatientID = "1.2.3.4.6", "Test^Ramp", "RAMP1"
    ds.SeriesDescription = "ramp"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    return ds


def write_slice(path: Path, origin, row, column, stored: np.ndarray, intercept: float, slope: float = SLOPE,
                spacing=SPACING, thickness: Optional[float] = 4.0, number: int = 1) -> None:
    ds = new_dataset(path, CT_STORAGE)
    ds.Modality, ds.InstanceNumber = "CT", number
    ds.ImagePositionPatient = [f"{v:.6f}" for v in origin]
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in list(row) + list(column)]
    ds.PixelSpacing = [f"{spacing[1]:g}", f"{spacing[0]:g}"]
    if thickness is not None:
        ds.SliceThickness = f"{thickness:g}"
    ds.Rows, ds.Columns = stored.shape
    ds.RescaleSlope, ds.RescaleIntercept = f"{slope:g}", f"{intercept:.3f}"
    ds.PixelData = stored.astype(np.int16).tobytes()
    save(ds, path)


def write_ramp_series(folder: Path, slices: Sequence[Slice], size=SIZE, spacing=SPACING, thickness=4.0) -> Path:
    """One CT slice per plane holding the ramp (each slice with its own intercept, as a scanner may write)."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, (origin, row, column) in enumerate(slices):
        values = ramp(pixel_points(origin, row, column, size, spacing))
        intercept = round(float(values.mean()), 3)
        stored = np.round((values - intercept) / SLOPE)
        write_slice(folder / f"IM{k:03d}.dcm", origin, row, column, stored, intercept, spacing=spacing,
                    thickness=thickness, number=k + 1)
    return folder


def gantry_series(gaps: Sequence[float], tilt: float = 15.0) -> List[Slice]:
    """Parallel slices on a tilted gantry: the table moves along z, so each slice is shifted in-plane; ``gaps``
    are the distances along the slice normal."""
    row, column = tilted(tilt)
    steps = np.concatenate([[0.0], np.cumsum(gaps)]) / math.cos(math.radians(tilt))
    return [(np.array([-30.0, -20.0, 10.0 + z]), row, column) for z in steps]


def voxel_points(image: sitk.Image) -> np.ndarray:
    """Patient coordinates of every voxel centre (z, y, x, 3)."""
    k, j, i = np.mgrid[: image.GetSize()[2], : image.GetSize()[1], : image.GetSize()[0]]
    index = np.stack([i, j, k], axis=-1) * np.asarray(image.GetSpacing())
    axes = np.asarray(image.GetDirection()).reshape(3, 3)
    return np.asarray(image.GetOrigin()) + index @ axes.T


def covered_ramp_error(image: sitk.Image) -> Tuple[float, np.ndarray]:
    """Largest difference from the ramp over the voxels some slice covers (those not set to the fill value, the
    series' minimum, which is the image's minimum as interpolation stays within the slices' values)."""
    values = sitk.GetArrayFromImage(image)
    covered = values != values.min()
    return float(np.abs(values - ramp(voxel_points(image)))[covered].max()), covered


def assert_orthonormal(image: sitk.Image) -> None:
    axes = np.asarray(image.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(axes.T @ axes, np.eye(3), atol=1e-9)


def assert_header_matches(path: Path, image: sitk.Image) -> None:
    header = read_header(path)
    assert header.size == image.GetSize() and header.dimension == 3
    np.testing.assert_allclose(header.spacing, image.GetSpacing(), atol=1e-9)
    np.testing.assert_allclose(header.origin, image.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(header.direction, image.GetDirection(), atol=1e-9)
    assert header.pixel_id == image.GetPixelIDTypeAsString()


# ------------------------------------------------------------------------------------------- regularised series


def test_gantry_tilt_and_uneven_gaps_reproduce_the_ramp(tmp_path):
    gaps = [3.0, 3.0, 3.0, 1.0, 5.0, 5.0, 5.0]
    folder = write_ramp_series(tmp_path / "ct", gantry_series(gaps, tilt=15.0), thickness=5.0)
    image = read_image(folder)
    assert_orthonormal(image)
    axes = np.asarray(image.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(axes[:, 2], [0, math.sin(math.radians(15)), math.cos(math.radians(15))], atol=1e-6)
    # finest sampling: every slice has a 3 mm gap on one side at least; 25 mm in 3 mm steps needs 10 planes
    assert image.GetSize()[2] == 10 and image.GetSpacing()[2] == pytest.approx(25 / 9)
    assert image.GetSize()[:2] == (40, 36 + math.ceil(25 * math.tan(math.radians(15)) / SPACING[1]))
    error, covered = covered_ramp_error(image)
    assert error < 1e-3
    assert covered[0].sum() == SIZE[0] * SIZE[1], "on the first slice's plane, exactly its own pixels are covered"
    assert covered.mean() > 0.6
    warning = image.GetMetaData(INPUT_WARNING)
    assert str(folder) in warning and "gantry tilt of 15°" in warning
    assert "slice gaps from 1 to 5 mm (3 mm ×3, 1 mm, 5 mm ×3)" in warning
    assert "no slice missing (every gap is within its slices' 5 mm thickness)" in warning
    assert "regular 2.78 mm grid covering the acquired slices" in warning and "3D Slicer" in warning
    assert "dcm2niix" in warning and "interpolated" in warning
    assert image.GetMetaData("0008|0060") == "CT" and image.GetMetaData("0020|000d") == "1.2.3.4"
    assert_header_matches(folder, image)


def about_centre(centre, row, column) -> Slice:
    """A slice centred on ``centre`` (a gantry tilts about its isocentre)."""
    half = (np.array(SIZE) - 1) * SPACING / 2
    return np.asarray(centre) - half[0] * row - half[1] * column, row, column


def test_non_parallel_slices_reproduce_the_ramp(tmp_path):
    """A gantry tilt that changes from slice to slice: the slice planes fan out, yet never cross in the field."""
    slices = [about_centre([0.0, 0.0, 10.0 + 4.0 * k], *tilted(2.0 * k)) for k in range(6)]
    folder = write_ramp_series(tmp_path / "ct", slices)
    image = read_image(folder)
    assert_orthonormal(image)
    error, covered = covered_ramp_error(image)
    assert error < 1e-3 and covered.mean() > 0.5
    warning = image.GetMetaData(INPUT_WARNING)
    assert "slice planes not parallel (up to 10° apart: a gantry tilt that changes within the series)" in warning
    assert "gantry tilt of 0°–10°" in warning
    assert_header_matches(folder, image)


def test_a_moved_field_of_view_is_not_called_a_tilt(tmp_path):
    row, column = tilted(0.0)
    slices = [(np.array([-30.0 + 2.0 * (k % 2), -20.0, 10.0 + 3.0 * k]), row, column) for k in range(5)]
    image = read_image(write_ramp_series(tmp_path / "ct", slices))
    assert covered_ramp_error(image)[0] < 1e-3 and image.GetSize() == (42, 36, 5)
    warning = image.GetMetaData(INPUT_WARNING)
    assert "slices shifted in-plane against each other by up to 2 mm (the field of view moved)" in warning
    assert "gantry tilt of" not in warning and "slice gaps" not in warning


def test_a_missing_slice_is_named_and_interpolated(tmp_path):
    gaps = [2.5, 5.0, 2.5, 2.5]
    folder = write_ramp_series(tmp_path / "ct", gantry_series(gaps, tilt=0.0), thickness=2.5)
    image = read_image(folder)
    assert image.GetSize()[2] == 6 and image.GetSpacing()[2] == pytest.approx(2.5)
    assert covered_ramp_error(image)[0] < 1e-3
    warning = image.GetMetaData(INPUT_WARNING)
    assert "gantry tilt of" not in warning
    assert "1 gap(s) wider than the slices on either side (e.g. 5 mm between slices 2.5 mm thick, after slice 2 of 5 along" in warning
    assert "slices are missing there or were not acquired" in warning


def test_unknown_slice_thickness_is_said(tmp_path):
    folder = write_ramp_series(tmp_path / "ct", gantry_series([2.0, 3.0, 2.0], tilt=0.0), thickness=None)
    assert "slice thickness not recorded, so missing slices cannot be ruled out" in read_image(folder).GetMetaData(INPUT_WARNING)


@pytest.mark.parametrize("tilt", [0.0, 15.0], ids=["stacked", "regularised"])
def test_a_latin1_patient_name_is_read(tmp_path, tilt):
    """GDCM hands over a tag's raw bytes: a Latin-1 name (ISO_IR 100, as European scanners write) made the
    reader fail with a TypeError; the tags are now taken as pydicom decodes them."""
    folder = write_ramp_series(tmp_path / "ct", gantry_series([4.0] * 3, tilt=tilt))
    for path in folder.iterdir():
        ds = pydicom.dcmread(str(path))
        ds.SpecificCharacterSet, ds.PatientName = "ISO_IR 100", "Müller^Anna"
        save(ds, path)
    image = read_image(folder)
    assert image.GetMetaData("0010|0010") == "Müller^Anna" and image.GetMetaData("0010|0020") == "RAMP1"


def test_a_regular_series_reads_exactly_as_itk_stacks_it(tmp_path):
    row, column = tilted(0.0)
    rotation = np.array([[0.96, -0.28, 0.0], [0.28, 0.96, 0.0], [0.0, 0.0, 1.0]])  # oblique, orthonormal
    normal = np.cross(rotation @ row, rotation @ column)
    slices = [(np.array([-30.0, -20.0, 10.0]) + 2.5 * k * normal, rotation @ row, rotation @ column) for k in range(7)]
    folder = write_ramp_series(tmp_path / "ct", slices)
    image = read_image(folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    expected = reader.Execute()
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(expected))
    assert image.GetPixelID() == expected.GetPixelID() and image.GetSize() == expected.GetSize()
    assert (image.GetSpacing(), image.GetOrigin(), image.GetDirection()) == (
        expected.GetSpacing(), expected.GetOrigin(), expected.GetDirection())
    assert set(image.GetMetaDataKeys()) <= set(DICOM_STUDY_TAGS + DICOM_SERIES_TAGS)
    assert not image.HasMetaDataKey(INPUT_WARNING)


# ------------------------------------------------------------------------------------------- refusals


def test_slices_of_different_sizes_are_refused(tmp_path):
    folder = write_ramp_series(tmp_path / "ct", gantry_series([3.0] * 4))
    write_ramp_series(folder, gantry_series([3.0] * 4)[:1], size=(40, 30))  # overwrites IM000 with a smaller slice
    with pytest.raises(InputError) as err:
        read_image(folder, role="input 'T1w'")
    text = str(err.value)
    assert f"The input 'T1w' DICOM series in {folder} has slices of different sizes (1 of 40 x 30 pixels, 4 of 40 x 36 pixels)" in text
    assert "not one volume" in text and "Move the odd files out" in text
    with pytest.raises(InputError, match="different sizes"):
        read_header(folder)


def test_slices_of_different_pixel_spacings_are_refused(tmp_path):
    folder = write_ramp_series(tmp_path / "ct", gantry_series([3.0] * 4))
    write_ramp_series(folder, gantry_series([3.0] * 4)[:1], spacing=(1.0, 1.0))
    with pytest.raises(InputError, match=r"slices of different pixel spacings \(1 of 1 x 1 mm, 4 of 1.5 x 1.25 mm\)"):
        read_image(folder)


def test_two_slices_at_one_position_are_refused(tmp_path):
    slices = gantry_series([3.0] * 4, tilt=0.0)
    folder = write_ramp_series(tmp_path / "ct", slices + [slices[2]])
    with pytest.raises(InputError) as err:
        read_image(folder)
    assert "has 1 pair(s) of slices at the same position" in str(err.value)
    assert "several time points, echoes or acquisitions" in str(err.value) and "Export one of them" in str(err.value)


def test_slices_that_cross_in_the_field_of_view_are_refused(tmp_path):
    slices = [(np.array([-30.0, -20.0, 10.0]), *tilted(0.0)), (np.array([-30.0, -20.0, 11.0]), *tilted(12.0)),
              (np.array([-30.0, -20.0, 14.0]), *tilted(12.0))]
    folder = write_ramp_series(tmp_path / "ct", slices)
    with pytest.raises(InputError, match="has slices that cross inside the field of view"):
        read_image(folder)


def test_slices_in_different_orientations_are_refused(tmp_path):
    axial = gantry_series([3.0] * 3, tilt=0.0)
    sagittal = (np.array([0.0, -20.0, 30.0]), np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0]))
    folder = write_ramp_series(tmp_path / "ct", axial + [sagittal])
    with pytest.raises(InputError, match=r"has slices in different orientations \(up to 90° apart"):
        read_image(folder)


def test_a_single_classic_slice_file_is_refused(tmp_path):
    folder = write_ramp_series(tmp_path / "ct", gantry_series([3.0]))
    with pytest.raises(InputError, match="is a single DICOM slice; give the folder that holds the whole series"):
        read_image(folder / "IM000.dcm")


# ------------------------------------------------------------------------------------------- enhanced DICOM


def write_enhanced(path: Path, values: np.ndarray, slices: Sequence[Slice], slopes: Sequence[float],
                   intercept: float = 0.0, signed: bool = False) -> Path:
    """An enhanced MR file: one frame per slice, geometry and rescale in the per-frame functional groups;
    12 of 16 bits stored."""
    ds = new_dataset(path, ENHANCED_MR_STORAGE)
    ds.Modality, ds.NumberOfFrames = "MR", len(slices)
    ds.Rows, ds.Columns = values.shape[1:]
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, int(signed)
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing, measures.SliceThickness = [f"{SPACING[1]:g}", f"{SPACING[0]:g}"], "2"
    orientation = Dataset()
    orientation.ImageOrientationPatient = [f"{v:.8f}" for v in list(slices[0][1]) + list(slices[0][2])]
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = [measures], [orientation]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for (origin, _, _), slope in zip(slices, slopes):
        frame, position, rescale = Dataset(), Dataset(), Dataset()
        position.ImagePositionPatient = [f"{v:.6f}" for v in origin]
        rescale.RescaleSlope, rescale.RescaleIntercept, rescale.RescaleType = f"{slope:g}", f"{intercept:g}", "US"
        frame.PlanePositionSequence, frame.PixelValueTransformationSequence = [position], [rescale]
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = frames
    stored = (values - intercept) / np.asarray(slopes)[:, None, None]
    ds.PixelData = np.round(stored).astype(np.int16 if signed else np.uint16).tobytes()
    save(ds, path)
    return path


@pytest.mark.parametrize("slopes, intercept, signed, low, pixel", [
    ([1, 2, 1, 2, 1, 2], 0.0, False, 0, "16-bit signed integer"),  # whole numbers up to 2 x 4095 fit int16
    ([1] * 6, -1024.0, True, -1000, "16-bit signed integer"),  # CT-like: stored int16, rescaled int16
    ([0.5] * 6, 0.25, False, 0, "32-bit float"),
])
def test_enhanced_file_reads_as_a_volume_with_per_frame_rescale(tmp_path, slopes, intercept, signed, low, pixel):
    row, column = tilted(0.0)
    normal = np.cross(row, column)
    slices = [(np.array([-30.0, -20.0, 10.0]) + 2.0 * k * normal, row, column) for k in range(6)][::-1]
    stored = np.random.default_rng(0).integers(low, low + 1000, (6, SIZE[1], SIZE[0]))
    values = stored * np.asarray(slopes)[:, None, None] + intercept
    path = write_enhanced(tmp_path / "mr.dcm", values, slices, slopes, intercept, signed)
    for source in (path, tmp_path):  # the file, or the folder that holds it
        image = read_image(source)
        assert image.GetSize() == (40, 36, 6) and image.GetPixelIDTypeAsString() == pixel
        np.testing.assert_allclose(image.GetSpacing(), (1.5, 1.25, 2.0), atol=1e-9)
        np.testing.assert_allclose(image.GetOrigin(), slices[-1][0], atol=1e-6)  # frames are sorted along the normal
        np.testing.assert_array_equal(sitk.GetArrayViewFromImage(image), values[::-1])
        assert image.GetMetaData("0008|0060") == "MR" and not image.HasMetaDataKey(INPUT_WARNING)
        assert_header_matches(source, image)


def test_multi_frame_file_among_other_files_is_refused(tmp_path):
    row, column = tilted(0.0)
    slices = [(np.array([0.0, 0.0, 2.0 * k]), row, column) for k in range(3)]
    write_enhanced(tmp_path / "mr.dcm", np.ones((3, SIZE[1], SIZE[0])), slices, slopes=[1, 1, 1])
    write_ramp_series(tmp_path, gantry_series([2.0]))  # two slices of the same series
    with pytest.raises(InputError, match="holds 3 files of one DICOM series, 1 of them multi-frame"):
        read_image(tmp_path)


def test_trailing_dimension_of_size_one_is_dropped(tmp_path):
    image = sitk.GetImageFromArray(np.arange(120, dtype=np.int16).reshape(1, 6, 5, 4), isVector=False)
    path = tmp_path / "v.nrrd"
    sitk.WriteImage(image, str(path))
    assert sitk.ReadImage(str(path)).GetDimension() == 4
    back = read_image(path)
    assert back.GetSize() == (4, 5, 6)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back), np.arange(120).reshape(6, 5, 4))
    header = read_header(path)
    assert header.size == (4, 5, 6) and header.dimension == 3 and len(header.direction) == 9


# ------------------------------------------------------------------------------------------- real scans


@pytest.fixture(scope="module")
def ge_ct():
    folder = real_file("ct", "ge_head_ct_dicom")
    start = time.perf_counter()
    image = read_image(folder)
    return folder, image, time.perf_counter() - start


def test_real_ge_head_ct_with_tilt_and_uneven_gaps_is_regularised(ge_ct):
    folder, image, seconds = ge_ct
    assert seconds < 8, f"reading took {seconds:.1f} s"
    assert_orthonormal(image)
    assert image.GetSize() == (512, 611, 38) and image.GetSpacing()[2] < 4.0
    values = sitk.GetArrayViewFromImage(image)
    scanned = values[values > -1200]  # not the scanner's padding (-1500) nor our fill
    assert -1050 < np.percentile(scanned, 5) < -950, "air is about -1000 HU"
    middle = values[values.shape[0] // 2, 290:310, 246:266]
    assert 0 < np.median(middle) < 80, "brain in the middle of the head"
    warning = image.GetMetaData(INPUT_WARNING)
    assert "gantry tilt of 18.5°" in warning and "slice gaps from 1.08 to 7 mm" in warning
    assert "no slice missing" in warning and "resampled onto a regular 3.89 mm grid" in warning
    assert image.GetMetaData("0008|0060") == "CT"
    assert_header_matches(folder, image)


def test_real_xa30_enhanced_file_matches_its_dcm2niix_conversion():
    path = real_file("t1", "siemens_xa30_enhanced_dicom", "t1.dcm")
    nifti = sitk.ReadImage(str(real_file("t1", "siemens_xa30_t1w_2mm.nii.gz")))
    for source in (path, path.parent):
        image = read_image(source)
        assert_header_matches(source, image)
        same = sitk.DICOMOrient(image, sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(nifti.GetDirection()))
        assert same.GetSize() == nifti.GetSize() == (96, 128, 128)
        np.testing.assert_allclose(same.GetSpacing(), nifti.GetSpacing(), atol=1e-3)
        np.testing.assert_allclose(same.GetOrigin(), nifti.GetOrigin(), atol=1e-3)
        np.testing.assert_allclose(same.GetDirection(), nifti.GetDirection(), atol=1e-9)
        far = [n - 1 for n in nifti.GetSize()]
        np.testing.assert_allclose(same.TransformIndexToPhysicalPoint(far), nifti.TransformIndexToPhysicalPoint(far), atol=1e-3)
        np.testing.assert_array_equal(sitk.GetArrayViewFromImage(same), sitk.GetArrayViewFromImage(nifti))
        assert image.GetMetaData("0008|0060") == "MR"


def test_cli_gets_past_reading_the_real_ge_series(tmp_path):
    """The default model is for MR; given a CT it may warn or stop later, but reading must succeed."""
    folder = real_file("ct", "ge_head_ct_dicom")
    cli = [sys.executable, "-m", "MedGANTranslateLib.cli", "run", "--model", "mr-t1-to-ct-pix2pix", "-i", str(folder),
           "-o", str(tmp_path / "out.nii.gz"), "--device", "cpu", "--progress", "json"]
    proc = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "MEDGAN_TRANSLATE_THREADS": "1"})
    stages, errors = [], []
    for line in proc.stdout:
        event = json.loads(line) if line.startswith("{") else {}
        stages += [event["stage"]] if event.get("event") == "progress" else []
        errors += [event["message"]] if event.get("event") == "error" else []
        if stages and stages[-1] not in ("load", "read"):
            proc.kill()  # past reading, nothing written yet: no need to translate the whole head here
            break
    proc.communicate(timeout=60)
    assert "read" in stages, proc.stderr
    assert not (tmp_path / "out.nii.gz").exists()
    assert not any("slices" in e or "frames" in e or "Cannot read" in e for e in errors), errors  # reading's refusals
    assert stages[-1] not in ("load", "read") or errors, stages
