"""The panel's Save report...: the QA report of the last translation, saved where the user chooses.

The engine writes the report during every translation the panel runs (``run --report``, into the job's
temporary folder) and the panel keeps its text until the next translation; Save report... only writes that
text. Why not have the engine write it when asked, or build it here from the scene's nodes: the report is made
by one function, ``MedGANTranslateLib.report.make_report``, from the engine's own result (the inputs as the
engine read them, its body mask, the scan checks, the uncertainty, the run's device and precision), most of
which never reaches the scene, and the engine's packages (torch, MONAI) are not imported into Slicer; asking
later would mean keeping the temporary folder or translating again. So the command line's ``--report`` and the
panel give the same page from the same code, for a fraction of a second per run and a few hundred kB of memory.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from MedGANTranslateLib.errors import OutputError
from MedGANTranslateLib.outputs import OutputSet

__all__ = ["OutputError", "report_path", "save_report", "suggested_file_name"]
# MedGANTranslateLib.report.REPORT_SUFFIX, which is not imported here: that module imports NumPy, SimpleITK and
# torch, and Slicer imports this file at start-up (test_slicer_dependencies keeps those out)
REPORT_SUFFIX = ".html"
_UNSAFE = re.compile(r"[^A-Za-z0-9._() -]+")


def suggested_file_name(synthetic_name: str) -> str:
    """A file name for the report of the volume named ``synthetic_name``: its name with characters that are
    unsafe in file names replaced, then ' QA report.html'."""
    stem = _UNSAFE.sub("_", synthetic_name).strip(" ._") or "MedGANTranslate"
    return f"{stem[:120]} QA report{REPORT_SUFFIX}"


def report_path(chosen: str) -> Path:
    """The path the user chose, with ``.html`` added when it has another ending (not every file dialog adds it)."""
    path = Path(os.path.abspath(chosen))
    return path if path.suffix.lower() == REPORT_SUFFIX else path.with_name(path.name + REPORT_SUFFIX)


def save_report(html: str, chosen: str) -> Path:
    """Writes ``html`` to the chosen path as the engine writes its outputs (staged beside it, read back, then
    moved into place: a failure leaves the file that was there); returns the path written. Raises
    :class:`OutputError`, saying why, when it cannot."""
    path = report_path(chosen)
    with OutputSet() as outputs:
        outputs.stage_text(path, "QA report", html)
        outputs.commit()
    return path
