"""diqa-bench: a cross-domain benchmark harness for no-reference image quality assessment.

The public contracts a plugin needs live in three modules:

- :mod:`diqa_bench.hookspecs`: the hooks (``register_datasets``, ``register_methods``) and ``hookimpl``;
- :mod:`diqa_bench.datasets`: :class:`Dataset` and :class:`Record`;
- :mod:`diqa_bench.methods`: :class:`Method`, :class:`Batch`, :class:`MethodContext`, :class:`TrainingData`.

A service puts a method in front of its upload form with :func:`load_gate` (:mod:`diqa_bench.gate`).

Nothing here imports torch: ``diqa-bench --help``, ``list`` and ``validate`` stay fast.
"""

from diqa_bench.hookspecs import hookimpl  # re-exported for plugin authors
from diqa_bench.version import __version__

__all__ = ["__version__", "hookimpl", "load_gate"]


def load_gate(*args, **kwargs):
    """Load a quality gate once, then score uploads with it: see :func:`diqa_bench.gate.load_gate`."""
    from diqa_bench.gate import load_gate as load  # lazy: `import diqa_bench` must not load the scoring machinery

    return load(*args, **kwargs)
