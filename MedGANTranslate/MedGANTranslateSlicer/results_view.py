"""A translation's results for the person reviewing them: the synthetic image beside its input (or over it), and
its QA report saved where they choose.

The layouts themselves are ``scene.py``'s, shared with the web face; what is Slicer-desktop only lives here: the
choice between side by side and overlay that the panel's Show result, view mode and opacity controls make, and
the file dialog of Save report....
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import qt
import slicer
from slicer.i18n import tr as _

from . import reports, scene
from .job import TranslationResult


def show_results(syntheticVolume, sideBySide: bool = True, opacity: float = 0.5) -> None:
    """Side by side: input | synthetic (| difference map or reference) in linked axial views, the uncertainty map
    over the synthetic image. Otherwise the synthetic image over its input at ``opacity``."""
    volumes = scene.review_volumes(syntheticVolume)
    if volumes[0] is None:
        logging.warning(f"MedGANTranslate: '{syntheticVolume.GetName()}' has no input volume to compare with.")
        return
    if sideBySide:
        scene.show_side_by_side(volumes)
        scene.overlay_uncertainty(syntheticVolume)
    else:
        scene.show_overlay(volumes[0], syntheticVolume, opacity)


def save_report(result: TranslationResult) -> Optional[Path]:
    """Asks where to save the QA report the engine wrote during ``result``'s translation and saves it there.
    Returns the file written, or None when the user chose none or it could not be written (said in a dialog)."""
    chosen = qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), _("Save QA report"),
                                            reports.suggested_file_name(result.synthetic.GetName()),
                                            _("Web page (*.html)"))
    if not chosen:
        return None
    try:
        return reports.save_report(result.report_html, chosen)
    except reports.OutputError as exc:
        slicer.util.errorDisplay(_("The QA report could not be saved.") + f"\n\n{exc}", windowTitle=_("MedGANTranslate"))
        return None
