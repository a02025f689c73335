"""The built-in generators keep the reference pix2pix/CycleGAN layout; build_network reads card architectures."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from MedGANTranslateLib.errors import CardError
from MedGANTranslateLib.networks import (
    ResnetGenerator,
    UnetGenerator,
    build_network,
    required_divisor,
)


def _n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize(
    "n_blocks, padding, norm",
    [(6, "reflect", "instance"), (9, "replicate", "batch"), (6, "zeros", "none")],
)
def test_resnet_shape_and_tanh_range(n_blocks, padding, norm):
    torch.manual_seed(0)
    net = ResnetGenerator(2, 1, ngf=4, n_blocks=n_blocks, norm=norm, padding=padding).eval()
    x = torch.randn(2, 2, 16, 12, 8) * 50  # large inputs push the output into Tanh saturation
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, 1, 16, 12, 8)
    assert y.abs().max() <= 1.0
    assert y.std() > 0
    blocks = [m for m in net.model if m.__class__.__name__ == "ResnetBlock"]
    assert len(blocks) == n_blocks
    pad_type = {"reflect": nn.ReflectionPad3d, "replicate": nn.ReplicationPad3d, "zeros": None}[padding]
    pads = [m for m in blocks[0].conv_block if isinstance(m, (nn.ReflectionPad3d, nn.ReplicationPad3d))]
    assert [type(m) for m in pads] == ([pad_type] * 2 if pad_type else [])


def test_resnet_key_layout_matches_reference():
    sd = ResnetGenerator(1, 1, ngf=4, n_blocks=9).state_dict()
    top = sorted({k.split(".")[1] for k in sd}, key=int)
    # stem conv 1, downsamplings 4 and 7, blocks 10-18, transposed convs 19 and 22, output conv 26
    assert top == ["1", "4", "7"] + [str(i) for i in range(10, 19)] + ["19", "22", "26"]
    assert sd["model.1.weight"].shape == (4, 1, 7, 7, 7)
    assert sd["model.10.conv_block.1.weight"].shape == (16, 16, 3, 3, 3)
    assert sd["model.10.conv_block.5.weight"].shape == (16, 16, 3, 3, 3)
    assert sd["model.19.weight"].shape == (16, 8, 3, 3, 3)  # ConvTranspose: (in, out, k, k, k)
    assert sd["model.26.weight"].shape == (1, 4, 7, 7, 7)
    assert not any("running_mean" in k for k in sd)  # InstanceNorm without running stats


def test_resnet_batch_norm_drops_conv_bias_and_zero_padding_shifts_block_indices():
    sd = ResnetGenerator(1, 1, ngf=4, n_blocks=1, norm="batch").state_dict()
    assert "model.1.bias" not in sd and "model.2.running_mean" in sd and "model.18.bias" in sd  # output conv keeps its bias
    zero = ResnetGenerator(1, 1, ngf=4, n_blocks=1, padding="zeros", use_dropout=True).state_dict()
    assert {k for k in zero if "conv_block" in k} == {
        "model.10.conv_block.0.weight", "model.10.conv_block.0.bias",
        "model.10.conv_block.4.weight", "model.10.conv_block.4.bias",
    }


def test_resnet_parameter_count():
    net = ResnetGenerator(1, 1, ngf=2, n_blocks=1)
    expected = (
        (1 * 2 * 343 + 2) + (2 * 4 * 27 + 4) + (4 * 8 * 27 + 8)  # stem, two downsamplings
        + 2 * (8 * 8 * 27 + 8)  # one residual block
        + (8 * 4 * 27 + 4) + (4 * 2 * 27 + 2) + (2 * 1 * 343 + 1)  # two upsamplings, output conv
    )
    assert _n_params(net) == expected


def test_resnet_dropout_active_only_in_training():
    torch.manual_seed(0)
    net = ResnetGenerator(1, 1, ngf=4, n_blocks=2, use_dropout=True)
    x = torch.randn(1, 1, 8, 8, 8)
    with torch.no_grad():
        assert not torch.equal(net.train()(x), net(x))
        net.eval()
        assert torch.equal(net(x), net(x))


@pytest.mark.parametrize("norm, shape", [("batch", (16, 8, 24)), ("instance", (8, 16, 16))])
def test_unet_shape_and_tanh_range(norm, shape):
    torch.manual_seed(0)
    net = UnetGenerator(3, 2, num_downs=3, ngf=4, norm=norm).eval()
    with torch.no_grad():
        y = net(torch.randn(1, 3, *shape) * 50)
    assert y.shape == (1, 2, *shape)
    assert y.abs().max() <= 1.0 and y.std() > 0


def test_unet_five_levels_runs_at_32():
    net = UnetGenerator(1, 1, num_downs=5, ngf=2, norm="instance").eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 32, 32, 32)).shape == (1, 1, 32, 32, 32)


def test_unet_key_layout_matches_reference_unet_256():
    sd = UnetGenerator(1, 1, num_downs=8, ngf=2).state_dict()
    innermost = "model.model.1" + ".model.3" * 6
    assert sd["model.model.0.weight"].shape == (2, 1, 4, 4, 4)
    assert sd["model.model.3.weight"].shape == (4, 1, 4, 4, 4)  # outermost up: 2*ngf -> out
    assert "model.model.3.bias" in sd and "model.model.0.bias" not in sd
    assert sd["model.model.1.model.1.weight"].shape == (4, 2, 4, 4, 4)
    assert sd["model.model.1.model.2.running_mean"].shape == (4,)
    assert sd[f"{innermost}.model.1.weight"].shape == (16, 16, 4, 4, 4)
    assert sd[f"{innermost}.model.3.weight"].shape == (16, 16, 4, 4, 4)
    assert f"{innermost}.model.4.weight" in sd  # innermost up norm; no down norm
    assert f"{innermost}.model.2.weight" not in sd


def test_unet_dropout_in_middle_ngf8_levels_only_and_keys_unchanged():
    plain = UnetGenerator(1, 1, num_downs=7, ngf=2)
    dropped = UnetGenerator(1, 1, num_downs=7, ngf=2, use_dropout=True)
    assert list(plain.state_dict()) == list(dropped.state_dict())
    holders = [m for m in dropped.modules()
               if hasattr(m, "outermost") and any(isinstance(c, nn.Dropout) for c in m.model)]
    # levels 4 and 5 (ngf*8 -> ngf*8); not level 3 (ngf*4 -> ngf*8) nor the innermost level 6
    assert len(holders) == 2
    for block in holders:
        assert block.model[1].in_channels == block.model[1].out_channels == 16
        assert block.model[-1].p == 0.5


def test_unet_parameter_count():
    net = UnetGenerator(1, 1, num_downs=3, ngf=2, norm="batch")
    expected = (
        (1 * 2 * 64) + (4 * 1 * 64 + 1)  # outermost: down conv, up conv with bias
        + (2 * 4 * 64) + 2 * 4 + (8 * 2 * 64) + 2 * 2  # middle: down, BN, up, BN
        + (4 * 8 * 64) + (8 * 4 * 64) + 2 * 4  # innermost: down, up, BN
    )
    assert _n_params(net) == expected


def test_invalid_options_raise():
    with pytest.raises(ValueError, match="norm"):
        ResnetGenerator(1, 1, norm="group")
    with pytest.raises(ValueError, match="padding"):
        ResnetGenerator(1, 1, padding="circular")
    with pytest.raises(ValueError, match="num_downs"):
        UnetGenerator(1, 1, num_downs=1)


def test_build_network_builtin():
    arch = {"type": "builtin", "name": "resnet_generator",
            "params": {"in_channels": 2, "out_channels": 1, "ngf": 4, "n_blocks": 3, "norm": "batch"}}
    net = build_network(arch)
    assert isinstance(net, ResnetGenerator)
    assert net.model[1].weight.shape == (4, 2, 7, 7, 7)
    assert isinstance(net.model[2], nn.BatchNorm3d)


def test_build_network_monai_by_name():
    from monai.networks.nets import BasicUNet

    arch = {"type": "monai", "name": "BasicUNet",
            "params": {"spatial_dims": 3, "in_channels": 1, "out_channels": 1, "features": [2, 2, 4, 4, 8, 2]}}
    net = build_network(arch).eval()
    assert isinstance(net, BasicUNet)
    assert required_divisor(arch) == 16
    with torch.no_grad():
        assert net(torch.randn(1, 1, 16, 16, 32)).shape == (1, 1, 16, 16, 32)


def test_build_network_errors_name_the_architecture():
    with pytest.raises(CardError, match=r"'builtin'/'vnet'.*resnet_generator, unet_generator"):
        build_network({"type": "builtin", "name": "vnet", "params": {}})
    with pytest.raises(CardError, match=r"'BasicUNett'.*did you mean BasicUNet"):
        build_network({"type": "monai", "name": "BasicUNett", "params": {}})
    with pytest.raises(CardError, match=r"unet_generator.*num_downs"):
        build_network({"type": "builtin", "name": "unet_generator", "params": {"in_channels": 1, "out_channels": 1}})
    with pytest.raises(CardError, match="norm must be one of"):
        build_network({"type": "builtin", "name": "unet_generator",
                       "params": {"in_channels": 1, "out_channels": 1, "num_downs": 3, "norm": "layer"}})
    with pytest.raises(CardError, match="load_generator"):
        build_network({"type": "onnx"})


def test_required_divisor_values():
    assert required_divisor({"type": "builtin", "name": "unet_generator", "params": {"num_downs": 5}}) == 32
    assert required_divisor({"type": "builtin", "name": "resnet_generator", "params": {}}) == 4
    assert required_divisor({"type": "monai", "name": "UNet", "params": {"strides": [2, 2, [2, 2, 1]]}}) == 8
    assert required_divisor({"type": "monai", "name": "Unet", "params": {"strides": [2, 3]}}) == 6
    assert required_divisor({"type": "monai", "name": "DynUNet", "params": {"strides": [1, 2, 2]}}) == 4
    assert required_divisor({"type": "monai", "name": "SegResNet", "params": {}}) == 8
    assert required_divisor({"type": "torchscript"}) == 1


@pytest.mark.parametrize("arch", [
    {"type": "builtin", "name": "unet_generator",
     "params": {"in_channels": 1, "out_channels": 1, "num_downs": 3, "ngf": 2, "norm": "instance"}},
    {"type": "monai", "name": "UNet",
     "params": {"spatial_dims": 3, "in_channels": 1, "out_channels": 1, "channels": [2, 4, 8], "strides": [2, 2]}},
])
def test_required_divisor_is_what_the_network_needs(arch):
    net, d = build_network(arch).eval(), required_divisor(arch)
    with torch.no_grad():
        assert net(torch.randn(1, 1, d, 2 * d, 3 * d)).shape == (1, 1, d, 2 * d, 3 * d)
        with pytest.raises(RuntimeError):
            net(torch.randn(1, 1, d + d // 2, d, d))


@pytest.mark.parametrize("name, params, biased", [
    ("resnet_generator", {"ngf": 4, "n_blocks": 1}, {"model.18.bias"}),  # only the 7³ output convolution
    ("unet_generator", {"ngf": 4, "num_downs": 3}, {"model.model.3.bias"}),  # only the outermost up-convolution
])
def test_without_norm_the_convolutions_have_junyanz_biases(name, params, biased):
    """junyanz gives convolutions a bias only before instance norm (use_bias = norm_layer == InstanceNorm), so a
    norm: none checkpoint has none but the output layer's; the built-in gave every convolution one and refused it."""
    net = build_network({"type": "builtin", "name": name,
                         "params": dict(params, in_channels=1, out_channels=1, norm="none")})
    assert {k for k in net.state_dict() if k.endswith("bias")} == biased
