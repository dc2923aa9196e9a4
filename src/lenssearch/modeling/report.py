"""Validation of the modeling network on held-out lenses: accuracy, scatter and calibration.

For each parameter ``p`` of :data:`lenssearch.simulate.truth.PARAMETERS`, on the test lenses (never trained on, not
used for the calibration):

- ``median_abs_error``: the median of ``|predicted - true|``;
- ``delta_p16``, ``delta_median``, ``delta_p84``: the 16th, 50th and 84th percentiles of ``predicted - true``;
- ``coverage_1sigma``, ``coverage_2sigma``: the fraction of truths inside ``mean +- 1 sigma`` and ``+- 2 sigma``
  (0.683 and 0.954 for calibrated Gaussian uncertainties);
- the same by ``theta_E`` bin and by arc-S/N bin (the KB's ``lensed_snr``, three bands in quadrature);

and two figures: predicted against true for every parameter (``scatter.png``, error bars 1 sigma, one panel each)
and a reliability diagram (``calibration.png``: the fraction of truths inside ``+- k sigma`` against the Gaussian
expectation ``erf(k / sqrt 2)``, one line per parameter).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.special import erf

from lenssearch.simulate.truth import PARAMETERS

LABELS = {"lens_x_arcsec": "x [\"]", "lens_y_arcsec": "y [\"]", "theta_e_arcsec": "θE [\"]", "lens_e1": "e1",
          "lens_e2": "e2", "shear_gamma1": "γ1", "shear_gamma2": "γ2"}


def parameter_stats(truth: np.ndarray, mean: np.ndarray, sigma: np.ndarray) -> dict[str, dict[str, float]]:
    """The module docstring's figures per parameter (rows: lenses; columns: :data:`PARAMETERS`)."""
    out = {}
    delta = mean - truth
    for k, name in enumerate(PARAMETERS):
        d = delta[:, k]
        if d.size == 0:
            out[name] = {"n": 0}
            continue
        z = np.abs(d) / sigma[:, k]
        out[name] = {"n": int(d.size), "median_abs_error": float(np.median(np.abs(d))),
                     "delta_p16": float(np.percentile(d, 16)), "delta_median": float(np.median(d)),
                     "delta_p84": float(np.percentile(d, 84)), "coverage_1sigma": float(np.mean(z <= 1.0)),
                     "coverage_2sigma": float(np.mean(z <= 2.0)), "median_sigma": float(np.median(sigma[:, k]))}
    return out


def binned_table(values: np.ndarray, edges, truth, mean, sigma, column: str, unit: str | None):
    """One row per bin of ``values`` (edges ``edges``) and parameter: n, median |error|, 16-84% of the error,
    coverages. An ECSV-ready astropy Table."""
    from astropy.table import Table

    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (values >= lo) & (values < hi)
        stats = parameter_stats(truth[sel], mean[sel], sigma[sel])
        for name in PARAMETERS:
            s = stats[name]
            rows.append({f"{column}_min": lo, f"{column}_max": hi, "parameter": name, "n": s["n"],
                         "median_abs_error": s.get("median_abs_error", np.nan),
                         "delta_p16": s.get("delta_p16", np.nan), "delta_p84": s.get("delta_p84", np.nan),
                         "coverage_1sigma": s.get("coverage_1sigma", np.nan),
                         "coverage_2sigma": s.get("coverage_2sigma", np.nan)})
    table = Table(rows=rows)
    for c in (f"{column}_min", f"{column}_max"):
        table[c].unit = unit
        table[c].description = f"{'lower' if c.endswith('min') else 'upper'} edge of the {column} bin"
    table["parameter"].description = "lens parameter (simulate/truth.py)"
    table["n"].description = "held-out lenses in the bin"
    table["median_abs_error"].description = "median |predicted - true| (the parameter's unit)"
    table["delta_p16"].description = "16th percentile of predicted - true"
    table["delta_p84"].description = "84th percentile of predicted - true"
    table["coverage_1sigma"].description = "fraction of truths inside the predicted 1-sigma interval (0.683 ideal)"
    table["coverage_2sigma"].description = "fraction of truths inside the predicted 2-sigma interval (0.954 ideal)"
    return table


def scatter_figure(path: Path, truth, mean, sigma) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(PARAMETERS)
    fig, axes = plt.subplots(2, (n + 1) // 2, figsize=(3.2 * ((n + 1) // 2), 6.4))
    for k, (ax, name) in enumerate(zip(axes.ravel(), PARAMETERS)):
        t, m, s = truth[:, k], mean[:, k], sigma[:, k]
        ax.errorbar(t, m, yerr=s, fmt=".", ms=2, lw=0.3, alpha=0.5, color="tab:blue")
        lo, hi = np.percentile(np.concatenate([t, m]), [0.5, 99.5])
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel(f"true {LABELS[name]}")
        ax.set_ylabel(f"predicted {LABELS[name]}")
        ax.set_title(f"median |Δ| = {np.median(np.abs(m - t)):.3g}", fontsize=9)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.suptitle(f"Modeling network on {len(truth)} held-out lenses (error bars: predicted 1σ)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def calibration_figure(path: Path, truth, mean, sigma) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = np.linspace(0.0, 3.0, 61)
    expected = erf(k / np.sqrt(2.0))
    fig, ax = plt.subplots(figsize=(5.2, 5))
    ax.plot(expected, expected, "k--", lw=1, label="calibrated")
    z = np.abs(mean - truth) / sigma
    for j, name in enumerate(PARAMETERS):
        observed = [(z[:, j] <= kk).mean() for kk in k]
        ax.plot(expected, observed, lw=1.3, label=LABELS[name])
    for level in (erf(1 / np.sqrt(2)), erf(2 / np.sqrt(2))):
        ax.axvline(level, color="0.7", lw=0.6)
    ax.set_xlabel("expected fraction inside ±kσ (Gaussian)")
    ax.set_ylabel("observed fraction of held-out truths inside ±kσ")
    ax.set_title("Calibration of the predicted uncertainties")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cuts_figure(path: Path, cuts: dict, lens_mean, lens_sigma, nonlens_mean, nonlens_sigma) -> Path:
    """The counterpart of HOLISMOKES XVI Fig. 4: each cut parameter's predicted sigma against the predicted
    theta_E, for the held-out lenses and the KB's non-lenses, with the allowed range between the red lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter

    from lenssearch.modeling.cuts import reject, sigma_range

    names = list(cuts["parameters"])
    i_te = PARAMETERS.index("theta_e_arcsec")
    ncol = min(4, max(1, len(names)))
    nrow = -(-len(names) // ncol) if names else 1
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.2 * nrow), squeeze=False)
    rejected, _ = reject(nonlens_mean, nonlens_sigma, cuts)
    grid = np.geomspace(*cuts["theta_e_range_arcsec"], 200)
    for ax, p in zip(axes.ravel(), names):
        j = PARAMETERS.index(p)
        ax.scatter(nonlens_mean[~rejected, i_te], nonlens_sigma[~rejected, j], s=3, c="tab:orange", alpha=0.5,
                   label="non-lenses kept", rasterized=True)
        ax.scatter(nonlens_mean[rejected, i_te], nonlens_sigma[rejected, j], s=6, marker="x", c="k",
                   label="non-lenses rejected", rasterized=True)
        ax.scatter(lens_mean[:, i_te], lens_sigma[:, j], s=3, c="tab:blue", alpha=0.5, label="held-out lenses",
                   rasterized=True)
        low, high = sigma_range(cuts, p, grid)
        ax.plot(grid, low, "r-", lw=1)
        ax.plot(grid, high, "r-", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = [t for t in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0) if grid[0] <= t <= grid[-1]]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("predicted θE [\"]")
        ax.set_ylabel(f"σ of {LABELS[p]}")
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    if names:
        axes.ravel()[0].legend(fontsize=7, markerscale=2)
    fig.suptitle(f"Rejection cuts: allowed σ (red) at the predicted θE; {int(rejected.sum())} of "
                 f"{len(rejected)} KB non-lenses rejected (none of them seen in training)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def predictions_table(ids, truth, mean, sigma, metadata, split: str):
    """One row per lens: id, truth, ``pred_``, ``sigma_`` per parameter, ``lensed_snr``, environment."""
    from astropy.table import Table

    from lenssearch.io import describe_columns

    table = Table({"id": np.asarray(ids).astype(str)})
    table["split"] = np.full(len(table), split)
    for k, name in enumerate(PARAMETERS):
        table[name] = truth[:, k]
        table[f"pred_{name}"] = mean[:, k]
        table[f"sigma_{name}"] = sigma[:, k]
    for col in ("lensed_snr", "environment"):
        if col in metadata.colnames:
            table[col] = metadata[col]
    table["split"].description = "split of the KB lenses: test (held out) or validation (calibration)"
    return describe_columns(table)


def nonlens_table(metadata, fold, mean, sigma, rejected, rejected_by, kinds):
    """The KB's non-lenses (none seen by the modeling network) with its answer and the cuts' verdict (one row
    each, with the KB fold)."""
    from astropy.table import Table

    from lenssearch.io import describe_columns

    table = Table({"id": np.asarray(metadata["id"]).astype(str), "fold": np.asarray(fold, dtype=int),
                   "confuser": np.asarray(kinds).astype(str)})
    for k, name in enumerate(PARAMETERS):
        table[f"pred_{name}"] = mean[:, k]
        table[f"sigma_{name}"] = sigma[:, k]
    table["modeling_rejected"] = np.asarray(rejected, bool)
    table["modeling_rejected_by"] = np.asarray(rejected_by, dtype=str) if len(rejected_by) else np.zeros(0, str)
    return describe_columns(table)
