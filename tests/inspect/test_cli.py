"""``lenssearch inspect ...``: the organiser's verbs, bad input as one line and exit 2, export with MLflow."""

import os
import socket
import subprocess
import sys

from astropy.table import Table

from .conftest import SRC


def _subprocess(*args, cwd=None):
    """The command line in its own process: exit status and stderr exactly as a user sees them."""
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "lenssearch", "inspect", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=120)


def _run(*args, cwd=None):
    """The same command line in this process (typer's runner: the imports are paid once)."""
    from typer.testing import CliRunner

    from lenssearch.cli import app

    previous = os.getcwd()
    os.chdir(cwd or previous)
    try:
        result = CliRunner().invoke(app, ["inspect", *map(str, args)], catch_exceptions=False)
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def test_organiser_verbs_and_export(tmp_path, inputs):
    folder = tmp_path / "insp"
    r = _run("init", folder, "--candidates", inputs["candidates"], "--field", inputs["field"])
    assert r.returncode == 0, r.stderr
    assert "organiser link: /login/" in r.stdout
    r = _run("add-grader", folder, "alice")
    assert r.returncode == 0 and r.stdout.startswith("alice /login/")
    assert _run("add-grader", folder, "bob").returncode == 0
    assert _run("add-calibration", folder, "--truth", inputs["calibration"]).returncode == 0
    assert _run("add-round", folder, "bin", "--kind", "binary").returncode == 0
    r = _run("assign", folder, "bin", "--per-candidate", "2", "--seed", "4")
    assert r.returncode == 0 and r.stdout.split() == ["alice=12", "bob=12"]
    # the MLflow summary is tested in test_store; here the flag that turns it off
    r = _run("export", folder, "--out", tmp_path / "graded.ecsv", "--no-mlflow", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "n_candidates=12" in r.stdout
    table = Table.read(tmp_path / "graded.ecsv", format="ascii.ecsv")
    assert len(table) == 18 and {"binary_alice", "grade_bob", "G", "forwarded"} <= set(table.colnames)
    assert not (tmp_path / "mlflow.db").exists()


def test_bad_input_is_one_line_and_exit_2(tmp_path, inputs):
    cases = [
        (("init", tmp_path / "x", "--candidates", tmp_path / "none.ecsv", "--field", inputs["field"]), "none.ecsv: no such catalogue"),
        (("add-grader", tmp_path / "nowhere", "alice"), "not an inspection folder"),
        (("serve", tmp_path / "nowhere"), "not an inspection folder"),
        (("demo", "--out", tmp_path / "d", "--no-serve"), "give --candidates and --field"),
    ]
    folder = tmp_path / "insp"
    _run("init", folder, "--candidates", inputs["candidates"], "--field", inputs["field"])
    with socket.socket() as busy:  # a port that is taken
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        cases.append((("serve", folder, "--port", busy.getsockname()[1]), "cannot serve on 127.0.0.1:"))
        cases.append((("assign", folder, "nothing"), "no round 'nothing'"))
        cases.append((("add-round", folder, "r", "--kind", "final"), "round kind 'final' is not one of"))
        for k, (args, message) in enumerate(cases):
            r = _subprocess(*args) if k == 0 else _run(*args)
            assert r.returncode == 2, (args, r.stdout, r.stderr)
            assert message in r.stderr and "Traceback" not in r.stderr, r.stderr
            assert r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1


def test_demo_sets_up_two_graders(tmp_path):
    r = _run("demo", "--synthetic", "--out", tmp_path / "demo", "--no-serve")
    assert r.returncode == 0, r.stderr
    names = [line.split()[0] for line in r.stdout.splitlines()]
    assert names == ["organiser", "alice", "bob"]
    assert oct((tmp_path / "demo" / "links.txt").stat().st_mode & 0o777) == "0o600"
    again = _run("demo", "--synthetic", "--out", tmp_path / "demo", "--no-serve")  # reuses the inspection
    assert again.returncode == 0 and again.stdout == r.stdout


def test_render_fills_the_cache(tmp_path, inputs):
    from .conftest import write_many_candidates

    few = write_many_candidates(tmp_path / "few.ecsv", inputs["field"], 2)
    folder = tmp_path / "insp"
    assert _run("init", folder, "--candidates", few, "--field", inputs["field"]).returncode == 0
    r = _run("render", folder)
    assert r.returncode == 0 and "rendered 2 candidates" in r.stdout
    for cid in (1, 2):
        names = sorted(p.name for p in (folder / "cache" / str(cid)).iterdir())
        assert ".complete" in names and "hist.png" in names and len(names) == 1 + 9 + 3 + 1
