"""Atomic outputs never remove what lenssearch did not write (issue 19, case 1).

A property-style test: every kind of output (file, folder, nested) over every kind of target (missing, file,
empty folder, folder with user files, a previous output, a previous output with a user file added, a symbolic
link, a path under a file) either succeeds or raises ``OutputPathError``, and in every case each pre-existing
user file is still there with its content.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lenssearch.io import MANIFEST, OutputPathError, atomic_path, check_output_path, foreign_entries


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` (not following links) -> its bytes."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if not p.is_symlink():
                out[str(p.relative_to(root))] = p.read_bytes()
    return out


def _write_file(tmp: Path) -> None:
    tmp.write_text("new output\n")


def _write_folder(tmp: Path) -> None:
    tmp.mkdir()
    (tmp / "summary.json").write_text("{}\n")
    (tmp / "sub").mkdir()
    (tmp / "sub" / "page.html").write_text("<html/>\n")


WRITERS = {"file": _write_file, "dir": _write_folder}


def _target_missing(t: Path) -> None:
    pass


def _target_file(t: Path) -> None:
    t.write_text("user file\n")


def _target_empty_folder(t: Path) -> None:
    t.mkdir()


def _target_user_folder(t: Path) -> None:
    t.mkdir()
    (t / "notes.txt").write_text("my notes\n")
    (t / "summary.json").write_text("user's own summary\n")
    (t / "deep").mkdir()
    (t / "deep" / "thesis.tex").write_text("chapter 1\n")


def _target_previous_output(t: Path) -> None:
    with atomic_path(t) as tmp:
        _write_folder(tmp)


def _target_previous_output_plus_user_file(t: Path) -> None:
    _target_previous_output(t)
    (t / "sub" / "mine.txt").write_text("added by the user\n")


def _target_link_to_user_folder(t: Path) -> None:
    real = t.parent / "real_folder"
    real.mkdir()
    (real / "precious.dat").write_text("data\n")
    t.symlink_to(real, target_is_directory=True)


def _target_under_a_file(t: Path) -> None:
    t.parent.rmdir()
    t.parent.write_text("a file where the parent folder should be\n")


TARGETS = {
    "missing": _target_missing,
    "file": _target_file,
    "empty folder": _target_empty_folder,
    "folder with user files": _target_user_folder,
    "previous output": _target_previous_output,
    "previous output + user file": _target_previous_output_plus_user_file,
    "link to a user folder": _target_link_to_user_folder,
    "under a file": _target_under_a_file,
}


@pytest.mark.parametrize("target_name, output_kind, declared", [
    (t, k, d) for t, k in itertools.product(TARGETS, WRITERS) for d in (None, k)
])
def test_no_user_file_is_ever_removed(tmp_path, target_name, output_kind, declared):
    work = tmp_path / "work"
    work.mkdir()
    target = work / "parent" / "out"
    target.parent.mkdir()
    TARGETS[target_name](target)
    before = _snapshot(tmp_path)
    # files that lenssearch wrote (a previous output) may be replaced; so may the file at the output path itself
    ours = {k for k in before if MANIFEST in k or (target_name == "previous output + user file" and "mine" not in k
                                                    and k.startswith("work/parent/out/"))}
    if target_name == "previous output":
        ours |= {k for k in before if k.startswith("work/parent/out/")}
    if target_name == "file" and output_kind == "file":
        ours.add("work/parent/out")
    try:
        with atomic_path(target, kind=declared) as tmp:
            WRITERS[output_kind](tmp)
    except OutputPathError as exc:
        assert str(target) in str(exc) or str(target.parent) in str(exc)
        assert _snapshot(tmp_path) == before  # refused: nothing changed at all
    else:
        assert target_name in ("missing", "empty folder", "previous output", "file", "link to a user folder"), (
            f"{target_name}: should have been refused")
    after = _snapshot(tmp_path)
    for name, content in before.items():
        if name not in ours:
            assert after.get(name) == content, f"{name} was removed or changed ({target_name}, {output_kind})"
    leftovers = [p.name for p in tmp_path.rglob(".*.tmp")]
    assert leftovers == []


@pytest.mark.parametrize("target_name", ["file", "folder with user files", "previous output + user file"])
def test_refusals_name_the_path_and_what_is_wrong(tmp_path, target_name):
    target = tmp_path / "out"
    TARGETS[target_name](target)
    with pytest.raises(OutputPathError, match=str(target)) as info:
        check_output_path(target, "dir" if target_name == "file" else "file")
    assert "untouched" in str(info.value)


def test_folder_with_user_files_names_them(tmp_path):
    target = tmp_path / "out"
    _target_user_folder(target)
    assert foreign_entries(target) == ["deep/", "notes.txt", "summary.json"]
    with pytest.raises(OutputPathError, match="notes.txt"):
        with atomic_path(target) as tmp:
            _write_folder(tmp)
    assert (target / "deep" / "thesis.tex").read_text() == "chapter 1\n"


def test_previous_output_is_replaced_and_nested_writes_are_recorded(tmp_path):
    target = tmp_path / "out"
    _target_previous_output(target)
    with atomic_path(target / "sub" / "extra.ecsv") as tmp:  # a later write inside a folder output
        tmp.write_text("x\n")
    assert foreign_entries(target) == []
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "other.json").write_text("{}\n")
    assert sorted(p.name for p in target.iterdir()) == [MANIFEST, "other.json"]


def test_failing_block_leaves_the_previous_output(tmp_path):
    target = tmp_path / "out.ecsv"
    target.write_text("previous\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.ecsv"]


def test_temporaries_of_a_killed_process_are_removed(tmp_path):
    """A process killed inside atomic_path (kill -9) leaves its temporary; the next write of the output removes it,
    but never the temporary of a process that still runs."""
    target = tmp_path / "scores.ecsv"
    code = (
        "import os, sys, time\n"
        "from lenssearch.io import atomic_path\n"
        f"with atomic_path({str(target)!r}) as tmp:\n"
        "    tmp.write_text('')\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(60)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    assert proc.stdout.readline().strip() == b"ready"
    live = list(tmp_path.glob(".scores.ecsv.*.tmp"))
    assert len(live) == 1
    with atomic_path(target) as tmp:  # the writer still runs: its temporary stays
        tmp.write_text("a\n")
    assert live[0].exists()
    proc.kill()
    proc.wait()
    with atomic_path(target) as tmp:
        tmp.write_text("b\n")
    assert not live[0].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.ecsv"]


def test_lenstool_check_out_on_an_existing_folder_is_refused(s1063_dir, tmp_path):
    """Was: exit 0, the folder replaced by an ECSV file and everything in it deleted."""
    from typer.testing import CliRunner

    from lenssearch.cli import app

    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("my notes\n")
    res = CliRunner().invoke(app, ["lenstool-check", str(s1063_dir / "best.par"), str(s1063_dir / "mul_gold.cat"),
                                   "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert res.output.startswith(f"error: {out}: is a folder; expected a file path") and "Traceback" not in res.output
    assert (out / "notes.txt").read_text() == "my notes\n" and [p.name for p in out.iterdir()] == ["notes.txt"]


def test_an_update_carries_the_users_files_over_and_keeps_them_foreign(tmp_path):
    import shutil

    target = tmp_path / "field"
    _target_user_folder(target)
    with atomic_path(target, carry_over=True) as tmp:  # e.g. painting the images of a field
        shutil.copytree(target, tmp)
        (tmp / "image.fits").write_text("new\n")
    assert (target / "notes.txt").read_text() == "my notes\n" and (target / "deep" / "thesis.tex").exists()
    assert foreign_entries(target) == ["deep/", "notes.txt", "summary.json"]  # still the user's
    with pytest.raises(OutputPathError, match="holds files that lenssearch did not write"):
        with atomic_path(target) as tmp:  # a plain replacement would remove them: refused
            _write_folder(tmp)
    with pytest.raises(OutputPathError, match=r"the update would remove files that lenssearch did not write \(notes"):
        with atomic_path(target, carry_over=True) as tmp:
            shutil.copytree(target, tmp)
            (tmp / "notes.txt").unlink()
    assert (target / "notes.txt").read_text() == "my notes\n"


def test_describe_columns_gives_units_descriptions_and_provenance(tmp_path):
    import numpy as np
    from astropy.table import Table

    from lenssearch.io import describe_columns

    table = Table({"id": ["a", "b"], "ra": [1.0, 2.0], "dec": [3.0, 4.0], "score_vgg": [0.1, 0.9],
                   "mag_bin": ["<22", ">=22"], "mine": [1, 2]})
    describe_columns(table, {"model_version": "lenssearch/3", "threshold": 0.42, "run_id": None})
    path = tmp_path / "t.ecsv"
    table.write(path, format="ascii.ecsv")
    back = Table.read(path, format="ascii.ecsv")
    assert str(back["ra"].unit) == "deg" and back["ra"].description.startswith("right ascension")
    assert back["score_vgg"].description == "lens score of committee member vgg"
    assert back["mag_bin"].unit is None  # a text column gets no unit
    assert back["mine"].description is None and back["mine"].unit is None
    assert back.meta == {"model_version": "lenssearch/3", "threshold": 0.42}
    assert np.allclose(back["ra"], [1.0, 2.0])


def test_every_kb_and_evaluation_column_is_described():
    """The KB metadata (mocks, non-lenses, planted lenses) and the evaluation tables' per-network columns get a
    description (and a unit where they have one) from io.describe_columns; ECSV keeps both for TOPCAT."""
    import io as _io

    from astropy.table import Table

    from lenssearch.io import describe_columns
    from lenssearch.simulate.inject import METADATA_COLUMNS

    names = [*METADATA_COLUMNS, "fold", "vgg", "sc_vgg_clean", "resnet_fp_over_tn", "f814w_fn_rate", "vgg_auc",
             "f435w_completeness", "median_sc_vgg", "whisker_high_f606w", "row", "variant"]
    table = Table({n: [1.0] if n not in ("id", "field", "member_id", "environment", "confuser", "row", "variant")
                   else ["a"] for n in names})
    describe_columns(table)
    missing = [n for n in names if not table[n].info.description]
    assert not missing, missing
    assert str(table["source_re_arcsec"].unit) == "arcsec" and str(table["cutout_ra"].unit) == "deg"
    assert table["resnet_fp_over_tn"].info.description == "false positives / true negatives of resnet in the bin"
    assert table["median_sc_vgg"].info.description == "median over the folds of the metric of sc_vgg"
    buf = _io.StringIO()
    table.write(buf, format="ascii.ecsv")
    back = Table.read(buf.getvalue(), format="ascii.ecsv")
    assert back["lensed_snr_F814W"].info.description == "matched-filter S/N of the noiseless lensed source in F814W"
