"""Deflection maps on a FITS grid: compute them from a lens model, write and read them, use them as a lens model.

A deflection map is the pair of images ``alpha_x, alpha_y`` (arcsec, normalised to ``D_ds / D_s = 1``) sampled at
the pixel centres of a celestial FITS WCS, the form in which the Frontier Fields lens models are distributed
(Lotz et al. 2017; https://archive.stsci.edu/prepds/frontier/lensmodels/). :class:`DeflectionMap` holds them and
behaves as a lens model (``deflection``, ``hessian``, ``convergence``, ``ray_trace``), so a user's own maps can
stand in for a LensTool file.

Frames and conventions
----------------------
*Model frame* (``docs/architecture.md``): positions ``x, y`` in arcsec, ``x`` to the West, ``y`` to the North,
around the model's reference ``(RA0, Dec0)`` with LensTool's relation ``x = -(RA - RA0) cos(Dec0) 3600``,
``y = (Dec - Dec0) 3600``. In memory, :attr:`DeflectionMap.alpha_x` / ``alpha_y`` are the West / North components.

*Files* (HFF convention): each map is the deflection component **along a pixel axis of the image**, in arcsec:
``ALPHA_X`` along +x (increasing column index, FITS axis 1), ``ALPHA_Y`` along +y (increasing row index, FITS axis
2), so that the lens equation in pixel units reads ``beta_pix = theta_pix - ALPHA / pixel_scale`` for
``D_ds / D_s = 1``. Precisely, with ``M`` the 2 x 2 matrix mapping a pixel displacement to a model-frame
displacement (arcsec) at that pixel (:func:`local_pixel_matrices`) and ``s_i = |M[:, i]|`` the pixel scale along
axis ``i``,

    alpha_model = M (ALPHA_X / s_1, ALPHA_Y / s_2),          ALPHA_i = s_i (M^-1 alpha_model)_i .

For a North-up, East-left image (``CD1_1 < 0``, the usual HST orientation, and what :func:`tan_wcs` makes) ``M``
is ``s I`` (to ~3e-4 at 100" from the reference, where meridians converge) and the file components are the West /
North components; for rotated images the conversion above is applied, pixel by pixel, on reading and writing.

Header keywords written (and read when present): ``BUNIT = 'arcsec'`` (``'pixel'`` is accepted on reading and
converted), ``DDSDS`` (the ``D_ds / D_s`` the values are normalised to; 1, the HFF convention; other values are
divided out on reading), ``ZLENS``, ``ALPHAAX`` (``'X'`` or ``'Y'``), ``ALPHAFRM = 'PIXEL'``, ``REF_RA`` /
``REF_DEC`` (the model-frame reference; the WCS ``CRVAL`` when absent), ``LENSEQ = 'beta = theta - alpha'``.

Two layouts are read: one file with image extensions ``ALPHA_X`` and ``ALPHA_Y`` (what
:func:`write_deflection_fits` writes), or two HFF-style files ``<name>_x.fits`` / ``<name>_y.fits`` (also
``..._x-arcsec-deflect.fits``) whose primary HDU holds the image.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from lenssearch.errors import InputFileError, LensSearchError
from lenssearch.io import atomic_path
from lenssearch.lensing.cosmology import Cosmology
from lenssearch.lensing.lenstool import radec_to_xy, xy_to_radec

#: Extension names of the single-file layout.
EXTENSIONS = ("ALPHA_X", "ALPHA_Y")

#: Rows of the map evaluated per call of the lens model (bounds memory and paces the progress bar).
ROWS_PER_CHUNK = 64


# ------------------------------------------------------------------------------------------------ frames
def tan_wcs(center_radec: Sequence[float], shape: tuple[int, int], pixel_scale_arcsec: float):
    """A North-up, East-left gnomonic (TAN) WCS of ``shape = (ny, nx)`` pixels centred on ``center_radec``.

    The centre of the image (pixel ``((nx - 1) / 2, (ny - 1) / 2)``, 0-based) is at ``center_radec``.
    """
    from astropy.wcs import WCS

    ny, nx = shape
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [float(center_radec[0]), float(center_radec[1])]
    wcs.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]  # FITS pixels are 1-based
    wcs.wcs.cdelt = [-pixel_scale_arcsec / 3600.0, pixel_scale_arcsec / 3600.0]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.radesys = "ICRS"
    wcs.pixel_shape = (nx, ny)
    return wcs


def pixel_to_model_matrix(wcs, shape: tuple[int, int], reference_radec: Sequence[float]) -> np.ndarray:
    """The matrix ``M`` (arcsec per pixel) mapping a pixel displacement ``(dcol, drow)`` to a model-frame one.

    Evaluated by central differences through the full WCS at the centre of the map.
    """
    ny, nx = shape
    c0, r0 = (nx - 1) / 2.0, (ny - 1) / 2.0
    cols = np.array([c0 - 0.5, c0 + 0.5, c0, c0])
    rows = np.array([r0, r0, r0 - 0.5, r0 + 0.5])
    ra, dec = wcs.pixel_to_world_values(cols, rows)
    x, y = radec_to_xy(ra, dec, *reference_radec)
    return np.array([[x[1] - x[0], x[3] - x[2]], [y[1] - y[0], y[3] - y[2]]])


def local_pixel_matrices(wcs, shape: tuple[int, int], reference_radec: Sequence[float]) -> np.ndarray:
    """:func:`pixel_to_model_matrix` at every pixel centre: an array ``(2, 2, ny, nx)``.

    Over a wide field the pixel axes turn with respect to the model frame (meridians converge: ~3e-4 rad at 100"
    from the reference at Dec -45), so components along the pixel axes are converted pixel by pixel.
    """
    ny, nx = shape
    out = np.empty((2, 2, ny, nx))
    cols = np.arange(nx, dtype=float)
    for start in range(0, ny, 256):
        stop = min(start + 256, ny)
        rr, cc = np.meshgrid(np.arange(start, stop, dtype=float), cols, indexing="ij")
        pts = [
            radec_to_xy(*wcs.pixel_to_world_values(c, r), *reference_radec)
            for c, r in ((cc - 0.5, rr), (cc + 0.5, rr), (cc, rr - 0.5), (cc, rr + 0.5))
        ]
        for i in range(2):
            out[i, 0, start:stop] = pts[1][i] - pts[0][i]
            out[i, 1, start:stop] = pts[3][i] - pts[2][i]
    return out


def _pixel_axis_to_model(ax_pix, ay_pix, m):
    """Model-frame components from pixel-axis components with local matrices ``m`` (module docstring)."""
    s1, s2 = np.hypot(m[0, 0], m[1, 0]), np.hypot(m[0, 1], m[1, 1])
    u, v = ax_pix / s1, ay_pix / s2
    return m[0, 0] * u + m[0, 1] * v, m[1, 0] * u + m[1, 1] * v


def _model_to_pixel_axis(ax, ay, m):
    """Inverse of :func:`_pixel_axis_to_model`."""
    s1, s2 = np.hypot(m[0, 0], m[1, 0]), np.hypot(m[0, 1], m[1, 1])
    det = m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]
    return s1 * (m[1, 1] * ax - m[0, 1] * ay) / det, s2 * (-m[1, 0] * ax + m[0, 0] * ay) / det


# ------------------------------------------------------------------------------------------------ the map
@dataclasses.dataclass
class DeflectionMap:
    """Deflection maps on a WCS grid, usable as a lens model.

    Parameters
    ----------
    alpha_x, alpha_y
        Model-frame deflection components (West, North), arcsec, at ``D_ds / D_s = 1``; arrays of shape
        ``(ny, nx)`` indexed ``[row, column]``.
    wcs
        Celestial :class:`astropy.wcs.WCS` of the grid.
    z_lens
        Lens redshift.
    reference_radec
        ``(RA0, Dec0)`` in degrees, origin of the model frame.
    cosmology
        Distances for :meth:`ray_trace` (default ``Cosmology()``).
    source
        Where the map came from (a file name), used in messages.
    z_source
        None for a single-plane map at ``D_ds / D_s = 1`` (scaled to any source redshift). For a multi-plane
        model, the one source redshift this map is the effective deflection ``theta - beta`` of (no scaling:
        ``dds_over_ds(z_source) = 1`` and other redshifts raise; header ``ZSOURCE``).

    Notes
    -----
    Between pixel centres the deflection is interpolated by a bicubic spline (``scipy.interpolate.
    RectBivariateSpline``, ``s = 0``); the hessian is the spline's derivative, transformed to the model frame with
    the matrix :func:`pixel_to_model_matrix` of the map centre (its variation over a 200" map, ~3e-4, is far below
    the accuracy of derivatives of a sampled map). Outside the map the methods return NaN.
    """

    alpha_x: np.ndarray
    alpha_y: np.ndarray
    wcs: object
    z_lens: float
    reference_radec: tuple[float, float]
    cosmology: Cosmology = dataclasses.field(default_factory=Cosmology)
    source: str = "<memory>"
    z_source: float | None = None

    def __post_init__(self) -> None:
        self.alpha_x = np.asarray(self.alpha_x, dtype=float)
        self.alpha_y = np.asarray(self.alpha_y, dtype=float)
        if self.alpha_x.ndim != 2 or self.alpha_x.shape != self.alpha_y.shape:
            raise LensSearchError(
                f"{self.source}: deflection maps must be two 2-D images of one shape, got "
                f"{self.alpha_x.shape} and {self.alpha_y.shape}"
            )
        if min(self.alpha_x.shape) < 4:
            raise LensSearchError(f"{self.source}: deflection map too small {self.alpha_x.shape} (need >= 4 x 4)")
        if not (np.all(np.isfinite(self.alpha_x)) and np.all(np.isfinite(self.alpha_y))):
            raise LensSearchError(f"{self.source}: deflection map contains NaN or infinite values")
        self.z_lens = float(self.z_lens)
        self.reference_radec = (float(self.reference_radec[0]), float(self.reference_radec[1]))
        self.matrix = pixel_to_model_matrix(self.wcs, self.shape, self.reference_radec)
        self._inverse = np.linalg.inv(self.matrix)
        self._splines = None

    # --------------------------------------------------------------------------------------- geometry
    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)``."""
        return self.alpha_x.shape

    @property
    def pixel_scale_arcsec(self) -> float:
        """Mean pixel scale (arcsec)."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix))))

    def pixel_grid_xy(self) -> tuple[np.ndarray, np.ndarray]:
        """Model-frame positions (arcsec) of every pixel centre, two arrays of shape ``(ny, nx)``."""
        ny, nx = self.shape
        rows, cols = np.mgrid[0:ny, 0:nx]
        ra, dec = self.wcs.pixel_to_world_values(cols.astype(float), rows.astype(float))
        return radec_to_xy(ra, dec, *self.reference_radec)

    def xy_to_pixel(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """0-based ``(column, row)`` pixel coordinates of model-frame positions (through the full WCS)."""
        ra, dec = xy_to_radec(x, y, *self.reference_radec)
        col, row = self.wcs.world_to_pixel_values(ra, dec)
        return np.asarray(col, dtype=float), np.asarray(row, dtype=float)

    # --------------------------------------------------------------------------------------- lensing
    def _spline(self):
        if self._splines is None:
            from scipy.interpolate import RectBivariateSpline

            ny, nx = self.shape
            rows, cols = np.arange(ny, dtype=float), np.arange(nx, dtype=float)
            self._splines = tuple(
                RectBivariateSpline(rows, cols, a, kx=3, ky=3, s=0) for a in (self.alpha_x, self.alpha_y)
            )
        return self._splines

    def _evaluate(self, x, y, derivative: bool):
        x, y = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
        shape = x.shape
        col, row = self.xy_to_pixel(x.ravel(), y.ravel())
        ny, nx = self.shape
        inside = (col >= -0.5) & (col <= nx - 0.5) & (row >= -0.5) & (row <= ny - 0.5)
        c = np.clip(col, 0, nx - 1)
        r = np.clip(row, 0, ny - 1)
        sx, sy = self._spline()
        if not derivative:
            out = [sx.ev(r, c), sy.ev(r, c)]
        else:
            # d alpha / d(x, y) = d alpha / d(col, row) . M^-1
            inv = self._inverse
            out = []
            for s in (sx, sy):
                d_col, d_row = s.ev(r, c, dy=1), s.ev(r, c, dx=1)
                out.append((d_col * inv[0, 0] + d_row * inv[1, 0], d_col * inv[0, 1] + d_row * inv[1, 1]))
        flat = []
        for item in out:
            for arr in item if isinstance(item, tuple) else (item,):
                arr = np.where(inside, arr, np.nan)
                flat.append(arr.reshape(shape))
        return flat

    def deflection(self, x, y):
        """Deflection ``(alpha_x, alpha_y)`` (arcsec, model frame, ``D_ds / D_s = 1``) by bicubic interpolation."""
        ax, ay = self._evaluate(x, y, derivative=False)
        return ax, ay

    def hessian(self, x, y):
        """``(f_xx, f_xy, f_yy)`` from the derivatives of the interpolating spline (``f_xy`` symmetrised)."""
        axx, axy, ayx, ayy = self._evaluate(x, y, derivative=True)
        return axx, 0.5 * (axy + ayx), ayy

    def convergence(self, x, y):
        """``kappa = (f_xx + f_yy) / 2``."""
        f_xx, _, f_yy = self.hessian(x, y)
        return 0.5 * (f_xx + f_yy)

    def dds_over_ds(self, z_s: float) -> float:
        """``D_ds / D_s`` for a source at ``z_s`` (1 for the ``z_source`` of a multi-plane map)."""
        if self.z_source is not None:
            if abs(float(z_s) - self.z_source) > 1e-6:
                raise LensSearchError(
                    f"{self.source}: multi-plane deflection map for z_s = {self.z_source:g} only, asked for "
                    f"z_s = {float(z_s):g} (use the map of that source redshift)"
                )
            return 1.0
        return self.cosmology.dds_over_ds(self.z_lens, z_s)

    def ray_trace(self, x, y, z_s: float):
        """Source-plane positions ``beta = theta - D_ds/D_s alpha(theta)`` (arcsec)."""
        ax, ay = self.deflection(x, y)
        f = self.dds_over_ds(z_s)
        return np.asarray(x) - f * ax, np.asarray(y) - f * ay

    def jacobian(self, x, y, z_s: float):
        """``(a11, a12, a22)`` of the lens-equation Jacobian for a source at ``z_s``."""
        f_xx, f_xy, f_yy = self.hessian(x, y)
        f = self.dds_over_ds(z_s)
        return 1.0 - f * f_xx, -f * f_xy, 1.0 - f * f_yy

    def hessian_maps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(f_xx, f_xy, f_yy)`` at every pixel centre (finite differences of the maps, ``numpy.gradient``).

        Second-order central differences in the interior, first order on the border; the pixel-frame derivatives
        are turned into model-frame ones with ``M^-1``. This is how convergence and shear are derived from
        deflection maps (Angora et al. 2023, Sect. 3.1) and is much faster than the spline on whole maps.
        """
        inv = self._inverse
        out = []
        for a in (self.alpha_x, self.alpha_y):
            d_row, d_col = np.gradient(a)
            out.append((d_col * inv[0, 0] + d_row * inv[1, 0], d_col * inv[0, 1] + d_row * inv[1, 1]))
        (axx, axy), (ayx, ayy) = out
        return axx, 0.5 * (axy + ayx), ayy

    # --------------------------------------------------------------------------------------- file frame
    def pixel_axis_components(self) -> tuple[np.ndarray, np.ndarray]:
        """The maps in the file convention (components along the pixel axes, arcsec); see the module docstring."""
        m = local_pixel_matrices(self.wcs, self.shape, self.reference_radec)
        return _model_to_pixel_axis(self.alpha_x, self.alpha_y, m)

    @classmethod
    def from_pixel_axis_components(cls, ax_pix, ay_pix, wcs, z_lens, reference_radec, cosmology=None,
                                   source: str = "<memory>", z_source: float | None = None) -> "DeflectionMap":
        """Build from maps in the file convention (components along the pixel axes, arcsec)."""
        ax_pix = np.asarray(ax_pix, dtype=float)
        ay_pix = np.asarray(ay_pix, dtype=float)
        m = local_pixel_matrices(wcs, ax_pix.shape, reference_radec)
        ax, ay = _pixel_axis_to_model(ax_pix, ay_pix, m)
        return cls(ax, ay, wcs, z_lens, reference_radec, cosmology if cosmology is not None else Cosmology(), source,
                   z_source)


# ------------------------------------------------------------------------------------------------ compute
def _unwrap_model(model, reference_radec, z_lens, cosmology):
    """Accept a LensToolModel (``.model``, ``.reference_radec``) or a LensModel plus an explicit reference."""
    inner = getattr(model, "model", model)
    if hasattr(inner, "planes") and not hasattr(inner, "deflection"):
        raise LensSearchError(
            f"compute_deflection_map: {inner!r} has lens planes at several redshifts; no single map at D_ds/D_s = 1 "
            "describes it: make one map per source redshift from model.at_source_redshift(z_s)"
        )
    ref = reference_radec if reference_radec is not None else getattr(model, "reference_radec", None)
    if ref is None:
        raise LensSearchError("compute_deflection_map: reference_radec is required for a bare lens model")
    z = z_lens if z_lens is not None else getattr(model, "z_lens", None) or getattr(inner, "z_lens", None)
    if z is None:
        raise LensSearchError("compute_deflection_map: z_lens is required")
    cosmo = cosmology or getattr(model, "cosmology", None) or getattr(inner, "cosmology", None) or Cosmology()
    return inner, tuple(ref), float(z), cosmo


def compute_deflection_map(
    model,
    wcs,
    shape: tuple[int, int],
    reference_radec: Sequence[float] | None = None,
    *,
    z_lens: float | None = None,
    cosmology: Cosmology | None = None,
    progress: bool = True,
) -> DeflectionMap:
    """Evaluate a lens model at the pixel centres of ``wcs``.

    Each pixel centre goes pixel -> (RA, Dec) through the full WCS -> model frame (LensTool relation around the
    model's reference), where the model's deflection is evaluated.

    Parameters
    ----------
    model
        A :class:`~lenssearch.lensing.model.LensModel` or a LensTool model (``.model``, ``.reference_radec``,
        ``.z_lens``, ``.cosmology``), or anything with ``deflection(x, y)``.
    wcs, shape
        The celestial WCS and ``(ny, nx)`` of the map.
    reference_radec
        Origin of the model frame (degrees); taken from ``model.reference_radec`` when omitted.
    z_lens, cosmology
        Override those of the model.
    progress
        Show a tqdm progress bar over row chunks.

    Returns
    -------
    DeflectionMap
    """
    from tqdm.auto import tqdm

    inner, ref, z, cosmo = _unwrap_model(model, reference_radec, z_lens, cosmology)
    ny, nx = shape
    alpha_x = np.empty((ny, nx))
    alpha_y = np.empty((ny, nx))
    cols = np.arange(nx, dtype=float)
    starts = range(0, ny, ROWS_PER_CHUNK)
    for start in tqdm(starts, desc="deflection map", unit="chunk", disable=not progress, leave=False):
        stop = min(start + ROWS_PER_CHUNK, ny)
        rr, cc = np.meshgrid(np.arange(start, stop, dtype=float), cols, indexing="ij")
        ra, dec = wcs.pixel_to_world_values(cc, rr)
        x, y = radec_to_xy(ra, dec, *ref)
        alpha_x[start:stop], alpha_y[start:stop] = inner.deflection(x, y)
    return DeflectionMap(alpha_x, alpha_y, wcs, z, ref, cosmo)


# ------------------------------------------------------------------------------------------------ FITS I/O
def _header_for(dmap: DeflectionMap, axis: str):
    header = dmap.wcs.to_header()
    header["BUNIT"] = ("arcsec", "deflection angle unit")
    header["ALPHAAX"] = (axis, f"deflection component along the +{axis.lower()} pixel axis")
    header["ALPHAFRM"] = ("PIXEL", "components along the image pixel axes (HFF)")
    header["DDSDS"] = (1.0, "values normalised to D_ds/D_s = 1")
    header["ZLENS"] = (dmap.z_lens, "lens redshift")
    header["REF_RA"] = (dmap.reference_radec[0], "[deg] model-frame reference RA")
    header["REF_DEC"] = (dmap.reference_radec[1], "[deg] model-frame reference Dec")
    header["LENSEQ"] = ("beta = theta - alpha", "lens equation (alpha scaled by D_ds/D_s)")
    if dmap.z_source is not None:
        header["ZSOURCE"] = (dmap.z_source, "multi-plane: map of this z_s only")
    header["H0"] = (dmap.cosmology.H0, "[km/s/Mpc] cosmology of the model")
    header["OM0"] = (dmap.cosmology.Om0, "matter density of the model")
    return header


def split_paths(path: str | Path) -> tuple[Path, Path]:
    """The HFF-style pair ``<stem>_x.fits`` / ``<stem>_y.fits`` for ``path = <stem>.fits``."""
    path = Path(path)
    stem = path.name[: -len(".fits")] if path.name.endswith(".fits") else path.name
    return path.with_name(f"{stem}_x.fits"), path.with_name(f"{stem}_y.fits")


def write_deflection_fits(
    dmap: DeflectionMap, path: str | Path, *, split: bool = False, dtype=np.float32
) -> list[Path]:
    """Write a deflection map as FITS (atomically).

    Parameters
    ----------
    dmap
        The map.
    path
        Output file. With ``split=False`` one file with an empty primary HDU and image extensions ``ALPHA_X``,
        ``ALPHA_Y``; with ``split=True`` two HFF-style files ``<stem>_x.fits`` and ``<stem>_y.fits``.
    split
        Choose the layout.
    dtype
        Pixel type; float32 (as the HFF maps) keeps ~1e-7 relative precision, float64 for exact round trips.

    Returns
    -------
    list of Path
        The files written.
    """
    from astropy.io import fits

    ax, ay = dmap.pixel_axis_components()
    hdus = [
        fits.ImageHDU(ax.astype(dtype), header=_header_for(dmap, "X"), name="ALPHA_X"),
        fits.ImageHDU(ay.astype(dtype), header=_header_for(dmap, "Y"), name="ALPHA_Y"),
    ]
    written = []
    if split:
        for target, hdu in zip(split_paths(path), hdus):
            with atomic_path(target) as tmp:
                fits.PrimaryHDU(hdu.data, header=hdu.header).writeto(tmp, output_verify="exception")
            written.append(target)
    else:
        primary = fits.PrimaryHDU()
        primary.header["ZLENS"] = (dmap.z_lens, "lens redshift")
        primary.header["DDSDS"] = (1.0, "deflections normalised to D_ds/D_s = 1")
        if dmap.z_source is not None:
            primary.header["ZSOURCE"] = (dmap.z_source, "multi-plane: map of this z_s only")
        primary.header["COMMENT"] = "Deflection map (arcsec) in extensions ALPHA_X, ALPHA_Y; see lenssearch docs."
        with atomic_path(path) as tmp:
            fits.HDUList([primary, *hdus]).writeto(tmp, output_verify="exception")
        written.append(Path(path))
    return written


def _find_pair(path: Path) -> tuple[Path, Path] | None:
    """The ``_y`` partner of an HFF-style ``_x`` file name (or the pair for a ``<stem>.fits`` name)."""
    match = re.search(r"_x(?=[-_.][^/]*$|$)", path.name)
    if match is not None:
        partner = path.with_name(path.name[: match.start()] + "_y" + path.name[match.end():])
        if partner.exists():
            return path, partner
    px, py = split_paths(path)
    if px.exists() and py.exists():
        return px, py
    return None


def _image_hdu(hdul, name: str | None, path: Path):
    if name is None:
        for hdu in hdul:
            if hdu.data is not None and getattr(hdu, "is_image", False):
                return hdu
        raise InputFileError(f"{path}: no image data in any HDU")
    try:
        return hdul[name]
    except KeyError:
        raise InputFileError(f"{path}: missing extension '{name}' (expected extensions {list(EXTENSIONS)})") from None


def _celestial_wcs(header, path: Path):
    from astropy.wcs import WCS, FITSFixedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            wcs = WCS(header, naxis=2)
        except Exception as exc:  # astropy raises several types for broken headers
            raise InputFileError(f"{path}: invalid WCS ({exc})") from None
    if not wcs.has_celestial or "CTYPE1" not in header:
        raise InputFileError(f"{path}: no celestial WCS (CTYPE1/CTYPE2 RA/Dec keywords) in the deflection map")
    return wcs.celestial


def _to_arcsec(data: np.ndarray, header, wcs, axis: int, path: Path) -> np.ndarray:
    unit = str(header.get("BUNIT", "arcsec")).strip().lower()
    if unit in ("arcsec", "arcsecond", "arcseconds", '"', ""):
        return data
    if unit in ("pix", "pixel", "pixels"):
        scale = np.abs(wcs.proj_plane_pixel_scales()[axis].to_value("arcsec"))
        return data * scale
    raise InputFileError(f"{path}: BUNIT '{header.get('BUNIT')}' not understood (expected arcsec or pixel)")


def read_deflection_fits(
    path: str | Path,
    path_y: str | Path | None = None,
    *,
    z_lens: float | None = None,
    reference_radec: Sequence[float] | None = None,
    cosmology: Cosmology | None = None,
) -> DeflectionMap:
    """Read a deflection map written by :func:`write_deflection_fits` or distributed HFF-style.

    Parameters
    ----------
    path
        A file with extensions ``ALPHA_X``/``ALPHA_Y``; or the ``_x`` file of an HFF pair (the ``_y`` partner is
        found by name); or ``<stem>.fits`` when ``<stem>_x.fits`` and ``<stem>_y.fits`` exist.
    path_y
        The ``y`` file, when its name does not follow the pattern.
    z_lens
        Lens redshift; required when the header has no ``ZLENS`` (HFF files usually do not).
    reference_radec
        Model-frame origin; default ``REF_RA``/``REF_DEC`` of the header, else the WCS ``CRVAL``.
    cosmology
        For ray tracing; default from the header ``H0``/``OM0`` when present, else ``Cosmology()``.

    Raises
    ------
    InputFileError
        Missing file or extension, no celestial WCS, maps of different shapes or WCS, NaN values, unknown units,
        missing lens redshift; the message names the file.
    """
    from astropy.io import fits

    path = Path(path)
    if path_y is not None:
        pair: tuple[Path, Path] | None = (path, Path(path_y))
    elif path.exists():
        pair = _find_pair(path)
    else:
        pair = _find_pair(path)
        if pair is None:
            raise InputFileError(f"{path}: no such deflection map (nor {split_paths(path)[0].name} / _y pair)")
    from lenssearch.io import open_fits

    images, headers = [], []
    if pair is None:
        with open_fits(path, "deflection map") as hdul:  # a truncated file is refused, named
            for name in EXTENSIONS:
                hdu = _image_hdu(hdul, name, path)
                images.append((np.array(hdu.data, dtype=float), path))
                headers.append(hdu.header.copy())
    else:
        for p in pair:
            if not p.exists():
                raise InputFileError(f"{p}: no such deflection map file")
            with open_fits(p, "deflection map") as hdul:
                hdu = _image_hdu(hdul, None, p)
                images.append((np.array(hdu.data, dtype=float), p))
                headers.append(hdu.header.copy())

    arrays = []
    wcs_list = []
    for axis, ((data, p), header) in enumerate(zip(images, headers)):
        if data.ndim != 2:
            raise InputFileError(f"{p}: deflection map must be a 2-D image, got shape {data.shape}")
        if not np.all(np.isfinite(data)):
            raise InputFileError(f"{p}: deflection map contains {np.count_nonzero(~np.isfinite(data))} NaN/inf pixels")
        wcs = _celestial_wcs(header, p)
        arrays.append(_to_arcsec(data, header, wcs, axis, p))
        wcs_list.append(wcs)
    (ax, px), (ay, py) = (arrays[0], images[0][1]), (arrays[1], images[1][1])
    if ax.shape != ay.shape:
        raise InputFileError(f"{px}, {py}: ALPHA_X and ALPHA_Y have different shapes {ax.shape} != {ay.shape}")
    if not np.allclose(wcs_list[0].wcs.crval, wcs_list[1].wcs.crval) or not np.allclose(
        wcs_list[0].wcs.crpix, wcs_list[1].wcs.crpix
    ):
        raise InputFileError(f"{px}, {py}: ALPHA_X and ALPHA_Y have different WCS")
    header = headers[0]
    norm = float(header.get("DDSDS", 1.0))
    if not norm > 0:
        raise InputFileError(f"{px}: DDSDS must be positive, got {norm}")
    if z_lens is None:
        if "ZLENS" not in header:
            raise InputFileError(f"{px}: no ZLENS keyword in the header; pass the lens redshift (z_lens)")
        z_lens = float(header["ZLENS"])
    if reference_radec is None:
        if "REF_RA" in header and "REF_DEC" in header:
            reference_radec = (float(header["REF_RA"]), float(header["REF_DEC"]))
        else:
            reference_radec = tuple(float(v) for v in wcs_list[0].wcs.crval)
    if cosmology is None:
        cosmology = Cosmology(float(header["H0"]), float(header["OM0"])) if "H0" in header else Cosmology()
    frame = str(header.get("ALPHAFRM", "PIXEL")).strip().upper()
    if frame != "PIXEL":
        raise InputFileError(f"{px}: ALPHAFRM '{frame}' not supported (expected PIXEL, the HFF convention)")
    z_source = float(header["ZSOURCE"]) if "ZSOURCE" in header else None
    return DeflectionMap.from_pixel_axis_components(
        ax / norm, ay / norm, wcs_list[0], z_lens, reference_radec, cosmology, source=str(px), z_source=z_source
    )
