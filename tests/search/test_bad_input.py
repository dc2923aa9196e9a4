"""Bad input to ``search`` never hangs, never lies, never loses data (issue 19): each case is one clear line
naming the file and what is wrong, exit code 2, no traceback, nothing written.

Run through the command line (typer's runner, in process) with real FITS/ECSV/HDF5 files and the tmp MLflow
registry of ``conftest.py``, so the cases hold whatever the search pipeline behind the verb looks like.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from astropy.io import fits

from .search_helpers import BANDS, NOISE, PARAMS, gaussian, make_field, positions_table, shm_in_use, write_slow_search_script

SHAPE = (300, 300)
SOURCES = [(100, 100, 0.5, 4.0), (200, 150, 0.5, 4.0), (150, 220, 0.05, 3.0)]
COMMITTEE = "models:/lenssearch-committee@champion"  # its signature: N x 128 x 128 x 3


@pytest.fixture(scope="module")
def good_field(tmp_path_factory):
    """A small field whose images carry their filter as HST does (FILTER1/FILTER2 with a clear wheel, PHOTPLAM)."""
    path = make_field(tmp_path_factory.mktemp("field") / "f", sources=SOURCES, shape=SHAPE)
    pivots = {"F435W": 4329.0, "F606W": 5922.0, "F814W": 8045.0}
    for band in BANDS:
        with fits.open(path / f"image_{band}.fits", mode="update") as hdul:
            hdul[0].header["FILTER1"] = band
            hdul[0].header["FILTER2"] = "CLEAR2L"
            hdul[0].header["PHOTPLAM"] = pivots[band]
    positions_table(path / "members.ecsv", [s[:2] for s in SOURCES] * 100, shape=SHAPE,
                    ids=[f"m{i}" for i in range(300)])
    return path


def _copy(field: Path, dest: Path) -> Path:
    shutil.copytree(field, dest)
    return dest


def _truncate(path: Path, keep: float = 0.6) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _cli(args, registry=None):
    from typer.testing import CliRunner

    from lenssearch.cli import app

    extra = ["--params", str(PARAMS)] if "--params" not in args else []
    if registry is not None:
        extra += ["--tracking-uri", registry]
    return CliRunner().invoke(app, [str(a) for a in [*args, *extra]])


def _assert_refused(result, *fragments, out: Path | None = None):
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output and result.output.startswith("error:"), result.output
    for fragment in fragments:
        assert fragment in result.output, (fragment, result.output)
    if out is not None:
        assert not out.exists() or not any(p.name != "keep.txt" for p in out.iterdir())


# --------------------------------------------------------------------------------- case 3: truncated ECSV
def test_truncated_catalogue_is_refused(good_field, tmp_path, registry):
    """A members.ecsv cut mid-row was scored (149 of 300 rows, the last with a wrong Dec) with exit 0."""
    cut = tmp_path / "members.ecsv"
    text = (good_field / "members.ecsv").read_text()
    cut.write_text(text[: len(text) * 2 // 3 - 5])  # mid-row, mid-number
    out = tmp_path / "out"
    result = _cli(["search", "--field", good_field, "--catalogue", cut, "--out", out], registry)
    _assert_refused(result, f"{cut}: the catalogue looks truncated: it ends in the middle of line", out=out)


def test_truncated_star_catalogue_is_refused(good_field, tmp_path, registry):
    stars = tmp_path / "stars.ecsv"
    stars.write_text("# %ECSV 1.0\n# ---\n# datatype:\n# - {name: ra, datatype: float64}\n"
                     "# - {name: dec, datatype: float64}\n# - {name: mag, datatype: float64}\nra dec mag\n"
                     "150.0 2.2 17.0\n150.001 2.2")
    out = tmp_path / "out"
    result = _cli(["search", "--field", good_field, "--catalogue", good_field / "members.ecsv", "--stars", stars,
                   "--out", out], registry)
    _assert_refused(result, f"{stars}: the star catalogue looks truncated", out=out)


# --------------------------------------------------------------------------------- case 4: truncated FITS
@pytest.mark.parametrize("how", ["field", "image"])
def test_truncated_field_image_is_refused(good_field, tmp_path, registry, how):
    """Was: TypeError: buffer is too small (a traceback), the file named only in an astropy warning."""
    field = _copy(good_field, tmp_path / "f")
    cut = _truncate(field / "image_F606W.fits")
    out = tmp_path / "out"
    where = (["--field", field] if how == "field"
             else [x for b in BANDS for x in ("--image", f"{b}={field / f'image_{b}.fits'}")])
    result = _cli(["search", *where, "--catalogue", field / "members.ecsv", "--out", out], registry)
    _assert_refused(result, f"{cut}: the FITS image of band F606W is truncated: HDU 0", out=out)


def _fits_stack(path: Path, n: int = 8, size: int = 128) -> Path:
    rng = np.random.default_rng(3)
    cube = (rng.normal(0, 1, (n, size, size, 3)) * np.asarray(NOISE)).astype(np.float32)
    cube[::2, ..., 2] += gaussian((size, size), size // 2, size // 2, 0.5, 4.0)
    fits.PrimaryHDU(cube).writeto(path)
    return path


def test_truncated_cutout_stack_is_refused(tmp_path, registry):
    stack = _truncate(_fits_stack(tmp_path / "stack.fits"))
    out = tmp_path / "out"
    result = _cli(["search", "--stack", stack, "--out", out], registry)
    _assert_refused(result, f"{stack}: the cutout stack (FITS) is truncated", out=out)


def test_truncated_hdf5_stack_is_refused(tmp_path, registry):
    stack = tmp_path / "stack.h5"
    with h5py.File(stack, "w") as h5:
        h5["cutouts"] = np.zeros((40, 128, 128, 3), np.float32) + 1.0
    _truncate(stack, 0.5)
    out = tmp_path / "out"
    result = _cli(["search", "--stack", stack, "--out", out], registry)
    _assert_refused(result, f"{stack}: not a readable HDF5 file", out=out)


# --------------------------------------------------------------------------------- case 5: cutout size
@pytest.mark.parametrize("size", [64, 256])
def test_stack_of_the_wrong_cutout_size_is_refused(tmp_path, registry, size):
    """Was: a failure inside MLflow's schema check after dumping a ~19 kB array, the file not named."""
    stack = _fits_stack(tmp_path / "stack.fits", n=4, size=size)
    out = tmp_path / "out"
    result = _cli(["search", "--stack", stack, "--model", COMMITTEE, "--out", out], registry)
    _assert_refused(result, f"{stack} (cutout stack): cutouts of {size}x{size} pixels x 3 bands, but the model "
                            f"{COMMITTEE} takes cutouts of 128x128 pixels x 3 bands", out=out)
    assert len(result.output) < 600


def test_cutout_pixels_parameter_of_the_wrong_size_is_refused(good_field, tmp_path, registry):
    data = yaml.safe_load(PARAMS.read_text())
    data["search"]["cutout_pixels"] = 64
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    result = _cli(["search", "--field", good_field, "--catalogue", good_field / "members.ecsv", "--model",
                   COMMITTEE, "--out", out, "--params", params], registry)
    _assert_refused(result, "search.cutout_pixels = 64: cutouts of 64x64 pixels x 3 bands, but the model", out=out)


# --------------------------------------------------------------------------------- case 6: band order
def test_swapped_band_images_are_refused_unless_overridden(good_field, tmp_path, registry):
    """F435W=<F814W file> F814W=<F435W file> was searched silently (212 instead of 130 above threshold)."""
    images = {b: good_field / f"image_{b}.fits" for b in BANDS}
    swapped = ["--image", f"F435W={images['F814W']}", "--image", f"F606W={images['F606W']}",
               "--image", f"F814W={images['F435W']}"]
    out = tmp_path / "out"
    result = _cli(["search", *swapped, "--catalogue", good_field / "members.ecsv", "--out", out], registry)
    _assert_refused(result, f"{images['F814W']}: given as band F435W, but its header names filter F814W", out=out)
    # PHOTPLAM alone (no filter names) tells the band too
    field = _copy(good_field, tmp_path / "f")
    for band in BANDS:
        with fits.open(field / f"image_{band}.fits", mode="update") as hdul:
            del hdul[0].header["FILTER1"]
    (field / "image_F435W.fits").rename(field / "tmp.fits")
    (field / "image_F814W.fits").rename(field / "image_F435W.fits")
    (field / "tmp.fits").rename(field / "image_F814W.fits")
    result = _cli(["search", "--field", field, "--catalogue", field / "members.ecsv", "--out", out], registry)
    _assert_refused(result, f"{field / 'image_F435W.fits'}: given as band F435W, but its pivot wavelength "
                            "PHOTPLAM = 8045 A is that of F814W", out=out)
    # the documented override searches the images in the order given
    result = _cli(["search", *swapped, "--catalogue", good_field / "members.ecsv", "--out", out,
                   "--ignore-band-keywords"], registry)
    assert result.exit_code == 0, result.output
    assert (out / "scores.parquet").exists()


# --------------------------------------------------------------------------------- case 9: --out
def test_out_pointing_at_a_file_is_refused(good_field, tmp_path, registry):
    out = tmp_path / "results.txt"
    out.write_text("my results\n")
    result = _cli(["search", "--field", good_field, "--catalogue", good_field / "members.ecsv", "--out", out],
                  registry)
    _assert_refused(result, f"{out}: is a file; expected a folder path")
    assert out.read_text() == "my results\n"


def test_search_into_a_folder_with_user_files_keeps_them(good_field, tmp_path, registry):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine\n")
    (out / "gallery").mkdir()
    (out / "gallery" / "my_figure.png").write_bytes(b"png")
    result = _cli(["search", "--field", good_field, "--catalogue", good_field / "members.ecsv", "--out", out],
                  registry)
    _assert_refused(result, f"{out / 'gallery'}: the folder exists and holds files that lenssearch did not write "
                            "(my_figure.png)")
    assert (out / "keep.txt").read_text() == "mine\n" and (out / "gallery" / "my_figure.png").read_bytes() == b"png"
    shutil.rmtree(out / "gallery")
    result = _cli(["search", "--field", good_field, "--catalogue", good_field / "members.ecsv", "--out", out],
                  registry)
    assert result.exit_code == 0, result.output
    assert (out / "keep.txt").read_text() == "mine\n"
    assert (out / "candidates.ecsv").exists() and (out / "gallery" / "index.html").exists()
    # a second search into the same folder replaces its own outputs (the gallery included)
    result = _cli(["search", "--field", good_field, "--catalogue", good_field / "members.ecsv", "--out", out],
                  registry)
    assert result.exit_code == 0, result.output
    assert (out / "keep.txt").read_text() == "mine\n"


# --------------------------------------------------------------------------------- case 9: interrupted searches



@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process groups and /proc (Linux)")
def test_ctrl_c_leaves_no_traceback_and_no_leaked_shared_memory(good_field, tmp_path):
    """Ctrl-C in a terminal sends SIGINT to the search's process group: it unwinds without a traceback, leaves
    nothing in its output folder and nothing in /dev/shm."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = str(Path(__file__).resolve().parents[2])
    out = tmp_path / "out"
    script = tmp_path / "interrupted.py"
    # one cutout per batch and two per chunk: ~0.6 s per chunk, so that most of the search is still to run when
    # the first chunk is on disk and the test interrupts it
    write_slow_search_script(script, good_field, out, sleep_s=0.3, batch_size=1, chunk_rows=2)
    proc = subprocess.Popen([sys.executable, str(script)], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # its own process group, as a shell job
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            temps = list(out.glob(".scores.parquet.*.tmp")) if out.exists() else []
            if temps and temps[0].stat().st_size > 0:  # the first chunk is being written: the search runs
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        shm = shm_in_use([proc.pid])
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    err = err.decode()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "leaked" not in err and "resource_tracker" not in err, err[-3000:]
    assert not out.exists() or not list(out.iterdir())
    assert not [p for p in shm if Path(p).exists()], shm


def test_temporary_of_a_killed_search_is_removed_by_the_next_search(good_field, tmp_path, registry):
    """A SIGKILLed search leaves its hidden temporary ``.scores.parquet.<host>-<pid>.<random>.tmp``; the next search
    into the same folder removes it (the process is gone), and never one of a search that still runs."""
    import subprocess
    import sys

    out = tmp_path / "out"
    out.mkdir()
    code = ("import os, signal\nfrom lenssearch.io import atomic_path\n"
            f"with atomic_path({str(out / 'scores.parquet')!r}) as tmp:\n"
            "    tmp.write_text('')\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    subprocess.run([sys.executable, "-c", code], env={**__import__("os").environ,
                                                      "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")})
    stale = list(out.glob(".scores.parquet.*.tmp"))
    assert len(stale) == 1 and stale[0].stat().st_size == 0
    result = _cli(["search", "--field", good_field, "--catalogue", good_field / "members.ecsv", "--out", out],
                  registry)
    assert result.exit_code == 0, result.output
    assert not stale[0].exists()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------------- --engine ray without Ray
def test_engine_ray_without_ray_is_one_line(good_field, tmp_path, registry, monkeypatch):
    """Where Ray cannot be imported, ``--engine ray`` is refused in one line (exit 2, no traceback), before the
    model is loaded or anything is written."""
    import sys

    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    out = tmp_path / "out"
    result = _cli(["search", "--engine", "ray", "--field", good_field, "--catalogue", good_field / "members.ecsv",
                   "--out", out], registry)
    _assert_refused(result, "--engine ray needs Ray Data", "pip install 'ray[data]'", out=out)
    assert len(result.output.strip().splitlines()) == 1, result.output
