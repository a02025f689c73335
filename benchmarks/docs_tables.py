"""Tables in the docs made from the files that hold their numbers, so no number is typed twice.

From the cards (``models/<id>/model.json``, which training, evaluation and ``real_heads.py --write-cards`` write):
the README's bundled-models table (architecture, training, ``validation``) and docs/models.md's real-heads table
(``validation.real_heads``), each between its ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` markers;
``tests/test_docs_tables.py`` fails when a page no longer matches the cards.

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
            f"{m['brain_bone_ml']:.1f} ({m['brain_bone_pct']:.2f}) | {m['w1_head']:.0f} | {m['w1_brain']:.0f}")


def real_heads_table(cards: List[Dict[str, Any]]) -> str:
    """The real-head yardstick: the real CT's row, each model's row per scan, then each baseline's range over
    the scans (the cards' ``validation.real_heads``)."""
    measured = [c for c in cards if c.get("validation", {}).get("real_heads")]
    rows = ["| scan | CT from | bone % head | bone % cranium | closed rings % (slices) | bone in brain mL (%) "
            "| W1 head HU | W1 brain HU |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
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
            f"{_range(column['w1_head'], 0)} | {_range(column['w1_brain'], 0)} |")
    return "\n".join(rows)


#: Each generated table: (page, marker name, maker).
TABLES = [("README.md", "models-table", models_table), ("docs/models.md", "real-heads-table", real_heads_table)]


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
    cards, differs = bundled_cards(), False
    for page, name, make in TABLES:
        path = ROOT / page
        old = path.read_text(encoding="utf-8")
        new = with_table(old, name, make(cards))
        differs |= new != old
        if args.check:
            print(f"{page} {name}: " + ("differs from the cards" if new != old else "current"))
        elif new != old:
            path.write_text(new, encoding="utf-8")
            print(f"wrote {name} into {path}")
    return int(args.check and differs)


if __name__ == "__main__":
    sys.exit(main())
