"""Hostile inputs, reading side of issue 20 ("never a silent wrong output"): files cut short, NaN/Inf voxels,
sheared grids, symbolic-link loops, complex voxels and unreadable files are refused with a message that names
the file, what is wrong and what to do, never read as something else. Through the command line: exit 2, no
traceback, nothing written, no leftovers, the input untouched.

Most cases call the readers directly on 24 x 28 x 20 volumes; a few go through the CLI in a subprocess.
The ``test_whole_*`` tests are the guards: files that are whole must still read exactly as before.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, Tuple

import numpy as np
import pytest
import SimpleITK as sitk

from test_dicom_geometry import SIZE, gantry_series, tilted, write_enhanced, write_ramp_series
from volumes import head_volume
from MedGANTranslateLib import imageio
from MedGANTranslateLib.errors import InputError
from MedGANTranslateLib.image_headers import read_header
from MedGANTranslateLib.imageio import read_image

#: format: (file name, compressed); .nhdr and .mhd keep their voxels in a second file
FORMATS = {
    "nii.gz": ("img.nii.gz", True),
    "nii": ("img.nii", False),
    "nrrd": ("img.nrrd", False),
    "nrrd-gzip": ("img.nrrd", True),
    "nhdr": ("img.nhdr", False),
    "nhdr-gzip": ("img.nhdr", True),
    "mha": ("img.mha", False),
    "mha-zlib": ("img.mha", True),
    "mhd": ("img.mhd", False),
    "mhd-zraw": ("img.mhd", True),
}
RAW = [fmt for fmt, (_, compressed) in FORMATS.items() if not compressed]
GZIP = ["nii.gz", "nrrd-gzip", "nhdr-gzip"]
ZLIB = ["mha-zlib", "mhd-zraw"]
CLI = [sys.executable, "-m", "MedGANTranslateLib.cli"]


def write_format(folder: Path, fmt: str, image: sitk.Image) -> Tuple[Path, Path]:
    """Writes ``image`` in ``fmt`` into ``folder``; returns the image's path and the file that holds its voxels."""
    name, compressed = FORMATS[fmt]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    sitk.WriteImage(image, str(path), useCompression=compressed)
    detached = {".nhdr": "img.raw.gz" if compressed else "img.raw", ".mhd": "img.zraw" if compressed else "img.raw"}
    data = folder / detached.get(path.suffix, name)
    assert data.exists()
    return path, data


def cut(path: Path, keep: int) -> None:
    """Keeps the first ``keep`` bytes of ``path`` (the end of the file when negative)."""
    data = path.read_bytes()
    path.write_bytes(data[:keep])


def refused(reader: Callable, source: Path, *words: str) -> str:
    """The message of the InputError ``reader(source)`` raises; it must name ``source`` and hold ``words``."""
    with pytest.raises(InputError) as err:
        reader(source)
    message = str(err.value)
    for word in (str(source),) + words:
        assert word in message, message
    return message


# ------------------------------------------------------------------------------------------- cut short


@pytest.mark.parametrize("point", [0.1, 0.5, 0.99])
@pytest.mark.parametrize("fmt", FORMATS)
def test_voxels_cut_short_are_refused(tmp_path, fmt, point):
    path, data = write_format(tmp_path, fmt, head_volume())
    cut(data, int(data.stat().st_size * point))
    message = refused(read_image, path, "cut short", data.name, "again")
    assert "bytes" in message


@pytest.mark.parametrize("fmt", RAW)
def test_raw_voxels_cut_short_are_refused_from_the_header_alone(tmp_path, fmt):
    """read_header (the pipeline's first look, before the model loads) already sees a raw file is too short."""
    path, data = write_format(tmp_path, fmt, head_volume())
    cut(data, data.stat().st_size // 2)
    refused(read_header, path, "cut short")


@pytest.mark.parametrize("fmt", ["nhdr-gzip", "mhd-zraw"])
def test_compressed_voxels_cut_far_short_are_refused_from_the_sizes_alone(tmp_path, fmt):
    """Voxels that even deflate's largest ratio cannot fit in what is left of the stream are refused by
    read_header, and by read_image before ITK allocates them."""
    path, data = write_format(tmp_path, fmt, head_volume())
    cut(data, 12)  # 53,760 bytes of voxels in 12 compressed bytes: more than 1032:1
    for reader in (read_header, read_image):
        refused(reader, path, "cut short", data.name, "compressed bytes", "again")


@pytest.mark.parametrize("fmt", FORMATS)
def test_header_cut_short_is_refused(tmp_path, fmt):
    path, _ = write_format(tmp_path, fmt, head_volume())
    cut(path, 60)
    for reader in (read_header, read_image):
        refused(reader, path, "cut short", "header")


@pytest.mark.parametrize("fmt, missing", [(fmt, n) for fmt in GZIP for n in (4, 8)] + [(fmt, 4) for fmt in ZLIB])
def test_compressed_stream_without_its_end_is_refused(tmp_path, fmt, missing):
    """The last 8 bytes of a gzip stream are its CRC-32 and length, the last 4 of a zlib stream its Adler-32:
    without them the voxels may all be there, but nothing says they are whole."""
    path, data = write_format(tmp_path, fmt, head_volume())
    cut(data, -missing)
    refused(read_image, path, "cut short", "checksum")


@pytest.mark.parametrize("fmt", GZIP)
def test_compressed_stream_that_fails_its_checksum_is_refused(tmp_path, fmt):
    path, data = write_format(tmp_path, fmt, head_volume())
    damaged = bytearray(data.read_bytes())
    damaged[-6] ^= 0xFF  # inside the CRC-32
    data.write_bytes(bytes(damaged))
    refused(read_image, path, "damaged", "checksum")


@pytest.mark.parametrize("fmt", FORMATS)
def test_whole_files_read_as_written(tmp_path, fmt):
    image = head_volume()
    path, _ = write_format(tmp_path, fmt, image)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_image(path)), sitk.GetArrayFromImage(image))
    assert read_header(path).size == image.GetSize()


def test_whole_gzip_file_of_several_members_reads(tmp_path):
    """gzip allows one file to be several compressed members one after the other (as ITK's reader does)."""
    image = head_volume()
    path, _ = write_format(tmp_path, "nii", image)
    stored = path.read_bytes()
    members = tmp_path / "members.nii.gz"
    members.write_bytes(gzip.compress(stored[:5000]) + gzip.compress(stored[5000:]))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_image(members)), sitk.GetArrayFromImage(image))


# ------------------------------------------------------------------------------------------- DICOM cut short


@pytest.mark.parametrize("keep", [0.5, 0.99, -1])
@pytest.mark.parametrize("tilt", [0.0, 15.0])  # stacked by ITK; resampled slice by slice
def test_dicom_slice_cut_short_is_refused(tmp_path, tilt, keep):
    folder = write_ramp_series(tmp_path / "ct", gantry_series([3.0] * 4, tilt=tilt))
    victim = sorted(folder.iterdir())[2]
    cut(victim, keep if keep < 0 else int(victim.stat().st_size * keep))
    for reader in (read_header, read_image):
        refused(reader, folder, str(victim), "cut short", "pixel data")


@pytest.mark.parametrize("keep", [0.5, 0.99, -1])
def test_enhanced_dicom_cut_short_is_refused(tmp_path, keep):
    row, column = tilted(0.0)
    slices = [(np.array([-30.0, -20.0, 10.0 + 2.0 * k]), row, column) for k in range(6)]
    path = write_enhanced(tmp_path / "mr.dcm", np.ones((6, SIZE[1], SIZE[0])) * 100, slices, [1] * 6)
    cut(path, keep if keep < 0 else int(path.stat().st_size * keep))
    for reader in (read_header, read_image):
        refused(reader, path, "cut short", "pixel data")


# ------------------------------------------------------------------------------------------- NaN / Inf


def with_non_finite(image: sitk.Image, pixel: int) -> sitk.Image:
    values = sitk.GetArrayFromImage(image)
    values[3, 4, 5], values[5, 6, 7], values[6, 6, 6] = np.nan, np.inf, -np.inf
    bad = sitk.Cast(sitk.GetImageFromArray(values), pixel)
    bad.CopyInformation(image)
    return bad


@pytest.mark.parametrize("fmt, pixel", [(fmt, sitk.sitkFloat32) for fmt in FORMATS]
                         + [("nii", sitk.sitkFloat64), ("nii.gz", sitk.sitkFloat64)])
def test_nan_and_inf_are_refused_with_their_count(tmp_path, fmt, pixel):
    """ITK's NIfTI reader turns NaN/Inf into 0; NRRD and MetaImage pass them on. Either way: refused."""
    path, _ = write_format(tmp_path, fmt, with_non_finite(head_volume(), pixel))
    refused(read_image, path, "3 NaN/Inf voxel(s) of 13,440")


# ------------------------------------------------------------------------------------------- sheared grids


def shear(degrees: float) -> np.ndarray:
    """A direction matrix whose second axis leans ``degrees`` towards the first."""
    t = math.radians(degrees)
    return np.array([[1.0, math.sin(t), 0.0], [0.0, math.cos(t), 0.0], [0.0, 0.0, 1.0]])


def sheared_nifti(path: Path, degrees: float, qform_code: int) -> Path:
    """A NIfTI-1 file whose sform is sheared by ``degrees`` (ITK's writer would orthogonalise it: the header's
    srow_x/y/z floats at bytes 280-327 are rewritten), with or without a qform."""
    plain = path.with_name("plain.nii")
    sitk.WriteImage(head_volume(), str(plain))
    stored = bytearray(plain.read_bytes())
    plain.unlink()
    srow = np.array(struct.unpack("<12f", stored[280:328])).reshape(3, 4)
    srow[:, :3] = srow[:, :3] @ shear(degrees)
    stored[280:328] = struct.pack("<12f", *srow.ravel())
    stored[252:254] = struct.pack("<h", qform_code)
    path.write_bytes(gzip.compress(bytes(stored)) if path.name.endswith(".gz") else bytes(stored))
    return path


@pytest.mark.parametrize("name, qform_code", [("img.nii", 1), ("img.nii", 0), ("img.nii.gz", 1)])
def test_sheared_nifti_sform_is_refused(tmp_path, name, qform_code):
    """With a qform, ITK silently reads the qform's grid; without one it fails with a message about cosines."""
    path = sheared_nifti(tmp_path / name, 13.0, qform_code)
    for reader in (read_header, read_image):
        refused(reader, path, "sheared", "13°", "orthogonal", "sform")


@pytest.mark.parametrize("fmt, field", [("nrrd", "space directions"), ("nhdr", "space directions"),
                                        ("mha", "TransformMatrix"), ("mhd", "TransformMatrix")])
def test_sheared_nrrd_and_metaimage_grids_are_refused(tmp_path, fmt, field):
    path, _ = write_format(tmp_path, fmt, head_volume(direction=shear(13.0)))
    for reader in (read_header, read_image):
        refused(reader, path, "sheared", "13°", "orthogonal", field)


def test_whole_grids_within_itks_rounding_of_orthogonal_read(tmp_path):
    """0.001° is below what ITK's NIfTI reader itself takes as orthogonal (about 0.0057°)."""
    nrrd, _ = write_format(tmp_path, "nrrd", head_volume(direction=shear(0.001)))
    for path in (sheared_nifti(tmp_path / "a.nii", 0.001, 0), nrrd):
        assert read_image(path).GetSize() == (24, 28, 20)


# ------------------------------------------------------------------------------------------- paths, types


def symlink_loop(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    loop = folder / "loop.nii.gz"
    loop.symlink_to(loop.name)
    return loop


def test_symlink_loop_is_refused(tmp_path):
    loop = symlink_loop(tmp_path)
    for reader in (read_header, read_image):
        refused(reader, loop, "symbolic link", "loop")


def test_dangling_symlink_names_its_missing_target(tmp_path):
    link = tmp_path / "t1.nii.gz"
    link.symlink_to("moved-away.nii.gz")
    refused(read_image, link, "symbolic link", "moved-away.nii.gz", "does not exist")


def complex_nrrd(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    image = head_volume()
    values = sitk.GetImageFromArray(sitk.GetArrayFromImage(image).astype(np.complex64))
    values.CopyInformation(image)
    sitk.WriteImage(values, str(folder / "complex.nrrd"))
    return folder / "complex.nrrd"


def test_complex_nrrd_is_refused(tmp_path):
    path = complex_nrrd(tmp_path)
    for reader in (read_header, read_image):
        refused(reader, path, "complex", "magnitude")


def test_unreadable_file_says_permission_denied(tmp_path, monkeypatch):
    """As root a chmod 000 file still reads, so the refusal of the operating system is simulated."""
    path, _ = write_format(tmp_path, "nii", head_volume())

    def deny(file, *args, **kwargs):
        if Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return open(file, *args, **kwargs)

    monkeypatch.setattr(imageio, "open", deny, raising=False)
    for reader in (read_header, read_image):
        message = refused(reader, path, "is not readable", "Permission denied")
        assert "does not exist" not in message


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads a chmod 000 file")
def test_chmod_000_file_is_not_readable(tmp_path):
    path, _ = write_format(tmp_path, "nii.gz", head_volume())
    path.chmod(0)
    try:
        refused(read_image, path, "is not readable", "Permission denied")
    finally:
        path.chmod(0o644)


# ------------------------------------------------------------------------------------------- command line


def truncated_nifti(folder: Path) -> Path:
    path, data = write_format(folder, "nii.gz", head_volume())
    cut(data, data.stat().st_size // 2)
    return path


def nan_nifti(folder: Path) -> Path:
    return write_format(folder, "nii", with_non_finite(head_volume(), sitk.sitkFloat32))[0]


def sheared_input(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return sheared_nifti(folder / "sheared.nii.gz", 13.0, 1)


def snapshot(folder: Path) -> Dict[str, str]:
    """Every entry of ``folder``: a link's target, a file's SHA-256."""
    return {p.name: os.readlink(p) if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.iterdir()}


@pytest.mark.parametrize("make_input, progress, words", [
    (truncated_nifti, "none", ("cut short", "again")),
    (nan_nifti, "json", ("3 NaN/Inf voxel(s)",)),
    (sheared_input, "none", ("sheared", "13°")),
    (symlink_loop, "json", ("symbolic link", "loop")),
    (complex_nrrd, "none", ("complex", "magnitude")),
], ids=["truncated", "nan", "sheared", "symlink-loop", "complex"])
def test_cli_refuses_with_exit_2_writes_nothing_and_leaves_nothing(make_model, tmp_path, make_input, progress, words):
    card = make_model()
    inputs, outputs, temp = tmp_path / "in", tmp_path / "out", tmp_path / "tmp"
    source = make_input(inputs)
    outputs.mkdir()
    temp.mkdir()
    before = snapshot(inputs)
    env = {**os.environ, "MEDGAN_TRANSLATE_THREADS": "1", "TMPDIR": str(temp)}
    proc = subprocess.run(CLI + ["run", "-m", str(card.folder), "-i", str(source), "-o", str(outputs / "sct.nii.gz"),
                                 "--progress", progress], capture_output=True, text=True, encoding="utf-8", timeout=120,
                          env=env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    if progress == "json":
        error = [json.loads(line) for line in proc.stdout.splitlines()][-1]
        assert (error["event"], error["kind"]) == ("error", "input")
        message = error["message"]
    else:
        message = proc.stderr.strip().splitlines()[-1]
        assert message.startswith("error: ")
    for word in (source.name,) + words:
        assert word in message, message
    assert list(outputs.iterdir()) == [] and list(temp.iterdir()) == []
    assert snapshot(inputs) == before, "the input is never modified"
