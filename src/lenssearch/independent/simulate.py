"""Simulate the independent test set with lenstronomy: lenses and confusers in HST/ACS-like cutouts.

Input: the ``base`` and ``independent`` sections of the configuration. Output: a cutout set
(:mod:`lenssearch.simulate.store`, kind ``independent``): ``cutouts.h5`` (N x 128 x 128 x 3 float32, e-/s, band
order of ``base.bands``) and ``metadata.ecsv`` (``id``, ``label`` 1/0, ``kind``, the arc S/N and the truth).

The recipe differs from the knowledge base's on purpose (a different code and a different population):

- **lenses** (``kind = lens``): lenstronomy's ``SIE`` (axis ratio ``q`` uniform in ``mass_axis_ratio_range``) plus
  ``SHEAR`` (``|gamma|`` uniform, random angle), ``theta_E`` uniform in ``theta_e_range_arcsec``, an isolated
  galaxy rather than a cluster member; lens light ``SERSIC_ELLIPSE`` (n 3-5, R_e 0.3-1.5", F814W 18.5-22, red
  early-type colours); source ``SERSIC_ELLIPSE`` (n 0.5-2, R_e 0.05-0.4", blue colours, F814W 22-27.5) whose centre
  is drawn uniformly in a disc of ``position_max_theta_e * theta_E`` around the lens and redrawn until it has at least
  ``min_images`` images (lenstronomy's ``LensEquationSolver``), i.e. inside a caustic: a strong lens, and at least
  ``min_images_in_cutout`` of them inside the cutout (``|mu| >= 0.1``); a lens whose counter-image falls outside
  the 3.84" cutout shows a single unlensed-looking image, which no cutout classifier can call a lens (in the
  first version of this set, 51% of the "lenses" were such, nearly all those with ``theta_E >= 1.5"``). When no
  source position of a lens qualifies after ``max_draws``, the lens itself is redrawn.
- **non-lenses** (``kind`` = ``elliptical``, ``blue_companion``, ``spiral``, ``edge_on``, ``pair``, ``ring``,
  ``star``; fractions ``confusers.fractions``): the same early-type galaxy as the lenses' (so that the lens light
  alone tells nothing), with unlensed blue neighbours within 2"; bulge + blue exponential disc with logarithmic
  spiral arms (the disc modulated by ``1 + A cos(2 (phi - ln r / tan p))``); edge-on discs; pairs and mergers;
  blue (partial) Gaussian rings ``exp(-(r - r0)^2 / 2 w^2)`` around an early-type galaxy; stars (the PSF).
- **every cutout** also holds ``Poisson(field_galaxies_per_cutout)`` faint unrelated galaxies anywhere in it.

Light is evaluated on a grid ``supersampling`` times finer than the 0.03" pixels, ``pad_pixels`` wider than the
cutout, averaged onto the pixels, convolved with the band PSF and cropped. PSFs: the empirical ACS/WFC F814W PSF
(:func:`lenssearch.fields.psf.empirical_f814w_psf`) of a detector region drawn per cutout (56 regions; FWHM
0.095-0.100"; two corrupt stamps of the cube are left out), Moffat profiles for the other bands. Noise: each cutout draws
a depth between ``depth_shallow`` (CLASH-like) and ``depth_deep`` (HFF-like), the same fraction in every band;
the 5-sigma point-source limit gives the background sigma per pixel through the PSF's noise-equivalent area
(:func:`lenssearch.fields.photometry.pixel_sigma_from_depth`); the sources' Poisson noise uses an exposure time
``exposure_time_s_deep * (sigma_deep / sigma)^2`` (background-limited: sigma scales as 1 / sqrt(t)).

Arc S/N (``lensed_snr_<band>``): the matched-filter S/N of the noiseless, PSF-convolved lensed source alone in the
cutout, ``sqrt(sum((s / sigma)^2))``, as :func:`lenssearch.simulate.inject.lensed_snr`; ``lensed_snr`` is the three
bands in quadrature; 0 for the non-lenses.

Randomness: cutout ``i`` of class ``label`` draws from ``default_rng([base.seed, INDEPENDENT_STREAM, label, i])``,
so the set is the same whatever the order or the number of cutouts simulated before it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

from lenssearch.errors import LensSearchError

#: Stream of the independent test set's generators (simulate 101, negatives 202, kb 4, search demo 606).
INDEPENDENT_STREAM = 1313

#: The kinds of cutout: lenses first, then the confusers.
LENS_KIND = "lens"
NONLENS_KINDS = ("elliptical", "blue_companion", "spiral", "edge_on", "pair", "ring", "star")
KINDS = (LENS_KIND, *NONLENS_KINDS)

#: The bands the recipe's colours are written for (``base.bands`` must be these, in any order).
RECIPE_BANDS = ("F435W", "F606W", "F814W")

#: Colours (F435W - F814W, F606W - F814W) of the kinds whose ranges are not in params: edge-on discs are reddened
#: by their dust lanes; stars span A to late-K types; field galaxies span blue star-forming to red passive ones.
EDGE_ON_COLOURS = ((0.8, 2.0), (0.3, 0.8))
STAR_COLOURS = ((0.3, 3.0), (0.1, 1.2))
FIELD_GALAXY_COLOURS = ((-0.2, 3.0), (-0.1, 1.2))
#: Detector regions of the empirical F814W PSF cube (7 x 8, :mod:`lenssearch.fields.psf`): each cutout draws one of
#: the usable ones (:func:`centred_psf`), as a galaxy falls anywhere on the detector (the KB uses the central one).
F814W_PSF_REGIONS = 56
#: Spiral discs: face-on to inclined; their bulge's R_e is this fraction of the disc's.
SPIRAL_DISC_AXIS_RATIO = (0.4, 1.0)
BULGE_RE_FRACTION = (0.15, 0.35)
BULGE_SERSIC_N = (2.0, 4.0)
RING_AXIS_RATIO = (0.6, 1.0)
FIELD_GALAXY_RE_ARCSEC = (0.05, 0.5)
FIELD_GALAXY_SERSIC_N = (0.5, 4.0)


# ------------------------------------------------------------------------------------------------ the grids
@dataclasses.dataclass(frozen=True)
class Grid:
    """The padded pixel grid of a cutout and its supersampled twin; positions in arcsec from the cutout centre.

    ``x`` grows with the column index, ``y`` with the row index (an image array is indexed ``[y, x]``).
    """

    n: int  # cutout pixels per side
    pad: int
    supersampling: int
    pixel_scale: float

    @property
    def n_padded(self) -> int:
        return self.n + 2 * self.pad

    @property
    def n_super(self) -> int:
        return self.n_padded * self.supersampling

    def super_coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """Flattened x, y of the supersampled grid's sub-pixel centres."""
        step = self.pixel_scale / self.supersampling
        c = (np.arange(self.n_super) - (self.n_super - 1) / 2.0) * step
        x, y = np.meshgrid(c, c)
        return x.ravel(), y.ravel()

    def pixel_coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """x, y (1-D) of the padded grid's pixel centres."""
        c = (np.arange(self.n_padded) - (self.n_padded - 1) / 2.0) * self.pixel_scale
        return c, c

    def bin(self, surface_brightness: np.ndarray) -> np.ndarray:
        """Surface brightness (per arcsec^2) on the supersampled grid -> flux per pixel on the padded grid."""
        s, m = self.supersampling, self.n_padded
        return surface_brightness.reshape(m, s, m, s).mean(axis=(1, 3)) * self.pixel_scale**2

    def crop(self, image: np.ndarray) -> np.ndarray:
        p = self.pad
        return image[p : p + self.n, p : p + self.n]


def moffat_psf(fwhm_arcsec: float, beta: float, pixel_scale: float, size: int, oversample: int = 5) -> np.ndarray:
    """A circular Moffat PSF ``(1 + (r / alpha)^2)^-beta`` integrated over the pixels; unit sum, odd ``size``."""
    if size % 2 == 0:
        raise LensSearchError(f"independent.psf_size_pixels must be odd, got {size}")
    if beta <= 1.0 or fwhm_arcsec <= 0:
        raise LensSearchError(f"independent: a Moffat PSF needs beta > 1 and FWHM > 0, got beta {beta}, "
                              f"FWHM {fwhm_arcsec}")
    alpha = fwhm_arcsec / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
    m = size * oversample
    c = (np.arange(m) - (m - 1) / 2.0) * pixel_scale / oversample
    x, y = np.meshgrid(c, c)
    sub = (1.0 + (x**2 + y**2) / alpha**2) ** (-beta)
    psf = sub.reshape(size, oversample, size, oversample).sum(axis=(1, 3))
    return psf / psf.sum()


def centred_psf(psf: np.ndarray, tolerance_pixels: float = 0.5) -> bool:
    """Whether a PSF peaks in its central pixel with its centroid within ``tolerance_pixels`` of it.

    Two stamps of the shipped empirical F814W cube (regions 27 and 34) peak in a corner: rendered with them, a
    galaxy's F814W light would move by ~9 pixels into an L-shaped artefact, so they are left out.
    """
    c = (psf.shape[0] - 1) / 2.0
    y, x = np.mgrid[: psf.shape[0], : psf.shape[1]]
    peak = np.unravel_index(int(np.argmax(psf)), psf.shape)
    centroid = (float((psf * x).sum() / psf.sum()), float((psf * y).sum() / psf.sum()))
    return peak == (int(c), int(c)) and max(abs(centroid[0] - c), abs(centroid[1] - c)) <= tolerance_pixels


def band_psfs(cfg, f814w_index: int | None = None) -> dict[str, np.ndarray]:
    """The PSF of every band: the empirical ACS/WFC PSF for F814W (of detector region ``f814w_index``, default the
    detector centre's), Moffat profiles for the others."""
    from lenssearch.fields.psf import empirical_f814w_psf

    ind = cfg.independent
    out = {}
    for band in cfg.base.bands:
        if band == "F814W":
            index = None if f814w_index is None else int(f814w_index)
            out[band] = empirical_f814w_psf(cfg.base.pixel_scale_arcsec, ind.psf_size_pixels, index)
        elif band in ind.psf_moffat_fwhm_arcsec:
            out[band] = moffat_psf(ind.psf_moffat_fwhm_arcsec[band], ind.psf_moffat_beta,
                                   cfg.base.pixel_scale_arcsec, ind.psf_size_pixels)
        else:
            raise LensSearchError(f"independent.psf_moffat_fwhm_arcsec: no FWHM for band '{band}'")
    return out


# ------------------------------------------------------------------------------------------------ draws
def _uniform(rng: np.random.Generator, bounds) -> float:
    lo, hi = bounds
    return float(rng.uniform(lo, hi))


def _log_uniform(rng: np.random.Generator, bounds) -> float:
    lo, hi = bounds
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _colours(rng: np.random.Generator, c435, c606) -> dict[str, float]:
    """AB colours relative to F814W."""
    return {"F435W": _uniform(rng, c435), "F606W": _uniform(rng, c606), "F814W": 0.0}


def _ellipticity(phi: float, q: float) -> tuple[float, float]:
    import lenstronomy.Util.param_util as param_util

    e1, e2 = param_util.phi_q2_ellipticity(phi, q)
    return float(e1), float(e2)


@dataclasses.dataclass
class Component:
    """One light component: its image for unit total flux (padded pixel grid) and its AB magnitude per band."""

    image: np.ndarray
    mags: dict[str, float]


@dataclasses.dataclass
class Scene:
    """What one cutout holds before the PSF and the noise."""

    kind: str
    unlensed: list[Component]
    points: list[tuple[float, float, dict[str, float]]]  # x, y (arcsec), AB magnitude per band
    lensed: Component | None = None
    truth: dict = dataclasses.field(default_factory=dict)


class Renderer:
    """Light profiles on one cutout's grid (lenstronomy ``LightModel``) and the SIE + shear lens."""

    def __init__(self, grid: Grid):
        from lenstronomy.LensModel.lens_model import LensModel
        from lenstronomy.LensModel.Solver.lens_equation_solver import LensEquationSolver
        from lenstronomy.LightModel.light_model import LightModel

        self.grid = grid
        self.x, self.y = grid.super_coordinates()
        self.sersic = LightModel(["SERSIC_ELLIPSE"])
        self.lens_model = LensModel(["SIE", "SHEAR"])
        self.solver = LensEquationSolver(self.lens_model)

    def sersic_image(self, kwargs: dict, x=None, y=None) -> np.ndarray:
        """An elliptical Sersic of unit total (analytic) flux on the padded pixel grid, at ``x, y`` (default: the
        grid; ray-traced positions for a lensed source, whose image then sums to its magnification)."""
        kw = {**kwargs, "amp": 1.0}
        total = float(self.sersic.total_flux([kw])[0])
        sb = self.sersic.surface_brightness(self.x if x is None else x, self.y if y is None else y, [kw])
        return self.grid.bin(np.asarray(sb)) / total

    def count_images(self, kwargs_lens: list[dict], source_x: float, source_y: float, theta_e: float,
                     half_size: float | None = None, min_abs_magnification: float = 0.1) -> tuple[int, int]:
        """Images of a point at the source centre (lenstronomy ``LensEquationSolver``): all of them, and those
        inside the square cutout of half-side ``half_size`` (arcsec, centred on the grid) with ``|mu| >=
        min_abs_magnification`` (the images a cutout classifier can see; all images when ``half_size`` is None)."""
        xs, ys = self.solver.image_position_from_source(
            source_x, source_y, kwargs_lens, min_distance=0.05 * theta_e, search_window=5.0 * theta_e,
            precision_limit=1e-8, num_iter_max=20,
        )
        xs, ys = np.asarray(xs, float), np.asarray(ys, float)
        if half_size is None or len(xs) == 0:
            return int(len(xs)), int(len(xs))
        mu = np.abs(np.asarray(self.lens_model.magnification(xs, ys, kwargs_lens), float))
        inside = (np.abs(xs) <= half_size) & (np.abs(ys) <= half_size) & (mu >= min_abs_magnification)
        return int(len(xs)), int(inside.sum())


def _mags(mag_f814w: float, colours: dict[str, float]) -> dict[str, float]:
    return {band: mag_f814w + c for band, c in colours.items()}


def _jitter(rng: np.random.Generator, grid: Grid) -> tuple[float, float]:
    """The central object's offset from the cutout centre: within one pixel (a detection's centroid)."""
    return _uniform(rng, (-0.5, 0.5)) * grid.pixel_scale, _uniform(rng, (-0.5, 0.5)) * grid.pixel_scale


def early_type(rng, r: Renderer, d, x0: float, y0: float, phi: float | None = None,
               mag: float | None = None) -> tuple[Component, dict]:
    """An early-type galaxy drawn from the lens-light population (``independent.deflector``)."""
    mag = _uniform(rng, d.mag_range_F814W) if mag is None else mag
    n = _uniform(rng, d.sersic_n_range)
    re = _log_uniform(rng, d.re_range_arcsec)
    q = _uniform(rng, d.light_axis_ratio_range)
    phi = _uniform(rng, (0.0, math.pi)) if phi is None else phi
    e1, e2 = _ellipticity(phi, q)
    colours = _colours(rng, d.colour_F435W_F814W_range, d.colour_F606W_F814W_range)
    image = r.sersic_image(dict(R_sersic=re, n_sersic=n, e1=e1, e2=e2, center_x=x0, center_y=y0))
    info = {"lens_re_arcsec": re, "lens_sersic_n": n, **{f"lens_mag_{b}": m for b, m in _mags(mag, colours).items()}}
    return Component(image, _mags(mag, colours)), info


def _compact_blue(rng, r: Renderer, s, x0: float, y0: float, mag: float) -> Component:
    """A compact blue star-forming galaxy drawn like the lenses' sources, unlensed."""
    e1, e2 = _ellipticity(_uniform(rng, (0.0, math.pi)), _uniform(rng, s.axis_ratio_range))
    kw = dict(R_sersic=_log_uniform(rng, s.re_range_arcsec), n_sersic=_uniform(rng, s.sersic_n_range),
              e1=e1, e2=e2, center_x=x0, center_y=y0)
    colours = _colours(rng, s.colour_F435W_F814W_range, s.colour_F606W_F814W_range)
    return Component(r.sersic_image(kw), _mags(mag, colours))


def _disc(rng, r: Renderer, x0, y0, re, q, phi, arms: tuple[float, float] | None = None) -> np.ndarray:
    """An exponential disc of unit flux; with ``arms = (A, pitch_deg)`` two logarithmic spiral arms,
    ``1 + A cos(2 (phi - ln(r) / tan(pitch)))`` in the disc plane, the flux kept."""
    e1, e2 = _ellipticity(phi, q)
    kw = dict(R_sersic=re, n_sersic=1.0, e1=e1, e2=e2, center_x=x0, center_y=y0)
    image = r.sersic_image(kw)
    if arms is None:
        return image
    amplitude, pitch_deg = arms
    cx, cy = r.grid.pixel_coordinates()
    x, y = np.meshgrid(cx - x0, cy - y0)
    xr = x * math.cos(phi) + y * math.sin(phi)  # disc plane: major axis along xr, minor axis stretched by 1/q
    yr = (-x * math.sin(phi) + y * math.cos(phi)) / q
    radius = np.maximum(np.hypot(xr, yr), 0.5 * r.grid.pixel_scale) / re
    angle = np.arctan2(yr, xr)
    phase = _uniform(rng, (0.0, 2.0 * math.pi))
    modulated = image * (1.0 + amplitude * np.cos(2.0 * (angle - np.log(radius) / math.tan(math.radians(pitch_deg)))
                                                   + phase))
    return modulated * image.sum() / modulated.sum()


def _ring(r: Renderer, x0, y0, radius, width, q, phi, lopsidedness, phase) -> np.ndarray:
    """A Gaussian annulus ``exp(-(r_ell - r0)^2 / 2 w^2) (1 + a cos(theta - theta0))`` of unit flux (numpy:
    lenstronomy has no ring profile); ``r_ell`` the elliptical radius of axis ratio ``q``."""
    x = r.x - x0
    y = r.y - y0
    xr = x * math.cos(phi) + y * math.sin(phi)
    yr = -x * math.sin(phi) + y * math.cos(phi)
    r_ell = np.sqrt(q * xr**2 + yr**2 / q)
    sb = np.exp(-0.5 * ((r_ell - radius) / width) ** 2) * (1.0 + lopsidedness * np.cos(np.arctan2(yr, xr) - phase))
    image = r.grid.bin(sb)
    return image / image.sum()


# ------------------------------------------------------------------------------------------------ the kinds
def draw_lens(rng, r: Renderer, ind) -> Scene:
    """An SIE + shear lens with its early-type light and a lensed Sersic source at least ``min_images``-fold
    imaged."""
    import lenstronomy.Util.param_util as param_util

    d, s = ind.deflector, ind.source
    half = 0.5 * r.grid.n * r.grid.pixel_scale
    for lens_draw in range(s.max_draws):
        x0, y0 = _jitter(rng, r.grid)
        theta_e = _uniform(rng, d.theta_e_range_arcsec)
        q = _uniform(rng, d.mass_axis_ratio_range)
        phi = _uniform(rng, (0.0, math.pi))
        e1, e2 = _ellipticity(phi, q)
        gamma = _uniform(rng, d.shear_gamma_range)
        g1, g2 = (float(v) for v in param_util.shear_polar2cartesian(_uniform(rng, (0.0, math.pi)), gamma))
        kwargs_lens = [dict(theta_E=theta_e, e1=e1, e2=e2, center_x=x0, center_y=y0),
                       dict(gamma1=g1, gamma2=g2, ra_0=x0, dec_0=y0)]
        radius = s.position_max_theta_e * theta_e
        found = False
        for draw in range(s.max_draws + 1):
            if draw == s.max_draws:  # no draw in the disc was multiply imaged: the caustic's centre is
                radius = 0.05 * theta_e
            rho = radius * math.sqrt(rng.uniform())
            ang = _uniform(rng, (0.0, 2.0 * math.pi))
            bx, by = x0 + rho * math.cos(ang), y0 + rho * math.sin(ang)
            n_images, n_in_cutout = r.count_images(kwargs_lens, bx, by, theta_e, half_size=half)
            if n_images >= s.min_images and n_in_cutout >= s.min_images_in_cutout:
                found = True
                break
        if found:
            break
    else:  # pragma: no cover - configuration checked: theta_E small enough for the cutout
        raise LensSearchError(
            f"independent: no lens with {s.min_images_in_cutout} images inside the {2 * half:.2f}\" cutout in "
            f"{s.max_draws} lens draws; lower deflector.theta_e_range_arcsec or source.min_images_in_cutout")
    light, light_info = early_type(rng, r, d, x0, y0, phi=phi + float(rng.normal(0.0, math.radians(10.0))))

    sq = _uniform(rng, s.axis_ratio_range)
    se1, se2 = _ellipticity(_uniform(rng, (0.0, math.pi)), sq)
    kwargs_source = dict(R_sersic=_log_uniform(rng, s.re_range_arcsec), n_sersic=_uniform(rng, s.sersic_n_range),
                         e1=se1, e2=se2, center_x=bx, center_y=by)
    mag = _uniform(rng, s.mag_range_F814W)
    colours = _colours(rng, s.colour_F435W_F814W_range, s.colour_F606W_F814W_range)
    beta_x, beta_y = r.lens_model.ray_shooting(r.x, r.y, kwargs_lens)
    lensed = r.sersic_image(kwargs_source, beta_x, beta_y)
    truth = {
        "theta_e_arcsec": theta_e, "lens_x_arcsec": x0, "lens_y_arcsec": y0, "lens_q": q, "lens_e1": e1,
        "lens_e2": e2, "shear_gamma": gamma, "shear_gamma1": g1, "shear_gamma2": g2, **light_info,
        "source_x_arcsec": bx, "source_y_arcsec": by, "source_offset_theta_e": rho / theta_e,
        "source_re_arcsec": kwargs_source["R_sersic"], "source_sersic_n": kwargs_source["n_sersic"],
        "source_e1": se1, "source_e2": se2, "n_images": n_images, "n_images_in_cutout": n_in_cutout,
        "magnification": float(lensed.sum()),
        **{f"source_mag_{b}": m for b, m in _mags(mag, colours).items()},
    }
    return Scene(LENS_KIND, [light], [], Component(lensed, _mags(mag, colours)), truth)


def draw_elliptical(rng, r: Renderer, ind) -> Scene:
    x0, y0 = _jitter(rng, r.grid)
    light, info = early_type(rng, r, ind.deflector, x0, y0)
    return Scene("elliptical", [light], [], truth=info)


def draw_blue_companion(rng, r: Renderer, ind) -> Scene:
    c = ind.confusers
    x0, y0 = _jitter(rng, r.grid)
    light, info = early_type(rng, r, ind.deflector, x0, y0)
    parts = [light]
    lo, hi = c.companion_count_range
    for _ in range(int(rng.integers(lo, hi + 1))):
        dist, ang = _uniform(rng, c.companion_distance_range_arcsec), _uniform(rng, (0.0, 2.0 * math.pi))
        parts.append(_compact_blue(rng, r, ind.source, x0 + dist * math.cos(ang), y0 + dist * math.sin(ang),
                                   _uniform(rng, c.companion_mag_range_F814W)))
    return Scene("blue_companion", parts, [], truth={**info, "n_components": len(parts)})


def draw_spiral(rng, r: Renderer, ind) -> Scene:
    c, s, d = ind.confusers, ind.source, ind.deflector
    x0, y0 = _jitter(rng, r.grid)
    mag = _uniform(rng, c.disc_mag_range_F814W)
    bt = _uniform(rng, c.bulge_to_total_range)
    re = _log_uniform(rng, c.disc_re_range_arcsec)
    q, phi = _uniform(rng, SPIRAL_DISC_AXIS_RATIO), _uniform(rng, (0.0, math.pi))
    arms = (_uniform(rng, c.spiral_arm_amplitude_range), _uniform(rng, c.spiral_pitch_range_deg))
    disc = _disc(rng, r, x0, y0, re, q, phi, arms)
    be1, be2 = _ellipticity(phi, min(1.0, q + 0.3))
    bulge = r.sersic_image(dict(R_sersic=re * _uniform(rng, BULGE_RE_FRACTION), n_sersic=_uniform(rng, BULGE_SERSIC_N),
                                e1=be1, e2=be2, center_x=x0, center_y=y0))
    disc_colours = _colours(rng, s.colour_F435W_F814W_range, s.colour_F606W_F814W_range)
    bulge_colours = _colours(rng, d.colour_F435W_F814W_range, d.colour_F606W_F814W_range)
    parts = [Component(disc, _mags(mag - 2.5 * math.log10(1.0 - bt), disc_colours)),
             Component(bulge, _mags(mag - 2.5 * math.log10(bt), bulge_colours))]
    return Scene("spiral", parts, [], truth={"disc_re_arcsec": re, "bulge_to_total": bt, "lens_mag_F814W": mag})


def draw_edge_on(rng, r: Renderer, ind) -> Scene:
    c, d = ind.confusers, ind.deflector
    x0, y0 = _jitter(rng, r.grid)
    mag = _uniform(rng, c.disc_mag_range_F814W)
    bt = 0.5 * _uniform(rng, c.bulge_to_total_range)
    re, phi = _log_uniform(rng, c.disc_re_range_arcsec), _uniform(rng, (0.0, math.pi))
    disc = _disc(rng, r, x0, y0, re, _uniform(rng, c.edge_on_axis_ratio_range), phi)
    be1, be2 = _ellipticity(phi, 0.7)
    bulge = r.sersic_image(dict(R_sersic=re * _uniform(rng, BULGE_RE_FRACTION), n_sersic=_uniform(rng, BULGE_SERSIC_N),
                                e1=be1, e2=be2, center_x=x0, center_y=y0))
    parts = [Component(disc, _mags(mag - 2.5 * math.log10(1.0 - bt), _colours(rng, *EDGE_ON_COLOURS))),
             Component(bulge, _mags(mag - 2.5 * math.log10(bt),
                                    _colours(rng, d.colour_F435W_F814W_range, d.colour_F606W_F814W_range)))]
    return Scene("edge_on", parts, [], truth={"disc_re_arcsec": re, "bulge_to_total": bt, "lens_mag_F814W": mag})


def draw_pair(rng, r: Renderer, ind) -> Scene:
    """A pair or merger: an early-type galaxy and, ``separation`` away, another early-type galaxy or a blue disc."""
    c, d, s = ind.confusers, ind.deflector, ind.source
    x0, y0 = _jitter(rng, r.grid)
    primary, info = early_type(rng, r, d, x0, y0)
    sep, ang = _uniform(rng, c.pair_separation_range_arcsec), _uniform(rng, (0.0, 2.0 * math.pi))
    x1, y1 = x0 + sep * math.cos(ang), y0 + sep * math.sin(ang)
    mag = info["lens_mag_F814W"] + _uniform(rng, c.pair_delta_mag_range)
    if rng.uniform() < 0.5:
        secondary, _ = early_type(rng, r, d, x1, y1, mag=mag)
    else:
        disc = _disc(rng, r, x1, y1, _log_uniform(rng, c.disc_re_range_arcsec), _uniform(rng, SPIRAL_DISC_AXIS_RATIO),
                     _uniform(rng, (0.0, math.pi)))
        secondary = Component(disc, _mags(mag, _colours(rng, s.colour_F435W_F814W_range, s.colour_F606W_F814W_range)))
    return Scene("pair", [primary, secondary], [], truth={**info, "pair_separation_arcsec": sep})


def draw_ring(rng, r: Renderer, ind) -> Scene:
    """An early-type galaxy in a blue, possibly lopsided, star-forming ring (collisional or resonance ring)."""
    c, s = ind.confusers, ind.source
    x0, y0 = _jitter(rng, r.grid)
    host, info = early_type(rng, r, ind.deflector, x0, y0)
    radius = _uniform(rng, c.ring_radius_range_arcsec)
    ring = _ring(r, x0, y0, radius, _uniform(rng, c.ring_width_range_arcsec), _uniform(rng, RING_AXIS_RATIO),
                 _uniform(rng, (0.0, math.pi)), _uniform(rng, (0.0, 1.0)), _uniform(rng, (0.0, 2.0 * math.pi)))
    mag = _uniform(rng, c.ring_mag_range_F814W)
    colours = _colours(rng, s.colour_F435W_F814W_range, s.colour_F606W_F814W_range)
    return Scene("ring", [host, Component(ring, _mags(mag, colours))], [],
                 truth={**info, "ring_radius_arcsec": radius})


def draw_star(rng, r: Renderer, ind) -> Scene:
    x0, y0 = _jitter(rng, r.grid)
    mag = _uniform(rng, ind.confusers.star_mag_range_F814W)
    mags = _mags(mag, _colours(rng, *STAR_COLOURS))
    return Scene("star", [], [(x0, y0, mags)], truth={"lens_mag_F814W": mag})


#: kind -> scene drawer ``(rng, renderer, independent config) -> Scene``.
DRAWERS: dict[str, Callable[..., Scene]] = {
    LENS_KIND: draw_lens,
    "elliptical": draw_elliptical,
    "blue_companion": draw_blue_companion,
    "spiral": draw_spiral,
    "edge_on": draw_edge_on,
    "pair": draw_pair,
    "ring": draw_ring,
    "star": draw_star,
}


def add_field_galaxies(rng, r: Renderer, ind, scene: Scene) -> None:
    """Faint unrelated galaxies anywhere in the cutout, in lenses and non-lenses alike."""
    half = 0.5 * r.grid.n * r.grid.pixel_scale
    for _ in range(int(rng.poisson(ind.field_galaxies_per_cutout))):
        x, y = _uniform(rng, (-half, half)), _uniform(rng, (-half, half))
        e1, e2 = _ellipticity(_uniform(rng, (0.0, math.pi)), _uniform(rng, (0.3, 1.0)))
        kw = dict(R_sersic=_log_uniform(rng, FIELD_GALAXY_RE_ARCSEC), n_sersic=_uniform(rng, FIELD_GALAXY_SERSIC_N),
                  e1=e1, e2=e2, center_x=x, center_y=y)
        c435 = _uniform(rng, FIELD_GALAXY_COLOURS[0])
        frac = (c435 - FIELD_GALAXY_COLOURS[0][0]) / (FIELD_GALAXY_COLOURS[0][1] - FIELD_GALAXY_COLOURS[0][0])
        c606 = FIELD_GALAXY_COLOURS[1][0] + frac * (FIELD_GALAXY_COLOURS[1][1] - FIELD_GALAXY_COLOURS[1][0])
        mag = _uniform(rng, ind.field_galaxy_mag_range_F814W)
        scene.unlensed.append(Component(r.sersic_image(kw), _mags(mag, {"F435W": c435, "F606W": c606, "F814W": 0.0})))


# ------------------------------------------------------------------------------------------------ observing
@dataclasses.dataclass(frozen=True)
class Observation:
    """The noiseless and observed cutout of a scene (n x n x n_bands, e-/s), its lensed light and noise."""

    noiseless: np.ndarray
    lensed: np.ndarray  # the PSF-convolved lensed source alone (zeros for non-lenses)
    observed: np.ndarray
    noise_sigma: np.ndarray  # per band, e-/s per pixel
    depth_m5: np.ndarray  # per band, 5-sigma point-source AB limit
    psf_index: np.ndarray  # per band, the PSF drawn (the F814W detector region; 0 for the Moffat bands)
    psfs: dict  # band -> the PSF used
    depth_fraction: float  # 0: the shallow limits, 1: the deep ones


def _deposit(image: np.ndarray, grid: Grid, x: float, y: float, flux: float) -> None:
    """A point source of ``flux`` at (x, y) arcsec, shared bilinearly among the four nearest pixels."""
    px = x / grid.pixel_scale + (grid.n_padded - 1) / 2.0
    py = y / grid.pixel_scale + (grid.n_padded - 1) / 2.0
    i0, j0 = int(math.floor(px)), int(math.floor(py))
    fx, fy = px - i0, py - j0
    for dj, wy in ((0, 1.0 - fy), (1, fy)):
        for di, wx in ((0, 1.0 - fx), (1, fx)):
            if 0 <= j0 + dj < grid.n_padded and 0 <= i0 + di < grid.n_padded:
                image[j0 + dj, i0 + di] += flux * wx * wy


def arc_snr(lensed: np.ndarray, noise_sigma) -> np.ndarray:
    """Matched-filter S/N per band, ``sqrt(sum((s / sigma)^2))`` (:func:`lenssearch.simulate.inject.lensed_snr`)."""
    sigma = np.asarray(noise_sigma, dtype=np.float64)
    return np.sqrt(np.sum((np.asarray(lensed, dtype=np.float64) / sigma[None, None, :]) ** 2, axis=(0, 1)))


class Observer:
    """PSFs, zero points and the depth range: turns a :class:`Scene` into an observed cutout."""

    def __init__(self, cfg, grid: Grid):
        from lenssearch.fields.photometry import pixel_sigma_from_depth, zeropoint

        ind = cfg.independent
        self.bands = tuple(cfg.base.bands)
        self.grid = grid
        # band -> [(PSF index, PSF)]: every usable detector region of F814W, the one Moffat PSF of the other bands
        self.psf_sets = {b: [(0, p)] for b, p in band_psfs(cfg).items()}
        if "F814W" in self.psf_sets:
            regions = [(i, band_psfs(cfg, i)["F814W"]) for i in range(F814W_PSF_REGIONS)]
            self.psf_sets["F814W"] = [(i, p) for i, p in regions if centred_psf(p)]
        for band, psfs in self.psf_sets.items():
            if not all(centred_psf(p) for _, p in psfs):
                raise LensSearchError(f"independent: the PSF of {band} is not centred on its middle pixel")
        self.zeropoints = np.array([zeropoint(b) for b in self.bands])
        for name, preset in (("depth_shallow", ind.depth_shallow), ("depth_deep", ind.depth_deep),
                             ("exposure_time_s_deep", ind.exposure_time_s_deep)):
            missing = [b for b in self.bands if b not in preset]
            if missing:
                raise LensSearchError(f"independent.{name}: missing band(s) {missing}")
        self.m5_shallow = np.array([ind.depth_shallow[b] for b in self.bands])
        self.m5_deep = np.array([ind.depth_deep[b] for b in self.bands])
        self.exposure_deep = np.array([ind.exposure_time_s_deep[b] for b in self.bands])
        self.poisson = ind.source_poisson
        self._sigma_of = pixel_sigma_from_depth

    def flux(self, mags: dict[str, float]) -> np.ndarray:
        return np.array([10.0 ** (-0.4 * (mags[b] - zp)) for b, zp in zip(self.bands, self.zeropoints)])

    def observe(self, scene: Scene, rng: np.random.Generator) -> Observation:
        from scipy.signal import fftconvolve

        g = self.grid
        drawn = {b: self.psf_sets[b][int(rng.integers(len(self.psf_sets[b])))] for b in self.bands}
        psf_index = np.array([drawn[b][0] for b in self.bands])
        psfs = {b: drawn[b][1] for b in self.bands}
        depth_fraction = float(rng.uniform())
        m5 = self.m5_shallow + depth_fraction * (self.m5_deep - self.m5_shallow)
        sigma = np.array([self._sigma_of(m, zp, psfs[b]) for m, zp, b in zip(m5, self.zeropoints, self.bands)])
        sigma_deep = np.array([self._sigma_of(m, zp, psfs[b])
                               for m, zp, b in zip(self.m5_deep, self.zeropoints, self.bands)])
        exposure = self.exposure_deep * (sigma_deep / sigma) ** 2
        noiseless = np.empty((g.n, g.n, len(self.bands)))
        lensed = np.zeros_like(noiseless)
        fluxes = [self.flux(c.mags) for c in scene.unlensed]
        point_fluxes = [self.flux(m) for _, _, m in scene.points]
        lensed_flux = self.flux(scene.lensed.mags) if scene.lensed is not None else None
        for k, band in enumerate(self.bands):
            psf = psfs[band]
            frame = np.zeros((g.n_padded, g.n_padded))
            for comp, f in zip(scene.unlensed, fluxes):
                frame += comp.image * f[k]
            for (x, y, _), f in zip(scene.points, point_fluxes):
                _deposit(frame, g, x, y, f[k])
            if scene.lensed is not None:
                arc = g.crop(fftconvolve(scene.lensed.image * lensed_flux[k], psf, mode="same"))
                lensed[..., k] = arc
            noiseless[..., k] = g.crop(fftconvolve(frame, psf, mode="same")) + lensed[..., k]
        observed = noiseless.copy()
        if self.poisson:
            observed += rng.standard_normal(observed.shape) * np.sqrt(np.clip(noiseless, 0.0, None) / exposure)
        observed += rng.standard_normal(observed.shape) * sigma
        return Observation(noiseless, lensed, observed.astype(np.float32), sigma, m5, psf_index, psfs,
                           depth_fraction)


# ------------------------------------------------------------------------------------------------ the set
def kind_counts(n_nonlenses: int, fractions) -> dict[str, int]:
    """Non-lenses per confuser kind: ``fractions`` normalised, rounded by largest remainder (kind order of
    :data:`NONLENS_KINDS`)."""
    unknown = sorted(set(fractions) - set(NONLENS_KINDS))
    if unknown:
        raise LensSearchError(f"independent.confusers.fractions: unknown kind(s) {unknown}; "
                              f"known: {list(NONLENS_KINDS)}")
    weights = np.array([float(fractions.get(k, 0.0)) for k in NONLENS_KINDS])
    if np.any(weights < 0) or weights.sum() <= 0:
        raise LensSearchError("independent.confusers.fractions: fractions must be >= 0 with a positive sum")
    exact = weights / weights.sum() * n_nonlenses
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n_nonlenses - counts.sum()]] += 1
    return {k: int(c) for k, c in zip(NONLENS_KINDS, counts)}


def cutout_generator(seed: int, label: int, index: int) -> np.random.Generator:
    """The generator of one cutout of the independent set."""
    return np.random.default_rng([int(seed), INDEPENDENT_STREAM, int(label), int(index)])


def _check_config(cfg) -> None:
    ind = cfg.independent
    if sorted(cfg.base.bands) != sorted(RECIPE_BANDS):
        raise LensSearchError(f"base.bands: the independent recipe needs the bands {list(RECIPE_BANDS)}, got "
                              f"{list(cfg.base.bands)}")
    if ind.n_lenses < 0 or ind.n_nonlenses < 0:
        raise LensSearchError("independent.n_lenses and n_nonlenses must be >= 0")
    if ind.supersampling < 1 or ind.pad_pixels < 0 or ind.cutout_pixels < 8:
        raise LensSearchError("independent: supersampling >= 1, pad_pixels >= 0 and cutout_pixels >= 8 expected")
    if ind.source.min_images < 1 or ind.source.max_draws < 1:
        raise LensSearchError("independent.source: min_images and max_draws must be >= 1")
    if not 1 <= ind.source.min_images_in_cutout <= ind.source.min_images:
        raise LensSearchError("independent.source: min_images_in_cutout must lie in [1, min_images], got "
                              f"{ind.source.min_images_in_cutout}")
    half = 0.5 * ind.cutout_pixels * cfg.base.pixel_scale_arcsec
    if ind.source.min_images_in_cutout >= 2 and min(ind.deflector.theta_e_range_arcsec) >= half:
        raise LensSearchError(f"independent.deflector.theta_e_range_arcsec: every theta_E is beyond the cutout's "
                              f"half-side {half:.2f}\"; no two images would fit in it")
    lo, hi = ind.confusers.bulge_to_total_range
    if not 0.0 < lo <= hi < 1.0:
        raise LensSearchError(f"independent.confusers.bulge_to_total_range must lie inside (0, 1), got {[lo, hi]}")
    for key, bounds in (("deflector.re_range_arcsec", ind.deflector.re_range_arcsec),
                        ("source.re_range_arcsec", ind.source.re_range_arcsec),
                        ("confusers.disc_re_range_arcsec", ind.confusers.disc_re_range_arcsec)):
        if min(bounds) <= 0:
            raise LensSearchError(f"independent.{key} must be positive (drawn log-uniformly), got {list(bounds)}")


#: Metadata columns: name -> (unit, description). Columns not filled by a kind are NaN (or 0 for counts).
COLUMNS: dict[str, tuple[str | None, str]] = {
    "theta_e_arcsec": ("arcsec", "SIE Einstein radius (lenstronomy convention)"),
    "lens_x_arcsec": ("arcsec", "lens centre from the cutout centre, +x along columns"),
    "lens_y_arcsec": ("arcsec", "lens centre from the cutout centre, +y along rows"),
    "lens_q": (None, "SIE axis ratio"),
    "lens_e1": (None, "SIE ellipticity e1 (lenstronomy)"),
    "lens_e2": (None, "SIE ellipticity e2 (lenstronomy)"),
    "shear_gamma": (None, "external shear modulus"),
    "shear_gamma1": (None, "external shear gamma1 (lenstronomy SHEAR)"),
    "shear_gamma2": (None, "external shear gamma2 (lenstronomy SHEAR)"),
    "lens_re_arcsec": ("arcsec", "Sersic R_e of the central early-type galaxy"),
    "lens_sersic_n": (None, "Sersic index of the central early-type galaxy"),
    "source_x_arcsec": ("arcsec", "source centre (source plane)"),
    "source_y_arcsec": ("arcsec", "source centre (source plane)"),
    "source_offset_theta_e": (None, "source centre's distance from the lens centre / theta_E"),
    "source_re_arcsec": ("arcsec", "source Sersic R_e (lenstronomy R_sersic)"),
    "source_sersic_n": (None, "source Sersic index"),
    "source_e1": (None, "source ellipticity e1 (lenstronomy)"),
    "source_e2": (None, "source ellipticity e2 (lenstronomy)"),
    "magnification": (None, "lensed source flux in the padded cutout / intrinsic flux"),
    "n_images": (None, "images of the source centre (lenstronomy LensEquationSolver); 0 for non-lenses"),
    "n_images_in_cutout": (None, "of those, images inside the cutout with |mu| >= 0.1; 0 for non-lenses"),
    "disc_re_arcsec": ("arcsec", "R_e of the disc (spiral, edge_on)"),
    "bulge_to_total": (None, "bulge-to-total flux ratio (spiral, edge_on)"),
    "pair_separation_arcsec": ("arcsec", "separation of a pair's galaxies"),
    "ring_radius_arcsec": ("arcsec", "radius of a ring"),
    "n_components": (None, "central galaxy + companions (blue_companion)"),
    "n_field_galaxies": (None, "faint unrelated galaxies added to the cutout"),
    "depth_fraction": (None, "0: the shallow (CLASH-like) limits, 1: the deep (HFF-like) ones"),
}


def simulate_independent(cfg, *, n_lenses: int | None = None, n_nonlenses: int | None = None,
                         progress: Callable[[int, int], None] | None = None):
    """Simulate the independent set; returns ``(cutouts float32, metadata Table, summary dict)``.

    ``n_lenses`` / ``n_nonlenses`` override the configuration (tests); the cutouts drawn are the first ones of
    the full set (the generators depend on the index only).
    """
    _check_config(cfg)
    ind = cfg.independent
    n_lenses = ind.n_lenses if n_lenses is None else int(n_lenses)
    n_nonlenses = ind.n_nonlenses if n_nonlenses is None else int(n_nonlenses)
    grid = Grid(ind.cutout_pixels, ind.pad_pixels, ind.supersampling, cfg.base.pixel_scale_arcsec)
    renderer = Renderer(grid)
    observer = Observer(cfg, grid)
    bands = observer.bands
    counts = kind_counts(n_nonlenses, ind.confusers.fractions) if n_nonlenses else {}
    plan = [(1, i, LENS_KIND) for i in range(n_lenses)]
    plan += [(0, i, kind) for i, kind in enumerate(k for k in NONLENS_KINDS for _ in range(counts.get(k, 0)))]
    total = len(plan)
    cutouts = np.empty((total, ind.cutout_pixels, ind.cutout_pixels, len(bands)), dtype=np.float32)
    rows = []
    start = time.perf_counter()
    for j, (label, index, kind) in enumerate(plan):
        rng = cutout_generator(cfg.base.seed, label, index)
        scene = DRAWERS[kind](rng, renderer, ind)
        n_own = len(scene.unlensed)
        add_field_galaxies(rng, renderer, ind, scene)
        scene.truth["n_field_galaxies"] = len(scene.unlensed) - n_own
        obs = observer.observe(scene, rng)
        cutouts[j] = obs.observed
        snr = arc_snr(obs.lensed, obs.noise_sigma)
        row = {"id": f"ind-{'L' if label else 'N'}{index:06d}", "label": label, "kind": kind}
        for name in COLUMNS:
            default = 0 if name in ("n_images", "n_images_in_cutout", "n_components", "n_field_galaxies") else np.nan
            row[name] = scene.truth.get(name, default)
        row["depth_fraction"] = obs.depth_fraction
        for k, b in enumerate(bands):
            row[f"lens_mag_{b}"] = scene.truth.get(f"lens_mag_{b}", np.nan)
            row[f"source_mag_{b}"] = scene.truth.get(f"source_mag_{b}", np.nan)
            row[f"noise_sigma_{b}"] = float(obs.noise_sigma[k])
            row[f"depth_m5_{b}"] = float(obs.depth_m5[k])
            row[f"lensed_snr_{b}"] = float(snr[k])
            row[f"psf_index_{b}"] = int(obs.psf_index[k])
        row["lensed_snr"] = float(np.sqrt(np.sum(snr**2)))
        rows.append(row)
        if progress is not None:
            progress(j + 1, total)
    elapsed = time.perf_counter() - start
    meta = _metadata_table(rows, bands)
    summary = {
        "n_lenses": n_lenses, "n_nonlenses": n_nonlenses, "kinds": {LENS_KIND: n_lenses, **counts},
        "seconds": elapsed, "cutouts_per_second": total / elapsed if elapsed > 0 else float("nan"),
    }
    if n_lenses:
        lenses = meta[meta["label"] == 1]
        summary.update({
            "median_lensed_snr": float(np.median(lenses["lensed_snr"])),
            "fraction_snr_ge_30": float(np.mean(np.asarray(lenses["lensed_snr"]) >= ind.snr_min)),
            "median_magnification": float(np.median(lenses["magnification"])),
            "fraction_quads": float(np.mean(np.asarray(lenses["n_images"]) >= 4)),
        })
    return cutouts, meta, summary


def _metadata_table(rows: list[dict], bands) -> "Table":
    from astropy.table import Table

    names = ["id", "label", "kind", *COLUMNS]
    for b in bands:
        names += [f"lens_mag_{b}", f"source_mag_{b}", f"noise_sigma_{b}", f"depth_m5_{b}", f"lensed_snr_{b}",
                  f"psf_index_{b}"]
    names.append("lensed_snr")
    if rows:
        meta = Table(rows=[[r[n] for n in names] for r in rows], names=names)
    else:
        meta = Table(names=names, dtype=["U16", "i8", "U16", *["f8"] * (len(names) - 3)])
    for name in ("label", "n_images", "n_images_in_cutout", "n_components", "n_field_galaxies", *[f"psf_index_{b}" for b in bands]):
        meta[name] = np.asarray(meta[name], dtype=np.int64)
    descriptions = {
        "id": "cutout id", "label": "1 strong lens, 0 non-lens", "kind": f"one of {', '.join(KINDS)}",
        "lensed_snr": "arc S/N, the bands in quadrature",
    }
    for name, (unit, desc) in COLUMNS.items():
        meta[name].unit = unit
        descriptions[name] = desc
    for b in bands:
        meta[f"lens_mag_{b}"].unit = "mag"
        descriptions[f"lens_mag_{b}"] = f"AB magnitude in {b} of the central galaxy (star: the star's)"
        meta[f"source_mag_{b}"].unit = "mag"
        descriptions[f"source_mag_{b}"] = f"intrinsic (unlensed) AB magnitude of the source in {b}"
        meta[f"noise_sigma_{b}"].unit = "electron / (s pix)"
        descriptions[f"noise_sigma_{b}"] = f"background noise sigma per pixel in {b}"
        meta[f"depth_m5_{b}"].unit = "mag"
        descriptions[f"depth_m5_{b}"] = f"5-sigma point-source AB limit in {b}"
        descriptions[f"lensed_snr_{b}"] = f"arc S/N in {b}: matched filter of the noiseless lensed source"
        descriptions[f"psf_index_{b}"] = (f"PSF of {b}: detector region of the empirical cube (F814W), 0 for a "
                                          "Moffat band")
    for name, desc in descriptions.items():
        meta[name].description = desc
    return meta


def run_independent_simulate(cfg, out_dir: str | Path, progress=None) -> dict:
    """Simulate the set and write it as a cutout set (kind ``independent``) with ``summary.json``."""
    import json

    from lenssearch.fields.photometry import zeropoint
    from lenssearch.simulate.store import write_cutout_set

    cutouts, meta, summary = simulate_independent(cfg, progress=progress)
    timing = ("seconds", "cutouts_per_second")  # the set's files are the same bytes whatever the machine
    text = json.dumps({k: v for k, v in summary.items() if k not in timing}, indent=2, sort_keys=True) + "\n"
    write_cutout_set(
        out_dir, cutouts, meta, bands=cfg.base.bands, pixel_scale_arcsec=cfg.base.pixel_scale_arcsec,
        kind="independent", seed=cfg.base.seed,
        zeropoints_ab={"independent": {b: zeropoint(b) for b in cfg.base.bands}},
        extra_files={"summary.json": lambda p: p.write_text(text)},
    )
    return summary
