"""HST/ACS photometry for the synthetic fields: zero points, depths, noise and galaxy colours.

- AB zero points of ACS/WFC (``ZP_AB``, e-/s): F435W 25.66, F606W 26.49, F814W 25.94 (the values of the ACS
  zero-point calculator for the HFF/CLASH epochs, rounded to 0.01 mag).
- A 5-sigma point-source depth ``m5`` is turned into a per-pixel background sigma (e-/s/pixel) through the
  noise-equivalent area of the PSF, ``NEA = 1 / sum(p_i^2)`` (the number of pixels of optimal PSF-fitting
  photometry; King 1983): a point source of flux ``F5 = 10^(-0.4 (m5 - ZP))`` is detected at 5 sigma when
  ``sigma_pix = F5 / (5 sqrt(NEA))``. Typical limits: Hubble Frontier Fields F435W 28.8, F606W 28.8, F814W 28.7
  (Lotz et al. 2017); CLASH F435W 27.3, F606W 27.4, F814W 27.0 (Postman et al. 2012, ~27.0-27.7).
- Galaxy colours come from the Coleman, Wu & Weedman (1980) templates shipped with galsim (``CWW_E_ext`` for the
  red sequence and bulges, ``CWW_Scd_ext`` and ``CWW_Im_ext`` for blue discs), redshifted and integrated through
  the ACS/WFC total throughputs (galsim ``bandpasses/ACS_wfc_<band>.dat``) as AB magnitudes.
"""

from __future__ import annotations

import functools

import numpy as np

from lenssearch.errors import LensSearchError

#: ACS/WFC AB zero points (e-/s), the package's default for the three bands.
ZEROPOINTS_AB: dict[str, float] = {"F435W": 25.66, "F606W": 26.49, "F814W": 25.94}

#: Pivot wavelengths of the ACS/WFC filters in nm (for the modelled PSFs).
PIVOT_WAVELENGTH_NM: dict[str, float] = {"F435W": 432.9, "F606W": 592.1, "F814W": 805.7}

#: SED templates (galsim share dir) by galaxy type.
SED_TEMPLATES: dict[str, str] = {"E": "CWW_E_ext.sed", "Sbc": "CWW_Sbc_ext.sed", "Scd": "CWW_Scd_ext.sed",
                                 "Im": "CWW_Im_ext.sed"}

#: Redshift grid on which template colours are tabulated and interpolated.
COLOUR_Z_GRID = np.round(np.arange(0.0, 4.01, 0.05), 3)


def zeropoint(band: str) -> float:
    """AB zero point of ``band`` (e-/s); LensSearchError for an unknown band."""
    try:
        return ZEROPOINTS_AB[band]
    except KeyError:
        raise LensSearchError(f"unknown band '{band}', expected one of {list(ZEROPOINTS_AB)}") from None


def mag_to_flux(mag, zp: float):
    """Flux in e-/s of an AB magnitude ``mag`` for zero point ``zp``."""
    return 10.0 ** (-0.4 * (np.asarray(mag, dtype=float) - zp))


def flux_to_mag(flux, zp: float):
    """AB magnitude of a flux in e-/s (NaN for non-positive flux)."""
    flux = np.asarray(flux, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, zp - 2.5 * np.log10(np.where(flux > 0, flux, 1.0)), np.nan)


def noise_equivalent_area(psf: np.ndarray) -> float:
    """Noise-equivalent area ``1 / sum(p^2)`` in pixels of a PSF normalised to unit sum."""
    psf = np.asarray(psf, dtype=float)
    psf = psf / psf.sum()
    return float(1.0 / np.sum(psf**2))


def pixel_sigma_from_depth(m5_ab: float, zp: float, psf: np.ndarray) -> float:
    """Per-pixel Gaussian sigma (e-/s) giving a 5-sigma point-source limit ``m5_ab`` (see module docstring)."""
    f5 = float(mag_to_flux(m5_ab, zp))
    return f5 / (5.0 * np.sqrt(noise_equivalent_area(psf)))


def depth_from_pixel_sigma(sigma_pix: float, zp: float, psf: np.ndarray) -> float:
    """Inverse of :func:`pixel_sigma_from_depth`: the 5-sigma point-source AB magnitude."""
    f5 = 5.0 * sigma_pix * np.sqrt(noise_equivalent_area(psf))
    return float(zp - 2.5 * np.log10(f5))


@functools.lru_cache(maxsize=16)
def template_colour_table(template: str, bands: tuple[str, ...]) -> np.ndarray:
    """AB magnitudes minus the last band's, for ``template`` on :data:`COLOUR_Z_GRID` (shape ``(nz, nbands)``)."""
    import galsim

    if template not in SED_TEMPLATES:
        raise LensSearchError(f"unknown SED template '{template}', expected one of {list(SED_TEMPLATES)}")
    sed = galsim.SED(SED_TEMPLATES[template], wave_type="Ang", flux_type="flambda")
    bandpasses = [galsim.Bandpass(f"ACS_wfc_{b}.dat", wave_type="nm").withZeropoint("AB") for b in bands]
    table = np.empty((COLOUR_Z_GRID.size, len(bands)))
    for i, z in enumerate(COLOUR_Z_GRID):
        shifted = sed.atRedshift(float(z))
        mags = [shifted.calculateMagnitude(bp) for bp in bandpasses]
        table[i] = np.asarray(mags) - mags[-1]
    return table


def template_colours(template: str, z, bands: tuple[str, ...]) -> np.ndarray:
    """Colours ``m_band - m_last_band`` of ``template`` at redshift(s) ``z`` (shape ``z.shape + (nbands,)``)."""
    table = template_colour_table(template, tuple(bands))
    z = np.clip(np.asarray(z, dtype=float), COLOUR_Z_GRID[0], COLOUR_Z_GRID[-1])
    return np.stack([np.interp(z, COLOUR_Z_GRID, table[:, j]) for j in range(len(bands))], axis=-1)


def robust_pixel_noise(image: np.ndarray, max_pixels: int = 4_000_000) -> float:
    """Background noise sigma (per pixel) of an image, insensitive to smooth light and to sources.

    ``sigma = mad_std(d) / sqrt(2)`` with ``d`` the differences of horizontally adjacent pixels, sigma-clipped
    (smooth light such as the intracluster light cancels in ``d``; sources are clipped). Large images are
    subsampled by rows.
    """
    from astropy.stats import sigma_clipped_stats

    img = np.asarray(image, dtype=np.float64)
    step = max(1, int(np.ceil(img.size / max_pixels)))
    d = (img[::step, 1:] - img[::step, :-1]).ravel()
    d = d[np.isfinite(d)]
    _, _, std = sigma_clipped_stats(d, sigma=3.0, stdfunc="mad_std", maxiters=10)
    return float(std / np.sqrt(2.0))
