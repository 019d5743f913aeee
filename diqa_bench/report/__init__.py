"""Reports built on the stored results of a run, never recomputing a score.

``build_tables(folder)`` writes the statistical tables recomputed from the stored per-image scores:
- ``significance.csv``: each entry against the best of its test domain (the leaderboard's †);
- ``transfer.csv`` / ``transfer.json``: mixed vs single-domain training, and transfer loss.
``build_report(folder)`` writes those and, next to them:
- ``figures/transfer_srocc.png``, ``figures/transfer_deltas.png``, ``figures/scatter_<test>.png``,
  ``figures/per_distortion_<test>.png``;
- ``per_distortion.csv`` (when the scores carry distortion labels);
- ``report.html``: one self-contained page (tables and figures embedded) that opens offline.

``significance_marks(folder)`` gives the leaderboard its "significantly worse than the best" marks;
``compare_runs(dir_a, dir_b)`` / ``format_comparison(df, warnings)`` compare two stored runs.
"""

from __future__ import annotations

from pathlib import Path

from diqa_bench.report.compare import compare_runs, compare_transfer, format_comparison
from diqa_bench.report.significance import significance, significance_marks
from diqa_bench.report.transfer import transfer

__all__ = ["build_report", "build_tables", "compare_runs", "compare_transfer", "format_comparison", "significance", "significance_marks", "transfer"]


def build_tables(folder: Path):
    """Write significance.csv, transfer.csv and transfer.json; returns (run, significance,
    transfer, written paths)."""
    from diqa_bench.report.stored import load_run
    from diqa_bench.report.transfer import write_transfer
    from diqa_bench.results import atomic_write

    run = load_run(Path(folder))
    sig = significance(run)
    atomic_write(run.folder / "significance.csv", sig.to_csv(index=False))
    table = transfer(run)
    written = [run.folder / "significance.csv", *write_transfer(run.folder, table)]
    return run, sig, table, written


def build_report(folder: Path) -> list[Path]:
    """Write the tables, figures and report.html of the results folder; returns the written paths."""
    from diqa_bench.report import figures as fig
    from diqa_bench.report.html import render
    from diqa_bench.results import atomic_write

    run, sig, table, written = build_tables(folder)
    out = run.folder / "figures"
    out.mkdir(exist_ok=True)
    figures: dict[str, Path] = {}

    def keep(key: str, path: Path | None) -> None:
        if path is not None:
            figures[key] = path
            written.append(path)

    keep("transfer", fig.transfer_heatmap(run, out))
    keep("deltas", fig.transfer_forest(table, run, out))
    for test in run.test_domains():
        keep(f"scatter:{test}", fig.scatter_grid(run, test, out))
    per = fig.per_distortion(run)
    if len(per):
        atomic_write(run.folder / "per_distortion.csv", per.to_csv(index=False))
        written.append(run.folder / "per_distortion.csv")
        for test in run.test_domains():
            keep(f"distortion:{test}", fig.per_distortion_heatmap(per, test, out))
    atomic_write(run.folder / "report.html", render(run, figures, sig, per, table))
    written.append(run.folder / "report.html")
    return written
