"""Cleaning rules (HOLISMOKES XVI, Sect. 3.1) on constructed cutouts, and duplicate removal (Sect. 4)."""

import dataclasses

import numpy as np
import pytest

from lenssearch.config import load_config
from lenssearch.search import cleaning

from .search_helpers import PARAMS, BANDS, NOISE, PIXEL_SCALE, gaussian

SIZE = 128


@pytest.fixture(scope="module")
def params():
    return load_config(PARAMS).search.cleaning


def cutout(rng, sources=(), pedestal_sigma=0.0):
    """One 128x128x3 cutout: noise, Gaussian sources (x, y, amplitude in noise sigmas, sigma_pix), a pedestal."""
    out = np.empty((SIZE, SIZE, 3), np.float32)
    for b in range(3):
        img = rng.normal(0.0, NOISE[b], (SIZE, SIZE)) + pedestal_sigma * NOISE[b]
        for x0, y0, amp, sig in sources:
            img += gaussian((SIZE, SIZE), x0, y0, amp * NOISE[b], sig)
        out[..., b] = img
    return out


def measure(cutouts, params):
    m = cleaning.measure_cutouts(np.asarray(cutouts), np.asarray(NOISE), BANDS, PIXEL_SCALE, params)
    m["inside_fraction"] = np.ones(len(cutouts))
    m["star_distance_arcsec"] = np.full(len(cutouts), np.inf)
    return m, cleaning.apply_rules(m, params)


def test_clean_galaxy_passes_every_rule(params):
    rng = np.random.default_rng(0)
    m, flags = measure([cutout(rng, [(64, 64, 200.0, 5.0)])], params)
    assert not any(f[0] for f in flags.values()), {k: v[0] for k, v in flags.items()}
    assert m["background_sigma"][0] < 0.2
    assert 0.01 < m["detected_fraction"][0] < 0.5


def test_crowded_cutout_is_rejected(params):
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, SIZE, (400, 2))
    crowded = cutout(rng, [(x, y, 30.0, 4.0) for x, y in xy])
    m, flags = measure([crowded, cutout(rng, [(64, 64, 200.0, 5.0)])], params)
    assert m["detected_fraction"][0] > params.crowded_max_fraction
    assert flags["crowded"].tolist() == [True, False]


def test_residual_background_is_rejected(params):
    rng = np.random.default_rng(2)
    pedestal = params.background_max_sigma + 1.0
    m, flags = measure([cutout(rng, [(64, 64, 200.0, 5.0)], pedestal_sigma=pedestal), cutout(rng, [(64, 64, 200.0, 5.0)])], params)
    assert m["background_sigma"][0] == pytest.approx(pedestal, abs=0.3)
    assert flags["background"].tolist() == [True, False]


def test_masked_and_edge_and_star_rules(params):
    rng = np.random.default_rng(3)
    masked = cutout(rng, [(64, 64, 200.0, 5.0)])
    masked[:40, :, :] = 0.0  # 31% of the cutout without data
    m, flags = measure([masked, cutout(rng)], params)
    assert m["masked_fraction"][0] == pytest.approx(40 / 128)
    assert flags["masked"].tolist() == [True, False]
    m["inside_fraction"] = np.array([1.0, 0.7])
    m["star_distance_arcsec"] = np.array([params.star_radius_arcsec / 2, 2 * params.star_radius_arcsec])
    flags = cleaning.apply_rules(m, params)
    assert flags["edge"].tolist() == [False, True]
    assert flags["bright_star"].tolist() == [True, False]


def test_kron_radius_of_a_gaussian(params):
    """The Kron radius of a circular Gaussian is sqrt(pi/2) sigma (first moment of the light profile)."""
    rng = np.random.default_rng(4)
    sigmas = (3.0, 6.0)
    m, _ = measure([cutout(rng, [(64, 64, 2000.0, s)]) for s in sigmas], params)
    expected = np.sqrt(np.pi / 2) * np.asarray(sigmas) * PIXEL_SCALE
    np.testing.assert_allclose(m["kron_radius_arcsec"], expected, rtol=0.15)


def test_rules_registry_uses_thresholds(params):
    m = {"background_sigma": np.array([0.4, 0.6]), "detected_fraction": np.array([0.5, 0.995]),
         "masked_fraction": np.zeros(2), "kron_radius_arcsec": np.ones(2), "inside_fraction": np.ones(2),
         "star_distance_arcsec": np.full(2, np.inf)}
    flags = cleaning.apply_rules(m, dataclasses.replace(params, background_max_sigma=0.5, crowded_max_fraction=0.99))
    assert list(flags) == list(cleaning.RULES)
    assert flags["background"].tolist() == [False, True]
    assert flags["crowded"].tolist() == [False, True]


# ------------------------------------------------------------------------------------------------ duplicates
def offsets(ra0, dec0, dx_arcsec, dy_arcsec):
    dec = dec0 + np.asarray(dy_arcsec) / 3600.0
    ra = ra0 + np.asarray(dx_arcsec) / 3600.0 / np.cos(np.radians(dec0))
    return ra, dec


def test_duplicates_keep_largest_kron_radius():
    ra, dec = offsets(150.0, 2.2, [0.0, 1.5, 10.0, 11.0], [0.0, 0.0, 0.0, 0.5])
    keep, dup = cleaning.remove_duplicates(ra, dec, [0.4, 0.9, 0.3, 0.2], 2.0)
    assert keep.tolist() == [False, True, True, False]
    assert dup.tolist() == [1, -1, -1, 2]


def test_duplicates_chain_and_radius():
    # A - B - C, 1.5" apart: B (largest Kron radius) removes both; 2.5" apart nothing is removed.
    ra, dec = offsets(10.0, -30.0, [0.0, 1.5, 3.0], [0.0, 0.0, 0.0])
    keep, dup = cleaning.remove_duplicates(ra, dec, [1.0, 2.0, 1.5], 2.0)
    assert keep.tolist() == [False, True, False] and dup.tolist() == [1, -1, 1]
    ra, dec = offsets(10.0, -30.0, [0.0, 2.5, 5.0], [0.0, 0.0, 0.0])
    keep, _ = cleaning.remove_duplicates(ra, dec, [1.0, 2.0, 1.5], 2.0)
    assert keep.all()


def test_duplicates_tie_broken_by_score_and_nan_positions_kept():
    ra, dec = offsets(200.0, 60.0, [0.0, 1.0], [0.0, 0.0])
    keep, _ = cleaning.remove_duplicates(ra, dec, [1.0, 1.0], 2.0, score=[0.6, 0.9])
    assert keep.tolist() == [False, True]
    keep, _ = cleaning.remove_duplicates([np.nan, np.nan], [np.nan, np.nan], [1.0, 2.0], 2.0)
    assert keep.all()


def test_nearest_neighbour_distance():
    ra, dec = offsets(150.0, 2.2, [0.0, 3.0], [0.0, 4.0])
    d, j = cleaning.nearest_neighbour(ra[:1], dec[:1], ra[1:], dec[1:])
    assert d[0] == pytest.approx(5.0, rel=1e-6) and j[0] == 0
    d, j = cleaning.nearest_neighbour(ra, dec, [], [])
    assert np.isinf(d).all() and (j == -1).all()


# ------------------------------------------------------------------------------------------ the cleaning worker
