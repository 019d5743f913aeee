"""Plugin loading: failure isolation, strict mode, duplicate names, entry validation,
DIQA_BENCH_PLUGINS selection, misspelt hooks."""

import sys
import textwrap
import types
import uuid
import warnings
from importlib import metadata

import pytest

import diqa_bench.testing as stubs
from diqa_bench import hookimpl, plugins
from diqa_bench.errors import PluginError
from diqa_bench.methods import Method
from diqa_bench.plugins import PluginWarning, load_plugins

pytestmark = pytest.mark.usefixtures("no_entry_point_plugins")


def _method(name, version="1", base=Method, **attrs):
    return type(f"M_{name.replace('-', '_')}", (base,), {"name": name, "version": version, "lower_better": False, **attrs})


def _plugin(**hooks):
    """A plugin object with the given hook functions (already marked with @hookimpl)."""
    mod = types.ModuleType(f"fake_plugin_{uuid.uuid4().hex[:8]}")
    for name, fn in hooks.items():
        setattr(mod, name, fn)
    return mod


def _registers(*classes):
    @hookimpl
    def register_methods(register):
        for cls in classes:
            register(cls)

    return register_methods


@pytest.fixture
def entry_points(tmp_path, monkeypatch):
    """Install fake entry points: each (name, module source) becomes an importable module."""

    def install(**sources):
        eps = []
        for ep_name, source in sources.items():
            module = f"ep_{ep_name}_{uuid.uuid4().hex[:8]}"
            (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
            eps.append(metadata.EntryPoint(name=ep_name, value=module, group=plugins.ENTRY_POINT_GROUP))
            monkeypatch.delitem(sys.modules, module, raising=False)
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.setattr(plugins, "metadata", types.SimpleNamespace(entry_points=lambda group: [e for e in eps if e.group == group]))
        monkeypatch.delenv("DIQA_BENCH_PLUGINS", raising=False)

    return install


GOOD_SOURCE = """
from diqa_bench import hookimpl
from diqa_bench.methods import Method

class Good(Method):
    name = "{method}"
    version = "1"
    lower_better = False

@hookimpl
def register_methods(register):
    register(Good)
"""


def test_stub_plugin_registers_its_classes():
    reg = load_plugins(extra=[("stub", stubs)])
    assert set(reg.methods) == {"stub-noise", "stub-linear"}
    assert set(reg.datasets) == {"stub-dataset", "stub-blur"}
    assert reg.methods["stub-noise"].plugin == "stub"
    assert reg.plugins["stub"].hooks == ["register_datasets", "register_methods"]
    assert reg.method("stub-linear") is stubs.StubLinear


def test_unknown_lookup_suggests_names():
    reg = load_plugins(extra=[("stub", stubs)])
    with pytest.raises(Exception, match="Did you mean 'stub-noise'"):
        reg.method("stub-noice")


def test_plugin_failing_on_import_warns_and_others_load(entry_points):
    entry_points(broken="raise ImportError('needs libfoo')\n", good=GOOD_SOURCE.format(method="good-method"))
    with pytest.warns(PluginWarning) as record:
        reg = load_plugins()
    messages = [str(w.message) for w in record]
    assert any("plugin 'broken'" in m and "ImportError: needs libfoo" in m for m in messages), messages
    assert "good-method" in reg.methods
    assert reg.plugins["broken"].error and "needs libfoo" in reg.plugins["broken"].error
    assert reg.plugins["good"].error is None


def test_plugin_failing_on_import_is_fatal_in_strict_mode(entry_points, monkeypatch):
    entry_points(broken="raise ImportError('needs libfoo')\n")
    with pytest.raises(PluginError, match="plugin 'broken'.*needs libfoo"):
        load_plugins(strict=True)
    monkeypatch.setenv("DIQA_BENCH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="needs libfoo"):
        load_plugins()


def test_plugin_raising_in_its_hook_is_isolated_and_rolled_back():
    @hookimpl
    def register_methods(register):
        register(_method("half-done"))
        raise RuntimeError("registration exploded")

    bad = _plugin(register_methods=register_methods)
    with pytest.warns(PluginWarning, match="plugin 'bad' failed in register_methods: RuntimeError: registration exploded"):
        reg = load_plugins(extra=[("bad", bad), ("stub", stubs)])
    assert "half-done" not in reg.methods  # what it registered before failing is rolled back
    assert reg.plugins["bad"].methods == []
    assert "stub-noise" in reg.methods and "stub-dataset" in reg.datasets
    with pytest.raises(PluginError, match="registration exploded"):
        load_plugins(strict=True, extra=[("bad", bad), ("stub", stubs)])


def test_duplicate_name_is_an_error_naming_both_plugins():
    dup = _plugin(register_methods=_registers(_method("stub-noise")))
    with pytest.warns(PluginWarning) as record:
        reg = load_plugins(extra=[("stub", stubs), ("copycat", dup)])
    msg = " ".join(str(w.message) for w in record)
    assert "'stub-noise' is registered twice" in msg
    assert "plugin 'stub'" in msg and "plugin 'copycat'" in msg
    assert reg.methods["stub-noise"].cls is stubs.StubNoise
    with pytest.raises(PluginError, match="registered twice: by plugin 'stub' and by plugin 'copycat'"):
        load_plugins(strict=True, extra=[("stub", stubs), ("copycat", dup)])


@pytest.mark.parametrize(
    "cls, expected",
    [
        (type("NotAMethod", (), {"name": "x", "version": "1", "lower_better": False}), "is not a subclass of diqa_bench.methods.Method"),
        (_method(""), "has no 'name'"),
        (_method("no-version", version=None), "has no 'version'"),
        (_method("Bad Name"), "must be lower-case"),
        (_method("vague", lower_better="sometimes"), "lower_better='sometimes'"),
        (stubs.StubDataset, "is not a subclass of diqa_bench.methods.Method"),
    ],
)
def test_invalid_method_entries_are_rejected(cls, expected):
    bad = _plugin(register_methods=_registers(cls))
    with pytest.raises(PluginError, match="plugin 'bad'") as info:
        load_plugins(strict=True, extra=[("bad", bad)])
    assert expected in str(info.value)


def test_invalid_dataset_entry_is_rejected():
    @hookimpl
    def register_datasets(register):
        register(stubs.StubNoise)

    with pytest.raises(PluginError, match="not a subclass of diqa_bench.datasets.Dataset"):
        load_plugins(strict=True, extra=[("bad", _plugin(register_datasets=register_datasets))])


def test_misspelt_hook_name_is_caught():
    @hookimpl
    def register_method(register):  # missing the final "s"
        register(_method("never"))

    bad = _plugin(register_method=register_method)
    with pytest.warns(PluginWarning, match="plugin 'bad'.*register_method.*misspelt hook name"):
        reg = load_plugins(extra=[("bad", bad), ("stub", stubs)])
    assert "never" not in reg.methods
    assert reg.plugins["bad"].error
    assert "stub-noise" in reg.methods
    with pytest.raises(PluginError, match="misspelt hook name"):
        load_plugins(strict=True, extra=[("bad", bad)])


def test_env_selects_entry_points(entry_points, monkeypatch):
    entry_points(a=GOOD_SOURCE.format(method="method-a"), b=GOOD_SOURCE.format(method="method-b"))
    assert set(load_plugins().methods) == {"method-a", "method-b"}
    monkeypatch.setenv("DIQA_BENCH_PLUGINS", "a")
    reg = load_plugins()
    assert set(reg.methods) == {"method-a"} and set(reg.plugins) == {"a"}
    monkeypatch.setenv("DIQA_BENCH_PLUGINS", " b , a ")
    assert set(load_plugins().methods) == {"method-a", "method-b"}
    monkeypatch.setenv("DIQA_BENCH_PLUGINS", "")
    assert load_plugins().methods == {}


def test_env_selection_does_not_filter_extra_plugins(entry_points, monkeypatch):
    # DIQA_BENCH_PLUGINS filters entry points; plugins passed in code (extra=) always load.
    entry_points(a=GOOD_SOURCE.format(method="method-a"), b=GOOD_SOURCE.format(method="method-b"))
    monkeypatch.setenv("DIQA_BENCH_PLUGINS", "a")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # naming an extra plugin alone warns about nothing
        reg = load_plugins(extra=[("stub", stubs)])
    assert set(reg.methods) == {"method-a", "stub-noise", "stub-linear"}
    monkeypatch.setenv("DIQA_BENCH_PLUGINS", "stub")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reg = load_plugins(extra=[("stub", stubs)])
    assert set(reg.methods) == {"stub-noise", "stub-linear"}


def test_env_naming_a_missing_plugin_warns(entry_points, monkeypatch):
    entry_points(a=GOOD_SOURCE.format(method="method-a"))
    monkeypatch.setenv("DIQA_BENCH_PLUGINS", "a,ghost")
    with pytest.warns(PluginWarning, match="plugin 'ghost' named in DIQA_BENCH_PLUGINS is not installed"):
        reg = load_plugins()
    assert "method-a" in reg.methods
    with pytest.raises(PluginError, match="ghost"):
        load_plugins(strict=True)


def test_cli_warning_format_is_one_line():
    line = plugins.format_warning(PluginWarning("plugin 'x' failed to load: boom"), PluginWarning, "f.py", 1)
    assert line == "diqa-bench: warning: plugin 'x' failed to load: boom\n"
