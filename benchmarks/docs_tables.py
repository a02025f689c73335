"""Tables in the docs made from the files that hold their numbers, so no number is typed twice.

From the cards (``models/<id>/model.json``, which training, evaluation and ``real_heads.py --write-cards`` write):
the README's bundled-models table (architecture, training, ``validation``) and docs/models.md's real-heads table
(``validation.real_heads``). From ``benchmarks/results.json`` (``make bench``): the README's speed summary and
docs/speed.md's speed, accuracy and feature-cost tables. Each lies between its ``<!-- NAME:start -->`` and
``<!-- NAME:end -->`` markers; ``tests/test_docs_tables.py`` fails when a page no longer matches its source.

    .venv/bin/python benchmarks/docs_tables.py [--check]
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = "mr-t1-to-ct-pix2pix"
#: How a card's baseline keys read, and the unit of each output modality's intensities.
BASELINES = {"bulk_density": "bulk density (body 0 HU, air −1000)", "input_as_output": "input unchanged",
             "uniform_suv1": "uniform SUV 1 in the body"}
UNITS = {"HU": " HU", "SUV": " SUV"}
NORMS = {"batch": "batch norm", "instance": "instance norm", "none": "no norm"}


def _network(card: Dict[str, Any]) -> str:
    arch = card["architecture"]
    p = arch.get("params", {})
    if arch.get("name") == "unet_generator":
        net = f"U-Net {p['num_downs']} levels, {p['ngf']} ch"
    elif arch.get("name") == "resnet_generator":
        net = f"ResNet {p['n_blocks']} blocks, {p['ngf']} ch"
    else:
        net = str(arch.get("name") or arch.get("type"))
    parts = [net, NORMS.get(p.get("norm"), "")]
    if card.get("training", {}).get("recipe") == "cyclegan":
        parts.append("unpaired")
    if card.get("inference", {}).get("fully_convolutional"):
        parts.append("fully convolutional")
    spacing = card.get("preprocessing", {}).get("spacing")
    if spacing and any(s != 1.0 for s in spacing):
        size = f"{spacing[0]:g}" if len(set(spacing)) == 1 else " × ".join(f"{s:g}" for s in spacing)
        parts.append(f"on a {size} mm grid")
    return ", ".join(x for x in parts if x)


def _io(card: Dict[str, Any]) -> str:
    inputs = " + ".join(i.get("sequence") or i["modality"] for i in card["inputs"])
    unit = card["output"].get("unit")
    output = card["output"].get("sequence") or card["output"]["modality"]
    return f"{inputs} → {output}" + (f" ({unit})" if unit else "") + f", {_network(card)}"


def _number(value: float) -> str:
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"


def _values(m: Dict[str, float], unit: str, lead: bool) -> str:
    """A card's metrics as the table shows them: the headline ones in bold for the model, MAE (and bone Dice or
    rim MAE) for a baseline."""
    def bold(text: str) -> str:
        return f"**{text}**" if lead else text

    text = "MAE " + bold(_number(m["mae"]) + unit)
    if lead:
        text += f", ME {m['me']:+.2g}" if abs(m["me"]) < 1 else f", ME {m['me']:+.1f}"
        text += f", PSNR {m['psnr']:.1f} dB, SSIM {m['ssim']:.3f}"
        if "mae_air" in m:
            text += (f"; MAE air {m['mae_air']:.0f} / soft tissue {m['mae_soft_tissue']:.0f} / bone "
                     f"{m['mae_bone']:.0f}{unit}")
    if "bone_dice" in m:
        text += "; bone Dice " + bold(f"{m['bone_dice']:.3f}")
    if "mae_enhancing_rim" in m:
        text += "; enhancing rim MAE " + bold(f"{m['mae_enhancing_rim']:.0f}")
    return text


def models_table(cards: List[Dict[str, Any]]) -> str:
    """The Markdown table: each card's held-out metrics beside its trivial baseline and its training cost."""
    rows = ["| Model (id, version) | Inputs → output | Held-out metrics (mean of 10) | Trivial baseline | Training |",
            "| --- | --- | --- | --- | --- |"]
    for card in cards:
        v, t = card["validation"], card["training"]
        unit = UNITS.get(card["output"].get("unit"), "")
        metrics = _values(v["metrics"], unit, lead=True)
        (name, base), = v["baselines"].items()
        if v["metrics"]["mae"] >= 0.95 * base["mae"]:
            metrics += " — **no better than the baseline**"
        baseline = f"{BASELINES.get(name, name)}: " + _values(base, unit, lead=False)
        default = "default, " if card["id"] == DEFAULT_MODEL else ""
        training = (f"{t['wall_seconds'] / 60:.0f} min ({t['cpu_threads']} threads, {t['precision']}, "
                    f"{t['steps']} steps)")
        start = t.get("init_weights", {}).get("model")  # the run a fine-tuning started from, when its card said
        if start:
            training += (f" after {start['wall_seconds'] / 60:.0f} min ({start['steps']} steps) of the run it "
                         f"fine-tunes")
        elif t.get("config", {}).get("init_weights"):
            training += ", fine-tuning an earlier run's weights (see the card's training_data)"
        rows.append(f"| `{card['id']}` ({default}v{card['version']}) | {_io(card)} | {metrics} | {baseline} | {training} |")
    return "\n".join(rows)


def bundled_cards() -> List[Dict[str, Any]]:
    cards = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((ROOT / "models").glob("*/model.json"))]
    return sorted(cards, key=lambda c: (c["id"] != DEFAULT_MODEL, c["id"]))


def _range(values: List[float], digits: int) -> str:
    low, high = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
    return low if low == high else f"{low}–{high}"


def _real_head_cells(m: Dict[str, float]) -> str:
    return (f"{m['bone_head']:.1f} | {m['bone_cranium']:.1f} | {m['rings']:.0f} ({m['cranial_slices']:.0f}) | "
            f"{m['brain_bone_ml']:.1f} ({m['brain_bone_pct']:.2f}) | {m['solid_air_ml']:.1f} ({m['solid_air_pct']:.2f}) | "
            f"{m['w1_head']:.0f} | {m['w1_brain']:.0f}")


def real_heads_table(cards: List[Dict[str, Any]]) -> str:
    """The real-head yardstick: the real CT's row, each model's row per scan, then each baseline's range over
    the scans (the cards' ``validation.real_heads``)."""
    measured = [c for c in cards if c.get("validation", {}).get("real_heads")]
    rows = ["| scan | CT from | bone % head | bone % cranium | closed rings % (slices) | bone in brain mL (%) "
            "| air in solid mL (%) | W1 head HU | W1 brain HU |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    if not measured:
        return "\n".join(rows)
    first = measured[0]["validation"]["real_heads"]
    rows.append(f"| real head CT (GE) | the real CT (reference) | {_real_head_cells(first['reference'])} |")
    scans = [s["scan"] for s in first["scans"]]
    for name in scans:
        for card in measured:
            scan = next(s for s in card["validation"]["real_heads"]["scans"] if s["scan"] == name)
            rows.append(f"| {name} | `{card['id']}` v{card['version']} | {_real_head_cells(scan)} |")
    for baseline in first["scans"][0]["baselines"]:
        values = [s["baselines"][baseline] for s in first["scans"]]
        column = {k: [v[k] for v in values] for k in values[0]}
        rows.append(
            f"| each of the {len(scans)} T1w | baseline: {baseline} | {_range(column['bone_head'], 1)} | "
            f"{_range(column['bone_cranium'], 1)} | {_range(column['rings'], 0)} | "
            f"{_range(column['brain_bone_ml'], 1)} ({_range(column['brain_bone_pct'], 2)}) | "
            f"{_range(column['solid_air_ml'], 1)} ({_range(column['solid_air_pct'], 2)}) | "
            f"{_range(column['w1_head'], 0)} | {_range(column['w1_brain'], 0)} |")
    return "\n".join(rows)


def bench_results() -> List[Dict[str, Any]]:
    """``benchmarks/results.json`` as ``make bench`` wrote it: one entry per model and head size."""
    return json.loads((ROOT / "benchmarks" / "results.json").read_text(encoding="utf-8"))


def _head(row: Dict[str, Any]) -> str:
    return row["workload"].split(", ")[1].split(" voxels")[0].replace("x", "×")


def speed_table(results: List[Dict[str, Any]]) -> str:
    """End to end seconds of both baselines and ours on each head, their ratios, and what inference alone took."""
    rows = ["| Model | Head | Plain MONAI baseline | MONAI tutorial pipeline | Ours | Ours faster than (baseline, "
            "tutorial) | Inference (baseline → ours) | Ours by stage: read, preprocess, infer, postprocess, write "
            "| Peak RSS (baseline / ours) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        tutorial = f"{r['monai_pipeline_s']:.2f} s" if "monai_pipeline_s" in r else "—"
        versus = f"**{r['ratio_vs_baseline']:.2f}×**, " + (f"**{r['ratio_vs_monai_pipeline']:.2f}×**"
                                                            if "monai_pipeline_s" in r else "—")
        stages = ", ".join(f"{r['stages_s'][k]:.2f}" for k in ("read", "preprocess", "infer", "postprocess", "write"))
        rows.append(f"| `{r['model']}` v{r['version']} | {_head(r)} | {r['baseline_s']:.2f} s | {tutorial} | "
                    f"{r['ours_s']:.2f} s | {versus} | {r['baseline_infer_s']:.2f} → {r['ours_infer_s']:.2f} s | "
                    f"{stages} s | {r['baseline_peak_rss_mb']:.0f} / {r['peak_rss_mb']:.0f} MB |")
    return "\n".join(rows)


def accuracy_table(results: List[Dict[str, Any]]) -> str:
    """Each model's mean absolute error against the phantoms' truth, ours beside both baselines."""
    rows = ["| Model | Held-out phantoms (1 mm) | Ours | Plain MONAI baseline | MONAI tutorial pipeline | "
            "Ours − better baseline |", "| --- | --- | --- | --- | --- | --- |"]
    for r in results:
        held = r.get("held_out")
        if not held:
            continue
        unit, mae = UNITS.get(held["unit"], f" {held['unit']}"), held["mae"]
        tutorial = f"{_number(mae['monai_pipeline'])}{unit}" if "monai_pipeline" in mae else "—"
        rows.append(f"| `{r['model']}` v{r['version']} | seeds {held['seeds'][0]}–{held['seeds'][-1]} | "
                    f"{_number(mae['ours'])}{unit} | {_number(mae['baseline'])}{unit} | {tutorial} | "
                    f"{held['ours_minus_best_baseline']:+.2f}{unit} |")
    return "\n".join(rows)


def feature_costs_table(results: List[Dict[str, Any]]) -> str:
    """What the uncertainty map, a 2D model slice by slice and batch runs cost on the first model's 1 mm head."""
    first = results[0]
    rows = ["| Feature | Measured | Beside |", "| --- | --- | --- |"]
    timing = first.get("uncertainty")
    if timing:
        rows.append(f"| uncertainty map ({timing['description']}) | {timing['uncertainty_total_s']:.2f} s end to end; "
                    f"inference {timing['mean_infer_s_per_variant']:.2f} s per variant | plain translation "
                    f"{timing['plain_total_s']:.2f} s, inference {timing['plain_infer_s']:.2f} s |")
    costs = first.get("feature_costs", {})
    for twin in costs.get("planar_twin", []):
        rows.append(f"| 2D twin of `{first['model']}`, {twin['planes']} | {twin['total_s']:.2f} s end to end; "
                    f"inference {twin['infer_s']:.2f} s over {twin['windows_computed']} windows | the 3D model "
                    f"{first['ours_s']:.2f} s, inference {first['ours_infer_s']:.2f} s |")
    batch = costs.get("batch")
    if batch:
        one, *more = batch["runs"]
        for run in more:
            rows.append(f"| `medgan-translate batch`, {batch['cases']} heads, {run['processes']} processes "
                        f"(torchrun) | {run['cases_per_hour']:.0f} cases/h | 1 process: {one['cases_per_hour']:.0f} "
                        f"cases/h, {one['seconds_per_case']:.2f} s per case |")
    return "\n".join(rows)


def speed_summary(results: List[Dict[str, Any]]) -> str:
    """The README's lines: the default model on each head, and its accuracy on the held-out phantoms."""
    rows = ["| Default model | Plain MONAI (ours × faster) | MONAI tutorial (ours × faster) | Ours | Held-out MAE (ours / "
            "plain / tutorial) |",
            "| --- | --- | --- | --- | --- |"]
    for r in (r for r in results if r["model"] == DEFAULT_MODEL):
        held = r.get("held_out")
        mae = (" / ".join(_number(held["mae"][k]) for k in ("ours", "baseline", "monai_pipeline") if k in held["mae"])
               + UNITS.get(held["unit"], "")) if held else "—"
        tutorial = (f"{r['monai_pipeline_s']:.2f} s ({r['ratio_vs_monai_pipeline']:.1f}×)"
                    if "monai_pipeline_s" in r else "—")
        rows.append(f"| {_head(r)} head | {r['baseline_s']:.2f} s ({r['ratio_vs_baseline']:.1f}×) | {tutorial} | "
                    f"**{r['ours_s']:.2f} s** | {mae} |")
    return "\n".join(rows)


def _from_cards(make):
    return lambda: make(bundled_cards())


def _from_bench(make):
    return lambda: make(bench_results())


#: Each generated table: (page, marker name, maker of its text).
TABLES = [("README.md", "models-table", _from_cards(models_table)),
          ("docs/models.md", "real-heads-table", _from_cards(real_heads_table)),
          ("README.md", "speed-summary", _from_bench(speed_summary)),
          ("docs/speed.md", "speed-table", _from_bench(speed_table)),
          ("docs/speed.md", "accuracy-table", _from_bench(accuracy_table)),
          ("docs/speed.md", "feature-costs-table", _from_bench(feature_costs_table))]


def with_table(page: str, name: str, table: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(page):
        raise SystemExit(f"no {start} ... {end} block in the page")
    return pattern.sub(lambda _: f"{start}\n{table}\n{end}", page)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a page differs, write nothing")
    args = parser.parse_args(argv)
    differs = False
    for page, name, make in TABLES:
        path = ROOT / page
        old = path.read_text(encoding="utf-8")
        new = with_table(old, name, make())
        differs |= new != old
        if args.check:
            print(f"{page} {name}: " + ("differs from its source" if new != old else "current"))
        elif new != old:
            path.write_text(new, encoding="utf-8")
            print(f"wrote {name} into {path}")
    return int(args.check and differs)


if __name__ == "__main__":
    sys.exit(main())
