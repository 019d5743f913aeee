"""The core plugin: diqa-bench's own executors, commands, statistics and figures, registered
through the same hooks (and checks) as any third-party plugin's. :func:`diqa_bench.plugins.load_plugins`
always loads it first, so no other plugin can take these names.

Every callable is a ``"module:attribute"`` string: registering imports nothing, and ``--help``,
``list`` and ``validate`` stay light.
"""

from __future__ import annotations

from diqa_bench.extensions import Command, Executor, Figure, Statistic
from diqa_bench.hookspecs import hookimpl

RAY_OPTIONS = {
    "address": {"type": ["string", "null"], "description": "Ray cluster address (default: start a local one)"},
    "num_cpus_per_task": {"type": "number", "exclusiveMinimum": 0},
    "num_gpus_per_task": {"type": "number", "minimum": 0},
    "memory": {"type": ["integer", "null"], "minimum": 1},
    "max_retries": {"type": "integer", "minimum": 0},
    "shard_size": {"type": ["integer", "null"], "minimum": 1, "description": "test images per scoring shard"},
}


def registered(hook: str) -> list:
    """What the core plugin registers through ``hook``, without a registry (stored runs re-rendered
    by library code use the built-in statistics and figures)."""
    entries: list = []
    globals()[hook](register=entries.append)
    return entries


@hookimpl
def register_executors(register):
    register(Executor("local", "diqa_bench.executors:LocalExecutor", "one unit after another in this process (decoding workers and the CPU process pool as configured)"))
    register(Executor("ray", "diqa_bench.ray_executor:RayExecutor", "each unit as a task on a Ray cluster (pip install 'diqa-bench[ray]')", RAY_OPTIONS))


@hookimpl
def register_commands(register):
    register(Command("study", "run a human rating study of your photos in a browser (create, add-rater, serve, status, export)",
                     "diqa_bench.study.cli:run", "diqa_bench.study.cli:add_arguments"))


@hookimpl
def register_statistics(register):
    # The order here is the order of metrics.csv; ``column`` orders LEADERBOARD.md.
    S = "diqa_bench.stats:"
    register(Statistic("SROCC", True, resampled=S + "srocc", column=10, description="Spearman rank correlation of score and MOS"))
    register(Statistic("KRCC", True, resampled=S + "krcc", column=30, description="Kendall rank correlation (tau-b) of score and MOS"))
    register(Statistic("PLCC", True, resampled=S + "plcc", column=20,
                       description="Pearson correlation after the monotonic VQEG logistic mapping of scores onto the MOS scale"))
    register(Statistic("PLCC_raw", True, resampled=S + "plcc_raw", column=None, description="Pearson correlation of the raw scores and MOS"))
    register(Statistic("RMSE", False, resampled=S + "rmse", column=40, description="root mean squared error after the logistic mapping, in MOS units"))
    # the quality gate: only where the config declares an acceptability threshold
    G = dict(needs_acceptability=True)
    register(Statistic("AUC", True, resampled=S + "gate_auc", column=110, label="AUC (reject)",
                       description="ROC AUC of the score for detecting unacceptable test images", **G))
    register(Statistic("ACC", True, resampled=S + "gate_acc", column=120, label="Accuracy",
                       description="accept/reject accuracy at the score cut chosen on the train split", **G))
    register(Statistic("RETAKE", False, resampled=S + "gate_retake", column=140, label="Retake rate",
                       description="share of test images the cut rejects", **G))
    register(Statistic("ACC_ACCEPT_ALL", True, resampled=S + "gate_accept_all", column=None, compare=False,
                       description="accuracy of accepting every image", **G))
    register(Statistic("ACC_GAIN", True, resampled=S + "gate_gain", column=130, label="ΔAccuracy vs accept all", difference=True, compare=False,
                       description="ACC - ACC_ACCEPT_ALL, paired on the same resampled images", **G))


@hookimpl
def register_figures(register):
    # report.html shows each in its section: the figures of several test domains under each domain
    F = "diqa_bench.report.figures:"
    register(Figure("transfer", "SROCC by train set (rows) and test domain (columns), mean over split seeds with bootstrap CI",
                    F + "figure_transfer", section="cross-domain"))
    register(Figure("transfer-deltas", "Paired differences with their intervals per method, train set and test domain; colour = verdict",
                    F + "figure_deltas", section="transfer"))
    register(Figure("scatter", "Score vs {mos_label} on test domain {key}, with the fitted VQEG logistic", F + "figure_scatter", section="predictions"))
    register(Figure("strata", "SROCC within each stratum on test domain {key}, with intervals", F + "figure_strata", section="strata"))
    register(Figure("per-distortion", "SROCC within each distortion type and level, test domain {key}", F + "figure_per_distortion",
                    section="per-distortion"))
