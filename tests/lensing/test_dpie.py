"""dPIE (LensTool profil 81): lenstronomy's PJaffe, Poisson's equation, analytic hessian, LensTool constants."""

import numpy as np
import pytest

from lenssearch.errors import LensSearchError
from lenssearch.lensing.profiles import PROFILES
from lenssearch.lensing.profiles.dpie import EPS_CIRCULAR, PIA_C2, b0_from_sigma, epot_from_emass

DPIE = PROFILES["dpie"]


def _fd_jacobian(profile, x, y, kw, h=1e-5):
    axp, ayp = profile.deflection(x + h, y, **kw)
    axm, aym = profile.deflection(x - h, y, **kw)
    bxp, byp = profile.deflection(x, y + h, **kw)
    bxm, bym = profile.deflection(x, y - h, **kw)
    return (axp - axm) / (2 * h), (ayp - aym) / (2 * h), (bxp - bxm) / (2 * h), (byp - bym) / (2 * h)


def test_lenstool_constants():
    # LensTool: pia_c2 = pi / c^2 in arcsec per (km/s)^2 = 7.209970e-06; b0 = 6 pia_c2 sigma^2
    assert PIA_C2 == pytest.approx(7.209970e-06, rel=1e-6)
    assert b0_from_sigma(1000.0) == pytest.approx(6 * 7.209970e-06 * 1e6, rel=1e-6)
    # epot = (1 - sqrt(1 - emass^2)) / emass, i.e. (a - b)/(a + b) when emass = (a^2 - b^2)/(a^2 + b^2)
    a, b = 1.0, 0.6
    assert epot_from_emass((a * a - b * b) / (a * a + b * b)) == pytest.approx((a - b) / (a + b), rel=1e-12)
    assert epot_from_emass(0.0) == 0.0


@pytest.mark.parametrize("rc, rcut", [(0.05, 5.0), (0.3, 12.0), (2.0, 150.0)])
def test_circular_dpie_matches_lenstronomy_pjaffe(rc, rcut):
    from lenstronomy.LensModel.Profiles.pseudo_jaffe import PseudoJaffe

    sigma = 180.0
    b0 = b0_from_sigma(sigma)
    # kappa = b0/2 rcut/(rcut - rc) [...]  vs  sigma0 Ra Rs/(Rs - Ra) [...]: sigma0 = b0 / (2 rc), Ra = rc, Rs = rcut
    pj = dict(sigma0=b0 / (2 * rc), Ra=rc, Rs=rcut, center_x=0.4, center_y=-0.2)
    kw = dict(sigma_kms=sigma, core_radius_arcsec=rc, cut_radius_arcsec=rcut, emass=0.0, angle_deg=33.0,
              center_x=0.4, center_y=-0.2)
    rng = np.random.default_rng(11)
    r = rng.uniform(0.01, 5 * rcut, 400)
    phi = rng.uniform(0, 2 * np.pi, 400)
    x, y = 0.4 + r * np.cos(phi), -0.2 + r * np.sin(phi)
    ours = DPIE.deflection(x, y, **kw)
    theirs = PseudoJaffe().derivatives(x, y, **pj)
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-12)
    np.testing.assert_allclose(DPIE.convergence(x, y, **kw), PseudoJaffe().density_2d(
        x, y, rho0=PseudoJaffe().sigma2rho(pj["sigma0"], rc, rcut), Ra=rc, Rs=rcut, center_x=0.4, center_y=-0.2),
        rtol=1e-3)


@pytest.mark.parametrize("emass, angle", [(0.05, 0.0), (0.4, 30.0), (0.85, -70.0)])
def test_elliptical_dpie_poisson_and_analytic_hessian(emass, angle):
    kw = dict(sigma_kms=250.0, core_radius_arcsec=0.2, cut_radius_arcsec=20.0, emass=emass, angle_deg=angle,
              center_x=0.3, center_y=-0.5)
    rng = np.random.default_rng(5)
    x, y = rng.uniform(-6, 6, (2, 500))
    d_axx, d_ayx, d_axy, d_ayy = _fd_jacobian(DPIE, x, y, kw)
    kappa = DPIE.convergence(x, y, **kw)
    # Poisson: div alpha = 2 kappa (Elíasdóttir et al. 2007 eq. A17 with LensTool's elliptical radius)
    np.testing.assert_allclose(d_axx + d_ayy, 2 * kappa, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(d_ayx, d_axy, atol=1e-7)  # curl-free: alpha is a gradient
    f_xx, f_xy, f_yy = DPIE.hessian(x, y, **kw)
    np.testing.assert_allclose(f_xx, d_axx, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(f_xy, d_ayx, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(f_yy, d_ayy, rtol=1e-6, atol=1e-8)


def test_elliptical_dpie_orientation_and_mass_shape():
    # kappa is constant on rho^2 = x'^2/(1+eps)^2 + y'^2/(1-eps)^2: longer along the major axis at angle_pos
    kw = dict(sigma_kms=200.0, core_radius_arcsec=0.1, cut_radius_arcsec=10.0, emass=0.6, angle_deg=40.0)
    u = np.array([np.cos(np.deg2rad(40.0)), np.sin(np.deg2rad(40.0))])
    along = DPIE.convergence(*(1.5 * u), **kw)
    across = DPIE.convergence(*(1.5 * np.array([-u[1], u[0]])), **kw)
    assert along > across
    eps = epot_from_emass(0.6)
    k_major = DPIE.convergence(*((1 + eps) * 1.2 * u), **kw)
    k_minor = DPIE.convergence(*((1 - eps) * 1.2 * np.array([-u[1], u[0]])), **kw)
    assert k_major == pytest.approx(k_minor, rel=1e-12)


def test_switch_to_circular_below_lenstool_threshold_is_continuous():
    base = dict(sigma_kms=150.0, core_radius_arcsec=0.05, cut_radius_arcsec=8.0, angle_deg=10.0)
    emass_at = 2 * EPS_CIRCULAR / (1 + EPS_CIRCULAR**2)
    x, y = np.array([0.3, 2.0, -5.0]), np.array([-0.4, 1.0, 7.0])
    below = DPIE.deflection(x, y, emass=emass_at * 0.999, **base)
    above = DPIE.deflection(x, y, emass=emass_at * 1.001, **base)
    np.testing.assert_allclose(below, above, rtol=1e-3, atol=1e-6)


def test_circular_hessian_and_centre():
    kw = dict(sigma_kms=150.0, core_radius_arcsec=0.05, cut_radius_arcsec=8.0)
    x, y = np.array([1e-9, 0.01, 0.5, 30.0]), np.array([0.0, -0.02, 0.7, -10.0])
    d_axx, d_ayx, _, d_ayy = _fd_jacobian(DPIE, x, y, kw, h=1e-7)
    f_xx, f_xy, f_yy = DPIE.hessian(x, y, **kw)
    np.testing.assert_allclose(f_xx, d_axx, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(f_yy, d_ayy, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(f_xy, d_ayx, rtol=1e-5, atol=1e-7)
    assert np.all(np.isfinite(DPIE.deflection(0.0, 0.0, **{**kw, "core_radius_arcsec": 0.0})))


@pytest.mark.parametrize("bad", [
    dict(core_radius_arcsec=5.0, cut_radius_arcsec=1.0),
    dict(emass=1.2),
    dict(sigma_kms=-3.0),
])
def test_bad_parameters(bad):
    kw = dict(sigma_kms=100.0, core_radius_arcsec=0.1, cut_radius_arcsec=10.0, emass=0.2)
    with pytest.raises(LensSearchError, match="dpie"):
        DPIE.deflection(1.0, 1.0, **{**kw, **bad})
