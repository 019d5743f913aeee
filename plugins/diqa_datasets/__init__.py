"""In-tree dataset types: generic CSV, the public IQA databases in pyiqa's layout, dermatology
ratings, two embedded offline domains (scikit-image photos and synthetic skin), and paired
preference (2AFC) pairs for evaluation.

Kept light: heavy modules are imported when a dataset loads, not when names are listed.
"""

from diqa_bench import hookimpl


@hookimpl
def register_datasets(register):
    from .derm import DermRatingsDataset
    from .embedded import SkimageNaturalDataset, SyntheticSkinDataset
    from .pairs import PairsDataset
    from .public import PUBLIC_DATASETS
    from .tabular import CsvDataset

    register(CsvDataset)
    for cls in PUBLIC_DATASETS:
        register(cls)
    register(DermRatingsDataset)
    register(SkimageNaturalDataset)
    register(SyntheticSkinDataset)
    register(PairsDataset)
