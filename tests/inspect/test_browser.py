"""End to end in a real headless Chromium: graders log in with their links and grade with the keyboard."""

from astropy.table import Table
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from lenssearch.inspect import store


def _wait(driver, condition, timeout=30):
    return WebDriverWait(driver, timeout).until(condition)


def _open(driver, url):
    driver.get(url)
    _wait(driver, lambda d: d.execute_script("return document.readyState") != "loading")


def _ready(driver, round_id, position):
    _wait(driver, lambda d: d.current_url.endswith(f"/round/{round_id}/{position}")
          and d.execute_script("return document.body && document.body.dataset.ready === '1'"))


def _press(driver, *keys):
    body = driver.find_element(By.TAG_NAME, "body")
    for key in keys:
        body.send_keys(key)


def _grades(folder, grader, round_name):
    with store.opened(folder) as conn:
        return {r["position"]: (r["grade"], r["off_center"], r["overdensity"], r["name"], r["model_bad"])
                for r in conn.execute(
            """SELECT a.position, g.grade, g.off_center, g.overdensity, g.model_bad, c.name FROM grades g
               JOIN assignments a ON a.round_id = g.round_id AND a.grader_id = g.grader_id
                    AND a.candidate_id = g.candidate_id
               JOIN graders gr ON gr.id = g.grader_id JOIN rounds r ON r.id = g.round_id
               JOIN candidates c ON c.id = g.candidate_id WHERE gr.name = ? AND r.name = ?""",
            (grader, round_name))}


def test_graders_grade_with_the_keyboard_and_the_export_matches(inspection, serve, browser):
    folder, tokens = inspection
    store.add_round(folder, "cal", "calibration")
    store.add_round(folder, "bin", "binary")
    store.assign(folder, "cal", None, 0, graders=["alice", "bob"])
    store.assign(folder, "bin", 2, 0, graders=["alice", "bob"])
    with store.opened(folder) as conn:  # alice's fifth candidate has the modeling network's prediction
        conn.execute(
            """UPDATE candidates SET extra = json_set(extra, '$.model_theta_e_arcsec', 0.9,
                                                      '$.model_theta_e_sigma_arcsec', 0.1)
               WHERE id = (SELECT candidate_id FROM assignments a JOIN graders g ON g.id = a.grader_id
                           WHERE g.name = 'alice' AND a.round_id = 2 AND a.position = 4)""")
    server = serve(folder)
    driver = browser
    driver.delete_all_cookies()

    # ---- alice logs in with her link and grades the binary round with the keyboard
    _open(driver, f"{server.url}/login/{tokens['alice']}")
    assert driver.find_element(By.ID, "grader").text == "alice"
    driver.find_element(By.ID, "round-2").click()
    _ready(driver, 2, 0)
    _press(driver, "y")
    _ready(driver, 2, 1)
    _press(driver, "n")
    _ready(driver, 2, 2)
    _press(driver, "f", "y")  # off-centre, then yes
    _ready(driver, 2, 3)
    _press(driver, "e", "n")  # overdensity vote, then no
    _ready(driver, 2, 4)
    _press(driver, "x")  # linear scaling
    _wait(driver, lambda d: d.find_element(By.ID, "img-stamp10").get_attribute("src").endswith("stamp10_linear.png"))
    assert "chosen" in driver.find_element(By.ID, "scaling-linear").get_attribute("class")
    assert driver.find_elements(By.ID, "overlay") and driver.find_elements(By.ID, "flag-model")
    _press(driver, "m", "y")  # m: the model's centre or theta_E is wrong
    _ready(driver, 2, 5)
    _press(driver, Keys.ARROW_LEFT)  # back: her grade is shown, and she changes it
    _ready(driver, 2, 4)
    assert driver.find_element(By.ID, "own-grade").text == "1"
    _press(driver, "n")
    _ready(driver, 2, 5)
    clicked = {0: (1, 0, 0), 1: (0, 0, 0), 2: (1, 1, 0), 3: (0, 0, 1), 4: (0, 0, 0)}
    stored = _grades(folder, "alice", "bin")
    assert {pos: v[:3] for pos, v in stored.items()} == clicked
    assert [v[4] for pos, v in sorted(stored.items())] == [0, 0, 0, 0, 1]
    # a grade of 7 is refused with a clear message, shown on the page, and nothing is stored
    driver.execute_script("send(7, false)")
    _wait(driver, lambda d: "grade 7 is not allowed" in d.find_element(By.ID, "msg").text)
    assert _grades(folder, "alice", "bin") == stored
    # resuming: the round's link leads to the first candidate she has not graded
    _open(driver, f"{server.url}/round/2/")
    _ready(driver, 2, 5)

    # ---- the calibration round (grades 0-3): all 3, then her agreement with the truth is shown
    _open(driver, f"{server.url}/round/1/")
    _ready(driver, 1, 0)
    for pos in range(6):
        _ready(driver, 1, pos)
        _press(driver, "3")
    _wait(driver, lambda d: d.current_url.rstrip("/") == server.url)
    agreement = driver.find_element(By.ID, "agreement").text
    assert "on 3 of 6 calibration systems" in agreement and "found 3 of 3 lenses" in agreement

    # ---- bob, a second grader, cannot see alice's grades
    driver.delete_all_cookies()
    _open(driver, f"{server.url}/round/2/0")
    assert "not logged in" in driver.find_element(By.ID, "error").text
    _open(driver, f"{server.url}/login/{tokens['bob']}")
    assert driver.find_element(By.ID, "grader").text == "bob"
    with store.opened(folder) as conn:
        bob_positions = {r["name"]: r["position"] for r in conn.execute(
            """SELECT c.name, a.position FROM assignments a JOIN candidates c ON c.id = a.candidate_id
               JOIN graders g ON g.id = a.grader_id WHERE g.name = 'bob' AND a.round_id = 2""")}
    for pos, (_, _, _, name, _) in stored.items():  # every candidate alice graded is in bob's list too
        _open(driver, f"{server.url}/round/2/{bob_positions[name]}")
        _ready(driver, 2, bob_positions[name])
        assert driver.find_element(By.ID, "cand-name").text == name
        assert driver.find_element(By.ID, "own-grade").text == "-"
    _open(driver, f"{server.url}/api/round/2")
    assert '"grades":[]' in driver.find_element(By.TAG_NAME, "body").text.replace(" ", "")
    first = bob_positions[stored[0][3]]
    _open(driver, f"{server.url}/round/2/{first}")
    _ready(driver, 2, first)
    _press(driver, "n")
    _ready(driver, 2, first + 1)
    assert {pos: v[:3] for pos, v in _grades(folder, "alice", "bin").items()} == clicked  # untouched

    # ---- the organiser's export matches what was clicked
    driver.delete_all_cookies()
    _open(driver, f"{server.url}/login/{tokens['organiser']}")
    aggregates = {line.split()[0]: line for line in driver.find_element(By.ID, "aggregates").text.splitlines()[1:]}
    assert set(aggregates) >= {v[3] for v in stored.values()}
    assert "1 / 2" in aggregates[stored[0][3]]  # alice yes, bob no
    progress = driver.find_element(By.ID, "progress").text
    assert "bin binary alice 5 / 12" in progress and "bin binary bob 1 / 12" in progress
    text = driver.execute_async_script(
        "const done = arguments[0]; fetch('/admin/export.ecsv').then(r => r.text()).then(done);")
    table = Table.read(text, format="ascii.ecsv")
    rows = {str(r["id"]): r for r in table}
    for pos, (grade, off, dense, name, model_bad) in stored.items():
        assert rows[name]["binary_alice"] == grade
        assert rows[name]["off_center_votes"] == off and rows[name]["overdensity_votes"] == dense
        assert rows[name]["model_bad_votes"] == model_bad
    assert rows[stored[0][3]]["binary_bob"] == 0
    graded_by_alice = {v[3] for v in stored.values()}
    not_graded = [i for i, r in enumerate(table) if str(r["id"]) not in graded_by_alice]
    assert table["binary_alice"].mask[not_graded].all()  # masked where she gave no vote
    calibration = table[table["calibration"]]
    assert list(calibration["grade_alice"]) == [3] * 6
    assert table.meta["calibration_agreement"]["alice"]["correct"] == 3
