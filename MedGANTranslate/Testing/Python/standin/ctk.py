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


class ctkMessageBox(qt.QMessageBox):
    """What ``slicer.util.messageBox`` shows (outside testing mode). ``exec_`` records the box in the stand-in's
    dialog list, by kind ('error', 'warning', 'info', 'confirmOkCancel', 'confirmYesNo', 'confirmRetryClose'),
    and answers a confirmation with ``slicer._standin.state.confirm_answer``."""

    def __init__(self, parent: Optional[qt.QObject] = None) -> None:
        super().__init__(parent)
        self.text = ""
        self.windowTitle = ""
        self.detailedText = ""
        self.icon = qt.QMessageBox.NoIcon
        self.standardButtons = qt.QMessageBox.Ok
        self.dontShowAgainSettingsKey = ""

    def exec_(self) -> int:
        from slicer import _standin

        buttons = self.standardButtons
        kind = {qt.QMessageBox.Critical: "error", qt.QMessageBox.Warning: "warning", qt.QMessageBox.Information: "info"}.get(self.icon)
        answer = qt.QMessageBox.Ok
        for button, name, yes, no in ((qt.QMessageBox.Cancel, "confirmOkCancel", qt.QMessageBox.Ok, qt.QMessageBox.Cancel),
                                      (qt.QMessageBox.No, "confirmYesNo", qt.QMessageBox.Yes, qt.QMessageBox.No),
                                      (qt.QMessageBox.Retry, "confirmRetryClose", qt.QMessageBox.Retry, qt.QMessageBox.Close)):
            if buttons & button:
                kind = name
                answer = yes if _standin.state.confirm_answer else no
        _standin.state.dialogs.append({"kind": kind or "messageBox", "text": self.text, "windowTitle": self.windowTitle.strip(),
                                       "detailedText": self.detailedText})
        return answer
