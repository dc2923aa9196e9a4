"""Committees: combinations, rates, and the pyfunc model that wraps registered member models."""

import math

import numpy as np
import pytest

from lenssearch.errors import LensSearchError
from lenssearch.evaluate import committee as cm
from lenssearch.evaluate.metrics import roc_auc
from lenssearch.evaluate.common import load_wide
from lenssearch.evaluate.committee_stage import run_committee
from lenssearch.evaluate.synthetic import NETWORKS

from .conftest import replace


def test_combination_rules_and_search_space(synthetic):
    wide = load_wide(synthetic[0], NETWORKS)
    scores = np.stack([np.asarray(wide[f"p_{n}"]) for n in ("vgg", "f435w")])
    np.testing.assert_allclose(cm.Committee(("vgg", "f435w"), "mean").scores(wide), scores.mean(0))
    np.testing.assert_allclose(cm.Committee(("vgg", "f435w"), "product").scores(wide), scores[0] * scores[1])
    cands = cm.candidate_committees(list(NETWORKS), ["mean", "product"], 2, 5)
    n = len(NETWORKS)  # six networks: 2 x (15 + 20 + 15 + 6) = 112
    assert len(cands) == 2 * sum(math.comb(n, k) for k in range(2, 6))
    with pytest.raises(LensSearchError, match="at least 2"):
        cm.candidate_committees(list(NETWORKS), ["mean"], 1, 5)
    with pytest.raises(LensSearchError, match="unknown committee rule"):
        cm.combine(scores, "median")


def test_search_ranks_by_gate_and_committees_beat_members(synthetic):
    wide = load_wide(synthetic[0], NETWORKS)
    gate = {"metric": "auc", "purity_min": 0.9, "fpr": 0.01}
    res = cm.search_committees(wide, list(NETWORKS), ["mean", "product"], 2, 5, (1e-2, 1e-3, 1e-4), gate)
    gates = [r.gate for r in res]
    assert gates == sorted(gates, reverse=True)
    best = res[0]
    assert best.gate == pytest.approx(roc_auc(wide["label"], cm.Committee(best.members, best.rule).scores(wide)))
    # independent network noise averages out: the best committee beats every single network
    assert best.auc > max(roc_auc(wide["label"], wide[f"p_{n}"]) for n in NETWORKS)
    n_neg = int((np.asarray(wide["label"]) == 0).sum())
    assert 1e-2 >= 1 / n_neg > 1e-3
    assert best.tpr_at_fpr[1e-2] is not None
    assert best.tpr_at_fpr[1e-3] is None and best.tpr_at_fpr[1e-4] is None
    assert "not measurable" in cm.measurability_note(n_neg, (1e-2, 1e-3, 1e-4))


def test_committee_stage_logs_a_pyfunc_model_wrapping_members(synthetic, mlflow_store, cfg, tmp_path):
    import mlflow

    cfg = replace(cfg, "committee", members=("sc_vgg", "f435w", "f814w"), max_size=3)
    best = run_committee(cfg, synthetic[0], tmp_path / "committee", tracking_uri=mlflow_store)
    assert (tmp_path / "committee" / "committees.ecsv").exists()
    assert "not measurable" in (tmp_path / "committee" / "committee.md").read_text()
    chosen = best["committees"]
    assert {c["rule"] for c in chosen} == {"mean", "product"}
    # 4 committees of 3 candidate members x 2 rules, each an MLflow run with the networks' metric names
    runs = mlflow.search_runs(experiment_names=[cfg.evaluate.experiment], filter_string="tags.kind = 'committee'")
    assert len(runs) == 8 and "metrics.completeness_lens" in runs.columns and "metrics.tpr_at_fpr_1e-02" in runs
    # one run is the best, the one the parent names; the others say whether their model was logged
    parent = mlflow.search_runs(experiment_names=[cfg.evaluate.experiment], filter_string="tags.stage = 'committee' "
                                "and attributes.run_name = 'committees'", order_by=["attributes.start_time DESC"])
    assert list(runs.loc[runs["tags.best"] == "true", "tags.mlflow.runName"]) == [best["best"]]
    assert parent["tags.best"].iloc[0] == best["best"]
    assert set(runs.loc[runs["tags.logged_model"] == "true", "tags.mlflow.runName"]) == {c["name"] for c in chosen}
    # threshold metrics at each committee's own purity = completeness threshold, not at 0.5: a product committee
    # whose scores are far below 0.5 is not reported as completeness 0
    product = runs[runs["tags.rule"] == "product"]
    assert (product["params.threshold_rule"] == "purity=completeness").all()
    assert (product["metrics.completeness_lens"] > 0.2).all()
    for _, run in product.iterrows():
        assert run["metrics.purity_lens"] == pytest.approx(run["metrics.completeness_lens"], abs=0.1)
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (4, 16, 16, 3)).astype(np.float32)
    for c in chosen:
        model = mlflow.pyfunc.load_model(c["model_uri"])
        members = [mlflow.pyfunc.load_model(f"models:/lenssearch-{m}/1") for m in c["members"]]
        bands = {"f435w": 0, "f606w": 1, "f814w": 2}
        scores = np.stack([
            np.asarray(mm.predict(x if m not in bands else x[..., bands[m]:bands[m] + 1]))
            for m, mm in zip(c["members"], members)
        ])
        expected = scores.mean(0) if c["rule"] == "mean" else scores.prod(0)
        np.testing.assert_allclose(model.predict(x), expected, rtol=1e-6)
        frame = model.predict(x, params={"return_members": True})
        assert list(frame.columns) == [*c["members"], "probability"]
