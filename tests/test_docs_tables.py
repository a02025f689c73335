"""The README's models table is made from the cards (benchmarks/docs_tables.py): it must match them."""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import docs_tables  # noqa: E402


def test_readme_models_table_matches_the_cards():
    readme = (docs_tables.ROOT / "README.md").read_text(encoding="utf-8")
    table = docs_tables.models_table(docs_tables.bundled_cards())
    assert docs_tables.with_table(readme, table) == readme, (
        "README's models table differs from the cards: run .venv/bin/python benchmarks/docs_tables.py")


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
        docs_tables.with_table("# no table here\n", "| x |")
