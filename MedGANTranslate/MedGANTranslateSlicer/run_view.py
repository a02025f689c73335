"""What the panel shows while a background job runs and when it ends: the locked settings, the progress bar, the
status line, the scan checks' warnings and the one-line summary of a finished translation.

A translation, a model install and a model import share these (one progress bar, one status line, one Cancel
button), so the panel's controller (``panel.py``) says only which job reached which point and this module how
that looks.
"""
from __future__ import annotations

from typing import List

import slicer
from slicer.i18n import tr as _

from .engine_messages import ProgressTracker, warnings_html
from .job import TranslationResult

RESEARCH_ONLY = "Research use only, not for clinical decisions."


def set_status(ui, text: str) -> None:
    """The panel's status line, echoed in Slicer's status bar for five seconds."""
    ui.statusLabel.text = text
    slicer.util.showStatusMessage(text, 5000)


def show_running(ui, running: bool) -> None:
    """Locks the settings a running job depends on; a starting job also gets a fresh progress bar."""
    for widget in (ui.inputsCollapsibleButton, ui.advancedCollapsibleButton, ui.deviceSelector,
                   ui.detectDevicesButton, ui.differenceCheckBox):
        widget.enabled = not running
    if running:
        ui.warningsLabel.visible = False
        ui.warningsLabel.text = ""
        ui.progressBar.visible = True
        ui.progressBar.value = 0
        ui.progressBar.format = _("Starting the engine...")
        set_status(ui, _("Starting the engine (loading PyTorch takes a few seconds)..."))


def show_progress(ui, tracker: ProgressTracker) -> None:
    ui.progressBar.value = tracker.percent
    ui.progressBar.format = tracker.label("%p%")
    set_status(ui, tracker.message)


def show_scan_warnings(ui, warnings: List[dict]) -> None:
    ui.warningsLabel.text = warnings_html(warnings)
    ui.warningsLabel.visible = True


def show_stopped(ui, status: str) -> None:
    """A job that was cancelled or failed: no progress bar, and the status line says what happened."""
    ui.progressBar.visible = False
    set_status(ui, status)


def show_translated(ui, result: TranslationResult) -> None:
    """The finished translation's summary: the new volume, how long it took and where, and its warnings."""
    ui.progressBar.value = 100
    ui.progressBar.format = _("Done")
    seconds = result.provenance.get("MedGANTranslate.Seconds")
    done = _("Added '{name}'").format(name=result.synthetic.GetName())
    if seconds not in (None, ""):
        done += _(" in {seconds} s").format(seconds=f"{float(seconds):.1f}")
    done += f" ({result.provenance.get('MedGANTranslate.Device', '')}). {RESEARCH_ONLY}"
    if result.warnings:
        done += " " + " ".join(result.warnings)
    if result.scan_warnings:
        done += " " + _("{count} warning(s) about the scan: see above.").format(count=len(result.scan_warnings))
    set_status(ui, done)
