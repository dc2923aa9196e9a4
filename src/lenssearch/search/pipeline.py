"""The ``search`` verb's pure function, :func:`run_search`: the procedure of HOLISMOKES XVI (Schuldt et al. 2025,
Sect. 3-4) on a field or a stack of cutouts.

1. cut every position of the catalogue from the memory-mapped band images (:func:`.batch.cut`);
2. check each cutout as the knowledge base's cutouts are checked (:mod:`.checks`);
3. score the valid cutouts with the model, a fixed batch shape at a time (:mod:`.scoring`), and measure those
   above the threshold for cleaning while they are in memory (sep; :mod:`.cleaning`);
4. append the per-position results, chunk by chunk, to ``scores.parquet``, great-expectations run once per chunk
   (:mod:`.results`); steps 1-4 run locally (:func:`score_locally`) or on Ray Data (:mod:`.ray_engine`);
5. rank: the candidates are the rows scored at least the threshold (:func:`.catalogue.scan`);
6. clean the candidates only: edges, masked pixels, bright stars, residual background, crowding (Sect. 3.1);
7. remove duplicates within 2", keeping the largest Kron radius (Sect. 4);
8. classes where the truth is known (Angora et al. 2023, Table A.6), counts per stage (Table 1), the catalogue
   ``candidates.ecsv``, the gallery, ``counts.ecsv``, ``metrics.json`` and an MLflow run.

Every output is written to a temporary name and renamed when complete, so an interrupted search leaves nothing
that looks finished.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
from astropy.table import Table

from lenssearch.io import atomic_path, check_output_folder, describe_columns
from lenssearch.search import catalogue, cleaning
from lenssearch.search.batch import BatchSpec, finish_batch, prepare_batch, score_prepared
from lenssearch.kb.statistics import ValidationContext
from lenssearch.search.inputs import SearchInputError
from lenssearch.search.results import ScoresFile, Truth, concat_results, finish_chunk, position_chunk, truth_column
from lenssearch.search.scoring import Scorer, load_scorer
from lenssearch.search.sources import SearchInput

#: Default threshold when neither the configuration nor the model version gives one (Angora et al. 2023, 4.1).
DEFAULT_THRESHOLD = 0.5

#: scores.parquet is logged to MLflow up to this size (a survey's would be a copy of gigabytes)
MAX_LOGGED_SCORES_BYTES = 200 * 2**20

#: MLflow experiment of the search and known-lens runs.
MLFLOW_EXPERIMENT = "lenssearch-search"

#: What a search writes into its output folder.
OUTPUT_FILES = ("scores.parquet", "candidates.ecsv", "counts.ecsv", "metrics.json")

REFERENCES = ("Angora et al. 2023, Sect. 5 and Table A.6; "
              "Schuldt et al. 2025 (HOLISMOKES XVI, A&A 699, A350), Sect. 3-4")


@dataclasses.dataclass
class SearchResult:
    """What :func:`run_search` returns (and wrote); :attr:`scores` reads the per-position table back."""

    candidates: Table
    counts: Table
    metrics: dict[str, Any]
    out_dir: Path

    @property
    def scores_path(self) -> Path:
        return self.out_dir / "scores.parquet"

    @property
    def scores(self) -> Table:
        from lenssearch.search.results import read_scores

        return read_scores(self.scores_path)


# ----------------------------------------------------------------------------------------------- set-up
def check_cutout_size(config, inp: SearchInput, scorer: Scorer) -> None:
    """Refuse, before anything is scored, cutouts that the model does not take (naming the stack file or the
    ``search.cutout_pixels`` parameter and the size the model expects)."""
    if inp.stack is not None:
        size, source = inp.stack.size, f"{inp.stack.path} (cutout stack)"
    else:
        size, source = config.search.cutout_pixels, f"search.cutout_pixels = {config.search.cutout_pixels}"
    scorer.check_cutouts((size, size, len(inp.bands)), source)


def resolve_threshold(cfg, scorer: Scorer) -> tuple[float, str]:
    """The decision threshold and where it comes from: params, the model version's tag, or the default."""
    if cfg.threshold is not None:
        return float(cfg.threshold), "params search.threshold"
    if scorer.threshold is not None:
        return float(scorer.threshold), f"tag of {scorer.uri}"
    return DEFAULT_THRESHOLD, "default 0.5 (no tuned threshold tag on the model)"


def model_version(uri: str, tracking_uri: str | None) -> tuple[str | None, dict]:
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


def class_bounds(cfg, threshold: float, version_tags: dict) -> tuple[float, float]:
    """``(tp_min, qtp_min)``: a lens is TP at or above the threshold the search uses (Angora et al. 2023, Table
    A.6 with its threshold), qTP down to the model version's tuned ``qtp_lower`` tag (promote), else
    ``search.qtp_min``; never above the threshold."""
    try:
        qtp_min = float(version_tags["qtp_lower"])
    except (KeyError, ValueError):
        qtp_min = cfg.qtp_min
    return threshold, min(qtp_min, threshold)


def make_truth(cfg, inp: SearchInput, planted: Table | None, tp_min: float | None = None,
               qtp_min: float | None = None) -> Truth:
    """The truth of the search: planted lenses, else a truth column of the positions, else none; lens classes at
    ``tp_min`` / ``qtp_min`` (default ``search.tp_min`` / ``search.qtp_min``)."""
    tp_min = cfg.tp_min if tp_min is None else tp_min
    qtp_min = cfg.qtp_min if qtp_min is None else qtp_min
    if planted is not None:
        for name in ("ra", "dec"):
            if name not in planted.colnames:
                raise SearchInputError(f"planted-lens catalogue lacks column '{name}' (has {planted.colnames})")
        return Truth(np.asarray(planted["ra"], float), np.asarray(planted["dec"], float), None,
                     cfg.match_radius_arcsec, tp_min, qtp_min)
    return Truth(None, None, truth_column(inp.positions, cfg.chunk_rows), cfg.match_radius_arcsec, tp_min, qtp_min)


def batch_spec(config, inp: SearchInput, measure_above: float | None) -> BatchSpec:
    size = config.search.cutout_pixels if inp.stack is None else inp.stack.size
    ctx = ValidationContext(size, tuple(inp.bands), np.asarray(inp.noise_sigma, float), config.validate)
    return BatchSpec(ctx, config.search.batch_size, measure_above, config.search.cleaning, inp.pixel_scale_arcsec)


# ----------------------------------------------------------------------------------------------- steps 1-4
def score_chunk(inp: SearchInput, start: int, stop: int, scorer: Scorer, spec: BatchSpec, truth: Truth,
                great_expectations: bool, bar=None, buffers: list | None = None):
    """Steps 1-4 for catalogue rows ``start:stop``: every batch through :func:`.batch.prepare_batch` (cut,
    check), :func:`.batch.score_prepared` (the model) and :func:`.batch.finish_batch` (result columns, candidates
    measured), then the chunk's great-expectations run and truth (:func:`.results.finish_chunk`).

    The model scores batch i in this thread while one helper thread finishes batch i-1 and cuts and checks batch
    i+1 (numpy, sep and the model's runtime release the interpreter lock). The helper runs its tasks in the order
    given, so batch i-1 is finished before batch i+1 is cut into its buffer: two batch buffers (``buffers``,
    kept by the caller from one chunk to the next) are all the cutouts in memory.
    """
    from concurrent.futures import ThreadPoolExecutor

    pos, rows = position_chunk(inp, start, stop)
    batches = [{k: v[b : b + spec.batch_size] for k, v in rows.items()} for b in range(0, len(pos), spec.batch_size)]
    buffers = buffers if buffers is not None else [None, None]
    finished = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="search-cut") as pool:
        ahead = pool.submit(prepare_batch, batches[0], inp.pixels, spec, buffers[0])
        for i, batch in enumerate(batches):
            prepared = ahead.result()
            buffers[i % 2] = prepared.batch
            if i + 1 < len(batches):
                ahead = pool.submit(prepare_batch, batches[i + 1], inp.pixels, spec, buffers[(i + 1) % 2])
            finished.append(pool.submit(finish_batch, prepared, *score_prepared(prepared, scorer), spec))
            del prepared
            if bar is not None:
                bar.update(len(batch["row"]))
        parts = [f.result() for f in finished]
    return finish_chunk(pos, rows, concat_results(parts), spec.ctx, truth, great_expectations)


def score_table(inp: SearchInput, scorer: Scorer, config, measure_above: float | None = None, truth: Truth | None = None):
    """Steps 1-4 of every position, gathered in memory as one Arrow table (small catalogues: known lenses)."""
    import pyarrow as pa

    cfg, n = config.search, len(inp.positions)
    spec = batch_spec(config, inp, measure_above)
    truth = truth or Truth(None, None, None, cfg.match_radius_arcsec, cfg.tp_min, cfg.qtp_min)
    buffers = [None, None]
    return pa.concat_tables([score_chunk(inp, start, min(start + cfg.chunk_rows, n), scorer, spec, truth,
                                         cfg.great_expectations, buffers=buffers)
                             for start in range(0, n, cfg.chunk_rows)])


def score_locally(inp: SearchInput, scorer: Scorer, cfg, spec: BatchSpec, truth: Truth, path: Path, meta: dict,
                  progress: bool = True, on_chunk: Callable[[int], None] | None = None) -> None:
    """Steps 1-4 in this process, chunk after chunk, into ``scores.parquet`` at ``path``."""
    from tqdm import tqdm

    n = len(inp.positions)
    out = ScoresFile(path, meta)
    buffers = [None, None]  # the two batch buffers, reused by every chunk
    try:
        with tqdm(total=n, desc="search", unit="row", disable=not progress, mininterval=2.0) as bar:
            for start in range(0, n, cfg.chunk_rows):
                stop = min(start + cfg.chunk_rows, n)
                out.append(score_chunk(inp, start, stop, scorer, spec, truth, cfg.great_expectations, bar, buffers))
                if on_chunk is not None:
                    on_chunk(stop)
    finally:
        out.close()


# ----------------------------------------------------------------------------------------------- the search
def run_search(
    config,
    inp: SearchInput,
    out_dir: str | Path,
    *,
    model_uri: "str | Scorer | None" = None,
    planted: Table | None = None,
    engine: str = "local",
    tracking_uri: str | None = None,
    artifact_root: str | Path | None = None,
    log_mlflow: bool = True,
    write_gallery: bool = True,
    progress: bool = True,
    on_chunk: Callable[[int], None] | None = None,
) -> SearchResult:
    """Search ``inp`` with a model: steps 1-8 of the module's docstring.

    Parameters
    ----------
    config
        The whole configuration: sections ``search`` and ``validate``.
    inp
        From :func:`.sources.open_input`, :func:`.sources.open_field` or :func:`.sources.open_stack`.
    out_dir
        Output folder (e.g. ``reports/search``); the user's other files in it are kept.
    model_uri
        Registered model or committee; default ``search.model_uri``; a loaded :class:`.scoring.Scorer` as it is.
    planted
        Planted lenses (``ra``, ``dec``) of a synthetic field: the truth; without it a truth column of the
        positions (``is_lens``/``label``), if any.
    engine
        ``local`` (this process) or ``ray`` (Ray Data, ``search.ray``: an actor pool holding the model; resumes
        from the shards of a killed run).
    on_chunk
        Called with the number of catalogue rows done after each chunk (progress displays, benchmarks).
    """
    cfg = config.search
    out_dir = Path(out_dir)
    if engine not in ("local", "ray"):
        raise SearchInputError(f"--engine {engine!r}: expected 'local' or 'ray'")
    if engine == "ray":
        from lenssearch.search.ray_engine import require_ray

        require_ray()
        if isinstance(model_uri, Scorer):
            raise SearchInputError("--engine ray loads the model in its workers: give a model URI")
    check_output_folder(out_dir, files=OUTPUT_FILES, folders=("gallery",))
    scorer = model_uri if isinstance(model_uri, Scorer) else load_scorer(model_uri or cfg.model_uri,
                                                                         tracking_uri=tracking_uri)
    check_cutout_size(config, inp, scorer)
    threshold, threshold_source = resolve_threshold(cfg, scorer)
    version, version_tags = model_version(scorer.uri, tracking_uri)
    tp_min, qtp_min = class_bounds(cfg, threshold, version_tags)
    truth = make_truth(cfg, inp, planted, tp_min, qtp_min)
    spec = batch_spec(config, inp, threshold)
    meta = {"input": inp.description, "model_uri": scorer.uri, "model_version": version, "threshold": threshold,
            "threshold_source": threshold_source, "qtp_lower": qtp_min, "bands": list(inp.bands), "members": [],
            "references": REFERENCES}
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(out_dir / "scores.parquet") as scores_path:
            if engine == "ray":  # steps 1-4
                from lenssearch.search.ray_engine import score_on_ray

                score_on_ray(inp, model_uri or cfg.model_uri, tracking_uri, config, spec, truth, scores_path, meta,
                             out_dir, progress, on_chunk)
            else:
                score_locally(inp, scorer, cfg, spec, truth, scores_path, meta, progress, on_chunk)
            s = catalogue.scan(scores_path, threshold, truth, cfg.great_expectations)  # step 5
            meta["members"] = list(s.members)
            c = s.candidates
            meas = catalogue.measurements(c, star_distance(inp, c["ra"], c["dec"], cfg))  # step 6
            flags = cleaning.apply_rules(meas, cfg.cleaning)
            passed = ~np.any(np.column_stack(list(flags.values())), axis=1) if len(c["row"]) else np.zeros(0, bool)
            kept, duplicate_of = catalogue.remove_duplicates(c, meas, passed,
                                                             cfg.cleaning.duplicate_radius_arcsec)  # step 7
            counts = catalogue.count_stages(s, threshold, flags, kept, cfg.cleaning.duplicate_radius_arcsec)
            cand = catalogue.candidate_table(c, meas, flags, kept, duplicate_of, s.members, truth.known)  # step 8
            metrics = catalogue.search_metrics(s, cand, passed, truth, threshold)
            describe_columns(cand, meta)
            describe_columns(counts, meta)
            if write_gallery:
                gallery(inp, cand, c, cfg.gallery, out_dir / "gallery", s.members)
            write_table(out_dir / "candidates.ecsv", cand)
    except BaseException:
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a search that failed leaves nothing behind
        raise
    write_table(out_dir / "counts.ecsv", counts)
    write_json(out_dir / "metrics.json", metrics)
    if engine == "ray":
        from lenssearch.search.ray_engine import remove_shards

        remove_shards(out_dir)
    if log_mlflow:
        log_search(counts, metrics, meta, out_dir, tracking_uri, artifact_root)
    return SearchResult(cand, counts, metrics, out_dir)


# ----------------------------------------------------------------------------------------------- outputs
def star_distance(inp: SearchInput, ra: np.ndarray, dec: np.ndarray, cfg) -> np.ndarray:
    """Distance (arcsec) of each candidate to the nearest star brighter than ``cleaning.star_mag_max``."""
    if inp.stars is None or len(ra) == 0:
        return np.full(len(ra), np.inf)
    bright = np.asarray(inp.stars["mag"], float) <= cfg.cleaning.star_mag_max
    d, _ = cleaning.nearest_neighbour(ra, dec, inp.stars["ra"][bright], inp.stars["dec"][bright])
    return d


def stamps(inp: SearchInput, rows: np.ndarray, x: np.ndarray, y: np.ndarray, gcfg) -> list:
    """(small stamp, context stamp) of each candidate, cut from the field or read from the stack."""
    out = []
    small_pix = max(8, int(round(gcfg.stamp_arcsec / inp.pixel_scale_arcsec)))
    context_pix = max(small_pix, int(round(gcfg.context_arcsec / inp.pixel_scale_arcsec)))
    for i, r in enumerate(rows):
        if inp.images is not None:
            small, _ = inp.images.cut(x[i : i + 1], y[i : i + 1], small_pix)
            context, _ = inp.images.cut(x[i : i + 1], y[i : i + 1], context_pix)
            out.append((small[0], context[0]))
        else:
            cutout = inp.stack.read(int(r), int(r) + 1)[0]
            half, c = min(small_pix, cutout.shape[0]) // 2, cutout.shape[0] // 2
            out.append((cutout[c - half : c + half, c - half : c + half], cutout))
    return out


def gallery(inp: SearchInput, cand: Table, c: dict, g, path: Path, members) -> None:
    """The HTML gallery of the kept candidates (Lupton RGB stamps), best first."""
    from lenssearch.search.gallery import write_gallery

    kept = np.flatnonzero(np.asarray(cand["kept"], bool))[: g.max_candidates]
    rows = [dict(zip(cand.colnames, cand[i])) for i in kept]
    pictures = stamps(inp, c["row"][kept], c["x_pix"][kept], c["y_pix"][kept], g)
    with atomic_path(path) as tmp:
        write_gallery(tmp, rows, pictures, inp.noise_sigma, g.stretch_sigma, g.lupton_q,
                      [f"score_{m}" for m in members], f"lenssearch candidates: {inp.description}",
                      g.stamp_arcsec, g.context_arcsec)


def write_table(path: Path, table: Table) -> None:
    """Write an ECSV catalogue atomically (units and descriptions of the known columns, :func:`describe_columns`)."""
    with atomic_path(path) as tmp:
        describe_columns(table).write(tmp, format="ascii.ecsv")


def write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def log_run(run_name, params, metrics, files, tracking_uri, artifact_root) -> None:
    """Record a run (params, metrics, output files) in MLflow's search experiment."""
    from lenssearch import tracking

    uri = tracking.resolve_tracking_uri(tracking_uri)
    metrics = {re.sub(r"[^A-Za-z0-9_\-. :/]", "_", k): v for k, v in metrics.items()}  # MLflow's metric names
    with tracking.tracked_run(run_name, experiment=MLFLOW_EXPERIMENT, params=params, tracking_uri=uri,
                              artifact_root=artifact_root or tracking.artifact_root_for(uri)):
        tracking.log_metrics(metrics)
        tracking.log_artifacts(files)


def count_metric_name(i: int, stage: str) -> str:
    """One metric name per stage whatever the threshold (``score>=0.518`` -> ``count_03_score``), so that runs
    compare; the threshold's value is a param."""
    stage = re.sub(r"(>=|<=|<|>)\s*[-+0-9.eE]+$", "", stage)
    return f"count_{i:02d}_{stage.replace(':', '_').replace('>=', '_ge_').replace('<', '_lt_')}"


def log_search(counts, metrics, meta, out_dir, tracking_uri, artifact_root) -> None:
    """The search's MLflow run: the resolved model version and threshold, the metrics, the count after each stage,
    the catalogues and gallery (and the scores when small enough)."""
    count_metrics = {count_metric_name(i, stage): int(n) for i, (stage, n) in enumerate(counts.iterrows("stage", "n"))}
    files = [out_dir / name for name in ("candidates.ecsv", "counts.ecsv", "metrics.json", "gallery")]
    files = [f for f in files if f.exists()]
    scores_file = out_dir / "scores.parquet"
    if scores_file.is_file() and scores_file.stat().st_size <= MAX_LOGGED_SCORES_BYTES:
        files.append(scores_file)
    params = {k: meta.get(k) for k in ("model_uri", "model_version", "threshold", "threshold_source", "qtp_lower")}
    log_run("search", {**params, "input": meta["input"]}, {**metrics, **count_metrics}, files, tracking_uri,
            artifact_root)
