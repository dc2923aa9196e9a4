"""Decision thresholds tuned with Optuna (seeded TPE sampler, sqlite storage).

For each network and committee, from its out-of-fold scores, two one-dimensional studies:

1. **Decision threshold** ``t`` for a configurable objective (:data:`OBJECTIVES`):
   ``f1`` (maximum lens F1), ``completeness_at_purity`` (maximum completeness with purity >= ``purity_min``),
   or ``crossing`` (purity = completeness, the threshold Angora et al. 2023 read off their Fig. 11, 0.25 for
   SC-VGG).
2. **Lower bound of the quasi-true-positive band** ``t_q < t``: Angora et al. 2023 (Sect. 5, Table A.6) call
   ``0.2 <= Pr < 0.5`` quasi-true positives (qTP), candidates worth a look below the decision threshold. Here
   ``t_q`` is the lowest bound whose band ``[t_q, t)`` is still at least ``qtp_band_purity_min`` lenses: it
   maximises the completeness at ``t_q`` under that constraint (the paper's 0.2 is the reference).

An infeasible trial scores the (negative) shortfall of its constraint, so the sampler is pulled toward the
feasible region. A one-dimensional problem is small for Optuna, but the studies give the same records, plots
and storage as the network hyper-parameter search; the tests check the optimum against an exhaustive scan.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from lenssearch.errors import LensSearchError
from lenssearch.evaluate.metrics import Confusion, check_inputs, confusion


def _counts(labels, scores, t) -> Confusion:
    return confusion(labels, scores, t)


def _obj_f1(labels, scores, t, purity_min):
    v = _counts(labels, scores, t).metrics()["f1_lens"]
    return float(v) if np.isfinite(v) else 0.0


def _obj_completeness_at_purity(labels, scores, t, purity_min):
    m = _counts(labels, scores, t).metrics()
    pur, com = m["purity_lens"], m["completeness_lens"]
    if not np.isfinite(pur):
        return -1.0
    return float(com) if pur >= purity_min else float(pur - purity_min)


def _obj_crossing(labels, scores, t, purity_min):
    m = _counts(labels, scores, t).metrics()
    pur, com = m["purity_lens"], m["completeness_lens"]
    if not np.isfinite(pur):
        return -1.0
    return -abs(float(pur - com))


#: Objective of the decision threshold: (labels, scores, threshold, purity_min) -> value to maximise.
OBJECTIVES: dict[str, Callable[..., float]] = {
    "f1": _obj_f1,
    "completeness_at_purity": _obj_completeness_at_purity,
    "crossing": _obj_crossing,
}


def qtp_objective(labels, scores, t_low, t_high, band_purity_min) -> float:
    """Completeness at ``t_low`` if the band ``[t_low, t_high)`` is pure enough, else the purity shortfall."""
    band = (scores >= t_low) & (scores < t_high)
    n = int(band.sum())
    if n == 0:
        return float(np.mean(scores[labels == 1] >= t_low)) if np.any(labels == 1) else 0.0
    purity = float(np.mean(labels[band] == 1))
    if purity < band_purity_min:
        return purity - band_purity_min
    return float(np.mean(scores[labels == 1] >= t_low))


@dataclass(frozen=True)
class TunedThreshold:
    """The tuned thresholds of one model and what they give on the out-of-fold predictions."""

    name: str
    objective: str
    threshold: float
    objective_value: float
    purity: float
    completeness: float
    f1: float
    qtp_lower: float
    qtp_band_purity: float
    completeness_at_qtp: float
    n_trials: int

    def as_dict(self) -> dict:
        return asdict(self)


def open_storage(url: str):
    """Optuna RDB storage for ``url``; for sqlite, without fsync (the file is a stage output written atomically)."""
    import optuna
    from sqlalchemy import event

    storage = optuna.storages.RDBStorage(url)
    if url.startswith("sqlite:"):

        @event.listens_for(storage.engine, "connect")
        def _fast(dbapi_connection, _record):  # pragma: no cover - exercised through optuna
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA synchronous=OFF")
            cursor.execute("PRAGMA journal_mode=MEMORY")
            cursor.close()

        storage.engine.dispose()
    return storage


def _run_study(storage, name: str, seed: int, objective, enqueue: list[dict], n_trials: int):
    """Optimise in memory with a seeded TPE sampler, then store the study (all trials) in ``storage``.

    Sampling against the sqlite storage directly costs ~0.1 s per trial (a transaction per call); the trials
    and their order are the same either way, as the sampler only sees the trials of its own study.
    """
    import optuna

    study = optuna.create_study(
        study_name=name, sampler=optuna.samplers.TPESampler(seed=seed), direction="maximize"
    )
    for params in enqueue:
        study.enqueue_trial(params)
    study.optimize(objective, n_trials=n_trials)
    try:
        optuna.delete_study(study_name=name, storage=storage)
    except KeyError:
        pass
    stored = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    stored.add_trials(study.trials)
    return stored


def tune_threshold(
    name: str,
    labels,
    scores,
    *,
    objective: str,
    purity_min: float,
    qtp_band_purity_min: float,
    n_trials: int,
    seed: int,
    storage: str,
    default_threshold: float = 0.5,
) -> tuple[TunedThreshold, list]:
    """Tune the decision threshold and the qTP lower bound of one model; return the result and both studies.

    Parameters
    ----------
    storage
        Optuna storage URL, e.g. ``sqlite:///reports/tune/optuna.db``, or a storage from :func:`open_storage`.
        Studies are named ``<name>/threshold`` and ``<name>/qtp``; an existing study of that name is replaced
        (a stage re-run starts afresh).
    seed
        Seed of the TPE sampler (derived from ``base.seed``).
    """
    import optuna

    labels, scores = check_inputs(labels, scores, name)
    try:
        fn = OBJECTIVES[objective]
    except KeyError:
        raise LensSearchError(f"tune.objective '{objective}' unknown; expected one of {sorted(OBJECTIVES)}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    lo, hi = float(scores.min()), float(scores.max())
    if hi <= lo:
        raise LensSearchError(f"{name}: all scores are equal ({lo}); no threshold can be tuned")

    if isinstance(storage, str):
        storage = open_storage(storage)
    start = min(max(default_threshold, lo), hi)
    study = _run_study(
        storage, f"{name}/threshold", seed,
        lambda tr: fn(labels, scores, tr.suggest_float("threshold", lo, hi), purity_min),
        [{"threshold": start}], n_trials,
    )
    t = float(study.best_params["threshold"])
    studies = [study]
    if t > lo:
        q_study = _run_study(
            storage, f"{name}/qtp", seed + 1,
            lambda tr: qtp_objective(labels, scores, tr.suggest_float("qtp_lower", lo, t), t, qtp_band_purity_min),
            # an empty band (lower bound = threshold) is always feasible: the fallback when no band is pure enough
            [{"qtp_lower": t}, {"qtp_lower": max(lo, 0.4 * t)}], n_trials,
        )
        tq = float(q_study.best_params["qtp_lower"])
        studies.append(q_study)
    else:
        tq = t
    band = (scores >= tq) & (scores < t)
    m = _counts(labels, scores, t).metrics()
    result = TunedThreshold(
        name=name,
        objective=objective,
        threshold=t,
        objective_value=float(study.best_value),
        purity=m["purity_lens"],
        completeness=m["completeness_lens"],
        f1=m["f1_lens"],
        qtp_lower=tq,
        qtp_band_purity=float(np.mean(labels[band] == 1)) if band.any() else float("nan"),
        completeness_at_qtp=float(np.mean(scores[labels == 1] >= tq)) if np.any(labels == 1) else float("nan"),
        n_trials=n_trials,
    )
    return result, studies


def study_plots(studies: list, out_dir: Path) -> list[Path]:
    """Optimisation history of every Optuna study, and the slice plot (objective against the threshold) of the
    decision-threshold studies (optuna.visualization.matplotlib), as PNGs."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    from lenssearch.io import atomic_path

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib backend experimental
        for study in studies:
            if not study.trials:
                continue
            stem = study.study_name.replace("/", "_").replace("(", "_").replace(")", "").replace("+", "-")
            kinds = [("history", ovm.plot_optimization_history)]
            if study.study_name.endswith("/threshold"):  # the objective against the threshold itself
                kinds.append(("slice", ovm.plot_slice))
            for kind, plot in kinds:
                ax = plot(study)
                fig = (ax.flat[0] if hasattr(ax, "flat") else ax).get_figure()
                path = out_dir / f"{stem}_{kind}.png"
                with atomic_path(path) as tmp:
                    fig.savefig(tmp, format="png", dpi=72, bbox_inches="tight")
                plt.close(fig)
                paths.append(path)
    return paths
