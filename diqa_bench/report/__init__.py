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
- ``figures/``: every registered figure (``register_figures``; the built-in ones, registered by
  the core plugin :mod:`diqa_bench.core_plugin`: ``transfer_srocc.png``, ``transfer_deltas.png``,
  ``scatter_<test>.png``, ``per_distortion_<test>.png``, ``strata_<test>.png``; a plugin's
  ``<name>.png``), listed with its caption in the cache manifest (:func:`draw_figures`);
- ``per_distortion.csv`` (when the scores carry distortion labels);
- ``report.html``: one self-contained page (tables and figures embedded) that opens offline.

``significance_marks(folder)`` gives the leaderboard its "significantly worse than the best" marks;
``compare_runs(dir_a, dir_b)`` / ``format_comparison(df, warnings)`` compare two stored runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from diqa_bench import derived, core_plugin, extensions
from diqa_bench.files import atomic_write, frame_csv, read_csv
# as modules: each holds a function of its own name, which must not hide the submodule here
from diqa_bench.report import ablation as _ablation, agreement as _agreement, strata as _strata, figures as fig
from diqa_bench.report.compare import compare_runs, compare_transfer, format_comparison
from diqa_bench.report.significance import significance, significance_marks
from diqa_bench.report.stored import load_run, safe_name
from diqa_bench.report.transfer import read_transfer, transfer, write_transfer
from diqa_bench.plugins import CORE_PLUGIN, PluginWarning
from diqa_bench.report.figures import DPI

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
        if not isinstance(manifest.get("figures"), list):  # written before figures were registered: draw again
            return None
        return manifest
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a damaged entry: compute again


@dataclass
class DrawnFigure:
    """One image of a registered figure: ``key`` tells apart the images of a figure drawn once per
    test domain (None: one image); ``error``: why a plugin's figure has no image."""

    name: str
    key: str | None
    path: Path | None
    caption: str
    section: str
    plugin: str
    error: str | None = None


def draw_figures(run) -> list[DrawnFigure]:
    """Draw every figure in use (the registry's, :meth:`diqa_bench.plugins.Registry.in_use`; else the
    built-in ones) into ``<run>/figures/``. A plugin's figure that raises is reported (warning, and
    in report.html) and the others are still drawn; a built-in one that raises is a bug."""
    import shutil
    import warnings

    out = run.folder / "figures"
    out.mkdir(exist_ok=True)
    entries = extensions.in_use("figures") or [(spec, CORE_PLUGIN) for spec in core_plugin.registered("register_figures")]
    tests = run.test_domains()
    drawn: list[DrawnFigure] = []
    for spec, plugin in entries:
        try:
            result = extensions.resolve(spec.function)(run)
        except Exception as exc:
            if plugin == CORE_PLUGIN:
                raise
            message = f"figure {spec.name!r} of plugin {plugin!r} failed: {type(exc).__name__}: {exc}"
            warnings.warn(message, PluginWarning, stacklevel=2)
            drawn.append(DrawnFigure(spec.name, None, None, spec.caption, spec.section, plugin, message))
            continue
        for key, item in (result.items() if isinstance(result, dict) else [(None, result)]):
            if item is None:
                continue
            name = spec.name + (f"_{safe_name(str(key))}" if key is not None else "")
            if isinstance(item, (str, Path)):
                path = Path(item) if Path(item).is_absolute() else run.folder / item
                if run.folder.resolve() not in path.resolve().parents:  # the report links files of the results folder only
                    path = Path(shutil.copyfile(path, out / (name + path.suffix)))
            else:  # a matplotlib figure
                import matplotlib.pyplot as plt

                path = out / f"{name}.png"
                item.savefig(path, dpi=DPI)
                plt.close(item)
            label = str(key) if key is not None else ""
            caption = spec.caption.replace("{key}", label).replace("{mos_label}", run.mos_label(label) if label in tests else "MOS")
            drawn.append(DrawnFigure(spec.name, None if key is None else label, path, caption, spec.section, plugin))
    return drawn


def _figure_dicts(folder: Path, figures: list[DrawnFigure]) -> list[dict]:
    return [{**asdict(f), "path": str(f.path.relative_to(folder)) if f.path is not None else None} for f in figures]


def _save(folder: Path, cache: Path | None, figures: list[DrawnFigure]) -> None:
    import json

    files = {name: folder / name for name in TABLE_FILES if (folder / name).is_file()}
    files.update({str(f.path.relative_to(folder)): f.path for f in figures if f.path is not None})
    manifest = {"files": sorted(files), "figures": _figure_dicts(folder, figures)}
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
    _save(run.folder, tables_only, [])
    return run, sig, table, written


def build_report(folder: Path, cache: Path | None = None) -> list[Path]:
    """Write the tables, figures and report.html of the results folder; returns the written paths.
    ``cache``: an entry of :mod:`diqa_bench.derived` holding (or to hold) the tables and figures of
    the same stored scores; report.html is always rendered anew (it names this run's times)."""
    # lazy: html imports the leaderboard (and tabulate), which imports this package
    from diqa_bench.report.html import render
    folder = Path(folder)
    manifest = _restore(folder, cache)
    if manifest is not None:
        run = load_run(folder)
        sig, table, per = _stored_tables(folder)
        figures = [DrawnFigure(**{**d, "path": folder / d["path"] if d["path"] else None}) for d in manifest["figures"]]
        written = [folder / name for name in manifest["files"]]
        atomic_write(folder / "report.html", render(run, figures, sig, per, table))
        return [*written, folder / "report.html"]

    run, sig, table, written = build_tables(folder)
    per = fig.per_distortion(run)
    if len(per):
        atomic_write(run.folder / "per_distortion.csv", frame_csv(per))
        written.append(run.folder / "per_distortion.csv")
    figures = draw_figures(run)
    written += [f.path for f in figures if f.path is not None]
    _save(run.folder, cache, figures)
    atomic_write(run.folder / "report.html", render(run, figures, sig, per, table))
    written.append(run.folder / "report.html")
    return written
