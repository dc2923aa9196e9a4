"""Galaxy light profiles rendered on local stamps and co-added into a full frame.

Each galaxy is evaluated only on a stamp around its centre (a few effective radii, capped), with sub-pixel
sampling for small galaxies, normalised to unit sum and added to each band's frame with that band's flux; the
frame is convolved with the band's PSF once, afterwards (:func:`convolve_frame`). The morphology is the same in
every band for one component, so a galaxy with a red bulge and a blue disc is two components.

- Sersic (1963): ``I(R) = I_e exp(-b_n [(R/R_e)^(1/n) - 1])``, ``b_n`` from ``gamma(2n, b_n) = Gamma(2n)/2``
  (Ciotti & Bertin 1999), on the elliptical radius ``R^2 = q x'^2 + y'^2 / q`` (``R_e`` the circularised radius).
- Spiral disc: an exponential disc ``exp(-r/h)`` whose azimuthal light is modulated by ``m`` logarithmic spiral
  arms, ``1 + A cos(m (phi - ln(r/h) / tan(pitch)))`` (the shape of grand-design spirals, Seigar & James 1998),
  seen at inclination ``cos i = q``.

Positions are in pixels of the frame (``x`` along the first FITS axis = numpy column), angles in degrees
counter-clockwise from ``+x``. With the package's TAN WCS (CD1_1 < 0) ``+x`` is West, as in the lensing frame.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaincinv


def sersic_b(n: float) -> float:
    """Sersic ``b_n`` such that ``R_e`` encloses half the light (exact, via the inverse incomplete gamma)."""
    return float(gammaincinv(2.0 * n, 0.5))


def _oversampling(size_pix: float) -> int:
    """Sub-pixel sampling factor: fine for small (cuspy) galaxies, none for large ones."""
    if size_pix < 2.0:
        return 7
    if size_pix < 6.0:
        return 3
    return 1


def _stamp_grid(x0: float, y0: float, half: int, shape: tuple[int, int] | None, oversample: int):
    """Pixel bounds of the stamp (clipped to a frame of ``shape``; unclipped for ``None``) and the sub-pixel
    sample offsets from the centre."""
    ix0, iy0 = int(np.floor(x0 + 0.5)), int(np.floor(y0 + 0.5))
    xlo, xhi = ix0 - half, ix0 + half + 1
    ylo, yhi = iy0 - half, iy0 + half + 1
    if shape is not None:
        ny, nx = shape
        xlo, xhi = max(xlo, 0), min(xhi, nx)
        ylo, yhi = max(ylo, 0), min(yhi, ny)
    if xlo >= xhi or ylo >= yhi:
        return None
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5
    xs = (np.arange(xlo, xhi)[:, None] + sub[None, :]).ravel() - x0
    ys = (np.arange(ylo, yhi)[:, None] + sub[None, :]).ravel() - y0
    return (ylo, yhi, xlo, xhi), xs, ys


def _rebin(values: np.ndarray, ny: int, nx: int, oversample: int) -> np.ndarray:
    if oversample == 1:
        return values
    return values.reshape(ny, oversample, nx, oversample).mean(axis=(1, 3))


def _rotate(xs, ys, angle_deg):
    t = np.deg2rad(angle_deg)
    c, s = np.cos(t), np.sin(t)
    xx = xs[None, :] * c + ys[:, None] * s
    yy = ys[:, None] * c - xs[None, :] * s
    return xx, yy


def sersic_stamp(x0, y0, re_pix, n, q, angle_deg, shape, max_half: int = 500, extent_re: float = 6.0):
    """Unit-sum Sersic morphology on a stamp: returns ``(slices, stamp)`` or None if off the frame.

    The stamp spans ``extent_re`` effective radii (at least 8 pixels, at most ``max_half``); the profile is
    truncated there and normalised so the stamp sums to the fraction of light inside the frame when clipped by
    the frame edge (i.e. to one for a stamp fully inside).
    """
    q = float(np.clip(q, 0.05, 1.0))
    semi_major = re_pix / np.sqrt(q)
    half = int(np.clip(np.ceil(extent_re * semi_major), 8, max_half))
    over = _oversampling(re_pix)
    full = _stamp_grid(x0, y0, half, None, over)  # the unclipped stamp, for the normalisation
    grid = _stamp_grid(x0, y0, half, shape, over)
    if grid is None:
        return None
    b = sersic_b(n)

    def evaluate(xs, ys):
        xx, yy = _rotate(xs, ys, angle_deg)
        r = np.sqrt(q * xx * xx + yy * yy / q) / max(re_pix, 1e-3)
        return np.exp(-b * (r ** (1.0 / n) - 1.0))

    (ylo, yhi, xlo, xhi), xs, ys = grid
    values = _rebin(evaluate(xs, ys), yhi - ylo, xhi - xlo, over)
    _, fxs, fys = full
    total = evaluate(fxs, fys).sum() / over**2
    if not total > 0:
        return None
    return (slice(ylo, yhi), slice(xlo, xhi)), values / total


def spiral_stamp(x0, y0, h_pix, q, angle_deg, shape, n_arms: int = 2, pitch_deg: float = 15.0,
                 amplitude: float = 0.7, arm_phase_rad: float = 0.0, max_half: int = 300):
    """Unit-sum exponential disc with ``n_arms`` logarithmic spiral arms (see the module docstring)."""
    q = float(np.clip(q, 0.1, 1.0))
    half = int(np.clip(np.ceil(6.0 * h_pix), 8, max_half))
    over = _oversampling(h_pix)
    full = _stamp_grid(x0, y0, half, None, over)
    grid = _stamp_grid(x0, y0, half, shape, over)
    if grid is None:
        return None
    cot_pitch = 1.0 / np.tan(np.deg2rad(pitch_deg))

    def evaluate(xs, ys):
        xx, yy = _rotate(xs, ys, angle_deg)
        yd = yy / q  # deprojected disc-plane coordinates
        r = np.sqrt(xx * xx + yd * yd)
        phi = np.arctan2(yd, xx)
        rr = np.maximum(r / max(h_pix, 1e-3), 1e-3)
        arms = 1.0 + amplitude * np.cos(n_arms * (phi - np.log(rr) * cot_pitch) + arm_phase_rad)
        # arms fade into the centre, where the disc is smooth
        weight = 1.0 - np.exp(-((rr / 0.7) ** 2))
        return np.exp(-rr) * (1.0 + weight * (arms - 1.0))

    (ylo, yhi, xlo, xhi), xs, ys = grid
    values = _rebin(evaluate(xs, ys), yhi - ylo, xhi - xlo, over)
    _, fxs, fys = full
    total = evaluate(fxs, fys).sum() / over**2
    if not total > 0:
        return None
    return (slice(ylo, yhi), slice(xlo, xhi)), values / total


def add_stamp(frames: dict[str, np.ndarray], stamp, fluxes: dict[str, float]) -> None:
    """Add a unit-sum stamp to every band's frame with that band's flux (e-/s)."""
    if stamp is None:
        return
    sl, values = stamp
    for band, frame in frames.items():
        frame[sl] += fluxes[band] * values


def add_point_source(frames: dict[str, np.ndarray], x0: float, y0: float, fluxes: dict[str, float]) -> None:
    """Add a point source at sub-pixel position ``(x0, y0)`` by bilinear sharing over four pixels."""
    ix, iy = int(np.floor(x0)), int(np.floor(y0))
    fx, fy = x0 - ix, y0 - iy
    for band, frame in frames.items():
        ny, nx = frame.shape
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                if 0 <= iy + dy < ny and 0 <= ix + dx < nx:
                    frame[iy + dy, ix + dx] += fluxes[band] * wx * wy


def add_diffraction_spikes(frames, x0, y0, fluxes, length_pix: float, fraction: float = 0.02,
                           angle_deg: float = 45.0) -> None:
    """Add four thin diffraction-like spikes (a fraction of the star's flux) along two orthogonal directions."""
    t = np.arange(1, int(length_pix))
    weights = np.exp(-t / (0.3 * length_pix))
    weights = weights / (4.0 * weights.sum())
    for k in range(4):
        a = np.deg2rad(angle_deg + 90.0 * k)
        xs, ys = x0 + t * np.cos(a), y0 + t * np.sin(a)
        for xi, yi, w in zip(xs, ys, weights):
            add_point_source(frames, xi, yi, {b: fraction * f * w for b, f in fluxes.items()})


def convolve_frame(frame: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """Convolve a frame with a PSF (overlap-add FFT), same shape."""
    from scipy.signal import oaconvolve

    return oaconvolve(frame, psf, mode="same")
