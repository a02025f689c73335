"""Reading, checking and atomic writing of volumes: real files on tmp_path, values and geometry compared."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from MedGANTranslateLib.errors import InputError, OutputError
from MedGANTranslateLib.dicom_reading import DICOM_STUDY_TAGS, study_tags
from MedGANTranslateLib.image_headers import ImageHeader, read_header
from MedGANTranslateLib.image_writing import write_image
from MedGANTranslateLib.imageio import check_volume, read_image
from MedGANTranslateLib.output_paths import check_output_path

FILE_FORMATS = [".nii", ".nii.gz", ".nrrd", ".mha", ".mhd"]
OBLIQUE = Rotation.from_euler("xz", [20, 35], degrees=True).as_matrix()
METADATA = {
    "MedGANTranslate.Synthetic": "true",
    "MedGANTranslate.ModelId": "mr-to-ct-head",
    "MedGANTranslate.ModelVersion": "1.2.3",
    "MedGANTranslate.WeightsSHA256": "0123456789abcdef" * 4,
    "MedGANTranslate.Modality": "CT",
    "MedGANTranslate.Unit": "HU",
    "MedGANTranslate.IntendedUse": "Research use only, not for clinical decisions.",
}


def make_image(pixel=np.int16, size=(7, 6, 5), direction=OBLIQUE, seed=0) -> sitk.Image:
    """A random volume on an anisotropic oblique grid; origin values are exact in float32 (NIfTI headers)."""
    values = np.random.default_rng(seed).uniform(-1000, 2000, size[::-1]).astype(pixel)
    image = sitk.GetImageFromArray(values)
    image.SetSpacing((0.9, 1.3, 2.5))
    image.SetOrigin((-10.5, 20.25, 3.125))
    image.SetDirection(np.asarray(direction, dtype=float).ravel().tolist())
    return image


def assert_same_geometry(a: sitk.Image, b: sitk.Image, tol: float = 1e-6) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), rtol=0, atol=tol)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), rtol=0, atol=tol)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), rtol=0, atol=tol)


def leftovers(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


# ------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("ext", FILE_FORMATS)
@pytest.mark.parametrize("pixel", [np.int16, np.float32])
def test_file_round_trip_keeps_values_and_geometry(tmp_path, ext, pixel):
    image = make_image(pixel)
    out = write_image(image, tmp_path / f"sct{ext}", METADATA)
    assert out == tmp_path / f"sct{ext}" and out.is_file()
    back = read_image(out)
    assert_same_geometry(back, image)
    assert back.GetPixelID() == image.GetPixelID()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))
    assert leftovers(tmp_path) == []


def test_detached_nrrd_header_is_readable(tmp_path):
    image = make_image()
    sitk.WriteImage(image, str(tmp_path / "t1.nhdr"))
    back = read_image(tmp_path / "t1.nhdr")
    assert_same_geometry(back, image)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))
    assert read_header(tmp_path / "t1.nhdr").size == image.GetSize()


@pytest.mark.parametrize("ext", [".nrrd", ".mha", ".mhd"])
def test_header_formats_hold_every_metadata_key(tmp_path, ext):
    image = make_image()
    image.SetMetaData("PatientName", "must not leak")  # inherited keys are dropped
    back = read_image(write_image(image, tmp_path / f"sct{ext}", METADATA))
    for key, value in METADATA.items():
        assert back.GetMetaData(key) == value
    assert not back.HasMetaDataKey("PatientName")


def test_mhd_writes_its_data_file_next_to_it(tmp_path):
    write_image(make_image(), tmp_path / "sct.mhd", METADATA)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sct.mhd", "sct.zraw"]
    assert "ElementDataFile = sct.zraw" in (tmp_path / "sct.mhd").read_text(errors="replace")


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_nifti_has_summary_in_descrip_and_json_sidecar(tmp_path, ext):
    out = write_image(make_image(), tmp_path / f"sct{ext}", METADATA)
    back = read_image(out)
    summary = "SYNTHETIC CT model=mr-to-ct-head v1.2.3 sha=0123456789ab"
    assert back.GetMetaData("descrip") == summary
    assert back.GetMetaData("ITK_FileNotes") == summary
    assert len(summary) <= 80
    sidecar = tmp_path / "sct.json"
    assert json.loads(sidecar.read_text(encoding="utf-8")) == METADATA
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"sct{ext}", "sct.json"])  # no raw .nii left
    assert out.read_bytes()[:2] == (b"\x1f\x8b" if ext == ".nii.gz" else b"\x5c\x01")  # gzip / NIfTI-1 header
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(make_image()))


def test_nifti_descrip_is_cut_to_the_field_size(tmp_path):
    metadata = dict(METADATA, **{"MedGANTranslate.ModelId": "m" * 100})
    back = read_image(write_image(make_image(), tmp_path / "sct.nii.gz", metadata))
    assert back.GetMetaData("descrip").startswith("SYNTHETIC CT model=mmm")
    assert len(back.GetMetaData("descrip")) <= 79


def test_overwriting_an_output_replaces_it(tmp_path):
    out = tmp_path / "sct.nrrd"
    write_image(make_image(seed=1), out, METADATA)
    write_image(make_image(seed=2), out, METADATA)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_image(out)), sitk.GetArrayFromImage(make_image(seed=2)))
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------- DICOM


def slice_tags(folder: Path, index: int = 0) -> dict:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(sorted(folder.iterdir())[index]))
    reader.ReadImageInformation()
    return {key: reader.GetMetaData(key).strip() for key in reader.GetMetaDataKeys()}


def test_dicom_round_trip_with_oblique_direction(tmp_path):
    image = make_image(np.int16, size=(6, 5, 7))
    out = write_image(image, str(tmp_path / "sct") + os.sep, METADATA)
    assert out == tmp_path / "sct" and len(list(out.iterdir())) == 7
    back = read_image(out)
    assert_same_geometry(back, image)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))
    assert leftovers(tmp_path) == []


def test_dicom_tags_mark_a_derived_synthetic_series(tmp_path):
    image = make_image(np.int16, size=(6, 5, 4))
    metadata = dict(METADATA, **{"0020|000d": "1.2.826.0.1.3680043.2.1125.42", "0010|0020": "PAT-7"})
    out = write_image(image, tmp_path / "sct", metadata)
    tags = [slice_tags(out, k) for k in range(4)]
    first = tags[0]
    assert first["0008|0008"] == "DERIVED\\SECONDARY\\AXIAL\\SYNTHETIC"
    assert first["0008|103e"].startswith("SYNTHETIC CT mr-to-ct-head v1.2.3")
    assert first["0008|0060"] == "CT"
    assert first["0020|000d"] == "1.2.826.0.1.3680043.2.1125.42"
    assert first["0010|0020"] == "PAT-7"
    assert "MedGANTranslate.WeightsSHA256=" + "0123456789abcdef" * 4 in first["0020|4000"]
    assert "mr-to-ct-head" in first["0008|2111"]
    assert float(first["0018|0050"]) == pytest.approx(2.5)
    assert (float(first["0028|1053"]), float(first["0028|1052"]), first["0028|1054"]) == (1.0, -1024.0, "HU")
    assert len({t["0020|000e"] for t in tags}) == 1
    assert len({t["0008|0018"] for t in tags}) == 4
    assert first["0020|000e"] != first["0020|000d"]
    for k, t in enumerate(tags):
        position = [float(v) for v in t["0020|0032"].split("\\")]
        np.testing.assert_allclose(position, image.TransformIndexToPhysicalPoint((0, 0, k)), atol=1e-6)
        np.testing.assert_allclose([float(v) for v in t["0020|0037"].split("\\")], OBLIQUE[:, :2].T.ravel(), atol=1e-9)
    study = study_tags(read_image(out))
    assert study["0020|000d"] == "1.2.826.0.1.3680043.2.1125.42" and study["0010|0020"] == "PAT-7"
    assert set(study) <= set(DICOM_STUDY_TAGS)


def test_dicom_new_study_uid_without_one_in_metadata_and_pet_modality(tmp_path):
    image = sitk.Cast(make_image(np.float32, size=(6, 5, 4)), sitk.sitkFloat32) / 100.0  # SUV-like floats
    metadata = dict(METADATA, **{"MedGANTranslate.Modality": "PET", "MedGANTranslate.Unit": "SUV"})
    out = write_image(image, tmp_path / "spet", metadata)
    first = slice_tags(out)
    assert first["0008|0060"] == "PT"
    assert first["0020|000d"].startswith("2.25.")
    slope = float(first["0028|1053"])
    back = read_image(out)
    assert_same_geometry(back, image)
    error = np.abs(sitk.GetArrayFromImage(back) - sitk.GetArrayFromImage(image)).max()
    assert error <= slope / 2 + 1e-6


@pytest.mark.parametrize("pixel, low, high", [(np.uint16, 0, 60000), (np.float32, 0.5, 0.5)])
def test_dicom_stores_uint16_exactly_and_constant_floats(tmp_path, pixel, low, high):
    values = np.random.default_rng(4).uniform(low, high, (4, 5, 6)).astype(pixel)
    values.flat[:2] = low, high
    image = sitk.GetImageFromArray(values)
    back = read_image(write_image(image, tmp_path / "spet", dict(METADATA, **{"MedGANTranslate.Modality": "PET"})))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), values)


def test_dicom_left_handed_input_keeps_physical_positions(tmp_path):
    flipped = np.diag([1.0, -1.0, 1.0])  # third axis is not cross(first, second): readers reverse the slices
    image = make_image(np.int16, size=(6, 5, 4), direction=flipped)
    back = read_image(write_image(image, tmp_path / "sct", METADATA))
    resampled = sitk.Resample(back, image, sitk.Transform(), sitk.sitkNearestNeighbor, -5000)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(resampled), sitk.GetArrayFromImage(image))


def test_folder_with_several_dicom_series_is_refused_with_a_listing(tmp_path):
    a = write_image(make_image(size=(6, 5, 3)), tmp_path / "a", METADATA)
    b = write_image(make_image(size=(6, 5, 3)), tmp_path / "b", dict(METADATA, **{"MedGANTranslate.ModelId": "other"}))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for folder in (a, b):
        for f in folder.iterdir():
            shutil.copy(f, mixed / f"{folder.name}_{f.name}")
    with pytest.raises(InputError) as err:
        read_image(mixed, role="reference")
    text = str(err.value)
    assert "reference" in text and "2 DICOM series" in text and "only one series" in text
    assert "SYNTHETIC CT mr-to-ct-head" in text and "SYNTHETIC CT other" in text
    with pytest.raises(InputError, match="2 DICOM series"):
        read_header(mixed)


def test_dicom_series_with_a_missing_slice_is_regularised_and_says_so(tmp_path):
    image = make_image(size=(6, 5, 6))
    out = write_image(image, tmp_path / "sct", METADATA)
    sorted(out.iterdir())[2].unlink()
    back = read_image(out)
    assert_same_geometry(back, image)
    kept = [0, 1, 3, 4, 5]  # the grid's planes go through the slices that are left; the missing one is interpolated
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back)[kept], sitk.GetArrayFromImage(image)[kept])
    warning = back.GetMetaData("MedGANTranslate.InputWarning")
    assert "gap(s) wider than the slices on either side" in warning and "slices are missing there" in warning


# ------------------------------------------------------------------------------------------- headers


@pytest.mark.parametrize("target", ["sct.nrrd", "sct.nii.gz", "sct.mhd", "dicom"])
def test_read_header_matches_the_image(tmp_path, target):
    image = make_image(np.int16, size=(6, 5, 7))
    out = write_image(image, tmp_path / target, METADATA)
    header = read_header(out)
    assert isinstance(header, ImageHeader)
    assert header.size == (6, 5, 7) and header.dimension == 3 and header.components == 1
    np.testing.assert_allclose(header.spacing, image.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(header.origin, image.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(header.direction, image.GetDirection(), atol=1e-6)
    assert header.pixel_id == "16-bit signed integer" and header.bytes_per_voxel == 2
    assert header.nbytes == 6 * 5 * 7 * 2


def test_read_header_of_a_vector_image(tmp_path):
    image = sitk.Image([4, 5, 6], sitk.sitkVectorFloat32, 3)
    sitk.WriteImage(image, str(tmp_path / "v.mha"))
    header = read_header(tmp_path / "v.mha")
    assert header.components == 3 and header.bytes_per_voxel == 12 and header.voxels == 120


# ------------------------------------------------------------------------------------------- reading errors


def test_missing_file_names_path_and_role(tmp_path):
    with pytest.raises(InputError) as err:
        read_image(tmp_path / "nothere.nii.gz", role="reference")
    assert "reference" in str(err.value) and "nothere.nii.gz" in str(err.value) and "does not exist" in str(err.value)


def test_unsupported_extension_is_refused(tmp_path):
    path = tmp_path / "scan.png"
    sitk.WriteImage(sitk.Image([4, 4], sitk.sitkUInt8), str(path))
    with pytest.raises(InputError, match=r"unsupported format \(\.png\).*NIfTI"):
        read_image(path)


def test_damaged_file_is_refused(tmp_path):
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(b"not an image at all" * 10)
    with pytest.raises(InputError) as err:
        read_image(path, role="input 'T1w'")
    assert "Cannot read the input 'T1w' image" in str(err.value) and "broken.nii.gz" in str(err.value)
    with pytest.raises(InputError, match="Cannot read the header"):
        read_header(path)


def test_folder_without_dicom_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="holds no DICOM series"):
        read_image(tmp_path)


# ------------------------------------------------------------------------------------------- volume checks


def volume(values: np.ndarray) -> sitk.Image:
    return sitk.GetImageFromArray(values)


def test_check_volume_accepts_a_normal_volume():
    check_volume(make_image(), "input")


@pytest.mark.parametrize(
    "image, words",
    [
        (sitk.Image([8, 8], sitk.sitkFloat32) + 1, "2D"),
        (volume(np.arange(64, dtype=np.float32).reshape(1, 8, 8)), "2D"),
        (sitk.Image([4, 4, 4, 3], sitk.sitkFloat32), "4D"),
        (sitk.Image([4, 4, 4], sitk.sitkVectorFloat32, 3), "3 component(s)"),
        (sitk.Image([4, 4, 4], sitk.sitkComplexFloat32), "complex"),
        (sitk.Image([0, 0, 0], sitk.sitkFloat32), "empty (0 voxels"),
        (volume(np.full((4, 4, 4), 7, np.int16)), "constant (every voxel is 7)"),
    ],
)
def test_check_volume_refuses(image, words):
    with pytest.raises(InputError) as err:
        check_volume(image, "input 'T2w'")
    assert words in str(err.value) and "input 'T2w'" in str(err.value)


def test_check_volume_counts_non_finite_voxels():
    values = np.arange(64, dtype=np.float32).reshape(4, 4, 4)
    values[0, 0, :2] = np.nan
    values[1, 1, 1] = np.inf
    with pytest.raises(InputError, match=r"has 3 NaN/Inf voxel\(s\) of 64"):
        check_volume(volume(values), "input")


# ------------------------------------------------------------------------------------------- output paths


def test_check_output_path_accepts_formats_and_dicom_folders(tmp_path):
    for name in ("a.nii", "a.nii.gz", "a.NRRD", "a.mha", "a.mhd"):
        assert check_output_path(tmp_path / name, []) == tmp_path / name
    assert check_output_path(str(tmp_path / "dcm.out") + os.sep, []) == tmp_path / "dcm.out"
    assert check_output_path(tmp_path / "dicom", []) == tmp_path / "dicom"
    (tmp_path / "empty.dir").mkdir()
    assert check_output_path(tmp_path / "empty.dir", []) == tmp_path / "empty.dir"


def test_check_output_path_refuses_missing_parent(tmp_path):
    with pytest.raises(OutputError) as err:
        check_output_path(tmp_path / "nope" / "sct.nii.gz", [])
    assert str(tmp_path / "nope") in str(err.value) and "create it first" in str(err.value)


def test_check_output_path_refuses_unknown_extension(tmp_path):
    with pytest.raises(OutputError, match=r"unsupported extension '\.png'.*\.nii\.gz"):
        check_output_path(tmp_path / "sct.png", [])


def test_check_output_path_refuses_non_empty_dicom_folder(tmp_path):
    (tmp_path / "dcm").mkdir()
    (tmp_path / "dcm" / "x.dcm").write_bytes(b"x")
    with pytest.raises(OutputError, match="not empty"):
        check_output_path(tmp_path / "dcm", [])


def test_check_output_path_refuses_overwriting_an_input(tmp_path, monkeypatch):
    source = tmp_path / "t1.nii.gz"
    write_image(make_image(), source, METADATA)
    (tmp_path / "sub").mkdir()
    link = tmp_path / "link.nii.gz"
    link.symlink_to(source)
    monkeypatch.chdir(tmp_path / "sub")  # relative, '..' and symlinked spellings of the same file
    for output in (source, "../t1.nii.gz", str(tmp_path / "sub" / ".." / "t1.nii.gz"), link):
        with pytest.raises(OutputError, match="is the input"):
            check_output_path(output, [source])
    with pytest.raises(OutputError, match="is the input"):  # the sidecar of a NIfTI output
        check_output_path(tmp_path / "t1.nii", [tmp_path / "t1.json"])
    dicom = write_image(make_image(size=(6, 5, 3)), tmp_path / "dcm", METADATA)
    with pytest.raises(OutputError):
        check_output_path(dicom, [dicom])


# ------------------------------------------------------------------------------------------- atomic writes


def test_failed_write_leaves_nothing(tmp_path):
    label = sitk.Image([4, 4, 4], sitk.sitkLabelUInt8)  # a pixel type no file writer takes
    with pytest.raises(OutputError, match="Cannot write the output"):
        write_image(label, tmp_path / "sct.nrrd", METADATA)
    assert list(tmp_path.iterdir()) == []


def test_failure_after_staging_removes_temporaries(tmp_path):
    blocker = tmp_path / "sct.json"  # the sidecar cannot replace a folder: fails after the image was staged
    blocker.mkdir()
    (blocker / "keep.txt").write_text("x")
    with pytest.raises(OutputError, match="sct.json"):
        write_image(make_image(), tmp_path / "sct.nii.gz", METADATA)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sct.json"]
    assert (blocker / "keep.txt").read_text() == "x"


def test_failed_dicom_write_leaves_nothing(tmp_path):
    vector = sitk.Image([4, 4, 4], sitk.sitkVectorFloat32, 2)
    with pytest.raises(OutputError, match="scalar 3D image"):
        write_image(vector, tmp_path / "dcm", METADATA)
    assert list(tmp_path.iterdir()) == []


def test_dicom_into_existing_empty_folder(tmp_path):
    (tmp_path / "dcm").mkdir()
    out = write_image(make_image(size=(6, 5, 3)), tmp_path / "dcm", METADATA)
    assert len(list(out.iterdir())) == 3 and leftovers(tmp_path) == []


def test_write_refuses_missing_parent(tmp_path):
    with pytest.raises(OutputError, match="create it first"):
        write_image(make_image(), tmp_path / "nope" / "sct.nrrd", METADATA)


def test_dicom_into_non_empty_folder_is_refused_before_writing(tmp_path):
    (tmp_path / "dcm").mkdir()
    (tmp_path / "dcm" / "old.dcm").write_bytes(b"x")
    with pytest.raises(OutputError, match="not empty"):
        write_image(make_image(size=(6, 5, 3)), tmp_path / "dcm", METADATA)
    assert [p.name for p in (tmp_path / "dcm").iterdir()] == ["old.dcm"] and leftovers(tmp_path) == []
