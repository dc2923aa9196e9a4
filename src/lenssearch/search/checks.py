"""Step 2 of a search: check every cutout before the model sees it, as the knowledge base's cutouts are checked.

The statistics (:mod:`lenssearch.kb.statistics`) and the checks (:func:`lenssearch.kb.validation.cutout_checks`:
shape and dtype, finite fraction >= ``validate.min_finite_fraction``, per band the border noise over the band's
expected noise within ``validate.noise_ratio_range`` and the background level within
``validate.background_max_sigma`` expected sigmas of zero) are the KB's own. They are applied in two ways:

- inline, over each batch (:func:`validate_batch`), so that a cutout that fails is not scored;
- with great-expectations itself (:func:`run_expectations`: the KB's ``build_expectations`` and ``run_suite``) on
  the statistics table of each output chunk of ``search.ge_chunk_rows`` rows, in the search's own process. Rows
  that the suite fails are withdrawn (their scores set to NaN); the number of disagreements with the inline
  checks is reported (zero when both agree, as they should).
"""

from __future__ import annotations

import numpy as np

from lenssearch.kb.statistics import ValidationContext, cutout_statistics


def failed_checks(stats: dict[str, np.ndarray], ctx: ValidationContext) -> dict[str, np.ndarray]:
    """The KB's per-cutout checks (:func:`lenssearch.kb.validation.cutout_checks`) applied to a batch's statistics:
    check name -> True where the cutout fails it (NaN fails).

    A check is only reported for cutouts that passed the earlier ones, so each failure names the first problem.
    """
    from lenssearch.kb.validation import cutout_checks

    n = len(stats["shape_ok"])
    failed, bad = {}, np.zeros(n, dtype=bool)
    with np.errstate(invalid="ignore"):
        for name, bounds in cutout_checks(ctx.vcfg, ctx.bands).items():
            ok = np.ones(n, dtype=bool)
            for column, *limits in bounds:
                values = np.asarray(stats[column])
                if len(limits) == 1:
                    ok &= np.isin(values, list(limits[0]))
                else:
                    ok &= (values >= limits[0]) & (values <= limits[1])
            failed[name] = ~ok & ~bad
            bad |= ~ok
    return failed


def validate_batch(cutouts: np.ndarray, ctx: ValidationContext) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Statistics and check failures of one batch (see :func:`failed_checks`)."""
    stats = cutout_statistics(cutouts, ctx)
    return stats, failed_checks(stats, ctx)


def failure_labels(failed: dict[str, np.ndarray]) -> np.ndarray:
    """One string per cutout: the names of the failed checks joined by ``+``, or ``""``."""
    names = list(failed)
    n = len(next(iter(failed.values()))) if failed else 0
    out = np.full(n, "", dtype=object)
    for i in np.flatnonzero(np.any([failed[name] for name in names], axis=0)) if names and n else ():
        out[i] = "+".join(name for name in names if failed[name][i])
    return out


def run_expectations(stats: dict[str, np.ndarray], ctx: ValidationContext) -> tuple[np.ndarray, list[dict]]:
    """Run the KB's great-expectations suite on per-cutout statistics.

    Parameters
    ----------
    stats
        Columns of :func:`cutout_statistics` for some rows (e.g. a chunk of a search).
    ctx
        The expected cutout shape and bands, and the thresholds of the suite (``ctx.vcfg``).

    Returns
    -------
    passed, failures
        Per-row pass flags, and for each failing expectation its type, column and number of failing rows.
    """
    import pandas as pd

    from lenssearch.kb.validation import build_expectations, run_suite

    df = pd.DataFrame({k: np.asarray(v) for k, v in stats.items()})
    df["id"] = [f"row-{i}" for i in range(len(df))]
    expectations = build_expectations(df, ctx.vcfg, None, ctx.bands, (ctx.size, ctx.size, ctx.n_bands))
    result, _ = run_suite(df, expectations, "lenssearch_search")
    passed = np.ones(len(df), dtype=bool)
    failures = []
    for run in result.run_results.values():
        for r in run.results:
            if r.success:
                continue
            res = r.result or {}
            rows = [int(v) for v in (res.get("unexpected_index_list") or []) if isinstance(v, (int, np.integer))]
            passed[np.asarray(rows, dtype=int)] = False
            failures.append({"expectation": r.expectation_config.type,
                             "column": r.expectation_config.kwargs.get("column"), "rows": len(rows)})
    return passed, failures
