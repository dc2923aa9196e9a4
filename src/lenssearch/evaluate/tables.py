"""Tables A.1-A.5 of Angora et al. 2023 computed from out-of-fold predictions (Sect. 4.2-4.3, Appendix A).

Every function takes the wide table of :func:`lenssearch.evaluate.data.join_predictions` and returns an astropy
Table whose row keys (column ``row``) and column names match those of ``angora2023_tables.yaml``, so that the
report can set ours beside the paper's, row for row. Percentages are in per cent like the paper's tables;
FP/TN and FN/TP ratios are plain fractions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.table import Table

from lenssearch.evaluate.lts import LineFit, lts_linefit
from lenssearch.evaluate.metrics import METRIC_NAMES, box_statistics, classification_metrics, confusion, roc_auc


@dataclass(frozen=True)
class Selection:
    """Bins of Tables A.4 and A.5 and the adversarial examples of Table A.1 (see ``EvaluateConfig``)."""

    threshold: float = 0.5
    adversarial_source_mag: float = 28.0
    adversarial_theta_e_arcsec: float = 0.5
    adversarial_rule: str = "or"
    fp_lens_mag_split: float = 19.5
    fp_colour_split: float = -0.5
    fn_source_mag_splits: tuple[float, ...] = (28.0, 27.0)
    fn_theta_e_split_arcsec: float = 0.5
    fn_z_s_splits: tuple[float, ...] = (5.0, 4.0, 3.0)


def adversarial_mask(wide: Table, sel: Selection) -> np.ndarray:
    """Lenses with a faint source (F814W > limit) and/or a small Einstein radius (theta_E < limit).

    Angora et al. 2023 (Sect. 3.2, Table A.1 notes) remove "faint sources and small-scale lenses"; with
    ``adversarial_rule = "or"`` either condition marks a cutout, with ``"and"`` both are needed.
    Non-lenses are never adversarial.
    """
    mag = np.asarray(wide["source_mag_F814W"], dtype=float)
    theta = np.asarray(wide["theta_e_arcsec"], dtype=float)
    faint = np.nan_to_num(mag, nan=-np.inf) > sel.adversarial_source_mag
    small = np.nan_to_num(theta, nan=np.inf) < sel.adversarial_theta_e_arcsec
    adv = (faint | small) if sel.adversarial_rule == "or" else (faint & small)
    return adv & (np.asarray(wide["label"]) == 1)


def _metric_table(columns: dict[str, dict[str, float]]) -> Table:
    table = Table({"row": list(METRIC_NAMES)})
    for name, metrics in columns.items():
        table[name] = [100.0 * metrics[m] for m in METRIC_NAMES]
    return table


def table_a1(wide: Table, networks: list[str], sel: Selection) -> Table:
    """Table A.1: the seven metrics per network, and again without the adversarial examples (``<net>_clean``)."""
    labels = np.asarray(wide["label"])
    keep = ~adversarial_mask(wide, sel)
    cols = {}
    for net in networks:
        p = np.asarray(wide[f"p_{net}"])
        cols[net] = classification_metrics(labels, p, sel.threshold)
        cols[f"{net}_clean"] = classification_metrics(labels[keep], p[keep], sel.threshold)
    return _metric_table(cols)


def table_a3(wide: Table, networks: list[str], sel: Selection) -> Table:
    """Table A.3: the metrics of every network (three-band and single-band) side by side."""
    labels = np.asarray(wide["label"])
    return _metric_table(
        {n: classification_metrics(labels, np.asarray(wide[f"p_{n}"]), sel.threshold) for n in networks}
    )


def fold_metrics(wide: Table, network: str, threshold: float) -> Table:
    """The seven metrics of one network on each fold (one row per fold), as fractions."""
    labels = np.asarray(wide["label"])
    p = np.asarray(wide[f"p_{network}"])
    folds = np.asarray(wide["fold"])
    rows = []
    for f in np.unique(folds):
        m = folds == f
        rows.append({"fold": int(f), **classification_metrics(labels[m], p[m], threshold)})
    return Table(rows=rows, names=["fold", *METRIC_NAMES])


def table_a2(wide: Table, networks: list[str], sel: Selection) -> Table:
    """Table A.2: median, Q1, Q3, IQR and whiskers (Q1 - 1.5 IQR, Q3 + 1.5 IQR) of each metric over folds."""
    out = Table({"row": list(METRIC_NAMES)})
    for net in networks:
        per_fold = fold_metrics(wide, net, sel.threshold)
        stats = [box_statistics(100.0 * np.asarray(per_fold[m])) for m in METRIC_NAMES]
        for key in ("median", "q1", "q3", "iqr", "whisker_low", "whisker_high"):
            out[f"{key}_{net}"] = [s[key] for s in stats]
    return out


def fit_red_sequence(wide: Table, rng: np.random.Generator, clip: float = 2.6, frac: float = 0.5) -> LineFit | None:
    """Fit the red sequence colour(F814W) of the lens galaxies with :func:`lts_linefit`.

    Each cluster member counts once (unique ``field``/``member_id`` when the KB has them), lenses and
    non-lenses alike, as the paper fits the spectroscopic cluster members. ``None`` with fewer than 10 members.
    """
    mag = np.asarray(wide["lens_mag_F814W"], dtype=float)
    col = np.asarray(wide["lens_color_F606W_F814W"], dtype=float)
    ok = np.isfinite(mag) & np.isfinite(col)
    idx = np.flatnonzero(ok)
    if "member_id" in wide.colnames:
        field = np.asarray(wide["field"]).astype(str) if "field" in wide.colnames else np.zeros(len(wide), str)
        keys = np.char.add(np.char.add(field[idx], "/"), np.asarray(wide["member_id"])[idx].astype(str))
        _, first = np.unique(keys, return_index=True)
        idx = idx[np.sort(first)]
    if idx.size < 10:
        return None
    return lts_linefit(mag[idx], col[idx], rng=rng, clip=clip, frac=frac)


def normalised_colour(wide: Table, fit: LineFit | None) -> np.ndarray:
    """(F606W - F814W)_norm = observed colour - red sequence at the galaxy's F814W (Girardi et al. 2015)."""
    col = np.asarray(wide["lens_color_F606W_F814W"], dtype=float)
    if fit is None:
        return np.full(col.shape, np.nan)
    return col - fit(np.asarray(wide["lens_mag_F814W"], dtype=float))


def _rate_rows(bins: dict[str, np.ndarray], base: np.ndarray, errors: np.ndarray, networks: list[str], kind: str):
    """Rows of Tables A.4 / A.5: share of the class, share of the errors and error/correct ratio per network."""
    err_name, ok_name = ("fp", "tn") if kind == "fp" else ("fn", "tp")
    cls = "nonlens" if kind == "fp" else "lens"
    rows = []
    n_base = base.sum()
    for key, in_bin in bins.items():
        row = {"row": key}
        m = in_bin & base
        if key == "total":
            row[cls] = float(n_base)
        else:
            row[cls] = 100.0 * m.sum() / n_base if n_base else np.nan
        for net in networks:
            e = errors[net] & m
            n_err_total = (errors[net] & base).sum()
            n_ok = m.sum() - e.sum()
            row[f"{net}_{err_name}"] = float(e.sum()) if key == "total" else (
                100.0 * e.sum() / n_err_total if n_err_total else np.nan
            )
            row[f"{net}_{err_name}_over_{ok_name}"] = e.sum() / n_ok if n_ok else np.nan
            row[f"{net}_{err_name}_rate"] = e.sum() / m.sum() if m.sum() else np.nan
        rows.append(row)
    names = ["row", cls] + [
        f"{n}_{s}" for n in networks for s in (err_name, f"{err_name}_over_{ok_name}", f"{err_name}_rate")
    ]
    return Table(rows=rows, names=names)


def _fmt(v: float) -> str:
    return f"{v:g}"


def table_a4(wide: Table, networks: list[str], sel: Selection, colour_norm: np.ndarray) -> Table:
    """Table A.4: false positives by lens F814W magnitude and by red-sequence-normalised colour.

    Only non-lenses with a finite magnitude (colour) enter the magnitude (colour) rows, as in the paper
    ("only sources with available and reliable magnitudes"). The ``_rate`` columns give FP / (FP + TN).
    """
    labels = np.asarray(wide["label"])
    neg = labels == 0
    mag = np.asarray(wide["lens_mag_F814W"], dtype=float)
    errors = {n: neg & (np.asarray(wide[f"p_{n}"]) >= sel.threshold) for n in networks}
    m, c = sel.fp_lens_mag_split, sel.fp_colour_split
    bins = {
        "total": np.ones(len(wide), bool),
        f"lens_mag_lt_{_fmt(m)}": np.isfinite(mag) & (mag < m),
        f"lens_mag_ge_{_fmt(m)}": np.isfinite(mag) & (mag >= m),
        f"colour_lt_{_fmt(c)}": np.isfinite(colour_norm) & (colour_norm < c),
        f"colour_ge_{_fmt(c)}": np.isfinite(colour_norm) & (colour_norm >= c),
    }
    return _rate_rows(bins, neg, errors, networks, "fp")


def table_a5(wide: Table, networks: list[str], sel: Selection) -> Table:
    """Table A.5: false negatives by source F814W magnitude, Einstein radius and source redshift.

    The ``_rate`` columns give FN / (FN + TP).
    """
    labels = np.asarray(wide["label"])
    pos = labels == 1
    mag = np.asarray(wide["source_mag_F814W"], dtype=float)
    theta = np.asarray(wide["theta_e_arcsec"], dtype=float)
    zs = np.asarray(wide["z_s"], dtype=float)
    errors = {n: pos & (np.asarray(wide[f"p_{n}"]) < sel.threshold) for n in networks}
    bins: dict[str, np.ndarray] = {"total": np.ones(len(wide), bool)}
    for s in sel.fn_source_mag_splits:
        bins[f"source_mag_ge_{_fmt(s)}"] = np.isfinite(mag) & (mag >= s)
    s_min = min(sel.fn_source_mag_splits)
    bins[f"source_mag_lt_{_fmt(s_min)}"] = np.isfinite(mag) & (mag < s_min)
    t = sel.fn_theta_e_split_arcsec
    bins[f"theta_e_lt_{_fmt(t)}"] = np.isfinite(theta) & (theta < t)
    bins[f"theta_e_ge_{_fmt(t)}"] = np.isfinite(theta) & (theta >= t)
    for z in sel.fn_z_s_splits:
        bins[f"z_s_ge_{_fmt(z)}"] = np.isfinite(zs) & (zs >= z)
    z_min = min(sel.fn_z_s_splits)
    bins[f"z_s_lt_{_fmt(z_min)}"] = np.isfinite(zs) & (zs < z_min)
    return _rate_rows(bins, pos, errors, networks, "fn")


def confusion_matrices(wide: Table, networks: list[str], threshold: float) -> dict[str, np.ndarray]:
    """Row-normalised confusion matrices [[TN, FP], [FN, TP]] per network (Fig. 6, middle panel)."""
    labels = np.asarray(wide["label"])
    return {n: confusion(labels, np.asarray(wide[f"p_{n}"]), threshold).normalised() for n in networks}


def network_band_names(network: str, bands: tuple[str, ...]) -> tuple[str, ...]:
    """The bands a network sees: its own band for a single-band network (``f435w``), else all of ``bands``.

    The same rule as :func:`lenssearch.models.network_bands`, without importing Keras into the evaluation.
    """
    upper = [b.upper() for b in bands]
    return (bands[upper.index(network.upper())],) if network.upper() in upper else tuple(bands)


def lensed_snr(wide: Table, bands: tuple[str, ...]) -> np.ndarray:
    """The lensed source's S/N in ``bands``: the quadrature sum of the KB's ``lensed_snr_<band>`` columns.

    ``lensed_snr_<band>`` is the matched-filter S/N of the noiseless lensed source against the background noise
    (:func:`lenssearch.simulate.inject.lensed_snr`); the S/N of several bands adds in quadrature. NaN for the
    non-lenses and where the KB lacks the columns (a KB built before they existed).
    """
    cols = [f"lensed_snr_{b}" for b in bands]
    if any(c not in wide.colnames for c in cols):
        return np.full(len(wide), np.nan)
    values = np.stack([np.asarray(wide[c], dtype=float) for c in cols])
    return np.sqrt(np.sum(values**2, axis=0))


def snr_bin_labels(edges: tuple[float, ...]) -> list[str]:
    """``snr_0_5``, ``snr_5_10``, ..., ``snr_ge_100`` for edges (0, 5, 10, ..., 100): the last bin is open."""
    labels = [f"snr_{_fmt(lo)}_{_fmt(hi)}" for lo, hi in zip(edges[:-1], edges[1:])]
    return [*labels, f"snr_ge_{_fmt(edges[-1])}"]


def table_snr(wide: Table, networks: list[str], bands: tuple[str, ...], edges: tuple[float, ...],
              threshold: float) -> Table:
    """Detection against the lensed source's S/N in each network's bands (not in the paper: our diagnosis).

    One row per S/N bin (``edges``; the last bin is open); per network: the number of lenses in the bin (their
    S/N is measured in that network's bands, so the bins differ between networks), the completeness at
    ``threshold`` in per cent, and the AUC of the bin's lenses against every non-lens (NaN for an empty bin).
    A row ``all`` closes the table. It tells a network that misses arcs it could see from one that is asked to
    find arcs nobody could see.
    """
    labels = np.asarray(wide["label"])
    neg = labels == 0
    names = snr_bin_labels(tuple(edges))
    rows = [{"row": n} for n in [*names, "all"]]
    for net in networks:
        p = np.asarray(wide[f"p_{net}"], dtype=float)
        snr = lensed_snr(wide, network_band_names(net, bands))
        lo = np.asarray([*edges], dtype=float)
        hi = np.asarray([*edges[1:], np.inf], dtype=float)
        masks = [(labels == 1) & (snr >= a) & (snr < b) for a, b in zip(lo, hi)] + [labels == 1]
        for row, m in zip(rows, masks):
            n = int(m.sum())
            row[f"{net}_n"] = float(n)
            row[f"{net}_completeness"] = 100.0 * float(np.mean(p[m] >= threshold)) if n else np.nan
            both = m | neg
            row[f"{net}_auc"] = roc_auc(labels[both], p[both]) if n and neg.any() else np.nan
    columns = ["row"] + [f"{n}_{s}" for n in networks for s in ("n", "completeness", "auc")]
    return Table(rows=rows, names=columns)
