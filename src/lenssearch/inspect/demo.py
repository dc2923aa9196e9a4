"""The demo inspection: the demo search's candidates (or the synthetic ones) with two demo graders.

:func:`setup_demo` creates ``<out>/`` once: the inspection of the candidates, graders ``alice`` and ``bob``, the
calibration systems (the field's ``planted.ecsv`` as planted mocks, as many field members away from them and
from the candidates as non-lenses, unless a calibration table is given), a calibration round and a binary round
(two graders per candidate), assigned. The personal links are written to ``<out>/links.txt`` (readable by the
owner only): the database keeps only the tokens' hashes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lenssearch.errors import InputFileError
from lenssearch.inspect import store

DEMO_GRADERS = ("alice", "bob")
LINKS = "links.txt"


def demo_calibration(field: Path, candidates: Path, out: Path, n_max: int = 10, seed: int = 0) -> Path:
    """Calibration systems of the demo: planted lenses and members at least 5" from them and the candidates."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astropy.table import Table, vstack

    planted_path, members_path = field / "planted.ecsv", field / "members.ecsv"
    if not planted_path.is_file() or not members_path.is_file():
        raise InputFileError(f"{field}: the demo's calibration needs planted.ecsv and members.ecsv "
                             "(or give --calibration)")
    rng = np.random.default_rng(seed)
    planted = Table.read(planted_path, format="ascii.ecsv")
    planted = planted[rng.permutation(len(planted))[:n_max]]
    members = Table.read(members_path, format="ascii.ecsv")
    cands = Table.read(candidates, format="ascii.ecsv")
    avoid = SkyCoord(np.concatenate([np.asarray(planted["ra"], float), np.asarray(cands["ra"], float)]) * u.deg,
                     np.concatenate([np.asarray(planted["dec"], float), np.asarray(cands["dec"], float)]) * u.deg)
    mem = SkyCoord(np.asarray(members["ra"], float) * u.deg, np.asarray(members["dec"], float) * u.deg)
    far = mem.match_to_catalog_sky(avoid)[1].arcsec > 5.0
    pool = np.flatnonzero(far)
    chosen = pool[rng.permutation(len(pool))[: len(planted)]]
    lenses = Table({"id": [str(v) for v in planted["id"]], "ra": np.asarray(planted["ra"], float),
                    "dec": np.asarray(planted["dec"], float), "is_lens": np.ones(len(planted), int),
                    "origin": ["planted"] * len(planted)})
    ident = "member_id" if "member_id" in members.colnames else members.colnames[0]
    non = Table({"id": [str(v) for v in members[ident][chosen]], "ra": np.asarray(members["ra"][chosen], float),
                 "dec": np.asarray(members["dec"][chosen], float), "is_lens": np.zeros(len(chosen), int),
                 "origin": ["non-lens"] * len(chosen)})
    table = vstack([lenses, non])
    path = out / "calibration.ecsv"
    table.write(path, format="ascii.ecsv", overwrite=True)
    return path


def setup_demo(out: str | Path, candidates: str | Path, field: str | Path, calibration: str | Path | None = None,
               seed: int = 0) -> dict[str, str]:
    """Create the demo inspection in ``out`` unless it exists; returns the links (name -> path ``/login/...``)."""
    out = Path(out)
    links_path = out / LINKS
    if store.db_path(out).exists():
        if not links_path.is_file():
            raise InputFileError(f"{out}: an inspection without {LINKS}; serve it with 'lenssearch inspect serve'")
        return dict(line.split(" ", 1) for line in links_path.read_text().split("\n") if line)
    links = {"organiser": store.init_inspection(out, candidates, field, title="lenssearch demo inspection")}
    for name in DEMO_GRADERS:
        links[name] = store.add_grader(out, name)
    cal = Path(calibration) if calibration else demo_calibration(Path(field), Path(candidates), out, seed=seed)
    store.add_calibration_systems(out, cal)
    store.add_round(out, "calibration", "calibration")
    store.add_round(out, "binary", "binary")
    store.assign(out, "calibration", None, seed)
    store.assign(out, "binary", 2, seed)
    links = {k: f"/login/{v}" for k, v in links.items()}
    fd = os.open(links_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("".join(f"{k} {v}\n" for k, v in links.items()))
    return links
