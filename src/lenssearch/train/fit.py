"""Fitting one network on one split, with epoch checkpoints that let a killed training resume.

The network is built whole (raw cutouts in, probability out: what is saved and registered) and cut by
:func:`lenssearch.models.split_model`; the pipelines serve cutouts already prepared (binned and normalised once,
:func:`lenssearch.train.data.prepare_cutouts`), and the fit acts on the classifier part, which shares every layer
and weight with the whole network.

Binary cross-entropy, Adadelta (Zeiler 2012), early stopping on the validation loss with the best weights restored
(Prechelt 1997) and learning-rate reduction on plateau (Angora et al. 2023, Sect. 2), both watching the
validation loss only after ``warmup_epochs`` (Adadelta's first epochs sit on a plateau of the loss), and both
watching its running mean over :data:`SMOOTHING_EPOCHS` epochs (``val_loss_smooth`` in the history) rather than
the raw value: on the demo's 90-cutout validation split the raw minimum selects lucky epochs of an under-trained
network (measured on the demo KB: OOF AUC of the VGG 0.82-0.83 with the smoothed criterion).

After every epoch the model's weights, the optimiser's state, the best weights so far, the callbacks' counters and the
history are written to ``<split_dir>/checkpoint/`` as one folder renamed into place, so a process killed at any
moment leaves either the previous epoch's checkpoint or the new one. Re-running resumes from it; the training
batches of an epoch depend only on ``(seed, epoch)``, so a resumed training sees the batches it would have seen.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from lenssearch.io import atomic_path

CHECKPOINT = "checkpoint"
#: Early stopping and the learning-rate schedule watch the mean validation loss of the last ``SMOOTHING_EPOCHS``
#: epochs: the demo's validation split (90 cutouts) gives a loss that jumps by +-0.1 from epoch to epoch, and
#: the raw minimum picks a lucky epoch rather than a good model.
SMOOTHING_EPOCHS = 3
MONITOR = "val_loss_smooth"
EVAL_BATCH_SIZE = 128


@dataclasses.dataclass
class Network:
    """A network in training: the whole model and its two parts (see :func:`lenssearch.models.split_model`).

    Attributes
    ----------
    model
        Raw cutouts -> probability: the model saved as ``model.keras`` and registered.
    preparation
        Raw cutouts -> prepared cutouts (binning, normalisation; no weights).
    classifier
        Prepared cutouts -> probability, sharing ``model``'s layers.
    trainer
        The compiled model that is fitted: ``classifier`` itself, or for an SC-VGG with branch supervision
        (:func:`branch_supervised`) the same layers with the branch probabilities as extra outputs.
    """

    model: Any
    preparation: Any
    classifier: Any
    trainer: Any


def _load_arrays(path: Path) -> list[np.ndarray]:
    """The arrays saved by ``np.savez(path, *arrays)``, in order."""
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def _callbacks_module():
    import keras

    class EpochCheckpoint(keras.callbacks.Callback):
        """Save the training state after each epoch; restore the callbacks' counters when resuming."""

        def __init__(self, folder: Path, state: dict, early_stopping, plateau, warmup_epochs: int, progress=None):
            super().__init__()
            self.warmup_epochs = warmup_epochs
            self.folder = Path(folder)
            self.state = state
            self.early_stopping = early_stopping
            self.plateau = plateau
            self.progress = progress

        def on_train_begin(self, logs=None):
            # Keras' callbacks reset their counters here; put back those of the interrupted training
            saved = self.state.get("callbacks")
            if not saved:
                # a fresh training: keep the LR schedule quiet during the warm-up (EarlyStopping has its own
                # start_from_epoch); cooldown epochs reset ReduceLROnPlateau's wait counter
                self.plateau.cooldown_counter = self.warmup_epochs
                return
            es, rl = self.early_stopping, self.plateau
            es.wait, es.best, es.best_epoch = saved["es_wait"], saved["es_best"], saved["es_best_epoch"]
            best = self.folder / "best.weights.npz"
            if best.exists():
                es.best_weights = _load_arrays(best)
            rl.wait, rl.best, rl.cooldown_counter = saved["rl_wait"], saved["rl_best"], saved["rl_cooldown"]

        def on_epoch_end(self, epoch, logs=None):
            logs = dict(logs or {})
            logs["learning_rate"] = float(np.asarray(self.model.optimizer.learning_rate))
            for key, value in logs.items():
                self.state["history"].setdefault(key, []).append(float(value))
            es, rl = self.early_stopping, self.plateau
            self.state.update(
                epoch=epoch + 1,
                stopped=bool(self.model.stop_training),
                callbacks={
                    "es_wait": es.wait, "es_best": None if es.best is None else float(es.best),
                    "es_best_epoch": es.best_epoch, "rl_wait": rl.wait,
                    "rl_best": None if rl.best is None else float(rl.best), "rl_cooldown": rl.cooldown_counter,
                },
            )
            with atomic_path(self.folder) as tmp:
                tmp.mkdir()
                # plain arrays: ~100x faster than a .keras save per epoch, and all that resuming needs
                # model.variables = weights + the dropout layers' random-generator states (an exact resume)
                np.savez(tmp / "weights.npz", *[np.asarray(v) for v in self.model.variables])
                np.savez(tmp / "optimizer.npz", *[np.asarray(v) for v in self.model.optimizer.variables])
                if es.best_weights is not None:
                    np.savez(tmp / "best.weights.npz", *es.best_weights)
                (tmp / "state.json").write_text(json.dumps(self.state))
            if self.progress is not None:
                self.progress.update(1)
                self.progress.set_postfix(loss=f"{logs.get('loss', np.nan):.3f}",
                                          val_loss=f"{logs.get('val_loss', np.nan):.3f}")

    class SmoothedValidationLoss(keras.callbacks.Callback):
        """Add ``val_loss_smooth``, the mean validation loss of the last ``window`` epochs, to the epoch's logs.

        Runs before early stopping and the learning-rate schedule, which watch it instead of the raw validation
        loss (see :data:`SMOOTHING_EPOCHS`). ``previous`` holds the validation losses of a resumed training's
        earlier epochs, so a resumed training smooths exactly as an uninterrupted one.
        """

        def __init__(self, window: int, previous=()):
            super().__init__()
            self.window = max(int(window), 1)
            self.recent = [float(v) for v in previous][-self.window:]

        def on_epoch_end(self, epoch, logs=None):
            if logs is None or "val_loss" not in logs:
                return
            self.recent = (self.recent + [float(logs["val_loss"])])[-self.window:]
            logs[MONITOR] = float(np.mean(self.recent))

    return EpochCheckpoint, SmoothedValidationLoss


def fit_split(
    network: str,
    cfg: Any,
    bands: tuple[str, ...],
    pipelines,
    train_rows: np.ndarray,
    validation_rows: np.ndarray,
    split_dir: str | Path,
    seed: int,
    progress: bool = True,
    description: str = "",
    extra_callbacks: tuple = (),
    model: Network | None = None,
) -> tuple[Network, dict]:
    """Train ``network`` on ``train_rows`` (balanced, augmented), stopping on the loss of ``validation_rows``.

    Parameters
    ----------
    network
        A key of :data:`lenssearch.models.MODELS`.
    cfg
        The ``train`` configuration (:class:`lenssearch.config.TrainConfig`).
    bands
        The knowledge base's band order.
    pipelines
        :class:`lenssearch.train.data.CutoutPipelines` over the knowledge base's prepared cutouts.
    train_rows, validation_rows
        Rows of the knowledge base.
    split_dir
        Folder of this split's checkpoint; a checkpoint found there is resumed.
    seed
        Seeds the weights, the dropout, the class balancing and the augmentation of this split.
    extra_callbacks
        Keras callbacks run after the checkpoint of each epoch (tests use one to simulate a kill).
    model
        The :class:`Network` of the same network returned by an earlier call, to be re-initialised and reused:
        its traced training and prediction functions are kept (tracing costs more than a small split's
        training on a CPU). Its weights are overwritten.

    Returns
    -------
    network, history
        The :class:`Network` with its best weights, and the per-epoch history (``loss``, ``val_loss``, ``accuracy``,
        ``val_accuracy``, ``learning_rate``) over all sessions of the training.
    """
    import keras
    from tqdm.auto import tqdm

    from lenssearch.models import build_model, split_model

    split_dir = Path(split_dir)
    folder = split_dir / CHECKPOINT
    set_precision(cfg.mixed_precision)
    keras.utils.set_random_seed(seed)
    fresh = build_model(network, cfg.network, bands)  # this split's initial weights and dropout seeds
    if model is None:
        preparation, classifier = split_model(fresh)
        net = Network(fresh, preparation, classifier, compiled_trainer(network, fresh, classifier, cfg))
        net.trainer.optimizer.build(net.trainer.trainable_variables)
    else:
        net = model
        for target, source in zip(net.model.variables, fresh.variables, strict=True):
            target.assign(source)
        for variable in net.trainer.optimizer.variables:  # the accumulators and step count start at 0
            variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
        net.trainer.optimizer.learning_rate = cfg.learning_rate
    del fresh
    model = net.trainer  # what is fitted and checkpointed
    if (folder / "state.json").exists():
        state = json.loads((folder / "state.json").read_text())
        for variable, value in zip(model.variables, _load_arrays(folder / "weights.npz"), strict=True):
            variable.assign(value)
        for variable, value in zip(model.optimizer.variables, _load_arrays(folder / "optimizer.npz"), strict=True):
            variable.assign(value)
    else:
        if folder.exists():
            shutil.rmtree(folder)
        state = {"epoch": 0, "stopped": False, "history": {}}
    early_stopping = keras.callbacks.EarlyStopping(
        monitor=MONITOR, mode="min", patience=cfg.early_stopping_patience, restore_best_weights=True,
        start_from_epoch=cfg.warmup_epochs,
    )
    plateau = keras.callbacks.ReduceLROnPlateau(
        monitor=MONITOR, mode="min", factor=cfg.reduce_lr_factor, patience=cfg.reduce_lr_patience,
        min_lr=cfg.min_learning_rate,
    )
    start = int(state["epoch"])
    if state["stopped"] or start >= cfg.max_epochs:
        best = folder / "best.weights.npz"
        if best.exists():
            model.set_weights(_load_arrays(best))
        return net, state["history"]
    batch_size = cfg.batch_size[network] if network in cfg.batch_size else None
    if batch_size is None:
        raise KeyError(f"train.batch_size has no entry for network '{network}'")
    dataset, steps = pipelines.training(
        train_rows, batch_size, cfg.examples_per_class, seed, start, cfg.max_epochs
    )
    validation = pipelines.evaluation(validation_rows, EVAL_BATCH_SIZE)
    bar = tqdm(total=cfg.max_epochs, initial=start, desc=description or network, unit="epoch",
               disable=not progress, leave=False)
    checkpoint_class, smoothing_class = _callbacks_module()
    checkpoint = checkpoint_class(folder, state, early_stopping, plateau, cfg.warmup_epochs, bar)
    smoothing = smoothing_class(SMOOTHING_EPOCHS, state["history"].get("val_loss", ()))
    try:
        model.fit(
            dataset,
            validation_data=validation,
            epochs=cfg.max_epochs,
            initial_epoch=start,
            steps_per_epoch=steps,
            callbacks=[smoothing, early_stopping, plateau, checkpoint, *extra_callbacks],
            shuffle=False,  # the pipeline shuffles (seeded, per epoch)
            verbose=0,
        )
    finally:
        bar.close()
    return net, state["history"]


def compiled_trainer(network: str, model, classifier, cfg):
    """The compiled model that the training fits for ``network``: ``classifier`` (binary cross-entropy), or for an
    SC-VGG with ``cfg.sc_vgg_branch_loss_weight`` > 0 its :func:`branch_supervised` form with
    :func:`branch_supervised_loss`. ``model`` is the whole network, ``classifier`` its part after the preparation,
    ``cfg`` the ``train`` configuration."""
    import keras

    weight = cfg.sc_vgg_branch_loss_weight
    if network == "sc_vgg" and weight > 0:
        trainer = branch_supervised(model)
        trainer.compile(optimizer=make_optimizer(cfg), loss=branch_supervised_loss(weight),
                        metrics=[keras.metrics.MeanMetricWrapper(_first_column_accuracy, name="accuracy")])
    else:
        trainer = classifier
        trainer.compile(optimizer=make_optimizer(cfg), loss=keras.losses.BinaryCrossentropy(),
                        metrics=[keras.metrics.BinaryAccuracy(name="accuracy")])
    return trainer


def branch_supervised(model):
    """The classifier part of the SC-VGG ``model`` (prepared cutouts in, as :func:`lenssearch.models.split_model`)
    with its branch probabilities as extra outputs: ``(N, 1 + n_branches)``, the mean probability first. It shares
    every layer and weight with ``model``; only the training uses it.

    The paper's SC-VGG computes its loss on the mean of the branch probabilities alone (Angora et al. 2023,
    Sect. 2). With that loss a branch gets a gradient only through the mean, so a band that cannot see a lens
    (a red arc in F435W) is pushed to call the host a lens, and the three branches learn slowly together: on the
    demo's `visible` KB the jointly trained SC-VGG reaches an out-of-fold AUC of 0.92, while the mean of three
    single-band networks trained alone reaches 0.97. Adding each branch's own loss (deep supervision, Lee et al.
    2015, AISTATS) trains every branch as a single-band network as well; the served network, its output and its
    loss term on the mean are unchanged.
    """
    import keras

    from lenssearch.models.vgg import PREPARATION_LAYER

    branches = [layer.output for layer in model.layers
                if layer.name.endswith("_probability") and layer.name != "probability"]
    if not branches:
        raise ValueError(f"{model.name}: no branch probabilities (layers named '<band>_probability')")
    outputs = keras.layers.Concatenate(dtype="float32", name="branch_supervision")([model.output, *branches])
    return keras.Model(model.get_layer(PREPARATION_LAYER).output, outputs, name=f"{model.name}_branch_supervised")


def branch_supervised_loss(weight: float):
    """Binary cross-entropy of the mean probability (column 0) + ``weight`` x the mean binary cross-entropy of the
    branch probabilities (the other columns), per example."""
    from keras import ops

    def loss(y_true, y_pred):
        y = ops.reshape(ops.cast(y_true, "float32"), (-1, 1))
        p = ops.clip(ops.cast(y_pred, "float32"), 1e-7, 1.0 - 1e-7)
        bce = -(y * ops.log(p) + (1.0 - y) * ops.log(1.0 - p))
        return bce[:, 0] + weight * ops.mean(bce[:, 1:], axis=-1)

    loss.__name__ = "branch_supervised_bce"
    return loss


def _first_column_accuracy(y_true, y_pred):
    from keras import ops

    y = ops.reshape(ops.cast(y_true, "float32"), (-1,))
    return ops.cast(ops.equal(y, ops.cast(y_pred[:, 0] > 0.5, "float32")), "float32")


def make_optimizer(cfg):
    """The ``train.optimizer`` at ``train.learning_rate``: Adadelta (Angora et al. 2023) or Adam."""
    import keras

    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=cfg.learning_rate)
    return keras.optimizers.Adadelta(learning_rate=cfg.learning_rate)


def native_bfloat16(cpuinfo: str | None = None, gpu: bool | None = None) -> str | None:
    """Why this machine computes in bfloat16 natively (``"GPU"``, ``"amx_bf16"``, ``"avx512_bf16"``), or ``None``.

    Without it (an AVX2-only CPU, e.g. AMD Zen 3 or Intel before Cooper Lake) TensorFlow emulates bfloat16 and
    training is several times slower than in float32 (demo VGG, one 2-core AMD EPYC: 83 against 465 images/s).
    ``cpuinfo`` (the text of ``/proc/cpuinfo``) and ``gpu`` default to this machine's.
    """
    if gpu is None:
        import tensorflow as tf

        gpu = bool(tf.config.list_physical_devices("GPU"))
    if gpu:
        return "GPU"
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:  # not Linux: no way to ask without a dependency; float32 is the safe choice
            return None
    text = cpuinfo
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return next((flag for flag in ("amx_bf16", "avx512_bf16") if flag in flags), None)


def resolve_precision(mixed) -> bool:
    """``train.mixed_precision`` / ``modeling.mixed_precision`` as a bool: ``"auto"`` is bfloat16 where the
    hardware computes it natively (:func:`native_bfloat16`), float32 elsewhere."""
    if mixed == "auto":
        return native_bfloat16() is not None
    return bool(mixed)


def precision_policy(mixed) -> str:
    """The Keras dtype policy that ``mixed`` (a bool or ``"auto"``) stands for on this machine."""
    return "mixed_bfloat16" if resolve_precision(mixed) else "float32"


def set_precision(mixed) -> str:
    """Keras' global dtype policy for the networks built next: ``mixed_bfloat16`` (bfloat16 compute, float32
    weights; the input preparation and the output stay float32, :mod:`lenssearch.models`) or ``float32``.
    ``mixed``: a bool or ``"auto"`` (:func:`resolve_precision`)."""
    import keras

    policy = precision_policy(mixed)
    keras.mixed_precision.set_global_policy(policy)
    return policy


def predict_rows(classifier, pipelines, rows: np.ndarray) -> np.ndarray:
    """The lens probability of knowledge-base ``rows`` (no augmentation), as float64.

    ``classifier`` takes the pipelines' prepared cutouts (:attr:`Network.classifier`).
    """
    if len(rows) == 0:
        return np.zeros(0)
    dataset = pipelines.evaluation(rows, EVAL_BATCH_SIZE, with_labels=False)
    return np.asarray(classifier.predict(dataset, verbose=0), dtype=np.float64).reshape(-1)
