"""``medgan-translate models check``: does the model's bare network compute what the training code computes?

An imported card says how its network was built and run, read from the weights and the flags; padding, the norm
statistics of the peer's test script and the like leave no trace in the weights. The only proof is the training
code's own output: the user saves an input (``torch.randn(...)``) and their network's output with ``numpy.save``
in their own environment, and this runs the card's network (loaded as every run loads it, no pre- or
post-processing) on that input and compares.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .card import ModelCard
from .errors import InputError

DEFAULT_ATOL = 1e-5


@dataclass
class CheckResult:
    model: str
    folder: str
    device: str
    shape: List[int]
    atol: float
    max_abs: float
    mean_abs: float
    index: List[int]
    output_value: float
    expected_value: float
    beyond: int
    total: int
    nonfinite: int
    seconds: float

    @property
    def passed(self) -> bool:
        return self.nonfinite == 0 and self.max_abs <= self.atol

    def to_dict(self) -> Dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def summary(self) -> str:
        shape = "x".join(str(s) for s in self.shape)
        head = (f"{self.model} on {self.device}: output {shape}, max |difference| {self.max_abs:.3g}, "
                f"mean {self.mean_abs:.3g}")
        if self.passed:
            return f"MATCH  {head} <= atol {self.atol:g}"
        where = (f"at index {tuple(self.index)} (network {self.output_value:.6g}, expected {self.expected_value:.6g})")
        if self.nonfinite:
            return (f"DIFFER {head}: {self.nonfinite} value(s) NaN or Inf in one array and not the other, first "
                    f"{where}")
        return (f"DIFFER {head} {where}: {self.max_abs / self.atol:.3g} x atol {self.atol:g}; {self.beyond} of "
                f"{self.total} values differ by more than atol")


def _spatial_dims(card: ModelCard) -> int:
    arch = card.architecture
    params = arch.get("params") or {}
    if arch.get("type") in ("builtin", "monai") and "spatial_dims" in params:
        return int(params["spatial_dims"])
    return len(card.inference["roi_size"])


def load_array(path: "str | Path", what: str) -> np.ndarray:
    """A .npy file of real numbers as float32; refuses anything numpy.save did not write (pickles included)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {path} does not exist or is not a file.")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{what} {path} is not a readable .npy array (write it with numpy.save): {exc}") from exc
    if isinstance(array, np.lib.npyio.NpzFile):
        array.close()
        raise InputError(f"{what} {path} is a zip archive (a .npz file, or a PyTorch checkpoint), not a .npy array: "
                         "save one array with numpy.save.")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise InputError(f"{what} {path} holds {array.dtype} values; give real numbers (float32).")
    return np.ascontiguousarray(array, dtype=np.float32)


def _batched(array: np.ndarray, dims: int, what: str, path: "str | Path", layout: str) -> np.ndarray:
    if array.ndim == dims + 1:
        return array[None]
    if array.ndim != dims + 2:
        raise InputError(
            f"{what} {path} has shape {array.shape} (rank {array.ndim}), but the model's network is {dims}D: give "
            f"{layout} (rank {dims + 2}), or without the batch axis (rank {dims + 1}).")
    return array


def check_model(model: str, tensor: "str | Path", expect: "str | Path", atol: float = DEFAULT_ATOL,
                device: str = "cpu", models_dirs: Sequence[str] = ()) -> CheckResult:
    """Runs the bare network of ``model`` (id, id@version or folder) on the array in ``tensor`` and compares its
    output with the array in ``expect``. Raises :class:`InputError` for arrays that cannot be compared."""
    from .checkpoints import load_generator
    from .devices import select_device
    from .registry import resolve_model

    if not atol >= 0:
        raise InputError(f"--atol must be a non-negative number, got {atol}.")
    card = resolve_model(model, models_dirs)
    dims, channels = _spatial_dims(card), len(card.inputs)
    axes = "N x C x " + ("D x H x W" if dims == 3 else "H x W")
    x = _batched(load_array(tensor, "--tensor"), dims, "--tensor", tensor, axes)
    if x.shape[1] != channels:
        raise InputError(
            f"--tensor {tensor} has {x.shape[1]} channel(s) (shape {x.shape}, read as {axes}), but model "
            f"'{card.id}' takes {channels} input(s): {', '.join(i.label for i in card.inputs)}.")
    if not np.isfinite(x).all():
        raise InputError(f"--tensor {tensor} holds NaN or Inf values; save a finite input (torch.randn).")
    expected = load_array(expect, "--expect")
    torch_device = select_device(device)
    net = load_generator(card, device=torch_device)
    start = time.perf_counter()
    tf32 = _no_tf32()
    try:
        with torch.inference_mode():
            out = net(torch.from_numpy(x).to(torch_device))
    except Exception as exc:  # the network's own refusal of this input
        raise InputError(f"The network of '{card.id}' cannot take --tensor {tensor} of shape {x.shape}: {exc}") from exc
    finally:
        _restore_tf32(tf32)
    seconds = time.perf_counter() - start
    out_np = out.detach().float().cpu().numpy()
    if expected.ndim == out_np.ndim - 1:
        expected = expected[None]
    if expected.shape != out_np.shape:
        raise InputError(
            f"--expect {expect} has shape {expected.shape}, but the network's output for --tensor {tensor} has shape "
            f"{out_np.shape}: save the output of the same input (and the same batch) in the training environment.")
    diff = np.abs(out_np.astype(np.float64) - expected.astype(np.float64))
    nonfinite_mask = ~np.isfinite(diff) & ~(np.isnan(out_np) & np.isnan(expected))
    nonfinite = int(nonfinite_mask.sum())
    finite = np.where(np.isfinite(diff), diff, 0.0)
    flat = int(np.argmax(nonfinite_mask)) if nonfinite else int(np.argmax(finite))
    index = [int(i) for i in np.unravel_index(flat, diff.shape)]
    return CheckResult(
        model=f"{card.id}@{card.version}", folder=str(card.folder), device=str(torch_device),
        shape=list(out_np.shape), atol=float(atol), max_abs=float(finite.max()) if finite.size else 0.0,
        mean_abs=float(finite.mean()) if finite.size else 0.0, index=index,
        output_value=float(out_np[tuple(index)]), expected_value=float(expected[tuple(index)]),
        beyond=int((finite > atol).sum()) + nonfinite, total=int(diff.size), nonfinite=nonfinite,
        seconds=round(seconds, 3))


def _no_tf32() -> Optional[Tuple[bool, bool]]:
    """TF32 convolutions and matmuls on Ampere and later GPUs differ from float32 by ~1e-3: off for the check."""
    if not torch.cuda.is_available():
        return None
    previous = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    return previous


def _restore_tf32(previous: Optional[Tuple[bool, bool]]) -> None:
    if previous is not None:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = previous
