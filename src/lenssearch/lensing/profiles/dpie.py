"""Dual pseudo-isothermal elliptical mass distribution, exactly as LensTool's ``profil 81``.

The dPIE (Elíasdóttir et al. 2007, arXiv:0710.5636, Appendix A; Kassiola & Kovner 1993) is the difference of two
pseudo-isothermal elliptical distributions with core radii ``r_core`` and ``r_cut``:

    kappa = b0/2 * r_cut/(r_cut - r_core) * [1/sqrt(r_core^2 + rho^2) - 1/sqrt(r_cut^2 + rho^2)],
    rho^2 = x'^2/(1 + eps)^2 + y'^2/(1 - eps)^2                      (Elíasdóttir et al. 2007, eq. A7, A17)

in the frame of the major axis (``x'`` at ``angle_deg`` counter-clockwise from ``+x``). LensTool's parameters map
as follows (LensTool source ``e_grad.c`` case 81, ``set_lens.c``/``o_set_lens``; also Lenstool-HPC
``gradient.cpp``):

- ``sigma_kms`` (``v_disp``): ``b0 = 6 pi sigma^2 / c^2`` in arcsec, i.e. ``b0 = 6 * PIA_C2 * sigma_kms**2`` with
  ``PIA_C2 = pi / c^2 = 7.209970e-06`` arcsec / (km/s)^2;
- ``core_radius_arcsec``, ``cut_radius_arcsec`` (``core_radius``, ``cut_radius``; the ``_kpc`` forms are converted
  by :mod:`lenssearch.lensing.lenstool` with the cosmology at ``z_lens``);
- ``emass`` (``ellipticite``) ``= (a^2 - b^2)/(a^2 + b^2)``, converted to LensTool's potential ellipticity
  ``eps = (1 - sqrt(1 - emass^2)) / emass`` (LensTool ``update_epot``);
- ``angle_deg`` (``angle_pos``), ``center_x``, ``center_y`` (``x_centre``, ``y_centre``, arcsec).

Deflection (LensTool ``ci05``, Kassiola & Kovner 1993), for ``eps > 2e-4``:
``alpha_x' + i alpha_y' = t05 * (I(r_core) - I(r_cut))``, ``t05 = b0 r_cut / (r_cut - r_core)``, with

    I(a) = zci * log(znum / zden),  zci = -i (1 - eps^2) / (2 sqrt(eps)),
    znum = cx1 x' + i (2 sqrt(eps) sqrt(a^2 + rho^2) - y'/cx1),   cx1 = (1 - eps)/(1 + eps),
    zden = x' + i (2 a sqrt(eps) - y'),

rotated back to the sky frame. For ``eps <= 2e-4`` LensTool uses the circular dPIE (Elíasdóttir et al. 2007,
eq. A23): ``alpha(R) = t05 [sqrt(r_core^2 + R^2) - r_core - sqrt(r_cut^2 + R^2) + r_cut] / R``, radial; this module
does the same, so that it reproduces LensTool to rounding.

The hessian is analytic: ``d/dx' log(znum/zden) = znum_x/znum - zden_x/zden`` (and likewise for ``y'``), then
``H = R H' R^T``. The convergence is the closed form above (it equals half the trace of the hessian).
"""

from __future__ import annotations

import numpy as np

from lenssearch.errors import LensSearchError
from lenssearch.lensing.profiles.base import (
    MassProfile,
    as_float_arrays,
    rotate_from_frame,
    rotate_hessian_from_frame,
    rotate_to_frame,
)

#: pi / c^2 in arcsec per (km/s)^2: LensTool's ``pia_c2`` (``b0 = 6 pia_c2 sigma^2`` for the dPIE).
PIA_C2 = np.pi / 299792.458**2 * (180.0 / np.pi * 3600.0)

#: LensTool switches to the circular dPIE below this potential ellipticity (``e_grad.c``, case 81).
EPS_CIRCULAR = 2e-4


def b0_from_sigma(sigma_kms):
    """LensTool's dPIE lens strength ``b0 = 6 pi sigma^2 / c^2`` in arcsec."""
    return 6.0 * PIA_C2 * np.asarray(sigma_kms, dtype=float) ** 2


def epot_from_emass(emass):
    """LensTool's potential ellipticity ``eps = (1 - sqrt(1 - emass^2)) / emass`` (0 for ``emass = 0``)."""
    emass = np.asarray(emass, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        eps = np.where(emass > 0, (1.0 - np.sqrt(1.0 - emass**2)) / np.where(emass > 0, emass, 1.0), 0.0)
    return eps if eps.ndim else float(eps)


def check_dpie_params(sigma_kms, core_radius_arcsec, cut_radius_arcsec, emass) -> None:
    """Raise LensSearchError for parameters outside the dPIE's domain."""
    if not sigma_kms >= 0:
        raise LensSearchError(f"profile 'dpie': sigma_kms must be >= 0, got {sigma_kms!r}")
    if not 0 <= core_radius_arcsec < cut_radius_arcsec:
        raise LensSearchError(
            "profile 'dpie': need 0 <= core_radius_arcsec < cut_radius_arcsec, got "
            f"{core_radius_arcsec!r}, {cut_radius_arcsec!r}"
        )
    if not 0 <= emass < 1:
        raise LensSearchError(f"profile 'dpie': emass (ellipticite) must be in [0, 1), got {emass!r}")


# ------------------------------------------------------------------------------------------- kernels (numpy)
def _ci05(x, y, eps, a):
    """LensTool ``ci05``: complex ``I(a)`` of the module docstring (``x, y`` in the lens frame)."""
    sqe = np.sqrt(eps)
    cx1 = (1.0 - eps) / (1.0 + eps)
    rem2 = x * x / (1.0 + eps) ** 2 + y * y / (1.0 - eps) ** 2
    zci = -0.5j * (1.0 - eps * eps) / sqe
    znum = cx1 * x + 1j * (2.0 * sqe * np.sqrt(a * a + rem2) - y / cx1)
    zden = x + 1j * (2.0 * a * sqe - y)
    return zci * np.log(znum / zden)


def _ci05_derivatives(x, y, eps, a):
    """``d I(a) / dx`` and ``d I(a) / dy`` (complex), by the chain rule on ``log(znum / zden)``."""
    sqe = np.sqrt(eps)
    cx1 = (1.0 - eps) / (1.0 + eps)
    cxro = (1.0 + eps) ** 2
    cyro = (1.0 - eps) ** 2
    rem2 = x * x / cxro + y * y / cyro
    s = np.sqrt(a * a + rem2)
    zci = -0.5j * (1.0 - eps * eps) / sqe
    znum = cx1 * x + 1j * (2.0 * sqe * s - y / cx1)
    zden = x + 1j * (2.0 * a * sqe - y)
    znum_x = cx1 + 1j * (2.0 * sqe * x / (cxro * s))
    znum_y = 1j * (2.0 * sqe * y / (cyro * s) - 1.0 / cx1)
    zden_x = 1.0
    zden_y = -1j
    d_x = zci * (znum_x / znum - zden_x / zden)
    d_y = zci * (znum_y / znum - zden_y / zden)
    return d_x, d_y


def _circular_a_and_derivative(u, rc, rcut, t05):
    """Circular dPIE: ``alpha = A(u) (x, y)`` with ``u = R^2``; returns ``A`` and ``dA/du`` (stable at u = 0).

    ``A = t05 [1/(s_c + r_core) - 1/(s_t + r_cut)]``, ``s_c = sqrt(u + r_core^2)``, ``s_t = sqrt(u + r_cut^2)``,
    which is Elíasdóttir et al. (2007) eq. A23 divided by ``R`` without the cancellation at small ``R``.
    """
    s_c = np.sqrt(u + rc * rc)
    s_t = np.sqrt(u + rcut * rcut)
    d_c = s_c + rc
    d_t = s_t + rcut
    a = t05 * (1.0 / d_c - 1.0 / d_t)
    da = t05 * (-0.5 / (s_c * d_c * d_c) + 0.5 / (s_t * d_t * d_t))
    return a, da


class DPIE(MassProfile):
    """LensTool profil 81 (dPIE); see the module docstring for the parameters and equations."""

    name = "dpie"
    lenstool_profil = 81
    param_names = (
        "sigma_kms",
        "core_radius_arcsec",
        "cut_radius_arcsec",
        "emass",
        "angle_deg",
        "center_x",
        "center_y",
    )
    defaults = {"emass": 0.0, "angle_deg": 0.0, "center_x": 0.0, "center_y": 0.0}

    @classmethod
    def _setup(cls, x, y, sigma_kms, core_radius_arcsec, cut_radius_arcsec, emass, angle_deg, center_x, center_y):
        check_dpie_params(sigma_kms, core_radius_arcsec, cut_radius_arcsec, emass)
        x, y = as_float_arrays(x, y)
        theta = np.deg2rad(angle_deg)
        xp, yp = rotate_to_frame(x - center_x, y - center_y, theta)
        b0 = float(b0_from_sigma(sigma_kms))
        t05 = b0 * cut_radius_arcsec / (cut_radius_arcsec - core_radius_arcsec)
        eps = float(epot_from_emass(emass))
        return xp, yp, theta, t05, eps

    @classmethod
    def deflection(
        cls, x, y, sigma_kms, core_radius_arcsec, cut_radius_arcsec, emass=0.0, angle_deg=0.0, center_x=0.0,
        center_y=0.0,
    ):
        """Deflection ``(alpha_x, alpha_y)`` in arcsec at ``D_ds / D_s = 1`` (LensTool ``e_grad``, case 81)."""
        xp, yp, theta, t05, eps = cls._setup(
            x, y, sigma_kms, core_radius_arcsec, cut_radius_arcsec, emass, angle_deg, center_x, center_y
        )
        rc, rcut = core_radius_arcsec, cut_radius_arcsec
        if eps > EPS_CIRCULAR:
            z = t05 * (_ci05(xp, yp, eps, rc) - _ci05(xp, yp, eps, rcut))
            ax, ay = z.real, z.imag
        else:
            u = xp * xp + yp * yp
            with np.errstate(divide="ignore", invalid="ignore"):
                a, _ = _circular_a_and_derivative(u, rc, rcut, t05)
            a = np.where(u > 0, a, 0.0)  # LensTool returns 0 at the very centre (matters only for r_core = 0)
            ax, ay = a * xp, a * yp
        return rotate_from_frame(ax, ay, theta)

    @classmethod
    def hessian(
        cls, x, y, sigma_kms, core_radius_arcsec, cut_radius_arcsec, emass=0.0, angle_deg=0.0, center_x=0.0,
        center_y=0.0,
    ):
        """Second derivatives ``(f_xx, f_xy, f_yy)`` of the potential (analytic), at ``D_ds / D_s = 1``."""
        xp, yp, theta, t05, eps = cls._setup(
            x, y, sigma_kms, core_radius_arcsec, cut_radius_arcsec, emass, angle_deg, center_x, center_y
        )
        rc, rcut = core_radius_arcsec, cut_radius_arcsec
        if eps > EPS_CIRCULAR:
            dcx, dcy = _ci05_derivatives(xp, yp, eps, rc)
            dtx, dty = _ci05_derivatives(xp, yp, eps, rcut)
            d_x = t05 * (dcx - dtx)
            d_y = t05 * (dcy - dty)
            hxx = d_x.real
            hyy = d_y.imag
            hxy = 0.5 * (d_x.imag + d_y.real)
        else:
            u = xp * xp + yp * yp
            a, da = _circular_a_and_derivative(u, rc, rcut, t05)
            hxx = a + 2.0 * xp * xp * da
            hyy = a + 2.0 * yp * yp * da
            hxy = 2.0 * xp * yp * da
        return rotate_hessian_from_frame(hxx, hxy, hyy, theta)

    @classmethod
    def convergence(
        cls, x, y, sigma_kms, core_radius_arcsec, cut_radius_arcsec, emass=0.0, angle_deg=0.0, center_x=0.0,
        center_y=0.0,
    ):
        """Convergence (Elíasdóttir et al. 2007, eq. A17 with LensTool's elliptical radius ``rho``)."""
        xp, yp, _, t05, eps = cls._setup(
            x, y, sigma_kms, core_radius_arcsec, cut_radius_arcsec, emass, angle_deg, center_x, center_y
        )
        rc, rcut = core_radius_arcsec, cut_radius_arcsec
        if eps > EPS_CIRCULAR:
            rho2 = xp * xp / (1.0 + eps) ** 2 + yp * yp / (1.0 - eps) ** 2
            return 0.5 * t05 * (1.0 / np.sqrt(rc * rc + rho2) - 1.0 / np.sqrt(rcut * rcut + rho2))
        u = xp * xp + yp * yp
        a, da = _circular_a_and_derivative(u, rc, rcut, t05)
        return a + u * da
