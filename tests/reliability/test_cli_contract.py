"""The command line's contract, issue 20 ("never a silent wrong output"): metrics only where they mean something
(a reference that does not overlap the body, or is not of the model's output modality, gets a warning and no
metrics, with the reason in the ``done`` event and the metrics file); a second input that misses the first is
refused or warned about by name; a broken card on the model search path is skipped with a warning instead of
breaking every model; in ``--progress json`` mode every run ends with exactly one ``done`` or ``error`` object,
usage errors included; ``--threads`` must be a positive whole number. Exit codes: 2 for the user's mistakes,
1 for internal errors, never a traceback for bad input.

The engine runs in this process (``cli.main``) on a 4 mm phantom with the bundled models, so a translation
takes a few seconds and the failures can be provoked with monkeypatching.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import SimpleITK as sitk

from MedGANTranslateLib import cli
from MedGANTranslateLib.phantom import make_phantom, save_phantom

from cli_in_process import process_settings_kept, run

CT_MODEL = "mr-t1-to-ct-pix2pix"
PET_MODEL = "mr-t1t2-to-pet-pix2pix"
TERMINAL = ("done", "error")


@pytest.fixture(autouse=True, scope="module")
def engine_in_this_process():
    with process_settings_kept():
        yield


def run_json(*args) -> Tuple[int, List[Dict], str]:
    """A run in ``--progress json`` mode: exit code, every stdout line parsed as JSON (each must be an object),
    stderr. Exactly one object is ``done`` or ``error``, and it is the last."""
    code, stdout, stderr = run(*args, "--progress", "json")
    events = [json.loads(line) for line in stdout.splitlines()]
    assert all(isinstance(e, dict) and "event" in e for e in events), stdout
    assert [e["event"] for e in events if e["event"] in TERMINAL] == [events[-1]["event"]], stdout
    return code, events, stderr


def warnings_of(events: List[Dict]) -> Dict[str, Dict]:
    return {e["code"]: e for e in events if e["event"] == "warning"}


def shifted(image: sitk.Image, mm: Tuple[float, float, float]) -> sitk.Image:
    """``image`` moved by ``mm`` (x, y, z; physical): the same voxels somewhere else."""
    moved = sitk.Image(image)
    moved.SetOrigin(tuple(o + d for o, d in zip(image.GetOrigin(), mm)))
    return moved


@pytest.fixture(scope="module")
def head(tmp_path_factory) -> Dict[str, Path]:
    """A 4 mm phantom head (t1, t2, ct) and the same scans moved: 1000 mm away, 80 mm down, 176 mm aside (onto
    the air beside the head), and the CT with only its upper 28 of 48 slices."""
    folder = tmp_path_factory.mktemp("head")
    phantom = make_phantom(seed=1, shape=(48, 56, 48), spacing=(4.0, 4.0, 4.0))
    paths = {name: Path(p) for name, p in save_phantom(phantom, folder).items()}
    variants = {
        "ct_far": shifted(phantom.ct, (1000.0, 0.0, 0.0)),
        "ct_upper": phantom.ct[:, :, 20:],
        "t2_far": shifted(phantom.t2, (1000.0, 0.0, 0.0)),
        "t2_low": shifted(phantom.t2, (0.0, 0.0, -80.0)),
        "t2_aside": shifted(phantom.t2, (176.0, 0.0, 0.0)),
    }
    for name, image in variants.items():
        paths[name] = folder / f"{name}.nii.gz"
        sitk.WriteImage(image, str(paths[name]))
    return paths


def broken_card(folder: Path, version) -> Path:
    """A copy of the default model's card under another id with ``version`` as given; returns its file."""
    data = json.loads((Path(cli.__file__).resolve().parents[2] / "models" / CT_MODEL / "model.json").read_text())
    data.update(id="broken-model", version=version)
    card = folder / "broken" / "model.json"
    card.parent.mkdir(parents=True)
    card.write_text(json.dumps(data))
    return card


@pytest.fixture(scope="module")
def good_run(head, tmp_path_factory):
    """The default model with a true CT reference, with a card of version 7 on the model search path: events,
    stderr, the folder."""
    folder = tmp_path_factory.mktemp("good")
    broken_card(folder / "models", 7)
    code, events, stderr = run_json("run", "-m", CT_MODEL, "-i", head["t1"], "-o", folder / "sct.nii.gz",
                                    "--reference", head["ct"], "--metrics", folder / "m.json",
                                    "--models-dir", folder / "models", "--threads", 2)
    assert code == 0, (events[-1], stderr)
    return events, stderr, folder


# ------------------------------------------------------------------------------------------- metrics


def test_a_reference_outside_the_body_gives_no_metrics_and_says_why(head, tmp_path):
    out, diff, metrics = tmp_path / "sct.nii.gz", tmp_path / "diff.nii.gz", tmp_path / "m.json"
    code, events, _ = run_json("run", "-m", CT_MODEL, "-i", head["t1"], "-o", out, "--reference", head["ct_far"],
                               "--diff", diff, "--metrics", metrics, "--threads", 2)
    assert code == 0 and out.exists()
    warning = warnings_of(events)["reference_overlap"]
    assert warning["input"] == "reference" and "holds 0 % of the body in input 't1'" in warning["message"]
    assert "left out" in warning["message"] and warning["advice"]
    done = events[-1]
    assert done["metrics"] is None and done["metrics_omitted"] == warning["message"]
    assert done["outputs"]["difference"] is None and not diff.exists()
    assert json.loads(metrics.read_text())["metrics_omitted"] == warning["message"]
    assert "mae" not in json.loads(metrics.read_text())
    recorded = json.loads(done["provenance"]["MedGANTranslate.Warnings"])
    assert "reference_overlap" in [w["code"] for w in recorded]


@pytest.mark.parametrize("scan", ["t1", "t2"])
def test_a_reference_of_another_modality_gives_no_metrics(head, tmp_path, scan):
    code, stdout, stderr = run("run", "-m", CT_MODEL, "-i", head["t1"], "-o", tmp_path / "sct.nii.gz",
                               "--reference", head[scan], "--progress", "none", "--threads", 2)
    assert code == 0
    assert "warning: [reference_modality] The reference should be CT, as the model's output is, but it does not " \
           "look like a CT" in stderr
    assert "Metrics and the difference map against it are left out." in stdout
    assert "mae" not in stdout


def test_a_reference_covering_part_of_the_body_gives_metrics_of_that_part(head, tmp_path, good_run):
    code, events, _ = run_json("run", "-m", CT_MODEL, "-i", head["t1"], "-o", tmp_path / "sct.nii.gz",
                               "--reference", head["ct_upper"], "--threads", 2)
    assert code == 0
    warning = warnings_of(events)["reference_overlap"]
    assert "metrics and the difference map cover only that part" in warning["message"]
    metrics, whole = events[-1]["metrics"], good_run[0][-1]["metrics"]
    assert events[-1]["metrics_omitted"] is None
    assert 0.5 * whole["mask_volume_ml"] < metrics["mask_volume_ml"] < 0.95 * whole["mask_volume_ml"]
    assert metrics["mae"] < 2 * whole["mae"], "no padding compared with the head"


# ------------------------------------------------------------------------------------ a second input


def test_a_second_input_that_misses_the_first_is_refused_by_name(head, tmp_path):
    out = tmp_path / "pet.nii.gz"
    code, events, stderr = run_json("run", "-m", PET_MODEL, "-i", head["t1"], "-i", head["t2_far"], "-o", out,
                                    "--threads", 2)
    assert code == 2 and not out.exists() and "Traceback" not in stderr
    error = events[-1]
    assert error["kind"] == "input"
    assert "Input 't2' (MR T2w) lies entirely outside input 't1'" in error["message"]
    assert "1000 mm apart" in error["message"] and "register" in error["message"]


def test_a_normalisation_error_names_the_input_it_is_about(head, tmp_path):
    code, events, _ = run_json("run", "-m", PET_MODEL, "-i", head["t1"], "-i", head["t2_aside"], "-o",
                               tmp_path / "pet.nii.gz", "--threads", 2)
    assert code == 2
    message = events[-1]["message"]
    assert message.startswith("Input 't2' (MR T2w): ") and "percentiles are equal" in message
    assert "of input 't1''s field of view" in message


def test_a_second_input_covering_part_of_the_body_is_warned_about_by_name(head, tmp_path):
    code, events, _ = run_json("run", "-m", PET_MODEL, "-i", head["t1"], "-i", head["t2_low"], "-o",
                               tmp_path / "pet.nii.gz", "--threads", 2)
    assert code == 0
    warning = warnings_of(events)["input_overlap"]
    assert warning["input"] == "t2" and "Input 't2' covers only" in warning["message"]
    recorded = json.loads(events[-1]["provenance"]["MedGANTranslate.Warnings"])
    assert "input_overlap" in [w["code"] for w in recorded]


# ------------------------------------------------------------------------------------------- cards


@pytest.mark.parametrize("version", [7, "1.x-beta"])
def test_models_list_skips_a_broken_card_with_a_warning(tmp_path, version):
    card = broken_card(tmp_path, version)
    code, stdout, stderr = run("models", "list", "--models-dir", tmp_path)
    assert code == 0 and CT_MODEL in stdout and "broken-model" not in stdout
    assert f"warning: Model card {card.resolve()}: field 'version'" in stderr and "skipped" in stderr
    code, stdout, _ = run("models", "list", "--json", "--models-dir", tmp_path)
    assert code == 0 and CT_MODEL in [m["id"] for m in json.loads(stdout)]
    code, stdout, _ = run("models", "verify", "--models-dir", tmp_path)
    assert code == 2 and f"OK      {CT_MODEL}" in stdout and f"FAILED  broken-model: Model card {card}" in stdout


@pytest.mark.parametrize("how", ["id", "path"])
def test_asking_for_a_broken_card_exits_2_with_its_error(head, tmp_path, how):
    card = broken_card(tmp_path, "1.x-beta")
    model = "broken-model" if how == "id" else card.parent
    code, events, stderr = run_json("run", "-m", model, "-i", head["t1"], "-o", tmp_path / "sct.nii.gz",
                                    "--models-dir", tmp_path)
    assert code == 2 and "Traceback" not in stderr
    assert events[-1]["kind"] == "card"
    assert str(card.resolve()) in events[-1]["message"] and "'version'" in events[-1]["message"]


def test_a_broken_card_on_the_search_path_leaves_the_other_models_working(good_run):
    events, _, folder = good_run
    skipped = [e["message"] for e in events if e["event"] == "log" and e["level"] == "warning"]
    assert any(str((folder / "models" / "broken" / "model.json").resolve()) in m for m in skipped), skipped
    assert events[-1]["metrics"]["mae"] < 400 and events[-1]["metrics_omitted"] is None
    assert warnings_of(events) == {}, "a true CT reference of the same head passes the reference checks"


# ------------------------------------------------------------------------------------ the JSON contract


def test_every_stage_reports_its_end(good_run):
    events = good_run[0]
    progress = [e for e in events if e["event"] == "progress"]
    stages = list(dict.fromkeys(e["stage"] for e in progress))
    assert stages == ["load", "read", "preprocess", "infer", "postprocess", "write"]
    for stage in stages:
        last = [e for e in progress if e["stage"] == stage][-1]
        assert last["done"] == last["total"] and last["fraction"] == 1.0, last


@pytest.mark.parametrize("args, words", [
    (["run", "-m"], ["--model", "expected one argument"]),
    (["run", "-m", CT_MODEL, "-i", "t1.nii.gz", "-o", "o.nii.gz", "--frobnicate"], ["unrecognized", "--frobnicate"]),
    (["run", "-m", CT_MODEL, "-i", "missing.nii.gz", "-o", "o.nii.gz", "--threads", "0"],
     ["--threads", "positive whole number", "'0'"]),
    (["run", "-m", CT_MODEL, "-i", "missing.nii.gz", "-o", "o.nii.gz", "--threads", "-3"],
     ["--threads", "positive whole number", "'-3'"]),
    (["demo", "--seed", "three"], ["--seed", "invalid int value"]),
])
def test_usage_errors_in_json_mode_end_with_one_error_object(args, words):
    code, events, stderr = run_json(*args)
    assert code == 2 and "Traceback" not in stderr
    assert len(events) == 1 and events[0]["event"] == "error" and events[0]["kind"] == "usage"
    for word in words + ["--help"]:
        assert word in events[0]["message"], events[0]["message"]


def test_threads_must_be_positive_for_people_too():
    code, stdout, stderr = run("run", "-m", CT_MODEL, "-i", "missing.nii.gz", "-o", "o.nii.gz", "--threads", "0")
    assert code == 2 and stdout == ""
    assert "usage: medgan-translate run" in stderr and "--threads: must be a positive whole number" in stderr


def test_demo_and_train_in_json_mode_print_only_json_and_end_with_done(monkeypatch, tmp_path):
    import MedGANTranslateLib.demo as demo
    import MedGANTranslateLib.training as training

    class Card:
        id, version, folder = "m", "1.0.0", tmp_path / "m"

    monkeypatch.setattr(demo, "run_demo", lambda *a, **k: {"synthetic": tmp_path / "s.nii.gz"})
    monkeypatch.setattr(training, "load_config", lambda path: {})
    monkeypatch.setattr(training, "train", lambda *a, **k: Card())
    code, events, _ = run_json("demo", "--out", tmp_path)
    assert code == 0 and events[-1]["outputs"]["synthetic"] == str(tmp_path / "s.nii.gz")
    code, events, _ = run_json("train", "--config", tmp_path / "c.yaml", "--out", tmp_path)
    assert code == 0 and events[-1]["model"] == {"id": "m", "version": "1.0.0", "folder": str(tmp_path / "m")}


def test_an_internal_error_in_json_mode_ends_with_one_error_object(monkeypatch, head, tmp_path):
    import MedGANTranslateLib.file_translation as file_translation

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(file_translation, "translate_files", broken)
    code, events, stderr = run_json("run", "-m", CT_MODEL, "-i", head["t1"], "-o", tmp_path / "o.nii.gz")
    assert code == 1 and events[-1]["kind"] == "internal" and "a bug" in events[-1]["message"]
    assert "Traceback" in stderr, "a bug keeps its traceback for the log"
