"""The source population: draws against the analytic distributions (seeded KS tests) and the paper's ranges."""

import numpy as np
import pytest
from scipy import integrate, stats

from lenssearch.errors import LensSearchError
from lenssearch.lensing.cosmology import Cosmology
from lenssearch.simulate.sources import REDSHIFT_FORMS, NumberCounts, RedshiftModel, SourcePopulation


@pytest.fixture(scope="module")
def population(cfg):
    return SourcePopulation.from_config(cfg.simulate.sources)


def test_counts_cumulative_is_the_integral_of_the_density(population):
    counts = population.counts
    for m in (22.7, 24.0, 26.3, 28.9):
        numeric, _ = integrate.quad(counts.density, 22.0, m, limit=200, points=[24, 26, 28])
        assert counts.cumulative(m) == pytest.approx(numeric, rel=1e-6)


def test_magnitudes_follow_the_counts(population):
    rng = np.random.default_rng(1)
    mags = population.counts.sample(rng, 4000, 22.0, 29.0)
    assert mags.min() >= 22.0 and mags.max() <= 29.0
    ks = stats.kstest(mags, lambda m: population.counts.cdf(m, 22.0, 29.0))
    assert ks.pvalue > 0.01
    # and a wrong law is rejected: flat counts
    assert stats.kstest(mags, stats.uniform(22, 7).cdf).pvalue < 1e-6


def test_counts_reject_bad_nodes():
    with pytest.raises(LensSearchError, match="increasing"):
        NumberCounts((22.0, 21.0), (4.0, 5.0))


@pytest.mark.parametrize("bin_index", [0, 1, 3, 5])
def test_redshifts_follow_p_z_given_m(population, bin_index):
    model = population.redshifts
    edges = model.mag_edges
    mags = np.full(3000, 0.5 * (edges[bin_index] + edges[bin_index + 1]))
    z_min = 0.75
    z = model.sample(np.random.default_rng(10 + bin_index), mags, z_min)
    assert z.min() >= z_min and z.max() <= model.z_max
    ks = stats.kstest(z, lambda v: model.cdf(v, bin_index, z_min))
    assert ks.pvalue > 0.01


def test_redshift_pdf_forms_are_the_papers(population):
    """A z^2 exp(-z/z0) and A z^2 exp(-(z/z0)^(1/2)), normalised."""
    z = np.linspace(0.05, 6.0, 50)
    z0 = 0.3
    expo = REDSHIFT_FORMS["exponential"].pdf(z, z0)
    np.testing.assert_allclose(expo / (z**2 * np.exp(-z / z0)), expo[0] / (z[0] ** 2 * np.exp(-z[0] / z0)))
    z0 = 0.05
    stretched = REDSHIFT_FORMS["stretched"].pdf(z, z0)
    shape = z**2 * np.exp(-np.sqrt(z / z0))
    np.testing.assert_allclose(stretched / shape, stretched[0] / shape[0], rtol=1e-10)
    for form in REDSHIFT_FORMS.values():
        total, _ = integrate.quad(lambda v: form.pdf(v, 0.05), 0, np.inf, limit=400)
        assert total == pytest.approx(1.0, rel=1e-6)


def test_median_redshift_rises_with_magnitude(population):
    medians = [population.redshifts.median(k) for k in range(len(population.redshifts.z0))]
    assert np.all(np.diff(medians) > 0)
    assert 0.6 < medians[0] < 1.1 and 1.8 < medians[-1] < 2.8


def test_population_ranges_and_minimum_redshift(population, cfg):
    cosmo = Cosmology(cfg.base.cosmology.H0, cfg.base.cosmology.Om0)
    z_cl = 0.45
    t = population.sample(np.random.default_rng(5), z_cl, cosmo.kpc_per_arcsec_array, size=2000)
    src = cfg.simulate.sources
    assert np.all(t["z_s"] >= z_cl + src.dz_min) and np.all(t["z_s"] <= src.z_max)
    assert np.all((t["mag_F814W"] >= src.mag_min) & (t["mag_F814W"] <= src.mag_limit))
    lo, hi = population.sizes.bounds_kpc(t["z_s"])
    assert np.all(t["re_kpc"] >= lo - 1e-12) and np.all(t["re_kpc"] <= hi + 1e-12)
    # both sides of the asymmetric band are reached
    offset = (t["re_kpc"] - population.sizes.mean_kpc(t["z_s"])) / src.re_scatter_kpc
    assert offset.min() < -1.3 and offset.max() > 0.9
    assert np.all((t["sersic_n"] > 1) & (t["sersic_n"] < 2))
    assert np.all((t["axis_ratio"] > 0.2) & (t["axis_ratio"] < 1))
    assert np.all((t["position_angle_deg"] >= 0) & (t["position_angle_deg"] < 180))
    scale = np.array([cosmo.kpc_per_arcsec(z) for z in t["z_s"]])
    np.testing.assert_allclose(t["re_arcsec"] * scale, t["re_kpc"])


def test_size_relation_is_the_papers(population):
    sizes = population.sizes
    assert sizes.mean_kpc(0.5) == 2.54 and sizes.mean_kpc(1.0) == 2.54
    assert sizes.mean_kpc(3.0) == pytest.approx(6.9 * 4.0**-1.2)


def test_population_draws_are_repeatable(population):
    kpc = Cosmology().kpc_per_arcsec_array
    a = population.sample(np.random.default_rng(7), 0.3, kpc, size=50)
    b = population.sample(np.random.default_rng(7), 0.3, kpc, size=50)
    c = population.sample(np.random.default_rng(8), 0.3, kpc, size=50)
    for col in a.colnames:
        np.testing.assert_array_equal(a[col], b[col])
    assert not np.array_equal(a["z_s"], c["z_s"])


def test_redshift_model_rejects_unknown_form():
    with pytest.raises(LensSearchError, match="unknown form"):
        RedshiftModel((22.0, 24.0), ("gaussian",), (0.3,), 7.0)


def test_lognormal_size_scatter_has_the_requested_dex():
    """``scatter_dex > 0``: log10(R_e / R_e(z)) is a Gaussian of that sigma truncated to the sigma range (its
    truncated-normal standard deviation, checked against scipy), symmetric about the relation."""
    from scipy import stats

    from lenssearch.simulate.sources import SizeRelation

    sizes = SizeRelation(2.54, 1.0, 6.9, -1.2, 0.25, (-2.0, 2.0), scatter_dex=0.25)
    z = np.full(20000, 2.0)
    re = sizes.sample_kpc(np.random.default_rng(3), z)
    dex = np.log10(re / sizes.mean_kpc(z))
    expected = stats.truncnorm(-2.0, 2.0, scale=0.25)
    assert np.std(dex) == pytest.approx(expected.std(), rel=0.03)
    assert abs(np.median(dex)) < 0.01
    lo, hi = sizes.bounds_kpc(2.0)
    assert np.all((re >= lo - 1e-12) & (re <= hi + 1e-12))
    assert lo == pytest.approx(sizes.mean_kpc(2.0) * 10 ** -0.5) and hi == pytest.approx(sizes.mean_kpc(2.0) * 10**0.5)


def test_a_young_fraction_range_adds_a_column_drawn_last(population):
    """``young_fraction`` (0, 0), the default, draws nothing (the mocks of earlier runs are unchanged); a range draws
    one value per source after every other draw, so the other columns stay the same."""
    import dataclasses

    kpc = Cosmology().kpc_per_arcsec_array
    assert population.young_fraction_range == (0.0, 0.0)
    plain = population.sample(np.random.default_rng(7), 0.3, kpc, size=200)
    assert "young_fraction" not in plain.colnames
    young = dataclasses.replace(population, young_fraction_range=(0.2, 0.9)).sample(
        np.random.default_rng(7), 0.3, kpc, size=200)
    for col in plain.colnames:
        np.testing.assert_array_equal(plain[col], young[col])
    y = np.asarray(young["young_fraction"])
    assert 0.2 <= y.min() and y.max() <= 0.9 and y.std() > 0.1
