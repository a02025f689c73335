"""What the model selector shows, read from the cards with the standard library only (before any install)."""
from __future__ import annotations

import fnmatch
import html
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from MedGANTranslateLib.card import CardSummary, takes_mr as card_takes_mr
from MedGANTranslateLib.registry import DEFAULT_MODEL, list_models, model_store

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


def default_model(models: Sequence[CardSummary]) -> CardSummary:
    """What the panel pre-selects when nothing was chosen: the engine's default model (``DEFAULT_MODEL``, the one
    ``medgan-translate demo`` runs) in the newest version listed, else the first model of the list."""
    defaults = [m for m in models if m.id == DEFAULT_MODEL]
    return defaults[0] if defaults else models[0]


def takes_mr(summary: CardSummary) -> bool:
    """Whether N4 bias-field correction can apply: it corrects MR inputs."""
    return card_takes_mr(summary.inputs)


def input_labels(summary: CardSummary) -> List[str]:
    return [spec.label for spec in summary.inputs]


def model_label(summary: CardSummary) -> str:
    flag = " (deprecated)" if summary.deprecated else ""
    return f"{summary.title} (v{summary.version}){flag}"


def expected_time(summary: CardSummary) -> str:
    """The card's measured times of the whole translation (model load to written output; card ``runtime``) with
    what they were measured on: 'about 1.4 s on 2 CPU threads for a 1 mm phantom head (192 × 224 × 192 voxels),
    plus a few seconds to start the engine' (its process starts afresh for every job: Python, PyTorch)."""
    parts = []
    if summary.gpu_seconds is not None:
        parts.append(f"about {format_duration(summary.gpu_seconds)} on a GPU")
    if summary.cpu_seconds is not None:
        threads = summary.cpu_threads
        where = f"{threads} CPU thread{'s' if threads != 1 else ''}" if threads else "the CPU"
        parts.append(f"about {format_duration(summary.cpu_seconds)} on {where}")
    if not parts:
        return "not measured"
    reference = f" for {summary.runtime_reference}" if summary.runtime_reference else ""
    return ", ".join(parts) + reference + ", plus a few seconds to start the engine"


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


def uncertainty_tooltip(summary: Optional[CardSummary]) -> str:
    """The Uncertainty map box's tool tip: what the map is for this model and what it costs, or why the model
    cannot make one."""
    if summary is None:
        return "Choose a model."
    if summary.uncertainty_passes <= 0:
        return f"This model cannot make an uncertainty map. {summary.uncertainty_text}"
    variants = re.sub(r"^std over (\d+) variants: ", r"\1 test-time variants: ", summary.uncertainty_text)
    return (f"Also make an uncertainty map: per voxel, the standard deviation ({summary.output_unit}) of the model's "
            f"output over {variants}. The synthetic image is then their mean. The network runs "
            f"{summary.uncertainty_passes} times instead of once: about {summary.uncertainty_passes}x the inference "
            "time." + (" Mirror averaging is then off: the variants include the mirror image."
                       if summary.test_time_mirror else ""))


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


# --- "Add model…": the engine's models import, from the panel's small form -------------------------------

#: The training code choices of the form; "" lets the engine read it from the weights (or refuse, naming them).
IMPORT_FRAMEWORKS = ("", "junyanz", "davidiommi", "ganslate", "monai", "monai-bundle", "torchscript", "onnx")
_NUMBER = r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?"


@dataclass
class ImportForm:
    """What the panel's form holds, as typed: the checkpoint (a file, or a MONAI bundle's folder), the training code
    (IMPORT_FRAMEWORKS), the model id, the inputs ("MR:T1w, MR:T2w"), the output ("CT -1024 3071": modality, then the
    values the network's -1..1 maps to), the spacing in mm ("1 1 1"), the normalisation ("percentile:0.5:99.5") and
    any further flags of ``models import`` ("--orientation LPS --license MIT")."""

    checkpoint: str = ""
    framework: str = ""
    model_id: str = ""
    inputs: str = ""
    output: str = ""
    spacing: str = ""
    normalization: str = ""
    more: str = ""


def _more_flags(form: ImportForm) -> List[str]:
    try:
        return shlex.split(form.more)
    except ValueError:
        return []


def _flag_value(flags: Sequence[str], name: str) -> Optional[str]:
    for i, flag in enumerate(flags):
        if flag == name and i + 1 < len(flags):
            return flags[i + 1]
        if flag.startswith(name + "="):
            return flag.split("=", 1)[1]
    return None


def import_problems(form: ImportForm) -> List[str]:
    """Why the form is not ready yet (empty when it is); the engine checks everything again and names what the
    checkpoint itself needs (e.g. the training code when its weights fit several)."""
    problems = []
    if not form.checkpoint.strip():
        problems.append("Choose the checkpoint file (or a MONAI bundle's folder).")
    if not re.match(r"^[a-z0-9][a-z0-9._-]{1,63}$", form.model_id.strip()):
        problems.append("Give the model an id: 2-64 lower-case letters, digits, '.', '_' or '-'.")
    if not [i for i in re.split(r"[,\s]+", form.inputs) if i]:
        problems.append("Give the inputs, one per channel in order, e.g. MR:T1w (or MR:T1w, MR:T2w).")
    if not re.match(rf"^\s*[A-Za-z]+\s+{_NUMBER}\s+{_NUMBER}\s*$", form.output):
        problems.append("Give the output as its modality and the values the network's -1..1 maps to, e.g. "
                        "CT -1024 3071.")
    bundle = form.framework == "monai-bundle"
    if not bundle and not re.match(rf"^\s*{_NUMBER}(\s+{_NUMBER}){{2}}\s*$", form.spacing):
        problems.append("Give the spacing in mm the network was trained on, e.g. 1 1 1.")
    if not bundle and not form.normalization.strip():
        problems.append("Give the normalisation of the training inputs, e.g. percentile:0.5:99.5, zscore or "
                        "range:-1024:3071.")
    if form.framework not in IMPORT_FRAMEWORKS:
        problems.append(f"Unknown training code {form.framework!r}.")
    if form.more.strip() and not _more_flags(form):
        problems.append("The further flags do not parse (an unclosed quote?).")
    return problems


def import_folder(form: ImportForm) -> Path:
    """Where an imported model goes: the user's model store, ``<id>-<version>``, as installed models do."""
    version = _flag_value(_more_flags(form), "--version") or "0.1.0"
    return model_store() / f"{form.model_id.strip()}-{version}"


def import_arguments(form: ImportForm, out_dir: "str | Path") -> List[str]:
    """The engine command line (``models import`` sub-command) for the form, with JSON progress."""
    args = ["models", "import", form.checkpoint.strip(), "--out", str(out_dir), "--id", form.model_id.strip()]
    if form.framework:
        args += ["--framework", form.framework]
    for spec in (i for i in re.split(r"[,\s]+", form.inputs) if i):
        args += ["--input", spec]
    modality, low, high = form.output.split()
    args += ["--output-modality", modality.upper(), "--output-range", low, high]
    if form.spacing.strip():
        args += ["--spacing"] + form.spacing.split()
    for spec in (n for n in re.split(r"[,\s]+", form.normalization) if n):
        args += ["--normalization", spec]
    return args + _more_flags(form) + ["--progress", "json"]

