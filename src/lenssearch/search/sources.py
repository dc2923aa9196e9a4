"""What a search reads, opened and checked: a field (band images + positions) or a stack of cutouts (+ its table).

:func:`open_input` turns the command line's options into a :class:`SearchInput`: the band images of a field
(memory-mapped, :mod:`~lenssearch.search.inputs`) with the positions of a catalogue or of sep's detections
(:mod:`~lenssearch.search.catalogues`), the field's per-band noise and its bright stars; or a stack of cutouts.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from astropy.table import Table

from lenssearch.errors import LensSearchError
from lenssearch.search.catalogues import FitsCatalogue, detect_sources, read_known_lenses, read_positions, read_table
from lenssearch.kb.statistics import ValidationContext, cutout_statistics
from lenssearch.search.inputs import CutoutStack, FieldImages, SearchInputError


@dataclasses.dataclass
class SearchInput:
    """What a search reads: a field (band images + positions) or a stack of cutouts (+ its table).

    Attributes
    ----------
    positions
        One row per position/cutout (in memory, or read in chunks from a FITS catalogue): ``id``, ``ra``, ``dec``
        (NaN for stacks without positions) and optional
        columns (``kron_radius_arcsec``, truth ``is_lens``/``label``).
    noise_sigma
        Per-band pixel noise (e-/s) used by validation, cleaning and the gallery's scaling.
    """

    bands: tuple[str, ...]
    positions: "Table | FitsCatalogue"
    noise_sigma: np.ndarray
    pixel_scale_arcsec: float
    description: str
    images: FieldImages | None = None
    stack: CutoutStack | None = None
    stars: Table | None = None

    @property
    def pixels(self) -> FieldImages | CutoutStack:
        """Where the cutouts come from: the band images, or the stack."""
        return self.images if self.images is not None else self.stack

    def close(self) -> None:
        """Close the band images or the stack."""
        if self.images is not None:
            self.images.close()
        if self.stack is not None:
            self.stack.close()

    def __enter__(self) -> "SearchInput":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _field_noise(field_dir: Path, bands: Sequence[str]) -> np.ndarray | None:
    """Per-band noise from ``field.json`` (written by the field stage), if it has every band."""
    path = field_dir / "field.json"
    if not path.exists():
        return None
    try:
        info = json.loads(path.read_text())
        return np.asarray([float(info["noise_sigma"][b]) for b in bands])
    except (ValueError, KeyError, TypeError):
        return None


def open_field(
    bands: Sequence[str],
    detection,
    *,
    field_dir: str | Path | None = None,
    images: dict[str, str | Path] | None = None,
    catalogue: str | Path | None = None,
    stars: str | Path | None = None,
    check_bands: bool = True,
) -> SearchInput:
    """Open a field for a search: band images (a field directory or explicit paths) and positions.

    Without ``catalogue`` the positions are the sources that sep detects in ``detection.band`` (tile by tile). A
    FITS catalogue is opened lazily (:class:`~lenssearch.search.inputs.FitsCatalogue`: read in row chunks while the
    search runs); an ECSV one is read whole (a few tens of bytes per row). Stars come from
    ``stars`` or the field directory's ``stars.ecsv`` (columns ``ra``, ``dec``, ``mag``).
    """
    if images is not None:
        field_images = FieldImages({b: Path(images[b]) for b in bands}, check_bands=check_bands)
        desc = ", ".join(str(images[b]) for b in bands)
    elif field_dir is not None:
        field_images = FieldImages.from_field_dir(field_dir, bands, check_bands=check_bands)
        desc = str(field_dir)
    else:
        raise LensSearchError("a field search needs a field directory or band images")
    try:
        noise = _field_noise(Path(field_dir), bands) if field_dir is not None else None
        if noise is None:
            noise = field_images.noise_sigma
        else:
            field_images._noise = noise
        if catalogue is not None:
            positions = read_positions(catalogue, lazy=True)  # a FITS table is read chunk by chunk
            desc += f" at the positions of {catalogue}"
        else:
            positions = detect_sources(
                field_images, detection.band, detection.thresh_sigma, detection.minarea_pix, detection.tile_pix,
                detection.margin_pix,
            )
            desc += f" at {len(positions)} sources detected by sep in {detection.band}"
        star_table = None
        star_path = Path(stars) if stars is not None else (Path(field_dir) / "stars.ecsv" if field_dir else None)
        if star_path is not None and star_path.exists():
            star_table = read_table(star_path, "star catalogue")
            missing = [c for c in ("ra", "dec", "mag") if c not in star_table.colnames]
            if missing:
                raise SearchInputError(f"{star_path}: star catalogue lacks columns {missing} (needs ra, dec, mag)")
        elif stars is not None:
            raise SearchInputError(f"{stars}: no such star catalogue")
    except BaseException:
        field_images.close()
        raise
    return SearchInput(
        bands=tuple(bands), positions=positions, noise_sigma=np.asarray(noise, float),
        pixel_scale_arcsec=field_images.pixel_scale_arcsec, description=desc, images=field_images, stars=star_table,
    )


def open_stack(path: str | Path, bands: Sequence[str], pixel_scale_arcsec: float) -> SearchInput:
    """Open a stack of cutouts (FITS cube or HDF5) for a search.

    The expected noise of each band is the median border noise of the first 64 cutouts (a stack has no field
    image to measure it on), so the noise check flags the cutouts that depart from the stack's typical noise.
    """
    stack = CutoutStack(path, len(bands))
    try:
        sample = stack.read(0, min(stack.n, 64))
        stats = cutout_statistics(sample, ValidationContext(stack.size, tuple(bands), np.ones(len(bands))))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            noise = np.asarray([np.nanmedian(stats[f"bg_sigma_{b}"]) for b in bands])
        if not np.all(noise > 0):
            raise SearchInputError(f"{path}: no measurable pixel noise in some band of the first cutouts")
    except BaseException:
        stack.close()
        raise
    return SearchInput(
        bands=tuple(bands), positions=stack.table, noise_sigma=noise, pixel_scale_arcsec=pixel_scale_arcsec,
        description=str(path), stack=stack,
    )


def _parse_images(images: Sequence[str], bands: Sequence[str]) -> dict[str, Path]:
    parsed: dict[str, Path] = {}
    for item in images:
        band, sep_, path = item.partition("=")
        if not sep_ or not path:
            raise LensSearchError(f"--image {item!r}: expected BAND=path")
        if band not in bands:
            raise LensSearchError(f"--image {item!r}: band {band} is not one of {list(bands)}")
        parsed[band] = Path(path)
    missing = [b for b in bands if b not in parsed]
    if missing:
        raise LensSearchError(f"--image: no image for band(s) {missing}; give one BAND=path per band of {list(bands)}")
    return parsed


def open_input(
    cfg,
    *,
    field: str | Path | None = None,
    images: Sequence[str] | None = None,
    catalogue: str | Path | None = None,
    stack: str | Path | None = None,
    stars: str | Path | None = None,
    known: bool = False,
    default_label: str | None = None,
    ignore_band_keywords: bool = False,
) -> SearchInput:
    """Open what a verb searches: a field (directory or ``BAND=path`` images) or a stack, from the CLI's options.

    With ``known``, ``catalogue`` is a catalogue of known lenses (:func:`read_known_lenses`); for a stack it must
    have one row per cutout. ``ignore_band_keywords`` skips the check of the images' filter keywords against
    their bands (:mod:`lenssearch.fields.bands`).
    """
    bands = tuple(cfg.base.bands)
    if stack is not None and (field is not None or images):
        raise LensSearchError("give either a field (--field/--image) or a stack of cutouts (--stack), not both")
    if stack is not None:
        inp = open_stack(stack, bands, cfg.base.pixel_scale_arcsec)
        if known:
            if catalogue is None:
                raise LensSearchError("known-lenses needs a catalogue of known lenses (--known)")
            table = read_known_lenses(catalogue, default_label)
            if len(table) != len(inp.positions):
                inp.close()
                raise SearchInputError(
                    f"{catalogue}: {len(table)} known lenses for {len(inp.positions)} cutouts in {stack}"
                )
            inp.positions = table
        return inp
    if field is None and not images:
        raise LensSearchError("nothing to search: give --field, --image BAND=path for each band, or --stack")
    inp = open_field(
        bands, cfg.search.detection, field_dir=field, images=_parse_images(images, bands) if images else None,
        catalogue=None if known else catalogue, stars=stars, check_bands=not ignore_band_keywords,
    )
    if known:
        if catalogue is None:
            inp.close()
            raise LensSearchError("known-lenses needs a catalogue of known lenses (--known)")
        try:
            inp.positions = read_known_lenses(catalogue, default_label)
        except BaseException:
            inp.close()
            raise
        inp.description += f" at the known lenses of {catalogue}"
    return inp


def read_planted(path: str | Path | None) -> Table | None:
    """The planted lenses of a synthetic field (``ra``, ``dec``), or None."""
    return None if path is None else read_positions(path)
