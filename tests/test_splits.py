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
