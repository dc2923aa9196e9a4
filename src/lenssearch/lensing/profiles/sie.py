"""Singular isothermal ellipsoid (Kormann, Schneider & Bartelmann 1994; Keeton 2001, eq. 33-34).

Normalisation (the "equivalent Einstein radius" convention, as lenstronomy's ``SIE``): in the frame of the major
axis (``x'`` along the major axis, at ``angle_deg`` counter-clockwise from ``+x``),

    kappa = theta_E / (2 sqrt(q x'^2 + y'^2 / q)),     0 < q <= 1 the axis ratio b/a.

For an isothermal profile ``det A = 1 - 2 kappa``, so the tangential critical curve is the iso-density ellipse
``kappa = 1/2``: semi-axes ``theta_E / sqrt(q)`` and ``theta_E sqrt(q)``, enclosing the area ``pi theta_E^2`` for
every ``q``. With ``b = theta_E sqrt(q)`` and ``psi = sqrt(q^2 x'^2 + y'^2)`` (so ``kappa = b / (2 psi)``), the
deflection is (Kormann et al. 1994, eq. 27; Keeton 2001 with ``s = 0``)

    alpha_x' = b / sqrt(1 - q^2) * arctan (sqrt(1 - q^2) x' / psi)
    alpha_y' = b / sqrt(1 - q^2) * arctanh(sqrt(1 - q^2) y' / psi)

The potential is homogeneous of degree one, so its hessian annihilates the position vector and has trace
``2 kappa``: ``H = 2 kappa t t^T`` with ``t = (-y, x) / r`` (exact in any frame).
"""

from __future__ import annotations

import numpy as np

from lenssearch.errors import LensSearchError
from lenssearch.lensing.profiles.base import MassProfile, as_float_arrays, rotate_from_frame, rotate_to_frame
from lenssearch.lensing.profiles.sis import R_MIN_ARCSEC, SIS

#: Below this ``1 - q`` the SIS expressions are used (the SIE ones lose precision as ``sqrt(1 - q^2) -> 0``).
Q_SPHERICAL = 1e-8


def _check_q(q: float) -> float:
    if not 0.0 < q <= 1.0:
        raise LensSearchError(f"profile 'sie': axis ratio q must be in (0, 1], got {q!r}")
    return float(q)


class SIE(MassProfile):
    """Singular isothermal ellipsoid; ``theta_e_arcsec``, ``q`` (b/a), ``angle_deg``, ``center_x``, ``center_y``."""

    name = "sie"
    param_names = ("theta_e_arcsec", "q", "angle_deg", "center_x", "center_y")
    defaults = {"angle_deg": 0.0, "center_x": 0.0, "center_y": 0.0}

    @classmethod
    def deflection(cls, x, y, theta_e_arcsec, q, angle_deg=0.0, center_x=0.0, center_y=0.0):
        """Deflection in arcsec (Kormann et al. 1994), see the module docstring."""
        q = _check_q(q)
        if 1.0 - q < Q_SPHERICAL:
            return SIS.deflection(x, y, theta_e_arcsec, center_x, center_y)
        x, y = as_float_arrays(x, y)
        phi = np.deg2rad(angle_deg)
        xp, yp = rotate_to_frame(x - center_x, y - center_y, phi)
        b = theta_e_arcsec * np.sqrt(q)
        e = np.sqrt(1.0 - q * q)
        psi = np.maximum(np.sqrt(q * q * xp * xp + yp * yp), R_MIN_ARCSEC)
        ax = b / e * np.arctan(e * xp / psi)
        ay = b / e * np.arctanh(e * yp / psi)
        return rotate_from_frame(ax, ay, phi)

    @classmethod
    def convergence(cls, x, y, theta_e_arcsec, q, angle_deg=0.0, center_x=0.0, center_y=0.0):
        """``kappa = theta_E / (2 sqrt(q x'^2 + y'^2 / q))``."""
        q = _check_q(q)
        x, y = as_float_arrays(x, y)
        xp, yp = rotate_to_frame(x - center_x, y - center_y, np.deg2rad(angle_deg))
        return 0.5 * theta_e_arcsec / np.maximum(np.sqrt(q * xp * xp + yp * yp / q), R_MIN_ARCSEC)

    @classmethod
    def hessian(cls, x, y, theta_e_arcsec, q, angle_deg=0.0, center_x=0.0, center_y=0.0):
        """``H = 2 kappa t t^T``, ``t = (-y, x) / r`` (isothermal: the radial eigenvalue is zero)."""
        x, y = as_float_arrays(x, y)
        kappa = cls.convergence(x, y, theta_e_arcsec, q, angle_deg, center_x, center_y)
        dx, dy = x - center_x, y - center_y
        r2 = np.maximum(dx * dx + dy * dy, R_MIN_ARCSEC**2)
        two_k = 2.0 * kappa / r2
        return two_k * dy * dy, -two_k * dx * dy, two_k * dx * dx
