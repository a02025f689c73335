"""Puts engine results into the MRML scene: new nodes on the input's grid, provenance, display presets,
subject hierarchy placement, the metrics table, the uncertainty map's overlay and the review layouts."""
from __future__ import annotations

import logging
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np
import slicer
import vtk

SEPARATOR = " · "
THREE_PANE_LAYOUT_ID = 7201  # registered once per session; Slicer's own layouts stay below 101
PANES = ("Red", "Yellow", "Green")
DIVERGING_COLOR = "vtkMRMLColorTableNodeFileDivergingBlueRed.txt"
#: The uncertainty map's colour map: Slicer's Inferno (black, purple, orange, yellow), PET-Heat where a Slicer lacks it.
UNCERTAINTY_COLORS = ("Inferno", "PET-Heat")
#: The overlay's lower threshold at first: the most uncertain 5 % of the body show (benchmarks/uncertainty_eval.py).
UNCERTAINTY_SHOWN_PERCENT = 5.0
UNCERTAINTY_OPACITY = 0.7
GEOMETRY_TOLERANCE = 1e-3  # mm and direction cosines: what survives a round trip through a file header

# Node reference roles linking a synthetic volume to what it was made from, so any earlier result can be
# reviewed again and the links survive saving the scene.
INPUT_ROLE = "MedGANTranslateInput"
REFERENCE_ROLE = "MedGANTranslateReference"
DIFFERENCE_ROLE = "MedGANTranslateDifference"
UNCERTAINTY_ROLE = "MedGANTranslateUncertainty"
METRICS_ROLE = "MedGANTranslateMetrics"

PANE_COLORS = {"Red": "#F34A33", "Yellow": "#EDD54C", "Green": "#6EB04B"}
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def output_names(input_name: str, output_label: str, model_id: str, version: str) -> Dict[str, str]:
    return {
        "synthetic": f"{input_name}{SEPARATOR}{output_label} ({model_id} v{version})",
        "difference": f"{input_name}{SEPARATOR}difference",
        "uncertainty": f"{input_name}{SEPARATOR}uncertainty",
        "metrics": f"{input_name}{SEPARATOR}metrics",
    }


def scalar_volumes() -> List:
    """The scene's scalar volumes a model can take, in scene order: exactly vtkMRMLScalarVolumeNode (label maps,
    vector and DWI volumes derive from it, so GetNodesByClass returns them too), and no synthetic result."""
    return [n for n in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
            if n.GetClassName() == "vtkMRMLScalarVolumeNode" and n.GetAttribute("MedGANTranslate.Synthetic") != "true"]


def ijk_to_ras(volume_node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def linear_parent_transform(volume_node):
    """The node's parent transform when it is linear (a registration), else None. A non-linear transform is
    baked into the voxels when the node is exported in world coordinates, on the node's own grid."""
    transform = volume_node.GetParentTransformNode()
    return transform if transform is not None and transform.IsTransformToWorldLinear() else None


def world_ijk_to_ras(volume_node) -> np.ndarray:
    """IJK-to-RAS in world coordinates: the node's own matrix under its linear parent transforms; what a file
    exported with ``exportNode(..., world=True)`` has in its header."""
    matrix = ijk_to_ras(volume_node)
    transform = linear_parent_transform(volume_node)
    if transform is not None:
        to_world = vtk.vtkMatrix4x4()
        transform.GetMatrixTransformToWorld(to_world)
        matrix = slicer.util.arrayFromVTKMatrix(to_world) @ matrix
    return matrix


def image_ijk_to_ras(image) -> np.ndarray:
    """IJK-to-RAS of a SimpleITK image, whose header is in LPS."""
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = direction @ np.diag(image.GetSpacing())
    matrix[:3, 3] = image.GetOrigin()
    return _LPS_TO_RAS @ matrix


def volume_from_file(path: str, grid_node, name: str):
    """A new scalar volume from an engine output, which the engine wrote in world coordinates. When the file
    lies on ``grid_node``'s grid in world coordinates (it should), the node gets that node's exact IJK-to-RAS
    and the same linear parent transform, so the two overlap voxel for voxel and move together."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)
    geometry = image_ijk_to_ras(image)
    same_size = tuple(reversed(array.shape)) == tuple(grid_node.GetImageData().GetDimensions())
    transform = None
    if same_size and np.allclose(geometry, world_ijk_to_ras(grid_node), atol=GEOMETRY_TOLERANCE):
        geometry = ijk_to_ras(grid_node)
        transform = linear_parent_transform(grid_node)
    else:
        logging.warning(f"MedGANTranslate: {path} is not on the grid of '{grid_node.GetName()}'; keeping the file's geometry.")
    node = slicer.util.addVolumeFromArray(array, ijkToRAS=slicer.util.vtkMatrixFromArray(geometry), name=name)
    if transform is not None:
        node.SetAndObserveTransformNodeID(transform.GetID())
    return node


def export_volume(node, path: str) -> bool:
    """Writes ``node`` uncompressed to ``path`` in world coordinates (its parent transforms hardened into the copy
    written). Inside Slicer this is ``slicer.util.exportNode``; where there is no ``slicer.app`` (the web face's
    session, slicer-core without Qt, whose nodes never have transforms) a volume storage node writes it."""
    if hasattr(slicer, "app"):
        return bool(slicer.util.exportNode(node, path, {"useCompression": 0}, world=True))
    if node.GetParentTransformNode() is not None:
        raise RuntimeError(f"'{node.GetName()}' is transformed; only Slicer's exportNode can write it in world coordinates.")
    storage = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    try:
        storage.SetFileName(path)
        storage.SetUseCompression(0)
        return bool(storage.WriteData(node))
    finally:
        slicer.mrmlScene.RemoveNode(storage)


def set_provenance(node, provenance: Dict[str, Any], extra: Optional[Dict[str, str]] = None) -> None:
    """Attributes that travel with the node (and into saved scenes) so a synthetic image is never mistaken
    for an acquired one."""
    values = dict(provenance)
    values["MedGANTranslate.Synthetic"] = "true"
    values.update(extra or {})
    for key, value in values.items():
        node.SetAttribute(key, "" if value is None else str(value))
    model = values.get("MedGANTranslate.ModelId", "")
    version = values.get("MedGANTranslate.ModelVersion", "")
    node.SetDescription(f"Synthetic image made by MedGANTranslate with model {model} v{version}. Research use only, not for clinical decisions.")


def link_results(synthetic, input_node, reference=None, difference=None, table=None, uncertainty=None) -> None:
    for role, node in ((INPUT_ROLE, input_node), (REFERENCE_ROLE, reference), (DIFFERENCE_ROLE, difference),
                       (METRICS_ROLE, table), (UNCERTAINTY_ROLE, uncertainty)):
        if node is not None:
            synthetic.SetNodeReferenceID(role, node.GetID())


def uncertainty_of(synthetic):
    """The uncertainty map made with a synthetic volume, or None."""
    return None if synthetic is None else synthetic.GetNodeReference(UNCERTAINTY_ROLE)


def review_volumes(synthetic) -> List:
    """Input, synthetic and, when present, the difference map (else the reference) of an earlier result."""
    third = synthetic.GetNodeReference(DIFFERENCE_ROLE) or synthetic.GetNodeReference(REFERENCE_ROLE)
    return [synthetic.GetNodeReference(INPUT_ROLE), synthetic, third]


def place_with_input(nodes: Iterable, input_node) -> None:
    """Each node becomes a sibling of the input in the subject hierarchy (under its study when it has one)."""
    sh = slicer.mrmlScene.GetSubjectHierarchyNode()
    input_item = sh.GetItemByDataNode(input_node) if sh is not None else 0
    if not input_item:  # no hierarchy, or the input is not in it (a scene without Slicer's hierarchy plugins)
        return
    parent = sh.GetItemParent(input_item)
    for node in nodes:
        item = sh.GetItemByDataNode(node)
        if item and parent:
            sh.SetItemParent(item, parent)


def color_node_id(colormap: str) -> Optional[str]:
    """Scene ID of a colour table named as in Slicer's Colors module ('PET-Heat', 'Viridis', 'Rainbow'...)."""
    candidates = [
        colormap,
        f"vtkMRMLColorTableNode{colormap}",
        f"vtkMRMLPETProceduralColorNode{colormap}",
        f"vtkMRMLColorTableNodeFile{colormap}.txt",
        f"vtkMRMLProceduralColorNode{colormap}",
    ]
    for candidate in candidates:
        if slicer.mrmlScene.GetNodeByID(candidate) is not None:
            return candidate
    return None


def apply_synthetic_display(node, display: Dict[str, Any]) -> None:
    """Window/level and colour map from the card; auto window/level stays on when the card has none."""
    display_node = node.GetScalarVolumeDisplayNode()
    if display_node is None:
        return
    if display.get("colormap"):
        color_id = color_node_id(display["colormap"])
        if color_id is None:
            logging.warning(f"MedGANTranslate: colour map '{display['colormap']}' is not in this Slicer; keeping grey.")
        else:
            display_node.SetAndObserveColorNodeID(color_id)
    if display.get("window") is not None and display.get("level") is not None:
        display_node.AutoWindowLevelOff()
        display_node.SetWindowLevel(float(display["window"]), float(display["level"]))


def apply_difference_display(node, display: Dict[str, Any]) -> None:
    """A diverging map centred at zero: blue where the synthetic image is lower, red where it is higher."""
    display_node = node.GetScalarVolumeDisplayNode()
    if display_node is None:
        return
    half_width = display.get("difference_window")
    if half_width is None:
        values = np.abs(slicer.util.arrayFromVolume(node))
        half_width = float(np.percentile(values, 99)) if values.size else 1.0
    half_width = max(float(half_width), 1e-6)
    display_node.SetAndObserveColorNodeID(DIVERGING_COLOR)
    display_node.AutoWindowLevelOff()
    display_node.SetWindowLevelMinMax(-half_width, half_width)


def uncertainty_range(node) -> tuple:
    """(largest value shown, lower threshold at first) of an uncertainty map: the 99.5th percentile of its body
    voxels (those above 0), and the value above which the most uncertain :data:`UNCERTAINTY_SHOWN_PERCENT` of
    them lie."""
    values = slicer.util.arrayFromVolume(node)
    body = values[values > 0]
    if body.size == 0:
        return 1.0, 0.0
    top = float(np.percentile(body, 99.5))
    return max(top, 1e-6), float(np.percentile(body, 100.0 - UNCERTAINTY_SHOWN_PERCENT))


def apply_uncertainty_display(node) -> float:
    """A warm colour map from 0 to the map's 99.5th percentile, and a lower threshold (voxels below it are
    transparent, so the overlay shows only the uncertain parts) at the most uncertain 5 % of the body; returns
    that threshold."""
    display_node = node.GetScalarVolumeDisplayNode()
    if display_node is None:
        return 0.0
    color_id = next((found for found in (color_node_id(name) for name in UNCERTAINTY_COLORS) if found), None)
    if color_id is not None:
        display_node.SetAndObserveColorNodeID(color_id)
    top, threshold = uncertainty_range(node)
    display_node.AutoWindowLevelOff()
    display_node.SetWindowLevelMinMax(0.0, top)
    set_uncertainty_threshold(node, threshold)
    return threshold


def set_uncertainty_threshold(node, value: float) -> None:
    """Voxels of the uncertainty map below ``value`` become transparent in the slice views."""
    display_node = None if node is None else node.GetScalarVolumeDisplayNode()
    if display_node is None:
        return
    display_node.SetApplyThreshold(1)
    display_node.SetThreshold(float(value), max(float(value), float(slicer.util.arrayFromVolume(node).max())))


def uncertainty_threshold(node) -> float:
    """The overlay's lower threshold now (0 when none is applied)."""
    display_node = None if node is None else node.GetScalarVolumeDisplayNode()
    if display_node is None or not display_node.GetApplyThreshold():
        return 0.0
    return float(display_node.GetLowerThreshold())


def uncertainty_slider(node) -> tuple:
    """(maximum, value) of the panel's threshold slider for an uncertainty map: its display's upper end (or
    largest value) and its lower threshold now."""
    display_node = node.GetScalarVolumeDisplayNode()
    top = float(display_node.GetWindowLevelMax()) if display_node is not None else 0.0
    if top <= 0:
        top = float(slicer.util.arrayFromVolume(node).max())
    value = uncertainty_threshold(node)
    return max(top, value, 1e-6), value


def overlay_uncertainty(synthetic) -> None:
    """The synthetic volume's uncertainty map over it, thresholded, in every view showing the synthetic volume
    (the side-by-side pane); nothing without a map."""
    uncertainty = uncertainty_of(synthetic)
    if uncertainty is None:
        return
    for composite in slicer.util.getNodesByClass("vtkMRMLSliceCompositeNode"):
        if composite.GetBackgroundVolumeID() == synthetic.GetID():
            composite.SetForegroundVolumeID(uncertainty.GetID())
            composite.SetForegroundOpacity(UNCERTAINTY_OPACITY)


def _flatten(metrics: Dict[str, Any], prefix: str = "") -> List[tuple]:
    rows = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _flatten(value, name + ".")
        else:
            rows.append((name, value))
    return rows


def _format_value(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def metrics_table(metrics: Dict[str, Any], name: str):
    """A two-column table node (Metric, Value) with the engine's metrics."""
    table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", name)
    for title in ("Metric", "Value"):
        column = vtk.vtkStringArray()
        column.SetName(title)
        table.AddColumn(column)
    for key, value in _flatten(metrics):
        row = table.AddEmptyRow()
        table.SetCellText(row, 0, key)
        table.SetCellText(row, 1, _format_value(value))
    table.SetUseColumnTitleAsColumnHeader(True)
    table.SetLocked(True)
    return table


def table_rows(table) -> List[List[str]]:
    """The rows of a table node made by :func:`metrics_table`, as text."""
    return [[table.GetCellText(row, column) for column in range(table.GetNumberOfColumns())]
            for row in range(table.GetNumberOfRows())]


def remove_nodes(nodes: Iterable) -> None:
    """Removes each node with its display and storage nodes (the scene's RemoveNode leaves those behind)."""
    for node in nodes:
        if node is None or node.GetScene() is None:
            continue
        helpers = []
        if node.IsA("vtkMRMLDisplayableNode"):
            helpers += [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
        if node.IsA("vtkMRMLStorableNode"):
            helpers += [node.GetNthStorageNode(i) for i in range(node.GetNumberOfStorageNodes())]
        slicer.mrmlScene.RemoveNode(node)
        for helper in helpers:
            if helper is not None and helper.GetScene() is not None:
                slicer.mrmlScene.RemoveNode(helper)


def pane_view(name: str) -> str:
    """Slicer's layout XML of one axial review pane (``Red``, ``Yellow`` or ``Green``)."""
    return (f'<view class="vtkMRMLSliceNode" singletontag="{name}">'
            f'<property name="orientation" action="default">Axial</property>'
            f'<property name="viewlabel" action="default">{name[0]}</property>'
            f'<property name="viewcolor" action="default">{PANE_COLORS[name]}</property>'
            "</view>")


def pane_layout(count: int = len(PANES)) -> str:
    """The review layout: the first ``count`` panes side by side (Slicer registers it for three; the web face
    builds its views from it)."""
    views = "".join(f"<item>{pane_view(name)}</item>" for name in PANES[:count])
    return f'<layout type="horizontal">{views}</layout>'


def review_panes(volumes: Sequence) -> List[tuple]:
    """(pane, volume) pairs of the side-by-side review: input, synthetic and a third volume, left to right."""
    return list(zip(PANES, [v for v in volumes if v is not None]))


def show_side_by_side(volumes: Sequence) -> bool:
    """Input | synthetic (| third) in linked axial views; False when there is no view layout (no main window)."""
    layout_manager = slicer.app.layoutManager()
    if layout_manager is None:
        return False
    panes = review_panes(volumes)
    if len(panes) > 2:
        layout_node = layout_manager.layoutLogic().GetLayoutNode()
        if not layout_node.IsLayoutDescription(THREE_PANE_LAYOUT_ID):
            layout_node.AddLayoutDescription(THREE_PANE_LAYOUT_ID, pane_layout())
        layout_manager.setLayout(THREE_PANE_LAYOUT_ID)
    else:
        layout_manager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView)
    for pane, volume in panes:
        slice_widget = layout_manager.sliceWidget(pane)
        if slice_widget is None:
            continue
        slice_widget.mrmlSliceNode().SetOrientation("Axial")
        composite = slice_widget.mrmlSliceCompositeNode()
        composite.SetBackgroundVolumeID(volume.GetID())
        composite.SetForegroundVolumeID(None)
        composite.SetLinkedControl(1)
    layout_manager.resetSliceViews()
    return True


def show_overlay(input_node, synthetic_node, opacity: float) -> None:
    """The synthetic image over the input in every slice view."""
    layout_manager = slicer.app.layoutManager()
    if layout_manager is not None:
        layout_manager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpView)
    slicer.util.setSliceViewerLayers(background=input_node, foreground=synthetic_node, foregroundOpacity=opacity, fit=True)


def set_overlay_opacity(synthetic_node, opacity: float) -> None:
    """Changes the opacity only in views where the synthetic image is the foreground."""
    for composite in slicer.util.getNodesByClass("vtkMRMLSliceCompositeNode"):
        if synthetic_node is not None and composite.GetForegroundVolumeID() == synthetic_node.GetID():
            composite.SetForegroundOpacity(opacity)
