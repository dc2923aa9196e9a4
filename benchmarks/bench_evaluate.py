"""Benchmark: the evaluate + committee + tune + promote chain on the demo profile. Target: at most 120 s on 2 cores.

Synthetic out-of-fold predictions of demo size (5 networks x ``--n`` cutouts, 3 folds, in the train stage's
``reports/<network>/predictions.ecsv`` layout, with KB metadata) and a fresh sqlite MLflow store in which five
tiny real pyfunc models stand for the trained ``lenssearch-<network>`` models (set-up, not timed). Each stage
then runs as ``dvc repro`` would run it: the ``lenssearch`` verb in a fresh process, with the paths of dvc.yaml
under a temporary folder and the parameters of params.yaml. Prints the wall time of each stage and the total.

Run: ``python benchmarks/bench_evaluate.py [--n 900] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lenssearch.evaluate.synthetic import NETWORKS, write_synthetic

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 120.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=900, help="cutouts (out-of-fold predictions per network)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the outputs in this folder")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench_evaluate_")) if args.keep is None else args.keep.resolve()
    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root}/mlflow.db"
    t0 = time.perf_counter()
    preds, kb = write_synthetic(root, np.random.default_rng(20231), n=args.n)
    from lenssearch import tracking

    tracking.setup(uri)
    import mlflow

    mlflow.set_experiment(experiment_id=tracking.experiment_id("train-stand-ins", uri))
    for i, net in enumerate(NETWORKS):
        tracking.log_stand_in_model(f"lenssearch-{net}", 3 if net in ("vgg", "sc_vgg") else 1, 2.0 + i, root)
    print(f"set-up (synthetic predictions, MLflow store, 5 stand-in models): {time.perf_counter() - t0:.1f} s")

    r = str(root / "reports")
    common = ["--params", str(REPO / "params.yaml"), "--tracking-uri", uri]
    stages = {
        "evaluate": ["evaluate", "--predictions", r, "--kb", str(kb), "--out", f"{r}/evaluation",
                     "--markdown", f"{r}/evaluation.md"],
        "committee": ["committee", "--predictions", r, "--out", f"{r}/committee"],
        "tune": ["tune", "--predictions", r, "--committees", f"{r}/committee/best.json", "--out",
                 f"{r}/thresholds.json", "--storage", f"{r}/tune/optuna.db", "--plots", f"{r}/tune/plots"],
        "promote": ["promote", "--predictions", r, "--committees", f"{r}/committee/best.json", "--thresholds",
                    f"{r}/thresholds.json", "--out", f"{r}/promote/promotion.json"],
    }
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri)
    times = {}
    for name, argv in stages.items():
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "lenssearch", *argv, *common], cwd=root, env=env,
                              capture_output=True, text=True)
        times[name] = time.perf_counter() - t
        if proc.returncode != 0:
            sys.exit(f"{name} failed:\n{proc.stdout}\n{proc.stderr}")
        print(f"{name:<10s} {times[name]:6.1f} s   {proc.stdout.strip().splitlines()[-1][:110]}")
    total = sum(times.values())
    print(f"total      {total:6.1f} s  (target <= {TARGET_S:.0f} s on 2 cores, {os.cpu_count()} cores here; "
          f"{len(NETWORKS)} networks x {args.n} cutouts)")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
