"""The ``tune`` stage: Optuna-tuned decision threshold and quasi-true-positive lower bound of every network and
selected committee (``thresholds.json``, the study plots, MLflow runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lenssearch.evaluate.common import clean_json, subjects, write_json
from lenssearch.io import atomic_path


def run_tune(cfg, predictions_dir: Path, committees_json: Path | None, out: Path, storage_path: Path,
             plots_dir: Path, tracking_uri: str | None = None, log_mlflow: bool = True) -> dict:
    """Tune the threshold and qTP lower bound of every network and selected committee; write thresholds.json."""
    from lenssearch.evaluate.thresholds import open_storage, study_plots, tune_threshold

    tc = cfg.tune
    wide, models, _ = subjects(cfg, predictions_dir, committees_json)
    labels = np.asarray(wide["label"])
    storage_path = Path(storage_path)
    results, studies = {}, {}
    with atomic_path(storage_path) as tmp_db:
        storage = open_storage(f"sqlite:///{tmp_db}")
        for i, (name, scores) in enumerate(models.items()):
            res, st = tune_threshold(
                name, labels, scores, objective=tc.objective, purity_min=tc.purity_min,
                qtp_band_purity_min=tc.qtp_band_purity_min, n_trials=tc.n_trials, seed=cfg.base.seed + 2 * i,
                storage=storage, default_threshold=cfg.evaluate.threshold)
            results[name] = res
            studies[name] = st
        plots = {}
        with atomic_path(plots_dir) as tmp_plots:
            for name, st in studies.items():
                plots[name] = study_plots(st, tmp_plots)
        storage.engine.dispose()
    doc = {
        "objective": tc.objective,
        "purity_min": tc.purity_min,
        "qtp_band_purity_min": tc.qtp_band_purity_min,
        "reference": "Angora et al. 2023: threshold 0.5, purity = completeness crossing 0.25 (SC-VGG), qTP 0.2-0.5",
        "models": {n: clean_json(r.as_dict()) for n, r in results.items()},
    }
    write_json(out, doc)
    if log_mlflow:
        from lenssearch import tracking

        children = [
            tracking.RunSpec(
                name=f"tune {n}", params={"objective": tc.objective, "n_trials": tc.n_trials, "model": n},
                metrics={k: getattr(r, k) for k in ("threshold", "objective_value", "purity", "completeness", "f1",
                                                    "qtp_lower", "qtp_band_purity", "completeness_at_qtp")},
                tags={"stage": "tune", "model": n},
                artifacts=[Path(plots_dir) / p.name for p in plots[n]])
            for n, r in results.items()
        ]
        parent = tracking.RunSpec(name="thresholds", params={"objective": tc.objective},
                                  tags={"stage": "tune"}, artifacts=[Path(out)])
        tracking.log_runs(cfg.evaluate.experiment, parent, children, tracking_uri)
    return doc
