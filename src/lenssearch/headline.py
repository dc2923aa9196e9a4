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

#: The names every headline draws from: ``dvc metrics show`` puts all files in one table whose columns are the union
#: of their keys, so the stages share this short vocabulary (a count is ``n``, a ROC area ``auc``, ...), and the
#: table fits a terminal.
VOCABULARY = ("n", "acceptance", "success", "n_failing", "auc", "accuracy", "gate", "threshold", "purity",
              "completeness", "tpr", "version", "mae", "coverage", "rejected")
#: A headline has at most this many numbers.
MAX_KEYS = 4


def _num(value: Any) -> float | int | bool | None:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value
    value = float(value)
    return round(value, 4) if math.isfinite(value) else None


def _median(values) -> float | None:
    values = sorted(float(v) for v in values if v is not None and math.isfinite(float(v)))
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


def field(doc: Mapping) -> dict:
    """``n``: secondary critical lines over all fields and source redshifts."""
    return {"n": int(sum(z["n_lines"] for per_z in doc.values() for z in per_z.values()))}


def simulate(doc: Mapping) -> dict:
    """``n`` mocks and the ``acceptance``: mocks over sources drawn."""
    drawn = sum(r.get("n_drawn", 0) for r in (doc.get("rejected") or {}).values())
    return {"n": doc["n_mocks"], "acceptance": doc["n_mocks"] / drawn if drawn else None}


def negatives(doc: Mapping) -> dict:
    return {"n": doc["n_negatives"]}


def kb(doc: Mapping) -> dict:
    return {"n": doc["n_cutouts"]}


def validate(doc: Mapping) -> dict:
    return {"success": bool(doc["success"]), "n_failing": doc["n_cutouts_failing"]}


def train(doc: Mapping) -> dict:
    """Pooled out-of-fold ``auc``, ``accuracy``, lens ``purity`` and ``completeness`` (threshold 0.5)."""
    oof = doc["oof"]
    return {"auc": oof["auc"], "accuracy": oof["accuracy"], "purity": oof["purity_lens"],
            "completeness": oof["completeness_lens"]}


def evaluate(doc: Mapping) -> dict:
    """The best network's ``auc`` on the paper's variant (Tables A.1-A.5)."""
    aucs = [m.get("auc") for m in (doc.get("networks") or {}).values()]
    aucs = [a for a in aucs if a is not None]
    return {"auc": max(aucs) if aucs else None}


def committee(doc: Mapping) -> dict:
    """The best committee's ``gate`` metric and ``auc``."""
    best = next((c for c in doc["committees"] if c["name"] == doc["best"]), None)
    return {} if best is None else {"gate": best["gate"], "auc": best["auc"]}


def tune(doc: Mapping) -> dict:
    """``n`` models tuned; the median lens ``purity`` and ``completeness`` at their tuned thresholds."""
    models = list(doc["models"].values())
    return {"n": len(models), "purity": _median(m.get("purity") for m in models),
            "completeness": _median(m.get("completeness") for m in models)}


def promote(doc: Mapping) -> dict:
    """The registered ``version``, its ``gate`` value and decision ``threshold``."""
    return {"version": int(doc["version"]) if doc.get("version") else None, "gate": doc["best_gate_value"],
            "threshold": doc["threshold"]}


def search(doc: Mapping) -> dict:
    """``n`` candidates, their ``purity``, the planted lenses' ``completeness`` (recovered fraction), ``threshold``."""
    return {"n": doc.get("n_candidates"), "purity": doc.get("candidates_purity"),
            "completeness": doc.get("lenses_recovered_fraction"), "threshold": doc.get("threshold")}


def independent(doc: Mapping) -> dict:
    """The champion's ``auc`` and ``tpr`` at FPR 1e-2 on the independent set."""
    champion = (doc.get("models") or {}).get("champion") or {}
    return {"auc": champion.get("auc"), "tpr": (champion.get("tpr_at_fpr") or {}).get("0.01")}


def modeling(doc: Mapping) -> dict:
    """The ``theta_E`` median absolute error (``mae``, arcsec, theta_E >= 0.5"), the worst parameter's 1-sigma
    ``coverage`` (0.683 ideal), the KB's non-lenses ``rejected`` by the cuts, the registered ``version``."""
    coverages = [s.get("coverage_1sigma") for s in (doc.get("parameters") or {}).values()]
    worst = max(coverages, key=lambda c: abs(c - 0.6827)) if coverages else None
    return {"mae": doc.get("theta_e_median_abs_error_arcsec"), "coverage": worst,
            "rejected": doc.get("nonlenses_rejected_fraction"),
            "version": int(doc["version"]) if doc.get("version") else None}


def model_candidates(doc: Mapping) -> dict:
    """``n`` candidates modeled, the non-lens candidates ``rejected`` by the cuts (the KB's held-out ones when
    reported: hundreds rather than the demo field's few), the planted lenses kept (``completeness``)."""
    rejected = doc.get("kb_nonlens_candidates_rejected_fraction", doc.get("nonlens_rejected_fraction_modeling"))
    return {"n": doc.get("n_candidates"), "rejected": rejected, "completeness": doc.get("planted_kept_fraction")}


#: stage -> headline of its full result document
HEADLINES: dict[str, Callable[[Mapping], dict]] = {
    "field": field, "simulate": simulate, "negatives": negatives, "kb": kb, "validate": validate,
    "train": train, "evaluate": evaluate, "committee": committee, "tune": tune, "promote": promote,
    "search": search, "independent": independent, "modeling": modeling, "model-candidates": model_candidates,
}


def headline(stage: str, doc: Mapping) -> dict:
    """The headline numbers of ``stage`` from its full result document (non-finite values as ``null``)."""
    values = {k: _num(v) for k, v in HEADLINES[stage](doc).items()}
    unknown = sorted(set(values) - set(VOCABULARY))
    if len(values) > MAX_KEYS or unknown:
        raise ValueError(f"headline of '{stage}': {sorted(values)} (at most {MAX_KEYS} names of {VOCABULARY})")
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
