"""Benchmark: modeled candidates per second (``lenssearch model-candidates``, issue 15).

Builds the demo profile's modeling network (params.yaml ``modeling.network``, untrained: the same cost per cutout as
the trained one), logs and registers it as the pyfunc of the ``modeling`` stage in a temporary MLflow store, then
times, three times each (median), the two steps of the stage per candidate on a synthetic 3000 x 3000-pixel field:

1. ``cut``: the cutouts of ``--n`` candidate positions from the memory-mapped band images (FieldImages.cut);
2. ``model``: the registered pyfunc's table (``pred_`` and ``sigma_`` of every parameter) for those cutouts;

and the end-to-end rate, candidates per second. Run: ``python benchmarks/bench_modeling.py [--n 512]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="candidates per repetition")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import mlflow

    from bench_search import make_field
    from lenssearch._runtime import apply_offline_env
    from lenssearch.config import load_config
    from lenssearch.modeling import fit
    from lenssearch.modeling.stage import PYFUNC_CODE
    from lenssearch.simulate.truth import PARAMETERS
    from lenssearch.tracking import log_modeling_model
    from lenssearch.models.modeling import build_modeling
    from lenssearch.search.inputs import FieldImages

    apply_offline_env()
    cfg = load_config(ROOT / "params.yaml")
    m = cfg.modeling
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        uri = f"sqlite:///{tmp}/mlflow.db"
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        n = m.network.input_pixels
        model = build_modeling((n, n, len(cfg.base.bands)), m.network)
        fit.keras_save(model.save, tmp / "model.keras")
        exp = mlflow.create_experiment("bench", artifact_location=(tmp / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=exp):
            version = log_modeling_model(PYFUNC_CODE, tmp / "model.keras", PARAMETERS, np.ones(len(PARAMETERS)),
                                         len(cfg.base.bands), "bench-modeling", {}, "benchmark")
        pyfunc = mlflow.pyfunc.load_model(f"models:/bench-modeling/{version}")
        field = make_field(tmp / "field", cfg.base.bands)
        rng = np.random.default_rng(0)
        with FieldImages.from_field_dir(field, cfg.base.bands) as images:
            xy = rng.uniform(100, 2900, (args.n, 2))
            pyfunc.predict(images.cut(xy[:8, 0], xy[:8, 1], n)[0])  # warm-up: graph tracing
            cut_t, model_t = [], []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                cutouts, _ = images.cut(xy[:, 0], xy[:, 1], n)
                t1 = time.perf_counter()
                table = pyfunc.predict(cutouts)
                t2 = time.perf_counter()
                cut_t.append(t1 - t0)
                model_t.append(t2 - t1)
            assert len(table) == args.n
    cut_s, model_s = statistics.median(cut_t), statistics.median(model_t)
    result = {"candidates": args.n, "cut_per_s": args.n / cut_s, "model_per_s": args.n / model_s,
              "candidates_per_s": args.n / (cut_s + model_s), "load": os.getloadavg()[0]}
    print(f"modeled candidates: {result['candidates_per_s']:.1f}/s end to end (cut {result['cut_per_s']:.0f}/s, "
          f"model {result['model_per_s']:.1f}/s; median of {args.repeats}, load {result['load']:.2f})")
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
