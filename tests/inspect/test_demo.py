"""The demo inspection's calibration systems from a search field: planted lenses and members away from them."""

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table

from lenssearch.inspect import demo, store


def test_demo_calibration_mixes_planted_lenses_and_non_lenses(tmp_path, inputs):
    links = demo.setup_demo(tmp_path / "demo", inputs["candidates"], inputs["field"])  # no calibration table given
    assert list(links) == ["organiser", "alice", "bob"] and all(v.startswith("/login/") for v in links.values())
    with store.opened(tmp_path / "demo") as conn:
        cal = [dict(r) for r in conn.execute("SELECT name, ra, dec, truth, origin FROM candidates WHERE calibration = 1")]
        rounds = {r["name"]: r["kind"] for r in conn.execute("SELECT name, kind FROM rounds")}
        per_grader = conn.execute("SELECT grader_id, COUNT(*) FROM assignments WHERE round_id = 1 GROUP BY grader_id").fetchall()
    planted = Table.read(inputs["field"] / "planted.ecsv")
    lenses = [c for c in cal if c["truth"] == 1]
    others = [c for c in cal if c["truth"] == 0]
    assert len(lenses) == len(planted) == len(others)
    assert {c["origin"] for c in lenses} == {"planted"} and {c["origin"] for c in others} == {"non-lens"}
    candidates = Table.read(inputs["candidates"])
    avoid = SkyCoord(np.r_[planted["ra"], candidates["ra"]], np.r_[planted["dec"], candidates["dec"]], unit="deg")
    far = SkyCoord([c["ra"] for c in others], [c["dec"] for c in others], unit="deg")
    assert far.match_to_catalog_sky(avoid)[1].arcsec.min() > 5.0
    assert rounds == {"calibration": "calibration", "binary": "binary"}
    assert [r[1] for r in per_grader] == [len(cal), len(cal)]  # every grader sees every calibration system
