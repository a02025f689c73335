"""MRML stand-ins built on real VTK objects (observers, events, matrices, image data are VTK's own).

Method names and parameter names follow slicer_api.json (the real C++ headers); a test checks every
public method here against it. Behaviour copies what the module relies on: geometry lives on the volume
node (IJK-to-RAS = directions x spacing, plus origin) while the image data keeps origin 0 and spacing 1;
``SetWindowLevel`` leaves auto window/level on, and auto window/level recomputes when the image changes;
singleton nodes (slice, composite, colour, layout) survive ``Clear``; data nodes get a subject hierarchy
item under the scene when added, as Slicer's subject hierarchy plugins do.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import OrderedDict
from typing import Dict, List, Optional

import numpy as np
import vtk
from vtk.util import numpy_support


class vtkMRMLNode(vtk.vtkObject):
    TAG = "Node"

    def __init__(self) -> None:
        super().__init__()
        self._id: Optional[str] = None
        self._name = ""
        self._scene: Optional["vtkMRMLScene"] = None
        self._attributes: Dict[str, str] = {}
        self._description = ""
        self._hide = 0
        self._references: Dict[str, str] = {}
        self._disable_modified = 0
        self._pending_modified = False
        self._singleton_tag: Optional[str] = None

    def GetClassName(self) -> str:
        return type(self).__name__

    def IsA(self, name) -> bool:
        return any(cls.__name__ == name for cls in type(self).__mro__)

    def GetNodeTagName(self) -> str:
        return self.TAG

    def GetID(self) -> Optional[str]:
        return self._id

    def GetName(self) -> str:
        return self._name

    def SetName(self, value) -> None:
        if value != self._name:
            self._name = value
            self.Modified()

    def GetDescription(self) -> str:
        return self._description

    def SetDescription(self, value) -> None:
        self._description = value
        self.Modified()

    def GetHideFromEditors(self) -> int:
        return self._hide

    def SetHideFromEditors(self, value) -> None:
        self._hide = int(value)

    def GetScene(self):
        return self._scene

    def SetAttribute(self, name, value) -> None:
        if value is None:
            self._attributes.pop(name, None)
        else:
            self._attributes[name] = str(value)
        self.Modified()

    def GetAttribute(self, name) -> Optional[str]:
        return self._attributes.get(name)

    def StartModify(self) -> int:
        previous = self._disable_modified
        self._disable_modified = 1
        return previous

    def EndModify(self, previousDisableModifiedEventState) -> int:
        self._disable_modified = previousDisableModifiedEventState
        if not self._disable_modified and self._pending_modified:
            self._pending_modified = False
            self.Modified()
        return self._disable_modified

    def Modified(self) -> None:
        if self._disable_modified:
            self._pending_modified = True
            return
        super().Modified()

    def SetNodeReferenceID(self, referenceRole, referencedNodeID) -> None:
        if referencedNodeID is None:
            self._references.pop(referenceRole, None)
        else:
            self._references[referenceRole] = referencedNodeID
        self.Modified()

    def SetAndObserveNodeReferenceID(self, referenceRole, referencedNodeID, events=None, observeContentModifiedEvents=None) -> None:
        self.SetNodeReferenceID(referenceRole, referencedNodeID)

    def GetNodeReferenceID(self, referenceRole) -> Optional[str]:
        return self._references.get(referenceRole)

    def GetNodeReference(self, referenceRole):
        node_id = self._references.get(referenceRole)
        return self._scene.GetNodeByID(node_id) if (self._scene is not None and node_id) else None

    def RemoveNodeReferenceIDs(self, referenceRole) -> None:
        self._references.pop(referenceRole, None)
        self.Modified()


class vtkMRMLStorageNode(vtkMRMLNode):
    TAG = "Storage"

    def __init__(self) -> None:
        super().__init__()
        self.file_name = ""

    def SetFileName(self, fileName) -> None:
        self.file_name = fileName

    def GetFileName(self) -> str:
        return self.file_name


class vtkMRMLVolumeArchetypeStorageNode(vtkMRMLStorageNode):
    TAG = "VolumeArchetypeStorage"


class vtkMRMLStorableNode(vtkMRMLNode):
    def __init__(self) -> None:
        super().__init__()
        self._storage_id: Optional[str] = None

    def GetStorageNode(self):
        return self._scene.GetNodeByID(self._storage_id) if (self._scene and self._storage_id) else None

    def SetAndObserveStorageNodeID(self, storageNodeID) -> None:
        self._storage_id = storageNodeID

    def CreateDefaultStorageNode(self):
        return None

    def AddDefaultStorageNode(self, filename=None) -> bool:
        storage = self.CreateDefaultStorageNode()
        if storage is None or self._scene is None:
            return False
        if filename:
            storage.SetFileName(filename)
        self._scene.AddNode(storage)
        self.SetAndObserveStorageNodeID(storage.GetID())
        return True


class vtkMRMLDisplayableNode(vtkMRMLStorableNode):
    def __init__(self) -> None:
        super().__init__()
        self._display_ids: List[str] = []

    def GetDisplayNode(self):
        return self.GetNthDisplayNode(0)

    def GetNthDisplayNode(self, n):
        if self._scene is None or n >= len(self._display_ids):
            return None
        return self._scene.GetNodeByID(self._display_ids[n])

    def GetNumberOfDisplayNodes(self) -> int:
        return len(self._display_ids)

    def GetDisplayNodeID(self) -> Optional[str]:
        return self._display_ids[0] if self._display_ids else None

    def SetAndObserveDisplayNodeID(self, displayNodeID) -> None:
        self._display_ids = [displayNodeID] if displayNodeID else []
        self._attach_displays()

    def AddAndObserveDisplayNodeID(self, displayNodeID) -> None:
        self._display_ids.append(displayNodeID)
        self._attach_displays()

    def _attach_displays(self) -> None:
        for i in range(len(self._display_ids)):
            display = self.GetNthDisplayNode(i)
            if display is not None:
                display._displayable = self

    def CreateDefaultDisplayNodes(self) -> None:
        pass

    def GetDisplayVisibility(self) -> int:
        display = self.GetDisplayNode()
        return display.GetVisibility() if display else 0

    def SetDisplayVisibility(self, visible) -> None:
        for i in range(self.GetNumberOfDisplayNodes()):
            self.GetNthDisplayNode(i).SetVisibility(visible)


class vtkMRMLVolumeNode(vtkMRMLDisplayableNode):
    TAG = "Volume"
    ImageDataModifiedEvent = 18001

    def __init__(self) -> None:
        super().__init__()
        self._spacing = np.ones(3)
        self._origin = np.zeros(3)
        self._directions = np.eye(3)
        self._image: Optional[vtk.vtkImageData] = None

    def _ijk_to_ras(self) -> np.ndarray:
        matrix = np.eye(4)
        matrix[:3, :3] = self._directions @ np.diag(self._spacing)
        matrix[:3, 3] = self._origin
        return matrix

    def _set_ijk_to_ras(self, matrix: np.ndarray) -> None:
        linear = matrix[:3, :3]
        spacing = np.linalg.norm(linear, axis=0)
        self._spacing = spacing
        self._directions = linear / spacing
        self._origin = matrix[:3, 3].copy()
        self.Modified()

    def GetIJKToRASMatrix(self, mat) -> None:
        _fill_vtk_matrix(mat, self._ijk_to_ras())

    def SetIJKToRASMatrix(self, mat) -> None:
        self._set_ijk_to_ras(_array_from_vtk_matrix(mat))

    def GetRASToIJKMatrix(self, mat) -> None:
        _fill_vtk_matrix(mat, np.linalg.inv(self._ijk_to_ras()))

    def SetRASToIJKMatrix(self, mat) -> None:
        self._set_ijk_to_ras(np.linalg.inv(_array_from_vtk_matrix(mat)))

    def GetIJKToRASDirectionMatrix(self, mat) -> None:
        matrix = np.eye(4)
        matrix[:3, :3] = self._directions
        _fill_vtk_matrix(mat, matrix)

    def SetIJKToRASDirectionMatrix(self, mat) -> None:
        self._directions = _array_from_vtk_matrix(mat)[:3, :3].copy()
        self.Modified()

    def GetIJKToRASDirections(self, dirs) -> None:
        for r in range(3):
            for c in range(3):
                dirs[r][c] = self._directions[r, c]

    def SetIJKToRASDirections(self, dirs) -> None:
        self._directions = np.array(dirs, dtype=float).reshape(3, 3)
        self.Modified()

    def GetSpacing(self) -> tuple:
        return tuple(float(v) for v in self._spacing)

    def SetSpacing(self, arg1, arg2=None, arg3=None) -> None:
        self._spacing = np.array(arg1 if arg2 is None else (arg1, arg2, arg3), dtype=float)
        self.Modified()

    def GetOrigin(self) -> tuple:
        return tuple(float(v) for v in self._origin)

    def SetOrigin(self, arg1, arg2=None, arg3=None) -> None:
        self._origin = np.array(arg1 if arg2 is None else (arg1, arg2, arg3), dtype=float)
        self.Modified()

    def GetMinSpacing(self) -> float:
        return float(self._spacing.min())

    def GetMaxSpacing(self) -> float:
        return float(self._spacing.max())

    def CopyOrientation(self, node) -> None:
        self._spacing = node._spacing.copy()
        self._origin = node._origin.copy()
        self._directions = node._directions.copy()
        self.Modified()

    def GetImageData(self):
        return self._image

    def SetAndObserveImageData(self, ImageData) -> None:
        self._image = ImageData
        self._image_changed()

    def _image_changed(self) -> None:
        for i in range(self.GetNumberOfDisplayNodes()):
            display = self.GetNthDisplayNode(i)
            if hasattr(display, "_image_changed"):
                display._image_changed()
        self.InvokeEvent(self.ImageDataModifiedEvent)
        self.Modified()

    def GetVolumeDisplayNode(self):
        return self.GetDisplayNode()


class vtkMRMLScalarVolumeNode(vtkMRMLVolumeNode):
    def GetScalarVolumeDisplayNode(self):
        display = self.GetDisplayNode()
        return display if isinstance(display, vtkMRMLScalarVolumeDisplayNode) else None

    def CreateDefaultDisplayNodes(self) -> None:
        if self.GetScalarVolumeDisplayNode() is not None or self._scene is None:
            return
        display = self._scene.AddNewNodeByClass("vtkMRMLScalarVolumeDisplayNode")
        display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
        self.SetAndObserveDisplayNodeID(display.GetID())
        display._image_changed()

    def CreateDefaultStorageNode(self):
        return vtkMRMLVolumeArchetypeStorageNode()


class vtkMRMLLabelMapVolumeNode(vtkMRMLScalarVolumeNode):
    pass


class vtkMRMLDisplayNode(vtkMRMLNode):
    TAG = "Display"

    def __init__(self) -> None:
        super().__init__()
        self._color_id: Optional[str] = None
        self._visibility = 1
        self._visibility2d = 1
        self._visibility3d = 1
        self._opacity = 1.0
        self._view_ids: List[str] = []
        self._displayable = None

    def SetAndObserveColorNodeID(self, ColorNodeID) -> None:
        self._color_id = ColorNodeID
        self.Modified()

    def GetColorNodeID(self) -> Optional[str]:
        return self._color_id

    def GetColorNode(self):
        return self._scene.GetNodeByID(self._color_id) if (self._scene and self._color_id) else None

    def GetDisplayableNode(self):
        return self._displayable

    def GetVisibility(self) -> int:
        return self._visibility

    def SetVisibility(self, value) -> None:
        self._visibility = int(value)
        self.Modified()

    def SetVisibility2D(self, value) -> None:
        self._visibility2d = int(value)

    def SetVisibility3D(self, value) -> None:
        self._visibility3d = int(value)

    def GetOpacity(self) -> float:
        return self._opacity

    def SetOpacity(self, value) -> None:
        self._opacity = float(value)
        self.Modified()

    def AddViewNodeID(self, viewNodeID) -> None:
        self._view_ids.append(viewNodeID)

    def RemoveAllViewNodeIDs(self) -> None:
        self._view_ids = []

    def SetDisplayableOnlyInView(self, viewNodeID) -> None:
        self._view_ids = [viewNodeID]


class vtkMRMLVolumeDisplayNode(vtkMRMLDisplayNode):
    TAG = "VolumeDisplay"

    def GetVolumeNode(self):
        return self._displayable

    def SetDefaultColorMap(self) -> None:
        self.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")


class vtkMRMLScalarVolumeDisplayNode(vtkMRMLVolumeDisplayNode):
    """Auto window/level follows the 0.1-99.9 percentile range whenever the image changes, until turned off."""

    def __init__(self) -> None:
        super().__init__()
        self._auto_wl = 1
        self._window = 256.0
        self._level = 128.0
        self._interpolate = 1

    def _image_changed(self) -> None:
        volume = self._displayable
        if not self._auto_wl or volume is None or volume.GetImageData() is None:
            return
        scalars = volume.GetImageData().GetPointData().GetScalars()
        values = numpy_support.vtk_to_numpy(scalars) if scalars is not None else np.zeros(1)
        low, high = np.percentile(values, [0.1, 99.9]) if values.size else (0.0, 0.0)
        self._window, self._level = float(high - low), float((high + low) / 2)
        self.Modified()

    def GetAutoWindowLevel(self) -> int:
        return self._auto_wl

    def SetAutoWindowLevel(self, value) -> None:
        self._auto_wl = int(value)
        self._image_changed()

    def AutoWindowLevelOn(self) -> None:
        self.SetAutoWindowLevel(1)

    def AutoWindowLevelOff(self) -> None:
        self.SetAutoWindowLevel(0)

    def GetWindow(self) -> float:
        return self._window

    def SetWindow(self, double) -> None:
        self._window = float(double)
        self.Modified()

    def GetLevel(self) -> float:
        return self._level

    def SetLevel(self, double) -> None:
        self._level = float(double)
        self.Modified()

    def SetWindowLevel(self, window, level) -> None:
        self._window, self._level = float(window), float(level)
        self.Modified()

    def SetWindowLevelMinMax(self, min, max) -> None:
        self.SetWindowLevel(max - min, (max + min) / 2.0)

    def GetWindowLevelMin(self) -> float:
        return self._level - self._window / 2.0

    def GetWindowLevelMax(self) -> float:
        return self._level + self._window / 2.0

    def GetInterpolate(self) -> int:
        return self._interpolate

    def SetInterpolate(self, value) -> None:
        self._interpolate = int(value)

    def InterpolateOn(self) -> None:
        self._interpolate = 1

    def InterpolateOff(self) -> None:
        self._interpolate = 0


class vtkMRMLColorNode(vtkMRMLNode):
    TAG = "Color"


class vtkMRMLColorTableNode(vtkMRMLColorNode):
    TAG = "ColorTable"


class vtkMRMLProceduralColorNode(vtkMRMLColorNode):
    TAG = "ProceduralColor"


class vtkMRMLPETProceduralColorNode(vtkMRMLProceduralColorNode):
    TAG = "PETProceduralColor"


# A subset of Slicer's default colour nodes (vtkMRMLColorLogic::AddDefaultColorNodes).
DEFAULT_COLOR_NODES = (
    ("vtkMRMLColorTableNodeGrey", vtkMRMLColorTableNode, "Grey"),
    ("vtkMRMLColorTableNodeInvertedGrey", vtkMRMLColorTableNode, "InvertedGrey"),
    ("vtkMRMLColorTableNodeRainbow", vtkMRMLColorTableNode, "Rainbow"),
    ("vtkMRMLColorTableNodeIron", vtkMRMLColorTableNode, "Iron"),
    ("vtkMRMLPETProceduralColorNodePET-Heat", vtkMRMLPETProceduralColorNode, "PET-Heat"),
    ("vtkMRMLPETProceduralColorNodePET-Rainbow", vtkMRMLPETProceduralColorNode, "PET-Rainbow"),
    ("vtkMRMLProceduralColorNodeRedGreenBlue", vtkMRMLProceduralColorNode, "RedGreenBlue"),
    ("vtkMRMLColorTableNodeFileDivergingBlueRed.txt", vtkMRMLColorTableNode, "DivergingBlueRed"),
    ("vtkMRMLColorTableNodeFileColdToHotRainbow.txt", vtkMRMLColorTableNode, "ColdToHotRainbow"),
    ("vtkMRMLColorTableNodeFileHotToColdRainbow.txt", vtkMRMLColorTableNode, "HotToColdRainbow"),
    ("vtkMRMLColorTableNodeFileViridis.txt", vtkMRMLColorTableNode, "Viridis"),
    ("vtkMRMLColorTableNodeFileMagma.txt", vtkMRMLColorTableNode, "Magma"),
    ("vtkMRMLColorTableNodeFileInferno.txt", vtkMRMLColorTableNode, "Inferno"),
    ("vtkMRMLColorTableNodeFilePlasma.txt", vtkMRMLColorTableNode, "Plasma"),
    ("vtkMRMLColorTableNodeFileCividis.txt", vtkMRMLColorTableNode, "Cividis"),
)


class vtkMRMLTableNode(vtkMRMLStorableNode):
    """Wraps a real vtkTable; ``AddColumn()`` without a column adds a string column padded to the rows."""

    TAG = "Table"

    def __init__(self) -> None:
        super().__init__()
        self._table = vtk.vtkTable()
        self._locked = 0
        self._use_column_name = 1
        self._first_column_header = 0
        self._column_properties: Dict[str, Dict[str, str]] = {}

    def GetTable(self):
        return self._table

    def SetAndObserveTable(self, table) -> None:
        self._table = table
        self.Modified()

    def AddColumn(self, column=None):
        if column is None:
            column = vtk.vtkStringArray()
        column.SetNumberOfTuples(self._table.GetNumberOfRows())
        self._table.AddColumn(column)
        self.Modified()
        return column

    def RemoveColumn(self, columnIndex) -> bool:
        self._table.RemoveColumn(columnIndex)
        self.Modified()
        return True

    def RemoveAllColumns(self) -> None:
        while self._table.GetNumberOfColumns():
            self._table.RemoveColumn(0)
        self.Modified()

    def RenameColumn(self, columnIndex, newName) -> bool:
        self._table.GetColumn(columnIndex).SetName(newName)
        return True

    def AddEmptyRow(self) -> int:
        row = self._table.GetNumberOfRows()
        for c in range(self._table.GetNumberOfColumns()):
            column = self._table.GetColumn(c)
            column.SetNumberOfTuples(row + 1)
            if isinstance(column, vtk.vtkStringArray):
                column.SetValue(row, "")
            else:
                column.SetTuple1(row, 0)
        self._table.Modified()
        self.Modified()
        return row

    def RemoveRow(self, rowIndex) -> None:
        self._table.RemoveRow(rowIndex)

    def GetCellText(self, rowIndex, columnIndex) -> str:
        return self._table.GetValue(rowIndex, columnIndex).ToString()

    def SetCellText(self, rowIndex, columnIndex, text) -> bool:
        if rowIndex >= self._table.GetNumberOfRows() or columnIndex >= self._table.GetNumberOfColumns():
            return False
        column = self._table.GetColumn(columnIndex)
        if isinstance(column, vtk.vtkStringArray):
            column.SetValue(rowIndex, text)
        else:
            column.SetTuple1(rowIndex, float(text))
        self.Modified()
        return True

    def GetColumnIndex(self, columnName) -> int:
        for c in range(self._table.GetNumberOfColumns()):
            if self._table.GetColumnName(c) == columnName:
                return c
        return -1

    def GetColumnName(self, columnIndex) -> str:
        return self._table.GetColumnName(columnIndex)

    def GetNumberOfRows(self) -> int:
        return self._table.GetNumberOfRows()

    def GetNumberOfColumns(self) -> int:
        return self._table.GetNumberOfColumns()

    def SetColumnUnitLabel(self, columnName, unitLabel) -> None:
        self._column_properties.setdefault(columnName, {})["unitLabel"] = unitLabel

    def SetColumnDescription(self, columnName, description) -> None:
        self._column_properties.setdefault(columnName, {})["description"] = description

    def SetColumnTitle(self, columnName, description) -> None:
        self._column_properties.setdefault(columnName, {})["title"] = description

    def GetUseColumnNameAsColumnHeader(self) -> int:
        return self._use_column_name

    def SetUseColumnNameAsColumnHeader(self, useColumnTitle) -> None:
        self._use_column_name = int(useColumnTitle)

    def GetUseFirstColumnAsRowHeader(self) -> int:
        return self._first_column_header

    def SetUseFirstColumnAsRowHeader(self, value) -> None:
        self._first_column_header = int(value)

    def GetLocked(self) -> int:
        return self._locked

    def SetLocked(self, value) -> None:
        self._locked = int(value)


class vtkMRMLScriptedModuleNode(vtkMRMLNode):
    TAG = "ScriptedModule"

    def __init__(self) -> None:
        super().__init__()
        self._parameters: "OrderedDict[str, str]" = OrderedDict()
        self._module_name = ""

    def SetParameter(self, name, value) -> None:
        if self._parameters.get(name) != value:
            self._parameters[name] = value
            self.Modified()

    def GetParameter(self, name) -> str:
        return self._parameters.get(name, "")

    def HasParameter(self, name) -> bool:
        return name in self._parameters

    def UnsetParameter(self, name) -> None:
        self._parameters.pop(name, None)
        self.Modified()

    def UnsetAllParameters(self) -> None:
        self._parameters.clear()
        self.Modified()

    def GetParameterNames(self) -> List[str]:
        return list(self._parameters)

    def GetParameterCount(self) -> int:
        return len(self._parameters)

    def GetModuleName(self) -> str:
        return self._module_name

    def SetModuleName(self, value) -> None:
        self._module_name = value


class vtkMRMLAbstractViewNode(vtkMRMLNode):
    def __init__(self) -> None:
        super().__init__()
        self._view_group = 0
        self._layout_label = ""

    def GetLayoutName(self) -> Optional[str]:
        return self._singleton_tag

    def GetLayoutLabel(self) -> str:
        return self._layout_label

    def SetLayoutLabel(self, value) -> None:
        self._layout_label = value

    def GetViewGroup(self) -> int:
        return self._view_group

    def SetViewGroup(self, value) -> None:
        self._view_group = int(value)


class vtkMRMLSliceNode(vtkMRMLAbstractViewNode):
    TAG = "Slice"

    def __init__(self) -> None:
        super().__init__()
        self._orientation = "Axial"
        self._fov = (250.0, 250.0, 1.0)

    def SetOrientation(self, orientation) -> bool:
        if orientation not in ("Axial", "Sagittal", "Coronal"):
            return False
        self._orientation = orientation
        self.Modified()
        return True

    def GetOrientation(self) -> str:
        return self._orientation

    def SetOrientationToAxial(self) -> None:
        self.SetOrientation("Axial")

    def SetOrientationToSagittal(self) -> None:
        self.SetOrientation("Sagittal")

    def SetOrientationToCoronal(self) -> None:
        self.SetOrientation("Coronal")

    def SetFieldOfView(self, x, y, z) -> None:
        self._fov = (x, y, z)

    def RotateToVolumePlane(self, volumeNode, forceSlicePlaneToSingleSlice=True) -> bool:
        return volumeNode is not None


class vtkMRMLSliceCompositeNode(vtkMRMLNode):
    TAG = "SliceComposite"

    def __init__(self) -> None:
        super().__init__()
        self._background: Optional[str] = None
        self._foreground: Optional[str] = None
        self._label: Optional[str] = None
        self._foreground_opacity = 0.0
        self._label_opacity = 1.0
        self._linked = 0
        self._hot_linked = 0
        self._compositing = 0
        self._propagate = True

    def GetBackgroundVolumeID(self) -> Optional[str]:
        return self._background

    def SetBackgroundVolumeID(self, id) -> None:
        self._background = id
        self.Modified()

    def GetForegroundVolumeID(self) -> Optional[str]:
        return self._foreground

    def SetForegroundVolumeID(self, id) -> None:
        self._foreground = id
        self.Modified()

    def GetLabelVolumeID(self) -> Optional[str]:
        return self._label

    def SetLabelVolumeID(self, id) -> None:
        self._label = id
        self.Modified()

    def GetForegroundOpacity(self) -> float:
        return self._foreground_opacity

    def SetForegroundOpacity(self, value) -> None:
        self._foreground_opacity = float(value)
        self.Modified()

    def GetLabelOpacity(self) -> float:
        return self._label_opacity

    def SetLabelOpacity(self, value) -> None:
        self._label_opacity = float(value)

    def GetLinkedControl(self) -> int:
        return self._linked

    def SetLinkedControl(self, value) -> None:
        self._linked = int(value)
        self.Modified()

    def LinkedControlOn(self) -> None:
        self.SetLinkedControl(1)

    def LinkedControlOff(self) -> None:
        self.SetLinkedControl(0)

    def GetHotLinkedControl(self) -> int:
        return self._hot_linked

    def SetHotLinkedControl(self, value) -> None:
        self._hot_linked = int(value)

    def GetCompositing(self) -> int:
        return self._compositing

    def SetCompositing(self, value) -> None:
        self._compositing = int(value)

    def GetDoPropagateVolumeSelection(self) -> bool:
        return self._propagate

    def SetDoPropagateVolumeSelection(self, value) -> None:
        self._propagate = bool(value)

    def GetLayoutName(self) -> Optional[str]:
        return self._singleton_tag


class vtkMRMLLayoutNode(vtkMRMLAbstractViewNode):
    """Layout constants are the real ``SlicerLayout`` enum values (17 exists only before Slicer 5.10)."""

    TAG = "Layout"
    SlicerLayoutInitialView = 0
    SlicerLayoutDefaultView = 1
    SlicerLayoutConventionalView = 2
    SlicerLayoutFourUpView = 3
    SlicerLayoutOneUp3DView = 4
    SlicerLayoutOneUpRedSliceView = 6
    SlicerLayoutOneUpYellowSliceView = 7
    SlicerLayoutOneUpGreenSliceView = 8
    SlicerLayoutTabbed3DView = 9
    SlicerLayoutTabbedSliceView = 10
    SlicerLayoutCompareView = 12
    SlicerLayoutNone = 14
    SlicerLayoutDual3DView = 15
    SlicerLayoutConventionalWidescreenView = 16
    SlicerLayoutTriple3DEndoscopyView = 19
    SlicerLayoutThreeOverThreeView = 21
    SlicerLayoutFourOverFourView = 22
    SlicerLayoutCompareGridView = 23
    SlicerLayoutTwoOverTwoView = 27
    SlicerLayoutSideBySideView = 29
    SlicerLayoutFourByThreeSliceView = 30
    SlicerLayoutFourByTwoSliceView = 31
    SlicerLayoutFiveByTwoSliceView = 32
    SlicerLayoutThreeByThreeSliceView = 33
    SlicerLayoutFourUpTableView = 34
    SlicerLayout3DTableView = 35
    SlicerLayoutMaximizedView = 98
    SlicerLayoutCustomView = 99
    SlicerLayoutUserView = 100

    # Slice views of the built-in layouts (vtkMRMLLayoutLogic.cxx); 3D, table and plot views are left out.
    BUILT_IN_SLICE_VIEWS = {
        0: ("Red", "Green", "Yellow"), 1: ("Red", "Green", "Yellow"), 2: ("Red", "Green", "Yellow"),
        3: ("Red", "Green", "Yellow"), 4: (), 6: ("Red",), 7: ("Yellow",), 8: ("Green",),
        27: ("Red", "Slice4", "Green", "Yellow"), 29: ("Red", "Yellow"), 34: ("Red", "Green", "Yellow"),
    }

    def __init__(self) -> None:
        super().__init__()
        self._arrangement = 3
        self._descriptions: Dict[int, str] = {}
        self._compare_rows = 1
        self._compare_columns = 1

    def AddLayoutDescription(self, layout, layoutDescription) -> bool:
        if self.IsLayoutDescription(layout):
            return False
        ET.fromstring(layoutDescription)  # Slicer rejects malformed XML too
        self._descriptions[int(layout)] = layoutDescription
        return True

    def SetLayoutDescription(self, layout, layoutDescription) -> bool:
        if not self.IsLayoutDescription(layout):
            return False
        self._descriptions[int(layout)] = layoutDescription
        return True

    def GetLayoutDescription(self, layout) -> str:
        return self._descriptions.get(int(layout), "")

    def IsLayoutDescription(self, layout) -> bool:
        return int(layout) in self._descriptions or int(layout) in self.BUILT_IN_SLICE_VIEWS

    def GetViewArrangement(self) -> int:
        return self._arrangement

    def SetViewArrangement(self, int) -> None:
        self._arrangement = int
        self.Modified()

    def GetNumberOfCompareViewRows(self) -> int:
        return self._compare_rows

    def SetNumberOfCompareViewRows(self, value) -> None:
        self._compare_rows = value

    def GetNumberOfCompareViewColumns(self) -> int:
        return self._compare_columns

    def SetNumberOfCompareViewColumns(self, value) -> None:
        self._compare_columns = value

    def _slice_views(self, layout: int) -> List[str]:
        if int(layout) in self._descriptions:
            root = ET.fromstring(self._descriptions[int(layout)])
            return [v.get("singletontag") for v in root.iter("view") if v.get("class") == "vtkMRMLSliceNode"]
        return list(self.BUILT_IN_SLICE_VIEWS.get(int(layout), ("Red", "Green", "Yellow")))


class vtkMRMLSubjectHierarchyNode(vtkMRMLNode):
    """Items are integers; 0 is invalid and the scene item is created with the node."""

    TAG = "SubjectHierarchy"
    INVALID_ITEM_ID = 0

    def __init__(self) -> None:
        super().__init__()
        self._items: Dict[int, Dict] = {}
        self._next = 1
        self._scene_item = self._new_item(0, "Scene", None, "")

    def _new_item(self, parent: int, name: str, node_id: Optional[str], level: str) -> int:
        item = self._next
        self._next += 1
        self._items[item] = {"parent": parent, "name": name, "node": node_id, "level": level, "attributes": {}, "expanded": True}
        return item

    @staticmethod
    def GetSubjectHierarchyNode(scene):
        return scene.GetSubjectHierarchyNode()

    def GetSceneItemID(self) -> int:
        return self._scene_item

    def GetInvalidItemID(self) -> int:
        return self.INVALID_ITEM_ID

    def GetItemByDataNode(self, dataNode) -> int:
        if dataNode is None:
            return 0
        return next((i for i, item in self._items.items() if item["node"] == dataNode.GetID()), 0)

    def GetItemDataNode(self, itemID):
        node_id = self._items.get(itemID, {}).get("node")
        return self._scene.GetNodeByID(node_id) if node_id else None

    def CreateFolderItem(self, parentItemID, name) -> int:
        return self._new_item(parentItemID, name, None, "Folder")

    def CreateSubjectItem(self, parentItemID, name) -> int:
        return self._new_item(parentItemID, name, None, "Patient")

    def CreateStudyItem(self, parentItemID, name) -> int:
        return self._new_item(parentItemID, name, None, "Study")

    def SetItemParent(self, itemID, parentItemID, enableCircularCheck=True) -> None:
        if itemID not in self._items or parentItemID not in self._items:
            return
        if enableCircularCheck and (itemID == parentItemID or itemID in self._ancestors(parentItemID)):
            return
        self._items[itemID]["parent"] = parentItemID
        self.Modified()

    def _ancestors(self, itemID: int) -> List[int]:
        chain = []
        while itemID in self._items and self._items[itemID]["parent"]:
            itemID = self._items[itemID]["parent"]
            chain.append(itemID)
        return chain

    def GetItemParent(self, itemID) -> int:
        return self._items.get(itemID, {}).get("parent", 0)

    def GetItemChildren(self, itemID, childIDs, recursive=False) -> None:
        childIDs.Reset()
        for child in self._children(itemID, recursive):
            childIDs.InsertNextId(child)

    def _children(self, itemID: int, recursive: bool) -> List[int]:
        out = []
        for child, item in self._items.items():
            if item["parent"] == itemID and child != itemID:
                out.append(child)
                if recursive:
                    out += self._children(child, True)
        return out

    def GetItemName(self, itemID) -> str:
        return self._items.get(itemID, {}).get("name", "")

    def SetItemName(self, itemID, name) -> None:
        self._items[itemID]["name"] = name

    def GetItemAttribute(self, itemID, attributeName) -> str:
        return self._items.get(itemID, {}).get("attributes", {}).get(attributeName, "")

    def SetItemAttribute(self, itemID, attributeName, attributeValue) -> None:
        self._items[itemID]["attributes"][attributeName] = attributeValue

    def SetItemExpanded(self, itemID, expanded) -> None:
        self._items[itemID]["expanded"] = bool(expanded)

    def GetItemByName(self, name) -> int:
        return next((i for i, item in self._items.items() if item["name"] == name), 0)

    def GetItemChildWithName(self, parentItemID, name, recursive=False) -> int:
        return next((c for c in self._children(parentItemID, recursive) if self._items[c]["name"] == name), 0)

    def RemoveItem(self, itemID, removeDataNode=True, recursive=True) -> bool:
        if itemID not in self._items or itemID == self._scene_item:
            return False
        for child in self._children(itemID, False):
            if recursive:
                self.RemoveItem(child, removeDataNode, True)
            else:
                self._items[child]["parent"] = self._items[itemID]["parent"]
        node = self.GetItemDataNode(itemID)
        del self._items[itemID]
        if removeDataNode and node is not None:
            self._scene.RemoveNode(node)
        return True

    def _item_for_new_node(self, node) -> None:
        if self.GetItemByDataNode(node) == 0:
            self._new_item(self._scene_item, node.GetName(), node.GetID(), "")

    def _forget_node(self, node) -> None:
        for item in [i for i, it in self._items.items() if it["node"] == node.GetID()]:
            del self._items[item]


class vtkMRMLScene(vtk.vtkObject):
    NodeAboutToBeAddedEvent = 0x2000
    NodeAddedEvent = 0x2001
    NodeAboutToBeRemovedEvent = 0x2002
    NodeRemovedEvent = 0x2003
    NewSceneEvent = 66030
    StartBatchProcessEvent = 66032
    EndBatchProcessEvent = 66033
    StartCloseEvent = 66034
    EndCloseEvent = 66035
    StartImportEvent = 66036
    EndImportEvent = 66037
    StartRestoreEvent = 66038
    EndRestoreEvent = 66039
    StartSaveEvent = 66040
    EndSaveEvent = 66041

    def __init__(self) -> None:
        super().__init__()
        self._nodes: "OrderedDict[str, vtkMRMLNode]" = OrderedDict()
        self._id_counters: Dict[str, int] = {}
        self._unique_names: Dict[str, int] = {}
        self._closing = False
        self._sh: Optional[vtkMRMLSubjectHierarchyNode] = None
        self._add_defaults()

    def _add_defaults(self) -> None:
        for node_id, cls, name in DEFAULT_COLOR_NODES:
            node = cls()
            node.SetName(name)
            node._singleton_tag = node_id
            self._insert(node, node_id)
        layout = vtkMRMLLayoutNode()
        layout._singleton_tag = "vtkMRMLLayoutNode"
        self._insert(layout, "vtkMRMLLayoutNodevtkMRMLLayoutNode")
        self._sh = vtkMRMLSubjectHierarchyNode()
        self._sh._singleton_tag = "SubjectHierarchy"
        self._insert(self._sh, "vtkMRMLSubjectHierarchyNodeSubjectHierarchy")

    def _insert(self, node: vtkMRMLNode, node_id: str) -> None:
        node._id = node_id
        node._scene = self
        self._nodes[node_id] = node

    def GetClassName(self) -> str:
        return "vtkMRMLScene"

    def CreateNodeByClass(self, className):
        from . import _node_classes

        cls = _node_classes().get(className)
        return cls() if cls is not None else None

    def AddNode(self, nodeToAdd):
        node = nodeToAdd
        if node.GetID() in self._nodes:
            return node
        self.InvokeEvent(self.NodeAboutToBeAddedEvent)
        if node._singleton_tag:
            node_id = node.GetClassName() + node._singleton_tag
        else:
            count = self._id_counters.get(node.GetClassName(), 0) + 1
            while f"{node.GetClassName()}{count}" in self._nodes:
                count += 1
            self._id_counters[node.GetClassName()] = count
            node_id = f"{node.GetClassName()}{count}"
        if not node.GetName():
            node._name = self.GenerateUniqueName(node.GetNodeTagName())
        self._insert(node, node_id)
        if isinstance(node, (vtkMRMLDisplayableNode, vtkMRMLTableNode)) and not isinstance(node, vtkMRMLStorageNode):
            self._sh._item_for_new_node(node)
        self.InvokeEvent(self.NodeAddedEvent, node)
        return node

    def AddNewNodeByClass(self, className, nodeBaseName=""):
        node = self.CreateNodeByClass(className)
        if node is None:
            return None
        if nodeBaseName:
            node.SetName(self.GenerateUniqueName(nodeBaseName))
        return self.AddNode(node)

    def RemoveNode(self, n) -> None:
        if n is None or n.GetID() not in self._nodes:
            return
        self.InvokeEvent(self.NodeAboutToBeRemovedEvent, n)
        del self._nodes[n.GetID()]
        self._sh._forget_node(n)
        if isinstance(n, vtkMRMLDisplayableNode):
            for i in range(n.GetNumberOfDisplayNodes()):
                display_id = n._display_ids[i]
                if display_id in self._nodes:
                    del self._nodes[display_id]
            if n._storage_id in self._nodes:
                del self._nodes[n._storage_id]
        n._scene = None
        self.InvokeEvent(self.NodeRemovedEvent, n)

    def InvokeEvent(self, event, callData=None):
        """Scene events carry the node as call data in Slicer; observers here get (caller, event)."""
        return super().InvokeEvent(event)

    def GetNodeByID(self, name):
        return self._nodes.get(name) if name else None

    def GetFirstNodeByClass(self, className):
        return next((n for n in self._nodes.values() if n.IsA(className)), None)

    def GetFirstNodeByName(self, name):
        return next((n for n in self._nodes.values() if n.GetName() == name), None)

    def GetFirstNode(self, byName=None, byClass=None, byHideFromEditors=None, exactNameMatch=True):
        for node in self._nodes.values():
            if byClass and not node.IsA(byClass):
                continue
            if byName and (node.GetName() != byName if exactNameMatch else byName not in node.GetName()):
                continue
            if byHideFromEditors is not None and node.GetHideFromEditors() != byHideFromEditors:
                continue
            return node
        return None

    def GetNodesByClass(self, className, nodes=None):
        collection = vtk.vtkCollection()
        for node in self._nodes.values():
            if node.IsA(className):
                collection.AddItem(node)
        return collection

    def GetNumberOfNodesByClass(self, className) -> int:
        return sum(1 for n in self._nodes.values() if n.IsA(className))

    def GetNthNodeByClass(self, n, className):
        matches = [node for node in self._nodes.values() if node.IsA(className)]
        return matches[n] if 0 <= n < len(matches) else None

    def GetSingletonNode(self, singletonTag, className):
        return next((n for n in self._nodes.values() if n._singleton_tag == singletonTag and n.IsA(className)), None)

    def GenerateUniqueName(self, baseName) -> str:
        index = self._unique_names.get(baseName, -1) + 1
        while self.GetFirstNodeByName(baseName if index == 0 else f"{baseName}_{index}") is not None:
            index += 1
        self._unique_names[baseName] = index
        return baseName if index == 0 else f"{baseName}_{index}"

    def GetSubjectHierarchyNode(self):
        return self._sh

    def Clear(self, removeSingletons=0) -> None:
        self._closing = True
        self.InvokeEvent(self.StartCloseEvent)
        for node in list(self._nodes.values()):
            if removeSingletons or not node._singleton_tag:
                self.RemoveNode(node)
        self._sh._items = {k: v for k, v in self._sh._items.items() if k == self._sh._scene_item}
        self._unique_names.clear()
        self._closing = False
        self.InvokeEvent(self.EndCloseEvent)

    def IsClosing(self) -> bool:
        return self._closing

    def IsImporting(self) -> bool:
        return False

    def IsBatchProcessing(self) -> bool:
        return False

    def StartState(self, state, anticipatedMaxProgress=0) -> None:
        pass

    def EndState(self, state) -> None:
        pass

    def _all_nodes(self) -> List[vtkMRMLNode]:
        return list(self._nodes.values())


def _array_from_vtk_matrix(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _fill_vtk_matrix(matrix, array: np.ndarray) -> None:
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
