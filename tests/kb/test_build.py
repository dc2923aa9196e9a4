"""The kb stage: HDF5 layout and dtypes, class ratio, stratified folds, validation split, determinism."""

from __future__ import annotations

import dataclasses
import hashlib

import h5py
import numpy as np
import pytest

from lenssearch.errors import InputFileError, LensSearchError
from lenssearch.kb.build import REQUIRED_COLUMNS, assign_folds, balance_classes, build_kb, read_kb


def test_layout_and_dtypes(kb_path, cfg):
    with h5py.File(kb_path, "r") as h5:
        assert h5["cutouts"].dtype == np.float32
        assert h5["cutouts"].shape == (120, 128, 128, 3)
        assert h5["labels"].dtype == np.int8
        assert h5["fold"].dtype == np.int16
        assert h5["ids"].dtype.kind == "S"
        assert [b.decode() for b in h5.attrs["bands"]] == ["F435W", "F606W", "F814W"]
        assert h5.attrs["n_folds"] == 3
        assert h5.attrs["seed"] == cfg.base.seed
        np.testing.assert_allclose(h5.attrs["zeropoints_ab"], [25.66, 26.49, 25.94])
    kb = read_kb(kb_path)
    meta = kb["metadata"]
    for col in REQUIRED_COLUMNS:
        assert col in meta.colnames, col
    assert list(meta["id"]) == list(kb["ids"])
    np.testing.assert_array_equal(np.asarray(meta["label"]), kb["labels"])
    # negatives have no source: NaN source columns
    neg = kb["labels"] == 0
    assert np.all(np.isnan(np.asarray(meta["theta_e_arcsec"])[neg]))
    assert np.all(np.isfinite(np.asarray(meta["theta_e_arcsec"])[~neg]))
    # field information joined from field.json
    np.testing.assert_allclose(np.unique(meta["z_lens"]), [0.35, 0.44])
    assert set(np.unique(meta["noise_sigma_F606W"])) == {0.004}


def test_cutouts_are_copied_in_order(kb_path, inputs):
    from lenssearch.simulate.store import read_cutout_set

    mocks, mmeta, _ = read_cutout_set(inputs / "mocks")
    negs, nmeta, _ = read_cutout_set(inputs / "negatives")
    kb = read_kb(kb_path)
    by_id = {str(i): c for i, c in zip(mmeta["id"], mocks)} | {str(i): c for i, c in zip(nmeta["id"], negs)}
    for k in (0, 40, 79, 80, 119):
        np.testing.assert_array_equal(kb["cutouts"][k], by_id[kb["ids"][k]])


def test_class_ratio_two_to_one(kb_path):
    kb = read_kb(kb_path, load_cutouts=False)
    assert (kb["labels"] == 1).sum() == 2 * (kb["labels"] == 0).sum()
    assert len(set(kb["ids"])) == kb["labels"].size


def test_balance_classes_subsamples_the_larger_class():
    rng = np.random.default_rng(0)
    m, n = balance_classes(100, 80, 2.0, rng)
    assert (m.size, n.size) == (100, 50)
    assert np.all(np.diff(n) > 0) and n.max() < 80
    m, n = balance_classes(500, 80, 2.0, rng)
    assert (m.size, n.size) == (160, 80)
    with pytest.raises(LensSearchError):
        balance_classes(0, 10, 2.0, rng)


def test_stratified_folds_and_validation_split():
    labels = np.array([1] * 600 + [0] * 300)
    fold = assign_folds(labels, 10, 0.1, seed=3)
    val = fold == -1
    assert val.sum() == 90
    assert labels[val].mean() == pytest.approx(2 / 3, abs=0.01)
    sizes = np.bincount(fold[~val])
    assert sizes.size == 10 and sizes.max() - sizes.min() <= 1
    for k in range(10):
        assert labels[fold == k].mean() == pytest.approx(2 / 3, abs=0.02)
    # same seed, same folds; another seed, other folds
    np.testing.assert_array_equal(fold, assign_folds(labels, 10, 0.1, seed=3))
    assert not np.array_equal(fold, assign_folds(labels, 10, 0.1, seed=4))
    with pytest.raises(LensSearchError):
        assign_folds(np.array([1, 1, 0]), 3, 0.0, seed=1)


def test_rebuild_is_byte_identical(kb_path, inputs, cfg, tmp_path):
    again = tmp_path / "kb.h5"
    build_kb(inputs / "mocks", inputs / "negatives", again, cfg, fields_dir=inputs / "fields", progress=False)
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (kb_path, again)]
    assert digest[0] == digest[1]
    other = dataclasses.replace(cfg, base=dataclasses.replace(cfg.base, seed=cfg.base.seed + 1))
    third = tmp_path / "kb_other_seed.h5"
    build_kb(inputs / "mocks", inputs / "negatives", third, other, fields_dir=inputs / "fields", progress=False)
    assert hashlib.sha256(third.read_bytes()).hexdigest() != digest[0]


def test_bad_inputs_write_nothing(inputs, cfg, tmp_path):
    out = tmp_path / "kb.h5"
    with pytest.raises(InputFileError, match="missing from the cutout set"):
        build_kb(tmp_path / "nowhere", inputs / "negatives", out, cfg)
    wrong = dataclasses.replace(cfg, kb=dataclasses.replace(cfg.kb, cutout_pixels=64))
    with pytest.raises(InputFileError, match="expected"):
        build_kb(inputs / "mocks", inputs / "negatives", out, wrong)
    with pytest.raises(InputFileError, match="no field directories"):
        build_kb(inputs / "mocks", inputs / "negatives", out, cfg, fields_dir=tmp_path)
    (tmp_path / "fields").mkdir()
    (tmp_path / "fields" / "FA").symlink_to(inputs / "fields" / "FA")
    with pytest.raises(InputFileError, match=r"field\(s\) \['FB'\] that are not in the fields directory"):
        build_kb(inputs / "mocks", inputs / "negatives", out, cfg, fields_dir=tmp_path / "fields")
    assert not out.exists()
    (tmp_path / "fields" / "FA").unlink()
    (tmp_path / "fields").rmdir()
    assert list(tmp_path.iterdir()) == []


def test_npy_cutout_sets_are_read_too(inputs, kb_path, cfg, tmp_path):
    import shutil

    from lenssearch.simulate.store import read_cutout_set

    cutouts, _, _ = read_cutout_set(inputs / "negatives")
    npy = tmp_path / "negatives"
    npy.mkdir()
    shutil.copy(inputs / "negatives" / "metadata.ecsv", npy / "metadata.ecsv")
    np.save(npy / "cutouts.npy", cutouts)
    out = tmp_path / "kb.h5"
    build_kb(inputs / "mocks", npy, out, cfg, fields_dir=inputs / "fields", progress=False)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(kb_path.read_bytes()).hexdigest()


def test_kb_verb(inputs, tmp_path):
    from typer.testing import CliRunner

    from lenssearch.cli import app

    runner = CliRunner()
    out = tmp_path / "kb" / "kb.h5"
    res = runner.invoke(app, ["kb", "--mocks", str(inputs / "mocks"), "--negatives", str(inputs / "negatives"),
                              "--fields", str(inputs / "fields"), "--out", str(out), "--reports",
                              str(tmp_path / "reports"), "--no-mlflow"])
    assert res.exit_code == 0, res.output
    assert out.exists() and (tmp_path / "reports" / "gallery.png").exists()
    assert '"n_mocks": 80' in res.output
    bad = runner.invoke(app, ["kb", "--mocks", str(tmp_path / "nope"), "--negatives", str(inputs / "negatives"),
                              "--out", str(tmp_path / "kb2.h5")])
    assert bad.exit_code == 2 and "missing from the cutout set" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "kb2.h5").exists()
