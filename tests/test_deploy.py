"""Deployable models (config ``deploy``): one model per trainable method and train set fitted on
all train content, its cut chosen by K-fold cross-validation over content groups, the stated scale
(predicted MOS, P(acceptable)) and the size warning of the gate and ``score``."""

import csv
import io
import json
import logging

import numpy as np
import pytest
from PIL import Image

from diqa_bench import cli


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """stub-noise (zero-shot) and stub-linear (trained on a and on a+b), one split seed, 3 deploy folds."""

    from diqa_bench.testing import run_tiny_benchmark, stub_config

    tmp = tmp_path_factory.mktemp("deploy")
    with pytest.MonkeyPatch.context() as mp:  # a module-scoped fixture: no monkeypatch fixture here
        mp.setenv("DIQA_BENCH_PLUGINS", "")  # the stub plugins alone
        cfg = stub_config(seeds=[0], train_sets=[["a"], ["a", "b"]], acceptability={"threshold": 3.0}, deploy={"folds": 3})
        return run_tiny_benchmark(tmp, cfg)


def _doc(run, entry):
    return json.loads((run.out / "models" / entry / "deploy" / "threshold.json").read_text())


def test_the_deploy_folder_holds_a_model_fitted_on_all_train_content_with_a_cv_cut(deployed):
    for train, domains in (("a", {"a"}), ("a+b", {"a", "b"})):
        folder = deployed.out / "models" / f"stub-linear@{train}" / "deploy"
        assert (folder / "DONE").is_file() and (folder / "linear.json").is_file()
        assert (deployed.out / "models" / f"stub-linear@{train}" / "seed0").is_dir()  # the per-seed model stays beside it
        doc = _doc(deployed, f"stub-linear@{train}")
        assert doc["seed"] == "deploy" and doc["folds"] == 3 and "cross-validation over content groups" in doc["chosen_on"]
        assert set(doc["thresholds"]) == domains and all(np.isfinite(v) for v in doc["thresholds"].values())
        # every image of every content group of each train domain, each scored out of fold once
        assert doc["images"] == {d: 30 for d in domains} and doc["groups"] == {d: 6 for d in domains}
        assert doc["sizes"]["a"]["pixels"] == {"min": 1024, "median": 1024.0, "max": 1024} and doc["sizes"]["a"]["largest"] == "32x32"
        assert 0.0 < doc["train_accept"]["a"] < 1.0
    # fitted on all of a's content: another line than seed 0's, which never saw its test groups
    full = json.loads((deployed.out / "models" / "stub-linear@a" / "deploy" / "linear.json").read_text())["coef"]
    seed0 = json.loads((deployed.out / "models" / "stub-linear@a" / "seed0" / "linear.json").read_text())["coef"]
    assert full != pytest.approx(seed0)
    # nothing of the deploy phase reaches the tables
    assert set(deployed.metrics.seed) == {"0", "all"} and set(deployed.scores.seed.astype(str)) == {"0"}


def test_the_cv_cut_is_the_best_cut_on_out_of_fold_scores_of_models_that_never_saw_the_fold(deployed, tmp_path):
    """Refit each fold's model by hand: every image is scored by a model fitted without its content
    group, and the stored cut is the best-accuracy cut on those scores."""
    import torch

    import diqa_bench.testing as stubs
    from diqa_bench import stats
    from diqa_bench.datasets import DatasetContext
    from diqa_bench.splits import fold_test_groups

    ds = stubs.StubDataset(count=30, seed=1, tag="a")
    recs = ds.load(DatasetContext(cache_dir=deployed.out.parent / "cache" / "datasets"))
    groups = [f"stub-a/{r.group}" for r in recs]
    feats = np.array([float(stubs.noise_energy(torch.from_numpy(np.asarray(Image.open(ds.root / r.path).convert("RGB"), np.float32) / 255).permute(2, 0, 1)[None])[0])
                      for r in recs])
    lo, hi = 1.0, 5.0
    norm = np.array([(r.mos - lo) / (hi - lo) for r in recs])
    oof = np.full(len(recs), np.nan)
    for fold in range(3):
        tested = fold_test_groups(groups, 3, "deploy", fold)
        held = np.array([g in tested for g in groups])
        assert held.any() and (~held).any()
        coef = np.polyfit(feats[~held], norm[~held], 1)
        oof[held] = np.polyval(coef, feats[held])
    assert np.isfinite(oof).all()
    bad = np.array([r.mos < 3.0 for r in recs])
    cut = stats.gate_threshold(oof, bad)
    assert _doc(deployed, "stub-linear@a")["thresholds"]["a"] == pytest.approx(cut, rel=1e-5)


def test_zero_shot_deploy_cuts_sit_beside_the_old_cuts_and_score_run_prefers_them(deployed, tmp_path, capsys, monkeypatch, stub_registry):
    doc = json.loads((deployed.out / "thresholds.json").read_text())
    rows = [c for c in doc["deploy"] if c["method"] == "stub-noise"]
    assert {c["test"] for c in rows} == {"a", "b"} and all(c["seed"] == "deploy" and c["images"] == 30 for c in rows)
    assert all(c["seed"] != "deploy" for c in doc["cuts"])  # old readers average "cuts" as before
    # the stub's labels separate perfectly, so both cuts coincide: move the deployable one to tell which is read
    for c in rows:
        c["threshold"] += 0.125
    run = tmp_path / "run"
    run.mkdir()
    (run / "thresholds.json").write_text(json.dumps(doc))
    deploy_cut = next(c["threshold"] for c in rows if c["test"] == "a")
    monkeypatch.setattr(cli, "_registry", lambda args: stub_registry)
    images = sorted(str(p) for p in (deployed.out.parent / "cache" / "datasets" / "stub").rglob("*.png"))[:10]
    assert cli.main(["score", "-m", "stub-noise", "--run", str(run), "--threshold", "auto:a", "--no-progress", *images]) == 0
    out = capsys.readouterr()
    assert f"(threshold {deploy_cut} from " in out.err and "deployable cut" in out.err
    del doc["deploy"]  # a run without deploy: the mean of the seeds' cuts, as before
    (run / "thresholds.json").write_text(json.dumps(doc))
    assert cli.main(["score", "-m", "stub-noise", "--run", str(run), "--threshold", "auto:a", "--no-progress", *images]) == 0
    assert "mean of 1 split seeds' cuts" in capsys.readouterr().err
    header = next(csv.reader(io.StringIO(out.out)))
    assert header == ["path", "score", "better", "decision", "skipped", "predicted_mos", "p_acceptable"]  # new columns at the end


def test_load_gate_prefers_the_deploy_folder_and_says_which_cut_it_used(deployed, stub_registry):
    from diqa_bench import load_gate

    entry = deployed.out / "models" / "stub-linear@a"
    gate = load_gate(entry, threshold="auto", registry=stub_registry)
    assert gate.threshold == pytest.approx(_doc(deployed, "stub-linear@a")["thresholds"]["a"])
    assert "deploy" in gate.threshold_source and "cross-validation" in gate.threshold_source and gate.scale is not None
    seed = load_gate(entry / "seed0", threshold="auto:a", registry=stub_registry)
    assert "seed 0" in seed.threshold_source and seed.threshold != gate.threshold and seed.scale is None
    image = sorted((deployed.out.parent / "cache" / "datasets" / "stub").rglob("*.png"))[0]
    r = seed.score(image)
    assert r.predicted_mos is None and r.p_acceptable is None  # a seed's file states no scale
    # the same model and cut through score --weights .../deploy
    assert gate.score(image).score == pytest.approx(load_gate(entry / "deploy", threshold="auto:a", registry=stub_registry).score(image).score)


@pytest.mark.parametrize("entry,method", [("stub-linear@a", "stub-linear"), (None, "stub-noise")])
def test_predicted_mos_and_p_acceptable_follow_the_score_in_the_methods_direction(deployed, stub_registry, entry, method):
    from diqa_bench import load_gate

    if entry:
        gate = load_gate(deployed.out / "models" / entry, threshold="auto", registry=stub_registry)
    else:
        gate = load_gate(method, threshold="auto:a", run=deployed.out, registry=stub_registry)
    assert gate.scale is not None
    rng = np.random.default_rng(0)
    base = np.full((32, 32, 3), 0.5)
    arrays = [np.clip(base + rng.normal(0, sd, base.shape), 0, 1).astype(np.float32) for sd in (0.0, 0.02, 0.05, 0.1, 0.2, 0.3)]
    results = gate.score_many(arrays)
    order = np.argsort([r.score for r in results])
    if gate.better == "lower":
        order = order[::-1]  # from worst to best quality
    mos = [results[i].predicted_mos for i in order]
    p = [results[i].p_acceptable for i in order]
    assert all(np.diff(mos) >= -1e-12) and all(np.diff(p) >= -1e-12)
    assert mos[-1] > mos[0] and p[-1] > p[0] and all(0.0 <= v <= 1.0 for v in p)
    assert method == "stub-noise" or gate.better == "higher"
    if method == "stub-noise":
        assert gate.better == "lower"  # the zero-shot stub: the scale runs the other way


def test_the_size_warning_fires_once_for_a_big_input_and_not_for_a_matching_one(deployed, stub_registry, caplog):
    from diqa_bench import load_gate

    gate = load_gate(deployed.out / "models" / "stub-linear@a", threshold="auto", registry=stub_registry)
    small = np.full((32, 32, 3), 128, np.uint8)
    with caplog.at_level(logging.WARNING, logger="diqa_bench.gate"):
        gate.score_many([small, small])
        assert not [r for r in caplog.records if "score scale may differ" in r.getMessage()] and gate.size_note == ""
        big = np.full((300, 400, 3), 128, np.uint8)  # 117 times the pixels of the 32x32 images the cut was chosen on
        gate.score(big)
        gate.score_many([big, big])
    lines = [r.getMessage() for r in caplog.records if "score scale may differ" in r.getMessage()]
    assert len(lines) == 1 and "cut chosen on 32x32..32x32 images; this one is 400x300" in lines[0]


def test_score_warns_about_sizes_once(deployed, tmp_path, capsys, monkeypatch, stub_registry):
    monkeypatch.setattr(cli, "_registry", lambda args: stub_registry)
    small = sorted((deployed.out.parent / "cache" / "datasets" / "stub").rglob("*.png"))[:3]
    for i in range(2):
        Image.fromarray(np.full((300, 400, 3), 100 + i, np.uint8)).save(tmp_path / f"big{i}.png")
    weights = str(deployed.out / "models" / "stub-linear@a")  # the entry folder: its deploy/ model
    assert cli.main(["score", "-m", "stub-linear", "--weights", weights, "--threshold", "auto", "--no-progress", *map(str, small)]) == 0
    assert "score scale may differ" not in capsys.readouterr().err
    assert cli.main(["score", "-m", "stub-linear", "--weights", weights, "--threshold", "auto", "--no-progress",
                     *map(str, small), str(tmp_path / "big0.png"), str(tmp_path / "big1.png")]) == 0
    out = capsys.readouterr()
    assert out.err.count("score scale may differ") == 1 and "this one is 400x300" in out.err
    rows = list(csv.DictReader(io.StringIO(out.out)))
    assert all(float(r["predicted_mos"]) == float(r["predicted_mos"]) and 0 <= float(r["p_acceptable"]) <= 1 for r in rows)


def test_deploy_is_validated_by_the_config_schema(tmp_path):
    import yaml

    from diqa_bench import config as cfgmod
    from diqa_bench.errors import ConfigError
    from diqa_bench.testing import isolated_registry, stub_config

    registry = isolated_registry(None)
    path = tmp_path / "c.yaml"
    for value, message in (({"folds": 1}, "deploy"), ({"fold": 3}, "deploy"), ("yes", "deploy"), (True, "acceptability")):
        path.write_text(yaml.safe_dump(stub_config(deploy=value)))
        with pytest.raises(ConfigError, match=message):
            cfgmod.parse(path, registry)
    path.write_text(yaml.safe_dump(stub_config(deploy=True, acceptability={"threshold": 3.0})))
    assert cfgmod.parse(path, registry).deploy_folds == 5
    path.write_text(yaml.safe_dump(stub_config(acceptability={"threshold": 3.0})))
    assert cfgmod.parse(path, registry).deploy_folds == 0


def test_more_folds_than_content_groups_leave_empty_folds_out_without_failing_the_run(tmp_path, monkeypatch):
    from diqa_bench.testing import run_tiny_benchmark, stub_config

    monkeypatch.setenv("DIQA_BENCH_PLUGINS", "")
    cfg = stub_config(methods=[{"name": "stub-linear"}], seeds=[0], train_sets=[["a"]], test_domains=["a"], acceptability={"threshold": 3.0},
                      deploy={"folds": 5}, splits={"test_ratio": 0.34, "seeds": [0]})
    cfg["domains"] = {"a": [{"dataset": "stub-dataset", "name": "stub-a", "options": {"count": 24, "groups": 4, "seed": 1, "tag": "a"}}]}
    run = run_tiny_benchmark(tmp_path, cfg)
    assert run.exit_code == 0
    doc = _doc(run, "stub-linear@a")
    assert doc["images"] == {"a": 24} and doc["groups"] == {"a": 4} and np.isfinite(doc["thresholds"]["a"])


def test_every_deploy_fit_gets_a_seed_a_random_generator_accepts(tmp_path, monkeypatch):
    """The cross-domain model seeds numpy's generator with ctx.seed: a negative unit key failed the
    fit on all train content (and only that one)."""
    from diqa_bench.testing import StubLinear, run_tiny_benchmark, stub_config

    seen = []
    fit = StubLinear.fit

    def seeded_fit(self, data, ctx):
        seen.append(ctx.seed)
        np.random.default_rng(ctx.seed)
        return fit(self, data, ctx)

    monkeypatch.setattr(StubLinear, "fit", seeded_fit)
    monkeypatch.setenv("DIQA_BENCH_PLUGINS", "")
    cfg = stub_config(methods=[{"name": "stub-linear"}], seeds=[0], train_sets=[["a"]], test_domains=["a"], acceptability={"threshold": 3.0},
                      deploy={"folds": 2})
    run = run_tiny_benchmark(tmp_path, cfg)
    assert run.exit_code == 0 and len(seen) == 4 and (run.out / "models" / "stub-linear@a" / "deploy" / "threshold.json").is_file()
