"""``data.source: phantom_acquired``: the training phantoms' paired MR images, each pair re-acquired by one random
scanner.

A model that reads one MR contrast and predicts another of the same head (T1w → T1w+Gd) learns the phantom's
scanner when it sees only the phantom's images: 1 mm voxels, a mild bias field. Real T1w come with 3-6 mm slices
and strong bias fields, and on those the T1c model v1.2.0 draws enhancement that is not there (docs/models.md, "On
real whole heads"). Here each realisation is a training phantom cut to a random field of view (as in
``template_synth``) whose images all pass through *one* random acquisition (:class:`.synth.Acquisition`): the same
slice profile and acquisition grid, bias field, scanner scale and storage, defacing, and the same noise draws.
The target is then what the same scanner would record after the injection, so target minus input is still the
enhancement alone, whatever the scanner. The same noise rather than each image its own: with independent noise the
network is rewarded for predicting the target's noise-free mean, i.e. for smoothing, and a first run trained so
drew a blurred head (held-out phantoms' body MAE 52.6 against 42.0, cortical bone and scalp smeared into each
other; docs/models.md). Two parts of the acquisition are left out: the per-tissue contrast (a new contrast would
need the enhancement redrawn with it; the phantoms keep their own tissue values) and the gamma (a power law applied
to each image would change the enhancement itself).

With ``data.synth.brain_only_probability`` a share of the pairs is skull-stripped as research and challenge data
come (BraTS, MNI-registered MS cohorts): both images set to zero outside a brain mask (:func:`brain_only_mask`:
brain, ventricles, the CSF and venous sinuses around it, down to the foramen magnum, eroded or dilated by a random
0-3 mm as skull-stripping tools differ). The draw is made only when the share is above zero, so recipes without it
realise exactly what they did before it existed. With ``data.synth.focus_labels`` ({phantom label: weight}) a
realisation carries its labels too, so the focus patches centre on each enhancing structure with its weight (the
venous sinuses of a phantom with vessels are six times the tumour rim's volume, and would otherwise take most
of them).

Realisation ``k`` of a run is a pure function of (run seed, ``k``), as in :mod:`.synth`, whose pool sampler serves
these realisations too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from ..errors import MedGANError
from ..phantom_labels import SKULL_STRIPPING_KEEPS
from .data import load_phantom
from .synth import Acquisition, acquire, check_pool, crop_to_box, random_field_of_view, realisation_rng

#: The phantom's MR images that a scanner can re-acquire (CT and PET are other machines).
MR_IMAGES = ("t1", "t2", "t1c")
_WHITE_MATTER = 6  # label of phantom_labels.LABEL_NAMES
_GREY_MATTER = 5


def brain_only_mask(labels: sitk.Image, margin_mm: float) -> sitk.Image:
    """The voxels a skull-stripping tool keeps: :data:`..phantom_labels.SKULL_STRIPPING_KEEPS` down to 5 mm
    below the lowest grey matter (the cerebellum's; the spinal canal below is cut as at the foramen magnum), the
    largest connected piece, then dilated (``margin_mm`` > 0) or eroded (< 0) by that many millimetres."""
    array = sitk.GetArrayViewFromImage(labels)
    keep = np.isin(array, SKULL_STRIPPING_KEEPS)
    lowest = int(np.flatnonzero((array == _GREY_MATTER).any(axis=(1, 2)))[0])
    keep[:max(lowest - int(round(5.0 / labels.GetSpacing()[2])), 0)] = False
    mask = sitk.GetImageFromArray(keep.astype(np.uint8))
    mask.CopyInformation(labels)
    mask = sitk.Cast(sitk.RelabelComponent(sitk.ConnectedComponent(mask), sortByObjectSize=True) == 1, sitk.sitkUInt8)
    radius = [int(round(abs(margin_mm) / s)) for s in labels.GetSpacing()]
    if any(radius):
        mask = sitk.BinaryDilate(mask, radius) if margin_mm > 0 else sitk.BinaryErode(mask, radius)
    return mask


def realise_pair(index: int, seed: int, data: Dict[str, Any],
                 cache_dir: Optional["str | Path"]) -> Tuple[str, Dict[str, sitk.Image], str]:
    """Realisation ``index`` (an :data:`.synth.ImageRealiser`): a random training phantom, field of view and
    acquisition; every image the config names, divided by the phantom's T1w white matter (so the acquisition's
    noise is relative to it, as in :func:`.synth.synthesize_t1w`) and acquired on one grid with the same noise."""
    synth = data["synth"]
    rng = realisation_rng(seed, index)
    phantom_seed = int(data["train_seeds"][int(rng.integers(len(data["train_seeds"])))])
    images = load_phantom(phantom_seed, data["phantom"], cache_dir)
    box = random_field_of_view(images["labels"], rng, synth)
    acq = Acquisition.draw(rng, synth)
    names = list(dict.fromkeys([*data["inputs"], data["target"]]))
    labels = sitk.GetArrayViewFromImage(images["labels"])
    white = float(np.median(sitk.GetArrayViewFromImage(images["t1"])[labels == _WHITE_MATTER]))
    cropped_labels = crop_to_box(images["labels"], box)
    acquired = {name: acquire(sitk.Cast(crop_to_box(images[name], box), sitk.sitkFloat32) / white, cropped_labels, acq,
                              gamma=False) for name in names}
    description = (f"{' x '.join(f'{s:.2g}' for s in acq.spacing)} mm, bias {acq.bias_coefficient:.2f}, "
                   f"{'Rician' if acq.rician else 'Gaussian'} noise {acq.noise_std:.3f}"
                   f"{', defaced' if acq.deface else ''}")
    share = float(synth["brain_only_probability"])
    if share > 0 and rng.random() < share:
        margin = float(rng.uniform(-3.0, 3.0))
        mask = brain_only_mask(cropped_labels, margin)
        grid = next(iter(acquired.values()))
        on_scan = sitk.Resample(mask, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        acquired = {name: sitk.Mask(image, on_scan) for name, image in acquired.items()}
        description += f", skull-stripped ({margin:+.1f} mm)"
    if synth["focus_labels"]:
        acquired["labels"] = cropped_labels  # the focus groups' labels (1 mm), for data.prepare_volume
    return f"phantom {phantom_seed}", acquired, description


def check_acquired_config(cfg: Dict[str, Any]) -> None:
    """What ``phantom_acquired`` needs: inputs and target among the phantom's MR images, a sensible pool,
    skull-stripping share and focus weights."""
    data = cfg["data"]
    if any(name not in MR_IMAGES for name in [*data["inputs"], data["target"]]):
        raise MedGANError(f"Training config: data.source 'phantom_acquired' re-acquires the phantom's MR images "
                          f"({', '.join(MR_IMAGES)}); data.inputs and data.target must be among them, got "
                          f"{list(data['inputs'])} -> {data['target']!r}.")
    check_pool(data["synth"])
    if not 0.0 <= float(data["synth"]["brain_only_probability"]) <= 1.0:
        raise MedGANError("Training config: data.synth.brain_only_probability must lie in [0, 1].")
    focus = data["synth"]["focus_labels"]
    weights_ok = isinstance(focus, dict) and all(
        str(k).isdigit() and isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0 for k, w in focus.items())
    if not weights_ok or (focus and not float(data["focus_fraction"]) > 0):
        raise MedGANError("Training config: data.synth.focus_labels maps phantom labels to positive weights "
                          f"({{10: 0.5, 14: 0.25}}) and needs data.focus_fraction above 0; got {focus!r}.")
