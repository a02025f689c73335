"""Tables in the docs are made from the cards (benchmarks/docs_tables.py): the pages must match them."""
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
    assert docs_tables.with_table(text, name, make(docs_tables.bundled_cards())) == text, (
        f"{page}'s {name} differs from the cards: run .venv/bin/python benchmarks/docs_tables.py")


def test_real_heads_table_has_each_measured_models_row_per_scan_and_the_baselines_as_ranges():
    cards = docs_tables.bundled_cards()
    measured = [c for c in cards if c["validation"].get("real_heads")]
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
    assert "MAE **41.0 HU**" in rows[0] and "no better" not in rows[0]
    assert "MAE **400.0 HU**" in rows[1] and "bone Dice **0.123**" in rows[1] and "no better than the baseline" in rows[1]
    assert f"{cards[0]['training']['steps']} steps" in rows[0]


def test_a_readme_without_the_markers_is_refused():
    with pytest.raises(SystemExit, match="models-table"):
        docs_tables.with_table("# no table here\n", "models-table", "| x |")
