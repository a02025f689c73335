"""The in-memory translation: input image(s) in, synthetic image on exactly the input's grid out. Steps: check
inputs → move to the card's grid (orientation, spacing) → body mask → optional N4 → normalise → scan checks
(warnings, or a refusal in strict mode) → sliding-window inference → inverse intensity mapping → back to the input
grid → background outside the body → clip and cast → difference map and metrics against a reference. With
``uncertainty`` the inference step runs once per test-time variant (:mod:`.uncertainty`): the synthetic image is
their mean, and their per-voxel standard deviation comes back on the input grid too, in output units, zero outside
the body. :class:`Translator` keeps a loaded network for several volumes; the job on files (paths checked, memory
checked from headers, outputs written as one transaction) is :func:`.file_translation.translate_files`.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from monai.utils import OptionalImportError

from . import __version__
from .anatomical_axes import mirror_dims, plane_axes
from .card import OUTPUT_SCALE_KEY, ModelCard, takes_mr
from .checkpoints import load_generator
from .devices import compute_precision, configure_threads, select_device
from .errors import CardError, InputError, MedGANError
from .field_overlap import COVERED_SHARE, field_points, share_inside
from .imageio import check_volume
from .inference import LogCallback, run_inference
from .inference_settings import InferenceSettings
from .metrics import ct_tissue_metrics, image_metrics
from .network_checks import check_fully_convolutional, check_network_rank
from .network_grid import NetworkGrid, to_input_grid, to_network_grid
from .network_rewrite import optimise_for_inference
from .networks import required_divisor
from .output_mapping import (cast_output, input_units_factor, map_output, normalised_background_output,
                             output_scale)
from .preprocessing import network_inputs
from .progress import CancelToken, ProgressCallback, start_stage
from .run_options import RunOptions
from .scan_checks import check_reference, check_scan
from .scan_report import ScanReport, ScanWarning, WarningCallback
from .sliding_window import InferenceReport
from .uncertainty import Member, UncertaintyEstimator, UncertaintyRun, has_dropout, member_cards


@dataclass
class TranslationResult:
    synthetic: sitk.Image
    difference: Optional[sitk.Image]
    metrics: Optional[Dict[str, Optional[float]]]
    provenance: Dict[str, str]
    report: InferenceReport
    seconds: float
    body_mask: Optional[sitk.Image] = None  # uint8 on the input grid: where metrics and the background apply
    outputs: Dict[str, Optional[str]] = field(default_factory=dict)
    scan: ScanReport = field(default_factory=ScanReport)  # the scan checks' warnings, skipped checks, measurements
    metrics_omitted: str = ""  # why a reference was given but metrics and difference map were left out
    #: float32 on the input grid, in output units (HU for CT): the standard deviation of the test-time variants
    #: (provenance ``MedGANTranslate.Uncertainty`` names them), 0 outside the body; None unless asked for
    uncertainty: Optional[sitk.Image] = None
    variant_seconds: List[Tuple[str, float]] = field(default_factory=list)  # each variant's inference time

    def metrics_record(self) -> Optional[Dict[str, object]]:
        """What the metrics file holds: the metrics, or why they were left out; None without a reference."""
        if self.metrics is not None:
            return dict(self.metrics)
        return {"metrics_omitted": self.metrics_omitted} if self.metrics_omitted else None


def missing_package_message(card: ModelCard, exc: Exception) -> str:
    """What to do when a network needs a package that is not installed (MONAI's optional imports)."""
    found = re.search(r"No module named '([^'.]+)", str(exc))
    package = found.group(1) if found else "it needs"
    return (f"Model '{card.id}' v{card.version} needs the Python package '{package}', which is not installed "
            f"({exc}). Install it (pip install {package}; in 3D Slicer: slicer.util.pip_install('{package}')) "
            "and run again.")


def inference_settings(card: ModelCard, roi: Optional[Sequence[int]] = None, overlap: Optional[float] = None) -> InferenceSettings:
    """The card's sliding-window settings with user overrides; the ROI must suit the network's size multiple."""
    divisor = max(int(card.inference.get("divisible_by", 1)), required_divisor(card.architecture))
    return InferenceSettings.from_card(card.inference, divisor, roi, overlap)


class Translator:
    """A model card with its network loaded on a device, ready to translate volumes."""

    def __init__(self, card: ModelCard, options: RunOptions = RunOptions(), log: Optional[LogCallback] = None,
                 on_warning: Optional[WarningCallback] = None) -> None:
        """``options``: device, windows, threads and what to run (:class:`.RunOptions`). With ``options.strict`` a
        scan the checks warn about (:mod:`.scan_checks`) is refused before the network runs; ``on_warning``
        receives each warning (without it, warnings go to ``log``). ``options.uncertainty``: run the test-time
        variants (:mod:`.uncertainty`), the synthetic image their mean and :attr:`TranslationResult.uncertainty`
        their spread. ``options.n4``: N4 bias-field correction of the MR inputs before normalisation even where the
        card does not ask for it, for a scan whose intensities drift strongly across the head (a model trained
        with random bias fields copes with what is left)."""
        self.card = card
        self.log = log
        self.strict = options.strict
        self.on_warning = on_warning
        configure_threads(options.threads)
        self.device = select_device(options.device)
        self.settings = inference_settings(card, options.roi, options.overlap)
        if options.uncertainty_variants is not None and not options.uncertainty:
            raise MedGANError("A number of uncertainty variants was given without asking for the uncertainty map; "
                              "add --uncertainty FILE, or drop --uncertainty-variants.")
        if options.uncertainty and options.tta:
            raise MedGANError(
                "--tta and --uncertainty were both given: the uncertainty map's variants already include the mirror "
                "image, and its synthetic image is the mean of all variants. Drop --tta."
            )
        if options.tta and not self.settings.test_time_mirror:
            raise MedGANError(
                f"Model '{card.id}' declares no test-time mirror axes (card inference.test_time_mirror): it was not "
                "trained to give mirrored anatomy a mirrored result, so test-time augmentation would blur it. "
                "Run it without --tta."
            )
        self.tta = options.tta
        if options.n4 and not takes_mr(card.inputs):
            raise MedGANError(f"Model '{card.id}' takes no MR input, and N4 corrects the bias field of MR scans. "
                              "Run it without --n4.")
        self.preprocessing = {**card.preprocessing, "n4": True} if options.n4 else card.preprocessing
        self.network = load_generator(card, device=str(self.device))
        check_network_rank(self.network, self.settings)
        check_fully_convolutional(self.network, self.settings)
        self.inference_network = optimise_for_inference(
            self.network, compute_precision(self.settings, self.device), self.device.type
        )
        self.uncertainty = self._estimator(options) if options.uncertainty else None

    def _estimator(self, options: RunOptions) -> UncertaintyEstimator:
        """The uncertainty map's variants: this card's network first, then each ensemble member's, loaded here."""
        members = [Member(f"{self.card.weights['file']}", None, self.settings)]
        for label, member in member_cards(self.card, options.models_dirs):
            settings = replace(inference_settings(member, options.roi, options.overlap), grid_shift=())
            network = load_generator(member, device=str(self.device))
            check_network_rank(network, settings)
            check_fully_convolutional(network, settings)
            members.append(Member(label, optimise_for_inference(network, compute_precision(settings, self.device),
                                                                self.device.type), settings))
        dropout = has_dropout(self.network) or any(has_dropout(m.network) for m in members[1:])
        return UncertaintyEstimator(self.card, members, options.uncertainty_variants, dropout)

    def translate(
        self,
        images: Sequence[sitk.Image],
        reference: Optional[sitk.Image] = None,
        progress: Optional[ProgressCallback] = None,
        cancel: Optional[CancelToken] = None,
    ) -> TranslationResult:
        card = self.card
        start = time.perf_counter()
        specs = card.inputs
        if len(images) != len(specs):
            wanted = ", ".join(s.label for s in specs)
            raise InputError(
                f"Model '{card.id}' takes {len(specs)} input(s) ({wanted}) but {len(images)} were given; "
                "give one input per listed modality, in that order."
            )
        for image, spec in zip(images, specs):
            check_volume(image, f"input '{spec.name}' ({spec.label})")
        if reference is not None:
            check_volume(reference, "reference")
        self.check_overlap(images)

        stage = start_stage(progress, cancel, "preprocess", "resampling, body mask and normalisation")
        post = card.postprocessing
        volume, mask, grid = self.prepare(images)
        scan = self.check(images, volume, mask, grid)
        compared, omitted = self.check_reference(reference, mask, grid, scan)
        stage.finish()

        mirror = mirror_dims(grid.direction, self.settings.test_time_mirror) if self.tta else ()
        # A 2D network's planes, found on the network grid; passed only for it, so overrides of infer written for
        # 3D networks (the benchmark's) keep working.
        planar = {"slice_axes": plane_axes(grid.direction, self.settings.planes)} if self.settings.planes else {}
        varied: Optional[UncertaintyRun] = None
        if self.uncertainty is not None:
            varied = self.uncertainty.run(self.run_network, self.inference_network, volume, mask, grid.direction,
                                          self.device, progress, cancel, planar.get("slice_axes"))
            out, report = varied.mean, varied.report
            varied.mean = None  # type: ignore[assignment]  # out alone holds it: dropped after use like the rest
        else:
            out, report = self.infer(volume, mask, progress, cancel, mirror, **planar)
        # Full-size arrays are dropped as soon as they are used: peak memory grows with the volume (~22 B/voxel).
        minus_input = reference is None and card.difference.get("without_reference") == "minus_input"
        normalised_input = volume[0] if minus_input else None
        del volume

        stage = start_stage(progress, cancel, "postprocess", "inverse intensity mapping and resampling to the input grid")
        background = post.get("background_value")
        units = input_units_factor(post, grid.input_scale)  # the card's physical values, in the input's units
        valid = [v * units for v in (post.get("clip") or card.output["valid_range"])]
        background = None if background is None else background * units
        fill = float(background if background is not None else valid[0])
        # On the input grid the images stay in SimpleITK (threaded, no NumPy round trips of input-sized arrays).
        synthetic_image = self._on_input_grid(map_output(out, post, grid.input_scale), grid, images[0], fill)
        del out
        mask_image = self._on_input_grid(mask.astype(np.uint8), grid, images[0], 0, sitk.sitkNearestNeighbor)
        del mask
        uncertainty = self._spread(varied, grid, images[0], mask_image) if varied is not None else None
        if background is not None:
            synthetic_image = sitk.Mask(synthetic_image, mask_image, outsideValue=float(background))
        synthetic = cast_output(synthetic_image, card.output["dtype"], valid)
        del synthetic_image
        difference, metrics = self._difference(synthetic, images[0], compared, normalised_input, grid, mask_image)
        seconds = time.perf_counter() - start
        provenance = dict(card.provenance())
        provenance.update(
            {
                "MedGANTranslate.Device": report.device,
                "MedGANTranslate.Precision": report.precision,
                "MedGANTranslate.Seconds": f"{seconds:.2f}",
                "MedGANTranslate.EngineVersion": __version__,
            }
        )
        provenance.update(scan.provenance())
        if grid.white_matter is not None:
            provenance["MedGANTranslate.WhiteMatterReference"] = white_matter_text(grid)
        if units != 1.0:
            provenance[OUTPUT_SCALE_KEY] = f"{units:.9g}"
        if self.preprocessing.get("n4"):
            provenance["MedGANTranslate.BiasCorrection"] = "N4"
        if report.mirrored:
            provenance["MedGANTranslate.TestTimeMirror"] = ", ".join(self.settings.test_time_mirror)
        if report.planes:
            provenance["MedGANTranslate.Planes"] = planes_text(report.planes)
        if varied is not None:
            provenance["MedGANTranslate.Uncertainty"] = varied.description
        stage.finish()
        timing = [(v.label(), t) for v, t in zip(varied.variants, varied.seconds)] if varied is not None else []
        return TranslationResult(synthetic, difference, metrics, provenance, report, seconds, mask_image, scan=scan,
                                 metrics_omitted=omitted, uncertainty=uncertainty, variant_seconds=timing)

    def _spread(self, varied: UncertaintyRun, grid: NetworkGrid, target: sitk.Image, mask_image: sitk.Image) -> sitk.Image:
        """The variants' standard deviation on the input grid (float32), in output units: network units times the
        output mapping's scale, resampled as the synthetic image is, 0 outside the body."""
        std = varied.std
        varied.std = None  # type: ignore[assignment]
        std *= output_scale(self.card.postprocessing) * input_units_factor(self.card.postprocessing, grid.input_scale)
        spread = self._on_input_grid(std, grid, target, 0.0)
        del std
        return sitk.Cast(sitk.Mask(spread, mask_image, outsideValue=0.0), sitk.sitkFloat32)

    def check(self, images: Sequence[sitk.Image], volume: np.ndarray, mask: np.ndarray, grid: NetworkGrid) -> ScanReport:
        """The scan checks on the prepared inputs: each warning reported, the checks that could not run logged,
        and in strict mode a refusal naming the warnings, all before the network runs."""
        scan = check_scan(self.card, images, volume, mask, grid)
        self._report(scan.warnings)
        if scan.skipped and self.log is not None:
            self.log("info", f"Scan checks not run: {scan.skipped_text()}")
        if self.strict and scan.warnings:
            listed = "\n".join(f"  [{w.code}] {w.text()}" for w in scan.warnings)
            raise InputError(
                f"Model '{self.card.id}' refuses this scan in strict mode, before running the network, because it is "
                f"outside what the model was trained on:\n{listed}\nNothing was written. Give a scan that passes "
                "the checks, or run without --strict to translate it anyway with these warnings recorded."
            )
        return scan

    def _report(self, warnings: Sequence[ScanWarning]) -> None:
        """Each warning to ``on_warning``, or without it to the log."""
        for warning in warnings:
            if self.on_warning is not None:
                self.on_warning(warning)
            elif self.log is not None:
                self.log("warning", f"{warning.text()} [{warning.code}]")

    def check_overlap(self, images: Sequence[sitk.Image]) -> None:
        """Refuses an input after the first whose field of view holds none of the first input's: the network
        would get nothing but padding for it, whatever the scans show."""
        first, points = self.card.inputs[0], field_points(images[0])
        for spec, image in zip(self.card.inputs[1:], images[1:]):
            if share_inside(image, points) == 0:
                apart = np.linalg.norm(np.subtract(_centre(image), _centre(images[0])))
                raise InputError(
                    f"Input '{spec.name}' ({spec.label}) lies entirely outside input '{first.name}': no part of "
                    f"'{first.name}''s field of view is inside its own (their centres are {apart:.0f} mm apart). "
                    "The inputs must show the same region in the same physical coordinates: give scans of one "
                    f"session, or register '{spec.name}' to '{first.name}' first."
                )

    def prepare(self, images: Sequence[sitk.Image]) -> Tuple[np.ndarray, np.ndarray, NetworkGrid]:
        """:func:`~.preprocessing.network_inputs` for this card. An input error (an empty body, no contrast to
        normalise) names the input it is about (the body is found on the first), and says when that input lies
        mostly outside the first's."""
        card = self.card
        try:
            return network_inputs(images, self.preprocessing, card.postprocessing.get("body_mask", {}),
                                  [spec.modality for spec in card.inputs])
        except InputError as exc:
            index = exc.input_index or 0
            spec, first = card.inputs[index], card.inputs[0]
            share = share_inside(images[index], field_points(images[0]))
            where = ""
            if share < COVERED_SHARE:
                where = (f" Its field of view holds only {100 * share:.0f} % of input '{first.name}''s field of view: "
                         "give scans of the same region in the same physical coordinates.")
            raise InputError(f"Input '{spec.name}' ({spec.label}): {exc}{where}") from exc

    def check_reference(self, reference: Optional[sitk.Image], mask: np.ndarray, grid: NetworkGrid,
                        scan: ScanReport) -> Tuple[Optional[sitk.Image], str]:
        """The reference checks (:func:`~.scan_checks.check_reference`), before the network runs: warnings
        reported and recorded with the scan's. Returns the reference to compare with (None where metrics would
        mean nothing) and why metrics are left out ('' when they are not). Strict mode does not refuse for
        them: a bad reference costs the metrics, not the synthetic image."""
        if reference is None:
            return None, ""
        found = check_reference(self.card, reference, mask, grid)
        self._report(found.warnings)
        scan.warnings.extend(found.warnings)
        scan.measurements["reference_body_share"] = round(found.body_share, 4)
        return (None if found.omitted else reference), found.omitted

    def infer(
        self,
        volume: np.ndarray,
        mask: np.ndarray,
        progress: Optional[ProgressCallback] = None,
        cancel: Optional[CancelToken] = None,
        mirror: Sequence[int] = (),
        slice_axes: Optional[Sequence[int]] = None,
    ) -> Tuple[np.ndarray, InferenceReport]:
        """The inference step on the network grid: normalised ``volume`` (channels, z, y, x) and body ``mask``
        (z, y, x) in, output (z, y, x) in the network's range out; ``mirror``: array axes of test-time
        mirroring; ``slice_axes``: a 2D network's array axis per plane. The benchmark replaces it to compare
        inference strategies inside the same pipeline."""
        return self.run_network(self.inference_network, self.settings, volume, mask, progress, cancel, slice_axes,
                                mirror)

    def run_network(self, network, settings: InferenceSettings, volume: np.ndarray, mask: np.ndarray,
                    progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None,
                    slice_axes: Optional[Sequence[int]] = None, mirror: Sequence[int] = ()) -> Tuple[np.ndarray, InferenceReport]:
        """:meth:`infer` with this ``network`` and window ``settings`` (an uncertainty variant's, an ensemble
        member's)."""
        try:
            return run_inference(
                network,
                volume,
                settings,
                self.device,
                mask=mask if settings.skip_background else None,
                background_out=normalised_background_output(self.card.postprocessing),
                progress=progress,
                cancel=cancel,
                log=self.log,
                mirror=mirror,
                slice_axes=slice_axes,
            )
        except OptionalImportError as exc:  # MONAI imports some networks' packages (einops) only when they run
            raise CardError(missing_package_message(self.card, exc)) from exc

    @staticmethod
    def _like(array: np.ndarray, geometry: sitk.Image) -> sitk.Image:
        image = sitk.GetImageFromArray(array)
        image.CopyInformation(geometry)
        return image

    def _on_input_grid(
        self, array: np.ndarray, grid: NetworkGrid, target: sitk.Image, fill: float, interpolator: int = sitk.sitkLinear
    ) -> sitk.Image:
        """``array`` (network grid) as an image on the input grid, not resampled when the grids match. Values
        are interpolated as float32; a uint8 label map is resampled by nearest neighbour as it is (3.5x faster
        than interpolating it as float, and still a label map)."""
        values = array if interpolator == sitk.sitkNearestNeighbor else array.astype(np.float32, copy=False)
        if grid.same_as_input:
            return self._like(values, target)
        return to_input_grid(grid.image(values), target, fill, interpolator)

    def _difference(self, synthetic, source, reference, normalised_input, grid, mask_image):
        """Synthetic minus ``reference`` with metrics inside the body and the reference's field of view (the
        difference is 0 outside that field), or, given ``normalised_input``, synthetic minus input; else None."""
        card = self.card
        if reference is None and normalised_input is None:
            return None, None  # nothing to compare: no float copy of the output
        synth = sitk.GetArrayFromImage(synthetic).astype(np.float32)
        if reference is not None:
            mask = sitk.GetArrayViewFromImage(mask_image) > 0
            ref = sitk.GetArrayFromImage(to_network_grid(reference, {}, reference_grid=synthetic))
            difference = synth - ref
            covered = self._in_field_of_view(reference, synthetic)
            if covered is not None:
                mask &= covered
                difference[~covered] = 0
            metrics = image_metrics(synth, ref, mask, card.output["modality"], spacing=synthetic.GetSpacing())
            if card.output["modality"] == "CT":
                metrics.update(ct_tissue_metrics(synth, ref, mask))
            return self._like(difference, synthetic), metrics
        units = input_units_factor(card.postprocessing, grid.input_scale)
        fill = float(card.postprocessing.get("background_value") or 0.0) * units
        as_output = sitk.GetArrayFromImage(
            self._on_input_grid(map_output(normalised_input, card.postprocessing, grid.input_scale), grid, source, fill)
        )
        return self._like(synth - as_output, synthetic), None


    @staticmethod
    def _in_field_of_view(image: sitk.Image, target: sitk.Image) -> Optional[np.ndarray]:
        """Boolean (z, y, x) array of ``target``'s voxels inside ``image``'s field of view: where ``image``
        resampled onto ``target`` holds its own values, not padding (nearest neighbour and linear interpolation
        share ITK's inside test). None when all are: the field of view is convex, so it holds every voxel when
        it holds the eight corners."""
        if share_inside(image, field_points(target, per_axis=2)) == 1:
            return None
        ones = sitk.Image(image.GetSize(), sitk.sitkUInt8) + 1
        ones.CopyInformation(image)
        inside = sitk.Resample(ones, target, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        return sitk.GetArrayViewFromImage(inside) > 0


def white_matter_text(grid: NetworkGrid) -> str:
    """How the provenance records a white-matter normalisation: the value found, its spread and the factor."""
    found = grid.white_matter
    return f"{found.value:.6g} (spread {found.spread:.2f}, {found.voxels} voxels; scaled by {grid.input_scale:.6g})"


def planes_text(planes: Sequence[str]) -> str:
    """How the provenance names a 2D network's planes: 'axial (slice by slice)', 'axial, coronal, sagittal
    (tri-planar mean)'."""
    how = "slice by slice" if len(planes) == 1 else ("tri-planar mean" if len(planes) == 3 else "mean of the planes")
    return f"{', '.join(planes)} ({how})"


def _centre(image: sitk.Image) -> Tuple[float, ...]:
    """The physical centre of an image's field of view."""
    return image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()])

