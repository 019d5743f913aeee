"""diqa-bench: a cross-domain benchmark harness for no-reference image quality assessment.

The public contracts a plugin needs live in three modules:

- :mod:`diqa_bench.hookspecs`: the hooks (``register_datasets``, ``register_methods``) and ``hookimpl``;
- :mod:`diqa_bench.datasets`: :class:`Dataset` and :class:`Record`;
- :mod:`diqa_bench.methods`: :class:`Method`, :class:`Batch`, :class:`MethodContext`, :class:`TrainingData`.

Nothing here imports torch: ``diqa-bench --help``, ``list`` and ``validate`` stay fast.
"""

__version__ = "0.1.0"

from diqa_bench.hookspecs import hookimpl  # noqa: E402  (re-exported for plugin authors)

__all__ = ["__version__", "hookimpl"]
