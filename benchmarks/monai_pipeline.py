"""The second baseline (issue 27): the end-to-end pipeline a careful MONAI user writes from the tutorials, with the
card's settings, timed the way ``bench_lib.child_run`` times the engine.

    LoadImaged -> EnsureChannelFirstd -> Orientationd -> Spacingd -> ScaleIntensityRangePercentilesd (or
    ScaleIntensityRanged for a card's fixed range)
    -> sliding_window_inference -> Invertd -> output mapping and clip -> SaveImaged

It knows what the card says (orientation, spacing, percentile normalisation, ROI, overlap, Gaussian blending,
output mapping and clip) but not the engine's extras: no body mask (percentiles over the whole image, no
background value outside the head), no large windows, no skipped background windows, float32, batch size 1.
Multi-input models are concatenated channel-first (ConcatItemsd), as MONAI's multi-modal tutorials do.
"""
from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
from monai.inferers import sliding_window_inference
from monai.transforms import (Compose, ConcatItemsd, EnsureChannelFirstd, Invertd, LoadImaged, Orientationd,
                              SaveImaged, ScaleIntensityRanged, ScaleIntensityRangePercentilesd, Spacingd,
                              ThresholdIntensityd)

from MedGANTranslateLib.card import ModelCard
from MedGANTranslateLib.checkpoints import load_generator
from MedGANTranslateLib.pipeline import inference_settings
from MedGANTranslateLib.window_planning import count_windows

from bench_lib import flops_of_forward, peak_rss_mb


def _normalisation(card: ModelCard, key: str, index: int):
    """The card's normalisation of input ``index`` as MONAI's transform: percentiles over the whole image, or the
    fixed range."""
    specs = card.preprocessing["normalization"]
    spec = specs[index] if len(specs) > index else specs[-1]
    low, high = spec.get("target_range", [-1, 1])
    if spec.get("method") == "percentile":
        return ScaleIntensityRangePercentilesd(keys=key, lower=spec["lower"], upper=spec["upper"], b_min=low,
                                               b_max=high, clip=True)
    if spec.get("method") == "range":
        (a_min, a_max) = spec["source_range"]
        return ScaleIntensityRanged(keys=key, a_min=a_min, a_max=a_max, b_min=low, b_max=high, clip=True)
    raise SystemExit(f"the MONAI tutorial baseline knows percentile and range normalisation, not {spec.get('method')!r}")


def preprocessing(card: ModelCard, keys: Sequence[str]) -> Compose:
    steps: List[Any] = [LoadImaged(keys=list(keys), image_only=False), EnsureChannelFirstd(keys=list(keys))]
    if card.preprocessing.get("orientation"):
        steps.append(Orientationd(keys=list(keys), axcodes=card.preprocessing["orientation"]))
    if card.preprocessing.get("spacing"):
        steps.append(Spacingd(keys=list(keys), pixdim=card.preprocessing["spacing"], mode="bilinear"))
    steps += [_normalisation(card, key, i) for i, key in enumerate(keys)]
    if len(keys) > 1:
        steps.append(ConcatItemsd(keys=list(keys), name="image"))
    return Compose(steps)


def postprocessing(card: ModelCard, pre: Compose, out_dir: Path) -> Compose:
    mapping = card.postprocessing["output_mapping"]
    (a_min, a_max), (b_min, b_max) = mapping["source_range"], mapping["target_range"]
    low, high = card.postprocessing.get("clip", [None, None])
    steps: List[Any] = [
        Invertd(keys="pred", transform=pre, orig_keys="input0", nearest_interp=False, to_tensor=True),
        ScaleIntensityRanged(keys="pred", a_min=a_min, a_max=a_max, b_min=b_min, b_max=b_max, clip=False),
    ]
    if low is not None:
        steps += [ThresholdIntensityd(keys="pred", threshold=low, above=True, cval=low),
                  ThresholdIntensityd(keys="pred", threshold=high, above=False, cval=high)]
    steps.append(SaveImaged(keys="pred", output_dir=str(out_dir), output_postfix="pred", output_ext=".nii.gz",
                            resample=False, separate_folder=False, print_log=False))
    return Compose(steps)


def child_monai_pipeline(card: ModelCard, inputs: Sequence[str], output: str, repeats: int,
                         threads: Optional[int]) -> Dict[str, Any]:
    """End to end ``repeats`` times, the network loaded once before timing (as for the engine); the last run's
    output is moved to ``output``."""
    if threads:
        torch.set_num_threads(threads)
    network = load_generator(card, device="cpu").eval()
    keys = [f"input{i}" for i in range(len(inputs))]
    pre = preprocessing(card, keys)
    settings = card.inference
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        post = postprocessing(card, pre, Path(scratch))
        for _ in range(repeats):
            t0 = time.perf_counter()
            data = pre(dict(zip(keys, inputs)))
            image = data["image"] if len(keys) > 1 else data[keys[0]]
            t1 = time.perf_counter()
            with torch.no_grad():
                pred = sliding_window_inference(image[None].float(), roi_size=settings["roi_size"], sw_batch_size=1,
                                                predictor=network, overlap=settings.get("overlap", 0.25),
                                                mode="gaussian", padding_mode="constant",
                                                cval=settings.get("padding_value", 0.0))
            t2 = time.perf_counter()
            data["pred"] = pred[0]
            post(data)
            t3 = time.perf_counter()
            runs.append({"total": t3 - t0, "preprocess": t1 - t0, "infer": t2 - t1, "postprocess_and_write": t3 - t2})
        written = next(Path(scratch).glob("*_pred.nii.gz"))
        shutil.move(str(written), output)
    total = count_windows(tuple(image.shape[1:]), inference_settings(card))
    window = (1, len(inputs), *settings["roi_size"])
    flops_window = flops_of_forward(network, window)
    return {"strategy": "monai_pipeline", "threads": torch.get_num_threads(), "runs": runs,
            "total_s": statistics.median(r["total"] for r in runs), "infer_s": statistics.median(r["infer"] for r in runs),
            "windows_total": total, "windows_computed": total, "window_size": list(window[2:]),
            "flops_per_window": flops_window, "flops": flops_window * total, "peak_rss_mb": peak_rss_mb()}
