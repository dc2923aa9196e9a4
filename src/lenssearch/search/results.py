"""Step 4 of a search: the per-position results, chunk by chunk, appended to a Parquet file (``scores.parquet``).

Both engines cut the catalogue into chunks of ``search.chunk_rows`` rows. Once every batch of a chunk is scored
(:mod:`lenssearch.search.batch`), :func:`finish_chunk` runs the KB's great-expectations suite once on the chunk's
statistics table (rows it fails are withdrawn: ``status`` invalid, ``validation`` great_expectations, no score),
adds the truth where it is known (``is_lens`` and the class of Angora et al. 2023, Table A.6) and returns the
chunk as an Arrow table: one row group of ``scores.parquet`` (:class:`ScoresFile`), or one shard of a Ray run.
Memory holds one chunk of per-row numbers, whatever the size of the field.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from astropy.table import Table

from lenssearch.search import classes, cleaning
from lenssearch.search.catalogues import position_rows
from lenssearch.kb.statistics import ValidationContext
from lenssearch.search.checks import run_expectations

#: Truth columns of a catalogue of positions or of a stack: 1/True = lens.
TRUTH_COLUMNS = ("is_lens", "label", "lens")

#: Columns of ``scores.parquet`` that come from the catalogue (the rest are :func:`~.batch.process_batch`'s).
POSITION_COLUMNS = ("row", "id", "ra", "dec", "x_pix", "y_pix", "on_image", "kron_given")


def truth_from_positions(positions: Table) -> np.ndarray | None:
    """Per-row truth (1 lens, 0 non-lens, -1 unknown) from a truth column of the positions, if any."""
    for name in TRUTH_COLUMNS:
        if name in positions.colnames:
            col = positions[name]
            if col.dtype.kind in "biuf":
                values = np.asarray(col, dtype=float)
                return np.where(np.isfinite(values), (values > 0.5).astype(int), -1)
            text = np.char.lower(np.asarray(col, dtype=str))
            if set(np.unique(text)) <= set(classes.KNOWN_LABELS):
                return np.asarray([int(classes.KNOWN_LABELS[t]) for t in text])
    return None


def truth_column(positions, chunk_rows: int) -> str | None:
    """The column that :func:`truth_from_positions` reads for the whole catalogue (None: no truth); a text column
    counts only if every row's label is known (checked chunk by chunk)."""
    for name in TRUTH_COLUMNS:
        if name in positions.colnames and all(
            truth_from_positions(position_rows(positions, start, start + chunk_rows)[[name]]) is not None
            for start in range(0, len(positions), chunk_rows)
        ):
            return name
    return None


@dataclasses.dataclass(frozen=True)
class Truth:
    """Where the truth comes from: the planted lenses of a synthetic field (a row is a lens if a planted lens lies
    within ``match_radius_arcsec``), or a truth column of the positions; and the class bands (Table A.6)."""

    planted_ra: np.ndarray | None
    planted_dec: np.ndarray | None
    column: str | None
    match_radius_arcsec: float
    tp_min: float
    qtp_min: float

    @property
    def known(self) -> bool:
        return self.planted_ra is not None or self.column is not None

    def is_lens(self, positions: Table) -> np.ndarray:
        if self.planted_ra is not None:
            d, _ = cleaning.nearest_neighbour(positions["ra"], positions["dec"], self.planted_ra, self.planted_dec)
            return (d <= self.match_radius_arcsec).astype(np.int64)
        return np.asarray(truth_from_positions(positions[[self.column]]), dtype=np.int64)


def position_chunk(inp, start: int, stop: int) -> tuple[Table, dict[str, np.ndarray]]:
    """Rows ``start:stop`` of the catalogue, and the columns a batch needs (``row``, pixel position, on image)."""
    pos = position_rows(inp.positions, start, stop)
    k = len(pos)
    if inp.images is not None:
        x, y = inp.images.world_to_pixel(pos["ra"], pos["dec"])
        on_image = inp.images.contains(x, y)
    else:
        x, y, on_image = np.full(k, np.nan), np.full(k, np.nan), np.ones(k, dtype=bool)
    kron = (np.asarray(pos["kron_radius_arcsec"], float) if "kron_radius_arcsec" in pos.colnames
            else np.full(k, np.nan))
    rows = {"row": np.arange(start, start + k, dtype=np.int64), "id": np.asarray(pos["id"], dtype=str),
            "ra": np.asarray(pos["ra"], float), "dec": np.asarray(pos["dec"], float),
            "x_pix": np.asarray(x, float), "y_pix": np.asarray(y, float), "on_image": np.asarray(on_image, bool),
            "kron_given": kron}
    return pos, rows


def concat_results(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The result columns of a chunk's batches, in row order."""
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def finish_chunk(pos: Table, rows: dict, results: dict, ctx: ValidationContext, truth: Truth,
                 great_expectations: bool) -> pa.Table:
    """A scored chunk, judged by great-expectations and with its truth, as one Arrow table (see the module)."""
    out = {**rows, **results}
    on = np.asarray(out["on_image"], bool)
    out["ge_passed"] = np.ones(len(on), dtype=bool)
    if great_expectations and on.any():
        stats = {k: out[k][on] for k in out if k in ("shape_ok", "dtype", "finite_fraction")
                 or k.startswith(("bg_level_", "bg_sigma_", "noise_ratio_", "bg_level_sigma_"))}
        passed, _ = run_expectations(stats, ctx)
        out["ge_passed"][on] = passed
        withdraw = on & ~out["ge_passed"] & out["checks_passed"]
        out["status"][withdraw] = "invalid"
        out["validation"][withdraw] = "great_expectations"
        for name in out:
            if name == "score" or name.startswith("score_"):
                out[name][withdraw] = np.nan
    if truth.known:
        is_lens = truth.is_lens(pos)
        cls = np.asarray(classes.truth_class(out["score"], is_lens == 1, truth.tp_min, truth.qtp_min), dtype=object)
        cls[is_lens < 0] = ""
        out["is_lens"], out["class"] = is_lens, cls
    return pa.table({k: pa.array(np.asarray(v, dtype=str) if np.asarray(v).dtype == object else v)
                     for k, v in out.items()})


class ScoresFile:
    """``scores.parquet`` written chunk by chunk (one row group each): the per-position table of a search.

    ``meta`` (model URI, threshold, bands, ...) goes into the file's key-value metadata as JSON (``lenssearch``).
    """

    def __init__(self, path: str | Path, meta: dict):
        self.path, self.meta, self.writer = Path(path), meta, None

    def append(self, table: pa.Table) -> None:
        if self.writer is None:
            self.meta["members"] = [n[len("score_"):] for n in table.schema.names if n.startswith("score_")]
            schema = table.schema.with_metadata({"lenssearch": json.dumps(self.meta)})
            schema = pa.schema([_described(field) for field in schema], metadata=schema.metadata)
            self.writer = pq.ParquetWriter(self.path, schema)
        self.writer.write_table(table.cast(self.writer.schema), row_group_size=max(table.num_rows, 1))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def read_scores(path: str | Path, columns=None) -> Table:
    """``scores.parquet`` (or some of its columns) as an astropy table, with its metadata."""
    table = pq.read_table(path, columns=columns)
    meta = json.loads((table.schema.metadata or {}).get(b"lenssearch", b"{}"))
    out = Table({name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names})
    out.meta.update(meta)
    for field in table.schema:
        info = field.metadata or {}
        if b"description" in info:
            out[field.name].info.description = info[b"description"].decode()
        if b"unit" in info and out[field.name].dtype.kind in "fiu":
            out[field.name].unit = info[b"unit"].decode()
    return out


def _described(field: pa.Field) -> pa.Field:
    """The field with its unit and description (:func:`lenssearch.io.column_info`) as Parquet field metadata."""
    from lenssearch.io import column_info

    info = column_info(field.name)
    if info is None:
        return field
    unit, description = info
    return field.with_metadata({"description": description, **({"unit": unit} if unit else {})})
