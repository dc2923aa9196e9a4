"""The great-expectations suite: passes a clean KB, catches injected faults, per-cutout flags, CLI exit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lenssearch.kb.build import read_kb
from lenssearch.kb.validation import cutout_statistics, validate_cutouts, validate_kb


def test_clean_kb_passes_and_writes_docs(kb_path, cfg, tmp_path):
    result = validate_kb(kb_path, tmp_path / "validate", cfg)
    assert result.success, result.message()
    assert result.passed.all()
    summary = json.loads((tmp_path / "validate" / "summary.json").read_text())
    assert summary["success"] and summary["n_cutouts"] == 120
    assert summary["n_expectations"] >= 20
    assert (tmp_path / "validate" / "data_docs" / "index.html").exists()
    html = list((tmp_path / "validate" / "data_docs" / "validations").rglob("*.html"))
    assert html, "the validation result page is rendered"


def test_injected_faults_are_caught(kb_path, cfg):
    kb = read_kb(kb_path)
    cutouts = kb["cutouts"].copy()
    meta = kb["metadata"].copy()
    mocks = np.flatnonzero(kb["labels"] == 1)
    cutouts[mocks[0], 10:20, 10:20, 1] = np.nan  # a NaN region
    meta["id"][mocks[2]] = meta["id"][mocks[1]]  # a duplicate id
    meta["theta_e_arcsec"][mocks[3]] = 5.0  # theta_E out of range
    meta["z_s"][mocks[4]] = meta["z_lens"][mocks[4]] + 0.1  # source too close to the cluster
    cutouts[mocks[5], ..., 2] *= 3.0  # noise three times the field's
    result = validate_cutouts(cutouts, meta, vcfg=cfg.validate, n_folds=3)
    assert not result.success
    failed = {(e["expectation"], e["column"]): e for e in result.failures}
    assert failed[("expect_column_values_to_be_between", "finite_fraction")]["unexpected_count"] == 1
    assert failed[("expect_column_values_to_be_unique", "id")]["unexpected_count"] == 2
    assert failed[("expect_column_values_to_be_between", "theta_e_arcsec")]["examples"] == [str(meta["id"][mocks[3]])]
    assert failed[("expect_column_values_to_be_between", "dz")]["unexpected_count"] == 1
    assert failed[("expect_column_values_to_be_between", "noise_ratio_F814W")]["unexpected_count"] == 1
    bad_rows = set(mocks[[0, 1, 2, 3, 4, 5]])
    assert set(np.flatnonzero(~result.passed)) == bad_rows
    text = result.message()
    assert "theta_e_arcsec" in text and "finite_fraction" in text and "1 of 120 rows" in text


def test_wrong_shape_and_dtype(cfg):
    rng = np.random.default_rng(1)
    cutouts = rng.normal(0, 0.002, (6, 64, 64, 3))  # float64, 64 pixels
    result = validate_cutouts(cutouts, None, {"F435W": 0.002, "F606W": 0.002, "F814W": 0.002}, vcfg=cfg.validate)
    failed = {e["column"] for e in result.failures}
    assert {"shape_ok", "dtype"} <= failed
    assert not result.passed.any()


def test_statistics_measure_the_noise():
    rng = np.random.default_rng(2)
    cutouts = rng.normal(0.0, 0.01, (3, 128, 128, 3)).astype(np.float32)
    df = cutout_statistics(cutouts, expected_noise={"F435W": 0.01, "F606W": 0.02, "F814W": 0.005})
    np.testing.assert_allclose(df["noise_ratio_F435W"], 1.0, atol=0.05)
    np.testing.assert_allclose(df["noise_ratio_F606W"], 0.5, atol=0.03)
    np.testing.assert_allclose(df["noise_ratio_F814W"], 2.0, atol=0.1)


def test_cli_exits_non_zero_with_a_readable_summary(kb_path, tmp_path):
    import h5py
    from typer.testing import CliRunner

    from lenssearch.cli import app

    broken = tmp_path / "kb.h5"
    broken.write_bytes(kb_path.read_bytes())
    with h5py.File(broken, "r+") as h5:
        h5["cutouts"][3, 0:5, 0:5, 0] = np.nan
    runner = CliRunner()
    res = runner.invoke(app, ["validate", "--kb", str(broken), "--out", str(tmp_path / "v")])
    assert res.exit_code == 2
    assert "finite_fraction" in res.output and "failed" in res.output
    assert json.loads((tmp_path / "v" / "summary.json").read_text())["success"] is False
    ok = runner.invoke(app, ["validate", "--kb", str(kb_path), "--out", str(tmp_path / "v2")])
    assert ok.exit_code == 0, ok.output
    missing = runner.invoke(app, ["validate", "--kb", str(tmp_path / "none.h5"), "--out", str(tmp_path / "v3")])
    assert missing.exit_code == 2 and "no such knowledge base" in missing.output
