"""Score the independent test set with registered networks, committees and the champion.

Inputs: the cutout set of ``independent-set`` (:mod:`lenssearch.independent.simulate`) and model URIs
(``independent.models``: ``models:/lenssearch@champion`` and each ``models:/lenssearch-<network>/latest``; the
selected committees of ``reports/committee/best.json`` when given). Every model is loaded before any scoring, so a
URI that names no model fails at once (CLI exit 2). Outputs, in ``--out``:

- ``scores.ecsv``: ``id``, ``kind``, ``label``, the arc S/N columns, one ``p_<model>`` column per model;
- ``metrics.json``: per model the AUC overall, by arc-S/N bin (``independent.snr_bins``) and for the lenses at
  ``S/N >= independent.snr_min`` against all non-lenses; TPR at the false-positive rates ``independent.fprs``
  (``null``, "not measurable", below ``1 / N_neg``; :func:`lenssearch.evaluate.metrics.tpr_at_fpr`); at the model's
  threshold (the version's tuned ``threshold`` tag, else ``independent.default_threshold``) the TPR and the
  false-positive rate of every confuser kind, and per kind the AUC of the ``S/N >= snr_min`` lenses against that
  kind alone (``fpr_by_kind.<kind>.auc_snr_ge_<snr_min>``: which kind a model ranks above lenses);
- ``roc.png`` (one curve per model) and ``summary.md`` (a table for the evaluation report).

The arc S/N of a lens for a model is that of the bands the model sees (quadrature sum of ``lensed_snr_<band>``):
all three for the multi-band networks, committees and the champion, one for a single-band network.

A model takes raw cutouts N x 128 x 128 x B float32 in e-/s. A single-band network (input schema with one channel)
gets its own band, named by the registered model (``lenssearch-f814w`` -> F814W), as the committees feed them
(:mod:`lenssearch.evaluate.committee_model`). The set is never trained on: nothing here writes to a KB.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np

from lenssearch.errors import InputFileError, LensSearchError

#: Issue 13's targets for the champion on this set.
TARGET_AUC_OVERALL = 0.85
TARGET_AUC_BRIGHT = 0.95


@dataclasses.dataclass
class LoadedModel:
    """A model ready to score: its column label, URI, the channels it reads, its threshold and scorer."""

    label: str
    uri: str
    channels: tuple[int, ...]
    threshold: float
    threshold_source: str
    scorer: object  # lenssearch.search.scoring.Scorer
    source: str = ""  # the logged model behind a registered version (its 'source_uri' tag), else the URI itself


def _input_channels(model) -> int | None:
    """Channels of the model's input (last axis of its tensor signature), or None when it does not say."""
    try:
        schema = model.metadata.get_input_schema()
    except AttributeError:
        return None
    if schema is None or not getattr(schema, "inputs", None):
        return None
    shape = getattr(schema.inputs[0], "shape", None)
    if not shape or len(shape) != 4 or shape[-1] in (-1, None):
        return None
    return int(shape[-1])


def model_channels(uri: str, n_channels: int | None, bands: tuple[str, ...],
                   tags: dict[str, str] | None = None) -> tuple[int, ...]:
    """The cutout channels a model reads: all bands, or the one band of a single-band model, named by its registered
    name (``lenssearch-f814w``) or by its version's ``network`` / ``candidate`` tag (a single-band network promoted
    to ``lenssearch@champion``).

    Raises
    ------
    LensSearchError
        A model whose input has a channel count other than 1 or ``len(bands)``, or a single-band model whose name
        and tags name no band.
    """
    if n_channels is None or n_channels == len(bands):
        return tuple(range(len(bands)))
    if n_channels == 1:
        match = re.match(r"models:/([^/@]+)", uri)
        names = [match.group(1) if match else "", *(str((tags or {}).get(k, "")) for k in ("network", "candidate"))]
        for name in (n.lower() for n in names if n):
            for k, band in enumerate(bands):
                if name == band.lower() or name.endswith("-" + band.lower()):
                    return (k,)
        raise LensSearchError(f"model '{uri}' takes one band but neither its name nor its tags name one of "
                              f"{list(bands)}")
    raise LensSearchError(f"model '{uri}' takes {n_channels} channels; the set has {len(bands)} bands {list(bands)}")


def default_label(uri: str) -> str:
    """``models:/lenssearch@champion`` -> ``champion``; ``models:/lenssearch-vgg/latest`` -> ``vgg``."""
    from lenssearch.search.scoring import model_label

    match = re.fullmatch(r"models:/[^/@]+@([^/]+)", uri)
    if match and model_label(uri) == "lenssearch":
        return match.group(1)
    label = model_label(uri)
    return re.sub(r"[^A-Za-z0-9_]+", "_", label)


def committee_models(best_json: str | Path) -> list[tuple[str, str]]:
    """``(label, uri)`` of the selected committees logged as models in the committee stage's ``best.json``."""
    path = Path(best_json)
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read the committee stage's best.json ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{path}: not valid JSON ({exc})") from None
    out = []
    for entry in doc.get("committees") or []:
        if entry.get("model_uri"):
            out.append((f"committee_{re.sub(r'[^A-Za-z0-9_]+', '_', str(entry['name']))}", str(entry["model_uri"])))
    return out


def load_models(specs: list[tuple[str, str]], bands: tuple[str, ...], default_threshold: float,
                tracking_uri: str) -> list[LoadedModel]:
    """Load every ``(label, uri)``; LensSearchError naming the first URI that names no model."""
    from lenssearch import tracking
    from lenssearch.search.scoring import Scorer, batch_predictor, threshold_from_tags

    labels = [label for label, _ in specs]
    duplicated = sorted({x for x in labels if labels.count(x) > 1})
    if duplicated:
        raise LensSearchError(f"model labels {duplicated} are given twice; each model once, please")
    loaded = []
    for label, uri in specs:
        model = tracking.load_pyfunc(uri, tracking_uri=tracking_uri)
        try:
            tags = tracking.model_version_tags(uri, tracking_uri=tracking_uri)
        except Exception as exc:  # an alias or version that load_pyfunc resolved should have tags; say why not
            raise LensSearchError(f"model URI '{uri}': cannot read its version tags ({exc})") from None
        tuned = threshold_from_tags(tags)
        channels = model_channels(uri, _input_channels(model), bands, tags)
        # a committee pyfunc returns its score alone unless asked for its members (search.scoring.MEMBERS_PARAM)
        predict = batch_predictor(model)
        loaded.append(LoadedModel(
            label=label, uri=uri, channels=channels,
            threshold=tuned if tuned is not None else float(default_threshold),
            threshold_source="tuned (version tag)" if tuned is not None else "default",
            scorer=Scorer(predict, uri, tuned), source=str(tags.get("source_uri") or uri),
        ))
    return loaded


def score_set(set_dir: str | Path, models: list[LoadedModel], batch_size: int):
    """Scores of every cutout by every model: ``(metadata Table, {label: scores}, bands)``, in batches."""
    import h5py

    from lenssearch.simulate.store import CUTOUTS, read_cutout_set

    _, meta, attrs = read_cutout_set(set_dir, load_cutouts=False)
    bands = tuple(attrs["bands"])
    if "label" not in meta.colnames or "kind" not in meta.colnames:
        raise InputFileError(f"{set_dir}: metadata.ecsv lacks 'label' or 'kind' (not an independent set?)")
    if batch_size < 1:
        raise LensSearchError(f"independent.batch_size must be >= 1, got {batch_size}")
    # a model given twice (the champion is the version of a selected committee's logged model) is scored once
    first = {}
    same_as = {m.label: first.setdefault((m.source or m.uri, m.channels), m.label) for m in models}
    scored = [m for m in models if same_as[m.label] == m.label]
    scores = {m.label: np.empty(len(meta)) for m in scored}
    with h5py.File(Path(set_dir) / CUTOUTS, "r") as h5:
        data = h5["cutouts"]
        for start in range(0, len(meta), batch_size):
            batch = np.asarray(data[start : start + batch_size], dtype=np.float32)
            for m in scored:
                x = batch if len(m.channels) == len(bands) else batch[..., list(m.channels)]
                scores[m.label][start : start + len(batch)] = m.scorer.score(np.ascontiguousarray(x)).main
    for m in models:
        scores.setdefault(m.label, scores[same_as[m.label]])
    return meta, scores, bands


def model_snr(meta, bands: tuple[str, ...], channels: tuple[int, ...]) -> np.ndarray:
    """Arc S/N of each cutout in the bands a model sees (quadrature sum)."""
    values = np.stack([np.asarray(meta[f"lensed_snr_{bands[k]}"], dtype=float) for k in channels])
    return np.sqrt(np.sum(values**2, axis=0))


def _auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if labels.min(initial=1) == labels.max(initial=0):
        return None
    return float(roc_auc_score(labels, scores))


def model_metrics(meta, scores: np.ndarray, snr: np.ndarray, threshold: float, snr_bins, snr_min: float,
                  fprs) -> dict:
    """AUC overall, by arc-S/N bin and at S/N >= ``snr_min``; TPR at ``fprs``; rates at ``threshold``; per
    confuser kind its FPR at ``threshold`` and the AUC of the S/N >= ``snr_min`` lenses against that kind alone."""
    from lenssearch.evaluate.metrics import min_measurable_fpr, tpr_at_fpr

    labels = np.asarray(meta["label"], dtype=int)
    kinds = np.asarray(meta["kind"]).astype(str)
    neg = labels == 0
    pos = labels == 1
    by_bin = []
    for lo, hi in zip(snr_bins[:-1], snr_bins[1:]):
        sel = pos & (snr >= lo) & (snr < hi)
        keep = sel | neg
        by_bin.append({"snr_min": lo, "snr_max": hi, "n_lenses": int(sel.sum()),
                       "auc": _auc(labels[keep], scores[keep]) if sel.any() else None})
    bright_lenses = pos & (snr >= snr_min)
    selected = scores >= threshold

    def auc_bright_against(nonlenses):
        keep = bright_lenses | nonlenses
        return _auc(labels[keep], scores[keep]) if bright_lenses.any() else None

    fpr_by_kind = {}
    for kind in sorted(set(kinds[neg])):
        # its FPR at the threshold, and the AUC of the S/N >= snr_min lenses against it alone (which kind outranks them)
        k = neg & (kinds == kind)
        fpr_by_kind[kind] = {"n": int(k.sum()), "fpr": float(selected[k].mean()),
                             f"auc_snr_ge_{snr_min:g}": auc_bright_against(k)}
    tpr_threshold = float(selected[pos].mean()) if pos.any() else None
    return {
        "n_lenses": int(pos.sum()),
        "n_nonlenses": int(neg.sum()),
        "auc": _auc(labels, scores),
        f"auc_snr_ge_{snr_min:g}": auc_bright_against(neg),
        f"n_lenses_snr_ge_{snr_min:g}": int(bright_lenses.sum()),
        "auc_by_snr_bin": by_bin,
        "tpr_at_fpr": {f"{f:g}": tpr_at_fpr(labels, scores, f) for f in fprs},
        "min_measurable_fpr": min_measurable_fpr(int(neg.sum())),
        "threshold": float(threshold),
        "tpr_at_threshold": tpr_threshold,
        "fpr_at_threshold": float(selected[neg].mean()) if neg.any() else None,
        "fpr_by_kind": fpr_by_kind,
    }


def _json_safe(value):
    """Non-finite floats (the open last S/N bin's ``inf``) as ``null``: metrics.json is strict JSON for DVC."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def summary_markdown(doc: dict) -> str:
    """The table of the evaluation report: one row per model."""
    models = doc["models"]
    snr_min = doc["snr_min"]
    fprs = doc["fprs"]
    first = next(iter(models.values()), None)
    bins = [(b["snr_min"], b["snr_max"]) for b in first["auc_by_snr_bin"]] if first else []
    kinds = sorted({k for m in models.values() for k in m["fpr_by_kind"]})
    head = (["model", "threshold", "AUC", f"AUC S/N>={snr_min:g}"]
            + [f"AUC S/N {lo:g}-{hi:g}" for lo, hi in bins]
            + [f"TPR@FPR={f:g}" for f in fprs] + ["TPR@thr"] + [f"FPR {k}" for k in kinds])
    lines = [
        "## Independent test set (lenstronomy; never trained on)",
        "",
        f"{doc['n_lenses']} lenses (SIE + shear, Sersic source and lens light) and {doc['n_nonlenses']} non-lenses "
        f"({', '.join(f'{k} {v}' for k, v in doc['kinds'].items() if k != 'lens')}). Arc S/N: matched filter of the "
        "noiseless lensed source in the model's bands. TPR at an FPR below 1/N_neg is not measurable (n/a). "
        "FPR by kind: fraction of each confuser kind at or above the model's threshold.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for label, m in models.items():
        row = [label, _fmt(m["threshold"]), _fmt(m["auc"]), _fmt(m[f"auc_snr_ge_{snr_min:g}"])]
        row += [_fmt(b["auc"]) + f" ({b['n_lenses']})" for b in m["auc_by_snr_bin"]]
        row += [_fmt(m["tpr_at_fpr"][f"{f:g}"]) for f in fprs]
        row += [_fmt(m["tpr_at_threshold"])]
        row += [_fmt(m["fpr_by_kind"].get(k, {}).get("fpr")) for k in kinds]
        lines.append("| " + " | ".join(row) + " |")
    key = f"auc_snr_ge_{snr_min:g}"
    head = ["model"] + [f"AUC vs {k}" for k in kinds]
    lines += ["", f"Lenses at arc S/N >= {snr_min:g} against one kind of non-lens at a time (AUC): the kinds a model "
              "ranks above real lenses, whatever its threshold.", "",
              "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, m in models.items():
        row = [label] + [_fmt(m["fpr_by_kind"].get(k, {}).get(key)) for k in kinds]
        lines.append("| " + " | ".join(row) + " |")
    champion = doc.get("champion")
    if champion:
        lines += ["", f"Issue 13 targets for the champion ({champion['label']}): AUC >= {TARGET_AUC_OVERALL} overall: "
                  f"{_fmt(champion['auc'])} ({'met' if champion['overall_met'] else 'NOT met'}); AUC >= "
                  f"{TARGET_AUC_BRIGHT} at arc S/N >= {snr_min:g}: {_fmt(champion['auc_bright'])} "
                  f"({'met' if champion['bright_met'] else 'NOT met'})."]
    return "\n".join(lines) + "\n"


def roc_figure(path: Path, meta, scores: dict[str, np.ndarray]) -> None:
    """ROC curves (log false-positive rate) of every model on the independent set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    labels = np.asarray(meta["label"], dtype=int)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    n_neg = int(np.sum(labels == 0))
    for label, s in scores.items():
        if labels.min() == labels.max():
            break
        fpr, tpr, _ = roc_curve(labels, s)
        ax.plot(np.maximum(fpr, 0.5 / max(n_neg, 1)), tpr, label=label)
    ax.axvline(1.0 / max(n_neg, 1), color="grey", ls=":", lw=1, label="1 / N_neg")
    ax.set_xscale("log")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title("Independent test set")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def run_independent_score(cfg, set_dir: str | Path, out_dir: str | Path, model_uris: list[str] | None = None,
                          committees: str | Path | None = None, tracking_uri: str | None = None,
                          log_mlflow: bool = True) -> dict:
    """Score the set with every model and write scores, metrics, ROC and summary (see the module docstring)."""
    from astropy.table import Table

    from lenssearch import tracking
    from lenssearch.io import atomic_path
    from lenssearch.simulate.store import read_cutout_set

    ind = cfg.independent
    tracking_uri = tracking.resolve_tracking_uri(tracking_uri)
    uris = list(model_uris) if model_uris else list(ind.models)
    specs = [(default_label(u), u) for u in uris]
    if committees is not None:
        specs += committee_models(committees)
    if not specs:
        raise LensSearchError("no model to score: give --model or independent.models")
    _, meta0, attrs = read_cutout_set(set_dir, load_cutouts=False)
    bands = tuple(attrs["bands"])
    missing = [f"lensed_snr_{b}" for b in bands if f"lensed_snr_{b}" not in meta0.colnames]
    if missing:
        raise InputFileError(f"{set_dir}: metadata.ecsv lacks {missing} (not an independent set?)")
    snr_bins = tuple(float(b) for b in ind.snr_bins)
    if len(snr_bins) < 2 or any(hi <= lo for lo, hi in zip(snr_bins[:-1], snr_bins[1:])):
        raise LensSearchError(f"independent.snr_bins must increase, got {list(snr_bins)}")
    models = load_models(specs, bands, ind.default_threshold, tracking_uri)
    meta, scores, bands = score_set(set_dir, models, ind.batch_size)

    doc = {
        "set": str(set_dir), "n_lenses": int(np.sum(meta["label"] == 1)),
        "n_nonlenses": int(np.sum(meta["label"] == 0)),
        "kinds": {k: int(np.sum(np.asarray(meta["kind"]).astype(str) == k)) for k in dict.fromkeys(meta["kind"])},
        "snr_min": float(ind.snr_min), "snr_bins": list(snr_bins), "fprs": list(ind.fprs), "models": {},
    }
    table = Table()
    for name in ("id", "kind", "label", "lensed_snr", *[f"lensed_snr_{b}" for b in bands]):
        table[name] = meta[name]
    for m in models:
        snr = model_snr(meta, bands, m.channels)
        metrics = model_metrics(meta, scores[m.label], snr, m.threshold, snr_bins, ind.snr_min, ind.fprs)
        metrics.update(uri=m.uri, bands=[bands[k] for k in m.channels], threshold_source=m.threshold_source)
        doc["models"][m.label] = metrics
        table[f"p_{m.label}"] = scores[m.label]
        table[f"p_{m.label}"].description = f"lens probability of {m.uri}"
    champion = next((m for m in models if m.uri.endswith("@champion")), None)
    if champion is not None:
        cm = doc["models"][champion.label]
        bright = cm[f"auc_snr_ge_{ind.snr_min:g}"]
        doc["champion"] = {
            "label": champion.label, "auc": cm["auc"], "auc_bright": bright,
            "overall_met": cm["auc"] is not None and cm["auc"] >= TARGET_AUC_OVERALL,
            "bright_met": bright is not None and bright >= TARGET_AUC_BRIGHT,
        }

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from lenssearch.io import describe_columns

    describe_columns(table, {
        "models": {m.label: {"uri": m.uri, "version": _version(m.uri, tracking_uri), "threshold": m.threshold,
                             "threshold_source": m.threshold_source} for m in models},
    })
    with atomic_path(out_dir / "scores.ecsv") as tmp:
        table.write(tmp, format="ascii.ecsv")
    with atomic_path(out_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(_json_safe(doc), indent=2, allow_nan=False) + "\n")
    with atomic_path(out_dir / "roc.png") as tmp:
        roc_figure(tmp, meta, scores)
    with atomic_path(out_dir / "summary.md") as tmp:
        tmp.write_text(summary_markdown(doc))

    if log_mlflow:
        flat = {}
        for label, m in doc["models"].items():
            flat[f"{label}.auc"] = m["auc"]
            flat[f"{label}.auc_snr_ge_{ind.snr_min:g}"] = m[f"auc_snr_ge_{ind.snr_min:g}"]
            for b in m["auc_by_snr_bin"]:
                flat[f"{label}.auc_snr_{b['snr_min']:g}_{b['snr_max']:g}"] = b["auc"]
            for f, v in m["tpr_at_fpr"].items():
                flat[f"{label}.tpr_at_fpr_{f}"] = v
            flat[f"{label}.tpr_at_threshold"] = m["tpr_at_threshold"]
            for kind, v in m["fpr_by_kind"].items():
                flat[f"{label}.fpr_{kind}"] = v["fpr"]
                flat[f"{label}.auc_snr_ge_{ind.snr_min:g}_vs_{kind}"] = v[f"auc_snr_ge_{ind.snr_min:g}"]
        with tracking.tracked_run("independent", experiment=ind.experiment,
                                  params={"set": str(set_dir), "models": ",".join(m.uri for m in models),
                                          "n_lenses": doc["n_lenses"], "n_nonlenses": doc["n_nonlenses"],
                                          "snr_bins": list(snr_bins), "snr_min": ind.snr_min},
                                  tags={"lenssearch.stage": "independent"}, tracking_uri=tracking_uri,
                                  artifact_root=tracking.artifact_root_for(tracking_uri) / ind.experiment):
            tracking.log_metrics({k: v for k, v in flat.items() if v is not None and math.isfinite(v)})
            tracking.log_artifacts([out_dir / n for n in ("scores.ecsv", "metrics.json", "roc.png", "summary.md")])
    return doc


def _version(uri: str, tracking_uri: str | None) -> str | None:
    """The registered version number behind a ``models:/`` URI (None for others or when it cannot be resolved)."""
    from lenssearch import tracking

    try:
        return tracking.resolve_model_version(uri, tracking_uri)
    except Exception:  # noqa: BLE001  (the model was loaded; its version is provenance only)
        return None
