"""The hooks a diqa-bench plugin implements.

A plugin is a module (found through the ``diqa_bench`` entry-point group) with functions decorated
by ``@diqa_bench.hookimpl``. The host calls each hook with a ``register`` callback; the plugin calls
``register(cls)`` once per dataset or method class. The host validates every entry as it arrives
(unique name, required attributes), so a broken entry is reported against the plugin that made it.

Keep plugin modules light: import torch, pyiqa and friends inside methods, not at module level,
so that listing names stays instant.
"""

import pluggy

PROJECT = "diqa_bench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_datasets(register):
    """Register dataset types: call ``register(DatasetSubclass)`` for each.

    The class needs a ``name`` (used as ``dataset:`` in configs) and must subclass
    :class:`diqa_bench.datasets.Dataset`.
    """


@hookspec
def register_methods(register):
    """Register IQA methods: call ``register(MethodSubclass)`` for each.

    The class needs ``name``, ``version`` and ``lower_better`` and must subclass
    :class:`diqa_bench.methods.Method`.
    """
