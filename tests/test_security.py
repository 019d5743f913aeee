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

    monkeypatch.setattr(cli, "_registry", lambda args: stub_registry)
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
    monkeypatch.setattr(cli, "_registry", lambda args: stub_registry)
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


# ===============================================================================================
# Issue 27 items 8-12, issue 24 item 5: one line for every bad value, file and path.
# ===============================================================================================


def _stub_cli(monkeypatch, stub_registry):
    monkeypatch.setattr(cli, "_registry", lambda args: stub_registry)


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
