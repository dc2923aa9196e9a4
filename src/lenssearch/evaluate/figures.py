"""Figures of Angora et al. 2023, Sect. 4 (Figs. 6, 8, 9, 11, A.1) and HOLISMOKES XVI, Fig. 1-2, as PNG files.

Built with ``matplotlib.figure.Figure`` (no pyplot state, no GUI backend). Each function writes one PNG
atomically and returns its path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.table import Table
from matplotlib.figure import Figure

from lenssearch.evaluate.lts import LineFit
from lenssearch.evaluate.metrics import METRIC_NAMES, mean_roc, purity_completeness_crossing, threshold_curve
from lenssearch.evaluate.tables import confusion_matrices, fold_metrics
from lenssearch.io import atomic_path

LABELS = {
    "accuracy": "AE",
    "purity_lens": "pur GGSL",
    "completeness_lens": "compl GGSL",
    "f1_lens": "F1 GGSL",
    "purity_nonlens": "pur NGGSL",
    "completeness_nonlens": "compl NGGSL",
    "f1_nonlens": "F1 NGGSL",
}


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    # no bbox_inches="tight": it draws every figure twice, and figures are most of the stage's run time
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    return path


def _colours(n: int):
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def fig6_metrics(table: Table, networks: list[str], path: Path) -> Path:
    """Fig. 6, top: bars of the seven metrics per network (per cent)."""
    fig = Figure(figsize=(9, 3.5))
    ax = fig.add_subplot()
    x = np.arange(len(METRIC_NAMES))
    w = 0.8 / max(len(networks), 1)
    for i, (net, c) in enumerate(zip(networks, _colours(len(networks)))):
        ax.bar(x + (i - (len(networks) - 1) / 2) * w, table[net], w, label=net, color=c)
    ax.set_xticks(x, [LABELS[m] for m in METRIC_NAMES], rotation=20)
    ax.set_ylabel("per cent")
    lo = np.nanmin([np.nanmin(table[n]) for n in networks]) if networks else 0
    ax.set_ylim(max(0, lo - 10), 100)
    ax.legend(ncol=len(networks), fontsize=8)
    return _save(fig, path)


def fig6_roc(wide: Table, networks: list[str], path: Path) -> Path:
    """Fig. 6, middle: mean ROC over folds with its 1-sigma band; AUC (mean over folds) in the legend."""
    fig = Figure(figsize=(5, 4.5))
    ax = fig.add_subplot()
    labels, folds = np.asarray(wide["label"]), np.asarray(wide["fold"])
    for net, c in zip(networks, _colours(len(networks))):
        roc = mean_roc(labels, np.asarray(wide[f"p_{net}"]), folds)
        ax.plot(roc["fpr"], roc["tpr_mean"], color=c, label=f"{net} (AUC {np.mean(roc['auc']):.3f})")
        ax.fill_between(
            roc["fpr"], roc["tpr_mean"] - roc["tpr_std"], np.minimum(roc["tpr_mean"] + roc["tpr_std"], 1),
            color=c, alpha=0.2, lw=0,
        )
    ax.plot([0, 1], [0, 1], ls=":", color="grey")
    ax.set_xlabel("FPR")
    ax.set_ylabel("TPR")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def fig6_confusion(wide: Table, networks: list[str], threshold: float, path: Path) -> Path:
    """Fig. 6, middle: normalised confusion matrices (rows: true class)."""
    mats = confusion_matrices(wide, networks, threshold)
    fig = Figure(figsize=(2.6 * len(networks), 2.6))
    for i, net in enumerate(networks):
        ax = fig.add_subplot(1, len(networks), i + 1)
        ax.imshow(mats[net], vmin=0, vmax=1, cmap="Blues")
        for (r, c), v in np.ndenumerate(mats[net]):
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", color="white" if v > 0.5 else "black")
        ax.set_xticks([0, 1], ["NGGSL", "GGSL"])
        ax.set_yticks([0, 1], ["NGGSL", "GGSL"])
        ax.set_xlabel("predicted")
        if i == 0:
            ax.set_ylabel("true")
        ax.set_title(net, fontsize=9)
    return _save(fig, path)


def fig6_boxplots(wide: Table, networks: list[str], threshold: float, path: Path) -> Path:
    """Fig. 6, bottom: box plots over folds of AE and the GGSL metrics (whiskers at 1.5 IQR)."""
    shown = ["accuracy", "purity_lens", "completeness_lens", "f1_lens"]
    per = {n: fold_metrics(wide, n, threshold) for n in networks}
    fig = Figure(figsize=(9, 3.5))
    ax = fig.add_subplot()
    w = 0.8 / max(len(networks), 1)
    for i, (net, c) in enumerate(zip(networks, _colours(len(networks)))):
        data = [100 * np.asarray(per[net][m]) for m in shown]
        pos = np.arange(len(shown)) + (i - (len(networks) - 1) / 2) * w
        bp = ax.boxplot(data, positions=pos, widths=w * 0.9, whis=1.5, patch_artist=True, manage_ticks=False)
        for box in bp["boxes"]:
            box.set_facecolor(c)
        bp["boxes"][0].set_label(net)
    ax.set_xticks(np.arange(len(shown)), [LABELS[m] for m in shown])
    ax.set_ylabel("per cent")
    ax.legend(fontsize=8, ncol=len(networks))
    return _save(fig, path)


def _hist_rate(ax_top, ax_bot, x, good_mask, bad_mask, bins, colour, name, good_label, bad_label, rate_label):
    h_good, _ = np.histogram(x[good_mask], bins)
    h_bad, _ = np.histogram(x[bad_mask], bins)
    centres = 0.5 * (bins[1:] + bins[:-1])
    ax_top.step(centres, h_good, where="mid", color=colour, ls="--", label=f"{good_label} {name}")
    ax_top.step(centres, h_bad, where="mid", color=colour, label=f"{bad_label} {name}")
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = h_bad / (h_good + h_bad)
    ax_bot.plot(centres, rate, marker="o", ms=3, color=colour, label=name)
    ax_bot.set_ylabel(rate_label)


def _bins(x, n):
    x = x[np.isfinite(x)]
    if x.size == 0:
        return np.linspace(0, 1, n + 1)
    lo, hi = np.percentile(x, [0.5, 99.5])
    return np.linspace(lo, hi if hi > lo else lo + 1, n + 1)


def fig8_false_positives(wide, networks, threshold, colour_norm, n_bins: int, path: Path) -> Path:
    """Fig. 8: TN and FP counts and the FPR against lens F814W magnitude and normalised colour."""
    labels = np.asarray(wide["label"])
    neg = labels == 0
    quantities = [("lens F814W [mag]", np.asarray(wide["lens_mag_F814W"], float)),
                  ("(F606W - F814W)_norm [mag]", np.asarray(colour_norm, float))]
    fig = Figure(figsize=(10, 5))
    for j, (name, x) in enumerate(quantities):
        top = fig.add_subplot(2, 2, j + 1)
        bot = fig.add_subplot(2, 2, j + 3, sharex=top)
        bins = _bins(x[neg], n_bins)
        for net, c in zip(networks, _colours(len(networks))):
            fp = neg & (np.asarray(wide[f"p_{net}"]) >= threshold)
            _hist_rate(top, bot, x, neg & ~fp, fp, bins, c, net, "TN", "FP", "FPR")
        top.set_ylabel("N")
        bot.set_xlabel(name)
        if j == 0:
            top.legend(fontsize=7)
    return _save(fig, path)


def fig9_false_negatives(wide, networks, threshold, n_bins: int, path: Path) -> Path:
    """Fig. 9: TP and FN counts and the FNR against source redshift, theta_E and source F814W magnitude."""
    labels = np.asarray(wide["label"])
    pos = labels == 1
    quantities = [("z_s", np.asarray(wide["z_s"], float)),
                  ("theta_E [arcsec]", np.asarray(wide["theta_e_arcsec"], float)),
                  ("source F814W [mag]", np.asarray(wide["source_mag_F814W"], float))]
    fig = Figure(figsize=(13, 5))
    for j, (name, x) in enumerate(quantities):
        top = fig.add_subplot(2, 3, j + 1)
        bot = fig.add_subplot(2, 3, j + 4, sharex=top)
        bins = _bins(x[pos], n_bins)
        for net, c in zip(networks, _colours(len(networks))):
            fn = pos & (np.asarray(wide[f"p_{net}"]) < threshold)
            _hist_rate(top, bot, x, pos & ~fn, fn, bins, c, net, "TP", "FN", "FNR")
        top.set_ylabel("N")
        bot.set_xlabel(name)
        if j == 0:
            top.legend(fontsize=7)
    return _save(fig, path)


def _rate_2d(x, y, good, bad, bx, by):
    g, _, _ = np.histogram2d(x[good], y[good], [bx, by])
    b, _, _ = np.histogram2d(x[bad], y[bad], [bx, by])
    with np.errstate(invalid="ignore", divide="ignore"):
        # cells without a single correct classification are left blank, as in the paper's Fig. A.1
        return np.where(g > 0, b / (g + b), np.nan)


def figa1_rates_2d(wide, networks, threshold, colour_norm, n_bins: int, path: Path) -> Path:
    """Fig. A.1: FPR on the colour-magnitude plane; FNR on theta_E-source F814W and r_e-z_s planes."""
    labels = np.asarray(wide["label"])
    neg, pos = labels == 0, labels == 1
    f = lambda c: np.asarray(wide[c], float)  # noqa: E731
    planes = [
        ("lens F814W", "(F606W-F814W)_norm", f("lens_mag_F814W"), np.asarray(colour_norm, float), "FPR"),
        ("source F814W", "theta_E [arcsec]", f("source_mag_F814W"), f("theta_e_arcsec"), "FNR"),
        ("z_s", "source r_e [arcsec]", f("z_s"), f("source_re_arcsec"), "FNR"),
    ]
    fig = Figure(figsize=(3.2 * len(networks), 9.0))
    fig.subplots_adjust(left=0.07, right=0.9, bottom=0.06, top=0.95, hspace=0.45, wspace=0.25)
    for i, (xl, yl, x, y, kind) in enumerate(planes):
        cls = neg if kind == "FPR" else pos
        ok = cls & np.isfinite(x) & np.isfinite(y)
        bx, by = _bins(x[ok], n_bins), _bins(y[ok], n_bins)
        for j, net in enumerate(networks):
            p = np.asarray(wide[f"p_{net}"])
            bad = ok & ((p >= threshold) if kind == "FPR" else (p < threshold))
            rate = _rate_2d(x, y, ok & ~bad, bad, bx, by)
            ax = fig.add_subplot(3, len(networks), i * len(networks) + j + 1)
            im = ax.pcolormesh(bx, by, rate.T, vmin=0, vmax=1, cmap="viridis")
            ax.set_xlabel(xl, fontsize=8)
            if j == 0:
                ax.set_ylabel(yl, fontsize=8)
            ax.set_title(f"{net}: {kind}", fontsize=9)
        fig.colorbar(im, ax=fig.axes[-len(networks):], fraction=0.02)
    return _save(fig, path)


def fig11_purity_completeness(curves: dict, path: Path, default_threshold: float = 0.5) -> Path:
    """Fig. 11: lens purity and completeness against the threshold, with their crossing and the 0.5 line.

    ``curves`` maps a model name to its ``(labels, scores)``; one panel per model.
    """
    n = len(curves)
    fig = Figure(figsize=(3.6 * n, 3.4))
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.15, wspace=0.25)
    for i, (name, (labels, scores)) in enumerate(curves.items()):
        curve = threshold_curve(labels, scores)
        t = curve.thresholds[1:]
        ax = fig.add_subplot(1, n, i + 1)
        ax.plot(t, curve.purity[1:], color="tab:red", label="purity", drawstyle="steps-post")
        ax.plot(t, curve.tpr[1:], color="tab:orange", label="completeness", drawstyle="steps-post")
        cross = purity_completeness_crossing(labels, scores)
        if cross is not None:
            ax.axvline(cross[0], color="k", lw=1, label=f"Pr = {cross[0]:.2f} ({100 * cross[1]:.1f}%)")
        ax.axvline(default_threshold, color="k", ls=":", lw=1, label=f"Pr = {default_threshold:g}")
        ax.set_xlim(0, 1)
        ax.set_xlabel("GGSL probability threshold")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7, loc="lower center")
    return _save(fig, path)


def fig_red_sequence(wide: Table, fit: LineFit | None, path: Path) -> Path:
    """The red sequence fitted by LTS on the colour-magnitude diagram, outliers marked."""
    fig = Figure(figsize=(5, 3.8))
    ax = fig.add_subplot()
    mag = np.asarray(wide["lens_mag_F814W"], float)
    col = np.asarray(wide["lens_color_F606W_F814W"], float)
    ax.scatter(mag, col, s=4, color="grey", label="lens galaxies")
    if fit is not None:
        xs = np.linspace(np.nanmin(mag), np.nanmax(mag), 10)
        ax.plot(xs, fit(xs), color="tab:red",
                label=f"LTS: {fit.intercept:.3f} {fit.slope:+.4f} (F814W - {fit.pivot:.2f}), "
                      f"eps={fit.intrinsic_scatter:.3f}")
        ax.fill_between(xs, fit(xs) - 2.6 * fit.intrinsic_scatter, fit(xs) + 2.6 * fit.intrinsic_scatter,
                        color="tab:red", alpha=0.15, lw=0)
    ax.set_xlabel("F814W [mag]")
    ax.set_ylabel("F606W - F814W [mag]")
    ax.legend(fontsize=7)
    return _save(fig, path)


def fig_tpr_vs_candidates(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str = "") -> Path:
    """HOLISMOKES XVI, Figs. 1-2: TPR against the number of candidates selected, one line per model."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for (name, (n_sel, tpr)), c in zip(curves.items(), _colours(len(curves))):
        ax.plot(n_sel, tpr, label=name, color=c)
    ax.set_xlabel("number of candidates selected")
    ax.set_ylabel("TPR")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


def fig_roc_log(curves: dict[str, tuple[np.ndarray, np.ndarray]], min_fpr: float, path: Path) -> Path:
    """ROC with a logarithmic FPR axis, down to the smallest measurable rate ``1 / N_neg``."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for (name, (fpr, tpr)), c in zip(curves.items(), _colours(len(curves))):
        ax.step(np.maximum(fpr, min_fpr / 2), tpr, where="post", label=name, color=c)
    ax.axvline(min_fpr, color="k", ls=":", lw=1, label="1 / N_neg")
    ax.set_xscale("log")
    ax.set_xlabel("FPR")
    ax.set_ylabel("TPR")
    ax.legend(fontsize=7)
    return _save(fig, path)


def fig_snr_detection(table: Table, networks: list[str], threshold: float, path: Path) -> Path:
    """Completeness and AUC of each network against the lensed source's S/N in its bands (``table_snr``).

    Bins are plotted at their index (the last one is open); the dotted line is the AUC of a coin toss.
    """
    rows = [r for r in table["row"] if r != "all"]
    x = np.arange(len(rows))
    fig = Figure(figsize=(10, 4))
    ax_c, ax_a = fig.subplots(1, 2)
    for net, colour in zip(networks, _colours(len(networks))):
        sel = np.asarray(table["row"]) != "all"
        ax_c.plot(x, np.asarray(table[f"{net}_completeness"], float)[sel], "o-", color=colour, label=net)
        ax_a.plot(x, np.asarray(table[f"{net}_auc"], float)[sel], "o-", color=colour, label=net)
    ticks = [r.replace("snr_", "").replace("ge_", ">= ").replace("_", "-") for r in rows]
    for ax in (ax_c, ax_a):
        ax.set_xticks(x, ticks, rotation=30)
        ax.set_xlabel("lensed-source S/N in the network's bands")
        ax.grid(alpha=0.3)
    ax_c.set_ylabel(f"completeness at p >= {threshold:g} [%]")
    ax_c.set_ylim(0, 100)
    ax_a.set_ylabel("AUC against all non-lenses")
    ax_a.axhline(0.5, color="grey", ls=":")
    ax_a.set_ylim(0.4, 1.0)
    ax_a.legend(fontsize=8)
    fig.suptitle("Detection against the lensed source's signal-to-noise ratio")
    return _save(fig, path)
