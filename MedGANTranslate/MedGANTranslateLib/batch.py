"""``medgan-translate batch``: a cohort translated case by case with one loaded model, resumable, and spread over
processes, GPUs and nodes by PyTorch's own launcher.

Run alone it is one process. Under ``torchrun --nproc_per_node=N [--nnodes ...]`` each process (rank) joins
``torch.distributed`` (NCCL on GPUs, one GPU per rank; gloo on the CPU, the cores shared out), takes every
N-th case of the cohort (the shard ``DistributedSampler`` would give), writes its cases' outputs and
outcomes itself (:mod:`.cohort`: atomic, one file per case), and rank 0 gathers what each rank did and
writes the manifest and the summary. A case that fails is recorded with its error and the others go on. A
rerun, with any number of ranks, skips the cases recorded done on the same inputs and model and does the
rest: those that failed, and those a killed rank never finished (their half-written staging is removed).
"""
from __future__ import annotations

import json
import logging
import socket
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from .cohort import DONE, FAILED, PENDING, SKIPPED, Case, CohortFolder, Outcome, input_hashes, read_cohort, write_atomically
from .distributed import Ranks
from .errors import Cancelled, MedGANError
from .progress import CancelToken, ProgressCallback, StageTimer
from .run_options import RunOptions

OUTPUT_FORMATS = (".nii.gz", ".nrrd", ".mha")


@dataclass
class BatchOptions:
    model: str
    inputs: str
    out: Path
    run: RunOptions = RunOptions()  # every case's; the device and threads are a rank's share of them
    report: bool = False
    output_format: str = ".nii.gz"


@dataclass
class BatchSummary:
    """What a run did, over every rank: counts per status, time per case, metrics means, the failures."""

    cases: int
    counts: Dict[str, int]
    ranks: int
    wall_seconds: float
    seconds_per_case: Optional[float]
    cases_per_hour: Optional[float]
    metrics: Dict[str, float] = field(default_factory=dict)
    failures: List[Dict[str, str]] = field(default_factory=list)
    manifest: str = ""

    def table(self) -> str:
        counts = ", ".join(f"{self.counts.get(s, 0)} {s}" for s in (DONE, SKIPPED, FAILED, PENDING))
        lines = [f"Cases: {self.cases} ({counts}) on {self.ranks} process{'es' if self.ranks != 1 else ''} "
                 f"in {self.wall_seconds:.0f} s"]
        if self.seconds_per_case is not None:
            lines.append(f"Time per case: {self.seconds_per_case:.1f} s (median, translated this run); "
                         f"{self.cases_per_hour:.0f} cases per hour")
        if self.metrics:
            lines.append("Mean over the cases with a reference: "
                         + ", ".join(f"{k} {v:.4g}" for k, v in sorted(self.metrics.items())))
        lines += [f"Failed: {f['case']}: [{f['kind']}] {f['message']}" for f in self.failures]
        lines.append(f"Manifest: {self.manifest}")
        return "\n".join(lines)


class _Warnings:
    """The scan checks' warnings of the case being translated (the loaded model's callback collects them)."""

    def __init__(self) -> None:
        self.current: List[str] = []

    def add(self, warning) -> None:
        self.current.append(f"[{warning.code}] {warning.text()}")


def _case_paths(folder: CohortFolder, case: Case, options: BatchOptions, difference: bool) -> Dict[str, Optional[str]]:
    where = folder.case_dir(case)
    return {
        "output": str(where / f"synthetic{options.output_format}"),
        "diff": str(where / f"difference{options.output_format}") if difference else None,
        "metrics_path": str(where / "metrics.json") if case.reference else None,
        "report": str(where / "report.html") if options.report else None,
    }


def _translate_case(case: Case, folder: CohortFolder, options: BatchOptions, translator, warnings: _Warnings,
                    hashes: List[str], ranks: Ranks, cancel: CancelToken,
                    log: Optional[Callable[[str, str], None]]) -> Outcome:
    from .file_translation import translate_files

    card = translator.card
    difference = bool(case.reference) or card.difference.get("without_reference") == "minus_input"
    outcome = Outcome(case.case, case.inputs, case.reference, FAILED, f"{card.id}@{card.version}", card.sha256,
                      hashes, rank=ranks.rank, options=options.run.changing_results())
    warnings.current = outcome.warnings
    folder.remove_partials(case)
    folder.case_dir(case).mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        result = translate_files(card.id, case.inputs, reference=case.reference, translator=translator, cancel=cancel,
                                 log=log, **_case_paths(folder, case, options, difference))
    except Cancelled:
        raise
    except MedGANError as exc:
        outcome.error = {"kind": exc.kind, "message": str(exc)}
    except Exception as exc:  # a bug in one case must not stop the cohort; the log keeps the traceback
        logging.exception("MedGANTranslate batch: case %s failed", case.case)
        outcome.error = {"kind": "internal", "message": f"{type(exc).__name__}: {exc}"}
    else:
        outcome.status = DONE
        outcome.outputs = {k: v for k, v in result.outputs.items() if v}
        outcome.metrics = result.metrics
    outcome.seconds = round(time.perf_counter() - started, 3)
    return outcome


def _summary(rows: Sequence[Dict[str, Any]], this_run: Sequence[Dict[str, Any]], ranks: Ranks, wall: float,
             manifest: Path) -> BatchSummary:
    counts: Dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    timed = [r["seconds"] for r in this_run if r["status"] == DONE and r.get("seconds")]
    per_case = statistics.median(timed) if timed else None
    translated = sum(1 for r in this_run if r["status"] in (DONE, FAILED))
    metrics: Dict[str, List[float]] = {}
    for row in rows:
        for key, value in (row.get("metrics") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics.setdefault(key, []).append(float(value))
    failures = [{"case": r["case"], **(r.get("error") or {"kind": "internal", "message": ""})}
                for r in rows if r["status"] == FAILED]
    return BatchSummary(len(rows), counts, ranks.world_size, wall, per_case,
                        3600.0 * translated / wall if translated and wall > 0 else None,
                        {k: statistics.fmean(v) for k, v in metrics.items()}, failures, str(manifest))


def run_batch(options: BatchOptions, progress: Optional[ProgressCallback] = None,
              on_case: Optional[Callable[[Dict[str, Any]], None]] = None, cancel: Optional[CancelToken] = None,
              log: Optional[Callable[[str, str], None]] = None) -> Optional[BatchSummary]:
    """Translates this rank's share of the cohort; returns the summary on rank 0 (None on the others).
    ``on_case`` gets each case's row as it ends (status, seconds, error, warnings)."""
    from .pipeline import Translator
    from .registry import resolve_model

    if options.output_format not in OUTPUT_FORMATS:
        raise MedGANError(f"Output format {options.output_format!r} is not one of {', '.join(OUTPUT_FORMATS)}.")
    started = time.perf_counter()
    cancel = cancel or CancelToken()
    card = resolve_model(options.model, options.run.models_dirs, log=log)
    cases = read_cohort(options.inputs, [spec.name for spec in card.inputs])
    folder = CohortFolder(options.out)
    ranks = Ranks.from_environment()
    device = ranks.device(options.run.device)
    ranks.join(device)
    try:
        if ranks.rank == 0:
            options.out.mkdir(parents=True, exist_ok=True)
            folder.write_manifest(folder.manifest_rows(cases, {}))
        warnings = _Warnings()
        run = replace(options.run, device=device, threads=ranks.threads(options.run.threads))
        translator = Translator(card, run, log=log, on_warning=warnings.add)
        shard = cases[ranks.rank::ranks.world_size]
        timer = StageTimer("batch", len(shard), progress, cancel)
        timer.start(f"{len(shard)} of {len(cases)} cases on {device} (rank {ranks.rank} of {ranks.world_size}, "
                    f"{socket.gethostname()})")
        mine: List[Dict[str, Any]] = []
        for case in shard:
            hashes = input_hashes(case)
            if folder.still_valid(case, card.sha256, hashes, options.run.changing_results()) is not None:
                row = {"case": case.case, "status": SKIPPED}
            else:
                outcome = _translate_case(case, folder, options, translator, warnings, hashes, ranks, cancel, log)
                folder.record(outcome)
                row = {"case": case.case, "status": outcome.status, "seconds": outcome.seconds,
                       "error": outcome.error, "warnings": outcome.warnings}
            mine.append(row)
            if on_case:
                on_case(row)
            timer.advance(message=f"{case.case}: {row['status']}")
        everyone = ranks.gather(mine)
        if ranks.rank != 0:
            return None
        rows = folder.manifest_rows(cases, {r["case"]: r["status"] for r in everyone})
        manifest = folder.write_manifest(rows)
        summary = _summary(rows, everyone, ranks, time.perf_counter() - started, manifest)
        write_atomically(options.out / "summary.json", json.dumps(asdict(summary), indent=1) + "\n")
        return summary
    finally:
        ranks.leave()
