"""Image-similarity metrics of a synthetic image against a reference, following SynthRAD2023.

All metrics are computed inside a mask (usually the body). For CT, PSNR and SSIM use SynthRAD's fixed
dynamic range: both images clipped to [-1024, 3000] HU, data range 4024; MAE, ME and RMSE use the unclipped
values. Undefined values (PSNR of identical images, metrics of an empty tissue class) are returned as
``None`` rather than inf/NaN, so results can be written to JSON as they are.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from monai.metrics import MAEMetric, PSNRMetric, RMSEMetric, compute_dice
from monai.metrics.regression import compute_ssim_and_cs

#: SynthRAD2023 dynamic range for CT, in HU.
CT_RANGE = (-1024.0, 3000.0)
#: SynthRAD2023 tissue classes of the reference CT, in HU: air < -200 <= soft tissue < 250 <= bone.
AIR_BELOW_HU = -200.0
BONE_FROM_HU = 250.0
#: SSIM window (voxels per side) and stability constants, as scikit-image's ``structural_similarity``.
SSIM_WINDOW = 7
SSIM_K1, SSIM_K2 = 0.01, 0.03

Metrics = Dict[str, Optional[float]]


def _tensor(values: np.ndarray) -> torch.Tensor:
    """A (batch=1, channel=1, ...) float64 tensor, the layout MONAI metrics expect."""
    return torch.as_tensor(np.asarray(values, dtype=np.float64))[None, None]


def _finite(value: float) -> Optional[float]:
    value = float(value)
    return value if math.isfinite(value) else None


Arrays = Tuple[np.ndarray, np.ndarray, np.ndarray]


def _prepare(synthetic: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> Arrays:
    """float64 copies and a boolean mask, checked to match."""
    syn, ref = np.asarray(synthetic, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    inside = np.asarray(mask) > 0
    if not syn.shape == ref.shape == inside.shape:
        raise ValueError(
            f"Synthetic {syn.shape}, reference {ref.shape} and mask {inside.shape} must have the same shape; "
            "resample the reference onto the synthetic image's grid first."
        )
    if not inside.any():
        raise ValueError("The mask selects no voxel; metrics need at least one voxel inside the mask.")
    return syn, ref, inside


def _mae(syn: np.ndarray, ref: np.ndarray) -> Optional[float]:
    return None if syn.size == 0 else _finite(MAEMetric()(_tensor(syn), _tensor(ref)).item())


def _masked_ssim(
    syn: np.ndarray, ref: np.ndarray, inside: np.ndarray, low: float, data_range: float
) -> Optional[float]:
    """SynthRAD2023 SSIM: voxels outside the mask set to ``low``, images shifted by ``-low``, SSIM map with a
    7-voxel uniform window, averaged over the mask without a 3-voxel border.

    MONAI computes the map only where the window fits (a 'valid' convolution), which is exactly the
    border-cropped map scikit-image averages. scikit-image uses the sample covariance (factor N/(N-1),
    N = 7**3); scaling k2 by sqrt((N-1)/N) gives the same contrast term with MONAI's population covariance,
    so the values match scikit-image's."""
    if data_range <= 0 or min(syn.shape) < SSIM_WINDOW:
        return None
    x, y = np.where(inside, syn, low) - low, np.where(inside, ref, low) - low
    points = SSIM_WINDOW ** syn.ndim
    ssim_map, _ = compute_ssim_and_cs(
        _tensor(x), _tensor(y), spatial_dims=syn.ndim, kernel_size=(SSIM_WINDOW,) * syn.ndim,
        kernel_sigma=(1.5,) * syn.ndim, data_range=data_range, kernel_type="uniform",
        k1=SSIM_K1, k2=SSIM_K2 * math.sqrt((points - 1) / points),
    )
    border = SSIM_WINDOW // 2
    region = inside[tuple(slice(border, -border) for _ in range(syn.ndim))]
    if not region.any():
        return None
    return _finite(ssim_map[0, 0].double().numpy()[region].mean())


def image_metrics(
    synthetic: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray,
    modality: str,
    data_range: Optional[float] = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
) -> Metrics:
    """``mae``, ``me`` (mean of synthetic - reference), ``rmse``, ``psnr``, ``ssim`` inside ``mask``, plus
    ``mask_volume_ml`` (the evaluated volume, from ``spacing`` in mm).

    CT: PSNR and SSIM on images clipped to [-1024, 3000] with data range 4024 (SynthRAD2023). Other
    modalities: no clipping, data range = the reference's max - min inside the mask unless ``data_range`` is
    given, and SSIM shifts by the reference's minimum inside the mask. ``psnr`` is None for identical images
    (infinite), ``psnr``/``ssim`` are None when the data range is 0 or the image is smaller than the window."""
    syn, ref, inside = _prepare(synthetic, reference, mask)
    s, r = syn[inside], ref[inside]
    if modality.upper() == "CT":
        low, high = CT_RANGE
        syn, ref = np.clip(syn, low, high), np.clip(ref, low, high)
        data_range = high - low if data_range is None else data_range
    else:
        low = float(r.min())
        data_range = float(r.max() - r.min()) if data_range is None else data_range
    psnr = None
    if data_range > 0:
        psnr = _finite(PSNRMetric(max_val=data_range)(_tensor(syn[inside]), _tensor(ref[inside])).item())
    return {
        "mae": _mae(s, r),
        "me": _finite(np.mean(s - r)),
        "rmse": _finite(RMSEMetric()(_tensor(s), _tensor(r)).item()),
        "psnr": psnr,
        "ssim": _masked_ssim(syn, ref, inside, low, data_range),
        "mask_volume_ml": float(np.count_nonzero(inside) * np.prod(spacing) / 1000.0),
    }


def ct_tissue_metrics(synthetic: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> Metrics:
    """MAE per tissue class of the reference CT (``mae_air``, ``mae_soft_tissue``, ``mae_bone``) and
    ``bone_dice`` of (synthetic >= 250 HU) against (reference >= 250 HU), all inside ``mask``.

    A class absent from the reference gives None (its MAE, and the Dice when the reference has no bone)."""
    syn, ref, inside = _prepare(synthetic, reference, mask)
    classes = {
        "mae_air": inside & (ref < AIR_BELOW_HU),
        "mae_soft_tissue": inside & (ref >= AIR_BELOW_HU) & (ref < BONE_FROM_HU),
        "mae_bone": inside & (ref >= BONE_FROM_HU),
    }
    out: Metrics = {name: _mae(syn[region], ref[region]) for name, region in classes.items()}
    dice = compute_dice(_tensor(inside & (syn >= BONE_FROM_HU)), _tensor(classes["mae_bone"]), ignore_empty=True)
    out["bone_dice"] = _finite(dice.item())
    return out
