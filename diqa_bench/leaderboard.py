"""Leaderboard tables, rendered from stored results only (never recomputing a score).

One table per test domain; rows "method @ train set"; columns SROCC, PLCC, KRCC, RMSE (and the
acceptability columns when the config declares a threshold, with an "accept all" reference row
and the gate's accuracy gain over it, whose interval decides ‡) as "mean ± std over seeds [CI]",
arrows for direction, the best value of each column in bold, failed cells with their reason. A test domain with too little data gets a warning above its
table. Under each table: the transfer table (mixed vs single-domain training, transfer loss)
from transfer.csv. With variants: the ablation section (each variant against its base, on the
validation and the test splits) from ablation.csv.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from diqa_bench import pair_tables, pairs
from diqa_bench.licences import overall
from diqa_bench.report.agreement import agreement_lines
from diqa_bench.report.strata import strata_rows
from diqa_bench.stats import ADJUSTMENT_NAMES, HIGHER_IS_BETTER, data_warning

MAIN_COLUMNS = ["SROCC", "PLCC", "KRCC", "RMSE"]
ACCEPT_COLUMNS = ["AUC", "ACC", "ACC_GAIN", "RETAKE"]
DELTA_COLUMNS = {"ACC_GAIN"}  # differences: signed, no spread over seeds (as in the transfer table)
LABELS = {"AUC": "AUC (reject)", "ACC": "Accuracy", "ACC_GAIN": "ΔAccuracy vs accept all", "RETAKE": "Retake rate"}
ACCEPT_ALL_LABEL = "accept all (no gate)"
# Accuracy significantly below accepting every photo: the whole interval of ACC_GAIN (paired, same
# group draws) lies below 0. Without that interval (bootstrap 0, results stored before ACC_GAIN
# existed) the point estimates are compared, and the legend says so.
BELOW_ACCEPT_ALL = "‡"
LITTLE_DATA = "⚠"


def _fmt(v: float, lo: float, hi: float, std: float | None = None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    spread = f" ± {std:.3f}" if std is not None and not _nan(std) else ""
    if lo is None or hi is None or any(isinstance(x, float) and math.isnan(x) for x in (lo, hi)):
        return f"{v:.3f}{spread}"
    return f"{v:.3f}{spread} [{lo:.3f}, {hi:.3f}]"


def _arrow(stat: str) -> str:
    return "↑" if HIGHER_IS_BETTER.get(stat, True) else "↓"


def leaderboard_rows(metrics, run_info: dict[str, Any], test: str, markdown: bool = True, marks: dict | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one test domain's table. ``marks``: (method, train, test) -> "†" for
    entries significantly worse than the domain's best (see :mod:`diqa_bench.report.significance`).
    A cell reads "mean ± std over split seeds [CI of the mean]"; the last column "n (groups) x
    seeds" gives test images and content groups per seed and the number of seeds."""
    marks = marks or {}
    in_test = metrics[metrics["test"] == test] if len(metrics) else metrics
    agg = in_test[in_test["seed"].astype(str) == "all"] if len(in_test) else in_test
    stats_present = set(agg["statistic"]) if len(agg) else set()
    columns = MAIN_COLUMNS + [c for c in ACCEPT_COLUMNS if c in stats_present]
    header = ["Method @ train set"] + [f"{LABELS.get(c, c)} {_arrow(c)}" for c in columns] + ["n (groups) × seeds"]

    entries: dict[tuple[str, str], dict[str, tuple]] = {}
    order: list[tuple[str, str]] = []
    for row in agg.itertuples(index=False):
        key = (row.method, row.train)
        if key not in entries:
            entries[key] = {}
            order.append(key)
        entries[key][row.statistic] = (row.value, row.ci_low, row.ci_high, row.n, getattr(row, "std", float("nan")), getattr(row, "groups", float("nan")))
    per_seed = in_test[(in_test["seed"].astype(str) != "all") & (in_test["statistic"] == "SROCC")] if len(in_test) else in_test
    n_seeds = per_seed.groupby(["method", "train"]).size().to_dict() if len(per_seed) else {}

    best: dict[str, float] = {}
    for c in columns:
        vals = [e[c][0] for e in entries.values() if c in e and not _nan(e[c][0])]
        if vals:
            best[c] = max(vals) if HIGHER_IS_BETTER.get(c, True) else min(vals)
    accept_all = [e["ACC_ACCEPT_ALL"] for e in entries.values() if "ACC_ACCEPT_ALL" in e and not _nan(e["ACC_ACCEPT_ALL"][0])]

    def sort_key(key):
        v = entries[key].get("SROCC", (float("nan"),))[0]
        return (_nan(v), -(v if not _nan(v) else 0), key)

    seed_counts: dict[tuple[str, str], tuple[int, int]] = {}
    for c in run_info.get("cells", []):
        if c["test"] == test:
            ok_n, all_n = seed_counts.get((c["method"], c["train"]), (0, 0))
            seed_counts[(c["method"], c["train"])] = (ok_n + (c["status"] == "ok"), all_n + 1)

    rows = []
    for key in sorted(order, key=sort_key):
        e = entries[key]
        cells = []
        for c in columns:
            if c not in e:
                cells.append("n/a")
                continue
            v, lo, hi, _, std, _ = e[c]
            text = _delta(v, lo, hi) if c in DELTA_COLUMNS else _fmt(v, lo, hi, std)
            if markdown and c in best and not _nan(v) and abs(v - best[c]) < 1e-12:
                text = f"**{text}**"
            if c == "ACC" and below_accept_all(e):
                text += f" {BELOW_ACCEPT_ALL}"
            cells.append(text)
        first = next(iter(e.values()))
        mark = marks.get((key[0], key[1], test), "")
        label = f"{key[0]} @ {key[1]}" + (f" {mark}" if mark else "")
        ok_seeds, all_seeds = seed_counts.get(key, (0, 0))
        if ok_seeds < all_seeds:  # the mean covers fewer seeds than the protocol says: show it
            label += f" ({ok_seeds} of {all_seeds} seeds)"
        seeds = n_seeds.get(key, ok_seeds)
        size = str(int(first[3])) + (f" ({first[5]:.0f})" if not _nan(first[5]) else "") + (f" × {seeds}" if seeds else "")
        rows.append([label] + cells + [size])

    if accept_all and any(c in columns for c in ACCEPT_COLUMNS):
        # every entry judged on the same test images shares one accept-all accuracy, interval and
        # spread; entries over other images (e.g. fewer seeds) make it a plain mean
        shared = {tuple(round(x, 9) if not _nan(x) else None for x in (a[0], a[1], a[2], a[4])) for a in accept_all}
        if len(shared) == 1:
            v, lo, hi, _, std, _ = accept_all[0]
            acc = _fmt(v, lo, hi, std)
        else:
            acc = f"{sum(a[0] for a in accept_all) / len(accept_all):.3f}"
        ref = {"AUC": "0.500", "ACC": acc, "RETAKE": "0.000"}
        rows.append([ACCEPT_ALL_LABEL] + [ref.get(c, "") for c in columns] + [""])

    # Cells that produced no numbers: every seed failed or was not run.
    ok = set(entries)
    reasons: dict[tuple[str, str], str] = {}
    for c in run_info.get("cells", []):
        if c["test"] == test and c["status"] != "ok" and (c["method"], c["train"]) not in ok:
            reasons.setdefault((c["method"], c["train"]), f"{c['status']}: {c['reason']}")
    for (m, t), why in reasons.items():
        short = why if len(why) <= REASON_WIDTH else why[: REASON_WIDTH - 1].rstrip() + "…"
        rows.append([f"{m} @ {t}", short] + [""] * (len(columns) - 1) + [""])
    return header, rows


def below_accept_all(entry: dict[str, tuple]) -> bool:
    """Whether an entry's gate earns ‡: significantly less accurate than accepting every photo
    (the interval of ACC_GAIN lies below 0), or, with no such interval, a lower point estimate."""
    gain = entry.get("ACC_GAIN")
    if gain is not None and not (_nan(gain[1]) or _nan(gain[2])):
        return gain[2] < 0
    acc, ref = entry.get("ACC"), entry.get("ACC_ACCEPT_ALL")
    return acc is not None and ref is not None and not (_nan(acc[0]) or _nan(ref[0])) and acc[0] < ref[0] - 1e-12


def _below_by_point(metrics, test: str) -> bool:
    """Whether any ‡ of a test domain rests on point estimates alone (no ACC_GAIN interval)."""
    agg = metrics[(metrics["test"] == test) & (metrics["seed"].astype(str) == "all")] if len(metrics) else metrics
    gains = agg[agg["statistic"] == "ACC_GAIN"] if len(agg) else agg
    return not len(gains) or bool(gains["ci_low"].isna().all())


def domain_warning(run_info: dict[str, Any], test: str) -> str:
    """The too-little-data warning of a test domain ("" when it has enough), from run.json's
    cells: the smallest split seed's images and content groups (a run stored before groups were
    recorded counts each image as its own group)."""
    sizes: dict[Any, tuple[int, int]] = {}
    for c in run_info.get("cells", []):
        if c["test"] == test and c["status"] == "ok":
            n, g = sizes.get(c["seed"], (0, 0))
            sizes[c["seed"]] = (max(n, int(c.get("n", 0))), max(g, int(c.get("groups", c.get("n", 0)))))
    if not sizes:
        return ""
    return data_warning(min(n for n, _ in sizes.values()), min(g for _, g in sizes.values()))


def linear_mapping_notes(run_info: dict[str, Any], test: str) -> list[str]:
    """method @ train (seeds): reason, for the cells whose PLCC/RMSE used the linear fallback."""
    grouped: dict[tuple[str, str, str], list] = {}
    for c in run_info.get("cells", []):
        if c["test"] == test and c["status"] == "ok" and str(c.get("mapping", "")).startswith("linear"):
            grouped.setdefault((c["method"], c["train"], c["mapping"]), []).append(c["seed"])
    return [f"{m} @ {t} (seed {', '.join(map(str, sorted(s, key=str)))}): {how}" for (m, t, how), s in grouped.items()]


def _delta(v, lo, hi) -> str:
    if _nan(v):
        return "n/a"
    return f"{v:+.3f} [{lo:+.3f}, {hi:+.3f}]" if not (_nan(lo) or _nan(hi)) else f"{v:+.3f}"


def transfer_rows(transfer, test: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one test domain's transfer table (from transfer.csv): one row per
    method x (train set, reference train set), a Δ [CI] and a verdict per statistic. A verdict
    from a test domain with too little data carries ⚠."""
    if transfer is None or not len(transfer):
        return [], []
    sub = transfer[transfer["test"] == test]
    if not len(sub):
        return [], []
    names = list(dict.fromkeys(sub["statistic"]))
    header = ["Method", "Train set", "vs reference", "Comparison"] + [f"Δ{s} [CI]" for s in names] + [f"{s} verdict" for s in names] + ["n (groups) × seeds"]
    rows = []
    for (method, train, ref), g in sub.groupby(["method", "train", "reference_train"], sort=False):
        by = {r.statistic: r for r in g.itertuples(index=False)}
        first = next(iter(by.values()))
        warn = f" {LITTLE_DATA}" if str(getattr(first, "warning", "") or "") not in ("", "nan") else ""
        values = [_delta(by[s].value, by[s].ci_low, by[s].ci_high) if s in by else "" for s in names]
        verdicts = [f"{by[s].verdict}{warn}" if s in by else "" for s in names]
        seeds = len(str(first.seeds).split())
        rows.append([method, train, ref, first.comparison] + values + verdicts + [f"{first.n_images} ({first.n_groups}) × {seeds}"])
    return header, rows


def ablation_rows(ablation, base: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one method's ablation table (from ablation.csv): one row per variant x
    train set x test domain, Δ [CI] and verdict per statistic, validation first, then test."""
    if ablation is None or not len(ablation):
        return [], []
    sub = ablation[ablation["base"] == base]
    phases = [p for p in ("validation", "test") if (sub["phase"] == p).any()]
    names = list(dict.fromkeys(sub["statistic"]))
    header = ["Variant", "Train set", "Test domain"] + [f"{p} Δ{s} [CI] verdict" for p in phases for s in names] + \
             [f"{p} n (groups) × seeds" for p in phases]
    rows = []
    for (method, train, test), g in sub.groupby(["method", "train", "test"], sort=False):
        by = {(r.phase, r.statistic): r for r in g.itertuples(index=False)}
        cells, sizes = [], []
        for p in phases:
            for s in names:
                r = by.get((p, s))
                warn = f" {LITTLE_DATA}" if r is not None and str(r.warning or "") not in ("", "nan") else ""
                cells.append(f"{_delta(r.value, r.ci_low, r.ci_high)} {r.verdict}{warn}" if r is not None else "")
            first = next((r for (q, _), r in by.items() if q == p), None)
            sizes.append(f"{first.n_images} ({first.n_groups}) × {len(str(first.seeds).split())}" if first is not None else "")
        rows.append([method, train, test] + cells + sizes)
    return header, rows


def ablation_section(ablation, run_info: dict[str, Any]) -> list[str]:
    """'## Ablation' of LEADERBOARD.md: per method with variants, each against its base."""
    if ablation is None or not len(ablation):
        return []
    conf = int(round(100 * run_info.get("protocol", {}).get("confidence", 0.95)))
    ratio = (run_info.get("validation") or {}).get("ratio")
    held = f"{ratio:g} of each dataset's train content groups per split seed" if ratio else "validation groups of each train split"
    lines = ["## Ablation: variants against their base", "",
             f"**Choose options from the validation columns only.** Validation: every row fitted on the train split less its validation "
             f"groups ({held}, never test data) and scored on those groups (validation/metrics.csv). The test columns are for reporting "
             "the chosen configuration only: choosing by them would select on the test set, and their numbers would then be optimistic.",
             "",
             f"Δ = variant - base, on the same images of each split seed, mean over seeds; [{conf}% paired content-group bootstrap "
             "interval, the same draws for both sides]; verdict: better / worse when the interval excludes 0, else no detectable difference.",
             ""]
    from tabulate import tabulate

    for base in dict.fromkeys(ablation["base"]):
        header, rows = ablation_rows(ablation, base)
        if rows:
            lines += [f"### {base}", "", tabulate(rows, headers=header, tablefmt="github", disable_numparse=True), ""]
    failed = [f"{c['method']} @ {c['train']} on {c['test']} (seed {c['seed']}): {c['status']}: {c['reason']}"
              for c in (run_info.get("validation") or {}).get("failed_cells", [])]
    lines += _bullets("Validation cells without results:", failed)
    return lines


REASON_WIDTH = 60  # longer reasons are cut in the table and given in full below it


def _bullets(title: str, items: list[str]) -> list[str]:
    """Markdown lines of a titled bullet list, or none when there are no items."""
    return [title, "", *(f"- {n}" for n in items), ""] if items else []


def missing_notes(run_info: dict[str, Any], test: str) -> list[str]:
    """One line per method @ train set of this test domain whose cells have no result, with the
    full reason and the seeds it applies to."""
    grouped: dict[tuple[str, str, str], list[int]] = {}
    for c in run_info.get("cells", []):
        if c["test"] == test and c["status"] != "ok":
            grouped.setdefault((c["method"], c["train"], f"{c['status']}: {c['reason']}"), []).append(c["seed"])
    return [f"{m} @ {t} (seed {', '.join(map(str, sorted(seeds)))}): {why}" for (m, t, why), seeds in grouped.items()]


def degenerate_cut_notes(run_info: dict[str, Any], test: str) -> list[str]:
    """One line per method @ train set whose acceptability cut on this test domain accepts (or
    rejects) every image of the train split it was chosen on, with the seeds."""
    grouped: dict[tuple[str, str, str], list[int]] = {}
    for c in run_info.get("cells", []):
        rate = c.get("train_accept")
        if c["test"] == test and c["status"] == "ok" and rate is not None and rate in (0.0, 1.0):
            what = "accepts every" if rate == 1.0 else "rejects every"
            grouped.setdefault((c["method"], c["train"], what), []).append(c["seed"])
    return [f"{m} @ {t} (seed {', '.join(map(str, sorted(seeds)))}): the threshold {what} image of the train split"
            for (m, t, what), seeds in grouped.items()]


def _nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def test_domains(metrics, run_info) -> list[str]:
    declared = run_info.get("config", {}).get("test_domains")
    if declared:
        return list(declared)
    return sorted(set(metrics["test"])) if len(metrics) else []


def _warned(marks: dict | None, test: str, warning: str) -> dict | None:
    """† marks of a test domain with too little data carry the warning sign."""
    if not marks or not warning:
        return marks
    return {k: (f"{v} {LITTLE_DATA}" if v and k[2] == test else v) for k, v in marks.items()}


def pair_section(metrics, run_info: dict[str, Any], test: str) -> list[str]:
    """The LEADERBOARD.md lines of a pair test domain (heading to notes)."""
    from tabulate import tabulate

    info = run_info.get("domains", {}).get(test, {})
    lines = [f"## Test domain: {test} (paired preference, evaluation only)", ""]
    if info.get("datasets"):
        lines += ["Datasets: " + ", ".join(f"{_md_text(d['name'])} ({_md_text(d['type'])}, {d['images']} images)" for d in info["datasets"]) + ".", ""]
    lines += [_md_text(pair_tables.describe(run_info, test)), ""]
    header, rows = pair_tables.table_rows(metrics, run_info, test)
    lines += [tabulate([[_md_text(c) for c in row] for row in rows], headers=header, tablefmt="github", disable_numparse=True) if rows else "_No results for this domain._", ""]
    notes = missing_notes(run_info, test)
    if notes:
        lines += ["Cells without results:", ""] + [f"- {_md_text(n)}" for n in notes] + [""]
    if any(c.get("unscored") for c in run_info.get("pair_cells", []) if c["test"] == test):
        lines += ["unscored: pairs with an image the method gave no score (too small for it, or NaN; reasons in run.json \"skipped\"), "
                  "mean over seeds; each counts as a tie (half a pair).", ""]
    return lines


def render_markdown(metrics, run_info: dict[str, Any], marks: dict | None = None, figures: list[str] | None = None, transfer=None,
                    ablation=None, strata=None, agreement=None) -> str:
    """The LEADERBOARD.md text. ``figures``: PNG paths relative to the results folder, linked
    under the tables; ``transfer``: the transfer table (transfer.csv) and ``strata``: the strata
    table (strata.csv), rendered under each test domain's table; ``ablation``: the ablation table
    (ablation.csv), in a section after them."""
    from tabulate import tabulate

    name = run_info.get("name", "benchmark")
    lines = [f"# Leaderboard: {name}", ""]
    env = run_info.get("environment", {})
    when = run_info.get("finished_at", "")
    lines.append(
        f"diqa-bench {env.get('diqa_bench', '?')}, config `{run_info.get('config_path', '?')}` "
        f"(hash `{run_info.get('config_hash', '?')}`), device `{env.get('device', '?')}`"
        + (f" ({env['gpu']})" if env.get("gpu") else "") + (f", finished {when}" if when else "") + "."
    )
    lines.append("")
    domains_info = run_info.get("domains", {})
    for test in test_domains(metrics, run_info):
        if pairs.is_pair_domain(run_info, test):  # paired preference: its own table (diqa_bench.pairs)
            lines.extend(pair_section(metrics, run_info, test))
            continue
        info = domains_info.get(test, {})
        tags = []
        if info.get("pseudo_mos"):
            tags.append("labels are pseudo-MOS")
        if info.get("synthetic"):
            partly = any(d.get("synthetic") is False for d in info.get("datasets", []))
            tags.append("partly synthetic images" if partly else "synthetic images")
        lines.append(f"## Test domain: {test}" + (f" ({'; '.join(tags)})" if tags else ""))
        lines.append("")
        if info.get("datasets"):
            lines.append("Datasets: " + ", ".join(f"{_md_text(d['name'])} ({_md_text(d['type'])}, {d['images']} images)" for d in info["datasets"]) + ".")
            refs = [d["references"] for d in info["datasets"] if d.get("references")]
            if refs:
                lines.append("References (content groups): " + _md_text(" + ".join(refs)) + ".")
            lines.extend(f"Note: {_md_text(n)}" for d in info["datasets"] for n in d.get("notes", []))
            lines.append("")
        warning = domain_warning(run_info, test)
        if warning:
            lines.append(f"> **{LITTLE_DATA} Warning: {warning}.**")
            lines.append("")
        header, rows = leaderboard_rows(metrics, run_info, test, marks=_warned(marks, test, warning))
        if rows:  # reasons quote paths and image names: shown as text, never run as markup
            lines.append(tabulate([[_md_text(c) for c in row] for row in rows], headers=header, tablefmt="github", disable_numparse=True))
        else:
            lines.append("_No results for this domain._")
        lines.append("")
        legend = []
        if marks and any(v and k[2] == test for k, v in marks.items()):
            legend.append("† significantly worse SROCC than the best entry of this domain (paired content-group bootstrap, seeds pooled, "
                          f"{adjust_phrase(run_info, 'the comparisons with the best entry of this domain')}; significance.csv)" + (f"; {LITTLE_DATA} from a test domain with too little data (see the warning above)" if warning else "") + ".")
        gate = gate_legend(metrics, test, rows)
        if gate:
            legend.append(gate)
        for item in legend:
            lines.append(item)
            lines.append("")
        lines += _bullets("Cells without results:", [_md_text(n) for n in missing_notes(run_info, test)])
        lines += _bullets("Thresholds that decide nothing on their train split (Accuracy and Retake rate are those of accepting "
                          "or rejecting every image):", degenerate_cut_notes(run_info, test))
        lines += _bullets("PLCC and RMSE with a linear instead of a logistic mapping:", linear_mapping_notes(run_info, test))
        t_header, t_rows = transfer_rows(transfer, test)
        if t_rows:
            conf = int(round(100 * run_info.get("protocol", {}).get("confidence", 0.95)))
            lines.append(f"### Transfer on {test}: does the train set matter?")
            lines.append("")
            lines.append(f"Δ = train set - reference, on the same test images of each split seed, mean over seeds; [{conf}% paired "
                         "content-group bootstrap interval]; verdict: better / worse when the interval excludes 0 and the adjusted p is below "
                         f"{1 - conf / 100:.2g}, else no detectable difference (not testable: no interval, e.g. one content group in a seed); "
                         f"{adjust_phrase(run_info, f'the verdicts of one statistic on {test}')}. *mixed vs single*: a train set of several domains against one domain; *transfer loss*: a train "
                         f"set of another domain against the in-domain one ({test}).")
            lines.append("")
            if warning:
                lines.append(f"{LITTLE_DATA} these verdicts come from a test domain with too little data (see the warning above).")
                lines.append("")
            lines.append(tabulate(t_rows, headers=t_header, tablefmt="github", disable_numparse=True))
            lines.append("")
        lines += strata_section(strata, run_info, test)
        if rows:
            lines += agreement_lines(agreement, run_info, test)
    lines.extend(ablation_section(ablation, run_info))
    if figures:
        lines.append("## Figures")
        lines.append("")
        lines.extend(f"- [{Path(f).stem.replace('_', ' ')}]({f})" for f in figures)
        lines.append("")
        lines.append("All tables and figures in one page: [report.html](report.html).")
        lines.append("")
    lines.extend(licence_section(run_info))
    lines.append("## Protocol")
    lines.append("")
    lines.extend(protocol_lines(run_info, text=_md_text))
    lines.append("")
    lines.extend(data_section(run_info))
    return "\n".join(lines)


def strata_section(table, run_info: dict[str, Any], test: str) -> list[str]:
    """Markdown of one test domain's strata tables (one per column), or none."""
    from tabulate import tabulate

    if table is None or not len(table):
        return []
    out = []
    conf = int(round(100 * run_info.get("protocol", {}).get("confidence", 0.95)))
    for column in dict.fromkeys(table[table["test"] == test]["column"]):
        header, rows = strata_rows(table, test, column)
        if not rows:
            continue
        out += [f"### Strata on {test}: by {column}", "",
                f"SROCC within each {column} (mean over split seeds [{conf}% content-group bootstrap interval]; {LITTLE_DATA}: a stratum with "
                f"fewer than {run_info.get('protocol', {}).get('min_groups', 10)} content groups or "
                f"{run_info.get('protocol', {}).get('min_images', 30)} images per seed, whose interval is unreliable). Worst stratum: the "
                "lowest SROCC; gap: best minus worst stratum, with its interval from the same group draws (PLCC too in strata.csv).", "",
                tabulate(rows, headers=header, tablefmt="github", disable_numparse=True), ""]
    return out


def licence_section(run_info: dict[str, Any]) -> list[str]:
    """'## Licences': one row per method and dataset, what it declares of its code, weights and
    data licences, and whether commercial use is known to be allowed (sources in run.json)."""
    from tabulate import tabulate

    facts = run_info.get("licences") or {}
    rows = []
    for kind, table in (("method", facts.get("methods") or {}), ("dataset", facts.get("datasets") or {})):
        for name, items in table.items():
            terms = "; ".join(f"{f.get('component')}: {f.get('what')} ({f.get('terms')})" for f in items) or "unknown"
            rows.append([f"{kind} {_md_text(name)}", _md_text(terms), overall(items)])
    if not rows:
        return []
    table = tabulate(rows, headers=["", "licences (as declared; sources in run.json)", "commercial use"], tablefmt="github", disable_numparse=True)
    return ["## Licences", "", table, "",
            "Stated as each plugin declares them, not legal advice: \"unknown\" means nobody checked, not that it is allowed.", ""]


def data_section(run_info: dict[str, Any]) -> list[str]:
    """'## Data and raters': per dataset, what was done to its images and where its split came
    from; per rated dataset, which raters the screening rejected and the inter-rater reliability.
    Empty when there is nothing of the kind to say."""
    out = [f"- {_md_text(note)}" for note in data_notes(run_info)]
    for name, rep in (run_info.get("screening") or {}).items():
        summary, rejected, reliability = rater_facts(rep, _md_text)
        line = f"- Raters of {_md_text(name)}: {summary} "
        line += (f"Rejected {len(rejected)}: " + "; ".join(f"{_md_text(r['observer'])} ({_md_text(r['reason'])})" for r in rejected) + ".") \
            if rejected else "No rater rejected."
        if reliability:
            line += f" {reliability}"
        out.append(line)
    if not out:
        return []
    return ["## Data and raters", "", *out, ""]


def data_notes(run_info: dict[str, Any]) -> list[str]:
    """The protocol and per-dataset facts of 'Data and raters' (image preprocessing, where each
    split came from), one plain sentence each; report.html and LEADERBOARD.md both show them."""
    out: list[str] = []
    if run_info.get("protocol", {}).get("split_protocol") == "full":
        out.append("Protocol full: every image of each test domain is scored (no training side; zero-shot methods only).")
    for dom in run_info.get("domains", {}).values():
        for d in dom.get("datasets", []):
            bits = []
            pre = d.get("preprocessing")
            if pre:
                bits.append(f"images resized to a {pre.get('resize_short_side')}-pixel short side before scoring ({pre.get('method')})")
            if d.get("split_source"):
                counts = d.get("split_counts", {})
                shown = ", ".join(f"{k} {counts[k]}" for k in ("train", "val", "test", "unused") if counts.get(k))
                bits.append(f"split from {d['split_source']} ({shown}; validation and unused images are neither trained nor tested on)")
            if bits:
                out.append(f"{d['name']}: " + "; ".join(bits) + ".")
    return out


def _md_text(text: Any) -> str:
    """User-supplied text (dataset names, rater ids from a ratings file) as Markdown that renders
    it literally: a viewer that passes HTML through would otherwise run it as markup."""
    import html

    return html.escape(str(text), quote=False)


def gate_legend(metrics, test: str, rows: list[list[str]]) -> str | None:
    """What ‡ means in a test domain's table (None when no row carries it)."""
    if not any(BELOW_ACCEPT_ALL in cell for row in rows for cell in row):
        return None
    if _below_by_point(metrics, test):
        return (f"{BELOW_ACCEPT_ALL} accuracy below accepting every photo (the \"{ACCEPT_ALL_LABEL}\" row; point estimates, "
                "no interval): this gate may do more harm than none.")
    return (f"{BELOW_ACCEPT_ALL} significantly less accurate than accepting every photo (the \"{ACCEPT_ALL_LABEL}\" row): the "
            "whole interval of ΔAccuracy vs accept all lies below 0; this gate does more harm than none.")


def rater_facts(rep: dict[str, Any], text=str) -> tuple[str, list[dict[str, Any]], str | None]:
    """One rated dataset's screening (run.json's ``screening`` entry) as (sentence with the
    counts, scale and screening method; the rejected raters, each a dict with ``observer`` and
    ``reason``; the reliability sentence with its interval, or None when it was not computed).
    ``text`` renders rater ids (from the user's file) for the output format."""
    scale = rep.get("scale")
    on_scale = f" on the scale {scale[0]:g} to {scale[1]:g}" if scale else ""
    summary = (f"{rep.get('observers')} raters, {rep.get('images')} images, {rep.get('ratings')} ratings{on_scale}; "
               f"screening: {rep.get('method')}.")
    if rep.get("dropped"):
        summary += f" Left out on request: rater {', '.join(text(r) for r in rep['dropped'])}."
    if rep.get("rescaled"):
        summary += " Rescaled on request: " + "; ".join(f"rater {text(k)} from {v[0]:g}-{v[1]:g}" for k, v in rep["rescaled"].items()) + "."
    for f in rep.get("flagged") or []:
        summary += f" {LITTLE_DATA} Rater {text(f['observer'])} does not fit the others' scale ({f['reason']}); kept."
    short = rep.get("fewer_ratings") or {}
    if short:
        summary += f" {short['count']} image(s) have fewer ratings than the usual {short['typical']}."
    rel = rep.get("reliability") or {}
    reliability = None
    if rel.get("value") is not None:
        interval = (f"{int(100 * rel.get('confidence', 0.95))}% bootstrap interval {rel['ci_low']:.3f} to {rel['ci_high']:.3f} over"
                    if rel.get("ci_low") is not None and rel.get("ci_high") is not None else "no bootstrap interval;")
        reliability = f"Inter-rater reliability of the kept raters: {rel['value']:.3f} ({interval} {rel.get('images')} images; {rel.get('method')})."
    return summary, list(rep.get("rejected", [])), reliability


def fitted_model_lines(run_info: dict[str, Any]) -> list[str]:
    """One protocol line per trainable method whose models describe what they ran as (e.g. the
    cross-domain model's head or finetune mode), with how many fitted cells each variant covers."""
    by_method: dict[str, dict[str, int]] = {}
    for row in run_info.get("fitted_models", []):
        text = ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("method", "train", "seed"))
        by_method.setdefault(row["method"], {})
        by_method[row["method"]][text] = by_method[row["method"]].get(text, 0) + 1
    return [f"- {method} ran as: " + "; ".join(f"{text} ({n} fitted model{'s' if n != 1 else ''})" for text, n in variants.items()) + "."
            for method, variants in sorted(by_method.items())]


def adjust_of(run_info: dict[str, Any]) -> str:
    """The multiplicity adjustment a run's tables use (see StoredRun.adjustment)."""
    stats_cfg = run_info.get("config", {}).get("statistics") or {}
    return run_info.get("protocol", {}).get("adjust") or stats_cfg.get("adjust") or "holm"


def adjust_phrase(run_info: dict[str, Any], family: str) -> str:
    """Words naming the multiplicity adjustment and its family, e.g. "p-values adjusted by Holm
    (family-wise error rate) over the comparisons with the best entry of this domain"."""
    adjust = adjust_of(run_info)
    if adjust == "none":
        return f"p-values not adjusted for multiplicity over {family} (statistics.adjust: none)"
    return f"p-values adjusted by {ADJUSTMENT_NAMES[adjust]} over {family}"


def resolution_note(run_info: dict[str, Any]) -> str:
    """With Holm, a family of m comparisons can show a verdict only if m times the smallest
    bootstrap p is below 1 - confidence: say how large a family the run's replicates allow."""
    p = run_info.get("protocol", {})
    bootstrap, alpha = p.get("bootstrap") or 0, 1 - p.get("confidence", 0.95)
    if adjust_of(run_info) != "holm" or not bootstrap:
        return ""
    largest = math.ceil(alpha * (bootstrap + 1) / 2) - 1  # largest m with m * 2 / (B + 1) < alpha
    return (f"; with {bootstrap} replicates Holm can find a difference in a family of at most {largest} comparisons "
            "(raise statistics.bootstrap for larger tables)")


def protocol_lines(run_info: dict[str, Any], text=str) -> list[str]:
    """The protocol bullets; ``text`` renders what comes from users' files (image and dataset names,
    reasons quoting paths): :func:`_md_text` for Markdown, as it is for report.html (which escapes
    every line)."""
    p = run_info.get("protocol", {})
    seeds = p.get("seeds", [])
    folds = p.get("folds")
    if p.get("split_protocol") == "full":
        splits = ("- Splits: none (protocol: full): every image of each test domain is scored and evaluated; zero-shot methods only, "
                  "nothing is trained, so the test ratio and split seeds do not apply.")
    elif folds is None:
        splits = (f"- Splits: group-aware (no content group - reference image or patient - on both sides), test ratio {p.get('test_ratio')}, "
                  f"split seeds {seeds}; a dataset's own split column is used when every image has one ({p.get('use_split_column')}).")
    else:
        splits = (f"- Splits: group-aware cross-validation ({'leave one content group out' if isinstance(folds, str) else f'{folds}-fold'}, "
                  f"{p.get('fold_count')} folds), repeated for split seeds {seeds}: each seed deals the content groups (reference images, "
                  "patients) into the folds anew; each fold is tested by models trained on the other folds, so every image is tested exactly "
                  "once per seed. The statistics of a seed are computed on its pooled out-of-fold scores (one value per seed, not a mean over "
                  "folds), and every bootstrap replicate draws the same content groups in all seeds, since all seeds test the same images.")
    out = [
        splits,
        f"- Values: mean over {len(seeds)} split seed(s) ± the standard deviation over seeds; [brackets] are "
        f"{int(100 * p.get('confidence', 0.95))}% percentile-bootstrap intervals of that mean ({p.get('bootstrap')} replicates, seed "
        f"{p.get('stats_seed')}). " + (
            "Resampling unit: the content group (reference image, patient); each replicate redraws the test groups, with all their "
            "images, within every split seed and averages the per-seed statistics. The interval covers which test content was drawn; "
            "the ± shows how much the split (and so the trained model) moves the number. † and the transfer verdicts are paired: both "
            "sides get the same group draws."
            if p.get("resampling") == "content groups" else
            "Resampling unit: single test images (this run predates content-group resampling; re-run it for group-level intervals)."),
        "- Multiple comparisons: " + adjust_phrase(run_info, "each table's comparisons") + ". The families: † compares every entry "
        "of a test domain with its best entry (one family per test domain); the transfer verdicts of one test domain and statistic are "
        "one family. A verdict (better, worse, †) needs its interval to exclude 0 and its adjusted p below 1 - confidence; "
        "significance.csv and transfer.csv hold the raw (p_value) and adjusted (p_adjusted) p-values. A bootstrap p is twice the "
        "share of paired replicates on the smaller side of 0 (at least 2 / (replicates + 1))" + resolution_note(run_info) + ".",
        f"- A test domain with fewer than {p.get('min_groups', 10)} content groups or {p.get('min_images', 30)} images per split seed "
        "gets a warning above its table; its intervals, † and verdicts are unreliable.",
        "- SROCC and KRCC (tau-b) are rank correlations; PLCC and RMSE are computed after the VQEG 4-parameter logistic mapping of "
        "scores onto MOS, fitted once per cell and constrained to increase (a backwards ranker cannot be mapped into a high PLCC); "
        "a linear map (slope >= 0) replaces it when the cell has fewer than 10 images or the fit is degenerate (listed under the "
        "tables). PLCC_raw (in metrics.csv) is without mapping. Lower-is-better methods are handled "
        "by negating their scores (no abs()): a negative correlation means the method ranks images backwards.",
        "- MOS: a test domain with one dataset is judged on its raw MOS (RMSE in its units); a domain mixing datasets on the "
        "per-dataset range-normalised MOS (0-1). Trainable methods learn from MOS normalised per dataset "
        f"({p.get('normalise_mos')}).",
        "- Zero-shot methods appear with train set '-' and are scored on the same test splits as trainable ones.",
        "- Images: decoded once per method at native resolution (EXIF rotation applied, converted to RGB); images of the same size "
        "are batched together, so no resizing alters a metric unless the method declares a fixed input size.",
    ]
    if p.get("decoder") == "nvjpeg":
        out.append("- Decoding: colour JPEGs were decoded on the GPU by nvJPEG (`--decode gpu`), whose pixels differ slightly from "
                     "libjpeg's: scores can differ from a run decoded by PIL (the default).")
    if p.get("acceptability") is not None:
        out.append(
            f"- Acceptability: MOS below {p['acceptability']} is unacceptable. AUC: how well the score detects unacceptable images; "
            "Accuracy and Retake rate use the score threshold with the best accuracy on the test domain's train split (THRESHOLD in "
            "metrics.csv; models/<method>@<train>/seed<k>/threshold.json for `diqa-bench score --threshold auto`). Their intervals "
            "resample the test content groups like the correlations' (same draws) with that threshold held fixed, so they cover "
            "which test content was drawn; how the threshold and model move with the train split shows in the ± over seeds. The "
            f"\"{ACCEPT_ALL_LABEL}\" row is the reference without a gate; ΔAccuracy vs accept all (ACC_GAIN in metrics.csv) is the "
            f"gate's accuracy minus it on the same resampled images; {BELOW_ACCEPT_ALL} marks a gate significantly less accurate "
            "than accepting every photo (that interval below 0)."
        )
    out.extend(pair_tables.protocol_lines(run_info))
    out.extend(fitted_model_lines(run_info))
    # sorted: the scorer records skips in the order workers finish, and the table must not change with it
    skips = sorted(run_info.get("skipped", []), key=lambda s: (str(s.get("dataset")), str(s.get("image")), str(s.get("reason"))))
    if skips:
        out.append(f"- Skipped images ({len(skips)}, bad_input: {p.get('bad_input')}): " + "; ".join(text(f"{s['dataset']}/{s['image']}: {s['reason']}") for s in skips[:10]) + ("; ..." if len(skips) > 10 else "") + " (all listed in run.json).")
    else:
        out.append(f"- Skipped images: none (bad_input: {p.get('bad_input')}).")
    if run_info.get("interrupted"):
        out.append("- **Interrupted**: the run was stopped before every cell finished; these are partial results "
                   "(a re-run resumes from the cache).")
    if run_info.get("plugin_clashes"):
        out.append("- Plugin name clashes (the first registration was used): " + "; ".join(map(text, run_info["plugin_clashes"])) + ".")
    failed = run_info.get("failed_cells", [])
    if failed:
        out.append(f"- Cells without results: {len(failed)} (reasons in the tables above and in run.json).")
    return out


def render_terminal(metrics, run_info: dict[str, Any], transfer=None, ablation=None) -> str:
    """The tables as plain text, each followed by its transfer table when ``transfer`` is given;
    then the ablation tables when ``ablation`` is given."""
    from tabulate import tabulate

    parts = []
    for test in test_domains(metrics, run_info):
        if pairs.is_pair_domain(run_info, test):
            parts.append(pair_tables.terminal_section(metrics, run_info, test))
            continue
        header, rows = leaderboard_rows(metrics, run_info, test, markdown=False)
        info = run_info.get("domains", {}).get(test, {})
        note = " (pseudo-MOS)" if info.get("pseudo_mos") else ""
        notes = "".join(f"\n  {n}" for n in missing_notes(run_info, test))
        warning = domain_warning(run_info, test)
        warning = f"{LITTLE_DATA} Warning: {warning}.\n" if warning else ""
        text = f"Test domain: {test}{note}\n{warning}" + tabulate(rows, headers=header, tablefmt="simple", disable_numparse=True) + notes
        t_header, t_rows = transfer_rows(transfer, test)
        if t_rows:
            text += f"\n\nTransfer on {test} (Δ = train set - reference, paired content-group bootstrap):\n"
            text += tabulate(t_rows, headers=t_header, tablefmt="simple", disable_numparse=True)
        parts.append(text)
    for base in dict.fromkeys(ablation["base"]) if ablation is not None and len(ablation) else ():
        a_header, a_rows = ablation_rows(ablation, base)
        parts.append(f"Ablation of {base} (Δ = variant - base; choose on the validation columns, the test columns only report):\n"
                     + tabulate(a_rows, headers=a_header, tablefmt="simple", disable_numparse=True))
    return "\n\n".join(parts)
