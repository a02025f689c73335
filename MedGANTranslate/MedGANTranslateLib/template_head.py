"""Template heads: label maps and CTs built on real average anatomy, for training data that looks like real heads.

The digital phantom (:mod:`.phantom`) draws its head from ellipsoids: its skull is a smooth shell, its skull base
a tilted floor, its sinuses six ellipsoids. Real heads differ most from it exactly there, and a network trained on
it gives real T1w scans a thin broken skull and a chaotic skull base. This module starts from real average
anatomy instead, the templates in ``shared/real-data/templates`` (see :func:`.template_atlas.templates_folder`):

* ``scct.nii.gz``, an average head CT **with skull** on the MNI 2 mm grid, in Cormack units (Rorden et al. 2012;
  :func:`.template_atlas.cormack_to_hounsfield` maps them back to HU as ``clinical_c2h.m`` does): skull, skull
  base, petrous bones, orbits, nasal cavity, sphenoid and maxillary sinuses where the average holds them;
* ``scgrey``/``scwhite``/``sccsf.nii.gz``, tissue probability maps on that grid (brain, CSF);
* ``avg152T1.nii.gz``, the average T1w of 152 heads with scalp, on that grid: fat (scalp, orbits) is bright on it.

Each seed deforms these fields (random head size and shape per axis, pose, smooth elastic warp, all in physical
millimetres) and derives the labels of :data:`.template_head_labels.LABEL_NAMES` (the phantom's, plus teeth) at the
output grid's resolution with random thresholds (skull thickness, pneumatisation), random per-sinus pneumatisation
and opacification, a frontal sinus and mastoid air cells of random size, cortical sulci, and below the template's
field of view (which ends at the maxillary sinuses and the first vertebra) a procedural lower head: hard palate,
upper and lower teeth in their alveolar bone, mandible with rami, cervical vertebrae with discs and the spinal
canal, pharyngeal airway, neck with subcutaneous fat. The CT is the phantom's physics on these labels (per-head
tissue densities, texture, partial-volume blur, noise); MR images are made from the labels by the training code
(:mod:`.training.synth`), so they and the CT agree voxel for voxel.

Coordinates are SimpleITK's LPS millimetres (+x left, +y posterior, +z superior); the output grid has an identity
direction and its centre at the head frame's origin, as the phantom's. Every random choice is drawn from the seed
before any grid-sized work, so one seed gives one head.

The parts: :mod:`.template_atlas` (the templates, read and stacked once), :mod:`.template_head_parameters` (the
seed's random choices), :mod:`.template_head_labels` (the label map, lower head included); this module deforms the
atlas onto the output grid and makes the CT.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .phantom_acquisition import TEXTURE as PHANTOM_TEXTURE
from .template_atlas import load_atlas, sample_atlas
from .template_head_labels import lower_head, template_labels
from .template_head_parameters import HeadParameters

DEFAULT_SHAPE = (192, 232, 240)  # x, y, z at 1 mm: the whole head down to the fourth cervical vertebra
#: Template point (mm) at the output grid's centre: the middle of the head from the vertex to the neck.
HEAD_CENTRE = np.array([0.0, 14.0, -22.0])
#: Relative texture amplitude of every label: the phantom's, teeth 5 %.
TEXTURE = np.array(list(PHANTOM_TEXTURE) + [0.05], np.float32)


def _grid_axes(shape: Sequence[int], spacing: Sequence[float]) -> List[np.ndarray]:
    """Voxel-centre axes (x, y, z) in mm of a grid centred on the origin, as the phantom's."""
    return [(np.arange(n) - (n - 1) / 2.0) * s for n, s in zip(shape, spacing)]


def _template_coordinates(axes: Sequence[np.ndarray], p: HeadParameters) -> List[np.ndarray]:
    """Template mm of every output voxel, (z, y, x) arrays: q = c + M^-1 (x - shift) + warp(x)."""
    d = [(ax - s).astype(np.float32) for ax, s in zip(axes, p.shift)]
    inv = p.matrix_inverse
    out = []
    for r in range(3):
        q = (np.float32(inv[r, 0]) * d[0])[None, None, :] + (np.float32(inv[r, 1]) * d[1])[None, :, None]
        q = q + (np.float32(inv[r, 2]) * d[2])[:, None, None]
        q += np.float32(p.warp_mm) * np.tanh(p.warp[r](axes))
        q += np.float32(HEAD_CENTRE[r])
        out.append(q.astype(np.float32, copy=False))
    return out


def _ct(labels: np.ndarray, axes: Sequence[np.ndarray], p: HeadParameters, rng: np.random.Generator) -> np.ndarray:
    """The phantom's CT physics on the labels: per-head tissue densities with smooth texture, partial-volume blur,
    Gaussian noise."""
    texture = TEXTURE[labels]
    texture *= p.texture(axes)
    texture += 1.0
    ct = ndimage.gaussian_filter(p.ct_means[labels] * texture, p.partial_volume, mode="nearest")
    ct += np.float32(p.ct_sigma) * rng.standard_normal(labels.shape, dtype=np.float32)
    return ct


@dataclass
class TemplateHead:
    """Co-registered label map and CT of one template head; ``parameters`` are its random choices."""

    labels: sitk.Image
    ct: sitk.Image
    parameters: HeadParameters


def make_template_head(seed: int, shape: Sequence[int] = DEFAULT_SHAPE, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                       templates: "str | Path | None" = None) -> TemplateHead:
    """One template head (labels and CT in HU); ``shape`` and ``spacing`` in (x, y, z) order."""
    atlas = load_atlas(templates)
    rng = np.random.default_rng([int(seed), 0x7E4D])
    params = HeadParameters.draw(rng)
    shape = [int(n) for n in shape]
    spacing = [float(s) for s in spacing]
    axes = _grid_axes(shape, spacing)
    q = _template_coordinates(axes, params)
    fields = sample_atlas(atlas, q)
    labels = template_labels(fields, q, axes, params, min(spacing))
    del fields
    lower_head(labels, q, axes, params)
    del q
    ct = _ct(labels, axes, params, rng)
    origin = [float(a[0]) for a in axes]
    images = []
    for array in (labels, ct):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(spacing)
        image.SetOrigin(origin)
        images.append(image)
    return TemplateHead(images[0], images[1], params)
