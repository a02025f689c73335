"""The skull-stripping check: for inputs the card declares ``anatomy: whole_head``, a body smaller than a head
that lacks the bright scalp fat under its surface is a brain without its scalp and skull, which a model trained
on whole heads turns into a confident synthetic image of the wrong anatomy. The constants' comments give the
volumes and layer brightness measured on skull-stripped and whole heads.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .body_sample import BodySample
from .card import InputSpec
from .scan_report import ScanWarning

#: Skull stripping: a body smaller than ``BRAIN_ONLY_MAX_ML`` without a bright layer under its surface. A
#: brain's mask holds 1.1-1.6 L of brain plus the mask's margin; a head with scalp and skull, 3-5 L when the field
#: of view covers it. Scalp fat is the brightest tissue of a T1w head and lies in a continuous layer under the
#: skin, so some ``SCALP_LAYER_STEP_MM`` layer within ``SCALP_DEPTH_MM`` of the surface is largely brighter than
#: ``SCALP_BRIGHT_QUANTILE`` of the body; under a bare brain's surface lie cortex and CSF, with white matter only
#: in the gyri. Both conditions must hold, so a head cut by its field of view (small, but with its scalp) or a
#: large brain (no scalp, but big) is not called skull-stripped. Measured (benchmarks/scan_check_calibration.py):
#: skull-stripped brains 1.35-1.91 L with a brightest layer of 0.08-0.14; whole heads 2.62-5.68 L (the smallest a
#: 2D scan holding 117 mm of the head) with 0.38-0.78.
BRAIN_ONLY_MAX_ML = 2200.0
SCALP_BRIGHT_MIN = 0.25
SCALP_DEPTH_MM = 12.0
SCALP_LAYER_STEP_MM = 2.0
SCALP_BRIGHT_QUANTILE = 0.9


def scalp_bright_fraction(sample: BodySample, channel: int) -> float:
    """The largest share, among the layers within :data:`SCALP_DEPTH_MM` of the surface, of voxels brighter than
    :data:`SCALP_BRIGHT_QUANTILE` of the body: high where scalp fat lies over the skull, low over a bare brain's
    cortex. The layer is found wherever it lies, so it does not matter how far outside the skin the mask ends."""
    values = sample.channels[channel]
    bright = values > np.quantile(values[sample.mask], SCALP_BRIGHT_QUANTILE)
    shares = [float(np.mean(bright[layer])) for layer in sample.layers(SCALP_DEPTH_MM, SCALP_LAYER_STEP_MM)
              if layer.any()]
    return max(shares, default=0.0)


def check_skull_stripped(spec: InputSpec, sample: BodySample, channel: int) -> Tuple[Optional[ScanWarning], float]:
    """For whole-head inputs: a warning when the body is brain-sized and has no scalp fat under its surface."""
    bright = scalp_bright_fraction(sample, channel)
    if sample.volume_ml >= BRAIN_ONLY_MAX_ML or bright >= SCALP_BRIGHT_MIN:
        return None, bright
    return ScanWarning(
        "skull_stripped",
        f"Input '{spec.name}' looks skull-stripped: its body holds {sample.volume_ml / 1000:.2f} L (a head with "
        f"scalp and skull holds 3-5 L) and no layer under its surface is bright as scalp fat is (at most "
        f"{100 * bright:.0f} % of a layer; whole heads: {100 * SCALP_BRIGHT_MIN:.0f} % or more).",
        "This model was trained on whole heads; give the scan before skull stripping.",
        spec.name,
    ), bright
