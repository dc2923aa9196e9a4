"""Compiled (numba) kernels for the many-component lens models of clusters.

A cluster model such as the CATS model of Abell S1063 has ~260 dPIE components; evaluating them with numpy
allocates one temporary per operation, per component. These kernels loop over points (in parallel) and over
components (inner loop), with the arithmetic of :mod:`lenssearch.lensing.profiles.dpie` (which stays the
reference: tests check that both agree to ~1e-10 arcsec), rearranged for speed:

- every per-component constant (``sqrt(eps)``, ``(1 - eps)/(1 + eps)``, ...) is computed once, in
  :func:`pack_dpie`;
- the two complex logarithms of LensTool's ``ci05(r_core) - ci05(r_cut)`` are merged into one ``atan2`` and one
  ``log``: ``Re(znum conj(zden)) > 0`` everywhere (the branch cut of the logarithm is never crossed), so
  ``arg(w_core) - arg(w_cut) = arg(P_core conj(P_cut))`` with ``P = znum conj(zden)``, and
  ``log|w_core| - log|w_cut| = log(|w_core| / |w_cut|)``.

Components are packed into a float64 array of shape ``(n, len(DPIE_COLUMNS))``, one row per dPIE.
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: Columns of the packed dPIE parameter array (see :func:`pack_dpie`).
DPIE_COLUMNS = (
    "center_x", "center_y", "cos_theta", "sin_theta", "t05", "circular", "rc", "rcut",
    "sqe", "cx1", "inv_cx1", "inv_cxro", "inv_cyro", "k_t05", "two_sqe_rc", "two_sqe_rcut", "zci_im",
)
_CX, _CY, _COS, _SIN, _T05, _CIRC, _RC, _RCUT = range(8)
_SQE, _CX1, _INV_CX1, _INV_CXRO, _INV_CYRO, _K_T05, _A_RC, _A_RCUT, _ZCI = range(8, 17)


@numba.njit(cache=True, fastmath=False, error_model="numpy", inline="always")
def _dpie_one(dx, dy, p):
    """Deflection of one dPIE (packed row ``p``) at offset ``(dx, dy)`` from its centre, sky frame."""
    c = p[_COS]
    s = p[_SIN]
    x = dx * c + dy * s
    y = dy * c - dx * s
    if p[_CIRC] == 0.0:
        rem2 = x * x * p[_INV_CXRO] + y * y * p[_INV_CYRO]
        y_cx1 = y * p[_INV_CX1]
        nre = p[_CX1] * x
        nim_c = 2.0 * p[_SQE] * math.sqrt(p[_RC] * p[_RC] + rem2) - y_cx1
        dim_c = p[_A_RC] - y
        nim_t = 2.0 * p[_SQE] * math.sqrt(p[_RCUT] * p[_RCUT] + rem2) - y_cx1
        dim_t = p[_A_RCUT] - y
        # P = znum conj(zden) for the core and the cut terms; zden.re = x
        pre_c = nre * x + nim_c * dim_c
        pim_c = nim_c * x - nre * dim_c
        pre_t = nre * x + nim_t * dim_t
        pim_t = nim_t * x - nre * dim_t
        qre = pre_c * pre_t + pim_c * pim_t
        qim = pim_c * pre_t - pre_c * pim_t
        # zci log(w) = k arg(w) - i k log|w|, zci = -i k
        ax = p[_K_T05] * math.atan2(qim, qre)
        ratio = ((nre * nre + nim_c * nim_c) * (x * x + dim_t * dim_t)) / (
            (x * x + dim_c * dim_c) * (nre * nre + nim_t * nim_t)
        )
        ay = -0.5 * p[_K_T05] * math.log(ratio)
    else:
        u = x * x + y * y
        rc = p[_RC]
        rcut = p[_RCUT]
        s_c = math.sqrt(u + rc * rc)
        s_t = math.sqrt(u + rcut * rcut)
        a = p[_T05] * (1.0 / (s_c + rc) - 1.0 / (s_t + rcut)) if u > 0.0 else 0.0
        ax = a * x
        ay = a * y
    return ax * c - ay * s, ay * c + ax * s


@numba.njit(cache=True, fastmath=False, error_model="numpy", parallel=True)
def dpie_deflection(x, y, packed):
    """Summed deflection of the packed dPIEs at the points ``x, y`` (1-D float64 arrays)."""
    n = x.shape[0]
    m = packed.shape[0]
    ax = np.zeros(n)
    ay = np.zeros(n)
    for i in numba.prange(n):
        sx = 0.0
        sy = 0.0
        xi = x[i]
        yi = y[i]
        for j in range(m):
            p = packed[j]
            gx, gy = _dpie_one(xi - p[_CX], yi - p[_CY], p)
            sx += gx
            sy += gy
        ax[i] = sx
        ay[i] = sy
    return ax, ay


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def dpie_deflection_serial(x, y, packed):
    """Single-threaded :func:`dpie_deflection`, for a few points (no thread-pool start-up or waiting)."""
    n = x.shape[0]
    m = packed.shape[0]
    ax = np.zeros(n)
    ay = np.zeros(n)
    for i in range(n):
        sx = 0.0
        sy = 0.0
        for j in range(m):
            p = packed[j]
            gx, gy = _dpie_one(x[i] - p[_CX], y[i] - p[_CY], p)
            sx += gx
            sy += gy
        ax[i] = sx
        ay[i] = sy
    return ax, ay


@numba.njit(cache=True, fastmath=False, error_model="numpy", inline="always")
def _dpie_hessian_one(dx, dy, p):
    """Hessian ``(f_xx, f_xy, f_yy)`` of one dPIE at offset ``(dx, dy)``, sky frame."""
    c = p[_COS]
    s = p[_SIN]
    x = dx * c + dy * s
    y = dy * c - dx * s
    t05 = p[_T05]
    rc = p[_RC]
    rcut = p[_RCUT]
    if p[_CIRC] == 0.0:
        sqe = p[_SQE]
        cx1 = p[_CX1]
        rem2 = x * x * p[_INV_CXRO] + y * y * p[_INV_CYRO]
        zci = complex(0.0, p[_ZCI])
        zden_x = complex(1.0, 0.0)
        zden_y = complex(0.0, -1.0)
        y_cx1 = y * p[_INV_CX1]
        # core term
        sa = math.sqrt(rc * rc + rem2)
        znum = complex(cx1 * x, 2.0 * sqe * sa - y_cx1)
        zden = complex(x, p[_A_RC] - y)
        dcx = zci * (complex(cx1, 2.0 * sqe * x * p[_INV_CXRO] / sa) / znum - zden_x / zden)
        dcy = zci * (complex(0.0, 2.0 * sqe * y * p[_INV_CYRO] / sa - p[_INV_CX1]) / znum - zden_y / zden)
        # cut term
        sa = math.sqrt(rcut * rcut + rem2)
        znum = complex(cx1 * x, 2.0 * sqe * sa - y_cx1)
        zden = complex(x, p[_A_RCUT] - y)
        dtx = zci * (complex(cx1, 2.0 * sqe * x * p[_INV_CXRO] / sa) / znum - zden_x / zden)
        dty = zci * (complex(0.0, 2.0 * sqe * y * p[_INV_CYRO] / sa - p[_INV_CX1]) / znum - zden_y / zden)
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


@numba.njit(cache=True, fastmath=False, error_model="numpy", parallel=True)
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
        xi = x[i]
        yi = y[i]
        for j in range(m):
            p = packed[j]
            hxx, hxy, hyy = _dpie_hessian_one(xi - p[_CX], yi - p[_CY], p)
            sxx += hxx
            sxy += hxy
            syy += hyy
        f_xx[i] = sxx
        f_xy[i] = sxy
        f_yy[i] = syy
    return f_xx, f_xy, f_yy


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def dpie_hessian_serial(x, y, packed):
    """Single-threaded :func:`dpie_hessian`, for a few points."""
    n = x.shape[0]
    m = packed.shape[0]
    f_xx = np.zeros(n)
    f_xy = np.zeros(n)
    f_yy = np.zeros(n)
    for i in range(n):
        sxx = 0.0
        sxy = 0.0
        syy = 0.0
        for j in range(m):
            p = packed[j]
            hxx, hxy, hyy = _dpie_hessian_one(x[i] - p[_CX], y[i] - p[_CY], p)
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
        circular = eps <= EPS_CIRCULAR
        if circular:
            sqe = cx1 = inv_cx1 = inv_cxro = inv_cyro = k = 0.0
        else:
            sqe = math.sqrt(eps)
            cx1 = (1.0 - eps) / (1.0 + eps)
            inv_cx1 = 1.0 / cx1
            inv_cxro = 1.0 / (1.0 + eps) ** 2
            inv_cyro = 1.0 / (1.0 - eps) ** 2
            k = 0.5 * (1.0 - eps * eps) / sqe
        rows.append(
            (
                p["center_x"], p["center_y"], math.cos(theta), math.sin(theta), t05, 1.0 if circular else 0.0,
                rc, rcut, sqe, cx1, inv_cx1, inv_cxro, inv_cyro, k * t05, 2.0 * sqe * rc, 2.0 * sqe * rcut, -k,
            )
        )
    return np.array(rows, dtype=float).reshape(-1, len(DPIE_COLUMNS))
