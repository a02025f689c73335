"""Renders the README's panel picture (``Resources/Screenshots/MedGANTranslate-panel.png``) from a real run.

Rerun (about half a minute on 2 CPU cores)::

    .venv/bin/pip install PySide6          # dev tool only; not a test or runtime dependency
    .venv/bin/python MedGANTranslate/Testing/Python/render_panel.py \
        [--scan /work/shared/real-data/t1/siemens_xa30_t1w_2mm.nii.gz] [--model mr-t1-to-ct-pix2pix] \
        [--out MedGANTranslate/Resources/Screenshots/MedGANTranslate-panel.png] [--state-json state.json]

What is real. Step 1 drives the module's own widget (``MedGANTranslate.py``: ``setup()``, ``enter()``, the
model selector, **Translate**) the way the tests in this folder do: Slicer's real MRML, logics and
``slicer.util`` from slicer-core, the scan read by Slicer's real volume reader (``slicer.util.loadVolume``),
the device list from the engine's own ``devices --json`` (the panel's background query), and a real
translation by the engine (``MedGANTranslateLib.cli run``) in a background process, with the bundled model.
After every progress event (and at the end) it records what each named widget of the panel holds: texts,
rich texts, combo box items, check states, enabled/visible flags, the progress bar's value and format, the
selected node names. Every string comes from the module's own code paths (``models.model_details_html``,
``ProgressTracker.label``, ``_showFinished``, ...); none is typed here.

What is substituted. 3D Slicer itself cannot run here, so the widgets in step 1 are the test stand-in's
plain-Python widgets (``standin/``), which hold state but draw nothing. Step 2 draws that state with real Qt
(PySide6, ``QT_QPA_PLATFORM=offscreen``, Fusion style): it loads the module's real ``MedGANTranslate.ui`` with
``QUiLoader``, the Slicer/CTK classes Qt does not have replaced by the nearest plain Qt widget (``SUBSTITUTES``:
ctkCollapsibleButton -> QGroupBox, titled with an arrow, its contents hidden when collapsed;
qMRMLNodeComboBox -> QComboBox holding the selected node's name, or the "none" text; ctkPathLineEdit ->
QLineEdit; ctkSliderWidget -> QSlider + QDoubleSpinBox; qMRMLTableView -> QTableView; qMRMLWidget ->
QWidget) and the .ui's <connections> (MRML scene signals) left out. It fills the widgets with the recorded
state and saves ``grab()`` of two panels side by side: mid-inference (the progress event nearest half-way
through the windows) and after the run. Slicer's module header, the slice views and the application's
palette and fonts are not drawn; sizes and spacing are Qt's Fusion defaults, not Slicer's.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
UI_FILE = REPO / "MedGANTranslate" / "Resources" / "UI" / "MedGANTranslate.ui"
DEFAULT_OUT = REPO / "MedGANTranslate" / "Resources" / "Screenshots" / "MedGANTranslate-panel.png"
DEFAULT_SCAN = Path("/work/shared/real-data/t1/siemens_xa30_t1w_2mm.nii.gz")
PANEL_WIDTH = 540
TIMEOUT_S = 900


# --- step 1: the module's widget, driven by a real translation (stand-in Qt over real slicer-core) -------------


def _snapshot(ui) -> dict:
    """What each named widget of the panel holds now (stand-in widgets, read through their Qt-like API)."""
    import ctk
    import qt

    import slicer

    state = {}
    for name, w in sorted(vars(ui).items()):
        if not isinstance(w, qt.QWidget):
            continue
        s = {"class": type(w).__name__, "visible": bool(w.visible), "enabled": bool(w.enabled)}
        if isinstance(w, slicer.qMRMLNodeComboBox):
            node = w.currentNode()
            s["text"] = node.GetName() if node is not None else (w.noneDisplay if w.noneEnabled else "")
        elif isinstance(w, qt.QComboBox):
            s["items"] = [w.itemText(i) for i in range(w.count)]
            s["currentIndex"] = w.currentIndex
        elif isinstance(w, ctk.ctkCollapsibleButton):
            s["text"] = w.text
            s["collapsed"] = w.collapsed
        elif isinstance(w, qt.QAbstractButton):
            s["text"] = w.text
            s["checked"] = bool(w.checked)
        elif isinstance(w, qt.QLabel):
            s["text"] = w.text
        elif isinstance(w, qt.QProgressBar):
            s.update(value=w.value, minimum=w.minimum, maximum=w.maximum, format=w.format)
        elif isinstance(w, qt.QPlainTextEdit):
            s["text"] = w.plainText
        elif isinstance(w, qt.QLineEdit):
            s["text"] = w.text
        elif isinstance(w, ctk.ctkPathLineEdit):
            s["text"] = w.currentPath
        elif isinstance(w, slicer.qMRMLTableView):
            table = w.mrmlTableNode()
            s["rows"] = [] if table is None else [
                [table.GetCellText(r, c) for c in range(table.GetNumberOfColumns())] for r in range(table.GetNumberOfRows())]
        elif hasattr(w, "value"):
            s["value"] = w.value
        state[name] = s
    return state


def run_real_translation(scan: Path, model_id: str) -> dict:
    """Loads ``scan`` into the scene, opens the panel, picks ``model_id``, clicks Translate and records the
    panel after every progress event; returns the mid-inference and final panel states and the run's facts."""
    import slicer  # slicer-core: real MRML, logics, slicer.util

    from slicer_test_support import MODULE_DIR, MODULE_FILE, STANDIN_DIR, STANDIN_SLICER_DIR

    sys.path[:0] = [str(STANDIN_DIR), str(MODULE_DIR)]
    slicer.__path__.append(str(STANDIN_SLICER_DIR))
    from slicer import _standin

    from MedGANTranslateLib.devices import cpu_name
    from MedGANTranslateSlicer.engine_messages import STAGE_WEIGHTS

    _standin.configure(os.path.join(tempfile.mkdtemp(prefix="render-panel-"), "SlicerTemp"))
    volume = slicer.util.loadVolume(str(scan))
    _standin.load_module(str(MODULE_FILE))
    widget = _standin.create_widget("MedGANTranslate")  # setup() and enter(): enter() starts the device query
    if not _standin.process_events_until(lambda: widget.panel._deviceQuery is None, 120):
        raise RuntimeError("the engine's device query did not finish")
    ui = widget.ui
    preselected = ui.modelSelector.currentData()  # what the panel chose by itself on opening
    wanted = [i for i in range(ui.modelSelector.count) if ui.modelSelector.itemData(i).split("@")[0] == model_id]
    if not wanted:
        raise RuntimeError(f"model {model_id} is not installed; the panel lists "
                           f"{[ui.modelSelector.itemData(i) for i in range(ui.modelSelector.count)]}")
    ui.modelSelector.currentIndex = wanted[0]  # what choosing it in the list does (currentIndexChanged)
    if ui.inputSelector.currentNode() is not volume:
        ui.inputSelector.setCurrentNode(volume)

    events = []
    original = widget.panel._onProgress

    def record(tracker):
        original(tracker)
        weights = dict(STAGE_WEIGHTS)
        base = sum(w for name, w in STAGE_WEIGHTS[:[n for n, _ in STAGE_WEIGHTS].index(tracker.stage)]) if tracker.stage in weights else 0
        stage_fraction = (tracker.fraction - base) / weights[tracker.stage] if tracker.stage in weights else 0.0
        events.append({"stage": tracker.stage, "stage_fraction": round(stage_fraction, 4), "percent": tracker.percent,
                       "panel": _snapshot(ui)})

    widget.panel._onProgress = record
    before = _snapshot(ui)
    started = time.time()
    ui.applyButton.click()
    if widget.panel._job is None:
        raise RuntimeError(f"Translate did not start: {ui.statusLabel.text}")
    job = widget.panel._job
    if not _standin.process_events_until(lambda: not job.running, TIMEOUT_S):
        raise RuntimeError("the translation did not finish in time")
    if job.error is not None:
        raise RuntimeError(f"the translation failed: {job.error}\n{job.error.log}")
    final = _snapshot(ui)
    infer = [e for e in events if e["stage"] == "infer" and 0.0 < e["stage_fraction"] < 1.0] or \
        [e for e in events if e["stage"] == "infer"]
    mid = min(infer, key=lambda e: abs(e["stage_fraction"] - 0.5))
    done = job.done_event or {}
    summary = widget.panel._currentModel()
    facts = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "scan": str(scan),
        "scan_node": volume.GetName(),
        "scan_dimensions": list(volume.GetImageData().GetDimensions()),
        "scan_spacing_mm": [round(v, 4) for v in volume.GetSpacing()],
        "model": f"{summary.id} v{summary.version}",
        "preselected_model": preselected,
        "device": job.result.provenance.get("MedGANTranslate.Device"),
        "engine_seconds": job.result.provenance.get("MedGANTranslate.Seconds"),
        "wall_seconds_from_click": round(time.time() - started, 1),
        "windows": done.get("windows"),
        "cpu_cores": os.cpu_count(),
        "cpu_model": cpu_name(),
        "machine": platform.platform(),
        "mid_run_event": {k: mid[k] for k in ("stage", "stage_fraction", "percent")},
        "progress_events": [{k: e[k] for k in ("stage", "stage_fraction", "percent")} | {
            "bar": e["panel"]["progressBar"]["format"], "status": e["panel"]["statusLabel"]["text"]} for e in events],
        "scan_warnings": job.scan_warnings,
    }
    return {"facts": facts, "before": before, "mid": mid["panel"], "final": final}


# --- step 2: the real .ui drawn by real Qt (PySide6, offscreen) with the recorded state ----------------------


def render(states: dict, out: Path) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import xml.etree.ElementTree as ET

    from PySide6 import QtCore, QtGui, QtUiTools, QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    app.setStyle("Fusion")
    font = QtGui.QFont("DejaVu Sans")
    font.setPixelSize(12)
    app.setFont(font)

    class SliderWidget(QtWidgets.QWidget):
        """ctkSliderWidget: a slider and a spin box."""

        def __init__(self, parent=None):
            super().__init__(parent)
            layout = QtWidgets.QHBoxLayout(self)
            layout.setContentsMargins(0, 0, 0, 0)
            self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
            self.slider.setRange(0, 1000)
            self.spin = QtWidgets.QDoubleSpinBox()
            self.spin.setDecimals(2)
            layout.addWidget(self.slider, 1)
            layout.addWidget(self.spin)

        def setState(self, value: float, maximum: float) -> None:
            self.spin.setRange(0.0, maximum)
            self.spin.setValue(value)
            self.slider.setValue(int(round(1000 * value / maximum)) if maximum else 0)

    substitutes = {
        "ctkCollapsibleButton": QtWidgets.QGroupBox,
        "qMRMLNodeComboBox": QtWidgets.QComboBox,
        "ctkPathLineEdit": QtWidgets.QLineEdit,
        "ctkSliderWidget": SliderWidget,
        "qMRMLTableView": QtWidgets.QTableView,
        "qMRMLWidget": QtWidgets.QWidget,
    }

    class Loader(QtUiTools.QUiLoader):
        def createWidget(self, className, parent=None, name=""):
            if className in substitutes:
                widget = substitutes[className](parent)
                widget.setObjectName(name)
                return widget
            return super().createWidget(className, parent, name)

    tree = ET.parse(UI_FILE)
    root = tree.getroot()
    for element in root.findall("connections"):  # MRML scene signals: nothing to connect to outside Slicer
        root.remove(element)
    for parent in root.iter():  # ctkPathLineEdit's filters (ctk enum flags): no QLineEdit property
        for prop in [p for p in parent.findall("property") if p.get("name") == "filters"]:
            parent.remove(prop)

    def load_panel(state: dict) -> QtWidgets.QWidget:
        data = QtCore.QByteArray(ET.tostring(root, encoding="utf-8"))
        buffer = QtCore.QBuffer(data)
        buffer.open(QtCore.QIODevice.OpenModeFlag.ReadOnly)
        panel = Loader().load(buffer)
        for name, s in state.items():
            w = panel if panel.objectName() == name else panel.findChild(QtWidgets.QWidget, name)
            if w is None:
                raise RuntimeError(f"the .ui has no widget {name}")
            cls = s["class"]
            if cls == "ctkCollapsibleButton":
                w.setTitle(("▸ " if s["collapsed"] else "▾ ") + s["text"])
                if s["collapsed"]:  # ctk shows only the button: the title, contents hidden
                    for child in w.findChildren(QtWidgets.QWidget, options=QtCore.Qt.FindChildOption.FindDirectChildrenOnly):
                        child.hide()
                    w.setFlat(True)
                    w.setFixedHeight(w.fontMetrics().height() + 6)
            elif cls == "qMRMLNodeComboBox":
                # long node names are elided rather than widening the panel
                w.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
                w.setMinimumContentsLength(12)
                w.addItem(s["text"])
            elif "items" in s:
                w.addItems(s["items"])
                w.setCurrentIndex(s["currentIndex"])
            elif cls == "QProgressBar":
                w.setRange(s["minimum"], s["maximum"])
                w.setValue(s["value"])
                w.setFormat(s["format"])
            elif cls == "QPlainTextEdit":
                w.setPlainText(s["text"])
            elif cls == "ctkSliderWidget":
                w.setState(float(s["value"]), float(w.property("maximum") or 1.0))
            elif cls == "qMRMLTableView":
                model = QtGui.QStandardItemModel(len(s["rows"]), max((len(r) for r in s["rows"]), default=0), w)
                for r, row in enumerate(s["rows"]):
                    for c, text in enumerate(row):
                        model.setItem(r, c, QtGui.QStandardItem(text))
                w.setModel(model)
            elif "value" in s:
                w.setValue(s["value"])
            elif "text" in s:
                w.setText(s["text"])
            if "checked" in s and hasattr(w, "setChecked"):
                w.setChecked(s["checked"])
            w.setEnabled(s["enabled"])
            if not s["visible"]:
                w.hide()
        return panel

    facts = states["facts"]
    canvas = QtWidgets.QWidget()
    canvas.setAutoFillBackground(True)
    outer = QtWidgets.QVBoxLayout(canvas)
    row = QtWidgets.QHBoxLayout()
    outer.addLayout(row)
    windows = facts.get("windows") or {}
    mid = facts["mid_run_event"]
    headings = (
        ("mid", f"During the run: {round(mid['stage_fraction'] * windows['total'])} of {windows['total']} windows done"
                if mid["stage"] == "infer" and windows.get("total") else f"During the run ({mid['stage']})"),
        ("final", "After the run"),
    )
    for key, heading in headings:
        column = QtWidgets.QVBoxLayout()
        label = QtWidgets.QLabel(f"<b>{heading}</b>")
        column.addWidget(label)
        frame = QtWidgets.QFrame()
        frame.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
        inner = QtWidgets.QVBoxLayout(frame)
        inner.setContentsMargins(4, 4, 4, 4)
        panel = load_panel(states[key])
        panel.setFixedWidth(PANEL_WIDTH)
        inner.addWidget(panel)
        column.addWidget(frame)
        column.addStretch(1)
        row.addLayout(column)
    note = QtWidgets.QLabel(
        f"MedGANTranslate.ui rendered offscreen with plain Qt stand-ins for the CTK/MRML widgets "
        f"(render_panel.py), filled with the state of the module's widget during a real run of {facts['model']} "
        f"on {facts['scan_node']} ({'×'.join(map(str, facts['scan_dimensions']))}, "
        f"{'×'.join(f'{v:g}' for v in facts['scan_spacing_mm'])} mm), {facts['device']}, "
        f"{facts['cpu_cores']} cores, {facts['date_utc']}.")
    note.setWordWrap(True)
    note.setStyleSheet("color: #555;")
    outer.addWidget(note)
    # word-wrapped labels (model details, status) get the height their text needs at the panel's width
    canvas.show()
    app.processEvents()
    for label in canvas.findChildren(QtWidgets.QLabel):
        if label.wordWrap() and label.isVisible():
            label.setMinimumHeight(max(0, label.heightForWidth(label.width())))
    canvas.adjustSize()
    app.processEvents()
    image = canvas.grab().toImage().convertToFormat(QtGui.QImage.Format.Format_Indexed8)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(out), "PNG"):
        raise RuntimeError(f"could not write {out}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scan", type=Path, default=DEFAULT_SCAN, help="MR T1w volume to translate")
    parser.add_argument("--model", default="mr-t1-to-ct-pix2pix", help="model id (a bundled model)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--state-json", type=Path, help="also write the recorded panel states here")
    parser.add_argument("--from-state", type=Path, help="render a state JSON written earlier, without a run")
    args = parser.parse_args(argv)
    if args.from_state:
        states = json.loads(args.from_state.read_text())
    else:
        if not args.scan.exists():
            parser.error(f"{args.scan} does not exist; give --scan (e.g. demo_output/phantom_t1.nii.gz from "
                         "`medgan-translate demo`)")
        sys.path.insert(0, str(HERE))
        states = run_real_translation(args.scan, args.model)
    if args.state_json:
        args.state_json.write_text(json.dumps(states, indent=1, ensure_ascii=False))
    print(json.dumps(states["facts"], indent=1, ensure_ascii=False))
    for key in ("mid", "final"):
        s = states[key]
        print(f"[{key}] model: {s['modelSelector']['items'][s['modelSelector']['currentIndex']]!r}; "
              f"bar: {s['progressBar']['format']!r} at {s['progressBar']['value']}; status: {s['statusLabel']['text']!r}; "
              f"button: {s['applyButton']['text']!r}")
    render(states, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
