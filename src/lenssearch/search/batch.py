"""Steps 1-3 of a search, for one batch of positions: cut, check, score (and measure the candidates for cleaning).

:func:`process_batch` is the one function that both engines run, in three steps: :func:`prepare_batch` (cut,
check), :func:`score_prepared` (the model) and :func:`finish_batch` (result columns, candidates measured). The Ray
engine calls it in an actor pool that holds the model (:mod:`lenssearch.search.ray_engine`); the local engine
(:mod:`lenssearch.search.pipeline`) runs the same three steps batch after batch, the model in its main thread and
the other two in a helper thread, so the model never waits for the cutting. It takes a batch of catalogue rows
(``row``, ``x_pix``, ``y_pix``, ``on_image``) and returns one value per row of each result column:

- ``status``: ``outside`` (not on the image), ``invalid`` (failed a check), ``scored``;
- ``validation``: the failed checks, joined by ``+`` (:mod:`~lenssearch.search.checks`);
- ``inside_fraction``, ``score`` and ``score_<member>`` (NaN where not scored);
- the cleaning measurements (:data:`lenssearch.search.cleaning.MEASUREMENTS`) of the rows scoring at least
  ``measure_above`` (HOLISMOKES XVI, Sect. 3: rank first, then clean only the candidates), NaN elsewhere;
- the checks' statistics (``finite_fraction``, ``bg_level_<band>``, ...), the table great-expectations runs on.

The model always sees the same batch shape (``batch_size`` cutouts, the valid ones then zeros): a model's runtime
keeps state for every input shape it meets. The cutouts are cut straight into that batch (a buffer reused from one
batch to the next): no copy of the cutouts is made between the memory map and the model.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lenssearch.kb.statistics import ValidationContext
from lenssearch.search import cleaning
from lenssearch.search.checks import failure_labels, validate_batch
from lenssearch.search.inputs import CutoutStack, FieldImages
from lenssearch.search.scoring import Scorer


@dataclasses.dataclass(frozen=True)
class BatchSpec:
    """What every batch of a search needs besides its rows and the model (small, picklable for Ray workers)."""

    ctx: ValidationContext  # cutout size, bands, expected noise, thresholds of the checks
    batch_size: int
    measure_above: float | None  # measure the rows scoring at least this for cleaning (None: none)
    cleaning: object  # the search.cleaning section
    pixel_scale_arcsec: float


def new_buffer(spec: BatchSpec, n_bands: int, rows: int | None = None) -> np.ndarray:
    """A batch buffer: ``max(batch_size, rows)`` cutouts, float32 (the model's fixed batch shape)."""
    size = spec.ctx.size
    return np.zeros((max(spec.batch_size, rows or 0), size, size, n_bands), dtype=np.float32)


def cut(pixels: FieldImages | CutoutStack, rows: dict[str, np.ndarray], size: int,
        out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Step 1: the cutouts of ``rows`` (all on the image), cut from the field's memory-mapped band images or read
    from the stack (into the first rows of ``out`` if given); and the fraction of each that lies on the image."""
    if isinstance(pixels, FieldImages):
        return pixels.cut(rows["x_pix"], rows["y_pix"], size, out=out)
    index = np.asarray(rows["row"], dtype=np.int64)
    if len(index) == 0:
        return np.zeros((0, size, size, pixels.n_bands), np.float32), np.zeros(0)
    block = pixels.read(int(index.min()), int(index.max()) + 1)
    if out is None:
        return np.ascontiguousarray(block[index - index.min()]), np.ones(len(index))
    out = out[: len(index)]
    out[:] = block[index - index.min()]
    return out, np.ones(len(index))


def empty_results(n: int, spec: BatchSpec, members) -> dict[str, np.ndarray]:
    """Result columns of ``n`` rows not scored (status ``outside``)."""
    out = {
        "status": np.full(n, "outside", dtype=object),
        "validation": np.full(n, "", dtype=object),
        "inside_fraction": np.zeros(n),
        "score": np.full(n, np.nan),
        **{f"score_{m}": np.full(n, np.nan) for m in members},
        **{name: np.full(n, np.nan) for name in cleaning.MEASUREMENTS},
    }
    return out


@dataclasses.dataclass
class Prepared:
    """A batch cut and checked (steps 1-2), ready for the model."""

    n: int  # rows of the batch
    idx: np.ndarray  # the rows on the image
    inside: np.ndarray
    stats: dict[str, np.ndarray]
    failed: dict[str, np.ndarray]
    ok: np.ndarray  # of ``idx``: passed every check
    batch: np.ndarray  # what the model sees: the valid cutouts first, then zeros (at least ``batch_size`` rows)

    @property
    def valid(self) -> np.ndarray:
        """The cutouts that passed every check (a view of the batch)."""
        return self.batch[: int(np.count_nonzero(self.ok))]


def prepare_batch(rows: dict[str, np.ndarray], pixels, spec: BatchSpec, buffer: np.ndarray | None = None) -> Prepared:
    """Steps 1-2 for one batch: cut the rows on the image, check the cutouts, and lay out the model's batch.

    The cutouts are cut into ``buffer`` (:func:`new_buffer`; a new one if None) and stay there: the valid ones
    are moved to the front (where any failed a check) and the rows after them zeroed, so the buffer is the padded
    batch the model scores. The caller must not reuse ``buffer`` before it is done with the returned batch.
    """
    idx = np.flatnonzero(np.asarray(rows["on_image"], dtype=bool))
    n_bands = len(spec.ctx.bands)
    if buffer is None or len(buffer) < len(idx):
        buffer = new_buffer(spec, n_bands, len(idx))
    cutouts, inside = cut(pixels, {k: np.asarray(v)[idx] for k, v in rows.items()}, spec.ctx.size, out=buffer)
    stats, failed = validate_batch(cutouts, spec.ctx)
    ok = ~np.any(np.column_stack(list(failed.values())), axis=1) if len(idx) else np.zeros(0, bool)
    k = int(np.count_nonzero(ok))
    if k < len(idx):
        buffer[:k] = cutouts[ok]  # (the right side is a copy)
    buffer[k:] = 0.0
    return Prepared(len(rows["row"]), idx, inside, stats, failed, ok, buffer)


def score_prepared(p: Prepared, scorer: Scorer) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Step 3: the model's scores of the valid cutouts (the whole padded batch is scored: one input shape)."""
    k = int(np.count_nonzero(p.ok))
    scores = scorer.score(p.batch)
    return scores.main[:k], {name: values[:k] for name, values in scores.members.items()}


def finish_batch(p: Prepared, main: np.ndarray, members: dict[str, np.ndarray], spec: BatchSpec) -> dict[str, np.ndarray]:
    """The result columns of a scored batch; the candidates (score >= ``spec.measure_above``) measured for
    cleaning while their cutouts are in memory."""
    n, idx, ok = p.n, p.idx, p.ok
    out = empty_results(n, spec, members)
    out["status"][idx] = np.where(ok, "scored", "invalid")
    out["validation"][idx] = failure_labels(p.failed)
    out["inside_fraction"][idx] = p.inside
    scored = idx[ok]
    out["score"][scored] = main
    for name, values in members.items():
        out[f"score_{name}"][scored] = values
    if spec.measure_above is not None:
        cand = np.flatnonzero(main >= spec.measure_above)
        if len(cand):
            measured = cleaning.measure_cutouts(p.batch[cand], spec.ctx.noise_sigma, spec.ctx.bands,
                                                spec.pixel_scale_arcsec, spec.cleaning)
            for name, values in measured.items():
                out[name][scored[cand]] = values
    for name, values in p.stats.items():
        column = np.full(n, False if name == "shape_ok" else "" if name == "dtype" else np.nan,
                         dtype=bool if name == "shape_ok" else object if name == "dtype" else float)
        column[idx] = values
        out[name] = column
    out["checks_passed"] = np.zeros(n, dtype=bool)
    out["checks_passed"][scored] = True
    return out


def process_batch(rows: dict[str, np.ndarray], pixels, scorer: Scorer, spec: BatchSpec,
                  buffer: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Cut, check and score one batch of catalogue rows; measure its candidates (see the module's docstring).

    ``rows`` holds at least ``row``, ``x_pix``, ``y_pix``, ``on_image`` (at most ``spec.batch_size`` rows);
    ``buffer``: a batch buffer to cut into (:func:`new_buffer`), reused from one call to the next.
    """
    prepared = prepare_batch(rows, pixels, spec, buffer)
    return finish_batch(prepared, *score_prepared(prepared, scorer), spec)
