"""diqa-bench plugin: the ``cross-domain`` method, a deep NR-IQA model (ImageNet backbone plus a
quality regression head) trained on dermatology and non-dermatology data together.

Kept light on purpose: torch and timm are imported only when the method runs.
"""

from diqa_bench import hookimpl


@hookimpl
def register_methods(register):
    from diqa_cross_domain.method import CrossDomain

    register(CrossDomain)
