"""Paths and test volumes shared by the Slicer module's tests (a module of its own, because two folders
of this repository have a conftest.py and ``from conftest import`` would be ambiguous)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
STANDIN_DIR = HERE / "standin"
STANDIN_SLICER_DIR = STANDIN_DIR / "slicer"  # added to the real slicer package's __path__ inside the fixture
MODULE_DIR = HERE.parents[1]  # MedGANTranslate/ : the scripted module folder Slicer puts on sys.path
MODULE_FILE = MODULE_DIR / "MedGANTranslate.py"
STANDIN_TOP_LEVEL = {"qt", "ctk", "PyTorchUtils"}
STANDIN_SLICER_MODULES = {"_standin", "_app", "_uiloader", "ScriptedLoadableModule", "parameterNodeWrapper", "i18n", "packaging"}
MODULE_TOP_LEVEL = {"MedGANTranslate", "MedGANTranslateSlicer"}


def loaded_by_standin(name: str) -> bool:
    """Modules the stand-in, or the module under test with it, put into sys.modules (slicer-core's own
    ``slicer``, ``slicer.util`` and ``slicer_core`` stay loaded: compiled MRML is imported once)."""
    parts = name.split(".")
    return parts[0] in STANDIN_TOP_LEVEL | MODULE_TOP_LEVEL or (parts[0] == "slicer" and len(parts) > 1 and parts[1] in STANDIN_SLICER_MODULES)


OBLIQUE_SPACING = (0.9, 1.2, 2.5)


def oblique_ijk_to_ras():
    """Rotated axes, unequal spacing and an odd origin, so any geometry shortcut shows."""
    a, b = np.radians(25.0), np.radians(-12.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    matrix = np.eye(4)
    matrix[:3, :3] = rz @ rx @ np.diag(OBLIQUE_SPACING)
    matrix[:3, 3] = [-12.5, 30.0, 7.25]
    return matrix


def head_array(seed: int = 0, shape=(10, 20, 24)):
    """An MR-like ellipsoid with noise, (K, J, I) as arrayFromVolume returns."""
    rng = np.random.default_rng(seed)
    k, j, i = np.mgrid[0:shape[0], 0:shape[1], 0:shape[2]].astype(np.float32)
    inside = ((i - (shape[2] - 1) / 2) / (shape[2] * 0.42)) ** 2 + ((j - (shape[1] - 1) / 2) / (shape[1] * 0.4)) ** 2 \
        + ((k - (shape[0] - 1) / 2) / (shape[0] * 0.45)) ** 2 < 1.0
    return (np.where(inside, 400.0, 0.0) + rng.normal(0, 20, inside.shape)).astype(np.float32)


def scene_nodes(scene) -> list:
    return [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
