"""One cluster field read for cutting: band images, WCS, members, lens model and deflection map.

Shared by the ``simulate`` and ``negatives`` stages. Checks the contract of ``docs/architecture.md`` on the way
in (bands present and on one pixel grid, North-up WCS, members with ``member_id``, ``ra``, ``dec``) and turns
every violation into one :class:`~lenssearch.errors.LensSearchError` naming the file.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from lenssearch.errors import InputFileError, LensSearchError

#: Tolerance on the WCS alignment: the pixel axes must be West and North to this fraction of a pixel per pixel.
ALIGNMENT_TOLERANCE = 1e-3
REQUIRED_MEMBER_COLUMNS = ("member_id", "ra", "dec")


def _image_wcs(path: Path):
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            header = fits.getheader(path)
            wcs = WCS(header, naxis=2)
        except Exception as exc:  # astropy raises several types for broken headers
            raise InputFileError(f"{path}: cannot read the WCS ({exc})") from None
    if not wcs.has_celestial:
        raise InputFileError(f"{path}: no celestial WCS")
    return wcs.celestial, header


class FieldScene:
    """A field ready for cutting (images memory-mapped).

    Parameters
    ----------
    field
        A :class:`lenssearch.fields.layout.Field`.
    bands
        Band order of the cutouts (``base.bands``).
    with_lens
        Also read the lens model (``model.par``) and the deflection map (needed by ``simulate``).
    """

    def __init__(self, field, bands, with_lens: bool = True) -> None:
        from lenssearch.lensing.deflection_maps import pixel_to_model_matrix

        self.field = field
        self.name = field.name
        self.bands = tuple(bands)
        missing = [b for b in self.bands if b not in field.bands]
        if missing:
            raise InputFileError(f"{field.path}: field '{self.name}' lacks band(s) {missing} (has {list(field.bands)})")
        self.images = []
        wcs0 = None
        for band in self.bands:
            path = field.path / f"image_{band}.fits"
            wcs, header = _image_wcs(path)
            data = field.image(band)
            if data is None or data.ndim != 2:
                raise InputFileError(f"{path}: expected a 2-D image")
            if wcs0 is None:
                wcs0, shape0, path0 = wcs, data.shape, path
            elif data.shape != shape0 or not (
                np.allclose(wcs.wcs.crval, wcs0.wcs.crval, rtol=0, atol=1e-9)
                and np.allclose(wcs.wcs.crpix, wcs0.wcs.crpix, rtol=0, atol=1e-6)
                and np.allclose(wcs.pixel_scale_matrix, wcs0.pixel_scale_matrix, rtol=1e-6, atol=0)
            ):
                raise InputFileError(
                    f"{path}: WCS or shape differs from {path0.name} (bands must share one pixel grid)")
            self.images.append(data)
        self.wcs = wcs0
        self.shape = shape0
        self.zeropoints = [float(field.zeropoints_ab[b]) for b in self.bands]
        self.reference_radec = tuple(field.info.get("reference_radec", wcs0.wcs.crval))
        self.pixel_scale_arcsec = float(field.pixel_scale_arcsec)
        m = pixel_to_model_matrix(self.wcs, self.shape, self.reference_radec)
        s = self.pixel_scale_arcsec
        if not np.allclose(m, np.diag([s, s]), rtol=0, atol=ALIGNMENT_TOLERANCE * s):
            raise InputFileError(
                f"{field.path}: the image WCS of field '{self.name}' is not North-up with {s}\"/pixel "
                f"(pixel -> model-frame matrix {np.round(m, 6).tolist()}); resample it first"
            )
        self.members = self._read_members()
        self.model = None
        self.deflection_map = None
        if with_lens:
            self._read_lens()

    # ------------------------------------------------------------------------------------------ members
    def _read_members(self):
        path = self.field.path / "members.ecsv"
        if not path.exists():
            raise InputFileError(f"{path}: no member catalogue in field '{self.name}'")
        try:
            members = self.field.members
        except Exception as exc:  # astropy raises many types for malformed ECSV
            raise InputFileError(f"{path}: not a readable ECSV table ({exc})") from None
        missing = [c for c in REQUIRED_MEMBER_COLUMNS if c not in members.colnames]
        if missing:
            raise InputFileError(f"{path}: member catalogue lacks column(s) {missing} (has {members.colnames})")
        ra = np.asarray(members["ra"], float)
        dec = np.asarray(members["dec"], float)
        bad = np.flatnonzero(~(np.isfinite(ra) & np.isfinite(dec)))
        if bad.size:
            raise InputFileError(f"{path}: row {int(bad[0]) + 1}: RA/Dec not finite")
        members["member_id"] = np.array([str(v) for v in members["member_id"]])
        col, row = self.wcs.world_to_pixel_values(ra, dec)
        members["pix_col"] = np.asarray(col, float)
        members["pix_row"] = np.asarray(row, float)
        x, y = self.radec_to_xy(ra, dec)
        members["x_model"] = x
        members["y_model"] = y
        return members

    def radec_to_xy(self, ra, dec):
        from lenssearch.lensing.lenstool import radec_to_xy

        return radec_to_xy(ra, dec, *self.reference_radec)

    def member_row(self, member_id: str):
        idx = np.flatnonzero(self.members["member_id"] == str(member_id))
        if idx.size == 0:
            raise InputFileError(f"{self.field.path}: member '{member_id}' of a critical-line catalogue is not in "
                                 "members.ecsv")
        return self.members[int(idx[0])]

    # ------------------------------------------------------------------------------------------ lens
    def _read_lens(self) -> None:
        from lenssearch.lensing.lenstool import read_parfile

        if self.field.model_path is not None:
            # Mocks are injected behind members with a local single-plane lens; a multi-plane model (a foreground or
            # background group) is taken here as LensTool 6 takes it, every potential at the cluster's redshift.
            self.model = read_parfile(self.field.model_path, planes="single").model
        if self.field.deflection_path.exists():
            self.deflection_map = self.field.deflection()
        if self.model is None and self.deflection_map is None:
            raise InputFileError(f"{self.field.path}: field '{self.name}' has neither model.par nor deflection.fits")

    def cluster_centres(self, match_arcsec: float = 0.05) -> np.ndarray:
        """Centres of the cluster-scale components: not uniform, not named after a member, and not sitting on a
        member (a member's potential under another name is not cluster-scale)."""
        if self.model is None:
            return np.zeros((0, 2))
        ids = set(self.members["member_id"])
        mx = np.asarray(self.members["x_model"], float)
        my = np.asarray(self.members["y_model"], float)
        out = []
        for c in self.model.components:
            if c.name in ids or c.profile == "shear" or "center_x" not in c.params:
                continue
            x, y = c.params["center_x"], c.params["center_y"]
            if len(mx) and np.min(np.hypot(mx - x, my - y)) < match_arcsec:
                continue
            out.append((x, y))
        return np.array(out, dtype=float).reshape(-1, 2)

    # ------------------------------------------------------------------------------------------ cutouts
    def window(self, col: float, row: float, n: int) -> tuple[int, int]:
        """``(row0, col0)`` of the ``n x n`` cutout whose centre is nearest to ``(col, row)`` (within 0.5 pixel)."""
        half = (n - 1) / 2.0
        return int(np.floor(row - half + 0.5)), int(np.floor(col - half + 0.5))

    def window_problem(self, row0: int, col0: int, n: int, margin: int = 0, max_bad_fraction: float = 0.0):
        """``None`` if the cutout is usable, else the reason: ``"edge"`` or ``"coverage"``."""
        ny, nx = self.shape
        if row0 < margin or col0 < margin or row0 + n > ny - margin or col0 + n > nx - margin:
            return "edge"
        for img in self.images:
            cut = np.asarray(img[row0 : row0 + n, col0 : col0 + n])
            bad = np.count_nonzero(~np.isfinite(cut) | (cut == 0.0))
            if bad > max_bad_fraction * cut.size:
                return "coverage"
        return None

    def cutout(self, row0: int, col0: int, n: int) -> np.ndarray:
        """The ``n x n x n_bands`` float32 cutout (band order of ``bands``)."""
        return np.stack([np.asarray(img[row0 : row0 + n, col0 : col0 + n], dtype=np.float32)
                         for img in self.images], axis=-1)

    def window_centre(self, row0: int, col0: int, n: int):
        """Model-frame ``(x, y)`` and ``(ra, dec)`` of the centre of a cutout."""
        c = col0 + (n - 1) / 2.0
        r = row0 + (n - 1) / 2.0
        ra, dec = self.wcs.pixel_to_world_values(np.array([c]), np.array([r]))
        x, y = self.radec_to_xy(ra, dec)
        return (float(np.ravel(x)[0]), float(np.ravel(y)[0])), (float(np.ravel(ra)[0]), float(np.ravel(dec)[0]))

    def psfs(self) -> list[np.ndarray]:
        return [self.field.psf(b) for b in self.bands]


def check_fields(fields, where: str) -> None:
    if not fields:
        raise LensSearchError(f"{where}: no field directories (each with field.json)")
