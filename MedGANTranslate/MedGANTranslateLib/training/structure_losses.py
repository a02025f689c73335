"""Structure-consistency losses for unpaired training: they compare the *shape* of a generator's input and output,
not their intensities, so a CycleGAN generator is held to the input's anatomy while the target domain's
discriminator decides the values.

Unpaired MR→CT fails in a known way: the cycle can be closed by any invertible remapping of intensities, so the
generator keeps the T1w brightness order (dark skull stays dark, bright fat turns bone-bright). Two remedies from
the literature, both indifferent to which modality is brighter where:

- :class:`MINDLoss`: the modality independent neighbourhood descriptor, self-similarity context variant
  (MIND-SSC; Heinrich et al., MICCAI 2013), as the structure constraint of Yang et al., "Unpaired brain MR-to-CT
  synthesis using a structure-constrained CycleGAN" (DLMIA 2018).
- :class:`GradientConsistencyLoss`: agreement of edge *directions*, the squared cosine of normalised gradient
  fields (Haber & Modersitzki 2006), the sign-free form of Hiasa et al.'s gradient-consistency loss (SASHIMI 2018):
  a signed gradient correlation would fight the skull, which is dark on T1w and bright on CT.

Both take (B, C, z, y, x) tensors; a several-channel image is described by the mean of its channels' descriptors.
"""
from __future__ import annotations

import itertools
from typing import Any, Dict, List, Tuple

import torch
from torch import nn
from torch.nn import functional as F

_AXIS_STEPS = [(1, 0, 0), (0, 1, 0), (0, 0, 1)]


def _six_neighbourhood(dilation: int) -> List[Tuple[int, int, int]]:
    return [tuple(sign * dilation * s for s in step) for step in _AXIS_STEPS for sign in (1, -1)]


def _ssc_pairs(dilation: int) -> List[Tuple[Tuple[int, int, int], Tuple[int, int, int]]]:
    """The 12 pairs of six-neighbourhood voxels √2·dilation apart: every pair except the three opposite ones."""
    offsets = _six_neighbourhood(dilation)
    return [(p, q) for p, q in itertools.combinations(offsets, 2) if any(a + b for a, b in zip(p, q))]


def _shifted(padded: torch.Tensor, offset: Tuple[int, int, int], pad: int, shape: torch.Size) -> torch.Tensor:
    """image(x + offset) for every x, from an image padded by ``pad`` on every side."""
    z, y, x = (pad + o for o in offset)
    return padded[..., z:z + shape[-3], y:y + shape[-2], x:x + shape[-1]]


def mind_ssc(image: torch.Tensor, radius: int = 1, dilation: int = 2, floor: float = 1e-4) -> torch.Tensor:
    """MIND-SSC descriptor, (B, 12, z, y, x) in (0, 1], of a (B, C, z, y, x) image (channels averaged).

    For each of the 12 neighbour pairs, the patch distance is the mean over a (2·radius+1)³ box of the squared
    difference between the image shifted to either neighbour; the descriptor is exp(−(D − min D) / V), with V the
    local mean of D − min D over the pairs, bounded to 10⁻³…10³ × its image mean and below by ``floor`` (in squared
    intensity units: 10⁻⁴ is a noise level of 0.01 in the networks' [−1, 1] range), so that a flat patch, such as
    background, neither divides by zero nor passes on gradients of 1/V. An affine change of intensity (including
    inversion) leaves it unchanged wherever V stays above the floor.
    """
    b, c = image.shape[:2]
    flat = image.float().reshape(b * c, 1, *image.shape[2:])
    padded = F.pad(flat, (dilation,) * 6, mode="replicate")
    shape = flat.shape
    distances = torch.cat([(_shifted(padded, p, dilation, shape) - _shifted(padded, q, dilation, shape)) ** 2
                           for p, q in _ssc_pairs(dilation)], dim=1)
    if radius:
        distances = F.avg_pool3d(F.pad(distances, (radius,) * 6, mode="replicate"), 2 * radius + 1, stride=1)
    distances = distances - distances.min(dim=1, keepdim=True).values
    variance = distances.mean(dim=1, keepdim=True)
    scale = variance.mean(dim=(1, 2, 3, 4), keepdim=True)
    variance = torch.maximum(torch.minimum(variance, scale * 1000), torch.clamp(scale * 0.001, min=floor))
    descriptor = torch.exp(-distances / variance)
    return descriptor.reshape(b, c, 12, *image.shape[2:]).mean(dim=1)


class MINDLoss(nn.Module):
    """Mean absolute difference between the MIND-SSC descriptors of two images (0 when their structure agrees)."""

    def __init__(self, radius: int = 1, dilation: int = 2, floor: float = 1e-4) -> None:
        super().__init__()
        self.radius = int(radius)
        self.dilation = int(dilation)
        self.floor = float(floor)

    def forward(self, source: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
        return torch.mean(torch.abs(mind_ssc(source, self.radius, self.dilation, self.floor)
                                    - mind_ssc(generated, self.radius, self.dilation, self.floor)))


def normalised_gradient(image: torch.Tensor, eta: float, floor: float = 1e-3) -> torch.Tensor:
    """Central-difference gradient of each channel, (B, C, 3, z, y, x), divided by √(|∇|² + ε²) with ε = ``eta``
    × the channel's mean gradient magnitude, at least ``floor`` (intensity per voxel; 10⁻³ in the networks' [−1, 1]
    range): unit length on edges, near zero where the image is flat or noise, and finite gradients on a flat
    patch."""
    padded = F.pad(image.float(), (1,) * 6, mode="replicate")
    shape = image.shape
    grad = torch.stack([(_shifted(padded, s, 1, shape) - _shifted(padded, tuple(-a for a in s), 1, shape)) / 2
                        for s in _AXIS_STEPS], dim=2)
    norm2 = (grad ** 2).sum(dim=2, keepdim=True)
    eps = torch.clamp(eta * torch.sqrt(norm2 + floor ** 2).mean(dim=(2, 3, 4, 5), keepdim=True), min=floor)
    return grad / torch.sqrt(norm2 + eps ** 2)


class GradientConsistencyLoss(nn.Module):
    """1 − (n_source · n_generated)² averaged over voxels and channel pairs, n the normalised gradient fields: near
    0 on strong edges that lie in the same or the opposite direction, 1 where they cross at right angles or either
    image is flat (so flat regions add a constant, and the loss of an image with itself is not 0)."""

    def __init__(self, eta: float = 0.5, floor: float = 1e-3) -> None:
        super().__init__()
        self.eta = float(eta)
        self.floor = float(floor)

    def forward(self, source: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
        ns = normalised_gradient(source, self.eta, self.floor)[:, :, None]
        ng = normalised_gradient(generated, self.eta, self.floor)[:, None]
        return torch.mean(1.0 - (ns * ng).sum(dim=3) ** 2)


STRUCTURE_LOSSES = {"mind": MINDLoss, "gradient": GradientConsistencyLoss}


def structure_loss(spec: Dict[str, Any]) -> nn.Module:
    """The loss a config's ``losses.structure`` names, ``{kind: mind|gradient, weight, …its parameters}``."""
    params = {k: v for k, v in spec.items() if k not in ("kind", "weight")}
    return STRUCTURE_LOSSES[spec["kind"]](**params)
