"""Fully convolutional networks run on a few large windows over the body's box: same output, fewer voxels."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from MedGANTranslateLib.errors import CardError
from MedGANTranslateLib.inference import (
    InferenceSettings,
    check_fully_convolutional,
    plan_body_windows,
    run_inference,
    run_sliding_window,
)
from MedGANTranslateLib.networks import UnetGenerator3D
from MedGANTranslateLib.pipeline import Translator

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


def test_a_card_cannot_call_an_instance_normalised_network_fully_convolutional():
    check_fully_convolutional(UnetGenerator3D(1, 1, num_downs=2, ngf=4, norm="batch"), settings())
    with pytest.raises(CardError, match="InstanceNorm3d"):
        check_fully_convolutional(UnetGenerator3D(1, 1, num_downs=2, ngf=4, norm="instance"), settings())


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
        Translator(card, device="cpu")
