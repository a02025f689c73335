"""The module's self-test (Reload and Test, ctest ``py_MedGANTranslate``): a real translation through the engine
process with a tiny random-weight model, on a small oblique, anisotropic volume.

It lives here so the module file keeps only the test case Slicer looks for. The volume's rotated axes, unequal
spacing and odd origin catch any geometry shortcut between the scene and the engine; the test never installs
packages (ctest would otherwise download torch and MONAI) but reports a skip that says why.
"""
from __future__ import annotations

import shutil
import tempfile

import numpy as np
import slicer

from . import dependencies, scene
from .job import TranslationRequest


def translate_tiny_model(test, logic) -> None:
    """Runs the check on ``test`` (a ScriptedLoadableModuleTest) with the module's ``logic``."""
    missing = dependencies.missing_packages(logic.requirementsFile())
    if missing:
        test.skipTest("the engine's Python packages are not installed ({names}); click Translate once to install "
                      "them, then run the test again".format(names=", ".join(missing)))
    folder = tempfile.mkdtemp(prefix="MedGANTranslateTest-")
    try:
        summary = _tiny_model(folder)
        matrix = _oblique_matrix()
        rng = np.random.default_rng(0)
        values = _phantom(rng)
        input_volume = slicer.util.addVolumeFromArray(values, ijkToRAS=matrix, name="TinyMR")
        # air at -1000 HU: the engine leaves out metrics against a reference that does not look like a CT
        reference = slicer.util.addVolumeFromArray((values * 2.0 - 1000.0).astype(np.float32), ijkToRAS=matrix, name="TinyCT")
        test.delayDisplay("Translating")
        result = logic.translate(TranslationRequest(summary, [input_volume], reference=reference, device="cpu"), timeout=600)

        synthetic = result.synthetic
        test.assertEqual(synthetic.GetName(), f"TinyMR · synthetic CT ({summary.id} v{summary.version})")
        np.testing.assert_array_equal(scene.ijk_to_ras(synthetic), scene.ijk_to_ras(input_volume))
        test.assertEqual(slicer.util.arrayFromVolume(synthetic).shape, values.shape)
        test.assertEqual(synthetic.GetAttribute("MedGANTranslate.Synthetic"), "true")
        test.assertEqual(synthetic.GetAttribute("MedGANTranslate.ModelId"), summary.id)
        test.assertEqual(synthetic.GetAttribute("MedGANTranslate.ModelVersion"), summary.version)
        test.assertEqual(synthetic.GetScalarVolumeDisplayNode().GetWindow(), 400)
        test.assertIsNotNone(result.difference)
        test.assertEqual(result.difference.GetName(), "TinyMR · difference")
        test.assertGreater(result.metrics_table.GetNumberOfRows(), 0)
        logic.showResults(synthetic)
        test.delayDisplay("Test passed")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _tiny_model(folder: str):
    """A schema-valid card with random weights, made with the engine's own helpers."""
    import torch
    from MedGANTranslateLib.card import read_card_summary
    from MedGANTranslateLib.model_folder import save_model_folder, tiny_card_data
    from MedGANTranslateLib.networks import build_network

    torch.manual_seed(0)
    data = tiny_card_data("selftest-tiny")
    save_model_folder(folder, data, network=build_network(data["architecture"]))
    return read_card_summary(folder)


def _oblique_matrix() -> np.ndarray:
    """IJK-to-RAS with rotated axes, unequal spacing and an odd origin, to catch any geometry shortcut."""
    a, b = np.radians(20.0), np.radians(-10.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    matrix = np.eye(4)
    matrix[:3, :3] = rz @ rx @ np.diag([0.9, 1.2, 2.5])
    matrix[:3, 3] = [-12.5, 30.0, 7.25]
    return matrix


def _phantom(rng) -> np.ndarray:
    """An ellipsoid 'head' with noise, in (K, J, I) order as arrayFromVolume uses."""
    k, j, i = np.mgrid[0:10, 0:20, 0:24].astype(np.float32)
    inside = ((i - 11.5) / 10) ** 2 + ((j - 9.5) / 8) ** 2 + ((k - 4.5) / 4.5) ** 2 < 1.0
    values = np.where(inside, 400.0, 0.0) + rng.normal(0, 20, inside.shape)
    return values.astype(np.float32)
