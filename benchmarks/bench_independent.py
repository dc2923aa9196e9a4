"""Benchmark: simulation rate of the independent test set (``lenssearch independent simulate``).

Simulates the first ``--n`` lenses and ``--n`` non-lenses of the demo profile's independent set (params.yaml,
``independent``) in one process on one core, and prints the rate in cutouts per second for each class and overall
(wall and CPU time; on a shared machine the wall time includes waiting for a CPU). A lens costs more than a
non-lens: the ray tracing of the supersampled grid through the SIE + shear and the lens-equation solutions that
check the source is multiply imaged. Target (issue 13): the demo set (1000 + 1000) in under a minute on one core.

Run: ``python benchmarks/bench_independent.py [--n 100] [--params params.yaml]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="lenses and non-lenses each")
    parser.add_argument("--params", type=Path, default=Path(__file__).resolve().parents[1] / "params.yaml")
    args = parser.parse_args()

    from lenssearch.config import load_config
    from lenssearch.independent.simulate import simulate_independent

    cfg = load_config(args.params)
    simulate_independent(cfg, n_lenses=1, n_nonlenses=1)  # imports, PSFs, lenstronomy's first calls
    ind = cfg.independent
    rates = {}
    for name, n_l, n_n in (("lenses", args.n, 0), ("non-lenses", 0, args.n)):
        wall, cpu = time.perf_counter(), time.process_time()
        simulate_independent(cfg, n_lenses=n_l, n_nonlenses=n_n)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        rates[name] = (args.n / wall, args.n / cpu)
        print(f"{name:11s}: {args.n} cutouts in {wall:6.2f} s wall ({rates[name][0]:6.1f}/s), "
              f"{cpu:6.2f} s CPU ({rates[name][1]:6.1f}/s)")
    n_total = ind.n_lenses + ind.n_nonlenses
    expected = ind.n_lenses / rates["lenses"][1] + ind.n_nonlenses / rates["non-lenses"][1]
    print(f"overall    : {2 * args.n / (args.n / rates['lenses'][1] + args.n / rates['non-lenses'][1]):6.1f} "
          f"cutouts/s CPU; the demo set ({ind.n_lenses} + {ind.n_nonlenses} = {n_total}) takes ~{expected:.0f} s "
          f"CPU on one core (supersampling {ind.supersampling})")


if __name__ == "__main__":
    main()
