"""Tables in the docs are made from the cards and the benchmark's results (benchmarks/docs_tables.py): the pages
must match them."""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import docs_tables  # noqa: E402


@pytest.mark.parametrize("page, name, make", docs_tables.TABLES, ids=[t[1] for t in docs_tables.TABLES])
def test_each_generated_table_matches_the_cards(page, name, make):
    text = (docs_tables.ROOT / page).read_text(encoding="utf-8")
    assert docs_tables.with_table(text, name, make()) == text, (
        f"{page}'s {name} differs from its source (the cards or benchmarks/results.json): run "
        ".venv/bin/python benchmarks/docs_tables.py")


def test_real_heads_table_has_each_measured_models_row_per_scan_and_the_baselines_as_ranges():
    cards = docs_tables.bundled_cards()
    measured = [c for c in cards if c["validation"].get("real_heads")]
    assert len(measured) == 2  # both CT models; the T1c card's real-head numbers are real_heads_enhancement
    rows = docs_tables.real_heads_table(cards).splitlines()[2:]
    scans = measured[0]["validation"]["real_heads"]["scans"]
    baselines = scans[0]["baselines"]
    assert len(rows) == 1 + len(scans) * len(measured) + len(baselines)
    first = scans[0]
    assert rows[1].startswith(f"| {first['scan']} | `{measured[0]['id']}`") and f"{first['rings']:.0f} (" in rows[1]
    rings = [s["baselines"]["atlas"]["rings"] for s in scans]
    assert f"| {min(rings):.0f}–{max(rings):.0f} |" in rows[-1] and "baseline: atlas" in rows[-1]


def test_table_shows_each_cards_numbers_and_says_when_a_model_is_no_better_than_its_baseline():
    cards = docs_tables.bundled_cards()
    assert cards[0]["id"] == docs_tables.DEFAULT_MODEL
    worse = copy.deepcopy(cards[0])
    worse["validation"]["metrics"]["mae"] = 400.0
    worse["validation"]["metrics"]["bone_dice"] = 0.123
    rows = docs_tables.models_table([cards[0], worse]).splitlines()[2:]
    assert f"MAE **{cards[0]['validation']['metrics']['mae']:.1f} HU**" in rows[0] and "no better" not in rows[0]
    assert "MAE **400.0 HU**" in rows[1] and "bone Dice **0.123**" in rows[1] and "no better than the baseline" in rows[1]
    start = cards[0]["training"]["init_weights"]["model"]
    assert (f"{cards[0]['training']['steps']} steps) after {start['wall_seconds'] / 60:.0f} min ({start['steps']} "
            "steps) of the run it fine-tunes") in rows[0]
    del worse["training"]["init_weights"]["model"]  # bare weights: no card said what they cost
    bare_row = docs_tables.models_table([worse])
    assert f"{cards[0]['training']['steps']} steps), fine-tuning an earlier run's weights" in bare_row
    assert "fine-tun" not in docs_tables.models_table([cards[1]]), "a run from random weights"


def test_the_architecture_cell_names_a_grid_coarser_or_finer_than_1_mm():
    """A 2 mm model's output is smoother than a 1 mm one's: the table says so, and says nothing for 1 mm."""
    card = copy.deepcopy(docs_tables.bundled_cards()[0])
    assert "grid" not in docs_tables._io(card)
    card["preprocessing"]["spacing"] = [2.0, 2.0, 2.0]
    assert docs_tables._io(card).endswith(", on a 2 mm grid")
    card["preprocessing"]["spacing"] = [1.0, 1.0, 3.0]
    assert docs_tables._io(card).endswith(", on a 1 × 1 × 3 mm grid")


def test_a_readme_without_the_markers_is_refused():
    with pytest.raises(SystemExit, match="models-table"):
        docs_tables.with_table("# no table here\n", "models-table", "| x |")


def bench_row(model: str, tutorial: bool) -> dict:
    """One entry of benchmarks/results.json, as run_benchmark.py writes it."""
    row = {"model": model, "version": "1.0.0", "size": "1mm", "workload": "phantom seed 0, 192x224x192 voxels at 1 mm",
           "baseline_s": 3.0, "ours_s": 0.75, "ratio_vs_baseline": 4.0, "baseline_infer_s": 2.0, "ours_infer_s": 0.2,
           "stages_s": {"read": 0.2, "preprocess": 0.25, "infer": 0.2, "postprocess": 0.04, "write": 0.06},
           "baseline_peak_rss_mb": 700.0, "peak_rss_mb": 1000.0,
           "held_out": {"seeds": list(range(1, 11)), "unit": "HU", "mae": {"ours": 44.8, "baseline": 45.1},
                        "ours_minus_best_baseline": -0.3}}
    if tutorial:
        row.update(monai_pipeline_s=2.8, ratio_vs_monai_pipeline=2.8 / 0.75)
        row["held_out"]["mae"]["monai_pipeline"] = 69.9
    return row


def test_speed_tables_show_both_baselines_their_ratios_and_the_held_out_accuracy():
    rows = [bench_row(docs_tables.DEFAULT_MODEL, tutorial=True), bench_row("mr-t1t2-to-pet-pix2pix", tutorial=False)]
    speed = docs_tables.speed_table(rows).splitlines()[2:]
    assert "| 192×224×192 | 3.00 s | 2.80 s | 0.75 s | **4.00×**, **3.73×** | 2.00 → 0.20 s | 0.20, 0.25, 0.20" in speed[0]
    assert "| 3.00 s | — | 0.75 s | **4.00×**, — |" in speed[1]
    accuracy = docs_tables.accuracy_table(rows).splitlines()[2:]
    assert accuracy[0].endswith("| seeds 1–10 | 44.8 HU | 45.1 HU | 69.9 HU | -0.30 HU |")
    assert "| 44.8 HU | 45.1 HU | — | -0.30 HU |" in accuracy[1]
    summary = docs_tables.speed_summary(rows).splitlines()[2:]
    assert summary == ["| 192×224×192 head | 3.00 s (4.0×) | 2.80 s (3.7×) | **0.75 s** | 44.8 / 45.1 / 69.9 HU |"]
