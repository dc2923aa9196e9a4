"""Benchmark: ``lenssearch lenstool-check`` on the Abell 2744 HFF LensTool model (258 dPIEs, 83 images in 29 families).

Times the whole command as a user runs it (a fresh process: imports, reading the model, the numba kernels loaded
from their cache, the triangle mapping and Newton refinement of every family's images, the pairing), the median of
``--repeat`` runs, and prints lenssearch's image-plane rms beside LensTool's (the best.par header's Chi2pos).
Target: under 10 s on 2 CPU cores; |lenssearch - LensTool| <= 0.01". ``--cluster s1063`` runs Abell S1063.

Run: ``python benchmarks/bench_lenstool_check.py [--repeat 3] [--cluster a2744|s1063]``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "src/lenssearch/data/lenstool"
CLUSTERS = {
    "a2744": (DATA / "A2744_hff" / "best.par", DATA / "A2744_hff" / "img_mul_constraints.cat"),
    "s1063": (DATA / "AS1063_cats_gold" / "best.par", DATA / "AS1063_cats_gold" / "mul_gold.cat"),
}
TARGET_S = 10.0
TOLERANCE_ARCSEC = 0.01


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (median reported)")
    parser.add_argument("--cluster", choices=sorted(CLUSTERS), default="a2744")
    args = parser.parse_args()
    par, mul = CLUSTERS[args.cluster]
    command = [sys.executable, "-m", "lenssearch", "lenstool-check", str(par), str(mul)]
    subprocess.run(command, capture_output=True, check=True)  # warm-up: numba cache, file cache
    times, stdout = [], ""
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - t0)
        stdout = proc.stdout
    ours = float(re.search(r"total image-plane rms: (\S+) arcsec", stdout).group(1))
    theirs = float(re.search(r"LensTool \(header Chi2pos \S+\): (\S+) arcsec", stdout).group(1))
    median = statistics.median(times)
    print(f"lenstool-check {args.cluster}: median {median:.2f} s over {args.repeat} runs "
          f"({', '.join(f'{t:.2f}' for t in times)}); target < {TARGET_S:g} s: {'ok' if median < TARGET_S else 'SLOW'}")
    print(f"image-plane rms: lenssearch {ours:.4f}\", LensTool {theirs:.4f}\", difference {ours - theirs:+.4f}\" "
          f"({'ok' if abs(ours - theirs) <= TOLERANCE_ARCSEC else 'OFF'} at {TOLERANCE_ARCSEC}\")")
    if median >= TARGET_S or abs(ours - theirs) > TOLERANCE_ARCSEC:
        sys.exit(1)


if __name__ == "__main__":
    main()
