"""Builds stand-in widgets from a Qt Designer .ui file, as ``slicer.util.loadUI`` does with Qt's loader:
each <widget> becomes an instance of its class (from qt, ctk or slicer), properties are applied in file
order, dynamic properties (stdset="0") go through ``setProperty``, and <connections> are wired."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Dict, Optional

import ctk
import qt

import slicer


def widget_class(name: str):
    for module in (qt, ctk, slicer):
        cls = getattr(module, name, None)
        if isinstance(cls, type) and issubclass(cls, qt.QWidget):
            return cls
    raise RuntimeError(f"loadUI: no widget class named {name}")


def _value(element: ET.Element):
    kind = element.tag
    text = element.text or ""
    if kind in ("string", "cstring"):
        return text
    if kind == "bool":
        return text == "true"
    if kind == "number":
        return int(text)
    if kind == "double":
        return float(text)
    if kind == "enum":
        return text.split("::")[-1]
    if kind == "set":
        return _set_value(text)
    if kind == "stringlist":
        return [s.text or "" for s in element.findall("string")]
    if kind in ("size", "rect"):
        return {child.tag: int(child.text) for child in element}
    raise RuntimeError(f"loadUI: unsupported property type <{kind}>")


def _set_value(text: str) -> int:
    value = 0
    for flag in text.split("|"):
        owner, _, name = flag.strip().rpartition("::")
        value |= getattr(getattr(ctk, owner, None) or getattr(qt, owner or "Qt", qt.Qt), name)
    return value


def _apply_property(widget: qt.QWidget, element: ET.Element) -> None:
    name = element.get("name")
    value = _value(element[0])
    if element.get("stdset") == "0":
        widget.setProperty(name, value)
    elif name == "enabled":
        widget.enabled = value
    else:
        setattr(widget, name, value)


def _build(element: ET.Element, parent: Optional[qt.QWidget], named: Dict[str, qt.QWidget]) -> None:
    if element.tag == "widget":
        widget = widget_class(element.get("class"))()
        widget.setParent(parent)
        widget.objectName = element.get("name", "")
        if widget.objectName:
            named[widget.objectName] = widget
        for child in element:
            if child.tag == "property":
                _apply_property(widget, child)
            else:
                _build(child, widget, named)
        return
    for child in element:
        _build(child, parent, named)


def load(path: str) -> qt.QWidget:
    root = ET.parse(path).getroot()
    top = root.find("widget")
    if root.tag != "ui" or top is None:
        raise RuntimeError(f"loadUI: {path} is not a Qt Designer file")
    named: Dict[str, qt.QWidget] = {}
    _build(top, None, named)
    for connection in root.iterfind("connections/connection"):
        sender = named[connection.findtext("sender")]
        receiver = named[connection.findtext("receiver")]
        slot = getattr(receiver, connection.findtext("slot").split("(")[0])
        sender.connect(connection.findtext("signal"), slot)
    return named[top.get("name")]
