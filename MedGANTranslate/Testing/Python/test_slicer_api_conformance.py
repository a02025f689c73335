"""The module calls only Slicer API that exists (slicer_api.json, read from Slicer's source), with
parameters that fit; and the stand-in the other tests run against has the same signatures as Slicer."""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from .slicer_api_check import SlicerApi, check_files, check_source

MODULE_DIR = Path(__file__).resolve().parents[2]
MODULE_SOURCES = [MODULE_DIR / "MedGANTranslate.py"] + sorted((MODULE_DIR / "MedGANTranslateSlicer").glob("*.py"))

# Real methods the stand-in implements that slicer_api.json does not list: vtkMRMLNode::GetNodeTagName and
# vtkMRMLStorageNode::Get/SetFileName (Slicer headers), vtkObject's own, and QApplication's cursor methods
# that slicer.util.tryWithErrorDisplay uses, and QApplication::topLevelWidgets (slicer.util.mainWindow).
UNLISTED_REAL_METHODS = {"topLevelWidgets", "GetNodeTagName", "GetFileName", "SetFileName", "GetClassName", "IsA", "InvokeEvent", "Modified",
                         "setOverrideCursor", "restoreOverrideCursor"}
QT_CLASS_ALIASES = {
    "qSlicerLayoutManager": ["qMRMLLayoutManager"],
    "qMRMLSliceWidget": ["qMRMLSliceWidget"],
    "qSlicerApplication": ["qSlicerApplication", "qSlicerCoreApplication"],
}


@pytest.fixture(scope="module")
def api():
    return SlicerApi()


def test_module_calls_only_listed_slicer_api(api):
    assert MODULE_SOURCES[0].is_file() and len(MODULE_SOURCES) >= 7
    assert check_files(MODULE_SOURCES, api) == []


@pytest.mark.parametrize("snippet, expected", [
    ("import slicer\nslicer.util.addVolumeFromArray(a, ijk=m)", "unknown keyword argument(s) ['ijk']"),
    ("import slicer\nslicer.util.arrayFromVolume()", "missing required argument"),
    ("import slicer\nslicer.util.launchConsoleProcess(a, blocking=False)", "unknown keyword argument(s) ['blocking']"),
    ("import slicer\nslicer.util.notThere(1)", "slicer.util.notThere is not in slicer_api.json"),
    ("from slicer.util import notThere", "slicer.util.notThere is not in slicer_api.json"),
    ("import slicer\nx = slicer.app.temporaryPath()", "is a Qt property"),
    ("import slicer\nslicer.app.mainWindow()", "not exposed to Python"),
    ("import slicer\nlm = slicer.app.layoutManager()\nlm.layout()", "qMRMLLayoutManager.layout is a Qt property"),
    ("import slicer\nslicer.app.layoutManager().sliceWidget('Red', 1)", "at most 1 allowed"),
    ("import slicer\nslicer.mrmlScene.GetNodeByName('x')", "slicer.mrmlScene.GetNodeByName is not in slicer_api.json"),
    ("import slicer\nslicer.mrmlScene.AddNewNodeByClass('a', 'b', 'c')", "at most 2 allowed"),
    ("def f(d):\n    d.SetWindowLevel(400)", "missing required argument(s) of ['window', 'level']"),
    ("def f(d):\n    d.ApplyThresholdPreset('CT')", "neither in slicer_api.json nor a VTK/SimpleITK method"),
    ("import slicer\nslicer.vtkMRMLLayoutNode.SlicerLayoutCompareWidescreenView", "does not exist in every supported Slicer"),
    ("import slicer\nslicer.mrmlScene.WithinEvent", "neither a listed scene method nor a scene event"),
    ("import PyTorchUtils\nPyTorchUtils.PyTorchUtilsLogic().installTorch(version='>=2')", "unknown keyword argument(s) ['version']"),
    ("from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest\n"
     "class T(ScriptedLoadableModuleTest):\n    def test(self):\n        self.delayDisplay()", "missing required argument"),
])
def test_checker_catches_wrong_calls(api, snippet, expected):
    problems = check_source(snippet, "snippet.py", api)
    assert len(problems) == 1 and expected in problems[0], problems


def test_checker_accepts_version_specific_calls_where_allowed(api):
    """slicer.packaging exists from 5.12 only, so its 5.12 signatures are the reference there."""
    ok = "import slicer.packaging\nslicer.packaging.pip_ensure([], skip_packages=['numpy'], requester='x', skip_in_testing=False)"
    assert check_source(ok, "ok.py", api) == []


def _parameters(function) -> list:
    params = list(inspect.signature(function).parameters.values())
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    out = []
    for p in params:
        prefix = "**" if p.kind == p.VAR_KEYWORD else "*" if p.kind == p.VAR_POSITIONAL else ""
        out.append((prefix + p.name, p.default is not inspect.Parameter.empty))
    return out


def _json_parameters(params: list) -> list:
    out = []
    for raw in params:
        if raw.strip() == "*":
            continue
        name = raw.split("=", 1)[0].strip()
        out.append((name, "=" in raw))
    return out


def _matches(api, key, function) -> bool:
    entry = api.entries[key]
    lists = [entry.get("params") or []] + entry.get("overloads", []) + [
        v["params"] for v in entry.get("changed_in", {}).values() if isinstance(v, dict) and "params" in v]
    ours = _parameters(function)
    if entry.get("overloads"):  # C++ overloads: the stand-in implements one of them (defaults may differ)
        return any([name for name, _ in ours] == [name for name, _ in _json_parameters(p)] for p in lists)
    return any(ours == _json_parameters(p) for p in lists)


def test_standin_functions_have_slicer_signatures(slicer_standin, api):
    """What the stand-in adds to slicer-core's real package (slicer.util is slicer-core's own)."""
    import slicer

    problems = []
    for prefix, module in (("slicer.i18n", slicer.i18n), ("slicer.ScriptedLoadableModule", slicer.ScriptedLoadableModule)):
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__ or not callable(obj):
                continue
            key = f"{prefix}.{name}"
            if not api.knows(key):
                problems.append(f"{key} is not Slicer API")
            elif inspect.isfunction(obj) and not _matches(api, key, obj):
                problems.append(f"{key}{_parameters(obj)} differs from slicer_api.json")
            elif inspect.isclass(obj):
                for method_name, method in vars(obj).items():
                    method_key = f"{key}.{method_name}"
                    if inspect.isfunction(method) and method_key in api.entries and not _matches(api, method_key, method):
                        problems.append(f"{method_key}{_parameters(method)} differs from slicer_api.json")
    assert not problems, "\n".join(problems)


@pytest.mark.standin(version="5.12")
def test_standin_packaging_has_slicer_signatures(slicer_standin, api):
    packaging = slicer_standin.packaging
    for name, obj in vars(packaging).items():
        if inspect.isfunction(obj) and obj.__module__ == packaging.__name__ and not name.startswith("_"):
            assert _matches(api, f"slicer.packaging.{name}", obj), name


def test_standin_view_classes_have_slicer_signatures(slicer_standin, api):
    from slicer import _app

    problems, checked = [], 0
    for name in QT_CLASS_ALIASES:
        cls = getattr(_app, name)
        for method_name, method in vars(cls).items():
            if method_name.startswith("_") or not (inspect.isfunction(method) or isinstance(method, (staticmethod, property))):
                continue
            keys = [f"{k}.{method_name}" for k in QT_CLASS_ALIASES[name] if f"{k}.{method_name}" in api.entries]
            if not keys:
                if method_name not in UNLISTED_REAL_METHODS:
                    problems.append(f"{name}.{method_name} is not in slicer_api.json")
                continue
            checked += 1
            if isinstance(method, property):
                if not api.python_access(keys[0]).startswith("attribute"):
                    problems.append(f"{name}.{method_name} is a property here but a method in Slicer")
                continue
            if api.python_access(keys[0]).startswith("attribute"):
                problems.append(f"{name}.{method_name} is a method here but a Qt property in Slicer")
            elif not any(_matches(api, key, method) for key in keys):
                problems.append(f"{name}.{method_name}{_parameters(method)} differs from {keys[0]} in slicer_api.json")
    assert not problems, "\n".join(problems)
    assert checked > 15


def test_mrml_methods_missing_from_the_json_exist_in_slicer_core(slicer_standin):
    from .slicer_api_check import MRML_METHODS_NOT_IN_JSON

    for class_name, methods in MRML_METHODS_NOT_IN_JSON.items():
        assert all(hasattr(getattr(slicer_standin, class_name), m) for m in methods), class_name


def test_slicer_core_layout_constants_and_scene_events_match_slicer_api_json(slicer_standin, api):
    """slicer_api.json (read from the 5.8-5.12 sources) and slicer-core 5.13 agree."""
    import slicer

    listed = api.entries["vtkMRMLLayoutNode.SlicerLayout"]["value"]
    ours = {k: getattr(slicer.vtkMRMLLayoutNode, k) for k in dir(slicer.vtkMRMLLayoutNode) if k.startswith("SlicerLayout")}
    assert ours and all(listed[k] == v for k, v in ours.items() if k in listed)
    assert "SlicerLayoutCompareWidescreenView" not in ours  # gone from 5.10 on
    events = set(api.entries["vtkMRMLScene._events"]["value"])
    assert {"StartCloseEvent", "EndCloseEvent", "NodeAddedEvent", "NodeRemovedEvent"} <= events
    assert all(isinstance(getattr(slicer.vtkMRMLScene, name), int) for name in events if hasattr(slicer.vtkMRMLScene, name))
