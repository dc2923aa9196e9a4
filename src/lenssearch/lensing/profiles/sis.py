"""Singular isothermal sphere (Schneider, Ehlers & Falco 1992, Sect. 8.1.4).

``kappa = theta_E / (2 r)``, ``alpha = theta_E (x, y) / r``; the Einstein radius ``theta_E`` (arcsec, at
``D_ds / D_s = 1``) is ``4 pi sigma^2 / c^2`` for a velocity dispersion ``sigma`` (LensTool profil 1 with zero
ellipticity uses ``b0 = 4 pi sigma^2 / c^2``).
"""

from __future__ import annotations

import numpy as np

from lenssearch.lensing.profiles.base import MassProfile, as_float_arrays

#: Softening (arcsec) that keeps the centre finite; far below any pixel of interest.
R_MIN_ARCSEC = 1e-12


class SIS(MassProfile):
    """Singular isothermal sphere; parameters ``theta_e_arcsec``, ``center_x``, ``center_y`` (arcsec)."""

    name = "sis"
    param_names = ("theta_e_arcsec", "center_x", "center_y")
    defaults = {"center_x": 0.0, "center_y": 0.0}

    @classmethod
    def deflection(cls, x, y, theta_e_arcsec, center_x=0.0, center_y=0.0):
        """Deflection ``theta_E (x, y) / r`` in arcsec (zero at the centre)."""
        x, y = as_float_arrays(x, y)
        dx, dy = x - center_x, y - center_y
        r = np.maximum(np.hypot(dx, dy), R_MIN_ARCSEC)
        return theta_e_arcsec * dx / r, theta_e_arcsec * dy / r

    @classmethod
    def hessian(cls, x, y, theta_e_arcsec, center_x=0.0, center_y=0.0):
        """``f_xx = theta_E y^2 / r^3``, ``f_xy = -theta_E x y / r^3``, ``f_yy = theta_E x^2 / r^3``."""
        x, y = as_float_arrays(x, y)
        dx, dy = x - center_x, y - center_y
        r = np.maximum(np.hypot(dx, dy), R_MIN_ARCSEC)
        r3 = r**3
        return theta_e_arcsec * dy * dy / r3, -theta_e_arcsec * dx * dy / r3, theta_e_arcsec * dx * dx / r3

    @classmethod
    def convergence(cls, x, y, theta_e_arcsec, center_x=0.0, center_y=0.0):
        """``kappa = theta_E / (2 r)``."""
        x, y = as_float_arrays(x, y)
        r = np.maximum(np.hypot(x - center_x, y - center_y), R_MIN_ARCSEC)
        return 0.5 * theta_e_arcsec / r
