"""The search and the known-lens run: the pure functions behind the ``search`` and ``known-lenses`` verbs.

:func:`run_search` streams the positions of a field (or the cutouts of a stack) in batches: cut from the
memory-mapped band images, validate (:mod:`~lenssearch.search.validation`), score with the model
(:mod:`~lenssearch.search.scoring`); a producer thread cuts and validates the next batches while the model scores
the current one, through a queue of ``prefetch_batches``, so memory holds at most a few batches whatever the size
of the field. As HOLISMOKES XVI (Schuldt et al. 2025, Sect. 3) argue, only the candidates above the threshold are
then measured and cleaned (:mod:`~lenssearch.search.cleaning`), and duplicates within 2" are removed. Every stage's
count is kept (the analogue of their Table 1). Outputs, each written to a temporary name and renamed:

- ``candidates.ecsv``: every candidate above the threshold, sorted by score: RA, Dec, the committee score, each
  member's score, the cleaning measurements and flags, ``rejected_by``, ``duplicate_of``, ``kept``, and where the
  truth is known ``is_lens`` and ``class`` (TP / qTP / FN, or FP / TN; Angora et al. 2023, Table A.6);
- ``scores.ecsv``: every position with its status (``outside`` the image, failed ``validation`` checks, scored);
- ``counts.ecsv``: the number left after each stage;
- ``gallery/``: ``index.html`` with Lupton RGB stamps of the kept candidates;
- ``metrics.json`` (for ``dvc metrics``): recovered fraction of planted lenses, number of candidates, fraction
  rejected by cleaning, planted lenses wrongly rejected by cleaning (the goal is zero).

:func:`run_known_lenses` scores a catalogue of known lenses (RA, Dec, label secure/uncertain/no) with one or more
models and writes the analogue of Angora et al. (2023) Table A.6.
"""

from __future__ import annotations

import dataclasses
import json
import queue
import re
import threading
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from astropy.table import Table

from lenssearch.errors import LensSearchError
from lenssearch.io import atomic_path
from lenssearch.search import cleaning, classes
from lenssearch.search.inputs import (
    CutoutStack,
    FieldImages,
    SearchInputError,
    detect_sources,
    iter_field_batches,
    read_positions,
)
from lenssearch.search.scoring import Scorer, load_scorer
from lenssearch.search.validation import ValidationContext, failure_labels, run_expectations, validate_batch

#: Default threshold when neither the configuration nor the model version gives one (Angora et al. 2023, 4.1).
DEFAULT_THRESHOLD = 0.5

#: MLflow experiment of the search and known-lens runs.
MLFLOW_EXPERIMENT = "lenssearch-search"

#: Truth columns of a catalogue of positions or of a stack: 1/True = lens.
TRUTH_COLUMNS = ("is_lens", "label", "lens")


# ----------------------------------------------------------------------------------------------- inputs
@dataclasses.dataclass
class SearchInput:
    """What a search reads: a field (band images + positions) or a stack of cutouts (+ its table).

    Attributes
    ----------
    positions
        One row per position/cutout: ``id``, ``ra``, ``dec`` (NaN for stacks without positions) and optional
        columns (``kron_radius_arcsec``, truth ``is_lens``/``label``).
    noise_sigma
        Per-band pixel noise (e-/s) used by validation, cleaning and the gallery's scaling.
    """

    bands: tuple[str, ...]
    positions: Table
    noise_sigma: np.ndarray
    pixel_scale_arcsec: float
    description: str
    images: FieldImages | None = None
    stack: CutoutStack | None = None
    stars: Table | None = None

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
) -> SearchInput:
    """Open a field for a search: band images (a field directory or explicit paths) and positions.

    Without ``catalogue`` the positions are the sources that sep detects in ``detection.band``. Stars come from
    ``stars`` or the field directory's ``stars.ecsv`` (columns ``ra``, ``dec``, ``mag``).
    """
    if images is not None:
        field_images = FieldImages({b: Path(images[b]) for b in bands})
        desc = ", ".join(str(images[b]) for b in bands)
    elif field_dir is not None:
        field_images = FieldImages.from_field_dir(field_dir, bands)
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
            positions = read_positions(catalogue)
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
            star_table = Table.read(star_path, format="ascii.ecsv" if star_path.suffix == ".ecsv" else None)
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
    from lenssearch.search.validation import cutout_statistics

    stack = CutoutStack(path, len(bands))
    try:
        sample = stack.read(0, min(stack.n, 64))
        unit = ValidationContext(stack.size, len(bands), tuple(bands), np.ones(len(bands)), 1.0, (0.0, np.inf), np.inf)
        stats = cutout_statistics(sample, unit)
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
) -> SearchInput:
    """Open what a verb searches: a field (directory or ``BAND=path`` images) or a stack, from the CLI's options.

    With ``known``, ``catalogue`` is a catalogue of known lenses (:func:`read_known_lenses`); for a stack it must
    have one row per cutout.
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
        catalogue=None if known else catalogue, stars=stars,
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


# ----------------------------------------------------------------------------------------------- streaming
class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def prefetch(iterator: Iterable, depth: int) -> Iterator:
    """Run ``iterator`` in a thread, at most ``depth`` items ahead of the consumer (bounded memory).

    Cutting (memory-mapped reads) and numpy validation release the GIL, so they overlap with the model's
    prediction. Exceptions of the producer are re-raised in the consumer.
    """
    if depth <= 0:
        yield from iterator
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in iterator:
                if not put(item):
                    return
            put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(_Failure(exc))

    thread = threading.Thread(target=work, name="search-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join(timeout=5.0)


def _batches(inp: SearchInput, cfg) -> tuple[Iterator, np.ndarray, np.ndarray, np.ndarray]:
    """The batch iterator and per-row pixel positions and on-image flags."""
    n = len(inp.positions)
    if inp.images is not None:
        x, y = inp.images.world_to_pixel(inp.positions["ra"], inp.positions["dec"])
        on_image = inp.images.contains(x, y)
        rows = np.flatnonzero(on_image)
        it = iter_field_batches(inp.images, x, y, rows, cfg.cutout_pixels, cfg.batch_size)
        return it, x, y, on_image
    assert inp.stack is not None
    return inp.stack.batches(cfg.batch_size), np.full(n, np.nan), np.full(n, np.nan), np.ones(n, dtype=bool)


@dataclasses.dataclass
class ScoredPositions:
    """Per-row results of streaming a search input through validation and the model."""

    status: np.ndarray  # 'outside' | 'invalid' | 'scored'
    validation: np.ndarray  # failed checks joined by '+'
    inside_fraction: np.ndarray
    score: np.ndarray
    members: dict[str, np.ndarray]
    measurements: dict[str, np.ndarray]  # cleaning measurements, NaN except for candidates
    x_pix: np.ndarray
    y_pix: np.ndarray
    ge_runs: int = 0
    ge_withdrawn: int = 0  # scored by the inline checks' leave, then failed by great-expectations
    ge_disagreements: int = 0  # rows where great-expectations and the inline checks disagree
    ge_failures: list = dataclasses.field(default_factory=list)


def _import_great_expectations() -> None:
    """Import great-expectations (several seconds) ahead of its first use (analytics off, as the KB suite)."""
    import os

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations  # noqa: F401


class _ExpectationChunks:
    """Accumulate per-cutout statistics; run the KB's great-expectations suite every ``chunk_rows`` rows.

    The suite runs in one worker thread (great-expectations is imported there as soon as the search starts), so
    that it overlaps with the model; at most :attr:`MAX_PENDING` chunks of statistics wait for it (bounded
    memory). Its verdicts are applied by :meth:`finish`, before the candidates are selected.
    """

    MAX_PENDING = 2

    def __init__(self, ctx: ValidationContext, vcfg, chunk_rows: int, result: ScoredPositions):
        from concurrent.futures import ThreadPoolExecutor

        self.ctx, self.vcfg, self.chunk_rows, self.result = ctx, vcfg, chunk_rows, result
        self.rows: list[np.ndarray] = []
        self.stats: list[dict[str, np.ndarray]] = []
        self.inline_ok: list[np.ndarray] = []
        self.n = 0
        self.pending: list = []
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="search-ge") if chunk_rows > 0 else None
        if self.pool is not None:
            self._warm = self.pool.submit(_import_great_expectations)

    def add(self, rows: np.ndarray, stats: dict[str, np.ndarray], inline_ok: np.ndarray) -> None:
        if self.pool is None:
            return
        self.rows.append(rows)
        self.stats.append(stats)
        self.inline_ok.append(inline_ok)
        self.n += len(rows)
        if self.n >= self.chunk_rows:
            self.flush()

    def flush(self) -> None:
        """Hand the accumulated rows to the worker."""
        if self.n == 0:
            return
        rows = np.concatenate(self.rows)
        stats = {k: np.concatenate([s[k] for s in self.stats]) for k in self.stats[0]}
        inline_ok = np.concatenate(self.inline_ok)
        self.rows, self.stats, self.inline_ok, self.n = [], [], [], 0
        while len(self.pending) >= self.MAX_PENDING:
            self._apply(*self.pending.pop(0))
        self.pending.append((rows, inline_ok, self.pool.submit(run_expectations, stats, self.ctx, self.vcfg)))

    def _apply(self, rows: np.ndarray, inline_ok: np.ndarray, future) -> None:
        passed, failures = future.result()
        r = self.result
        r.ge_runs += 1
        r.ge_failures.extend(failures)
        r.ge_disagreements += int(np.sum(passed != inline_ok))
        withdraw = rows[~passed & inline_ok]
        r.ge_withdrawn += len(withdraw)
        r.status[withdraw] = "invalid"
        r.validation[withdraw] = "great_expectations"
        r.score[withdraw] = np.nan
        for values in r.members.values():
            values[withdraw] = np.nan

    def finish(self) -> None:
        """Run the last chunk and apply every verdict."""
        if self.pool is None:
            return
        try:
            self.flush()
            while self.pending:
                self._apply(*self.pending.pop(0))
            self._warm.result()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def abort(self) -> None:
        """Stop the worker after a failure (pending chunks are dropped)."""
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


def stream_scores(
    inp: SearchInput, scorer: Scorer, cfg, measure_above: float | None, progress: bool = True
) -> ScoredPositions:
    """Cut, validate and score every position of ``inp``; measure the cleaning quantities of the candidates.

    Parameters
    ----------
    cfg
        The whole configuration (sections ``search`` and ``validate``).
    measure_above
        Cutouts scoring at least this are measured for cleaning while they are in memory (None: none).
    """
    s = cfg.search
    n = len(inp.positions)
    batches, x, y, on_image = _batches(inp, s)
    res = ScoredPositions(
        status=np.full(n, "outside", dtype="<U8"), validation=np.full(n, "", dtype=object), inside_fraction=np.zeros(n),
        score=np.full(n, np.nan), members={}, measurements={name: np.full(n, np.nan) for name in cleaning.MEASUREMENTS},
        x_pix=np.asarray(x), y_pix=np.asarray(y),
    )
    size = s.cutout_pixels if inp.images is not None else inp.stack.size
    ctx = ValidationContext.from_config(cfg.validate, size, inp.bands, inp.noise_sigma)
    expectations = _ExpectationChunks(ctx, cfg.validate, s.ge_chunk_rows, res)

    def produce():
        for batch in batches:
            stats, failed = validate_batch(batch.cutouts, ctx)
            yield batch, stats, failed

    try:
        _stream(inp, scorer, s, measure_above, res, expectations, prefetch(produce(), s.prefetch_batches),
                int(on_image.sum()), progress)
    except BaseException:
        expectations.abort()
        raise
    expectations.finish()
    return res


def _stream(inp, scorer, s, measure_above, res, expectations, batches, total: int, progress: bool) -> None:
    """The consumer loop of :func:`stream_scores`: score each validated batch, measure its candidates."""
    from tqdm import tqdm

    n = len(res.score)
    with tqdm(total=total, desc="search", unit="cutout", disable=not progress, mininterval=2.0) as bar:
        for batch, stats, failed in batches:
            ok = ~np.any(np.column_stack(list(failed.values())), axis=1)
            idx = batch.index
            res.validation[idx] = failure_labels(failed)
            res.status[idx] = np.where(ok, "scored", "invalid")
            res.inside_fraction[idx] = batch.inside_fraction
            good = idx[ok]
            cut = batch.cutouts[ok] if not ok.all() else batch.cutouts
            scores = scorer.score(cut)
            res.score[good] = scores.main
            for name, values in scores.members.items():
                res.members.setdefault(name, np.full(n, np.nan))[good] = values
            if measure_above is not None and len(good):
                cand = scores.main >= measure_above
                if cand.any():
                    m = cleaning.measure_cutouts(
                        cut[cand], inp.noise_sigma, inp.bands, inp.pixel_scale_arcsec, s.cleaning
                    )
                    for name, values in m.items():
                        res.measurements[name][good[cand]] = values
            expectations.add(idx, stats, ok)
            bar.update(len(idx))


# ----------------------------------------------------------------------------------------------- truth
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


def match_planted(positions: Table, planted: Table, radius_arcsec: float) -> tuple[np.ndarray, np.ndarray]:
    """Match planted lenses to catalogue rows.

    Returns
    -------
    is_lens, planted_row
        Per catalogue row, 1 if a planted lens lies within ``radius_arcsec`` else 0; per planted lens, the nearest
        catalogue row within the radius or -1.
    """
    for name in ("ra", "dec"):
        if name not in planted.colnames:
            raise SearchInputError(f"planted-lens catalogue lacks column '{name}' (has {planted.colnames})")
    d_row, _ = cleaning.nearest_neighbour(positions["ra"], positions["dec"], planted["ra"], planted["dec"])
    is_lens = (d_row <= radius_arcsec).astype(int)
    d_planted, row = cleaning.nearest_neighbour(planted["ra"], planted["dec"], positions["ra"], positions["dec"])
    planted_row = np.where(d_planted <= radius_arcsec, row, -1)
    return is_lens, planted_row


# ----------------------------------------------------------------------------------------------- search
@dataclasses.dataclass
class SearchResult:
    """What :func:`run_search` returns (and wrote)."""

    candidates: Table
    scores: Table
    counts: Table
    metrics: dict[str, Any]
    out_dir: Path


def _star_distance(inp: SearchInput, rows: np.ndarray, cfg) -> np.ndarray:
    if inp.stars is None or len(rows) == 0:
        return np.full(len(rows), np.inf)
    bright = np.asarray(inp.stars["mag"], float) <= cfg.cleaning.star_mag_max
    d, _ = cleaning.nearest_neighbour(
        inp.positions["ra"][rows], inp.positions["dec"][rows], inp.stars["ra"][bright], inp.stars["dec"][bright]
    )
    return d


def _stamps(inp: SearchInput, rows: np.ndarray, x: np.ndarray, y: np.ndarray, gcfg) -> list:
    """(small stamp, context stamp) for each row, cut from the field or read from the stack."""
    stamps = []
    small_pix = max(8, int(round(gcfg.stamp_arcsec / inp.pixel_scale_arcsec)))
    context_pix = max(small_pix, int(round(gcfg.context_arcsec / inp.pixel_scale_arcsec)))
    for r in rows:
        if inp.images is not None:
            small, _ = inp.images.cut(x[r : r + 1], y[r : r + 1], small_pix)
            context, _ = inp.images.cut(x[r : r + 1], y[r : r + 1], context_pix)
            stamps.append((small[0], context[0]))
        else:
            cutout = inp.stack.read(int(r), int(r) + 1)[0]
            s = cutout.shape[0]
            half = min(small_pix, s) // 2
            c = s // 2
            stamps.append((cutout[c - half : c + half, c - half : c + half], cutout))
    return stamps


def _log_run(run_name, params, metrics, files, tracking_uri, artifact_root) -> None:
    """Record a run (params, metrics such as the per-stage counts, output files) in MLflow's ``search`` experiment."""
    from lenssearch import tracking

    uri = tracking.resolve_tracking_uri(tracking_uri)
    metrics = {re.sub(r"[^A-Za-z0-9_\-. :/]", "_", k): v for k, v in metrics.items()}  # MLflow's metric names
    with tracking.tracked_run(
        run_name, experiment=MLFLOW_EXPERIMENT, params=params, tracking_uri=uri,
        artifact_root=artifact_root or tracking.artifact_root_for(uri),
    ):
        tracking.log_metrics(metrics)
        tracking.log_artifacts(files)


#: Rows per chunk when writing a catalogue: astropy's ECSV writer holds every line of its input in memory.
WRITE_CHUNK_ROWS = 5000


def _write_table(path: Path, table: Table, chunk_rows: int = WRITE_CHUNK_ROWS) -> None:
    """Write an ECSV catalogue atomically, ``chunk_rows`` rows at a time (bounded memory for large fields).

    Each chunk is formatted by astropy's ECSV writer; the header (``#`` lines and column names) is kept from the
    first chunk only, so the file is exactly what one ``Table.write`` would give.
    """
    import io

    with atomic_path(path) as tmp, open(tmp, "w") as out:
        for start in range(0, max(len(table), 1), chunk_rows):
            buf = io.StringIO()
            table[start : start + chunk_rows].write(buf, format="ascii.ecsv")
            text = buf.getvalue()
            if start > 0:
                lines = text.splitlines(keepends=True)
                first_data = next(i for i, line in enumerate(lines) if not line.startswith("#")) + 1
                text = "".join(lines[first_data:])
            out.write(text)


def _write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def run_search(
    config,
    inp: SearchInput,
    out_dir: str | Path,
    *,
    model_uri: "str | Scorer | None" = None,
    planted: Table | None = None,
    tracking_uri: str | None = None,
    artifact_root: str | Path | None = None,
    log_mlflow: bool = True,
    write_gallery: bool = True,
    progress: bool = True,
) -> SearchResult:
    """Search ``inp`` with a model: score, clean, write the catalogue, the gallery, counts and metrics.

    Parameters
    ----------
    config
        The whole configuration (:class:`lenssearch.config.Config`): sections ``search`` and ``validate``.
    inp
        From :func:`open_input`, :func:`open_field` or :func:`open_stack`.
    out_dir
        Output folder (e.g. ``reports/search``); each file in it is written atomically, all after the search.
    model_uri
        Registered model or committee; default ``cfg.model_uri`` (``models:/lenssearch@champion``). An
        already loaded :class:`~lenssearch.search.scoring.Scorer` is used as it is.
    planted
        Planted lenses (``ra``, ``dec``) of a synthetic field: the truth for classes and recovery metrics.
        Without it, a truth column of the positions (``is_lens``/``label``) is used where present.
    tracking_uri
        MLflow tracking URI of the model registry and of the search run (default: the project's,
        :data:`lenssearch.tracking.DEFAULT_TRACKING_URI`); ``artifact_root`` likewise for new experiments.
    """
    cfg = config.search
    out_dir = Path(out_dir)
    if isinstance(model_uri, Scorer):
        scorer = model_uri
    else:
        scorer = load_scorer(model_uri or cfg.model_uri, tracking_uri=tracking_uri)
    uri = scorer.uri
    if cfg.threshold is not None:
        threshold, threshold_source = float(cfg.threshold), "params search.threshold"
    elif scorer.threshold is not None:
        threshold, threshold_source = float(scorer.threshold), f"tag of {uri}"
    else:
        threshold, threshold_source = DEFAULT_THRESHOLD, "default 0.5 (no tuned threshold tag on the model)"

    positions = inp.positions
    n = len(positions)
    res = stream_scores(inp, scorer, config, measure_above=threshold, progress=progress)
    member_names = list(res.members)

    # ---- truth
    planted_row = None
    if planted is not None:
        is_lens, planted_row = match_planted(positions, planted, cfg.match_radius_arcsec)
    else:
        is_lens = truth_from_positions(positions)
    has_truth = is_lens is not None

    # ---- candidates and cleaning (HOLISMOKES XVI: rank first, clean only the candidates)
    scored = res.status == "scored"
    cand_rows = np.flatnonzero(scored & (res.score >= threshold))
    cand_rows = cand_rows[np.argsort(-res.score[cand_rows], kind="stable")]
    meas = {name: res.measurements[name][cand_rows] for name in cleaning.MEASUREMENTS}
    if "kron_radius_arcsec" in positions.colnames:
        given = np.asarray(positions["kron_radius_arcsec"], float)[cand_rows]
        meas["kron_radius_arcsec"] = np.where(np.isfinite(given), given, meas["kron_radius_arcsec"])
    meas["inside_fraction"] = res.inside_fraction[cand_rows]
    meas["star_distance_arcsec"] = _star_distance(inp, cand_rows, cfg)
    flags = cleaning.apply_rules(meas, cfg.cleaning)
    rejected_by = np.asarray(
        ["+".join(name for name in flags if flags[name][i]) for i in range(len(cand_rows))], dtype=object
    )
    passed = ~np.any(np.column_stack([flags[k] for k in flags]), axis=1) if len(cand_rows) else np.zeros(0, bool)
    ra = np.asarray(positions["ra"], float)[cand_rows]
    dec = np.asarray(positions["dec"], float)[cand_rows]
    keep_sub, dup_sub = cleaning.remove_duplicates(
        ra[passed], dec[passed], meas["kron_radius_arcsec"][passed], cfg.cleaning.duplicate_radius_arcsec,
        score=res.score[cand_rows][passed],
    )
    kept = np.zeros(len(cand_rows), dtype=bool)
    kept[np.flatnonzero(passed)[keep_sub]] = True
    duplicate_of = np.full(len(cand_rows), "", dtype=object)
    passed_rows = cand_rows[passed]
    for j, k in enumerate(dup_sub):
        if k >= 0:
            duplicate_of[np.flatnonzero(passed)[j]] = str(positions["id"][passed_rows[k]])

    # ---- counts (the analogue of HOLISMOKES XVI, Table 1)
    count_rows = [
        ("catalogue", n),
        ("on_image", int((res.status != "outside").sum())),
        ("valid", int(scored.sum())),
        (f"score>={threshold:.3g}", len(cand_rows)),
    ]
    alive = np.ones(len(cand_rows), dtype=bool)
    for name in flags:
        alive &= ~flags[name]
        count_rows.append((f"clean:{name}", int(alive.sum())))
    count_rows.append((f"duplicates<{cfg.cleaning.duplicate_radius_arcsec:g}arcsec", int(kept.sum())))
    counts = Table(rows=count_rows, names=("stage", "n"), dtype=(str, int))
    counts["rejected"] = np.concatenate([[0], -np.diff(counts["n"])])
    for name in flags:
        counts.meta[f"rejected_by_{name}_alone"] = int(flags[name].sum())

    # ---- per-position table
    score_cols = {f"score_{m}": res.members[m] for m in member_names}
    scores = Table()
    scores["id"] = [str(v) for v in positions["id"]]
    scores["ra"] = np.asarray(positions["ra"], float)
    scores["dec"] = np.asarray(positions["dec"], float)
    scores["status"] = res.status
    scores["validation"] = [str(v) for v in res.validation]
    scores["score"] = res.score
    for name, values in score_cols.items():
        scores[name] = values
    if has_truth:
        scores["is_lens"] = is_lens
        scores["class"] = classes.truth_class(res.score, is_lens == 1, cfg.tp_min, cfg.qtp_min)
        scores["class"][is_lens < 0] = ""

    # ---- candidate table
    cand = Table()
    cand["id"] = [str(v) for v in positions["id"][cand_rows]]
    cand["ra"] = ra
    cand["dec"] = dec
    cand["score"] = res.score[cand_rows]
    for name, values in score_cols.items():
        cand[name] = values[cand_rows]
    for name in (*cleaning.MEASUREMENTS, "inside_fraction", "star_distance_arcsec"):
        cand[name] = meas[name]
    for name in flags:
        cand[f"flag_{name}"] = flags[name]
    cand["rejected_by"] = [str(v) for v in rejected_by]
    cand["duplicate_of"] = [str(v) for v in duplicate_of]
    cand["kept"] = kept
    if has_truth:
        cand["is_lens"] = scores["is_lens"][cand_rows]
        cand["class"] = scores["class"][cand_rows]
    meta = {
        "input": inp.description,
        "model_uri": uri,
        "threshold": threshold,
        "threshold_source": threshold_source,
        "bands": list(inp.bands),
        "members": member_names,
        "references": ("Angora et al. 2023, Sect. 5 and Table A.6; "
                       "Schuldt et al. 2025 (HOLISMOKES XVI, A&A 699, A350), Sect. 3-4"),
    }
    cand.meta.update(meta)
    scores.meta.update(meta)
    counts.meta.update(meta)

    # ---- metrics
    n_cand = len(cand_rows)
    n_rejected = int((~passed).sum())
    metrics: dict[str, Any] = {
        "n_positions": n,
        "n_outside": int((res.status == "outside").sum()),
        "n_invalid": int((res.status == "invalid").sum()),
        "n_scored": int(scored.sum()),
        "n_above_threshold": n_cand,
        "n_candidates": int(kept.sum()),
        "cleaning_rejected": n_rejected,
        "cleaning_rejected_fraction": n_rejected / n_cand if n_cand else 0.0,
        "duplicates_removed": int(passed.sum() - kept.sum()),
        "validation_ge_runs": res.ge_runs,
        "validation_ge_withdrawn": res.ge_withdrawn,
        "validation_ge_disagreements": res.ge_disagreements,
        "threshold": threshold,
    }
    if has_truth:
        cand_pos = {int(r): i for i, r in enumerate(cand_rows)}
        if planted_row is not None:
            lens_rows = planted_row
        else:
            lens_rows = np.flatnonzero(is_lens == 1)
        n_lenses = len(lens_rows)
        recovered = wrongly = 0
        kept_ids = set(cand["id"][kept])
        for r in lens_rows:
            if r < 0 or int(r) not in cand_pos:
                continue
            i = cand_pos[int(r)]
            if kept[i] or (duplicate_of[i] and duplicate_of[i] in kept_ids):
                recovered += 1
            elif not passed[i]:
                wrongly += 1
        lens_scores = np.array([res.score[r] if r >= 0 else np.nan for r in lens_rows])
        lens_cls = classes.lens_class(lens_scores, cfg.tp_min, cfg.qtp_min)
        metrics.update(
            {
                "n_lenses": n_lenses,
                "lenses_recovered": recovered,
                "lenses_recovered_fraction": recovered / n_lenses if n_lenses else 0.0,
                "lenses_wrongly_rejected_by_cleaning": wrongly,
                "lenses_not_in_catalogue": int(np.sum(np.asarray(lens_rows) < 0)),
                **{f"lenses_{name}": int(np.sum(lens_cls == name)) for name in classes.LENS_CLASSES},
            }
        )
        kept_truth = np.asarray(cand["is_lens"])[kept]
        metrics["candidates_purity"] = float(np.mean(kept_truth == 1)) if kept.any() else 0.0

    # ---- write: everything computed; gallery first, the metrics last
    out_dir.mkdir(parents=True, exist_ok=True)
    if write_gallery:
        g = cfg.gallery
        rows_sorted = np.flatnonzero(kept)[: g.max_candidates]
        gallery_rows = [dict(zip(cand.colnames, cand[i])) for i in rows_sorted]
        stamps = _stamps(inp, cand_rows[rows_sorted], res.x_pix, res.y_pix, g)
        from lenssearch.search.gallery import write_gallery as _write_gallery

        with atomic_path(out_dir / "gallery") as tmp:
            _write_gallery(
                tmp, gallery_rows, stamps, inp.noise_sigma, g.stretch_sigma, g.lupton_q, list(score_cols),
                f"lenssearch candidates: {inp.description}", g.stamp_arcsec, g.context_arcsec,
            )
    _write_table(out_dir / "candidates.ecsv", cand)
    _write_table(out_dir / "scores.ecsv", scores)
    _write_table(out_dir / "counts.ecsv", counts)
    _write_json(out_dir / "metrics.json", metrics)
    if log_mlflow:
        count_metrics = {f"count_{i:02d}_{stage.replace(':', '_').replace('>=', '_ge_').replace('<', '_lt_')}": int(n)
                         for i, (stage, n) in enumerate(counts.iterrows("stage", "n"))}
        _log_run(
            "search", {"model_uri": uri, "threshold": threshold, "input": inp.description},
            {**metrics, **count_metrics},
            [out_dir / name for name in ("candidates.ecsv", "counts.ecsv", "metrics.json")],
            tracking_uri, artifact_root,
        )
    return SearchResult(cand, scores, counts, metrics, out_dir)


# ----------------------------------------------------------------------------------------------- known lenses
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


def run_known_lenses(
    config,
    inp: SearchInput,
    out_dir: str | Path,
    model_uris: Sequence[str],
    *,
    tracking_uri: str | None = None,
    artifact_root: str | Path | None = None,
    log_mlflow: bool = True,
    progress: bool = False,
) -> tuple[Table, Table]:
    """Score known lenses with each model (and each committee member) and classify them (Table A.6 analogue).

    ``inp.positions`` must have ``label`` (from :func:`read_known_lenses`). Networks are named by their model
    (``models:/lenssearch-vgg/3`` -> ``vgg``) and a committee's members by ``<committee>.<member>``. Writes
    ``known_lenses.ecsv`` (one row per system: RA, Dec, label, validation, each network's ``p_`` and ``class_``) and
    ``known_lenses_totals.ecsv`` (TP, qTP, FN over secure systems per network) and a ``known_lenses.md`` table.
    """
    cfg = config.search
    out_dir = Path(out_dir)
    if not model_uris:
        raise LensSearchError("known-lenses needs at least one model URI")
    scorers = [uri if isinstance(uri, Scorer) else load_scorer(uri, tracking_uri=tracking_uri) for uri in model_uris]
    model_uris = [scorer.uri for scorer in scorers]
    positions = inp.positions
    labels = np.asarray(positions["label"], dtype=str)
    is_lens = np.asarray([classes.KNOWN_LABELS[v] for v in labels])
    table = Table()
    table["id"] = [str(v) for v in positions["id"]]
    table["ra"] = np.asarray(positions["ra"], float)
    table["dec"] = np.asarray(positions["dec"], float)
    table["label"] = labels
    networks: list[str] = []
    for scorer in scorers:
        res = stream_scores(inp, scorer, config, measure_above=None, progress=progress)
        if "status" not in table.colnames:
            table["status"] = res.status
            table["validation"] = [str(v) for v in res.validation]
        columns = {scorer.label: res.score, **{f"{scorer.label}.{m}": v for m, v in res.members.items()}}
        for name, values in columns.items():
            label, k = name, 1
            while label in networks:  # the same model given twice (e.g. by alias and by version)
                k += 1
                label = f"{name}_{k}"
            networks.append(label)
            table[f"p_{label}"] = values
            table[f"class_{label}"] = classes.truth_class(values, is_lens, cfg.tp_min, cfg.qtp_min)
    totals = Table(names=("network", *classes.LENS_CLASSES, "n_secure"), dtype=(str, int, int, int, int))
    n_secure = int(np.sum(labels == "secure"))
    for label in networks:
        t = classes.class_totals(table[f"class_{label}"], labels)
        totals.add_row((label, *(t[c] for c in classes.LENS_CLASSES), n_secure))
    meta = {"input": inp.description, "model_uris": list(model_uris),
            "classes": (f"TP p>={cfg.tp_min}, qTP {cfg.qtp_min}<=p<{cfg.tp_min}, FN p<{cfg.qtp_min} "
                        "(Angora et al. 2023, Table A.6)")}
    table.meta.update(meta)
    totals.meta.update(meta)
    md = ["| id | RA | Dec | " + " | ".join(networks) + " | label |", "|---|---|---|" + "---|" * len(networks) + "---|"]
    for row in table:
        cells = " | ".join(
            f"{row[f'class_{n}']} ({row[f'p_{n}']:.2f})" if row[f"class_{n}"] else "invalid" for n in networks
        )
        md.append(f"| {row['id']} | {row['ra']:.5f} | {row['dec']:.5f} | {cells} | {row['label']} |")
    for c in classes.LENS_CLASSES:
        counts_c = " | ".join(str(int(totals[c][i])) for i in range(len(networks)))
        md.append(f"| | | N_{c} (secure) | {counts_c} | |")
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_table(out_dir / "known_lenses.ecsv", table)
    _write_table(out_dir / "known_lenses_totals.ecsv", totals)
    with atomic_path(out_dir / "known_lenses.md") as tmp:
        tmp.write_text("\n".join(md) + "\n")
    if log_mlflow:
        metrics = {f"{c}_{row['network']}": int(row[c]) for row in totals for c in classes.LENS_CLASSES}
        _log_run(
            "known-lenses", {"model_uris": ",".join(model_uris), "input": inp.description}, metrics,
            [out_dir / "known_lenses.ecsv", out_dir / "known_lenses_totals.ecsv", out_dir / "known_lenses.md"],
            tracking_uri, artifact_root,
        )
    return table, totals
