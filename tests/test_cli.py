"""The command line: exit codes, light commands that import no torch, `run`, `score`, `plugins`."""

import csv
import io
import json
import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from diqa_bench import cli
from diqa_bench.testing import stub_config

REPO = Path(__file__).resolve().parents[1]


def _python(code, env_extra=None, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, cwd=cwd or REPO, timeout=120)


# A subprocess that registers the stub plugins (they are not an entry point) and runs the CLI,
# then reports whether torch got imported.
NO_TORCH_SCRIPT = """
import json, sys
import diqa_bench.cli as cli
import diqa_bench.testing as stubs
from diqa_bench.plugins import load_plugins
cli.REGISTRY = load_plugins(extra=[("stub", stubs)])
try:
    code = cli.main({argv!r})
except SystemExit as exc:
    code = exc.code
print(json.dumps({{"code": code, "torch": "torch" in sys.modules}}), file=sys.stderr)
"""


def _run_light(argv, tmp_path):
    proc = _python(NO_TORCH_SCRIPT.format(argv=argv), {"DIQA_BENCH_PLUGINS": ""}, cwd=tmp_path)
    return json.loads(proc.stderr.strip().splitlines()[-1]), proc.stdout


@pytest.mark.parametrize(
    "argv, code, expected",
    [
        (["--help"], 0, "validate"),
        (["list", "methods"], 0, "stub-noise"),
        (["list", "datasets"], 0, "stub-dataset"),
        (["plugins"], 0, "stub"),
        (["validate", "bench.yaml"], 0, "OK"),
        (["validate", "bad.yaml"], 2, ""),
    ],
)
def test_light_commands_import_no_torch(tmp_path, argv, code, expected):
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(stub_config()))
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**stub_config(), "sedes": [0]}))
    result, out = _run_light(argv, tmp_path)
    assert result["code"] == code
    assert expected in out
    assert result["torch"] is False, f"`diqa-bench {' '.join(argv)}` imported torch"


ENTRY_POINTS = sorted(ep.name for ep in metadata.entry_points(group="diqa_bench"))


@pytest.mark.parametrize("plugin", ENTRY_POINTS)
def test_list_methods_with_each_installed_plugin_imports_no_torch(plugin):
    # Plugins must register classes without importing torch at module level (hookspecs contract).
    proc = _python(
        """
        import sys
        from diqa_bench.cli import main
        main(["list", "methods"])
        heavy = [m for m in ("torch", "pyiqa", "timm") if m in sys.modules]
        print("HEAVY:" + ",".join(heavy))
        """,
        {"DIQA_BENCH_PLUGINS": plugin, "DIQA_BENCH_STRICT_PLUGINS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    heavy = proc.stdout.strip().splitlines()[-1]
    assert heavy == "HEAVY:", f"plugin {plugin!r}: `diqa-bench list methods` imported {heavy[6:]}"


# -- in-process commands with the stub registry ---------------------------------------------


@pytest.fixture
def stub_cli(monkeypatch, stub_registry):
    monkeypatch.setattr(cli, "REGISTRY", stub_registry)
    return stub_registry


def test_no_command_prints_help_and_exits_2(capsys):
    assert cli.main([]) == 2
    assert "usage: diqa-bench" in capsys.readouterr().out


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["list", "things"])
    assert info.value.code == 2


def test_list_methods_shows_kind_and_direction(stub_cli, capsys):
    assert cli.main(["list", "methods"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "[zero-shot, lower is better]" in lines["stub-noise"]
    assert "[trainable]" in lines["stub-linear"] and "lower is better" not in lines["stub-linear"]
    assert "(plugin: stub)" in lines["stub-noise"]


def test_list_methods_with_options_prints_each_option_from_its_schema(stub_cli, capsys):
    assert cli.main(["list", "methods", "--options"]) == 0
    out = capsys.readouterr().out
    block = out.split("stub-noise", 1)[1].split("stub-linear", 1)[0]
    assert "    fail: boolean" in block and "    weights: string or null" in block
    assert "    min_size: integer (>= 1)" in block


def test_plugins_json(stub_cli, capsys):
    assert cli.main(["plugins", "--json"]) == 0
    (info,) = json.loads(capsys.readouterr().out)
    assert info["name"] == "stub" and info["error"] is None
    assert info["methods"] == ["stub-noise", "stub-linear"] and info["datasets"] == ["stub-dataset", "stub-blur"]


def _run_args(tmp_path, cfg):
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return ["run", str(path), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu",
            "--workers", "0", "--batch-size", "8", "--no-progress"]


def _small(methods):
    cfg = stub_config(methods=methods, seeds=[0], train_sets=[], test_domains=["a"])
    cfg["domains"]["a"][0]["options"]["count"] = 18
    cfg["statistics"] = {"bootstrap": 20}
    return cfg


@pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")
def test_run_exit_0_when_every_cell_is_done(tmp_path, stub_cli, capsys):
    assert cli.main(_run_args(tmp_path, _small([{"name": "stub-noise"}]))) == 0
    out = capsys.readouterr().out
    assert "Test domain: a" in out and "stub-noise @ -" in out
    assert f"Results: {tmp_path / 'out'}/" in out
    assert (tmp_path / "out" / "LEADERBOARD.md").is_file()


@pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")
def test_run_exit_1_when_a_cell_fails_and_tables_are_still_written(tmp_path, stub_cli, capsys):
    cfg = _small([{"name": "stub-noise"}, {"name": "stub-noise", "label": "broken", "options": {"fail": True}}])
    assert cli.main(_run_args(tmp_path, cfg)) == 1
    out = capsys.readouterr().out
    assert "1 of 2 cells have no result" in out
    assert "broken @ - (1 cell: a/seed 0): failed: RuntimeError: stub failure on purpose" in out
    assert "failed: RuntimeError" in (tmp_path / "out" / "LEADERBOARD.md").read_text()


def test_run_exit_2_on_config_error_and_unknown_only(tmp_path, stub_cli, capsys):
    assert cli.main(_run_args(tmp_path, {**_small([{"name": "stub-noise"}]), "bootstrap": 10})) == 2
    assert "unknown key 'bootstrap'" in capsys.readouterr().err
    assert cli.main(_run_args(tmp_path, _small([{"name": "stub-noise"}])) + ["--only", "stub-nope"]) == 2
    assert "--only: stub-nope not in the config's methods" in capsys.readouterr().err
    assert cli.main(_run_args(tmp_path, _small([{"name": "stub-noise"}])) + ["--device", "cpu", "--decode", "gpu"]) == 2
    assert "--decode gpu needs a CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing ran


# -- `diqa-bench score` --------------------------------------------------------------------


@pytest.fixture
def image_dir(tmp_path):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, sigma in enumerate([0.0, 0.05, 0.15]):
        img = np.clip(0.5 + rng.normal(0, sigma, (16, 16, 3)), 0, 1)
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / ("sub" if i == 2 else "") / f"n{i}.png")
    (folder / "notes.txt").write_text("not an image, and not listed")
    return folder


def _csv(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_score_writes_path_score_csv(image_dir, stub_cli, capsys):
    import torch

    from diqa_bench.images import decode
    from diqa_bench.testing import noise_energy

    assert cli.main(["score", "-m", "stub-noise", str(image_dir), "--device", "cpu"]) == 0
    rows = _csv(capsys.readouterr().out)
    assert [Path(r["path"]).name for r in rows] == ["n0.png", "n1.png", "n2.png"]
    assert list(rows[0]) == ["path", "score", "better", "skipped"]
    assert {r["better"] for r in rows} == {"lower"} and {r["skipped"] for r in rows} == {""}
    for r in rows:
        expected = noise_energy(torch.from_numpy(decode(r["path"])).permute(2, 0, 1)[None]).item()
        assert float(r["score"]) == pytest.approx(expected, rel=1e-4)
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores)  # noisier images score higher noise energy


def test_score_to_file_with_threshold(image_dir, tmp_path, stub_cli, capsys):
    out = tmp_path / "scores.csv"
    cli.main(["score", "-m", "stub-noise", str(image_dir), "--device", "cpu"])
    scores = [float(r["score"]) for r in _csv(capsys.readouterr().out)]
    threshold = (scores[1] + scores[2]) / 2
    assert cli.main(["score", "-m", "stub-noise", str(image_dir), "-o", str(out), "--threshold", str(threshold), "--device", "cpu"]) == 0
    rows = _csv(out.read_text())
    assert list(rows[0]) == ["path", "score", "better", "decision", "skipped"]
    # stub-noise is lower-is-better: the two cleaner images pass, the noisiest is rejected
    assert [r["decision"] for r in rows] == ["accept", "accept", "reject"]
    err = capsys.readouterr().err
    assert "3 of 3 images scored; lower score is better; 2 accepted, 1 rejected" in err


def test_score_reports_an_undecodable_file_and_exits_1(image_dir, stub_cli, capsys):
    (image_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    assert cli.main(["score", "-m", "stub-noise", str(image_dir), "--device", "cpu", "--threshold", "0.1"]) == 1
    captured = capsys.readouterr()
    rows = {Path(r["path"]).name: r for r in _csv(captured.out)}
    assert rows["broken.jpg"]["score"] == "" and rows["broken.jpg"]["decision"] == "error"
    assert rows["n0.png"]["score"] != ""
    assert rows["broken.jpg"]["skipped"] and not rows["n0.png"]["skipped"]
    assert "broken.jpg" in captured.err


def _sized_images(folder, sizes):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i, (w, h) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"img{i:02d}_{w}x{h}.png")
    return folder


@pytest.fixture
def _stop_pools():
    """No pool from an earlier test, and none left behind (`score` uses one per CPU core by default)."""
    from diqa_bench import parallel

    parallel.shutdown_pools(wait=True)
    yield
    parallel.shutdown_pools(wait=True)


@pytest.mark.parametrize("processes", ["1", "2"], ids=["in-process", "process-pool"])
def test_score_skips_an_image_the_method_cannot_score_and_scores_the_rest(tmp_path, stub_cli, capsys, processes, _stop_pools):
    """Like NIQE below 96x96: the too-small image is skipped with its reason, the others (of the
    same batch size bucket or not) are scored, and the exit code says some were skipped."""
    folder = _sized_images(tmp_path / "imgs", [(40, 40), (40, 40), (12, 40), (40, 40), (48, 32)] * 4)
    argv = ["score", "-m", "stub-noise", "--option", "min_size=30", str(folder), "--device", "cpu", "--processes", processes,
            "--cache-dir", str(tmp_path / "cache")]
    from diqa_bench import parallel

    assert cli.main(argv) == 1
    assert (2 in parallel.pool_sizes()) == (processes == "2")  # the path under test is the one that ran
    captured = capsys.readouterr()
    rows = _csv(captured.out)
    small = [r for r in rows if "_12x40" in r["path"]]
    assert len(rows) == 20 and len(small) == 4
    for r in small:
        assert r["score"] == "" and "needs at least 30 pixels a side, got 40x12" in r["skipped"]
    assert all(r["score"] != "" and r["skipped"] == "" for r in rows if r not in small)
    assert captured.err.count("diqa-bench: skipped") == 4 and "16 of 20 images scored" in captured.err


@pytest.mark.parametrize("processes", ["1", "2"], ids=["in-process", "process-pool"])
@pytest.mark.parametrize("extra", [-1, 1])
def test_score_with_a_method_returning_the_wrong_number_of_scores_is_an_error(image_dir, stub_cli, capsys, extra, processes, _stop_pools):
    argv = ["score", "-m", "stub-noise", "--option", f"extra_scores={extra}", str(image_dir), "--device", "cpu", "--processes", processes]
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no CSV with scores on the wrong images
    assert "diqa-bench: error: stub-noise.score_batch returned" in captured.err and "Traceback" not in captured.err


def test_score_answers_a_second_time_from_the_cache(image_dir, tmp_path, stub_cli, stub_counters, capsys):
    argv = ["score", "-m", "stub-noise", str(image_dir), "--device", "cpu", "--cache-dir", str(tmp_path / "cache"), "--processes", "1"]
    assert cli.main(argv) == 0
    first = capsys.readouterr().out
    assert stub_counters[0].calls == 3
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == first
    assert stub_counters[0].calls == 3  # nothing scored again
    assert cli.main(argv + ["--option", "nan=false"]) == 0  # other options: another cache entry
    assert stub_counters[0].calls == 6


def test_score_progress_bar_on_a_terminal_unless_no_progress(image_dir, tmp_path, stub_cli, capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    argv = ["score", "-m", "stub-noise", str(image_dir), "--device", "cpu", "--processes", "1"]
    assert cli.main(argv + ["--cache-dir", str(tmp_path / "c1")]) == 0
    assert "score (stub-noise)" in capsys.readouterr().err
    assert cli.main(argv + ["--cache-dir", str(tmp_path / "c2"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "score (stub-noise)" not in err and "lower score is better" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["score", "-m", "stub-nois", "x.png"], "Did you mean 'stub-noise'"),
        (["score", "-m", "stub-linear", "x.png"], "is trainable: pass --weights"),
        (["score", "-m", "stub-noise", "/nonexistent/folder"], "no such file or folder"),
        (["score", "-m", "stub-noise", "--option", "colour=red", "x.png"], "'colour'"),
        (["score", "-m", "stub-noise", "--option", "unavailable=true", "."], "missing weights file stub.pth"),
        (["score", "-m", "stub-noise", "--decode", "gpu", "x.png"], "--decode gpu needs a CUDA device"),
    ],
)
def test_score_usage_errors_exit_2(tmp_path, monkeypatch, stub_cli, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    assert cli.main(argv + ["--device", "cpu"]) == 2
    assert message in capsys.readouterr().err


def test_plugins_lists_a_broken_plugin_with_its_error(monkeypatch, capsys, no_entry_point_plugins):
    import types
    import warnings

    import diqa_bench.testing as stubs
    from diqa_bench import hookimpl
    from diqa_bench.plugins import load_plugins

    @hookimpl
    def register_methods(register):
        raise ImportError("needs libfoo")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        registry = load_plugins(extra=[("stub", stubs), ("broken", types.SimpleNamespace(register_methods=register_methods))])
    monkeypatch.setattr(cli, "REGISTRY", registry)
    assert cli.main(["plugins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("stub ") and "methods: stub-noise, stub-linear" in line for line in lines)
    assert any(line.startswith("broken ") and "FAILED: plugin 'broken' failed in register_methods: ImportError: needs libfoo" in line for line in lines)


def test_strict_plugins_flag_makes_a_broken_plugin_exit_2(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken_ep_mod.py").write_text("raise ImportError('needs libfoo')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from diqa_bench import plugins

    ep = metadata.EntryPoint(name="broken", value="broken_ep_mod", group=plugins.ENTRY_POINT_GROUP)
    monkeypatch.setattr(plugins, "metadata", type("M", (), {"entry_points": staticmethod(lambda group: [ep])}))
    monkeypatch.delenv("DIQA_BENCH_PLUGINS", raising=False)
    assert cli.main(["--strict-plugins", "list", "methods"]) == 2
    assert "plugin 'broken' (broken_ep_mod) failed to load: ImportError: needs libfoo" in capsys.readouterr().err
    with pytest.warns(plugins.PluginWarning):
        assert cli.main(["list", "methods"]) == 0


WEIGHTS = Path(os.environ.get("DIQA_BENCH_WEIGHTS") or REPO.parent / "shared" / "weights")


def test_score_niqe_skips_an_image_below_96x96_and_scores_the_others(tmp_path, capsys, monkeypatch, _stop_pools):
    """The real metric through the real plugins and the process pool, as a quality gate runs it."""
    if not (WEIGHTS / "niqe_modelparameters.mat").is_file():
        pytest.skip(f"niqe_modelparameters.mat not found in {WEIGHTS}")
    monkeypatch.delenv("DIQA_BENCH_PLUGINS", raising=False)
    folder = _sized_images(tmp_path / "imgs", [(160, 128), (64, 200), (200, 150)])
    argv = ["score", "-m", "niqe", str(folder), "--device", "cpu", "--weights-dir", str(WEIGHTS), "--processes", "2",
            "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    rows = {Path(r["path"]).name: r for r in _csv(captured.out)}
    assert rows["img01_64x200.png"]["score"] == ""
    assert "NIQE needs at least 96x96 pixels, got 200x64" in rows["img01_64x200.png"]["skipped"]
    assert all(float(rows[n]["score"]) > 0 and rows[n]["skipped"] == "" for n in ("img00_160x128.png", "img02_200x150.png"))
    assert {r["better"] for r in rows.values()} == {"lower"}
    assert "2 of 3 images scored; lower score is better" in captured.err


def test_score_reports_a_method_unavailable_in_the_pool_workers_in_one_line(image_dir, stub_cli, capsys, _stop_pools):
    from diqa_bench import parallel

    argv = ["score", "-m", "stub-noise", "--option", "unavailable=true", str(image_dir), "--device", "cpu", "--processes", "2"]
    assert cli.main(argv) == 2
    assert 2 in parallel.pool_sizes()  # the workers, not the parent, found the method unavailable
    captured = capsys.readouterr()
    assert "diqa-bench: error: stub-noise: missing weights file stub.pth" in captured.err and captured.out == ""


def test_validate_schema_needs_no_config_and_validate_without_one_is_one_line(capsys):
    assert cli.main(["validate", "--schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert {"methods", "domains", "splits", "max_image_pixels"} <= set(schema["properties"])
    assert cli.main(["validate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "give a CONFIG file" in err[0]
