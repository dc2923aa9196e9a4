"""Benchmark of the search (issue 14): throughput against the bare model, Ray scaling, memory slopes.

Figures printed, each measured in one run, side by side on this machine (its load is printed with them):

1. ``ratio local/bare``: end-to-end local search cutouts/s (memory-mapped FITS, cutting, checks, great-expectations
   once per chunk, scoring, cleaning of the 2% candidates, catalogue) over the bare model's ``predict`` cutouts/s
   on cutouts already in memory, the same loaded model (below), called the same way (``Scorer.score``) with the
   same batch shape; each run is bare, search, bare (the mean of the two bare rates is its baseline), ``--repeat`` runs (default 3) and
   their median; one-time costs are paid before any timing on both sides (the model's graph tracing; a search of
   256 positions for the imports of sep, pyarrow's writer, ...); must be >= 0.8;
2. ``ratio ray2/ray1``: steady Ray throughput (first to last chunk, after the actors have loaded the model) with 2
   actors over 1 actor, each actor holding 1 CPU;
3. the per-batch costs (cut + checks; model) and an estimate for 1.1e8 cutouts on N GPUs (docs/search_scale.md);
4. memory: resident anonymous memory (RssAnon) of a fresh process running a local search of ``--memory-size``
   positions (default 10^6) with a cheap real Keras model (central crop, mean, sigmoid), sampled after every
   chunk; the slope over the second half in bytes per position (least squares), extrapolated to 10^8 positions;
   and the RssAnon of each of 2 Ray actors, sampled every 0.5 s during a Ray search of ``--ray-memory-size``
   positions (default 2e5) with the same model (and during the 2-actor throughput run), its second-half slope in
   bytes per position the actor handled.

The model of 1. and 2. is the project's champion (``models:/lenssearch@champion`` in ``mlflow.db``: the model the
demo search runs; a committee of five networks) when ``make run`` has registered one, else (or with ``--stand-in``)
an untrained demo-size VGG registered in a temporary store, about three times cheaper per cutout: on 2 shared
cores the search's own ~45 ms of CPU per batch then weighs more (docs/search_scale.md).

Usage: ``python benchmarks/bench_search.py [--quick]`` (``make bench``); ``--memory-size 1e5`` for a shorter
memory run, ``--only ratio|ray|memory``; ``--use-model URI --use-tracking-uri URI`` for another registered model.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIELD_PIXELS = 3000  # 90" at 0.03"/pixel
CANDIDATE_FRACTION = 0.02


def make_field(path: Path, bands, seed: int = 0) -> Path:
    """A field of FITS images (noise plus galaxies) with a TAN WCS."""
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


def positions(field: Path, n: int, seed: int = 1) -> Path:
    """A FITS catalogue of ``n`` random positions on the field (read lazily by the search)."""
    from astropy.io import fits
    from astropy.table import Table
    from astropy.wcs import WCS

    out = field / f"positions_{n}_{seed}.fits"
    if not out.exists():
        rng = np.random.default_rng(seed)
        x, y = rng.uniform(0, FIELD_PIXELS - 1, (2, n))
        ra, dec = WCS(fits.getheader(field / "image_F814W.fits")).all_pix2world(x, y, 0)
        Table({"id": np.arange(n), "ra": ra, "dec": dec}).write(out, overwrite=True)
    return out


def register_model(cfg, root: Path, kind: str) -> tuple[str, str]:
    """Register a Keras model in a temporary MLflow store; (model URI, tracking URI)."""
    import keras

    from lenssearch import tracking

    uri = f"sqlite:///{root}/mlflow.db"
    keras.utils.set_random_seed(cfg.base.seed)
    size, bands = cfg.search.cutout_pixels, len(cfg.base.bands)
    if kind == "tiny":
        inp = keras.Input((size, size, bands))
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Cropping2D((size - 8) // 2)(inp))
        model = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(x))
    else:
        from lenssearch.models import build_model

        model = build_model("vgg", cfg.train.network, tuple(cfg.base.bands))
    example = np.zeros((2, size, size, bands), np.float32)
    with tracking.tracked_run(f"bench-{kind}", experiment="bench", tracking_uri=uri, artifact_root=root / "art"):
        version = tracking.log_registered_keras_model(model, example, f"bench-{kind}")
    return f"models:/bench-{kind}/{version}", uri


def load(params: Path, **search):
    from lenssearch.config import load_config

    cfg = load_config(params)
    return dataclasses.replace(cfg, search=dataclasses.replace(cfg.search, **search))


def machine_load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def timed_search(cfg, field, catalogue, out, model, tracking_uri, engine="local"):
    """Run a search; (wall seconds, steady rows/s from the first to the last chunk, result)."""
    from lenssearch.search.pipeline import run_search
    from lenssearch.search.sources import open_field

    marks = []
    with open_field(cfg.base.bands, cfg.search.detection, field_dir=field, catalogue=catalogue) as inp:
        t0 = time.perf_counter()
        res = run_search(cfg, inp, out, model_uri=model, engine=engine, tracking_uri=tracking_uri, log_mlflow=False,
                         write_gallery=False, progress=False, on_chunk=lambda rows: marks.append((rows, time.perf_counter())))
        wall = time.perf_counter() - t0
    (r0, t_0), (r1, t_1) = marks[0], marks[-1]
    steady = (r1 - r0) / (t_1 - t_0) if len(marks) > 1 and t_1 > t_0 else r1 / wall
    return wall, steady, res


def bare_and_costs(cfg, field, scorer, n_batches: int) -> dict:
    """The bare model's cutouts/s (``scorer.score``, the search's own call, on a batch of cutouts already in memory,
    of the search's batch shape), and the per-batch cost of cut + checks."""
    from lenssearch.search.batch import BatchSpec, new_buffer, prepare_batch, score_prepared
    from lenssearch.kb.statistics import ValidationContext
    from lenssearch.search.inputs import FieldImages
    bs, size = cfg.search.batch_size, cfg.search.cutout_pixels
    rng = np.random.default_rng(3)
    with FieldImages.from_field_dir(field, cfg.base.bands) as images:
        rows = {"row": np.arange(bs), "x_pix": rng.uniform(100, FIELD_PIXELS - 100, bs),
                "y_pix": rng.uniform(100, FIELD_PIXELS - 100, bs), "on_image": np.ones(bs, bool)}
        ctx = ValidationContext(size, tuple(cfg.base.bands), images.noise_sigma, cfg.validate)
        spec = BatchSpec(ctx, bs, None, cfg.search.cleaning, 0.03)
        buffer = new_buffer(spec, len(cfg.base.bands))
        cutouts = prepare_batch(rows, images, spec).batch  # in memory, the model's batch shape
        scorer.score(cutouts)  # graph tracing, once
        t0 = time.perf_counter()
        for _ in range(n_batches):
            scorer.score(cutouts)
        t_model = (time.perf_counter() - t0) / n_batches
        prepare_batch(rows, images, spec, buffer)
        t0 = time.perf_counter()
        for _ in range(n_batches):
            prepare_batch(rows, images, spec, buffer)  # as the search: cut into a reused buffer, check
        t_cpu = (time.perf_counter() - t0) / n_batches
        main, _ = score_prepared(prepare_batch(rows, images, spec, buffer), scorer)
        from lenssearch.search import cleaning

        t0 = time.perf_counter()
        cleaning.measure_cutouts(cutouts[:16], images.noise_sigma, tuple(cfg.base.bands), 0.03, cfg.search.cleaning)
        t_clean = (time.perf_counter() - t0) / 16
    return {"bare_cps": bs / t_model, "t_model_batch": t_model, "t_cut_check_batch": t_cpu, "batch": bs,
            "t_clean_cutout": t_clean, "threshold": float(np.quantile(main, 1 - CANDIDATE_FRACTION))}


def ge_cost(cfg, rows: int) -> float:
    """Seconds of one great-expectations run on the statistics of ``rows`` cutouts (one chunk)."""
    from lenssearch.kb.statistics import ValidationContext
    from lenssearch.search.checks import run_expectations

    bands = tuple(cfg.base.bands)
    ctx = ValidationContext(cfg.search.cutout_pixels, bands, np.ones(len(bands)), cfg.validate)
    stats = {"shape_ok": np.ones(rows, bool), "dtype": np.array(["float32"] * rows), "finite_fraction": np.ones(rows)}
    for b in bands:
        stats |= {f"bg_level_{b}": np.zeros(rows), f"bg_sigma_{b}": np.ones(rows), f"noise_ratio_{b}": np.ones(rows),
                  f"bg_level_sigma_{b}": np.zeros(rows)}
    run_expectations(stats, ctx)  # imports, once
    t0 = time.perf_counter()
    run_expectations(stats, ctx)
    return time.perf_counter() - t0


def warm_up_ge(cfg) -> None:
    """Import great-expectations once (a one-time cost of a process, like the model's graph tracing)."""
    from lenssearch.kb.statistics import ValidationContext
    from lenssearch.search.checks import run_expectations

    ctx = ValidationContext(4, tuple(cfg.base.bands), np.ones(3), cfg.validate)
    stats = {"shape_ok": np.ones(2, bool), "dtype": np.array(["float32"] * 2), "finite_fraction": np.ones(2)}
    run_expectations(stats, ctx)


def rss_anon(pid: int | str = "self") -> int:
    """Resident anonymous memory (bytes) of a process: its heap, not the pages of memory-mapped files."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


class ActorMemory:
    """RssAnon of the Ray actors (``ray::`` processes running BatchScorer), sampled every 0.5 s (RSS would count
    the pages of the memory-mapped field that an actor has read, which grow to the field's size)."""

    def __init__(self):
        self.samples: dict[int, list[tuple[float, int]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        import psutil

        while not self._stop.is_set():
            for p in psutil.process_iter(["pid", "cmdline"]):
                try:
                    if "BatchScorer" in " ".join(p.info["cmdline"] or []):
                        self.samples.setdefault(p.pid, []).append((time.perf_counter(), rss_anon(p.pid)))
                except (psutil.NoSuchProcess, psutil.AccessDenied, FileNotFoundError, ProcessLookupError):
                    pass
            self._stop.wait(0.5)

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.samples


def ray_config(cfg, workers: int, chunk_rows: int | None = None):
    """``cfg`` with a local Ray of 2 CPUs and ``workers`` actors of 1 CPU each."""
    rcfg = dataclasses.replace(cfg.search.ray, workers=workers, num_cpus=2, cpus_per_worker=1)
    return dataclasses.replace(cfg, search=dataclasses.replace(cfg.search, ray=rcfg,
                                                               chunk_rows=chunk_rows or cfg.search.chunk_rows))


def report_actors(samples: dict, rate_per_actor: float) -> None:
    """Each actor's RssAnon: first sample, peak, last, and the slope over the second half of its samples (the model
    loaded and traced), in kB/s and in bytes per position it handled (``rate_per_actor`` positions/s)."""
    for pid, s in samples.items():
        t, rss = zip(*s)
        half = len(t) // 2
        b, se = slope(t[half:], rss[half:])
        print(f"  actor {pid}: RssAnon {rss[0] / 2**20:.0f} -> {max(rss) / 2**20:.0f} (peak) -> {rss[-1] / 2**20:.0f} "
              f"MB over {len(s)} samples ({t[-1] - t[0]:.0f} s); second-half slope {b / 2**10:.1f} +- {se / 2**10:.1f} "
              f"kB/s ~ {b / rate_per_actor:.1f} +- {se / rate_per_actor:.1f} bytes/position")


def slope(xs, ys) -> tuple[float, float]:
    """Least-squares slope of ys over xs and its standard error."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if len(xs) < 3:
        return float("nan"), float("nan")
    a = np.vstack([xs, np.ones_like(xs)]).T
    coef, res, *_ = np.linalg.lstsq(a, ys, rcond=None)
    resid = ys - a @ coef
    se = np.sqrt(np.sum(resid**2) / (len(xs) - 2) / np.sum((xs - xs.mean()) ** 2))
    return float(coef[0]), float(se)


def memory_child(args) -> None:
    """In a fresh process: a local search of ``--memory-size`` positions; prints rows and RssAnon per chunk."""
    from lenssearch._runtime import apply_offline_env

    apply_offline_env()
    cfg = load(args.params, threshold=2.0)  # no candidates: the per-position bookkeeping alone
    from lenssearch.search.pipeline import run_search
    from lenssearch.search.sources import open_field

    with open_field(cfg.base.bands, cfg.search.detection, field_dir=args.field, catalogue=args.catalogue) as inp:
        run_search(cfg, inp, args.out, model_uri=args.model, tracking_uri=args.tracking_uri, log_mlflow=False,
                   write_gallery=False, progress=False,
                   on_chunk=lambda rows: print(f"MEM {rows} {rss_anon()}", flush=True))


#: The model the demo search runs (``search.model_uri``), in the project's MLflow store.
CHAMPION = "models:/lenssearch@champion"


def champion_registered() -> bool:
    """Whether ``mlflow.db`` beside the repository holds the champion alias (after ``make run``)."""
    import sqlite3

    db = ROOT / "mlflow.db"
    if not db.is_file():
        return False
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            row = con.execute("SELECT 1 FROM registered_model_aliases WHERE name = ? AND alias = ?",
                              ("lenssearch", "champion")).fetchone()
    except sqlite3.Error:
        return False
    return row is not None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer cutouts (a rough figure)")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--memory-size", type=float, default=1e6)
    ap.add_argument("--ray-memory-size", type=float, default=2e5, help="positions of the Ray memory run (2 actors)")
    ap.add_argument("--only", choices=("ratio", "ray", "memory"))
    ap.add_argument("--repeat", type=int, default=3, help="ratio runs (bare, search, bare); the median is reported")
    ap.add_argument("--use-model", help="a registered model URI (default: the project's champion, the model the "
                    "demo search runs, when mlflow.db holds one; else a demo-size VGG stand-in)")
    ap.add_argument("--stand-in", action="store_true", help="the demo-size VGG stand-in even if a champion exists")
    ap.add_argument("--use-tracking-uri", help="its MLflow store (e.g. sqlite:///mlflow.db)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--field", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--catalogue", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--tracking-uri", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return memory_child(args)
    from lenssearch._runtime import apply_offline_env

    apply_offline_env()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cfg = load(args.params)
    n = 2048 if args.quick else 8192
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        tmp = Path(tmp)
        field = make_field(tmp / "field", cfg.base.bands)
        print(f"field {FIELD_PIXELS}x{FIELD_PIXELS} pixels x {len(cfg.base.bands)} bands; {machine_load()}")
        if args.only in (None, "ratio", "ray"):
            if args.use_model:
                model, uri = args.use_model, args.use_tracking_uri
            elif args.stand_in or not champion_registered():
                model, uri = register_model(cfg, tmp / "registry", "vgg")
            else:  # the model the demo search runs
                model, uri = CHAMPION, f"sqlite:///{ROOT / 'mlflow.db'}"
            print(f"model {model}")
            from lenssearch.search.scoring import load_scorer

            scorer = load_scorer(model, tracking_uri=uri)  # one scorer for the bare model and the search
            n_bare = 4 if args.quick else 8
            costs = bare_and_costs(cfg, field, scorer, n_bare)  # the graph traced before any timing
            bcfg = load(args.params, threshold=costs["threshold"])
            t_ge = ge_cost(cfg, cfg.search.chunk_rows)
            print(f"per batch of {costs['batch']}: model {costs['t_model_batch']:.3f} s, cut + checks "
                  f"{costs['t_cut_check_batch']:.3f} s (one core); cleaning {1e3 * costs['t_clean_cutout']:.1f} ms "
                  f"per candidate; great-expectations {t_ge:.2f} s per chunk of {cfg.search.chunk_rows}; "
                  f"{machine_load()}")
        if args.only in (None, "ratio"):
            warm_up_ge(cfg)
            cat = positions(field, n)
            timed_search(bcfg, field, positions(field, 256), tmp / "warm", scorer, uri)  # one-time imports (sep, ...)
            results = []
            before = costs["bare_cps"]
            for rep in range(args.repeat):
                wall, _, _ = timed_search(bcfg, field, cat, tmp / f"local{rep}", scorer, uri)  # chunks of chunk_rows
                steady = n / wall
                after = bare_and_costs(cfg, field, scorer, n_bare)["bare_cps"]
                bare = (before + after) / 2  # before and after the search: the machine's load drifts
                results.append((steady, bare, steady / bare))
                print(f"  run {rep + 1}: bare predict {bare:.1f} cutouts/s (before {before:.1f}, after {after:.1f}); "
                      f"local search {steady:.1f} cutouts/s over {n}; ratio {steady / bare:.2f}; {machine_load()}")
                before = after
            steady, bare, ratio = (float(np.median(v)) for v in zip(*results))
            print(f"bare predict {bare:.1f} cutouts/s; local search {steady:.1f} cutouts/s; ratio local/bare "
                  f"{ratio:.2f} (median of {len(results)}; >= 0.8 required); {machine_load()}")
        if args.only in (None, "ray"):
            # steady rate: from the first chunk to the last (8 chunks), after Ray and the actors have started
            rates = {}
            for workers in (1, 2):
                wcfg = ray_config(bcfg, workers, n // 8)
                probe = ActorMemory() if workers == 2 else None
                wall, rates[workers], _ = timed_search(wcfg, field, positions(field, n), tmp / f"ray{workers}", model,
                                                       uri, "ray")
                if probe is not None:
                    report_actors(probe.stop(), rates[workers] / workers)
                print(f"ray {workers} worker(s): {rates[workers]:.1f} cutouts/s steady (wall {wall:.1f} s for {n}); "
                      f"{machine_load()}")
            print(f"ratio ray2/ray1 {rates[2] / rates[1]:.2f} (2 actors x 1 CPU on {os.cpu_count()} CPUs)")
        if args.only in (None, "memory"):
            size = int(args.memory_size if not args.quick else min(args.memory_size, 1e5))
            model, uri = register_model(cfg, tmp / "registry-tiny", "tiny")
            cat = positions(field, size, seed=2)
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, __file__, "--child", "--params", str(args.params), "--field",
                                   str(field), "--catalogue", str(cat), "--out", str(tmp / "mem"), "--model", model,
                                   "--tracking-uri", uri], capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(proc.stderr[-3000:])
            marks = [tuple(map(int, line.split()[1:])) for line in proc.stdout.splitlines() if line.startswith("MEM ")]
            rows, rss = zip(*marks)
            half = len(rows) // 2
            b, se = slope(rows[half:], rss[half:])
            print(f"memory, local search of {size} positions ({time.perf_counter() - t0:.0f} s, tiny model): RssAnon "
                  f"{rss[0] / 2**20:.0f} MB after the first chunk, {rss[-1] / 2**20:.0f} MB at the end; second-half "
                  f"slope {b:.2f} +- {se:.2f} bytes/position -> {b * 1e8 / 2**20:+.0f} MB at 1e8 positions; "
                  f"{machine_load()}")
            size = int(args.ray_memory_size if not args.quick else min(args.ray_memory_size, 2e4))
            probe = ActorMemory()
            wall, rate, _ = timed_search(ray_config(load(args.params, threshold=2.0), 2), field,
                                         positions(field, size, seed=3), tmp / "mem-ray", model, uri, "ray")
            print(f"memory, ray search of {size} positions with 2 actors ({wall:.0f} s, tiny model, {rate:.0f} "
                  f"cutouts/s steady): RssAnon of each actor")
            report_actors(probe.stop(), rate / 2)


if __name__ == "__main__":
    main()
