"""End-to-end search and known-lens run on a tiny field with a real registered Keras model (tmp MLflow store)."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from .search_helpers import PARAMS, BANDS, CENTER, expected_score, make_field, make_wcs, positions_table, shm_in_use, write_slow_search_script

from lenssearch.config import load_config
from lenssearch.errors import LensSearchError
from lenssearch.search.inputs import FieldImages
from lenssearch.search.known import run_known_lenses
from lenssearch.search.pipeline import run_search, score_table
from lenssearch.search.results import read_scores
from lenssearch.search.sources import open_field, open_input
from lenssearch.search.scoring import ModelOutputError, Scorer

SHAPE = (500, 500)
# x, y, F814W amplitude (e-/s), sigma (pixels)
LENSES = [(150, 150, 0.5, 4.0), (350, 150, 0.5, 4.0), (250, 400, 0.5, 4.0)]
FAINT = [(100, 300, 0.05, 3.0), (400, 300, 0.05, 3.0)]
EDGE = (15, 250, 0.5, 4.0)  # bright, but its cutout runs off the image
STAR = (250, 250, 0.5, 4.0)  # bright, next to a bright star of stars.ecsv
PAIR = [(420, 380, 0.5, 3.0), (420, 413, 0.5, 6.0)]  # 0.99" apart: duplicates, the second is more extended
OUTSIDE = (700, 250)
NAN_AT = (100, 450)
#: Scores of the same cutouts in batches of different shapes: float32 networks (``mixed_precision: auto`` on a CPU
#: without bfloat16) may differ in the last bit, as oneDNN picks its convolution kernel per shape (seen: 9e-8)
FLOAT32_BATCH_RTOL = 1e-6


def with_search(config, **changes):
    return dataclasses.replace(config, search=dataclasses.replace(config.search, **changes))


@pytest.fixture(scope="module")
def cfg():
    """Small batches; great-expectations off (the ``searched`` run and the CLI runs have it on)."""
    return with_search(load_config(PARAMS), threshold=None, batch_size=4, great_expectations=False)


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    root = tmp_path_factory.mktemp("field")
    sources = LENSES + FAINT + [EDGE, STAR] + PAIR + [(NAN_AT[0], NAN_AT[1], 0.05, 3.0)]
    path = make_field(root / "search", sources=sources, shape=SHAPE)
    with fits.open(path / "image_F435W.fits", mode="update") as hdul:  # a NaN region (chip gap)
        hdul[0].data[NAN_AT[1] - 5 : NAN_AT[1] + 5, NAN_AT[0] - 30 : NAN_AT[0] + 30] = np.nan
    xy = [s[:2] for s in sources] + [OUTSIDE]
    positions_table(path / "members.ecsv", xy, shape=SHAPE, ids=[f"m{i}" for i in range(len(xy))])
    wcs = make_wcs(SHAPE)
    ra, dec = wcs.all_pix2world([s[0] for s in LENSES], [s[1] for s in LENSES], 0)
    Table({"ra": ra, "dec": dec}).write(path / "planted.ecsv", format="ascii.ecsv")
    sra, sdec = wcs.all_pix2world([STAR[0] + 40.0], [STAR[1]], 0)  # 1.2" from the source
    Table({"ra": sra, "dec": sdec, "mag": [17.0]}).write(path / "stars.ecsv", format="ascii.ecsv")
    return path


@pytest.fixture(scope="module")
def searched(field, registry, cfg, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "search"
    with open_field(BANDS, cfg.search.detection, field_dir=field, catalogue=field / "members.ecsv") as inp:
        result = run_search(
            with_search(cfg, great_expectations=True), inp, out, planted=Table.read(field / "planted.ecsv"), tracking_uri=registry,
            artifact_root=out.parent / "mlartifacts", progress=False,
        )
    return result


def test_scores_are_the_models_on_the_right_pixels(field, searched):
    scores = searched.scores
    raw = np.stack([fits.getdata(field / f"image_{b}.fits") for b in BANDS], axis=-1)
    for i, (x, y) in enumerate([s[:2] for s in LENSES + FAINT]):
        cut = raw[y - 64 : y + 64, x - 64 : x + 64][None]
        assert scores["score"][i] == pytest.approx(expected_score(cut)[0], abs=2e-5)


def test_statuses_and_flags(searched):
    s = {row["id"]: row for row in searched.scores}
    assert s["m10"]["status"] == "outside" and np.isnan(s["m10"]["score"])
    assert s["m9"]["status"] == "invalid" and s["m9"]["validation"] == "finite"
    assert all(s[f"m{i}"]["status"] == "scored" for i in range(9))
    c = {row["id"]: row for row in searched.candidates}
    assert set(c) == {"m0", "m1", "m2", "m5", "m6", "m7", "m8"}  # bright ones; the faint are below threshold
    assert c["m5"]["rejected_by"] == "edge+masked" and c["m6"]["rejected_by"] == "bright_star"
    assert c["m7"]["duplicate_of"] == "m8" and not c["m7"]["kept"] and c["m8"]["kept"]
    assert c["m8"]["kron_radius_arcsec"] > c["m7"]["kron_radius_arcsec"]
    assert [c[f"m{i}"]["kept"] for i in range(3)] == [True, True, True]
    assert list(searched.candidates["score"]) == sorted(searched.candidates["score"], reverse=True)


def test_counts_table_and_metrics(searched):
    counts = dict(searched.counts.iterrows("stage", "n"))
    assert counts["catalogue"] == 11 and counts["on_image"] == 10 and counts["valid"] == 9
    assert counts["score>=0.5"] == 7 and counts["clean:edge"] == 6 and counts["clean:masked"] == 6
    assert counts["clean:bright_star"] == 5 and counts["clean:crowded"] == 5
    assert counts["duplicates<2arcsec"] == 4
    m = searched.metrics
    assert m["threshold"] == 0.5  # the model version's tag
    assert m["n_lenses"] == 3 and m["lenses_recovered_fraction"] == 1.0
    assert m["lenses_wrongly_rejected_by_cleaning"] == 0 and m["n_candidates"] == 4
    assert m["cleaning_rejected_fraction"] == pytest.approx(2 / 7)
    assert m["lenses_TP"] == 3 and m["candidates_purity"] == pytest.approx(3 / 4)
    assert m["validation_ge_runs"] == 1 and m["validation_ge_disagreements"] == 0
    on_disk = json.loads((searched.out_dir / "metrics.json").read_text())
    assert on_disk == pytest.approx(m)


def test_outputs_written(searched):
    out = searched.out_dir
    cand = Table.read(out / "candidates.ecsv")
    assert cand.meta["model_uri"] == "models:/lenssearch@champion" and len(cand) == 7
    assert {"flag_edge", "flag_crowded", "class", "is_lens", "kept"} <= set(cand.colnames)
    html = (out / "gallery" / "index.html").read_text()
    assert html.count("_stamp.png") == 4 and html.count("_context.png") == 4
    assert (out / "gallery" / "00001_stamp.png").stat().st_size > 100
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_mlflow_run_has_the_stage_counts(searched, registry):
    from mlflow import MlflowClient

    client = MlflowClient(registry)
    exp = client.get_experiment_by_name("lenssearch-search")
    runs = client.search_runs([exp.experiment_id], filter_string="attributes.run_name = 'search'")
    metrics = runs[0].data.metrics
    assert metrics["count_00_catalogue"] == 11 and metrics["count_09_duplicates_lt_2arcsec"] == 4
    assert metrics["lenses_recovered_fraction"] == 1.0
    # metric names do not embed values: the threshold is a param, with the resolved model version
    assert metrics["count_03_score"] == 7 and not any("0.5" in name for name in metrics)
    params = runs[0].data.params
    assert params["model_uri"] == "models:/lenssearch@champion" and params["model_version"] == "lenssearch/1"
    assert params["threshold"] == "0.5"
    files = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert {"candidates.ecsv", "scores.parquet", "gallery"} <= files


def test_tables_name_their_model_version_threshold_and_column_units(searched):
    cand = Table.read(searched.out_dir / "candidates.ecsv")
    assert cand.meta["model_version"] == "lenssearch/1" and cand.meta["threshold"] == 0.5
    assert str(cand["ra"].unit) == "deg" and str(cand["dec"].unit) == "deg"
    assert str(cand["kron_radius_arcsec"].unit) == "arcsec"
    assert all(cand[name].description for name in cand.colnames if name in ("id", "ra", "dec", "score", "class"))
    scores = searched.scores  # scores.parquet: units and descriptions as Parquet field metadata
    assert str(scores["ra"].unit) == "deg" and scores["status"].description
    assert scores.meta["model_version"] == "lenssearch/1" and scores.meta["threshold"] == 0.5
    import pyarrow.parquet as pq

    field = pq.read_schema(searched.out_dir / "scores.parquet").field("score")
    assert field.metadata[b"description"].startswith(b"lens score")


def test_batching_gives_the_same_scores(field, keras_model, cfg):
    scorer = Scorer(keras_model.predict_on_batch, "keras:tiny")
    with open_field(BANDS, cfg.search.detection, field_dir=field, catalogue=field / "members.ecsv") as inp:
        small = score_table(inp, scorer, with_search(cfg, batch_size=3)).column("score").to_numpy()
        one = score_table(inp, scorer, with_search(cfg, batch_size=1000)).column("score").to_numpy()
    np.testing.assert_allclose(small, one, rtol=FLOAT32_BATCH_RTOL, equal_nan=True)
    assert np.isfinite(small).sum() == 9


def test_unknown_model_uri_is_a_clear_error(field, registry, cfg, tmp_path):
    with open_field(BANDS, cfg.search.detection, field_dir=field, catalogue=field / "members.ecsv") as inp:
        with pytest.raises(LensSearchError, match="model URI 'models:/lenssearch-nope@champion' cannot be loaded"):
            run_search(cfg, inp, tmp_path / "out", model_uri="models:/lenssearch-nope@champion", tracking_uri=registry)
    assert not (tmp_path / "out").exists()


def test_failure_mid_search_leaves_no_catalogue(field, cfg, tmp_path, keras_model):
    calls = []

    def predict(x):
        calls.append(len(x))
        return keras_model.predict_on_batch(x) * (3.0 if len(calls) == 2 else 1.0)  # not a probability

    out = tmp_path / "out"
    out.mkdir()
    (out / "candidates.ecsv").write_text("previous run\n")
    with open_field(BANDS, cfg.search.detection, field_dir=field, catalogue=field / "members.ecsv") as inp:
        with pytest.raises(ModelOutputError, match="not a probability"):
            run_search(cfg, inp, out, model_uri=Scorer(predict, "keras:bad"), log_mlflow=False, progress=False)
    assert (out / "candidates.ecsv").read_text() == "previous run\n"
    assert sorted(p.name for p in out.iterdir()) == ["candidates.ecsv"]


def test_empty_catalogue_and_all_outside(field, cfg, tmp_path, keras_model):
    Table({"ra": np.array([], float), "dec": np.array([], float)}).write(tmp_path / "empty.ecsv")
    with pytest.raises(LensSearchError, match="empty.ecsv: the catalogue is empty"):
        open_field(BANDS, cfg.search.detection, field_dir=field, catalogue=tmp_path / "empty.ecsv")
    Table({"ra": [CENTER[0] + 1.0], "dec": [CENTER[1]]}).write(tmp_path / "far.ecsv")
    with open_field(BANDS, cfg.search.detection, field_dir=field, catalogue=tmp_path / "far.ecsv") as inp:
        res = run_search(cfg, inp, tmp_path / "out", model_uri=Scorer(keras_model.predict_on_batch, "k"),
                         log_mlflow=False, progress=False)
    assert res.metrics["n_outside"] == 1 and res.metrics["n_candidates"] == 0
    assert read_scores(tmp_path / "out" / "scores.parquet")["status"][0] == "outside"


def test_sep_detections_without_catalogue(field, cfg, tmp_path, keras_model):
    with open_field(BANDS, cfg.search.detection, field_dir=field) as inp:
        assert "detected by sep" in inp.description
        res = run_search(cfg, inp, tmp_path / "out", model_uri=Scorer(keras_model.predict_on_batch, "k"),
                         log_mlflow=False, write_gallery=False, progress=False)
    # every bright source on the image is detected and scored; the three planted lenses are among the candidates
    assert res.metrics["n_above_threshold"] >= 6
    with FieldImages.from_field_dir(field, BANDS) as images:
        x, y = images.world_to_pixel(res.candidates["ra"], res.candidates["dec"])
    for lx, ly, _, _ in LENSES:
        assert np.min(np.hypot(x - lx, y - ly)) < 1.0


def test_known_lenses_table(field, registry, cfg, tmp_path):
    wcs = make_wcs(SHAPE)
    xy = np.array([s[:2] for s in LENSES] + [FAINT[0][:2], FAINT[1][:2]], float)
    ra, dec = wcs.all_pix2world(xy[:, 0], xy[:, 1], 0)
    Table({"id": ["A1", "A2", "B1", "C1", "C2"], "ra": ra, "dec": dec,
           "label": ["secure", "secure", "uncertain", "secure", "no"]}).write(tmp_path / "known.ecsv")
    with open_input(cfg, field=field, catalogue=tmp_path / "known.ecsv", known=True) as inp:
        table, totals = run_known_lenses(cfg, inp, tmp_path / "out", ["models:/lenssearch@champion"],
                                         tracking_uri=registry, artifact_root=tmp_path / "art")
    assert list(table["class_lenssearch"]) == ["TP", "TP", "TP", "FN", "TN"]
    assert list(totals["network"]) == ["lenssearch"]
    assert (totals["TP"][0], totals["qTP"][0], totals["FN"][0], totals["n_secure"][0]) == (2, 0, 1, 3)
    assert "N_TP (secure)" in (tmp_path / "out" / "known_lenses.md").read_text()


def test_known_lenses_need_labels(field, cfg, tmp_path):
    Table({"ra": [CENTER[0]], "dec": [CENTER[1]], "label": ["maybe"]}).write(tmp_path / "bad.ecsv")
    with pytest.raises(LensSearchError, match="bad.ecsv: row 0 has label 'maybe'"):
        open_input(load_config(PARAMS), field=field, catalogue=tmp_path / "bad.ecsv", known=True)


# ------------------------------------------------------------------------------------------------ command line
def test_cli_search_of_a_stack_with_labels(registry, tmp_path, keras_model):
    import h5py
    from typer.testing import CliRunner

    from lenssearch.cli import app
    from .search_helpers import NOISE, gaussian

    rng = np.random.default_rng(5)
    cube = (rng.normal(0, 1, (6, 128, 128, 3)) * np.asarray(NOISE)).astype(np.float32)
    for i in (0, 2, 3):
        cube[i, ..., 2] += gaussian((128, 128), 64, 64, 0.5, 4.0)
    cube[4, 10:20, 10:20, 1] = np.nan
    labels = np.array([1, 0, 0, 1, 0, 1], np.int8)
    with h5py.File(tmp_path / "stack.h5", "w") as h5:
        h5["cutouts"] = cube
        h5["labels"] = labels
        h5["ids"] = np.array([f"c{i}".encode() for i in range(6)])
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["search", "--stack", str(tmp_path / "stack.h5"), "--out", str(out),
                                      "--params", str(PARAMS), "--tracking-uri", registry])
    assert result.exit_code == 0, result.output
    scores = read_scores(out / "scores.parquet")
    np.testing.assert_allclose(scores["score"][:4], expected_score(cube[:4]), atol=2e-5)
    assert list(scores["status"]) == ["scored"] * 4 + ["invalid", "scored"]
    assert [str(v) for v in np.ma.filled(scores["class"], "")] == ["TP", "TN", "FP", "TP", "", "FN"]
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_lenses"] == 3 and m["lenses_recovered"] == 2 and m["n_candidates"] == 3


def test_cli_bad_input_is_one_line_and_exit_2(field, tmp_path):
    from typer.testing import CliRunner

    from lenssearch.cli import app

    bad = make_field(tmp_path / "bad", no_wcs_band="F814W")
    result = CliRunner().invoke(app, ["search", "--field", str(bad), "--out", str(tmp_path / "out"), "--params", str(PARAMS)])
    assert result.exit_code == 2
    assert "image_F814W.fits: no celestial WCS" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["search", "--out", str(tmp_path / "out"), "--params", str(PARAMS)])
    assert result.exit_code == 2 and "nothing to search" in result.output
    assert not (tmp_path / "out").exists()


def test_committee_member_scores(field, registry, cfg, tmp_path):
    with open_field(BANDS, cfg.search.detection, field_dir=field, catalogue=field / "members.ecsv") as inp:
        res = run_search(cfg, inp, tmp_path / "out", model_uri="models:/lenssearch-committee@champion",
                         tracking_uri=registry, artifact_root=tmp_path / "art", write_gallery=False, progress=False)
    scores = res.scores
    ok = scores["status"] == "scored"
    np.testing.assert_allclose(scores["score"][ok], (scores["score_bright"][ok] + scores["score_bright_sq"][ok]) / 2)
    np.testing.assert_allclose(scores["score_bright_sq"][ok], scores["score_bright"][ok] ** 2)
    assert res.metrics["threshold"] == 0.5  # no threshold tag on this version: the default
    assert {"score_bright", "score_bright_sq"} <= set(res.candidates.colnames)


# ------------------------------------------------------------------------------------------------ streaming
def _search_files(field, cfg, out, scorer, catalogue="members.ecsv", **kwargs):
    with open_field(BANDS, cfg.search.detection, field_dir=field, catalogue=field / catalogue) as inp:
        result = run_search(cfg, inp, out, model_uri=scorer, planted=Table.read(field / "planted.ecsv"),
                            log_mlflow=False, progress=False, **kwargs)
    return result


def test_scores_are_streamed_in_chunks_with_the_same_outputs(field, keras_model, cfg, tmp_path):
    """Chunks of 4 rows (one great-expectations run and one row group each) and batches of 3 write the same
    catalogues and per-position table as one chunk, one batch and no great-expectations pass."""
    scorer = Scorer(keras_model.predict_on_batch, "keras:tiny")
    small = _search_files(field, with_search(cfg, batch_size=3, chunk_rows=4, great_expectations=True),
                          tmp_path / "small", scorer)
    one = _search_files(field, with_search(cfg, batch_size=1000), tmp_path / "one", scorer)
    for name in ("candidates.ecsv", "counts.ecsv"):
        assert (tmp_path / "small" / name).read_text() == (tmp_path / "one" / name).read_text(), name
    a, b = small.scores, one.scores
    for name in a.colnames:
        if name == "score":  # float32's last bit may depend on the batch shape (the kernel the CPU library picks)
            np.testing.assert_allclose(np.asarray(a[name]), np.asarray(b[name]), rtol=FLOAT32_BATCH_RTOL, atol=0)
        elif name != "ge_passed":
            np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]), err_msg=name)
    import pyarrow.parquet as pq

    assert pq.ParquetFile(tmp_path / "small" / "scores.parquet").num_row_groups == 3
    assert small.metrics["validation_ge_runs"] == 3 and small.metrics["validation_ge_disagreements"] == 0
    assert one.metrics["validation_ge_runs"] == 0
    assert {k: v for k, v in small.metrics.items() if not k.startswith("validation_ge")} == pytest.approx(
        {k: v for k, v in one.metrics.items() if not k.startswith("validation_ge")})
    assert one.metrics["n_lenses"] == 3 and one.metrics["lenses_recovered"] == 3
    scores = small.scores  # read back from disk
    assert len(scores) == 11 and list(scores["id"]) == [f"m{i}" for i in range(11)]
    assert list(scores["is_lens"]) == [1, 1, 1] + [0] * 8


def test_fits_catalogue_is_searched_lazily(field, keras_model, cfg, tmp_path):
    from lenssearch.search.catalogues import FitsCatalogue

    Table.read(field / "members.ecsv").write(tmp_path / "members.fits")
    with open_field(BANDS, cfg.search.detection, field_dir=field, catalogue=tmp_path / "members.fits") as inp:
        assert isinstance(inp.positions, FitsCatalogue)
    scorer = Scorer(keras_model.predict_on_batch, "keras:tiny")
    lazy = _search_files(field, with_search(cfg, chunk_rows=3), tmp_path / "lazy", scorer,
                         catalogue=tmp_path / "members.fits")
    whole = _search_files(field, cfg, tmp_path / "whole", scorer)
    a, b = lazy.scores, whole.scores
    assert a.colnames == b.colnames
    for name in a.colnames:
        np.testing.assert_array_equal(np.ma.filled(a[name]), np.ma.filled(b[name]))
    assert lazy.metrics == whole.metrics



def _children(pid: int) -> set[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists() or not Path("/dev/shm").is_dir(), reason="Linux /proc")
@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_killed_search_leaves_no_file_that_looks_complete(field, tmp_path, sig):
    """A search killed after some per-position rows were streamed to disk leaves no scores.parquet,
    candidates.ecsv or metrics.json: after SIGKILL only a hidden temporary file, after SIGTERM (which the CLI's
    verbs turn into an unwinding exception) nothing at all, and exit status 143. No process of it outlives it and
    nothing is left in /dev/shm."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = str(Path(__file__).resolve().parents[2])
    out = tmp_path / "out"
    script = tmp_path / "killed_search.py"
    write_slow_search_script(script, field, out, sleep_s=0.5, batch_size=1, chunk_rows=1, great_expectations=False)
    proc = subprocess.Popen([sys.executable, str(script)], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        streamed = None
        while time.time() < deadline and proc.poll() is None:
            temps = list(out.glob(".scores.parquet.*.tmp")) if out.exists() else []
            if temps and temps[0].stat().st_size > 2000:  # some row groups on disk
                streamed = temps[0]
                break
            time.sleep(0.05)
        assert streamed is not None, proc.communicate(timeout=5)[1].decode()[-2000:] if proc.poll() is not None else ""
        workers = _children(proc.pid)
        shm = shm_in_use([proc.pid, *workers])
        os.kill(proc.pid, getattr(signal, sig))
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    names = {p.name for p in out.iterdir()} if out.exists() else set()
    assert not names & {"scores.parquet", "candidates.ecsv", "counts.ecsv", "metrics.json", "gallery"}
    if sig == "SIGKILL":
        assert code == -signal.SIGKILL and all(name.startswith(".") for name in names)
    else:
        assert code == 143 and not names, proc.stderr.read().decode()[-2000:]
    deadline = time.time() + 30
    while time.time() < deadline and any(_running(pid) for pid in workers):
        time.sleep(0.1)
    assert not [pid for pid in workers if _running(pid)], "worker processes outlived the search"
    assert not [p for p in shm if Path(p).exists()], f"left in /dev/shm: {sorted(shm)}"


def test_model_sees_one_batch_shape(field, keras_model, cfg):
    """The model gets batches of one shape (valid cutouts first, zeros after: a runtime keeps state per input
    shape), and the scores are those of the unpadded cutouts."""
    shapes = []

    def predict(x):
        shapes.append(x.shape)
        return keras_model.predict_on_batch(x)

    with open_field(BANDS, cfg.search.detection, field_dir=field, catalogue=field / "members.ecsv") as inp:
        res = score_table(inp, Scorer(predict, "keras:tiny"), cfg)
        ref = score_table(inp, Scorer(keras_model.predict_on_batch, "k"), with_search(cfg, batch_size=1000))
    assert len(shapes) == 3 and set(shapes) == {(cfg.search.batch_size, *shapes[0][1:])}
    np.testing.assert_allclose(res.column("score").to_numpy(zero_copy_only=False),
                               ref.column("score").to_numpy(zero_copy_only=False), rtol=FLOAT32_BATCH_RTOL, atol=0)
    for name in ("status", "validation"):
        np.testing.assert_array_equal(res.column(name).to_numpy(zero_copy_only=False),
                                      ref.column(name).to_numpy(zero_copy_only=False))


def test_classes_are_taken_at_the_search_threshold(field, registry, cfg, searched, tmp_path):
    """A lens is TP at or above the threshold the search uses (not a fixed 0.5), qTP below it down to the qTP
    bound; the catalogues say which threshold and model version that was."""
    scores = searched.scores
    lens_scores = np.sort(np.asarray(scores["score"])[np.asarray(scores["is_lens"]) == 1])
    threshold = float(np.round(np.median(lens_scores), 6))
    out = tmp_path / "search"
    with open_field(BANDS, cfg.search.detection, field_dir=field, catalogue=field / "members.ecsv") as inp:
        result = run_search(with_search(cfg, threshold=threshold), inp, out,
                            planted=Table.read(field / "planted.ecsv"), tracking_uri=registry, log_mlflow=False,
                            write_gallery=False, progress=False)
    cand = Table.read(out / "candidates.ecsv")
    assert cand.meta["threshold"] == threshold and cand.meta["threshold_source"] == "params search.threshold"
    assert "model_version" in cand.meta and cand["class"].info.description
    qtp = cand.meta["qtp_lower"]
    assert qtp <= threshold
    table = result.scores
    for row in table[table["is_lens"] == 1]:
        expected = "TP" if row["score"] >= threshold else "qTP" if row["score"] >= qtp else "FN"
        assert row["class"] == expected, (row["score"], threshold)
    assert result.metrics["lenses_TP"] == int(np.sum(lens_scores >= threshold))
