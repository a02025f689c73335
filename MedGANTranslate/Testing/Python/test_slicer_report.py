"""Save report... in the panel: the engine's QA report of the last translation (written by the engine during the
run, with the nodes' names), saved where the user chooses, atomically; the button only when there is one."""
from __future__ import annotations

import re

import pytest

from .slicer_test_support import head_array, oblique_ijk_to_ras

TIMEOUT = 180


def _translate(slicer, widget, tiny_models, reference=None):
    widget.ui.modelsFolderLineEdit.currentPath = str(tiny_models)
    selector = widget.ui.modelSelector
    selector.currentIndex = next(i for i in range(selector.count) if selector.itemData(i).startswith("tiny-ct@"))
    widget.panel._parameterNode.device = "cpu"
    widget.ui.referenceSelector.setCurrentNode(reference)
    enabled_while_running = []
    original = widget.panel._onProgress

    def record(tracker):
        enabled_while_running.append(widget.ui.saveReportButton.enabled)
        original(tracker)

    widget.panel._onProgress = record
    widget.ui.applyButton.click()
    assert slicer._standin.process_events_until(lambda: not widget.panel._job.running, TIMEOUT)
    widget.panel._onProgress = original
    assert widget.panel._job.error is None, widget.panel._job.error and widget.panel._job.error.log
    assert enabled_while_running and not any(enabled_while_running), "no saving while a translation runs"
    return widget.panel._job


@pytest.mark.slow
def test_save_report_writes_the_engines_report_of_the_last_translation(slicer_standin, widget, tiny_models, tmp_path):
    slicer = slicer_standin
    matrix = oblique_ijk_to_ras()
    values = head_array()
    input_node = slicer.util.addVolumeFromArray(values, ijkToRAS=matrix, name="-MR <head> & co")
    reference = slicer.util.addVolumeFromArray(values * 2 - 1000, ijkToRAS=matrix, name="CT/Head")
    widget.ui.inputSelector.setCurrentNode(input_node)
    assert not widget.ui.saveReportButton.enabled, "nothing to save before a translation"

    job = _translate(slicer, widget, tiny_models, reference)
    args = job.process.args
    assert "--report" in args and "--report-input-name=-MR <head> & co" in args
    assert "--report-reference-name=CT/Head" in args
    html = job.result.report_html
    assert html.startswith("<!DOCTYPE html>") and "SYNTHETIC CT" in html
    assert "-MR &lt;head&gt; &amp; co" in html and "CT/Head" in html and "input0.nrrd" not in html
    assert "Metrics against the reference" in html
    assert widget.ui.saveReportButton.enabled

    # the user cancels the dialog: nothing is written
    slicer._standin.state.save_file_answer = ""
    widget.ui.saveReportButton.click()
    (asked,) = slicer._standin.dialogs("saveFile")
    assert asked["dir"] == "-MR _head_ _ co _ synthetic CT (tiny-ct v0.1.0) QA report.html" and "*.html" in asked["filter"]
    assert list(tmp_path.glob("*.html")) == []

    # a path without .html gets it; the file is exactly the engine's report
    slicer._standin.state.save_file_answer = str(tmp_path / "qa")
    widget.ui.saveReportButton.click()
    saved = tmp_path / "qa.html"
    assert saved.read_text(encoding="utf-8") == html
    assert widget.ui.statusLabel.text == f"QA report saved to {saved}"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no staging left behind"

    # a folder that does not exist: an error dialog, nothing written
    slicer._standin.state.save_file_answer = str(tmp_path / "missing" / "qa.html")
    widget.ui.saveReportButton.click()
    (error,) = slicer._standin.dialogs("error")
    assert error["text"].startswith("The QA report could not be saved.") and not (tmp_path / "missing").exists()

    # the next translation's report replaces it (no reference now: no metrics); a scene close forgets it
    job = _translate(slicer, widget, tiny_models)
    assert "Metrics against the reference" not in job.result.report_html
    slicer._standin.state.save_file_answer = str(tmp_path / "second.html")
    widget.ui.saveReportButton.click()
    assert (tmp_path / "second.html").read_text(encoding="utf-8") == job.result.report_html
    slicer.mrmlScene.Clear(0)
    assert not widget.ui.saveReportButton.enabled


def test_report_file_names(slicer_standin, module, tmp_path):
    from MedGANTranslateLib.report import REPORT_SUFFIX
    from MedGANTranslateSlicer import reports

    assert reports.REPORT_SUFFIX == REPORT_SUFFIX, "the panel's copy (it cannot import the engine's report module)"
    assert reports.suggested_file_name("MRHead · synthetic CT (tiny-ct v0.1.0)") == \
        "MRHead _ synthetic CT (tiny-ct v0.1.0) QA report.html"
    assert reports.suggested_file_name("../..") == "MedGANTranslate QA report.html"
    assert reports.report_path(str(tmp_path / "a.HTML")) == tmp_path / "a.HTML"
    assert reports.report_path(str(tmp_path / "a.htm")) == tmp_path / "a.htm.html"
    # an existing file is replaced whole, through a staging file that does not stay behind
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "r.html"
    target.write_text("old")
    assert reports.save_report("<!DOCTYPE html>new", str(target)) == target
    assert target.read_text() == "<!DOCTYPE html>new" and [p.name for p in target.parent.iterdir()] == ["r.html"]
    assert not re.search(r"[^A-Za-z0-9._() -]", reports.suggested_file_name('a/b\\c:d*e?f"g<h>i|j'))
