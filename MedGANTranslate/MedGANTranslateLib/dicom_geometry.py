"""Where the slices of a DICOM series (or the frames of one enhanced, multi-frame file) lie, and how irregular
ones are brought onto a regular 3D grid.

A 3D image is a regular grid: slices of one size, equally spaced, stacked straight along their normal. Some
real series are not: a CT with a tilted gantry (each slice shifted in-plane against the previous one), slices
acquired in blocks of different thickness (uneven gaps), a tilt that changes within the series (slice planes
not parallel). Stacking them as if they were regular puts voxels in the wrong place. 3D Slicer (acquisition
geometry regularization) and dcm2niix (gantry tilt correction, equal slice distances) resample such series onto
a regular grid; :func:`regularise` does the same, so the volume the engine translates is the one a user sees in
Slicer. What cannot be made regular honestly (slices of different sizes or pixel spacings, two slices at one
position, slices that cross or lie in different orientations) raises :class:`GeometryError`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

#: Slices whose normals differ by more than this are different views (a localizer, axial and sagittal images),
#: not one stack with a varying gantry tilt.
MAX_ANGLE_BETWEEN_SLICES = 45.0
#: How close (as a fraction of a gap) a voxel must be to a slice plane to take that slice's value alone.
_ON_PLANE = 1e-9
#: How far (in pixels) outside a slice's first or last pixel centre still counts as inside it (rounding).
_IN_FOOTPRINT = 1e-3


class GeometryError(ValueError):
    """Slices that cannot be put on one regular grid honestly; the message says why and what to do (it
    follows "The input DICOM series in <path>")."""


@dataclass(frozen=True, eq=False)
class Plane:
    """Where one slice lies: centre of its first pixel (Image Position), unit row and column directions (Image
    Orientation), pixel spacing along a row and down a column, size (columns, rows) and nominal thickness."""

    origin: np.ndarray
    row: np.ndarray
    column: np.ndarray
    spacing: Tuple[float, float]
    size: Tuple[int, int]
    thickness: Optional[float]

    @property
    def normal(self) -> np.ndarray:
        normal = np.cross(self.row, self.column)
        return normal / np.linalg.norm(normal)

    def corners(self) -> np.ndarray:
        """Centres of the four corner pixels (4 x 3), which bound the slice's footprint."""
        i = np.array([0, 1, 0, 1]) * (self.size[0] - 1) * self.spacing[0]
        j = np.array([0, 0, 1, 1]) * (self.size[1] - 1) * self.spacing[1]
        return self.origin + np.outer(i, self.row) + np.outer(j, self.column)


@dataclass(frozen=True)
class Grid:
    """A regular 3D grid as SimpleITK describes it (size and spacing in x, y, z; direction row-major)."""

    size: Tuple[int, int, int]
    spacing: Tuple[float, float, float]
    origin: Tuple[float, float, float]
    direction: Tuple[float, ...]

    @property
    def axes(self) -> np.ndarray:
        """The grid's unit axes as the columns of a 3 x 3 matrix."""
        return np.asarray(self.direction, dtype=float).reshape(3, 3)


@dataclass(frozen=True, eq=False)
class Layout:
    """The slices sorted along the stack's normal (``order[k]`` is the given index of the k-th), the regular
    grid that holds them, and what is irregular about them in words (nothing for a regular stack)."""

    planes: Tuple[Plane, ...]
    order: np.ndarray
    grid: Grid
    findings: Tuple[str, ...]

    @property
    def regular(self) -> bool:
        return not self.findings


# ---------------------------------------------------------------------------------------------- DICOM headers


def frame_value(ds: Any, frame: int, group: str, keyword: str, default: Any = None) -> Any:
    """An attribute of one frame: from its functional ``group`` (the per-frame item first, then the shared one,
    as DICOM defines for enhanced images), else from the top level (classic single-frame images)."""
    for sequence, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(sequence)
        if items is not None and len(items) > index and group in items[index]:
            item = items[index][group][0]
            if keyword in item and item.get(keyword) not in (None, ""):
                return item.get(keyword)
    value = ds.get(keyword)
    return default if value in (None, "") else value


def frame_count(ds: Any) -> int:
    """Number of frames in a DICOM instance (1 for a classic slice)."""
    return int(ds.get("NumberOfFrames") or 1)


def frame_plane(ds: Any, frame: int = 0) -> Optional[Plane]:
    """The plane of one frame, or None when its position, orientation or pixel spacing is not recorded."""
    position = frame_value(ds, frame, "PlanePositionSequence", "ImagePositionPatient")
    orientation = frame_value(ds, frame, "PlaneOrientationSequence", "ImageOrientationPatient")
    spacing = frame_value(ds, frame, "PixelMeasuresSequence", "PixelSpacing")
    if position is None or orientation is None or spacing is None or len(orientation) != 6:
        return None
    thickness = frame_value(ds, frame, "PixelMeasuresSequence", "SliceThickness")
    row, column = (np.asarray([float(v) for v in orientation[i:i + 3]]) for i in (0, 3))
    return Plane(
        origin=np.asarray([float(v) for v in position]),
        row=row / np.linalg.norm(row),
        column=column / np.linalg.norm(column),
        spacing=(float(spacing[1]), float(spacing[0])),
        size=(int(ds.Columns), int(ds.Rows)),
        thickness=float(thickness) if thickness not in (None, "") and float(thickness) > 0 else None,
    )


def instance_planes(datasets: Sequence[Any]) -> Optional[List[Plane]]:
    """One plane per slice: per frame of a multi-frame file, per file of a classic series; None when one is
    missing its geometry (such a series is stacked as ITK stacks it)."""
    planes = [frame_plane(ds, frame) for ds in datasets for frame in range(frame_count(ds))]
    return None if any(p is None for p in planes) else planes


# ---------------------------------------------------------------------------------------------- analysis


def _mm(value: float) -> str:
    return f"{value:.3g}"


def _deg(value: float) -> str:
    """An angle for a message, to 0.1°."""
    return f"{round(value, 1):g}°"


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between two unit vectors, in degrees."""
    return math.degrees(math.acos(min(1.0, abs(float(np.dot(a, b))))))


def _check_same_pixels(planes: Sequence[Plane]) -> None:
    """One grid needs one pixel size and spacing: refuses a series that mixes them."""
    for what, values, unit in (("sizes", [p.size for p in planes], "pixels"),
                               ("pixel spacings", [tuple(round(s, 4) for s in p.spacing) for p in planes], "mm")):
        kinds = sorted(set(values), key=values.index)
        if len(kinds) > 1:
            listing = ", ".join(f"{values.count(k)} of {' x '.join(f'{v:g}' for v in k)} {unit}" for k in kinds)
            raise GeometryError(
                f"has slices of different {what} ({listing}): they are not one volume (a localizer or a "
                "reformatted image may be mixed in). Move the odd files out of the folder, or export the series again."
            )


def _stack_normal(planes: Sequence[Plane]) -> np.ndarray:
    """The mean slice normal; refuses slices in different orientations."""
    normals = np.array([p.normal for p in planes])
    normals *= np.sign(normals @ normals[0])[:, None]
    normal = normals.mean(axis=0)
    normal /= np.linalg.norm(normal)
    spread = max(_angle(n, normals[0]) for n in normals)
    if spread > MAX_ANGLE_BETWEEN_SLICES:
        raise GeometryError(
            f"has slices in different orientations (up to {_deg(spread)} apart, e.g. a localizer or axial and "
            "sagittal images in one series): they are not one stack. Give a folder with the slices of one stack only."
        )
    return normal


def _centre_heights(planes: Sequence[Plane], normal: np.ndarray) -> np.ndarray:
    """Position of each slice's centre along the normal."""
    return np.array([float(p.corners().mean(axis=0) @ normal) for p in planes])


def _check_no_duplicates(heights: np.ndarray, tolerance: float) -> None:
    """Two slices at one position are two acquisitions (time points, echoes) of it, not one volume."""
    gaps = np.diff(heights)
    same = gaps <= tolerance
    if same.any():
        raise GeometryError(
            f"has {int(same.sum())} pair(s) of slices at the same position (e.g. {_mm(float(heights[1:][same][0]))} mm "
            "along the slice normal): several time points, echoes or acquisitions of the same slices are not one 3D "
            "volume. Export one of them as its own series."
        )


def _tilt_finding(planes: Sequence[Plane], normal: np.ndarray, tolerance: float) -> List[str]:
    """Names what moves the slices off a straight stack: slice planes that are not parallel, and in-plane
    shifts between slices, a gantry tilt when the slices' centres advance at an angle to their normals (the
    angle each slice makes with that track), else a moved field of view."""
    findings = []
    half_diagonal = max(np.linalg.norm(p.corners()[3] - p.corners()[0]) / 2 for p in planes)
    apart = max(_angle(p.normal, planes[0].normal) for p in planes)
    if math.radians(apart) * half_diagonal > tolerance:
        findings.append(f"slice planes not parallel (up to {_deg(apart)} apart: a gantry tilt that changes within the series)")
    centres = np.array([p.corners().mean(axis=0) for p in planes])
    steps = np.diff(centres, axis=0)
    lateral = np.linalg.norm(steps - np.outer(steps @ normal, normal), axis=1)
    if lateral.max() <= tolerance:
        return findings
    track = (centres[-1] - centres[0]) / np.linalg.norm(centres[-1] - centres[0])
    tilts = np.array([_angle(p.normal, track) for p in planes])
    if tilts.max() < 0.05:
        return findings + [f"slices shifted in-plane against each other by up to {_mm(lateral.max())} mm (the field of view moved)"]
    low, high = float(tilts.min()), float(tilts.max())
    angle = _deg(low) if high - low < 0.05 else f"{_deg(low)}–{_deg(high)}"
    return findings + [
        f"gantry tilt of {angle} (each slice shifted in-plane by up to {math.tan(math.radians(high)):.3g} mm per mm "
        "along the slice normal)"
    ]


def _gap_runs(gaps: np.ndarray, tolerance: float) -> str:
    """Gaps in slice order as runs, e.g. '4 mm ×13, 1.08 mm, 7 mm ×13'."""
    runs: List[List[float]] = []
    for gap in gaps:
        if runs and abs(gap - runs[-1][0]) <= tolerance:
            runs[-1][1] += 1
        else:
            runs.append([float(gap), 1])
    text = ", ".join(f"{_mm(g)} mm" + (f" ×{n}" if n > 1 else "") for g, n in runs[:6])
    return text + (", …" if len(runs) > 6 else "")


def _coverage(planes: Sequence[Plane], gaps: np.ndarray, tolerance: float) -> str:
    """Whether any slice is missing: a gap wider than the slices on either side leaves tissue never imaged."""
    thickness = [p.thickness for p in planes]
    if any(t is None for t in thickness):
        return "slice thickness not recorded, so missing slices cannot be ruled out"
    covered = np.array([(a + b) / 2 for a, b in zip(thickness[:-1], thickness[1:])])
    wide = gaps > covered + tolerance
    if not wide.any():
        low, high = min(thickness), max(thickness)
        return f"no slice missing (every gap is within its slices' {_mm(low)}{'' if high == low else '–' + _mm(high)} mm thickness)"
    first = int(np.argmax(wide))
    return (
        f"{int(wide.sum())} gap(s) wider than the slices on either side (e.g. {_mm(gaps[first])} mm between slices "
        f"{_mm(covered[first])} mm thick, after slice {first + 1} of {len(planes)} along the slice normal): slices "
        "are missing there or were not acquired"
    )


def _gap_finding(planes: Sequence[Plane], gaps: np.ndarray, tolerance: float) -> List[str]:
    """Names uneven slice gaps (runs in slice order) and says whether slices are missing."""
    if np.abs(gaps - gaps.mean()).max() <= tolerance:
        return []
    return [
        f"slice gaps from {_mm(gaps.min())} to {_mm(gaps.max())} mm ({_gap_runs(gaps, tolerance)}), "
        + _coverage(planes, gaps, tolerance)
    ]


def _stack_grid(planes: Sequence[Plane], gaps: np.ndarray) -> Grid:
    """The grid of a regular stack, as ITK builds it: the first slice's axes, the mean gap."""
    first = planes[0]
    axes = np.column_stack([first.row, first.column, np.cross(first.row, first.column)])
    return Grid(
        size=(first.size[0], first.size[1], len(planes)),
        spacing=(first.spacing[0], first.spacing[1], float(gaps.mean()) if len(gaps) else 1.0),
        origin=tuple(float(v) for v in first.origin),
        direction=tuple(float(v) for v in axes.ravel()),
    )


def _heights(plane: Plane, origin: np.ndarray, axes: np.ndarray, spacing: Sequence[float], a: Any, b: Any) -> Any:
    """Where the line through in-plane grid position (a, b) along the grid's normal meets ``plane``, in mm
    along the normal from ``origin`` (affine in a and b; constant when the plane is parallel to the grid)."""
    normal = plane.normal
    return (
        float(normal @ (plane.origin - origin)) - a * spacing[0] * float(normal @ axes[:, 0])
        - b * spacing[1] * float(normal @ axes[:, 1])
    ) / float(normal @ axes[:, 2])


def finest_spacing(gaps: np.ndarray) -> float:
    """The finest spacing at which the scanner sampled: for each slice the larger of its two gaps, then the
    smallest of those. An isolated small gap where two blocks of slices overlap is not a sampling resolution."""
    return float(gaps[0]) if len(gaps) == 1 else float(np.maximum(gaps[:-1], gaps[1:]).min())


def _check_no_crossing(corner_heights: np.ndarray, tolerance: float) -> None:
    """Slices that meet or cross inside the footprint cannot be ordered along the normal there."""
    apart = np.diff(corner_heights, axis=0).min(axis=1)
    if apart.min() <= tolerance:
        k = int(np.argmin(apart))
        raise GeometryError(
            f"has slices that cross inside the field of view (slices {k + 1} and {k + 2} of {len(corner_heights)} "
            "along the slice normal, which are not parallel): "
            "no regular grid can hold them. Give a series whose slices do not intersect (e.g. one stack of a "
            "multi-stack acquisition)."
        )


def _covering_grid(planes: Sequence[Plane], normal: np.ndarray, gaps: np.ndarray, tolerance: float) -> Grid:
    """A grid with axes (row, column, normal) covering every slice's footprint and the slices' extent along the
    normal, in-plane aligned with the first slice's pixels, with planes through the first and last slice and a
    spacing no coarser than :func:`finest_spacing`."""
    first = planes[0]
    row = first.row - (first.row @ normal) * normal
    row /= np.linalg.norm(row)
    axes = np.column_stack([row, np.cross(normal, row), normal])
    corners = np.concatenate([p.corners() for p in planes]) - first.origin
    low = np.floor((corners @ axes[:, :2]).min(axis=0) / first.spacing + _IN_FOOTPRINT)
    high = np.ceil((corners @ axes[:, :2]).max(axis=0) / first.spacing - _IN_FOOTPRINT)
    size = (high - low).astype(int) + 1
    start = first.origin + axes[:, :2] @ (low * first.spacing)
    a, b = np.array([0, size[0] - 1, 0, size[0] - 1]), np.array([0, 0, size[1] - 1, size[1] - 1])
    corner_heights = np.array([_heights(p, start, axes, first.spacing, a, b) for p in planes])
    _check_no_crossing(corner_heights, tolerance)
    bottom, extent = corner_heights[0].min(), corner_heights[-1].max() - corner_heights[0].min()
    count = int(math.ceil(extent / finest_spacing(gaps) - 1e-6)) + 1
    return Grid(
        size=(int(size[0]), int(size[1]), count),
        spacing=(first.spacing[0], first.spacing[1], float(extent / (count - 1))),
        origin=tuple(float(v) for v in start + bottom * normal),
        direction=tuple(float(v) for v in axes.ravel()),
    )


def layout(planes: Sequence[Plane]) -> Layout:
    """Sorts the slices along their normal and finds what is irregular about them (nothing for a series ITK
    stacks exactly: one orientation, equal gaps, no in-plane shift, each within 1 % of the mean gap); raises
    :class:`GeometryError` for what no regular grid can hold honestly."""
    _check_same_pixels(planes)
    normal = _stack_normal(planes)
    heights = _centre_heights(planes, normal)
    order = np.argsort(heights, kind="stable")
    ordered = tuple(planes[i] for i in order)
    heights = heights[order]
    gaps = np.diff(heights)
    tolerance = max(1e-3, 0.01 * float(gaps.mean())) if len(gaps) else 1e-3
    _check_no_duplicates(heights, tolerance)
    findings = tuple(_tilt_finding(ordered, normal, tolerance) + _gap_finding(ordered, gaps, tolerance)) if len(gaps) else ()
    grid = _covering_grid(ordered, normal, gaps, tolerance) if findings else _stack_grid(ordered, gaps)
    return Layout(planes=ordered, order=order, grid=grid, findings=findings)


# ---------------------------------------------------------------------------------------------- resampling


def _sample(values: np.ndarray, plane: Plane, grid: Grid, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One slice's values where the grid's normal lines through the in-plane positions (a, b) meet it:
    bilinear, NaN outside the slice's footprint (nothing is extrapolated)."""
    origin, axes, spacing = np.asarray(grid.origin), grid.axes, grid.spacing
    height = _heights(plane, origin, axes, spacing, a, b)
    offset = origin - plane.origin
    column, row = (
        (float(offset @ d) + a * spacing[0] * float(axes[:, 0] @ d) + b * spacing[1] * float(axes[:, 1] @ d)
         + height * float(axes[:, 2] @ d)) / s
        for d, s in ((plane.row, plane.spacing[0]), (plane.column, plane.spacing[1]))
    )
    column, row = np.broadcast_arrays(column, row)
    sampled = ndimage.map_coordinates(values, [row, column], order=1, mode="nearest", output=np.float32)
    outside = (
        (column < -_IN_FOOTPRINT) | (column > plane.size[0] - 1 + _IN_FOOTPRINT)
        | (row < -_IN_FOOTPRINT) | (row > plane.size[1] - 1 + _IN_FOOTPRINT)
    )
    sampled[outside] = np.nan
    return sampled


def _blend(below: np.ndarray, above: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Linear between two slices; a voxel on a slice plane takes that slice alone, so the other slice's edge
    (NaN outside its footprint) does not spread onto it."""
    return np.where(t <= _ON_PLANE, below, np.where(t >= 1 - _ON_PLANE, above, below + (above - below) * t))


def regularise(values: np.ndarray, layout: Layout) -> Tuple[np.ndarray, float]:
    """The slices' values (K x rows x columns, in the order their planes were given to :func:`layout`) on
    ``layout.grid`` (z, y, x as float32), and the value given to voxels no slice covers.

    Each voxel lies on the grid's normal line through its in-plane position; it is interpolated linearly, by
    distance along that line, between the two slices that bracket it there, each sampled bilinearly where the
    line meets it (exact for a linear intensity field, even between non-parallel slices). Voxels beyond the
    first or last slice, or outside either bracketing slice's footprint, take the series' minimum (air or the
    scanner's padding value for CT; dcm2niix does the same)."""
    grid = layout.grid
    columns, rows, count = grid.size
    a, b = np.arange(columns)[None, :], np.arange(rows)[:, None]
    origin, axes = np.asarray(grid.origin), grid.axes

    def resampled(k: int) -> Tuple[np.ndarray, np.ndarray]:
        """The k-th slice along the normal: its values and its height at every in-plane grid position."""
        plane = layout.planes[k]
        height = np.broadcast_to(_heights(plane, origin, axes, grid.spacing, a, b), (rows, columns))
        return _sample(np.asarray(values[layout.order[k]], dtype=np.float32), plane, grid, a, b), height

    planes_z = np.arange(count) * grid.spacing[2]
    out = np.full((count, rows, columns), np.nan, dtype=np.float32)
    below, below_height = resampled(0)
    for k in range(1, len(layout.planes)):  # slab by slab, two resampled slices in memory at a time
        above, above_height = resampled(k)
        depth = above_height - below_height
        margin = _ON_PLANE * float(depth.max())
        first = int(np.searchsorted(planes_z, below_height.min() - margin, side="left"))
        last = int(np.searchsorted(planes_z, above_height.max() + margin, side="right"))
        for m in range(first, last):
            t = (planes_z[m] - below_height) / depth
            inside = (t >= -_ON_PLANE) & (t <= 1 + _ON_PLANE)
            out[m] = np.where(inside, _blend(below, above, t), out[m])
        below, below_height = above, above_height
    fill = float(np.min(values))
    out[np.isnan(out)] = fill
    return out, fill


def describe(layout: Layout, fill: float) -> str:
    """What was irregular and what was done, for the user (stored with the image as a warning)."""
    grid = layout.grid
    return (
        f"{'; '.join(layout.findings)}. It was resampled onto a regular {_mm(grid.spacing[2])} mm grid covering "
        f"the acquired slices ({' x '.join(str(n) for n in grid.size)} voxels of "
        f"{' x '.join(_mm(s) for s in grid.spacing)} mm), as 3D Slicer (acquisition geometry regularization) and "
        "dcm2niix (gantry tilt correction) do; regions between widely spaced slices are interpolated, and voxels "
        f"outside the acquired slices are set to the series' minimum ({fill:g})."
    )
