"""The hooks a diqa-bench plugin implements.

A plugin is a module (found through the ``diqa_bench`` entry-point group) with functions decorated
by ``@diqa_bench.hookimpl``. The host calls each hook with a ``register`` callback; the plugin calls
``register(entry)`` once per entry: a dataset or method class, or a :mod:`diqa_bench.extensions`
record (``Statistic``, ``Figure``, ``Executor``, ``Command``). The host validates every entry as it
arrives (unique name, required attributes), so a broken entry is reported against the plugin that
made it. diqa-bench's own statistics, figures, executors and the ``study`` command are registered
through these same hooks, by the core plugin :mod:`diqa_bench.core_plugin`, which always loads first.

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


@hookspec
def register_statistics(register):
    """Register statistics: ``register(Statistic(name, higher_is_better, function))``, with
    ``function(scores, mos) -> float``; the host bootstraps its interval from the same group draws.
    """


@hookspec
def register_figures(register):
    """Register report figures: ``register(Figure(name, caption, function))``, with
    ``function(run) -> matplotlib Figure`` (or a written file's path, or None); report.html shows it.
    """


@hookspec
def register_executors(register):
    """Register executors: ``register(Executor(name, factory))``; ``run --executor NAME`` (or the
    config's ``executor: {type: NAME}``) calls ``factory(progress=, log=, **options)``.
    """


@hookspec
def register_commands(register):
    """Register CLI commands: ``register(Command(name, help, handler, add_arguments))`` adds
    ``diqa-bench NAME``; ``add_arguments(parser)`` fills its subparser, ``handler(args)`` returns the exit code.
    """
