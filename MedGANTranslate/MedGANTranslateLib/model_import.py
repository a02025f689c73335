"""``medgan-translate models import``: a checkpoint from a peer's training code becomes a model folder.

The checkpoint is read without running any of its code (``torch.load(weights_only=True)``, safetensors, or a
TorchScript/ONNX file that the engine runs as it is); the architecture and its parameters are read from the key
names and tensor shapes, and :func:`.layout_fit.fit_builtin` finds the layout options (biases, norm, aliases) that
fit exactly. What the weights cannot show is asked for by flags and never guessed silently: padding holds no
weights, so a junyanz, davidiommi or ganslate ResNet loads into any of their layouts and computes something else
in the wrong one; the framework decides it. Nothing is written where the model is to go until the card validates
and one forward pass (the probe) has run: the folder is staged beside it and renamed into place. The source
checkpoint is copied, never modified.

The card then says how the network was trained to be run, but only its training code can prove it:
``medgan-translate models check`` compares the bare network's output with one saved there.

Each step has a module of its own: :mod:`.checkpoint_inspection` reads the file, :mod:`.monai_bundle` a bundle's
config, :mod:`.architecture_inference` decides the network, :mod:`.import_card` turns the answers into the card's
data. This module runs them in order, writes the folder atomically and probes it.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch

from .architecture_inference import Inferred, infer_architecture, infer_monai
from .card import ModelCard, load_card
from .checkpoint_inspection import Checkpoint, read_checkpoint
from .checkpoints import load_generator
from .errors import ImportRefused
from .forward_mode import NORM_STATISTICS
from .import_card import build_card_data, check_answers
from .import_options import FRAMEWORKS, ImportOptions, refusal
from .anatomical_axes import PLANES
from .layers import NORMS
from .model_folder import save_model_folder
from .monai_bundle import BundleSettings, read_bundle
from .registry import sha256_file


@dataclass
class ImportResult:
    """The model folder written, what its network was decided to be and by what, and the probe's answer."""

    card: ModelCard
    source: Path
    framework: str
    family: str
    decided_by: str
    probe: Dict[str, Any]
    notes: List[str]

    @property
    def check_command(self) -> str:
        return f"medgan-translate models check {self.card.folder} --tensor x.npy --expect y.npy"

    def to_dict(self) -> Dict[str, Any]:
        return {
            "card": str(self.card.path),
            "folder": str(self.card.folder),
            "id": self.card.id,
            "version": self.card.version,
            "title": self.card.title,
            "license": self.card.data.get("license", ""),
            "intended_use": self.card.intended_use,
            "source": str(self.source),
            "framework": self.framework,
            "family": self.family,
            "decided_by": self.decided_by,
            "architecture": self.card.architecture,
            "weights": {"file": self.card.weights["file"], "format": self.card.weights["format"],
                        "key": self.card.weights.get("key"), "sha256": self.card.sha256},
            "probe": self.probe,
            "notes": list(self.notes),
            "next": self.check_command,
        }


def import_checkpoint(source: "str | Path", out_dir: "str | Path", options: ImportOptions,
                      device: str = "cpu", log: Optional[Callable[[str, str], None]] = None) -> ImportResult:
    """Imports ``source`` (a checkpoint file, or a MONAI bundle folder with ``framework`` monai-bundle) as the
    model folder ``out_dir``: copy of the checkpoint, ``model.json``, probe. Nothing is left at ``out_dir`` when
    it refuses."""
    say = log or (lambda level, message: None)
    source, out_dir = Path(source), Path(out_dir)
    _check_choices(options)
    _prepare_out(out_dir)
    ckpt, bundle = _read_source(source, options)
    say("info", f"read {ckpt.path} ({ckpt.fmt}" + (f", key {ckpt.key}" if ckpt.key else "") + ")")
    inferred = _infer(ckpt, bundle, options)
    card_data, notes = build_card_data(inferred, ckpt, options, bundle)
    notes = ckpt.notes + inferred.notes + notes
    card, result_probe = _write_folder(out_dir, ckpt, card_data, device, say)
    if not result_probe["finite"]:
        notes.append("the probe's output holds NaN or Inf values on zeros")
    return ImportResult(card, source, inferred.framework, inferred.family, inferred.decided_by, result_probe, notes)


def probe(card: ModelCard, device: str = "cpu") -> Dict[str, Any]:
    """Loads the card's network and runs it once on zeros of the ROI size: that it loads, takes the card's window
    and answers with the same spatial size; returns shapes, output range and time."""
    start = time.perf_counter()
    net = load_generator(card, device=device)
    roi = [int(v) for v in card.inference["roi_size"]]
    x = torch.zeros(1, len(card.inputs), *roi, device=device)
    try:
        with torch.inference_mode():
            y = net(x)
    except Exception as exc:  # the network's own error on the card's window
        raise ImportRefused(
            f"The imported network failed on a window of the card's size {tuple(x.shape)}: {exc}. Check --roi "
            "(and --divisible-by), --planes and the number of --input flags."
        ) from exc
    if not isinstance(y, torch.Tensor) or y.dim() != x.dim() or tuple(y.shape[2:]) != tuple(x.shape[2:]):
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ImportRefused(
            f"The imported network answered a window of {tuple(x.shape)} with {shape}: the engine needs an output "
            "of the window's spatial size (N x 1 x the same sides).")
    y = y.float()
    return {"input_shape": list(x.shape), "output_shape": list(y.shape), "output_min": float(y.min()),
            "output_max": float(y.max()), "output_mean": float(y.mean()), "finite": bool(torch.isfinite(y).all()),
            "seconds": round(time.perf_counter() - start, 3), "device": str(device)}


def describe_architecture(architecture: Mapping[str, Any]) -> str:
    """One line: ``resnet_generator {in_channels: 1, ...}`` and its forward mode."""
    kind = architecture.get("type")
    if kind in ("torchscript", "onnx"):
        return f"{kind} (the file holds the network)"
    params = ", ".join(f"{k}: {json.dumps(v)}" for k, v in (architecture.get("params") or {}).items())
    forward = architecture.get("forward")
    return f"{architecture.get('name')} {{{params}}}" + (f", forward {json.dumps(forward)}" if forward else "")


def _check_choices(options: ImportOptions) -> None:
    """The flags that take one of a few values: refused before anything is read."""
    if options.framework is not None and options.framework not in FRAMEWORKS:
        raise ImportRefused(f"--framework {options.framework!r}: one of {', '.join(FRAMEWORKS)}.")
    for flag, value, allowed in (("--norm", options.norm, NORMS), ("--norm-statistics", options.norm_statistics,
                                                                     NORM_STATISTICS)):
        if value is not None and value not in allowed:
            raise ImportRefused(f"{flag} {value!r}: one of {', '.join(allowed)}.")
    for plane in options.planes:
        if plane not in PLANES:
            raise ImportRefused(f"--planes {plane!r}: one of {', '.join(PLANES)}.")


def _prepare_out(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ImportRefused(f"--out {out_dir} exists and is not an empty folder; choose a new folder for the model "
                            "(models import never overwrites one).")


def _read_source(source: Path, options: ImportOptions) -> Tuple[Checkpoint, Optional[BundleSettings]]:
    """The checkpoint, and for a MONAI bundle folder its settings (the checkpoint is its models/model.pt)."""
    if not (source.is_dir() or options.framework == "monai-bundle"):
        return read_checkpoint(source, options.key), None
    if not source.is_dir():
        raise ImportRefused(f"--framework monai-bundle takes the bundle's folder; {source} is not a folder.")
    if options.framework not in (None, "monai-bundle"):
        raise ImportRefused(f"{source} is a folder: give --framework monai-bundle for a MONAI bundle, or the "
                            "checkpoint file itself.")
    bundle = read_bundle(source)
    ckpt = read_checkpoint(bundle.weights, options.key)
    if ckpt.fmt in ("torchscript", "onnx"):
        raise ImportRefused(f"{bundle.weights} is a {ckpt.fmt} file; import it with --framework {ckpt.fmt}.")
    return ckpt, bundle


def _infer(ckpt: Checkpoint, bundle: Optional[BundleSettings], options: ImportOptions) -> Inferred:
    """The architecture; when the keys cannot decide it, one refusal names that and every other missing answer."""
    missing: List[str] = []
    if bundle is not None:
        network = options.network or bundle.network
        params = options.params if options.params is not None else bundle.params
        inferred = infer_monai(ckpt, network, params, missing, decided_by=f"the bundle's {bundle.config.name}")
        if inferred is not None:
            inferred.notes[:0] = bundle.notes
    else:
        inferred = infer_architecture(ckpt, options, missing)
    if inferred is None:
        wrong: List[str] = []
        check_answers(options, bundle, None, missing, wrong, [])
        raise refusal(missing, wrong)
    return inferred


def _write_folder(out_dir: Path, ckpt: Checkpoint, card_data: Dict[str, Any], device: str,
                  say: Callable[[str, str], None]) -> Tuple[ModelCard, Dict[str, Any]]:
    """Stages the folder beside ``out_dir`` (copy of the checkpoint, card), probes it and renames it into place,
    so that a refusal leaves nothing; a checkpoint that changed while it was copied is not kept."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        os.chmod(staging, 0o777 & ~_umask())
        weights_file = ckpt.path.name if ckpt.path.name != "model.json" else "weights" + ckpt.path.suffix
        shutil.copyfile(ckpt.path, staging / weights_file)
        card = save_model_folder(staging, card_data, fmt=ckpt.fmt, weights_file=weights_file)
        say("info", f"card written; probing the network on zeros of {card.inference['roi_size']}")
        result_probe = probe(card, device)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    card = load_card(out_dir)
    if sha256_file(ckpt.path) != card.sha256:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise ImportRefused(f"Checkpoint {ckpt.path} changed while it was imported; nothing was kept. Try again.")
    return card, result_probe


def _umask() -> int:
    """The process's umask (reading it means setting it): mkdtemp's folder gets the mode a plain mkdir would."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
