"""Hostile files: weights that carry code, configs that explode, images that claim to be huge.
Each test reproduces an attack and checks the one-line refusal (CPU only, no network)."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diqa_bench import cli
from diqa_bench.errors import MethodUnavailable
from diqa_bench.methods import MethodContext

SHARED_WEIGHTS = Path(__file__).resolve().parents[1].parent / "shared" / "weights"
if not SHARED_WEIGHTS.is_dir() and os.environ.get("DIQA_BENCH_WEIGHTS"):  # a checkout elsewhere
    SHARED_WEIGHTS = Path(os.environ["DIQA_BENCH_WEIGHTS"])


class _Payload:
    """Unpickling this creates ``marker``: the proof that a file's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def evil_pth(path: Path, marker: Path, wrap=lambda payload: payload) -> Path:
    import torch

    torch.save(wrap(_Payload(marker)), str(path))
    return path


@pytest.fixture
def offline_pyiqa(monkeypatch, tmp_path):
    """pyiqa's cache in tmp (empty), no weights folder: nothing comes from the machine."""
    from pyiqa.utils import download_util

    monkeypatch.setattr(download_util, "DEFAULT_CACHE_DIR", str(tmp_path / "pyiqa-cache"))
    monkeypatch.delenv("DIQA_BENCH_WEIGHTS", raising=False)
    return tmp_path


def _images(folder: Path, n: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (100, 120, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    return folder


def _csv_folder_run(tmp_path: Path, folder: Path, **config):
    """A stub-noise benchmark on every image of ``folder`` as a csv dataset (MOS 1-5 by name)."""
    import pandas as pd

    from diqa_bench.testing import run_tiny_benchmark

    import diqa_datasets

    names = sorted(p.name for p in folder.iterdir())
    pd.DataFrame({"image": names, "mos": np.linspace(1, 5, len(names))}).to_csv(tmp_path / "labels.csv", index=False)
    cfg = {
        "domains": {"a": [{"dataset": "csv", "options": {"csv": str(tmp_path / "labels.csv"), "root": str(folder), "mos_range": [1, 5]}}]},
        "methods": [{"name": "stub-noise"}],
        "test_domains": ["a"],
        "splits": {"test_ratio": 0.99},
        "statistics": {"bootstrap": 10},
        **config,
    }
    return run_tiny_benchmark(tmp_path / "run", cfg, plugins=[("datasets", diqa_datasets)], reports=False)


@pytest.mark.parametrize("method", ["brisque", "musiq"])
def test_score_refuses_weights_that_carry_code(offline_pyiqa, capsys, method):
    tmp = offline_pyiqa
    marker = tmp / "pwned"
    weights = evil_pth(tmp / "EVIL.pth", marker, wrap=(lambda p: (p, p)) if method == "brisque" else (lambda p: {"w": p}))
    code = cli.main(["score", "-m", method, "--weights", str(weights), "--device", "cpu", str(_images(tmp / "imgs"))])
    err = capsys.readouterr().err
    assert not marker.exists(), "the weights file's code ran"
    assert code == 2
    assert "refused" in err and "EVIL.pth" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_weights_folder_with_a_crafted_brisque_file_is_refused(offline_pyiqa):
    from diqa_pyiqa.zero_shot import Brisque

    folder = offline_pyiqa / "weights"
    folder.mkdir()
    marker = offline_pyiqa / "pwned"
    evil_pth(folder / "brisque_svm_weights.pth", marker, wrap=lambda p: (p, p))
    with pytest.raises(MethodUnavailable, match="refused"):
        Brisque().setup(MethodContext(weights_dir=folder))
    assert not marker.exists()


def test_generic_pyiqa_method_cannot_unpickle_code_either(offline_pyiqa):
    """The generic method reaches pyiqa's own loaders (weights_only=False): they are forced safe."""
    from diqa_pyiqa.zero_shot import PyiqaAny

    marker = offline_pyiqa / "pwned"
    weights = evil_pth(offline_pyiqa / "EVIL.pth", marker, wrap=lambda p: (p, p))
    with pytest.raises(MethodUnavailable, match="refused"):
        PyiqaAny(metric="brisque", weights=str(weights)).setup(MethodContext())
    assert not marker.exists()
    import torch

    assert torch.load.__module__.startswith("torch"), "torch.load stays patched after the build"


def test_malformed_weights_file_is_one_line(offline_pyiqa):
    from diqa_pyiqa.zero_shot import Brisque, Musiq

    junk = offline_pyiqa / "junk.pth"
    junk.write_bytes(b"\x80\x04 not a torch file at all")
    for cls in (Brisque, Musiq):
        with pytest.raises(MethodUnavailable, match="not a readable torch file"):
            cls(weights=str(junk)).setup(MethodContext())


@pytest.mark.skipif(not (SHARED_WEIGHTS / "brisque_svm_weights.pth").is_file(), reason="needs ../shared/weights")
def test_generic_method_never_writes_into_pyiqas_cache(offline_pyiqa):
    """A file pyiqa asks for is read in place from the weights folder, not copied into its cache."""
    from diqa_pyiqa.zero_shot import PyiqaAny

    folder = offline_pyiqa / "weights"
    folder.mkdir()
    shutil.copyfile(SHARED_WEIGHTS / "brisque_svm_weights.pth", folder / "brisque_svm_weights.pth")
    method = PyiqaAny(metric="brisque")
    method.setup(MethodContext(weights_dir=folder))
    assert method.model is not None
    cache = offline_pyiqa / "pyiqa-cache"
    assert not cache.exists() or not any(cache.iterdir())


@pytest.mark.skipif(not (SHARED_WEIGHTS / "brisque_svm_weights.pth").is_file(), reason="needs ../shared/weights")
def test_genuine_brisque_weights_still_load(offline_pyiqa):
    from diqa_pyiqa.zero_shot import Brisque

    method = Brisque()
    method.setup(MethodContext(weights_dir=SHARED_WEIGHTS))
    assert method.svr_params[1].shape[0] > 0  # the CPU's fast path reads the file itself
    method = Brisque(precision="float32")  # pyiqa's model, as on other devices
    method.setup(MethodContext(weights_dir=SHARED_WEIGHTS))
    assert method.model.net.sv.shape[0] > 0


# -- decompression bombs ------------------------------------------------------------------------


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (CRC fixed, so PIL believes it)."""
    import struct
    import zlib

    buf = __import__("io").BytesIO()
    Image.new("L", (8, 8)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def jpeg_claiming(path: Path, width: int, height: int) -> Path:
    """A small JPEG whose frame header (SOF0) claims ``width`` x ``height`` pixels."""
    import struct

    buf = __import__("io").BytesIO()
    Image.new("RGB", (16, 16), (120, 80, 60)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("make", [lambda p: png_claiming(p / "bomb.png", 12000, 12000), lambda p: jpeg_claiming(p / "bomb.jpg", 65000, 65000)])
def test_bombs_are_refused_from_the_header(tmp_path, make):
    from diqa_bench.errors import DataError
    from diqa_bench.images import decode, decode_uint8, probe_size

    bomb = make(tmp_path)
    for read in (decode, decode_uint8, probe_size):
        with pytest.raises(DataError, match="exceed the limit|decompression bomb") as info:
            read(bomb)
        assert "\n" not in str(info.value) and bomb.name in str(info.value)


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    from diqa_bench.errors import DataError
    from diqa_bench.images import MAX_PIXELS_ENV, decode

    img = tmp_path / "a.png"
    Image.new("RGB", (100, 50)).save(img)
    assert decode(img).shape == (50, 100, 3)
    monkeypatch.setenv(MAX_PIXELS_ENV, "4999")
    with pytest.raises(DataError, match=r"100x50 pixels .* limit"):
        decode(img)


@pytest.mark.usefixtures("no_entry_point_plugins")
def test_score_skips_bombs_and_writes_the_good_images(tmp_path, stub_registry, monkeypatch, capsys):
    import csv
    import io

    monkeypatch.setattr(cli, "REGISTRY", stub_registry)
    folder = _images(tmp_path / "imgs", n=3)
    png_claiming(folder / "bomb.png", 12000, 12000)
    jpeg_claiming(folder / "bomb2.jpg", 65000, 65000)
    code = cli.main(["score", "-m", "stub-noise", str(folder), "--device", "cpu"])
    out, err = capsys.readouterr()
    rows = {Path(r["path"]).name: r["score"] for r in csv.DictReader(io.StringIO(out))}
    assert code == 1
    assert all(rows[f"im{i}.png"] for i in range(3)) and rows["bomb.png"] == "" and rows["bomb2.jpg"] == ""
    assert "Traceback" not in err and err.count("skipped") == 2 and "exceed the limit" in err


def test_a_bomb_in_a_benchmark_is_one_skipped_image_not_a_failed_cell(tmp_path, monkeypatch):
    monkeypatch.setenv("DIQA_BENCH_PLUGINS", "")
    folder = _images(tmp_path / "imgs", n=24)
    png_claiming(folder / "bomb.png", 12000, 12000)
    result = _csv_folder_run(tmp_path, folder)
    assert result.exit_code == 0
    assert [s["reason"] for s in result.run["skipped"] if "bomb.png" in str(s)] and "exceed the limit" in str(result.run["skipped"])


def test_batches_are_bounded_by_pixels_not_only_by_count():
    from diqa_bench.images import size_buckets

    phone = (3024, 4032)
    sizes = {i: phone for i in range(5)} | {i: (384, 512) for i in range(5, 25)}
    batches = size_buckets(range(25), sizes, batch_size=16, pixel_budget=16 * 1024 * 768)
    assert [len(b) for b in batches] == [1, 1, 1, 1, 1, 16, 4]
    assert all(len(b) * sizes[b[0]][0] * sizes[b[0]][1] <= 16 * 1024 * 768 or len(b) == 1 for b in batches)


# -- configs ------------------------------------------------------------------------------------

BASE_CONFIG = "domains:\n  a:\n    - dataset: stub-dataset\nmethods:\n  - name: stub-noise\ntest_domains: [a]\n"


def alias_bomb(levels: int = 9, width: int = 10) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("where", ["dataset", "metric_options"])
def test_alias_bomb_is_refused_quickly(tmp_path, stub_registry, monkeypatch, capsys, where):
    bomb = alias_bomb()
    bomb_lines = "\n".join("        " + ln for ln in bomb.splitlines())
    if where == "dataset":
        text = f"domains:\n  a:\n    - dataset: stub-dataset\n      options:\n{bomb_lines}\nmethods:\n  - name: stub-noise\ntest_domains: [a]\n"
    else:
        text = f"domains:\n  a:\n    - dataset: stub-dataset\nmethods:\n  - name: stub-noise\n    options:\n      metric_options:\n{bomb_lines}\ntest_domains: [a]\n"
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    monkeypatch.setattr(cli, "REGISTRY", stub_registry)
    for command in (["validate", str(path)], ["run", str(path), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c")]):
        assert cli.main(command) == 2
        err = capsys.readouterr().err
        assert "refused" in err and "aliases" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_small_aliases_still_work(tmp_path):
    from diqa_bench.config import load_yaml

    path = tmp_path / "ok.yaml"
    path.write_text("shared: &opts {size: 32}\n" + BASE_CONFIG + "extra: [*opts, *opts]\n")
    assert load_yaml(path)["extra"] == [{"size": 32}, {"size": 32}]


@pytest.mark.parametrize(
    "text, message",
    [
        (BASE_CONFIG + "methods:\n  - name: other\n", r"duplicate key 'methods' \(first at line 4\)"),
        ("domains:\n  a:\n    - dataset: x\n      name: one\n      name: two\n", "duplicate key 'name'"),
        ("x: " + "[" * 200 + "]" * 200 + "\n", "nested more than"),
    ],
)
def test_duplicate_keys_and_deep_nesting_are_errors(tmp_path, text, message):
    from diqa_bench.config import load_yaml
    from diqa_bench.errors import ConfigError

    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_yaml(path)
    assert "\n" not in str(info.value)


def test_non_utf8_and_oversized_configs_are_one_line(tmp_path, capsys):
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(BASE_CONFIG.replace("stub-noise", "stub-noise\n    label: caf\xe9").encode("latin-1"))
    assert cli.main(["validate", str(latin1)]) == 2
    err = capsys.readouterr().err
    assert "not UTF-8" in err and "0xe9" in err and "Traceback" not in err
    huge = tmp_path / "huge.yaml"
    huge.write_text(BASE_CONFIG + "description: '" + "x" * (2 << 20) + "'\n")
    assert cli.main(["validate", str(huge)]) == 2
    assert "too large" in capsys.readouterr().err


def test_bad_score_option_value_is_one_line(tmp_path, capsys):
    assert cli.main(["score", "-m", "brisque", "--option", "precision=[unclosed", str(_images(tmp_path / "i", 1))]) == 2
    err = capsys.readouterr().err
    assert "--option" in err and "not valid YAML" in err and "Traceback" not in err


# -- plugin name hijack -------------------------------------------------------------------------


def _impostor_plugin():
    import types

    from diqa_bench import hookimpl
    from diqa_bench.testing import StubNoise

    class Impostor(StubNoise):
        name = "piqe"
        lower_better = True

    class Extra(StubNoise):
        name = "impostor-extra"

    mod = types.ModuleType("impostor")

    @hookimpl
    def register_methods(register):
        register(Extra)
        register(Impostor)

    mod.register_methods = register_methods
    mod.Impostor = Impostor
    return mod


def test_builtin_method_names_cannot_be_taken(monkeypatch):
    """An installed plugin that registers 'piqe' (first, by name order) loses that entry alone; the
    built-in pyiqa plugin keeps every method."""
    from diqa_bench.plugins import PluginError, PluginWarning, load_plugins

    monkeypatch.setenv("DIQA_BENCH_PLUGINS", "pyiqa")
    impostor = _impostor_plugin()
    with pytest.warns(PluginWarning, match="'piqe' is registered twice: by built-in plugin 'pyiqa' and by plugin 'aaa'"):
        reg = load_plugins(extra=[("aaa", impostor)])
    assert reg.methods["piqe"].plugin == "pyiqa" and reg.methods["piqe"].cls is not impostor.Impostor
    assert {"brisque", "niqe", "musiq"} <= set(reg.methods)  # the built-in plugin is not rolled back
    assert "impostor-extra" in reg.methods  # the impostor's other entries stay
    assert reg.clashes and "piqe" in reg.clashes[0]
    with pytest.raises(PluginError, match="'piqe' is registered twice"):
        load_plugins(strict=True, extra=[("aaa", impostor)])


def test_a_clash_is_printed_in_the_leaderboards_protocol():
    from diqa_bench.leaderboard import protocol_lines

    lines = protocol_lines({"protocol": {}, "plugin_clashes": ["method name 'piqe' is registered twice: by built-in plugin 'pyiqa' and by plugin 'aaa'; the second is ignored"]})
    assert any(line.startswith("- Plugin name clashes") and "'piqe'" in line for line in lines)


def test_config_pixel_limit_applies_to_a_run(tmp_path, monkeypatch):
    from diqa_bench.images import MAX_PIXELS_ENV

    monkeypatch.setenv("DIQA_BENCH_PLUGINS", "")
    monkeypatch.setenv(MAX_PIXELS_ENV, "40000000")  # restored after the test: the run sets it from the config
    folder = _images(tmp_path / "imgs", n=8)  # 120x100 = 12000 pixels each
    Image.new("RGB", (200, 100)).save(folder / "wide.png")  # 20000 pixels
    result = _csv_folder_run(tmp_path, folder, max_image_pixels=15000)
    assert [s["image"] for s in result.run["skipped"]] == ["wide.png"]
    assert "limit of 0.015 MP" in result.run["skipped"][0]["reason"]


def test_forced_safe_load_keeps_the_callers_arguments(tmp_path):
    import torch

    from diqa_pyiqa.weights import safe_pyiqa_build

    good = tmp_path / "t.pth"
    torch.save({"w": torch.ones(2)}, str(good))
    marker = tmp_path / "pwned"
    evil = evil_pth(tmp_path / "e.pth", marker)
    import pickle

    with safe_pyiqa_build(None):
        assert torch.load(str(good), "cpu", pickle, weights_only=False)["w"].sum() == 2
        assert torch.load(str(good), map_location="cpu", weights_only=False)["w"].sum() == 2
        with pytest.raises(MethodUnavailable, match="refused"):
            torch.load(str(evil), weights_only=False)
    assert not marker.exists()


def test_workers_load_fewer_large_batches_ahead():
    from diqa_bench.images import DEFAULT_BATCH_PIXELS, prefetch_factor

    assert prefetch_factor(4, 16 * 512 * 384) == 4  # the default benchmark's images: unchanged
    assert prefetch_factor(4, 4032 * 3024) == 1  # phone photos: one each, not four
    assert prefetch_factor(1, DEFAULT_BATCH_PIXELS) == 4


# -- built-in plugins are known by their distribution, not by an entry-point name (issue 27, item 4)


IMPOSTOR_SOURCE = """
from diqa_bench import hookimpl
from diqa_bench.testing import StubDataset, StubNoise

class Brisque(StubNoise):
    name = "brisque"
    lower_better = True

class SkinPhotos(StubDataset):
    name = "skin-photos"

class Extra(StubNoise):
    name = "impostor-extra"

@hookimpl
def register_methods(register):
    register(Brisque)
    register(Extra)

@hookimpl
def register_datasets(register):
    register(SkinPhotos)
"""


@pytest.mark.parametrize("impostor_first", [True, False])
@pytest.mark.parametrize("name", ["pyiqa", "datasets", "cross-domain"])
def test_an_entry_point_named_like_a_builtin_cannot_replace_it(tmp_path, monkeypatch, name, impostor_first):
    """A third-party entry point NAMED 'pyiqa' (or 'datasets', 'cross-domain') loads as a third-party
    plugin: the built-in plugins all load, and its 'brisque' is a reported clash, never the one used."""
    import types
    import uuid
    from importlib import metadata

    from diqa_bench import plugins
    from diqa_bench.plugins import PluginError, PluginSources, PluginWarning, load_plugins

    builtin = [ep for ep in metadata.entry_points(group=plugins.ENTRY_POINT_GROUP) if ep.dist and ep.dist.name == plugins.BUILTIN_DISTRIBUTION]
    assert {ep.name for ep in builtin} == {"pyiqa", "datasets", "cross-domain"}
    module = f"impostor_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(IMPOSTOR_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    impostor = metadata.EntryPoint(name=name, value=module, group=plugins.ENTRY_POINT_GROUP)
    vars(impostor).update(dist=types.SimpleNamespace(name="evil-iqa", version="6.6.6"))  # as importlib's EntryPoint._for does
    eps = [impostor, *builtin] if impostor_first else [*builtin, impostor]
    monkeypatch.setattr(plugins, "metadata", types.SimpleNamespace(entry_points=lambda group: [e for e in eps if e.group == group]))
    monkeypatch.delenv("DIQA_BENCH_PLUGINS", raising=False)
    monkeypatch.delenv("DIQA_BENCH_STRICT_PLUGINS", raising=False)

    with pytest.warns(PluginWarning) as caught:
        reg = load_plugins()
    for builtin_name in ("pyiqa", "datasets", "cross-domain"):
        info = reg.plugins[builtin_name]
        assert info.builtin and info.error is None and info.module.startswith("diqa_") and info.distribution == "diqa-bench"
    assert reg.methods["brisque"].plugin == "pyiqa" and reg.method("brisque").__module__.startswith("diqa_pyiqa")
    assert reg.dataset("skin-photos").__module__.startswith("diqa_datasets") and "cross-domain" in reg.methods
    third = [p for p in reg.plugins.values() if p.distribution == "evil-iqa"]
    assert len(third) == 1 and not third[0].builtin and third[0].error is None and third[0].methods == ["impostor-extra"]
    assert any("'brisque'" in c and "built-in plugin 'pyiqa'" in c for c in reg.clashes)
    assert any("'skin-photos'" in c and "built-in plugin 'datasets'" in c for c in reg.clashes)
    messages = [str(w.message) for w in caught]
    assert any("evil-iqa" in m and f"'{name}'" in m and "built-in" in m for m in messages)  # names both
    # a worker process (the CPU pool, Ray) rebuilds the built-in plugin, never the impostor
    again = PluginSources.of(reg, ["pyiqa"]).load()
    assert again.method("brisque").__module__.startswith("diqa_pyiqa") and "impostor-extra" not in again.methods
    with pytest.raises(PluginError, match="evil-iqa"):
        load_plugins(strict=True)
    monkeypatch.setenv("DIQA_BENCH_PLUGINS", name)  # the name selects the built-in alone
    assert [(p.name, p.distribution) for p in load_plugins(strict=True).plugins.values()] == [(name, "diqa-bench")]


# ===============================================================================================
# Issue 27 items 8-12, issue 24 item 5: one line for every bad value, file and path.
# ===============================================================================================


def _stub_cli(monkeypatch, stub_registry):
    monkeypatch.setattr(cli, "REGISTRY", stub_registry)


def _stub_config_file(tmp_path: Path, text: str = "") -> Path:
    import yaml

    from diqa_bench.testing import stub_config

    cfg = stub_config(methods=[{"name": "stub-noise"}], train_sets=[], test_domains=["a"], seeds=[0])
    del cfg["splits"], cfg["statistics"]
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg) + text)
    return path


def _one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("text, where", [
    ("splits: {test_ratio: .nan}", "splits.test_ratio"),
    ("statistics: {confidence: .nan}", "statistics.confidence"),
    ("statistics: {bootstrap: 1.0e+12}", "statistics.bootstrap"),
    ("acceptability: {threshold: .nan}", "acceptability.threshold"),
    ("acceptability: {threshold: -.inf}", "acceptability.threshold"),
])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_nan_and_absurd_config_values_are_one_line(tmp_path, stub_registry, monkeypatch, capsys, text, where, command):
    _stub_cli(monkeypatch, stub_registry)
    cfg = _stub_config_file(tmp_path, text + "\n")
    argv = [command, str(cfg)] + (["--out", str(tmp_path / "out"), "--device", "cpu", "--no-progress"] if command == "run" else [])
    assert cli.main(argv) == 2
    assert where in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_nan_in_a_method_option_is_refused(tmp_path, stub_registry, monkeypatch, capsys):
    from diqa_bench.config import ConfigError, validate_options

    with pytest.raises(ConfigError, match="finite"):
        validate_options({"lr": float("nan")}, {"lr": {"type": "number", "exclusiveMinimum": 0}}, [], "methods[0].options", "c.yaml")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_score_threshold_must_be_finite(tmp_path, stub_registry, monkeypatch, capsys, value):
    _stub_cli(monkeypatch, stub_registry)
    assert cli.main(["score", "-m", "stub-noise", f"--threshold={value}", "--device", "cpu", str(_images(tmp_path / "i", 1))]) == 2
    assert "finite" in _one_line(capsys.readouterr().err)


def test_nan_in_threshold_json_is_refused(tmp_path, capsys):
    import json

    from diqa_bench.scoring import resolve_threshold
    from diqa_bench.errors import UserError

    model = tmp_path / "model"
    model.mkdir()
    (model / "threshold.json").write_text(json.dumps({"train": "skin", "thresholds": {"skin": float("nan")}}))
    with pytest.raises(UserError, match="not a finite number"):
        resolve_threshold("auto", str(model))


@pytest.mark.parametrize("key", ["label", "domain"])
def test_a_name_with_a_trailing_newline_is_refused(tmp_path, stub_registry, monkeypatch, capsys, key):
    import yaml

    from diqa_bench.testing import stub_config

    _stub_cli(monkeypatch, stub_registry)
    cfg = stub_config(methods=[{"name": "stub-noise", "label": "noise\n"}] if key == "label" else [{"name": "stub-noise"}],
                      train_sets=[], test_domains=["a"], seeds=[0])
    if key == "domain":
        cfg["domains"]["a\n"] = cfg["domains"].pop("b")
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert cli.main(["validate", str(path)]) == 2
    assert "does not match" in _one_line(capsys.readouterr().err)


def test_a_plugin_name_with_a_trailing_newline_is_refused(no_entry_point_plugins):
    import types

    from diqa_bench import hookimpl
    from diqa_bench.plugins import PluginError, load_plugins
    from diqa_bench.testing import StubNoise

    class Newline(StubNoise):
        name = "noise\n"

    mod = types.ModuleType("newline")
    mod.register_methods = hookimpl(lambda register: register(Newline))
    with pytest.raises(PluginError, match="must be lower-case"):
        load_plugins(strict=True, extra=[("newline", mod)])


@pytest.fixture
def alarm():
    """Fail a test instead of hanging it: raise TimeoutError after ``seconds``."""
    import signal

    def handler(signum, frame):
        raise TimeoutError("hung")

    old = signal.signal(signal.SIGALRM, handler)
    yield lambda seconds: signal.alarm(seconds)
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("explicit", [True, False])
def test_score_skips_fifos_and_devices_instead_of_hanging(tmp_path, stub_registry, monkeypatch, capsys, alarm, explicit):
    import csv
    import io

    _stub_cli(monkeypatch, stub_registry)
    folder = _images(tmp_path / "imgs", n=2)
    os.mkfifo(folder / "pipe.png")
    (folder / "zero.jpg").symlink_to("/dev/zero")
    targets = [str(folder / "im0.png"), str(folder / "pipe.png"), str(folder / "zero.jpg")] if explicit else [str(folder)]
    alarm(60)
    code = cli.main(["score", "-m", "stub-noise", "--device", "cpu", "--processes", "1", "--no-progress", *targets])
    out, err = capsys.readouterr()
    rows = {Path(r["path"]).name: r for r in csv.DictReader(io.StringIO(out))}
    assert code == 1 and rows["im0.png"]["score"]
    assert rows["pipe.png"]["score"] == "" and "not a regular file (a FIFO" in rows["pipe.png"]["skipped"]
    assert rows["zero.jpg"]["score"] == "" and "not a regular file (a device)" in rows["zero.jpg"]["skipped"]
    assert "Traceback" not in err and err.count("skipped") == 2


def test_score_skips_files_over_the_size_limit(tmp_path, stub_registry, monkeypatch, capsys):
    from diqa_bench import files

    _stub_cli(monkeypatch, stub_registry)
    folder = _images(tmp_path / "imgs", n=2)
    monkeypatch.setattr(files, "MAX_IMAGE_BYTES", (folder / "im0.png").stat().st_size - 1)
    code = cli.main(["score", "-m", "stub-noise", "--device", "cpu", "--processes", "1", "--no-progress", str(folder / "im0.png")])
    assert code == 1 and "file too large" in capsys.readouterr().err


def _bad_weights(folder: Path, kind: str) -> Path:
    """A weights file of the wrong kind, made here: never a real file damaged in place."""
    import json

    import torch

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{kind}.bin"
    if kind == "code":
        return evil_pth(path, folder / "pwned")
    if kind == "truncated":
        torch.save({"w": torch.ones(4000)}, str(path))
        path.write_bytes(path.read_bytes()[:3000])
    elif kind == "threshold-json":
        path.write_text(json.dumps({"thresholds": {"skin": 1.0}}))
    elif kind == "key-less":
        torch.save({"w": torch.ones(3)}, str(path))
    elif kind == "mat":
        import scipy.io

        scipy.io.savemat(str(path), {"x": np.ones(3)})
    elif kind == "wrong-shape":
        torch.save((torch.ones(10), torch.ones(10, 20)), str(path))
    return path


@pytest.mark.parametrize("method", ["brisque", "niqe", "musiq", "cross-domain"])
@pytest.mark.parametrize("kind", ["code", "truncated", "threshold-json", "key-less", "mat", "wrong-shape"])
def test_every_bad_weights_file_is_one_line_for_every_method(offline_pyiqa, capsys, method, kind):
    """Issue 24 item 5: one line, exit 2, for a bad weights file of every kind, and never torch's
    advice to reload with weights_only=False."""
    tmp = offline_pyiqa
    weights = _bad_weights(tmp / "w", kind)
    code = cli.main(["score", "-m", method, "--weights", str(weights), "--device", "cpu", "--processes", "1", "--no-progress",
                     "--cache-dir", str(tmp / "cache"), str(_images(tmp / "imgs", 1))])
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and str(weights) in line and "weights_only" not in line
    assert not (tmp / "w" / "pwned").exists()


def test_niqe_parameters_of_the_wrong_shape_are_refused_once(offline_pyiqa, capsys):
    import scipy.io

    tmp = offline_pyiqa
    mat = tmp / "niqe.mat"
    scipy.io.savemat(str(mat), {"mu_prisparam": np.ones((1, 5)), "cov_prisparam": np.eye(5)})
    code = cli.main(["score", "-m", "niqe", "--weights", str(mat), "--device", "cpu", "--processes", "1", "--no-progress", str(_images(tmp / "i", 2))])
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and "is not NIQE's" in line and "(1, 5)" in line


def test_cross_domain_checkpoint_that_does_not_fit_its_model_is_one_line(offline_pyiqa, capsys):
    import json

    import torch

    tmp = offline_pyiqa
    meta = {"format": 1, "method": "cross-domain", "mode": "finetune", "options": {}, "describe": {}}
    torch.save({"meta": json.dumps(meta), "head": {"w": torch.ones(2)}, "backbone": {"w": torch.ones(2)}}, str(tmp / "cross_domain.pt"))
    code = cli.main(["score", "-m", "cross-domain", "--weights", str(tmp / "cross_domain.pt"), "--device", "cpu", "--no-progress", str(_images(tmp / "i", 1))])
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and "does not fit the cross-domain model" in line


@pytest.mark.parametrize("kind", ["code", "wrong-shape"])
def test_a_refused_weights_file_stops_a_run_with_exit_2(tmp_path, monkeypatch, capsys, kind):
    """Not "not run" and exit 0: a refused file is an error, as in score."""
    import yaml

    import diqa_bench.testing as stubs
    from diqa_bench.plugins import load_plugins
    from pyiqa.utils import download_util

    monkeypatch.setattr(download_util, "DEFAULT_CACHE_DIR", str(tmp_path / "pyiqa-cache"))
    monkeypatch.setenv("DIQA_BENCH_PLUGINS", "pyiqa")
    reg = load_plugins(extra=[("stub", stubs)])
    monkeypatch.setattr(cli, "REGISTRY", reg)
    weights = tmp_path / "weights"
    _bad_weights(weights, kind).rename(weights / "brisque_svm_weights.pth")
    cfg = _stub_config_file(tmp_path)
    doc = yaml.safe_load(cfg.read_text())
    doc["methods"] = [{"name": "brisque"}]
    cfg.write_text(yaml.safe_dump(doc))
    code = cli.main(["run", str(cfg), "--out", str(tmp_path / "out"), "--weights-dir", str(weights), "--device", "cpu", "--processes", "1",
                     "--no-progress", "--no-report", "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("diqa-bench: error")]
    assert code == 2 and len(lines) == 1 and "brisque_svm_weights.pth" in lines[0] and "Traceback" not in err
    assert not (weights / "pwned").exists()


def _tiny_run(tmp_path: Path, name: str = "res"):
    from diqa_bench.testing import run_tiny_benchmark, stub_config

    cfg = stub_config(seeds=[0], methods=[{"name": "stub-noise"}], train_sets=[], test_domains=["a"])
    cfg["statistics"] = {"bootstrap": 10}
    return run_tiny_benchmark(tmp_path / name, cfg, reports=False)


@pytest.mark.parametrize("where", ["folder", "inside-a-file"])
@pytest.mark.usefixtures("no_entry_point_plugins")
def test_score_output_is_checked_before_any_image_is_scored(tmp_path, stub_registry, monkeypatch, capsys, where):
    from diqa_bench import session

    _stub_cli(monkeypatch, stub_registry)
    scored = []
    monkeypatch.setattr(session, "compute_scores", lambda *a, **k: scored.append(1))
    (tmp_path / "a-file").write_text("x")
    target = tmp_path / "out-folder" if where == "folder" else tmp_path / "a-file" / "scores.csv"
    (tmp_path / "out-folder").mkdir()
    assert cli.main(["score", "-m", "stub-noise", "-o", str(target), "--device", "cpu", str(_images(tmp_path / "i", 1))]) == 2
    assert "-o" in _one_line(capsys.readouterr().err) and not scored


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
@pytest.mark.usefixtures("no_entry_point_plugins")
def test_score_output_in_a_read_only_folder_is_one_line(tmp_path, stub_registry, monkeypatch, capsys):
    _stub_cli(monkeypatch, stub_registry)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert cli.main(["score", "-m", "stub-noise", "-o", str(locked / "s.csv"), "--device", "cpu", str(_images(tmp_path / "i", 1))]) == 2
    finally:
        locked.chmod(0o755)
    assert "cannot write" in _one_line(capsys.readouterr().err)


def _disk_full(*args, **kwargs):
    import errno

    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.usefixtures("no_entry_point_plugins")
def test_score_output_on_a_full_disk_is_one_line(tmp_path, stub_registry, monkeypatch, capsys):
    from diqa_bench import files

    _stub_cli(monkeypatch, stub_registry)
    monkeypatch.setattr(files, "atomic_write", _disk_full)
    code = cli.main(["score", "-m", "stub-noise", "-o", str(tmp_path / "s.csv"), "--device", "cpu", str(_images(tmp_path / "i", 1))])
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and "Traceback" not in err
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")
def test_run_on_a_full_disk_is_one_line_and_keeps_the_previous_results(tmp_path, stub_registry, monkeypatch, capsys):
    from diqa_bench import results

    _stub_cli(monkeypatch, stub_registry)
    cfg = _stub_config_file(tmp_path, "statistics: {bootstrap: 10}\n")
    argv = ["run", str(cfg), "--out", str(tmp_path / "out"), "--device", "cpu", "--no-progress", "--no-report", "--cache-dir", str(tmp_path / "c")]
    assert cli.main(argv) == 0
    before = (tmp_path / "out" / "metrics.csv").read_bytes()
    capsys.readouterr()
    monkeypatch.setattr(results, "atomic_write", _disk_full)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    line = [ln for ln in err.splitlines() if ln.startswith("diqa-bench: error")]
    assert len(line) == 1 and "No space left on device" in line[0] and "Traceback" not in err
    assert (tmp_path / "out" / "metrics.csv").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if ".incomplete-" in p.name]


@pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")
def test_compare_output_is_checked_before_comparing(tmp_path, monkeypatch, capsys):
    from diqa_bench import report

    a = _tiny_run(tmp_path, "a")
    compared = []
    monkeypatch.setattr(report, "compare_runs", lambda *x, **k: compared.append(1))
    (tmp_path / "here.csv").mkdir()
    assert cli.main(["compare", str(a.out), str(a.out), "-o", str(tmp_path / "here.csv")]) == 2
    assert "is a folder" in _one_line(capsys.readouterr().err) and not compared


@pytest.mark.parametrize("command", ["report", "compare"])
@pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")
def test_report_and_compare_on_a_non_numeric_value_are_one_line(tmp_path, capsys, command):
    res = _tiny_run(tmp_path)
    path = res.out / "metrics.csv"
    lines = path.read_text().splitlines()
    cells = lines[1].split(",")
    cells[5] = "abc"  # the value column
    path.write_text("\n".join([lines[0], ",".join(cells)] + lines[2:]) + "\n")
    argv = ["report", str(res.out), "--no-figures"] if command == "report" else ["compare", str(res.out), str(res.out)]
    assert cli.main(argv) == 2
    line = _one_line(capsys.readouterr().err)
    assert "'abc' is not a number" in line and "metrics.csv" in line


def _run_argv(cfg: Path, out: str, tmp_path: Path) -> list[str]:
    return ["run", str(cfg), "--out", out, "--device", "cpu", "--no-progress", "--no-report", "--cache-dir", str(tmp_path / "cache")]


@pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")
def test_out_tilde_is_the_home_folder(tmp_path, stub_registry, monkeypatch):
    _stub_cli(monkeypatch, stub_registry)
    cfg = _stub_config_file(tmp_path, "statistics: {bootstrap: 10}\n")
    (tmp_path / "home").mkdir()
    (tmp_path / "work").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path / "work")
    assert cli.main(_run_argv(cfg, "~/res", tmp_path)) == 0
    assert (tmp_path / "home" / "res" / "run.json").is_file()
    assert not (tmp_path / "work" / "~").exists()


@pytest.mark.parametrize("out", [".", ".."])
@pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")
def test_out_current_folder_is_refused_before_any_work(tmp_path, stub_registry, monkeypatch, capsys, out):
    _stub_cli(monkeypatch, stub_registry)
    cfg = _stub_config_file(tmp_path, "statistics: {bootstrap: 10}\n")
    here = tmp_path / "work" / "here"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)
    assert cli.main(_run_argv(cfg, out, tmp_path)) == 2
    assert "current folder" in _one_line(capsys.readouterr().err)
    assert not any(here.iterdir()) and sorted(p.name for p in (tmp_path / "work").iterdir()) == ["here"]


@pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")
def test_out_root_is_refused_without_a_lock_file(tmp_path, stub_registry, monkeypatch, capsys):
    _stub_cli(monkeypatch, stub_registry)
    cfg = _stub_config_file(tmp_path, "statistics: {bootstrap: 10}\n")
    existed = Path("/..lock").exists()
    assert cli.main(_run_argv(cfg, "/", tmp_path)) == 2
    _one_line(capsys.readouterr().err)
    assert Path("/..lock").exists() == existed


SIGTERM_RUNNER = """
import os, signal, sys
os.environ["DIQA_BENCH_PLUGINS"] = ""
from diqa_bench import cli
import diqa_bench.testing as stubs
from diqa_bench.plugins import load_plugins
from diqa_bench.scorer import Scorer
registry = load_plugins(extra=[("stub", stubs)])
cli.REGISTRY = registry
calls, run_unit = [], Scorer.run_unit
def terminated_on_the_second_unit(self, unit):
    calls.append(unit)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGTERM)
    return run_unit(self, unit)
Scorer.run_unit = terminated_on_the_second_unit
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")
def test_sigterm_stops_a_run_like_ctrl_c(tmp_path, stub_registry, monkeypatch, capsys):
    import json
    import subprocess
    import sys

    import yaml

    from diqa_bench.testing import stub_config

    _stub_cli(monkeypatch, stub_registry)
    cfg = tmp_path / "bench.yaml"
    doc = stub_config(methods=[{"name": "stub-noise"}], train_sets=[], test_domains=["a"], seeds=[0, 1])
    doc["statistics"] = {"bootstrap": 10}
    cfg.write_text(yaml.safe_dump(doc))
    out = tmp_path / "intr"
    argv = _run_argv(cfg, str(out), tmp_path)
    assert cli.main(argv) == 0
    before = (out / "metrics.csv").read_bytes()
    proc = subprocess.run([sys.executable, "-c", SIGTERM_RUNNER, *argv], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "DIQA_BENCH_PLUGINS": ""})
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert (out / "metrics.csv").read_bytes() == before
    partial = json.loads((tmp_path / "intr.partial" / "run.json").read_text())
    assert partial["interrupted"] is True
    assert not [p for p in tmp_path.iterdir() if ".incomplete-" in p.name]


@pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")
def test_protocol_full_does_not_claim_a_test_ratio(tmp_path, stub_registry):
    from diqa_bench.testing import run_tiny_benchmark, stub_config

    cfg = stub_config(methods=[{"name": "stub-noise"}], train_sets=[], test_domains=["a"], seeds=[0])
    cfg["splits"] = {"protocol": "full", "seeds": [0]}
    cfg["statistics"] = {"bootstrap": 10}
    res = run_tiny_benchmark(tmp_path, cfg)
    import re

    assert not re.search(r"test ratio \d", res.leaderboard) and "Splits: none (protocol: full)" in res.leaderboard


def test_validate_reports_paths_that_escape_the_dataset_root(tmp_path, monkeypatch, capsys):
    import diqa_datasets
    import yaml

    from diqa_bench.plugins import load_plugins

    monkeypatch.setenv("DIQA_BENCH_PLUGINS", "")
    reg = load_plugins(extra=[("datasets", diqa_datasets)] + [("stub", __import__("diqa_bench.testing", fromlist=["x"]))])
    monkeypatch.setattr(cli, "REGISTRY", reg)
    root = _images(tmp_path / "root", n=3)
    _images(tmp_path / "outside", n=1)
    (tmp_path / "labels.csv").write_text("image,mos\nim0.png,1\nim1.png,3\nim2.png,5\n../outside/im0.png,2\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "domains": {"a": [{"dataset": "csv", "options": {"csv": str(tmp_path / "labels.csv"), "root": str(root), "mos_range": [1, 5]}}]},
        "methods": [{"name": "stub-noise"}], "test_domains": ["a"]}))
    assert cli.main(["validate", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "1 image paths escaping the dataset root (first: ../outside/im0.png); the run skips them" in out


@pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")
def test_leaderboard_shows_html_in_image_names_as_text(tmp_path, monkeypatch):
    folder = _images(tmp_path / "imgs", n=24)
    (folder / "<img src=x onerror=alert(1)>.png").write_bytes(b"not an image")
    res = _csv_folder_run(tmp_path, folder)
    assert "<img src=x" not in res.leaderboard and "&lt;img src=x onerror=alert(1)&gt;.png" in res.leaderboard


@pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")
def test_csv_cells_that_start_a_formula_are_neutralised_and_read_back(tmp_path, stub_registry, monkeypatch, capsys):
    import csv
    import io

    import pandas as pd

    from diqa_bench.files import csv_cell, csv_original, frame_csv, read_csv

    for value in ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\tx", "'=x", "''@y", "plain", "'quoted", "-0.5", "+3", "1e5", "", "-", "'-", "'"]:
        assert csv_original(csv_cell(value)) == value
    assert csv_cell("=1+1") == "'=1+1" and csv_cell("-0.5") == "-0.5" and csv_cell(3.0) == 3.0
    df = pd.DataFrame({"path": ["=cmd|' /C calc'!A0", "ok.png"], "score": [-1.5, 2.0]})
    path = tmp_path / "t.csv"
    path.write_text(frame_csv(df))
    assert "'=cmd" in path.read_text() and ",-1.5" in path.read_text()
    back = read_csv(path)
    assert list(back["path"]) == list(df["path"]) and list(back["score"]) == [-1.5, 2.0]
    # every CSV of a run, and score's output
    folder = _images(tmp_path / "imgs", n=24)
    (folder / "im0.png").rename(folder / "=1+1.png")
    res = _csv_folder_run(tmp_path, folder)
    scores_text = (res.out / "scores.csv").read_text()
    assert "\n'=1+1.png," in scores_text and "/=1+1.png" in scores_text and "\n=1+1.png" not in scores_text
    assert ",-," in scores_text  # the zero-shot train set "-" is one character: no formula, left as it is
    assert "=1+1.png" in set(res.scores["image"])  # read back as written by the user
    _stub_cli(monkeypatch, stub_registry)
    monkeypatch.chdir(folder)
    assert cli.main(["score", "-m", "stub-noise", "--device", "cpu", "--processes", "1", "--no-progress", "=1+1.png"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[1][0] == "'=1+1.png" and float(rows[1][1]) >= 0
