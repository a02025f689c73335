"""Checks of each input image as it was read, before it is resampled: whether it is of the modality the card's
input expects (its DICOM Modality tag, or Hounsfield air), whether it holds absurd voxel values, and the notes an
image reader left about a series it had to regularise. None needs the body or the card's ``training_inputs``.
:func:`modality_evidence` serves the reference's modality check (:func:`~.scan_checks.check_reference`) too.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from .card import InputSpec
from .dicom_reading import INPUT_WARNING
from .scan_report import ScanWarning

DICOM_MODALITY_TAG = "0008|0060"
#: DICOM Modality codes (0008,0060) of each card modality.
DICOM_MODALITIES = {"MR": ("MR",), "CT": ("CT",), "CBCT": ("CT",), "PET": ("PT",), "SPECT": ("NM",), "US": ("US",)}

#: Hounsfield air: a CT has at least this share of its voxels within ``HU_AIR_WINDOW`` of -1000 (the air
#: around and inside the head) and its 1st percentile below ``HU_BELOW``. Measured: the GE head CT 27 % (its
#: padding outside the reconstruction circle is at -1500), the MNI-space average CT 32 %, the phantom CT 66 %;
#: MR scans 0 % (none reaches below -500).
HU_AIR_SHARE = 0.05
HU_AIR_WINDOW = (-1100.0, -900.0)
HU_BELOW = -500.0

#: A voxel further than this many robust ranges (0.01st to 99.99th percentile) beyond that range holds an
#: absurd value: one at 1e6 in a head of values up to 1000 once emptied the body mask. The mask and the
#: normalisation ignore such voxels, but a scan that holds them may be corrupt. Real scans' maxima lie within
#: 1 range of their 99.99th percentile (the Philips MPRAGE: 1.6e5 against 1.3e5).
OUTLIER_RANGES = 10.0


def dicom_modality(image: sitk.Image) -> str:
    """The DICOM Modality tag an image read from DICOM carries (upper case), or ''."""
    return image.GetMetaData(DICOM_MODALITY_TAG).strip().upper() if image.HasMetaDataKey(DICOM_MODALITY_TAG) else ""


def hounsfield_air_share(image: sitk.Image) -> float:
    """Share of voxels in :data:`HU_AIR_WINDOW` when the 1st percentile is below :data:`HU_BELOW` (else 0), on
    a strided sample of about a million voxels."""
    flat = sitk.GetArrayViewFromImage(image).ravel()
    sample = flat[:: max(1, flat.size >> 20)].astype(np.float32)
    if np.quantile(sample, 0.01) >= HU_BELOW:
        return 0.0
    low, high = HU_AIR_WINDOW
    return float(np.mean((sample >= low) & (sample <= high)))


def modality_evidence(modality: str, image: sitk.Image) -> Tuple[str, float]:
    """What says that ``image`` is not a scan of ``modality`` ('' when nothing does), and the share of
    Hounsfield air found. The DICOM tag decides when there is one; otherwise Hounsfield air means CT, and its
    absence means not CT."""
    tag = dicom_modality(image)
    share = hounsfield_air_share(image)
    is_ct = modality in ("CT", "CBCT")
    if tag:
        wrong = tag not in DICOM_MODALITIES.get(modality, (tag,))
        evidence = f"its DICOM Modality tag says {tag}"
    elif share >= HU_AIR_SHARE:
        wrong = not is_ct
        evidence = f"it looks like a CT: {100 * share:.0f} % of its voxels lie near -1000, as air does in Hounsfield units"
    else:
        wrong = is_ct
        evidence = (f"it does not look like a CT: {100 * share:.0f} % of its voxels lie near -1000, where a CT's air "
                    f"puts {100 * HU_AIR_SHARE:.0f} % or more")
    return (evidence if wrong else ""), share


def check_modality(spec: InputSpec, image: sitk.Image) -> Tuple[Optional[ScanWarning], float]:
    """A warning when the scan is not of the modality the input expects (:func:`modality_evidence`), and the
    share of Hounsfield air found."""
    evidence, share = modality_evidence(spec.modality, image)
    if not evidence:
        return None, share
    return ScanWarning(
        "modality_mismatch",
        f"Input '{spec.name}' should be {spec.label}, but {evidence}.",
        f"Give the {spec.label} scan this model was trained on.",
        spec.name,
    ), share


def check_outliers(spec: InputSpec, image: sitk.Image) -> Optional[ScanWarning]:
    """A warning when some voxels lie absurdly far outside the scan's own intensity range
    (:data:`OUTLIER_RANGES`): the robust steps ignore them, but the user should know the scan holds them."""
    values = sitk.GetArrayViewFromImage(image)
    flat = values.ravel()
    low, high = np.percentile(flat[:: max(1, flat.size >> 21)], [0.01, 99.99])
    span = OUTLIER_RANGES * max(float(high - low), 1e-6)
    if values.min() >= low - span and values.max() <= high + span:
        return None
    far = (values < low - span) | (values > high + span)
    extreme = float(values[far].max() if values.max() > high + span else values[far].min())
    return ScanWarning(
        "intensity_outliers",
        f"Input '{spec.name}' holds {int(np.count_nonzero(far))} voxel(s) far outside its intensity range (e.g. "
        f"{extreme:.3g}, while 99.98 % of its voxels lie within [{low:.4g}, {high:.4g}]); the body mask and the "
        "normalisation ignored them.",
        "Check the scan for a corrupt slice or a wrong scale before relying on the result.",
        spec.name,
    )


def check_input_notes(specs: Sequence[InputSpec], images: Sequence[sitk.Image]) -> List[ScanWarning]:
    """The image reader's notes about series it had to regularise, passed on."""
    return [
        ScanWarning("irregular_geometry", f"Input '{spec.name}': {image.GetMetaData(INPUT_WARNING).strip().rstrip('.')}.",
                    "Compare the result with the original slices before relying on it.", spec.name)
        for spec, image in zip(specs, images) if image.HasMetaDataKey(INPUT_WARNING)
    ]
