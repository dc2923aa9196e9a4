"""The ``validate`` stage: a great-expectations suite over the knowledge base's cutouts and metadata.

The suite runs on a pandas DataFrame with one row per cutout: per-cutout statistics computed here (shape and
dtype, finite fraction, per-band background level and noise measured on the cutout's border, robustly) joined with
the metadata (label, fold, field, ``theta_E``, ``z_s``, ``z_lens``, source magnitudes). Expectations
(great-expectations 1.x, real validation through a file data context, a pandas data source and a checkpoint
that renders the HTML data docs):

- every cutout is ``128 x 128 x 3`` float32 with a finite fraction >= ``validate.min_finite_fraction``;
- per band, the cutout's noise (border, neighbouring-pixel differences) over the field's expected background
  sigma lies in ``validate.noise_ratio_range``, and its background level (lowest corner median) lies within
  ``validate.background_max_sigma`` expected sigmas of zero (galaxy wings and intracluster light reach the
  corners of cutouts on bright members, hence a generous bound that still catches an unsubtracted sky);
- ids are unique, labels are 0/1 and the fraction of mocks is in ``validate.mock_fraction_range``;
- for mocks: ``theta_E`` in ``validate.theta_e_range_arcsec`` (Angora et al. 2023: 0.2"-3.5"),
  ``z_s >= z_lens + validate.dz_min`` (0.4; Meneghetti et al. 2022), source ``F814W <= validate.mag_max`` (29);
- folds are ``-1..k-1`` and balanced: each cross-validation fold's size and mock fraction within
  ``validate.fold_balance_tolerance`` (relative) of the mean.

:func:`validate_cutouts` is the reusable entry point (the ``search`` stage validates users' cutouts with it, with
or without metadata); it returns a :class:`ValidationResult` with per-cutout pass/fail flags. :func:`validate_kb`
runs it on ``data/kb/kb.h5`` and writes ``summary.json`` and the data docs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from lenssearch.errors import LensSearchError

DEFAULT_BANDS = ("F435W", "F606W", "F814W")
#: Number of failing rows quoted per expectation in the summary.
N_EXAMPLES = 5


@dataclasses.dataclass
class ValidationResult:
    """Outcome of the suite.

    Attributes
    ----------
    success
        All expectations met.
    expectations
        One dict per expectation: ``expectation``, ``column``, ``success``, ``unexpected_count``,
        ``observed_value``, ``examples`` (ids of failing rows).
    passed
        Per-cutout flags (True where the cutout meets every per-row expectation).
    statistics
        The per-cutout DataFrame the suite ran on.
    data_docs
        Index of the rendered data docs (when written).
    """

    success: bool
    expectations: list[dict]
    passed: np.ndarray
    statistics: object
    data_docs: Path | None = None

    @property
    def failures(self) -> list[dict]:
        return [e for e in self.expectations if not e["success"]]

    def summary(self) -> dict:
        """JSON-serialisable summary (counts, failing expectations with examples)."""
        return {
            "success": bool(self.success),
            "n_cutouts": int(self.passed.size),
            "n_cutouts_failing": int((~self.passed).sum()),
            "n_expectations": len(self.expectations),
            "n_failed_expectations": len(self.failures),
            "expectations": self.expectations,
        }

    def message(self) -> str:
        """A readable multi-line account of the failures (empty if all passed)."""
        lines = []
        for e in self.failures:
            where = f" on '{e['column']}'" if e["column"] else ""
            count = e["unexpected_count"]
            what = f"{count} of {self.passed.size} rows" if count is not None else f"observed {e['observed_value']}"
            examples = f", e.g. {', '.join(map(str, e['examples']))}" if e["examples"] else ""
            lines.append(f"  - {e['expectation']}{where}: {what}{examples}")
        if not lines:
            return ""
        return f"{len(lines)} of {len(self.expectations)} expectations failed:\n" + "\n".join(lines)


# ------------------------------------------------------------------------------------------------ statistics
#: Cutouts whose statistics are computed at once (read together from the KB file): 256 x 128 x 128 x 3 float32.
STATISTICS_CHUNK = 256


def cutout_statistics(cutouts, metadata=None, expected_noise=None, bands: Sequence[str] = DEFAULT_BANDS,
                      expected_shape: tuple[int, int, int] = (128, 128, 3)):
    """The per-cutout DataFrame the suite runs on: the statistics of :mod:`lenssearch.kb.statistics` (those the
    search checks its cutouts with) joined with the metadata.

    Parameters
    ----------
    cutouts
        An array (or an h5py dataset) ``N x n x n x bands``, read :data:`STATISTICS_CHUNK` cutouts at a time, or a
        sequence of arrays (users' cutouts may differ in shape).
    metadata
        Optional table/DataFrame with one row per cutout (``id``, ``label``, ``fold``, ``theta_e_arcsec``, ``z_s``,
        ``z_lens``, ``source_mag_F814W``, ``noise_sigma_<band>``, ...).
    expected_noise
        Expected background sigma per band (e-/s/pixel): a mapping band -> float, or band -> per-row array;
        default the metadata's ``noise_sigma_<band>`` columns when present.
    """
    import pandas as pd

    from lenssearch.kb.statistics import ValidationContext, batch_statistics

    n = len(cutouts)
    size = int(expected_shape[0])
    ctx = ValidationContext(size, tuple(bands), np.ones(len(bands)))  # ratios to the expected noise below
    columns = ["shape_ok", "dtype", "finite_fraction", *(f"bg_{q}_{b}" for b in bands for q in ("level", "sigma"))]
    parts = []
    if getattr(cutouts, "ndim", None) == 4 and tuple(cutouts.shape[1:]) == tuple(expected_shape):
        for i in range(0, n, STATISTICS_CHUNK):
            parts.append(batch_statistics(np.asarray(cutouts[i:i + STATISTICS_CHUNK]), ctx))
    else:  # one at a time: a cutout of another shape or dtype fails the shape check, with no statistics
        for i in range(n):
            c = np.asarray(cutouts[i])
            parts.append(batch_statistics(c[None], ctx) if c.ndim == 3 else
                         {"shape_ok": np.array([False]), "dtype": np.array([str(c.dtype)]),
                          "finite_fraction": np.array([float(np.isfinite(c).mean()) if c.size else 0.0]),
                          **{k: np.array([np.nan]) for k in columns[3:]}})
    rows = {k: np.concatenate([p[k] for p in parts]) if parts else np.zeros(0) for k in columns}
    df = pd.DataFrame(rows)

    meta = None
    if metadata is not None:
        meta = metadata if isinstance(metadata, pd.DataFrame) else metadata.to_pandas()
        meta = meta.reset_index(drop=True)
        if len(meta) != n:
            raise LensSearchError(f"validate: {n} cutouts but {len(meta)} metadata rows")
        for col in meta.columns:
            if col not in df.columns and np.asarray(meta[col]).ndim == 1:
                df[col] = meta[col].to_numpy()
    if "id" not in df.columns:
        df["id"] = [f"cutout-{i}" for i in range(n)]
    df["id"] = df["id"].astype(str)

    for band in bands:
        expected = None
        if expected_noise is not None and band in expected_noise:
            expected = np.broadcast_to(np.asarray(expected_noise[band], dtype=float), (n,))
        elif f"noise_sigma_{band}" in df.columns:
            expected = df[f"noise_sigma_{band}"].to_numpy(dtype=float)
        if expected is not None:
            df[f"noise_ratio_{band}"] = df[f"bg_sigma_{band}"].to_numpy() / expected
            df[f"bg_level_sigma_{band}"] = df[f"bg_level_{band}"].to_numpy() / expected
    if {"z_s", "z_lens"} <= set(df.columns):
        df["dz"] = df["z_s"].astype(float) - df["z_lens"].astype(float)
    if "fold" in df.columns and "label" in df.columns:
        fold = df["fold"].to_numpy()
        label = df["label"].to_numpy()
        cv = fold >= 0
        df["fold_size_ratio"] = np.nan
        df["fold_mock_fraction_ratio"] = np.nan
        if cv.any():
            ks = np.unique(fold[cv])
            sizes = {k: (fold == k).sum() for k in ks}
            mean_size = np.mean(list(sizes.values()))
            overall = label[cv].mean()
            for k in ks:
                sel = fold == k
                df.loc[sel, "fold_size_ratio"] = sizes[k] / mean_size
                df.loc[sel, "fold_mock_fraction_ratio"] = label[sel].mean() / overall if overall > 0 else np.nan
    return df


# ------------------------------------------------------------------------------------------------ the checks
def cutout_checks(vcfg, bands: Sequence[str] = DEFAULT_BANDS) -> dict[str, list[tuple]]:
    """The per-cutout checks, one list per check name, in the order in which a cutout is judged.

    ``shape``: ``(column, allowed values)``; the others ``(column, min, max)``, bounds included, on the columns
    of :func:`cutout_statistics`. The suite (:func:`build_expectations`) makes one expectation of each; the
    search applies the same bounds to every batch before scoring (:mod:`lenssearch.search.checks`).
    """
    lo, hi = vcfg.noise_ratio_range
    bg = vcfg.background_max_sigma
    return {
        "shape": [("shape_ok", (True,)), ("dtype", ("float32",))],
        "finite": [("finite_fraction", vcfg.min_finite_fraction, 1.0)],
        "noise": [(f"noise_ratio_{band}", lo, hi) for band in bands],
        "background": [(f"bg_level_sigma_{band}", -bg, bg) for band in bands],
    }


# ------------------------------------------------------------------------------------------------ the suite
def build_expectations(df, vcfg, n_folds: int | None, bands: Sequence[str] = DEFAULT_BANDS,
                       expected_shape=(128, 128, 3)) -> list:
    """The expectation list for the columns present in ``df`` (great-expectations 1.x objects)."""
    import great_expectations as gx

    E = gx.expectations
    mocks = {"row_condition": "label==1", "condition_parser": "pandas"}
    checks = cutout_checks(vcfg, bands)
    between = lambda column, lo, hi: E.ExpectColumnValuesToBeBetween(column=column, min_value=lo, max_value=hi)
    out = [
        E.ExpectTableRowCountToBeBetween(min_value=1),
        *(E.ExpectColumnValuesToBeInSet(column=column, value_set=list(values)) for column, values in checks["shape"]),
        *(between(*bounds) for bounds in checks["finite"]),
        E.ExpectColumnValuesToBeUnique(column="id"),
    ]
    for noise, background in zip(checks["noise"], checks["background"]):
        if noise[0] in df.columns:
            out += [between(*noise), between(*background)]
    if "label" in df.columns:
        out.append(E.ExpectColumnValuesToBeInSet(column="label", value_set=[0, 1]))
        out.append(E.ExpectColumnMeanToBeBetween(column="label", min_value=vcfg.mock_fraction_range[0],
                                                 max_value=vcfg.mock_fraction_range[1]))
        t_lo, t_hi = vcfg.theta_e_range_arcsec
        if "theta_e_arcsec" in df.columns:
            out.append(E.ExpectColumnValuesToNotBeNull(column="theta_e_arcsec", **mocks))
            out.append(E.ExpectColumnValuesToBeBetween(column="theta_e_arcsec", min_value=t_lo, max_value=t_hi,
                                                       **mocks))
        if "dz" in df.columns:
            out.append(E.ExpectColumnValuesToNotBeNull(column="dz", **mocks))
            out.append(E.ExpectColumnValuesToBeBetween(column="dz", min_value=vcfg.dz_min - 1e-9, **mocks))
        if "source_mag_F814W" in df.columns:
            out.append(E.ExpectColumnValuesToNotBeNull(column="source_mag_F814W", **mocks))
            out.append(E.ExpectColumnValuesToBeBetween(column="source_mag_F814W", max_value=vcfg.mag_max, **mocks))
    if "fold" in df.columns:
        if n_folds is not None:
            out.append(E.ExpectColumnValuesToBeInSet(column="fold", value_set=list(range(-1, int(n_folds)))))
        if "fold_size_ratio" in df.columns:
            tol = vcfg.fold_balance_tolerance
            cv = {"row_condition": "fold>=0", "condition_parser": "pandas"}
            out.append(E.ExpectColumnValuesToBeBetween(column="fold_size_ratio", min_value=1 - tol,
                                                       max_value=1 + tol, **cv))
            out.append(E.ExpectColumnValuesToBeBetween(column="fold_mock_fraction_ratio", min_value=1 - tol,
                                                       max_value=1 + tol, **cv))
    return out


def _quiet_gx():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import logging

    logging.getLogger("great_expectations").setLevel(logging.ERROR)


def run_suite(df, expectations, suite_name: str = "lenssearch_kb", docs_dir: str | Path | None = None):
    """Run expectations on ``df`` through a file data context; returns ``(checkpoint result, docs index)``.

    With ``docs_dir`` the context lives in a temporary directory and its rendered data docs are copied there;
    without, it is an ephemeral (in-memory) context.
    """
    _quiet_gx()
    import great_expectations as gx

    root = Path(tempfile.mkdtemp(prefix="lenssearch-gx-")) if docs_dir is not None else None
    try:
        # without data docs nothing needs a file context (it re-reads its YAML on every access: half the run)
        context = (gx.get_context(mode="file", project_root_dir=root) if root is not None
                   else gx.get_context(mode="ephemeral"))
        try:
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context.variables.progress_bars = ProgressBarsConfig(globally=False)
        except Exception:  # pragma: no cover - cosmetic only
            pass
        source = context.data_sources.add_pandas("lenssearch")
        asset = source.add_dataframe_asset("cutouts")
        batch = asset.add_batch_definition_whole_dataframe("all_cutouts")
        suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
        for expectation in expectations:
            suite.add_expectation(expectation)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(data=batch, suite=suite, name=suite_name))
        actions = [gx.checkpoint.UpdateDataDocsAction(name="data_docs")] if docs_dir is not None else []
        checkpoint = context.checkpoints.add(gx.Checkpoint(
            name=suite_name, validation_definitions=[definition], actions=actions,
            result_format={"result_format": "COMPLETE"}))
        result = checkpoint.run(batch_parameters={"dataframe": df})
        index = None
        if docs_dir is not None:
            site = root / "gx" / "uncommitted" / "data_docs" / "local_site"
            docs_dir = Path(docs_dir)
            if docs_dir.exists():
                shutil.rmtree(docs_dir)
            shutil.copytree(site, docs_dir)
            index = docs_dir / "index.html"
        return result, index
    finally:
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def validate_cutouts(cutouts, metadata=None, expected_noise: Mapping | None = None, *, vcfg=None,
                     n_folds: int | None = None, bands: Sequence[str] = DEFAULT_BANDS,
                     expected_shape: tuple[int, int, int] = (128, 128, 3), docs_dir: str | Path | None = None,
                     suite_name: str = "lenssearch_cutouts") -> ValidationResult:
    """Validate cutouts (and their metadata) with the great-expectations suite.

    Parameters
    ----------
    cutouts
        ``N x 128 x 128 x 3`` array (or a sequence of arrays) in e-/s, band order ``bands``.
    metadata
        Optional astropy Table or DataFrame, one row per cutout; enables the label, ``theta_E``, redshift,
        magnitude and fold expectations for the columns present.
    expected_noise
        Expected background sigma per band (e-/s/pixel), scalar or per-row; default the metadata's
        ``noise_sigma_<band>`` columns. Without it the noise expectations are skipped.
    vcfg
        A :class:`lenssearch.config.ValidateConfig` (thresholds); required.
    n_folds
        Number of cross-validation folds (checks fold values).
    docs_dir
        Where to write the HTML data docs (none if omitted).

    Returns
    -------
    ValidationResult
    """
    if vcfg is None:
        raise LensSearchError("validate_cutouts: the validate configuration (thresholds) is required")
    df = cutout_statistics(cutouts, metadata, expected_noise, bands, expected_shape)
    expectations = build_expectations(df, vcfg, n_folds, bands, expected_shape)
    result, index = run_suite(df, expectations, suite_name, docs_dir)
    passed = np.ones(len(df), dtype=bool)
    records = []
    for run in result.run_results.values():
        for r in run.results:
            cfg = r.expectation_config
            res = r.result or {}
            rows = res.get("unexpected_index_list") or []
            rows = [int(v) for v in rows if isinstance(v, (int, np.integer))]
            if rows and not r.success:
                passed[np.asarray(rows, dtype=int)] = False
            examples = [str(df["id"].iloc[i]) for i in rows[:N_EXAMPLES]]
            records.append({
                "expectation": cfg.type,
                "column": cfg.kwargs.get("column"),
                "kwargs": _jsonable({k: v for k, v in cfg.kwargs.items() if k not in ("batch_id",)}),
                "success": bool(r.success),
                "unexpected_count": _jsonable(res.get("unexpected_count")),
                "observed_value": _jsonable(res.get("observed_value")),
                "examples": examples,
            })
    return ValidationResult(bool(result.success), records, passed, df, index)


def validate_kb(kb_path: str | Path, out_dir: str | Path, cfg) -> ValidationResult:
    """Validate the knowledge base file; write ``summary.json``, ``failing_cutouts.ecsv`` and ``data_docs/``."""
    from astropy.table import Table

    from lenssearch.io import atomic_path
    from lenssearch.kb.build import read_kb

    import h5py

    kb = read_kb(kb_path, load_cutouts=False)
    bands = tuple(kb["attrs"].get("bands", cfg.base.bands))
    meta = kb["metadata"]
    if "fold" not in meta.colnames:
        meta["fold"] = kb["fold"]
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp, h5py.File(kb_path, "r") as h5:
        tmp.mkdir(parents=True)
        # the statistics read one cutout at a time from the file: the KB is never held in memory
        result = validate_cutouts(h5["cutouts"], meta, vcfg=cfg.validate, n_folds=int(kb["attrs"]["n_folds"]),
                                  bands=bands, expected_shape=(cfg.kb.cutout_pixels, cfg.kb.cutout_pixels,
                                                               len(bands)),
                                  docs_dir=tmp / "data_docs", suite_name="lenssearch_kb")
        summary = result.summary()
        summary["kb"] = str(kb_path)
        (tmp / "summary.json").write_text(json.dumps(_jsonable(summary), indent=2, sort_keys=True) + "\n")
        failing = Table({"id": np.asarray(result.statistics["id"])[~result.passed]})
        failing["id"].info.description = "cutout that fails at least one expectation of the suite"
        failing.meta["kb"] = str(kb_path)
        failing.write(tmp / "failing_cutouts.ecsv", format="ascii.ecsv")
    result.data_docs = out_dir / "data_docs" / "index.html"
    return result
