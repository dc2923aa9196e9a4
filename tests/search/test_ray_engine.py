"""``search --engine ray``: a local Ray (2 CPUs, 2 actors) with the real registered model gives the local engine's
scores and catalogues; a killed Ray search leaves no process and nothing that looks complete, and a re-run
resumes from its shards."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.table import Table

from lenssearch.config import load_config
from lenssearch.search.pipeline import run_search
from lenssearch.search.sources import open_field

from .search_helpers import BANDS, PARAMS, make_field, make_wcs, positions_table, shm_in_use

pytest.importorskip("ray")

SHAPE = (400, 400)
SOURCES = [(100, 100, 0.5, 4.0), (300, 120, 0.5, 4.0), (200, 300, 0.05, 3.0), (60, 330, 0.5, 4.0),
           (330, 330, 0.02, 3.0), (10, 200, 0.5, 4.0)]


def with_search(config, **changes):
    return dataclasses.replace(config, search=dataclasses.replace(config.search, **changes))


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    path = make_field(tmp_path_factory.mktemp("field") / "f", sources=SOURCES, shape=SHAPE)
    xy = [s[:2] for s in SOURCES] * 2 + [(600, 100)]  # 13 rows: duplicates, one outside the image
    positions_table(path / "members.ecsv", xy, shape=SHAPE, ids=[f"m{i}" for i in range(len(xy))])
    ra, dec = make_wcs(SHAPE).all_pix2world([100, 300], [100, 120], 0)
    Table({"ra": ra, "dec": dec}).write(path / "planted.ecsv", format="ascii.ecsv")
    return path


def _search(cfg, field, out, registry, engine, catalogue=None):
    catalogue = catalogue or field / "members.ecsv"
    with open_field(BANDS, cfg.search.detection, field_dir=field, catalogue=catalogue) as inp:
        return run_search(cfg, inp, out, model_uri="models:/lenssearch@champion", planted=Table.read(field / "planted.ecsv"),
                          engine=engine, tracking_uri=registry, artifact_root=out.parent / "art", progress=False)


def test_ray_with_two_workers_gives_the_local_scores(field, registry, tmp_path):
    cfg = with_search(load_config(PARAMS), batch_size=4, chunk_rows=5)
    assert cfg.search.ray.workers == 2 and cfg.search.ray.address is None
    local = _search(cfg, field, tmp_path / "local", registry, "local")
    ray_ = _search(cfg, field, tmp_path / "ray", registry, "ray")
    a, b = local.scores, ray_.scores
    assert a.colnames == b.colnames and len(a) == 13
    for name in a.colnames:
        x, y = np.asarray(a[name]), np.asarray(b[name])
        if x.dtype.kind == "f":
            np.testing.assert_allclose(x, y, rtol=2**-23, atol=0, equal_nan=True, err_msg=name)  # float32 rounding
        else:
            np.testing.assert_array_equal(x, y, err_msg=name)
    assert np.isfinite(a["score"]).sum() >= 10 and list(a["status"]).count("outside") == 1
    for name in ("candidates.ecsv", "counts.ecsv"):
        assert (tmp_path / "local" / name).read_text() == (tmp_path / "ray" / name).read_text()
    assert local.metrics == ray_.metrics
    assert not (tmp_path / "ray" / ".scores-shards").exists()  # joined into scores.parquet, then removed


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _many_positions(tmp_path):
    """A catalogue of 60 positions (the six sources ten times) and a params.yaml that searches them one per shard:
    long enough for a signal to land mid-search (13 positions could end before it: Ray hands results back in
    bursts). Returns the catalogue, the positions and the params file."""
    xy = [s[:2] for s in SOURCES] * 10
    catalogue = tmp_path / "many.ecsv"
    positions_table(catalogue, xy, shape=SHAPE, ids=[f"p{i}" for i in range(len(xy))])
    params = yaml.safe_load(PARAMS.read_text())
    params["search"].update(batch_size=1, chunk_rows=1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return catalogue, xy, tmp_path / "params.yaml"


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="Linux")
def test_killed_ray_search_leaves_no_process_and_resumes(field, registry, tmp_path):
    """SIGTERM once a few shards are on disk: exit 143, no Ray process left, no scores.parquet, candidates or
    metrics, nothing new in /dev/shm; the re-run keeps the shards already written and gives the local outputs."""
    catalogue, xy, params = _many_positions(tmp_path)
    out = tmp_path / "out"
    shards = out / ".scores-shards"
    cmd = [sys.executable, "-m", "lenssearch", "search", "--engine", "ray", "--field", str(field), "--catalogue",
           str(catalogue), "--planted", str(field / "planted.ecsv"), "--out", str(out),
           "--params", str(params), "--tracking-uri", registry]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and len(list(shards.glob("part-*.parquet"))) < 2:
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
        family = _descendants(proc.pid)
        shm = shm_in_use([proc.pid, *family])
        written = {p.name: p.stat().st_mtime_ns for p in shards.glob("part-*.parquet")}
        os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 143, proc.stderr.read().decode()[-3000:]
    _assert_nothing_left(family, out, shm)
    assert 2 <= len(written) < len(xy)

    cfg = with_search(load_config(params))
    resumed = _search(cfg, field, out, registry, "ray", catalogue)
    local = _search(cfg, field, tmp_path / "local", registry, "local", catalogue)
    assert resumed.metrics == local.metrics
    assert (out / "candidates.ecsv").read_text() == (tmp_path / "local" / "candidates.ecsv").read_text()
    np.testing.assert_allclose(np.asarray(resumed.scores["score"]), np.asarray(local.scores["score"]),
                               rtol=2**-23, equal_nan=True)
    assert not shards.exists()


def _assert_nothing_left(family, out, shm):
    """After a stopped search: no Ray process (waiting up to 60 s for them to exit), no output that looks complete,
    no shared-memory segment it held."""
    deadline = time.time() + 60
    while time.time() < deadline and any(_alive(p) for p in family):
        time.sleep(0.2)
    assert family and not [p for p in family if _alive(p)], "Ray processes outlived the search"
    assert not {p.name for p in out.iterdir()} & {"scores.parquet", "candidates.ecsv", "counts.ecsv", "metrics.json",
                                                   "gallery"}
    assert not [p for p in shm if Path(p).exists()], shm


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="Linux")
def test_ctrl_c_on_a_ray_search_leaves_no_process(field, registry, tmp_path):
    """Ctrl-C in a terminal (SIGINT to the search's process group, Ray's processes included) once a shard is on
    disk: exit 130 without a traceback, no Ray process left, nothing that looks complete, nothing new in /dev/shm."""
    catalogue, _, params = _many_positions(tmp_path)
    out = tmp_path / "out"
    shards = out / ".scores-shards"
    cmd = [sys.executable, "-c", "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
           "sys.argv[0] = 'lenssearch'; from lenssearch.cli import main; main()",  # SIGINT as a terminal job has it
           "search", "--engine", "ray", "--field", str(field), "--catalogue", str(catalogue),
           "--out", str(out), "--params", str(params), "--tracking-uri", registry]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and not list(shards.glob("part-*.parquet")):
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
        family = _descendants(proc.pid)
        shm = shm_in_use([proc.pid, *family])
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    err = err.decode()
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    _assert_nothing_left(family, out, shm)
