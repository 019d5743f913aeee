"""Benchmark configs: YAML files validated before any work starts.

Every error names the file, the key path (``methods[2].options.epochs``) and what is allowed.
Unknown keys are errors; unknown method or dataset names get "did you mean". The schema lives here,
in one place: it is the config reference (``diqa-bench validate --schema`` prints it).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from diqa_bench.errors import ConfigError
from diqa_bench.pairs import check_config
from diqa_bench.plugins import unknown_name_message
from diqa_bench.splits import FOLD_KEY_BASE, LEAVE_ONE_GROUP_OUT
from diqa_bench.tables import SCORE_COLUMNS

# \Z, not $: Python's $ also matches before a final newline, so "piqe\n" would pass as a name.
NAME = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.+-]*\Z"}

# Each replicate holds a weight per test image, so memory grows with bootstrap x images.
MAX_BOOTSTRAP = 10_000

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["domains", "methods", "test_domains"],
    "properties": {
        "name": {**NAME, "description": "benchmark name; default output folder results/<name>/"},
        "extends": {"type": "string", "description": "parent config (path relative to this file): its keys, with this file's top-level keys replacing them and domains merged by name; one level"},
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
                    "variants": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "object", "minProperties": 1},
                        "description": "option mappings, each a variant of the base options run as its own row name[k=v,...]; "
                        "compared with the base in ablation.csv (validation and test splits)",
                    },
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
                "protocol": {"enum": ["split", "full"], "description": "split: train/test sides (default); full: zero-shot methods scored on every image, no training side"},
                "validation": {"type": "number", "minimum": 0, "exclusiveMaximum": 1,
                               "description": "share of each dataset's train content groups held out per seed to compare variants "
                                              "(default 0.2 when a method declares variants, else 0: off)"},
                "folds": {"type": ["integer", "string"],
                          "description": "cross-validation: K (group-aware K-fold, repeated over the seeds) or leave-one-group-out; every image is tested once per seed"},
            },
        },
        "statistics": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "bootstrap": {"type": "integer", "minimum": 0, "maximum": MAX_BOOTSTRAP, "description": "bootstrap resamples for CIs (0: none)"},
                "confidence": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                "seed": {"type": "integer"},
                "adjust": {"enum": ["holm", "bh", "none"],
                           "description": "multiplicity adjustment of each table's family of comparisons: holm (default), bh (Benjamini-Hochberg) or none"},
                "extra": {"type": "array", "uniqueItems": True, "items": {"type": "string"},
                          "description": "statistics registered by plugins to compute besides the built-in ones (diqa-bench plugins lists them)"},
            },
        },
        "strata": {"type": "array", "uniqueItems": True, "items": {"type": "string"},
                   "description": "per-image attributes to break each test domain's statistics out by (strata.csv, a table per domain)"},
        "normalise_mos": {"enum": ["range", "zscore"], "description": "per-dataset MOS normalisation for training"},
        "acceptability": {
            "type": "object",
            "additionalProperties": False,
            "required": ["threshold"],
            "properties": {"threshold": {"type": "number", "description": "MOS below this is unacceptable (on each test dataset's own scale)"}},
        },
        "deploy": {
            "description": "also fit one deployable model per trainable method and train set on ALL its content (models/<method>@<train>/deploy/), "
                           "its cut chosen by K-fold cross-validation over content groups; true (5 folds) or {folds: K}. Needs acceptability",
            "oneOf": [{"type": "boolean"},
                      {"type": "object", "additionalProperties": False,
                       "properties": {"folds": {"type": "integer", "minimum": 2, "maximum": 50, "description": "folds of content groups (default 5)"}}}],
        },
        "bad_input": {"enum": ["error", "skip"], "description": "bad images / labels: stop the cell, or skip and report them"},
        "weights_dir": {"type": ["string", "null"], "description": "folder of pretrained weight files"},
        "executor": {
            "type": "object",
            "description": "where cells run: type (a registered executor: local, the default, or ray: pip install 'diqa-bench[ray]', or a plugin's) and that executor's own keys",
            "properties": {"type": {"type": "string"}},
        },
        "output": {"type": "string", "description": "results folder (default results/<name>)"},
        "device": {"type": "string"},
        "batch_size": {"type": "integer", "minimum": 1},
        "workers": {"type": "integer", "minimum": 0},
        "decode": {"enum": ["auto", "cpu", "gpu"], "description": "where JPEGs are decoded: auto/cpu (PIL), gpu (nvJPEG, CUDA only)"},
        "max_image_pixels": {"type": "integer", "minimum": 1, "description": "larger images are bad input, checked before decoding (default 40000000)"},
    },
}

DEFAULTS = {
    "splits": {"test_ratio": 0.3, "seeds": [0], "use_split_column": True, "protocol": "split"},
    "statistics": {"bootstrap": 1000, "confidence": 0.95, "seed": 0, "adjust": "holm"},
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
    base: str | None = None  # a variant row: the label of the row it varies
    variant: dict[str, Any] | None = None  # a variant row: the options it changes


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
    protocol: str = "split"  # "full": every image is a test image (zero-shot only)
    validation: float = 0.0  # share of train groups held out for the validation phase (0: none)
    adjust: str = "holm"  # multiplicity adjustment of each table's family of comparisons (stats.adjust_p)
    folds: int | str | None = None  # cross-validation: K or "leave-one-group-out" (splits.fold_test_groups); None: test_ratio splits
    statistics_extra: list[str] = field(default_factory=list)  # plugin statistics the run computes besides the built-in ones
    deploy_folds: int = 0  # deploy: folds of the cross-validation that chooses a deployable model's cut (0: no deployable models)


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
    if err.validator == "type" and isinstance(err.instance, float) and not math.isfinite(err.instance):
        return f"{where}: {err.instance} is not allowed; expected a finite number"
    if err.validator == "type":
        want = err.validator_value
        return f"{where}: expected {want if isinstance(want, str) else ' or '.join(want)}, got {type(err.instance).__name__} {err.instance!r}"
    return f"{where}: {err.message}"


def _validator(schema: dict[str, Any]):
    """A Draft 7 validator whose "number" is finite: NaN passes every numeric bound (each comparison
    with it is false) and YAML reads ``.nan`` and ``.inf`` as floats, so a bound alone lets them in."""
    import math

    import jsonschema

    global _FINITE_VALIDATOR
    if _FINITE_VALIDATOR is None:
        base = jsonschema.Draft7Validator
        checker = base.TYPE_CHECKER.redefine(
            "number", lambda chk, x: base.TYPE_CHECKER.is_type(x, "number") and (not isinstance(x, float) or math.isfinite(x)))
        _FINITE_VALIDATOR = jsonschema.validators.extend(base, type_checker=checker)
    return _FINITE_VALIDATOR(schema)


_FINITE_VALIDATOR = None


def validate_options(options: dict[str, Any], properties: dict[str, Any], required: list[str], where: str, file: str) -> None:
    """Check a method's or dataset's options against its declared ``options_schema``."""
    if not options and not required:
        return  # nothing to check, and jsonschema's import costs a one-image ``score`` a tenth of its time
    schema = {"type": "object", "additionalProperties": False, "properties": properties, "required": list(required)}
    errors = sorted(_validator(schema).iter_errors(options), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        if e.validator == "additionalProperties" and not properties:
            raise ConfigError(f"{file}: {where}: unknown option(s) {', '.join(map(repr, e.instance))}; this takes no options")
        raise ConfigError(f"{file}: {_schema_error_message(e, where)}")


# A config is a few kilobytes. These limits stop a hostile or broken file before it costs memory:
# YAML aliases share one object, so nine levels of ten aliases load as a small graph that expands to
# 10^9 nodes when anything walks it (schema validation, error messages, hashing, json).
MAX_YAML_BYTES = 1 << 20
MAX_YAML_NODES = 100_000  # counted with every alias expanded
MAX_YAML_DEPTH = 64


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (YAML says they are an error; PyYAML keeps
    the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue  # SafeLoader reports unhashable keys itself
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key].line + 1})", key_node.start_mark
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep)


def _check_node_graph(root) -> None:
    """Raise ValueError when the composed YAML, with aliases expanded, is too large or too deep."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, depth)
    stack = [(root, False)]
    on_path: set[int] = set()
    while stack:
        node, done = stack.pop()
        nid = id(node)
        if nid in sizes and not done:
            continue
        children = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if not done:
            if nid in on_path:
                raise ValueError("a recursive alias")
            on_path.add(nid)
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            if len(on_path) > MAX_YAML_DEPTH:
                raise ValueError(f"nested more than {MAX_YAML_DEPTH} levels deep")
            continue
        on_path.discard(nid)
        total = 1 + sum(sizes[id(c)][0] for c in children)
        depth = 1 + max((sizes[id(c)][1] for c in children), default=0)
        if total > MAX_YAML_NODES:
            raise ValueError(f"expands to more than {MAX_YAML_NODES} values (aliases counted in full)")
        if depth > MAX_YAML_DEPTH:
            raise ValueError(f"nested more than {MAX_YAML_DEPTH} levels deep")
        sizes[nid] = (min(total, MAX_YAML_NODES + 1), depth)


def safe_yaml(text: str) -> Any:
    """Parse YAML text with unique keys and the limits above; YAML errors propagate as yaml.YAMLError,
    limits as ValueError."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_YAML_BYTES:
        raise ValueError(f"larger than {MAX_YAML_BYTES // 1024} KiB")
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_node_graph(node)
        return loader.construct_document(node)
    except RecursionError:
        raise ValueError(f"nested more than {MAX_YAML_DEPTH} levels deep") from None
    finally:
        loader.dispose()


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise ConfigError(f"{path}: too large for a config ({path.stat().st_size} bytes; at most {MAX_YAML_BYTES // 1024} KiB)")
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); save the config as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = safe_yaml(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: refused: the YAML {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{where}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys (domains, methods, test_domains, ...)")
    return data


def resolve_extends(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """A config with ``extends: PARENT`` as the parent's keys, each top-level key of this file
    replacing the parent's, ``domains`` merged by domain name (this file's list of datasets wins).
    One level only, so two configs can never form a cycle. The result keeps ``extends`` as
    written: run.json then records both where the config came from and what it resolved to."""
    ref = data.get("extends")
    if ref is None:
        return data
    if not isinstance(ref, str) or not ref.strip():
        raise ConfigError(f"{path}: extends: expected the path of a parent config, got {ref!r}")
    parent_path = path.parent / ref
    if parent_path.resolve() == path.resolve():
        raise ConfigError(f"{path}: extends: the config extends itself")
    parent = load_yaml(parent_path)
    if "extends" in parent:
        kind = "a cycle" if (parent_path.parent / str(parent["extends"])).resolve() == path.resolve() else "more than one level"
        raise ConfigError(f"{path}: extends: {ref} itself extends {parent['extends']!r} ({kind}); extend a config that has no 'extends'")
    merged = {**parent, **{k: v for k, v in data.items() if k != "domains"}}
    if isinstance(parent.get("domains"), dict) and isinstance(data.get("domains"), dict):
        merged["domains"] = {**parent["domains"], **data["domains"]}
    elif "domains" in data:
        merged["domains"] = data["domains"]
    return merged


def parse(path: str | Path, registry=None, data: dict[str, Any] | None = None) -> Config:
    """Load and validate a config. With a registry, method/dataset names and their options are
    checked too (imports no torch: classes are inspected, not instantiated)."""
    path = Path(path)
    data = resolve_extends(path, load_yaml(path) if data is None else data)
    file = str(path)
    errors = sorted(_validator(SCHEMA).iter_errors(data), key=lambda e: (len(list(e.absolute_path)), list(map(str, e.absolute_path))))
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
        base = MethodSpec(m["name"], label, dict(m.get("options") or {}))
        methods.append(base)
        for j, variant in enumerate(m.get("variants") or []):
            row = variant_spec(base, variant, f"{file}: methods[{i}].variants[{j}]")
            if row.label in labels:
                raise ConfigError(f"{file}: methods[{i}].variants[{j}]: {row.label!r} is listed twice; each variant must differ")
            labels.add(row.label)
            methods.append(row)

    if registry is not None:
        for i, m in enumerate([spec for spec in methods if not spec.base]):  # the config's entries; variant rows below
            if m.name not in registry.methods:
                raise ConfigError(f"{file}: methods[{i}].name: " + unknown_name_message("method", m.name, registry.methods))
            cls = registry.methods[m.name].cls
            if getattr(cls, "unusable", None):
                raise ConfigError(f"{file}: methods[{i}].name: {cls.unusable}")
            validate_options(m.options, cls.options_schema, cls.required_options, f"methods[{i}].options", file)
            for j, variant in enumerate(data["methods"][i].get("variants") or []):  # as options: "unknown key ... did you mean"
                validate_options(variant, cls.options_schema, [], f"methods[{i}].variants[{j}]", file)
            if cls.trainable and not train_sets:
                raise ConfigError(f"{file}: methods[{i}]: {m.name!r} is trainable, but the config declares no train_sets")
        for dom, specs in domains.items():
            for j, s in enumerate(specs):
                if s.type not in registry.datasets:
                    raise ConfigError(f"{file}: domains.{dom}[{j}].dataset: " + unknown_name_message("dataset", s.type, registry.datasets))
                cls = registry.datasets[s.type].cls
                validate_options(s.options, cls.options_schema, cls.required_options, f"domains.{dom}[{j}].options", file)
        for i, name in enumerate((data.get("statistics") or {}).get("extra") or []):
            if name not in registry.statistics:
                raise ConfigError(f"{file}: statistics.extra[{i}]: " + unknown_name_message("statistic", name, registry.statistics))
        executor = dict(data.get("executor") or {})
        kind = executor.pop("type", "local")
        if kind not in registry.executors:
            raise ConfigError(f"{file}: executor.type: " + unknown_name_message("executor", kind, registry.executors))
        validate_options(executor, registry.executors[kind].cls.options_schema, [], "executor", file)
        check_config(domains, train_sets, registry, file)  # paired-preference domains are evaluation-only

    splits = {**DEFAULTS["splits"], **data.get("splits", {})}
    if splits["protocol"] == "full" and train_sets:
        raise ConfigError(f"{file}: splits.protocol: 'full' scores every image of each test domain, so nothing is left to train on; remove train_sets (zero-shot methods only) or use protocol 'split'")
    validation = float(splits.get("validation", VARIANT_VALIDATION if any(m.base for m in methods) else 0.0))
    folds = _folds(splits.get("folds"), splits["protocol"], data, file)
    if folds is not None and validation > 0:
        raise ConfigError(f"{file}: splits.folds and a validation phase (splits.validation, or variants) cannot be combined yet; "
                          "compare variants with test_ratio splits, or set splits.validation: 0")
    # a stratum is a built-in column or a metadata column some dataset of the run declares
    declared = ["distortion", "level", "reference_kind", "dataset"] + sorted({c for specs in domains.values() for s in specs
                                                                           for c in s.options.get("metadata_columns") or []})
    clash = []
    if declared[4:]:  # metadata columns declared: none may be named like a built-in one
        clash = sorted(set(declared[4:]) & set(SCORE_COLUMNS + declared[:4]))
    if clash:  # scores.csv already has that column: the attribute would be lost
        raise ConfigError(f"{file}: metadata_columns: {', '.join(map(repr, clash))} is a built-in column of scores.csv or strata; "
                          "rename it in the ratings file")
    for i, column in enumerate(data.get("strata") or []):
        if column not in declared:
            raise ConfigError(f"{file}: strata[{i}]: {column!r} is neither a built-in column nor a dataset's metadata_columns; "
                              f"known: {', '.join(declared)}")
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
        run_options={k: data[k] for k in ("device", "batch_size", "workers", "decode", "max_image_pixels") if k in data},
        executor=dict(data.get("executor") or {}),
        protocol=str(splits["protocol"]),
        validation=0.0 if splits["protocol"] == "full" else validation,
        adjust=str(st["adjust"]),
        folds=folds,
        statistics_extra=list(st.get("extra") or []),
        deploy_folds=_deploy_folds(data, train_sets, file),
    )


# -- variants --------------------------------------------------------------------------------------
VARIANT_VALIDATION = 0.2  # splits.validation when a method declares variants and the config says nothing


def option_text(value: Any) -> str:
    """An option value as a YAML scalar (``l1``, ``0.5``, ``true``, ``null``); lists and mappings
    in YAML flow style with sorted keys."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=True, width=1 << 20).strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


def variant_label(label: str, variant: dict[str, Any]) -> str:
    """The row name of a variant: ``label[k=v,k2=v2]``, keys sorted."""
    return f"{label}[{','.join(f'{k}={option_text(variant[k])}' for k in sorted(variant))}]"


def variant_spec(base: MethodSpec, variant: dict[str, Any], where: str) -> MethodSpec:
    """The method row of one variant of ``base``: its options are the base's with the variant's on top."""
    variant = dict(variant)
    if all(k in base.options and base.options[k] == v for k, v in variant.items()):
        raise ConfigError(f"{where}: {variant_label(base.label, variant)!r} has the base options of {base.label!r}; a variant must change one")
    return MethodSpec(base.name, variant_label(base.label, variant), {**base.options, **variant}, base=base.label, variant=variant)



DEPLOY_FOLDS = 5  # deploy: true


def _deploy_folds(data: dict[str, Any], train_sets, file) -> int:
    """The ``deploy`` key checked: 0 (off), or the number of cross-validation folds."""
    value = data.get("deploy", False)
    if value is False or value is None:
        return 0
    folds = DEPLOY_FOLDS if value is True else int(value.get("folds", DEPLOY_FOLDS))
    if data.get("acceptability") is None:
        raise ConfigError(f"{file}: deploy: a deployable model needs the acceptability threshold its cut is chosen for; add acceptability: {{threshold: ...}}")
    if not train_sets:
        raise ConfigError(f"{file}: deploy: the config declares no train_sets, so there is no train content to fit or choose a cut on")
    return folds


def _folds(folds, protocol: str, data: dict[str, Any], file) -> int | str | None:
    """splits.folds checked: an integer K >= 2 or leave-one-group-out, and only where it applies."""
    if folds is None:
        return None
    if folds != LEAVE_ONE_GROUP_OUT and not (isinstance(folds, int) and not isinstance(folds, bool) and 2 <= folds < FOLD_KEY_BASE):
        raise ConfigError(f"{file}: splits.folds: {folds!r} is not allowed; use an integer K from 2 to {FOLD_KEY_BASE - 1} or {LEAVE_ONE_GROUP_OUT!r}")
    if protocol == "full":
        raise ConfigError(f"{file}: splits.folds: cross-validation needs protocol 'split' (full scores every image with no training side)")
    if data.get("acceptability") is not None:
        raise ConfigError(f"{file}: splits.folds: acceptability is not supported with cross-validation yet (each fold would choose its own "
                          "score threshold); remove one of them")
    return folds
