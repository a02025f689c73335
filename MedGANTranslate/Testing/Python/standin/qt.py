"""Stand-in for PythonQt's ``qt`` module: the widgets, signals, timer and settings the module uses.

It behaves like PythonQt where the module depends on it: Qt properties read and written as attributes
(``button.text = ...``), signals connected by signature (``w.connect("clicked(bool)", slot)``) or by name
(``w.clicked.connect(slot)``), slots called with as many arguments as they accept, an exception in a slot
printed and swallowed, ``blockSignals``, and a QTimer that fires only when the application processes events
(``slicer.app.processEvents()``), never from another thread.
"""
from __future__ import annotations

import builtins
import inspect
import sys
import time
import traceback
from typing import Any, Callable, Dict, List, Optional

slot_errors: List[str] = []


class Signal:
    def __init__(self, owner: "QObject", signature: str) -> None:
        self.owner = owner
        self.signature = signature
        self.slots: List[Callable] = []

    def connect(self, slot: Callable) -> None:
        self.slots.append(slot)

    def disconnect(self, slot: Optional[Callable] = None) -> None:
        self.slots = [] if slot is None else [s for s in self.slots if s != slot]

    def emit(self, *args) -> None:
        if self.owner.signalsBlocked():
            return
        for slot in list(self.slots):
            _call_slot(slot, args)


def _accepted_arguments(slot: Callable, args: tuple) -> tuple:
    try:
        params = inspect.signature(slot).parameters.values()
    except (TypeError, ValueError):
        return args
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return args
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return args[:len(positional)]


def _call_slot(slot: Callable, args: tuple) -> None:
    """PythonQt drops surplus signal arguments and reports (does not raise) exceptions from slots."""
    try:
        slot(*_accepted_arguments(slot, args))
    except Exception:
        message = traceback.format_exc()
        slot_errors.append(message)
        print(message, file=sys.stderr)


class QObject:
    SIGNALS: tuple = ()

    def __init__(self, parent: Optional["QObject"] = None) -> None:
        self._signals: Dict[str, Signal] = {}
        self._properties: Dict[str, Any] = {}
        self._blocked = False
        self._children: List["QObject"] = []
        self._parent = None
        self.objectName = ""
        if parent is not None:
            self.setParent(parent)

    def _all_signatures(self) -> List[str]:
        signatures = []
        for cls in type(self).__mro__:
            signatures += list(getattr(cls, "SIGNALS", ()))
        return signatures

    def _signal(self, signature: str) -> Signal:
        if signature not in self._all_signatures():
            raise AttributeError(f"{type(self).__name__} has no signal {signature}")
        if signature not in self._signals:
            self._signals[signature] = Signal(self, signature)
        return self._signals[signature]

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        for signature in self._all_signatures():
            if signature.split("(")[0] == name:
                return self._signal(signature)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def emit_signal(self, signature: str, *args) -> None:
        self._signal(signature).emit(*args)

    def connect(self, signature: str, slot: Callable) -> bool:
        self._signal(signature).connect(slot)
        return True

    def disconnect(self, signature: str, slot: Optional[Callable] = None) -> bool:
        self._signal(signature).disconnect(slot)
        return True

    def blockSignals(self, block: bool) -> bool:
        previous, self._blocked = self._blocked, bool(block)
        return previous

    def signalsBlocked(self) -> bool:
        return self._blocked

    def setParent(self, parent: Optional["QObject"]) -> None:
        if self._parent is not None:
            self._parent._children.remove(self)
        self._parent = parent
        if parent is not None:
            parent._children.append(self)

    def parent(self):
        return self._parent

    def children(self) -> List["QObject"]:
        return list(self._children)

    def findChildren(self, kind=None) -> List["QObject"]:
        found = []
        for child in self._children:
            if kind is None or (isinstance(kind, type) and isinstance(child, kind)) or child.objectName == kind:
                found.append(child)
            found += child.findChildren(kind)
        return found

    def property(self, name: str):
        return self._properties.get(name)

    def setProperty(self, name: str, value) -> bool:
        self._properties[name] = value
        return True

    def isWidgetType(self) -> bool:
        return False

    def className(self) -> str:
        return type(self).__name__

    # PythonQt shows ``objectName`` as ``name`` too (``slicer.util.childWidgetVariables`` reads it)
    name = builtins.property(lambda self: self.objectName, lambda self, value: setattr(self, "objectName", value))


class QWidget(QObject):
    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.enabled = True
        self._visible = True
        self.toolTip = ""
        self._layout = None
        self.minimumSize = None

    def isWidgetType(self) -> bool:
        return True

    @property
    def visible(self) -> bool:
        return self._visible

    @visible.setter
    def visible(self, value: bool) -> None:
        self._visible = bool(value)

    def setVisible(self, value: bool) -> None:
        self.visible = value

    def isVisible(self) -> bool:
        return self._visible

    def show(self) -> None:
        self.visible = True

    def hide(self) -> None:
        self.visible = False

    def setEnabled(self, value: bool) -> None:
        self.enabled = bool(value)

    def isEnabled(self) -> bool:
        return self.enabled

    def setToolTip(self, text: str) -> None:
        self.toolTip = text

    def setLayout(self, layout: "QLayout") -> None:
        self._layout = layout
        layout._owner = self

    def layout(self) -> Optional["QLayout"]:
        return self._layout


class QLayout(QObject):
    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__()
        self._owner = None
        if parent is not None:
            parent.setLayout(self)

    def addWidget(self, widget: QWidget, *args) -> None:
        if self._owner is not None:
            widget.setParent(self._owner)


class QVBoxLayout(QLayout):
    pass


class QHBoxLayout(QLayout):
    pass


class QFormLayout(QLayout):
    def addRow(self, *widgets) -> None:
        for widget in widgets:
            if isinstance(widget, QWidget):
                self.addWidget(widget)


class QGridLayout(QLayout):
    pass


class QLabel(QWidget):
    def __init__(self, text: str = "", parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.text = text
        self.wordWrap = False
        self.textFormat = 0

    def setText(self, text: str) -> None:
        self.text = text


class QAbstractButton(QWidget):
    SIGNALS = ("clicked()", "clicked(bool)", "toggled(bool)", "pressed()", "released()")

    def __init__(self, text: str = "", parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.text = text
        self.checkable = False
        self._checked = False

    @property
    def checked(self) -> bool:
        return self._checked

    @checked.setter
    def checked(self, value: bool) -> None:
        value = bool(value)
        if value != self._checked:
            self._checked = value
            self.emit_signal("toggled(bool)", value)

    def setChecked(self, value: bool) -> None:
        self.checked = value

    def isChecked(self) -> bool:
        return self._checked

    def setText(self, text: str) -> None:
        self.text = text

    def click(self) -> None:
        """What a user click does: nothing when disabled, toggles when checkable, then ``clicked``."""
        if not self.enabled:
            return
        if self.checkable:
            self.checked = not self._checked
        self.emit_signal("clicked()")
        self.emit_signal("clicked(bool)", self._checked)


class QPushButton(QAbstractButton):
    pass


class QCheckBox(QAbstractButton):
    SIGNALS = ("stateChanged(int)",)

    def __init__(self, text: str = "", parent: Optional[QObject] = None) -> None:
        super().__init__(text, parent)
        self.checkable = True

    @QAbstractButton.checked.setter
    def checked(self, value: bool) -> None:
        value = bool(value)
        if value != self._checked:
            self._checked = value
            self.emit_signal("stateChanged(int)", 2 if value else 0)
            self.emit_signal("toggled(bool)", value)


class QComboBox(QWidget):
    SIGNALS = ("currentIndexChanged(int)", "currentTextChanged(QString)", "activated(int)")

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self._items: List[list] = []
        self._index = -1

    @property
    def count(self) -> int:
        return len(self._items)

    @property
    def currentIndex(self) -> int:
        return self._index

    @currentIndex.setter
    def currentIndex(self, index: int) -> None:
        index = index if 0 <= index < len(self._items) else -1
        if index != self._index:
            self._index = index
            self.emit_signal("currentIndexChanged(int)", index)
            self.emit_signal("currentTextChanged(QString)", self.currentText)

    def setCurrentIndex(self, index: int) -> None:
        self.currentIndex = index

    @property
    def currentText(self) -> str:
        return self._items[self._index][0] if self._index >= 0 else ""

    def currentData(self):
        return self._items[self._index][1] if self._index >= 0 else None

    def addItem(self, text: str, userData=None) -> None:
        self._items.append([text, userData])
        if self._index < 0:
            self.currentIndex = 0

    def clear(self) -> None:
        self._items = []
        self.currentIndex = -1

    def itemText(self, index: int) -> str:
        return self._items[index][0] if 0 <= index < len(self._items) else ""

    def itemData(self, index: int):
        return self._items[index][1] if 0 <= index < len(self._items) else None

    def findData(self, data) -> int:
        return next((i for i, item in enumerate(self._items) if item[1] == data), -1)

    def findText(self, text: str) -> int:
        return next((i for i, item in enumerate(self._items) if item[0] == text), -1)


class _NumberBox(QWidget):
    """Shared behaviour of spin boxes and sliders: clamped value, ``valueChanged`` on change only."""

    VALUE_SIGNAL = ""

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.minimum = 0
        self.maximum = 99
        self.singleStep = 1
        self.specialValueText = ""
        self._value = 0

    def _convert(self, value):
        return value

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, value) -> None:
        value = self._convert(min(max(value, self.minimum), self.maximum))
        if value != self._value:
            self._value = value
            self.emit_signal(self.VALUE_SIGNAL, value)

    def setValue(self, value) -> None:
        self.value = value

    def setMinimum(self, value) -> None:
        self.minimum = value
        self.value = self._value

    def setMaximum(self, value) -> None:
        self.maximum = value
        self.value = self._value


class QSpinBox(_NumberBox):
    SIGNALS = ("valueChanged(int)",)
    VALUE_SIGNAL = "valueChanged(int)"

    def _convert(self, value):
        return int(round(value))


class QDoubleSpinBox(_NumberBox):
    SIGNALS = ("valueChanged(double)",)
    VALUE_SIGNAL = "valueChanged(double)"

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.decimals = 2
        self.singleStep = 1.0
        self._value = 0.0

    def _convert(self, value):
        return round(float(value), self.decimals)


class QProgressBar(QWidget):
    SIGNALS = ("valueChanged(int)",)

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.minimum = 0
        self.maximum = 100
        self.value = 0
        self.format = "%p%"
        self.textVisible = True

    def text(self) -> str:
        span = self.maximum - self.minimum
        percent = int(100 * (self.value - self.minimum) / span) if span else 0
        return self.format.replace("%p", str(percent)).replace("%v", str(self.value)).replace("%m", str(self.maximum))


class QPlainTextEdit(QWidget):
    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.plainText = ""
        self.readOnly = False

    def appendPlainText(self, text: str) -> None:
        self.plainText = text if not self.plainText else self.plainText + "\n" + text

    def clear(self) -> None:
        self.plainText = ""

    def toPlainText(self) -> str:
        return self.plainText


class QLineEdit(QWidget):
    SIGNALS = ("textChanged(QString)",)

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self._text = ""

    @property
    def text(self) -> str:
        return self._text

    @text.setter
    def text(self, value: str) -> None:
        if value != self._text:
            self._text = value
            self.emit_signal("textChanged(QString)", value)


class QAbstractItemView(QWidget):
    pass


class QTableView(QAbstractItemView):
    pass


class QTimer(QObject):
    """Fires from ``slicer.app.processEvents()`` (the stand-in's event loop), like a Qt timer on the GUI thread."""

    SIGNALS = ("timeout()",)
    _active: List["QTimer"] = []

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.interval = 0
        self._single_shot = False
        self._due = 0.0

    def setInterval(self, msec: int) -> None:
        self.interval = int(msec)

    def setSingleShot(self, value: bool) -> None:
        self._single_shot = bool(value)

    def isSingleShot(self) -> bool:
        return self._single_shot

    def start(self, msec: Optional[int] = None) -> None:
        if msec is not None:
            self.interval = int(msec)
        self._due = time.monotonic() + self.interval / 1000.0
        if self not in QTimer._active:
            QTimer._active.append(self)

    def stop(self) -> None:
        if self in QTimer._active:
            QTimer._active.remove(self)

    def isActive(self) -> bool:
        return self in QTimer._active

    @staticmethod
    def singleShot(msec: int, callback: Callable) -> None:
        timer = QTimer()
        timer.setSingleShot(True)
        timer.connect("timeout()", callback)
        timer.start(msec)


def process_timers() -> None:
    now = time.monotonic()
    for timer in list(QTimer._active):
        if timer in QTimer._active and timer._due <= now:
            if timer._single_shot:
                timer.stop()
            else:
                timer._due = now + timer.interval / 1000.0
            timer.emit_signal("timeout()")


class QSettings(QObject):
    _store: Dict[str, Any] = {}

    def value(self, key: str, defaultValue=None):
        return QSettings._store.get(key, defaultValue)

    def setValue(self, key: str, value) -> None:
        QSettings._store[key] = value

    def contains(self, key: str) -> bool:
        return key in QSettings._store

    def remove(self, key: str) -> None:
        QSettings._store.pop(key, None)

    def allKeys(self) -> List[str]:
        return sorted(QSettings._store)

    def sync(self) -> None:
        pass


class QMainWindow(QWidget):
    """The main window ``slicer.util.mainWindow()`` finds among ``slicer.app.topLevelWidgets()``."""

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self._status_bar = QStatusBar(self)

    def statusBar(self) -> "QStatusBar":
        return self._status_bar


class QStatusBar(QWidget):
    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.messages: List[str] = []

    def showMessage(self, message: str, timeout: int = 0) -> None:
        self.messages.append(message)


class QDialog(QWidget):
    def exec_(self) -> int:
        return 1

    def close(self) -> bool:
        return True

    def deleteLater(self) -> None:
        pass


class QMessageBox(QDialog):
    NoButton = 0
    Ok = 0x00000400
    Cancel = 0x00400000
    Yes = 0x00004000
    No = 0x00010000
    Retry = 0x00080000
    Close = 0x00200000
    NoIcon, Information, Warning, Critical, Question = 0, 1, 2, 3, 4


class QFileDialog(QDialog):
    """Only the static ``getSaveFileName``, as PythonQt returns it: the chosen path as a string, '' when the user
    cancels. The stand-in records the call in its dialog list (kind 'saveFile') and answers with
    ``slicer._standin.state.save_file_answer``."""

    @staticmethod
    def getSaveFileName(parent=None, caption: str = "", dir: str = "", filter: str = "", selectedFilter=None,
                        options=0) -> str:
        from slicer import _standin

        _standin.state.dialogs.append({"kind": "saveFile", "text": "", "windowTitle": caption, "detailedText": "",
                                       "dir": dir, "filter": filter})
        return _standin.state.save_file_answer


class QCursor:
    def __init__(self, shape: int = 0) -> None:
        self._shape = shape

    def shape(self) -> int:
        return self._shape


class QApplication(QObject):
    """Only the override cursor stack (``slicer.util.WaitCursor``, ``tryWithErrorDisplay``, message boxes)."""

    _cursors: List[QCursor] = []

    @staticmethod
    def setOverrideCursor(cursor) -> None:
        QApplication._cursors.append(cursor if isinstance(cursor, QCursor) else QCursor(cursor))

    @staticmethod
    def restoreOverrideCursor() -> None:
        if QApplication._cursors:
            QApplication._cursors.pop()

    @staticmethod
    def overrideCursor() -> Optional[QCursor]:
        return QApplication._cursors[-1] if QApplication._cursors else None


class QFile:
    ReadOnly = 1

    def __init__(self, path: str) -> None:
        self.path = str(path)

    def exists(self) -> bool:
        import os

        return os.path.isfile(self.path)

    def open(self, mode: int) -> bool:
        return self.exists()


class QUiLoader:
    """Qt's loader as ``slicer.util.loadUI`` uses it; the stand-in's own builder does the work."""

    def load(self, qfile: QFile, parent: Optional[QWidget] = None) -> QWidget:
        from slicer import _uiloader

        return _uiloader.load(qfile.path)


class Qt:
    UserRole = 0x0100
    WaitCursor = 3
    ArrowCursor = 0
    RichText = 1
    PlainText = 0
    Horizontal = 1
    Vertical = 2


def reset() -> None:
    """Fresh state for the next test."""
    QTimer._active.clear()
    QSettings._store.clear()
    QApplication._cursors.clear()
    slot_errors.clear()
