"""Aggregates of an inspection: per candidate G, its spread, forwarding, A/B class; agreement; ECSV export; MLflow.

Output of :func:`export`: an ECSV catalogue with one row per candidate (calibration systems included, flagged):
the candidate's id, RA, Dec, score, every grader's binary vote (``binary_<grader>``) and multi-class grade
(``grade_<grader>``; masked where the grader did not grade it), the number of multi-class grades, ``G`` (mean of
all multi-class grades of the multiclass and second-team rounds, as HOLISMOKES XVI average all eight graders),
``G_std``, ``G_first`` and ``forwarded`` (the first multi-class round's mean and the forwarding rule), the class
(A/B), the off-centre, overdensity and model-mis-predicted votes. The table's meta holds Fleiss' kappa per round and the calibration
agreement of each grader.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lenssearch.inspect import grading, store


def round_kappas(conn) -> dict[str, dict]:
    """Fleiss' kappa of every round over the candidates with the round's usual number of grades."""
    out = {}
    for rnd in conn.execute("SELECT id, name, kind FROM rounds ORDER BY id"):
        ratings: dict[int, list[int]] = {}
        for r in conn.execute("SELECT candidate_id, grade FROM grades WHERE round_id = ?", (rnd["id"],)):
            ratings.setdefault(r["candidate_id"], []).append(int(r["grade"]))
        categories = sorted(grading.SCALES[grading.scale_of(rnd["kind"])])
        kappa, n = grading.kappa_from_ratings(ratings, categories)
        out[rnd["name"]] = {"kind": rnd["kind"], "fleiss_kappa": kappa, "n_candidates": n}
    return out


def progress(conn) -> list[dict]:
    """Per round and grader: assigned and graded counts."""
    return [dict(r) for r in conn.execute(
        """SELECT r.name AS round, r.kind, gr.name AS grader, COUNT(a.id) AS assigned, COUNT(g.id) AS graded
           FROM assignments a JOIN rounds r ON r.id = a.round_id JOIN graders gr ON gr.id = a.grader_id
           LEFT JOIN grades g ON g.round_id = a.round_id AND g.grader_id = a.grader_id AND g.candidate_id = a.candidate_id
           GROUP BY r.id, gr.id ORDER BY r.id, gr.name""")]


def candidate_table(conn):
    """The aggregated catalogue (an astropy Table, units and descriptions set), one row per candidate."""
    import astropy.units as u
    from astropy.table import MaskedColumn, Table

    cands = [dict(r) for r in conn.execute("SELECT * FROM candidates ORDER BY id")]
    graders = [r["name"] for r in conn.execute("SELECT name FROM graders WHERE role = 'grader' ORDER BY id")]
    index = {c["id"]: i for i, c in enumerate(cands)}
    n = len(cands)
    binary = {g: np.full(n, -1, dtype=int) for g in graders}
    multi = {g: np.full(n, -1, dtype=int) for g in graders}
    # per candidate, grader -> grade: a grader who graded a candidate in two rounds counts once (the later grade)
    all_grades: list[dict[str, int]] = [{} for _ in range(n)]
    first_grades: list[dict[str, int]] = [{} for _ in range(n)]
    off = np.zeros(n, dtype=int)
    dense = np.zeros(n, dtype=int)
    model_bad = np.zeros(n, dtype=int)
    first_round = conn.execute("SELECT MIN(id) FROM rounds WHERE kind = 'multiclass'").fetchone()[0]
    for r in conn.execute(
        """SELECT g.candidate_id, g.grade, g.off_center, g.overdensity, g.model_bad, g.round_id, r.kind, gr.name AS grader
           FROM grades g JOIN rounds r ON r.id = g.round_id JOIN graders gr ON gr.id = g.grader_id
           ORDER BY g.round_id"""
    ):
        i = index[r["candidate_id"]]
        off[i] += r["off_center"]
        dense[i] += r["overdensity"]
        model_bad[i] += r["model_bad"]
        if r["kind"] == "binary":
            binary[r["grader"]][i] = r["grade"]
        else:
            multi[r["grader"]][i] = r["grade"]
            if r["kind"] != "calibration":
                all_grades[i][r["grader"]] = r["grade"]
                if r["round_id"] == first_round:
                    first_grades[i][r["grader"]] = r["grade"]
    t = Table()
    t["id"] = [c["name"] for c in cands]
    t["ra"] = np.array([c["ra"] for c in cands]) * u.deg
    t["dec"] = np.array([c["dec"] for c in cands]) * u.deg
    t["score"] = np.array([np.nan if c["score"] is None else c["score"] for c in cands])
    t["calibration"] = np.array([bool(c["calibration"]) for c in cands])
    t["truth"] = MaskedColumn([-1 if c["truth"] is None else c["truth"] for c in cands],
                              mask=[c["truth"] is None for c in cands], dtype=int)
    t["origin"] = [c["origin"] for c in cands]
    for g in graders:
        t[f"binary_{g}"] = MaskedColumn(binary[g], mask=binary[g] < 0, dtype=int)
        t[f"binary_{g}"].description = f"binary vote of grader {g} (1 yes, 0 no; masked: not graded)"
    for g in graders:
        t[f"grade_{g}"] = MaskedColumn(multi[g], mask=multi[g] < 0, dtype=int)
        t[f"grade_{g}"].description = (f"grade of grader {g}: 0 no lens, 1 possible, 2 probable, 3 definite "
                                       "(calibration systems: the calibration grade; masked: not graded)")
    stats = [grading.mean_and_std(v.values()) for v in all_grades]
    first = [grading.mean_and_std(v.values()) for v in first_grades]
    votes = np.column_stack([binary[g] for g in graders]) if graders else np.full((n, 0), -1)
    t["n_binary"] = np.sum(votes >= 0, axis=1)
    t["binary_yes"] = np.sum(votes == 1, axis=1)
    t["n_grades"] = np.array([len(v) for v in all_grades], dtype=int)
    t["G"] = np.array([s[0] for s in stats])
    t["G_std"] = np.array([s[1] for s in stats])
    t["G_first"] = np.array([s[0] for s in first])
    t["G_first_std"] = np.array([s[1] for s in first])
    t["forwarded"] = np.array([grading.forwarded(*s) for s in first], dtype=bool)
    # "none" rather than "": an empty string reads back from ECSV as a masked value
    t["grade_class"] = np.array([grading.grade_class(s[0]) or "none" for s in stats], dtype="<U4")
    t["off_center_votes"] = off
    t["overdensity_votes"] = dense
    t["model_bad_votes"] = model_bad
    descriptions = {
        "id": "candidate id (calibration systems: cal-<id>)",
        "ra": "right ascension (ICRS)", "dec": "declination (ICRS)",
        "score": "network (committee) score of the search",
        "calibration": "a system of known class shown in the calibration round",
        "truth": "calibration truth: 1 lens, 0 non-lens (masked for search candidates)",
        "origin": "search, or for calibration systems known / planted / non-lens",
        "n_binary": "number of binary votes",
        "binary_yes": "number of 'yes' binary votes (one forwards the candidate to the multi-class round)",
        "n_grades": "number of graders who gave a multi-class grade (multiclass and second-team rounds)",
        "G": "mean grade of all multi-class grades (HOLISMOKES XVI Sect. 4)",
        "G_std": "population standard deviation of those grades",
        "G_first": "mean grade of the first multiclass round",
        "G_first_std": "standard deviation of the first multiclass round's grades",
        "forwarded": "forwarded to the second team: G_first > 1, or G_first <= 1 with G_first_std > 0.75",
        "grade_class": "A (G >= 2.5), B (1.5 <= G < 2.5) or none",
        "off_center_votes": "number of graders who flagged the lens as off-centre",
        "overdensity_votes": "number of graders who voted for an overdense environment",
        "model_bad_votes": "number of graders who found the modeling network's centre or Einstein radius wrong",
    }
    for name, text in descriptions.items():
        t[name].description = text
    t.meta["graders"] = graders
    t.meta["fleiss_kappa"] = {k: {kk: (None if isinstance(vv, float) and not np.isfinite(vv) else vv)
                                  for kk, vv in v.items()} for k, v in round_kappas(conn).items()}
    t.meta["calibration_agreement"] = store.calibration_agreement(conn)
    t.meta["rules"] = ("forwarding: G > 1 or (G <= 1 and std > 0.75); A: G >= 2.5; B: 1.5 <= G < 2.5 "
                       "(Schuldt et al. 2025, HOLISMOKES XVI, Sect. 4)")
    return t


def summary_metrics(table) -> dict[str, float]:
    """Numbers for MLflow: candidates, graded, forwarded, A, B, kappa per round, calibration agreement per grader."""
    search = ~np.asarray(table["calibration"], dtype=bool)
    metrics: dict[str, float] = {
        "n_candidates": int(search.sum()),
        "n_calibration": int((~search).sum()),
        "n_graded": int(np.sum(search & (np.asarray(table["n_grades"]) > 0))),
        "n_forwarded": int(np.sum(search & np.asarray(table["forwarded"]))),
        "n_grade_A": int(np.sum(search & (np.asarray(table["grade_class"]) == "A"))),
        "n_grade_B": int(np.sum(search & (np.asarray(table["grade_class"]) == "B"))),
    }
    for name, k in table.meta["fleiss_kappa"].items():
        if k["fleiss_kappa"] is not None:
            metrics[f"fleiss_kappa_{name}"] = float(k["fleiss_kappa"])
    for grader, d in table.meta["calibration_agreement"].items():
        metrics[f"calibration_agreement_{grader}"] = float(d["fraction"])
    return metrics


def export(folder: str | Path, out: str | Path, mlflow: bool = False, tracking_uri: str | None = None) -> tuple[Path, dict]:
    """Write the aggregated catalogue to ``out`` (ECSV, atomically); optionally log a summary run to MLflow.

    The MLflow run (experiment ``lenssearch-inspect``) has the metrics of :func:`summary_metrics`, the
    inspection's folder and candidates as parameters, and the catalogue as an artifact.
    """
    from lenssearch.io import atomic_path

    out = Path(out)
    with store.opened(folder) as conn:
        table = candidate_table(conn)
        candidates_path = store.get_meta(conn, "candidates_path")
    metrics = summary_metrics(table)
    with atomic_path(out) as tmp:
        table.write(tmp, format="ascii.ecsv")
    if mlflow:
        from lenssearch import tracking

        uri = tracking.resolve_tracking_uri(tracking_uri)
        with tracking.tracked_run(
            "inspect", experiment="lenssearch-inspect",
            params={"inspection": str(Path(folder).resolve()), "candidates": candidates_path,
                    "graders": json.dumps(table.meta["graders"])},
            tags={"lenssearch.stage": "inspect"}, tracking_uri=uri, artifact_root=tracking.artifact_root_for(uri),
        ):
            tracking.log_metrics(metrics)
            tracking.log_artifacts([out])
    return out, metrics
