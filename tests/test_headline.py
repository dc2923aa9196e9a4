"""Headline metrics: a few numbers per stage from its full results, in one short shared vocabulary."""

from __future__ import annotations

import json

import pytest

from lenssearch import headline

DOCS = {
    "field": {"A": {"zs2.0": {"n_lines": 3}, "zs3.0": {"n_lines": 4}}, "B": {"zs2.0": {"n_lines": 5}}},
    "simulate": {"n_mocks": 10, "rejected": {"A": {"n_drawn": 30}, "B": {"n_drawn": 10}}, "per_field": {}},
    "negatives": {"n_negatives": 12, "excluded": {"edge": 1}},
    "kb": {"n_cutouts": 22, "n_mocks": 10, "n_negatives": 12},
    "validate": {"success": True, "n_cutouts_failing": 0, "n_failed_expectations": 0, "expectations": []},
    "train": {"oof": {"auc": 0.91, "accuracy": 0.8, "purity_lens": 0.7, "completeness_lens": float("nan")},
              "folds": {}, "run_model_validation": {"auc": 0.9}},
    "evaluate": {"networks": {"vgg": {"auc": 0.6}, "sc_vgg": {"auc": 0.7}}},
    "committee": {"best": "mean(a+b)", "committees": [{"name": "mean(a+b)", "gate": 0.8, "auc": 0.95}]},
    "tune": {"models": {"a": {"purity": 0.9, "completeness": 0.7}, "b": {"purity": 0.8, "completeness": 0.9},
                        "c": {"purity": 0.7, "completeness": None}}},
    "promote": {"version": "3", "best_gate_value": 0.97, "threshold": 0.5, "alias_moved": True},
    "search": {"n_candidates": 6, "candidates_purity": 1 / 3, "lenses_recovered_fraction": 0.5, "threshold": 0.52,
               "n_scored": 300},
    "independent": {"models": {"champion": {"auc": 0.63, "tpr_at_fpr": {"0.01": 0.003}}}},
    "modeling": {"theta_e_median_abs_error_arcsec": 0.08, "nonlenses_rejected_fraction": 0.02, "version": "2",
                 "parameters": {"lens_x_arcsec": {"coverage_1sigma": 0.70}, "theta_e_arcsec": {"coverage_1sigma": 0.62}}},
    "model-candidates": {"n_candidates": 14, "nonlens_rejected_fraction_modeling": 0.0,
                         "kb_nonlens_candidates_rejected_fraction": 0.05, "planted_kept_fraction": 1.0},
}


def test_every_stage_has_a_headline_in_the_vocabulary():
    assert set(DOCS) == set(headline.HEADLINES)
    columns = set()
    for stage, doc in DOCS.items():
        values = headline.headline(stage, doc)
        assert 0 < len(values) <= headline.MAX_KEYS and set(values) <= set(headline.VOCABULARY), stage
        columns |= set(values)
    assert columns == set(headline.VOCABULARY)  # every name used: `dvc metrics show` has these columns only


def test_values():
    assert headline.headline("field", DOCS["field"]) == {"n": 12}
    assert headline.headline("simulate", DOCS["simulate"]) == {"n": 10, "acceptance": 0.25}
    assert headline.headline("train", DOCS["train"]) == {"auc": 0.91, "accuracy": 0.8, "purity": 0.7,
                                                          "completeness": None}  # NaN is JSON null
    assert headline.headline("tune", DOCS["tune"]) == {"n": 3, "purity": 0.8, "completeness": 0.8}
    assert headline.headline("promote", DOCS["promote"]) == {"version": 3, "gate": 0.97, "threshold": 0.5}
    assert headline.headline("evaluate", DOCS["evaluate"]) == {"auc": 0.7}
    # the worst 1-sigma coverage is the one farthest from 0.683
    assert headline.headline("modeling", DOCS["modeling"]) == {"mae": 0.08, "coverage": 0.62, "rejected": 0.02,
                                                                "version": 2}
    assert headline.headline("model-candidates", DOCS["model-candidates"]) == {"n": 14, "rejected": 0.05,
                                                                                "completeness": 1.0}


def test_written_from_a_report_file(tmp_path):
    report = tmp_path / "reports" / "search" / "metrics.json"
    report.parent.mkdir(parents=True)
    report.write_text(json.dumps(DOCS["search"]))
    out = tmp_path / "metrics" / "search.json"
    headline.write_headline("search", report, out)
    assert json.loads(out.read_text()) == {"n": 6, "purity": 0.3333, "completeness": 0.5, "threshold": 0.52}
    assert headline.write_headline("search", report, None) is None


def test_a_name_outside_the_vocabulary_is_refused(monkeypatch):
    monkeypatch.setitem(headline.HEADLINES, "kb", lambda doc: {"n_cutouts_total": 1})
    with pytest.raises(ValueError, match="at most"):
        headline.headline("kb", DOCS["kb"])
