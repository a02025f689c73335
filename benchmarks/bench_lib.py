"""Pieces of the benchmark: the phantom workload, the plain-MONAI baseline, and what one child process measures.

Every measured configuration runs in a fresh child process (``run_benchmark.py child ...``) so that its peak
resident memory (``ru_maxrss``) and its warm-up are its own. A child prints one JSON object on its last line.
"""
from __future__ import annotations

import json
import math
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
import torch
from monai.inferers import sliding_window_inference
from torch.utils.flop_counter import FlopCounterMode

from MedGANTranslateLib.body_mask import body_mask
from MedGANTranslateLib.card import ModelCard
from MedGANTranslateLib.image_writing import write_image
from MedGANTranslateLib.imageio import read_image
from MedGANTranslateLib.network_grid import to_input_grid, to_network_grid
from MedGANTranslateLib.pipeline import TranslationResult, Translator
from MedGANTranslateLib.run_options import RunOptions
from MedGANTranslateLib.sliding_window import InferenceReport
from MedGANTranslateLib.window_planning import count_windows, plan_body_windows

#: The baseline's window overlap: MONAI's usual choice, as a careful user would write it.
BASELINE_OVERLAP = 0.25
_BY_SEQUENCE = {"t1w": "t1", "t2w": "t2", "t1w+gd": "t1c"}
_BY_MODALITY = {"ct": "ct", "pet": "pet"}


# ------------------------------------------------------------------------------------------------- workload


def phantom_shape(spacing_mm: float) -> Tuple[int, int, int]:
    """The phantom's default field of view (192 x 224 x 192 mm) at ``spacing_mm``."""
    from MedGANTranslateLib.phantom import DEFAULT_FOV_MM

    return tuple(int(round(f / spacing_mm)) for f in DEFAULT_FOV_MM)  # type: ignore[return-value]


def phantom_image_name(spec: Any) -> str:
    """Which phantom contrast feeds a card input: by name (t1, t2, t1c, ct, pet), else sequence, else modality."""
    from MedGANTranslateLib.phantom import VOLUMES

    by_sequence = _BY_SEQUENCE.get((spec.sequence or "").lower())
    for key in (spec.name.lower(), by_sequence, _BY_MODALITY.get(spec.modality.lower())):
        if key in VOLUMES:
            return key
    raise SystemExit(f"No phantom contrast for input '{spec.name}' ({spec.modality} {spec.sequence}).")


def phantom_target_name(card: ModelCard) -> Optional[str]:
    """The phantom contrast the card's output imitates (the reference for absolute errors), if any."""
    from MedGANTranslateLib.phantom import VOLUMES

    output = card.output
    by_sequence = _BY_SEQUENCE.get(str(output.get("sequence", "")).lower())
    for key in (by_sequence, _BY_MODALITY.get(output["modality"].lower())):
        if key in VOLUMES:
            return key
    return None


def phantom_files(work: Path, seed: int, spacing_mm: float, names: Sequence[str]) -> Dict[str, Path]:
    """``names`` (phantom contrasts) of one head at ``spacing_mm`` as .nii.gz; the head is generated once and
    all its contrasts are cached for the other models."""
    from MedGANTranslateLib.phantom import VOLUMES, make_phantom

    folder = work / f"phantom-seed{seed}-{spacing_mm:g}mm"
    paths = {n: folder / f"{n}.nii.gz" for n in VOLUMES}
    if not all(paths[n].is_file() for n in names):
        folder.mkdir(parents=True, exist_ok=True)
        phantom = make_phantom(seed=seed, shape=phantom_shape(spacing_mm), spacing=(spacing_mm,) * 3)
        for name, path in paths.items():
            tmp = path.with_name(".tmp-" + path.name)
            sitk.WriteImage(getattr(phantom, name), str(tmp), True)
            tmp.replace(path)
    return {n: paths[n] for n in names}


def resampled_file(source: Path, n: int, work: Path) -> Path:
    """``source`` resampled (linear) onto an n x n x n grid over the same field of view, cached."""
    path = work / f"{source.parent.name}-{source.name.split('.')[0]}-{n}cube.nii.gz"
    if path.is_file():
        return path
    image = sitk.ReadImage(str(source))
    extent = [sz * sp for sz, sp in zip(image.GetSize(), image.GetSpacing())]
    spacing = [e / n for e in extent]
    origin = [o - sp / 2 + s / 2 for o, sp, s in zip(image.GetOrigin(), image.GetSpacing(), spacing)]
    out = sitk.Resample(image, [n] * 3, sitk.Transform(), sitk.sitkLinear, origin, spacing, image.GetDirection(),
                        0.0, sitk.sitkFloat32)
    tmp = path.with_name(".tmp-" + path.name)
    sitk.WriteImage(out, str(tmp), True)
    tmp.replace(path)
    return path


def native_grid_model(card: ModelCard, work: Path) -> Path:
    """A copy of the model folder whose card keeps the input's grid (no resampling to the card's spacing), so
    the network runs on every voxel of the input: the memory runs measure the engine at the input's size."""
    folder = work / f"native-grid-{card.id}"
    folder.mkdir(parents=True, exist_ok=True)
    data = json.loads((card.folder / "model.json").read_text(encoding="utf-8"))
    data["preprocessing"]["spacing"] = None
    shutil.copyfile(card.weights_path, folder / data["weights"]["file"])
    (folder / "model.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    return folder


def body_mask_on_input(card: ModelCard, path: Path) -> np.ndarray:
    """The engine's body mask of the first input, on the input's grid (where outputs are compared)."""
    image = read_image(path)
    grid = to_network_grid(image, card.preprocessing)
    mask = sitk.Cast(body_mask(grid, card.postprocessing.get("body_mask", {})), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(to_input_grid(mask, image, 0.0)) > 0.5


def voxels(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float64)


def compare(ours: Path, baseline: Path, inside: np.ndarray, reference: Optional[Path]) -> Dict[str, float]:
    """|ours - baseline| inside the body; with the phantom's true target, each one's mean absolute error too."""
    a, b = voxels(ours), voxels(baseline)
    diff = np.abs(a - b)[inside]
    out = {"mean_abs_diff": float(diff.mean()), "p99_abs_diff": float(np.percentile(diff, 99)),
           "max_abs_diff": float(diff.max())}
    if reference is not None:
        truth = voxels(reference)
        out["ours_mae_vs_reference"] = mae_inside(a, truth, inside)
        out["baseline_mae_vs_reference"] = mae_inside(b, truth, inside)
    return out


def mae_inside(values: np.ndarray, truth: np.ndarray, inside: np.ndarray) -> float:
    """Mean absolute error of ``values`` against the phantom's true target, inside the body."""
    return float(np.abs(values - truth)[inside].mean())


# ------------------------------------------------------------------------------------------------ strategies


class TimedTranslator(Translator):
    """The engine as shipped; records when its inference step starts and ends."""

    infer_started: float = 0.0
    infer_ended: float = 0.0

    @property
    def network_run(self) -> torch.nn.Module:
        """The network the inference step runs (for counting its FLOPs)."""
        return self.inference_network

    def infer(self, volume, mask, progress=None, cancel=None, mirror=(), **planar):
        self.infer_started = time.perf_counter()
        result = self._infer(volume, mask, progress, cancel, mirror, **planar)
        self.infer_ended = time.perf_counter()
        return result

    def _infer(self, volume, mask, progress, cancel, mirror=(), **planar):
        return super().infer(volume, mask, progress, cancel, mirror, **planar)


class MonaiBaseline(TimedTranslator):
    """What a careful MONAI user writes: ``sliding_window_inference`` over the whole normalised volume with the
    card's ROI, overlap 0.25, Gaussian blending, batch size 1, float32, under ``torch.no_grad``; no test-time
    mirroring, which such a user would not add either."""

    @property
    def network_run(self) -> torch.nn.Module:
        return self.network

    def _infer(self, volume, mask, progress, cancel, mirror=()):
        with torch.no_grad():
            out = sliding_window_inference(torch.from_numpy(volume)[None], roi_size=self.settings.roi_size,
                                           sw_batch_size=1, predictor=self.network, overlap=BASELINE_OVERLAP,
                                           mode="gaussian", padding_mode="constant", cval=self.settings.padding_value)
        total = count_windows(volume.shape[1:], self.settings)
        return out[0, 0].numpy(), InferenceReport("cpu", total, total, 0)


class MovedBaseline(MonaiBaseline):
    """The baseline on the same head in a field of view larger by half a window step at the low end of each
    axis (background there), so every window falls elsewhere on the anatomy. Its difference from the baseline
    is how much the baseline's own output depends on where its windows fall: a scan framed differently."""

    def _infer(self, volume, mask, progress, cancel, mirror=()):
        roi = self.settings.roi_size
        shift = [max(1, int(r * (1 - BASELINE_OVERLAP)) // 2) for r in roi]
        moved = np.pad(volume, [(0, 0)] + [(s, 0) for s in shift], constant_values=self.settings.padding_value)
        out, report = super()._infer(moved, None, progress, cancel)
        return np.ascontiguousarray(out[tuple(slice(s, None) for s in shift)]), report


STRATEGIES = {"ours": TimedTranslator, "baseline": MonaiBaseline, "baseline_moved": MovedBaseline}


# ------------------------------------------------------------------------------------------- measurements


def flops_of_forward(network: torch.nn.Module, shape: Sequence[int]) -> int:
    """FLOPs (multiply-add = 2) of one forward pass on a zero tensor of ``shape``, counted by PyTorch."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        network(torch.zeros(*shape))
    return int(counter.get_total_flops())


def peak_rss_mb() -> float:
    """Peak resident memory of this process (MiB). On Linux ``ru_maxrss`` also counts the parent's resident
    memory at fork (kept across exec), and the benchmark's parent holds large arrays; ``VmHWM`` is the peak of
    this process image only. ``ru_maxrss`` is the fallback elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2.0 ** 20 if sys.platform == "darwin" else 1024.0)


def parse_variant(text: str) -> Dict[str, Any]:
    """``key=value[+key=value...]`` card ``inference`` overrides, e.g. ``overlap=0+roi_size=96,96,96``."""
    def value(text: str) -> Any:
        try:
            return json.loads(text)
        except ValueError:
            return text

    overrides = {}
    for item in text.split("+"):
        key, _, values = item.partition("=")
        parts = [value(v) for v in values.split(",")]
        overrides[key.strip()] = parts if len(parts) > 1 else parts[0]
    return overrides


def timed_runs(translator: TimedTranslator, inputs: Sequence[str], output: str,
               repeats: int) -> Tuple[List[Dict[str, float]], TranslationResult]:
    """``repeats`` end-to-end runs (read, preprocess, infer, postprocess, write) with each one's stage seconds,
    and the last result. On CUDA the GPU is idle and its peak-memory counter reset before each run."""
    cuda = translator.device.type == "cuda"
    runs: List[Dict[str, float]] = []
    result = None
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        images = [read_image(p) for p in inputs]
        t1 = time.perf_counter()
        result = translator.translate(images)
        t2 = time.perf_counter()
        write_image(result.synthetic, output, result.provenance)
        t3 = time.perf_counter()
        runs.append({"total": t3 - t0, "read": t1 - t0, "preprocess": translator.infer_started - t1,
                     "infer": translator.infer_ended - translator.infer_started,
                     "postprocess": t2 - translator.infer_ended, "write": t3 - t2})
        del images
    return runs, result


def child_run(card: ModelCard, inputs: Sequence[str], output: str, strategy: str, repeats: int,
              threads: Optional[int], overrides: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """End to end ``repeats`` times: read, preprocess, infer, postprocess, write (the model is loaded once,
    before timing, as a Slicer session keeps it). ``overrides`` replace entries of the card's ``inference``."""
    card.inference.update(overrides or {})
    translator = STRATEGIES[strategy](card, RunOptions(device="cpu", threads=threads))
    runs, result = timed_runs(translator, inputs, output, repeats)
    report = result.report
    window = (1, len(card.inputs), *(report.roi_size or translator.settings.roi_size))
    flops_window = flops_of_forward(translator.network_run, window)
    return {
        "strategy": strategy,
        "threads": torch.get_num_threads(),
        "runs": runs,
        "total_s": statistics.median(r["total"] for r in runs),
        "infer_s": statistics.median(r["infer"] for r in runs),
        "windows_total": report.windows_total,
        "windows_computed": report.windows_computed,
        "window_size": list(window[2:]),
        "flops_per_window": flops_window,
        "flops": flops_window * report.windows_computed,
        "peak_rss_mb": peak_rss_mb(),
    }


def child_outputs(card: ModelCard, cases: Sequence[Dict[str, Any]], strategy: str,
                  threads: Optional[int]) -> Dict[str, Any]:
    """One translation of each case (``inputs``, ``output``) by ``strategy``, the model loaded once: the outputs
    whose accuracy is compared, untimed."""
    translator = STRATEGIES[strategy](card, RunOptions(device="cpu", threads=threads))
    for case in cases:
        timed_runs(translator, case["inputs"], case["output"], 1)
    return {"strategy": strategy, "cases": len(cases)}


class FloorProbe(Translator):
    """Measures the network's throughput on the real normalised input instead of translating it."""

    measured: Dict[str, Any] = {}
    precisions: List[str] = ["float32"]

    def infer(self, volume, mask, progress=None, cancel=None, mirror=()):
        large = (plan_body_windows(volume.shape[1:], mask, self.settings).roi_size
                 if self.settings.fully_convolutional else None)
        self.measured = measure_throughput(self.inference_network, volume, mask, self.settings.roi_size,
                                           self.settings.sw_batch_size, self.settings.divisor, self.precisions,
                                           large)
        raise _Measured()


class _Measured(Exception):
    pass


def _centre_block(volume: np.ndarray, mask: np.ndarray, size: Sequence[int]) -> torch.Tensor:
    """A block of ``size`` centred on the body's centre of mass (inside the grid)."""
    centre = np.argwhere(mask).mean(axis=0)
    starts = [int(min(max(0, round(c - s / 2)), n - s)) for c, s, n in zip(centre, size, mask.shape)]
    region = tuple(slice(a, a + s) for a, s in zip(starts, size))
    return torch.from_numpy(np.ascontiguousarray(volume[(slice(None),) + region]))[None]


def _best_time(fn, repeats: int = 3) -> float:
    fn()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure_throughput(network: torch.nn.Module, volume: np.ndarray, mask: np.ndarray, roi: Sequence[int],
                       batch: int, divisor: int, precisions: Sequence[str],
                       large: Optional[Sequence[int]] = None) -> Dict[str, Any]:
    """FLOP/s of the network's forward on body-covering blocks (one ROI, a batch of ``batch`` ROIs, twice the
    ROI where the grid allows, and the ``large`` window a fully convolutional network runs on) in each
    precision; the best of them is the machine's throughput for this network."""
    double = tuple(min(2 * r, n // divisor * divisor) for r, n in zip(roi, mask.shape))
    blocks = [(1, tuple(roi)), (batch, tuple(roi)), (1, double)]
    if large is not None and all(r <= n for r, n in zip(large, mask.shape)):
        blocks.append((1, tuple(large)))
    rows = []
    for count, size in dict.fromkeys(blocks):
        block = _centre_block(volume, mask, size).expand(count, -1, -1, -1, -1).contiguous()
        flops = flops_of_forward(network, block.shape)
        for precision in precisions:
            def forward(block=block, precision=precision):
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                            enabled=precision == "bfloat16"):
                    network(block)
            seconds = _best_time(forward)
            rows.append({"block": [count, *size], "precision": precision, "flops": flops, "seconds": seconds,
                         "flop_per_s": flops / seconds})
    return {
        "blocks": rows,
        "flops_per_voxel": flops_of_forward(network, (1, volume.shape[0], *roi)) / math.prod(roi),
        "body_voxels": int(np.count_nonzero(mask)),
        "throughput_flop_per_s": max(r["flop_per_s"] for r in rows),
    }


def child_floor(card: ModelCard, inputs: Sequence[str], threads: Optional[int],
                precisions: Sequence[str]) -> Dict[str, Any]:
    """Compute floor: FLOPs of one pass over the body voxels, divided by the measured throughput."""
    probe = FloorProbe(card, RunOptions(device="cpu", threads=threads))
    probe.precisions = list(precisions)
    try:
        probe.translate([read_image(p) for p in inputs])
    except _Measured:
        pass
    m = probe.measured
    m["floor_s"] = m["flops_per_voxel"] * m["body_voxels"] / m["throughput_flop_per_s"]
    m["threads"] = torch.get_num_threads()
    return m


def emit(result: Dict[str, Any]) -> None:
    print(json.dumps(result))
