"""Refusals of a card that does not describe its network, made before the first window runs.

A card that calls a network fully convolutional when it normalises per window would get output that depends on
where the windows fall; a card that describes a 2D network for 3D weights (or the other way round) would fail
deep inside the first window with torch's words instead of the card's. These checks read the network's layers
and name the card fields to fix. Networks whose layers cannot be read (ONNX, some TorchScript) are checked by
their first window instead (:class:`.window_predictor.WindowPredictor`).
"""
from __future__ import annotations

import re
from typing import Optional

from torch import nn

from .errors import CardError
from .forward_mode import WindowStatisticsNorm
from .inference_settings import InferenceSettings

#: Modules whose output depends on statistics of the whole window: a network holding one is not fully
#: convolutional, whatever its card says.
PER_WINDOW_NORMS = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.GroupNorm, nn.LayerNorm,
                    WindowStatisticsNorm)


def check_fully_convolutional(network: nn.Module, settings: InferenceSettings) -> None:
    """Refuses a card that calls a network fully convolutional when the network normalises per window."""
    if not settings.fully_convolutional or not isinstance(network, nn.Module):
        return
    found = sorted({type(m).__name__ for m in network.modules() if isinstance(m, PER_WINDOW_NORMS)})
    if found:
        raise CardError(
            f"The card sets inference.fully_convolutional, but the network normalises each window "
            f"({', '.join(found)}), so its output depends on the window; remove fully_convolutional from the card."
        )


def network_spatial_dims(network: nn.Module) -> Optional[int]:
    """2 or 3: the rank of the network's first convolution (TorchScript modules keep their layers' class names);
    None when it has none to see (ONNX sessions, networks without convolutions)."""
    for module in network.modules():
        name = getattr(module, "original_name", None) or type(module).__name__
        found = re.fullmatch(r"(?:Conv|ConvTranspose)([123])d", str(name))
        if found:
            return int(found.group(1))
    return None


def check_network_rank(network: nn.Module, settings: InferenceSettings) -> None:
    """Refuses a network whose convolutions do not have the rank the card describes (a 3D network with
    ``inference.planes``, or a 2D one without), naming what the card says, instead of failing in the first
    window. Networks whose rank cannot be seen are checked by their first window
    (:class:`.window_predictor.WindowPredictor`)."""
    dims = network_spatial_dims(network) if isinstance(network, nn.Module) else None
    wanted = len(settings.roi_size)
    if dims is None or dims == wanted:
        return
    fix = ("remove inference.planes and give inference.roi_size three numbers (x, y, z), or give the 2D network's "
           "weights" if settings.planes else
           'add inference.planes (e.g. ["axial"]) and give inference.roi_size two numbers, the in-plane window')
    raise CardError(
        f"The card describes {settings.card_window()}, but the network's convolutions are {dims}D: it takes "
        f"windows of N × C × {'D × H × W' if dims == 3 else 'H × W'}. Fix the card: {fix}."
    )
