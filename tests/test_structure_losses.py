"""Structure-consistency losses (issue 23 item 3): they see shape, not intensity, and they steer a CycleGAN."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from MedGANTranslateLib.errors import MedGANError
from MedGANTranslateLib.training.config import complete_config
from MedGANTranslateLib.training.recipes import CycleGAN, adversarial_weight
from MedGANTranslateLib.training.structure_losses import GradientConsistencyLoss, MINDLoss, mind_ssc

from test_training import tiny_config


@pytest.fixture(scope="module")
def head() -> torch.Tensor:
    """A smooth box with an inner box: edges in all three directions, and noise above the descriptor's floor."""
    torch.manual_seed(0)
    x = torch.zeros(1, 1, 32, 32, 32)
    x[..., 6:26, 8:24, 5:28] = 1.0
    x[..., 12:18, 12:20, 10:20] = 0.3
    return F.avg_pool3d(x + 0.1 * torch.randn_like(x), 3, 1, 1)


@pytest.mark.parametrize("loss", [MINDLoss(floor=1e-9), GradientConsistencyLoss(floor=1e-9)], ids=["mind", "gradient"])
def test_structure_losses_ignore_contrast_and_see_displacement(head, loss):
    """Without the floors that keep flat patches finite, both are exactly indifferent to contrast."""
    same = loss(head, head).item()
    # a CT of the same anatomy has other values and the opposite order in places: an affine change, even an
    # inversion (dark T1w bone, bright CT bone), costs nothing
    assert loss(head, 3.0 * head - 2.0).item() == pytest.approx(same, abs=1e-5)
    assert loss(head, -head).item() == pytest.approx(same, abs=1e-5)
    shifted = loss(head, torch.roll(head, 3, dims=-1)).item()
    assert shifted > same + 0.03, "anatomy moved by 3 voxels must cost"
    assert loss(head, torch.zeros_like(head)).item() > same + 0.05, "erased anatomy must cost"


def test_mind_of_an_image_with_itself_is_zero_and_its_descriptor_is_bounded(head):
    assert MINDLoss()(head, head).item() == 0.0
    d = mind_ssc(torch.cat([head, -head], dim=1))  # two channels: one descriptor, their mean
    assert d.shape == (1, 12, 32, 32, 32)
    assert torch.all(d > 0) and torch.all(d <= 1)
    assert torch.allclose(d, mind_ssc(head), atol=1e-6)
    two = mind_ssc(torch.cat([head, torch.roll(head, 3, dims=-1)], dim=1))
    assert torch.allclose(two, (mind_ssc(head) + mind_ssc(torch.roll(head, 3, dims=-1))) / 2, atol=1e-6)
    # with the floor, a contrast change moves the descriptor only where the image is nearly flat
    assert MINDLoss()(head, 3.0 * head - 2.0).item() < 1e-3


@pytest.mark.parametrize("loss", [MINDLoss(), GradientConsistencyLoss()], ids=["mind", "gradient"])
def test_structure_losses_pull_a_generated_image_towards_the_source_anatomy(head, loss):
    guess = torch.roll(head, 2, dims=-1).clone().requires_grad_(True)
    before = loss(head, guess).item()
    opt = torch.optim.Adam([guess], lr=0.003)
    for _ in range(30):
        opt.zero_grad()
        loss(head, guess).backward()
        opt.step()
    assert loss(head, guess).item() < before - 0.01


def test_cyclegan_adds_the_weighted_structure_loss_of_both_generators():
    cfg = complete_config(tiny_config("cyclegan"))
    cfg["losses"].update(cycle=10.0, cycle_source=0.0, identity=0.0, structure={"kind": "mind", "weight": 5.0})
    torch.manual_seed(0)
    recipe = CycleGAN(cfg, 1, torch.device("cpu"))
    a, b = torch.rand(1, 1, 16, 16, 16) * 2 - 1, torch.rand(1, 1, 16, 16, 16) * 2 - 1
    out = recipe.step(a, b, 0, np.random.default_rng(0))
    assert out["structure"] > 0
    assert out["G"] == pytest.approx(out["G_adv"] + 10.0 * out["cycle_b"] + 5.0 * out["structure"], rel=1e-5)


def test_the_adversarial_weight_ramps_linearly_to_its_final_value_and_the_cyclegan_uses_it():
    cfg = complete_config(tiny_config("cyclegan", steps=11))
    cfg["losses"].update(adversarial=1.0, adversarial_final=3.0, cycle=10.0, cycle_source=0.0, identity=0.0)
    assert [adversarial_weight(cfg["losses"], cfg["optim"], s) for s in (0, 5, 10, 20)] == [1.0, 2.0, 3.0, 3.0]
    assert adversarial_weight(dict(cfg["losses"], adversarial_final=None), cfg["optim"], 10) == 1.0
    torch.manual_seed(0)
    recipe = CycleGAN(cfg, 1, torch.device("cpu"))
    a, b = torch.rand(1, 1, 16, 16, 16) * 2 - 1, torch.rand(1, 1, 16, 16, 16) * 2 - 1
    out = recipe.step(a, b, 10, np.random.default_rng(0))
    assert out["G"] == pytest.approx(3.0 * out["G_adv"] + 10.0 * out["cycle_b"], rel=1e-5)
    for bad in (-1.0, "strong", True):
        config = tiny_config("cyclegan")
        config["losses"] = {"adversarial_final": bad}
        with pytest.raises(MedGANError, match="adversarial_final"):
            complete_config(config)


@pytest.mark.parametrize("structure, named", [
    ({"kind": "ssim", "weight": 1.0}, "kind"),
    ({"kind": "mind", "weight": -1.0}, "weight"),
    ({"kind": "mind", "weight": 1.0, "radius": 1, "sigma": 2}, "sigma"),
])
def test_a_bad_structure_loss_is_refused_by_name(structure, named):
    config = tiny_config("cyclegan")
    config["losses"] = {"structure": structure}
    with pytest.raises(MedGANError, match="losses.structure") as error:
        complete_config(config)
    assert named in str(error.value)


@pytest.mark.parametrize("loss", [MINDLoss(), GradientConsistencyLoss()], ids=["mind", "gradient"])
@pytest.mark.parametrize("wobble", [0.0, 1e-3])
def test_structure_losses_on_a_flat_patch_give_finite_values_and_gradients(loss, wobble):
    """Background patches are constant, and a generator can make one: a variance or gradient norm of 0 there once
    gave NaN in training."""
    flat = torch.full((1, 1, 16, 16, 16), -1.0)
    generated = (torch.full_like(flat, -1.0) + wobble * torch.randn_like(flat)).requires_grad_(True)
    loss = loss(flat, generated)
    loss.backward()
    assert torch.isfinite(loss) and torch.all(torch.isfinite(generated.grad))
    assert generated.grad.abs().max() < 1e3
