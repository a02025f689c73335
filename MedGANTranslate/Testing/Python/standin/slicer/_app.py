"""The application object, the layout manager and Slicer's MRML widgets, as the module sees them."""
from __future__ import annotations

import os
from typing import Dict, List, Optional

import qt
import vtk

from ._mrml import vtkMRMLScene, vtkMRMLSliceCompositeNode, vtkMRMLSliceNode


class qMRMLWidget(qt.QWidget):
    SIGNALS = ("mrmlSceneChanged(vtkMRMLScene*)",)

    def __init__(self, parent: Optional[qt.QObject] = None) -> None:
        super().__init__(parent)
        self._scene = None

    def setMRMLScene(self, scene) -> None:
        self._scene = scene
        self.emit_signal("mrmlSceneChanged(vtkMRMLScene*)", scene)

    def mrmlScene(self):
        return self._scene


class qMRMLNodeComboBox(qMRMLWidget):
    """Lists scene nodes of ``nodeTypes``. Like the real one, it selects the first matching node by itself
    when None is not allowed and nothing is selected (on scene change and node addition), and drops the
    selection when the selected node leaves the scene."""

    SIGNALS = ("currentNodeChanged(vtkMRMLNode*)", "currentNodeChanged(bool)", "currentNodeIDChanged(QString)",
               "nodeAdded(vtkMRMLNode*)")

    def __init__(self, parent: Optional[qt.QObject] = None) -> None:
        super().__init__(parent)
        self.nodeTypes: List[str] = []
        self.noneEnabled = False
        self.addEnabled = True
        self.removeEnabled = True
        self.renameEnabled = False
        self.showHidden = False
        self.showChildNodeTypes = True
        self.noneDisplay = "None"
        self.baseName = ""
        self.selectNodeUponCreation = True
        self._current = None
        self._tags: List[int] = []

    def setMRMLScene(self, scene) -> None:
        if self._scene is not None:
            for tag in self._tags:
                self._scene.RemoveObserver(tag)
        self._tags = []
        super().setMRMLScene(scene)
        if scene is not None:
            self._tags = [scene.AddObserver(scene.NodeAddedEvent, self._on_scene_changed),
                          scene.AddObserver(scene.NodeRemovedEvent, self._on_scene_changed)]
        self._on_scene_changed()

    def _matches(self, node) -> bool:
        for kind in self.nodeTypes:
            if (node.IsA(kind) if self.showChildNodeTypes else node.GetClassName() == kind) and (self.showHidden or not node.GetHideFromEditors()):
                return True
        return False

    def nodes(self) -> list:
        return [n for n in self._scene._all_nodes() if self._matches(n)] if self._scene is not None else []

    def nodeCount(self) -> int:
        return len(self.nodes())

    def _on_scene_changed(self, caller=None, event=None) -> None:
        if self._current is not None and (self._scene is None or self._scene.GetNodeByID(self._current.GetID()) is not self._current):
            self.setCurrentNode(None)
        if self._current is None and not self.noneEnabled and self.nodes():
            self.setCurrentNode(self.nodes()[0])

    def currentNode(self):
        return self._current

    def currentNodeID(self) -> str:
        return self._current.GetID() if self._current is not None else ""

    def setCurrentNode(self, node) -> None:
        if node is not None and not self._matches(node):
            node = None
        if node is self._current:
            return
        self._current = node
        self.emit_signal("currentNodeChanged(vtkMRMLNode*)", node)
        self.emit_signal("currentNodeChanged(bool)", node is not None)
        self.emit_signal("currentNodeIDChanged(QString)", self.currentNodeID())

    def setCurrentNodeID(self, nodeID: str) -> None:
        self.setCurrentNode(self._scene.GetNodeByID(nodeID) if (self._scene is not None and nodeID) else None)


class qMRMLTableView(qt.QTableView):
    def __init__(self, parent: Optional[qt.QObject] = None) -> None:
        super().__init__(parent)
        self._scene = None
        self._table = None

    def setMRMLScene(self, scene) -> None:
        self._scene = scene

    def setMRMLTableNode(self, node) -> None:
        self._table = node

    def mrmlTableNode(self):
        return self._table


class vtkMRMLSliceLogic(vtk.vtkObject):
    def __init__(self, slice_node: vtkMRMLSliceNode, composite: vtkMRMLSliceCompositeNode) -> None:
        super().__init__()
        self._slice = slice_node
        self._composite = composite
        self._offset = 0.0
        self.fit_count = 0

    def GetSliceNode(self):
        return self._slice

    def GetSliceCompositeNode(self):
        return self._composite

    def FitSliceToAll(self, width=-1, height=-1) -> None:
        self.fit_count += 1

    def FitSliceToBackground(self, width=-1, height=-1) -> None:
        self.fit_count += 1

    def GetSliceOffset(self) -> float:
        return self._offset

    def SetSliceOffset(self, offset) -> None:
        self._offset = float(offset)

    def SnapSliceOffsetToIJK(self) -> None:
        pass


class qMRMLSliceWidget(qMRMLWidget):
    def __init__(self, logic: vtkMRMLSliceLogic) -> None:
        super().__init__()
        self._logic = logic

    def mrmlSliceCompositeNode(self):
        return self._logic.GetSliceCompositeNode()

    def mrmlSliceNode(self):
        return self._logic.GetSliceNode()

    def sliceLogic(self):
        return self._logic

    def fitSliceToBackground(self) -> None:
        self._logic.FitSliceToBackground()

    def setSliceOrientation(self, orientation) -> None:
        self._logic.GetSliceNode().SetOrientation(orientation)

    @property
    def sliceOrientation(self) -> str:
        return self._logic.GetSliceNode().GetOrientation()


class vtkMRMLLayoutLogic(vtk.vtkObject):
    def __init__(self, scene: vtkMRMLScene) -> None:
        super().__init__()
        self._scene = scene

    def GetLayoutNode(self):
        return self._scene.GetSingletonNode("vtkMRMLLayoutNode", "vtkMRMLLayoutNode")


class qSlicerLayoutManager(qt.QObject):
    """Slice views of the current layout, each with its own slice and composite singleton nodes."""

    SIGNALS = ("layoutChanged(int)",)

    def __init__(self, scene: vtkMRMLScene) -> None:
        super().__init__()
        self._scene = scene
        self._layout = 3  # SlicerLayoutFourUpView, Slicer's start-up layout
        self._widgets: Dict[str, qMRMLSliceWidget] = {}
        self.history: List[int] = []
        self.reset_count = 0
        self._create_views()

    def _layout_node(self):
        return self._scene.GetSingletonNode("vtkMRMLLayoutNode", "vtkMRMLLayoutNode")

    def _create_views(self) -> None:
        for name in self.sliceViewNames():
            slice_node = self._scene.GetSingletonNode(name, "vtkMRMLSliceNode")
            if slice_node is None:
                slice_node = vtkMRMLSliceNode()
                slice_node._singleton_tag = name
                slice_node.SetName(name)
                slice_node.SetOrientation({"Yellow": "Sagittal", "Green": "Coronal"}.get(name, "Axial"))
                self._scene.AddNode(slice_node)
            composite = self._scene.GetSingletonNode(name, "vtkMRMLSliceCompositeNode")
            if composite is None:
                composite = vtkMRMLSliceCompositeNode()
                composite._singleton_tag = name
                self._scene.AddNode(composite)
            if name not in self._widgets:
                self._widgets[name] = qMRMLSliceWidget(vtkMRMLSliceLogic(slice_node, composite))

    @property
    def layout(self) -> int:
        return self._layout

    def setLayout(self, newLayout) -> None:
        if not self._layout_node().IsLayoutDescription(newLayout):
            return
        self._layout = int(newLayout)
        self._layout_node().SetViewArrangement(self._layout)
        self.history.append(self._layout)
        self._create_views()
        self.emit_signal("layoutChanged(int)", self._layout)

    def sliceViewNames(self) -> List[str]:
        return self._layout_node()._slice_views(self._layout)

    def sliceWidget(self, name):
        return self._widgets.get(name) if name in self.sliceViewNames() else None

    def layoutLogic(self):
        return vtkMRMLLayoutLogic(self._scene)

    def mrmlSliceLogics(self):
        collection = vtk.vtkCollection()
        for name in self.sliceViewNames():
            collection.AddItem(self._widgets[name].sliceLogic())
        return collection

    def resetSliceViews(self) -> None:
        self.reset_count += 1
        for name in self.sliceViewNames():
            self._widgets[name].fitSliceToBackground()

    def resetThreeDViews(self) -> None:
        pass

    def pauseRender(self) -> None:
        pass

    def resumeRender(self) -> None:
        pass

    def setRenderPaused(self, pause) -> None:
        pass

    def setLayoutNumberOfCompareViewRows(self, num) -> None:
        self._layout_node().SetNumberOfCompareViewRows(num)

    def setLayoutNumberOfCompareViewColumns(self, num) -> None:
        self._layout_node().SetNumberOfCompareViewColumns(num)


class _CommandOptions:
    def __init__(self, app: "qSlicerApplication") -> None:
        self._app = app

    @property
    def testingEnabled(self) -> bool:
        return self._app._testing


class qSlicerApplication(qt.QObject):
    """``slicer.app``. ``layoutManager()`` is None without a main window, as with ``--no-main-window``."""

    SIGNALS = ("startupCompleted()",)

    def __init__(self, scene: vtkMRMLScene, temporary_path: str, testing: bool, main_window: bool, version: str) -> None:
        super().__init__()
        self._scene = scene
        self._testing = testing
        self._temporary_path = temporary_path
        self._layout_manager = qSlicerLayoutManager(scene) if main_window else None
        self._override_cursors: List[int] = []
        major, minor = (int(v) for v in version.split("."))
        self.majorVersion = major
        self.minorVersion = minor
        self.revision = "standin"
        self.releaseType = "Stable"
        self.slicerHome = os.path.dirname(temporary_path)
        self.slicerSharePath = "share/Slicer-{}.{}".format(major, minor)
        self.extensionsInstallPath = os.path.join(self.slicerHome, "extensions")
        self.isInstalled = False

    @property
    def temporaryPath(self) -> str:
        os.makedirs(self._temporary_path, exist_ok=True)
        return self._temporary_path

    @property
    def cachePath(self) -> str:
        path = os.path.join(self.slicerHome, "cache")
        os.makedirs(path, exist_ok=True)
        return path

    def layoutManager(self):
        return self._layout_manager

    def processEvents(self) -> None:
        qt.process_timers()

    def testingEnabled(self) -> bool:
        return self._testing

    def commandOptions(self):
        return _CommandOptions(self)

    def mrmlScene(self):
        return self._scene

    def userSettings(self):
        return qt.QSettings()

    def settings(self):
        return qt.QSettings()

    def pauseRender(self) -> None:
        pass

    def resumeRender(self) -> None:
        pass

    def setRenderPaused(self, pause) -> None:
        pass

    def setOverrideCursor(self, cursor) -> None:
        self._override_cursors.append(cursor)

    def restoreOverrideCursor(self) -> None:
        if self._override_cursors:
            self._override_cursors.pop()

    def startupEnvironment(self) -> dict:
        return dict(os.environ)

    def environment(self) -> dict:
        return dict(os.environ)
