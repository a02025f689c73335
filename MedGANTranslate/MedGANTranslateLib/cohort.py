"""A cohort for ``medgan-translate batch``: its cases, read from a list, a glob or a CSV, and what became of each.

Each case's outcome is its own small JSON file (``status/<case>.json``), written atomically after the case's
outputs are in place, so whatever stops a run (a crash, ``kill -9`` of one rank) leaves every case either
recorded with complete outputs or not recorded at all; ranks never write the same file. The manifest
(``manifest.jsonl``: one row per case, in the cohort's order, with its status) and the summary are made from
those files. A case counts as done on a rerun only if its outputs exist and its inputs' and model's SHA-256
are those recorded, so a changed scan or a new model version is translated again.
"""
from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

from .errors import InputError

PENDING, DONE, FAILED, SKIPPED = "pending", "done", "failed", "skipped"
_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".dcm")
_GLOB_CHARACTERS = set("*?[")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class Case:
    """One row of the cohort: its id (file-name safe, unique), input path(s) in the card's order, reference."""

    case: str
    inputs: List[str]
    reference: Optional[str] = None


@dataclass
class Outcome:
    """What one run made of a case (the content of ``status/<case>.json``)."""

    case: str
    inputs: List[str]
    reference: Optional[str]
    status: str
    model: str = ""
    model_sha256: str = ""
    input_sha256: List[str] = field(default_factory=list)
    outputs: Dict[str, str] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    error: Optional[Dict[str, str]] = None
    metrics: Optional[Dict[str, Any]] = None
    seconds: Optional[float] = None
    rank: int = 0
    options: List[str] = field(default_factory=list)  # the engine options it was translated with (n4, tta)


def _stem(path: str) -> str:
    name = Path(path.rstrip("/\\")).name
    lower = name.lower()
    for suffix in _IMAGE_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _unique_ids(cases: List[Case]) -> List[Case]:
    """File-name-safe ids; a repeated id gets ``-2``, ``-3``... in cohort order."""
    seen: Dict[str, int] = {}
    for case in cases:
        base = _UNSAFE.sub("_", case.case).strip("._") or "case"
        seen[base] = seen.get(base, 0) + 1
        case.case = base if seen[base] == 1 else f"{base}-{seen[base]}"
    return cases


def _from_csv(path: Path, input_names: Sequence[str]) -> List[Case]:
    """Columns: ``id`` (optional), one per input named as the card names it (``t1``, ``t2``...) or ``input``
    (``input1``, ``input2``... for several), ``reference`` (optional). Relative paths are from the CSV's folder."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise InputError(f"{path} has no rows; give one case per row under a header line.")
    columns = [c.strip() for c in rows[0].keys()]
    single = ["input"] if len(input_names) == 1 else []
    choices = [list(input_names), [f"input{i + 1}" for i in range(len(input_names))], single]
    wanted = next((c for c in choices if c and all(name in columns for name in c)), None)
    if wanted is None:
        raise InputError(f"{path} has the columns {', '.join(columns)}; the model takes {len(input_names)} input(s): "
                         f"name the columns {', '.join(input_names)} (or input1..input{len(input_names)}), "
                         "with optional 'id' and 'reference'.")
    here = path.parent

    def located(value: str) -> str:
        value = value.strip()
        return value if not value or os.path.isabs(value) else str(here / value)

    cases = []
    for number, row in enumerate(rows, start=2):
        row = {k.strip(): (v or "") for k, v in row.items() if k}
        inputs = [located(row[name]) for name in wanted]
        if not all(inputs):
            raise InputError(f"{path}, line {number}: an input path is empty; give every input of every case.")
        reference = located(row.get("reference", "")) or None
        cases.append(Case(row.get("id", "").strip() or _stem(inputs[0]), inputs, reference))
    return cases


def _from_list(path: Path, n_inputs: int) -> List[Case]:
    """One case per line: its input path(s), comma-separated for several; '#' starts a comment."""
    cases = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        inputs = [p.strip() for p in line.split(",")]
        if len(inputs) != n_inputs:
            raise InputError(f"{path}, line {number}: {len(inputs)} path(s) where the model takes {n_inputs}; "
                             "separate a case's inputs with commas, in the card's order.")
        inputs = [p if os.path.isabs(p) else str(path.parent / p) for p in inputs]
        cases.append(Case(_stem(inputs[0]), inputs))
    return cases


def read_cohort(spec: str, input_names: Sequence[str]) -> List[Case]:
    """The cases of ``spec``: a CSV (``.csv``), a glob pattern (single-input models), or a text file listing one
    case per line. Case ids are unique and safe as file names."""
    if set(spec) & _GLOB_CHARACTERS and not Path(spec).exists():
        if len(input_names) != 1:
            raise InputError(f"A glob gives one file per case, but the model takes {len(input_names)} inputs; "
                             "list the cases in a CSV with one column per input.")
        found = sorted(glob.glob(spec))
        if not found:
            raise InputError(f"No file matches {spec!r}; check the pattern (quote it so the shell leaves it alone).")
        cases = [Case(_stem(p), [p]) for p in found]
    else:
        path = Path(spec)
        if not path.is_file():
            raise InputError(f"--inputs {spec}: no such file; give a CSV, a list file (one case per line) or a "
                             "quoted glob pattern.")
        cases = _from_csv(path, input_names) if path.suffix.lower() == ".csv" else _from_list(path, len(input_names))
    return _unique_ids(cases)


def file_sha256(path: str) -> str:
    """SHA-256 of a file, or of a folder's files (names and contents, sorted: a DICOM series)."""
    digest = hashlib.sha256()
    target = Path(path)
    members = sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else [target]
    for member in members:
        if target.is_dir():
            digest.update(member.relative_to(target).as_posix().encode() + b"\0")
        with open(member, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def input_hashes(case: Case) -> List[str]:
    """The SHA-256 of each input and of the reference (missing files hash to '')."""
    paths = case.inputs + ([case.reference] if case.reference else [])
    return [file_sha256(p) if os.path.exists(p) else "" for p in paths]


def write_atomically(path: Path, text: str) -> None:
    """Written beside ``path``, flushed and renamed over it: readers see the old file or the new one, never a
    part of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staged = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(staged, path)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise


class CohortFolder:
    """The output folder of a batch: ``<case>/`` outputs, ``status/<case>.json`` outcomes, ``manifest.jsonl``,
    ``summary.json``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.status_dir = root / "status"

    def case_dir(self, case: Case) -> Path:
        return self.root / case.case

    def recorded(self, case: Case) -> Optional[Outcome]:
        path = self.status_dir / f"{case.case}.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        known = {k: v for k, v in data.items() if k in Outcome.__dataclass_fields__}
        return Outcome(**known)

    def record(self, outcome: Outcome) -> None:
        write_atomically(self.status_dir / f"{outcome.case}.json", json.dumps(asdict(outcome), indent=1, default=str))

    def still_valid(self, case: Case, model_sha256: str, hashes: Sequence[str], options: Sequence[str] = ()
                    ) -> Optional[Outcome]:
        """The recorded outcome when it is done, on the same inputs and model, with the engine options asked now,
        with every output in place."""
        found = self.recorded(case)
        if found is None or found.status != DONE or found.model_sha256 != model_sha256:
            return None
        if sorted(found.options) != sorted(options):
            return None
        if list(found.input_sha256) != list(hashes) or found.inputs != case.inputs or found.reference != case.reference:
            return None
        if not found.outputs or not all(os.path.exists(p) for p in found.outputs.values()):
            return None
        return found

    def remove_partials(self, case: Case) -> None:
        """Staging left by a run killed while writing this case (``.<name>.<random>.partial``)."""
        for leftover in self.case_dir(case).glob(".*.partial"):
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()

    def manifest_rows(self, cases: Iterable[Case], this_run: Dict[str, str]) -> List[Dict[str, Any]]:
        """One row per case in cohort order: its recorded outcome (``skipped`` where this run found it done
        already), or ``pending``."""
        rows = []
        for case in cases:
            found = self.recorded(case)
            if found is None:
                rows.append({**asdict(case), "status": PENDING})
                continue
            row = asdict(found)
            if this_run.get(case.case) == SKIPPED:
                row["status"] = SKIPPED
            rows.append(row)
        return rows

    def write_manifest(self, rows: Sequence[Dict[str, Any]]) -> Path:
        path = self.root / "manifest.jsonl"
        write_atomically(path, "".join(json.dumps(row, default=str) + "\n" for row in rows))
        return path
