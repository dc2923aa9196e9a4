"""The inspection web app (Flask), served on 127.0.0.1 by werkzeug's threaded WSGI server.

Routes
------
- ``GET /login/<token>``: a grader's (or the organiser's) personal link; starts a signed session (cookie,
  HttpOnly, SameSite=Lax) holding the grader's id and a CSRF token, then redirects to ``/``.
- ``GET /``: the grader's rounds with their progress and a link that resumes at the first ungraded candidate;
  after a complete calibration round, the grader's own agreement with the truth.
- ``GET /round/<round>/<position>``: the page of one candidate of the grader's own list (keyboard: 0-3 grades,
  y/n, f off-centre, e overdensity, m model mis-predicted, z/x/c scalings, left/right back and next).
- ``GET /api/round/<round>``: the grader's own progress and grades (JSON). ``POST /api/grade``: store a grade
  (JSON ``{round, position, grade, off_center, overdensity, model_bad}``; header ``X-CSRF-Token``).
- ``GET /img/<candidate>/<kind>.png``: a cached stamp, only of a candidate assigned to the grader.
- ``GET /admin``, ``GET /admin/export.ecsv``: the organiser's progress, agreement, aggregates and export.
- ``POST /logout``.

A grader reaches only their own assignments: positions are positions in their own list, the grade's candidate
is looked up from (round, grader, position), and no route takes another grader's id. Every state-changing
request (POST) must carry the session's CSRF token (header or form field) and, when the browser sends one, an
``Origin`` of this server. Images are served only from ``<inspection>/cache/`` under names built from the
candidate's integer id and a kind matched against a fixed pattern.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from lenssearch.errors import LensSearchError
from lenssearch.inspect import aggregate, grading, stamps, store

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def create_app(folder: str | Path, prerender_next: bool = True):
    """The Flask app of the inspection in ``folder`` (an existing inspection folder)."""
    from flask import Flask, abort, g, jsonify, redirect, request, send_file, session
    from flask import render_template_string as render

    folder = Path(folder).resolve()
    with store.opened(folder) as conn:
        meta = {k: store.get_meta(conn, k) for k in ("secret_key", "field_dir", "bands", "noise_sigma", "title",
                                                     "pixel_scale_arcsec")}
    renderer = stamps.StampRenderer(folder, Path(meta["field_dir"]), meta["bands"], meta["noise_sigma"])
    background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stamps")

    app = Flask("lenssearch.inspect", static_folder=None)
    app.config.update(
        SECRET_KEY=meta["secret_key"], SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="lenssearch_inspect", MAX_CONTENT_LENGTH=16 * 1024,
    )
    app.extensions["lenssearch_renderer"] = renderer

    # ------------------------------------------------------------------------------------------ plumbing
    def db():
        if "db" not in g:
            g.db = store.connect(folder)
        return g.db

    @app.teardown_appcontext
    def _close(exc):
        conn = g.pop("db", None)
        if conn is not None:
            conn.close()

    def is_api() -> bool:
        return request.path.startswith("/api/")

    def error_response(status: int, message: str):
        if is_api() or request.is_json:
            response = jsonify({"error": message})
        else:
            response = app.response_class(render(PAGE_ERROR, message=message, status=status), mimetype="text/html")
        response.status_code = status
        return response

    def fail(status: int, message: str):
        abort(error_response(status, message))

    def current_user():
        gid = session.get("gid")
        if gid is None:
            fail(401, "not logged in: open your personal link (/login/<token>) first")
        user = db().execute("SELECT id, name, role FROM graders WHERE id = ?", (gid,)).fetchone()
        if user is None:
            session.clear()
            fail(401, "unknown grader: open your personal link again")
        return user

    def grader():
        user = current_user()
        if user["role"] != "grader":
            fail(403, "this page is for graders; the organiser's page is /admin")
        return user

    def organiser():
        user = current_user()
        if user["role"] != "organiser":
            fail(403, "this page is for the organiser")
        return user

    @app.before_request
    def _csrf():
        if request.method in SAFE_METHODS:
            return
        sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token", "")
        expected = session.get("csrf", "")
        if not expected or not hmac.compare_digest(str(sent).encode(), str(expected).encode()):
            fail(403, "missing or wrong CSRF token: reload the page")
        origin = request.headers.get("Origin")
        if origin and origin != request.host_url.rstrip("/"):
            fail(403, f"cross-site request from {origin} refused")

    @app.after_request
    def _headers(response):
        nonce = g.get("nonce")
        script = f"'nonce-{nonce}'" if nonce else "'none'"
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; img-src 'self'; style-src 'self' 'unsafe-inline'; script-src {script}; "
            "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    def nonce() -> str:
        g.nonce = secrets.token_urlsafe(16)
        return g.nonce

    @app.errorhandler(404)
    def _not_found(exc):
        return error_response(404, "not found")

    @app.errorhandler(405)
    def _not_allowed(exc):
        return error_response(405, "method not allowed")

    @app.errorhandler(413)
    def _too_large(exc):
        return error_response(413, "request too large")

    # ------------------------------------------------------------------------------------------ login
    @app.get("/login/<token>")
    def login(token):
        user = store.grader_by_token(db(), token)
        if user is None:
            fail(403, "unknown or revoked link: ask the organiser for yours")
        session.clear()
        session.update({"gid": user["id"], "csrf": secrets.token_urlsafe(24)})
        return redirect("/admin" if user["role"] == "organiser" else "/")

    @app.post("/logout")
    def logout():
        session.clear()
        return render(PAGE_ERROR, message="logged out", status=200)

    # ------------------------------------------------------------------------------------------ grader pages
    @app.get("/")
    def home():
        user = current_user()
        if user["role"] == "organiser":
            return redirect("/admin")
        rounds = store.grader_rounds(db(), user["id"])
        agreement = None
        cal = [r for r in rounds if r["kind"] == "calibration"]
        if cal and all(r["done"] == r["n"] for r in cal):
            agreement = store.calibration_agreement(db(), user["id"]).get(user["name"])
        return render(PAGE_HOME, user=user, rounds=rounds, agreement=agreement, title=meta["title"],
                      csrf=session["csrf"])

    def own_round(round_id: int):
        rnd = db().execute("SELECT * FROM rounds WHERE id = ?", (round_id,)).fetchone()
        if rnd is None:
            fail(404, f"no round {round_id}")
        return rnd

    @app.get("/round/<int:round_id>/")
    def resume(round_id):
        user = grader()
        for r in store.grader_rounds(db(), user["id"]):
            if r["id"] == round_id:
                return redirect(f"/round/{round_id}/{r['next_position'] if r['next_position'] is not None else 0}")
        fail(404, "you have no assignments in this round")

    @app.get("/round/<int:round_id>/<int:position>")
    def candidate_page(round_id, position):
        user = grader()
        rnd = own_round(round_id)
        row = store.assignment_at(db(), round_id, user["id"], position)
        if row is None:
            fail(404, "no such candidate in your list")
        info = next(r for r in store.grader_rounds(db(), user["id"]) if r["id"] == round_id)
        if prerender_next:
            following = store.assignment_at(db(), round_id, user["id"], position + 1)
            if following is not None:
                background.submit(renderer.ensure, following["candidate_id"], following["ra"], following["dec"])
        extra = json.loads(row["extra"] or "{}")
        overlay = model_overlay(extra, row["ra"], row["dec"])
        scale = grading.scale_of(rnd["kind"])
        state = {"round": round_id, "position": position, "n": info["n"], "grade": row["grade"],
                 "off_center": bool(row["off_center"]), "overdensity": bool(row["overdensity"]),
                 "model_bad": bool(row["model_bad"]),
                 "scale": scale, "candidate": row["candidate_id"]}
        return render(PAGE_CANDIDATE, row=row, rnd=rnd, info=info, user=user, state=state, overlay=overlay,
                      scale=scale, grades=grading.SCALES[scale], bands=meta["bands"], scalings=stamps.SCALINGS,
                      scaling_names=stamps.SCALING_NAMES, nonce=nonce(), csrf=session["csrf"],
                      extra={k: v for k, v in extra.items() if k.startswith("score_")}, title=meta["title"])

    @app.get("/api/round/<int:round_id>")
    def api_round(round_id):
        user = grader()
        own_round(round_id)
        info = [r for r in store.grader_rounds(db(), user["id"]) if r["id"] == round_id]
        if not info:
            fail(404, "you have no assignments in this round")
        return jsonify({"grader": user["name"], "progress": info[0],
                        "grades": store.own_grades(db(), round_id, user["id"])})

    @app.post("/api/grade")
    def api_grade():
        user = grader()
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            fail(400, "expected a JSON object {round, position, grade, off_center, overdensity, model_bad}")
        try:
            round_id, position = int(data["round"]), int(data["position"])
        except (KeyError, TypeError, ValueError):
            fail(400, "'round' and 'position' must be integers")
        for flag in ("off_center", "overdensity", "model_bad"):
            if not isinstance(data.get(flag, False), bool):
                fail(400, f"'{flag}' must be true or false")
        seconds = data.get("seconds")
        if seconds is not None and not isinstance(seconds, (int, float)):
            fail(400, "'seconds' must be a number")
        if "grade" not in data:
            fail(400, "no 'grade'")
        try:
            candidate = store.record_grade(db(), round_id, user["id"], position, data["grade"],
                                           data.get("off_center", False), data.get("overdensity", False), seconds,
                                           data.get("model_bad", False))
        except LensSearchError as exc:
            fail(400, str(exc))
        n = db().execute("SELECT COUNT(*) FROM assignments WHERE round_id = ? AND grader_id = ?",
                         (round_id, user["id"])).fetchone()[0]
        following = position + 1 if position + 1 < n else None
        return jsonify({"ok": True, "candidate": candidate, "next": following})

    @app.get("/img/<int:candidate_id>/<kind>.png")
    def image(candidate_id, kind):
        user = current_user()
        if not stamps.valid_kind(kind):
            fail(404, "no such image")
        if user["role"] != "organiser" and not store.grader_can_see(db(), user["id"], candidate_id):
            fail(404, "no such image")
        row = db().execute("SELECT id, name, ra, dec FROM candidates WHERE id = ?", (candidate_id,)).fetchone()
        if row is None:
            fail(404, "no such image")
        if kind.startswith("band") and int(kind[4:]) >= len(meta["bands"]):
            fail(404, "no such image")
        renderer.ensure(row["id"], row["ra"], row["dec"])
        path = renderer.path(row["id"], kind).resolve()
        if folder not in path.parents or not path.is_file():
            fail(404, "no such image")
        response = send_file(path, mimetype="image/png", max_age=3600)
        response.headers["Cache-Control"] = "private, max-age=3600"
        return response

    # ------------------------------------------------------------------------------------------ organiser
    @app.get("/admin")
    def admin():
        organiser()
        conn = db()
        table = aggregate.candidate_table(conn)
        graded = np.flatnonzero((np.asarray(table["n_grades"]) > 0) | (np.asarray(table["n_binary"]) > 0))
        # by mean grade, then by 'yes' votes of the binary round
        order = graded[np.lexsort((-np.asarray(table["binary_yes"])[graded],
                                   -np.nan_to_num(np.asarray(table["G"], float)[graded], nan=-1.0)))].tolist()
        page = max(int(request.args.get("page", 0) or 0), 0)
        shown = order[page * 100:(page + 1) * 100]
        rows = [{"id": table["id"][i], "score": float(table["score"][i]), "G": float(table["G"][i]),
                 "std": float(table["G_std"][i]), "n": int(table["n_grades"][i]), "cls": table["grade_class"][i],
                 "fwd": bool(table["forwarded"][i]), "off": int(table["off_center_votes"][i]),
                 "dense": int(table["overdensity_votes"][i]),
                 "yes": f"{int(table['binary_yes'][i])} / {int(table['n_binary'][i])}"} for i in shown]
        metrics = aggregate.summary_metrics(table)
        return render(PAGE_ADMIN, progress=aggregate.progress(conn), kappas=table.meta["fleiss_kappa"],
                      agreement=table.meta["calibration_agreement"], rows=rows, metrics=metrics, page=page,
                      pages=max((len(order) + 99) // 100, 1), title=meta["title"], csrf=session["csrf"])

    @app.get("/admin/export.ecsv")
    def admin_export():
        organiser()
        import io

        table = aggregate.candidate_table(db())
        buffer = io.StringIO()
        table.write(buffer, format="ascii.ecsv")
        response = app.response_class(buffer.getvalue(), mimetype="text/plain")
        response.headers["Content-Disposition"] = "attachment; filename=inspection.ecsv"
        return response

    return app


def model_overlay(extra: dict, ra: float, dec: float) -> dict | None:
    """The modeling network's lens centre (offset in arcsec, East and North of the stamp centre) and θE ± 1σ."""
    import math

    theta = extra.get("model_theta_e_arcsec")
    if theta is None or not math.isfinite(float(theta)) or float(theta) <= 0:
        return None
    dx = dy = 0.0
    if extra.get("model_ra") is not None and extra.get("model_dec") is not None:
        dx = (float(extra["model_ra"]) - ra) * math.cos(math.radians(dec)) * 3600.0
        dy = (float(extra["model_dec"]) - dec) * 3600.0
    sigma = extra.get("model_theta_e_sigma_arcsec")
    sigma = float(sigma) if sigma is not None and math.isfinite(float(sigma)) else 0.0
    return {"east": dx, "north": dy, "theta_e": float(theta), "sigma": sigma}


def serve(folder: str | Path, port: int = 8765, host: str = "127.0.0.1", ready=None) -> None:
    """Serve the app on ``host:port`` (threaded: one thread per request) until interrupted."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    if host not in ("127.0.0.1", "localhost", "::1"):
        raise LensSearchError(f"--host {host}: the inspection app serves on the loopback interface only (127.0.0.1)")

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args, **kwargs):  # request lines would log the graders' login tokens
            pass

    import socket

    # werkzeug prints its own message and exits when the port is taken: check first, to say it in one line
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise LensSearchError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    app = create_app(folder)
    try:
        server = make_server(host, port, app, threaded=True, request_handler=QuietHandler)
    except (OSError, SystemExit) as exc:
        raise LensSearchError(f"cannot serve on {host}:{port}: {exc}") from None
    # stopping must not wait for the browsers' idle keep-alive connections (socketserver joins every thread)
    server.block_on_close = False
    if ready is not None:
        ready(server.server_port)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        app.extensions["lenssearch_renderer"].close()


# ---------------------------------------------------------------------------------------------- templates
_STYLE = """<style>
body{font-family:sans-serif;background:#111;color:#ddd;margin:12px}a{color:#8cf}
table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #333;text-align:left}
.panel{display:inline-block;vertical-align:top;margin:4px;position:relative}
.panel img{image-rendering:pixelated;display:block;background:#000}
.big{width:400px;height:400px}.mid{width:200px;height:200px}.band{width:160px;height:160px}
svg.overlay{position:absolute;left:0;top:0;pointer-events:none}
.cap{font-size:12px;color:#aaa}.on{background:#2a6;color:#fff}.btn{padding:4px 10px;margin:2px;border:1px solid #555;
background:#222;color:#ddd;cursor:pointer}.chosen{background:#36c;color:#fff}#msg{color:#f66;min-height:1.2em}
kbd{border:1px solid #666;padding:0 4px;border-radius:3px}
</style>"""

PAGE_ERROR = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>{{ status }}</title></head>
<body><h1>{{ status }}</h1><p id="error">{{ message }}</p></body></html>"""

PAGE_HOME = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>{{ title }}</title>""" + _STYLE + """</head>
<body><h1>{{ title }}</h1><p>Grader <b id="grader">{{ user['name'] }}</b></p>
<table><tr><th>round</th><th>kind</th><th>graded</th><th></th></tr>
{% for r in rounds %}<tr><td>{{ r['name'] }}</td><td>{{ r['kind'] }}</td>
<td id="progress-{{ r['id'] }}">{{ r['done'] }} / {{ r['n'] }}</td>
<td><a id="round-{{ r['id'] }}" href="/round/{{ r['id'] }}/">{{ 'resume' if r['done'] < r['n'] else 'review' }}</a></td></tr>
{% else %}<tr><td colspan="4">no assignments yet</td></tr>{% endfor %}</table>
{% if agreement %}<h2>Your calibration</h2><p id="agreement">You agreed with the truth on {{ agreement['correct'] }}
of {{ agreement['n'] }} calibration systems ({{ '%.0f' % (100 * agreement['fraction']) }}%); you found
{{ agreement['lenses_found'] }} of {{ agreement['lenses'] }} lenses (a lens: grade 2 or 3).</p>{% endif %}
<form method="post" action="/logout"><input type="hidden" name="csrf_token" value="{{ csrf }}">
<button class="btn">log out</button></form></body></html>"""

PAGE_CANDIDATE = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>{{ row['name'] }} - {{ title }}</title>
<meta name="csrf-token" content="{{ csrf }}">""" + _STYLE + """</head><body>
<div><a href="/">home</a> | round <b>{{ rnd['name'] }}</b> ({{ rnd['kind'] }}) | candidate
<b id="position">{{ row['position'] + 1 }}</b> of {{ info['n'] }} | graded <b id="done">{{ info['done'] }}</b> |
<b id="cand-name">{{ row['name'] }}</b>{% if row['score'] is not none %} | score <b>{{ '%.3f' % row['score'] }}</b>{% endif %}
{% for k, v in extra.items() %}{% if v is not none %} {{ k }}={{ '%.3f' % v }}{% endif %}{% endfor %}
| RA {{ '%.6f' % row['ra'] }} Dec {{ '%.6f' % row['dec'] }}</div>
<div>
<div class="panel"><img id="img-stamp10" class="big" src="/img/{{ row['candidate_id'] }}/stamp10_lupton.png" alt="10 arcsec stamp">
{% if overlay %}<svg class="overlay" id="overlay" width="400" height="400" viewBox="-5 -5 10 10">
<g transform="translate({{ '%.4f' % -overlay['east'] }},{{ '%.4f' % -overlay['north'] }})">
{% if overlay['sigma'] > 0 %}<circle r="{{ '%.4f' % (overlay['theta_e'] + overlay['sigma']) }}" fill="none" stroke="white" stroke-width="0.03" stroke-dasharray="0.1"/>
{% if overlay['theta_e'] > overlay['sigma'] %}<circle r="{{ '%.4f' % (overlay['theta_e'] - overlay['sigma']) }}" fill="none" stroke="white" stroke-width="0.03" stroke-dasharray="0.1"/>{% endif %}{% endif %}
<circle r="{{ '%.4f' % overlay['theta_e'] }}" fill="none" stroke="lime" stroke-width="0.05"/>
<circle r="0.08" fill="lime"/></g></svg>{% endif %}
<div class="cap">10&Prime;{% if overlay %}: lens centre and &theta;<sub>E</sub> = {{ '%.2f' % overlay['theta_e'] }}&Prime;
&plusmn; {{ '%.2f' % overlay['sigma'] }} (modeling network){% endif %}</div></div>
<div class="panel"><img id="img-stamp4" class="mid" src="/img/{{ row['candidate_id'] }}/stamp4_lupton.png" alt="4 arcsec stamp"><div class="cap">4&Prime;</div>
<img id="img-context80" class="mid" src="/img/{{ row['candidate_id'] }}/context80_lupton.png" alt="80 arcsec context"><div class="cap">80&Prime;</div></div>
<div class="panel"><img id="img-hist" src="/img/{{ row['candidate_id'] }}/hist.png" alt="environment"><div class="cap">members within 100&Prime;</div></div>
</div>
<div>{% for b in bands %}<div class="panel"><img class="band" src="/img/{{ row['candidate_id'] }}/band{{ loop.index0 }}.png" alt="{{ b }}"><div class="cap">{{ b }}</div></div>{% endfor %}</div>
<div>scaling: {% for s in scalings %}<button class="btn scaling{{ ' chosen' if loop.first }}" data-scaling="{{ s }}" id="scaling-{{ s }}">
<kbd>{{ 'zxc'[loop.index0] }}</kbd> {{ scaling_names[s] }}</button>{% endfor %}</div>
<div>grade: {% for k, v in grades.items() %}<button class="btn grade{{ ' chosen' if row['grade'] == k }}" data-grade="{{ k }}" id="grade-{{ k }}">
<kbd>{{ k if scale == 'multiclass' else ('y' if k == 1 else 'n') }}</kbd> {{ v }}</button>{% endfor %}
<button class="btn{{ ' on' if row['off_center'] }}" id="flag-off"><kbd>f</kbd> off-centre</button>
<button class="btn{{ ' on' if row['overdensity'] }}" id="flag-dense"><kbd>e</kbd> overdensity</button>
{% if overlay %}<button class="btn{{ ' on' if row['model_bad'] }}" id="flag-model"><kbd>m</kbd> model wrong</button>{% endif %}
<button class="btn" id="back"><kbd>&larr;</kbd> back</button><button class="btn" id="next"><kbd>&rarr;</kbd> next</button></div>
<div>your grade: <b id="own-grade">{{ row['grade'] if row['grade'] is not none else '-' }}</b></div>
<div id="msg"></div>
<div class="cap">Keys: {{ '0-3 grade' if scale == 'multiclass' else 'y yes, n no' }} (saves and moves on), f off-centre,
e overdensity,{% if overlay %} m lens centre or &theta;<sub>E</sub> of the model wrong,{% endif %} z/x/c scalings,
&larr;/&rarr; back/next.</div>
<script nonce="{{ nonce }}">
const S = {{ state|tojson }};
const csrf = document.querySelector('meta[name=csrf-token]').content;
const started = Date.now();
function go(p) { if (p === null || p < 0 || p >= S.n) { window.location = '/'; } else { window.location = '/round/' + S.round + '/' + p; } }
function msg(t) { document.getElementById('msg').textContent = t; }
function mark() {
  document.querySelectorAll('.grade').forEach(b => b.classList.toggle('chosen', Number(b.dataset.grade) === S.grade));
  document.getElementById('flag-off').classList.toggle('on', S.off_center);
  document.getElementById('flag-dense').classList.toggle('on', S.overdensity);
  const model = document.getElementById('flag-model');
  if (model) { model.classList.toggle('on', S.model_bad); }
  document.getElementById('own-grade').textContent = S.grade === null ? '-' : S.grade;
}
async function send(grade, advance) {
  const body = {round: S.round, position: S.position, grade: grade, off_center: S.off_center,
                overdensity: S.overdensity, model_bad: S.model_bad, seconds: (Date.now() - started) / 1000};
  const r = await fetch('/api/grade', {method: 'POST', credentials: 'same-origin',
    headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf}, body: JSON.stringify(body)});
  const j = await r.json();
  if (!r.ok) { msg(j.error || ('error ' + r.status)); return; }
  S.grade = grade; mark(); msg('');
  if (advance) { go(j.next); }
}
function scaling(s) {
  for (const k of ['stamp10', 'stamp4', 'context80']) {
    document.getElementById('img-' + k).src = '/img/' + S.candidate + '/' + k + '_' + s + '.png';
  }
  document.querySelectorAll('.scaling').forEach(b => b.classList.toggle('chosen', b.dataset.scaling === s));
}
function toggle(flag) { S[flag] = !S[flag]; mark(); if (S.grade !== null) { send(S.grade, false); } }
const keys = {ArrowLeft: () => go(S.position - 1), ArrowRight: () => go(S.position + 1),
  f: () => toggle('off_center'), e: () => toggle('overdensity'),
  m: () => { if (document.getElementById('flag-model')) { toggle('model_bad'); } },
  z: () => scaling('lupton'), x: () => scaling('linear'), c: () => scaling('sqrt')};
if (S.scale === 'multiclass') { for (const k of ['0', '1', '2', '3']) { keys[k] = () => send(Number(k), true); } }
else { keys.y = () => send(1, true); keys.n = () => send(0, true); keys['1'] = keys.y; keys['0'] = keys.n; }
document.addEventListener('keydown', ev => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
  const f = keys[ev.key]; if (f) { ev.preventDefault(); f(); }
});
document.querySelectorAll('.grade').forEach(b => b.addEventListener('click', () => send(Number(b.dataset.grade), true)));
document.querySelectorAll('.scaling').forEach(b => b.addEventListener('click', () => scaling(b.dataset.scaling)));
document.getElementById('flag-off').addEventListener('click', () => toggle('off_center'));
document.getElementById('flag-dense').addEventListener('click', () => toggle('overdensity'));
if (document.getElementById('flag-model')) {
  document.getElementById('flag-model').addEventListener('click', () => toggle('model_bad'));
}
document.getElementById('back').addEventListener('click', () => go(S.position - 1));
document.getElementById('next').addEventListener('click', () => go(S.position + 1));
document.body.dataset.ready = '1';
</script></body></html>"""

PAGE_ADMIN = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>organiser - {{ title }}</title>""" + _STYLE + """</head>
<body><h1>{{ title }}: organiser</h1>
<p id="metrics">{% for k, v in metrics.items() %}{{ k }}={{ '%.3g' % v if v is float else v }} {% endfor %}</p>
<p><a id="export" href="/admin/export.ecsv">export (ECSV)</a></p>
<h2>Progress</h2><table id="progress"><tr><th>round</th><th>kind</th><th>grader</th><th>graded</th></tr>
{% for p in progress %}<tr><td>{{ p['round'] }}</td><td>{{ p['kind'] }}</td><td>{{ p['grader'] }}</td>
<td>{{ p['graded'] }} / {{ p['assigned'] }}</td></tr>{% endfor %}</table>
<h2>Agreement</h2><table><tr><th>round</th><th>Fleiss' &kappa;</th><th>candidates</th></tr>
{% for name, k in kappas.items() %}<tr><td>{{ name }}</td><td>{{ '%.3f' % k['fleiss_kappa'] if k['fleiss_kappa'] is not none else '-' }}</td>
<td>{{ k['n_candidates'] }}</td></tr>{% endfor %}</table>
<h3>Calibration: agreement with the truth</h3><table><tr><th>grader</th><th>correct</th><th>lenses found</th></tr>
{% for name, a in agreement.items() %}<tr><td>{{ name }}</td><td>{{ a['correct'] }} / {{ a['n'] }}</td>
<td>{{ a['lenses_found'] }} / {{ a['lenses'] }}</td></tr>{% endfor %}</table>
<h2>Graded candidates by mean grade (page {{ page + 1 }} of {{ pages }})</h2>
<table id="aggregates"><tr><th>id</th><th>score</th><th>binary yes</th><th>G</th><th>std</th><th>n</th><th>class</th><th>forwarded</th><th>off-centre</th><th>overdensity</th></tr>
{% for r in rows %}<tr><td>{{ r['id'] }}</td><td>{{ '%.3f' % r['score'] }}</td><td>{{ r['yes'] }}</td><td>{{ '%.2f' % r['G'] }}</td><td>{{ '%.2f' % r['std'] }}</td>
<td>{{ r['n'] }}</td><td>{{ r['cls'] }}</td><td>{{ 'yes' if r['fwd'] else '' }}</td><td>{{ r['off'] }}</td><td>{{ r['dense'] }}</td></tr>{% endfor %}</table>
{% if page > 0 %}<a href="/admin?page={{ page - 1 }}">previous</a>{% endif %} {% if page + 1 < pages %}<a href="/admin?page={{ page + 1 }}">next</a>{% endif %}
<form method="post" action="/logout"><input type="hidden" name="csrf_token" value="{{ csrf }}"><button class="btn">log out</button></form>
</body></html>"""
