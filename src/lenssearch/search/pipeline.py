"""The search and the known-lens run: the pure functions behind the ``search`` and ``known-lenses`` verbs.

:func:`run_search` streams the positions of a field (or the cutouts of a stack) in chunks of catalogue rows
(:data:`CHUNK_ROWS`; a FITS catalogue is read chunk by chunk) and batches of cutouts: cut from the memory-mapped
band images, validate (:mod:`~lenssearch.search.validation`), score with the model
(:mod:`~lenssearch.search.scoring`); a producer thread cuts and validates the next batches while the model scores
the current one, through a queue of ``prefetch_batches``. Each chunk's per-position results, once judged by the
great-expectations pass, are handed to a writer process that appends them to a temporary ``scores.ecsv``
(:mod:`~lenssearch.search.writer`), and forgotten; only the candidates are kept.
So memory holds a few batches and chunks whatever the size of the field. As HOLISMOKES XVI (Schuldt et al. 2025, Sect. 3) argue, only the candidates above the threshold are
then measured and cleaned (:mod:`~lenssearch.search.cleaning`), and duplicates within 2" are removed. Every stage's
count is kept (the analogue of their Table 1). Outputs, each written to a temporary name and renamed:

- ``candidates.ecsv``: every candidate above the threshold, sorted by score: RA, Dec, the committee score, each
  member's score, the cleaning measurements and flags, ``rejected_by``, ``duplicate_of``, ``kept``, and where the
  truth is known ``is_lens`` and ``class`` (TP / qTP / FN, or FP / TN; Angora et al. 2023, Table A.6);
- ``scores.ecsv``: every position with its status (``outside`` the image, failed ``validation`` checks, scored),
  written while the search runs under a temporary name, renamed when the search has succeeded;
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
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
from astropy.table import Table

from lenssearch.errors import LensSearchError
from lenssearch.io import atomic_path, check_output_folder, describe_columns
from lenssearch.search import cleaning, classes
from lenssearch.search.inputs import (
    Batch,
    CutoutStack,
    FieldImages,
    FitsCatalogue,
    SearchInputError,
    detect_sources,
    position_rows,
    read_positions,
    read_table,
)
from lenssearch.search.scoring import Scorer, Scores, load_scorer
from lenssearch.search.validation import (
    SharedStats,
    ValidationContext,
    failure_labels,
    import_great_expectations,
    run_shared_expectations,
    validate_batch,
)
from lenssearch.search.workers import RecycledWorker, cancel_and_wait, free_shared_block, new_shared_block
from lenssearch.search.writer import WRITE_CHUNK_ROWS, EcsvAppender, ScoresWriter

#: scores.ecsv is logged to MLflow up to this size (a survey's would be a copy of gigabytes)
MAX_LOGGED_SCORES_BYTES = 200 * 2**20
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


#: Catalogue rows read, tracked and written per chunk: the per-position results of a search are held for a few
#: chunks at most (until great-expectations has judged them), then appended to ``scores.ecsv``.
CHUNK_ROWS = 16384


@dataclasses.dataclass
class ScoredChunk:
    """Per-row results of catalogue rows ``start:start + len(positions)``.

    Yielded by :func:`iter_scored_chunks` once final: every on-image row scored or flagged, and the
    great-expectations verdicts of its rows applied.
    """

    start: int
    positions: Table  # id, ra, dec and the catalogue's extra columns (truth, Kron radius)
    x_pix: np.ndarray
    y_pix: np.ndarray
    status: np.ndarray  # 'outside' | 'invalid' | 'scored'
    validation: np.ndarray  # failed checks joined by '+'
    inside_fraction: np.ndarray
    score: np.ndarray
    members: dict[str, np.ndarray]
    measurements: dict[str, np.ndarray]  # cleaning measurements, NaN except for the rows above ``measure_above``
    remaining: int = 0  # on-image rows not scored yet
    ge_pending: int = 0  # rows handed to great-expectations without a verdict yet

    @property
    def stop(self) -> int:
        return self.start + len(self.positions)


@dataclasses.dataclass
class ValidationTally:
    """Counts of the great-expectations pass over a whole search (plain integers: nothing per row)."""

    ge_runs: int = 0
    ge_withdrawn: int = 0  # scored by the inline checks' leave, then failed by great-expectations
    ge_disagreements: int = 0  # rows where great-expectations and the inline checks disagree
    ge_failures: dict = dataclasses.field(default_factory=dict)  # (expectation, column) -> failing rows


@dataclasses.dataclass
class ScoredPositions(ValidationTally):
    """Per-row results of a whole search input, in memory (:func:`stream_scores`; small catalogues only)."""

    status: np.ndarray = None
    validation: np.ndarray = None
    inside_fraction: np.ndarray = None
    score: np.ndarray = None
    members: dict[str, np.ndarray] = None
    measurements: dict[str, np.ndarray] = None
    x_pix: np.ndarray = None
    y_pix: np.ndarray = None


#: Runs of the great-expectations suite per worker process before it is replaced (bounds the memory that
#: great-expectations keeps from run to run; a new worker re-imports it, ~3 s of one core, off the search's process).
GE_TASKS_PER_CHILD = 8


#: The great-expectations worker (shared by the searches of this process, so that great-expectations is imported
#: once, not once per search); its first task imports great-expectations.
GE_WORKER = RecycledWorker("great-expectations", GE_TASKS_PER_CHILD, import_great_expectations)


def warm_up_expectations(wait: bool = False) -> None:
    """Start the great-expectations worker process now (it imports great-expectations, ~3 s of one core); with
    ``wait``, until it is ready. A search does this itself; a benchmark calls it before its timings."""
    GE_WORKER.warm_up(wait)


class _StatsBuffer:
    """One chunk of per-cutout statistics, with the rows' numbers and inline verdicts, in a block of shared memory
    (:class:`~lenssearch.search.validation.SharedStats`) that the great-expectations worker reads directly.

    A search allocates at most ``MAX_PENDING + 1`` of them and reuses them from chunk to chunk. Without them, each
    great-expectations run made ~3 MB of transient blocks in the search's process (the batches' statistics
    concatenated, then pickled for the worker); glibc's allocator kept them in its heap, fragmented by the small
    blocks allocated beside them, and the search's memory grew by ~2.5 bytes per position (~230 MB at 10^8).
    """

    ROW, OK = "_row", "_inline_ok"

    def __init__(self, columns: dict[str, np.ndarray], capacity: int):
        fields = [(k, v.dtype) for k, v in columns.items()] + [(self.ROW, np.int64), (self.OK, np.bool_)]
        self.dtype = np.dtype(fields)
        self.capacity = capacity
        self.shm = new_shared_block(self.dtype.itemsize * capacity)
        self.table = np.ndarray((capacity,), dtype=self.dtype, buffer=self.shm.buf)
        self.n = 0

    def fits(self, columns: dict[str, np.ndarray], rows: int) -> bool:
        return self.n + rows <= self.capacity and all(
            k in self.dtype.names and self.dtype[k] == v.dtype for k, v in columns.items()
        ) and len(columns) + 2 == len(self.dtype.names)

    def add(self, rows: np.ndarray, stats: dict[str, np.ndarray], inline_ok: np.ndarray) -> None:
        part = self.table[self.n : self.n + len(rows)]
        for k, v in stats.items():
            part[k] = v
        part[self.ROW] = rows
        part[self.OK] = inline_ok
        self.n += len(rows)

    def where(self) -> SharedStats:
        return SharedStats(self.shm.name, self.dtype, self.n, (self.ROW, self.OK))

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """The rows' numbers and inline verdicts (views of the block: used before the buffer is reused)."""
        return self.table[self.ROW][: self.n], self.table[self.OK][: self.n]

    def release(self) -> None:
        self.table = None
        free_shared_block(self.shm)


class _ExpectationChunks:
    """Accumulate per-cutout statistics; run the KB's great-expectations suite every ``chunk_rows`` rows.

    The suite runs in one worker *process* (spawned; great-expectations is imported there as soon as the search
    starts), so that it overlaps with the model without taking the interpreter lock from the cutting thread (the
    import alone is ~3 s of pure Python), and so that what great-expectations keeps after each run (a few MB per
    run of 20000 rows, held, not transient) is not held by the search: the worker is replaced after
    :data:`GE_TASKS_PER_CHILD` runs. The statistics are gathered in shared memory (:class:`_StatsBuffer`, reused:
    nothing of the size of a chunk is allocated per run in the search's process). At most :attr:`MAX_PENDING`
    chunks wait for the worker (bounded memory). Each verdict is handed to ``apply(rows, passed, inline_ok)`` as
    soon as it is ready, so the rows it judged can be written out and forgotten.
    """

    MAX_PENDING = 2

    def __init__(self, ctx: ValidationContext, vcfg, chunk_rows: int, tally: ValidationTally, apply):
        self.ctx, self.vcfg, self.chunk_rows, self.tally, self.apply = ctx, vcfg, chunk_rows, tally, apply
        self.current: _StatsBuffer | None = None  # being filled
        self.free: list[_StatsBuffer] = []  # judged, to be reused
        self.pending: list[tuple[_StatsBuffer, Any]] = []  # (buffer, future of its verdict), oldest first
        self.pool = GE_WORKER.pool() if chunk_rows > 0 else None

    @property
    def enabled(self) -> bool:
        return self.pool is not None

    def add(self, rows: np.ndarray, stats: dict[str, np.ndarray], inline_ok: np.ndarray) -> None:
        if self.pool is None:
            return
        if self.current is not None and not self.current.fits(stats, len(rows)):
            self.flush()  # a batch larger than the others (or other columns): the chunk is judged as it is
        if self.current is None:
            self.current = self._buffer(stats, len(rows))
        self.current.add(rows, stats, inline_ok)
        if self.current.n >= self.chunk_rows:
            self.flush()
        while self.pending and self.pending[0][1].done():  # verdicts ready: apply them now, free their buffers
            self._apply_oldest()

    def _buffer(self, stats: dict[str, np.ndarray], rows: int) -> _StatsBuffer:
        """A free buffer that takes a chunk of these statistics, or a new one (the search's first chunks)."""
        while self.free:
            buf = self.free.pop()
            if buf.fits(stats, rows):
                return buf
            buf.release()
        # room for a chunk and one more batch: a chunk is handed over once it holds chunk_rows rows or more
        return _StatsBuffer(stats, self.chunk_rows + rows)

    def flush(self) -> None:
        """Hand the accumulated rows to the worker.

        A buffer is always in one of ``current``, ``pending`` or ``free`` (for a moment in two, never in none), so
        that :meth:`abort` frees it whenever an interruption (Ctrl-C) comes.
        """
        buf = self.current
        if buf is None:
            return
        if buf.n == 0:
            self.free.append(buf)
            self.current = None
            return
        while len(self.pending) >= self.MAX_PENDING:
            self._apply_oldest()
        self.pending.append((buf, self._submit(buf)))
        self.current = None

    def _submit(self, buf: _StatsBuffer):
        return self.pool.submit(run_shared_expectations, buf.where(), self.ctx, self.vcfg)  # process or thread

    def _fall_back(self) -> None:
        """The worker process could not run (e.g. a script without a ``__main__`` guard, which the spawned worker
        re-imports): run the suite in a thread of this process from now on."""
        from concurrent.futures import ThreadPoolExecutor

        if not isinstance(self.pool, ThreadPoolExecutor):
            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="search-ge")

    def _apply_oldest(self) -> None:
        """Wait for the oldest pending verdict and apply it; its buffer leaves ``pending`` only once it is free."""
        from concurrent.futures.process import BrokenProcessPool

        buf, future = self.pending[0]
        try:
            passed, failures = future.result()
        except BrokenProcessPool:
            self._fall_back()
            passed, failures = self._submit(buf).result()
        t = self.tally
        t.ge_runs += 1
        for f in failures:
            key = f"{f['expectation']}:{f['column']}"
            t.ge_failures[key] = t.ge_failures.get(key, 0) + int(f["rows"])
        rows, inline_ok = buf.rows()
        t.ge_disagreements += int(np.sum(passed != inline_ok))
        t.ge_withdrawn += int(np.sum(~passed & inline_ok))
        self.apply(rows, passed, inline_ok)
        del rows, inline_ok
        buf.n = 0
        self.free.append(buf)
        self.pending.pop(0)

    def finish(self) -> None:
        """Run the last chunk and apply every verdict."""
        if self.pool is None:
            return
        try:
            self.flush()
            while self.pending:
                self._apply_oldest()
        finally:
            self._release()

    def _release(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        done = set()
        for buf in [self.current, *self.free, *(b for b, _ in self.pending)]:
            if buf is not None and id(buf) not in done:
                done.add(id(buf))
                buf.release()
        self.current, self.free, self.pending = None, [], []
        if isinstance(self.pool, ThreadPoolExecutor):  # the fallback; the worker process is shared and kept
            self.pool.shutdown(wait=False, cancel_futures=True)

    def abort(self) -> None:
        """Drop the pending chunks after a failure. The shared worker finishes the chunk it runs, if any: that
        is waited for (a few seconds at most) before the blocks are freed, so that no process still opens one."""
        if self.pool is None:
            return
        cancel_and_wait([f for _, f in self.pending])
        self._release()


#: Batches of candidates measured by one cleaning process before it is replaced.
CLEANING_TASKS_PER_CHILD = 512

#: The cleaning worker (sep; shared by the searches of this process).
CLEANING_WORKER = RecycledWorker("cleaning", CLEANING_TASKS_PER_CHILD, cleaning.import_sep)


#: The ring of candidates' cutouts holds ``search.batch_size // CANDIDATE_RING_FRACTION`` of them (12.5 MB for 64
#: cutouts of 128 x 128 x 3): at a candidate rate of a few per cent, several batches' candidates; a batch with more
#: candidates than that is pickled to the cleaning worker instead.
CANDIDATE_RING_FRACTION = 4


class _CutoutRing:
    """The candidates' cutouts on their way to the cleaning worker: ``capacity`` cutout slots in one block of shared
    memory, taken and given back in order (a ring).

    Each scored batch copies its candidates into consecutive free slots (:meth:`take`); the cleaning worker reads
    them there (:class:`~lenssearch.search.cleaning.SharedCutouts`); their slots are given back once the batch's
    measurements are applied (:meth:`give_back`, oldest first). Without it each batch's candidates were copied
    into a new array and pickled (~200 kB per cutout, twice): transient blocks of varying size that glibc's
    allocator kept, fragmented, in the search's process (~1.9 kB per candidate kept).
    """

    def __init__(self, capacity: int, shape: tuple[int, ...]):
        from collections import deque

        self.capacity, self.shape = capacity, (capacity, *shape)
        self.shm = new_shared_block(4 * int(np.prod(self.shape)))
        self.block = np.ndarray(self.shape, dtype=np.float32, buffer=self.shm.buf)
        self.spans: deque = deque()  # (start, stop) of the slots taken, oldest first
        self.head = 0  # the slot after the newest span

    def take(self, k: int) -> int | None:
        """The first of ``k`` consecutive free slots, now taken; None if there are not as many."""
        if k <= 0 or k > self.capacity:
            return None
        if not self.spans:
            start = 0
        else:
            oldest = self.spans[0][0]
            if self.head > oldest:  # free: head..capacity, then 0..oldest
                start = self.head if self.capacity - self.head >= k else 0 if oldest >= k else None
            else:  # wrapped: free from head to oldest
                start = self.head if oldest - self.head >= k else None
        if start is None:
            return None
        self.spans.append((start, start + k))
        self.head = start + k
        return start

    def give_back(self) -> None:
        """Free the oldest span."""
        self.spans.popleft()
        if not self.spans:
            self.head = 0

    def where(self, start: int, stop: int) -> cleaning.SharedCutouts:
        return cleaning.SharedCutouts(self.shm.name, self.shape, start, stop)

    def release(self) -> None:
        self.block = None
        free_shared_block(self.shm)


class _CandidateMeasurements:
    """The cleaning measurements of the candidates (:func:`cleaning.measure_cutouts`), made in the cleaning worker
    process while the model scores the next batches.

    sep holds the interpreter lock (~2.5 ms per candidate, three bands): measured in the search's own thread, the
    model waited for it. Each scored batch copies its candidates' cutouts into a ring of ``capacity`` slots in
    shared memory (:class:`_CutoutRing`, made on the first candidate) that the worker reads; the results are given
    to ``apply(rows, measurements)`` in row order before the chunk that holds their rows is final
    (:meth:`resolve_until`). At most :attr:`MAX_PENDING` batches wait (bounded memory); a batch with more candidates
    than the ring holds is pickled to the worker instead. If the worker cannot run, the measurements are made here,
    with the same results.
    """

    MAX_PENDING = 8

    def __init__(self, inp: SearchInput, params, apply, use_process: bool = True, capacity: int = 256):
        from collections import deque

        self.args = (inp.noise_sigma, inp.bands, inp.pixel_scale_arcsec, params)
        self.apply = apply
        self.capacity = capacity
        self.pool = CLEANING_WORKER.pool() if use_process else None
        self.ring: _CutoutRing | None = None
        self.pending: deque = deque()  # (rows, cutouts or a span of the ring, future), in row order

    def submit(self, rows: np.ndarray, cutouts: np.ndarray, select: np.ndarray) -> None:
        """Measure the candidates ``cutouts[select]`` (the search's catalogue rows ``rows``, increasing)."""
        from concurrent.futures.process import BrokenProcessPool

        if self.pool is not None:
            where = self._into_ring(cutouts, select)
            held = where if where is not None else cutouts[select]  # a copy: the buffer goes back to the pool
            try:
                if where is not None:
                    future = self.pool.submit(cleaning.measure_shared_cutouts, where, *self.args)
                else:
                    future = self.pool.submit(cleaning.measure_cutouts, held, *self.args)
            except BrokenProcessPool:
                self.pool = None
                if where is not None:
                    self.ring.give_back()
            else:
                self.pending.append((rows, held, future))
                while len(self.pending) > self.MAX_PENDING:
                    self._resolve_first()
                return
        self.apply(rows, cleaning.measure_cutouts(cutouts[select], *self.args))

    def _into_ring(self, cutouts: np.ndarray, select: np.ndarray) -> cleaning.SharedCutouts | None:
        """Copy ``cutouts[select]`` into the ring (waiting for the oldest batches if it is full); None if it
        cannot hold them (more than its capacity, another cutout shape or dtype)."""
        if cutouts.dtype != np.float32:
            return None
        if self.ring is None:
            self.ring = _CutoutRing(self.capacity, cutouts.shape[1:])
        ring, k = self.ring, int(np.count_nonzero(select))
        if k > ring.capacity or cutouts.shape[1:] != ring.shape[1:]:
            return None
        start = ring.take(k)
        while start is None and any(not isinstance(held, np.ndarray) for _, held, _ in self.pending):
            self._resolve_first()
            start = ring.take(k)
        if start is None:
            return None
        np.compress(select, cutouts, axis=0, out=ring.block[start : start + k])
        return ring.where(start, start + k)

    def _resolve_first(self) -> None:
        from concurrent.futures.process import BrokenProcessPool

        rows, held, future = self.pending.popleft()
        try:
            measured = future.result()
        except BrokenProcessPool:
            self.pool = None
            measured = cleaning.measure_cutouts(held if isinstance(held, np.ndarray) else held.read(), *self.args)
        if not isinstance(held, np.ndarray):
            self.ring.give_back()
        self.apply(rows, measured)

    def resolve_until(self, stop: int) -> None:
        """Apply the measurements of every batch with rows before ``stop``."""
        while self.pending and self.pending[0][0][0] < stop:
            self._resolve_first()

    def close(self) -> None:
        """Free the ring (every measurement applied, or dropped by :meth:`abort`)."""
        if self.ring is not None:
            self.ring.release()
            self.ring = None

    def abort(self) -> None:
        """Drop the pending batches; the one the worker measures, if any, is waited for (a few seconds at most)
        before the ring is freed, so that no process still opens it."""
        cancel_and_wait([future for _, _, future in self.pending])
        self.pending.clear()
        self.close()


class _PoolClosed(Exception):
    """The consumer of the batches has gone: the producer stops."""


class _BufferPool:
    """A fixed number of batch buffers (``batch_size`` x S x S x B float32), reused batch after batch.

    The producer cuts each batch into a free buffer and the consumer hands it back once the batch is scored. With
    a new array per batch, each batch's pages were mapped, touched and unmapped again, and how many batches were
    alive at the peak depended on the timing of the two threads: the peak resident memory crept up with the
    number of batches (the longer the search, the likelier the worst overlap). With the pool it is the same at
    every size: ``count`` buffers, allocated and touched (so resident) when the pool is made; a buffer first
    touched late in a search would otherwise show as a late step in its resident memory.
    """

    def __init__(self, count: int, shape: tuple[int, ...]):
        self.count, self.shape = count, shape
        self._free: queue.Queue = queue.Queue()
        for _ in range(count):
            buf = np.empty(shape, dtype=np.float32)
            buf.fill(0.0)  # resident from now on (np.zeros would map pages lazily)
            self._free.put(buf)
        self.closed = threading.Event()

    def acquire(self) -> np.ndarray:
        while True:
            try:
                return self._free.get(timeout=0.1)
            except queue.Empty:
                if self.closed.is_set():
                    raise _PoolClosed() from None

    def release(self, buf: np.ndarray | None) -> None:
        if buf is not None:
            self._free.put(buf)


def _produce(
    inp: SearchInput, s, ctx: ValidationContext, chunk_rows: int, pool: _BufferPool | None = None
) -> Iterator:
    """The producer of :func:`iter_scored_chunks`: chunk descriptions and validated batches, in row order.

    Each chunk of ``chunk_rows`` catalogue rows is read (lazily for a FITS catalogue), its pixel positions computed
    and yielded as a :class:`ScoredChunk` before the batches that cut its rows. Batches are full
    (``search.batch_size`` cutouts, possibly from two chunks) except the last. A batch item is
    ``(batch, stats, failed, buffer)``: a field's cutouts are cut into a buffer of ``pool`` (None for a stack),
    which the consumer hands back with :meth:`_BufferPool.release` once it has scored the batch.
    """
    n = len(inp.positions)
    size = s.cutout_pixels if inp.images is not None else inp.stack.size
    buf_rows: list[np.ndarray] = []
    buf_x: list[np.ndarray] = []
    buf_y: list[np.ndarray] = []
    buffered = 0

    def cut(k: int):
        nonlocal buf_rows, buf_x, buf_y, buffered
        rows, x, y = (np.concatenate(b) for b in (buf_rows, buf_x, buf_y))
        buf_rows, buf_x, buf_y = [rows[k:]], [x[k:]], [y[k:]]
        buffered -= k
        rows, x, y = rows[:k], x[:k], y[:k]
        buf = None
        if inp.images is not None:
            buf = pool.acquire() if pool is not None else None
            try:
                cutouts, inside = inp.images.cut(x, y, size, out=None if buf is None else buf[:k])
            except BaseException:
                if pool is not None:
                    pool.release(buf)
                raise
        else:  # a stack: every row is a cutout, the rows of a batch are consecutive
            cutouts, inside = inp.stack.read(int(rows[0]), int(rows[-1]) + 1), np.ones(k)
            # the consumer moves the valid cutouts in place: an array of our own (a copy only if the read is a view)
            cutouts = np.require(cutouts, np.float32, ["C_CONTIGUOUS", "WRITEABLE", "OWNDATA"])
        batch = Batch(index=rows, cutouts=cutouts, inside_fraction=inside)
        stats, failed = validate_batch(batch.cutouts, ctx)
        return batch, stats, failed, buf

    for start in range(0, n, chunk_rows):
        stop = min(start + chunk_rows, n)
        pos = position_rows(inp.positions, start, stop)
        k = stop - start
        if inp.images is not None:
            x, y = inp.images.world_to_pixel(pos["ra"], pos["dec"])
            on_image = inp.images.contains(x, y)
        else:
            x, y, on_image = np.full(k, np.nan), np.full(k, np.nan), np.ones(k, dtype=bool)
        chunk = ScoredChunk(
            start=start, positions=pos, x_pix=np.asarray(x, float), y_pix=np.asarray(y, float),
            status=np.full(k, "outside", dtype="<U8"), validation=np.full(k, "", dtype=object),
            inside_fraction=np.zeros(k), score=np.full(k, np.nan), members={},
            measurements={name: np.full(k, np.nan) for name in cleaning.MEASUREMENTS}, remaining=int(on_image.sum()),
        )
        yield chunk
        local = np.flatnonzero(on_image)
        buf_rows.append(start + local)
        buf_x.append(chunk.x_pix[local])
        buf_y.append(chunk.y_pix[local])
        buffered += len(local)
        while buffered >= s.batch_size:
            yield cut(s.batch_size)
    if buffered:
        yield cut(buffered)


def iter_scored_chunks(
    inp: SearchInput, scorer: Scorer, cfg, measure_above: float | None, tally: ValidationTally | None = None,
    progress: bool = True, chunk_rows: int = CHUNK_ROWS, worker_processes: bool = True,
) -> Iterator[ScoredChunk]:
    """Cut, validate and score every position of ``inp``, yielding the final results chunk by chunk, in row order.

    Memory holds a few chunks of per-row results (those not yet judged by great-expectations) and a few batches of
    cutouts, whatever the number of positions.

    Parameters
    ----------
    cfg
        The whole configuration (sections ``search`` and ``validate``).
    measure_above
        Cutouts scoring at least this are measured for cleaning while they are in memory (None: none).
    tally
        Receives the great-expectations counts.
    chunk_rows
        Catalogue rows per chunk.
    worker_processes
        Measure the candidates in the cleaning worker process (:class:`_CandidateMeasurements`); False: here.
    """
    from collections import deque

    from tqdm import tqdm

    s = cfg.search
    tally = tally if tally is not None else ValidationTally()
    size = s.cutout_pixels if inp.images is not None else inp.stack.size
    ctx = ValidationContext.from_config(cfg.validate, size, inp.bands, inp.noise_sigma)
    open_chunks: deque[ScoredChunk] = deque()

    def chunks_of(rows: np.ndarray):
        """(chunk, positions of its rows in ``rows``, local row numbers) for the open chunks that ``rows`` touch."""
        for c in open_chunks:
            lo, hi = np.searchsorted(rows, [c.start, c.stop])
            if hi > lo:
                yield c, slice(lo, hi), rows[lo:hi] - c.start

    def apply_verdict(rows: np.ndarray, passed: np.ndarray, inline_ok: np.ndarray) -> None:
        order = np.argsort(rows, kind="stable")
        rows, passed, inline_ok = rows[order], passed[order], inline_ok[order]
        for c, sel, local in chunks_of(rows):
            c.ge_pending -= len(local)
            withdraw = local[~passed[sel] & inline_ok[sel]]
            c.status[withdraw] = "invalid"
            c.validation[withdraw] = "great_expectations"
            c.score[withdraw] = np.nan
            for values in c.members.values():
                values[withdraw] = np.nan

    def apply_measurements(rows: np.ndarray, measured: dict[str, np.ndarray]) -> None:
        for c, sel, local in chunks_of(rows):
            for name, values in measured.items():
                c.measurements[name][local] = values[sel]

    measurer = _CandidateMeasurements(inp, s.cleaning, apply_measurements,
                                      worker_processes and measure_above is not None,
                                      capacity=max(s.batch_size // CANDIDATE_RING_FRACTION, 1))

    def ready() -> Iterator[ScoredChunk]:
        while open_chunks and open_chunks[0].remaining == 0 and open_chunks[0].ge_pending == 0:
            measurer.resolve_until(open_chunks[0].stop)
            c = open_chunks.popleft()
            for name in scorer.members((size, size, len(inp.bands))):
                c.members.setdefault(name, np.full(len(c.positions), np.nan))
            yield c

    expectations = _ExpectationChunks(ctx, cfg.validate, s.ge_chunk_rows, tally, apply_verdict)
    # batches in flight: those queued (prefetch_batches), the one the producer cuts, the one the model scores
    pool = _BufferPool(max(s.prefetch_batches, 0) + 2, (s.batch_size, size, size, len(inp.bands)))
    items = prefetch(_produce(inp, s, ctx, chunk_rows, pool), s.prefetch_batches)
    try:
        with tqdm(total=len(inp.positions), desc="search", unit="row", disable=not progress, mininterval=2.0) as bar:
            for item in items:
                if isinstance(item, ScoredChunk):
                    open_chunks.append(item)
                    bar.update(len(item.positions) - item.remaining)
                else:
                    try:
                        _score_batch(scorer, measure_above, item, chunks_of, expectations, measurer)
                    finally:
                        pool.release(item[3])
                    bar.update(len(item[0].index))
                    del item  # nothing of the batch outlives its buffer's return to the pool
                yield from ready()
            expectations.finish()
        yield from ready()
        if open_chunks:  # pragma: no cover - a bookkeeping error, not an input error
            raise LensSearchError(f"search: {len(open_chunks)} chunk(s) of positions left unfinished")
    except BaseException:
        expectations.abort()
        measurer.abort()
        raise
    finally:
        measurer.close()
        pool.closed.set()  # a producer waiting for a buffer stops
        items.close()


def _score_batch(scorer, measure_above, item, chunks_of, expectations, measurer) -> None:
    """Score one validated batch into its chunks; hand its candidates' cutouts to ``measurer`` while they are in
    memory (:class:`_CandidateMeasurements`).

    The batch's cutouts are the search's own (a buffer of the pool, or a stack's read): the valid ones are moved to
    the front in place rather than copied into a new array, and the model is given the same shape every time
    (the whole buffer, or the stack's batch): the valid cutouts, then zero cutouts whose scores are dropped. A
    model's runtime keeps state for every input shape it has seen (Keras/TensorFlow: about 0.5 MB each); with one
    shape per number of valid cutouts, a longer search met more of the ``batch_size`` possible shapes and its
    resident memory grew with the field.
    """
    batch, stats, failed, buf = item
    ok = ~np.any(np.column_stack(list(failed.values())), axis=1)
    idx = batch.index
    labels = np.asarray(failure_labels(failed), dtype=object)
    cut = batch.cutouts
    n_ok = int(ok.sum())
    if n_ok < len(cut):
        for j, i in enumerate(np.flatnonzero(ok)):  # in order, so a row is never overwritten before it is moved
            if i != j:
                cut[j] = cut[i]
    if n_ok == 0:
        scores = scorer.score(cut[:0])
    else:
        full = buf if buf is not None else cut  # the whole buffer: the last batch too
        full[n_ok:] = 0.0
        scores = scorer.score(full)
        scores = Scores(scores.main[:n_ok], {name: v[:n_ok] for name, v in scores.members.items()})
    cut = cut[:n_ok]
    score = np.full(len(idx), np.nan)
    score[ok] = scores.main
    members = {}
    for name, values in scores.members.items():
        members[name] = np.full(len(idx), np.nan)
        members[name][ok] = values
    if measure_above is not None and ok.any():
        cand = scores.main >= measure_above
        if cand.any():
            measurer.submit(idx[np.flatnonzero(ok)[cand]], cut, cand)  # copied: the buffer goes back to the pool
    for c, sel, local in chunks_of(idx):
        c.validation[local] = labels[sel]
        c.status[local] = np.where(ok[sel], "scored", "invalid")
        c.inside_fraction[local] = batch.inside_fraction[sel]
        c.score[local] = score[sel]
        for name, values in members.items():
            c.members.setdefault(name, np.full(len(c.positions), np.nan))[local] = values[sel]
        c.remaining -= len(local)
        if expectations.enabled:
            c.ge_pending += len(local)
    expectations.add(idx, stats, ok)


def stream_scores(
    inp: SearchInput, scorer: Scorer, cfg, measure_above: float | None, progress: bool = True,
    chunk_rows: int = CHUNK_ROWS,
) -> ScoredPositions:
    """All per-row results of :func:`iter_scored_chunks` gathered in memory.

    For catalogues that are small by nature (known lenses); a search streams its results to disk instead
    (:func:`run_search`).
    """
    res = ScoredPositions()
    chunks = list(iter_scored_chunks(inp, scorer, cfg, measure_above, res, progress, chunk_rows))
    res.status = np.concatenate([c.status for c in chunks])
    res.validation = np.concatenate([c.validation for c in chunks])
    res.inside_fraction = np.concatenate([c.inside_fraction for c in chunks])
    res.score = np.concatenate([c.score for c in chunks])
    res.members = {name: np.concatenate([c.members[name] for c in chunks]) for name in chunks[0].members}
    res.measurements = {name: np.concatenate([c.measurements[name] for c in chunks]) for name in cleaning.MEASUREMENTS}
    res.x_pix = np.concatenate([c.x_pix for c in chunks])
    res.y_pix = np.concatenate([c.y_pix for c in chunks])
    return res


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


def truth_column(positions: "Table | FitsCatalogue", chunk_rows: int = CHUNK_ROWS) -> str | None:
    """The column that :func:`truth_from_positions` reads for the whole catalogue (None: no truth).

    A text column counts only if every row's label is known, which a lazily read catalogue checks chunk by chunk.
    """
    for name in TRUTH_COLUMNS:
        if name not in positions.colnames:
            continue
        if all(
            truth_from_positions(position_rows(positions, start, start + chunk_rows)[[name]]) is not None
            for start in range(0, len(positions), chunk_rows)
        ):
            return name
    return None


# ----------------------------------------------------------------------------------------------- search
@dataclasses.dataclass
class SearchResult:
    """What :func:`run_search` returns (and wrote).

    The per-position table is not held in memory (it grows with the field): :attr:`scores` reads it back from
    ``scores.ecsv``.
    """

    candidates: Table
    counts: Table
    metrics: dict[str, Any]
    out_dir: Path

    @property
    def scores_path(self) -> Path:
        return self.out_dir / "scores.ecsv"

    @property
    def scores(self) -> Table:
        """``scores.ecsv`` read from disk (every position; read it in pieces for a very large field)."""
        return Table.read(self.scores_path, format="ascii.ecsv")


def _star_distance(inp: SearchInput, ra: np.ndarray, dec: np.ndarray, cfg) -> np.ndarray:
    if inp.stars is None or len(ra) == 0:
        return np.full(len(ra), np.inf)
    bright = np.asarray(inp.stars["mag"], float) <= cfg.cleaning.star_mag_max
    d, _ = cleaning.nearest_neighbour(ra, dec, inp.stars["ra"][bright], inp.stars["dec"][bright])
    return d


def _stamps(inp: SearchInput, rows: np.ndarray, x: np.ndarray, y: np.ndarray, gcfg) -> list:
    """(small stamp, context stamp) for each candidate (catalogue row, pixel position), cut from the field or
    read from the stack."""
    stamps = []
    small_pix = max(8, int(round(gcfg.stamp_arcsec / inp.pixel_scale_arcsec)))
    context_pix = max(small_pix, int(round(gcfg.context_arcsec / inp.pixel_scale_arcsec)))
    for i, r in enumerate(rows):
        if inp.images is not None:
            small, _ = inp.images.cut(x[i : i + 1], y[i : i + 1], small_pix)
            context, _ = inp.images.cut(x[i : i + 1], y[i : i + 1], context_pix)
            stamps.append((small[0], context[0]))
        else:
            cutout = inp.stack.read(int(r), int(r) + 1)[0]
            s = cutout.shape[0]
            half = min(small_pix, s) // 2
            c = s // 2
            stamps.append((cutout[c - half : c + half, c - half : c + half], cutout))
    return stamps


def _model_version(uri: str, tracking_uri: str | None) -> tuple[str | None, dict]:
    """The registered version behind ``models:/<name>@<alias>`` or ``models:/<name>/<n>`` (as ``<name>/<n>``) and
    its tags; ``(None, {})`` for other URIs."""
    from lenssearch import tracking

    try:
        number = tracking.resolve_model_version(uri, tracking_uri)
        tags = tracking.model_version_tags(uri, tracking_uri)
    except Exception:  # noqa: BLE001  (a URI the registry cannot resolve: the scorer already loaded it)
        return None, {}
    if number is None:
        return None, {}
    return f"{uri[len('models:/'):].split('@')[0].split('/')[0]}/{number}", tags


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


def _write_table(path: Path, table: Table, chunk_rows: int = WRITE_CHUNK_ROWS) -> None:
    """Write an ECSV catalogue atomically, ``chunk_rows`` rows at a time (see :class:`EcsvAppender`)."""
    with atomic_path(path) as tmp, open(tmp, "w") as out:
        EcsvAppender(out, chunk_rows=chunk_rows).write(table)


def _write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


class _Candidates:
    """The rows above the threshold, gathered chunk by chunk (memory O(candidates)), and the per-row truth."""

    def __init__(self):
        self.parts: list[dict[str, np.ndarray]] = []

    def add(self, part: dict[str, np.ndarray]) -> None:
        if len(part["row"]):
            self.parts.append(part)

    def table(self, members: Sequence[str]) -> dict[str, np.ndarray]:
        """Every gathered column, concatenated and sorted by decreasing score (ties: catalogue order)."""
        if not self.parts:
            names = ("row", "id", "ra", "dec", "score", "x_pix", "y_pix", "inside_fraction", "kron_given", "is_lens",
                     "class", *(f"score_{m}" for m in members), *cleaning.MEASUREMENTS)
            empty = {name: np.zeros(0) for name in names}
            empty["row"] = np.zeros(0, dtype=np.int64)
            empty["id"] = np.zeros(0, dtype=str)
            empty["class"] = np.zeros(0, dtype=str)
            return empty
        out = {k: np.concatenate([p[k] for p in self.parts]) for k in self.parts[0]}
        order = np.argsort(-out["score"], kind="stable")
        return {k: v[order] for k, v in out.items()}


def check_cutout_size(config, inp: SearchInput, scorer: Scorer) -> None:
    """Refuse, before anything is scored, cutouts that the model does not take (naming the stack file or the
    ``search.cutout_pixels`` parameter and the size the model expects)."""
    if inp.stack is not None:
        size, source = inp.stack.size, f"{inp.stack.path} (cutout stack)"
    else:
        size, source = config.search.cutout_pixels, f"search.cutout_pixels = {config.search.cutout_pixels}"
    scorer.check_cutouts((size, size, len(inp.bands)), source)


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
    chunk_rows: int = CHUNK_ROWS,
    worker_processes: bool = True,
    on_chunk: Callable[[int], None] | None = None,
) -> SearchResult:
    """Search ``inp`` with a model: score, clean, write the catalogue, the gallery, counts and metrics.

    Memory does not grow with the number of positions: the per-position results are appended to a temporary
    ``scores.ecsv`` chunk by chunk while the search runs (renamed into place when the search has succeeded), and
    only the rows above the threshold (the candidates), the per-stage counts and the planted lenses' matches are
    kept.

    Parameters
    ----------
    config
        The whole configuration (:class:`lenssearch.config.Config`): sections ``search`` and ``validate``.
    inp
        From :func:`open_input`, :func:`open_field` or :func:`open_stack`.
    out_dir
        Output folder (e.g. ``reports/search``); each file in it is written to a temporary name and renamed when
        complete, so a failed or killed search leaves no file that looks finished.
    model_uri
        Registered model or committee; default ``cfg.model_uri`` (``models:/lenssearch@champion``). An
        already loaded :class:`~lenssearch.search.scoring.Scorer` is used as it is.
    planted
        Planted lenses (``ra``, ``dec``) of a synthetic field: the truth for classes and recovery metrics.
        Without it, a truth column of the positions (``is_lens``/``label``) is used where present.
    tracking_uri
        MLflow tracking URI of the model registry and of the search run (default: the project's,
        :data:`lenssearch.tracking.DEFAULT_TRACKING_URI`); ``artifact_root`` likewise for new experiments.
    chunk_rows
        Catalogue rows per chunk of the stream (memory per chunk; the outputs do not depend on it).
    worker_processes
        Measure the candidates in the cleaning worker process and append the per-position rows to
        ``scores.ecsv`` in the writer process (:mod:`~lenssearch.search.workers`; the outputs are the same either
        way). In the search's own process, sep held the interpreter lock while the model waited, and formatting
        text left the resident memory growing with the field.
    on_chunk
        Called with the number of catalogue rows done after each chunk has been handed to the writer (progress
        displays, memory probes such as ``benchmarks/bench_search.py``).
    """
    cfg = config.search
    out_dir = Path(out_dir)
    check_output_folder(out_dir, files=("scores.ecsv", "candidates.ecsv", "counts.ecsv", "metrics.json"),
                        folders=("gallery",))
    if isinstance(model_uri, Scorer):
        scorer = model_uri
    else:
        scorer = load_scorer(model_uri or cfg.model_uri, tracking_uri=tracking_uri)
    uri = scorer.uri
    check_cutout_size(config, inp, scorer)
    if cfg.threshold is not None:
        threshold, threshold_source = float(cfg.threshold), "params search.threshold"
    elif scorer.threshold is not None:
        threshold, threshold_source = float(scorer.threshold), f"tag of {uri}"
    else:
        threshold, threshold_source = DEFAULT_THRESHOLD, "default 0.5 (no tuned threshold tag on the model)"

    # the classes of known and planted lenses are taken at the decision threshold the search uses (a TP is a lens
    # above it, Angora et al. 2023 Table A.6 with its threshold), and the qTP band down to the tuned qTP lower
    # bound of the model version (promote stage's tag), else the configured one
    version, version_tags = _model_version(uri, tracking_uri)
    tp_min = threshold
    try:
        qtp_min = float(version_tags["qtp_lower"])
    except (KeyError, ValueError):
        qtp_min = cfg.qtp_min
    qtp_min = min(qtp_min, tp_min)
    positions = inp.positions
    n = len(positions)
    meta = {
        "input": inp.description,
        "model_uri": uri,
        "model_version": version,
        "threshold": threshold,
        "threshold_source": threshold_source,
        "qtp_lower": qtp_min,
        "bands": list(inp.bands),
        "members": [],
        "references": ("Angora et al. 2023, Sect. 5 and Table A.6; "
                       "Schuldt et al. 2025 (HOLISMOKES XVI, A&A 699, A350), Sect. 3-4"),
    }

    # ---- truth: per chunk from the planted lenses or a truth column; per planted lens, its nearest row so far
    truth_name = None if planted is not None else truth_column(positions, chunk_rows)
    has_truth = planted is not None or truth_name is not None
    if planted is not None:
        for name in ("ra", "dec"):
            if name not in planted.colnames:
                raise SearchInputError(f"planted-lens catalogue lacks column '{name}' (has {planted.colnames})")
        planted_ra, planted_dec = np.asarray(planted["ra"], float), np.asarray(planted["dec"], float)
        planted_d = np.full(len(planted), np.inf)
        planted_row = np.full(len(planted), -1, dtype=np.int64)
        planted_score = np.full(len(planted), np.nan)
    lens_class_counts = {name: 0 for name in classes.LENS_CLASSES}
    n_lenses = 0

    # ---- stream: per-position rows appended to the temporary scores.ecsv, candidates kept
    tally = ValidationTally()
    cands = _Candidates()
    n_outside = n_invalid = n_scored = 0
    member_names: list[str] = []
    created_out_dir = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(out_dir / "scores.ecsv") as scores_tmp:
            writer = ScoresWriter(scores_tmp, meta, use_process=worker_processes)
            scored = iter_scored_chunks(inp, scorer, config, threshold, tally, progress, chunk_rows,
                                        worker_processes)
            try:
                for chunk in scored:
                    pos = chunk.positions
                    member_names = list(chunk.members)
                    meta["members"] = member_names
                    status, score = chunk.status, chunk.score
                    n_outside += int(np.sum(status == "outside"))
                    n_invalid += int(np.sum(status == "invalid"))
                    n_scored += int(np.sum(status == "scored"))
                    ra, dec = np.asarray(pos["ra"], float), np.asarray(pos["dec"], float)
                    is_lens = cls = None
                    if planted is not None:
                        d_row, _ = cleaning.nearest_neighbour(ra, dec, planted_ra, planted_dec)
                        is_lens = (d_row <= cfg.match_radius_arcsec).astype(int)
                        d_planted, j = cleaning.nearest_neighbour(planted_ra, planted_dec, ra, dec)
                        better = d_planted < planted_d
                        planted_d[better] = d_planted[better]
                        planted_row[better] = chunk.start + j[better]
                        planted_score[better] = score[j[better]]
                    elif truth_name is not None:
                        is_lens = truth_from_positions(pos[[truth_name]])
                        lens = is_lens == 1
                        n_lenses += int(lens.sum())
                        for name, k in zip(*np.unique(classes.lens_class(score[lens], tp_min, qtp_min),
                                                      return_counts=True)):
                            lens_class_counts[str(name)] += int(k)
                    if is_lens is not None:
                        cls = np.asarray(classes.truth_class(score, is_lens == 1, tp_min, qtp_min), dtype=str)
                        cls[is_lens < 0] = ""

                    rows = Table()
                    rows["id"] = np.asarray(pos["id"], dtype=str)
                    rows["ra"] = ra
                    rows["dec"] = dec
                    rows["status"] = status
                    rows["validation"] = np.asarray(chunk.validation, dtype=str)
                    rows["score"] = score
                    for m in member_names:
                        rows[f"score_{m}"] = chunk.members[m]
                    if is_lens is not None:
                        rows["is_lens"] = is_lens
                        rows["class"] = cls
                    writer.write(describe_columns(rows))
                    if on_chunk is not None:
                        on_chunk(chunk.stop)

                    sel = np.flatnonzero((status == "scored") & (score >= threshold))
                    if "kron_radius_arcsec" in pos.colnames:
                        kron_given = np.asarray(pos["kron_radius_arcsec"], float)[sel]
                    else:
                        kron_given = np.full(len(sel), np.nan)
                    cands.add({
                        "row": chunk.start + sel, "id": rows["id"][sel].data if len(sel) else np.zeros(0, str),
                        "ra": ra[sel], "dec": dec[sel], "score": score[sel], "x_pix": chunk.x_pix[sel],
                        "y_pix": chunk.y_pix[sel], "inside_fraction": chunk.inside_fraction[sel], "kron_given": kron_given,
                        "is_lens": is_lens[sel] if is_lens is not None else np.zeros(len(sel), int),
                        "class": cls[sel] if cls is not None else np.zeros(len(sel), str),
                        **{f"score_{m}": chunk.members[m][sel] for m in member_names},
                        **{name: chunk.measurements[name][sel] for name in cleaning.MEASUREMENTS},
                    })
                writer.finish()  # every chunk in the file before it is renamed
            except BaseException:
                # interrupted here rather than inside the generator (Ctrl-C while a chunk is written): close it
                # now, so that its workers' tasks are waited for and its shared memory freed before the exception
                # unwinds (not when the generator is collected, perhaps after the resource tracker has given up)
                scored.close()
                writer.abort()  # nothing is appended once the temporary file is removed
                raise
            c = cands.table(member_names)
            cand_rows = c["row"]

            # ---- cleaning (HOLISMOKES XVI: rank first, clean only the candidates)
            meas = {name: c[name] for name in cleaning.MEASUREMENTS}
            given = c["kron_given"]
            meas["kron_radius_arcsec"] = np.where(np.isfinite(given), given, meas["kron_radius_arcsec"])
            meas["inside_fraction"] = c["inside_fraction"]
            meas["star_distance_arcsec"] = _star_distance(inp, c["ra"], c["dec"], cfg)
            flags = cleaning.apply_rules(meas, cfg.cleaning)
            rejected_by = np.asarray(
                ["+".join(name for name in flags if flags[name][i]) for i in range(len(cand_rows))], dtype=object
            )
            passed = (~np.any(np.column_stack([flags[k] for k in flags]), axis=1) if len(cand_rows)
                      else np.zeros(0, bool))
            keep_sub, dup_sub = cleaning.remove_duplicates(
                c["ra"][passed], c["dec"][passed], meas["kron_radius_arcsec"][passed],
                cfg.cleaning.duplicate_radius_arcsec, score=c["score"][passed],
            )
            kept = np.zeros(len(cand_rows), dtype=bool)
            kept[np.flatnonzero(passed)[keep_sub]] = True
            duplicate_of = np.full(len(cand_rows), "", dtype=object)
            passed_idx = np.flatnonzero(passed)
            for j, k in enumerate(dup_sub):
                if k >= 0:
                    duplicate_of[passed_idx[j]] = str(c["id"][passed_idx[k]])

            # ---- counts (the analogue of HOLISMOKES XVI, Table 1)
            count_rows = [
                ("catalogue", n),
                ("on_image", n - n_outside),
                ("valid", n_scored),
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

            # ---- candidate table
            cand = Table()
            cand["id"] = np.asarray(c["id"], dtype=str)
            cand["ra"] = c["ra"]
            cand["dec"] = c["dec"]
            cand["score"] = c["score"]
            for m in member_names:
                cand[f"score_{m}"] = c[f"score_{m}"]
            for name in (*cleaning.MEASUREMENTS, "inside_fraction", "star_distance_arcsec"):
                cand[name] = meas[name]
            for name in flags:
                cand[f"flag_{name}"] = flags[name]
            cand["rejected_by"] = [str(v) for v in rejected_by]
            cand["duplicate_of"] = [str(v) for v in duplicate_of]
            cand["kept"] = kept
            if has_truth:
                cand["is_lens"] = np.asarray(c["is_lens"], dtype=int)
                cand["class"] = np.asarray(c["class"], dtype=str)
            describe_columns(cand, meta)
            describe_columns(counts, meta)

            # ---- metrics
            n_cand = len(cand_rows)
            n_rejected = int((~passed).sum())
            metrics: dict[str, Any] = {
                "n_positions": n,
                "n_outside": n_outside,
                "n_invalid": n_invalid,
                "n_scored": n_scored,
                "n_above_threshold": n_cand,
                "n_candidates": int(kept.sum()),
                "candidates_per_scored": int(kept.sum()) / n_scored if n_scored else 0.0,
                "cleaning_rejected": n_rejected,
                "cleaning_rejected_fraction": n_rejected / n_cand if n_cand else 0.0,
                "duplicates_removed": int(passed.sum() - kept.sum()),
                "validation_ge_runs": tally.ge_runs,
                "validation_ge_withdrawn": tally.ge_withdrawn,
                "validation_ge_disagreements": tally.ge_disagreements,
                "threshold": threshold,
            }
            if has_truth:
                cand_pos = {int(r): i for i, r in enumerate(cand_rows)}
                kept_ids = set(cand["id"][kept])

                def outcome(i: int) -> str:
                    if kept[i] or (duplicate_of[i] and duplicate_of[i] in kept_ids):
                        return "recovered"
                    return "rejected" if not passed[i] else "other"

                if planted is not None:
                    found = planted_d <= cfg.match_radius_arcsec
                    lens_rows = np.where(found, planted_row, -1)
                    n_lenses = len(lens_rows)
                    outcomes = [outcome(cand_pos[int(r)]) for r in lens_rows if r >= 0 and int(r) in cand_pos]
                    lens_cls = classes.lens_class(np.where(found, planted_score, np.nan), tp_min, qtp_min)
                    lens_class_counts = {name: int(np.sum(lens_cls == name)) for name in classes.LENS_CLASSES}
                    not_in_catalogue = int(np.sum(~found))
                else:
                    outcomes = [outcome(i) for i in np.flatnonzero(cand["is_lens"] == 1)]
                    not_in_catalogue = 0
                recovered = outcomes.count("recovered")
                metrics.update(
                    {
                        "n_lenses": n_lenses,
                        "lenses_recovered": recovered,
                        "lenses_recovered_fraction": recovered / n_lenses if n_lenses else 0.0,
                        "lenses_wrongly_rejected_by_cleaning": outcomes.count("rejected"),
                        "lenses_not_in_catalogue": not_in_catalogue,
                        **{f"lenses_{name}": int(lens_class_counts[name]) for name in classes.LENS_CLASSES},
                    }
                )
                kept_truth = np.asarray(cand["is_lens"])[kept]
                metrics["candidates_purity"] = float(np.mean(kept_truth == 1)) if kept.any() else 0.0

            # ---- write: gallery first, the candidates, then (leaving this block) the scores, the metrics last
            if write_gallery:
                g = cfg.gallery
                rows_sorted = np.flatnonzero(kept)[: g.max_candidates]
                gallery_rows = [dict(zip(cand.colnames, cand[i])) for i in rows_sorted]
                stamps = _stamps(inp, cand_rows[rows_sorted], c["x_pix"][rows_sorted], c["y_pix"][rows_sorted], g)
                from lenssearch.search.gallery import write_gallery as _write_gallery

                with atomic_path(out_dir / "gallery") as tmp:
                    _write_gallery(
                        tmp, gallery_rows, stamps, inp.noise_sigma, g.stretch_sigma, g.lupton_q,
                        [f"score_{m}" for m in member_names], f"lenssearch candidates: {inp.description}",
                        g.stamp_arcsec, g.context_arcsec,
                    )
            _write_table(out_dir / "candidates.ecsv", cand)
    except BaseException:
        if created_out_dir and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a search that failed leaves nothing behind
        raise
    _write_table(out_dir / "counts.ecsv", counts)
    _write_json(out_dir / "metrics.json", metrics)
    if log_mlflow:
        # one metric name per stage whatever the threshold ("score>=0.518" -> count_03_score): comparable across runs
        def count_name(i: int, stage: str) -> str:
            stage = re.sub(r"(>=|<=|<|>)\s*[-+0-9.eE]+$", "", stage)  # the threshold's value is a param
            return f"count_{i:02d}_{stage.replace(':', '_').replace('>=', '_ge_').replace('<', '_lt_')}"

        count_metrics = {count_name(i, stage): int(n) for i, (stage, n) in enumerate(counts.iterrows("stage", "n"))}
        files = [out_dir / name for name in ("candidates.ecsv", "counts.ecsv", "metrics.json", "gallery")]
        scores_file = out_dir / "scores.ecsv"
        if scores_file.is_file() and scores_file.stat().st_size <= MAX_LOGGED_SCORES_BYTES:
            files.append(scores_file)
        _log_run(
            "search", {"model_uri": uri, "model_version": meta["model_version"], "threshold": threshold,
                       "threshold_source": threshold_source, "qtp_lower": meta["qtp_lower"],
                       "input": inp.description},
            {**metrics, **count_metrics}, files, tracking_uri, artifact_root,
        )
    return SearchResult(cand, counts, metrics, out_dir)


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
    check_output_folder(out_dir, files=("known_lenses.ecsv", "known_lenses_totals.ecsv", "known_lenses.md"))
    if not model_uris:
        raise LensSearchError("known-lenses needs at least one model URI")
    scorers = [uri if isinstance(uri, Scorer) else load_scorer(uri, tracking_uri=tracking_uri) for uri in model_uris]
    model_uris = [scorer.uri for scorer in scorers]
    for scorer in scorers:
        check_cutout_size(config, inp, scorer)
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
            "model_versions": [_model_version(u, tracking_uri)[0] or u for u in model_uris],
            "threshold": cfg.tp_min, "qtp_lower": cfg.qtp_min,
            "classes": (f"TP p>={cfg.tp_min}, qTP {cfg.qtp_min}<=p<{cfg.tp_min}, FN p<{cfg.qtp_min} "
                        "(Angora et al. 2023, Table A.6)")}
    describe_columns(table, meta)
    describe_columns(totals, meta)
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
