"""Acceptability thresholds people can reuse, content groups stored with the scores, and the
paired tables a real (stub) run writes: threshold.json, `score --threshold auto`, transfer.csv."""

import csv
import io
import json
from pathlib import Path

import pandas as pd
import pytest

from diqa_bench import cli
from diqa_bench.testing import run_tiny_benchmark, stub_config


@pytest.fixture(scope="module")
def gated_run(tmp_path_factory):
    """stub-noise (zero-shot) and stub-linear (trained on a and on a+b), one seed, with an
    acceptability threshold; tables only."""

    tmp = tmp_path_factory.mktemp("gated")
    with pytest.MonkeyPatch.context() as mp:  # a module-scoped fixture: no monkeypatch fixture here
        mp.setenv("DIQA_BENCH_PLUGINS", "")  # the stub plugins alone
        cfg = stub_config(seeds=[0], train_sets=[["a"], ["a", "b"]], acceptability={"threshold": 3.0})
        return run_tiny_benchmark(tmp, cfg, reports=False)


def test_threshold_is_exported_in_metrics_and_next_to_each_model(gated_run):
    m = gated_run.metrics
    for train in ("a", "a+b"):
        doc = json.loads((gated_run.out / "models" / f"stub-linear@{train}" / "seed0" / "threshold.json").read_text())
        assert doc["train"] == train and doc["seed"] == 0 and set(doc["thresholds"]) == {"a", "b"}
        for test, cut in doc["thresholds"].items():
            stored = m[(m.method == "stub-linear") & (m.train == train) & (m.test == test) & (m.seed == "0") & (m.statistic == "THRESHOLD")]
            assert cut == pytest.approx(float(stored.value.iloc[0]))
    assert not (gated_run.out / "models" / "stub-noise@-").exists()  # zero-shot: no model folder; the cut stays in metrics
    assert (m[(m.method == "stub-noise") & (m.statistic == "THRESHOLD")].value.notna()).all()
    # the "accept all" reference: share of acceptable test images, the same for every method on a test domain
    ref = m[(m.statistic == "ACC_ACCEPT_ALL") & (m.seed == "0")].groupby("test").value.nunique()
    assert (ref == 1).all()
    assert "| accept all (no gate)" in gated_run.leaderboard


GATE = ("AUC", "ACC", "RETAKE", "ACC_ACCEPT_ALL", "ACC_GAIN")


def test_gate_rows_carry_intervals_and_the_leaderboard_shows_them(gated_run):
    m = gated_run.metrics
    gate = m[m.statistic.isin(GATE) & (m.groups > 1)]
    assert set(gate.statistic) == set(GATE) and set(gate.seed) == {"0", "all"}
    # every interval that can exist does (AUC needs both classes in a resample) and holds its value
    has_ci = gate.ci_low.notna() & gate.ci_high.notna()
    assert has_ci[gate.statistic != "AUC"].all() and has_ci.any()
    assert ((gate.ci_low <= gate.value + 1e-12) & (gate.value <= gate.ci_high + 1e-12))[has_ci].all()
    assert m[m.statistic == "THRESHOLD"].ci_low.isna().all()  # chosen on the train split: fixed, no interval
    gain = m[m.statistic == "ACC_GAIN"].set_index(["method", "train", "test", "seed"]).value
    acc = m[m.statistic == "ACC"].set_index(["method", "train", "test", "seed"]).value
    ref = m[m.statistic == "ACC_ACCEPT_ALL"].set_index(["method", "train", "test", "seed"]).value
    pd.testing.assert_series_equal(gain, (acc - ref).rename(gain.name), atol=1e-12)
    assert "ΔAccuracy vs accept all ↑" in gated_run.leaderboard
    row = next(line for line in gated_run.leaderboard.splitlines() if line.startswith("| stub-linear @ a "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert all("[" in c for c in cells[6:9]), cells  # AUC, Accuracy and ΔAccuracy with their intervals


def test_seed_aggregate_gate_intervals_average_the_seeds_replicates():
    """Two split seeds: each seed's gate replicates come from the seed's own group draws (the
    same ones as its correlations); the `seed = all` interval is that of their replicate-wise mean."""
    from types import SimpleNamespace

    import numpy as np

    from diqa_bench import stats
    from diqa_bench.plan import ImageRef
    from diqa_bench.metrics import compute_metrics
    from diqa_bench.scorer import CellOutcome

    rng = np.random.default_rng(0)
    config = SimpleNamespace(bootstrap=300, confidence=0.9, stats_seed=4, acceptability=3.0)
    outcomes, per_seed = [], {}
    for seed in (0, 1):
        groups = np.repeat([f"ref{seed}-{g}" for g in range(8)], 6)
        mos = np.repeat(rng.uniform(1.5, 4.5, 8), 6) + rng.normal(0, 0.5, 48)
        score = mos + rng.normal(0, 0.7, 48)
        train = rng.uniform(1, 5, 40)
        images = [ImageRef(f"k{i}", f"p{i}", f"img{i}", "d", "a", float(m), float(m), str(g), None, None) for i, (m, g) in enumerate(zip(mos, groups))]
        outcomes.append(CellOutcome("m", "a", "a", seed, "ok", images=images, scores=list(score), train_scores=list(train),
                                    train_bad=list(train < 3.0)))
        cut = stats.gate_threshold(train, train < 3.0)
        per_seed[seed] = stats.evaluate(score, mos, groups=groups, bootstrap=300, confidence=0.9, rng=stats.seed_rng(4, seed),
                                        bad=mos < 3.0, cut=cut)
    m = compute_metrics(outcomes, config)
    for name in GATE:
        rows = m[m.statistic == name].set_index("seed")
        for seed in (0, 1):
            assert rows.loc[str(seed), "value"] == pytest.approx(per_seed[seed].values[name])
            assert (rows.loc[str(seed), "ci_low"], rows.loc[str(seed), "ci_high"]) == pytest.approx(per_seed[seed].ci[name])
        pooled = stats.pooled_ci([per_seed[0].boot[name], per_seed[1].boot[name]], 0.9)
        assert np.isfinite(pooled).all() and (rows.loc["all", "ci_low"], rows.loc["all", "ci_high"]) == pytest.approx(pooled)
        assert rows.loc["all", "value"] == pytest.approx((per_seed[0].values[name] + per_seed[1].values[name]) / 2)
    threshold = m[m.statistic == "THRESHOLD"]
    assert len(threshold) == 3 and threshold.ci_low.isna().all()


def test_scores_carry_content_groups_and_cells_their_mapping(gated_run):
    scores = pd.read_csv(gated_run.out / "scores.csv")
    assert "group" in scores.columns and scores.group.str.match(r"^stub-[ab]/ref\d$").all()
    test_a = scores[(scores.domain == "a") & (scores.method == "stub-noise")]
    assert test_a.group.nunique() < len(test_a)  # several images per reference
    cells = [c for c in gated_run.run["cells"] if c["status"] == "ok"]
    assert all(c["mapping"] in ("logistic4",) or c["mapping"].startswith("linear") for c in cells)
    assert all(c["groups"] == len({g for g in scores[(scores.domain == c["test"]) & (scores.method == c["method"]) &
                                                    (scores.train == c["train"])].group}) for c in cells)
    protocol = gated_run.run["protocol"]
    assert protocol["resampling"] == "content groups" and "mean over split seeds" in protocol["estimand"]
    m = gated_run.metrics
    assert (m[m.seed == "0"].groups <= m[m.seed == "0"].n).all()


def test_a_tiny_domain_is_flagged_and_the_transfer_table_is_written(gated_run):
    # 30 images in 6 groups per dataset, a third for testing: far below 10 groups per seed
    assert "⚠ Warning: too little data" in gated_run.leaderboard
    table = pd.read_csv(gated_run.out / "transfer.csv", dtype={"seeds": str}, keep_default_na=False)
    assert set(zip(table.test, table.train, table.reference_train)) == {("a", "a+b", "a"), ("b", "a+b", "a")}
    assert (table.warning.str.startswith("too little data")).all() and (table.seeds == "0").all()
    assert "### Transfer on a" in gated_run.leaderboard
    assert json.loads((gated_run.out / "transfer.json").read_text())[0]["seeds"] == [0]


def _decisions(text):
    return [r["decision"] for r in csv.DictReader(io.StringIO(text))]


def test_score_threshold_auto_uses_the_exported_cut(gated_run, tmp_path, monkeypatch, capsys, stub_registry):
    monkeypatch.setattr(cli, "REGISTRY", stub_registry)
    images = sorted(str(p) for p in (Path(gated_run.run["cache_dir"]) / "datasets" / "stub").rglob("*.png"))[:12]
    model = gated_run.out / "models" / "stub-linear@a" / "seed0"
    cut = json.loads((model / "threshold.json").read_text())["thresholds"]["a"]
    assert cli.main(["score", "-m", "stub-linear", "--weights", str(model), "--threshold", "auto", "--device", "cpu", *images]) == 0
    auto = capsys.readouterr()
    assert cli.main(["score", "-m", "stub-linear", "--weights", str(model), "--threshold", repr(cut), "--device", "cpu", *images]) == 0
    explicit = capsys.readouterr()
    assert _decisions(auto.out) == _decisions(explicit.out) and len(set(_decisions(auto.out))) >= 1
    assert f"threshold {cut}" in auto.err
    # a model trained on a+b has one cut per test domain: auto needs to be told which
    mixed = gated_run.out / "models" / "stub-linear@a+b" / "seed0"
    assert cli.main(["score", "-m", "stub-linear", "--weights", str(mixed), "--threshold", "auto", "--device", "cpu", *images]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "auto:DOMAIN" in err
    assert cli.main(["score", "-m", "stub-linear", "--weights", str(mixed), "--threshold", "auto:b", "--device", "cpu", *images]) == 0
    capsys.readouterr()
    # a model folder without threshold.json: one clear line, no traceback
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in model.iterdir():
        if f.name != "threshold.json":
            (bare / f.name).write_bytes(f.read_bytes())
    assert cli.main(["score", "-m", "stub-linear", "--weights", str(bare), "--threshold", "auto", "--device", "cpu", *images]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no threshold.json" in err
    assert cli.main(["score", "-m", "stub-linear", "--weights", str(model), "--threshold", "high", "--device", "cpu", *images]) == 2
    assert "expected a number, auto or auto:DOMAIN" in capsys.readouterr().err


def _constant_plugin():
    """A zero-shot method that scores every image 1.0: its best cut on any train split accepts everything."""
    from types import SimpleNamespace

    from diqa_bench import hookimpl
    from diqa_bench.methods import Method

    class Constant(Method):
        name = "constant"
        version = "1"
        lower_better = False

        def score_batch(self, batch):
            return [1.0] * len(batch.keys)

    @hookimpl
    def register_methods(register):
        register(Constant)

    return SimpleNamespace(register_methods=register_methods)


@pytest.fixture(scope="module")
def zero_shot_run(tmp_path_factory):

    tmp = tmp_path_factory.mktemp("zero-shot-cuts")
    with pytest.MonkeyPatch.context() as mp:  # a module-scoped fixture: no monkeypatch fixture here
        mp.setenv("DIQA_BENCH_PLUGINS", "")  # the stub plugins alone
        cfg = stub_config(methods=[{"name": "stub-noise"}, {"name": "constant"}], seeds=[0, 1], train_sets=[["a"]],
                          acceptability={"threshold": 3.0})
        return run_tiny_benchmark(tmp, cfg, plugins=[("constant", _constant_plugin())], reports=False)


def test_a_zero_shot_methods_cut_is_usable_from_the_run_folder(zero_shot_run, tmp_path, monkeypatch, capsys):
    from diqa_bench import load_gate
    from diqa_bench.testing import isolated_registry

    run, m = zero_shot_run, zero_shot_run.metrics
    mean_cut = float(m[(m.method == "stub-noise") & (m.test == "b") & (m.seed == "all") & (m.statistic == "THRESHOLD")].value.iloc[0])
    per_seed = m[(m.method == "stub-noise") & (m.test == "b") & (m.seed != "all") & (m.statistic == "THRESHOLD")].value
    assert len(per_seed) == 2
    registry = isolated_registry([("constant", _constant_plugin())])
    monkeypatch.setattr(cli, "REGISTRY", registry)
    images = sorted(Path(run.out.parent / "cache").rglob("img*.png"))[:30]
    assert cli.main(["score", "--no-progress", "--processes", "1", "-m", "stub-noise", "--threshold", "auto:b", "--run", str(run.out), *map(str, images)]) == 0
    auto = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert cli.main(["score", "--no-progress", "--processes", "1", "-m", "stub-noise", "--threshold", repr(mean_cut), *map(str, images)]) == 0
    by_number = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["decision"] for r in auto] == [r["decision"] for r in by_number] and {r["decision"] for r in auto} == {"accept", "reject"}
    gate = load_gate("stub-noise", threshold="auto:b", run=run.out, registry=registry)
    assert gate.threshold == pytest.approx(mean_cut) and gate.threshold_note == ""
    assert cli.main(["score", "-m", "stub-noise", "--threshold", "auto", "--run", str(run.out), *map(str, images)]) == 2
    assert "choose one with --threshold auto:DOMAIN" in capsys.readouterr().err


def test_a_cut_that_accepts_its_whole_train_split_is_flagged_where_shown_and_used(zero_shot_run, monkeypatch, capsys):
    from diqa_bench import load_gate
    from diqa_bench.testing import isolated_registry

    run = zero_shot_run
    cells = [c for c in json.loads((run.out / "run.json").read_text())["cells"] if c["method"] == "constant" and c["status"] == "ok"]
    assert cells and all(c["train_accept"] == 1.0 for c in cells)
    assert all(c["train_accept"] < 1.0 for c in json.loads((run.out / "run.json").read_text())["cells"] if c["method"] == "stub-noise")
    notes = run.leaderboard.split("Thresholds that decide nothing", 1)[1].split("\n\n", 2)[1]
    assert "- constant @ - (seed 0, 1): the threshold accepts every image of the train split" in notes and "stub-noise" not in notes
    registry = isolated_registry([("constant", _constant_plugin())])
    gate = load_gate("constant", threshold="auto:a", run=run.out, registry=registry)
    assert "accepts every image of its train split on a" in gate.threshold_note
    assert capsys.readouterr().err.count("accepts every image") == 1
    monkeypatch.setattr(cli, "REGISTRY", registry)
    image = next(Path(run.out.parent / "cache").rglob("img*.png"))
    assert cli.main(["score", "--no-progress", "-m", "constant", "--threshold", "auto:a", "--run", str(run.out), str(image)]) == 0
    assert "warning: the threshold 1 accepts every image of its train split on a" in capsys.readouterr().err


def test_a_trained_models_threshold_json_says_what_its_cut_accepts(gated_run):
    doc = json.loads((gated_run.out / "models" / "stub-linear@a" / "seed0" / "threshold.json").read_text())
    assert set(doc["train_accept"]) == {"a", "b"} and all(0 <= v <= 1 for v in doc["train_accept"].values())
