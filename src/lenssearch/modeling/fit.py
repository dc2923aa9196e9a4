"""Training of the modeling network: Gaussian negative log-likelihood, seeded, resumable, tracked.

The network (:func:`lenssearch.models.modeling.build_modeling`) is cut after its input preparation
(:func:`lenssearch.models.split_model`) and the lenses are prepared once, as for the classifiers; each epoch feeds
the training lenses under seeded random symmetries with their truth transformed alike
(:func:`lenssearch.modeling.data.augmented_epoch`). Standardisation: the head's offsets and scales are the mean
and standard deviation of each parameter over the training lenses and their eight symmetries.

After every epoch the weights, the optimizer's state and a small ``state.json`` (epoch, learning rate, best
validation loss, patience, history, MLflow run id, fingerprint) are written to ``models_dir``; a killed training
re-run with the same configuration and KB resumes after the last finished epoch (the same batches as straight
through); another fingerprint starts afresh. The learning rate follows a cosine decay over ``max_epochs``
(:func:`cosine_learning_rate`); the validation loss drives early stopping and the best epoch's weights are kept. Predictions average the eight symmetries of each cutout
(:func:`predict`). Finally the sigmas are calibrated on the validation lenses: each parameter's sigma is multiplied by the factor that puts 68.27% of the validation truths inside the 1-sigma
interval (:func:`calibration_factors`), so that the test set's coverage measures calibration on unseen lenses.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from lenssearch.errors import LensSearchError
from lenssearch.io import atomic_path

#: One-sigma coverage of a Gaussian: the calibration target.
ONE_SIGMA = 0.6826894921370859
LAYOUT_VERSION = 2  # 2: a plain functional Keras model (no QuietModel)


def fingerprint(cfg, kb_hash: str, truth_hash: str) -> str:
    """What a checkpoint belongs to: the modeling section, the seed, the KB and the truth."""
    from lenssearch.config import as_dict
    from lenssearch.train.fit import precision_policy

    identity = {"layout": LAYOUT_VERSION, "seed": cfg.base.seed, "modeling": as_dict(cfg.modeling),
                "kb_md5": kb_hash, "truth_md5": truth_hash,
                "precision": precision_policy(cfg.modeling.mixed_precision)}  # "auto" resolves per machine
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def standardisation(truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each parameter over ``truth`` and its eight symmetries."""
    from lenssearch.modeling.data import transform_truth

    stacked = np.concatenate([transform_truth(truth, np.full(len(truth), k)) for k in range(8)]).astype(np.float64)
    offset = stacked.mean(axis=0)
    scale = stacked.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    return offset, scale


def split_prediction(pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, sigma)`` of a modeling network's ``N x 2P`` output."""
    pred = np.asarray(pred, dtype=np.float64)
    p = pred.shape[1] // 2
    return pred[:, :p], np.exp(pred[:, p:])


def calibration_factors(truth: np.ndarray, mean: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Per parameter, the factor ``c`` such that ``|truth - mean| <= c sigma`` for 68.27% of the rows."""
    z = np.abs(np.asarray(truth, float) - mean) / sigma
    return np.quantile(z, ONE_SIGMA, axis=0)


def _prepare_dir(models_dir: Path, print_: str) -> dict | None:
    """The saved state if it belongs to ``print_`` (else the folder's checkpoint files are removed)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    state_file = models_dir / "state.json"
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if state.get("fingerprint") == print_ and (models_dir / "checkpoint.weights.h5").exists():
            return state
    for name in ("state.json", "checkpoint.weights.h5", "optimizer.npz", "best.weights.h5", "model.keras"):
        if (models_dir / name).exists():
            (models_dir / name).unlink()
    return None


def keras_save(save, path: Path) -> None:
    """``save(tmp)`` (a Keras ``save`` / ``save_weights``) to a temporary name with Keras' suffix, renamed onto
    ``path`` once complete: an interrupted save never leaves a file that looks finished."""
    import os

    suffix = ".weights.h5" if path.name.endswith(".weights.h5") else path.suffix
    tmp = path.with_name(f".{path.name[:-len(suffix)]}.tmp-{os.getpid()}{suffix}")
    try:
        save(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _save_checkpoint(models_dir: Path, model, optimizer, state: dict) -> None:
    keras_save(model.save_weights, models_dir / "checkpoint.weights.h5")
    with atomic_path(models_dir / "optimizer.npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, *[np.asarray(v) for v in optimizer.variables])
    with atomic_path(models_dir / "state.json") as tmp:
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")


def shift_pixels(cfg) -> tuple[float, int]:
    """The network's pixel (arcsec: the KB's pixel x ``modeling.network.binning``) and the largest shift of the
    augmentation in those pixels (``modeling.shift_arcsec``, rounded down)."""
    pixel = float(cfg.base.pixel_scale_arcsec) * int(cfg.modeling.network.binning)
    return pixel, int(np.floor(cfg.modeling.shift_arcsec / pixel + 1e-9))


def cosine_learning_rate(m, epoch: int) -> float:
    """The learning rate of ``epoch``: a cosine decay from ``learning_rate`` to ``min_learning_rate`` over
    ``max_epochs`` (Loshchilov & Hutter 2017, without restarts): a fixed schedule, not one driven by the noisy
    validation loss of a small validation split."""
    t = min(max(epoch, 0), m.max_epochs) / m.max_epochs
    return float(m.min_learning_rate + 0.5 * (m.learning_rate - m.min_learning_rate) * (1.0 + np.cos(np.pi * t)))


def train(cfg, lenses, rows: dict, models_dir: str | Path, print_: str, run_id_callback=None, progress: bool = True):
    """Train (or resume) the modeling network on ``lenses`` (:class:`~lenssearch.modeling.data.LensSet`) with the
    splits ``rows``; returns ``(model, state)``. ``run_id_callback(state)`` gives the MLflow run id to log the
    epochs to (created or resumed by the caller) or ``None``."""
    import keras
    import tensorflow as tf
    from tqdm.auto import tqdm

    from lenssearch.modeling.data import augmented_epoch, held_out_shifts, shift_images, shift_truth
    from lenssearch.models import split_model
    from lenssearch.models.modeling import build_modeling, gaussian_nll, set_standardisation
    from lenssearch.train.data import prepare_cutouts
    from lenssearch.train.fit import set_precision

    m = cfg.modeling
    models_dir = Path(models_dir)
    state = _prepare_dir(models_dir, print_)
    set_precision(m.mixed_precision)
    keras.utils.set_random_seed(int(cfg.base.seed))
    tf.config.experimental.enable_op_determinism()
    n_par = lenses.truth.shape[1]
    model = build_modeling(lenses.cutouts.shape[1:], m.network, n_parameters=n_par)
    offset, scale = standardisation(lenses.truth[rows["train"]])
    set_standardisation(model, offset, scale)
    preparation, regressor = split_model(model)
    optimizer = keras.optimizers.Adam(learning_rate=m.learning_rate)
    regressor.compile(optimizer=optimizer, loss=gaussian_nll)
    prepared = prepare_cutouts(preparation, lenses.cutouts, tuple(range(lenses.cutouts.shape[-1])),
                               progress=progress)
    pixel, max_shift = shift_pixels(cfg)
    val_shifts = held_out_shifts(rows["validation"].size, int(cfg.base.seed), 1, max_shift)
    val_x = shift_images(prepared[rows["validation"]], val_shifts)
    val_y = shift_truth(lenses.truth[rows["validation"]], val_shifts, pixel)
    if state is None:
        state = {"fingerprint": print_, "epoch": -1, "learning_rate": cosine_learning_rate(m, 0), "best_val_loss": None,
                 "best_epoch": -1, "since_best": 0, "history": {"loss": [], "val_loss": [], "learning_rate": []},
                 "stopped": False}
    else:
        model.load_weights(models_dir / "checkpoint.weights.h5")
        optimizer.build(regressor.trainable_variables)
        with np.load(models_dir / "optimizer.npz") as saved:
            values = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        if len(values) != len(optimizer.variables):
            raise LensSearchError(f"{models_dir}: optimizer checkpoint does not match the network; delete the folder")
        for var, value in zip(optimizer.variables, values):
            var.assign(value)
    run_id = run_id_callback(state) if run_id_callback else None
    state["mlflow_run_id"] = run_id
    bar = tqdm(total=m.max_epochs, initial=state["epoch"] + 1, desc="modeling", unit="epoch", disable=not progress)
    epoch = state["epoch"] + 1
    while epoch < m.max_epochs and not state["stopped"]:
        optimizer.learning_rate.assign(state["learning_rate"])
        x, y = augmented_epoch(prepared, lenses.truth, rows["train"], int(cfg.base.seed), epoch, max_shift, pixel)
        hist = regressor.fit(x, y, batch_size=m.batch_size, epochs=1, verbose=0, shuffle=False)
        loss = float(hist.history["loss"][-1])
        val_loss = float(regressor.evaluate(val_x, val_y, batch_size=256, verbose=0))
        if not (np.isfinite(loss) and np.isfinite(val_loss)):
            raise LensSearchError(f"modeling: the loss is not finite at epoch {epoch} (loss {loss}, validation "
                                  f"{val_loss}); lower modeling.learning_rate")
        h = state["history"]
        h["loss"].append(loss)
        h["val_loss"].append(val_loss)
        h["learning_rate"].append(state["learning_rate"])
        if state["best_val_loss"] is None or val_loss < state["best_val_loss"]:
            state.update(best_val_loss=val_loss, best_epoch=epoch, since_best=0)
            keras_save(model.save_weights, models_dir / "best.weights.h5")
        else:
            state["since_best"] += 1
            if state["since_best"] >= m.early_stopping_patience:
                state["stopped"] = True
        state["learning_rate"] = cosine_learning_rate(m, epoch + 1)
        state["epoch"] = epoch
        if run_id:
            from lenssearch import tracking

            tracking.log_step(run_id, {k: v[-1] for k, v in h.items()}, epoch)
        _save_checkpoint(models_dir, model, optimizer, state)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", val=f"{val_loss:.3f}")
        epoch += 1
    bar.close()
    model.load_weights(models_dir / "best.weights.h5")
    return model, state


def predict(model, cutouts: np.ndarray, calibration=None, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, sigma)`` of raw cutouts over their eight symmetries
    (:func:`lenssearch.modeling.data.predict_symmetrised`), sigma times ``calibration`` (one factor per parameter)
    when given: what the registered model returns."""
    from lenssearch.modeling.data import predict_symmetrised

    p = model.output_shape[-1] // 2
    if len(cutouts) == 0:
        return np.zeros((0, p)), np.zeros((0, p))
    mean, sigma = predict_symmetrised(
        lambda x: split_prediction(model.predict(x, batch_size=batch_size, verbose=0)), cutouts)
    return mean, sigma * (np.ones(p) if calibration is None else np.asarray(calibration, float))
