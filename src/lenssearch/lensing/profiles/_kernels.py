"""Compiled (numba) kernels for the many-component lens models of clusters.

A cluster model such as the CATS model of Abell S1063 has ~260 dPIE components; evaluating them with numpy
allocates one temporary per operation, per component. These kernels loop over points (in parallel) and over
components (inner loop), with the same arithmetic as :mod:`lenssearch.lensing.profiles.dpie`, which stays the
reference: tests check that both agree to ~1e-10 arcsec.

Components are packed into a float64 array of shape ``(n, 9)``, one row per dPIE with the columns of
:data:`DPIE_COLUMNS`.
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: Columns of the packed dPIE parameter array.
DPIE_COLUMNS = ("center_x", "center_y", "cos_theta", "sin_theta", "t05", "eps", "rc", "rcut", "circular")


@numba.njit(cache=True, fastmath=False, inline="always")
def _dpie_one(dx, dy, p):
    """Deflection of one dPIE (packed row ``p``) at offset ``(dx, dy)`` from its centre, sky frame."""
    c = p[2]
    s = p[3]
    x = dx * c + dy * s
    y = dy * c - dx * s
    t05 = p[4]
    eps = p[5]
    rc = p[6]
    rcut = p[7]
    if p[8] == 0.0:
        sqe = math.sqrt(eps)
        cx1 = (1.0 - eps) / (1.0 + eps)
        rem2 = x * x / ((1.0 + eps) * (1.0 + eps)) + y * y / ((1.0 - eps) * (1.0 - eps))
        k = 0.5 * (1.0 - eps * eps) / sqe
        # term with the core radius: w = znum / zden
        nre = cx1 * x
        nim = 2.0 * sqe * math.sqrt(rc * rc + rem2) - y / cx1
        dre = x
        dim = 2.0 * rc * sqe - y
        norm = dre * dre + dim * dim
        wre_c = (nre * dre + nim * dim) / norm
        wim_c = (nim * dre - nre * dim) / norm
        # term with the cut radius
        nim = 2.0 * sqe * math.sqrt(rcut * rcut + rem2) - y / cx1
        dim = 2.0 * rcut * sqe - y
        norm = dre * dre + dim * dim
        wre_t = (nre * dre + nim * dim) / norm
        wim_t = (nim * dre - nre * dim) / norm
        # zci * log(w) = k * arg(w) - i k log|w|  (zci = -i k)
        ax = t05 * k * (math.atan2(wim_c, wre_c) - math.atan2(wim_t, wre_t))
        ay = -t05 * k * 0.5 * math.log((wre_c * wre_c + wim_c * wim_c) / (wre_t * wre_t + wim_t * wim_t))
    else:
        u = x * x + y * y
        s_c = math.sqrt(u + rc * rc)
        s_t = math.sqrt(u + rcut * rcut)
        a = t05 * (1.0 / (s_c + rc) - 1.0 / (s_t + rcut))
        ax = a * x
        ay = a * y
    return ax * c - ay * s, ay * c + ax * s


@numba.njit(cache=True, fastmath=False, parallel=True)
def dpie_deflection(x, y, packed):
    """Summed deflection of the packed dPIEs at the points ``x, y`` (1-D float64 arrays)."""
    n = x.shape[0]
    m = packed.shape[0]
    ax = np.zeros(n)
    ay = np.zeros(n)
    for i in numba.prange(n):
        sx = 0.0
        sy = 0.0
        for j in range(m):
            p = packed[j]
            gx, gy = _dpie_one(x[i] - p[0], y[i] - p[1], p)
            sx += gx
            sy += gy
        ax[i] = sx
        ay[i] = sy
    return ax, ay


@numba.njit(cache=True, fastmath=False, inline="always")
def _dpie_hessian_one(dx, dy, p):
    """Hessian ``(f_xx, f_xy, f_yy)`` of one dPIE at offset ``(dx, dy)``, sky frame."""
    c = p[2]
    s = p[3]
    x = dx * c + dy * s
    y = dy * c - dx * s
    t05 = p[4]
    eps = p[5]
    rc = p[6]
    rcut = p[7]
    if p[8] == 0.0:
        sqe = math.sqrt(eps)
        cx1 = (1.0 - eps) / (1.0 + eps)
        cxro = (1.0 + eps) * (1.0 + eps)
        cyro = (1.0 - eps) * (1.0 - eps)
        rem2 = x * x / cxro + y * y / cyro
        zci = complex(0.0, -0.5 * (1.0 - eps * eps) / sqe)
        zden_x = complex(1.0, 0.0)
        zden_y = complex(0.0, -1.0)
        # core term
        sa = math.sqrt(rc * rc + rem2)
        znum = complex(cx1 * x, 2.0 * sqe * sa - y / cx1)
        zden = complex(x, 2.0 * rc * sqe - y)
        dcx = zci * (complex(cx1, 2.0 * sqe * x / (cxro * sa)) / znum - zden_x / zden)
        dcy = zci * (complex(0.0, 2.0 * sqe * y / (cyro * sa) - 1.0 / cx1) / znum - zden_y / zden)
        # cut term
        sa = math.sqrt(rcut * rcut + rem2)
        znum = complex(cx1 * x, 2.0 * sqe * sa - y / cx1)
        zden = complex(x, 2.0 * rcut * sqe - y)
        dtx = zci * (complex(cx1, 2.0 * sqe * x / (cxro * sa)) / znum - zden_x / zden)
        dty = zci * (complex(0.0, 2.0 * sqe * y / (cyro * sa) - 1.0 / cx1) / znum - zden_y / zden)
        hxx = t05 * (dcx.real - dtx.real)
        hyy = t05 * (dcy.imag - dty.imag)
        hxy = 0.5 * t05 * ((dcx.imag - dtx.imag) + (dcy.real - dty.real))
    else:
        u = x * x + y * y
        s_c = math.sqrt(u + rc * rc)
        s_t = math.sqrt(u + rcut * rcut)
        d_c = s_c + rc
        d_t = s_t + rcut
        a = t05 * (1.0 / d_c - 1.0 / d_t)
        da = t05 * (-0.5 / (s_c * d_c * d_c) + 0.5 / (s_t * d_t * d_t))
        hxx = a + 2.0 * x * x * da
        hyy = a + 2.0 * y * y * da
        hxy = 2.0 * x * y * da
    c2 = c * c
    s2 = s * s
    cs = c * s
    f_xx = c2 * hxx - 2.0 * cs * hxy + s2 * hyy
    f_yy = s2 * hxx + 2.0 * cs * hxy + c2 * hyy
    f_xy = cs * (hxx - hyy) + (c2 - s2) * hxy
    return f_xx, f_xy, f_yy


@numba.njit(cache=True, fastmath=False, parallel=True)
def dpie_hessian(x, y, packed):
    """Summed hessian of the packed dPIEs at the points ``x, y`` (1-D float64 arrays)."""
    n = x.shape[0]
    m = packed.shape[0]
    f_xx = np.zeros(n)
    f_xy = np.zeros(n)
    f_yy = np.zeros(n)
    for i in numba.prange(n):
        sxx = 0.0
        sxy = 0.0
        syy = 0.0
        for j in range(m):
            p = packed[j]
            hxx, hxy, hyy = _dpie_hessian_one(x[i] - p[0], y[i] - p[1], p)
            sxx += hxx
            sxy += hxy
            syy += hyy
        f_xx[i] = sxx
        f_xy[i] = sxy
        f_yy[i] = syy
    return f_xx, f_xy, f_yy


def pack_dpie(params_list) -> np.ndarray:
    """Pack dPIE parameter mappings (keyword names of :class:`~lenssearch.lensing.profiles.dpie.DPIE`)."""
    from lenssearch.lensing.profiles.dpie import EPS_CIRCULAR, b0_from_sigma, check_dpie_params, epot_from_emass

    rows = []
    for p in params_list:
        check_dpie_params(p["sigma_kms"], p["core_radius_arcsec"], p["cut_radius_arcsec"], p["emass"])
        theta = math.radians(p["angle_deg"])
        rc, rcut = p["core_radius_arcsec"], p["cut_radius_arcsec"]
        t05 = float(b0_from_sigma(p["sigma_kms"])) * rcut / (rcut - rc)
        eps = float(epot_from_emass(p["emass"]))
        rows.append(
            (p["center_x"], p["center_y"], math.cos(theta), math.sin(theta), t05, eps, rc, rcut,
             1.0 if eps <= EPS_CIRCULAR else 0.0)
        )
    return np.array(rows, dtype=float).reshape(-1, len(DPIE_COLUMNS))
