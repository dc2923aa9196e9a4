"""The rejection cuts on the modeling network's sigmas (lenssearch.modeling.cuts), on synthetic populations."""

import numpy as np
import pytest

from lenssearch.errors import InputFileError
from lenssearch.modeling.cuts import cross_checked_loss, parse_cuts, reject, rejection_cuts, sigma_range
from lenssearch.simulate.truth import PARAMETERS

I_TE = PARAMETERS.index("theta_e_arcsec")


def population(n, rng, relative=0.1, scatter=0.2):
    """Lenses whose sigmas are proportional to theta_E (relative error ``relative``) with log-normal scatter."""
    mean = np.zeros((n, len(PARAMETERS)))
    mean[:, I_TE] = rng.uniform(0.3, 2.5, n)
    sigma = relative * mean[:, [I_TE]] * np.exp(scatter * rng.standard_normal((n, len(PARAMETERS))))
    return mean, sigma


def test_degree_zero_is_the_flat_range_of_the_lens_sample():
    rng = np.random.default_rng(1)
    mean, sigma = population(500, rng)
    cuts = rejection_cuts(mean, sigma, ["theta_e_arcsec"], 1.0, 0)
    s = sigma[:, I_TE]
    probe_mean, probe_sigma = population(2000, np.random.default_rng(2))
    rejected, by = reject(probe_mean, probe_sigma, cuts)
    outside = (probe_sigma[:, I_TE] < s.min()) | (probe_sigma[:, I_TE] > s.max())
    # equal up to the float rounding of exp(log(.)) at the two edges
    assert np.array_equal(rejected, outside)
    assert {b for b in by} == {"", "theta_e_arcsec"}
    lo, hi = sigma_range(cuts, "theta_e_arcsec", [0.5, 2.0])
    assert lo == pytest.approx([s.min()] * 2) and hi == pytest.approx([s.max()] * 2)
    assert not reject(mean, sigma, cuts)[0].any()


def test_the_trend_rejects_a_small_lens_like_sigma_that_a_flat_range_passes():
    """Sigma proportional to theta_E: a non-lens predicted at 0.4" with the sigma of a 1.5" lens is out of the
    trend's range and inside the flat one; no lens of the sample is rejected, and the margin widens the range."""
    rng = np.random.default_rng(3)
    mean, sigma = population(1000, rng)
    flat = rejection_cuts(mean, sigma, PARAMETERS, 1.0, 0)
    trend = rejection_cuts(mean, sigma, PARAMETERS, 1.0, 1)
    assert trend["parameters"]["theta_e_arcsec"]["trend"][1] == pytest.approx(1.0, abs=0.05)  # sigma ~ theta_E^1
    odd_mean = np.zeros((1, len(PARAMETERS)))
    odd_mean[0, I_TE] = 0.4
    odd_sigma = np.full((1, len(PARAMETERS)), 0.15)
    assert not reject(odd_mean, odd_sigma, flat)[0][0]
    assert reject(odd_mean, odd_sigma, trend)[0][0]
    assert not reject(mean, sigma, trend)[0].any()
    wide = rejection_cuts(mean, sigma, PARAMETERS, 1e3, 1)
    assert not reject(odd_mean, odd_sigma, wide)[0][0]
    nan_sigma = odd_sigma.copy()
    nan_sigma[0, 0] = np.nan
    assert reject(odd_mean, nan_sigma, wide)[0][0]  # no prediction is no pass


def test_the_cross_checked_loss_is_the_order_statistics_expectation():
    """A new draw from the lens population leaves the [min, max] of m others with probability 2 / (m + 1)."""
    losses = []
    for seed in range(40):
        mean, sigma = population(1000, np.random.default_rng(100 + seed))
        losses.append(cross_checked_loss(mean, sigma, ["theta_e_arcsec"], 1.0, 0, 2, seed))
    expected = 2 / (500 + 1)
    assert np.mean(losses) == pytest.approx(expected, rel=0.35)


def test_parse_cuts_names_what_is_wrong():
    good = rejection_cuts(*population(50, np.random.default_rng(0)), ["lens_e1"], 1.0, 2)
    assert parse_cuts(good, "m.json")["parameters"]["lens_e1"] == good["parameters"]["lens_e1"]
    with pytest.raises(InputFileError, match="m.json.*unknown parameter 'nope'"):
        parse_cuts({**good, "parameters": {"nope": good["parameters"]["lens_e1"]}}, "m.json")
    with pytest.raises(InputFileError, match="low 2.0 > high 1.0"):
        parse_cuts({**good, "parameters": {"lens_e1": {"trend": [0.0], "log_range": [2, 1]}}}, "m.json")
    with pytest.raises(InputFileError, match="theta_e_range_arcsec"):
        parse_cuts({"parameters": {}}, "m.json")
    with pytest.raises(InputFileError, match="positive theta_e_range_arcsec"):
        parse_cuts({**good, "theta_e_range_arcsec": [0.0, 1.0]}, "m.json")
