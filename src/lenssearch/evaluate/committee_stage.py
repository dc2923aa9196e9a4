"""The ``committee`` stage: committees of networks by mean and product (HOLISMOKES XVI, Sect. 2), ranked by the
gate metric; ``committees.ecsv``, ``networks.ecsv``, ``best.json``, figures, one MLflow run per committee and the
selected committees logged as pyfunc models."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lenssearch.evaluate import committee as cm
from lenssearch.evaluate import figures
from lenssearch.evaluate.common import clean_json, gate_label, gate_options, load_wide, summary_metrics, write_json
from lenssearch.evaluate.metrics import purity_completeness_crossing, threshold_curve
from lenssearch.evaluate.report import fmt, write_report
from lenssearch.io import atomic_path, describe_columns


def committee_threshold(labels, scores, default: float) -> tuple[float, str]:
    """The threshold at which a committee's metrics are quoted: where lens purity equals completeness (Angora et
    al. 2023, Fig. 11), else ``default``; with the rule's name."""
    cross = purity_completeness_crossing(labels, scores)
    if cross is None:
        return float(default), "default"
    return float(cross[0]), "purity=completeness"


def run_committee(cfg, predictions_dir: Path, out_dir: Path, tracking_uri: str | None = None,
                  log_mlflow: bool = True) -> dict:
    """Search committees over the members, write ``committees.ecsv``, ``best.json``, figures, MLflow runs."""
    c, e = cfg.committee, cfg.evaluate
    members = list(c.members)
    wide = load_wide(predictions_dir, members, kb_variant=cfg.train.kb_variant)
    labels = np.asarray(wide["label"])
    gate = gate_options(c.select)
    results = cm.search_committees(wide, members, list(c.rules), c.min_size, c.max_size, e.fprs, gate)
    singles = [cm.evaluate_scores(m, (m,), "single", labels, np.asarray(wide[f"p_{m}"]), e.fprs, gate)
               for m in members]
    best_overall = results[0]
    best_by_rule = {r: next(x for x in results if x.rule == r) for r in c.rules if any(x.rule == r for x in results)}
    chosen = {best_overall.name: best_overall, **{x.name: x for x in best_by_rule.values()}}
    n_neg = int((labels == 0).sum())
    out_dir = Path(out_dir)
    by_name = {x.name: cm.Committee(x.members, x.rule) for x in results}
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        provenance = {"gate": gate_label(c.select), "predictions": str(predictions_dir),
                      "models": "out-of-fold probabilities of lenssearch-<network> (train stage)",
                      "threshold": "none: gate, AUC and TPR at FPR are threshold-free"}
        for rows, name in ((results, "committees.ecsv"), (singles, "networks.ecsv")):
            describe_columns(cm.results_table(rows, e.fprs), provenance).write(tmp / name, format="ascii.ecsv")
        curves = {s.name: cm.roc_points(labels, np.asarray(wide[f"p_{s.name}"])) for s in singles}
        tprn = {s.name: threshold_curve(labels, np.asarray(wide[f"p_{s.name}"])) for s in singles}
        for name in chosen:
            sc = by_name[name].scores(wide)
            curves[name] = cm.roc_points(labels, sc)
            tprn[name] = threshold_curve(labels, sc)
        figures.fig_roc_log(curves, 1.0 / max(n_neg, 1), tmp / "roc_log.png")
        figures.fig_tpr_vs_candidates({k: (v.n_selected, v.tpr) for k, v in tprn.items()},
                                      tmp / "tpr_vs_candidates.png", "TPR against the number of candidates")
    model_uris: dict[str, str] = {}
    if log_mlflow:
        from lenssearch import tracking

        def spec(x: cm.CommitteeResult) -> tracking.RunSpec:
            sc = by_name[x.name].scores(wide)
            # a product of probabilities is not on the scale of one network's: 0.5 would call nearly everything a
            # non-lens. The threshold-dependent metrics are at the committee's own purity = completeness crossing
            # (the tune stage then tunes the threshold that promote registers)
            threshold, rule = committee_threshold(labels, sc, e.threshold)
            metrics = summary_metrics(labels, sc, threshold, e.purity_min, e.fprs)
            metrics["gate"] = x.gate
            return tracking.RunSpec(
                name=x.name, metrics=metrics, params={"members": "+".join(x.members), "rule": x.rule,
                                                      "threshold": f"{threshold:.6g}", "threshold_rule": rule},
                tags={"kind": "committee", "stage": "committee", "rule": x.rule, "members": "+".join(x.members),
                      "best": str(x.name == best_overall.name).lower(),
                      "logged_model": str(x.name in chosen and c.log_models).lower()})

        parent = tracking.RunSpec(
            name="committees", params={"members": ",".join(members), "rules": ",".join(c.rules),
                                       "select": gate_label(c.select)},
            metrics={"best_gate": best_overall.gate}, tags={"stage": "committee", "best": best_overall.name},
            artifacts=[out_dir / "committees.ecsv", out_dir / "networks.ecsv", out_dir / "roc_log.png",
                       out_dir / "tpr_vs_candidates.png"])
        ids = tracking.log_runs(e.experiment, parent, [spec(x) for x in results], tracking_uri)
        if c.log_models:
            bands = list(cfg.base.bands)
            for name, x in chosen.items():
                uris = {m: tracking.latest_model_uri(f"lenssearch-{m}") for m in x.members}
                band_index = {m: (bands.index(m.upper()) if m.upper() in bands else None) for m in x.members}
                model_uris[name] = tracking.log_committee_model(ids[name], uris, band_index, x.rule, len(bands))
    best = {
        "select": gate_label(c.select),
        "n_negatives": n_neg,
        "note": cm.measurability_note(n_neg, e.fprs),
        "best": best_overall.name,
        "committees": [
            {"name": x.name, "members": list(x.members), "rule": x.rule, "gate": x.gate, "auc": x.auc,
             "tpr_at_fpr": {f"{f:g}": v for f, v in x.tpr_at_fpr.items()}, "model_uri": model_uris.get(x.name)}
            for x in chosen.values()
        ],
        "networks": [{"name": s.name, "gate": s.gate, "auc": s.auc} for s in singles],
    }
    write_json(out_dir / "best.json", clean_json(best))
    _write_committee_report(out_dir / "committee.md", results, singles, best, e.fprs)
    return best


def _write_committee_report(path: Path, results, singles, best, fprs) -> None:
    head = ["model", "gate", "AUC", *[f"TPR@FPR={f:g}" for f in fprs]]

    def row(x):
        return [x.name, fmt(x.gate, 3), fmt(x.auc, 3),
                *[("not measurable" if x.tpr_at_fpr[f] is None else fmt(x.tpr_at_fpr[f], 3)) for f in fprs]]

    blocks = [
        ("h1", "Committees of networks (HOLISMOKES XVI, Sect. 2)"),
        ("p", f"Ranked by {best['select']}. {best['note']} Best: {best['best']}."),
        ("h2", "Single networks"), ("table", head, [row(s) for s in singles]),
        ("h2", "Committees (best first)"), ("table", head, [row(x) for x in results]),
        ("img", "roc_log.png", "ROC, logarithmic FPR"), ("img", "tpr_vs_candidates.png", "TPR vs candidates"),
    ]
    write_report(blocks, path, "lenssearch committees")
