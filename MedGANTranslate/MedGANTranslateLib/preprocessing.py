"""The preprocessing step: what the generator sees, from the input images and the model card.

:func:`network_inputs` chains the steps in the order the model was trained with: the first input moved onto
the network's grid (:mod:`.network_grid`), its body mask (:mod:`.body_mask`), later inputs resampled onto the
same grid, N4 bias-field correction of MR inputs when the card asks (:mod:`.bias_field`), and each input's
intensity normalisation (:mod:`.normalisation`; for one to white matter, :mod:`.white_matter`, the first input's
factor is kept on the :class:`~.network_grid.NetworkGrid` so the output can go back to its units). Inference and
training both call it, so a model is trained on exactly what it is run on; the way back to physical units is
:mod:`.output_mapping`.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from .bias_field import n4_correct
from .body_mask import body_mask
from .errors import InputError
from .network_grid import NetworkGrid, to_network_grid
from .normalisation import normalize, white_matter_scale
from .white_matter import DEFAULT_DEPTH_MM, white_matter


def network_inputs(
    images: Sequence[sitk.Image],
    preprocessing: Mapping[str, Any],
    body_mask_spec: Mapping[str, Any],
    modalities: Sequence[str],
) -> Tuple[np.ndarray, np.ndarray, NetworkGrid]:
    """What the generator sees: normalised inputs (channels, z, y, x), the body mask (z, y, x) and the network
    grid's geometry. Inference and training both call it, so a model is trained on exactly what it is run on.

    Memory: an input already on the network grid is used as it is (no float copy), and the resampled images
    are dropped as soon as their voxels are read, before normalisation."""
    grid0 = to_network_grid(images[0], preprocessing)
    grid = NetworkGrid.of(grid0, images[0])
    if grid.same_as_input:
        grid0 = images[0]
    mask_img = body_mask(grid0, body_mask_spec)
    mask = sitk.GetArrayViewFromImage(mask_img) > 0
    arrays = []
    for image, modality in zip(images, modalities):
        on_grid = grid0 if not arrays else to_network_grid(image, preprocessing, reference_grid=grid0)
        if preprocessing.get("n4") and modality == "MR":
            on_grid = n4_correct(on_grid, mask_img)
        arrays.append(sitk.GetArrayFromImage(on_grid))
        del on_grid
    spacing = grid0.GetSpacing()
    del grid0, mask_img
    channels = []
    for index, norm in enumerate(preprocessing["normalization"]):
        try:
            values = arrays.pop(0)
            scale = 1.0
            if norm["method"] == "white_matter":
                found = white_matter(values, mask, spacing, float(norm.get("depth_mm", DEFAULT_DEPTH_MM)))
                scale = white_matter_scale(norm, found)
                if index == 0:
                    grid = replace(grid, input_scale=scale, white_matter=found)
            channels.append(normalize(values, norm, mask, scale))
            del values
        except InputError as exc:  # say which input: a later one may lie outside the first's body
            raise InputError(str(exc), input_index=index) from exc
    volume = channels[0][None] if len(channels) == 1 else np.stack(channels)
    return volume, mask, grid
