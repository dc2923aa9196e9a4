"""Catalogues of positions to search: ECSV/FITS tables of RA/Dec (read whole, or a FITS table chunk by chunk),
sources detected with ``sep`` when no catalogue is given, known lenses and planted lenses.

The positions to score come from a catalogue (ECSV or FITS table with ``ra``/``dec`` in degrees) or, without a
catalogue, from the sources that ``sep`` (Barbary 2016, the SExtractor algorithms of Bertin & Arnouts 1996)
detects in the detection band, tile by tile so that detection too has bounded memory. Bad input (an empty
catalogue, missing columns, a non-finite coordinate) raises a :class:`~lenssearch.search.inputs.SearchInputError`
naming the file and the row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from astropy.io import fits
from astropy.table import Table

from lenssearch.errors import InputFileError, LensSearchError
from lenssearch.io import check_text_complete, read_ecsv
from lenssearch.search import classes
from lenssearch.search.inputs import DEC_NAMES, ID_NAMES, RA_NAMES, FieldImages, SearchInputError, find_column

#: Columns of a catalogue of positions that the search uses besides id/RA/Dec (truth, labels, Kron radii).
EXTRA_COLUMNS = ("label", "is_lens", "lens", "kron_radius_arcsec")


def _read_ecsv_columns(path: Path, wanted: Sequence[str] | None) -> Table:
    """Read some columns of an ECSV table without astropy's pure-Python data reader (whose memory grows with
    every field of every row): the ECSV header is parsed by astropy, the data by pandas' C parser."""
    import pandas as pd

    header: list[str] = []
    with open(path) as fh:
        for line in fh:
            header.append(line)
            if not line.startswith("#"):
                break  # the column-names line
    empty = Table.read("".join(header), format="ascii.ecsv")
    names = empty.colnames
    use = [c for c in names if wanted is None or c.lower() in wanted]
    floats = [c for c in use if empty[c].dtype.kind == "f"]
    frame = pd.read_csv(
        path, sep=" ", header=None, names=names, usecols=use, skiprows=len(header), quotechar='"',
        keep_default_na=False, na_values={c: ["nan", "NaN", "-nan"] for c in floats},
        dtype={c: str for c in use if empty[c].dtype.kind in "US"},
    )
    out = Table()
    for c in use:
        values = frame[c].to_numpy()
        out[c] = values.astype(empty[c].dtype) if empty[c].dtype.kind in "biuf" else values.astype(str)
    out.meta.update(empty.meta)
    return out


def _standardise(table: Table, path: Path, offset: int = 0, n_total: int | None = None) -> Table:
    """``id`` (str), ``ra``, ``dec`` (degrees) and the :data:`EXTRA_COLUMNS` of rows ``offset:`` of a catalogue.

    Raises
    ------
    SearchInputError
        No RA/Dec columns, or a non-finite coordinate (naming the row of the whole catalogue).
    """
    ra_col, dec_col = find_column(table, RA_NAMES), find_column(table, DEC_NAMES)
    if ra_col is None or dec_col is None:
        raise SearchInputError(f"{path}: no RA/Dec columns (expected 'ra' and 'dec' in degrees; has {table.colnames})")
    out = Table()
    id_col = find_column(table, ID_NAMES)
    if id_col:
        out["id"] = np.asarray(table[id_col]).astype(str)
    else:
        out["id"] = np.asarray([f"{path.stem}-{i}" for i in range(offset, offset + len(table))], dtype=str)
    out["ra"] = np.asarray(table[ra_col], dtype=float)
    out["dec"] = np.asarray(table[dec_col], dtype=float)
    bad = ~(np.isfinite(out["ra"]) & np.isfinite(out["dec"]))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise SearchInputError(
            f"{path}: row {offset + row} has a non-finite RA/Dec ({table[ra_col][row]}, {table[dec_col][row]})"
        )
    for name in EXTRA_COLUMNS:
        col = find_column(table, (name,))
        if col is not None and name not in out.colnames:
            out[name] = table[col]
    return out


#: Suffixes of text catalogues, refused when they do not end with a newline (cut mid-row).
TEXT_SUFFIXES = (".ecsv", ".csv", ".txt", ".dat", ".tsv", ".cat")

#: Suffixes of FITS catalogues that :class:`FitsCatalogue` reads in row chunks (uncompressed files only).
LAZY_FITS_SUFFIXES = (".fits", ".fit", ".fts")

#: Rows read per chunk when a FITS catalogue is scanned (coordinate check) or searched.
CATALOGUE_CHUNK_ROWS = 65536


class FitsCatalogue:
    """A FITS binary-table catalogue of positions, read ``rows(start, stop)`` at a time (bounded memory).

    Only the header is parsed when the catalogue is opened; each chunk of rows is read from the file with a plain
    read (not a memory map, whose pages would stay resident) and decoded by astropy from a copy of the table header,
    so scaled, logical and string columns read exactly as ``Table.read`` would. Coordinates are checked once, chunk
    by chunk, when the catalogue is opened. Only the first binary table HDU is read; tables with a heap
    (variable-length columns) are not supported lazily (:func:`read_positions` reads them whole).

    Attributes
    ----------
    colnames
        The standardised columns of every chunk: ``id``, ``ra``, ``dec`` and those of :data:`EXTRA_COLUMNS` present.
    """

    def __init__(self, path: str | Path, chunk_rows: int = CATALOGUE_CHUNK_ROWS):
        self.path = Path(path)
        try:
            with fits.open(self.path, memmap=False, lazy_load_hdus=True) as hdul:
                index = next((i for i, hdu in enumerate(hdul) if isinstance(hdu, fits.BinTableHDU)), None)
                if index is None:
                    raise SearchInputError(f"{self.path}: no binary table HDU with the catalogue of positions")
                self._header = hdul[index].header.copy()
                self._data_offset = int(hdul.fileinfo(index)["datLoc"])
        except OSError as exc:
            raise SearchInputError(f"{self.path}: cannot read the catalogue ({exc})") from None
        if int(self._header.get("PCOUNT", 0)) != 0:
            raise SearchInputError(f"{self.path}: a catalogue with variable-length columns cannot be read in chunks")
        self._row_bytes = int(self._header["NAXIS1"])
        self._n = int(self._header["NAXIS2"])
        if self._n == 0:
            raise SearchInputError(f"{self.path}: the catalogue is empty; nothing to search")
        first = None
        for start in range(0, self._n, chunk_rows):  # check every coordinate now: an error before any scoring
            chunk = self.rows(start, min(start + chunk_rows, self._n))
            first = chunk if first is None else first
        self.colnames = list(first.colnames)

    def __len__(self) -> int:
        return self._n

    def _raw_rows(self, start: int, stop: int) -> Table:
        k = stop - start
        with open(self.path, "rb") as fh:
            fh.seek(self._data_offset + start * self._row_bytes)
            raw = fh.read(k * self._row_bytes)
        if len(raw) != k * self._row_bytes:
            raise SearchInputError(f"{self.path}: truncated table (rows {start}-{stop} of {self._n})")
        header = self._header.copy()
        header["NAXIS2"] = k
        hdu = fits.BinTableHDU.fromstring(header.tostring().encode("ascii") + raw + b"\0" * (-len(raw) % 2880))
        return Table.read(hdu)

    def rows(self, start: int, stop: int) -> Table:
        """Rows ``start:stop`` as a table of the standardised columns (see :func:`read_positions`)."""
        start, stop = max(0, start), min(stop, self._n)
        return _standardise(self._raw_rows(start, stop), self.path, offset=start)

    def close(self) -> None:
        """Nothing is held open between chunks (kept for symmetry with the other inputs)."""


def position_rows(positions: "Table | FitsCatalogue", start: int, stop: int) -> Table:
    """Rows ``start:stop`` of a catalogue of positions held in memory (a Table) or read lazily (FitsCatalogue)."""
    if isinstance(positions, FitsCatalogue):
        return positions.rows(start, stop)
    return positions[start:stop]


def read_table(path: str | Path, what: str) -> Table:
    """Read a small table whole (ECSV strictly, other text formats checked for a cut last row, or FITS)."""
    path = Path(path)
    if path.suffix.lower() == ".ecsv":
        try:
            return read_ecsv(path, what)
        except InputFileError as exc:
            raise SearchInputError(str(exc)) from None
    if path.suffix.lower() in TEXT_SUFFIXES:
        check_text_complete(path, what)
    try:
        return Table.read(path)
    except Exception as exc:  # astropy raises many types for malformed tables
        raise SearchInputError(f"{path}: cannot read the {what} ({type(exc).__name__}: {exc})") from None


def read_positions(path: str | Path, lazy: bool = False) -> "Table | FitsCatalogue":
    """Read a catalogue of positions to score (ECSV, FITS or any astropy-readable table).

    Returns a table with columns ``id`` (str), ``ra``, ``dec`` (degrees) and those of :data:`EXTRA_COLUMNS` that
    the input has (e.g. ``label`` or ``kron_radius_arcsec``). ECSV catalogues are read whole, column-wise (a few
    tens of bytes per row: ids, RA, Dec). With ``lazy``, an uncompressed FITS binary table is not read but opened
    as a :class:`FitsCatalogue` whose rows are read chunk by chunk (memory independent of the catalogue size; the
    search reads its catalogue so); other formats are read whole.

    Raises
    ------
    SearchInputError
        Unreadable file, no RA/Dec columns, an empty catalogue, or non-finite coordinates (naming the row).
    """
    path = Path(path)
    if not path.exists():
        raise SearchInputError(f"{path}: no such catalogue")
    if lazy and path.suffix.lower() in LAZY_FITS_SUFFIXES:
        try:
            return FitsCatalogue(path)
        except SearchInputError as exc:
            if "variable-length" not in str(exc):
                raise
    wanted = {*RA_NAMES, *DEC_NAMES, *ID_NAMES, *EXTRA_COLUMNS}
    table = None
    if path.suffix.lower() in TEXT_SUFFIXES:
        check_text_complete(path, "catalogue")  # a file cut mid-row would give a last row with a wrong value
    if path.suffix.lower() == ".ecsv":
        try:
            table = _read_ecsv_columns(path, wanted)
        except Exception:  # anything unusual (multidimensional columns, odd quoting): astropy's own reader
            table = None
    if table is None:
        if path.suffix.lower() == ".ecsv":
            try:
                table = read_ecsv(path, "catalogue")
            except InputFileError as exc:
                raise SearchInputError(str(exc)) from None
        else:
            try:
                table = Table.read(path)
            except Exception as exc:  # astropy raises many types for malformed tables
                raise SearchInputError(f"{path}: cannot read the catalogue ({exc})") from None
    if find_column(table, RA_NAMES) is not None and find_column(table, DEC_NAMES) is not None and len(table) == 0:
        raise SearchInputError(f"{path}: the catalogue is empty; nothing to search")
    return _standardise(table, path)


def detect_sources(
    images: FieldImages,
    band: str,
    thresh_sigma: float,
    minarea_pix: int,
    tile_pix: int,
    margin_pix: int,
) -> Table:
    """Detect sources with ``sep`` in one band, tile by tile (bounded memory), as a catalogue of positions.

    Each tile is read with a margin; a source is kept by the tile whose core contains its centroid, so sources
    are neither lost nor doubled at tile boundaries (sources larger than the margin may be split).

    Returns
    -------
    Table
        ``id``, ``ra``, ``dec``, ``x_pix``, ``y_pix``, ``kron_radius_arcsec`` (F-band Kron radius, Sect. 4 of
        HOLISMOKES XVI ranks duplicates by it).
    """
    import sep

    if band not in images.bands:
        raise LensSearchError(f"detection band {band} is not one of the field's bands {images.bands}")
    data = images.data[images.bands.index(band)]
    ny, nx = images.shape
    sigma = float(images.noise_sigma[images.bands.index(band)])
    rows: list[tuple[float, float, float]] = []
    for ty in range(0, ny, tile_pix):
        for tx in range(0, nx, tile_pix):
            ya, yb = max(ty - margin_pix, 0), min(ty + tile_pix + margin_pix, ny)
            xa, xb = max(tx - margin_pix, 0), min(tx + tile_pix + margin_pix, nx)
            tile = np.ascontiguousarray(data[ya:yb, xa:xb], dtype=np.float32)
            tile = np.where(np.isfinite(tile), tile, 0.0).astype(np.float32)
            try:
                objects = sep.extract(tile, thresh_sigma, err=sigma, minarea=minarea_pix)
            except Exception as exc:  # sep raises a bare Exception when its buffers overflow
                raise LensSearchError(f"{images.paths[band]}: source detection failed in tile x={tx} y={ty} ({exc})")
            if len(objects) == 0:
                continue
            ox, oy = objects["x"] + xa, objects["y"] + ya
            core = (ox >= tx - 0.5) & (ox < tx + tile_pix - 0.5) & (oy >= ty - 0.5) & (oy < ty + tile_pix - 0.5)
            objects = objects[core]
            if len(objects) == 0:
                continue
            kron, _ = sep.kron_radius(
                tile, objects["x"], objects["y"], objects["a"], objects["b"], objects["theta"], 6.0
            )
            r_pix = kron * np.sqrt(objects["a"] * objects["b"])
            for xo, yo, r in zip(objects["x"] + xa, objects["y"] + ya, r_pix):
                rows.append((float(xo), float(yo), float(r) * images.pixel_scale_arcsec))
    table = Table(names=("id", "ra", "dec", "x_pix", "y_pix", "kron_radius_arcsec"), dtype=(str,) + (float,) * 5)
    if rows:
        arr = np.asarray(rows)
        ra, dec = images.pixel_to_world(arr[:, 0], arr[:, 1])
        table = Table(
            {
                "id": [f"det{i:07d}" for i in range(len(arr))],
                "ra": ra,
                "dec": dec,
                "x_pix": arr[:, 0],
                "y_pix": arr[:, 1],
                "kron_radius_arcsec": arr[:, 2],
            }
        )
    if len(table) == 0:
        raise LensSearchError(
            f"{images.paths[band]}: sep detected no source above {thresh_sigma} sigma; nothing to search"
        )
    return table


def read_known_lenses(path: str | Path, default_label: str | None = None) -> Table:
    """Read a catalogue of known lenses: ``ra``, ``dec`` and ``label`` in {secure, uncertain, no}.

    A catalogue without ``label`` takes ``default_label``; without either, it is an error. An integer 0/1 label
    (the planted lenses' metadata) maps 1 to ``default_label`` (``secure`` if not given) and 0 to ``no``.
    """
    table = read_positions(path)
    if "label" not in table.colnames:
        if default_label is None:
            raise SearchInputError(f"{path}: no 'label' column (secure / uncertain / no) for the known lenses")
        table["label"] = [default_label] * len(table)
    elif table["label"].dtype.kind in "biu":
        # a 0/1 truth label (the simulate stage's metadata): 1 is a lens of ``default_label`` (secure by default)
        table["label"] = [(default_label or "secure") if int(v) == 1 else "no" for v in table["label"]]
    labels = [str(v).strip().lower() for v in table["label"]]
    for i, label in enumerate(labels):
        if label not in classes.KNOWN_LABELS:
            raise SearchInputError(
                f"{path}: row {i} has label '{table['label'][i]}'; expected one of {list(classes.KNOWN_LABELS)}"
            )
    table["label"] = labels
    return table
