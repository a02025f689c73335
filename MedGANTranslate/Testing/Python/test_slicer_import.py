"""Adding a model from a checkpoint through the panel (Advanced, "Add model…"): the form's command line (the seam
in MedGANTranslateSlicer/models.py), then the engine's ``models import`` in the real background process, the model
list refreshed with the new model selected, and a refusal shown as an error that names what the engine needs."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

TIMEOUT = 180
TESTS = Path(__file__).resolve().parents[3] / "tests"


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """A junyanz 3D ResNet's latest_net_G.pth, as its training code saves it."""
    import torch

    sys.path.insert(0, str(TESTS))
    try:
        from peer_networks import randomise, resnet, save_like_the_peer
    finally:
        sys.path.remove(str(TESTS))
    torch.manual_seed(0)
    name, _ = save_like_the_peer(randomise(resnet("junyanz", 3, 1, 1, ngf=4, n_blocks=1)), "state_dict",
                                 tmp_path / "training")
    return tmp_path / "training" / name


def _form(**fields):
    from MedGANTranslateSlicer.models import ImportForm

    values = dict(checkpoint="/data/latest_net_G.pth", framework="junyanz", model_id="my-resnet", inputs="MR:T1w, MR:T2w",
                  output="ct -1024 3071", spacing="1 1 1.5", normalization="percentile:0.5:99.5",
                  more="--orientation LPS --license 'CC BY 4.0' --version 1.2.0")
    values.update(fields)
    return ImportForm(**values)


def test_the_form_becomes_the_engine_command_line(store):
    from MedGANTranslateSlicer.models import import_arguments, import_folder, import_problems

    form = _form()
    assert import_problems(form) == []
    assert import_folder(form) == store / "my-resnet-1.2.0"
    assert import_arguments(form, "/out") == [
        "models", "import", "/data/latest_net_G.pth", "--out", "/out", "--id", "my-resnet", "--framework", "junyanz",
        "--input", "MR:T1w", "--input", "MR:T2w", "--output-modality", "CT", "--output-range", "-1024", "3071",
        "--spacing", "1", "1", "1.5", "--normalization", "percentile:0.5:99.5", "--orientation", "LPS",
        "--license", "CC BY 4.0", "--version", "1.2.0", "--progress", "json"]
    assert "--framework" not in import_arguments(_form(framework=""), "/out")
    bundle = import_arguments(_form(framework="monai-bundle", spacing="", normalization="", more=""), "/out")
    assert "--spacing" not in bundle and "--normalization" not in bundle


def test_what_the_add_button_needs(store):
    from MedGANTranslateSlicer.models import ImportForm, import_problems

    assert len(import_problems(ImportForm())) == 6
    assert import_problems(_form(model_id="My Model")) == [
        "Give the model an id: 2-64 lower-case letters, digits, '.', '_' or '-'."]
    assert "e.g. CT -1024 3071" in import_problems(_form(output="CT"))[0]
    assert import_problems(_form(framework="monai-bundle", spacing="", normalization="")) == []
    assert "do not parse" in import_problems(_form(more="--title 'unclosed"))[0]


def _fill(widget, checkpoint: Path, **fields) -> None:
    ui = widget.ui
    ui.importCheckpointLineEdit.currentPath = str(checkpoint)
    ui.importIdLineEdit.text = fields.get("model_id", "my-resnet")
    ui.importInputsLineEdit.text = "MR:T1w"
    ui.importOutputLineEdit.text = "CT -1024 3071"
    ui.importSpacingLineEdit.text = "1 1 1"
    ui.importNormalizationLineEdit.text = "percentile:0.5:99.5"
    ui.importMoreLineEdit.text = "--orientation LPS --roi 16 16 16"
    framework = fields.get("framework", "junyanz")
    ui.importFrameworkComboBox.currentIndex = ui.importFrameworkComboBox.findData(framework)


def test_add_model_is_enabled_by_a_complete_form(widget, checkpoint):
    ui = widget.ui
    assert not ui.addModelButton.enabled and "checkpoint" in ui.addModelButton.toolTip
    assert [ui.importFrameworkComboBox.itemData(i) for i in range(ui.importFrameworkComboBox.count)][:4] == [
        "", "junyanz", "davidiommi", "ganslate"]
    _fill(widget, checkpoint)
    assert ui.addModelButton.enabled
    ui.importOutputLineEdit.text = "CT"
    assert not ui.addModelButton.enabled and "CT -1024 3071" in ui.addModelButton.toolTip


@pytest.mark.slow
def test_an_imported_model_appears_selected_in_the_panel(slicer_standin, widget, store, checkpoint):
    slicer = slicer_standin
    _fill(widget, checkpoint)
    widget.ui.addModelButton.click()
    job = widget.panel._job
    assert job is not None and job.running and widget.ui.applyButton.text == "Cancel"
    assert widget.ui.applyButton.toolTip == "Stop the import; nothing is added."
    assert slicer._standin.process_events_until(lambda: not job.running, TIMEOUT)
    assert job.error is None, job.error and job.error.log
    assert job.model["id"] == "my-resnet" and job.model["framework"] == "junyanz"
    assert Path(job.model["folder"]) == (store / "my-resnet-0.1.0").resolve()
    assert job.model["architecture"]["params"]["padding"] == "reflect"
    assert widget.ui.modelSelector.currentData() == "my-resnet@0.1.0"
    status = widget.ui.statusLabel.text
    assert status.startswith("Imported: MR T1w to CT (junyanz ResNet, imported) (my-resnet v0.1.0), a junyanz ResNet.")
    assert "medgan-translate models check" in status
    assert widget.ui.applyButton.text == "Translate" and widget.ui.advancedCollapsibleButton.enabled
    assert slicer._standin.dialogs("error") == []


@pytest.mark.slow
def test_a_checkpoint_the_weights_cannot_decide_is_refused_in_a_dialog(slicer_standin, widget, store, checkpoint):
    slicer = slicer_standin
    _fill(widget, checkpoint, framework="")
    widget.ui.addModelButton.click()
    job = widget.panel._job
    assert slicer._standin.process_events_until(lambda: not job.running, TIMEOUT)
    assert job.error is not None and job.error.kind == "import"
    assert job.error.title == "The checkpoint cannot be imported"
    (shown,) = slicer._standin.dialogs("error")
    assert "missing --framework davidiommi|ganslate|junyanz" in shown["text"]
    assert not store.exists() or [p.name for p in store.iterdir() if not p.name.startswith(".")] == []
