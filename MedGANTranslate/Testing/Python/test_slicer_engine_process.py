"""The background process runner and the progress parsing, without Slicer: plain child processes."""
from __future__ import annotations

import json
import os
import sys
import textwrap
import time

import pytest

from .slicer_test_support import MODULE_DIR

sys.path.insert(0, str(MODULE_DIR))
from MedGANTranslateSlicer.engine_messages import (  # noqa: E402
    ProgressTracker,
    format_duration,
    parse_line,
    warning_text,
    warnings_html,
)
from MedGANTranslateSlicer.engine_process import EngineProcess, engine_command, engine_environment  # noqa: E402

sys.path.remove(str(MODULE_DIR))


def _progress(stage, done, total, eta=None, message=""):
    return {"event": "progress", "stage": stage, "done": done, "total": total, "fraction": done / total, "eta_s": eta,
            "elapsed_s": 1.0, "message": message}


def test_parse_line_separates_events_from_text():
    assert parse_line('{"event": "log", "level": "warning", "message": "x"}\n').kind == "log"
    assert parse_line("  {not json").kind == "text"
    assert parse_line('{"no": "event"}').kind == "text"
    assert parse_line("Traceback (most recent call last):").raw == "Traceback (most recent call last):"


def test_scan_warnings_are_their_own_event_and_read_as_what_was_found_then_what_to_do():
    line = json.dumps({"event": "warning", "code": "skull_stripped", "input": "t1",
                       "message": "Input 't1' looks skull-stripped: 1.35 L.", "advice": "Give the scan before <stripping>."})
    message = parse_line(line)
    assert message.kind == "warning" and message.data["code"] == "skull_stripped"
    assert warning_text(message.data) == "Input 't1' looks skull-stripped: 1.35 L. Give the scan before <stripping>."
    shown = warnings_html([message.data, {"message": "Second.", "advice": ""}])
    assert shown.count("<li>") == 2 and "&lt;stripping&gt;" in shown and "<li>Second.</li>" in shown


def test_progress_is_weighted_by_stage_and_never_goes_back_across_stages():
    tracker = ProgressTracker()
    tracker.update(_progress("load", 1, 1))
    after_load = tracker.percent
    tracker.update(_progress("infer", 0, 10))
    assert tracker.percent >= after_load
    tracker.update(_progress("infer", 5, 10, eta=75.0, message="5 of 10 windows"))
    halfway = tracker.percent
    assert 40 < halfway < 70
    assert tracker.label() == f"Translating: {halfway}%, about 1 min 15 s left"
    assert tracker.label("%p%") == "Translating: %p%, about 1 min 15 s left"
    tracker.update(_progress("read", 1, 1))  # an earlier stage arriving late does not move the bar back
    assert tracker.percent == halfway
    tracker.update(_progress("write", 1, 1))
    assert tracker.percent == 100 and tracker.eta_s is None


def test_inference_restart_after_out_of_memory_moves_back_within_the_stage_only():
    tracker = ProgressTracker()
    tracker.update(_progress("infer", 8, 10))
    high = tracker.percent
    tracker.update(_progress("infer", 0, 10))
    assert 0 < tracker.percent < high


@pytest.mark.parametrize("seconds, text", [(None, ""), (0.4, "0.4 s"), (59, "59 s"), (61, "1 min 01 s"), (3725, "1 h 02 min")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def _script(body: str):
    return [sys.executable, "-c", textwrap.dedent(body)]


def _started(body: str) -> EngineProcess:
    """The script's process, once it has printed its first line (so its signal handlers are in place)."""
    process = EngineProcess(_script(body))
    process.start()
    deadline = time.monotonic() + 30
    while not process.poll() and time.monotonic() < deadline:
        time.sleep(0.02)
    return process


def test_process_delivers_json_and_text_lines_and_exit_code():
    process = EngineProcess(_script("""
        import json, sys
        print(json.dumps({"event": "progress", "stage": "infer", "done": 1, "total": 2}), flush=True)
        print("a warning", file=sys.stderr, flush=True)
        print(json.dumps({"event": "error", "kind": "input", "message": "bad input"}), flush=True)
        sys.exit(2)
    """))
    process.start()
    messages = process.wait(timeout=30)
    assert process.returncode == 2
    assert [m.kind for m in messages if m.kind != "text"] == ["progress", "error"]
    assert "a warning" in process.full_log() and process.full_log().startswith("$ ")


def test_poll_does_not_block():
    process = EngineProcess(_script("import time; time.sleep(2)"))
    process.start()
    started = time.monotonic()
    assert process.poll() == [] and not process.finished
    assert time.monotonic() - started < 0.5
    process.cancel()
    assert process.finished or process.wait(timeout=5) is not None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(os.name == "nt", reason="POSIX process groups")
def test_cancel_ends_the_whole_process_tree(tmp_path):
    """The engine's own children (data loaders, launchers) go too; nothing is left running."""
    pid_file = tmp_path / "grandchild.pid"
    process = _started(f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(pid_file)!r}, "w").write(str(child.pid))
        print('{{"event": "progress", "stage": "infer", "done": 0, "total": 9}}', flush=True)
        time.sleep(60)
    """)
    grandchild = int(pid_file.read_text())
    assert _alive(grandchild)
    process.cancel(grace_s=0.5)
    process.wait(timeout=10)
    assert process.cancelled and process.returncode != 0
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
def test_cancel_returns_at_once_and_the_next_polls_kill_an_engine_that_ignores_the_request():
    """Cancel runs on Slicer's GUI thread: it used to wait up to ~6 s (busy wait, process wait, thread joins)."""
    process = _started("""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(60)
    """)
    started = time.monotonic()
    process.cancel(grace_s=0.5)
    assert time.monotonic() - started < 0.1
    assert process.cancelled and not process.finished  # SIGTERM ignored: still running
    time.sleep(0.2)
    process.poll()
    assert not process.finished  # within the grace period nothing is forced
    process.wait(timeout=10)
    assert process.returncode == -9 and time.monotonic() - started < 5
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
def test_cancel_lets_the_engine_stop_by_itself_first():
    process = _started("""
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda *a: (print("cleaning up", flush=True), sys.exit(130)))
        print("ready", flush=True)
        time.sleep(60)
    """)
    process.cancel(grace_s=30)
    process.wait(timeout=10)
    assert process.returncode == 130 and "cleaning up" in process.full_log()


def test_windows_stop_is_polite_first_and_never_flashes_a_console(monkeypatch):
    from MedGANTranslateSlicer import engine_process

    started = []

    class FakePopen:
        def __init__(self, args, **kwargs):
            started.append((args, kwargs.get("creationflags")))

    monkeypatch.setattr(engine_process, "_IS_WINDOWS", True)
    monkeypatch.setattr(engine_process.subprocess, "Popen", FakePopen)
    proc = type("Proc", (), {"pid": 4242})()
    engine_process.request_stop(proc)
    engine_process.force_stop(proc)
    assert [args for args, _ in started] == [["taskkill", "/T", "/PID", "4242"], ["taskkill", "/T", "/PID", "4242", "/F"]]
    assert all(flags & 0x08000000 for _, flags in started)  # CREATE_NO_WINDOW


def test_engine_environment_makes_the_engine_importable(tmp_path):
    env = engine_environment(MODULE_DIR, base={"PYTHONPATH": "/elsewhere", "PATH": os.environ.get("PATH", "")})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(MODULE_DIR), "/elsewhere"]
    assert env["PYTHONUNBUFFERED"] == "1"
    command = engine_command(["models", "list", "--json"], python=sys.executable)
    assert command[:3] == [sys.executable, "-m", "MedGANTranslateLib.cli"]
    process = EngineProcess(command, env=engine_environment(MODULE_DIR), cwd=str(tmp_path))
    process.start()
    process.wait(timeout=60)
    assert process.returncode == 0, process.full_log()
    assert isinstance(json.loads("\n".join(process.log_lines)), list)
