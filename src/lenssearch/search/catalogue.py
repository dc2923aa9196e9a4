"""Steps 5-8 of a search, on the per-position table (``scores.parquet``): the candidates above the threshold,
their cleaning (HOLISMOKES XVI, Sect. 3.1), duplicates within 2" (Sect. 4), classes where the truth is known
(Angora et al. 2023, Table A.6), the count after each stage (the analogue of HOLISMOKES XVI's Table 1), the
candidate catalogue and the metrics.

:func:`scan` reads the file one row group (one chunk) at a time: memory holds the candidates and a chunk.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from astropy.table import Table

from lenssearch.search import classes, cleaning
from lenssearch.search.results import Truth


@dataclasses.dataclass
class Scan:
    """What the per-position table says as a whole: counts, the candidates, the truth's tallies."""

    n: int = 0
    n_outside: int = 0
    n_invalid: int = 0
    n_scored: int = 0
    ge_runs: int = 0
    ge_withdrawn: int = 0
    ge_disagreements: int = 0
    candidates: dict[str, np.ndarray] | None = None  # every column, rows scored >= threshold, by decreasing score
    members: tuple[str, ...] = ()
    planted_row: np.ndarray | None = None  # per planted lens: its nearest row (-1: none within the radius)
    planted_score: np.ndarray | None = None
    lens_class_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    n_lenses: int = 0


def scan(path: str | Path, threshold: float, truth: Truth, great_expectations: bool) -> Scan:
    """Step 5: the candidates (scored, score >= ``threshold``) and the counts of ``scores.parquet``."""
    f = pq.ParquetFile(path)
    names = f.schema_arrow.names
    s = Scan(members=tuple(n[len("score_"):] for n in names if n.startswith("score_")))
    s.lens_class_counts = {name: 0 for name in classes.LENS_CLASSES}
    parts = []
    if truth.planted_ra is not None:
        best_d = np.full(len(truth.planted_ra), np.inf)
        s.planted_row = np.full(len(truth.planted_ra), -1, dtype=np.int64)
        s.planted_score = np.full(len(truth.planted_ra), np.nan)
    for g in range(f.num_row_groups):
        t = f.read_row_group(g)
        status = t.column("status").to_numpy(zero_copy_only=False).astype(str)
        score = t.column("score").to_numpy()
        s.n += len(status)
        s.n_outside += int(np.sum(status == "outside"))
        s.n_invalid += int(np.sum(status == "invalid"))
        s.n_scored += int(np.sum(status == "scored"))
        on = status != "outside"
        if great_expectations and on.any():
            inline, ge = t.column("checks_passed").to_numpy(), t.column("ge_passed").to_numpy()
            s.ge_runs += 1
            s.ge_withdrawn += int(np.sum(on & inline & ~ge))
            s.ge_disagreements += int(np.sum(on & (inline != ge)))
        if truth.planted_ra is not None:
            ra, dec = t.column("ra").to_numpy(), t.column("dec").to_numpy()
            d, j = cleaning.nearest_neighbour(truth.planted_ra, truth.planted_dec, ra, dec)
            better = d < best_d
            best_d[better] = d[better]
            s.planted_row[better] = t.column("row").to_numpy()[j[better]]
            s.planted_score[better] = score[j[better]]
        elif truth.column is not None:
            lens = t.column("is_lens").to_numpy() == 1
            s.n_lenses += int(lens.sum())
            for name, k in zip(*np.unique(classes.lens_class(score[lens], truth.tp_min, truth.qtp_min),
                                          return_counts=True)):
                s.lens_class_counts[str(name)] += int(k)
        sel = np.flatnonzero((status == "scored") & (score >= threshold))
        if len(sel):
            parts.append({k: t.column(k).to_numpy(zero_copy_only=False)[sel] for k in names})
    if truth.planted_ra is not None:
        s.planted_row[best_d > truth.match_radius_arcsec] = -1
    if parts:
        c = {k: np.concatenate([p[k] for p in parts]) for k in names}
        order = np.lexsort((c["row"], -c["score"]))  # decreasing score, ties in catalogue order
        s.candidates = {k: v[order] for k, v in c.items()}
    else:
        s.candidates = {k: np.zeros(0, dtype=f.schema_arrow.field(k).type.to_pandas_dtype()) for k in names}
    return s


def measurements(c: dict[str, np.ndarray], star_distance: np.ndarray) -> dict[str, np.ndarray]:
    """Step 6a: what the cleaning rules read; a Kron radius given in the catalogue wins over the measured one."""
    meas = {name: np.asarray(c[name], float) for name in cleaning.MEASUREMENTS}
    given = np.asarray(c["kron_given"], float)
    meas["kron_radius_arcsec"] = np.where(np.isfinite(given), given, meas["kron_radius_arcsec"])
    meas["inside_fraction"] = np.asarray(c["inside_fraction"], float)
    meas["star_distance_arcsec"] = star_distance
    return meas


def remove_duplicates(c, meas, passed, radius_arcsec) -> tuple[np.ndarray, np.ndarray]:
    """Step 7: duplicates within ``radius_arcsec`` among the candidates that passed cleaning, the largest Kron
    radius kept (HOLISMOKES XVI, Sect. 4). Returns ``kept`` and ``duplicate_of`` (the id of the entry kept)."""
    idx = np.flatnonzero(passed)
    keep_sub, dup_sub = cleaning.remove_duplicates(c["ra"][idx], c["dec"][idx], meas["kron_radius_arcsec"][idx],
                                                   radius_arcsec, score=c["score"][idx])
    kept = np.zeros(len(passed), dtype=bool)
    kept[idx[keep_sub]] = True
    duplicate_of = np.full(len(passed), "", dtype=object)
    for j, k in enumerate(dup_sub):
        if k >= 0:
            duplicate_of[idx[j]] = str(c["id"][idx[k]])
    return kept, duplicate_of


def count_stages(s: Scan, threshold: float, flags: dict[str, np.ndarray], kept: np.ndarray, radius: float) -> Table:
    """Step 8: the number left after each stage (HOLISMOKES XVI, Table 1)."""
    rows = [("catalogue", s.n), ("on_image", s.n - s.n_outside), ("valid", s.n_scored),
            (f"score>={threshold:.3g}", len(kept))]
    alive = np.ones(len(kept), dtype=bool)
    for name in flags:
        alive &= ~flags[name]
        rows.append((f"clean:{name}", int(alive.sum())))
    rows.append((f"duplicates<{radius:g}arcsec", int(kept.sum())))
    counts = Table(rows=rows, names=("stage", "n"), dtype=(str, int))
    counts["rejected"] = np.concatenate([[0], -np.diff(counts["n"])])
    for name in flags:
        counts.meta[f"rejected_by_{name}_alone"] = int(flags[name].sum())
    return counts


def candidate_table(c, meas, flags, kept, duplicate_of, members, has_truth: bool) -> Table:
    """The catalogue of candidates, by decreasing score, with the cleaning's measurements and verdicts."""
    cand = Table()
    cand["id"] = np.asarray(c["id"], dtype=str)
    for name in ("ra", "dec", "score", *(f"score_{m}" for m in members)):
        cand[name] = np.asarray(c[name], float)
    for name in (*cleaning.MEASUREMENTS, "inside_fraction", "star_distance_arcsec"):
        cand[name] = meas[name]
    for name in flags:
        cand[f"flag_{name}"] = flags[name]
    cand["rejected_by"] = ["+".join(name for name in flags if flags[name][i]) for i in range(len(kept))]
    cand["duplicate_of"] = [str(v) for v in duplicate_of]
    cand["kept"] = kept
    if has_truth:
        cand["is_lens"] = np.asarray(c["is_lens"], dtype=int)
        cand["class"] = np.asarray(c["class"], dtype=str)
    return cand


def search_metrics(s: Scan, cand: Table, passed: np.ndarray, truth: Truth, threshold: float) -> dict[str, Any]:
    """Step 8: recovered fraction of the known lenses, candidates, cleaning's rejections (for ``dvc metrics``)."""
    kept = np.asarray(cand["kept"], bool)
    n_cand = len(cand)
    n_rejected = int((~passed).sum())
    metrics: dict[str, Any] = {
        "n_positions": s.n, "n_outside": s.n_outside, "n_invalid": s.n_invalid, "n_scored": s.n_scored,
        "n_above_threshold": n_cand, "n_candidates": int(kept.sum()),
        "candidates_per_scored": int(kept.sum()) / s.n_scored if s.n_scored else 0.0,
        "cleaning_rejected": n_rejected, "cleaning_rejected_fraction": n_rejected / n_cand if n_cand else 0.0,
        "duplicates_removed": int(passed.sum() - kept.sum()),
        "validation_ge_runs": s.ge_runs, "validation_ge_withdrawn": s.ge_withdrawn,
        "validation_ge_disagreements": s.ge_disagreements, "threshold": threshold,
    }
    if not truth.known:
        return metrics
    kept_ids = set(cand["id"][kept])
    rows = {int(r): i for i, r in enumerate(s.candidates["row"])}

    def outcome(i: int) -> str:
        dup = cand["duplicate_of"][i]
        if kept[i] or (dup and dup in kept_ids):
            return "recovered"
        return "rejected" if not passed[i] else "other"

    if truth.planted_ra is not None:
        found = s.planted_row >= 0
        n_lenses = len(found)
        outcomes = [outcome(rows[int(r)]) for r in s.planted_row if r >= 0 and int(r) in rows]
        lens_cls = classes.lens_class(np.where(found, s.planted_score, np.nan), truth.tp_min, truth.qtp_min)
        class_counts = {name: int(np.sum(lens_cls == name)) for name in classes.LENS_CLASSES}
        not_in_catalogue = int(np.sum(~found))
    else:
        n_lenses, class_counts, not_in_catalogue = s.n_lenses, s.lens_class_counts, 0
        outcomes = [outcome(i) for i in np.flatnonzero(np.asarray(cand["is_lens"]) == 1)]
    recovered = outcomes.count("recovered")
    metrics.update({
        "n_lenses": n_lenses, "lenses_recovered": recovered,
        "lenses_recovered_fraction": recovered / n_lenses if n_lenses else 0.0,
        "lenses_wrongly_rejected_by_cleaning": outcomes.count("rejected"),
        "lenses_not_in_catalogue": not_in_catalogue,
        **{f"lenses_{name}": int(class_counts[name]) for name in classes.LENS_CLASSES},
        "candidates_purity": float(np.mean(np.asarray(cand["is_lens"])[kept] == 1)) if kept.any() else 0.0,
    })
    return metrics
