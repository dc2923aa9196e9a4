"""The web app's access rules, validation and responsiveness (Flask's test client on the real app and database)."""

import re
import time

import pytest

from lenssearch.inspect import store
from lenssearch.inspect.app import create_app

from .conftest import write_many_candidates


def _login(app, token):
    client = app.test_client()
    response = client.get(f"/login/{token}")
    assert response.status_code == 302
    return client


def _csrf(client, path):
    page = client.get(path)
    assert page.status_code == 200, page.text
    return re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1), page


@pytest.fixture
def graded_app(inspection):
    folder, tokens = inspection
    store.add_round(folder, "bin", "binary")
    store.add_round(folder, "multi", "multiclass")
    store.assign(folder, "bin", 2, 0)
    store.assign(folder, "multi", 3, 0)
    return create_app(folder, prerender_next=False), folder, tokens


def test_every_grader_endpoint_needs_the_token(graded_app):
    app, folder, tokens = graded_app
    anonymous = app.test_client()
    for path in ("/", "/round/1/", "/round/1/0", "/api/round/1", "/img/1/stamp10_lupton.png", "/admin",
                 "/admin/export.ecsv"):
        response = anonymous.get(path)
        assert response.status_code == 401, path
    response = anonymous.post("/api/grade", json={"round": 1, "position": 0, "grade": 1})
    assert response.status_code == 403  # no session: no CSRF token either
    assert anonymous.get("/login/not-a-token").status_code == 403
    with store.opened(folder) as conn:
        assert conn.execute("SELECT COUNT(*) FROM grades").fetchone()[0] == 0


def test_csrf_origin_and_grade_validation(graded_app):
    app, folder, tokens = graded_app
    alice = _login(app, tokens["alice"])
    csrf, _ = _csrf(alice, "/round/2/0")
    body = {"round": 2, "position": 0, "grade": 2}
    assert alice.post("/api/grade", json=body).status_code == 403
    for forged in ("forged", "f\u00f6rged", csrf[:-1]):
        assert alice.post("/api/grade", json=body, headers={"X-CSRF-Token": forged.encode("utf-8").decode("latin-1")}).status_code == 403
    cross = alice.post("/api/grade", json=body, headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"})
    assert cross.status_code == 403 and "cross-site" in cross.json["error"]
    seven = alice.post("/api/grade", json={**body, "grade": 7}, headers={"X-CSRF-Token": csrf})
    assert seven.status_code == 400
    assert seven.json["error"] == ("grade 7 is not allowed; a multiclass round takes 0 (no lens), 1 (possible), "
                                   "2 (probable), 3 (definite)")
    for bad, message in (({**body, "grade": "x"}, "not an integer"), ({**body, "position": "a"}, "integers"),
                         ({**body, "off_center": "yes"}, "true or false"), ({"round": 2, "position": 0}, "no 'grade'"),
                         ({**body, "position": 99}, "no assignment at position 99")):
        response = alice.post("/api/grade", json=bad, headers={"X-CSRF-Token": csrf})
        assert response.status_code == 400 and message in response.json["error"], (bad, response.json)
    ok = alice.post("/api/grade", json=body, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200 and ok.json["next"] == 1
    # the logout form is protected too
    assert alice.post("/logout").status_code == 403
    assert alice.post("/logout", data={"csrf_token": csrf}).status_code == 200
    assert alice.get("/").status_code == 401
    with store.opened(folder) as conn:
        assert [tuple(r) for r in conn.execute("SELECT grade, off_center FROM grades")] == [(2, 0)]


def test_a_grader_sees_only_their_own_grades(graded_app):
    app, folder, tokens = graded_app
    alice, bob = _login(app, tokens["alice"]), _login(app, tokens["bob"])
    csrf, _ = _csrf(alice, "/round/2/0")
    with store.opened(folder) as conn:
        gid = {r["name"]: r["id"] for r in conn.execute("SELECT id, name FROM graders")}
        alice_list = [r[0] for r in conn.execute(
            "SELECT candidate_id FROM assignments WHERE round_id = 2 AND grader_id = ? ORDER BY position", (gid["alice"],))]
        bob_list = [r[0] for r in conn.execute(
            "SELECT candidate_id FROM assignments WHERE round_id = 2 AND grader_id = ? ORDER BY position", (gid["bob"],))]
    for pos in range(len(alice_list)):
        assert alice.post("/api/grade", json={"round": 2, "position": pos, "grade": 3},
                          headers={"X-CSRF-Token": csrf}).status_code == 200
    shared = [c for c in alice_list if c in bob_list]
    assert shared, "alice and bob share candidates (3 of 3 graders per candidate)"
    pos = bob_list.index(shared[0])
    page = bob.get(f"/round/2/{pos}").text
    assert 'id="own-grade">-<' in page and '"grade": null' in page.replace("'", '"')
    assert bob.get("/api/round/2").json["grades"] == []
    # bob's grade at a position goes to bob's own candidate, never alice's grade
    bob_csrf, _ = _csrf(bob, f"/round/2/{pos}")
    assert bob.post("/api/grade", json={"round": 2, "position": pos, "grade": 0},
                    headers={"X-CSRF-Token": bob_csrf}).status_code == 200
    assert {g["grade"] for g in alice.get("/api/round/2").json["grades"]} == {3}
    # the organiser's pages are not a grader's, and a grader's pages are not the organiser's
    assert alice.get("/admin").status_code == 403 and alice.get("/admin/export.ecsv").status_code == 403
    organiser = _login(app, tokens["organiser"])
    assert organiser.get("/round/2/0").status_code == 403
    assert organiser.get("/admin").status_code == 200


def test_no_file_outside_the_inspection_folder(graded_app, tmp_path):
    app, folder, tokens = graded_app
    alice = _login(app, tokens["alice"])
    with store.opened(folder) as conn:
        gid = conn.execute("SELECT id FROM graders WHERE name = 'alice'").fetchone()[0]
        mine = conn.execute("SELECT candidate_id FROM assignments WHERE grader_id = ? LIMIT 1", (gid,)).fetchone()[0]
        others = [r[0] for r in conn.execute(
            "SELECT id FROM candidates WHERE id NOT IN (SELECT candidate_id FROM assignments WHERE grader_id = ?)", (gid,))]
    png = alice.get(f"/img/{mine}/stamp10_lupton.png")
    assert png.status_code == 200 and png.data[:8] == b"\x89PNG\r\n\x1a\n"
    cached = folder / "cache" / str(mine) / "hist.png"
    assert cached.is_file()  # every image of the candidate rendered at once, cached in the folder
    rendered = cached.stat().st_mtime_ns
    for kind in ("hist", "context80_sqrt", "stamp4_linear", "band2"):
        response = alice.get(f"/img/{mine}/{kind}.png")
        assert response.status_code == 200 and response.data[:4] == b"\x89PNG"
    assert cached.stat().st_mtime_ns == rendered  # served from the cache, not rendered again
    for path in (f"/img/{mine}/..%2F..%2Finspection.sqlite.png", f"/img/{mine}/../../inspection.sqlite",
                 f"/img/{mine}/%2e%2e%2f%2e%2e%2fetc%2fpasswd.png", f"/img/{mine}/band9.png", f"/img/{mine}/x.png",
                 "/cache/1/hist.png", "/inspection.sqlite", "/static/app.js", "/img/99999/hist.png",
                 f"/img/{others[0]}/hist.png", "/../../etc/passwd"):
        response = alice.get(path)
        assert response.status_code == 404, path
        assert b"SQLite format" not in response.data and b"root:" not in response.data


def test_the_app_stays_responsive_with_ten_thousand_candidates(tmp_path, inputs):
    many = write_many_candidates(tmp_path / "many.ecsv", inputs["field"], 10_000)
    folder = tmp_path / "big"
    organiser = store.init_inspection(folder, many, inputs["field"])
    tokens = [store.add_grader(folder, f"g{i}") for i in range(8)]
    store.add_round(folder, "bin", "binary")
    store.assign(folder, "bin", 2, 0)
    with store.opened(folder) as conn:  # half of the round graded
        rows = conn.execute("SELECT grader_id, candidate_id FROM assignments WHERE position % 2 = 0").fetchall()
        with store.transaction(conn):
            conn.executemany("INSERT INTO grades (round_id, grader_id, candidate_id, grade, updated) "
                             "VALUES (1, ?, ?, 1, 0)", [tuple(r) for r in rows])
    app = create_app(folder, prerender_next=False)
    grader = _login(app, tokens[0])
    csrf, _ = _csrf(grader, "/round/1/1")
    timings = {}
    for name, call in {
        "home": lambda: grader.get("/"),
        "page": lambda: grader.get("/round/1/2000"),
        "resume": lambda: grader.get("/round/1/"),
        "grade": lambda: grader.post("/api/grade", json={"round": 1, "position": 2001, "grade": 0},
                                     headers={"X-CSRF-Token": csrf}),
    }.items():
        start = time.perf_counter()
        response = call()
        timings[name] = time.perf_counter() - start
        assert response.status_code in (200, 302), name
    admin = _login(app, organiser)
    start = time.perf_counter()
    assert admin.get("/admin").status_code == 200
    timings["admin"] = time.perf_counter() - start
    assert max(timings[k] for k in ("home", "page", "resume", "grade")) < 0.5, timings
    assert timings["admin"] < 5.0, timings


def test_the_modeling_networks_overlay_and_a_replaced_link(graded_app):
    app, folder, tokens = graded_app
    alice = _login(app, tokens["alice"])
    with store.opened(folder) as conn:
        rows = conn.execute(
            """SELECT a.position, c.extra FROM assignments a JOIN candidates c ON c.id = a.candidate_id
               JOIN graders g ON g.id = a.grader_id WHERE g.name = 'alice' AND a.round_id = 2""").fetchall()
    with_model = [r["position"] for r in rows if '"model_theta_e_arcsec": 1.2' in r["extra"]]
    without = [r["position"] for r in rows if '"model_theta_e_arcsec": null' in r["extra"]]
    assert with_model and without
    page = alice.get(f"/round/2/{with_model[0]}").text
    # the synthetic model: centre 0.2" East of the stamp's centre, theta_E = 1.2" +- 0.15"
    assert 'viewBox="-5 -5 10 10"' in page and re.search(r'translate\(-0\.(1999|2000),-?0\.0000\)', page)
    assert '<circle r="1.2000" fill="none" stroke="lime"' in page
    assert '<circle r="1.3500"' in page and '<circle r="1.0500"' in page
    assert 'id="overlay"' not in alice.get(f"/round/2/{without[0]}").text
    new = store.new_link(folder, "alice")
    assert app.test_client().get(f"/login/{tokens['alice']}").status_code == 403
    assert app.test_client().get(f"/login/{new}").status_code == 302
