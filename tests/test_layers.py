"""The floors of the house: every module of ``diqa_bench`` sits on one floor and imports only from
its own floor or the floors below it, and no modules import each other in a circle.

Read FLOORS from the bottom up to find your way around (the same map, one line a module, is in
docs/layers.md):

- ``base``: the package's footing, importing nothing of it: errors, atomic file writing, the
  plugin hooks, licences, the ``Batch`` / ``FeatureCache`` types, the derived-result cache folder.
- ``data``: contracts and data: images and their decoding, datasets, methods, the score and
  feature caches, the plugin registry, splits, ratings (MOS), the study's store and plan.
- ``compute``: statistics over data in memory: stats, metrics of cell outcomes, the pair contract
  and its statistic, rater agreement.
- ``config``: the benchmark config and its grid of cells.
- ``store``: the results store (lock, staging, publish, load, the one list of result files),
  run.json's facts, pairs.csv, the threshold files (and reading a cut back).
- ``render``: leaderboard, pair tables, report/ (tables, figures, HTML), the study's export and
  server.
- ``run``: what drives a run and the commands: plan, scorer, scoring, executors that score,
  results (writing a run's files), runner, gate, cli, testing helpers, the package itself.

Both top-level imports and imports inside functions count: an import deferred to save start-up
time still points one way. ``if TYPE_CHECKING:`` imports do not count (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "diqa_bench"

ORDER = ["base", "data", "compute", "config", "store", "render", "run"]

FLOORS = {
    # base
    "diqa_bench.version": "base", "diqa_bench.errors": "base", "diqa_bench.files": "base", "diqa_bench.hookspecs": "base",
    "diqa_bench.licences": "base", "diqa_bench.executors": "base", "diqa_bench.torch_files": "base", "diqa_bench.derived": "base",
    "diqa_bench.batch": "base", "diqa_bench.tables": "base", "diqa_bench.threads": "base", "diqa_bench.extensions": "base",
    # data
    "diqa_bench.images": "data", "diqa_bench.cache": "data", "diqa_bench.methods": "data", "diqa_bench.datasets": "data",
    "diqa_bench.plugins": "data", "diqa_bench.core_plugin": "data", "diqa_bench.splits": "data", "diqa_bench.mos": "data",
    "diqa_bench.study": "data", "diqa_bench.study.store": "data", "diqa_bench.study.scaling": "data", "diqa_bench.study.plan": "data",
    # compute
    "diqa_bench.stats": "compute", "diqa_bench.metrics": "compute", "diqa_bench.pairs": "compute", "diqa_bench.agreement": "compute",
    # config
    "diqa_bench.config": "config", "diqa_bench.grid": "config",
    # store
    "diqa_bench.store": "store", "diqa_bench.run_facts": "store", "diqa_bench.pair_files": "store", "diqa_bench.thresholds": "store",
    # render
    "diqa_bench.leaderboard": "render", "diqa_bench.pair_tables": "render", "diqa_bench.report": "render",
    "diqa_bench.report.ablation": "render", "diqa_bench.report.agreement": "render", "diqa_bench.report.compare": "render",
    "diqa_bench.report.figures": "render", "diqa_bench.report.html": "render", "diqa_bench.report.significance": "render",
    "diqa_bench.report.stored": "render", "diqa_bench.report.strata": "render", "diqa_bench.report.transfer": "render",
    "diqa_bench.study.export": "render", "diqa_bench.study.server": "render",
    # run
    "diqa_bench.plan": "run", "diqa_bench.batch_loop": "run", "diqa_bench.scorer": "run", "diqa_bench.parallel": "run",
    "diqa_bench.ray_executor": "run", "diqa_bench.scoring": "run", "diqa_bench.session": "run", "diqa_bench.results": "run", "diqa_bench.runner": "run",
    "diqa_bench.gate": "run", "diqa_bench.cli": "run", "diqa_bench.study.cli": "run", "diqa_bench.testing": "run",
    "diqa_bench.pytest_plugin": "run", "diqa_bench": "run",
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imported(module: str, source: str, is_package: bool, modules: dict[str, Path]) -> set[str]:
    """The package modules ``module`` imports, anywhere in its source (TYPE_CHECKING blocks aside)."""
    found: set[str] = set()

    def owner(name: str) -> str | None:  # the module a dotted name lives in: a.b.c -> a.b when c is a name in a.b
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                found.update(filter(None, (owner(a.name) for a in child.names if a.name.split(".")[0] == "diqa_bench")))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    package = module.split(".") if is_package else module.split(".")[:-1]
                    package = package[: len(package) - (child.level - 1)]
                    base = ".".join(package + ([base] if base else []))
                if base.split(".")[0] != "diqa_bench":
                    continue
                for a in child.names:
                    full = f"{base}.{a.name}"
                    found.add(full if full in modules else owner(base))
            visit(child)

    visit(ast.parse(source))
    found.discard(module)
    found.discard(None)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imported(m, p.read_text(encoding="utf-8"), p.name == "__init__.py", modules) for m, p in modules.items()}


def test_every_module_has_a_floor(graph):
    assert sorted(set(graph) - set(FLOORS)) == [], "a new module: give it a floor in FLOORS (and in docs/layers.md)"
    assert sorted(set(FLOORS) - set(graph)) == [], "a module in FLOORS no longer exists"


def test_imports_point_down(graph):
    upward = [f"{m} ({FLOORS[m]}) imports {t} ({FLOORS[t]})" for m, targets in sorted(graph.items()) for t in sorted(targets)
              if t in FLOORS and m in FLOORS and ORDER.index(FLOORS[t]) > ORDER.index(FLOORS[m])]
    assert upward == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_no_import_circle(graph):
    assert _cycles(graph) == []


def test_the_graph_counts_in_function_imports_and_finds_circles():
    """What the checks above rest on: an import inside a function is an edge (relative ones
    resolved, names mapped to their module), a TYPE_CHECKING import is none, and a circle through
    such edges is found."""
    import textwrap

    source = textwrap.dedent("""
        from typing import TYPE_CHECKING

        from diqa_bench.metrics import METRIC_COLUMNS

        if TYPE_CHECKING:
            from diqa_bench.runner import run_benchmark

        def later():
            from .results import write_all
            from diqa_bench import pairs
        """)
    modules = {m: Path() for m in ("diqa_bench", "diqa_bench.store", "diqa_bench.metrics", "diqa_bench.results", "diqa_bench.pairs", "diqa_bench.runner")}
    found = _imported("diqa_bench.store", source, False, modules)
    assert found == {"diqa_bench.metrics", "diqa_bench.results", "diqa_bench.pairs"}
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def _unmarked_lazy_imports(module: str, source: str, is_package: bool, modules: dict[str, Path]) -> list[int]:
    """The lines of ``module``'s imports of package modules inside a function that carry no
    ``# lazy:`` comment on their line or the line above (an import is deferred only to save
    start-up time, and says which)."""
    lines = source.splitlines()
    found: list[int] = []

    def marked(node: ast.stmt) -> bool:
        near = lines[node.lineno - 1: node.end_lineno] + ([lines[node.lineno - 2]] if node.lineno > 1 else [])
        return any("# lazy:" in line for line in near)

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                continue
            if in_function and isinstance(child, (ast.Import, ast.ImportFrom)) and not marked(child):
                wrapper = ast.Module(body=[child], type_ignores=[])
                if _imported(module, ast.unparse(wrapper), is_package, modules) or _imports_itself(module, child, is_package):
                    found.append(child.lineno)
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(source), False)
    return found


def _imports_itself(module: str, node: ast.stmt, is_package: bool) -> bool:
    """``import diqa_bench.x`` inside diqa_bench.x: no edge in the graph, still an in-function import."""
    if isinstance(node, ast.Import):
        return any(a.name == module for a in node.names)
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        base = ".".join(package[: len(package) - (node.level - 1)] + ([base] if base else []))
    return base == module or any(f"{base}.{a.name}" == module for a in node.names)


def test_every_in_function_import_says_why_it_is_lazy():
    """An import of a package module inside a function stays there only to keep start-up light,
    with a ``# lazy:`` comment saying what it saves; everything else is imported at the top."""
    modules = _modules()
    unmarked = [f"{path.relative_to(PACKAGE.parent)}:{line}" for m, path in sorted(modules.items())
                for line in _unmarked_lazy_imports(m, path.read_text(encoding="utf-8"), path.name == "__init__.py", modules)]
    assert unmarked == [], "move these imports to the module top, or say `# lazy: <what it saves>`"


def test_the_lazy_check_finds_unmarked_imports():
    """What the check above rests on: an unmarked in-function import of a package module is found
    (relative ones too), a marked one (same line or the line above), a top-level one, a TYPE_CHECKING
    one and one of another package are not."""
    import textwrap

    source = textwrap.dedent("""
        from typing import TYPE_CHECKING

        from diqa_bench.metrics import METRIC_COLUMNS

        if TYPE_CHECKING:
            from diqa_bench.runner import run_benchmark

        def later():
            import json
            from .results import write_all
            from diqa_bench import pairs  # lazy: loads numpy
            # lazy: loads scipy
            from diqa_bench.metrics import METRIC_COLUMNS
            import diqa_bench.store as me
        """)
    modules = {m: Path() for m in ("diqa_bench", "diqa_bench.store", "diqa_bench.metrics", "diqa_bench.results", "diqa_bench.pairs", "diqa_bench.runner")}
    assert _unmarked_lazy_imports("diqa_bench.store", source, False, modules) == [11, 15]
