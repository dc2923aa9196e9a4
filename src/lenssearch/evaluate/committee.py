"""Committees of networks (HOLISMOKES XVI, Schuldt et al. 2025, Sect. 2; Cañameras et al. 2024).

A committee combines the lens probabilities of two or more trained networks by their **mean** or their
**product**. Committees whose members make different mistakes raise the true-positive rate at low
false-positive rates. For each committee, from the out-of-fold predictions:

- the ROC curve and its AUC;
- the TPR at FPR = 1e-2, 1e-3, 1e-4 — ``None`` (reported "not measurable") when ``FPR < 1 / N_neg``;
- the TPR against the number of candidates selected (HOLISMOKES XVI, Figs. 1-2).

:func:`search_committees` scores every combination of the candidate members (every size from ``min_size`` to
``max_size``, both rules) with a gate metric and returns them ranked; the best is the one reported and logged
as a pyfunc model (``committee_model.py``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from astropy.table import Table

from lenssearch.errors import LensSearchError
from lenssearch.evaluate.metrics import gate_metric, min_measurable_fpr, roc_auc, threshold_curve, tpr_at_fpr

#: How member probabilities are combined (HOLISMOKES XVI: "the average or the product of their scores").
RULES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mean": lambda scores: scores.mean(axis=0),
    "product": lambda scores: scores.prod(axis=0),
}


def combine(scores: np.ndarray, rule: str) -> np.ndarray:
    """Combine member scores of shape (n_members, N) with ``rule`` from :data:`RULES`."""
    try:
        return RULES[rule](np.asarray(scores, dtype=float))
    except KeyError:
        raise LensSearchError(f"unknown committee rule '{rule}'; expected one of {sorted(RULES)}") from None


@dataclass(frozen=True)
class Committee:
    """A set of member networks and a combination rule."""

    members: tuple[str, ...]
    rule: str

    @property
    def name(self) -> str:
        return f"{self.rule}({'+'.join(self.members)})"

    def scores(self, wide: Table) -> np.ndarray:
        """Committee scores of the cutouts of a wide prediction table."""
        return combine(np.stack([np.asarray(wide[f"p_{m}"], dtype=float) for m in self.members]), self.rule)


@dataclass
class CommitteeResult:
    """Evaluation of one committee (or of a single network, for comparison)."""

    name: str
    members: tuple[str, ...]
    rule: str
    auc: float
    tpr_at_fpr: dict[float, float | None]
    gate: float
    extra: dict[str, float] = field(default_factory=dict)


def fpr_key(fpr: float) -> str:
    """Metric name of the TPR at a given FPR, e.g. ``tpr_at_fpr_1e-03``."""
    return f"tpr_at_fpr_{fpr:.0e}"


def evaluate_scores(name, members, rule, labels, scores, fprs, gate: dict) -> CommitteeResult:
    """AUC, TPR at each of ``fprs`` (None when not measurable) and the gate metric of one score vector."""
    return CommitteeResult(
        name=name,
        members=tuple(members),
        rule=rule,
        auc=roc_auc(labels, scores),
        tpr_at_fpr={f: tpr_at_fpr(labels, scores, f) for f in fprs},
        gate=gate_metric(gate["metric"], labels, scores, **{k: v for k, v in gate.items() if k != "metric"}),
    )


def candidate_committees(members: list[str], rules: list[str], min_size: int, max_size: int) -> list[Committee]:
    """Every committee of ``min_size``..``max_size`` distinct members, for every rule."""
    if min_size < 2:
        raise LensSearchError(f"committee.min_size must be at least 2, got {min_size}")
    out = []
    for k in range(min_size, min(max_size, len(members)) + 1):
        for combo in itertools.combinations(members, k):
            out.extend(Committee(tuple(combo), rule) for rule in rules)
    return out


def search_committees(
    wide: Table, members: list[str], rules: list[str], min_size: int, max_size: int, fprs, gate: dict
) -> list[CommitteeResult]:
    """Evaluate every candidate committee; return them sorted by the gate metric (then AUC), best first."""
    missing = [m for m in members if f"p_{m}" not in wide.colnames]
    if missing:
        raise LensSearchError(f"committee members {missing} have no predictions")
    labels = np.asarray(wide["label"])
    results = [
        evaluate_scores(c.name, c.members, c.rule, labels, c.scores(wide), fprs, gate)
        for c in candidate_committees(members, rules, min_size, max_size)
    ]
    results.sort(key=lambda r: (-np.nan_to_num(r.gate, nan=-np.inf), -np.nan_to_num(r.auc, nan=-np.inf), r.name))
    return results


def results_table(results: list[CommitteeResult], fprs) -> Table:
    """One row per committee: name, members, rule, gate, AUC, TPR at each FPR ("not measurable" as NaN)."""
    rows = []
    for r in results:
        row = {"name": r.name, "members": "+".join(r.members), "rule": r.rule, "gate": r.gate, "auc": r.auc}
        for f in fprs:
            v = r.tpr_at_fpr[f]
            row[fpr_key(f)] = np.nan if v is None else v
        rows.append(row)
    names = ["name", "members", "rule", "gate", "auc", *[fpr_key(f) for f in fprs]]
    if rows:
        return Table(rows=rows, names=names)
    return Table(names=names, dtype=[str, str, str] + [float] * (len(names) - 3))


def measurability_note(n_neg: int, fprs) -> str:
    """A sentence stating which FPRs the negatives can and cannot support."""
    floor = min_measurable_fpr(n_neg)
    bad = [f"{f:g}" for f in fprs if f < floor]
    text = f"With N_neg = {n_neg} negatives the smallest measurable FPR is 1/N_neg = {floor:.2g}."
    if bad:
        text += f" TPR at FPR {', '.join(bad)} is not measurable (never extrapolated)."
    return text


def roc_points(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) of the ROC at every distinct threshold."""
    c = threshold_curve(labels, scores)
    return c.fpr, c.tpr
