"""Checkpoints saved the way each peer saves them compute, through the project's loader, what the peer's network
computes in the mode its own test script runs it (≤ 1e-5); layouts the card does not describe are refused."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Tuple

import pytest
import torch
from monai.networks import nets
from torch import nn

from MedGANTranslateLib.checkpoints import load_generator
from MedGANTranslateLib.errors import WeightsError
from MedGANTranslateLib.model_folder import save_model_folder, tiny_card_data
from MedGANTranslateLib.networks import required_divisor

from peer_networks import Vnet, randomise, resnet, save_like_the_peer, unet

ATOL = 1e-5


@dataclass(frozen=True)
class Layout:
    """One peer layout: how to build the peer's network, how the peer saves and runs it, and the card for it."""

    build: Callable[[], nn.Module]
    architecture: Dict[str, Any]
    saved_as: str = "state_dict"  # state_dict | dataparallel_legacy | ganslate | monai
    peer_mode: str = "eval"  # eval | train (the peer's test script never calls eval(); one window per batch)
    size: Tuple[int, ...] = (16, 16, 16)
    channels: Tuple[int, int] = (1, 1)
    extra: Dict[str, Any] = field(default_factory=dict)


def _builtin(name: str, forward: Dict[str, Any] = None, **params: Any) -> Dict[str, Any]:
    arch = {"type": "builtin", "name": name, "params": {"in_channels": 1, "out_channels": 1, **params}}
    if forward:
        arch["forward"] = forward
    return arch


WINDOW = {"norm_statistics": "window"}
GANSLATE_RESNET3D_BATCH = {"conv": False, "transposed": True, "output": False}

LAYOUTS = {
    # junyanz pytorch-CycleGAN-and-pix2pix, 2D original and 3D ports
    "junyanz-resnet-3d-instance": Layout(lambda: resnet("junyanz", 3, 1, 1, ngf=4, n_blocks=2),
                                         _builtin("resnet_generator", ngf=4, n_blocks=2)),
    "junyanz-resnet-2d-batch": Layout(lambda: resnet("junyanz", 2, 1, 1, ngf=4, n_blocks=2, norm="batch"),
                                      _builtin("resnet_generator", ngf=4, n_blocks=2, norm="batch", spatial_dims=2),
                                      size=(32, 32)),
    "junyanz-resnet-3d-none-legacy": Layout(lambda: resnet("junyanz", 3, 1, 1, ngf=4, n_blocks=1, norm="none"),
                                            _builtin("resnet_generator", ngf=4, n_blocks=1, norm="none"),
                                            saved_as="dataparallel_legacy"),
    "junyanz-unet-2d-batch-dropout": Layout(lambda: unet("junyanz", 2, 1, 1, 6, ngf=2, norm="batch", dropout=True),
                                            _builtin("unet_generator", num_downs=6, ngf=2, norm="batch",
                                                     use_dropout=True, spatial_dims=2), size=(64, 64)),
    "junyanz-unet-3d-instance-legacy": Layout(lambda: unet("junyanz", 3, 2, 1, 5, ngf=2, norm="instance"),
                                              _builtin("unet_generator", in_channels=2, num_downs=5, ngf=2,
                                                       norm="instance"),
                                              saved_as="dataparallel_legacy", size=(32, 32, 32), channels=(2, 1)),
    "junyanz-unet-2d-batch-no-eval": Layout(lambda: unet("junyanz", 2, 1, 1, 5, ngf=2, norm="batch"),
                                            _builtin("unet_generator", WINDOW, num_downs=5, ngf=2, norm="batch",
                                                     spatial_dims=2), peer_mode="train", size=(32, 32)),
    # davidiommi 3D-CycleGan-Pytorch-MedImaging: test.py never calls eval()
    "davidiommi-resnet-instance": Layout(lambda: resnet("davidiommi", 3, 1, 1, ngf=4, n_blocks=2),
                                         _builtin("resnet_generator", WINDOW, ngf=4, n_blocks=2, padding="replicate",
                                                  edge_padding="replicate"), peer_mode="train"),
    "davidiommi-resnet-batch": Layout(lambda: resnet("davidiommi", 3, 1, 1, ngf=4, n_blocks=2, norm="batch"),
                                      _builtin("resnet_generator", WINDOW, ngf=4, n_blocks=2, norm="batch",
                                               padding="replicate", edge_padding="replicate"), peer_mode="train"),
    "davidiommi-unet-instance": Layout(lambda: unet("davidiommi", 3, 1, 1, 5, ngf=2, norm="instance"),
                                       _builtin("unet_generator", WINDOW, num_downs=5, ngf=2, norm="instance",
                                                bias={"conv": False, "transposed": False}),
                                       peer_mode="train", size=(32, 32, 32)),
    # ganslate: checkpoints hold every network and the optimisers; inference runs in eval mode
    "ganslate-resnet3d-instance": Layout(lambda: resnet("ganslate", 3, 1, 1, norm="instance", n_blocks=1),
                                         _builtin("resnet_generator", ngf=64, n_blocks=1, padding="replicate",
                                                  edge_padding="replicate", bias={"transposed": True}),
                                         saved_as="ganslate", size=(8, 8, 8)),
    "ganslate-resnet3d-batch": Layout(lambda: resnet("ganslate", 3, 1, 1, norm="batch", n_blocks=1),
                                      _builtin("resnet_generator", ngf=64, n_blocks=1, norm="batch",
                                               padding="replicate", edge_padding="replicate",
                                               bias=GANSLATE_RESNET3D_BATCH),
                                      saved_as="ganslate", size=(8, 8, 8)),
    "ganslate-resnet2d-instance": Layout(lambda: resnet("ganslate", 2, 1, 1, norm="instance", n_blocks=2),
                                         _builtin("resnet_generator", ngf=64, n_blocks=2, encoder_alias=True,
                                                  bias={"transposed": True}, spatial_dims=2),
                                         saved_as="ganslate", size=(16, 16)),
    "ganslate-unet3d-batch": Layout(lambda: unet("ganslate", 3, 1, 1, 5, ngf=2, norm="batch"),
                                    _builtin("unet_generator", num_downs=5, ngf=2, norm="batch"),
                                    saved_as="ganslate", size=(32, 32, 32)),
    "ganslate-vnet3d-instance": Layout(lambda: Vnet(3, 1, 1, "instance", flc=4, down=(1, 2), up=(2, 1)),
                                       _builtin("vnet_generator", first_layer_channels=4, down_blocks=[1, 2],
                                                up_blocks=[2, 1]), saved_as="ganslate"),
    "ganslate-vnet3d-batch-inverse-layers": Layout(
        lambda: Vnet(3, 1, 1, "batch", flc=4, down=(1, 2, 1), up=(1, 2, 1), use_inverse=True),
        _builtin("vnet_generator", norm="batch", first_layer_channels=4, down_blocks=[1, 2, 1], up_blocks=[1, 2, 1],
                 use_inverse=True), saved_as="ganslate"),
    "ganslate-vnet3d-inverse-direction": Layout(
        lambda: Vnet(3, 1, 1, "batch", flc=4, down=(1, 1), up=(1, 1), use_inverse=True),
        _builtin("vnet_generator", norm="batch", first_layer_channels=4, down_blocks=[1, 1], up_blocks=[1, 1],
                 use_inverse=True, direction="inverse"), saved_as="ganslate", extra={"inverse": True}),
    "ganslate-vnet2d-instance": Layout(lambda: Vnet(2, 2, 1, "instance", flc=4, down=(1, 2), up=(2, 1)),
                                       _builtin("vnet_generator", in_channels=2, first_layer_channels=4,
                                                down_blocks=[1, 2], up_blocks=[2, 1], spatial_dims=2),
                                       saved_as="ganslate", size=(16, 16), channels=(2, 1)),
    # MONAI: the peer's own classes
    "monai-unet-3d": Layout(lambda: nets.UNet(3, 1, 1, channels=(4, 8, 16), strides=(2, 2), num_res_units=1),
                            {"type": "monai", "name": "UNet", "params": {
                                "spatial_dims": 3, "in_channels": 1, "out_channels": 1, "channels": [4, 8, 16],
                                "strides": [2, 2], "num_res_units": 1}}, saved_as="monai"),
    "monai-basicunet-2d": Layout(lambda: nets.BasicUNet(2, 1, 1, features=(4, 4, 8, 8, 16, 4)),
                                 {"type": "monai", "name": "BasicUNet", "params": {
                                     "spatial_dims": 2, "in_channels": 1, "out_channels": 1,
                                     "features": [4, 4, 8, 8, 16, 4]}}, saved_as="monai", size=(32, 32)),
}


def _save_like_the_peer(net: nn.Module, layout: Layout, folder) -> Tuple[str, str]:
    """Writes the weights as the peer's training code does; returns (file name, card format)."""
    return save_like_the_peer(net, layout.saved_as, folder)


def _card(layout: Layout, folder, weights_file: str, fmt: str):
    data = tiny_card_data(architecture=layout.architecture, inputs=layout.channels[0], roi=layout.size)
    if len(layout.size) == 2:
        data["inference"]["planes"] = ["axial"]
    data["inference"]["divisible_by"] = required_divisor(layout.architecture)
    data["weights"] = {"key": "G_AB"} if fmt == "ganslate" else {}
    return save_model_folder(folder, data, fmt=fmt, weights_file=weights_file)


def _peer_output(net: nn.Module, x: torch.Tensor, layout: Layout) -> torch.Tensor:
    with torch.no_grad():
        if layout.peer_mode == "train":
            net.train()
            return torch.cat([net(x[i:i + 1]) for i in range(len(x))])
        net.eval()
        return net(x, inverse=True) if layout.extra.get("inverse") else net(x)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_a_peer_checkpoint_computes_what_the_peer_computes(name, tmp_path):
    layout = LAYOUTS[name]
    torch.manual_seed(0)
    peer = randomise(layout.build())
    weights_file, fmt = _save_like_the_peer(peer, layout, tmp_path)
    card = _card(layout, tmp_path, weights_file, fmt)
    x = torch.randn(3, layout.channels[0], *layout.size)
    expected = _peer_output(peer, x, layout)
    loaded = load_generator(card)
    with torch.no_grad():
        got = loaded(x)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= ATOL
    assert expected.std() > 1e-3  # the comparison is not between two constants


def test_dropout_at_inference_draws_what_the_peer_draws(tmp_path):
    """junyanz's test.py without --eval: dropout stays on and batch norm uses the image's statistics."""
    layout = Layout(lambda: unet("junyanz", 2, 1, 1, 6, ngf=2, norm="batch", dropout=True),
                    _builtin("unet_generator", {"norm_statistics": "window", "dropout": True}, num_downs=6, ngf=2,
                             norm="batch", use_dropout=True, spatial_dims=2), size=(64, 64))
    torch.manual_seed(0)
    peer = randomise(layout.build())
    card = _card(layout, tmp_path, *_save_like_the_peer(peer, layout, tmp_path))
    loaded = load_generator(card)
    x = torch.randn(1, 1, 64, 64)
    outputs = []
    for net in (peer.train(), loaded):
        torch.manual_seed(5)
        with torch.no_grad():
            outputs.append(net(x))
    assert (outputs[0] - outputs[1]).abs().max().item() <= ATOL
    torch.manual_seed(6)
    with torch.no_grad():
        assert (loaded(x) - outputs[1]).abs().max().item() > 1e-3  # dropout really is on


def test_the_card_decides_the_padding(tmp_path):
    """Padding holds no weights: davidiommi's checkpoint described with junyanz's padding loads and computes
    something else. This is why the card names the padding, and why `models check` exists."""
    layout = LAYOUTS["davidiommi-resnet-instance"]
    torch.manual_seed(0)
    peer = randomise(layout.build())
    weights_file, fmt = _save_like_the_peer(peer, layout, tmp_path)
    wrong = dict(layout.architecture, params=dict(layout.architecture["params"], edge_padding="reflect"))
    card = _card(Layout(layout.build, wrong), tmp_path, weights_file, fmt)
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert (load_generator(card)(x) - _peer_output(peer, x, layout)).abs().max().item() > 1e-2


@pytest.mark.parametrize("name, told, needed", [
    ("ganslate-resnet3d-batch", {}, "bias {'conv': False, 'transposed': True, 'output': False}"),
    ("ganslate-resnet2d-instance", {"encoder_alias": False}, "encoder_alias True"),
    ("davidiommi-unet-instance", {"bias": None}, "bias {'conv': False, 'transposed': False, 'output': True}"),
    ("ganslate-vnet3d-batch-inverse-layers", {"use_inverse": False}, "use_inverse True"),
    ("junyanz-resnet-3d-none-legacy", {"norm": "instance"}, "norm 'none'"),
])
def test_a_layout_the_card_does_not_describe_is_refused_with_the_fix(name, told, needed, tmp_path):
    layout = LAYOUTS[name]
    params = {k: v for k, v in dict(layout.architecture["params"], **told).items() if v is not None}
    if not told:
        params.pop("bias")
    wrong = dict(layout.architecture, params=params)
    torch.manual_seed(0)
    weights_file, fmt = _save_like_the_peer(randomise(layout.build()), layout, tmp_path)
    card = _card(Layout(layout.build, wrong, size=layout.size), tmp_path, weights_file, fmt)
    with pytest.raises(WeightsError, match="do not fit") as refused:
        load_generator(card)
    assert needed in str(refused.value)


def test_aliased_keys_with_different_values_are_refused(tmp_path):
    layout = LAYOUTS["ganslate-vnet3d-instance"]
    torch.manual_seed(0)
    peer = randomise(layout.build())
    state = peer.state_dict()
    state["encoder.0.conv1.weight"] = state["encoder.0.conv1.weight"] + 1  # ganslate saves in_ab twice
    torch.save({"G_AB": state}, tmp_path / "ckpt.pth")
    card = _card(layout, tmp_path, "ckpt.pth", "ganslate")
    with pytest.raises(WeightsError, match="different values for keys the network shares"):
        load_generator(card)


@pytest.mark.parametrize("statistics, peer_mode", [("running", "eval"), ("window", "train")])
def test_saved_instance_norm_statistics_are_used_or_ignored_as_the_card_says(statistics, peer_mode, tmp_path):
    """Older junyanz code tracks instance-norm statistics: its test.py --eval uses them, without --eval it does
    not. The card says which; both compute the peer's output, also for a layer whose saved statistics are still
    the initial ones (eval mode uses those too)."""
    layout = Layout(lambda: resnet("junyanz", 2, 1, 1, ngf=4, n_blocks=1, tracks=True),
                    _builtin("resnet_generator", {"norm_statistics": statistics}, ngf=4, n_blocks=1, spatial_dims=2),
                    peer_mode=peer_mode, size=(16, 16))
    torch.manual_seed(0)
    peer = randomise(layout.build())
    untrained = peer.model[2]
    untrained.running_mean.zero_()
    untrained.running_var.fill_(1.0)
    card = _card(layout, tmp_path, *_save_like_the_peer(peer, layout, tmp_path))
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert (load_generator(card)(x) - _peer_output(peer, x, layout)).abs().max().item() <= ATOL


def test_saved_instance_norm_statistics_without_a_stated_mode_are_refused(tmp_path):
    layout = Layout(lambda: resnet("junyanz", 2, 1, 1, ngf=4, n_blocks=1, tracks=True),
                    _builtin("resnet_generator", ngf=4, n_blocks=1, spatial_dims=2), size=(16, 16))
    torch.manual_seed(0)
    card = _card(layout, tmp_path, *_save_like_the_peer(randomise(layout.build()), layout, tmp_path))
    with pytest.raises(WeightsError, match=r"running statistics for instance-norm layers \(model\.2.*"
                                           r"norm_statistics to 'running' \(eval mode\) or 'window'"):
        load_generator(card)
