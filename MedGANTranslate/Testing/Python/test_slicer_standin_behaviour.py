"""The stand-in behaves like Slicer on the points the module's tests rely on (slicer-api.md §0 and §9)."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from .slicer_test_support import head_array, oblique_ijk_to_ras


def test_array_is_a_k_j_i_view_and_geometry_stays_on_the_node(slicer_standin):
    slicer = slicer_standin
    values = head_array()
    node = slicer.util.addVolumeFromArray(values, ijkToRAS=oblique_ijk_to_ras(), name="v")
    image = node.GetImageData()
    assert tuple(reversed(image.GetDimensions())) == values.shape
    assert image.GetOrigin() == (0, 0, 0) and image.GetSpacing() == (1, 1, 1)
    view = slicer.util.arrayFromVolume(node)
    view[0, 0, 0] = 12345
    assert slicer.util.arrayFromVolume(node)[0, 0, 0] == 12345


def test_files_are_written_and_read_in_lps_like_slicer(slicer_standin, tmp_path):
    """A voxel's RAS position (IJK-to-RAS · ijk) is its LPS position in the file with x and y negated."""
    slicer = slicer_standin
    matrix = oblique_ijk_to_ras()
    node = slicer.util.addVolumeFromArray(head_array(), ijkToRAS=matrix, name="v")
    path = str(tmp_path / "v.nrrd")
    assert slicer.util.exportNode(node, path)
    image = sitk.ReadImage(path)
    ijk = (3, 5, 7)
    ras = matrix @ np.array([*ijk, 1.0])
    lps = np.array(image.TransformIndexToPhysicalPoint(ijk))
    np.testing.assert_allclose(lps, ras[:3] * [-1, -1, 1], atol=1e-9)
    loaded = slicer.util.loadVolume(path)
    np.testing.assert_allclose(slicer.util.arrayFromVTKMatrix(_matrix(loaded)), matrix, atol=1e-9)
    assert loaded.GetStorageNode() is not None  # loadVolume keeps a storage node, as in Slicer


def _matrix(node):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return matrix


def test_set_window_level_does_not_turn_auto_off(slicer_standin):
    slicer = slicer_standin
    node = slicer.util.addVolumeFromArray(head_array(), name="v")
    display = node.GetScalarVolumeDisplayNode()
    display.SetWindowLevel(400, 40)
    assert display.GetAutoWindowLevel() == 1
    slicer.util.updateVolumeFromArray(node, head_array(1) * 3)
    assert (display.GetWindow(), display.GetLevel()) != (400, 40)  # auto window/level took over again
    display.AutoWindowLevelOff()
    display.SetWindowLevel(400, 40)
    slicer.util.updateVolumeFromArray(node, head_array(2))
    assert (display.GetWindow(), display.GetLevel()) == (400, 40)


def test_unique_names_and_scene_events(slicer_standin):
    slicer = slicer_standin
    first = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "MR")
    second = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "MR")
    assert (first.GetName(), second.GetName()) == ("MR", "MR")  # the scene does not make names unique
    assert slicer.mrmlScene.GenerateUniqueName("MR") == "MR_1"
    events = []
    slicer.mrmlScene.AddObserver(slicer.mrmlScene.StartCloseEvent, lambda caller, event: events.append("start"))
    slicer.mrmlScene.Clear()
    assert events == ["start"] and slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode") == []
    assert slicer.mrmlScene.GetNodeByID("vtkMRMLColorTableNodeGrey") is not None  # singletons survive


def test_dialogs_and_errors_follow_testing_mode(slicer_standin):
    slicer = slicer_standin
    slicer._standin.state.confirm_answer = False
    assert slicer.util.confirmOkCancelDisplay("go?") is False
    with pytest.raises(ValueError):
        with slicer.util.tryWithErrorDisplay("It failed."):
            raise ValueError("bad")
    (shown,) = slicer._standin.dialogs("error")
    assert shown["text"] == "It failed.\n\nbad" and "Traceback" in shown["detailedText"]


@pytest.mark.standin(testing=True, main_window=False)
def test_testing_mode_without_main_window(slicer_standin):
    slicer = slicer_standin
    slicer._standin.state.confirm_answer = False
    # Slicer's util returns True from _messageDisplay in testing mode, then compares it with QMessageBox.Ok
    # (1024): so a confirmation is *declined* in testing mode, whatever its docstring says
    assert slicer.util.confirmOkCancelDisplay("go?") is False and slicer.util.confirmRetryCloseDisplay("retry?") is False
    assert slicer._standin.dialogs() == []
    with pytest.raises(ValueError):
        with slicer.util.tryWithErrorDisplay("It failed."):
            raise ValueError("bad")
    assert slicer._standin.dialogs("error") == []  # tryWithErrorDisplay only re-raises in testing mode
    assert slicer.util.mainWindow() is None and slicer.app.layoutManager() is None
    with pytest.raises(RuntimeError):
        slicer.util.selectModule("Data")


def test_set_slice_viewer_layers_changes_every_view(slicer_standin):
    slicer = slicer_standin
    a = slicer.util.addVolumeFromArray(head_array(), name="a")
    b = slicer.util.addVolumeFromArray(head_array(1), name="b")
    slicer.util.setSliceViewerLayers(background=a, foreground=b, foregroundOpacity=0.4)
    composites = slicer.util.getNodesByClass("vtkMRMLSliceCompositeNode")
    assert len(composites) == 3
    assert all((c.GetBackgroundVolumeID(), c.GetForegroundVolumeID(), c.GetForegroundOpacity()) == (a.GetID(), b.GetID(), 0.4)
               for c in composites)


def test_qt_timer_fires_only_when_events_are_processed(slicer_standin):
    import qt

    fired = []
    timer = qt.QTimer()
    timer.setInterval(0)
    timer.connect("timeout()", lambda: fired.append(1))
    timer.start()
    assert fired == []
    slicer_standin.app.processEvents()
    assert fired == [1]
    timer.stop()
    slicer_standin.app.processEvents()
    assert fired == [1]
