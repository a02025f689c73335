"""The stand-in exists only inside the fixture: engine tests running in the same session never see it."""
from __future__ import annotations

import importlib.util
import sys

from .slicer_test_support import STANDIN_TOP_LEVEL


def test_standin_is_not_importable_outside_the_fixture():
    assert not any(name.split(".")[0] in STANDIN_TOP_LEVEL for name in sys.modules)
    assert all(importlib.util.find_spec(name) is None for name in ("slicer", "qt", "ctk", "sitkUtils", "PyTorchUtils"))


def test_fixture_installs_and_removes_it(slicer_standin):
    assert slicer_standin.app is not None and "qt" in sys.modules
