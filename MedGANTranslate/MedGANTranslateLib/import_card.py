"""Turns the flags (and a MONAI bundle's settings) into the data of a schema-valid model card.

The weights give the architecture; everything else on a card is how the network was trained to be run (its
inputs, voxel spacing, orientation, intensity scaling, output range) and no file says it reliably. Each answer is
parsed and checked here, every missing or wrong one is collected, and the import is refused once with all of them;
what has a safe default (output unit and display per modality, a ROI the network's divisor fits) is filled in.
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

from .architecture_inference import Inferred
from .card import RESEARCH_ONLY
from .checkpoint_inspection import Checkpoint
from .errors import ImportRefused
from .import_options import ImportOptions, refusal
from .monai_bundle import BundleSettings
from .networks import required_divisor

MODALITIES_IN = ("MR", "CT", "CBCT", "PET", "SPECT", "US")
MODALITIES_OUT = ("MR", "CT", "CBCT", "PET", "SPECT")
#: Size multiple assumed for a TorchScript or ONNX network when --divisible-by is not given: a multiple of what
#: 5-level U-Nets need is harmless for smaller ones (the engine pads to it).
DEFAULT_SELF_CONTAINED_DIVISOR = 32
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
_VERSION = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$")
_T = TypeVar("_T")

_OUTPUT_DEFAULTS = {
    "CT": {"unit": "HU", "dtype": "int16", "valid_range": (-1024, 3071), "background": -1000,
           "display": {"window": 400, "level": 40}},
    "CBCT": {"unit": "HU", "dtype": "int16", "valid_range": (-1024, 3071), "background": -1000,
             "display": {"window": 400, "level": 40}},
    "PET": {"unit": "SUV", "dtype": "float32", "background": 0, "display": {"colormap": "PET-Heat"}},
    "SPECT": {"unit": "a.u.", "dtype": "float32", "background": 0, "display": {"colormap": "PET-Heat"}},
    "MR": {"unit": "a.u.", "dtype": "float32", "display": {}},
}


def build_card_data(inferred: Inferred, ckpt: Checkpoint, options: ImportOptions,
                    bundle: Optional[BundleSettings] = None) -> Tuple[Dict[str, Any], List[str]]:
    """The card for an inferred architecture and the answers; refuses, naming every missing or wrong answer at
    once."""
    missing: List[str] = []
    wrong: List[str] = []
    notes: List[str] = []
    answers = check_answers(options, bundle, inferred, missing, wrong, notes)
    if missing or wrong:
        raise refusal(missing, wrong)
    inputs, spacing, normalization = answers["inputs"], answers["spacing"], answers["normalization"]
    orientation, planes, divisor, roi = answers["orientation"], answers["planes"], answers["divisor"], answers["roi"]
    assert options.output_modality is not None and options.output_range is not None
    modality = options.output_modality.upper()
    low, high = (float(v) for v in options.output_range)
    output, post, display = _output(modality, low, high)
    _input_names(inputs)
    if len(normalization) == 1:
        normalization = [dict(normalization[0]) for _ in inputs]
    first = normalization[0]
    padding_value = float(first["target_range"][0]) if "target_range" in first else -1.0
    inference: Dict[str, Any] = {"roi_size": roi, "divisible_by": divisor, "padding_value": padding_value,
                                 "amp": False, "cpu_precision": "float32"}
    if planes:
        inference["planes"] = planes
    source = ckpt.path.name if bundle is None else f"the MONAI bundle {bundle.config.parents[1].name}"
    labels = " + ".join(f"{i['modality']} {i.get('sequence', '')}".strip() for i in inputs)
    title = options.title or f"{labels} to {modality} ({inferred.framework} {inferred.family}, imported)"
    description = options.description or (
        f"{inferred.family} generator ({inferred.framework}) imported with 'medgan-translate models import' from "
        f"{source}; architecture read from its weights ({inferred.decided_by}). Its weights were not trained or "
        "validated by MedGANTranslate.")
    if options.orientation is None and orientation is None:
        notes.append("no --orientation: each scan reaches the network in its stored axis order; give the orientation "
                     "of the training data (e.g. LPS or RAS) so that every scan is reoriented to it")
    data = {
        "schema_version": "1.0",
        "id": options.model_id,
        "version": options.version,
        "title": title[:120],
        "description": description,
        "inputs": inputs,
        "output": output,
        "site": options.site,
        "architecture": inferred.architecture,
        "weights": {"key": ckpt.key} if ckpt.fmt == "ganslate" and ckpt.key else {},
        "preprocessing": {"orientation": orientation.upper() if orientation else None, "spacing": spacing,
                          "normalization": normalization},
        "inference": inference,
        "postprocessing": {
            "output_mapping": {"source_range": [float(v) for v in options.network_range], "target_range": [low, high]},
            **post,
        },
        "display": display,
        "intended_use": options.intended_use or (
            f"{RESEARCH_ONLY} Imported from a third-party checkpoint ({source}); its accuracy was not validated "
            "by MedGANTranslate."),
        "license": options.license or "unspecified (see the checkpoint's source)",
    }
    if not options.license:
        notes.append("no --license: the card says 'unspecified'; give the weights' licence with --license")
    return data, notes


def check_answers(options: ImportOptions, bundle: Optional[BundleSettings], inferred: Optional[Inferred],
                  missing: List[str], wrong: List[str], notes: List[str]) -> Dict[str, Any]:
    """Checks the answers, appending what is missing or wrong; returns them parsed. Without ``inferred`` (the
    architecture is itself undecided) the checks that depend on it are left out."""
    _check_identity(options, missing, wrong)
    channels = inferred.in_channels if inferred else None
    inputs = _check_inputs(options, channels, missing, wrong)
    _check_output(options, missing, wrong)
    answers = _check_preprocessing(options, bundle, channels, missing, wrong)
    answers["inputs"] = inputs
    if inferred is not None:
        answers.update(_check_window(options, bundle, inferred, wrong, notes))
    return answers


def _check_identity(options: ImportOptions, missing: List[str], wrong: List[str]) -> None:
    if not options.model_id:
        missing.append("--id ID (lower-case letters, digits, '.', '_' and '-'; e.g. mr-t1-to-ct-myresnet)")
    elif not _ID.match(options.model_id):
        wrong.append(f"--id {options.model_id!r}: use 2-64 lower-case letters, digits, '.', '_' or '-'")
    if not _VERSION.match(options.version or ""):
        wrong.append(f"--version {options.version!r}: use major.minor.patch, e.g. 0.1.0")


def _check_inputs(options: ImportOptions, channels: Optional[int], missing: List[str], wrong: List[str]
                  ) -> List[Dict[str, str]]:
    """One --input per channel the network takes, in channel order."""
    inputs: List[Dict[str, str]] = _parse_each(options.inputs, parse_input, wrong)
    if not options.inputs:
        count = f"{channels} times, once per input channel" if channels else "once per input channel"
        missing.append(f"--input MODALITY[:SEQUENCE] ({count}, in channel order; e.g. --input MR:T1w)")
    elif channels and len(options.inputs) != channels and len(inputs) == len(options.inputs):
        wrong.append(f"--input was given {len(options.inputs)} times, but the network takes {channels} input "
                     f"channel(s): give one --input per channel, in channel order")
    return inputs


def _check_output(options: ImportOptions, missing: List[str], wrong: List[str]) -> None:
    """The output's modality, and the range the network's output range maps to."""
    if not options.output_modality:
        missing.append(f"--output-modality {'|'.join(MODALITIES_OUT)} (what the network synthesises)")
    elif options.output_modality.upper() not in MODALITIES_OUT:
        wrong.append(f"--output-modality {options.output_modality!r}: one of {', '.join(MODALITIES_OUT)}")
    if options.output_range is None:
        missing.append("--output-range LOW HIGH (the output values, in the output's unit, that the network's "
                       f"{_num(options.network_range[0])}..{_num(options.network_range[1])} maps to: the range the "
                       "training targets were scaled from, e.g. -1024 3071 for CT in HU)")
    elif len(options.output_range) != 2 or options.output_range[0] == options.output_range[1]:
        wrong.append(f"--output-range {options.output_range}: two different numbers, LOW HIGH")


def _check_preprocessing(options: ImportOptions, bundle: Optional[BundleSettings], channels: Optional[int],
                         missing: List[str], wrong: List[str]) -> Dict[str, Any]:
    """Spacing, normalisation and orientation: the flags, else the bundle's plain values."""
    spacing = list(options.spacing) if options.spacing else (bundle.spacing if bundle else None)
    if spacing is None:
        missing.append("--spacing X Y Z (the voxel spacing in mm the network was trained on)")
    elif len(spacing) != 3 or not all(s > 0 for s in spacing):
        wrong.append(f"--spacing {spacing}: three positive numbers (mm)")
    normalization: List[Dict[str, Any]] = _parse_each(options.normalization, parse_normalization, wrong)
    if not options.normalization:
        if bundle is not None and bundle.normalization is not None:
            normalization = [bundle.normalization]
        else:
            missing.append("--normalization SPEC (how the training inputs were scaled: percentile:0.5:99.5, "
                           "range:-1024:3071, zscore or minmax; to -1..1 unless :A:B is added)")
    orientation = options.orientation or (bundle.orientation if bundle else None)
    if orientation is not None and not re.fullmatch(r"[LRAPSI]{3}", orientation.upper()):
        wrong.append(f"--orientation {orientation!r}: three letters from L/R, A/P, S/I, e.g. LPS or RAS")
    n_inputs = len(options.inputs) or channels or 1
    if normalization and len(normalization) not in (1, n_inputs):
        wrong.append(f"--normalization was given {len(normalization)} times for {n_inputs} inputs: give it once "
                     "(for every input) or once per input")
    return {"spacing": spacing, "normalization": normalization, "orientation": orientation}


def _check_window(options: ImportOptions, bundle: Optional[BundleSettings], inferred: Inferred,
                  wrong: List[str], notes: List[str]) -> Dict[str, Any]:
    """The planes a 2D network runs on, the size multiple it needs and the window (ROI) it is given."""
    dims = inferred.spatial_dims
    planes = list(options.planes)
    if planes and dims == 3:
        wrong.append(f"--planes {' '.join(planes)}: the network is 3D; planes are for 2D networks")
    if dims == 2 and not planes:
        planes = ["axial"]
        notes.append("a 2D network: it runs on axial slices (inference.planes); --planes chooses others")
    divisor = required_divisor(inferred.architecture)
    if inferred.architecture["type"] in ("torchscript", "onnx"):
        if options.divisible_by:
            divisor = options.divisible_by
        else:
            divisor = DEFAULT_SELF_CONTAINED_DIVISOR
            notes.append(f"the file does not say which sizes the network takes: inference.divisible_by "
                         f"{divisor} assumed (--divisible-by sets it)")
    elif options.divisible_by:
        divisor = max(divisor, options.divisible_by)
    roi = list(options.roi) if options.roi else (list(bundle.roi) if bundle and bundle.roi else None)
    if roi is None:
        roi = default_roi(dims, divisor)
    elif len(roi) != dims:
        wrong.append(f"--roi {' '.join(map(str, roi))}: a {dims}D network takes {dims} numbers")
    elif any(r % divisor for r in roi) or any(r < 8 for r in roi):
        wrong.append(f"--roi {' '.join(map(str, roi))}: each side must be at least 8 and a multiple of {divisor}")
    return {"planes": planes, "divisor": divisor, "roi": roi}


def parse_input(text: str) -> Dict[str, str]:
    """``MODALITY[:SEQUENCE]`` → an input entry of the card."""
    modality, _, sequence = text.partition(":")
    modality = modality.strip().upper()
    if modality not in MODALITIES_IN:
        raise ImportRefused(f"--input {text!r}: the modality must be one of {', '.join(MODALITIES_IN)} "
                            "(e.g. MR:T1w, CT).")
    entry = {"modality": modality}
    if sequence.strip():
        entry["sequence"] = sequence.strip()
    return entry


def parse_normalization(text: str) -> Dict[str, Any]:
    """``percentile:LOW:HIGH[:A:B][:body|all]``, ``range:MIN:MAX[:A:B]``, ``zscore[:body|all]`` or
    ``minmax[:A:B]`` (the scan's minimum and maximum to A..B); A..B, the network's input range, defaults to -1..1."""
    parts = [p.strip() for p in text.split(":")]
    method, args = parts[0].lower(), parts[1:]
    flag = f"--normalization {text!r}"
    mask = None
    if args and args[-1].lower() in ("body", "all"):
        mask = args.pop().lower()
    numbers = [_number(a, flag) for a in args]
    usage = ("percentile:LOW:HIGH[:A:B][:body|all] (percentiles to A..B), range:MIN:MAX[:A:B] (fixed intensities, "
             "e.g. CT in HU), zscore[:body|all] or minmax[:A:B]; A..B defaults to -1..1")
    if method == "percentile" and len(numbers) in (2, 4):
        low, high = numbers[:2]
        if not 0 <= low < high <= 100:
            raise ImportRefused(f"{flag}: the percentiles must satisfy 0 <= LOW < HIGH <= 100.")
        spec = {"method": "percentile", "lower": low, "upper": high,
                "target_range": numbers[2:] if len(numbers) == 4 else [-1.0, 1.0]}
        if mask:
            spec["mask"] = mask
        return spec
    if method == "range" and len(numbers) in (2, 4) and not mask:
        return {"method": "range", "source_range": numbers[:2],
                "target_range": numbers[2:] if len(numbers) == 4 else [-1.0, 1.0]}
    if method == "zscore" and not numbers:
        return {"method": "zscore", **({"mask": mask} if mask else {})}
    if method == "minmax" and len(numbers) in (0, 2) and not mask:
        return {"method": "percentile", "lower": 0, "upper": 100, "mask": "all",
                "target_range": numbers if numbers else [-1.0, 1.0]}
    raise ImportRefused(f"{flag} is not a normalisation: give {usage}.")


def default_roi(dims: int, divisor: int) -> List[int]:
    """The window when no --roi is given: 64 per side in 3D, 256 in 2D, rounded up to the divisor."""
    side = _round_up(max(64 if dims == 3 else 256, divisor), max(1, divisor))
    return [side] * dims


def _parse_each(texts: Sequence[str], parse: Callable[[str], _T], wrong: List[str]) -> List[_T]:
    """Each of a repeated flag's values parsed; one that does not parse adds its refusal to ``wrong``."""
    parsed: List[_T] = []
    for text in texts:
        try:
            parsed.append(parse(text))
        except ImportRefused as exc:
            wrong.append(str(exc))
    return parsed


def _number(text: str, flag: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ImportRefused(f"{flag}: {text!r} is not a number.") from None
    if not math.isfinite(value):
        raise ImportRefused(f"{flag}: {text!r} is not a finite number.")
    return value


def _round_up(value: int, divisor: int) -> int:
    return -(-value // divisor) * divisor


def _input_names(entries: List[Dict[str, str]]) -> None:
    """Names each input after its sequence (or modality), numbering repeats: t1w, t1w2."""
    used: Dict[str, int] = {}
    for entry in entries:
        base = re.sub(r"[^a-z0-9_-]", "", (entry.get("sequence") or entry["modality"]).lower()) or "input"
        used[base] = used.get(base, 0) + 1
        entry["name"] = base if used[base] == 1 else f"{base}{used[base]}"
    for entry in entries:  # put name first, as in the other cards
        name = entry.pop("name")
        rest = dict(entry)
        entry.clear()
        entry.update({"name": name, **rest})


def _output(modality: str, low: float, high: float) -> Tuple[Dict[str, Any], Dict[str, Any], Dict[str, Any]]:
    """The card's output, postprocessing and display for the modality, widened to the output range."""
    spec = _OUTPUT_DEFAULTS[modality]
    lo, hi = min(low, high), max(low, high)
    valid = [min(spec["valid_range"][0], lo), max(spec["valid_range"][1], hi)] if "valid_range" in spec else [lo, hi]
    output = {"modality": modality, "unit": spec["unit"], "valid_range": valid, "dtype": spec["dtype"]}
    background = spec.get("background", lo)
    if not lo <= background <= hi:
        background = lo
    display = dict(spec["display"])
    if modality not in ("CT", "CBCT"):
        display.update(window=hi - lo if hi > lo else 1, level=(hi + lo) / 2)
    return output, {"clip": valid, "background_value": background}, display


def _num(value: float) -> Any:
    """1.0 shown as 1 in a message."""
    return int(value) if float(value).is_integer() else value
