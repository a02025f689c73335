"""The questions ``models import`` asks that a checkpoint's weights cannot answer, and the refusal that lists them.

Every step of an import (inferring the layout, reading a bundle, filling in the card) reads these answers and adds
to one list of what is missing or wrong, so that the user is told everything at once, not one flag per attempt.
This module holds only plain data (no torch), so that the command line can offer the same choices cheaply.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from .errors import ImportRefused

#: Values of ``--framework``: the peers whose layouts are built in, MONAI (a class of monai.networks.nets, or a
#: bundle folder) and the self-contained formats.
FRAMEWORKS = ("junyanz", "ganslate", "davidiommi", "monai", "monai-bundle", "torchscript", "onnx")
DEFAULT_VERSION = "0.1.0"


@dataclass
class ImportOptions:
    """The answers the weights cannot give (the command line's flags)."""

    framework: Optional[str] = None
    key: Optional[str] = None
    model_id: Optional[str] = None
    version: str = DEFAULT_VERSION
    title: Optional[str] = None
    description: Optional[str] = None
    inputs: Sequence[str] = ()
    output_modality: Optional[str] = None
    output_range: Optional[Sequence[float]] = None
    network_range: Sequence[float] = (-1.0, 1.0)
    spacing: Optional[Sequence[float]] = None
    orientation: Optional[str] = None
    normalization: Sequence[str] = ()
    roi: Optional[Sequence[int]] = None
    planes: Sequence[str] = ()
    site: str = ""
    license: Optional[str] = None
    intended_use: Optional[str] = None
    norm: Optional[str] = None
    norm_statistics: Optional[str] = None
    dropout: bool = False
    network: Optional[str] = None
    params: Optional[Mapping[str, Any]] = None
    divisible_by: Optional[int] = None
    direction: Optional[str] = None


def refusal(missing: Sequence[str], wrong: Sequence[str] = ()) -> ImportRefused:
    """One refusal naming every missing and wrong answer."""
    return ImportRefused(
        "models import needs more answers than the weights give:\n"
        + "".join(f"  missing {m}\n" for m in missing) + "".join(f"  {w}\n" for w in wrong)
        + "Nothing was written.")
