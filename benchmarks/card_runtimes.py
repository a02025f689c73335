"""Measures the bundled model cards' ``runtime``: the whole translation of each card's reference phantom on the CPU.

    .venv/bin/python benchmarks/card_runtimes.py            # print the numbers
    .venv/bin/python benchmarks/card_runtimes.py --write    # and write them into models/*/model.json

What is timed is what a user waits for once the engine's process runs (``medgan-translate run``, the Slicer
module's worker): ``translate_files`` loading the model, reading the input(s), preprocessing, inference,
postprocessing and writing the synthetic volume (``MedGANTranslateLib.training.evaluate.whole_translation``;
uncompressed NRRD in, NRRD out, as the Slicer module exchanges them). The phantom is the card's first held-out
validation phantom (seed and settings from its training config) on the 1 mm grid a user's scan has, whatever
grid the model works on, so the panel's times compare (a 2 mm model resamples the head to 2 mm and back inside
the timed translation); the threads are those its validation used
(``training.config.validation.threads``). Each run is a fresh Python process with the engine imported and the
allocator set as the command line sets it (``keep_freed_memory``), since every Slicer job starts one; the card
gets the fastest of ``--repeats`` runs, to two significant digits: on a shared machine other work only ever
adds time, so the fastest run is the one least disturbed (the median and every run are printed). The Python
start and the engine's imports are not in the number; they are printed once ("engine start") for reference.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", help="model folder names under models/ (default: all four)")
    p.add_argument("--repeats", type=int, default=5, help="fresh processes per model; the fastest is recorded")
    p.add_argument("--threads", type=int, help="CPU threads for every model (default: each card's validation threads)")
    p.add_argument("--cache-dir", default="/tmp/medgan-card-runtimes", help="where the phantoms are kept")
    p.add_argument("--write", action="store_true", help="write the numbers into the cards' runtime sections")
    return p.parse_args(argv)


def _child(spec: Dict[str, Any]) -> None:
    """One timed run in this fresh process; prints a JSON object as its last line."""
    from MedGANTranslateLib.allocator import keep_freed_memory

    keep_freed_memory()
    import torch

    from MedGANTranslateLib.card import load_card
    from MedGANTranslateLib.training.data import load_phantom
    from MedGANTranslateLib.training.evaluate import phantom_roles, whole_translation

    card = load_card(spec["model"])
    images = load_phantom(spec["seed"], spec["phantom"], spec["cache_dir"])
    inputs = [images[n] for n in phantom_roles(card)[0]]
    stages: Dict[str, float] = {}

    def progress(event) -> None:
        if event.done >= event.total:
            stages[event.stage] = round(event.elapsed_s, 3)

    seconds, result = whole_translation(card, inputs, spec["threads"], progress)
    print(json.dumps({"seconds": seconds, "stages": stages, "precision": result.report.precision,
                      "threads": torch.get_num_threads(), "windows": result.report.windows_computed}))


def _run(spec: Dict[str, Any]) -> Dict[str, Any]:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "child", json.dumps(spec)],
                          stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"timed run failed (exit {proc.returncode}): {spec}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _engine_start() -> float:
    """Wall seconds of a fresh Python process that imports the engine's pipeline (torch, MONAI, SimpleITK) and exits."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import MedGANTranslateLib.pipeline"], check=True)
    return time.perf_counter() - start


def measure(folder: Path, args: argparse.Namespace) -> Dict[str, Any]:
    from MedGANTranslateLib.card import load_card
    from MedGANTranslateLib.pipeline import inference_settings
    from MedGANTranslateLib.training.data import load_phantom
    from MedGANTranslateLib.training.evaluate import DEFAULT_PHANTOM, runtime_entry

    card = load_card(folder)
    config = card.data["training"]["config"]
    phantom = {**DEFAULT_PHANTOM, **config["data"].get("phantom", {}),
               "shape": DEFAULT_PHANTOM["shape"], "spacing": DEFAULT_PHANTOM["spacing"]}
    seed = int(config["validation"]["seeds"][0])
    threads = int(args.threads or config["validation"]["threads"])
    load_phantom(seed, phantom, args.cache_dir)  # generated once, untimed
    spec = {"model": str(folder), "seed": seed, "phantom": phantom, "cache_dir": args.cache_dir, "threads": threads}
    runs: List[Dict[str, Any]] = []
    for i in range(args.repeats):
        runs.append(_run(spec))
        print(f"  {card.id} run {i + 1}: {runs[-1]['seconds']:.2f} s {runs[-1]['stages']}", file=sys.stderr, flush=True)
    fastest = min(r["seconds"] for r in runs)
    precision = " and ".join(sorted({r["precision"] for r in runs}))
    how = f"seed {seed}, fastest of {args.repeats} runs, each in a fresh process"
    entry = runtime_entry(fastest, runs[0]["threads"], phantom, inference_settings(card), precision, how)
    return {"id": card.id, "version": card.version, "runtime": entry, "runs": runs,
            "median": statistics.median(r["seconds"] for r in runs), "previous": card.data.get("runtime", {}),
            "load": _load()}


def _load() -> str:
    """The machine's load averages (1, 5, 15 min) after the runs, where the system tells them."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def write_card(folder: Path, runtime: Dict[str, Any]) -> None:
    """Replaces the card's runtime section, leaving every other byte of model.json as it was."""
    path = folder / "model.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["runtime"] = runtime
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["child"]:
        _child(json.loads(argv[1]))
        return 0
    args = _parse(argv)
    names = args.models or sorted(p.name for p in MODELS.iterdir() if (p / "model.json").is_file())
    print(f"engine start (fresh Python importing the engine): {_engine_start():.1f} s", file=sys.stderr)
    results = []
    for name in names:
        results.append(measure(MODELS / name, args))
    print(f"{'model':<26} {'version':<8} {'before':>7} {'fastest':>8} {'median':>7}  runs (s); load averages after")
    for r in results:
        before = r["previous"].get("cpu_seconds")
        runs = ", ".join(f"{x['seconds']:.2f}" for x in r["runs"])
        print(f"{r['id']:<26} {r['version']:<8} {before if before is not None else '-':>7} "
              f"{r['runtime']['cpu_seconds']:>6} s {r['median']:>5.2f} s  {runs}; load {r['load']}")
        best = min(r["runs"], key=lambda x: x["seconds"])
        print(f"  stages of the fastest run (s): {best['stages']}")
        print(f"  {r['runtime']['reference_volume']}")
    if args.write:
        for name, r in zip(names, results):
            write_card(MODELS / name, r["runtime"])
        print(f"wrote the runtime sections of {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
