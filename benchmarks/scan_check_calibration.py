"""Calibration of the scan checks (``MedGANTranslateLib.scan_checks``): every measurement behind each check on
phantoms and real scans that must pass, and on those that must warn, against a model's card.

    .venv/bin/python benchmarks/scan_check_calibration.py [--model mr-t1-to-ct-pix2pix] [--real-data DIR]
                                                          [--cache-dir DIR]

Prints a Markdown table (one row per scan: what it should give, the measurements, the warnings it got) and,
per threshold, the closest values on either side of it; exits 1 when a scan does not get what it should.
Rerun it whenever the body mask or a threshold changes. Real scans come from ``../shared/real-data`` (or
``MEDGAN_REAL_DATA``); without them only the phantoms are measured.

``should warn`` leaves out the checks the card does not let run (``skull_stripped`` for a model whose inputs are
not declared whole heads), and expects the spacing warning for thick slices beyond the card's
``training_distribution.spacing_limit_mm``. Columns: ``volume L`` body mask volume; ``scalp`` the brightest layer's bright share
under the surface (nan where not measured); ``extent``
smallest ratio of the body's extent to the smallest training body's (and its axis); ``spacing`` coarsest voxel
side (mm); ``HU air`` share of voxels near -1000; ``contrast`` Wasserstein-1 distance of the head core's
intensity distribution from the training inputs' (the check's measure); ``body W1`` Wasserstein-1 distance of
the whole body's normalised intensities from those of four training phantoms: the plain measure, shown because
it does not separate real T1w scans from other contrasts, which is why the check compares the core instead.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from MedGANTranslateLib import anatomy_checks, image_checks, scan_checks, training_distribution
from MedGANTranslateLib.card import ModelCard
from MedGANTranslateLib.phantom_labels import SKULL_STRIPPING_KEEPS
from MedGANTranslateLib.errors import InputError
from MedGANTranslateLib.imageio import read_image
from MedGANTranslateLib.registry import resolve_model
from MedGANTranslateLib.training.data import card_network_inputs, load_phantom

DEFAULT_REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "real-data"
PHANTOM = {"shape": [192, 224, 192], "spacing": [1.0, 1.0, 1.0], "tumour": True, "deform": True, "noise": True}
HELD_OUT_SEEDS = (1, 2, 3, 4, 5)
BODY_REFERENCE_SEEDS = (100, 101, 102, 103)
REAL_PASS = ("t1/open_ms_patient01_T1W.nii.gz", "t1/open_ms_patient04_T1W.nii.gz",
             "t1/philips_adni_mprage_1mm.nii.gz", "t1/siemens_xa30_t1w_2mm.nii.gz")
REAL_SKULL_STRIPPED = ("t1c/brats_gli_00001_t1n.nii.gz", "t1c/open_ms_patient07_T1_mni.nii.gz")


class Case(NamedTuple):
    """A scan and the warning codes it should get (empty: none)."""

    name: str
    expected: Sequence[str]
    load: Callable[[], sitk.Image]


# ---------------------------------------------------------------------------------------------- scans


def slab(image: sitk.Image, thickness_mm: float) -> sitk.Image:
    """The middle ``thickness_mm`` of a head along its superior-inferior (z) axis."""
    n = max(1, int(round(thickness_mm / image.GetSpacing()[2])))
    start = (image.GetSize()[2] - n) // 2
    return image[:, :, start:start + n]


def thick_slices(image: sitk.Image, slice_mm: float) -> sitk.Image:
    """The head with ``slice_mm`` slices (averaged over each slice's thickness, as a thick acquisition does)."""
    factor = max(1, int(round(slice_mm / image.GetSpacing()[2])))
    return sitk.BinShrink(image, [1, 1, factor])


def skull_stripped(phantom: Dict[str, sitk.Image]) -> sitk.Image:
    """The phantom's T1w with everything but the brain and its CSF set to 0, as skull stripping leaves it."""
    labels = sitk.GetArrayViewFromImage(phantom["labels"])
    values = sitk.GetArrayFromImage(phantom["t1"])
    values[~np.isin(labels, SKULL_STRIPPING_KEEPS)] = 0
    image = sitk.GetImageFromArray(values)
    image.CopyInformation(phantom["t1"])
    return image


def cormack_to_hounsfield(image: sitk.Image) -> sitk.Image:
    """A CT in Cormack units (Rorden's compressed scale: -1000..-100 HU stretched over 0..900, -100..100 HU
    expanded tenfold) back in HU."""
    values = sitk.GetArrayFromImage(image).astype(np.float32)
    hounsfield = values - 1000.0 - 0.9 * np.clip(values - 900.0, 0.0, 2000.0)
    out = sitk.GetImageFromArray(hounsfield)
    out.CopyInformation(image)
    return out


def dicom_series(folder: Path) -> sitk.Image:
    """A DICOM series as the engine reads it or, while the engine refuses it (tilted, unevenly spaced), as ITK
    stacks it: the voxel values, which the checks look at, are the same."""
    try:
        return read_image(folder)
    except InputError:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
        reader.MetaDataDictionaryArrayUpdateOn()
        image = reader.Execute()
        image.SetMetaData(image_checks.DICOM_MODALITY_TAG, reader.GetMetaData(0, image_checks.DICOM_MODALITY_TAG))
        return image


def phantom_cases(cache: Optional[str], card: ModelCard) -> Iterator[Case]:
    def phantom(seed: int) -> Dict[str, sitk.Image]:
        return load_phantom(seed, PHANTOM, cache)

    for seed in HELD_OUT_SEEDS:
        yield Case(f"phantom {seed} T1w", (), lambda s=seed: phantom(s)["t1"])
    yield Case("phantom 1 T2w", ("intensity_distribution",), lambda: phantom(1)["t2"])
    yield Case("phantom 2 T2w", ("intensity_distribution",), lambda: phantom(2)["t2"])
    yield Case("phantom 1 CT", ("modality_mismatch", "intensity_distribution"), lambda: phantom(1)["ct"])
    yield Case("phantom 1 T1w, 30 mm slab", ("field_of_view",), lambda: slab(phantom(1)["t1"], 30.0))
    yield Case("phantom 1 T1w, 3 mm slices", (), lambda: thick_slices(phantom(1)["t1"], 3.0))
    for slice_mm in (7.0, 12.0):  # 7 mm is beyond a 1 mm-only model's limit, within one trained on thick slices
        beyond = slice_mm > training_distribution.spacing_limit_mm(card.training_inputs)
        yield Case(f"phantom 1 T1w, {slice_mm:g} mm slices", ("spacing",) if beyond else (),
                   lambda mm=slice_mm: thick_slices(phantom(1)["t1"], mm))
    yield Case("phantom 1 T1w, skull-stripped", ("skull_stripped",), lambda: skull_stripped(phantom(1)))


def real_cases(root: Path) -> Iterator[Case]:
    for path in REAL_PASS:
        yield Case(Path(path).name, (), lambda p=path: read_image(root / p))
    for path in REAL_SKULL_STRIPPED:
        yield Case(Path(path).name, ("skull_stripped",), lambda p=path: read_image(root / p))
    yield Case("ge_head_ct_dicom (CT)", ("modality_mismatch", "intensity_distribution"),
               lambda: dicom_series(root / "ct" / "ge_head_ct_dicom"))
    yield Case("scct template (CT, HU)", ("modality_mismatch", "intensity_distribution"),
               lambda: cormack_to_hounsfield(read_image(root / "templates" / "scct.nii.gz")))


# ---------------------------------------------------------------------------------------------- measures


def body_histogram(card: ModelCard, image: sitk.Image) -> np.ndarray:
    """Shares of the whole body's first normalised channel over 100 bins of [-1, 1]."""
    volume, mask, _ = card_network_inputs([image], card.data)
    counts = np.histogram(np.clip(volume[0][mask], -1.0, 1.0), 100, (-1.0, 1.0))[0]
    return counts / counts.sum()


def body_w1(histogram: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(np.cumsum(histogram) - np.cumsum(reference)).sum() * 0.02)


class Row(NamedTuple):
    """One scan's outcome: ``expected`` is what it should get from the checks the card lets run."""

    case: Case
    expected: Sequence[str]
    measurements: Dict
    codes: List[str]
    body_w1: float

    @property
    def ok(self) -> bool:
        return set(self.expected) <= set(self.codes) and (bool(self.expected) or not self.codes)


def measure(card: ModelCard, case: Case, body_reference: np.ndarray) -> Row:
    image = case.load()
    volume, mask, grid = card_network_inputs([image], card.data)
    report = scan_checks.check_scan(card, [image], volume, mask, grid)
    expected = [code for code in case.expected if code not in report.skipped]
    return Row(case, expected, report.measurements, sorted({w.code for w in report.warnings}),
               body_w1(body_histogram(card, image), body_reference))


def first(measurements: Dict, key: str) -> float:
    """The first value of a measurement (the first input's), NaN when the check did not measure it."""
    return float(measurements.get(key, [float("nan")])[0])


def table(rows: Sequence[Row]) -> str:
    lines = ["| scan | should warn | volume L | scalp | extent | spacing | HU air | contrast | body W1 | warnings |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        m = row.measurements
        fraction = m["extent_fraction"]
        axis = int(np.argmin(fraction))
        axis_name = training_distribution.AXIS_NAMES[axis][:3]
        lines.append(
            f"| {row.case.name} | {', '.join(row.expected) or '-'} | {m['body_volume_ml'] / 1000:.2f} | "
            f"{first(m, 'scalp_bright_fraction'):.2f} | {fraction[axis]:.2f} {axis_name} | "
            f"{max(m['spacing_mm']):.2f} | {first(m, 'hounsfield_air_share'):.2f} | {first(m, 'contrast_distance'):.3f} | "
            f"{row.body_w1:.3f} | "
            f"{', '.join(row.codes) or '-'}{'' if row.ok else ' **MISMATCH**'} |")
    return "\n".join(lines)


def margins(rows: Sequence[Row], card: ModelCard) -> str:
    """Per threshold, the closest values of the scans that must pass it (those that should get no warning at
    all) and of those that must trip it."""
    quiet = [r for r in rows if not r.expected]

    def closest(code: str, value: Callable[[Row], float], above_warns: bool) -> str:
        passing = [v for v in map(value, quiet) if np.isfinite(v)]
        warning = [v for v in (value(r) for r in rows if code in r.expected) if np.isfinite(v)]
        near_pass, near_warn = (max, min) if above_warns else (min, max)
        side = ("up to", "from") if above_warns else ("down to", "up to")
        return (f"must pass {side[0]} {near_pass(passing):.3g}" if passing else "nothing must pass") + "; " + (
            f"must warn {side[1]} {near_warn(warning):.3g}" if warning else "nothing must warn")

    def measured(key: str) -> Callable[[Row], float]:
        return lambda r: first(r.measurements, key)

    return "\n".join([
        f"- skull_stripped, body volume < {anatomy_checks.BRAIN_ONLY_MAX_ML / 1000:g} L: "
        + closest("skull_stripped", lambda r: r.measurements["body_volume_ml"] / 1000, False),
        f"- skull_stripped, brightest layer < {anatomy_checks.SCALP_BRIGHT_MIN:g}: "
        + closest("skull_stripped", measured("scalp_bright_fraction"), False),
        f"- field_of_view, extent fraction < {training_distribution.EXTENT_MIN_FRACTION:g}: "
        + closest("field_of_view", lambda r: min(r.measurements["extent_fraction"]), False),
        f"- spacing, coarsest voxel side > {training_distribution.spacing_limit_mm(card.training_inputs):.2g} mm "
        f"(training {card.training_inputs['spacing_mm']} mm): "
        + closest("spacing", lambda r: max(r.measurements["spacing_mm"]), True),
        f"- modality_mismatch, HU air share >= {image_checks.HU_AIR_SHARE:g}: "
        + closest("modality_mismatch", measured("hounsfield_air_share"), True),
        f"- intensity_distribution, contrast distance > {training_distribution.CONTRAST_DISTANCE_MAX:g}: "
        + closest("intensity_distribution", measured("contrast_distance"), True),
    ])


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mr-t1-to-ct-pix2pix",
                        help="single-input model whose card the scans are checked against")
    parser.add_argument("--real-data", type=Path, default=Path(os.environ.get("MEDGAN_REAL_DATA", DEFAULT_REAL_DATA)))
    parser.add_argument("--cache-dir", help="where phantoms are kept between runs (default: not kept)")
    args = parser.parse_args(argv)
    card = resolve_model(args.model)
    if card.training_inputs is None:
        print(f"Model {card.id} has no training_inputs block; run 'medgan-translate models describe-training' first.")
        return 2
    reference = np.mean([body_histogram(card, load_phantom(s, PHANTOM, args.cache_dir)["t1"])
                         for s in BODY_REFERENCE_SEEDS], axis=0)
    cases = list(phantom_cases(args.cache_dir, card))
    if args.real_data.is_dir():
        cases += list(real_cases(args.real_data))
    else:
        print(f"(no real scans: {args.real_data} not found)")
    rows = []
    for case in cases:
        rows.append(measure(card, case, reference))
        print(f"measured {case.name}", file=sys.stderr, flush=True)
    print(f"Scan checks against {card.id} v{card.version} (training contrast distances up to "
          f"{max(c['training_distance_max'] for c in card.training_inputs['contrast']['channels']):.3f})\n")
    print(table(rows) + "\n")
    print(margins(rows, card))
    return 0 if all(row.ok for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
