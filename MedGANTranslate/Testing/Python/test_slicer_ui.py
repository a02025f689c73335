"""The panel's .ui file is valid Qt Designer XML, and the widgets the Python code uses exist in it with the
classes the code expects; widgets bound to the parameter node fit their parameter's type."""
from __future__ import annotations

import ast
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

MODULE_DIR = Path(__file__).resolve().parents[2]
UI_FILE = MODULE_DIR / "Resources" / "UI" / "MedGANTranslate.ui"
MODULE_FILE = MODULE_DIR / "MedGANTranslate.py"
PANEL_SOURCES = [MODULE_FILE] + sorted((MODULE_DIR / "MedGANTranslateSlicer").glob("*.py"))  # wiring, handlers, views
PARAMETERS_FILE = MODULE_DIR / "MedGANTranslateSlicer" / "parameters.py"
API = json.loads((Path(__file__).with_name("slicer_api.json")).read_text(encoding="utf-8"))

QT_WIDGETS = {"QWidget", "QLabel", "QPushButton", "QCheckBox", "QComboBox", "QSpinBox", "QDoubleSpinBox", "QProgressBar",
              "QPlainTextEdit", "QLineEdit", "QGroupBox", "QFrame", "QTableView", "QToolButton"}
QT_LAYOUTS = {"QVBoxLayout", "QHBoxLayout", "QFormLayout", "QGridLayout"}
PROPERTY_TYPES = {"string", "bool", "number", "double", "enum", "set", "stringlist", "rect", "size", "cstring"}

# What the Python code does with each widget decides its class; a widget used in code must be listed here.
EXPECTED_CLASSES = {
    "MedGANTranslate": "qMRMLWidget",
    "inputsCollapsibleButton": "ctkCollapsibleButton",
    "advancedCollapsibleButton": "ctkCollapsibleButton",
    "modelSelector": "QComboBox",
    "modelInfoLabel": "QLabel",
    "inputSelector": "qMRMLNodeComboBox",
    "input2Selector": "qMRMLNodeComboBox",
    "input3Selector": "qMRMLNodeComboBox",
    "input4Selector": "qMRMLNodeComboBox",
    "inputLabel": "QLabel",
    "input2Label": "QLabel",
    "input3Label": "QLabel",
    "input4Label": "QLabel",
    "deviceSelector": "QComboBox",
    "detectDevicesButton": "QPushButton",
    "modelsFolderLineEdit": "ctkPathLineEdit",
    "differenceCheckBox": "QCheckBox",
    "mirrorCheckBox": "QCheckBox",
    "n4CheckBox": "QCheckBox",
    "uncertaintyCheckBox": "QCheckBox",
    "strictCheckBox": "QCheckBox",
    "metricsTableView": "qMRMLTableView",
    "sideBySideCheckBox": "QCheckBox",
    "opacitySliderWidget": "ctkSliderWidget",
    "uncertaintyThresholdSliderWidget": "ctkSliderWidget",
    "showResultButton": "QPushButton",
    "saveReportButton": "QPushButton",
    "applyButton": "QPushButton",
    "progressBar": "QProgressBar",
    "statusLabel": "QLabel",
    "warningsLabel": "QLabel",
    "showLogButton": "QPushButton",
    "logTextEdit": "QPlainTextEdit",
    "installUrlLineEdit": "QLineEdit",
    "installSha256LineEdit": "QLineEdit",
    "installModelButton": "QPushButton",
    "importCheckpointLineEdit": "ctkPathLineEdit",
    "importFrameworkComboBox": "QComboBox",
    "importIdLineEdit": "QLineEdit",
    "importInputsLineEdit": "QLineEdit",
    "importOutputLineEdit": "QLineEdit",
    "importSpacingLineEdit": "QLineEdit",
    "importNormalizationLineEdit": "QLineEdit",
    "importMoreLineEdit": "QLineEdit",
    "addModelButton": "QPushButton",
}

# Widget classes Slicer's parameterNodeWrapper connects to each parameter type (slicer_api.json, 5.8.1).
CONNECTORS = {
    "bool": {"QCheckBox", "ctkCheckBox", "QPushButton"},
    "int": {"QSlider", "QSpinBox", "QComboBox", "ctkComboBox"},
    "float": {"QDoubleSpinBox", "ctkSliderWidget", "qMRMLSliderWidget", "ctkDoubleSlider", "ctkDoubleSpinBox", "qMRMLSpinBox",
              "QComboBox", "ctkComboBox"},
    "str": {"QLineEdit", "QLabel", "QTextEdit", "QComboBox", "ctkComboBox"},
    "node": {"qMRMLNodeComboBox"},
}


@pytest.fixture(scope="module")
def ui():
    return ET.parse(UI_FILE).getroot()


def _widgets(root):
    return list(root.iter("widget"))


def _custom_widgets(root):
    return {cw.findtext("class"): cw for cw in root.iter("customwidget")}


def test_ui_is_valid_qt_designer_xml(ui):
    assert ui.tag == "ui" and ui.get("version") == "4.0"
    top = ui.find("widget")
    assert ui.findtext("class") == top.get("name") == "MedGANTranslate"
    assert top.get("class") == "qMRMLWidget"
    names = [w.get("name") for w in _widgets(ui)]
    assert all(names) and len(names) == len(set(names)), "every widget needs a unique name"
    custom = _custom_widgets(ui)
    for cls, declaration in custom.items():
        assert declaration.findtext("header") == f"{cls}.h" and declaration.findtext("extends"), cls
    used = {w.get("class") for w in _widgets(ui)}
    assert used <= QT_WIDGETS | set(custom), f"undeclared widget classes: {used - QT_WIDGETS - set(custom)}"
    assert set(custom) <= used, "declared custom widgets that are not used"
    for layout in ui.iter("layout"):
        assert layout.get("class") in QT_LAYOUTS and layout.get("name")
        for item in layout.findall("item"):
            assert len(item) == 1 and item[0].tag in ("widget", "layout", "spacer")
            if layout.get("class") in ("QFormLayout", "QGridLayout"):
                assert item.get("row") is not None and item.get("column") is not None
    for prop in ui.iter("property"):
        assert prop.get("name") and len(prop) == 1 and prop[0].tag in PROPERTY_TYPES, ET.tostring(prop)
    widget_names = set(names)
    for connection in ui.iter("connection"):
        assert connection.findtext("sender") in widget_names and connection.findtext("receiver") in widget_names
        assert connection.findtext("signal").endswith(")") and connection.findtext("slot").endswith(")")


def test_every_node_selector_gets_the_scene(ui):
    """The .ui connections pass the module's scene to each MRML widget (uiWidget.setMRMLScene in setup)."""
    mrml = {w.get("name") for w in _widgets(ui) if w.get("class") in ("qMRMLNodeComboBox", "qMRMLTableView")}
    receivers = {c.findtext("receiver") for c in ui.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)" and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    assert mrml == receivers


def _ui_names_used_in_code():
    """``self.ui.<name>`` and ``ui.<name>`` in the module file and the panel's modules."""
    used = set()
    for source in PANEL_SOURCES:
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Attribute):
                continue
            if isinstance(node.value, ast.Attribute) and node.value.attr == "ui":
                if isinstance(node.value.value, ast.Name) and node.value.value.id == "self":
                    used.add(node.attr)
            elif isinstance(node.value, ast.Name) and node.value.id == "ui":
                used.add(node.attr)
    return used


def test_widgets_used_in_code_exist_with_expected_classes(ui):
    classes = {w.get("name"): w.get("class") for w in _widgets(ui)}
    used = _ui_names_used_in_code()
    assert len(used) > 20
    assert used <= set(EXPECTED_CLASSES), f"add the expected class of {used - set(EXPECTED_CLASSES)} to EXPECTED_CLASSES"
    missing = used - set(classes)
    assert not missing, f"used in code but absent from the .ui: {missing}"
    wrong = {name: (classes[name], EXPECTED_CLASSES[name]) for name in used if classes[name] != EXPECTED_CLASSES[name]}
    assert not wrong, f"(class in .ui, class the code expects): {wrong}"


def _parameter_members():
    tree = ast.parse(PARAMETERS_FILE.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(getattr(d, "id", None) == "parameterNodeWrapper" for d in node.decorator_list):
            members = {}
            for item in node.body:
                if isinstance(item, ast.AnnAssign):
                    annotation = item.annotation
                    if isinstance(annotation, ast.Subscript):  # Annotated[T, ...]
                        annotation = annotation.slice.elts[0] if isinstance(annotation.slice, ast.Tuple) else annotation.slice
                    kind = annotation.id
                    members[item.target.id] = "node" if kind.startswith("vtkMRML") else kind
            return members
    raise AssertionError("no @parameterNodeWrapper class")


def test_bound_widgets_fit_their_parameters(ui):
    members = _parameter_members()
    bound = {}
    for widget in _widgets(ui):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                assert prop.get("stdset") == "0", "SlicerParameterName must be a dynamic property"
                bound[prop.findtext("string")] = widget.get("class")
    assert set(bound) <= set(members), f"bound to unknown parameters: {set(bound) - set(members)}"
    for name, cls in bound.items():
        assert cls in CONNECTORS[members[name]], f"{name}: {cls} cannot hold a {members[name]}"
    assert {"inputVolume", "referenceVolume", "roiX", "overlap", "testTimeMirror", "createDifference", "showSideBySide", "overlayOpacity"} <= set(bound)


def test_connector_table_matches_slicer(ui):
    """The CONNECTORS table above is Slicer's own (from slicer_api.json), not a guess."""
    listed = API["slicer.parameterNodeWrapper._gui_connectors"]["value"]
    flat = {kind: {w.split(" ")[0].split(".")[-1].split("/")[0] for w in widgets} for kind, widgets in listed.items()}
    assert CONNECTORS["bool"] <= flat["bool"] | {"QPushButton"}
    assert CONNECTORS["float"] - {"QComboBox", "ctkComboBox"} <= flat["float"]
    assert CONNECTORS["str"] - {"QComboBox", "ctkComboBox"} <= flat["str"]
    assert "qMRMLNodeComboBox" in {w.split(" ")[0].split(".")[-1] for w in listed["vtkMRMLNode (or Union of node types)"]}


def _properties(ui, name):
    widget = next(w for w in _widgets(ui) if w.get("name") == name)
    return {p.get("name"): p for p in widget.findall("property")}


def test_the_uncertainty_map_has_a_box_a_selector_and_a_threshold_slider(ui):
    box = _properties(ui, "uncertaintyCheckBox")
    assert "enabled" not in box, "the panel enables it for every model that can vary"
    assert box["SlicerParameterName"].findtext("string") == "estimateUncertainty"
    assert "uncertainty" in box["toolTip"].findtext("string").lower()
    assert _properties(ui, "uncertaintySelector")["SlicerParameterName"].findtext("string") == "uncertaintyVolume"
    slider = _properties(ui, "uncertaintyThresholdSliderWidget")
    assert "SlicerParameterName" not in slider, "the display node holds the threshold, not the parameter node"
    assert "threshold" in slider["toolTip"].findtext("string").lower()
