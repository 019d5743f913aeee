"""An example diqa-bench plugin: the dataset ``example-blur`` and the method ``laplacian-variance``.

Copy this folder to start your own plugin. Everything diqa-bench needs is here:
the entry point in pyproject.toml, and two hook implementations that register classes.
"""

from diqa_bench import hookimpl


@hookimpl
def register_datasets(register):
    from diqa_example.dataset import ExampleBlur

    register(ExampleBlur)


@hookimpl
def register_methods(register):
    from diqa_example.method import LaplacianVariance

    register(LaplacianVariance)
