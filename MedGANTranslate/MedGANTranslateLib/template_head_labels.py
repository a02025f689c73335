"""The label map of a template head, in template millimetres on (z, y, x) arrays.

:func:`template_labels` derives the labels of :data:`LABEL_NAMES` (the phantom's, plus teeth) from the deformed
template fields with the head's random thresholds: air, bone and fat, brain tissue as the most probable class after
a smooth random tilt, sulci, ventricles, the interhemispheric fissure and the tentorium, eyes and orbits, a vault
closed all round the brain, the paranasal sinuses walled by bone and some opacified, a frontal sinus and mastoid air
cells of random size. :func:`lower_head` then
builds the head below the templates' field of view: neck outline with subcutaneous fat, hard palate, teeth in their
alveolar bone, mandible with rami, cervical vertebrae around the spinal canal and cord, pharyngeal airway.
"""
from __future__ import annotations

import math
from typing import Dict, Sequence

import numpy as np
from scipy import ndimage

from .head_fields import ellipsoid_depth
from .phantom_labels import LABEL_NAMES as PHANTOM_LABELS
from .template_atlas import TEMPLATE_BOTTOM
from .template_head_parameters import FRONTAL_SINUS, MASTOIDS, SINUS_REGIONS, HeadParameters

TEETH = 13
LABEL_NAMES: Dict[int, str] = {**PHANTOM_LABELS, TEETH: "teeth"}
AIR, FAT, CORTICAL, DIPLOE, CSF, GREY, WHITE, VENTRICLES, EYES, SINUS, RIM, CORE, SOFT = range(13)


def _inside(coords: Sequence[np.ndarray], centre: Sequence[float], axes: Sequence) -> np.ndarray:
    """Inside an ellipse or ellipsoid whose semi-axes may vary voxel by voxel (arrays)."""
    total = 0.0
    for v, c, a in zip(coords, centre, axes):
        total = total + ((v - np.float32(c)) / a) ** 2
    return total < 1.0


def _erode(mask: np.ndarray, voxels: int) -> np.ndarray:
    return ndimage.minimum_filter(mask.view(np.uint8), size=2 * voxels + 1).astype(bool) if voxels else mask


def _dilate(mask: np.ndarray, voxels: int) -> np.ndarray:
    return ndimage.maximum_filter(mask.view(np.uint8), size=2 * voxels + 1).astype(bool) if voxels else mask


def template_labels(f: np.ndarray, q: Sequence[np.ndarray], axes: Sequence[np.ndarray], p: HeadParameters,
                    spacing: float) -> np.ndarray:
    """Labels from the deformed template fields, with random thresholds and the paranasal/mastoid variations."""
    hu, grey, white, csf, t1, hull, icv_distance, inner_table = f
    x, y, z = q
    hull = (hull + 0.15 * np.tanh(p.hull_noise(axes))) > 0.5
    adjusted = hu.copy()
    regions = {}
    for name, (centre, semi) in SINUS_REGIONS.items():
        weight = np.clip(ellipsoid_depth(q, centre, semi) / 6.0, 0.0, 1.0)
        regions[name] = weight > 0.0
        adjusted += np.float32(p.sinus_offsets[name]) * weight
    air = hull & (adjusted < p.air_threshold)
    bone_values = hu + np.float32(25.0) * p.bone_noise(axes)
    bone = hull & ~air & (bone_values > p.bone_threshold)
    # the average skull is blurred most where skulls differ most (temporal squama): a vault of at least vault_mm
    # from its inner table outwards all around the intracranial space (its floor is the skull base, around the
    # medulla the foramen magnum), so that no training skull has a hole; between the
    # intracranial surface and the inner table, CSF and dura
    table = inner_table + np.float32(p.inner_table_shift)
    vault = hull & ~air & (z > TEMPLATE_BOTTOM)
    thickness = np.float32(max(p.vault_mm, 1.5 * spacing))  # at least 1.5 voxels: closed on coarse grids too
    bone |= vault & (icv_distance > table) & (icv_distance < table + thickness)
    meninges = vault & ~bone & (icv_distance > -1.0) & (icv_distance <= table)

    labels = np.full(hu.shape, SOFT, np.uint8)
    # brain and CSF inside the skull: the most probable class after a smooth random tilt of the probabilities
    tilt = [1.0 + 0.12 * np.tanh(field(axes)) for field in p.tissue_noise]
    g, w, c = grey * tilt[0], white * tilt[1], csf * tilt[2] * np.float32(p.csf_weight)
    brainy = (grey + white + csf) > 0.45
    labels[brainy & (c >= g) & (c >= w)] = CSF
    labels[brainy & (g > c) & (g >= w)] = GREY
    labels[brainy & (w > c) & (w > g)] = WHITE
    labels[meninges & ~brainy] = CSF
    # sulci: CSF along the folding waves' zero set, through the cortical ribbon
    ribbon = labels == GREY
    idx = np.flatnonzero(ribbon)
    sulci = p.folds.distance(x.reshape(-1)[idx], y.reshape(-1)[idx], z.reshape(-1)[idx]) < np.float32(p.sulcus_mm)
    labels.reshape(-1)[idx[sulci]] = CSF
    # ventricles: CSF deep in the middle of the cerebrum
    deep = (np.abs(x) < 30.0) & (y > -38.0) & (y < 48.0) & (z > -20.0) & (z < 32.0) & ((grey + white) > 0.25)
    labels[(labels == CSF) & deep & (csf > 0.5)] = VENTRICLES
    _fissure_and_tentorium(labels, q, p, spacing)
    # fat (bright on the average T1: scalp, orbits, marrow-free soft tissue) versus muscle and other soft tissue
    soft = ~brainy & hull
    labels[soft & (t1 > p.fat_threshold)] = FAT
    eyes = np.zeros(hu.shape, bool)
    for side in (1.0, -1.0):
        eyes |= ellipsoid_depth(q, (side * 29.5, -76.0, -17.0), (11.0, 11.5, 11.0)) > 0.0
    labels[eyes & soft] = EYES
    orbit_fat = np.zeros(hu.shape, bool)
    orbit_wall = np.zeros(hu.shape, bool)
    for side in (1.0, -1.0):  # the orbits' thin bony walls, which the average blurs away, open in front of the eye
        depth = ellipsoid_depth(q, (side * 29.0, -62.0, -19.0), (16.0, 24.0, 16.0))
        orbit_fat |= (depth > 0) & soft & ~eyes
        orbit_wall |= (depth <= 0) & (depth > -max(1.5, 1.5 * spacing)) & (y > -78.0) & hull
    labels[orbit_fat] = FAT
    labels[bone] = CORTICAL
    labels[bone & _erode(bone, max(1, int(round(p.cortical_mm / spacing))))] = DIPLOE
    labels[orbit_wall & ~bone & ~eyes & ~brainy] = CORTICAL
    labels[air] = SINUS
    labels[~hull] = AIR

    # the paranasal sinuses are walled by thin bone and lined by mucosa; some are partly opacified
    for name, inside in regions.items():
        cavity = air & inside
        if not cavity.any():
            continue
        labels[_dilate(cavity, 1) & inside & ~cavity & (labels != AIR)] = CORTICAL
        if p.sinus_fill[name] > 0:
            zs = z[cavity]
            level = np.quantile(zs, p.sinus_fill[name])
            labels[cavity & (z < level)] = SOFT
    wall = max(1.5, 1.5 * spacing)
    _frontal_sinus(labels, q, p, icv_distance > table + np.float32(wall), wall)
    _mastoid_cells(labels, q, axes, p)
    return labels


def _tentorium_height(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Height (template mm) of the tentorium over the cerebellum, read off the template's grey and white matter
    maps: about -5 mm at its apex behind the midbrain, falling backwards to the torcula and sideways to the
    transverse sinuses and petrous ridges (-26 mm)."""
    return np.maximum(-5.0 - 0.4 * np.maximum(y - 55.0, 0.0) - 0.008 * x * x, -26.0)


def _fissure_and_tentorium(labels: np.ndarray, q: Sequence[np.ndarray], p: HeadParameters, spacing: float) -> None:
    """The sheets of dura and CSF between the hemispheres (falx) and between cerebrum and cerebellum (tentorium),
    which the average templates blur away, labelled CSF (dark on T1w, water-like on CT, as both are at this
    thickness): on real T1w they are thin dark sheets inside the brain, and a network that has only seen thin dark
    sheets in the skull makes them bone. At least 1.5 voxels thick, so coarse grids keep them."""
    x, y, z = q
    brain = (labels == GREY) | (labels == WHITE) | (labels == CSF)
    tent = _tentorium_height(x, y)
    callosum_top = 30.0 - 10.0 * ((y - 3.0) / 35.0) ** 2
    above_bridge = np.where(y < -32.0, True, np.where(y < 38.0, z > callosum_top + 2.0, z > tent))
    fissure = brain & (np.abs(x) < np.float32(max(p.fissure_mm, 1.5 * spacing) / 2.0)) & above_bridge
    behind_notch = (y > 42.0) & ((np.abs(x) > 12.0) | (y > 50.0))
    tentorium = brain & behind_notch & (np.abs(z - tent) < np.float32(max(p.tentorium_mm, 1.5 * spacing) / 2.0))
    labels[fissure | tentorium] = CSF


def _frontal_sinus(labels: np.ndarray, q: Sequence[np.ndarray], p: HeadParameters, outside_table: np.ndarray,
                   wall: float) -> None:
    """A frontal sinus of random size between the tables of the frontal bone (only where ``outside_table``: never
    into the cranial cavity), walled by ``wall`` mm of bone, split by a septum; absent in one head of ten."""
    if not p.frontal_axes.any():
        return
    centre = FRONTAL_SINUS
    depth = ellipsoid_depth(q, centre, p.frontal_axes)
    cavity = (depth > 0) & outside_table
    shell = (depth > -wall) & (labels != AIR) & ~cavity
    labels[shell] = CORTICAL
    septum = np.abs(q[0] - np.float32(centre[0] + 0.2 * p.frontal_axes[0])) < 0.8
    labels[cavity & ~septum] = SINUS


def _mastoid_cells(labels: np.ndarray, q: Sequence[np.ndarray], axes: Sequence[np.ndarray], p: HeadParameters) -> None:
    """Mastoid air cells: blobs of a fine random field inside the mastoid bone, their extent per side random
    (from none to a fully pneumatised mastoid)."""
    bone = (labels == CORTICAL) | (labels == DIPLOE)
    inner = _erode(bone, 1)
    cells = None
    for (centre, semi), level in zip(MASTOIDS, p.mastoid_level):
        region = ellipsoid_depth(q, centre, semi) > 0.0
        if not region.any():
            continue
        if cells is None:
            cells = p.mastoid_cells(axes)
        labels[region & inner & (cells > np.float32(level))] = SINUS


def _arch(x: np.ndarray, front_y: float, half_width: float, back_y: float) -> np.ndarray:
    """y of a parabolic dental arch at x: front_y at x = 0, back_y at |x| = half_width."""
    return front_y + (back_y - front_y) * (x / half_width) ** 2


def lower_head(labels: np.ndarray, q: Sequence[np.ndarray], axes: Sequence[np.ndarray], p: HeadParameters) -> None:
    """The head below the templates' field of view, in template mm: neck outline with subcutaneous fat, hard
    palate, maxillary alveolus, teeth, mandible with rami, cervical vertebrae, spinal canal and cord, airway."""
    x, y, z = q
    below = z < TEMPLATE_BOTTOM - 1.0
    if not below.any():
        return
    zz = np.flatnonzero(below.any(axis=(1, 2)))
    sl = (slice(zz.min(), zz.max() + 1), slice(None), slice(None))
    lab = labels[sl]
    x, y, z = (c[sl] for c in q)
    below = below[sl]
    m = np.float32(p.mandible_scale)
    # outline: the extruded template narrows to the jaw (an ellipse in front) and the neck (one behind), the
    # jaw ending under the chin on a plane that rises towards the neck
    menton = p.occlusal_z - 32.0 * m
    flare = np.clip((z - (TEMPLATE_BOTTOM - 24.0)) / 24.0, 0.0, 1.0)
    jaw_axes = (60.0 * m + 30.0 * flare, 90.0 * m + 10.0 * flare)
    jaw = _inside((x, y), (0.0, 4.0), jaw_axes) & (z > menton + 0.25 * np.maximum(y + 80.0 * m, 0.0))
    neck = _inside((x, y), (0.0, 45.0), (p.neck_axes[0] + 30.0 * flare, p.neck_axes[1] + 12.0 * flare))
    body = below & (jaw | neck)
    lab[below & ~body] = AIR
    # the extruded template keeps only its air spaces (maxillary sinuses, nasopharynx) and fat down to the palate
    cavities = body & ((lab == SINUS) | (lab == AIR)) & (z > p.palate_z)
    keep = cavities | ((lab == FAT) & (z > p.palate_z))
    lab[body & ~keep] = SOFT
    lab[cavities] = SINUS
    head = body | (~below & (lab != AIR))  # the head above the slab counts, so its top face is not skin
    inner = _erode(head, 1)
    fat_layer = body & ~_erode(head, max(1, int(round(p.scalp_fat_mm))))
    lab[fat_layer & inner] = FAT

    # hard palate and maxillary alveolus with the upper teeth; the maxillary sinuses end on it
    upper_arch = _arch(x, -72.0 * m, 30.0 * m, -20.0)
    in_upper = (y > upper_arch) & (y < upper_arch + 10.0) & (np.abs(x) < 34.0 * m)
    palate = (z < p.palate_z + 1.5) & (z > p.palate_z - 1.5) & (y > upper_arch) & (y < -22.0) & (np.abs(x) < 26.0 * m)
    alveolus = below & in_upper & (z < p.palate_z + 2.0) & (z > p.occlusal_z + 9.0)
    lab[below & palate] = CORTICAL
    lab[alveolus] = DIPLOE
    lab[alveolus & ~_erode(alveolus, 1)] = CORTICAL
    # lower arch (mandible body) and rami
    lower_arch = _arch(x, -74.0 * m, 46.0 * m, 12.0)
    across = y - lower_arch
    lower_border = menton + 0.22 * np.maximum(y + 74.0 * m, 0.0)
    mandible_body = below & (np.abs(x) < 50.0 * m) & (across > -3.0) & (across < 9.0) & \
        (z < p.occlusal_z - 6.0) & (z > lower_border)
    chin = below & (ellipsoid_depth((x, y, z), (0.0, -72.0 * m, menton + 9.0), (14.0, 7.0, 10.0)) > 0)
    ramus = below & (np.abs(np.abs(x) - 47.0 * m) < 3.5) & (y > 2.0) & (y < 24.0) & (z > lower_border) & \
        (z < TEMPLATE_BOTTOM + 4.0)
    mandible = mandible_body | ramus | chin
    lab[mandible] = DIPLOE
    lab[mandible & ~_erode(mandible, 2)] = CORTICAL
    # teeth: 16 per arch along the arches, crowns meeting at the occlusal plane
    for arch_index, (arch, top, bottom, half) in enumerate(((upper_arch, p.palate_z - 1.0, p.occlusal_z, 30.0 * m),
                                                           (lower_arch, p.occlusal_z, p.occlusal_z - 20.0, 46.0 * m))):
        band = below & (z < top) & (z > bottom) & (np.abs(y - arch - 4.0) < 4.0) & (np.abs(x) < half * 0.98)
        if not band.any():
            continue
        position = np.clip(np.round((x[band] / (half * 0.98) + 1.0) * 8.0 - 0.5), 0, 15).astype(int)
        keep = ~p.teeth_missing[arch_index * 16 + position]
        gap = np.abs(((x[band] / (half * 0.98) + 1.0) * 8.0) % 1.0 - 0.5) < 0.42
        band_idx = np.flatnonzero(band)
        lab.reshape(-1)[band_idx[keep & gap]] = TEETH
    # oral cavity: some air between the tongue and the palate
    if p.mouth_air > 0:
        mouth = below & (y > upper_arch + 8.0) & (y < -20.0) & (np.abs(x) < 22.0 * m) & \
            (z < p.palate_z - 2.0) & (z > p.palate_z - 2.0 - 6.0 * p.mouth_air)
        lab[mouth & (lab == SOFT)] = SINUS
    # cervical spine: bodies and discs, arches around the canal, cord in CSF
    yc = 30.0 + 0.12 * (TEMPLATE_BOTTOM - z)
    segment = np.cos(2.0 * math.pi * (z - p.vertebra_phase) / 18.0) < 0.72
    vb = ellipsoid_depth((x, y - yc), (0.0, 0.0), (11.0, 8.5)) > 0
    canal_r = np.sqrt(x * x + (y - yc - 21.0) ** 2)
    arch_ring = (canal_r > 8.0) & (canal_r < 12.0) & (y > yc + 12.0) & (np.abs(x) < 22.0)
    spinous = (np.abs(x) < 3.0) & (y > yc + 31.0) & (y < yc + 48.0)
    vertebra = below & segment & (vb | arch_ring | spinous) & (z < TEMPLATE_BOTTOM - 4.0)
    lab[below & (canal_r < 8.0)] = CSF
    lab[below & (canal_r < 4.5)] = WHITE
    lab[vertebra] = DIPLOE
    lab[vertebra & ~_erode(vertebra, 1)] = CORTICAL
    # pharyngeal airway in front of the spine
    airway = below & (ellipsoid_depth((x, y - (yc - 22.0)), (0.0, 0.0),
                                      (10.0 * p.airway_scale, 5.5 * p.airway_scale)) > 0) & (z < p.palate_z)
    lab[airway] = SINUS
