"""The phantom's label map: which tissue of :data:`LABEL_NAMES` lies where in the canonical head.

The structures are implicit shapes in head-frame millimetres (the vault's layers from the depth below the head's
surface over a cranial floor, the cortex from its distance to the CSF boundaries and to the folding waves' zero set,
brainstem and cervical spine, ventricles, the face with orbits, sinuses and airway, a lobulated tumour). Each step
paints its structure over the voxels of its box in the :class:`~.phantom_anatomy.Frame`, overwriting the earlier
steps where it lies, so the order of :func:`label_map` is part of the anatomy.
"""
from __future__ import annotations

import math
from typing import Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

from .head_fields import ellipsoid_depth
from .phantom_anatomy import Anatomy, Frame, Slices
from .phantom_vessels import CHOROID_PLEXUS, VENOUS_SINUS, VesselAnatomy, paint_vessels

LABEL_NAMES: Dict[int, str] = {
    0: "air",
    1: "scalp_fat",
    2: "cortical_bone",
    3: "diploe",
    4: "csf",
    5: "grey_matter",
    6: "white_matter",
    7: "ventricles",
    8: "eyes",
    9: "sinus_airway",
    10: "tumour_enhancing",
    11: "tumour_necrotic",
    12: "muscle_soft_tissue",
}

#: What skull stripping keeps: CSF, grey and white matter, ventricles, tumour, venous sinuses, choroid plexus.
SKULL_STRIPPING_KEEPS = (4, 5, 6, 7, 10, 11, VENOUS_SINUS, CHOROID_PLEXUS)

# Canonical head geometry (mm, LPS, centred on the head): (centre, semi-axes).
_VAULT = ((0.0, 6.0, 4.0), (75.0, 93.0, 76.0))
_FACE = ((0.0, -20.0, -28.0), (68.0, 72.0, 60.0))
_NOSE = ((0.0, -88.0, -42.0), (10.0, 13.0, 20.0))
_NECK = ((0.0, 18.0), (50.0, 52.0), -40.0)  # elliptic cylinder (centre xy, semi-axes xy, top z)
_SINUSES = (  # air spaces walled by bone and lined by mucosa
    ((0.0, -73.0, 2.0), (14.0, 5.0, 9.0)),  # frontal
    ((0.0, -52.0, -14.0), (8.0, 13.0, 7.0)),  # ethmoid
    ((0.0, -25.0, -30.0), (11.0, 10.0, 9.0)),  # sphenoid
    ((24.0, -50.0, -50.0), (11.0, 15.0, 12.0)),  # maxillary, left
    ((-24.0, -50.0, -50.0), (11.0, 15.0, 12.0)),  # maxillary, right
    ((0.0, -52.0, -42.0), (8.5, 28.0, 19.0)),  # nasal cavity
)
_NASOPHARYNX = ((0.0, -18.0, -50.0), (10.0, 14.0, 7.0))
_PHARYNX = ((0.0, -6.0), (9.0, 6.0), -52.0)
_EYE_CENTRE, _EYE_RADIUS = (31.0, -60.0, -20.0), 11.5
_ORBIT = ((30.0, -50.0, -20.0), (15.0, 20.0, 14.0))
_DEEP_GREY = (  # thalamus, lentiform nucleus, caudate head (left; mirrored)
    ((11.0, 12.0, 8.0), (8.0, 13.0, 8.0)),
    ((22.0, -5.0, 10.0), (6.0, 14.0, 10.0)),
    ((14.0, -15.0, 18.0), (5.0, 9.0, 7.0)),
)
_VENTRICLES = (  # lateral ventricle pieces (left; mirrored), then midline third and fourth ventricles
    ((9.0, -22.0, 16.0), (6.0, 12.0, 8.0)),
    ((10.0, 0.0, 20.0), (6.0, 20.0, 6.0)),
    ((16.0, 25.0, 14.0), (7.0, 10.0, 8.0)),
    ((15.0, 42.0, 12.0), (4.0, 12.0, 5.0)),
    ((23.0, 18.0, 2.0), (4.0, 7.0, 9.0)),
    ((28.0, 5.0, -8.0), (4.0, 16.0, 5.0)),
)
_MIDLINE_VENTRICLES = (((0.0, 5.0, 0.0), (1.8, 14.0, 9.0)), ((0.0, 38.0, -28.0), (5.0, 4.0, 6.0)))
_VENTRICLE_CENTRE = np.array([0.0, 8.0, 12.0])
_CHOROID_PLEXUS = (  # glomus in the atrium, strip along the floor of the body (left; mirrored)
    ((16.0, 27.0, 12.0), (3.5, 6.0, 3.5)),
    ((10.0, 2.0, 16.5), (2.0, 16.0, 2.0)),
)


def _mirrored(shapes: Sequence[Tuple[Sequence[float], Sequence[float]]]
              ) -> Iterator[Tuple[Tuple[float, float, float], Sequence[float]]]:
    """Each left-sided shape and its mirror image on the right."""
    for centre, axes in shapes:
        for side in (1.0, -1.0):
            yield (side * centre[0], centre[1], centre[2]), axes


def _floor(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Height of the cranial floor: high over the orbits, dipping laterally into the middle fossa (temporal
    lobes) and posteriorly into the bowl of the posterior fossa (cerebellum)."""
    lateral = np.minimum(np.abs(x) / 45.0, 1.0) ** 2
    posterior = 0.5 + 0.5 * np.tanh((y - 10.0) / 10.0)
    bowl = 10.0 * (x / 55.0) ** 2 + 20.0 * (np.maximum(y - 40.0, 0.0) / 45.0) ** 2
    return (-24.0 - 18.0 * np.tanh(y / 25.0) - 12.0 * lateral * np.exp(-(((y + 15.0) / 22.0) ** 2))
            + posterior * bowl)


def _tentorium(y: np.ndarray) -> np.ndarray:
    """Height of the tentorium (cerebrum above, cerebellum below), sloping down towards the occiput."""
    return -4.0 - 0.25 * (y - 5.0)


def _midline_bridge(y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Where the hemispheres join (corpus callosum arch, diencephalon), which the midline fissure spares."""
    top = 30.0 - 10.0 * ((y - 3.0) / 35.0) ** 2
    callosum = (y > -32.0) & (y < 38.0) & (z < top) & (z > top - 7.0)
    diencephalon = (y > -15.0) & (y < 25.0) & (z < top) & (z > -12.0)
    return callosum | diencephalon


def _paint(labels: np.ndarray, sl: Slices, mask: np.ndarray, value: int, spare: Sequence[int] = ()) -> None:
    """Set ``value`` where ``mask`` holds inside the box, leaving the labels in ``spare`` untouched."""
    view = labels[sl]
    if spare:
        mask = mask & ~np.isin(view, spare)
    view[mask] = value


def _only(labels: np.ndarray, sl: Slices, mask: np.ndarray, value: int, within: Sequence[int]) -> None:
    """Set ``value`` where ``mask`` holds inside the box, only over the labels in ``within``."""
    view = labels[sl]
    view[mask & np.isin(view, within)] = value


def _body(frame: Frame, a: Anatomy, table_depth: bool
          ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Skin, skull layers, CSF and a brain placeholder from the depth below the head's outer surface.
    Returns the labels, the brain mask, the depth below the brain surface and, with ``table_depth``, the depth
    below the inner table (for the venous sinuses; one more head-sized array otherwise not made)."""
    x, y, z = frame.q
    depth = ellipsoid_depth(frame.q, *_VAULT)
    for centre, axes in (_FACE, _NOSE):
        sl, q = frame.ellipsoid(centre, axes)
        np.maximum(depth[sl], ellipsoid_depth(q, centre, axes), out=depth[sl])
    (nx, ny), neck_axes, top = _NECK
    sl, q = frame.box((nx - neck_axes[0], ny - neck_axes[1], -1e4), (nx + neck_axes[0], ny + neck_axes[1], top))
    neck = np.minimum(ellipsoid_depth(q[:2], (nx, ny), neck_axes), np.float32(top) - q[2])
    np.maximum(depth[sl], neck, out=depth[sl])

    scalp = 5.0 + 1.5 * np.tanh(a.scalp(frame.grid.axes))
    outer = scalp + 1.8
    inner = outer + 2.5 + 1.5 * np.tanh(a.diploe(frame.grid.axes))
    dura = inner + 1.5
    brain_top = dura + np.float32(a.csf_mm)
    floor = _floor(x, y)

    labels = np.zeros(depth.shape, np.uint8)
    labels[depth >= 0] = 12
    labels[(depth >= 0) & (depth < scalp)] = 1
    vault = (z > floor - 6.0) & (depth >= scalp)
    labels[vault] = 2
    labels[vault & (depth >= outer) & (depth < inner) & (z > floor)] = 3
    labels[vault & (depth >= outer) & (z > floor - 4.5) & (z < floor - 1.5)] = 3  # skull base marrow
    cavity = vault & (depth >= dura) & (z > floor)
    labels[cavity] = 4
    below_surface = np.minimum(depth - brain_top, z - floor - np.float32(a.csf_mm))
    brain = cavity & (below_surface > 0)
    return labels, brain, below_surface, depth - inner if table_depth else None


def _cortex(labels: np.ndarray, brain: np.ndarray, below_surface: np.ndarray, frame: Frame, a: Anatomy) -> None:
    """Grey matter, white matter and sulcal CSF inside the brain mask, from the distance to the nearest CSF
    boundary (outer surface, tentorium, interhemispheric fissure) and to the folding waves' zero set."""
    index = np.flatnonzero(brain)
    x, y, z = (c.reshape(-1)[index] for c in frame.q)
    depth = below_surface.reshape(-1)[index]
    sulcal_depth = 9.0 + 4.0 * np.tanh(a.sulcal(frame.grid.axes).reshape(-1)[index])

    tentorium = np.where(y > 5.0, np.abs(z - _tentorium(y)) - 1.0, np.inf).astype(np.float32)
    cerebellum = (y > 5.0) & (z < _tentorium(y))
    fissure = np.where(~cerebellum & ~_midline_bridge(y, z), np.abs(x) - 1.0 - 0.3 * a.csf_mm,
                       np.inf).astype(np.float32)
    depth = np.minimum(depth, np.minimum(tentorium, fissure))

    gaps = np.where(cerebellum, a.folia.distance(x, y, z), a.folds.distance(x, y, z))
    width = 0.4 + 0.15 * a.csf_mm
    grey = np.where(cerebellum, 1.4, a.grey_mm).astype(np.float32)
    sulcal_depth = np.where(cerebellum, 5.0, sulcal_depth)
    tissue = np.full(index.shape, 6, np.uint8)
    tissue[(depth < grey) | ((gaps < width + grey) & (depth < sulcal_depth + grey))] = 5
    tissue[(depth < 0) | ((gaps < width) & (depth < sulcal_depth))] = 4
    for centre, axes in _mirrored(_DEEP_GREY):
        tissue[ellipsoid_depth((x, y, z), centre, axes) > 0] = 5
    labels.reshape(-1)[index] = tissue


def _brainstem_and_spine(labels: np.ndarray, frame: Frame) -> None:
    """Brainstem and spinal cord in their CSF sheath through the foramen magnum, cervical vertebrae."""
    sl, (x, y, z) = frame.box((-20.0, 0.0, -1e4), (20.0, 50.0, 0.0))
    centre_y = 22.0 + 9.0 * np.clip((-z - 10.0) / 50.0, 0.0, 1.0)
    rx = 5.0 + 8.0 * np.clip((z + 60.0) / 45.0, 0.0, 1.0)
    radius = np.sqrt((x / rx) ** 2 + ((y - centre_y) / (0.85 * rx)) ** 2)
    radius_sheath = np.sqrt((x / (rx + 3.0)) ** 2 + ((y - centre_y) / (0.85 * rx + 3.0)) ** 2)
    _paint(labels, sl, (radius_sheath < 1) & (z < -12.0), 4, spare=(0, 1))
    _paint(labels, sl, (radius < 1) & (z < -8.0), 6, spare=(0, 1))

    sl, (x, y, z) = frame.box((-16.0, -2.0, -1e4), (16.0, 45.0, -45.0))
    segment = np.cos(2 * math.pi * (z + 45.0) / 17.0) < 0.8  # intervertebral discs stay soft tissue
    body = ellipsoid_depth((x, y), (0.0, 10.0), (12.0, 9.0)) * (z < -48.0)
    _paint(labels, sl, (body > 0) & segment, 2)
    _paint(labels, sl, (body > 1.5) & segment, 3)
    canal = np.sqrt(x ** 2 + (y - 31.0) ** 2)
    _paint(labels, sl, (canal > 8.5) & (canal < 12.5) & (y > 27.0) & segment, 2)


def _ventricles(labels: np.ndarray, frame: Frame, a: Anatomy) -> None:
    """Lateral ventricles (overlapping ellipsoids along the C shape), third and fourth ventricles; their size
    varies per seed like atrophy does."""
    for centre, axes in list(_mirrored(_VENTRICLES)) + list(_MIDLINE_VENTRICLES):
        c = _VENTRICLE_CENTRE + a.ventricle_scale * (np.asarray(centre) - _VENTRICLE_CENTRE)
        s = a.ventricle_scale * np.asarray(axes)
        sl, q = frame.ellipsoid(c, s)
        _only(labels, sl, ellipsoid_depth(q, c, s) > 0, 7, within=(4, 5, 6))


def _face(labels: np.ndarray, frame: Frame, a: Anatomy) -> None:
    """Facial bones, orbits and eyes, and the air spaces: sinuses (walled by bone, lined by mucosa),
    nasal cavity with its septum, naso- and oropharynx."""
    soft = (0, 1, 8)
    palate = ((0.0, -48.0, -64.0), (24.0, 30.0, 2.5))
    sl, q = frame.ellipsoid(*palate)
    _paint(labels, sl, ellipsoid_depth(q, *palate) > 0, 2, spare=soft)

    sl, (x, y, z) = frame.box((-70.0, -95.0, -92.0), (70.0, 12.0, -36.0))
    jaw_top = -66.0 + 28.0 * np.clip((y + 10.0) / 18.0, 0.0, 1.0)
    face_depth = ellipsoid_depth((x, y, z), *_FACE)
    mandible = (z < jaw_top) & (y < 10.0)
    _paint(labels, sl, mandible & (face_depth >= 4.5) & (face_depth < 11.0), 2, spare=soft)
    _paint(labels, sl, mandible & (face_depth >= 6.5) & (face_depth < 9.0) & (z < jaw_top - 2.0), 3, spare=soft)

    for centre, axes in _SINUSES:
        sl, q = frame.ellipsoid(centre, axes, margin=2.5)
        _paint(labels, sl, ellipsoid_depth(q, centre, axes) > -2.5, 2, spare=soft)
    globe = (_EYE_RADIUS,) * 3
    for side in (1.0, -1.0):
        (ox, oy, oz), axes = _ORBIT
        centre, eye = (side * ox, oy, oz), (side * _EYE_CENTRE[0], _EYE_CENTRE[1], _EYE_CENTRE[2])
        sl, q = frame.ellipsoid(centre, axes, margin=2.0)
        orbit = ellipsoid_depth(q, centre, axes)
        _paint(labels, sl, (orbit > -2.0) & (q[1] > eye[1] - 2.0), 2, spare=(0, 1))  # walls behind the globe
        _paint(labels, sl, orbit > 0, 1, spare=(0,))  # orbital fat
        sl, q = frame.ellipsoid(eye, globe)
        _paint(labels, sl, ellipsoid_depth(q, eye, globe) > 0, 8, spare=(0,))
    for centre, axes in _SINUSES:
        sl, q = frame.ellipsoid(centre, axes)
        wall = ellipsoid_depth(q, centre, axes)
        _paint(labels, sl, wall > 0, 12, spare=soft)
        _paint(labels, sl, wall > a.mucosa_mm, 9, spare=soft)
    centre, axes = _SINUSES[-1]
    sl, q = frame.ellipsoid(centre, axes)
    _paint(labels, sl, (np.abs(q[0]) < 0.9) & (ellipsoid_depth(q, centre, axes) > 0), 2)  # nasal septum

    sl, q = frame.ellipsoid(*_NASOPHARYNX)
    _paint(labels, sl, ellipsoid_depth(q, *_NASOPHARYNX) > 0, 9, spare=(0, 1))
    (px, py), p_axes, top = _PHARYNX
    sl, q = frame.box((px - p_axes[0], py - p_axes[1], -1e4), (px + p_axes[0], py + p_axes[1], top))
    _paint(labels, sl, (ellipsoid_depth(q[:2], (px, py), p_axes) > 0) & (q[2] < top), 9, spare=(0, 1))


def _tumour(labels: np.ndarray, frame: Frame, a: Anatomy) -> None:
    """A lobulated tumour inside the cranial cavity: enhancing rim around a necrotic core."""
    r = a.tumour_radius * 1.2
    sl, (x, y, z) = frame.box(a.tumour_centre - r, a.tumour_centre + r)
    cx, cy, cz = (np.float32(v) for v in a.tumour_centre)
    dx, dy, dz = x - cx, y - cy, z - cz
    radius = np.float32(a.tumour_radius) * (1.0 + 0.15 * a.tumour_lobes.field(dx, dy, dz))
    distance = np.sqrt(dx * dx + dy * dy + dz * dz)
    _only(labels, sl, distance < radius, 10, within=(4, 5, 6, 7, VENOUS_SINUS, CHOROID_PLEXUS))
    _only(labels, sl, distance < radius - np.float32(a.tumour_rim_mm), 11, within=(10,))


def label_map(frame: Frame, a: Anatomy, tumour: bool, vessels: Optional[VesselAnatomy] = None) -> np.ndarray:
    """The label volume (z, y, x); each step overwrites the previous ones where its structures lie. With
    ``vessels``, the dural venous sinuses and choroid plexus too (:mod:`.phantom_vessels`)."""
    labels, brain, below_surface, below_table = _body(frame, a, vessels is not None)
    _cortex(labels, brain, below_surface, frame, a)
    del brain, below_surface
    _brainstem_and_spine(labels, frame)
    _ventricles(labels, frame, a)
    if vessels is not None:
        paint_vessels(labels, frame, a, vessels, below_table, _tentorium, _CHOROID_PLEXUS, _VENTRICLE_CENTRE)
    del below_table
    _face(labels, frame, a)
    if tumour:
        _tumour(labels, frame, a)
    return labels
