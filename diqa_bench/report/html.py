"""A single self-contained HTML report: tables inline, figures as base64 data URIs, no external
stylesheet, script or font, so it opens offline and can be mailed as one file."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

from diqa_bench import pair_tables
from diqa_bench.leaderboard import (LITTLE_DATA, ablation_rows, adjust_phrase, data_notes, domain_warning, gate_legend, leaderboard_rows, protocol_lines,
                                    rater_facts, transfer_rows)
from diqa_bench.report.ablation import read_ablation
from diqa_bench.report.agreement import NO_RATER_DATA, agreement_rows, read_agreement
from diqa_bench.report.significance import WORSE_MARK
from diqa_bench.report.strata import read_strata, strata_rows
from diqa_bench.report.stored import StoredRun

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.3em; margin-top: 1.6em; border-bottom: 1px solid #ccc; } h3 { font-size: 1.1em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
tr.best td { font-weight: bold; } .note { color: #555; font-size: 0.9em; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
.warning { background: #fff4e5; border-left: 4px solid #e65100; padding: 0.5em 0.8em; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text))


def _table(header: list[str], rows: list[list[Any]], table_id: str, row_classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>")
    return f'<table id="{_e(table_id)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _figure(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<figure><img src="data:image/png;base64,{data}" alt="{_e(caption)}"><figcaption>{_e(caption)}</figcaption></figure>'


def _warned(row) -> bool:
    """Whether a significance row comes from a test domain with too little data."""
    w = getattr(row, "warning", "")
    return isinstance(w, str) and bool(w)


def _num(v: float, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _data_section(info: dict[str, Any]) -> list[str]:
    """'Data and raters', as in LEADERBOARD.md: preprocessing and split sources, then per rated
    dataset its counts, the rejected raters with the reason, and the inter-rater reliability.
    Rater ids and dataset names come from user files: everything is escaped. Absent when
    LEADERBOARD.md has no such section."""
    notes = data_notes(info)
    screening = info.get("screening") or {}
    if not notes and not screening:
        return []
    out = ["<h2>Data and raters</h2>"]
    if notes:
        out.append("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    for i, (name, rep) in enumerate(screening.items()):
        summary, rejected, reliability = rater_facts(rep)
        out.append(f"<h3>Raters of {_e(name)}</h3>")
        out.append(f"<p>{_e(summary)}</p>")
        if rejected:
            out.append(f"<p>Rejected {len(rejected)} of {_e(rep.get('observers'))} raters; their ratings are left out of every image's MOS:</p>")
            out.append(_table(["Rejected rater", "Images rated", "Reason"],
                              [[r.get("observer"), r.get("images_rated", ""), r.get("reason", "")] for r in rejected], f"raters-{i}"))
        else:
            out.append("<p>No rater rejected.</p>")
        if reliability:
            out.append(f"<p>{_e(reliability)}</p>")
    return out


def _ablation_section(run: StoredRun) -> list[str]:
    """The ablation tables (ablation.csv) under the transfer tables, with LEADERBOARD.md's reading rule."""
    table = read_ablation(run.folder)
    if table is None or not len(table):
        return []
    parts = ["<h2>Ablation: variants against their base</h2>",
             '<p class="note"><strong>Choose options from the validation columns only</strong> (validation groups carved from each train '
             "split, never test data); the test columns are for reporting the chosen configuration. Δ = variant - base on the same images "
             "of each split seed, mean over seeds, paired content-group bootstrap interval; better / worse: the interval excludes 0.</p>"]
    for base in dict.fromkeys(table["base"]):
        header, rows = ablation_rows(table, base)
        if rows:
            parts += [f"<h3>{_e(base)}</h3>", _table(header, rows, f"ablation-{base}")]
    return parts


def render(run: StoredRun, figures: dict[str, Path], significance, per_distortion, transfer=None) -> str:
    """The report page. ``figures``: "transfer", "deltas", "scatter:<test>", "distortion:<test>"
    -> PNG path; ``transfer``: the transfer table (see :mod:`diqa_bench.report.transfer`)."""
    info = run.run_info
    env = info.get("environment", {})
    name = info.get("name", "benchmark")
    parts = [f"<h1>diqa-bench report: {_e(name)}</h1>"]
    git = env.get("git") or {}
    parts.append(
        '<p class="note">'
        f"diqa-bench {_e(env.get('diqa_bench', '?'))}, torch {_e(env.get('torch', '?'))}, pyiqa {_e(env.get('pyiqa', '?'))}; "
        f"config hash <code>{_e(info.get('config_hash', '?'))}</code>; device {_e(env.get('device', '?'))}"
        + (f" ({_e(env['gpu'])})" if env.get("gpu") else "")
        + (f"; git {_e(str(git.get('commit'))[:12])}{' (dirty)' if git.get('dirty') else ''}" if git.get("commit") else "")
        + (f"; finished {_e(info['finished_at'])}" if info.get("finished_at") else "")
        + ". Built from the stored results (scores.csv, metrics.csv, run.json); no method was run.</p>"
    )
    marks = {}
    if significance is not None and len(significance):
        pooled = significance[significance["seed"] == "all"]
        marks = {(r.method, r.train, r.test): r.worse for r in pooled.itertuples(index=False)}

    parts.append("<h2>Leaderboard</h2>")
    parts.append(f'<p class="note">Mean ± standard deviation over split seeds [bootstrap CI of the mean, resampling content groups]. '
                 f"{WORSE_MARK}: SROCC significantly below the best entry of the test domain (paired content-group bootstrap, seeds pooled, "
                 f"{_e(adjust_phrase(info, 'the comparisons with the best entry of each test domain'))}).</p>")
    for test in run.test_domains():
        dom = info.get("domains", {}).get(test, {})
        tags = (["labels are pseudo-MOS"] if dom.get("pseudo_mos") else []) + (["synthetic images"] if dom.get("synthetic") else [])
        parts.append(f"<h3>Test domain: {_e(test)}{' (' + _e('; '.join(tags)) + ')' if tags else ''}</h3>")
        warning = domain_warning(info, test)
        if warning:
            parts.append(f'<p class="warning">{LITTLE_DATA} Warning: {_e(warning)}.</p>')
        header, rows = leaderboard_rows(run.metrics, info, test, markdown=False)
        classes = []
        for i, row in enumerate(rows):
            method, _, train = row[0].partition(" @ ")
            if marks.get((method, train, test)):
                row[0] += f" {WORSE_MARK}" + (f" {LITTLE_DATA}" if warning else "")
            classes.append("best" if i == 0 and row[1:2] and row[1] not in ("n/a", "") else "")
        parts.append(_table(header, rows, f"leaderboard-{test}", classes))
        gate = gate_legend(run.metrics, test, rows)
        if gate:
            parts.append(f'<p class="note">{_e(gate)}</p>')
    parts.extend(pair_tables.html_sections(run))  # paired-preference domains: pair accuracy tables

    if transfer is not None and len(transfer):
        parts.append("<h2>Does the train set matter?</h2>")
        parts.append('<p class="note">Δ = statistic(train set) - statistic(reference train set) on the same test images of each split seed, '
                     "mean over seeds, with a paired content-group bootstrap interval. Better / worse: the interval excludes 0 and the adjusted p "
                     f"is below 1 - confidence ({_e(adjust_phrase(info, 'the verdicts of one test domain and statistic'))}). Mixed vs "
                     "single: several domains against one; transfer loss: another domain against the in-domain one.</p>")
        if "deltas" in figures:
            parts.append(_figure(figures["deltas"], "Paired differences with their intervals per method, train set and test domain; colour = verdict"))
        for test in run.test_domains():
            header, rows = transfer_rows(transfer, test)
            if rows:
                parts.append(f"<h3>Transfer on {_e(test)}</h3>")
                parts.append(_table(header, rows, f"transfer-{test}"))

    layers = read_strata(run.folder)
    if layers is not None and len(layers):
        parts.append("<h2>Strata</h2>")
        parts.append('<p class="note">SROCC within each stratum (mean over split seeds [content-group bootstrap interval]); '
                     f"{LITTLE_DATA}: a stratum with too little data. Worst stratum and the gap between the best and the worst, with its "
                     "interval from the same group draws. All values, PLCC too: strata.csv.</p>")
        for test in run.test_domains():
            if f"strata:{test}" in figures:
                parts.append(_figure(figures[f"strata:{test}"], f"SROCC within each stratum on test domain {test}, with intervals"))
            for column in dict.fromkeys(layers[layers["test"] == test]["column"]):
                header, rows = strata_rows(layers, test, column)
                if rows:
                    parts.append(f"<h3>Strata on {_e(test)}: by {_e(column)}</h3>")
                    parts.append(_table(header, rows, f"strata-{test}-{column}"))
    parts.extend(_agreement_section(run))
    parts.extend(_ablation_section(run))

    if "transfer" in figures:
        parts.append("<h2>Cross-domain transfer</h2>")
        parts.append(_figure(figures["transfer"], "SROCC by train set (rows) and test domain (columns), mean over split seeds with bootstrap CI"))

    if significance is not None and len(significance):
        parts.append("<h2>Significance against the best entry</h2>")
        pooled = significance[significance["seed"] == "all"]
        rows = [[r.test, f"{r.best_method} @ {r.best_train}", f"{r.method} @ {r.train}", _num(r.delta), f"[{_num(r.ci_low)}, {_num(r.ci_high)}]",
                 _num(r.p_value), _num(getattr(r, "p_adjusted", float("nan"))), ("yes " + WORSE_MARK if r.worse else "no") + (f" {LITTLE_DATA} too little data" if _warned(r) else ""), r.n]
                for r in pooled.itertuples(index=False)]
        parts.append(_table(["Test domain", "Best", "Compared", "ΔSROCC (best - compared)", "CI", "p", "p adjusted", "Significantly worse", "n per seed"],
                            rows, "significance"))

    for test in run.test_domains():
        key = f"scatter:{test}"
        if key in figures:
            parts.append(f"<h2>Predictions vs MOS: {_e(test)}</h2>")
            parts.append(_figure(figures[key], f"Score vs {run.mos_label(test)} on test domain {test}, with the fitted VQEG logistic"))

    if per_distortion is not None and len(per_distortion):
        parts.append("<h2>Per-distortion breakdown</h2>")
        for test in run.test_domains():
            key = f"distortion:{test}"
            if key in figures:
                parts.append(_figure(figures[key], f"SROCC within each distortion type and level, test domain {test}"))
        rows = [[r.test, f"{r.method} @ {r.train}", r.by, r.group, _num(r.SROCC), _num(r.std), r.n, r.seeds] for r in per_distortion.itertuples(index=False)]
        parts.append(_table(["Test domain", "Method @ train set", "By", "Group", "SROCC", "std over seeds", "n per seed", "seeds"], rows, "per-distortion"))

    parts.append("<h2>Protocol</h2><ul>" + "".join(f"<li>{_e(line[2:] if line.startswith('- ') else line)}</li>" for line in protocol_lines(info)) + "</ul>")
    parts.extend(_data_section(info))
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>diqa-bench report: {_e(name)}</title>'
            f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")


def _agreement_section(run: StoredRun) -> list[str]:
    """Human agreement per MOS test domain (:mod:`diqa_bench.report.agreement`): the noise ceiling
    and false-ranking table, or one line saying there is no per-rater data."""
    table = read_agreement(run.folder)
    parts = ["<h2>Human agreement</h2>"]
    for test in run.test_domains():
        sentence, header, rows = agreement_rows(table, test)
        if not rows:
            pseudo = " (pseudo-MOS labels)" if run.run_info.get("domains", {}).get(test, {}).get("pseudo_mos") else ""
            parts.append(f'<p class="note">{_e(test)}: {NO_RATER_DATA}{_e(pseudo)}, so no noise ceiling or false-ranking analysis.</p>')
            continue
        parts.append(f"<h3>Human agreement on {_e(test)}</h3>")
        parts.append(f'<p class="note">{_e(sentence)}. Like one rater: the SROCC interval reaches the ceiling. False ranking, ties, C0: '
                     "shares of the significantly different pairs ranked the wrong way round, tied, right; AUCs after Krasula et al. "
                     "(QoMEX 2016). All values: agreement.csv.</p>")
        parts.append(_table(header, rows, f"agreement-{test}"))
    return parts if len(parts) > 1 else []
