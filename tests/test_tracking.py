"""MLflow helpers of the train stage, on a real sqlite store."""

from __future__ import annotations

import hashlib

import mlflow
import pytest

from lenssearch import tracking


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def test_tracking_uri_from_argument_environment_or_default(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.resolve_tracking_uri() == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////x/y.db")
    assert tracking.resolve_tracking_uri() == "sqlite:////x/y.db"
    assert tracking.resolve_tracking_uri("sqlite:////a.db") == "sqlite:////a.db"
    assert tracking.artifact_root_for(f"sqlite:///{tmp_path}/m.db") == tmp_path / "mlartifacts"


def test_kb_hash_from_dvc_lock_or_computed(tmp_path):
    kb = tmp_path / "kb.h5"
    kb.write_bytes(b"knowledge base bytes")
    md5 = hashlib.md5(b"knowledge base bytes").hexdigest()
    assert tracking.kb_dvc_hash(kb, tmp_path / "no.lock") == md5
    lock = tmp_path / "dvc.lock"
    lock.write_text(
        f"schema: '2.0'\nstages:\n  kb:\n    cmd: x\n    outs:\n    - path: {kb}\n      md5: abc123\n"
        f"      size: {kb.stat().st_size}\n"
    )
    assert tracking.kb_dvc_hash(kb, lock) == "abc123"
    kb.write_bytes(b"changed since the lock")  # size differs: the lock is stale, compute
    assert tracking.kb_dvc_hash(kb, lock) == hashlib.md5(b"changed since the lock").hexdigest()


def test_network_run_resumes_and_nests_fold_runs(store, tmp_path):
    artifact = tmp_path / "roc.csv"
    artifact.write_text("fpr,tpr\n0,0\n1,1\n")
    with tracking.network_run("vgg", {"train.max_epochs": 3}, {"kb_dvc_md5": "abc"}) as run_id:
        fold_id = tracking.log_fold_run("fold_0", {"epoch_loss": [0.7, 0.6, 0.5]}, {"auc": 0.9, "bad": float("nan")},
                                        [artifact])
    assert tracking.run_exists(run_id) and not tracking.run_exists("0" * 32)
    with tracking.network_run("vgg", {"train.max_epochs": 3}, run_id=run_id) as again:
        tracking.log_summary({"auc_median": 0.9})
    assert again == run_id
    client = mlflow.MlflowClient(store)
    parent = client.get_run(run_id)
    assert parent.data.tags["network"] == "vgg" and parent.data.tags["kb_dvc_md5"] == "abc"
    assert parent.data.metrics["auc_median"] == 0.9
    children = tracking.child_runs(run_id)
    assert [c.info.run_id for c in children] == [fold_id]
    assert children[0].data.metrics == {"epoch_loss": 0.5, "auc": 0.9}
    assert [m.value for m in client.get_metric_history(fold_id, "epoch_loss")] == [0.7, 0.6, 0.5]
    assert [a.path for a in client.list_artifacts(fold_id)] == ["roc.csv"]
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.name == tracking.TRAIN_EXPERIMENT
    assert experiment.artifact_location.startswith((tmp_path / "mlartifacts").as_uri())


def test_fold_run_needs_a_parent(store):
    with pytest.raises(RuntimeError, match="active parent"):
        tracking.log_fold_run("fold_0", {}, {"auc": 0.5})
