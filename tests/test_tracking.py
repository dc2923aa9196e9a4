"""MLflow helpers of the train stage, on a real sqlite store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import mlflow
import numpy as np
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
        fold_id = tracking.log_fold_run("vgg/fold_0", {"epoch_loss": [0.7, 0.6, 0.5]},
                                        {"auc": 0.9, "bad": float("nan")}, [artifact], params={"split": "fold_0"})
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
    assert children[0].data.params == {"split": "fold_0"}
    assert [m.value for m in client.get_metric_history(fold_id, "epoch_loss")] == [0.7, 0.6, 0.5]
    assert [a.path for a in client.list_artifacts(fold_id)] == ["roc.csv"]
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.name == tracking.TRAIN_EXPERIMENT
    assert experiment.artifact_location == f"mlflow-artifacts:/{tracking.TRAIN_EXPERIMENT}"  # project-relative
    assert (tmp_path / "mlartifacts" / tracking.TRAIN_EXPERIMENT / fold_id / "artifacts" / "roc.csv").is_file()


def test_fold_run_needs_a_parent(store):
    with pytest.raises(RuntimeError, match="active parent"):
        tracking.log_fold_run("fold_0", {}, {"auc": 0.5})


def _git_repo(path):
    import subprocess

    def git(*args):
        subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")
    (path / "code.py").write_text("x = 1\n")
    (path / "dvc.lock").write_text("schema: '2.0'\n")
    git("add", "code.py", "dvc.lock")
    git("commit", "-qm", "init")
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True).stdout.strip()


def test_runs_carry_the_git_commit_and_a_dirty_tree_its_diff(store, tmp_path, monkeypatch):
    """mlflow.source.git.commit on every run; dvc.lock rewritten by dvc repro is not a dirty source, a code
    change is, and its diff is the run's artifact source/git_diff.patch."""
    repo = tmp_path / "repo"
    repo.mkdir()
    head = _git_repo(repo)
    monkeypatch.chdir(repo)
    tracking._source.cache_clear()
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")  # what dvc repro does
    with tracking.tracked_run("clean", experiment="t") as run:
        pass
    client = mlflow.MlflowClient(store)
    clean = client.get_run(run.info.run_id)
    assert clean.data.tags["mlflow.source.git.commit"] == head and clean.data.tags["git_dirty"] == "false"
    assert tracking.git_commit() == head
    assert not client.list_artifacts(run.info.run_id)

    (repo / "code.py").write_text("x = 2\n")
    tracking._source.cache_clear()
    with tracking.tracked_run("dirty", experiment="t") as run:
        pass
    dirty = client.get_run(run.info.run_id)
    assert dirty.data.tags["mlflow.source.git.commit"] == head and dirty.data.tags["git_dirty"] == "true"
    assert tracking.git_commit() == f"{head}-dirty"
    patch = Path(client.download_artifacts(run.info.run_id, "source/git_diff.patch", str(tmp_path)))
    text = patch.read_text()
    assert "+x = 2" in text and "dvc.lock" not in text
    tracking._source.cache_clear()


def test_the_package_imports_mlflow_only_in_tracking():
    """One tracking module: no other module of lenssearch imports mlflow (the committee's and the modeling
    network's model-from-code files, which MLflow itself loads, aside)."""
    import ast

    root = Path(tracking.__file__).parent
    importers = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "mlflow" or n.startswith("mlflow.") for n in names):
                importers.add(path.relative_to(root).as_posix())
    assert importers == {"tracking.py", "evaluate/committee_model.py", "modeling/pyfunc_model.py"}


def test_one_metrics_module():
    """train, evaluate, committee and tune compute metrics with lenssearch.evaluate.metrics only."""
    import ast

    root = Path(tracking.__file__).parent
    modules = {p.relative_to(root).as_posix() for p in root.rglob("*metrics*.py")}
    assert modules == {"evaluate/metrics.py"}
    for name in ("train/kfold.py", "evaluate/stages.py", "evaluate/committee.py", "evaluate/thresholds.py"):
        tree = ast.parse((root / name).read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {f"{node.module}.{a.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                     for a in node.names}
        assert "lenssearch.evaluate.metrics" in imported, name
        assert not any("sklearn.metrics" in (m or "") for m in imported), name


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_artifacts_are_project_relative_a_moved_clone_keeps_them_and_the_ui_serves_them(tmp_path, monkeypatch):
    """Experiments record mlflow-artifacts:/<experiment>; the files live in mlartifacts/ beside mlflow.db. After
    moving the folder, runs and registered models still load, and `mlflow server --artifacts-destination
    ./mlartifacts` (make ui) serves the same files."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    import requests

    first = tmp_path / "clone"
    first.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{first}/mlflow.db")
    (first / "note.txt").write_text("hello\n")
    with tracking.tracked_run("r", experiment="lenssearch-test") as run:
        tracking.log_artifacts([first / "note.txt"])
        run_id = run.info.run_id
    uri = tracking.log_stand_in_model("lenssearch-moved", 3, 2.0, first)
    client = mlflow.MlflowClient(f"sqlite:///{first}/mlflow.db")
    experiment = client.get_experiment_by_name("lenssearch-test")
    assert experiment.artifact_location == "mlflow-artifacts:/lenssearch-test"
    assert (first / "mlartifacts" / "lenssearch-test" / run_id / "artifacts" / "note.txt").is_file()

    moved = tmp_path / "elsewhere" / "clone"
    shutil.move(str(first), str(moved))
    store = f"sqlite:///{moved}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    tracking.setup(store)
    client = mlflow.MlflowClient(store)
    assert "note.txt" in [a.path for a in client.list_artifacts(run_id)]
    model = tracking.load_pyfunc(uri, store)
    assert model.predict(np.full((2, 4, 4, 3), 0.5, dtype=np.float32)).shape == (2,)

    port = _free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store, "--artifacts-destination",
         "./mlartifacts", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=moved, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                if requests.get(f"{base}/health", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start")
        got = requests.get(f"{base}/get-artifact", params={"run_uuid": run_id, "path": "note.txt"}, timeout=30)
        assert got.status_code == 200 and got.text == "hello\n"
        listed = requests.get(f"{base}/api/2.0/mlflow/artifacts/list", params={"run_id": run_id}, timeout=30).json()
        assert "note.txt" in [f["path"] for f in listed["files"]]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_a_reused_version_is_made_the_newest_again(store):
    """The train stage reuses a version it registered before when its inputs are back to what they were; a newer
    version made from other inputs must not stay the one served as the newest (committees, the independent test):
    the reused version is copied as the newest, with its tags."""
    from mlflow import MlflowClient

    class Model(mlflow.pyfunc.PythonModel):
        def __init__(self, value):
            self.value = value

        def predict(self, context, model_input, params=None):
            return np.full(len(model_input), self.value)

    client = MlflowClient()
    for value in (1.0, 2.0):
        with mlflow.start_run():
            mlflow.pyfunc.log_model(name="m", python_model=Model(value), registered_model_name="lenssearch-toy")
    client.set_model_version_tag("lenssearch-toy", "1", "kb_variant", "visible")
    assert tracking.make_latest("lenssearch-toy", "2") == "2"  # already the newest: nothing copied
    assert tracking.make_latest("lenssearch-toy", "1") == "3"
    newest = tracking.latest_version("lenssearch-toy")
    assert str(newest.version) == "3" and newest.tags["kb_variant"] == "visible"
    assert newest.tags["copied_from_version"] == "1"
    model = mlflow.pyfunc.load_model(tracking.latest_model_uri("lenssearch-toy"))
    assert np.all(model.predict(np.zeros((2, 1))) == 1.0)
