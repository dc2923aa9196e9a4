"""Optuna search over network hyper-parameters (MLproject entry point ``hpsearch``; not on the dvc path).

Each trial draws values for the dotted ``params.yaml`` keys of ``hpsearch.space`` (e.g. ``train.learning_rate``,
``train.batch_size.sc_vgg``, ``train.network.filters``), writes them as a profile overlay (over the user's
``--profile`` if any), and runs the very ``lenssearch train`` verb of the dvc stage in a subprocess on the KB,
into ``<work>/trial_<k>/``. The trial's objective is the gate metric (``hpsearch.gate``) of its out-of-fold
predictions. MLflow: a parent run in experiment ``lenssearch-hpsearch``, one nested run per trial (its params
and objective); the trial trainings log to a scratch store ``<work>/mlflow.db`` so that the search does not add
versions to the registered ``lenssearch-<network>`` models. The best values land in ``<work>/best.json``;
adopting them is a change to params.yaml (a commit), never done by the search.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from lenssearch.config import deep_merge, read_yaml
from lenssearch.errors import LensSearchError
from lenssearch.evaluate.data import read_predictions
from lenssearch.evaluate.metrics import gate_metric
from lenssearch.io import atomic_path


def overlay_for(values: dict[str, object]) -> dict:
    """Nested mapping from dotted keys: ``{"train.learning_rate": 0.5}`` -> ``{"train": {"learning_rate": 0.5}}``."""
    out: dict = {}
    for key, value in values.items():
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def suggest(trial, dim) -> object:
    """Draw one value of a search dimension with an Optuna trial."""
    if dim.choices is not None:
        labels = [json.dumps(c) for c in dim.choices]
        return json.loads(trial.suggest_categorical(dim.key, labels))
    if dim.low is None or dim.high is None:
        raise LensSearchError(f"hpsearch.space: key '{dim.key}' needs low and high, or choices")
    if float(dim.low).is_integer() and float(dim.high).is_integer() and not dim.log and isinstance(dim.low, int):
        return trial.suggest_int(dim.key, int(dim.low), int(dim.high))
    return trial.suggest_float(dim.key, float(dim.low), float(dim.high), log=dim.log)


def run_hpsearch(cfg, kb: Path, work: Path, params: Path, profile: Path | None, n_trials: int | None = None,
                 tracking_uri: str | None = None) -> dict:
    """Run the search; return the best trial as ``{"number", "value", "params"}``."""
    import optuna

    from lenssearch import tracking

    h = cfg.hpsearch
    work = Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    base_overlay = read_yaml(profile) if profile is not None else {}
    n_trials = n_trials or h.n_trials
    uri = tracking.setup(tracking_uri)
    storage = f"sqlite:///{work / 'optuna.db'}"
    sampler = optuna.samplers.TPESampler(seed=cfg.base.seed)
    study = optuna.create_study(study_name=f"hpsearch-{h.network}", storage=storage, sampler=sampler,
                                direction="maximize", load_if_exists=True)
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}")
    for key in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):  # set by `mlflow run`
        env.pop(key, None)

    def objective(trial):
        values = {d.key: suggest(trial, d) for d in h.space}
        tdir = work / f"trial_{trial.number:03d}"
        tdir.mkdir(parents=True, exist_ok=True)
        overlay_path = tdir / "overlay.yaml"
        overlay_path.write_text(yaml.safe_dump(deep_merge(base_overlay, overlay_for(values))))
        cmd = [sys.executable, "-m", "lenssearch", "train", h.network, "--kb", str(kb),
               "--models", str(tdir / "models"), "--reports", str(tdir / "reports"),
               "--params", str(params), "--profile", str(overlay_path),
               "--tracking-uri", env["MLFLOW_TRACKING_URI"]]
        with tracking.nested_run(f"trial {trial.number}", {k: json.dumps(v) for k, v in values.items()}):
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            (tdir / "train.log").write_text(proc.stdout + proc.stderr)
            if proc.returncode != 0:
                tracking.set_tags({"failed": proc.stderr.strip().splitlines()[-1][:500] if proc.stderr else "failed"})
                raise optuna.TrialPruned(f"training failed (see {tdir / 'train.log'})")
            preds = read_predictions(tdir / "reports" / "predictions.ecsv", h.network)
            value = gate_metric(h.gate.metric, np.asarray(preds["label"]), np.asarray(preds["probability"]),
                                purity_min=h.gate.purity_min, fpr=h.gate.fpr)
            tracking.log_metrics({"objective": value})
        return value

    with tracking.parent_run("lenssearch-hpsearch", f"hpsearch {h.network}", uri) as run:
        tracking.log_params({"network": h.network, "n_trials": n_trials, "gate": h.gate.metric,
                           "space": json.dumps([d.key for d in h.space])})
        study.optimize(objective, n_trials=n_trials)
        done = [t for t in study.trials if t.value is not None]
        if not done:
            raise LensSearchError(f"hpsearch: no trial finished; see {work}/trial_*/train.log")
        best = {"number": study.best_trial.number, "value": study.best_value,
                "params": {d.key: (json.loads(study.best_params[d.key]) if d.choices is not None
                                   else study.best_params[d.key]) for d in h.space}}
        tracking.log_metrics({"best_objective": study.best_value})
        with atomic_path(work / "best.json") as tmp:
            tmp.write_text(json.dumps(best, indent=2) + "\n")
        tracking.log_artifacts([work / "best.json"])
    return best
