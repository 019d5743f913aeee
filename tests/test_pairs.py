"""Paired preference (2AFC): the pair-accuracy statistic and its content-group bootstrap against hand
computations, the ``pairs`` dataset type (CSV and with/without layouts), evaluation-only rules,
and the results files (metrics, run.json, pairs.csv, LEADERBOARD.md, re-rendering)."""

import itertools
import json
import os
import re
import shutil
from pathlib import Path

import diqa_datasets
import numpy as np
import pytest
import yaml
from diqa_datasets.pairs import PairsDataset

from diqa_bench.datasets import DatasetContext
from diqa_bench.errors import ConfigError
from diqa_bench.pair_files import recompute
from diqa_bench.pairs import Pair, pair_accuracy
from diqa_bench.testing import StubLinear, run_tiny_benchmark

pytestmark = pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")

# ../shared/data beside the checkout; DIQA_BENCH_SHARED_DATA points elsewhere (e.g. from a git worktree)
SHARED_DATA = Path(os.environ.get("DIQA_BENCH_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
HAM = SHARED_DATA / "derm-artefacts-ham10000"


# -- the statistic, by hand ----------------------------------------------------------------------

def test_always_right_is_one_reversed_is_zero_and_direction_is_by_sign():
    better, worse = np.array([3.0, 5.0, 2.0, 9.0]), np.array([1.0, 4.0, 0.0, 8.5])
    groups = ["a", "a", "b", "c"]
    right = pair_accuracy(better, worse, groups, bootstrap=500)
    assert right.value == 1.0 and right.ci == (1.0, 1.0) and right.pairs == 4 and right.groups == 3
    wrong = pair_accuracy(worse, better, groups, bootstrap=500)
    assert wrong.value == 0.0 and wrong.ci == (0.0, 0.0)
    # a lower-is-better method gives the better image the LOWER score: negated, not abs()
    assert pair_accuracy(worse, better, groups, lower_better=True).value == 1.0
    assert pair_accuracy(better, worse, groups, lower_better=True).value == 0.0
    # negative scores keep their sign: abs() would flip this pair
    assert pair_accuracy(np.array([-1.0]), np.array([-2.0]), ["g"], bootstrap=0).value == 1.0


def test_ties_count_half():
    res = pair_accuracy(np.array([1.0, 2.0, 3.0, 0.0]), np.array([1.0, 1.0, 3.0, 5.0]), ["a", "b", "c", "d"], bootstrap=0)
    assert res.value == pytest.approx((0.5 + 1 + 0.5 + 0) / 4)
    assert np.isnan(res.ci[0])  # no bootstrap asked: no interval


# Three content groups: g1 two right pairs, g2 one tie, g3 one wrong pair.
HAND_SUMS, HAND_COUNTS = np.array([2.0, 0.5, 0.0]), np.array([2.0, 1.0, 1.0])
HAND_ACC = 2.5 / 4


def exact_group_bootstrap_quantiles(sums, counts, confidence=0.95, sampled=True):
    """Enumerate every equally likely group resample (g^g of them) and read the quantiles off the
    exact distribution of credited pairs / pairs drawn."""
    g = len(sums)
    values = sorted(sum(sums[list(d)]) / sum(counts[list(d)]) for d in itertools.product(range(g), repeat=g))
    atoms, cdf = np.unique(values, return_counts=True)
    cdf = np.cumsum(cdf) / len(values)
    alpha = (1 - confidence) / 2
    lo, hi = atoms[np.searchsorted(cdf, alpha)], atoms[np.searchsorted(cdf, 1 - alpha)]
    # far from a CDF step, a sampled quantile lands on the exact atom with near certainty
    assert not sampled or np.min(np.abs(cdf - alpha)) > 0.01 and np.min(np.abs(cdf - (1 - alpha))) > 0.01
    return lo, hi


def test_group_bootstrap_matches_the_exact_resampling_distribution():
    better = np.array([2.0, 2.0, 1.0, 0.0])  # g1 right, g1 right, g2 tie, g3 wrong
    worse = np.array([1.0, 1.0, 1.0, 1.0])
    res = pair_accuracy(better, worse, ["g1", "g1", "g2", "g3"], bootstrap=4000, seed=0)
    assert res.value == pytest.approx(HAND_ACC) and res.groups == 3 and res.pairs == 4
    assert res.ci == pytest.approx(exact_group_bootstrap_quantiles(HAND_SUMS, HAND_COUNTS))
    # by hand: drawing g3 three times (probability 1/27 > 2.5%) gives 0/3, drawing g1 three times 6/6
    assert res.ci == (0.0, 1.0)
    # resampling single pairs would ignore that g1's pairs move together: a narrower interval
    pair_lo, pair_hi = exact_group_bootstrap_quantiles(np.array([1.0, 1.0, 0.5, 0.0]), np.ones(4), sampled=False)
    assert (pair_lo, pair_hi) == (0.25, 1.0) and pair_lo > res.ci[0]


def test_a_pair_without_group_is_its_own_group():
    assert Pair("a.png", "b.png").content_group != Pair("c.png", "d.png").content_group
    assert Pair("a.png", "b.png", group="s1").content_group == Pair("c.png", "d.png", group="s1").content_group


# -- a generated tiny pairs set, end to end -------------------------------------------------------

def _image(path: Path, noise: float, pattern: int, seed: int) -> None:
    from PIL import Image

    yy, xx = np.mgrid[0:32, 0:32] / 32
    base = 0.5 + 0.3 * np.sin(2 * np.pi * (xx * (pattern + 1) + yy))
    img = np.clip(np.stack([base, base * 0.9, base * 0.8], -1) + np.random.default_rng(seed).normal(0, noise, (32, 32, 1)), 0, 1)
    Image.fromarray((img * 255).round().astype(np.uint8)).save(path)


@pytest.fixture
def pair_folder(tmp_path):
    """Images whose quality is known (noise added), and three pairs CSVs over them:
    mixed.csv: g1 two right pairs, g2 one tie (byte-identical copies), g3 one pair labelled the wrong
    way round; right.csv: every pair right (one without a group); reversed.csv: right.csv swapped."""
    folder = tmp_path / "pairs"
    folder.mkdir()
    for g in range(3):
        _image(folder / f"clean{g}.png", 0.0, g, g)
        _image(folder / f"noisy{g}.png", 0.12, g, 10 + g)
        _image(folder / f"noisier{g}.png", 0.25, g, 20 + g)
    shutil.copy(folder / "clean1.png", folder / "clean1_copy.png")
    mixed = [("clean0.png", "noisy0.png", "g1", "noise"), ("noisy0.png", "noisier0.png", "g1", "noise"),
             ("clean1.png", "clean1_copy.png", "g2", "copy"), ("noisier2.png", "clean2.png", "g3", "noise")]
    right = [("clean0.png", "noisier0.png", "g1"), ("clean1.png", "noisy1.png", "g2"), ("noisy2.png", "noisier2.png", "")]
    (folder / "mixed.csv").write_text("better,worse,group,category\n" + "".join(",".join(r) + "\n" for r in mixed))
    (folder / "right.csv").write_text("better,worse,group\n" + "".join(",".join(r) + "\n" for r in right))
    (folder / "reversed.csv").write_text("worse,better,group\n" + "".join(",".join(r) + "\n" for r in right))
    return folder


def pairs_config(folder: Path, bootstrap: int = 4000) -> dict:
    def domain(name):
        return [{"dataset": "pairs", "name": f"{name}-pairs", "options": {"csv": str(folder / f"{name}.csv")}}]

    return {
        "name": "pairs",
        "domains": {
            "a": [{"dataset": "stub-dataset", "name": "stub-a", "options": {"count": 18, "groups": 6, "size": 24, "seed": 1, "tag": "a"}}],
            "mixed": domain("mixed"), "right": domain("right"), "reversed": domain("reversed"),
        },
        "methods": [{"name": "stub-noise"}, {"name": "stub-linear"}],
        "train_sets": [["a"]],
        "test_domains": ["a", "mixed", "right", "reversed"],
        "splits": {"test_ratio": 0.34, "seeds": [0, 1]},
        "statistics": {"bootstrap": bootstrap},
    }


def test_pair_accuracy_end_to_end_against_hand_computation(tmp_path, pair_folder, monkeypatch, stub_counters):
    trained_on: list[str] = []
    fit = StubLinear.fit

    def spy(self, data, ctx):
        trained_on.extend(s.path for s in data.samples)
        return fit(self, data, ctx)

    monkeypatch.setattr(StubLinear, "fit", spy)
    res = run_tiny_benchmark(tmp_path / "run", pairs_config(pair_folder), plugins=[("datasets", diqa_datasets)])
    assert res.exit_code == 0, res.run["failed_cells"]

    # no pair image ever reaches training (2 seeds: 2 fits, all on domain a)
    assert StubLinear.fits == 2 and trained_on and not any(str(pair_folder) in p for p in trained_on)

    lo, hi = exact_group_bootstrap_quantiles(HAND_SUMS, HAND_COUNTS)
    for method, train in (("stub-noise", "-"), ("stub-linear", "a")):  # lower-better and higher-better methods
        for seed in ("0", "1", "all"):
            assert res.value(method, train, "mixed", "PAIR_ACC", seed) == pytest.approx(HAND_ACC)
        assert res.value(method, train, "right", "PAIR_ACC") == 1.0
        assert res.value(method, train, "reversed", "PAIR_ACC") == 0.0
        m = res.metrics
        row = m[(m.method == method) & (m.test == "mixed") & (m.statistic == "PAIR_ACC") & (m.seed == "all")].iloc[0]
        assert (row.ci_low, row.ci_high) == pytest.approx((lo, hi)) and row.n == 4
        assert res.value(method, train, "mixed", "PAIR_ACC[copy]") == 0.5
        assert res.value(method, train, "mixed", "PAIR_ACC[noise]") == pytest.approx(2 / 3)
    # MOS statistics are not computed on pairs; the regular domain keeps its own
    assert set(res.metrics[res.metrics.test == "mixed"].statistic) == {"PAIR_ACC", "PAIR_ACC[copy]", "PAIR_ACC[noise]"}
    assert res.value("stub-noise", "-", "a", "SROCC") > 0.8

    # every pair image scored once per cell, the whole set for every seed (no split)
    s = res.scores[res.scores.domain == "mixed"]
    assert s.groupby(["method", "train", "seed"]).size().tolist() == [7] * 4

    run = res.run
    assert run["domains"]["mixed"]["kind"] == "pairs" and run["domains"]["mixed"]["pairs"] == 4 and run["domains"]["mixed"]["groups"] == 3
    assert run["domains"]["right"]["groups"] == 3  # the pair without a group is a group of its own
    assert {(c["test"], c["pairs"], c["groups"]) for c in run["pair_cells"]} == {("mixed", 4, 3), ("right", 3, 3), ("reversed", 3, 3)}
    pairs_csv = (res.out / "pairs.csv").read_text().splitlines()
    assert pairs_csv[0] == "domain,dataset,better,worse,group,category" and len(pairs_csv) == 1 + 4 + 3 + 3

    lb = res.leaderboard
    section = lb.split("## Test domain: mixed (paired preference, evaluation only)")[1].split("## ")[0]
    assert "chance = 0.5" in section and "4 pairs in 3 content groups" in section
    assert "| Method @ train set" in section and "Pair accuracy ↑" in section and "| groups" in section.replace("   ", " ")
    assert f"0.625 [{lo:.3f}, {hi:.3f}]" in section
    assert "SROCC" not in section
    assert "## Test domain: a" in lb and "Paired preference (mixed, reversed, right)" in lb

    # the stored files suffice: re-rendering gives the same page, and the statistic can be recomputed
    from diqa_bench.results import render_leaderboard

    (res.out / "LEADERBOARD.md").unlink()
    assert render_leaderboard(res.out, build_figures=False) == lb
    again = recompute(res.out).sort_values(["method", "train", "test", "seed", "statistic"]).reset_index(drop=True)
    stored = res.metrics[res.metrics.statistic.str.startswith("PAIR_ACC")].sort_values(["method", "train", "test", "seed", "statistic"]).reset_index(drop=True)
    assert np.allclose(again[["value", "ci_low", "ci_high", "n"]].to_numpy(float), stored[["value", "ci_low", "ci_high", "n"]].to_numpy(float))


def test_each_pair_image_is_scored_once_for_all_seeds_and_runs(tmp_path, pair_folder, stub_counters):
    stub_noise, _ = stub_counters
    cfg = {"name": "once", "domains": {"right": [{"dataset": "pairs", "options": {"csv": str(pair_folder / "right.csv")}}]},
           "methods": [{"name": "stub-noise"}], "test_domains": ["right"], "splits": {"seeds": [0, 1, 2]}, "statistics": {"bootstrap": 50}}
    cache = tmp_path / "cache"
    res = run_tiny_benchmark(tmp_path / "one", cfg, plugins=[("datasets", diqa_datasets)], cache_dir=cache)
    assert stub_noise.calls == 6  # 3 pairs, 6 distinct images, 3 seeds
    assert len(res.scores) == 18 and res.value("stub-noise", "-", "right", "PAIR_ACC") == 1.0
    run_tiny_benchmark(tmp_path / "two", cfg, plugins=[("datasets", diqa_datasets)], cache_dir=cache)
    assert stub_noise.calls == 6  # the score cache answers a re-run


def test_report_html_and_stored_cells_leave_pairs_to_their_own_table(tmp_path, pair_folder):
    from diqa_bench.report import build_report
    from diqa_bench.report.stored import load_run

    cfg = pairs_config(pair_folder, bootstrap=100)
    cfg["methods"] = [{"name": "stub-noise"}]
    cfg["train_sets"] = []
    res = run_tiny_benchmark(tmp_path / "run", cfg, plugins=[("datasets", diqa_datasets)])
    run = load_run(res.out)
    assert run.test_domains() == ["a"]
    assert {k[2] for k in run.cells()} == {"a"}  # no SROCC, scatter or significance against placeholder labels
    build_report(res.out)
    html = (res.out / "report.html").read_text()
    assert 'id="pairs-mixed"' in html and "chance = 0.5" in html


def test_missing_pairs_fail_with_a_reason_and_acceptability_leaves_pairs_alone(tmp_path, pair_folder):
    cfg = pairs_config(pair_folder, bootstrap=100)
    cfg["methods"] = [{"name": "stub-noise"}]
    cfg["train_sets"] = []
    cfg["domains"]["gone"] = [{"dataset": "pairs", "name": "gone-pairs", "options": {"csv": str(tmp_path / "gone.csv")}}]
    cfg["test_domains"] = ["a", "right", "gone"]
    cfg["acceptability"] = {"threshold": 3.0}
    res = run_tiny_benchmark(tmp_path / "run", cfg, plugins=[("datasets", diqa_datasets)])
    assert res.exit_code == 1
    assert res.value("stub-noise", "-", "right", "PAIR_ACC") == 1.0
    assert set(res.metrics[res.metrics.test == "right"].statistic) == {"PAIR_ACC"}  # no AUC / accuracy gate on pairs
    assert "AUC" in set(res.metrics[res.metrics.test == "a"].statistic)
    gone = res.leaderboard.split("## Test domain: gone (paired preference, evaluation only)")[1].split("## ")[0]
    assert re.search(r"\| stub-noise @ - +\| failed: dataset gone-pairs: csv: pairs CSV not found", gone)
    assert "no pairs loaded" in gone


# -- evaluation-only rules in the config ----------------------------------------------------------

def _parse(tmp_path, cfg):
    import diqa_bench.testing as stubs
    from diqa_bench import config as cfgmod
    from diqa_bench.plugins import load_plugins

    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return cfgmod.parse(path, load_plugins(extra=[("stub", stubs), ("datasets", diqa_datasets)]))


def test_a_pair_domain_in_train_sets_is_refused_in_one_line(tmp_path, pair_folder):
    cfg = pairs_config(pair_folder)
    cfg["train_sets"] = [["a"], ["a", "mixed"]]
    with pytest.raises(ConfigError) as info:
        _parse(tmp_path, cfg)
    msg = str(info.value)
    assert "\n" not in msg and "train_sets[1][1]" in msg and "'mixed'" in msg and "evaluation-only" in msg


def test_a_domain_mixing_pairs_and_mos_datasets_is_refused(tmp_path, pair_folder):
    cfg = pairs_config(pair_folder)
    cfg["domains"]["mixed"].append({"dataset": "stub-dataset", "name": "stub-m"})
    with pytest.raises(ConfigError, match="domains.mixed: mixes paired-preference datasets with MOS datasets"):
        _parse(tmp_path, cfg)
    assert _parse(tmp_path, pairs_config(pair_folder)).test_domains == ["a", "mixed", "right", "reversed"]


# -- the dataset type -----------------------------------------------------------------------------

def test_check_names_missing_files_and_bad_rows(tmp_path, pair_folder):
    (pair_folder / "noisy0.png").unlink()
    problems = PairsDataset(csv=str(pair_folder / "mixed.csv")).check()
    assert len(problems) == 1 and "1 image file(s) missing" in problems[0] and "noisy0.png" in problems[0]
    assert PairsDataset(csv=str(tmp_path / "nope.csv")).check() == [f"csv: pairs CSV not found: {tmp_path / 'nope.csv'}"]
    (tmp_path / "bad.csv").write_text("better,worse\na.png,a.png\n")
    assert "the same image" in PairsDataset(csv=str(tmp_path / "bad.csv")).check()[0]
    (tmp_path / "cols.csv").write_text("good,bad\na.png,b.png\n")
    assert "missing column 'better'" in PairsDataset(csv=str(tmp_path / "cols.csv")).check()[0]


def test_with_without_layout_reads_every_naming_and_categories(tmp_path):
    root = tmp_path / "src"
    names = {"ISIC_1": ["ISIC_1_with_03.png", "ISIC_1_without_03.png", "ISIC_1_with_07.png", "ISIC_1_without_07.png"],
             "ISIC_2": ["ISIC_2_05_with.png", "ISIC_2_05_without.png", "ISIC_2_11.png"],  # a crop without partner token: not a pair
             "ISIC_3": ["ISIC_3_with.png", "ISIC_3_without.png"]}
    for folder, files in names.items():
        (root / folder).mkdir(parents=True)
        for f in files:
            _image(root / folder / f, 0.0, 0, 0)
    (tmp_path / "labels.csv").write_text("image_id,artefact_class\nISIC_1,bubble\nISIC_2,ruler\n")
    ds = PairsDataset(root=str(root), layout="with-without", categories_csv=str(tmp_path / "labels.csv"))
    assert ds.check() == []
    records = ds.load(DatasetContext(cache_dir=tmp_path))
    assert len(records) == 8
    got = {(p.better, p.worse, p.group, p.category) for p in ds.pairs}
    assert got == {("ISIC_1/ISIC_1_without_03.png", "ISIC_1/ISIC_1_with_03.png", "ISIC_1", "bubble"),
                   ("ISIC_1/ISIC_1_without_07.png", "ISIC_1/ISIC_1_with_07.png", "ISIC_1", "bubble"),
                   ("ISIC_2/ISIC_2_05_without.png", "ISIC_2/ISIC_2_05_with.png", "ISIC_2", "ruler"),
                   ("ISIC_3/ISIC_3_without.png", "ISIC_3/ISIC_3_with.png", "ISIC_3", "")}
    assert {r.mos for r in records if "without" in r.id} == {1.0} and {r.mos for r in records if "_with" in r.id and "without" not in r.id} == {0.0}
    (root / "ISIC_3" / "ISIC_3_without.png").unlink()
    problems = ds.check()
    assert len(problems) == 1 and "ISIC_3/ISIC_3_with.png (no ISIC_3/ISIC_3_without.png)" in problems[0]
    assert PairsDataset(root=str(tmp_path / "none"), layout="with-without").check() == [f"root: image folder not found: {tmp_path / 'none'}"]


# -- the real artefact pairs ------------------------------------------------------------------------

def test_piqe_and_a_stub_on_the_ham10000_artefact_pairs(tmp_path):
    if not (HAM / "artefacts" / "src").is_dir():
        pytest.skip(f"HAM10000 artefact pairs not found at {HAM} (see ../shared/data/README.md)")
    import diqa_pyiqa

    cfg = {
        "name": "ham_pairs",
        "domains": {"artefacts": [{"dataset": "pairs", "name": "ham-artefacts", "options": {
            "layout": "with-without", "root": str(HAM / "artefacts" / "src"), "categories_csv": str(HAM / "artefact_labels.csv")}}]},
        "methods": [{"name": "piqe"}, {"name": "stub-noise"}],
        "test_domains": ["artefacts"],
        "statistics": {"bootstrap": 500},
    }
    res = run_tiny_benchmark(tmp_path, cfg, plugins=[("datasets", diqa_datasets), ("pyiqa", diqa_pyiqa)])
    assert res.exit_code == 0, res.run["failed_cells"]
    info = res.run["domains"]["artefacts"]
    assert (info["kind"], info["pairs"], info["groups"]) == ("pairs", 58, 15)
    assert info["categories"] == {"bubble": 48, "ruler": 10}
    for method in ("piqe", "stub-noise"):
        m = res.metrics
        row = m[(m.method == method) & (m.statistic == "PAIR_ACC") & (m.seed == "all")].iloc[0]
        assert row.n == 58 and 0.0 <= row.ci_low <= row.value <= row.ci_high <= 1.0
    # PIQE prefers the repaired crop more often than chance, clearly so on rulers
    assert res.value("piqe", "-", "artefacts", "PAIR_ACC") > 0.5
    assert res.value("piqe", "-", "artefacts", "PAIR_ACC[ruler]") >= 0.9
    assert "## Test domain: artefacts (paired preference, evaluation only)" in res.leaderboard
    assert "58 pairs in 15 content groups (bubble: 48, ruler: 10)" in res.leaderboard
    assert len(res.scores[res.scores.method == "piqe"]) == 116
    assert json.loads((res.out / "run.json").read_text())["pair_cells"][0]["groups"] == 15
