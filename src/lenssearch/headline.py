"""Headline metrics: the few numbers per stage that ``dvc metrics show``, ``dvc metrics diff`` and ``dvc exp show``
display.

Each stage verb writes its full results as reports (``reports/...``, gitignored, with the figures) and, given
``--metrics PATH``, a small JSON file of its headline numbers: ``metrics/<stage>...json``, committed to git like
``dvc.lock``, so that diffs against a commit and experiment tables work (the layout of
iterative/example-get-started). One function per stage maps the stage's full result document to its headline.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Mapping

#: A headline has at most this many numbers (``dvc metrics show`` must fit a terminal).
MAX_KEYS = 8


def _num(value: Any) -> float | int | bool | None:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value
    value = float(value)
    return round(value, 4) if math.isfinite(value) else None


def field(doc: Mapping) -> dict:
    lines = [z["n_lines"] for per_z in doc.values() for z in per_z.values()]
    return {"n_fields": len(doc), "n_secondary_lines": int(sum(lines))}


def simulate(doc: Mapping) -> dict:
    drawn = sum(r.get("n_drawn", 0) for r in (doc.get("rejected") or {}).values())
    out = {"n_mocks": doc["n_mocks"], "fraction_multiple_images": doc.get("fraction_multiple_images"),
           "magnification_median": (doc.get("magnification") or {}).get("median")}
    if drawn:
        out["acceptance"] = doc["n_mocks"] / drawn
    return out


def negatives(doc: Mapping) -> dict:
    return {"n_negatives": doc["n_negatives"], "n_excluded": int(sum((doc.get("excluded") or {}).values()))}


def kb(doc: Mapping) -> dict:
    return {k: doc[k] for k in ("n_cutouts", "n_mocks", "n_negatives", "theta_e_median_arcsec") if k in doc}


def validate(doc: Mapping) -> dict:
    return {"success": bool(doc["success"]), "n_failed_expectations": doc["n_failed_expectations"],
            "n_cutouts_failing": doc["n_cutouts_failing"]}


def train(doc: Mapping) -> dict:
    oof, folds = doc["oof"], doc["folds"]
    return {"auc": oof["auc"], "accuracy": oof["accuracy"], "f1_lens": oof["f1_lens"],
            "auc_fold_iqr": folds.get("auc_iqr"), "run_model_auc": doc["run_model_validation"]["auc"]}


def evaluate(doc: Mapping) -> dict:
    """The AUC of each network on the paper's variant (at most :data:`MAX_KEYS`)."""
    nets = doc.get("networks") or {}
    return {f"auc_{name}": m.get("auc") for name, m in list(nets.items())[:MAX_KEYS]}


def committee(doc: Mapping) -> dict:
    best = next((c for c in doc["committees"] if c["name"] == doc["best"]), None)
    out = {"n_selected": len(doc["committees"])}
    if best is not None:
        out.update(gate=best["gate"], auc=best["auc"])
    return out


def tune(doc: Mapping) -> dict:
    """The tuned threshold of each model (networks first, at most :data:`MAX_KEYS`)."""
    return {f"threshold_{name}": r["threshold"] for name, r in list(doc["models"].items())[:MAX_KEYS]}


def promote(doc: Mapping) -> dict:
    return {"gate_value": doc["best_gate_value"], "threshold": doc["threshold"],
            "version": int(doc["version"]) if doc.get("version") else None, "alias_moved": bool(doc["alias_moved"])}


def search(doc: Mapping) -> dict:
    return {k: doc[k] for k in ("n_candidates", "candidates_purity", "lenses_recovered_fraction", "threshold")
            if k in doc}


def independent(doc: Mapping) -> dict:
    champion = (doc.get("models") or {}).get("champion") or {}
    return {"auc": champion.get("auc"), "auc_snr_ge_min": champion.get("auc_snr_ge_30", champion.get("auc_bright")),
            "tpr_at_fpr_1e-2": (champion.get("tpr_at_fpr") or {}).get("0.01")}


#: stage -> headline of its full result document
HEADLINES: dict[str, Callable[[Mapping], dict]] = {
    "field": field, "simulate": simulate, "negatives": negatives, "kb": kb, "validate": validate,
    "train": train, "evaluate": evaluate, "committee": committee, "tune": tune, "promote": promote,
    "search": search, "independent": independent,
}


def headline(stage: str, doc: Mapping) -> dict:
    """The headline numbers of ``stage`` from its full result document (non-finite values as ``null``)."""
    values = {k: _num(v) for k, v in HEADLINES[stage](doc).items()}
    if len(values) > MAX_KEYS:
        raise ValueError(f"headline of '{stage}' has {len(values)} numbers (at most {MAX_KEYS})")
    return values


def write_headline(stage: str, doc: Mapping | str | Path, path: str | Path | None) -> dict | None:
    """Write the headline of ``stage`` to ``path`` (JSON, written atomically); ``doc`` is the full result document
    or the path of its JSON file. Nothing when ``path`` is None."""
    if path is None:
        return None
    from lenssearch.io import atomic_path

    if isinstance(doc, (str, Path)):
        doc = json.loads(Path(doc).read_text())
    values = headline(stage, doc)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(values, indent=2) + "\n")
    return values
