"""The layer classes and the bias and padding rules that the built-in generators share, in 2D and 3D."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Tuple, Type

from torch import nn

NORMS = ("instance", "batch", "none")
PADDINGS = ("reflect", "replicate", "zeros")
#: Layer kinds whose bias a card can set: convolutions and transposed convolutions that feed a norm (or would,
#: with ``norm: none``), and the network's last layer.
BIAS_KINDS = ("conv", "transposed", "output")


@dataclass(frozen=True)
class Layers:
    """The layer classes of one dimensionality, so a single generator definition serves 2D and 3D ports."""

    conv: Type[nn.Module]
    transposed: Type[nn.Module]
    batch_norm: Type[nn.Module]
    instance_norm: Type[nn.Module]
    pads: Dict[str, Type[nn.Module]]

    def norm(self, norm: str) -> Callable[[int], nn.Module]:
        """Factory for one norm layer; ``none`` keeps an ``Identity`` so module indices match the original."""
        if norm == "instance":
            return lambda ch: self.instance_norm(ch, affine=False, track_running_stats=False)
        if norm == "batch":
            return lambda ch: self.batch_norm(ch, affine=True)
        if norm == "none":
            return lambda ch: nn.Identity()
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")

    def padding(self, mode: str, width: int) -> Tuple[List[nn.Module], int]:
        """The padding layer a convolution of ``mode`` needs (none for zeros) and the convolution's own padding."""
        if mode not in PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {mode!r}")
        if mode == "zeros":
            return [], width
        return [self.pads[mode](width)], 0


def layers_for(spatial_dims: int) -> Layers:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    d = spatial_dims
    return Layers(
        conv=getattr(nn, f"Conv{d}d"),
        transposed=getattr(nn, f"ConvTranspose{d}d"),
        batch_norm=getattr(nn, f"BatchNorm{d}d"),
        instance_norm=getattr(nn, f"InstanceNorm{d}d"),
        pads={"reflect": getattr(nn, f"ReflectionPad{d}d"), "replicate": getattr(nn, f"ReplicationPad{d}d")},
    )


def bias_rule(norm: str, bias: Optional[Mapping[str, bool]] = None) -> Dict[str, bool]:
    """Which layer kinds have a bias. Default: junyanz's rule (``use_bias = norm_layer == InstanceNorm``), so
    convolutions feeding batch norm (which has its own shift) or no norm have none; the last layer always has one.
    ``bias`` overrides kinds for layouts that differ (ganslate, davidiommi's U-Net)."""
    rule = {"conv": norm == "instance", "transposed": norm == "instance", "output": True}
    unknown = sorted(set(bias or {}) - set(rule))
    if unknown:
        raise ValueError(f"bias takes the layer kinds {', '.join(BIAS_KINDS)}, got {', '.join(unknown)}")
    rule.update({k: bool(v) for k, v in (bias or {}).items()})
    return rule
