"""The ``modeling`` stage: train, calibrate, validate and register the modeling network; set the rejection cuts.

1. the lenses of ``modeling.kb_variant`` with their truth (:mod:`lenssearch.modeling.data`), split by KB fold;
2. training (:mod:`lenssearch.modeling.fit`), resumable, one MLflow parent run in ``modeling.experiment`` with the
   per-epoch losses;
3. calibration of the sigmas on the validation lenses, then the validation report on the test lenses
   (:mod:`lenssearch.modeling.report`): ``reports/modeling/`` and the run's metrics and artifacts;
4. the rejection cuts (HOLISMOKES XVI, Sect. 3.2, :mod:`lenssearch.modeling.cuts`): for each parameter of
   ``modeling.reject.parameters``, the range of the predicted sigma among the held-out lenses (test and
   validation), widened by ``margin``, so that none of them is rejected; measured on the test fold's non-lenses
   of the same KB (hard negatives included) by confuser kind;
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
from lenssearch.modeling.cuts import reject, rejection_cuts
from lenssearch.simulate.truth import PARAMETERS

PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_test_nonlenses(kb_path: str | Path, fold: int):
    """Raw cutouts and metadata of the KB's non-lenses in ``fold`` (read without loading the whole KB)."""
    import h5py

    from lenssearch.kb.build import read_kb_metadata

    with h5py.File(kb_path, "r") as h5:
        rows = np.flatnonzero((h5["labels"][...] == 0) & (h5["fold"][...] == fold))
        cutouts = h5["cutouts"][rows] if rows.size else np.zeros((0, *h5["cutouts"].shape[1:]), np.float32)
    return np.asarray(cutouts, np.float32), read_kb_metadata(kb_path)[rows]


def run_modeling(cfg, kb_path, truth_path, models_dir, reports_dir, metrics_path=None, *, log_mlflow: bool = True,
                 tracking_uri: str | None = None, progress: bool = True) -> dict:
    """The stage (see the module docstring); returns the metrics written to ``reports_dir/metrics.json``."""
    from lenssearch import tracking
    from lenssearch.config import flatten, as_dict
    from lenssearch.modeling import fit, report
    from lenssearch.modeling.data import read_lens_set

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
             "git_commit": tracking.git_commit()},
            run_id=state.get("mlflow_run_id"), tracking_uri=tracking_uri, experiment=m.experiment))

    with runs:
        model, state = fit.train(cfg, lenses, rows, models_dir, print_, run_for, progress)
        # calibration on the validation lenses, then every figure on the test lenses
        val_mean, val_sigma = fit.predict(model, lenses.cutouts[rows["validation"]])
        factors = fit.calibration_factors(lenses.truth[rows["validation"]], val_mean, val_sigma)
        keras_path = models_dir / "model.keras"
        fit.keras_save(model.save, keras_path)
        test = rows["test"]
        mean, sigma = fit.predict(model, lenses.cutouts[test], factors)
        val_sigma = val_sigma * factors
        truth = lenses.truth[test].astype(np.float64)
        meta = lenses.metadata[test]
        stats = report.parameter_stats(truth, mean, sigma)
        i_te = PARAMETERS.index("theta_e_arcsec")
        big = truth[:, i_te] >= m.theta_e_min_arcsec
        theta_mae = float(np.median(np.abs(mean[big, i_te] - truth[big, i_te]))) if big.any() else float("nan")
        held_out_sigma = np.concatenate([sigma, val_sigma])
        cuts = rejection_cuts(held_out_sigma, m.reject.parameters, m.reject.margin)
        nl_cut, nl_meta = read_test_nonlenses(kb_path, m.test_fold)
        nl_mean, nl_sigma = fit.predict(model, nl_cut, factors)
        nl_rejected, nl_by = reject(nl_sigma, cuts)
        kinds = (np.asarray(nl_meta["confuser"]).astype(str) if "confuser" in nl_meta.colnames
                 else np.full(len(nl_meta), "non-lens"))
        lens_rejected, _ = reject(held_out_sigma, cuts)
        by_kind = {k: {"n": int(np.sum(kinds == k)), "rejected_fraction": float(np.mean(nl_rejected[kinds == k]))}
                   for k in sorted(set(kinds.tolist()))}

        reports_dir.mkdir(parents=True, exist_ok=True)
        snr = np.asarray(meta["lensed_snr"], float) if "lensed_snr" in meta.colnames else np.full(len(meta), np.nan)
        tables = {"predictions.ecsv": report.predictions_table(lenses.ids[test], truth, mean, sigma, meta, "test"),
                  "test_nonlenses.ecsv": report.nonlens_table(nl_meta, nl_mean, nl_sigma, nl_rejected, nl_by, kinds),
                  "by_theta_e.ecsv": report.binned_table(truth[:, i_te], m.theta_e_bins, truth, mean, sigma,
                                                         "theta_e_arcsec", "arcsec"),
                  "by_snr.ecsv": report.binned_table(snr, m.snr_bins, truth, mean, sigma, "lensed_snr", None)}
        for name, table in tables.items():
            with atomic_path(reports_dir / name) as tmp:
                table.write(tmp, format="ascii.ecsv")
        figures = [report.scatter_figure(reports_dir / "scatter.png", truth, mean, sigma),
                   report.calibration_figure(reports_dir / "calibration.png", truth, mean, sigma)]
        metrics = {
            "n_train": int(rows["train"].size), "n_validation": int(rows["validation"].size), "n_test": int(test.size),
            "epochs": int(state["epoch"] + 1), "best_epoch": int(state["best_epoch"]),
            "theta_e_median_abs_error_arcsec": theta_mae, "theta_e_min_arcsec": m.theta_e_min_arcsec,
            "parameters": stats, "calibration_factors": dict(zip(PARAMETERS, map(float, factors))),
            "cuts_sigma": cuts, "held_out_lenses_rejected": int(lens_rejected.sum()),
            "test_nonlenses": int(len(nl_cut)), "test_nonlenses_rejected_fraction":
                float(nl_rejected.mean()) if len(nl_cut) else None, "test_nonlenses_by_kind": by_kind,
            "median_sigma_nonlenses": {p: float(np.median(nl_sigma[:, k])) for k, p in enumerate(PARAMETERS)}
            if len(nl_cut) else {},
        }
        model_info = {}
        if log_mlflow:
            flat = {"theta_e_median_abs_error_arcsec": theta_mae, "held_out_lenses_rejected": metrics[
                "held_out_lenses_rejected"], "test_nonlenses_rejected_fraction": metrics[
                "test_nonlenses_rejected_fraction"]}
            for p, s in stats.items():
                flat.update({f"{p}/{k}": v for k, v in s.items() if k != "n"})
            tracking.log_summary(flat, [*figures, *(reports_dir / n for n in tables)])
            tags = {"fingerprint": print_, "kb_dvc_md5": kb_hash, "git_commit": tracking.git_commit(),
                    "theta_e_median_abs_error_arcsec": f"{theta_mae:.4f}",
                    **{f"cut_sigma_{p}": f"[{c[0]:.6g}, {c[1]:.6g}]" for p, c in cuts.items()},
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
    _write_json(reports_dir / "model.json", {**model_info, "cuts_sigma": cuts, "parameters": list(PARAMETERS),
                                             "calibration": dict(zip(PARAMETERS, map(float, factors))),
                                             "keras_model": str(models_dir / "model.keras")})
    from lenssearch.headline import write_headline

    write_headline("modeling", metrics, metrics_path)
    return metrics
