"""Per-cutout checks before scoring: each failure is flagged on its own cutout."""

import numpy as np
import pytest
from search_helpers import NOISE, gaussian

from lenssearch.search.validation import CHECKS, ValidationContext, cutout_noise, failure_labels, validate_batch


def ctx(size=64):
    return ValidationContext(size=size, n_bands=3, noise_sigma=np.asarray(NOISE), noise_ratio_min=0.5, noise_ratio_max=2.0)


def batch(n=6, size=64, seed=0):
    rng = np.random.default_rng(seed)
    out = rng.normal(0.0, 1.0, (n, size, size, 3)) * np.asarray(NOISE)
    out[..., 2] += gaussian((size, size), size / 2, size / 2, 0.5, 4.0)  # a bright galaxy does not bias the noise
    return out.astype(np.float32)


def test_noise_estimate_ignores_smooth_light():
    np.testing.assert_allclose(np.median(cutout_noise(batch(20, 128)), axis=0), NOISE, rtol=0.05)


def test_each_failure_flags_only_its_cutout():
    cut = batch()
    cut[1, 10:20, 10:20, 0] = np.nan  # NaN region
    cut[2, :, :, 1] = 0.0  # a band without data
    cut[3] *= 5.0  # noise five times too high
    cut[4] *= 0.1  # implausibly low noise
    failed = validate_batch(cut, ctx())
    assert list(failed) == list(CHECKS)
    assert failure_labels(failed) == ["", "finite", "coverage", "noise", "noise", ""]


def test_wrong_shape_flags_every_cutout():
    failed = validate_batch(batch(size=32), ctx(64))
    assert failed["shape"].all()
    assert set(failure_labels(failed)) == {"shape"}


def test_edge_padding_does_not_fail_noise():
    cut = batch(2)
    cut[0, :, :40, :] = 0.0  # 62% off the image: zero padding
    assert failure_labels(validate_batch(cut, ctx())) == ["", ""]
    np.testing.assert_allclose(cutout_noise(cut)[0], NOISE, rtol=0.15)


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinite_pixels(bad):
    cut = batch(2)
    cut[0, 5, 5, 2] = bad
    assert failure_labels(validate_batch(cut, ctx())) == ["finite", ""]
