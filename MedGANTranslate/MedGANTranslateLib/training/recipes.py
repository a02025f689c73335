"""The two training recipes: paired pix2pix (Isola et al. 2017) and unpaired CycleGAN (Zhu et al. 2017).

Both use MONAI's PatchDiscriminator and PatchAdversarialLoss; a recipe owns its networks, optimisers,
learning-rate schedule and AMP scaler, does one optimisation step per call, and round-trips its whole state
through a checkpoint so a resumed run continues exactly where it stopped.
"""
from __future__ import annotations

import contextlib
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
from monai.losses import PatchAdversarialLoss
from monai.networks.nets import PatchDiscriminator
from torch import nn
from torch.nn import functional as F

from ..fastconv import use_space_to_depth
from ..devices import cpu_bfloat16_native
from ..networks import build_network
from .data import PatchSampler, to_network_range
from .structure_losses import structure_loss


def _generator(architecture: Dict[str, Any], device: torch.device) -> nn.Module:
    """The card's generator, its image-side large-kernel convolutions computed space-to-depth (same function and
    parameter names, several times faster to train on the CPU; see :mod:`..fastconv`)."""
    return use_space_to_depth(build_network(architecture)).to(device)


def _discriminator(cfg: Dict[str, Any], in_channels: int) -> nn.Module:
    d = cfg["discriminator"]
    return PatchDiscriminator(spatial_dims=3, channels=int(d["channels"]), in_channels=in_channels, out_channels=1,
                              num_layers_d=int(d["num_layers_d"]), norm=d["norm"])


def _lr_schedule(optim: Dict[str, Any]):
    """Constant, then linear decay to zero from ``decay_from`` × steps (the pix2pix/CycleGAN schedule)."""
    total = int(optim["steps"])
    start = int(float(optim["decay_from"]) * total)

    def factor(step: int) -> float:
        return 1.0 if step < start else max(0.0, (total - step) / max(1, total - start))

    return factor


def adversarial_weight(losses: Dict[str, Any], optim: Dict[str, Any], step: int) -> float:
    """``losses.adversarial``; with ``losses.adversarial_final``, a linear ramp from it at step 0 to that at the
    last step, so the structure settles under a weak adversarial term before a strong one pushes realism."""
    start, final = float(losses["adversarial"]), losses.get("adversarial_final")
    if final is None:
        return start
    last = max(1, int(optim["steps"]) - 1)
    return start + (float(final) - start) * min(step, last) / last


def _set_grad(modules: List[nn.Module], flag: bool) -> None:
    """Discriminators need no gradients while the generators step: saves their backward pass."""
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(flag)


class EmphasisedL1:
    """Mean absolute error in which voxels near a bright target structure count ``weight`` times.

    Near means within ``radius`` voxels (a (2r+1)³ cube) of a target voxel above ``target_above``, given in the
    output's unit (HU for CT) and mapped to the network's range with the card's output mapping. For MR→CT this is
    the skull and the tissue on both sides of its edges, where the T1w leaves the CT most ambiguous (cortical bone
    and CSF are both dark) and where most of a plain L1 model's error sits. The mean is weighted,
    Σ w·|fake − y| / Σ w, so the loss keeps its scale; weight 1 is the plain mean.
    """

    def __init__(self, emphasis: Dict[str, Any], postprocessing: Dict[str, Any]) -> None:
        self.weight = float(emphasis["weight"])
        self.radius = int(emphasis["radius"])
        self.threshold = float(to_network_range(np.array([emphasis["target_above"]]), postprocessing)[0])

    def weights(self, target: torch.Tensor) -> torch.Tensor:
        near = (target > self.threshold).float()
        if self.radius:
            near = F.max_pool3d(near, 2 * self.radius + 1, stride=1, padding=self.radius)
        return 1.0 + (self.weight - 1.0) * near

    def __call__(self, fake: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        error = torch.abs(fake.float() - target)
        if self.weight == 1.0:
            return torch.mean(error)
        w = self.weights(target)
        return torch.sum(w * error) / torch.sum(w)


class ImagePool:
    """History of generated patches shown to the discriminator (Shrivastava et al. 2017): with a full pool,
    each new patch is swapped for a stored one half the time, which damps discriminator oscillation."""

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self.images: List[torch.Tensor] = []

    def query(self, batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if self.size <= 0:
            return batch
        out = []
        for image in batch.detach():
            image = image[None]
            if len(self.images) < self.size:
                self.images.append(image.cpu().clone())
                out.append(image)
            elif rng.random() < 0.5:
                k = int(rng.integers(self.size))
                out.append(self.images[k].to(batch.device))
                self.images[k] = image.cpu().clone()
            else:
                out.append(image)
        return torch.cat(out)


class Recipe:
    """Shared machinery: device, AMP (float16 on CUDA; bfloat16 on the CPU when ``cpu_bfloat16``), optimisers
    with the LR schedule, state for checkpoints."""

    generator: nn.Module
    modules: Dict[str, nn.Module]
    #: Each trained network's key in :attr:`modules` and the attribute :meth:`step` calls it through.
    ATTRIBUTES: Dict[str, str] = {}
    EXPORTED = "G"

    def __init__(self, cfg: Dict[str, Any], device: torch.device) -> None:
        self.cfg = cfg
        self.device = device
        self.losses = cfg["losses"]
        self.amp = bool(cfg["amp"]) and device.type == "cuda"
        # bfloat16 needs no loss scaling; only where the CPU computes it natively, elsewhere it is slower
        self.cpu_bfloat16 = bool(cfg["cpu_bfloat16"]) and device.type == "cpu" and cpu_bfloat16_native()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.adv = PatchAdversarialLoss(criterion=self.losses["gan_mode"], no_activation_leastsq=True)

    def _optimisers(self, groups: Dict[str, List[nn.Module]]) -> None:
        o = self.cfg["optim"]
        self.optimizers = {
            name: torch.optim.Adam([p for m in mods for p in m.parameters()], lr=float(o["lr"]), betas=tuple(o["betas"]))
            for name, mods in groups.items()
        }
        self.base_lr = float(o["lr"])
        self.lr_factor = _lr_schedule(o)

    def set_lr(self, step: int) -> None:
        """Sets the learning rate from the step alone, so a resumed run needs no scheduler state."""
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = self.base_lr * self.lr_factor(step)

    @property
    def precision(self) -> str:
        """The arithmetic the networks actually train in, for the card: a CPU without native bfloat16 trains in
        float32 even when the config asks for ``cpu_bfloat16``."""
        return "float16" if self.amp else "bfloat16" if self.cpu_bfloat16 else "float32"

    def _autocast(self):
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        if self.cpu_bfloat16:
            return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _adv(self, d: nn.Module, x: torch.Tensor, real: bool, for_d: bool) -> torch.Tensor:
        return self.adv(d(x)[-1].float(), target_is_real=real, for_discriminator=for_d)

    def _backward(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)

    def _end_step(self) -> None:
        self.scaler.update()

    def to_tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(self.device)

    def train(self) -> None:
        for m in self.modules.values():
            m.train()

    @property
    def exported(self) -> nn.Module:
        """The generator the model folder gets (the plain network, also when :meth:`distribute` wrapped it)."""
        return self.modules[self.EXPORTED]

    def distribute(self) -> None:
        """Under torchrun: each network :meth:`step` calls becomes a ``DistributedDataParallel`` (its gradients
        averaged over the ranks in every backward; rank 0's weights broadcast at the start), while
        :attr:`modules` keeps the plain networks for checkpoints and export. ``find_unused_parameters``: a
        discriminator is frozen (no gradients) while its generator trains."""
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        for key, attribute in self.ATTRIBUTES.items():
            setattr(self, attribute, DistributedDataParallel(self.modules[key], device_ids=ids,
                                                             find_unused_parameters=key.startswith("D")))

    def state_dict(self) -> Dict[str, Any]:
        return {
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        for k, m in self.modules.items():
            m.load_state_dict(state["modules"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        self.scaler.load_state_dict(state["scaler"])


class Pix2Pix(Recipe):
    """U-Net generator + conditional PatchGAN on (input, output) pairs; L1 + adversarial loss. The first
    ``optim.warmup_steps`` steps use L1 alone, which gets a CPU budget to a sensible image much faster.
    ``losses.l1_emphasis`` weighs the L1 near bright target structures (:class:`EmphasisedL1`)."""

    ATTRIBUTES = {"G": "generator", "D": "disc"}

    def __init__(self, cfg: Dict[str, Any], in_channels: int, device: torch.device) -> None:
        super().__init__(cfg, device)
        self.generator = _generator(cfg["generator"], device)
        self.disc = _discriminator(cfg, in_channels + 1).to(device)
        self.modules = {"G": self.generator, "D": self.disc}
        self._optimisers({"G": [self.generator], "D": [self.disc]})
        self.l1 = EmphasisedL1(self.losses["l1_emphasis"], cfg["card"]["postprocessing"])

    def sample(self, sampler: PatchSampler, rng: np.random.Generator, batch: int) -> Tuple[np.ndarray, np.ndarray]:
        return sampler.paired(rng, batch)

    def step(self, x: torch.Tensor, y: torch.Tensor, step: int, rng: np.random.Generator) -> Dict[str, float]:
        self.set_lr(step)
        weight = adversarial_weight(self.losses, self.cfg["optim"], step)
        adversarial = step >= int(self.cfg["optim"]["warmup_steps"]) and weight > 0
        out: Dict[str, float] = {}
        with self._autocast():
            fake = self.generator(x)
        if adversarial:
            _set_grad([self.disc], True)
            with self._autocast():
                loss_d = 0.5 * (self._adv(self.disc, torch.cat([x, fake.detach()], 1), False, True)
                                + self._adv(self.disc, torch.cat([x, y], 1), True, True))
            self._backward(loss_d, self.optimizers["D"])
            out["D"] = loss_d.item()
            _set_grad([self.disc], False)
        with self._autocast():
            l1 = self.l1(fake, y)
            loss_g = float(self.losses["l1"]) * l1
            if adversarial:
                g_adv = self._adv(self.disc, torch.cat([x, fake], 1), True, False)
                loss_g = loss_g + weight * g_adv
                out["G_adv"] = g_adv.item()
        self._backward(loss_g, self.optimizers["G"])
        self._end_step()
        out.update(G=loss_g.item(), L1=l1.item())
        return out


class CycleGAN(Recipe):
    """Two generators (A→B is exported, B→A only trains it) and two PatchGANs with least-squares adversarial,
    cycle (λ = ``losses.cycle``; A→B→A times ``losses.cycle_source``) and identity (λ = ``losses.identity`` ×
    ``losses.cycle``) losses and image pools. Identity needs as many input channels as output channels.

    When the target holds less information than the source (CT barely separates grey from white matter, which
    T1w shows clearly), a full A→B→A cycle rewards a generator that smuggles the source's contrast into its
    output; a small ``cycle_source`` leaves that choice to the target's discriminator, while B→A→B still ties
    each output to its input.

    ``losses.structure`` (``{kind: mind|gradient, weight, …}``, :mod:`.structure_losses`) adds a structure-consistency
    term between each generator's input and output, weighted like the cycle loss it complements."""

    ATTRIBUTES = {"G_AB": "generator", "G_BA": "g_back", "D_A": "d_a", "D_B": "d_b"}
    EXPORTED = "G_AB"

    def __init__(self, cfg: Dict[str, Any], in_channels: int, device: torch.device) -> None:
        super().__init__(cfg, device)
        spec = self.losses.get("structure") or {"weight": 0.0}
        self.structure_weight = float(spec["weight"])
        self.structure = structure_loss(spec) if self.structure_weight > 0 else None
        g = cfg["generator"]
        params = dict(g["params"])
        if float(self.losses["identity"]) > 0 and params["in_channels"] != params["out_channels"]:
            raise ValueError("CycleGAN identity loss needs in_channels == out_channels; set losses.identity to 0.")
        back = dict(g, params=dict(params, in_channels=params["out_channels"], out_channels=params["in_channels"]))
        self.generator = _generator(g, device)
        self.g_back = _generator(back, device)
        self.d_a = _discriminator(cfg, in_channels).to(device)
        self.d_b = _discriminator(cfg, int(params["out_channels"])).to(device)
        self.modules = {"G_AB": self.generator, "G_BA": self.g_back, "D_A": self.d_a, "D_B": self.d_b}
        self._optimisers({"G": [self.generator, self.g_back], "D": [self.d_a, self.d_b]})
        self.pool_a = ImagePool(cfg["pool_size"])
        self.pool_b = ImagePool(cfg["pool_size"])

    def sample(self, sampler: PatchSampler, rng: np.random.Generator, batch: int) -> Tuple[np.ndarray, np.ndarray]:
        return sampler.unpaired(rng, batch)

    def step(self, a: torch.Tensor, b: torch.Tensor, step: int, rng: np.random.Generator) -> Dict[str, float]:
        self.set_lr(step)
        lc = float(self.losses["cycle"])
        lc_a = lc * float(self.losses["cycle_source"])
        li = float(self.losses["identity"]) * lc
        wa = adversarial_weight(self.losses, self.cfg["optim"], step)
        _set_grad([self.d_a, self.d_b], False)
        with self._autocast():
            fake_b = self.generator(a)
            fake_a = self.g_back(b)
            cycle_a = torch.mean(torch.abs(self.g_back(fake_b).float() - a))
            cycle_b = torch.mean(torch.abs(self.generator(fake_a).float() - b))
            adv = self._adv(self.d_b, fake_b, True, False) + self._adv(self.d_a, fake_a, True, False)
            loss_g = wa * adv + lc_a * cycle_a + lc * cycle_b
            structure = torch.zeros((), device=a.device)
            if self.structure is not None:
                structure = self.structure(a, fake_b) + self.structure(b, fake_a)
                loss_g = loss_g + self.structure_weight * structure
            idt = torch.zeros((), device=a.device)
            if li > 0:
                idt = torch.mean(torch.abs(self.generator(b).float() - b)) + torch.mean(torch.abs(self.g_back(a).float() - a))
                loss_g = loss_g + li * idt
        self._backward(loss_g, self.optimizers["G"])
        _set_grad([self.d_a, self.d_b], True)
        with self._autocast():
            pa = self.pool_a.query(fake_a, rng)
            pb = self.pool_b.query(fake_b, rng)
            loss_d = 0.5 * (self._adv(self.d_a, a, True, True) + self._adv(self.d_a, pa, False, True)
                            + self._adv(self.d_b, b, True, True) + self._adv(self.d_b, pb, False, True))
        self._backward(loss_d, self.optimizers["D"])
        self._end_step()
        return {"G": loss_g.item(), "G_adv": adv.item(), "cycle_a": cycle_a.item(), "cycle_b": cycle_b.item(),
                "identity": idt.item(), "structure": structure.item(), "D": loss_d.item()}

    def state_dict(self) -> Dict[str, Any]:
        state = super().state_dict()
        state["pools"] = {"A": self.pool_a.images, "B": self.pool_b.images}
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.pool_a.images = list(state["pools"]["A"])
        self.pool_b.images = list(state["pools"]["B"])


RECIPES = {"pix2pix": Pix2Pix, "cyclegan": CycleGAN}
