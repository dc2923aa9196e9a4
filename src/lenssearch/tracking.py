"""MLflow tracking and model registry: the only module of the package that imports mlflow.

(The committee's "models from code" file, ``evaluate/committee_model.py``, imports mlflow too: MLflow loads it
as the model itself, outside lenssearch.)

Store: ``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///mlflow.db``; artifacts of experiments created here go to
``mlartifacts/<experiment>/`` beside the sqlite file (``make ui`` serves them on 127.0.0.1). MLflow records; DVC
orchestrates and caches.

What every run carries: ``mlflow.source.git.commit`` (the HEAD commit; when tracked files other than DVC's
outputs differ from it, the diff as the artifact ``source/git_diff.patch`` and the tag ``git_dirty=true``).
Training runs: one parent per network, one nested run per fold (``<network>/fold_<k>``) and one for the run
model (``<network>/run_model``), created when the split starts and fed per-epoch metrics by a Keras callback
while it trains; parents and children log the same metric names (``auc``, ``accuracy``, ...).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from lenssearch.errors import LensSearchError

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_ARTIFACT_ROOT = "mlartifacts"
#: The experiment of the ``train`` stage: one parent run per network, one nested run per fold and the run model.
TRAIN_EXPERIMENT = "lenssearch-train"
COMMITTEE_MODEL_CODE = Path(__file__).parent / "evaluate" / "committee_model.py"
#: Files that DVC rewrites during ``dvc repro``: a change to them does not make the source dirty.
DVC_WRITTEN = ("dvc.lock", "metrics")


class RegistryError(LensSearchError):
    """A registered model, version or alias that is missing or inconsistent, or a model that cannot be loaded."""


# ------------------------------------------------------------------------------------------------- the store
def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """``tracking_uri`` if given, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``."""
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def artifact_root_for(tracking_uri: str | None = None) -> Path:
    """``mlartifacts/`` beside a sqlite store (``mlartifacts/`` in the working directory for other stores)."""
    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).resolve().parent / DEFAULT_ARTIFACT_ROOT
    return Path(DEFAULT_ARTIFACT_ROOT).resolve()


PROJECT_ARTIFACTS = "mlflow-artifacts"


def project_artifact_repository(artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None):
    """The artifact repository of ``mlflow-artifacts:/<path>`` URIs.

    Against a tracking server (``make ui``: ``mlflow server --artifacts-destination ./mlartifacts``) it is MLflow's
    own proxy repository; against a local sqlite store it is the folder ``mlartifacts/<path>`` beside the store, the
    very file the server serves. Experiments therefore record project-relative locations, and a moved or copied
    clone (``mlflow.db`` with ``mlartifacts/``) still finds every artifact.
    """
    import urllib.parse

    import mlflow
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository
    from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository

    uri = tracking_uri or mlflow.get_tracking_uri()
    if uri.startswith(("http://", "https://")):
        return MlflowArtifactsRepository(artifact_uri, tracking_uri=tracking_uri, registry_uri=registry_uri)
    relative = urllib.parse.urlparse(artifact_uri).path.lstrip("/")
    local = artifact_root_for(uri) / relative
    return LocalArtifactRepository(local.as_uri(), tracking_uri=tracking_uri, registry_uri=registry_uri)


def setup(tracking_uri: str | None = None) -> str:
    """Point MLflow (tracking and registry) at the store, offline; returns the URI used.

    Also lets this process read and write ``mlflow-artifacts:`` locations without a server
    (:func:`project_artifact_repository`).
    """
    import mlflow
    from mlflow.store.artifact.artifact_repository_registry import _artifact_repository_registry

    from lenssearch._runtime import apply_offline_env

    apply_offline_env()
    uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # MLflow's plugin registry (what the mlflow.artifact_repository entry points feed), for this process only
    _artifact_repository_registry.register(PROJECT_ARTIFACTS, project_artifact_repository)
    return uri


def _artifact_location(name: str, uri: str, artifact_root: str | Path | None) -> str:
    """Where a new experiment keeps its artifacts: ``mlflow-artifacts:/<path>`` (relative to ``mlartifacts/``
    beside a sqlite store) when the folder is inside the project's artifact root, else its absolute URI."""
    root = artifact_root_for(uri)
    target = (Path(artifact_root) if artifact_root is not None else root / name).resolve()
    if uri.startswith("sqlite:///") and target.is_relative_to(root):
        relative = target.relative_to(root).as_posix()
        return f"{PROJECT_ARTIFACTS}:/{name if relative in ('', '.') else relative}"
    return target.as_uri()


def experiment_id(name: str, tracking_uri: str | None = None, artifact_root: str | Path | None = None) -> str:
    """Get or create the experiment ``name`` (artifacts under ``artifact_root``, default
    ``mlartifacts/<name>`` beside the store, recorded as ``mlflow-artifacts:/<name>``); returns its id and makes
    it the active experiment."""
    import mlflow

    uri = setup(tracking_uri)
    found = mlflow.get_experiment_by_name(name)
    if found is None:
        try:
            found_id = mlflow.create_experiment(name, artifact_location=_artifact_location(name, uri, artifact_root))
        except mlflow.exceptions.MlflowException:  # created meanwhile by another process
            found_id = mlflow.get_experiment_by_name(name).experiment_id
    else:
        found_id = found.experiment_id
    mlflow.set_experiment(experiment_id=found_id)
    return found_id


def mlflow_setup(experiment: str = "lenssearch", tracking_uri: str | None = None,
                 artifact_root: str | Path | None = None) -> str:
    """Point MLflow at the store and select (creating if needed) ``experiment``; returns its id."""
    return experiment_id(experiment, tracking_uri, artifact_root)


# ---------------------------------------------------------------------------------------- source (git) tags
def _git(args: list[str], cwd: str | Path = ".") -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


@functools.lru_cache(maxsize=8)
def _source(path: str) -> tuple[str, str]:
    """(HEAD commit, diff of tracked source files against it); ("", "") outside a git work tree."""
    try:
        commit = _git(["rev-parse", "HEAD"], path).strip()
        excluded = [f":(exclude){p}" for p in DVC_WRITTEN]
        diff = _git(["diff", "HEAD", "--", ".", *excluded], path)
    except (OSError, subprocess.CalledProcessError):
        return "", ""
    return commit, diff


def source_tags(path: str | Path = ".") -> dict[str, str]:
    """``mlflow.source.git.commit`` and ``git_dirty`` of the work tree at ``path`` (empty outside git)."""
    commit, diff = _source(str(Path(path).resolve()))
    if not commit:
        return {}
    return {"mlflow.source.git.commit": commit, "git_dirty": str(bool(diff)).lower()}


def git_commit(path: str | Path = ".") -> str:
    """The HEAD commit of the work tree at ``path`` (``-dirty`` appended when source files differ from it;
    ``dvc.lock`` and the committed DVC metrics, which ``dvc repro`` rewrites, do not count), or ``unknown``."""
    commit, diff = _source(str(Path(path).resolve()))
    if not commit:
        return "unknown"
    return f"{commit}-dirty" if diff else commit


def _record_source() -> None:
    """Tag the active run with its git commit; a dirty tree's diff becomes ``source/git_diff.patch``."""
    import mlflow

    tags = source_tags()
    if not tags:
        return
    mlflow.set_tags(tags)
    diff = _source(str(Path(".").resolve()))[1]
    if diff:
        mlflow.log_text(diff, "source/git_diff.patch")


@contextlib.contextmanager
def _run(experiment: str, run_name: str, tracking_uri: str | None = None, run_id: str | None = None,
         artifact_root: str | Path | None = None) -> Iterator[Any]:
    """A top-level run of ``experiment`` (or ``run_id`` resumed), with its source recorded.

    Under ``mlflow run`` (``MLFLOW_RUN_ID`` set) the entry point's own run is used, so that the stage's nested
    runs hang under it.
    """
    import mlflow

    setup(tracking_uri)
    env_run = os.environ.get("MLFLOW_RUN_ID")
    if env_run and run_id is None:
        run_id = env_run
        mlflow.set_experiment(experiment_id=mlflow.get_run(env_run).info.experiment_id)
        kwargs: dict = {"run_id": env_run}
    else:
        exp = experiment_id(experiment, tracking_uri, artifact_root)
        kwargs = {"run_id": run_id} if run_id else {"run_name": run_name, "experiment_id": exp}
    with mlflow.start_run(**kwargs) as run:
        _record_source()
        yield run


# -------------------------------------------------------------------------------------------- logging helpers
def _finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, (bool, np.bool_)) or value is None:
            continue
        if isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(float(value)):
            out[key] = float(value)
    return out


def log_params(params: Mapping[str, Any]) -> None:
    """Log params of the active run (values as strings, cut to MLflow's length limit)."""
    import mlflow

    if params:
        mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})


def set_tags(tags: Mapping[str, Any]) -> None:
    """Set tags of the active run."""
    import mlflow

    if tags:
        mlflow.set_tags({k: str(v) for k, v in tags.items()})


def log_metrics(metrics: Mapping[str, Any], step: int | None = None) -> None:
    """Log the finite numeric metrics of the active run (others are skipped)."""
    import mlflow

    finite = _finite(metrics)
    if finite:
        mlflow.log_metrics(finite, step=step)


#: ECSV tables up to this size also get a CSV twin, which the MLflow UI previews (it does not know .ecsv)
CSV_PREVIEW_MAX_BYTES = 5 * 2**20


def _log_csv_preview(path: Path, artifact_path: str | None) -> None:
    import tempfile

    import mlflow
    from astropy.table import Table

    try:
        table = Table.read(path, format="ascii.ecsv")
    except Exception:  # noqa: BLE001  (a preview only: the ECSV itself is logged)
        return
    with tempfile.TemporaryDirectory() as tmp:
        twin = Path(tmp) / f"{path.stem}.csv"
        for name in table.colnames:  # multidimensional columns (e.g. polygons) have no CSV form
            if table[name].ndim > 1 or table[name].dtype == object:
                table.remove_column(name)
        table.meta.clear()
        table.write(twin, format="ascii.csv")
        mlflow.log_artifact(str(twin), artifact_path=f"{artifact_path}/preview" if artifact_path else "preview")


def log_artifacts(paths, artifact_path: str | None = None) -> None:
    """Log files (or folders, under their own name unless ``artifact_path`` says otherwise) on the active run.

    A small ECSV table also gets a CSV twin under ``preview/``, which the MLflow UI displays.
    """
    import mlflow

    for p in paths:
        p = Path(p)
        if p.is_dir():
            mlflow.log_artifacts(str(p), artifact_path=artifact_path or p.name)
        elif p.exists():
            mlflow.log_artifact(str(p), artifact_path=artifact_path)
            if p.suffix == ".ecsv" and p.stat().st_size <= CSV_PREVIEW_MAX_BYTES:
                _log_csv_preview(p, artifact_path)


@contextlib.contextmanager
def tracked_run(run_name: str, experiment: str = "lenssearch", params: Mapping | None = None,
                tags: Mapping | None = None, tracking_uri: str | None = None,
                artifact_root: str | Path | None = None) -> Iterator[object]:
    """A run in ``experiment`` with ``params`` and ``tags`` logged; yields the active run."""
    with _run(experiment, run_name, tracking_uri, artifact_root=artifact_root) as run:
        log_params(params or {})
        set_tags(tags or {})
        yield run


@contextlib.contextmanager
def nested_run(run_name: str, params: Mapping | None = None, tags: Mapping | None = None,
               run_id: str | None = None) -> Iterator[str]:
    """A run nested under the active one (``run_id`` resumed when it exists); yields its id."""
    import mlflow

    parent = mlflow.active_run()
    if parent is None:
        raise RuntimeError("a nested run needs an active parent run")
    resume = run_id if run_exists(run_id) else None
    kwargs = {"run_id": resume} if resume else {"run_name": run_name, "experiment_id": parent.info.experiment_id}
    with mlflow.start_run(nested=True, **kwargs) as run:
        if not resume:
            log_params(params or {})
        set_tags(tags or {})
        yield run.info.run_id


def run_exists(run_id: str | None, tracking_uri: str | None = None) -> bool:
    """Whether ``run_id`` is an active (not deleted) run of the store."""
    if not run_id:
        return False
    import mlflow
    from mlflow.exceptions import MlflowException

    if tracking_uri is not None:
        setup(tracking_uri)
    try:
        return mlflow.get_run(run_id).info.lifecycle_stage == "active"
    except MlflowException:
        return False


def child_runs(parent_run_id: str, tracking_uri: str | None = None) -> list:
    """The nested runs of ``parent_run_id`` (MLflow ``Run`` objects), oldest first."""
    import mlflow

    setup(tracking_uri)
    parent = mlflow.get_run(parent_run_id)
    runs = mlflow.search_runs(
        experiment_ids=[parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
        order_by=["attributes.start_time ASC"],
        output_format="list",
    )
    return list(runs)


def log_dataset(frame, source: str | Path, digest: str, name: str, context: str = "training",
                targets: str | None = "label") -> None:
    """Log a table (a pandas DataFrame) as an MLflow dataset input of the active run.

    ``digest`` is the file's DVC hash, so that the UI's dataset digest is the one ``dvc.lock`` records.
    """
    import mlflow

    import warnings

    with warnings.catch_warnings():  # a local path matches two equivalent local source types: either is right
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(frame, source=str(source), targets=targets, name=name, digest=digest[:36])
    mlflow.log_input(dataset, context=context)


# ------------------------------------------------------------------------------------------ training (issue 4)
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
    setup(tracking_uri)
    resume = run_id if run_exists(run_id) else None
    with _run(experiment, network, tracking_uri, run_id=resume) as run:
        log_params(params or {})
        set_tags({"network": network, "lenssearch.stage": "train", **dict(tags or {})})
        yield run.info.run_id


def epoch_metrics_callback(run_id: str, prefix: str = "epoch/"):
    """A Keras callback logging each epoch's metrics (``loss``, ``val_loss``, ``accuracy``, ``learning_rate``,
    ...) to run ``run_id`` as they happen, step = epoch, under ``prefix`` (the UI groups them in one section)."""
    import keras
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient()

    class EpochMetrics(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            now = int(time.time() * 1000)
            entries = [Metric(f"{prefix}{k}", v, now, int(epoch)) for k, v in _finite(logs or {}).items()]
            if entries:
                client.log_batch(run_id, metrics=entries)

    return EpochMetrics()


def log_history(run_id: str, history: Mapping[str, list], prefix: str = "epoch/") -> None:
    """Log a whole per-epoch history at once (a split trained before its run existed)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    entries = [Metric(f"{prefix}{key}", float(value), now, epoch)
               for key, values in history.items() for epoch, value in enumerate(values)
               if _finite({key: value})]
    client = MlflowClient()
    for start in range(0, len(entries), 1000):  # MLflow's limit per batch
        client.log_batch(run_id, metrics=entries[start:start + 1000])


def log_fold_run(
    name: str,
    history: Mapping[str, list],
    metrics: Mapping[str, float],
    artifacts=(),
    tags: Mapping | None = None,
    params: Mapping | None = None,
) -> str:
    """A finished nested run under the active parent: per-epoch ``history`` (step = epoch), final ``metrics``,
    files. Returns the nested run's id. (Live training uses :func:`nested_run` and
    :func:`epoch_metrics_callback` instead.)"""
    import mlflow

    if mlflow.active_run() is None:
        raise RuntimeError("log_fold_run needs an active parent run (use network_run)")
    with nested_run(name, params, tags) as run_id:
        log_history(run_id, history, prefix="")
        log_metrics(metrics)
        log_artifacts(artifacts)
        return run_id


def log_summary(metrics: Mapping[str, float], artifacts=()) -> None:
    """Log metrics (non-finite values skipped) and files on the active (parent) run."""
    log_metrics(metrics)
    log_artifacts(artifacts)


def describe_registered_model(name: str, description: str, version: str | None = None,
                              version_description: str | None = None) -> None:
    """Set the description of a registered model (and of one of its versions)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    client.update_registered_model(name, description=description)
    if version is not None and version_description is not None:
        client.update_model_version(name, version, description=version_description)


def log_registered_keras_model(model, input_example, registered_name: str, tags: Mapping | None = None,
                               model_name: str = "model", description: str | None = None,
                               version_description: str | None = None) -> str:
    """Log a Keras model on the active run (TensorFlow flavour, signature inferred from ``input_example``) as
    ``model_name`` and register it as ``registered_name``; returns the new model version (a string)."""
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
        name=model_name,
        signature=signature,
        input_example=input_example,
        registered_model_name=registered_name,
        pip_requirements=requirements,
    )
    version = str(info.registered_model_version)
    client = MlflowClient()
    for key, value in (tags or {}).items():
        client.set_model_version_tag(registered_name, version, key, str(value))
    if description:
        describe_registered_model(registered_name, description, version, version_description or description)
    return version


# ------------------------------------------------------------------------- evaluation stages: parent + children
class RunSpec:
    """What one MLflow run records: name, params, metrics (``None``: not measurable), tags, artifacts."""

    def __init__(self, name: str, params: Mapping | None = None, metrics: Mapping | None = None,
                 tags: Mapping | None = None, artifacts=()):
        self.name = name
        self.params = dict(params or {})
        self.metrics = dict(metrics or {})
        self.tags = dict(tags or {})
        self.artifacts = [Path(a) for a in artifacts]


def _log_spec(spec: RunSpec) -> None:
    log_params(spec.params)
    log_metrics(spec.metrics)
    tags = dict(spec.tags)
    not_measurable = sorted(k for k, v in spec.metrics.items() if v is None)
    if not_measurable:
        tags["not_measurable"] = ",".join(not_measurable)[:5000]
    set_tags(tags)
    log_artifacts(spec.artifacts)


def log_runs(experiment: str, parent: RunSpec, children: list[RunSpec], tracking_uri: str | None = None) -> dict:
    """Log a parent run and its nested child runs; return ``{name: run_id}`` (parent under its own name)."""
    with _run(experiment, parent.name, tracking_uri) as run:
        _log_spec(parent)
        ids = {parent.name: run.info.run_id}
        for child in children:
            with nested_run(child.name) as child_id:
                _log_spec(child)
                ids[child.name] = child_id
    return ids


def parent_run(experiment: str, run_name: str, tracking_uri: str | None = None):
    """The parent run of a stage (a new run, or under ``mlflow run`` the entry point's own run)."""
    return _run(experiment, run_name, tracking_uri)


# ------------------------------------------------------------------------------------------ registered models
def load_pyfunc(uri: str, tracking_uri: str | None = None):
    """Load a logged or registered model (``models:/name@alias``, ``models:/name/1``, ``runs:/...``) as a pyfunc.

    Raises
    ------
    RegistryError
        The URI names no model in the store (unknown name, version or alias, or a missing artifact).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    uri_store = setup(tracking_uri)
    try:
        return mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RegistryError(f"model URI '{uri}' cannot be loaded from {uri_store}: {reason}") from None


def _parse_model_uri(uri: str) -> tuple[str, str | None, str | None] | None:
    match = re.fullmatch(r"models:/([^/@]+)(?:@([^/]+)|/(\d+))", uri)
    return None if match is None else match.groups()


def resolve_model_version(uri: str, tracking_uri: str | None = None) -> str | None:
    """The version number behind ``models:/<name>@<alias>`` or ``models:/<name>/<version>`` (else ``None``)."""
    from mlflow import MlflowClient

    parsed = _parse_model_uri(uri)
    if parsed is None:
        return None
    name, alias, version = parsed
    if version:
        return version
    return str(MlflowClient(resolve_tracking_uri(tracking_uri)).get_model_version_by_alias(name, alias).version)


def model_version_tags(uri: str, tracking_uri: str | None = None) -> dict[str, str]:
    """Tags of the registered model version named by ``models:/<name>@<alias>`` or ``models:/<name>/<version>``.

    Other URIs (runs, logged-model ids, ``latest``) have no version tags: ``{}``.
    """
    from mlflow import MlflowClient

    parsed = _parse_model_uri(uri)
    if parsed is None:
        return {}
    name, alias, version = parsed
    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    found = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    return dict(found.tags or {})


def make_latest(name: str, version: str) -> str:
    """Make ``version`` of the registered model ``name`` its newest one; returns the version that now is.

    A stage that reuses a version it registered before (its inputs are back to what they were) would otherwise
    leave a newer version, made from other inputs, to whoever reads the newest one (``latest_model_uri``, a
    ``models:/<name>/latest`` URI): the version is copied (same model, tags and description) as a new one.
    """
    from mlflow import MlflowClient

    if str(latest_version(name).version) == str(version):
        return str(version)
    client = MlflowClient()
    old = client.get_model_version(name, str(version))
    new = client.copy_model_version(f"models:/{name}/{version}", name)
    for key, value in (old.tags or {}).items():
        client.set_model_version_tag(name, new.version, key, value)
    client.set_model_version_tag(name, new.version, "copied_from_version", str(version))
    if old.description:
        client.update_model_version(name, new.version, description=old.description)
    return str(new.version)


def latest_version(name: str) -> Any:
    """The newest version of the registered model ``name``.

    Raises
    ------
    RegistryError
        When no such registered model (or version) exists.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException as exc:
        raise RegistryError(f"registered model '{name}': {exc.message}") from None
    if not versions:
        raise RegistryError(
            f"no registered model '{name}' in {mlflow.get_tracking_uri()} (the train stage registers "
            f"'lenssearch-<network>')"
        )
    return max(versions, key=lambda v: int(v.version))


def latest_model_uri(name: str) -> str:
    """``models:/<name>/<newest version>``."""
    return f"models:/{name}/{latest_version(name).version}"


def _requirements() -> list[str]:
    reqs = []
    for pkg in ("mlflow", "numpy", "pandas", "tensorflow-cpu", "keras"):
        try:
            reqs.append(f"{pkg}=={metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            continue
    return reqs


def log_committee_model(
    run_id: str,
    members: dict[str, str],
    band_index: dict[str, int | None],
    rule: str,
    n_bands: int,
    registered_model_name: str | None = None,
    model_name: str = "committee",
) -> str:
    """Log a committee as a pyfunc model ``model_name`` in run ``run_id``; return its model URI.

    The model is "models from code" (``committee_model.py``, MLflow 3's recommended way, no pickle) whose
    ``artifacts`` are the member models (their URIs, e.g. ``models:/lenssearch-vgg/3``; MLflow copies them into
    the committee, which is then self-contained) and whose ``model_config`` holds the member names, the band
    each single-band member reads, and the rule (``mean`` or ``product``). Input: raw cutouts
    N x H x W x ``n_bands`` float32, like every network; output: the committee score per cutout.
    """
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec

    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, -1, n_bands))]),  # unnamed: a plain array
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1,))]),
        params=ParamSchema([ParamSpec("return_members", "boolean", False)]),
    )
    config = {
        "members": list(members),
        "member_uris": dict(members),
        "band_index": {k: (None if v is None else int(v)) for k, v in band_index.items()},
        "rule": rule,
    }
    # resuming a run requires the active experiment to be the run's own
    mlflow.set_experiment(experiment_id=mlflow.get_run(run_id).info.experiment_id)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name=model_name,
            python_model=str(COMMITTEE_MODEL_CODE),
            artifacts=dict(members),
            model_config=config,
            signature=signature,
            pip_requirements=_requirements(),
            registered_model_name=registered_model_name,
        )
    return info.model_uri


def log_modeling_model(code_path: str | Path, keras_path: str | Path, parameters, calibration, n_bands: int,
                       registered_name: str, tags: Mapping, description: str) -> str:
    """Log the modeling network on the active run as a pyfunc ("models from code": ``code_path``, its artifact
    ``keras_model`` the saved network, its ``model_config`` the parameter names and the sigma calibration factors)
    and register it as ``registered_name`` with ``tags``; returns the version. Output signature: a table of
    ``pred_<parameter>`` and ``sigma_<parameter>`` columns."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    parameters = list(parameters)
    outputs = [ColSpec("double", f"pred_{p}") for p in parameters] + [ColSpec("double", f"sigma_{p}")
                                                                       for p in parameters]
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, -1, int(n_bands)))]),
                               outputs=Schema(outputs))
    config = {"parameters": parameters, "batch_size": 128, "calibration": [float(c) for c in calibration]}
    info = mlflow.pyfunc.log_model(name="model", python_model=str(code_path), artifacts={"keras_model": str(keras_path)},
                                   model_config=config, signature=signature, pip_requirements=_requirements(),
                                   registered_model_name=registered_name)
    version = str(info.registered_model_version)
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(registered_name, version, key, str(value))
    describe_registered_model(registered_name, description, version, description)
    return version


def log_step(run_id: str, values: Mapping[str, float], step: int, prefix: str = "epoch/") -> None:
    """Log one step's metrics (e.g. an epoch's losses) to run ``run_id`` as they happen."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    entries = [Metric(f"{prefix}{k}", v, now, int(step)) for k, v in _finite(values).items()]
    if entries:
        MlflowClient().log_batch(run_id, metrics=entries)


class Champion:
    """The version an alias points to, with the gate metric stored in its tags."""

    def __init__(self, version: str, gate_metric: str | None, gate_value: float | None, tags: dict[str, str]):
        self.version, self.gate_metric, self.gate_value, self.tags = version, gate_metric, gate_value, tags


def get_champion(name: str, alias: str) -> Champion | None:
    """The version of ``name`` that ``alias`` points to, or ``None`` when there is no such alias or model."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        mv = MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    tags = dict(mv.tags or {})
    value = tags.get("gate_value")
    return Champion(str(mv.version), tags.get("gate_metric"),
                    float(value) if value not in (None, "") else None, tags)


def source_of(model_uri: str) -> str:
    """The storage source behind ``models:/<name>/<version>`` (other URIs unchanged)."""
    from mlflow import MlflowClient

    if model_uri.startswith("models:/") and model_uri.count("/") >= 2 and not model_uri.startswith("models:/m-"):
        name, version = model_uri[len("models:/"):].split("/", 1)
        if version.isdigit():
            return MlflowClient().get_model_version(name, version).source
    return model_uri


def register_version(model_uri: str, name: str, tags: dict[str, str], description: str | None = None,
                     model_description: str | None = None) -> str:
    """Register ``model_uri`` as a new version of ``name`` with ``tags``; reuse an identical earlier one.

    A version whose ``candidate_key`` tag equals ``tags['candidate_key']`` (same source model, same gate metric
    value, same threshold) is reused rather than duplicated, so re-running ``promote`` is idempotent.
    ``description`` describes the version, ``model_description`` the registered model.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    key = tags.get("candidate_key")
    version = None
    if key:
        try:
            for mv in client.search_model_versions(f"name = '{name}'"):
                if (mv.tags or {}).get("candidate_key") == key:
                    version = str(mv.version)
        except MlflowException:  # no such registered model yet
            pass
    if version is None:
        mv = mlflow.register_model(source_of(model_uri), name, tags={k: str(v) for k, v in tags.items()})
        version = str(mv.version)
    if model_description:
        describe_registered_model(name, model_description, version, description)
    return version


def set_alias(name: str, alias: str, version: str) -> None:
    """Point ``alias`` of ``name`` at ``version``."""
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(name, alias, version)


def version_tags(name: str, version: str) -> dict[str, str]:
    """Tags of one model version."""
    from mlflow import MlflowClient

    return dict(MlflowClient().get_model_version(name, version).tags or {})


# ----------------------------------------------------------------------------------- stand-ins for trained nets
_STAND_IN_CODE = """
import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class MeanPixelModel(PythonModel):
    def load_context(self, context):
        self.scale = float(context.model_config["scale"])

    def predict(self, context, model_input, params=None):
        x = np.asarray(model_input, dtype=np.float64)
        m = x.reshape(len(x), -1).mean(axis=1)
        return 1.0 / (1.0 + np.exp(-self.scale * (m - 0.5)))


mlflow.models.set_model(MeanPixelModel())
"""


def log_stand_in_model(name: str, n_bands: int, scale: float, work_dir: Path) -> str:
    """Log and register a tiny real pyfunc model as ``name`` (tests and benchmarks; no training needed).

    Its lens probability is ``sigmoid(scale * (mean pixel - 0.5))`` of N x H x W x ``n_bands`` cutouts; it has
    the input contract of a trained network. Returns ``models:/<name>/<version>``.
    """
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    code = Path(work_dir) / "stand_in_model.py"
    if not code.exists():
        code.write_text(_STAND_IN_CODE)
    sig = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, -1, n_bands))]),
        outputs=Schema([TensorSpec(np.dtype(np.float64), (-1,))]),
    )
    with mlflow.start_run(run_name=f"stand-in {name}"):
        info = mlflow.pyfunc.log_model(
            name=name, python_model=str(code), model_config={"scale": scale}, signature=sig,
            pip_requirements=_requirements()[:2], registered_model_name=name,
        )
    return f"models:/{name}/{info.registered_model_version}"
