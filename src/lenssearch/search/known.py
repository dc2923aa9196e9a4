"""The ``known-lenses`` verb's pure function: each known lens's class per network (Angora et al. 2023, Table A.6).

:func:`run_known_lenses` scores a catalogue of known lenses (RA, Dec, label secure/uncertain/no) with one or more
models (and each committee member), through the same steps 1-4 as a search (:func:`.pipeline.score_chunk`), and
writes the analogue of Table A.6: TP / qTP / FN per network and the totals over secure systems.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from astropy.table import Table

from lenssearch.errors import LensSearchError
from lenssearch.io import atomic_path, check_output_folder
from lenssearch.search import classes
from lenssearch.search.pipeline import check_cutout_size, log_run, model_version, score_table, write_table
from lenssearch.search.scoring import Scorer, load_scorer
from lenssearch.search.sources import SearchInput


def run_known_lenses(
    config,
    inp: SearchInput,
    out_dir: str | Path,
    model_uris: Sequence[str],
    *,
    tracking_uri: str | None = None,
    artifact_root: str | Path | None = None,
    log_mlflow: bool = True,
    progress: bool = False,
) -> tuple[Table, Table]:
    """Score known lenses with each model (and each committee member) and classify them (Table A.6 analogue).

    ``inp.positions`` must have ``label`` (from :func:`read_known_lenses`). Networks are named by their model
    (``models:/lenssearch-vgg/3`` -> ``vgg``) and a committee's members by ``<committee>.<member>``. Writes
    ``known_lenses.ecsv`` (one row per system: RA, Dec, label, validation, each network's ``p_`` and ``class_``) and
    ``known_lenses_totals.ecsv`` (TP, qTP, FN over secure systems per network) and a ``known_lenses.md`` table.
    """
    cfg = config.search
    out_dir = Path(out_dir)
    check_output_folder(out_dir, files=("known_lenses.ecsv", "known_lenses_totals.ecsv", "known_lenses.md"))
    if not model_uris:
        raise LensSearchError("known-lenses needs at least one model URI")
    scorers = [uri if isinstance(uri, Scorer) else load_scorer(uri, tracking_uri=tracking_uri) for uri in model_uris]
    model_uris = [scorer.uri for scorer in scorers]
    for scorer in scorers:
        check_cutout_size(config, inp, scorer)
    positions = inp.positions
    labels = np.asarray(positions["label"], dtype=str)
    is_lens = np.asarray([classes.KNOWN_LABELS[v] for v in labels])
    table = Table()
    table["id"] = [str(v) for v in positions["id"]]
    table["ra"] = np.asarray(positions["ra"], float)
    table["dec"] = np.asarray(positions["dec"], float)
    table["label"] = labels
    networks: list[str] = []
    for scorer in scorers:
        res = score_table(inp, scorer, config)
        column = lambda name: res.column(name).to_numpy(zero_copy_only=False)
        if "status" not in table.colnames:
            table["status"] = column("status").astype(str)
            table["validation"] = column("validation").astype(str)
        members = [n[len("score_"):] for n in res.column_names if n.startswith("score_")]
        columns = {scorer.label: column("score"), **{f"{scorer.label}.{m}": column(f"score_{m}") for m in members}}
        for name, values in columns.items():
            label, k = name, 1
            while label in networks:  # the same model given twice (e.g. by alias and by version)
                k += 1
                label = f"{name}_{k}"
            networks.append(label)
            table[f"p_{label}"] = values
            table[f"class_{label}"] = classes.truth_class(values, is_lens, cfg.tp_min, cfg.qtp_min)
    totals = Table(names=("network", *classes.LENS_CLASSES, "n_secure"), dtype=(str, int, int, int, int))
    n_secure = int(np.sum(labels == "secure"))
    for label in networks:
        t = classes.class_totals(table[f"class_{label}"], labels)
        totals.add_row((label, *(t[c] for c in classes.LENS_CLASSES), n_secure))
    meta = {"input": inp.description, "model_uris": list(model_uris),
            "model_versions": [model_version(u, tracking_uri)[0] or u for u in model_uris],
            "threshold": cfg.tp_min, "qtp_lower": cfg.qtp_min,
            "classes": (f"TP p>={cfg.tp_min}, qTP {cfg.qtp_min}<=p<{cfg.tp_min}, FN p<{cfg.qtp_min} "
                        "(Angora et al. 2023, Table A.6)")}
    table.meta.update(meta)
    totals.meta.update(meta)
    md = ["| id | RA | Dec | " + " | ".join(networks) + " | label |", "|---|---|---|" + "---|" * len(networks) + "---|"]
    for row in table:
        cells = " | ".join(
            f"{row[f'class_{n}']} ({row[f'p_{n}']:.2f})" if row[f"class_{n}"] else "invalid" for n in networks
        )
        md.append(f"| {row['id']} | {row['ra']:.5f} | {row['dec']:.5f} | {cells} | {row['label']} |")
    for c in classes.LENS_CLASSES:
        counts_c = " | ".join(str(int(totals[c][i])) for i in range(len(networks)))
        md.append(f"| | | N_{c} (secure) | {counts_c} | |")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_table(out_dir / "known_lenses.ecsv", table)
    write_table(out_dir / "known_lenses_totals.ecsv", totals)
    with atomic_path(out_dir / "known_lenses.md") as tmp:
        tmp.write_text("\n".join(md) + "\n")
    if log_mlflow:
        metrics = {f"{c}_{row['network']}": int(row[c]) for row in totals for c in classes.LENS_CLASSES}
        log_run(
            "known-lenses", {"model_uris": ",".join(model_uris), "input": inp.description}, metrics,
            [out_dir / "known_lenses.ecsv", out_dir / "known_lenses_totals.ecsv", out_dir / "known_lenses.md"],
            tracking_uri, artifact_root,
        )
    return table, totals
