"""Progress reporting and cooperative cancellation.

The engine calls a :data:`ProgressCallback` with :class:`ProgressEvent` objects and checks a
:class:`CancelToken` between units of work (sliding windows, pipeline stages). The CLI turns events into
JSON lines (read by the Slicer module) or a progress bar for people.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, TextIO

from .errors import Cancelled


@dataclass
class ProgressEvent:
    """One step of progress: ``done`` of ``total`` units in ``stage``, with an ETA in seconds."""

    stage: str
    done: int
    total: int
    message: str = ""
    eta_s: Optional[float] = None
    elapsed_s: float = 0.0

    @property
    def fraction(self) -> float:
        return 0.0 if self.total <= 0 else min(1.0, self.done / self.total)

    def to_json(self) -> str:
        data = asdict(self)
        data["event"] = "progress"
        data["fraction"] = round(self.fraction, 4)
        return json.dumps(data, sort_keys=True)


ProgressCallback = Callable[[ProgressEvent], None]


class CancelToken:
    """Thread-safe flag; :meth:`raise_if_cancelled` is called by the engine at safe points."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("Translation cancelled by the user; no output was written.")


@dataclass
class StageTimer:
    """Counts units of one stage and estimates the time left from the mean time per unit so far."""

    stage: str
    total: int
    callback: Optional[ProgressCallback] = None
    cancel: Optional[CancelToken] = None
    done: int = 0
    _start: float = field(default_factory=time.perf_counter)

    def start(self, message: str = "") -> None:
        self._start = time.perf_counter()
        self._emit(message)

    def advance(self, n: int = 1, message: str = "") -> None:
        if self.cancel is not None:
            self.cancel.raise_if_cancelled()
        self.done += n
        self._emit(message)

    def finish(self, message: str = "") -> None:
        """Reports the stage complete (done = total). No cancel check: its work is done, and an output it
        committed must not be followed by a cancel that says nothing was written."""
        self.done = self.total
        self._emit(message)

    def _emit(self, message: str) -> None:
        if self.callback is None:
            return
        elapsed = time.perf_counter() - self._start
        eta = None
        if 0 < self.done < self.total:
            eta = elapsed / self.done * (self.total - self.done)
        elif self.done >= self.total:
            eta = 0.0
        self.callback(ProgressEvent(self.stage, self.done, self.total, message, eta, elapsed))


def start_stage(progress: Optional[ProgressCallback], cancel: Optional[CancelToken], name: str, message: str) -> StageTimer:
    """Starts a one-step stage (read, preprocess, ...); the caller calls ``finish()`` on the timer at its end, so
    a watcher sees where we are and what has finished (done 0 of 1, then 1 of 1). A cancel that came during the
    previous stage stops the job here, before this one starts (a SIGTERM while the model loads need not wait
    for the network)."""
    if cancel is not None:
        cancel.raise_if_cancelled()
    timer = StageTimer(name, 1, progress, cancel)
    timer.start(message)
    return timer


def json_lines_reporter(stream: TextIO = sys.stdout) -> ProgressCallback:
    """Writes one JSON object per event and flushes, for a parent process to parse line by line."""

    def report(event: ProgressEvent) -> None:
        stream.write(event.to_json() + "\n")
        stream.flush()

    return report


def bar_reporter(stream: TextIO = sys.stderr, width: int = 30) -> ProgressCallback:
    """A one-line text bar with percentage and ETA: redrawn in place on a terminal; in a log file or pipe,
    one line per stage start and per tenth done, so a 24000-step training log stays readable."""
    redraw = getattr(stream, "isatty", lambda: False)()
    last = {"stage": None, "tenth": -1}

    def report(event: ProgressEvent) -> None:
        tenth = int(10 * event.fraction)
        if not redraw:
            if (event.stage, tenth) == (last["stage"], last["tenth"]):
                return
            last.update(stage=event.stage, tenth=tenth)
        filled = int(round(width * event.fraction))
        eta = "" if event.eta_s is None else f" ETA {event.eta_s:5.1f}s"
        line = f"{event.stage:<12} [{'#' * filled}{'.' * (width - filled)}] {100 * event.fraction:5.1f}%{eta}"
        if redraw:
            stream.write("\r" + line + ("\n" if event.done >= event.total else ""))
        else:
            stream.write(line + "\n")
        stream.flush()

    return report
