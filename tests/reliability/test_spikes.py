"""A few absurd voxels (issue 20, item 3): one voxel at 1e6 once emptied the body mask and turned 99.99 % of
the output into air. They must change the output only near themselves, and the user is told they are there."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from MedGANTranslateLib.pipeline import Translator
from MedGANTranslateLib.run_options import RunOptions

from volumes import head_volume


@pytest.mark.parametrize("spike", [1e6, 1e30, -1e6])
def test_an_absurd_voxel_changes_the_output_only_near_itself_and_warns(make_model, spike):
    translator = Translator(make_model(roi=(16, 16, 16)), RunOptions(device="cpu"))
    head = head_volume(size=(32, 36, 28))
    clean = translator.translate([head])
    values = sitk.GetArrayFromImage(head)
    values[14, 18, 16] = spike  # inside the head
    spiked = sitk.GetImageFromArray(values)
    spiked.CopyInformation(head)
    result = translator.translate([spiked])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result.body_mask), sitk.GetArrayFromImage(clean.body_mask))
    changed = np.argwhere(sitk.GetArrayFromImage(result.synthetic) != sitk.GetArrayFromImage(clean.synthetic))
    assert np.abs(changed - [14, 18, 16]).max(initial=0) <= 16, "only the windows around the voxel change (ROI 16)"
    warnings = [w for w in result.scan.warnings if w.code == "intensity_outliers"]
    assert len(warnings) == 1 and "1 voxel(s)" in warnings[0].message and warnings[0].input == "t1"
    assert not [w for w in clean.scan.warnings if w.code == "intensity_outliers"]
