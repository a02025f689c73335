"""``train``: config in, model folder out. Seeded, resumable (checkpoint every N steps holds networks,
optimisers, AMP scaler, image pools and every random state), with a JSON-lines loss log that a resumed run
continues from the checkpoint's step.

Under ``torchrun`` the networks train as ``DistributedDataParallel`` (:meth:`.recipes.Recipe.distribute`):
each rank draws its own patches (its share of the training phantoms, its own seed: ``seed + rank``), the
gradients are averaged, so the batch is ``batch_size`` per rank. Rank 0 alone logs, scores, writes the
checkpoints (holding every rank's random state, gathered) and publishes the model; a resumed run needs the
same number of ranks."""
from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from ..card import ModelCard
from ..distributed import Ranks
from ..errors import MedGANError
from ..devices import select_device
from ..model_folder import save_model_folder
from ..progress import ProgressCallback, StageTimer
from .config import complete_config
from .data import PatchSampler, load_phantom, prepare_volume
from .describe import training_inputs
from .recipes import RECIPES, Recipe
from .selection import CheckpointSelector
from .synth import SynthSampler

LogCallback = Callable[[str, str], None]
CHECKPOINT = "checkpoint.pt"
LOSS_LOG = "loss_log.jsonl"
MODEL_DIR = "model"
WEIGHTS_FILE = "weights.safetensors"
# Settings that may change between a run and its resumption without changing what is trained.
_RESUMABLE_KEYS = ("validation", "checkpoint_every", "log_every", "threads", "device")


def card_template(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """The card as the config describes it, with the generator's architecture and its size multiple."""
    from ..networks import required_divisor

    card = copy.deepcopy(cfg["card"])
    card["architecture"] = copy.deepcopy(cfg["generator"])
    card.setdefault("inference", {}).setdefault("divisible_by", required_divisor(cfg["generator"]))
    card.setdefault("weights", {"file": WEIGHTS_FILE, "format": "safetensors", "sha256": "0" * 64})
    return card


def _trained_settings(cfg: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in _RESUMABLE_KEYS}


def _seed_everything(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def _read_log(path: Path, upto: int) -> List[Dict[str, Any]]:
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if r["step"] <= upto]


def _save_checkpoint(path: Path, state: Dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def train(
    config: Dict[str, Any],
    out_dir: "str | Path",
    resume: bool = True,
    progress: Optional[ProgressCallback] = None,
    log: Optional[LogCallback] = None,
    cache_dir: Optional["str | Path"] = None,
) -> Optional[ModelCard]:
    """Trains the config's recipe and writes ``out_dir/model`` (card + safetensors weights); returns its card
    (None on ranks other than 0 under torchrun).

    ``out_dir`` also holds ``checkpoint.pt`` and ``loss_log.jsonl``; with ``resume`` a run continues from the
    checkpoint there. Phantoms are cached in ``cache_dir`` (default ``out_dir/phantoms``). When the config
    lists selection seeds, the generator is scored on them every ``selection.every`` steps and the best
    weights are published (:mod:`.selection`). When it lists validation seeds, the published model is
    evaluated on them and the numbers go into the card.
    """
    cfg = complete_config(config)
    ranks = Ranks.from_environment()
    lead = ranks.rank == 0
    say = (log if lead else None) or (lambda level, message: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir else out / "phantoms"
    torch.set_num_threads(min(int(cfg["threads"]), ranks.threads(None) or int(cfg["threads"])))
    device = select_device(ranks.device(cfg["device"]))
    ranks.join(str(device))
    card = card_template(cfg)
    data = cfg["data"]

    source = data.get("source", "phantom")
    if source != "phantom":
        heads = (f"synthetic T1w on {len(data['train_seeds'])} template heads and "
                 f"{len(data['synth']['phantom_seeds'])} phantoms" if source == "template_synth" else
                 f"{len(data['train_seeds'])} training phantoms re-acquired by random scanners")
        say("info", f"{heads}, {data['synth']['pool']} at a time")
        sampler: Any = SynthSampler(cfg, card, cache, say)
    else:
        say("info", f"preparing {len(data['train_seeds'])} training phantoms")
        focus = data["focus_threshold"] if data["focus_fraction"] > 0 else None
        volumes = [prepare_volume(load_phantom(s, data["phantom"], cache), data["inputs"], data["target"], card, focus)
                   for s in ranks.shard(data["train_seeds"])]
        if data.get("real_pairs"):  # real T1/T1c pairs beside the phantoms (.real_pairs)
            from .real_pairs import real_pair_volumes, with_share

            say("info", f"preparing real pairs {', '.join(data['real_pairs']['pairs'])}")
            volumes = with_share(volumes, real_pair_volumes(data["real_pairs"], card, data["inputs"], data["target"],
                                                            focus), data["real_pairs"].get("share"))
        sampler = PatchSampler(volumes, data["patch_size"], data["body_fraction"], data["flip_axes"],
                               data["focus_fraction"])

    rng = _seed_everything(int(cfg["seed"]) + ranks.rank)
    recipe = RECIPES[cfg["recipe"]](cfg, len(data["inputs"]), device)
    if cfg["cpu_bfloat16"] and device.type == "cpu" and recipe.precision != "bfloat16":
        say("warning", "cpu_bfloat16 is set but this CPU does not compute bfloat16 natively: training in float32, "
                       "which is slower per step; the card records the precision used")
    selector = CheckpointSelector(cfg["selection"], card, data["phantom"], out, cache, cfg["threads"], say)
    step, elapsed = 0, 0.0
    ckpt_path, log_path = out / CHECKPOINT, out / LOSS_LOG
    if resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        if state["settings"] != _trained_settings(cfg):
            raise MedGANError(f"Checkpoint {ckpt_path} was made with other settings; use another --out folder or resume=False.")
        if state.get("world_size", 1) != ranks.world_size:
            raise MedGANError(f"Checkpoint {ckpt_path} was made by {state.get('world_size', 1)} process(es) and this run "
                              f"has {ranks.world_size}: resume with as many (torchrun --nproc_per_node), or use another --out.")
        recipe.load_state_dict(state["recipe"])
        selector.load_state_dict(state["selection"])
        mine = state if lead else state["other_ranks"][ranks.rank - 1]
        if mine.get("sampler") is not None:
            sampler.load_state_dict(mine["sampler"])
        rng.bit_generator.state = mine["numpy_rng"]
        torch.set_rng_state(mine["torch_rng"])
        step, elapsed = int(state["step"]), float(state["elapsed_s"])
        say("info", f"resumed from {ckpt_path} at step {step}")
    elif cfg.get("init_weights"):  # fine-tuning: a fresh run starts from these weights (.init_weights)
        from .init_weights import load_initial_weights

        load_initial_weights(recipe.exported, cfg["init_weights"], say)
    if ranks.distributed:
        recipe.distribute()
    rows = _read_log(log_path, step)
    if lead:
        log_path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    total = int(cfg["optim"]["steps"])
    timer = StageTimer("train", total, progress)
    timer.done = step
    timer.start(f"{cfg['recipe']} from step {step} of {total}")
    recipe.train()
    window: Dict[str, List[float]] = {}
    t0 = time.perf_counter() - elapsed
    with open(log_path if lead else os.devnull, "a", encoding="utf-8") as log_file:
        while step < total:
            x, y = recipe.sample(sampler, rng, int(data["batch_size"]))
            losses = recipe.step(recipe.to_tensor(x), recipe.to_tensor(y), step, rng)
            step += 1
            for k, v in losses.items():
                window.setdefault(k, []).append(v)
            if step % int(cfg["log_every"]) == 0 or step == total:
                row = {"step": step, "elapsed_s": round(time.perf_counter() - t0, 2),
                       "lr": recipe.optimizers["G"].param_groups[0]["lr"]}
                row.update({k: float(np.mean(v)) for k, v in window.items()})
                log_file.write(json.dumps(row) + "\n")
                log_file.flush()
                window = {}
                say("info", " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
            if lead and selector.due(step, total):
                selector.score(recipe.exported, step)
            if step % int(cfg["checkpoint_every"]) == 0 or step == total:
                random_state = {"numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                                "sampler": sampler.state_dict() if hasattr(sampler, "state_dict") else None}
                every_rank = ranks.gather([random_state])
                if lead:
                    _save_checkpoint(ckpt_path, {
                        "step": step, "elapsed_s": time.perf_counter() - t0, "settings": _trained_settings(cfg),
                        "recipe": recipe.state_dict(), "selection": selector.state_dict(), **random_state,
                        "world_size": ranks.world_size, "other_ranks": every_rank[1:],
                    })
            timer.advance()
    seconds = time.perf_counter() - t0
    ranks.leave()
    if not lead:
        return None
    if selector.best is not None:
        say("info", f"publishing the weights of step {selector.best['step']} (selection MAE {selector.best['mae']:.4g})")
        selector.restore_best(recipe.exported)
    return _publish(cfg, card, recipe, out, step, seconds, _read_log(log_path, step), say, cache,
                    selector.summary())


def _publish(cfg, card, recipe: Recipe, out: Path, steps: int, seconds: float, rows, say, cache,
             selection: Dict[str, Any]) -> ModelCard:
    """Writes the model folder; with validation seeds, evaluates it through the real pipeline and re-writes
    the card with the numbers."""
    from .evaluate import card_validation, evaluate_model

    card["training"] = {
        "recipe": cfg["recipe"],
        "steps": steps,
        "cpu_threads": int(cfg["threads"]),
        "device": recipe.device.type,
        "precision": recipe.precision,
        "wall_seconds": round(seconds, 1),
        "final_losses": {k: round(v, 5) for k, v in (rows[-1] if rows else {}).items() if k not in ("step", "elapsed_s", "lr")},
        "config": {k: v for k, v in cfg.items() if k != "card"},
    }
    if selection:
        card["training"]["selection"] = selection
    if cfg.get("init_weights"):
        from .init_weights import initial_weights_record

        card["training"]["init_weights"] = initial_weights_record(cfg["init_weights"])
    say("info", "describing the training inputs for the scan checks")
    card["training_inputs"] = training_inputs(card, cfg["data"], cache, seed=int(cfg["seed"]))
    folder = out / MODEL_DIR
    net = copy.deepcopy(recipe.exported).to("cpu").eval()
    result = save_model_folder(folder, card, network=net, fmt="safetensors", weights_file=WEIGHTS_FILE)
    seeds = cfg["validation"]["seeds"]
    if not seeds:
        return result
    say("info", f"evaluating on held-out phantoms {seeds}")
    report = evaluate_model(result, seeds, phantom=cfg["data"]["phantom"], cache_dir=cache,
                            threads=cfg["validation"]["threads"], log=say)
    (out / "validation.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    data = copy.deepcopy(card)  # as written, not with the schema's defaults filled in: they may change
    data["validation"] = card_validation(report)
    data["runtime"] = dict(data.get("runtime", {}), **report["runtime"])
    return save_model_folder(folder, data, network=None, fmt="safetensors", weights_file=WEIGHTS_FILE)
