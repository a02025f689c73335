"""Cases per hour of ``medgan-translate batch`` on this machine: the default model over N phantom heads (1 mm,
192 x 224 x 192, held-out seeds), once in one process and once under torchrun with P processes (gloo, the cores
shared out), each from an empty output folder, in the same run. Writes the table into docs/batch.md;
``run_benchmark.py`` calls :func:`measure` too (its feature costs).

    .venv/bin/python benchmarks/batch_throughput.py --cases 8 --processes 2
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict

import SimpleITK as sitk

from MedGANTranslateLib.devices import cpu_name
from MedGANTranslateLib.phantom import make_phantom

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "batch.md"
MODEL = "mr-t1-to-ct-pix2pix"


def run(command, out: Path) -> dict:
    """The run's summary, with ``launch_seconds``: from starting the command to its end."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(os.cpu_count())})
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    summary["launch_seconds"] = time.perf_counter() - started
    return summary


def measure(cases: int, processes: int) -> Dict[str, Any]:
    """The default model over ``cases`` held-out phantom heads by ``medgan-translate batch``: once in one process,
    once under torchrun with ``processes`` (each from an empty output folder, the same cohort)."""
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        lines = []
        for seed in range(1, cases + 1):  # validation seeds: never used in training
            path = scratch / f"head{seed:02d}_t1.nii.gz"
            sitk.WriteImage(make_phantom(seed=seed).t1, str(path))
            lines.append(f"{path}\n")
        (scratch / "cohort.txt").write_text("".join(lines))
        batch = ["batch", "-m", MODEL, "--inputs", str(scratch / "cohort.txt"), "--progress", "none"]
        one = run([sys.executable, "-m", "MedGANTranslateLib.cli", *batch, "--out", str(scratch / "one")], scratch / "one")
        many = run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                    "--master_addr", "127.0.0.1", "--master_port", "29511", "-m", "MedGANTranslateLib.cli", *batch,
                    "--out", str(scratch / "many")], scratch / "many")
    return {"model": MODEL, "cases": cases, "machine": f"{os.cpu_count()}-core {cpu_name()}, CPU only",
            "runs": [{"processes": s["ranks"], "launch_seconds": s["launch_seconds"],
                      "seconds_per_case": s["seconds_per_case"], "cases_per_hour": 3600 * cases / s["launch_seconds"]}
                     for s in (one, many)]}


def table(measured: Dict[str, Any]) -> str:
    cases = measured["cases"]
    processes = measured["runs"][-1]["processes"]
    return (f"Throughput on this machine ({measured['machine']}; `benchmarks/batch_throughput.py --cases {cases} "
            f"--processes {processes}`, the default model on {cases} phantom heads at 1 mm, wall time "
            "from launch to summary, model loading and process start included):\n\n"
            "| processes | wall from launch (s) | median s per case | cases per hour |\n| --- | --- | --- | --- |\n"
            + "".join(f"| {r['processes']} | {r['launch_seconds']:.0f} | {r['seconds_per_case']:.1f} | "
                      f"{r['cases_per_hour']:.0f} |\n" for r in measured["runs"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/batch.md as it is")
    args = parser.parse_args()
    text = table(measure(args.cases, args.processes))
    print(text)
    if not args.no_write:
        DOC.write_text(re.sub(r"<!-- throughput:start -->.*<!-- throughput:end -->",
                              f"<!-- throughput:start -->\n{text}<!-- throughput:end -->", DOC.read_text(), flags=re.S))


if __name__ == "__main__":
    main()
