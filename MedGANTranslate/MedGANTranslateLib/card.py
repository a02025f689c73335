"""Model cards: ``model.json`` files describing one generator, validated against a JSON Schema.

The schema (``schemas/model_card.schema.json``) is the single source of truth for what a card may hold and
its defaults. :func:`load_card` validates with ``jsonschema`` and fills defaults, so the rest of the engine
reads plain attributes. :func:`read_card_summary` reads a card without validating: the Slicer panel uses it
to list models before the engine's dependencies are installed.
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .errors import CardError

SCHEMA_PATH = Path(__file__).with_name("schemas") / "model_card.schema.json"
CARD_FILENAME = "model.json"
RESEARCH_ONLY = "Research use only, not for clinical decisions."


def load_schema() -> Dict[str, Any]:
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        return json.load(f)


def _read_json(path: Path) -> Dict[str, Any]:
    if not path.is_file():
        raise CardError(f"Model card not found: {path}. A model folder must contain {CARD_FILENAME}.")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise CardError(f"Model card {path} is not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}.") from exc
    if not isinstance(data, dict):
        raise CardError(f"Model card {path} must hold a JSON object, found {type(data).__name__}.")
    return data


def _field_path(error: Any) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "(top level)"


def validate_card_data(data: Dict[str, Any], source: str = "<card>") -> None:
    """Raises :class:`CardError` naming the file, the field and what the schema expects."""
    import jsonschema  # imported here so that reading summaries needs no third-party package

    validator_cls = jsonschema.validators.validator_for(load_schema())
    validator = validator_cls(load_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(list(e.absolute_path)), str(e.absolute_path)))
    if not errors:
        _check_consistency(data, source)
        return
    lines = []
    for err in errors[:5]:
        best = jsonschema.exceptions.best_match([err])
        lines.append(f"  field '{_field_path(best)}': {best.message}")
    more = f"\n  ... and {len(errors) - 5} more problem(s)" if len(errors) > 5 else ""
    raise CardError(f"Model card {source} does not match the model card schema:\n" + "\n".join(lines) + more)


def _check_consistency(data: Dict[str, Any], source: str) -> None:
    """Cross-field rules JSON Schema cannot express."""
    n_inputs = len(data["inputs"])
    n_norm = len(data["preprocessing"]["normalization"])
    if n_norm != n_inputs:
        raise CardError(
            f"Model card {source}: field 'preprocessing.normalization' has {n_norm} entr{'y' if n_norm == 1 else 'ies'} "
            f"but the card declares {n_inputs} input(s); give one normalization per input."
        )
    first = data["preprocessing"]["normalization"][0]["method"]
    if data["postprocessing"]["output_mapping"].get("input_units") and first != "white_matter":
        raise CardError(
            f"Model card {source}: field 'postprocessing.output_mapping.input_units' puts the output in the first "
            f"input's units by undoing its white-matter scaling, but that input's normalization is '{first}': use "
            "'white_matter' for it, or drop input_units."
        )
    contrast = data.get("training_inputs", {}).get("contrast")
    if contrast is not None:
        channels = contrast["channels"]
        if len(channels) != n_inputs or any(len(c["histogram"]) != contrast["bins"] for c in channels):
            raise CardError(
                f"Model card {source}: field 'training_inputs.contrast' needs one channel per input ({n_inputs}) "
                f"with a histogram of {contrast['bins']} bins; recompute it with 'medgan-translate models "
                "describe-training'."
            )
    inference = data["inference"]
    planes, roi = inference.get("planes"), inference["roi_size"]
    wanted = 2 if planes else 3
    if len(roi) != wanted:
        kind = (f"a 2D network (inference.planes: {', '.join(planes)}), whose window is the two in-plane sides of a "
                "slice" if planes else "a 3D network (no inference.planes), whose window is x, y, z")
        raise CardError(
            f"Model card {source}: field 'inference.roi_size' has {len(roi)} number(s) {roi}, but the card describes "
            f"{kind}: give {wanted} numbers" + ("." if planes else ", or add inference.planes for a 2D network.")
        )
    arch, fmt = data["architecture"]["type"], data["weights"]["format"]
    if arch in ("torchscript", "onnx") and fmt != arch:
        raise CardError(f"Model card {source}: architecture '{arch}' needs weights.format '{arch}', found '{fmt}'.")
    if arch in ("builtin", "monai") and fmt in ("torchscript", "onnx"):
        raise CardError(
            f"Model card {source}: weights.format '{fmt}' is a self-contained network; set architecture.type to '{fmt}'."
        )
    _check_ensemble(data, source)


def _check_ensemble(data: Dict[str, Any], source: str) -> None:
    """Each ensemble member is a weights file (file and sha256, a format the architecture can load) or another
    model (model alone), listed once, and not the card's own weights."""
    arch, seen = data["architecture"]["type"], {data["weights"]["file"]: "the card's own weights (weights.file)"}
    for index, member in enumerate(data.get("ensemble") or []):
        where = f"Model card {source}: field 'ensemble.{index}'"
        weights_keys = sorted(set(member) - {"model"})
        if "model" in member and weights_keys:
            raise CardError(f"{where} names both a model ('model') and weights ({', '.join(weights_keys)}); a "
                            "member is either another model or a weights file of this one's architecture.")
        if "model" in member:
            key = f"model {member['model']}"
        elif "file" not in member or "sha256" not in member:
            raise CardError(f"{where} needs 'file' and 'sha256' (a weights file of the same architecture), or "
                            "'model' (another model's id); found " + (", ".join(sorted(member)) or "neither") + ".")
        else:
            key = member["file"]
            fmt = member.get("format", data["weights"]["format"])
            if (arch in ("torchscript", "onnx")) != (fmt in ("torchscript", "onnx")) or (
                    arch in ("torchscript", "onnx") and fmt != arch):
                raise CardError(f"{where}: weights format '{fmt}' cannot be loaded as architecture '{arch}'; "
                                "members given as files share the card's architecture.")
        if key in seen:
            raise CardError(f"{where} repeats {seen[key]}; list each member once.")
        seen[key] = f"ensemble member {index} ({key})"


def _fill_defaults(data: Any, schema: Dict[str, Any], root: Dict[str, Any]) -> Any:
    """Adds the schema's ``default`` values for missing object properties (recursively)."""
    if "$ref" in schema:
        ref = schema["$ref"].split("/")[-1]
        schema = root["$defs"][ref]
    if isinstance(data, dict):
        props = dict(schema.get("properties", {}))
        for branch in schema.get("oneOf", []):
            if all(data.get(k) == v.get("const") for k, v in branch.get("properties", {}).items() if "const" in v):
                props.update(branch.get("properties", {}))
        for key, sub in props.items():
            if key not in data and "default" in sub:
                data[key] = copy.deepcopy(sub["default"])
            if key in data:
                data[key] = _fill_defaults(data[key], sub, root)
    elif isinstance(data, list) and "items" in schema:
        data = [_fill_defaults(item, schema["items"], root) for item in data]
    return data


def output_label(output: Dict[str, Any]) -> str:
    """Short name of a model's output used in node and file names, e.g. 'synthetic CT'."""
    return output.get("label") or f"synthetic {output['modality']}"


@dataclass(frozen=True)
class InputSpec:
    name: str
    modality: str
    sequence: str = ""
    name_pattern: str = ""
    anatomy: str = ""

    @property
    def label(self) -> str:
        return f"{self.modality} {self.sequence}".strip()


@dataclass(frozen=True)
class ModelCard:
    """A validated card with defaults filled in; ``folder`` is where its weights live."""

    data: Dict[str, Any]
    path: Path

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def version(self) -> str:
        return self.data["version"]

    @property
    def title(self) -> str:
        return self.data["title"]

    @property
    def inputs(self) -> List[InputSpec]:
        return [InputSpec(**spec) for spec in self.data["inputs"]]

    @property
    def output(self) -> Dict[str, Any]:
        return self.data["output"]

    @property
    def output_label(self) -> str:
        return output_label(self.output)

    @property
    def architecture(self) -> Dict[str, Any]:
        return self.data["architecture"]

    @property
    def weights(self) -> Dict[str, Any]:
        return self.data["weights"]

    @property
    def weights_path(self) -> Path:
        return self.folder / self.weights["file"]

    @property
    def preprocessing(self) -> Dict[str, Any]:
        return self.data["preprocessing"]

    @property
    def inference(self) -> Dict[str, Any]:
        return self.data["inference"]

    @property
    def postprocessing(self) -> Dict[str, Any]:
        return self.data["postprocessing"]

    @property
    def display(self) -> Dict[str, Any]:
        return self.data.get("display", {})

    @property
    def difference(self) -> Dict[str, Any]:
        return self.data.get("difference", {"without_reference": "none"})

    @property
    def sha256(self) -> str:
        return self.weights["sha256"]

    @property
    def intended_use(self) -> str:
        return self.data["intended_use"]

    @property
    def training_inputs(self) -> Optional[Dict[str, Any]]:
        """Statistics of the training inputs that the scan checks compare a scan with; None when the card has
        none (third-party cards), and then those checks are skipped."""
        return self.data.get("training_inputs")

    def provenance(self) -> Dict[str, str]:
        """Key/value pairs written into every output so a synthetic image is never mistaken for a real one."""
        return {
            "MedGANTranslate.Synthetic": "true",
            "MedGANTranslate.ModelId": self.id,
            "MedGANTranslate.ModelVersion": self.version,
            "MedGANTranslate.WeightsSHA256": self.sha256,
            "MedGANTranslate.Modality": self.output["modality"],
            "MedGANTranslate.Unit": self.output["unit"],
            "MedGANTranslate.IntendedUse": self.intended_use,
        }


#: Provenance key of an output in its input's own units (``output_mapping.input_units``): how many output units
#: one unit of the card's scale is, so its display preset can follow.
OUTPUT_SCALE_KEY = "MedGANTranslate.OutputScale"
_SCALED_DISPLAY = ("window", "level", "difference_window")


def output_display(display: Mapping[str, Any], provenance: Mapping[str, Any]) -> Dict[str, Any]:
    """A card's display preset for one output: window, level and difference window in that output's units (times
    its :data:`OUTPUT_SCALE_KEY` when the provenance has one), the rest as the card says."""
    scale = float(provenance.get(OUTPUT_SCALE_KEY, 1.0))
    return {k: (v * scale if k in _SCALED_DISPLAY and v is not None else v) for k, v in display.items()}


def load_card(path: "str | Path") -> ModelCard:
    """Reads, validates and completes a card. ``path`` is the card file or its folder."""
    path = Path(path)
    if path.is_dir():
        path = path / CARD_FILENAME
    data = _read_json(path)
    validate_card_data(data, str(path))
    data = _fill_defaults(data, load_schema(), load_schema())
    return ModelCard(data=data, path=path.resolve())


def takes_mr(inputs: Sequence["InputSpec"]) -> bool:
    """Whether any of a model's inputs is MR: N4 bias-field correction applies only to those."""
    return any(spec.modality == "MR" for spec in inputs)


@dataclass(frozen=True)
class CardSummary:
    """What a model picker shows, read without validation or third-party packages."""

    id: str
    version: str
    title: str
    inputs: Sequence[InputSpec]
    output_modality: str
    output_unit: str
    site: str
    intended_use: str
    path: Path
    deprecated: bool = False
    cpu_seconds: Optional[float] = None  # the whole translation of runtime.reference_label (card runtime)
    gpu_seconds: Optional[float] = None
    cpu_threads: Optional[int] = None
    runtime_reference: str = ""  # runtime.reference_label: what was timed, in a few words
    description: str = ""
    output_label: str = ""
    display: Dict[str, Any] = field(default_factory=dict)
    difference_without_reference: str = "none"
    test_time_mirror: Sequence[str] = ()
    uncertainty_passes: int = 0  # network passes of the default uncertainty map; 0: nothing to vary
    uncertainty_text: str = ""  # what its variants are ('std over 4 variants: ...'), or why there are none


def _listing_field(data: Dict[str, Any], key: str, path: Path) -> str:
    """A card's ``id`` or ``version``, checked against the schema's pattern: the registry matches and sorts on
    them before any full validation, so a number or a malformed version there is refused by name instead of
    breaking the listing of every model."""
    value = data[key]
    spec = load_schema()["properties"][key]
    if not isinstance(value, str) or not re.match(spec["pattern"], value):
        raise CardError(
            f"Model card {path}: field '{key}' is {json.dumps(value)}, which does not match the model card schema "
            f"({spec['description'].rstrip('.')}). Fix the card; 'medgan-translate models verify' lists its problems."
        )
    return value


def read_card_summary(path: "str | Path") -> CardSummary:
    path = Path(path)
    if path.is_dir():
        path = path / CARD_FILENAME
    data = _read_json(path)
    from .uncertainty import card_variation  # numpy and the standard library only, as the panel has them

    variation = card_variation(data)
    try:
        runtime = data.get("runtime", {})
        output = data["output"]
        return CardSummary(
            id=_listing_field(data, "id", path),
            version=_listing_field(data, "version", path),
            title=data["title"],
            inputs=[InputSpec(**spec) for spec in data["inputs"]],
            output_modality=output["modality"],
            output_unit=output["unit"],
            site=data.get("site", ""),
            intended_use=data.get("intended_use", RESEARCH_ONLY),
            path=path.resolve(),
            deprecated=bool(data.get("deprecated", False)),
            cpu_seconds=runtime.get("cpu_seconds"),
            gpu_seconds=runtime.get("gpu_seconds"),
            cpu_threads=runtime.get("cpu_threads"),
            runtime_reference=runtime.get("reference_label", ""),
            description=data.get("description", ""),
            output_label=output_label(output),
            display=data.get("display", {}),
            difference_without_reference=data.get("difference", {}).get("without_reference", "none"),
            test_time_mirror=tuple(data.get("inference", {}).get("test_time_mirror", ())),
            uncertainty_passes=variation[0],
            uncertainty_text=variation[1],
        )
    except (KeyError, TypeError) as exc:
        raise CardError(f"Model card {path} lacks a required field or has a wrong type ({exc}); run 'medgan-translate models verify'.") from exc
