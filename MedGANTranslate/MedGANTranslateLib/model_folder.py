"""Writes model folders (weights + ``model.json``): training publishes models with it, tests make tiny ones."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch
from torch import nn

from .card import CARD_FILENAME, RESEARCH_ONLY, ModelCard, load_card, validate_card_data
from .checkpoints import export_onnx, export_torchscript, save_safetensors
from .errors import WeightsError
from .networks import required_divisor
from .registry import sha256_file

DEFAULT_WEIGHTS_FILES = {
    "safetensors": "model.safetensors",
    "state_dict": "model.pth",
    "ganslate": "checkpoint.pth",
    "torchscript": "model.pt",
    "onnx": "model.onnx",
}
SELF_CONTAINED = ("torchscript", "onnx")


def _write_weights(network: nn.Module, path: Path, fmt: str, data: Dict[str, Any],
                   example_input: Optional[torch.Tensor]) -> None:
    if fmt == "safetensors":
        save_safetensors(network, path)
    elif fmt == "state_dict":
        torch.save(network.state_dict(), path)
    elif fmt == "ganslate":
        torch.save({data["weights"].get("key", "G"): network.state_dict()}, path)
    else:
        if example_input is None:
            example_input = torch.zeros(1, len(data["inputs"]), *data["inference"]["roi_size"])
        export = export_torchscript if fmt == "torchscript" else export_onnx
        export(network, path, example_input)


def save_model_folder(
    folder: "str | Path",
    card_data: Dict[str, Any],
    network: Optional[nn.Module] = None,
    fmt: str = "safetensors",
    weights_file: Optional[str] = None,
    example_input: Optional[torch.Tensor] = None,
) -> ModelCard:
    """Writes ``network`` in ``fmt`` (or, without a network, uses ``weights_file`` already in the folder),
    records file, format, SHA-256 and size in the card, writes ``model.json`` and returns the loaded card.

    For TorchScript and ONNX the architecture becomes ``{"type": fmt}`` (the file holds the network), and the
    original architecture's size multiple is kept in ``inference.divisible_by`` unless the card sets one.
    ``example_input`` (traced for those two formats) defaults to zeros of the card's ROI size.
    """
    if fmt not in DEFAULT_WEIGHTS_FILES:
        raise ValueError(f"fmt must be one of {', '.join(DEFAULT_WEIGHTS_FILES)}, got {fmt!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = copy.deepcopy(card_data)
    weights_file = weights_file or DEFAULT_WEIGHTS_FILES[fmt]
    path = folder / weights_file
    data.setdefault("weights", {})
    if network is not None:
        _write_weights(network, path, fmt, data, example_input)
    elif not path.is_file():
        raise WeightsError(f"No network given and no weights file at {path} to publish.")
    if fmt in SELF_CONTAINED:
        if data["architecture"].get("type") not in SELF_CONTAINED:
            data["inference"].setdefault("divisible_by", required_divisor(data["architecture"]))
        data["architecture"] = {"type": fmt}
    data["weights"].update(file=weights_file, format=fmt, sha256=sha256_file(path), size_bytes=path.stat().st_size)
    validate_card_data(data, str(folder / CARD_FILENAME))
    with open(folder / CARD_FILENAME, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    return load_card(folder)


_SEQUENCES = (("t1", "T1w"), ("t2", "T2w"), ("flair", "FLAIR"), ("t1c", "T1w+Gd"))

_OUTPUTS = {
    "CT": {
        "output": {"modality": "CT", "unit": "HU", "valid_range": [-1024, 3071], "dtype": "int16"},
        "target_range": [-1024, 2000], "clip": [-1024, 3071], "background_value": -1000,
        "display": {"window": 400, "level": 40},
    },
    "PET": {
        "output": {"modality": "PET", "unit": "SUV", "valid_range": [0, 20], "dtype": "float32"},
        "target_range": [0, 20], "clip": [0, 20], "background_value": 0,
        "display": {"window": 10, "level": 5, "colormap": "PET-Heat"},
    },
    "MR": {
        "output": {"modality": "MR", "unit": "a.u.", "valid_range": [0, 1], "dtype": "float32"},
        "target_range": [0, 1], "clip": [0, 1], "background_value": 0,
        "display": {"window": 1, "level": 0.5},
    },
}


def tiny_card_data(
    model_id: str = "tiny-test",
    inputs: int = 1,
    architecture: Optional[Dict[str, Any]] = None,
    roi: Sequence[int] = (16, 16, 16),
    output_modality: str = "CT",
) -> Dict[str, Any]:
    """A complete, schema-valid card for a tiny MR→``output_modality`` (CT, PET or MR) test model.

    The weights entry is a placeholder that :func:`save_model_folder` fills in.
    """
    if output_modality not in _OUTPUTS:
        raise ValueError(f"output_modality must be one of {', '.join(_OUTPUTS)}, got {output_modality!r}")
    if not 1 <= inputs <= len(_SEQUENCES):
        raise ValueError(f"inputs must be 1..{len(_SEQUENCES)}, got {inputs}")
    spec = _OUTPUTS[output_modality]
    if architecture is None:
        architecture = {"type": "builtin", "name": "unet_generator",
                        "params": {"in_channels": inputs, "out_channels": 1, "num_downs": 3, "ngf": 4,
                                   "norm": "instance"}}
    return {
        "schema_version": "1.0",
        "id": model_id,
        "version": "0.1.0",
        "title": f"Tiny test model (MR to {output_modality})",
        "description": "A tiny generator with random weights, made by the test suite.",
        "inputs": [{"name": name, "modality": "MR", "sequence": seq} for name, seq in _SEQUENCES[:inputs]],
        "output": copy.deepcopy(spec["output"]),
        "site": "head",
        "architecture": copy.deepcopy(architecture),
        "weights": {"file": DEFAULT_WEIGHTS_FILES["safetensors"], "format": "safetensors", "sha256": "0" * 64},
        "preprocessing": {
            "orientation": None,  # random weights: no orientation was learnt
            "normalization": [{"method": "percentile", "lower": 0.5, "upper": 99.5, "target_range": [-1, 1]}
                              for _ in range(inputs)],
        },
        "inference": {"roi_size": list(roi), "divisible_by": required_divisor(architecture)},
        "postprocessing": {
            "output_mapping": {"source_range": [-1, 1], "target_range": list(spec["target_range"])},
            "clip": list(spec["clip"]),
            "background_value": spec["background_value"],
        },
        "display": copy.deepcopy(spec["display"]),
        "intended_use": f"{RESEARCH_ONLY} Test model with random weights.",
        "license": "Apache-2.0",
    }
