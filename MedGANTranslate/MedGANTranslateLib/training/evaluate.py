"""Held-out evaluation through the real pipeline, so a card's numbers are what users get.

Each validation phantom goes through :class:`~MedGANTranslateLib.pipeline.Translator` with its true target
as the reference; the metrics are the pipeline's own (inside its body mask, found on the first input).
Trivial baselines are scored on the same mask, so the card shows what the network adds over them.
"""
from __future__ import annotations

import os
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
import torch

from ..card import ModelCard
from ..file_translation import translate_files
from ..inference_settings import InferenceSettings
from ..metrics import ct_tissue_metrics, image_metrics
from ..normalisation import normalize
from ..output_mapping import map_output
from ..phantom_vessels import CHOROID_PLEXUS, VENOUS_SINUS
from ..pipeline import TranslationResult, Translator
from ..progress import ProgressCallback
from ..run_options import RunOptions
from .data import load_phantom

DEFAULT_PHANTOM = {"shape": [192, 224, 192], "spacing": [1.0, 1.0, 1.0], "tumour": True, "deform": True, "noise": True}
_SEQUENCE_IMAGES = {"T1w": "t1", "T2w": "t2", "T1w+Gd": "t1c"}
#: Scores inside one label of the phantom, per target image: the enhancing tumour rim (and in a phantom with
#: vessels the venous sinuses and choroid plexus) is where a contrast model has to change the T1w, and it is under
#: 0.1 % of the body, too little to move the body MAE.
LABEL_SCORES = {"t1c": {"mae_enhancing_rim": 10, "mae_venous_sinus": VENOUS_SINUS, "mae_choroid_plexus": CHOROID_PLEXUS}}


def phantom_roles(card: ModelCard) -> Tuple[List[str], str]:
    """Which phantom images feed the card's inputs and which one is its target."""
    try:
        inputs = [_SEQUENCE_IMAGES[s.sequence] for s in card.inputs]
    except KeyError as exc:
        raise ValueError(f"The phantom has no image for input sequence {exc} of model {card.id}.") from None
    out = card.output
    target = {"CT": "ct", "PET": "pet"}.get(out["modality"]) or _SEQUENCE_IMAGES.get(out.get("sequence", ""))
    if target is None:
        raise ValueError(f"The phantom has no {out['modality']} {out.get('sequence', '')} image for model {card.id}.")
    return inputs, target


def _score(synth: np.ndarray, ref: np.ndarray, mask: np.ndarray, card: ModelCard, spacing) -> Dict[str, Optional[float]]:
    modality = card.output["modality"]
    scores = image_metrics(synth, ref, mask, modality, spacing=spacing)
    if modality == "CT":
        scores.update(ct_tissue_metrics(synth, ref, mask))
    return scores


def _baselines(card: ModelCard, images: List[sitk.Image], ref: np.ndarray,
               mask: np.ndarray) -> Dict[str, Tuple[Dict[str, Optional[float]], np.ndarray]]:
    """Scores and image of the trivial baseline inside the translation's body ``mask``: CT: bulk density (body
    0 HU, air -1000 HU). PET: uniform SUV 1 in the body. MR: the input itself, mapped to the output scale (no
    predicted change)."""
    pre, post = card.preprocessing, card.postprocessing
    background = float(post.get("background_value") or 0.0)
    modality = card.output["modality"]
    if modality == "CT":
        name, synth = "bulk_density", np.where(mask, 0.0, -1000.0)
    elif modality == "PET":
        name, synth = "uniform_suv1", np.where(mask, 1.0, background)
    else:
        t1 = sitk.GetArrayFromImage(images[0])
        name, synth = "input_as_output", np.where(mask, map_output(normalize(t1, pre["normalization"][0], mask), post), background)
    synth = synth.astype(np.float32)
    return {name: (_score(synth, ref, mask, card, images[0].GetSpacing()), synth)}


def label_scores(synth: np.ndarray, ref: np.ndarray, labels: np.ndarray, target: str) -> Dict[str, Optional[float]]:
    """MAE inside the phantom labels :data:`LABEL_SCORES` names for ``target`` (None where a label is absent)."""
    out: Dict[str, Optional[float]] = {}
    for name, label in LABEL_SCORES.get(target, {}).items():
        inside = labels == label
        out[name] = float(np.abs(synth - ref)[inside].mean()) if inside.any() else None
    return out


def _scores(case: Dict[str, Any]) -> Dict[str, Optional[float]]:
    """A per-case row without its bookkeeping (seed, seconds): the metrics alone."""
    return {k: v for k, v in case.items() if k not in ("seed", "seconds")}


def card_validation(report: Dict[str, Any]) -> Dict[str, Any]:
    """The card's ``validation`` section from an :func:`evaluate_model` report: the means, the baselines and
    each phantom's own numbers, so anyone can re-measure one phantom and compare it with the card."""
    per_case = [dict({k: round(float(v), 4) for k, v in _scores(case).items() if v is not None}, seed=int(case["seed"]))
                for case in report["per_case"]]
    return {"dataset": report["dataset"], "metrics": report["metrics"], "baselines": report["baselines"],
            "per_case": per_case}


def _mean(rows: Sequence[Dict[str, Optional[float]]]) -> Dict[str, float]:
    keys = [k for k in rows[0] if all(r.get(k) is not None for r in rows)]
    return {k: round(float(np.mean([r[k] for r in rows])), 4) for k in keys}


def evaluate_model(
    card: ModelCard,
    seeds: Sequence[int],
    phantom: Optional[Dict[str, Any]] = None,
    cache_dir: Optional[str] = None,
    threads: Optional[int] = None,
    device: str = "cpu",
    log: Optional[Callable[[str, str], None]] = None,
    runtime: bool = True,
    tta: bool = False,
) -> Dict[str, Any]:
    """Mean metrics of ``card`` over the phantoms of ``seeds`` (which must not be training seeds), the
    baselines' means, per-case numbers, and with ``runtime`` the card's runtime section: the seconds of the whole
    translation of the first phantom, model load to written output (:func:`whole_translation`, one run, without
    mirroring; measured on the CPU only); ``tta``: with test-time mirroring."""
    phantom = dict(DEFAULT_PHANTOM, **(phantom or {}))
    input_names, target_name = phantom_roles(card)
    translator = Translator(card, RunOptions(device=device, threads=threads, tta=tta))
    cases, base_cases, precisions = [], {}, set()
    seconds = None
    timed = runtime and device == "cpu"
    for seed in seeds:
        images = load_phantom(int(seed), phantom, cache_dir)
        inputs = [images[n] for n in input_names]
        reference = images[target_name]
        if timed and seconds is None:  # the whole job, as a user waits for it: load, read, ..., write
            seconds = whole_translation(card, inputs, threads)[0]
        result = translator.translate(inputs, reference)
        precisions.add(result.report.precision)
        ref = sitk.GetArrayFromImage(reference).astype(np.float32)
        labels = sitk.GetArrayFromImage(images["labels"])
        synth = sitk.GetArrayFromImage(result.synthetic).astype(np.float32)
        result.metrics.update(label_scores(synth, ref, labels, target_name))
        cases.append(dict(result.metrics, seed=int(seed), seconds=round(result.seconds, 2)))
        mask = sitk.GetArrayViewFromImage(result.body_mask) > 0
        for name, (scores, base) in _baselines(card, inputs, ref, mask).items():
            scores.update(label_scores(base, ref, labels, target_name))
            base_cases.setdefault(name, []).append(scores)
        if log:
            log("info", f"seed {seed}: " + ", ".join(f"{k}={v:.4g}" for k, v in result.metrics.items() if v is not None))
    size = " × ".join(str(int(n)) for n in phantom["shape"])
    spacing = " × ".join(f"{float(s):g}" for s in phantom["spacing"])
    # The precision is part of the result: bfloat16 moves the default CT model's every voxel by ~1 HU (ME).
    precision = " and ".join(sorted(precisions))
    dataset = (f"{len(cases)} held-out digital head phantoms (MedGANTranslateLib.phantom, seeds "
               f"{', '.join(str(s) for s in seeds)}; never used in training), {size} voxels at {spacing} mm. "
               f"Metrics are means over the phantoms, computed by the inference pipeline (network in {precision}"
               f"{', mirror-averaged' if tta else ''}) inside its body mask (found on the first input).")
    return {
        "dataset": dataset,
        "metrics": _mean([_scores(c) for c in cases]),
        "baselines": {name: _mean(rows) for name, rows in base_cases.items()},
        "per_case": cases,
        "runtime": runtime_entry(seconds, torch.get_num_threads(), phantom, translator.settings, precision,
                                 f"seed {seeds[0]}, one run") if timed else {},
    }


def whole_translation(card: ModelCard, inputs: Sequence[sitk.Image], threads: Optional[int] = None,
                      progress: Optional[ProgressCallback] = None) -> Tuple[float, TranslationResult]:
    """Seconds of the whole translation of ``inputs`` on the CPU, as a user waits for it once the engine's
    process runs (``medgan-translate run``, the Slicer module's worker): the model loaded, the inputs read,
    preprocessed, translated, postprocessed and the synthetic volume written. The inputs are written first,
    untimed, as uncompressed NRRD (as the Slicer module hands them over); the output is NRRD too. Returns the
    seconds and the translation's result; ``progress`` receives the engine's progress events."""
    with tempfile.TemporaryDirectory(prefix="medgan-runtime-") as folder:
        paths = []
        for i, image in enumerate(inputs):
            paths.append(os.path.join(folder, f"input{i}.nrrd"))
            sitk.WriteImage(image, paths[-1], useCompression=False)
        start = time.perf_counter()
        result = translate_files(str(card.folder), paths, os.path.join(folder, "synthetic.nrrd"),
                                 options=RunOptions(device="cpu", threads=threads), progress=progress)
        return time.perf_counter() - start, result


def reference_label(phantom: Dict[str, Any]) -> str:
    """The reference volume in a few words, for the Slicer panel: 'a 1 mm phantom head (192 × 224 × 192 voxels)'."""
    spacing = sorted({float(s) for s in phantom["spacing"]})
    mm = f"{spacing[0]:g} mm" if len(spacing) == 1 else " × ".join(f"{float(s):g}" for s in phantom["spacing"]) + " mm"
    return f"a {mm} phantom head ({' × '.join(str(int(n)) for n in phantom['shape'])} voxels)"


def runtime_entry(seconds: float, threads: int, phantom: Dict[str, Any], settings: InferenceSettings,
                  precision: str, how: str) -> Dict[str, Any]:
    """The card's ``runtime`` section for a whole-translation time (:func:`whole_translation`) on the phantom
    ``phantom`` with ``threads`` CPU threads; ``how`` says which phantom and how the time was taken."""
    size = " × ".join(str(int(n)) for n in phantom["shape"])
    spacing = " × ".join(f"{float(s):g}" for s in phantom["spacing"])
    windows = ("large windows over the body (fully convolutional)" if settings.fully_convolutional
               else " × ".join(str(n) for n in settings.roi_size[::-1]) + " windows")
    return {
        "cpu_seconds": float(f"{seconds:.2g}"),  # two significant digits: 0.04 s is not 0
        "cpu_threads": int(threads),
        "reference_label": reference_label(phantom),
        "reference_volume": f"whole translation (model load, read, preprocess, inference, postprocess, write; NRRD "
                            f"in and out) of a phantom head ({how}), {size} voxels at {spacing} mm, {windows}, "
                            f"{precision}, {int(threads)} CPU thread(s)",
    }
