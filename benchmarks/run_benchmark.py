"""Speed, memory and accuracy of the engine against plain MONAI sliding-window inference, on a phantom head.

    python benchmarks/run_benchmark.py          # every bundled model, 1 mm and 0.5 mm heads, memory scaling
    python benchmarks/run_benchmark.py --models mr-t1-to-ct-pix2pix --sizes 1mm --repeats 1 --memory-sizes ""

For each model and head size, fresh child processes run: the engine as shipped ("ours"), the same
pipeline with its inference step replaced by plain ``monai.inferers.sliding_window_inference`` ("baseline",
see ``bench_lib.MonaiBaseline``), the end-to-end pipeline a MONAI user writes from the tutorials (LoadImaged ...
SaveImaged, ``monai_pipeline.py``; single-input models unless ``--monai-pipeline-multi``), the baseline once more with its windows moved by half a step (how much its
own output depends on where its windows fall, ``bench_lib.MovedBaseline``), and a probe of the network's
throughput on body-covering blocks (the compute floor). End to end = read + preprocess + infer + postprocess + write; the model is loaded before timing.
On the 1 mm head a fifth child times the uncertainty map (``uncertainty_eval.time_variants``): the inference step of
each of its test-time variants beside the plain inference step (``--no-uncertainty`` skips it).
Prints a table and writes ``benchmarks/results.json`` (one object per model; other head sizes nested).
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
    if kind != "monai_pipeline" and spec.get("strategy") != "baseline":  # ours as the command line runs it; baselines as plain MONAI
        keep_freed_memory()
    card = load_card(spec["model"])
    if kind == "run":
        bench_lib.emit(bench_lib.child_run(card, spec["inputs"], spec["output"], spec["strategy"], spec["repeats"],
                                           spec["threads"], spec.get("overrides")))
    elif kind == "monai_pipeline":
        import monai_pipeline

        bench_lib.emit(monai_pipeline.child_monai_pipeline(card, spec["inputs"], spec["output"], spec["repeats"],
                                                           spec["threads"]))
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


def _table(results: List[Dict[str, Any]]) -> str:
    head = ("model / workload", "base s", "ours s", "ratio", "infer b/o s", "RSS b/o MB", "windows b/o",
            "GFLOP b/o", "GFLOP/s o", "floor s", "of floor", "mean|d|", "p99|d|", "moved base mean|d|, p99|d|")
    lines = [" | ".join(head)]
    for r in results:
        for row in ([r] if "ours_s" in r else []) + r["other_sizes"]:
            lines.append(" | ".join([
                f"{row['model']} {row['workload'].split(', ')[1].split(' voxels')[0]}",
                f"{row['baseline_s']:.2f}", f"{row['ours_s']:.2f}", f"{row['ratio_vs_baseline']:.2f}x",
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "child":
        _run_child(argv[1:])
        return 0
    args = _parse(argv)
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

    def save() -> None:  # after every model, so an interrupted run keeps what it measured
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")

    for card in cards:
        rows = [bench_model(card, size, args, work, args.variants if not results and not i else [])
                for i, size in enumerate(sizes)]
        entry = dict(rows[0]) if rows else {"model": card.id, "version": card.version}
        entry.update(other_sizes=rows[1:], **stamp)
        results.append(entry)
        save()
    memory_sizes = [int(n) for n in args.memory_sizes.split(",") if n]
    if memory_sizes:
        results[0]["memory_scaling"] = memory_scaling(cards[0], memory_sizes, args, work)
        save()
    print(_table(results))
    for entry in results:
        for row in ([entry] if "ours_s" in entry else []) + entry["other_sizes"]:
            for who, stages in (("baseline", row["baseline_stages_s"]), ("ours", row["stages_s"]),
                                ("tutorial", row.get("monai_pipeline_stages_s"))):
                if not stages:
                    continue
                print(f"{row['model']} {row['workload'].split(', ')[1].split(' voxels')[0]} {who:8s} stages (s): "
                      + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
    for entry in results:
        for row in ([entry] if "ours_s" in entry else []) + entry["other_sizes"]:
            if "monai_pipeline_s" in row:
                truth = (f"; MAE vs the true {row['unit']}: ours {row['ours_mae_vs_reference']:.1f}, plain-MONAI baseline "
                         f"{row['baseline_mae_vs_reference']:.1f}, tutorial {row['monai_pipeline_mae_vs_reference']:.1f}"
                         if "monai_pipeline_mae_vs_reference" in row else "")
                print(f"{row['model']} {row['workload'].split(', ')[1].split(' voxels')[0]} MONAI tutorial pipeline: "
                      f"{row['monai_pipeline_s']:.2f} s end to end (ours {row['ratio_vs_monai_pipeline']:.2f}x faster), "
                      f"infer {row['monai_pipeline_infer_s']:.2f} s{truth}")
    for entry in results:
        for row in [entry] + entry["other_sizes"]:
            for v in row.get("variants", []):
                print(f"{row['model']} variant {v['variant']}: {v['ours_s']:.2f} s ({v['ratio_vs_baseline']:.2f}x), "
                      f"infer {v['ours_infer_s']:.2f} s, {v['windows_computed']} windows, mean|d| "
                      f"{v['mean_abs_diff']:.3g}, p99|d| {v['p99_abs_diff']:.3g} {row['unit']}")
    for entry in results:
        for row in [entry] + entry["other_sizes"]:
            timing = row.get("uncertainty")
            if timing:
                print(f"{row['model']} uncertainty map ({timing['description']}): inference per variant "
                      + ", ".join(f"{v['variant']} {v['infer_s']:.2f} s" for v in timing["variants"])
                      + f"; plain inference {timing['plain_infer_s']:.2f} s; whole translation "
                      f"{timing['plain_total_s']:.2f} s plain, {timing['uncertainty_total_s']:.2f} s with the map")
    for entry in results:
        for row in entry.get("memory_scaling", []):
            print(f"{entry['model']} ours on {'x'.join(map(str, row['size']))}: peak RSS {row['peak_rss_mb']:.0f} MB, "
                  f"{row['seconds']:.1f} s")
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
