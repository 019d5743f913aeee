"""In-tree dataset types: generic CSV, the public IQA databases in pyiqa's layout, dermatology
ratings, and the embedded offline domains (real skin photos shipped in the package, synthetic skin,
photos bundled by installed packages).

Kept light: heavy modules are imported when a dataset loads, not when names are listed.
"""

from diqa_bench import hookimpl


@hookimpl
def register_datasets(register):
    from .derm import DermRatingsDataset
    from .embedded import NaturalPhotosDataset, SkimageNaturalDataset, SkinPhotosDataset, SyntheticSkinDataset
    from .public import PUBLIC_DATASETS
    from .tabular import CsvDataset

    register(CsvDataset)
    for cls in PUBLIC_DATASETS:
        register(cls)
    register(DermRatingsDataset)
    register(SkinPhotosDataset)
    register(SyntheticSkinDataset)
    register(NaturalPhotosDataset)
    register(SkimageNaturalDataset)
