"""Stratified k-fold training of one network, then its "run" model, tracked in MLflow (Angora et al. 2023,
Sects. 2, 4 and 5).

Inputs: the knowledge base (its ``fold`` column: 0..k-1 for the cross-validation part, -1 for the validation
split used for early stopping). Outputs:

``models/<network>/``
    ``fold_<k>/`` and ``run/``: ``model.keras`` (best weights), ``predictions.ecsv`` (the fold's out-of-fold
    probabilities), ``history.json``, ``result.json`` (written last: its presence marks a finished split), and
    while training ``checkpoint/``. ``fingerprint.json`` identifies the configuration and KB they belong to;
    a different fingerprint discards them. ``mlflow.json`` remembers the parent run, so a resumed training
    continues it.
``reports/<network>/``
    ``predictions.ecsv`` (``id``, ``fold``, ``network``, ``label``, ``probability``: exactly one out-of-fold
    probability per cross-validation cutout), ``metrics.json`` (pooled out-of-fold metrics, per-fold median/Q1/
    Q3/IQR, the run model's validation metrics), ``roc.csv`` and ``confusion.csv`` (for ``dvc plots``),
    ``roc.png``, ``confusion.png``, ``folds_boxplot.png``.

A training killed at any point resumes when re-run: finished folds are reused (their predictions are read back,
their MLflow runs kept), an unfinished one continues from its last epoch checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from lenssearch.errors import LensSearchError
from lenssearch.io import atomic_path, describe_columns
from lenssearch.evaluate import metrics as M
from lenssearch.train.data import CutoutPipelines, prepare_cutouts, read_knowledge_base
from lenssearch.train.fit import fit_split, precision_policy, predict_rows

RUN_SPLIT = "run"
#: Bump when the meaning of files under models/<network>/ changes, so that old checkpoints are not reused.
LAYOUT_VERSION = 3  # 3: plain functional Keras models (no QuietModel)


@dataclasses.dataclass
class TrainingSummary:
    """What :func:`train_network` produced."""

    network: str
    parent_run_id: str
    fold_run_ids: dict[str, str]
    registered_version: str
    metrics: dict[str, Any]
    trained_splits: list[str]


def fold_seed(base_seed: int, split: str) -> int:
    """The seed of one split (``fold_<k>`` or ``run``): independent of the order in which splits are trained."""
    return int.from_bytes(hashlib.sha256(f"{base_seed}:{split}".encode()).digest()[:4], "little") % (2**31 - 1)


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


def _write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


# the ``train`` entries that are dicts keyed by network: the fingerprint (and the DVC stage's params) keep only the
# trained network's entry
PER_NETWORK_KEYS = ("batch_size", "max_epochs_by_network", "kb_variant")


def _fingerprint(network: str, cfg, kb_hash: str) -> str:
    """The identity of a training: its folders are reused only when it is unchanged. Of the per-network dicts, only
    ``network``'s entry counts."""
    from lenssearch.config import as_dict

    train = as_dict(cfg.train)
    for key in PER_NETWORK_KEYS:  # only this network's entry: another network's epochs never retrain this one
        train[key] = dict(train.get(key) or {}).get(network)
    identity = {
        "layout": LAYOUT_VERSION,
        "network": network,
        "seed": cfg.base.seed,
        "train": train,
        "kb_md5": kb_hash,
        "precision": precision_policy(cfg.train.mixed_precision),  # "auto" resolves per machine
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _prepare_models_dir(models_dir: Path, fingerprint: str) -> None:
    """Keep the folder's splits only if they were made by the same configuration and KB."""
    marker = models_dir / "fingerprint.json"
    if models_dir.exists() and not models_dir.is_dir():
        raise LensSearchError(f"{models_dir}: is a file; --models expects a folder path (the file was left untouched)")
    if models_dir.exists():
        if not marker.exists() and any(models_dir.iterdir()):  # not a folder that train made: never emptied
            raise LensSearchError(f"{models_dir}: the folder exists and holds files that lenssearch train did not "
                                  "write (no fingerprint.json); it was left untouched: give a new or empty folder")
        old = json.loads(marker.read_text()).get("fingerprint") if marker.exists() else None
        if old != fingerprint:
            for child in models_dir.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    models_dir.mkdir(parents=True, exist_ok=True)
    _write_json(marker, {"fingerprint": fingerprint})


def _split_table(kb, rows: np.ndarray, network: str, probabilities: np.ndarray):
    from astropy.table import Table

    return Table(
        {
            "id": kb.ids[rows].astype(str),
            "fold": kb.fold[rows].astype(np.int16),
            "network": np.full(len(rows), network),
            "label": kb.labels[rows].astype(np.int8),
            "probability": probabilities.astype(np.float64),
        }
    )


def _write_table(table, path: Path) -> None:
    with atomic_path(path) as tmp:
        table.write(tmp, format="ascii.ecsv")


def _train_or_reuse(network, cfg, kb, pipelines, split, train_rows, test_rows, models_dir, progress, cache,
                    callbacks=()):
    """Train one split (or read it back if finished); returns (result dict, probabilities of test_rows, trained).

    ``cache`` holds the compiled model of the previous split, re-initialised and reused (see ``fit_split``);
    ``callbacks`` are Keras callbacks run after each epoch's checkpoint (the MLflow epoch logger).
    """
    from astropy.table import Table

    from lenssearch.models import symmetric_classifier, test_time_model

    split_dir = models_dir / split
    result_path = split_dir / "result.json"
    if result_path.exists():
        result = json.loads(result_path.read_text())
        table = Table.read(split_dir / "predictions.ecsv", format="ascii.ecsv")
        if list(table["id"]) != list(kb.ids[test_rows]):
            raise LensSearchError(f"{split_dir / 'predictions.ecsv'}: ids differ from the KB's rows of {split}")
        return result, np.asarray(table["probability"], dtype=float), False
    validation_rows = kb.validation_indices
    net, history = fit_split(
        network, cfg.train, kb.bands, pipelines, train_rows, validation_rows, split_dir,
        fold_seed(cfg.base.seed, split), progress=progress, description=f"{network} {split}",
        model=cache.get("model"), extra_callbacks=tuple(callbacks),
    )
    cache["model"] = net
    symmetries = cfg.train.test_time_symmetries
    probabilities = predict_rows(symmetric_classifier(net.classifier, symmetries), pipelines, test_rows)
    metrics = M.split_metrics(kb.labels[test_rows], probabilities)
    # the whole network (raw cutouts in), averaged over the test-time symmetries as its probabilities above
    test_time_model(net.model, symmetries).save(split_dir / "model.keras")
    _write_table(_split_table(kb, test_rows, network, probabilities), split_dir / "predictions.ecsv")
    _write_json(split_dir / "history.json", history)
    val_loss = history.get("val_loss", [])
    result = {
        "split": split,
        "metrics": metrics,
        "confusion": M.confusion_counts(kb.labels[test_rows], probabilities),
        "n_train": int(len(train_rows)),
        "n_test": int(len(test_rows)),
        "epochs": len(val_loss),
        "best_epoch": int(np.argmin(val_loss)) if val_loss else -1,
    }
    _write_json(result_path, result)
    shutil.rmtree(split_dir / "checkpoint", ignore_errors=True)
    return result, probabilities, True


def fold_mean_model(fold_models: list, name: str):
    """One model whose probability is the mean of the fold models' (raw cutouts in, as every network).

    The run model of ``train.run_model: fold_mean``: the k networks of the cross-validation averaged, instead of
    a (k+1)-th network trained on all folds. Each fold model is nested under the name ``fold_<k>``.
    """
    import keras

    inputs = keras.Input(shape=fold_models[0].input_shape[1:], name="cutouts")
    outputs = [keras.Model(m.inputs[0], m.outputs[0], name=f"fold_{k}")(inputs) for k, m in enumerate(fold_models)]
    mean = keras.layers.Average(dtype="float32", name="probability")(outputs) if len(outputs) > 1 else outputs[0]
    return keras.Model(inputs, mean, name=name)


def _fold_mean_or_reuse(network, kb, pipelines, models_dir: Path):
    """The ``fold_mean`` run model: saved as ``run/model.keras`` with its validation-split result."""
    import keras
    from astropy.table import Table

    from lenssearch.models import split_model

    split_dir = models_dir / RUN_SPLIT
    result_path = split_dir / "result.json"
    rows = kb.validation_indices
    if result_path.exists():
        result = json.loads(result_path.read_text())
        table = Table.read(split_dir / "predictions.ecsv", format="ascii.ecsv")
        return result, np.asarray(table["probability"], dtype=float), False
    folds = [keras.models.load_model(models_dir / f"fold_{k}" / "model.keras") for k in range(kb.n_folds)]
    # the validation split through each fold's classifier on the prepared cutouts, averaged
    probabilities = np.mean([predict_rows(split_model(m)[1], pipelines, rows) for m in folds], axis=0)
    split_dir.mkdir(parents=True, exist_ok=True)
    fold_mean_model(folds, network).save(split_dir / "model.keras")
    _write_table(_split_table(kb, rows, network, probabilities), split_dir / "predictions.ecsv")
    _write_json(split_dir / "history.json", {})
    result = {
        "split": RUN_SPLIT, "kind": "fold_mean",
        "metrics": M.split_metrics(kb.labels[rows], probabilities),
        "confusion": M.confusion_counts(kb.labels[rows], probabilities),
        "n_train": int(len(kb.cv_indices)), "n_test": int(len(rows)), "epochs": 0, "best_epoch": -1,
    }
    _write_json(result_path, result)
    return result, probabilities, True


def _split_artifacts(split_dir: Path, labels, probabilities, result, title: str) -> list[Path]:
    """ROC (CSV, PNG) and confusion matrix (PNG) of one split, written beside its model."""
    from lenssearch.train.plots import plot_confusion, plot_roc

    figures = split_dir / "figures"
    figures.mkdir(exist_ok=True)
    roc = M.roc_curve_table(labels, probabilities)
    with atomic_path(figures / "roc.csv") as tmp:
        roc.write(tmp, format="ascii.csv")
    return [
        figures / "roc.csv",
        plot_roc(roc, result["metrics"]["auc"], title, figures / "roc.png"),
        plot_confusion(result["confusion"], title, figures / "confusion.png"),
    ]


def _kb_frame(kb):
    """The KB's rows as a pandas table (id, label, fold) for the MLflow dataset of a training."""
    import pandas as pd

    return pd.DataFrame({"id": kb.ids.astype(str), "label": kb.labels.astype(int), "fold": kb.fold.astype(int)})


def registered_description(network: str, variant: str, run_model: str, test_time_symmetries: int = 1) -> str:
    """The description of the registered model ``lenssearch-<network>``."""
    what = {"fold_mean": "the mean of its k fold networks", "retrain": "one network trained on every fold"}
    symmetries = {1: "", 2: ", averaged over the cutout and its 180-degree rotation",
                  4: ", averaged over the four 90-degree rotations of the cutout",
                  8: ", averaged over the eight rotations and reflections of the cutout"}
    return (f"lenssearch {network}: lens probability of raw calibrated cutouts (N x H x W x bands, float32), "
            f"a strong-lens classifier trained with stratified k-fold cross-validation on the knowledge-base "
            f"variant '{variant}'; the served model is {what.get(run_model, run_model)}"
            f"{symmetries.get(int(test_time_symmetries), '')} (train.test_time_symmetries). Gate metric: the "
            f"out-of-fold ROC AUC (tag oof_auc; each version's description gives its value and KB hash).")


def network_train_config(cfg, network: str):
    """``cfg`` with the ``train`` section as ``network`` trains: ``max_epochs_by_network[network]`` (if any) as
    its ``max_epochs``."""
    epochs = dict(cfg.train.max_epochs_by_network).get(network)
    if epochs is None:
        return cfg
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_epochs=int(epochs)))


def kb_variant(kb_path) -> str:
    """The KB variant a knowledge base was built as (its ``variant`` attribute; "" for an older file)."""
    import h5py

    with h5py.File(kb_path, "r") as h5:
        value = h5.attrs.get("variant", "")
    return value.decode() if isinstance(value, bytes) else str(value)


def check_train_config(train, network: str) -> None:
    """Values of the ``train`` section that the dataclass types cannot check; raises LensSearchError naming
    the key."""
    problems = []
    if network not in train.batch_size or train.batch_size[network] < 1:
        problems.append(f"train.batch_size.{network} must be a positive integer")
    if not 0 <= train.warmup_epochs < train.max_epochs:
        problems.append("train.warmup_epochs must be in [0, train.max_epochs)")
    for key in ("learning_rate", "reduce_lr_factor", "min_learning_rate"):
        if not getattr(train, key) > 0:
            problems.append(f"train.{key} must be positive")
    if train.examples_per_class < 0:
        problems.append("train.examples_per_class must be >= 0 (0: the majority class's count)")
    if not 0 <= train.network.dropout < 1:
        problems.append("train.network.dropout must be in [0, 1)")
    if problems:
        raise LensSearchError("; ".join(problems))


def train_network(
    network: str,
    kb_path: str | Path,
    models_dir: str | Path,
    reports_dir: str | Path,
    cfg,
    *,
    tracking_uri: str | None = None,
    stop_after_folds: int | None = None,
    progress: bool = True,
) -> TrainingSummary | None:
    """Cross-validate ``network`` on the KB's folds, train its run model, record everything in MLflow.

    Parameters
    ----------
    network
        A key of :data:`lenssearch.models.MODELS` (``vgg``, ``sc_vgg``, ``f435w``, ``f606w``, ``f814w``).
    kb_path
        The knowledge base (``data/kb/kb.h5``).
    models_dir, reports_dir
        ``models/<network>`` and ``reports/<network>`` (see the module docstring).
    cfg
        The whole configuration (:class:`lenssearch.config.Config`; sections ``base`` and ``train``).
    tracking_uri
        MLflow store; default ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``.
    stop_after_folds
        Stop (returning None) once this many folds are finished, before the reports and the run model: the
        state a killed training leaves behind (for tests of resuming).
    progress
        Show tqdm progress bars.
    """
    import tensorflow as tf
    from astropy.table import vstack
    from tqdm.auto import tqdm

    from lenssearch import tracking
    from lenssearch.config import as_dict, flatten
    from lenssearch.models import CLASSIFIERS, build_model, network_bands, split_model

    import time

    t_start = time.perf_counter()
    if network not in CLASSIFIERS:
        raise LensSearchError(f"unknown network '{network}' (known: {', '.join(CLASSIFIERS)})")
    cfg = network_train_config(cfg, network)
    check_train_config(cfg.train, network)
    models_dir, reports_dir = Path(models_dir), Path(reports_dir)
    kb = read_knowledge_base(kb_path)
    if kb.cutouts.shape[1] != cfg.train.network.input_pixels or kb.cutouts.shape[2] != cfg.train.network.input_pixels:
        raise LensSearchError(
            f"{kb_path}: cutouts are {kb.cutouts.shape[1]}x{kb.cutouts.shape[2]} pixels but "
            f"train.network.input_pixels is {cfg.train.network.input_pixels}"
        )
    kb_hash = tracking.kb_dvc_hash(kb_path)
    precision = precision_policy(cfg.train.mixed_precision)
    fingerprint = _fingerprint(network, cfg, kb_hash)
    _prepare_models_dir(models_dir, fingerprint)
    if cfg.train.deterministic:
        tf.config.experimental.enable_op_determinism()

    bands = network_bands(network, kb.bands)
    input_example = np.ascontiguousarray(kb.cutouts[kb.validation_indices[:1]][..., list(bands)])
    # the input preparation (binning, normalisation) runs once here, not in every epoch (train/data.py)
    preparation, _ = split_model(build_model(network, cfg.train.network, kb.bands))
    prepared = prepare_cutouts(preparation, kb.cutouts, bands, progress=progress)
    kb.cutouts = None
    pipelines = CutoutPipelines(prepared, kb.labels, tuple(range(prepared.shape[-1])))
    del prepared  # the pipelines hold the one copy that training needs

    run_file = models_dir / "mlflow.json"
    previous = json.loads(run_file.read_text()) if run_file.exists() else {}
    params = {
        "network": network,
        "n_folds": kb.n_folds,
        "n_cutouts": len(kb.labels),
        "n_validation": len(kb.validation_indices),
        "bands": ",".join(kb.bands[b] for b in bands),
        **{f"base.{k}": v for k, v in flatten(as_dict(cfg.base)).items()},
        **{f"train.{k}": v for k, v in flatten(as_dict(cfg.train)).items()},
    }
    variant = kb_variant(kb_path)
    commit = tracking.git_commit()
    tags = {"kb_dvc_md5": kb_hash, "git_commit": commit, "fingerprint": fingerprint,
            "kb_path": str(kb_path), "kb_variant": variant, "run_model": cfg.train.run_model,
            "precision": precision}
    trained: list[str] = []
    cache: dict = {}
    with tracking.network_run(network, params, tags, run_id=previous.get("parent_run_id"),
                              tracking_uri=tracking_uri) as parent_run_id:
        if previous.get("parent_run_id") != parent_run_id:
            previous = {"parent_run_id": parent_run_id, "splits": {}, "finished": []}
            _write_json(run_file, previous)
            tracking.log_dataset(_kb_frame(kb), kb_path, kb_hash, name=f"kb-{variant or Path(kb_path).stem}")
        logged = previous.setdefault("splits", {})
        finished = previous.setdefault("finished", [])

        def split_run(split, train_rows, test_rows, train):
            """Train (or read back) one split inside its own nested run, created before training starts and
            fed each epoch's metrics while it trains; returns (result, probabilities, trained)."""
            if split in finished and tracking.run_exists(logged.get(split)):
                return train(())
            split_params = {
                "network": network, "split": split, "n_train": int(len(train_rows)), "n_test": int(len(test_rows)),
                "seed": fold_seed(cfg.base.seed, split), "max_epochs": cfg.train.max_epochs,
                "kb_variant": variant,
            }
            run_name = f"{network}/{'run_model' if split == RUN_SPLIT else split}"
            with tracking.nested_run(run_name, split_params, {"split": split, "network": network},
                                     run_id=logged.get(split)) as run_id:
                created = logged.get(split) != run_id
                if created:
                    logged[split] = run_id
                    _write_json(run_file, previous)  # a killed training resumes this run
                result, probabilities, was_trained = train((tracking.epoch_metrics_callback(run_id),))
                if created and not was_trained:  # trained before its run existed (e.g. a new MLflow store)
                    history = json.loads((models_dir / split / "history.json").read_text())
                    tracking.log_history(run_id, history)
                labels = kb.labels[test_rows]
                tracking.log_metrics(result["metrics"])
                tracking.log_artifacts(
                    _split_artifacts(models_dir / split, labels, probabilities, result, f"{network} {split}"))
                tracking.set_tags({"best_epoch": result["best_epoch"], "epochs": result["epochs"]})
            finished.append(split)
            _write_json(run_file, previous)
            return result, probabilities, was_trained

        tables, per_fold = [], []
        folds = range(kb.n_folds)
        for k in tqdm(folds, desc=f"{network} folds", unit="fold", disable=not progress):
            split = f"fold_{k}"
            train_rows, test_rows = kb.fold_indices(k)
            result, probabilities, was_trained = split_run(
                split, train_rows, test_rows,
                lambda callbacks, split=split, train_rows=train_rows, test_rows=test_rows: _train_or_reuse(
                    network, cfg, kb, pipelines, split, train_rows, test_rows, models_dir, progress, cache,
                    callbacks),
            )
            if was_trained:
                trained.append(split)
            tables.append(_split_table(kb, test_rows, network, probabilities))
            per_fold.append(result["metrics"])
            if stop_after_folds is not None and k + 1 >= stop_after_folds and k + 1 < kb.n_folds:
                return None

        # ------------------------------------------------------------------ out-of-fold reports
        # one row per cross-validation cutout, in the KB's order
        predictions = vstack(tables)[np.argsort(np.concatenate([kb.fold_indices(k)[1] for k in folds]))]
        labels = np.asarray(predictions["label"])
        probabilities = np.asarray(predictions["probability"])
        pooled = M.split_metrics(labels, probabilities)
        counts = M.confusion_counts(labels, probabilities)
        summary = M.fold_summary(per_fold)
        reports_dir.mkdir(parents=True, exist_ok=True)
        describe_columns(predictions, {
            "network": network, "models": f"fold_<k> networks of MLflow run {parent_run_id} (out of fold)",
            "mlflow_run_id": parent_run_id, "kb": str(kb_path), "kb_variant": variant, "kb_dvc_md5": kb_hash,
            "source_commit": commit, "threshold": 0.5, "threshold_note": "of confusion.csv; probabilities are raw",
        })
        _write_table(predictions, reports_dir / "predictions.ecsv")
        roc = M.roc_curve_table(labels, probabilities)
        with atomic_path(reports_dir / "roc.csv") as tmp:
            roc.write(tmp, format="ascii.csv")
        with atomic_path(reports_dir / "confusion.csv") as tmp:
            names = np.array(["non-lens", "lens"])
            from astropy.table import Table

            Table({"actual": names[labels], "predicted": names[(probabilities >= 0.5).astype(int)]}).write(
                tmp, format="ascii.csv"
            )
        from lenssearch.train.plots import plot_confusion, plot_fold_boxes, plot_roc

        figures = [
            plot_roc(roc, pooled["auc"], f"{network}: out-of-fold", reports_dir / "roc.png"),
            plot_confusion(counts, f"{network}: out-of-fold", reports_dir / "confusion.png"),
            plot_fold_boxes(per_fold, f"{network}: {kb.n_folds} folds", reports_dir / "folds_boxplot.png"),
        ]

        # ------------------------------------------------------------------ the run model (Sect. 5)
        if cfg.train.run_model == "fold_mean":
            def train_run(callbacks):
                return _fold_mean_or_reuse(network, kb, pipelines, models_dir)
        else:
            def train_run(callbacks):
                return _train_or_reuse(network, cfg, kb, pipelines, RUN_SPLIT, kb.cv_indices, kb.validation_indices,
                                       models_dir, progress, cache, callbacks)
        run_result, run_probabilities, was_trained = split_run(
            RUN_SPLIT, kb.cv_indices, kb.validation_indices, train_run)
        if was_trained:
            trained.append(RUN_SPLIT)

        metrics = {
            "network": network,
            "n_folds": kb.n_folds,
            "n_cv": int(len(kb.cv_indices)),
            "oof": pooled,
            "oof_confusion": counts,
            "folds": summary,
            "run_model_validation": run_result["metrics"],
        }
        _write_json(reports_dir / "metrics.json", metrics)
        # the parent's metrics have the children's names (auc, accuracy, ...): pooled out-of-fold values; the
        # spread over folds as <metric>_median/_q1/_q3/_iqr; the run model's are on its own child run
        tracking.log_summary(
            {**pooled, **summary},
            [reports_dir / "predictions.ecsv", reports_dir / "metrics.json", reports_dir / "roc.csv", *figures],
        )
        version = previous.get("registered_version")
        if not version or not tracking.run_exists(previous.get("registered_run"), tracking_uri):
            import keras

            run_model = keras.models.load_model(models_dir / RUN_SPLIT / "model.keras")
            version = tracking.log_registered_keras_model(
                run_model, input_example, f"lenssearch-{network}",
                tags={"network": network, "kb_dvc_md5": kb_hash, "git_commit": commit,
                      "oof_auc": pooled["auc"], "kb_variant": variant, "run_model": cfg.train.run_model},
                model_name=network,
                description=registered_description(network, variant, cfg.train.run_model,
                                                    cfg.train.test_time_symmetries),
                version_description=(
                    f"{network} trained on KB variant '{variant}' (DVC md5 {kb_hash}), commit {commit}; gate metric "
                    f"out-of-fold AUC {pooled['auc']:.4f} over {kb.n_folds} folds, run-model validation AUC "
                    f"{run_result['metrics']['auc']:.4f}."),
            )
            previous.update(registered_version=version, registered_run=parent_run_id)
            _write_json(run_file, previous)
        else:  # the same trained networks as a version registered before: it must be the one served as latest
            newest = tracking.make_latest(f"lenssearch-{network}", str(version))
            if newest != str(version):
                version = newest
                previous.update(registered_version=version)
                _write_json(run_file, previous)
        if trained:  # wall time of this call's training (benchmarks/bench_train.py sums the networks')
            seconds = time.perf_counter() - t_start
            _write_json(models_dir / "timing.json", {"train_seconds": seconds, "splits": trained})
            tracking.log_metrics({"train_seconds": seconds})
    return TrainingSummary(network, parent_run_id, dict(logged), str(version), metrics, trained)
