"""Slicer 5.8 embeds Python 3.9: the engine and the module must neither use newer syntax nor newer stdlib."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "MedGANTranslate"
SOURCES = sorted(p for p in ROOT.rglob("*.py") if "Testing" not in p.parts)


def test_sources_parse_as_python_39():
    assert len(SOURCES) > 10
    for path in SOURCES:
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 9))


def test_no_stdlib_or_syntax_newer_than_39():
    """vermin reads every construct and library call and knows the version that introduced it."""
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("vermin")), "-t=3.9-", "--no-tips", "--eval-annotations", "--violations", *map(str, SOURCES)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

