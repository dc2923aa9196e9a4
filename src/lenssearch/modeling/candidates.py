"""The ``model-candidates`` stage: the modeling network on the search's candidates, and the rejection by its sigmas.

HOLISMOKES XVI (Sect. 3.2): the candidates' lens parameters are predicted with their uncertainties, and a
candidate whose uncertainty on any cut parameter leaves its cut is rejected as a likely non-lens; the cuts
(``model.json`` of the ``modeling`` stage: the range of each sigma among the KB's held-out lenses at the
predicted theta_E, :mod:`lenssearch.modeling.cuts`) keep every held-out lens. This stage

1. cuts each candidate of ``candidates.ecsv`` (the search's list above threshold, with its sep cleaning columns)
   from the field's images, the KB's cutout size, and predicts ``pred_<parameter>`` and ``sigma_<parameter>``;
2. flags ``modeling_rejected`` (and ``modeling_rejected_by``: the parameters outside their cuts), and gives the
   predicted lens centre on the sky (``pred_ra``, ``pred_dec``);
3. does the same for every planted (or known) lens of the field at its catalogue position, whether or not the
   search found it: a lens the cuts would reject is counted as wrongly rejected;
4. reports the fraction of candidates rejected by the modeling, by the sep cleaning (and duplicates), and by
   either, overall and among the non-lens candidates (``is_lens`` from the search's match to the planted lenses);
5. with ``kb_check``, the same fraction among the KB's non-lens candidates: the cross-validation non-lenses (hard
   negatives included; the modeling network learns from lenses only) that the champion's out-of-fold score puts
   above its threshold (:func:`kb_nonlens_candidates`; a demo field has few non-lens candidates, the KB ~100);
6. writes the graders' gallery (:mod:`lenssearch.modeling.gallery`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from lenssearch.errors import InputFileError
from lenssearch.io import atomic_path, describe_columns, read_ecsv
from lenssearch.simulate.truth import PARAMETERS


def _rate(flags: np.ndarray) -> float | None:
    return float(np.mean(flags)) if flags.size else None


def predict_positions(pyfunc, images, ra, dec, size: int, pixel_scale: float):
    """Cutouts at ``ra, dec`` and the modeling network's table for them (with ``pred_ra``, ``pred_dec``)."""
    x, y = images.world_to_pixel(np.asarray(ra, float), np.asarray(dec, float))
    cutouts, inside = images.cut(x, y, size)
    frame = pyfunc.predict(cutouts)
    half = size // 2
    # the KB's cutouts are centred at pixel (size - 1) / 2, whose offsets the network predicts
    cx = np.floor(x + 0.5) - half + (size - 1) / 2.0
    cy = np.floor(y + 0.5) - half + (size - 1) / 2.0
    pra, pdec = images.pixel_to_world(cx + frame["pred_lens_x_arcsec"].to_numpy() / pixel_scale,
                                      cy + frame["pred_lens_y_arcsec"].to_numpy() / pixel_scale)
    return cutouts, inside, frame, np.asarray(pra), np.asarray(pdec)


def _add_predictions(table, frame, pra, pdec, cuts: dict) -> None:
    from lenssearch.modeling.cuts import reject

    for col in frame.columns:
        table[col] = frame[col].to_numpy()
    table["pred_ra"] = pra
    table["pred_ra"].unit = "deg"
    table["pred_ra"].description = "predicted lens centre, right ascension (ICRS)"
    table["pred_dec"] = pdec
    table["pred_dec"].unit = "deg"
    table["pred_dec"].description = "predicted lens centre, declination (ICRS)"
    sigma = np.stack([frame[f"sigma_{p}"].to_numpy() for p in PARAMETERS], axis=1)
    mean = np.stack([frame[f"pred_{p}"].to_numpy() for p in PARAMETERS], axis=1)
    rejected, by = reject(mean, sigma, cuts)
    table["modeling_rejected"] = rejected
    table["modeling_rejected_by"] = np.array(by, dtype=str) if len(by) else np.zeros(0, str)
    describe_columns(table)


def kb_nonlens_candidates(nonlenses_path, predictions_dir, promotion_path, committees_path,
                          kb_variant: dict | None = None, nonlens_variant: str | None = None) -> dict:
    """The KB's non-lenses (``nonlenses.ecsv`` of the ``modeling`` stage: none seen by the modeling network) in the
    cross-validation folds, whose champion out-of-fold score is at or above its threshold: non-lens candidates
    with real statistics, and the fraction of them that the modeling cuts reject, overall and by confuser kind.
    (The validation split, fold -1, has no out-of-fold score.) ``kb_variant`` (``train.kb_variant``): a member
    trained on another variant scores these cutouts held out (:func:`lenssearch.evaluate.common.load_wide`);
    ``nonlens_variant`` (``modeling.kb_variant``): the variant of these non-lenses, so that a champion none of whose
    members was trained on it still scores them (:func:`lenssearch.evaluate.common.load_on_variant`)."""
    from lenssearch.evaluate.committee import combine
    from lenssearch.evaluate.common import load_on_variant, load_wide, read_committees

    nonlenses = read_ecsv(nonlenses_path, "modeling stage's non-lenses")
    if "fold" in nonlenses.colnames:
        nonlenses = nonlenses[np.asarray(nonlenses["fold"], int) >= 0]
    try:
        promotion = json.loads(Path(promotion_path).read_text())
        best, threshold = str(promotion["best"]), float(promotion["threshold"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputFileError(f"{promotion_path}: not a promotion.json ({exc})") from None
    committee = next((c for c in read_committees(Path(committees_path)) if c.get("name") == best), None)
    members, rule = (list(committee["members"]), committee["rule"]) if committee else ([best], None)
    if kb_variant is not None and nonlens_variant is not None:
        wide = load_on_variant(Path(predictions_dir), members, nonlens_variant, kb_variant)
    else:
        wide = load_wide(Path(predictions_dir), members, kb_variant=kb_variant)
    scores = np.stack([np.asarray(wide[f"p_{m}"], float) for m in members])
    score = combine(scores, rule) if rule else scores[0]
    by_id = dict(zip(np.asarray(wide["id"]).astype(str), score))
    ids = np.asarray(nonlenses["id"]).astype(str)
    scored = np.array([i in by_id for i in ids], bool)
    mixed = kb_variant is not None and len({kb_variant.get(m) for m in members} | ({nonlens_variant} - {None})) > 1
    if not scored.all() and (not mixed or not scored.any()):
        missing = ids[~scored]
        raise InputFileError(f"{nonlenses_path}: {len(missing)} non-lens(es) have no out-of-fold score of '{best}' "
                             f"in {predictions_dir}, e.g. '{missing[0]}' (the modeling and train stages use other KBs?)")
    # members of other variants do not score the plain member cutouts that their own KB holds (seen in training)
    n_unscored = int((~scored).sum())
    nonlenses, ids = nonlenses[scored], ids[scored]
    oof = np.array([by_id[i] for i in ids])
    cand = oof >= threshold
    rejected = np.asarray(nonlenses["modeling_rejected"], bool)
    kinds = np.asarray(nonlenses["confuser"]).astype(str)
    return {"champion": best, "threshold": threshold, "n_nonlenses": int(len(ids)), "n_candidates": int(cand.sum()),
            "n_nonlenses_seen_by_a_member": n_unscored,
            "rejected_fraction_modeling": _rate(rejected[cand]),
            "rejected_fraction_all_nonlenses": _rate(rejected),
            "by_kind": {k: {"n_candidates": int((cand & (kinds == k)).sum()),
                            "rejected": int((cand & rejected & (kinds == k)).sum())} for k in sorted(set(kinds))}}


def run_model_candidates(cfg, candidates_path, field_dir, model_json, out_dir, *, planted_path=None,
                         model_uri: str | None = None, tracking_uri: str | None = None, progress: bool = True,
                         kb_check: dict | None = None) -> dict:
    """The stage (see the module docstring); returns the metrics written to ``out_dir/metrics.json``."""
    from lenssearch import tracking
    from lenssearch.modeling.cuts import parse_cuts
    from lenssearch.modeling.gallery import write_modeling_gallery
    from lenssearch.search.inputs import FieldImages
    from lenssearch.search.sources import read_planted

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    model_json = Path(model_json)
    if not model_json.is_file():
        raise InputFileError(f"{model_json}: no such file (run the modeling stage)")
    try:
        info = json.loads(model_json.read_text())
        raw_cuts = dict(info["cuts"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InputFileError(f"{model_json}: not a modeling model.json ({exc})") from None
    cuts = parse_cuts(raw_cuts, str(model_json))
    uri = model_uri or info.get("model_uri")
    if not uri:
        raise InputFileError(f"{model_json}: no model_uri (the modeling stage ran without MLflow); give --model")
    cands = read_ecsv(candidates_path, "candidate list")
    for col in ("id", "ra", "dec"):
        if col not in cands.colnames:
            raise InputFileError(f"{candidates_path}: candidate list lacks column '{col}'")
    planted = read_planted(planted_path)
    pyfunc = tracking.load_pyfunc(uri, tracking_uri)
    t0 = time.perf_counter()
    size = cfg.modeling.network.input_pixels
    pix = cfg.base.pixel_scale_arcsec
    with FieldImages.from_field_dir(field_dir, tuple(cfg.base.bands)) as images:
        noise = images.noise_sigma
        cut_c, _, frame, pra, pdec = predict_positions(pyfunc, images, cands["ra"], cands["dec"], size, pix)
        _add_predictions(cands, frame, pra, pdec, cuts)
        if planted is not None and len(planted):
            _, _, pframe, ppra, ppdec = predict_positions(pyfunc, images, planted["ra"], planted["dec"], size, pix)
            _add_predictions(planted, pframe, ppra, ppdec, cuts)
    t_model = time.perf_counter() - t0

    modeled = np.asarray(cands["modeling_rejected"], bool)
    cleaned = np.zeros(len(cands), bool)
    if "rejected_by" in cands.colnames:
        cleaned |= np.array([str(v) not in ("", "--", "None") for v in cands["rejected_by"]], bool)
    if "duplicate_of" in cands.colnames:
        cleaned |= np.array([str(v) not in ("", "--", "None") for v in cands["duplicate_of"]], bool)
    is_lens = np.asarray(cands["is_lens"], bool) if "is_lens" in cands.colnames else None
    metrics = {
        "model_uri": uri, "cuts": cuts, "n_candidates": int(len(cands)),
        "rejected_fraction_modeling": _rate(modeled), "rejected_fraction_cleaning": _rate(cleaned),
        "rejected_fraction_combined": _rate(modeled | cleaned),
    }
    if is_lens is not None:
        non = ~is_lens
        metrics.update({
            "n_nonlens_candidates": int(non.sum()), "n_lens_candidates": int(is_lens.sum()),
            "nonlens_rejected_fraction_modeling": _rate(modeled[non]),
            "nonlens_rejected_fraction_cleaning": _rate(cleaned[non]),
            "nonlens_rejected_fraction_combined": _rate((modeled | cleaned)[non]),
            "lens_candidates_rejected_by_modeling": int((modeled & is_lens).sum()),
        })
    if planted is not None:
        wrong = np.asarray(planted["modeling_rejected"], bool) if len(planted) else np.zeros(0, bool)
        metrics.update({"n_planted": int(len(planted)), "planted_wrongly_rejected": int(wrong.sum()),
                        "planted_kept_fraction": _rate(~wrong)})
    if kb_check:
        kb = kb_nonlens_candidates(**kb_check)
        metrics["kb_nonlens_candidates"] = kb
        metrics["kb_nonlens_candidates_rejected_fraction"] = kb["rejected_fraction_modeling"]
    n_modeled = len(cands) + (len(planted) if planted is not None else 0)
    metrics["candidates_per_second"] = n_modeled / t_model if t_model > 0 else None

    out_dir.mkdir(parents=True, exist_ok=True)
    provenance = {"model_uri": uri, "rejection_cuts": json.dumps(cuts)}
    with atomic_path(out_dir / "candidates.ecsv") as tmp:
        describe_columns(cands, provenance).write(tmp, format="ascii.ecsv")
    if planted is not None:
        with atomic_path(out_dir / "planted.ecsv") as tmp:
            describe_columns(planted, provenance).write(tmp, format="ascii.ecsv")
    gallery = out_dir / "gallery"
    with atomic_path(gallery) as tmp:
        order = np.argsort(-np.asarray(cands["score"], float)) if "score" in cands.colnames else np.arange(len(cands))
        write_modeling_gallery(tmp, cands[order], cut_c[order], noise, pix, cfg.search.gallery.stretch_sigma,
                               cfg.search.gallery.lupton_q, f"Modeled candidates ({len(cands)})")
    with atomic_path(out_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics
