"""The independent scorer on tiny real registered MLflow models (tracking.log_stand_in_model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from numpy.testing import assert_allclose

from lenssearch.errors import LensSearchError
from lenssearch.independent import score as sc

from .conftest import PARAMS, with_independent


def stand_in(cutouts: np.ndarray, scale: float) -> np.ndarray:
    """The stand-in model's probability computed with numpy: sigmoid(scale * (mean pixel - 0.5))."""
    m = cutouts.reshape(len(cutouts), -1).astype(np.float64).mean(axis=1)
    return 1.0 / (1.0 + np.exp(-scale * (m - 0.5)))


@pytest.fixture(scope="module")
def scored(cfg, small_set, registry, tmp_path_factory):
    uri, models = registry
    out = tmp_path_factory.mktemp("scored") / "independent"
    small_batches = with_independent(cfg, batch_size=7, models=tuple(u for u, _, _ in models.values()))
    doc = sc.run_independent_score(small_batches, small_set, out, tracking_uri=uri)
    return doc, out, models, uri


def test_scores_are_the_models_on_their_bands(scored, small_set):
    from astropy.table import Table

    from lenssearch.simulate.store import read_cutout_set

    doc, out, models, _ = scored
    cutouts, meta, _ = read_cutout_set(small_set)
    table = Table.read(out / "scores.ecsv")
    assert list(table["id"]) == list(meta["id"]) and list(table["label"]) == list(meta["label"])
    _, scale_c, _ = models["champion"]
    _, scale_f, _ = models["f814w"]
    assert_allclose(table["p_champion"], stand_in(cutouts, scale_c), rtol=1e-5)
    assert_allclose(table["p_f814w"], stand_in(cutouts[..., 2:3], scale_f), rtol=1e-5)  # F814W alone
    assert doc["models"]["f814w"]["bands"] == ["F814W"]
    assert doc["models"]["champion"]["bands"] == ["F435W", "F606W", "F814W"]


def test_metrics_equal_scikit_learn(scored):
    from astropy.table import Table
    from sklearn.metrics import roc_auc_score

    doc, out, models, _ = scored
    table = Table.read(out / "scores.ecsv")
    on_disk = json.loads((out / "metrics.json").read_text(), parse_constant=pytest.fail)  # strict JSON
    assert on_disk["snr_bins"][-1] is None  # the open bin's .inf
    labels = np.asarray(table["label"])
    kinds = np.asarray(table["kind"]).astype(str)
    for label, (_, _, threshold) in models.items():
        p = np.asarray(table[f"p_{label}"])
        m = on_disk["models"][label]
        assert m["auc"] == pytest.approx(roc_auc_score(labels, p), abs=1e-12)
        assert m["threshold"] == threshold  # the champion's tuned tag (0.3), else the default 0.5
        snr = np.asarray(table["lensed_snr"]) if label == "champion" else np.asarray(table["lensed_snr_F814W"])
        bright = (labels == 0) | (snr >= 30)
        if np.any(labels[bright] == 1):
            assert m["auc_snr_ge_30"] == pytest.approx(roc_auc_score(labels[bright], p[bright]), abs=1e-12)
        for b in m["auc_by_snr_bin"]:
            hi = np.inf if b["snr_max"] is None else b["snr_max"]
            sel = (labels == 0) | ((snr >= b["snr_min"]) & (snr < hi))
            assert b["n_lenses"] == int(np.sum(sel & (labels == 1)))
            if b["n_lenses"]:
                assert b["auc"] == pytest.approx(roc_auc_score(labels[sel], p[sel]), abs=1e-12)
        for kind, v in m["fpr_by_kind"].items():
            assert v["fpr"] == pytest.approx(np.mean(p[kinds == kind] >= threshold))
            against = ((labels == 1) & (snr >= 30)) | (kinds == kind)  # bright lenses against this kind alone
            if np.any(labels[against] == 1):
                assert v["auc_snr_ge_30"] == pytest.approx(roc_auc_score(labels[against], p[against]), abs=1e-12)
            else:
                assert v["auc_snr_ge_30"] is None
        # 14 non-lenses: FPR 1e-2 and 1e-3 are below 1/N_neg, so not measurable
        assert m["tpr_at_fpr"] == {"0.01": None, "0.001": None}
    assert "champion" in (out / "summary.md").read_text() and (out / "roc.png").stat().st_size > 0
    assert doc["champion"]["label"] == "champion"


def test_logged_to_mlflow(scored):
    import mlflow

    doc, _, _, uri = scored
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["lenssearch-independent"], output_format="list")
    assert runs and runs[0].data.metrics["champion.auc"] == pytest.approx(doc["models"]["champion"]["auc"])


def test_unknown_model_uri_exits_2(small_set, registry, tmp_path):
    from typer.testing import CliRunner

    from lenssearch.cli import app

    uri, _ = registry
    res = CliRunner().invoke(app, ["independent", "score", "--set", str(small_set), "--out", str(tmp_path / "o"),
                                   "--model", "models:/lenssearch-f814w/latest",
                                   "--model", "models:/lenssearch-nope/latest",
                                   "--tracking-uri", uri, "--no-mlflow", "--params", str(PARAMS)])
    assert res.exit_code == 2
    assert "models:/lenssearch-nope/latest" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_model_channels():
    bands = ("F435W", "F606W", "F814W")
    assert sc.model_channels("models:/lenssearch-f606w/latest", 1, bands) == (1,)
    assert sc.model_channels("models:/lenssearch@champion", 3, bands) == (0, 1, 2)
    assert sc.model_channels("runs:/abc/committee", None, bands) == (0, 1, 2)
    assert sc.model_channels("models:/lenssearch@champion", 1, bands, {"candidate": "f435w"}) == (0,)
    with pytest.raises(LensSearchError, match="takes one band"):
        sc.model_channels("models:/lenssearch-vgg/latest", 1, bands)
    with pytest.raises(LensSearchError, match="2 channels"):
        sc.model_channels("models:/x/1", 2, bands)
    assert sc.default_label("models:/lenssearch@champion") == "champion"
    assert sc.default_label("models:/lenssearch-sc_vgg/latest") == "sc_vgg"


def test_a_model_given_twice_is_scored_once(cfg, small_set, registry):
    """The champion is a version of a selected committee's logged model (its 'source_uri' tag): scoring both
    passes every cutout through that model once, and both columns get its scores."""
    from mlflow import MlflowClient

    from lenssearch import tracking
    from lenssearch.simulate.store import read_cutout_set

    uri, models = registry
    tracking.setup(uri)
    version = tracking.resolve_model_version("models:/lenssearch@champion", uri)
    source = f"models:/lenssearch/{version}"
    client = MlflowClient(uri)
    client.set_model_version_tag("lenssearch", version, "source_uri", source)
    try:
        loaded = sc.load_models([("champion", "models:/lenssearch@champion"), ("committee", source),
                                 ("f814w", models["f814w"][0])], ("F435W", "F606W", "F814W"), 0.5, uri)
    finally:
        client.delete_model_version_tag("lenssearch", version, "source_uri")
    calls = {m.label: 0 for m in loaded}
    for m in loaded:
        score = m.scorer.score

        def counted(x, _score=score, _label=m.label):
            calls[_label] += 1
            return _score(x)

        m.scorer.score = counted
    meta, scores, _ = sc.score_set(small_set, loaded, batch_size=7)
    batches = -(-len(meta) // 7)
    assert calls == {"champion": batches, "committee": 0, "f814w": batches}
    cutouts, _, _ = read_cutout_set(small_set)
    assert_allclose(scores["committee"], stand_in(cutouts, models["champion"][1]), rtol=1e-5)
    assert_allclose(scores["champion"], scores["committee"])
    assert_allclose(scores["f814w"], stand_in(cutouts[..., 2:3], models["f814w"][1]), rtol=1e-5)
