"""The stand-in exists only inside the fixture: engine tests running in the same session never see ``qt``,
``slicer.app`` or the stand-in's additions to slicer-core's real ``slicer`` package."""
from __future__ import annotations

import importlib.util
import sys

from .slicer_test_support import STANDIN_SLICER_MODULES, STANDIN_TOP_LEVEL


def test_standin_is_not_importable_outside_the_fixture():
    assert not any(name.split(".")[0] in STANDIN_TOP_LEVEL for name in sys.modules)
    assert all(importlib.util.find_spec(name) is None for name in STANDIN_TOP_LEVEL)
    slicer = sys.modules.get("slicer")
    if slicer is not None:
        assert not {"app", "mrmlScene", "modules", "ScriptedLoadableModule", "parameterNodeWrapper"} & set(vars(slicer))
        assert not any(f"slicer.{name}" in sys.modules for name in STANDIN_SLICER_MODULES)


def test_fixture_installs_and_removes_it(slicer_standin):
    assert slicer_standin.app is not None and "qt" in sys.modules
    assert type(slicer_standin.mrmlScene).__module__.startswith("slicer_core")  # the real scene
