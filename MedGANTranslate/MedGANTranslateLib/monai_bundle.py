"""Reads a MONAI bundle's inference config without executing it.

A bundle's ``configs/inference.json`` (or .yaml) is a program: ``$`` expressions, ``@`` references and
``_target_`` objects that MONAI's ConfigParser would evaluate, running whatever they say. ``models import``
reads only what is plain data in it: the network's class (only from ``monai.networks.nets``) and its arguments,
and the spacing, orientation, intensity scaling and ROI of its transforms and inferer. Anything that would have
to be evaluated is named in the refusal and left to the flags.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from .errors import ImportRefused
from .networks import _monai_classes


_BUNDLE_CONFIGS = ("inference.json", "inference.yaml", "inference.yml")
_PLAIN_SKIP = ("_target_", "_requires_", "_desc_", "_mode_")


@dataclass
class BundleSettings:
    """What a MONAI bundle's inference config says in plain values (None where it does not)."""

    network: str
    params: Dict[str, Any]
    weights: Path
    config: Path
    orientation: Optional[str] = None
    spacing: Optional[List[float]] = None
    normalization: Optional[Dict[str, Any]] = None
    roi: Optional[List[int]] = None
    notes: List[str] = field(default_factory=list)


def read_bundle(folder: "str | Path") -> BundleSettings:
    """Reads a MONAI bundle's inference config without executing it: the network's class and arguments from
    ``network_def`` (only ``monai.networks.nets`` classes, only plain values), and spacing, orientation, intensity
    scaling and ROI from its transforms and inferer where they are plain values."""
    folder = Path(folder)
    config_path, config = _load_config(folder)
    name, params = _network(config, config_path)
    weights = folder / "models" / "model.pt"
    if not weights.is_file():
        ts = folder / "models" / "model.ts"
        raise ImportRefused(f"Bundle {folder} has no models/model.pt" + (
            f"; it has {ts}: import that TorchScript file with --framework torchscript." if ts.is_file() else "."))
    settings = BundleSettings(name, params, weights, config_path)
    settings.notes.append(f"network {name} and its arguments read from {config_path.relative_to(folder)}")
    _read_transforms(config, settings)
    return settings


def _load_config(folder: Path) -> Tuple[Path, Any]:
    """The bundle's inference config, parsed as data (JSON, or YAML with safe_load)."""
    config_path = next((folder / "configs" / n for n in _BUNDLE_CONFIGS if (folder / "configs" / n).is_file()), None)
    if config_path is None:
        raise ImportRefused(f"{folder} is not a MONAI bundle: it has no configs/inference.json or .yaml.")
    try:
        text = config_path.read_text(encoding="utf-8")
        if config_path.suffix == ".json":
            config = json.loads(text)
        else:
            import yaml

            config = yaml.safe_load(text)
    except (OSError, ValueError) as exc:
        raise ImportRefused(f"Bundle config {config_path} cannot be read: {exc}") from exc
    except Exception as exc:  # yaml.YAMLError
        raise ImportRefused(f"Bundle config {config_path} is not valid YAML: {exc}") from exc
    return config_path, config


def _network(config: Any, config_path: Path) -> Tuple[str, Dict[str, Any]]:
    """The class and keyword arguments of ``network_def``: a monai.networks.nets class, plain values only."""
    if not isinstance(config, Mapping) or "network_def" not in config:
        raise ImportRefused(f"Bundle config {config_path} has no network_def: models import reads the network's "
                            "class and arguments from it.")
    network_def = config["network_def"]
    if not isinstance(network_def, Mapping) or "_target_" not in network_def:
        raise ImportRefused(
            f"Bundle config {config_path}: network_def is {json.dumps(network_def)[:120]}, not an object with "
            "_target_: models import never executes a config's expressions. Give --framework monai with --network "
            "and --params instead, and the bundle's models/model.pt as the checkpoint.")
    target = str(network_def["_target_"])
    name = _target_name(target)
    allowed = target == name or target.startswith("monai.networks.nets.")
    if not allowed or name not in _monai_classes():
        raise ImportRefused(
            f"Bundle config {config_path}: network_def._target_ {target!r} is not a class of monai.networks.nets; "
            "models import builds only those (a custom class would have to run the bundle's own code). Export the "
            "network to TorchScript or ONNX and import that file.")
    if network_def.get("_disabled_"):
        raise ImportRefused(f"Bundle config {config_path}: network_def is disabled (_disabled_).")
    params = {k: v for k, v in network_def.items() if k not in _PLAIN_SKIP and k != "_disabled_"}
    dynamic = [e for k, v in params.items() for e in _expressions(v, f"network_def.{k}")]
    if dynamic:
        raise ImportRefused(
            f"Bundle config {config_path}: the network's arguments hold expressions or references that models import "
            f"does not evaluate: {'; '.join(dynamic)}. Give --framework monai --network {name} --params JSON with "
            "their values, and the bundle's models/model.pt as the checkpoint.")
    return name, params


def _read_transforms(config: Any, settings: BundleSettings) -> None:
    """Orientation, spacing, intensity scaling and ROI from the transforms and inferer whose arguments are plain
    values; one intensity transform becomes the normalisation, several are left to --normalization."""
    intensity = []
    for t in _transforms(config):
        kind = _target_name(t.get("_target_"))
        if _expressions({k: v for k, v in t.items() if k not in ("_target_", "keys")}, kind):
            continue  # not plain: the flags must say it
        if kind in ("Orientationd", "Orientation") and isinstance(t.get("axcodes"), str):
            codes = t["axcodes"].upper()
            if re.fullmatch(r"[LRAPSI]{3}", codes):
                settings.orientation = codes
        elif kind in ("Spacingd", "Spacing"):
            settings.spacing = _plain_numbers(t.get("pixdim"), 3)
        elif kind in ("ScaleIntensityRanged", "ScaleIntensityRange"):
            values = [t.get(k) for k in ("a_min", "a_max", "b_min", "b_max")]
            if all(isinstance(v, (int, float)) for v in values):
                intensity.append({"method": "range", "source_range": values[:2], "target_range": values[2:]})
        elif kind in ("ScaleIntensityRangePercentilesd", "ScaleIntensityRangePercentiles"):
            values = [t.get(k) for k in ("lower", "upper", "b_min", "b_max")]
            if all(isinstance(v, (int, float)) for v in values):
                intensity.append({"method": "percentile", "lower": values[0], "upper": values[1],
                                  "target_range": values[2:], "mask": "all"})
        elif kind in ("NormalizeIntensityd", "NormalizeIntensity"):
            intensity.append({"method": "zscore", "mask": "body" if t.get("nonzero") else "all"})
        elif kind in ("ScaleIntensityd", "ScaleIntensity"):
            low, high = t.get("minv", 0.0), t.get("maxv", 1.0)
            if isinstance(low, (int, float)) and isinstance(high, (int, float)):
                intensity.append({"method": "percentile", "lower": 0, "upper": 100, "target_range": [low, high],
                                  "mask": "all"})
        elif kind == "SlidingWindowInferer":
            roi = t.get("roi_size")
            if isinstance(roi, list) and all(isinstance(v, int) for v in roi):
                settings.roi = roi
    if len(intensity) == 1:
        settings.normalization = intensity[0]
    elif len(intensity) > 1:
        settings.notes.append(f"{len(intensity)} intensity transforms in the config: --normalization must say "
                              "which one the network's input had")


def _expressions(value: Any, where: str) -> List[str]:
    """Places in a config value that would run code or refer elsewhere: ``$`` expressions, ``@`` references,
    ``%`` macros, nested ``_target_`` objects."""
    found: List[str] = []
    if isinstance(value, str):
        if value.startswith("$") or value.startswith("%") or "@" in value:
            found.append(f"{where} = {value!r}")
    elif isinstance(value, Mapping):
        if "_target_" in value:
            found.append(f"{where} = an object ({value['_target_']!r})")
        else:
            for k, v in value.items():
                found += _expressions(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found += _expressions(v, f"{where}[{i}]")
    return found


def _transforms(config: Any) -> Iterable[Mapping[str, Any]]:
    """Every dict with a ``_target_`` anywhere in the config."""
    if isinstance(config, Mapping):
        if "_target_" in config:
            yield config
        for v in config.values():
            yield from _transforms(v)
    elif isinstance(config, list):
        for v in config:
            yield from _transforms(v)


def _target_name(target: Any) -> str:
    """``monai.transforms.Spacingd`` → ``Spacingd``."""
    return str(target).rsplit(".", 1)[-1]


def _plain_numbers(value: Any, n: Optional[int] = None) -> Optional[List[float]]:
    """``n`` numbers (one number stands for all), or None where the value is anything else."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value] * (n or 1)
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        if n is None or len(value) == n:
            return [float(v) for v in value]
    return None
