"""Fully convolutional networks run on a few large windows over the body's box: same output, fewer voxels."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from MedGANTranslateLib.errors import CardError
from MedGANTranslateLib.inference import run_attempts, run_inference, run_windows
from MedGANTranslateLib.inference_settings import InferenceSettings
from MedGANTranslateLib.memory_fallbacks import memory_fallbacks
from MedGANTranslateLib.network_checks import check_fully_convolutional
from MedGANTranslateLib.networks import UnetGenerator
from MedGANTranslateLib.pipeline import Translator
from MedGANTranslateLib.run_options import RunOptions
from MedGANTranslateLib.sliding_window import run_sliding_window
from MedGANTranslateLib.window_planning import plan_body_windows

CPU = torch.device("cpu")


def local_network() -> torch.nn.Module:
    """Two 3^3 convolutions without normalisation: each output voxel sees 2 voxels on every side."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 1, 3, padding=1))
    return net.eval()


def body(shape=(40, 48, 36), centre=(18, 26, 20), radii=(9, 12, 8)) -> np.ndarray:
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + ((x - centre[2]) / radii[2]) ** 2 <= 1


def settings(**kw) -> InferenceSettings:
    return InferenceSettings(roi_size=(8, 8, 8), fully_convolutional=True, **kw)


def test_one_window_covers_the_body_box_in_multiples_of_the_divisor():
    mask = body()
    plan = plan_body_windows(mask.shape, mask, settings(divisor=8))
    assert plan.overlap == (0.0, 0.0, 0.0)
    assert all(r % 8 == 0 for r in plan.roi_size)
    assert plan.roi_size == (24, 32, 24)  # box 19 x 25 x 17 rounded up to multiples of 8
    inside = np.zeros_like(mask)
    inside[plan.box] = True
    assert inside[mask].all(), "the box holds every body voxel"
    assert [s.stop - s.start for s in plan.box] == list(plan.roi_size), "grown to a whole window inside the volume"


def test_large_boxes_are_split_along_their_longest_side_with_shared_context():
    mask = np.ones((40, 100, 36), dtype=bool)
    plan = plan_body_windows(mask.shape, mask, settings(max_window_voxels=40 * 60 * 36, window_context=4))
    assert math.prod(plan.roi_size) <= 40 * 60 * 36
    assert plan.roi_size[0] == 40 and plan.roi_size[2] == 36 and plan.overlap[0] == plan.overlap[2] == 0
    interval = int(plan.roi_size[1] * (1 - plan.overlap[1]))  # MONAI's step between windows
    assert interval == plan.roi_size[1] - 8, "neighbours share 2 x context voxels"


def test_large_windows_give_the_whole_volume_forward_inside_the_box_and_background_outside():
    net = local_network()
    mask = body()
    rng = np.random.default_rng(0)
    volume = np.where(mask, rng.uniform(-0.5, 1.0, mask.shape), -1.0).astype(np.float32)[None]
    with torch.no_grad():
        whole = net(torch.from_numpy(volume)[None])[0, 0].numpy()
    tiled = settings(max_window_voxels=12 ** 3, window_context=2)
    out, report = run_inference(net, volume, tiled, CPU, mask=mask, background_out=-7.0)
    assert report.windows_computed > 1 and math.prod(report.roi_size) <= 12 ** 3
    plan = plan_body_windows(mask.shape, mask, tiled)
    inside = np.zeros_like(mask)
    inside[plan.box] = True
    edge = np.zeros_like(mask)  # the box's own border sees padding instead of the voxels beyond it
    edge[plan.box] = True
    edge[tuple(slice(s.start + 2, s.stop - 2) for s in plan.box)] = False
    np.testing.assert_allclose(out[inside & ~edge], whole[inside & ~edge], atol=1e-5)
    assert (out[~inside] == -7.0).all()
    computed = report.windows_computed * math.prod(report.roi_size)
    cards = run_sliding_window(net, volume, InferenceSettings(roi_size=(8, 8, 8)), CPU, mask=mask)[1]
    assert computed < cards.windows_computed * 8 ** 3, "fewer voxels computed than with the card's windows"


def head() -> np.ndarray:
    """A body large enough for several quarterings of its window before the card's 8^3 ROI."""
    return body((60, 64, 56), (30, 32, 28), (26, 28, 24))


def window_voxels_planned(attempt, mask) -> int:
    return math.prod(plan_body_windows(mask.shape, mask, attempt).roi_size)


def test_out_of_gpu_memory_the_windows_shrink_on_the_gpu_before_the_job_leaves_it():
    mask = head()
    large = settings(max_window_voxels=10 ** 6, window_context=2)
    assert list(memory_fallbacks(large, CPU, mask.shape, mask)) == [(large, CPU, CPU, None)], "the CPU has no fallback"
    gpu = torch.device("cuda")
    attempts = list(memory_fallbacks(large, gpu, mask.shape, mask))
    assert attempts[0] == (large, gpu, gpu, None)
    smaller = attempts[1:-2]
    assert len(smaller) >= 2
    assert all(dev == stitch == gpu and "windows of at most" in why for _, dev, stitch, why in smaller)
    sizes = [window_voxels_planned(a[0], mask) for a in attempts[:-2]]
    assert all(b <= a // 4 for a, b in zip(sizes, sizes[1:])), sizes
    assert sizes[-1] >= 8 ** 3, "never below the card's ROI"
    assert attempts[-2][:3] == (smaller[-1][0], gpu, CPU) and "stitching on the CPU" in attempts[-2][3]
    assert attempts[-1][:3] == (large, CPU, CPU) and "entirely on the CPU" in attempts[-1][3]

    batched = InferenceSettings(roi_size=(8, 8, 8), sw_batch_size=4)
    assert [(a.sw_batch_size, d.type, s.type) for a, d, s, _ in memory_fallbacks(batched, gpu, mask.shape, mask)] == [
        (4, "cuda", "cuda"), (1, "cuda", "cuda"), (1, "cuda", "cpu"), (4, "cpu", "cpu")]
    single = InferenceSettings(roi_size=(8, 8, 8))
    assert len(list(memory_fallbacks(single, gpu, mask.shape, mask))) == 3, "one window per call cannot shrink further"


def on_cpu(attempts):
    """The GPU's attempts, run here on the CPU (lazily, as they come): what differs between them is the
    windows, not the device."""
    return ((a, CPU, CPU, why) for a, _, _, why in attempts)


class GpuWithRoomFor(torch.nn.Module):
    """``network`` on a device with room for ``voxels`` input voxels per call: larger calls raise the error
    CUDA raises when it runs out of memory (this machine has no GPU; the device check runs the real one)."""

    def __init__(self, network: torch.nn.Module, voxels: int) -> None:
        super().__init__()
        self.network, self.voxels = network, voxels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x[0, 0].numel() * x.shape[0] > self.voxels:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate a {tuple(x.shape)} window.")
        return self.network(x)


def test_a_run_that_outgrows_the_gpu_finishes_in_smaller_windows_with_the_same_output():
    net, mask = local_network(), head()
    rng = np.random.default_rng(1)
    volume = np.where(mask, rng.uniform(-0.5, 1.0, mask.shape), -1.0).astype(np.float32)[None]
    large = settings(max_window_voxels=10 ** 6, window_context=2)
    attempts = list(on_cpu(memory_fallbacks(large, torch.device("cuda"), mask.shape, mask)))
    room = window_voxels_planned(attempts[2][0], mask)
    assert window_voxels_planned(attempts[1][0], mask) > room, "the first smaller windows do not fit either"
    said = []
    out, report = run_attempts(attempts, GpuWithRoomFor(net, room), volume, mask, background_out=-7.0,
                               log=lambda level, message: said.append((level, message)))
    assert said == [("warning", attempts[1][3]), ("warning", attempts[2][3])]
    assert report.fallback == attempts[2][3] and math.prod(report.roi_size) <= room
    expected, _ = run_windows(net, volume, attempts[2][0], CPU, mask, background_out=-7.0)
    np.testing.assert_array_equal(out, expected)
    planned, _ = run_inference(net, volume, large, CPU, mask=mask, background_out=-7.0)
    inner = np.zeros_like(mask)  # where neither tiling sees the box's padded border
    inner[tuple(slice(s.start + 2, s.stop - 2) for s in plan_body_windows(mask.shape, mask, large).box)] = True
    np.testing.assert_allclose(out[inner], planned[inner], atol=1e-5)


def test_retries_are_planned_only_when_a_run_has_run_out():
    net, mask = local_network(), head()
    volume = np.where(mask, 0.5, -1.0).astype(np.float32)[None]
    large = settings(max_window_voxels=10 ** 6, window_context=2)
    pending = on_cpu(memory_fallbacks(large, torch.device("cuda"), mask.shape, mask))
    _, report = run_attempts(pending, net, volume, mask)
    assert report.fallback is None
    assert "windows of at most" in next(pending)[3], "the first retry is still to come: nothing was planned for it"


def test_running_out_in_every_attempt_or_failing_otherwise_raises():
    net, mask = local_network(), body()
    volume = np.where(mask, 0.5, -1.0).astype(np.float32)[None]
    attempts = list(on_cpu(memory_fallbacks(settings(), torch.device("cuda"), mask.shape, mask)))
    said = []
    with pytest.raises(torch.cuda.OutOfMemoryError):
        run_attempts(attempts, GpuWithRoomFor(net, 1), volume, mask, log=lambda level, message: said.append(message))
    assert said == [why for *_, why in attempts[1:]], "every fallback was tried"

    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("shape mismatch in layer 3")

    said.clear()
    with pytest.raises(CardError, match="cannot run on a window.*shape mismatch in layer 3"):
        run_attempts(attempts, Broken(), volume, mask, log=lambda level, message: said.append(message))
    assert said == [], "only running out of memory is retried"


def test_a_card_cannot_call_an_instance_normalised_network_fully_convolutional():
    check_fully_convolutional(UnetGenerator(1, 1, num_downs=2, ngf=4, norm="batch"), settings())
    with pytest.raises(CardError, match="InstanceNorm3d"):
        check_fully_convolutional(UnetGenerator(1, 1, num_downs=2, ngf=4, norm="instance"), settings())


def test_a_users_roi_or_overlap_means_windows_of_that_size():
    card = {"roi_size": [16, 16, 16], "fully_convolutional": True}
    assert InferenceSettings.from_card(card).fully_convolutional
    assert not InferenceSettings.from_card(card, roi_xyz=(32, 32, 32)).fully_convolutional
    assert not InferenceSettings.from_card(card, overlap=0.5).fully_convolutional


def test_translator_refuses_a_fully_convolutional_card_over_instance_norm(make_model):
    def edit(data):
        data["inference"]["fully_convolutional"] = True

    card = make_model(edit=edit)
    assert card.architecture["params"].get("norm", "instance") == "instance"
    with pytest.raises(CardError, match="fully_convolutional"):
        Translator(card, RunOptions(device="cpu"))
