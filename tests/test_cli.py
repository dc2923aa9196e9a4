"""The command line as a user meets it: help, version, option names, and what a log file receives."""

from __future__ import annotations

import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lenssearch import __version__
from lenssearch.cli import Network, app

REPO = Path(__file__).resolve().parents[1]
VERBS = ["field", "simulate", "negatives", "kb", "validate", "train", "evaluate", "committee", "tune", "promote",
         "search-field", "search", "known-lenses", "hpsearch", "config", "lenstool-check", "independent simulate",
         "independent score", "inspect export"]


def _help(verb: str) -> str:
    result = CliRunner().invoke(app, [*verb.split(), "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    return result.output


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"lenssearch {__version__}"


@pytest.mark.parametrize("verb", VERBS)
def test_help_has_no_placeholder_on_flags(verb):
    text = _help(verb)
    assert "<bool>" not in text
    assert "--help" in text and "Show this message and exit." in text


def test_train_lists_its_networks():
    from lenssearch.models import CLASSIFIERS

    assert set(typing.get_args(Network)) == set(CLASSIFIERS)
    text = _help("train")
    assert "<vgg|sc_vgg|resnet|f435w|f606w|f814w>" in text
    result = CliRunner().invoke(app, ["train", "alexnet", "--kb", "x.h5", "--models", "m", "--reports", "r"])
    assert result.exit_code == 2 and "alexnet" in result.output


def test_options_are_named_the_same_way_across_verbs():
    """One name per meaning: --metrics is the headline metrics file, --reports the reports folder, --mlflow/
    --no-mlflow whether to record runs; the old spellings are not shown."""
    stage_verbs = ["field", "simulate", "negatives", "kb", "validate", "train", "evaluate", "committee", "tune",
                   "promote", "search", "independent score"]
    for verb in stage_verbs:
        text = _help(verb)
        assert "--metrics <path>" in text and "Headline metrics" in text, verb
        assert "--report " not in text and "--track/" not in text and "--track " not in text, verb
    for verb in ("kb", "evaluate", "committee", "tune", "independent score", "inspect export"):
        assert "--mlflow / --no-mlflow" in _help(verb), verb
    for verb in ("field", "simulate", "negatives", "kb", "train"):
        assert "--reports <path>" in _help(verb), verb


def test_a_log_file_gets_one_line_per_progress_update_and_no_tensorflow_noise(tmp_path):
    """stderr to a file, as `make run > log 2>&1`: tqdm's carriage returns and cursor escapes become lines, repeats
    are dropped, and the C++ lines of TensorFlow/absl (which bypass Python) are gone; other messages stay."""
    script = r"""
import os, sys, time
from lenssearch._runtime import filter_stderr
assert filter_stderr()
from tqdm import tqdm
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
os.write(2, b"I0000 00:00:1796474564.702686   16126 port.cc:153] oneDNN custom operations are on.\n")
for i in tqdm(range(3), desc="outer", mininterval=0):
    for j in tqdm(range(2), desc="inner", leave=False, mininterval=0):
        pass
    os.write(2, b"E0000 00:00:1796474577.343408   16126 meta_optimizer.cc:967] remapper failed: INVALID_ARGUMENT\n")
print("a real warning", file=sys.stderr)
"""
    log = tmp_path / "log"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    env.pop("LENSSEARCH_RAW_STDERR", None)
    with open(log, "wb") as handle:
        proc = subprocess.run([sys.executable, "-c", script], stderr=handle, env=env, timeout=120)
    assert proc.returncode == 0
    text = log.read_text()
    lines = text.splitlines()
    assert "\r" not in text and "\x1b" not in text
    assert not any(("0000 00:00" in line) or ("absl" in line) for line in lines), lines
    assert "a real warning" in lines
    outer = [line for line in lines if line.startswith("outer")]
    assert outer[-1].startswith("outer: 100%") and len(outer) == len(set(outer))  # one line per update
    assert all(a != b for a, b in zip(lines, lines[1:]))  # no line repeated (tqdm redraws on close)
    assert sum(line.startswith("inner") for line in lines) == 3 * 3  # 3 updates per inner bar: nothing lost


def test_a_terminal_or_test_runner_stream_is_left_alone():
    from lenssearch._runtime import filter_stderr

    assert filter_stderr() is False  # pytest replaced sys.stderr: never redirect file descriptor 2 here
