"""Strata: statistics within each value of a per-image attribute, the worst stratum and the gap."""

import json

import numpy as np
import pytest
from test_report import write_run


def _run(folder, *, distortion=None, synthetic_bad=True, n=60, strata=("distortion", "reference_kind")):
    """One test domain of two datasets: 'photos' (40 images, 10 groups, real references) and
    'procedural' (20 images, 5 groups, synthetic). 'good' follows the MOS on both; 'patchy'
    follows it on the real references only (random on the synthetic ones, when synthetic_bad)."""
    rng = np.random.default_rng(2)
    mos = rng.uniform(1, 5, n)
    groups = [f"ref{i % 10}" if i < 40 else f"syn{i % 5}" for i in range(n)]
    good = mos + rng.normal(0, 0.3, n)
    patchy = good.copy()
    if synthetic_bad:
        patchy[40:] = rng.normal(size=n - 40)
    cells = {(name, "-", "skin", seed): scores for seed in (0, 1) for name, scores in (("good", good), ("patchy", patchy))}
    folder = write_run(folder, cells, {"skin": mos}, groups={"skin": groups},
                       datasets={"skin": [("photos", 40, False, "h1"), ("procedural", 20, False, "h2")]},
                       distortion=distortion or [["blur", "noise"][i % 2] for i in range(n)])
    info = json.loads((folder / "run.json").read_text())
    for d in info["domains"]["skin"]["datasets"]:
        d["synthetic"] = d["name"] == "procedural"
    info["config"]["strata"] = list(strata)
    (folder / "run.json").write_text(json.dumps(info))
    return folder


def test_one_stratum_gives_the_overall_statistic_and_interval(tmp_path):
    from diqa_bench.report.stored import load_run
    from diqa_bench.report.strata import strata

    run = load_run(_run(tmp_path, distortion=["blur"] * 60, strata=("distortion",)))
    table = strata(run)
    m = run.metrics
    for method in ("good", "patchy"):
        row = table[(table.method == method) & (table.stratum == "blur") & (table.statistic == "SROCC")].iloc[0]
        overall = m[(m.method == method) & (m.seed == "all") & (m.statistic == "SROCC")].iloc[0]
        assert row.value == pytest.approx(overall.value, abs=1e-12)
        assert (row.ci_low, row.ci_high) == pytest.approx((overall.ci_low, overall.ci_high), abs=1e-12)
        assert row.n == 60 and row.groups == 15
    assert not table.stratum.str.startswith("worst").any()  # one stratum: no worst, no gap


def test_the_worst_stratum_and_the_gap_find_a_method_that_fails_on_synthetic_references(tmp_path):
    from diqa_bench.report.strata import strata

    table = strata(_run(tmp_path)).query("statistic == 'SROCC' and column == 'reference_kind'").set_index(["method", "stratum"])
    assert table.loc[("patchy", "real"), "value"] > 0.9 and abs(table.loc[("patchy", "synthetic"), "value"]) < 0.5
    assert table.loc[("patchy", "worst: synthetic"), "value"] == table.loc[("patchy", "synthetic"), "value"]
    gap = table.loc[("patchy", "gap (best - worst): real - synthetic")]
    assert gap.value > 0.5 and gap.ci_low > 0  # a real gap: its interval excludes 0
    assert table.loc[("good", "real"), "value"] > 0.9 and table.loc[("good", "synthetic"), "value"] > 0.9
    # 5 synthetic groups: fewer than 10, so that stratum carries the small-data warning; 10 real groups do not
    assert table.loc[("patchy", "synthetic"), "warning"] and not table.loc[("patchy", "real"), "warning"]
    assert table.loc[("patchy", "synthetic"), "groups"] == 5 and table.loc[("patchy", "real"), "n"] == 40


def test_strata_reach_the_csv_the_leaderboard_and_the_report(tmp_path):
    import pandas as pd

    from diqa_bench.report import build_report
    from diqa_bench.results import render_leaderboard

    folder = _run(tmp_path)
    written = {p.name for p in build_report(folder)}
    assert {"strata.csv", "strata_skin.png"} <= written
    table = pd.read_csv(folder / "strata.csv")
    assert set(table.column) == {"distortion", "reference_kind"} and set(table.statistic) == {"SROCC", "PLCC"}
    md = render_leaderboard(folder, build_figures=False)
    assert "### Strata on skin: by reference_kind" in md and "| patchy @ -" in md
    section = md.split("### Strata on skin: by reference_kind")[1].split("##")[0]
    assert "synthetic (" in section and "⚠" in section
    page = (folder / "report.html").read_text()
    assert 'id="strata-skin-reference_kind"' in page and page.count("data:image/png;base64,") >= 1


def _sited_photos(rated_photos, folder):
    """The ``rated_photos`` set (conftest) with a 'site' column: even patients 'arm', odd 'face'."""
    import pandas as pd

    photos = rated_photos(folder)
    ratings = pd.read_csv(photos / "ratings.csv")
    ratings["site"] = ["arm" if int(p[1:]) % 2 == 0 else "face" for p in ratings.patient]
    ratings.to_csv(photos / "ratings.csv", index=False)
    return photos


def test_a_metadata_column_of_a_ratings_file_gives_strata(tmp_path, rated_photos):
    import diqa_datasets
    from diqa_bench.files import read_csv
    from diqa_bench.testing import run_tiny_benchmark, stub_config

    photos = _sited_photos(rated_photos, tmp_path / "photos")
    cfg = stub_config(methods=[{"name": "stub-noise"}], seeds=[0, 1], train_sets=[], test_domains=["a", "derm"], strata=["site"])
    cfg["domains"]["derm"] = [{"dataset": "derm-ratings", "options": {"root": str(photos), "ratings": "ratings.csv",
                                                                       "patient_column": "patient", "metadata_columns": ["site"]}}]
    cfg["splits"] = {"test_ratio": 0.5, "seeds": [0, 1]}
    res = run_tiny_benchmark(tmp_path / "run", cfg, plugins=[("datasets", diqa_datasets)])
    assert res.exit_code == 0
    scores = read_csv(res.out / "scores.csv", dtype={"site": str}, keep_default_na=False)
    derm = scores[scores.domain == "derm"]
    assert len(derm) and set(derm.site) == {"arm", "face"}
    assert (derm.site == ["arm" if int(g.split("/p")[1]) % 2 == 0 else "face" for g in derm.group]).all()
    assert set(scores[scores.domain == "a"].site) == {""}  # the stub dataset declares no site
    table = read_csv(res.out / "strata.csv", keep_default_na=False)
    assert set(table.test) == {"derm"} and set(table.column) == {"site"}
    assert {"arm", "face"} <= set(table.stratum) and table.stratum.str.startswith("worst: ").any()
    assert "### Strata on derm: by site" in res.leaderboard and "Strata on a" not in res.leaderboard


def test_a_strata_name_no_dataset_declares_and_a_missing_metadata_column_are_one_line(tmp_path, rated_photos):
    import diqa_datasets
    from diqa_bench.errors import ConfigError, DataError
    from diqa_bench.testing import run_tiny_benchmark, stub_config
    from diqa_datasets.derm import DermRatingsDataset
    from diqa_datasets.tabular import CsvDataset

    with pytest.raises(ConfigError, match=r"strata\[0\]: 'site' is neither") as err:
        run_tiny_benchmark(tmp_path / "run", stub_config(strata=["site"]))
    assert "\n" not in str(err.value)
    photos = _sited_photos(rated_photos, tmp_path / "photos")
    clash = stub_config(test_domains=["a", "derm"])
    clash["domains"]["derm"] = [{"dataset": "derm-ratings", "options": {"root": str(photos), "ratings": "ratings.csv", "metadata_columns": ["level"]}}]
    with pytest.raises(ConfigError, match=r"metadata_columns: 'level' is a built-in column"):
        run_tiny_benchmark(tmp_path / "clash", clash, plugins=[("datasets", diqa_datasets)])
    ds = DermRatingsDataset(root=str(photos), ratings="ratings.csv", metadata_columns=["body_site"])
    with pytest.raises(DataError, match=r"ratings\.csv: missing column 'body_site'.*found .*'site'") as err:
        ds.load(None)
    assert "\n" not in str(err.value)
    table = CsvDataset(csv=str(photos / "ratings.csv"), mos_range=[1, 5], mos_column="rating", metadata_columns=["site", "device"])
    with pytest.raises(DataError, match=r"ratings\.csv: missing column 'device' \(metadata device\); found ") as err:
        table.load(None)
    assert "\n" not in str(err.value)
