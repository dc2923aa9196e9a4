"""The inspection's database: init, assignments, grades, forwarding between rounds, export and MLflow summary."""

import numpy as np
import pytest
from astropy.table import Table

from lenssearch.errors import InputFileError, LensSearchError
from lenssearch.inspect import aggregate, store


def test_init_copies_the_kept_candidates_and_measures_the_noise(inspection, inputs):
    folder, _ = inspection
    with store.opened(folder) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        names = [r[0] for r in conn.execute("SELECT name FROM candidates WHERE calibration = 0")]
        assert sorted(names) == sorted(str(v) for v in Table.read(inputs["candidates"])["id"])
        noise = store.get_meta(conn, "noise_sigma")
        truth = [r[0] for r in conn.execute("SELECT truth FROM candidates WHERE calibration = 1 ORDER BY id")]
    assert np.allclose(noise, [0.004, 0.003, 0.004], rtol=0.1)  # the synthetic field's pixel noise
    assert truth == [1, 1, 1, 0, 0, 0]


def test_init_refuses_bad_inputs(tmp_path, inputs):
    bad = tmp_path / "bad.ecsv"
    Table({"id": ["a"], "dec": [2.0]}).write(bad, format="ascii.ecsv")
    with pytest.raises(InputFileError, match=r"bad.ecsv: no ra column"):
        store.init_inspection(tmp_path / "a", bad, inputs["field"])
    Table({"id": ["a", "a"], "ra": [150.0, 150.001], "dec": [2.0, 2.0]}).write(bad, format="ascii.ecsv", overwrite=True)
    with pytest.raises(InputFileError, match="bad.ecsv: id 'a' appears more than once"):
        store.init_inspection(tmp_path / "a", bad, inputs["field"])
    Table({"id": ["a", "b"], "ra": [150.0, 150.001], "dec": [2.0, 95.0]}).write(bad, format="ascii.ecsv", overwrite=True)
    with pytest.raises(InputFileError, match=r"bad.ecsv: row 1: ra/dec \(150.001, 95.0\) is not a sky position"):
        store.init_inspection(tmp_path / "a", bad, inputs["field"])
    with pytest.raises(InputFileError, match="no such field directory"):
        store.init_inspection(tmp_path / "b", inputs["candidates"], tmp_path / "nowhere")
    with pytest.raises(InputFileError, match="not an inspection folder"):
        store.connect(tmp_path / "c")
    store.init_inspection(tmp_path / "d", inputs["candidates"], inputs["field"])
    with pytest.raises(LensSearchError, match="already an inspection folder"):
        store.init_inspection(tmp_path / "d", inputs["candidates"], inputs["field"])


def test_balanced_assignment_is_balanced_distinct_and_seeded():
    cands, graders = list(range(101)), [10, 11, 12, 13, 14, 15, 16]
    lists = store.balanced_assignment(cands, graders, 2, np.random.default_rng(5))
    loads = [len(v) for v in lists.values()]
    assert max(loads) - min(loads) <= 1 and sum(loads) == 202
    per_candidate = {}
    for g, cs in lists.items():
        assert len(set(cs)) == len(cs)
        for c in cs:
            per_candidate.setdefault(c, []).append(g)
    assert all(len(v) == 2 for v in per_candidate.values()) and len(per_candidate) == 101
    assert lists == store.balanced_assignment(cands, graders, 2, np.random.default_rng(5))
    assert lists != store.balanced_assignment(cands, graders, 2, np.random.default_rng(6))
    with pytest.raises(LensSearchError, match="8 graders per candidate, but the round has 7"):
        store.balanced_assignment(cands, graders, 8, np.random.default_rng(0))


def test_rounds_forward_candidates_and_grades_are_unique(inspection):
    folder, _ = inspection
    store.add_round(folder, "cal", "calibration")
    store.add_round(folder, "bin", "binary")
    assert store.assign(folder, "cal", None, 1) == {"alice": 6, "bob": 6, "carol": 6}
    counts = store.assign(folder, "bin", 2, 1)
    assert sorted(counts.values()) == [8, 8, 8]
    with pytest.raises(LensSearchError, match="assigned already"):
        store.assign(folder, "bin", 2, 1)
    with store.opened(folder) as conn:
        rid = store.round_row(conn, "bin")["id"]
        gid = {r["name"]: r["id"] for r in conn.execute("SELECT id, name FROM graders")}
        # alice says yes to everything, bob and carol no: candidates forwarded = alice's
        yes = set()
        for name in ("alice", "bob", "carol"):
            for pos in range(8):
                cid = store.record_grade(conn, rid, gid[name], pos, 1 if name == "alice" else 0)
                if name == "alice":
                    yes.add(cid)
        store.record_grade(conn, rid, gid["bob"], 0, 1)  # bob changes his mind: replaced, not added
        store.record_grade(conn, rid, gid["bob"], 0, 0)
        assert conn.execute("SELECT COUNT(*) FROM grades WHERE round_id = ?", (rid,)).fetchone()[0] == 24
        with pytest.raises(LensSearchError, match="grade 2 is not allowed"):
            store.record_grade(conn, rid, gid["bob"], 1, 2)
        with pytest.raises(LensSearchError, match="no assignment at position 8"):
            store.record_grade(conn, rid, gid["bob"], 8, 1)
        assert set(store.forwarded_candidates(conn, rid)) == yes
    store.add_round(folder, "multi", "multiclass", from_round="bin")
    store.assign(folder, "multi", 2, 2, graders=["alice", "bob"])
    with store.opened(folder) as conn:
        assigned = {r[0] for r in conn.execute(
            "SELECT candidate_id FROM assignments a JOIN rounds r ON r.id = a.round_id WHERE r.name = 'multi'")}
    assert assigned == yes
    store.add_round(folder, "second", "second_team", from_round="multi")
    with pytest.raises(LensSearchError, match="no candidates to assign"):
        store.assign(folder, "second", 1, 3)  # nothing graded in 'multi' yet: nothing forwarded
    with pytest.raises(LensSearchError, match="unknown graders dave"):
        store.assign(folder, "second", 1, 3, graders=["dave"])
    with store.opened(folder) as conn:  # alice gives 3, bob 0 or 1: G = 1.5 or 2 forwarded, std 1.5 too
        mid = store.round_row(conn, "multi")["id"]
        n = len(yes)
        for pos in range(n):
            store.record_grade(conn, mid, gid["alice"], pos, 3)
            store.record_grade(conn, mid, gid["bob"], pos, pos % 2)
        forwarded = set(store.forwarded_candidates(conn, mid))
    assert forwarded == yes
    assert store.assign(folder, "second", 1, 3) == {"carol": n}  # the graders who did not grade 'multi'


def test_export_has_every_graders_grades_and_the_aggregates(inspection, tmp_path):
    folder, _ = inspection
    store.add_round(folder, "cal", "calibration")
    store.add_round(folder, "multi", "multiclass")
    store.assign(folder, "cal", None, 0)
    store.assign(folder, "multi", 3, 0)
    given = {}
    with store.opened(folder) as conn:
        rid = store.round_row(conn, "multi")["id"]
        cal = store.round_row(conn, "cal")["id"]
        for g in conn.execute("SELECT id, name FROM graders WHERE role = 'grader'").fetchall():
            for pos in range(12):
                grade = (pos + g["id"]) % 4
                cid = store.record_grade(conn, rid, g["id"], pos, grade, off_center=pos == 0, overdensity=pos < 2)
                given.setdefault(cid, {})[g["name"]] = grade
            for pos in range(6):  # every calibration system graded 3: lenses right, non-lenses wrong
                store.record_grade(conn, cal, g["id"], pos, 3)
        names = {r["id"]: r["name"] for r in conn.execute("SELECT id, name FROM candidates")}
    out, metrics = aggregate.export(folder, tmp_path / "graded.ecsv", mlflow=True,
                                    tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    t = Table.read(out, format="ascii.ecsv")
    assert len(t) == 18 and str(t["ra"].unit) == "deg" and t["G"].description.startswith("mean grade")
    rows = {str(r["id"]): r for r in t}
    for cid, grades in given.items():
        row = rows[names[cid]]
        for name in ("alice", "bob", "carol"):
            assert row[f"grade_{name}"] == grades[name]
        values = list(grades.values())
        assert row["G"] == pytest.approx(np.mean(values)) and row["G_std"] == pytest.approx(np.std(values))
        assert row["n_grades"] == 3
        assert bool(row["forwarded"]) == (np.mean(values) > 1 or np.std(values) > 0.75)
        assert row["grade_class"] == ("A" if np.mean(values) >= 2.5 else "B" if np.mean(values) >= 1.5 else "none")
    assert t.meta["calibration_agreement"]["alice"] == {"n": 6, "correct": 3, "lenses": 3, "lenses_found": 3,
                                                         "fraction": 0.5}
    assert t.meta["fleiss_kappa"]["multi"]["n_candidates"] == 12
    assert metrics["n_candidates"] == 12 and metrics["calibration_agreement_bob"] == 0.5
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["lenssearch-inspect"], output_format="list")
    assert len(runs) == 1
    assert runs[0].data.metrics["n_grade_A"] == metrics["n_grade_A"]
    assert "fleiss_kappa_multi" in runs[0].data.metrics


def test_a_grader_counts_once_per_candidate_in_the_mean_grade(inspection):
    folder, _ = inspection
    store.add_round(folder, "multi", "multiclass")
    store.assign(folder, "multi", 3, 0)
    with store.opened(folder) as conn:
        gid = {r["name"]: r["id"] for r in conn.execute("SELECT id, name FROM graders")}
        for name, grade in (("alice", 3), ("bob", 3), ("carol", 0)):
            for pos in range(12):
                store.record_grade(conn, 1, gid[name], pos, grade)
    store.add_round(folder, "second", "second_team", from_round="multi")
    store.assign(folder, "second", 1, 0, graders=["carol"])  # carol again, on what was forwarded
    with store.opened(folder) as conn:
        for pos in range(12):
            store.record_grade(conn, 2, gid["carol"], pos, 3)  # she changed her mind
        table = aggregate.candidate_table(conn)
    search = table[~table["calibration"]]
    assert list(search["n_grades"]) == [3] * 12
    assert np.allclose(search["G"], 3.0) and np.allclose(search["G_first"], 2.0)
    assert list(search["grade_class"]) == ["A"] * 12 and all(search["forwarded"])
