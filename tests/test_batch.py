"""``medgan-translate batch``: the cohort read from a CSV, a list or a glob; failures recorded per case while the
others go on (a missing file, a corrupt file, and a CT given as T1w with the scan check's warning in its row); a
rerun that skips what is done and retries the rest; and under torchrun with 2 CPU processes (gloo), a rank killed
with SIGKILL mid-run, after which the rerun completes exactly the missing cases with no duplicate and no partial
file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import SimpleITK as sitk

from MedGANTranslateLib.cohort import read_cohort
from MedGANTranslateLib.errors import InputError
from MedGANTranslateLib.phantom import make_phantom
from torchrun_helpers import kill, rank_processes, torchrun

MODEL = "mr-t1-to-ct-pix2pix"
TIMEOUT_S = 600


def _phantoms(folder: Path, seeds) -> dict:
    """Small phantom heads (2 mm) of the given seeds: {seed: {"t1": path, "ct": path}}."""
    paths = {}
    for seed in seeds:
        phantom = make_phantom(seed=seed, shape=(96, 112, 96), spacing=(2.0, 2.0, 2.0))
        paths[seed] = {}
        for name in ("t1", "ct"):
            paths[seed][name] = folder / f"head{seed}_{name}.nii.gz"
            sitk.WriteImage(getattr(phantom, name), str(paths[seed][name]))
    return paths


def _batch(args, env=None, **kwargs) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "MedGANTranslateLib.cli", "batch", "-m", MODEL, "--progress", "json", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, **kwargs)


def _manifest(out: Path) -> dict:
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    return {row["case"]: row for row in rows}


def _partials(out: Path) -> list:
    return [p for p in out.rglob("*") if p.name.endswith(".partial")]


def test_cohort_from_csv_list_and_glob(tmp_path):
    for name in ("a_t1.nii.gz", "a_t2.nii.gz", "b_t1.nii.gz", "b_t2.nii.gz"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "two.csv").write_text("id,t1,t2,reference\nsubject 1,a_t1.nii.gz,a_t2.nii.gz,\n,b_t1.nii.gz,b_t2.nii.gz,ct.nii.gz\n")
    cases = read_cohort(str(tmp_path / "two.csv"), ["t1", "t2"])
    assert [c.case for c in cases] == ["subject_1", "b_t1"]
    assert cases[0].inputs == [str(tmp_path / "a_t1.nii.gz"), str(tmp_path / "a_t2.nii.gz")] and cases[0].reference is None
    assert cases[1].reference == str(tmp_path / "ct.nii.gz")
    (tmp_path / "numbered.csv").write_text("input1,input2\na_t1.nii.gz,a_t2.nii.gz\n")
    assert read_cohort(str(tmp_path / "numbered.csv"), ["t1", "t2"])[0].inputs[1].endswith("a_t2.nii.gz")
    (tmp_path / "list.txt").write_text("# one case per line\na_t1.nii.gz\n\nsub/a_t1.nii.gz\n")
    assert [c.case for c in read_cohort(str(tmp_path / "list.txt"), ["t1"])] == ["a_t1", "a_t1-2"], "ids must be unique"
    assert [c.case for c in read_cohort(str(tmp_path / "*_t1.nii.gz"), ["t1"])] == ["a_t1", "b_t1"]

    with pytest.raises(InputError, match=r"1 path\(s\) where the model takes 2"):
        read_cohort(str(tmp_path / "list.txt"), ["t1", "t2"])
    (tmp_path / "bad.csv").write_text("id,image\nx,a_t1.nii.gz\n")
    with pytest.raises(InputError, match="name the columns t1"):
        read_cohort(str(tmp_path / "bad.csv"), ["t1", "t2"])
    with pytest.raises(InputError, match="A glob gives one file per case"):
        read_cohort(str(tmp_path / "*_t1.nii.gz"), ["t1", "t2"])
    with pytest.raises(InputError, match="No file matches"):
        read_cohort(str(tmp_path / "*.nrrd"), ["t1"])
    with pytest.raises(InputError, match="no such file"):
        read_cohort(str(tmp_path / "missing.csv"), ["t1"])


@pytest.mark.slow
def test_failures_are_recorded_per_case_and_a_rerun_resumes(tmp_path):
    heads = _phantoms(tmp_path, (21, 22))
    (tmp_path / "corrupt.nii.gz").write_bytes(b"not an image")
    (tmp_path / "cohort.csv").write_text(
        "id,t1,reference\n"
        f"with_reference,{heads[21]['t1']},{heads[21]['ct']}\n"
        f"plain,{heads[22]['t1']},\n"
        f"ct_as_t1,{heads[22]['ct']},\n"
        "missing,nowhere.nii.gz,\n"
        "corrupt,corrupt.nii.gz,\n")
    out = tmp_path / "out"
    first = _batch(["--inputs", str(tmp_path / "cohort.csv"), "--out", str(out)])
    assert first.returncode == 2, first.stderr[-3000:]
    rows = _manifest(out)
    assert {k: r["status"] for k, r in rows.items()} == {
        "with_reference": "done", "plain": "done", "ct_as_t1": "done", "missing": "failed", "corrupt": "failed"}
    assert "does not exist" in rows["missing"]["error"]["message"] and rows["missing"]["error"]["kind"] == "input"
    assert "corrupt.nii.gz" in rows["corrupt"]["error"]["message"]
    assert any(w.startswith("[modality_mismatch]") and "looks like a CT" in w for w in rows["ct_as_t1"]["warnings"])
    assert rows["plain"]["warnings"] == []
    assert rows["with_reference"]["metrics"]["mae"] > 0 and "difference" in rows["with_reference"]["outputs"]
    for case in ("with_reference", "plain", "ct_as_t1"):
        synthetic = sitk.ReadImage(rows[case]["outputs"]["synthetic"])
        assert synthetic.GetSize() == (96, 112, 96)
    done = json.loads([line for line in first.stdout.splitlines() if '"event": "done"' in line][-1])["summary"]
    assert done["counts"] == {"done": 3, "failed": 2} and done["cases_per_hour"] > 0
    assert [f["case"] for f in done["failures"]] == ["missing", "corrupt"]
    recorded = {case: (out / "status" / f"{case}.json").stat().st_mtime_ns for case in ("plain", "with_reference")}

    # the corrupt file is replaced by a real scan, and one input changes: those two are translated again
    sitk.WriteImage(sitk.ReadImage(str(heads[21]["t1"])), str(tmp_path / "corrupt.nii.gz"))
    sitk.WriteImage(sitk.ReadImage(str(heads[21]["t1"])), str(heads[22]["ct"]))
    second = _batch(["--inputs", str(tmp_path / "cohort.csv"), "--out", str(out)])
    assert second.returncode == 2, second.stderr[-3000:]
    rows = _manifest(out)
    assert {k: r["status"] for k, r in rows.items()} == {
        "with_reference": "skipped", "plain": "skipped", "ct_as_t1": "done", "missing": "failed", "corrupt": "done"}
    assert rows["ct_as_t1"]["warnings"] == [], "the changed input was translated again"
    assert recorded == {case: (out / "status" / f"{case}.json").stat().st_mtime_ns for case in recorded}
    assert _partials(out) == []

    # asked with N4 and mirror averaging now: what was made without them is made again, with them, and recorded so
    third = _batch(["--inputs", str(tmp_path / "cohort.csv"), "--out", str(out), "--n4", "--tta"])
    assert third.returncode == 2, third.stderr[-3000:]
    rows = _manifest(out)
    assert {k: r["status"] for k, r in rows.items()} == {
        "with_reference": "done", "plain": "done", "ct_as_t1": "done", "missing": "failed", "corrupt": "done"}
    assert rows["plain"]["options"] == ["n4", "tta"]
    sidecar = Path(rows["plain"]["outputs"]["synthetic"].replace(".nii.gz", ".json"))  # NIfTI keeps its keys there
    keys = json.loads(sidecar.read_text())
    assert keys["MedGANTranslate.BiasCorrection"] == "N4" and keys["MedGANTranslate.TestTimeMirror"] == "left-right"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's process through /proc (Linux)")
def test_torchrun_two_ranks_one_killed_then_the_rerun_completes_the_rest(tmp_path):
    heads = _phantoms(tmp_path, range(31, 37))
    (tmp_path / "cohort.txt").write_text("".join(f"{heads[s]['t1']}\n" for s in heads))
    out = tmp_path / "out"

    def launch():
        return torchrun(["batch", "-m", MODEL, "--inputs", str(tmp_path / "cohort.txt"), "--out", str(out),
                         "--progress", "none"])

    runner = subprocess.Popen(launch(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    rank1_cases = {f"head{s}_t1" for s in (32, 34, 36)}  # every second case: rank 1's shard
    deadline = time.monotonic() + TIMEOUT_S
    killed = None
    while killed is None and time.monotonic() < deadline and runner.poll() is None:
        recorded = {p.stem for p in (out / "status").glob("*.json")} if (out / "status").is_dir() else set()
        if recorded & rank1_cases:
            pid = rank_processes(str(out)).get(1)
            if pid is not None:
                kill([pid])
                killed = pid
        time.sleep(0.05)
    log = runner.communicate(timeout=TIMEOUT_S)[0]
    assert killed is not None, "rank 1 finished before it could be killed:\n" + log[-3000:]
    assert runner.returncode != 0, "torchrun must report the killed rank"
    before = {p.stem: p.stat().st_mtime_ns for p in (out / "status").glob("*.json")}
    assert 1 <= len(before) < 6, before

    rerun = subprocess.run(launch(), capture_output=True, text=True,
                           timeout=TIMEOUT_S, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    rows = _manifest(out)
    assert len(rows) == 6
    assert {case for case, row in rows.items() if row["status"] == "skipped"} == set(before)
    assert {case for case, row in rows.items() if row["status"] == "done"} == set(rows) - set(before)
    assert before == {case: (out / "status" / f"{case}.json").stat().st_mtime_ns for case in before}, \
        "a case done before the kill was translated again"
    for case in rows:
        assert sorted(p.name for p in (out / case).iterdir()) == ["synthetic.json", "synthetic.nii.gz"]
    assert _partials(out) == []
    assert {json.loads((out / "status" / f"{case}.json").read_text())["rank"] for case in rows} == {0, 1}
