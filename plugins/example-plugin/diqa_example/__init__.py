"""An example diqa-bench plugin: the dataset ``example-blur``, the method ``laplacian-variance``,
the statistic ``WORST_RECALL`` and the report figure ``worst-recall``.

Copy this folder to start your own plugin. Everything diqa-bench needs is here: the entry point in
pyproject.toml, and hook implementations that register classes and records. Keep this module
light (``diqa-bench --help`` imports it): heavy imports go inside the functions.
"""

from diqa_bench import hookimpl
from diqa_bench.extensions import Figure, Statistic


@hookimpl
def register_datasets(register):
    from diqa_example.dataset import ExampleBlur

    register(ExampleBlur)


@hookimpl
def register_methods(register):
    from diqa_example.method import LaplacianVariance

    register(LaplacianVariance)


@hookimpl
def register_statistics(register):
    # "module:function": imported only when a run computes it
    register(Statistic("WORST_RECALL", higher_is_better=True, function="diqa_example.report:worst_recall",
                       description="share of the worst quarter by MOS that the scores also put in their worst quarter"))


@hookimpl
def register_figures(register):
    register(Figure("worst-recall", "WORST_RECALL of each method @ train set on each test domain, with its content-group interval "
                                    "(example plugin)", "diqa_example.report:worst_recall_figure"))
