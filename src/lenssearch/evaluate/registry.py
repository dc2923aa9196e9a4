"""MLflow access of the evaluation stages: runs, the committee pyfunc model, the registry and its aliases.

``lenssearch.tracking`` is meant to be the only module importing mlflow; the evaluation stages need a few more
things (a ``PythonModel`` for committees, model-registry aliases), and ``tracking.py`` belongs to the training
work (issue 4), so they live here, in one module, imported only inside the CLI verbs. Everything else in
``lenssearch.evaluate`` is mlflow-free.

Tracking store: ``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///mlflow.db``; artifacts of experiments created
here go to ``mlartifacts/`` beside the sqlite file (the layout of ``tracking.py``).
"""

from __future__ import annotations

import dataclasses
import os
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from lenssearch.errors import LensSearchError

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
COMMITTEE_MODEL_CODE = Path(__file__).with_name("committee_model.py")


class RegistryError(LensSearchError):
    """A registered model, version or alias that is missing or inconsistent."""


def _mlflow():
    import mlflow

    return mlflow


def setup(tracking_uri: str | None = None) -> str:
    """Point MLflow at ``tracking_uri`` (else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``)."""
    mlflow = _mlflow()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def artifact_root(tracking_uri: str) -> Path:
    """``mlartifacts/`` beside a sqlite store (the current directory for other stores)."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri[len("sqlite:///"):]).resolve().parent / "mlartifacts"
    return Path("mlartifacts").resolve()


def experiment_id(name: str, tracking_uri: str) -> str:
    """Get or create the experiment ``name`` (artifacts under ``mlartifacts/<name>``)."""
    mlflow = _mlflow()
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = (artifact_root(tracking_uri) / name).as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except Exception:  # created meanwhile by another process
        return mlflow.get_experiment_by_name(name).experiment_id


@dataclasses.dataclass
class RunSpec:
    """What one MLflow run records."""

    name: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics: dict[str, float | None] = dataclasses.field(default_factory=dict)
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    artifacts: list[Path] = dataclasses.field(default_factory=list)


def _finite(metrics: dict[str, float | None]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)}


def _log(spec: RunSpec) -> None:
    mlflow = _mlflow()
    if spec.params:
        mlflow.log_params({k: str(v)[:6000] for k, v in spec.params.items()})
    if spec.metrics:
        mlflow.log_metrics(_finite(spec.metrics))
    not_measurable = sorted(k for k, v in spec.metrics.items() if v is None)
    tags = dict(spec.tags)
    if not_measurable:
        tags["not_measurable"] = ",".join(not_measurable)[:5000]
    if tags:
        mlflow.set_tags(tags)
    for path in spec.artifacts:
        path = Path(path)
        if path.is_dir():
            mlflow.log_artifacts(str(path), artifact_path=path.name)
        elif path.exists():
            mlflow.log_artifact(str(path))


def log_runs(experiment: str, parent: RunSpec, children: list[RunSpec], tracking_uri: str | None = None) -> dict:
    """Log a parent run and its nested child runs; return ``{name: run_id}`` (parent under its own name)."""
    mlflow = _mlflow()
    uri = setup(tracking_uri)
    with parent_run(experiment, parent.name, uri) as run:
        exp = run.info.experiment_id
        ids = {}
        _log(parent)
        ids[parent.name] = run.info.run_id
        for child in children:
            with mlflow.start_run(experiment_id=exp, run_name=child.name, nested=True) as sub:
                _log(child)
                ids[child.name] = sub.info.run_id
    return ids


def parent_run(experiment: str, run_name: str, tracking_uri: str):
    """Start the parent run: a new run in ``experiment``, or, under ``mlflow run`` (``MLFLOW_RUN_ID`` set), the
    entry point's own run, so that the stage's nested runs hang under it."""
    mlflow = _mlflow()
    env_run = os.environ.get("MLFLOW_RUN_ID")
    if env_run:
        mlflow.set_experiment(experiment_id=mlflow.get_run(env_run).info.experiment_id)
        return mlflow.start_run(run_id=env_run)
    return mlflow.start_run(experiment_id=experiment_id(experiment, tracking_uri), run_name=run_name)


# ------------------------------------------------------------------------------------------ registered models
def latest_version(name: str) -> Any:
    """The newest version of the registered model ``name``.

    Raises
    ------
    RegistryError
        When no such registered model (or version) exists.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException as exc:
        raise RegistryError(f"registered model '{name}': {exc.message}") from None
    if not versions:
        raise RegistryError(
            f"no registered model '{name}' in {_mlflow().get_tracking_uri()} (the train stage registers "
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
) -> str:
    """Log a committee as a pyfunc model in run ``run_id``; return its model URI.

    The model is "models from code" (``committee_model.py``, MLflow 3's recommended way, no pickle) whose
    ``artifacts`` are the member models (their URIs, e.g. ``models:/lenssearch-vgg/3``; MLflow copies them into
    the committee, which is then self-contained) and whose ``model_config`` holds the member names, the band
    each single-band member reads, and the rule (``mean`` or ``product``). Input: raw cutouts
    N x H x W x ``n_bands`` float32, like every network; output: the committee score per cutout.
    """
    mlflow = _mlflow()
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
            name="committee",
            python_model=str(COMMITTEE_MODEL_CODE),
            artifacts=dict(members),
            model_config=config,
            signature=signature,
            pip_requirements=_requirements(),
            registered_model_name=registered_model_name,
        )
    return info.model_uri


def load_pyfunc(uri: str):
    """Load a pyfunc model, with a readable error for an unknown URI."""
    mlflow = _mlflow()
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as exc:
        raise RegistryError(f"cannot load model '{uri}': {getattr(exc, 'message', exc)}") from None


# -------------------------------------------------------------------------------------------- champion alias
@dataclasses.dataclass(frozen=True)
class Champion:
    """The version an alias points to, with the gate metric stored in its tags."""

    version: str
    gate_metric: str | None
    gate_value: float | None
    tags: dict[str, str]


def get_champion(name: str, alias: str) -> Champion | None:
    """The version of ``name`` that ``alias`` points to, or ``None`` when there is no such alias or model."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    tags = dict(mv.tags or {})
    value = tags.get("gate_value")
    return Champion(
        version=str(mv.version),
        gate_metric=tags.get("gate_metric"),
        gate_value=float(value) if value not in (None, "") else None,
        tags=tags,
    )


def source_of(model_uri: str) -> str:
    """The storage source behind ``models:/<name>/<version>`` (other URIs unchanged)."""
    from mlflow import MlflowClient

    if model_uri.startswith("models:/") and model_uri.count("/") >= 2 and not model_uri.startswith("models:/m-"):
        name, version = model_uri[len("models:/"):].split("/", 1)
        if version.isdigit():
            return MlflowClient().get_model_version(name, version).source
    return model_uri


def register_version(model_uri: str, name: str, tags: dict[str, str]) -> str:
    """Register ``model_uri`` as a new version of ``name`` with ``tags``; reuse an identical earlier one.

    A version whose ``candidate_key`` tag equals ``tags['candidate_key']`` (same source model, same gate metric
    value, same threshold) is reused rather than duplicated, so re-running ``promote`` is idempotent.
    """
    mlflow = _mlflow()
    from mlflow import MlflowClient

    client = MlflowClient()
    key = tags.get("candidate_key")
    if key:
        try:
            for mv in client.search_model_versions(f"name = '{name}'"):
                if (mv.tags or {}).get("candidate_key") == key:
                    return str(mv.version)
        except Exception:  # no such registered model yet
            pass
    mv = mlflow.register_model(source_of(model_uri), name, tags={k: str(v) for k, v in tags.items()})
    return str(mv.version)


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
    mlflow = _mlflow()
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
            name="model", python_model=str(code), model_config={"scale": scale}, signature=sig,
            pip_requirements=_requirements()[:2], registered_model_name=name,
        )
    return f"models:/{name}/{info.registered_model_version}"
