"""Benchmark configs: YAML files validated before any work starts.

Every error names the file, the key path (``methods[2].options.epochs``) and what is allowed.
Unknown keys are errors; unknown method or dataset names get "did you mean". The schema lives here,
in one place: it is the config reference (``diqa-bench validate --schema`` prints it).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from diqa_bench.errors import ConfigError

NAME = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["domains", "methods", "test_domains"],
    "properties": {
        "name": {**NAME, "description": "benchmark name; default output folder results/<name>/"},
        "description": {"type": "string"},
        "domains": {
            "type": "object",
            "minProperties": 1,
            "description": "domain name -> list of datasets",
            "propertyNames": NAME,
            "additionalProperties": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["dataset"],
                    "properties": {
                        "dataset": {"type": "string", "description": "registered dataset type"},
                        "name": {**NAME, "description": "instance name (default: the dataset type)"},
                        "options": {"type": "object"},
                    },
                },
            },
        },
        "methods": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "description": "registered method name"},
                    "label": {**NAME, "description": "name in tables (default: the method name)"},
                    "options": {"type": "object"},
                },
            },
        },
        "train_sets": {
            "type": "array",
            "description": "each a list of domain names trained on together",
            "items": {"type": "array", "minItems": 1, "items": {"type": "string"}, "uniqueItems": True},
        },
        "test_domains": {"type": "array", "minItems": 1, "items": {"type": "string"}, "uniqueItems": True},
        "splits": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "test_ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                "seeds": {"type": "array", "minItems": 1, "items": {"type": "integer"}, "uniqueItems": True},
                "use_split_column": {"type": "boolean", "description": "use a dataset's own split labels when every record has one"},
            },
        },
        "statistics": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "bootstrap": {"type": "integer", "minimum": 0, "description": "bootstrap resamples for CIs (0: none)"},
                "confidence": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                "seed": {"type": "integer"},
            },
        },
        "normalise_mos": {"enum": ["range", "zscore"], "description": "per-dataset MOS normalisation for training"},
        "acceptability": {
            "type": "object",
            "additionalProperties": False,
            "required": ["threshold"],
            "properties": {"threshold": {"type": "number", "description": "MOS below this is unacceptable (on each test dataset's own scale)"}},
        },
        "bad_input": {"enum": ["error", "skip"], "description": "bad images / labels: stop the cell, or skip and report them"},
        "weights_dir": {"type": ["string", "null"], "description": "folder of pretrained weight files"},
        "executor": {
            "type": "object",
            "additionalProperties": False,
            "description": "where cells run: local (default) or a Ray cluster (pip install 'diqa-bench[ray]')",
            "properties": {
                "type": {"enum": ["local", "ray"]},
                "address": {"type": ["string", "null"], "description": "Ray cluster address (default: start a local one)"},
                "num_cpus_per_task": {"type": "number", "exclusiveMinimum": 0},
                "num_gpus_per_task": {"type": "number", "minimum": 0},
                "memory": {"type": ["integer", "null"], "minimum": 1},
                "max_retries": {"type": "integer", "minimum": 0},
                "shard_size": {"type": ["integer", "null"], "minimum": 1, "description": "test images per scoring shard"},
            },
        },
        "output": {"type": "string", "description": "results folder (default results/<name>)"},
        "device": {"type": "string"},
        "batch_size": {"type": "integer", "minimum": 1},
        "workers": {"type": "integer", "minimum": 0},
        "decode": {"enum": ["auto", "cpu", "gpu"], "description": "where JPEGs are decoded: auto/cpu (PIL), gpu (nvJPEG, CUDA only)"},
    },
}

DEFAULTS = {
    "splits": {"test_ratio": 0.3, "seeds": [0], "use_split_column": True},
    "statistics": {"bootstrap": 1000, "confidence": 0.95, "seed": 0},
    "normalise_mos": "range",
    "bad_input": "skip",
}


@dataclass
class DatasetSpec:
    domain: str
    type: str
    name: str
    options: dict[str, Any]


@dataclass
class MethodSpec:
    name: str
    label: str
    options: dict[str, Any]


@dataclass
class Config:
    path: Path
    raw: dict[str, Any]
    name: str
    domains: dict[str, list[DatasetSpec]]
    methods: list[MethodSpec]
    train_sets: list[list[str]]
    test_domains: list[str]
    test_ratio: float
    seeds: list[int]
    use_split_column: bool
    bootstrap: int
    confidence: float
    stats_seed: int
    normalise_mos: str
    bad_input: str
    acceptability: float | None
    weights_dir: str | None
    output: str | None
    run_options: dict[str, Any] = field(default_factory=dict)
    executor: dict[str, Any] = field(default_factory=dict)


def _path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _schema_error_message(err, prefix: str = "") -> str:
    where = _path(err.absolute_path)
    if prefix:
        where = prefix if where == "(top level)" else prefix + ("" if where.startswith("[") else ".") + where
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = [k for k in err.instance if k not in allowed]
        hints = []
        for k in extra:
            close = difflib.get_close_matches(k, allowed, n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return f"{where}: unknown key {', '.join(hints)}; allowed: {', '.join(allowed)}"
    if err.validator == "required":
        return f"{where}: {err.message}"
    if err.validator == "enum":
        return f"{where}: {err.instance!r} is not allowed; use one of {', '.join(map(repr, err.validator_value))}"
    if err.validator == "type":
        want = err.validator_value
        return f"{where}: expected {want if isinstance(want, str) else ' or '.join(want)}, got {type(err.instance).__name__} {err.instance!r}"
    return f"{where}: {err.message}"


def validate_options(options: dict[str, Any], properties: dict[str, Any], required: list[str], where: str, file: str) -> None:
    """Check a method's or dataset's options against its declared ``options_schema``."""
    import jsonschema

    schema = {"type": "object", "additionalProperties": False, "properties": properties, "required": list(required)}
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(options), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        if e.validator == "additionalProperties" and not properties:
            raise ConfigError(f"{file}: {where}: unknown option(s) {', '.join(map(repr, e.instance))}; this takes no options")
        raise ConfigError(f"{file}: {_schema_error_message(e, where)}")


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{where}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys (domains, methods, test_domains, ...)")
    return data


def parse(path: str | Path, registry=None, data: dict[str, Any] | None = None) -> Config:
    """Load and validate a config. With a registry, method/dataset names and their options are
    checked too (imports no torch: classes are inspected, not instantiated)."""
    import jsonschema

    path = Path(path)
    data = load_yaml(path) if data is None else data
    file = str(path)
    errors = sorted(jsonschema.Draft7Validator(SCHEMA).iter_errors(data), key=lambda e: (len(list(e.absolute_path)), list(map(str, e.absolute_path))))
    if errors:
        raise ConfigError(f"{file}: {_schema_error_message(errors[0])}")

    domains: dict[str, list[DatasetSpec]] = {}
    seen_instances: dict[str, str] = {}
    for dom, items in data["domains"].items():
        specs = []
        for i, item in enumerate(items):
            inst = item.get("name", item["dataset"])
            if inst in seen_instances and seen_instances[inst] != dom:
                raise ConfigError(f"{file}: domains.{dom}[{i}]: dataset instance {inst!r} also appears in domain {seen_instances[inst]!r}; give one of them a different 'name'")
            if inst in (s.name for s in specs):
                raise ConfigError(f"{file}: domains.{dom}[{i}]: dataset instance {inst!r} appears twice; give one a different 'name'")
            seen_instances[inst] = dom
            specs.append(DatasetSpec(dom, item["dataset"], inst, dict(item.get("options") or {})))
        domains[dom] = specs

    def check_domain(name: str, where: str) -> None:
        if name not in domains:
            close = difflib.get_close_matches(name, list(domains), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{file}: {where}: unknown domain {name!r}.{hint} Domains declared: {', '.join(domains)}")

    train_sets = [list(t) for t in data.get("train_sets", [])]
    for i, ts in enumerate(train_sets):
        for j, d in enumerate(ts):
            check_domain(d, f"train_sets[{i}][{j}]")
    if len({tuple(sorted(t)) for t in train_sets}) != len(train_sets):
        raise ConfigError(f"{file}: train_sets: the same train set is listed twice")
    for i, d in enumerate(data["test_domains"]):
        check_domain(d, f"test_domains[{i}]")

    methods = []
    labels: set[str] = set()
    for i, m in enumerate(data["methods"]):
        label = m.get("label", m["name"])
        if label in labels:
            raise ConfigError(f"{file}: methods[{i}]: {label!r} is listed twice; give one a distinct 'label'")
        labels.add(label)
        methods.append(MethodSpec(m["name"], label, dict(m.get("options") or {})))

    if registry is not None:
        from diqa_bench.plugins import unknown_name_message

        for i, m in enumerate(methods):
            if m.name not in registry.methods:
                raise ConfigError(f"{file}: methods[{i}].name: " + unknown_name_message("method", m.name, registry.methods))
            cls = registry.methods[m.name].cls
            validate_options(m.options, cls.options_schema, cls.required_options, f"methods[{i}].options", file)
            if cls.trainable and not train_sets:
                raise ConfigError(f"{file}: methods[{i}]: {m.name!r} is trainable, but the config declares no train_sets")
        for dom, specs in domains.items():
            for j, s in enumerate(specs):
                if s.type not in registry.datasets:
                    raise ConfigError(f"{file}: domains.{dom}[{j}].dataset: " + unknown_name_message("dataset", s.type, registry.datasets))
                cls = registry.datasets[s.type].cls
                validate_options(s.options, cls.options_schema, cls.required_options, f"domains.{dom}[{j}].options", file)
        from diqa_bench.pairs import check_config

        check_config(domains, train_sets, registry, file)  # paired-preference domains are evaluation-only

    splits = {**DEFAULTS["splits"], **data.get("splits", {})}
    st = {**DEFAULTS["statistics"], **data.get("statistics", {})}
    name = data.get("name") or path.stem
    return Config(
        path=path,
        raw=data,
        name=name,
        domains=domains,
        methods=methods,
        train_sets=train_sets,
        test_domains=list(data["test_domains"]),
        test_ratio=float(splits["test_ratio"]),
        seeds=[int(s) for s in splits["seeds"]],
        use_split_column=bool(splits["use_split_column"]),
        bootstrap=int(st["bootstrap"]),
        confidence=float(st["confidence"]),
        stats_seed=int(st["seed"]),
        normalise_mos=data.get("normalise_mos", DEFAULTS["normalise_mos"]),
        bad_input=data.get("bad_input", DEFAULTS["bad_input"]),
        acceptability=(data.get("acceptability") or {}).get("threshold"),
        weights_dir=data.get("weights_dir"),
        output=data.get("output"),
        run_options={k: data[k] for k in ("device", "batch_size", "workers", "decode") if k in data},
        executor=dict(data.get("executor") or {}),
    )
