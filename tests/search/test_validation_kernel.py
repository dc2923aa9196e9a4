"""The numba kernel of the validation statistics equals the numpy reference bit for bit, on clean and awkward
cutouts (NaN, inf, exact zeros, huge values, few usable pixels), other sizes and band counts."""

import numpy as np
import pytest

from lenssearch.search.validation import (
    BORDER_PIXELS,
    MIN_NOISE_PAIRS,
    ROW_STRIDE,
    ValidationContext,
    _cutout_statistics_numpy,
    _noise_rows,
    cutout_statistics,
    kernel_usable,
)

NOISE = 0.004


def context(size, n_bands):
    return ValidationContext(size, n_bands, tuple(f"b{i}" for i in range(n_bands)), np.full(n_bands, NOISE), 0.9,
                             (0.5, 2.0), 5.0)


def noise(n, size, n_bands, seed):
    return np.random.default_rng(seed).normal(0.0, NOISE, (n, size, size, n_bands)).astype(np.float32)


def assert_kernel_equals_reference(cut, ctx):
    assert kernel_usable(cut, ctx)
    got = cutout_statistics(cut, ctx)
    with np.errstate(invalid="ignore", over="ignore"):
        want = _cutout_statistics_numpy(cut, ctx)
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    return got


def set_corner_start(corner, count, value):
    """Set the first ``count`` pixels (row-major) of a corner view (width x width [x B]) to ``value``."""
    r, c = np.divmod(np.arange(count), corner.shape[1])
    corner[r, c] = value


def awkward(size, n_bands, seed):
    """One cutout per awkward case (see the comments), n_bands bands of size x size."""
    w, s = BORDER_PIXELS, size
    cut = noise(24, size, n_bands, seed)
    cut[1, 0, 5:9, 0] = np.nan  # NaN pixels in a noise row
    cut[2, 2:6, 3:7, :] = np.nan  # NaN pixels in a corner
    cut[3, :, : s // 3, :] = 0.0  # a third off the image: zeros on one side
    cut[4] = 0.0  # no data at all
    cut[5] = np.nan  # all NaN
    cut[6, 0, 10, 0], cut[6, s - 1, 3, -1], cut[6, 4, 7, 0] = np.inf, -np.inf, np.inf  # +/-inf, in a noise row
    cut[7] *= np.float32(1e38)  # huge values: differences and deviations overflow to inf
    cut[8, 0, -1, :] = 0.0  # one pair less: an odd number of good pairs
    cut[9, 0, s // 2, :] = 0.0  # two pairs less: an even number of good pairs
    cut[10, 4, s // 2 : s // 2 + 2, :] = 0.0  # three pairs less: odd again
    cut[11, :w, :w, 0] = 0.0  # a corner without data: three corners left
    set_corner_start(cut[11, s - w :, s - w :, 0], w * w - (w - 1), 0.0)  # fewer than width usable pixels
    set_corner_start(cut[12, :w, :w], 10, np.nan)  # 134 usable pixels: an even count, the true median
    set_corner_start(cut[13, :w, :w], 11, 0.0)  # 133 usable pixels: an odd count
    cut[14] = np.round(cut[14] / NOISE) * NOISE  # quantised values: many ties
    cut[15, ..., 0] = 1.0  # constant band: every difference and deviation is zero
    cut[16, :, :, :] = 0.0  # no noise pairs at all but some corner data
    cut[16, :w, :w, :] = 1.5
    rows = _noise_rows(size, BORDER_PIXELS, ROW_STRIDE)
    cut[17, rows, 2:, :] = 0.0  # too few good pairs for a noise estimate (< MIN_NOISE_PAIRS)
    cut[17, rows[0], : MIN_NOISE_PAIRS // 2 + 1, :] = 1.0
    cut[18, :w, :w, :] = np.float32(-3e38)  # the lowest corner, an even usable count whose middle sum overflows
    set_corner_start(cut[18, :w, :w], 4, 0.0)
    cut[19, ::7, ::5, :] = 0.0  # scattered no-data pixels in every statistic
    cut[20, 1::9, ::3, :] = np.nan
    cut[21, 0, :, :] = np.inf  # a whole noise row infinite
    cut[22] = np.abs(cut[22])  # all positive
    cut[23, :, :, :] = -np.abs(cut[23])  # all negative, with -0 where zero
    cut[23, 4, 20:30, :] = -0.0
    return cut


@pytest.mark.parametrize("size,n_bands", [(128, 3), (64, 1), (64, 3), (25, 2)])
def test_kernel_equals_the_numpy_reference_on_awkward_cutouts(size, n_bands):
    got = assert_kernel_equals_reference(awkward(size, n_bands, seed=size + n_bands), context(size, n_bands))
    # the cases exercise every branch: NaN noise and level, and finite ones
    assert np.isnan(got["bg_sigma_b0"][[4, 5, 17]]).all() and np.isfinite(got["bg_sigma_b0"][[0, 1, 8, 9]]).all()
    assert np.isnan(got["bg_level_b0"][[4, 5]]).all() and np.isfinite(got["bg_level_b0"][[11, 12, 13, 16]]).all()
    assert got["bg_level_b0"][18] == -np.inf  # as numpy: the float32 sum of the middle values overflows
    assert got["finite_fraction"][0] == 1.0 and got["finite_fraction"][5] == 0.0 and 0 < got["finite_fraction"][2] < 1


@pytest.mark.parametrize("seed", range(6))
def test_kernel_equals_the_numpy_reference_on_random_masks(seed):
    """Random no-data (0), NaN and inf pixels at densities from none to most, over the border and elsewhere."""
    rng = np.random.default_rng(seed)
    size, n_bands = (128, 3) if seed % 2 == 0 else (48, 1)
    cut = noise(40, size, n_bands, seed) + np.float32(rng.normal(0, 2 * NOISE))
    for i in range(len(cut)):
        for value in (0.0, np.nan, np.inf, -np.inf):
            density = rng.choice([0.0, 0.001, 0.01, 0.1, 0.5, 0.95])
            cut[i][rng.random(cut[i].shape) < density] = value
    assert_kernel_equals_reference(cut, context(size, n_bands))


def test_clean_batch_and_empty_batch():
    ctx = context(128, 3)
    assert_kernel_equals_reference(noise(16, 128, 3, 1), ctx)
    empty = noise(0, 128, 3, 1)
    assert kernel_usable(empty, ctx) and all(len(v) == 0 for v in cutout_statistics(empty, ctx).values())
    assert_kernel_equals_reference(empty, ctx)
    reference = _cutout_statistics_numpy(empty.astype(np.float64), ctx)  # an empty batch the kernel does not take
    assert set(reference) == set(cutout_statistics(empty, ctx)) and all(len(v) == 0 for v in reference.values())


def test_other_inputs_use_the_numpy_reference():
    ctx = context(64, 3)
    cut = noise(3, 64, 3, 2)
    for other in (cut.astype(np.float64), cut.astype(">f4"), cut[:, ::-1], cut[..., :2], noise(3, 20, 3, 2)):
        assert not kernel_usable(other, context(other.shape[1], other.shape[3]) if other.shape[3] == 3 else ctx)
    np.testing.assert_equal(cutout_statistics(cut.astype(">f4"), ctx), _cutout_statistics_numpy(cut.astype(">f4"), ctx))
    np.testing.assert_equal(cutout_statistics(cut, ctx), _cutout_statistics_numpy(cut.astype(">f4"), ctx) | {
        "dtype": np.full(3, "float32")})
