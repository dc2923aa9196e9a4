"""The ``evaluate``, ``committee``, ``tune`` and ``promote`` stages (and the ``hpsearch`` entry point).

Each ``run_*`` function takes the typed configuration and the paths that ``dvc.yaml`` passes to the CLI verb,
writes its outputs atomically, records everything in MLflow (through :mod:`lenssearch.tracking`), and
returns a small summary dict.

Predictions are read from ``<predictions_dir>/<network>/predictions.ecsv`` (the train stage's layout).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from astropy.table import Table

from lenssearch.errors import LensSearchError
from lenssearch.evaluate import committee as cm
from lenssearch.evaluate import figures, tables
from lenssearch.evaluate.data import join_predictions, load_published, read_kb_metadata, read_predictions
from lenssearch.evaluate.metrics import (
    classification_metrics,
    completeness_at_purity,
    gate_metric,
    max_f1,
    purity_completeness_crossing,
    roc_auc,
    threshold_curve,
    tpr_at_fpr,
)
from lenssearch.evaluate.report import fmt, side_by_side, write_report
from lenssearch.io import atomic_path

# --------------------------------------------------------------------------------------------------- helpers


def load_wide(predictions_dir: Path, networks, kb: Path | None = None) -> Table:
    """Read the predictions of ``networks`` (and the KB metadata when ``kb`` is given) into one wide table."""
    preds = {n: read_predictions(Path(predictions_dir) / n / "predictions.ecsv", n) for n in networks}
    meta = read_kb_metadata(kb) if kb is not None else None
    return join_predictions(preds, meta)


def selection(cfg) -> tables.Selection:
    """The bins of Tables A.1, A.4, A.5 from the ``evaluate`` section."""
    e = cfg.evaluate
    return tables.Selection(
        threshold=e.threshold,
        adversarial_source_mag=e.adversarial_source_mag_F814W,
        adversarial_theta_e_arcsec=e.adversarial_theta_e_max_arcsec,
        adversarial_rule=e.adversarial_rule,
        fp_lens_mag_split=e.fp_lens_mag_split,
        fp_colour_split=e.fp_colour_split,
        fn_source_mag_splits=tuple(e.fn_source_mag_splits),
        fn_theta_e_split_arcsec=e.fn_theta_e_split_arcsec,
        fn_z_s_splits=tuple(e.fn_z_s_splits),
    )


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


def _host_baseline(wide, labels) -> dict:
    """The AUC of the lens galaxy's F814W brightness alone, and the lenses' and non-lenses' median magnitudes.

    Mock lenses are hosted by members drawn with a probability proportional to their critical line's theta_E
    (Angora et al. 2023, Sect. 3.1), non-lenses by any member: the hosts of the lenses are brighter. A network can
    score that without seeing an arc; this baseline says how far.
    """
    mag = np.asarray(wide["lens_mag_F814W"], dtype=float)
    ok = np.isfinite(mag)
    if not (np.any(ok & (labels == 1)) and np.any(ok & (labels == 0))):
        return {"lens_brightness_auc": None}
    from scipy.stats import rankdata

    brightness = rankdata(-mag[ok]) / ok.sum()  # a score in (0, 1]: the AUC depends on the ranks only
    return {"lens_brightness_auc": roc_auc(labels[ok], brightness),
            "lens_mag_median_lenses": float(np.median(mag[ok & (labels == 1)])),
            "lens_mag_median_nonlenses": float(np.median(mag[ok & (labels == 0)]))}


def _visible(wide, labels, network: str, bands, snr_min: float):
    """Non-lenses, and lenses whose lensed source has S/N >= ``snr_min`` in ``network``'s bands (None: no S/N)."""
    snr = tables.lensed_snr(wide, tables.network_band_names(network, tuple(bands)))
    if not np.any(np.isfinite(snr)):
        return None
    return (labels == 0) | (np.nan_to_num(snr, nan=-1.0) >= snr_min)


def _gate_options(gate) -> dict:
    return {"metric": gate.metric, "purity_min": gate.purity_min, "fpr": gate.fpr}


def gate_label(gate) -> str:
    """The gate metric with its option, e.g. ``completeness_at_purity(purity_min=0.9)``: "the same metric"."""
    if gate.metric == "completeness_at_purity":
        return f"completeness_at_purity(purity_min={gate.purity_min:g})"
    if gate.metric == "tpr_at_fpr":
        return f"tpr_at_fpr(fpr={gate.fpr:g})"
    return gate.metric


def _write_json(path: Path, data) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")
    return path


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def _clean_json(d):
    """NaN -> None so the JSON is standard."""
    if isinstance(d, dict):
        return {k: _clean_json(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_clean_json(v) for v in d]
    if isinstance(d, (float, np.floating)) and not np.isfinite(d):
        return None
    return d


# ----------------------------------------------------------------------------------------------- evaluate
ROW_LABELS = {
    "accuracy": "AE",
    "purity_lens": "GGSL pur",
    "completeness_lens": "GGSL compl",
    "f1_lens": "GGSL F1",
    "purity_nonlens": "NGGSL pur",
    "completeness_nonlens": "NGGSL compl",
    "f1_nonlens": "NGGSL F1",
}


def run_evaluate(cfg, predictions_dir: Path, kb: Path | None, out_dir: Path, report: Path,
                 tracking_uri: str | None = None, log_mlflow: bool = True, kb_dir: Path | None = None,
                 models_dir: Path | None = None) -> dict:
    """Tables A.1-A.5, Figs. 6, 8, 9, 11, A.1, the report beside the paper's values, and MLflow runs.

    With ``kb_dir`` (the variants' KBs, ``<variant>.h5``) and ``models_dir``: the tables are made on
    ``evaluate.tables_variant`` (out-of-fold where a network was trained on it, else its run model's held-out
    scores) and every network is scored on every variant (:mod:`lenssearch.evaluate.variants`); ``kb`` is then
    not used.
    """
    from lenssearch.evaluate import variants as V

    e = cfg.evaluate
    networks = list(e.networks)
    variant_rows, variant_baselines = None, None
    if kb_dir is not None:
        if e.tables_variant not in cfg.variants:
            raise LensSearchError(f"evaluate.tables_variant '{e.tables_variant}' is not one of the variants "
                                  f"{sorted(cfg.variants)}")
        kb = V.kb_path(kb_dir, e.tables_variant)
        preds = {n: V.network_scores(cfg, n, e.tables_variant, predictions_dir, kb_dir, models_dir)[0]
                 for n in networks}
        ids = set.intersection(*[set(p["id"]) for p in preds.values()])
        preds = {n: p[np.isin(p["id"], list(ids))] for n, p in preds.items()}
        wide = join_predictions(preds, read_kb_metadata(kb))
        variant_rows, variant_baselines = V.variant_table(cfg, networks, predictions_dir, kb_dir, models_dir)
    else:
        wide = load_wide(predictions_dir, networks, kb)
    sel = selection(cfg)
    rng = np.random.default_rng(cfg.base.seed)
    fit = tables.fit_red_sequence(wide, rng, e.red_sequence_clip_sigma, e.red_sequence_lts_fraction)
    colour_norm = tables.normalised_colour(wide, fit)
    labels = np.asarray(wide["label"])
    keep = ~tables.adversarial_mask(wide, sel)

    out_dir = Path(out_dir)
    report = Path(report)
    result = {"n_cutouts": len(wide), "n_lenses": int(labels.sum()), "n_nonlenses": int((labels == 0).sum())}
    with atomic_path(out_dir) as tmp:
        (tmp / "tables").mkdir(parents=True)
        (tmp / "figures").mkdir()
        t = {
            "A1": tables.table_a1(wide, networks, sel),
            "A2": tables.table_a2(wide, networks, sel),
            "A3": tables.table_a3(wide, networks, sel),
            "A4": tables.table_a4(wide, networks, sel, colour_norm),
            "A5": tables.table_a5(wide, networks, sel),
            "snr": tables.table_snr(wide, networks, tuple(cfg.base.bands), tuple(e.snr_bins), e.threshold),
        }
        for key, table in t.items():
            table.write(tmp / "tables" / f"table_{key}.ecsv", format="ascii.ecsv")
        per_net = {
            n: summary_metrics(labels, wide[f"p_{n}"], e.threshold, e.purity_min, e.fprs, keep,
                               _visible(wide, labels, n, cfg.base.bands, e.visible_snr_min))
            for n in networks
        }
        red = None if fit is None else {
            "intercept": fit.intercept, "slope": fit.slope, "pivot_mag": fit.pivot,
            "intrinsic_scatter": fit.intrinsic_scatter, "n_inliers": int(fit.inliers.sum()),
            "n_members": int(fit.inliers.size),
        }
        baseline = _host_baseline(wide, labels)
        metrics = {"counts": result, "red_sequence": red, "host_baseline": baseline, "networks": per_net}
        if variant_rows is not None:
            variant_rows.write(tmp / "tables" / "table_variants.ecsv", format="ascii.ecsv")
            t["variants"] = variant_rows
            metrics["tables_variant"] = e.tables_variant
            metrics["variants"] = {
                v: {"host_baseline": variant_baselines.get(v),
                    "networks": {str(r["network"]): {k: r[k] for k in variant_rows.colnames
                                                     if k not in ("network", "variant")}
                                 for r in variant_rows if r["variant"] == v}}
                for v in sorted({str(x) for x in variant_rows["variant"]})
            }
        _write_json(tmp / "metrics.json", _clean_json(metrics))

        fig_dir = tmp / "figures"
        figs = [
            figures.fig6_metrics(t["A3"], networks, fig_dir / "fig6_metrics.png"),
            figures.fig6_roc(wide, networks, fig_dir / "fig6_roc.png"),
            figures.fig6_confusion(wide, networks, e.threshold, fig_dir / "fig6_confusion.png"),
            figures.fig6_boxplots(wide, networks, e.threshold, fig_dir / "fig6_boxplots.png"),
            figures.fig8_false_positives(wide, networks, e.threshold, colour_norm, e.histogram_bins,
                                         fig_dir / "fig8_false_positives.png"),
            figures.fig9_false_negatives(wide, networks, e.threshold, e.histogram_bins,
                                         fig_dir / "fig9_false_negatives.png"),
            figures.figa1_rates_2d(wide, networks, e.threshold, colour_norm, e.histogram_bins,
                                   fig_dir / "figA1_rates_2d.png"),
            figures.fig_red_sequence(wide, fit, fig_dir / "red_sequence.png"),
        ]
        if np.any(np.isfinite(tables.lensed_snr(wide, tuple(cfg.base.bands)))):
            figs.append(figures.fig_snr_detection(t["snr"], networks, e.threshold, fig_dir / "snr_detection.png"))
        figs.append(figures.fig11_purity_completeness(
            {n: (labels, np.asarray(wide[f"p_{n}"])) for n in networks}, fig_dir / "fig11_purity_completeness.png",
            e.threshold))
    blocks = _evaluation_blocks(cfg, t, per_net, red, result, [out_dir / "figures" / f.name for f in figs], report,
                                baseline)
    if variant_rows is not None:
        blocks = _variant_blocks(cfg, variant_rows, variant_baselines) + blocks
    md, html = write_report(blocks, report, "lenssearch evaluation against Angora et al. 2023")

    if log_mlflow:
        from lenssearch import tracking

        children = [
            tracking.RunSpec(name=n, metrics=per_net[n], tags={"kind": "network", "network": n, "stage": "evaluate"},
                             params={"threshold": e.threshold, "members": n})
            for n in networks
        ]
        parent = tracking.RunSpec(
            name="evaluation", params={"networks": ",".join(networks), "threshold": e.threshold},
            tags={"stage": "evaluate"}, artifacts=[md, html, out_dir / "figures", out_dir / "tables",
                                                   out_dir / "metrics.json"],
        )
        ids = tracking.log_runs(e.experiment, parent, children, tracking_uri)
        result["mlflow_run_id"] = ids["evaluation"]
    return result


def _variant_blocks(cfg, rows, baselines) -> list:
    """The report's first section: every network on every KB variant, by arc S/N, and the host baselines."""
    e = cfg.evaluate
    cols = ["network", "variant", "source", "n_lenses", "n_nonlenses", "auc", "n_visible", "auc_visible"] + [
        c for c in rows.colnames if c.startswith("auc_snr_")]

    def cell(v):
        if isinstance(v, (float, np.floating)):
            return f"{v:.3f}" if np.isfinite(v) else "-"
        return str(v)

    body = [[cell(r[c]) for c in cols] for r in rows]
    base = []
    for v, b in sorted(baselines.items()):
        auc = b.get("lens_brightness_auc")
        base.append([v, "-" if auc is None else f"{auc:.3f}", cell(b.get("lens_mag_median_lenses", np.nan)),
                     cell(b.get("lens_mag_median_nonlenses", np.nan))])
    return [
        ("h2", "Networks by KB variant and arc S/N"),
        ("p", "Every network on every KB variant (`oof`: out-of-fold on the variant it was trained on; `heldout`: "
              "its run model on another variant, without the plain member cutouts both variants hold). "
              f"`auc_visible`: the lenses whose lensed source reaches S/N >= {e.visible_snr_min:g} in the "
              "network's bands against every non-lens of the variant, hard negatives included; `auc_snr_<bin>`: "
              "each S/N bin's lenses against every non-lens."),
        ("table", cols, body),
        ("p", "The host baseline: the AUC of the lens galaxy's F814W brightness alone (0.5: the hosts of lenses "
              f"and non-lenses are alike). Tables A.1-A.5 below are on the `{e.tables_variant}` variant."),
        ("table", ["variant", "host-brightness AUC", "median host F814W (lenses)", "(non-lenses)"], base),
        ("p", "Figures on our own simulation are not evidence that a network sees lenses: the `independent` stage "
              "scores the champion, every network and the selected committees on a test set made with another code "
              "and recipe (lenstronomy), after promotion: `reports/independent/summary.md` (AUC by arc S/N, TPR at "
              "low FPR, false positives per confuser kind; MLflow experiment `lenssearch-independent`)."),
    ]


def _evaluation_blocks(cfg, t, per_net, red, counts, fig_paths, report: Path, baseline: dict | None = None) -> list:
    pub = load_published()
    pt = pub["tables"]
    e = cfg.evaluate
    nets = list(e.networks)
    rel = lambda p: os.path.relpath(p, report.parent)  # noqa: E731
    b: list = [("h1", "Evaluation against Angora et al. 2023 (Sect. 4, Appendix A)")]
    b.append(("p", f"Out-of-fold predictions of {len(nets)} networks on {counts['n_cutouts']} cutouts "
                   f"({counts['n_lenses']} lenses, {counts['n_nonlenses']} non-lenses), threshold "
                   f"{e.threshold:g}. Each cell reads `ours (paper)`; the paper's values are transcribed in "
                   f"src/lenssearch/evaluate/angora2023_tables.yaml with their provenance. The paper's KB holds "
                   f"3000 mocks and 1453 non-lenses from 16 clusters with 10 folds; the numbers below come from "
                   f"this KB, so differences measure where this KB and these networks stand, not errors."))
    b.append(("h2", "Table A.1 — performance, with and without the adversarial examples"))
    b.append(("p", f"`_clean`: without the adversarial examples (source F814W > {e.adversarial_source_mag_F814W:g} "
                   f"{e.adversarial_rule} theta_E < {e.adversarial_theta_e_max_arcsec:g}\"), the paper's asterisk."))
    cols = [c for n in nets for c in (n, f"{n}_clean")]
    b.append(("table", *side_by_side(t["A1"], pt["A1"], cols, row_labels=ROW_LABELS)))
    b.append(("h2", "Table A.2 — fluctuations over folds"))
    a2 = t["A2"]
    b.append(("p", "Median, quartiles, IQR and the paper's whiskers Q1 - 1.5 IQR, Q3 + 1.5 IQR over folds, one "
                   "table per statistic. The paper's medians and IQRs are set beside ours; its other Table A.2 "
                   "cells are listed as transcribed at the end (their column headings were lost in the "
                   "transcription)."))
    for stat in ("median", "q1", "q3", "iqr", "whisker_low", "whisker_high"):
        header, rows = side_by_side(a2, pt["A2"], [f"{stat}_{n}" for n in nets], row_labels=ROW_LABELS)
        b.append(("h3", stat))
        b.append(("table", [stat, *nets], rows))
    raw = pt["A2"]
    b.append(("table", ["row (paper, as transcribed)", *raw["columns"]],
              [[ROW_LABELS.get(k, k), *[fmt(v) for v in vals]] for k, vals in raw["rows"].items()]))
    b.append(("h2", "Table A.3 — three-band against single-band networks"))
    b.append(("table", *side_by_side(t["A3"], pt["A3"], nets, row_labels=ROW_LABELS)))
    b.append(("h2", "Table A.4 — false positives by lens magnitude and normalised colour"))
    if red is None:
        b.append(("p", "Too few lens galaxies with colours for a red-sequence fit: colour rows are empty."))
    else:
        b.append(("p", f"Red sequence fitted by least trimmed squares with intrinsic scatter (LTS_LINEFIT, "
                       f"Cappellari et al. 2013): F606W - F814W = {red['intercept']:.3f} {red['slope']:+.4f} "
                       f"(F814W - {red['pivot_mag']:.2f}), intrinsic scatter {red['intrinsic_scatter']:.3f} mag, "
                       f"{red['n_inliers']} of {red['n_members']} members kept. Rows: share of the non-lenses, "
                       f"share of the FPs, FP/TN (the paper's column) and our FPR = FP/(FP+TN)."))
    a4_cols = ["nonlens"] + [f"{n}_{s}" for n in nets for s in ("fp", "fp_over_tn", "fp_rate")]
    b.append(("table", *side_by_side(t["A4"], pt["A4"], a4_cols)))
    b.append(("h2", "Table A.5 — false negatives by source magnitude, theta_E and source redshift"))
    a5_cols = ["lens"] + [f"{n}_{s}" for n in nets for s in ("fn", "fn_over_tp", "fn_rate")]
    b.append(("table", *side_by_side(t["A5"], pt["A5"], a5_cols)))
    b.append(("h2", "Detection against the lensed source's signal-to-noise ratio (not in the paper)"))
    snr = t["snr"]
    if sum(float(np.sum(snr[f"{n}_n"][:-1])) for n in nets) == 0:  # no lens has an S/N (the last row is "all")
        b.append(("p", "The KB has no `lensed_snr_<band>` columns (built before they existed): no S/N table."))
    else:
        b.append(("p", "S/N: the matched-filter signal-to-noise ratio of the noiseless lensed source in the cutout "
                       "against the background noise, in quadrature over the bands each network sees "
                       "(simulate: `lensed_snr_<band>`). It ignores the lens galaxy's light, so it is an upper bound "
                       "on what can be seen; below ~5 the arcs are invisible. Per bin: number of lenses, "
                       f"completeness at p >= {e.threshold:g} (per cent) and the AUC of the bin's lenses against "
                       "every non-lens."))
        header = ["S/N bin"] + [f"{n} {k}" for n in nets for k in ("n", "compl", "AUC")]
        rows = []
        for r in snr:
            cells = [r["row"]]
            for n in nets:
                cells += [f"{int(r[f'{n}_n'])}", fmt(r[f"{n}_completeness"], 1), fmt(r[f"{n}_auc"], 3)]
            rows.append(cells)
        b.append(("table", header, rows))
    b.append(("h2", "Threshold-free metrics"))
    keys = ["auc", "auc_clean", "auc_visible", "visible_lens_fraction", f"completeness_at_purity_{e.purity_min:g}",
            "max_f1", "crossing_threshold", *[cm.fpr_key(f) for f in e.fprs]]
    keys = [k for k in keys if any(k in per_net[n] for n in nets)]
    b.append(("p", f"`auc_clean`: without the adversarial examples; `auc_visible`: only lenses with S/N >= "
                   f"{e.visible_snr_min:g} in the network's bands (`visible_lens_fraction` of them), against "
                   "every non-lens."))
    b.append(("table", ["network", *keys],
              [[n, *[("not measurable" if per_net[n].get(k) is None else fmt(per_net[n][k], 3)) for k in keys]]
               for n in nets]))
    if baseline and baseline.get("lens_brightness_auc") is not None:
        b.append(("p", f"Host baseline: the lens galaxy's F814W brightness alone ranks the lenses above the non-lenses "
                       f"with AUC {baseline['lens_brightness_auc']:.3f} (median host F814W "
                       f"{baseline['lens_mag_median_lenses']:.2f} for the lenses, "
                       f"{baseline['lens_mag_median_nonlenses']:.2f} for the non-lenses): the mocks' hosts are drawn "
                       "in proportion to their critical line's theta_E (Sect. 3.1), the non-lenses from all members. "
                       "A network's AUC above this is what it takes from the arcs."))
    b.append(("h2", "Figures"))
    for p in fig_paths:
        b.append(("img", rel(p), p.stem))
    return b


# ---------------------------------------------------------------------------------------------- committee
def run_committee(cfg, predictions_dir: Path, out_dir: Path, tracking_uri: str | None = None,
                  log_mlflow: bool = True) -> dict:
    """Search committees over the members, write ``committees.ecsv``, ``best.json``, figures, MLflow runs."""
    c, e = cfg.committee, cfg.evaluate
    members = list(c.members)
    wide = load_wide(predictions_dir, members)
    labels = np.asarray(wide["label"])
    gate = _gate_options(c.select)
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
        cm.results_table(results, e.fprs).write(tmp / "committees.ecsv", format="ascii.ecsv")
        cm.results_table(singles, e.fprs).write(tmp / "networks.ecsv", format="ascii.ecsv")
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
            metrics = summary_metrics(labels, sc, e.threshold, e.purity_min, e.fprs)
            metrics["gate"] = x.gate
            return tracking.RunSpec(
                name=x.name, metrics=metrics, params={"members": "+".join(x.members), "rule": x.rule,
                                                      "threshold": e.threshold},
                tags={"kind": "committee", "stage": "committee", "rule": x.rule, "members": "+".join(x.members),
                      "selected": str(x.name in chosen).lower()})

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
    _write_json(out_dir / "best.json", _clean_json(best))
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


def _subjects(cfg, predictions_dir: Path, committees_json: Path | None):
    """Names and out-of-fold scores of every network and selected committee, with the wide table."""
    committees = read_committees(committees_json)
    nets = list(dict.fromkeys([*cfg.evaluate.networks, *[m for c in committees for m in c["members"]]]))
    wide = load_wide(predictions_dir, nets)
    subjects = {n: np.asarray(wide[f"p_{n}"], dtype=float) for n in cfg.evaluate.networks}
    for c in committees:
        subjects[c["name"]] = cm.Committee(tuple(c["members"]), c["rule"]).scores(wide)
    return wide, subjects, committees


# ----------------------------------------------------------------------------------------------------- tune
def run_tune(cfg, predictions_dir: Path, committees_json: Path | None, out: Path, storage_path: Path,
             plots_dir: Path, tracking_uri: str | None = None, log_mlflow: bool = True) -> dict:
    """Tune the threshold and qTP lower bound of every network and selected committee; write thresholds.json."""
    from lenssearch.evaluate.thresholds import open_storage, study_plots, tune_threshold

    tc = cfg.tune
    wide, subjects, _ = _subjects(cfg, predictions_dir, committees_json)
    labels = np.asarray(wide["label"])
    storage_path = Path(storage_path)
    results, studies = {}, {}
    with atomic_path(storage_path) as tmp_db:
        storage = open_storage(f"sqlite:///{tmp_db}")
        for i, (name, scores) in enumerate(subjects.items()):
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
        "models": {n: _clean_json(r.as_dict()) for n, r in results.items()},
    }
    _write_json(out, doc)
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


# -------------------------------------------------------------------------------------------------- promote
def _candidate_key(source: str, gate: str, value: float, threshold: float) -> str:
    text = f"{source}|{gate}|{value:.6f}|{threshold:.6f}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_promote(cfg, predictions_dir: Path, committees_json: Path | None, thresholds_json: Path, out: Path,
                dry_run: bool = False, tracking_uri: str | None = None, echo=print) -> dict:
    """Register the best model by the gate metric; move the alias only if it beats the current champion.

    Candidates are the networks (their newest ``lenssearch-<network>`` version) and the committees of
    ``best.json`` that have a logged model. The champion's gate value is read from its version's tags and is
    compared only if it was measured with the same gate (metric and option); a tie never moves the alias.
    """
    from lenssearch import tracking

    p = cfg.promote
    tracking.setup(tracking_uri)
    wide, subjects, committees = _subjects(cfg, predictions_dir, committees_json)
    labels = np.asarray(wide["label"])
    thresholds_json = Path(thresholds_json)
    if not thresholds_json.exists():
        raise LensSearchError(f"{thresholds_json}: no such thresholds file (written by the tune stage)")
    tuned = json.loads(thresholds_json.read_text()).get("models", {})
    label = gate_label(p.gate)
    opts = _gate_options(p.gate)
    cands, skipped = [], []
    for name, scores in subjects.items():
        kind = "network" if name in cfg.evaluate.networks else "committee"
        if kind == "network":
            try:
                uri = tracking.latest_model_uri(f"lenssearch-{name}")
            except tracking.RegistryError as exc:
                skipped.append({"name": name, "reason": str(exc)})
                continue
        else:
            uri = next((c.get("model_uri") for c in committees if c["name"] == name), None)
            if not uri:
                skipped.append({"name": name, "reason": "no committee model logged (committee.log_models)"})
                continue
        value = gate_metric(opts["metric"], labels, scores, purity_min=opts["purity_min"], fpr=opts["fpr"])
        cands.append({"name": name, "kind": kind, "model_uri": uri, "gate_value": value,
                      "auc": roc_auc(labels, scores)})
    if not cands:
        raise LensSearchError(f"no candidate model to promote: {skipped}")
    cands.sort(key=lambda c: (-c["gate_value"], -np.nan_to_num(c["auc"], nan=-1.0), c["name"]))  # ties: AUC
    best = cands[0]
    t = tuned.get(best["name"])
    threshold = float(t["threshold"]) if t else float(cfg.evaluate.threshold)
    champion = tracking.get_champion(p.registered_model, p.alias)
    comparable = champion is not None and champion.gate_metric == label and champion.gate_value is not None
    if champion is None:
        beats, reason = True, "no current champion"
    elif not comparable:
        beats, reason = False, (f"current champion v{champion.version} has no '{label}' value in its tags "
                                f"(it has {champion.gate_metric!r}); alias left unchanged")
    else:
        beats = best["gate_value"] > champion.gate_value + p.min_improvement
        reason = (f"{best['gate_value']:.4f} {'>' if beats else '<='} champion v{champion.version} "
                  f"{champion.gate_value:.4f} + {p.min_improvement:g}")
    summary = {
        "gate": label, "registered_model": p.registered_model, "alias": p.alias, "dry_run": dry_run,
        "candidates": cands, "skipped": skipped, "best": best["name"], "best_gate_value": best["gate_value"],
        "threshold": threshold,
        "champion_version": None if champion is None else champion.version,
        "champion_gate_value": None if champion is None else champion.gate_value,
        "alias_moved": False, "reason": reason, "version": None,
    }
    echo(f"gate {label}:")
    for c in cands:
        echo(f"  {c['name']:<40s} {c['gate_value']:.4f}  (AUC {c['auc']:.4f})  {c['model_uri']}")
    champ_txt = "none" if champion is None else f"v{champion.version} ({champion.gate_metric} = {champion.gate_value})"
    echo(f"champion {p.registered_model}@{p.alias}: {champ_txt}")
    echo(f"challenger {best['name']}: {best['gate_value']:.4f} -> {'promote' if beats else 'keep champion'} ({reason})")
    if not dry_run:
        source = best["model_uri"]
        tags = {
            "threshold": f"{threshold:.6g}",
            "qtp_lower": f"{float(t['qtp_lower']):.6g}" if t else "",
            "threshold_objective": cfg.tune.objective if t else "default",
            "gate_metric": label,
            "gate_value": f"{best['gate_value']:.6f}",
            "candidate": best["name"],
            "kind": best["kind"],
            "source_uri": source,
        }
        tags["candidate_key"] = _candidate_key(source, label, best["gate_value"], threshold)
        version = tracking.register_version(source, p.registered_model, tags)
        summary["version"] = version
        if beats:
            tracking.set_alias(p.registered_model, p.alias, version)
            summary["alias_moved"] = True
            echo(f"{p.registered_model}@{p.alias} -> version {version}")
        _write_json(out, _clean_json(summary))
    return summary
