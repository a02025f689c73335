"""N4 bias-field correction of MR inputs (card ``preprocessing.n4``).

MR intensities drift slowly across the field of view with the coil's sensitivity; a model trained on corrected
scans wants its inputs corrected the same way. The field is smooth, so it is fitted on a shrunk copy (inside the
body mask when one is given) for speed and evaluated on the full grid.
"""
from __future__ import annotations

from typing import Optional

import SimpleITK as sitk

from .network_grid import as_float32


def n4_correct(image: sitk.Image, mask: Optional[sitk.Image] = None, shrink_factor: int = 4) -> sitk.Image:
    """N4 bias-field correction (float32, same grid), fitted on a shrunk copy for speed.

    The log bias field fitted at low resolution is evaluated on the full grid and divided out. Only positive
    voxels (inside ``mask`` when given) are used for the fit, since N4 works on log intensities."""
    as_float = as_float32(image)
    region = as_float > 0
    if mask is not None:
        region = sitk.And(region, sitk.Cast(mask > 0, sitk.sitkUInt8))
    factors = [max(1, min(shrink_factor, size // 16)) for size in as_float.GetSize()]
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.Execute(sitk.Shrink(as_float, factors), sitk.Shrink(region, factors))
    log_bias = corrector.GetLogBiasFieldAsImage(as_float)
    return sitk.Cast(as_float / sitk.Exp(log_bias), sitk.sitkFloat32)
