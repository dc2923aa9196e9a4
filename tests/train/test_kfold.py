"""The k-fold protocol end to end on a toy KB: out-of-fold predictions, resuming, reports, MLflow runs, the
registered model loaded through mlflow.pyfunc."""

from __future__ import annotations

import hashlib
import json
import subprocess

import keras
import mlflow
import numpy as np
import pytest
from astropy.table import Table
from numpy.testing import assert_allclose

from lenssearch.train.data import read_knowledge_base
from lenssearch.train.kfold import train_network

NETWORK = "sc_vgg"


@pytest.fixture(scope="module")
def trained(toy_kb_path, tiny_config, tmp_path_factory):
    """Train SC-VGG, killed after fold 0 (stop_after_folds=1), then re-run to completion."""
    root = tmp_path_factory.mktemp("train")
    uri = f"sqlite:///{root}/mlflow.db"
    cfg = tiny_config(max_epochs=24, warmup_epochs=10, run_model="retrain")  # the paper's run model
    models, reports = root / "models" / NETWORK, root / "reports" / NETWORK
    first = train_network(NETWORK, toy_kb_path, models, reports, cfg, tracking_uri=uri, stop_after_folds=1,
                          progress=False)
    after_kill = {
        "first": first,
        "done": sorted(p.parent.name for p in models.glob("*/result.json")),
        "reports": reports.exists(),
        "fold0_mtime": (models / "fold_0" / "model.keras").stat().st_mtime_ns,
        "run_file": json.loads((models / "mlflow.json").read_text()),
    }
    summary = train_network(NETWORK, toy_kb_path, models, reports, cfg, tracking_uri=uri, progress=False)
    return {"summary": summary, "after_kill": after_kill, "models": models, "reports": reports, "uri": uri,
            "kb": read_knowledge_base(toy_kb_path), "kb_path": toy_kb_path, "cfg": cfg}


def test_kill_after_one_fold_then_resume_trains_only_the_rest(trained):
    after = trained["after_kill"]
    assert after["first"] is None
    assert after["done"] == ["fold_0"] and not after["reports"]
    summary = trained["summary"]
    assert summary.trained_splits == ["fold_1", "fold_2", "run"]  # fold 0 reused, not retrained
    assert (trained["models"] / "fold_0" / "model.keras").stat().st_mtime_ns == after["fold0_mtime"]
    assert summary.parent_run_id == after["run_file"]["parent_run_id"]  # the same MLflow parent run continues
    assert not any(trained["models"].glob("*/checkpoint"))  # finished splits drop their epoch checkpoints


def test_exactly_one_out_of_fold_probability_per_cv_cutout(trained):
    kb = trained["kb"]
    table = Table.read(trained["reports"] / "predictions.ecsv", format="ascii.ecsv")
    assert table.colnames == ["id", "fold", "network", "label", "probability"]
    assert list(table["id"]) == list(kb.ids[kb.cv_indices])  # all CV cutouts, once each, in KB order
    assert np.all(table["fold"] == kb.fold[kb.cv_indices])
    assert np.all(table["label"] == kb.labels[kb.cv_indices])
    assert set(table["network"]) == {NETWORK}
    assert np.all((table["probability"] >= 0) & (table["probability"] <= 1))
    # each fold's probabilities come from the model that did not see it
    model = keras.models.load_model(trained["models"] / "fold_1" / "model.keras")
    rows = np.flatnonzero(kb.fold == 1)
    expected = model.predict(kb.cutouts[rows], verbose=0)[:, 0]
    assert_allclose(table["probability"][table["fold"] == 1], expected, rtol=1e-4, atol=1e-6)


def test_network_learns_the_toy_signal(trained):
    metrics = json.loads((trained["reports"] / "metrics.json").read_text())
    # a tiny SC-VGG (4-8-8 filters per branch, 24 epochs, 135 training cutouts) on arcs at 3-30 sigma
    assert metrics["oof"]["auc"] >= 0.75, metrics["oof"]
    assert metrics["folds"]["auc_median"] >= 0.75, metrics["folds"]
    assert metrics["run_model_validation"]["auc"] >= 0.65, metrics["run_model_validation"]  # 36 cutouts
    for name in ("roc.csv", "confusion.csv", "roc.png", "confusion.png", "folds_boxplot.png"):
        assert (trained["reports"] / name).stat().st_size > 0
    confusion = Table.read(trained["reports"] / "confusion.csv", format="ascii.csv")
    assert len(confusion) == len(trained["kb"].cv_indices)
    assert set(confusion["actual"]) == {"lens", "non-lens"}


def test_mlflow_parent_and_nested_runs(trained):
    from lenssearch import tracking

    summary = trained["summary"]
    mlflow.set_tracking_uri(trained["uri"])
    parent = mlflow.get_run(summary.parent_run_id)
    assert parent.data.tags["network"] == NETWORK
    md5 = hashlib.md5(trained["kb_path"].read_bytes()).hexdigest()
    assert parent.data.tags["kb_dvc_md5"] == md5
    assert parent.data.tags["git_commit"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert parent.data.tags["mlflow.source.git.commit"] == head
    assert parent.data.params["train.max_epochs"] == "24"
    assert parent.data.params["train.network.filters"] == "[8, 16, 16]"
    names = ("accuracy", "purity_lens", "completeness_lens", "f1_lens", "purity_nonlens", "completeness_nonlens",
             "f1_nonlens", "auc")
    # the parent logs the pooled out-of-fold values under the children's names: no empty column on either row
    for key in (*names, "auc_median", "auc_q1", "auc_q3", "auc_iqr", "f1_lens_median"):
        assert key in parent.data.metrics
    metrics = json.loads((trained["reports"] / "metrics.json").read_text())
    assert parent.data.metrics["auc"] == pytest.approx(metrics["oof"]["auc"])
    assert not any(k.startswith(("oof_", "run_validation_")) for k in parent.data.metrics)
    # the KB is the run's dataset, its digest the DVC hash
    (dataset_input,) = parent.inputs.dataset_inputs
    assert dataset_input.dataset.digest == md5 and dataset_input.dataset.name.startswith("kb-")
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "training"
    children = tracking.child_runs(summary.parent_run_id, trained["uri"])
    run_names = ["fold_0", "fold_1", "fold_2", "run_model"]
    assert sorted(run.info.run_name for run in children) == [f"{NETWORK}/{s}" for s in run_names]
    client = mlflow.MlflowClient(trained["uri"])
    for run in children:
        split = run.data.params["split"]  # fold_<k>, or run: the folder models/<network>/<split>
        assert run.info.run_name == f"{NETWORK}/{'run_model' if split == 'run' else split}"
        assert set(names) <= set(run.data.metrics)
        assert run.data.params["network"] == NETWORK
        assert int(run.data.params["n_test"]) > 0 and int(run.data.params["n_train"]) > 0
        assert run.info.status == "FINISHED"
        history = client.get_metric_history(run.info.run_id, "epoch/loss")
        assert len(history) >= 2 and [m.step for m in history] == list(range(len(history)))
        # live: each epoch logged when it ended, inside the run's lifetime, not all at once afterwards
        stamps = [m.timestamp for m in history]
        assert stamps == sorted(stamps) and stamps[-1] > stamps[0]
        assert run.info.start_time <= stamps[0] and stamps[-1] <= run.info.end_time
        assert {"epoch/val_loss", "epoch/accuracy", "epoch/learning_rate"} <= set(run.data.metrics)
        files = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"roc.csv", "roc.png", "confusion.png"} <= files
        fold_result = json.loads((trained["models"] / split / "result.json").read_text())
        assert run.data.metrics["auc"] == pytest.approx(fold_result["metrics"]["auc"])
    parent_files = {a.path for a in client.list_artifacts(summary.parent_run_id)}
    assert {"folds_boxplot.png", "predictions.ecsv", "metrics.json"} <= parent_files
    # the ECSV's CSV twin, which the MLflow UI previews
    assert "preview/predictions.csv" in {a.path for a in client.list_artifacts(summary.parent_run_id, "preview")}
    predictions = Table.read(trained["reports"] / "predictions.ecsv", format="ascii.ecsv")
    assert predictions.meta["mlflow_run_id"] == summary.parent_run_id and predictions.meta["kb_dvc_md5"] == md5
    assert predictions["probability"].description and predictions["fold"].description


def test_registered_model_scores_raw_cutouts_through_pyfunc(trained):
    summary = trained["summary"]
    kb = trained["kb"]
    mlflow.set_tracking_uri(trained["uri"])
    mlflow.set_registry_uri(trained["uri"])
    client = mlflow.MlflowClient()
    version = client.get_model_version(f"lenssearch-{NETWORK}", summary.registered_version)
    assert version.tags["network"] == NETWORK
    # descriptions: what the model is, which KB variant, the gate metric (and, per version, its value)
    described = client.get_registered_model(f"lenssearch-{NETWORK}").description
    assert NETWORK in described and "variant" in described and "out-of-fold ROC AUC" in described
    assert "four 90-degree rotations" in described  # the demo's train.test_time_symmetries: 4
    assert f"{version.tags['oof_auc'][:6]}" in version.description or "AUC" in version.description
    assert version.tags["kb_dvc_md5"] in version.description
    pyfunc = mlflow.pyfunc.load_model(f"models:/lenssearch-{NETWORK}/{summary.registered_version}")
    inputs = pyfunc.metadata.get_input_schema().inputs[0]
    assert tuple(inputs.shape) == (-1, 64, 64, 3) and inputs.type == np.dtype("float32")
    raw = kb.cutouts[kb.validation_indices[:8]]
    scores = np.asarray(pyfunc.predict(raw)).reshape(-1)
    run_model = keras.models.load_model(trained["models"] / "run" / "model.keras")
    assert_allclose(scores, run_model.predict(raw, verbose=0)[:, 0], rtol=1e-5, atol=1e-6)
    assert np.all((scores >= 0) & (scores <= 1))


def test_a_network_can_train_for_its_own_number_of_epochs():
    import dataclasses as dc
    from pathlib import Path

    from lenssearch.config import load_config
    from lenssearch.train.kfold import network_train_config

    repo = Path(__file__).resolve().parents[2]
    cfg = load_config(repo / "params.yaml")
    cfg = dc.replace(cfg, train=dc.replace(cfg.train, max_epochs=16, max_epochs_by_network={"vgg": 22}))
    assert network_train_config(cfg, "vgg").train.max_epochs == 22
    assert network_train_config(cfg, "resnet").train.max_epochs == 16
    paper = load_config(repo / "params.yaml", repo / "configs" / "paper.yaml")
    assert network_train_config(paper, "vgg").train.max_epochs == paper.train.max_epochs == 100


def test_one_networks_epochs_or_batch_size_never_change_another_networks_training_fingerprint():
    """The per-network dicts enter a network's fingerprint (its folders are kept or emptied by it) with its own entry
    only: giving f814w more epochs must not retrain vgg."""
    import dataclasses as dc
    from pathlib import Path

    from lenssearch.config import load_config
    from lenssearch.train.kfold import _fingerprint, network_train_config

    repo = Path(__file__).resolve().parents[2]
    cfg = load_config(repo / "params.yaml")

    def fingerprint(network, **changes):
        train = cfg.train
        for key, (name, value) in changes.items():
            train = dc.replace(train, **{key: {**dict(getattr(train, key)), name: value}})
        changed = dc.replace(cfg, train=train)
        return _fingerprint(network, network_train_config(changed, network), "kb-hash")

    base = fingerprint("vgg")
    assert fingerprint("vgg", max_epochs_by_network=("f814w", 40)) == base
    assert fingerprint("vgg", batch_size=("sc_vgg", 8)) == base
    assert fingerprint("vgg", kb_variant=("f814w", "angora")) == base
    assert fingerprint("vgg", max_epochs_by_network=("vgg", 40)) != base
    assert fingerprint("vgg", batch_size=("vgg", 64)) != base
    assert fingerprint("vgg", kb_variant=("vgg", "angora")) != base
    assert fingerprint("f814w") != base
    assert _fingerprint("vgg", network_train_config(dc.replace(cfg, train=dc.replace(cfg.train, learning_rate=2e-3)),
                                                    "vgg"), "kb-hash") != base
    assert _fingerprint("vgg", network_train_config(cfg, "vgg"), "another-kb") != base


def test_fold_mean_run_model_is_the_mean_of_the_fold_networks_and_is_registered(toy_kb_path, tiny_config, tmp_path):
    """``train.run_model: fold_mean`` (the demo's): no (k+1)-th training; the served model's probability is the
    mean of the k fold networks', on the validation split and through the registered pyfunc."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = tiny_config(max_epochs=12, warmup_epochs=4, run_model="fold_mean")
    models, reports = tmp_path / "models" / NETWORK, tmp_path / "reports" / NETWORK
    summary = train_network(NETWORK, toy_kb_path, models, reports, cfg, tracking_uri=uri, progress=False)
    assert summary.trained_splits == ["fold_0", "fold_1", "fold_2", "run"]
    result = json.loads((models / "run" / "result.json").read_text())
    assert result["kind"] == "fold_mean" and result["epochs"] == 0
    kb = read_knowledge_base(toy_kb_path)
    raw = kb.cutouts[kb.validation_indices]
    folds = [keras.models.load_model(models / f"fold_{k}" / "model.keras") for k in range(3)]
    expected = np.mean([m.predict(raw, verbose=0)[:, 0] for m in folds], axis=0)
    run = Table.read(models / "run" / "predictions.ecsv", format="ascii.ecsv")
    assert list(run["id"]) == list(kb.ids[kb.validation_indices])
    assert_allclose(np.asarray(run["probability"]), expected, rtol=1e-4, atol=1e-5)
    metrics = json.loads((reports / "metrics.json").read_text())
    from sklearn.metrics import roc_auc_score

    assert metrics["run_model_validation"]["auc"] == pytest.approx(
        roc_auc_score(kb.labels[kb.validation_indices], expected), abs=1e-6)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    version = mlflow.MlflowClient().get_model_version(f"lenssearch-{NETWORK}", summary.registered_version)
    assert version.tags["run_model"] == "fold_mean"
    pyfunc = mlflow.pyfunc.load_model(f"models:/lenssearch-{NETWORK}/{summary.registered_version}")
    assert_allclose(np.asarray(pyfunc.predict(raw[:8])).reshape(-1), expected[:8], rtol=1e-4, atol=1e-5)
