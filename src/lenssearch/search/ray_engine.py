"""Steps 1-4 of a search on Ray Data: ``lenssearch search --engine ray`` (survey scale).

The positions still to score become a Ray dataset (``row``, pixel position, on image); ``map_batches`` runs
:func:`lenssearch.search.batch.process_batch`, the local engine's per-batch function, in an actor pool: each actor
(:class:`BatchScorer`) loads the model once and opens the field's band images memory-mapped (or the stack). The
driver receives the results in catalogue order (a few numbers per position), closes each chunk of
``search.chunk_rows`` rows as the local engine does (great-expectations, truth: :func:`.results.finish_chunk`) and
writes it as a Parquet shard, atomically, into ``<out>/.scores-shards/``. A killed run resumes from the shards
already written (the shards of another model, threshold, input or chunking are discarded); when every shard is
there they are joined into ``scores.parquet``, and the shards are removed once the search has succeeded.

Ray runs locally (``search.ray.num_cpus``, no dashboard, no usage statistics, nothing downloaded) unless
``search.ray.address`` names a cluster. On a cluster the workers must reach the field's files and the MLflow
registry at the same paths.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lenssearch.search.batch import BatchSpec, new_buffer, process_batch
from lenssearch.search.results import ScoresFile, Truth, finish_chunk, position_chunk

#: Folder of a Ray search's shards inside its output folder (hidden: nothing in it looks like a finished output).
SHARDS = ".scores-shards"

#: Environment of the local Ray and its workers: offline, quiet.
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true", "TF_CPP_MIN_LOG_LEVEL": "2",
           "GX_ANALYTICS_ENABLED": "false"}


def require_ray() -> None:
    """Refuse ``--engine ray`` in one line, before anything is loaded or written, where Ray Data cannot be imported."""
    try:
        import ray.data  # noqa: F401
    except ImportError as exc:
        from lenssearch.search.inputs import SearchInputError

        raise SearchInputError(f"--engine ray needs Ray Data, which cannot be imported here ({exc}); install it "
                               "with pip install 'ray[data]' (the version in requirements.lock), or use --engine "
                               "local") from None


def shard_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / SHARDS


def shard_path(folder: Path, start: int) -> Path:
    return folder / f"part-{start:012d}.parquet"


class BatchScorer:
    """A Ray actor: the model and the open pixels, loaded once; each call is one batch of rows."""

    def __init__(self, model_uri: str, tracking_uri: str | None, pixels: tuple, spec: BatchSpec):
        from lenssearch._runtime import apply_offline_env
        from lenssearch.search.scoring import load_scorer

        apply_offline_env()
        self.scorer = load_scorer(model_uri, tracking_uri=tracking_uri)
        self.pixels = open_pixels(pixels)
        self.spec = spec
        self.buffer = None  # the batch buffer, reused from one call to the next

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.buffer is None:
            self.buffer = new_buffer(self.spec, len(self.spec.ctx.bands))
        out = process_batch(batch, self.pixels, self.scorer, self.spec, self.buffer)
        out["row"] = np.asarray(batch["row"], np.int64)
        return {k: (v.astype(str) if v.dtype == object else v) for k, v in out.items()}


def pixels_of(inp) -> tuple:
    """How a worker opens the input's pixels (paths: the workers open the files themselves)."""
    if inp.images is not None:
        return ("field", {band: str(path) for band, path in inp.images.paths.items()})
    return ("stack", str(inp.stack.path), inp.stack.n_bands)


def open_pixels(pixels: tuple):
    from lenssearch.search.inputs import CutoutStack, FieldImages

    if pixels[0] == "field":
        return FieldImages({band: Path(p) for band, p in pixels[1].items()}, check_bands=False)  # checked already
    return CutoutStack(pixels[1], pixels[2])


def start_ray(rcfg) -> bool:
    """Connect to ``search.ray.address``, or start a local Ray; True if this call started it."""
    import ray

    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    if ray.is_initialized():
        return False
    runtime_env = {"env_vars": {**RAY_ENV, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}}
    # Ray's core worker installs C-level handlers (SIGTERM aborts the driver): give the verb's back, so that
    # SIGTERM and Ctrl-C unwind (ray.shutdown stops the local Ray, temporary files are removed)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    if rcfg.address:
        ray.init(address=rcfg.address, runtime_env=runtime_env, log_to_driver=False)
    else:
        ray.init(num_cpus=rcfg.num_cpus, include_dashboard=False, object_store_memory=rcfg.object_store_mb << 20,
                 runtime_env=runtime_env, log_to_driver=False, configure_logging=False)
    if threading.current_thread() is threading.main_thread():
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, handler)
    return True


def join_threads(idents: set[int], timeout_s: float = 10.0) -> None:
    """Wait (``timeout_s`` in all) for the driver's threads that Ray Data started (not those in ``idents``): a
    thread that reaches Ray after ``ray.shutdown`` ends the whole process with status 1 ("The core worker has
    already been shutdown"), so an interrupted search lost its exit status."""
    deadline = time.monotonic() + timeout_s
    for t in threading.enumerate():
        if t.ident not in idents and t is not threading.current_thread():
            t.join(max(deadline - time.monotonic(), 0.0))


def fingerprint(inp, model_uri: str, spec: BatchSpec, cfg) -> dict:
    """What the shards depend on: a resumed run uses the shards of the same search only."""
    return {"input": inp.description, "n": len(inp.positions), "model_uri": model_uri,
            "measure_above": spec.measure_above, "batch_size": spec.batch_size, "chunk_rows": cfg.chunk_rows,
            "great_expectations": cfg.great_expectations}


def done_chunks(folder: Path, run: dict) -> set[int]:
    """The chunks (first rows) whose shards a previous run of the same search wrote; other shards are removed."""
    meta = folder / "run.json"
    if folder.exists() and (not meta.exists() or json.loads(meta.read_text()) != run):
        shutil.rmtree(folder)  # ours (hidden, with run.json): another search's shards
    folder.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps(run, sort_keys=True))
    for tmp in folder.glob("*.tmp"):
        tmp.unlink()  # a shard cut short by a kill
    return {int(p.stem.split("-")[1]) for p in folder.glob("part-*.parquet")}


def score_on_ray(inp, model_uri: str, tracking_uri: str | None, config, spec: BatchSpec, truth: Truth,
                 scores_path: Path, meta: dict, out_dir: Path, progress: bool = True, on_chunk=None) -> None:
    """Steps 1-4 on Ray Data into ``scores_path`` (see the module's docstring)."""
    import ray
    from tqdm import tqdm

    cfg, rcfg = config.search, config.search.ray
    n = len(inp.positions)
    folder = shard_dir(out_dir)
    starts = list(range(0, n, cfg.chunk_rows))
    done = done_chunks(folder, fingerprint(inp, str(model_uri), spec, cfg))
    pending = [s for s in starts if s not in done]
    started = start_ray(rcfg) if pending else False
    with contextlib.ExitStack() as stack:
        if started:
            stack.callback(ray.shutdown)
            stack.callback(join_threads, {t.ident for t in threading.enumerate()})
        if pending:
            ray.data.DataContext.get_current().execution_options.preserve_order = True
            blocks = []
            for start in pending:
                _, rows = position_chunk(inp, start, min(start + cfg.chunk_rows, n))
                blocks.append(pa.table({k: rows[k] for k in ("row", "x_pix", "y_pix", "on_image")}))
            ds = ray.data.from_arrow(blocks).map_batches(
                BatchScorer, batch_size=spec.batch_size, batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=rcfg.workers),
                num_cpus=rcfg.cpus_per_worker, num_gpus=rcfg.gpus_per_worker or None,
                fn_constructor_kwargs={"model_uri": str(model_uri), "tracking_uri": tracking_uri,
                                       "pixels": pixels_of(inp), "spec": spec})
            buffered, k = [], 0
            with tqdm(total=n, initial=n - sum(min(s + cfg.chunk_rows, n) - s for s in pending), desc="search",
                      unit="row", disable=not progress, mininterval=2.0) as bar:
                results = iter(ds.iter_batches(batch_size=None, batch_format="numpy"))
                stack.callback(results.close)  # on an interrupt too: Ray Data's executor stops before ray.shutdown
                for batch in results:
                    buffered.append(batch)
                    bar.update(len(batch["row"]))
                    while k < len(pending) and buffered_rows(buffered) >= min(pending[k] + cfg.chunk_rows, n) - pending[k]:
                        start = pending[k]
                        chunk, buffered = split(buffered, min(start + cfg.chunk_rows, n) - start)
                        write_shard(inp, start, chunk, spec, truth, cfg, folder)
                        k += 1
                        if on_chunk is not None:
                            on_chunk(start + len(chunk["row"]))
            if k != len(pending):  # pragma: no cover - a bookkeeping error, not an input error
                raise RuntimeError(f"ray search: {len(pending) - k} chunk(s) without results")
    out = ScoresFile(scores_path, meta)
    try:
        for start in starts:
            out.append(pq.read_table(shard_path(folder, start)))
    finally:
        out.close()


def buffered_rows(parts: list[dict]) -> int:
    return sum(len(p["row"]) for p in parts)


def split(parts: list[dict], k: int) -> tuple[dict, list[dict]]:
    """The first ``k`` rows of the buffered result batches, and the rest."""
    whole = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    rest = {name: v[k:] for name, v in whole.items()}
    return {name: v[:k] for name, v in whole.items()}, ([rest] if len(rest["row"]) else [])


def write_shard(inp, start: int, results: dict, spec: BatchSpec, truth: Truth, cfg, folder: Path) -> None:
    """Close one chunk as the local engine does and write it as a shard (renamed into place when complete)."""
    pos, rows = position_chunk(inp, start, start + len(results["row"]))
    if not np.array_equal(rows["row"], results["row"]):  # pragma: no cover - order is preserved by Ray Data
        raise RuntimeError(f"ray search: rows of chunk {start} out of order")
    results = {k: (v.astype(object) if v.dtype.kind == "U" else v) for k, v in results.items() if k != "row"}
    table = finish_chunk(pos, rows, results, spec.ctx, truth, cfg.great_expectations)
    path = shard_path(folder, start)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def remove_shards(out_dir: Path) -> None:
    """After a successful search: its shards are joined in ``scores.parquet``."""
    shutil.rmtree(shard_dir(out_dir), ignore_errors=True)
