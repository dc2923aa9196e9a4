"""The LTS_LINEFIT-like robust fit on data with known outliers and known intrinsic scatter."""

import numpy as np
import pytest

from lenssearch.errors import LensSearchError
from lenssearch.evaluate.lts import lts_linefit


def red_sequence(rng, n=400, scatter=0.05, outlier_fraction=0.2, sig=None):
    x = rng.uniform(18.0, 24.0, n)
    noise = scatter if sig is None else np.sqrt(sig**2 + scatter**2)
    y = 0.9 - 0.04 * (x - 21.0) + rng.normal(0.0, 1.0, n) * noise
    out = rng.random(n) < outlier_fraction
    y[out] -= rng.uniform(0.4, 1.2, out.sum())  # blue galaxies, all on one side: a one-sided bias for OLS
    return x, y, out


@pytest.mark.parametrize("seed", [1, 2])
def test_recovers_line_and_flags_outliers(seed):
    rng = np.random.default_rng(seed)
    x, y, out = red_sequence(rng)
    fit = lts_linefit(x, y, rng=np.random.default_rng(0), pivot=21.0)
    assert fit.intercept == pytest.approx(0.9, abs=4 * fit.intercept_err + 0.005)
    assert fit.slope == pytest.approx(-0.04, abs=4 * fit.slope_err + 0.002)
    assert fit.intrinsic_scatter == pytest.approx(0.05, rel=0.15)
    assert np.all(~fit.inliers[out])  # every outlier (>= 0.4 mag = 8 sigma bluer) is clipped
    assert fit.inliers[~out].mean() > 0.97  # ~99% of a Gaussian lies within 2.6 sigma
    ols = np.polyfit(x - 21.0, y, 1)
    assert abs(ols[1] - 0.9) > 0.1  # ordinary least squares is dragged by the outliers


def test_intrinsic_scatter_with_measurement_errors():
    rng = np.random.default_rng(3)
    sig = rng.uniform(0.02, 0.06, 3000)
    x, y, out = red_sequence(rng, n=3000, scatter=0.04, sig=sig)
    fit = lts_linefit(x, y, sig_y=sig, rng=np.random.default_rng(1), pivot=21.0)
    assert fit.intrinsic_scatter == pytest.approx(0.04, abs=0.004)
    assert fit.intercept == pytest.approx(0.9, abs=4 * fit.intercept_err)
    assert fit.slope == pytest.approx(-0.04, abs=4 * fit.slope_err)
    assert np.all(~fit.inliers[out])


def test_without_outliers_equals_least_squares_on_the_inliers():
    rng = np.random.default_rng(4)
    x, y, _ = red_sequence(rng, n=200, outlier_fraction=0.0)
    fit = lts_linefit(x, y, rng=np.random.default_rng(2))
    b, a = np.polyfit(x[fit.inliers] - fit.pivot, y[fit.inliers], 1)
    assert fit.slope == pytest.approx(b, rel=1e-9)
    assert fit.intercept == pytest.approx(a, rel=1e-9)
    assert fit(fit.pivot) == pytest.approx(a)


def test_bad_input():
    with pytest.raises(LensSearchError, match="at least 3"):
        lts_linefit([1.0, 2.0, np.nan], [1.0, 2.0, 3.0], rng=np.random.default_rng(0))
    with pytest.raises(LensSearchError, match="all x values are equal"):
        lts_linefit([1.0] * 5, [1.0, 2.0, 3.0, 4.0, 5.0], rng=np.random.default_rng(0))
