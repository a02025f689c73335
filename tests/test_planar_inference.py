"""2D generators (card ``inference.planes``): slice by slice in one plane, or the mean of several (tri-planar),
with the output on exactly the input grid. Expected values come from the bare network applied to each slice of
the network-grid input, along the axis the test names itself, so a pass along the wrong axis fails."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from torch import nn

from volumes import head_volume, rotation, write
from MedGANTranslateLib import cli
from MedGANTranslateLib.anatomical_axes import anatomical_array_axes, plane_axes
from MedGANTranslateLib.card import validate_card_data
from MedGANTranslateLib.errors import CardError, MedGANError
from MedGANTranslateLib.inference import run_attempts, run_inference
from MedGANTranslateLib.inference_settings import InferenceSettings
from MedGANTranslateLib.memory_fallbacks import memory_fallbacks
from MedGANTranslateLib.model_folder import save_model_folder, tiny_card_data
from MedGANTranslateLib.network_rewrite import optimise_for_inference
from MedGANTranslateLib.networks import build_network
from MedGANTranslateLib.pipeline import Translator
from MedGANTranslateLib.planar_inference import plan_plane_passes
from MedGANTranslateLib.resources import traced_activation_bytes_per_voxel
from MedGANTranslateLib.run_options import RunOptions

CPU = torch.device("cpu")
AXIS = {"axial": 0, "coronal": 1, "sagittal": 2}  # array axes (z, y, x) of an LPS network grid
TRI = ("axial", "coronal", "sagittal")
UNET_2D = {"type": "monai", "name": "UNet",
           "params": {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "channels": [4, 8], "strides": [2]}}
#: No symmetry: a pass along the wrong axis, or a slice transposed or flipped, gives other values.
ASYMMETRIC = [[1.0, 2.0, 0.0], [-1.0, 3.0, 4.0], [0.0, -2.0, 1.0]]
#: Symmetric under flips of either in-plane axis and under transposition, but not isotropic in 3D: each plane
#: gives other values, whatever order and sign the slice's axes have.
LAPLACIAN = [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]
#: Symmetric under a flip of the slice's second axis (W) only.
MIRROR_W = [[1.0, 2.0, 1.0], [0.0, -3.0, 0.0], [2.0, 5.0, 2.0]]


def kernel_network(kernel, scale: float = 0.25) -> nn.Module:
    """An exactly known 2D network: one 3×3 convolution, zero padding, no bias."""
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(kernel)[None, None] * scale)
    return conv.eval()


def local_network(seed: int = 0) -> nn.Module:
    """Two 3×3 convolutions without normalisation: a fully convolutional 2D network seeing 2 voxels each side."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 1, 3, padding=1)).eval()


def random_volume(shape=(20, 24, 16), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (1, *shape)).astype(np.float32)


def slice_wise(net: nn.Module, volume: np.ndarray, axis: int) -> np.ndarray:
    """The bare network on every slice of ``volume`` (channels, z, y, x) stacked along array ``axis``."""
    stack = torch.from_numpy(np.ascontiguousarray(np.moveaxis(volume, axis + 1, 0)))
    with torch.no_grad():
        out = net(stack)[:, 0].numpy()
    return np.moveaxis(out, 0, axis)


def settings(planes, roi=(24, 24), **kw) -> InferenceSettings:
    """Windows as large as every slice of the 20×24×16 test volume, padded with zeros as the convolutions pad,
    so the engine's output is exactly the network on whole slices."""
    kw.setdefault("padding_value", 0.0)
    kw.setdefault("sw_batch_size", 4)
    return InferenceSettings(roi_size=roi, planes=tuple(planes), **kw)


# ---------------------------------------------------------------------------------------------- the engine


@pytest.mark.parametrize("plane", TRI)
def test_each_plane_is_the_network_on_the_slices_along_its_own_axis(plane):
    net, volume = kernel_network(ASYMMETRIC), random_volume()
    out, report = run_inference(net, volume, settings([plane]), CPU)
    expected = {p: slice_wise(net, volume, a) for p, a in AXIS.items()}
    np.testing.assert_allclose(out, expected[plane], atol=1e-5)
    for other in set(TRI) - {plane}:
        assert np.abs(expected[other] - expected[plane]).max() > 0.5, "the planes are told apart"
    assert report.planes == (plane,)
    assert report.windows_total == report.windows_computed == volume.shape[1 + AXIS[plane]], "one window a slice"


def test_small_windows_blend_within_each_slice():
    """Windows smaller than the slices, overlapping, blended: still the network on each slice where every
    window sees the voxels a voxel needs, i.e. away from window edges for a 3×3 kernel. A pointwise check of the
    plumbing: the same windows on a 1×1 network give the network exactly."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(1, 3, 1), nn.Tanh(), nn.Conv2d(3, 1, 1)).eval()
    volume = random_volume()
    out, report = run_inference(net, volume, settings(["coronal"], roi=(8, 8), overlap=0.5), CPU)
    np.testing.assert_allclose(out, slice_wise(net, volume, 1), atol=1e-5)
    assert report.windows_total > volume.shape[2], "several windows a slice"


def test_tri_planar_is_the_mean_of_the_three_planes():
    net, volume = kernel_network(ASYMMETRIC), random_volume(seed=2)
    singles = [run_inference(net, volume, settings([p]), CPU)[0] for p in TRI]
    events = []
    out, report = run_inference(net, volume, settings(TRI), CPU, progress=events.append)
    np.testing.assert_allclose(out, (singles[0] + singles[1] + singles[2]) / 3, atol=1e-6)
    np.testing.assert_allclose(out, sum(slice_wise(net, volume, a) for a in AXIS.values()) / 3, atol=1e-5)
    assert report.planes == TRI and report.windows_total == sum(volume.shape[1:])
    done = [e.done for e in events]
    assert all(e.stage == "infer" and e.total == report.windows_total for e in events)
    assert done == sorted(done) and done[0] == 0 and done[-1] == report.windows_total, "progress rises to 100 %"
    assert events[-1].fraction == 1.0


def test_plane_order_on_the_card_does_not_change_the_mean():
    net, volume = kernel_network(ASYMMETRIC), random_volume(seed=3)
    a = run_inference(net, volume, settings(TRI), CPU)[0]
    b = run_inference(net, volume, settings(("sagittal", "axial", "coronal")), CPU)[0]
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_slice_axes_given_by_the_caller_are_used():
    """The pipeline finds each plane's array axis on the network grid and passes it: coronal along axis 2."""
    net, volume = kernel_network(ASYMMETRIC), random_volume(seed=4)
    out, _ = run_inference(net, volume, settings(["coronal"]), CPU, slice_axes=(2,))
    np.testing.assert_allclose(out, slice_wise(net, volume, 2), atol=1e-5)


def box_mask(shape=(20, 24, 16)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[5:12, 6:18, 3:12] = True
    return mask


def test_slices_without_body_are_not_computed_and_get_the_background():
    net, volume, mask = kernel_network(ASYMMETRIC), random_volume(seed=5), box_mask()
    full, _ = run_inference(net, volume, settings(TRI), CPU)
    out, report = run_inference(net, volume, settings(TRI), CPU, mask=mask, background_out=-7.0)
    np.testing.assert_allclose(out[mask], full[mask], atol=1e-6)
    assert report.windows_total == (12 - 5) + (18 - 6) + (12 - 3) == report.windows_computed
    single, _ = run_inference(net, volume, settings(["axial"]), CPU, mask=mask, background_out=-7.0)
    assert (single[:5] == -7.0).all() and (single[12:] == -7.0).all(), "axial slices outside the body"
    assert not (single[5:12] == -7.0).all()


def test_windows_without_body_inside_body_slices_are_skipped():
    net, volume = kernel_network(ASYMMETRIC), random_volume(seed=6)
    mask = np.zeros(volume.shape[1:], dtype=bool)
    mask[5:12, 9:14, 10:14] = True  # in one of the six 8×8 windows of each axial slice
    small = settings(["axial"], roi=(8, 8), overlap=0.0, padding_value=-1.0)
    plain, every = run_inference(net, volume, small, CPU)
    out, report = run_inference(net, volume, small, CPU, mask=mask, background_out=-7.0)
    assert report.windows_skipped > 0 and report.windows_computed + report.windows_skipped == report.windows_total
    assert report.windows_total < every.windows_total, "only the body's slices"
    np.testing.assert_allclose(out[mask], plain[mask], atol=1e-6)


def test_fully_convolutional_2d_runs_large_in_plane_windows_with_the_same_result():
    net, volume = local_network(), random_volume(seed=7)
    large = settings(TRI, roi=(8, 8), fully_convolutional=True, max_window_voxels=12 * 12, window_context=2)
    passes = plan_plane_passes(volume.shape[1:], None, large, (0, 1, 2))
    assert all(p.settings.roi_size != (8, 8) and p.weights is not None for p in passes), "split, core-weighted"
    out, report = run_inference(net, volume, large, CPU)
    expected = sum(slice_wise(net, volume, a) for a in AXIS.values()) / 3
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert report.planes == TRI

    mask = box_mask()
    boxed = plan_plane_passes(volume.shape[1:], mask, large, (0, 1, 2))
    assert boxed[0].slices == slice(5, 12) and boxed[0].box[0].start <= 6 and boxed[0].box[0].stop >= 18


@pytest.mark.parametrize("planes, mirrored", [(("axial",), (2,)), (TRI, (2,)), (("sagittal",), ())])
def test_test_time_mirroring_flips_each_slice_in_plane(planes, mirrored):
    """Left-right (array axis 2 on an LPS grid) is an in-plane axis of axial and coronal slices, the slice axis
    of sagittal ones, where mirroring would change nothing and is not done."""
    volume = random_volume(seed=8)
    symmetric = kernel_network(MIRROR_W)
    plain, _ = run_inference(symmetric, volume, settings(planes), CPU)
    tta, report = run_inference(symmetric, volume, settings(planes), CPU, mirror=(2,))
    np.testing.assert_allclose(tta, plain, atol=1e-5)
    assert report.mirrored == mirrored

    net = kernel_network(ASYMMETRIC)
    out, _ = run_inference(net, volume, settings(planes), CPU, mirror=(2,))
    flipped = np.flip(volume, 3).copy()
    expected = [(slice_wise(net, volume, AXIS[p]) + np.flip(slice_wise(net, flipped, AXIS[p]), 2)) / 2
                if AXIS[p] != 2 else slice_wise(net, volume, AXIS[p]) for p in planes]
    np.testing.assert_allclose(out, sum(expected) / len(planes), atol=1e-5)


class GpuWithRoomFor(nn.Module):
    """``network`` on a device with room for ``voxels`` input voxels per call (CUDA's error above that)."""

    def __init__(self, network: nn.Module, voxels: int) -> None:
        super().__init__()
        self.network, self.voxels = network, voxels

    def forward(self, x):
        if x[0, 0].numel() * x.shape[0] > self.voxels:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate a {tuple(x.shape)} window.")
        return self.network(x)


def test_out_of_gpu_memory_a_2d_network_goes_to_one_card_window_per_call():
    net, volume = local_network(), random_volume(seed=9)
    large = settings(TRI, roi=(8, 8), fully_convolutional=True, window_context=2)
    attempts = list(memory_fallbacks(large, torch.device("cuda"), volume.shape[1:]))
    assert attempts[1].settings == settings(TRI, roi=(8, 8), window_context=2, sw_batch_size=1)
    assert "one window per network call" in attempts[1].reason
    said = []
    on_cpu = [(a.settings, CPU, CPU, a.reason) for a in attempts]
    out, report = run_attempts(on_cpu, GpuWithRoomFor(net, 8 * 8), volume, log=lambda level, m: said.append(m))
    assert report.fallback == attempts[1].reason and said == [attempts[1].reason]
    np.testing.assert_allclose(out, run_inference(net, volume, attempts[1].settings, CPU)[0], atol=1e-6)


def test_batch_norm_of_a_2d_network_is_folded_into_its_convolutions():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.ConvTranspose2d(4, 2, 3, padding=1), nn.BatchNorm2d(2), nn.Conv2d(2, 1, 1)).eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    fast = optimise_for_inference(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    x = torch.randn(3, 1, 12, 10)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), net(x), atol=1e-5, rtol=1e-5)


def test_memory_is_traced_on_2d_windows_for_a_2d_network():
    per_voxel = traced_activation_bytes_per_voxel(UNET_2D, 1, 64, spatial_dims=2)
    assert per_voxel is not None and per_voxel > 4
    assert traced_activation_bytes_per_voxel(UNET_2D, 1, 64) is None, "a 3D window is not a 2D network's: no trace"


def test_planes_are_found_on_the_grid_anatomy():
    identity = np.eye(3).ravel()
    assert plane_axes(identity, TRI) == (0, 1, 2)
    # stored sagittally: array x runs anterior-posterior, y superior-inferior, z left-right
    sagittal = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=float).ravel()
    assert plane_axes(sagittal, TRI) == (1, 2, 0)
    # 45° about superior-inferior: left-right and anterior-posterior tie, and still get different axes
    assert sorted(anatomical_array_axes(rotation(0, 0, np.pi / 4).ravel()).values()) == [0, 1, 2]
    with pytest.raises(CardError, match="oblique"):
        plane_axes(identity, ["oblique"])


# ---------------------------------------------------------------------------------------------- cards


def card_2d(planes=("axial",), roi=(16, 24), architecture=None, **inference):
    """A tiny card whose output is the network's own range (float32, no clipping), computed in float32."""
    data = tiny_card_data(model_id="tiny-2d", architecture=architecture or UNET_2D, roi=roi, output_modality="MR")
    data["inference"].update(planes=list(planes), cpu_precision="float32", **inference)
    data["preprocessing"]["orientation"] = "LPS"
    data["output"]["valid_range"] = [-10, 10]
    data["postprocessing"].update(output_mapping={"source_range": [-1, 1], "target_range": [-1, 1]}, clip=None,
                                  background_value=-1)
    return data


def unet_2d(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_network(UNET_2D).eval()


def asymmetric_head(**kw) -> sitk.Image:
    """The test head (size x, y, z = 16, 24, 20) with a bright block off-centre: no plane of symmetry."""
    kw.setdefault("size", (16, 24, 20))
    image = head_volume(**kw)
    values = sitk.GetArrayFromImage(image)
    values[6:10, 4:9, 9:13] += 400.0
    out = sitk.GetImageFromArray(values)
    out.CopyInformation(image)
    return out


def test_a_2d_card_needs_two_roi_numbers_and_a_3d_card_three():
    with pytest.raises(CardError, match=r"inference\.roi_size.*3 number.*2D network.*give 2 numbers"):
        validate_card_data(card_2d(roi=(16, 16, 16)), "two.json")
    three_d = tiny_card_data(roi=(16, 16))
    with pytest.raises(CardError, match=r"inference\.roi_size.*2 number.*3D network.*give 3 numbers.*planes"):
        validate_card_data(three_d, "three.json")
    for planes in ([], ["axial", "axial"], ["transverse"]):
        with pytest.raises(CardError, match="inference.planes"):
            validate_card_data(card_2d(planes=planes), "bad.json")
    validate_card_data(card_2d(planes=TRI), "tri.json")


def test_a_users_roi_for_a_2d_model_has_two_numbers():
    inference = {"roi_size": [16, 24], "planes": ["axial"]}
    assert InferenceSettings.from_card(inference).roi_size == (24, 16), "array order: y, x"
    assert InferenceSettings.from_card(inference, roi_xyz=[32, 8]).roi_size == (8, 32)
    with pytest.raises(MedGANError, match="2D network.*two positive integers"):
        InferenceSettings.from_card(inference, roi_xyz=[16, 16, 16])
    auto = InferenceSettings.from_card({"roi_size": [256, 256], "planes": ["axial"]})
    assert auto.sw_batch_size == 16 and auto.planes == ("axial",)


def test_a_network_of_the_wrong_rank_is_refused_naming_the_card(tmp_path):
    three_d = {"type": "monai", "name": "UNet",
               "params": {"spatial_dims": 3, "in_channels": 1, "out_channels": 1, "channels": [4, 8], "strides": [2]}}
    torch.manual_seed(0)
    card = save_model_folder(tmp_path / "a", card_2d(architecture=three_d), build_network(three_d))
    with pytest.raises(CardError, match=r"2D network: inference.planes \['axial'\], inference.roi_size \[16, 24\].*3D"):
        Translator(card, RunOptions(device="cpu"))
    flat = tiny_card_data(architecture=UNET_2D, roi=(16, 16, 16))
    card = save_model_folder(tmp_path / "b", flat, unet_2d())
    with pytest.raises(CardError, match=r"3D network: no inference.planes.*convolutions are 2D.*add inference.planes"):
        Translator(card, RunOptions(device="cpu"))


class FunctionalConv(nn.Module):
    """A 2D network without convolution modules (TorchScript keeps only the call): its rank shows in its first
    window."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("kernel", torch.tensor(LAPLACIAN)[None, None] * 0.1)

    def forward(self, x):
        return F.conv2d(x, self.kernel, padding=1)


def test_a_network_whose_rank_cannot_be_seen_is_refused_at_its_first_window(tmp_path):
    data = tiny_card_data(architecture={"type": "torchscript"}, roi=(16, 16, 16))
    card = save_model_folder(tmp_path, data, FunctionalConv(), fmt="torchscript",
                             example_input=torch.zeros(1, 1, 16, 16))
    translator = Translator(card, RunOptions(device="cpu"))
    with pytest.raises(CardError, match=r"cannot run on a window of \d+ × 1 × 16 × 16 × 16 .*3D network.*\]\): "
                                        r"RuntimeError: Expected 4-dimensional input"):
        translator.translate([asymmetric_head()])


# ---------------------------------------------------------------------------------------------- the pipeline


def test_axial_pipeline_output_is_the_network_on_each_axial_slice(tmp_path):
    net = unet_2d()
    card = save_model_folder(tmp_path, card_2d(), net)
    translator = Translator(card, RunOptions(device="cpu"))
    image = asymmetric_head()
    volume, _, grid = translator.prepare([image])
    assert grid.same_as_input and volume.shape == (1, 20, 24, 16)
    result = translator.translate([image])
    out = sitk.GetArrayFromImage(result.synthetic)
    body = sitk.GetArrayFromImage(result.body_mask) > 0
    expected = slice_wise(net, volume, 0)
    np.testing.assert_allclose(out[body], expected[body], atol=1e-5)
    assert np.abs(slice_wise(net, volume, 1) - expected)[body].max() > 1e-2, "another axis would differ"
    assert result.provenance["MedGANTranslate.Planes"] == "axial (slice by slice)"
    assert result.report.planes == ("axial",)


def test_a_2d_builtin_with_batch_norm_runs_fully_convolutional_with_its_norms_folded(tmp_path):
    architecture = {"type": "builtin", "name": "unet_generator",
                    "params": {"in_channels": 1, "out_channels": 1, "num_downs": 3, "ngf": 4, "norm": "batch",
                               "spatial_dims": 2}}
    torch.manual_seed(4)
    net = build_network(architecture)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    data = card_2d(planes=TRI, roi=(16, 16), architecture=architecture, fully_convolutional=True)
    translator = Translator(save_model_folder(tmp_path, data, net.eval()), RunOptions(device="cpu"))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in translator.inference_network.modules())
    x = torch.randn(3, 1, 24, 16)
    with torch.no_grad():
        torch.testing.assert_close(translator.inference_network(x), translator.network(x), atol=1e-5, rtol=1e-5)
    image = asymmetric_head()
    result = translator.translate([image])
    card_windows = Translator(save_model_folder(tmp_path / "windows", {**data, "inference": {
        **data["inference"], "fully_convolutional": False}}, net), RunOptions(device="cpu")).translate([image])
    assert result.report.windows_total < card_windows.report.windows_total
    assert result.synthetic.GetSize() == image.GetSize()
    values = sitk.GetArrayFromImage(result.synthetic)
    assert np.isfinite(values).all() and np.abs(values + 1).max() > 1e-3


def test_torchscript_2d_export_gives_the_same_output(tmp_path):
    net = unet_2d(seed=1)
    data = card_2d(planes=TRI, roi=(16, 16))
    image = asymmetric_head()
    ours = Translator(save_model_folder(tmp_path / "st", data, net), RunOptions(device="cpu")).translate([image])
    script = save_model_folder(tmp_path / "ts", data, net, fmt="torchscript")
    assert script.architecture == {"type": "torchscript"} and script.inference["divisible_by"] == 2
    theirs = Translator(script, RunOptions(device="cpu")).translate([image])
    np.testing.assert_allclose(sitk.GetArrayFromImage(theirs.synthetic), sitk.GetArrayFromImage(ours.synthetic),
                               atol=1e-5)
    assert theirs.provenance["MedGANTranslate.Planes"] == "axial, coronal, sagittal (tri-planar mean)"


def test_tri_planar_output_lies_on_an_oblique_anisotropic_input_grid(tmp_path):
    data = card_2d(planes=TRI, roi=(16, 16))
    data["preprocessing"]["spacing"] = [1.0, 1.0, 1.0]
    card = save_model_folder(tmp_path, data, unet_2d(seed=2))
    image = asymmetric_head(size=(14, 22, 12), spacing=(1.1, 0.9, 1.4), direction=rotation(0.3, -0.2, 0.25),
                            origin=(-12.5, 4.0, 7.25))
    result = Translator(card, RunOptions(device="cpu")).translate([image])
    synthetic = result.synthetic
    assert synthetic.GetSize() == image.GetSize()
    np.testing.assert_allclose(synthetic.GetSpacing(), image.GetSpacing(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(synthetic.GetOrigin(), image.GetOrigin(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(synthetic.GetDirection(), image.GetDirection(), rtol=0, atol=1e-9)
    values = sitk.GetArrayFromImage(synthetic)
    body = sitk.GetArrayFromImage(result.body_mask) > 0
    assert np.isfinite(values).all() and values.min() >= -10 and values.max() <= 10
    assert (values[~body] == -1).all() and np.abs(values[body] + 1).max() > 1e-3


def test_planes_are_anatomical_whatever_order_the_voxels_are_stored_in(tmp_path):
    """A card without an orientation runs on the scan's own grid: coronal slices of a scan stored sagittally
    are along its array axis that runs anterior-posterior, not along array axis 1. The in-plane kernel is
    symmetric, so only the slice axis decides the values."""
    data = card_2d(planes=["coronal"], roi=(24, 24), architecture={"type": "torchscript"},
                   padding_value=0.0, divisible_by=1)
    data["preprocessing"]["orientation"] = None
    card = save_model_folder(tmp_path, data, kernel_network(LAPLACIAN), fmt="torchscript")
    translator = Translator(card, RunOptions(device="cpu"))
    stored_lps = asymmetric_head()
    stored_other = sitk.DICOMOrient(stored_lps, "SRP")
    assert stored_other.GetDirection() != stored_lps.GetDirection()
    a = translator.translate([stored_lps])
    b = translator.translate([stored_other])
    back = sitk.GetArrayFromImage(sitk.DICOMOrient(b.synthetic, "LPS"))
    body = (sitk.GetArrayFromImage(a.body_mask) > 0) & (sitk.GetArrayFromImage(sitk.DICOMOrient(b.body_mask, "LPS")) > 0)
    assert body.sum() > 0.3 * body.size
    values = sitk.GetArrayFromImage(a.synthetic)
    np.testing.assert_allclose(back[body], values[body], atol=1e-5)


def test_tta_with_a_2d_model_runs_and_matches_for_a_mirror_symmetric_network(tmp_path):
    data = card_2d(planes=TRI, roi=(24, 24), architecture={"type": "torchscript"}, padding_value=0.0,
                   divisible_by=1, test_time_mirror=["left-right"])
    card = save_model_folder(tmp_path, data, kernel_network(MIRROR_W), fmt="torchscript")
    image = asymmetric_head()
    plain = Translator(card, RunOptions(device="cpu")).translate([image])
    tta = Translator(card, RunOptions(device="cpu", tta=True)).translate([image])
    np.testing.assert_allclose(sitk.GetArrayFromImage(tta.synthetic), sitk.GetArrayFromImage(plain.synthetic),
                               atol=1e-5)
    assert tta.provenance["MedGANTranslate.TestTimeMirror"] == "left-right"
    assert tta.report.mirrored == (2,)


def test_cli_runs_a_2d_model_end_to_end(tmp_path, capsys):
    card = save_model_folder(tmp_path / "model", card_2d(planes=TRI, roi=(16, 16)), unet_2d(seed=3))
    source = write(asymmetric_head(spacing=(1.1, 0.9, 1.4)), tmp_path / "t1.nrrd")
    out = tmp_path / "synthetic.nrrd"
    code = cli.main(["run", "--model", str(card.folder), "-i", source, "-o", str(out), "--device", "cpu",
                     "--threads", "1", "--progress", "json"])
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert code == 0, events[-1]
    infer = [e for e in events if e["event"] == "progress" and e["stage"] == "infer"]
    done = [e["done"] for e in infer]
    assert done == sorted(done) and infer[-1]["fraction"] == 1.0
    assert events[-1]["event"] == "done"
    assert events[-1]["provenance"]["MedGANTranslate.Planes"] == "axial, coronal, sagittal (tri-planar mean)"
    image = sitk.ReadImage(str(out))
    assert image.GetSize() == (16, 24, 20)
    assert image.GetMetaData("MedGANTranslate.Planes") == "axial, coronal, sagittal (tri-planar mean)"


def test_the_command_line_takes_a_2d_window_and_names_a_wrong_count(tmp_path, capsys):
    card = save_model_folder(tmp_path / "model", card_2d(roi=(16, 16)), unet_2d(seed=3))
    source = write(asymmetric_head(), tmp_path / "t1.nrrd")
    base = ["run", "--model", str(card.folder), "-i", source, "--device", "cpu", "--threads", "1"]
    assert cli.main(base + ["-o", str(tmp_path / "a.nrrd"), "--roi", "8", "16"]) == 0
    assert cli.main(base + ["-o", str(tmp_path / "b.nrrd"), "--roi", "16", "16", "16"]) == 2
    assert "2D network" in capsys.readouterr().err and not (tmp_path / "b.nrrd").exists()


# ---------------------------------------------------------------------------------------------- real scans


def test_tri_planar_slices_go_back_where_they_came_from_on_a_real_oblique_anisotropic_scan(tmp_path):
    """A real T1w (0.72 × 0.72 × 3 mm, oblique): the pipeline's tri-planar output equals the bare asymmetric
    network on its axial, coronal and sagittal slices, averaged, as benchmarks/planar_real.py measures."""
    import sys
    from pathlib import Path

    from real_data import real_file

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from planar_real import check_scan

    error, _, image, synthetic = check_scan(real_file("t1", "open_ms_patient01_T1W.nii.gz"), tmp_path)
    assert error < 1e-5
    assert synthetic.GetSize() == image.GetSize() and synthetic.GetDirection() == image.GetDirection()
