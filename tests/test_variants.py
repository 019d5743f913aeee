"""Method variants (`variants:`), the validation phase (`splits.validation`) and the ablation table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from diqa_bench import config as cfgmod
from diqa_bench.errors import ConfigError
from diqa_bench.plan import Plan
from diqa_bench.testing import isolated_registry, run_tiny_benchmark, stub_config

ROOT = Path(__file__).resolve().parent.parent


def _parse(tmp_path: Path, data: dict) -> cfgmod.Config:
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(data))
    return cfgmod.parse(path, isolated_registry())


def test_variant_rows_are_named_from_sorted_keys_and_yaml_scalars(tmp_path):
    cfg = _parse(tmp_path, stub_config(methods=[
        {"name": "stub-noise", "options": {"jitter": 0.5}, "variants": [{"jitter": 0}, {"min_size": 4, "fail": False}, {"weights": None}]},
        {"name": "stub-linear", "label": "lin", "variants": [{"slow": True}]},
    ]))
    assert [m.label for m in cfg.methods] == ["stub-noise", "stub-noise[jitter=0]", "stub-noise[fail=false,min_size=4]",
                                              "stub-noise[weights=null]", "lin", "lin[slow=true]"]
    row = cfg.methods[2]
    assert (row.name, row.base, row.variant) == ("stub-noise", "stub-noise", {"min_size": 4, "fail": False})
    assert row.options == {"jitter": 0.5, "min_size": 4, "fail": False}  # the base's options, the variant's on top
    assert cfg.methods[0].base is None and cfg.methods[4].base is None
    assert cfgmod.variant_label("cross-domain", {"domain_weights": {"skin": 3, "natural": 1}, "loss": "l1"}) == \
        "cross-domain[domain_weights={natural: 1, skin: 3},loss=l1]"
    # validation splits: on (0.2) with variants unless the config says otherwise; off without
    assert cfg.validation == 0.2
    assert _parse(tmp_path, stub_config()).validation == 0.0
    off = stub_config(methods=[{"name": "stub-noise", "variants": [{"jitter": 1}]}])
    off["splits"]["validation"] = 0
    assert _parse(tmp_path, off).validation == 0.0


@pytest.mark.parametrize("variants, message", [
    ([{"jiter": 1}], "methods[0].variants[0]: unknown key 'jiter' (did you mean 'jitter'?)"),
    ([{"jitter": -1}], "methods[0].variants[0].jitter: -1 is less than the minimum of 0"),
    ([{"jitter": 1}, {"jitter": 1}], "methods[0].variants[1]: 'stub-noise[jitter=1]' is listed twice"),
    ([{"jitter": 0.5}], "methods[0].variants[0]: 'stub-noise[jitter=0.5]' has the base options of 'stub-noise'"),
    ([{}], "methods[0].variants[0]: {} should be non-empty"),
    (["l1"], "methods[0].variants[0]: expected object, got str 'l1'"),
])
def test_bad_variants_are_refused_in_one_line(tmp_path, variants, message):
    with pytest.raises(ConfigError) as err:
        _parse(tmp_path, stub_config(methods=[{"name": "stub-noise", "options": {"jitter": 0.5}, "variants": variants}]))
    text = str(err.value)
    assert "\n" not in text
    assert message in text, text


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "diqa_bench.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_validate_refuses_an_unknown_variant_option_of_a_real_method(tmp_path):
    data = yaml.safe_load((ROOT / "benchmarks" / "cross_domain_ablation.yaml").read_text())
    data["methods"][0]["variants"].append({"los": "l1"})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = _cli("validate", str(path))
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "\n" not in line and "unknown key 'los' (did you mean 'loss'?)" in line, proc.stderr


def test_the_ablation_config_copies_the_default_benchmark_and_validates():
    ablation = yaml.safe_load((ROOT / "benchmarks" / "cross_domain_ablation.yaml").read_text())
    default = yaml.safe_load((ROOT / "benchmarks" / "cross_domain.yaml").read_text())
    for key in ("domains", "train_sets", "test_domains", "splits", "statistics", "acceptability", "normalise_mos", "bad_input"):
        got = {k: v for k, v in ablation[key].items() if k != "validation"} if key == "splits" else ablation[key]
        assert got == default[key], key
    assert [m["name"] for m in ablation["methods"]] == ["cross-domain"]
    variants = ablation["methods"][0]["variants"]
    for option in ("loss", "features", "handcrafted", "input_policy"):
        assert any(option in v for v in variants), option
    previous = {"input_policy": "resize", "features": "multilevel", "handcrafted": "none", "loss": "mix"}
    assert previous in variants and {**previous, "handcrafted": "nss"} in variants
    proc = _cli("validate", str(ROOT / "benchmarks" / "cross_domain_ablation.yaml"))
    assert proc.returncode == 0, proc.stderr


# -- one run with variants, its validation phase and its ablation table ----------------------------------
def _ablation_config() -> dict:
    cfg = stub_config(methods=[
        {"name": "stub-noise", "options": {"jitter": 1.0}, "variants": [{"jitter": 0}]},  # the variant is strictly better
        {"name": "stub-linear", "label": "lin", "variants": [{"slow": True}]},  # trainable: fitted twice per train set and seed
    ])
    for d in ("a", "b"):  # 24 groups, 16 on the train side, 5 of them validation; at 128 px noise energy ranks them well
        cfg["domains"][d][0]["options"].update(count=96, groups=24, size=128)
    cfg["splits"]["validation"] = 0.3
    return cfg


@pytest.fixture(scope="module")
def ablation_run(tmp_path_factory):
    fits: list[tuple[str, int, str, set]] = []  # (phase, seed, train set, groups fitted on)
    original = Plan.train_samples

    def recording(self, unit):
        samples = original(self, unit)
        fits.append((unit.phase, unit.seed, unit.train_label, {s.group for s in samples}))
        return samples

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Plan, "train_samples", recording)
        result = run_tiny_benchmark(tmp_path_factory.mktemp("ablation"), _ablation_config())
    return result, fits


def test_validation_groups_are_apart_from_test_groups_and_from_the_groups_fitted_on(ablation_run):
    result, fits = ablation_run
    assert result.exit_code == 0
    test_scores = result.scores
    val_scores = pd.read_csv(result.out / "validation" / "scores.csv")
    assert set(val_scores["method"]) == set(test_scores["method"])  # every row has a validation phase
    for seed in (0, 1):
        test_groups = set(test_scores[test_scores.seed == seed]["group"])
        val_groups = set(val_scores[val_scores.seed == seed]["group"])
        for domain in ("a", "b"):
            assert {g for g in val_groups if g.startswith(f"stub-{domain}/")}, (seed, domain)
        assert not test_groups & val_groups
        val_fits = [groups for phase, s, _, groups in fits if phase == "validation" and s == seed]
        test_fits = [groups for phase, s, _, groups in fits if phase == "test" and s == seed]
        assert val_fits and test_fits
        for groups in val_fits:
            assert not groups & val_groups and not groups & test_groups
        # the test phase fits on the whole train split, validation groups included
        mixed = [g for phase, s, train, g in fits if phase == "test" and s == seed and train == "a+b"]
        assert mixed and all(val_groups <= g for g in mixed)
    # validation-phase fits have their own cache keys and stay out of the results' models/
    cache_models = list((result.out.parent / "cache" / "models").glob("*/DONE"))
    assert len(cache_models) == len(fits) == 2 * 2 * 3 * 2  # rows x train sets x seeds x phases
    assert len(list((result.out / "models").glob("*/seed*"))) == 2 * 3 * 2


def test_a_strictly_better_variant_is_better_on_validation(ablation_run):
    result, _ = ablation_run
    table = pd.read_csv(result.out / "ablation.csv", dtype={"seeds": str})
    rows = table[(table.method == "stub-noise[jitter=0]") & (table.statistic == "SROCC")]
    assert set(rows.phase) == {"validation", "test"} and set(rows.test) == {"a", "b"}
    val = rows[rows.phase == "validation"]
    assert list(val.verdict) == ["better", "better"], val[["test", "value", "ci_low", "ci_high"]]
    assert (val.value > 0).all() and (val.variant_value > val.base_value).all()
    # a variant that changes nothing the method computes: no detectable difference, on every row
    same = table[table.method == "lin[slow=true]"]
    assert len(same) and set(same.verdict) == {"no detectable difference"}
    assert set(same.train) == {"a", "b", "a+b"}
    # the validation numbers never reach the main tables
    metrics = pd.read_csv(result.out / "metrics.csv", dtype={"seed": str})
    val_metrics = pd.read_csv(result.out / "validation" / "metrics.csv", dtype={"seed": str})
    key = ["method", "train", "test", "seed", "statistic"]
    merged = metrics.merge(val_metrics, on=key, suffixes=("", "_val"))
    assert len(merged) and not (merged["value"] == merged["value_val"]).all()
    assert (result.out / "ablation.json").is_file()


def test_the_ablation_table_renders_in_the_leaderboard(ablation_run):
    result, _ = ablation_run
    text = result.leaderboard
    assert "## Ablation: variants against their base" in text
    section = text[text.index("## Ablation"):]
    assert "Choose options from the validation columns only" in section and "test columns are for reporting" in section
    assert "### stub-noise" in section and "### lin" in section
    line = next(l for l in section.splitlines() if l.startswith("| stub-noise[jitter=0] ") and "| a " in l)
    assert line.count("better") >= 1
    # variant rows are rows of the main tables too (test phase), named as in the ablation table
    assert "stub-noise[jitter=0]" in text[: text.index("## Ablation")]


def test_a_config_without_variants_gives_the_same_tables(tmp_path):
    cache = tmp_path / "cache"
    plain = stub_config(acceptability={"threshold": 3.0})
    a = run_tiny_benchmark(tmp_path / "a", plain, cache_dir=cache)
    assert "## Ablation" not in a.leaderboard and not (a.out / "validation").exists() and not (a.out / "ablation.csv").exists()
    # validation splits on: a validation phase more, the same main tables byte for byte
    with_val = stub_config(acceptability={"threshold": 3.0})
    with_val["splits"]["validation"] = 0.3
    b = run_tiny_benchmark(tmp_path / "b", with_val, cache_dir=cache)
    assert (b.out / "validation" / "metrics.csv").is_file()
    for name in ("metrics.csv", "scores.csv", "transfer.csv"):
        assert (a.out / name).read_bytes() == (b.out / name).read_bytes(), name
    # variants: the base rows keep their numbers
    with_variants = stub_config(acceptability={"threshold": 3.0}, methods=[{"name": "stub-noise", "variants": [{"jitter": 1.0}]}, {"name": "stub-linear"}])
    c = run_tiny_benchmark(tmp_path / "c", with_variants, cache_dir=cache)
    base = c.metrics[c.metrics.method.isin(["stub-noise", "stub-linear"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(base, a.metrics)
