"""Does the uncertainty map mean something? Its agreement with the real error on the held-out phantoms, and its cost.

For each held-out phantom (seeds 1-10 of the default model's validation set, never used in training; the 1 mm,
192 x 224 x 192 heads of ``training.evaluate.DEFAULT_PHANTOM``, read from the training cache when it holds them)
the model runs through :class:`~MedGANTranslateLib.pipeline.Translator` twice: as usual, and with
``uncertainty`` (its default variants unless ``--variants``). Inside the pipeline's body mask, with the
uncertainty run's synthetic image (the mean of the variants) against the phantom's true CT:

- ``spearman``: the rank correlation of the uncertainty with the absolute error, voxel by voxel
  (``scipy.stats.spearmanr``);
- ``mae_top`` / ``mae_rest``: the mean absolute error in the most uncertain ``--top`` % of the body (5 %: the
  voxels ranked by uncertainty, ties by position) and in the rest, and their ratio;
- ``top_error_overlap``: the share of the most uncertain 5 % that is also among the 5 % largest errors (chance:
  5 %);
- ``mae_plain`` / ``mae_mean``: the body MAE of the plain run and of the variants' mean;
- ``uncertainty_mean`` and ``uncertainty_p95``: the map's mean and 95th percentile in the body.

The numbers are per phantom and their mean (with the smallest and largest), printed as a Markdown table and
written as JSON. Time per variant: :func:`time_variants` (the inference step of each variant, beside the plain
inference step; also a child of ``run_benchmark.py``), here on the first phantom.

    .venv/bin/python benchmarks/uncertainty_eval.py [--model mr-t1-to-ct-pix2pix] [--seeds 1 2 ... 10]
        [--cache-dir /tmp/synth_cache] [--variants N] [--threads 2] [--out benchmarks/out/uncertainty_eval.json]

About 10 s per phantom on 2 CPU threads once the phantoms are cached (generating one takes longer).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import SimpleITK as sitk

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = "mr-t1-to-ct-pix2pix"


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (scipy's when it is installed; else the Pearson correlation of average ranks)."""
    try:
        from scipy.stats import spearmanr
    except ImportError:
        return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])
    return float(spearmanr(a, b).statistic)


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their positions)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(len(values), dtype=np.float64)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def uncertainty_scores(uncertainty: np.ndarray, error: np.ndarray, top: float = 5.0) -> Dict[str, float]:
    """How well ``uncertainty`` ranks the absolute ``error`` (both over the body's voxels, 1D): rank correlation,
    MAE in the most uncertain ``top`` % against the rest, and the overlap of that share with the ``top`` % largest
    errors."""
    n = len(error)
    k = max(1, int(math.ceil(n * top / 100.0)))
    by_uncertainty = np.argsort(-uncertainty, kind="stable")
    uncertain, rest = by_uncertainty[:k], by_uncertainty[k:]
    largest = np.argsort(-error, kind="stable")[:k]
    mae_top, mae_rest = float(error[uncertain].mean()), float(error[rest].mean())
    return {
        "spearman": spearman(uncertainty, error),
        "mae_top": mae_top,
        "mae_rest": mae_rest,
        "top_rest_ratio": mae_top / mae_rest if mae_rest else float("inf"),
        "top_error_overlap": float(np.isin(uncertain, largest, assume_unique=True).mean()),
        "uncertainty_threshold": float(uncertainty[uncertain[-1]]),
    }


def evaluate(card, seeds: Sequence[int], cache_dir: Optional[str], threads: Optional[int],
             variants: Optional[int], top: float = 5.0) -> Dict[str, Any]:
    """Per-phantom scores (:func:`uncertainty_scores` and the MAEs) of ``card``'s uncertainty map, and their mean."""
    from MedGANTranslateLib.pipeline import Translator
    from MedGANTranslateLib.run_options import RunOptions
    from MedGANTranslateLib.training.data import load_phantom
    from MedGANTranslateLib.training.evaluate import DEFAULT_PHANTOM, phantom_roles

    input_names, target = phantom_roles(card)
    varied = Translator(card, RunOptions(device="cpu", threads=threads, uncertainty=True,
                                         uncertainty_variants=variants))
    plain = Translator(card, RunOptions(device="cpu", threads=threads))
    cases: List[Dict[str, Any]] = []
    description = ""
    for seed in seeds:
        images = load_phantom(int(seed), DEFAULT_PHANTOM, cache_dir)
        inputs = [images[n] for n in input_names]
        truth = sitk.GetArrayFromImage(images[target]).astype(np.float32)
        result = varied.translate(inputs)
        usual = plain.translate(inputs)
        description = result.provenance["MedGANTranslate.Uncertainty"]
        body = sitk.GetArrayViewFromImage(result.body_mask) > 0
        error = np.abs(sitk.GetArrayFromImage(result.synthetic).astype(np.float32) - truth)[body]
        spread = sitk.GetArrayFromImage(result.uncertainty)[body]
        plain_error = np.abs(sitk.GetArrayFromImage(usual.synthetic).astype(np.float32) - truth)[body]
        row = {"seed": int(seed), **uncertainty_scores(spread, error, top),
               "mae_mean": float(error.mean()), "mae_plain": float(plain_error.mean()),
               "uncertainty_mean": float(spread.mean()), "uncertainty_p95": float(np.percentile(spread, 95)),
               "body_voxels": int(body.sum()), "seconds": round(result.seconds, 2),
               "plain_seconds": round(usual.seconds, 2)}
        cases.append(row)
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.3g}" for k, v in row.items() if k != "seed"),
              file=sys.stderr, flush=True)
    keys = [k for k in cases[0] if k not in ("seed", "body_voxels")]
    summary = {k: {"mean": statistics.fmean(c[k] for c in cases), "min": min(c[k] for c in cases),
                   "max": max(c[k] for c in cases)} for k in keys}
    return {"model": card.id, "version": card.version, "variants": description, "top_percent": top,
            "unit": card.output["unit"], "seeds": [int(s) for s in seeds], "summary": summary, "per_case": cases}


def time_variants(card, inputs: Sequence[Any], repeats: int = 3, threads: Optional[int] = None,
                  variants: Optional[int] = None) -> Dict[str, Any]:
    """The inference step of each uncertainty variant (median of ``repeats`` translations of ``inputs``, images
    or paths) beside the plain inference step and the whole translations with and without the map (the model
    loaded before timing)."""
    import bench_lib
    from MedGANTranslateLib.imageio import read_image
    from MedGANTranslateLib.pipeline import Translator
    from MedGANTranslateLib.run_options import RunOptions

    images = [read_image(str(p)) if isinstance(p, (str, Path)) else p for p in inputs]
    plain = bench_lib.TimedTranslator(card, RunOptions(device="cpu", threads=threads))
    varied = Translator(card, RunOptions(device="cpu", threads=threads, uncertainty=True,
                                         uncertainty_variants=variants))
    plain_infer, plain_total, total, per_variant = [], [], [], []
    labels: List[str] = []
    for _ in range(repeats):
        started = time.perf_counter()
        plain.translate(images)
        plain_total.append(time.perf_counter() - started)
        plain_infer.append(plain.infer_ended - plain.infer_started)
        started = time.perf_counter()
        result = varied.translate(images)
        total.append(time.perf_counter() - started)
        labels = [label for label, _ in result.variant_seconds]
        per_variant.append([t for _, t in result.variant_seconds])
    import torch

    seconds = [statistics.median(run[i] for run in per_variant) for i in range(len(labels))]
    return {"description": result.provenance["MedGANTranslate.Uncertainty"], "threads": torch.get_num_threads(),
            "plain_infer_s": statistics.median(plain_infer), "plain_total_s": statistics.median(plain_total),
            "uncertainty_total_s": statistics.median(total),
            "variants": [{"variant": label, "infer_s": s} for label, s in zip(labels, seconds)],
            "mean_infer_s_per_variant": statistics.fmean(seconds), "repeats": repeats}


def _table(report: Dict[str, Any]) -> str:
    unit = report["unit"]
    top = report["top_percent"]
    head = ["seed", "Spearman ρ", f"MAE top {top:g} % ({unit})", f"MAE rest ({unit})", "ratio",
            f"overlap with top {top:g} % errors", f"MAE mean ({unit})", f"MAE plain ({unit})",
            f"mean σ ({unit})", f"σ p95 ({unit})"]
    keys = ["spearman", "mae_top", "mae_rest", "top_rest_ratio", "top_error_overlap", "mae_mean", "mae_plain",
            "uncertainty_mean", "uncertainty_p95"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case in report["per_case"]:
        lines.append("| " + " | ".join([str(case["seed"])] + [_fmt(k, case[k]) for k in keys]) + " |")
    summary = report["summary"]
    lines.append("| **mean** | " + " | ".join(f"**{_fmt(k, summary[k]['mean'])}**" for k in keys) + " |")
    lines.append("| min-max | " + " | ".join(f"{_fmt(k, summary[k]['min'])}-{_fmt(k, summary[k]['max'])}"
                                            for k in keys) + " |")
    return "\n".join(lines)


def _fmt(key: str, value: float) -> str:
    if key == "spearman":
        return f"{value:.2f}"
    if key == "top_error_overlap":
        return f"{100 * value:.0f} %"
    if key == "top_rest_ratio":
        return f"{value:.1f}x"
    return f"{value:.1f}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=DEFAULT_MODEL, help="model id or folder (default: the default model)")
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 11)),
                   help="held-out phantom seeds (default 1-10, the default model's validation seeds)")
    p.add_argument("--cache-dir", default="/tmp/synth_cache", help="phantom cache shared with training")
    p.add_argument("--variants", type=int, help="uncertainty variants (default: the card's default)")
    p.add_argument("--top", type=float, default=5.0, help="percent of the body counted as most uncertain")
    p.add_argument("--threads", type=int, help="torch threads (default: the engine's choice)")
    p.add_argument("--repeats", type=int, default=3, help="translations timed per variant")
    p.add_argument("--out", default=str(HERE / "out" / "uncertainty_eval.json"), help="JSON results")
    args = p.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from MedGANTranslateLib.registry import resolve_model
    from MedGANTranslateLib.training.data import load_phantom
    from MedGANTranslateLib.training.evaluate import DEFAULT_PHANTOM, phantom_roles

    card = resolve_model(args.model)
    report = evaluate(card, args.seeds, args.cache_dir, args.threads, args.variants, args.top)
    images = load_phantom(args.seeds[0], DEFAULT_PHANTOM, args.cache_dir)
    report["timing"] = time_variants(card, [images[n] for n in phantom_roles(card)[0]], args.repeats, args.threads,
                                     args.variants)
    report["timing"]["workload"] = f"phantom seed {args.seeds[0]}, 192 x 224 x 192 voxels at 1 mm"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"{report['model']} v{report['version']}, {report['variants']}; inside the body, "
          f"{len(report['seeds'])} held-out phantoms:")
    print(_table(report))
    timing = report["timing"]
    print(f"Inference per variant ({timing['threads']} threads, {timing['workload']}, median of {timing['repeats']}): "
          + ", ".join(f"{v['variant']} {v['infer_s']:.2f} s" for v in timing["variants"])
          + f"; plain inference {timing['plain_infer_s']:.2f} s; whole translation {timing['plain_total_s']:.2f} s "
          f"plain, {timing['uncertainty_total_s']:.2f} s with the map")
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
