"""``medgan-translate models``: the model store's subcommands (list, show, verify, describe-training, install,
uninstall, check, import), their handlers and their part of the parser. Apart from :mod:`.cli` because this
family is nearly as large as all the other subcommands together and changes for its own reasons (the store, peer
checkpoints, the equivalence check); importing this module registers ``models`` with
:data:`.cli_common.COMMANDS`.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Dict

from .cli_common import Output, command, install_cancel_handlers, positive_int, positive_seconds
from .errors import MedGANError
from .import_options import FRAMEWORKS


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
    install_cancel_handlers(token)
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


def add_models_parser(subparsers: argparse._SubParsersAction) -> None:
    """The ``models`` subcommand and its own subcommands, added to the top-level parser's subparsers."""
    models = subparsers.add_parser("models", help="list, show, verify, install, uninstall, import or check models")
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
