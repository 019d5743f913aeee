"""Reports built on the stored results of a run, never recomputing a score.

``build_report(folder)`` writes, next to the run's results:
- ``figures/transfer_srocc.png``, ``figures/scatter_<test>.png``, ``figures/per_distortion_<test>.png``;
- ``per_distortion.csv`` (when the scores carry distortion labels) and ``significance.csv``;
- ``report.html``: one self-contained page (tables and figures embedded) that opens offline.

``significance_marks(folder)`` gives the leaderboard its "significantly worse than the best" marks;
``compare_runs(dir_a, dir_b)`` / ``format_comparison(df, warnings)`` compare two stored runs.
"""

from __future__ import annotations

from pathlib import Path

from diqa_bench.report.compare import compare_runs, format_comparison
from diqa_bench.report.significance import significance, significance_marks

__all__ = ["build_report", "compare_runs", "format_comparison", "significance", "significance_marks"]


def build_report(folder: Path) -> list[Path]:
    """Write the figures, tables and report.html of the results folder; returns the written paths."""
    from diqa_bench.report import figures as fig
    from diqa_bench.report.html import render
    from diqa_bench.report.stored import load_run
    from diqa_bench.results import atomic_write

    run = load_run(Path(folder))
    out = run.folder / "figures"
    out.mkdir(exist_ok=True)
    written: list[Path] = []
    figures: dict[str, Path] = {}

    def keep(key: str, path: Path | None) -> None:
        if path is not None:
            figures[key] = path
            written.append(path)

    keep("transfer", fig.transfer_heatmap(run, out))
    for test in run.test_domains():
        keep(f"scatter:{test}", fig.scatter_grid(run, test, out))
    table = fig.per_distortion(run)
    if len(table):
        atomic_write(run.folder / "per_distortion.csv", table.to_csv(index=False))
        written.append(run.folder / "per_distortion.csv")
        for test in run.test_domains():
            keep(f"distortion:{test}", fig.per_distortion_heatmap(table, test, out))
    sig = significance(run)
    atomic_write(run.folder / "significance.csv", sig.to_csv(index=False))
    written.append(run.folder / "significance.csv")
    atomic_write(run.folder / "report.html", render(run, figures, sig, table))
    written.append(run.folder / "report.html")
    return written
