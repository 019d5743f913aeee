"""Reports built on the stored results of a run, never recomputing a score.

``build_tables(folder)`` writes the statistical tables recomputed from the stored per-image scores:
- ``significance.csv``: each entry against the best of its test domain (the leaderboard's †);
- ``transfer.csv`` / ``transfer.json``: mixed vs single-domain training, and transfer loss;
- ``ablation.csv`` / ``ablation.json``: each variant against its base row, on the validation and
  the test splits (only for a run with variants).
- ``strata.csv``: with ``strata:`` in the config, every entry within each stratum, the worst one
  and the gap (:mod:`diqa_bench.report.strata`).
- ``agreement.csv``: with per-rater data (ratings.csv), the noise ceiling and false ranking of
  every entry of each rated test domain (:mod:`diqa_bench.report.agreement`).
``build_report(folder)`` writes those and, next to them:
- ``figures/transfer_srocc.png``, ``figures/transfer_deltas.png``, ``figures/scatter_<test>.png``,
  ``figures/per_distortion_<test>.png``, ``figures/strata_<test>.png``;
- ``per_distortion.csv`` (when the scores carry distortion labels);
- ``report.html``: one self-contained page (tables and figures embedded) that opens offline.

``significance_marks(folder)`` gives the leaderboard its "significantly worse than the best" marks;
``compare_runs(dir_a, dir_b)`` / ``format_comparison(df, warnings)`` compare two stored runs.
"""

from __future__ import annotations

from pathlib import Path

from diqa_bench import derived
from diqa_bench.files import atomic_write, frame_csv, read_csv
# as modules: each holds a function of its own name, which must not hide the submodule here
from diqa_bench.report import ablation as _ablation, agreement as _agreement, strata as _strata
from diqa_bench.report.compare import compare_runs, compare_transfer, format_comparison
from diqa_bench.report.significance import significance, significance_marks
from diqa_bench.report.stored import load_run
from diqa_bench.report.transfer import read_transfer, transfer, write_transfer

__all__ = ["build_report", "build_tables", "compare_runs", "compare_transfer", "format_comparison", "significance", "significance_marks", "transfer"]


TABLE_FILES = ("significance.csv", "transfer.csv", "transfer.json", "per_distortion.csv", "ablation.csv", "ablation.json", "strata.csv", "agreement.csv")


def _restore(folder: Path, cache: Path | None) -> dict | None:
    """Copy a cached report (tables and figures, see :mod:`diqa_bench.derived`) into ``folder``;
    returns its manifest, or None when there is no usable entry."""
    import json
    import shutil

    if not derived.hit(cache):
        return None
    try:
        manifest = json.loads(derived.read_text(cache, "manifest.json"))
        for name in manifest["files"]:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cache / name, folder / name)
        return manifest
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a damaged entry: compute again


def _save(folder: Path, cache: Path | None, figures: dict[str, Path]) -> None:
    import json

    files = {name: folder / name for name in TABLE_FILES if (folder / name).is_file()}
    files.update({str(p.relative_to(folder)): p for p in figures.values()})
    manifest = {"files": sorted(files), "figures": {k: str(p.relative_to(folder)) for k, p in figures.items()}}
    derived.store(cache, {**files, "manifest.json": json.dumps(manifest)})


def _stored_tables(folder: Path):
    """(significance, transfer, per-distortion) tables as stored in ``folder``."""
    import pandas as pd

    sig = read_csv(folder / "significance.csv", dtype={"seed": str, "method": str, "train": str, "test": str})
    per = read_csv(folder / "per_distortion.csv", dtype={"method": str, "train": str, "test": str}) if (folder / "per_distortion.csv").is_file() else pd.DataFrame()
    return sig, read_transfer(folder), per


def build_tables(folder: Path, cache: Path | None = None):
    """Write significance.csv, transfer.csv and transfer.json; returns (run, significance,
    transfer, written paths). ``cache``: an entry of :mod:`diqa_bench.derived` to reuse or fill."""
    run = load_run(Path(folder))
    # Tables alone are kept apart from a whole report's entry: a report asked for after a
    # --no-report run of the same scores would otherwise find the entry and have no figures.
    tables_only = cache.with_name(cache.name + "-tables") if cache is not None else None
    if _restore(run.folder, cache) is not None or _restore(run.folder, tables_only) is not None:
        sig, table, _ = _stored_tables(run.folder)
        return run, sig, table, [run.folder / n for n in TABLE_FILES[:3] if (run.folder / n).is_file()]
    sig = significance(run)
    atomic_write(run.folder / "significance.csv", frame_csv(sig))
    table = transfer(run)
    written = [run.folder / "significance.csv", *write_transfer(run.folder, table)]
    if run.run_info.get("config", {}).get("strata"):
        atomic_write(run.folder / "strata.csv", frame_csv(_strata.strata(run)))
        written.append(run.folder / "strata.csv")
    if (run.folder / "ratings.csv").is_file():
        atomic_write(run.folder / "agreement.csv", frame_csv(_agreement.agreement(run)))
        written.append(run.folder / "agreement.csv")
    if run.run_info.get("variants"):
        written += _ablation.write_ablation(run.folder, _ablation.ablation(run))
    _save(run.folder, tables_only, {})
    return run, sig, table, written


def build_report(folder: Path, cache: Path | None = None) -> list[Path]:
    """Write the tables, figures and report.html of the results folder; returns the written paths.
    ``cache``: an entry of :mod:`diqa_bench.derived` holding (or to hold) the tables and figures of
    the same stored scores; report.html is always rendered anew (it names this run's times)."""
    # on call: figures loads matplotlib, and html imports the leaderboard, which imports this package
    from diqa_bench.report import figures as fig
    from diqa_bench.report.html import render
    folder = Path(folder)
    manifest = _restore(folder, cache)
    if manifest is not None:
        run = load_run(folder)
        sig, table, per = _stored_tables(folder)
        figures = {k: folder / name for k, name in manifest["figures"].items()}
        written = [folder / name for name in manifest["files"]]
        atomic_write(folder / "report.html", render(run, figures, sig, per, table))
        return [*written, folder / "report.html"]

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
    layers = _strata.read_strata(run.folder)
    for test in run.test_domains():
        keep(f"strata:{test}", fig.strata_plot(layers, test, out))
    per = fig.per_distortion(run)
    if len(per):
        atomic_write(run.folder / "per_distortion.csv", frame_csv(per))
        written.append(run.folder / "per_distortion.csv")
        for test in run.test_domains():
            keep(f"distortion:{test}", fig.per_distortion_heatmap(per, test, out))
    _save(run.folder, cache, figures)
    atomic_write(run.folder / "report.html", render(run, figures, sig, per, table))
    written.append(run.folder / "report.html")
    return written
