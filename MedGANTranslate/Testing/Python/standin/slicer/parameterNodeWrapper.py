"""Stand-in for ``slicer.parameterNodeWrapper`` (slicer-core does not have it; its GUI connectors need Qt): typed properties stored in a vtkMRMLScriptedModuleNode
and two-way binding to widgets that carry the ``SlicerParameterName`` dynamic property.

As in Slicer: type hints are read with ``typing.get_type_hints(include_extras=True)`` (so string
annotations resolve in the module's globals); every missing parameter is written with its default when
the wrapper is made; numbers and strings are stored as text, bool as "True"/"False", nodes as node
references; ``WithinRange`` is enforced on write and sets spin box limits; a node selector's ``nodeTypes``
is overwritten from the annotation; the GUI follows the node on every Modified event; on 5.8, ``connectGui``
returns None, as Slicer 5.8.1 does.
"""
from __future__ import annotations

import typing

import qt
import vtk

import slicer

SlicerParameterNamePropertyName = "SlicerParameterName"
SlicerPackParameterNamePropertyName = "SlicerPackParameterName"

__all__ = ["parameterNodeWrapper", "WithinRange", "Minimum", "Maximum", "Default", "SlicerParameterNamePropertyName",
           "isParameterNodeWrapper"]


class WithinRange:
    def __init__(self, minimum, maximum) -> None:
        self.minimum = minimum
        self.maximum = maximum

    def validate(self, value) -> None:
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"Value {value} must be within [{self.minimum}, {self.maximum}]")


class Minimum(WithinRange):
    def __init__(self, minimum) -> None:
        super().__init__(minimum, float("inf"))


class Maximum(WithinRange):
    def __init__(self, maximum) -> None:
        super().__init__(float("-inf"), maximum)


class Default:
    def __init__(self, value=None, *, generator=None) -> None:
        self.value = value if generator is None else generator()


def _split(annotation):
    if typing.get_origin(annotation) is typing.Annotated:
        base, *extras = typing.get_args(annotation)
        return base, list(extras)
    return annotation, []


def _is_node_type(datatype) -> bool:
    return isinstance(datatype, type) and issubclass(datatype, slicer.vtkMRMLNode)


class _Parameter:
    def __init__(self, name: str, datatype, validators, default) -> None:
        self.name = name
        self.datatype = datatype
        self.validators = validators
        self.default = default

    def write(self, node, value) -> None:
        if self.datatype in (int, float) and value is not None:
            value = self.datatype(value)
        for validator in self.validators:
            validator.validate(value)
        if _is_node_type(self.datatype):
            if value is not None and not isinstance(value, self.datatype):
                raise TypeError(f"{self.name} must be a {self.datatype.__name__}")
            with slicer.util.NodeModify(node):
                node.SetNodeReferenceID(self.name, value.GetID() if value is not None else None)
                node.SetParameter(self.name, "")
        elif self.datatype is bool:
            node.SetParameter(self.name, "True" if value else "False")
        else:
            node.SetParameter(self.name, str(value))

    def read(self, node):
        if _is_node_type(self.datatype):
            return node.GetNodeReference(self.name)
        text = node.GetParameter(self.name)
        if self.datatype is bool:
            return text == "True"
        return self.datatype(text) if self.datatype in (int, float) else text

    def is_in(self, node) -> bool:
        return node.HasParameter(self.name)


class _Connector:
    """Reads, writes and watches one widget for one parameter type."""

    def __init__(self, widget, parameter: _Parameter) -> None:
        self.widget = widget
        self.parameter = parameter
        datatype = parameter.datatype
        if isinstance(widget, slicer.qMRMLNodeComboBox) and _is_node_type(datatype):
            widget.nodeTypes = [datatype.__name__]
            self.signal, self.attr = "currentNodeChanged(vtkMRMLNode*)", None
        elif isinstance(widget, qt.QCheckBox) and datatype is bool:
            self.signal, self.attr = "toggled(bool)", "checked"
        elif isinstance(widget, qt.QDoubleSpinBox) and datatype is float:
            self.signal, self.attr = "valueChanged(double)", "value"
        elif isinstance(widget, qt.QSpinBox) and datatype is int:
            self.signal, self.attr = "valueChanged(int)", "value"
        elif isinstance(widget, qt.QComboBox) and datatype in (str, int, float, bool):
            self.signal, self.attr = "currentTextChanged(QString)", "currentText"
        elif isinstance(widget, qt.QLineEdit) and datatype is str:
            self.signal, self.attr = "textChanged(QString)", "text"
        else:
            raise RuntimeError(f"No GUI connector for {type(widget).__name__} and {datatype}")
        for validator in parameter.validators:
            if isinstance(validator, WithinRange) and self.attr == "value":
                widget.minimum = max(validator.minimum, -1e300)
                widget.maximum = min(validator.maximum, 1e300)

    def read(self):
        if self.attr is None:
            return self.widget.currentNode()
        value = getattr(self.widget, self.attr)
        if isinstance(self.widget, qt.QComboBox):
            return self.parameter.datatype(value)
        return value

    def write(self, value) -> None:
        if self.attr is None:
            self.widget.setCurrentNode(value)
        elif isinstance(self.widget, qt.QComboBox):
            self.widget.currentIndex = self.widget.findText(str(value))
        else:
            setattr(self.widget, self.attr, value)

    def on_changed(self, callback) -> None:
        self.widget.connect(self.signal, callback)

    def disconnect(self, callback) -> None:
        self.widget.disconnect(self.signal, callback)


def _process_class(classtype):
    members = typing.get_type_hints(classtype, include_extras=True)
    parameters = {}
    for name, annotation in members.items():
        datatype, extras = _split(annotation)
        validators = [e for e in extras if isinstance(e, WithinRange)]
        defaults = [e for e in extras if isinstance(e, Default)]
        if hasattr(classtype, name):
            default = getattr(classtype, name)
        elif defaults:
            default = defaults[0].value
        else:
            default = None if _is_node_type(datatype) else {int: 0, float: 0.0, str: "", bool: False}[datatype]
        parameters[name] = _Parameter(name, datatype, validators, default)
        setattr(classtype, name, property(_getter(name), _setter(name)))

    def __init__(self, parameterNode, prefix=None) -> None:
        self.parameterNode = parameterNode
        self._guis = {}
        self._next_tag = 0
        self._updating_gui = False
        for parameter in self.allParameters.values():
            if not parameter.is_in(parameterNode):
                parameter.write(parameterNode, parameter.default)

    classtype.allParameters = parameters
    classtype._is_parameter_node_wrapper = True
    classtype.__init__ = __init__
    classtype.default = lambda self, name: self.allParameters[name].default
    classtype.dataType = staticmethod(lambda name: parameters[name].datatype)
    classtype.getValue = lambda self, name: self.allParameters[name].read(self.parameterNode)
    classtype.setValue = lambda self, name, value: self.allParameters[name].write(self.parameterNode, value)
    classtype.connectGui = _connect_gui
    classtype.connectParametersToGui = _connect_parameters_to_gui
    classtype.disconnectGui = _disconnect_gui
    classtype.StartModify = lambda self: self.parameterNode.StartModify()
    classtype.EndModify = lambda self, wasModified: self.parameterNode.EndModify(wasModified)
    classtype.AddObserver = lambda self, event, callback, priority=0.0: self.parameterNode.AddObserver(event, callback, priority)
    classtype.RemoveObserver = lambda self, tag: self.parameterNode.RemoveObserver(tag)
    classtype.Modified = lambda self: self.parameterNode.Modified()
    return classtype


def _getter(name):
    return lambda self: self.allParameters[name].read(self.parameterNode)


def _setter(name):
    return lambda self, value: self.allParameters[name].write(self.parameterNode, value)


def _connect_gui(self, gui):
    if getattr(gui, "isWidgetType", lambda: False)():
        widgets = gui.findChildren(qt.QWidget)
    else:
        widgets = list(gui.__dict__.values())
    mapping = {w.property(SlicerParameterNamePropertyName): w for w in widgets if w.property(SlicerParameterNamePropertyName)}
    tag = _connect_parameters_to_gui(self, mapping)
    # Slicer 5.8's wrapper.py calls _connectParametersToGui without returning its tag (fixed in 5.10.0)
    return None if slicer._standin.state.version == "5.8" else tag


def _connect_parameters_to_gui(self, mapping):
    for name in mapping:
        if name not in self.allParameters:
            raise ValueError(f"Cannot find a param with the given name: {name}")
    connectors = {name: _Connector(widget, self.allParameters[name]) for name, widget in mapping.items()}
    callbacks = {}
    for name, connector in connectors.items():
        connector.write(self.getValue(name))
        callbacks[name] = _gui_to_parameter(self, name, connector)
        connector.on_changed(callbacks[name])
    tag = self._next_tag
    self._next_tag += 1
    observer = self.parameterNode.AddObserver(vtk.vtkCommand.ModifiedEvent, lambda caller, event: _update_gui(self))
    self._guis[tag] = (connectors, callbacks, observer)
    return tag


def _gui_to_parameter(self, name, connector):
    def callback():
        if not self._updating_gui:
            with slicer.util.NodeModify(self.parameterNode):
                self.setValue(name, connector.read())

    return callback


def _update_gui(self) -> None:
    if self._updating_gui:
        return
    self._updating_gui = True
    try:
        for connectors, _, _ in self._guis.values():
            for name, connector in connectors.items():
                connector.write(self.getValue(name))
    finally:
        self._updating_gui = False


def _disconnect_gui(self, guiTag) -> None:
    if guiTag in self._guis:
        connectors, callbacks, observer = self._guis.pop(guiTag)
        for name, connector in connectors.items():
            connector.disconnect(callbacks[name])
        self.parameterNode.RemoveObserver(observer)


def isParameterNodeWrapper(classOrObj) -> bool:
    return getattr(classOrObj, "_is_parameter_node_wrapper", False)


def parameterNodeWrapper(classtype=None):
    if classtype is None:
        return _process_class
    return _process_class(classtype)
