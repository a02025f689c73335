"""Installing a model from a URL in the panel: the engine's ``models install`` run in the background process
(:class:`~.engine_process.EngineProcess`, ``--progress json``), its progress mapped onto the panel's bar, and
cancel. The engine does every check (SHA-256 before unpacking, safe unpacking, card, weights, a probe load) and
moves the model into the user's model store only when all pass, so a cancel or an error leaves nothing there."""
from __future__ import annotations

import re
import time
from typing import Any, Callable, Dict, List, Optional

import qt
import slicer

from .engine_messages import EngineMessage, format_duration
from .engine_process import EngineProcess, engine_command, engine_environment
from .job import ENGINE_PARENT, POLL_INTERVAL_MS, EngineError

# Share of the bar each stage of an install gets: the download dominates.
INSTALL_STAGE_WEIGHTS = (("download", 0.85), ("verify", 0.03), ("extract", 0.04), ("check", 0.08))
INSTALL_STAGE_TITLES = {
    "download": "Downloading the model",
    "verify": "Checking its SHA-256",
    "extract": "Unpacking",
    "check": "Checking the card and weights",
}
INSTALL_ERROR_TITLES = {
    "install": "The model cannot be installed",
    "card": "The model's card is not valid",
    "weights": "The model's weights cannot be used",
    "cancelled": "Cancelled",
    "usage": "The model cannot be installed",
    "internal": "The engine failed",
}
_SHA256 = re.compile(r"^(sha256:)?[0-9a-fA-F]{64}$")


def install_arguments(url: str, sha256: str, force: bool = False) -> List[str]:
    """The engine command line (``models install`` sub-command) for a URL and the zip's SHA-256."""
    args = ["models", "install", url.strip(), "--sha256", sha256.strip(), "--progress", "json"]
    if force:
        args.append("--force")
    return args


def install_problems(url: str, sha256: str) -> List[str]:
    """Why the panel's install button is not ready yet (empty when it is); the engine checks again."""
    problems = []
    if not re.match(r"^https?://\S+$", url.strip(), re.IGNORECASE):
        problems.append("Give the http(s) URL of the model's zip.")
    if not _SHA256.match(sha256.strip()):
        problems.append("Give the zip's SHA-256 (64 hexadecimal digits) as its publisher gives it.")
    return problems


class ModelInstallError(EngineError):
    """The install stopped without a model; ``kind`` is the engine's error kind, ``log`` the full output."""

    @property
    def title(self) -> str:
        return INSTALL_ERROR_TITLES.get(self.kind, "The model cannot be installed")


class InstallProgress:
    """What the panel's progress bar shows (the same interface as :class:`.engine_messages.ProgressTracker`)."""

    def __init__(self) -> None:
        self._weights = dict(INSTALL_STAGE_WEIGHTS)
        self._order = [name for name, _ in INSTALL_STAGE_WEIGHTS]
        self.stage = ""
        self.fraction = 0.0
        self.eta_s: Optional[float] = None
        self.message = ""

    def update(self, data: Dict[str, Any]) -> None:
        stage = str(data.get("stage", ""))
        fraction = min(1.0, max(0.0, float(data.get("fraction") or 0.0)))
        if stage in self._weights:
            base = sum(self._weights[name] for name in self._order[:self._order.index(stage)])
            self.fraction = max(self.fraction, base + self._weights[stage] * fraction)
        self.stage = stage
        self.eta_s = data.get("eta_s") if stage == "download" and fraction < 1.0 else None
        title = INSTALL_STAGE_TITLES.get(stage, stage.capitalize())
        detail = str(data.get("message", ""))
        self.message = f"{title}: {detail}" if detail else f"{title}..."

    @property
    def percent(self) -> int:
        return int(round(100 * self.fraction))

    def label(self, percent_text: str = "") -> str:
        title = INSTALL_STAGE_TITLES.get(self.stage, self.stage.capitalize() or "Starting")
        text = f"{title}: {percent_text or str(self.percent) + '%'}"
        if self.eta_s:
            text += f", about {format_duration(self.eta_s)} left"
        return text


class ModelInstallJob:
    """One install. Callbacks run on the GUI thread: ``on_progress(tracker)``, ``on_log(line)`` and, once,
    ``on_finished(job)``; afterwards :attr:`model` (the engine's description of the installed model: id, version,
    title, license, intended_use, folder) and :attr:`status` are set, or :attr:`error`, or :attr:`cancelled`."""

    def __init__(self, url: str, sha256: str, force: bool = False,
                 on_progress: Optional[Callable[[InstallProgress], None]] = None,
                 on_log: Optional[Callable[[str], None]] = None,
                 on_finished: Optional[Callable[["ModelInstallJob"], None]] = None) -> None:
        self.args = install_arguments(url, sha256, force)
        self.tracker = InstallProgress()
        self.on_progress = on_progress
        self.on_log = on_log
        self.on_finished = on_finished
        self.process: Optional[EngineProcess] = None
        self.model: Optional[Dict[str, Any]] = None
        self.status = ""
        self.error: Optional[ModelInstallError] = None
        self.cancelled = False
        self._done: Optional[Dict[str, Any]] = None
        self._error: Optional[Dict[str, Any]] = None
        self._timer = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.model is None and self.error is None and not self.cancelled

    @property
    def model_key(self) -> str:
        """'id@version' of the installed model, as the panel's model selector keys it."""
        return f"{self.model['id']}@{self.model['version']}" if self.model else ""

    def start(self) -> None:
        self.process = EngineProcess(engine_command(self.args), env=engine_environment(ENGINE_PARENT), cwd=str(ENGINE_PARENT))
        self.process.start()
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self.poll)
        self._timer.start()

    def poll(self) -> None:
        if self.process is None or not self.running:
            return
        for message in self.process.poll():
            self._handle(message)
        if self.process.finished:
            self._stop_timer()
            if self.process.returncode == 0 and self._done is not None:
                self.model = dict(self._done.get("model") or {})
                self.status = str(self._done.get("status", "installed"))
            else:
                self.error = self._engine_error()
            self._notify()

    def _handle(self, message: EngineMessage) -> None:
        if message.kind == "progress":
            self.tracker.update(message.data)
            if self.on_progress:
                self.on_progress(self.tracker)
            return
        if message.kind == "done":
            self._done = message.data
        elif message.kind == "error":
            self._error = message.data
        if self.on_log:
            self.on_log(message.raw)

    def _engine_error(self) -> ModelInstallError:
        log = self.process.full_log()
        if self._error is not None:
            return ModelInstallError(str(self._error.get("kind", "internal")), str(self._error.get("message", "")), log)
        tail = "\n".join(self.process.log_lines[-5:])
        return ModelInstallError("internal", f"The engine stopped unexpectedly (exit code {self.process.returncode}) "
                                        "without reporting an error." + (f" Last output:\n{tail}" if tail else ""), log)

    def cancel(self) -> None:
        """Stops the engine; the store is left as it was (a partial download is kept for the next try)."""
        if not self.running:
            return
        self.cancelled = True
        self.process.cancel()
        self.process.poll()
        self._stop_timer()
        self._notify()

    def wait(self, timeout: Optional[float] = None) -> "ModelInstallJob":
        """Blocks until the install ends, keeping Slicer's events flowing (scripts and tests)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.running:
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                raise TimeoutError(f"The install did not finish within {timeout} s and was cancelled.")
            slicer.app.processEvents()
            self.poll()
            time.sleep(0.02)
        return self

    def summary(self) -> str:
        """What the panel says after an install: the model, its licence, what it is for and where it is."""
        if not self.model:
            return ""
        m = self.model
        said = {"already-installed": "Already installed", "replaced": "Replaced"}.get(self.status, "Installed")
        return (f"{said}: {m.get('title', '')} ({m.get('id', '')} v{m.get('version', '')}). Licence: "
                f"{m.get('license') or 'not stated'}. Intended use: {m.get('intended_use', '')} Folder: {m.get('folder', '')}")

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def _notify(self) -> None:
        if self.on_finished:
            self.on_finished(self)
