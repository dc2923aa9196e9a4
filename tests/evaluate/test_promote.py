"""Promotion: the champion alias moves only to a model that beats it on the same gate metric."""

import json
import shutil

import numpy as np
import pytest
from astropy.table import Table

from lenssearch.config import GateConfig
from lenssearch.evaluate.promote import run_promote

from .conftest import replace


def degrade(src, dst, how: str, rng):
    """Copy the predictions of vgg and sc_vgg, made worse (noise) or better (truth)."""
    for net in ("vgg", "sc_vgg"):
        t = Table.read(src / net / "predictions.ecsv", format="ascii.ecsv")
        y = np.asarray(t["label"])
        if how == "worse":
            t["probability"] = 0.5 * np.asarray(t["probability"]) + 0.5 * rng.random(len(t))
        elif how == "better":
            t["probability"] = np.where(y == 1, 0.6 + 0.4 * rng.random(len(t)), 0.4 * rng.random(len(t)))
        (dst / net).mkdir(parents=True)
        t.write(dst / net / "predictions.ecsv", format="ascii.ecsv")
    return dst


def test_worse_model_never_takes_the_alias(synthetic, mlflow_store, cfg, tmp_path, capsys):
    import mlflow
    from mlflow import MlflowClient

    name = "lenssearch-promote-test"
    cfg = replace(cfg, "evaluate", networks=("vgg", "sc_vgg"))
    cfg = replace(cfg, "promote", registered_model=name)
    thresholds = tmp_path / "thresholds.json"
    thresholds.write_text(json.dumps({"models": {"vgg": {"threshold": 0.41, "qtp_lower": 0.2},
                                                 "sc_vgg": {"threshold": 0.37, "qtp_lower": 0.18}}}))
    rng = np.random.default_rng(0)
    client = MlflowClient(tracking_uri=mlflow_store, registry_uri=mlflow_store)
    out = tmp_path / "promotion.json"

    # 1. no champion yet: the best candidate is registered and takes the alias
    first = run_promote(cfg, synthetic[0], None, thresholds, out, tracking_uri=mlflow_store)
    assert first["alias_moved"] and first["version"] == "1"
    champ = client.get_model_version_by_alias(name, "champion")
    assert str(champ.version) == "1"
    assert champ.tags["gate_metric"] == "completeness_at_purity(purity_min=0.9)"
    assert float(champ.tags["gate_value"]) == pytest.approx(first["best_gate_value"], abs=1e-6)
    assert float(champ.tags["threshold"]) == pytest.approx(0.41 if first["best"] == "vgg" else 0.37)
    # the registered model and its version say what they are, the gate metric and the threshold
    assert "gate metric completeness_at_purity(purity_min=0.9)" in client.get_registered_model(name).description
    assert first["best"] in champ.description and "threshold" in champ.description
    assert f"{first['best_gate_value']:.4f}" in champ.description
    # it loads through mlflow.pyfunc and scores raw cutouts
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    x = rng.uniform(0, 1, (3, 16, 16, 3)).astype(np.float32)
    assert np.asarray(model.predict(x)).shape == (3,)
    # re-running with the same inputs registers nothing new
    again = run_promote(cfg, synthetic[0], None, thresholds, out, tracking_uri=mlflow_store)
    assert again["version"] == "1" and not again["alias_moved"]

    # 2. a worse model is registered for the record but never takes the alias
    worse = degrade(synthetic[0], tmp_path / "worse", "worse", rng)
    second = run_promote(cfg, worse, None, thresholds, out, tracking_uri=mlflow_store)
    assert second["best_gate_value"] < first["best_gate_value"]
    assert not second["alias_moved"] and second["version"] == "2"
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"

    # 3. --dry-run prints the comparison and registers nothing
    better = degrade(synthetic[0], tmp_path / "better", "better", rng)
    n_versions = len(client.search_model_versions(f"name = '{name}'"))
    dry = run_promote(cfg, better, None, thresholds, out, dry_run=True, tracking_uri=mlflow_store)
    assert dry["version"] is None and "promote" in capsys.readouterr().out
    assert len(client.search_model_versions(f"name = '{name}'")) == n_versions
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"

    # 4. a better model takes the alias
    third = run_promote(cfg, better, None, thresholds, out, tracking_uri=mlflow_store)
    assert third["alias_moved"] and str(client.get_model_version_by_alias(name, "champion").version) == third["version"]
    assert json.loads(out.read_text())["alias_moved"] is True

    # 5. after the KB changed (another out-of-fold set), the champion's gate value means something else: the alias
    #    follows the current KB's best even if its value is lower
    champ_before = client.get_model_version_by_alias(name, "champion")
    assert champ_before.tags["gate_set"] == third["gate_set"]
    rebuilt = tmp_path / "rebuilt"
    for net in ("vgg", "sc_vgg"):
        t = Table.read(worse / net / "predictions.ecsv", format="ascii.ecsv")
        t["id"] = [f"kb2-{i}" for i in t["id"]]
        (rebuilt / net).mkdir(parents=True)
        t.write(rebuilt / net / "predictions.ecsv", format="ascii.ecsv")
    moved = run_promote(cfg, rebuilt, None, thresholds, out, tracking_uri=mlflow_store)
    assert moved["best_gate_value"] < third["best_gate_value"]
    assert moved["alias_moved"] and "another out-of-fold set" in moved["reason"]
    assert moved["gate_set"] != third["gate_set"]
    assert str(client.get_model_version_by_alias(name, "champion").version) == moved["version"]
    # ... and on the same rebuilt KB, the usual rule holds again: better moves, worse does not
    again = run_promote(cfg, rebuilt, None, thresholds, out, tracking_uri=mlflow_store)
    assert not again["alias_moved"] and again["version"] == moved["version"]
    # ... a KB rebuilt with the same ids and labels but other cutouts (another recipe of hard negatives) is another
    #     set too: the predictions' kb_dvc_md5 tells it
    recipe = tmp_path / "recipe"
    for net in ("vgg", "sc_vgg"):
        t = Table.read(rebuilt / net / "predictions.ecsv", format="ascii.ecsv")
        t["probability"] = 0.5 * np.asarray(t["probability"]) + 0.5 * rng.random(len(t))
        t.meta["kb_dvc_md5"] = "0123456789abcdef0123456789abcdef"
        (recipe / net).mkdir(parents=True)
        t.write(recipe / net / "predictions.ecsv", format="ascii.ecsv")
    relabel = run_promote(cfg, recipe, None, thresholds, out, tracking_uri=mlflow_store)
    assert relabel["best_gate_value"] < moved["best_gate_value"]
    assert relabel["alias_moved"] and "another out-of-fold set" in relabel["reason"]
    assert str(client.get_model_version_by_alias(name, "champion").version) == relabel["version"]
    moved = relabel

    # 6. a champion measured with another gate metric is not compared: the alias stays
    auc_cfg = replace(cfg, "promote", gate=GateConfig(metric="auc", purity_min=0.9, fpr=0.01))
    shutil.rmtree(tmp_path / "worse")
    fourth = run_promote(auc_cfg, better, None, thresholds, out, tracking_uri=mlflow_store)
    assert not fourth["alias_moved"] and "no 'auc' value" in fourth["reason"]
    assert str(client.get_model_version_by_alias(name, "champion").version) == moved["version"]


def test_a_tie_at_the_tags_precision_never_moves_the_alias():
    """The champion's gate value is read back from its 6-decimal tag: the same gate value, rounded down in the tag
    (0.961296 for 0.9612962962...: the committee logged again by a re-run), is a tie, not a win."""
    from lenssearch.evaluate.promote import GATE_DECIMALS, beats_champion

    value = 0.9612962962962963
    tag = float(f"{value:.{GATE_DECIMALS}f}")
    assert tag < value and not beats_champion(value, tag, 0.0)
    rounded_up = 0.9234566
    assert not beats_champion(rounded_up, float(f"{rounded_up:.{GATE_DECIMALS}f}"), 0.0)
    one_more = value + 1 / 2700  # one more lens found of the KB's 2,700: a win
    assert beats_champion(one_more, tag, 0.0)
    assert not beats_champion(one_more, tag, 1e-3) and beats_champion(value + 2e-3, tag, 1e-3)
