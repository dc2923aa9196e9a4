"""Bad input to ``kb`` and ``validate`` (issue 19): an existing folder as ``--out`` is left untouched, swapped
``--mocks``/``--negatives`` and truncated cutout sets are refused naming the file; exit code 2, no traceback."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from lenssearch.cli import app


def _refused(res, *fragments):
    assert res.exit_code == 2, (res.output, res.exception)
    assert res.output.startswith("error:") and "Traceback" not in res.output, res.output
    for fragment in fragments:
        assert fragment in res.output, (fragment, res.output)


def _user_folder(path):
    path.mkdir(parents=True)
    (path / "thesis.tex").write_text("chapter 1\n")
    (path / "figures").mkdir()
    (path / "figures" / "f1.pdf").write_bytes(b"%PDF")
    return {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}


def _unchanged(before):
    return all(p.exists() and p.read_bytes() == content for p, content in before.items())


def test_kb_out_on_an_existing_folder_is_refused_and_left_untouched(inputs, tmp_path):
    """Was: exit 0, the folder replaced by the HDF5 file and its contents deleted."""
    out = tmp_path / "mine"
    before = _user_folder(out)
    res = CliRunner().invoke(app, ["kb", "--mocks", str(inputs / "mocks"), "--negatives", str(inputs / "negatives"),
                                   "--out", str(out), "--no-mlflow"])
    _refused(res, f"{out}: is a folder; expected a file path")
    assert _unchanged(before) and sorted(p.name for p in out.iterdir()) == ["figures", "thesis.tex"]


def test_validate_out_with_unrelated_files_is_refused_and_left_untouched(kb_path, tmp_path):
    """Was: the report folder replaced wholesale, the user's files in it deleted."""
    out = tmp_path / "report"
    before = _user_folder(out)
    res = CliRunner().invoke(app, ["validate", "--kb", str(kb_path), "--out", str(out)])
    _refused(res, f"{out}: the folder exists and holds files that lenssearch did not write (figures/, thesis.tex)")
    assert _unchanged(before)
    # a report folder that validate wrote itself is replaced by the next run
    fresh = tmp_path / "fresh"
    for _ in range(2):
        res = CliRunner().invoke(app, ["validate", "--kb", str(kb_path), "--out", str(fresh)])
        assert res.exit_code == 0, res.output
    assert (fresh / "summary.json").exists()


def test_validate_out_pointing_at_a_file_is_refused(kb_path, tmp_path):
    out = tmp_path / "report.txt"
    out.write_text("mine\n")
    res = CliRunner().invoke(app, ["validate", "--kb", str(kb_path), "--out", str(out)])
    _refused(res, f"{out}: is a file; expected a folder path")
    assert out.read_text() == "mine\n"


def test_swapped_mocks_and_negatives_are_refused(inputs, tmp_path):
    """Was: a KB with inverted labels, exit 0, although each cutout set records its kind."""
    out = tmp_path / "kb.h5"
    res = CliRunner().invoke(app, ["kb", "--mocks", str(inputs / "negatives"), "--negatives", str(inputs / "mocks"),
                                   "--out", str(out), "--no-mlflow"])
    _refused(res, f"{inputs / 'negatives'}: a cutout set of kind 'negative', expected 'mock' (--mocks and "
                  "--negatives swapped?)")
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, message", [
    ("metadata.ecsv", "metadata.ecsv: the cutout-set metadata looks truncated"),
    ("cutouts.h5", "cutouts.h5: not a readable HDF5 cutout file"),
])
def test_truncated_cutout_set_is_refused(inputs, tmp_path, name, message):
    cut = shutil.copytree(inputs / "negatives", tmp_path / "negatives")
    data = (cut / name).read_bytes()
    (cut / name).write_bytes(data[: len(data) * 2 // 3 - 3])
    out = tmp_path / "kb.h5"
    res = CliRunner().invoke(app, ["kb", "--mocks", str(inputs / "mocks"), "--negatives", str(cut),
                                   "--out", str(out), "--no-mlflow"])
    _refused(res, f"{cut / name.split('.')[0]}", message)
    assert not out.exists()
