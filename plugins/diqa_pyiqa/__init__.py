"""pyiqa baselines for diqa-bench: BRISQUE, NIQE, PIQE, MUSIQ (four weight sets), every other pyiqa
no-reference metric under its own name (``topiq_nr``, ``clipiqa``, ...), ``pyiqa`` (any metric by
option), and the refitted classical models ``brisque-fit`` and ``niqe-fit``.

Nothing here imports torch or pyiqa: registering parses pyiqa's metric table from its source file.
"""

from diqa_bench import hookimpl


@hookimpl
def register_methods(register):
    from .named import named_metric_classes
    from .refit import BrisqueFit, NiqeFit
    from .zero_shot import ZERO_SHOT_METHODS

    for cls in ZERO_SHOT_METHODS:
        register(cls)
    register(BrisqueFit)
    register(NiqeFit)
    for cls in named_metric_classes({cls.name for cls in ZERO_SHOT_METHODS}):
        register(cls)
