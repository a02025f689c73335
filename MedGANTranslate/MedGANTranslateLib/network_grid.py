"""The network's grid: moving an input onto the grid the model was trained on, and its output back.

The card fixes an orientation and a spacing; :func:`to_network_grid` moves an input there (reoriented by axis
permutation and flips, resampled over the same physical extent) and :func:`to_input_grid` brings the output back
onto the exact input grid, so the synthetic image is aligned voxel for voxel with the input. Both return the
image untouched (no interpolation) when the grids already match up to header rounding (:func:`same_grid`), since
interpolating an image onto its own grid would blur it for nothing. :class:`NetworkGrid` keeps the grid's
geometry without its voxels, so the network's output can be placed on it once the inputs are freed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

if TYPE_CHECKING:  # annotation only: white_matter needs the body mask, which needs this module
    from .white_matter import WhiteMatter

#: Grids whose spacing and origin differ by less than this (mm), and direction cosines by less than
#: ``DIRECTION_TOLERANCE``, are the same grid: the difference is float rounding in file headers.
GRID_TOLERANCE_MM = 1e-4
DIRECTION_TOLERANCE = 1e-5


def same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    """True when two images have the same size, and spacing, origin and direction up to header rounding."""
    return (
        tuple(a.GetSize()) == tuple(b.GetSize())
        and np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=0, atol=GRID_TOLERANCE_MM)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), rtol=0, atol=GRID_TOLERANCE_MM)
        and np.allclose(a.GetDirection(), b.GetDirection(), rtol=0, atol=DIRECTION_TOLERANCE)
    )


def _on_grid(image: sitk.Image, grid: sitk.Image) -> sitk.Image:
    """``image`` with ``grid``'s exact geometry (the grids are equal up to rounding): no interpolation."""
    out = sitk.Image(image)
    out.CopyInformation(grid)
    return out


def as_float32(image: sitk.Image) -> sitk.Image:
    """``image`` as float32: itself when it already is (no copy of its voxels), else a cast copy."""
    return image if image.GetPixelID() == sitk.sitkFloat32 else sitk.Cast(image, sitk.sitkFloat32)


def _darkest(image: sitk.Image) -> float:
    """Value used outside the input's field of view: its minimum, i.e. background (air) for CT and MR."""
    return float(sitk.GetArrayViewFromImage(image).min())


def _resample_to_spacing(image: sitk.Image, spacing: Sequence[float], interpolator: int) -> sitk.Image:
    """Resamples onto a grid of ``spacing`` that covers the same physical extent, centred on the same point."""
    old_size = np.asarray(image.GetSize(), dtype=float)
    old_spacing = np.asarray(image.GetSpacing(), dtype=float)
    new_spacing = np.asarray(spacing, dtype=float)
    new_size = np.maximum(1, np.round(old_size * old_spacing / new_spacing)).astype(int)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    shift = (old_spacing * (old_size - 1) - new_spacing * (new_size - 1)) / 2.0
    origin = np.asarray(image.GetOrigin(), dtype=float) + direction @ shift
    return sitk.Resample(
        image, [int(s) for s in new_size], sitk.Transform(), interpolator, origin.tolist(), new_spacing.tolist(),
        image.GetDirection(), _darkest(image), sitk.sitkFloat32,
    )


def to_network_grid(
    image: sitk.Image,
    preprocessing: Mapping[str, Any],
    reference_grid: Optional[sitk.Image] = None,
    interpolator: int = sitk.sitkLinear,
) -> sitk.Image:
    """``image`` as float32 on the network's grid (``image`` itself when it is float32 and nothing changes).

    With ``reference_grid`` (later inputs of multi-input models), the image is resampled onto exactly that
    grid, with its minimum outside its own field of view. Otherwise it is reoriented (``orientation``, by axis
    permutation and flips, never interpolated) and resampled to ``spacing`` over the same physical extent.
    Nothing the card does not ask for changes the geometry."""
    as_float = as_float32(image)
    if reference_grid is not None:
        if same_grid(image, reference_grid):
            return _on_grid(as_float, reference_grid)
        return sitk.Resample(
            as_float, reference_grid, sitk.Transform(), interpolator, _darkest(image), sitk.sitkFloat32
        )
    out = as_float
    if preprocessing.get("orientation"):
        out = sitk.DICOMOrient(out, preprocessing["orientation"])
    spacing = preprocessing.get("spacing")
    if spacing is not None and not np.allclose(out.GetSpacing(), spacing, rtol=0, atol=GRID_TOLERANCE_MM):
        out = _resample_to_spacing(out, spacing, interpolator)
    return out


def to_input_grid(
    image: sitk.Image, input_image: sitk.Image, default_value: float, interpolator: int = sitk.sitkLinear
) -> sitk.Image:
    """``image`` (on the network grid) brought back onto ``input_image``'s exact grid, keeping its pixel type.

    Matching grids, and grids that differ only by orientation, come back bit-exact; otherwise the image is
    interpolated, with ``default_value`` where the network grid does not reach."""
    if same_grid(image, input_image):
        return _on_grid(image, input_image)
    orientation = sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(input_image.GetDirection())
    reoriented = sitk.DICOMOrient(image, orientation)
    if same_grid(reoriented, input_image):
        return _on_grid(reoriented, input_image)
    return sitk.Resample(image, input_image, sitk.Transform(), interpolator, float(default_value), image.GetPixelID())


@dataclass(frozen=True)
class NetworkGrid:
    """The way from the network's arrays back to the first input: the grid's geometry, kept without its voxels
    (``same_as_input``: it is the first input's grid), and, for a card that normalises it to white matter, the
    factor its intensities were multiplied by (``input_scale``) and the white matter found (``white_matter``)."""

    origin: Tuple[float, ...]
    spacing: Tuple[float, ...]
    direction: Tuple[float, ...]
    same_as_input: bool
    input_scale: float = 1.0
    white_matter: Optional[WhiteMatter] = None

    @classmethod
    def of(cls, grid: sitk.Image, input_image: sitk.Image) -> "NetworkGrid":
        return cls(grid.GetOrigin(), grid.GetSpacing(), grid.GetDirection(), same_grid(grid, input_image))

    def image(self, array: np.ndarray) -> sitk.Image:
        image = sitk.GetImageFromArray(array)
        image.SetOrigin(self.origin)
        image.SetSpacing(self.spacing)
        image.SetDirection(self.direction)
        return image
