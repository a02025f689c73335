"""Speed, memory and accuracy of the engine against plain MONAI sliding-window inference, on a phantom head.

    python benchmarks/run_benchmark.py          # every bundled model, 1 mm and 0.5 mm heads, everything below
    python benchmarks/run_benchmark.py --models mr-t1-to-ct-pix2pix --sizes 1mm --repeats 1 --memory-sizes "" \
        --accuracy-seeds "" --no-uncertainty --no-planar --batch-cases 0     # the timing of one model, quickly

For each model and head size, fresh child processes run: the engine as shipped ("ours"), the same
pipeline with its inference step replaced by plain ``monai.inferers.sliding_window_inference`` ("baseline",
see ``bench_lib.MonaiBaseline``), the end-to-end pipeline a MONAI user writes from the tutorials (LoadImaged ...
SaveImaged, ``monai_pipeline.py``; single-input models unless ``--monai-pipeline-multi``), the baseline once more with its windows moved by half a step (how much its
own output depends on where its windows fall, ``bench_lib.MovedBaseline``), and a probe of the network's
throughput on body-covering blocks (the compute floor). End to end = read + preprocess + infer + postprocess + write; the model is loaded before timing.
Accuracy against the truth: ours, the baseline and the tutorial pipeline translate the held-out phantoms (seeds
1-10, never used in training; 1 mm) once each, and each one's mean absolute error against the phantom's true target
inside the body is averaged (``held_out``; ``--accuracy-seeds ''`` skips it).
The cost of the features, on the first model's 1 mm head: the uncertainty map (``uncertainty_eval.time_variants``:
the inference step of each test-time variant beside the plain one; ``--no-uncertainty`` skips it), the model's 2D
twin run axial and tri-planar (``planar_twin.py``; ``--no-planar``), and ``medgan-translate batch`` over held-out
heads in one process and under torchrun (``batch_throughput.measure``; ``--batch-cases 0`` skips it).
Prints a table and writes ``benchmarks/results.json``: one object per model and head size (``size``).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
SIZES = {"1mm": 1.0, "0.5mm": 0.5}
#: Strategies timed as plain MONAI runs them: without the engine's allocator setting.
PLAIN_MONAI = ("baseline", "monai_pipeline")
PLANES = {"axial": ["axial"], "tri-planar": ["axial", "coronal", "sagittal"]}


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*",
                   help="model ids or folders (default: every bundled model, the default model first)")
    p.add_argument("--sizes", default="1mm,0.5mm",
                   help="phantom heads, comma-separated: 1mm (192x224x192), 0.5mm (384x448x384)")
    p.add_argument("--repeats", type=int, default=3, help="end-to-end runs per configuration; the median is reported")
    p.add_argument("--threads", type=int, help="torch threads (default: the engine's choice)")
    p.add_argument("--memory-sizes", default="256,384,512",
                   help="cube sizes n for the peak-memory runs of the first model on n^3 inputs, with the network on "
                        "the input's grid ('' to skip)")
    p.add_argument("--variants", nargs="*", default=[],
                   help="extra runs of ours on the first model and size, with card inference overrides, compared "
                        "with the same baseline, e.g. cpu_precision=float32 sw_batch_size=1 "
                        "overlap=0+roi_size=96,96,96")
    p.add_argument("--seed", type=int, default=0, help="phantom seed")
    p.add_argument("--monai-pipeline-multi", action="store_true",
                   help="run the MONAI tutorial pipeline for multi-input models too (ConcatItemsd)")
    p.add_argument("--no-uncertainty", dest="uncertainty", action="store_false",
                   help="skip timing the uncertainty map's variants (on the 1 mm head)")
    p.add_argument("--no-planar", dest="planar", action="store_false",
                   help="skip timing the first model's 2D twin, axial and tri-planar (on the 1 mm head)")
    p.add_argument("--batch-cases", type=int, default=8,
                   help="held-out heads for the batch throughput, in one process and under torchrun (0 to skip)")
    p.add_argument("--accuracy-seeds", default="1-10",
                   help="held-out phantom seeds (1 mm) on which ours and both baselines are judged against the "
                        "truth, e.g. 1-10 or 1,4,7 ('' to skip)")
    p.add_argument("--work-dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "medgan-bench"),
                   help="where phantoms (cached) and outputs go")
    p.add_argument("--out", default=str(HERE / "results.json"), help="JSON results file")
    return p.parse_args(argv)


def _child(kind: str, **spec: Any) -> Dict[str, Any]:
    """Runs one measurement in a fresh Python process and returns the JSON object it prints last."""
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "child", kind, json.dumps(spec)],
                          stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child '{kind}' failed (exit {proc.returncode}): {spec}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run_child(argv: Sequence[str]) -> None:
    import bench_lib
    from MedGANTranslateLib.allocator import keep_freed_memory
    from MedGANTranslateLib.card import load_card

    kind, spec = argv[0], json.loads(argv[1])
    if spec.get("strategy", kind) not in PLAIN_MONAI:  # ours as the command line runs it; baselines as plain MONAI
        keep_freed_memory()
    card = load_card(spec["model"])
    if kind == "run":
        bench_lib.emit(bench_lib.child_run(card, spec["inputs"], spec["output"], spec["strategy"], spec["repeats"],
                                           spec["threads"], spec.get("overrides")))
    elif kind == "monai_pipeline":
        import monai_pipeline

        bench_lib.emit(monai_pipeline.child_monai_pipeline(card, spec["inputs"], spec["output"], spec["repeats"],
                                                           spec["threads"]))
    elif kind == "outputs" and spec["strategy"] == "monai_pipeline":
        import monai_pipeline

        for case in spec["cases"]:
            monai_pipeline.child_monai_pipeline(card, case["inputs"], case["output"], 1, spec["threads"])
        bench_lib.emit({"strategy": "monai_pipeline", "cases": len(spec["cases"])})
    elif kind == "outputs":
        bench_lib.emit(bench_lib.child_outputs(card, spec["cases"], spec["strategy"], spec["threads"]))
    elif kind == "floor":
        bench_lib.emit(bench_lib.child_floor(card, spec["inputs"], spec["threads"], spec["precisions"]))
    elif kind == "uncertainty":
        import uncertainty_eval

        bench_lib.emit(uncertainty_eval.time_variants(card, spec["inputs"], spec["repeats"], spec["threads"]))
    else:
        raise SystemExit(f"unknown child kind {kind!r}")


def _machine() -> Dict[str, Any]:
    import torch

    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_supported": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "cuda": torch.cuda.is_available(),
    }


def _precisions() -> List[str]:
    import torch

    return ["float32", "bfloat16"] if torch.ops.mkldnn._is_mkldnn_bf16_supported() else ["float32"]


def bench_model(card, size: str, args: argparse.Namespace, work: Path, variants: Sequence[str]) -> Dict[str, Any]:
    import bench_lib

    names = [bench_lib.phantom_image_name(s) for s in card.inputs]
    target = bench_lib.phantom_target_name(card)
    paths = bench_lib.phantom_files(work, args.seed, SIZES[size], names + ([target] if target else []))
    inputs = [str(paths[n]) for n in names]
    out_dir = work / "outputs" / card.id / size
    out_dir.mkdir(parents=True, exist_ok=True)
    common = dict(model=str(card.folder), inputs=inputs, repeats=args.repeats, threads=args.threads)
    print(f"[{card.id} {size}] ours ...", file=sys.stderr, flush=True)
    ours = _child("run", strategy="ours", output=str(out_dir / "ours.nii.gz"), **common)
    print(f"[{card.id} {size}] baseline ...", file=sys.stderr, flush=True)
    base = _child("run", strategy="baseline", output=str(out_dir / "baseline.nii.gz"), **common)
    pipeline = None
    if len(card.inputs) == 1 or args.monai_pipeline_multi:
        print(f"[{card.id} {size}] MONAI tutorial pipeline ...", file=sys.stderr, flush=True)
        pipeline = _child("monai_pipeline", output=str(out_dir / "monai-pipeline.nii.gz"), **common)
    print(f"[{card.id} {size}] baseline with its windows moved ...", file=sys.stderr, flush=True)
    _child("run", strategy="baseline_moved", output=str(out_dir / "baseline-moved.nii.gz"), **dict(common, repeats=1))
    print(f"[{card.id} {size}] compute floor ...", file=sys.stderr, flush=True)
    floor = _child("floor", model=str(card.folder), inputs=inputs, threads=args.threads, precisions=_precisions())
    uncertainty = None
    if args.uncertainty and size == "1mm":
        print(f"[{card.id} {size}] uncertainty variants ...", file=sys.stderr, flush=True)
        uncertainty = _child("uncertainty", model=str(card.folder), inputs=inputs, repeats=args.repeats,
                             threads=args.threads)
    inside = bench_lib.body_mask_on_input(card, Path(inputs[0]))
    accuracy = bench_lib.compare(out_dir / "ours.nii.gz", out_dir / "baseline.nii.gz", inside,
                                 paths[target] if target else None)
    moved = bench_lib.compare(out_dir / "baseline-moved.nii.gz", out_dir / "baseline.nii.gz", inside, None)
    tutorial = {}
    if pipeline is not None:
        against = bench_lib.compare(out_dir / "ours.nii.gz", out_dir / "monai-pipeline.nii.gz", inside,
                                    paths[target] if target else None)
        tutorial = {"monai_pipeline_s": pipeline["total_s"], "ratio_vs_monai_pipeline": pipeline["total_s"] / ours["total_s"],
                    "monai_pipeline_infer_s": pipeline["infer_s"], "monai_pipeline_peak_rss_mb": pipeline["peak_rss_mb"],
                    "monai_pipeline_stages_s": _median_stages(pipeline["runs"]),
                    "monai_pipeline_mean_abs_diff": against["mean_abs_diff"]}
        if "baseline_mae_vs_reference" in against:
            tutorial["monai_pipeline_mae_vs_reference"] = against["baseline_mae_vs_reference"]
    variant_rows = []
    for text in variants:
        print(f"[{card.id} {size}] ours with {text} ...", file=sys.stderr, flush=True)
        output = out_dir / f"variant-{len(variant_rows)}.nii.gz"
        run = _child("run", strategy="ours", output=str(output), overrides=bench_lib.parse_variant(text), **common)
        variant_rows.append({
            "variant": text, "ours_s": run["total_s"], "ratio_vs_baseline": base["total_s"] / run["total_s"],
            "ours_infer_s": run["infer_s"], "infer_ratio_vs_baseline": base["infer_s"] / run["infer_s"],
            "windows_computed": run["windows_computed"], "gflop": run["flops"] / 1e9, "peak_rss_mb": run["peak_rss_mb"],
            **bench_lib.compare(output, out_dir / "baseline.nii.gz", inside, paths[target] if target else None),
        })
    shape = bench_lib.phantom_shape(SIZES[size])
    throughput = floor["throughput_flop_per_s"]
    return {
        "model": card.id,
        "version": card.version,
        "size": size,
        "workload": f"phantom seed {args.seed}, {shape[0]}x{shape[1]}x{shape[2]} voxels at {SIZES[size]:g} mm",
        "unit": card.output["unit"],
        "threads": ours["threads"],
        "baseline_s": base["total_s"],
        "ours_s": ours["total_s"],
        "ratio_vs_baseline": base["total_s"] / ours["total_s"],
        "baseline_infer_s": base["infer_s"],
        "ours_infer_s": ours["infer_s"],
        "infer_ratio_vs_baseline": base["infer_s"] / ours["infer_s"],
        **accuracy,
        **tutorial,
        "baseline_moved_mean_abs_diff": moved["mean_abs_diff"],
        "baseline_moved_p99_abs_diff": moved["p99_abs_diff"],
        "peak_rss_mb": ours["peak_rss_mb"],
        "baseline_peak_rss_mb": base["peak_rss_mb"],
        "windows_computed": ours["windows_computed"],
        "windows_total": ours["windows_total"],
        "baseline_windows": base["windows_computed"],
        "window_size": ours["window_size"],
        "baseline_window_size": base["window_size"],
        "gflop": ours["flops"] / 1e9,
        "baseline_gflop": base["flops"] / 1e9,
        "gflop_needed": floor["flops_per_voxel"] * floor["body_voxels"] / 1e9,
        "achieved_gflop_per_s": ours["flops"] / ours["infer_s"] / 1e9,
        "baseline_gflop_per_s": base["flops"] / base["infer_s"] / 1e9,
        "throughput_gflop_per_s": throughput / 1e9,
        "compute_floor_s": floor["floor_s"],
        "fraction_of_compute_floor": floor["floor_s"] / ours["infer_s"],
        "end_to_end_fraction_of_compute_floor": floor["floor_s"] / ours["total_s"],
        "stages_s": _median_stages(ours["runs"]),
        "baseline_stages_s": _median_stages(base["runs"]),
        "floor_blocks": floor["blocks"],
        "variants": variant_rows,
        "uncertainty": uncertainty,
    }


def _seeds(text: str) -> List[int]:
    """``1-10`` or ``1,4,7`` as a list of seeds."""
    seeds: List[int] = []
    for part in (p for p in text.split(",") if p):
        low, _, high = part.partition("-")
        seeds += range(int(low), int(high or low) + 1)
    return seeds


def held_out_accuracy(card, seeds: Sequence[int], args: argparse.Namespace, work: Path) -> Dict[str, Any]:
    """Ours, the baseline and the tutorial pipeline on the held-out 1 mm phantoms, each translated once: the mean
    absolute error of each against the true target inside the body, per seed and averaged."""
    import bench_lib

    names = [bench_lib.phantom_image_name(s) for s in card.inputs]
    target = bench_lib.phantom_target_name(card)
    heads = {seed: bench_lib.phantom_files(work, seed, 1.0, names + [target]) for seed in seeds}
    out_dir = work / "outputs" / card.id / "held-out"
    out_dir.mkdir(parents=True, exist_ok=True)
    strategies = ["ours", "baseline"] + (["monai_pipeline"] if len(card.inputs) == 1 or args.monai_pipeline_multi else [])
    for strategy in strategies:
        print(f"[{card.id} held-out seeds {seeds[0]}-{seeds[-1]}] {strategy} ...", file=sys.stderr, flush=True)
        cases = [{"inputs": [str(heads[seed][n]) for n in names], "output": str(out_dir / f"seed{seed}-{strategy}.nii.gz")}
                 for seed in seeds]
        _child("outputs", model=str(card.folder), strategy=strategy, cases=cases, threads=args.threads)
    per_seed = []
    for seed in seeds:
        inside = bench_lib.body_mask_on_input(card, heads[seed][names[0]])
        truth = bench_lib.voxels(heads[seed][target])
        per_seed.append({"seed": seed, **{s: bench_lib.mae_inside(bench_lib.voxels(out_dir / f"seed{seed}-{s}.nii.gz"),
                                                                  truth, inside) for s in strategies}})
    mean = {s: statistics.fmean(row[s] for row in per_seed) for s in strategies}
    best = min(mean[s] for s in strategies if s != "ours")
    return {"seeds": list(seeds), "unit": card.output["unit"], "mae": mean, "per_seed": per_seed,
            "ours_minus_best_baseline": mean["ours"] - best}


def feature_costs(card, args: argparse.Namespace, work: Path) -> Dict[str, Any]:
    """What the features cost on the 1 mm head: the model's 2D twin run axial and tri-planar, beside the model
    itself, and cases per hour of ``medgan-translate batch``."""
    import batch_throughput
    import bench_lib
    from planar_twin import planar_twin

    costs: Dict[str, Any] = {}
    if args.planar:
        names = [bench_lib.phantom_image_name(s) for s in card.inputs]
        inputs = [str(p) for p in bench_lib.phantom_files(work, args.seed, 1.0, names).values()]
        rows = []
        for label, planes in PLANES.items():
            print(f"[{card.id} 1mm] 2D twin, {label} ...", file=sys.stderr, flush=True)
            run = _child("run", model=str(planar_twin(card, planes, work)), inputs=inputs, strategy="ours",
                         output=str(work / "outputs" / f"planar-{label}.nii.gz"), repeats=args.repeats,
                         threads=args.threads)
            rows.append({"planes": label, "total_s": run["total_s"], "infer_s": run["infer_s"],
                         "windows_computed": run["windows_computed"], "window_size": run["window_size"],
                         "gflop": run["flops"] / 1e9, "peak_rss_mb": run["peak_rss_mb"]})
        costs["planar_twin"] = rows
    if args.batch_cases:
        print(f"[{card.id}] batch throughput, {args.batch_cases} heads ...", file=sys.stderr, flush=True)
        costs["batch"] = batch_throughput.measure(args.batch_cases, os.cpu_count() or 1)
    return costs


def _median_stages(runs: List[Dict[str, float]]) -> Dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def memory_scaling(card, sizes: Sequence[int], args: argparse.Namespace, work: Path) -> List[Dict[str, Any]]:
    import bench_lib

    names = [bench_lib.phantom_image_name(s) for s in card.inputs]
    paths = bench_lib.phantom_files(work, args.seed, 1.0, names)
    model = bench_lib.native_grid_model(card, work)
    rows = []
    for n in sizes:
        inputs = [str(bench_lib.resampled_file(paths[name], n, work)) for name in names]
        print(f"[{card.id} memory] {n}^3 ...", file=sys.stderr, flush=True)
        run = _child("run", model=str(model), inputs=inputs, output=str(work / "outputs" / f"memory-{n}.nii.gz"),
                     strategy="ours", repeats=1, threads=args.threads)
        rows.append({"size": [n, n, n], "voxels": n ** 3, "peak_rss_mb": run["peak_rss_mb"], "seconds": run["total_s"],
                     "windows_computed": run["windows_computed"]})
    return rows


def _label(row: Dict[str, Any]) -> str:
    return f"{row['model']} {row['workload'].split(', ')[1].split(' voxels')[0]}"


def _table(results: List[Dict[str, Any]]) -> str:
    head = ("model / workload", "base s", "ours s", "ratio", "infer b/o s", "RSS b/o MB", "windows b/o",
            "GFLOP b/o", "GFLOP/s o", "floor s", "of floor", "mean|d|", "p99|d|", "moved base mean|d|, p99|d|")
    lines = [" | ".join(head)]
    for row in results:
        lines.append(" | ".join([
            _label(row), f"{row['baseline_s']:.2f}", f"{row['ours_s']:.2f}", f"{row['ratio_vs_baseline']:.2f}x",
            f"{row['baseline_infer_s']:.2f}/{row['ours_infer_s']:.2f}",
            f"{row['baseline_peak_rss_mb']:.0f}/{row['peak_rss_mb']:.0f}",
            f"{row['baseline_windows']}/{row['windows_computed']} of {'x'.join(map(str, row['window_size']))}",
            f"{row['baseline_gflop']:.0f}/{row['gflop']:.0f}",
            f"{row['achieved_gflop_per_s']:.0f} (max {row['throughput_gflop_per_s']:.0f})",
            f"{row['compute_floor_s']:.2f}", f"{row['fraction_of_compute_floor']:.2f}",
            f"{row['mean_abs_diff']:.3g} {row['unit']}", f"{row['p99_abs_diff']:.3g} {row['unit']}",
            f"{row['baseline_moved_mean_abs_diff']:.3g}, {row['baseline_moved_p99_abs_diff']:.3g} {row['unit']}",
        ]))
    return "\n".join(lines)


def _details(results: List[Dict[str, Any]]) -> List[str]:
    """The lines printed under the table: stages, the tutorial pipeline, variants, held-out accuracy, feature costs,
    memory."""
    lines = []
    for row in results:
        for who, stages in (("baseline", row["baseline_stages_s"]), ("ours", row["stages_s"]),
                            ("tutorial", row.get("monai_pipeline_stages_s"))):
            if stages:
                lines.append(f"{_label(row)} {who:8s} stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
        if "monai_pipeline_s" in row:
            lines.append(f"{_label(row)} MONAI tutorial pipeline: {row['monai_pipeline_s']:.2f} s end to end (ours "
                         f"{row['ratio_vs_monai_pipeline']:.2f}x faster), infer {row['monai_pipeline_infer_s']:.2f} s")
        for v in row.get("variants", []):
            lines.append(f"{row['model']} variant {v['variant']}: {v['ours_s']:.2f} s ({v['ratio_vs_baseline']:.2f}x), "
                         f"infer {v['ours_infer_s']:.2f} s, {v['windows_computed']} windows, mean|d| "
                         f"{v['mean_abs_diff']:.3g}, p99|d| {v['p99_abs_diff']:.3g} {row['unit']}")
        held = row.get("held_out")
        if held:
            lines.append(f"{row['model']} held-out phantoms (seeds {held['seeds'][0]}-{held['seeds'][-1]}, 1 mm), MAE vs the "
                         f"truth: " + ", ".join(f"{k} {v:.2f}" for k, v in held["mae"].items())
                         + f" {held['unit']}; ours - best baseline {held['ours_minus_best_baseline']:+.2f} {held['unit']}")
        timing = row.get("uncertainty")
        if timing:
            lines.append(f"{row['model']} uncertainty map ({timing['description']}): inference per variant "
                         + ", ".join(f"{v['variant']} {v['infer_s']:.2f} s" for v in timing["variants"])
                         + f"; plain inference {timing['plain_infer_s']:.2f} s; whole translation "
                         f"{timing['plain_total_s']:.2f} s plain, {timing['uncertainty_total_s']:.2f} s with the map")
        costs = row.get("feature_costs", {})
        for twin in costs.get("planar_twin", []):
            lines.append(f"{row['model']} 2D twin {twin['planes']}: {twin['total_s']:.2f} s end to end, infer "
                         f"{twin['infer_s']:.2f} s, {twin['windows_computed']} windows of "
                         f"{'x'.join(map(str, twin['window_size']))}, peak RSS {twin['peak_rss_mb']:.0f} MB")
        for run in costs.get("batch", {}).get("runs", []):
            lines.append(f"batch, {costs['batch']['cases']} heads, {run['processes']} process(es): "
                         f"{run['cases_per_hour']:.0f} cases/h, median {run['seconds_per_case']:.2f} s per case")
        for memory in row.get("memory_scaling", []):
            lines.append(f"{row['model']} ours on {'x'.join(map(str, memory['size']))}: peak RSS "
                         f"{memory['peak_rss_mb']:.0f} MB, {memory['seconds']:.1f} s")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "child":
        _run_child(argv[1:])
        return 0
    args = _parse(argv)
    import bench_lib
    from MedGANTranslateLib.demo import DEFAULT_MODEL
    from MedGANTranslateLib.registry import list_models, resolve_model

    ids = args.models or sorted({s.id for s in list_models()}, key=lambda i: (i != DEFAULT_MODEL, i))
    if not ids:
        raise SystemExit("No models found: train or install one into models/, or give --models.")
    cards = [resolve_model(m) for m in ids]
    sizes = [s for s in args.sizes.split(",") if s]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise SystemExit(f"Unknown size(s) {unknown}; use {', '.join(SIZES)}.")
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)

    stamp = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": _machine(),
             "repeats": args.repeats}
    results: List[Dict[str, Any]] = []
    seeds = _seeds(args.accuracy_seeds)

    def save() -> None:  # after every measurement, so an interrupted run keeps what it has
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")

    for card in cards:
        for size in sizes:
            row = bench_model(card, size, args, work, args.variants if not results else [])
            row.update(stamp)
            results.append(row)
            save()
        if seeds and bench_lib.phantom_target_name(card):
            next(r for r in results if r["model"] == card.id)["held_out"] = held_out_accuracy(card, seeds, args, work)
            save()
    if results:
        results[0]["feature_costs"] = feature_costs(cards[0], args, work)
        save()
    memory_sizes = [int(n) for n in args.memory_sizes.split(",") if n]
    if memory_sizes:
        results[0]["memory_scaling"] = memory_scaling(cards[0], memory_sizes, args, work)
        save()
    print(_table(results))
    print("\n".join(_details(results)))
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
