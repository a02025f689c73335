"""MedGANTranslate: synthetic CT, PET or contrast-enhanced images from a loaded scan.

This file stays thin: the module, the widget's wiring of the panel's signals to its handlers, the logic's
scriptable API and the self-test case. The engine (``MedGANTranslateLib``) runs in a separate ``PythonSlicer``
process; ``MedGANTranslateSlicer`` holds the rest: the panel's controller (``panel``) and what it shows
(``panel_view``, ``run_view``, ``results_view``), its settings (``parameters``), the process runner, progress
parsing, dependency installation, how results enter the scene and the self-test's body (``self_test``).
"""
from __future__ import annotations

import os
import unittest
from typing import List, Optional

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from MedGANTranslateSlicer import dependencies, models, results_view, scene, self_test
from MedGANTranslateSlicer.importing import ModelImportJob
from MedGANTranslateSlicer.install import ModelInstallJob
from MedGANTranslateSlicer.job import TranslationJob, TranslationRequest, TranslationResult
from MedGANTranslateSlicer.panel import Panel
from MedGANTranslateSlicer.parameters import MedGANTranslateParameterNode
from MedGANTranslateSlicer.run_view import RESEARCH_ONLY


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


class MedGANTranslateWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Loads the panel's .ui and connects its signals to the handlers of ``MedGANTranslateSlicer.panel.Panel``."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.panel: Optional[Panel] = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MedGANTranslate.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MedGANTranslateLogic()
        parameterWidgets = {
            w.property("SlicerParameterName"): w for w in slicer.util.findChildren(uiWidget) if w.property("SlicerParameterName")
        }
        self.panel = panel = Panel(ui, self.logic, parameterWidgets)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        ui.applyButton.connect("clicked(bool)", panel.onApplyButton)
        ui.modelSelector.connect("currentIndexChanged(int)", panel.onModelSelected)
        ui.deviceSelector.connect("currentIndexChanged(int)", panel.onDeviceSelected)
        ui.detectDevicesButton.connect("clicked(bool)", panel.onDetectDevices)
        ui.modelsFolderLineEdit.connect("currentPathChanged(QString)", panel.onModelsFolderChanged)
        ui.showResultButton.connect("clicked(bool)", panel.onShowResult)
        ui.saveReportButton.connect("clicked(bool)", panel.onSaveReport)
        # clicked, not toggled: the parameter node writes the box too (scene load, scene close), and that must not
        # switch the layout
        ui.sideBySideCheckBox.connect("clicked(bool)", panel.onViewModeChanged)
        ui.opacitySliderWidget.connect("valueChanged(double)", panel.onOpacityChanged)
        ui.uncertaintyThresholdSliderWidget.connect("valueChanged(double)", panel.onUncertaintyThresholdChanged)
        ui.showLogButton.connect("toggled(bool)", panel.onShowLog)
        ui.installModelButton.connect("clicked(bool)", panel.onInstallModel)
        ui.addModelButton.connect("clicked(bool)", panel.onAddModel)
        for lineEdit in (ui.installUrlLineEdit, ui.installSha256LineEdit, ui.importIdLineEdit, ui.importInputsLineEdit,
                         ui.importOutputLineEdit, ui.importSpacingLineEdit, ui.importNormalizationLineEdit,
                         ui.importMoreLineEdit):
            lineEdit.connect("textChanged(QString)", panel.onFormEdited)
        ui.importCheckpointLineEdit.connect("currentPathChanged(QString)", panel.onFormEdited)
        ui.importFrameworkComboBox.connect("currentIndexChanged(int)", panel.onFormEdited)
        panel.showScene()

    def cleanup(self) -> None:
        if self.panel is not None:
            self.panel.cleanup()
        self.removeObservers()

    def enter(self) -> None:
        self.panel.enter()

    def exit(self) -> None:
        self.panel.disconnectParameterNode()

    def onSceneStartClose(self, caller, event) -> None:
        self.panel.onSceneStartClose()

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.panel.showScene()  # the new scene's parameter node has no model yet: pre-select the default


class MedGANTranslateLogic(ScriptedLoadableModuleLogic):
    """Scriptable API: ``translate(request)`` blocks, ``startTranslation`` returns a running job."""

    def getParameterNode(self) -> MedGANTranslateParameterNode:
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
        results_view.show_results(syntheticVolume, sideBySide, opacity)

    def setOverlayOpacity(self, syntheticVolume, opacity: float) -> None:
        scene.set_overlay_opacity(syntheticVolume, opacity)

    def setUncertaintyThreshold(self, uncertaintyVolume, threshold: float) -> None:
        """Voxels of the uncertainty map below ``threshold`` (output units) are not coloured in the overlay."""
        scene.set_uncertainty_threshold(uncertaintyVolume, threshold)


class MedGANTranslateTest(ScriptedLoadableModuleTest):
    """Runs a real translation with a tiny random-weight model on a small oblique, anisotropic volume
    (``MedGANTranslateSlicer.self_test``)."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        try:
            self.test_TranslateTinyModel()
        except unittest.SkipTest as skipped:
            self.delayDisplay(f"Test skipped: {skipped}")

    def test_TranslateTinyModel(self) -> None:
        self_test.translate_tiny_model(self, MedGANTranslateLogic())
