"""Zero points, depth <-> noise, template colours."""

from __future__ import annotations

import numpy as np
import pytest

from lenssearch.errors import LensSearchError
from lenssearch.fields.photometry import (
    depth_from_pixel_sigma,
    flux_to_mag,
    mag_to_flux,
    noise_equivalent_area,
    pixel_sigma_from_depth,
    robust_pixel_noise,
    template_colours,
    zeropoint,
)

BANDS = ("F435W", "F606W", "F814W")


def test_magnitudes_and_fluxes():
    assert mag_to_flux(25.94, 25.94) == pytest.approx(1.0)
    assert flux_to_mag(mag_to_flux(28.7, 25.94), 25.94) == pytest.approx(28.7)
    assert np.isnan(flux_to_mag(-1.0, 25.0))
    with pytest.raises(LensSearchError, match="F999W"):
        zeropoint("F999W")


def test_noise_equivalent_area_of_a_gaussian():
    # a circular Gaussian of sigma s pixels has NEA = 4 pi s^2
    yy, xx = np.mgrid[-30:31, -30:31]
    psf = np.exp(-(xx**2 + yy**2) / (2 * 3.0**2))
    assert noise_equivalent_area(psf) == pytest.approx(4 * np.pi * 9.0, rel=1e-3)
    sigma = pixel_sigma_from_depth(28.0, 25.94, psf)
    assert depth_from_pixel_sigma(sigma, 25.94, psf) == pytest.approx(28.0)


def test_robust_noise_ignores_smooth_light():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:400, :400]
    image = 0.05 * np.exp(-np.hypot(xx - 200, yy - 200) / 80.0) + rng.normal(0, 0.002, (400, 400))
    assert robust_pixel_noise(image) == pytest.approx(0.002, rel=0.05)


def test_template_colours():
    e = template_colours("E", 0.35, BANDS)
    scd = template_colours("Scd", 0.35, BANDS)
    assert e[-1] == 0.0
    # ellipticals at z ~ 0.35 are red (CLASH red sequences: F435W - F814W ~ 2.5-3.2) and redder than discs
    assert 2.3 < e[0] < 3.4 and 0.7 < e[1] < 1.3
    assert scd[0] < e[0] - 1.0
    # the 4000 A break moves through F606W: F606W - F814W reddens with redshift at z < 0.8
    z = np.array([0.2, 0.4, 0.6])
    assert np.all(np.diff(template_colours("E", z, BANDS)[:, 1]) > 0)
