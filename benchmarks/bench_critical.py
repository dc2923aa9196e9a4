"""Benchmark: secondary critical-line catalogue of the full Abell S1063 CATS LensTool model at z_s = 2.

264 potentials (2 cluster halos, the BCG, 260 members, external shear); lines resolved at
``field.critical_lines.resolution_arcsec`` (0.02") within ``search_radius_arcsec`` (4") of each of the 260 members,
selected with 0.2" < theta_E < 3.5" (Angora et al. 2023, Sect. 3.1). Target: at most 60 s on 2 CPU cores.
Prints the median of the timed runs (after one warm-up that compiles/loads the numba kernels), the number of lines
and their theta_E range. ``--check N`` compares N members with the brute-force (``method="exact"``) evaluation.

Run: ``python benchmarks/bench_critical.py [--zs 2.0] [--repeat 3] [--resolution 0.02] [--check 0]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from lenssearch.lensing.critical import secondary_critical_lines
from lenssearch.lensing.lenstool import read_parfile

FOLDER = Path(__file__).resolve().parents[1] / "src/lenssearch/data/lenstool/AS1063_cats_gold"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zs", type=float, default=2.0, help="source redshift")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions (median reported)")
    parser.add_argument("--resolution", type=float, default=0.02, help="resolution of the lines (arcsec)")
    parser.add_argument("--search-radius", type=float, default=4.0, help="half-size of the member boxes (arcsec)")
    parser.add_argument("--check", type=int, default=0, help="members compared with the brute-force evaluation")
    args = parser.parse_args()

    import numba

    lt = read_parfile(FOLDER / "best.par", FOLDER / "ref_potential_w_clumpNE.cat")
    kwargs = dict(resolution_arcsec=args.resolution, search_radius_arcsec=args.search_radius,
                  theta_e_min_arcsec=0.2, theta_e_max_arcsec=3.5, progress=False)
    print(f"model: {lt.model}; members: {len(lt.members)}; numba threads: {numba.get_num_threads()}")
    t0 = time.perf_counter()
    secondary_critical_lines(lt, None, args.zs, member_indices=[0], **kwargs)
    print(f"warm-up (kernel load/compile): {time.perf_counter() - t0:.2f} s")
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        table = secondary_critical_lines(lt, None, args.zs, **kwargs)
        times.append(time.perf_counter() - t0)
    theta = np.asarray(table["theta_e_arcsec"])
    print(f"secondary critical lines at z_s = {args.zs:g}: median {statistics.median(times):.2f} s over "
          f"{args.repeat} runs ({', '.join(f'{t:.2f}' for t in times)})")
    print(f"lines: {len(table)} (closed lines before selection: {table.meta['n_closed_lines']}); theta_E "
          f"{theta.min():.3f}\"-{theta.max():.3f}\", median {np.median(theta):.3f}\"; "
          f"{int(np.sum(~table['member_inside']))} without a member inside")
    if args.check:
        ids = list(lt.members["id"])
        picks = [ids.index(m) for m in table["member_id"][:: max(1, len(table) // args.check)][: args.check]]
        exact = secondary_critical_lines(lt, None, args.zs, method="exact", member_indices=picks, **kwargs)
        fast = dict(zip(table["member_id"], table["theta_e_arcsec"]))
        diffs = [abs(fast[m] - t) for m, t in zip(exact["member_id"], exact["theta_e_arcsec"]) if m in fast]
        print(f"brute force on {len(picks)} members: max |theta_E(fast) - theta_E(exact)| = {max(diffs):.2e}\"")


if __name__ == "__main__":
    main()
