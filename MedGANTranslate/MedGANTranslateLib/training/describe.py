"""The ``training_inputs`` block of a card: statistics of the phantoms a model was trained on, as the network saw
them, which the scan checks (:mod:`..scan_checks`) compare each scan with before the network runs.

Training writes it into the card of every model it publishes; :func:`describe_model` fills it into an existing
model folder from the model's training config (``medgan-translate models describe-training``), leaving the
weights and the version as they are.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

from ..card import ModelCard, load_card
from ..errors import MedGANError
from ..model_folder import save_model_folder
from ..training_distribution import TrainingCase, reference_statistics
from .config import complete_config
from .data import card_network_inputs, load_phantom


def _training_cases(card: Dict[str, Any], data: Dict[str, Any],
                    cache_dir: Optional["str | Path"]) -> Iterator[TrainingCase]:
    """Each training phantom's inputs as the network saw them; one phantom in memory at a time."""
    for seed in data["train_seeds"]:
        phantom = load_phantom(seed, data["phantom"], cache_dir)
        images = [phantom[name] for name in data["inputs"]]
        yield TrainingCase(images, *card_network_inputs(images, card))


def _listed(seeds) -> str:
    seeds = sorted(seeds)
    if not seeds:
        return "none"
    return f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else ", ".join(map(str, seeds))


def training_inputs(card: Dict[str, Any], data: Dict[str, Any], cache_dir: Optional["str | Path"] = None,
                    seed: int = 0) -> Dict[str, Any]:
    """The ``training_inputs`` block for a card (dict) trained on the config's ``data`` section (and, for synthetic
    data, the run's ``seed``, which picks its realisations)."""
    kind = data.get("source", "phantom")
    if kind != "phantom":
        from .synth import training_cases

        synth = data["synth"]
        count = int(synth["describe_cases"])
        if kind == "template_synth":
            source = (f"the first {count} domain-randomised T1w realisations of the run (template_synth: template "
                      f"heads {_listed(data['train_seeds'])}, phantoms {_listed(synth['phantom_seeds'])} "
                      f"for {float(synth['phantom_share']):.0%} of them; random contrast, resolution, bias, noise "
                      "and field of view), as the pipeline's network_inputs prepares them")
        else:
            source = (f"the first {count} realisations of the run (phantom_acquired: phantoms "
                      f"{_listed(data['train_seeds'])}, inputs {', '.join(data['inputs'])}, re-acquired with random "
                      "resolution, bias, noise and field of view), as the pipeline's network_inputs prepares them")
        return reference_statistics(training_cases(card, data, seed, cache_dir, count), source)
    seeds = sorted(data["train_seeds"])
    listed = _listed(seeds)
    source = (f"{len(seeds)} training phantoms (MedGANTranslateLib.phantom, seeds {listed}, "
              f"{' x '.join(str(n) for n in data['phantom']['shape'])} voxels, inputs {', '.join(data['inputs'])}), "
              "as the pipeline's network_inputs prepares them")
    return reference_statistics(_training_cases(card, data, cache_dir), source)


def describe_model(folder: "str | Path", config: Dict[str, Any], cache_dir: Optional["str | Path"] = None) -> ModelCard:
    """Writes the ``training_inputs`` block into the card in ``folder``, computed from the training phantoms of
    ``config`` (which must be the config of that model); returns the re-read card."""
    card = load_card(folder)
    cfg = complete_config(config)
    if cfg["card"].get("id", card.id) != card.id:
        raise MedGANError(f"The training config describes model '{cfg['card']['id']}', not '{card.id}'; give the "
                          "config the model was trained with.")
    with open(card.path, encoding="utf-8") as f:
        data = json.load(f)  # as written, not with the schema's defaults filled in
    data["training_inputs"] = training_inputs(card.data, cfg["data"], cache_dir, seed=int(cfg["seed"]))
    weights = data["weights"]
    return save_model_folder(card.folder, data, network=None, fmt=weights["format"], weights_file=weights["file"])
