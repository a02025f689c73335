"""The QA report of one translation: a single self-contained HTML page (``run --report FILE.html``, and the
Slicer panel's Save report...).

What it holds: a SYNTHETIC / research-use-only banner with the card's intended use; the inputs and their
geometry; the model (id, version, title, licence, training data, weights SHA-256); the engine's warnings about
the input and the checks that could not run; axial, coronal and sagittal planes through the body's centre of
input(s) | synthetic | difference | uncertainty (those last two when the run made them), with colour bars;
a histogram of the synthetic values inside the body (for CT coloured by tissue class, with each class's share
of the body); the metrics when a reference was given; the share of the body whose uncertainty is above a
threshold; run time, device, precision, engine version and date.

Self-contained: pictures are inline base64 PNGs, the histogram inline SVG, the style inline CSS; nothing is
fetched (no script, font, link or remote image), so the file can be mailed, archived and printed as it is.
The pictures are drawn with NumPy and written as PNG by SimpleITK rather than with matplotlib: matplotlib is an
optional extra of the engine and is not installed into Slicer, whose panel saves the same report, so one drawing
path serves both and needs no optional package. Every text that comes from outside (file and node
names, the card, warnings) is HTML-escaped. Apart from the date the page is a function of its arguments.
"""
from __future__ import annotations

import base64
import html
import math
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from . import __version__
from .card import RESEARCH_ONLY, ModelCard, output_display
from .errors import OutputError
from .metrics import AIR_BELOW_HU, BONE_FROM_HU
from .preview import Panel, _display_range, _planes, output_look

if TYPE_CHECKING:  # only annotations need the pipeline's result type
    from .pipeline import TranslationResult

REPORT_SUFFIX = ".html"
#: Uncertainty above which a CT voxel counts as uncertain, by default (HU).
CT_UNCERTAINTY_THRESHOLD = 100.0
#: For other outputs, the default threshold is this share of the card's display window (else of its valid range).
OTHER_UNCERTAINTY_SHARE = 0.1
#: Pixels along the longer side of each plane's picture.
PICTURE_SIDE = 256
#: At most this many histogram bins.
HISTOGRAM_BINS = 200
#: Tissue classes of a synthetic CT: the SynthRAD2023 classes the metrics use (:mod:`.metrics`), so that the
#: histogram's shares and the metrics' per-class MAE and bone Dice mean the same tissue.
TISSUE_CLASSES = (
    ("air", f"below {AIR_BELOW_HU:g} HU", "#56B4E9"),
    ("soft tissue", f"{AIR_BELOW_HU:g} to {BONE_FROM_HU:g} HU", "#E69F00"),
    ("bone", f"{BONE_FROM_HU:g} HU and above", "#555555"),
)
_SINGLE_COLOUR = "#0072B2"

# Colour maps as anchor colours at equal steps from 0 to 1 (grey; a black-red-yellow-white heat map for PET;
# blue-white-red, centred at zero, for differences; viridis-like for uncertainty).
_COLOURS = {
    "grey": [(0, 0, 0), (255, 255, 255)],
    "pet": [(0, 0, 0), (128, 0, 0), (230, 40, 0), (255, 160, 0), (255, 240, 120), (255, 255, 255)],
    "difference": [(33, 102, 172), (103, 169, 207), (247, 247, 247), (239, 138, 98), (178, 24, 43)],
    "uncertainty": [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)],
}
_METRIC_NAMES = {
    "mae": ("MAE (mean absolute error)", True),
    "me": ("ME (mean error, synthetic - reference)", True),
    "rmse": ("RMSE", True),
    "psnr": ("PSNR", False),
    "ssim": ("SSIM", False),
    "mask_volume_ml": ("volume evaluated (body within the reference)", False),
    "mae_air": (f"MAE in air (reference below {AIR_BELOW_HU:g} HU)", True),
    "mae_soft_tissue": (f"MAE in soft tissue (reference {AIR_BELOW_HU:g} to {BONE_FROM_HU:g} HU)", True),
    "mae_bone": (f"MAE in bone (reference {BONE_FROM_HU:g} HU and above)", True),
    "bone_dice": (f"bone Dice (both {BONE_FROM_HU:g} HU and above)", False),
}
_METRIC_UNITS = {"psnr": "dB", "mask_volume_ml": "mL"}


@dataclass(frozen=True)
class ReportInput:
    """An image the report describes: ``name`` as the user knows it (a file path, a Slicer node name), ``role``
    (\"input 't1' (MR T1w)\", \"reference\") and the image as read."""

    name: str
    role: str
    image: sitk.Image


@dataclass(frozen=True)
class ReportOptions:
    """What the caller may change: how the inputs and the reference are named (default: their paths) and the
    uncertainty threshold in output units (default: :func:`default_uncertainty_threshold`)."""

    input_names: Sequence[str] = ()
    reference_name: str = ""
    uncertainty_threshold: Optional[float] = None


def check_report_path(path: "str | Path") -> Path:
    """The report's path, refused unless it ends in ``.html``: the report is one web page."""
    path = Path(path)
    if path.suffix.lower() != REPORT_SUFFIX:
        raise OutputError(f"The QA report {path} must be an .html file (one self-contained web page); give a path "
                          f"ending in {REPORT_SUFFIX}, e.g. {path.with_suffix(REPORT_SUFFIX).name}.")
    return path


def default_uncertainty_threshold(card: ModelCard, provenance: Optional[Dict[str, str]] = None) -> float:
    """100 HU for CT; for other outputs a tenth of the card's display window (in the output's units, see
    :func:`~.card.output_display`), else of its valid range."""
    if card.output["modality"] == "CT":
        return CT_UNCERTAINTY_THRESHOLD
    window = output_display(card.display, provenance or {}).get("window")
    if window:
        return OTHER_UNCERTAINTY_SHARE * float(window)
    low, high = card.output["valid_range"]
    return OTHER_UNCERTAINTY_SHARE * float(high - low)


# ---------------------------------------------------------------------------------------------- numbers


def _body_values(image: sitk.Image, mask: Optional[sitk.Image]) -> np.ndarray:
    values = sitk.GetArrayViewFromImage(image)
    if mask is None:
        return np.asarray(values, dtype=np.float64).ravel()
    return np.asarray(values[sitk.GetArrayViewFromImage(mask) > 0], dtype=np.float64)


def tissue_shares(values: np.ndarray) -> Dict[str, float]:
    """Percent of ``values`` (HU, the body's voxels) in each of :data:`TISSUE_CLASSES`; they add up to 100."""
    values = np.asarray(values)
    if values.size == 0:
        return {name: 0.0 for name, _, _ in TISSUE_CLASSES}
    air = np.count_nonzero(values < AIR_BELOW_HU)
    bone = np.count_nonzero(values >= BONE_FROM_HU)
    counts = (air, values.size - air - bone, bone)
    return {name: 100.0 * count / values.size for (name, _, _), count in zip(TISSUE_CLASSES, counts)}


def _round_step(wanted: float) -> float:
    """The smallest of 1, 2, 5 times a power of ten that is at least ``wanted`` (1 for nothing wanted)."""
    if not wanted > 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(wanted))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= wanted * (1 - 1e-12))


def _bin_width(span: float, ct: bool) -> float:
    """A round bin width giving at most :data:`HISTOGRAM_BINS` bins (more only for a CT spanning over 10000 HU);
    for CT one of 1, 2, 5, 10, 25, 50 HU, which put the tissue classes' limits on bin edges."""
    wanted = span / HISTOGRAM_BINS
    if ct:
        return float(next((s for s in (1, 2, 5, 10, 25, 50) if s >= wanted), 50))
    return _round_step(wanted)


def histogram(values: np.ndarray, ct: bool) -> Tuple[np.ndarray, float, float]:
    """Counts of ``values`` in bins of a round width starting at a multiple of it: (counts, first edge, width).
    Every value falls in one bin, so the counts add up to ``values.size``."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return np.zeros(1, dtype=np.int64), 0.0, 1.0
    low, high = float(values.min()), float(values.max())
    width = _bin_width(high - low, ct)
    first = math.floor(low / width) * width
    index = np.floor((values - first) / width).astype(np.int64)
    return np.bincount(index, minlength=int(index.max()) + 1), first, width


def uncertain_share(uncertainty: sitk.Image, mask: Optional[sitk.Image], threshold: float) -> float:
    """Percent of the body's voxels whose uncertainty is above ``threshold``."""
    values = _body_values(uncertainty, mask)
    return 100.0 * np.count_nonzero(values > threshold) / values.size if values.size else 0.0


# ---------------------------------------------------------------------------------------------- pictures


def png_bytes(pixels: np.ndarray) -> bytes:
    """A PNG file of 8-bit pixels, (height, width) grey or (height, width, 3) RGB, written by SimpleITK (the
    engine's image library, also in Slicer): the same bytes for the same pixels."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    image = sitk.GetImageFromArray(pixels, isVector=pixels.ndim == 3)
    with tempfile.TemporaryDirectory(prefix="medgan-report-") as folder:
        path = Path(folder) / "picture.png"
        sitk.WriteImage(image, str(path), useCompression=True)
        return path.read_bytes()


def _lookup(kind: str) -> np.ndarray:
    anchors = np.asarray(_COLOURS.get(kind, _COLOURS["grey"]), dtype=np.float64)
    steps = np.linspace(0.0, 1.0, len(anchors))
    levels = np.linspace(0.0, 1.0, 256)
    return np.stack([np.interp(levels, steps, anchors[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)


def _coloured(data: np.ndarray, low: float, high: float, kind: str) -> np.ndarray:
    """``data`` mapped from [low, high] onto a colour map: grey (h, w), or RGB (h, w, 3) for the others."""
    scaled = np.clip((np.nan_to_num(data) - low) / (high - low if high > low else 1.0), 0.0, 1.0)
    index = np.round(scaled * 255).astype(np.uint8)
    return index if _COLOURS.get(kind) is None or kind == "grey" else _lookup(kind)[index]


def _resized(plane: np.ndarray, aspect: float) -> np.ndarray:
    """A plane resampled (linearly) to :data:`PICTURE_SIDE` pixels along its longer physical side."""
    rows, cols = plane.shape
    scale = PICTURE_SIDE / max(cols, rows * aspect)
    shape = (max(1, round(rows * aspect * scale)), max(1, round(cols * scale)))
    return ndimage.zoom(plane.astype(np.float32), (shape[0] / rows, shape[1] / cols), order=1, mode="nearest",
                        grid_mode=True)


def _data_uri(pixels: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(pixels)).decode("ascii")


@dataclass
class _Column:
    """One column of the pictures: its title, three planes as data URIs, its colour bar and range."""

    title: str
    planes: List[str]
    colour_bar: str
    low: float
    high: float
    unit: str


def _colour_kind(panel: Panel) -> str:
    return {"pet": "pet", "difference": "difference", "uncertainty": "uncertainty"}.get(panel.kind, "grey")


def _column(panel: Panel, centre: Optional[Sequence[int]], unit: str) -> _Column:
    """``panel``'s image, put into LPS order (so the planes are axial, coronal, sagittal with the patient's right
    on the left, as radiology shows them), cut through ``centre`` and coloured."""
    oriented = sitk.DICOMOrient(panel.image, "LPS")
    array = sitk.GetArrayViewFromImage(oriented)
    planes = _planes(array, oriented.GetSpacing(), centre)
    shown = np.concatenate([np.asarray(data, dtype=np.float32).ravel() for _, data, _ in planes])
    low, high = _display_range(panel, shown)
    kind = _colour_kind(panel)
    uris = [_data_uri(_coloured(_resized(np.asarray(data, dtype=np.float32), aspect), low, high, kind))
            for _, data, aspect in planes]
    bar = _coloured(np.tile(np.linspace(low, high, PICTURE_SIDE), (12, 1)), low, high, kind)
    return _Column(panel.title, uris, _data_uri(bar), low, high, unit)


def _body_centre(mask: Optional[sitk.Image]) -> Optional[Tuple[int, int, int]]:
    """The (z, y, x) centre of the body's bounding box in LPS order; None (the volume's centre) without a body."""
    if mask is None:
        return None
    inside = np.nonzero(sitk.GetArrayFromImage(sitk.DICOMOrient(mask, "LPS")))
    if inside[0].size == 0:
        return None
    return tuple(int((axis.min() + axis.max()) // 2) for axis in inside)  # type: ignore[return-value]


def _columns(card: ModelCard, result: "TranslationResult", inputs: Sequence[ReportInput], minus: str,
             uncertainty: Optional[sitk.Image], threshold: float) -> List[_Column]:
    grid = inputs[0].image
    unit = card.output["unit"]
    panels = []
    for spec, item in zip(card.inputs, inputs):
        image = item.image if item is inputs[0] else sitk.Resample(item.image, grid, sitk.Transform(),
                                                                     sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        panels.append((Panel(f"input {spec.label}", image), ""))
    look = output_look(card, result.provenance)
    panels.append((Panel(card.output_label, result.synthetic, look.kind, look.window), unit))
    if result.difference is not None:
        panels.append((Panel(f"difference (synthetic - {minus})", result.difference, "difference", look.difference),
                       unit))
    if uncertainty is not None:
        top = float(np.percentile(_body_values(uncertainty, result.body_mask), 99.5))
        panels.append((Panel("uncertainty", uncertainty, "uncertainty", (0.0, max(top, 2 * threshold))), unit))
    centre = _body_centre(result.body_mask)
    return [_column(panel, centre, unit) for panel, unit in panels]


# ---------------------------------------------------------------------------------------------- HTML


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Optional[float]) -> str:
    if value is None:
        return "n/a"
    value = float(value)
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _rows(pairs: Sequence[Tuple[str, str]]) -> str:
    """Table rows of (label, HTML) pairs; labels are escaped here, values must be HTML already."""
    return "".join(f"<tr><th>{_esc(label)}</th><td>{value}</td></tr>" for label, value in pairs)


def _geometry(image: sitk.Image) -> Tuple[str, str, str]:
    size = " × ".join(str(n) for n in image.GetSize())
    spacing = " × ".join(f"{s:.3g}" for s in image.GetSpacing()) + " mm"
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())
    oblique = not np.allclose(np.abs(direction).max(axis=0), 1.0, atol=1e-4)
    return size, spacing, f"oblique, closest to {code}" if oblique else code


def _inputs_section(inputs: Sequence[ReportInput], reference: Optional[ReportInput]) -> str:
    rows = []
    for item in list(inputs) + ([reference] if reference is not None else []):
        size, spacing, orientation = _geometry(item.image)
        rows.append(f"<tr><td>{_esc(item.role)}</td><td class='name'>{_esc(item.name)}</td><td>{_esc(size)}</td>"
                    f"<td>{_esc(spacing)}</td><td>{_esc(orientation)}</td></tr>")
    return ("<h2>Input</h2><table class='grid'><tr><th>role</th><th>name</th><th>size (voxels)</th><th>spacing</th>"
            "<th>orientation</th></tr>" + "".join(rows) + "</table>")


def _model_section(card: ModelCard) -> str:
    data = card.data
    output = card.output
    pairs = [
        ("id", f"<code>{_esc(card.id)}</code>"),
        ("version", _esc(card.version)),
        ("title", _esc(card.title)),
        ("translation", _esc(" + ".join(s.label for s in card.inputs) + f" → {output['modality']} ({output['unit']})")),
        ("description", _esc(data.get("description", ""))),
        ("training data", _esc(data.get("training_data", "not stated on the card"))),
        ("licence", _esc(data.get("license", "not stated on the card"))),
        ("weights SHA-256", f"<code>{_esc(card.sha256)}</code>"),
        ("intended use", _esc(card.intended_use)),
    ]
    return "<h2>Model</h2><table class='kv'>" + _rows(pairs) + "</table>"


def _warnings_section(result: "TranslationResult") -> str:
    scan = result.scan
    items = []
    for warning in scan.warnings:
        about = f" (input '{warning.input}')" if warning.input else ""
        items.append(f"<li><b>[{_esc(warning.code)}]</b>{_esc(about)} {_esc(warning.message)} "
                     f"<i>{_esc(warning.advice)}</i></li>")
    if result.report.fallback:
        items.append(f"<li><b>[device]</b> {_esc(result.report.fallback)}</li>")
    if result.metrics_omitted:
        items.append(f"<li><b>[metrics]</b> {_esc(result.metrics_omitted)}</li>")
    body = (f"<ul class='warnings'>{''.join(items)}</ul>" if items else
            "<p class='ok'>No warnings: the checks that ran found this scan like the model's training inputs.</p>")
    if scan.skipped:
        body += f"<p><b>Checks that could not run:</b> {_esc(scan.skipped_text())}.</p>"
    return "<h2>Warnings about the input</h2>" + body


def _pictures_section(columns: Sequence[_Column], centre_note: str) -> str:
    head = "".join(f"<th>{_esc(c.title)}</th>" for c in columns)
    rows = []
    for index, plane in enumerate(("axial", "coronal", "sagittal")):
        cells = "".join(f"<td><img src='{c.planes[index]}' alt='{_esc(plane)} plane of {_esc(c.title)}'></td>"
                        for c in columns)
        rows.append(f"<tr><th class='plane'>{plane}</th>{cells}</tr>")
    bars = "".join(
        f"<td><img class='bar' src='{c.colour_bar}' alt='colour bar of {_esc(c.title)}'><div class='scale'>"
        f"<span>{_esc(_number(c.low))}</span><span>{_esc(_number((c.low + c.high) / 2))}</span>"
        f"<span>{_esc(_number(c.high))} {_esc(c.unit)}</span></div></td>" for c in columns)
    rows.append(f"<tr><th class='plane'></th>{bars}</tr>")
    widest = 80 + (PICTURE_SIDE + 8) * len(columns)  # pictures no larger than drawn
    return (f"<h2>Pictures</h2><table class='planes' style='max-width:{widest}px'><tr><th class='plane'></th>{head}</tr>"
            f"{''.join(rows)}</table>"
            f"<p class='note'>{_esc(centre_note)}</p>")


def _histogram_svg(counts: np.ndarray, first: float, width: float, total: int, ct: bool, unit: str) -> str:
    """Bars of each bin's share of the body (percent, log scale), coloured by tissue class for CT."""
    w, h, left, right, top, bottom = 720, 240, 64, 12, 10, 40
    plot_w, plot_h = w - left - right, h - top - bottom
    shares = 100.0 * counts / max(total, 1)
    positive = shares[shares > 0]
    if positive.size == 0:
        return "<p>No voxels in the body.</p>"
    low_decade = math.floor(math.log10(positive.min()))
    high_decade = max(math.ceil(math.log10(positive.max())), low_decade + 1)
    x0, x1 = first, first + width * len(counts)

    def x(value: float) -> float:
        return left + plot_w * (value - x0) / (x1 - x0)

    def y(share: float) -> float:
        return top + plot_h * (1 - (math.log10(share) - low_decade) / (high_decade - low_decade))

    parts = [f"<svg class='histogram' viewBox='0 0 {w} {h}' width='{w}' height='{h}' role='img' "
             f"aria-label='histogram of the synthetic values in the body'>"]
    for decade in range(low_decade, high_decade + 1):
        level = y(10.0 ** decade)
        label = f"{10.0 ** decade:.{max(0, -decade)}f} %"
        parts.append(f"<line x1='{left}' x2='{w - right}' y1='{level:.1f}' y2='{level:.1f}' class='gridline'/>"
                     f"<text x='{left - 4}' y='{level + 4:.1f}' text-anchor='end'>{label}</text>")
    for index, share in enumerate(shares):
        if share <= 0:
            continue
        start = first + index * width
        colour = _SINGLE_COLOUR
        if ct:
            centre = start + width / 2
            colour = TISSUE_CLASSES[0 if centre < AIR_BELOW_HU else 2 if centre >= BONE_FROM_HU else 1][2]
        parts.append(f"<rect x='{x(start):.2f}' y='{y(share):.2f}' width='{max(x(start + width) - x(start), 0.5):.2f}' "
                     f"height='{top + plot_h - y(share):.2f}' fill='{colour}'/>")
    step = _round_step((x1 - x0) / 8)
    tick = math.ceil(x0 / step) * step
    while tick <= x1 + 1e-9:
        parts.append(f"<line x1='{x(tick):.1f}' x2='{x(tick):.1f}' y1='{top + plot_h}' y2='{top + plot_h + 4}' "
                     f"class='axis'/><text x='{x(tick):.1f}' y='{top + plot_h + 16}' text-anchor='middle'>"
                     f"{_number(tick)}</text>")
        tick += step
    if ct:
        for limit in (AIR_BELOW_HU, BONE_FROM_HU):
            if x0 < limit < x1:
                parts.append(f"<line x1='{x(limit):.1f}' x2='{x(limit):.1f}' y1='{top}' y2='{top + plot_h}' "
                             "class='limit'/>")
    parts.append(f"<line x1='{left}' x2='{w - right}' y1='{top + plot_h}' y2='{top + plot_h}' class='axis'/>"
                 f"<line x1='{left}' x2='{left}' y1='{top}' y2='{top + plot_h}' class='axis'/>"
                 f"<text x='{left + plot_w / 2:.0f}' y='{h - 6}' text-anchor='middle'>{_esc(unit)} "
                 f"(bins of {_number(width)} {_esc(unit)})</text></svg>")
    return "".join(parts)


def _values_section(card: ModelCard, result: "TranslationResult") -> str:
    values = _body_values(result.synthetic, result.body_mask)
    ct = card.output["modality"] == "CT"
    unit = card.output["unit"]
    counts, first, width = histogram(values, ct)
    where = "inside the body" if result.body_mask is not None else "in the whole volume"
    text = (f"<h2>Synthetic {_esc(card.output['modality'])} values {where}</h2>"
            f"<p>{values.size} voxels; share of them per bin, log scale.</p>"
            + _histogram_svg(counts, first, width, values.size, ct, unit))
    if ct:
        shares = tissue_shares(values)
        rows = "".join(f"<tr><td><span class='swatch' style='background:{colour}'></span>{_esc(name)}</td>"
                       f"<td>{_esc(limits)}</td><td class='share'>{shares[name]:.1f} %</td></tr>"
                       for name, limits, colour in TISSUE_CLASSES)
        text += ("<table class='grid shares'><tr><th>tissue class</th><th>synthetic CT</th><th>share of the body</th>"
                 f"</tr>{rows}</table>")
    return text


def _metrics_section(card: ModelCard, result: "TranslationResult") -> str:
    if result.metrics is None:
        return ""
    unit = card.output["unit"]
    rows = []
    for key, value in result.metrics.items():
        label, in_output_units = _METRIC_NAMES.get(key, (key, False))
        shown = _number(value) if not isinstance(value, str) else value
        suffix = unit if in_output_units else _METRIC_UNITS.get(key, "")
        rows.append(f"<tr><td>{_esc(label)}</td><td class='metric'>{_esc(shown)} {_esc(suffix if value is not None else '')}"
                    "</td></tr>")
    return ("<h2>Metrics against the reference</h2><table class='grid metrics'><tr><th>metric (inside the body)</th>"
            f"<th>value</th></tr>{''.join(rows)}</table>")


def _uncertainty_section(card: ModelCard, result: "TranslationResult", uncertainty: Optional[sitk.Image],
                         threshold: float) -> str:
    if uncertainty is None:
        return ""
    unit = card.output["unit"]
    share = uncertain_share(uncertainty, result.body_mask, threshold)
    mean = float(_body_values(uncertainty, result.body_mask).mean())
    how = result.provenance.get("MedGANTranslate.Uncertainty")
    over = f" Uncertainty: {_esc(how)}." if how else ""
    return (f"<h2>Uncertainty</h2><p class='uncertain'><b>{share:.1f} %</b> of the body has an uncertainty above "
            f"{_esc(_number(threshold))} {_esc(unit)} (mean in the body {_esc(_number(mean))} {_esc(unit)}).{over}</p>")


def _run_section(result: "TranslationResult", created: datetime) -> str:
    report = result.report
    windows = f"{report.windows_computed} of {report.windows_total} computed ({report.windows_skipped} background windows skipped)"
    pairs = [
        ("translation time", _esc(f"{result.seconds:.1f} s (checks, network and resampling; without loading the "
                                  "model and reading or writing files)")),
        ("device", _esc(report.device)),
        ("precision", _esc(report.precision)),
        ("sliding windows", _esc(windows)),
    ]
    if result.provenance.get("MedGANTranslate.BiasCorrection"):
        pairs.append(("bias-field correction", _esc(result.provenance["MedGANTranslate.BiasCorrection"])))
    if result.provenance.get("MedGANTranslate.TestTimeMirror"):
        pairs.append(("test-time mirror", _esc(result.provenance["MedGANTranslate.TestTimeMirror"])))
    if result.provenance.get("MedGANTranslate.Planes"):
        pairs.append(("planes", _esc(result.provenance["MedGANTranslate.Planes"])))
    pairs += [("engine", _esc(f"MedGANTranslate {__version__}")), ("report made", _esc(created.strftime("%Y-%m-%d %H:%M %Z").strip()))]
    return "<h2>Run</h2><table class='kv'>" + _rows(pairs) + "</table>"


_STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; font-size: 14px;
       color: #111; max-width: 1100px; margin: 16px auto; padding: 0 12px; }
.banner { border: 3px solid #a00; background: #a00; color: #fff; font-size: 22px; font-weight: bold;
          padding: 10px 14px; text-align: center; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
.use { border: 1px solid #a00; border-top: none; padding: 6px 14px; margin-top: 0; }
h1 { font-size: 20px; margin: 16px 0 4px; } h2 { font-size: 17px; margin: 22px 0 6px; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; } th, td { text-align: left; vertical-align: top; padding: 3px 8px; }
table.grid th, table.grid td { border: 1px solid #ccc; } table.kv th { width: 160px; color: #444; font-weight: 600; }
td.name, code { font-family: ui-monospace, Menlo, Consolas, monospace; word-break: break-all; }
table.planes { width: 100%; table-layout: fixed; } table.planes th.plane { width: 70px; vertical-align: middle; }
table.planes td { padding: 2px; text-align: center; vertical-align: middle; background: #000; }
table.planes tr:last-child td { background: #fff; } table.planes img { width: 100%; height: auto; display: block; }
table.planes img.bar { height: 12px; border: 1px solid #999; }
.scale { display: flex; justify-content: space-between; font-size: 12px; }
ul.warnings li { margin-bottom: 4px; } .ok { color: #155724; } .note { color: #555; font-size: 12px; }
svg.histogram { max-width: 100%; height: auto; font-size: 11px; }
svg .gridline { stroke: #ddd; } svg .axis { stroke: #333; } svg .limit { stroke: #a00; stroke-dasharray: 4 3; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 6px; -webkit-print-color-adjust: exact;
          print-color-adjust: exact; }
@page { size: A4; margin: 12mm; }
@media print { body { max-width: none; margin: 0; font-size: 11px; } h2 { break-after: avoid; }
               table, svg, .banner { break-inside: avoid; } }
"""


def make_report(card: ModelCard, result: "TranslationResult", inputs: Sequence[ReportInput],
                reference: Optional[ReportInput] = None, options: Optional[ReportOptions] = None,
                created: Optional[datetime] = None) -> str:
    """The report's HTML. ``inputs``: one per card input, in order, the first being the grid of the outputs;
    ``reference``: the reference given for metrics, if any. Uses the result's uncertainty when it has one."""
    options = options or ReportOptions()
    created = created or datetime.now().astimezone()
    uncertainty = getattr(result, "uncertainty", None)
    threshold = (options.uncertainty_threshold if options.uncertainty_threshold is not None
                 else default_uncertainty_threshold(card, result.provenance))
    minus = "reference" if reference is not None else "input"
    columns = _columns(card, result, inputs, minus, uncertainty, threshold)
    modality = card.output["modality"]
    where = "the body's centre" if result.body_mask is not None else "the volume's centre"
    centre_note = (f"Planes through {where}, the patient's right on the left (radiological convention), superior at "
                   f"the top; {'later inputs resampled onto the first input' if len(inputs) > 1 else 'all on the input'}"
                   f"'s grid. The {card.output_label} is shown with the card's display window where it has one.")
    title = f"QA report: {card.output_label} of {inputs[0].name} (SYNTHETIC, research use only)"
    return "".join([
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta name='generator' content='MedGANTranslate {_esc(__version__)}'><title>{_esc(title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<div class='banner'>SYNTHETIC {_esc(modality)} — research use only, not for clinical decisions</div>",
        f"<p class='use'><b>Intended use (model card):</b> {_esc(card.intended_use)}</p>",
        f"<h1>QA report: {_esc(card.output_label)} made by {_esc(card.id)} v{_esc(card.version)}</h1>",
        f"<p class='note'>{_esc(RESEARCH_ONLY)} Every image in this report except the input is computed by a "
        "generative network and may show anatomy that is not there or miss anatomy that is.</p>",
        _inputs_section(inputs, reference),
        _model_section(card),
        _warnings_section(result),
        _pictures_section(columns, centre_note),
        _values_section(card, result),
        _metrics_section(card, result),
        _uncertainty_section(card, result, uncertainty, threshold),
        _run_section(result, created),
        "</body></html>\n",
    ])


def report_inputs(card: ModelCard, images: Sequence[sitk.Image], paths: Sequence[str],
                  reference: Optional[sitk.Image] = None, reference_path: Optional[str] = None,
                  options: Optional[ReportOptions] = None) -> Tuple[List[ReportInput], Optional[ReportInput]]:
    """The inputs and reference as the report names them: by ``options``' names where given, else by path."""
    options = options or ReportOptions()
    names = list(options.input_names) or list(paths)
    described = [ReportInput(name, f"input '{spec.name}' ({spec.label})", image)
                 for name, spec, image in zip(names, card.inputs, images)]
    ref = None
    if reference is not None:
        ref = ReportInput(options.reference_name or str(reference_path or ""), "reference", reference)
    return described, ref
