"""The inspection's database: one SQLite file (WAL journal) in the inspection folder, ``inspection.sqlite``.

An *inspection folder* holds the database and ``cache/`` (the rendered stamps). The database keeps the candidates
(copied from the search's ``candidates.ecsv`` at ``init``, plus the calibration systems of known class), the
graders (a personal token each, stored as its SHA-256 only), the rounds (``calibration``, ``binary``,
``multiclass``, ``second_team``), the assignments (one row per round, grader and candidate, with the grader's
order) and the grades (at most one per round, grader and candidate: a ``UNIQUE`` constraint, re-grading replaces),
each with the grader's flags: lens off-centre, overdense environment, the modeling network's centre or Einstein
radius mis-predicted (HOLISMOKES XVI Sect. 4.2).

Every function opens its own connection (:func:`connect`), so the threads of the web server never share one; writes
take the database's write lock at once (``BEGIN IMMEDIATE``) and wait up to 30 s for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from lenssearch.errors import InputFileError, LensSearchError
from lenssearch.inspect import grading

DB_NAME = "inspection.sqlite"
CACHE_DIR = "cache"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    ra REAL NOT NULL,
    dec REAL NOT NULL,
    score REAL,
    calibration INTEGER NOT NULL DEFAULT 0,
    truth INTEGER,
    origin TEXT NOT NULL DEFAULT 'search',
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS graders (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_sha256 TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL DEFAULT 'grader' CHECK (role IN ('grader', 'organiser'))
);
CREATE TABLE IF NOT EXISTS rounds (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('calibration', 'binary', 'multiclass', 'second_team')),
    from_round INTEGER REFERENCES rounds(id),
    seed INTEGER,
    per_candidate INTEGER
);
CREATE TABLE IF NOT EXISTS assignments (
    id INTEGER PRIMARY KEY,
    round_id INTEGER NOT NULL REFERENCES rounds(id),
    grader_id INTEGER NOT NULL REFERENCES graders(id),
    candidate_id INTEGER NOT NULL REFERENCES candidates(id),
    position INTEGER NOT NULL,
    UNIQUE (round_id, grader_id, candidate_id),
    UNIQUE (round_id, grader_id, position)
);
CREATE TABLE IF NOT EXISTS grades (
    id INTEGER PRIMARY KEY,
    round_id INTEGER NOT NULL REFERENCES rounds(id),
    grader_id INTEGER NOT NULL REFERENCES graders(id),
    candidate_id INTEGER NOT NULL REFERENCES candidates(id),
    grade INTEGER NOT NULL CHECK (grade BETWEEN 0 AND 3),
    off_center INTEGER NOT NULL DEFAULT 0 CHECK (off_center IN (0, 1)),
    overdensity INTEGER NOT NULL DEFAULT 0 CHECK (overdensity IN (0, 1)),
    model_bad INTEGER NOT NULL DEFAULT 0 CHECK (model_bad IN (0, 1)),
    seconds REAL,
    updated REAL NOT NULL,
    UNIQUE (round_id, grader_id, candidate_id)
);
CREATE INDEX IF NOT EXISTS grades_candidate ON grades (candidate_id);
CREATE INDEX IF NOT EXISTS assignments_candidate ON assignments (round_id, candidate_id);
"""

#: Optional columns of the candidates that are kept (the modeling network's overlay, member scores, truth).
MODEL_COLUMNS = ("model_ra", "model_dec", "model_theta_e_arcsec", "model_theta_e_sigma_arcsec")


# ---------------------------------------------------------------------------------------------- connections
def db_path(folder: str | Path) -> Path:
    return Path(folder) / DB_NAME


def connect(folder: str | Path) -> sqlite3.Connection:
    """A connection to an existing inspection's database (autocommit; WAL; foreign keys; 30 s busy wait)."""
    path = db_path(folder)
    if not path.is_file():
        raise InputFileError(f"{folder}: not an inspection folder (no {DB_NAME}; create it with 'lenssearch inspect init')")
    return _open(path)


def _open(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that holds the write lock from its start (no deadlock between two upgrading readers)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextlib.contextmanager
def opened(folder: str | Path) -> Iterator[sqlite3.Connection]:
    conn = connect(folder)
    try:
        yield conn
    finally:
        conn.close()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def get_meta(conn: sqlite3.Connection, key: str, default=None):
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return json.loads(row["value"]) if row else default


def set_meta(conn: sqlite3.Connection, key: str, value) -> None:
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))


# ---------------------------------------------------------------------------------------------- init
def _read_table(path: Path):
    from astropy.table import Table

    if not path.is_file():
        raise InputFileError(f"{path}: no such catalogue")
    try:
        return Table.read(path, format="ascii.ecsv") if path.suffix == ".ecsv" else Table.read(path)
    except Exception as exc:  # astropy raises many kinds for a malformed file
        raise InputFileError(f"{path}: not a readable catalogue ({type(exc).__name__}: {exc})") from None


def _column(table, names: Sequence[str], path: Path, what: str):
    lower = {c.lower(): c for c in table.colnames}
    for name in names:
        if name in lower:
            return lower[name]
    raise InputFileError(f"{path}: no {what} column (expected one of {', '.join(names)}; has {', '.join(table.colnames)})")


def _field_bands(field_dir: Path, table_meta: dict) -> list[str]:
    bands = list(table_meta.get("bands") or [])
    info = field_dir / "field.json"
    if not bands and info.is_file():
        bands = list(json.loads(info.read_text()).get("bands") or [])
    if not bands:
        bands = sorted(p.name[len("image_"):-len(".fits")] for p in field_dir.glob("image_*.fits"))
    missing = [b for b in bands if not (field_dir / f"image_{b}.fits").is_file()]
    if not bands or missing:
        raise InputFileError(
            f"{field_dir}: no band image image_<BAND>.fits for {', '.join(missing) or 'any band'} (a search field directory)"
        )
    return bands


def init_inspection(folder: str | Path, candidates: str | Path, field: str | Path, only_kept: bool = True,
                    title: str | None = None) -> str:
    """Create the inspection folder from a search's ``candidates.ecsv`` and its field; returns the organiser's token.

    Only candidates with ``kept`` true are copied unless ``only_kept`` is False. The field's band images are
    checked (celestial WCS, aligned grids) and their pixel noise is measured once for the stamps' scaling.
    """
    from lenssearch.search.inputs import FieldImages

    folder, candidates, field = Path(folder), Path(candidates), Path(field)
    if db_path(folder).exists():
        raise LensSearchError(f"{folder}: already an inspection folder ({DB_NAME} exists)")
    table = _read_table(candidates)
    ra, dec = _column(table, ("ra",), candidates, "ra"), _column(table, ("dec",), candidates, "dec")
    ident = _column(table, ("id", "name"), candidates, "id")
    if only_kept and "kept" in table.colnames:
        table = table[np.asarray(table["kept"], dtype=bool)]
    if len(table) == 0:
        raise InputFileError(f"{candidates}: no candidates to inspect" + (" (none kept)" if only_kept else ""))
    if not field.is_dir():
        raise InputFileError(f"{field}: no such field directory")
    bands = _field_bands(field, dict(table.meta))
    with FieldImages.from_field_dir(field, bands) as images:
        noise = [float(v) for v in images.noise_sigma]
        pixel = images.pixel_scale_arcsec
    extra_cols = [c for c in table.colnames if c in MODEL_COLUMNS or c.startswith("score_") or c in ("is_lens", "class")]
    rows = []
    for i, row in enumerate(table):
        extra = {c: _plain(row[c]) for c in extra_cols}
        score = float(row["score"]) if "score" in table.colnames else None
        rows.append((str(row[ident]), *_position(row, ra, dec, candidates, i), score, json.dumps(extra)))
    _unique([r[0] for r in rows], candidates)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CACHE_DIR).mkdir(exist_ok=True)
    organiser = secrets.token_urlsafe(24)
    tmp = folder / f".{DB_NAME}.tmp"
    tmp.unlink(missing_ok=True)
    conn = _open(tmp)
    try:
        conn.executescript(SCHEMA)
        with transaction(conn):
            for key, value in {
                "field_dir": str(field.resolve()), "candidates_path": str(candidates.resolve()), "bands": bands,
                "noise_sigma": noise, "pixel_scale_arcsec": pixel, "title": title or f"inspection of {candidates}",
                "secret_key": secrets.token_hex(32), "created": time.time(),
            }.items():
                set_meta(conn, key, value)
            conn.executemany("INSERT INTO candidates (name, ra, dec, score, extra) VALUES (?, ?, ?, ?, ?)", rows)
            conn.execute("INSERT INTO graders (name, token_sha256, role) VALUES ('organiser', ?, 'organiser')",
                         (token_hash(organiser),))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    for suffix in ("-wal", "-shm"):
        Path(str(tmp) + suffix).unlink(missing_ok=True)
    tmp.rename(db_path(folder))
    return organiser


def _position(row, ra: str, dec: str, path: Path, i: int) -> tuple[float, float]:
    try:
        position = float(row[ra]), float(row[dec])
    except (TypeError, ValueError):
        position = (float("nan"),) * 2
    if not (np.isfinite(position[0]) and np.isfinite(position[1]) and -90 <= position[1] <= 90):
        raise InputFileError(f"{path}: row {i}: ra/dec ({row[ra]}, {row[dec]}) is not a sky position in degrees")
    return position


def _unique(names: Sequence[str], path: Path) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InputFileError(f"{path}: id '{name}' appears more than once; the ids must be unique")
        seen.add(name)


def _plain(value):
    if value is np.ma.masked:
        return None
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    return str(value)


# ---------------------------------------------------------------------------------------------- organiser actions
def add_grader(folder: str | Path, name: str) -> str:
    """Add a grader; returns their personal token (only its hash is stored: keep the link)."""
    name = name.strip()
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise LensSearchError(f"grader name '{name}' must be letters, digits, '-' or '_'")
    token = secrets.token_urlsafe(24)
    with opened(folder) as conn, transaction(conn):
        if conn.execute("SELECT 1 FROM graders WHERE name = ?", (name,)).fetchone():
            raise LensSearchError(f"grader '{name}' exists already")
        conn.execute("INSERT INTO graders (name, token_sha256) VALUES (?, ?)", (name, token_hash(token)))
    return token


def new_link(folder: str | Path, name: str) -> str:
    """A new personal token for a grader (or ``organiser``); the old link stops working. Returns the token."""
    token = secrets.token_urlsafe(24)
    with opened(folder) as conn, transaction(conn):
        found = conn.execute("UPDATE graders SET token_sha256 = ? WHERE name = ?", (token_hash(token), name))
        if found.rowcount != 1:
            raise LensSearchError(f"no grader '{name}'")
    return token


def add_calibration_systems(folder: str | Path, truth: str | Path, origin: str | None = None) -> int:
    """Add systems of known class for the calibration round from an ECSV/FITS table; returns how many.

    The table needs ``ra``, ``dec`` and ``is_lens`` (1/0) or ``label`` (``secure``/``uncertain``/``1`` lens;
    ``no``/``0`` non-lens); ``id`` or ``name`` optional; ``origin`` per row (``known``, ``planted``, ``non-lens``)
    or the ``origin`` argument for all rows.
    """
    truth = Path(truth)
    table = _read_table(truth)
    ra, dec = _column(table, ("ra",), truth, "ra"), _column(table, ("dec",), truth, "dec")
    lower = {c.lower(): c for c in table.colnames}
    if "is_lens" in lower:
        is_lens = [int(v) for v in table[lower["is_lens"]]]
    elif "label" in lower:
        mapping = {"secure": 1, "uncertain": 1, "1": 1, "true": 1, "no": 0, "0": 0, "false": 0}
        is_lens = []
        for i, v in enumerate(table[lower["label"]]):
            key = str(v).strip().lower()
            if key not in mapping:
                raise InputFileError(f"{truth}: row {i}: label '{v}' is not secure, uncertain, no, 1 or 0")
            is_lens.append(mapping[key])
    else:
        raise InputFileError(f"{truth}: no is_lens or label column for the calibration systems' truth")
    if any(v not in (0, 1) for v in is_lens):
        raise InputFileError(f"{truth}: is_lens must be 0 or 1")
    ident = lower.get("id") or lower.get("name")
    rows = []
    for i, row in enumerate(table):
        name = f"cal-{row[ident]}" if ident else f"cal-{truth.stem}-{i:04d}"
        row_origin = str(row[lower["origin"]]) if "origin" in lower else (origin or ("known" if is_lens[i] else "non-lens"))
        rows.append((name, *_position(row, ra, dec, truth, i), is_lens[i], row_origin))
    _unique([r[0] for r in rows], truth)
    with opened(folder) as conn, transaction(conn):
        for name, *_ in rows:
            if conn.execute("SELECT 1 FROM candidates WHERE name = ?", (name,)).fetchone():
                raise LensSearchError(f"{truth}: calibration system '{name}' is already in the inspection")
        conn.executemany(
            "INSERT INTO candidates (name, ra, dec, calibration, truth, origin) VALUES (?, ?, ?, 1, ?, ?)", rows
        )
    return len(rows)


def add_round(folder: str | Path, name: str, kind: str, from_round: str | None = None) -> int:
    """Add a round; returns its id. ``from_round`` names the round whose outcome selects the candidates."""
    grading.scale_of(kind)
    with opened(folder) as conn, transaction(conn):
        if conn.execute("SELECT 1 FROM rounds WHERE name = ?", (name,)).fetchone():
            raise LensSearchError(f"round '{name}' exists already")
        source = None
        if from_round is not None:
            found = conn.execute("SELECT id, kind FROM rounds WHERE name = ?", (from_round,)).fetchone()
            if found is None:
                raise LensSearchError(f"--from-round: no round named '{from_round}'")
            if found["kind"] not in ("binary", "multiclass"):
                raise LensSearchError(f"--from-round: round '{from_round}' is a {found['kind']} round; "
                                      "candidates are forwarded from a binary or multiclass round")
            source = found["id"]
        if kind == "calibration" and source is not None:
            raise LensSearchError("a calibration round shows the calibration systems; it takes no --from-round")
        cur = conn.execute("INSERT INTO rounds (name, kind, from_round) VALUES (?, ?, ?)", (name, kind, source))
        return int(cur.lastrowid)


def round_row(conn: sqlite3.Connection, name_or_id) -> sqlite3.Row:
    if isinstance(name_or_id, int):
        row = conn.execute("SELECT * FROM rounds WHERE id = ?", (name_or_id,)).fetchone()
    else:
        row = conn.execute("SELECT * FROM rounds WHERE name = ?", (str(name_or_id),)).fetchone()
    if row is None:
        raise LensSearchError(f"no round '{name_or_id}'")
    return row


def forwarded_candidates(conn: sqlite3.Connection, round_id: int) -> list[int]:
    """Candidates forwarded by a round: one 'yes' in a binary round; G > 1 or std > 0.75 in a multiclass round."""
    kind = round_row(conn, round_id)["kind"]
    per: dict[int, list[int]] = {}
    for r in conn.execute("SELECT candidate_id, grade FROM grades WHERE round_id = ?", (round_id,)):
        per.setdefault(r["candidate_id"], []).append(r["grade"])
    if kind == "binary":
        keep = [c for c, v in per.items() if grading.binary_forwarded(v)]
    else:
        keep = [c for c, v in per.items() if grading.forwarded(*grading.mean_and_std(v))]
    return sorted(keep)


def balanced_assignment(candidates: Sequence[int], graders: Sequence[int], per_candidate: int,
                        rng: np.random.Generator) -> dict[int, list[int]]:
    """Give each candidate ``per_candidate`` distinct graders so that loads differ by at most one.

    Candidates are taken in a random order; each goes to the least-loaded graders (ties broken at random). Each
    grader's list is then shuffled, so that no two graders see the candidates in the same order.
    """
    if per_candidate < 1 or per_candidate > len(graders):
        raise LensSearchError(f"{per_candidate} graders per candidate, but the round has {len(graders)} graders")
    loads = np.zeros(len(graders), dtype=int)
    out: dict[int, list[int]] = {g: [] for g in graders}
    for c in rng.permutation(np.asarray(candidates, dtype=np.int64)):
        tiebreak = rng.random(len(graders))
        chosen = np.lexsort((tiebreak, loads))[:per_candidate]
        for k in chosen:
            out[graders[k]].append(int(c))
        loads[chosen] += 1
    for g in graders:
        out[g] = [int(c) for c in rng.permutation(np.asarray(out[g], dtype=np.int64))]
    return out


def assign(folder: str | Path, round_name: str, per_candidate: int | None, seed: int,
           graders: Sequence[str] | None = None) -> dict[str, int]:
    """Assign a round's candidates to graders (balanced, seeded); returns the number per grader.

    The candidates: the calibration systems for a calibration round (every grader sees every one); else the
    search's candidates, or those forwarded by the round's ``from_round``. A second team round defaults to the
    graders who did not grade its ``from_round``.
    """
    with opened(folder) as conn, transaction(conn):
        rnd = round_row(conn, round_name)
        if conn.execute("SELECT 1 FROM assignments WHERE round_id = ? LIMIT 1", (rnd["id"],)).fetchone():
            raise LensSearchError(f"round '{round_name}' is assigned already")
        all_graders = {r["name"]: r["id"] for r in conn.execute("SELECT id, name FROM graders WHERE role = 'grader'")}
        if graders:
            unknown = [g for g in graders if g not in all_graders]
            if unknown:
                raise LensSearchError(f"unknown graders {', '.join(unknown)} (known: {', '.join(sorted(all_graders))})")
            chosen = [all_graders[g] for g in graders]
        else:
            chosen = sorted(all_graders.values())
            if rnd["kind"] == "second_team" and rnd["from_round"] is not None:
                first = {r[0] for r in conn.execute("SELECT DISTINCT grader_id FROM assignments WHERE round_id = ?",
                                                    (rnd["from_round"],))}
                chosen = [g for g in chosen if g not in first] or chosen
        if not chosen:
            raise LensSearchError("no graders: add some with 'lenssearch inspect add-grader'")
        if rnd["kind"] == "calibration":
            pool = [r[0] for r in conn.execute("SELECT id FROM candidates WHERE calibration = 1 ORDER BY id")]
            if not pool:
                raise LensSearchError("no calibration systems: add them with 'lenssearch inspect add-calibration'")
            per_candidate = len(chosen) if per_candidate is None else per_candidate
        elif rnd["from_round"] is not None:
            pool = forwarded_candidates(conn, rnd["from_round"])
        else:
            pool = [r[0] for r in conn.execute("SELECT id FROM candidates WHERE calibration = 0 ORDER BY id")]
        if not pool:
            raise LensSearchError(f"round '{round_name}': no candidates to assign")
        if per_candidate is None:
            per_candidate = {"binary": 2, "multiclass": 4, "second_team": 4}[rnd["kind"]]
            per_candidate = min(per_candidate, len(chosen))
        lists = balanced_assignment(pool, chosen, per_candidate, np.random.default_rng(seed))
        conn.executemany(
            "INSERT INTO assignments (round_id, grader_id, candidate_id, position) VALUES (?, ?, ?, ?)",
            [(rnd["id"], g, c, pos) for g, cands in lists.items() for pos, c in enumerate(cands)],
        )
        conn.execute("UPDATE rounds SET seed = ?, per_candidate = ? WHERE id = ?", (seed, per_candidate, rnd["id"]))
        names = {v: k for k, v in all_graders.items()}
        return {names[g]: len(c) for g, c in lists.items()}


# ---------------------------------------------------------------------------------------------- grader actions
def grader_by_token(conn: sqlite3.Connection, token: str) -> sqlite3.Row | None:
    if not token or len(token) > 200:
        return None
    return conn.execute("SELECT * FROM graders WHERE token_sha256 = ?", (token_hash(token),)).fetchone()


def assignment_at(conn: sqlite3.Connection, round_id: int, grader_id: int, position: int) -> sqlite3.Row | None:
    """The grader's assignment at ``position`` in a round, with the candidate and the grader's own grade."""
    return conn.execute(
        """SELECT a.id AS assignment_id, a.position, a.candidate_id, c.name, c.ra, c.dec, c.score, c.extra,
                  c.calibration, g.grade, g.off_center, g.overdensity, g.model_bad
           FROM assignments a JOIN candidates c ON c.id = a.candidate_id
           LEFT JOIN grades g ON g.round_id = a.round_id AND g.grader_id = a.grader_id AND g.candidate_id = a.candidate_id
           WHERE a.round_id = ? AND a.grader_id = ? AND a.position = ?""",
        (round_id, grader_id, position),
    ).fetchone()


def record_grade(conn: sqlite3.Connection, round_id: int, grader_id: int, position: int, grade,
                 off_center: bool = False, overdensity: bool = False, seconds: float | None = None,
                 model_bad: bool = False) -> int:
    """Store (or replace) the grader's grade of their assignment at ``position``; returns the candidate id.

    Raises
    ------
    LensSearchError
        No such round or assignment of this grader, or a grade the round's scale does not allow.
    """
    rnd = conn.execute("SELECT kind FROM rounds WHERE id = ?", (round_id,)).fetchone()
    if rnd is None:
        raise LensSearchError(f"no round {round_id}")
    value = grading.check_grade(grade, rnd["kind"])
    with transaction(conn):
        found = conn.execute(
            "SELECT candidate_id FROM assignments WHERE round_id = ? AND grader_id = ? AND position = ?",
            (round_id, grader_id, position),
        ).fetchone()
        if found is None:
            raise LensSearchError(f"no assignment at position {position} of round {round_id} for this grader")
        conn.execute(
            """INSERT INTO grades (round_id, grader_id, candidate_id, grade, off_center, overdensity, model_bad,
                                   seconds, updated)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (round_id, grader_id, candidate_id) DO UPDATE SET grade = excluded.grade,
                 off_center = excluded.off_center, overdensity = excluded.overdensity, model_bad = excluded.model_bad,
                 seconds = excluded.seconds, updated = excluded.updated""",
            (round_id, grader_id, found["candidate_id"], value, int(bool(off_center)), int(bool(overdensity)),
             int(bool(model_bad)),
             seconds, time.time()),
        )
    return int(found["candidate_id"])


def grader_rounds(conn: sqlite3.Connection, grader_id: int) -> list[dict]:
    """The rounds a grader has assignments in, with their progress (graded / assigned) and first ungraded position."""
    out = []
    for r in conn.execute(
        """SELECT r.id, r.name, r.kind, COUNT(a.id) AS n, COUNT(g.id) AS done,
                  MIN(CASE WHEN g.id IS NULL THEN a.position END) AS next_position
           FROM rounds r JOIN assignments a ON a.round_id = r.id AND a.grader_id = ?
           LEFT JOIN grades g ON g.round_id = r.id AND g.grader_id = a.grader_id AND g.candidate_id = a.candidate_id
           GROUP BY r.id ORDER BY r.id""",
        (grader_id,),
    ):
        out.append(dict(r))
    return out


def calibration_agreement(conn: sqlite3.Connection, grader_id: int | None = None) -> dict[str, dict]:
    """Per grader, the agreement of their calibration grades with the truth: n graded, n correct, fraction."""
    sql = """SELECT gr.name AS grader, g.grade, c.truth, r.kind FROM grades g JOIN rounds r ON r.id = g.round_id
             JOIN candidates c ON c.id = g.candidate_id JOIN graders gr ON gr.id = g.grader_id
             WHERE r.kind = 'calibration' AND c.truth IS NOT NULL"""
    args: tuple = ()
    if grader_id is not None:
        sql += " AND g.grader_id = ?"
        args = (grader_id,)
    out: dict[str, dict] = {}
    for r in conn.execute(sql, args):
        d = out.setdefault(r["grader"], {"n": 0, "correct": 0, "lenses_found": 0, "lenses": 0})
        ok = grading.calibration_correct(r["grade"], grading.scale_of(r["kind"]), r["truth"])
        d["n"] += 1
        d["correct"] += int(ok)
        if r["truth"]:
            d["lenses"] += 1
            d["lenses_found"] += int(ok)
    for d in out.values():
        d["fraction"] = d["correct"] / d["n"] if d["n"] else float("nan")
    return out


def own_grades(conn: sqlite3.Connection, round_id: int, grader_id: int) -> list[dict]:
    """A grader's own grades in a round (never another grader's)."""
    return [dict(r) for r in conn.execute(
        """SELECT a.position, c.name AS candidate, g.grade, g.off_center, g.overdensity, g.model_bad
           FROM grades g JOIN assignments a ON a.round_id = g.round_id AND a.grader_id = g.grader_id
                AND a.candidate_id = g.candidate_id JOIN candidates c ON c.id = g.candidate_id
           WHERE g.round_id = ? AND g.grader_id = ? ORDER BY a.position""",
        (round_id, grader_id),
    )]


def grader_can_see(conn: sqlite3.Connection, grader_id: int, candidate_id: int) -> bool:
    return conn.execute("SELECT 1 FROM assignments WHERE grader_id = ? AND candidate_id = ? LIMIT 1",
                        (grader_id, candidate_id)).fetchone() is not None
