"""How results enter the scene, piece by piece (no engine run): grid check, colour maps, difference window,
metrics table, all-or-nothing import, views without a main window."""
from __future__ import annotations

import numpy as np
import pytest

from .slicer_test_support import head_array, oblique_ijk_to_ras, scene_nodes


@pytest.fixture
def scene_module(slicer_standin, module):
    from MedGANTranslateSlicer import scene

    return scene


def test_output_on_the_input_grid_gets_the_inputs_exact_geometry(slicer_standin, scene_module, tmp_path):
    slicer = slicer_standin
    matrix = oblique_ijk_to_ras()
    source = slicer.util.addVolumeFromArray(head_array(), ijkToRAS=matrix, name="MR")
    path = str(tmp_path / "out.nrrd")
    assert slicer.util.exportNode(source, path)
    node = scene_module.volume_from_file(path, source, "copy")
    np.testing.assert_array_equal(scene_module.ijk_to_ras(node), matrix)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), slicer.util.arrayFromVolume(source))


def test_output_on_another_grid_keeps_its_own_geometry(slicer_standin, scene_module, tmp_path, caplog):
    slicer = slicer_standin
    shifted = oblique_ijk_to_ras()
    shifted[:3, 3] += 5.0
    other = slicer.util.addVolumeFromArray(head_array(), ijkToRAS=shifted, name="elsewhere")
    path = str(tmp_path / "other.nrrd")
    slicer.util.exportNode(other, path)
    grid = slicer.util.addVolumeFromArray(head_array(), ijkToRAS=oblique_ijk_to_ras(), name="MR")
    node = scene_module.volume_from_file(path, grid, "copy")
    np.testing.assert_allclose(scene_module.ijk_to_ras(node), shifted, atol=1e-9)
    assert "is not on the grid of 'MR'" in caplog.text


@pytest.mark.parametrize("name, expected", [
    ("PET-Heat", "vtkMRMLPETProceduralColorNodePET-Heat"),
    ("Viridis", "vtkMRMLColorTableNodeFileViridis.txt"),
    ("Grey", "vtkMRMLColorTableNodeGrey"),
    ("vtkMRMLColorTableNodeIron", "vtkMRMLColorTableNodeIron"),
    ("NoSuchMap", None),
])
def test_card_colour_maps_resolve_to_slicer_colour_nodes(scene_module, name, expected):
    assert scene_module.color_node_id(name) == expected


def test_unknown_colour_map_keeps_grey_but_applies_window(slicer_standin, scene_module, caplog):
    node = slicer_standin.util.addVolumeFromArray(head_array(), name="PET")
    scene_module.apply_synthetic_display(node, {"colormap": "NoSuchMap", "window": 10, "level": 5})
    display = node.GetScalarVolumeDisplayNode()
    assert display.GetColorNodeID() == "vtkMRMLColorTableNodeGrey" and "NoSuchMap" in caplog.text
    assert (display.GetWindow(), display.GetLevel(), display.GetAutoWindowLevel()) == (10, 5, 0)


def test_mr_output_without_window_keeps_auto_window_level(slicer_standin, scene_module):
    node = slicer_standin.util.addVolumeFromArray(head_array(), name="T1c")
    scene_module.apply_synthetic_display(node, {})
    assert node.GetScalarVolumeDisplayNode().GetAutoWindowLevel() == 1


def test_difference_without_card_window_is_symmetric_around_zero(slicer_standin, scene_module):
    values = np.linspace(-50, 200, 10 * 20 * 24, dtype=np.float32).reshape(10, 20, 24)
    node = slicer_standin.util.addVolumeFromArray(values, name="diff")
    scene_module.apply_difference_display(node, {"window": 400, "level": 40})
    display = node.GetScalarVolumeDisplayNode()
    assert display.GetWindowLevelMin() == pytest.approx(-display.GetWindowLevelMax())
    assert display.GetWindowLevelMax() == pytest.approx(np.percentile(np.abs(values), 99), rel=1e-4)
    scene_module.apply_difference_display(node, {"difference_window": 150})
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == (-150, 150)


def test_metrics_table_flattens_and_formats(slicer_standin, scene_module):
    table = scene_module.metrics_table({"mae": 45.123456, "mae_air": None, "tissue": {"bone": 120.0}, "count": 3}, "m")
    rows = [(table.GetCellText(r, 0), table.GetCellText(r, 1)) for r in range(table.GetNumberOfRows())]
    assert rows == [("mae", "45.12"), ("mae_air", "n/a"), ("tissue.bone", "120"), ("count", "3")]
    assert [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())] == ["Metric", "Value"]
    assert table.GetLocked()


@pytest.mark.standin(main_window=False)
def test_views_are_left_alone_without_a_main_window(slicer_standin, scene_module):
    node = slicer_standin.util.addVolumeFromArray(head_array(), name="MR")
    assert scene_module.show_side_by_side([node, node]) is False


def test_reference_is_the_third_pane_when_there_is_no_difference(slicer_standin, scene_module):
    slicer = slicer_standin
    input_node, synthetic, reference = (slicer.util.addVolumeFromArray(head_array(), name=n) for n in ("MR", "sCT", "CT"))
    scene_module.link_results(synthetic, input_node, reference=reference)
    assert scene_module.review_volumes(synthetic) == [input_node, synthetic, reference]


def test_a_failed_import_removes_what_it_had_made(slicer_standin, module, tiny_models, tmp_path, monkeypatch):
    from MedGANTranslateLib.card import read_card_summary
    from MedGANTranslateSlicer import scene
    from MedGANTranslateSlicer.job import TranslationJob, TranslationRequest

    slicer = slicer_standin
    matrix = oblique_ijk_to_ras()
    input_node = slicer.util.addVolumeFromArray(head_array(), ijkToRAS=matrix, name="MR")
    reference = slicer.util.addVolumeFromArray(head_array(1), ijkToRAS=matrix, name="CT")
    outputs = {}
    for kind in ("synthetic", "difference"):
        outputs[kind] = str(tmp_path / f"{kind}.nrrd")
        slicer.util.exportNode(input_node, outputs[kind])
    job = TranslationJob(TranslationRequest(read_card_summary(tiny_models / "tiny-ct"), [input_node], reference=reference))
    job.done_event = {"outputs": outputs, "metrics": {"mae": 1.0}, "provenance": {"MedGANTranslate.ModelId": "tiny-ct"}}
    before = {n.GetID() for n in scene_nodes(slicer.mrmlScene)}

    def broken(node, display):
        raise RuntimeError("display preset failed")

    monkeypatch.setattr(scene, "apply_difference_display", broken)
    with pytest.raises(RuntimeError, match="display preset failed"):
        job._import_results()
    assert {n.GetID() for n in scene_nodes(slicer.mrmlScene)} == before


def test_lps_header_to_ras_matches_slicers_own_reader(slicer_standin, scene_module, tmp_path):
    """An oblique, anisotropic SimpleITK image (LPS header): the IJK-to-RAS the module computes from it is the
    one Slicer's volume reader gives the node it loads from the same file."""
    import SimpleITK as sitk

    slicer = slicer_standin
    image = sitk.GetImageFromArray(head_array())
    image.SetSpacing((0.7, 1.3, 3.0))
    image.SetOrigin((12.5, -30.25, 7.0))
    a, b = np.radians(17.0), np.radians(-9.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    image.SetDirection(tuple((rz @ rx).ravel()))
    for name in ("oblique.nrrd", "oblique.nii.gz"):
        path = str(tmp_path / name)
        sitk.WriteImage(image, path)
        loaded = slicer.util.loadVolume(path)
        np.testing.assert_allclose(scene_module.image_ijk_to_ras(image), scene_module.ijk_to_ras(loaded), atol=1e-5)
        made = scene_module.volume_from_file(path, loaded, "copy")
        np.testing.assert_array_equal(scene_module.ijk_to_ras(made), scene_module.ijk_to_ras(loaded))
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(made), slicer.util.arrayFromVolume(loaded))


def _translation(slicer, offset, name="registration"):
    import vtk

    transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
    matrix = vtk.vtkMatrix4x4()
    for axis in range(3):
        matrix.SetElement(axis, 3, offset[axis])
    transform.SetMatrixTransformToParent(matrix)
    return transform


def test_volumes_reach_the_engine_in_world_coordinates(slicer_standin, module, tiny_models, tmp_path):
    """A reference registered by a parent transform: the file the engine reads has the registered geometry."""
    import SimpleITK as sitk
    from MedGANTranslateLib.card import read_card_summary
    from MedGANTranslateSlicer import scene
    from MedGANTranslateSlicer.job import TranslationJob, TranslationRequest

    slicer = slicer_standin
    reference = slicer.util.addVolumeFromArray(head_array(), ijkToRAS=oblique_ijk_to_ras(), name="CT")
    reference.SetAndObserveTransformNodeID(_translation(slicer, (7.0, -3.0, 2.0)).GetID())
    job = TranslationJob(TranslationRequest(read_card_summary(tiny_models / "tiny-ct"), [reference]))
    job.folder = tmp_path
    image = sitk.ReadImage(job._export(reference, "reference.nrrd"))
    expected = oblique_ijk_to_ras()
    expected[:3, 3] += (7.0, -3.0, 2.0)
    np.testing.assert_allclose(scene.image_ijk_to_ras(image), expected, atol=1e-5)
    np.testing.assert_allclose(scene.world_ijk_to_ras(reference), expected, atol=1e-9)


def test_outputs_of_a_transformed_input_sit_under_its_transform(slicer_standin, scene_module, tmp_path, caplog):
    slicer = slicer_standin
    matrix = oblique_ijk_to_ras()
    source = slicer.util.addVolumeFromArray(head_array(), ijkToRAS=matrix, name="MR")
    transform = _translation(slicer, (4.0, 5.0, -6.0))
    source.SetAndObserveTransformNodeID(transform.GetID())
    path = str(tmp_path / "world.nrrd")
    assert slicer.util.exportNode(source, path, world=True)  # what the engine gets, and writes back
    node = scene_module.volume_from_file(path, source, "synthetic")
    np.testing.assert_array_equal(scene_module.ijk_to_ras(node), matrix)
    assert node.GetParentTransformNode() is transform and "is not on the grid" not in caplog.text
    np.testing.assert_allclose(scene_module.world_ijk_to_ras(node), scene_module.world_ijk_to_ras(source), atol=1e-12)


def test_only_plain_scalar_volumes_are_offered_as_inputs(slicer_standin, scene_module):
    """Label maps, vector and DWI volumes derive from vtkMRMLScalarVolumeNode: GetNodesByClass returns them."""
    slicer = slicer_standin
    slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "case_t1_labels")
    slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "case_t1_rgb")
    slicer.mrmlScene.AddNewNodeByClass("vtkMRMLDiffusionWeightedVolumeNode", "case_dwi")
    t1 = slicer.util.addVolumeFromArray(head_array(), name="case_t1")
    synthetic = slicer.util.addVolumeFromArray(head_array(), name="case_t1 · synthetic CT")
    synthetic.SetAttribute("MedGANTranslate.Synthetic", "true")
    assert len(slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")) == 5
    assert slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode").GetName() == "case_t1_labels"
    assert scene_module.scalar_volumes() == [t1]


def _uncertainty_node(slicer, name="MR · uncertainty"):
    """A map like the engine's: 0 outside an ellipsoid, 1 to 100 inside, one value per body voxel."""
    values = np.zeros((10, 20, 24), np.float32)
    body = head_array() > 200
    values[body] = np.linspace(1.0, 100.0, int(body.sum()), dtype=np.float32)
    return slicer.util.addVolumeFromArray(values, ijkToRAS=oblique_ijk_to_ras(), name=name), values[body]


def test_the_uncertainty_map_is_warm_and_shows_its_most_uncertain_5_percent(slicer_standin, scene_module):
    node, body = _uncertainty_node(slicer_standin)
    threshold = scene_module.apply_uncertainty_display(node)
    display = node.GetScalarVolumeDisplayNode()
    assert display.GetColorNodeID() == "vtkMRMLPETProceduralColorNodePET-Heat", "this Slicer has no Inferno"
    assert threshold == pytest.approx(np.percentile(body, 95)) and (body >= threshold).mean() == pytest.approx(0.05, abs=0.01)
    assert display.GetApplyThreshold() and display.GetLowerThreshold() == pytest.approx(threshold)
    assert display.GetUpperThreshold() == pytest.approx(100.0)
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == (0.0, pytest.approx(np.percentile(body, 99.5)))
    assert scene_module.uncertainty_slider(node) == (pytest.approx(np.percentile(body, 99.5)), pytest.approx(threshold))
    scene_module.set_uncertainty_threshold(node, 40.0)
    assert scene_module.uncertainty_threshold(node) == 40.0 and display.GetUpperThreshold() == pytest.approx(100.0)


def test_inferno_is_the_uncertainty_colour_map_where_slicer_has_it(slicer_standin, scene_module):
    """Slicer's colour logic adds Inferno from its colour files (singleton tag 'FileInferno.txt'); the stand-in's
    copy of those files lacks it, so the node is made here the way the logic makes it."""
    slicer = slicer_standin
    inferno = slicer.vtkMRMLColorTableNode()
    inferno.SetSingletonTag("FileInferno.txt")
    inferno.SetName("Inferno")
    slicer.mrmlScene.AddNode(inferno)
    assert inferno.GetID() == "vtkMRMLColorTableNodeFileInferno.txt"
    node, _ = _uncertainty_node(slicer)
    scene_module.apply_uncertainty_display(node)
    assert node.GetScalarVolumeDisplayNode().GetColorNodeID() == "vtkMRMLColorTableNodeFileInferno.txt"


def test_the_uncertainty_map_overlays_the_synthetic_volume_where_it_is_shown(slicer_standin, scene_module):
    slicer = slicer_standin
    matrix = oblique_ijk_to_ras()
    mr = slicer.util.addVolumeFromArray(head_array(), ijkToRAS=matrix, name="MR")
    synthetic = slicer.util.addVolumeFromArray(head_array(1), ijkToRAS=matrix, name="MR · synthetic CT")
    uncertainty, _ = _uncertainty_node(slicer)
    scene_module.overlay_uncertainty(synthetic)  # not linked yet: nothing to show
    assert scene_module.uncertainty_of(synthetic) is None
    scene_module.link_results(synthetic, mr, uncertainty=uncertainty)
    assert scene_module.uncertainty_of(synthetic) is uncertainty
    assert scene_module.output_names("MR", "synthetic CT", "m", "1.0.0")["uncertainty"] == "MR · uncertainty"
    scene_module.show_side_by_side(scene_module.review_volumes(synthetic))
    scene_module.overlay_uncertainty(synthetic)
    panes = {name: slicer.app.layoutManager().sliceWidget(name).mrmlSliceCompositeNode() for name in ("Red", "Yellow")}
    assert panes["Red"].GetBackgroundVolumeID() == mr.GetID() and panes["Red"].GetForegroundVolumeID() is None
    assert panes["Yellow"].GetBackgroundVolumeID() == synthetic.GetID()
    assert panes["Yellow"].GetForegroundVolumeID() == uncertainty.GetID()
    assert panes["Yellow"].GetForegroundOpacity() == pytest.approx(scene_module.UNCERTAINTY_OPACITY)
