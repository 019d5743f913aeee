"""The example plugin's statistic and figure.

A statistic is a function of (scores, MOS) -> float. Both arrive direction-aligned (higher = better,
whatever the method's or the dataset's own direction), one value per test image; diqa-bench calls
it on a cell's images for the value, and on every content-group bootstrap replicate for the interval.
"""

import numpy as np


def worst_recall(scores, mos):
    """Of the images in the worst quarter by MOS, the share the scores also put in their worst quarter:
    does a quality gate built on this method catch the photos people rate worst?"""
    worst = mos <= np.quantile(mos, 0.25)
    flagged = scores <= np.quantile(scores, 0.25)
    return float((worst & flagged).sum() / worst.sum())


def worst_recall_figure(run):
    """A figure of a finished run (``run.metrics``: the tidy metrics.csv, ``run.scores``, ``run.run_info``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = run.metrics
    rows = m[(m.statistic == "WORST_RECALL") & (m.seed.astype(str) == "all")]
    if rows.empty:
        return None  # the run did not compute it: no figure
    labels = [f"{r.method} @ {r.train} -> {r.test}" for r in rows.itertuples()]
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(rows) + 1))
    ax.barh(labels, rows.value, xerr=[rows.value - rows.ci_low, rows.ci_high - rows.value], color="tab:blue")
    ax.set_xlim(0, 1)
    ax.set_xlabel("WORST_RECALL (higher is better)")
    fig.tight_layout()
    return fig
