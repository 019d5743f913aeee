"""pyiqa's own metric metadata (direction, score range, mode), read without importing pyiqa.

``import pyiqa`` takes seconds and pulls in torch; listing methods must stay instant, so the
metric table (``pyiqa/default_model_configs.py``, a dict literal) is parsed, not executed: each
entry is read with :func:`ast.literal_eval`, and an entry that is not a literal is left out.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any


@lru_cache(maxsize=1)
def default_configs() -> dict[str, dict[str, Any]]:
    """pyiqa's ``DEFAULT_CONFIGS`` (metric name -> metric_opts, metric_mode, lower_better, score_range)."""
    spec = importlib.util.find_spec("pyiqa")
    if spec is None or not spec.submodule_search_locations:
        return {}
    source = Path(next(iter(spec.submodule_search_locations))) / "default_model_configs.py"
    try:
        return parse_default_configs(source.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return {}


def parse_default_configs(text: str) -> dict[str, dict[str, Any]]:
    """The ``DEFAULT_CONFIGS`` mapping of a ``default_model_configs.py`` source text, written as a
    dict literal or ``OrderedDict({...})``; nothing in the file is executed."""
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "DEFAULT_CONFIGS" for t in node.targets):
            value = node.value
            if isinstance(value, ast.Call) and value.args:
                value = value.args[0]
            if not isinstance(value, ast.Dict):
                raise ValueError("DEFAULT_CONFIGS is not a dict literal")
            out: dict[str, dict[str, Any]] = {}
            for key, item in zip(value.keys, value.values):
                try:
                    name, cfg = ast.literal_eval(key), ast.literal_eval(item)
                except ValueError:
                    continue
                if isinstance(name, str) and isinstance(cfg, dict):
                    out[name] = cfg
            return out
    raise ValueError("no DEFAULT_CONFIGS assignment")


def parse_score_range(text: str | None) -> tuple[float, float] | None:
    """pyiqa writes ranges as text, '~' marking a rough bound: '~0, ~150' -> (0.0, 150.0)."""
    if not text:
        return None
    try:
        low, high = (float(part.strip().lstrip("~")) for part in str(text).split(","))
    except ValueError:
        return None
    return (low, high)


@dataclass(frozen=True)
class MetricInfo:
    name: str
    mode: str | None
    lower_better: bool
    score_range: tuple[float, float] | None
    arch: str | None  # pyiqa architecture class name (metric_opts.type)


def metric_info(name: str) -> MetricInfo:
    """Metadata of one pyiqa metric; KeyError when pyiqa does not know the name."""
    cfg = default_configs()[name]
    return MetricInfo(
        name=name,
        mode=cfg.get("metric_mode"),
        lower_better=bool(cfg.get("lower_better", False)),
        score_range=parse_score_range(cfg.get("score_range")),
        arch=cfg.get("metric_opts", {}).get("type"),
    )


def no_reference_metrics() -> list[str]:
    return sorted(k for k, v in default_configs().items() if v.get("metric_mode") == "NR")


def full_reference_metrics() -> list[str]:
    return sorted(k for k, v in default_configs().items() if v.get("metric_mode") == "FR")


@lru_cache(maxsize=None)
def arch_weight_files(metric: str) -> tuple[str, ...]:
    """The weight file names a metric's pyiqa architecture can fetch (its module's
    ``default_model_urls``), read without importing pyiqa; () when they cannot be read. A superset
    of what one configuration loads: the generic ``pyiqa`` method keys its cache on all of them."""
    spec = importlib.util.find_spec("pyiqa")
    try:
        arch = metric_info(metric).arch
    except KeyError:
        return ()
    if not arch or spec is None or not spec.submodule_search_locations:
        return ()
    archs = Path(next(iter(spec.submodule_search_locations))) / "archs"
    declares = re.compile(rf"^class {re.escape(arch)}\b", re.M)
    for path in sorted(archs.glob("*_arch.py")):
        try:
            text = path.read_text(encoding="utf-8")
            if declares.search(text):
                return _url_file_names(text)
        except (OSError, SyntaxError, ValueError):
            continue
    return ()


def _url_file_names(text: str) -> tuple[str, ...]:
    """File names in an arch module's ``default_model_urls``: ``get_url_from_name('x.pth')`` or a URL."""
    from urllib.parse import urlparse

    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "default_model_urls" for t in node.targets):
            if not isinstance(node.value, ast.Dict):
                return ()
            names = []
            for value in node.value.values:
                if isinstance(value, ast.Call) and value.args:
                    value = value.args[0]
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    names.append(os.path.basename(urlparse(value.value).path))
            return tuple(dict.fromkeys(n for n in names if n))
    return ()
