"""KB figures (gallery, theta_E - lens magnitude) and the MLflow run that records them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lenssearch.kb.build import read_kb
from lenssearch.kb.figures import expected_theta_e, select_gallery


def test_gallery_is_sorted_by_theta_e_and_magnitude(kb_path):
    meta = read_kb(kb_path, load_cutouts=False)["metadata"]
    grid = select_gallery(meta, n_cols=4, n_rows=3)
    theta = np.asarray(meta["theta_e_arcsec"])
    mag = np.asarray(meta["source_mag_F814W"])
    assert len(grid) == 4 and all(len(c) == 3 for c in grid)
    assert all(meta["label"][i] == 1 for col in grid for i in col)
    for left, right in zip(grid[:-1], grid[1:]):
        assert max(theta[left]) <= min(theta[right])
    for col in grid:
        assert list(mag[col]) == sorted(mag[col])


def test_expected_theta_e_of_an_isothermal_lens():
    # 4 pi (sigma/c)^2 in arcsec: 1.15" for sigma = 200 km/s at D_ds/D_s = 1 (Schneider 2006)
    assert expected_theta_e(20.0, 20.0, 200.0, 0.25, 1.0) == pytest.approx(1.1537, rel=1e-3)
    # one magnitude fainter: sigma^2 drops by 10^(-0.8 alpha)
    assert expected_theta_e(21.0, 20.0, 250.0, 0.25, 1.0) / expected_theta_e(20.0, 20.0, 250.0, 0.25, 1.0) == \
        pytest.approx(10 ** -0.2)


def test_reports_and_mlflow_run(kb_path, cfg, tmp_path, monkeypatch):
    import mlflow
    from PIL import Image

    from lenssearch.kb.build import summarise
    from lenssearch.kb.report import EXPERIMENT, write_kb_reports

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")  # the default store, in tmp_path
    summary = summarise(read_kb(kb_path, load_cutouts=False)["metadata"])
    written = write_kb_reports(kb_path, tmp_path / "reports", cfg, summary, track=True)
    assert [p.name for p in written] == ["metrics.json", "gallery.png", "theta_e_vs_lens_mag.png"]
    metrics = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert metrics["n_mocks"] == 80 and metrics["n_negatives"] == 40
    assert 0.25 <= metrics["theta_e_median_arcsec"] <= 3.0
    width, height = Image.open(tmp_path / "reports" / "gallery.png").size
    assert width > 600 and height > 600
    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    runs = mlflow.search_runs(experiment_names=[EXPERIMENT], output_format="list")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.metrics["n_mocks"] == 80 and run.data.params["kb.n_folds"] == "3"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "kb")}
    assert {"kb/gallery.png", "kb/theta_e_vs_lens_mag.png", "kb/metrics.json"} <= artifacts
    assert (tmp_path / "mlartifacts").is_dir()
