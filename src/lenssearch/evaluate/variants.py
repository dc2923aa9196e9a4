"""Every network on every KB variant: AUC by arc S/N and the host baseline (HOLISMOKES XVI, Sect. 2).

A network is trained on one KB variant (``train.kb_variant``); on that variant its scores are the out-of-fold
probabilities of the train stage (``reports/<network>/predictions.ecsv``). On every other variant it is scored
here by its run model (``models/<network>/run/model.keras``): those cutouts are independent draws on the same fields,
except the plain member cutouts that both variants may hold (the same pixels); a plain non-lens of the scored
variant whose member is a plain non-lens of the training variant is left out, so no scored cutout was seen in
training. The ``source`` column says which kind of score each row is. The evaluate stage keeps every held-out
table (:data:`lenssearch.evaluate.common.HELDOUT_DIR`): a committee whose members were trained on different
variants (HOLISMOKES XVI) is evaluated on the union of their variants, each member scoring the cutouts of its own
variant out of fold and the others' held out (:func:`lenssearch.evaluate.common.load_wide`).

Per (network, variant): the number of lenses and non-lenses, the AUC of all lenses, of the lenses whose lensed
source has S/N >= ``evaluate.visible_snr_min`` in the network's bands (the ``auc_visible`` of the acceptance bar),
and per S/N bin (``evaluate.snr_bins``; each bin's lenses against every non-lens); per variant: the AUC of the lens
galaxy's brightness alone (the host baseline, on all the variant's cutouts: 0.5 when the hosts of lenses and non-lenses are alike).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.table import Table

from lenssearch.errors import InputFileError


def kb_path(kb_dir: Path, variant: str) -> Path:
    """The KB file of a variant (``data/kb/<variant>.h5``)."""
    return Path(kb_dir) / f"{variant}.h5"


def _plain_members(meta: Table) -> set[tuple[str, str]]:
    conf = np.asarray(meta["confuser"]).astype(str) if "confuser" in meta.colnames else np.full(len(meta), "plain")
    labels = np.asarray(meta["label"])
    return {(str(f), str(m)) for f, m, c, lab in zip(meta["field"], meta["member_id"], conf, labels)
            if lab == 0 and c in ("plain", "")}


def heldout_predictions(network: str, model_path: Path, kb: Path, trained_on: Path, batch_size: int = 128) -> Table:
    """The run model's probabilities on another variant's KB (``id``, ``fold``, ``network``, ``label``,
    ``probability``), without the plain member cutouts that the training KB also holds."""
    import h5py
    import keras

    from lenssearch import models as _models  # noqa: F401  (registers the custom layers)
    from lenssearch.kb.build import read_kb_metadata
    from lenssearch.models import network_bands

    if not Path(model_path).exists():
        raise InputFileError(f"{model_path}: no run model of '{network}' (the train stage writes it)")
    meta = read_kb_metadata(kb)
    seen = _plain_members(read_kb_metadata(trained_on))
    conf = np.asarray(meta["confuser"]).astype(str) if "confuser" in meta.colnames else np.full(len(meta), "plain")
    keep = np.array([not (lab == 0 and c in ("plain", "") and (str(f), str(m)) in seen)
                     for f, m, c, lab in zip(meta["field"], meta["member_id"], conf, np.asarray(meta["label"]))])
    rows = np.flatnonzero(keep)
    model = keras.models.load_model(model_path)
    with h5py.File(kb, "r") as h5:
        bands = tuple(b.decode() if isinstance(b, bytes) else str(b) for b in h5.attrs["bands"])
        channels = list(network_bands(network, bands))
        data = h5["cutouts"]
        out = np.empty(rows.size)
        for start in range(0, rows.size, batch_size):
            idx = rows[start:start + batch_size]
            block = np.asarray(data[idx], dtype=np.float32)[..., channels]
            out[start:start + idx.size] = np.asarray(model.predict_on_batch(block)).reshape(-1)
    return Table({"id": np.asarray(meta["id"])[rows].astype(str), "fold": np.asarray(meta["fold"])[rows],
                  "network": np.full(rows.size, network), "label": np.asarray(meta["label"])[rows].astype(np.int8),
                  "probability": out})


def network_scores(cfg, network: str, variant: str, predictions_dir: Path, kb_dir: Path,
                   models_dir: Path) -> tuple[Table, str]:
    """``(predictions, source)`` of ``network`` on ``variant``: ``oof`` where it was trained on it, else
    ``heldout`` (its run model)."""
    from lenssearch.evaluate.data import read_predictions

    trained = cfg.train.kb_variant.get(network)
    if trained == variant:
        return read_predictions(Path(predictions_dir) / network / "predictions.ecsv", network), "oof"
    if trained is None:
        raise InputFileError(f"train.kb_variant has no entry for network '{network}'")
    return heldout_predictions(network, Path(models_dir) / network / "run" / "model.keras",
                               kb_path(kb_dir, variant), kb_path(kb_dir, trained)), "heldout"


def variant_table(cfg, networks, predictions_dir: Path, kb_dir: Path, models_dir: Path,
                  heldout: dict | None = None) -> tuple[Table, dict]:
    """One row per (network, variant) with the AUCs by S/N bin; and the host baseline per variant.

    ``heldout``: a dict that receives every held-out prediction table, keyed ``(network, variant)``
    (:data:`lenssearch.evaluate.common.HELDOUT_DIR`: committees of networks trained on different variants are
    evaluated on them)."""
    from lenssearch.evaluate.data import join_predictions
    from lenssearch.evaluate.metrics import roc_auc
    from lenssearch.evaluate.stages import _host_baseline
    from lenssearch.evaluate.tables import lensed_snr, network_band_names, snr_bin_labels
    from lenssearch.kb.build import read_kb_metadata

    e = cfg.evaluate
    edges = tuple(e.snr_bins)
    names = snr_bin_labels(edges)
    rows, baselines = [], {}
    for variant in cfg.variants:
        path = kb_path(kb_dir, variant)
        if not path.exists():
            continue
        meta = read_kb_metadata(path)
        for net in networks:
            preds, source = network_scores(cfg, net, variant, predictions_dir, kb_dir, models_dir)
            if heldout is not None and source == "heldout":
                heldout[(net, variant)] = preds
            wide = join_predictions({net: preds}, meta)
            labels = np.asarray(wide["label"])
            p = np.asarray(wide[f"p_{net}"], dtype=float)
            snr = lensed_snr(wide, network_band_names(net, tuple(cfg.base.bands)))
            neg = labels == 0
            row = {"network": net, "variant": variant, "source": source, "n_lenses": int((labels == 1).sum()),
                   "n_nonlenses": int(neg.sum()), "auc": roc_auc(labels, p)}
            vis = (labels == 1) & (np.nan_to_num(snr, nan=-1.0) >= e.visible_snr_min)
            row["n_visible"] = int(vis.sum())
            row["auc_visible"] = roc_auc(labels[vis | neg], p[vis | neg]) if vis.any() else np.nan
            lo = np.asarray(edges, float)
            hi = np.asarray([*edges[1:], np.inf], float)
            for name, a, b in zip(names, lo, hi):
                m = (labels == 1) & (snr >= a) & (snr < b)
                row[f"auc_snr_{name}"] = roc_auc(labels[m | neg], p[m | neg]) if m.any() else np.nan
            rows.append(row)
        # the host baseline is the variant's own: all its cutouts, whichever network scores them
        baselines[variant] = _host_baseline(meta, np.asarray(meta["label"]))
    table = Table(rows=rows) if rows else Table()
    for col in table.colnames:
        if col.startswith("auc"):
            table[col].format = ".3f"
            table[col].description = "ROC AUC (lenses of the row's selection against every non-lens)"
    if rows:
        table["source"].description = "oof: out-of-fold (trained on this variant); heldout: run model on another"
        table["n_visible"].description = f"lenses with lensed-source S/N >= {e.visible_snr_min:g} in the bands"
    return table, baselines
