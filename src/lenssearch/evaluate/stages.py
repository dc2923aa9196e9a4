"""The ``evaluate`` and ``committee`` stages (``tune.py`` and ``promote.py`` hold the other two).

Each ``run_*`` function takes the typed configuration and the paths that ``dvc.yaml`` passes to the CLI verb,
writes its outputs atomically, records everything in MLflow (through :mod:`lenssearch.tracking`), and
returns a small summary dict.

Predictions are read from ``<predictions_dir>/<network>/predictions.ecsv`` (the train stage's layout).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lenssearch.errors import LensSearchError
from lenssearch.evaluate import committee as cm
from lenssearch.evaluate import figures, tables
from lenssearch.evaluate.common import clean_json as _clean_json
from lenssearch.evaluate.common import HELDOUT_DIR, heldout_path, load_wide, summary_metrics
from lenssearch.evaluate.common import write_json as _write_json
from lenssearch.evaluate.data import join_predictions, load_published, read_kb_metadata
from lenssearch.evaluate.metrics import roc_auc
from lenssearch.evaluate.report import fmt, side_by_side, write_report
from lenssearch.io import atomic_path, describe_columns

# --------------------------------------------------------------------------------------------------- helpers


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
    variant_rows, variant_baselines, heldout = None, None, {}
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
        variant_rows, variant_baselines = V.variant_table(cfg, networks, predictions_dir, kb_dir, models_dir,
                                                          heldout=heldout)
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
        provenance = {"models": {n: f"out-of-fold probabilities of lenssearch-<network> in "
                                    f"{Path(predictions_dir) / n / 'predictions.ecsv'}" for n in networks},
                      "threshold": e.threshold, "kb": None if kb is None else str(kb)}
        for key, table in t.items():
            describe_columns(table, provenance).write(tmp / "tables" / f"table_{key}.ecsv", format="ascii.ecsv")
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
            describe_columns(variant_rows, {"threshold": e.threshold, "models": "out of fold on its own variant, "
                                            "its run model (models/<network>/run) on the others"}).write(
                tmp / "tables" / "table_variants.ecsv", format="ascii.ecsv")
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
        for (net, variant), table in heldout.items():
            path = heldout_path(tmp / HELDOUT_DIR, net, variant)
            path.parent.mkdir(parents=True, exist_ok=True)
            describe_columns(table, {"models": f"run model of lenssearch-{net} (models/{net}/run), trained on "
                                               f"the '{cfg.train.kb_variant.get(net)}' variant",
                                     "kb": str(V.kb_path(kb_dir, variant))}).write(path, format="ascii.ecsv")

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
