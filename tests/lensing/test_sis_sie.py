"""SIS and SIE: analytic Einstein radii and critical curves, derivatives, and lenstronomy's SIE."""

import numpy as np
import pytest

from lenssearch.errors import LensSearchError
from lenssearch.lensing.profiles import PROFILES

SIS = PROFILES["sis"]
SIE = PROFILES["sie"]


def _grid(half=3.0, n=601, cx=0.0, cy=0.0):
    c = np.linspace(-half, half, n)
    x, y = np.meshgrid(c + cx, c + cy)
    return x, y


def _critical_contour(profile, kw, half=3.0, n=601):
    """Tangential critical curve: the det A = 0 contour (D_ds/D_s = 1) on a grid, as a polygon."""
    import contourpy

    x, y = _grid(half, n, kw.get("center_x", 0.0), kw.get("center_y", 0.0))
    f_xx, f_xy, f_yy = profile.hessian(x, y, **kw)
    det = (1 - f_xx) * (1 - f_yy) - f_xy**2
    lines = contourpy.contour_generator(x, y, det).lines(0.0)
    line = max(lines, key=len)
    return line[:, 0], line[:, 1]


def _shoelace(px, py):
    return 0.5 * abs(np.dot(px, np.roll(py, 1)) - np.dot(py, np.roll(px, 1)))


def test_sis_einstein_radius_and_critical_curve():
    kw = dict(theta_e_arcsec=1.3, center_x=0.2, center_y=-0.1)
    px, py = _critical_contour(SIS, kw)
    radius = np.hypot(px - 0.2, py + 0.1)
    np.testing.assert_allclose(radius, 1.3, rtol=5e-3)
    # |alpha| = theta_E everywhere; kappa(theta_E) = 1/2
    ax, ay = SIS.deflection(np.array([2.2, -3.0]), np.array([-0.1, 4.0]), **kw)
    np.testing.assert_allclose(np.hypot(ax, ay), 1.3, rtol=1e-12)
    assert SIS.convergence(1.5, -0.1, **kw) == pytest.approx(0.5)


@pytest.mark.parametrize("q, angle", [(0.5, 0.0), (0.7, 35.0), (0.9, -80.0)])
def test_sie_critical_curve_encloses_pi_theta_e_squared(q, angle):
    kw = dict(theta_e_arcsec=1.1, q=q, angle_deg=angle, center_x=0.1, center_y=0.3)
    px, py = _critical_contour(SIE, kw, half=1.1 / np.sqrt(q) * 1.3)
    area = _shoelace(px, py)
    assert area == pytest.approx(np.pi * 1.1**2, rel=5e-3)
    # Kormann et al. 1994: the critical curve is the ellipse q x'^2 + y'^2/q = theta_E^2 (major axis along angle)
    phi = np.deg2rad(angle)
    xp = (px - 0.1) * np.cos(phi) + (py - 0.3) * np.sin(phi)
    yp = (py - 0.3) * np.cos(phi) - (px - 0.1) * np.sin(phi)
    np.testing.assert_allclose(np.sqrt(q * xp**2 + yp**2 / q), 1.1, rtol=5e-3)


def test_sie_matches_lenstronomy():
    from lenstronomy.LensModel.Profiles.sie import SIE as LenstronomySIE
    from lenstronomy.Util.param_util import phi_q2_ellipticity

    rng = np.random.default_rng(3)
    x, y = rng.uniform(-3, 3, (2, 200))
    q, angle = 0.62, 27.0
    e1, e2 = phi_q2_ellipticity(np.deg2rad(angle), q)
    ours = SIE.deflection(x, y, theta_e_arcsec=1.4, q=q, angle_deg=angle, center_x=0.2, center_y=-0.3)
    theirs = LenstronomySIE().derivatives(x, y, theta_E=1.4, e1=e1, e2=e2, center_x=0.2, center_y=-0.3)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)
    # lenstronomy's SIE hessian is itself accurate to ~1e-5 only, so compare with derivatives of its deflection
    f_xx, f_xy, f_yy = SIE.hessian(x, y, theta_e_arcsec=1.4, q=q, angle_deg=angle, center_x=0.2, center_y=-0.3)
    h = 1e-6
    kw = dict(theta_E=1.4, e1=e1, e2=e2, center_x=0.2, center_y=-0.3)
    dxp, dxm = LenstronomySIE().derivatives(x + h, y, **kw), LenstronomySIE().derivatives(x - h, y, **kw)
    dyp, dym = LenstronomySIE().derivatives(x, y + h, **kw), LenstronomySIE().derivatives(x, y - h, **kw)
    np.testing.assert_allclose(f_xx, (dxp[0] - dxm[0]) / (2 * h), atol=1e-6)
    np.testing.assert_allclose(f_xy, (dxp[1] - dxm[1]) / (2 * h), atol=1e-6)
    np.testing.assert_allclose(f_yy, (dyp[1] - dym[1]) / (2 * h), atol=1e-6)


@pytest.mark.parametrize("name, kw", [
    ("sis", dict(theta_e_arcsec=0.9, center_x=0.05)),
    ("sie", dict(theta_e_arcsec=0.9, q=0.55, angle_deg=120.0, center_y=0.1)),
])
def test_hessian_is_derivative_of_deflection(name, kw):
    profile = PROFILES[name]
    rng = np.random.default_rng(7)
    x, y = rng.uniform(-2, 2, (2, 300))
    h = 1e-6
    axp, ayp = profile.deflection(x + h, y, **kw)
    axm, aym = profile.deflection(x - h, y, **kw)
    bxp, byp = profile.deflection(x, y + h, **kw)
    bxm, bym = profile.deflection(x, y - h, **kw)
    f_xx, f_xy, f_yy = profile.hessian(x, y, **kw)
    np.testing.assert_allclose((axp - axm) / (2 * h), f_xx, atol=2e-6, rtol=1e-5)
    np.testing.assert_allclose((ayp - aym) / (2 * h), f_xy, atol=2e-6, rtol=1e-5)
    np.testing.assert_allclose((bxp - bxm) / (2 * h), f_xy, atol=2e-6, rtol=1e-5)  # curl-free
    np.testing.assert_allclose((byp - bym) / (2 * h), f_yy, atol=2e-6, rtol=1e-5)
    np.testing.assert_allclose(profile.convergence(x, y, **kw), 0.5 * (f_xx + f_yy), rtol=1e-10)


def test_sie_tends_to_sis():
    x, y = np.array([0.3, -1.2, 2.0]), np.array([0.9, 0.4, -0.7])
    np.testing.assert_allclose(
        SIE.deflection(x, y, theta_e_arcsec=1.0, q=1.0), SIS.deflection(x, y, theta_e_arcsec=1.0), rtol=1e-12
    )
    np.testing.assert_allclose(
        SIE.deflection(x, y, theta_e_arcsec=1.0, q=0.99999), SIS.deflection(x, y, theta_e_arcsec=1.0), rtol=2e-5
    )


def test_sie_bad_axis_ratio():
    with pytest.raises(LensSearchError, match="axis ratio"):
        SIE.deflection(1.0, 1.0, theta_e_arcsec=1.0, q=1.5)
