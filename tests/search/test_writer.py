"""The search's per-position catalogue writer: a worker process appends the chunks, the file is exact."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from astropy.table import Table, vstack

from lenssearch.search import writer as W


def _chunks():
    rng = np.random.default_rng(5)
    parts = []
    for k, n in enumerate((7, 0, 12, 5)):
        t = Table()
        t["id"] = [f"src {k}-{i}" for i in range(n)] if n else np.zeros(0, dtype=str)
        t["ra"] = rng.uniform(150, 151, n)
        t["score"] = np.where(rng.uniform(size=n) < 0.2, np.nan, rng.uniform(size=n))
        t["status"] = np.asarray(["scored", "invalid", "outside"] * 5)[:n] if n else np.zeros(0, dtype=str)
        t["validation"] = np.asarray(["", "noise+finite", ""] * 5)[:n] if n else np.zeros(0, dtype=str)
        parts.append(t)
    return parts


def _whole(tmp_path, meta):
    parts = [p for p in _chunks() if len(p)]
    whole = vstack(parts)
    whole.meta.update(meta)
    path = tmp_path / "whole.ecsv"
    whole.write(path, format="ascii.ecsv", overwrite=True)
    return path.read_text()


@pytest.mark.parametrize("use_process", [True, False])
def test_chunks_written_by_the_worker_equal_one_write(tmp_path, use_process):
    meta = {"model_uri": "models:/lenssearch@champion", "members": ["vgg", "sc_vgg"]}
    path = tmp_path / "scores.ecsv"
    w = W.ScoresWriter(path, meta, chunk_rows=4, use_process=use_process)
    for part in _chunks():
        w.write(part)
    w.finish()
    assert path.read_text() == _whole(tmp_path, meta)
    if use_process:  # the rows were formatted in another process, not in this one
        assert w.pool is not None and W.WORKER.pids() and os.getpid() not in W.WORKER.pids()


def test_writer_recovers_when_its_worker_dies(tmp_path):
    """A worker killed after a partial append: the file is cut back to its last complete chunk and the rest is
    written in this process; the result is the same file."""
    meta = {"members": []}
    path = tmp_path / "scores.ecsv"
    parts = _chunks()
    w = W.ScoresWriter(path, meta, chunk_rows=4)
    w.write(parts[0])
    w.finish()
    complete = path.stat().st_size
    assert complete > 0 and w.size == complete
    with open(path, "a") as fh:  # what a worker killed in the middle of a chunk leaves
        fh.write("123 half a row")
    for pid in W.WORKER.pids():
        os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 30
    while not W.WORKER.broken and time.time() < deadline:
        time.sleep(0.05)
    assert W.WORKER.broken, "the killed worker was not noticed"
    for part in parts[1:]:
        w.write(part)
    w.finish()
    assert w.pool is None  # fell back to this process
    assert path.read_text() == _whole(tmp_path, meta)
    w2 = W.ScoresWriter(tmp_path / "again.ecsv", meta)  # the next search gets a new worker
    assert w2.pool is not None and not getattr(w2.pool, "_broken", False)
    for part in parts:
        w2.write(part)
    w2.finish()
    assert (tmp_path / "again.ecsv").read_text() == _whole(tmp_path, meta)


def test_abort_appends_nothing_after_it_returns(tmp_path):
    path = tmp_path / "scores.ecsv"
    w = W.ScoresWriter(path, {})
    big = Table({"id": np.arange(200_000), "score": np.linspace(0, 1, 200_000)})
    for _ in range(2):
        w.write(big)
    w.abort()
    path.unlink()
    time.sleep(1.0)
    assert not path.exists()
    assert w.pending == []
