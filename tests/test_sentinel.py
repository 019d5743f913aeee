"""The real-judgement sentinel (benchmarks/artefact_pairs.yaml) judges exactly the default
benchmark's models: the config's ``extends`` (resolution, refusals, run.json), the sentinel's
resolved training side against cross_domain.yaml, and a pairs run after a normal run reusing its
fits instead of training again."""

from pathlib import Path

import pytest
import yaml

from diqa_bench import config as cfgmod
from diqa_bench.errors import ConfigError
from diqa_bench.testing import run_tiny_benchmark, stub_config

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")


def _train_side(cfg):
    """Everything a fit depends on that a config decides (plan.fit_key's config inputs, the
    datasets behind every train set, the methods and their options)."""
    return {
        "domains": {d: [(s.type, s.name, s.options) for s in cfg.domains[d]] for ts in cfg.train_sets for d in ts},
        "train_sets": cfg.train_sets,
        "seeds": cfg.seeds,
        "test_ratio": cfg.test_ratio,
        "use_split_column": cfg.use_split_column,
        "protocol": cfg.protocol,
        "normalise_mos": cfg.normalise_mos,
        "methods": [(m.name, m.label, m.options) for m in cfg.methods],
        "bad_input": cfg.bad_input,
        "run_options": cfg.run_options,
    }


def test_sentinel_config_resolves_to_the_default_training_side_exactly():
    default = cfgmod.parse(ROOT / "benchmarks" / "cross_domain.yaml")
    sentinel = cfgmod.parse(ROOT / "benchmarks" / "artefact_pairs.yaml")
    assert _train_side(sentinel) == _train_side(default)
    assert sentinel.test_domains == ["artefacts"]  # skin and natural are train-only here
    assert [s.type for s in sentinel.domains["artefacts"]] == ["pairs"]
    assert sentinel.name == "artefact_pairs" and sentinel.raw["extends"] == "cross_domain.yaml"


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_extends_replaces_top_level_keys_and_merges_domains_by_name(tmp_path):
    parent = stub_config()
    _write(tmp_path / "parent.yaml", parent)
    (tmp_path / "sub").mkdir()
    child = _write(tmp_path / "sub" / "child.yaml", {
        "extends": "../parent.yaml", "name": "child",
        "domains": {"b": [{"dataset": "stub-dataset", "name": "stub-b2", "options": {"count": 12}}],
                    "c": [{"dataset": "stub-dataset", "name": "stub-c"}]},
        "test_domains": ["c"], "splits": {"seeds": [7]},
    })
    cfg = cfgmod.parse(child)
    assert list(cfg.domains) == ["a", "b", "c"]
    assert [s.name for s in cfg.domains["a"]] == ["stub-a"]  # kept from the parent
    assert [s.name for s in cfg.domains["b"]] == ["stub-b2"]  # the child's list replaces the parent's
    assert cfg.test_domains == ["c"] and cfg.name == "child"
    assert cfg.seeds == [7] and cfg.test_ratio == 0.3  # splits replaced as a whole (default ratio), not merged
    assert [m.name for m in cfg.methods] == ["stub-noise", "stub-linear"] and cfg.train_sets == parent["train_sets"]


def test_extends_refuses_cycles_chains_and_missing_parents(tmp_path):
    _write(tmp_path / "a.yaml", {"extends": "b.yaml", "name": "a"})
    _write(tmp_path / "b.yaml", {**stub_config(), "extends": "a.yaml"})
    with pytest.raises(ConfigError, match="a cycle"):
        cfgmod.parse(tmp_path / "a.yaml")
    _write(tmp_path / "c.yaml", {**stub_config(), "extends": "d.yaml"})
    _write(tmp_path / "e.yaml", {"extends": "c.yaml"})
    with pytest.raises(ConfigError, match="more than one level"):
        cfgmod.parse(tmp_path / "e.yaml")
    _write(tmp_path / "self.yaml", {**stub_config(), "extends": "self.yaml"})
    with pytest.raises(ConfigError, match="extends itself"):
        cfgmod.parse(tmp_path / "self.yaml")
    _write(tmp_path / "orphan.yaml", {"extends": "nowhere.yaml"})
    with pytest.raises(ConfigError, match="nowhere.yaml: config file not found"):
        cfgmod.parse(tmp_path / "orphan.yaml")


def _pairs(folder: Path) -> Path:
    """Three pairs over generated images: clean beats noisy."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rows = []
    for g in range(3):
        rng = np.random.default_rng(g)
        base = rng.random((24, 24, 3)) * 0.3 + 0.35
        for name, noise in (("clean", 0.0), ("noisy", 0.2)):
            img = np.clip(base + rng.normal(0, noise, base.shape), 0, 1) if noise else base
            Image.fromarray(np.uint8(img * 255)).save(folder / f"{name}{g}.png")
        rows.append(f"clean{g}.png,noisy{g}.png,g{g}\n")
    (folder / "pairs.csv").write_text("better,worse,group\n" + "".join(rows))
    return folder / "pairs.csv"


def test_a_pairs_run_extending_a_normal_run_reuses_its_fits(tmp_path, stub_counters):
    import diqa_datasets

    _, stub_linear = stub_counters
    plugins = [("datasets", diqa_datasets)]
    cache = tmp_path / "cache"
    normal = stub_config(seeds=[0, 1])
    first = run_tiny_benchmark(tmp_path / "normal", normal, plugins=plugins, cache_dir=cache)
    assert first.exit_code == 0 and stub_linear.fits == 3 * 2  # 3 train sets x 2 seeds

    pairs_csv = _pairs(tmp_path / "pairs")
    sentinel = {"extends": str(tmp_path / "normal" / "bench.yaml"), "name": "sentinel",
                "domains": {"p": [{"dataset": "pairs", "options": {"csv": str(pairs_csv)}}]}, "test_domains": ["p"]}
    second = run_tiny_benchmark(tmp_path / "sentinel", sentinel, plugins=plugins, cache_dir=cache)
    assert second.exit_code == 0
    assert stub_linear.fits == 3 * 2  # every fit was a cache hit
    assert set(second.metrics[second.metrics.statistic == "PAIR_ACC"].train) == {"-", "a", "b", "a+b"}
    assert second.run["config"]["extends"] and second.run["config"]["test_domains"] == ["p"]
    assert set(second.run["config"]["domains"]) == {"a", "b", "p"}  # run.json holds the resolved config


def test_unscored_pairs_count_as_ties_and_the_table_says_how_many(tmp_path, stub_counters):
    """A method too small for some images still gets a row over every pair: each pair it cannot
    judge counts half, and the table's unscored column says how many there were."""
    import diqa_datasets
    import numpy as np
    from PIL import Image

    pairs_csv = _pairs(tmp_path / "pairs")
    rows = []
    for g in (9, 10):  # two pairs of 40 px images, clean beats noisy
        base = np.random.default_rng(g).random((40, 40, 3)) * 0.3 + 0.35
        Image.fromarray(np.uint8(base * 255)).save(tmp_path / "pairs" / f"bigclean{g}.png")
        noisy = np.clip(base + np.random.default_rng(g + 1).normal(0, 0.2, base.shape), 0, 1)
        Image.fromarray(np.uint8(noisy * 255)).save(tmp_path / "pairs" / f"bignoisy{g}.png")
        rows.append(f"bigclean{g}.png,bignoisy{g}.png,g{g}\n")
    pairs_csv.write_text(pairs_csv.read_text() + "".join(rows))
    cfg = {"name": "ties", "domains": {"p": [{"dataset": "pairs", "options": {"csv": str(pairs_csv)}}]},
           "methods": [{"name": "stub-noise"}, {"name": "stub-noise", "label": "big-only", "options": {"min_size": 30}},
                       {"name": "stub-noise", "label": "none", "options": {"min_size": 100}}],
           "test_domains": ["p"], "splits": {"seeds": [0]}, "statistics": {"bootstrap": 50}}
    res = run_tiny_benchmark(tmp_path / "run", cfg, plugins=[("datasets", diqa_datasets)])
    assert res.exit_code == 0
    cells = {c["method"]: c for c in res.run["pair_cells"]}
    assert cells["stub-noise"]["unscored"] == 0 and cells["big-only"]["unscored"] == 3 and cells["big-only"]["pairs"] == 5
    assert res.value("stub-noise", "-", "p", "PAIR_ACC") == 1.0
    assert res.value("big-only", "-", "p", "PAIR_ACC") == pytest.approx((3 * 0.5 + 2) / 5)  # the 3 small pairs count half
    row = next(line for line in res.leaderboard.splitlines() if line.startswith("| big-only @ -"))
    assert [c.strip() for c in row.strip("|").split("|")][2:5] == ["5", "3", "5"]  # pairs, unscored, groups
    none = next(line for line in res.leaderboard.splitlines() if line.startswith("| none @ -"))  # no image large enough: a row all the same
    assert "n/a (no pair scored)" in none and [c.strip() for c in none.strip("|").split("|")][2:4] == ["5", "5"]
    assert "| Method @ train set   | Pair accuracy ↑" in res.leaderboard and "| pairs   | unscored   | groups" in res.leaderboard
    assert sum(s["reason"].startswith("stub-noise: stub-noise needs at least 30") for s in res.run["skipped"]) == 6
