"""pyiqa's own metric metadata (direction, score range, mode), read without importing pyiqa.

``import pyiqa`` takes seconds and pulls in torch; listing methods must stay instant, so the
metric table (``pyiqa/default_model_configs.py``, a plain dict) is executed on its own.
"""

from __future__ import annotations

import importlib.util
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
    module_spec = importlib.util.spec_from_file_location("_diqa_pyiqa_default_configs", source)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return dict(module.DEFAULT_CONFIGS)


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
