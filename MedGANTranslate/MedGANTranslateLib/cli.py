"""``medgan-translate``: the command line over the engine.

Exit codes: 0 success, 1 internal error (a bug: the traceback is printed), 2 a problem with the user's input,
card, weights or paths (also a scan refused by ``--strict``), 3 not enough memory, 130 cancelled. With
``--progress json`` every line on stdout is one JSON object (``progress``, ``log``, ``warning``, ``done`` or
``error`` events) for the Slicer module to parse, and every run ends with exactly one ``done`` or ``error``, a
command line argparse refuses included (kind ``usage``). This module is the entry point (:func:`main`,
:func:`console`, :func:`build_parser`) with the translation, cohort, serving, phantom, training and demo
subcommands; the ``models`` family lives in :mod:`.cli_models`, and what all subcommands share in
:mod:`.cli_common`.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from typing import Dict, Optional, Sequence

from .allocator import keep_freed_memory
from .cli_common import (COMMANDS, Output, Parser, UsageError, command, install_cancel_handlers, positive_int,
                         positive_seconds)
from .cli_models import add_models_parser
from .errors import InputError, MedGANError


@command("run")
def cmd_run(args: argparse.Namespace) -> int:
    from .file_translation import translate_files
    from .progress import CancelToken

    out = Output(args.progress)
    token = CancelToken()
    install_cancel_handlers(token)
    result = translate_files(
        args.model,
        args.input,
        args.output,
        reference=args.reference,
        diff=args.diff,
        uncertainty=args.uncertainty,
        metrics_path=args.metrics,
        options=_run_options(args, roi=args.roi, overlap=args.overlap, uncertainty_variants=args.uncertainty_variants),
        progress=out.progress_callback(),
        cancel=token,
        log=out.log,
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


def _run_options(args: argparse.Namespace, **only_run):
    """How the model runs, from the options ``run`` and ``batch`` share; ``only_run``: those only ``run`` has."""
    from .run_options import RunOptions

    return RunOptions(device=args.device, threads=args.threads, models_dirs=tuple(args.models_dir), tta=args.tta,
                      n4=args.n4, strict=args.strict, **only_run)


def format_metrics(metrics: Dict[str, Optional[float]]) -> str:
    rows = [f"  {k:<16} {'n/a' if v is None else f'{v:.4f}'}" for k, v in metrics.items()]
    return "Metrics inside the body mask:\n" + "\n".join(rows)



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

    phantom = make_phantom(seed=args.seed, shape=tuple(args.shape), spacing=tuple(args.spacing), tumour=not args.no_tumour,
                           vessels=args.vessels)
    for name, path in save_phantom(phantom, args.out).items():
        print(f"{name:<8} {path}")
    return 0


@command("train")
def cmd_train(args: argparse.Namespace) -> int:
    from .training import load_config, train

    out = Output(args.progress)
    card = train(load_config(args.config), args.out, resume=not args.restart, progress=out.progress_callback(),
                 log=out.log, cache_dir=args.cache_dir)
    if card is None:  # a rank other than 0 under torchrun: rank 0 publishes the model. It has left the process
        # group and has nothing more to do; the interpreter's own teardown of torch's and gloo's threads sometimes
        # aborted it (SIGABRT, exit code 1 from torchrun after a complete run), so it ends here.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
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
    install_cancel_handlers(token)
    options = BatchOptions(args.model, args.inputs, Path(args.out), _run_options(args), report=args.report,
                           output_format=args.output_format)
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
    run.add_argument("--n4", action="store_true",
                     help="N4 bias-field correction of the MR input(s) before the network, for scans whose intensities "
                          "drift strongly across the head (about 1-2 s for a 1 mm head); recorded in the output "
                          "(MedGANTranslate.BiasCorrection)")
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

    add_models_parser(sub)

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
    batch.add_argument("--n4", action="store_true", help="N4 bias-field correction of every case's MR input(s), as run --n4")
    batch.add_argument("--tta", action="store_true", help="mirror averaging for every case, as run --tta")
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
    phantom.add_argument("--vessels", action="store_true",
                         help="add the dural venous sinuses and choroid plexus (bright on the T1w+Gd)")

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
