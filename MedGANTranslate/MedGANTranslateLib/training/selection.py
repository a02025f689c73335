"""Checkpoint selection: score the generator on selection phantoms every few hundred steps and publish the
weights that scored best, not the last ones.

Adversarial training, unpaired above all, does not settle: a CycleGAN can be at its best a third of the way
through and fall apart later. Selection phantoms are a third set of seeds, apart from the training and the
held-out validation seeds, so the card's held-out numbers stay unbiased by the choice.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from torch import nn

from ..model_folder import save_model_folder

SELECTION_DIR = "selection_model"


class CheckpointSelector:
    """Keeps the generator weights with the lowest mean body MAE (in the output's unit) over ``seeds``.

    ``card`` is the card template of the run (written with each candidate's weights to ``out/selection_model``
    and scored through the real pipeline); the selector's state goes into the run's checkpoint, so a resumed
    run keeps its best weights and history."""

    def __init__(self, settings: Dict[str, Any], card: Dict[str, Any], phantom: Dict[str, Any], out: Path,
                 cache: Path, threads: Optional[int], log: Callable[[str, str], None]) -> None:
        self.seeds: List[int] = [int(s) for s in settings["seeds"]]
        self.every = int(settings["every"])
        self.card, self.phantom, self.folder, self.cache = card, phantom, out / SELECTION_DIR, cache
        self.threads, self.log = threads, log
        self.history: List[Dict[str, float]] = []
        self.best: Optional[Dict[str, Any]] = None

    @property
    def enabled(self) -> bool:
        return bool(self.seeds) and self.every > 0

    def due(self, step: int, total: int) -> bool:
        return self.enabled and (step % self.every == 0 or step == total)

    def score(self, generator: nn.Module, step: int) -> float:
        """Scores ``generator`` as it is now (a copy in eval mode, so training state is untouched)."""
        from .evaluate import evaluate_model

        net = copy.deepcopy(generator).to("cpu").eval()
        card = save_model_folder(self.folder, self.card, network=net, fmt="safetensors")
        report = evaluate_model(card, self.seeds, phantom=self.phantom, cache_dir=self.cache, threads=self.threads,
                                runtime=False)
        mae = float(report["metrics"]["mae"])
        self.history.append({"step": int(step), "mae": round(mae, 4)})
        if self.best is None or mae < self.best["mae"]:
            self.best = {"step": int(step), "mae": mae,
                         "weights": {k: v.detach().to("cpu").clone() for k, v in generator.state_dict().items()}}
        self.log("info", f"selection at step {step}: MAE {mae:.4g} on seeds {self.seeds} "
                         f"(best {self.best['mae']:.4g} at step {self.best['step']})")
        return mae

    def restore_best(self, generator: nn.Module) -> None:
        """Loads the best weights into ``generator`` (no-op before the first score)."""
        if self.best is not None:
            generator.load_state_dict(self.best["weights"])

    def summary(self) -> Dict[str, Any]:
        """What the card records: the seeds, the schedule, every score and the step that was published."""
        if not self.enabled:
            return {}
        return {"seeds": self.seeds, "every": self.every, "metric": "mae", "history": self.history,
                "selected_step": self.best["step"] if self.best else None,
                "selected_mae": round(self.best["mae"], 4) if self.best else None}

    def state_dict(self) -> Dict[str, Any]:
        return {"history": copy.deepcopy(self.history), "best": self.best}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.history = list(state["history"])
        self.best = state["best"]

