"""Point-spread functions of the three ACS/WFC bands at the image pixel scale.

- F814W: the real empirical ACS/WFC F814W effective PSF shipped in ``lenssearch/data/psf/``
  (``acs_wfc_f814w_empirical_4x.fits``: a cube of 7 x 8 = 56 PSFs of 101 x 101 samples at 0.0125"/sample, i.e.
  4x oversampled 0.05" detector pixels, one per detector region; Anderson & King 2006). The PSF nearest the
  detector centre (the ``central`` index below) is resampled onto the image pixel grid (0.03") with galsim's
  Lanczos interpolation. An effective PSF already contains the detector-pixel response, so it is sampled, not
  convolved again with a pixel.
- F435W and F606W: no empirical PSF ships with the package, so they are modelled as the diffraction pattern of
  HST (Airy, 2.4 m aperture, 0.33 linear obscuration, at the filter's pivot wavelength) convolved with a Gaussian
  (charge diffusion and jitter) and the 0.05" detector pixel; the Gaussian width is solved for so that the FWHM
  equals the configured one (ACS/WFC: about 0.09-0.10" in drizzled 0.03" images; ACS Instrument Handbook, Sect. 5).

Every PSF is returned normalised to unit sum, as an odd-sized square array centred on its middle pixel.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from lenssearch.errors import LensSearchError
from lenssearch.fields.photometry import PIVOT_WAVELENGTH_NM

#: The empirical 4x-oversampled F814W PSF cube and its sample size in arcsec.
EMPIRICAL_F814W = "acs_wfc_f814w_empirical_4x.fits"
EMPIRICAL_SAMPLE_ARCSEC = 0.0125
#: ACS/WFC detector pixel (arcsec) and HST's aperture and central obscuration.
DETECTOR_PIXEL_ARCSEC = 0.05
HST_DIAMETER_M = 2.4
HST_OBSCURATION = 0.33


def _empirical_cube() -> np.ndarray:
    from astropy.io import fits

    path = resources.files("lenssearch") / "data" / "psf" / EMPIRICAL_F814W
    with resources.as_file(path) as p, fits.open(p, memmap=False) as hdul:
        cube = np.asarray(hdul[0].data, dtype=float)
    if cube.ndim != 3:
        raise LensSearchError(f"{EMPIRICAL_F814W}: expected a cube of PSFs, got shape {cube.shape}")
    return cube


def empirical_f814w_psf(pixel_scale_arcsec: float, size_pixels: int, index: int | None = None) -> np.ndarray:
    """The empirical ACS/WFC F814W PSF resampled to ``pixel_scale_arcsec``, unit sum, ``size x size``.

    Parameters
    ----------
    pixel_scale_arcsec
        Target pixel scale (0.03" for the drizzled HST images).
    size_pixels
        Odd output size.
    index
        Which PSF of the cube (default: the one nearest the centre of the 7 x 8 detector grid).
    """
    import galsim

    if size_pixels % 2 == 0:
        raise LensSearchError(f"psf size must be odd, got {size_pixels}")
    cube = _empirical_cube()
    if index is None:
        index = 3 * 7 + 3  # row 4 of 8, column 4 of 7: the detector centre
    stamp = cube[index]
    stamp = np.where(np.isfinite(stamp), stamp, 0.0)
    stamp = stamp / stamp.sum()
    interp = galsim.InterpolatedImage(
        galsim.Image(stamp, scale=EMPIRICAL_SAMPLE_ARCSEC), x_interpolant="lanczos5", normalization="flux",
        calculate_stepk=False, calculate_maxk=False,
    )
    # The image is a sum of samples at 0.0125"; its galsim "flux" is the sum, so drawing with no_pixel at the
    # target scale gives surface brightness x pixel area: renormalise to unit sum afterwards.
    img = interp.drawImage(nx=size_pixels, ny=size_pixels, scale=pixel_scale_arcsec, method="no_pixel")
    psf = np.asarray(img.array, dtype=float)
    psf = np.clip(psf, 0.0, None)
    return psf / psf.sum()


def modelled_psf(band: str, fwhm_arcsec: float, pixel_scale_arcsec: float, size_pixels: int) -> np.ndarray:
    """Airy (HST pupil) x Gaussian x detector pixel, with the Gaussian solved for the target FWHM; unit sum."""
    import galsim
    from scipy.optimize import brentq

    if size_pixels % 2 == 0:
        raise LensSearchError(f"psf size must be odd, got {size_pixels}")
    if band not in PIVOT_WAVELENGTH_NM:
        raise LensSearchError(f"no pivot wavelength for band '{band}', expected one of {list(PIVOT_WAVELENGTH_NM)}")
    lam_over_diam = PIVOT_WAVELENGTH_NM[band] * 1e-9 / HST_DIAMETER_M * 206264.806
    airy = galsim.Airy(lam_over_diam=lam_over_diam, obscuration=HST_OBSCURATION)
    pixel = galsim.Pixel(DETECTOR_PIXEL_ARCSEC)

    def profile(sigma):
        return galsim.Convolve([airy, galsim.Gaussian(sigma=sigma), pixel])

    def fwhm_of(sigma):
        img = profile(sigma).drawImage(nx=size_pixels, ny=size_pixels, scale=pixel_scale_arcsec / 4,
                                       method="no_pixel")
        return img.calculateFWHM() - fwhm_arcsec

    lo, hi = 1e-3, fwhm_arcsec
    if fwhm_of(lo) > 0:
        raise LensSearchError(
            f"psf {band}: FWHM {fwhm_arcsec}\" is below the diffraction + pixel limit of HST in this band"
        )
    sigma = brentq(fwhm_of, lo, hi, xtol=1e-5)
    img = profile(sigma).drawImage(nx=size_pixels, ny=size_pixels, scale=pixel_scale_arcsec, method="no_pixel")
    psf = np.clip(np.asarray(img.array, dtype=float), 0.0, None)
    return psf / psf.sum()


def psf_fwhm_arcsec(psf: np.ndarray, pixel_scale_arcsec: float) -> float:
    """FWHM of a PSF image (arcsec), measured by galsim on the pixelised image."""
    import galsim

    return float(galsim.Image(np.asarray(psf, dtype=float), scale=pixel_scale_arcsec).calculateFWHM())


def band_psfs(bands, pixel_scale_arcsec: float, size_pixels: int, fwhm_arcsec: dict) -> dict[str, np.ndarray]:
    """PSFs of every band: the empirical one for F814W, modelled ones (``fwhm_arcsec[band]``) for the others."""
    out = {}
    for band in bands:
        if band == "F814W":
            out[band] = empirical_f814w_psf(pixel_scale_arcsec, size_pixels)
        else:
            if band not in fwhm_arcsec:
                raise LensSearchError(f"field.synthetic.psf_fwhm_arcsec: no FWHM for modelled band '{band}'")
            out[band] = modelled_psf(band, float(fwhm_arcsec[band]), pixel_scale_arcsec, size_pixels)
    return out
