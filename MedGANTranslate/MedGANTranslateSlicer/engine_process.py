"""Runs the engine's command line in a background process without blocking Slicer.

Two reader threads move stdout and stderr lines into a queue; the owner calls :meth:`EngineProcess.poll`
from a timer on the GUI thread, so no Qt object is touched from another thread. The child starts in its own
process group (its own session on POSIX) so that cancelling ends the whole tree, including anything the
engine started.
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


def kill_process_tree(proc: subprocess.Popen, grace_s: float = 2.0) -> None:
    """Asks the engine to stop (it removes partial outputs), then kills whatever is left of the tree."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        _kill_with_psutil(psutil, proc, grace_s)
    elif os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True, check=False)
    else:
        _kill_group(proc, grace_s)
    try:
        proc.wait(timeout=max(grace_s, 1.0))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _kill_with_psutil(psutil, proc: subprocess.Popen, grace_s: float) -> None:
    try:
        parent = psutil.Process(proc.pid)
        tree = [parent] + parent.children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for p in tree:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(tree, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def _kill_group(proc: subprocess.Popen, grace_s: float) -> None:
    pgid = proc.pid  # the child leads its own session, so its pid is the group id
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
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
        """New messages since the last call; sets :attr:`returncode` once the process and its output end."""
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
        if self.proc is not None and self._open_streams == 0 and self.returncode is None:
            self.returncode = self.proc.wait()
        return messages

    def cancel(self, grace_s: float = 2.0) -> None:
        """Stops the whole process tree; the remaining output is still delivered by :meth:`poll`."""
        if self.proc is None or self.finished:
            return
        self.cancelled = True
        kill_process_tree(self.proc, grace_s)
        for thread in self._threads:
            thread.join(timeout=2.0)

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
