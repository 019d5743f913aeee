"""What the hooks beyond datasets and methods register: statistics, figures, executors and commands.

Each is a small frozen record a plugin builds and hands to its hook's ``register`` callback; the
host checks it on arrival (:meth:`check`) and reports a broken one against its plugin. The
callables may be given as ``"module:attribute"`` strings, imported on first use: registering
then imports nothing, so ``diqa-bench --help``, ``list`` and ``validate`` stay light even when the
function lives in a module that imports scipy or torch. The built-in statistics, figures,
executors and the ``study`` command are registered this way (:mod:`diqa_bench.core_plugin`).
"""

from __future__ import annotations

import importlib
import re
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Union

from diqa_bench.errors import PluginError

Ref = Union[Callable[..., Any], str]  # a callable, or "package.module:attribute" imported on first use
STATISTIC_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")  # a column-safe name: SROCC, PLCC_raw, MY_STAT
# metrics.csv rows written by the host outside the statistics hook: a statistic of that name would mix with them
RESERVED_STATISTICS = ("THRESHOLD", "PAIR_ACC")
REF_RE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


def resolve(ref: Ref) -> Callable[..., Any]:
    """The callable behind a ``"module:attribute"`` string (or the callable itself)."""
    if callable(ref):
        return ref
    module, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _check_ref(plugin: str, what: str, ref: Any, required: bool = True) -> None:
    if ref is None and not required:
        return
    if callable(ref) or (isinstance(ref, str) and REF_RE.fullmatch(ref)):
        return
    raise PluginError(f"plugin {plugin!r}: {what} must be a callable or a 'module:attribute' string, got {ref!r}")


@dataclass(frozen=True)
class Statistic:
    """A statistic of one cell's test images, with a content-group bootstrap interval.

    ``function(scores, mos) -> float`` gets both direction-aligned (higher = better for the
    scores and for the MOS, as every built-in sees them) as 1-D float arrays. The host computes it
    on the cell's images for the value, and on every bootstrap replicate (the SAME content-group
    draws as every other statistic: each image repeated as often as its group was drawn) for the
    interval. ``higher_is_better`` orders the leaderboard and the comparisons; there is no abs().

    ``resampled(sample, weights) -> array [B]`` replaces ``function`` where a frequency-weighted form
    exists (a :class:`diqa_bench.stats.Sample` and [B, n] weights, one row per replicate): the
    built-ins use it, for speed and for what a Sample holds (the logistic mapping, acceptability).
    ``needs_acceptability``: computed only where the config declares an acceptability threshold.
    How LEADERBOARD.md shows it: ``column`` orders the columns (lower: further left; the built-ins
    take 10-40, the quality gate's 110-140; None: metrics.csv only), under ``label`` (default: the
    name); ``difference``: a signed difference, shown without its spread over seeds.
    ``compare``: whether ``diqa-bench compare`` tests its change between two runs.
    """

    name: str
    higher_is_better: bool
    function: Ref | None = None
    description: str = ""
    resampled: Ref | None = None
    needs_acceptability: bool = False
    column: int | None = 50
    label: str = ""
    difference: bool = False
    compare: bool = True

    def facts(self, plugin: str) -> dict[str, Any]:
        """What run.json records of it: enough to render and compare its stored values without the plugin."""
        return {"name": self.name, "higher_is_better": self.higher_is_better, "plugin": plugin, "description": self.description,
                "needs_acceptability": self.needs_acceptability, "column": self.column, "label": self.label or self.name,
                "difference": self.difference, "compare": self.compare}

    def check(self, plugin: str) -> None:
        if not isinstance(self.name, str) or not STATISTIC_NAME_RE.fullmatch(self.name):
            raise PluginError(f"plugin {plugin!r}: statistic name {self.name!r} must start with a letter and hold only letters, digits and _")
        if self.name.upper() in RESERVED_STATISTICS:
            raise PluginError(f"plugin {plugin!r}: statistic name {self.name!r} is reserved: metrics.csv already has {self.name.upper()} rows of its own")
        if not isinstance(self.higher_is_better, bool):
            raise PluginError(f"plugin {plugin!r}: statistic {self.name!r} has higher_is_better={self.higher_is_better!r}; it must be True or False")
        if (self.function is None) == (self.resampled is None):
            raise PluginError(f"plugin {plugin!r}: statistic {self.name!r} needs exactly one of function (scores, mos) -> float or resampled")
        _check_ref(plugin, f"statistic {self.name!r}: function", self.function, required=False)
        _check_ref(plugin, f"statistic {self.name!r}: resampled", self.resampled, required=False)
        if self.column is not None and (isinstance(self.column, bool) or not isinstance(self.column, int)):
            raise PluginError(f"plugin {plugin!r}: statistic {self.name!r}: column must be an integer or None, got {self.column!r}")

    def compute(self, sample, weights):
        """Values per row of ``weights`` [B, n] on a :class:`~diqa_bench.stats.Sample`."""
        import numpy as np

        if self.resampled is not None:
            return np.asarray(resolve(self.resampled)(sample, weights), float)
        fn = resolve(self.function)
        idx = np.arange(sample.n)
        out = np.empty(weights.shape[0])
        for b, row in enumerate(weights):
            # the expanded resample: image i as often as its group was drawn
            take = np.repeat(idx, np.round(row).astype(int))
            out[b] = float(fn(sample.score[take], sample.mos[take])) if len(take) else np.nan
        return out


@dataclass(frozen=True)
class Figure:
    """A figure of a finished run: ``function(run) -> matplotlib Figure`` (the host saves it as
    ``figures/<name>.png``), or a path to an image file it wrote itself, or None when the run has
    nothing to show (no file, no error). ``run`` is a :class:`diqa_bench.report.FigureRun`: the
    results folder, the tidy metrics, the scores and run.json. report.html shows every registered
    figure, in registration order, under its ``caption``. ``function`` may return a dict of such
    results (e.g. one per test domain: ``{test: figure}``): ``{key}`` in the caption is then each
    one's key, and ``{mos_label}`` the label of a test domain's MOS. ``section``: where report.html
    shows it (the built-in figures use "transfer", "strata", "cross-domain", "predictions" and
    "per-distortion"; any other, the default: the page's "Figures" section)."""

    name: str
    caption: str
    function: Ref
    section: str = ""

    def check(self, plugin: str) -> None:
        if not isinstance(self.name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", self.name):
            raise PluginError(f"plugin {plugin!r}: figure name {self.name!r} must be lower-case letters, digits, - and _ (it names a file)")
        if not isinstance(self.caption, str) or not self.caption.strip():
            raise PluginError(f"plugin {plugin!r}: figure {self.name!r} needs a caption")
        _check_ref(plugin, f"figure {self.name!r}: function", self.function)


@dataclass(frozen=True)
class Executor:
    """Where a run's units go: ``factory(progress=bool, log=callable, **options)`` returns an object
    with ``run(scorer, units, on_unit) -> outcomes`` (see :mod:`diqa_bench.executors`).
    ``options_schema``: the JSON-schema properties of the config's ``executor:`` keys it takes."""

    name: str
    factory: Ref
    description: str = ""
    options_schema: dict[str, Any] = field(default_factory=dict)

    def check(self, plugin: str) -> None:
        if not isinstance(self.name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", self.name):
            raise PluginError(f"plugin {plugin!r}: executor name {self.name!r} must be lower-case letters, digits, - and _")
        _check_ref(plugin, f"executor {self.name!r}: factory", self.factory)
        if not isinstance(self.options_schema, dict) or "type" in self.options_schema:
            raise PluginError(f"plugin {plugin!r}: executor {self.name!r}: options_schema must be a dict of properties, without 'type'")


@dataclass(frozen=True)
class Command:
    """A ``diqa-bench <name>`` command: ``add_arguments(parser)`` fills its argparse subparser
    (keep it light: it runs for ``--help``), ``handler(args) -> exit code`` runs it. A
    :class:`diqa_bench.errors.UserError` from the handler prints one line and exits 2."""

    name: str
    help: str
    handler: Ref
    add_arguments: Ref | None = None
    description: str | None = None

    def check(self, plugin: str) -> None:
        if not isinstance(self.name, str) or not re.fullmatch(r"[a-z][a-z0-9-]*", self.name):
            raise PluginError(f"plugin {plugin!r}: command name {self.name!r} must be lower-case letters, digits and -")
        if not isinstance(self.help, str) or not self.help.strip():
            raise PluginError(f"plugin {plugin!r}: command {self.name!r} needs a help line")
        _check_ref(plugin, f"command {self.name!r}: handler", self.handler)
        _check_ref(plugin, f"command {self.name!r}: add_arguments", self.add_arguments, required=False)


KINDS: dict[str, type] = {"statistic": Statistic, "figure": Figure, "executor": Executor, "command": Command}


# What the computation at hand uses: a run's statistics (the built-in ones and those its config
# names) and the registry's figures. Set by :meth:`diqa_bench.plugins.Registry.in_use`; unset, the
# core plugin's alone are used (a stored run re-rendered by library code, old callers).
_IN_USE: ContextVar[dict[str, Any] | None] = ContextVar("diqa_bench_extensions", default=None)


@contextmanager
def use(statistics: dict[str, Statistic], figures: list[tuple[Figure, str]]):
    """Within the block, computations use these ``statistics`` (name -> record) and ``figures``
    ((record, plugin name) pairs)."""
    token = _IN_USE.set({"statistics": dict(statistics), "figures": list(figures)})
    try:
        yield
    finally:
        _IN_USE.reset(token)


def in_use(kind: str):
    """The ``statistics`` or ``figures`` :func:`use` set, or None outside such a block."""
    current = _IN_USE.get()
    return None if current is None else current[kind]
