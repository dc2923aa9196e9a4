"""Tables A.1-A.5 from synthetic out-of-fold predictions, checked against scikit-learn and direct counts."""

import numpy as np
import pytest
from astropy.table import Table
from sklearn import metrics as skm

from lenssearch.errors import LensSearchError
from lenssearch.evaluate import tables
from lenssearch.evaluate.data import join_predictions, load_published, read_kb_metadata, read_predictions
from lenssearch.evaluate.stages import load_wide, selection
from lenssearch.evaluate.synthetic import NETWORKS


@pytest.fixture(scope="module")
def wide(synthetic):
    preds, kb = synthetic
    return load_wide(preds, NETWORKS, kb)


def test_table_a1_matches_sklearn_with_and_without_adversarial_examples(wide, cfg):
    sel = selection(cfg)
    a1 = tables.table_a1(wide, list(NETWORKS), sel)
    y = np.asarray(wide["label"])
    adv = (np.asarray(wide["source_mag_F814W"]) > 28.0) | (np.asarray(wide["theta_e_arcsec"]) < 0.5)
    assert adv.sum() > 50
    rows = {r: i for i, r in enumerate(a1["row"])}
    for net in NETWORKS:
        p = np.asarray(wide[f"p_{net}"])
        for keep, col in ((np.ones(y.size, bool), net), (~adv, f"{net}_clean")):
            pred = (p[keep] >= 0.5).astype(int)
            assert a1[col][rows["accuracy"]] == pytest.approx(100 * skm.accuracy_score(y[keep], pred))
            assert a1[col][rows["purity_lens"]] == pytest.approx(100 * skm.precision_score(y[keep], pred))
            assert a1[col][rows["completeness_nonlens"]] == pytest.approx(
                100 * skm.recall_score(y[keep], pred, pos_label=0))
            assert a1[col][rows["f1_nonlens"]] == pytest.approx(100 * skm.f1_score(y[keep], pred, pos_label=0))
        # removing the hard lenses raises the lens completeness, leaves the non-lens completeness unchanged
        assert a1[f"{net}_clean"][rows["completeness_lens"]] > a1[net][rows["completeness_lens"]]
        assert a1[f"{net}_clean"][rows["completeness_nonlens"]] == a1[net][rows["completeness_nonlens"]]


def test_table_a2_box_statistics_over_folds(wide, cfg):
    a2 = tables.table_a2(wide, ["sc_vgg"], selection(cfg))
    y, p, folds = np.asarray(wide["label"]), np.asarray(wide["p_sc_vgg"]), np.asarray(wide["fold"])
    per_fold = [100 * skm.recall_score(y[folds == f], p[folds == f] >= 0.5) for f in np.unique(folds)]
    i = list(a2["row"]).index("completeness_lens")
    q1, med, q3 = np.percentile(per_fold, [25, 50, 75])
    assert a2["median_sc_vgg"][i] == pytest.approx(med)
    assert a2["iqr_sc_vgg"][i] == pytest.approx(q3 - q1)
    assert a2["whisker_high_sc_vgg"][i] == pytest.approx(q3 + 1.5 * (q3 - q1))


def test_tables_a4_a5_count_errors_per_bin(wide, cfg):
    sel = selection(cfg)
    fit = tables.fit_red_sequence(wide, np.random.default_rng(0))
    assert fit is not None and fit.slope == pytest.approx(-0.04, abs=0.02)
    colour = tables.normalised_colour(wide, fit)
    a4 = tables.table_a4(wide, ["vgg"], sel, colour)
    y, p = np.asarray(wide["label"]), np.asarray(wide["p_vgg"])
    neg, fp = y == 0, (y == 0) & (p >= 0.5)
    total = a4[list(a4["row"]).index("total")]
    assert total["nonlens"] == neg.sum() and total["vgg_fp"] == fp.sum()
    assert total["vgg_fp_over_tn"] == pytest.approx(fp.sum() / (neg.sum() - fp.sum()))
    blue = a4[list(a4["row"]).index("colour_lt_-0.5")]
    in_bin = neg & (colour < -0.5)
    assert blue["nonlens"] == pytest.approx(100 * in_bin.sum() / neg.sum())
    assert blue["vgg_fp_rate"] == pytest.approx((fp & in_bin).sum() / in_bin.sum())
    # the synthetic networks mistake blue members for lenses more often, as in the paper
    red = a4[list(a4["row"]).index("colour_ge_-0.5")]
    assert blue["vgg_fp_rate"] > red["vgg_fp_rate"]

    a5 = tables.table_a5(wide, ["vgg"], sel)
    mag = np.asarray(wide["source_mag_F814W"])
    fn = (y == 1) & (p < 0.5)
    row = a5[list(a5["row"]).index("source_mag_ge_28")]
    in_bin = (y == 1) & (mag >= 28)
    assert row["vgg_fn_over_tp"] == pytest.approx((fn & in_bin).sum() / (in_bin.sum() - (fn & in_bin).sum()))
    assert list(a5["row"]) == list(load_published()["tables"]["A5"]["rows"])  # row for row with the paper


def test_published_tables_are_complete():
    pub = load_published()
    assert "Angora" in pub["provenance"]["paper"]
    for key, t in pub["tables"].items():
        for row, values in t["rows"].items():
            assert len(values) == len(t["columns"]), (key, row)
    assert pub["tables"]["A1"]["rows"]["f1_lens"] == [91.0, 90.4, 92.4, 90.4]
    assert pub["tables"]["A4"]["rows"]["total"] == [1037, 154, 0.174, 170, 0.196]


def test_bad_predictions_are_named(tmp_path, synthetic):
    preds, kb = synthetic
    t = read_predictions(preds / "vgg" / "predictions.ecsv")
    t["probability"][3] = 1.5
    path = tmp_path / "predictions.ecsv"
    t.write(path, format="ascii.ecsv")
    with pytest.raises(LensSearchError, match=r"predictions.ecsv: row 4: probability 1.5"):
        read_predictions(path)
    del t["fold"]
    t.write(path, format="ascii.ecsv", overwrite=True)
    with pytest.raises(LensSearchError, match="missing column"):
        read_predictions(path)
    a = read_predictions(preds / "vgg" / "predictions.ecsv")
    b = read_predictions(preds / "sc_vgg" / "predictions.ecsv")[:-1]
    with pytest.raises(LensSearchError, match="do not score the same cutouts"):
        join_predictions({"vgg": a, "sc_vgg": b})
    meta = read_kb_metadata(kb)[5:]
    with pytest.raises(LensSearchError, match="not in the KB metadata"):
        join_predictions({"vgg": a}, meta)
    assert isinstance(meta, Table)


def test_kb_metadata_reads_as_the_kb_stage_reads_it(synthetic):
    kb_build = pytest.importorskip("lenssearch.kb.build")
    ours, theirs = read_kb_metadata(synthetic[1]), kb_build.read_kb_metadata(synthetic[1])
    assert ours.colnames == theirs.colnames
    assert list(ours["id"]) == list(theirs["id"]) and ours["id"].dtype.kind == "U"
    np.testing.assert_array_equal(ours["theta_e_arcsec"], theirs["theta_e_arcsec"])


def test_table_snr_matches_sklearn_per_bin(wide, cfg):
    bands = tuple(cfg.base.bands)
    edges = tuple(cfg.evaluate.snr_bins)
    t = tables.table_snr(wide, ["vgg", "f435w"], bands, edges, 0.5)
    assert list(t["row"]) == [*tables.snr_bin_labels(edges), "all"]
    y = np.asarray(wide["label"])
    f814, f435 = (np.asarray(wide[f"lensed_snr_{b}"], float) for b in ("F814W", "F435W"))
    f606 = np.asarray(wide["lensed_snr_F606W"], float)
    snr = {"vgg": np.sqrt(f435**2 + f606**2 + f814**2), "f435w": f435}  # quadrature over the network's bands
    hi = [*edges[1:], np.inf]
    for net in ("vgg", "f435w"):
        p = np.asarray(wide[f"p_{net}"])
        for k, (lo, up) in enumerate(zip(edges, hi)):
            m = (y == 1) & (snr[net] >= lo) & (snr[net] < up)
            assert t[f"{net}_n"][k] == m.sum()
            if m.sum():
                both = m | (y == 0)
                assert t[f"{net}_auc"][k] == pytest.approx(skm.roc_auc_score(y[both], p[both]))
                assert t[f"{net}_completeness"][k] == pytest.approx(100 * np.mean(p[m] >= 0.5))
            else:
                assert np.isnan(t[f"{net}_auc"][k])
        assert t[f"{net}_n"][-1] == (y == 1).sum()
        assert t[f"{net}_auc"][-1] == pytest.approx(skm.roc_auc_score(y, p))
    # the F435W net sees half the F814W S/N: its lenses sit in lower bins than the three-band net's
    assert np.sum(t["f435w_n"][:2]) > np.sum(t["vgg_n"][:2])


def test_lensed_snr_absent_columns_give_nan(wide):
    bare = wide.copy()
    bare.remove_column("lensed_snr_F606W")
    assert np.all(np.isnan(tables.lensed_snr(bare, ("F435W", "F606W", "F814W"))))
    assert np.any(np.isfinite(tables.lensed_snr(bare, ("F814W",))))
