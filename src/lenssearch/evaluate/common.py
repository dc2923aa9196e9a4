"""Helpers shared by the evaluation stages (evaluate, committee, tune, promote): the wide table of out-of-fold
predictions, the selected committees, the gate metric's label, strict JSON output.

Kept apart from ``stages.py`` (tables, figures, reports) so that the tune and promote stages import only what they
use: a change to a figure does not re-run promote (``dvc.yaml`` deps are the modules a stage imports).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from astropy.table import Table

from lenssearch.errors import LensSearchError
from lenssearch.evaluate import committee as cm
from lenssearch.evaluate.data import join_predictions, read_kb_metadata, read_predictions
from lenssearch.evaluate.metrics import (
    classification_metrics,
    completeness_at_purity,
    max_f1,
    purity_completeness_crossing,
    roc_auc,
    tpr_at_fpr,
)
from lenssearch.io import atomic_path


def load_wide(predictions_dir: Path, networks, kb: Path | None = None) -> Table:
    """Read the predictions of ``networks`` (and the KB metadata when ``kb`` is given) into one wide table."""
    preds = {n: read_predictions(Path(predictions_dir) / n / "predictions.ecsv", n) for n in networks}
    meta = read_kb_metadata(kb) if kb is not None else None
    return join_predictions(preds, meta)


def gate_options(gate) -> dict:
    return {"metric": gate.metric, "purity_min": gate.purity_min, "fpr": gate.fpr}


def gate_label(gate) -> str:
    """The gate metric with its option, e.g. ``completeness_at_purity(purity_min=0.9)``: "the same metric"."""
    if gate.metric == "completeness_at_purity":
        return f"completeness_at_purity(purity_min={gate.purity_min:g})"
    if gate.metric == "tpr_at_fpr":
        return f"tpr_at_fpr(fpr={gate.fpr:g})"
    return gate.metric


def write_json(path: Path, data) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=json_default) + "\n")
    return path


def json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def clean_json(d):
    """NaN -> None so the JSON is standard."""
    if isinstance(d, dict):
        return {k: clean_json(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [clean_json(v) for v in d]
    if isinstance(d, (float, np.floating)) and not np.isfinite(d):
        return None
    return d


def read_committees(path: Path | None) -> list[dict]:
    """The selected committees of ``best.json`` (empty when ``path`` is None)."""
    if path is None:
        return []
    path = Path(path)
    if not path.exists():
        raise LensSearchError(f"{path}: no such committee summary (written by the committee stage)")
    try:
        return list(json.loads(path.read_text())["committees"])
    except (json.JSONDecodeError, KeyError) as exc:
        raise LensSearchError(f"{path}: not a committee summary ({exc})") from None


def subjects(cfg, predictions_dir: Path, committees_json: Path | None):
    """Names and out-of-fold scores of every network and selected committee, with the wide table."""
    committees = read_committees(committees_json)
    nets = list(dict.fromkeys([*cfg.evaluate.networks, *[m for c in committees for m in c["members"]]]))
    wide = load_wide(predictions_dir, nets)
    subjects = {n: np.asarray(wide[f"p_{n}"], dtype=float) for n in cfg.evaluate.networks}
    for c in committees:
        subjects[c["name"]] = cm.Committee(tuple(c["members"]), c["rule"]).scores(wide)
    return wide, subjects, committees


def summary_metrics(labels, scores, threshold: float, purity_min: float, fprs, keep=None, visible=None) -> dict:
    """The metrics every model (network or committee) logs under the same names, for one MLflow table.

    ``keep`` (without the adversarial examples) adds the ``_clean`` metrics and ``auc_clean``; ``visible`` (the
    non-lenses and the lenses whose lensed source reaches ``evaluate.visible_snr_min`` in the model's bands) adds
    ``auc_visible`` and ``visible_lens_fraction``. ``None`` values are rates that the negatives cannot measure
    (logged as a ``not_measurable`` tag).
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=float)
    out: dict[str, float | None] = dict(classification_metrics(labels, scores, threshold))
    if keep is not None:
        out.update({f"{k}_clean": v for k, v in classification_metrics(labels[keep], scores[keep], threshold).items()})
    out["auc"] = roc_auc(labels, scores)
    if keep is not None:
        out["auc_clean"] = roc_auc(labels[keep], scores[keep])
    if visible is not None and np.any(visible & (labels == 1)):
        out["auc_visible"] = roc_auc(labels[visible], scores[visible])
        out["visible_lens_fraction"] = float(np.sum(visible & (labels == 1)) / max(np.sum(labels == 1), 1))
    cap = completeness_at_purity(labels, scores, purity_min)
    out[f"completeness_at_purity_{purity_min:g}"] = None if cap is None else cap[0]
    mf = max_f1(labels, scores)
    out["max_f1"] = None if mf is None else mf[0]
    cross = purity_completeness_crossing(labels, scores)
    out["crossing_threshold"] = None if cross is None else cross[0]
    for f in fprs:
        out[cm.fpr_key(f)] = tpr_at_fpr(labels, scores, f)
    return out
