"""``lenssearch inspect ...``: the organiser's verbs of the visual inspection (a typer sub-app of ``lenssearch``).

``init`` creates the inspection folder from the search's candidates and field; ``add-grader`` prints a grader's
personal link (``new-link`` replaces a lost one); ``add-calibration`` adds systems of known class; ``add-round``
and ``assign`` create a round and its balanced, seeded assignments; ``render`` pre-renders the stamps; ``serve``
runs the web app on 127.0.0.1; ``export`` writes the graded catalogue (ECSV) and logs a summary to MLflow;
``demo`` sets up and serves the demo. Heavy imports happen inside the verbs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from lenssearch.cli import verb

inspect_app = typer.Typer(
    name="inspect", help="Visual inspection of the candidates by several graders (HOLISMOKES XVI, Sect. 4).",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
)

FolderArg = Annotated[Path, typer.Argument(help="The inspection folder (database and stamp cache).")]
PortOption = Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0: any free port).")]


def _link(port: int | None, path: str) -> str:
    return f"http://127.0.0.1:{port}{path}" if port else path


@inspect_app.command("init")
@verb
def init_cmd(
    folder: FolderArg,
    candidates: Annotated[Path, typer.Option("--candidates", help="The search's candidates.ecsv.")],
    field: Annotated[Path, typer.Option("--field", help="The searched field's directory (image_<BAND>.fits).")],
    all_rows: Annotated[bool, typer.Option("--all", help="Also the candidates rejected by cleaning (kept = False).")] = False,
    title: Annotated[Optional[str], typer.Option("--title", help="Title shown on the pages.")] = None,
) -> None:
    """Create an inspection folder from a search's candidates; prints the organiser's link."""
    from lenssearch.inspect import store

    token = store.init_inspection(folder, candidates, field, only_kept=not all_rows, title=title)
    typer.echo(f"created {folder}; organiser link: /login/{token}")


@inspect_app.command("add-grader")
@verb
def add_grader_cmd(folder: FolderArg, name: Annotated[str, typer.Argument(help="The grader's name.")]) -> None:
    """Add a grader and print their personal link (only its hash is stored: keep it)."""
    from lenssearch.inspect import store

    token = store.add_grader(folder, name)
    typer.echo(f"{name} /login/{token}")


@inspect_app.command("new-link")
@verb
def new_link_cmd(folder: FolderArg, name: Annotated[str, typer.Argument(help="A grader's name, or organiser.")]) -> None:
    """Replace a grader's (or the organiser's) personal link, e.g. one that was lost; the old one stops working."""
    from lenssearch.inspect import store

    token = store.new_link(folder, name)
    typer.echo(f"{name} /login/{token}")


@inspect_app.command("add-calibration")
@verb
def add_calibration_cmd(
    folder: FolderArg,
    truth: Annotated[Path, typer.Option("--truth", help="ECSV: ra, dec, is_lens or label, [id], [origin].")],
    origin: Annotated[Optional[str], typer.Option("--origin", help="known / planted / non-lens for all rows.")] = None,
) -> None:
    """Add systems of known class (known lenses, planted mocks, non-lenses) for the calibration round."""
    from lenssearch.inspect import store

    n = store.add_calibration_systems(folder, truth, origin)
    typer.echo(f"added {n} calibration systems from {truth}")


@inspect_app.command("add-round")
@verb
def add_round_cmd(
    folder: FolderArg,
    name: Annotated[str, typer.Argument(help="Round name.")],
    kind: Annotated[str, typer.Option("--kind", help="calibration, binary, multiclass or second_team.")],
    from_round: Annotated[Optional[str], typer.Option("--from-round", help="Take the candidates it forwarded.")] = None,
) -> None:
    """Add a round."""
    from lenssearch.inspect import store

    store.add_round(folder, name, kind, from_round)
    typer.echo(f"round {name} ({kind})")


@inspect_app.command("assign")
@verb
def assign_cmd(
    folder: FolderArg,
    round_name: Annotated[str, typer.Argument(help="Round name.")],
    per_candidate: Annotated[Optional[int], typer.Option("--per-candidate", help="Graders per candidate "
                             "(default: all for calibration, 2 binary, 4 multi-class).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the assignment.")] = 0,
    graders: Annotated[Optional[str], typer.Option("--graders", help="Comma-separated grader names (default: all).")] = None,
) -> None:
    """Assign a round's candidates to graders, balanced and seeded."""
    from lenssearch.inspect import store

    names = [g.strip() for g in graders.split(",") if g.strip()] if graders else None
    counts = store.assign(folder, round_name, per_candidate, seed, names)
    typer.echo(" ".join(f"{k}={v}" for k, v in counts.items()))


@inspect_app.command("render")
@verb
def render_cmd(folder: FolderArg) -> None:
    """Render every candidate's stamps into the cache now (the app otherwise renders them on first view)."""
    from lenssearch.inspect import stamps, store

    with store.opened(folder) as conn:
        rows = conn.execute("SELECT id, name, ra, dec FROM candidates ORDER BY id").fetchall()
        meta = {k: store.get_meta(conn, k) for k in ("field_dir", "bands", "noise_sigma")}
    renderer = stamps.StampRenderer(folder, Path(meta["field_dir"]), meta["bands"], meta["noise_sigma"])
    try:
        for row in rows:
            renderer.ensure(row["id"], row["ra"], row["dec"])
    finally:
        renderer.close()
    typer.echo(f"rendered {len(rows)} candidates into {Path(folder) / 'cache'}")


@inspect_app.command("serve")
@verb
def serve_cmd(folder: FolderArg, port: PortOption = 8765) -> None:
    """Serve the grading app on 127.0.0.1 until interrupted (Ctrl-C)."""
    from lenssearch.inspect import app, store

    store.connect(folder).close()
    app.serve(folder, port, ready=lambda p: typer.echo(f"serving {folder} on http://127.0.0.1:{p}", nl=True))


@inspect_app.command("export")
@verb
def export_cmd(
    folder: FolderArg,
    out: Annotated[Path, typer.Option("--out", help="The graded catalogue (ECSV).")],
    mlflow: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Log a summary run to MLflow.")] = True,
    tracking_uri: Annotated[Optional[str], typer.Option("--tracking-uri", help="MLflow store (default sqlite:///mlflow.db).")] = None,
) -> None:
    """Export one row per candidate with every grader's grades and the aggregates; summary to MLflow."""
    from lenssearch.inspect import aggregate

    path, metrics = aggregate.export(folder, out, mlflow=mlflow, tracking_uri=tracking_uri)
    typer.echo(" ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
    typer.echo(f"wrote {path}")


@inspect_app.command("demo")
@verb
def demo_cmd(
    out: Annotated[Path, typer.Option("--out", help="The demo's inspection folder.")] = Path("inspections/demo"),
    candidates: Annotated[Optional[Path], typer.Option("--candidates", help="The search's candidates.ecsv.")] = None,
    field: Annotated[Optional[Path], typer.Option("--field", help="The searched field's directory.")] = None,
    calibration: Annotated[Optional[Path], typer.Option("--calibration", help="Calibration systems (ECSV).")] = None,
    synthetic: Annotated[bool, typer.Option("--synthetic", help="Use a small synthetic field instead.")] = False,
    port: PortOption = 8765,
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve after setting up.")] = True,
) -> None:
    """Set up the demo inspection (graders alice and bob) and serve it."""
    from lenssearch.errors import LensSearchError
    from lenssearch.inspect import app, demo

    if synthetic:
        from lenssearch.inspect.synthetic import build_synthetic_inspection_inputs

        if not (out / "inputs" / "candidates.ecsv").is_file():
            build_synthetic_inspection_inputs(out / "inputs")
        candidates, field = out / "inputs" / "candidates.ecsv", out / "inputs" / "field"
        calibration = calibration or out / "inputs" / "calibration.ecsv"
    elif candidates is None or field is None:
        raise LensSearchError("give --candidates and --field (the search's outputs), or --synthetic")
    links = demo.setup_demo(out, candidates, field, calibration)
    if not serve:
        for name, path in links.items():
            typer.echo(f"{name} {path}")
        return

    def ready(p):
        for name, path in links.items():
            typer.echo(f"{name}: {_link(p, path)}")
        typer.echo(f"serving {out} on http://127.0.0.1:{p} (Ctrl-C to stop)")

    app.serve(out, port, ready=ready)
