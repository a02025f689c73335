"""MedGANTranslate: synthetic CT, PET or contrast-enhanced images from a loaded scan.

This file stays thin (module, panel, logic, self-test). The engine (``MedGANTranslateLib``) runs in a
separate ``PythonSlicer`` process; ``MedGANTranslateSlicer`` holds the glue: the process runner, progress
parsing, dependency installation and how results enter the scene.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import unittest
from typing import Annotated, Callable, List, Optional, Type, Union

import numpy as np
import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLTableNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from MedGANTranslateSlicer import dependencies, models, reports, scene
from MedGANTranslateSlicer.engine_messages import warnings_html
from MedGANTranslateSlicer.engine_job import EngineJob
from MedGANTranslateSlicer.importing import ModelImportJob
from MedGANTranslateSlicer.install import ModelInstallJob, ModelStoreJob, install_problems
from MedGANTranslateSlicer.job import DeviceQuery, TranslationJob, TranslationRequest, TranslationResult

RESEARCH_ONLY = "Research use only, not for clinical decisions."


class MedGANTranslate(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MedGAN Translate")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Image Synthesis")]
        self.parent.dependencies = []
        self.parent.contributors = ["MedGANTranslate contributors"]
        self.parent.helpText = _(
            "Makes a synthetic CT, PET or contrast-enhanced image from a loaded scan with a pretrained 3D "
            "pix2pix/CycleGAN generator, then shows it next to the input. Choose a model and the input volume(s), "
            "optionally a real reference of the target modality for a difference map and metrics, and click "
            "Translate. Python packages are installed the first time you click Translate. "
        ) + RESEARCH_ONLY
        self.parent.acknowledgementText = _(
            "Built on 3D Slicer, PyTorch, MONAI and SimpleITK. Model cards credit the authors and training data "
            "of each generator."
        )


@parameterNodeWrapper
class MedGANTranslateParameterNode:
    """Panel settings; saved with the scene. ``modelKey`` is 'id@version'; ROI 0 and overlap 0 mean the
    model's own values."""

    inputVolume: vtkMRMLScalarVolumeNode
    input2Volume: vtkMRMLScalarVolumeNode
    input3Volume: vtkMRMLScalarVolumeNode
    input4Volume: vtkMRMLScalarVolumeNode
    referenceVolume: vtkMRMLScalarVolumeNode
    modelKey: str = ""
    device: str = "auto"
    modelsFolder: str = ""
    roiX: Annotated[int, WithinRange(0, 1024)] = 0
    roiY: Annotated[int, WithinRange(0, 1024)] = 0
    roiZ: Annotated[int, WithinRange(0, 1024)] = 0
    overlap: Annotated[float, WithinRange(0.0, 0.95)] = 0.0
    testTimeMirror: bool = False
    estimateUncertainty: bool = False
    strictChecks: bool = False
    createDifference: bool = True
    showSideBySide: bool = True
    overlayOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    syntheticVolume: vtkMRMLScalarVolumeNode
    differenceVolume: vtkMRMLScalarVolumeNode
    uncertaintyVolume: vtkMRMLScalarVolumeNode
    metricsTable: vtkMRMLTableNode


class MedGANTranslateWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._models: List = []
        self._job: Optional[Union[TranslationJob, ModelStoreJob]] = None  # the one background job at a time
        self._deviceQuery: Optional[DeviceQuery] = None
        self._devicesDetected = False
        self._updatingGui = False
        self._installingPackages = False
        self._lastResult: Optional[TranslationResult] = None  # its QA report is what Save report... writes

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MedGANTranslate.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self._parameterWidgets = {
            w.property("SlicerParameterName"): w for w in slicer.util.findChildren(uiWidget) if w.property("SlicerParameterName")
        }
        self.logic = MedGANTranslateLogic()
        self.inputSelectors = [self.ui.inputSelector, self.ui.input2Selector, self.ui.input3Selector, self.ui.input4Selector]
        self.inputLabels = [self.ui.inputLabel, self.ui.input2Label, self.ui.input3Label, self.ui.input4Label]

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.modelSelector.connect("currentIndexChanged(int)", self.onModelSelected)
        self.ui.deviceSelector.connect("currentIndexChanged(int)", self.onDeviceSelected)
        self.ui.detectDevicesButton.connect("clicked(bool)", self.onDetectDevices)
        self.ui.modelsFolderLineEdit.connect("currentPathChanged(QString)", self.onModelsFolderChanged)
        self.ui.showResultButton.connect("clicked(bool)", self.onShowResult)
        self.ui.saveReportButton.connect("clicked(bool)", self.onSaveReport)
        # clicked, not toggled: the parameter node writes the box too (scene load, scene close), and that must not
        # switch the layout
        self.ui.sideBySideCheckBox.connect("clicked(bool)", self.onViewModeChanged)
        self.ui.opacitySliderWidget.connect("valueChanged(double)", self.onOpacityChanged)
        self.ui.uncertaintyThresholdSliderWidget.connect("valueChanged(double)", self.onUncertaintyThresholdChanged)
        self.ui.showLogButton.connect("toggled(bool)", self.onShowLog)
        self.ui.installModelButton.connect("clicked(bool)", self.onInstallModel)
        for lineEdit in (self.ui.installUrlLineEdit, self.ui.installSha256LineEdit):
            lineEdit.connect("textChanged(QString)", lambda text: self._checkCanApply())
        self.ui.addModelButton.connect("clicked(bool)", self.onAddModel)
        self.ui.importFrameworkComboBox.addItem(_("(read from the weights)"), "")
        for framework in models.IMPORT_FRAMEWORKS[1:]:
            self.ui.importFrameworkComboBox.addItem(framework, framework)
        self.ui.importCheckpointLineEdit.connect("currentPathChanged(QString)", lambda text: self._checkCanApply())
        self.ui.importFrameworkComboBox.connect("currentIndexChanged(int)", lambda index: self._checkCanApply())
        for lineEdit in (self.ui.importIdLineEdit, self.ui.importInputsLineEdit, self.ui.importOutputLineEdit,
                         self.ui.importSpacingLineEdit, self.ui.importNormalizationLineEdit, self.ui.importMoreLineEdit):
            lineEdit.connect("textChanged(QString)", lambda text: self._checkCanApply())

        self.ui.logTextEdit.visible = False
        self.ui.progressBar.visible = False
        self.ui.warningsLabel.visible = False
        self._setDeviceChoices([])
        self.initializeParameterNode()
        self._refreshModels()

    def cleanup(self) -> None:
        self._cancelBackgroundWork()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()
        self._refreshModels()
        if not self._devicesDetected and dependencies.is_satisfied("torch" + dependencies.TORCH_REQUIREMENT):
            self.onDetectDevices()

    def exit(self) -> None:
        self._disconnectParameterNode()

    def onSceneStartClose(self, caller, event) -> None:
        self._cancelBackgroundWork()
        self._lastResult = None
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()
            self._refreshModels()  # the new scene's parameter node has no model yet: pre-select the default

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            candidates = scene.scalar_volumes()
            if candidates:
                self._parameterNode.inputVolume = candidates[0]

    def setParameterNode(self, inputParameterNode: Optional[MedGANTranslateParameterNode]) -> None:
        self._disconnectParameterNode()
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # connectParametersToGui returns its tag on every Slicer; connectGui returns None on 5.8, where
            # disconnectGui(None) then left each enter() and scene close one more set of connectors behind
            self._parameterNodeGuiTag = self._parameterNode.connectParametersToGui(self._parameterWidgets)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._onParameterNodeModified()

    def _disconnectParameterNode(self) -> None:
        if self._parameterNode is not None and self._parameterNodeGuiTag is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    # --- models, inputs, devices ---------------------------------------------------------------------

    def _currentModel(self):
        return models.find_model(self._models, self._parameterNode.modelKey) if self._parameterNode else None

    def _refreshModels(self) -> None:
        folder = self._parameterNode.modelsFolder if self._parameterNode else ""
        self._models = self.logic.availableModels(folder)
        selector = self.ui.modelSelector
        wasBlocked = selector.blockSignals(True)
        selector.clear()
        for summary in self._models:
            selector.addItem(models.model_label(summary), models.model_key(summary))
        selector.blockSignals(wasBlocked)
        if self._parameterNode and self._models and self._currentModel() is None:  # a saved choice stays
            self._parameterNode.modelKey = models.model_key(models.default_model(self._models))
            self._autoAssignInputs()
        self._onParameterNodeModified()

    def onModelSelected(self, index: int) -> None:
        if self._updatingGui or not self._parameterNode or index < 0:
            return
        self._parameterNode.modelKey = self.ui.modelSelector.itemData(index)
        self._autoAssignInputs()

    def _autoAssignInputs(self) -> None:
        """Fills each input selector with the first volume whose name matches the card's ``name_pattern``."""
        summary = self._currentModel()
        if summary is None:
            return
        candidates = [(n.GetID(), n.GetName()) for n in scene.scalar_volumes()]
        chosen = models.auto_assign([spec.name_pattern for spec in summary.inputs], candidates)
        names = ["inputVolume", "input2Volume", "input3Volume", "input4Volume"]
        for name, nodeID in zip(names, chosen):
            if nodeID is not None:
                setattr(self._parameterNode, name, slicer.mrmlScene.GetNodeByID(nodeID))

    def onModelsFolderChanged(self, path: str) -> None:
        if self._parameterNode and not self._updatingGui:
            self._parameterNode.modelsFolder = path
            self._refreshModels()

    def _setDeviceChoices(self, devices: List[dict]) -> None:
        selector = self.ui.deviceSelector
        wasBlocked = selector.blockSignals(True)
        selector.clear()
        selector.addItem(_("Automatic (GPU when available)"), "auto")
        selector.addItem(_("CPU"), "cpu")
        for device in devices:
            if device["id"].startswith("cuda"):
                selector.addItem(f"GPU {device['id'].split(':')[-1]}: {device['name']}", device["id"])
        selector.blockSignals(wasBlocked)
        self._onParameterNodeModified()

    def onDeviceSelected(self, index: int) -> None:
        if self._parameterNode and not self._updatingGui and index >= 0:
            self._parameterNode.device = self.ui.deviceSelector.itemData(index)

    def onDetectDevices(self) -> None:
        if self._deviceQuery is not None:
            return
        if not dependencies.is_satisfied("torch" + dependencies.TORCH_REQUIREMENT):
            self.ui.deviceSelector.toolTip = _("GPUs are listed once PyTorch is installed, on the first Translate.")
            return
        self.ui.detectDevicesButton.enabled = False
        self._deviceQuery = DeviceQuery(self._onDevicesDetected)
        self._deviceQuery.start()

    def _onDevicesDetected(self, devices: Optional[List[dict]]) -> None:
        self._deviceQuery = None
        self.ui.detectDevicesButton.enabled = True
        if devices is None:
            self.ui.deviceSelector.toolTip = _("The engine could not list the devices; see the Python console.")
            return
        self._devicesDetected = True
        self._setDeviceChoices(devices)
        gpus = [d for d in devices if d["id"].startswith("cuda")]
        self.ui.deviceSelector.toolTip = _("{count} GPU(s) found.").format(count=len(gpus)) if gpus else _("No CUDA GPU found; the CPU is used.")

    # --- keeping the panel in step with the parameter node -----------------------------------------

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        if self._parameterNode is None or self._updatingGui:
            return
        self._updatingGui = True
        try:
            self._syncManualWidgets()
        finally:
            self._updatingGui = False
        self._checkCanApply()

    def _syncManualWidgets(self) -> None:
        """Widgets the wrapper cannot bind: combo boxes keyed by item data, the models folder."""
        p = self._parameterNode
        for selector, value in ((self.ui.modelSelector, p.modelKey), (self.ui.deviceSelector, p.device)):
            index = selector.findData(value)
            if index < 0 and selector is self.ui.deviceSelector and value:
                selector.addItem(value, value)
                index = selector.findData(value)
            selector.currentIndex = index
        if self.ui.modelsFolderLineEdit.currentPath != p.modelsFolder:
            self.ui.modelsFolderLineEdit.currentPath = p.modelsFolder
        summary = self._currentModel()
        count = len(summary.inputs) if summary else 1
        labels = models.input_labels(summary) if summary else []
        for i, (label, selector) in enumerate(zip(self.inputLabels, self.inputSelectors)):
            label.visible = selector.visible = i < count
            if i < len(labels):
                label.text = f"{labels[i]}:"
        if summary is None:
            self.ui.modelInfoLabel.text = _(
                "No model is installed. Add a folder holding model folders (each with a model.json) under "
                "Advanced, or install the extension's models."
            )
        else:
            self.ui.modelInfoLabel.text = models.model_details_html(summary)
        self.ui.opacitySliderWidget.enabled = not p.showSideBySide
        slider = self.ui.uncertaintyThresholdSliderWidget
        slider.enabled = p.uncertaintyVolume is not None
        if p.uncertaintyVolume is not None:  # the display node holds the threshold (saved with the scene)
            slider.maximum, slider.value = scene.uncertainty_slider(p.uncertaintyVolume)
        self.ui.metricsTableView.setMRMLTableNode(p.metricsTable)
        self.ui.metricsTableView.visible = p.metricsTable is not None

    def _busy(self) -> bool:
        return self._job is not None and self._job.running

    def _importForm(self) -> models.ImportForm:
        ui = self.ui
        return models.ImportForm(
            ui.importCheckpointLineEdit.currentPath, ui.importFrameworkComboBox.currentData() or "", ui.importIdLineEdit.text,
            ui.importInputsLineEdit.text, ui.importOutputLineEdit.text, ui.importSpacingLineEdit.text,
            ui.importNormalizationLineEdit.text, ui.importMoreLineEdit.text)

    def _checkCanApply(self) -> None:
        importProblems = models.import_problems(self._importForm())
        self.ui.addModelButton.enabled = not importProblems and not self._busy()
        self.ui.addModelButton.toolTip = " ".join(importProblems) or _(
            "Read the network's architecture from the checkpoint, write a model into your model store and run it once.")
        installProblems = install_problems(self.ui.installUrlLineEdit.text, self.ui.installSha256LineEdit.text)
        self.ui.installModelButton.enabled = not installProblems and not self._busy()
        self.ui.installModelButton.toolTip = " ".join(installProblems) or _(
            "Download the zip into your model store, check its SHA-256, unpack it safely, check its card and weights "
            "and load it once; nothing in it is run.")
        self.ui.saveReportButton.enabled = self._lastResult is not None and bool(self._lastResult.report_html) \
            and not self._busy()
        if self._busy():
            self.ui.applyButton.text = _("Cancel")
            self.ui.applyButton.toolTip = self._job.wording.cancel_tooltip
            self.ui.applyButton.enabled = True
            return
        self.ui.applyButton.text = _("Translate")
        p = self._parameterNode
        summary = self._currentModel()
        reasons = []
        if summary is None:
            reasons.append(_("Choose a model."))
        else:
            nodes = [p.inputVolume, p.input2Volume, p.input3Volume, p.input4Volume][:len(summary.inputs)]
            missing = [label for label, node in zip(models.input_labels(summary), nodes) if node is None]
            if missing:
                reasons.append(_("Select the input volume(s): {names}.").format(names=", ".join(missing)))
        differencePossible = summary is not None and (
            p.referenceVolume is not None or summary.difference_without_reference == "minus_input"
        )
        self.ui.differenceCheckBox.enabled = differencePossible
        self.ui.differenceCheckBox.toolTip = "" if differencePossible else _("A difference map needs a reference volume.")
        uncertaintyPossible = summary is not None and summary.uncertainty_passes > 0
        self.ui.uncertaintyCheckBox.enabled = uncertaintyPossible
        self.ui.uncertaintyCheckBox.toolTip = models.uncertainty_tooltip(summary)
        mirrorPossible = summary is not None and bool(summary.test_time_mirror)
        self.ui.mirrorCheckBox.enabled = mirrorPossible and not (uncertaintyPossible and p.estimateUncertainty)
        self.ui.mirrorCheckBox.toolTip = (
            _("Average the result with that of the scan's mirror image ({axes}): more accurate, about twice the "
              "inference time.").format(axes=", ".join(summary.test_time_mirror)) if mirrorPossible
            else _("This model was not trained with mirrored scans, so mirror averaging would make it worse."))
        if mirrorPossible and not self.ui.mirrorCheckBox.enabled:
            self.ui.mirrorCheckBox.toolTip = _("The uncertainty map's variants include the mirror image, and the "
                                               "synthetic image is then their mean.")
        if self._installingPackages:
            reasons.append(_("Installing the Python packages the translation needs..."))
        self.ui.applyButton.enabled = not reasons
        self.ui.applyButton.toolTip = " ".join(reasons) if reasons else _("Make a synthetic image with the selected model.")

    # --- running -----------------------------------------------------------------------------------

    def onApplyButton(self) -> None:
        if self._busy():
            self._job.cancel()
            return
        self._startJob(TranslationJob, lambda: self.logic.startTranslation(
            self._requestFromParameters(), onProgress=self._onProgress, onLog=self._onLog, onFinished=self._onFinished,
            onWarning=self._onWarning))

    def onInstallModel(self) -> None:
        """Installs a model from the URL and SHA-256 given under Advanced, in the background process, with the
        progress bar and the Cancel button of a translation; the model list is refreshed afterwards."""
        self._startJob(ModelInstallJob, lambda: self.logic.startModelInstall(
            self.ui.installUrlLineEdit.text, self.ui.installSha256LineEdit.text, onProgress=self._onProgress,
            onLog=self._onLog, onFinished=self._onFinished))

    def onAddModel(self) -> None:
        """Imports the checkpoint named in the form under Advanced as a model in the user's model store, in the
        background process (the install's progress, Cancel and error dialog); the model list is refreshed after."""
        self._startJob(ModelImportJob, lambda: self.logic.startModelImport(
            self._importForm(), onLog=self._onLog, onFinished=self._onFinished))

    def _startJob(self, kind: Type[EngineJob], start: Callable[[], EngineJob]) -> None:
        """Installs the Python packages the engine needs (asking first), then ``start()``s the one background job."""
        if self._busy() or self._installingPackages:
            return
        # Nothing starts while packages install (Translate is disabled meanwhile): pip's output keeps Slicer's
        # events flowing (logProcessOutput calls processEvents), so a second click would start a second install.
        # No wait cursor here: the install asks for confirmation first.
        self._installingPackages = True
        self._checkCanApply()
        try:
            with slicer.util.tryWithErrorDisplay(kind.wording.could_not_start):
                try:
                    self._setStatus(_("Checking Python packages..."))
                    self.logic.ensureDependencies()
                except dependencies.DependencyDeclined as exc:
                    self._setStatus(str(exc))
                    return
        finally:
            self._installingPackages = False
            self._checkCanApply()
        with slicer.util.tryWithErrorDisplay(kind.wording.could_not_start, waitCursor=True):
            self.ui.logTextEdit.clear()
            self._job = start()
            self._setRunning(True)

    def _requestFromParameters(self) -> TranslationRequest:
        p = self._parameterNode
        summary = self._currentModel()
        roi = (p.roiX, p.roiY, p.roiZ)
        uncertainty = p.estimateUncertainty and summary.uncertainty_passes > 0
        return TranslationRequest(
            model=summary,
            inputs=[p.inputVolume, p.input2Volume, p.input3Volume, p.input4Volume][:len(summary.inputs)],
            reference=p.referenceVolume,
            difference=p.createDifference,
            device=p.device or "auto",
            roi=roi if all(roi) else None,
            overlap=p.overlap if p.overlap > 0 else None,
            models_dir=p.modelsFolder,
            tta=p.testTimeMirror and bool(summary.test_time_mirror) and not uncertainty,
            uncertainty=uncertainty,
            strict=p.strictChecks,
        )

    def _setRunning(self, running: bool) -> None:
        for widget in (self.ui.inputsCollapsibleButton, self.ui.advancedCollapsibleButton, self.ui.deviceSelector,
                       self.ui.detectDevicesButton, self.ui.differenceCheckBox):
            widget.enabled = not running
        if running:
            self.ui.warningsLabel.visible = False
            self.ui.warningsLabel.text = ""
            self.ui.progressBar.visible = True
            self.ui.progressBar.value = 0
            self.ui.progressBar.format = _("Starting the engine...")
            self._setStatus(_("Starting the engine (loading PyTorch takes a few seconds)..."))
        self._checkCanApply()

    def _onProgress(self, tracker) -> None:
        self.ui.progressBar.value = tracker.percent
        self.ui.progressBar.format = tracker.label("%p%")
        self._setStatus(tracker.message)

    def _onLog(self, line: str) -> None:
        self.ui.logTextEdit.appendPlainText(line)

    def _onWarning(self, warning: dict) -> None:
        """A scan check warned, before the network ran: shown in the panel at once, and kept after the run."""
        self.ui.warningsLabel.text = warnings_html(self._job.scan_warnings)
        self.ui.warningsLabel.visible = True

    def _onFinished(self, job: EngineJob) -> None:
        self._setRunning(False)
        if job.cancelled:
            self.ui.progressBar.visible = False
            self._setStatus(job.wording.cancelled)
        elif job.error is not None:
            self.ui.progressBar.visible = False
            self._setStatus(f"{job.error.title}: {job.error}")
            slicer.util.errorDisplay(f"{job.error.title}.\n\n{job.error}", windowTitle=_("MedGANTranslate"), detailedText=job.error.log)
        elif isinstance(job, TranslationJob):
            self._showFinished(job.result)
        else:
            self._showNewModel(job)
        self._checkCanApply()

    def _showNewModel(self, job: ModelStoreJob) -> None:
        """Selects the model an install or import put into the store."""
        self.ui.progressBar.visible = False
        if isinstance(job, ModelInstallJob):
            self.ui.installUrlLineEdit.text = self.ui.installSha256LineEdit.text = ""
        self._refreshModels()
        if self._parameterNode and models.find_model(self._models, job.model_key) is not None:
            self._parameterNode.modelKey = job.model_key
            self._autoAssignInputs()
        self._setStatus(job.summary())

    def _showFinished(self, result: TranslationResult) -> None:
        self._lastResult = result
        p = self._parameterNode
        with slicer.util.NodeModify(p):
            p.syntheticVolume = result.synthetic
            p.differenceVolume = result.difference
            p.uncertaintyVolume = result.uncertainty
            p.metricsTable = result.metrics_table
        self.ui.progressBar.value = 100
        self.ui.progressBar.format = _("Done")
        seconds = result.provenance.get("MedGANTranslate.Seconds")
        done = _("Added '{name}'").format(name=result.synthetic.GetName())
        if seconds not in (None, ""):
            done += _(" in {seconds} s").format(seconds=f"{float(seconds):.1f}")
        done += f" ({result.provenance.get('MedGANTranslate.Device', '')}). {RESEARCH_ONLY}"
        if result.warnings:
            done += " " + " ".join(result.warnings)
        if result.scan_warnings:
            done += " " + _("{count} warning(s) about the scan: see above.").format(count=len(result.scan_warnings))
        self._setStatus(done)
        self.logic.showResults(result.synthetic, p.showSideBySide, p.overlayOpacity)

    def _setStatus(self, text: str) -> None:
        self.ui.statusLabel.text = text
        slicer.util.showStatusMessage(text, 5000)

    def onShowResult(self) -> None:
        p = self._parameterNode
        if p is not None and p.syntheticVolume is not None:
            self.logic.showResults(p.syntheticVolume, p.showSideBySide, p.overlayOpacity)

    def onSaveReport(self) -> None:
        """Saves the QA report the engine wrote during the last translation where the user chooses."""
        result = self._lastResult
        if result is None or not result.report_html:
            return
        chosen = qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), _("Save QA report"),
                                                reports.suggested_file_name(result.synthetic.GetName()),
                                                _("Web page (*.html)"))
        if not chosen:
            return
        try:
            saved = reports.save_report(result.report_html, chosen)
        except reports.OutputError as exc:
            slicer.util.errorDisplay(_("The QA report could not be saved.") + f"\n\n{exc}", windowTitle=_("MedGANTranslate"))
            return
        self._setStatus(_("QA report saved to {path}").format(path=saved))

    def onViewModeChanged(self, sideBySide: bool) -> None:
        p = self._parameterNode
        if p is not None and p.syntheticVolume is not None:
            self.logic.showResults(p.syntheticVolume, sideBySide, self.ui.opacitySliderWidget.value)

    def onOpacityChanged(self, value: float) -> None:
        if self._parameterNode is not None:
            self.logic.setOverlayOpacity(self._parameterNode.syntheticVolume, value)

    def onUncertaintyThresholdChanged(self, value: float) -> None:
        if self._parameterNode is not None and not self._updatingGui:
            self.logic.setUncertaintyThreshold(self._parameterNode.uncertaintyVolume, value)

    def onShowLog(self, show: bool) -> None:
        self.ui.logTextEdit.visible = show

    def _cancelBackgroundWork(self) -> None:
        if self._busy():
            self._job.cancel()
        if self._deviceQuery is not None:
            self._deviceQuery.cancel()
            self._deviceQuery = None


class MedGANTranslateLogic(ScriptedLoadableModuleLogic):
    """Scriptable API: ``translate(request)`` blocks, ``startTranslation`` returns a running job."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return MedGANTranslateParameterNode(super().getParameterNode())

    @staticmethod
    def requirementsFile() -> str:
        return os.path.join(os.path.dirname(os.path.abspath(__file__)), "Resources", "requirements.txt")

    def availableModels(self, modelsFolder: str = "") -> List:
        return models.available_models([modelsFolder] if modelsFolder else [])

    def ensureDependencies(self) -> None:
        """Installs what the engine needs, asking first; raises DependencyDeclined if the user says no."""
        dependencies.ensure_all(self.requirementsFile())

    def startTranslation(self, request: TranslationRequest, onProgress=None, onLog=None, onFinished=None,
                         onWarning=None) -> TranslationJob:
        job = TranslationJob(request, on_progress=onProgress, on_log=onLog, on_finished=onFinished, on_warning=onWarning)
        job.start()
        return job

    def startModelInstall(self, url: str, sha256: str, force: bool = False, onProgress=None, onLog=None,
                          onFinished=None) -> ModelInstallJob:
        """Installs the zipped model folder at ``url`` (checked against ``sha256``) into the user's model store in
        the background; the returned job reports progress and can be cancelled."""
        job = ModelInstallJob(url, sha256, force, on_progress=onProgress, on_log=onLog, on_finished=onFinished)
        job.start()
        return job

    def startModelImport(self, form: models.ImportForm, outDir: Optional[str] = None, onProgress=None, onLog=None,
                         onFinished=None) -> ModelImportJob:
        """Imports a checkpoint (``medgan-translate models import``) into the user's model store, or ``outDir``, in
        the background; the returned job can be cancelled."""
        job = ModelImportJob(form, outDir, on_progress=onProgress, on_log=onLog, on_finished=onFinished)
        job.start()
        return job

    def translate(self, request: TranslationRequest, timeout: Optional[float] = None) -> TranslationResult:
        """Runs to the end; raises EngineError with the engine's message and full log on failure."""
        job = self.startTranslation(request)
        job.wait(timeout)
        if job.error is not None:
            raise job.error
        return job.result

    def showResults(self, syntheticVolume, sideBySide: bool = True, opacity: float = 0.5) -> None:
        volumes = scene.review_volumes(syntheticVolume)
        if volumes[0] is None:
            logging.warning(f"MedGANTranslate: '{syntheticVolume.GetName()}' has no input volume to compare with.")
            return
        if sideBySide:
            scene.show_side_by_side(volumes)
            scene.overlay_uncertainty(syntheticVolume)
        else:
            scene.show_overlay(volumes[0], syntheticVolume, opacity)

    def setOverlayOpacity(self, syntheticVolume, opacity: float) -> None:
        scene.set_overlay_opacity(syntheticVolume, opacity)

    def setUncertaintyThreshold(self, uncertaintyVolume, threshold: float) -> None:
        """Voxels of the uncertainty map below ``threshold`` (output units) are not coloured in the overlay."""
        scene.set_uncertainty_threshold(uncertaintyVolume, threshold)


class MedGANTranslateTest(ScriptedLoadableModuleTest):
    """Runs a real translation with a tiny random-weight model on a small oblique, anisotropic volume."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        try:
            self.test_TranslateTinyModel()
        except unittest.SkipTest as skipped:
            self.delayDisplay(f"Test skipped: {skipped}")

    def test_TranslateTinyModel(self) -> None:
        logic = MedGANTranslateLogic()
        missing = dependencies.missing_packages(logic.requirementsFile())
        if missing:
            # a test must not install packages (ctest would otherwise download torch and MONAI)
            self.skipTest("the engine's Python packages are not installed ({names}); click Translate once to install "
                          "them, then run the test again".format(names=", ".join(missing)))
        folder = tempfile.mkdtemp(prefix="MedGANTranslateTest-")
        try:
            summary = self._tinyModel(folder)
            matrix = self._obliqueMatrix()
            rng = np.random.default_rng(0)
            values = self._phantom(rng)
            inputVolume = slicer.util.addVolumeFromArray(values, ijkToRAS=matrix, name="TinyMR")
            # air at -1000 HU: the engine leaves out metrics against a reference that does not look like a CT
            reference = slicer.util.addVolumeFromArray((values * 2.0 - 1000.0).astype(np.float32), ijkToRAS=matrix, name="TinyCT")
            self.delayDisplay("Translating")
            result = logic.translate(TranslationRequest(summary, [inputVolume], reference=reference, device="cpu"), timeout=600)

            synthetic = result.synthetic
            self.assertEqual(synthetic.GetName(), f"TinyMR · synthetic CT ({summary.id} v{summary.version})")
            np.testing.assert_array_equal(scene.ijk_to_ras(synthetic), scene.ijk_to_ras(inputVolume))
            self.assertEqual(slicer.util.arrayFromVolume(synthetic).shape, values.shape)
            self.assertEqual(synthetic.GetAttribute("MedGANTranslate.Synthetic"), "true")
            self.assertEqual(synthetic.GetAttribute("MedGANTranslate.ModelId"), summary.id)
            self.assertEqual(synthetic.GetAttribute("MedGANTranslate.ModelVersion"), summary.version)
            self.assertEqual(synthetic.GetScalarVolumeDisplayNode().GetWindow(), 400)
            self.assertIsNotNone(result.difference)
            self.assertEqual(result.difference.GetName(), "TinyMR · difference")
            self.assertGreater(result.metrics_table.GetNumberOfRows(), 0)
            logic.showResults(synthetic)
            self.delayDisplay("Test passed")
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    @staticmethod
    def _tinyModel(folder: str):
        """A schema-valid card with random weights, made with the engine's own helpers."""
        import torch
        from MedGANTranslateLib.card import read_card_summary
        from MedGANTranslateLib.model_folder import save_model_folder, tiny_card_data
        from MedGANTranslateLib.networks import build_network

        torch.manual_seed(0)
        data = tiny_card_data("selftest-tiny")
        save_model_folder(folder, data, network=build_network(data["architecture"]))
        return read_card_summary(folder)

    @staticmethod
    def _obliqueMatrix() -> np.ndarray:
        """IJK-to-RAS with rotated axes, unequal spacing and an odd origin, to catch any geometry shortcut."""
        a, b = np.radians(20.0), np.radians(-10.0)
        rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
        matrix = np.eye(4)
        matrix[:3, :3] = rz @ rx @ np.diag([0.9, 1.2, 2.5])
        matrix[:3, 3] = [-12.5, 30.0, 7.25]
        return matrix

    @staticmethod
    def _phantom(rng) -> np.ndarray:
        """An ellipsoid 'head' with noise, in (K, J, I) order as arrayFromVolume uses."""
        k, j, i = np.mgrid[0:10, 0:20, 0:24].astype(np.float32)
        inside = ((i - 11.5) / 10) ** 2 + ((j - 9.5) / 8) ** 2 + ((k - 4.5) / 4.5) ** 2 < 1.0
        values = np.where(inside, 400.0, 0.0) + rng.normal(0, 20, inside.shape)
        return values.astype(np.float32)
