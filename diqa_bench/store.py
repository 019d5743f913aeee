"""The results store: where a run's files go, and how they are read back.

A run writes into a hidden sibling folder (:func:`staging_folder`) and :func:`publish_results`
swaps it in when the run is complete, so an interrupted or crashed re-run never replaces finished
results with fewer cells. One run at a time per folder: :func:`results_lock`. :data:`RESULT_FILES`
names the main files of every results folder; :func:`load_results` reads metrics.csv and run.json
back for re-rendering without recomputing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock, Timeout

from diqa_bench.errors import UserError
from diqa_bench.files import atomic_write, current_umask, read_csv
from diqa_bench.tables import METRIC_COLUMNS
from diqa_bench.version import __version__

# The main files of a results folder, by the key :func:`diqa_bench.runner.run_benchmark` returns
# their paths under (the report's own files are named in :mod:`diqa_bench.report`).
RESULT_FILES = {"scores": Path("scores.csv"), "metrics": Path("metrics.csv"), "metrics_json": Path("metrics.json"), "run": Path("run.json"),
                "leaderboard": Path("LEADERBOARD.md")}

# The validation phase's scores.csv, metrics.csv and metrics.json (splits.validation): kept apart
# from the main tables, so no leaderboard row, †, threshold or gate ever reads them.
VALIDATION_DIR = "validation"


def results_lock(out: Path):
    """Hold an exclusive lock on the results folder ``out`` (a lock file beside it), or raise a
    one-line UserError when another run holds it. Release it with ``.release()``."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(out.parent / f".{out.name}.lock"), timeout=0)
        lock.acquire()
    except Timeout:
        raise UserError(f"another diqa-bench run is writing to {out}; wait for it to finish or choose another --out") from None
    except OSError as exc:
        raise UserError(f"cannot write results to {out}: {exc.strerror or exc}") from None
    return lock


# The file a run writes into every results folder (and <out>.partial). A run replaces a folder only
# when it holds this file, or nothing at all: a folder of the user's that merely looks like results
# (a run.json, models/, figures/) is never deleted.
RESULTS_MARKER = ".diqa-bench-results"


MARKER_TEXT = "diqa-bench results"


def is_results_folder(folder: Path) -> bool:
    """True when ``folder`` was written by a diqa-bench run (it holds the marker file)."""
    marker = Path(folder) / RESULTS_MARKER
    try:
        if marker.is_symlink() or not marker.is_file():
            return False
        with open(marker, encoding="utf-8", errors="replace") as f:
            return f.read(len(MARKER_TEXT)) == MARKER_TEXT
    except OSError:
        return False


def replaceable(folder: Path) -> bool:
    """A path a run may put its results at: nothing there, an empty folder, or a marked one."""
    folder = Path(folder)
    if not folder.exists():
        return True
    if not folder.is_dir():
        return False
    try:
        return is_results_folder(folder) or not any(folder.iterdir())
    except OSError:
        return False


def _refuse_unless_replaceable(folder: Path, why: str = "") -> None:
    if replaceable(folder):
        return
    if not folder.is_dir():
        raise UserError(f"cannot write results to {folder}{why}: it exists and is not a folder")
    raise UserError(f"cannot write results to {folder}{why}: it holds files but is no results folder written by diqa-bench "
                    f"(no {RESULTS_MARKER} file in it), and a run replaces the whole folder; choose a new or empty one "
                    "(results of an older diqa-bench: delete the folder or move it aside first)")


def holds_finished_results(folder: Path) -> bool:
    """A marked results folder of a run that was not interrupted."""
    if not is_results_folder(folder) or not (Path(folder) / "run.json").is_file():
        return False
    try:
        return not json.loads((Path(folder) / "run.json").read_text()).get("interrupted", False)
    except (OSError, ValueError, AttributeError):
        return False


def scored_cells(folder: Path) -> int:
    """How many cells of the results in ``folder`` have scores (0 when run.json cannot be read)."""
    try:
        cells = json.loads((Path(folder) / "run.json").read_text()).get("cells") or []
        return sum(isinstance(c, dict) and c.get("status") == "ok" for c in cells)
    except (OSError, ValueError, AttributeError):
        return 0


def partial_folder(out: Path) -> Path:
    """Where an interrupted run goes when ``out`` holds finished results."""
    return out.with_name(out.name + ".partial")


def check_results_folder(out: Path) -> None:
    """Refuse, before the lock file beside it is made and before any work, a results folder that a
    run must not replace as a whole: the file system's root, the current folder or one above it."""
    out = Path(os.path.abspath(out))
    if out == out.parent:
        raise UserError(f"cannot write results to {out}: a run replaces its results folder as a whole; choose a folder such as results/NAME")
    here = Path(os.path.abspath(os.curdir))
    if out == here or out in here.parents:
        raise UserError(f"cannot write results to {out}: it is the current folder{'' if out == here else ' or holds it'}, and a run replaces "
                        "its results folder as a whole; choose a folder below it, such as results/NAME")
    if out.exists() and not out.is_dir():
        raise UserError(f"cannot write results to {out}: it exists and is not a folder")


def staging_folder(out: Path) -> Path:
    """A new hidden folder beside ``out`` for this run's results, marked as a results folder; also
    checks, before any work, that results can be written there: ``out`` (and ``<out>.partial``,
    should this run be interrupted) must be free, empty or a results folder."""
    out = Path(out)
    check_results_folder(out)
    _refuse_unless_replaceable(out)
    if holds_finished_results(out):
        _refuse_unless_replaceable(partial_folder(out), f" (where an interrupted run would write, beside the finished results in {out})")
    stage = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.incomplete-"))
        stage.chmod(0o777 & ~current_umask())
        atomic_write(stage / RESULTS_MARKER, f"{MARKER_TEXT}, format 1\nwritten by diqa-bench {__version__}: a run replaces this whole folder\n")
        return stage
    except OSError as exc:
        if stage is not None:  # a full disk: no empty staging folder is left behind
            shutil.rmtree(stage, ignore_errors=True)
        raise UserError(f"cannot write results to {out}: {exc.strerror or exc}") from None


def publish_results(stage: Path, out: Path, complete: bool) -> Path:
    """Move a run's results from ``stage`` to where they belong and return that folder.

    A complete run replaces ``out`` as a whole (no file of the previous run survives, so nothing
    links stale figures). An interrupted run replaces ``out`` only when ``out`` holds no finished
    results; otherwise it goes to ``<out>.partial`` and the finished results stay as they were.
    Only a folder a run wrote is replaced (checked again here: the user may have made one while
    the run worked); otherwise the results go to a new folder beside it."""
    out = Path(out)
    target = out if complete or not holds_finished_results(out) else partial_folder(out)
    if not replaceable(target):
        target = Path(tempfile.mkdtemp(dir=target.parent, prefix=f"{target.name}-"))
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
        os.replace(target, old / "results")
        os.replace(stage, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(stage, target)
    return target


def load_results(folder: Path):
    """(metrics DataFrame, run_info) of a stored run, for re-rendering without recomputing."""
    folder = Path(folder)
    for name in ("metrics.csv", "run.json"):
        if not (folder / name).is_file():
            raise UserError(f"{folder}: no {name} here; is this a diqa-bench results folder?")
    try:
        metrics = read_csv(folder / "metrics.csv", dtype={"seed": str})
        run_info = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:  # pandas' and json's parse errors are ValueErrors
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise UserError(f"{folder}: damaged results ({reason}); re-run the benchmark to rewrite them") from None
    missing = [c for c in METRIC_COLUMNS if c not in metrics.columns]
    if missing or not isinstance(run_info, dict):
        what = f"metrics.csv lacks {', '.join(missing)}" if missing else "run.json is not an object"
        raise UserError(f"{folder}: damaged results ({what}); re-run the benchmark to rewrite them")
    numeric_columns(metrics, ("value", "ci_low", "ci_high", "n", "std", "groups"), folder / "metrics.csv")
    return metrics, run_info


def numeric_columns(df, columns, path: Path) -> None:
    """Make ``columns`` of a stored CSV numbers in place; a cell that is not one (``value=abc``, a
    hand edit or a damaged file) is a one-line error naming it, not a traceback in the statistics."""
    import pandas as pd  # only where a table is read: importing the store stays light

    for c in columns:
        if c not in df.columns:
            continue
        parsed = pd.to_numeric(df[c], errors="coerce")
        bad = df[c].notna() & parsed.isna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise UserError(f"{path}: damaged results (row {row + 2}, column {c}: {df[c].iloc[row]!r} is not a number); re-run the benchmark to rewrite them")
        df[c] = parsed
