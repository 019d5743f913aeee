"""Time and peak memory of the human-agreement statistics (noise ceiling and false ranking) for one
cell of 50-300 test images, 8 raters, 1000 content-group replicates."""

import time
import tracemalloc

import numpy as np

from diqa_bench import agreement as ag
from diqa_bench import stats


def main() -> None:
    rng = np.random.default_rng(0)
    for n in (50, 100, 300):
        truth = rng.uniform(1, 5, n)
        matrix = np.clip(np.round(truth[:, None] + rng.normal(0, 0.7, (n, 8))), 1, 5)
        codes = np.arange(n) // 3
        w = stats.group_weights(codes, 1000, rng)
        score = truth + rng.normal(0, 0.5, n)
        tracemalloc.start()
        t0 = time.perf_counter()
        ag.noise_ceiling(matrix, codes, w)
        t1 = time.perf_counter()
        i, j, diff = ag.significant_pairs(matrix.mean(1), matrix.std(1, ddof=1), np.full(n, 8))
        ag.false_ranking(score, truth, i, j, diff, w)
        t2 = time.perf_counter()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"{n} images, {len(i)} pairs ({int(diff.sum())} different): ceiling {t1 - t0:.2f} s, false ranking {t2 - t1:.2f} s, "
              f"peak traced memory {peak / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
