"""Outputs, the writing side of issue 20 ("never a silent wrong output").

Every output is read back and compared with what was meant before it replaces anything; a job's outputs (synthetic
image, difference map, metrics, sidecars) replace the files at their paths together, only once all of them are
written and verified; a failure or a cancel before that leaves every path as it was; no file the job did not create
is touched; the exit code says what happened (0 done and in place, 2 a path or a write that failed, 130
cancelled) and the message says why and what to do. Nothing is left behind in the output folder, the input's
folder or the temp folder.

Full disks are real where a 400 kB tmpfs can be mounted (root) and simulated otherwise; the file size limit is
real (RLIMIT_FSIZE, as ``ulimit -f`` sets it). Signals go to the command line in subprocesses, several at once
(see :func:`cli_runs`); the in-process tests replay one real translation (:func:`replayed`), so that they cost
the writing, not the network.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import pytest
import SimpleITK as sitk

from MedGANTranslateLib.errors import Cancelled, OutputError
from MedGANTranslateLib.file_translation import translate_files
from MedGANTranslateLib.image_writing import write_image
from MedGANTranslateLib.phantom import make_phantom, save_phantom
from MedGANTranslateLib.pipeline import Translator
from MedGANTranslateLib.progress import CancelToken
from MedGANTranslateLib.run_options import RunOptions

MODEL = "mr-t1-to-ct-pix2pix"
CLI = [sys.executable, "-m", "MedGANTranslateLib.cli"]
ENV = {**os.environ, "MEDGAN_TRANSLATE_THREADS": "1"}
STAGES = ("load", "read", "preprocess", "infer", "postprocess", "write")
#: What an earlier run left at the paths a job writes: (file name, bytes). Any failure or cancel keeps them.
EARLIER = {name: f"earlier {name}\n".encode() for name in ("sct.nii.gz", "sct.json", "diff.nii.gz", "diff.json", "metrics.json")}
FILE_LIMIT = 100 * 1024  # bytes: below the phantom's 258 kB of int16 voxels


# ------------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Dict[str, Path]:
    """The tiny phantom head (48 x 56 x 48 voxels of 4 mm) and its CT, in a folder of their own."""
    return save_phantom(make_phantom(shape=(48, 56, 48), spacing=(4, 4, 4)), tmp_path_factory.mktemp("inputs"))


def with_earlier_outputs(folder: Path) -> Path:
    """``folder`` holding an earlier run's outputs (see :data:`EARLIER`)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in EARLIER.items():
        (folder / name).write_bytes(content)
    return folder


def assert_earlier_outputs_kept(folder: Path) -> None:
    for name, content in EARLIER.items():
        assert (folder / name).read_bytes() == content, f"{name} was changed or removed"


def staging_leftovers(*folders: Path) -> List[str]:
    """Staging files and folders (``.<name>.<random>.partial``, ``.tmp-*``) in ``folders`` and the temp folder."""
    found = []
    for folder in list(folders) + [Path(tempfile.gettempdir())]:
        found += [str(p) for p in Path(folder).iterdir() if ".partial" in p.name or p.name.startswith(".tmp-")]
    return found


def job_paths(folder: Path) -> Dict[str, str]:
    """The outputs of a job with a reference, in ``folder``."""
    return {"output": str(folder / "sct.nii.gz"), "diff": str(folder / "diff.nii.gz"),
            "metrics_path": str(folder / "metrics.json")}


@pytest.fixture(scope="module")
def translated(phantom, tmp_path_factory):
    """One real translation of the phantom with its reference (a few seconds)."""
    out = tmp_path_factory.mktemp("first")
    return translate_files(MODEL, [str(phantom["t1"])], reference=str(phantom["ct"]), options=RunOptions(threads=1),
                           **job_paths(out))


@pytest.fixture
def replayed(monkeypatch, translated):
    """``translate_files`` with the network's part replaced by :func:`translated`'s result: a job then loads the
    model, reads the inputs and writes, and the test is about the writing."""

    def translate(self, images, reference=None, progress=None, cancel=None):
        return dataclasses.replace(translated, outputs={})

    monkeypatch.setattr(Translator, "translate", translate)


def run_job(phantom, folder: Path, **kwargs):
    """The phantom's job with its reference, outputs in ``folder``."""
    return translate_files(MODEL, [str(phantom["t1"])], reference=str(phantom["ct"]), options=RunOptions(threads=1),
                           **{**job_paths(folder), **kwargs})


def read_back(path: Path) -> sitk.Image:
    image = sitk.ReadImage(str(path))
    assert image.GetSize() == (48, 56, 48)
    return image


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """RLIMIT_FSIZE (what ``ulimit -f`` sets) lowered in this process for the block."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Callable[[int], Path]]:
    """``mount(kilobytes)``: a folder on a tmpfs of that size; skipped where mounting needs privileges we lack
    (the simulated full disk below covers those machines)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = []

    def mount(kilobytes: int) -> Path:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kilobytes}k", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if proc.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}); the simulated full disk covers it")
        mounted.append(folder)
        return folder

    yield mount
    for item in mounted:
        subprocess.run(["umount", str(item)], check=True)


def small_image(size=(48, 56, 48), pixel=np.int16, seed=0) -> sitk.Image:
    values = np.random.default_rng(seed).integers(-1000, 2000, size[::-1]).astype(pixel)
    image = sitk.GetImageFromArray(values)
    image.SetSpacing((4.0, 4.0, 4.0))
    return image


METADATA = {"MedGANTranslate.Synthetic": "true", "MedGANTranslate.Modality": "CT", "MedGANTranslate.Unit": "HU",
            "MedGANTranslate.ModelId": MODEL, "MedGANTranslate.ModelVersion": "2.0.0"}


# ------------------------------------------------------------------------------ failures before the moves


def test_cancel_during_the_write_stage_replaces_nothing(phantom, replayed, tmp_path):
    out = with_earlier_outputs(tmp_path / "out")
    token = CancelToken()

    def progress(event):
        if event.stage == "write":
            token.cancel()  # what SIGTERM's handler does

    with pytest.raises(Cancelled) as err:
        run_job(phantom, out, progress=progress, cancel=token)
    assert err.value.exit_code == 130
    assert_earlier_outputs_kept(out)
    assert sorted(p.name for p in out.iterdir()) == sorted(EARLIER)
    assert staging_leftovers(out, phantom["t1"].parent) == []


def test_a_full_disk_on_the_difference_map_replaces_nothing_simulated(phantom, replayed, tmp_path, monkeypatch):
    """ENOSPC raised part-way through the difference map, after the synthetic image was written."""
    out = with_earlier_outputs(tmp_path / "out")
    real_write = sitk.WriteImage

    def write_then_fill_the_disk(image, name, *args, **kwargs):
        real_write(image, name, *args, **kwargs)
        if Path(str(name)).name.startswith("diff"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(sitk, "WriteImage", write_then_fill_the_disk)
    with pytest.raises(OutputError) as err:
        run_job(phantom, out)
    message = str(err.value)
    assert err.value.exit_code == 2
    assert str(out / "diff.nii.gz") in message and "disk is full" in message and "None" not in message
    assert_earlier_outputs_kept(out)
    assert staging_leftovers(out, phantom["t1"].parent) == []


def test_a_full_disk_on_the_difference_map_replaces_nothing(phantom, replayed, small_disk):
    """A real 400 kB disk: the synthetic image fits (its 258 kB of raw voxels before compression), the
    difference map (516 kB of float32) does not."""
    out = with_earlier_outputs(small_disk(400))
    with pytest.raises(OutputError) as err:
        run_job(phantom, out)
    message = str(err.value)
    assert str(out / "diff.nii.gz") in message and "disk is full" in message and "None" not in message
    assert_earlier_outputs_kept(out)
    assert staging_leftovers(out, phantom["t1"].parent) == []


@pytest.mark.parametrize("name", ["sct.nii.gz", "sct.nrrd", "dicom"])
def test_a_full_disk_says_so(small_disk, name):
    """ITK's writers say 'DICOM does not support this component type' or print to stderr and go on."""
    disk = small_disk(100)
    with pytest.raises(OutputError) as err:
        write_image(small_image(), disk / name, METADATA)
    message = str(err.value)
    assert str(disk / name) in message and "disk is full" in message and "component type" not in message
    assert list(disk.iterdir()) == []


@pytest.mark.parametrize("name", ["sct.nii.gz", "sct.nii", "sct.nrrd", "sct.mha", "sct.mhd", "dicom"])
def test_a_write_cut_short_by_the_file_size_limit_is_refused(tmp_path, name):
    """The NIfTI writer reports a short write only on stderr: the file read back holds zeros where the voxels
    were cut off. Slices of a DICOM series are small: the limit is set below one slice there."""
    target = tmp_path / name
    if name != "dicom":
        target.write_bytes(b"earlier\n")
    with file_size_limit(2000 if name == "dicom" else FILE_LIMIT), pytest.raises(OutputError) as err:
        write_image(small_image(), target, METADATA)
    message = str(err.value)
    assert str(target) in message and "file size limit" in message and "ulimit -f" in message
    if name != "dicom":
        assert target.read_bytes() == b"earlier\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if name == "dicom" else [name])


def test_a_failed_move_puts_every_earlier_output_back(phantom, replayed, tmp_path, monkeypatch):
    """The last rename fails (another program made a folder at that path, say): the outputs already moved
    are taken back and the earlier files restored."""
    out = with_earlier_outputs(tmp_path / "out")
    real_replace = os.replace

    def replace(source, target):
        if Path(target) == out / "sct.nii.gz" and ".partial" in str(source):
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OutputError, match="sct.nii.gz"):
        run_job(phantom, out)
    assert_earlier_outputs_kept(out)
    assert staging_leftovers(out) == []


# ----------------------------------------------------------------------------------------- collisions


def bids_input(phantom, folder: Path) -> Path:
    """The phantom's T1w as a BIDS file with its own sidecar."""
    folder.mkdir()
    source = folder / "sub-01_T1w.nii.gz"
    source.write_bytes(phantom["t1"].read_bytes())
    (folder / "sub-01_T1w.json").write_text('{"RepetitionTime": 2.3}\n')
    return source


COLLISIONS = {
    # name: (outputs given, the two paths the message must name)
    "output sidecar is the input's sidecar": ({"output": "sub-01_T1w.nii"}, ("sub-01_T1w.json", "sub-01_T1w.nii.gz")),
    "metrics is the output's sidecar": ({"output": "x.nii.gz", "metrics_path": "x.json"}, ("x.json", "x.nii.gz")),
    "metrics is the input's sidecar": ({"output": "sct.nrrd", "metrics_path": "sub-01_T1w.json"},
                                       ("sub-01_T1w.json", "sub-01_T1w.nii.gz")),
    "two outputs share a sidecar": ({"output": "a.nii", "diff": "a.nii.gz"}, ("a.nii", "a.nii.gz")),
    "two outputs at one path": ({"output": "a.nrrd", "diff": "a.nrrd"}, ("a.nrrd", "a.nrrd")),
    "an output inside a DICOM output": ({"output": "dcm" + os.sep, "diff": os.path.join("dcm", "d.nrrd")},
                                        ("dcm", os.path.join("dcm", "d.nrrd"))),
}


@pytest.mark.parametrize("case", sorted(COLLISIONS))
def test_paths_that_collide_are_refused_naming_both(phantom, replayed, tmp_path, case):
    source = bids_input(phantom, tmp_path / "bids")
    given, named = COLLISIONS[case]
    folder = source.parent
    (folder / "dcm").mkdir()
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    paths = {"output": None, "diff": None, "metrics_path": None, **{k: str(folder / v) for k, v in given.items()}}
    with pytest.raises(OutputError) as err:
        translate_files(MODEL, [str(source)], reference=str(phantom["ct"]), options=RunOptions(threads=1), **paths)
    assert err.value.exit_code == 2
    for name in named:
        assert str(folder / name) in str(err.value)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    assert list((folder / "dcm").iterdir()) == []


# ------------------------------------------------------------------------------- what the files say


def test_files_get_the_modes_the_umask_gives(phantom, replayed, tmp_path):
    previous = os.umask(0o027)
    try:
        run_job(phantom, tmp_path, output=str(tmp_path / "dcm"))
    finally:
        os.umask(previous)
    assert (tmp_path / "dcm").stat().st_mode & 0o777 == 0o750
    for item in [tmp_path / "metrics.json", tmp_path / "diff.nii.gz", tmp_path / "diff.json"] + sorted((tmp_path / "dcm").iterdir()):
        assert item.stat().st_mode & 0o777 == 0o640, item


def test_the_difference_map_says_it_is_a_difference(phantom, replayed, tmp_path):
    run_job(phantom, tmp_path, diff=str(tmp_path / "diff.nii.gz"))
    descrip = sitk.ReadImage(str(tmp_path / "diff.nii.gz")).GetMetaData("descrip")
    assert descrip.startswith(f"DIFFERENCE synthetic-reference HU model={MODEL}"), descrip
    assert sitk.ReadImage(str(tmp_path / "sct.nii.gz")).GetMetaData("descrip").startswith(f"SYNTHETIC CT model={MODEL}")
    (tmp_path / "again").mkdir()
    run_job(phantom, tmp_path / "again", output=str(tmp_path / "again" / "sct.nrrd"), diff=str(tmp_path / "ddcm"))
    first = sorted((tmp_path / "ddcm").iterdir())[0]
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(first))
    reader.ReadImageInformation()
    assert reader.GetMetaData("0008|103e").startswith(f"DIFFERENCE synthetic-reference HU {MODEL}")


def test_concurrent_writers_in_one_process_leave_one_whole_output(tmp_path):
    """Eight writers of images of different sizes to one path: the image found there has the size its sidecar
    says, every round."""
    target = tmp_path / "sct.nii.gz"
    for round_ in range(20):
        def write(k: int) -> None:
            write_image(small_image(size=(40 + k, 20, 10), seed=k), target, {**METADATA, "Writer": str(k)})

        threads = [threading.Thread(target=write, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        writer = int(json.loads((tmp_path / "sct.json").read_text())["Writer"])
        assert sitk.ReadImage(str(target)).GetSize() == (40 + writer, 20, 10), f"round {round_}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sct.json", "sct.nii.gz"]


# ------------------------------------------------------------------------------ the command line


@dataclasses.dataclass
class Run:
    """One command line run: exit code and JSON events."""

    returncode: int
    events: List[Dict]
    stderr: str

    def last(self, kind: str) -> Optional[Dict]:
        found = [e for e in self.events if e.get("event") == kind]
        return found[-1] if found else None


def start(args: Sequence[str], limit: Optional[int] = None) -> subprocess.Popen:
    preexec = None if limit is None else (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    return subprocess.Popen(CLI + ["run", "--model", MODEL, "--progress", "json"] + [str(a) for a in args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, preexec_fn=preexec)


def finish(proc: subprocess.Popen, events: List[Dict], on_event: Callable[[Dict], None] = lambda e: None) -> Run:
    """Reads the events to the end (calling ``on_event`` with each), waits for the exit."""
    for line in proc.stdout:
        if line.startswith("{"):
            events.append(json.loads(line))
            on_event(events[-1])
    stderr = proc.stderr.read()
    return Run(proc.wait(timeout=120), events, stderr)


def job_args(phantom, folder: Path) -> List[str]:
    return ["-i", phantom["t1"], "--reference", phantom["ct"], "-o", folder / "sct.nii.gz",
            "--diff", folder / "diff.nii.gz", "--metrics", folder / "metrics.json"]


def sigterm_at(phantom, folder: Path, stage: str) -> Run:
    """A job that gets SIGTERM as soon as ``stage`` starts (for 'done': as soon as the done event is read, then
    again 20, 50, 100, 200 and 400 ms later while it runs)."""
    proc = start(job_args(phantom, with_earlier_outputs(folder)))
    sent = []

    def on_event(event: Dict) -> None:
        if not sent and (event.get("stage") == stage or event.get("event") == stage):
            sent.append(time.monotonic())
            proc.send_signal(signal.SIGTERM)
            if stage == "done":
                threading.Thread(target=again, daemon=True).start()

    def again() -> None:
        for delay in (0.02, 0.05, 0.1, 0.2, 0.4):
            time.sleep(max(0.0, sent[0] + delay - time.monotonic()))
            if proc.poll() is not None:
                return
            proc.send_signal(signal.SIGTERM)

    return finish(proc, [], on_event)


def concurrent_writers(phantom, folder: Path) -> List[Run]:
    """Two jobs writing one -o at the same time, from inputs of different sizes."""
    folder.mkdir()
    cropped = folder / "t1_cropped.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(phantom["t1"]))[:44], str(cropped))
    procs = [start(["-i", source, "-o", folder / "sct.nii.gz"]) for source in (phantom["t1"], cropped)]
    return [finish(proc, []) for proc in procs]


@pytest.fixture(scope="module")
def cli_runs(phantom, tmp_path_factory) -> Dict[str, object]:
    """Every command line scenario, run four at a time (each costs seconds of imports): SIGTERM at each stage
    and after done, the file size limit, two concurrent writers. Each result with its output folder."""
    root = tmp_path_factory.mktemp("cli")
    scenarios: Dict[str, Callable[[], object]] = {
        **{stage: (lambda stage=stage: sigterm_at(phantom, root / stage, stage)) for stage in STAGES + ("done",)},
        "file size limit": lambda: finish(start(job_args(phantom, with_earlier_outputs(root / "limit")), FILE_LIMIT), []),
        "concurrent": lambda: concurrent_writers(phantom, root / "concurrent"),
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(run) for name, run in scenarios.items()}
        results = {name: future.result() for name, future in futures.items()}
    folders = {name: root / {"file size limit": "limit"}.get(name, name) for name in scenarios}
    return {name: (results[name], folders[name]) for name in scenarios}


@pytest.mark.parametrize("stage", STAGES)
def test_sigterm_at_each_stage_cancels_and_keeps_earlier_outputs(cli_runs, phantom, stage):
    """Until the outputs start moving into place a SIGTERM cancels the job (130, every earlier output as it
    was); once the moves have started it is too late and the job completes (0, done, every output new and whole).
    The signals of the last two stages can land on either side; the stages before always cancel, and a signal
    while the model loads or the inputs are read stops the job at the next stage, before the network runs."""
    run, folder = cli_runs[stage]
    if stage in ("load", "read"):
        assert not any(event.get("stage") == "infer" for event in run.events)
    assert staging_leftovers(folder, phantom["t1"].parent) == []
    if run.returncode == 0 and stage in ("postprocess", "write"):
        assert run.last("done") is not None
        read_back(folder / "sct.nii.gz")
        assert json.loads((folder / "sct.json").read_text())["MedGANTranslate.Synthetic"] == "true"
        assert json.loads((folder / "metrics.json").read_text())["model"] == MODEL
        return
    assert run.returncode == 130, run.stderr
    assert run.last("done") is None and run.last("error")["kind"] == "cancelled"
    assert_earlier_outputs_kept(folder)


def test_sigterm_after_done_is_too_late(cli_runs, phantom):
    """The stream said done and every output is in place: signals during the exit neither kill the process
    (-15) nor turn it into a cancel."""
    run, folder = cli_runs["done"]
    assert run.returncode == 0, run.stderr
    assert run.last("done")["outputs"]["synthetic"] == str(folder / "sct.nii.gz")
    read_back(folder / "sct.nii.gz")
    read_back(folder / "diff.nii.gz")
    assert staging_leftovers(folder, phantom["t1"].parent) == []


def test_a_write_cut_short_by_ulimit_fails_the_job(cli_runs, phantom):
    """The tester's case: ``ulimit -f`` below the output's size exited 0 with an image of zeros."""
    run, folder = cli_runs["file size limit"]
    assert run.returncode == 2, run.stderr
    error = run.last("error")
    assert run.last("done") is None and error["kind"] == "output"
    assert str(folder / "sct.nii.gz") in error["message"] and "file size limit" in error["message"]
    assert_earlier_outputs_kept(folder)
    assert staging_leftovers(folder, phantom["t1"].parent) == []


def test_concurrent_command_lines_leave_one_whole_output(cli_runs, phantom):
    runs, folder = cli_runs["concurrent"]
    assert [run.returncode for run in runs] == [0, 0], [run.stderr for run in runs]
    source = json.loads((folder / "sct.json").read_text())["MedGANTranslate.Source"]
    size = sitk.ReadImage(str(folder / source)).GetSize() if source != phantom["t1"].name else (48, 56, 48)
    assert sitk.ReadImage(str(folder / "sct.nii.gz")).GetSize() == size
    assert staging_leftovers(folder, phantom["t1"].parent) == []
