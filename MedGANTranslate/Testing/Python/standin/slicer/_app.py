"""Stand-in for the Qt half of Slicer the module touches: ``slicer.app`` (qSlicerApplication), its IO
manager, the layout manager and the MRML widgets. Everything behind them is real Slicer from slicer-core:
the scene, the application logic with its colour and subject hierarchy logics, vtkMRMLLayoutLogic and a
vtkMRMLSliceLogic per slice view, the volume storage nodes that read and write files, and hardening of
transforms on export."""
from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Dict, List, Optional

import qt
import vtk

import slicer


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


def scene_nodes(scene) -> list:
    return [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]


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
        return [n for n in scene_nodes(self._scene) if self._matches(n)] if self._scene is not None else []

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


class qMRMLSliceWidget(qMRMLWidget):
    """A slice view: a real vtkMRMLSliceLogic on the real slice node, which makes its composite node."""

    def __init__(self, logic) -> None:
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


class qSlicerLayoutManager(qt.QObject):
    """Slicer's layout manager as the module sees it, over the real vtkMRMLLayoutLogic: ``setLayout`` sets the
    real layout node's view arrangement, the logic makes the view nodes the arrangement names, and each slice
    view gets a real slice logic (and with it a real slice composite node)."""

    SIGNALS = ("layoutChanged(int)",)

    def __init__(self, scene, application_logic) -> None:
        super().__init__()
        self._scene = scene
        self._application_logic = application_logic
        self._layout_logic = slicer.vtkMRMLLayoutLogic()
        self._layout_logic.SetMRMLScene(scene)
        self._widgets: Dict[str, qMRMLSliceWidget] = {}
        self.history: List[int] = []
        self.reset_count = 0
        self.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpView)  # Slicer's start-up layout
        self.history.clear()

    def _layout_node(self):
        return self._layout_logic.GetLayoutNode()

    @property
    def layout(self) -> int:
        return self._layout_node().GetViewArrangement()

    def setLayout(self, newLayout) -> None:
        self._layout_node().SetViewArrangement(int(newLayout))
        self.history.append(int(newLayout))
        for name in self.sliceViewNames():
            if name not in self._widgets:
                logic = slicer.vtkMRMLSliceLogic()
                logic.SetMRMLApplicationLogic(self._application_logic)
                logic.SetMRMLScene(self._scene)
                logic.SetSliceNode(self._scene.GetSingletonNode(name, "vtkMRMLSliceNode"))
                self._widgets[name] = qMRMLSliceWidget(logic)
        self.emit_signal("layoutChanged(int)", self.layout)

    def sliceViewNames(self) -> List[str]:
        views = self._layout_logic.GetViewNodes()
        nodes = [views.GetItemAsObject(i) for i in range(views.GetNumberOfItems())]
        return [n.GetLayoutName() for n in nodes if n.IsA("vtkMRMLSliceNode")]

    def sliceWidget(self, name):
        return self._widgets.get(name) if name in self.sliceViewNames() else None

    def layoutLogic(self):
        return self._layout_logic

    def mrmlSliceLogics(self):
        collection = vtk.vtkCollection()
        for name in self.sliceViewNames():
            collection.AddItem(self._widgets[name].sliceLogic())
        return collection

    def resetSliceViews(self) -> None:
        self.reset_count += 1
        for name in self.sliceViewNames():
            self._widgets[name].fitSliceToBackground()


class qSlicerCoreIOManager:
    """The three calls slicer.util makes, done as qSlicerCoreIOManager does them (Base/QTCore) with real
    MRML: ``exportNodes`` copies the node into a temporary scene, hardens its parent transform there when
    asked (``world=True``) and writes it with a real storage node; ``loadNodes`` reads with the real volumes
    logic. Only volumes and tables, the node types the module writes or reads."""

    def __init__(self, application_logic) -> None:
        self._application_logic = application_logic

    def extractKnownExtension(self, fileName, object) -> str:
        for extension in (".nii.gz", ".nrrd", ".nhdr", ".nii", ".mha", ".mhd", ".tsv", ".csv"):
            if str(fileName).lower().endswith(extension):
                return extension
        return ""

    def fileWriterExtensions(self, object) -> List[str]:
        if object.IsA("vtkMRMLVolumeNode"):
            return ["NRRD (.nrrd)", "NRRD (.nhdr)", "NIfTI (.nii)", "NIfTI (.nii.gz)", "MetaImage (.mha)", "MetaImage (.mhd)"]
        if object.IsA("vtkMRMLTableNode"):
            return ["Tab-separated values (.tsv)", "Comma-separated values (.csv)"]
        return []

    def fileWriterFileType(self, object, format="") -> str:
        return "VolumeFile" if object.IsA("vtkMRMLVolumeNode") else "TableFile"

    def exportNodes(self, nodeIDs, fileNames, commonParameterMap, hardenTransforms, userMessages=None) -> bool:
        scene = slicer.mrmlScene
        success = True
        for nodeID, fileName in zip(nodeIDs, fileNames):
            node = scene.GetNodeByID(nodeID)
            temporary_scene = slicer.vtkMRMLScene()
            copy = temporary_scene.AddNewNodeByClass(node.GetClassName())
            copy.CopyContent(node, hardenTransforms)
            parent = node.GetParentTransformNode() if hardenTransforms else None
            if parent is not None:
                transform = vtk.vtkGeneralTransform()
                parent.GetTransformFromWorld(transform)
                composite = temporary_scene.AddNewNodeByClass("vtkMRMLTransformNode")
                composite.SetAndObserveTransformFromParent(transform)
                copy.SetAndObserveTransformNodeID(composite.GetID())
                copy.HardenTransform()
            copy.AddDefaultStorageNode()
            storage = copy.GetStorageNode()
            storage.SetFileName(str(fileName))
            if "useCompression" in commonParameterMap:
                storage.SetUseCompression(int(commonParameterMap["useCompression"]))
            success = bool(storage.WriteData(copy)) and success
        return success

    def fileType(self, fileName) -> str:
        return "VolumeFile"

    def loadNodes(self, fileType, parameters, loadedNodes=None, userMessages=None) -> bool:
        volumes_logic = slicer.vtkSlicerVolumesLogic()
        volumes_logic.SetMRMLScene(slicer.mrmlScene)
        volumes_logic.SetMRMLApplicationLogic(self._application_logic)
        path = parameters["fileName"]
        name = parameters.get("name") or os.path.basename(path).split(".")[0]
        node = volumes_logic.AddArchetypeVolume(path, name, 1 if parameters.get("labelmap") else 0)
        if node is None:
            return False
        if loadedNodes is not None:
            loadedNodes.AddItem(node)
        return True


class _ModuleManager:
    def module(self, name):
        return getattr(slicer.modules, name.lower(), None)


class qSlicerApplication(qt.QObject):
    """``slicer.app``. ``layoutManager()`` is None without a main window, as with ``--no-main-window``. The
    application logic is Slicer's real one, initialised as trame-slicer's SlicerApp does: default colour
    nodes (with Slicer's colour files read from ``share/ColorFiles``) and the subject hierarchy logic."""

    SIGNALS = ("startupCompleted()",)

    def __init__(self, scene, temporary_path: str, testing: bool, main_window, version: str, share_files: str) -> None:
        super().__init__()
        self._scene = scene
        self._testing = testing
        self._temporary_path = temporary_path
        self._main_window = main_window
        major, minor = (int(v) for v in version.split("."))
        self.majorVersion = major
        self.minorVersion = minor
        self.applicationName = "Slicer"
        self.revision = "standin"
        self.releaseType = "Stable"
        self.slicerHome = os.path.dirname(share_files)
        self.slicerSharePath = os.path.basename(share_files)
        self.isInstalled = False
        self._application_logic = slicer.vtkSlicerApplicationLogic()
        self._application_logic.SetHomeDirectory(self.slicerHome)
        self._application_logic.SetShareDirectory(self.slicerSharePath)
        self._application_logic.SetMRMLScene(scene)
        self._module_logics = []
        color_logic = slicer.vtkSlicerColorLogic()
        self._register_logic("Colors", color_logic)
        color_logic.AddDefaultColorNodes()
        self._register_logic("SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic())
        scene.AddObserver(scene.NodeAddedEvent, self._add_to_subject_hierarchy)
        self._io_manager = qSlicerCoreIOManager(self._application_logic)
        self._layout_manager = qSlicerLayoutManager(scene, self._application_logic) if main_window is not None else None

    # Data nodes the subject hierarchy plugins of a Slicer install put into the tree (the Qt part of the
    # subject hierarchy module, not in slicer-core), for the node types the tests add.
    _SUBJECT_HIERARCHY_CLASSES = ("vtkMRMLVolumeNode", "vtkMRMLTableNode", "vtkMRMLTransformNode")

    def _add_to_subject_hierarchy(self, scene, event) -> None:
        """What qSlicerSubjectHierarchyPluginLogic::onNodeAdded does: a data node added outside a scene
        import, and not hidden, gets an item under the scene item."""
        sh = scene.GetSubjectHierarchyNode()
        nodes = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
        for node in nodes:
            if (sh is None or scene.IsImporting() or node.GetHideFromEditors() or sh.GetItemByDataNode(node)
                    or not any(node.IsA(kind) for kind in self._SUBJECT_HIERARCHY_CLASSES)):
                continue
            sh.CreateItem(sh.GetSceneItemID(), node)

    def _register_logic(self, name: str, logic) -> None:
        logic.SetMRMLApplicationLogic(self._application_logic)
        logic.SetMRMLScene(self._scene)
        self._application_logic.SetModuleLogic(name, logic)
        self._module_logics.append(logic)

    @property
    def temporaryPath(self) -> str:
        os.makedirs(self._temporary_path, exist_ok=True)
        return self._temporary_path

    def applicationLogic(self):
        return self._application_logic

    def coreIOManager(self):
        return self._io_manager

    def moduleManager(self):
        return _ModuleManager()

    def layoutManager(self):
        return self._layout_manager

    def topLevelWidgets(self) -> list:
        return [self._main_window] if self._main_window is not None else []

    def processEvents(self) -> None:
        qt.process_timers()

    def testingEnabled(self) -> bool:
        return self._testing

    def commandOptions(self):
        return SimpleNamespace(testingEnabled=self._testing)

    def mrmlScene(self):
        return self._scene

    def setOverrideCursor(self, cursor) -> None:
        qt.QApplication.setOverrideCursor(cursor)

    def restoreOverrideCursor(self) -> None:
        qt.QApplication.restoreOverrideCursor()

    def startupEnvironment(self) -> dict:
        return dict(os.environ)

    def environment(self) -> dict:
        return dict(os.environ)
