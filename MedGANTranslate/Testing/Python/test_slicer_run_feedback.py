"""What the panel tells before and during a run: the status line all through a translation (the engine names a
stage on its first event only; inference counts windows), the expected time read from the card (whole
translation, threads and reference volume; never "0 s"), and the model pre-selected when the panel opens."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from .slicer_test_support import MODULE_DIR, head_array, oblique_ijk_to_ras

sys.path.insert(0, str(MODULE_DIR))
from MedGANTranslateSlicer.engine_messages import ProgressTracker, format_duration  # noqa: E402

sys.path.remove(str(MODULE_DIR))

REPO = Path(__file__).resolve().parents[3]
BUNDLED = REPO / "models"
DEFAULT_ID = "mr-t1-to-ct-pix2pix"
TIMEOUT = 180


def _event(stage, done, total, message=""):
    return {"event": "progress", "stage": stage, "done": done, "total": total,
            "fraction": done / total, "eta_s": None, "elapsed_s": 0.1, "message": message}


def _bundled_key(model_id: str) -> str:
    data = json.loads((BUNDLED / model_id / "model.json").read_text(encoding="utf-8"))
    return f"{model_id}@{data['version']}"


# --- 1. the status line during a run ------------------------------------------------------------------------


def test_status_keeps_each_stage_message_and_counts_the_windows():
    """The engine sends a message on a stage's first event only; the status must not go blank after it."""
    tracker = ProgressTracker()
    statuses = []
    for event in (_event("load", 0, 1, "loading model m v1"), _event("load", 1, 1),
                  _event("preprocess", 0, 1, "resampling, body mask and normalisation"), _event("preprocess", 1, 1),
                  _event("infer", 0, 146, "146 windows on cpu"), _event("infer", 83, 146), _event("infer", 146, 146),
                  _event("postprocess", 0, 1, "inverse intensity mapping"), _event("postprocess", 1, 1),
                  _event("write", 0, 1, "writing out.nrrd"), _event("write", 1, 1)):
        tracker.update(event)
        statuses.append(tracker.message)
    assert statuses == [
        "Loading model: loading model m v1", "Loading model: loading model m v1",
        "Preparing input: resampling, body mask and normalisation",
        "Preparing input: resampling, body mask and normalisation",
        "Translating: 0 of 146 windows on cpu", "Translating: 83 of 146 windows on cpu",
        "Translating: 146 of 146 windows on cpu",
        "Finishing: inverse intensity mapping", "Finishing: inverse intensity mapping",
        "Writing result: writing out.nrrd", "Writing result: writing out.nrrd",
    ]


def test_window_count_follows_a_restart_and_the_planar_message():
    tracker = ProgressTracker()
    tracker.update(_event("infer", 0, 2, "2 windows on cuda:0"))
    tracker.update(_event("infer", 1, 2))
    assert tracker.message == "Translating: 1 of 2 windows on cuda:0"
    tracker.update(_event("infer", 0, 40, "40 windows on cpu"))  # out of GPU memory: again on the CPU
    tracker.update(_event("infer", 7, 40))
    assert tracker.message == "Translating: 7 of 40 windows on cpu"
    tracker.update(_event("infer", 0, 1, "1 windows on cpu"))
    assert tracker.message == "Translating: 0 of 1 window on cpu"
    planar = ProgressTracker()
    planar.update(_event("infer", 0, 30, "30 windows in 3 plane(s) (axial, coronal, sagittal) on cpu"))
    planar.update(_event("infer", 12, 30))
    assert planar.message == "Translating: 12 of 30 windows in 3 plane(s) (axial, coronal, sagittal) on cpu"
    other = ProgressTracker()  # a message of another form is kept beside the count
    other.update(_event("infer", 0, 4, "on the GPU"))
    other.update(_event("infer", 3, 4))
    assert other.message == "Translating: 3 of 4 windows (on the GPU)"


@pytest.mark.slow
def test_status_line_is_never_blank_during_a_real_run(slicer_standin, widget, tiny_models):
    """The real engine in its background process, on windows small enough to give several: after every progress
    event the panel's status line says what runs, and while translating how many windows are done."""
    slicer = slicer_standin
    volume = slicer.util.addVolumeFromArray(head_array(), ijkToRAS=oblique_ijk_to_ras(), name="MRHead")
    widget.ui.modelsFolderLineEdit.currentPath = str(tiny_models)
    selector = widget.ui.modelSelector
    selector.currentIndex = next(i for i in range(selector.count) if selector.itemData(i).startswith("tiny-ct@"))
    widget.panel._parameterNode.device = "cpu"
    widget.ui.inputSelector.setCurrentNode(volume)
    widget.ui.roiXSpinBox.value = widget.ui.roiYSpinBox.value = widget.ui.roiZSpinBox.value = 8  # many windows
    seen = []
    original = widget.panel._onProgress

    def record(tracker):
        original(tracker)
        seen.append((tracker.stage, widget.ui.statusLabel.text))

    widget.panel._onProgress = record
    widget.ui.applyButton.click()
    job = widget.panel._job
    assert slicer._standin.process_events_until(lambda: not job.running, TIMEOUT)
    assert job.error is None, job.error and job.error.log
    assert seen and all(text for _, text in seen), seen
    counts = [re.fullmatch(r"Translating: (\d+) of (\d+) windows on cpu", text) for stage, text in seen if stage == "infer"]
    assert counts and all(counts), [text for stage, text in seen if stage == "infer"]
    total = int(counts[0].group(2))
    done = [int(m.group(1)) for m in counts]
    assert all(int(m.group(2)) == total for m in counts) and done == sorted(done) and (done[0], done[-1]) == (0, total)
    assert any(0 < n < total for n in done), done  # counted while it runs, not only at its start and end


# --- 2. the expected time -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds, text", [(0, "0 s"), (0.01, "under 0.1 s"), (0.36, "0.4 s"), (1.94, "1.9 s"),
                                           (5.46, "5.5 s"), (9.96, "10 s"), (12.4, "12 s")])
def test_a_time_that_is_not_zero_never_reads_0_s(seconds, text):
    assert format_duration(seconds) == text


def test_expected_time_says_what_was_timed_on_what(slicer_standin, module, tiny_models):
    from MedGANTranslateLib.card import read_card_summary
    from MedGANTranslateSlicer import models

    summary = read_card_summary(tiny_models / "tiny-ct")
    timed = type(summary)(**{**summary.__dict__, "cpu_seconds": 0.36, "cpu_threads": 2,
                             "runtime_reference": "a 1 mm phantom head (192 × 224 × 192 voxels)"})
    assert models.expected_time(timed) == ("about 0.4 s on 2 CPU threads for a 1 mm phantom head "
                                           "(192 × 224 × 192 voxels), plus a few seconds to start the engine")
    one = type(summary)(**{**timed.__dict__, "cpu_threads": 1})
    assert "on 1 CPU thread for" in models.expected_time(one)


@pytest.mark.parametrize("model_id", sorted(p.name for p in BUNDLED.iterdir() if (p / "model.json").is_file()))
def test_bundled_cards_time_the_whole_translation(slicer_standin, module, model_id):
    """The cards' cpu_seconds is the whole translation (model load to written output), with its threads and
    reference volume, and the panel shows it so: not the network's inference alone, rounded to 'about 0 s'."""
    from MedGANTranslateLib.card import load_card, read_card_summary
    from MedGANTranslateSlicer import models

    runtime = load_card(BUNDLED / model_id).data["runtime"]  # schema-valid
    assert runtime["reference_volume"].startswith("whole translation (model load, read, preprocess, inference, "
                                                  "postprocess, write")
    assert f", {runtime['cpu_threads']} CPU thread(s)" in runtime["reference_volume"]
    shown = models.expected_time(read_card_summary(BUNDLED / model_id))
    assert re.fullmatch(r"about \d+(\.\d)? s on [12] CPU threads? for a 1 mm phantom head \(192 × 224 × 192 voxels\), "
                        r"plus a few seconds to start the engine", shown), shown


# --- 3. the model pre-selected ------------------------------------------------------------------------------


def test_the_engines_default_model_is_preselected_and_a_saved_choice_kept(slicer_standin, widget):
    from MedGANTranslateLib.registry import DEFAULT_MODEL

    assert DEFAULT_MODEL == DEFAULT_ID
    default, other = _bundled_key(DEFAULT_ID), _bundled_key("mr-t1-to-ct-cyclegan")
    selector = widget.ui.modelSelector
    assert selector.itemData(0) == other, "the list is alphabetical: the default model is not its first entry"
    assert widget.panel._parameterNode.modelKey == default and selector.currentData() == default
    assert "Expected time: about 0 s" not in widget.ui.modelInfoLabel.text
    selector.currentIndex = selector.findData(other)
    widget.exit()
    again = slicer_standin._standin.create_widget("MedGANTranslate")
    try:
        assert again.panel._parameterNode.modelKey == other and again.ui.modelSelector.currentData() == other
    finally:
        again.cleanup()


def test_a_new_scene_preselects_the_default_model_again(slicer_standin, widget):
    selector = widget.ui.modelSelector
    selector.currentIndex = selector.findData(_bundled_key("mr-t1-to-ct-cyclegan"))
    slicer_standin.mrmlScene.Clear()  # the panel stays entered: a fresh parameter node, nothing chosen in it
    assert widget.panel._parameterNode.modelKey == _bundled_key(DEFAULT_ID)
    assert selector.currentData() == _bundled_key(DEFAULT_ID)


def test_without_the_default_model_the_first_listed_is_preselected(slicer_standin, module, tiny_models):
    from MedGANTranslateSlicer import models

    listed = [m for m in models.available_models([str(tiny_models)]) if m.id.startswith("tiny-")]
    assert models.default_model(listed) is listed[0]
    everything = models.available_models([str(tiny_models)])
    assert models.default_model(everything).id == DEFAULT_ID
