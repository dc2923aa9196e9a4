"""Per-batch model cost and paper-size training speed on whatever Keras runs on (a GPU where there is one).

The 1.1e8-cutout estimate of ``docs/search_scale.md`` needs the model's time per batch on a GPU (``t_gpu``), and
issue 13 asks for training images/s of the paper-size networks with and without mixed precision. This script
measures both with Keras 3 on its configured backend (``KERAS_BACKEND``: TensorFlow here; on a GPU machine
without TensorFlow, JAX), using nothing of lenssearch but its network builders and layers:

1. inference: each trained network's ``model.keras`` (``--models DIR ...``: the ``run`` folders of the train
   stage) on batches of ``--batch`` raw cutouts 128 x 128 x 3 (``predict_on_batch``; warm-up, then the median of
   ``--repeats`` calls); a committee costs the sum of its members (``all_models_seconds_per_batch``: the sum
   of the given ones);
2. training: the paper-profile (``configs/paper.yaml``) VGG, SC-VGG and ResNet classifiers fitted on prepared
   cutouts (as the train stage does), float32 and bfloat16 mixed precision, images/s over ``--train-steps``
   steps after a warm-up.

The cutouts are Gaussian noise with a bright centre: speed does not depend on content.
Run: ``python benchmarks/bench_accelerator.py --models models/vgg/run ... [--out accelerator.json]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def _cutouts(n: int, size: int = 128, bands: int = 3) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 0.01, (n, size, size, bands)).astype(np.float32)
    x[:, size // 2 - 4:size // 2 + 4, size // 2 - 4:size // 2 + 4, :] += 1.0
    return x


def _device() -> str:
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            return f"jax {jax.__version__}: {jax.devices()[0].device_kind}"
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            return f"tensorflow {tf.__version__}: {'GPU' if gpus else 'CPU'}"
        if backend == "torch":
            import torch

            return f"torch {torch.__version__}: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU'}"
    except Exception as exc:  # noqa: BLE001 - only a label
        return f"{backend}: ({exc})"
    return backend


def inference(model_dirs, batch: int, repeats: int) -> dict:
    import keras

    import lenssearch.models  # noqa: F401 - registers the custom layers

    x = _cutouts(batch)
    out = {}
    for d in model_dirs:
        path = Path(d) / "model.keras"
        model = keras.saving.load_model(path, compile=False)
        bands = model.input_shape[-1]
        xb = x[..., :bands] if bands == x.shape[-1] else x[..., -bands:]
        for _ in range(3):
            np.asarray(model.predict_on_batch(xb))
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            np.asarray(model.predict_on_batch(xb))
            times.append(time.perf_counter() - t0)
        t = statistics.median(times)
        name = Path(d).parent.name if Path(d).name == "run" else Path(d).name
        out[name] = {"seconds_per_batch": t, "cutouts_per_second": batch / t, "batch": batch}
        print(f"{name:10s} {t * 1e3:8.2f} ms per batch of {batch}  {batch / t:10.0f} cutouts/s", flush=True)
    return out


def training(networks, steps: int, batch_override: int | None) -> dict:
    import keras

    from lenssearch.config import load_config
    from lenssearch.models import build_model, split_model

    cfg = load_config(REPO / "params.yaml", REPO / "configs" / "paper.yaml")
    out = {}
    for network in networks:
        for mixed in (False, True):
            keras.mixed_precision.set_global_policy("mixed_bfloat16" if mixed else "float32")
            keras.utils.set_random_seed(0)
            model = build_model(network, cfg.train.network)
            preparation, classifier = split_model(model)
            classifier.compile(keras.optimizers.Adadelta(learning_rate=cfg.train.learning_rate),
                               "binary_crossentropy")
            bs = batch_override or int(cfg.train.batch_size[network])
            n = bs * (steps + 3)
            raw = _cutouts(min(n, 512), bands=model.input_shape[-1])
            prepared = np.asarray(preparation(raw, training=False), np.float32)
            prepared = np.concatenate([prepared] * (-(-n // len(prepared))))[:n]
            y = (np.arange(n) % 2).astype(np.float32)
            classifier.fit(prepared[:3 * bs], y[:3 * bs], batch_size=bs, epochs=1, verbose=0)  # compile, warm-up
            t0 = time.perf_counter()
            classifier.fit(prepared[3 * bs:], y[3 * bs:], batch_size=bs, epochs=1, verbose=0)
            t = time.perf_counter() - t0
            key = f"{network}/{'bfloat16' if mixed else 'float32'}"
            out[key] = {"images_per_second": steps * bs / t, "batch": bs, "steps": steps}
            print(f"{key:18s} {steps * bs / t:10.0f} training images/s (batch {bs})", flush=True)
    keras.mixed_precision.set_global_policy("float32")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=None,
                    help="folders holding a trained model.keras (default: models/<network>/run of the demo pipeline)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--train", nargs="*", default=["vgg", "sc_vgg", "resnet"], help="paper-profile networks")
    ap.add_argument("--train-steps", type=int, default=10)
    ap.add_argument("--train-batch", type=int, default=None, help="override the profile's batch size")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import keras

    if args.models is None:
        args.models = [str(p.parent) for p in sorted((REPO / "models").glob("*/run/model.keras"))]
    result = {"backend": keras.backend.backend(), "device": _device(), "machine": platform.node()}
    print(f"Keras {keras.__version__} on {result['device']}", flush=True)
    if args.models:
        result["inference"] = inference(args.models, args.batch, args.repeats)
        result["all_models_seconds_per_batch"] = sum(v["seconds_per_batch"] for v in result["inference"].values())
    if args.train:
        result["training"] = training(args.train, args.train_steps, args.train_batch)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
