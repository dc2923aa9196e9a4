"""Fixtures of the inspection tests: a synthetic field with candidates, inspections, a served app, a browser."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from lenssearch.inspect import store
from lenssearch.inspect.synthetic import build_synthetic_inspection_inputs

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="session")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """The synthetic field (three bands, WCS, members with redshifts), candidates and calibration systems."""
    return build_synthetic_inspection_inputs(tmp_path_factory.mktemp("inputs"), n_candidates=12, seed=3)


def write_many_candidates(path: Path, field: Path, n: int, seed: int = 0) -> Path:
    """``n`` candidates at random positions of the synthetic field, in the columns of the search."""
    import astropy.units as u
    from astropy.io import fits
    from astropy.table import Table
    from astropy.wcs import WCS

    header = fits.getheader(field / "image_F814W.fits")
    wcs = WCS(header)
    rng = np.random.default_rng(seed)
    x = rng.uniform(50, header["NAXIS1"] - 50, n)
    y = rng.uniform(50, header["NAXIS2"] - 50, n)
    ra, dec = wcs.all_pix2world(x, y, 0)
    t = Table({"id": [f"c{i:06d}" for i in range(n)], "ra": ra * u.deg, "dec": dec * u.deg,
               "score": rng.uniform(0.5, 1, n), "kept": np.ones(n, bool)})
    t.write(path, format="ascii.ecsv", overwrite=True)
    return path


@pytest.fixture
def inspection(tmp_path, inputs):
    """An inspection of the 12 synthetic candidates with 6 calibration systems and graders alice, bob, carol."""
    folder = tmp_path / "insp"
    organiser = store.init_inspection(folder, inputs["candidates"], inputs["field"])
    store.add_calibration_systems(folder, inputs["calibration"])
    tokens = {name: store.add_grader(folder, name) for name in ("alice", "bob", "carol")}
    tokens["organiser"] = organiser
    return folder, tokens


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``lenssearch inspect serve`` in a subprocess on 127.0.0.1, stopped by its PID."""

    def __init__(self, folder: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.log = open(Path(folder) / "server.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lenssearch", "inspect", "serve", str(folder), "--port", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(self.url + "/nothing", timeout=2)
            except urllib.error.HTTPError:
                break  # the server answers (404)
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the inspection server did not start: {(Path(folder) / 'server.log').read_text()}")
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, 9)
                self.proc.wait()
        self.log.close()


@pytest.fixture
def serve():
    servers = []

    def start(folder):
        server = Server(folder)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
