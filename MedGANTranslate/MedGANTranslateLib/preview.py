"""A PNG preview: the three orthogonal planes through the volume centre for several aligned volumes.

Each column is one volume (input | synthetic | reference | difference), each row one plane. Display
follows the model card: a CT window for CT panels, a diverging colour map centred at zero for differences,
each column with its own colour bar. Planes are drawn in physical proportions (the voxel spacing is used).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from .card import output_display


@dataclass
class Panel:
    title: str
    image: sitk.Image
    kind: str = "grey"  # "grey", "ct", "pet" or "difference"
    window: Optional[Tuple[float, float]] = None  # (low, high); None: robust range of the data


@dataclass(frozen=True)
class OutputLook:
    """How a translation's output panels are shown: the colour ``kind`` of its modality, the card's display
    ``window`` and the difference map's (both (low, high) in the output's units; None: the data's own range)."""

    kind: str
    window: Optional[Tuple[float, float]]
    difference: Optional[Tuple[float, float]]


def output_look(card, provenance: Mapping[str, Any]) -> OutputLook:
    """The :class:`OutputLook` of one output of ``card``, its display preset taken in that output's units
    (:func:`~.card.output_display` with the output's ``provenance``)."""
    display = output_display(card.display, provenance)
    window = None
    if display.get("window") is not None and display.get("level") is not None:
        level, width = float(display["level"]), float(display["window"])
        window = (level - width / 2, level + width / 2)
    half = display.get("difference_window")
    return OutputLook({"CT": "ct", "PET": "pet"}.get(card.output["modality"], "grey"), window,
                      (-float(half), float(half)) if half else None)


def _display_range(panel: Panel, array: np.ndarray) -> Tuple[float, float]:
    if panel.window is not None:
        return panel.window
    if panel.kind == "difference":
        half = float(np.percentile(np.abs(array), 99.5)) or 1.0
        return -half, half
    lo, hi = np.percentile(array, [0.5, 99.5])
    return float(lo), float(hi) if hi > lo else float(lo) + 1.0


def _planes(array: np.ndarray, spacing: Sequence[float], centre: Optional[Sequence[int]] = None):
    """Axial, coronal and sagittal planes through ``centre`` (z, y, x; the array's centre by default), with their
    aspect ratios (array is z, y, x)."""
    z, y, x = (n // 2 for n in array.shape) if centre is None else (int(c) for c in centre)
    sx, sy, sz = spacing
    return [
        ("axial", array[z, :, :], sy / sx),
        ("coronal", array[::-1, y, :], sz / sx),
        ("sagittal", array[::-1, :, x], sz / sy),
    ]


def render_preview(panels: Sequence[Panel], out_png: "str | Path", title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cmaps = {"grey": "gray", "ct": "gray", "pet": "hot", "difference": "RdBu_r"}
    fig, axes = plt.subplots(3, len(panels), figsize=(3.2 * len(panels), 9.2), squeeze=False)
    for col, panel in enumerate(panels):
        array = sitk.GetArrayFromImage(panel.image).astype(np.float32)
        lo, hi = _display_range(panel, array)
        for row, (plane, data, aspect) in enumerate(_planes(array, panel.image.GetSpacing())):
            ax = axes[row, col]
            im = ax.imshow(data, cmap=cmaps.get(panel.kind, "gray"), vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(panel.title, fontsize=10)
            if col == 0:
                ax.set_ylabel(plane, fontsize=10)
        fig.colorbar(im, ax=list(axes[:, col]), orientation="horizontal", fraction=0.04, pad=0.03)
    if title:
        fig.suptitle(title, fontsize=11)
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return out_png
