"""The scan's noise floor: the intensity above which a voxel holds signal, found in its own background.

The body mask thresholds at this floor when the card gives no threshold. It is estimated from the air alone
(fill values and the background noise's histogram peak), so that bias fields, intensity scales and dim tissue
do not move it, as they move Otsu's threshold between tissue classes; the constants below say what was measured
on real and phantom heads to set each limit.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

#: A single value held by more than this share of the voxels is a fill value (zero-filled air, defaced or
#: skull-stripped background, MNI padding), not noise: it is background by definition.
FILL_VALUE_SHARE = 0.05
#: The first histogram peak is the air's noise only when it lies at the bottom of the non-fill values (less
#: than ``NOISE_PEAK_LIMIT`` of the way from their 10th percentile to the tissue's median) and the floor found
#: from it less than ``NOISE_FLOOR_LIMIT`` of the way from the peak to the tissue: a noise peak is low and
#: narrow, while a first peak that is tissue, or the blurred edge of a skull-stripped brain, is neither, and
#: then only fill values are background. Measured: real and phantom floors lie 0.03-0.26 of the way from their
#: air to their tissue; a skull-stripped MNI brain's first peak lies half-way to its tissue. A CT's air is a
#: low, narrow peak 500 HU above its padding (-1500), which is a fill value.
NOISE_PEAK_LIMIT = 0.1
NOISE_FLOOR_LIMIT = 0.5
#: This share of the sampled voxels at each end is left out, so that a few absurd voxels (one at 1e6 or 1e30
#: in a head of values up to 1000) cannot stretch the histograms that Otsu's threshold and the noise peak are
#: found in: with them the floor rose to 2.6e26 and the mask was empty.
OUTLIER_SHARE = 1e-4
#: Half-widths of the noise peak above its mode where the floor lies. Rayleigh noise (MR magnitude in air) has
#: its mode at sigma and half its height at 2.18 sigma, so 4 half-widths put the floor at 5.7 sigma (one air
#: voxel in 10^7 above it); Gaussian noise (CT air) at 4.7 sigma.
NOISE_FLOOR_HALF_WIDTHS = 4.0


def _otsu(values: np.ndarray) -> float:
    """ITK's Otsu threshold of a flat array (as a 1 x 1 x n image)."""
    otsu = sitk.OtsuThresholdImageFilter()
    otsu.Execute(sitk.GetImageFromArray(np.asarray(values, np.float32).reshape(1, 1, -1)))
    return float(otsu.GetThreshold())


#: Bins of the histogram between the fill value and the Otsu threshold in which the noise peak is found: at
#: most this many, and at least ``NOISE_SAMPLES_PER_BIN`` background voxels a bin on average; smoothed over a
#: bin, so that sampling noise in the counts does not end the peak early (a small image's few hundred air
#: voxels in 256 bins put the floor at 0.5 sigma).
NOISE_HISTOGRAM_BINS = 256
NOISE_SAMPLES_PER_BIN = 50


def _frequent_values(ordered: np.ndarray, share: float) -> np.ndarray:
    """The values held by more than ``share`` of a sorted array: those equal to the value ``k`` places further
    on, for the largest whole ``k`` not above ``share`` times the size. One comparison instead of counting each
    of the 2-4 million distinct values that a head's sampled voxels hold."""
    k = int(share * ordered.size)
    return np.unique(ordered[: ordered.size - k][ordered[k:] == ordered[: ordered.size - k]])


def _finest_step(ordered: np.ndarray) -> float:
    """The smallest gap between two distinct values of a sorted array (0 when it holds fewer than two)."""
    gaps = np.diff(ordered)
    gaps = gaps[gaps > 0]
    return float(gaps.min()) if gaps.size else 0.0


def _sorted_histogram(ordered: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``np.histogram(ordered, edges)[0]`` of a sorted array (the last bin closed), by bisection alone: NumPy
    sorts its input again for bins given as edges."""
    ends = np.append(ordered.searchsorted(edges[:-1], "left"), ordered.searchsorted(edges[-1], "right"))
    return np.diff(ends)


def noise_floor(values: np.ndarray) -> float:
    """The intensity above which a voxel holds signal, estimated from the scan's own background.

    Fill values (:data:`FILL_VALUE_SHARE`) are background. Among the other voxels below the Otsu threshold the
    background's noise forms the first histogram peak (bins no finer than the data's own quantisation, so a
    scaled integer scan such as Philips' 133.9 steps is binned by its levels); the floor lies
    :data:`NOISE_FLOOR_HALF_WIDTHS` half-widths above the peak's mode. Without a noise peak (noise-free or
    skull-stripped images) the floor is the highest fill value. Bias fields and intensity scales do not move
    it, since it only looks at air: unlike Otsu's threshold, which lies between tissue classes and cut the
    dim lower half of a real 2 mm head out of its mask."""
    flat = np.ravel(values)
    sample = np.sort(flat[:: max(1, flat.size >> 21)]).astype(np.float64)  # the conversion keeps the order
    outliers = int(OUTLIER_SHARE * sample.size)
    sample = sample[outliers:sample.size - outliers]
    otsu = _otsu(sample)
    fills = _frequent_values(sample, FILL_VALUE_SHARE)
    fills = fills[fills < otsu]
    fill = float(fills.max()) if fills.size else float(sample[0])
    noise = sample[(sample > fill) & (sample < otsu)]
    tissue = float(np.median(sample[sample >= otsu]))
    if noise.size < 0.01 * sample.size:
        return fill
    bins = min(NOISE_HISTOGRAM_BINS, max(8, noise.size // NOISE_SAMPLES_PER_BIN))
    width = max((otsu - fill) / bins, _finest_step(noise))
    edges = fill + width * np.arange(int(np.ceil((otsu - fill) / width)) + 1)
    histogram = ndimage.gaussian_filter1d(_sorted_histogram(noise, edges).astype(float), 1.0, mode="constant")
    peak = int(np.argmax(histogram))
    mode = edges[peak] + width / 2
    # 10th percentile: past a CT's padding blended into its air (8 % of the tilted GE series' non-fill voxels
    # once resampled to 1 mm)
    low = float(noise[noise.size // 10])
    if mode - low > NOISE_PEAK_LIMIT * (tissue - low):
        return fill
    below_half = np.flatnonzero(histogram[peak:] < histogram[peak] / 2)
    half = edges[peak + below_half[0]] + width / 2 if below_half.size else otsu
    floor = float(mode + NOISE_FLOOR_HALF_WIDTHS * (half - mode))
    return floor if floor - mode < NOISE_FLOOR_LIMIT * (tissue - mode) else fill
