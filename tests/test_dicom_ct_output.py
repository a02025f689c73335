"""The synthetic CT as a DICOM CT series a planning system imports next to the MR (issue 24 item 3): a phantom T1
written here as a DICOM MR series (axial and oblique) is translated by a tiny model to a DICOM folder and to NIfTI;
the DICOM series is read back with pydicom and SimpleITK and compared with the MR (geometry to 1e-4 mm, patient,
study, frame of reference, references to the MR's slices) and with the NIfTI output (HU, voxel for voxel). Every
file written is validated by ``dciodvfy`` (dicom3tools) when it is installed, and by pydicom's value checks."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom import config
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from volumes import rotation
from MedGANTranslateLib import dicom_output
from MedGANTranslateLib.dicom_output import CT_IMAGE_STORAGE, MR_IMAGE_STORAGE, PET_IMAGE_STORAGE
from MedGANTranslateLib.file_translation import translate_files
from MedGANTranslateLib.image_writing import write_image
from MedGANTranslateLib.phantom import make_phantom
from MedGANTranslateLib.run_options import RunOptions

OBLIQUE = rotation(0.3, -0.2, 0.5)
PATIENT = {"PatientName": "Müller^Anna", "PatientID": "PH-0042", "PatientBirthDate": "19700101", "PatientSex": "F",
           "StudyID": "S17", "AccessionNumber": "ACC-9", "StudyDate": "20240105", "StudyTime": "101500",
           "ReferringPhysicianName": "Doe^John", "PatientPosition": "HFS", "BodyPartExamined": "HEAD"}
TOLERANCE_MM = 1e-4


# ------------------------------------------------------------------------------------------- the MR series


def phantom_t1(direction=None, origin=(-93.61, -112.83, -85.47)) -> Tuple[sitk.Image, sitk.Image]:
    """A small phantom head (T1 and its CT), optionally on an oblique grid (the same voxels, turned in space)."""
    phantom = make_phantom(seed=3, shape=(32, 36, 14), spacing=(6.0, 6.0, 12.5))
    images = []
    for image in (phantom.t1, phantom.ct):
        image = sitk.Image(image)
        image.SetOrigin(origin)
        if direction is not None:
            image.SetDirection(np.asarray(direction, dtype=float).ravel().tolist())
        images.append(image)
    return images[0], images[1]


def write_mr_series(folder: Path, image: sitk.Image) -> Dict[str, object]:
    """``image`` (rounded to whole numbers) as a DICOM MR series, one file per slice, as a scanner writes it
    (Latin-1 patient name); returns the series' identifiers and its slices' SOP Instance UIDs, in slice order."""
    folder.mkdir()
    uids = {"StudyInstanceUID": generate_uid(), "SeriesInstanceUID": generate_uid(),
            "FrameOfReferenceUID": generate_uid()}
    values = np.round(sitk.GetArrayFromImage(image)).astype(np.uint16)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    spacing = image.GetSpacing()
    instances = []
    for k in range(values.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"MR{k:03d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID, ds.SOPInstanceUID = MR_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
        for keyword, value in {**PATIENT, **uids}.items():
            setattr(ds, keyword, value)
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription = "MR", 7, k + 1, "t1_mprage"
        ds.ImagePositionPatient = [f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in list(direction[:, 0]) + list(direction[:, 1])]
        ds.PixelSpacing = [f"{spacing[1]:g}", f"{spacing[0]:g}"]
        ds.SliceThickness = f"{spacing[2]:g}"
        ds.Rows, ds.Columns = values.shape[1:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = values[k].tobytes()
        ds.save_as(str(folder / f"MR{k:03d}.dcm"), enforce_file_format=True)
        instances.append(ds.SOPInstanceUID)
    return {**uids, "instances": instances}


def itk_series(folder: Path) -> sitk.Image:
    """A DICOM series as SimpleITK (GDCM) reads it on its own."""
    return sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))


def pydicom_series(folder: Path) -> List[Dataset]:
    """Every file of a DICOM output folder, in file order, read by pydicom with its value checks raising."""
    files = sorted(folder.iterdir())
    datasets = []
    for name in files:
        ds = pydicom.dcmread(str(name))
        for element in ds.iterall():  # values are decoded (and checked) when first used
            element.value
        datasets.append(ds)
    return datasets


@pytest.fixture
def strict_reading(monkeypatch):
    monkeypatch.setattr(config.settings, "reading_validation_mode", config.RAISE)


def translate(card, inputs, output, log=None, **kwargs):
    return translate_files(str(card.folder), [str(p) for p in inputs], str(output), options=RunOptions(device="cpu"),
                           log=log, **kwargs)


def assert_same_geometry(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    for name in ("Origin", "Spacing", "Direction"):
        np.testing.assert_allclose(getattr(a, f"Get{name}")(), getattr(b, f"Get{name}")(), rtol=0, atol=TOLERANCE_MM)


# ------------------------------------------------------------------------------------------- DICOM MR in


@pytest.mark.parametrize("direction", [None, OBLIQUE], ids=["axial", "oblique"])
def test_synthetic_ct_of_a_dicom_mr_joins_its_study_on_its_grid(make_model, tmp_path, strict_reading, direction):
    card = make_model()
    t1, _ = phantom_t1(direction)
    mr = write_mr_series(tmp_path / "mr", t1)
    messages: List[Tuple[str, str]] = []
    translate(card, [tmp_path / "mr"], str(tmp_path / "sct") + "/",
              log=lambda level, text: messages.append((level, text)))
    translate(card, [tmp_path / "mr"], tmp_path / "sct.nii.gz")
    assert not [text for level, text in messages if level == "warning"]

    series = pydicom_series(tmp_path / "sct")
    mr_files = [pydicom.dcmread(str(p)) for p in sorted((tmp_path / "mr").iterdir())]
    assert len(series) == len(mr_files) == t1.GetSize()[2]
    for k, (ds, source) in enumerate(zip(series, mr_files)):
        # what the series is
        assert ds.SOPClassUID == CT_IMAGE_STORAGE == ds.file_meta.MediaStorageSOPClassUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.Modality == "CT"
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "AXIAL", "SYNTHETIC"]
        assert ds.SeriesDescription == f"SYNTHETIC CT {card.id} v{card.version}"
        assert f"{card.id} v{card.version}" in ds.DerivationDescription and card.sha256 in ds.DerivationDescription
        assert "not an acquired image" in ds.ImageComments and "Research use only" in ds.ImageComments
        assert ds.BurnedInAnnotation == "NO"
        # the MR's patient, study and frame of reference; a new series and new instances
        for keyword in PATIENT:
            assert ds[keyword].value == source[keyword].value, keyword
        assert str(ds.PatientName) == "Müller^Anna" and ds.SpecificCharacterSet == "ISO_IR 100"
        assert ds.StudyInstanceUID == mr["StudyInstanceUID"] and ds.FrameOfReferenceUID == mr["FrameOfReferenceUID"]
        assert ds.SeriesInstanceUID not in (mr["SeriesInstanceUID"], ds.StudyInstanceUID)
        assert ds.SeriesNumber == 1007 and ds.InstanceNumber == k + 1
        # the MR slice it lies on
        assert [item.ReferencedSOPInstanceUID for item in ds.SourceImageSequence] == [mr["instances"][k]]
        assert ds.SourceImageSequence[0].ReferencedSOPClassUID == MR_IMAGE_STORAGE
        (referenced,) = ds.ReferencedSeriesSequence
        assert referenced.SeriesInstanceUID == mr["SeriesInstanceUID"]
        assert [i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence] == [mr["instances"][k]]
        # exactly the MR's slice geometry
        np.testing.assert_allclose(np.array(ds.ImagePositionPatient, float),
                                   np.array(source.ImagePositionPatient, float), rtol=0, atol=TOLERANCE_MM)
        np.testing.assert_allclose(np.array(ds.ImageOrientationPatient, float),
                                   np.array(source.ImageOrientationPatient, float), rtol=0, atol=1e-6)
        np.testing.assert_allclose(np.array(ds.PixelSpacing, float), np.array(source.PixelSpacing, float), atol=1e-9)
        thickness = pytest.approx(t1.GetSpacing()[2], abs=TOLERANCE_MM)
        assert float(ds.SliceThickness) == float(ds.SpacingBetweenSlices) == thickness
        assert (ds.Rows, ds.Columns) == (source.Rows, source.Columns)
        # HU through the rescale, stored exactly; the card's display window
        assert (float(ds.RescaleSlope), float(ds.RescaleIntercept), ds.RescaleType) == (1.0, -1024.0, "HU")
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 12, 11, 0)
        assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (card.display["level"], card.display["window"])
    assert len({ds.SeriesInstanceUID for ds in series}) == 1
    assert len({ds.SOPInstanceUID for ds in series} | set(mr["instances"])) == 2 * len(series)

    nifti = sitk.ReadImage(str(tmp_path / "sct.nii.gz"))
    expected = sitk.GetArrayFromImage(nifti)
    assert len(np.unique(expected)) > 20, "the model gives many values: the comparison below means something"
    hu = np.stack([ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in series])
    np.testing.assert_array_equal(hu, expected)
    back = itk_series(tmp_path / "sct")
    assert_same_geometry(back, itk_series(tmp_path / "mr"))
    assert_same_geometry(back, t1)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), expected)


def test_output_slices_between_source_slices_refer_to_both(tmp_path):
    """A regularised input (slices missing or uneven): each output slice refers to the input slices it lies on
    or between, as the reader interpolated it; frames of a multi-frame input by number."""
    frames = Dataset()
    frames.SOPClassUID, frames.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.4.1", generate_uid()
    frames.SeriesInstanceUID, frames.SeriesNumber, frames.NumberOfFrames = generate_uid(), 4, 3
    frames.Rows, frames.Columns = 5, 6
    shared = Dataset()
    shared.PlaneOrientationSequence = [Dataset()]
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PixelMeasuresSequence = [Dataset()]
    shared.PixelMeasuresSequence[0].PixelSpacing = [1, 1]
    frames.SharedFunctionalGroupsSequence = [shared]
    frames.PerFrameFunctionalGroupsSequence = []
    for z in (0.0, 2.0, 6.0):  # the slice at 4 mm is missing
        item = Dataset()
        item.PlanePositionSequence = [Dataset()]
        item.PlanePositionSequence[0].ImagePositionPatient = [0, 0, z]
        frames.PerFrameFunctionalGroupsSequence.append(item)
    source = dicom_output.source_from_headers([frames])
    image = sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16))
    image.SetSpacing((1.0, 1.0, 2.0))
    out = write_image(image, tmp_path / "sct", {"MedGANTranslate.Modality": "CT"}, source=source)
    references = [[(item.ReferencedSOPInstanceUID, item.ReferencedFrameNumber)
                   for item in pydicom.dcmread(str(p)).SourceImageSequence] for p in sorted(out.iterdir())]
    uid = frames.SOPInstanceUID
    assert references == [[(uid, 1)], [(uid, 2)], [(uid, 2), (uid, 3)], [(uid, 3)]]
    assert pydicom.dcmread(str(sorted(out.iterdir())[2])).SeriesNumber == 1004


# ------------------------------------------------------------------------------------------- NIfTI in


def test_nifti_input_gives_a_new_study_and_warns(make_model, tmp_path, strict_reading):
    card = make_model()
    t1, _ = phantom_t1(OBLIQUE)
    sitk.WriteImage(t1, str(tmp_path / "t1.nii.gz"))
    messages: List[Tuple[str, str]] = []
    translate(card, [tmp_path / "t1.nii.gz"], tmp_path / "sct", log=lambda level, text: messages.append((level, text)))
    warnings = [text for level, text in messages if level == "warning"]
    assert len(warnings) == 1
    assert "t1.nii.gz" in warnings[0] and "new StudyInstanceUID and a new FrameOfReferenceUID" in warnings[0]
    assert "will not put it in the scan's study" in warnings[0]

    series = pydicom_series(tmp_path / "sct")
    first = series[0]
    assert first.SOPClassUID == CT_IMAGE_STORAGE and first.Modality == "CT"
    assert first.StudyInstanceUID.startswith("2.25.") and first.FrameOfReferenceUID.startswith("2.25.")
    assert len({(ds.StudyInstanceUID, ds.FrameOfReferenceUID, ds.SeriesInstanceUID) for ds in series}) == 1
    assert len({first.StudyInstanceUID, first.FrameOfReferenceUID, first.SeriesInstanceUID}) == 3
    assert first.PatientName == "" and first.PatientID == "" and first.SeriesNumber == 1
    assert "SourceImageSequence" not in first and "ReferencedSeriesSequence" not in first
    back = itk_series(tmp_path / "sct")
    assert_same_geometry(back, t1)

    translate(card, [tmp_path / "t1.nii.gz"], tmp_path / "sct.nii.gz")  # a NIfTI output: nothing to warn about
    assert len([1 for level, _ in messages if level == "warning"]) == 1
    nifti = sitk.ReadImage(str(tmp_path / "sct.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(nifti))


# ------------------------------------------------------------------------------------------- validation


def dciodvfy(path: Path) -> List[str]:
    """dciodvfy's findings on one file: its 'Error' and 'Warning' lines."""
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line.strip() for line in (run.stdout + run.stderr).splitlines() if line.startswith(("Error", "Warning"))]


@pytest.mark.skipif(shutil.which("dciodvfy") is None,
                    reason="dciodvfy (Debian/Ubuntu package dicom3tools) is not installed; .ci/run installs it")
def test_every_file_passes_dciodvfy(make_model, tmp_path):
    """The synthetic CT (oblique DICOM MR in, with a difference and an uncertainty map; NIfTI in), a synthetic PET
    and MR: no 'Error' line from dciodvfy in any file. The warnings that remain are listed in docs/outputs.md
    (DICOM output)."""
    t1, ct = phantom_t1(OBLIQUE)
    write_mr_series(tmp_path / "mr", t1)
    sitk.WriteImage(t1, str(tmp_path / "t1.nii.gz"))
    sitk.WriteImage(ct, str(tmp_path / "ct.nii.gz"))
    folders = {"sct": tmp_path / "sct", "difference": tmp_path / "diff", "uncertainty": tmp_path / "unc",
               "sct_from_nifti": tmp_path / "sct_nifti", "spet": tmp_path / "spet", "smr": tmp_path / "smr"}
    card = make_model()
    translate(card, [tmp_path / "mr"], folders["sct"], reference=str(tmp_path / "ct.nii.gz"),
              diff=str(folders["difference"]), uncertainty=str(folders["uncertainty"]))
    translate(card, [tmp_path / "t1.nii.gz"], folders["sct_from_nifti"])
    for modality, name in (("PET", "spet"), ("MR", "smr")):
        translate(make_model(f"tiny_{name}", output_modality=modality), [tmp_path / "mr"], folders[name])
    expected = {"sct": CT_IMAGE_STORAGE, "difference": CT_IMAGE_STORAGE, "uncertainty": CT_IMAGE_STORAGE,
                "sct_from_nifti": CT_IMAGE_STORAGE, "spet": PET_IMAGE_STORAGE, "smr": MR_IMAGE_STORAGE}
    errors = []
    for name, folder in folders.items():
        files = sorted(folder.iterdir())
        assert len(files) == t1.GetSize()[2]
        first = pydicom.dcmread(str(files[0]))
        assert first.SOPClassUID == expected[name]
        if name in ("difference", "uncertainty"):  # a map, not CT numbers
            assert first.ImageType[3] == name.upper() and first.RescaleType == "US"
        for path in files:
            errors += [f"{name}/{path.name}: {line}" for line in dciodvfy(path) if line.startswith("Error")]
    assert errors == []


def test_dciodvfy_finds_errors_in_a_broken_file(tmp_path):
    """The check above can fail: a file without its Type 1 Frame of Reference UID is an error to dciodvfy."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian/Ubuntu package dicom3tools) is not installed; .ci/run installs it")
    image = sitk.GetImageFromArray(np.zeros((3, 4, 5), np.int16))
    out = write_image(image, tmp_path / "sct", {"MedGANTranslate.Modality": "CT"})
    path = sorted(out.iterdir())[0]
    assert not [line for line in dciodvfy(path) if line.startswith("Error")]
    ds = pydicom.dcmread(str(path))
    del ds.FrameOfReferenceUID
    ds.save_as(str(tmp_path / "broken.dcm"), enforce_file_format=True)
    assert any("FrameOfReferenceUID" in line for line in dciodvfy(tmp_path / "broken.dcm") if line.startswith("Error"))
