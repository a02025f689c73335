"""``medgan-translate``: the command line over the engine.

Exit codes: 0 success, 1 internal error (a bug: the traceback is printed), 2 a problem with the user's input,
card, weights or paths (also a scan refused by ``--strict``), 3 not enough memory, 130 cancelled. With
``--progress json`` every line on stdout is one JSON object (``progress``, ``log``, ``warning``, ``done`` or
``error`` events) for the Slicer module to parse, and every run ends with exactly one ``done`` or ``error``, a
command line argparse refuses included (kind ``usage``).
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import traceback
from typing import Callable, Dict, Optional, Sequence

from .allocator import keep_freed_memory
from .errors import InputError, MedGANError
from .import_options import FRAMEWORKS

COMMANDS: Dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def register(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = func
        return func

    return register


class UsageError(Exception):
    """A command line argparse refuses, raised instead of argparse's exit so that ``main`` answers it like any
    other error (in JSON mode, with an ``error`` object)."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


class Parser(argparse.ArgumentParser):
    """argparse's parser, raising :class:`UsageError` where argparse would print and exit; its subparsers are
    of this class too."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(self, message)


def positive_int(text: str) -> int:
    """argparse type for counts such as ``--threads``: 0 or -3 used to be taken silently as 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got '{text}'")
    return value


def positive_seconds(text: str) -> float:
    """argparse type for ``--timeout``: 0 would make every read fail at once."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got '{text}'")
    return value


class Output:
    """Where messages go: JSON lines for programs, plain text for people."""

    def __init__(self, mode: str) -> None:
        self.json = mode == "json"
        self.mode = mode

    def emit(self, event: str, **fields) -> None:
        if self.json:
            sys.stdout.write(json.dumps({"event": event, **fields}, default=str) + "\n")
            sys.stdout.flush()

    def log(self, level: str, message: str) -> None:
        if self.json:
            self.emit("log", level=level, message=message)
        else:
            print(f"{level}: {message}", file=sys.stderr)

    def warning(self, warning) -> None:
        """A scan check's :class:`~MedGANTranslateLib.scan_report.ScanWarning`: a ``warning`` event (code,
        input, message, advice), or one ``warning:`` line on stderr."""
        if self.json:
            self.emit("warning", **warning.to_dict())
        else:
            print(f"warning: [{warning.code}] {warning.text()}", file=sys.stderr)

    def progress_callback(self):
        from .progress import bar_reporter, json_lines_reporter

        if self.mode == "json":
            return json_lines_reporter(sys.stdout)
        if self.mode == "bar":
            return bar_reporter(sys.stderr)
        return None


def _install_cancel_handlers(token) -> None:
    """SIGINT/SIGTERM set the cancel token; the engine stops at the next stage or window and cleans up (exit
    130, every output path as it was). A signal after the outputs' last cancel check, just before they move
    into place (:meth:`.outputs.OutputSet.commit`), is too late: the job completes and exits 0, its outputs in
    place, and :func:`console` ignores the signals from the command's end to the process's exit."""

    def handler(signum, frame):  # noqa: ARG001 - signal handler signature
        token.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, handler)
        except (ValueError, OSError):
            pass


@command("run")
def cmd_run(args: argparse.Namespace) -> int:
    from .file_translation import translate_files
    from .progress import CancelToken

    out = Output(args.progress)
    token = CancelToken()
    _install_cancel_handlers(token)
    result = translate_files(
        args.model,
        args.input,
        args.output,
        reference=args.reference,
        diff=args.diff,
        uncertainty=args.uncertainty,
        uncertainty_variants=args.uncertainty_variants,
        metrics_path=args.metrics,
        device=args.device,
        roi=args.roi,
        overlap=args.overlap,
        models_dirs=args.models_dir,
        threads=args.threads,
        progress=out.progress_callback(),
        cancel=token,
        log=out.log,
        tta=args.tta,
        strict=args.strict,
        on_warning=out.warning,
        report=args.report,
        report_options=_report_options(args),
    )
    report = result.report
    if out.json:
        out.emit(
            "done",
            outputs=result.outputs,
            metrics=result.metrics,
            metrics_omitted=result.metrics_omitted or None,
            provenance=result.provenance,
            windows={"total": report.windows_total, "computed": report.windows_computed, "skipped": report.windows_skipped},
        )
        return 0
    print(f"Synthetic {result.provenance['MedGANTranslate.Modality']} written to {result.outputs['synthetic']}")
    if result.outputs.get("difference"):
        print(f"Difference map written to {result.outputs['difference']}")
    if result.outputs.get("report"):
        print(f"QA report written to {result.outputs['report']}")
    print(
        f"Model {result.provenance['MedGANTranslate.ModelId']} v{result.provenance['MedGANTranslate.ModelVersion']} "
        f"on {report.device}: {result.seconds:.1f} s, {report.windows_computed} of {report.windows_total} windows computed "
        f"({report.windows_skipped} background windows skipped)"
    )
    if result.metrics:
        print(format_metrics(result.metrics))
    if result.metrics_omitted:
        print(result.metrics_omitted)
    if result.outputs.get("uncertainty"):
        seconds = ", ".join(f"{label} {t:.2f} s" for label, t in result.variant_seconds)
        print(f"Uncertainty map ({result.provenance['MedGANTranslate.Uncertainty']}; "
              f"{result.provenance['MedGANTranslate.Unit']}) written to {result.outputs['uncertainty']}. "
              f"Inference per variant: {seconds}")
    return 0


def _report_options(args: argparse.Namespace):
    """The QA report's options from the command line (input names, uncertainty threshold); None when none given."""
    from .report import ReportOptions

    if not (args.report_input_name or args.report_reference_name or args.report_uncertainty_threshold is not None):
        return None
    return ReportOptions(tuple(args.report_input_name), args.report_reference_name or "",
                         args.report_uncertainty_threshold)


def format_metrics(metrics: Dict[str, Optional[float]]) -> str:
    rows = [f"  {k:<16} {'n/a' if v is None else f'{v:.4f}'}" for k, v in metrics.items()]
    return "Metrics inside the body mask:\n" + "\n".join(rows)


@command("models")
def cmd_models(args: argparse.Namespace) -> int:
    from .registry import resolve_model, scan_models, verify_weights

    if args.models_command == "describe-training":  # a folder and its config: no registry
        return describe_training(args)
    if args.models_command in ("install", "uninstall"):  # the user's model store only
        return install_model(args) if args.models_command == "install" else uninstall_model(args)
    if args.models_command in ("check", "import"):  # a checkpoint, or one model and two arrays
        return check_model(args) if args.models_command == "check" else import_model(args)
    models, broken = scan_models(args.models_dir)
    if args.models_command == "list":
        for card in broken:
            print(f"warning: {card.warning()}", file=sys.stderr)
        if args.json:
            print(json.dumps([_summary_dict(s) for s in models], indent=2))
            return 0
        if not models:
            print("No models found. Add a folder with --models-dir or the MEDGAN_TRANSLATE_MODELS variable.")
            return 0
        print(f"{'ID':<28} {'VERSION':<9} {'INPUT':<16} {'OUTPUT':<10} TITLE")
        for s in models:
            inputs = "+".join(i.label for i in s.inputs)
            flag = " (deprecated)" if s.deprecated else ""
            print(f"{s.id:<28} {s.version:<9} {inputs:<16} {s.output_modality + ' ' + s.output_unit:<10} {s.title}{flag}")
        return 0
    if args.models_command == "show":
        card = resolve_model(args.model, args.models_dir)
        print(json.dumps(card.data, indent=2))
        return 0
    ids = [args.model] if args.model else [s.id + "@" + s.version for s in models]
    unreadable = [] if args.model else broken
    for card in unreadable:
        print(f"FAILED  {card.declared_id or card.path}: {card.error}")
    failures = len(unreadable)
    for model_id in ids:
        try:
            card = resolve_model(model_id, args.models_dir)
            verify_weights(card)
            print(f"OK      {card.id} v{card.version}: card valid, SHA-256 {card.sha256[:12]}... matches")
        except MedGANError as exc:
            failures += 1
            print(f"FAILED  {model_id}: {exc}")
    return 2 if failures else 0


def describe_training(args: argparse.Namespace) -> int:
    """Writes the statistics of a model's training inputs (from its training config) into its card, for the scan
    checks; weights and version stay as they are."""
    from .training import describe_model, load_config

    card = describe_model(args.model, load_config(args.config), cache_dir=args.cache_dir)
    reference = card.training_inputs
    print(f"Model {card.id} v{card.version}: training_inputs from {reference['source']} written to {card.path}")
    return 0


def install_model(args: argparse.Namespace) -> int:
    """Downloads a zipped model folder, checks it (SHA-256 before extraction, safe paths, card, weights, a probe
    load) and moves it into the user's model store; prints what the model is for and under which licence."""
    from .model_install import install_model as install
    from .progress import CancelToken

    out = Output(args.progress)
    token = CancelToken()
    _install_cancel_handlers(token)
    result = install(args.url, args.sha256, force=args.force, progress=out.progress_callback(), cancel=token,
                     log=out.log, timeout=args.timeout)
    model = result.to_dict()
    if out.json:
        out.emit("done", status=result.status, model=model, source={"url": result.url, "sha256": result.sha256})
        return 0
    said = {"installed": "Installed", "already-installed": "Already installed (same files)", "replaced": "Replaced"}
    print(f"{said[result.status]}: {model['id']} v{model['version']}, {model['title']}")
    print(f"  licence:      {model['license']}")
    print(f"  intended use: {model['intended_use']}")
    print(f"  folder:       {model['folder']}")
    print(f"Run it with: medgan-translate run --model {model['id']}@{model['version']} -i INPUT -o OUTPUT")
    return 0


def uninstall_model(args: argparse.Namespace) -> int:
    """Removes a model from the user's model store (never a bundled model or a --models-dir folder)."""
    from .model_install import uninstall_model as uninstall

    model_id, version, folder = uninstall(args.model)
    out = Output(args.progress)
    if out.json:
        out.emit("done", status="uninstalled", model={"id": model_id, "version": version, "folder": str(folder)})
    else:
        print(f"Uninstalled {model_id}{' v' + version if version else ''}: removed {folder}")
    return 0


CHECK_HELP = ("run a model's bare network (no pre- or post-processing) on an array saved with numpy.save and compare "
              "its output with the one your training code gave for it: the proof that an imported model computes "
              "what your training code computes. Exit 0 when the largest difference is within --atol, 1 when not, "
              "2 when the arrays cannot be compared")
IMPORT_HELP = ("make a model folder from a checkpoint of junyanz's pytorch-CycleGAN-and-pix2pix, davidiommi's "
               "3D-CycleGan-Pytorch-MedImaging, ganslate or MONAI (or a TorchScript/ONNX file): the architecture is "
               "read from the weights, what they cannot show is asked for by flags; the checkpoint is copied, read "
               "without unpickling objects, and probed once. Then prove it with 'models check'")
_MISMATCH_ADVICE = (
    "The card's network does not compute what produced --expect. Check, in this order: that --expect is your "
    "network's output for exactly --tensor, with the same weights; the framework (padding holds no weights: import "
    "again with the right --framework); whether your test script calls eval() (if not: --norm-statistics window); "
    "dropout left on at test time (the output then varies from run to run); the norm (--norm).")


def check_model(args: argparse.Namespace) -> int:
    """``models check``: exit 0 when the network's output matches the expected one within --atol, else 1."""
    from .model_check import check_model as check

    result = check(args.model, args.tensor, args.expect, atol=args.atol, device=args.device,
                   models_dirs=args.models_dir)
    out = Output(args.progress)
    if out.json:
        out.emit("done", check=result.to_dict())
    else:
        print(result.summary())
        if not result.passed:
            print(_MISMATCH_ADVICE)
    return 0 if result.passed else 1


def import_model(args: argparse.Namespace) -> int:
    """``models import``: the checkpoint copied into --out with a card read from its weights and the flags."""
    from .model_import import ImportOptions, ImportRefused, describe_architecture, import_checkpoint

    params = None
    if args.params is not None:
        try:
            text = open(args.params, encoding="utf-8").read() if args.params.endswith(".json") else args.params
            params = json.loads(text)
        except (OSError, ValueError) as exc:
            raise ImportRefused(f"--params {args.params!r} is neither a JSON object nor a readable .json file: {exc}")
        if not isinstance(params, dict):
            raise ImportRefused(f"--params must be a JSON object of keyword arguments, got {args.params!r}.")
    options = ImportOptions(
        framework=args.framework, key=args.key, model_id=args.id, version=args.version, title=args.title,
        description=args.description, inputs=args.input, output_modality=args.output_modality,
        output_range=args.output_range, network_range=args.network_range, spacing=args.spacing,
        orientation=args.orientation, normalization=args.normalization, roi=args.roi, planes=args.planes or (),
        site=args.site, license=args.license, intended_use=args.intended_use, norm=args.norm,
        norm_statistics=args.norm_statistics, dropout=args.dropout, network=args.network, params=params,
        divisible_by=args.divisible_by, direction=args.direction)
    out = Output(args.progress)
    result = import_checkpoint(args.checkpoint, args.out, options, device=args.device,
                               log=out.log if out.json else None)
    if out.json:
        out.emit("done", model=result.to_dict())
        return 0
    card, probe = result.card, result.probe
    shape = lambda dims: "x".join(str(d) for d in dims)  # noqa: E731
    print(f"Imported {result.source} as model '{card.id}' v{card.version}: {card.path}")
    print(f"  network:      {result.framework} {result.family} (decided by {result.decided_by})")
    print(f"  architecture: {describe_architecture(card.architecture)}")
    print(f"  weights:      {card.weights_path} ({card.weights['format']}"
          + (f", key {card.weights['key']}" if card.weights.get("key") else "") + f"), SHA-256 {card.sha256}")
    print(f"  probe:        zeros {shape(probe['input_shape'])} -> {shape(probe['output_shape'])}, output in "
          f"[{probe['output_min']:.4g}, {probe['output_max']:.4g}], {probe['seconds']:.2f} s on {probe['device']}")
    for note in result.notes:
        print(f"  note: {note}")
    size = ", ".join(str(d) for d in probe["input_shape"])
    print("Before you use it, prove that it computes what your training code computes. In your training "
          "environment, with the network in the mode your test script runs it:")
    print(f"    x = torch.randn({size}); y = net(x)")
    print('    numpy.save("x.npy", x.numpy()); numpy.save("y.npy", y.detach().cpu().numpy())')
    print(f"then here: {result.check_command}")
    return 0


def _summary_dict(s) -> Dict:
    return {
        "id": s.id,
        "version": s.version,
        "title": s.title,
        "inputs": [{"name": i.name, "modality": i.modality, "sequence": i.sequence, "name_pattern": i.name_pattern} for i in s.inputs],
        "output_modality": s.output_modality,
        "output_unit": s.output_unit,
        "site": s.site,
        "intended_use": s.intended_use,
        "path": str(s.path),
        "deprecated": s.deprecated,
        "cpu_seconds": s.cpu_seconds,
        "cpu_threads": s.cpu_threads,
        "gpu_seconds": s.gpu_seconds,
        "runtime_reference": s.runtime_reference,
    }


@command("devices")
def cmd_devices(args: argparse.Namespace) -> int:
    from .devices import configure_threads, list_devices

    configure_threads()
    devices = list_devices()
    if args.json:
        print(json.dumps(devices))
    else:
        for d in devices:
            print(f"{d['id']:<8} {d['name']}")
    return 0


@command("phantom")
def cmd_phantom(args: argparse.Namespace) -> int:
    from .phantom import make_phantom, save_phantom

    phantom = make_phantom(seed=args.seed, shape=tuple(args.shape), spacing=tuple(args.spacing), tumour=not args.no_tumour)
    for name, path in save_phantom(phantom, args.out).items():
        print(f"{name:<8} {path}")
    return 0


@command("train")
def cmd_train(args: argparse.Namespace) -> int:
    from .training import load_config, train

    out = Output(args.progress)
    card = train(load_config(args.config), args.out, resume=not args.restart, progress=out.progress_callback(),
                 log=out.log, cache_dir=args.cache_dir)
    if card is None:  # a rank other than 0 under torchrun: rank 0 publishes the model
        return 0
    if out.json:
        out.emit("done", model={"id": card.id, "version": card.version, "folder": str(card.folder)})
    else:
        print(f"Model {card.id} v{card.version} written to {card.folder}")
    return 0


@command("batch")
def cmd_batch(args: argparse.Namespace) -> int:
    """Exit code 0 when every case is done (this run or before), 2 when some failed (each one's error is in the
    manifest), 130 when cancelled (the cases not finished stay pending for the rerun)."""
    from pathlib import Path

    from .batch import BatchOptions, run_batch
    from .progress import CancelToken

    out = Output(args.progress)
    token = CancelToken()
    _install_cancel_handlers(token)
    options = BatchOptions(args.model, args.inputs, Path(args.out), device=args.device, report=args.report,
                           output_format=args.output_format, threads=args.threads, models_dirs=args.models_dir,
                           strict=args.strict)
    summary = run_batch(options, progress=out.progress_callback(), cancel=token, log=out.log,
                        on_case=lambda row: out.emit("case", **row))
    if summary is None:  # a rank other than 0: rank 0 reports for everyone
        return 0
    if out.json:
        out.emit("done", summary=summary.__dict__)
    else:
        print(summary.table())
    return 2 if summary.counts.get("failed") else 0


@command("serve")
def cmd_serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    try:
        from MedGANTranslateWeb.server import Settings, serve
    except ImportError as exc:
        raise InputError(f"The web face needs its extra packages ({exc.name} is missing): "
                         "pip install 'medgantranslate[web]' (Python >= 3.10).") from exc
    return serve(Settings(host=args.host, port=args.port, data_root=Path(args.data_root) if args.data_root else None,
                          max_upload_bytes=args.max_upload_mb << 20, max_sessions=args.max_sessions,
                          idle_s=args.idle_minutes * 60.0, work_dir=Path(args.work_dir) if args.work_dir else None,
                          models_dirs=list(args.models_dir)))


@command("demo")
def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    out = Output(args.progress)
    paths = run_demo(args.out, model=args.model, seed=args.seed, device=args.device, progress=out.progress_callback(), log=out.log)
    metrics = None
    if "metrics" in paths:
        with open(paths["metrics"], encoding="utf-8") as f:
            metrics = {k: v for k, v in json.load(f).items() if isinstance(v, (int, float)) or v is None}
    if out.json:
        out.emit("done", outputs=paths, metrics=metrics)
        return 0
    print("Demo outputs (synthetic images are labelled as such; research use only):")
    for name, path in paths.items():
        shown = ", ".join(str(p) for p in path) if isinstance(path, list) else str(path)
        print(f"  {name:<11} {shown}")
    if metrics is not None:
        print(format_metrics(metrics))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .registry import DEFAULT_MODEL  # the standard library only: the parser stays quick to build

    parser = Parser(
        prog="medgan-translate",
        description="Synthetic CT, PET or contrast images from a scan with pretrained 3D GAN generators. "
        "Research use only, not for clinical decisions.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="translate a volume with a model")
    run.add_argument("--model", "-m", required=True, help="model id (id or id@version) or model folder")
    run.add_argument("--input", "-i", action="append", required=True, help="input volume or DICOM folder; repeat for multi-input models")
    run.add_argument("--output", "-o", required=True, help="synthetic volume to write (.nii.gz, .nrrd, .mha, .mhd, or a folder for DICOM)")
    run.add_argument("--reference", help="real volume of the target modality: enables the difference map and metrics")
    run.add_argument("--diff", help="difference map to write (synthetic minus reference)")
    run.add_argument("--metrics", help="JSON file for MAE, ME, RMSE, PSNR, SSIM inside the body")
    run.add_argument("--uncertainty", metavar="FILE",
                     help="also write an uncertainty map: per voxel, the standard deviation (in output units, HU for "
                          "CT) of the model's output over test-time variants (the mirror images the card declares, "
                          "shifts of the window grid, Monte-Carlo dropout draws, ensemble members the card lists); the "
                          "synthetic image is then their mean. Costs one inference per variant (default 4 for the "
                          "bundled models)")
    run.add_argument("--uncertainty-variants", type=positive_int, metavar="N",
                     help="test-time variants per ensemble member for --uncertainty: the scan as is, then its mirror "
                          "images, then window-grid shifts (default: as is, each mirror image and 2 shifts)")
    run.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda, cuda:N, mps")
    run.add_argument("--roi", type=int, nargs="+", metavar="N",
                     help="sliding-window size in voxels: X Y Z, or the two in-plane sides for a 2D model (default: the "
                          "card's; a fully convolutional model runs on a few large windows over the body unless --roi or "
                          "--overlap is given)")
    run.add_argument("--overlap", type=float, help="sliding-window overlap in [0, 1)")
    run.add_argument("--tta", action="store_true",
                     help="test-time augmentation: average the output with that of the input's mirror image along the "
                          "axes the model card declares (left-right for the bundled models); more accurate, about twice "
                          "the inference time")
    run.add_argument("--strict", action="store_true",
                     help="refuse (exit 2, nothing written) a scan the checks warn about: wrong modality, skull-stripped "
                          "input to a whole-head model, field of view, spacing or contrast far from the training inputs")
    run.add_argument("--report", metavar="FILE.html",
                     help="write a QA report, one self-contained HTML page (inputs, model, warnings, pictures, "
                          "histogram, metrics, uncertainty, run), with the other outputs")
    run.add_argument("--report-input-name", action="append", default=[], metavar="NAME",
                     help="how the report names an input (default: its path); once per -i, in the same order")
    run.add_argument("--report-reference-name", metavar="NAME", help="how the report names the reference")
    run.add_argument("--report-uncertainty-threshold", type=float, metavar="VALUE",
                     help="the report gives the share of the body whose uncertainty is above VALUE, in output units "
                          "(default 100 for HU; a tenth of the display window for other outputs)")
    run.add_argument("--threads", type=positive_int, help="CPU threads (default: all cores on small machines, one free on larger)")
    run.add_argument("--progress", choices=["bar", "json", "none"], default="bar")
    run.add_argument("--models-dir", action="append", default=[], help="extra folder of model folders")

    models = sub.add_parser("models", help="list, show, verify, install, uninstall, import or check models")
    msub = models.add_subparsers(dest="models_command", required=True)
    mlist = msub.add_parser("list", help="list known models")
    mlist.add_argument("--json", action="store_true")
    mshow = msub.add_parser("show", help="print a model card")
    mshow.add_argument("model")
    mverify = msub.add_parser("verify", help="validate cards and recompute weight checksums")
    mverify.add_argument("model", nargs="?")
    for p in (mlist, mshow, mverify):
        p.add_argument("--models-dir", action="append", default=[])
    mdescribe = msub.add_parser("describe-training", help="write the statistics of a model's training inputs into "
                                                          "its card (for the scan checks; weights and version unchanged)")
    mdescribe.add_argument("model", help="model folder")
    mdescribe.add_argument("--config", required=True, help="the model's training config, e.g. models/<id>/train.yaml")
    mdescribe.add_argument("--cache-dir", help="where phantoms are kept between runs (default: not kept)")
    minstall = msub.add_parser("install", help="download a zipped model folder into your model store (checked "
                                               "against --sha256 before anything is extracted; nothing in it is run)")
    minstall.add_argument("url", help="http(s) URL of a zip holding one model folder (model.json and its weights)")
    minstall.add_argument("--sha256", required=True, help="the zip's SHA-256, as its publisher gives it")
    minstall.add_argument("--force", action="store_true", help="replace an installed model of the same id and "
                                                               "version whose files differ")
    minstall.add_argument("--timeout", type=positive_seconds, default=30.0,
                          help="seconds without an answer from the server before the download stops (default 30)")
    minstall.add_argument("--progress", choices=["bar", "json", "none"], default="bar")
    muninstall = msub.add_parser("uninstall", help="remove an installed model from your model store")
    muninstall.add_argument("model", help="ID or ID@VERSION of an installed model")
    muninstall.add_argument("--progress", choices=["bar", "json", "none"], default="none")
    mcheck = msub.add_parser("check", help=CHECK_HELP, description=CHECK_HELP[0].upper() + CHECK_HELP[1:] + ".")
    mcheck.add_argument("model", help="model id, id@version or folder")
    mcheck.add_argument("--tensor", required=True, help="the input, N x C x spatial (or C x spatial), .npy")
    mcheck.add_argument("--expect", required=True, help="your training code's output for it, .npy")
    mcheck.add_argument("--atol", type=float, default=1e-5, help="largest absolute difference allowed (default 1e-5)")
    mcheck.add_argument("--device", default="cpu", help="cpu (default), auto, cuda, cuda:N")
    mcheck.add_argument("--json", dest="progress", action="store_const", const="json", default="none",
                        help="print the result as one JSON object")
    mcheck.add_argument("--models-dir", action="append", default=[])
    mimport = msub.add_parser("import", help=IMPORT_HELP, description=IMPORT_HELP[0].upper() + IMPORT_HELP[1:] + ".")
    mimport.add_argument("checkpoint", help="checkpoint file (.pth, .pt, .safetensors, .onnx) or MONAI bundle folder")
    mimport.add_argument("--out", required=True, help="the new model folder (must not exist, or be empty)")
    mimport.add_argument("--framework", choices=FRAMEWORKS,
                         help="the code that trained it; required when the weights cannot tell (a ResNet's padding)")
    mimport.add_argument("--key", help="the generator's key in a checkpoint of several networks (default G_AB or G)")
    mimport.add_argument("--id", help="the model's id (required)")
    mimport.add_argument("--version", default="0.1.0")
    mimport.add_argument("--title")
    mimport.add_argument("--description")
    mimport.add_argument("--input", action="append", default=[], metavar="MODALITY[:SEQUENCE]",
                         help="one per input channel, in channel order, e.g. MR:T1w (required)")
    mimport.add_argument("--output-modality", help="CT, CBCT, PET, SPECT or MR (required)")
    mimport.add_argument("--output-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                         help="output values the network's -1..1 maps to, e.g. -1024 3071 for CT (required)")
    mimport.add_argument("--network-range", type=float, nargs=2, default=[-1.0, 1.0], metavar=("LOW", "HIGH"),
                         help="the network's output range that --output-range maps (default -1 1, tanh)")
    mimport.add_argument("--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"),
                         help="voxel spacing in mm the network was trained on (required)")
    mimport.add_argument("--orientation", help="orientation the training scans had, e.g. LPS or RAS (default: none)")
    mimport.add_argument("--normalization", action="append", default=[], metavar="SPEC",
                         help="percentile:LOW:HIGH[:A:B], range:MIN:MAX[:A:B], zscore or minmax[:A:B]; once, or "
                              "once per input (required)")
    mimport.add_argument("--roi", type=positive_int, nargs="+", metavar="N",
                         help="window size, 3 numbers (2 for a 2D network); default 64^3 or 256^2")
    mimport.add_argument("--planes", nargs="+", choices=["axial", "coronal", "sagittal"],
                         help="2D networks: planes to run slice by slice (default axial)")
    mimport.add_argument("--site", default="", help="anatomical site, e.g. head")
    mimport.add_argument("--license", help="the weights' licence")
    mimport.add_argument("--intended-use", help="default: research use only")
    mimport.add_argument("--norm", choices=["instance", "batch", "none"], help="when the weights fit several norms")
    mimport.add_argument("--norm-statistics", choices=["running", "window"],
                         help="window: the test script never called eval() (batch statistics of each window)")
    mimport.add_argument("--dropout", action="store_true", help="the test script kept dropout active")
    mimport.add_argument("--direction", choices=["forward", "inverse"], help="ganslate V-Net with use_inverse: B to A")
    mimport.add_argument("--network", help="monai: the monai.networks.nets class")
    mimport.add_argument("--params", help="monai: the class's keyword arguments, JSON or a .json file")
    mimport.add_argument("--divisible-by", type=positive_int, help="TorchScript/ONNX: sizes the network takes")
    mimport.add_argument("--device", default="cpu", help="where the probe runs (default cpu)")
    mimport.add_argument("--progress", choices=["bar", "json", "none"], default="none")
    mimport.add_argument("--json", dest="progress", action="store_const", const="json", help="same as --progress json")

    batch = sub.add_parser("batch", help="translate a cohort case by case, resumable; under torchrun, across "
                                         "processes, GPUs and nodes")
    batch.add_argument("--model", "-m", required=True, help="model id (id or id@version) or model folder")
    batch.add_argument("--inputs", required=True, metavar="LIST|GLOB|CSV",
                       help="the cases: a CSV (columns: optional id, one per input named as the card names them or "
                            "input1.., optional reference), a text file with one case per line (inputs separated by "
                            "commas), or a quoted glob pattern (single-input models)")
    batch.add_argument("--out", required=True, help="folder for <case>/ outputs, status/, manifest.jsonl, summary.json")
    batch.add_argument("--report", action="store_true", help="also a QA report per case (<case>/report.html)")
    batch.add_argument("--format", dest="output_format", default=".nii.gz", choices=[".nii.gz", ".nrrd", ".mha"],
                       help="output image format (default .nii.gz)")
    batch.add_argument("--device", default="auto",
                       help="auto (each rank its own GPU when there are GPUs, else the CPU), cpu, cuda:N")
    batch.add_argument("--threads", type=positive_int, help="CPU threads per process (default: the cores shared "
                                                             "among the processes on the machine)")
    batch.add_argument("--strict", action="store_true", help="refuse (record as failed) scans the checks warn about")
    batch.add_argument("--models-dir", action="append", default=[], help="extra folder of model folders")
    batch.add_argument("--progress", choices=["bar", "json", "none"], default="bar")

    serve = sub.add_parser("serve", help="the web face: open, translate and review scans in a browser "
                                         "(needs the 'web' extra: pip install 'medgantranslate[web]')")
    serve.add_argument("--host", default="127.0.0.1",
                       help="interface to listen on (default 127.0.0.1, this machine only; any other needs the token "
                            "printed at start, or MEDGAN_TRANSLATE_TOKEN)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    serve.add_argument("--data-root", help="folder whose scans the browser may open (nothing outside it is readable)")
    serve.add_argument("--max-upload-mb", type=positive_int, default=2048, help="largest upload (default 2048 MB)")
    serve.add_argument("--max-sessions", type=positive_int, default=4,
                       help="browser sessions at once, each its own process with a Slicer scene (default 4)")
    serve.add_argument("--idle-minutes", type=positive_seconds, default=30.0,
                       help="a session unseen this long is closed with its files (default 30)")
    serve.add_argument("--work-dir", help="where sessions keep uploads and results (default: a temporary folder, "
                                          "removed at exit)")
    serve.add_argument("--models-dir", action="append", default=[], help="extra folder of model folders")

    devices = sub.add_parser("devices", help="list devices the engine can use")
    devices.add_argument("--json", action="store_true")

    phantom = sub.add_parser("phantom", help="write a synthetic head phantom (T1w, T2w, CT, PET, T1w+Gd, labels)")
    phantom.add_argument("--out", required=True, help="output folder")
    phantom.add_argument("--seed", type=int, default=0)
    phantom.add_argument("--shape", type=int, nargs=3, default=[192, 224, 192], metavar=("X", "Y", "Z"))
    phantom.add_argument("--spacing", type=float, nargs=3, default=[1.0, 1.0, 1.0], metavar=("X", "Y", "Z"))
    phantom.add_argument("--no-tumour", action="store_true")

    train = sub.add_parser("train", help="train a generator on phantoms from a YAML/JSON config")
    train.add_argument("--config", required=True, help="training config (YAML or JSON), e.g. models/<id>/train.yaml")
    train.add_argument("--out", required=True, help="run folder: checkpoints, loss log and the final model folder")
    train.add_argument("--restart", action="store_true", help="ignore existing checkpoints in --out")
    train.add_argument("--cache-dir", help="where generated phantoms are kept, to share them between runs "
                                           "(default: OUT/phantoms)")
    train.add_argument("--progress", choices=["bar", "json", "none"], default="bar")

    demo = sub.add_parser("demo", help="translate a phantom head with the default model and write a preview")
    demo.add_argument("--out", default="demo_output")
    demo.add_argument("--model", default=DEFAULT_MODEL, help=f"model id (default: {DEFAULT_MODEL}, the default model)")
    demo.add_argument("--seed", type=int, default=3, help="phantom seed (validation seeds are never used for training)")
    demo.add_argument("--device", default="auto")
    demo.add_argument("--progress", choices=["bar", "json", "none"], default="bar")
    return parser


def _progress_mode(argv: Sequence[str]) -> str:
    """The ``--progress`` a command line asks for, read without argparse, which has refused the line."""
    for i, arg in enumerate(argv):
        if arg.startswith("--progress="):
            return arg.partition("=")[2]
        if arg == "--progress" and i + 1 < len(argv):
            return argv[i + 1]
    return "none"


def usage_error(exc: UsageError, argv: Sequence[str]) -> int:
    """argparse's answer to a command line it refuses (usage and message on stderr, exit 2) and, in JSON mode,
    an ``error`` object of kind ``usage``, so a program reading the lines learns why."""
    exc.parser.print_usage(sys.stderr)
    print(f"{exc.parser.prog}: error: {exc}", file=sys.stderr)
    Output(_progress_mode(argv)).emit("error", kind="usage", message=f"{exc}. See '{exc.parser.prog} --help'.")
    return 2


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        return usage_error(exc, argv)
    keep_freed_memory()  # this process runs one job: reuse freed memory instead of faulting in fresh pages
    mode = getattr(args, "progress", "none")
    out = Output(mode)
    try:
        return COMMANDS[args.command](args)
    except MedGANError as exc:
        if out.json:
            out.emit("error", kind=exc.kind, message=str(exc))
        else:
            print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        out.emit("error", kind="cancelled", message="Interrupted.")
        return 130
    except Exception as exc:  # a bug: say so and keep the traceback for the log
        traceback.print_exc()
        if out.json:
            out.emit("error", kind="internal", message=f"Internal error: {exc!r}. The full log has the traceback.")
        return 1


def console() -> None:
    """The program (``medgan-translate``, ``python -m MedGANTranslateLib.cli``): runs :func:`main` and exits with
    its code, ignoring SIGINT and SIGTERM from the moment the command returns.

    Why: the exit code and the last JSON event are final once the command returns, but the interpreter's
    shutdown (torch's included) takes a few hundred milliseconds, and it puts the default signal actions back
    first: a SIGTERM then killed the process (status -15) after it had said ``done`` with every output in
    place. A signal that comes that late is too late to cancel anything, so it is ignored and the exit code
    stays true. Ignoring (not blocking) also covers torch's threads, and an ignored signal stays ignored
    through the shutdown. :func:`main` does not ignore them, for callers in a longer-lived process."""
    code = main()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    sys.exit(code)


if __name__ == "__main__":
    console()
