"""Space-to-depth convolutions: the same values and gradients as the convolution they replace, the same
parameter names, and only where they pay."""
from __future__ import annotations

import pytest
import torch

from MedGANTranslateLib.fastconv import SpaceToDepthConv3d, space_to_depth_eligible, use_space_to_depth
from MedGANTranslateLib.network_rewrite import optimise_for_inference
from MedGANTranslateLib.networks import ResnetGenerator, UnetGenerator


@pytest.mark.parametrize(
    "in_ch, out_ch, kernel, bias, shape",
    [(8, 1, 7, True, (2, 13, 12, 11)), (1, 8, 7, False, (1, 8, 9, 10)), (3, 2, 5, True, (1, 6, 7, 5)),
     (2, 2, 1, True, (1, 3, 2, 5))],
)
def test_space_to_depth_gives_the_convolutions_values_and_gradients(in_ch, out_ch, kernel, bias, shape):
    """Odd and even sizes on every axis: the odd ones are padded by one voxel that no kept output reads."""
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(in_ch, out_ch, kernel, bias=bias).double()
    fast = SpaceToDepthConv3d(conv)
    x = torch.randn(shape[0], in_ch, *shape[1:], dtype=torch.float64, requires_grad=True)
    expected, got = conv(x), fast(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=1e-12)
    upstream = torch.randn_like(expected)
    params = [x, conv.weight] + ([conv.bias] if bias else [])
    for a, b in zip(torch.autograd.grad(expected, params, upstream), torch.autograd.grad(got, params, upstream)):
        torch.testing.assert_close(b, a, atol=1e-12, rtol=1e-12)


def test_it_trains_the_convolutions_own_parameters_under_their_names():
    torch.manual_seed(0)
    plain = ResnetGenerator(1, 1, ngf=4, n_blocks=1, norm="batch")
    keys = list(plain.state_dict())
    fast = use_space_to_depth(ResnetGenerator(1, 1, ngf=4, n_blocks=1, norm="batch"))
    fast.load_state_dict(plain.state_dict())
    assert sum(isinstance(m, SpaceToDepthConv3d) for m in fast.modules()) == 2, "the image-side 7³ layers"
    assert list(fast.state_dict()) == keys
    before = plain.model[-2].weight.detach().clone()
    optimiser = torch.optim.SGD(fast.parameters(), lr=0.1)
    fast(torch.randn(1, 1, 16, 12, 16)).abs().mean().backward()
    optimiser.step()
    assert not torch.allclose(fast.model[-2].weight, before), "the output layer learns through the rewrite"
    plain.load_state_dict(fast.state_dict())
    plain.eval(), fast.eval()
    x = torch.randn(1, 1, 20, 16, 12)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), atol=1e-5, rtol=1e-5)


def test_only_large_kernels_with_an_image_on_one_side_are_rewritten():
    assert space_to_depth_eligible(torch.nn.Conv3d(8, 1, 7))
    assert space_to_depth_eligible(torch.nn.Conv3d(1, 8, 5))
    assert not space_to_depth_eligible(torch.nn.Conv3d(16, 8, 5)), "measured slower"
    assert not space_to_depth_eligible(torch.nn.Conv3d(8, 1, 3)), "small kernels are fast as they are"
    assert not space_to_depth_eligible(torch.nn.Conv3d(8, 1, 7, padding=3))
    assert not space_to_depth_eligible(torch.nn.Conv3d(8, 1, 6))
    assert not space_to_depth_eligible(torch.nn.Conv3d(8, 1, 7, stride=2))
    unet = UnetGenerator(1, 1, num_downs=3, ngf=4)
    assert not any(isinstance(m, SpaceToDepthConv3d) for m in use_space_to_depth(unet).modules())


def test_the_optimised_cyclegan_generator_computes_the_same():
    torch.manual_seed(2)
    net = ResnetGenerator(1, 1, ngf=4, n_blocks=2, norm="batch").eval()
    fast = optimise_for_inference(net)
    assert sum(isinstance(m, SpaceToDepthConv3d) for m in fast.modules()) == 2
    assert not any(isinstance(m, SpaceToDepthConv3d) for m in net.modules()), "the loaded network is not modified"
    x = torch.randn(1, 1, 24, 20, 28)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), net(x), atol=1e-5, rtol=1e-5)
