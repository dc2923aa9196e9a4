"""External shear, LensTool ``profil 14``.

LensTool (``e_grad.c``, case 14) evaluates, in the frame rotated by ``theta = angle_pos`` (degrees,
counter-clockwise from ``+x``) and centred on ``(x_centre, y_centre)``,

    alpha_x' = gamma x',   alpha_y' = -gamma y',

i.e. the potential ``psi = gamma/2 (x'^2 - y'^2) = gamma/2 r^2 cos 2(phi - theta)``: the shear components are
``gamma_1 = gamma cos 2 theta``, ``gamma_2 = gamma sin 2 theta`` (Schneider 2006, eq. 2.30 conventions). The image
of a circular source is stretched along ``theta`` (the Jacobian has its smaller eigenvalue,
``1 - kappa - gamma``, along that direction). The ``kappa`` of the LensTool block is
a uniform mass sheet added here (``alpha = kappa (x, y)``); LensTool models use ``kappa 0``.
"""

from __future__ import annotations

import numpy as np

from lenssearch.lensing.profiles.base import MassProfile, as_float_arrays


class Shear(MassProfile):
    """External shear ``gamma`` at ``angle_deg`` plus an optional mass sheet ``kappa`` (LensTool profil 14)."""

    name = "shear"
    lenstool_profil = 14
    param_names = ("gamma", "angle_deg", "kappa", "center_x", "center_y")
    defaults = {"angle_deg": 0.0, "kappa": 0.0, "center_x": 0.0, "center_y": 0.0}

    @classmethod
    def _gammas(cls, gamma, angle_deg):
        phi = 2.0 * np.deg2rad(angle_deg)
        return gamma * np.cos(phi), gamma * np.sin(phi)

    @classmethod
    def deflection(cls, x, y, gamma, angle_deg=0.0, kappa=0.0, center_x=0.0, center_y=0.0):
        """``alpha = (kappa + gamma_1) dx + gamma_2 dy``, ``(gamma_2 dx + (kappa - gamma_1) dy)``."""
        x, y = as_float_arrays(x, y)
        g1, g2 = cls._gammas(gamma, angle_deg)
        dx, dy = x - center_x, y - center_y
        return (kappa + g1) * dx + g2 * dy, g2 * dx + (kappa - g1) * dy

    @classmethod
    def hessian(cls, x, y, gamma, angle_deg=0.0, kappa=0.0, center_x=0.0, center_y=0.0):
        """Constant hessian ``(kappa + gamma_1, gamma_2, kappa - gamma_1)``."""
        x, y = as_float_arrays(x, y)
        g1, g2 = cls._gammas(gamma, angle_deg)
        ones = np.ones_like(x)
        return (kappa + g1) * ones, g2 * ones, (kappa - g1) * ones

    @classmethod
    def convergence(cls, x, y, gamma, angle_deg=0.0, kappa=0.0, center_x=0.0, center_y=0.0):
        """The mass sheet ``kappa`` (zero for a pure shear)."""
        x, y = as_float_arrays(x, y)
        return kappa * np.ones_like(x)
