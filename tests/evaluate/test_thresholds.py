"""Optuna-tuned thresholds against an exhaustive scan; seeded, stored in sqlite."""

import json

import numpy as np
import optuna
import pytest

from lenssearch.errors import LensSearchError
from lenssearch.evaluate.metrics import max_f1, purity_completeness_crossing
from lenssearch.evaluate.common import load_wide
from lenssearch.evaluate.tune import run_tune
from lenssearch.evaluate.thresholds import OBJECTIVES, qtp_objective, tune_threshold

from .conftest import replace


@pytest.fixture(scope="module")
def scored(synthetic):
    wide = load_wide(synthetic[0], ["sc_vgg"])
    return np.asarray(wide["label"]), np.asarray(wide["p_sc_vgg"], dtype=float)


def exhaustive(fn, labels, scores, purity_min=0.9):
    return max(fn(labels, scores, t, purity_min) for t in np.unique(scores))


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_optuna_reaches_the_exhaustive_optimum(objective, scored, tmp_path):
    labels, scores = scored
    res, studies = tune_threshold(
        "sc_vgg", labels, scores, objective=objective, purity_min=0.9, qtp_band_purity_min=0.5, n_trials=60,
        seed=1, storage=f"sqlite:///{tmp_path}/optuna.db")
    best = exhaustive(OBJECTIVES[objective], labels, scores)
    assert res.objective_value == pytest.approx(best, abs=0.01)
    if objective == "f1":
        assert res.f1 == pytest.approx(max_f1(labels, scores)[0], abs=0.01)
    if objective == "crossing":
        assert res.threshold == pytest.approx(purity_completeness_crossing(labels, scores)[0], abs=0.03)
    if objective == "completeness_at_purity":
        assert res.purity >= 0.9
    # the qTP band sits below the threshold and holds at least half lenses
    assert res.qtp_lower <= res.threshold
    assert res.qtp_lower == res.threshold or res.qtp_band_purity >= 0.5
    assert res.completeness_at_qtp >= res.completeness
    assert qtp_objective(labels, scores, res.qtp_lower, res.threshold, 0.5) == pytest.approx(studies[1].best_value)
    # both studies are in the sqlite storage with every trial
    names = {s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{tmp_path}/optuna.db")}
    assert names == {"sc_vgg/threshold", "sc_vgg/qtp"}
    assert len(optuna.load_study(study_name="sc_vgg/threshold", storage=f"sqlite:///{tmp_path}/optuna.db").trials) == 60


def test_seeded_and_repeatable(scored, tmp_path):
    labels, scores = scored
    kw = dict(objective="f1", purity_min=0.9, qtp_band_purity_min=0.5, n_trials=20, seed=3)
    a, _ = tune_threshold("x", labels, scores, storage=f"sqlite:///{tmp_path}/a.db", **kw)
    b, _ = tune_threshold("x", labels, scores, storage=f"sqlite:///{tmp_path}/b.db", **kw)
    np.testing.assert_equal(a.as_dict(), b.as_dict())  # NaN-aware
    with pytest.raises(LensSearchError, match="unknown"):
        tune_threshold("x", labels, scores, storage=f"sqlite:///{tmp_path}/c.db", **{**kw, "objective": "auc"})


def test_tune_stage_writes_thresholds_json(synthetic, cfg, tmp_path):
    cfg = replace(cfg, "tune", n_trials=12)
    cfg = replace(cfg, "evaluate", networks=("vgg", "sc_vgg"))
    best = tmp_path / "best.json"
    best.write_text(json.dumps({"committees": [{"name": "mean(vgg+sc_vgg)", "members": ["vgg", "sc_vgg"],
                                                "rule": "mean"}]}))
    doc = run_tune(cfg, synthetic[0], best, tmp_path / "thresholds.json", tmp_path / "tune" / "optuna.db",
                   tmp_path / "tune" / "plots", log_mlflow=False)
    stored = json.loads((tmp_path / "thresholds.json").read_text())
    assert stored == json.loads(json.dumps(doc))
    assert set(stored["models"]) == {"vgg", "sc_vgg", "mean(vgg+sc_vgg)"}
    assert all(0 < m["threshold"] < 1 for m in stored["models"].values())
    assert len(list((tmp_path / "tune" / "plots").glob("*.png"))) == 9  # 3 models x (2 histories + 1 slice)
