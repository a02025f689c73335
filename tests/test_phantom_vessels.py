"""The phantom's normally enhancing anatomy (``vessels``): dural venous sinuses and choroid plexus, painted where
they lie in a head and bright only after contrast; without the option the phantom is the one it always was."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from MedGANTranslateLib.errors import MedGANError
from MedGANTranslateLib.phantom import make_phantom
from MedGANTranslateLib.phantom_vessels import CHOROID_PLEXUS, VENOUS_SINUS, VESSEL_LABELS
from MedGANTranslateLib.training.config import complete_config

from cli_in_process import process_settings_kept, run
from test_phantom import CSF, GM, WM, arrays, small
from test_synth_data import synth_config

VENTRICLES = 7


@pytest.mark.parametrize("seed", [0, 4])
def test_vessels_only_add_their_labels_over_dura_csf_cortex_and_ventricles(seed):
    plain, with_vessels = arrays(small(seed)), arrays(small(seed, vessels=True))
    assert not np.isin(plain["labels"], list(VESSEL_LABELS)).any()
    changed = plain["labels"] != with_vessels["labels"]
    assert np.isin(with_vessels["labels"][changed], list(VESSEL_LABELS)).all()
    assert set(np.unique(plain["labels"][changed])) <= {2, CSF, GM, WM, VENTRICLES}, "the dura, CSF and cortex"
    sinus, plexus = with_vessels["labels"] == VENOUS_SINUS, with_vessels["labels"] == CHOROID_PLEXUS
    assert (plain["labels"][plexus] == VENTRICLES).all(), "the plexus lies in the ventricles"
    volume_ml = 27.0 / 1000.0  # 3 mm voxels
    assert 5.0 < sinus.sum() * volume_ml < 40.0 and 0.3 < plexus.sum() * volume_ml < 5.0
    assert small(seed, vessels=True).label_names == {**small(seed).label_names, **VESSEL_LABELS}


def test_the_sinuses_run_along_the_midline_under_the_vault_and_out_to_both_sides_behind():
    a = arrays(small(0, vessels=True))
    image = small(0, vessels=True).labels
    z, y, x = np.nonzero(a["labels"] == VENOUS_SINUS)
    points = np.array([image.TransformIndexToPhysicalPoint((int(i), int(j), int(k))) for k, j, i in zip(z, y, x)])
    high = points[:, 2] > 30.0  # above the ventricles: the superior sagittal sinus alone
    assert np.abs(np.median(points[high, 0])) < 4.0 and np.ptp(points[high, 1]) > 100.0, "sagittal: midline, long"
    low = points[:, 2] < 0.0  # the transverse sinuses, along the tentorium
    assert points[low, 1].mean() > 40.0, "posterior"
    assert points[low, 0].min() < -30.0 and points[low, 0].max() > 30.0, "on both sides"


def test_vessels_are_darker_than_grey_matter_before_contrast_and_brightest_after_it():
    a = arrays(make_phantom(1, shape=None, spacing=(2.0, 2.0, 2.0), vessels=True))  # 3 mm blurs the plexus away
    labels = a["labels"]
    for label in VESSEL_LABELS:
        voxels = labels == label
        assert np.median(a["t1"][voxels]) < np.median(a["t1"][labels == GM])
        assert np.median(a["t1c"][voxels]) > 1.3 * np.median(a["t1c"][labels == WM])
        assert 20.0 < np.median(a["ct"][voxels]) < 90.0, "blood and tissue on CT"


def test_template_synth_refuses_vessels_and_skull_stripping():
    cfg = synth_config()
    cfg["data"]["phantom"] = dict(cfg["data"].get("phantom", {}), vessels=True)
    with pytest.raises(MedGANError, match="vessels"):
        complete_config(cfg)
    cfg = synth_config()
    cfg["data"]["synth"]["brain_only_probability"] = 0.5
    with pytest.raises(MedGANError, match="brain_only_probability"):
        complete_config(cfg)


def test_the_command_line_writes_a_phantom_with_vessels_and_names_their_labels(tmp_path):
    with process_settings_kept():
        code, out, err = run("phantom", "--out", tmp_path, "--shape", 32, 40, 32, "--spacing", 6, 6, 6, "--vessels")
    assert code == 0, err
    table = json.loads((tmp_path / "label_table.json").read_text())
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "labels.nii.gz")))
    assert table["14"] == "venous_sinus" and (labels == VENOUS_SINUS).any()
