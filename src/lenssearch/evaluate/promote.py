"""The ``promote`` stage: register the best network or committee by the gate metric as a version of the served
model and move its alias (``champion``) only if it beats the current champion.

Imports only what the decision needs (no tables or figures): editing a figure does not re-run promote.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from lenssearch.errors import LensSearchError
from lenssearch.evaluate.common import clean_json, gate_label, gate_options, subjects, write_json
from lenssearch.evaluate.metrics import gate_metric, roc_auc


#: Decimals of the ``gate_value`` tag. The challenger is compared with the champion at this precision: a tag rounded
#: down (0.961296 for 0.9612962...) must not make the same gate value a win when promote runs again.
GATE_DECIMALS = 6


def beats_champion(value: float, champion_value: float, min_improvement: float) -> bool:
    """Whether a challenger's gate value beats the champion's tag by more than ``min_improvement`` (a tie never
    does), both at the tag's precision (:data:`GATE_DECIMALS`)."""
    return round(float(value), GATE_DECIMALS) > round(float(champion_value), GATE_DECIMALS) + min_improvement


def _candidate_key(source: str, gate: str, value: float, threshold: float) -> str:
    text = f"{source}|{gate}|{value:.{GATE_DECIMALS}f}|{threshold:.6f}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def evaluation_set_key(wide, kb_hashes=()) -> str:
    """A fingerprint of the cutouts and labels the gate values are measured on (ids and labels, sorted) and of the
    KBs they come from (``kb_hashes``: the ``kb_dvc_md5`` of each network's predictions, ``load_wide``'s meta).

    Two gate values are comparable only if they come from the same out-of-fold set: a KB rebuilt with another
    recipe (more, fainter or more compact sources; other hard negatives) changes what a gate value means, even
    when its ids and labels stay the same (ids are positional: ``visible-neg-...-00001`` whatever it shows)."""
    ids = [str(i) for i in wide["id"]] if "id" in wide.colnames else [str(k) for k in range(len(wide))]
    pairs = sorted(zip(ids, (int(v) for v in wide["label"])))
    text = "\n".join(f"{i}|{y}" for i, y in pairs)
    kbs = sorted({str(h) for h in kb_hashes if h})
    if kbs:
        text += "\nkb:" + ",".join(kbs)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_promote(cfg, predictions_dir: Path, committees_json: Path | None, thresholds_json: Path, out: Path,
                dry_run: bool = False, tracking_uri: str | None = None, echo=print) -> dict:
    """Register the best model by the gate metric; move the alias only if it beats the current champion.

    Candidates are the networks (their newest ``lenssearch-<network>`` version) and the committees of
    ``best.json`` that have a logged model. The champion's gate value is read from its version's tags and is
    compared only if it was measured with the same gate (metric and option); a tie never moves the alias. A
    champion whose gate was measured on another out-of-fold set (``gate_set`` tag, :func:`evaluation_set_key`:
    the KB changed) is not compared either: the alias moves to the best model of the current KB.
    """
    from lenssearch import tracking

    p = cfg.promote
    tracking.setup(tracking_uri)
    wide, models, committees = subjects(cfg, predictions_dir, committees_json)
    labels = np.asarray(wide["label"])
    thresholds_json = Path(thresholds_json)
    if not thresholds_json.exists():
        raise LensSearchError(f"{thresholds_json}: no such thresholds file (written by the tune stage)")
    tuned = json.loads(thresholds_json.read_text()).get("models", {})
    label = gate_label(p.gate)
    opts = gate_options(p.gate)
    cands, skipped = [], []
    for name, scores in models.items():
        kind = "network" if name in cfg.evaluate.networks else "committee"
        if kind == "network":
            try:
                uri = tracking.latest_model_uri(f"lenssearch-{name}")
            except tracking.RegistryError as exc:
                skipped.append({"name": name, "reason": str(exc)})
                continue
        else:
            uri = next((c.get("model_uri") for c in committees if c["name"] == name), None)
            if not uri:
                skipped.append({"name": name, "reason": "no committee model logged (committee.log_models)"})
                continue
        value = gate_metric(opts["metric"], labels, scores, purity_min=opts["purity_min"], fpr=opts["fpr"])
        cands.append({"name": name, "kind": kind, "model_uri": uri, "gate_value": value,
                      "auc": roc_auc(labels, scores)})
    if not cands:
        raise LensSearchError(f"no candidate model to promote: {skipped}")
    cands.sort(key=lambda c: (-c["gate_value"], -np.nan_to_num(c["auc"], nan=-1.0), c["name"]))  # ties: AUC
    best = cands[0]
    t = tuned.get(best["name"])
    threshold = float(t["threshold"]) if t else float(cfg.evaluate.threshold)
    champion = tracking.get_champion(p.registered_model, p.alias)
    gate_set = evaluation_set_key(wide, [wide.meta["kb_dvc_md5"].get(n, "") for n in cfg.evaluate.networks])
    comparable = champion is not None and champion.gate_metric == label and champion.gate_value is not None
    if champion is None:
        beats, reason = True, "no current champion"
    elif not comparable:
        beats, reason = False, (f"current champion v{champion.version} has no '{label}' value in its tags "
                                f"(it has {champion.gate_metric!r}); alias left unchanged")
    elif champion.tags.get("gate_set") != gate_set:
        beats, reason = True, (f"current champion v{champion.version}'s gate was measured on another out-of-fold set "
                               f"(gate_set {champion.tags.get('gate_set') or 'unrecorded'}, now {gate_set}: the KB "
                               f"changed); the alias follows the best model of the current KB")
    else:
        beats = beats_champion(best["gate_value"], champion.gate_value, p.min_improvement)
        reason = (f"{best['gate_value']:.4f} {'>' if beats else '<='} champion v{champion.version} "
                  f"{champion.gate_value:.4f} + {p.min_improvement:g}")
    summary = {
        "gate": label, "registered_model": p.registered_model, "alias": p.alias, "dry_run": dry_run,
        "candidates": cands, "skipped": skipped, "best": best["name"], "best_gate_value": best["gate_value"],
        "threshold": threshold,
        "champion_version": None if champion is None else champion.version,
        "champion_gate_value": None if champion is None else champion.gate_value,
        "alias_moved": False, "reason": reason, "version": None, "gate_set": gate_set,
    }
    echo(f"gate {label}:")
    for c in cands:
        echo(f"  {c['name']:<40s} {c['gate_value']:.4f}  (AUC {c['auc']:.4f})  {c['model_uri']}")
    champ_txt = "none" if champion is None else f"v{champion.version} ({champion.gate_metric} = {champion.gate_value})"
    echo(f"champion {p.registered_model}@{p.alias}: {champ_txt}")
    echo(f"challenger {best['name']}: {best['gate_value']:.4f} -> {'promote' if beats else 'keep champion'} ({reason})")
    if not dry_run:
        source = best["model_uri"]
        tags = {
            "threshold": f"{threshold:.6g}",
            "qtp_lower": f"{float(t['qtp_lower']):.6g}" if t else "",
            "threshold_objective": cfg.tune.objective if t else "default",
            "gate_metric": label,
            "gate_value": f"{best['gate_value']:.{GATE_DECIMALS}f}",
            "gate_set": gate_set,
            "candidate": best["name"],
            "kind": best["kind"],
            "source_uri": source,
        }
        tags["candidate_key"] = _candidate_key(f"{source}|{gate_set}", label, best["gate_value"], threshold)
        variant = tracking.model_version_tags(source).get("kb_variant") if source.startswith("models:/") else None
        version = tracking.register_version(
            source, p.registered_model, tags,
            description=(f"{best['name']} ({best['kind']}), from {source}"
                         + (f", trained on KB variant '{variant}'" if variant else "")
                         + f"; gate {label} = {best['gate_value']:.4f} (out-of-fold), decision threshold "
                           f"{threshold:.4g} ({tags['threshold_objective']})."),
            model_description=(f"The served lens finder of lenssearch: the best network or committee by the gate "
                               f"metric {label}, registered by the promote stage; '@{p.alias}' points to the "
                               f"version that beat the previous one. Input: raw calibrated cutouts N x H x W x "
                               f"bands (float32); output: the lens score. Each version's tags hold its decision "
                               f"threshold (tune stage), gate value and source model."),
        )
        summary["version"] = version
        if beats:
            tracking.set_alias(p.registered_model, p.alias, version)
            summary["alias_moved"] = True
            echo(f"{p.registered_model}@{p.alias} -> version {version}")
        write_json(out, clean_json(summary))
    return summary
