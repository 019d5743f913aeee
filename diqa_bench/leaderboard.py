"""Leaderboard tables, rendered from stored results only (never recomputing a score).

One table per test domain; rows "method @ train set"; columns SROCC, PLCC, KRCC, RMSE (and the
acceptability columns when the config declares a threshold) as "mean [CI]" across split seeds,
arrows for direction, the best value of each column in bold, failed cells with their reason.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from diqa_bench.stats import HIGHER_IS_BETTER

MAIN_COLUMNS = ["SROCC", "PLCC", "KRCC", "RMSE"]
ACCEPT_COLUMNS = ["AUC", "ACC", "RETAKE"]
LABELS = {"AUC": "AUC (reject)", "ACC": "Accuracy", "RETAKE": "Retake rate"}


def _fmt(v: float, lo: float, hi: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if lo is None or hi is None or any(isinstance(x, float) and math.isnan(x) for x in (lo, hi)):
        return f"{v:.3f}"
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def _arrow(stat: str) -> str:
    return "↑" if HIGHER_IS_BETTER.get(stat, True) else "↓"


def leaderboard_rows(metrics, run_info: dict[str, Any], test: str, markdown: bool = True, marks: dict | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one test domain's table. ``marks``: (method, train, test) -> "†" for
    entries significantly worse than the domain's best (see :mod:`diqa_bench.report.significance`)."""
    marks = marks or {}
    agg = metrics[(metrics["test"] == test) & (metrics["seed"].astype(str) == "all")] if len(metrics) else metrics
    stats_present = set(agg["statistic"]) if len(agg) else set()
    columns = MAIN_COLUMNS + [c for c in ACCEPT_COLUMNS if c in stats_present]
    header = ["Method @ train set"] + [f"{LABELS.get(c, c)} {_arrow(c)}" for c in columns] + ["n"]

    entries: dict[tuple[str, str], dict[str, tuple]] = {}
    order: list[tuple[str, str]] = []
    for row in agg.itertuples(index=False):
        key = (row.method, row.train)
        if key not in entries:
            entries[key] = {}
            order.append(key)
        entries[key][row.statistic] = (row.value, row.ci_low, row.ci_high, row.n)

    best: dict[str, float] = {}
    for c in columns:
        vals = [e[c][0] for e in entries.values() if c in e and not _nan(e[c][0])]
        if vals:
            best[c] = max(vals) if HIGHER_IS_BETTER.get(c, True) else min(vals)

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
            v, lo, hi, _ = e[c]
            text = _fmt(v, lo, hi)
            if markdown and c in best and not _nan(v) and abs(v - best[c]) < 1e-12:
                text = f"**{text}**"
            cells.append(text)
        n = next(iter(e.values()))[3]
        mark = marks.get((key[0], key[1], test), "")
        label = f"{key[0]} @ {key[1]}" + (f" {mark}" if mark else "")
        ok_seeds, all_seeds = seed_counts.get(key, (0, 0))
        if ok_seeds < all_seeds:  # the mean covers fewer seeds than the protocol says: show it
            label += f" ({ok_seeds} of {all_seeds} seeds)"
        rows.append([label] + cells + [str(int(n))])

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


REASON_WIDTH = 60  # longer reasons are cut in the table and given in full below it


def missing_notes(run_info: dict[str, Any], test: str) -> list[str]:
    """One line per method @ train set of this test domain whose cells have no result, with the
    full reason and the seeds it applies to."""
    grouped: dict[tuple[str, str, str], list[int]] = {}
    for c in run_info.get("cells", []):
        if c["test"] == test and c["status"] != "ok":
            grouped.setdefault((c["method"], c["train"], f"{c['status']}: {c['reason']}"), []).append(c["seed"])
    return [f"{m} @ {t} (seed {', '.join(map(str, sorted(seeds)))}): {why}" for (m, t, why), seeds in grouped.items()]


def _nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def test_domains(metrics, run_info) -> list[str]:
    declared = run_info.get("config", {}).get("test_domains")
    if declared:
        return list(declared)
    return sorted(set(metrics["test"])) if len(metrics) else []


def render_markdown(metrics, run_info: dict[str, Any], marks: dict | None = None, figures: list[str] | None = None) -> str:
    """The LEADERBOARD.md text. ``figures``: PNG paths relative to the results folder, linked
    under the tables."""
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
            lines.append("Datasets: " + ", ".join(f"{d['name']} ({d['type']}, {d['images']} images)" for d in info["datasets"]) + ".")
            refs = [d["references"] for d in info["datasets"] if d.get("references")]
            if refs:
                lines.append("References (content groups): " + " + ".join(refs) + ".")
            lines.extend(f"Note: {n}" for d in info["datasets"] for n in d.get("notes", []))
            lines.append("")
        header, rows = leaderboard_rows(metrics, run_info, test, marks=marks)
        if rows:
            lines.append(tabulate(rows, headers=header, tablefmt="github", disable_numparse=True))
        else:
            lines.append("_No results for this domain._")
        lines.append("")
        notes = missing_notes(run_info, test)
        if notes:
            lines.append("Cells without results:")
            lines.append("")
            lines.extend(f"- {n}" for n in notes)
            lines.append("")
        if marks and any(v and k[2] == test for k, v in marks.items()):
            lines.append("† significantly worse SROCC than the best entry of this domain (paired bootstrap over test images, seeds pooled; significance.csv).")
            lines.append("")
    if figures:
        lines.append("## Figures")
        lines.append("")
        lines.extend(f"- [{Path(f).stem.replace('_', ' ')}]({f})" for f in figures)
        lines.append("")
        lines.append("All tables and figures in one page: [report.html](report.html).")
        lines.append("")
    lines.append("## Protocol")
    lines.append("")
    lines.extend(protocol_lines(run_info))
    lines.append("")
    return "\n".join(lines)


def protocol_lines(run_info: dict[str, Any]) -> list[str]:
    p = run_info.get("protocol", {})
    seeds = p.get("seeds", [])
    out = [
        f"- Splits: group-aware (no content group - reference image or patient - on both sides), test ratio {p.get('test_ratio')}, "
        f"split seeds {seeds}; a dataset's own split column is used when every image has one ({p.get('use_split_column')}).",
        f"- Values: mean over {len(seeds)} split seed(s); [brackets] are {int(100 * p.get('confidence', 0.95))}% percentile-bootstrap "
        f"intervals over test images ({p.get('bootstrap')} resamples, seed {p.get('stats_seed')}), pooled across seeds.",
        "- SROCC and KRCC (tau-b) are rank correlations; PLCC and RMSE are computed after the VQEG 4-parameter logistic mapping of "
        "scores onto MOS (fitted once per cell); PLCC_raw (in metrics.csv) is without mapping. Lower-is-better methods are handled "
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
            "Accuracy and Retake rate use the score threshold with the best accuracy on the test domain's train split."
        )
    skips = run_info.get("skipped", [])
    if skips:
        out.append(f"- Skipped images ({len(skips)}, bad_input: {p.get('bad_input')}): " + "; ".join(f"{s['dataset']}/{s['image']}: {s['reason']}" for s in skips[:10]) + ("; ..." if len(skips) > 10 else "") + " (all listed in run.json).")
    else:
        out.append(f"- Skipped images: none (bad_input: {p.get('bad_input')}).")
    failed = run_info.get("failed_cells", [])
    if failed:
        out.append(f"- Cells without results: {len(failed)} (reasons in the tables above and in run.json).")
    return out


def render_terminal(metrics, run_info: dict[str, Any]) -> str:
    from tabulate import tabulate

    parts = []
    for test in test_domains(metrics, run_info):
        header, rows = leaderboard_rows(metrics, run_info, test, markdown=False)
        info = run_info.get("domains", {}).get(test, {})
        note = " (pseudo-MOS)" if info.get("pseudo_mos") else ""
        notes = "".join(f"\n  {n}" for n in missing_notes(run_info, test))
        parts.append(f"Test domain: {test}{note}\n" + tabulate(rows, headers=header, tablefmt="simple", disable_numparse=True) + notes)
    return "\n\n".join(parts)
