"""Benchmark of the train stage on this machine: input-pipeline overhead, images/s, memory.

1. Input-pipeline overhead (target <= 1.10): one training epoch of the demo VGG fed by the full ``tf.data``
   pipeline (gather from the in-memory prepared KB, band selection, random flips/rotations, balanced sampling,
   prefetch; the training fits the network's classifier on cutouts prepared once, see ``models.split_model``),
   divided by the time of the same batches (materialised beforehand) fed from memory: numpy arrays through
   ``fit(x, y)``, and the batches as cached in-memory tensors; the faster of the two is the denominator.
2. Images/s of training (``fit`` of the classifier on prepared cutouts, as the train stage runs it) and of
   inference (``predict`` of the whole network on raw cutouts, as the search runs it) for each network in the
   demo and paper profiles, and of the one-off preparation of raw cutouts.
3. Memory (target < 6 GB resident): in a fresh process, a knowledge base of the paper's size written to a
   temporary file (``--paper-cutouts`` cutouts, 128x128x3 float32), read once, put into the pipelines, and a few
   training steps of each paper-profile network; prints the process's peak resident memory.

The cutouts are toy cutouts (``lenssearch.train.toy_kb``; noise for the memory test): speed and memory do not
depend on their content. Run: ``python benchmarks/bench_train.py [--kb data/kb/kb.h5] [--skip-memory]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
NETWORKS = ("vgg", "sc_vgg", "resnet", "f435w", "f606w", "f814w")
OVERHEAD_TARGET = 1.10
MEMORY_TARGET_GB = 6.0


def _configs():
    from lenssearch.config import load_config

    return {
        "demo": load_config(REPO / "params.yaml"),
        "paper": load_config(REPO / "params.yaml", REPO / "configs" / "paper.yaml"),
    }


def _compiled(network, cfg, bands, mixed: bool | None = None):
    """(whole network, its preparation, its compiled classifier), as the train stage builds them: for an SC-VGG
    with ``train.sc_vgg_branch_loss_weight`` > 0 the classifier fitted is the branch-supervised one.

    ``mixed``: bfloat16 mixed precision (default: the profile's ``train.mixed_precision``)."""
    import keras

    from lenssearch.models import build_model, split_model
    from lenssearch.train.fit import compiled_trainer, set_precision

    set_precision(cfg.train.mixed_precision if mixed is None else mixed)
    keras.utils.set_random_seed(0)
    model = build_model(network, cfg.train.network, bands)
    preparation, classifier = split_model(model)
    return model, preparation, compiled_trainer(network, model, classifier, cfg.train)


def pipeline_overhead(kb_path: Path, cfg, rounds: int = 4, epochs_per_fit: int = 4) -> dict:
    """Epoch time through the tf.data pipeline / epoch time on the same batches from memory.

    As the train stage does, one pipeline serves all the epochs of a ``fit`` (``epochs_per_fit`` epochs); the
    in-memory feeds are the batches of one epoch materialised beforehand, as numpy arrays through ``fit(x, y)``
    and as cached tensors. The three ``fit`` calls alternate ``rounds`` times so that a change of the machine's
    load hits them alike; epochs are timed inside ``fit``; the first round (tracing) and the first epoch of each
    ``fit`` (iterator start) are left out, and the medians of the other epochs are compared.
    """
    import keras
    import tensorflow as tf

    from lenssearch.models import network_bands
    from lenssearch.train.data import CutoutPipelines, prepare_cutouts, read_knowledge_base

    kb = read_knowledge_base(kb_path)
    bands = network_bands("vgg", kb.bands)
    _, preparation, model = _compiled("vgg", cfg, kb.bands)
    prepared = prepare_cutouts(preparation, kb.cutouts, bands)
    pipes = CutoutPipelines(prepared, kb.labels, tuple(range(prepared.shape[-1])))
    train, _ = kb.fold_indices(0)
    batch = cfg.train.batch_size["vgg"]
    materialised = list(pipes.training(train, batch, cfg.train.examples_per_class, 1, 0, 1)[0].as_numpy_iterator())
    x = np.concatenate([b[0] for b in materialised])
    y = np.concatenate([b[1] for b in materialised])
    tensors = tf.data.Dataset.from_tensor_slices((tf.constant(x), tf.constant(y))).batch(batch).cache()
    times: dict[str, list[float]] = {"pipeline": [], "numpy": [], "tensors": []}

    class Timer(keras.callbacks.Callback):
        def __init__(self, key, keep):
            super().__init__()
            self.key, self.keep = key, keep

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            if self.keep and epoch > 0:
                times[self.key].append(time.perf_counter() - self.t0)

    steps = 0
    for r in range(rounds + 1):  # round 0 traces each feed
        keep = r > 0
        first = r * epochs_per_fit
        dataset, steps = pipes.training(train, batch, cfg.train.examples_per_class, 1, first, first + epochs_per_fit)
        model.fit(dataset, epochs=epochs_per_fit, steps_per_epoch=steps, verbose=0, shuffle=False,
                  callbacks=[Timer("pipeline", keep)])
        model.fit(x, y, batch_size=batch, epochs=epochs_per_fit, verbose=0, shuffle=False,
                  callbacks=[Timer("numpy", keep)])
        model.fit(tensors, epochs=epochs_per_fit, verbose=0, shuffle=False, callbacks=[Timer("tensors", keep)])
    median = {key: float(np.median(values)) for key, values in times.items()}
    memory_s = min(median["numpy"], median["tensors"])  # the faster in-memory feed: the stricter comparison
    return {"steps": steps, "batch": batch, "pipeline_epoch_s": median["pipeline"], "numpy_epoch_s": median["numpy"],
            "tensors_epoch_s": median["tensors"], "memory_epoch_s": memory_s, "ratio": median["pipeline"] / memory_s,
            "epochs_timed": len(times["pipeline"])}


def throughput(network: str, cfg, steps: int, bands=("F435W", "F606W", "F814W"), mixed: bool = False,
               repeats: int = 3) -> dict:
    """Training, preparation and inference images/s of one network on random raw cutouts held in memory
    (``mixed``: bfloat16 mixed precision): each the median of ``repeats`` timed passes after a traced one."""
    from lenssearch.models import network_bands
    from lenssearch.train.data import prepare_cutouts

    n_bands = len(network_bands(network, bands))
    batch = cfg.train.batch_size[network]
    pixels = cfg.train.network.input_pixels
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch * steps, pixels, pixels, n_bands)).astype(np.float32)
    y = (np.arange(len(x)) % 2).astype(np.float32)
    model, preparation, classifier = _compiled(network, cfg, bands, mixed)

    def median_rate(run) -> float:
        seconds = []
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            run()
            seconds.append(time.perf_counter() - t0)
        return len(x) / float(np.median(seconds))

    prepare_cutouts(preparation, x[:batch], tuple(range(n_bands)))  # trace
    prepare_ips = median_rate(lambda: prepare_cutouts(preparation, x.copy(), tuple(range(n_bands))))
    prepared = prepare_cutouts(preparation, x.copy(), tuple(range(n_bands)))
    classifier.fit(prepared[:batch * 2], y[:batch * 2], batch_size=batch, epochs=1, verbose=0)  # trace
    train_ips = median_rate(lambda: classifier.fit(prepared, y, batch_size=batch, epochs=1, verbose=0, shuffle=False))
    model.predict(x[:128], batch_size=128, verbose=0)  # trace
    infer_ips = median_rate(lambda: model.predict(x, batch_size=128, verbose=0))
    return {"train_img_s": train_ips, "prepare_img_s": prepare_ips, "infer_img_s": infer_ips,
            "params": model.count_params(), "repeats": max(1, repeats)}


MEMORY_CHILD = r"""
import json, resource, sys, time
from lenssearch.config import load_config
from lenssearch.train.data import CutoutPipelines, prepare_cutouts, read_knowledge_base
from lenssearch.train.fit import predict_rows
sys.path.insert(0, sys.argv[3])
from bench_train import _compiled
cfg = load_config(sys.argv[4] + "/params.yaml", sys.argv[4] + "/configs/paper.yaml")
t0 = time.perf_counter()
kb = read_knowledge_base(sys.argv[1])
read_s = time.perf_counter() - t0
size_gb = kb.cutouts.nbytes / 1e9
after_read = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
_, preparation, _ = _compiled("vgg", cfg, kb.bands)
prepared = prepare_cutouts(preparation, kb.cutouts, (0, 1, 2))  # in place at the paper's scale (no binning)
kb.cutouts = None
pipes = CutoutPipelines(prepared, kb.labels, (0, 1, 2))
del prepared
after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
steps = int(sys.argv[2])
for network in ("vgg", "sc_vgg"):
    _, _, model = _compiled(network, cfg, kb.bands)
    train, test = kb.fold_indices(0)
    ds, n = pipes.training(train, cfg.train.batch_size[network], 0, 1, 0, 1)
    model.fit(ds.take(steps), epochs=1, verbose=0)
    predict_rows(model, pipes, test[:256])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
print(json.dumps({"kb_gb": size_gb, "read_s": read_s, "peak_after_read_gb": after_read,
                  "peak_after_load_gb": after_load, "peak_gb": peak}))
"""


def write_noise_kb(path: Path, n: int, n_folds: int = 10) -> Path:
    """A KB of ``n`` 128x128x3 noise cutouts (speed and memory only), written in blocks."""
    import h5py

    from lenssearch.train.toy_kb import stratified_folds

    rng = np.random.default_rng(0)
    labels = (rng.random(n) < 2 / 3).astype(np.int8)
    with h5py.File(path, "w") as handle:
        data = handle.create_dataset("cutouts", shape=(n, 128, 128, 3), dtype=np.float32,
                                     chunks=(16, 128, 128, 3))
        for start in range(0, n, 512):
            stop = min(n, start + 512)
            data[start:stop] = rng.standard_normal((stop - start, 128, 128, 3), dtype=np.float32)
        handle.create_dataset("labels", data=labels)
        handle.create_dataset("ids", data=np.array([f"m{i:06d}" for i in range(n)], dtype="S8"))
        handle.create_dataset("fold", data=stratified_folds(labels, n_folds, 0.1, rng))
        handle.attrs["bands"] = np.array(["F435W", "F606W", "F814W"], dtype="S8")
        handle.attrs["n_folds"] = n_folds
    return path


def demo_training_time(models_dir: Path) -> dict:
    """Wall time of each network's last training (``timing.json`` written by the train stage) and the total."""
    out = {}
    for network in NETWORKS:
        path = models_dir / network / "timing.json"
        if path.exists():
            out[network] = float(json.loads(path.read_text())["train_seconds"])
    if out:
        out["total"] = sum(out.values())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=Path, default=None, help="a knowledge base (default: a 900-cutout toy KB)")
    parser.add_argument("--steps", type=int, default=12, help="batches per throughput measurement (demo)")
    parser.add_argument("--paper-steps", type=int, default=3, help="batches per throughput measurement (paper)")
    parser.add_argument("--paper-cutouts", type=int, default=8700, help="cutouts of the memory test (~1.7 GB)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per throughput figure (their median)")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--emulated-paper", action="store_true",
                        help="time the paper-size networks in bfloat16 even where the CPU emulates it (slow)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()

    from lenssearch._runtime import apply_offline_env

    apply_offline_env()
    import tensorflow as tf

    from lenssearch.train.fit import native_bfloat16, precision_policy

    device = "GPU" if tf.config.list_physical_devices("GPU") else f"CPU ({os.cpu_count()} cores)"
    configs = _configs()
    native = native_bfloat16()
    chosen = precision_policy(configs["demo"].train.mixed_precision)
    print(f"device: {device}; TensorFlow {tf.__version__}; native bfloat16: {native or 'no (emulated)'}; "
          f"train.mixed_precision {configs['demo'].train.mixed_precision!r} -> {chosen}")
    results: dict = {"device": device, "native_bfloat16": native, "demo_policy": chosen}
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        kb_path = args.kb
        if kb_path is None:
            from lenssearch.train.toy_kb import write_toy_kb

            kb_path = write_toy_kb(Path(tmp) / "kb.h5", n_lenses=600, n_nonlenses=300, validation_fraction=0.1)
        overhead = pipeline_overhead(kb_path, configs["demo"])
        results["pipeline_overhead"] = overhead
        verdict = "OK" if overhead["ratio"] <= OVERHEAD_TARGET else "ABOVE TARGET"
        print(f"input pipeline overhead (demo VGG, {overhead['steps']} steps of {overhead['batch']}): "
              f"{overhead['pipeline_epoch_s']:.2f} s / {overhead['memory_epoch_s']:.2f} s in memory "
              f"(numpy {overhead['numpy_epoch_s']:.2f} s, cached tensors {overhead['tensors_epoch_s']:.2f} s) = "
              f"{overhead['ratio']:.3f} (target <= {OVERHEAD_TARGET}) {verdict}")

        print(f"images/s: the median of {max(1, args.repeats)} timed passes each")
        print(f"{'profile':8s} {'network':8s} {'precision':10s} {'params':>9s} {'train img/s':>12s} "
              f"{'prepare img/s':>14s} {'infer img/s':>12s}")
        results["throughput"] = {}
        for profile, cfg in configs.items():
            steps = args.steps if profile == "demo" else args.paper_steps
            for network in NETWORKS:
                for mixed in (False, True):
                    if mixed and profile == "paper" and native is None and not args.emulated_paper:
                        # emulated bfloat16 at the paper's size takes minutes per pass and no run uses it
                        print(f"{profile:8s} {network:8s} {'bfloat16':10s} skipped: emulated on this CPU "
                              "(--emulated-paper times it)", flush=True)
                        continue
                    r = throughput(network, cfg, steps, mixed=mixed, repeats=args.repeats)
                    precision = "bfloat16" if mixed else "float32"
                    results["throughput"][f"{profile}/{network}/{precision}"] = r
                    print(f"{profile:8s} {network:8s} {precision:10s} {r['params']:9d} {r['train_img_s']:12.1f} "
                          f"{r['prepare_img_s']:14.1f} {r['infer_img_s']:12.1f}", flush=True)
        timing = demo_training_time(REPO / "models")
        if timing:
            results["demo_training_s"] = timing
            print("demo training time (models/<network>/timing.json of the last `dvc repro`): "
                  + ", ".join(f"{k} {v:.0f} s" for k, v in timing.items() if k != "total")
                  + f"; total {timing['total']:.0f} s")

        if not args.skip_memory:
            path = write_noise_kb(Path(tmp) / "paper_kb.h5", args.paper_cutouts)
            out = subprocess.run(
                [sys.executable, "-c", MEMORY_CHILD, str(path), "3", str(Path(__file__).parent), str(REPO)],
                capture_output=True, text=True,
            )
            if out.returncode != 0:
                print(out.stderr[-3000:])
                raise SystemExit("memory test failed")
            memory = json.loads(out.stdout.strip().splitlines()[-1])
            results["memory"] = memory
            verdict = "OK" if memory["peak_gb"] < MEMORY_TARGET_GB else "ABOVE TARGET"
            print(f"memory: KB {memory['kb_gb']:.2f} GB read in {memory['read_s']:.1f} s; peak resident "
                  f"{memory['peak_after_load_gb']:.2f} GB after loading, {memory['peak_gb']:.2f} GB after training "
                  f"steps of the paper VGG and SC-VGG (target < {MEMORY_TARGET_GB} GB) {verdict}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
