"""MLflow tracking: the only module of the package that imports mlflow.

Runs are recorded in a local SQLite store (``sqlite:///mlflow.db``) with artifacts under ``mlartifacts/``
(``make ui`` serves them on 127.0.0.1). MLflow records; DVC orchestrates and caches.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Mapping

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_ARTIFACT_ROOT = "mlartifacts"


def mlflow_setup(experiment: str = "lenssearch", tracking_uri: str = DEFAULT_TRACKING_URI,
                 artifact_root: str | Path = DEFAULT_ARTIFACT_ROOT):
    """Point MLflow at the local store and select (creating if needed) ``experiment``; returns its id.

    Parameters
    ----------
    experiment
        Experiment name.
    tracking_uri
        The tracking store (default ``sqlite:///mlflow.db`` in the working directory).
    artifact_root
        Folder for the artifacts of a newly created experiment (default ``mlartifacts/``).
    """
    import mlflow

    from lenssearch._runtime import apply_offline_env

    apply_offline_env()
    mlflow.set_tracking_uri(tracking_uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        location = Path(artifact_root).resolve().as_uri()
        experiment_id = mlflow.create_experiment(experiment, artifact_location=location)
    else:
        experiment_id = found.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


@contextlib.contextmanager
def tracked_run(run_name: str, experiment: str = "lenssearch", params: Mapping | None = None,
                tags: Mapping | None = None, tracking_uri: str = DEFAULT_TRACKING_URI,
                artifact_root: str | Path = DEFAULT_ARTIFACT_ROOT) -> Iterator[object]:
    """A run in ``experiment`` with flattened ``params`` and ``tags`` logged; yields the active run."""
    import mlflow

    mlflow_setup(experiment, tracking_uri, artifact_root)
    with mlflow.start_run(run_name=run_name) as run:
        if params:
            mlflow.log_params({k: (str(v)[:6000]) for k, v in params.items()})
        if tags:
            mlflow.set_tags(dict(tags))
        yield run


def log_metrics(metrics: Mapping[str, float]) -> None:
    """Log numeric metrics of the active run (non-numeric values are skipped)."""
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))})


def log_artifacts(paths, artifact_path: str | None = None) -> None:
    """Log files (or folders) as artifacts of the active run."""
    import mlflow

    for p in paths:
        p = Path(p)
        if p.is_dir():
            mlflow.log_artifacts(str(p), artifact_path=artifact_path)
        elif p.exists():
            mlflow.log_artifact(str(p), artifact_path=artifact_path)


def load_pyfunc(uri: str, tracking_uri: str = DEFAULT_TRACKING_URI):
    """Load a logged or registered model (``models:/name@alias``, ``models:/name/1``, ``runs:/...``) as a pyfunc.

    Raises
    ------
    LensSearchError
        The URI names no model in the store (unknown name, version or alias, or a missing artifact).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from lenssearch._runtime import apply_offline_env
    from lenssearch.errors import LensSearchError

    apply_offline_env()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        return mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LensSearchError(f"model URI '{uri}' cannot be loaded from {tracking_uri}: {reason}") from None


def model_version_tags(uri: str, tracking_uri: str = DEFAULT_TRACKING_URI) -> dict[str, str]:
    """Tags of the registered model version named by ``models:/<name>@<alias>`` or ``models:/<name>/<version>``.

    Other URIs (runs, logged-model ids, ``latest``) have no version tags: ``{}``.
    """
    import re

    from mlflow import MlflowClient

    match = re.fullmatch(r"models:/([^/@]+)(?:@([^/]+)|/(\d+))", uri)
    if match is None:
        return {}
    name, alias, version = match.groups()
    client = MlflowClient(tracking_uri)
    found = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    return dict(found.tags or {})


# ------------------------------------------------------------------------------------------ training (issue 4)
#: The experiment of the ``train`` stage: one parent run per network, one nested run per fold and the run model.
TRAIN_EXPERIMENT = "lenssearch-train"


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """``tracking_uri`` if given, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``."""
    import os

    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def artifact_root_for(tracking_uri: str) -> Path:
    """``mlartifacts/`` beside a sqlite store (``mlartifacts/`` in the working directory for other stores)."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri[len("sqlite:///"):]).resolve().parent / DEFAULT_ARTIFACT_ROOT
    return Path(DEFAULT_ARTIFACT_ROOT).resolve()


def _train_setup(tracking_uri: str | None, experiment: str) -> str:
    """Point MLflow (tracking and registry) at the store and get or create ``experiment``; returns its id."""
    import mlflow

    from lenssearch._runtime import apply_offline_env

    apply_offline_env()
    uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    location = (artifact_root_for(uri) / experiment).as_uri()
    try:
        return mlflow.create_experiment(experiment, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # created meanwhile by another process
        return mlflow.get_experiment_by_name(experiment).experiment_id


def kb_dvc_hash(kb_path: str | Path, lock_path: str | Path = "dvc.lock") -> str:
    """The DVC hash (md5) of the knowledge base: from ``dvc.lock`` when it lists ``kb_path`` with the file's
    current size, else computed from the file (DVC's md5 of a single file is the md5 of its bytes)."""
    import hashlib

    import yaml

    kb_path = Path(kb_path)
    lock_path = Path(lock_path)
    size = kb_path.stat().st_size
    if lock_path.is_file():
        try:
            lock = yaml.safe_load(lock_path.read_text()) or {}
        except yaml.YAMLError:
            lock = {}
        for stage in (lock.get("stages") or {}).values():
            for out in stage.get("outs") or []:
                same = Path(str(out.get("path", ""))).resolve() == kb_path.resolve()
                if same and out.get("md5") and out.get("size") == size:
                    return str(out["md5"])
    digest = hashlib.md5()
    with open(kb_path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_commit(path: str | Path = ".") -> str:
    """The git commit of the working tree at ``path`` (suffixed ``-dirty`` when it has changes), or ``unknown``."""
    import subprocess

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=path, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def run_exists(run_id: str | None, tracking_uri: str | None = None) -> bool:
    """Whether ``run_id`` is an active (not deleted) run of the store."""
    if not run_id:
        return False
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(resolve_tracking_uri(tracking_uri))
    try:
        return mlflow.get_run(run_id).info.lifecycle_stage == "active"
    except MlflowException:
        return False


@contextlib.contextmanager
def network_run(
    network: str,
    params: Mapping | None = None,
    tags: Mapping | None = None,
    run_id: str | None = None,
    tracking_uri: str | None = None,
    experiment: str = TRAIN_EXPERIMENT,
) -> Iterator[str]:
    """The parent run of one network's training; yields its run id.

    Resumes ``run_id`` when it exists in the store (a training that was killed and re-run), else starts a new
    run named after the network. ``params`` (flattened, dotted keys) and ``tags`` are logged either way.
    """
    import mlflow

    experiment_id = _train_setup(tracking_uri, experiment)
    # the process-wide active experiment must be this one, or resuming a run by id is refused
    mlflow.set_experiment(experiment_id=experiment_id)
    resume = run_id if run_exists(run_id, tracking_uri) else None
    kwargs = {"run_id": resume} if resume else {"run_name": network, "experiment_id": experiment_id}
    with mlflow.start_run(**kwargs) as run:
        if params:
            mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})
        mlflow.set_tags({"network": network, "lenssearch.stage": "train", **dict(tags or {})})
        yield run.info.run_id


def _finite(metrics: Mapping[str, float]) -> dict[str, float]:
    import math

    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def log_fold_run(
    name: str,
    history: Mapping[str, list],
    metrics: Mapping[str, float],
    artifacts=(),
    tags: Mapping | None = None,
) -> str:
    """A nested run under the active parent: per-epoch ``history`` (step = epoch), final ``metrics``, files.

    Returns the nested run's id.
    """
    import mlflow

    parent = mlflow.active_run()
    if parent is None:
        raise RuntimeError("log_fold_run needs an active parent run (use network_run)")
    import time

    from mlflow import MlflowClient
    from mlflow.entities import Metric

    with mlflow.start_run(run_name=name, nested=True, experiment_id=parent.info.experiment_id) as run:
        now = int(time.time() * 1000)
        entries = [
            Metric(key, value, now, epoch)
            for key, values in history.items()
            for epoch, value in enumerate(values)
            if _finite({key: value})
        ]
        entries += [Metric(key, value, now, 0) for key, value in _finite(metrics).items()]
        client = MlflowClient()
        for start in range(0, len(entries), 1000):  # MLflow's limit per batch
            client.log_batch(run.info.run_id, metrics=entries[start : start + 1000])
        mlflow.set_tags({"fold": name, **{k: str(v) for k, v in (tags or {}).items()}})
        log_artifacts(artifacts)
        return run.info.run_id


def log_summary(metrics: Mapping[str, float], artifacts=()) -> None:
    """Log metrics (non-finite values skipped) and files on the active (parent) run."""
    import mlflow

    mlflow.log_metrics(_finite(metrics))
    log_artifacts(artifacts)


def log_registered_keras_model(model, input_example, registered_name: str, tags: Mapping | None = None) -> str:
    """Log a Keras model on the active run (TensorFlow flavour, signature inferred from ``input_example``) and
    register it as ``registered_name``; returns the new model version (a string)."""
    import mlflow
    import mlflow.tensorflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    import keras
    import tensorflow as tf

    prediction = model.predict(input_example, verbose=0)
    signature = infer_signature(input_example, prediction)
    # explicit requirements: MLflow's inference of them imports the model in a subprocess (~15 s); the custom
    # layers need lenssearch itself importable where the model is loaded
    requirements = [f"tensorflow-cpu=={tf.__version__}", f"keras=={keras.__version__}", f"mlflow=={mlflow.__version__}"]
    info = mlflow.tensorflow.log_model(
        model,
        name="model",
        signature=signature,
        input_example=input_example,
        registered_model_name=registered_name,
        pip_requirements=requirements,
    )
    version = str(info.registered_model_version)
    client = MlflowClient()
    for key, value in (tags or {}).items():
        client.set_model_version_tag(registered_name, version, key, str(value))
    return version


def child_runs(parent_run_id: str, tracking_uri: str | None = None) -> list:
    """The nested runs of ``parent_run_id`` (MLflow ``Run`` objects), oldest first."""
    import mlflow

    mlflow.set_tracking_uri(resolve_tracking_uri(tracking_uri))
    parent = mlflow.get_run(parent_run_id)
    runs = mlflow.search_runs(
        experiment_ids=[parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
        order_by=["attributes.start_time ASC"],
        output_format="list",
    )
    return list(runs)
