"""README "Writing a plugin" and "Testing a plugin", run as written: every code block that starts
with ``# file: PATH`` is written to PATH in a fresh folder (a plugin package of its own), its
pyproject.toml must declare the entry point of that package, the package must load and register
through the hooks, and the README's own test of it must pass under pytest with the fixtures the
``pytest11`` entry point provides (no conftest, nothing installed)."""

import importlib
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def readme_files() -> dict[str, str]:
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Writing a plugin\n", 1)[1].split("\n## Running on a Ray cluster", 1)[0]
    files = {}
    for block in re.findall(r"```(?:python|toml)\n(.*?)```", section, re.S):
        first, _, body = block.partition("\n")
        if first.startswith("# file: "):
            files[first[len("# file: "):].strip()] = body
    return files


@pytest.fixture
def plugin_folder(tmp_path, monkeypatch):
    folder = tmp_path / "my-iqa-plugin"
    for rel, body in readme_files().items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(body)
    monkeypatch.syspath_prepend(str(folder))
    for name in [m for m in sys.modules if m == "my_iqa" or m.startswith("my_iqa.")]:
        monkeypatch.delitem(sys.modules, name)
    return folder


def test_the_readme_holds_a_whole_plugin():
    files = readme_files()
    assert set(files) == {"pyproject.toml", "my_iqa/__init__.py", "my_iqa/method.py", "my_iqa/extras.py", "tests/test_my_iqa.py"}
    project = tomllib.loads(files["pyproject.toml"])
    assert project["build-system"]["build-backend"] == "setuptools.build_meta"
    assert project["project"]["entry-points"]["diqa_bench"] == {"my-iqa": "my_iqa"}
    assert "diqa-bench" in project["project"]["dependencies"]
    assert project["tool"]["setuptools"]["packages"] == ["my_iqa"]


def test_the_readme_plugin_registers_through_the_hooks_and_clashes_with_nothing_installed(plugin_folder, recwarn):
    from diqa_bench.plugins import load_plugins

    my_iqa = importlib.import_module("my_iqa")
    reg = load_plugins(strict=True, extra=[("my-iqa", my_iqa)])  # every installed plugin too: a clash would raise
    info = reg.plugins["my-iqa"]
    assert (info.methods, info.statistics, info.figures) == (["my-tenengrad"], ["CONCORDANCE"], ["score-spread"])
    assert "numpy" not in vars(my_iqa) and "my_iqa.extras" not in sys.modules  # registering imported nothing heavy


def test_the_readme_plugin_test_passes_as_written(plugin_folder, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DIQA_BENCH_PLUGINS", "DIQA_BENCH_STRICT_PLUGINS")}
    env["PYTHONPATH"] = os.pathsep.join([str(plugin_folder), env.get("PYTHONPATH", "")])
    env["DIQA_BENCH_CACHE"] = str(tmp_path / "cache")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_my_iqa.py"], cwd=plugin_folder,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout
