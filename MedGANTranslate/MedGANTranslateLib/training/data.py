"""Training data: phantom volumes cached on disk, prepared exactly as the inference pipeline prepares its
inputs, and random patches drawn from them.

Inputs go through the same functions and card parameters as :class:`~MedGANTranslateLib.pipeline.Translator`
(network grid, body mask, N4, normalisation), and the target is mapped by the inverse of the card's
``postprocessing.output_mapping``, so a trained generator runs unchanged through ``medgan-translate run``.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import SimpleITK as sitk

from ..network_grid import NetworkGrid, to_network_grid
from ..output_mapping import input_units_factor, normalised_background_output
from ..preprocessing import network_inputs

PHANTOM_IMAGES = ("labels", "t1", "t2", "ct", "pet", "t1c")
ENGINE_ROOT = Path(__file__).resolve().parents[1]  # the engine package's folder
_AXES = {"x": 2, "y": 1, "z": 0}  # array axes are (z, y, x)


def engine_sources(module: str) -> List[Path]:
    """The source files of engine module ``module`` (dotted, below the engine package: ``"phantom"``) and of every
    engine module it imports, directly or through others, in path order. The engine imports its own modules with
    relative imports only, so following those (in functions too) finds all the code the module runs."""
    todo = [ENGINE_ROOT.joinpath(*module.split(".")).with_suffix(".py")]
    found: Set[Path] = set()
    while todo:
        path = todo.pop()
        if path in found:
            continue
        found.add(path)
        for node in ast.walk(ast.parse(path.read_bytes())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = path.parents[node.level - 1].joinpath(*(node.module.split(".") if node.module else ()))
                candidates = [base.with_suffix(".py")] + [base / f"{alias.name}.py" for alias in node.names]
                todo += [c for c in candidates if c.is_file()]
    return sorted(found)


@functools.lru_cache(maxsize=None)
def source_digest(module: str) -> str:
    """SHA-256 of :func:`engine_sources` of ``module``, for cache keys: any change to the code that makes a cached
    volume makes new cache entries, so a cached volume is always the one the current code makes (a version number
    would depend on someone bumping it)."""
    digest = hashlib.sha256()
    for path in engine_sources(module):
        digest.update(path.relative_to(ENGINE_ROOT).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _generator_digest() -> str:
    """:func:`source_digest` of the phantom generator: :mod:`..phantom` and every engine module it imports,
    directly or through others (its anatomy, label map, acquisition and random fields)."""
    return source_digest("phantom")


def _cache_key(seed: int, phantom: Dict[str, Any]) -> str:
    blob = json.dumps({"seed": seed, **phantom, "generator": _generator_digest()}, sort_keys=True).encode()
    return f"seed{seed}-{hashlib.sha256(blob).hexdigest()[:10]}"


def load_phantom(seed: int, phantom: Dict[str, Any], cache_dir: Optional["str | Path"] = None) -> Dict[str, sitk.Image]:
    """The phantom's images by name; generated once per (seed, settings) and kept as ``.nii`` in ``cache_dir``
    because generating a full-size head takes far longer than reading it back. With a cache, every call returns
    the images as read back from it (NIfTI rounds the origin and spacing), so the call that generates them and
    every later one give the same images."""
    folder = Path(cache_dir) / _cache_key(seed, phantom) if cache_dir else None
    if folder is not None and all((folder / f"{n}.nii").is_file() for n in PHANTOM_IMAGES):
        return _read_cached(folder)
    from ..phantom import make_phantom

    p = make_phantom(seed=seed, shape=tuple(phantom["shape"]), spacing=tuple(phantom["spacing"]),
                     tumour=phantom["tumour"], deform=phantom["deform"], noise=phantom["noise"],
                     vessels=phantom.get("vessels", False))
    images = {n: getattr(p, n) for n in PHANTOM_IMAGES}
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, image in images.items():
            tmp = folder / f".{name}.tmp.nii"
            sitk.WriteImage(image, str(tmp))
            tmp.replace(folder / f"{name}.nii")
        return _read_cached(folder)
    return images


def _read_cached(folder: Path) -> Dict[str, sitk.Image]:
    return {n: sitk.ReadImage(str(folder / f"{n}.nii")) for n in PHANTOM_IMAGES}


def to_network_range(values: np.ndarray, postprocessing: Dict[str, Any]) -> np.ndarray:
    """Inverse of the card's output mapping: physical units → the generator's output range (clipped)."""
    mapping = postprocessing["output_mapping"]
    (s0, s1), (t0, t1) = mapping["source_range"], mapping["target_range"]
    out = s0 + (values.astype(np.float32) - t0) * ((s1 - s0) / (t1 - t0))
    return np.clip(out, min(s0, s1), max(s0, s1)).astype(np.float32)


def card_network_inputs(images: Sequence[sitk.Image], card: Dict[str, Any]) -> Tuple[np.ndarray, np.ndarray, NetworkGrid]:
    """The pipeline's own :func:`~MedGANTranslateLib.preprocessing.network_inputs` with a card's (dict's)
    settings: normalised channels (C, z, y, x), body mask (z, y, x) and the network grid."""
    return network_inputs(images, card["preprocessing"], card["postprocessing"].get("body_mask", {}),
                          [spec["modality"] for spec in card["inputs"]])


@dataclass
class Volume:
    """One prepared phantom: network inputs, target in network range, body mask, and the voxel indices of
    the body and of the voxels where the target differs from the first input by more than a threshold; with
    ``focus_groups`` those voxels split by tissue label, each group drawn with its weight."""

    inputs: np.ndarray
    target: np.ndarray
    mask: np.ndarray
    body_index: np.ndarray
    focus_index: np.ndarray
    focus_groups: Tuple[np.ndarray, ...] = ()
    focus_weights: Tuple[float, ...] = ()


def prepare_volume(images: Dict[str, sitk.Image], input_names: Sequence[str], target_name: str,
                   card: Dict[str, Any], focus_threshold: Optional[float] = None,
                   focus_labels: Optional[Dict[int, float]] = None) -> Volume:
    """``images`` prepared as the pipeline prepares its inputs; with ``focus_labels`` ({label: weight}) and a
    ``labels`` image among ``images``, the focus voxels of each label listed form a group drawn with its weight
    (:class:`PatchSampler`), so that a small enhancing structure is not drowned by a large one."""
    volume, on_grid, grid = card_network_inputs([images[n] for n in input_names], card)
    inputs, mask = volume.astype(np.float32, copy=False), np.array(on_grid)
    post = card["postprocessing"]
    target_img = to_network_grid(images[target_name], {}, reference_grid=grid.image(mask.astype(np.uint8)))
    # A card whose output is in the input's units was run on the input scaled to its reference: so is the target.
    target = to_network_range(sitk.GetArrayFromImage(target_img) / input_units_factor(post, grid.input_scale), post)
    if post.get("background_value") is not None:
        target[~mask] = normalised_background_output(post)  # the pipeline writes the background there anyway
    focus = np.zeros(0, np.int64)
    if focus_threshold is not None:  # only meaningful when input and target share one intensity scale
        focus = np.flatnonzero(mask & (np.abs(target - inputs[0]) > focus_threshold)).astype(np.int64)
    groups: List[np.ndarray] = []
    weights: List[float] = []
    if focus_labels and focus.size:
        labels = to_network_grid(images["labels"], {}, reference_grid=grid.image(mask.astype(np.uint8)),
                                 interpolator=sitk.sitkNearestNeighbor)
        of_focus = sitk.GetArrayViewFromImage(labels).reshape(-1)[focus]
        for label, weight in focus_labels.items():
            group = focus[of_focus == int(label)]
            if group.size:
                groups.append(group)
                weights.append(float(weight))
    total = sum(weights)
    return Volume(inputs, target, mask, np.flatnonzero(mask).astype(np.int64), focus, tuple(groups),
                  tuple(w / total for w in weights))


class PatchSampler:
    """Random patches (size in x, y, z) centred on a voxel where the target differs from the input with
    probability ``focus_fraction`` (rare changes such as enhancing tumour), else on a body voxel with
    probability ``body_fraction``, else anywhere; with random flips along ``flip_axes``. The caller's
    generator makes it reproducible."""

    def __init__(self, volumes: List[Volume], patch_size: Sequence[int], body_fraction: float = 0.9,
                 flip_axes: Sequence[str] = ("x",), focus_fraction: float = 0.0) -> None:
        self.volumes = volumes
        self.size = tuple(int(s) for s in patch_size[::-1])
        self.body_fraction = float(body_fraction)
        self.focus_fraction = float(focus_fraction)
        self.flip_axes = [_AXES[a] for a in flip_axes]
        for v in volumes:
            if any(n < p for n, p in zip(v.mask.shape, self.size)):
                raise ValueError(f"Patch size {list(patch_size)} is larger than a training volume {v.mask.shape[::-1]}.")

    def _corner(self, rng: np.random.Generator, vol: Volume) -> Tuple[int, ...]:
        shape = vol.mask.shape
        draw = rng.random()
        if draw < self.focus_fraction and vol.focus_groups:
            group = vol.focus_groups[int(rng.choice(len(vol.focus_groups), p=vol.focus_weights))]
            centre = np.unravel_index(int(group[rng.integers(group.size)]), shape)
        elif draw < self.focus_fraction and vol.focus_index.size:
            centre = np.unravel_index(int(vol.focus_index[rng.integers(vol.focus_index.size)]), shape)
        elif draw < self.focus_fraction + (1 - self.focus_fraction) * self.body_fraction and vol.body_index.size:
            centre = np.unravel_index(int(vol.body_index[rng.integers(vol.body_index.size)]), shape)
        else:
            centre = tuple(int(rng.integers(n)) for n in shape)
        return tuple(int(min(max(c - p // 2, 0), n - p)) for c, p, n in zip(centre, self.size, shape))

    def _crop(self, rng: np.random.Generator, arrays: Sequence[np.ndarray], vol: Volume) -> List[np.ndarray]:
        c = self._corner(rng, vol)
        region = tuple(slice(a, a + p) for a, p in zip(c, self.size))
        out = [arr[(Ellipsis,) + region] for arr in arrays]
        for axis in self.flip_axes:
            if rng.random() < 0.5:
                out = [np.flip(arr, axis=axis - 3) for arr in out]
        return [np.ascontiguousarray(arr) for arr in out]

    def paired(self, rng: np.random.Generator, batch: int) -> Tuple[np.ndarray, np.ndarray]:
        """(inputs, target) patches from the same place of the same phantom: (B, C, z, y, x), (B, 1, z, y, x)."""
        xs, ys = [], []
        for _ in range(batch):
            vol = self.volumes[int(rng.integers(len(self.volumes)))]
            x, y = self._crop(rng, [vol.inputs, vol.target[None]], vol)
            xs.append(x)
            ys.append(y)
        return np.stack(xs), np.stack(ys)

    def unpaired(self, rng: np.random.Generator, batch: int) -> Tuple[np.ndarray, np.ndarray]:
        """Input and target patches drawn independently (phantom, position and flips), so no pair matches."""
        xs = [self._crop(rng, [v.inputs], v)[0] for v in (self._pick(rng) for _ in range(batch))]
        ys = [self._crop(rng, [v.target[None]], v)[0] for v in (self._pick(rng) for _ in range(batch))]
        return np.stack(xs), np.stack(ys)

    def _pick(self, rng: np.random.Generator) -> Volume:
        return self.volumes[int(rng.integers(len(self.volumes)))]
