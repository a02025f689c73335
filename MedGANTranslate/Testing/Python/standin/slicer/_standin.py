"""Controls of the stand-in (not part of Slicer's API): fresh application state per test, what the
fake dialogs answer, and what was asked of them. Also does what Slicer's module manager does: load a
scripted module file, create its module and widget objects."""
from __future__ import annotations

import importlib.util
import os
import sys
from types import SimpleNamespace
from typing import Any, Callable, Dict, Optional

import qt

import slicer

VERSIONS = ("5.8", "5.10", "5.12")

state = SimpleNamespace()


def _fresh_state(version: str, main_window: bool) -> SimpleNamespace:
    return SimpleNamespace(
        version=version,
        main_window=qt.QWidget() if main_window else None,
        dialogs=[],
        status_messages=[],
        pip_calls=[],
        pip_ensure_calls=[],
        torch_calls=[],
        confirm_answer=True,
        torch_answer=True,
        on_pip_install=None,
        selected_module=None,
    )


def configure(temporary_path: str, version: str = "5.8", testing: bool = False, main_window: bool = True) -> None:
    """A new scene and application. ``version`` picks the API personality: 5.12 has ``slicer.packaging``."""
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {VERSIONS}")
    global state
    qt.reset()
    state = _fresh_state(version, main_window)
    slicer.mrmlScene = slicer.vtkMRMLScene()
    slicer.app = slicer.qSlicerApplication(slicer.mrmlScene, temporary_path, testing, main_window, version)
    slicer.modules = slicer._Modules()
    slicer.selfTests.clear()
    from . import util

    if version == "5.12":
        sys.modules.pop("slicer.packaging", None)
        from . import packaging

        slicer.packaging = packaging
        util.pip_install = _pip_install_512
    else:
        sys.modules["slicer.packaging"] = None  # "import slicer.packaging" raises ImportError, as before 5.12
        if hasattr(slicer, "packaging"):
            del slicer.packaging
        util.pip_install = util._pip_install_58


def _pip_install_512(requirements, **kwargs) -> None:
    if not isinstance(requirements, (str, list)):
        raise ValueError("requirements must be a string or a list")
    record_pip_install(requirements, kwargs)


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


class ModuleWidgetParent(slicer.qMRMLWidget):
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
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        slicer.app.processEvents()
        time.sleep(interval)
    return True


def dialogs(kind: Optional[str] = None):
    return [d for d in state.dialogs if kind is None or d["kind"] == kind]
