"""The panel through the stand-in: model selector from the registry, inputs per model, settings kept in the
parameter node, devices, and what the Translate button offers."""
from __future__ import annotations

from pathlib import Path

import pytest

from .slicer_test_support import head_array, oblique_ijk_to_ras


def _choose_model(widget, model_id: str) -> None:
    selector = widget.ui.modelSelector
    index = next(i for i in range(selector.count) if selector.itemData(i).startswith(model_id + "@"))
    selector.currentIndex = index


@pytest.mark.standin(main_window=False)
def test_setup_works_without_a_main_window(slicer_standin, widget):
    """Slicer's generic test loads every module with --no-main-window: no layout manager then."""
    assert slicer_standin.app.layoutManager() is None
    assert not widget.ui.applyButton.enabled
    assert widget.ui.applyButton.text == "Translate"
    assert not widget.ui.progressBar.visible and not widget.ui.logTextEdit.visible


def test_model_selector_is_filled_from_the_registry(widget, tiny_models):
    widget.ui.modelsFolderLineEdit.currentPath = str(tiny_models)
    labels = [widget.ui.modelSelector.itemText(i) for i in range(widget.ui.modelSelector.count)]
    assert {"Tiny test model (MR to CT) (v0.1.0)", "Tiny test model (MR to PET) (v0.1.0)",
            "Tiny two-input test model (MR T1w + T2w to PET) (v0.1.0)"} <= set(labels)
    _choose_model(widget, "tiny-ct")
    info = widget.ui.modelInfoLabel.text
    for part in ("MR T1w → CT</b> (HU), head", "<tt>tiny-ct</tt> version 0.1.0", "Expected time: not measured",
                 "Research use only, not for clinical decisions. Test model with random weights."):
        assert part in info
    assert widget.panel._parameterNode.modelKey == "tiny-ct@0.1.0"
    assert widget.panel._parameterNode.modelsFolder == str(tiny_models)


def test_details_show_expected_times_and_deprecation(slicer_standin, module, tiny_models):
    from MedGANTranslateLib.card import read_card_summary
    from MedGANTranslateSlicer import models

    summary = read_card_summary(tiny_models / "tiny-ct")
    timed = type(summary)(**{**summary.__dict__, "gpu_seconds": 20.0, "cpu_seconds": 185.0, "deprecated": True})
    assert "about 20 s on a GPU, about 3 min 05 s on the CPU" in models.model_details_html(timed)
    assert models.model_label(timed).endswith("(deprecated)")
    assert timed not in models.available_models([str(tiny_models)])


def test_multi_input_model_shows_one_selector_per_input_filled_by_name(slicer_standin, widget, tiny_models):
    slicer = slicer_standin
    matrix = oblique_ijk_to_ras()
    t2 = slicer.util.addVolumeFromArray(head_array(1), ijkToRAS=matrix, name="Case7_T2w")
    t1 = slicer.util.addVolumeFromArray(head_array(2), ijkToRAS=matrix, name="Case7_T1w")
    widget.ui.modelsFolderLineEdit.currentPath = str(tiny_models)
    _choose_model(widget, "tiny-two")
    selectors = [widget.ui.inputSelector, widget.ui.input2Selector, widget.ui.input3Selector, widget.ui.input4Selector]
    assert [selector.visible for selector in selectors] == [True, True, False, False]
    assert [widget.ui.inputLabel.text, widget.ui.input2Label.text] == ["MR T1w:", "MR T2w:"]
    assert widget.ui.inputSelector.currentNode() is t1 and widget.ui.input2Selector.currentNode() is t2
    assert widget.ui.applyButton.enabled
    _choose_model(widget, "tiny-ct")
    assert [selector.visible for selector in selectors] == [True, False, False, False]


def test_translate_needs_the_inputs_and_says_why(slicer_standin, widget, tiny_models):
    widget.ui.modelsFolderLineEdit.currentPath = str(tiny_models)
    _choose_model(widget, "tiny-ct")
    assert not widget.ui.applyButton.enabled and "Select the input volume(s): MR T1w." in widget.ui.applyButton.toolTip
    volume = slicer_standin.util.addVolumeFromArray(head_array(), ijkToRAS=oblique_ijk_to_ras(), name="MR")
    widget.ui.inputSelector.setCurrentNode(volume)
    assert widget.ui.applyButton.enabled
    assert not widget.ui.differenceCheckBox.enabled and "reference" in widget.ui.differenceCheckBox.toolTip
    widget.ui.referenceSelector.setCurrentNode(volume)
    assert widget.ui.differenceCheckBox.enabled


def test_settings_persist_in_the_parameter_node(slicer_standin, widget, tiny_models):
    ui = widget.ui
    ui.modelsFolderLineEdit.currentPath = str(tiny_models)
    _choose_model(widget, "tiny-pet")
    widget.panel._onDevicesDetected([{"id": "cpu", "name": "CPU (2 threads)"}, {"id": "cuda:0", "name": "NVIDIA Test GPU (8.0 GB)"}])
    ui.deviceSelector.currentIndex = ui.deviceSelector.findData("cuda:0")
    ui.roiXSpinBox.value, ui.roiYSpinBox.value, ui.roiZSpinBox.value = 32, 32, 16
    ui.overlapSpinBox.value = 0.5
    ui.sideBySideCheckBox.checked = False
    ui.opacitySliderWidget.value = 0.7
    node = widget.panel._parameterNode.parameterNode
    assert node.GetParameter("modelKey") == "tiny-pet@0.1.0" and node.GetParameter("device") == "cuda:0"
    assert (node.GetParameter("roiX"), node.GetParameter("roiZ"), node.GetParameter("overlap")) == ("32", "16", "0.5")
    assert node.GetParameter("showSideBySide") == "False" and node.GetParameter("overlayOpacity") == "0.7"
    assert ui.opacitySliderWidget.enabled

    widget.exit()
    again = slicer_standin._standin.create_widget("MedGANTranslate")
    try:
        assert again.ui.modelSelector.currentData() == "tiny-pet@0.1.0"
        assert again.ui.deviceSelector.currentData() == "cuda:0"  # kept even before the GPUs are listed again
        assert (again.ui.roiXSpinBox.value, again.ui.roiZSpinBox.value, again.ui.overlapSpinBox.value) == (32, 16, 0.5)
        assert not again.ui.sideBySideCheckBox.checked and again.ui.opacitySliderWidget.value == 0.7
        assert again.ui.modelsFolderLineEdit.currentPath == str(tiny_models)
    finally:
        again.cleanup()


def test_request_uses_model_defaults_unless_all_roi_sizes_are_set(slicer_standin, widget, tiny_models):
    volume = slicer_standin.util.addVolumeFromArray(head_array(), ijkToRAS=oblique_ijk_to_ras(), name="MR")
    widget.ui.modelsFolderLineEdit.currentPath = str(tiny_models)
    _choose_model(widget, "tiny-ct")
    widget.ui.inputSelector.setCurrentNode(volume)
    widget.ui.roiXSpinBox.value = 32
    request = widget.panel._requestFromParameters()
    assert request.roi is None and request.overlap is None and request.device == "auto"
    widget.ui.roiYSpinBox.value = widget.ui.roiZSpinBox.value = 16
    widget.ui.overlapSpinBox.value = 0.25
    request = widget.panel._requestFromParameters()
    assert request.roi == (32, 16, 16) and request.overlap == 0.25 and request.inputs == [volume]
    assert Path(request.model.path).parent.name == "tiny-ct"


def test_mirror_averaging_is_offered_only_for_models_trained_with_mirroring(slicer_standin, widget, tiny_models):
    volume = slicer_standin.util.addVolumeFromArray(head_array(), ijkToRAS=oblique_ijk_to_ras(), name="MR")
    widget.ui.modelsFolderLineEdit.currentPath = str(tiny_models)
    _choose_model(widget, "tiny-ct")
    widget.ui.inputSelector.setCurrentNode(volume)
    assert widget.ui.mirrorCheckBox.enabled and "left-right" in widget.ui.mirrorCheckBox.toolTip
    assert widget.panel._requestFromParameters().tta is False
    widget.ui.mirrorCheckBox.checked = True
    assert widget.panel._requestFromParameters().tta is True
    _choose_model(widget, "tiny-pet")
    assert not widget.ui.mirrorCheckBox.enabled and "not trained with mirrored" in widget.ui.mirrorCheckBox.toolTip
    assert widget.panel._requestFromParameters().tta is False, "a checked box is ignored for a model without mirror axes"


def test_strict_checks_are_a_setting_that_reaches_the_engine(slicer_standin, widget, tiny_models, tmp_path):
    from MedGANTranslateSlicer.job import build_arguments

    volume = slicer_standin.util.addVolumeFromArray(head_array(), ijkToRAS=oblique_ijk_to_ras(), name="MR")
    widget.ui.modelsFolderLineEdit.currentPath = str(tiny_models)
    _choose_model(widget, "tiny-ct")
    widget.ui.inputSelector.setCurrentNode(volume)
    assert widget.panel._requestFromParameters().strict is False and not widget.ui.warningsLabel.visible
    widget.ui.strictCheckBox.checked = True
    request = widget.panel._requestFromParameters()
    assert request.strict is True and widget.panel._parameterNode.parameterNode.GetParameter("strictChecks") == "True"
    assert "--strict" in build_arguments(request, tmp_path, ["in.nrrd"], None)["args"]


def test_bias_correction_is_a_setting_that_reaches_the_engine(slicer_standin, widget, tiny_models, tmp_path):
    from MedGANTranslateSlicer.job import build_arguments

    volume = slicer_standin.util.addVolumeFromArray(head_array(), ijkToRAS=oblique_ijk_to_ras(), name="MR")
    widget.ui.modelsFolderLineEdit.currentPath = str(tiny_models)
    _choose_model(widget, "tiny-ct")
    widget.ui.inputSelector.setCurrentNode(volume)
    assert widget.ui.n4CheckBox.enabled and widget.panel._requestFromParameters().n4 is False
    widget.ui.n4CheckBox.checked = True
    request = widget.panel._requestFromParameters()
    assert request.n4 is True and widget.panel._parameterNode.parameterNode.GetParameter("biasCorrection") == "True"
    assert "--n4" in build_arguments(request, tmp_path, ["in.nrrd"], None)["args"]


def test_device_list_names_each_gpu(widget):
    widget.panel._onDevicesDetected([{"id": "cpu", "name": "CPU"}, {"id": "cuda:0", "name": "NVIDIA A"}, {"id": "cuda:1", "name": "NVIDIA B"}])
    items = [(widget.ui.deviceSelector.itemText(i), widget.ui.deviceSelector.itemData(i)) for i in range(widget.ui.deviceSelector.count)]
    assert items == [("Automatic (GPU when available)", "auto"), ("CPU", "cpu"), ("GPU 0: NVIDIA A", "cuda:0"), ("GPU 1: NVIDIA B", "cuda:1")]
    assert widget.ui.deviceSelector.toolTip == "2 GPU(s) found."


@pytest.mark.slow
def test_devices_are_asked_from_the_engine_in_the_background(slicer_standin, widget):
    """enter() started the query (torch is installed here); the panel stayed usable meanwhile."""
    assert widget.panel._deviceQuery is not None or widget.panel._devicesDetected
    assert slicer_standin._standin.process_events_until(lambda: widget.panel._deviceQuery is None, timeout=120)
    assert widget.panel._devicesDetected
    assert widget.ui.deviceSelector.itemData(1) == "cpu" and widget.ui.detectDevicesButton.enabled


def test_uncertainty_is_offered_for_a_model_that_can_vary_with_its_cost(slicer_standin, widget, tiny_models, tmp_path):
    from MedGANTranslateSlicer.job import build_arguments

    volume = slicer_standin.util.addVolumeFromArray(head_array(), ijkToRAS=oblique_ijk_to_ras(), name="MR")
    widget.ui.modelsFolderLineEdit.currentPath = str(tiny_models)
    _choose_model(widget, "tiny-ct")
    widget.ui.inputSelector.setCurrentNode(volume)
    box = widget.ui.uncertaintyCheckBox
    assert box.enabled and not box.checked and widget.panel._requestFromParameters().uncertainty is False
    assert "4 test-time variants: as is, mirror left-right, 2 window-grid shifts" in box.toolTip
    assert "about 4x the inference time" in box.toolTip and "standard deviation (HU)" in box.toolTip
    widget.ui.mirrorCheckBox.checked = True
    box.checked = True
    request = widget.panel._requestFromParameters()
    assert request.uncertainty is True and request.tta is False, "the variants include the mirror image"
    assert widget.panel._parameterNode.parameterNode.GetParameter("estimateUncertainty") == "True"
    assert not widget.ui.mirrorCheckBox.enabled and "include the mirror image" in widget.ui.mirrorCheckBox.toolTip
    command = build_arguments(request, tmp_path, ["in.nrrd"], None)
    args = command["args"]
    assert args[args.index("--uncertainty") + 1] == str(tmp_path / "uncertainty.nrrd") == command["paths"]["uncertainty"]
    assert "--tta" not in args
    box.checked = False
    assert widget.ui.mirrorCheckBox.enabled and widget.panel._requestFromParameters().tta is True


def test_a_model_with_nothing_to_vary_says_why_it_has_no_uncertainty_map(slicer_standin, widget, tiny_models, tmp_path):
    """A fully convolutional network without downsampling, mirror axes, dropout or ensemble: every variant would
    give the same output."""
    import json
    import shutil

    folder = tmp_path / "more" / "flat-ct"
    shutil.copytree(tiny_models / "tiny-ct", folder)
    card = json.loads((folder / "model.json").read_text())
    card.update(id="flat-ct", title="Flat test model (MR to CT)")
    card["architecture"] = {"type": "monai", "name": "UNet", "params": {"strides": []}}
    card["inference"].update(fully_convolutional=True, divisible_by=1, test_time_mirror=[])
    (folder / "model.json").write_text(json.dumps(card))
    widget.ui.modelsFolderLineEdit.currentPath = str(folder.parent)
    _choose_model(widget, "flat-ct")
    widget.ui.uncertaintyCheckBox.checked = True
    assert not widget.ui.uncertaintyCheckBox.enabled
    assert widget.ui.uncertaintyCheckBox.toolTip.startswith("This model cannot make an uncertainty map.")
    assert "nothing to vary" in widget.ui.uncertaintyCheckBox.toolTip
    assert widget.panel._requestFromParameters().uncertainty is False, "a checked box is ignored for such a model"


def test_log_panel_is_one_click_away(widget):
    widget.ui.showLogButton.click()
    assert widget.ui.logTextEdit.visible
    widget.ui.showLogButton.click()
    assert not widget.ui.logTextEdit.visible


def _slots(widget, signature):
    return len(widget._signal(signature).slots)


@pytest.mark.standin(version="5.8")
def test_entering_again_and_closing_the_scene_add_no_connections_on_slicer_58(slicer_standin, widget):
    """On 5.8 connectGui returns None, so disconnectGui(None) undid nothing and each enter() and scene close
    left one more set of widget connectors behind."""
    counts = (_slots(widget.ui.roiXSpinBox, "valueChanged(int)"), _slots(widget.ui.sideBySideCheckBox, "toggled(bool)"))
    for _ in range(3):
        widget.exit()
        widget.enter()
    slicer_standin.mrmlScene.Clear()
    widget.enter()
    assert (_slots(widget.ui.roiXSpinBox, "valueChanged(int)"), _slots(widget.ui.sideBySideCheckBox, "toggled(bool)")) == counts
    widget.ui.roiXSpinBox.value = 48
    assert widget.panel._parameterNode.roiX == 48


def test_leaving_and_entering_again_removes_no_observer_twice(slicer_standin, widget):
    """exit() removed the parameter node's observer but kept the node, so the next enter()'s setParameterNode
    removed it a second time (slicer.util's VTKObservationMixin warns "does not have observer")."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            widget.exit()
            widget.enter()
        slicer_standin.mrmlScene.Clear()
        widget.enter()
    assert not [str(w.message) for w in caught if "observer" in str(w.message)]
    widget.panel._parameterNode.roiX = 40  # still observed, and connected both ways
    assert widget.ui.roiXSpinBox.value == 40
    widget.ui.roiXSpinBox.value = 48
    assert widget.panel._parameterNode.roiX == 48


def test_the_parameter_node_writing_the_view_box_does_not_switch_layouts(slicer_standin, widget):
    """Loading a scene (or any write into the parameter node) sets the side-by-side box; only a click by the
    user may change the views."""
    slicer = slicer_standin
    from MedGANTranslateSlicer import scene

    matrix = oblique_ijk_to_ras()
    mr = slicer.util.addVolumeFromArray(head_array(), ijkToRAS=matrix, name="MR")
    synthetic = slicer.util.addVolumeFromArray(head_array(1), ijkToRAS=matrix, name="MR · synthetic CT")
    scene.link_results(synthetic, mr)
    layout_manager = slicer.app.layoutManager()
    layout_manager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutOneUpRedSliceView)
    widget.panel._parameterNode.syntheticVolume = synthetic
    widget.panel._parameterNode.showSideBySide = False
    assert not widget.ui.sideBySideCheckBox.checked
    widget.panel._parameterNode.showSideBySide = True
    assert layout_manager.layout == slicer.vtkMRMLLayoutNode.SlicerLayoutOneUpRedSliceView
    widget.ui.sideBySideCheckBox.click()
    assert layout_manager.layout == slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpView
    assert widget.panel._parameterNode.showSideBySide is False


def test_label_maps_and_vector_volumes_are_not_picked_as_the_input(slicer_standin, module, tiny_models):
    slicer = slicer_standin
    slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "case_t1_seg")
    slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "case_t1_rgb")
    t1 = slicer.util.addVolumeFromArray(head_array(), ijkToRAS=oblique_ijk_to_ras(), name="case_t1")
    widget = slicer._standin.create_widget("MedGANTranslate")
    try:
        assert widget.panel._parameterNode.inputVolume is t1
        widget.panel._parameterNode.inputVolume = None
        widget.ui.modelsFolderLineEdit.currentPath = str(tiny_models)
        _choose_model(widget, "tiny-two")  # patterns *t1*, *t2*
        assert widget.panel._parameterNode.inputVolume is t1 and widget.panel._parameterNode.input2Volume is None
    finally:
        widget.cleanup()


def test_a_label_map_is_not_preselected_when_no_name_pattern_picks_the_input(slicer_standin, module):
    """'MRHead' matches no model's pattern (*t1*), so the panel's pre-selection of the scene's first volume
    (initializeParameterNode) decides: GetFirstNodeByClass gave the label map added before it."""
    slicer = slicer_standin
    slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "MRHead-label")
    slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "MRHead-rgb")
    head = slicer.util.addVolumeFromArray(head_array(), ijkToRAS=oblique_ijk_to_ras(), name="MRHead")
    widget = slicer._standin.create_widget("MedGANTranslate")
    try:
        assert widget.panel._parameterNode.inputVolume is head and widget.ui.inputSelector.currentNode() is head
    finally:
        widget.cleanup()


@pytest.mark.standin(version="5.8")
def test_translate_is_disabled_while_packages_install_and_no_wait_cursor_covers_the_question(slicer_standin, widget, tiny_models,
                                                                                           monkeypatch):
    """Slicer 5.8's pip_install processes events for each line pip prints: a second click on Translate then
    started a second install. Install model (enabled whenever its URL and SHA-256 are given) starts the same way,
    through the packages: a click on it meanwhile must not start a second install either."""
    import importlib.metadata

    import qt

    real_version = importlib.metadata.version
    missing = {"monai"}

    def version(name):
        if name in missing:
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    cursors_when_asked = []
    confirm = slicer_standin.util.confirmOkCancelDisplay
    monkeypatch.setattr(slicer_standin.util, "confirmOkCancelDisplay",
                        lambda *a, **k: cursors_when_asked.append(qt.QApplication.overrideCursor()) or confirm(*a, **k))
    state = slicer_standin._standin.state
    during = []

    def installing(requirements):
        during.append((widget.ui.applyButton.enabled, widget.ui.applyButton.toolTip))
        if len(during) == 1:
            widget.ui.applyButton.click()  # the user clicks again while pip runs
            widget.ui.installModelButton.click()  # or another button that starts an engine job
        missing.clear()

    state.on_pip_install = installing
    widget.ui.modelsFolderLineEdit.currentPath = str(tiny_models)
    _choose_model(widget, "tiny-ct")
    widget.ui.inputSelector.setCurrentNode(
        slicer_standin.util.addVolumeFromArray(head_array(), ijkToRAS=oblique_ijk_to_ras(), name="MR"))
    widget.panel._parameterNode.device = "cpu"
    widget.ui.installUrlLineEdit.text = "http://127.0.0.1:9/model.zip"  # refused at once, should a job start
    widget.ui.installSha256LineEdit.text = "0" * 64
    widget.ui.applyButton.click()
    try:
        assert len(state.pip_calls) == 1 and cursors_when_asked == [None]
        assert during == [(False, "Installing the Python packages the translation needs...")]
        assert widget.panel._job is not None and widget.panel._job.running
    finally:
        widget.panel._job.cancel()
        assert slicer_standin._standin.process_events_until(lambda: widget.panel._job.process.finished, 30)
