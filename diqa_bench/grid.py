"""The benchmark grid: which cells a config asks for.

A cell is (method, train set, test domain, seed). A zero-shot method has no train set: it appears
with train set "-". Work is done in units of (method, train set, seed), each covering every test
domain, so a trainable method is fitted once per train set and seed, and a zero-shot method scores
each image once (per-image scores are cached across seeds and runs).

With validation splits on (``splits.validation``), every unit also runs in a validation phase:
fitted on the train split less its validation groups, scored on the validation groups.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from diqa_bench.config import Config, MethodSpec

ZERO_SHOT_TRAIN = "-"
TEST, VALIDATION, DEPLOY = "test", "validation", "deploy"  # phases
# deploy phase: the unit key of the model fitted on all train content (0..K-1 are the cross-validation
# folds); non-negative, as it is the fit's random seed too (ctx.seed)
DEPLOY_ALL = 999


def train_label(domains: tuple[str, ...] | None) -> str:
    return ZERO_SHOT_TRAIN if not domains else "+".join(domains)


def model_folder(method_label: str, train: str) -> str:
    """The folder name of a fitted model in ``<out>/models``: ``label@train``, with path separators
    (a variant's row name may hold a path, ``cross-domain[backbone_weights=/w/a.pth]``) made ``_``."""
    return f"{method_label}@{train}".replace("/", "_").replace("\\", "_")


@dataclass(frozen=True)
class Unit:
    """One piece of work: a method, its train set (None for zero-shot) and a split seed."""

    method: MethodSpec
    train: tuple[str, ...] | None
    seed: int
    tests: tuple[str, ...]
    phase: str = TEST  # VALIDATION: fit without the validation groups, score them

    @property
    def train_label(self) -> str:
        return train_label(self.train)

    def describe(self) -> str:
        if self.phase == DEPLOY:
            return f"{self.method.label} @ {self.train_label} [deploy: " + ("all train content]" if self.seed == DEPLOY_ALL else f"fold {self.seed}]")
        return f"{self.method.label} @ {self.train_label} (seed {self.seed})" + (f" [{self.phase}]" if self.phase != TEST else "")


@dataclass(frozen=True)
class Cell:
    method: str  # the method's label in tables
    train: str  # train_label(...)
    test: str
    seed: int


def expand(config: Config, trainable: dict[str, bool], only: list[str] | None = None) -> list[Unit]:
    """Units for every method x train set x seed (zero-shot: method x seed), in config order.
    ``trainable`` maps method name -> whether it is trainable; ``only`` keeps the given labels."""
    units: list[Unit] = []
    tests = tuple(config.test_domains)
    for m in config.methods:
        if only and m.label not in only and m.name not in only:
            continue
        for seed in config.seeds:
            if trainable[m.name]:
                for ts in config.train_sets:
                    units.append(Unit(m, tuple(ts), seed, tests))
            else:
                units.append(Unit(m, None, seed, tests))
    return units


def validation_units(units: list[Unit], tests: tuple[str, ...]) -> list[Unit]:
    """The validation phase of ``units``: the same methods, train sets and seeds, scored on the
    validation groups of ``tests`` (the test domains that have a train side)."""
    return [replace(u, phase=VALIDATION, tests=tests) for u in units] if tests else []


def deploy_units(config: Config, trainable: dict[str, bool], only: list[str] | None, folds: int) -> list[Unit]:
    """The deploy phase (config ``deploy``): per trainable method and train set, one unit per
    cross-validation fold over the content groups of all its train content (fitted on the other
    folds, scoring its fold of each train domain) and one fitted on all of it (scoring nothing: its
    cut comes from the folds); per zero-shot method, one unit scoring all content of every train
    domain (nothing is fitted, so no fold is needed)."""
    domains = tuple(dict.fromkeys(d for ts in config.train_sets for d in ts))
    units: list[Unit] = []
    for m in config.methods:
        if only and m.label not in only and m.name not in only:
            continue
        if trainable[m.name]:
            for ts in config.train_sets:
                units += [Unit(m, tuple(ts), f, tuple(ts), DEPLOY) for f in range(folds)]
                units.append(Unit(m, tuple(ts), DEPLOY_ALL, (), DEPLOY))
        elif domains:
            units.append(Unit(m, None, DEPLOY_ALL, domains, DEPLOY))
    return units


def cells(units: list[Unit]) -> list[Cell]:
    """The table cells ``units`` fill: one per unit and test domain."""
    return [Cell(u.method.label, u.train_label, t, u.seed) for u in units for t in u.tests]
