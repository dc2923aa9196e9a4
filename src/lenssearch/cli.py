"""The ``lenssearch`` command line: one typer app whose verbs are the stages of ``dvc.yaml``.

Each verb parses its arguments, loads the typed config, and calls one pure function of a subpackage. Paths come
from ``dvc.yaml`` as arguments; defaults of parameters live in ``params.yaml`` only. Bad input is printed as one
line ``error: ...`` on stderr, without a traceback, and the command exits with status 2. Ctrl-C and SIGTERM unwind
a verb (its temporary files removed, nothing half-written left) and exit with 130 and 143.

Heavy imports (TensorFlow, MLflow, great-expectations) happen inside the verbs, so ``lenssearch --help`` is fast.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Callable, Literal, Optional

import typer

from lenssearch._runtime import apply_offline_env, filter_stderr
from lenssearch.config import ConfigError, load_config
from lenssearch.errors import LensSearchError
from lenssearch.io import check_output_folder, check_output_path

app = typer.Typer(
    name="lenssearch",
    help="Find galaxy-scale strong lenses in multi-band imaging with deep networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help: flags without type placeholders, choices listed
)

ParamsOption = Annotated[Path, typer.Option("--params", help="Parameter file (the demo profile).")]
ProfileOption = Annotated[
    Optional[Path], typer.Option("--profile", help="Profile overlay applied over --params, e.g. configs/paper.yaml.")
]

VariantOption = Annotated[
    Optional[str], typer.Option("--variant", help="KB ground-truth variant (params 'variants'), e.g. angora, visible.")
]

MetricsOption = Annotated[
    Optional[Path],
    typer.Option("--metrics", help="Headline metrics (JSON, a few numbers for 'dvc metrics'; committed to git)."),
]
ReportsOption = Annotated[Optional[Path], typer.Option("--reports", help="Folder of reports: full metrics, figures.")]
MlflowFlag = Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Record the runs in MLflow.")]

#: The networks of ``lenssearch.models.MODELS`` (tests/test_cli.py keeps the two equal; the CLI does not import
#: keras to list them).
Network = Literal["vgg", "sc_vgg", "resnet", "f435w", "f606w", "f814w"]

EXIT_BAD_INPUT = 2


def fail(message: str) -> None:
    """Print one error line and exit non-zero."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(EXIT_BAD_INPUT)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a batch system's time limit) received by a verb: raised in the main thread, so that the
    verb unwinds as after Ctrl-C (temporary files removed, nothing half-written, worker processes stopped)."""


def _terminate(signum, frame) -> None:
    raise Terminated()


@contextlib.contextmanager
def _sigterm_unwinds():
    """SIGTERM raises :class:`Terminated` while a verb runs (Python's default ends the process at once, without
    its cleanup); the previous handler is restored afterwards. Only in the main thread, where handlers can be set."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def verb(func: Callable) -> Callable:
    """Turn bad-input exceptions raised by a verb into one clear line and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            with _sigterm_unwinds():
                return func(*args, **kwargs)
        except (LensSearchError, ConfigError) as exc:
            fail(str(exc))
        except FileNotFoundError as exc:
            fail(f"{exc.filename}: no such file" if exc.filename else str(exc))
        except Terminated:
            typer.secho("terminated (SIGTERM)", err=True)
            raise typer.Exit(128 + signal.SIGTERM)
        except KeyboardInterrupt:
            typer.secho("interrupted", err=True)
            raise typer.Exit(130)

    return wrapper


def load(params: Path, profile: Optional[Path], variant: Optional[str] = None):
    """Load the configuration for a verb (with a KB variant merged in when one is named)."""
    return load_config(params, profile, variant)


def _version(value: bool) -> None:
    if value:
        from lenssearch import __version__

        typer.echo(f"lenssearch {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True)
    ] = False,
) -> None:
    """Find galaxy-scale strong lenses in multi-band imaging with deep networks."""
    apply_offline_env()
    filter_stderr()  # a log file gets one line per progress update and no TensorFlow C++ noise


@app.command("config")
@verb
def config_cmd(params: ParamsOption = Path("params.yaml"), profile: ProfileOption = None) -> None:
    """Check the configuration and print it, merged with the profile if one is given."""
    import yaml

    from lenssearch.config import as_dict

    cfg = load(params, profile)
    typer.echo(yaml.safe_dump(as_dict(cfg), sort_keys=False).rstrip())


@app.command("profile-args")
@verb
def profile_args_cmd(profile: Path) -> None:
    """Print a profile overlay as ``-S key=value`` arguments for ``dvc exp run``."""
    import json

    from lenssearch.config import flatten, read_yaml

    pairs = flatten(read_yaml(profile))
    typer.echo(" ".join(f"-S '{k}={json.dumps(v)}'" for k, v in pairs.items()))


@app.command("lenstool-check")
@verb
def lenstool_check_cmd(
    parfile: Annotated[Path, typer.Argument(help="LensTool parameter file (e.g. best.par).")],
    multfile: Annotated[Path, typer.Argument(help="Multiple-image catalogue 'id RA Dec a b theta z mag'.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the per-family table here (ECSV).")] = None,
    planes: Annotated[
        str,
        typer.Option("--planes", help="Potentials at several z_lens: 'multi' ray-traces plane by plane (multi-plane "
                                      "LensTool, 7 and later); 'single' puts them all at the first potential's "
                                      "redshift (LensTool 6)."),
    ] = "multi",
    barycentre: Annotated[
        str,
        typer.Option("--barycentre", help="Source of a family: 'auto' (the image block's forme; |mu|-weighted "
                                          "without one), 'mean' (forme -1) or 'magnification' (forme -2)."),
    ] = "auto",
    sigpos: Annotated[
        Optional[float],
        typer.Option("--sigpos", help="Positional error (arcsec) of the fit, to read the header's Chi2pos as an rms "
                                      "(default: the par file's sigposArcsec, else 0.5)."),
    ] = None,
    params: Annotated[
        Optional[Path], typer.Option("--params", help="Parameter file to validate (the cosmology is the par file's).")
    ] = None,
) -> None:
    """LensTool's image-plane rms of a model's multiple images (arcsec), beside the one its header implies."""
    from lenssearch.io import atomic_path
    from lenssearch.lensing.lenstool_check import lenstool_check

    if params is not None:
        load(params, None)
    if out is not None:
        check_output_path(out, "file")  # before the work: a folder there is refused, and left untouched
    result = lenstool_check(parfile, multfile, planes=planes, barycentre=barycentre, sigpos_arcsec=sigpos)
    for note in result.notes:
        typer.secho(f"note: {note}", err=True)
    meta = result.families.meta
    typer.echo("\n".join(result.families.pformat(max_lines=-1, max_width=-1)))
    if out is not None:
        with atomic_path(out) as tmp:
            result.families.write(tmp, format="ascii.ecsv")
        typer.echo(f"wrote {out}")
    if len(meta["z_planes"]) > 1:
        names = {"multi": "multi-plane ray tracing",
                 "single": f"single plane at z = {meta['z_planes'][0]:g} (LensTool 6)"}
        typer.echo(f"lens planes at z = {', '.join(f'{z:g}' for z in meta['z_planes'])}: {names[meta['planes']]}")
        if result.other_planes is not None:
            other, rms = result.other_planes
            typer.echo(f"with {names[other]} instead: image-plane rms {rms:.4f} arcsec (--planes {other})")
    typer.echo(f"source: {'|mu|-weighted' if result.barycentre == 'magnification' else 'mean'} barycentre of the "
               f"ray-traced images; {meta['n_images']} images in {meta['n_families']} families")
    typer.echo(f"total source-plane scatter: {result.total_source_scatter_arcsec:.4f} arcsec")
    if result.lenstool_rms_arcsec is not None:
        typer.echo(
            f"LensTool (header Chi2pos {meta['lenstool_chi2pos']:g}): {result.lenstool_rms_arcsec:.4f} arcsec; "
            f"lenssearch - LensTool = {result.total_image_rms_arcsec - result.lenstool_rms_arcsec:+.4f} arcsec"
        )
    typer.echo(f"total image-plane rms: {result.total_image_rms_arcsec:.4f} arcsec")


FieldsRootOption = Annotated[Path, typer.Option("--fields", help="Fields root (data/fields) of the field stage.")]


@app.command("simulate")
@verb
def simulate_cmd(
    fields: FieldsRootOption,
    out: Annotated[Path, typer.Option("--out", help="Cutout set of the mocks (cutouts.h5 + metadata.ecsv).")],
    reports: ReportsOption = None,
    metrics_out: MetricsOption = None,
    variant: VariantOption = None,
    params: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
) -> None:
    """Inject mock galaxy-galaxy lenses at secondary caustics of the cluster members."""
    import json

    from lenssearch.headline import write_headline
    from lenssearch.simulate.inject import run_simulate

    cfg = load(params, profile, variant)
    check_output_path(out, "dir")
    metrics = run_simulate(cfg, fields, out, reports, variant=variant or "")
    write_headline("simulate", metrics, metrics_out)
    typer.echo(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, dict)}))
    typer.echo(f"wrote {out}")


@app.command("negatives")
@verb
def negatives_cmd(
    fields: FieldsRootOption,
    out: Annotated[Path, typer.Option("--out", help="Cutout set of the non-lenses (cutouts.h5 + metadata.ecsv).")],
    reports: ReportsOption = None,
    mocks: Annotated[
        Optional[Path], typer.Option("--mocks", help="The variant's mocks: their hosts and arcs (negatives.match_hosts).")
    ] = None,
    metrics_out: MetricsOption = None,
    variant: VariantOption = None,
    params: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
) -> None:
    """Cut non-lens cutouts centred on cluster members, plain or with a confuser (hard negatives)."""
    import json

    from lenssearch.headline import write_headline
    from lenssearch.simulate.negatives import run_negatives

    cfg = load(params, profile, variant)
    check_output_path(out, "dir")
    metrics = run_negatives(cfg, fields, out, reports, mocks_dir=mocks, variant=variant or "")
    write_headline("negatives", metrics, metrics_out)
    typer.echo(json.dumps({"n_negatives": metrics["n_negatives"], "excluded": metrics["excluded"],
                           "kinds": metrics["kinds"]}))
    typer.echo(f"wrote {out}")


FieldOption = Annotated[Optional[Path], typer.Option("--field", help="Field directory with image_<BAND>.fits.")]
ImagesOption = Annotated[
    Optional[list[str]], typer.Option("--image", help="BAND=path of a band image (instead of --field); repeat per band.")
]
StackOption = Annotated[Optional[Path], typer.Option("--stack", help="Stack of cutouts (FITS cube or HDF5) to score.")]
TrackingOption = Annotated[Optional[str], typer.Option("--tracking-uri", help="MLflow store (default sqlite:///mlflow.db).")]
IgnoreBandsOption = Annotated[bool, typer.Option(
    "--ignore-band-keywords",
    help="Do not refuse images whose FILTER/FILTER1/FILTER2/PHOTPLAM keywords name another band than given.",
)]


@app.command("search-field")
@verb
def search_field_cmd(
    out: Annotated[Path, typer.Option("--out", help="Folder of the held-out search field (data/search_field).")],
    params: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
) -> None:
    """Build the demo's held-out synthetic field with planted lenses (never seen by training)."""
    from lenssearch.search.demo import build_search_field

    cfg = load(params, profile)
    check_output_path(out, "dir")
    path = build_search_field(cfg, out)
    typer.echo(f"wrote {path}")


@app.command("search")
@verb
def search_cmd(
    out: Annotated[Path, typer.Option("--out", help="Output folder (candidates.ecsv, gallery/, metrics.json, ...).")],
    field: FieldOption = None,
    image: ImagesOption = None,
    catalogue: Annotated[
        Optional[Path], typer.Option("--catalogue", help="Positions to score (ECSV/FITS, ra/dec); default: sep detections.")
    ] = None,
    stack: StackOption = None,
    planted: Annotated[
        Optional[Path], typer.Option("--planted", help="Planted lenses (ra, dec) of a synthetic field: the truth.")
    ] = None,
    stars: Annotated[Optional[Path], typer.Option("--stars", help="Bright stars (ra, dec, mag); default <field>/stars.ecsv.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Model URI; default search.model_uri.")] = None,
    engine: Annotated[
        Literal["local", "ray"],
        typer.Option("--engine", help="local: this process; ray: Ray Data with an actor pool (search.ray), resumable."),
    ] = "local",
    tracking_uri: TrackingOption = None,
    ignore_band_keywords: IgnoreBandsOption = False,
    metrics_out: MetricsOption = None,
    params: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
) -> None:
    """Score a field (or a stack of cutouts) with the champion, clean false positives, write the candidates."""
    from lenssearch.headline import write_headline
    from lenssearch.search.pipeline import run_search
    from lenssearch.search.sources import open_input, read_planted

    cfg = load(params, profile)
    check_output_folder(out)
    with open_input(cfg, field=field, images=image, catalogue=catalogue, stack=stack, stars=stars,
                    ignore_band_keywords=ignore_band_keywords) as inp:
        result = run_search(cfg, inp, out, model_uri=model, planted=read_planted(planted), engine=engine,
                            tracking_uri=tracking_uri)
    write_headline("search", result.metrics, metrics_out)
    typer.echo("\n".join(result.counts.pformat(max_lines=-1, max_width=-1)))
    typer.echo(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.metrics.items()))
    typer.echo(f"wrote {out}")


@app.command("known-lenses")
@verb
def known_lenses_cmd(
    known: Annotated[Path, typer.Option("--known", help="Known lenses: ra, dec, label (secure / uncertain / no).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (known_lenses.ecsv, known_lenses_totals.ecsv).")],
    field: FieldOption = None,
    image: ImagesOption = None,
    stack: StackOption = None,
    default_label: Annotated[
        Optional[str], typer.Option("--default-label", help="Label of rows without one (planted lenses: secure).")
    ] = None,
    model: Annotated[Optional[list[str]], typer.Option("--model", help="Model URI(s); default search.model_uri.")] = None,
    tracking_uri: TrackingOption = None,
    ignore_band_keywords: IgnoreBandsOption = False,
    params: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
) -> None:
    """Classify known lenses with each network (Angora et al. 2023, Table A.6): TP / qTP / FN and totals."""
    from lenssearch.search.known import run_known_lenses
    from lenssearch.search.sources import open_input

    cfg = load(params, profile)
    check_output_folder(out)
    with open_input(cfg, field=field, images=image, catalogue=known, stack=stack, known=True,
                    default_label=default_label, ignore_band_keywords=ignore_band_keywords) as inp:
        table, totals = run_known_lenses(cfg, inp, out, model or [cfg.search.model_uri], tracking_uri=tracking_uri)
    typer.echo("\n".join(totals.pformat(max_lines=-1, max_width=-1)))
    typer.echo(f"wrote {out}")


@app.command("kb")
@verb
def kb_cmd(
    mocks: Annotated[Path, typer.Option("--mocks", help="Cutout set of the simulate stage.")],
    negatives: Annotated[Path, typer.Option("--negatives", help="Cutout set of the negatives stage.")],
    out: Annotated[Path, typer.Option("--out", help="The knowledge base file (HDF5).")],
    fields: Annotated[
        Optional[Path], typer.Option("--fields", help="Fields root: adds z_lens and expected noise per cutout.")
    ] = None,
    reports: ReportsOption = None,
    metrics_out: MetricsOption = None,
    mlflow: MlflowFlag = True,
    track: Annotated[Optional[bool], typer.Option("--track/--no-track", hidden=True)] = None,  # old name of --mlflow
    variant: VariantOption = None,
    params: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
) -> None:
    """Assemble mocks and negatives into the HDF5 knowledge base with stratified folds."""
    import json

    from lenssearch.headline import write_headline
    from lenssearch.kb.build import build_kb

    cfg = load(params, profile, variant)
    check_output_path(out, "file")
    summary = build_kb(mocks, negatives, out, cfg, fields_dir=fields, variant=variant or "")
    if reports is not None:
        from lenssearch.kb.report import write_kb_reports

        write_kb_reports(out, reports, cfg, summary, fields_dir=fields, track=mlflow if track is None else track)
    write_headline("kb", summary, metrics_out)
    typer.echo(json.dumps({k: v for k, v in summary.items() if not isinstance(v, dict)}))
    typer.echo(f"wrote {out}")


@app.command("validate")
@verb
def validate_cmd(
    kb: Annotated[Path, typer.Option("--kb", help="The knowledge base file (HDF5).")],
    out: Annotated[Path, typer.Option("--out", help="Report folder (summary.json, data_docs/).")],
    metrics_out: MetricsOption = None,
    variant: VariantOption = None,
    params: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
) -> None:
    """Validate the knowledge base with the great-expectations suite; non-zero exit on failure."""
    from lenssearch.kb.validation import validate_kb

    cfg = load(params, profile, variant)
    check_output_path(out, "dir")
    result = validate_kb(kb, out, cfg)
    from lenssearch.headline import write_headline

    write_headline("validate", out / "summary.json", metrics_out)
    n = len(result.expectations)
    if not result.success:
        fail(f"{kb}: knowledge base validation failed ({out / 'summary.json'}, data docs {result.data_docs})\n"
             + result.message())
    typer.echo(f"{kb}: all {n} expectations met on {result.passed.size} cutouts; data docs {result.data_docs}")


PredictionsOption = Annotated[
    Path, typer.Option("--predictions", help="Folder of <network>/predictions.ecsv (the train stage's reports).")
]
CommitteesOption = Annotated[
    Optional[Path], typer.Option("--committees", help="best.json of the committee stage (selected committees).")
]


@app.command("evaluate")
@verb
def evaluate_cmd(
    predictions: PredictionsOption,
    out: Annotated[Path, typer.Option("--out", help="Folder of tables, figures and metrics.json.")],
    report: Annotated[
        Path, typer.Option("--markdown", help="Markdown report (an .html twin is written beside it).")
    ],
    kb: Annotated[Optional[Path], typer.Option("--kb", help="Knowledge base (HDF5) with the metadata table.")] = None,
    kb_dir: Annotated[
        Optional[Path], typer.Option("--kb-dir", help="The variants' KBs (<variant>.h5): score every network on each.")
    ] = None,
    models: Annotated[Optional[Path], typer.Option("--models", help="Folder of models/<network>/run/model.keras.")] = None,
    tracking_uri: TrackingOption = None,
    mlflow: MlflowFlag = True,
    metrics_out: MetricsOption = None,
    params: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
) -> None:
    """Tables A.1-A.5 and Figs. 6, 8, 9, 11, A.1 of Angora et al. 2023 from out-of-fold predictions."""
    from lenssearch.evaluate.stages import run_evaluate

    cfg = load(params, profile)
    check_output_path(out, "dir")
    check_output_path(report, "file")
    if kb_dir is not None and models is None:
        fail("--kb-dir needs --models (the run models score the variants they were not trained on)")
    result = run_evaluate(cfg, predictions, kb, out, report, tracking_uri=tracking_uri, log_mlflow=mlflow,
                          kb_dir=kb_dir, models_dir=models)
    from lenssearch.headline import write_headline

    write_headline("evaluate", out / "metrics.json", metrics_out)
    typer.echo(" ".join(f"{k}={v}" for k, v in result.items()))
    typer.echo(f"wrote {out} and {report}")


@app.command("committee")
@verb
def committee_cmd(
    predictions: PredictionsOption,
    out: Annotated[Path, typer.Option("--out", help="Folder of committees.ecsv, best.json, figures.")],
    tracking_uri: TrackingOption = None,
    mlflow: MlflowFlag = True,
    metrics_out: MetricsOption = None,
    params: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
) -> None:
    """Committees of networks by mean and product (HOLISMOKES XVI); the best logged as pyfunc models."""
    from lenssearch.evaluate.committee_stage import run_committee

    cfg = load(params, profile)
    check_output_path(out, "dir")
    best = run_committee(cfg, predictions, out, tracking_uri=tracking_uri, log_mlflow=mlflow)
    from lenssearch.headline import write_headline

    write_headline("committee", best, metrics_out)
    typer.echo(best["note"])
    for c in best["committees"]:
        typer.echo(f"{c['name']}: gate {c['gate']:.4f} auc {c['auc']:.4f} model {c['model_uri']}")
    typer.echo(f"best: {best['best']}; wrote {out}")


@app.command("tune")
@verb
def tune_cmd(
    predictions: PredictionsOption,
    out: Annotated[Path, typer.Option("--out", help="thresholds.json")],
    storage: Annotated[Path, typer.Option("--storage", help="Optuna sqlite database file.")],
    plots: Annotated[Path, typer.Option("--plots", help="Folder of the Optuna study plots.")],
    committees: CommitteesOption = None,
    tracking_uri: TrackingOption = None,
    mlflow: MlflowFlag = True,
    metrics_out: MetricsOption = None,
    params: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
) -> None:
    """Optuna-tuned decision threshold and qTP lower bound of every network and selected committee."""
    from lenssearch.evaluate.tune import run_tune

    cfg = load(params, profile)
    check_output_path(out, "file")
    check_output_path(storage, "file")
    check_output_path(plots, "dir")
    doc = run_tune(cfg, predictions, committees, out, storage, plots, tracking_uri=tracking_uri, log_mlflow=mlflow)
    from lenssearch.headline import write_headline

    write_headline("tune", doc, metrics_out)
    for name, r in doc["models"].items():
        typer.echo(f"{name}: threshold {r['threshold']:.4f} (purity {r['purity']}, completeness "
                   f"{r['completeness']}), qTP lower bound {r['qtp_lower']:.4f}")
    typer.echo(f"wrote {out}")


@app.command("promote")
@verb
def promote_cmd(
    predictions: PredictionsOption,
    thresholds: Annotated[Path, typer.Option("--thresholds", help="thresholds.json of the tune stage.")],
    out: Annotated[Path, typer.Option("--out", help="promotion.json (the decision and the comparison).")],
    committees: CommitteesOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the comparison; register nothing.")] = False,
    tracking_uri: TrackingOption = None,
    metrics_out: MetricsOption = None,
    params: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
) -> None:
    """Register the best network or committee; move the champion alias only if it beats the champion."""
    from lenssearch.evaluate.promote import run_promote

    cfg = load(params, profile)
    check_output_path(out, "file")
    summary = run_promote(cfg, predictions, committees, thresholds, out, dry_run=dry_run, tracking_uri=tracking_uri,
                          echo=typer.echo)
    if not dry_run:
        from lenssearch.headline import write_headline

        write_headline("promote", summary, metrics_out)


@app.command("hpsearch")
@verb
def hpsearch_cmd(
    kb: Annotated[Path, typer.Option("--kb", help="Knowledge base (HDF5).")],
    work: Annotated[Path, typer.Option("--work", help="Scratch folder of the trials (models, predictions).")],
    n_trials: Annotated[Optional[int], typer.Option("--n-trials", help="Override hpsearch.n_trials.")] = None,
    tracking_uri: TrackingOption = None,
    params: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
) -> None:
    """Optuna search over network hyper-parameters, one nested MLflow run per trial (not in dvc repro)."""
    from lenssearch.evaluate.hpsearch import run_hpsearch

    cfg = load(params, profile)
    best = run_hpsearch(cfg, kb, work, params, profile, n_trials=n_trials, tracking_uri=tracking_uri)
    typer.echo(f"best trial {best['number']}: {best['value']:.4f} with {best['params']}")


@app.command("field")
@verb
def field_cmd(
    out: Annotated[Path, typer.Option("--out", help="Fields root: one directory <out>/<name>/ per field.")],
    reports: Annotated[
        Optional[Path],
        typer.Option("--reports", help="Folder of reports: metrics.json, secondary critical lines per field and z_s."),
    ] = None,
    metrics_out: MetricsOption = None,
    only: Annotated[Optional[list[str]], typer.Option("--only", help="Build only this field (repeatable).")] = None,
    params: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
) -> None:
    """Build the cluster fields: deflection maps, secondary critical lines and caustics, images where any."""
    import json

    from lenssearch.fields.lenstool import build_lenstool_field, critical_line_metrics
    from lenssearch.fields.painted import add_synthetic_light
    from lenssearch.fields.synthetic import build_synthetic_field
    from lenssearch.fields.user import build_user_field
    from lenssearch.io import atomic_path

    cfg = load(params, profile)
    check_output_folder(out)
    full = None if reports is None else Path(reports) / "metrics.json"
    if full is not None:
        check_output_path(full, "file")

    def build_lenstool_field_with_light(entry, cfg, out_dir):
        path = build_lenstool_field(entry, cfg, out_dir)
        if entry.light_depth is not None:  # synthetic HST light at the real model's members
            add_synthetic_light(path, cfg, entry.light_depth, entry.image_size_arcsec, entry.lenstool_mag_band)
        return path

    # kind -> (entries of the config, builder(entry, cfg, out_dir) -> field directory); a new kind adds a line
    kinds = {
        "lenstool": (cfg.field.lenstool, build_lenstool_field_with_light),
        "synthetic": (cfg.field.synthetic.fields, build_synthetic_field),
        "user": (cfg.field.user, build_user_field),
    }
    names = [e.name for entries, _ in kinds.values() for e in entries]
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise LensSearchError(f"--only: no field named {unknown} in {params} (fields: {names})")
    results = {}
    for kind, (entries, build) in kinds.items():
        for entry in entries:
            if only and entry.name not in only:
                continue
            typer.echo(f"field {entry.name} ({kind})")
            path = build(entry, cfg, out)
            results[entry.name] = critical_line_metrics(path)
            typer.echo(f"  -> {path}: " + ", ".join(f"{z}: {m['n_lines']} lines" for z, m in results[entry.name].items()))
    if full is not None:
        full.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(full) as tmp:
            tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    from lenssearch.headline import write_headline

    write_headline("field", results, metrics_out)


@app.command("train")
@verb
def train_cmd(
    network: Annotated[Network, typer.Argument(help="The network to train (train.kb_variant names its KB).")],
    kb: Annotated[Path, typer.Option("--kb", help="The knowledge base file (HDF5).")],
    models: Annotated[Path, typer.Option("--models", help="Checkpoints and fold models: models/<network>.")],
    reports: Annotated[Path, typer.Option("--reports", help="Predictions, metrics and plots: reports/<network>.")],
    tracking_uri: TrackingOption = None,
    metrics_out: MetricsOption = None,
    params: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
) -> None:
    """Stratified k-fold training of one network, then its run model, tracked and registered in MLflow."""
    import json

    from lenssearch.train.kfold import train_network

    cfg = load(params, profile)
    summary = train_network(network, kb, models, reports, cfg, tracking_uri=tracking_uri)
    from lenssearch.headline import write_headline

    write_headline("train", summary.metrics, metrics_out)
    oof = summary.metrics["oof"]
    typer.echo(json.dumps({"network": network, "oof_auc": oof["auc"], "oof_accuracy": oof["accuracy"],
                           "registered": f"lenssearch-{network}/{summary.registered_version}",
                           "trained": summary.trained_splits}))
    typer.echo(f"wrote {reports / 'predictions.ecsv'}")


@app.command("modeling")
@verb
def modeling_cmd(
    kb: Annotated[Path, typer.Option("--kb", help="The knowledge base whose lenses it learns (modeling.kb_variant).")],
    truth: Annotated[Path, typer.Option("--truth", help="The lenses' truth (data/mocks/<variant>/truth.ecsv).")],
    models: Annotated[Path, typer.Option("--models", help="Checkpoints and the trained network: models/modeling.")],
    reports: Annotated[Path, typer.Option("--reports", help="Validation report and cuts: reports/modeling.")],
    tracking_uri: TrackingOption = None,
    mlflow: MlflowFlag = True,
    metrics_out: MetricsOption = None,
    params: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
) -> None:
    """Train the modeling network (lens parameters with 1-sigma uncertainties), validate it, set the rejection
    cuts and register it as lenssearch-modeling."""
    import json

    from lenssearch.modeling.stage import run_modeling

    cfg = load(params, profile)
    m = run_modeling(cfg, kb, truth, models, reports, metrics_out, log_mlflow=mlflow, tracking_uri=tracking_uri)
    typer.echo(json.dumps({"theta_e_median_abs_error_arcsec": round(m["theta_e_median_abs_error_arcsec"], 4),
                           "coverage_1sigma": {p: round(s["coverage_1sigma"], 3) for p, s in m["parameters"].items()},
                           "nonlenses_rejected_fraction": m["nonlenses_rejected_fraction"],
                           "version": m.get("version")}))
    typer.echo(f"wrote {reports}")


@app.command("model-candidates")
@verb
def model_candidates_cmd(
    candidates: Annotated[Path, typer.Option("--candidates", help="The search's candidates (candidates.ecsv).")],
    field: Annotated[Path, typer.Option("--field", help="Field directory (image_<BAND>.fits) the candidates are in.")],
    modeling: Annotated[Path, typer.Option("--modeling", help="model.json of the modeling stage (model URI, cuts).")],
    out: Annotated[Path, typer.Option("--out", help="Folder of candidates.ecsv, planted.ecsv, metrics, gallery.")],
    planted: Annotated[Optional[Path], typer.Option(
        "--planted", help="Planted or known lenses (ECSV with ra, dec): none of them may be rejected.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Model URI instead of model.json's.")] = None,
    kb_nonlenses: Annotated[Optional[Path], typer.Option(
        "--kb-nonlenses", help="nonlenses.ecsv of the modeling stage: also report the KB's held-out non-lens "
        "candidates (needs --predictions, --promotion, --committees).")] = None,
    predictions: Annotated[Optional[Path], typer.Option(
        "--predictions", help="Folder of reports/<network>/predictions.ecsv (out-of-fold scores).")] = None,
    promotion: Annotated[Optional[Path], typer.Option("--promotion", help="promotion.json (champion, threshold).")] = None,
    committees: Annotated[Optional[Path], typer.Option("--committees", help="The committee stage's best.json.")] = None,
    tracking_uri: TrackingOption = None,
    metrics_out: MetricsOption = None,
    params: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
) -> None:
    """Predict the lens parameters of the search's candidates and reject those whose uncertainties exceed the
    modeling stage's cuts (HOLISMOKES XVI, Sect. 3.2); a gallery with the predicted centre and Einstein radius."""
    import json

    from lenssearch.headline import write_headline
    from lenssearch.modeling.candidates import run_model_candidates

    cfg = load(params, profile)
    kb_check = None
    if kb_nonlenses is not None:
        if None in (predictions, promotion, committees):
            fail("--kb-nonlenses needs --predictions, --promotion and --committees")
        kb_check = {"nonlenses_path": kb_nonlenses, "predictions_dir": predictions, "promotion_path": promotion,
                    "committees_path": committees, "kb_variant": dict(cfg.train.kb_variant),
                    "nonlens_variant": cfg.modeling.kb_variant}
    m = run_model_candidates(cfg, candidates, field, modeling, out, planted_path=planted, model_uri=model,
                             tracking_uri=tracking_uri, kb_check=kb_check)
    write_headline("model-candidates", m, metrics_out)
    keys = ("n_candidates", "rejected_fraction_modeling", "rejected_fraction_cleaning", "rejected_fraction_combined",
            "nonlens_rejected_fraction_modeling", "kb_nonlens_candidates_rejected_fraction", "planted_wrongly_rejected")
    typer.echo(json.dumps({k: m.get(k) for k in keys}))
    typer.echo(f"wrote {out}")


independent_app = typer.Typer(
    help="The independent test set (lenstronomy, never trained on): simulate it, score every model on it.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(independent_app, name="independent")


@independent_app.command("simulate")
@verb
def independent_simulate_cmd(
    out: Annotated[Path, typer.Option("--out", help="Cutout set of the independent test set (data/independent).")],
    params: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
) -> None:
    """Simulate lenses (SIE + shear, Sersic source and light) and confusers with lenstronomy."""
    import json

    from lenssearch.independent.simulate import run_independent_simulate

    cfg = load(params, profile)
    summary = run_independent_simulate(cfg, out)
    typer.echo(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in summary.items()}))
    typer.echo(f"wrote {out}")


@independent_app.command("score")
@verb
def independent_score_cmd(
    set_dir: Annotated[Path, typer.Option("--set", help="The independent cutout set (data/independent).")],
    out: Annotated[Path, typer.Option("--out", help="Folder of scores.ecsv, metrics.json, roc.png, summary.md.")],
    model: Annotated[
        Optional[list[str]], typer.Option("--model", help="Model URI (repeatable); default independent.models.")
    ] = None,
    committees: CommitteesOption = None,
    tracking_uri: TrackingOption = None,
    mlflow: MlflowFlag = True,
    metrics_out: MetricsOption = None,
    params: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
) -> None:
    """Score the independent set: AUC overall and by arc S/N, TPR at fixed FPR, FPR by confuser kind."""
    from lenssearch.independent.score import run_independent_score, summary_markdown

    cfg = load(params, profile)
    doc = run_independent_score(cfg, set_dir, out, model_uris=model, committees=committees,
                                tracking_uri=tracking_uri, log_mlflow=mlflow)
    from lenssearch.headline import write_headline

    write_headline("independent", doc, metrics_out)
    typer.echo(summary_markdown(doc).rstrip())
    typer.echo(f"wrote {out}")


# ``lenssearch inspect ...`` (issue 16): the visual inspection's verbs, a sub-app (it imports ``verb`` from here)
from lenssearch.inspect.cli import inspect_app  # noqa: E402

app.add_typer(inspect_app, name="inspect")


def main() -> None:
    """Entry point for ``python -m lenssearch`` and the console script."""
    app(prog_name="lenssearch")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
