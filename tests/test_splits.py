"""Group-aware, deterministic splits."""

import random

import pytest

from diqa_bench.datasets import Record
from diqa_bench.splits import group_kfold, split_groups, split_items, split_records


def _records(n_groups=20, per_group=4, split=None):
    return [Record(id=f"g{g}_i{i}", path=f"g{g}_i{i}.png", mos=3.0, group=f"g{g}", split=split) for g in range(n_groups) for i in range(per_group)]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_no_group_on_both_sides_and_everything_used(seed):
    recs = _records()
    train, test = split_records(recs, 0.3, seed)
    train_groups = {r.group for r in train}
    test_groups = {r.group for r in test}
    assert not train_groups & test_groups
    assert len(train) + len(test) == len(recs)
    assert {r.id for r in train} | {r.id for r in test} == {r.id for r in recs}


@pytest.mark.parametrize("ratio, n_test", [(0.3, 6), (0.5, 10), (0.1, 2), (0.01, 1), (0.99, 19)])
def test_ratio_is_respected_in_groups(ratio, n_test):
    train, test = split_records(_records(), ratio, seed=0)
    assert len({r.group for r in test}) == n_test
    assert len({r.group for r in train}) == 20 - n_test


def test_deterministic_across_record_orderings():
    recs = _records()
    train, test = split_records(recs, 0.3, seed=5)
    shuffled = recs[:]
    random.Random(1).shuffle(shuffled)
    train2, test2 = split_records(shuffled, 0.3, seed=5)
    assert {r.id for r in test} == {r.id for r in test2}
    assert {r.id for r in train} == {r.id for r in train2}


def test_seeds_change_the_split_and_adding_a_group_moves_no_other():
    groups = [f"g{i}" for i in range(20)]
    splits = {frozenset(split_groups(groups, 0.3, s)) for s in range(5)}
    assert len(splits) > 1
    # ranks are per group: with the same test count, a new group either joins the test side or none moves
    before = split_groups(groups, 0.5, 0)
    after = split_groups(groups + ["new"], 0.5 * 20 / 21, 0)
    assert len(after) == len(before)
    assert len(before - after) <= 1


def test_records_without_group_are_their_own_group():
    recs = [Record(id=f"i{i}", path=f"i{i}.png", mos=1.0) for i in range(10)]
    train, test = split_records(recs, 0.3, 0)
    assert len(test) == 3 and len(train) == 7


def test_split_column_is_honoured_and_ignores_seed():
    recs = [Record(id=f"i{i}", path="x", mos=1.0, group="same", split="train" if i < 7 else "Test") for i in range(10)]
    for seed in (0, 1):
        train, test = split_records(recs, 0.5, seed)
        assert [r.id for r in train] == [f"i{i}" for i in range(7)]
        assert [r.id for r in test] == ["i7", "i8", "i9"]
    # switched off, the group-aware split applies (one group: everything on one side)
    train, test = split_records(recs, 0.5, 0, use_split_column=False)
    assert len(train) + len(test) == 10 and (not train or not test)


def test_split_column_used_only_when_every_record_has_one():
    recs = _records(n_groups=10, per_group=1)
    recs[0] = Record(id=recs[0].id, path="x", mos=3.0, group=recs[0].group, split="test")
    train, test = split_records(recs, 0.3, 0)
    assert len(test) == 3


def test_bad_ratio_raises():
    with pytest.raises(ValueError, match="test_ratio"):
        split_groups(["a", "b"], 1.0, 0)


def test_two_groups_always_leave_one_for_training():
    assert len(split_groups(["a", "b"], 0.9, 0)) == 1


def test_split_items_and_group_kfold_are_group_aware():
    groups = [f"p{i // 3}" for i in range(30)]
    train, held = split_items(list(range(30)), groups, 0.2, seed=1)
    assert not {groups[i] for i in train} & {groups[i] for i in held}
    assert sorted(train + held) == list(range(30))
    with pytest.raises(ValueError, match="29 items but 30 groups"):
        split_items(list(range(29)), groups, 0.2, seed=1)
    folds = group_kfold(groups, 5, seed=1)
    assert len(folds) == 5
    seen = []
    for tr, val in folds:
        assert not {groups[i] for i in tr} & {groups[i] for i in val}
        seen += val
    assert sorted(seen) == list(range(30))  # every item validated exactly once
    assert group_kfold(groups, 5, seed=1) == folds


def test_protocol_full_scores_every_image_and_reports_raters(tmp_path):
    """A zero-shot run under protocol full scores whole datasets; a rated dataset's screening and
    reliability reach run.json and LEADERBOARD.md."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from diqa_bench.testing import run_tiny_benchmark, stub_config

    import diqa_datasets

    rng = np.random.default_rng(0)
    photos = tmp_path / "photos"
    photos.mkdir()
    truth = rng.uniform(1.5, 4.5, 24)
    rows = []
    for i, t in enumerate(truth):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(photos / f"p{i % 6}_{i}.png")
        rows += [(f"p{i % 6}_{i}.png", f"r{o}", int(np.clip(round(t + rng.normal(0, 0.5)), 1, 5)), f"p{i % 6}") for o in range(4)]
        rows.append((f"p{i % 6}_{i}.png", "reversed", int(np.clip(round(6 - t), 1, 5)), f"p{i % 6}"))
    pd.DataFrame(rows, columns=["image", "observer", "rating", "patient"]).to_csv(photos / "ratings.csv", index=False)
    cfg = stub_config(methods=[{"name": "stub-noise"}], seeds=[0], train_sets=[], test_domains=["a", "derm"])
    cfg["domains"]["derm"] = [{"dataset": "derm-ratings", "options": {"root": str(photos), "ratings": "ratings.csv", "patient_column": "patient"}}]
    cfg["splits"] = {"protocol": "full", "seeds": [0]}
    res = run_tiny_benchmark(tmp_path / "run", cfg, plugins=[("datasets", diqa_datasets)])
    assert res.exit_code == 0
    srocc = res.metrics[(res.metrics.statistic == "SROCC") & (res.metrics.seed.astype(str) == "all")]
    assert dict(zip(srocc.test, srocc.n)) == {"a": 30, "derm": 24}  # every image, no hashed test fraction
    assert res.run["protocol"]["split_protocol"] == "full"
    screening = res.run["screening"]["derm-ratings"]
    assert [r["observer"] for r in screening["rejected"]] == ["reversed"]
    assert screening["reliability"]["value"] is not None
    assert "Protocol full" in res.leaderboard and "Raters of derm-ratings" in res.leaderboard


def test_fold_test_groups_partition_the_groups_for_every_seed():
    from diqa_bench.splits import fold_key, fold_of_key, fold_test_groups

    groups = [f"g{i % 13}" for i in range(40)]
    for seed in (0, 1, 7):
        folds = [fold_test_groups(groups, 5, seed, f) for f in range(5)]
        assert sorted(g for f in folds for g in f) == sorted(set(groups))  # every group tested in exactly one fold
        assert {len(f) for f in folds} <= {2, 3}  # 13 groups in 5 folds: sizes differ by at most one
    assert fold_test_groups(groups, 5, 0, 0) != fold_test_groups(groups, 5, 1, 0)  # another repetition deals them anew
    assert [fold_of_key(fold_key(s, f)) for s, f in ((0, 4), (3, 0), (-1, 2))] == [(0, 4), (3, 0), (-1, 2)]


def _cv_config(photos, folds, methods=None, seeds=(0, 1)):
    from diqa_bench.testing import stub_config

    cfg = stub_config(methods=methods or [{"name": "stub-noise"}, {"name": "stub-linear"}], seeds=list(seeds), train_sets=[["derm"]],
                      test_domains=["derm"])
    cfg["domains"] = {"derm": [{"dataset": "derm-ratings", "options": {"root": str(photos), "ratings": "ratings.csv", "patient_column": "patient"}}]}
    cfg["splits"] = {"folds": folds, "seeds": list(seeds)}
    return cfg


def test_five_folds_on_a_30_image_rated_set_test_every_image_once_per_repetition(tmp_path, rated_photos):
    import numpy as np
    from scipy import stats as sps

    import diqa_datasets
    from diqa_bench.testing import run_tiny_benchmark

    res = run_tiny_benchmark(tmp_path / "run", _cv_config(rated_photos(tmp_path / "photos", n_patients=10, raters=4, rating_sd=0.4), 5), plugins=[("datasets", diqa_datasets)])
    assert res.exit_code == 0
    scores = res.scores
    for (method, train, seed), g in scores.groupby(["method", "train", "seed"]):
        assert len(g) == 30 and g.image.nunique() == 30, (method, train, seed)  # every image tested once per repetition
    assert sorted(set(scores.seed)) == [0, 1]  # one cell per repetition, not per fold
    assert res.run["protocol"]["folds"] == 5 and res.run["protocol"]["fold_count"] == 5
    models = sorted(p.name for p in (res.out / "models" / "stub-linear@derm").iterdir())
    assert models == sorted(f"seed{k}" for k in (0, 1, 2, 3, 4, 1000, 1001, 1002, 1003, 1004))  # a model per repetition and fold
    m = res.metrics
    per_rep = m[(m.statistic == "SROCC") & (m.seed.astype(str) != "all")]
    assert (per_rep.n == 30).all() and (per_rep.groups == 10).all()
    # the statistic is that of the pooled out-of-fold scores of the repetition
    cell = scores[(scores.method == "stub-linear") & (scores.seed == 1)]
    value = per_rep[(per_rep.method == "stub-linear") & (per_rep.seed.astype(str) == "1")].value.item()
    assert value == pytest.approx(sps.spearmanr(cell.score, cell.mos).statistic)
    # a zero-shot method scores both repetitions alike; their group draws are shared, so averaging
    # the two repetitions leaves the interval as it is (independent draws would narrow it)
    noise = m[(m.method == "stub-noise") & (m.statistic == "SROCC")].assign(seed=lambda d: d.seed.astype(str)).set_index("seed")
    assert noise.loc["0", "value"] == noise.loc["1", "value"] == noise.loc["all", "value"]
    assert (noise.loc["all", "ci_low"], noise.loc["all", "ci_high"]) == pytest.approx((noise.loc["0", "ci_low"], noise.loc["0", "ci_high"]))
    assert np.isfinite(noise.loc["all", "ci_low"])


def test_fold_splits_never_train_on_a_tested_patient(tmp_path, rated_photos):
    from diqa_bench import config as cfgmod
    from diqa_bench.plan import Plan
    from diqa_bench.testing import isolated_registry

    import diqa_datasets
    import yaml

    registry = isolated_registry([("datasets", diqa_datasets)])
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(_cv_config(rated_photos(tmp_path / "photos", n_patients=10, raters=4, rating_sd=0.4), "leave-one-group-out", seeds=(3,))))
    plan = Plan.build(cfgmod.parse(path, registry), registry, tmp_path / "cache", log=lambda msg: None)
    assert plan.folds == 10  # one fold per patient
    ds = plan.datasets["derm-ratings"]
    tested = []
    for key, (train, test) in ds.splits.items():
        train_groups, test_groups = {ds.refs[i].group for i in train}, {ds.refs[i].group for i in test}
        assert len(test_groups) == 1 and not train_groups & test_groups and len(train) + len(test) == 30
        tested += test
    assert sorted(tested) == list(range(30))
    assert {u.seed for u in plan.units} == set(ds.splits) and len(plan.units) == 2 * 10


@pytest.mark.parametrize("change, message", [
    ({"folds": 1}, "splits.folds: 1 is not allowed"),
    ({"folds": "loo"}, "splits.folds: 'loo' is not allowed"),
    ({"folds": 5, "protocol": "full"}, "cross-validation needs protocol 'split'"),
])
def test_bad_fold_settings_are_config_errors(tmp_path, change, message):
    import yaml

    from diqa_bench import config as cfgmod
    from diqa_bench.errors import ConfigError
    from diqa_bench.testing import stub_config

    cfg = stub_config()
    if change.get("protocol"):  # protocol full has no train side
        cfg.pop("train_sets")
    cfg["splits"].update(change)
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=message):
        cfgmod.parse(path)
    cfg = stub_config(acceptability={"threshold": 3.0})
    cfg["splits"]["folds"] = 5
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="acceptability is not supported with cross-validation"):
        cfgmod.parse(path)
