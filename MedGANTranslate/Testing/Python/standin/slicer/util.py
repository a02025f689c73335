"""Stand-in for ``slicer.util`` (signatures as in Slicer 5.8.1, see slicer_api.json).

Arrays are (K, J, I) views onto real vtkImageData; geometry stays on the node. Files go through
SimpleITK with the LPS<->RAS flip Slicer's readers and writers apply. Dialogs never block: each call is
recorded in ``slicer._standin.state.dialogs``; confirmations return True in testing mode (as in Slicer)
and ``state.confirm_answer`` otherwise. ``pip_install`` records the call and installs nothing.
"""
from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import traceback
from collections import OrderedDict

import numpy as np
import qt
import vtk
from vtk.util import numpy_support

import slicer

from . import _standin

TESTING_DATA_URL = "https://github.com/Slicer/SlicerTestingData/releases/download/"


class MRMLNodeNotFoundException(Exception):
    pass


# --- volumes and arrays ------------------------------------------------------------------------------

_ARRAY_CLASSES = ("vtkMRMLScalarVolumeNode", "vtkMRMLLabelMapVolumeNode")


def arrayFromVolume(volumeNode):
    if volumeNode.GetClassName() not in _ARRAY_CLASSES:
        raise RuntimeError("Unsupported volume type: " + volumeNode.GetClassName())
    image = volumeNode.GetImageData()
    shape = tuple(reversed(image.GetDimensions()))
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(shape)


def arrayFromVolumeModified(volumeNode) -> None:
    volumeNode.GetImageData().GetPointData().GetScalars().Modified()
    volumeNode.GetImageData().Modified()
    volumeNode._image_changed()


def updateVolumeFromArray(volumeNode, narray) -> None:
    narray = np.asarray(narray)
    if narray.ndim > 4:
        raise RuntimeError("Unsupported number of dimensions")
    if narray.dtype.kind in "iu" and narray.dtype.itemsize == 8:
        raise RuntimeError("Unsupported scalar type: long long")
    if narray.ndim < 3:
        narray = narray.reshape((1,) * (3 - narray.ndim) + narray.shape).astype(np.float64)
    image = volumeNode.GetImageData() or vtk.vtkImageData()
    image.SetDimensions(narray.shape[2], narray.shape[1], narray.shape[0])
    image.SetOrigin(0, 0, 0)
    image.SetSpacing(1, 1, 1)
    flat = np.ascontiguousarray(narray).reshape(-1)
    scalars = numpy_support.numpy_to_vtk(flat, deep=True)
    image.GetPointData().SetScalars(scalars)
    volumeNode.SetAndObserveImageData(image)


def addVolumeFromArray(narray, ijkToRAS=None, name=None, nodeClassName=None):
    node = slicer.mrmlScene.AddNewNodeByClass(nodeClassName or "vtkMRMLScalarVolumeNode", name or "")
    if ijkToRAS is not None:
        if not isinstance(ijkToRAS, vtk.vtkMatrix4x4):
            ijkToRAS = vtkMatrixFromArray(ijkToRAS)
        node.SetIJKToRASMatrix(ijkToRAS)
    updateVolumeFromArray(node, narray)
    node.CreateDefaultDisplayNodes()
    return node


def arrayFromVTKMatrix(vmatrix):
    size = 4 if isinstance(vmatrix, vtk.vtkMatrix4x4) else 3 if isinstance(vmatrix, vtk.vtkMatrix3x3) else None
    if size is None:
        raise RuntimeError("Input must be vtk.vtkMatrix3x3 or vtk.vtkMatrix4x4")
    return np.array([[vmatrix.GetElement(r, c) for c in range(size)] for r in range(size)])


def vtkMatrixFromArray(narray):
    narray = np.asarray(narray)
    if narray.shape == (4, 4):
        matrix = vtk.vtkMatrix4x4()
    elif narray.shape == (3, 3):
        matrix = vtk.vtkMatrix3x3()
    else:
        raise RuntimeError("Unsupported numpy array shape: " + str(narray.shape) + " expected (4, 4)")
    updateVTKMatrixFromArray(matrix, narray)
    return matrix


def updateVTKMatrixFromArray(vmatrix, narray) -> None:
    narray = np.asarray(narray)
    for r in range(narray.shape[0]):
        for c in range(narray.shape[1]):
            vmatrix.SetElement(r, c, float(narray[r, c]))


def updateTableFromArray(tableNode, narrays, columnNames=None):
    if tableNode is None:
        tableNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode")
    columns = [narrays] if isinstance(narrays, np.ndarray) and narrays.ndim == 1 else (
        [narrays[:, i] for i in range(narrays.shape[1])] if isinstance(narrays, np.ndarray) else list(narrays))
    tableNode.RemoveAllColumns()
    for i, values in enumerate(columns):
        column = numpy_support.numpy_to_vtk(np.asarray(values, dtype=np.float32), deep=True)
        column.SetName(columnNames[i] if columnNames else f"Column_{i}")
        tableNode.AddColumn(column)
    return tableNode


# --- finding nodes -----------------------------------------------------------------------------------

def getNodes(pattern="*", scene=None, useLists=False):
    scene = scene or slicer.mrmlScene
    nodes = OrderedDict()
    for node in scene._all_nodes():
        for key in (node.GetName(), node.GetID()):
            if key and fnmatch.fnmatchcase(key, pattern):
                if useLists:
                    nodes.setdefault(node.GetName(), []).append(node)
                else:
                    nodes[node.GetName()] = node
                break
    return nodes


def getNode(pattern="*", index=0, scene=None):
    nodes = list(getNodes(pattern, scene).values())
    if not nodes:
        raise MRMLNodeNotFoundException(f"could not find nodes in the scene by name or id '{pattern}'")
    return nodes[index]


def getNodesByClass(className, scene=None):
    return [node for node in slicer.mrmlScene._all_nodes() if node.IsA(className)]


def getFirstNodeByClassByName(className, name, scene=None):
    return next((n for n in (scene or slicer.mrmlScene)._all_nodes() if n.IsA(className) and n.GetName() == name), None)


def getFirstNodeByName(name, className=None):
    return next((n for n in slicer.mrmlScene._all_nodes()
                 if n.GetName().startswith(name) and (className is None or n.IsA(className))), None)


class NodeModify:
    def __init__(self, node) -> None:
        self.node = node

    def __enter__(self):
        self.wasModifying = self.node.StartModify()
        return self.node

    def __exit__(self, type, value, traceback) -> None:
        self.node.EndModify(self.wasModifying)


class RenderBlocker:
    def __enter__(self):
        slicer.app.pauseRender()

    def __exit__(self, *args) -> None:
        slicer.app.resumeRender()


# --- files -------------------------------------------------------------------------------------------

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_WRITABLE = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")


def _ras_geometry_to_sitk(image, matrix: np.ndarray) -> None:
    lps = _LPS_TO_RAS @ matrix
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple(float(v) for v in (lps[:3, :3] / spacing).reshape(-1)))
    image.SetOrigin(tuple(float(v) for v in lps[:3, 3]))


def _sitk_geometry_to_ras(image) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    matrix[:3, 3] = image.GetOrigin()
    return _LPS_TO_RAS @ matrix


def _node_ijk_to_ras(node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return arrayFromVTKMatrix(matrix)


def exportNode(node, filename, properties={}, world=False) -> bool:
    import SimpleITK as sitk

    if not str(filename).lower().endswith(_WRITABLE):
        raise ValueError(f"No writer found to export node {node.GetName()} to file {filename}")
    image = sitk.GetImageFromArray(arrayFromVolume(node))
    _ras_geometry_to_sitk(image, _node_ijk_to_ras(node))
    try:
        sitk.WriteImage(image, str(filename), bool(properties.get("useCompression", 1)))
    except RuntimeError as exc:
        logging.error(f"Failed to export node {node.GetName()} to {filename}: {exc}")
        return False
    return True


def saveNode(node, filename, properties={}) -> bool:
    try:
        ok = exportNode(node, filename, properties)
    except ValueError as exc:
        logging.error(str(exc))
        return False
    if ok:
        if node.GetStorageNode() is None:
            node.AddDefaultStorageNode(filename)
        node.GetStorageNode().SetFileName(filename)
    return ok


def loadVolume(filename, properties={}, returnNode=False):
    import SimpleITK as sitk

    properties["fileName"] = filename
    try:
        image = sitk.ReadImage(str(filename))
    except RuntimeError as exc:
        raise RuntimeError(f"Failed to load volume from {filename}: {exc}") from exc
    name = properties.get("name") or os.path.basename(str(filename)).split(".")[0]
    node = addVolumeFromArray(sitk.GetArrayFromImage(image), _sitk_geometry_to_ras(image), name)
    node.AddDefaultStorageNode(filename)
    return (True, node) if returnNode else node


def tempDirectory(key="__SlicerTemp__", tempDir=None, includeDateTime=True) -> str:
    import datetime

    name = key + (datetime.datetime.now().strftime("%Y-%m-%d_%H+%M+%S.%f") if includeDateTime else "")
    path = os.path.join(tempDir or slicer.app.temporaryPath, name)
    os.makedirs(path, exist_ok=True)
    return path


# --- modules, windows, views -------------------------------------------------------------------------

def mainWindow():
    return _standin.state.main_window


def selectModule(module) -> None:
    if mainWindow() is None:
        raise RuntimeError("Could not find main window")
    _standin.state.selected_module = module if isinstance(module, str) else module.name


def getModule(moduleName):
    module = getattr(slicer.modules, moduleName.lower(), None)
    if module is None:
        raise RuntimeError(f"Could not find module with name '{moduleName}'")
    return module


def getModuleWidget(module):
    name = module if isinstance(module, str) else module.name
    widget = getattr(slicer.modules, name + "Widget", None)
    if widget is None:
        raise RuntimeError(f"Could not find module widget for module '{name}'")
    return widget


def getModuleLogic(module):
    return getModuleWidget(module).logic


def modulePath(moduleName) -> str:
    return getModule(moduleName).path


def setSliceViewerLayers(background="keep-current", foreground="keep-current", label="keep-current",
                         foregroundOpacity=None, labelOpacity=None, fit=False, rotateToVolumePlane=False) -> None:
    def node_id(value):
        return value if (value is None or isinstance(value, str)) else value.GetID()

    for composite in getNodesByClass("vtkMRMLSliceCompositeNode"):
        if background != "keep-current":
            composite.SetBackgroundVolumeID(node_id(background))
        if foreground != "keep-current":
            composite.SetForegroundVolumeID(node_id(foreground))
        if label != "keep-current":
            composite.SetLabelVolumeID(node_id(label))
        if foregroundOpacity is not None:
            composite.SetForegroundOpacity(foregroundOpacity)
        if labelOpacity is not None:
            composite.SetLabelOpacity(labelOpacity)
    layoutManager = slicer.app.layoutManager()
    if fit and layoutManager is not None:
        logics = layoutManager.mrmlSliceLogics()
        for i in range(logics.GetNumberOfItems()):
            logics.GetItemAsObject(i).FitSliceToBackground()


def resetSliceViews() -> None:
    slicer.app.layoutManager().resetSliceViews()


def forceRenderAllViews() -> None:
    pass


def loadUI(path):
    from . import _uiloader

    if not os.path.isfile(path):
        raise RuntimeError(f"Could not find UI file: {path}")
    return _uiloader.load(path)


class _ChildWidgets:
    pass


def childWidgetVariables(widget):
    ui = _ChildWidgets()
    for child in [widget] + widget.findChildren(qt.QWidget):
        if child.objectName:
            setattr(ui, child.objectName, child)
    return ui


def findChildren(widget=None, name="", text="", title="", className=""):
    found = []
    for child in (widget or mainWindow()).findChildren(qt.QObject):
        if name and not fnmatch.fnmatchcase(child.objectName, name):
            continue
        if className and not fnmatch.fnmatchcase(type(child).__name__, className):
            continue
        if text and not fnmatch.fnmatchcase(str(getattr(child, "text", "")), text):
            continue
        found.append(child)
    return found


def findChild(widget, name):
    children = findChildren(widget, name=name)
    if not children:
        raise RuntimeError(f"Widget named {name} does not exist")
    return children[0]


def showStatusMessage(message, duration=0) -> bool:
    _standin.state.status_messages.append(message)
    return mainWindow() is not None


def startupEnvironment():
    return slicer.app.startupEnvironment()


# --- dialogs -----------------------------------------------------------------------------------------

def _record(kind: str, text: str, windowTitle=None, **kwargs) -> None:
    _standin.state.dialogs.append({"kind": kind, "text": text, "windowTitle": windowTitle, **kwargs})


def errorDisplay(text, windowTitle=None, parent=None, standardButtons=None, **kwargs) -> None:
    logging.error(text)
    _record("error", text, windowTitle, **kwargs)


def warningDisplay(text, windowTitle=None, parent=None, standardButtons=None, **kwargs) -> None:
    logging.warning(text)
    _record("warning", text, windowTitle, **kwargs)


def infoDisplay(text, windowTitle=None, parent=None, standardButtons=None, **kwargs) -> None:
    logging.info(text)
    _record("info", text, windowTitle, **kwargs)


def _confirm(kind: str, text: str, windowTitle, kwargs, testing_answer: bool) -> bool:
    _record(kind, text, windowTitle, **kwargs)
    return testing_answer if slicer.app.testingEnabled() else _standin.state.confirm_answer


def confirmOkCancelDisplay(text, windowTitle=None, parent=None, **kwargs) -> bool:
    return _confirm("confirmOkCancel", text, windowTitle, kwargs, True)


def confirmYesNoDisplay(text, windowTitle=None, parent=None, **kwargs) -> bool:
    return _confirm("confirmYesNo", text, windowTitle, kwargs, True)


def confirmRetryCloseDisplay(text, windowTitle=None, parent=None, **kwargs) -> bool:
    return _confirm("confirmRetryClose", text, windowTitle, kwargs, False)


def messageBox(text, parent=None, **kwargs):
    _record("messageBox", text, **kwargs)
    return qt.QMessageBox.Ok


def delayDisplay(message, autoCloseMsec=1000, parent=None, **kwargs) -> None:
    logging.info(message)
    slicer.app.processEvents()


@contextlib.contextmanager
def tryWithErrorDisplay(message=None, show=True, waitCursor=False):
    try:
        if waitCursor:
            slicer.app.setOverrideCursor(qt.Qt.WaitCursor)
        yield
        if waitCursor:
            slicer.app.restoreOverrideCursor()
    except Exception as e:
        if waitCursor:
            slicer.app.restoreOverrideCursor()
        if show and not slicer.app.testingEnabled():
            text = f"{message}\n\n{e}" if message is not None else str(e)
            errorDisplay(text, detailedText=traceback.format_exc())
        raise


class WaitCursor:
    def __init__(self, show=True) -> None:
        self.show = show

    def __enter__(self):
        if self.show:
            slicer.app.setOverrideCursor(qt.Qt.WaitCursor)
        return self

    def __exit__(self, *args) -> None:
        if self.show:
            slicer.app.restoreOverrideCursor()


class MessageDialog:
    def __init__(self, message, show=True, logLevel=None) -> None:
        if logLevel is not None and not isinstance(logLevel, int):
            raise ValueError(f"Invalid log level: {logLevel}")
        self.message = message
        self.logLevel = logLevel

    def __enter__(self):
        logging.log(self.logLevel or logging.INFO, self.message)
        return self

    def __exit__(self, *args) -> None:
        pass


def settingsValue(key, default, converter=lambda v: v, settings=None):
    settings = settings or qt.QSettings()
    return converter(settings.value(key)) if settings.contains(key) else default


def toBool(value) -> bool:
    return value in (True, 1, "1", "true", "True", "TRUE", "on", "yes")


# --- pip ---------------------------------------------------------------------------------------------

def pip_install(requirements) -> None:
    if not isinstance(requirements, (str, list)):
        raise ValueError("requirements must be a string or a list")
    _standin.record_pip_install(requirements, {})


_pip_install_58 = pip_install  # _standin.configure swaps in the 5.12 signature


def pip_uninstall(requirements) -> None:
    if not isinstance(requirements, (str, list)):
        raise ValueError("requirements must be a string or a list")
    _standin.state.pip_calls.append(("uninstall", requirements, {}))


# --- observations ------------------------------------------------------------------------------------

class VTKObservationMixin:
    def __init__(self) -> None:
        super().__init__()
        self.Observations = []

    def removeObservers(self, method=None) -> None:
        for obj, event, method_, group, tag, priority in list(self.Observations):
            if method == method_ or method is None:
                obj.RemoveObserver(tag)
                self.Observations.remove([obj, event, method_, group, tag, priority])

    def addObserver(self, obj, event, method, group="none", priority=0.0) -> None:
        for o, e, m, g, t, p in self.Observations:
            if o == obj and e == event and m == method:
                logging.warning("already has observer")
                return
        tag = obj.AddObserver(event, method, priority)
        self.Observations.append([obj, event, method, group, tag, priority])

    def removeObserver(self, obj, event, method) -> None:
        for observation in list(self.Observations):
            o, e, m, g, t, p = observation
            if o == obj and e == event and m == method:
                o.RemoveObserver(t)
                self.Observations.remove(observation)
                return
        logging.warning("does not have observer")

    def getObserver(self, obj, event, method, default=None):
        for o, e, m, g, t, p in self.Observations:
            if o == obj and e == event and m == method:
                return g, t, p
        return default

    def hasObserver(self, obj, event, method) -> bool:
        return self.getObserver(obj, event, method) is not None

    def observer(self, event, method, default=None):
        for o, e, m, g, t, p in self.Observations:
            if e == event and m == method:
                return o
        return default
