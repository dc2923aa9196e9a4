"""Every network on every KB variant (evaluate/variants.py): out-of-fold on its own, its run model on the others
without the plain member cutouts both hold; AUCs as scikit-learn computes them."""

import dataclasses

import h5py
import numpy as np
from astropy.table import Table
from sklearn.metrics import roc_auc_score

from lenssearch.config import NetworkConfig
from lenssearch.evaluate.variants import kb_path, variant_table
from lenssearch.kb.build import _to_records

NET = NetworkConfig(input_pixels=32, binning=2, filters=(4, 8), sc_vgg_filters=(2, 4), convs_per_block=1,
                    dense_units=(8, 4), dropout=0.0, leaky_relu_slope=0.1, normalisation_softening=1.0,
                    resnet_filters=(4,), resnet_blocks_per_stage=1)


def _write_kb(path, variant, plain_members, rng):
    n_lens, n_neg = 20, len(plain_members)
    labels = np.r_[np.ones(n_lens), np.zeros(n_neg)].astype(np.int8)
    yy, xx = np.mgrid[:32, :32] - 15.5
    ring = np.exp(-0.5 * ((np.hypot(xx, yy) - 8) / 1.5) ** 2)[None, :, :, None]
    cut = rng.normal(0, 1, (len(labels), 32, 32, 3)).astype(np.float32)
    cut[:n_lens] += (5 * ring).astype(np.float32)  # the lenses carry a ring the model may or may not see
    snr = np.r_[rng.uniform(5, 80, n_lens), np.full(n_neg, np.nan)]
    meta = Table({
        "id": [f"{variant}-{k}" for k in range(len(labels))], "label": labels,
        "field": ["F"] * len(labels),
        "member_id": [f"L{k}" for k in range(n_lens)] + list(plain_members),
        "confuser": ["lens"] * n_lens + ["plain"] * n_neg,
        "fold": np.tile(np.arange(2), len(labels) // 2).astype(np.int16),
        "lens_mag_F814W": rng.uniform(19, 23, len(labels)),
        **{f"lensed_snr_{b}": snr / np.sqrt(3) for b in ("F435W", "F606W", "F814W")},
    })
    with h5py.File(path, "w") as h5:
        h5.create_dataset("cutouts", data=cut)
        h5.create_dataset("labels", data=labels)
        h5.create_dataset("ids", data=np.array([s.encode() for s in meta["id"]]))
        h5.create_dataset("fold", data=np.asarray(meta["fold"]))
        h5.create_dataset("metadata", data=_to_records(meta))
        h5.attrs["bands"] = np.array([b"F435W", b"F606W", b"F814W"])
        h5.attrs["variant"] = variant
    return meta, cut


def test_networks_are_scored_on_every_variant(tmp_path):
    import keras

    from lenssearch.config import load_config
    from lenssearch.models import build_model

    from .conftest import REPO

    rng = np.random.default_rng(4)
    kb_dir = tmp_path / "kb"
    kb_dir.mkdir()
    meta_a, _ = _write_kb(kb_path(kb_dir, "a"), "a", [f"P{k}" for k in range(20)], rng)
    # variant b: half of its plain non-lenses are members that are plain non-lenses of a too (the same pixels)
    meta_b, cut_b = _write_kb(kb_path(kb_dir, "b"), "b", [f"P{k}" for k in range(10)] + [f"Q{k}" for k in range(10)],
                              rng)
    keras.utils.set_random_seed(0)
    model = build_model("vgg", NET)
    (tmp_path / "models" / "vgg" / "run").mkdir(parents=True)
    model.save(tmp_path / "models" / "vgg" / "run" / "model.keras")
    preds = Table({"id": meta_a["id"], "fold": meta_a["fold"], "network": ["vgg"] * len(meta_a),
                   "label": meta_a["label"], "probability": rng.uniform(0, 1, len(meta_a))})
    (tmp_path / "reports" / "vgg").mkdir(parents=True)
    preds.write(tmp_path / "reports" / "vgg" / "predictions.ecsv", format="ascii.ecsv")

    cfg = load_config(REPO / "params.yaml")
    cfg = dataclasses.replace(cfg, variants={"a": {}, "b": {}},
                              train=dataclasses.replace(cfg.train, kb_variant={"vgg": "a"}),
                              evaluate=dataclasses.replace(cfg.evaluate, visible_snr_min=30.0))
    heldout = {}
    table, baselines = variant_table(cfg, ["vgg"], tmp_path / "reports", kb_dir, tmp_path / "models", heldout=heldout)
    rows = {str(r["variant"]): r for r in table}
    assert rows["a"]["source"] == "oof" and rows["b"]["source"] == "heldout"
    # out of fold: the train stage's probabilities, AUCs as scikit-learn's
    lab, p = np.asarray(preds["label"]), np.asarray(preds["probability"])
    assert np.isclose(rows["a"]["auc"], roc_auc_score(lab, p))
    snr = np.sqrt(3) * np.asarray(meta_a["lensed_snr_F814W"])
    vis = (lab == 0) | (np.nan_to_num(snr) >= 30)
    assert np.isclose(rows["a"]["auc_visible"], roc_auc_score(lab[vis], p[vis]))
    # held out: the run model on b, without the ten plain members that a holds as well
    assert rows["b"]["n_nonlenses"] == 10 and rows["b"]["n_lenses"] == 20
    keep = np.r_[np.arange(20), np.arange(30, 40)]
    expected = model.predict(cut_b[keep], verbose=0).ravel()
    assert np.isclose(rows["b"]["auc"], roc_auc_score(np.asarray(meta_b["label"])[keep], expected))
    # the held-out scores are handed back for the committees across variants (only where not out of fold)
    assert list(heldout) == [("vgg", "b")]
    assert list(heldout["vgg", "b"]["id"]) == list(np.asarray(meta_b["id"])[keep])
    assert np.allclose(heldout["vgg", "b"]["probability"], expected, atol=1e-6)
    assert set(baselines) == {"a", "b"} and baselines["a"]["lens_brightness_auc"] is not None


def _predictions(net, ids, labels, folds, p):
    return Table({"id": ids, "fold": folds, "network": [net] * len(ids), "label": labels, "probability": p})


def test_committee_table_across_variants_is_the_union_of_out_of_fold_and_held_out_scores(tmp_path):
    """Two networks trained on variants a and b: each variant's cutouts carry the out-of-fold score of the network
    trained on it and the held-out score of the other; a cutout the other did not score (seen in its training)
    is left out; a missing held-out file is a clear error."""
    import pytest

    from lenssearch.errors import InputFileError, LensSearchError
    from lenssearch.evaluate.common import HELDOUT_DIR, heldout_path, load_wide

    rng = np.random.default_rng(1)
    ids = {v: [f"{v}-{k}" for k in range(8)] for v in "ab"}
    labels = {v: np.array([1, 1, 1, 1, 0, 0, 0, 0], np.int8) for v in "ab"}
    folds = {v: np.tile(np.arange(2), 4).astype(np.int16) for v in "ab"}
    reports = tmp_path / "reports"
    heldout_dir = reports / "evaluation" / HELDOUT_DIR
    scores = {}
    for net, own, other in (("vgg", "a", "b"), ("f814w", "b", "a")):
        oof = rng.uniform(0, 1, 8)
        (reports / net).mkdir(parents=True)
        own_table = _predictions(net, ids[own], labels[own], folds[own], oof)
        own_table.meta["kb_dvc_md5"] = f"md5-of-{own}"  # the KB the network was trained on (train stage)
        own_table.write(reports / net / "predictions.ecsv")
        held = rng.uniform(0, 1, 8)
        keep = np.arange(8) != 7  # the last non-lens of the other variant: a plain cutout this network trained on
        path = heldout_path(heldout_dir, net, other)
        path.parent.mkdir(parents=True)
        _predictions(net, np.asarray(ids[other])[keep], labels[other][keep], folds[other][keep],
                     held[keep]).write(path)
        scores[net, own], scores[net, other] = oof, held
    kb_variant = {"vgg": "a", "f814w": "b"}
    wide = load_wide(reports, ["vgg", "f814w"], kb_variant=kb_variant)
    assert len(wide) == 14 and sorted(set(wide["variant"])) == ["a", "b"]
    by_id = {str(r["id"]): r for r in wide}
    assert "a-7" not in by_id and "b-7" not in by_id
    for v in "ab":
        for k in range(7):
            row = by_id[f"{v}-{k}"]
            assert row["label"] == labels[v][k] and row["variant"] == v
            assert np.isclose(row["p_vgg"], scores["vgg", v][k]) and np.isclose(row["p_f814w"], scores["f814w", v][k])
    # each network's training KB (its predictions' kb_dvc_md5), for promote's fingerprint of the out-of-fold set
    assert wide.meta["kb_dvc_md5"] == {"vgg": "md5-of-a", "f814w": "md5-of-b"}
    # one variant: the out-of-fold table alone, as before
    alone = load_wide(reports, ["vgg"], kb_variant=kb_variant)
    assert len(alone) == 8 and alone.meta["kb_dvc_md5"] == {"vgg": "md5-of-a"}
    heldout_path(heldout_dir, "f814w", "a").unlink()
    with pytest.raises(InputFileError, match="f814w.*'a' variant.*evaluate stage"):
        load_wide(reports, ["vgg", "f814w"], kb_variant=kb_variant)
    with pytest.raises(LensSearchError, match="no entry"):
        load_wide(reports, ["vgg", "f814w"], kb_variant={"vgg": "a", "sc_vgg": "b"})
