"""One translation from the panel: inputs saved to a private temporary folder, the engine run in the
background, results turned into scene nodes. Nothing reaches the scene before the engine reports success,
and the temporary folder is removed whatever happens."""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import slicer

from MedGANTranslateLib.card import CardSummary, output_display

from . import scene
from .engine_job import STOPPING, EngineJob, JobWording, engine_process, poll_timer
from .engine_messages import EngineMessage, ProgressTracker

ERROR_TITLES = {
    "input": "The input cannot be translated",
    "output": "The result cannot be written",
    "card": "The model card is not valid",
    "model-not-found": "The model was not found",
    "weights": "The model weights cannot be used",
    "resources": "Not enough memory",
    "cancelled": "Cancelled",
    "internal": "The engine failed",
}


@dataclass
class TranslationRequest:
    model: CardSummary
    inputs: List[Any]
    reference: Any = None
    difference: bool = True
    device: str = "auto"
    roi: Optional[Tuple[int, int, int]] = None
    overlap: Optional[float] = None
    models_dir: str = ""
    tta: bool = False
    n4: bool = False  # N4 bias-field correction of the MR inputs
    strict: bool = False
    uncertainty: bool = False  # also the uncertainty map (the synthetic image is then the variants' mean)


@dataclass
class TranslationResult:
    synthetic: Any
    difference: Any = None
    metrics_table: Any = None
    metrics: Optional[Dict[str, Any]] = None
    provenance: Dict[str, Any] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    scan_warnings: List[Dict[str, Any]] = field(default_factory=list)
    report_html: str = ""  # the engine's QA report of this run (reports.py: why the engine writes it every run)
    files: Dict[str, str] = field(default_factory=dict)  # the engine's output files, when the job was told to keep them

    @property
    def uncertainty(self) -> Any:
        """The uncertainty map's node, when the run made one (linked from the synthetic volume)."""
        return scene.uncertainty_of(self.synthetic)


def wants_difference(request: TranslationRequest) -> bool:
    return request.difference and (request.reference is not None or request.model.difference_without_reference == "minus_input")


def build_arguments(request: TranslationRequest, folder: Path, inputs: List[str], reference: Optional[str]) -> Dict[str, Any]:
    """The engine command line (``run`` sub-command) and the output paths it will write. The QA report names the
    inputs and the reference by their node names (``--name=value``: a name may start with '-')."""
    paths = {"synthetic": str(folder / "synthetic.nrrd"), "difference": None, "metrics": None,
             "report": str(folder / "report.html")}
    args = ["run", "--model", str(request.model.path.parent), "--progress", "json", "--device", request.device]
    for path in inputs:
        args += ["-i", path]
    args += ["-o", paths["synthetic"]]
    if reference:
        args += ["--reference", reference]
        paths["metrics"] = str(folder / "metrics.json")
        args += ["--metrics", paths["metrics"]]
    if wants_difference(request):
        paths["difference"] = str(folder / "difference.nrrd")
        args += ["--diff", paths["difference"]]
    if request.roi:
        args += ["--roi"] + [str(int(v)) for v in request.roi]
    if request.overlap is not None:
        args += ["--overlap", str(request.overlap)]
    if request.uncertainty:  # its variants include the mirror image: --tta with it is refused
        paths["uncertainty"] = str(folder / "uncertainty.nrrd")
        args += ["--uncertainty", paths["uncertainty"]]
    elif request.tta:
        args += ["--tta"]
    if request.n4:
        args += ["--n4"]
    if request.strict:
        args += ["--strict"]
    if request.models_dir:
        args += ["--models-dir", request.models_dir]
    args += ["--report", paths["report"]] + [f"--report-input-name={node.GetName()}" for node in request.inputs]
    if reference:
        args += [f"--report-reference-name={request.reference.GetName()}"]
    return {"args": args, "paths": paths}


class TranslationJob(EngineJob):
    """Callbacks run on the GUI thread: ``on_progress(tracker)``, ``on_log(line)``, ``on_warning(event)`` for
    each scan-check warning (a dict with code, input, message, advice; they come before the network runs) and,
    once, ``on_finished(job)``; afterwards :attr:`result` or :attr:`error` is set, or :attr:`cancelled` is True.
    :attr:`scan_warnings` holds the warnings either way (a strict run's refusal names them too). A cancelled run's
    temporary folder is removed once its engine has gone.

    The temporary folder goes under ``temporary_root`` (default: Slicer's temporary folder); with
    ``keep_outputs`` (a folder), the engine's output files of a successful run move there instead of being
    deleted (the web face offers them as downloads) and :attr:`TranslationResult.files` names them."""

    wording = JobWording(
        noun="translation",
        could_not_start="The translation could not start.",
        cancelled="Cancelled. Nothing was added to the scene.",
        cancel_tooltip="Stop the translation; nothing is added to the scene.",
        failed="The translation failed",
        error_titles=ERROR_TITLES,
    )

    def __init__(self, request: TranslationRequest,
                 on_progress: Optional[Callable[[ProgressTracker], None]] = None,
                 on_log: Optional[Callable[[str], None]] = None,
                 on_finished: Optional[Callable[["TranslationJob"], None]] = None,
                 on_warning: Optional[Callable[[Dict[str, Any]], None]] = None,
                 temporary_root: Optional[str] = None, keep_outputs: Optional[Path] = None) -> None:
        super().__init__(ProgressTracker(), on_progress=on_progress, on_log=on_log, on_finished=on_finished)
        self.request = request
        self.temporary_root = temporary_root
        self.keep_outputs = keep_outputs
        self.on_warning = on_warning
        self.folder: Optional[Path] = None
        self.result: Optional[TranslationResult] = None
        self.warnings: List[str] = []
        self.scan_warnings: List[Dict[str, Any]] = []
        self._paths: Dict[str, Optional[str]] = {}

    def _arguments(self) -> List[str]:
        # mkdtemp: a fresh folder readable only by this user, since it holds patient images
        root = self.temporary_root if self.temporary_root is not None else slicer.app.temporaryPath
        self.folder = Path(tempfile.mkdtemp(prefix="MedGANTranslate-", dir=root))
        inputs = [self._export(node, f"input{i}.nrrd") for i, node in enumerate(self.request.inputs)]
        reference = self._export(self.request.reference, "reference.nrrd") if self.request.reference is not None else None
        command = build_arguments(self.request, self.folder, inputs, reference)
        self._paths = command["paths"]
        return command["args"]

    def _export(self, node, filename: str) -> str:
        """Writes a volume in world coordinates (its parent transforms hardened into the copy that is written),
        so a reference registered with a transform reaches the engine registered."""
        path = str(self.folder / filename)
        if not scene.export_volume(node, path):
            raise RuntimeError(f"Could not save '{node.GetName()}' to a temporary file for the engine ({path}).")
        return path

    def _on_event(self, message: EngineMessage) -> None:
        if message.kind == "log" and message.data.get("level") == "warning":
            self.warnings.append(str(message.data.get("message", "")))
        elif message.kind == "warning":
            self.scan_warnings.append(message.data)
            if self.on_warning:
                self.on_warning(message.data)

    def _succeed(self, done: Dict[str, Any]) -> None:
        try:
            self.result = self._import_results()
            if self.keep_outputs is not None:
                self.result.files = self._keep_outputs(self.done_event.get("outputs") or {})
        except Exception as exc:
            logging.exception("MedGANTranslate: could not load the engine's results")
            self.error = self._error("internal", f"The results could not be loaded into the scene: {exc}")

    def _import_results(self) -> TranslationResult:
        """Creates the nodes (on the input's grid, under its linear transform); on any failure removes those
        already made, so a run adds all or nothing."""
        request, done = self.request, self.done_event
        outputs = done.get("outputs") or {}
        provenance = dict(done.get("provenance") or {})
        report_html = Path(outputs["report"]).read_text(encoding="utf-8") if outputs.get("report") else ""
        input_node = request.inputs[0]
        names = scene.output_names(input_node.GetName(), request.model.output_label, request.model.id, request.model.version)
        created: List[Any] = []
        try:
            synthetic = scene.volume_from_file(outputs.get("synthetic") or self._paths["synthetic"], input_node, names["synthetic"])
            created.append(synthetic)
            scene.set_provenance(synthetic, provenance, {"MedGANTranslate.InputVolume": input_node.GetName()})
            display = output_display(self.request.model.display, provenance)
            scene.apply_synthetic_display(synthetic, display)
            difference = None
            if outputs.get("difference"):
                difference = scene.volume_from_file(outputs["difference"], input_node, names["difference"])
                created.append(difference)
                scene.set_provenance(difference, provenance, {"MedGANTranslate.Kind": "difference"})
                scene.apply_difference_display(difference, display)
            uncertainty = None
            if outputs.get("uncertainty"):
                uncertainty = scene.volume_from_file(outputs["uncertainty"], input_node, names["uncertainty"])
                created.append(uncertainty)
                scene.set_provenance(uncertainty, provenance, {"MedGANTranslate.Kind": "uncertainty"})
                scene.apply_uncertainty_display(uncertainty)
            table = None
            metrics = done.get("metrics")
            if metrics:
                table = scene.metrics_table(metrics, names["metrics"])
                created.append(table)
                scene.set_provenance(table, provenance)
            scene.place_with_input(created, input_node)
            scene.link_results(synthetic, input_node, request.reference, difference, table, uncertainty)
        except BaseException:
            scene.remove_nodes(created)
            raise
        return TranslationResult(synthetic, difference, table, metrics, provenance, list(self.warnings),
                                 list(self.scan_warnings), report_html)

    def _keep_outputs(self, outputs: Dict[str, Any]) -> Dict[str, str]:
        """Moves the engine's output files (a NIfTI's JSON sidecar with it) into :attr:`keep_outputs`."""
        kept = {}
        self.keep_outputs.mkdir(parents=True, exist_ok=True)
        for kind, written in outputs.items():
            if not written or not Path(written).is_file():
                continue
            for source in (Path(written), Path(str(written) + ".json")):
                if source.is_file():
                    shutil.move(str(source), str(self.keep_outputs / source.name))
            kept[kind] = str(self.keep_outputs / Path(written).name)
        return kept

    def _clean_up(self) -> None:
        if self.folder is not None and self.folder.exists():
            shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None


class DeviceQuery:
    """Asks the engine, in the background, which devices it can use; ``on_done(devices)`` gets a list of
    ``{"id", "name"}`` dicts, or None when the engine could not tell (the full log is in :attr:`log`)."""

    def __init__(self, on_done: Callable[[Optional[List[Dict[str, str]]]], None]) -> None:
        self.on_done = on_done
        self.cancelled = False
        self.process = engine_process(["devices", "--json"])
        self.log = ""
        self._timer = poll_timer(self.poll)

    def start(self) -> None:
        self.process.start()
        self._timer.start()

    def poll(self) -> None:
        self.process.poll()
        if not self.process.finished:
            return
        self._timer.stop()
        STOPPING.discard(self)
        self.log = self.process.full_log()
        if not self.cancelled:
            self.on_done(parse_devices(self.process.log_lines) if self.process.returncode == 0 else None)

    def cancel(self) -> None:
        """Stops the query without waiting and without calling ``on_done``."""
        if self.cancelled or self.process.finished:
            return
        self.cancelled = True
        self.process.cancel()
        STOPPING.add(self)


def parse_devices(lines: List[str]) -> Optional[List[Dict[str, str]]]:
    for line in lines:
        try:
            devices = json.loads(line)
        except ValueError:
            continue
        if isinstance(devices, list) and all(isinstance(d, dict) and "id" in d for d in devices):
            return [{"id": str(d["id"]), "name": str(d.get("name", d["id"]))} for d in devices]
    return None
