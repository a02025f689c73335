"""Translations through the panel with the real engine (``MedGANTranslateLib.cli``) in a real background
process and tiny real models: the nodes that appear, their geometry, names, provenance, display presets,
subject hierarchy and layout; cancelling; errors; the self-test."""
from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest

from .slicer_test_support import OBLIQUE_SPACING, head_array, oblique_ijk_to_ras, scene_nodes

pytestmark = pytest.mark.slow
TIMEOUT = 180


def _ijk_to_ras(slicer, node):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def _prepare(widget, tiny_models, model_id):
    widget.ui.modelsFolderLineEdit.currentPath = str(tiny_models)
    selector = widget.ui.modelSelector
    selector.currentIndex = next(i for i in range(selector.count) if selector.itemData(i).startswith(model_id + "@"))
    widget.panel._parameterNode.device = "cpu"


def _run(slicer, widget, progress=None):
    if progress is not None:
        original = widget.panel._onProgress

        def record(tracker):
            progress.append((tracker.percent, tracker.label("%p%"), widget.ui.applyButton.text))
            original(tracker)

        widget.panel._onProgress = record
    widget.ui.applyButton.click()
    assert widget.panel._job is not None and widget.panel._job.running and widget.ui.applyButton.text == "Cancel"
    assert slicer._standin.process_events_until(lambda: not widget.panel._job.running, TIMEOUT)
    return widget.panel._job


def _volume_names(slicer):
    return sorted(n.GetName() for n in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode"))


def _temporary_files(slicer):
    return os.listdir(slicer.app.temporaryPath)


def test_translation_with_reference(slicer_standin, widget, tiny_models):
    slicer = slicer_standin
    matrix = oblique_ijk_to_ras()
    values = head_array()
    input_node = slicer.util.addVolumeFromArray(values, ijkToRAS=matrix, name="MRHead")
    # a CT-like reference: air at -1000 HU (the engine leaves out metrics against a reference that is no CT)
    reference = slicer.util.addVolumeFromArray(values * 2 - 1000, ijkToRAS=matrix, name="CTHead")
    sh = slicer.mrmlScene.GetSubjectHierarchyNode()
    study = sh.CreateStudyItem(sh.CreateSubjectItem(sh.GetSceneItemID(), "Patient 1"), "Study 1")
    for node in (input_node, reference):
        sh.SetItemParent(sh.GetItemByDataNode(node), study)
    _prepare(widget, tiny_models, "tiny-ct")
    widget.ui.inputSelector.setCurrentNode(input_node)
    widget.ui.referenceSelector.setCurrentNode(reference)
    widget.ui.mirrorCheckBox.checked = True
    widget.ui.n4CheckBox.checked = True
    progress = []
    job = _run(slicer, widget, progress)

    assert job.error is None, job.error and job.error.log
    result = job.result
    synthetic, difference, table = result.synthetic, result.difference, result.metrics_table
    # names; the input is untouched
    assert synthetic.GetName() == "MRHead · synthetic CT (tiny-ct v0.1.0)"
    assert difference.GetName() == "MRHead · difference" and table.GetName() == "MRHead · metrics"
    assert _volume_names(slicer) == sorted(["MRHead", "CTHead", synthetic.GetName(), difference.GetName()])
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(input_node), values)
    # geometry: exactly the input's (oblique directions, anisotropic spacing)
    for node in (synthetic, difference):
        np.testing.assert_array_equal(_ijk_to_ras(slicer, node), matrix)
        assert slicer.util.arrayFromVolume(node).shape == values.shape
        np.testing.assert_allclose(node.GetSpacing(), OBLIQUE_SPACING)
    assert slicer.util.arrayFromVolume(synthetic).dtype == np.int16
    # provenance
    card_sha = (tiny_models / "tiny-ct" / "model.json").read_text()
    for node in (synthetic, difference, table):
        assert node.GetAttribute("MedGANTranslate.Synthetic") == "true"
        assert node.GetAttribute("MedGANTranslate.ModelId") == "tiny-ct"
        assert node.GetAttribute("MedGANTranslate.ModelVersion") == "0.1.0"
        assert node.GetAttribute("MedGANTranslate.WeightsSHA256") in card_sha
        assert node.GetAttribute("MedGANTranslate.Device") == "cpu"
        assert float(node.GetAttribute("MedGANTranslate.Seconds")) > 0
    assert difference.GetAttribute("MedGANTranslate.Kind") == "difference"
    assert "--tta" in job.process.args and synthetic.GetAttribute("MedGANTranslate.TestTimeMirror") == "left-right"
    assert "--n4" in job.process.args and synthetic.GetAttribute("MedGANTranslate.BiasCorrection") == "N4"
    assert "Research use only" in synthetic.GetDescription()
    # display presets from the card: CT window/level; difference diverging and centred at zero
    display = synthetic.GetScalarVolumeDisplayNode()
    assert not display.GetAutoWindowLevel() and (display.GetWindow(), display.GetLevel()) == (400, 40)
    diff_display = difference.GetScalarVolumeDisplayNode()
    assert diff_display.GetColorNodeID() == "vtkMRMLColorTableNodeFileDivergingBlueRed.txt"
    assert not diff_display.GetAutoWindowLevel() and diff_display.GetLevel() == 0 and diff_display.GetWindow() > 0
    # subject hierarchy: next to the input, under its study
    for node in (synthetic, difference, table):
        assert sh.GetItemParent(sh.GetItemByDataNode(node)) == study
    # metrics table
    rows = {table.GetCellText(r, 0): table.GetCellText(r, 1) for r in range(table.GetNumberOfRows())}
    assert {"mae", "me", "rmse", "psnr", "ssim"} <= set(rows) and float(rows["mae"]) > 0
    assert widget.ui.metricsTableView.mrmlTableNode() is table and widget.ui.metricsTableView.visible
    # layout: input | synthetic | difference, linked
    layout_manager = slicer.app.layoutManager()
    from MedGANTranslateSlicer import scene

    assert layout_manager.layout == scene.THREE_PANE_LAYOUT_ID
    panes = {name: layout_manager.sliceWidget(name).mrmlSliceCompositeNode() for name in ("Red", "Yellow", "Green")}
    assert [panes[n].GetBackgroundVolumeID() for n in ("Red", "Yellow", "Green")] == [input_node.GetID(), synthetic.GetID(), difference.GetID()]
    assert all(p.GetLinkedControl() == 1 and p.GetForegroundVolumeID() is None for p in panes.values())
    assert all(layout_manager.sliceWidget(n).mrmlSliceNode().GetOrientation() == "Axial" for n in panes)
    assert layout_manager.reset_count >= 1
    # panel state: progress with percentage and ETA text, then done
    assert progress and all(text == "Cancel" for _, _, text in progress)
    assert any(label.startswith("Translating: %p%") for _, label, _ in progress)
    assert [p for p, _, _ in progress] == sorted(p for p, _, _ in progress)
    assert widget.ui.progressBar.value == 100 and widget.ui.applyButton.text == "Translate"
    assert widget.ui.statusLabel.text.startswith("Added 'MRHead · synthetic CT (tiny-ct v0.1.0)'")
    assert widget.panel._parameterNode.syntheticVolume is synthetic and widget.panel._parameterNode.differenceVolume is difference
    assert '"event": "done"' in widget.ui.logTextEdit.plainText
    assert _temporary_files(slicer) == []
    assert slicer._standin.dialogs("error") == []

    # overlay instead of side by side, with a live opacity slider
    widget.ui.opacitySliderWidget.value = 0.3
    widget.ui.sideBySideCheckBox.click()
    composites = slicer.util.getNodesByClass("vtkMRMLSliceCompositeNode")
    assert layout_manager.layout == slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpView
    assert all(c.GetBackgroundVolumeID() == input_node.GetID() and c.GetForegroundVolumeID() == synthetic.GetID() for c in composites)
    assert all(c.GetForegroundOpacity() == pytest.approx(0.3) for c in composites)
    widget.ui.opacitySliderWidget.value = 0.8
    assert all(c.GetForegroundOpacity() == pytest.approx(0.8) for c in composites)
    widget.ui.sideBySideCheckBox.click()
    assert layout_manager.layout == scene.THREE_PANE_LAYOUT_ID


def test_two_input_pet_model_without_reference(slicer_standin, widget, tiny_models):
    slicer = slicer_standin
    matrix = oblique_ijk_to_ras()
    t1 = slicer.util.addVolumeFromArray(head_array(3), ijkToRAS=matrix, name="Case2_t1")
    t2 = slicer.util.addVolumeFromArray(head_array(4), ijkToRAS=matrix, name="Case2_t2")
    _prepare(widget, tiny_models, "tiny-two")
    widget.ui.roiXSpinBox.value = widget.ui.roiYSpinBox.value = widget.ui.roiZSpinBox.value = 16
    widget.ui.overlapSpinBox.value = 0.5
    job = _run(slicer, widget)

    assert job.error is None, job.error and job.error.log
    args = job.process.args
    assert args[args.index("--roi") + 1:args.index("--roi") + 4] == ["16", "16", "16"]
    assert args[args.index("--overlap") + 1] == "0.5" and args[args.index("--device") + 1] == "cpu"
    assert [args[i + 1].endswith(f"input{n}.nrrd") for n, i in enumerate(j for j, a in enumerate(args) if a == "-i")] == [True, True]
    assert "--reference" not in args and "--diff" not in args
    synthetic = job.result.synthetic
    assert synthetic.GetName() == "Case2_t1 · synthetic PET (tiny-two v0.1.0)"
    assert job.result.difference is None and job.result.metrics_table is None
    np.testing.assert_array_equal(_ijk_to_ras(slicer, synthetic), matrix)
    display = synthetic.GetScalarVolumeDisplayNode()
    assert display.GetColorNodeID() == "vtkMRMLPETProceduralColorNodePET-Heat"
    assert (display.GetWindow(), display.GetLevel()) == (10, 5)
    assert synthetic.GetAttribute("MedGANTranslate.Modality") == "PET" and synthetic.GetAttribute("MedGANTranslate.Unit") == "SUV"
    layout_manager = slicer.app.layoutManager()
    assert layout_manager.layout == slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView
    assert layout_manager.sliceWidget("Red").mrmlSliceCompositeNode().GetBackgroundVolumeID() == t1.GetID()
    assert layout_manager.sliceWidget("Yellow").mrmlSliceCompositeNode().GetBackgroundVolumeID() == synthetic.GetID()
    assert t2.GetID() not in {c.GetBackgroundVolumeID() for c in slicer.util.getNodesByClass("vtkMRMLSliceCompositeNode")}


def test_an_output_in_its_inputs_units_is_shown_with_the_cards_window_in_those_units(slicer_standin, widget, tiny_models):
    """A white-matter normalised card with ``input_units``: the synthetic image comes back on the scan's own scale
    (here about 800 times the card's 0-1), so the card's window and difference window are scaled with it."""
    slicer = slicer_standin
    slicer.util.addVolumeFromArray(head_array(5), name="Case3_t1")
    _prepare(widget, tiny_models, "tiny-t1c")
    widget.ui.roiXSpinBox.value = widget.ui.roiYSpinBox.value = widget.ui.roiZSpinBox.value = 16
    job = _run(slicer, widget)

    assert job.error is None, job.error and job.error.log
    synthetic, difference = job.result.synthetic, job.result.difference
    scale = float(synthetic.GetAttribute("MedGANTranslate.OutputScale"))
    assert 600 < scale < 1000  # white matter near 430 put at 0.5
    assert "scaled by" in synthetic.GetAttribute("MedGANTranslate.WhiteMatterReference")
    display = synthetic.GetScalarVolumeDisplayNode()
    assert (display.GetWindow(), display.GetLevel()) == pytest.approx((scale, 0.5 * scale))
    assert 0 <= slicer.util.arrayFromVolume(synthetic).min() and slicer.util.arrayFromVolume(synthetic).max() <= scale
    low, high = difference.GetScalarVolumeDisplayNode().GetWindowLevelMin(), difference.GetScalarVolumeDisplayNode().GetWindowLevelMax()
    assert (low, high) == pytest.approx((-0.25 * scale, 0.25 * scale))


def test_translation_with_an_uncertainty_map(slicer_standin, widget, tiny_models):
    slicer = slicer_standin
    matrix = oblique_ijk_to_ras()
    values = head_array()
    input_node = slicer.util.addVolumeFromArray(values, ijkToRAS=matrix, name="MRHead")
    _prepare(widget, tiny_models, "tiny-ct")
    widget.ui.inputSelector.setCurrentNode(input_node)
    widget.ui.uncertaintyCheckBox.checked = True
    progress, messages, shown = [], [], widget.panel._onProgress
    widget.panel._onProgress = lambda tracker: (messages.append(tracker.message), shown(tracker))
    job = _run(slicer, widget, progress)

    assert job.error is None, job.error and job.error.log
    assert "--uncertainty" in job.process.args and "--tta" not in job.process.args
    synthetic, uncertainty = job.result.synthetic, job.result.uncertainty
    assert uncertainty.GetName() == "MRHead · uncertainty"
    assert _volume_names(slicer) == sorted(["MRHead", synthetic.GetName(), uncertainty.GetName()])
    np.testing.assert_array_equal(_ijk_to_ras(slicer, uncertainty), matrix)
    spread = slicer.util.arrayFromVolume(uncertainty)
    assert spread.shape == values.shape and spread.dtype == np.float32 and spread.max() > 0 and spread.min() == 0
    described = "std over 4 variants: as is, mirror left-right, 2 window-grid shifts (5 and 11 voxels)"
    for node in (synthetic, uncertainty):
        assert node.GetAttribute("MedGANTranslate.Uncertainty") == described
        assert node.GetAttribute("MedGANTranslate.ModelId") == "tiny-ct" and node.GetAttribute("MedGANTranslate.Unit") == "HU"
    assert uncertainty.GetAttribute("MedGANTranslate.Kind") == "uncertainty"
    assert synthetic.GetAttribute("MedGANTranslate.Kind") is None
    # colour map and the overlay's threshold: the most uncertain 5 % of the body, then the panel's slider
    display = uncertainty.GetScalarVolumeDisplayNode()
    assert display.GetColorNodeID() == "vtkMRMLPETProceduralColorNodePET-Heat" and display.GetApplyThreshold()
    body = spread[spread > 0]
    assert display.GetLowerThreshold() == pytest.approx(np.percentile(body, 95), rel=1e-4)
    assert widget.panel._parameterNode.uncertaintyVolume is uncertainty
    slider = widget.ui.uncertaintyThresholdSliderWidget
    assert slider.enabled and slider.value == pytest.approx(display.GetLowerThreshold(), abs=0.05)
    assert slider.maximum == pytest.approx(np.percentile(body, 99.5), abs=0.05)
    slider.value = round(float(np.percentile(body, 50)), 1)
    assert display.GetLowerThreshold() == pytest.approx(slider.value)
    # side by side: input | synthetic with the uncertainty over it
    layout_manager = slicer.app.layoutManager()
    yellow = layout_manager.sliceWidget("Yellow").mrmlSliceCompositeNode()
    assert yellow.GetBackgroundVolumeID() == synthetic.GetID() and yellow.GetForegroundVolumeID() == uncertainty.GetID()
    assert layout_manager.sliceWidget("Red").mrmlSliceCompositeNode().GetForegroundVolumeID() is None
    # one progress over the variants (4 windows each): 'Translating: 8 of 16 windows on cpu: variant 3 of 4 (...)'
    assert "Translating: 0 of 16 windows on cpu: variant 1 of 4 (as is)" in messages
    assert "Translating: 8 of 16 windows on cpu: variant 3 of 4 (window grid moved 5 voxels)" in messages
    assert "Translating: 16 of 16 windows on cpu: variant 4 of 4 (window grid moved 11 voxels)" in messages
    assert [p for p, _, _ in progress] == sorted(p for p, _, _ in progress)
    assert _temporary_files(slicer) == []


def test_scan_warnings_show_in_the_panel_and_strict_refuses_the_scan(slicer_standin, widget, tiny_models):
    """A CT given to an MR model: the engine's warning shows in the panel while the job runs and stays on the
    result; with the strict box ticked the same scan is refused, nothing is added and the panel says why."""
    slicer = slicer_standin
    ct = slicer.util.addVolumeFromArray(head_array() - 1000.0, ijkToRAS=oblique_ijk_to_ras(), name="HeadCT")
    _prepare(widget, tiny_models, "tiny-ct")
    widget.ui.inputSelector.setCurrentNode(ct)
    shown_while_running = []
    original = widget.panel._onWarning

    def record(warning):
        original(warning)
        shown_while_running.append((warning["code"], widget.ui.warningsLabel.visible, widget.panel._job.running))

    widget.panel._onWarning = record
    job = _run(slicer, widget)

    assert job.error is None, job.error and job.error.log
    assert shown_while_running == [("modality_mismatch", True, True)]
    assert widget.ui.warningsLabel.visible and "it looks like a CT" in widget.ui.warningsLabel.text
    assert [w["code"] for w in job.result.scan_warnings] == ["modality_mismatch"]
    assert "modality_mismatch" in job.result.synthetic.GetAttribute("MedGANTranslate.Warnings")
    assert "1 warning(s) about the scan" in widget.ui.statusLabel.text

    widget.ui.strictCheckBox.checked = True
    nodes_before = {n.GetID() for n in scene_nodes(slicer.mrmlScene)}
    job = _run(slicer, widget)
    assert "--strict" in job.process.args and job.error is not None and job.error.kind == "input"
    assert "strict mode" in str(job.error) and "[modality_mismatch]" in str(job.error)
    assert {n.GetID() for n in scene_nodes(slicer.mrmlScene)} == nodes_before
    assert widget.ui.warningsLabel.visible and "it looks like a CT" in widget.ui.warningsLabel.text
    assert widget.ui.statusLabel.text.startswith("The input cannot be translated:")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cancel_mid_run_leaves_nothing_behind(slicer_standin, widget, tiny_models):
    slicer = slicer_standin
    # a volume of many windows: on a busy machine the tiny default one could finish between the first progress
    # event and the cancel (the engine then completes and exits 0, as it should)
    input_node = slicer.util.addVolumeFromArray(head_array(shape=(40, 80, 96)), ijkToRAS=oblique_ijk_to_ras(), name="MRHead")
    _prepare(widget, tiny_models, "tiny-ct")
    widget.ui.inputSelector.setCurrentNode(input_node)
    nodes_before = {n.GetID() for n in scene_nodes(slicer.mrmlScene)}
    widget.ui.applyButton.click()
    job = widget.panel._job
    assert slicer._standin.process_events_until(lambda: job.tracker.stage != "" or not job.running, TIMEOUT)
    assert job.running, "the run ended before it could be cancelled"
    pid = job.process.pid
    assert _temporary_files(slicer) != []
    started = time.monotonic()
    widget.ui.applyButton.click()  # the button reads "Cancel" while running
    assert time.monotonic() - started < 0.2, "cancel must not block Slicer's GUI thread"

    assert job.cancelled and not job.running and job.result is None and job.error is None
    assert widget.ui.applyButton.text == "Translate" and widget.ui.statusLabel.text.startswith("Cancelled")
    # the engine stops by itself (SIGTERM: exit 130) and the timer then removes the temporary folder
    assert slicer._standin.process_events_until(lambda: job.process.finished and not _temporary_files(slicer), 30)
    assert job.process.returncode == 130
    assert {n.GetID() for n in scene_nodes(slicer.mrmlScene)} == nodes_before
    assert not _alive(pid)
    if os.name != "nt":
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
    assert widget.ui.applyButton.text == "Translate" and widget.ui.statusLabel.text.startswith("Cancelled")
    assert slicer._standin.dialogs("error") == []


def test_engine_error_reaches_the_user_with_the_full_log(slicer_standin, widget, tiny_models, tmp_path):
    slicer = slicer_standin
    models = tmp_path / "models"
    shutil.copytree(tiny_models / "tiny-ct", models / "tiny-ct")
    weights = models / "tiny-ct" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"tampered")
    input_node = slicer.util.addVolumeFromArray(head_array(), ijkToRAS=oblique_ijk_to_ras(), name="MRHead")
    _prepare(widget, models, "tiny-ct")
    widget.ui.inputSelector.setCurrentNode(input_node)
    nodes_before = {n.GetID() for n in scene_nodes(slicer.mrmlScene)}
    job = _run(slicer, widget)

    assert job.error is not None and job.error.kind == "weights" and job.process.returncode == 2
    (shown,) = slicer._standin.dialogs("error")
    assert shown["text"].startswith("The model weights cannot be used.") and "SHA-256" in shown["text"]
    assert shown["detailedText"].startswith("$ ") and '"event": "error"' in shown["detailedText"]
    assert widget.ui.statusLabel.text.startswith("The model weights cannot be used:")
    assert {n.GetID() for n in scene_nodes(slicer.mrmlScene)} == nodes_before
    assert _temporary_files(slicer) == [] and widget.ui.applyButton.text == "Translate"


def test_a_reference_registered_by_a_transform_is_used_registered(slicer_standin, widget, tiny_models):
    """The reference lies 7 mm off the input and a linear transform puts it back: the metrics are those of the
    same reference without either shift. The outputs of an input under a transform sit under it too."""
    slicer = slicer_standin
    matrix = oblique_ijk_to_ras()
    values = head_array()
    input_node = slicer.util.addVolumeFromArray(values, ijkToRAS=matrix, name="MRHead")
    aligned = slicer.util.addVolumeFromArray(values * 2 - 1000, ijkToRAS=matrix, name="CT aligned")
    shifted_matrix = matrix.copy()
    shifted_matrix[:3, 3] += (7.0, 0.0, 0.0)
    registered = slicer.util.addVolumeFromArray(values * 2 - 1000, ijkToRAS=shifted_matrix, name="CT registered")
    registration = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
    registration.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(np.array(
        [[1, 0, 0, -7.0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])))
    registered.SetAndObserveTransformNodeID(registration.GetID())
    _prepare(widget, tiny_models, "tiny-ct")
    widget.ui.inputSelector.setCurrentNode(input_node)
    metrics = {}
    for reference in (aligned, registered):
        widget.ui.referenceSelector.setCurrentNode(reference)
        job = _run(slicer, widget)
        assert job.error is None, job.error and job.error.log
        metrics[reference.GetName()] = job.result.metrics
        assert not [w for w in job.result.scan_warnings if w["code"].startswith("reference")]
    assert metrics["CT registered"] == metrics["CT aligned"]

    moved = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "patient position")
    input_node.SetAndObserveTransformNodeID(moved.GetID())
    widget.ui.referenceSelector.setCurrentNode(None)
    job = _run(slicer, widget)
    assert job.error is None, job.error and job.error.log
    assert job.result.synthetic.GetParentTransformNode() is moved
    np.testing.assert_array_equal(_ijk_to_ras(slicer, job.result.synthetic), matrix)


@pytest.mark.standin(testing=True, main_window=False)
def test_self_test_runs_a_real_translation(slicer_standin, module):
    """MedGANTranslateTest, which Slicer's ctest py_MedGANTranslate runs, passes on the stand-in too."""
    slicer_standin.selfTests["MedGANTranslate"](msec=0)
    assert _temporary_files(slicer_standin) == []


@pytest.mark.standin(testing=True, main_window=False)
def test_self_test_skips_instead_of_installing_packages(slicer_standin, module, monkeypatch, caplog):
    """ctest py_MedGANTranslate must not download torch and MONAI: it reports a skip that says why. So does the
    module's Reload and Test (slicer.selfTests, MedGANTranslateTest.runTest), instead of raising the skip."""
    import importlib.metadata
    import logging
    import unittest

    real_version = importlib.metadata.version

    def version(name):
        if name == "monai":
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    result = unittest.TextTestRunner(stream=open(os.devnull, "w")).run(
        unittest.TestLoader().loadTestsFromTestCase(module.MedGANTranslateTest))
    assert result.wasSuccessful() and len(result.skipped) == 1
    assert "monai>=1.3" in result.skipped[0][1] and "click Translate once" in result.skipped[0][1]
    with caplog.at_level(logging.INFO):
        try:
            slicer_standin.selfTests["MedGANTranslate"](msec=0)
        except unittest.SkipTest as raised:  # pytest would count it as this test's own skip
            pytest.fail(f"Reload and Test raised the skip instead of reporting it: {raised}")
    assert "Test skipped: the engine's Python packages are not installed (monai>=1.3)" in caplog.text
    state = slicer_standin._standin.state
    assert state.pip_calls == [] and state.pip_ensure_calls == [] and state.torch_calls == []
