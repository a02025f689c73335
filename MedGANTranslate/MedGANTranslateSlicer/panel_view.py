"""What the panel's settings widgets show for the current model, parameters and job: the model and device
lists, the widgets the parameter node wrapper cannot bind, and which buttons and options are enabled and why.

These are functions of the ``.ui`` widgets and plain values, with no state of their own, so the panel's
controller (``panel.py``) only decides *when* the panel is redrawn and this module only *what* it shows; every
disabled control says in its tooltip what would enable it.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

from slicer.i18n import tr as _

from MedGANTranslateLib.card import CardSummary

from . import models, scene
from .install import install_problems
from .parameters import MedGANTranslateParameterNode, input_volumes


def input_rows(ui) -> List[tuple]:
    """(label, selector) of the four input rows; a model with fewer inputs hides the rest."""
    return [(ui.inputLabel, ui.inputSelector), (ui.input2Label, ui.input2Selector),
            (ui.input3Label, ui.input3Selector), (ui.input4Label, ui.input4Selector)]


def fill_import_frameworks(comboBox) -> None:
    comboBox.addItem(_("(read from the weights)"), "")
    for framework in models.IMPORT_FRAMEWORKS[1:]:
        comboBox.addItem(framework, framework)


def import_form(ui) -> models.ImportForm:
    return models.ImportForm(
        ui.importCheckpointLineEdit.currentPath, ui.importFrameworkComboBox.currentData() or "", ui.importIdLineEdit.text,
        ui.importInputsLineEdit.text, ui.importOutputLineEdit.text, ui.importSpacingLineEdit.text,
        ui.importNormalizationLineEdit.text, ui.importMoreLineEdit.text)


def fill_models(selector, summaries: Sequence[CardSummary]) -> None:
    """Lists the models without signalling a choice: the parameter node's key selects one afterwards."""
    wasBlocked = selector.blockSignals(True)
    selector.clear()
    for summary in summaries:
        selector.addItem(models.model_label(summary), models.model_key(summary))
    selector.blockSignals(wasBlocked)


def fill_devices(selector, devices: List[dict]) -> None:
    wasBlocked = selector.blockSignals(True)
    selector.clear()
    selector.addItem(_("Automatic (GPU when available)"), "auto")
    selector.addItem(_("CPU"), "cpu")
    for device in devices:
        if device["id"].startswith("cuda"):
            selector.addItem(f"GPU {device['id'].split(':')[-1]}: {device['name']}", device["id"])
    selector.blockSignals(wasBlocked)


def devices_tooltip(devices: Optional[List[dict]]) -> str:
    if devices is None:
        return _("The engine could not list the devices; see the Python console.")
    gpus = [d for d in devices if d["id"].startswith("cuda")]
    return _("{count} GPU(s) found.").format(count=len(gpus)) if gpus else _("No CUDA GPU found; the CPU is used.")


def show_parameters(ui, p: MedGANTranslateParameterNode, summary: Optional[CardSummary]) -> None:
    """Widgets the wrapper cannot bind: combo boxes keyed by item data, the models folder, the input rows the
    model takes, the model's description and the result's sliders and metrics table."""
    for selector, value in ((ui.modelSelector, p.modelKey), (ui.deviceSelector, p.device)):
        index = selector.findData(value)
        if index < 0 and selector is ui.deviceSelector and value:
            selector.addItem(value, value)
            index = selector.findData(value)
        selector.currentIndex = index
    if ui.modelsFolderLineEdit.currentPath != p.modelsFolder:
        ui.modelsFolderLineEdit.currentPath = p.modelsFolder
    count = len(summary.inputs) if summary else 1
    labels = models.input_labels(summary) if summary else []
    for i, (label, selector) in enumerate(input_rows(ui)):
        label.visible = selector.visible = i < count
        if i < len(labels):
            label.text = f"{labels[i]}:"
    if summary is None:
        ui.modelInfoLabel.text = _(
            "No model is installed. Add a folder holding model folders (each with a model.json) under "
            "Advanced, or install the extension's models."
        )
    else:
        ui.modelInfoLabel.text = models.model_details_html(summary)
    ui.opacitySliderWidget.enabled = not p.showSideBySide
    slider = ui.uncertaintyThresholdSliderWidget
    slider.enabled = p.uncertaintyVolume is not None
    if p.uncertaintyVolume is not None:  # the display node holds the threshold (saved with the scene)
        slider.maximum, slider.value = scene.uncertainty_slider(p.uncertaintyVolume)
    ui.metricsTableView.setMRMLTableNode(p.metricsTable)
    ui.metricsTableView.visible = p.metricsTable is not None


def show_actions(ui, p: MedGANTranslateParameterNode, summary: Optional[CardSummary], job, installingPackages: bool,
                 canSaveReport: bool) -> None:
    """The buttons and option boxes: enabled when they can act, otherwise a tooltip saying why not. ``job`` is the
    running background job, or None; while one runs, Translate is its Cancel button."""
    busy = job is not None
    _show_store_buttons(ui, busy)
    ui.saveReportButton.enabled = canSaveReport and not busy
    if busy:
        ui.applyButton.text = _("Cancel")
        ui.applyButton.toolTip = job.wording.cancel_tooltip
        ui.applyButton.enabled = True
        return
    ui.applyButton.text = _("Translate")
    _show_option_boxes(ui, p, summary)
    reasons = _reasons_not_to_translate(p, summary)
    if installingPackages:
        reasons.append(_("Installing the Python packages the translation needs..."))
    ui.applyButton.enabled = not reasons
    ui.applyButton.toolTip = " ".join(reasons) if reasons else _("Make a synthetic image with the selected model.")


def _show_store_buttons(ui, busy: bool) -> None:
    """Add model and Install model under Advanced, each checking its own form."""
    importProblems = models.import_problems(import_form(ui))
    ui.addModelButton.enabled = not importProblems and not busy
    ui.addModelButton.toolTip = " ".join(importProblems) or _(
        "Read the network's architecture from the checkpoint, write a model into your model store and run it once.")
    installProblems = install_problems(ui.installUrlLineEdit.text, ui.installSha256LineEdit.text)
    ui.installModelButton.enabled = not installProblems and not busy
    ui.installModelButton.toolTip = " ".join(installProblems) or _(
        "Download the zip into your model store, check its SHA-256, unpack it safely, check its card and weights "
        "and load it once; nothing in it is run.")


def _show_option_boxes(ui, p: MedGANTranslateParameterNode, summary: Optional[CardSummary]) -> None:
    """The difference, uncertainty, mirror and N4 boxes, each enabled only where the model and inputs allow it."""
    differencePossible = summary is not None and (
        p.referenceVolume is not None or summary.difference_without_reference == "minus_input"
    )
    ui.differenceCheckBox.enabled = differencePossible
    ui.differenceCheckBox.toolTip = "" if differencePossible else _("A difference map needs a reference volume.")
    uncertaintyPossible = summary is not None and summary.uncertainty_passes > 0
    ui.uncertaintyCheckBox.enabled = uncertaintyPossible
    ui.uncertaintyCheckBox.toolTip = models.uncertainty_tooltip(summary)
    mirrorPossible = summary is not None and bool(summary.test_time_mirror)
    ui.mirrorCheckBox.enabled = mirrorPossible and not (uncertaintyPossible and p.estimateUncertainty)
    ui.mirrorCheckBox.toolTip = (
        _("Average the result with that of the scan's mirror image ({axes}): more accurate, about twice the "
          "inference time.").format(axes=", ".join(summary.test_time_mirror)) if mirrorPossible
        else _("This model was not trained with mirrored scans, so mirror averaging would make it worse."))
    if mirrorPossible and not ui.mirrorCheckBox.enabled:
        ui.mirrorCheckBox.toolTip = _("The uncertainty map's variants include the mirror image, and the "
                                      "synthetic image is then their mean.")
    ui.n4CheckBox.enabled = summary is not None and models.takes_mr(summary)


def _reasons_not_to_translate(p: MedGANTranslateParameterNode, summary: Optional[CardSummary]) -> List[str]:
    if summary is None:
        return [_("Choose a model.")]
    missing = [label for label, node in zip(models.input_labels(summary), input_volumes(p, summary)) if node is None]
    return [_("Select the input volume(s): {names}.").format(names=", ".join(missing))] if missing else []
