"""Every pyiqa no-reference metric under its own pyiqa name (``name: topiq_nr``), built from pyiqa's
metric table without importing pyiqa, so ``diqa-bench list methods`` shows them instantly.

Full-reference names, and the no-reference entries that do not score single images (distribution
metrics such as ``fid``; ``clipscore`` needs a caption), are registered as unusable: a config that
names one gets a one-line reason from ``validate`` instead of "unknown method".
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from diqa_bench.errors import UserError

from .metadata import default_configs, metric_info
from .zero_shot import PyiqaAny

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.+-]*")  # the registry's rule for method names (fullmatch)
NOT_PER_IMAGE = {
    "fid": "compares two folders of images (a distribution distance), not one image's quality",
    "fid_dinov2": "compares two folders of images (a distribution distance), not one image's quality",
    "sfid": "compares two folders of images (a distribution distance), not one image's quality",
    "inception_score": "scores a set of generated images, not one image's quality",
    "clipscore": "scores an image against a caption, not its quality",
}


class NamedPyiqaMetric(PyiqaAny):
    """Base of the generated per-name classes: ``metric`` is fixed by the class."""

    options_schema: ClassVar[dict[str, Any]] = {k: v for k, v in PyiqaAny.options_schema.items() if k != "metric"}
    required_options: ClassVar[list[str]] = []
    unusable: ClassVar[str | None] = None

    def __init__(self, metric_options: dict | None = None, precision: str = "auto", **options: Any) -> None:
        if self.unusable:
            raise UserError(self.unusable)
        super().__init__(self.metric, metric_options=metric_options, precision=precision, **options)


def _class_name(metric: str) -> str:
    return "Pyiqa_" + "".join(ch if ch.isalnum() else "_" for ch in metric)


def named_metric_classes(taken: set[str]) -> list[type]:
    """One class per pyiqa metric whose name is not in ``taken`` (the hand-written classes)."""
    out = []
    for metric, cfg in sorted(default_configs().items()):
        if metric.lower() in taken or not NAME_RE.fullmatch(metric.lower()):
            continue
        mode = cfg.get("metric_mode")
        if mode == "NR" and metric not in NOT_PER_IMAGE:
            info = metric_info(metric)
            attrs = {"name": metric.lower(), "metric": metric, "__module__": __name__,
                     "description": f"pyiqa {metric} (no-reference{', lower is better' if info.lower_better else ''})"}
        else:
            why = NOT_PER_IMAGE.get(metric) or "is full-reference (it compares with a reference image); diqa-bench scores images without references"
            attrs = {"name": metric.lower(), "metric": None, "lower_better": bool(cfg.get("lower_better", False)), "__module__": __name__,
                     "unusable": f"pyiqa metric {metric!r} {why}", "description": f"pyiqa {metric}: not usable here ({'full-reference' if mode == 'FR' else 'not per-image'})"}
        out.append(type(_class_name(metric), (NamedPyiqaMetric,), attrs))
    return out
