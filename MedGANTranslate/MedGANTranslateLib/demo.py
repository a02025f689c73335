"""The one-command demo: a phantom head, its T1w translated by the default model, and the evidence.

Writes into one folder the phantom's T1w (input) and CT (reference), the synthetic CT, the difference map,
``metrics.json`` and ``preview.png``; needs no download and no user data.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

import SimpleITK as sitk

from .file_translation import translate_files
from .image_writing import write_image
from .phantom import make_phantom
from .pipeline import TranslationResult
from .preview import Panel, output_look, render_preview
from .progress import CancelToken, ProgressCallback
from .registry import DEFAULT_MODEL, resolve_model
from .run_options import RunOptions

DEMO_SEED = 3  # a validation seed: never used for training


def run_demo(
    out_dir: "str | Path",
    model: str = DEFAULT_MODEL,
    seed: int = DEMO_SEED,
    shape: Sequence[int] = (192, 224, 192),
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    device: str = "auto",
    models_dirs: Sequence[str] = (),
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    log=None,
) -> Dict[str, Path]:
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    card = resolve_model(model, models_dirs)
    phantom = make_phantom(seed=seed, shape=tuple(shape), spacing=tuple(spacing))
    target = card.output["modality"].lower()
    reference = {"ct": phantom.ct, "pet": phantom.pet}.get(target)
    if reference is None and card.output.get("sequence", "").lower().startswith("t1w+"):
        reference = phantom.t1c
    sources = {"MR T1w": phantom.t1, "MR T2w": phantom.t2}
    inputs = []
    for spec in card.inputs:
        image = sources.get(spec.label)
        if image is None:
            raise ValueError(f"The demo phantom has no {spec.label} image for model {card.id}.")
        path = out / f"input_{spec.name}.nii.gz"
        write_image(image, path, {"MedGANTranslate.Phantom": f"seed {seed}", "MedGANTranslate.Synthetic": "phantom"})
        inputs.append(str(path))
    paths = {"inputs": [Path(p) for p in inputs]}
    ref_path = None
    if reference is not None:
        ref_path = out / f"reference_{target}.nii.gz"
        write_image(reference, ref_path, {"MedGANTranslate.Phantom": f"seed {seed}"})
        paths["reference"] = ref_path
    result = translate_files(
        str(card.folder),
        inputs,
        str(out / f"synthetic_{target}.nii.gz"),
        reference=str(ref_path) if ref_path else None,
        diff=str(out / "difference.nii.gz") if ref_path or card.difference.get("without_reference") == "minus_input" else None,
        metrics_path=str(out / "metrics.json") if ref_path else None,
        options=RunOptions(device=device, models_dirs=models_dirs),
        progress=progress,
        cancel=cancel,
        log=log,
    )
    paths.update({k: Path(v) for k, v in result.outputs.items() if v})
    if importlib.util.find_spec("matplotlib") is None:  # the optional "preview" extra: the job is done without it
        (log or _to_stderr)("warning", PREVIEW_SKIPPED)
    else:
        paths["preview"] = render_preview(_panels(card, phantom.t1, result, reference), out / "preview.png", _title(card, seed))
    return paths


#: What the demo says instead of drawing preview.png in an install without matplotlib.
PREVIEW_SKIPPED = "No preview.png: matplotlib is not installed (pip install \"medgantranslate[preview]\" to draw it)."


def _to_stderr(level: str, message: str) -> None:
    print(f"{level}: {message}", file=sys.stderr)


def _panels(card, source: sitk.Image, result: TranslationResult, reference: Optional[sitk.Image]):
    look = output_look(card, result.provenance)
    panels = [Panel("input " + card.inputs[0].label, source),
              Panel(card.output_label, result.synthetic, look.kind, look.window)]
    if reference is not None:
        panels.append(Panel("reference (phantom)", reference, look.kind, look.window))
    if result.difference is not None:
        panels.append(Panel("difference", result.difference, "difference", look.difference))
    return panels


def _title(card, seed: int) -> str:
    return f"{card.title} v{card.version} on phantom seed {seed} - synthetic, research use only"
