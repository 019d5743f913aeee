"""pyiqa baselines for diqa-bench: BRISQUE, NIQE, PIQE, MUSIQ (four weight sets), any pyiqa
no-reference metric by name, and the refitted classical models ``brisque-fit`` and ``niqe-fit``.

Nothing here imports torch or pyiqa: registering reads pyiqa's metric table from its source file.
"""

from diqa_bench import hookimpl


@hookimpl
def register_methods(register):
    from .refit import BrisqueFit, NiqeFit
    from .zero_shot import ZERO_SHOT_METHODS

    for cls in ZERO_SHOT_METHODS:
        register(cls)
    register(BrisqueFit)
    register(NiqeFit)
