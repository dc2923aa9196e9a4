"""Source colours: a star-forming SED through the ACS throughputs with Madau (1995) IGM absorption."""

import numpy as np
import pytest

from lenssearch.simulate.colours import ColourModel, madau1995_transmission


@pytest.fixture(scope="module")
def colours():
    return ColourModel.build(("F435W", "F606W", "F814W"), "CWW_Im_ext")


def test_reference_band_has_zero_colour(colours):
    np.testing.assert_allclose(colours.colour("F814W", [0.5, 2.0, 5.0]), 0.0, atol=1e-12)


@pytest.mark.parametrize("z", [4.0, 4.5, 5.5, 6.5])
def test_high_redshift_sources_drop_out_of_f435w(colours, z):
    """Flux ratio F435W / F814W (f_nu) below 5% at z >= 4 (Lyman break + forest redward of F435W)."""
    ratio = 10 ** (-0.4 * colours.colour("F435W", z))
    assert ratio < 0.05


@pytest.mark.parametrize("z", [0.8, 1.5, 2.5])
def test_star_forming_sources_are_visible_in_f435w_at_low_redshift(colours, z):
    assert 10 ** (-0.4 * colours.colour("F435W", z)) > 0.2


def test_f606w_drops_at_z_above_5(colours):
    assert 10 ** (-0.4 * colours.colour("F606W", 5.5)) < 0.3 * 10 ** (-0.4 * colours.colour("F606W", 3.0))


def test_madau_transmission():
    wave = np.linspace(3000, 9000, 500)
    z = 4.0
    t = madau1995_transmission(wave, z)
    assert np.all((t >= 0) & (t <= 1))
    np.testing.assert_allclose(t[wave > 1216 * (1 + z)], 1.0)
    assert t[wave < 800 * (1 + z)].max() < 0.05  # deep in the Lyman continuum (tau -> 0 at the limit)
    # Lyman alpha alone between Ly-beta and Ly-alpha: exp(-0.0036 (lambda/1216)^3.46)
    sel = (wave > 1026 * (1 + z)) & (wave < 1216 * (1 + z))
    np.testing.assert_allclose(t[sel], np.exp(-3.6e-3 * (wave[sel] / 1215.67) ** 3.46))


def test_magnitudes_are_normalised_to_f814w(colours):
    mags = colours.magnitudes(26.0, 2.0)
    assert mags["F814W"] == pytest.approx(26.0)
    assert mags["F435W"] == pytest.approx(26.0 + colours.colour("F435W", 2.0))
