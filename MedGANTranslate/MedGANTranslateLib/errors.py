"""User-facing errors.

Every failure a user can cause (bad file, bad card, tampered weights, no memory) raises a subclass of
:class:`MedGANError` whose message names the problem and what to do about it. The CLI prints the message
(no traceback) and exits with the class's ``exit_code``; the Slicer module shows it in a dialog.
"""
from __future__ import annotations

from typing import Iterable


class MedGANError(Exception):
    """Base class: a problem the user can fix. ``exit_code`` is what the CLI returns."""

    exit_code = 2
    kind = "error"


class InputError(MedGANError):
    """An input image is missing, unreadable or unsuitable (2D, 4D, empty, NaN...). ``input_index``: which of a
    model's inputs it is about, where the raiser knows and the message does not say."""

    kind = "input"

    def __init__(self, message: str, input_index: "int | None" = None) -> None:
        super().__init__(message)
        self.input_index = input_index


class OutputError(MedGANError):
    """An output path cannot be written (missing folder, same as an input...)."""

    kind = "output"


class CardError(MedGANError):
    """A model card is missing, not JSON, or fails the schema."""

    kind = "card"


class ModelNotFoundError(MedGANError):
    """No model card with the requested id is in the registry."""

    kind = "model-not-found"


class WeightsError(MedGANError):
    """Weights are missing, tampered with (SHA-256 mismatch), or in a format we refuse to load."""

    kind = "weights"


class InstallError(MedGANError):
    """A model package cannot be installed: the download failed or was cut short, its SHA-256 differs from the one
    given, the zip is unsafe (paths leaving the folder, links, too large), or another package holds its id and
    version. Problems with the card or the weights inside it raise :class:`CardError` or :class:`WeightsError`."""

    kind = "install"


class ImportRefused(MedGANError):
    """A checkpoint ``models import`` cannot turn into a model folder as asked: unreadable, matching no layout,
    a layout the keys cannot decide, or answers missing. The message says what was found and what to pass."""

    kind = "import"


class ResourceError(MedGANError):
    """The job would not fit in memory; raised before any work starts."""

    kind = "resources"
    exit_code = 3


class Cancelled(MedGANError):
    """The user cancelled the run; no output is left behind."""

    kind = "cancelled"
    exit_code = 130


def first_few(items: Iterable[str], n: int = 6) -> str:
    """``a, b, c (+4 more)``: a message names the first ``n`` of a long list (checkpoint keys), and how many more."""
    items = list(items)
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more
