"""Training configs: one YAML/JSON file per model reproduces its run (recipe, networks, data, schedule, card).

:func:`load_config` fills every default explicitly, so the config stored in the card's ``training`` section
lists all the settings the weights were trained with, not only the ones the file happened to set.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Dict

from ..errors import MedGANError

RECIPES = ("pix2pix", "cyclegan")
#: Where training pairs come from: ``phantom`` (the phantoms' own images, the default), ``template_synth``
#: (domain-randomised T1w made from template-head and phantom label maps, :mod:`.synth`) or ``phantom_acquired``
#: (the phantoms' MR images re-acquired by random scanners, :mod:`.acquired_pairs`).
SOURCES = ("phantom", "template_synth", "phantom_acquired")

DEFAULTS: Dict[str, Any] = {
    "seed": 0,
    "threads": 1,
    "device": "auto",
    "amp": True,
    "cpu_bfloat16": False,
    "discriminator": {"channels": 16, "num_layers_d": 3, "norm": "INSTANCE"},
    "data": {
        "phantom": {"shape": [192, 224, 192], "spacing": [1.0, 1.0, 1.0], "tumour": True, "deform": True, "noise": True},
        "patch_size": [64, 64, 64],
        "batch_size": 2,
        "body_fraction": 0.9,
        "flip_axes": ["x"],
        "focus_fraction": 0.0,
        "focus_threshold": 0.2,
    },
    "optim": {"lr": 2e-4, "betas": [0.5, 0.999], "steps": 1000, "decay_from": 0.5, "warmup_steps": 0},
    "losses": {"gan_mode": "least_squares", "adversarial": 1.0, "l1": 100.0, "cycle": 10.0, "cycle_source": 1.0, "identity": 0.5,
               "l1_emphasis": {"weight": 1.0, "target_above": 250.0, "radius": 2}},
    "pool_size": 50,
    "checkpoint_every": 100,
    "log_every": 10,
    "validation": {"seeds": [], "threads": None},
    "selection": {"seeds": [], "every": 0},
}


def _merge(defaults: Dict[str, Any], given: Dict[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(defaults)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def complete_config(config: Dict[str, Any]) -> Dict[str, Any]:
    """Defaults filled in and the fields every run needs checked, with messages naming the field."""
    cfg = _merge(DEFAULTS, config)
    if cfg.get("recipe") not in RECIPES:
        raise MedGANError(f"Training config: 'recipe' must be one of {', '.join(RECIPES)}, got {cfg.get('recipe')!r}.")
    for key in ("card", "generator"):
        if not isinstance(cfg.get(key), dict):
            raise MedGANError(f"Training config: '{key}' section is missing.")
    data = cfg["data"]
    for key in ("train_seeds", "inputs", "target"):
        if not data.get(key):
            raise MedGANError(f"Training config: 'data.{key}' is missing.")
    if len(data["inputs"]) != len(cfg["card"].get("inputs", [])):
        raise MedGANError("Training config: 'data.inputs' needs one phantom image per card input.")
    source = data.get("source", "phantom")  # not a filled default: runs made before it keep their checkpoints
    if source not in SOURCES:
        raise MedGANError(f"Training config: 'data.source' must be one of {', '.join(SOURCES)}, got {source!r}.")
    if source != "phantom":
        from .synth import SYNTH_DEFAULTS, check_synth_config

        data["synth"] = _merge(SYNTH_DEFAULTS, data.get("synth") or {})
        if data.get("real_pairs"):
            raise MedGANError(f"Training config: data.real_pairs trains beside the phantoms' own images; it does not "
                              f"mix with data.source '{source}'.")
        if source == "template_synth":
            check_synth_config(cfg)
        else:
            from .acquired_pairs import check_acquired_config

            check_acquired_config(cfg)
    if source != "template_synth" and set(data["train_seeds"]) & set(cfg["validation"]["seeds"]):
        raise MedGANError("Training config: validation seeds overlap the training seeds.")  # template heads are not phantoms
    selection = cfg["selection"]
    phantom_seeds = set(data["train_seeds"]) if source != "template_synth" else set()
    if set(selection["seeds"]) & (phantom_seeds | set(cfg["validation"]["seeds"])):
        raise MedGANError("Training config: selection seeds overlap the training or validation seeds; pick "
                          "phantoms used for nothing else, so the held-out numbers stay unbiased.")
    if selection["seeds"] and int(selection["every"]) <= 0:
        raise MedGANError("Training config: 'selection.every' must be a positive number of steps when "
                          "'selection.seeds' are given.")
    emphasis = cfg["losses"]["l1_emphasis"]
    if not float(emphasis["weight"]) >= 1.0 or int(emphasis["radius"]) < 0:
        raise MedGANError("Training config: 'losses.l1_emphasis' needs a weight of at least 1 (1 turns it off) "
                          "and a radius of 0 or more voxels.")
    _check_structure(cfg["losses"].get("structure"))
    final = cfg["losses"].get("adversarial_final")  # optional and not filled in, like losses.structure
    if final is not None and (isinstance(final, bool) or not isinstance(final, (int, float)) or final < 0):
        raise MedGANError("Training config: 'losses.adversarial_final' must be a weight of 0 or more (the adversarial "
                          "weight at the last step, reached linearly from 'losses.adversarial'), or left out.")
    return cfg


def _check_structure(spec: Any) -> None:
    """``losses.structure`` is optional and not filled in, so runs made before it keep resuming."""
    if spec is None:
        return
    from .structure_losses import STRUCTURE_LOSSES

    if not isinstance(spec, dict) or spec.get("kind") not in STRUCTURE_LOSSES or not float(spec.get("weight", -1)) >= 0:
        raise MedGANError(f"Training config: 'losses.structure' needs a kind ({', '.join(STRUCTURE_LOSSES)}) and a "
                          f"weight of 0 or more, got {spec!r}.")
    import inspect

    accepted = set(inspect.signature(STRUCTURE_LOSSES[spec["kind"]]).parameters)
    unknown = sorted(set(spec) - {"kind", "weight"} - accepted)
    if unknown:
        raise MedGANError(f"Training config: 'losses.structure' of kind {spec['kind']} takes {', '.join(sorted(accepted))}; "
                          f"unknown: {', '.join(unknown)}.")


def load_config(path: "str | Path") -> Dict[str, Any]:
    """Reads a YAML or JSON training config and returns it completed with defaults."""
    path = Path(path)
    if not path.is_file():
        raise MedGANError(f"Training config not found: {path}.")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        config = json.loads(text)
    else:
        import yaml

        config = yaml.safe_load(text)
    if not isinstance(config, dict):
        raise MedGANError(f"Training config {path} must hold a mapping of settings.")
    return complete_config(config)
