"""Checks Python source against slicer_api.json, the Slicer API read from Slicer's own source (5.8.1, with
the parameter lists of 5.10, 5.12 and the development branch where they changed).

What :func:`check_source` reports:

* ``slicer.<sub>.<function>(...)`` and ``sitkUtils.<function>(...)`` calls, and names imported from
  ``slicer.*``: the function must be listed; positional count, keyword names and required parameters must
  fit its parameter list. Outside ``slicer.packaging`` (5.12+) the call must fit the 5.8.1 list, because
  the module runs on Slicer 5.8.
* ``slicer.app.<member>``: the member must be listed; a Q_PROPERTY must be read, not called; members
  PythonQt does not expose must not be used.
* ``slicer.mrmlScene.<Method>(...)`` and every ``<object>.<CamelCaseMethod>(...)``: the method must be a
  listed MRML/Slicer method whose parameters fit, or a real method of the VTK or SimpleITK classes the
  module handles (checked with ``hasattr`` on those classes, so a typo is still caught).
* Layout manager, slice widget and slice logic members (lowerCamelCase, e.g. ``sliceWidget``): listed
  parameters must fit; a Q_PROPERTY of an object obtained from ``slicer.app.layoutManager()`` must not be
  called.
* Layout constants ``slicer.vtkMRMLLayoutNode.SlicerLayout*`` must exist in every supported Slicer
  (5.8 to the development branch) and scene events must be listed.
* Methods the scripted-module base classes provide (``self.resourcePath``, ``self.delayDisplay``, ...)
  called on ``self`` without being defined in the class must fit their listed parameters.
"""
from __future__ import annotations

import ast
import json
import unittest
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import SimpleITK as sitk
import vtk

API_PATH = Path(__file__).with_name("slicer_api.json")

# PyTorchUtils comes from the PyTorch extension, not Slicer; its signature as read from
# fepegar/SlicerPyTorch PyTorchUtils/PyTorchUtils.py.
EXTRA_FUNCTIONS = {
    "PyTorchUtils.PyTorchUtilsLogic.installTorch": [["askConfirmation=False", "forceComputationBackend=None", "torchVersionRequirement=None"]],
    "PyTorchUtils.PyTorchUtilsLogic.torchInstalled": [[]],
    "PyTorchUtils.PyTorchUtilsLogic": [[]],
}

# MRML methods the module calls that slicer_api.json does not list, each found in the v5.8.1 headers
# (Libs/MRML/Core: vtkMRMLStorableNode.h, vtkMRMLTransformableNode.h, vtkMRMLTransformNode.h, vtkMRMLTableNode.h);
# test_slicer_api_conformance checks that slicer-core's classes have them too.
MRML_METHODS_NOT_IN_JSON = {
    "vtkMRMLStorableNode": ["GetNthStorageNode", "GetNumberOfStorageNodes"],
    "vtkMRMLStorageNode": ["SetFileName", "SetUseCompression", "WriteData"],
    "vtkMRMLTransformableNode": ["GetParentTransformNode", "SetAndObserveTransformNodeID"],
    "vtkMRMLTransformNode": ["IsTransformToWorldLinear", "GetMatrixTransformToWorld"],
    "vtkMRMLTableNode": ["SetUseColumnTitleAsColumnHeader"],  # SetUseColumnNameAsColumnHeader is deprecated there
}

# Objects the module gets from VTK and SimpleITK rather than from Slicer.
FOREIGN_CLASSES = (vtk.vtkObject, vtk.vtkMatrix4x4, vtk.vtkImageData, vtk.vtkPointData, vtk.vtkStringArray,
                   vtk.vtkTable, vtk.vtkCollection, vtk.vtkIdList, sitk.Image)
QT_OBJECT_METHODS = {"connect", "disconnect", "blockSignals", "setProperty", "property", "findChildren", "objectName"}
SLICER_TOP_LEVEL = {"app", "mrmlScene", "modules", "selfTests", "util", "i18n", "packaging", "cli", "testing",
                    "parameterNodeWrapper", "ScriptedLoadableModule"}
QT_API_CLASSES = {"qMRMLLayoutManager", "qMRMLSliceWidget", "qSlicerAbstractModuleWidget"}
BASE_CLASSES = ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic",
                "ScriptedLoadableModuleTest", "VTKObservationMixin")


@dataclass
class Signature:
    names: List[str]
    required: int
    max_positional: Optional[int]  # None: *args
    keywords: Optional[set]  # None: **kwargs

    @classmethod
    def parse(cls, params: Sequence[str]) -> "Signature":
        names, required, positional, keyword_only, var_kw, var_pos = [], 0, 0, False, False, False
        for raw in params:
            text = raw.strip()
            if text == "*":
                keyword_only = True
                continue
            if text.startswith("**"):
                var_kw = True
                continue
            if text.startswith("*"):
                var_pos = True
                keyword_only = True
                continue
            name = text.split("=", 1)[0].strip()
            names.append(name)
            if not keyword_only:
                positional += 1
                if "=" not in text:
                    required += 1
        return cls(names, required, None if var_pos else positional, None if var_kw else set(names))

    def accepts(self, n_positional: int, keywords: Iterable[str]) -> Optional[str]:
        keywords = list(keywords)
        if self.max_positional is not None and n_positional > self.max_positional:
            return f"{n_positional} positional arguments, at most {self.max_positional} allowed"
        if self.keywords is not None:
            unknown = [k for k in keywords if k not in self.keywords]
            if unknown:
                return f"unknown keyword argument(s) {unknown}; parameters are {self.names}"
        covered = n_positional + sum(1 for k in keywords if k in self.names[:self.required])
        if covered < self.required:
            return f"missing required argument(s) of {self.names[:self.required]}"
        return None


class SlicerApi:
    def __init__(self, path: Path = API_PATH) -> None:
        self.raw = json.loads(path.read_text(encoding="utf-8"))
        self.entries = {k: v for k, v in self.raw.items() if not k.startswith("_") and isinstance(v, dict)}
        layout = self.entries["vtkMRMLLayoutNode.SlicerLayout"]
        self.layout_constants = set(layout["value"]) - set(layout.get("removed_later", {}))
        self.scene_events = set(self.entries["vtkMRMLScene._events"]["value"])

    def signatures(self, key: str, only_581: bool = False) -> List[Signature]:
        if key in EXTRA_FUNCTIONS:
            return [Signature.parse(p) for p in EXTRA_FUNCTIONS[key]]
        entry = self.entries.get(key)
        if entry is None:
            return []
        if entry.get("params") is None and not entry.get("overloads"):
            return [Signature([], 0, None, None)]  # classes listed without a constructor signature
        lists = [entry["params"]]
        lists += entry.get("overloads", [])
        if not only_581:
            lists += [v["params"] for v in entry.get("changed_in", {}).values() if isinstance(v, dict) and "params" in v]
        return [Signature.parse(p) for p in lists]

    def knows(self, dotted: str) -> bool:
        return dotted in self.entries or dotted in EXTRA_FUNCTIONS or any(k.startswith(dotted + ".") for k in self.entries)

    def methods_named(self, name: str, classes: Optional[Iterable[str]] = None) -> List[str]:
        keys = [k for k in self.entries if k.rsplit(".", 1)[-1] == name and k.count(".") == 1]
        if classes is not None:
            keys = [k for k in keys if k.split(".")[0] in classes]
        return [k for k in keys if k.split(".")[0].startswith(("vtk", "q"))]

    def python_access(self, key: str) -> str:
        return self.entries.get(key, {}).get("python_access", "method")


def _dotted(node: ast.AST) -> Optional[str]:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


class _Checker(ast.NodeVisitor):
    def __init__(self, api: SlicerApi, filename: str) -> None:
        self.api = api
        self.filename = filename
        self.problems: List[str] = []
        self.aliases: Dict[str, str] = {}  # local name -> fully qualified
        self.layout_managers: set = set()
        self.class_stack: List[Tuple[List[str], set]] = []
        self.called: set = set()  # ids of expressions that are called (checked as calls, not as reads)

    def report(self, node: ast.AST, message: str) -> None:
        problem = f"{self.filename}:{getattr(node, 'lineno', '?')}: {message}"
        if problem not in self.problems:
            self.problems.append(problem)

    # --- imports -----------------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.aliases[(alias.asname or alias.name).split(".")[0]] = alias.name.split(".")[0] if not alias.asname else alias.name

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        for alias in node.names:
            full = f"{module}.{alias.name}"
            self.aliases[alias.asname or alias.name] = full
            if module.split(".")[0] in ("slicer", "sitkUtils") and alias.name != "*":
                self._check_slicer_name(node, full)

    def _check_slicer_name(self, node: ast.AST, full: str) -> None:
        parts = full.split(".")
        if full.startswith(("slicer.vtkMRML", "slicer.qMRML", "slicer.qSlicer")):
            cls = parts[1]
            if cls.startswith("vtkMRML") and not self.api.knows(cls):
                self.report(node, f"{full}: class not in slicer_api.json")
            return
        if len(parts) == 2 and parts[0] == "slicer" and parts[1] in SLICER_TOP_LEVEL:
            return
        if not self.api.knows(full):
            self.report(node, f"{full} is not in slicer_api.json")

    def resolve(self, node: ast.AST) -> Optional[str]:
        dotted = _dotted(node)
        if dotted is None:
            return None
        head, _, rest = dotted.partition(".")
        if head in self.aliases:
            return self.aliases[head] + ("." + rest if rest else "")
        return None

    # --- classes and assignments -------------------------------------------------------------------
    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        bases = [self.resolve(b) or _dotted(b) or "" for b in node.bases]
        defined = {n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        self.class_stack.append(([b.rsplit(".", 1)[-1] for b in bases], defined))
        self.generic_visit(node)
        self.class_stack.pop()

    def visit_Assign(self, node: ast.Assign) -> None:
        if isinstance(node.value, ast.Call) and self.resolve(node.value.func) == "slicer.app.layoutManager":
            for target in node.targets:
                if isinstance(target, ast.Name):
                    self.layout_managers.add(target.id)
        self.generic_visit(node)

    # --- attribute reads ---------------------------------------------------------------------------
    def visit_Attribute(self, node: ast.Attribute) -> None:
        full = self.resolve(node)
        if full and full.startswith("slicer."):
            self._check_slicer_attribute(node, full)
        self.generic_visit(node)

    def _check_slicer_attribute(self, node: ast.AST, full: str) -> None:
        parts = full.split(".")
        if len(parts) < 2:
            return
        if parts[1] == "app" and len(parts) == 3:
            keys = [f"qSlicerApplication.{parts[2]}", f"qSlicerCoreApplication.{parts[2]}"]
            known = [k for k in keys if k in self.api.entries]
            if not known and parts[2] not in QT_OBJECT_METHODS:
                self.report(node, f"slicer.app.{parts[2]} is not in slicer_api.json")
            elif known and self.api.python_access(known[0]).startswith("not exposed"):
                self.report(node, f"slicer.app.{parts[2]} is not exposed to Python: {self.api.entries[known[0]].get('notes', '')}")
        elif parts[1] == "mrmlScene" and len(parts) == 3 and parts[2][0].isupper() and id(node) not in self.called:
            is_method = f"vtkMRMLScene.{parts[2]}" in self.api.entries or hasattr(vtk.vtkObject, parts[2])
            if not is_method and parts[2] not in self.api.scene_events:
                self.report(node, f"slicer.mrmlScene.{parts[2]} is neither a listed scene method nor a scene event")
        elif parts[1] == "vtkMRMLLayoutNode" and len(parts) == 3 and parts[2].startswith("SlicerLayout"):
            if parts[2] not in self.api.layout_constants:
                self.report(node, f"layout constant {parts[2]} does not exist in every supported Slicer")
        elif parts[1] in ("util", "packaging", "i18n", "cli", "testing", "parameterNodeWrapper") and len(parts) == 3:
            if not self.api.knows(full):
                self.report(node, f"{full} is not in slicer_api.json")
        elif len(parts) == 2 and parts[1] not in SLICER_TOP_LEVEL and not parts[1].startswith(("vtkMRML", "qMRML", "qSlicer")):
            self.report(node, f"{full} is not a Slicer module attribute")

    # --- calls -------------------------------------------------------------------------------------
    def visit_Call(self, node: ast.Call) -> None:
        self.called.add(id(node.func))
        self.generic_visit(node)
        full = self.resolve(node.func)
        n_pos = sum(1 for a in node.args if not isinstance(a, ast.Starred))
        keywords = [k.arg for k in node.keywords if k.arg is not None]
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            return
        if full is not None:
            if full.startswith(("slicer.", "sitkUtils.", "PyTorchUtils.")):
                self._check_qualified_call(node, full, n_pos, keywords)
            return
        if not isinstance(node.func, ast.Attribute):
            return
        name = node.func.attr
        receiver = node.func.value
        if isinstance(receiver, ast.Name) and receiver.id == "self" and self.class_stack:
            self._check_inherited_call(node, name, n_pos, keywords)
            return
        if isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Name) and receiver.func.id == "super":
            self._check_inherited_call(node, name, n_pos, keywords, defined_locally=False)
            return
        if isinstance(receiver, ast.Call) and self.resolve(receiver.func) == "PyTorchUtils.PyTorchUtilsLogic":
            self._fit(node, f"PyTorchUtils.PyTorchUtilsLogic.{name}", self.api.signatures(f"PyTorchUtils.PyTorchUtilsLogic.{name}"), n_pos, keywords)
            return
        if name[:1].isupper():
            self._check_camel_method(node, name, n_pos, keywords)
        else:
            self._check_qt_api_method(node, name, receiver, n_pos, keywords)

    def _fit(self, node: ast.AST, what: str, signatures: List[Signature], n_pos: int, keywords: List[str]) -> bool:
        if not signatures:
            self.report(node, f"{what} is not in slicer_api.json")
            return False
        reasons = [s.accepts(n_pos, keywords) for s in signatures]
        if all(reasons):
            self.report(node, f"{what}(...) does not match slicer_api.json: {reasons[0]}")
            return False
        return True

    def _check_qualified_call(self, node: ast.Call, full: str, n_pos: int, keywords: List[str]) -> None:
        parts = full.split(".")
        if parts[-1] == "__init__":  # Base.__init__(self, ...) from a subclass
            cls = ".".join(parts[:-1])
            if not self.api.knows(cls):
                self.report(node, f"{cls} is not in slicer_api.json")
            elif full in self.api.entries:
                self._fit(node, full, self.api.signatures(full, only_581=True), n_pos - 1, keywords)
        elif parts[0] == "PyTorchUtils":
            self._fit(node, full, self.api.signatures(full), n_pos, keywords)
        elif parts[0] == "sitkUtils" or parts[1] in ("util", "packaging", "i18n", "cli", "testing", "parameterNodeWrapper"):
            key = full if full in self.api.entries or full in EXTRA_FUNCTIONS else full + ".__init__"
            only_581 = parts[1] != "packaging"
            if self._fit(node, full, self.api.signatures(key, only_581=only_581), n_pos, keywords):
                return
        elif parts[1] == "app" and len(parts) == 3:
            keys = [k for k in (f"qSlicerApplication.{parts[2]}", f"qSlicerCoreApplication.{parts[2]}") if k in self.api.entries]
            if keys and self.api.python_access(keys[0]).startswith("attribute"):
                self.report(node, f"slicer.app.{parts[2]} is a Qt property: read it without calling it")
            elif keys:
                self._fit(node, full, self.api.signatures(keys[0]), n_pos, keywords)
        elif parts[1] == "mrmlScene" and len(parts) == 3:
            if hasattr(vtk.vtkObject, parts[2]) and f"vtkMRMLScene.{parts[2]}" not in self.api.entries:
                return
            self._fit(node, full, self.api.signatures(f"vtkMRMLScene.{parts[2]}"), n_pos, keywords)
        elif len(parts) == 3 and parts[1].startswith("vtkMRML"):
            self._fit(node, full, self.api.signatures(f"{parts[1]}.{parts[2]}"), n_pos, keywords)

    def _check_camel_method(self, node: ast.Call, name: str, n_pos: int, keywords: List[str]) -> None:
        keys = self.api.methods_named(name)
        if keys:
            signatures = [s for k in keys for s in self.api.signatures(k)]
            if any(s.accepts(n_pos, keywords) is None for s in signatures):
                return
            if any(hasattr(cls, name) for cls in FOREIGN_CLASSES):
                return
            self._fit(node, f"{keys[0]}", signatures, n_pos, keywords)
        elif not any(hasattr(cls, name) for cls in FOREIGN_CLASSES) and not any(
                name in methods for methods in MRML_METHODS_NOT_IN_JSON.values()):
            self.report(node, f"method {name}() is neither in slicer_api.json nor a VTK/SimpleITK method")

    def _check_qt_api_method(self, node: ast.Call, name: str, receiver: ast.AST, n_pos: int, keywords: List[str]) -> None:
        keys = self.api.methods_named(name, QT_API_CLASSES)
        is_layout_manager = (isinstance(receiver, ast.Name) and receiver.id in self.layout_managers) or (
            isinstance(receiver, ast.Call) and self.resolve(receiver.func) == "slicer.app.layoutManager")
        if not keys:
            return
        attribute_keys = [k for k in keys if self.api.python_access(k).startswith("attribute")]
        if attribute_keys and (is_layout_manager or name != "layout"):
            self.report(node, f"{attribute_keys[0]} is a Qt property: read it without calling it")
            return
        self._fit(node, keys[0], [s for k in keys for s in self.api.signatures(k)], n_pos, keywords)

    def _check_inherited_call(self, node: ast.Call, name: str, n_pos: int, keywords: List[str], defined_locally: bool = True) -> None:
        bases, defined = self.class_stack[-1]
        if defined_locally and name in defined:
            return
        for base in bases:
            if base not in BASE_CLASSES:
                continue
            prefix = "slicer.util." if base == "VTKObservationMixin" else "slicer.ScriptedLoadableModule."
            key = f"{prefix}{base}.{name}"
            if key in self.api.entries:
                self._fit(node, key, self.api.signatures(key), n_pos, keywords)
                return
        if "ScriptedLoadableModuleTest" in bases and hasattr(unittest.TestCase, name):
            return


def check_source(source: str, filename: str = "<source>", api: Optional[SlicerApi] = None) -> List[str]:
    checker = _Checker(api or SlicerApi(), filename)
    checker.visit(ast.parse(source, filename=filename))
    return checker.problems


def check_files(paths: Iterable[Path], api: Optional[SlicerApi] = None) -> List[str]:
    api = api or SlicerApi()
    problems: List[str] = []
    for path in paths:
        problems += check_source(Path(path).read_text(encoding="utf-8"), str(path), api)
    return problems
