"""Benchmark: deflection map of the full Abell S1063 CATS LensTool model (263 dPIEs + shear).

A 2000 x 2000 grid at 0.1"/pixel (200" x 200", the ``field.lenstool`` map of ``params.yaml``) centred on the
model reference. Target: at most 30 s on 2 CPU cores. Prints the compile time, the median of 3 runs, and checks a
random subset of pixels against the numpy reference path.

Run: ``python benchmarks/bench_deflection.py [--n 2000] [--pixel 0.1] [--repeat 3] [--hessian]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from lenssearch.lensing.lenstool import read_parfile

PARFILE = Path(__file__).resolve().parents[1] / "src/lenssearch/data/lenstool/AS1063_cats_gold/best.par"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="grid size (pixels per side)")
    parser.add_argument("--pixel", type=float, default=0.1, help="pixel size in arcsec")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions (median reported)")
    parser.add_argument("--hessian", action="store_true", help="also time the hessian map")
    args = parser.parse_args()

    import numba

    model = read_parfile(PARFILE).model
    coords = (np.arange(args.n) - (args.n - 1) / 2) * args.pixel
    x, y = np.meshgrid(coords, coords)
    print(f"model: {model}")
    print(f"grid: {args.n} x {args.n} at {args.pixel}\"/pixel; numba threads: {numba.get_num_threads()}")

    t0 = time.perf_counter()
    model.deflection(x[:1, :8], y[:1, :8])
    model.hessian(x[:1, :8], y[:1, :8])
    print(f"first call (compile or load from cache): {time.perf_counter() - t0:.2f} s")

    times, cpu_times = [], []
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        ax, ay = model.deflection(x, y)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    print("deflection runs, wall (s): " + ", ".join(f"{t:.2f}" for t in times))
    # On a shared machine the wall time includes waiting for the CPU; CPU time / threads is what the map costs
    # on idle cores.
    threads = numba.get_num_threads()
    print("deflection runs, CPU time / threads (s): " + ", ".join(f"{t / threads:.2f}" for t in cpu_times))
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")

    rng = np.random.default_rng(0)
    pick = rng.integers(0, x.size, 2000)
    rx, ry = model.deflection(x.ravel()[pick], y.ravel()[pick], fast=False)
    err = max(np.abs(rx - ax.ravel()[pick]).max(), np.abs(ry - ay.ravel()[pick]).max())
    print(f"max |fast - numpy reference| on 2000 pixels: {err:.2e} arcsec")

    if args.hessian:
        t0 = time.perf_counter()
        model.hessian(x, y)
        print(f"hessian map: {time.perf_counter() - t0:.2f} s")
    print(f"median CPU time / threads: {statistics.median(cpu_times) / threads:.2f} s")
    print(f"median deflection-map time: {statistics.median(times):.2f} s")


if __name__ == "__main__":
    main()
