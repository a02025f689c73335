"""What the model selector shows, read from the cards with the standard library only (before any install)."""
from __future__ import annotations

import fnmatch
import html
from typing import List, Optional, Sequence, Tuple

from MedGANTranslateLib.card import CardSummary
from MedGANTranslateLib.registry import list_models

from .engine_messages import format_duration

MAX_INPUTS = 4


def model_key(summary: CardSummary) -> str:
    """What the parameter node stores: id and version, as the engine's ``--model id@version`` takes them."""
    return f"{summary.id}@{summary.version}"


def available_models(extra_dirs: Sequence[str] = (), include_deprecated: bool = False) -> List[CardSummary]:
    models = [m for m in list_models([d for d in extra_dirs if d]) if include_deprecated or not m.deprecated]
    return [m for m in models if len(m.inputs) <= MAX_INPUTS]


def find_model(models: Sequence[CardSummary], key: str) -> Optional[CardSummary]:
    return next((m for m in models if model_key(m) == key), None)


def input_labels(summary: CardSummary) -> List[str]:
    return [spec.label for spec in summary.inputs]


def model_label(summary: CardSummary) -> str:
    flag = " (deprecated)" if summary.deprecated else ""
    return f"{summary.title} (v{summary.version}){flag}"


def expected_time(summary: CardSummary) -> str:
    parts = []
    if summary.gpu_seconds is not None:
        parts.append(f"about {format_duration(summary.gpu_seconds)} on a GPU")
    if summary.cpu_seconds is not None:
        parts.append(f"about {format_duration(summary.cpu_seconds)} on the CPU")
    return ", ".join(parts) if parts else "not measured"


def model_details_html(summary: CardSummary) -> str:
    """Rich text under the selector: modalities, site, version, expected time and the intended-use warning."""
    inputs = " + ".join(input_labels(summary))
    lines = [
        f"<b>{html.escape(inputs)} → {html.escape(summary.output_modality)}</b> ({html.escape(summary.output_unit)})"
        + (f", {html.escape(summary.site)}" if summary.site else ""),
        f"Model <tt>{html.escape(summary.id)}</tt> version {html.escape(summary.version)}",
        f"Expected time: {html.escape(expected_time(summary))}",
        f"<span style='color:#b35900'>⚠ {html.escape(summary.intended_use)}</span>",
    ]
    return "<br>".join(lines)


def auto_assign(patterns: Sequence[str], candidates: Sequence[Tuple[str, str]]) -> List[Optional[str]]:
    """For each input's glob (case-insensitive, on node names), the first matching candidate key not already
    taken; ``candidates`` are (key, name) pairs in scene order. Inputs without a pattern get None."""
    taken = set()
    chosen: List[Optional[str]] = []
    for pattern in patterns:
        match = None
        if pattern:
            for key, name in candidates:
                if key not in taken and fnmatch.fnmatch(name.lower(), pattern.lower()):
                    match = key
                    break
        if match is not None:
            taken.add(match)
        chosen.append(match)
    return chosen
