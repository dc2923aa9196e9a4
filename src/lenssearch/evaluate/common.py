"""Helpers shared by the evaluation stages (evaluate, committee, tune, promote): the wide table of out-of-fold
predictions, the selected committees, the gate metric's label, strict JSON output.

Kept apart from ``stages.py`` (tables, figures, reports) so that the tune and promote stages import only what they
use: a change to a figure does not re-run promote (``dvc.yaml`` deps are the modules a stage imports).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from astropy.table import Table, vstack

from lenssearch.errors import InputFileError, LensSearchError
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


#: Where the evaluate stage writes the held-out predictions, inside its output folder:
#: ``<out>/heldout/<network>/<variant>.ecsv`` (the prediction columns of the train stage).
HELDOUT_DIR = "heldout"


def _heldout_dir(predictions_dir: Path, heldout_dir: Path | None) -> Path:
    """``heldout_dir``, by default ``<predictions_dir>/evaluation/heldout`` (where the evaluate stage writes)."""
    return Path(predictions_dir) / "evaluation" / HELDOUT_DIR if heldout_dir is None else Path(heldout_dir)


def heldout_path(heldout_dir: Path, network: str, variant: str) -> Path:
    """The held-out predictions of ``network`` on ``variant`` (written by the evaluate stage)."""
    return Path(heldout_dir) / network / f"{variant}.ecsv"


def load_wide(predictions_dir: Path, networks, kb: Path | None = None, kb_variant: dict | None = None,
              heldout_dir: Path | None = None) -> Table:
    """Read the predictions of ``networks`` (and the KB metadata when ``kb`` is given) into one wide table.

    ``kb_variant`` (``train.kb_variant``: network -> the KB variant it was trained on): when ``networks`` come from
    more than one variant (a committee of different ground truths, HOLISMOKES XVI), the table is the union of
    their variants' cutouts, with a ``variant`` column. On its own variant a network's score is its out-of-fold
    probability; on another it is its run model's held-out score, read from ``heldout_dir`` (default
    ``<predictions_dir>/evaluation/heldout``: the evaluate stage writes them, leaving out the plain member cutouts
    that its training KB also holds). Each variant keeps the cutouts that every network scores.

    The table's ``meta["kb_dvc_md5"]`` maps each network to the ``kb_dvc_md5`` of its predictions (the content of the
    KB it was trained on; empty when unrecorded): promote fingerprints the out-of-fold set with it.
    """
    networks = list(networks)
    preds = {n: read_predictions(Path(predictions_dir) / n / "predictions.ecsv", n) for n in networks}
    wide = _join_variants(preds, networks, predictions_dir, kb, kb_variant, heldout_dir)
    wide.meta["kb_dvc_md5"] = {n: str(preds[n].meta.get("kb_dvc_md5", "")) for n in networks}
    return wide


def _join_variants(preds: dict[str, Table], networks: list[str], predictions_dir: Path, kb: Path | None,
                   kb_variant: dict[str, str] | None, heldout_dir: Path | None) -> Table:
    variants = list(dict.fromkeys(kb_variant.get(n) for n in networks)) if kb_variant else []
    if len(variants) <= 1:
        meta = read_kb_metadata(kb) if kb is not None else None
        return join_predictions(preds, meta)
    if None in variants:
        missing = [n for n in networks if kb_variant.get(n) is None]
        raise LensSearchError(f"train.kb_variant has no entry for network(s) {missing}")
    if kb is not None:
        raise LensSearchError(f"networks {networks} were trained on different KB variants {variants}: "
                              "one KB's metadata cannot describe their union")
    heldout_dir = _heldout_dir(predictions_dir, heldout_dir)
    return vstack([_variant_part(preds, networks, variant, kb_variant, heldout_dir) for variant in variants],
                  join_type="exact")


def _variant_part(preds: dict[str, Table], networks: list[str], variant: str, kb_variant: dict[str, str],
                  heldout_dir: Path) -> Table:
    """The cutouts of ``variant`` that every network scores: out of fold for a network trained on it, its run
    model's held-out score (the evaluate stage's) for the others."""
    scores = {}
    for n in networks:
        if kb_variant.get(n) == variant:
            scores[n] = preds[n]
            continue
        path = heldout_path(heldout_dir, n, variant)
        if not path.exists():
            raise InputFileError(f"{path}: no held-out predictions of '{n}' on the '{variant}' variant "
                                 "(the evaluate stage writes them: run it with --kb-dir and --models)")
        scores[n] = read_predictions(path, n)
    common = set.intersection(*[set(np.asarray(t["id"]).astype(str)) for t in scores.values()])
    if not common:
        raise LensSearchError(f"no cutout of the '{variant}' variant is scored by all of {networks}")
    part = join_predictions({n: t[np.isin(np.asarray(t["id"]).astype(str), list(common))]
                             for n, t in scores.items()})
    part["variant"] = np.full(len(part), variant)
    return part


def load_on_variant(predictions_dir: Path, networks, variant: str, kb_variant: dict[str, str],
                    heldout_dir: Path | None = None) -> Table:
    """The scores of ``networks`` on the cutouts of one KB ``variant`` (``train.kb_variant`` says where each was
    trained): out of fold on its own variant, held out on another (:func:`load_wide`), whichever variants the
    networks come from; the cutouts that every network scores."""
    networks = list(networks)
    preds = {n: read_predictions(Path(predictions_dir) / n / "predictions.ecsv", n) for n in networks
             if kb_variant.get(n) == variant}
    heldout_dir = _heldout_dir(predictions_dir, heldout_dir)
    return _variant_part(preds, networks, variant, kb_variant, heldout_dir)


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
    wide = load_wide(predictions_dir, nets, kb_variant=cfg.train.kb_variant)
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
