"""A 2D twin of a bundled 3D generator, to time what running a 2D model slice by slice costs (issue 27, item 3).

No bundled model is 2D, but cards may name one (``inference.planes``: slice by slice in one plane, or tri-planar
over all three, averaged). The twin keeps the card's architecture, levels, channels, normalisation and intensity
handling with ``spatial_dims`` 2, random weights (only its time is measured, never its values) and windows of
256 x 256, the slice size 2D pix2pix generators are trained on; a fully convolutional card's twin runs on large
in-plane windows over the body, as its 3D original does.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

from MedGANTranslateLib.card import ModelCard
from MedGANTranslateLib.model_folder import save_model_folder
from MedGANTranslateLib.networks import build_network

#: The in-plane window of the twin: 2D pix2pix generators are trained on 256 x 256 slices.
SLICE_WINDOW = [256, 256]


def planar_twin(card: ModelCard, planes: Sequence[str], work: Path) -> Path:
    """The folder of ``card``'s 2D twin run in ``planes`` (e.g. ``["axial"]`` or all three), made once."""
    folder = work / f"planar-twin-{card.id}-{'-'.join(planes)}"
    if (folder / "model.json").is_file():
        return folder
    data = json.loads((card.folder / "model.json").read_text(encoding="utf-8"))
    architecture = data["architecture"]
    if architecture.get("type") != "builtin":
        raise SystemExit(f"{card.id}: only a built-in generator has a 2D twin, not {architecture.get('type')!r}")
    architecture["params"]["spatial_dims"] = 2
    data.update(id=f"{card.id}-2d-twin", title=f"2D twin of {card.id} (random weights, for timing only)")
    data["inference"].update(planes=list(planes), roi_size=SLICE_WINDOW)
    torch.manual_seed(0)
    save_model_folder(folder, data, build_network(architecture).eval())
    return folder
