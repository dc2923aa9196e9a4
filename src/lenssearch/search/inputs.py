"""The pixels a search reads: the band images of a field, or a stack of cutouts (catalogues: :mod:`.catalogues`).

A *field* is one FITS image per band (``image_<BAND>.fits`` in a field directory, see docs/architecture.md), all
on the same pixel grid with a celestial WCS. The images are opened memory-mapped (``astropy.io.fits.open(...,
memmap=True)``), so cutting a cutout reads only the pixels it needs: the resident memory of a search does not grow
with the size of the field.

A *stack* is a cube of cutouts N x S x S x B (FITS, or HDF5 with a ``cutouts`` dataset as in the knowledge base),
read slice by slice.

Bad input (no WCS, bands of different shapes or misaligned grids, a stack of the wrong shape) raises an
:class:`~lenssearch.errors.InputFileError` naming the file; positions outside the image are a per-row flag.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning

from lenssearch.errors import InputFileError
from lenssearch.fields.bands import check_band_keywords
from lenssearch.io import fits_open_checked
from lenssearch.kb.statistics import MAD_TO_SIGMA

#: Column names accepted for right ascension / declination / identifiers (first match wins, case-insensitive).

#: Column names accepted for right ascension / declination / identifiers (first match wins, case-insensitive).
RA_NAMES = ("ra", "alpha_j2000", "raj2000", "ra_deg")
DEC_NAMES = ("dec", "delta_j2000", "dej2000", "dec_deg")
ID_NAMES = ("id", "member_id", "source_id", "object_id", "name")

#: Cutouts cut together in every band (FieldImages.cut): 8 of 128 x 128 x 3 float32 (1.5 MB) stay in a core's L2
#: cache while their three bands are interleaved (~15% less time than one band of the whole batch at a time).
CUT_GROUP = 8


class SearchInputError(InputFileError):
    """A field, catalogue or cutout stack that cannot be searched as given."""


def find_column(table: Table, names: Sequence[str]) -> str | None:
    """The first column of ``table`` named (case-insensitively) one of ``names``, or None."""
    lower = {c.lower(): c for c in table.colnames}
    for name in names:
        if name in lower:
            return lower[name]
    return None


# ----------------------------------------------------------------------------------------------- field images
def _first_image_hdu(hdul: fits.HDUList, path: Path) -> fits.ImageHDU | fits.PrimaryHDU:
    for hdu in hdul:
        if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU)) and hdu.header.get("NAXIS", 0) == 2:
            return hdu
    raise SearchInputError(f"{path}: no 2-D image HDU (expected one band image in electrons/s)")


class FieldImages:
    """Memory-mapped band images of one field, checked for WCS and alignment.

    Parameters
    ----------
    paths
        Band name -> FITS image path, in the band order of the search (e.g. F435W, F606W, F814W).
    align_tolerance_pix
        Largest allowed offset, in pixels, between the sky positions of the same pixel in two bands.
    check_bands
        Refuse an image whose ``FILTER``/``FILTER1``/``FILTER2``/``PHOTPLAM`` keywords say it is another band
        (:func:`lenssearch.fields.bands.check_band_keywords`); False: trust the order given.

    Raises
    ------
    SearchInputError
        A file without a celestial WCS, bands of different shapes, or grids that are not aligned.
    """

    def __init__(self, paths: dict[str, Path], align_tolerance_pix: float = 0.01, check_bands: bool = True):
        self.bands = tuple(paths)
        self.paths = {band: Path(p) for band, p in paths.items()}
        self._hduls: list[fits.HDUList] = []
        self.data: list[np.ndarray] = []
        wcss: list[WCS] = []
        try:
            for band, path in self.paths.items():
                if not path.exists():
                    raise SearchInputError(f"{path}: no such image for band {band}")
                hdul = fits_open_checked(path, f"FITS image of band {band}", memmap=True)  # truncation refused
                self._hduls.append(hdul)
                hdu = _first_image_hdu(hdul, path)
                if check_bands:
                    check_band_keywords(path, band, self.bands, hdu.header, hdul[0].header)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FITSFixedWarning)
                    wcs = WCS(hdu.header)
                if not wcs.has_celestial or wcs.celestial.naxis != 2:
                    raise SearchInputError(
                        f"{path}: no celestial WCS in the header (band {band}); a field image needs CTYPE1/2, "
                        "CRVAL, CRPIX and CD or CDELT keywords"
                    )
                self.data.append(hdu.data)
                wcss.append(wcs.celestial)
            shapes = {band: tuple(d.shape) for band, d in zip(self.bands, self.data)}
            if len(set(shapes.values())) != 1:
                raise SearchInputError(
                    "bands of different sizes: "
                    + ", ".join(f"{self.paths[b]} {s[1]}x{s[0]}" for b, s in shapes.items())
                    + "; all bands must be on the same pixel grid"
                )
            self.shape: tuple[int, int] = next(iter(shapes.values()))
            self.wcs = wcss[0]
            ny, nx = self.shape
            probe_x = np.array([0.0, nx - 1.0, 0.0, nx - 1.0, (nx - 1) / 2])
            probe_y = np.array([0.0, 0.0, ny - 1.0, ny - 1.0, (ny - 1) / 2])
            for band, wcs in zip(self.bands[1:], wcss[1:]):
                ra, dec = wcs.all_pix2world(probe_x, probe_y, 0)
                x, y = self.wcs.all_world2pix(ra, dec, 0)
                offset = float(np.max(np.hypot(x - probe_x, y - probe_y)))
                if not np.isfinite(offset) or offset > align_tolerance_pix:
                    raise SearchInputError(
                        f"{self.paths[band]}: WCS not aligned with {self.paths[self.bands[0]]} "
                        f"(offset {offset:.3g} pixels > {align_tolerance_pix}); resample the bands to one grid"
                    )
        except BaseException:
            self.close()
            raise
        scales = np.sqrt(np.abs(np.linalg.det(self.wcs.pixel_scale_matrix))) * 3600.0
        self.pixel_scale_arcsec = float(scales)
        self._noise: np.ndarray | None = None

    # --------------------------------------------------------------------------------- context management
    def close(self) -> None:
        """Close the memory maps."""
        self.data = []
        for hdul in self._hduls:
            hdul.close()
        self._hduls = []

    def __enter__(self) -> "FieldImages":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @classmethod
    def from_field_dir(cls, field_dir: str | Path, bands: Sequence[str], check_bands: bool = True) -> "FieldImages":
        """Open ``image_<BAND>.fits`` for every band of a field directory."""
        field_dir = Path(field_dir)
        if not field_dir.is_dir():
            raise SearchInputError(f"{field_dir}: no such field directory")
        return cls({band: field_dir / f"image_{band}.fits" for band in bands}, check_bands=check_bands)

    # --------------------------------------------------------------------------------- geometry
    def world_to_pixel(self, ra_deg: np.ndarray, dec_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Zero-based pixel coordinates of sky positions (degrees)."""
        x, y = self.wcs.all_world2pix(np.asarray(ra_deg, float), np.asarray(dec_deg, float), 0)
        return np.asarray(x), np.asarray(y)

    def pixel_to_world(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sky positions (degrees) of zero-based pixel coordinates."""
        ra, dec = self.wcs.all_pix2world(np.asarray(x, float), np.asarray(y, float), 0)
        return np.asarray(ra), np.asarray(dec)

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """True where the pixel position lies on the image."""
        ny, nx = self.shape
        x = np.asarray(x)
        y = np.asarray(y)
        return np.isfinite(x) & np.isfinite(y) & (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)

    @property
    def noise_sigma(self) -> np.ndarray:
        """Per-band pixel noise (e-/s), estimated once from up to 64 rows spread over each image."""
        if self._noise is None:
            ny, _ = self.shape
            rows = np.unique(np.linspace(0, ny - 1, min(ny, 64)).astype(int))
            sigmas = []
            for band, data in zip(self.bands, self.data):
                sample = np.asarray(data[rows, :], dtype=np.float64)
                diff = np.diff(sample, axis=-1)
                good = np.isfinite(diff) & (sample[:, 1:] != 0) & (sample[:, :-1] != 0)
                if good.sum() < 100:
                    raise SearchInputError(f"{self.paths[band]}: too few finite, non-zero pixels to estimate the noise")
                d = diff[good]
                sigma = MAD_TO_SIGMA * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0)
                if not sigma > 0:
                    raise SearchInputError(f"{self.paths[band]}: zero pixel noise; is the image constant?")
                sigmas.append(sigma)
            self._noise = np.asarray(sigmas, dtype=np.float64)
        return self._noise

    def cut(self, x: np.ndarray, y: np.ndarray, size: int,
            out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Cut ``size`` x ``size`` cutouts centred on pixel positions, in all bands.

        The cutout's pixel ``size // 2`` (both axes) is the image pixel nearest to the position. Pixels off the
        image are zero; the returned fraction says how much of each cutout lies on the image. Cutouts wholly
        inside the image are gathered from a sliding-window view of each band's memory map (only their pixels are
        read), :data:`CUT_GROUP` cutouts at a time in every band; those at an edge are copied one by one,
        zero-padded.

        ``out``: a float32 array of at least n x size x size x B to cut into (a search reuses one per batch: a
        fresh array of that size costs its page faults every time); the cutouts are its first n rows.

        Returns
        -------
        cutouts, inside_fraction
            float32 n x size x size x B, and float64 n.
        """
        x = np.atleast_1d(np.asarray(x, float))
        y = np.atleast_1d(np.asarray(y, float))
        n = x.size
        ny, nx = self.shape
        reused = out is not None
        out = out[:n] if reused else np.zeros((n, size, size, len(self.bands)), dtype=np.float32)
        half = size // 2
        x0 = np.floor(x + 0.5).astype(np.int64) - half
        y0 = np.floor(y + 0.5).astype(np.int64) - half
        xa, ya = np.maximum(x0, 0), np.maximum(y0, 0)
        xb, yb = np.minimum(x0 + size, nx), np.minimum(y0 + size, ny)
        on = (xb > xa) & (yb > ya)
        inside = np.zeros(n)
        inside[on] = (xb - xa)[on] * (yb - ya)[on] / size**2
        full = np.flatnonzero(on & (inside == 1.0))
        partial = np.flatnonzero(on & (inside < 1.0))
        if reused:
            out[np.flatnonzero(inside < 1.0)] = 0.0  # pixels off the image are zero
        windows = [np.lib.stride_tricks.sliding_window_view(data, (size, size)) for data in self.data
                   ] if len(full) else []  # (an image smaller than a cutout has no window)
        for g in range(0, len(full), CUT_GROUP):  # a few cutouts at a time, all bands: they stay in the cache
            rows = full[g : g + CUT_GROUP]
            for b, window in enumerate(windows):
                out[rows, :, :, b] = window[ya[rows], xa[rows]]
        for b, data in enumerate(self.data):
            for i in partial:
                rows, cols = slice(ya[i] - y0[i], yb[i] - y0[i]), slice(xa[i] - x0[i], xb[i] - x0[i])
                out[i, rows, cols, b] = data[ya[i] : yb[i], xa[i] : xb[i]]
        return out, inside


# ----------------------------------------------------------------------------------------------- cutout stacks
class CutoutStack:
    """A stack of cutouts N x S x S x B in a FITS cube or an HDF5 file, read slice by slice.

    FITS: the first 4-D image HDU (numpy order N x S x S x B, or N x B x S x S which is transposed on read),
    and optionally a table HDU with ``id``/``ra``/``dec``/``label`` per cutout. HDF5: the knowledge-base layout
    (``cutouts``, optional ``ids``, ``labels`` and an astropy ``metadata`` table).
    """

    def __init__(self, path: str | Path, n_bands: int):
        self.path = Path(path)
        if not self.path.exists():
            raise SearchInputError(f"{self.path}: no such cutout stack")
        self.n_bands = n_bands
        self._h5 = None
        self._hdul = None
        self.table = Table()
        suffix = self.path.suffix.lower()
        if suffix in (".h5", ".hdf5", ".hdf"):
            self._open_hdf5()
        else:
            self._open_fits()
        shape = self._data.shape
        if len(shape) != 4:
            raise SearchInputError(f"{self.path}: cutouts must be a 4-D array N x S x S x B, got shape {shape}")
        self._channels_first = shape[-1] != n_bands and shape[1] == n_bands
        if shape[-1] != n_bands and not self._channels_first:
            raise SearchInputError(
                f"{self.path}: cutouts have shape {shape}; expected {n_bands} bands last (N x S x S x {n_bands})"
            )
        self.n = int(shape[0])
        if self.n == 0:
            raise SearchInputError(f"{self.path}: the cutout stack is empty; nothing to search")
        self.size = int(shape[2] if self._channels_first else shape[1])
        if "id" not in self.table.colnames:
            self.table["id"] = [f"{self.path.stem}-{i}" for i in range(self.n)]
        for name in ("ra", "dec"):
            if name not in self.table.colnames:
                self.table[name] = np.full(self.n, np.nan)
        if len(self.table) != self.n:
            raise SearchInputError(f"{self.path}: {len(self.table)} catalogue rows for {self.n} cutouts")

    def _open_hdf5(self) -> None:
        import h5py

        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as exc:
            raise SearchInputError(f"{self.path}: not a readable HDF5 file ({exc})") from None
        if "cutouts" not in self._h5:
            raise SearchInputError(f"{self.path}: no 'cutouts' dataset (keys {list(self._h5)})")
        self._data = self._h5["cutouts"]
        table = Table()
        if "metadata" in self._h5:
            try:
                meta = Table.read(self.path, path="metadata")
            except Exception as exc:  # astropy/h5py raise many types for a damaged table
                raise SearchInputError(f"{self.path}: unreadable 'metadata' table ({type(exc).__name__}: {exc})") from None
            for name in ("id", "ra", "dec", "label"):
                if name in meta.colnames:
                    table[name] = meta[name]
        if "ids" in self._h5 and "id" not in table.colnames:
            table["id"] = [v.decode() if isinstance(v, bytes) else str(v) for v in self._h5["ids"][:]]
        if "labels" in self._h5 and "label" not in table.colnames:
            table["label"] = np.asarray(self._h5["labels"][:], dtype=int)
        if "id" in table.colnames:
            table["id"] = [v.decode() if isinstance(v, bytes) else str(v) for v in table["id"]]
        self.table = table

    def _open_fits(self) -> None:
        try:
            self._hdul = fits_open_checked(self.path, "cutout stack (FITS)", memmap=True)
        except InputFileError as exc:
            raise SearchInputError(str(exc)) from None
        cube = None
        for hdu in self._hdul:
            if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU)) and hdu.header.get("NAXIS", 0) == 4:
                cube = hdu.data
                break
        if cube is None:
            raise SearchInputError(f"{self.path}: no 4-D image HDU with the cutouts")
        self._data = cube
        for hdu in self._hdul:
            if isinstance(hdu, fits.BinTableHDU):
                table = Table(hdu.data)
                keep = Table()
                for name in ("id", "ra", "dec", "label"):
                    aliases = {"id": ID_NAMES, "ra": RA_NAMES, "dec": DEC_NAMES}.get(name, ())
                    col = find_column(table, (name,) + aliases)
                    if col is not None:
                        keep[name] = table[col]
                if "id" in keep.colnames:
                    keep["id"] = [str(v).strip() for v in keep["id"]]
                self.table = keep
                break

    def close(self) -> None:
        """Close the file."""
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None
        if self._hdul is not None:
            self._hdul.close()
            self._hdul = None

    def __enter__(self) -> "CutoutStack":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read(self, start: int, stop: int) -> np.ndarray:
        """Cutouts ``start:stop`` as float32 n x S x S x B."""
        try:
            block = np.asarray(self._data[start:stop], dtype=np.float32)
        except (OSError, TypeError, ValueError) as exc:  # a damaged or truncated HDF5 dataset
            raise SearchInputError(
                f"{self.path}: cannot read cutouts {start}-{stop} of the stack ({type(exc).__name__}: {exc}); "
                "is the file truncated?"
            ) from None
        if self._channels_first:
            block = np.ascontiguousarray(np.moveaxis(block, 1, -1))
        return block
