"""Rendering a paired-preference domain (:mod:`diqa_bench.pairs`) from a run's stored files: its
table rows, the paragraph that describes it, the protocol line, and its terminal and HTML forms
(its LEADERBOARD.md section is :func:`diqa_bench.leaderboard.pair_section`, which uses these)."""

from __future__ import annotations

import html as _html
import math
from typing import Any

import numpy as np
from tabulate import tabulate

from diqa_bench.pairs import CHANCE, STATISTIC, category_statistic, is_pair_domain, pair_domains


def _fmt(v, lo, hi) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if lo is None or hi is None or any(isinstance(x, float) and math.isnan(x) for x in (lo, hi)):
        return f"{v:.3f}"
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def table_rows(metrics, run_info: dict[str, Any], test: str, markdown: bool = True) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a pair domain's table: pair accuracy [CI], pairs, groups, and the
    accuracy per category when the pairs carry categories; best first; cells without results
    with their reason."""
    agg = metrics[(metrics["test"] == test) & (metrics["seed"].astype(str) == "all")] if len(metrics) else metrics
    info = run_info.get("domains", {}).get(test, {})
    cats = sorted(info.get("categories") or {})
    header = ["Method @ train set", "Pair accuracy ↑", "pairs", "unscored", "groups"] + [f"{c} ↑ (pairs)" for c in cats]
    entries: dict[tuple[str, str], dict[str, tuple]] = {}
    for r in agg.itertuples(index=False):
        if r.statistic == STATISTIC or str(r.statistic).startswith(STATISTIC + "["):
            entries.setdefault((r.method, r.train), {})[r.statistic] = (r.value, r.ci_low, r.ci_high, r.n)
    groups: dict[tuple[str, str], list[int]] = {}
    unscored: dict[tuple[str, str], list[int]] = {}
    for c in run_info.get("pair_cells", []):
        if c["test"] == test:
            groups.setdefault((c["method"], c["train"]), []).append(int(c["groups"]))
            unscored.setdefault((c["method"], c["train"]), []).append(int(c.get("unscored", 0)))
    # a row with no pair scored in any seed is all ties by absence: no judgement, ranked last
    unjudged = {k for k, e in entries.items() if STATISTIC in e and unscored.get(k) and min(unscored[k]) >= e[STATISTIC][3]}
    best = max((e[STATISTIC][0] for k, e in entries.items() if STATISTIC in e and not _isnan(e[STATISTIC][0]) and k not in unjudged), default=None)

    def sort_key(key):
        v = float("nan") if key in unjudged else entries[key].get(STATISTIC, (float("nan"),))[0]
        return (_isnan(v), -(0 if _isnan(v) else v), key)

    rows = []
    for key in sorted(entries, key=sort_key):
        e = entries[key]
        v, lo, hi, n = e.get(STATISTIC, (float("nan"),) * 4)
        u = unscored.get(key)
        text = _fmt(v, lo, hi)
        if key in unjudged:
            text = "n/a (no pair scored)"
        elif markdown and best is not None and not _isnan(v) and abs(v - best) < 1e-12:
            text = f"**{text}**"
        g = groups.get(key)
        row = [f"{key[0]} @ {key[1]}", text, "" if _isnan(n) else str(int(n)), f"{np.mean(u):.3g}" if u else "?",
               str(int(round(np.mean(g)))) if g else "?"]
        for c in cats:
            cv = e.get(category_statistic(c))
            row.append("n/a" if key in unjudged else f"{_fmt(*cv[:3])} ({int(cv[3])})" if cv else "n/a")
        rows.append(row)
    reasons: dict[tuple[str, str], str] = {}
    for c in run_info.get("cells", []):
        if c["test"] == test and c["status"] != "ok" and (c["method"], c["train"]) not in entries:
            reasons.setdefault((c["method"], c["train"]), f"{c['status']}: {c['reason']}")
    for (m, t), why in reasons.items():
        rows.append([f"{m} @ {t}", why if len(why) <= 60 else why[:59].rstrip() + "…"] + [""] * (len(header) - 2))
    return header, rows


def _isnan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def describe(run_info: dict[str, Any], test: str) -> str:
    info = run_info.get("domains", {}).get(test, {})
    cats = info.get("categories") or {}
    if info.get("pairs"):
        text = (f"Paired preference (2AFC), evaluation only: {info['pairs']} pairs in {info.get('groups', '?')} content groups"
                + (" (" + ", ".join(f"{c}: {n}" for c, n in sorted(cats.items())) + ")" if cats else "") + ". ")
    else:
        text = "Paired preference (2AFC), evaluation only: no pairs loaded (reasons below). "
    return text + (f"Pair accuracy: share of pairs where the method scores the better image higher (ties count half, and so does a pair "
                   f"with an image the method could not score: column unscored, mean over seeds); chance = {CHANCE}. "
                   "[brackets]: bootstrap interval resampling content groups with all their pairs, seeds pooled. "
                   "No split: every pair is tested for every split seed; no method trained or selected on these images.")


def terminal_section(metrics, run_info: dict[str, Any], test: str) -> str:
    header, rows = table_rows(metrics, run_info, test, markdown=False)
    return f"Test domain: {test} (paired preference; chance = {CHANCE})\n" + tabulate(rows, headers=header, tablefmt="simple", disable_numparse=True)


def protocol_lines(run_info: dict[str, Any]) -> list[str]:
    doms = sorted(pair_domains(run_info))
    if not doms:
        return []
    line = (f"- Paired preference ({', '.join(doms)}): evaluation-only pairs (better, worse); every image is scored once per method and the "
            "whole set is the test set of every split seed. PAIR_ACC = share of pairs where the direction-aligned score prefers the better "
            f"image, ties and pairs with an unscored image count half (chance {CHANCE}); interval: percentile bootstrap over content groups, each drawn group with all its pairs.")
    return [line]


def html_sections(run) -> list[str]:
    """HTML tables of the pair domains of a stored run (report.html)."""
    parts = []
    for test in run.run_info.get("config", {}).get("test_domains", []):
        if not is_pair_domain(run.run_info, test):
            continue
        header, rows = table_rows(run.metrics, run.run_info, test, markdown=False)
        head = "".join(f"<th>{_html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{_html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
        parts.append(f"<h3>Test domain: {_html.escape(test)} (paired preference, evaluation only)</h3>")
        parts.append(f'<p class="note">{_html.escape(describe(run.run_info, test))}</p>')
        parts.append(f'<table id="pairs-{_html.escape(test)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
    return parts
