"""benchmarks/t1c_scanners.py: held-out phantoms through fixed scanners, and what it counts as invented enhancement."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from MedGANTranslateLib.phantom_vessels import VENOUS_SINUS
from MedGANTranslateLib.training.data import load_phantom

from test_training import TINY_PHANTOM

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from t1c_scanners import CORE, GREY, RIM, WHITE, acquired_pair, scanner, scores  # noqa: E402


def labelled_block() -> np.ndarray:
    labels = np.full((20, 20, 20), WHITE, np.uint8)
    labels[:, :, :6] = GREY
    labels[8:12, 8:12, 12:16] = RIM
    labels[9:11, 9:11, 13:15] = CORE
    return labels


def test_invented_enhancement_counts_brightened_brain_away_from_the_tumour_and_vessels_only():
    labels = labelled_block()
    t1 = np.where(labels == GREY, 60.0, 100.0).astype(np.float32)
    truth = t1 + np.where(labels == RIM, 150.0, 0.0).astype(np.float32)
    perfect = scores(t1, truth, truth, labels, voxel_ml=0.001)
    assert perfect == {"invented_ml": 0.0, "true_ml": 0.0, "rim_captured": 1.0, "vessels_captured": None,
                       "brain_mae": 0.0}
    assert scores(t1, truth, t1, labels, 0.001)["rim_captured"] == 0.0
    invented = truth.copy()
    invented[:2, :2, :2] += 51.0  # 8 voxels of white matter, just over half its value
    invented[7:13, 7:13, 11:17] += 80.0  # around the tumour: not counted
    invented[15:, 15:, 15:] += 49.0  # under half: not counted
    assert scores(t1, truth, invented, labels, 1.0)["invented_ml"] == 8.0
    labels[:2, 10:12, 2:4] = VENOUS_SINUS  # a sinus in the grey matter: it and 3 voxels around it left out
    truth[labels == VENOUS_SINUS] += 200.0
    half = t1 + np.where(labels == VENOUS_SINUS, 100.0, 0.0).astype(np.float32)
    sinus = labels == VENOUS_SINUS
    half[ndimage.binary_dilation(sinus, iterations=2) & ~sinus] += 60.0  # its partial volume around it
    assert scores(t1, truth, half, labels, 1.0)["vessels_captured"] == 0.5
    assert scores(t1, truth, half, labels, 1.0)["invented_ml"] == 0.0


def test_a_scanner_acquires_native_and_post_contrast_alike_on_one_grid(tmp_path):
    phantom = load_phantom(100, TINY_PHANTOM, tmp_path)
    t1, t1c, labels = acquired_pair(phantom, scanner((4.8, 4.8, 9.6), 0.1, 3))
    assert t1.GetSize() == t1c.GetSize() == labels.shape[::-1] and t1.GetSpacing()[2] > 9.0
    a, b = sitk.GetArrayViewFromImage(t1), sitk.GetArrayViewFromImage(t1c)
    assert 700 < np.median(a[labels == WHITE]) < 1300, "white matter near the scanner scale (1000)"
    ratio = np.median(b[labels == WHITE] / a[labels == WHITE])
    assert abs(ratio - 1.0) < 0.15 and np.median(b[labels == RIM] / a[labels == RIM]) > ratio + 0.1
