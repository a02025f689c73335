"""One engine command run in the background for the panel: the :class:`~.engine_process.EngineProcess` polled
from a timer on the GUI thread (a Qt timer in Slicer; the web face's session loop gives its own, see
:func:`use_poll_timers`), its ``--progress json`` events turned into callbacks, a ``done`` or ``error``
event into a result or an :class:`EngineError`, and a cancel that never blocks. A translation
(:class:`~.job.TranslationJob`), a model install and a model import (:mod:`.install`, :mod:`.importing`) are
such jobs; each says what its command line is, what its ``done`` event means and how the panel words it."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, List, Optional

import slicer

from .engine_messages import EngineMessage
from .engine_process import EngineProcess, engine_command, engine_environment

# The folder holding MedGANTranslateLib: on the child's PYTHONPATH and its working directory, so that
# "-m MedGANTranslateLib.cli" resolves even if a launcher rewrites PYTHONPATH.
ENGINE_PARENT = Path(__file__).resolve().parents[1]
POLL_INTERVAL_MS = 100
# Cancelled jobs and device queries whose engine is still stopping: kept alive here so that their timer keeps
# polling (and kills the engine after the grace period) even when the panel has let go of them.
STOPPING: set = set()


def engine_process(args: List[str]) -> EngineProcess:
    """The engine's command line ``args`` as a background process (not started yet)."""
    return EngineProcess(engine_command(args), env=engine_environment(ENGINE_PARENT), cwd=str(ENGINE_PARENT))


def qt_poll_timer(poll: Callable[[], None]) -> Any:
    """A ``qt.QTimer`` (not started yet) that calls ``poll`` on the GUI thread every :data:`POLL_INTERVAL_MS`."""
    import qt

    timer = qt.QTimer()
    timer.setInterval(POLL_INTERVAL_MS)
    timer.connect("timeout()", poll)
    return timer


_poll_timer_factory: Callable[[Callable[[], None]], Any] = qt_poll_timer


def use_poll_timers(factory: Callable[[Callable[[], None]], Any]) -> None:
    """Makes every later job poll through ``factory(poll)``: an object with ``start()`` and ``stop()`` that calls
    ``poll`` on the thread owning the scene. A face without Qt (the web face's session process) sets it once."""
    global _poll_timer_factory
    _poll_timer_factory = factory


def poll_timer(poll: Callable[[], None]) -> Any:
    """A timer (not started yet) that calls ``poll`` on the GUI thread every :data:`POLL_INTERVAL_MS`."""
    return _poll_timer_factory(poll)


class EngineError(RuntimeError):
    """The engine stopped without a result; ``kind`` is the engine's error kind, ``log`` the full output and
    ``title`` what the panel's error dialog says first."""

    def __init__(self, kind: str, message: str, log: str, title: str = "The engine failed") -> None:
        super().__init__(message)
        self.kind = kind
        self.log = log
        self.title = title


@dataclass(frozen=True)
class JobWording:
    """How the panel speaks of one kind of job."""

    noun: str  # "The {noun} did not finish within ..."
    could_not_start: str  # the error dialog when the job cannot start
    cancelled: str  # the status line after Cancel
    cancel_tooltip: str  # the Cancel button's tool tip while it runs
    failed: str  # the error dialog's title for an error kind not in error_titles
    error_titles: Dict[str, str] = field(default_factory=dict)

    def error_title(self, kind: str) -> str:
        return self.error_titles.get(kind, self.failed)


class EngineJob:
    """Callbacks run on the GUI thread: ``on_progress(tracker)`` for each progress event, ``on_log(line)`` for
    every other line and, once, ``on_finished(job)``; afterwards the subclass's result is set (from the engine's
    ``done`` event), or :attr:`error`, or :attr:`cancelled` is True. A subclass gives :attr:`wording`, the
    command line (:meth:`_arguments`) and what a ``done`` event means (:meth:`_succeed`)."""

    wording: ClassVar[JobWording]

    def __init__(self, tracker: Any, on_progress: Optional[Callable[[Any], None]] = None,
                 on_log: Optional[Callable[[str], None]] = None,
                 on_finished: Optional[Callable[[Any], None]] = None) -> None:
        self.tracker = tracker
        self.on_progress = on_progress
        self.on_log = on_log
        self.on_finished = on_finished
        self.process: Optional[EngineProcess] = None
        self.error: Optional[EngineError] = None
        self.cancelled = False
        self.done_event: Optional[Dict[str, Any]] = None
        self.error_event: Optional[Dict[str, Any]] = None
        self._ended = False
        self._timer = None

    @property
    def running(self) -> bool:
        return self.process is not None and not self._ended and not self.cancelled

    # --- what a subclass says ------------------------------------------------------------------------

    def _arguments(self) -> List[str]:
        """The engine's command line; may prepare files, which :meth:`_clean_up` then removes."""
        raise NotImplementedError

    def _succeed(self, done: Dict[str, Any]) -> None:
        """Sets the result from the engine's ``done`` event (or :attr:`error`, if it cannot be used)."""
        raise NotImplementedError

    def _on_event(self, message: EngineMessage) -> None:
        """Any other engine event (a ``log`` line, a scan ``warning``, text), before it reaches ``on_log``."""

    def _clean_up(self) -> None:
        """Runs once the engine has gone (or could not start)."""

    # --- running ---------------------------------------------------------------------------------------

    def start(self) -> None:
        try:
            self.process = engine_process(self._arguments())
            self.process.start()
        except BaseException:
            self._clean_up()
            raise
        self._timer = poll_timer(self.poll)
        self._timer.start()

    def poll(self) -> None:
        if self.process is None:
            return
        if self.cancelled:
            self._reap()
            return
        if not self.running:
            return
        for message in self.process.poll():
            self._handle(message)
        if self.process.finished:
            self._finish()

    def _handle(self, message: EngineMessage) -> None:
        if message.kind == "progress":
            self.tracker.update(message.data)
            if self.on_progress:
                self.on_progress(self.tracker)
            return
        if message.kind == "done":
            self.done_event = message.data
        elif message.kind == "error":
            self.error_event = message.data
        else:
            self._on_event(message)
        if self.on_log:
            self.on_log(message.raw)

    def _finish(self) -> None:
        self._ended = True
        self._stop_timer()
        try:
            if self.process.returncode == 0 and self.done_event is not None:
                self._succeed(self.done_event)
            else:
                self.error = self._engine_error()
        finally:
            self._clean_up()
        self._notify()

    def _engine_error(self) -> EngineError:
        if self.error_event is not None:
            return self._error(str(self.error_event.get("kind", "internal")), str(self.error_event.get("message", "")))
        tail = "\n".join(self.process.log_lines[-5:])
        return self._error("internal", f"The engine stopped unexpectedly (exit code {self.process.returncode}) without "
                                       "reporting an error." + (f" Last output:\n{tail}" if tail else ""))

    def _error(self, kind: str, message: str) -> EngineError:
        return EngineError(kind, message, self.full_log(), self.wording.error_title(kind))

    def cancel(self) -> None:
        """Discards the job without waiting: ``on_finished`` runs at once. The engine is asked to stop (it removes
        its partial outputs) and killed after a grace period; the timer keeps polling until it has gone."""
        if not self.running:
            return
        self.cancelled = True
        self.process.cancel()
        STOPPING.add(self)
        self._reap()
        self._notify()

    def _reap(self) -> None:
        self.process.poll()
        if self.process.finished:
            self._stop_timer()
            self._clean_up()
            STOPPING.discard(self)

    def wait(self, timeout: Optional[float] = None) -> "EngineJob":
        """Blocks until the job ends, keeping Slicer's events flowing (scripts and self-tests)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.running:
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                raise TimeoutError(f"The {self.wording.noun} did not finish within {timeout} s and was cancelled.")
            if hasattr(slicer, "app"):
                slicer.app.processEvents()
            self.poll()
            time.sleep(0.02)
        return self

    def full_log(self) -> str:
        return self.process.full_log() if self.process is not None else ""

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def _notify(self) -> None:
        if self.on_finished:
            self.on_finished(self)
