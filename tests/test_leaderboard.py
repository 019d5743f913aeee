"""Leaderboard rendering from stored results: golden file, best in bold, failed cells, `report`."""

import html
import os
from pathlib import Path

import pandas as pd
import pytest

from diqa_bench import cli, stats
from diqa_bench.leaderboard import leaderboard_rows, render_markdown, render_terminal
from diqa_bench.tables import METRIC_COLUMNS

GOLDEN = Path(__file__).parent / "golden" / "leaderboard_stub.md"
NAN = float("nan")

# (method, train, test, statistic, value, ci_low, ci_high, n); seed "all" unless a 9th item is given
ROWS = [
    # test domain a: beta @ a has the best correlations, alpha @ - the lowest RMSE
    ("alpha", "-", "a", "SROCC", 0.71, 0.60, 0.80, 30),
    ("alpha", "-", "a", "PLCC", 0.74, 0.65, 0.82, 30),
    ("alpha", "-", "a", "KRCC", 0.52, 0.44, 0.60, 30),
    ("alpha", "-", "a", "RMSE", 0.41, 0.35, 0.48, 30),
    ("alpha", "-", "a", "PLCC_raw", 0.70, 0.61, 0.79, 30),
    ("alpha", "-", "a", "AUC", 0.88, 0.80, 0.94, 30),
    ("alpha", "-", "a", "ACC", 0.80, 0.72, 0.87, 30),
    ("alpha", "-", "a", "RETAKE", 0.25, 0.18, 0.33, 30),
    ("alpha", "-", "a", "ACC_ACCEPT_ALL", 0.85, 0.77, 0.92, 30),
    # accepting every photo is significantly more accurate than alpha's gate: the gain's interval is below 0
    ("alpha", "-", "a", "ACC_GAIN", -0.05, -0.09, -0.01, 30),
    ("alpha", "-", "a", "THRESHOLD", 2.5, NAN, NAN, 30),
    # beta @ a+b's gate is less accurate than accepting all too, but not significantly: no ‡
    ("beta", "a+b", "a", "AUC", 0.86, 0.78, 0.92, 30),
    ("beta", "a+b", "a", "ACC", 0.84, 0.77, 0.90, 30),
    ("beta", "a+b", "a", "RETAKE", 0.10, 0.05, 0.16, 30),
    ("beta", "a+b", "a", "ACC_ACCEPT_ALL", 0.85, 0.77, 0.92, 30),
    ("beta", "a+b", "a", "ACC_GAIN", -0.01, -0.04, 0.02, 30),
    ("beta", "a", "a", "SROCC", 0.93, 0.88, 0.96, 30),
    ("beta", "a", "a", "PLCC", 0.95, 0.91, 0.97, 30),
    ("beta", "a", "a", "KRCC", 0.79, 0.72, 0.85, 30),
    ("beta", "a", "a", "RMSE", 0.55, 0.47, 0.62, 30),
    ("beta", "a+b", "a", "SROCC", 0.85, 0.78, 0.90, 30),
    ("beta", "a+b", "a", "PLCC", NAN, NAN, NAN, 30),
    ("beta", "a+b", "a", "KRCC", 0.66, 0.58, 0.73, 30),
    ("beta", "a+b", "a", "RMSE", 0.62, 0.55, 0.70, 30),
    # a per-seed row the tables must ignore (they show the across-seed aggregate)
    ("beta", "a", "a", "SROCC", -0.99, -1.0, -0.9, 30, "0"),
    # test domain b: a backwards method (negative SROCC is kept) and ties for best
    ("alpha", "-", "b", "SROCC", -0.35, -0.50, -0.20, 20),
    ("alpha", "-", "b", "PLCC", 0.40, 0.20, 0.55, 20),
    ("alpha", "-", "b", "KRCC", -0.25, -0.38, -0.12, 20),
    ("alpha", "-", "b", "RMSE", 0.90, 0.80, 1.00, 20),
    ("beta", "a", "b", "SROCC", 0.60, 0.45, 0.72, 20),
    ("beta", "a", "b", "PLCC", 0.40, 0.22, 0.56, 20),
    ("beta", "a", "b", "KRCC", 0.45, 0.33, 0.55, 20),
    ("beta", "a", "b", "RMSE", 0.70, 0.60, 0.80, 20),
]

CELLS = [
    {"method": "alpha", "train": "-", "test": "a", "seed": 0, "status": "ok", "reason": "", "n": 30, "groups": 10, "mapping": "logistic4"},
    {"method": "beta", "train": "a", "test": "a", "seed": 0, "status": "ok", "reason": "", "n": 30},
    {"method": "beta", "train": "a+b", "test": "a", "seed": 0, "status": "ok", "reason": "", "n": 30},
    # one seed of beta @ a -> b failed, another succeeded: the row shows numbers, not the failure
    {"method": "beta", "train": "a", "test": "b", "seed": 0, "status": "ok", "reason": "", "n": 20, "groups": 4, "mapping": "linear (n = 9 < 10)"},
    {"method": "beta", "train": "a", "test": "b", "seed": 1, "status": "failed", "reason": "RuntimeError: flaky", "n": 0},
    {"method": "gamma", "train": "-", "test": "a", "seed": 0, "status": "not run", "reason": "missing weights file gamma.pth: put it in the weights folder", "n": 0},
    {"method": "gamma", "train": "-", "test": "b", "seed": 0, "status": "not run", "reason": "missing weights file gamma.pth: put it in the weights folder", "n": 0},
    {"method": "delta", "train": "b", "test": "b", "seed": 0, "status": "failed", "reason": "RuntimeError: CUDA out of memory", "n": 0},
]


STD = {("beta", "a", "a", "SROCC"): 0.04, ("alpha", "-", "a", "SROCC"): 0.12,  # spread over seeds
       ("alpha", "-", "a", "ACC"): 0.03, ("alpha", "-", "a", "ACC_ACCEPT_ALL"): 0.02, ("beta", "a+b", "a", "ACC_ACCEPT_ALL"): 0.02}
GROUPS = {"a": 10, "b": 4}  # content groups per seed


def golden_metrics() -> pd.DataFrame:
    rows = []
    for r in ROWS:
        seed = r[8] if len(r) > 8 else "all"
        std = STD.get((r[0], r[1], r[2], r[3]), NAN) if seed == "all" else NAN
        rows.append(dict(zip(METRIC_COLUMNS, [r[0], r[1], r[2], seed, r[3], r[4], r[5], r[6], r[7], std, GROUPS[r[2]]])))
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def golden_transfer() -> pd.DataFrame:
    from diqa_bench.report.transfer import COLUMNS

    base = dict(method="beta", train="a+b", reference_train="a", n_images=30, n_groups=10, seeds="0 1", comparison="mixed vs single", p_value=0.01)
    rows = [dict(base, test="a", statistic="SROCC", value=-0.08, ci_low=-0.12, ci_high=-0.03, verdict="worse", train_value=0.85, reference_value=0.93, warning=""),
            dict(base, test="a", statistic="PLCC", value=0.01, ci_low=-0.02, ci_high=0.04, verdict="no detectable difference", train_value=0.96,
                 reference_value=0.95, warning=""),
            dict(base, test="b", statistic="SROCC", value=0.10, ci_low=0.02, ci_high=0.2, verdict="better", train_value=0.7, reference_value=0.6,
                 n_images=20, n_groups=4, warning="too little data")]
    return pd.DataFrame(rows, columns=COLUMNS)


def golden_run_info() -> dict:
    return {
        "name": "golden",
        "config_path": "benchmarks/golden.yaml",
        "config_hash": "0123456789abcdef",
        "config": {"test_domains": ["a", "b"]},
        "finished_at": "2026-01-01T00:00:00+00:00",
        "environment": {"diqa_bench": "0.1.0", "device": "cpu"},
        "domains": {
            "a": {"datasets": [{"name": "stub-a", "type": "stub-dataset", "images": 90}], "pseudo_mos": True, "synthetic": False},
            "b": {"datasets": [{"name": "stub-b", "type": "stub-dataset", "images": 60}], "pseudo_mos": True, "synthetic": True},
        },
        "protocol": {"test_ratio": 0.34, "seeds": [0, 1], "use_split_column": True, "bootstrap": 200, "confidence": 0.95,
                     "stats_seed": 0, "normalise_mos": "range", "bad_input": "skip", "acceptability": 3.0},
        "skipped": [{"dataset": "stub-a", "image": "img0007", "reason": "stub-noise: score is NaN or infinite"}],
        "cells": CELLS,
        "failed_cells": [c for c in CELLS if c["status"] != "ok"],
    }


def test_markdown_matches_golden_file():
    text = render_markdown(golden_metrics(), golden_run_info(), transfer=golden_transfer())
    if os.environ.get("DIQA_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text)
    assert GOLDEN.is_file(), f"{GOLDEN} is missing: run with DIQA_UPDATE_GOLDEN=1 to create it"
    assert text == GOLDEN.read_text(), "leaderboard changed: review it, then DIQA_UPDATE_GOLDEN=1 pytest tests/test_leaderboard.py"


def _table(test, markdown=True):
    header, rows = leaderboard_rows(golden_metrics(), golden_run_info(), test, markdown=markdown)
    return header, {row[0]: dict(zip(header, row)) for row in rows}, rows


def test_header_has_arrows_and_acceptability_columns_only_when_present():
    header_a, _, _ = _table("a")
    assert header_a == ["Method @ train set", "SROCC ↑", "PLCC ↑", "KRCC ↑", "RMSE ↓", "AUC (reject) ↑", "Accuracy ↑",
                        "ΔAccuracy vs accept all ↑", "Retake rate ↓", "n (groups) × seeds"]
    header_b, _, _ = _table("b")
    assert header_b == ["Method @ train set", "SROCC ↑", "PLCC ↑", "KRCC ↑", "RMSE ↓", "n (groups) × seeds"]


def test_best_values_are_bold_by_direction():
    _, t, rows = _table("a")
    assert t["beta @ a"]["SROCC ↑"] == "**0.930 ± 0.040 [0.880, 0.960]**"  # mean ± std over seeds [CI]
    assert t["beta @ a"]["PLCC ↑"].startswith("**")
    assert not t["alpha @ -"]["SROCC ↑"].startswith("**")
    # RMSE is lower-is-better: the minimum is bold, not the maximum
    assert t["alpha @ -"]["RMSE ↓"] == "**0.410 [0.350, 0.480]**"
    assert not t["beta @ a+b"]["RMSE ↓"].startswith("**")
    assert not t["beta @ a"]["RMSE ↓"].startswith("**")
    # a NaN is shown as n/a and never wins
    assert t["beta @ a+b"]["PLCC ↑"] == "n/a"
    assert t["beta @ a"]["AUC (reject) ↑"] == "n/a"
    assert t["alpha @ -"]["AUC (reject) ↑"] == "**0.880 [0.800, 0.940]**"
    # rows sorted by SROCC, best first, then the "accept all" reference, failed cells last
    assert [r[0] for r in rows] == ["beta @ a", "beta @ a+b", "alpha @ -", "accept all (no gate)", "gamma @ -"]
    assert [t["accept all (no gate)"][c] for c in ("AUC (reject) ↑", "Accuracy ↑", "ΔAccuracy vs accept all ↑", "Retake rate ↓", "SROCC ↑")] == \
        ["0.500", "0.850 ± 0.020 [0.770, 0.920]", "", "0.000", ""]
    assert t["beta @ a+b"]["n (groups) × seeds"] == "30 (10) × 1" and t["alpha @ -"]["n (groups) × seeds"] == "30 (10) × 1"


def test_gate_columns_carry_intervals_and_the_mark_needs_significance():
    _, t, _ = _table("a")
    # same style as the correlations: mean ± spread over seeds [interval]; the gain is a signed difference
    assert t["alpha @ -"]["Retake rate ↓"] == "0.250 [0.180, 0.330]"
    assert t["beta @ a+b"]["Retake rate ↓"] == "**0.100 [0.050, 0.160]**"
    assert t["alpha @ -"]["ΔAccuracy vs accept all ↑"] == "-0.050 [-0.090, -0.010]"
    assert t["beta @ a+b"]["ΔAccuracy vs accept all ↑"] == "**-0.010 [-0.040, +0.020]**"
    # alpha's gate is significantly less accurate than accepting every photo: marked
    assert t["alpha @ -"]["Accuracy ↑"] == "0.800 ± 0.030 [0.720, 0.870] ‡"
    # beta @ a+b's point estimate is below accepting all too, but its interval reaches above 0: no mark
    assert t["beta @ a+b"]["Accuracy ↑"] == "**0.840 [0.770, 0.900]**"
    md = render_markdown(golden_metrics(), golden_run_info())
    assert "‡ significantly less accurate than accepting every photo" in md and "point estimates" not in md.split("## Protocol")[0]


def test_without_a_gain_interval_the_mark_compares_point_estimates():
    """Results stored before ACC_GAIN existed (or with bootstrap 0): ‡ falls back to the point
    estimates, and the legend says so."""
    m = golden_metrics()
    old = m[m.statistic != "ACC_GAIN"]
    _, rows = leaderboard_rows(old, golden_run_info(), "a")
    t = {row[0]: row for row in rows}
    assert t["alpha @ -"][6].endswith(" ‡") and t["beta @ a+b"][6].endswith(" ‡")
    assert "point estimates, no interval" in render_markdown(old, golden_run_info())
    no_ci = m.copy()
    no_ci.loc[no_ci.statistic == "ACC_GAIN", ["ci_low", "ci_high"]] = NAN
    _, rows = leaderboard_rows(no_ci, golden_run_info(), "a")
    assert {row[0] for row in rows if " ‡" in row[6]} == {"alpha @ -", "beta @ a+b"}


def test_ties_are_all_bold_and_negative_correlations_kept():
    _, t, _ = _table("b")
    assert t["alpha @ -"]["PLCC ↑"].startswith("**") and t["beta @ a (1 of 2 seeds)"]["PLCC ↑"].startswith("**")
    assert t["alpha @ -"]["SROCC ↑"] == "-0.350 [-0.500, -0.200]"
    assert t["beta @ a (1 of 2 seeds)"]["RMSE ↓"].startswith("**")


def test_failed_cells_show_their_reason():
    _, t, _ = _table("a")
    # long reasons are cut in the table and given in full under it
    assert t["gamma @ -"]["SROCC ↑"] == "not run: missing weights file gamma.pth: put it in the weig…"
    md = render_markdown(golden_metrics(), golden_run_info())
    assert "- gamma @ - (seed 0): not run: missing weights file gamma.pth: put it in the weights folder" in md
    _, t, _ = _table("b")
    assert t["delta @ b"]["SROCC ↑"] == "failed: RuntimeError: CUDA out of memory"
    # beta @ a has one successful seed: it shows numbers, says so, and the flaky seed is not a row of its own
    assert t["beta @ a (1 of 2 seeds)"]["n (groups) × seeds"] == "20 (4) × 1"
    assert [label for label in t if label.startswith("beta @ a ")] == ["beta @ a (1 of 2 seeds)"]


def test_terminal_rendering_has_no_markdown_bold():
    text = render_terminal(golden_metrics(), golden_run_info())
    assert "**" not in text
    assert "Test domain: a (pseudo-MOS)" in text and "0.930 ± 0.040 [0.880, 0.960]" in text
    assert "⚠ Warning: too little data" in text.split("Test domain: b")[1]


def test_empty_results_render_without_tables():
    info = golden_run_info()
    info["cells"] = info["failed_cells"] = []
    text = render_markdown(pd.DataFrame(columns=METRIC_COLUMNS), info)
    assert text.count("_No results for this domain._") == 2
    assert "## Protocol" in text


@pytest.mark.usefixtures("no_entry_point_plugins")
@pytest.mark.filterwarnings("ignore:report figures not written")  # scores.csv is deleted on purpose
def test_report_rerenders_identically_without_recomputing(tmp_path, monkeypatch, capsys):
    from diqa_bench.testing import run_tiny_benchmark, stub_config

    cfg = stub_config(methods=[{"name": "stub-noise"}, {"name": "stub-noise", "label": "broken", "options": {"fail": True}}], seeds=[0], train_sets=[])
    cfg["statistics"] = {"bootstrap": 50}
    res = run_tiny_benchmark(tmp_path, cfg)
    original = res.leaderboard
    assert "failed: RuntimeError: stub failure on purpose" in original
    (res.out / "scores.csv").unlink()
    (res.out / "LEADERBOARD.md").unlink()

    def no_recompute(*args, **kw):
        raise AssertionError("report must not recompute statistics")

    monkeypatch.setattr(stats, "evaluate", no_recompute)
    assert cli.main(["report", str(res.out)]) == 0
    assert (res.out / "LEADERBOARD.md").read_text() == original
    out = capsys.readouterr().out
    assert "Test domain: a" in out and "Re-rendered" in out


def test_report_on_a_folder_without_results_is_a_usage_error(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "no metrics.csv here" in capsys.readouterr().err


def test_protocol_says_when_jpegs_were_decoded_by_nvjpeg():
    from diqa_bench.leaderboard import protocol_lines

    plain = protocol_lines({"protocol": {"seeds": [0], "decoder": "pil"}})
    gpu = protocol_lines({"protocol": {"seeds": [0], "decoder": "nvjpeg"}})
    assert not any("nvJPEG" in line for line in plain)
    assert [line for line in gpu if line not in plain] == [next(line for line in gpu if "nvJPEG" in line)]


def test_little_data_warning_transfer_table_and_linear_mappings_are_shown():
    md = render_markdown(golden_metrics(), golden_run_info(), transfer=golden_transfer())
    a, b = md.split("## Test domain: b")
    assert "Warning" not in a.split("## Protocol")[0]
    warning = b.index("> **⚠ Warning: too little data: 4 content groups and 20 test images")
    assert warning < b.index("| Method @ train set")  # above the table
    # transfer tables under their domains; a verdict from the small domain carries the warning
    assert "### Transfer on a" in a and "| beta     | a+b         | a              | mixed vs single | -0.080 [-0.120, -0.030]" in a
    assert "| worse           | no detectable difference |" in a
    assert "| better ⚠ " in b and "these verdicts come from a test domain with too little data" in b
    assert "- beta @ a (seed 0): linear (n = 9 < 10)" in b
    assert "‡ significantly less accurate than accepting every photo" in a


def test_report_html_explains_the_gate_mark_as_leaderboard_md_does(tmp_path):
    import pandas as pd

    from diqa_bench.leaderboard import gate_legend
    from diqa_bench.report.html import render
    from diqa_bench.report.stored import StoredRun

    run = StoredRun(tmp_path, golden_metrics(), pd.DataFrame(), golden_run_info())
    page = render(run, {}, None, None)
    _, rows = leaderboard_rows(golden_metrics(), golden_run_info(), "a", markdown=False)
    legend = gate_legend(golden_metrics(), "a", rows)
    assert legend and legend.startswith("‡ significantly less accurate than accepting every photo")
    assert html.escape(legend) in page
    assert gate_legend(golden_metrics(), "a", [[c.replace(" ‡", "") for c in row] for row in rows]) is None  # no mark, no legend
