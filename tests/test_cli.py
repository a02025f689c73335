"""The command line in real subprocesses: JSON progress, outputs with provenance, every bad input."""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from volumes import head_volume, write
from MedGANTranslateLib.progress import ProgressEvent, bar_reporter

CLI = [sys.executable, "-m", "MedGANTranslateLib.cli"]
ENV = {**os.environ, "MEDGAN_TRANSLATE_THREADS": "1"}


def run_cli(*args, timeout=180):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, timeout=timeout, env=ENV)


def json_events(stdout: str):
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def model(make_model):
    return make_model()


@pytest.fixture
def mr(tmp_path) -> str:
    return write(head_volume(size=(20, 22, 18), spacing=(1.1, 0.9, 1.4)), tmp_path / "t1.nrrd")


def test_run_writes_synthetic_diff_and_metrics_with_json_progress(model, mr, tmp_path):
    ref = write(sitk.Cast(head_volume(size=(20, 22, 18), spacing=(1.1, 0.9, 1.4)), sitk.sitkInt16) - 1000, tmp_path / "ct.nrrd")
    out, diff, metrics = tmp_path / "sct.nrrd", tmp_path / "diff.nrrd", tmp_path / "m.json"
    before = digest(mr)
    proc = run_cli("run", "--model", model.folder, "-i", mr, "-o", out, "--reference", ref, "--diff", diff,
                   "--metrics", metrics, "--device", "cpu", "--progress", "json")
    assert proc.returncode == 0, proc.stderr
    events = json_events(proc.stdout)
    assert len(events) == len(proc.stdout.splitlines()), "every stdout line is JSON in json mode"
    infer = [e for e in events if e["event"] == "progress" and e["stage"] == "infer"]
    assert infer and infer[-1]["fraction"] == 1.0
    done = events[-1]
    assert done["event"] == "done" and done["outputs"]["synthetic"] == str(out)
    assert done["provenance"]["MedGANTranslate.Synthetic"] == "true"
    image = sitk.ReadImage(str(out))
    assert image.GetMetaData("MedGANTranslate.ModelId") == model.id
    assert image.GetMetaData("MedGANTranslate.WeightsSHA256") == model.sha256
    assert image.GetSize() == (20, 22, 18)
    assert set(json.loads(metrics.read_text())) >= {"mae", "me", "rmse", "psnr", "ssim", "bone_dice"}
    assert sitk.ReadImage(str(diff)).GetSize() == (20, 22, 18)
    assert digest(mr) == before, "the input is never modified"


def test_nifti_output_records_synthetic_provenance(model, mr, tmp_path):
    out = tmp_path / "sct.nii.gz"
    proc = run_cli("run", "-m", model.folder, "-i", mr, "-o", out, "--progress", "none")
    assert proc.returncode == 0, proc.stderr
    assert "SYNTHETIC" in sitk.ReadImage(str(out)).GetMetaData("descrip").upper()


@pytest.fixture
def ct(tmp_path) -> str:
    """A CT-like head (Hounsfield air around it): the scan checks warn when an MR model is given it."""
    head = sitk.Cast(head_volume(size=(20, 22, 18), spacing=(1.1, 0.9, 1.4)), sitk.sitkInt16) - 1000
    return write(head, tmp_path / "ct.nrrd")


def test_scan_warnings_come_before_inference_and_stay_in_the_provenance(model, ct, tmp_path):
    out = tmp_path / "sct.nrrd"
    proc = run_cli("run", "-m", model.folder, "-i", ct, "-o", out, "--progress", "json")
    assert proc.returncode == 0, proc.stderr
    events = json_events(proc.stdout)
    steps = [e.get("stage", e["event"]) for e in events]
    assert steps.index("warning") < steps.index("infer"), "warned before the network runs"
    warning = events[steps.index("warning")]
    assert (warning["code"], warning["input"]) == ("modality_mismatch", "t1") and warning["advice"]
    assert "Hounsfield units" in warning["message"]
    not_run = next(e["message"] for e in events if e["event"] == "log" and "Scan checks not run" in e["message"])
    assert "intensity_distribution (the model card has no training_inputs block" in not_run
    header = sitk.ReadImage(str(out))
    recorded = json.loads(header.GetMetaData("MedGANTranslate.Warnings"))
    assert recorded == [{key: warning[key] for key in ("code", "input", "message", "advice")}]
    assert events[-1]["provenance"]["MedGANTranslate.Warnings"] == header.GetMetaData("MedGANTranslate.Warnings")
    skipped = {c["check"] for c in json.loads(header.GetMetaData("MedGANTranslate.ChecksNotRun"))}
    assert skipped == {"skull_stripped", "field_of_view", "spacing", "intensity_distribution"}


def test_scan_warnings_are_one_line_each_on_stderr_and_in_the_nifti_sidecar(model, ct, tmp_path):
    proc = run_cli("run", "-m", model.folder, "-i", ct, "-o", tmp_path / "sct.nii.gz", "--progress", "none")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("warning: [modality_mismatch] Input 't1' should be MR T1w, but")
    sidecar = json.loads((tmp_path / "sct.json").read_text())
    assert [w["code"] for w in json.loads(sidecar["MedGANTranslate.Warnings"])] == ["modality_mismatch"]


def test_strict_refuses_a_scan_with_warnings_before_the_network_runs_and_writes_nothing(model, ct, mr, tmp_path):
    out = tmp_path / "sct.nrrd"
    proc = run_cli("run", "-m", model.folder, "-i", ct, "-o", out, "--strict", "--progress", "json")
    assert proc.returncode == 2
    events = json_events(proc.stdout)
    assert [e["event"] for e in events if e["event"] in ("warning", "error")] == ["warning", "error"]
    assert "infer" not in [e.get("stage") for e in events]
    error = events[-1]
    assert error["kind"] == "input" and "strict mode" in error["message"]
    assert "[modality_mismatch] Input 't1'" in error["message"] and "Nothing was written" in error["message"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nrrd", "models", "t1.nrrd"]
    passing = run_cli("run", "-m", model.folder, "-i", mr, "-o", out, "--strict", "--progress", "none")
    assert passing.returncode == 0 and out.exists(), "a scan without warnings passes --strict"


def test_bar_progress_for_people_writes_whole_lines_to_a_log(model, mr, tmp_path):
    proc = run_cli("run", "-m", model.folder, "-i", mr, "-o", tmp_path / "o.mha", "--progress", "bar")
    assert proc.returncode == 0
    assert "100.0%" in proc.stderr and "written to" in proc.stdout
    assert "\r" not in proc.stderr, "stderr is a pipe here: no in-place redraws"
    infer = [line for line in proc.stderr.splitlines() if line.startswith("infer ")]
    assert 2 <= len(infer) <= 11 and "100.0%" in infer[-1]


def test_bar_progress_redraws_in_place_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    report = bar_reporter(stream, width=10)
    for done in range(1, 101):
        report(ProgressEvent("infer", done, 100))
    text = stream.getvalue()
    assert text.count("\r") == 100 and text.count("\n") == 1 and text.endswith("100.0%\n")


def _constant(tmp_path):
    return write(sitk.Image(12, 12, 12, sitk.sitkFloat32) + 5.0, tmp_path / "const.nrrd")


def _nan(tmp_path):
    arr = sitk.GetArrayFromImage(head_volume())
    arr[3, 4, 5] = np.nan
    return write(sitk.GetImageFromArray(arr), tmp_path / "nan.nrrd")


def _two_d(tmp_path):
    return write(sitk.Image(16, 16, sitk.sitkFloat32) + 1.0, tmp_path / "flat.nrrd")


def _four_d(tmp_path):
    frame = head_volume(size=(8, 8, 8))
    return write(sitk.JoinSeries([frame, frame]), tmp_path / "four.nrrd")


def _vector(tmp_path):
    return write(sitk.GetImageFromArray(np.random.rand(6, 6, 6, 3).astype(np.float32), isVector=True), tmp_path / "rgb.nrrd")


def _garbage(tmp_path):
    p = tmp_path / "broken.nrrd"
    p.write_bytes(b"NRRD0004\nthis is not a header\n\x00\x01")
    return str(p)


def _missing(tmp_path):
    return str(tmp_path / "nope.nii.gz")


BAD_INPUTS = {
    "missing file": (_missing, "not found|does not exist|no such"),
    "unreadable file": (_garbage, "read"),
    "2D image": (_two_d, "2D|two-dimensional|3D"),
    "4D image": (_four_d, "4D|3D"),
    "multi-component": (_vector, "component"),
    "constant volume": (_constant, "constant"),
    "NaN voxels": (_nan, "NaN"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_fail_clearly_without_output(model, tmp_path, case):
    make, pattern = BAD_INPUTS[case]
    src = make(tmp_path)
    before = digest(src) if Path(src).exists() else None
    out = tmp_path / "out.nrrd"
    proc = run_cli("run", "-m", model.folder, "-i", src, "-o", out, "--progress", "json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error = json_events(proc.stdout)[-1]
    assert error["event"] == "error" and error["kind"] == "input"
    assert re.search(pattern, error["message"], flags=re.IGNORECASE), error["message"]
    assert not out.exists()
    if before:
        assert digest(src) == before


def test_wrong_number_of_inputs(make_model, mr, tmp_path):
    card = make_model(inputs=2, output_modality="PET")
    proc = run_cli("run", "-m", card.folder, "-i", mr, "-o", tmp_path / "o.nrrd", "--progress", "none")
    assert proc.returncode == 2 and "takes 2 input" in proc.stderr


def test_unknown_model_id_lists_known_models(model, mr, tmp_path):
    proc = run_cli("run", "-m", "no-such-model", "--models-dir", model.folder.parent, "-i", mr, "-o", tmp_path / "o.nrrd")
    assert proc.returncode == 2
    assert "Unknown model 'no-such-model'" in proc.stderr and model.id in proc.stderr


def test_card_failing_the_schema_names_file_and_field(model, mr, tmp_path):
    data = json.loads(model.path.read_text())
    data["inference"]["overlap"] = 1.5
    model.path.write_text(json.dumps(data))
    proc = run_cli("run", "-m", model.folder, "-i", mr, "-o", tmp_path / "o.nrrd")
    assert proc.returncode == 2
    assert str(model.path) in proc.stderr and "inference.overlap" in proc.stderr


def test_tampered_and_missing_weights_are_refused(model, mr, tmp_path):
    weights = model.weights_path
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    proc = run_cli("run", "-m", model.folder, "-i", mr, "-o", tmp_path / "o.nrrd")
    assert proc.returncode == 2 and "SHA-256" in proc.stderr
    weights.unlink()
    proc = run_cli("run", "-m", model.folder, "-i", mr, "-o", tmp_path / "o.nrrd")
    assert proc.returncode == 2 and "missing" in proc.stderr
    assert not (tmp_path / "o.nrrd").exists()


def test_output_in_missing_folder_or_equal_to_input(model, mr, tmp_path):
    proc = run_cli("run", "-m", model.folder, "-i", mr, "-o", tmp_path / "nowhere" / "o.nrrd")
    assert proc.returncode == 2 and "nowhere" in proc.stderr
    before = digest(mr)
    proc = run_cli("run", "-m", model.folder, "-i", mr, "-o", mr)
    assert proc.returncode == 2 and "input" in proc.stderr
    assert digest(mr) == before


def test_volume_too_large_for_memory_is_refused_before_reading(model, tmp_path):
    header = tmp_path / "huge.mhd"
    header.write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 6000 6000 6000\nElementSpacing = 0.1 0.1 0.1\n"
        "ElementType = MET_FLOAT\nElementDataFile = huge.raw\n"
    )
    proc = run_cli("run", "-m", model.folder, "-i", header, "-o", tmp_path / "o.nrrd", "--progress", "json")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    error = json_events(proc.stdout)[-1]
    assert error["kind"] == "resources" and "6000 × 6000 × 6000" in error["message"] and "GB" in error["message"]
    assert not (tmp_path / "o.nrrd").exists()


def test_sigterm_cancels_promptly_and_leaves_nothing(make_model, tmp_path):
    card = make_model(roi=(8, 8, 8))
    src = write(head_volume(size=(64, 64, 48)), tmp_path / "big.nrrd")
    outdir = tmp_path / "outs"
    outdir.mkdir()
    proc = subprocess.Popen(CLI + ["run", "-m", str(card.folder), "-i", src, "-o", str(outdir / "o.nrrd"),
                                   "--overlap", "0.5", "--progress", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("stage") == "infer" and event["done"] >= 1:
            break
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rest = proc.stdout.read()
    proc.wait(timeout=60)
    assert proc.returncode == 130
    assert time.monotonic() - sent < 30
    assert json_events(rest)[-1]["kind"] == "cancelled"
    assert list(outdir.iterdir()) == []


def test_models_list_show_and_verify(model):
    listing = run_cli("models", "list", "--json", "--models-dir", model.folder.parent)
    entries = {m["id"]: m for m in json.loads(listing.stdout)}
    assert entries[model.id]["version"] == model.version and entries[model.id]["output_modality"] == "CT"
    show = run_cli("models", "show", model.id, "--models-dir", model.folder.parent)
    assert json.loads(show.stdout)["weights"]["sha256"] == model.sha256
    ok = run_cli("models", "verify", model.id, "--models-dir", model.folder.parent)
    assert ok.returncode == 0 and "OK" in ok.stdout
    model.weights_path.write_bytes(b"tampered")
    bad = run_cli("models", "verify", model.id, "--models-dir", model.folder.parent)
    assert bad.returncode == 2 and "FAILED" in bad.stdout and "SHA-256" in bad.stdout


def test_devices_lists_the_cpu():
    proc = run_cli("devices", "--json")
    devices = json.loads(proc.stdout)
    assert devices[0]["id"] == "cpu" and "CPU" in devices[0]["name"]
