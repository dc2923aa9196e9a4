"""Benchmark of the search (issue 6): end-to-end throughput against the bare model, and bounded memory.

Figures printed:

- the bare model's throughput: ``predict`` on cutouts already in memory, batch ``search.batch_size``;
- the one-time start of the great-expectations worker process (~3 s, once per process: not per cutout, done before
  the timings as the model's graph tracing is);
- the end-to-end search throughput on a field of FITS images: memory-mapped read, cutting, validation (inline
  checks and the KB's great-expectations suite on the statistics), scoring, cleaning of the candidates, catalogue
  writing (no MLflow run, no gallery); the ratio to the bare model must be >= 0.8;
- the same ratio for each model of ``--model``: the champion (``models:/lenssearch@champion`` in the project's
  MLflow store, when it exists) and a bare single demo-size VGG (``lenssearch.models.build_model('vgg',
  train.network)``, untrained: the same cost per cutout); and, without ``--quick``, the paper-size VGG;
- resident memory of a fresh process per search, for FITS catalogues of 10^4, 10^5 and 10^6 positions (read
  lazily, see ``search.inputs.FitsCatalogue``; ``--sizes 1e5,1e6,3e6`` for a longer one), with the
  great-expectations pass and without it: the peak (VmHWM) and end RSS of the search process, its anonymous memory
  (RssAnon: what it allocated, without the pages of the memory-mapped images, which the kernel can drop) after
  its first chunk and at the end, and the peaks of its two worker processes (the great-expectations suite's and
  the catalogue writer's, sampled; both are replaced after a fixed number of tasks). The verdict is on the
  steady-state growth: the slope of the anonymous memory over the second half of the largest search, in bytes
  per position, with its standard error, extrapolated to a survey of 10^8 positions: "flat" only if the top of
  its 2-sigma range adds less than 100 MB there (a slope under ~1 byte per position) and the workers' memory is
  bounded, "GROWS" if the bottom of the range adds more, otherwise "not determined" (too short a search for the
  precision: ``--sizes 1e6,3e6``). The slopes of the peak and of the end anonymous memory between the two largest
  sizes are printed too: they include the allocators' warm-up (the anonymous memory settles within the first few 10^5 positions). These
  searches use a cheap real Keras model (a central-crop mean and a sigmoid) so that the largest runs in minutes:
  the model's own memory is per batch, the same at every size, and what could grow with the catalogue is the
  search's bookkeeping, which this measures. The first model of ``--model`` is also measured at 10^4 and 10^5
  positions.

For the throughput, the threshold is set at the 98th percentile of each model's scores, so that 2% of the cutouts
are candidates to clean (HOLISMOKES XVI clean the top-ranked candidates only). The memory verdict is on searches
without candidates (threshold 2), the per-position bookkeeping; the largest size is run again with 2% of
candidates, to print what each candidate kept takes (they are ranked and cleaned together at the end, by design).

Usage: ``python benchmarks/bench_search.py [--quick] [--model champion,vgg] [--sizes 1e4,1e5,1e6]``
(``make bench``); ``--memory-only [--sizes ...]`` for the memory runs alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIELD_PIXELS = 3000  # 90" at 0.03"/pixel
CANDIDATE_FRACTION = 0.02


def make_field(path: Path, bands, seed: int = 0) -> Path:
    """A field of FITS images (noise plus galaxies) with a TAN WCS, written band by band."""
    from astropy.io import fits
    from astropy.wcs import WCS

    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = FIELD_PIXELS
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.2]
    wcs.wcs.crpix = [n / 2 + 0.5, n / 2 + 0.5]
    wcs.wcs.cdelt = [-0.03 / 3600, 0.03 / 3600]
    xy = rng.uniform(50, n - 50, (400, 2))
    amp = rng.lognormal(-3.0, 1.0, 400)
    yy, xx = np.mgrid[-40:41, -40:41]
    for b, band in enumerate(bands):
        img = rng.normal(0.0, 0.004, (n, n)).astype(np.float32)
        for (x, y), a in zip(xy, amp):
            xi, yi = int(x), int(y)
            img[yi - 40 : yi + 41, xi - 40 : xi + 41] += (a * (0.5 + 0.25 * b) * np.exp(-(xx**2 + yy**2) / 50.0)).astype(np.float32)
        fits.PrimaryHDU(img, header=wcs.to_header()).writeto(path / f"image_{band}.fits", overwrite=True)
    return path


def positions(path: Path, n: int, seed: int = 1) -> Path:
    """A FITS catalogue of ``n`` random positions on the field (a few near the edges)."""
    from astropy.table import Table
    from astropy.wcs import WCS
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    wcs = WCS(fits.getheader(path / "image_F814W.fits"))
    x, y = rng.uniform(0, FIELD_PIXELS - 1, (2, n))
    ra, dec = wcs.all_pix2world(x, y, 0)
    out = path / f"positions_{n}_{seed}.fits"
    Table({"id": np.arange(n), "ra": ra, "dec": dec}).write(out, overwrite=True)
    return out


def load_model(cfg, kind: str = "champion"):
    """(scorer, description) of ``kind``: ``champion`` (a demo-size VGG when none is registered), ``vgg`` (a bare
    demo-size VGG) or ``tiny`` (a central-crop mean and a sigmoid: a real Keras model at almost no cost)."""
    import keras

    from lenssearch.errors import LensSearchError
    from lenssearch.search.scoring import Scorer, load_scorer

    if kind == "champion":
        try:
            scorer = load_scorer(cfg.search.model_uri)
            return scorer, f"champion {cfg.search.model_uri}"
        except LensSearchError:
            kind = "vgg"
    keras.utils.set_random_seed(cfg.base.seed)  # the same untrained weights in every process
    if kind == "tiny":
        size = cfg.search.cutout_pixels
        inp = keras.Input((size, size, len(cfg.base.bands)))
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Cropping2D((size - 8) // 2)(inp))
        model = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(x))
        return Scorer(lambda x: model.predict_on_batch(x), "keras:tiny"), "tiny Keras model (crop, mean, sigmoid)"
    from lenssearch.models import build_model

    model = build_model("vgg", cfg.train.network, tuple(cfg.base.bands))
    return Scorer(lambda x: model.predict_on_batch(x), "keras:vgg-demo"), "bare demo-size VGG (untrained)"


def bench_config(cfg, threshold: float):
    search = dataclasses.replace(cfg.search, threshold=float(threshold))
    return dataclasses.replace(cfg, search=search)


def run_search_once(cfg, field: Path, catalogue: Path, out: Path, scorer, on_chunk=None):
    from lenssearch.search.pipeline import open_field, run_search

    t0 = time.perf_counter()
    with open_field(cfg.base.bands, cfg.search.detection, field_dir=field, catalogue=catalogue) as inp:
        result = run_search(cfg, inp, out, model_uri=scorer, log_mlflow=False, write_gallery=False, progress=False,
                            on_chunk=on_chunk)
    return time.perf_counter() - t0, result


def peak_rss_mb(field: str = "VmHWM") -> float:
    """Peak resident memory of this process (VmHWM: unlike ru_maxrss it is not inherited through fork/exec);
    ``field="VmRSS"``: the current one; ``field="RssAnon"``: the current anonymous memory (what the process
    allocated, without the pages of memory-mapped files, e.g. the field's images, which the kernel can drop)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return float(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def warm_up_ge() -> float:
    """Start the search's great-expectations worker process and wait until it has imported great-expectations
    (a one-time cost per process, ~3-5 s of one core, not a per-cutout one); returns the seconds it took."""
    from lenssearch.search.pipeline import warm_up_expectations

    t0 = time.perf_counter()
    warm_up_expectations(wait=True)
    return time.perf_counter() - t0


class WorkerPeaks:
    """Peak RSS (VmHWM) of the search's worker processes (the great-expectations suite's, the cleaning's and the
    catalogue writer's), sampled every 0.2 s while they live (ru_maxrss of reaped children is no use: it carries the
    parent's RSS over fork/exec). Both are replaced after a fixed number of tasks, so their peaks are per worker."""

    def __init__(self):
        import threading

        self.peaks: dict[str, dict[int, float]] = {"ge": {}, "writer": {}, "cleaning": {}}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        from lenssearch.search import pipeline, writer

        pids = {"ge": pipeline.GE_WORKER.pids(), "writer": writer.WORKER.pids(),
                "cleaning": pipeline.CLEANING_WORKER.pids()}
        for kind, plist in pids.items():
            for pid in plist:
                try:
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            mb = float(line.split()[1]) / 1024.0
                            self.peaks[kind][pid] = max(self.peaks[kind].get(pid, 0.0), mb)
                except OSError:
                    pass

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def stop(self) -> dict[str, tuple[float, int]]:
        """Per kind of worker: (largest peak over its processes in MB, number of processes seen)."""
        self._sample()
        self._stop.set()
        self._thread.join()
        return {kind: (max(p.values(), default=0.0), len(p)) for kind, p in self.peaks.items()}


def steady_slope(timeline: list[tuple[int, float]], blocks: int = 8) -> tuple[float, float]:
    """Slope (bytes per position) of the anonymous memory over the second half of a search's timeline
    ``(positions done, RssAnon MB)``, the growth once the allocators have reached their steady state, and its
    standard error; NaNs below ``2 * blocks`` samples.

    The samples move in steps of a few MB with the transient buffers, so neighbouring samples are correlated and
    a least-squares fit to all of them understates its error (two 3x10^6-position runs gave -0.5 +/- 0.4 and
    +1.6 +/- 0.4 B/position). The fit is made to the means of ``blocks`` consecutive blocks of samples instead
    (batch means), whose scatter carries the steps. The last sample is left out: it is taken once the last
    great-expectations verdicts are in and the queues drained (12 MB lower than the one before, in a 10^6-position
    search).
    """
    steady = timeline[:-1]  # the last chunk is final only once the search's queues are drained: not steady
    half = steady[len(steady) // 2 :]
    if len(half) < 2 * blocks:
        return float("nan"), float("nan")
    parts = np.array_split(np.array(half, float), blocks)
    x = np.array([p[:, 0].mean() for p in parts])
    y = np.array([p[:, 1].mean() for p in parts]) * 2**20
    coef, cov = np.polyfit(x, y, 1, cov=True)
    return float(coef[0]), float(np.sqrt(cov[0, 0]))


def child(args) -> None:
    """Run one search in this fresh process and print its memory figures (peak, end, anonymous-memory timeline)."""
    from lenssearch.config import load_config

    cfg = bench_config(load_config(ROOT / "params.yaml"), args.threshold)
    if args.no_ge:
        cfg = dataclasses.replace(cfg, search=dataclasses.replace(cfg.search, ge_chunk_rows=0))
    scorer, _ = load_model(cfg, args.model)
    field = Path(args.field)
    catalogue = field / f"positions_{args.child}_1.fits"  # written by the parent: only the search is measured
    workers = WorkerPeaks()
    if not args.no_ge:
        warm_up_ge()
    timeline: list[tuple[int, float]] = []
    elapsed, result = run_search_once(cfg, field, catalogue, field / f"out_{args.child}", scorer,
                                      on_chunk=lambda rows: timeline.append((rows, peak_rss_mb("RssAnon"))))
    rss_mb, end_mb, anon_mb = peak_rss_mb(), peak_rss_mb("VmRSS"), peak_rss_mb("RssAnon")
    w = workers.stop()
    print(json.dumps({"n": args.child, "seconds": elapsed, "peak_rss_mb": rss_mb, "end_rss_mb": end_mb,
                      "end_anon_mb": anon_mb, **dict(zip(("steady_slope", "steady_slope_se"), steady_slope(timeline))),
                      "anon_last_chunk_mb": timeline[-1][1] if timeline else float("nan"),
                      "anon_after_first_chunk_mb": timeline[0][1] if timeline else float("nan"),
                      "ge_worker_peak_mb": w["ge"][0], "ge_workers": w["ge"][1],
                      "writer_peak_mb": w["writer"][0], "writers": w["writer"][1],
                      "cleaning_peak_mb": w["cleaning"][0], "cleaning_workers": w["cleaning"][1],
                      "n_candidates": result.metrics["n_above_threshold"], "timeline": deciles(timeline)}))


def deciles(timeline: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """The anonymous memory after the chunks nearest to each tenth of a search (its first and last chunk
    included): what the reader looks at to see a plateau or a climb."""
    if not timeline:
        return []
    last = timeline[-1][0]
    picks = [timeline[0]] + [min(timeline, key=lambda t: abs(t[0] - k * last / 10)) for k in range(1, 11)]
    return [(int(n), round(float(mb), 1)) for n, mb in dict(picks).items()]


def paper_ratio(root: Path, field: Path, bands, threshold_fraction: float, tmp: Path, n: int = 1024) -> None:
    """The same ratio with the paper-size VGG (configs/paper.yaml: full 128x128 input, wider filters)."""
    import keras

    from lenssearch.config import load_config
    from lenssearch.models import build_model
    from lenssearch.search.inputs import FieldImages
    from lenssearch.search.scoring import Scorer

    cfg = load_config(root / "params.yaml", root / "configs" / "paper.yaml")
    keras.utils.set_random_seed(cfg.base.seed)
    model = build_model("vgg", cfg.train.network, tuple(bands))
    scorer = Scorer(lambda x: model.predict_on_batch(x), "keras:vgg-paper")
    batch = cfg.search.batch_size
    with FieldImages.from_field_dir(field, bands) as images:
        rng = np.random.default_rng(3)
        cut, _ = images.cut(*rng.uniform(64, FIELD_PIXELS - 64, (2, n)), cfg.search.cutout_pixels)
    scorer.score(cut[:batch])
    t0 = time.perf_counter()
    scores = np.concatenate([scorer.score(cut[i : i + batch]).main for i in range(0, n, batch)])
    bare = n / (time.perf_counter() - t0)
    del cut
    pcfg = bench_config(cfg, float(np.quantile(scores, 1.0 - threshold_fraction)))
    elapsed, _ = run_search_once(pcfg, field, positions(field, n, seed=4), tmp / "out_paper", scorer)
    print(f"paper-size VGG: bare {bare:.1f} cutouts/s, end-to-end {n / elapsed:.1f} cutouts/s "
          f"({n} positions), ratio {n / elapsed / bare:.3f}")


def ratio(cfg, field: Path, tmp: Path, kind: str, n_e2e: int, bands) -> tuple[float, str]:
    """Bare predict and end-to-end throughput of one model; prints them; returns the candidate threshold."""
    from lenssearch.search.inputs import FieldImages

    scorer, description = load_model(cfg, kind)
    batch = cfg.search.batch_size
    n_bare = 4 * batch
    with FieldImages.from_field_dir(field, bands) as images:  # cut once from the same field
        rng = np.random.default_rng(2)
        cut, _ = images.cut(*rng.uniform(64, FIELD_PIXELS - 64, (2, n_bare)), cfg.search.cutout_pixels)
    scorer.score(cut[:batch])  # warm-up (graph tracing)
    calls, parts = [], []
    for i in range(0, 3 * n_bare, batch):  # each batch three times: 12 predicts, timed one by one
        t0 = time.perf_counter()
        parts.append(scorer.score(cut[i % n_bare : i % n_bare + batch]).main)
        calls.append(time.perf_counter() - t0)
    # the median call: a model whose calls vary (a committee: 1.5-3 ms per cutout from call to call on this
    # machine) is neither flattered nor penalised by one slow or fast call
    bare = batch / float(np.median(calls))
    bare_range = (batch / max(calls), batch / min(calls))
    scores = np.concatenate(parts[: n_bare // batch])
    threshold = float(np.quantile(scores, 1.0 - CANDIDATE_FRACTION))
    del cut
    ge_start = warm_up_ge()  # once per process (the worker is shared by the searches), as the model's warm-up

    bcfg = bench_config(cfg, threshold)
    # a small search first, as the model's warm-up: the numba kernels' cache, the writer process, astropy's writer
    run_search_once(bcfg, field, positions(field, 2 * batch, seed=9), tmp / f"out_{kind}_warm", scorer)
    catalogue = positions(field, n_e2e)
    elapsed, result = run_search_once(bcfg, field, catalogue, tmp / f"out_{kind}", scorer)
    e2e = n_e2e / elapsed
    no_ge = dataclasses.replace(bcfg, search=dataclasses.replace(bcfg.search, ge_chunk_rows=0))
    elapsed_no_ge, _ = run_search_once(no_ge, field, catalogue, tmp / f"out_{kind}_2", scorer)

    print(f"model: {description}; batch {batch}")
    if ge_start > 0.05:
        print(f"  great-expectations worker start (once per process, not timed below): {ge_start:.1f} s")
    print(f"  bare model predict (in-memory cutouts):   {bare:8.1f} cutouts/s (median of {len(calls)} calls; "
          f"{bare_range[0]:.0f}-{bare_range[1]:.0f})")
    print(f"  end-to-end search, {n_e2e} positions:      {e2e:8.1f} cutouts/s "
          f"({result.metrics['n_above_threshold']} candidates cleaned, "
          f"{result.metrics['validation_ge_runs']} great-expectations run(s))")
    print(f"  ratio end-to-end / bare:                 {e2e / bare:8.3f}  (goal >= 0.8)")
    print(f"    without the great-expectations pass:   {n_e2e / elapsed_no_ge / bare:8.3f}")
    overhead_ms = 1e3 * (1.0 / e2e - 1.0 / bare)
    print(f"  search overhead per cutout:              {overhead_ms:8.3f} ms (the ratio reaches 0.8 for models "
          f"slower than {4 * overhead_ms:.2f} ms/cutout; this model: {1e3 / bare:.3f} ms/cutout)")
    print(f"    without the great-expectations pass:   {1e3 * (elapsed_no_ge / n_e2e - 1.0 / bare):8.3f} ms")
    return threshold, description


def memory(cfg, field: Path, kind: str, sizes, threshold: float, ge: bool = True) -> list[dict]:
    """Memory of one search per catalogue size, each in a fresh process; slopes and verdict; returns the rows."""
    rows = []
    for n in sizes:
        positions(field, n)
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(n), "--field", str(field), "--threshold", str(threshold),
             "--model", kind, *([] if ge else ["--no-ge"])],
            capture_output=True, text=True,
        )
        if out.returncode != 0:
            raise RuntimeError(f"memory run of {n} positions failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"memory per catalogue size ({kind} model, FITS catalogue read in chunks, great-expectations "
          f"{'every search.ge_chunk_rows' if ge else 'off'}); MB:")
    for r in rows:
        workers = f"writer {r['writer_peak_mb']:.0f} ({r['writers']}), cleaning {r['cleaning_peak_mb']:.0f} " \
                  f"({r['cleaning_workers']})"
        if ge:
            workers = f"GE {r['ge_worker_peak_mb']:.0f} ({r['ge_workers']}), " + workers
        print(f"  {r['n']:>8d} positions: peak {r['peak_rss_mb']:7.1f}, end {r['end_rss_mb']:7.1f}; anonymous "
              f"{r['anon_after_first_chunk_mb']:6.1f} after the first chunk, {r['anon_last_chunk_mb']:6.1f} after "
              f"the last; "
              f"worker peaks (processes) {workers}  ({r['seconds']:.0f} s, {r['n'] / r['seconds']:.0f} cutouts/s, "
              f"{r['n_candidates']} candidates)")
    largest = max(rows, key=lambda r: r["n"])
    if largest.get("timeline"):
        print(f"  anonymous memory through the {largest['n']}-position search (positions: MB): "
              + ", ".join(f"{n:.2g}: {mb:.1f}" for n, mb in largest["timeline"]))
    if len(rows) > 1 and rows[-1]["n"] != rows[-2]["n"]:
        memory_verdict(rows)
    return rows


def candidate_cost(with_candidates: list[dict], without: list[dict]) -> None:
    """Print the memory the kept candidates take: between the two largest sizes, the growth of the anonymous memory
    (after the last chunk) with candidates minus that without, per additional candidate. The candidates are kept by
    design (ranked and cleaned together at the end), so this grows with their number, not with the field's."""
    w = sorted(with_candidates, key=lambda r: r["n"])[-2:]
    wo = {r["n"]: r for r in without}
    if len(w) < 2 or any(r["n"] not in wo for r in w) or w[1]["n_candidates"] == w[0]["n_candidates"]:
        return
    grow_with = w[1]["anon_last_chunk_mb"] - w[0]["anon_last_chunk_mb"]
    grow_without = wo[w[1]["n"]]["anon_last_chunk_mb"] - wo[w[0]["n"]]["anon_last_chunk_mb"]
    per = (grow_with - grow_without) * 2**20 / (w[1]["n_candidates"] - w[0]["n_candidates"])
    print(f"  candidates kept: {w[0]['n_candidates']} -> {w[1]['n_candidates']} between {w[0]['n']} and {w[1]['n']} "
          f"positions, {per:.0f} bytes each ({per * 1e6 / 2**20:.0f} MB per million candidates)")


#: A survey search: the catalogue size the slopes are extrapolated to, and the growth allowed there.
SURVEY_POSITIONS = 1e8
SURVEY_ALLOWED_MB = 100.0


def memory_verdict(rows: list[dict]) -> str:
    """Print the slopes and the verdict, returned: "flat", "GROWS" or "not determined".

    The verdict is on the steady-state growth: the slope of the search process's anonymous memory over the second
    half of the largest search (:func:`steady_slope`), extrapolated to :data:`SURVEY_POSITIONS` with its 2-sigma
    range. "flat" only if the top of that range adds less than :data:`SURVEY_ALLOWED_MB` there (< ~1 byte per
    position) and the worker processes' memory is bounded; "GROWS" if the bottom of the range adds more (or the
    workers' peaks grow); otherwise "not determined": the search is too short for the precision (the samples move
    by a few MB with the transient buffers), run a longer one (``--sizes 1e6,3e6``). The workers are replaced
    after a fixed number of tasks, so their memory is bounded once the largest search has replaced each of them
    at least once (its peak is then a whole worker's life), or if their peaks do not grow by more than 10% between
    the two largest sizes. The slopes of the peak and of the anonymous memory between the two largest sizes are
    printed too: they include the allocators' warm-up (the anonymous memory settles within a few 10^5 positions).
    """
    rows = sorted(rows, key=lambda r: r["n"])
    lo, hi = rows[-2], rows[-1]
    dn = hi["n"] - lo["n"]
    peak_slope = (hi["peak_rss_mb"] - lo["peak_rss_mb"]) * 2**20 / dn
    anon_slope = (hi["anon_last_chunk_mb"] - lo["anon_last_chunk_mb"]) * 2**20 / dn
    steady, se = hi["steady_slope"], hi["steady_slope_se"]
    scale = (SURVEY_POSITIONS - hi["n"]) / 2**20
    low_mb, mid_mb, high_mb = (steady - 2 * se) * scale, steady * scale, (steady + 2 * se) * scale
    workers_lo = lo["ge_worker_peak_mb"] + lo["writer_peak_mb"] + lo["cleaning_peak_mb"]
    workers_hi = hi["ge_worker_peak_mb"] + hi["writer_peak_mb"] + hi["cleaning_peak_mb"]
    # a worker is replaced after a fixed number of tasks: its memory is bounded once the largest search has seen
    # a whole worker's life (more than one process of each kind), or if the peaks do not grow
    recycled = hi["writers"] > 1 and (hi["ge_workers"] > 1 or hi["ge_worker_peak_mb"] == 0)
    workers_flat = recycled or workers_hi <= 1.10 * workers_lo + 1.0
    if not np.isfinite(steady):
        verdict = "not determined"
    elif low_mb > SURVEY_ALLOWED_MB or not workers_flat:
        verdict = "GROWS"
    elif high_mb < SURVEY_ALLOWED_MB:
        verdict = "flat"
    else:
        verdict = "not determined"
    print(f"  between {lo['n']} and {hi['n']} positions: peak {peak_slope:+.2f} B/position, anonymous memory "
          f"after the last chunk {anon_slope:+.2f} B/position (both include the allocators' warm-up); worker "
          f"peaks {workers_lo:.0f} -> {workers_hi:.0f} MB ({hi['writers']} writer and {hi['ge_workers']} "
          "great-expectations processes in the largest search)")
    print(f"  steady state (second half of the {hi['n']}-position search): {steady:+.3f} +/- {se:.3f} B/position "
          f"of anonymous memory -> {mid_mb:+.0f} MB at {SURVEY_POSITIONS:.0e} positions (2-sigma range "
          f"{low_mb:+.0f} to {high_mb:+.0f}) -> {verdict} (flat only if the range stays below "
          f"{SURVEY_ALLOWED_MB:.0f} MB and the workers' memory is bounded)")
    return verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (10^3 and 10^4 positions for memory)")
    parser.add_argument("--model", default="champion,vgg",
                        help="comma-separated models for the throughput ratio: champion, vgg, tiny")
    parser.add_argument("--sizes", default=None, help="catalogue sizes for the memory runs (tiny model)")
    parser.add_argument("--memory-only", action="store_true",
                        help="only the memory runs (tiny model, --threshold, default 2.0: no candidate), with and "
                             "without great-expectations")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--field", help=argparse.SUPPRESS)
    parser.add_argument("--threshold", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--no-ge", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from lenssearch._runtime import apply_offline_env

    apply_offline_env()
    if args.child:
        child(args)
        return

    from lenssearch.config import load_config

    cfg = load_config(ROOT / "params.yaml")
    bands = tuple(cfg.base.bands)
    kinds = [k.strip() for k in args.model.split(",") if k.strip()]
    n_e2e = 4000 if args.quick else 20000
    if args.sizes:
        sizes = tuple(int(float(v)) for v in args.sizes.split(","))
    else:
        sizes = (10_000, 100_000) if args.quick else (10_000, 100_000, 1_000_000)  # add 3e6 with --sizes
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        field = make_field(Path(tmp) / "field", bands)
        if args.memory_only:
            threshold = 2.0 if args.threshold is None else args.threshold
            print(f"{FIELD_PIXELS}x{FIELD_PIXELS} pixel field, {len(bands)} bands; memory only, threshold {threshold}")
            memory(cfg, field, "tiny", sizes, threshold)
            memory(cfg, field, "tiny", sizes, threshold, ge=False)
            return
        print(f"{FIELD_PIXELS}x{FIELD_PIXELS} pixel field, {len(bands)} bands; "
              "throughput measured on this machine as it is (other jobs included)")
        thresholds = {}
        for kind in kinds:
            thresholds[kind], _ = ratio(cfg, field, Path(tmp), kind, n_e2e, bands)
        tiny_threshold, _ = ratio(cfg, field, Path(tmp), "tiny", 2000, bands) if "tiny" not in kinds else (
            thresholds["tiny"], None)
        # the verdict: the search's per-position bookkeeping (threshold 2: no candidate), with and without the
        # great-expectations pass; then with 2% of candidates, for what they take
        without = memory(cfg, field, "tiny", sizes, 2.0)
        memory(cfg, field, "tiny", sizes, 2.0, ge=False)
        candidate_cost(memory(cfg, field, "tiny", sizes[-2:], tiny_threshold), without)
        if kinds and kinds[0] != "tiny":
            memory(cfg, field, kinds[0], tuple(n for n in sizes if n <= 100_000), thresholds[kinds[0]])
        if not args.quick:
            paper_ratio(ROOT, field, bands, threshold_fraction=CANDIDATE_FRACTION, tmp=Path(tmp))


if __name__ == "__main__":
    main()
