"""Domain-randomised T1w synthesis from label maps (SynthSeg/SynthSR style) and the training data source built on
it, ``data.source: template_synth``.

A network trained on one simulated scanner learns that scanner. SynthSeg (Billot et al., Medical Image Analysis
2023) and SynthSR (Iglesias et al., Science Advances 2023) instead make every training input anew from a label map
with random contrast, bias field, noise and resolution, so that real scanners look like one more draw. Here each
*realisation* is one head (a template head from :mod:`..template_head` or a phantom's label map) cut to a random
field of view and imaged by a random T1w acquisition:

1. **Contrast**: every label gets a random mean and standard deviation (Gaussian mixture, one value per voxel
   drawn from its label's Gaussian), relative to white matter = 1, inside T1w-like bounds
   (:data:`T1W_BOUNDS`): fat bright, cortical bone, teeth and air dark, CSF darker than grey matter, grey darker
   than white; within those the order of the other tissues varies (marrow brighter or darker than muscle, fat
   brighter or darker than white matter, grey/white contrast from MPRAGE-like to spin-echo-like). Not fully
   random contrasts as in SynthSeg: the model's card declares a T1w input, the engine's scan checks compare each
   scan with the training inputs' contrast, and a contrast-agnostic model would make them pass T2w and CT inputs;
   a 1.5 M-parameter network on a CPU budget is also better spent on T1w than on every contrast.
2. **Resolution**: 3D acquisitions at 1-2 mm, or 2D acquisitions with 1-1.3 mm in-plane and slices 1-6 mm thick
   along a random axis (axial, coronal or sagittal); the slice profile is a Gaussian blur of FWHM 0.8-1.3 x the
   thickness on the 1 mm label grid, then the image is sampled on the acquisition grid (random slice phase), as a
   scanner would. The engine's own preprocessing later resamples it back to the network's 1 mm grid, exactly as it
   does a real thick-slice scan.
3. **Bias field** (MONAI ``RandBiasField``, degree 3, computed on a coarse grid and interpolated), **gamma**
   (MONAI ``RandAdjustContrast``), **noise** (MONAI ``RandRicianNoise``, or ``RandGaussianNoise`` for a fifth of
   the scans), a random scanner scale (1 to 10^4.5) with integer storage, and for some scans **defacing** (the face
   in front of and below the eyes set to zero, as pydeface does).
4. **Field of view and position**: the head cut at a random level from the skull base to the lower neck, margins
   of air from none to 25 mm, sometimes the nose or the occiput cut; the head's pose and size vary in the template
   heads themselves.

A recipe may let a share of the phantom realisations keep the phantom's own T1w (``phantom_own_scan_share``), so
the phantom's simulated scanner is one of the scanners the network learns.

The target CT is the anatomy's own CT on the same voxels (template heads: the phantom's CT physics on the
template labels; phantoms: the phantom's CT), so the pair stays consistent whatever the MR draw. Each realisation
then goes through the engine's own ``network_inputs`` (network grid, body mask, normalisation), as every input
does at inference.

Realisation ``k`` of a run is a pure function of (run seed, ``k``): the sampler keeps a pool of realisations,
draws patches from them and replaces each after ``patches_per_volume`` patches, and a resumed run rebuilds its
pool from the realisation numbers in its checkpoint.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import MedGANError

#: Mean (low, high) and standard deviation (low, high) of each label's T1w intensity, white matter = 1. Index =
#: label of :data:`MedGANTranslateLib.template_head_labels.LABEL_NAMES` (the phantom's labels plus teeth).
T1W_BOUNDS: Tuple[Tuple[Tuple[float, float], Tuple[float, float]], ...] = (
    ((0.0, 0.0), (0.0, 0.0)),  # 0 air outside the head (noise only)
    ((0.95, 1.6), (0.02, 0.10)),  # 1 fat (scalp, orbits, neck)
    ((0.0, 0.15), (0.0, 0.04)),  # 2 cortical bone
    ((0.35, 1.3), (0.03, 0.15)),  # 3 diploe / marrow
    ((0.04, 0.40), (0.01, 0.06)),  # 4 CSF
    ((0.50, 0.88), (0.02, 0.07)),  # 5 grey matter
    ((1.0, 1.0), (0.02, 0.05)),  # 6 white matter (the reference)
    ((0.04, 0.40), (0.01, 0.06)),  # 7 ventricles
    ((0.04, 0.45), (0.01, 0.06)),  # 8 eyes (vitreous)
    ((0.0, 0.06), (0.0, 0.03)),  # 9 sinus and airway air
    ((0.45, 0.95), (0.02, 0.08)),  # 10 enhancing tumour rim (unenhanced T1w: like grey matter)
    ((0.10, 0.55), (0.02, 0.08)),  # 11 necrotic tumour core
    ((0.35, 0.80), (0.02, 0.10)),  # 12 muscle, mucosa, other soft tissue
    ((0.0, 0.12), (0.0, 0.04)),  # 13 teeth
)

#: Everything a run may change about the synthesis; ``complete_config`` fills these into ``data.synth``.
SYNTH_DEFAULTS: Dict[str, Any] = {
    "templates": None,  # folder of the template files; None: $MEDGAN_REAL_DATA/templates or shared/real-data
    "head_shape": [192, 232, 240],  # template head grid (x, y, z)
    "head_spacing": [1.0, 1.0, 1.0],  # its voxel size, mm (the labels' resolution: keep it at the network's)
    "phantom_seeds": [],  # phantom heads (data.phantom settings) used as anatomies besides the template heads
    "phantom_share": 0.0,  # fraction of realisations made on a phantom head
    "phantom_own_scan_share": 0.0,  # fraction of those that keep the phantom's own T1w instead of a random scan
    "pool": 6,  # realisations held at once
    "patches_per_volume": 96,  # patches drawn from a realisation before it is replaced
    "thick_slice_probability": 0.6,  # 2D acquisitions, else 3D
    "slice_mm": [1.0, 6.0],  # slice spacing of 2D acquisitions
    "in_plane_mm": [1.0, 1.3],
    "iso_mm": [1.0, 2.0],  # voxel size of 3D acquisitions
    "slice_axis_weights": {"axial": 0.6, "coronal": 0.2, "sagittal": 0.2},
    "bias_coefficient": [0.02, 0.12],  # MONAI RandBiasField coeff_range upper bound, drawn per scan
    "gamma": [0.75, 1.35],
    "noise": [0.005, 0.06],  # noise standard deviation, white matter = 1
    "gaussian_noise_probability": 0.2,
    "deface_probability": 0.15,
    "brain_only_probability": 0.0,  # phantom_acquired: skull-stripped pairs (acquired_pairs.brain_only_mask)
    "focus_labels": {},  # phantom_acquired: {phantom label: weight} for the focus patches' centres (data.prepare_volume)
    "fov_height_mm": [120.0, 260.0],  # from the vertex down
    "fov_margin_mm": [0.0, 25.0],
    "fov_cut_probability": 0.15,  # nose or occiput cut by the field of view
    "describe_cases": 24,  # realisations that describe the training inputs in the card (scan checks)
}

_AXIS_INDEX = {"sagittal": 0, "coronal": 1, "axial": 2}  # x, y, z
_FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))


# ------------------------------------------------------------------------------------------ anatomies


def load_template_head(seed: int, synth: Dict[str, Any], cache_dir: Optional["str | Path"] = None
                       ) -> Dict[str, sitk.Image]:
    """Labels (uint8) and CT (int16 HU) of template head ``seed``, generated once and kept in ``cache_dir`` under
    a key of the seed, the grid, the templates' digest and the :func:`~.data.source_digest` of :mod:`..template_head`:
    it and every engine module it imports, directly or through others (the code that makes the head)."""
    from ..template_atlas import load_atlas
    from ..template_head import make_template_head
    from .data import source_digest

    atlas = load_atlas(synth["templates"])
    key = json.dumps({"seed": int(seed), "shape": list(synth["head_shape"]),
                      "spacing": [float(v) for v in synth["head_spacing"]], "code": source_digest("template_head"),
                      "templates": atlas.digest}, sort_keys=True).encode()
    folder = Path(cache_dir) / f"template{seed}-{hashlib.sha256(key).hexdigest()[:10]}" if cache_dir else None
    names = ("labels", "ct")
    if folder is not None and all((folder / f"{n}.nii").is_file() for n in names):
        return {n: sitk.ReadImage(str(folder / f"{n}.nii")) for n in names}
    head = make_template_head(seed, shape=synth["head_shape"], spacing=synth["head_spacing"],
                              templates=synth["templates"])
    ct = sitk.Cast(sitk.Round(sitk.Clamp(head.ct, sitk.sitkFloat32, -1024.0, 3071.0)), sitk.sitkInt16)
    images = {"labels": head.labels, "ct": ct}
    if folder is None:
        return images
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in images.items():
        tmp = folder / f".{name}.tmp.nii"
        sitk.WriteImage(image, str(tmp))
        tmp.replace(folder / f"{name}.nii")
    # read back: NIfTI keeps the grid in float32, and the first use must equal every later one
    return {n: sitk.ReadImage(str(folder / f"{n}.nii")) for n in names}


def load_anatomy(kind: str, seed: int, data: Dict[str, Any], cache_dir: Optional["str | Path"],
                 own_scan: bool = False) -> Dict[str, sitk.Image]:
    """Labels and CT of one anatomy: ``kind`` ``template`` or ``phantom`` (read from the phantom cache, so a
    freshly made phantom gives the same grid as a cached one); ``own_scan``: a phantom's own T1w too (``t1``)."""
    if kind == "template":
        return load_template_head(seed, data["synth"], cache_dir)
    from .data import _cache_key, load_phantom

    names = ("labels", "ct", "t1") if own_scan else ("labels", "ct")
    if cache_dir is None:
        images = load_phantom(seed, data["phantom"], None)
        return {n: images[n] for n in names}
    folder = Path(cache_dir) / _cache_key(seed, data["phantom"])
    if not all((folder / f"{n}.nii").is_file() for n in names):
        load_phantom(seed, data["phantom"], cache_dir)
    return {n: sitk.ReadImage(str(folder / f"{n}.nii")) for n in names}


# ------------------------------------------------------------------------------------------- acquisition


@dataclass
class Acquisition:
    """One random T1w scan of a label map: contrast, geometry, bias, gamma, noise, scale, defacing."""

    means: np.ndarray
    stds: np.ndarray
    spacing: np.ndarray  # x, y, z mm
    blur_fwhm_mm: np.ndarray  # x, y, z
    phase: np.ndarray  # slice phase per axis, fraction of a voxel
    bias_coefficient: float
    bias_seed: int
    gamma: float
    gamma_seed: int
    noise_std: float
    rician: bool
    noise_seed: int
    scale: float
    integer: bool
    deface: Optional[Tuple[float, float]]  # mm in front of and above the eyes' centre that stay
    description: str

    @classmethod
    def draw(cls, rng: np.random.Generator, synth: Dict[str, Any]) -> "Acquisition":
        bounds = np.asarray([b[0] for b in T1W_BOUNDS])
        spread = np.asarray([b[1] for b in T1W_BOUNDS])
        means = rng.uniform(bounds[:, 0], bounds[:, 1]).astype(np.float32)
        stds = rng.uniform(spread[:, 0], spread[:, 1]).astype(np.float32)
        if rng.random() < float(synth["thick_slice_probability"]):
            names = list(synth["slice_axis_weights"])
            weights = np.asarray([float(synth["slice_axis_weights"][n]) for n in names])
            axis_name = names[int(rng.choice(len(names), p=weights / weights.sum()))]
            spacing = np.full(3, rng.uniform(*synth["in_plane_mm"]))
            spacing[_AXIS_INDEX[axis_name]] = rng.uniform(*synth["slice_mm"])
            kind = f"2D {axis_name}"
        else:
            spacing = rng.uniform(*synth["iso_mm"]) * rng.uniform(0.95, 1.05, 3)
            spacing = np.maximum(spacing, 1.0)
            kind = "3D"
        fwhm = spacing * rng.uniform(0.8, 1.3, 3)
        phase = rng.uniform(0.0, 1.0, 3)
        bias = float(rng.uniform(*synth["bias_coefficient"]))
        gamma = float(rng.uniform(*synth["gamma"]))
        noise = float(rng.uniform(*synth["noise"]))
        rician = bool(rng.random() >= float(synth["gaussian_noise_probability"]))
        scale = float(10.0 ** rng.uniform(0.0, 4.5))
        integer = bool(scale > 100.0 and rng.random() < 0.7)
        deface = (float(rng.uniform(8.0, 25.0)), float(rng.uniform(0.0, 12.0))) \
            if rng.random() < float(synth["deface_probability"]) else None
        seeds = rng.integers(0, 2 ** 31, 3)
        text = (f"{kind} {' x '.join(f'{s:.2g}' for s in spacing)} mm, GM/WM {means[5]:.2f}, fat {means[1]:.2f}, "
                f"bias {bias:.2f}, gamma {gamma:.2f}, {'Rician' if rician else 'Gaussian'} noise {noise:.3f}"
                f"{', defaced' if deface else ''}")
        return cls(means, stds, spacing, fwhm, phase, bias, int(seeds[0]), gamma, int(seeds[1]), noise, rician,
                   int(seeds[2]), scale, integer, deface, text)


def _gmm(labels: np.ndarray, acq: Acquisition, rng: np.random.Generator) -> np.ndarray:
    """One intensity per voxel from its label's Gaussian (SynthSeg's generative model)."""
    image = rng.standard_normal(labels.shape, dtype=np.float32)
    image *= acq.stds[labels]
    image += acq.means[labels]
    return np.maximum(image, 0.0, out=image)


def _acquisition_grid(image: sitk.Image, acq: Acquisition) -> sitk.Image:
    """The scan's grid: ``acq.spacing`` over the extent of ``image``'s voxel centres, its first slice at a random
    phase, so that no slice of the scan lies outside the label map."""
    size = np.asarray(image.GetSize())
    spacing = np.asarray(image.GetSpacing())
    span = (size - 1) * spacing
    step = np.minimum(acq.spacing, np.maximum(span, spacing))
    offset = acq.phase * np.maximum(step - spacing, 0.0)
    count = np.floor((span - offset) / step + 1e-6).astype(int) + 1
    grid = sitk.Image([int(n) for n in count], sitk.sitkUInt8)
    grid.SetSpacing([float(s) for s in step])
    grid.SetOrigin([float(o) for o in np.asarray(image.GetOrigin()) + offset])
    grid.SetDirection(image.GetDirection())
    return grid


def _bias_field(shape: Sequence[int], acq: Acquisition) -> np.ndarray:
    """MONAI's RandBiasField (degree 3) on a coarse grid over the scan, interpolated to its voxels."""
    import torch
    from monai.transforms import RandBiasField
    from torch.nn import functional as F

    coarse = [max(2, int(np.ceil(n / 4))) for n in shape]
    transform = RandBiasField(degree=3, coeff_range=(0.0, acq.bias_coefficient), prob=1.0)
    transform.set_random_state(acq.bias_seed)
    field = torch.as_tensor(np.asarray(transform(np.ones([1] + coarse, np.float32))))
    field = F.interpolate(field[None], size=list(shape), mode="trilinear", align_corners=True)[0, 0]
    field = field.numpy()
    return field / float(np.exp(np.mean(np.log(field))))  # geometric mean 1: white matter stays near 1


def _deface_mask(labels: np.ndarray, spacing_zyx: np.ndarray, acq: Acquisition) -> Optional[np.ndarray]:
    """Voxels (z, y, x) of the face that defacing removes: in front of and below the eyes' centre (shifted)."""
    if acq.deface is None:
        return None
    eyes = np.nonzero(labels == 8)
    if not eyes[0].size:
        return None
    ez, ey = float(eyes[0].mean()), float(eyes[1].mean())
    z = np.arange(labels.shape[0])[:, None, None]
    y = np.arange(labels.shape[1])[None, :, None]
    front, above = acq.deface
    keep = (y < ey + front / spacing_zyx[1]) & (z < ez + above / spacing_zyx[0])
    return np.broadcast_to(keep, labels.shape)


def synthesize_t1w(labels: sitk.Image, acq: Acquisition, rng: np.random.Generator) -> sitk.Image:
    """A T1w scan of ``labels`` (a 1 mm label map) on its acquisition grid, as :class:`Acquisition` says."""
    fine = sitk.GetImageFromArray(_gmm(sitk.GetArrayViewFromImage(labels), acq, rng))
    fine.CopyInformation(labels)
    return acquire(fine, labels, acq)


def acquire(image: sitk.Image, labels: sitk.Image, acq: Acquisition, noise_seed: Optional[int] = None,
            gamma: bool = True) -> sitk.Image:
    """``image``, an MR contrast of ``labels`` on their 1 mm grid with white matter near 1, as ``acq``'s scanner
    records it: slice profile, acquisition grid, bias field, gamma (unless ``gamma`` is False), noise (seeded by
    ``noise_seed``, default the acquisition's), scanner scale and storage, defacing."""
    from monai.transforms import RandAdjustContrast, RandGaussianNoise, RandRicianNoise

    array = sitk.GetArrayViewFromImage(labels)
    spacing_zyx = np.asarray(labels.GetSpacing())[::-1]
    sigma = (acq.blur_fwhm_mm[::-1] / _FWHM) / spacing_zyx
    blurred = ndimage.gaussian_filter(sitk.GetArrayViewFromImage(image).astype(np.float32, copy=False), sigma,
                                      mode="nearest", truncate=3.0)
    deface = _deface_mask(array, spacing_zyx, acq)
    fine = sitk.GetImageFromArray(blurred)
    fine.CopyInformation(labels)
    grid = _acquisition_grid(labels, acq)
    scan = sitk.Resample(fine, grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    values = sitk.GetArrayFromImage(scan)
    values *= _bias_field(values.shape, acq)
    if gamma:
        contrast = RandAdjustContrast(prob=1.0, gamma=(acq.gamma, acq.gamma))
        contrast.set_random_state(acq.gamma_seed)
        values = np.asarray(contrast(values[None]))[0]
    if acq.rician:
        noise = RandRicianNoise(prob=1.0, std=acq.noise_std, sample_std=False)
    else:
        noise = RandGaussianNoise(prob=1.0, std=acq.noise_std, sample_std=False)
    noise.set_random_state(acq.noise_seed if noise_seed is None else int(noise_seed))
    values = np.abs(np.asarray(noise(values[None]))[0]).astype(np.float32)
    values *= np.float32(acq.scale)
    if acq.integer:
        values = np.round(values)
    if deface is not None:
        mask = sitk.GetImageFromArray(deface.astype(np.uint8))
        mask.CopyInformation(labels)
        on_scan = sitk.Resample(mask, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        values[sitk.GetArrayViewFromImage(on_scan) > 0] = 0.0
    out = sitk.GetImageFromArray(values.astype(np.float32))
    out.CopyInformation(grid)
    return out


# ----------------------------------------------------------------------------------------- field of view


def random_field_of_view(labels: sitk.Image, rng: np.random.Generator,
                         synth: Dict[str, Any]) -> Tuple[slice, slice, slice]:
    """A random box (z, y, x slices) around the head: from above the vertex down to a random level, with
    random margins, sometimes cutting the nose or the occiput."""
    array = sitk.GetArrayViewFromImage(labels)
    spacing = np.asarray(labels.GetSpacing())[::-1]  # z, y, x
    occupied = [np.flatnonzero(array.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    lo = np.array([o[0] for o in occupied], float)
    hi = np.array([o[-1] for o in occupied], float)
    margin = rng.uniform(*synth["fov_margin_mm"], size=(3, 2)) / spacing[:, None]
    height = rng.uniform(*synth["fov_height_mm"]) / spacing[0]
    start = lo - margin[:, 0]
    stop = hi + margin[:, 1]
    start[0] = max(start[0], hi[0] + margin[0, 1] - height)
    if rng.random() < float(synth["fov_cut_probability"]):
        cut = rng.uniform(5.0, 20.0) / spacing[1]
        if rng.random() < 0.5:
            start[1] = lo[1] + cut  # the nose (anterior is low y)
        else:
            stop[1] = hi[1] - cut  # the occiput
    shape = np.asarray(array.shape)
    start = np.clip(np.floor(start), 0, shape - 1).astype(int)
    stop = np.clip(np.ceil(stop) + 1, start + 1, shape).astype(int)
    return tuple(slice(int(a), int(b)) for a, b in zip(start, stop))


def crop_to_box(image: sitk.Image, box: Tuple[slice, slice, slice]) -> sitk.Image:
    z, y, x = box
    return image[x.start:x.stop, y.start:y.stop, z.start:z.stop]


# ------------------------------------------------------------------------------------------- realisations


@dataclass
class Realisation:
    """One synthetic training pair: the scan as acquired, the target CT and labels on the 1 mm anatomy grid."""

    index: int
    anatomy: str
    mr: sitk.Image
    ct: sitk.Image
    labels: sitk.Image
    acquisition: Optional[Acquisition]  # None: the phantom's own T1w (its simulated scanner)

    @property
    def description(self) -> str:
        return self.acquisition.description if self.acquisition else "its own T1w"


def realisation_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index), 0x5E7D])


def realise(index: int, seed: int, data: Dict[str, Any], cache_dir: Optional["str | Path"]) -> Realisation:
    """Realisation ``index`` of a run with seed ``seed``: a pure function of both (and the cached anatomies).

    With ``phantom_own_scan_share`` a phantom realisation may keep the phantom's own T1w (cut to the same random
    field of view) instead of a random acquisition: the phantom's scanner is then one more scanner in training,
    as SynthSR mixes real scans into its synthetic ones. The draw for it is made only when the share is above
    zero, so recipes without it realise exactly what they did before it existed."""
    synth = data["synth"]
    rng = realisation_rng(seed, index)
    phantoms = list(synth["phantom_seeds"])
    own_share = float(synth["phantom_own_scan_share"])
    own_scan = False
    if phantoms and rng.random() < float(synth["phantom_share"]):
        kind, anatomy_seed = "phantom", int(phantoms[int(rng.integers(len(phantoms)))])
        own_scan = own_share > 0 and bool(rng.random() < own_share)
    else:
        kind, anatomy_seed = "template", int(data["train_seeds"][int(rng.integers(len(data["train_seeds"])))])
    images = load_anatomy(kind, anatomy_seed, data, cache_dir, own_scan)
    box = random_field_of_view(images["labels"], rng, synth)
    labels, ct = crop_to_box(images["labels"], box), crop_to_box(images["ct"], box)
    if own_scan:
        return Realisation(index, f"{kind} {anatomy_seed}", crop_to_box(images["t1"], box), ct, labels, None)
    acq = Acquisition.draw(rng, synth)
    mr = synthesize_t1w(labels, acq, rng)
    return Realisation(index, f"{kind} {anatomy_seed}", mr, ct, labels, acq)


def check_synth_config(cfg: Dict[str, Any]) -> None:
    """What ``template_synth`` needs: one T1w input and a CT target, a paired recipe, sensible settings."""
    data = cfg["data"]
    synth = data["synth"]
    if list(data["inputs"]) != ["t1"] or data["target"] != "ct":
        raise MedGANError("Training config: data.source 'template_synth' makes T1w inputs and CT targets; set "
                          "data.inputs: [t1] and data.target: ct.")
    if not 0.0 <= float(synth["phantom_share"]) <= 1.0 or (float(synth["phantom_share"]) > 0 and not synth["phantom_seeds"]):
        raise MedGANError("Training config: data.synth.phantom_share must lie in [0, 1], and needs "
                          "data.synth.phantom_seeds when above 0.")
    if not 0.0 <= float(synth["phantom_own_scan_share"]) <= 1.0 or (
            float(synth["phantom_own_scan_share"]) > 0 and float(synth["phantom_share"]) == 0):
        raise MedGANError("Training config: data.synth.phantom_own_scan_share must lie in [0, 1], and needs "
                          "data.synth.phantom_share above 0 (it is a share of the phantom realisations).")
    if float(synth["brain_only_probability"]) > 0 or synth["focus_labels"] or data["phantom"].get("vessels", False):
        raise MedGANError("Training config: data.synth.brain_only_probability, data.synth.focus_labels and "
                          "data.phantom.vessels are for data.source 'phantom_acquired'; template_synth's T1w "
                          "contrasts have no values for the vessel labels, and it neither skull-strips nor focuses.")
    if set(synth["phantom_seeds"]) & (set(cfg["validation"]["seeds"]) | set(cfg["selection"]["seeds"])):
        raise MedGANError("Training config: data.synth.phantom_seeds overlap the validation or selection seeds.")
    check_pool(synth)


def check_pool(synth: Dict[str, Any]) -> None:
    if int(synth["pool"]) < 1 or int(synth["patches_per_volume"]) < 1:
        raise MedGANError("Training config: data.synth.pool and data.synth.patches_per_volume must be at least 1.")


#: A source's realisation ``index`` of a run (seed, data section, cache folder): the anatomy's name, the images by
#: phantom name (the config's inputs and target among them) and the acquisition in words.
ImageRealiser = Callable[[int, int, Dict[str, Any], Optional["str | Path"]], Tuple[str, Dict[str, sitk.Image], str]]


def template_images(index: int, seed: int, data: Dict[str, Any],
                    cache_dir: Optional["str | Path"]) -> Tuple[str, Dict[str, sitk.Image], str]:
    """:func:`realise` as an :data:`ImageRealiser`."""
    r = realise(index, seed, data, cache_dir)
    return r.anatomy, {"t1": r.mr, "ct": r.ct}, r.description


def realiser(source: str) -> ImageRealiser:
    """The realisations of ``data.source``: ``template_synth`` (here) or ``phantom_acquired`` (:mod:`.acquired_pairs`)."""
    if source == "phantom_acquired":
        from .acquired_pairs import realise_pair

        return realise_pair
    return template_images


# ---------------------------------------------------------------------------------------------- sampler


class SynthSampler:
    """Patches from a pool of realisations of ``data.source`` (:func:`realiser`), each replaced by the next one
    after ``patches_per_volume`` patches.

    The pool starts staggered (slot ``i`` as if it had served ``i / pool`` of its patches), so replacements come
    one at a time rather than all at once. Patch positions, focus and flips are the :class:`~.data.PatchSampler`'s."""

    def __init__(self, cfg: Dict[str, Any], card: Dict[str, Any], cache_dir: Optional["str | Path"],
                 log: Optional[Callable[[str, str], None]] = None) -> None:
        data = cfg["data"]
        self.data, self.card, self.cache = data, card, cache_dir
        self.seed = int(cfg["seed"])
        self.pool = int(data["synth"]["pool"])
        self.per_volume = int(data["synth"]["patches_per_volume"])
        self.patch_size = data["patch_size"]
        self.body_fraction, self.flip_axes = data["body_fraction"], data["flip_axes"]
        self.log = log or (lambda level, message: None)
        self.realise = realiser(data["source"])
        self.focus = data["focus_threshold"] if data["focus_fraction"] > 0 else None
        self.next_index = 0
        self.slots: List[Dict[str, int]] = []
        self.volumes: List[Any] = []
        self.seconds = 0.0
        from .data import PatchSampler

        self._patches = PatchSampler([], self.patch_size, self.body_fraction, self.flip_axes, data["focus_fraction"])

    # -- state -----------------------------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        return {"next_index": self.next_index, "slots": copy.deepcopy(self.slots)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.next_index = int(state["next_index"])
        self.slots = [dict(s) for s in state["slots"]]
        self.volumes = [self._volume(s["index"]) for s in self.slots]

    # -- realisations ----------------------------------------------------------------------------------------
    def _volume(self, index: int):
        import time

        from .data import prepare_volume

        t0 = time.perf_counter()
        anatomy, images, description = self.realise(index, self.seed, self.data, self.cache)
        volume = prepare_volume(images, self.data["inputs"], self.data["target"], self.card, self.focus,
                                self.data["synth"]["focus_labels"])
        if any(n < p for n, p in zip(volume.mask.shape, self._patches.size)):
            raise MedGANError(f"Realisation {index} ({anatomy}) is {list(volume.mask.shape[::-1])} voxels on the "
                              f"network grid, smaller than the patch {list(self.patch_size)}; raise "
                              "data.synth.fov_height_mm or lower data.patch_size.")
        self.seconds += time.perf_counter() - t0
        self.log("info", f"realisation {index}: {anatomy}, {description} "
                         f"({time.perf_counter() - t0:.1f} s)")
        return volume

    def _fill(self) -> None:
        while len(self.slots) < self.pool:
            i = len(self.slots)
            self.slots.append({"index": self.next_index, "served": (i * self.per_volume) // self.pool})
            self.volumes.append(self._volume(self.next_index))
            self.next_index += 1

    def _replace_spent(self) -> None:
        for i, slot in enumerate(self.slots):
            if slot["served"] >= self.per_volume:
                self.slots[i] = {"index": self.next_index, "served": 0}
                self.volumes[i] = None  # free the old volume before the new one is made
                self.volumes[i] = self._volume(self.next_index)
                self.next_index += 1

    def _draw(self, rng: np.random.Generator) -> int:
        self._fill()
        self._replace_spent()
        slot = int(rng.integers(len(self.slots)))
        self.slots[slot]["served"] += 1
        return slot

    def paired(self, rng: np.random.Generator, batch: int) -> Tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for _ in range(batch):
            slot = self._draw(rng)
            vol = self.volumes[slot]
            x, y = self._patches._crop(rng, [vol.inputs, vol.target[None]], vol)
            xs.append(x)
            ys.append(y)
        return np.stack(xs), np.stack(ys)

    def unpaired(self, rng: np.random.Generator, batch: int) -> Tuple[np.ndarray, np.ndarray]:
        xs = [self._patches._crop(rng, [self.volumes[s].inputs], self.volumes[s])[0]
              for s in (self._draw(rng) for _ in range(batch))]
        ys = [self._patches._crop(rng, [self.volumes[s].target[None]], self.volumes[s])[0]
              for s in (self._draw(rng) for _ in range(batch))]
        return np.stack(xs), np.stack(ys)


def training_cases(card: Dict[str, Any], data: Dict[str, Any], seed: int, cache_dir: Optional["str | Path"],
                   count: int = 24) -> Iterator[Any]:
    """The first ``count`` realisations of a run as the network saw them, for the card's ``training_inputs``."""
    from ..training_distribution import TrainingCase
    from .data import card_network_inputs

    realise_images = realiser(data["source"])
    for index in range(count):
        images = realise_images(index, seed, data, cache_dir)[1]
        inputs = [images[name] for name in data["inputs"]]
        yield TrainingCase(inputs, *card_network_inputs(inputs, card))
