"""The runner through the tiny stub benchmark: caching, resume after a kill, failed cells, bad input."""

import json
import types
from pathlib import Path

import numpy as np
import pytest

from diqa_bench import hookimpl
from diqa_bench.datasets import Dataset, Record
from diqa_bench.plan import Plan
from diqa_bench.scorer import Scorer
from diqa_bench.testing import InterruptOnCall, StubLinear, StubNoise, run_tiny_benchmark, stub_config

pytestmark = pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")


def small_config(methods=None, seeds=(0,), **overrides):
    """Two small stub domains, one seed, few bootstrap resamples: a run takes about a second."""
    cfg = stub_config(methods=methods, seeds=list(seeds), **overrides)
    for dom, seed in (("a", 1), ("b", 2)):
        cfg["domains"][dom][0]["options"] = {"count": 18, "groups": 6, "size": 24, "seed": seed, "tag": dom}
    cfg["statistics"] = {"bootstrap": 50}
    return cfg


def _tables(result):
    """What must not change between equivalent runs: metrics and the leaderboard's tables."""
    metrics = (result.out / "metrics.csv").read_text()
    tables = [line for line in result.leaderboard.splitlines() if line.startswith("|")]
    return metrics, tables


def test_tiny_benchmark_writes_every_result_file(tmp_path, stub_counters):
    res = run_tiny_benchmark(tmp_path, small_config())
    assert res.exit_code == 0
    for name in ("run.json", "scores.csv", "metrics.csv", "metrics.json", "LEADERBOARD.md"):
        assert (res.out / name).is_file(), name
    assert not list(res.out.glob(".*.tmp"))  # atomic writes leave no temp files behind
    run = res.run
    assert run["config"]["name"] == "stub" and len(run["config_hash"]) == 16
    assert run["environment"]["device"] == "cpu" and run["environment"]["torch"]
    assert {"commit", "dirty"} <= set(run["environment"]["git"])
    assert run["protocol"]["seeds"] == [0] and run["started_at"] <= run["finished_at"]
    assert run["failed_cells"] == [] and run["interrupted"] is False
    assert len(run["cells"]) == (1 + 3) * 2
    # tidy metrics: per seed and aggregated, every statistic
    m = res.metrics
    assert list(m.columns[:9]) == ["method", "train", "test", "seed", "statistic", "value", "ci_low", "ci_high", "n"]
    assert set(m.seed) == {"0", "all"}
    assert set(m.statistic) == {"SROCC", "KRCC", "PLCC", "PLCC_raw", "RMSE"}
    assert len(m) == 8 * 5 * 2
    assert json.loads((res.out / "metrics.json").read_text())[0]["method"] == "stub-noise"
    # the stub noise measure tracks the stub MOS: lower-is-better handled, so SROCC is positive
    assert res.value("stub-noise", "-", "a") > 0.8
    assert res.value("stub-linear", "a+b", "b") > 0.8
    s = res.scores
    assert set(s.columns) >= {"image", "dataset", "domain", "method", "train", "seed", "score", "mos"}
    assert len(s) == m[(m.seed == "0") & (m.statistic == "SROCC")].n.sum()


def test_warm_rerun_computes_nothing_and_gives_identical_tables(tmp_path, stub_counters):
    first = run_tiny_benchmark(tmp_path, small_config())
    assert StubNoise.calls > 0 and StubLinear.fits == 3
    before = _tables(first)
    StubNoise.calls = StubLinear.fits = 0
    second = run_tiny_benchmark(tmp_path, small_config())
    assert StubNoise.calls == 0
    assert StubLinear.fits == 0
    assert _tables(second) == before
    assert (first.out / "scores.csv").read_text() == (second.out / "scores.csv").read_text()


def test_changed_method_options_are_not_served_from_cache(tmp_path, stub_counters):
    run_tiny_benchmark(tmp_path, small_config(methods=[{"name": "stub-noise"}]))
    StubNoise.calls = 0
    run_tiny_benchmark(tmp_path, small_config(methods=[{"name": "stub-noise", "options": {"weights": "other.pth"}}]))
    assert StubNoise.calls > 0


def test_zero_shot_scores_each_image_once_across_seeds_and_cells(tmp_path, stub_counters):
    methods = [{"name": "stub-noise"}, {"name": "stub-noise", "label": "same-again"}]
    res = run_tiny_benchmark(tmp_path, small_config(methods=methods, seeds=[0, 1, 2]))
    s = res.scores
    assert set(s.method) == {"stub-noise", "same-again"}
    unique_images = len(s.drop_duplicates(["dataset", "image"]))
    scored_in_cells = len(s)
    assert scored_in_cells >= 2 * unique_images  # the same images appear in several cells
    assert StubNoise.calls == unique_images


def test_run_killed_between_units_resumes_to_identical_tables(tmp_path, monkeypatch, stub_counters):
    reference = _tables(run_tiny_benchmark(tmp_path / "reference", small_config()))

    killed = tmp_path / "killed"
    interrupt = InterruptOnCall(Scorer.run_unit, 3)
    monkeypatch.setattr(Scorer, "run_unit", lambda self, unit: interrupt(self, unit))
    with pytest.raises(KeyboardInterrupt):
        run_tiny_benchmark(killed, small_config())
    partial = json.loads((killed / "results" / "run.json").read_text())
    assert partial["interrupted"] is True
    assert len(partial["cells"]) == 2 * 2  # two units finished, each covering two test domains

    monkeypatch.undo()
    StubLinear.fits = 0
    resumed = run_tiny_benchmark(killed, small_config())
    assert StubLinear.fits == 2  # the fit finished before the kill is reused
    assert resumed.run["interrupted"] is False
    assert _tables(resumed) == reference


def test_run_killed_inside_a_batch_resumes_to_identical_tables(tmp_path, monkeypatch, stub_counters):
    reference = _tables(run_tiny_benchmark(tmp_path / "reference", small_config()))
    killed = tmp_path / "killed"
    interrupt = InterruptOnCall(StubNoise.score_batch, 2)
    monkeypatch.setattr(StubNoise, "score_batch", lambda self, batch: interrupt(self, batch))
    with pytest.raises(KeyboardInterrupt):
        run_tiny_benchmark(killed, small_config(), batch_size=4)
    monkeypatch.undo()
    resumed = run_tiny_benchmark(killed, small_config(), batch_size=4)
    assert _tables(resumed) == reference


def test_failing_cells_are_reported_and_the_rest_runs(tmp_path, stub_counters):
    methods = [
        {"name": "stub-noise"},
        {"name": "stub-noise", "label": "broken", "options": {"fail": True}},
        {"name": "stub-noise", "label": "missing", "options": {"unavailable": True}},
    ]
    res = run_tiny_benchmark(tmp_path, small_config(methods=methods, train_sets=[], test_domains=["a"]))
    assert res.exit_code == 1
    status = {c["method"]: (c["status"], c["reason"]) for c in res.run["cells"]}
    assert status["stub-noise"] == ("ok", "")
    assert status["broken"] == ("failed", "RuntimeError: stub failure on purpose")
    assert status["missing"][0] == "not run"
    assert status["missing"][1].startswith("missing weights file stub.pth")
    assert {c["method"] for c in res.run["failed_cells"]} == {"broken", "missing"}
    assert "| broken @ -" in res.leaderboard and "failed: RuntimeError: stub failure on purpose" in res.leaderboard
    assert "not run: missing weights file stub.pth" in res.leaderboard
    assert set(res.metrics.method) == {"stub-noise"}
    assert "Cells without results: 2" in res.leaderboard


def test_a_nan_score_is_a_skip_of_that_image_and_the_cell_keeps_the_others(tmp_path, stub_counters):
    """One NaN no longer removes a method from the leaderboard: the image is a recorded skip of that
    method (with its reason), every other image keeps its score, and other methods still score it."""
    methods = [{"name": "stub-noise"}, {"name": "stub-noise", "label": "holes", "options": {"nan": True}}]
    res = run_tiny_benchmark(tmp_path, small_config(methods=methods, train_sets=[], test_domains=["a"]), batch_size=4)
    assert res.exit_code == 0
    assert {c["status"] for c in res.run["cells"]} == {"ok"}
    full = res.scores[res.scores.method == "stub-noise"]
    holes = res.scores[res.scores.method == "holes"]
    nan_images = set(full.image) - set(holes.image)
    assert nan_images and len(holes) == len(full) - len(nan_images)  # the first image of each batch of 4
    assert holes.score.notna().all()
    skipped = {(s["image"], s["reason"]) for s in res.run["skipped"]}
    assert skipped == {(i, "stub-noise: score is NaN") for i in nan_images}
    assert "holes @ -" in res.leaderboard and "failed" not in res.leaderboard


def test_nan_scores_fail_the_cell_when_bad_input_is_error(tmp_path, stub_counters):
    methods = [{"name": "stub-noise", "options": {"nan": True}}]
    res = run_tiny_benchmark(tmp_path, small_config(methods=methods, train_sets=[], test_domains=["a"], bad_input="error"))
    assert res.exit_code == 1
    (cell,) = res.run["cells"]
    assert cell["status"] == "failed" and "NaN" in cell["reason"]


class FixedSplitDataset(Dataset):
    """Tiny dataset with its own split column; the images named in ``corrupt`` are garbage bytes."""

    name = "fixed-split"
    options_schema = {"corrupt": {"type": "array", "items": {"type": "string"}}, "absent": {"type": "boolean"}}
    mos_range = (1.0, 5.0)

    def __init__(self, corrupt=(), absent=False):
        super().__init__(corrupt=list(corrupt), absent=absent)
        self.corrupt = set(corrupt)
        self.absent = absent

    def check(self):
        return ["data folder /nowhere/fixed-split not found: download it first"] if self.absent else []

    def load(self, ctx):
        from PIL import Image

        folder = Path(ctx.cache_dir) / "fixed-split" / "-".join(sorted(self.corrupt))
        folder.mkdir(parents=True, exist_ok=True)
        self.root = folder
        rng = np.random.default_rng(0)
        records = []
        for side in ("train", "test"):
            for i in range(8):
                level = i % 4
                img = np.clip(0.5 + rng.normal(0, 0.05 * level + 0.01, (20, 20, 3)), 0, 1)
                name = f"{side}{i}"
                path = folder / f"{name}.png"
                if name in self.corrupt:
                    path.write_bytes(b"this is not a PNG file at all")
                else:
                    Image.fromarray((img * 255).astype(np.uint8)).save(path)
                records.append(Record(id=name, path=path.name, mos=5.0 - level, group=f"{side}{i}", split=side))
        return records


@hookimpl
def _register_fixed(register):
    register(FixedSplitDataset)


FIXED_PLUGIN = types.SimpleNamespace(register_datasets=_register_fixed)


def _fixed_config(corrupt, methods, bad_input="skip"):
    return {
        "name": "fixed",
        "domains": {"d": [{"dataset": "fixed-split", "options": {"corrupt": corrupt}}]},
        "methods": methods,
        "train_sets": [["d"]],
        "test_domains": ["d"],
        "statistics": {"bootstrap": 50},
        "bad_input": bad_input,
    }


def test_corrupt_test_image_is_skipped_and_reported(tmp_path, stub_counters):
    res = run_tiny_benchmark(tmp_path, _fixed_config(["test3"], [{"name": "stub-noise"}, {"name": "stub-linear"}]), plugins=[("fixed", FIXED_PLUGIN)])
    assert res.exit_code == 0
    assert {c["status"] for c in res.run["cells"]} == {"ok"}
    (skip,) = res.run["skipped"]
    assert skip["image"] == "test3" and "test3.png" in skip["reason"]
    assert "test3" not in set(res.scores.image)
    assert set(res.scores.groupby("method").size()) == {7}
    assert "fixed-split/test3" in res.leaderboard


def test_corrupt_test_image_fails_the_cell_when_bad_input_is_error(tmp_path, stub_counters):
    res = run_tiny_benchmark(tmp_path, _fixed_config(["test3"], [{"name": "stub-noise"}], bad_input="error"), plugins=[("fixed", FIXED_PLUGIN)])
    assert res.exit_code == 1
    (cell,) = res.run["cells"]
    assert cell["status"] == "failed" and "test3.png" in cell["reason"]


def test_corrupt_training_image_is_skipped_and_reported(tmp_path, stub_counters):
    res = run_tiny_benchmark(tmp_path, _fixed_config(["train2"], [{"name": "stub-linear"}]), plugins=[("fixed", FIXED_PLUGIN)])
    assert res.run["cells"][0]["status"] == "ok", res.run["cells"][0]["reason"]
    assert res.exit_code == 0
    assert [s["image"] for s in res.run["skipped"]] == ["train2"]


def test_dataset_that_fails_to_load_fails_its_cells_only(tmp_path, stub_counters):
    cfg = small_config(methods=[{"name": "stub-noise"}], train_sets=[])
    cfg["domains"]["b"] = [{"dataset": "fixed-split", "options": {"absent": True}}]
    res = run_tiny_benchmark(tmp_path, cfg, plugins=[("fixed", FIXED_PLUGIN)])
    status = {c["test"]: c for c in res.run["cells"]}
    assert status["a"]["status"] == "ok"
    assert status["b"]["status"] == "failed"
    assert status["b"]["reason"] == "dataset fixed-split: data folder /nowhere/fixed-split not found: download it first"
    assert "failed: dataset fixed-split: data folder" in res.leaderboard
    assert res.exit_code == 1


def test_only_runs_the_named_methods(tmp_path, stub_counters):
    res = run_tiny_benchmark(tmp_path, small_config(), only=["stub-linear"])
    assert {c["method"] for c in res.run["cells"]} == {"stub-linear"}
    assert StubNoise.calls == 0 and StubLinear.fits == 3


def test_dmos_labels_and_mixed_domains_keep_the_sign(tmp_path, stub_counters):
    cfg = small_config(seeds=[0], acceptability={"threshold": 3.0})
    # domain a: DMOS-style labels (lower is better); domain b: MOS and DMOS datasets mixed
    cfg["domains"]["a"][0]["options"]["lower_better"] = True
    cfg["domains"]["b"].append({"dataset": "stub-dataset", "name": "stub-b-dmos", "options": {"count": 18, "groups": 6, "size": 24, "seed": 3, "tag": "bd", "lower_better": True}})
    res = run_tiny_benchmark(tmp_path, cfg)
    assert res.exit_code == 0
    for method, train in (("stub-noise", "-"), ("stub-linear", "a"), ("stub-linear", "a+b")):
        for test in ("a", "b"):
            assert res.value(method, train, test) > 0.7, (method, train, test)
    # the acceptability threshold applies on DMOS's own scale: a noise detector still finds bad images
    assert res.value("stub-noise", "-", "a", "AUC") > 0.8
    assert "AUC (reject) ↑" in res.leaderboard


def test_plugin_author_fixtures(diqa_run_benchmark, diqa_stub_method, diqa_stub_dataset, stub_counters):
    """What a third-party plugin's tests do: register their own method next to the stubs."""
    import torch

    from diqa_bench.methods import Method

    class Contrast(Method):
        name = "contrast"
        version = "1"
        lower_better = False

        def score_batch(self, batch):
            return torch.as_tensor(batch.images).std((1, 2, 3))

    @hookimpl
    def register_methods(register):
        register(Contrast)

    assert diqa_stub_method.name == "stub-noise" and diqa_stub_dataset.name == "stub-dataset"
    res = diqa_run_benchmark(small_config(methods=[{"name": "contrast"}], train_sets=[]), plugins=[("mine", types.SimpleNamespace(register_methods=register_methods))])
    assert res.exit_code == 0
    assert set(res.metrics.method) == {"contrast"}
    assert np.isfinite(res.value("contrast", "-", "a"))


def test_fit_cache_is_keyed_by_split_and_package_version(tmp_path, monkeypatch, stub_counters):
    import diqa_bench.plan as plan_mod

    def cfg(ratio):
        return small_config(methods=[{"name": "stub-linear"}], train_sets=[["a"]], test_domains=["a"], splits={"test_ratio": ratio, "seeds": [0]})

    run_tiny_benchmark(tmp_path, cfg(0.34))
    run_tiny_benchmark(tmp_path, cfg(0.34))
    assert StubLinear.fits == 1
    run_tiny_benchmark(tmp_path, cfg(0.5))
    assert StubLinear.fits == 2
    monkeypatch.setattr(plan_mod, "__version__", "999.0")
    run_tiny_benchmark(tmp_path, cfg(0.5))
    assert StubLinear.fits == 3


def test_images_a_method_scores_from_its_cache_are_not_decoded(tmp_path, stub_counters, monkeypatch):
    """score_from_cache: the runner hands over only what the method cannot score without pixels,
    and those scores land in the results like any other."""
    import diqa_bench.images as images_mod

    decoded: list[str] = []
    real_decode = images_mod.decode

    def counting_decode(path):
        decoded.append(str(path))
        return real_decode(path)

    monkeypatch.setattr(images_mod, "decode", counting_decode)

    class Remembering(StubLinear):
        name = "remembering"
        seen: dict = {}

        def score_batch(self, batch):
            out = super().score_batch(batch)
            Remembering.seen.update(zip(batch.keys, map(float, out)))
            return out

        def score_from_cache(self, keys):
            return {k: Remembering.seen[k] for k in keys if k in Remembering.seen}

    @hookimpl
    def register_methods(register):
        register(Remembering)

    plugin = ("mine", types.SimpleNamespace(register_methods=register_methods))
    cfg = small_config(methods=[{"name": "remembering"}], train_sets=[["a"]], test_domains=["a"])
    first = run_tiny_benchmark(tmp_path / "one", cfg, plugins=[plugin])
    decoded_first = len(decoded)
    decoded.clear()
    # another cache: the fit and the scores are recomputed, but the method remembers every test image
    second = run_tiny_benchmark(tmp_path / "two", cfg, plugins=[plugin])
    assert first.exit_code == second.exit_code == 0
    train_images = decoded_first - len(Remembering.seen)
    assert 0 < len(decoded) <= train_images  # only the fit decoded images, no test image was
    assert first.value("remembering", "a", "a") == second.value("remembering", "a", "a")


def test_zero_shot_score_token_depends_on_the_decoder(tmp_path, stub_registry):
    """Every place that reads or writes zero-shot scores (units, Ray shards) uses one token, and
    an nvJPEG run's token differs from a PIL run's."""
    from diqa_bench import config as cfgmod
    from diqa_bench.runner import RunOptions
    import yaml

    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(small_config()))
    cfg = cfgmod.parse(path, stub_registry)
    scorer = Scorer(Plan.build(cfg, stub_registry, tmp_path / "cache"), stub_registry, RunOptions(out=tmp_path / "out", cache_dir=tmp_path / "cache", device="cpu"))
    method = StubNoise()
    assert scorer.zero_shot_token(method) == method.cache_token()
    scorer.session.decoder = "nvjpeg"  # what --decode gpu resolves to on a CUDA machine
    assert scorer.zero_shot_token(method) == method.cache_token() + "|nvjpeg"


def test_what_a_fitted_model_ran_as_reaches_run_json_and_the_protocol(tmp_path, stub_counters, monkeypatch):
    """A method's describe() (e.g. head vs finetune under one row name) is saved with each fitted
    model, listed in run.json and summarised in the leaderboard's protocol, also when the fit comes
    from the cache."""
    monkeypatch.setattr(StubLinear, "describe", lambda self: {"mode": "head", "loss": "l1"})
    first = run_tiny_benchmark(tmp_path, small_config(), only=["stub-linear"])
    rows = first.run["fitted_models"]
    assert sorted((r["method"], r["train"], r["seed"]) for r in rows) == [("stub-linear", t, 0) for t in ("a", "a+b", "b")]
    assert all(r["mode"] == "head" and r["loss"] == "l1" for r in rows)
    assert f"stub-linear ran as: mode head, loss l1 ({len(rows)} fitted models)" in first.leaderboard
    again = run_tiny_benchmark(tmp_path, small_config(), only=["stub-linear"])
    assert again.run["fitted_models"] == rows



def test_warm_rerun_reuses_derived_statistics_until_the_code_changes(tmp_path, stub_counters, monkeypatch):
    """The statistics and paired tables of unchanged scores come from the cache (a warm
    re-run recomputes no bootstrap), byte-identical; a change to diqa-bench's code recomputes them."""
    from diqa_bench import derived, stats

    first = run_tiny_benchmark(tmp_path, small_config())
    tables = {name: (first.out / name).read_bytes() for name in ("metrics.csv", "metrics.json", "transfer.csv", "significance.csv")}
    calls = []
    evaluate = stats.evaluate
    monkeypatch.setattr(stats, "evaluate", lambda *a, **k: calls.append(1) or evaluate(*a, **k))
    again = run_tiny_benchmark(tmp_path, small_config())
    assert calls == []
    assert {name: (again.out / name).read_bytes() for name in tables} == tables
    monkeypatch.setattr(derived, "code_hash", lambda: "another version")
    third = run_tiny_benchmark(tmp_path, small_config())
    assert calls and (third.out / "metrics.csv").read_bytes() == tables["metrics.csv"]


def test_the_plan_pickles_without_dataset_objects_and_gives_the_same_images(tmp_path, stub_registry):
    """What the Ray executor ships: plain data. The dataset plugins' objects (which need not
    pickle) stay behind; every image list, train set and fit key comes out the same."""
    import pickle

    import yaml

    from diqa_bench import config as cfgmod

    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(small_config(methods=[{"name": "stub-noise"}, {"name": "stub-linear"}], seeds=(0, 1))))
    plan = Plan.build(cfgmod.parse(path, stub_registry), stub_registry, tmp_path / "cache", log=lambda msg: None)
    for ds in plan.datasets.values():
        ds.obj.unpicklable = lambda: None  # a plugin's object may hold anything
    shipped = pickle.loads(pickle.dumps(plan))
    assert all(ds.obj is None and ds.records == [] for ds in shipped.datasets.values())
    assert shipped.units == plan.units and {u.seed for u in plan.units} == {0, 1}
    for domain in plan.config.domains:
        for seed in (0, 1):
            for side in ("train", "test"):
                assert shipped.images(domain, seed, side) == plan.images(domain, seed, side)
    trained = [u for u in plan.units if u.train]
    assert trained and all(shipped.train_samples(u) == plan.train_samples(u) for u in trained)
    assert all(shipped.fit_key(u, "m", "cpu", "pil") == plan.fit_key(u, "m", "cpu", "pil") for u in trained)
    assert shipped.images("a", 0, "test")[0] != shipped.images("a", 1, "test")[0]  # the seeds split differently
