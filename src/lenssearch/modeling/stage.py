"""The ``modeling`` stage: train, calibrate, validate and register the modeling network; set the rejection cuts.

1. the lenses of ``modeling.kb_variant`` with their truth (:mod:`lenssearch.modeling.data`), split by KB fold;
2. training (:mod:`lenssearch.modeling.fit`), resumable, one MLflow parent run in ``modeling.experiment`` with the
   per-epoch losses;
3. calibration of the sigmas on the validation lenses, then the validation report on the test lenses
   (:mod:`lenssearch.modeling.report`): ``reports/modeling/`` and the run's metrics and artifacts;
4. the rejection cuts (HOLISMOKES XVI, Sect. 3.2, :mod:`lenssearch.modeling.cuts`): for each parameter of
   ``modeling.reject.parameters``, the range of the predicted sigma at the predicted theta_E among the held-out
   lenses (test and validation), widened by ``margin``, so that none of them is rejected; the loss of unseen
   lenses cross-checked over ``cross_check_folds`` folds of them; measured on every non-lens of the same KB (hard
   negatives included; the network learns from lenses only, so none of them is seen) by confuser kind
   (``nonlenses.ecsv``; ``cuts.png``, the counterpart of the paper's Fig. 4);
5. registration as ``modeling.registered_model`` (a pyfunc returning a table of ``pred_`` and ``sigma_``
   columns, :mod:`lenssearch.modeling.pyfunc_model`) with the cuts as version tags; ``model.json`` names the
   version for the ``model-candidates`` stage.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import numpy as np

from lenssearch.errors import LensSearchError
from lenssearch.io import atomic_path
from lenssearch.modeling.cuts import cross_checked_loss, reject, rejection_cuts
from lenssearch.modeling.data import held_out_shifts, shift_images, shift_truth
from lenssearch.simulate.truth import PARAMETERS

PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_nonlenses(kb_path: str | Path):
    """Raw cutouts, metadata and folds of the KB's non-lenses (read without loading the whole KB). The modeling
    network learns from lenses only, so every one of them is unseen by it."""
    import h5py

    from lenssearch.kb.build import read_kb_metadata

    with h5py.File(kb_path, "r") as h5:
        rows = np.flatnonzero(h5["labels"][...] == 0)
        fold = h5["fold"][...][rows]
        cutouts = h5["cutouts"][rows] if rows.size else np.zeros((0, *h5["cutouts"].shape[1:]), np.float32)
    return np.asarray(cutouts, np.float32), read_kb_metadata(kb_path)[rows], fold


def run_modeling(cfg, kb_path, truth_path, models_dir, reports_dir, metrics_path=None, *, log_mlflow: bool = True,
                 tracking_uri: str | None = None, progress: bool = True) -> dict:
    """The stage (see the module docstring); returns the metrics written to ``reports_dir/metrics.json``."""
    from lenssearch import tracking
    from lenssearch.config import flatten, as_dict
    from lenssearch.modeling import fit, report
    from lenssearch.modeling.data import read_lens_set
    from lenssearch.train.fit import precision_policy

    t0 = time.perf_counter()
    m = cfg.modeling
    unknown = [p for p in m.reject.parameters if p not in PARAMETERS]
    if unknown:
        raise LensSearchError(f"modeling.reject.parameters: unknown parameter(s) {unknown} (known: {list(PARAMETERS)})")
    reports_dir, models_dir = Path(reports_dir), Path(models_dir)
    lenses = read_lens_set(kb_path, truth_path)
    if lenses.cutouts.shape[1] != m.network.input_pixels:
        raise LensSearchError(f"{kb_path}: cutouts are {lenses.cutouts.shape[1]} pixels a side but "
                              f"modeling.network.input_pixels is {m.network.input_pixels}")
    rows = lenses.split(m.test_fold)
    kb_hash = tracking.kb_dvc_hash(kb_path)
    print_ = fit.fingerprint(cfg, kb_hash, tracking.kb_dvc_hash(truth_path))

    if log_mlflow:
        tracking.setup(tracking_uri)
    runs = contextlib.ExitStack()

    def run_for(state):
        """The MLflow run of this training (resumed from ``state`` after a kill), open until the stage ends."""
        if not log_mlflow:
            return None
        return runs.enter_context(tracking.network_run(
            "modeling", flatten({"modeling": as_dict(m)}),
            {"lenssearch.stage": "modeling", "kb_dvc_md5": kb_hash, "fingerprint": print_,
             "git_commit": tracking.git_commit(), "precision": precision_policy(m.mixed_precision)},
            run_id=state.get("mlflow_run_id"), tracking_uri=tracking_uri, experiment=m.experiment))

    with runs:
        model, state = fit.train(cfg, lenses, rows, models_dir, print_, run_for, progress)
        # calibration on the validation lenses, then every figure on the test lenses; both moved off the centre as
        # in the training (modeling/data.py), by the same seeded draws as the training's validation loss
        pixel, max_shift = fit.shift_pixels(cfg)
        binning = int(m.network.binning)

        def held_out(images, stream: int):
            shifts = held_out_shifts(len(images), int(cfg.base.seed), stream, max_shift)
            return shift_images(images, shifts * binning), shifts

        def held_out_lenses(rows_, stream: int):
            images, shifts = held_out(lenses.cutouts[rows_], stream)
            return images, shift_truth(lenses.truth[rows_], shifts, pixel)

        val_images, val_truth = held_out_lenses(rows["validation"], 1)
        val_mean, val_sigma = fit.predict(model, val_images)
        factors = fit.calibration_factors(val_truth, val_mean, val_sigma)
        keras_path = models_dir / "model.keras"
        fit.keras_save(model.save, keras_path)
        test = rows["test"]
        test_images, test_truth = held_out_lenses(test, 2)
        mean, sigma = fit.predict(model, test_images, factors)
        val_sigma = val_sigma * factors
        truth = test_truth.astype(np.float64)
        meta = lenses.metadata[test]
        stats = report.parameter_stats(truth, mean, sigma)
        i_te = PARAMETERS.index("theta_e_arcsec")
        big = truth[:, i_te] >= m.theta_e_min_arcsec
        theta_mae = float(np.median(np.abs(mean[big, i_te] - truth[big, i_te]))) if big.any() else float("nan")
        held_out_mean, held_out_sigma = np.concatenate([mean, val_mean]), np.concatenate([sigma, val_sigma])
        r = m.reject
        cuts = rejection_cuts(held_out_mean, held_out_sigma, r.parameters, r.margin, r.trend_degree)
        unseen_loss = cross_checked_loss(held_out_mean, held_out_sigma, r.parameters, r.margin, r.trend_degree,
                                         r.cross_check_folds, cfg.base.seed)
        nl_cut, nl_meta, nl_fold = read_nonlenses(kb_path)
        nl_cut, _ = held_out(nl_cut, 3)
        nl_mean, nl_sigma = fit.predict(model, nl_cut, factors)
        nl_rejected, nl_by = reject(nl_mean, nl_sigma, cuts)
        kinds = (np.asarray(nl_meta["confuser"]).astype(str) if "confuser" in nl_meta.colnames
                 else np.full(len(nl_meta), "non-lens"))
        lens_rejected, _ = reject(held_out_mean, held_out_sigma, cuts)
        by_kind = {k: {"n": int(np.sum(kinds == k)), "rejected_fraction": float(np.mean(nl_rejected[kinds == k]))}
                   for k in sorted(set(kinds.tolist()))}

        reports_dir.mkdir(parents=True, exist_ok=True)
        snr = np.asarray(meta["lensed_snr"], float) if "lensed_snr" in meta.colnames else np.full(len(meta), np.nan)
        tables = {"predictions.ecsv": report.predictions_table(lenses.ids[test], truth, mean, sigma, meta, "test"),
                  "nonlenses.ecsv": report.nonlens_table(nl_meta, nl_fold, nl_mean, nl_sigma, nl_rejected, nl_by, kinds),
                  "by_theta_e.ecsv": report.binned_table(truth[:, i_te], m.theta_e_bins, truth, mean, sigma,
                                                         "theta_e_arcsec", "arcsec"),
                  "by_snr.ecsv": report.binned_table(snr, m.snr_bins, truth, mean, sigma, "lensed_snr", None)}
        for name, table in tables.items():
            with atomic_path(reports_dir / name) as tmp:
                table.write(tmp, format="ascii.ecsv")
        figures = [report.scatter_figure(reports_dir / "scatter.png", truth, mean, sigma),
                   report.calibration_figure(reports_dir / "calibration.png", truth, mean, sigma),
                   report.cuts_figure(reports_dir / "cuts.png", cuts, held_out_mean, held_out_sigma, nl_mean,
                                      nl_sigma)]
        metrics = {
            "n_train": int(rows["train"].size), "n_validation": int(rows["validation"].size), "n_test": int(test.size),
            "epochs": int(state["epoch"] + 1), "best_epoch": int(state["best_epoch"]),
            "theta_e_median_abs_error_arcsec": theta_mae, "theta_e_min_arcsec": m.theta_e_min_arcsec,
            "parameters": stats, "calibration_factors": dict(zip(PARAMETERS, map(float, factors))),
            "cuts": cuts, "held_out_lenses_rejected": int(lens_rejected.sum()),
            "held_out_lenses_rejected_cross_checked": unseen_loss,
            "nonlenses": int(len(nl_cut)), "nonlenses_rejected_fraction":
                float(nl_rejected.mean()) if len(nl_cut) else None, "nonlenses_by_kind": by_kind,
            "median_sigma_nonlenses": {p: float(np.median(nl_sigma[:, k])) for k, p in enumerate(PARAMETERS)}
            if len(nl_cut) else {},
        }
        model_info = {}
        if log_mlflow:
            flat = {"theta_e_median_abs_error_arcsec": theta_mae, "held_out_lenses_rejected": metrics[
                "held_out_lenses_rejected"], "held_out_lenses_rejected_cross_checked": unseen_loss,
                "nonlenses_rejected_fraction": metrics["nonlenses_rejected_fraction"]}
            for p, s in stats.items():
                flat.update({f"{p}/{k}": v for k, v in s.items() if k != "n"})
            tracking.log_summary(flat, [*figures, *(reports_dir / n for n in tables)])
            tags = {"fingerprint": print_, "kb_dvc_md5": kb_hash, "git_commit": tracking.git_commit(),
                    "theta_e_median_abs_error_arcsec": f"{theta_mae:.4f}",
                    "rejection_cuts": json.dumps(cuts),
                    **{f"coverage_1sigma_{p}": f"{s['coverage_1sigma']:.3f}" for p, s in stats.items()}}
            description = ("Lens parameters (SIE + external shear: centre, theta_E, e1, e2, gamma1, gamma2) with "
                           "calibrated 1-sigma uncertainties (HOLISMOKES IX); trained on the "
                           f"'{m.kb_variant}' KB's lenses. Input: raw cutouts. Output: a table of pred_<parameter> "
                           "and sigma_<parameter>.")
            version = tracking.log_modeling_model(PYFUNC_CODE, keras_path, PARAMETERS, factors,
                                                  lenses.cutouts.shape[-1], m.registered_model, tags, description)
            model_info = {"model_uri": f"models:/{m.registered_model}/{version}", "version": version,
                          "run_id": state.get("mlflow_run_id")}
    metrics["seconds"] = round(time.perf_counter() - t0, 1)
    metrics["version"] = model_info.get("version")
    _write_json(reports_dir / "metrics.json", metrics)
    _write_json(reports_dir / "model.json", {**model_info, "cuts": cuts, "parameters": list(PARAMETERS),
                                             "calibration": dict(zip(PARAMETERS, map(float, factors))),
                                             "keras_model": str(models_dir / "model.keras")})
    from lenssearch.headline import write_headline

    write_headline("modeling", metrics, metrics_path)
    return metrics
