"""Runs the engine's command line in a background process without blocking Slicer.

Two reader threads move stdout and stderr lines into a queue; the owner calls :meth:`EngineProcess.poll`
from a timer on the GUI thread, so no Qt object is touched from another thread. The child starts in its own
process group (its own session on POSIX) so that cancelling ends the whole tree, including anything the
engine started. Cancelling never blocks: it asks the tree to stop (SIGTERM; ``taskkill`` without ``/F`` on
Windows), and the next :meth:`EngineProcess.poll` after the grace period kills what is left, as Slicer 5.12's
own asynchronous process handling polls from a timer instead of waiting.
"""
from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .engine_messages import EngineMessage, parse_line

ENGINE_MODULE = "MedGANTranslateLib.cli"


def python_executable() -> str:
    """``PythonSlicer`` inside Slicer (it sets up Slicer's library paths), else this interpreter."""
    launcher = shutil.which("PythonSlicer", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    return launcher or sys.executable


def engine_environment(engine_parent: "str | Path", base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The child's environment: the engine package importable, unbuffered UTF-8 output."""
    env = dict(os.environ if base is None else base)
    paths = [str(engine_parent)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def engine_command(subcommand: Sequence[str], python: Optional[str] = None) -> List[str]:
    return [python or python_executable(), "-m", ENGINE_MODULE] + list(subcommand)


STOP_GRACE_S = 3.0  # the engine removes its partial outputs on SIGTERM; then it is killed
_IS_WINDOWS = os.name == "nt"
# CREATE_NO_WINDOW: taskkill is a console program, and Slicer is not, so Windows would flash a console window
_CREATE_NO_WINDOW = getattr(subprocess, "CREATE_NO_WINDOW", 0x08000000)


def _taskkill(pid: int, force: bool) -> None:
    args = ["taskkill", "/T", "/PID", str(pid)] + (["/F"] if force else [])
    subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     creationflags=_CREATE_NO_WINDOW)


def request_stop(proc: subprocess.Popen) -> None:
    """Asks the process tree to end (the engine then cancels and removes its partial outputs); returns at once."""
    if _IS_WINDOWS:
        _taskkill(proc.pid, force=False)
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the child leads its own session, so its pid is the group id
    except ProcessLookupError:
        pass


def force_stop(proc: subprocess.Popen) -> None:
    """Kills whatever is left of the process tree; returns at once."""
    if _IS_WINDOWS:
        _taskkill(proc.pid, force=True)
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class EngineProcess:
    """One run of the engine command line. Not thread-safe: use it from one thread (Slicer's GUI thread)."""

    def __init__(self, args: Sequence[str], env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None) -> None:
        self.args = list(args)
        self.env = env
        self.cwd = cwd
        self.proc: Optional[subprocess.Popen] = None
        self.log_lines: List[str] = []
        self.returncode: Optional[int] = None
        self.cancelled = False
        self._kill_at: Optional[float] = None
        self._queue: "queue.Queue" = queue.Queue()
        self._open_streams = 0
        self._threads: List[threading.Thread] = []

    def start(self) -> None:
        kwargs = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        else:
            kwargs["start_new_session"] = True
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            cwd=self.cwd,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            **kwargs,
        )
        for stream in (self.proc.stdout, self.proc.stderr):
            thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
            self._open_streams += 1
            thread.start()
            self._threads.append(thread)

    def _read(self, stream) -> None:
        try:
            for line in stream:
                self._queue.put(line)
        finally:
            self._queue.put(None)

    @property
    def pid(self) -> Optional[int]:
        return None if self.proc is None else self.proc.pid

    @property
    def finished(self) -> bool:
        return self.returncode is not None

    def poll(self) -> List[EngineMessage]:
        """New messages since the last call; sets :attr:`returncode` once the process and its output end.
        After :meth:`cancel`, kills the process tree once the grace period has passed."""
        messages = []
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self._open_streams -= 1
                continue
            message = parse_line(line)
            self.log_lines.append(message.raw)
            messages.append(message)
        if self._kill_at is not None and time.monotonic() >= self._kill_at:
            self._kill_at = None
            force_stop(self.proc)
        if self.proc is not None and self._open_streams == 0 and self.returncode is None:
            self.returncode = self.proc.poll()
        return messages

    def cancel(self, grace_s: float = STOP_GRACE_S) -> None:
        """Asks the whole process tree to stop and returns at once; :meth:`poll` kills it if it is still there
        after ``grace_s`` and delivers the remaining output."""
        if self.proc is None or self.finished or self.cancelled:
            return
        self.cancelled = True
        self._kill_at = time.monotonic() + grace_s
        request_stop(self.proc)

    def wait(self, timeout: Optional[float] = None, interval: float = 0.05) -> List[EngineMessage]:
        """Blocks until the process ends (scripting and tests); returns every message it printed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        messages = self.poll()
        while not self.finished:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"The engine did not finish within {timeout} s.")
            time.sleep(interval)
            messages += self.poll()
        return messages

    def full_log(self) -> str:
        return "\n".join(["$ " + " ".join(self.args)] + self.log_lines)
