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


def test_a_young_burst_makes_sources_bluer_down_to_a_flat_f_nu(colours):
    """``young_fraction`` y: (1 - y) of the F814W light from the template, y from a flat f_nu (AB colours 0 until
    the IGM and the Lyman break redden it); 0 or None is the template alone, bit for bit."""
    from lenssearch.errors import LensSearchError

    for z in (1.0, 2.0):
        flat = colours.magnitudes(25.0, z, 1.0)
        assert flat["F814W"] == pytest.approx(25.0)
        assert flat["F435W"] == pytest.approx(25.0, abs=0.01) and flat["F606W"] == pytest.approx(25.0, abs=0.01)
        template = colours.magnitudes(25.0, z)
        assert colours.magnitudes(25.0, z, 0.0) == template and colours.magnitudes(25.0, z, None) == template
        half = colours.magnitudes(25.0, z, 0.5)
        # half the F814W flux each: the F435W flux is the mean of the two spectra's
        expected = 25.0 - 2.5 * np.log10(0.5 * 10 ** (-0.4 * colours.colour("F435W", z)) + 0.5)
        assert half["F435W"] == pytest.approx(expected, abs=1e-3)  # the flat spectrum: colour 0 to 3e-4 here
        assert flat["F435W"] < half["F435W"] < template["F435W"]
    # at z = 4 Lyman-alpha blanketing reddens even a flat spectrum in F435W; at z = 6 it drops out of F435W
    assert colours.magnitudes(25.0, 4.0, 1.0)["F435W"] - 25.0 > 1.0
    assert colours.magnitudes(25.0, 6.0, 1.0)["F435W"] - 25.0 > 10.0
    # one value per source
    many = colours.magnitudes(np.array([24.0, 25.0]), np.array([2.0, 2.0]), np.array([0.0, 1.0]))
    assert many["F435W"][0] == pytest.approx(colours.magnitudes(24.0, 2.0)["F435W"])
    assert many["F435W"][1] == pytest.approx(25.0, abs=0.01)
    with pytest.raises(LensSearchError, match="young_fraction"):
        colours.magnitudes(25.0, 2.0, 1.5)
