"""Nothing outside a module uses its private names: not the other modules of the package, not the
plugins, not the tests or benchmarks. A name with a leading underscore can then change without
a search through the tree; what another module needs is public and has a docstring.

Checked from the source with ``ast``: ``from our.module import _name`` and ``module._name`` where
``module`` was imported from one of this project's packages. (Private attributes of objects are
not visible to a static check; the review keeps those out.)
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = ("diqa_bench", "diqa_pyiqa", "diqa_cross_domain", "diqa_datasets", "diqa_example")
TREES = ["diqa_bench", "plugins", "tests", "benchmarks"]


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _ours(module: str | None, level: int) -> bool:
    return level > 0 or (module or "").split(".")[0] in OURS


def private_uses(source: str) -> list[tuple[int, str]]:
    """(line, what) for each use of another module's private name in this source."""
    tree = ast.parse(source)
    modules: set[str] = set()  # local names bound to one of our modules
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if _ours(a.name, 0):
                    modules.add(a.asname or a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and _ours(node.module, node.level):
            for a in node.names:
                if _private(a.name):
                    found.append((node.lineno, f"from {'.' * node.level}{node.module or ''} import {a.name}"))
                else:
                    modules.add(a.asname or a.name)  # may be a submodule; attribute checks below decide
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute):  # diqa_bench.images._x
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules and base.id not in ("self", "cls"):
                found.append((node.lineno, f"{ast.unparse(node)}"))
    return found


def test_the_checker_finds_private_imports_and_attributes():
    src = ("from diqa_bench.images import _resize, decode\nfrom .skin import _hair\nimport diqa_bench.files as files\n"
           "from diqa_bench import images\nimages._open(1)\nfiles.csv_cell(2)\nos._exit(0)\nimport os\n"
           "from diqa_bench.report import ablation as _ablation\n_ablation.table()\n")
    assert [what for _, what in private_uses(src)] == ["from diqa_bench.images import _resize", "from .skin import _hair", "images._open"]


def test_no_module_uses_another_modules_private_names():
    offences = []
    for tree in TREES:
        for path in sorted((ROOT / tree).rglob("*.py")):
            if ".venv" in path.parts or "build" in path.parts:
                continue
            for line, what in private_uses(path.read_text()):
                offences.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    assert not offences, "\n".join(offences)
