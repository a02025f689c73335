"""The engine on a CUDA GPU: speed with and without mixed precision, peak GPU memory, and the out-of-memory fallback.

    python benchmarks/gpu_check.py --out gpu_results.json [--models ...] [--sizes 1mm,0.5mm] [--repeats 5]

For each model and phantom head size the engine runs end to end (read, preprocess, infer, postprocess,
write; the model loaded and warmed up first) on the GPU in float16 autocast (the cards' ``amp``) and in
float32, and once on the CPU. Reported: median seconds of the inference step and end to end, input voxels per
second of inference, peak GPU memory (``torch.cuda.max_memory_allocated``), float16's difference from float32
and the GPU's from the CPU inside the body. Then the first model and size run again under a GPU memory cap
(``torch.cuda.set_per_process_memory_fraction``): half of what float16 needed, where the windows must shrink on
the GPU, and next to nothing, where the job must leave for the CPU. Each capped run must finish, say which
fallback finished it, and match the uncapped output; the script exits 1 if one does not.

``benchmarks/gpu_kit.sh`` prepares what a bare GPU machine lacks and says how to run this there.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_lib  # noqa: E402
import torch  # noqa: E402

from MedGANTranslateLib.card import load_card  # noqa: E402
from MedGANTranslateLib.imageio import read_image  # noqa: E402
from MedGANTranslateLib.registry import resolve_model  # noqa: E402
from MedGANTranslateLib.run_options import RunOptions  # noqa: E402

SIZES = {"1mm": 1.0, "0.5mm": 0.5}
#: A capped run matches the uncapped one when it differs by at most this many times float16's own difference
#: from float32 (mean and p99 inside the body): other windows or the CPU's float32 change the arithmetic, and
#: a seam between windows would add to it.
CAPPED_TOLERANCE = 2.0


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=["mr-t1-to-ct-pix2pix", "mr-t1-to-ct-cyclegan"],
                   help="model ids or folders (the first one also gets the memory-cap runs)")
    p.add_argument("--sizes", default="1mm,0.5mm", help="phantom heads: 1mm (192x224x192), 0.5mm (384x448x384)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per configuration; the median is reported")
    p.add_argument("--work-dir", default="/tmp/medgan-gpu", help="phantoms and outputs")
    p.add_argument("--out", default=str(HERE / "gpu_results.json"), help="JSON results file")
    return p.parse_args(argv)


def _translator(model: str, device: str, amp: bool, said: Optional[List[str]] = None) -> bench_lib.TimedTranslator:
    card = load_card(model)
    card.inference["amp"] = amp
    log = (lambda level, message: said.append(message)) if said is not None else None
    return bench_lib.TimedTranslator(card, RunOptions(device=device), log=log)


def _timed(translator: bench_lib.TimedTranslator, inputs: Sequence[str], output: Path, repeats: int,
           warm_up: bool = True) -> Dict[str, Any]:
    """Medians of :func:`bench_lib.timed_runs`, with the GPU's peak memory of the last run."""
    if warm_up:  # cuDNN chooses its algorithms on the first call of each shape
        translator.translate([read_image(p) for p in inputs])
    runs, result = bench_lib.timed_runs(translator, inputs, str(output), repeats)
    report = result.report
    infer_s = statistics.median(r["infer"] for r in runs)
    return {
        "device": report.device, "precision": report.precision, "total_s": statistics.median(r["total"] for r in runs),
        "infer_s": infer_s, "voxels_per_s": math.prod(result.synthetic.GetSize()) / infer_s,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2 ** 20 if translator.device.type == "cuda" else None,
        "windows_computed": report.windows_computed, "window_size": list(report.roi_size),
        "fallback": report.fallback, "output": str(output),
    }


def _difference(a: Dict[str, Any], b: Dict[str, Any], inside) -> Dict[str, float]:
    return bench_lib.compare(Path(a["output"]), Path(b["output"]), inside, None)


def measure(model: str, size: str, repeats: int, work: Path) -> Dict[str, Any]:
    card = load_card(model)
    names = [bench_lib.phantom_image_name(s) for s in card.inputs]
    inputs = [str(p) for p in bench_lib.phantom_files(work, 0, SIZES[size], names).values()]
    out = work / "outputs" / card.id / size
    out.mkdir(parents=True, exist_ok=True)
    runs = {
        "gpu_float16": _timed(_translator(model, "cuda", True), inputs, out / "gpu-float16.nii.gz", repeats),
        "gpu_float32": _timed(_translator(model, "cuda", False), inputs, out / "gpu-float32.nii.gz", repeats),
        "cpu": _timed(_translator(model, "cpu", False), inputs, out / "cpu.nii.gz", 1),
    }
    inside = bench_lib.body_mask_on_input(card, Path(inputs[0]))
    return {
        "model": card.id, "version": card.version, "size": size, "unit": card.output["unit"], "inputs": inputs,
        "runs": runs,
        "float16_vs_float32": _difference(runs["gpu_float16"], runs["gpu_float32"], inside),
        "gpu_vs_cpu_float32": _difference(runs["gpu_float32"], runs["cpu"], inside),
        "amp_speedup": runs["gpu_float32"]["infer_s"] / runs["gpu_float16"]["infer_s"],
        "gpu_speedup_vs_cpu": runs["cpu"]["total_s"] / runs["gpu_float16"]["total_s"],
    }


def capped_runs(row: Dict[str, Any], model: str, work: Path) -> List[Dict[str, Any]]:
    """The float16 job again with the GPU's memory capped below what it needed: it must still finish."""
    total = torch.cuda.get_device_properties(0).total_memory
    needed = row["runs"]["gpu_float16"]["peak_gpu_mb"] * 2 ** 20
    card = load_card(model)
    inside = bench_lib.body_mask_on_input(card, Path(row["inputs"][0]))
    results = []
    for name, cap_over_weights in (("half", needed / 2), ("none", 2 ** 20)):
        said: List[str] = []
        translator = _translator(model, "cuda", True, said)  # its weights are on the GPU before the cap
        torch.cuda.empty_cache()
        cap = torch.cuda.memory_allocated() + cap_over_weights
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total))
        try:
            run = _timed(translator, row["inputs"], work / f"capped-{name}.nii.gz", 1, warm_up=False)
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0)
        diff = _difference(run, row["runs"]["gpu_float16"], inside)
        yardstick = row["float16_vs_float32"]
        results.append({"cap": name, "cap_mb": cap / 2 ** 20, "needed_mb": needed / 2 ** 20, "warnings": said,
                        **run, "vs_uncapped": diff,
                        "matches_uncapped": all(diff[k] <= CAPPED_TOLERANCE * yardstick[k] + 1e-6
                                                for k in ("mean_abs_diff", "p99_abs_diff"))})
    return results


def _table(rows: Sequence[Dict[str, Any]]) -> str:
    lines = ["model size | precision | infer s | end to end s | Mvoxel/s | peak GPU MB | windows | vs float32 / CPU "
             "(mean, p99)"]
    for row in rows:
        for key in ("gpu_float16", "gpu_float32", "cpu"):
            run = row["runs"][key]
            diff = {"gpu_float16": row["float16_vs_float32"], "gpu_float32": row["gpu_vs_cpu_float32"]}.get(key)
            peak = "-" if run["peak_gpu_mb"] is None else f"{run['peak_gpu_mb']:.0f}"
            lines.append(" | ".join([
                f"{row['model']} {row['size']}", f"{run['device']} {run['precision']}", f"{run['infer_s']:.3f}",
                f"{run['total_s']:.3f}", f"{run['voxels_per_s'] / 1e6:.1f}", peak,
                f"{run['windows_computed']} of {'x'.join(map(str, run['window_size']))}",
                "-" if diff is None else f"{diff['mean_abs_diff']:.3g}, {diff['p99_abs_diff']:.3g} {row['unit']}",
            ]))
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check needs a CUDA GPU and a CUDA build of torch; this Python has none "
                         f"(torch {torch.__version__}). For the CPU, run benchmarks/run_benchmark.py.")
    sizes = [s for s in args.sizes.split(",") if s]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise SystemExit(f"Unknown size(s) {unknown}; use {', '.join(SIZES)}.")
    models = [str(resolve_model(m).folder) for m in args.models]
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    result: Dict[str, Any] = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                              "cudnn": torch.backends.cudnn.version(), "cpu_threads": torch.get_num_threads(),
                              "rows": []}
    for model in models:
        for size in sizes:
            print(f"[{Path(model).name} {size}] ...", file=sys.stderr, flush=True)
            result["rows"].append(measure(model, size, args.repeats, work))
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("[memory cap] ...", file=sys.stderr, flush=True)
    result["capped"] = capped_runs(result["rows"][0], models[0], work)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(_table(result["rows"]))
    for run in result["capped"]:
        print(f"cap {run['cap']} ({run['cap_mb']:.0f} of the {run['needed_mb']:.0f} MB needed): finished on "
              f"{run['device']} in {run['total_s']:.2f} s, windows {'x'.join(map(str, run['window_size']))}, "
              f"fallback: {run['fallback']}; vs uncapped {run['vs_uncapped']['mean_abs_diff']:.3g} / "
              f"{run['vs_uncapped']['p99_abs_diff']:.3g} (mean / p99); matches: {run['matches_uncapped']}")
    print(f"results written to {args.out}")
    return 0 if all(run["matches_uncapped"] and run["fallback"] for run in result["capped"]) else 1


if __name__ == "__main__":
    sys.exit(main())
