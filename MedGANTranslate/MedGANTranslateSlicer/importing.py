"""Adding a model from a checkpoint in the panel ("Add model…"): the engine's ``models import`` run in the background
process, as a model install is (both are :class:`~.install.ModelStoreJob`: the same progress, log, cancel and error
handling). The engine reads the checkpoint without running any of its code, writes the model folder into the user's
model store only once its card validates and one forward pass has run, and refuses, naming what it needs, when the
weights cannot tell how the network was trained; the command line comes from :func:`.models.import_arguments`."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Optional

from .engine_job import JobWording
from .install import ModelStoreJob
from .models import ImportForm, import_arguments, import_folder

IMPORT_ERROR_TITLES = {
    "import": "The checkpoint cannot be imported",
    "weights": "The checkpoint's weights cannot be used",
    "card": "The model card would not be valid",
    "cancelled": "Cancelled",
    "usage": "The checkpoint cannot be imported",
    "internal": "The engine failed",
}


class ModelImportJob(ModelStoreJob):
    """One import. Afterwards :attr:`model` holds the engine's description of the new model (id, version, title,
    license, intended_use, folder, framework, architecture, weights with SHA-256, probe, notes and the
    ``models check`` command to run next), or :attr:`error` is set, or :attr:`cancelled` is True."""

    wording = JobWording(
        noun="import",
        could_not_start="The import could not start.",
        cancelled="Import cancelled. Nothing was added.",
        cancel_tooltip="Stop the import; nothing is added.",
        failed="The checkpoint cannot be imported",
        error_titles=IMPORT_ERROR_TITLES,
    )

    def __init__(self, form: ImportForm, out_dir: Optional["str | Path"] = None,
                 on_progress: Optional[Callable[[Any], None]] = None,
                 on_log: Optional[Callable[[str], None]] = None,
                 on_finished: Optional[Callable[["ModelImportJob"], None]] = None) -> None:
        self.form = form
        self.out_dir = Path(out_dir) if out_dir is not None else import_folder(form)
        super().__init__(import_arguments(form, self.out_dir), on_progress=on_progress, on_log=on_log,
                         on_finished=on_finished)

    def summary(self) -> str:
        """What the panel says after an import: the model, how its network was read, and the check to run."""
        if not self.model:
            return ""
        m: Dict[str, Any] = self.model
        return (f"Imported: {m.get('title', '')} ({m.get('id', '')} v{m.get('version', '')}), a {m.get('framework', '')} "
                f"{m.get('family', '')}. Before using it, compare it with your training code's output: "
                f"{m.get('next', 'medgan-translate models check')}. Licence: {m.get('license') or 'not stated'}. "
                f"Folder: {m.get('folder', '')}")
