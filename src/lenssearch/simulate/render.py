"""Fast rendering of a lensed Sersic source: ray tracing with sub-pixel sampling and per-band PSF convolution.

Surface brightness is conserved by lensing (Schneider, Ehlers & Falco 1992, Sect. 5.1), so the lensed image is
``I(theta) = I_src(theta - (D_ds/D_s) alpha(theta))``. Each pixel is the mean of ``s x s`` sub-pixel samples
times the pixel area, so pixel values are fluxes (e-/s) and a source far from any caustic keeps its total flux.

The Sersic profile (Sersic 1963; Graham & Driver 2005) uses the circularised radius
``R^2 = q x'^2 + y'^2 / q`` (``x'`` along the major axis at ``angle_deg`` counter-clockwise from +x), so that
``R_e`` is the geometric-mean half-light radius and the total flux is

    F = 2 pi n R_e^2 I_e e^{b_n} b_n^{-2n} Gamma(2n),     gamma(2n, b_n) = Gamma(2n) / 2.

This is lenstronomy's ``SERSIC_ELLIPSE`` with ``(e1, e2) = phi_q2_ellipticity(angle, q)`` and ``amp = I_e``.

Speed: the morphology is the same in every band, so the ray-traced Sersic is rendered once per mock by a fused
numba kernel (ray trace, Sersic from a lookup table, sub-pixel mean: no temporaries) and scaled per band; the
PSF convolutions are FFTs with the PSF transforms cached per band. The kernel is serial on purpose: one mock is
~2 ms of work, too little for a thread pool (on a busy 2-core machine a parallel loop was 3x slower); parallelism
belongs to the level of mocks or members.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numba
import numpy as np
import scipy.fft
from scipy import special

from lenssearch.errors import LensSearchError

#: A Sersic profile is evaluated out to the radius where it has dropped by e^-SERSIC_TAIL_EXPONENT (~1e-10).
SERSIC_TAIL_EXPONENT = 23.0


def sersic_b(n: float) -> float:
    """Exact ``b_n`` with ``gamma(2n, b_n) = Gamma(2n) / 2`` (so that ``R_e`` is the half-light radius)."""
    return float(special.gammaincinv(2.0 * n, 0.5))


def sersic_total_flux(amplitude: float, re_arcsec: float, n: float, b_n: float | None = None) -> float:
    """Total flux of a Sersic of surface brightness ``amplitude`` at ``R_e`` (any flux unit per arcsec^2)."""
    b = sersic_b(n) if b_n is None else b_n
    return float(2.0 * np.pi * n * re_arcsec**2 * amplitude * np.exp(b) * b ** (-2.0 * n) * special.gamma(2.0 * n))


@dataclasses.dataclass(frozen=True)
class SersicSource:
    """An elliptical Sersic source in the source plane.

    Parameters
    ----------
    x_arcsec, y_arcsec
        Centre, in the same frame as the image-plane grid of the :class:`Renderer` (arcsec from the cutout
        centre).
    re_arcsec
        Circularised half-light radius.
    sersic_n
        Sersic index.
    axis_ratio
        Minor / major axis ratio in (0, 1].
    angle_deg
        Major-axis angle, degrees counter-clockwise from +x.
    b_n
        Optional ``b_n`` (default: the exact value); lenstronomy uses ``1.9992 n - 0.3271``.
    """

    x_arcsec: float
    y_arcsec: float
    re_arcsec: float
    sersic_n: float
    axis_ratio: float
    angle_deg: float
    b_n: float | None = None

    def __post_init__(self) -> None:
        if not self.re_arcsec > 0:
            raise LensSearchError(f"Sersic source: re_arcsec must be positive, got {self.re_arcsec!r}")
        if not self.sersic_n > 0:
            raise LensSearchError(f"Sersic source: sersic_n must be positive, got {self.sersic_n!r}")
        if not 0 < self.axis_ratio <= 1:
            raise LensSearchError(f"Sersic source: axis_ratio must be in (0, 1], got {self.axis_ratio!r}")

    @property
    def bn(self) -> float:
        return sersic_b(self.sersic_n) if self.b_n is None else float(self.b_n)

    def amplitude_for_flux(self, flux: float) -> float:
        """Surface brightness at ``R_e`` (per arcsec^2) giving total flux ``flux``."""
        return flux / sersic_total_flux(1.0, self.re_arcsec, self.sersic_n, self.bn)

    def kernel_args(self):
        """The arguments of the compiled kernels (centre, rotation, q, 1/R_e^2, lookup table, 1/dv)."""
        phi = math.radians(self.angle_deg)
        table, inv_dv = sersic_table(self)
        return (float(self.x_arcsec), float(self.y_arcsec), math.cos(phi), math.sin(phi), float(self.axis_ratio),
                1.0 / self.re_arcsec**2, table, inv_dv)

    def surface_brightness(self, x, y) -> np.ndarray:
        """Unlensed surface brightness at source-plane positions, in units of ``I_e`` (exact numpy reference)."""
        phi = math.radians(self.angle_deg)
        c, s, q = math.cos(phi), math.sin(phi), self.axis_ratio
        dx, dy = np.asarray(x, float) - self.x_arcsec, np.asarray(y, float) - self.y_arcsec
        xp, yp = dx * c + dy * s, -dx * s + dy * c
        r = np.sqrt(q * xp * xp + yp * yp / q)
        return np.exp(-self.bn * ((r / self.re_arcsec) ** (1.0 / self.sersic_n) - 1.0))


#: Entries of the Sersic lookup table (linear interpolation in v = (R/R_e)^(1/2); relative error ~1e-6).
SERSIC_TABLE_SIZE = 8192


def sersic_table(source: "SersicSource") -> tuple[np.ndarray, float]:
    """Tabulated profile ``I(v) / I_e`` with ``v = (R / R_e)^(1/2)`` on ``[0, v_max]`` and ``1 / dv``.

    In ``v`` the profile ``exp(-b_n (v^(2/n) - 1))`` is smooth at the centre for ``n <= 2`` (no cusp), so a
    linear interpolation is accurate; computing ``v`` costs two square roots instead of a power and a log.
    The last entry is 0 (beyond the tail radius).
    """
    bn = source.bn
    rho_max = (1.0 + SERSIC_TAIL_EXPONENT / bn) ** source.sersic_n
    v_max = math.sqrt(rho_max)
    v = np.linspace(0.0, v_max, SERSIC_TABLE_SIZE)
    table = np.exp(-bn * (v ** (2.0 / source.sersic_n) - 1.0))
    table[-1] = 0.0
    return table, (SERSIC_TABLE_SIZE - 1) / v_max


@numba.njit(inline="always", fastmath=True)
def _lookup(table, inv_dv, r2_scaled):
    """Linear interpolation of the table at ``v = (r2_scaled)^(1/4)`` (``r2_scaled = (R/R_e)^2``)."""
    t = math.sqrt(math.sqrt(r2_scaled)) * inv_dv
    last = table.size - 1
    if t >= last:
        return 0.0
    k = int(t)
    w = t - k
    return table[k] * (1.0 - w) + table[k + 1] * w


@numba.njit(fastmath=True, cache=True)
def _lensed_sersic_mean(xs, ys, alpha_x, alpha_y, dds, cx, cy, cs, sn, q, inv_re2, table, inv_dv, ss, out):
    """Mean over ``ss x ss`` sub-pixels of the ray-traced Sersic (units of ``I_e``), written into ``out``."""
    n_rows, n_cols = out.shape
    inv_q = 1.0 / q
    inv_ss2 = 1.0 / (ss * ss)
    for i in range(n_rows):
        for j in range(n_cols):
            acc = 0.0
            for a in range(ss):
                r = i * ss + a
                y = ys[r]
                for b in range(ss):
                    c = j * ss + b
                    bx = xs[c] - dds * alpha_x[r, c] - cx
                    by = y - dds * alpha_y[r, c] - cy
                    xp = bx * cs + by * sn
                    yp = by * cs - bx * sn
                    acc += _lookup(table, inv_dv, (q * xp * xp + yp * yp * inv_q) * inv_re2)
            out[i, j] = acc * inv_ss2


@numba.njit(fastmath=True, cache=True)
def _sersic_at(bx, by, cx, cy, cs, sn, q, inv_re2, table, inv_dv, out):
    """Sersic surface brightness (units of ``I_e``) at flat arrays of source-plane positions."""
    inv_q = 1.0 / q
    for k in range(bx.size):
        dx = bx[k] - cx
        dy = by[k] - cy
        xp = dx * cs + dy * sn
        yp = dy * cs - dx * sn
        out[k] = _lookup(table, inv_dv, (q * xp * xp + yp * yp * inv_q) * inv_re2)


@numba.njit(fastmath=True, cache=True)
def _masked_sersic_sum(bx, by, mask, cx, cy, cs, sn, q, inv_re2, table, inv_dv):
    """Sum of the Sersic surface brightness (units of ``I_e``) over the masked nodes of 2-D position arrays."""
    inv_q = 1.0 / q
    r2_end = ((table.size - 1) / inv_dv) ** 4
    total = 0.0
    ny, nx = bx.shape
    for i in range(ny):
        for j in range(nx):
            if not mask[i, j]:
                continue
            dx = bx[i, j] - cx
            dy = by[i, j] - cy
            xp = dx * cs + dy * sn
            yp = dy * cs - dx * sn
            r2 = (q * xp * xp + yp * yp * inv_q) * inv_re2
            if r2 < r2_end:
                total += _lookup(table, inv_dv, r2)
    return total


def sersic_sum(source: SersicSource, bx: np.ndarray, by: np.ndarray, mask: np.ndarray) -> float:
    """``sum(I(beta) / I_e)`` over the nodes where ``mask`` is true (2-D arrays of one shape)."""
    return float(_masked_sersic_sum(np.ascontiguousarray(bx, np.float64), np.ascontiguousarray(by, np.float64),
                                    np.ascontiguousarray(mask, np.bool_), *source.kernel_args()))


def sersic_at(source: SersicSource, bx, by) -> np.ndarray:
    """Sersic surface brightness in units of ``I_e`` at source-plane positions (compiled)."""
    bx = np.ascontiguousarray(bx, dtype=np.float64).ravel()
    by = np.ascontiguousarray(by, dtype=np.float64).ravel()
    out = np.empty(bx.size)
    _sersic_at(bx, by, *source.kernel_args(), out)
    return out


class PSFConvolver:
    """``same``-size FFT convolution of ``shape`` images with one PSF, whose transform is cached.

    Equivalent to ``scipy.signal.fftconvolve(image, psf, mode="same")`` (zero padding outside the image).
    """

    def __init__(self, psf: np.ndarray, shape: tuple[int, int]) -> None:
        psf = np.asarray(psf, dtype=np.float64)
        if psf.ndim != 2 or not np.all(np.isfinite(psf)) or psf.sum() <= 0:
            raise LensSearchError("PSF: expected a finite 2-D kernel with a positive sum")
        self.shape = tuple(shape)
        self.kernel_shape = psf.shape
        full = [s + k - 1 for s, k in zip(self.shape, psf.shape)]
        self.fft_shape = [scipy.fft.next_fast_len(f, real=True) for f in full]
        self._psf_ft = scipy.fft.rfft2(psf.astype(np.float32), s=self.fft_shape)
        self._start = [(k - 1) // 2 for k in psf.shape]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        ft = scipy.fft.rfft2(np.asarray(image, dtype=np.float32), s=self.fft_shape)
        full = scipy.fft.irfft2(ft * self._psf_ft, s=self.fft_shape)
        r0, c0 = self._start
        return full[r0 : r0 + self.shape[0], c0 : c0 + self.shape[1]]


class Renderer:
    """Renders lensed Sersic sources on an ``n x n`` cutout with ``supersampling`` sub-pixels per side.

    Parameters
    ----------
    n_pixels
        Cutout side in pixels (128).
    pixel_scale_arcsec
        Pixel size (0.03").
    supersampling
        Sub-pixels per side (4).
    psfs
        One PSF per band (normalised here to unit sum), or ``None`` for no convolution.
    pad_pixels
        Extra pixels rendered around the cutout so that PSF wings of images just outside it are included; the
        returned images are cropped to ``n x n``.

    Notes
    -----
    The image-plane frame: pixel ``(row i, column j)`` of the cutout has its centre at
    ``x = (j - (n-1)/2) * pixel``, ``y = (i - (n-1)/2) * pixel`` arcsec from the cutout centre (x to the West =
    increasing column, y to the North = increasing row, as for a North-up image).
    """

    def __init__(self, n_pixels: int = 128, pixel_scale_arcsec: float = 0.03, supersampling: int = 4,
                 psfs: Sequence[np.ndarray] | None = None, pad_pixels: int = 0) -> None:
        if n_pixels < 1 or supersampling < 1 or pad_pixels < 0:
            raise LensSearchError(
                f"renderer: need n_pixels >= 1, supersampling >= 1, pad_pixels >= 0; got {n_pixels}, "
                f"{supersampling}, {pad_pixels}"
            )
        self.n_pixels = int(n_pixels)
        self.pixel_scale_arcsec = float(pixel_scale_arcsec)
        self.supersampling = int(supersampling)
        self.pad_pixels = int(pad_pixels)
        self.n_padded = self.n_pixels + 2 * self.pad_pixels
        ss = self.supersampling
        idx = np.arange(self.n_padded * ss)
        # sub-pixel centres, arcsec from the cutout centre
        offsets = ((idx + 0.5) / ss - 0.5 - self.pad_pixels - (self.n_pixels - 1) / 2.0) * self.pixel_scale_arcsec
        self.xs = offsets.astype(np.float64)
        self.ys = offsets.astype(np.float64)
        self.pixel_area = self.pixel_scale_arcsec**2
        self.convolvers = None
        if psfs is not None:
            self.convolvers = [PSFConvolver(np.asarray(p) / np.sum(p), (self.n_padded, self.n_padded)) for p in psfs]

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """The sub-pixel positions ``(x, y)`` (arcsec from the cutout centre), shape ``(n_padded*s,)*2``."""
        return np.meshgrid(self.xs, self.ys)

    def pixel_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre positions of the cutout (without padding), shape ``(n, n)``."""
        c = (np.arange(self.n_pixels) - (self.n_pixels - 1) / 2.0) * self.pixel_scale_arcsec
        return np.meshgrid(c, c)

    def _check_alpha(self, alpha_x, alpha_y):
        shape = (self.n_padded * self.supersampling,) * 2
        if alpha_x.shape != shape or alpha_y.shape != shape:
            raise LensSearchError(f"renderer: deflections must have shape {shape} (the sub-pixel grid), got "
                                  f"{alpha_x.shape} and {alpha_y.shape}")

    def lensed(self, source: SersicSource, alpha_x: np.ndarray, alpha_y: np.ndarray, dds_over_ds: float,
               flux: float = 1.0) -> np.ndarray:
        """Lensed image (padded grid, float64, flux per pixel) of ``source`` with unlensed total ``flux``.

        ``alpha_x, alpha_y`` are the deflections at the sub-pixel positions (:meth:`grid`) at D_ds/D_s = 1.
        """
        self._check_alpha(alpha_x, alpha_y)
        out = np.empty((self.n_padded, self.n_padded))
        _lensed_sersic_mean(self.xs, self.ys, alpha_x, alpha_y, float(dds_over_ds), *source.kernel_args(),
                            self.supersampling, out)
        return out * (source.amplitude_for_flux(flux) * self.pixel_area)

    def crop(self, image: np.ndarray) -> np.ndarray:
        p = self.pad_pixels
        return image[p : p + self.n_pixels, p : p + self.n_pixels] if p else image

    def render(self, source: SersicSource, alpha_x: np.ndarray, alpha_y: np.ndarray, dds_over_ds: float,
               fluxes: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """All bands of one mock: ``(cutout (n, n, n_bands) float32, unconvolved unit-flux image (padded))``.

        The lensed morphology is rendered once for unit flux, then each band is scaled to its flux (e-/s) and
        convolved with its PSF.
        """
        unit = self.lensed(source, alpha_x, alpha_y, dds_over_ds, 1.0)
        out = np.empty((self.n_pixels, self.n_pixels, len(fluxes)), dtype=np.float32)
        for k, flux in enumerate(fluxes):
            if flux == 0.0:
                out[..., k] = 0.0
                continue
            img = self.convolvers[k](unit) if self.convolvers is not None else unit
            out[..., k] = self.crop(img) * flux
        return out, unit


def flux_from_ab(mag, zeropoint_ab) -> np.ndarray:
    """Count rate (e-/s) of a source of AB magnitude ``mag`` for an AB zero point (``PHOTZPT``)."""
    return 10.0 ** (-0.4 * (np.asarray(mag, float) - np.asarray(zeropoint_ab, float)))
