"""The hooks beyond datasets and methods (statistics, figures, executors, commands): the core
plugin registers diqa-bench's own through them, a third-party plugin's entries are validated on
arrival and reported against it, and the CLI finds executors and commands by name."""

import types
import warnings

import pytest
import yaml

from diqa_bench import cli, hookimpl
from diqa_bench.extensions import Command, Executor, Statistic
from diqa_bench.plugins import PluginWarning, load_plugins
from diqa_bench.testing import stub_config


def _plugin(**hooks):
    mod = types.ModuleType("fake_hooks_plugin")
    for name, fn in hooks.items():
        setattr(mod, name, fn)
    return mod


def test_core_plugin_loads_even_when_no_plugin_is_selected(no_entry_point_plugins):
    reg = load_plugins()
    assert reg.plugins == {}  # the core plugin is no entry point and not listed among them
    assert reg.core.builtin and reg.core.hooks == ["register_commands", "register_executors", "register_figures", "register_statistics"]
    assert list(reg.executors) == ["local", "ray"] and reg.executors["ray"].plugin == "core"
    assert "study" in reg.commands


def test_broken_entries_are_reported_against_their_plugin_and_rolled_back(no_entry_point_plugins):
    @hookimpl
    def register_statistics(register):
        register(Statistic("MEDIAN_ERR", False, function=lambda s, m: 0.0))
        register(Statistic("ABS_SROCC", "higher", function=lambda s, m: 0.0))  # direction must be a bool

    @hookimpl
    def register_executors(register):
        register(Executor("fine", "collections:OrderedDict"))

    with pytest.warns(PluginWarning, match=r"plugin 'bad' failed in register_statistics: plugin 'bad': statistic 'ABS_SROCC' has higher_is_better='higher'"):
        reg = load_plugins(extra=[("bad", _plugin(register_statistics=register_statistics, register_executors=register_executors))])
    assert "MEDIAN_ERR" not in reg.statistics  # rolled back with the broken entry
    assert reg.plugins["bad"].statistics == [] and reg.plugins["bad"].error
    assert "fine" not in reg.executors  # a failed plugin registers nothing more


@pytest.mark.parametrize("entry, message", [
    (Statistic("bad name", True, function=len), "statistic name 'bad name'"),
    (Statistic("X", True), "needs exactly one of function"),
    (Statistic("THRESHOLD", True, function=len), "statistic name 'THRESHOLD' is reserved"),
    (Statistic("pair_acc", True, function=len), "statistic name 'pair_acc' is reserved"),
    (Executor("Ray2", "a:b"), "executor name 'Ray2'"),
    (Command("hello", "", "a:b"), "command 'hello' needs a help line"),
    (Command("hello", "say hello", "not a reference"), "must be a callable or a 'module:attribute' string"),
])
def test_each_entry_is_checked_on_arrival(no_entry_point_plugins, entry, message):
    hook = "register_" + {Statistic: "statistics", Executor: "executors", Command: "commands"}[type(entry)]

    @hookimpl(specname=hook)
    def register(register):
        register(entry)

    with pytest.warns(PluginWarning, match=message):
        reg = load_plugins(extra=[("bad", _plugin(**{hook: register}))])
    assert reg.plugins["bad"].error


def test_the_reserved_statistic_names_are_the_hosts_own_rows():
    from diqa_bench import metrics, pairs
    from diqa_bench.extensions import RESERVED_STATISTICS

    assert set(RESERVED_STATISTICS) == {metrics.THRESHOLD, pairs.STATISTIC}


def test_a_plugin_cannot_take_a_core_name(no_entry_point_plugins):
    @hookimpl
    def register_executors(register):
        register(Executor("local", "collections:OrderedDict"))

    with pytest.warns(PluginWarning, match="executor name 'local' is registered twice: by built-in plugin 'core' and by plugin 'evil'"):
        reg = load_plugins(extra=[("evil", _plugin(register_executors=register_executors))])
    assert reg.executors["local"].plugin == "core"


# -- commands ------------------------------------------------------------------------------------

def _hello_arguments(parser):
    parser.add_argument("--name", default="world")


def _hello(args):
    print(f"hello {args.name} ({len(args.registry.methods)} methods)")
    return 0


@hookimpl
def _register_hello(register):
    register(Command("hello", "say hello", _hello, _hello_arguments))


def test_a_plugin_adds_a_command(monkeypatch, stub_registry, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reg = load_plugins(extra=[("hello", _plugin(register_commands=_register_hello))])
    monkeypatch.setattr(cli, "REGISTRY", reg)
    assert cli.main(["hello", "--name", "plugin"]) == 0
    assert "hello plugin (0 methods)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "say hello" in out and "study" in out


def test_a_plugin_command_cannot_replace_a_built_in_one(monkeypatch, no_entry_point_plugins, capsys):
    @hookimpl
    def register_commands(register):
        register(Command("run", "run something else", _hello))

    reg = load_plugins(extra=[("evil", _plugin(register_commands=register_commands))])
    monkeypatch.setattr(cli, "REGISTRY", reg)
    with pytest.warns(PluginWarning, match="plugin 'evil' registers the command 'run', which is built in; it is ignored"):
        with pytest.raises(SystemExit):
            cli.main(["run", "--help"])
    assert "benchmark YAML" in capsys.readouterr().out


# -- executors -----------------------------------------------------------------------------------

class CountingExecutor:
    """A plugin's executor: runs units locally and counts them."""

    made = []

    def __init__(self, progress=False, log=print, tag=""):
        from diqa_bench.executors import LocalExecutor

        self.inner, self.tag, self.units = LocalExecutor(progress, log), tag, 0
        CountingExecutor.made.append(self)

    def run(self, scorer, units, on_unit=None):
        self.units += len(units)
        return self.inner.run(scorer, units, on_unit)


@hookimpl
def _register_counting(register):
    register(Executor("counting", CountingExecutor, "counts units", {"tag": {"type": "string"}}))


def _run_args(tmp_path, cfg, *extra):
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return ["run", str(path), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu",
            "--workers", "0", "--no-progress", "--no-report", *extra]


@pytest.fixture
def counting_cli(monkeypatch, no_entry_point_plugins):
    import diqa_bench.testing as stubs

    reg = load_plugins(extra=[("stub", stubs), ("counting", _plugin(register_executors=_register_counting))])
    monkeypatch.setattr(cli, "REGISTRY", reg)
    CountingExecutor.made.clear()
    return reg


def test_run_uses_the_executor_named_on_the_command_line(tmp_path, counting_cli, no_report_figures):
    cfg = stub_config(methods=[{"name": "stub-noise"}], train_sets=[], seeds=[0])
    assert cli.main(_run_args(tmp_path, cfg, "--executor", "counting")) == 0
    (made,) = CountingExecutor.made
    assert made.units == 1


def test_the_config_names_the_executor_and_its_options(tmp_path, counting_cli, no_report_figures):
    cfg = stub_config(methods=[{"name": "stub-noise"}], train_sets=[], seeds=[0], executor={"type": "counting", "tag": "x"})
    assert cli.main(_run_args(tmp_path, cfg)) == 0
    assert CountingExecutor.made[0].tag == "x"


def test_unknown_executor_is_one_line_listing_the_registered_ones(tmp_path, counting_cli, capsys):
    cfg = stub_config(methods=[{"name": "stub-noise"}], train_sets=[], seeds=[0])
    assert cli.main(_run_args(tmp_path, cfg, "--executor", "countin")) == 2
    err = capsys.readouterr().err.strip()
    assert err == "diqa-bench: error: unknown executor 'countin'. Did you mean 'counting'? Known executors: counting, local, ray"
    assert not (tmp_path / "out").exists()


def test_validate_checks_the_configs_executor_and_its_keys(tmp_path, counting_cli, capsys):
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(stub_config(executor={"type": "rey"})))
    assert cli.main(["validate", str(path)]) == 2
    assert "executor.type: unknown executor 'rey'. Did you mean 'ray'?" in capsys.readouterr().err
    path.write_text(yaml.safe_dump(stub_config(executor={"type": "local", "shard_size": 10})))
    assert cli.main(["validate", str(path)]) == 2
    assert "executor: unknown option(s) 'shard_size'; this takes no options" in capsys.readouterr().err
    path.write_text(yaml.safe_dump(stub_config(executor={"type": "ray", "shard_size": 10})))
    assert cli.main(["validate", str(path)]) == 0


def test_plugins_all_lists_the_core_plugin_and_every_kind_of_entry(monkeypatch, stub_registry, capsys):
    monkeypatch.setattr(cli, "REGISTRY", stub_registry)
    assert cli.main(["plugins"]) == 0
    assert not capsys.readouterr().out.startswith("core")
    assert cli.main(["plugins", "--all"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("core ") and "executors: local, ray" in first and "commands: study" in first


# -- statistics and figures -----------------------------------------------------------------------

def test_a_function_statistic_gets_its_interval_from_the_same_group_draws():
    """A plugin's (scores, mos) -> float, bootstrapped by the host, against the built-in weighted
    SROCC: same value, same replicates (the expanded resample of the same group draws), scores of a
    lower-is-better method and DMOS labels both arriving aligned (higher = better)."""
    import numpy as np
    from scipy.stats import spearmanr

    from diqa_bench import extensions, stats

    rng = np.random.default_rng(4)
    mos = rng.uniform(1, 5, 40)
    score = -(mos + rng.normal(0, 1, 40))  # lower is better
    groups = np.repeat(np.arange(10), 4)
    mine = Statistic("MY_SROCC", True, function=lambda s, m: spearmanr(s, m).statistic)
    with extensions.use({**stats.builtin_statistics(), "MY_SROCC": mine}, []):
        cell = stats.evaluate(score, 6 - mos, groups=groups, lower_better=True, mos_lower_better=True, bootstrap=200, seed=1)
    assert list(cell.values) == ["SROCC", "KRCC", "PLCC", "PLCC_raw", "RMSE", "MY_SROCC"]
    assert cell.values["MY_SROCC"] == pytest.approx(cell.values["SROCC"]) and cell.values["SROCC"] > 0.5
    np.testing.assert_allclose(cell.boot["MY_SROCC"], cell.boot["SROCC"], atol=1e-12)
    assert cell.ci["MY_SROCC"] == pytest.approx(cell.ci["SROCC"])


def test_without_a_registry_in_use_the_built_ins_alone_are_computed():
    import numpy as np

    from diqa_bench import stats

    cell = stats.evaluate(np.arange(12.0), np.arange(12.0) ** 2, bootstrap=0)
    assert list(cell.values) == ["SROCC", "KRCC", "PLCC", "PLCC_raw", "RMSE"]


def _figure_ok(run):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot(run.scores.score.to_numpy())
    return fig


def _figure_boom(run):
    raise RuntimeError("no data for this")


@hookimpl
def _register_two_figures(register):
    from diqa_bench.extensions import Figure

    register(Figure("boom", "never drawn", _figure_boom))
    register(Figure("every-score", "every score of the run, in order", _figure_ok))


def test_a_failing_plugin_figure_is_reported_and_the_others_are_drawn(tmp_path):
    from diqa_bench.testing import run_tiny_benchmark

    cfg = stub_config(methods=[{"name": "stub-noise"}], train_sets=[], seeds=[0])
    with pytest.warns(PluginWarning, match="figure 'boom' of plugin 'figs' failed: RuntimeError: no data for this"):
        result = run_tiny_benchmark(tmp_path, cfg, plugins=[("figs", _plugin(register_figures=_register_two_figures))], reports=True)
    html = (result.out / "report.html").read_text()
    assert "figure &#x27;boom&#x27; of plugin &#x27;figs&#x27; failed: RuntimeError: no data for this" in html
    assert "every score of the run, in order" in html and (result.out / "figures" / "every-score.png").is_file()
    assert (result.out / "figures" / "scatter_a.png").is_file()  # the built-in figures, registered by the core plugin, still drawn
    assert "figures/every-score.png" in result.leaderboard


def test_statistics_extra_names_a_registered_statistic(tmp_path, stub_cli_registry, capsys):
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(stub_config(statistics={"extra": ["SROC"]})))
    assert cli.main(["validate", str(path)]) == 2
    assert "statistics.extra[0]: unknown statistic 'SROC'. Did you mean 'SROCC'?" in capsys.readouterr().err


@pytest.fixture
def stub_cli_registry(monkeypatch, stub_registry):
    monkeypatch.setattr(cli, "REGISTRY", stub_registry)
    return stub_registry


def test_help_loads_every_hook_and_imports_nothing_heavy():
    """`--help` builds the parser from every installed plugin's commands, so every plugin's hooks
    run (the core plugin's statistics, figures, executors and commands, the example plugin's
    statistic and figure): none of them may import pandas, scipy, matplotlib, torch or pyiqa."""
    import json
    import os
    import subprocess
    import sys

    code = ("import json, sys\nfrom diqa_bench.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(json.dumps([m for m in ('pandas', 'scipy', 'matplotlib', 'torch', 'pyiqa') if m in sys.modules]), file=sys.stderr)")
    env = {k: v for k, v in os.environ.items() if k not in ("DIQA_BENCH_PLUGINS", "DIQA_BENCH_STRICT_PLUGINS")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**env, "DIQA_BENCH_STRICT_PLUGINS": "1"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "study" in proc.stdout
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == []


def test_ray_address_without_an_executor_that_takes_one_is_one_line(tmp_path, counting_cli, capsys):
    cfg = stub_config(methods=[{"name": "stub-noise"}], train_sets=[], seeds=[0])
    assert cli.main(_run_args(tmp_path, cfg, "--ray-address", "10.0.0.1:6379")) == 2
    assert capsys.readouterr().err.strip() == ("diqa-bench: error: --ray-address: the 'local' executor takes no address; "
                                               "add --executor ray (or set executor.type in the config)")
