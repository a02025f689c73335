"""Controls of the stand-in (not part of Slicer's API). ``configure`` puts, on the real ``slicer`` package
of slicer-core, what slicer-core lacks: ``slicer.app`` (an application over Slicer's real application
logic), ``slicer.modules``, ``slicer.selfTests``, the MRML widget classes, and the Python modules that
need Qt (``ScriptedLoadableModule``, ``parameterNodeWrapper``, ``i18n``, 5.12's ``packaging``). ``uninstall``
takes all of it away again. Also: what the fake dialogs answer and what was asked of them, and what
Slicer's module manager does (load a scripted module file, create its module and widget objects)."""
from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict, Optional

import qt

import slicer

from . import _app

VERSIONS = ("5.8", "5.10", "5.12")
# Slicer's own colour files (Base/Logic/Resources/ColorFiles at v5.8.1), read by the real colour logic; shipped
# with the web face, whose slicer-core has none
COLOR_FILES = Path(__file__).resolve().parents[4] / "MedGANTranslateWeb" / "slicer_home" / "share" / "ColorFiles"
ADDED_MODULES = ("ScriptedLoadableModule", "parameterNodeWrapper", "i18n", "packaging")
ADDED_ATTRIBUTES = ("app", "mrmlScene", "modules", "selfTests", "qMRMLWidget", "qMRMLNodeComboBox", "qMRMLTableView",
                    "qMRMLSliceWidget", "qSlicerLayoutManager", "qSlicerApplication") + ADDED_MODULES

state = SimpleNamespace()
_real_pip_install = slicer.util.pip_install


class _Modules:
    """``slicer.modules``: one attribute per loaded module (lower-case name) and ``<Name>Widget``."""


def _fresh_state(version: str, main_window: bool) -> SimpleNamespace:
    window = None
    if main_window:
        window = qt.QMainWindow()
        window.objectName = "qSlicerMainWindow"
    return SimpleNamespace(
        version=version,
        main_window=window,
        dialogs=[],
        pip_calls=[],
        pip_ensure_calls=[],
        torch_calls=[],
        confirm_answer=True,
        torch_answer=True,
        save_file_answer="",
        on_pip_install=None,
        pip_ensure_error=None,
    )


def configure(temporary_path: str, version: str = "5.8", testing: bool = False, main_window: bool = True) -> None:
    """A new scene and application. ``version`` picks the API personality: 5.8 (its ``connectGui`` returns
    None, ``pip_install`` is a blocking pip run), 5.10, or 5.12 (``slicer.packaging``)."""
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {VERSIONS}")
    global state
    qt.reset()
    state = _fresh_state(version, main_window)
    for name in ("qMRMLWidget", "qMRMLNodeComboBox", "qMRMLTableView", "qMRMLSliceWidget", "qSlicerLayoutManager",
                 "qSlicerApplication"):
        setattr(slicer, name, getattr(_app, name))
    share = Path(temporary_path).parent / "SlicerHome" / "share"
    shutil.copytree(COLOR_FILES, share / "ColorFiles", dirs_exist_ok=True)
    slicer.mrmlScene = slicer.vtkMRMLScene()
    slicer.app = _app.qSlicerApplication(slicer.mrmlScene, temporary_path, testing, state.main_window, version, str(share))
    slicer.modules = _Modules()
    slicer.selfTests = {}
    for name in ("ScriptedLoadableModule", "parameterNodeWrapper", "i18n"):
        setattr(slicer, name, importlib.import_module("slicer." + name))
    if version == "5.12":
        slicer.packaging = importlib.import_module("slicer.packaging")
        slicer.util.pip_install = _real_pip_install
    else:
        sys.modules["slicer.packaging"] = None  # "import slicer.packaging" raises ImportError, as before 5.12
        slicer.util.pip_install = pip_install_58


def uninstall() -> None:
    """Detaches the test's widgets from the scene (their observers would otherwise run while Python tears
    them down) and takes away everything ``configure`` added."""
    if getattr(slicer, "mrmlScene", None) is not None:
        slicer.mrmlScene.RemoveAllObservers()
    slicer.util.pip_install = _real_pip_install
    for name in ADDED_ATTRIBUTES:
        if name in vars(slicer):
            delattr(slicer, name)


def pip_install_58(requirements) -> None:
    """Slicer 5.8/5.10's ``slicer.util.pip_install``: a blocking ``pip install`` run whose output
    ``logProcessOutput`` relays, calling ``slicer.app.processEvents()`` for each line (recorded, not run)."""
    if not isinstance(requirements, (str, list)):
        raise ValueError("requirements must be a string or a list")
    record_pip_install(requirements, {})
    slicer.app.processEvents()


def record_pip_install(requirements, kwargs: Dict[str, Any]) -> None:
    state.pip_calls.append(("install", requirements, kwargs))
    if state.on_pip_install is not None:
        state.on_pip_install(requirements)


class ModuleParent(qt.QObject):
    """What ``slicer.modules.<name>`` is: the C++ module object a scripted module class decorates."""

    def __init__(self, name: str, path: str) -> None:
        super().__init__()
        self.name = name
        self.path = path
        self.title = ""
        self.categories = []
        self.dependencies = []
        self.contributors = []
        self.helpText = ""
        self.acknowledgementText = ""
        self.hidden = False
        self.icon = None
        self.python_module = None
        self.widget = None

    def widgetRepresentation(self):
        return self.widget.parent if self.widget is not None else None


class ModuleWidgetParent(_app.qMRMLWidget):
    """The C++ qSlicerScriptedLoadableModuleWidget: a layout and the ``isEntered`` property."""

    def __init__(self) -> None:
        super().__init__()
        self.setLayout(qt.QVBoxLayout())
        self.isEntered = False


def load_module(path: str):
    """Imports ``<Name>.py`` and instantiates ``<Name>(parent)``, registering ``slicer.modules.<name>``."""
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    python_module = importlib.util.module_from_spec(spec)
    sys.modules[name] = python_module
    spec.loader.exec_module(python_module)
    parent = ModuleParent(name, path)
    parent.python_module = python_module
    setattr(slicer.modules, name.lower(), parent)
    getattr(python_module, name)(parent)
    return python_module


def create_widget(name: str, enter: bool = True):
    """What Slicer does when the module is first shown: ``<Name>Widget(parent)``, ``setup()``, ``enter()``."""
    module_parent = getattr(slicer.modules, name.lower())
    widget_parent = ModuleWidgetParent()
    widget = getattr(module_parent.python_module, name + "Widget")(widget_parent)
    widget.setup()
    module_parent.widget = widget
    setattr(slicer.modules, name + "Widget", widget)
    if enter:
        widget_parent.isEntered = True
        widget.enter()
    return widget


def process_events_until(condition: Callable[[], bool], timeout: float = 60.0, interval: float = 0.02) -> bool:
    """Runs the event loop (timers) until ``condition()`` holds; False on timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        slicer.app.processEvents()
        time.sleep(interval)
    return True


def dialogs(kind: Optional[str] = None):
    return [d for d in state.dialogs if kind is None or d["kind"] == kind]
