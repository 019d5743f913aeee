"""Grid expansion: method x train set x seed units, each covering every test domain."""

import pytest
import yaml

from diqa_bench import config
from diqa_bench.grid import ZERO_SHOT_TRAIN, cells, expand
from diqa_bench.testing import stub_config

TRAINABLE = {"stub-noise": False, "stub-linear": True}


def _config(tmp_path, **kw):
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(stub_config(**kw)))
    return config.parse(path)


def test_zero_shot_once_per_seed_trainable_per_train_set_and_seed(tmp_path):
    cfg = _config(tmp_path, seeds=[0, 1])
    units = expand(cfg, TRAINABLE)
    zero = [u for u in units if u.method.name == "stub-noise"]
    trained = [u for u in units if u.method.name == "stub-linear"]
    assert [(u.train, u.seed) for u in zero] == [(None, 0), (None, 1)]
    assert [(u.train, u.seed) for u in trained] == [(("a",), 0), (("b",), 0), (("a", "b"), 0), (("a",), 1), (("b",), 1), (("a", "b"), 1)]
    assert all(u.tests == ("a", "b") for u in units)
    assert {u.train_label for u in zero} == {ZERO_SHOT_TRAIN}
    assert {u.train_label for u in trained} == {"a", "b", "a+b"}


def test_cells_cover_every_test_domain(tmp_path):
    cfg = _config(tmp_path, seeds=[0, 1, 2], test_domains=["b"])
    grid = cells(expand(cfg, TRAINABLE))
    # (1 zero-shot + 3 train sets) x 1 test domain x 3 seeds
    assert len(grid) == 12
    assert len(set(grid)) == 12
    assert {c.test for c in grid} == {"b"}
    assert sum(c.train == "-" for c in grid) == 3


def test_only_keeps_named_methods_by_name_or_label(tmp_path):
    cfg = _config(tmp_path, methods=[{"name": "stub-noise"}, {"name": "stub-noise", "label": "noise2", "options": {"fail": True}}, {"name": "stub-linear"}])
    assert len(expand(cfg, TRAINABLE)) == 2 + 2 + 6
    only = expand(cfg, TRAINABLE, only=["noise2"])
    assert [(u.method.label, u.seed) for u in only] == [("noise2", 0), ("noise2", 1)]
    only = expand(cfg, TRAINABLE, only=["stub-linear"])
    assert len(only) == 6 and {u.method.name for u in only} == {"stub-linear"}
    # a method name selects every labelled instance of it
    assert {u.method.label for u in expand(cfg, TRAINABLE, only=["stub-noise"])} == {"stub-noise", "noise2"}


def test_units_describe_themselves(tmp_path):
    cfg = _config(tmp_path, seeds=[7])
    descriptions = [u.describe() for u in expand(cfg, TRAINABLE)]
    assert descriptions[0] == "stub-noise @ - (seed 7)"
    assert "stub-linear @ a+b (seed 7)" in descriptions


@pytest.mark.parametrize("seeds", [[0], [0, 1, 2, 3]])
def test_unit_count_formula(tmp_path, seeds):
    cfg = _config(tmp_path, seeds=seeds)
    assert len(expand(cfg, TRAINABLE)) == len(seeds) * (1 + len(cfg.train_sets))
