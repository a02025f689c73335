"""Each browser session's own process: its Slicer scene, views and job live there, so nothing of one session
is visible to another (no shared scene, no shared memory) and a crash ends one session only. The server talks
to it over a pipe, one request at a time; between requests the process polls its engine job, as Slicer's
GUI thread does with a Qt timer."""
from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

from .confinement import RequestError

#: What the server may ask of a session (methods of :class:`~.review.ReviewSession`).
REQUESTS = ("models", "load", "translate", "cancel", "state", "set_view", "render", "color_bar", "download")
START_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 20.0
IDLE_POLL_S = 0.05


class _LoopTimer:
    """What :func:`MedGANTranslateSlicer.engine_job.use_poll_timers` asks for: ``start``/``stop``; the session
    loop calls :meth:`fire` between requests."""

    def __init__(self, poll: Callable[[], None], interval_s: float) -> None:
        self.poll, self.interval_s, self.due = poll, interval_s, None

    def start(self) -> None:
        self.due = time.monotonic()

    def stop(self) -> None:
        self.due = None

    def fire(self, now: float) -> None:
        if self.due is not None and now >= self.due:
            self.due = now + self.interval_s
            self.poll()


def _serve_requests(connection, folder: str, models_dirs: Sequence[str]) -> None:
    """The session process's loop: requests from the server, the job's polling in between."""
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")  # no X server: offscreen GL
    import vtk
    from MedGANTranslateSlicer import engine_job

    vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_ERROR)  # not the interactor's X11 warnings

    from .review import ReviewSession

    timers: List[_LoopTimer] = []

    def make_timer(poll: Callable[[], None]) -> _LoopTimer:
        timers.append(_LoopTimer(poll, engine_job.POLL_INTERVAL_MS / 1000.0))
        return timers[-1]

    engine_job.use_poll_timers(make_timer)
    review = ReviewSession(Path(folder), models_dirs)
    connection.send({"ok": True, "value": "ready"})
    while True:
        if connection.poll(IDLE_POLL_S):
            message = connection.recv()
            if message is None:
                break
            connection.send(_answer(review, *message))
        now = time.monotonic()
        for timer in list(timers):
            timer.fire(now)
        timers[:] = [t for t in timers if t.due is not None]
    review.close()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while engine_job.STOPPING and time.monotonic() < deadline:  # a cancelled engine removes its partial outputs
        for timer in list(timers):
            timer.fire(time.monotonic())
        time.sleep(IDLE_POLL_S)


def _answer(review, method: str, arguments: Dict[str, Any]) -> Dict[str, Any]:
    if method not in REQUESTS:
        return {"ok": False, "status": 404, "error": f"Unknown request '{method}'."}
    try:
        return {"ok": True, "value": getattr(review, method)(**arguments)}
    except RequestError as exc:
        return {"ok": False, "status": exc.status, "error": str(exc)}
    except TypeError as exc:
        return {"ok": False, "status": 400, "error": f"Bad request for '{method}': {exc}"}
    except Exception as exc:  # the session goes on; the page shows what went wrong
        logging.exception("MedGANTranslate web: request '%s' failed", method)
        return {"ok": False, "status": 500, "error": f"{type(exc).__name__}: {exc}"}


class SessionProcess:
    """The server's handle on one session process; :meth:`call` is blocking (the server runs it in a worker
    thread) and serialised, so a session answers one request at a time."""

    def __init__(self, folder: Path, models_dirs: Sequence[str] = ()) -> None:
        self.folder = folder
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no state shared with the server
        self._connection, child = context.Pipe()
        self._lock = threading.Lock()
        self.process = context.Process(target=_serve_requests, args=(child, str(folder), list(models_dirs)),
                                       name=f"MedGANTranslate session {folder.name}", daemon=True)
        self.process.start()
        child.close()
        self._receive(START_TIMEOUT_S, "start")

    def _receive(self, timeout: float, what: str) -> Any:
        if not self._connection.poll(timeout):
            self.close()
            raise RequestError(503, f"The session did not answer '{what}' within {timeout:.0f} s and was closed; reload the page.")
        try:
            reply = self._connection.recv()
        except EOFError as exc:
            self.close()
            raise RequestError(500, "The session's process ended unexpectedly; reload the page to start a new one.") from exc
        if not reply.get("ok"):
            raise RequestError(int(reply.get("status", 500)), str(reply.get("error", "")))
        return reply.get("value")

    def call(self, method: str, /, **arguments: Any) -> Any:
        with self._lock:
            if not self.process.is_alive():
                raise RequestError(500, "The session's process has ended; reload the page to start a new one.")
            self._connection.send((method, arguments))
            return self._receive(REQUEST_TIMEOUT_S, method)

    def close(self) -> None:
        """Ends the process (its running engine is cancelled and cleans up) and removes the session's folder."""
        try:
            self._connection.send(None)
        except (OSError, ValueError):
            pass
        self.process.join(STOP_TIMEOUT_S + 5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        shutil.rmtree(self.folder, ignore_errors=True)
