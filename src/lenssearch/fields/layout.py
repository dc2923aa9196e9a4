"""The field directory ``data/fields/<name>/``: write its image products, read a whole field back.

Layout (``docs/architecture.md``): ``field.json``, ``model.par``, ``image_<BAND>.fits`` (e-/s, TAN WCS, AB zero
point in ``PHOTZPT``/``ZP_AB``), ``psf_<BAND>.fits`` (unit sum), ``deflection.fits``, ``members.ecsv``,
``critical_lines_zs<z>.ecsv`` (+ ``_polygons.fits``), ``stars.ecsv`` (optional). Every writer here writes to a
temporary name and renames it when complete (:func:`lenssearch.io.atomic_path`); builders assemble a field in a
temporary directory and rename the whole directory, so a field directory that exists is complete.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Mapping

import numpy as np

from lenssearch.errors import InputFileError, LensSearchError
from lenssearch.io import atomic_path, describe_columns

FIELD_JSON = "field.json"
MODEL_PAR = "model.par"
DEFLECTION = "deflection.fits"
MEMBERS = "members.ecsv"
STARS = "stars.ecsv"
FIELD_KINDS = ("synthetic", "lenstool", "user")
_CRITICAL_RE = re.compile(r"^critical_lines_zs(\d+(?:\.\d+)?)\.ecsv$")


def image_name(band: str) -> str:
    """File name of a band image."""
    return f"image_{band}.fits"


def psf_name(band: str) -> str:
    """File name of a band PSF."""
    return f"psf_{band}.fits"


def critical_lines_name(z_s: float) -> str:
    """File name of the secondary critical-line catalogue at ``z_s`` (``critical.zs_label``: 2 -> ``zs2.0``)."""
    from lenssearch.lensing.critical import zs_label

    return f"critical_lines_zs{zs_label(z_s)}.ecsv"


# ------------------------------------------------------------------------------------------------ writing
def write_json(path: Path, data: Mapping) -> None:
    """Write a JSON document atomically, keys sorted (deterministic bytes)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_image(path: Path, data: np.ndarray, wcs, band: str, zeropoint_ab: float, extra: Mapping | None = None):
    """Write one band image (float32, e-/s) with its WCS and AB zero point."""
    from astropy.io import fits

    header = wcs.to_header()
    header["BUNIT"] = ("ELECTRONS/S", "HST drizzled convention")
    header["FILTER"] = (band, "band")
    header["PHOTZPT"] = (zeropoint_ab, "AB zero point (mag of 1 e-/s)")
    header["ZP_AB"] = (zeropoint_ab, "AB zero point (mag of 1 e-/s)")
    for key, value in (extra or {}).items():
        header[key] = value
    with atomic_path(path) as tmp:
        fits.PrimaryHDU(np.asarray(data, dtype=np.float32), header=header).writeto(tmp, output_verify="exception")


def write_psf(path: Path, psf: np.ndarray, band: str, pixel_scale_arcsec: float, origin: str) -> None:
    """Write a unit-sum PSF image."""
    from astropy.io import fits

    psf = np.asarray(psf, dtype=np.float64)
    header = fits.Header()
    header["FILTER"] = (band, "band")
    header["PIXSCALE"] = (pixel_scale_arcsec, "[arcsec] pixel scale")
    header["PSFORIG"] = (origin[:68], "how the PSF was made")
    with atomic_path(path) as tmp:
        fits.PrimaryHDU((psf / psf.sum()).astype(np.float32), header=header).writeto(tmp,
                                                                                      output_verify="exception")


def write_table(path: Path, table) -> None:
    """Write an astropy table as ECSV atomically."""
    with atomic_path(path) as tmp:
        describe_columns(table).write(tmp, format="ascii.ecsv")


# ------------------------------------------------------------------------------------------------ reading
@dataclasses.dataclass
class Field:
    """A field directory read back (images are memory-mapped on demand).

    Attributes
    ----------
    path
        The directory.
    info
        The content of ``field.json``.
    """

    path: Path
    info: dict

    @property
    def name(self) -> str:
        return self.info["name"]

    @property
    def kind(self) -> str:
        return self.info["kind"]

    @property
    def bands(self) -> tuple[str, ...]:
        return tuple(self.info["bands"])

    @property
    def z_lens(self) -> float:
        return float(self.info["z_lens"])

    @property
    def pixel_scale_arcsec(self) -> float:
        return float(self.info["pixel_scale_arcsec"])

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.info["shape"])

    @property
    def reference_radec(self) -> tuple[float, float]:
        return tuple(self.info["reference_radec"])

    @property
    def zeropoints_ab(self) -> dict[str, float]:
        return {b: float(v) for b, v in self.info["zeropoints_ab"].items()}

    @property
    def noise_sigma(self) -> dict[str, float]:
        """Per-band background noise sigma in e-/s/pixel."""
        return {b: float(v) for b, v in self.info["noise_sigma"].items()}

    @property
    def depth_5sigma_ab(self) -> dict[str, float]:
        return {b: float(v) for b, v in self.info["depth_5sigma_ab"].items()}

    @property
    def model_path(self) -> Path | None:
        p = self.path / MODEL_PAR
        return p if p.exists() else None

    @property
    def deflection_path(self) -> Path:
        return self.path / DEFLECTION

    @property
    def critical_line_paths(self) -> dict[float, Path]:
        """Secondary critical-line catalogues by source redshift."""
        out = {}
        for p in sorted(self.path.iterdir()):
            m = _CRITICAL_RE.match(p.name)
            if m:
                out[float(m.group(1))] = p
        return out

    @property
    def wcs(self):
        from astropy.io import fits
        from astropy.wcs import WCS

        return WCS(fits.getheader(self.path / image_name(self.bands[-1])))

    def image(self, band: str) -> np.ndarray:
        """The band image (e-/s), memory-mapped read-only."""
        from astropy.io import fits

        path = self.path / image_name(band)
        if not path.exists():
            raise InputFileError(f"{path}: no image for band {band}")
        with fits.open(path, memmap=True) as hdul:
            return hdul[0].data

    def psf(self, band: str) -> np.ndarray:
        """The band PSF (float64, unit sum)."""
        from astropy.io import fits

        data = np.asarray(fits.getdata(self.path / psf_name(band)), dtype=float)
        return data / data.sum()

    @property
    def members(self):
        from astropy.table import Table

        return Table.read(self.path / MEMBERS, format="ascii.ecsv")

    @property
    def stars(self):
        from astropy.table import Table

        p = self.path / STARS
        return Table.read(p, format="ascii.ecsv") if p.exists() else None

    def deflection(self):
        """The deflection map (:class:`lenssearch.lensing.deflection_maps.DeflectionMap`)."""
        from lenssearch.lensing.deflection_maps import read_deflection_fits

        return read_deflection_fits(self.deflection_path)


def read_field(path: str | Path) -> Field:
    """Read a field directory's ``field.json`` and check that its files are there."""
    path = Path(path)
    info_path = path / FIELD_JSON
    if not info_path.exists():
        raise InputFileError(f"{path}: not a field directory (no {FIELD_JSON})")
    try:
        info = json.loads(info_path.read_text())
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{info_path}: not valid JSON ({exc})") from None
    for key in ("name", "kind", "bands", "z_lens", "shape", "zeropoints_ab", "noise_sigma", "pixel_scale_arcsec"):
        if key not in info:
            raise InputFileError(f"{info_path}: missing key '{key}'")
    field = Field(path, info)
    for band in field.bands:
        for name in (image_name(band), psf_name(band)):
            if not (path / name).exists():
                raise InputFileError(f"{path / name}: missing from field '{field.name}'")
    return field


def has_images(path: str | Path) -> bool:
    """Whether a field directory has images: a mass-only field (a LensTool model without painted light, see
    :mod:`lenssearch.fields.painted`) has a ``field.json`` without ``bands``."""
    info_path = Path(path) / FIELD_JSON
    try:
        return "bands" in json.loads(info_path.read_text())
    except (OSError, json.JSONDecodeError):
        return True  # let read_field report the problem


def list_fields(root: str | Path, *, with_images: bool = True) -> list[Field]:
    """Every field directory under ``root`` (sorted by name).

    With ``with_images`` (the default) mass-only fields (no images: nothing to inject into or cut out) are left
    out; any other incomplete field raises :class:`InputFileError`.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputFileError(f"{root}: no such fields directory")
    dirs = [p for p in sorted(root.iterdir()) if (p / FIELD_JSON).exists()]
    if with_images:
        dirs = [p for p in dirs if has_images(p)]
    return [read_field(p) for p in dirs]


def check_kind(kind: str) -> str:
    """Validate a field kind."""
    if kind not in FIELD_KINDS:
        raise LensSearchError(f"field kind must be one of {FIELD_KINDS}, got '{kind}'")
    return kind
