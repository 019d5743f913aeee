"""The plan of a run: everything decided before any image is scored.

Which datasets each domain holds (loaded and checked once), which of their images fall on the
train and the test side for every seed, the units of work the grid asks for, and the keys under
which fitted models are cached. A plan is plain data, so it pickles: the Ray executor ships it to
its workers, which score it without re-reading the config or reloading a dataset.

What scores a plan is :mod:`diqa_bench.scorer`; what runs the two is :mod:`diqa_bench.runner`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from diqa_bench.version import __version__
from diqa_bench.cache import file_hash, stable_hash
from diqa_bench.config import Config
from diqa_bench.datasets import Dataset, DatasetContext, Record, Skip, check_records, normalise_mos
from diqa_bench.errors import DataError, UserError
from diqa_bench.grid import DEPLOY, DEPLOY_ALL, TEST, VALIDATION, Unit, deploy_units, expand, validation_units
from diqa_bench.methods import TrainSample
from diqa_bench.pairs import is_pair_dataset
from diqa_bench.plugins import Registry
from diqa_bench.splits import check_split_labels, fold_count, fold_key, fold_of_key, fold_test_groups, split_records, validation_groups


@dataclass
class ImageRef:
    """One test or train image of a cell, with everything the tables need."""

    key: str  # content hash: the score cache's key
    path: str
    id: str
    dataset: str
    domain: str
    mos: float
    mos_norm: float
    group: str
    distortion: str | None
    level: int | None
    mos_lower_better: bool = False  # DMOS-style label (its dataset's direction)
    attrs: dict[str, str] = field(default_factory=dict)  # the record's declared metadata columns (strata)


@dataclass
class LoadedDataset:
    """One dataset of a domain, loaded and checked, with its images split for every seed.

    ``obj`` and ``records`` stay on the machine that loaded them (a plugin's object need not
    pickle); what scoring needs travels in ``refs`` and ``splits``."""

    name: str
    domain: str
    type: str
    obj: Dataset | None
    records: list[Record]
    content_hash: str
    refs: list[ImageRef] = field(default_factory=list)  # one per record, in record order
    splits: dict[int, tuple[list[int], list[int]]] = field(default_factory=dict)  # seed -> (train, test) positions
    validation: dict[int, list[int]] = field(default_factory=dict)  # seed -> validation positions (a part of train's)
    lower_better: bool = False
    pseudo_mos: bool = False
    evaluation_only: bool = False  # a 2AFC pair set (diqa_bench.pairs): test data only, never split
    error: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["obj"], state["records"] = None, []
        return state


@dataclass
class Plan:
    config: Config
    units: list[Unit]
    datasets: dict[str, LoadedDataset]
    skips: list[Skip] = field(default_factory=list)  # records left out while loading (bad_input: skip)
    screening: dict[str, Any] = field(default_factory=dict)  # rater screening of each dataset that has raters
    ratings: dict[str, Any] = field(default_factory=dict)  # per-rater scores (image, observer, rating) of each dataset that keeps them
    folds: int = 0  # cross-validation: the number of folds per repetition seed (0: test_ratio splits)
    deploy_folds: int = 0  # config deploy: folds over all train content that choose a deployable model's cut

    @classmethod
    def build(cls, config: Config, registry: Registry, cache_dir, only: list[str] | None = None, progress: bool = False,
              log: Callable[[str], None] = print) -> "Plan":
        """Load every dataset the grid needs and split it for every seed."""
        needed = set(config.test_domains)
        for ts in config.train_sets:
            needed.update(ts)
        ctx = DatasetContext(cache_dir=cache_dir / "datasets", progress=progress)
        plan = cls(config, [], {})
        for domain, specs in config.domains.items():
            if domain in needed:
                for spec in specs:
                    plan.datasets[spec.name] = plan._load(registry, spec, domain, ctx, log)
        trainable = {m.name: registry.method(m.name).trainable for m in config.methods}
        if config.folds is not None:  # one unit per repetition seed and fold, keyed by splits.fold_key
            config = dataclasses.replace(config, seeds=plan._fold_splits())
        plan.units = expand(config, trainable, only)
        if config.validation > 0:  # after the test phase: its units (and their order) stay as they were
            tests = tuple(t for t in config.test_domains if any(not ds.evaluation_only for ds in plan.domain_sets(t)))
            plan.units += validation_units(plan.units, tests)
        if config.deploy_folds:  # after the per-seed cells
            plan.deploy_folds = config.deploy_folds
            for u in deploy_units(config, trainable, only, config.deploy_folds):
                # a domain with fewer content groups than folds leaves some folds without any of it
                tests = tuple(t for t in u.tests if u.seed == DEPLOY_ALL or any(
                    plan.positions(ds, u.seed, "test", DEPLOY) for ds in plan.domain_sets(t) if not ds.error))
                if tests or u.seed == DEPLOY_ALL:
                    plan.units.append(dataclasses.replace(u, tests=tests))
        return plan

    def _fold_splits(self) -> list[int]:
        """Cross-validation: split every dataset into the folds of every repetition seed; returns
        the split keys. A paired-preference domain has no groups to fold (refused)."""
        loaded = [ds for ds in self.datasets.values() if not ds.error]
        pairs = [ds.name for ds in loaded if ds.evaluation_only]
        if pairs:
            raise UserError(f"splits.folds: dataset {pairs[0]} holds preference pairs (evaluation only), which cross-validation does not "
                            "fold; test it in a run without folds")
        self.folds = fold_count(self.config.folds, [len({r.content_group for r in ds.records}) for ds in loaded])
        keys = [fold_key(seed, f) for seed in self.config.seeds for f in range(self.folds)]
        for ds in loaded:
            for key in keys:
                ds.splits[key] = self._split(ds, key)
        return keys

    def _load(self, registry: Registry, spec, domain: str, ctx: DatasetContext, log: Callable[[str], None]) -> LoadedDataset:
        cls = registry.dataset(spec.type)
        try:
            obj = cls(**spec.options)
            problems = obj.check()
            if problems:
                raise DataError("; ".join(problems))
            log(f"loading dataset {spec.name} ({spec.type}) for domain {domain}")
            records = obj.load(ctx)
            checked = check_records(list(records), obj, spec.name, self.config.bad_input)
            check_split_labels(checked.records, spec.name)  # an unknown label fails here, not in every cell
        except (DataError, UserError, OSError) as exc:
            log(f"dataset {spec.name}: {exc}")
            return LoadedDataset(spec.name, domain, spec.type, None, [], "", evaluation_only=is_pair_dataset(cls), error=str(exc))
        recs = checked.records
        keys = [file_hash(r.path) for r in recs]
        norm = normalise_mos([r.mos for r in recs], obj, self.config.normalise_mos) if recs else []
        lower = bool(obj.lower_better)
        ds = LoadedDataset(
            spec.name, domain, spec.type, obj, recs,
            stable_hash([(r.id, k, r.mos, r.content_group, r.split) for r, k in zip(recs, keys)]),
            refs=[ImageRef(k, r.path, r.id, spec.name, domain, float(r.mos), float(n), f"{spec.name}/{r.content_group}", r.distortion, r.level, lower,
                           r.attrs)
                  for r, k, n in zip(recs, keys, norm)],
            lower_better=lower, pseudo_mos=bool(getattr(obj, "pseudo_mos", False)), evaluation_only=is_pair_dataset(obj),
        )
        for seed in self.config.seeds if self.config.folds is None else ():  # folds: split once every dataset is loaded
            ds.splits[seed] = self._split(ds, seed)
            if self.config.validation > 0:
                train = ds.splits[seed][0]
                held = validation_groups([ds.refs[p].group for p in train], self.config.validation, seed)
                ds.validation[seed] = [p for p in train if ds.refs[p].group in held]
        self.skips.extend(checked.skips)
        if getattr(obj, "screening", None):
            self.screening[spec.name] = obj.screening
        if getattr(obj, "rater_scores", None) is not None:
            self.ratings[spec.name] = obj.rater_scores
        return ds

    def _split(self, ds: LoadedDataset, seed: int) -> tuple[list[int], list[int]]:
        """(train positions, test positions) of one dataset for one seed; group-aware."""
        if ds.evaluation_only:  # evaluation-only: all of it is test data for every seed, none trains
            return [], list(range(len(ds.records)))
        if self.folds:
            seed, fold = fold_of_key(seed)
            tested = fold_test_groups([r.content_group for r in ds.records], self.folds, seed, fold)
            return ([i for i, r in enumerate(ds.records) if r.content_group not in tested],
                    [i for i, r in enumerate(ds.records) if r.content_group in tested])
        pos_of = {id(r): i for i, r in enumerate(ds.records)}
        train, test = split_records(ds.records, self.config.test_ratio, seed, self.config.use_split_column, self.config.protocol)
        return [pos_of[id(r)] for r in train], [pos_of[id(r)] for r in test]

    # -- what the scorer asks ---------------------------------------------------------------------
    def domain_sets(self, domain: str) -> list[LoadedDataset]:
        return [self.datasets[s.name] for s in self.config.domains[domain]]

    def positions(self, ds: LoadedDataset, seed: int, side: str, phase: str = TEST) -> list[int]:
        """Positions of one side ('train' / 'test') of a dataset for a seed. In the validation
        phase the validation groups are the test side, and the rest of the train split the train side.
        In the deploy phase there is no test split: fold ``seed`` of all content groups is the test
        side, the others the train side; under DEPLOY_ALL both sides are all the content."""
        if phase == DEPLOY:
            if ds.evaluation_only:
                return []
            if seed == DEPLOY_ALL:
                return list(range(len(ds.refs)))
            tested = fold_test_groups([r.group for r in ds.refs], self.deploy_folds, DEPLOY, seed)
            return [p for p, r in enumerate(ds.refs) if (r.group in tested) == (side == "test")]
        train, test = ds.splits[seed]
        if phase == TEST:
            return train if side == "train" else test
        held = set(ds.validation.get(seed, ()))
        return [p for p in train if (p in held) == (side != "train")]

    def images(self, domain: str, seed: int, side: str, phase: str = TEST) -> tuple[list[ImageRef], str | None]:
        """Images of one side ('train' / 'test') of a domain for a seed, or the reason there are none."""
        out: list[ImageRef] = []
        for ds in self.domain_sets(domain):
            if ds.error:
                return [], f"dataset {ds.name}: {ds.error}"
            out.extend(ds.refs[p] for p in self.positions(ds, seed, side, phase))
        if not out:
            what = "validation" if phase == VALIDATION and side == "test" else side
            return [], f"domain {domain!r} has no {what} images"
        return out, None

    def mos_lower_better(self, domain: str) -> bool:
        """Whether a domain's MOS is DMOS-style (only meaningful for a domain of one dataset)."""
        sets = self.domain_sets(domain)
        return len(sets) == 1 and sets[0].lower_better

    def train_samples(self, unit: Unit) -> list[TrainSample]:
        """The training images of a trainable unit: the train side of every dataset of its train set."""
        samples: list[TrainSample] = []
        for domain in unit.train or ():
            for ds in self.domain_sets(domain):
                if ds.error:
                    raise DataError(f"train dataset {ds.name}: {ds.error}")
                for p in self.positions(ds, unit.seed, "train", unit.phase):
                    r = ds.refs[p]
                    samples.append(TrainSample(r.key, r.path, r.mos, r.mos_norm, r.dataset, r.domain, r.group, r.distortion, r.id))
        return samples

    def fit_key(self, unit: Unit, method_token: str, device: str, decoder: str) -> str:
        """The cache key of one fit: the method's configuration, the content of its training data and
        everything that shapes the split, the package version, and what the device changes."""
        return stable_hash(
            {
                "method": method_token,
                "train": [(ds.name, ds.content_hash) for d in unit.train or () for ds in self.domain_sets(d)],
                "seed": unit.seed,
                "test_ratio": self.config.test_ratio,
                "split_column": self.config.use_split_column,
                **({"folds": self.config.folds, "fold_count": self.folds} if self.config.folds is not None else {}),
                "normalise": self.config.normalise_mos,
                "diqa_bench": __version__,
                # the device can change the model itself (cross-domain's mode: auto), not only its numerics
                "device": device.split(":")[0],
                **({"decoder": decoder} if decoder != "pil" else {}),
                # fitted without the validation groups: another model than the test phase's
                **({"validation": self.config.validation} if unit.phase == VALIDATION else {}),
                # deploy: fitted on all train content (or all but one fold of its content groups)
                **({"deploy_folds": self.deploy_folds} if unit.phase == DEPLOY else {}),
            }
        )
