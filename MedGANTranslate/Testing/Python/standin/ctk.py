"""Stand-in for PythonQt's ``ctk`` module: the CTK widgets the panel's .ui file uses."""
from __future__ import annotations

from typing import Optional

import qt


class ctkCollapsibleButton(qt.QAbstractButton):
    SIGNALS = ("contentsCollapsed(bool)",)

    def __init__(self, parent: Optional[qt.QObject] = None) -> None:
        super().__init__("", parent)
        self._collapsed = False

    @property
    def collapsed(self) -> bool:
        return self._collapsed

    @collapsed.setter
    def collapsed(self, value: bool) -> None:
        if bool(value) != self._collapsed:
            self._collapsed = bool(value)
            self.emit_signal("contentsCollapsed(bool)", self._collapsed)


class ctkSliderWidget(qt.QDoubleSpinBox):
    """A slider with a spin box; same value semantics as QDoubleSpinBox (default range 0..99)."""


class ctkCheckBox(qt.QCheckBox):
    pass


class ctkPathLineEdit(qt.QWidget):
    SIGNALS = ("currentPathChanged(QString)", "validInputChanged(bool)")
    Dirs = 0x001
    Files = 0x002
    Drives = 0x004
    NoDot = 0x2000
    NoDotDot = 0x4000

    def __init__(self, parent: Optional[qt.QObject] = None) -> None:
        super().__init__(parent)
        self._path = ""
        self.filters = 0

    @property
    def currentPath(self) -> str:
        return self._path

    @currentPath.setter
    def currentPath(self, path: str) -> None:
        if path != self._path:
            self._path = path
            self.emit_signal("currentPathChanged(QString)", path)

    def setCurrentPath(self, path: str) -> None:
        self.currentPath = path
