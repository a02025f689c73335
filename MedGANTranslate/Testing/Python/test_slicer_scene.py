"""How results enter the scene, piece by piece (no engine run): grid check, colour maps, difference window,
metrics table, all-or-nothing import, views without a main window."""
from __future__ import annotations

import numpy as np
import pytest

from .slicer_test_support import head_array, oblique_ijk_to_ras


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
    before = {n.GetID() for n in slicer.mrmlScene._all_nodes()}

    def broken(node, display):
        raise RuntimeError("display preset failed")

    monkeypatch.setattr(scene, "apply_difference_display", broken)
    with pytest.raises(RuntimeError, match="display preset failed"):
        job._import_results()
    assert {n.GetID() for n in slicer.mrmlScene._all_nodes()} == before
