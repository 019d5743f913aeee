"""Figures of a stored run (matplotlib, Agg backend, imported only when a report is built).

- ``transfer_srocc.png``: one panel per method, train set (rows) x test domain (columns), mean SROCC
  over split seeds with its CI in each cell; every panel on the same colour scale and cell size;
  zero-shot methods are a single row "-".
- ``scatter_<test>.png``: per test domain, a grid with one panel per method @ train set: score vs
  MOS (all split seeds), the fitted VQEG logistic, SROCC/PLCC (mean over seeds) in the title.
- ``per_distortion_<test>.png``: SROCC within each distortion type and within each level.
- ``strata_<test>.png``: with ``strata:`` in the config, the SROCC of each stratum with its interval.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from diqa_bench.report.stored import StoredRun, safe_name, srocc
from diqa_bench.stats import fit_logistic
from diqa_bench.report.strata import GAP, WORST, read_strata
from diqa_bench.report.transfer import read_transfer
from diqa_bench.files import read_csv

DPI = 120
CELL_W, CELL_H = 1.25, 0.62  # inches per heatmap cell: room for "0.912" and "[0.851, 0.950]"


# The built-in figures as the core plugin registers them (diqa_bench.core_plugin): each takes the
# stored run and draws into its figures/ folder, returning the file (or one per test domain).

def figure_transfer(run: StoredRun) -> Path | None:
    return transfer_heatmap(run, run.folder / "figures")


def figure_deltas(run: StoredRun) -> Path | None:

    return transfer_forest(read_transfer(run.folder), run, run.folder / "figures")


def figure_scatter(run: StoredRun) -> dict[str, Path | None]:
    return {test: scatter_grid(run, test, run.folder / "figures") for test in run.test_domains()}


def figure_strata(run: StoredRun) -> dict[str, Path | None]:

    layers = read_strata(run.folder)
    return {test: strata_plot(layers, test, run.folder / "figures") for test in run.test_domains()}


def figure_per_distortion(run: StoredRun) -> dict[str, Path | None]:
    path = run.folder / "per_distortion.csv"  # written by build_report just before the figures
    if not path.is_file():
        return {}

    per = read_csv(path, dtype={"method": str, "train": str, "test": str})
    return {test: per_distortion_heatmap(per, test, run.folder / "figures") for test in run.test_domains()}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _entries(run: StoredRun) -> list[tuple[str, list[str]]]:
    """Methods with their train sets ("-" for zero-shot), both in the order the run stored them."""
    agg = run.aggregate("SROCC")
    order: dict[str, list[str]] = {}
    for r in agg.itertuples(index=False):
        order.setdefault(r.method, [])
        if r.train not in order[r.method]:
            order[r.method].append(r.train)
    for c in run.run_info.get("cells", []):  # failed entries have no metrics but keep their row
        order.setdefault(c["method"], [])
        if c["train"] not in order[c["method"]]:
            order[c["method"]].append(c["train"])
    return list(order.items())


def _text_colour(rgba) -> str:
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _fmt_cell(value: float, lo: float, hi: float) -> str:
    if not np.isfinite(value):
        return "n/a"
    if np.isfinite(lo) and np.isfinite(hi):
        return f"{value:.3f}\n[{lo:.2f}, {hi:.2f}]"
    return f"{value:.3f}"


def transfer_heatmap(run: StoredRun, out: Path) -> Path | None:
    """All methods side by side on one colour scale; None when the run has no results."""
    plt = _pyplot()
    from matplotlib import colors

    agg = run.aggregate("SROCC")
    tests = run.test_domains()
    entries = _entries(run)
    if not entries or not tests:
        return None
    lookup = {(r.method, r.train, r.test): (r.value, r.ci_low, r.ci_high) for r in agg.itertuples(index=False)}
    missing = {(c["method"], c["train"], c["test"]): c["status"] for c in run.run_info.get("cells", []) if c["status"] != "ok"}
    values = [v[0] for v in lookup.values() if np.isfinite(v[0])]
    vmin = min(0.0, math.floor(min(values) * 10) / 10) if values else 0.0
    norm = colors.Normalize(vmin=vmin, vmax=1.0)
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")

    # Layout in inches: panels top-aligned, each cell the same size, row labels left of each panel.
    label_ws = [max(len(t) for t in ts) * 0.085 + 0.45 for _, ts in entries]
    gap, top, bottom, bar_w = 0.35, 0.75, 0.6, 0.9
    panel_w = [lw + CELL_W * len(tests) for lw in label_ws]
    max_rows = max(len(ts) for _, ts in entries)
    fig_w = max(7.5, sum(panel_w) + gap * (len(entries) - 1) + bar_w + 0.3)  # room for the title
    fig_h = top + CELL_H * max(2, max_rows) + bottom  # and for a readable colour bar
    fig = plt.figure(figsize=(fig_w, fig_h), dpi=DPI)
    x = 0.0
    image = None
    for (method, trains), pw, label_w in zip(entries, panel_w, label_ws):
        grid = np.array([[lookup.get((method, t, d), (np.nan,))[0] for d in tests] for t in trains], float)
        h = CELL_H * len(trains)
        ax = fig.add_axes([(x + label_w) / fig_w, (fig_h - top - h) / fig_h, (pw - label_w) / fig_w, h / fig_h])
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto")
        for i, t in enumerate(trains):
            for j, d in enumerate(tests):
                v, lo, hi = lookup.get((method, t, d), (np.nan, np.nan, np.nan))
                colour = _text_colour(cmap(norm(v))) if np.isfinite(v) else "black"
                text = _fmt_cell(v, lo, hi) if (method, t, d) in lookup else missing.get((method, t, d), "n/a")
                ax.text(j, i, text, ha="center", va="center", fontsize=8, color=colour)
        ax.set_xticks(range(len(tests)), tests, fontsize=9)
        ax.set_yticks(range(len(trains)), trains, fontsize=9)
        ax.tick_params(length=0)
        ax.set_xlabel("test domain", fontsize=9)
        ax.set_ylabel("train set" if trains != ["-"] else "zero-shot", fontsize=9)
        ax.set_title(method, fontsize=10, pad=6)
        x += pw + gap
    cax = fig.add_axes([(x - gap + 0.25) / fig_w, bottom / fig_h, 0.18 / fig_w, (fig_h - top - bottom) / fig_h])
    fig.colorbar(image, cax=cax).set_label("SROCC", fontsize=9)
    cax.tick_params(labelsize=8)
    fig.suptitle("Cross-domain transfer: SROCC [CI], mean over split seeds", fontsize=11, x=0.02, ha="left", y=1 - 0.2 / fig_h)
    path = out / "transfer_srocc.png"
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def scatter_grid(run: StoredRun, test: str, out: Path) -> Path | None:
    """Score vs MOS for every entry on one test domain; None when nothing was scored there."""
    plt = _pyplot()

    cells = run.cells()
    entries = [(m, t) for m, ts in _entries(run) for t in ts if any(k[:3] == (m, t, test) for k in cells)]
    if not entries:
        return None
    agg = {(r.method, r.train, r.statistic): r.value for r in run.metrics[(run.metrics["test"] == test) & (run.metrics["seed"].astype(str) == "all")].itertuples(index=False)}
    ncols = min(4, len(entries))
    nrows = math.ceil(len(entries) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.3 * nrows + 0.6), dpi=DPI, squeeze=False)
    mos_label = run.mos_label(test)
    seed_colours = plt.get_cmap("tab10")
    for ax, (method, train) in zip(axes.flat, entries):
        parts = [(k[3], c) for k, c in sorted(cells.items()) if k[:3] == (method, train, test)]
        for i, (seed, c) in enumerate(parts):
            ax.scatter(c.score, c.eval_mos, s=9, alpha=0.6, color=seed_colours(i % 10), label=f"seed {seed}", linewidths=0, rasterized=len(c.score) > 2000)
        score = np.concatenate([c.score for _, c in parts])
        mos = np.concatenate([c.eval_mos for _, c in parts])
        lower = parts[0][1].lower_better
        aligned = -score if lower else score
        if np.ptp(score) > 0:
            mapping = fit_logistic(aligned, mos)
            xs = np.linspace(score.min(), score.max(), 200)
            ax.plot(xs, mapping(-xs if lower else xs), color="black", lw=1.4, label="logistic fit" if mapping.kind == "logistic4" else "linear fit")
        s, p = agg.get((method, train, "SROCC"), np.nan), agg.get((method, train, "PLCC"), np.nan)
        ax.set_title(f"{method} @ {train}\nSROCC {s:.3f}  PLCC {p:.3f}", fontsize=9)
        ax.set_xlabel("score (" + ("lower = better" if lower else "higher = better") + ")", fontsize=8)
        ax.set_ylabel(_eval_label(run, test, mos_label), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="best", frameon=False)
    for ax in axes.flat[len(entries):]:
        ax.set_visible(False)
    fig.suptitle(f"Test domain {test}: predicted score vs {mos_label} (all split seeds; SROCC/PLCC = mean over seeds)", fontsize=10)
    fig.tight_layout()
    path = out / f"scatter_{safe_name(test)}.png"
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _eval_label(run: StoredRun, test: str, mos_label: str) -> str:
    """DMOS is shown negated (the cells are judged on it that way): say so on the axis."""
    sets = run.domain_datasets(test)
    if len(sets) == 1 and sets[0].get("lower_better"):
        return f"-{mos_label} (higher = better)"
    return mos_label


def per_distortion(run: StoredRun):
    """SROCC of every entry within each distortion type and within each level, per test domain
    (mean over split seeds of the per-seed SROCC; n = images per seed, averaged). Empty when the
    stored scores carry no distortion labels."""
    import pandas as pd

    columns = ["test", "method", "train", "by", "group", "SROCC", "std", "n", "seeds"]
    rows = []
    for (method, train, test, seed), c in run.cells().items():
        for by, labels in (("distortion", c.distortion), ("level", c.level)):
            for group in sorted({g for g in labels if g not in ("", "nan")}, key=_natural):
                mask = labels == group
                value = srocc(c.aligned_score[mask], c.eval_mos[mask]) if mask.sum() >= 3 else float("nan")
                rows.append((test, method, train, by, group, value, int(mask.sum())))
    if not rows:
        return pd.DataFrame(columns=columns)
    df = pd.DataFrame(rows, columns=["test", "method", "train", "by", "group", "SROCC", "n"])
    out = df.groupby(["test", "method", "train", "by", "group"], sort=False).agg(
        SROCC=("SROCC", "mean"), std=("SROCC", "std"), n=("n", "mean"), seeds=("SROCC", "size")).reset_index()
    out["n"] = out["n"].round().astype(int)
    return out[columns]


def _natural(label: str):
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def per_distortion_heatmap(table, test: str, out: Path) -> Path | None:
    """Rows method @ train set; one panel of distortion types and one of levels."""
    plt = _pyplot()
    from matplotlib import colors

    sub = table[table["test"] == test]
    if sub.empty:
        return None
    entries = list(dict.fromkeys(zip(sub["method"], sub["train"])))
    labels = [f"{m} @ {t}" for m, t in entries]
    panels = [(by, list(dict.fromkeys(sub[sub["by"] == by]["group"]))) for by in ("distortion", "level")]
    panels = [(by, groups) for by, groups in panels if groups]
    norm = colors.Normalize(vmin=-1.0, vmax=1.0)  # within-group SROCC can go negative
    cmap = plt.get_cmap("RdBu").with_extremes(bad="#dddddd")
    label_w = max(len(s) for s in labels) * 0.075 + 0.4
    rotated = [max(len(g) for g in groups) > 8 for _, groups in panels]  # long names are tilted, not widened
    widths = [0.75 if rot else max(0.6, max(len(g) for g in groups) * 0.075 + 0.3) for rot, (_, groups) in zip(rotated, panels)]
    bottom = 0.45 + (max(len(g) for _, groups in panels for g in groups) * 0.035 if any(rotated) else 0.0)
    fig_w = label_w + sum(w * len(g) for w, (_, g) in zip(widths, panels)) + 0.5 * len(panels) + 0.9
    fig_h = bottom + 0.65 + 0.42 * len(entries)
    fig = plt.figure(figsize=(fig_w, fig_h), dpi=DPI)
    x = label_w
    image = None
    lookup = {(r.method, r.train, r.by, r.group): (r.SROCC, r.n) for r in sub.itertuples(index=False)}
    for i, ((by, groups), w) in enumerate(zip(panels, widths)):
        grid = np.array([[lookup.get((m, t, by, g), (np.nan, 0))[0] for g in groups] for m, t in entries], float)
        pw = w * len(groups)
        ax = fig.add_axes([x / fig_w, bottom / fig_h, pw / fig_w, (fig_h - bottom - 0.65) / fig_h])
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto")
        for r in range(len(entries)):
            for j in range(len(groups)):
                v = grid[r, j]
                ax.text(j, r, f"{v:.2f}" if np.isfinite(v) else "n/a", ha="center", va="center", fontsize=8,
                        color=_text_colour(cmap(norm(v))) if np.isfinite(v) else "black")
        ax.set_xticks(range(len(groups)), groups, fontsize=8, rotation=30 if rotated[i] else 0, ha="right" if rotated[i] else "center",
                      rotation_mode="anchor")
        ax.set_yticks(range(len(entries)), labels if i == 0 else [""] * len(entries), fontsize=8)
        ax.tick_params(length=0)
        ax.set_title(f"by {by}", fontsize=9)
        ax.set_xlabel("distortion type" if by == "distortion" else "distortion level", fontsize=8)
        x += pw + 0.5
    cax = fig.add_axes([(x - 0.3) / fig_w, bottom / fig_h, 0.15 / fig_w, (fig_h - bottom - 0.65) / fig_h])
    fig.colorbar(image, cax=cax).set_label("SROCC within group", fontsize=8)
    cax.tick_params(labelsize=7)
    fig.suptitle(f"Test domain {test}: SROCC within each distortion type and level (mean over split seeds)", fontsize=10, x=0.02, ha="left")
    path = out / f"per_distortion_{safe_name(test)}.png"
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


VERDICT_COLOURS = {"better": "#1a7f37", "worse": "#c62828", "no detectable difference": "#6e6e6e", "not testable": "#b0b0b0"}


def transfer_forest(table, run: StoredRun, out: Path) -> Path | None:
    """Forest plot of the transfer table: one row per method x (train set vs reference), one
    column of panels per statistic, one band of rows per test domain; a dot at the mean Δ over
    seeds, a bar for its paired content-group interval, coloured by verdict. None when the table
    is empty."""
    if table is None or not len(table):
        return None
    plt = _pyplot()
    from matplotlib.lines import Line2D

    names = list(dict.fromkeys(table["statistic"]))
    tests = [t for t in run.test_domains() if (table["test"] == t).any()] or list(dict.fromkeys(table["test"]))
    labels: list[str] = []
    ypos: dict[tuple, float] = {}
    bands = []
    y = 0.0
    for test in tests:
        sub = table[table["test"] == test]
        header = y  # a row of its own for the test domain's name
        y += 1
        for key in dict.fromkeys(zip(sub["method"], sub["train"], sub["reference_train"])):
            ypos[(test,) + key] = y
            labels.append(f"{key[0]}: {key[1]} vs {key[2]}")
            y += 1
        bands.append((test, header, y - 1, bool(str(sub["warning"].iloc[0] or "") not in ("", "nan"))))
        y += 0.3  # gap between test domains
    label_w = max(len(s) for s in labels) * 0.075 + 1.0
    fig_w = label_w + 3.6 * len(names) + 0.4
    fig_h = 1.3 + 0.32 * y
    fig, axes = plt.subplots(1, len(names), figsize=(fig_w, fig_h), dpi=DPI, sharey=True, sharex=True, squeeze=False)
    conf = int(round(100 * run.protocol.get("confidence", 0.95)))
    for ax, name in zip(axes[0], names):
        sub = table[table["statistic"] == name]
        for r in sub.itertuples(index=False):
            yy = ypos.get((r.test, r.method, r.train, r.reference_train))
            if yy is None or not np.isfinite(r.value):
                continue
            colour = VERDICT_COLOURS.get(r.verdict, "black")
            if np.isfinite(r.ci_low) and np.isfinite(r.ci_high):
                ax.plot([r.ci_low, r.ci_high], [yy, yy], color=colour, lw=2.2, solid_capstyle="butt")
            ax.plot([r.value], [yy], "o", ms=6, markeredgecolor=colour, markeredgewidth=1.4,
                    markerfacecolor=colour if r.comparison == "mixed vs single" else "white", zorder=3)
        ax.axvline(0, color="black", lw=0.8)
        for test, lo, hi, warn in bands:
            ax.axhspan(lo - 0.5, hi + 0.5, color="#f4f4f4" if tests.index(test) % 2 == 0 else "white", zorder=-1)
        ax.set_xlabel(f"Δ{name} (train set - reference), {conf}% CI", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(f"Δ{name}", fontsize=9)
    ax0 = axes[0][0]
    ax0.set_yticks([ypos[k] for k in ypos], labels, fontsize=7)
    ax0.set_ylim(y - 0.3 + 0.5 - 0.3, -0.6)
    for ax in axes[0]:
        for test, lo, hi, warn in bands:
            ax.annotate(f"test domain: {test}" + ("  (⚠ too little data)" if warn else ""), xy=(0.01, lo), xycoords=("axes fraction", "data"),
                        fontsize=8, fontweight="bold", va="center", ha="left", color="#c62828" if warn else "black")
    handles = [Line2D([], [], color=c, marker="o", lw=2, label=v) for v, c in VERDICT_COLOURS.items()]
    handles += [Line2D([], [], color="black", marker="o", lw=0, label="mixed vs single"),
                Line2D([], [], color="black", marker="o", lw=0, markerfacecolor="white", label="transfer loss (vs in-domain)")]
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=7, frameon=False)
    fig.suptitle("Does the train set matter? Paired differences on the same test images (mean over split seeds)", fontsize=10, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0.45 / fig_h, 1, 1 - 0.1 / fig_h))
    path = out / "transfer_deltas.png"
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def strata_plot(table, test: str, out: Path) -> Path | None:
    """Per test domain, one panel per strata column: a row per method @ train set, the SROCC of
    each stratum (dot, coloured by stratum) with its content-group interval (bar); a hollow dot
    for a stratum with too little data. None when the table has no stratum of this domain."""
    if table is None or not len(table):
        return None
    sub = table[(table["test"] == test) & (table["statistic"] == "SROCC") & ~table["stratum"].str.startswith((WORST + ":", GAP + ":"))]
    if not len(sub):
        return None
    plt = _pyplot()
    columns = list(dict.fromkeys(sub["column"]))
    entries = list(dict.fromkeys(zip(sub["method"], sub["train"])))
    labels = [f"{m} @ {t}" for m, t in entries]
    label_w = max(len(s) for s in labels) * 0.075 + 0.6
    fig_w = label_w + 3.8 * len(columns) + 0.4
    legend_rows = max(math.ceil(sub[sub["column"] == c]["stratum"].nunique() / 3) for c in columns)
    fig_h = 1.8 + 0.45 * len(entries) + 0.2 * legend_rows  # the legend sits under each panel, never on the data
    fig, axes = plt.subplots(1, len(columns), figsize=(fig_w, fig_h), dpi=DPI, sharey=True, squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, column in zip(axes[0], columns):
        part = sub[sub["column"] == column]
        names = list(dict.fromkeys(part["stratum"]))
        offsets = np.linspace(-0.3, 0.3, len(names)) if len(names) > 1 else np.zeros(1)
        for j, name in enumerate(names):
            colour = cmap(j % 10)
            for r in part[part["stratum"] == name].itertuples(index=False):
                y = entries.index((r.method, r.train)) + offsets[j]
                if not np.isfinite(r.value):
                    continue
                if np.isfinite(r.ci_low) and np.isfinite(r.ci_high):
                    ax.plot([r.ci_low, r.ci_high], [y, y], color=colour, lw=1.6)
                warned = str(r.warning or "") not in ("", "nan")
                ax.plot([r.value], [y], "o", ms=5, color=colour, markerfacecolor="white" if warned else colour, zorder=3)
            ax.plot([], [], "o", color=colour, label=name)
        ax.set_title(f"by {column}", fontsize=9)
        ax.set_xlabel("SROCC within stratum [CI]", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.5 / (fig_h - 1.0) - 0.12), frameon=False, ncol=3)
    axes[0][0].set_yticks(range(len(entries)), labels, fontsize=7)
    axes[0][0].set_ylim(len(entries) - 0.5, -0.5)
    fig.suptitle(f"Test domain {test}: SROCC within each stratum (mean over split seeds; hollow: too little data)", fontsize=10, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.25 / fig_h))
    path = out / f"strata_{safe_name(test)}.png"
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
