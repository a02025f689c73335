"""The file-level translation job behind ``medgan-translate run``, the batch, the demo and the Slicer module.

:func:`translate_files` takes paths where :class:`~.pipeline.Translator` takes images: it checks the request
(inputs per model input, output paths that clash with inputs or each other, a report without ``.html``) and
refuses, from the files' headers alone, a job that cannot fit in memory, all before the model loads or a voxel
is read; then it reads the inputs, runs the translator and writes every output (images with provenance and the
card's display window, DICOM placed in the input's study where it can be, metrics, QA report) as one
transaction (:mod:`.outputs`): each verified, all moved into place together, and a failure or a cancel before
that leaves every output path as it was. Kept apart from :mod:`.pipeline` so that the in-memory translation
does not depend on files, DICOM or the report.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from . import dicom_output
from .card import ModelCard, output_display
from .dicom_reading import dicom_source, study_tags
from .errors import InputError, MedGANError
from .image_headers import ImageHeader, read_header
from .image_writing import stage_image
from .imageio import read_image
from .inference import LogCallback
from .inference_settings import InferenceSettings, estimate_window_bytes, window_voxels
from .output_paths import check_output_paths, is_dicom_output
from .outputs import OutputSet
from .pipeline import TranslationResult, Translator, inference_settings
from .progress import CancelToken, ProgressCallback, start_stage
from .registry import resolve_model
from .report import ReportOptions, check_report_path, make_report, report_inputs
from .resources import check_fits, estimate_job_bytes, network_grid_voxels, traced_activation_bytes_per_voxel
from .run_options import RunOptions
from .scan_report import WarningCallback


def traced_job_bytes(card: ModelCard, headers: Sequence[ImageHeader], settings: InferenceSettings) -> Optional[int]:
    """Peak memory of the job with the network's activations traced rather than bounded (None when the
    architecture cannot be traced), plus a quarter for the convolution library's scratch memory."""
    side = settings.divisor * -(-64 // settings.divisor)  # a multiple of the divisor, at least 64
    per_voxel = traced_activation_bytes_per_voxel(card.architecture, len(headers), side, len(settings.roi_size))
    if per_voxel is None:
        return None
    window = int(1.25 * per_voxel * window_voxels(settings))
    return estimate_job_bytes(headers, card.preprocessing.get("spacing"), window)


def translate_files(
    model: str,
    inputs: Sequence[str],
    output: str,
    reference: Optional[str] = None,
    diff: Optional[str] = None,
    metrics_path: Optional[str] = None,
    uncertainty: Optional[str] = None,
    options: RunOptions = RunOptions(),
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    log: Optional[LogCallback] = None,
    on_warning: Optional[WarningCallback] = None,
    report: Optional[str] = None,
    report_options: Optional[ReportOptions] = None,
    translator: Optional[Translator] = None,
) -> TranslationResult:
    """Reads, translates and writes; every output appears complete or not at all. ``options``: how the model runs
    (:class:`.RunOptions`; with ``options.strict`` a scan the checks warn about is refused, writing nothing);
    ``on_warning`` receives each warning (see :class:`Translator`). ``translator``: a model already loaded (a
    batch reuses one for every case; ``model`` and ``options`` are then its own). ``report``: a QA report
    (:mod:`.report`, an .html file) written with the other outputs; ``report_options`` name the inputs in it and
    set its uncertainty threshold. ``uncertainty``: where the uncertainty map goes (the variants' standard
    deviation in output units, :mod:`.uncertainty`), written with the other outputs; giving it turns
    ``options.uncertainty`` on, and the synthetic image is then the variants' mean."""
    options = replace(options, uncertainty=bool(uncertainty))
    card = translator.card if translator is not None else resolve_model(model, options.models_dirs, log=log)
    all_inputs: List[str] = list(inputs) + ([reference] if reference else [])
    if len(inputs) != len(card.inputs):
        wanted = ", ".join(s.label for s in card.inputs)
        raise InputError(
            f"Model '{card.id}' takes {len(card.inputs)} input(s) ({wanted}) but {len(inputs)} were given "
            "with -i; repeat -i once per input, in that order."
        )
    images = {role: path for role, path in (("synthetic image", output), ("difference map", diff)) if path}
    if uncertainty:
        images["uncertainty map"] = uncertainty
    files = {role: path for role, path in (("metrics file", metrics_path), ("QA report", report)) if path}
    _check_report_request(report, report_options, len(inputs))
    check_output_paths(images, files, all_inputs)
    if (diff or metrics_path) and not reference and card.difference.get("without_reference") != "minus_input":
        raise MedGANError(
            f"A difference map or metrics need a reference volume of the target modality ({card.output['modality']}); "
            "add --reference."
        )
    if metrics_path and not reference:
        raise MedGANError("Metrics need a reference volume; add --reference or drop --metrics.")

    headers = [read_header(p) for p in inputs]
    settings = translator.settings if translator is not None else inference_settings(card, options.roi, options.overlap)
    width = int((card.architecture.get("params") or {}).get("ngf", 64))
    spacing = card.preprocessing.get("spacing")
    needed = estimate_job_bytes(headers, spacing, estimate_window_bytes(settings, len(headers), width))
    # an uncertainty map: the variants' running mean and variance and one variant's output, then the map itself
    extra = 12 * network_grid_voxels(headers[0], spacing) + 4 * int(np.prod(headers[0].size)) if uncertainty else 0
    size = " × ".join(str(n) for n in headers[0].size)
    check_fits(needed + extra, f"Translating {inputs[0]} ({size} voxels)",
               refine=lambda: (traced_job_bytes(card, headers, settings) or needed) + extra)

    if translator is None:
        stage = start_stage(progress, cancel, "load", f"loading model {card.id} v{card.version}")
        translator = Translator(card, options, log=log, on_warning=on_warning)
        stage.finish()
    stage = start_stage(progress, cancel, "read", "reading input volume(s)")
    roles = [f"input '{s.name}' ({s.label})" for s in card.inputs]
    images = [read_image(p, role) for p, role in zip(inputs, roles)]
    ref_image = read_image(reference, "reference") if reference else None
    source = _dicom_source(inputs[0], roles[0], images[0], [output, diff, uncertainty], log)
    stage.finish()
    result = translator.translate(images, ref_image, progress=progress, cancel=cancel)

    stage = start_stage(progress, cancel, "write", f"writing {output}")
    meta = {**study_tags(images[0]), **result.provenance}
    meta["MedGANTranslate.Source"] = ", ".join(os.path.basename(p) for p in inputs)
    record = result.metrics_record()
    with OutputSet(cancel) as outputs:  # every output staged and verified, then all moved into place
        result.outputs = {"synthetic": str(stage_image(outputs, result.synthetic, output, meta, "synthetic image",
                                                       source, _display_window(card, meta))),
                          "difference": None, "metrics": None, "report": None}
        if diff and result.difference is not None:
            difference = stage_image(outputs, result.difference, diff, _difference_metadata(meta, reference),
                                     "difference map", source, _display_window(card, meta, difference=True))
            result.outputs["difference"] = str(difference)
        result.outputs["uncertainty"] = None
        if uncertainty and result.uncertainty is not None:
            result.outputs["uncertainty"] = str(stage_image(outputs, result.uncertainty, uncertainty,
                                                            _uncertainty_metadata(meta), "uncertainty map", source))
        if metrics_path and record is not None:
            metrics = outputs.stage_json(Path(os.path.abspath(metrics_path)), "metrics file",
                                         {**record, "model": card.id, "version": card.version})
            result.outputs["metrics"] = str(metrics)
        if report:
            described, ref_described = report_inputs(card, images, inputs, ref_image, reference, report_options)
            page = make_report(card, result, described, ref_described, report_options)
            result.outputs["report"] = str(outputs.stage_text(Path(os.path.abspath(report)), "QA report", page))
        outputs.commit()
    stage.finish()
    return result


def _check_report_request(report: Optional[str], options: Optional[ReportOptions], n_inputs: int) -> None:
    """Refuses, before any work, a report path that is not .html, report options without a report, and a count
    of input names that is not one per input."""
    if report:
        check_report_path(report)
    if options is None or not (options.input_names or options.reference_name
                               or options.uncertainty_threshold is not None):
        return
    if not report:
        raise MedGANError("Input names and the uncertainty threshold only change the QA report; add --report FILE.html.")
    if options.input_names and len(options.input_names) != n_inputs:
        raise MedGANError(f"Give one report input name per input: {n_inputs} input(s) but "
                          f"{len(options.input_names)} name(s).")


def _uncertainty_metadata(metadata: Dict[str, str]) -> Dict[str, str]:
    """The uncertainty map's provenance: the synthetic image's, plus what it is (kind ``uncertainty``: the
    standard deviation of the variants ``MedGANTranslate.Uncertainty`` names, in ``MedGANTranslate.Unit``)."""
    return {**metadata, "MedGANTranslate.Kind": "uncertainty", "MedGANTranslate.Statistic": "standard deviation"}


def _dicom_source(path: str, role: str, image: sitk.Image, outputs: Sequence[Optional[str]],
                  log: Optional[LogCallback]) -> Optional[dicom_output.Source]:
    """The DICOM input a DICOM output derives from (None without a DICOM output or input); warns when such an
    output cannot join the input's study and frame of reference (an input that is not DICOM)."""
    folders = [out for out in outputs if out and is_dicom_output(out)]
    if not folders:
        return None
    source = dicom_source(path, role)
    new = dicom_output.new_identifiers(source, study_tags(image))
    if new and log is not None:
        log("warning", f"The {role} {path} is not a DICOM series with a study and frame of reference, so the "
                       f"DICOM output {', '.join(folders)} gets a new {' and a new '.join(new)}: a planning system "
                       "will not put it in the scan's study, nor carry structures drawn on the scan over to it. Give "
                       "the input as its DICOM series to place the output in that patient, study and frame of reference.")
    return source


def _display_window(card: ModelCard, provenance: Dict[str, str], difference: bool = False) -> Optional[Tuple[float, float]]:
    """The card's display window as (centre, width) in the output's units; a difference map's is centred on 0."""
    display = output_display(card.display, provenance)
    if difference:
        half = display.get("difference_window")
        return None if half is None else (0.0, 2.0 * float(half))
    if display.get("window") is None or display.get("level") is None:
        return None
    return float(display["level"]), float(display["window"])


def _difference_metadata(metadata: Dict[str, str], reference: Optional[str]) -> Dict[str, str]:
    """The difference map's provenance: the synthetic image's, plus what it is (synthetic minus reference, or
    minus the input for a model that shows the enhancement without one), so that its headers say so."""
    minus = "reference" if reference else "input"
    return {**metadata, "MedGANTranslate.Kind": "difference", "MedGANTranslate.Difference": f"synthetic-{minus}"}
