"""Comparing two stored runs: what changed, by how much, and whether the change is significant.

Per method x train set x test domain x statistic: delta = B - A with a bootstrap CI, over the
split seeds both runs have (seeds only one run has are left out, with a warning naming them), so
value_a, value_b and delta all describe the same seeds.
- Paired (``mode = "paired"``): when the runs scored the same images (same dataset and image id in
  the same split seed), every replicate draws the same content groups for both runs within each
  seed (:func:`diqa_bench.stats.paired_delta`); the delta is the mean over shared seeds of the
  statistic on the common images. This is the sensitive test of "did my change help on the same
  data".
- Independent (``mode = "independent"``): no images in common; the delta is the difference of the
  means over the shared seeds (or each run's own seeds when none is shared), and its CI comes from
  independent content-group bootstraps of the two runs.
The logistic mapping behind PLCC and RMSE is fitted once per run and seed on all its images, as
in :func:`diqa_bench.stats.evaluate`. Warnings say when the runs are not like for like.
Statistics: every registered statistic (the built-in ones, and a plugin's while its plugin is
loaded) that both runs stored and that is not marked ``compare=False``, in registration order.
Quality gate: when both runs stored acceptability statistics for an entry, AUC, ACC and RETAKE
get the same treatment, from the same group draws as the correlations. Each
side is judged at the cut its own run chose on its train split for that seed (stored THRESHOLD,
held fixed in every replicate), so two models' gates are compared each at its own operating point;
the unacceptable images are each run's own (its threshold on the MOS; a different one is warned).
``compare_transfer`` puts the two runs' transfer tables (verdicts) side by side.
Multiplicity: the rows of one test domain and statistic are one family (e.g. every entry's SROCC
change on skin); ``p_value`` is the raw bootstrap p, ``p_adjusted`` the p adjusted within the
family (run A's ``statistics.adjust`` unless given: Holm by default), and ``significant`` needs
both the interval to exclude 0 and the adjusted p below 1 - confidence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from diqa_bench import stats
from diqa_bench.report.significance import domain_warning
from diqa_bench.report.stored import Cell, StoredRun, load_run, paired_samples
from diqa_bench.report.transfer import read_transfer

LITTLE_DATA = "⚠"

COLUMNS = ["method", "train", "test", "statistic", "value_a", "value_b", "delta", "ci_low", "ci_high", "p_value", "significant", "mode", "n",
           "groups", "seeds", "p_adjusted", "adjust", "family_size", "warning"]
TRANSFER_COLUMNS = ["method", "test", "train", "reference_train", "statistic", "value_a", "value_b", "verdict_a", "verdict_b", "changed"]


def _independent(cells_a: list[tuple[str, Cell]], cells_b: list[tuple[str, Cell]], name: str, bootstrap: int, seed: int,
                 shared: tuple[bool, bool] = (False, False)) -> np.ndarray:
    """Replicates of mean_B - mean_A from independent content-group bootstraps of each run
    (``shared``: per run, whether its seeds share their draws, as cross-validation repetitions do)."""
    means = []
    for i, cells in enumerate((cells_a, cells_b)):
        reps = []
        for split_seed, c in cells:
            sample = c.sample()
            rng = stats.seed_rng(seed, stats.draw_seed(split_seed, shared[i]), i + 1)  # a stream of its own per run: independent draws
            reps.append(stats.statistic(name, sample, stats.group_weights(sample.codes, bootstrap, rng)))
        means.append(stats.seed_mean(reps))
    return means[1] - means[0]


def _compared(run_a: StoredRun, run_b: StoredRun, warnings: list[str]) -> tuple[list[str], list[str]]:
    """(statistics, acceptability statistics) to compare: registered, ``compare`` set, and stored by
    both runs; a statistic both stored whose plugin is not loaded here is named in a warning."""
    table = stats.statistics_table()
    stored = set(run_a.metrics["statistic"]) & set(run_b.metrics["statistic"]) if len(run_a.metrics) and len(run_b.metrics) else set()
    from diqa_bench.leaderboard import statistic_facts  # lazy: loads tabulate

    facts = {**statistic_facts(run_b.run_info), **statistic_facts(run_a.run_info)}
    missing = sorted(n for n in stored if n in facts and n not in table)
    if missing:
        named = ", ".join(f"{n} (plugin {facts[n].get('plugin')!r})" for n in missing)
        warnings.append(f"not compared: {named}: registered by a plugin that is not loaded here")
    names = [n for n, spec in table.items() if spec.compare and n in stored]
    return [n for n in names if not table[n].needs_acceptability], [n for n in names if table[n].needs_acceptability]


def compare_runs(dir_a: Path, dir_b: Path, bootstrap: int | None = None, confidence: float | None = None, adjust: str | None = None):
    """(DataFrame with COLUMNS, warnings) comparing run B against run A (delta = B - A),
    significance adjusted for multiplicity (see the module docstring)."""
    import pandas as pd

    run_a, run_b = load_run(Path(dir_a)), load_run(Path(dir_b))
    warnings = compatibility_warnings(run_a, run_b)
    bootstrap, confidence, seed = run_a.bootstrap_settings(bootstrap, confidence)
    adjust = run_a.adjustment(adjust)
    cells_a, cells_b = run_a.cells(), run_b.cells()
    seeded_a, seeded_b = _per_seed(run_a), _per_seed(run_b)
    compared, gate_compared = _compared(run_a, run_b, warnings)
    small: dict[str, str] = {}  # test domain -> the too-little-data warning of either run

    entries_a = {k[:3] for k in cells_a}
    entries_b = {k[:3] for k in cells_b}
    only_a, only_b = sorted(entries_a - entries_b), sorted(entries_b - entries_a)
    if only_a:
        warnings.append(f"{len(only_a)} method x train x test entries only in A (not compared), e.g. {' @ '.join(only_a[0][:2])} -> {only_a[0][2]}")
    if only_b:
        warnings.append(f"{len(only_b)} method x train x test entries only in B (not compared), e.g. {' @ '.join(only_b[0][:2])} -> {only_b[0][2]}")

    rows = []
    seeds_only_a, seeds_only_b = set(), set()
    for method, train, test in sorted(entries_a & entries_b):
        seeds_a = sorted(k[3] for k in cells_a if k[:3] == (method, train, test))
        seeds_b = sorted(k[3] for k in cells_b if k[:3] == (method, train, test))
        shared = [s for s in seeds_a if s in seeds_b]
        seeds_only_a.update(s for s in seeds_a if s not in shared)
        seeds_only_b.update(s for s in seeds_b if s not in shared)
        pairs = {s: p for s in shared if (p := paired_samples(cells_a[(method, train, test, s)], cells_b[(method, train, test, s)])) is not None}
        used_a, used_b = (shared, shared) if shared else (seeds_a, seeds_b)
        gated = [stat for stat in gate_compared if _gated(run_a, cells_a, (method, train, test), used_a, stat, seeded_a)
                 and _gated(run_b, cells_b, (method, train, test), used_b, stat, seeded_b)]
        for stat in compared + gated:
            va = _mean([seeded_a.get((method, train, test, s, stat)) for s in used_a])
            vb = _mean([seeded_b.get((method, train, test, s, stat)) for s in used_b])
            if pairs:
                d = stats.paired_delta(pairs, stat, bootstrap=bootstrap, confidence=confidence, stats_seed=seed,
                                       shared_draws=run_a.shared_draws and run_b.shared_draws)
                delta, samples, mode, n, groups = d.value, d.replicates, "paired", int(round(d.n_images)), int(round(d.n_groups))
            else:
                samples = _independent([(s, cells_a[(method, train, test, s)]) for s in used_a],
                                       [(s, cells_b[(method, train, test, s)]) for s in used_b], stat, bootstrap, seed,
                                       (run_a.shared_draws, run_b.shared_draws))
                delta, mode, n, groups = vb - va, "independent", 0, 0
            lo, hi = stats.quantile_ci(samples, confidence)
            if test not in small:
                small[test] = domain_warning(run_a, test) or domain_warning(run_b, test)
            rows.append(dict(method=method, train=train, test=test, statistic=stat, value_a=va, value_b=vb, delta=delta, ci_low=lo, ci_high=hi,
                             p_value=stats.two_sided_p(samples), significant=bool(lo > 0 or hi < 0), mode=mode, n=n, groups=groups,
                             seeds=" ".join(used_a if used_a == used_b else used_a + ["|"] + used_b), warning=small[test]))
    if seeds_only_a or seeds_only_b:
        parts = ([f"only in A: seed {', '.join(sorted(seeds_only_a))}"] if seeds_only_a else []) + \
                ([f"only in B: seed {', '.join(sorted(seeds_only_b))}"] if seeds_only_b else [])
        warnings.append(f"split seeds differ ({'; '.join(parts)}): A, B and the change are compared over the seeds both runs have")
    df = pd.DataFrame(rows, columns=COLUMNS)
    if len(df):
        df["p_adjusted"], df["family_size"] = stats.adjust_families(df["p_value"], df["test"] + "\0" + df["statistic"], adjust)
        df["adjust"] = adjust
        df["significant"] = [stats.adjusted_verdict(lo, hi, p, confidence) in ("better", "worse")
                             for lo, hi, p in zip(df["ci_low"], df["ci_high"], df["p_adjusted"])]
    return df, warnings


def _gated(run: StoredRun, cells: dict, entry: tuple[str, str, str], seeds: list[str], stat: str, seeded: dict) -> bool:
    """Whether the run stored ``stat`` (a gate statistic) for the entry in each of these seeds and
    knows which of its images are unacceptable."""
    return run.protocol.get("acceptability") is not None and bool(seeds) and all(
        cells[(*entry, s)].bad is not None and (*entry, s, stat) in seeded for s in seeds)


def _mean(values) -> float:
    v = [x for x in values if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def _per_seed(run: StoredRun) -> dict[tuple[str, str, str, str, str], float]:
    m = run.metrics[run.metrics["seed"].astype(str) != "all"]
    return {(r.method, r.train, r.test, str(r.seed), r.statistic): float(r.value) for r in m.itertuples(index=False)}


def compare_transfer(dir_a: Path, dir_b: Path):
    """The transfer tables of both runs side by side (rows in both), with ``changed`` where the
    verdict differs; None when either run has no transfer table."""
    import pandas as pd

    a, b = read_transfer(Path(dir_a)), read_transfer(Path(dir_b))
    if a is None or b is None:
        return None
    keys = ["method", "test", "train", "reference_train", "statistic"]
    merged = a[keys + ["value", "verdict"]].merge(b[keys + ["value", "verdict"]], on=keys, suffixes=("_a", "_b"))
    merged["changed"] = merged["verdict_a"] != merged["verdict_b"]
    return pd.DataFrame(merged, columns=TRANSFER_COLUMNS)


def compatibility_warnings(run_a: StoredRun, run_b: StoredRun) -> list[str]:
    """What differs between the two runs besides the thing being compared."""
    a, b = run_a.run_info, run_b.run_info
    out = []
    if a.get("config_hash") != b.get("config_hash"):
        changes = config_differences(a.get("config") or {}, b.get("config") or {})
        shown = "; ".join(changes[:8]) + (f"; and {len(changes) - 8} more" if len(changes) > 8 else "")
        out.append(f"config differs: hash {a.get('config_hash')} vs {b.get('config_hash')} ({a.get('config_path')} vs {b.get('config_path')})"
                   + (f": {shown}" if shown else ""))
    hashes_a, hashes_b = _data_hashes(a), _data_hashes(b)
    for name in sorted(set(hashes_a) | set(hashes_b)):
        ha, hb = hashes_a.get(name), hashes_b.get(name)
        if ha != hb:
            out.append(f"data differs: dataset {name} content hash {ha or 'absent'} vs {hb or 'absent'}")
    env_a, env_b = a.get("environment", {}), b.get("environment", {})
    for key in ("diqa_bench", "torch", "pyiqa"):
        if env_a.get(key) != env_b.get(key):
            out.append(f"versions differ: {key} {env_a.get(key)} vs {env_b.get(key)}")
    gate_a, gate_b = run_a.protocol.get("acceptability"), run_b.protocol.get("acceptability")
    if gate_a is not None and gate_b is not None and gate_a != gate_b:
        out.append(f"acceptability differs: MOS threshold {gate_a} vs {gate_b}, so the quality gates are judged on different unacceptable images")
    commit_a, commit_b = (env_a.get("git") or {}).get("commit"), (env_b.get("git") or {}).get("commit")
    if commit_a != commit_b:
        out.append(f"code differs: git commit {str(commit_a)[:12]} vs {str(commit_b)[:12]}")
    for key in ("machine", "device", "gpu"):
        if env_a.get(key) != env_b.get(key):
            out.append(f"machine differs: {key} {_short(env_a.get(key))} vs {_short(env_b.get(key))}")
    return out


def config_differences(a: Any, b: Any, where: str = "") -> list[str]:
    """What differs between two configs, one "key.path: A vs B" per difference (a key only one
    has reads "absent" on the other side)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in list(a) + [k for k in b if k not in a]:
            path = f"{where}.{key}" if where else str(key)
            if key not in a or key not in b:
                out.append(f"{path}: {_short_value(a[key]) if key in a else 'absent'} vs {_short_value(b[key]) if key in b else 'absent'}")
            else:
                out += config_differences(a[key], b[key], path)
        return out
    if a != b:
        return [f"{where or '(top level)'}: {_short_value(a)} vs {_short_value(b)}"]
    return []


def _short_value(value: Any, width: int = 60) -> str:
    import json

    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


def _data_hashes(run_info: dict[str, Any]) -> dict[str, str]:
    return {d["name"]: d.get("content_hash") for dom in run_info.get("domains", {}).values() for d in dom.get("datasets", [])}


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _delta(value: float, lo: float = float("nan"), hi: float = float("nan")) -> str:
    if value != value:
        return "n/a"
    return f"{value:+.3f}" + (f" [{lo:+.3f}, {hi:+.3f}]" if lo == lo and hi == hi else "")


def _gate_verdict(lo: float, hi: float, higher_better: bool, significant: bool = True) -> str:
    """Whether B's gate is better or worse than A's on one statistic, by the sign of the interval
    of B - A read in the statistic's own direction (no detectable difference unless
    ``significant`` after the multiplicity adjustment)."""
    v = stats.verdict(lo, hi) if higher_better else stats.verdict(-hi, -lo)
    if not significant and v in ("better", "worse"):
        v = "no detectable difference"
    return {"better": "B better *", "worse": "B worse *"}.get(v, v)


def _small(row) -> str:
    """The small-data mark of a row's test domain ("" when it has enough data)."""
    return f" {LITTLE_DATA}" if str(getattr(row, "warning", "") or "") not in ("", "nan") else ""


def _p(value) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


def _adjust_note(df) -> str:
    """One sentence naming the multiplicity family and method of a comparison table."""
    adjust = str(df["adjust"].iloc[0]) if len(df) and "adjust" in df and df["adjust"].iloc[0] == df["adjust"].iloc[0] else "none"
    if adjust == "none":
        return "p: raw bootstrap p-values, not adjusted for multiplicity (adjust: none)."
    return (f"Multiplicity: the rows of one test domain and statistic are one family; p adjusted by {stats.ADJUSTMENT_NAMES[adjust]}; "
            "significant needs the interval to exclude 0 and the adjusted p below 1 - confidence.")


def format_comparison(df, warnings: list[str], statistics: tuple[str, ...] | None = None, transfer=None) -> str:
    """Markdown: the warnings, then one table of B - A per entry and statistic ("*" = significant;
    ``statistics``: default, those with a leaderboard column, in its order),
    then, when both runs stored acceptability statistics, the quality-gate changes (with each
    statistic's better direction), then (``transfer``, from :func:`compare_transfer`) the transfer
    verdicts of both runs."""
    from tabulate import tabulate

    lines = ["# Run comparison (B - A)", ""]
    table = stats.statistics_table()
    if statistics is None:
        shown = [s for s in table.values() if s.column is not None and not s.needs_acceptability]
        statistics = tuple(s.name for s in sorted(shown, key=lambda s: s.column))
    if warnings:
        lines += ["**Warnings: the runs are not like for like.**", ""] + [f"- {w}" for w in warnings] + [""]
    sub = df[df["statistic"].isin(statistics)] if len(df) else df
    if not len(sub):
        lines.append("_No method x train x test entry in common._")
    else:
        rows = []
        for r in sub.itertuples(index=False):
            rows.append([f"{r.method} @ {r.train}", r.test + _small(r), r.statistic, f"{r.value_a:.3f}", f"{r.value_b:.3f}",
                         _delta(r.delta, r.ci_low, r.ci_high), _p(r.p_value), _p(getattr(r, "p_adjusted", None)),
                         "yes *" if r.significant else "no", r.mode,
                         f"{r.n} ({r.groups})" if r.mode == "paired" else "-", r.seeds])
        lines.append(tabulate(rows, headers=["Method @ train set", "Test", "Statistic", "A", "B", "Δ [CI]", "p", "p adjusted", "Significant", "Bootstrap",
                                             "n (groups)", "Seeds"], tablefmt="github", disable_numparse=True))
        lines += ["", "Δ = B - A over the split seeds both runs have; for RMSE lower is better, so a negative Δ is an improvement. Paired: "
                  "both runs resampled with the same content-group draws on their common images (n images, groups per seed); "
                  "independent: no images in common, difference of independent bootstraps. " + _adjust_note(df)]
        if any(_small(r) for r in sub.itertuples(index=False)):
            lines += ["", f"{LITTLE_DATA} a test domain with too little data in A or B (fewer than {stats.MIN_GROUPS} content groups or "
                      f"{stats.MIN_IMAGES} images in a split seed): its intervals and significance are unreliable."]
    gate = df[df["statistic"].isin([n for n, s in table.items() if s.needs_acceptability])] if len(df) else df
    if len(gate):
        lines += ["", "## Quality gate (B - A)", ""]
        rows = []
        for r in gate.itertuples(index=False):
            higher = stats.higher_is_better(r.statistic)
            rows.append([f"{r.method} @ {r.train}", r.test + _small(r), r.statistic, "higher" if higher else "lower", f"{r.value_a:.3f}", f"{r.value_b:.3f}",
                         _delta(r.delta, r.ci_low, r.ci_high), _p(r.p_value), _p(getattr(r, "p_adjusted", None)),
                         _gate_verdict(r.ci_low, r.ci_high, higher, bool(r.significant)), r.mode, r.seeds])
        lines.append(tabulate(rows, headers=["Method @ train set", "Test", "Statistic", "Better", "A", "B", "Δ [CI]", "p", "p adjusted", "B vs A", "Bootstrap",
                                             "Seeds"], tablefmt="github", disable_numparse=True))
        lines += ["", "Each run's gate at the score threshold it chose on its own train split (per seed, fixed in every replicate); "
                  "intervals from the same content-group draws as the correlations. AUC and ACC: higher is better; RETAKE (share of "
                  "photos rejected): lower is better, so a negative Δ means B asks for fewer retakes."]
    if transfer is not None and len(transfer):
        lines += ["", "## Transfer verdicts (A vs B)", ""]
        rows = [[r.method, r.test, f"{r.train} vs {r.reference_train}", r.statistic, _delta(r.value_a), _delta(r.value_b), r.verdict_a,
                 r.verdict_b, "changed" if r.changed else ""] for r in transfer.itertuples(index=False)]
        lines.append(tabulate(rows, headers=["Method", "Test", "Train vs reference", "Statistic", "Δ in A", "Δ in B", "Verdict A", "Verdict B", ""],
                              tablefmt="github", disable_numparse=True))
    return "\n".join(lines) + "\n"
