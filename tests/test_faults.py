"""Fault injection: interruptions, concurrent runs, full disks, damaged caches, unwritable folders.
Each test reproduces the fault on the stub plugins (CPU, no network, seconds)."""

import errno
import json
import os
import sqlite3
import stat
import subprocess
import warnings
from pathlib import Path

import pytest
import yaml

from diqa_bench import cli
from diqa_bench.plan import Plan
from diqa_bench.scorer import Scorer
from diqa_bench.testing import InterruptOnCall, StubLinear, run_tiny_benchmark, stub_config


def small(**kw):
    cfg = stub_config(seeds=[0], **kw)
    cfg["statistics"] = {"bootstrap": 10}
    return cfg


@pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")
def test_interrupted_rerun_keeps_the_finished_results(tmp_path, monkeypatch):
    first = run_tiny_benchmark(tmp_path, small())
    before = {p.name: p.read_bytes() for p in first.out.iterdir() if p.is_file()}
    interrupt = InterruptOnCall(Scorer.run_unit, 2)
    monkeypatch.setattr(Scorer, "run_unit", lambda self, unit: interrupt(self, unit))
    with pytest.raises(KeyboardInterrupt):
        run_tiny_benchmark(tmp_path, small())
    after = {p.name: p.read_bytes() for p in first.out.iterdir() if p.is_file()}
    assert after == before  # not one byte of the finished results changed
    partial = first.out.with_name(first.out.name + ".partial")
    run = json.loads((partial / "run.json").read_text())
    assert run["interrupted"] is True and len(run["cells"]) < len(first.run["cells"])
    assert "Interrupted" in (partial / "LEADERBOARD.md").read_text()
    assert not [p for p in tmp_path.iterdir() if ".incomplete-" in p.name]  # no staging folder left


@pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")
def test_a_crashed_rerun_leaves_the_previous_results(tmp_path, monkeypatch):
    first = run_tiny_benchmark(tmp_path, small())
    before = (first.out / "metrics.csv").read_bytes()
    monkeypatch.setattr(Plan, "build", classmethod(lambda cls, *a, **k: (_ for _ in ()).throw(MemoryError("out of memory"))))
    with pytest.raises(MemoryError):
        run_tiny_benchmark(tmp_path, small())
    assert (first.out / "metrics.csv").read_bytes() == before


@pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")
def test_a_second_run_on_the_same_output_is_refused_with_one_line(tmp_path, stub_registry, monkeypatch, capsys):
    from diqa_bench.store import results_lock

    monkeypatch.setattr(cli, "REGISTRY", stub_registry)
    cfg = tmp_path / "bench.yaml"
    cfg.write_text(yaml.safe_dump(small(methods=[{"name": "stub-noise"}], train_sets=[], test_domains=["a"])))
    out = tmp_path / "out"
    held = results_lock(out)  # another run holds the folder
    try:
        code = cli.main(["run", str(cfg), "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--workers", "0", "--no-progress"])
    finally:
        held.release()
    err = capsys.readouterr().err
    assert code == 2 and "another diqa-bench run is writing to" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_concurrent_model_exports_never_delete_each_others_folder(tmp_path):
    from diqa_bench.runner import export_model

    class Model:
        def __init__(self, tag):
            self.tag = tag

        def save(self, folder):
            (Path(folder) / "linear.json").write_text(json.dumps({"coef": self.tag}))

    target = tmp_path / "models" / "k"
    export_model(Model(1), target, "first\n")
    export_model(Model(2), target, "second\n")  # the same key finished twice: the first one stays
    assert json.loads((target / "linear.json").read_text()) == {"coef": 1} and (target / "DONE").read_text() == "first\n"
    half = tmp_path / "models" / "half"
    half.mkdir()
    (half / "linear.json").write_text("")  # no DONE: a crash of an older version
    export_model(Model(3), half, "done\n")
    assert json.loads((half / "linear.json").read_text()) == {"coef": 3}
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["half", "k"]  # no temp folders left


@pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")
def test_full_disk_during_model_export_leaves_no_corrupt_model(tmp_path, monkeypatch):
    def full_disk(self, folder):
        (Path(folder) / "linear.json").write_text("")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(StubLinear, "save", full_disk)
    res = run_tiny_benchmark(tmp_path, small())
    failed = [c for c in res.run["cells"] if c["method"] == "stub-linear"]
    assert failed and all(c["status"] == "failed" and "No space left on device" in c["reason"] for c in failed)
    models = tmp_path / "cache" / "models"
    assert not [p for p in models.rglob("DONE")] and not [p for p in models.iterdir()]
    monkeypatch.undo()
    again = run_tiny_benchmark(tmp_path, small())  # the next run fits afresh
    assert all(c["status"] == "ok" for c in again.run["cells"])
    saved = list((again.out / "models").rglob("linear.json"))
    assert saved and all(p.stat().st_size > 0 for p in saved)


def _damage(path: Path) -> None:
    with open(path, "r+b") as f:
        f.write(os.urandom(100))


@pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")
def test_damaged_cache_database_is_set_aside_and_rebuilt(tmp_path):
    from diqa_bench.cache import CacheWarning

    first = run_tiny_benchmark(tmp_path, small())
    import gc

    gc.collect()  # close the first run's connections, as the end of its process would
    cache = tmp_path / "cache"
    for name in ("scores.sqlite",):
        for suffix in ("-wal", "-shm"):
            (cache / (name + suffix)).unlink(missing_ok=True)
        _damage(cache / name)
    with pytest.warns(CacheWarning, match="damaged"):
        again = run_tiny_benchmark(tmp_path, small())
    assert (again.out / "metrics.csv").read_bytes() == (first.out / "metrics.csv").read_bytes()
    assert [p.name for p in cache.iterdir() if ".damaged-" in p.name]
    with sqlite3.connect(cache / "scores.sqlite") as con:
        assert con.execute("SELECT COUNT(*) FROM scores").fetchone()[0] > 0


@pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")
@pytest.mark.parametrize("where", ["out", "cache"])
def test_unwritable_out_or_cache_is_one_line_before_any_work(tmp_path, stub_registry, monkeypatch, capsys, where):
    monkeypatch.setattr(cli, "REGISTRY", stub_registry)
    ran = []
    monkeypatch.setattr(Plan, "build", classmethod(lambda cls, *a, **k: ran.append(1)))
    cfg = tmp_path / "bench.yaml"
    cfg.write_text(yaml.safe_dump(small(methods=[{"name": "stub-noise"}], train_sets=[], test_domains=["a"])))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "out" if where == "out" else tmp_path / "out"
    cache = blocker if where == "cache" else tmp_path / "cache"
    code = cli.main(["run", str(cfg), "--out", str(out), "--cache-dir", str(cache), "--device", "cpu", "--workers", "0", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and not ran
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and str(blocker) in err


def test_out_that_holds_other_files_is_never_replaced(tmp_path, stub_registry, monkeypatch, capsys):
    monkeypatch.setattr(cli, "REGISTRY", stub_registry)
    monkeypatch.setenv("DIQA_BENCH_PLUGINS", "")
    cfg = tmp_path / "bench.yaml"
    cfg.write_text(yaml.safe_dump(small(methods=[{"name": "stub-noise"}], train_sets=[], test_domains=["a"])))
    precious = tmp_path / "desktop"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    code = cli.main(["run", str(cfg), "--out", str(precious), "--cache-dir", str(tmp_path / "c"), "--device", "cpu", "--no-progress"])
    assert code == 2 and "no results folder" in capsys.readouterr().err
    assert (precious / "thesis.tex").read_text() == "years of work"


@pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")
def test_result_files_are_readable_by_others_respecting_umask(tmp_path):
    old = os.umask(0o022)
    try:
        res = run_tiny_benchmark(tmp_path, small())
    finally:
        os.umask(old)
    files = [p for p in res.out.rglob("*") if p.is_file()]
    assert files
    for p in files + [res.out] + [p for p in res.out.rglob("*") if p.is_dir()]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode & 0o044 == 0o044 and not mode & 0o022, f"{p}: {oct(mode)}"


def test_git_info_does_not_write_to_the_checkout(tmp_path):
    from diqa_bench.run_facts import git_info

    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, env=env)
    (tmp_path / "f.txt").write_text("a")
    subprocess.run(["git", "-C", str(tmp_path), "add", "f.txt"], check=True, env=env)
    subprocess.run(["git", "-C", str(tmp_path), "commit", "-qm", "x"], check=True, env=env)
    os.utime(tmp_path / "f.txt", (1, 1))  # stale stat data: a plain `git status` rewrites the index
    index = tmp_path / ".git" / "index"
    before = (index.read_bytes(), index.stat().st_mtime_ns)
    info = git_info(tmp_path)
    assert info["commit"] and info["dirty"] is False
    assert (index.read_bytes(), index.stat().st_mtime_ns) == before


@pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")
@pytest.mark.parametrize("damage", ["truncated-json", "garbage-csv", "empty-csv"])
def test_report_on_a_damaged_folder_is_one_line(tmp_path, capsys, damage):
    res = run_tiny_benchmark(tmp_path, small())
    if damage == "truncated-json":
        (res.out / "run.json").write_text((res.out / "run.json").read_text()[:50])
    elif damage == "garbage-csv":
        (res.out / "metrics.csv").write_bytes(b"\x00\xff" * 40)
    else:
        (res.out / "metrics.csv").write_text("")
    assert cli.main(["report", str(res.out), "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert "damaged results" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_closed_pipe_is_not_a_traceback(stub_registry, monkeypatch, capsys):
    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

        def fileno(self):
            raise OSError("no file descriptor")

    monkeypatch.setattr(cli, "REGISTRY", stub_registry)
    monkeypatch.setattr("sys.stdout", ClosedPipe())
    assert cli.main(["plugins", "--json"]) == 141


KILLED_PARENT = """
import os, sys, time
from diqa_bench import parallel
executor = parallel.pool(2)
pids = sorted(executor._processes)  # pool() has started them all
print(" ".join(map(str, pids)), flush=True)
time.sleep(600)
"""


def test_pool_workers_exit_when_the_parent_is_killed(tmp_path):
    import signal
    import sys
    import time

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", KILLED_PARENT], stdout=subprocess.PIPE, text=True, env=env)
    try:
        workers = [int(p) for p in parent.stdout.readline().split()]
        assert len(workers) == 2
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        deadline = time.time() + 15
        alive = workers
        while alive and time.time() < deadline:
            time.sleep(0.2)
            alive = [p for p in workers if _alive(p)]
        assert not alive, f"workers {alive} outlived their parent"
    finally:
        parent.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False
    except OSError:
        return False


WATCHED_WORKER = """
import os, time
from diqa_bench.parallel import exit_with_parent
exit_with_parent(os.getppid(), use_pdeathsig=False, interval_s=0.1)
print(os.getpid(), flush=True)
time.sleep(600)
"""

MIDDLE = """
import subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE, text=True)
print(worker.stdout.readline().strip(), flush=True)
time.sleep(600)
"""


def test_watchdog_alone_ends_a_worker_whose_parent_died():
    """Where PR_SET_PDEATHSIG is not used (other systems, or a pool started from a short-lived
    thread) the watchdog thread still ends the worker."""
    import signal
    import sys
    import time

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    middle = subprocess.Popen([sys.executable, "-c", MIDDLE, WATCHED_WORKER], stdout=subprocess.PIPE, text=True, env=env)
    try:
        worker = int(middle.stdout.readline())
        assert _alive(worker)
        os.kill(middle.pid, signal.SIGKILL)
        middle.wait(10)
        deadline = time.time() + 10
        while _alive(worker) and time.time() < deadline:
            time.sleep(0.1)
        assert not _alive(worker)
    finally:
        middle.kill()


class _Ref:
    """Hashable by identity, like an ObjectRef."""

    def __init__(self, args):
        self.args = args


class _FakeRay:
    """Just enough of Ray to run units in this process; after ``alive`` units the local raylet
    "dies": every later ``get`` raises Ray's own LocalRayletDiedError."""

    def __init__(self, runner_units_alive: int):
        import types

        # Ray's exception names, without importing Ray: Ray reads its environment once, when first
        # imported, and the real-cluster tests set that environment themselves.
        class LocalRayletDiedError(Exception):
            def __str__(self):
                return "The task's local raylet died. Check raylet.out for more information."

        self.exceptions = types.SimpleNamespace(LocalRayletDiedError=LocalRayletDiedError, RayTaskError=type("RayTaskError", (Exception,), {}))
        self.alive = runner_units_alive
        self.got = 0
        self.cancelled = 0

    def remote(self, fn):
        class Task:
            def options(self, **kw):
                return self

            def remote(self, *args):
                return _Ref(args)

        return Task()

    def put(self, obj):
        return obj

    def wait(self, refs, num_returns=1):
        return refs[:1], refs[1:]

    def get(self, ref):
        self.got += 1
        if self.got > self.alive:
            raise self.exceptions.LocalRayletDiedError()
        spec, unit = ref.args
        return self.scorer.run_unit(unit), []

    def cancel(self, ref, force=False):
        self.cancelled += 1
        raise self.exceptions.LocalRayletDiedError()


@pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")
def test_lost_ray_cluster_writes_finished_cells_and_says_how_to_resume(tmp_path, monkeypatch):
    from diqa_bench.errors import RunAborted
    from diqa_bench.ray_executor import RayExecutor

    fake = _FakeRay(runner_units_alive=2)
    real_run = RayExecutor.run_units

    def run_with_fake(self, ray, scorer, spec, units, on_unit):
        fake.scorer = scorer
        return real_run(self, ray, scorer, spec, units, on_unit)

    monkeypatch.setattr(RayExecutor, "connect", lambda self: (fake, False))
    monkeypatch.setattr(RayExecutor, "run_units", run_with_fake)
    import diqa_bench.testing as stubs
    from diqa_bench import config as cfgmod
    from diqa_bench.plugins import load_plugins
    from diqa_bench.runner import RunOptions, run_benchmark

    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(small()))
    registry = load_plugins(extra=[("stub", stubs)])
    opts = RunOptions(out=tmp_path / "results", cache_dir=tmp_path / "cache", device="cpu", workers=0, batch_size=8, progress=False)
    with pytest.raises(RunAborted) as info:
        run_benchmark(cfgmod.parse(tmp_path / "bench.yaml", registry), registry, opts, log=lambda msg: None,
                      executor=RayExecutor(shard_size=None, log=lambda msg: None))
    message = str(info.value)
    assert "\n" not in message and "Ray cluster was lost" in message and "LocalRayletDiedError" in message
    assert "run the same command again to resume" in message and str(tmp_path / "results") in message
    run = json.loads((tmp_path / "results" / "run.json").read_text())
    assert run["interrupted"] is True
    assert [c["status"] for c in run["cells"]] == ["ok"] * len(run["cells"]) and len(run["cells"]) == 4  # two units x two test domains
    assert fake.got == 3  # it stopped at the first lost task instead of failing every later one


@pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")
def test_damaged_cached_model_is_set_aside_and_fitted_again(tmp_path):
    from diqa_bench.cache import CacheWarning

    first = run_tiny_benchmark(tmp_path, small())
    import gc

    gc.collect()  # close the first run's connections, as the end of its process would
    cache = tmp_path / "cache"
    models = [p for p in (cache / "models").iterdir() if (p / "DONE").exists()]
    assert models
    for m in models:
        (m / "linear.json").write_bytes(b"\x00garbage")
    for name in ("scores.sqlite",):  # so the models must be loaded again
        for suffix in ("", "-wal", "-shm"):
            (cache / (name + suffix)).unlink(missing_ok=True)
    StubLinear.fits = 0
    with pytest.warns(CacheWarning, match="cannot be loaded"):
        again = run_tiny_benchmark(tmp_path, small())
    assert StubLinear.fits == len(models)
    assert all(c["status"] == "ok" for c in again.run["cells"])
    assert (again.out / "metrics.csv").read_bytes() == (first.out / "metrics.csv").read_bytes()
    assert [p for p in (cache / "models").iterdir() if ".damaged-" in p.name]
    for saved in (again.out / "models").rglob("linear.json"):
        json.loads(saved.read_text())


# -- nothing a user wrote is deleted (issue 27, items 1-3) ---------------------------------------


def _cli_run(tmp_path, out, registry, monkeypatch, **config):
    monkeypatch.setattr(cli, "REGISTRY", registry)
    cfg = tmp_path / "bench.yaml"
    cfg.write_text(yaml.safe_dump(small(methods=[{"name": "stub-noise"}], train_sets=[], test_domains=["a"], **config)))
    return cli.main(["run", str(cfg), "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--workers", "0",
                     "--no-progress", "--no-report", "--processes", "1"])


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.usefixtures("no_report_figures")
@pytest.mark.parametrize("kind", ["run-json-and-notes", "models-and-figures", "older-results"])
def test_a_folder_diqa_bench_did_not_mark_is_never_replaced(tmp_path, stub_registry, monkeypatch, capsys, kind):
    """Only a folder holding the marker a run writes may be replaced: a user's folder that merely
    looks like results (a run.json, models/ and figures/) is refused in one line, untouched."""
    from diqa_bench.store import RESULTS_MARKER

    out = tmp_path / "mine"
    if kind == "run-json-and-notes":
        out.mkdir()
        (out / "run.json").write_text('{"my": "experiment log"}')
        (out / "notes.txt").write_text("years of work")
    elif kind == "models-and-figures":
        (out / "models").mkdir(parents=True)
        (out / "figures").mkdir()
        (out / "models" / "my-model.pt").write_bytes(b"weights I trained")
        (out / "figures" / "fig1.png").write_bytes(b"my paper's figure")
    else:  # results of a diqa-bench that wrote no marker yet
        assert _cli_run(tmp_path, out, stub_registry, monkeypatch) == 0
        assert (out / RESULTS_MARKER).is_file()
        (out / RESULTS_MARKER).unlink()
    capsys.readouterr()
    before = _tree(out)
    code = _cli_run(tmp_path, out, stub_registry, monkeypatch)
    err = capsys.readouterr().err
    assert code == 2 and str(out) in err and RESULTS_MARKER in err and len(err.strip().splitlines()) == 1
    assert _tree(out) == before and not [p for p in tmp_path.iterdir() if ".incomplete-" in p.name or ".old-" in p.name]


@pytest.mark.usefixtures("no_report_figures")
def test_a_marked_results_folder_and_an_empty_one_are_replaced(tmp_path, stub_registry, monkeypatch):
    from diqa_bench.store import RESULTS_MARKER

    out = tmp_path / "empty"
    out.mkdir()
    assert _cli_run(tmp_path, out, stub_registry, monkeypatch) == 0
    assert (out / RESULTS_MARKER).read_text().startswith("diqa-bench results")
    (out / "figures").mkdir()
    (out / "figures" / "stale.png").write_bytes(b"from an old run")
    assert _cli_run(tmp_path, out, stub_registry, monkeypatch) == 0
    assert not (out / "figures").exists() and (out / RESULTS_MARKER).is_file()


@pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")
def test_an_interrupted_run_never_replaces_a_users_partial_folder(tmp_path, monkeypatch):
    """<out>.partial, where an interrupted run goes when <out> holds finished results, follows the
    same rule: a folder of the user's by that name is refused before any work."""
    from diqa_bench.errors import UserError

    first = run_tiny_benchmark(tmp_path, small())
    partial = first.out.with_name(first.out.name + ".partial")
    partial.mkdir()
    (partial / "draft.md").write_text("my draft")
    interrupt = InterruptOnCall(Scorer.run_unit, 2)
    monkeypatch.setattr(Scorer, "run_unit", lambda self, unit: interrupt(self, unit))
    with pytest.raises((UserError, KeyboardInterrupt)) as refused:  # not interrupted: refused before any work
        run_tiny_benchmark(tmp_path, small())
    assert refused.type is UserError and refused.match(r"results\.partial.*\.diqa-bench-results")
    assert _tree(partial) == {"draft.md": b"my draft"}
    assert (first.out / "metrics.csv").read_bytes() == (tmp_path / "results" / "metrics.csv").read_bytes()


def test_a_partial_folder_made_during_the_run_is_kept_and_the_results_go_beside_it(tmp_path):
    """Checked again when publishing (the folder may appear while the run works): the user's folder
    stays and the interrupted run's results land in a new folder beside it."""
    from diqa_bench.store import RESULTS_MARKER, publish_results, staging_folder

    out = tmp_path / "res"
    stage = staging_folder(out)
    (stage / "run.json").write_text('{"interrupted": false}')
    assert publish_results(stage, out, complete=True) == out
    stage = staging_folder(out)
    (stage / "run.json").write_text('{"interrupted": true}')
    users = tmp_path / "res.partial"
    users.mkdir()
    (users / "draft.md").write_text("my draft")
    where = publish_results(stage, out, complete=False)
    assert _tree(users) == {"draft.md": b"my draft"}
    assert where.parent == tmp_path and where not in (out, users) and (where / RESULTS_MARKER).is_file()
    assert json.loads((where / "run.json").read_text()) == {"interrupted": True}


# -- a damaged cache never costs finished results (issue 27, item 2) ------------------------------


def _damage_pages(db: Path) -> None:
    """Overwrite every page after the first: the header and the schema still read, the data does not."""
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    size = db.stat().st_size
    assert size > 4096
    with open(db, "r+b") as f:
        f.seek(4096)
        f.write(b"\xa5" * (size - 4096))


@pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")
def test_a_cache_damaged_past_its_header_is_set_aside_and_the_run_goes_on(tmp_path, recwarn):
    from diqa_bench.cache import CacheWarning

    first = run_tiny_benchmark(tmp_path, small())
    import gc

    gc.collect()  # close the first run's connections, as the end of its process would
    cache = tmp_path / "cache"
    _damage_pages(cache / "scores.sqlite")
    again = run_tiny_benchmark(tmp_path, small())
    warned = [str(w.message) for w in recwarn if issubclass(w.category, CacheWarning)]
    assert len(warned) == 1 and "malformed" in warned[0] and "rebuilt" in warned[0]
    assert all(c["status"] == "ok" for c in again.run["cells"])
    assert (again.out / "metrics.csv").read_bytes() == (first.out / "metrics.csv").read_bytes()
    assert [p.name for p in cache.iterdir() if p.name.startswith("scores.sqlite.damaged-")]


@pytest.mark.parametrize("kind", ["scores", "features"])
@pytest.mark.parametrize("first_use", ["read", "write"])
def test_damage_found_on_a_read_or_a_write_rebuilds_the_database(tmp_path, kind, first_use):
    from diqa_bench.cache import CacheWarning, ScoreCache, SqliteFeatureCache

    import numpy as np

    def open_cache():
        return ScoreCache(tmp_path) if kind == "scores" else SqliteFeatureCache(tmp_path / "features.sqlite", "ns")

    def put(c, items):
        c.put_many("m", items) if kind == "scores" else c.put_many({k: np.array([v]) for k, v in items.items()})

    def get(c, keys):
        found = c.get_many("m", keys) if kind == "scores" else c.get_many(keys)
        return {k: float(np.asarray(v).ravel()[0]) for k, v in found.items()}

    c = open_cache()
    put(c, {f"k{i}": float(i) for i in range(3000)})  # several pages
    c.con.close()
    _damage_pages(tmp_path / f"{kind}.sqlite")
    c = open_cache()  # the first page is intact: it opens
    with pytest.warns(CacheWarning, match="malformed"):
        if first_use == "read":
            assert get(c, ["k1", "k2"]) == {}
        else:
            put(c, {"k1": 1.0})
    put(c, {"k2": 2.0})
    assert get(c, ["k2"]) == {"k2": 2.0}
    assert [p for p in tmp_path.iterdir() if p.name.startswith(f"{kind}.sqlite.damaged-")]


@pytest.mark.usefixtures("no_entry_point_plugins")
def test_score_on_a_damaged_cache_sets_it_aside_and_scores(tmp_path, stub_registry, monkeypatch, capsys):
    import csv
    import io

    import numpy as np
    from PIL import Image

    monkeypatch.setattr(cli, "REGISTRY", stub_registry)
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(60):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    args = ["score", "-m", "stub-noise", str(folder), "--device", "cpu", "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--processes", "1"]
    from diqa_bench import plugins
    from diqa_bench.cache import CacheWarning, ScoreCache

    filler = ScoreCache(tmp_path / "cache")  # enough rows for the database to have several pages
    filler.put_many("filler", {f"{i:016x}": float(i) for i in range(3000)})
    filler.con.close()
    assert cli.main(args) == 0
    first = capsys.readouterr().out
    import gc

    gc.collect()
    _damage_pages(tmp_path / "cache" / "scores.sqlite")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = cli.main(args)
    out, err = capsys.readouterr()
    assert code == 0 and "Traceback" not in err
    warned = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert len(warned) == 1 and "scores.sqlite" in warned[0] and "malformed" in warned[0]
    assert "\n" not in plugins.format_warning(warned[0], CacheWarning, "", 0).rstrip("\n")  # one line on the CLI
    assert list(csv.DictReader(io.StringIO(out))) == list(csv.DictReader(io.StringIO(first)))


@pytest.mark.usefixtures("no_report_figures")
def test_a_run_whose_cells_all_fail_for_one_reason_keeps_the_finished_results(tmp_path, stub_registry, monkeypatch, capsys):
    from diqa_bench.cache import ScoreCache

    out = tmp_path / "out"
    assert _cli_run(tmp_path, out, stub_registry, monkeypatch) == 0
    before = _tree(out)
    capsys.readouterr()

    def broken(self, *a, **k):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(ScoreCache, "get_many", broken)
    code = _cli_run(tmp_path, out, stub_registry, monkeypatch)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("diqa-bench: error:")]
    assert code != 0 and len(errors) == 1 and "Traceback" not in err
    assert "every cell failed" in errors[0] and "disk I/O error" in errors[0] and str(out) in errors[0]
    assert _tree(out) == before
    assert not [p for p in tmp_path.iterdir() if ".incomplete-" in p.name or p.name.endswith(".partial")]


# -- issue 27, items 5-7: no stale or silently omitted numbers ----------------------------------
import shutil  # noqa: E402

SHARED_BRISQUE = Path(__file__).resolve().parents[1].parent / "shared" / "weights" / "brisque_svm_weights.pth"
if not SHARED_BRISQUE.is_file() and os.environ.get("DIQA_BENCH_WEIGHTS"):
    SHARED_BRISQUE = Path(os.environ["DIQA_BENCH_WEIGHTS"]) / "brisque_svm_weights.pth"


def _photos(folder: Path, n: int = 6, size=(72, 96)) -> Path:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]] / size[1]
    for i in range(n):
        base = 0.5 + 0.3 * np.sin(2 * np.pi * (xx * (i % 3 + 1) + yy))
        img = np.clip(base[..., None] + rng.normal(0, 0.03 * i, (*size, 3)), 0, 1)
        Image.fromarray((img * 255).round().astype(np.uint8)).save(folder / f"im{i}.png")
    return folder


def _folder_run(tmp_path: Path, folder: Path, methods=None, plugins=(), reports=False, **config):
    """A benchmark over every file of ``folder`` as one csv dataset (MOS 1-5 by name order)."""
    import diqa_datasets
    import numpy as np
    import pandas as pd

    names = sorted(p.name for p in folder.iterdir())
    pd.DataFrame({"image": names, "mos": np.linspace(1, 5, len(names))}).to_csv(tmp_path / "labels.csv", index=False)
    cfg = {
        "domains": {"a": [{"dataset": "csv", "options": {"csv": str(tmp_path / "labels.csv"), "root": str(folder), "mos_range": [1, 5]}}]},
        "methods": methods or [{"name": "stub-noise"}],
        "test_domains": ["a"],
        "splits": {"test_ratio": 0.99, "seeds": [0]},
        "statistics": {"bootstrap": 10},
        **config,
    }
    return run_tiny_benchmark(tmp_path / "run", cfg, plugins=[("datasets", diqa_datasets), *plugins], reports=reports)


def _score_csv(text: str) -> dict[str, dict]:
    import csv
    import io

    return {Path(r["path"]).name: r for r in csv.DictReader(io.StringIO(text))}


def _brisque_variant(path: Path) -> Path:
    """A valid BRISQUE weights file with other SVM coefficients: other scores."""
    import torch

    coef, sv = torch.load(str(SHARED_BRISQUE), map_location="cpu", weights_only=True)
    torch.save((-coef, sv), str(path))
    return path


@pytest.mark.skipif(not SHARED_BRISQUE.is_file(), reason="needs ../shared/weights")
def test_score_cache_follows_the_content_of_the_weights_file(tmp_path, monkeypatch, capsys):
    """Item 5: another weights folder, or a weights file overwritten at the same path, gives the
    new weights' scores, not the cached scores of the old ones."""
    monkeypatch.delenv("DIQA_BENCH_WEIGHTS", raising=False)
    photos = _photos(tmp_path / "photos", n=3)
    first, second = tmp_path / "w1", tmp_path / "w2"
    first.mkdir(), second.mkdir()
    shutil.copyfile(SHARED_BRISQUE, first / SHARED_BRISQUE.name)
    _brisque_variant(second / SHARED_BRISQUE.name)
    common = ["score", "-m", "brisque", "--device", "cpu", "--processes", "1", "--no-progress", "--cache-dir", str(tmp_path / "cache"), str(photos)]

    def scores(*extra):
        assert cli.main([*common, *extra]) == 0
        return {k: float(r["score"]) for k, r in _score_csv(capsys.readouterr().out).items()}

    a = scores("--weights-dir", str(first))
    b = scores("--weights-dir", str(second))
    assert all(a[k] != b[k] for k in a), "another weights folder gave the cached scores"
    assert scores("--weights-dir", str(first)) == a  # the first file's scores are still cached
    file = tmp_path / "mine.pth"
    shutil.copyfile(first / SHARED_BRISQUE.name, file)
    assert scores("--weights", str(file)) == a
    _brisque_variant(file)  # overwritten in place: same path, same size
    assert scores("--weights", str(file)) == b


@pytest.mark.skipif(not SHARED_BRISQUE.is_file(), reason="needs ../shared/weights")
def test_run_with_other_weights_rescores_and_records_the_files(tmp_path, monkeypatch):
    """Item 5, ``run``: a changed weights folder changes the scores, and run.json says which
    weights file (path and sha256) each method used."""
    import hashlib

    import diqa_pyiqa

    monkeypatch.delenv("DIQA_BENCH_WEIGHTS", raising=False)
    photos = _photos(tmp_path / "photos", n=8)
    folder = tmp_path / "weights"
    folder.mkdir()
    target = folder / SHARED_BRISQUE.name
    shutil.copyfile(SHARED_BRISQUE, target)
    methods = [{"name": "brisque"}, {"name": "stub-noise"}]
    kw = dict(methods=methods, plugins=[("pyiqa", diqa_pyiqa)], weights_dir=str(folder))
    before = _folder_run(tmp_path, photos, **kw)
    _brisque_variant(target)
    after = _folder_run(tmp_path, photos, **kw)
    old = before.scores[before.scores.method == "brisque"].score.to_numpy()
    new = after.scores[after.scores.method == "brisque"].score.to_numpy()
    assert len(old) == len(new) > 0 and (old != new).all(), "the cached scores of the old weights came back"
    used = {w["method"]: w["files"] for w in after.run["weights"]}
    assert used["brisque"] == [{"path": str(target), "sha256": hashlib.sha256(target.read_bytes()).hexdigest()}]
    assert used["stub-noise"] == []


@pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")
def test_a_damaged_cached_fit_is_never_exported(tmp_path, capsys):
    """Item 6: a cached fit whose file was damaged after it was saved is set aside and fitted
    again, with one warning, even when every score it gave is still cached."""
    from diqa_bench.cache import CacheWarning

    cfg = small(methods=[{"name": "stub-linear"}], train_sets=[["a"]], test_domains=["a"])
    run_tiny_benchmark(tmp_path, cfg)
    cache = tmp_path / "cache" / "models"
    [model] = [p for p in cache.iterdir() if (p / "DONE").exists()]
    with open(model / "linear.json", "r+b") as f:
        f.truncate(5)
    StubLinear.fits = 0
    with pytest.warns(CacheWarning, match="damaged") as caught:
        again = run_tiny_benchmark(tmp_path, cfg)
    assert len([w for w in caught if issubclass(w.category, CacheWarning)]) == 1
    assert StubLinear.fits == 1 and all(c["status"] == "ok" for c in again.run["cells"])
    [exported] = list((again.out / "models").rglob("linear.json"))
    assert json.loads(exported.read_text())["coef"]
    assert [p for p in cache.iterdir() if ".damaged-" in p.name]


def test_score_with_a_damaged_fitted_model_is_one_line(tmp_path, capsys):
    """Item 6: ``score --weights`` on a truncated model.npz: one line, exit 2, no traceback."""
    import numpy as np

    from diqa_pyiqa.refit import BrisqueFit

    folder = tmp_path / "model"
    BrisqueFit()._write(folder, {"support": np.ones((3, 36)), "dual": np.ones(3)}, {"C": 1.0})
    size = (folder / "model.npz").stat().st_size
    with open(folder / "model.npz", "r+b") as f:
        f.truncate(size // 2)
    photos = _photos(tmp_path / "photos", n=2)
    code = cli.main(["score", "-m", "brisque-fit", "--weights", str(folder), "--device", "cpu", "--no-progress",
                     "--cache-dir", str(tmp_path / "cache"), str(photos)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "model.npz" in err


@pytest.mark.usefixtures("no_entry_point_plugins")
def test_every_copy_of_a_broken_image_is_listed_as_skipped(tmp_path):
    """Item 7a: two byte-identical broken files are two skipped images, not one."""
    photos = _photos(tmp_path / "photos", n=8)
    for name in ("broken1.png", "broken2.png"):
        (photos / name).write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    result = _folder_run(tmp_path, photos)
    skipped = sorted(s["image"] for s in result.run["skipped"])
    assert skipped == ["broken1.png", "broken2.png"]
    assert all(s["image"] in s["reason"] for s in result.run["skipped"])  # each names its own file
    listed = set(result.scores.image) | set(skipped)
    assert listed == {p.name for p in photos.iterdir()}


@pytest.mark.usefixtures("no_entry_point_plugins")
def test_score_follows_a_symlinked_folder_without_looping(tmp_path, stub_registry, monkeypatch, capsys):
    """Item 7b: images in a symlinked sub-folder are scored; a link back up is not followed twice."""
    monkeypatch.setattr(cli, "REGISTRY", stub_registry)
    photos = _photos(tmp_path / "photos", n=2)
    elsewhere = _photos(tmp_path / "elsewhere", n=3)
    (photos / "linked").symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "loop").symlink_to(photos, target_is_directory=True)
    code = cli.main(["score", "-m", "stub-noise", "--device", "cpu", "--no-progress", "--cache-dir", str(tmp_path / "cache"), str(photos)])
    out, err = capsys.readouterr()
    rows = [r for r in _score_csv(out)]
    paths = [Path(line.split(",")[0]) for line in out.splitlines()[1:]]
    assert code == 0, err
    assert len(paths) == len(set(p.resolve() for p in paths)) == 5, paths
    assert {p.name for p in paths} >= {"im0.png", "im1.png", "im2.png"} and rows


@pytest.mark.usefixtures("no_entry_point_plugins")
def test_a_lowered_pixel_limit_applies_to_cached_images(tmp_path, stub_registry, monkeypatch, capsys):
    """Item 7c: an image scored under a higher limit is not answered from the cache once the
    limit is lowered, in ``score`` and in ``run``."""
    from PIL import Image

    from diqa_bench.images import MAX_PIXELS_ENV

    monkeypatch.setenv(MAX_PIXELS_ENV, "40000000")  # restored after the test (score and run set it)
    monkeypatch.setattr(cli, "REGISTRY", stub_registry)
    photos = _photos(tmp_path / "photos", n=8)  # 96x72 = 6912 pixels each
    Image.new("RGB", (200, 100), "grey").save(photos / "wide.png")  # 20000 pixels
    command = ["score", "-m", "stub-noise", "--device", "cpu", "--no-progress", "--cache-dir", str(tmp_path / "cache"), str(photos)]
    assert cli.main(command) == 0
    capsys.readouterr()
    assert cli.main([*command, "--max-pixels", "15000"]) == 1
    out, err = capsys.readouterr()
    rows = _score_csv(out)
    assert rows["wide.png"]["score"] == "" and "exceed the limit" in rows["wide.png"]["skipped"]
    assert all(rows[f"im{i}.png"]["score"] for i in range(8))

    monkeypatch.setenv(MAX_PIXELS_ENV, "40000000")
    first = _folder_run(tmp_path, photos)
    assert "wide.png" in set(first.scores.image)
    lowered = _folder_run(tmp_path, photos, max_image_pixels=15000)
    assert "wide.png" not in set(lowered.scores.image)
    assert [s["image"] for s in lowered.run["skipped"]] == ["wide.png"] and "exceed the limit" in lowered.run["skipped"][0]["reason"]


@pytest.mark.usefixtures("no_entry_point_plugins")
def test_a_report_after_a_no_report_run_has_its_figures(tmp_path):
    """Item 7d: a run with figures after a ``--no-report`` run of the same scores (a fresh
    derived cache) makes the figures, instead of a report.html without them."""
    cfg = small(methods=[{"name": "stub-noise"}, {"name": "stub-linear"}], train_sets=[["a"], ["b"], ["a", "b"]])
    run_tiny_benchmark(tmp_path, cfg, reports=False)
    again = run_tiny_benchmark(tmp_path, cfg, reports=True)
    figures = list((again.out / "figures").glob("*.png"))
    assert figures, "no figures were made"
    html = (again.out / "report.html").read_text()
    assert html.count("data:image/png") >= len(figures)
