"""Installing a model from a URL in the panel: the engine's ``models install`` run in the background process
(:class:`~.engine_process.EngineProcess`, ``--progress json``), its progress mapped onto the panel's bar, and
cancel. The engine does every check (SHA-256 before unpacking, safe unpacking, card, weights, a probe load) and
moves the model into the user's model store only when all pass, so a cancel or an error leaves nothing there."""
from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Optional

from .engine_job import EngineJob, JobWording
from .engine_messages import StagedProgress

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


class InstallProgress(StagedProgress):
    """An install's progress bar (an import's too): the bar never goes back; the ETA is the download's."""

    def __init__(self) -> None:
        super().__init__(INSTALL_STAGE_WEIGHTS, INSTALL_STAGE_TITLES)

    def update(self, data: Dict[str, Any]) -> None:
        stage = str(data.get("stage", ""))
        fraction = min(1.0, max(0.0, float(data.get("fraction") or 0.0)))
        if stage in self._weights:
            self.fraction = max(self.fraction, self._stage_base(stage) + self._weights[stage] * fraction)
        self.stage = stage
        self.eta_s = data.get("eta_s") if stage == "download" and fraction < 1.0 else None
        title = self._title(stage)
        detail = str(data.get("message", ""))
        self.message = f"{title}: {detail}" if detail else f"{title}..."


class ModelStoreJob(EngineJob):
    """A job that writes one model into the user's model store (an install, an import). Afterwards :attr:`model`
    (the engine's description of the model: id, version, title, license, intended_use, folder, ...) and
    :attr:`status` are set, or :attr:`error`, or :attr:`cancelled`; a cancel or an error leaves the store as it
    was. Progress goes to an :class:`InstallProgress`."""

    def __init__(self, args: List[str], on_progress: Optional[Callable[[InstallProgress], None]] = None,
                 on_log: Optional[Callable[[str], None]] = None,
                 on_finished: Optional[Callable[[Any], None]] = None) -> None:
        super().__init__(InstallProgress(), on_progress=on_progress, on_log=on_log, on_finished=on_finished)
        self.args = args
        self.model: Optional[Dict[str, Any]] = None
        self.status = ""

    @property
    def model_key(self) -> str:
        """'id@version' of the new model, as the panel's model selector keys it."""
        return f"{self.model['id']}@{self.model['version']}" if self.model else ""

    def _arguments(self) -> List[str]:
        return self.args

    def _succeed(self, done: Dict[str, Any]) -> None:
        self.model = dict(done.get("model") or {})
        self.status = str(done.get("status", "installed"))

    def summary(self) -> str:
        """What the panel says once the model is in the store."""
        raise NotImplementedError


class ModelInstallJob(ModelStoreJob):
    """One install (a partial download is kept for the next try when it is cancelled)."""

    wording = JobWording(
        noun="install",
        could_not_start="The model install could not start.",
        cancelled="Install cancelled. Nothing was installed.",
        cancel_tooltip="Stop the install; nothing is installed.",
        failed="The model cannot be installed",
        error_titles=INSTALL_ERROR_TITLES,
    )

    def __init__(self, url: str, sha256: str, force: bool = False,
                 on_progress: Optional[Callable[[InstallProgress], None]] = None,
                 on_log: Optional[Callable[[str], None]] = None,
                 on_finished: Optional[Callable[["ModelInstallJob"], None]] = None) -> None:
        super().__init__(install_arguments(url, sha256, force), on_progress=on_progress, on_log=on_log,
                         on_finished=on_finished)

    def summary(self) -> str:
        """What the panel says after an install: the model, its licence, what it is for and where it is."""
        if not self.model:
            return ""
        m = self.model
        said = {"already-installed": "Already installed", "replaced": "Replaced"}.get(self.status, "Installed")
        return (f"{said}: {m.get('title', '')} ({m.get('id', '')} v{m.get('version', '')}). Licence: "
                f"{m.get('license') or 'not stated'}. Intended use: {m.get('intended_use', '')} Folder: {m.get('folder', '')}")
