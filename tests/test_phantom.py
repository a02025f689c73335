"""The digital head phantom: determinism, tissue contrast per modality, anatomy, grid and files."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from functools import lru_cache
from typing import Dict, Tuple

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from MedGANTranslateLib.errors import InputError, OutputError
from MedGANTranslateLib.phantom import LABEL_NAMES, VOLUMES, Phantom, make_phantom, save_phantom

SMALL = dict(shape=(64, 80, 64), spacing=(3.0, 3.0, 3.0))  # 192 x 240 x 192 mm: the whole head, cheaply
AIR, BONE, DIPLOE, CSF, GM, WM, SINUS, RIM = 0, 2, 3, 4, 5, 6, 9, 10


@lru_cache(maxsize=None)
def small(seed: int = 0, **flags: bool) -> Phantom:
    return make_phantom(seed, **SMALL, **flags)


def arrays(p: Phantom) -> Dict[str, np.ndarray]:
    return {name: sitk.GetArrayFromImage(image) for name, image in p.images().items()}


def median(a: Dict[str, np.ndarray], volume: str, *labels: int) -> float:
    return float(np.median(a[volume][np.isin(a["labels"], labels)]))


def extent_mm(p: Phantom) -> Tuple[np.ndarray, np.ndarray]:
    """Physical lower and upper corners (x, y, z) of the head's bounding box."""
    idx = np.argwhere(sitk.GetArrayViewFromImage(p.labels) > 0)[:, ::-1]
    origin, spacing = np.array(p.labels.GetOrigin()), np.array(p.labels.GetSpacing())
    return origin + idx.min(0) * spacing, origin + idx.max(0) * spacing


def test_same_seed_is_bit_identical_and_other_seeds_differ():
    first, again = arrays(small(0)), arrays(make_phantom(0, **SMALL))
    for name in VOLUMES:
        assert np.array_equal(first[name], again[name]), name
    other = arrays(small(1))
    assert (first["labels"] != other["labels"]).mean() > 0.01
    for name in VOLUMES:
        assert not np.array_equal(first[name], other[name]), name


def _digest(p: Phantom) -> str:
    return hashlib.sha256(b"".join(a.tobytes() for a in arrays(p).values())).hexdigest()


def test_bit_identical_whatever_the_blas_thread_count():
    code = ("import sys; from MedGANTranslateLib.phantom import make_phantom; from test_phantom import SMALL, _digest;"
            "sys.stdout.write(_digest(make_phantom(2, **SMALL)))")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([os.path.dirname(__file__)] + sys.path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout == _digest(small(2))


@pytest.mark.slow
def test_full_size_head_is_deterministic():
    a, b = arrays(make_phantom(7)), arrays(make_phantom(7))
    assert a["t1"].shape == (192, 224, 192)
    for name in VOLUMES:
        assert np.array_equal(a[name], b[name]), name


def test_every_label_is_present_and_named():
    p = small(0)
    assert p.label_names == LABEL_NAMES and len(LABEL_NAMES) == 13
    assert set(np.unique(sitk.GetArrayViewFromImage(p.labels))) == set(LABEL_NAMES)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tissue_intensities_per_modality(seed):
    a = arrays(small(seed))
    assert median(a, "ct", BONE) > 300 and median(a, "ct", BONE, DIPLOE) > 300
    assert median(a, "ct", SINUS) < -500 and median(a, "ct", AIR) < -900
    for tissue in (GM, WM):
        assert 0 < median(a, "ct", tissue) < 80
    assert median(a, "t1", WM) > median(a, "t1", GM) > median(a, "t1", CSF)
    assert median(a, "t2", CSF) > median(a, "t2", GM) > median(a, "t2", WM)
    assert median(a, "pet", GM) > 1.3 * median(a, "pet", WM) > 1.3 * median(a, "pet", CSF)
    assert median(a, "t1c", RIM) > 1.3 * median(a, "t1", RIM)
    assert median(a, "t1c", WM) == pytest.approx(median(a, "t1", WM), rel=0.1)  # only the tumour enhances


@pytest.mark.parametrize("seed", [0, 3])
def test_sinuses_are_walled_by_bone_and_dark_on_t1_like_bone(seed):
    a = arrays(small(seed))
    labels = a["labels"]
    to_bone = ndimage.distance_transform_edt(~np.isin(labels, (BONE, DIPLOE)), sampling=SMALL["spacing"])
    sinus = to_bone[labels == SINUS]
    assert sinus.size > 500
    assert np.median(sinus) <= 6.0 and (sinus <= 8.5).mean() > 0.75
    wm = median(a, "t1", WM)
    assert median(a, "t1", SINUS) < 0.15 * wm and median(a, "t1", BONE) < 0.4 * wm  # both dark on T1w ...
    assert median(a, "ct", BONE) - median(a, "ct", SINUS) > 1000  # ... but a thousand HU apart on CT


def test_head_sits_inside_the_field_of_view():
    labels = sitk.GetArrayViewFromImage(small(0).labels)  # (z, y, x)
    for border in (labels[:, :, :2], labels[:, :, -2:], labels[:, :2], labels[:, -2:], labels[-2:]):
        assert not border.any()
    assert labels[0].any()  # the neck leaves through the bottom of the field of view


def test_anisotropic_spacing_keeps_the_physical_head():
    iso, aniso = small(4), make_phantom(4, shape=(64, 80, 32), spacing=(3.0, 3.0, 6.0))
    assert aniso.labels.GetSize() == (64, 80, 32)
    (lo_i, hi_i), (lo_a, hi_a) = extent_mm(iso), extent_mm(aniso)
    assert np.allclose(lo_i[:2], lo_a[:2], atol=3.1) and np.allclose(hi_i, hi_a, atol=6.1)
    width, length = hi_i[:2] - lo_i[:2]
    assert 135 < width < 165 and 180 < length < 215 and hi_i[2] - lo_i[2] > 165

    def brain_ml(p: Phantom) -> float:
        voxels = np.isin(sitk.GetArrayViewFromImage(p.labels), (GM, WM)).sum()
        return voxels * float(np.prod(p.labels.GetSpacing())) / 1000.0

    assert 700 < brain_ml(iso) < 1400
    assert brain_ml(aniso) == pytest.approx(brain_ml(iso), rel=0.05)


def test_default_field_of_view_when_shape_is_none():
    p = make_phantom(5, shape=None, spacing=(3.0, 3.0, 6.0), noise=False)
    assert p.t1.GetSize() == (64, 75, 32)


def test_all_volumes_share_one_centred_grid():
    p = small(0)
    ref = p.labels
    assert ref.GetPixelID() == sitk.sitkUInt8
    assert ref.GetDirection() == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    centre = np.array(ref.GetOrigin()) + (np.array(ref.GetSize()) - 1) * np.array(ref.GetSpacing()) / 2
    assert np.allclose(centre, 0.0)
    for name in ("t1", "t2", "ct", "pet", "t1c"):
        image = getattr(p, name)
        assert image.GetPixelID() == sitk.sitkFloat32, name
        assert image.GetSize() == ref.GetSize() and image.GetSpacing() == ref.GetSpacing()
        assert image.GetOrigin() == ref.GetOrigin() and image.GetDirection() == ref.GetDirection()


def test_face_is_anterior_and_skull_vertex_superior():
    labels = sitk.GetArrayViewFromImage(small(0, deform=False).labels)
    eyes = np.argwhere(labels == 8).mean(0)
    brain = np.argwhere(np.isin(labels, (GM, WM))).mean(0)
    assert eyes[1] < brain[1]  # LPS: anterior is -y
    assert eyes[0] < brain[0]  # the eyes lie below the brain's centre (+z superior)


def test_flags_tumour_noise_and_deform():
    assert not np.isin(sitk.GetArrayViewFromImage(small(0, tumour=False).labels), (10, 11)).any()
    clean, noisy = arrays(small(0, noise=False)), arrays(small(0))
    assert np.array_equal(clean["labels"], noisy["labels"])  # noise never moves the anatomy
    corner = (slice(0, 6), slice(0, 6), slice(0, 6))
    assert np.allclose(clean["ct"][corner], -1000.0, atol=1e-3) and not clean["t1"][corner].any()
    assert 8.0 < noisy["ct"][corner].std() < 22.0
    assert noisy["t1"][corner].mean() > 5.0  # Rician noise floor in air
    assert (noisy["pet"] >= 0).all()
    straight = sitk.GetArrayViewFromImage(small(0, deform=False).labels)
    assert (straight != clean["labels"]).mean() > 0.01


def test_save_phantom_writes_readable_files_on_the_same_grid(tmp_path):
    p = small(0)
    paths = save_phantom(p, tmp_path / "head")
    assert set(paths) == set(VOLUMES) | {"label_table"}
    for name in VOLUMES:
        image = sitk.ReadImage(str(paths[name]))
        assert paths[name].name == f"{name}.nii.gz"
        assert image.GetSize() == p.labels.GetSize() and np.allclose(image.GetOrigin(), p.labels.GetOrigin())
        assert np.allclose(image.GetSpacing(), p.labels.GetSpacing())
        assert np.array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(getattr(p, name)))
    table = json.loads(paths["label_table"].read_text())
    assert {int(k): v for k, v in table.items()} == LABEL_NAMES

    nrrd = save_phantom(p, str(tmp_path / "nrrd"), fmt=".nrrd")
    assert sitk.ReadImage(str(nrrd["ct"])).GetSize() == p.ct.GetSize()


def test_save_phantom_errors(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError):
        save_phantom(small(0), blocker)
    with pytest.raises(OutputError):
        save_phantom(small(0), tmp_path / "x", fmt=".png")


@pytest.mark.parametrize("grid", [dict(shape=(64, 64)), dict(spacing=(1.0, 0.0, 1.0)), dict(shape=(8, 8, 2.5))])
def test_bad_grid_is_an_input_error(grid):
    with pytest.raises(InputError):
        make_phantom(0, **grid)
