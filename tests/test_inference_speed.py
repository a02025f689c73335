"""The engine's speed-ups change nothing but the speed: same outputs within the stated tolerances."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from MedGANTranslateLib import devices
from MedGANTranslateLib.devices import compute_precision
from MedGANTranslateLib.errors import MedGANError
from MedGANTranslateLib.inference_settings import InferenceSettings, auto_batch_size
from MedGANTranslateLib.network_rewrite import optimise_for_inference
from MedGANTranslateLib.networks import UnetGenerator
from MedGANTranslateLib.sliding_window import run_sliding_window
from MedGANTranslateLib.subpixel import SubpixelConvTranspose3d


def unet(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return UnetGenerator(1, 1, num_downs=3, ngf=4, norm="instance").eval()


def head(shape=(1, 48, 56, 48), size: float = 0.5, seed: int = 0):
    """A textured ellipsoid in a -1 background (normalised range) and its mask."""
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape[1:]), indexing="ij")
    inside = (x / 0.9) ** 2 + (y / 1.0) ** 2 + (z / 0.95) ** 2 < size ** 2
    rng = np.random.default_rng(seed)
    volume = np.where(inside, rng.uniform(-0.5, 1.0, shape[1:]), -1.0).astype(np.float32)[None]
    return volume, inside


@pytest.mark.parametrize("out_channels, bias, shape", [(1, True, (2, 6, 5, 7, 4)), (2, False, (1, 3, 4, 4, 4))])
def test_subpixel_layer_equals_the_transposed_convolution(out_channels, bias, shape):
    torch.manual_seed(1)
    layer = torch.nn.ConvTranspose3d(shape[1], out_channels, kernel_size=4, stride=2, padding=1, bias=bias)
    x = torch.randn(*shape)
    with torch.no_grad():
        expected = layer(x)
        got = SubpixelConvTranspose3d(layer)(x)
    assert got.shape == expected.shape == (shape[0], out_channels, *(2 * n for n in shape[2:]))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("capability, widest_replaced", [("AVX512", 2), ("AVX2", 16)])
def test_optimised_network_computes_the_same_and_leaves_the_original_alone(monkeypatch, capability, widest_replaced):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    net = UnetGenerator(1, 1, num_downs=4, ngf=8, norm="instance").eval()  # 8, 16 and 32 channels inside
    fast = optimise_for_inference(net)
    assert isinstance(fast.model.model[3], SubpixelConvTranspose3d), "the one-channel output layer is replaced"
    assert type(net.model.model[3]) is torch.nn.ConvTranspose3d, "the loaded network is not modified"
    replaced = [m.out_channels for m in fast.modules() if isinstance(m, SubpixelConvTranspose3d)]
    kept = [m.out_channels for m in fast.modules() if isinstance(m, torch.nn.ConvTranspose3d)]
    assert max(replaced) <= widest_replaced < min(kept), "wide transposed convolutions stay as they are"
    assert sorted(replaced + kept) == [1, 8, 16, 32]
    cuda = optimise_for_inference(net, "float32", "cuda")  # a choice measured on CPUs only
    assert [m.out_channels for m in cuda.modules() if isinstance(m, SubpixelConvTranspose3d)] == [1]
    x = torch.randn(2, 1, 16, 32, 16)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), net(x), atol=1e-5, rtol=1e-5)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_torchscript_and_networks_without_such_layers_are_not_copied():
    scripted = torch.jit.trace(unet(), torch.zeros(1, 1, 16, 16, 16))
    assert optimise_for_inference(scripted) is scripted
    pointwise = torch.nn.Sequential(torch.nn.Conv3d(1, 1, 1), torch.nn.Tanh())
    assert optimise_for_inference(pointwise) is pointwise


def test_batched_windows_give_the_same_output_as_one_at_a_time():
    net = optimise_for_inference(unet())
    volume, mask = head()
    one = InferenceSettings(roi_size=(16, 16, 16), sw_batch_size=1)
    four = InferenceSettings(roi_size=(16, 16, 16), sw_batch_size=4)
    a, ra = run_sliding_window(net, volume, one, torch.device("cpu"), mask=mask)
    b, rb = run_sliding_window(net, volume, four, torch.device("cpu"), mask=mask)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert (ra.windows_computed, ra.windows_skipped) == (rb.windows_computed, rb.windows_skipped)
    assert rb.windows_skipped > 0, "the corners of the field of view hold no body"


def test_bfloat16_on_the_cpu_stays_close_to_float32():
    net = optimise_for_inference(unet())
    volume, mask = head()
    settings = InferenceSettings(roi_size=(16, 16, 16), sw_batch_size=4)
    exact, r32 = run_sliding_window(net, volume, settings, torch.device("cpu"), mask=mask)
    bf16 = InferenceSettings(roi_size=(16, 16, 16), sw_batch_size=4, cpu_precision="bfloat16")
    fast, r16 = run_sliding_window(net, volume, bf16, torch.device("cpu"), mask=mask)
    assert (r32.precision, r16.precision) == ("float32", "bfloat16")
    assert fast.dtype == np.float32
    difference = np.abs(fast - exact)[mask]
    assert 0 < difference.mean() < 0.01 and difference.max() < 0.1


@pytest.mark.parametrize("native, expected", [(True, "bfloat16"), (False, "float32")])
def test_auto_precision_uses_bfloat16_only_where_the_cpu_computes_it(monkeypatch, native, expected):
    monkeypatch.setattr(devices, "cpu_bfloat16_native", lambda: native)
    auto = InferenceSettings(roi_size=(16, 16, 16), cpu_precision="auto")
    assert compute_precision(auto, torch.device("cpu")) == expected
    assert compute_precision(InferenceSettings(roi_size=(16, 16, 16)), torch.device("cpu")) == "float32"


def test_card_settings_resolve_batch_and_precision():
    card = {"roi_size": [64, 64, 64]}
    settings = InferenceSettings.from_card(card, divisor=16)
    assert (settings.sw_batch_size, settings.cpu_precision) == (4, "auto")
    assert InferenceSettings.from_card({**card, "sw_batch_size": 2, "cpu_precision": "float32"}).sw_batch_size == 2
    assert [auto_batch_size(r) for r in ((128, 128, 128), (64, 64, 64), (32, 32, 32), (8, 8, 8))] == [1, 4, 8, 8]
    with pytest.raises(MedGANError, match="cpu_precision"):
        InferenceSettings.from_card({**card, "cpu_precision": "half"})


def test_background_skipping_works_when_the_volume_is_smaller_than_the_roi():
    net = unet()
    volume, mask = head(shape=(1, 12, 20, 9), size=1.0)
    keep = np.zeros_like(mask)
    keep[:, :4, :] = mask[:, :4, :]  # body only at one side: MONAI pads the volume, the mask must follow
    on = InferenceSettings(roi_size=(16, 24, 16))
    off = InferenceSettings(roi_size=(16, 24, 16), skip_background=False)
    a, report = run_sliding_window(net, volume, on, torch.device("cpu"), mask=keep)
    b, _ = run_sliding_window(net, volume, off, torch.device("cpu"), mask=keep)
    assert report.windows_computed == 1
    np.testing.assert_allclose(a[keep], b[keep], atol=1e-6)


def test_batch_norm_is_folded_into_the_convolutions_before_it():
    torch.manual_seed(2)
    net = UnetGenerator(1, 1, num_downs=3, ngf=4, norm="batch")
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):  # statistics as training leaves them, not the identity
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.uniform_(m.bias, -0.2, 0.2)
    net.eval()
    norms = sum(isinstance(m, torch.nn.BatchNorm3d) for m in net.modules())
    fast = optimise_for_inference(net)
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in fast.modules())
    assert norms == 3 and sum(isinstance(m, torch.nn.BatchNorm3d) for m in net.modules()) == norms, \
        "the original keeps its layers"
    x = torch.randn(2, 1, 16, 24, 16)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), net(x), atol=1e-5, rtol=1e-4)


def test_wider_transposed_convolutions_become_sub_pixel_only_in_bfloat16_on_avx512(monkeypatch):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    net = UnetGenerator(1, 1, num_downs=3, ngf=4, norm="batch").eval()
    narrow = [m for m in net.modules() if isinstance(m, torch.nn.ConvTranspose3d) and 2 < m.out_channels <= 16]
    assert narrow

    def replaced(precision):
        return sum(isinstance(m, SubpixelConvTranspose3d) for m in optimise_for_inference(net, precision).modules())

    assert replaced("float32") == 1, "float32: only the image layer"
    assert replaced("bfloat16") == 1 + len(narrow)
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(optimise_for_inference(net, "bfloat16")(x), net(x), atol=1e-5, rtol=1e-4)
