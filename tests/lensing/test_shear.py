"""External shear (LensTool profil 14): lenstronomy's Shear, LensTool's frame, derivatives."""

import numpy as np
import pytest

from lenssearch.lensing.profiles import PROFILES

SHEAR = PROFILES["shear"]


@pytest.mark.parametrize("gamma, angle", [(0.1039, 50.8049), (0.05, -20.0), (0.2, 95.0)])
def test_matches_lenstronomy_shear(gamma, angle):
    from lenstronomy.LensModel.Profiles.shear import Shear, ShearGammaPsi

    rng = np.random.default_rng(2)
    x, y = rng.uniform(-50, 50, (2, 100))
    ours = SHEAR.deflection(x, y, gamma=gamma, angle_deg=angle)
    # lenstronomy: psi = gamma/2 r^2 cos 2(phi - psi_ext), with psi_ext in radians
    theirs = ShearGammaPsi().derivatives(x, y, gamma_ext=gamma, psi_ext=np.deg2rad(angle))
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    g1, g2 = gamma * np.cos(2 * np.deg2rad(angle)), gamma * np.sin(2 * np.deg2rad(angle))
    f_xx, f_xy, _, f_yy = Shear().hessian(x, y, gamma1=g1, gamma2=g2)
    ours_h = SHEAR.hessian(x, y, gamma=gamma, angle_deg=angle)
    for mine, theirs_h in zip(ours_h, (f_xx, f_xy, f_yy)):  # lenstronomy returns constants
        np.testing.assert_allclose(mine, np.full_like(x, theirs_h), atol=1e-14)


def test_lenstool_frame_formula():
    # LensTool e_grad.c case 14: in the frame rotated by angle_pos, alpha' = (gamma x', -gamma y')
    gamma, angle = 0.12, 33.0
    th = np.deg2rad(angle)
    x, y = np.array([3.0, -1.0, 10.0]), np.array([2.0, 4.0, -7.0])
    xp, yp = x * np.cos(th) + y * np.sin(th), y * np.cos(th) - x * np.sin(th)
    gx, gy = gamma * xp, -gamma * yp
    expected = (gx * np.cos(th) - gy * np.sin(th), gy * np.cos(th) + gx * np.sin(th))
    np.testing.assert_allclose(SHEAR.deflection(x, y, gamma=gamma, angle_deg=angle), expected, rtol=1e-13)


def test_derivatives_and_mass_sheet():
    kw = dict(gamma=0.07, angle_deg=-15.0, kappa=0.03, center_x=1.0, center_y=-2.0)
    x, y = np.array([0.0, 5.0, -3.0]), np.array([1.0, -2.0, 8.0])
    h = 1e-4
    axp, ayp = SHEAR.deflection(x + h, y, **kw)
    axm, aym = SHEAR.deflection(x - h, y, **kw)
    bxp, byp = SHEAR.deflection(x, y + h, **kw)
    bxm, bym = SHEAR.deflection(x, y - h, **kw)
    f_xx, f_xy, f_yy = SHEAR.hessian(x, y, **kw)
    np.testing.assert_allclose((axp - axm) / (2 * h), f_xx, atol=1e-10)
    np.testing.assert_allclose((ayp - aym) / (2 * h), f_xy, atol=1e-10)
    np.testing.assert_allclose((bxp - bxm) / (2 * h), f_xy, atol=1e-10)
    np.testing.assert_allclose((byp - bym) / (2 * h), f_yy, atol=1e-10)
    np.testing.assert_allclose(SHEAR.convergence(x, y, **kw), 0.03)
    # a circular source is stretched along angle_deg: the Jacobian's smaller eigenvalue points there
    a = np.array([[1 - f_xx[0], -f_xy[0]], [-f_xy[0], 1 - f_yy[0]]])
    vals, vecs = np.linalg.eigh(a)
    stretch = vecs[:, 0]
    assert abs(abs(np.dot(stretch, [np.cos(np.deg2rad(-15.0)), np.sin(np.deg2rad(-15.0))])) - 1) < 1e-10
