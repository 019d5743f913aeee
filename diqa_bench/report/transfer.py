"""The transfer table: does training on more domains help a method on a given test domain?

For every trainable method and test domain, from the stored per-image scores:
- each mixed-domain train set (two or more domains) against each single-domain one
  ("mixed vs single");
- each single-domain train set against the in-domain one, the test domain itself ("transfer
  loss": how much is lost by training elsewhere).
``value`` = statistic(train) - statistic(reference_train): mean over the split seeds both were
scored on of the per-seed difference on the same test images, with a paired content-group
bootstrap interval (:func:`diqa_bench.stats.paired_delta`) and a verdict in words: better, worse,
or no detectable difference at the run's confidence. A test domain with too little data keeps its
rows, with the warning in the ``warning`` column.

Multiplicity: the rows of one test domain and statistic are one family (e.g. the SROCC verdicts
on skin); ``p_value`` is the raw bootstrap p, ``p_adjusted`` the p adjusted within the family
(the run's ``statistics.adjust``: Holm by default, :func:`diqa_bench.stats.adjust_p`), and the
verdict is better / worse only when both the interval excludes 0 and the adjusted p is below
1 - confidence (:func:`diqa_bench.stats.adjusted_verdict`). :func:`adjust_table` does this for
any table with these columns.

Which statistics are compared depends on the test domain's kind (``run.json`` domains[].kind,
default "mos"): :data:`KIND_STATISTICS` is the extension point for other kinds of test data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from diqa_bench.files import atomic_write, frame_csv, json_rows, read_csv
from diqa_bench import stats
from diqa_bench.report.significance import domain_warning
from diqa_bench.report.stored import StoredRun, load_run, paired_samples

COLUMNS = ["method", "test", "train", "reference_train", "statistic", "value", "ci_low", "ci_high", "n_images", "n_groups", "seeds", "verdict",
           "comparison", "p_value", "train_value", "reference_value", "warning", "p_adjusted", "adjust", "family_size"]
KIND_STATISTICS: dict[str, tuple[str, ...]] = {"mos": ("SROCC", "PLCC")}
MIXED, LOSS = "mixed vs single", "transfer loss"


def _train_domains(run: StoredRun) -> dict[str, tuple[str, ...]]:
    """Train-set label -> its domains (from the config, else by splitting the label on '+')."""
    declared = run.run_info.get("config", {}).get("train_sets") or []
    out = {"+".join(ts): tuple(ts) for ts in declared if isinstance(ts, (list, tuple))}
    for label in set(run.metrics["train"]) if len(run.metrics) else ():
        if label != "-" and label not in out:
            out[label] = tuple(str(label).split("+"))
    return out


def comparisons(trains: list[str], test: str, domains: dict[str, tuple[str, ...]]) -> list[tuple[str, str, str]]:
    """(train, reference_train, comparison) pairs for one method on one test domain."""
    single = [t for t in trains if len(domains.get(t, (t,))) == 1]
    mixed = [t for t in trains if len(domains.get(t, (t,))) > 1]
    out = [(m, s, MIXED) for m in mixed for s in single]
    in_domain = [t for t in single if domains.get(t, (t,)) == (test,)]
    if in_domain:
        out += [(s, in_domain[0], LOSS) for s in single if s != in_domain[0]]
    return out


def adjust_table(table, adjust: str, confidence: float, family: tuple[str, ...] = ("test", "statistic")):
    """Fill ``p_adjusted``, ``adjust`` and ``family_size`` of a table of paired differences
    (columns ``p_value``, ``ci_low``, ``ci_high``, ``verdict``), adjusting within each family (the
    rows sharing the ``family`` columns), and recompute ``verdict`` from the adjusted p. Returns
    the table."""
    if not len(table):
        return table
    labels = table[list(family)].astype(str).agg("\0".join, axis=1)
    table["p_adjusted"], table["family_size"] = stats.adjust_families(table["p_value"], labels, adjust)
    table["adjust"] = adjust
    table["verdict"] = [stats.adjusted_verdict(lo, hi, p, confidence) for lo, hi, p in zip(table["ci_low"], table["ci_high"], table["p_adjusted"])]
    return table


def transfer(folder_or_run: Path | StoredRun, bootstrap: int | None = None, confidence: float | None = None, seed: int | None = None,
             adjust: str | None = None):
    """The transfer table as a DataFrame with :data:`COLUMNS` (empty when no method was trained
    on two or more train sets), verdicts adjusted for multiplicity (see the module docstring)."""
    import pandas as pd

    run = folder_or_run if isinstance(folder_or_run, StoredRun) else load_run(folder_or_run)
    bootstrap, confidence, seed = run.bootstrap_settings(bootstrap, confidence, seed)
    adjust = run.adjustment(adjust)
    cells = run.cells()
    domains = _train_domains(run)
    rows = []
    for test in run.test_domains():
        kind = run.run_info.get("domains", {}).get(test, {}).get("kind", "mos")
        names = KIND_STATISTICS.get(kind, ())
        warning = None
        entries: dict[str, list[str]] = {}
        for method, train, t, _ in cells:
            if t == test and train != "-" and train not in entries.setdefault(method, []):
                entries[method].append(train)
        for method, trains in entries.items():
            for train, ref, what in comparisons(trains, test, domains):
                found = paired_deltas(cells, (method, ref), (method, train), test, names, bootstrap, confidence, seed, run.shared_draws)
                if not found:
                    continue
                if warning is None:
                    warning = domain_warning(run, test)
                for name, d, value, ref_value in found:
                    rows.append(dict(method=method, test=test, train=train, reference_train=ref, statistic=name, value=d.value,
                                     ci_low=d.ci[0], ci_high=d.ci[1], n_images=int(round(d.n_images)), n_groups=int(round(d.n_groups)),
                                     seeds=" ".join(map(str, d.seeds)), verdict=d.verdict, comparison=what, p_value=d.p_value,
                                     train_value=value, reference_value=ref_value, warning=warning))
    return adjust_table(pd.DataFrame(rows, columns=COLUMNS), adjust, confidence)


def paired_deltas(cells: dict, reference: tuple[str, str], entry: tuple[str, str], test: str, names, bootstrap: int, confidence: float,
                  seed: int, shared_draws: bool = False) -> list[tuple[str, "stats.PairedDelta", float, float]]:
    """Statistic(entry) - statistic(reference) on one test domain, both (method, train) rows of a
    stored run's ``cells``, over the split seeds both were scored on, on the images both scored:
    per statistic of ``names``, (name, paired content-group bootstrap delta, entry's and
    reference's mean over those seeds). Empty when the two share no scored seed."""
    seeds = sorted({k[3] for k in cells if k[:3] == (*entry, test)} & {k[3] for k in cells if k[:3] == (*reference, test)}, key=_seed_order)
    pairs = {s: p for s in seeds if (p := paired_samples(cells[(*reference, test, s)], cells[(*entry, test, s)])) is not None}
    if not pairs:
        return []
    out = []
    for name in names:
        d = stats.paired_delta(pairs, name, bootstrap=bootstrap, confidence=confidence, stats_seed=seed, shared_draws=shared_draws)
        a = [float(stats.statistic(name, p[1])[0]) for p in pairs.values()]
        r = [float(stats.statistic(name, p[0])[0]) for p in pairs.values()]
        out.append((name, d, _mean(a), _mean(r)))
    return out


def _mean(values: list[float]) -> float:
    v = [x for x in values if np.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def _seed_order(s: str):
    return (0, int(s), s) if str(s).lstrip("-").isdigit() else (1, 0, str(s))


def write_transfer(folder: Path, table) -> list[Path]:
    """transfer.csv and transfer.json (seeds as a list, NaN as null), atomically."""
    return write_delta_table(folder, "transfer", table)


def write_delta_table(folder: Path, name: str, table) -> list[Path]:
    """``name``.csv and ``name``.json of a table of paired deltas (the transfer and ablation tables):
    the CSV neutralised as every CSV this project writes, the JSON with seeds as a list and NaN as
    null; both written atomically."""
    folder = Path(folder)
    atomic_write(folder / f"{name}.csv", frame_csv(table))
    rows = json_rows(table)
    for r in rows:
        r["seeds"] = [int(s) if s.lstrip("-").isdigit() else s for s in str(r["seeds"] or "").split()]
    atomic_write(folder / f"{name}.json", json.dumps(rows, indent=1))
    return [folder / f"{name}.csv", folder / f"{name}.json"]


def read_transfer(folder: Path):
    """The stored transfer table, or None when the folder has none."""

    path = Path(folder) / "transfer.csv"
    if not path.is_file():
        return None
    return read_csv(path, dtype={"method": str, "test": str, "train": str, "reference_train": str, "seeds": str, "warning": str},
                       keep_default_na=False, na_values={c: [""] for c in ("value", "ci_low", "ci_high", "p_value", "train_value", "reference_value", "p_adjusted")})
