"""The translation pipeline end to end with tiny real models: geometry, values, progress, cancel."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from volumes import head_volume, rotation, write
from MedGANTranslateLib.errors import Cancelled, InputError, MedGANError
from MedGANTranslateLib.file_translation import translate_files
from MedGANTranslateLib.inference_settings import InferenceSettings
from MedGANTranslateLib.model_folder import save_model_folder, tiny_card_data
from MedGANTranslateLib.pipeline import Translator
from MedGANTranslateLib.progress import CancelToken
from MedGANTranslateLib.run_options import RunOptions
from MedGANTranslateLib.sliding_window import run_sliding_window
from MedGANTranslateLib.window_planning import count_windows


def assert_same_grid(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-9)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-9)


GEOMETRIES = {
    "anisotropic": dict(size=(24, 28, 9), spacing=(0.9, 1.3, 2.5)),
    "oblique": dict(size=(20, 22, 18), direction=rotation(0.3, -0.2, 0.5)),
    "ras_flipped": dict(size=(21, 19, 17), direction=np.diag([-1.0, -1.0, 1.0])),
    "odd_sizes": dict(size=(23, 17, 13), spacing=(1.1, 0.7, 1.9)),
    "smaller_than_roi": dict(size=(9, 11, 7)),
}


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_output_is_on_exactly_the_input_grid(make_model, name):
    card = make_model()
    image = head_volume(**GEOMETRIES[name])
    result = Translator(card, RunOptions(device="cpu")).translate([image])
    assert_same_grid(result.synthetic, image)
    assert result.synthetic.GetPixelID() == sitk.sitkInt16
    arr = sitk.GetArrayFromImage(result.synthetic)
    assert arr.min() >= -1024 and arr.max() <= 3071
    assert arr[0, 0, 0] == -1000, "air outside the body gets the card's background value"


@pytest.mark.parametrize("name", ["anisotropic", "oblique", "ras_flipped"])
def test_resampling_cards_come_back_to_the_input_grid(make_model, name):
    def edit(data):
        data["preprocessing"].update(orientation="LPS", spacing=[1.5, 1.5, 1.5])

    card = make_model(edit=edit)
    image = head_volume(**GEOMETRIES[name])
    result = Translator(card, RunOptions(device="cpu")).translate([image])
    assert_same_grid(result.synthetic, image)
    # voxel (i, j, k) of the output is voxel (i, j, k) of the input: the body stays where the input's body is
    body_in = sitk.GetArrayFromImage(image) > 100
    body_out = sitk.GetArrayFromImage(result.synthetic) != -1000
    overlap = (body_in & body_out).sum() / body_in.sum()
    assert overlap > 0.95
    assert_same_grid(result.body_mask, image)  # the mask the background and the metrics used, on the input grid
    mask = sitk.GetArrayFromImage(result.body_mask)
    assert result.body_mask.GetPixelID() == sitk.sitkUInt8 and set(np.unique(mask)) == {0, 1}
    assert np.array_equal(body_out, mask == 1)


class Pointwise(torch.nn.Module):
    """A network with a 1-voxel receptive field: windowed and whole-volume outputs must agree exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 1, 1)
        torch.nn.init.constant_(self.conv.weight, 0.8)
        torch.nn.init.constant_(self.conv.bias, 0.1)

    def forward(self, x):
        return torch.tanh(self.conv(x))


def test_sliding_window_equals_whole_volume_forward_for_a_pointwise_network():
    net = Pointwise().eval()
    rng = np.random.default_rng(1)
    vol = rng.uniform(-1, 1, size=(1, 28, 36, 40)).astype(np.float32)
    settings = InferenceSettings(roi_size=(16, 16, 16), overlap=0.25, skip_background=False)
    out, report = run_sliding_window(net, vol, settings, torch.device("cpu"))
    with torch.no_grad():
        whole = net(torch.from_numpy(vol)[None])[0, 0].numpy()
    np.testing.assert_allclose(out, whole, atol=1e-5)
    assert report.windows_total == count_windows(vol.shape[1:], settings) == report.windows_computed


def test_sliding_window_with_roi_equal_to_volume_matches_forward(make_model):
    card = make_model()
    from MedGANTranslateLib.checkpoints import load_generator

    net = load_generator(card)
    vol = np.random.default_rng(2).uniform(-1, 1, size=(1, 16, 24, 32)).astype(np.float32)
    settings = InferenceSettings(roi_size=(16, 24, 32), overlap=0.25, skip_background=False)
    out, report = run_sliding_window(net, vol, settings, torch.device("cpu"))
    with torch.no_grad():
        whole = net(torch.from_numpy(vol)[None])[0, 0].numpy()
    assert report.windows_total == report.windows_computed == 1
    np.testing.assert_allclose(out, whole, atol=1e-5)
    air = np.zeros(vol.shape[1:], bool)  # a window without a body voxel is not computed
    empty, report = run_sliding_window(net, vol, replace(settings, skip_background=True), torch.device("cpu"),
                                       mask=air, background_out=-0.75)
    assert (report.windows_computed, report.windows_skipped) == (0, 1)
    assert empty.shape == vol.shape[1:] and (empty == -0.75).all()


def test_background_windows_are_skipped_without_changing_the_result(make_model):
    card = make_model(roi=(8, 8, 8))
    image = head_volume(size=(40, 40, 32))
    on = Translator(card, RunOptions(device="cpu")).translate([image])
    card.inference["skip_background"] = False
    off = Translator(card, RunOptions(device="cpu")).translate([image])
    assert on.report.windows_skipped > 0 and off.report.windows_skipped == 0
    assert on.report.windows_computed < off.report.windows_computed
    np.testing.assert_array_equal(sitk.GetArrayFromImage(on.synthetic), sitk.GetArrayFromImage(off.synthetic))


def test_progress_reports_every_window_with_an_eta(make_model):
    card = make_model(roi=(8, 8, 8))
    events = []
    Translator(card, RunOptions(device="cpu")).translate([head_volume(size=(24, 24, 16))], progress=events.append)
    infer = [e for e in events if e.stage == "infer"]
    assert infer[0].done == 0 and infer[-1].done == infer[-1].total > 1
    assert [e.done for e in infer] == sorted(e.done for e in infer)
    assert any(e.eta_s is not None and e.eta_s > 0 for e in infer[1:-1])
    assert {e.stage for e in events} >= {"preprocess", "infer", "postprocess"}


def test_cancel_stops_during_inference_and_leaves_no_output(make_model, tmp_path):
    card = make_model(roi=(8, 8, 8))
    src = write(head_volume(size=(32, 32, 24)), tmp_path / "in.nrrd")
    out = tmp_path / "out" / "synthetic.nrrd"
    out.parent.mkdir()
    token = CancelToken()
    seen = []

    def progress(event):
        seen.append(event)
        if event.stage == "infer" and event.done >= 2:
            token.cancel()

    with pytest.raises(Cancelled):
        translate_files(str(card.folder), [src], str(out), options=RunOptions(device="cpu"), progress=progress,
                        cancel=token)
    infer = [e for e in seen if e.stage == "infer"]
    assert infer[-1].done < infer[-1].total, "stopped before the last window"
    assert list(out.parent.iterdir()) == []


def test_difference_and_metrics_against_a_reference(make_model, tmp_path):
    card = make_model()
    image = head_volume(size=(20, 22, 18), spacing=(1.2, 1.0, 1.5))
    result = Translator(card, RunOptions(device="cpu")).translate([image])
    # the reference is the synthetic image shifted by +25 HU on an oblique, coarser grid covering the same space
    reference = sitk.Cast(result.synthetic, sitk.sitkFloat32) - 25.0
    with_ref = Translator(card, RunOptions(device="cpu")).translate([image], reference=reference)
    diff = sitk.GetArrayFromImage(with_ref.difference)
    assert_same_grid(with_ref.difference, image)
    inside = sitk.GetArrayFromImage(with_ref.synthetic) != -1000
    np.testing.assert_allclose(diff[inside], 25.0, atol=1e-3)
    m = with_ref.metrics
    assert m["mae"] == pytest.approx(25.0, abs=1e-3) and m["me"] == pytest.approx(25.0, abs=1e-3)
    assert {"rmse", "psnr", "ssim", "mae_air", "mae_soft_tissue", "mae_bone", "bone_dice"} <= set(m)


def test_enhancement_models_show_synthetic_minus_input_without_reference(make_model):
    def edit(data):
        data["difference"] = {"without_reference": "minus_input"}

    card = make_model(output_modality="MR", edit=edit)
    image = head_volume()
    result = Translator(card, RunOptions(device="cpu")).translate([image])
    assert result.difference is not None and result.metrics is None
    assert_same_grid(result.difference, image)
    assert np.isfinite(sitk.GetArrayFromImage(result.difference)).all()


def test_multi_input_models_take_one_volume_per_input(make_model):
    card = make_model(inputs=2, output_modality="PET")
    t1, t2 = head_volume(seed=1), head_volume(seed=2)
    result = Translator(card, RunOptions(device="cpu")).translate([t1, t2])
    assert_same_grid(result.synthetic, t1)
    assert result.synthetic.GetPixelID() == sitk.sitkFloat32
    with pytest.raises(InputError, match="takes 2 input"):
        Translator(card, RunOptions(device="cpu")).translate([t1])


def test_torchscript_model_through_the_pipeline_matches_safetensors(make_model, tmp_path):
    card = make_model()
    from MedGANTranslateLib.checkpoints import load_generator

    data = tiny_card_data(model_id="tiny-ts")
    ts_card = save_model_folder(tmp_path / "ts", data, network=load_generator(card), fmt="torchscript")
    image = head_volume()
    a = Translator(card, RunOptions(device="cpu")).translate([image]).synthetic
    b = Translator(ts_card, RunOptions(device="cpu")).translate([image]).synthetic
    assert np.abs(sitk.GetArrayFromImage(a).astype(int) - sitk.GetArrayFromImage(b).astype(int)).max() <= 1


def test_roi_that_does_not_suit_the_network_is_refused(make_model):
    card = make_model()
    with pytest.raises(MedGANError, match="multiple of 8"):
        Translator(card, RunOptions(device="cpu", roi=(20, 16, 16)))


def test_a_window_the_divisor_accepts_but_the_network_cannot_take_is_refused(make_model):
    """SwinUNETR's sizes are multiples of 32, but at 32³ its last stage has one voxel left and its instance norm
    fails inside the network: a traceback before."""
    from MedGANTranslateLib.errors import CardError

    swin = {"type": "monai", "name": "SwinUNETR",
            "params": {"in_channels": 1, "out_channels": 1, "feature_size": 12, "spatial_dims": 3}}
    card = make_model(architecture=swin, roi=(32, 32, 32))
    with pytest.raises(CardError, match=r"cannot run on a window of \d+ × 1 × 32 × 32 × 32 .*more than 1 spatial "
                                        r"element.*Give a window the network takes"):
        Translator(card, RunOptions(device="cpu")).translate([head_volume()])


def test_a_network_that_needs_a_missing_package_is_refused_naming_it(make_model, monkeypatch):
    """MONAI imports some networks' packages (SwinUNETR's einops) only when they run: a traceback before."""
    from monai.utils import OptionalImportError

    from MedGANTranslateLib import pipeline
    from MedGANTranslateLib.errors import CardError

    def missing(*args, **kwargs):
        raise OptionalImportError("from einops import rearrange (No module named 'einops').")

    monkeypatch.setattr(pipeline, "run_inference", missing)
    with pytest.raises(CardError, match=r"needs the Python package 'einops'.*pip install einops"):
        Translator(make_model(), RunOptions(device="cpu")).translate([head_volume()])
