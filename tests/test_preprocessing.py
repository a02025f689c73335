"""Grids, body mask, bias field and intensity mappings, on small synthetic SimpleITK volumes."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.ndimage import distance_transform_edt
from scipy.spatial.transform import Rotation

from MedGANTranslateLib.bias_field import n4_correct
from MedGANTranslateLib.binary_morphology import close, dilate, fill_slice_holes, median_vote
from MedGANTranslateLib.body_mask import _block_factors, _from_working_grid, _working_grid, body_mask
from MedGANTranslateLib.errors import InputError, OutputError
from MedGANTranslateLib.network_grid import same_grid, to_input_grid, to_network_grid
from MedGANTranslateLib.normalisation import _percentiles, background_value, linear_map, normalize
from MedGANTranslateLib.output_mapping import cast_output, map_output

SPACING = (0.9, 1.3, 2.5)
SIZE = (17, 19, 13)  # odd on purpose
DIRECTIONS = {
    "LPS": np.eye(3),
    "RAS-flipped": np.diag([-1.0, -1.0, 1.0]),
    "left-handed": np.diag([1.0, -1.0, 1.0]),
    "oblique": Rotation.from_euler("xy", [25, -40], degrees=True).as_matrix(),
}
BODY = {"threshold": None, "closing_radius_mm": 3, "dilation_mm": 2}


def smooth_image(direction=np.eye(3), size=SIZE, spacing=SPACING, origin=(-12.5, 30.0, 7.25)) -> sitk.Image:
    """A smooth function of the physical position, so interpolation errors stay small."""
    image = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(np.asarray(direction, dtype=float).ravel().tolist())
    k, j, i = np.indices(size[::-1], dtype=float)
    points = np.stack([i, j, k], -1) * spacing @ np.asarray(direction).T + origin
    values = 100 + 20 * np.sin(points[..., 0] / 9.0) + 15 * np.cos(points[..., 1] / 11.0) + 0.5 * points[..., 2]
    out = sitk.GetImageFromArray(values.astype(np.float32))
    out.CopyInformation(image)
    return out


def array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


# ------------------------------------------------------------------------------------------- grids


@pytest.mark.parametrize("name", DIRECTIONS)
@pytest.mark.parametrize("orientation", ["LPS", "RAS", None])
def test_network_grid_round_trip_comes_back_on_the_input_grid(name, orientation):
    image = smooth_image(DIRECTIONS[name])
    network = to_network_grid(image, {"orientation": orientation, "spacing": [1.0, 1.0, 1.0]})
    assert network.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_allclose(network.GetSpacing(), (1.0, 1.0, 1.0))
    back = to_input_grid(network, image, default_value=-1.0)
    assert back.GetSize() == image.GetSize()
    assert back.GetSpacing() == image.GetSpacing() and back.GetOrigin() == image.GetOrigin()
    assert back.GetDirection() == image.GetDirection()
    for index in [(0, 0, 0), (16, 18, 12), (3, 11, 7), (16, 0, 5)]:
        assert back.TransformIndexToPhysicalPoint(index) == image.TransformIndexToPhysicalPoint(index)
    error = np.abs(array(back) - array(image))
    assert error[1:-1, 1:-1, 1:-1].max() < 1.0  # values span ~80; linear twice on 1-2.5 mm grids
    assert error.mean() < 0.3


@pytest.mark.parametrize("name", DIRECTIONS)
def test_network_grid_covers_the_same_extent(name):
    image = smooth_image(DIRECTIONS[name])
    network = to_network_grid(image, {"orientation": None, "spacing": [2.0, 2.0, 2.0]})
    expected = [max(1, round(n * s / 2.0)) for n, s in zip(SIZE, SPACING)]
    assert list(network.GetSize()) == expected
    centre = lambda im: im.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in im.GetSize()])  # noqa: E731
    np.testing.assert_allclose(centre(network), centre(image), atol=1e-9)
    assert network.GetDirection() == image.GetDirection()


def test_tiny_axis_keeps_at_least_one_voxel():
    image = smooth_image(size=(9, 9, 3), spacing=(1.0, 1.0, 0.5))
    assert to_network_grid(image, {"spacing": [1.0, 1.0, 5.0]}).GetSize() == (9, 9, 1)


@pytest.mark.parametrize("name", DIRECTIONS)
def test_orientation_only_round_trip_is_bit_exact(name):
    image = smooth_image(DIRECTIONS[name])
    network = to_network_grid(image, {"orientation": "RAS", "spacing": None})
    code = sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(network.GetDirection())
    assert code == "RAS"
    back = to_input_grid(network, image, default_value=0.0)
    np.testing.assert_array_equal(array(back), array(image))
    assert same_grid(back, image) and back.GetOrigin() == image.GetOrigin()


def test_nothing_to_do_keeps_geometry_and_values_bit_exact():
    image = sitk.Cast(smooth_image(DIRECTIONS["oblique"]), sitk.sitkInt16)
    for preprocessing in ({"orientation": None, "spacing": None}, {"spacing": list(SPACING)}, {}):
        network = to_network_grid(image, preprocessing)
        assert network.GetPixelID() == sitk.sitkFloat32
        assert network.GetSize() == image.GetSize() and network.GetOrigin() == image.GetOrigin()
        assert network.GetSpacing() == image.GetSpacing() and network.GetDirection() == image.GetDirection()
        np.testing.assert_array_equal(array(network), array(image).astype(np.float32))
        back = to_input_grid(network, image, default_value=-1.0)
        np.testing.assert_array_equal(array(back), array(image).astype(np.float32))


def test_already_oriented_input_is_not_interpolated():
    image = smooth_image(DIRECTIONS["RAS-flipped"])
    network = to_network_grid(image, {"orientation": "RAS"})
    np.testing.assert_array_equal(array(network), array(image))
    assert network.GetOrigin() == image.GetOrigin()


def test_reference_grid_resamples_second_input_onto_the_first():
    first = smooth_image(DIRECTIONS["oblique"])
    network = to_network_grid(first, {"orientation": "LPS", "spacing": [1.5, 1.5, 1.5]})
    second = smooth_image(np.eye(3), size=(21, 23, 15), spacing=(1.1, 1.1, 2.0), origin=(-20.0, 20.0, -5.0))
    on_grid = to_network_grid(second, {"orientation": "LPS", "spacing": [1.5, 1.5, 1.5]}, reference_grid=network)
    assert on_grid.GetSize() == network.GetSize() and on_grid.GetOrigin() == network.GetOrigin()
    assert on_grid.GetSpacing() == network.GetSpacing() and on_grid.GetDirection() == network.GetDirection()
    inside = array(on_grid) != array(second).min()  # outside its field of view: its minimum
    assert inside.mean() > 0.2
    assert np.abs(array(on_grid) - array(network))[inside].max() < 1.5  # same physical function


def test_reference_grid_equal_to_the_image_is_bit_exact():
    image = smooth_image()
    reference = sitk.Image(image)
    reference.SetOrigin([o + 1e-7 for o in image.GetOrigin()])  # header rounding only
    out = to_network_grid(image, {"spacing": [2.0, 2.0, 2.0]}, reference_grid=reference)
    np.testing.assert_array_equal(array(out), array(image))
    assert out.GetOrigin() == reference.GetOrigin()


def test_to_input_grid_with_nearest_neighbour_for_masks():
    image = smooth_image(DIRECTIONS["oblique"])
    labels = sitk.Cast(image > 100, sitk.sitkUInt8)
    network = to_network_grid(labels, {"spacing": [1.0, 1.0, 1.0]}, interpolator=sitk.sitkNearestNeighbor)
    back = to_input_grid(sitk.Cast(network, sitk.sitkUInt8), image, 0, interpolator=sitk.sitkNearestNeighbor)
    assert back.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(array(back))) <= {0, 1}
    assert (array(back) == array(labels)).mean() > 0.95


# ------------------------------------------------------------------------------------------- body mask


def head_phantom(ct: bool):
    """An ellipsoidal 'head' with a sinus cavity open to the outside through an airway down the neck, in a
    noisy dark background, plus a small bright blob outside (a table, a marker). CT has a bony skull."""
    shape = (36, 36, 36)  # z, y, x
    z, y, x = np.indices(shape, dtype=float)
    head = ((x - 18) / 13) ** 2 + ((y - 18) / 11) ** 2 + ((z - 20) / 14) ** 2 <= 1
    neck = (((x - 18) / 7) ** 2 + ((y - 18) / 6) ** 2 <= 1) & (z < 20)
    cavity = ((x - 18) / 4) ** 2 + ((y - 14) / 3) ** 2 + ((z - 21) / 4) ** 2 <= 1
    airway = (((x - 18) / 1.6) ** 2 + ((y - 15) / 1.6) ** 2 <= 1) & (z <= 21)
    blob = (np.abs(x - 33) <= 1) & (np.abs(y - 33) <= 1) & (np.abs(z - 33) <= 1)
    rng = np.random.default_rng(3)
    if ct:
        values = np.full(shape, -1000.0) + rng.normal(0, 20, shape)
        values[head | neck] = 40
        inner = ((x - 18) / 11) ** 2 + ((y - 18) / 9) ** 2 + ((z - 20) / 12) ** 2 <= 1
        values[head & ~inner] = 1000
        values[cavity | airway] = -1000
        values[blob] = 300
    else:
        values = np.abs(rng.normal(0, 5, shape))
        values[head | neck] = 300 + rng.normal(0, 10, np.count_nonzero(head | neck))
        values[cavity | airway] = np.abs(rng.normal(0, 5, np.count_nonzero(cavity | airway)))
        values[blob] = 400
    image = sitk.GetImageFromArray(values.astype(np.float32))
    image.SetSpacing((2.0, 2.0, 2.0))
    return image, cavity, airway, blob, head | neck


@pytest.mark.parametrize("ct, threshold", [(False, None), (True, None), (True, -500.0)])
def test_body_mask_fills_airways_and_excludes_outside_air(ct, threshold):
    image, cavity, airway, blob, body = head_phantom(ct)
    mask = body_mask(image, dict(BODY, threshold=threshold))
    assert mask.GetPixelID() == sitk.sitkUInt8 and same_grid(mask, image)
    values = array(mask)
    assert set(np.unique(values)) == {0, 1}
    assert values[cavity].all() and values[airway].all()
    assert values[body].all()
    assert not values[blob].any()  # not the largest component
    assert not values[:3, :3].any() and not values[-3:, -3:].any()  # outside air stays out
    distance = distance_transform_edt(~(body | cavity | airway))  # voxels from the filled body
    assert distance[values == 1].max() <= 2.5  # 1-voxel dilation, and closing in the concave neck corner


def body_mask_by_itk(image: sitk.Image, threshold: float, closing: int, dilation: int) -> np.ndarray:
    """The body mask's steps one by one with ITK's own filters on the whole image: the reference."""
    mask = sitk.BinaryMorphologicalClosing(sitk.Cast(sitk.Median(image, [1, 1, 1]) > threshold, sitk.sitkUInt8), [closing] * 3, sitk.sitkBall, 1, True)
    values = array(mask)
    for axis in range(3):
        values = fill_each_slice_by_itk(values, axis).astype(np.uint8)
    largest = sitk.RelabelComponent(sitk.ConnectedComponent(sitk.GetImageFromArray(values)), sortByObjectSize=True) == 1
    return array(sitk.BinaryDilate(sitk.Cast(largest, sitk.sitkUInt8), [dilation] * 3, sitk.sitkBall, 0, 1))


@pytest.mark.parametrize("closing, dilation", [(1, 1), (3, 2)])
def test_body_mask_gives_itk_voxels_also_with_much_air_around_the_body(closing, dilation):
    """The mask's steps run on the body's bounding box plus a margin: the voxels must be the ones the steps give
    on the whole image, where the closing and dilation reach furthest and where the neck is cut by the edge."""
    image, *_ = head_phantom(ct=True)
    values = array(image)
    pad = ((0, 9), (7, 11), (12, 3))  # the neck keeps touching the first z slice
    air = np.random.default_rng(4).normal(-1000, 20, np.add(values.shape, [sum(p) for p in pad])).astype(np.float32)
    air[tuple(slice(a, a + n) for (a, _), n in zip(pad, values.shape))] = values
    more_air = sitk.GetImageFromArray(air)
    more_air.SetSpacing(image.GetSpacing())
    spec = {"threshold": -500.0, "closing_radius_mm": 2.0 * closing, "dilation_mm": 2.0 * dilation}
    expected = body_mask_by_itk(more_air, -500.0, closing, dilation)
    np.testing.assert_array_equal(array(body_mask(more_air, spec)), expected)


def test_body_mask_of_a_fine_grid_is_found_on_a_coarse_one_and_keeps_the_edge_slices():
    image, cavity, airway, blob, body = head_phantom(ct=False)
    filled = (body | cavity | airway)[::-1][1:]  # 35 slices (odd), the neck reaching the last one
    fine = sitk.GetImageFromArray(np.ascontiguousarray(array(image)[::-1][1:]))
    fine.SetSpacing((1.0, 1.0, 1.0))
    fine.SetOrigin((3.0, -2.0, 7.0))
    mask = body_mask(fine, BODY)  # worked on 2 mm blocks
    exact = array(body_mask(fine, dict(BODY, working_spacing_mm=0))).astype(bool)
    values = array(mask).astype(bool)
    assert mask.GetPixelID() == sitk.sitkUInt8 and same_grid(mask, fine)
    assert values[filled].all()
    assert filled[-1].any() and values[-1][filled[-1]].all(), "a body cut by the field of view's edge stays body"
    distance = distance_transform_edt(~filled)
    assert distance[values].max() <= 4.5, "2 mm dilation plus at most one 2 mm block"
    # a shell about one voxel thick at most; the 3 x 3 x 3 median spans 6 mm on the 2 mm grid, 3 mm on the
    # exact one, which rounds this 26 mm wide head's corners a little more
    assert (values != exact).sum() < 0.2 * exact.sum()
    centre = [np.argwhere(m).mean(axis=0) for m in (values, exact)]
    np.testing.assert_allclose(centre[0], centre[1], atol=0.5, err_msg="the coarse grid is not shifted")


def test_a_coarse_mask_comes_back_as_nearest_neighbour_resampling_would_bring_it():
    image = sitk.GetImageFromArray(np.zeros((11, 23, 19), np.float32))  # odd sizes: padded blocks at the edges
    image.SetSpacing((0.45, 1.0, 0.7))
    image.SetOrigin((4.0, -3.0, 12.5))
    image.SetDirection(Rotation.from_euler("xyz", [12, -7, 30], degrees=True).as_matrix().ravel().tolist())
    factors = _block_factors(image, 2.0)
    assert factors == [4, 2, 2]
    coarse = _working_grid(image, factors)
    coarse = sitk.Cast(sitk.GetImageFromArray(np.random.default_rng(2).integers(0, 2, coarse.GetSize()[::-1])
                                              .astype(np.uint8)), sitk.sitkUInt8)
    coarse.CopyInformation(_working_grid(image, factors))
    expected = sitk.Resample(coarse, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    back = _from_working_grid(coarse, image, factors)
    assert same_grid(back, image)
    np.testing.assert_array_equal(array(back), array(expected))


@pytest.mark.parametrize("radius", [[2, 2, 2], [1, 2, 3], [0, 1, 2]])
def test_morphology_gives_the_voxels_itk_gives(radius):
    rng = np.random.default_rng(sum(radius))
    values = blobs_cut_by_the_faces(rng)
    image = sitk.GetImageFromArray(values)
    closed = array(sitk.BinaryMorphologicalClosing(image, radius, sitk.sitkBall, 1, True)) > 0
    dilated = array(sitk.BinaryDilate(image, radius, sitk.sitkBall, 0, 1)) > 0
    eroded = array(sitk.BinaryErode(image, radius, sitk.sitkBall, 0, 1)) > 0  # ITK counts outside as foreground
    np.testing.assert_array_equal(close(values > 0, radius), closed)
    np.testing.assert_array_equal(dilate(values > 0, radius), dilated)
    np.testing.assert_array_equal(~dilate(values == 0, radius, outside=False), eroded)
    assert (closed > values).any() and values[0].any(), "closing changed something, objects touch the edge"
    assert (dilated > values).any() and (eroded < values).any()


@pytest.mark.parametrize("shape", [(9, 11, 13), (1, 7, 8), (2, 1, 5)])
def test_median_vote_is_thresholding_itks_median(shape):
    rng = np.random.default_rng(sum(shape))
    values = np.round(rng.normal(0.0, 1.0, shape), 1).astype(np.float32)  # many voxels exactly at the threshold
    for threshold in (-0.5, 0.0, 0.3):
        expected = array(sitk.Median(sitk.GetImageFromArray(values), [1, 1, 1])) > threshold
        voted = median_vote(values > threshold)
        np.testing.assert_array_equal(voted, expected)
        assert (voted != (values > threshold)).any(), "the vote removed specks and filled gaps"


def blobs_cut_by_the_faces(rng: np.random.Generator) -> np.ndarray:
    """Blobs with gaps and holes of a few voxels, some cut by the array's faces."""
    coarse = rng.random((5, 6, 7))
    fine = np.kron(coarse, np.ones((4, 4, 4)))[:19, :23, :26]
    return ((fine + 0.35 * rng.random(fine.shape)) > 0.8).astype(np.uint8)


def fill_each_slice_by_itk(values: np.ndarray, axis: int) -> np.ndarray:
    """ITK's hole filling of every slice across array ``axis`` on its own: the reference."""
    return np.stack([array(sitk.BinaryFillhole(sitk.GetImageFromArray(np.ascontiguousarray(plane))))
                     for plane in np.moveaxis(values.astype(np.uint8), axis, 0)], axis=axis) > 0


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slice_hole_filling_equals_filling_each_slice_on_its_own(axis):
    values = (np.random.default_rng(5).random((14, 17, 12)) > 0.45).astype(np.uint8)  # many holes of all shapes
    expected = fill_each_slice_by_itk(values, axis)
    filled = fill_slice_holes(values > 0, axis)
    assert np.array_equal(filled, expected) and (expected > values).any()


def test_slice_hole_filling_also_fills_holes_in_3d():
    values = (np.random.default_rng(6).random((14, 17, 12)) > 0.4).astype(np.uint8)
    values[1:-1, 1:-1, 1:-1] |= (np.random.default_rng(7).random((12, 15, 10)) > 0.2).astype(np.uint8)
    in_3d = array(sitk.BinaryFillhole(sitk.GetImageFromArray(values), False, 1)) > 0
    assert (in_3d > values).any()
    for axis in range(3):
        filled = fill_slice_holes(values > 0, axis)
        assert (filled >= in_3d).all()
        np.testing.assert_array_equal(filled, fill_slice_holes(in_3d, axis))


def test_body_mask_without_anything_above_the_threshold():
    image, *_ = head_phantom(ct=False)
    with pytest.raises(InputError, match="No body found"):
        body_mask(image, dict(BODY, threshold=10_000))


def test_body_mask_without_closing_or_dilation_keeps_the_median_filtered_thresholded_body():
    image, cavity, airway, blob, body = head_phantom(ct=True)
    values = array(body_mask(image, {"threshold": -500, "closing_radius_mm": 0, "dilation_mm": 0})).astype(bool)
    np.testing.assert_array_equal(values, body_mask_by_itk(image, -500.0, 0, 0) > 0)
    assert values[cavity].all() and not values[blob].any()  # (the airway's 1-voxel wall is a median's speck)
    assert (values != (body | cavity | airway)).sum() < 0.03 * body.sum(), "the median only rounds the edges"


# ------------------------------------------------------------------------------------------- N4


def coefficient_of_variation(values: np.ndarray) -> float:
    return float(values.std() / values.mean())


def test_n4_reduces_a_smooth_multiplicative_bias():
    z, y, x = np.indices((32, 32, 32), dtype=float)
    sphere = (x - 15.5) ** 2 + (y - 15.5) ** 2 + (z - 15.5) ** 2 <= 14 ** 2
    bias = np.exp(0.35 * (x - 15.5) / 15.5 + 0.2 * (z - 15.5) / 15.5)
    values = np.where(sphere, 100.0 * bias, 0.0).astype(np.float32)
    image = sitk.GetImageFromArray(values)
    image.SetSpacing((1.5, 1.5, 1.5))
    mask = sitk.GetImageFromArray(sphere.astype(np.uint8))
    mask.CopyInformation(image)
    corrected = n4_correct(image, mask)
    assert corrected.GetPixelID() == sitk.sitkFloat32 and same_grid(corrected, image)
    before = coefficient_of_variation(values[sphere])
    after = coefficient_of_variation(array(corrected)[sphere])
    assert after < 0.5 * before


# ------------------------------------------------------------------------------------------- intensities


def test_range_normalisation_inverts_with_map_output():
    values = np.linspace(-1200, 3200, 40 * 30).reshape(40, 30).astype(np.float32)
    spec = {"method": "range", "source_range": [-1024, 3000], "target_range": [-1, 1]}
    normalised = normalize(values, spec, mask=None)
    assert normalised.dtype == np.float32 and normalised.min() == -1 and normalised.max() == 1
    restored = map_output(normalised, {"output_mapping": {"source_range": [-1, 1], "target_range": [-1024, 3000]}})
    inside = (values >= -1024) & (values <= 3000)
    np.testing.assert_allclose(restored[inside], values[inside], atol=1e-3, rtol=0)
    assert restored[~inside].min() == pytest.approx(-1024) and restored[~inside].max() == pytest.approx(3000)
    assert background_value(spec) == -1.0


def test_percentile_normalisation_ignores_voxels_outside_the_mask():
    values = np.zeros((20, 20, 20), np.float32)
    mask = np.zeros(values.shape, bool)
    mask[5:15, 5:15, 5:15] = True
    values[mask] = np.linspace(100, 200, mask.sum())
    values[0, 0, :5] = 10_000  # a bright artefact outside the body
    spec = {"method": "percentile", "lower": 0, "upper": 100, "target_range": [-1, 1], "mask": "body"}
    out = normalize(values, spec, mask)
    assert out[mask].min() == pytest.approx(-1) and out[mask].max() == pytest.approx(1)
    assert out[0, 0, 0] == 1 and out[0, 0, 6] == -1  # clipped to the target range
    unmasked = normalize(values, dict(spec, mask="all"), mask)
    assert unmasked[mask].max() < -0.9  # the artefact and background would set the range
    assert background_value(spec) == -1.0


@pytest.mark.parametrize("case", ["normal", "ties", "sorted", "reversed", "tiny", "one", "uint16"])
def test_percentiles_equal_numpy_percentile(case):
    rng = np.random.default_rng(len(case))
    values = {
        "normal": rng.normal(300, 80, 400_000).astype(np.float32),
        "ties": np.round(rng.normal(0, 3, 300_000)).astype(np.float32),  # few distinct values
        "sorted": np.sort(rng.random(250_000).astype(np.float32)),  # the strided sample sees a pattern
        "reversed": np.sort(rng.random(250_000))[::-1].copy(),
        "tiny": rng.random(7).astype(np.float32),
        "one": np.array([4.5], np.float32),
        "uint16": rng.integers(0, 4000, 200_000).astype(np.uint16),
    }[case]
    q = [0.0, 0.5, 2.0, 37.3, 99.5, 99.99, 100.0]
    np.testing.assert_array_equal(_percentiles(values, q), np.percentile(values, q))


def test_percentile_normalisation_with_constant_body_is_refused():
    values = np.zeros((8, 8, 8), np.float32)
    values[2:6, 2:6, 2:6] = 50
    spec = {"method": "percentile", "lower": 1, "upper": 99, "target_range": [0, 1], "mask": "body"}
    with pytest.raises(InputError, match="percentiles are equal"):
        normalize(values, spec, values > 0)


def test_zscore_uses_statistics_inside_the_mask():
    rng = np.random.default_rng(1)
    values = np.zeros((20, 20, 20), np.float32)
    mask = np.zeros(values.shape, bool)
    mask[4:16, 4:16, 4:16] = True
    values[mask] = rng.normal(500, 50, mask.sum())
    out = normalize(values, {"method": "zscore", "mask": "body"}, mask)
    assert out[mask].mean() == pytest.approx(0, abs=1e-4) and out[mask].std() == pytest.approx(1, abs=1e-4)
    assert background_value({"method": "zscore"}, out) == pytest.approx(out[~mask][0])
    with pytest.raises(ValueError):
        background_value({"method": "zscore"})
    with pytest.raises(InputError, match="body mask is empty"):
        normalize(values, {"method": "zscore", "mask": "body"}, np.zeros_like(mask))


def test_map_output_clips_only_when_asked():
    network = np.array([-1.5, -1.0, 0.0, 1.0, 1.2], np.float32)
    mapping = {"source_range": [-1, 1], "target_range": [0, 20]}
    np.testing.assert_allclose(map_output(network, {"output_mapping": mapping}), [-5, 0, 10, 20, 22], atol=1e-5)
    clipped = map_output(network, {"output_mapping": mapping, "clip": [0, 20]})
    np.testing.assert_allclose(clipped, [0, 0, 10, 20, 20], atol=1e-5)


@pytest.mark.parametrize(
    "dtype, pixel, expected",
    [
        ("int16", sitk.sitkInt16, [-1024, -1024, 2, 3, 3000]),
        ("uint16", sitk.sitkUInt16, [0, 0, 2, 3, 3000]),
        ("float32", sitk.sitkFloat32, [-1024, -1024, 2.4, 2.6, 3000]),
    ],
)
def test_cast_output_clips_rounds_and_casts(dtype, pixel, expected):
    image = sitk.GetImageFromArray(np.array([[[-5000.0, -1024.4, 2.4, 2.6, 9999.0]]], np.float32))
    image.SetSpacing((0.5, 0.6, 0.7))
    low = -1024 if dtype != "uint16" else -10
    out = cast_output(image, dtype, [low, 3000])
    assert out.GetPixelID() == pixel and out.GetSpacing() == image.GetSpacing()
    np.testing.assert_allclose(array(out).ravel(), expected, rtol=0, atol=1e-4)


def test_cast_output_rounds_halves_up_and_keeps_integers_inside_a_fractional_valid_range():
    image = sitk.GetImageFromArray(np.array([[[-2000.0, -3.5, 2.5, 2.4999998, 3070.6, 9999.0]]], np.float32))
    out = array(cast_output(image, "int16", [-1024.5, 3070.7])).ravel()
    np.testing.assert_array_equal(out, [-1024, -3, 3, 2, 3070, 3070])  # 3071 would lie above 3070.7


def test_cast_output_refuses_non_finite_network_output():
    image = sitk.GetImageFromArray(np.array([[[1.0, np.nan, np.inf]]], np.float32))
    with pytest.raises(OutputError, match="2 NaN/Inf"):
        cast_output(image, "int16", [-1024, 3000])


@pytest.mark.parametrize("source, target, clip", [((10, 850), (-1, 1), True), ((-1024, 2000), (-1, 1), False),
                                                   ((0, 1), (2000, -1024), False)])
def test_scale_computes_what_monai_scale_intensity_range_computes(source, target, clip):
    from monai.transforms import ScaleIntensityRange

    values = np.random.default_rng(1).normal(400, 600, (9, 10, 11)).astype(np.float32)
    before = values.copy()
    expected = np.asarray(ScaleIntensityRange(*source, *target, clip=clip)(values), dtype=np.float32)
    out = linear_map(values, source, target, clip)
    assert out.dtype == np.float32 and np.array_equal(values, before)  # the input is not changed
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-4)
    assert (out.min() >= min(target) and out.max() <= max(target)) == clip


def test_scale_refuses_an_empty_source_range():
    with pytest.raises(ValueError, match="empty intensity range"):
        linear_map(np.zeros(3, np.float32), (5, 5), (-1, 1), True)
