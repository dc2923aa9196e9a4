"""The evaluate verb end to end: tables beside the paper's values, figures, metrics, MLflow runs, bad input."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from lenssearch.cli import app

from .conftest import REPO


def test_evaluate_verb_writes_report_beside_the_paper(synthetic, mlflow_store, tmp_path):
    import mlflow

    preds, kb = synthetic
    out, report = tmp_path / "evaluation", tmp_path / "evaluation.md"
    res = CliRunner().invoke(app, ["evaluate", "--predictions", str(preds), "--kb", str(kb), "--out", str(out),
                                   "--markdown", str(report), "--tracking-uri", mlflow_store,
                                   "--params", str(REPO / "params.yaml")])
    assert res.exit_code == 0, res.output
    text = report.read_text()
    # our value, then the paper's in parentheses, row for row (Table A.1: VGG GGSL purity 93.4)
    line = next(x for x in text.splitlines() if x.startswith("| GGSL pur |"))
    assert "(93.4)" in line and "(87.5)" in line and "(93.1)" in line
    assert "| colour_lt_-0.5 |" in text and "(0.333)" in text  # Table A.4
    assert "| z_s_ge_5 |" in text and "(0.282)" in text  # Table A.5
    assert "not measurable" in text  # TPR at FPR 1e-3 with ~200 negatives
    assert (tmp_path / "evaluation.html").read_text().count("<table>") >= 6
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["networks"]) == {"vgg", "sc_vgg", "resnet", "f435w", "f606w", "f814w"}
    assert metrics["networks"]["vgg"]["tpr_at_fpr_1e-03"] is None
    assert abs(metrics["red_sequence"]["slope"] + 0.04) < 0.02
    for name in ("fig6_roc", "fig6_boxplots", "fig8_false_positives", "fig9_false_negatives", "figA1_rates_2d",
                 "fig11_purity_completeness", "red_sequence", "snr_detection"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    # detection against the lensed source's S/N: the table, and AUCs without the hard or invisible lenses
    assert "| snr_ge_100 |" in text
    vgg_m = metrics["networks"]["vgg"]
    assert vgg_m["auc_visible"] > vgg_m["auc"] and vgg_m["auc_clean"] > vgg_m["auc"]
    assert 0 < vgg_m["visible_lens_fraction"] < 1
    from sklearn.metrics import roc_auc_score

    from lenssearch.evaluate.stages import load_wide

    w = load_wide(preds, list(metrics["networks"]), kb)
    mag = np.asarray(w["lens_mag_F814W"], float)
    ok = np.isfinite(mag)
    expected = roc_auc_score(np.asarray(w["label"])[ok], -mag[ok])
    assert metrics["host_baseline"]["lens_brightness_auc"] == pytest.approx(expected)
    assert "Host baseline" in text
    for key in ("A1", "A2", "A3", "A4", "A5", "snr"):
        assert (out / "tables" / f"table_{key}.ecsv").exists()
    runs = mlflow.search_runs(experiment_names=["lenssearch-evaluation"], filter_string="tags.kind = 'network'")
    assert len(runs) == 6
    vgg = runs[runs["tags.network"] == "vgg"].iloc[0]
    assert np.isclose(vgg["metrics.auc"], metrics["networks"]["vgg"]["auc"])
    assert "tpr_at_fpr_1e-03" in vgg["tags.not_measurable"]


def test_bad_input_exits_non_zero_with_one_line(tmp_path):
    (tmp_path / "vgg").mkdir()
    (tmp_path / "vgg" / "predictions.ecsv").write_text("not an ecsv\n")
    res = CliRunner().invoke(app, ["evaluate", "--predictions", str(tmp_path), "--out", str(tmp_path / "o"),
                                   "--markdown", str(tmp_path / "r.md"), "--no-mlflow",
                                   "--params", str(REPO / "params.yaml")])
    assert res.exit_code == 2
    assert "error:" in res.output and "predictions.ecsv" in res.output
    assert not (tmp_path / "o").exists()
