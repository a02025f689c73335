"""The network's output in physical units: the card's ``postprocessing.output_mapping``, clip and output type.

The network writes values in its own range (e.g. [-1, 1]); :func:`map_output` maps them linearly to physical
units (e.g. HU; for a white-matter normalised input, back into that input's own units), :func:`cast_output`
clips them to the card's valid range and stores them in its output type, refusing NaN/Inf. :func:`output_scale` and :func:`normalised_background_output` go the other way through the
same mapping: the size of one network unit (for spreads) and the network value of the physical background.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from .errors import OutputError
from .network_grid import as_float32
from .normalisation import linear_map

_OUTPUT_TYPES = {"int16": sitk.sitkInt16, "uint16": sitk.sitkUInt16, "float32": sitk.sitkFloat32}
_INTEGER_LIMITS = {"int16": (-32768.0, 32767.0), "uint16": (0.0, 65535.0)}


def output_scale(postprocessing: Mapping[str, Any]) -> float:
    """How many physical units one network unit is under the linear ``output_mapping`` (for spreads, which the
    mapping's offset does not move)."""
    mapping = postprocessing["output_mapping"]
    (s0, s1), (t0, t1) = mapping["source_range"], mapping["target_range"]
    return abs((float(t1) - float(t0)) / (float(s1) - float(s0)))


def normalised_background_output(postprocessing: Dict[str, Any]) -> float:
    """The network-range value that maps to the card's physical background (e.g. -1000 HU)."""
    mapping = postprocessing["output_mapping"]
    (s0, s1), (t0, t1) = mapping["source_range"], mapping["target_range"]
    value = postprocessing.get("background_value")
    if value is None:
        return float(s0)
    return float(s0 + (value - t0) * (s1 - s0) / (t1 - t0))


def input_units_factor(postprocessing: Mapping[str, Any], input_scale: float) -> float:
    """What the mapped output is multiplied by to be in the first input's own units: ``1 / input_scale`` (the
    factor its white-matter normalisation applied) when the ``output_mapping`` says ``input_units``, else 1."""
    return 1.0 / float(input_scale) if postprocessing["output_mapping"].get("input_units") else 1.0


def map_output(array: np.ndarray, postprocessing: Mapping[str, Any], input_scale: float = 1.0) -> np.ndarray:
    """Network output to physical units (float32): the linear ``output_mapping``, then ``clip`` when set, then,
    for ``input_units``, into the first input's units (:func:`input_units_factor`)."""
    mapping = postprocessing["output_mapping"]
    out = linear_map(array, mapping["source_range"], mapping["target_range"], clip=False)
    clip = postprocessing.get("clip")
    if clip is not None:
        np.clip(out, clip[0], clip[1], out=out)
    factor = input_units_factor(postprocessing, input_scale)
    if factor != 1.0:
        out *= np.float32(factor)
    return out


def cast_output(image: sitk.Image, dtype: str, valid_range: Sequence[float]) -> sitk.Image:
    """Clips to ``valid_range`` (and the type's limits), rounds for integer types, casts to ``dtype``.

    Two passes over the image: ITK's Round, then a Clamp that writes the output type. With the bounds
    rounded inward to integers, clamping the rounded values equals rounding the clamped ones, and the cast of
    an in-range integer is exact. On 66 M voxels: 0.52 s → 0.36 s against Cast, Clamp, Round, Cast, with two
    fewer full-size temporaries."""
    if dtype not in _OUTPUT_TYPES:
        raise ValueError(f"Unsupported output dtype {dtype!r}; expected one of {sorted(_OUTPUT_TYPES)}.")
    as_float = as_float32(image)
    values = sitk.GetArrayViewFromImage(as_float)
    bad = int(values.size - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise OutputError(
            f"The network produced {bad} NaN/Inf voxel(s); nothing was written. On a GPU, run again with mixed "
            "precision (amp) off; otherwise the model's weights may be broken."
        )
    low, high = float(valid_range[0]), float(valid_range[1])
    if dtype in _INTEGER_LIMITS:
        low = max(math.ceil(low), _INTEGER_LIMITS[dtype][0])
        high = min(math.floor(high), _INTEGER_LIMITS[dtype][1])
        as_float = sitk.Round(as_float)
    return sitk.Clamp(as_float, _OUTPUT_TYPES[dtype], lowerBound=low, upperBound=high)
