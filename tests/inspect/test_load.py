"""Eight graders grading the same round at once against the served app on 127.0.0.1: no grade lost or doubled."""

import re
import threading

import requests

from lenssearch.inspect import store

from .conftest import write_many_candidates

N_GRADERS = 8


def test_eight_graders_at_once_lose_no_grade(tmp_path, inputs, serve):
    many = write_many_candidates(tmp_path / "many.ecsv", inputs["field"], 200, seed=1)
    folder = tmp_path / "load"
    store.init_inspection(folder, many, inputs["field"])
    tokens = {f"g{i}": store.add_grader(folder, f"g{i}") for i in range(N_GRADERS)}
    store.add_round(folder, "multi", "multiclass")
    counts = store.assign(folder, "multi", 4, 11)  # 200 x 4 / 8 = 100 each
    server = serve(folder)
    barrier = threading.Barrier(N_GRADERS)
    sent: dict[str, dict[int, int]] = {}
    errors: list[str] = []

    def grade(name):
        try:
            session = requests.Session()
            page = session.get(f"{server.url}/login/{tokens[name]}", timeout=30)
            page = session.get(f"{server.url}/round/1/0", timeout=30)
            csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
            mine = {}
            barrier.wait(timeout=60)
            for pos in range(counts[name]):
                # every grade is sent; one in five is sent twice (a double key press, a retry)
                for _ in range(2 if pos % 5 == 0 else 1):
                    value = (pos * 7 + int(name[1:])) % 4
                    r = session.post(f"{server.url}/api/grade", json={"round": 1, "position": pos, "grade": value},
                                     headers={"X-CSRF-Token": csrf}, timeout=60)
                    if r.status_code != 200:
                        errors.append(f"{name} {pos}: {r.status_code} {r.text}")
                    mine[pos] = value
            sent[name] = mine
            session.close()
        except Exception as exc:  # reported below, with the grader's name
            errors.append(f"{name}: {exc!r}")

    threads = [threading.Thread(target=grade, args=(name,)) for name in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors[:5]
    assert sum(len(v) for v in sent.values()) == 800
    with store.opened(folder) as conn:
        assert conn.execute("SELECT COUNT(*) FROM grades").fetchone()[0] == 800
        doubled = conn.execute("SELECT COUNT(*) FROM (SELECT 1 FROM grades GROUP BY round_id, grader_id, candidate_id "
                               "HAVING COUNT(*) > 1)").fetchone()[0]
        assert doubled == 0
        stored = {(r["name"], r["position"]): r["grade"] for r in conn.execute(
            """SELECT gr.name, a.position, g.grade FROM grades g JOIN graders gr ON gr.id = g.grader_id
               JOIN assignments a ON a.round_id = g.round_id AND a.grader_id = g.grader_id
               AND a.candidate_id = g.candidate_id""")}
    assert stored == {(name, pos): value for name, mine in sent.items() for pos, value in mine.items()}
