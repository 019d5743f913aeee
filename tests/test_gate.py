"""The gate API (``diqa_bench.load_gate``): the README's upload handler runs as written, the gate
and ``diqa-bench score`` give identical numbers and decisions (PIQE on real photos, a trained model
from a tiny run), every kind of input and bad input, and calls from several threads."""

import csv
import io
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diqa_bench import cli

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "plugins" / "diqa_datasets" / "embedded" / "skin_photos"
SHARED = REPO.parent / "shared" / "data"
PHONE = SHARED / "derm-healthy-skin-agppga" / "consented_images"
PAIRS = SHARED / "derm-artefacts-ham10000" / "artefacts" / "src"


def _readme_handler():
    section = (REPO / "README.md").read_text().split("### The gate in a service", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "README.md (The gate in a service)", "exec"), namespace)
    return namespace


def _jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_readme_upload_handler_runs_as_written():
    ns = _readme_handler()
    photo = (BUNDLED / "image_0001.jpg").read_bytes()
    good = ns["handle_upload"](photo)
    assert good["ok"] is True and good["score"] == pytest.approx(ns["gate"].score(BUNDLED / "image_0001.jpg").score)
    # the same photo under heavy noise is sent back for a retake
    pixels = np.asarray(Image.open(io.BytesIO(photo)).convert("RGB")).astype(float)
    noisy = np.clip(pixels + np.random.default_rng(0).normal(0, 60, pixels.shape), 0, 255).astype(np.uint8)
    retake = ns["handle_upload"](_jpeg(noisy))
    assert retake["ok"] is False and "retake" in retake["message"]
    unreadable = ns["handle_upload"](b"GIF89a but not really")
    assert unreadable["ok"] is False and "not an image" in unreadable["message"]


def _score_cli(capsys, argv) -> list[dict]:
    code = cli.main(["score", "--no-progress", "--processes", "1", *argv])
    out = capsys.readouterr().out
    assert code in (0, 1), out
    return list(csv.DictReader(io.StringIO(out)))


def _photos() -> list[Path]:
    found = sorted(BUNDLED.glob("*.jpg"))
    if PHONE.is_dir():  # the full-size originals, EXIF-rotated ones included
        found += sorted(PHONE.glob("*.jpg"))
    if PAIRS.is_dir():  # the development artefact pairs' crops
        found += sorted(PAIRS.rglob("*.png"))
    return found


def test_gate_and_score_give_identical_piqe_numbers(capsys):
    import diqa_bench

    photos = _photos()
    rows = _score_cli(capsys, ["-m", "piqe", "--threshold", "40", *map(str, photos)])
    gate = diqa_bench.load_gate("piqe", threshold=40, device="cpu")
    results = gate.score_many(photos)
    assert len(rows) == len(results) == len(photos)
    for row, r in zip(rows, results):
        assert r.score is not None and f"{r.score:.6g}" == row["score"], row["path"]
        assert ("accept" if r.accepted else "reject") == row["decision"] and r.better == row["better"] == "lower"
        assert r.threshold == 40.0
    # bytes, PIL images (EXIF orientation applied as for a file) and arrays give the file's score
    for path, r in list(zip(photos, results))[:6]:
        img = Image.open(path)
        again = gate.score_many([path.read_bytes(), img, np.asarray(Image.open(path).convert("RGB")) if path.suffix == ".png" else img])
        assert [a.score for a in again] == [r.score] * 3, path


def test_gate_from_a_tiny_runs_model_folder_matches_score_with_auto_threshold(tmp_path, capsys, monkeypatch):
    from diqa_bench import load_gate
    from diqa_bench.testing import isolated_registry, run_tiny_benchmark, stub_config

    monkeypatch.setenv("DIQA_BENCH_PLUGINS", "")
    run = run_tiny_benchmark(tmp_path, stub_config(seeds=[0], train_sets=[["a"]], acceptability={"threshold": 3.0}))
    model = run.out / "models" / "stub-linear@a" / "seed0"
    images = sorted((tmp_path / "cache").rglob("img*.png"))[:40]
    assert len(images) >= 20
    registry = isolated_registry(None)
    monkeypatch.setattr(cli, "REGISTRY", registry)
    rows = _score_cli(capsys, ["-m", "stub-linear", "--weights", str(model), "--threshold", "auto:b", *map(str, images)])
    gate = load_gate(model, threshold="auto:b", registry=registry)
    assert gate.method == "stub-linear" and gate.threshold is not None
    results = gate.score_many(images)
    assert [f"{r.score:.6g}" for r in results] == [row["score"] for row in rows]
    assert [("accept" if r.accepted else "reject") for r in results] == [row["decision"] for row in rows]
    assert {row["decision"] for row in rows} == {"accept", "reject"}  # a real cut, not a constant


def test_bad_inputs_are_skipped_with_scores_reasons_and_the_rest_scored(tmp_path, monkeypatch):
    import diqa_bench

    monkeypatch.delenv("DIQA_BENCH_MAX_PIXELS", raising=False)  # restored after the test: the limit is process-wide

    gate = diqa_bench.load_gate("piqe", device="cpu", max_pixels=300_000)
    good = BUNDLED / "image_0001.jpg"
    big = np.zeros((600, 600, 3), np.uint8)
    (tmp_path / "empty.jpg").write_bytes(b"")
    results = gate.score_many([good, b"", tmp_path / "empty.jpg", tmp_path / "missing.jpg", tmp_path, big,
                               np.zeros((10, 10, 2)), np.full((32, 32), 1.5), np.zeros((8, 8), bool), _jpeg(big)])
    assert results[0].score is not None and results[0].accepted is None and results[0].skipped is None
    reasons = [r.skipped for r in results[1:]]
    assert all(r.score is None and r.accepted is None for r in results[1:])
    assert reasons[0] == reasons[1] == "image file is empty (0 bytes)"  # as score says it
    assert reasons[2].startswith("image file not found") and reasons[3] == "not a regular file (a folder)"
    assert "exceed the limit of 0.3 MP" in reasons[4] and "exceed the limit of 0.3 MP" in reasons[8]
    assert "expected an image array" in reasons[5] and "[0, 1]" in reasons[6] and "unsupported pixel type bool" in reasons[7]


def test_a_method_that_cannot_score_an_image_skips_it_with_the_methods_reason(stub_registry):
    from diqa_bench import load_gate

    gate = load_gate("stub-noise", options={"min_size": 20}, registry=stub_registry, threshold=1.0)
    small, large = np.zeros((10, 10, 3), np.uint8), np.zeros((40, 40, 3), np.uint8)
    r_small, r_large = gate.score_many([small, large])
    assert r_small.score is None and "20" in r_small.skipped and r_large.score is not None and r_large.accepted is True


def test_a_usage_error_is_one_line():
    from diqa_bench import load_gate
    from diqa_bench.errors import UserError

    with pytest.raises(UserError, match="trainable: pass --weights"):
        load_gate("cross-domain")
    with pytest.raises(UserError, match="no --weights or --run given"):
        load_gate("piqe", threshold="auto")
    with pytest.raises(UserError, match="expected a number, auto or auto:DOMAIN"):
        load_gate("piqe", threshold="high")


def test_calls_from_several_threads_never_enter_the_method_at_once(stub_registry):
    """A method that fails when two calls overlap: the gate's lock keeps them apart, and every
    thread gets the score a lone call gives."""
    from diqa_bench import load_gate
    from diqa_bench.testing import StubNoise

    state = {"inside": 0, "overlaps": 0}
    original = StubNoise.score_batch

    def guarded(self, batch):
        state["inside"] += 1
        try:
            if state["inside"] > 1:
                state["overlaps"] += 1
            time.sleep(0.02)
            return original(self, batch)
        finally:
            state["inside"] -= 1

    StubNoise.score_batch = guarded
    try:
        gate = load_gate("stub-noise", registry=stub_registry)
        rng = np.random.default_rng(0)
        images = [(rng.random((24, 24, 3)) * 255).astype(np.uint8) for _ in range(8)]
        alone = [gate.score(img).score for img in images]
        got: dict[int, float] = {}

        def work(k: int) -> None:
            for i in range(len(images)):
                got[(k, i)] = gate.score(images[i] if k % 2 else _jpeg(images[i])).score

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        StubNoise.score_batch = original
    assert state["overlaps"] == 0
    assert all(got[(k, i)] == alone[i] for k in (1, 3) for i in range(len(images)))
    assert all(got[(k, i)] is not None for k in (0, 2) for i in range(len(images)))  # JPEG bytes: other pixels, still scored


def test_import_diqa_bench_and_its_load_gate_import_no_torch():
    code = "import sys, diqa_bench; assert callable(diqa_bench.load_gate); print('torch' in sys.modules, 'pyiqa' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_a_gate_with_a_score_cache_answers_a_photo_seen_before_from_any_thread(stub_registry, stub_counters, tmp_path):
    from diqa_bench import load_gate

    noise, _ = stub_counters
    gate = load_gate("stub-noise", registry=stub_registry, cache_dir=tmp_path / "cache")
    photo = _jpeg((np.random.default_rng(1).random((24, 24, 3)) * 255).astype(np.uint8))
    got = []
    for _ in range(2):  # each call from a new thread: sqlite connections belong to their thread
        t = threading.Thread(target=lambda: got.append(gate.score(photo).score))
        t.start()
        t.join()
    assert len(got) == 2 and got[0] is not None and got[0] == got[1]
    assert noise.calls == 1  # the second answer came from the cache
