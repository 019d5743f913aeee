"""How long the content-group bootstrap takes: one cell (all statistics) and one paired
difference, for test sets of several sizes, 1000 replicates. Prints a table; no target is
asserted (the numbers depend on the machine).

    python benchmarks/stats_speed.py
"""

from __future__ import annotations

import time

import numpy as np

from diqa_bench import stats


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"{'images':>7} {'groups':>7} {'cell, 5 statistics (s)':>23} {'paired ΔSROCC (s)':>18}")
    for n, per_group in ((100, 10), (300, 10), (1000, 25), (5000, 25)):
        mos = rng.uniform(1, 5, n)
        groups = rng.integers(0, n // per_group, n)  # unequal group sizes
        score = mos + rng.normal(0, 1, n)
        t0 = time.perf_counter()
        stats.evaluate(score, mos, groups=groups, bootstrap=1000, seed=0)
        cell = time.perf_counter() - t0
        a = stats.Sample.build(score, mos, groups)
        b = stats.Sample.build(score + rng.normal(0, 0.5, n), mos, groups)
        t0 = time.perf_counter()
        stats.paired_delta({0: (a, b)}, "SROCC", bootstrap=1000)
        paired = time.perf_counter() - t0
        print(f"{n:>7} {a.n_groups:>7} {cell:>23.2f} {paired:>18.2f}")


if __name__ == "__main__":
    main()
