"""The modeling network: augmentation, loss, calibration, the stage end to end, resuming, model-candidates."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from lenssearch.modeling.data import symmetry_matrices, transform_truth
from lenssearch.simulate.truth import PARAMETERS, TRUTH_COLUMNS

REPO = Path(__file__).resolve().parents[2]
SIZE = 32


def _moments_ellipticity(image):
    """(e1, e2) of an image from its second moments ((1 - q)/(1 + q) convention for an elliptical Gaussian)."""
    n = image.shape[0]
    y, x = np.mgrid[:n, :n] - (n - 1) / 2.0  # x along columns, y along rows
    w = image / image.sum()
    qxx, qyy, qxy = (w * x * x).sum(), (w * y * y).sum(), (w * x * y).sum()
    chi = np.array([qxx - qyy, 2 * qxy]) / (qxx + qyy)
    chi_abs = np.hypot(*chi)
    q = np.sqrt((1 - chi_abs) / (1 + chi_abs))
    return chi / chi_abs * (1 - q) / (1 + q)


def _elliptical_gaussian(n, q, angle_deg, x0=0.0, y0=0.0):
    y, x = np.mgrid[:n, :n] - (n - 1) / 2.0
    phi = np.deg2rad(angle_deg)
    xr = np.cos(phi) * (x - x0) + np.sin(phi) * (y - y0)
    yr = -np.sin(phi) * (x - x0) + np.cos(phi) * (y - y0)
    return np.exp(-0.5 * ((xr / 6.0) ** 2 + (yr * 1.0 / (6.0 * q)) ** 2))


def test_symmetries_transform_the_truth_like_the_pixels():
    """Under each of the eight symmetries of the augmentation, a blob's centre and its measured ellipticity move
    as transform_truth says."""
    from lenssearch.train.data import dihedral_permutations

    n = 64
    image = _elliptical_gaussian(n, 0.5, 30.0, x0=5.0, y0=-3.0)
    perms = dihedral_permutations(n)
    truth = np.zeros((8, len(PARAMETERS)), np.float64)
    truth[:, PARAMETERS.index("lens_x_arcsec")] = 5.0
    truth[:, PARAMETERS.index("lens_y_arcsec")] = -3.0
    e = _moments_ellipticity(_elliptical_gaussian(n, 0.5, 30.0))
    truth[:, PARAMETERS.index("lens_e1")], truth[:, PARAMETERS.index("lens_e2")] = e
    truth[:, PARAMETERS.index("shear_gamma1")], truth[:, PARAMETERS.index("shear_gamma2")] = e
    moved = transform_truth(truth, np.arange(8))
    y, x = np.mgrid[:n, :n] - (n - 1) / 2.0
    for k in range(8):
        out = image.ravel()[perms[k]].reshape(n, n)
        cx, cy = (out * x).sum() / out.sum(), (out * y).sum() / out.sum()
        assert (cx, cy) == pytest.approx((moved[k, 0], moved[k, 1]), abs=1e-4)
        centred = _elliptical_gaussian(n, 0.5, 30.0).ravel()[perms[k]].reshape(n, n)
        measured = _moments_ellipticity(centred)
        for a, b in (("lens_e1", "lens_e2"), ("shear_gamma1", "shear_gamma2")):
            assert measured == pytest.approx([moved[k, PARAMETERS.index(a)], moved[k, PARAMETERS.index(b)]],
                                             abs=1e-4)
    assert np.all(moved[:, PARAMETERS.index("theta_e_arcsec")] == 0.0)
    assert len({tuple(np.round(m.ravel(), 6)) for m in symmetry_matrices()}) == 8


def test_shifts_move_the_lens_centre_like_the_pixels_and_commute_with_the_preparation():
    """A rolled blob's centroid moves as shift_truth says; rolling raw cutouts by binning x k pixels and then
    preparing them (2x2 mean, per-cutout median/MAD normalisation) puts the light where preparing and then rolling
    by k does, with the same values up to the normalisation's subsampled statistics (as for the symmetries)."""
    from lenssearch.config import load_config
    from lenssearch.modeling.data import augmented_epoch, held_out_shifts, shift_images, shift_truth
    from lenssearch.models import split_model
    from lenssearch.models.modeling import build_modeling

    n = 64
    image = _elliptical_gaussian(n, 0.5, 30.0, x0=2.0, y0=-1.0)[None, ..., None]
    shifts = np.array([[3, -2]])  # 3 rows (y), -2 columns (x)
    moved = shift_images(image, shifts)[0, ..., 0]
    y, x = np.mgrid[:n, :n] - (n - 1) / 2.0
    truth = np.zeros((1, len(PARAMETERS)))
    truth[0, :2] = 2.0, -1.0
    t = shift_truth(truth, shifts, 1.0)
    assert ((moved * x).sum() / moved.sum(), (moved * y).sum() / moved.sum()) == pytest.approx((t[0, 0], t[0, 1]),
                                                                                               abs=1e-4)
    assert np.array_equal(t[0, 2:], truth[0, 2:])

    cfg = load_config(REPO / "params.yaml")
    rng = np.random.default_rng(0)
    raw = rng.normal(0, 0.01, (4, 128, 128, 3)).astype(np.float32)
    raw[:, 60:68, 60:68, :] += 1.0
    preparation, _ = split_model(build_modeling(raw.shape[1:], cfg.modeling.network, n_parameters=len(PARAMETERS)))
    k = held_out_shifts(4, 0, 1, 3)
    assert np.abs(k).max() <= 3 and np.array_equal(k, held_out_shifts(4, 0, 1, 3))
    a = np.asarray(preparation(shift_images(raw, 2 * k), training=False))
    b = shift_images(np.asarray(preparation(raw, training=False)), k)
    bright = a > 3.0
    assert bright.sum() == 4 * 16 * 3 and np.array_equal(bright, b > 3.0)
    assert np.median(np.abs(a - b)) < 0.2  # a 256-pixel median is good to ~0.08 sigma, the MAD to ~6%
    # the augmentation draws shifts of at most max_shift and moves the truth with them
    prepared = np.asarray(preparation(raw, training=False))
    lens_truth = np.zeros((4, len(PARAMETERS)), np.float32)
    _, y0 = augmented_epoch(prepared, lens_truth, np.arange(4), 0, 0)
    _, y3 = augmented_epoch(prepared, lens_truth, np.arange(4), 0, 0, max_shift=3, pixel_arcsec=0.06)
    assert np.all(y0[:, :2] == 0) and np.abs(y3[:, :2]).max() <= 0.18 + 1e-6 and np.abs(y3[:, :2]).max() > 0


def test_gaussian_nll_is_the_gaussian_log_likelihood():
    from scipy.stats import norm

    from lenssearch.models.modeling import gaussian_nll

    rng = np.random.default_rng(0)
    y = rng.normal(size=(5, 3))
    mean = rng.normal(size=(5, 3))
    log_sigma = rng.normal(scale=0.3, size=(5, 3))
    got = np.asarray(gaussian_nll(y.astype(np.float32), np.concatenate([mean, log_sigma], 1).astype(np.float32)))
    expected = -(norm.logpdf(y, mean, np.exp(log_sigma)) + 0.5 * np.log(2 * np.pi)).mean(axis=1)
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_calibration_factor_restores_one_sigma_coverage():
    from lenssearch.modeling.fit import ONE_SIGMA, calibration_factors

    rng = np.random.default_rng(1)
    truth = rng.normal(0.0, 2.0, size=(20000, 2))
    mean = np.zeros_like(truth)
    sigma = np.ones_like(truth)  # overconfident by a factor 2
    c = calibration_factors(truth, mean, sigma)
    assert c == pytest.approx([2.0, 2.0], rel=0.03)
    fresh = rng.normal(0.0, 2.0, size=(20000, 2))
    assert np.mean(np.abs(fresh) <= c * sigma, axis=0) == pytest.approx([ONE_SIGMA] * 2, abs=0.01)


# ------------------------------------------------------------------------------------------- the stage
def _config():
    from lenssearch.config import load_config

    cfg = load_config(REPO / "params.yaml")
    m = cfg.modeling
    net = dataclasses.replace(m.network, input_pixels=SIZE, filters=(4, 8), dense_units=8)
    m = dataclasses.replace(m, network=net, max_epochs=3, batch_size=16, mixed_precision=False,
                            snr_bins=(0.0, np.inf))
    return dataclasses.replace(cfg, modeling=m)


def _toy_truth(kb_path: Path, path: Path) -> Path:
    import h5py
    from astropy.table import Table

    with h5py.File(kb_path) as h5:
        ids = [i.decode() for i in h5["ids"][...]]
        labels = h5["labels"][...]
    rng = np.random.default_rng(2)
    rows = [i for i, lab in zip(ids, labels) if lab == 1]
    t = Table({"id": rows})
    for p in TRUTH_COLUMNS[1:]:
        t[p] = rng.normal(0.5, 0.2, len(rows)) if p != "environment" else ["cluster"] * len(rows)
    t.write(path, format="ascii.ecsv")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from lenssearch.modeling.stage import run_modeling
    from lenssearch.train.toy_kb import write_toy_kb

    root = tmp_path_factory.mktemp("modeling")
    kb = write_toy_kb(root / "kb.h5", n_lenses=90, n_nonlenses=30, size=SIZE, seed=4)
    truth = _toy_truth(kb, root / "truth.ecsv")
    uri = f"sqlite:///{root}/mlflow.db"
    cfg = _config()
    metrics = run_modeling(cfg, kb, truth, root / "models", root / "reports", root / "headline.json",
                           tracking_uri=uri, progress=False)
    return cfg, root, kb, truth, uri, metrics


def test_stage_writes_the_report_and_registers_a_table_model(trained):
    import mlflow

    cfg, root, kb, truth, uri, metrics = trained
    reports = root / "reports"
    for name in ("predictions.ecsv", "by_theta_e.ecsv", "by_snr.ecsv", "scatter.png", "calibration.png",
                 "metrics.json", "model.json"):
        assert (reports / name).is_file(), name
    assert set(metrics["parameters"]) == set(PARAMETERS)
    assert metrics["held_out_lenses_rejected"] == 0  # the cuts keep every held-out lens, by construction
    info = json.loads((reports / "model.json").read_text())
    assert info["model_uri"] == "models:/lenssearch-modeling/1"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model = mlflow.pyfunc.load_model("models:/lenssearch-modeling/1")
    from lenssearch.train.toy_kb import toy_cutouts

    raw = toy_cutouts(np.array([1, 0, 1]), np.random.default_rng(5), SIZE)
    table = model.predict(raw)
    assert list(table.columns) == [f"pred_{p}" for p in PARAMETERS] + [f"sigma_{p}" for p in PARAMETERS]
    assert len(table) == 3 and np.all(table[[f"sigma_{p}" for p in PARAMETERS]].to_numpy() > 0)
    # the registered model answers what the stage validated: symmetrised means, calibrated sigmas
    import keras

    from lenssearch.modeling import fit

    keras_model = keras.saving.load_model(root / "models" / "model.keras", compile=False)
    mean, sigma = fit.predict(keras_model, raw, [info["calibration"][p] for p in PARAMETERS])
    assert table[[f"pred_{p}" for p in PARAMETERS]].to_numpy() == pytest.approx(mean, rel=1e-4, abs=1e-6)
    assert table[[f"sigma_{p}" for p in PARAMETERS]].to_numpy() == pytest.approx(sigma, rel=1e-4, abs=1e-6)
    client = mlflow.MlflowClient(uri)
    run = client.get_run(info["run_id"])
    assert "epoch/val_loss" in run.data.metrics and "theta_e_arcsec/coverage_1sigma" in run.data.metrics
    history = client.get_metric_history(info["run_id"], "epoch/loss")
    assert [m.step for m in history] == list(range(metrics["epochs"]))
    tags = client.get_model_version("lenssearch-modeling", "1").tags
    lo, hi = info["cuts"]["parameters"]["theta_e_arcsec"]["log_range"]
    assert lo <= hi and json.loads(tags["rejection_cuts"]) == info["cuts"]
    assert metrics["held_out_lenses_rejected"] == 0 and 0 <= metrics["held_out_lenses_rejected_cross_checked"] < 1
    assert (root / "reports" / "cuts.png").stat().st_size > 10_000
    headline = json.loads((root / "headline.json").read_text())
    assert set(headline) == {"mae", "coverage", "rejected", "version"}


def test_a_killed_training_resumes_to_the_same_weights(trained, tmp_path, monkeypatch):
    """Interrupted after its first epoch, a training re-run resumes and ends with the losses of a straight one."""
    from lenssearch.modeling import data as modeling_data
    from lenssearch.modeling.stage import run_modeling

    cfg, root, kb, truth, uri, metrics = trained
    straight = json.loads((root / "models" / "state.json").read_text())["history"]
    real = modeling_data.augmented_epoch
    calls = {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(modeling_data, "augmented_epoch", dying)
    with pytest.raises(KeyboardInterrupt):
        run_modeling(cfg, kb, truth, tmp_path / "models", tmp_path / "reports", log_mlflow=False, progress=False)
    state = json.loads((tmp_path / "models" / "state.json").read_text())
    assert state["epoch"] == 0 and not (tmp_path / "reports" / "metrics.json").exists()
    monkeypatch.setattr(modeling_data, "augmented_epoch", real)
    run_modeling(cfg, kb, truth, tmp_path / "models", tmp_path / "reports", log_mlflow=False, progress=False)
    resumed = json.loads((tmp_path / "models" / "state.json").read_text())["history"]
    assert resumed["loss"] == pytest.approx(straight["loss"], rel=1e-5)
    assert resumed["val_loss"] == pytest.approx(straight["val_loss"], rel=1e-5)


def test_model_candidates_rejects_by_the_cuts_and_draws_the_gallery(trained, tmp_path):
    from astropy.table import Table

    from lenssearch.modeling.candidates import run_model_candidates
    from tests.search.search_helpers import make_field, positions_table

    cfg, root, kb, truth, uri, metrics = trained
    field = make_field(tmp_path / "field", sources=[(100, 100, 0.5, 4.0), (300, 250, 0.5, 4.0), (400, 80, 1, 3)])
    positions_table(tmp_path / "cands.ecsv", [(100, 100), (300, 250), (400, 80)],
                    extra={"score": [0.9, 0.8, 0.7], "is_lens": [True, True, False], "rejected_by": ["", "", ""]})
    positions_table(tmp_path / "planted.ecsv", [(100, 100), (300, 250)])
    info = json.loads((root / "reports" / "model.json").read_text())
    for k, (cut, expect_rejected) in enumerate((([-60.0, -50.0], 1.0), ([50.0, 60.0], 1.0), ([-60.0, 60.0], 0.0))):
        model_json = tmp_path / f"model_{k}.json"
        cuts = {**info["cuts"], "parameters": {"theta_e_arcsec": {"trend": [0.0], "log_range": cut}}}
        model_json.write_text(json.dumps({**info, "cuts": cuts}))
        out = tmp_path / f"out_{k}"
        m = run_model_candidates(cfg, tmp_path / "cands.ecsv", field, model_json, out,
                                 planted_path=tmp_path / "planted.ecsv", tracking_uri=uri, progress=False)
        assert m["rejected_fraction_modeling"] == expect_rejected
        assert m["nonlens_rejected_fraction_modeling"] == expect_rejected
        assert m["planted_wrongly_rejected"] == (2 if expect_rejected else 0)
        table = Table.read(out / "candidates.ecsv")
        assert table["pred_theta_e_arcsec"].unit == "arcsec" and table["sigma_theta_e_arcsec"].description
        assert np.all(np.isfinite(table["pred_ra"])) and (out / "gallery" / "index.html").is_file()
        assert len(list((out / "gallery").glob("*.png"))) == 3


def test_model_candidates_bad_input_is_one_line_exit_2(tmp_path):
    import subprocess
    import sys

    (tmp_path / "cands.ecsv").write_text("not an ecsv\n")
    cmd = [sys.executable, "-m", "lenssearch", "model-candidates", "--candidates", str(tmp_path / "cands.ecsv"),
           "--field", str(tmp_path), "--modeling", str(tmp_path / "missing.json"), "--out", str(tmp_path / "o")]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "missing.json" in res.stderr and not (tmp_path / "o").exists()
    cuts = {"theta_e_range_arcsec": [0.2, 2.0], "parameters": {}}
    (tmp_path / "model.json").write_text(json.dumps({"model_uri": "models:/no-such-model/1", "cuts": cuts}))
    (tmp_path / "bad.json").write_text(json.dumps({"model_uri": "models:/x/1", "cuts": {
        **cuts, "parameters": {"theta_e_arcsec": 1}}}))
    res = subprocess.run([*cmd[:cmd.index("--modeling") + 1], str(tmp_path / "bad.json"), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2 and "Traceback" not in res.stderr and "'log_range': [low, high]" in res.stderr
    positions = tmp_path / "ok.ecsv"
    positions.write_text("# %ECSV 1.0\n# ---\n# datatype:\n# - {name: id, datatype: string}\n"
                         "# - {name: ra, datatype: float64}\n# - {name: dec, datatype: float64}\nid ra dec\na 1.0 2.0\n")
    cmd[cmd.index("--modeling") + 1] = str(tmp_path / "model.json")
    cmd[cmd.index("--candidates") + 1] = str(positions)
    res = subprocess.run(cmd + ["--tracking-uri", f"sqlite:///{tmp_path}/m.db"], capture_output=True, text=True,
                         cwd=REPO)
    assert res.returncode == 2 and "Traceback" not in res.stderr and "no-such-model" in res.stderr


def test_symmetrised_prediction_of_an_equivariant_measurement_is_the_measurement():
    """A 'network' that measures the centroid and the second-moment ellipticity of the image is equivariant: the
    mean over the eight views, mapped back to the cutout's frame, equals its single-view answer, with no spread."""
    from lenssearch.modeling.data import predict_symmetrised

    def measure(x):
        n = x.shape[1]
        y, xx = np.mgrid[:n, :n] - (n - 1) / 2.0
        img = x[..., 0]
        w = img / img.sum(axis=(1, 2), keepdims=True)
        cx, cy = (w * xx).sum(axis=(1, 2)), (w * y).sum(axis=(1, 2))
        e = np.array([_moments_ellipticity(i) for i in img])
        out = np.zeros((len(x), len(PARAMETERS)))
        out[:, 0], out[:, 1] = cx, cy
        out[:, PARAMETERS.index("theta_e_arcsec")] = img.max(axis=(1, 2))
        out[:, 3], out[:, 4] = e[:, 0], e[:, 1]
        out[:, 5], out[:, 6] = 0.5 * e[:, 0], 0.5 * e[:, 1]
        return out, np.full_like(out, 0.1)

    images = np.stack([_elliptical_gaussian(48, 0.6, a, x0=x0, y0=y0) for a, x0, y0 in
                       ((20.0, 3.0, -2.0), (110.0, -4.0, 1.0))])[..., None].astype(np.float32)
    single, _ = measure(images)
    mean, sigma = predict_symmetrised(measure, images)
    assert mean == pytest.approx(single, abs=1e-4)
    assert sigma == pytest.approx(np.full_like(sigma, 0.1), abs=1e-3)


def test_kb_nonlens_candidates_use_the_champions_out_of_fold_score(tmp_path):
    """The KB check counts the cross-validation non-lenses above the champion committee's threshold (its members'
    out-of-fold probabilities combined by its rule) and the fraction of them that the modeling cuts reject."""
    from astropy.table import Table

    from lenssearch.modeling.candidates import kb_nonlens_candidates

    ids = [f"n{i}" for i in range(6)]
    p_a = [0.9, 0.8, 0.7, 0.2, 0.1, 0.95]
    p_b = [0.7, 0.1, 0.9, 0.9, 0.1, 0.85]
    for net, p in (("a", p_a), ("b", p_b)):
        (tmp_path / net).mkdir()
        Table({"id": ids + ["l0"], "fold": [0] * 7, "network": [net] * 7, "label": [0] * 6 + [1],
               "probability": p + [0.99]}).write(tmp_path / net / "predictions.ecsv", format="ascii.ecsv")
    (tmp_path / "promotion.json").write_text(json.dumps({"best": "mean(a+b)", "threshold": 0.5}))
    (tmp_path / "best.json").write_text(json.dumps({"committees": [{"name": "mean(a+b)", "members": ["a", "b"],
                                                                    "rule": "mean"}]}))
    # n6 is in the validation split (fold -1): it has no out-of-fold score and is not a candidate
    Table({"id": ids + ["n6"], "fold": [0, 1, 2, 0, 1, 2, -1],
           "confuser": ["ring", "spiral", "ring", "plain", "plain", "pair", "ring"],
           "modeling_rejected": [True, False, False, True, True, False, True]}).write(tmp_path / "nl.ecsv",
                                                                                      format="ascii.ecsv")
    out = kb_nonlens_candidates(tmp_path / "nl.ecsv", tmp_path, tmp_path / "promotion.json", tmp_path / "best.json")
    # mean scores: 0.8, 0.45, 0.8, 0.55, 0.1, 0.9 -> candidates n0, n2, n3, n5; rejected among them: n0, n3
    assert out["n_candidates"] == 4 and out["rejected_fraction_modeling"] == 0.5
    assert out["by_kind"]["ring"] == {"n_candidates": 2, "rejected": 1}
    assert out["rejected_fraction_all_nonlenses"] == 0.5


def test_kb_nonlens_candidates_with_members_of_another_variant(tmp_path):
    """A committee member trained on another KB variant scores the modeling KB's non-lenses held out (the evaluate
    stage's tables); a plain cutout it trained on has no such score and is left out, and counted."""
    from astropy.table import Table

    from lenssearch.evaluate.common import HELDOUT_DIR, heldout_path
    from lenssearch.modeling.candidates import kb_nonlens_candidates

    ids = [f"n{i}" for i in range(6)]
    p_a = [0.9, 0.8, 0.7, 0.2, 0.1, 0.95]
    p_b = [0.7, 0.1, 0.9, 0.9, 0.1, 0.85]
    (tmp_path / "a").mkdir()
    Table({"id": ids + ["l0"], "fold": [0] * 7, "network": ["a"] * 7, "label": [0] * 6 + [1],
           "probability": p_a + [0.99]}).write(tmp_path / "a" / "predictions.ecsv", format="ascii.ecsv")
    (tmp_path / "b").mkdir()  # b: trained on variant y, out of fold there
    Table({"id": ["y0", "y1"], "fold": [0, 1], "network": ["b"] * 2, "label": [1, 0],
           "probability": [0.9, 0.2]}).write(tmp_path / "b" / "predictions.ecsv", format="ascii.ecsv")
    heldout = tmp_path / "evaluation" / HELDOUT_DIR
    for net, tab in (("b", Table({"id": ids[:5] + ["l0"], "fold": [0] * 6, "network": ["b"] * 6,
                                  "label": [0] * 5 + [1], "probability": p_b[:5] + [0.9]})),  # n5: seen by b
                     ("a", Table({"id": ["y0", "y1"], "fold": [0, 1], "network": ["a"] * 2, "label": [1, 0],
                                  "probability": [0.8, 0.3]}))):
        path = heldout_path(heldout, net, "y" if net == "a" else "x")
        path.parent.mkdir(parents=True)
        tab.write(path, format="ascii.ecsv")
    (tmp_path / "promotion.json").write_text(json.dumps({"best": "mean(a+b)", "threshold": 0.5}))
    (tmp_path / "best.json").write_text(json.dumps({"committees": [{"name": "mean(a+b)", "members": ["a", "b"],
                                                                    "rule": "mean"}]}))
    Table({"id": ids, "fold": [0, 1, 2, 0, 1, 2], "confuser": ["ring", "spiral", "ring", "plain", "plain", "plain"],
           "modeling_rejected": [True, False, False, True, True, False]}).write(tmp_path / "nl.ecsv",
                                                                               format="ascii.ecsv")
    out = kb_nonlens_candidates(tmp_path / "nl.ecsv", tmp_path, tmp_path / "promotion.json", tmp_path / "best.json",
                                kb_variant={"a": "x", "b": "y"})
    # mean scores without n5: 0.8, 0.45, 0.8, 0.55, 0.1 -> candidates n0, n2, n3; rejected among them: n0, n3
    assert out["n_nonlenses_seen_by_a_member"] == 1 and out["n_nonlenses"] == 5
    assert out["n_candidates"] == 3 and out["rejected_fraction_modeling"] == pytest.approx(2 / 3)
    same = kb_nonlens_candidates(tmp_path / "nl.ecsv", tmp_path, tmp_path / "promotion.json", tmp_path / "best.json",
                                 kb_variant={"a": "x", "b": "y"}, nonlens_variant="x")
    assert same == out
    # a champion none of whose members learned from the non-lenses' variant scores them held out all the same
    (tmp_path / "promotion.json").write_text(json.dumps({"best": "b", "threshold": 0.5}))
    out = kb_nonlens_candidates(tmp_path / "nl.ecsv", tmp_path, tmp_path / "promotion.json", tmp_path / "best.json",
                                kb_variant={"a": "x", "b": "y"}, nonlens_variant="x")
    # b held out: 0.7, 0.1, 0.9, 0.9, 0.1 (n5 seen) -> candidates n0, n2, n3; rejected among them: n0, n3
    assert out["champion"] == "b" and out["n_nonlenses_seen_by_a_member"] == 1 and out["n_nonlenses"] == 5
    assert out["n_candidates"] == 3 and out["rejected_fraction_modeling"] == pytest.approx(2 / 3)
