"""The body mask: which voxels of a scan are the body, as opposed to the air around it.

Windows that hold no body voxel are skipped, statistics for normalisation are taken inside the body, and the
output is set to the background outside it, so the mask decides both speed and what the output holds. It is
found on a coarse working grid (block averages, which also average the noise down) by thresholding at the
scan's :func:`~.noise_floor.noise_floor`, then the :mod:`.binary_morphology` steps on the body's bounding box;
:func:`foreground_bounds` gives that box, and is used as well by the window planning and the scan checks.
"""
from __future__ import annotations

from typing import Any, List, Mapping, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from .binary_morphology import ball_radius, close, dilate, fill_slice_holes, largest_component, median_vote
from .errors import InputError
from .network_grid import as_float32
from .noise_floor import noise_floor


def _block_factors(image: sitk.Image, spacing_mm: float) -> List[int]:
    """Whole voxels per block along each axis for blocks of about ``spacing_mm``."""
    return [max(1, int(spacing_mm // s)) for s in image.GetSpacing()]


def _working_grid(image: sitk.Image, factors: Sequence[int]) -> sitk.Image:
    """``image`` block-averaged by ``factors``, padded by edge replication first so the coarse grid covers the
    whole field of view, including a body cut by its edge."""
    if max(factors) == 1:
        return image
    pad = [(-n) % f for n, f in zip(image.GetSize(), factors)]
    return sitk.BinShrink(sitk.ZeroFluxNeumannPad(image, [0, 0, 0], pad), list(factors))


def _from_working_grid(mask: sitk.Image, image: sitk.Image, factors: Sequence[int]) -> sitk.Image:
    """The coarse ``mask`` back on ``image``'s grid: each block's value copied to its voxels, which is nearest
    neighbour for block averages, without the cost of interpolating."""
    if max(factors) == 1:
        return mask
    n = image.GetSize()[::-1]
    values = sitk.GetArrayViewFromImage(mask)
    for axis, f in enumerate(factors[::-1]):
        values = np.repeat(values, f, axis=axis)
    out = sitk.GetImageFromArray(np.ascontiguousarray(values[: n[0], : n[1], : n[2]]))
    out.CopyInformation(image)
    return out


def foreground_bounds(values: np.ndarray) -> Tuple[List[int], List[int]]:
    """First and one-past-last index of the nonzero voxels of a (z, y, x) array (or a 2D one) along each axis (it
    must hold one): its bounding box."""
    dims = range(values.ndim)
    hits = [np.flatnonzero(values.any(axis=tuple(a for a in dims if a != axis))) for axis in dims]
    return [int(h[0]) for h in hits], [int(h[-1]) + 1 for h in hits]


def foreground_box(values: np.ndarray, margin: Sequence[int]) -> Tuple[slice, ...]:
    """Array slices of the bounding box of ``values``' foreground plus ``margin`` voxels (x, y, z) of background.
    The body mask's steps give the same voxels on the cut array, since nothing they do reaches further than the
    closing and dilation radii beyond the foreground, and the background ring keeps the outside air in one piece
    for hole filling; they cost less by the air they no longer visit."""
    lo, hi = foreground_bounds(values)
    return tuple(
        slice(max(a - m, 0), min(b + m, n)) for a, b, m, n in zip(lo, hi, margin[::-1], values.shape)
    )


def body_mask(image: sitk.Image, spec: Mapping[str, Any]) -> sitk.Image:
    """Binary uint8 mask of the body on the image's grid (card ``postprocessing.body_mask``).

    Voxels above the threshold (the background's :func:`noise_floor` on the image's own grid when ``threshold``
    is null: block averages of air stay below it, and a faint halo that only the averages lift above their own
    floor stays out; the grid's 3 x 3 x 3 median first, so that specks and chains of noise above the floor do
    not grow the mask into the air: on a real low-SNR 2 mm head they added 61 mL of air), closed, holes
    of each slice filled across all three axes, largest connected component kept, dilated; on the thresholded
    body's bounding box (see :func:`foreground_box`). Works for MR (dark background) and CT (air at -1000 HU),
    whatever the intensity scale, bias field or noise. The steps run on a grid of about ``working_spacing_mm``
    (block averages, which also average the noise down), then each block's value goes back to its voxels: the
    mask only separates the body from the air around it, and the morphology costs ~20x less on a 2 mm grid
    than on a 1 mm one. The dilation keeps the coarse edge outside the skin."""
    factors = _block_factors(image, float(spec.get("working_spacing_mm", 2.0)))
    threshold = spec.get("threshold")
    if threshold is None:
        threshold = noise_floor(sitk.GetArrayViewFromImage(image))
    working = _working_grid(as_float32(image), factors)
    values = median_vote(sitk.GetArrayViewFromImage(working) > float(threshold))
    if not values.any():
        raise InputError(
            f"No body found: no voxel is above the body-mask threshold {threshold:g}; check the input image or the "
            "card's body_mask.threshold."
        )
    spacing = working.GetSpacing()
    closing = ball_radius(float(spec.get("closing_radius_mm", 3.0)), spacing)
    dilation = ball_radius(float(spec.get("dilation_mm", 2.0)), spacing)
    box = foreground_box(values, [c + d + 1 for c, d in zip(closing, dilation)])
    body = values[box]
    if any(closing):
        body = close(body, closing)
    for axis in range(3):
        body = fill_slice_holes(body, axis)
    body = largest_component(body)
    if any(dilation):
        body = dilate(body, dilation)
    out = np.zeros(values.shape, np.uint8)
    out[box] = body
    coarse = sitk.GetImageFromArray(out)
    coarse.CopyInformation(working)
    return _from_working_grid(coarse, image, factors)
