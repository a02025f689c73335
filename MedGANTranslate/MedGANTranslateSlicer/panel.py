"""The panel's controller: its state (parameter node, model list, the one background job, the device query, the
last result) and the handlers that the module's widget connects the ``.ui`` signals to.

The module file only wires signals to these handlers, as Slicer's module template does with its own methods;
keeping the handlers here, over ``panel_view``/``run_view``/``results_view`` for what the widgets show and
``parameters`` for what the settings mean, keeps each piece small enough to read and lets the tests drive the
real panel through its widgets.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Type, Union

import slicer
import vtk
from slicer.i18n import tr as _
from slicer.util import VTKObservationMixin

from . import dependencies, models, panel_view, parameters, results_view, run_view, scene
from .engine_job import EngineJob
from .importing import ModelImportJob
from .install import ModelInstallJob, ModelStoreJob
from .job import DeviceQuery, TranslationJob, TranslationRequest, TranslationResult
from .parameters import MedGANTranslateParameterNode

TORCH = "torch" + dependencies.TORCH_REQUIREMENT


class Panel(VTKObservationMixin):
    def __init__(self, ui, logic, parameterWidgets: dict) -> None:
        """``ui``: the .ui's child widgets by name; ``logic``: the module's logic; ``parameterWidgets``: the widgets
        with a SlicerParameterName, which the parameter node wrapper binds."""
        VTKObservationMixin.__init__(self)
        self.ui = ui
        self.logic = logic
        self._parameterWidgets = parameterWidgets
        self._parameterNode: Optional[MedGANTranslateParameterNode] = None
        self._parameterNodeGuiTag = None
        self._models: List = []
        self._job: Optional[Union[TranslationJob, ModelStoreJob]] = None  # the one background job at a time
        self._deviceQuery: Optional[DeviceQuery] = None
        self._devicesDetected = False
        self._updatingGui = False
        self._installingPackages = False
        self._lastResult: Optional[TranslationResult] = None  # its QA report is what Save report... writes
        panel_view.fill_import_frameworks(ui.importFrameworkComboBox)
        ui.logTextEdit.visible = False
        ui.progressBar.visible = False
        ui.warningsLabel.visible = False
        self._setDeviceChoices([])

    def showScene(self) -> None:
        """Binds the scene's parameter node, then lists the models (pre-selecting the default where none is)."""
        self.initializeParameterNode()
        self._refreshModels()

    def enter(self) -> None:
        self.showScene()
        if not self._devicesDetected and dependencies.is_satisfied(TORCH):
            self.onDetectDevices()

    def onSceneStartClose(self) -> None:
        self._cancelBackgroundWork()
        self._lastResult = None
        self.setParameterNode(None)

    def cleanup(self) -> None:
        self._cancelBackgroundWork()
        self.removeObservers()

    # --- the parameter node ------------------------------------------------------------------------

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            candidates = scene.scalar_volumes()
            if candidates:
                self._parameterNode.inputVolume = candidates[0]

    def setParameterNode(self, inputParameterNode: Optional[MedGANTranslateParameterNode]) -> None:
        self.disconnectParameterNode()
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # connectParametersToGui returns its tag on every Slicer; connectGui returns None on 5.8, where
            # disconnectGui(None) then left each enter() and scene close one more set of connectors behind
            self._parameterNodeGuiTag = self._parameterNode.connectParametersToGui(self._parameterWidgets)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._onParameterNodeModified()

    def disconnectParameterNode(self) -> None:
        if self._parameterNode is not None and self._parameterNodeGuiTag is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        if self._parameterNode is None or self._updatingGui:
            return
        self._updatingGui = True
        try:
            panel_view.show_parameters(self.ui, self._parameterNode, self._currentModel())
        finally:
            self._updatingGui = False
        self._checkCanApply()

    def _checkCanApply(self) -> None:
        canSaveReport = self._lastResult is not None and bool(self._lastResult.report_html)
        panel_view.show_actions(self.ui, self._parameterNode, self._currentModel(), self._job if self._busy() else None,
                                self._installingPackages, canSaveReport)

    def onFormEdited(self, value=None) -> None:
        """A field of the install or import form changed: its button may now be enabled, or no longer."""
        self._checkCanApply()

    # --- models, inputs, devices ---------------------------------------------------------------------

    def _currentModel(self):
        return models.find_model(self._models, self._parameterNode.modelKey) if self._parameterNode else None

    def _refreshModels(self) -> None:
        folder = self._parameterNode.modelsFolder if self._parameterNode else ""
        self._models = self.logic.availableModels(folder)
        panel_view.fill_models(self.ui.modelSelector, self._models)
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
        for name, nodeID in zip(parameters.INPUT_VOLUMES, chosen):
            if nodeID is not None:
                setattr(self._parameterNode, name, slicer.mrmlScene.GetNodeByID(nodeID))

    def onModelsFolderChanged(self, path: str) -> None:
        if self._parameterNode and not self._updatingGui:
            self._parameterNode.modelsFolder = path
            self._refreshModels()

    def _setDeviceChoices(self, devices: List[dict]) -> None:
        panel_view.fill_devices(self.ui.deviceSelector, devices)
        self._onParameterNodeModified()

    def onDeviceSelected(self, index: int) -> None:
        if self._parameterNode and not self._updatingGui and index >= 0:
            self._parameterNode.device = self.ui.deviceSelector.itemData(index)

    def onDetectDevices(self) -> None:
        if self._deviceQuery is not None:
            return
        if not dependencies.is_satisfied(TORCH):
            self.ui.deviceSelector.toolTip = _("GPUs are listed once PyTorch is installed, on the first Translate.")
            return
        self.ui.detectDevicesButton.enabled = False
        self._deviceQuery = DeviceQuery(self._onDevicesDetected)
        self._deviceQuery.start()

    def _onDevicesDetected(self, devices: Optional[List[dict]]) -> None:
        self._deviceQuery = None
        self.ui.detectDevicesButton.enabled = True
        if devices is not None:
            self._devicesDetected = True
            self._setDeviceChoices(devices)
        self.ui.deviceSelector.toolTip = panel_view.devices_tooltip(devices)

    # --- running -----------------------------------------------------------------------------------

    def _busy(self) -> bool:
        return self._job is not None and self._job.running

    def _requestFromParameters(self) -> TranslationRequest:
        return parameters.request_from_parameters(self._parameterNode, self._currentModel())

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
            panel_view.import_form(self.ui), onLog=self._onLog, onFinished=self._onFinished))

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
                    run_view.set_status(self.ui, _("Checking Python packages..."))
                    self.logic.ensureDependencies()
                except dependencies.DependencyDeclined as exc:
                    run_view.set_status(self.ui, str(exc))
                    return
        finally:
            self._installingPackages = False
            self._checkCanApply()
        with slicer.util.tryWithErrorDisplay(kind.wording.could_not_start, waitCursor=True):
            self.ui.logTextEdit.clear()
            self._job = start()
            self._setRunning(True)

    def _setRunning(self, running: bool) -> None:
        run_view.show_running(self.ui, running)
        self._checkCanApply()

    def _onProgress(self, tracker) -> None:
        run_view.show_progress(self.ui, tracker)

    def _onLog(self, line: str) -> None:
        self.ui.logTextEdit.appendPlainText(line)

    def _onWarning(self, warning: dict) -> None:
        """A scan check warned, before the network ran: shown in the panel at once, and kept after the run."""
        run_view.show_scan_warnings(self.ui, self._job.scan_warnings)

    def _onFinished(self, job: EngineJob) -> None:
        self._setRunning(False)
        if job.cancelled:
            run_view.show_stopped(self.ui, job.wording.cancelled)
        elif job.error is not None:
            run_view.show_stopped(self.ui, f"{job.error.title}: {job.error}")
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
        run_view.set_status(self.ui, job.summary())

    def _showFinished(self, result: TranslationResult) -> None:
        self._lastResult = result
        p = self._parameterNode
        parameters.keep_result(p, result)
        run_view.show_translated(self.ui, result)
        self.logic.showResults(result.synthetic, p.showSideBySide, p.overlayOpacity)

    def _cancelBackgroundWork(self) -> None:
        if self._busy():
            self._job.cancel()
        if self._deviceQuery is not None:
            self._deviceQuery.cancel()
            self._deviceQuery = None

    # --- results -----------------------------------------------------------------------------------

    def onShowResult(self) -> None:
        p = self._parameterNode
        if p is not None and p.syntheticVolume is not None:
            self.logic.showResults(p.syntheticVolume, p.showSideBySide, p.overlayOpacity)

    def onSaveReport(self) -> None:
        """Saves the QA report the engine wrote during the last translation where the user chooses."""
        if self._lastResult is None or not self._lastResult.report_html:
            return
        saved = results_view.save_report(self._lastResult)
        if saved is not None:
            run_view.set_status(self.ui, _("QA report saved to {path}").format(path=saved))

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
