"""Per-cutout checks: inline checks with the KB suite's semantics, and the great-expectations suite itself."""

import numpy as np
import pytest
from .search_helpers import NOISE, PARAMS, gaussian

from lenssearch.config import load_config
from lenssearch.kb import validation
from lenssearch.kb.statistics import ValidationContext, cutout_statistics
from lenssearch.kb.validation import cutout_checks
from lenssearch.search.checks import failure_labels, run_expectations, validate_batch

BANDS = ("F435W", "F606W", "F814W")


@pytest.fixture(scope="module")
def vcfg():
    return load_config(PARAMS).validate


def ctx(vcfg, size=128):
    return ValidationContext(size, BANDS, np.asarray(NOISE), vcfg)


def batch(n=7, size=128, seed=0):
    rng = np.random.default_rng(seed)
    out = rng.normal(0.0, 1.0, (n, size, size, 3)) * np.asarray(NOISE)
    out[..., 2] += gaussian((size, size), size / 2, size / 2, 0.5, 4.0)  # a bright galaxy does not bias the noise
    return out.astype(np.float32)


def test_the_kb_suite_and_the_search_share_one_implementation(vcfg):
    """The KB's DataFrame (read in chunks, or one cutout at a time for users' lists) holds the very numbers the
    search checks a batch with, and the noise measured on the border is the noise put in."""
    cut = batch(12)
    stats = cutout_statistics(cut, ctx(vcfg))
    noise = dict(zip(BANDS, NOISE))
    for cutouts in (cut, list(cut)):
        df = validation.cutout_statistics(cutouts, expected_noise=noise, bands=BANDS)
        for column, values in stats.items():
            np.testing.assert_array_equal(df[column].to_numpy(), values, err_msg=column)
    np.testing.assert_allclose(np.median([stats[f"noise_ratio_{b}"] for b in BANDS], axis=1), 1.0, atol=0.05)
    np.testing.assert_allclose([stats[f"bg_level_sigma_{b}"] for b in BANDS], 0.0, atol=0.5)
    odd = validation.cutout_statistics([cut[0], cut[1, :64]], expected_noise=noise, bands=BANDS)
    assert odd["shape_ok"].tolist() == [True, False] and np.isnan(odd["noise_ratio_F435W"][1])


def test_each_failure_flags_only_its_cutout(vcfg):
    cut = batch()
    cut[1, 10:20, 10:20, 0] = np.nan  # NaN region
    cut[2, :, :, 1] = 0.0  # a band without data
    cut[3] *= 5.0  # noise five times too high
    cut[4] *= 0.3  # implausibly low noise
    cut[5, ..., 0] += (vcfg.background_max_sigma + 2) * NOISE[0]  # an unsubtracted sky in one band
    stats, failed = validate_batch(cut, ctx(vcfg))
    assert list(failed) == list(cutout_checks(vcfg, BANDS))
    assert list(failure_labels(failed)) == ["", "finite", "noise", "noise", "noise", "background", ""]


def test_wrong_shape_and_dtype(vcfg):
    _, failed = validate_batch(batch(2, size=64), ctx(vcfg))
    assert list(failure_labels(failed)) == ["shape", "shape"]
    _, failed = validate_batch(batch(2).astype(np.float64), ctx(vcfg))
    assert list(failure_labels(failed)) == ["shape", "shape"]


def test_edge_padding_is_judged_on_the_data(vcfg):
    cut = batch(2)
    cut[0, :, :40, :] = 0.0  # a third of the cutout off the image (zero padding)
    stats, failed = validate_batch(cut, ctx(vcfg))
    assert list(failure_labels(failed)) == ["", ""]
    np.testing.assert_allclose([stats[f"noise_ratio_{b}"][0] for b in BANDS], 1.0, atol=0.1)


def test_great_expectations_flags_the_same_rows(vcfg):
    cut = batch()
    cut[1, 10:20, 10:20, 0] = np.nan
    cut[3] *= 5.0
    cut[5, ..., 0] += (vcfg.background_max_sigma + 2) * NOISE[0]
    c = ctx(vcfg)
    stats, failed = validate_batch(cut, c)
    inline_ok = ~np.any(np.column_stack(list(failed.values())), axis=1)
    passed, failures = run_expectations(stats, c)
    assert passed.tolist() == inline_ok.tolist() == [True, False, True, False, True, False, True]
    assert {f["column"] for f in failures} >= {"finite_fraction", "noise_ratio_F435W", "bg_level_sigma_F435W"}


def _reference_band_statistics(cutout, b, width=12):
    """One cutout, one band, on its own: the good pairs' 1.4826 MAD / sqrt(2) (the last of an even number left out,
    as ``_median_rows``) and the lowest corner median (of a cutout with an unusable pixel: ``np.median`` of the
    corners with at least ``width`` usable pixels)."""
    from lenssearch.kb import statistics as checks

    size = cutout.shape[0]
    rows = cutout[checks._noise_rows(size, width, checks.ROW_STRIDE), :, b]
    d = (rows[:, 1:] - rows[:, :-1]).ravel()
    good = np.isfinite(d) & (rows[:, 1:] != 0).ravel() & (rows[:, :-1] != 0).ravel()
    d = d[good]
    sigma = checks._robust_sigma_rows(d[None])[0] if d.size >= checks.MIN_NOISE_PAIRS else np.nan
    corners = [cutout[r0 : r0 + width, c0 : c0 + width, b].ravel() for r0 in (0, size - width)
               for c0 in (0, size - width)]
    usable = [np.isfinite(c) & (c != 0) for c in corners]
    if all(u.all() for u in usable):  # a clean cutout: every corner's median of 143 of its 144 pixels
        return min(checks._median_rows(c[None])[0] for c in corners), sigma
    medians = [np.median(c[u]) for c, u in zip(corners, usable) if u.sum() >= width]
    level = min(medians) if medians else np.nan
    return level, sigma


def test_statistics_at_edges_are_those_of_each_cutout_alone(vcfg):
    """Cutouts at an edge (zero padding), with NaN or scattered empty pixels go through the vectorised path for
    rows that are not clean: the same values, bit for bit, as computing each cutout on its own."""
    from lenssearch.kb.statistics import band_statistics

    rng = np.random.default_rng(0)
    cut = batch(48, seed=3)
    for i in range(len(cut)):
        kind = i % 6
        if kind == 1:
            cut[i, :, : rng.integers(1, 127), :] = 0.0  # off the image on the left
        elif kind == 2:
            cut[i, -rng.integers(1, 127):, -rng.integers(1, 127):, :] = 0.0  # a corner off the image
        elif kind == 3:
            cut[i, rng.integers(0, 128, 60), rng.integers(0, 128, 60), rng.integers(0, 3)] = np.nan
        elif kind == 4:
            cut[i, rng.integers(0, 128, 4000), rng.integers(0, 128, 4000), :] = 0.0  # scattered empty pixels
        elif kind == 5:
            cut[i, : rng.integers(100, 128), :, rng.integers(0, 3)] = 0.0  # most of a band empty
    cut[0] = 0.0  # wholly off the image: no statistics
    for b in range(3):
        level, sigma = band_statistics(cut, b, 12)
        expected = np.array([_reference_band_statistics(c, b) for c in cut])
        np.testing.assert_array_equal(level, expected[:, 0])
        np.testing.assert_array_equal(sigma, expected[:, 1])
        assert np.isnan(level[0]) and np.isnan(sigma[0]) and np.isfinite(sigma).sum() > len(cut) // 2
