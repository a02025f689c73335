"""Checks, before the network runs, that a scan is the kind of scan the model was trained on.

A generator gives an answer for any input, and a confident-looking synthetic CT from a CT, from a
skull-stripped brain or from a 30 mm slab is worse than none. :func:`check_scan` compares the scan (as the
pipeline prepared it: normalised channels, body mask, network grid) with what the model card says about its
training inputs and returns a :class:`~.scan_report.ScanReport`: one :class:`~.scan_report.ScanWarning` per
problem (code, what is wrong, what to do), the checks that could not run and why, and the measurements behind
them.

The checks, and where each lives:

- ``modality_mismatch`` (:mod:`.image_checks`): the DICOM Modality tag (``0008|0060``), or, without one, the
  histogram: a scan with a large share of voxels near -1000 and values below -500 is in Hounsfield units, i.e.
  a CT.
- ``intensity_outliers`` (:mod:`.image_checks`): voxels absurdly far outside the scan's own intensity range.
- ``irregular_geometry`` (:mod:`.image_checks`): the image reader's note (metadata key
  ``MedGANTranslate.InputWarning``) that it had to regularise a tilted or unevenly spaced series.
- ``skull_stripped`` (:mod:`.anatomy_checks`): for inputs the card declares ``anatomy: whole_head``, a body
  smaller than a head that lacks the bright scalp fat under its surface.
- ``field_of_view`` (:mod:`.training_distribution`): the body's extent along each anatomical axis against the
  training inputs'.
- ``spacing`` (:mod:`.training_distribution`): the voxel spacing against the training inputs'.
- ``intensity_distribution`` (:mod:`.training_distribution`): the contrast of the head's core (where the brain
  is) against the training inputs', as a Wasserstein-1 distance.
- ``white_matter`` (here, :mod:`.white_matter`): for a card that normalises its first input to white matter, a
  white matter that is not one clear tissue (the scale of the whole scan is then a guess).
- ``input_overlap`` (:mod:`.field_overlap`): for multi-input models, each later input's field of view against
  the body found on the first (refused before this when it holds none of the first's field of view).

The shape checks measure the body on the coarse grid of :mod:`.body_sample`. :func:`check_reference` checks a
reference given for metrics the same way (``reference_modality`` against the model's output modality,
``reference_overlap``); a reference that fails them gets no metrics, and the reason.

``field_of_view``, ``spacing`` and ``intensity_distribution`` need the card's ``training_inputs`` block, which
:func:`~.training_distribution.reference_statistics` computes from the training inputs; without it they are
skipped, and the report says so (as it does for ``skull_stripped`` when no input is declared a whole head).

The thresholds are measured, not guessed: ``benchmarks/scan_check_calibration.py`` prints every measurement on
the phantoms and the real scans, and the comment of each constant gives the margins it had.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from .anatomy_checks import check_skull_stripped
from .body_sample import BodySample
from .card import InputSpec, ModelCard
from .field_overlap import COVERED_SHARE, body_points, check_input_overlap, share_inside
from .image_checks import check_input_notes, check_modality, check_outliers, modality_evidence
from .network_grid import NetworkGrid
from .scan_report import ScanReport, ScanWarning
from .training_distribution import CORE_MIN_ML, check_field_of_view, check_intensity, check_spacing, core_contrast
from .white_matter import DOUBTFUL_SPREAD

#: Below this share of the body in the reference's field of view, metrics against it are left out: they would
#: describe another region than the synthetic image, or compare it with padding.
REFERENCE_MIN_SHARE = 0.5


def check_scan(card: ModelCard, images: Sequence[sitk.Image], volume: np.ndarray, mask: np.ndarray,
               grid: NetworkGrid) -> ScanReport:
    """Runs every check on a scan as the pipeline prepared it: ``images`` as read, ``volume`` the normalised
    channels (C, z, y, x) on the network grid, ``mask`` the body mask (z, y, x) on it. The checks that need the
    card's ``training_inputs`` are skipped, with the reason, when it has none."""
    report = ScanReport()
    specs = card.inputs
    sample = BodySample.of(volume, mask, grid)
    report.measurements.update(body_volume_ml=round(sample.volume_ml, 1),
                               extent_mm=[round(e, 1) for e in sample.extent_mm],
                               spacing_mm=[round(s, 4) for s in images[0].GetSpacing()])
    air = []
    for spec, image in zip(specs, images):
        warning, share = check_modality(spec, image)
        air.append(round(share, 4))
        _add(report, warning)
        _add(report, check_outliers(spec, image))
    report.measurements["hounsfield_air_share"] = air
    _check_anatomy(report, specs, sample)
    _add(report, check_white_matter(specs[0], grid, report.measurements))
    if len(specs) > 1:
        warnings, shares = check_input_overlap(specs, images, body_points(mask, grid))
        report.warnings.extend(warnings)
        report.measurements["input_body_share"] = [round(s, 4) for s in shares]
    reference = card.training_inputs
    if reference is None:
        reason = "the model card has no training_inputs block: 'medgan-translate models describe-training' adds it"
        report.skipped.update({name: reason for name in ("field_of_view", "spacing", "intensity_distribution")})
    else:
        _check_against_training(report, specs, images, sample, reference)
    report.warnings.extend(check_input_notes(specs, images))
    return report


def _add(report: ScanReport, warning: Optional[ScanWarning]) -> None:
    if warning is not None:
        report.warnings.append(warning)


def check_white_matter(spec: InputSpec, grid: NetworkGrid, measurements: Dict[str, Any]) -> Optional[ScanWarning]:
    """For a card that normalises its first input to white matter: a warning when the white matter found was
    not one clean tissue (:data:`~.white_matter.DOUBTFUL_SPREAD`), since then the whole scan is scaled by a guess."""
    found = grid.white_matter
    if found is None:
        return None
    measurements.update(white_matter=round(found.value, 4), white_matter_spread=round(found.spread, 3))
    if not found.doubtful:
        return None
    return ScanWarning(
        "white_matter",
        f"The white matter used to put this scan on the model's intensity scale is not one clear tissue (its "
        f"intensities spread {100 * found.spread:.0f} % around their median {found.value:.4g}, above "
        f"{100 * DOUBTFUL_SPREAD:.0f} %), so the synthetic image may be too bright or too dark as a whole.",
        "A strong bias field or weak grey/white contrast does this: compare the synthetic image's white matter "
        "with the input's before using it.",
        spec.name,
    )


def _check_anatomy(report: ScanReport, specs: Sequence[InputSpec], sample: BodySample) -> None:
    heads = [(i, spec) for i, spec in enumerate(specs) if spec.anatomy == "whole_head"]
    if not heads:
        report.skipped["skull_stripped"] = "no input of the model card is declared anatomy: whole_head"
        return
    fractions = []
    for channel, spec in heads:
        warning, bright = check_skull_stripped(spec, sample, channel)
        fractions.append(round(bright, 3))
        _add(report, warning)
    report.measurements["scalp_bright_fraction"] = fractions


def _check_against_training(report: ScanReport, specs: Sequence[InputSpec], images: Sequence[sitk.Image],
                            sample: BodySample, reference: Mapping[str, Any]) -> None:
    warnings, fractions = check_field_of_view(sample, reference)
    report.warnings.extend(warnings)
    report.measurements["extent_fraction"] = [round(f, 3) for f in fractions]
    for spec, image in zip(specs, images):
        _add(report, check_spacing(spec, image, reference))
    contrast = reference["contrast"]
    histograms = core_contrast(sample, contrast)
    if histograms is None:
        report.skipped["intensity_distribution"] = (
            f"the body has less than {CORE_MIN_ML:g} mL at least {contrast['core_depth_mm']:g} mm under its surface "
            "to compare")
        return
    distances = []
    for spec, histogram, channel in zip(specs, histograms, contrast["channels"]):
        warning, distance = check_intensity(spec, histogram, contrast, channel)
        distances.append(round(distance, 4))
        _add(report, warning)
    report.measurements["contrast_distance"] = distances


@dataclass(frozen=True)
class ReferenceCheck:
    """What :func:`check_reference` found: its warnings, the share of the body in the reference's field of
    view, and why metrics against it are left out ('' when they mean something)."""

    warnings: List[ScanWarning]
    body_share: float
    omitted: str


def check_reference(card: ModelCard, reference: sitk.Image, mask: np.ndarray, grid: NetworkGrid) -> ReferenceCheck:
    """Whether a reference (a real scan to compute metrics against) can be compared with the synthetic image:
    it must be of the model's output modality (:func:`~.image_checks.modality_evidence`) and its field of view
    must hold at least :data:`REFERENCE_MIN_SHARE` of the body (``mask`` on the network grid); otherwise metrics
    and the difference map are left out. Under :data:`~.field_overlap.COVERED_SHARE` they cover the overlap
    only, and a warning says so."""
    output, first = card.output["modality"], card.inputs[0].name
    blocking, warnings = [], []
    evidence, _ = modality_evidence(output, reference)
    if evidence:
        blocking.append(ScanWarning(
            "reference_modality",
            f"The reference should be {output}, as the model's output is, but {evidence}. Metrics and the difference "
            "map against it are left out.",
            f"Give a real {output} scan of the same patient as the reference.",
            "reference",
        ))
    share = share_inside(reference, body_points(mask, grid))
    if share < COVERED_SHARE:
        partial = share >= REFERENCE_MIN_SHARE
        (warnings if partial else blocking).append(ScanWarning(
            "reference_overlap",
            f"The reference's field of view holds {100 * share:.0f} % of the body in input '{first}': "
            + ("metrics and the difference map cover only that part." if partial else
               "metrics and the difference map against it are left out, as they would compare the synthetic image "
               "with another region or with padding."),
            f"Give a reference of the same region as '{first}', in the same physical coordinates (the same patient, "
            "registered to it).",
            "reference",
        ))
    return ReferenceCheck(blocking + warnings, share, " ".join(w.message for w in blocking))
