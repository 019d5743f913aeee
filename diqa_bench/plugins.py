"""Finding, loading and validating plugins.

Every plugin, in-tree or third-party, is a module named by an entry point in the ``diqa_bench``
group. ``DIQA_BENCH_PLUGINS=a,b`` loads only those entry points (empty: none). A plugin that fails to
import or register is reported with a warning naming it and the cause, and the rest go on;
``--strict-plugins`` or ``DIQA_BENCH_STRICT_PLUGINS=1`` makes that fatal.

Names are first come, first served, and the built-in plugins (shipped in diqa-bench itself) always
come first: a plugin that registers a name already taken (``piqe`` from another package) loses only
that entry, with a warning (an error under ``--strict-plugins``), and the clash is recorded in
run.json and the leaderboard's protocol. Without this, an installed package could replace a
built-in metric, or take the whole built-in plugin down, and a run would exit 0 with the impostor.
A built-in plugin is recognised by its distribution (diqa-bench) and module, never by its
entry-point name: another package's entry point named ``pyiqa`` loads as a third-party plugin
(``<package>:pyiqa``), with a warning naming both, and its entries clash as above.

The core plugin (:mod:`diqa_bench.core_plugin`: the built-in statistics, figures, executors and
commands) is no entry point: every registry loads it first, whatever DIQA_BENCH_PLUGINS says, through
the same hooks and checks as any plugin. It is ``registry.core``, not one of ``registry.plugins``.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as distribution_version
from typing import Any, Callable, Iterable

import pluggy

from diqa_bench import hookspecs, extensions
from diqa_bench.datasets import REQUIRED_DATASET_ATTRS, Dataset
from diqa_bench.errors import PluginError, UserError
from diqa_bench.extensions import KINDS as SPEC_KINDS
from diqa_bench.methods import REQUIRED_METHOD_ATTRS, Method

ENTRY_POINT_GROUP = "diqa_bench"
BUILTIN_DISTRIBUTION = "diqa-bench"
BUILTIN_MODULES = frozenset({"diqa_datasets", "diqa_pyiqa", "diqa_cross_domain"})
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.+-]*")  # used with fullmatch: "$" would let "piqe\n" through
CORE_PLUGIN = "core"
CORE_MODULE = "diqa_bench.core_plugin"
# hook -> the kind of entry its register callback takes; the kind names the registry's table (+ "s")
HOOKS = (("register_datasets", "dataset"), ("register_methods", "method"), ("register_statistics", "statistic"),
         ("register_figures", "figure"), ("register_executors", "executor"), ("register_commands", "command"))
TABLES = tuple(kind + "s" for _, kind in HOOKS)


class PluginWarning(UserWarning):
    pass


@dataclass
class Entry:
    cls: type
    plugin: str


@dataclass
class PluginInfo:
    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    statistics: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    executors: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    error: str | None = None
    builtin: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Registry:
    """Every dataset and method type, statistic, figure, executor and command the loaded plugins
    registered, with who registered it (``Entry.cls`` is the class, or the extension record)."""

    def __init__(self) -> None:
        self.datasets: dict[str, Entry] = {}
        self.methods: dict[str, Entry] = {}
        self.statistics: dict[str, Entry] = {}
        self.figures: dict[str, Entry] = {}
        self.executors: dict[str, Entry] = {}
        self.commands: dict[str, Entry] = {}
        self.plugins: dict[str, PluginInfo] = {}
        self.core: PluginInfo | None = None
        self.clashes: list[str] = []  # one line per entry refused because its name was taken
        self.strict = False

    # -- the register callbacks handed to the hooks ------------------------------------------
    def info(self, plugin: str) -> PluginInfo | None:
        if self.core is not None and plugin == self.core.name:
            return self.core
        return self.plugins.get(plugin)

    def _add(self, kind: str, cls: Any, plugin: str) -> None:
        table: dict[str, Entry] = getattr(self, kind + "s")
        if kind in SPEC_KINDS:
            spec_type = SPEC_KINDS[kind]
            if not isinstance(cls, spec_type):
                raise PluginError(f"plugin {plugin!r} registered {cls!r} as a {kind}, but it is not a {spec_type.__module__}.{spec_type.__name__}")
            cls.check(plugin)
            name = cls.name
        else:
            base, required = (Dataset, REQUIRED_DATASET_ATTRS) if kind == "dataset" else (Method, REQUIRED_METHOD_ATTRS)
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise PluginError(f"plugin {plugin!r} registered {cls!r} as a {kind}, but it is not a subclass of {base.__module__}.{base.__name__}")
            for attr in required:
                if getattr(cls, attr, None) in (None, ""):
                    raise PluginError(f"plugin {plugin!r}: {kind} class {cls.__name__} has no {attr!r}")
            name = cls.name
            if not NAME_RE.fullmatch(name):
                raise PluginError(f"plugin {plugin!r}: {kind} name {name!r} must be lower-case letters, digits and - _ . +")
            if kind == "method" and not isinstance(cls.lower_better, bool):
                raise PluginError(f"plugin {plugin!r}: method {name!r} has lower_better={cls.lower_better!r}; it must be True or False")
        if name in table:
            other = table[name].plugin
            if other == plugin:
                raise PluginError(f"plugin {plugin!r} registers {kind} name {name!r} twice")
            owner = self.info(other)
            message = (f"{kind} name {name!r} is registered twice: by {'built-in ' if owner is not None and owner.builtin else ''}"
                       f"plugin {other!r} and by plugin {plugin!r}; the second is ignored")
            if self.strict:
                raise PluginError(message)
            self.clashes.append(message)
            warnings.warn(message + " (--strict-plugins makes this fatal)", PluginWarning, stacklevel=2)
            return
        table[name] = Entry(cls, plugin)
        info = self.info(plugin)
        if info is not None:
            getattr(info, kind + "s").append(name)

    def register_callback(self, kind: str, plugin: str) -> Callable[[type], None]:
        def register(cls: type) -> None:
            self._add(kind, cls, plugin)

        register.__name__ = f"register_{kind}"
        return register

    # -- lookups -------------------------------------------------------------------------------
    def method(self, name: str) -> type[Method]:
        return self._lookup(self.methods, name, "method").cls

    def dataset(self, name: str) -> type[Dataset]:
        return self._lookup(self.datasets, name, "dataset").cls

    def executor(self, name: str):
        """The :class:`~diqa_bench.extensions.Executor` registered as ``name``."""
        return self._lookup(self.executors, name, "executor").cls

    def statistic_specs(self) -> list:
        """The registered :class:`~diqa_bench.extensions.Statistic` records, in registration order
        (the core plugin's first): the order of metrics.csv and of the leaderboard's columns."""
        return [e.cls for e in self.statistics.values()]

    def figure_specs(self) -> list:
        return [e.cls for e in self.figures.values()]

    def run_statistics(self, extra=()) -> dict[str, Any]:
        """The statistics a run computes: the core plugin's, and the plugins' ones named in ``extra``
        (the config's ``statistics.extra``), in registration order."""
        wanted = set(extra)
        return {name: e.cls for name, e in self.statistics.items() if e.plugin == CORE_PLUGIN or name in wanted}

    def statistic_facts(self, extra=()) -> list[dict[str, Any]]:
        """What run.json records of a run's statistics (:meth:`run_statistics`): each one's
        direction, leaderboard column and label, and the plugin (with its version) that registered it."""
        out = []
        for name in self.run_statistics(extra):
            entry = self.statistics[name]
            info = self.info(entry.plugin)
            out.append({**entry.cls.facts(entry.plugin), "plugin_version": info.version if info is not None else None})
        return out

    @contextmanager
    def in_use(self, extra=None):
        """Within the block, statistics and figures come from this registry: a run's statistics
        (``extra``: the plugin statistics its config names) or, with ``extra=None``, every registered
        one (``compare``, which computes only those both runs stored)."""

        table = {n: e.cls for n, e in self.statistics.items()} if extra is None else self.run_statistics(extra)
        with extensions.use(table, [(e.cls, e.plugin) for e in self.figures.values()]):
            yield

    @staticmethod
    def _lookup(table: dict[str, Entry], name: str, kind: str) -> Entry:
        if name in table:
            return table[name]
        raise UserError(unknown_name_message(kind, name, table))


def unknown_name_message(kind: str, name: str, known: Iterable[str]) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    listing = ", ".join(known) if known else "none (is the plugin installed? see `diqa-bench plugins`)"
    return f"unknown {kind} {name!r}.{hint} Known {kind}s: {listing}"


def strict_from_env() -> bool:
    return os.environ.get("DIQA_BENCH_STRICT_PLUGINS", "").strip().lower() in {"1", "true", "yes", "on"}


def selected_plugins() -> set[str] | None:
    """Names from DIQA_BENCH_PLUGINS, or None when unset (load all). Empty means none."""
    raw = os.environ.get("DIQA_BENCH_PLUGINS")
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


@contextmanager
def only_entry_points(names: Iterable[str]):
    """Within the block, DIQA_BENCH_PLUGINS selects exactly ``names`` (none when empty); the
    previous value, or its absence, comes back afterwards even when the block fails."""
    saved = os.environ.get("DIQA_BENCH_PLUGINS")
    os.environ["DIQA_BENCH_PLUGINS"] = ",".join(names)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("DIQA_BENCH_PLUGINS", None)
        else:
            os.environ["DIQA_BENCH_PLUGINS"] = saved


def load_plugins(strict: bool | None = None, extra: Iterable[tuple[str, Any]] = ()) -> Registry:
    """Load entry-point plugins (and ``extra`` (name, module-or-object) pairs, used by tests),
    call their hooks and return the validated :class:`Registry`."""
    strict = strict_from_env() if strict is None else strict
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    registry.strict = strict
    wanted = selected_plugins()

    def fail(info: PluginInfo, message: str) -> None:
        info.error = message
        if strict:
            raise PluginError(message)
        warnings.warn(message + " (the other plugins still load; --strict-plugins makes this fatal)", PluginWarning, stacklevel=3)

    found: list[tuple[Any, PluginInfo]] = []
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        info = PluginInfo(ep.name, ep.value, dist.name if dist else None, dist.version if dist else None)
        info.builtin = info.module in BUILTIN_MODULES and info.distribution == BUILTIN_DISTRIBUTION
        found.append((ep, info))
    # A built-in plugin is known by its distribution and module, never by its entry-point name,
    # which any package can declare: another package's entry point that takes a built-in's name
    # (or one taken already) is a third-party plugin named after its package ("evil-iqa:pyiqa"),
    # and DIQA_BENCH_PLUGINS selects it by that name.
    owners = {info.name: info for _, info in found if info.builtin}
    candidates: list[tuple[str, Callable[[], Any], PluginInfo]] = []
    for ep, info in found:
        owner = owners.get(info.name)
        renamed = owner is not None and owner is not info
        if renamed:
            info.name = f"{info.distribution or info.module}:{info.name}"
        owners.setdefault(info.name, info)
        if wanted is not None and info.name not in wanted:
            continue
        if renamed:
            message = (f"plugin entry point {ep.name!r} of {_package(info)} has the name of "
                       f"{'the built-in' if owner.builtin else 'another'} plugin {owner.name!r} of {_package(owner)}; "
                       f"it loads as the third-party plugin {info.name!r}, which cannot take the names the other registered")
            if strict:
                raise PluginError(message)
            registry.clashes.append(message)
            warnings.warn(message + " (--strict-plugins makes this fatal)", PluginWarning, stacklevel=2)
        candidates.append((info.name, ep.load, info))
    for name, obj in extra:
        info = PluginInfo(name, getattr(obj, "__name__", repr(obj)))
        candidates.append((name, lambda obj=obj: obj, info))

    # The core plugin: always, first, and through the same hooks; a failure in it is a bug.
    import importlib

    core = importlib.import_module(CORE_MODULE)
    try:
        version = distribution_version(BUILTIN_DISTRIBUTION)
    except PackageNotFoundError:  # run from a source tree that was never installed
        version = None
    registry.core = PluginInfo(CORE_PLUGIN, CORE_MODULE, BUILTIN_DISTRIBUTION, version, builtin=True)
    pm.register(core, name=CORE_PLUGIN)
    registry.core.hooks = sorted(h.name for h in pm.get_hookcallers(core) or [])

    if wanted:
        missing = wanted - {name for name, _, _ in candidates}
        for name in sorted(missing):
            info = PluginInfo(name, "?")
            registry.plugins[name] = info
            fail(info, f"plugin {name!r} named in DIQA_BENCH_PLUGINS is not installed")

    for name, loader, info in candidates:
        registry.plugins[name] = info
        try:
            module = loader()
            pm.register(module, name=name)
        except Exception as exc:  # a broken plugin must not take the CLI down
            fail(info, f"plugin {name!r} ({info.module}) failed to load: {type(exc).__name__}: {exc}")
            continue
        info.hooks = sorted(h.name for h in pm.get_hookcallers(module) or [])

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        plugin_name = pm.get_name(exc.plugin) if exc.plugin is not None else "?"
        info = registry.plugins.get(plugin_name) or PluginInfo(plugin_name or "?", "?")
        fail(info, f"plugin {plugin_name!r}: {exc} (a misspelt hook name?)")

    # Call each plugin's hook on its own, so one plugin's exception is reported against it alone.
    # Built-in plugins first, so that their names cannot be taken.
    # Core first, then the other built-in plugins, so that their names cannot be taken.
    def rank(impl) -> tuple[int, int]:
        info = registry.info(impl.plugin_name)
        return (0 if info is registry.core else 1 if info.builtin else 2, impls.index(impl))

    for hook_name, kind in HOOKS:
        impls = getattr(pm.hook, hook_name).get_hookimpls()
        impls = sorted(impls, key=rank)
        for impl in impls:
            info = registry.info(impl.plugin_name)
            if info.error:
                continue
            before = {table: dict(getattr(registry, table)) for table in TABLES}
            try:
                impl.function(register=registry.register_callback(kind, impl.plugin_name))
            except Exception as exc:
                if info is registry.core:
                    raise
                # Roll back whatever this plugin registered before it failed.
                for table, saved in before.items():
                    setattr(registry, table, saved)
                    setattr(info, table, [n for n in getattr(info, table) if n in saved])
                reason = str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
                fail(info, f"plugin {impl.plugin_name!r} failed in {hook_name}: {reason}")
    return registry


def _package(info: PluginInfo) -> str:
    """'diqa-bench 0.1.0 (module diqa_pyiqa)', for messages that must tell two plugins apart."""
    dist = f"{info.distribution} {info.version or ''}".strip() if info.distribution else "no package"
    return f"{dist} (module {info.module})"


@dataclass(frozen=True)
class PluginSources:
    """How another process (a pool worker, a Ray worker) loads the same plugins as this one:
    entry points it re-discovers by name, and other plugins by importable module name."""

    entry_points: tuple[str, ...] = ()
    modules: tuple[tuple[str, str], ...] = ()  # (plugin name, module name)

    @classmethod
    def of(cls, registry: "Registry", names: Iterable[str] | None = None) -> "PluginSources":
        """The sources of ``names`` (default: every plugin that loaded). Raises :class:`UserError`
        for a plugin registered as an object rather than an importable module."""
        import importlib
        import types

        # by entry-point name only where that name is unambiguous: another package may declare it too
        entry_points: dict[str, list[str]] = {}
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            entry_points.setdefault(ep.name, []).append(ep.value)
        eps, modules = [], []
        for name in registry.plugins if names is None else names:  # the core plugin is no entry: every process loads it
            info = registry.plugins.get(name)
            if info is None:
                raise UserError(f"plugin {name!r} is not loaded")
            if info.error:
                continue
            if entry_points.get(name) == [info.module]:
                eps.append(name)
                continue
            try:
                module = importlib.import_module(info.module)
            except (ImportError, TypeError, ValueError):
                module = None
            if not isinstance(module, types.ModuleType):
                raise UserError(f"plugin {name!r} was registered as an object, not an importable module: another process cannot load it")
            modules.append((name, info.module))
        return cls(tuple(eps), tuple(modules))

    def load(self, where: str = "in this process") -> "Registry":
        """The registry of exactly these plugins, in this process (strict: a plugin that loaded in
        the parent must load here too). ``where`` names this process in the error message."""
        import importlib

        extra = []
        for name, mod in self.modules:
            try:
                extra.append((name, importlib.import_module(mod)))
            except ImportError as exc:
                raise UserError(f"plugin {name!r}: module {mod!r} cannot be imported {where} ({exc}); install it there or put it on PYTHONPATH") from None
        with only_entry_points(self.entry_points):
            return load_plugins(strict=True, extra=extra)


def format_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ARG001
    """One-line warnings on the CLI: 'diqa-bench: warning: ...'."""
    return f"diqa-bench: warning: {message}\n"


def install_cli_warning_format() -> None:
    warnings.formatwarning = format_warning
    if not sys.warnoptions:
        warnings.simplefilter("default", PluginWarning)
