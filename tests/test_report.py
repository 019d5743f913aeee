"""Reports (figures, per-distortion table, significance, report.html) built from stored results only.

``write_run`` writes a results folder by hand (scores.csv, metrics.csv, run.json) so that tests
control every prediction; the other report tests import it from here.
"""

import html
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diqa_bench import stats
from diqa_bench.errors import UserError
from diqa_bench.tables import METRIC_COLUMNS, SCORE_COLUMNS


def write_run(folder: Path, cells: dict, mos: dict, *, lower_better=(), datasets=None, failed=(), distortion=None, level=None,
              config_hash="cfg-a", bootstrap=200, environment=None, groups=None, train_sets=None, acceptability=None,
              thresholds=None) -> Path:
    """A stored run. ``cells``: {(method, train, test, seed): scores}; ``mos``: {test: MOS array},
    images ``img000``... in that order; ``lower_better``: method labels that are lower-is-better;
    ``datasets``: {test: [(dataset name, n images, lower_better, content hash)]} splitting the
    domain's images into consecutive datasets (default: one dataset per domain); ``failed``:
    (method, train, test) entries stored as failed cells with no scores; ``groups``: {test: content
    group per image} (default: none stored, each image its own group); ``acceptability``: the MOS
    threshold, which adds the gate statistics and THRESHOLD rows as compute_metrics stores them, at
    ``thresholds[cell key]`` (method units; default: the best cut on the cell's own scores, a
    shortcut for hand-built runs that have no train split)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    datasets = datasets or {t: [(f"ds-{t}", len(m), False, f"hash-{t}")] for t, m in mos.items()}
    owner = {t: [name for name, n, _, _ in sets for _ in range(n)] for t, sets in datasets.items()}
    dmos = {name: low for sets in datasets.values() for name, _, low, _ in sets}
    score_rows, metric_rows, boots = [], [], {}
    for (method, train, test, seed), scores in cells.items():
        scores = np.asarray(scores, float)
        m = np.asarray(mos[test], float)
        names = owner[test]
        one_set = len(set(names)) == 1
        # As metrics.eval_mos: raw MOS on a one-dataset domain, range-normalised (1-5) on a mixed one.
        eval_mos = m if one_set else np.array([(6 - v if dmos[n] else v) - 1 for v, n in zip(m, names)]) / 4
        labels = (groups or {}).get(test)
        bad = cut = None
        if acceptability is not None:
            bad = stats.unacceptable(m, acceptability, [dmos[n] for n in names])
            cut = (thresholds or {}).get((method, train, test, seed))
            cut = stats.gate_threshold(scores, bad, lower_better=method in lower_better) if cut is None else cut
        cell = stats.evaluate(scores, eval_mos, groups=labels, lower_better=method in lower_better, mos_lower_better=one_set and dmos[names[0]],
                              bootstrap=bootstrap, rng=stats.seed_rng(0, seed), bad=bad, cut=cut)
        for name in cell.values:
            lo, hi = cell.ci[name]
            metric_rows.append(dict(method=method, train=train, test=test, seed=str(seed), statistic=name, value=cell.values[name],
                                    ci_low=lo, ci_high=hi, n=cell.n, std=np.nan, groups=cell.n_groups))
            boots.setdefault((method, train, test, name), []).append((cell.values[name], cell.boot[name], cell.n, cell.n_groups))
        if cut is not None:
            metric_rows.append(dict(method=method, train=train, test=test, seed=str(seed), statistic="THRESHOLD", value=cut,
                                    ci_low=np.nan, ci_high=np.nan, n=cell.n, std=np.nan, groups=cell.n_groups))
        for i, (s, v) in enumerate(zip(scores, m)):
            score_rows.append(dict(image=f"img{i:03d}", dataset=names[i], domain=test, method=method, train=train, seed=seed, score=s, mos=v,
                                   mos_norm=((6 - v if dmos[names[i]] else v) - 1) / 4, group="" if labels is None else labels[i],
                                   distortion="" if distortion is None else distortion[i], level="" if level is None else level[i],
                                   path=f"/nowhere/img{i:03d}.png"))
    for (method, train, test, name), parts in boots.items():
        lo, hi = stats.pooled_ci([p[1] for p in parts])
        values = [p[0] for p in parts]
        metric_rows.append(dict(method=method, train=train, test=test, seed="all", statistic=name, value=float(np.mean(values)), ci_low=lo,
                                ci_high=hi, n=parts[0][2], std=float(np.std(values, ddof=1)) if len(values) > 1 else np.nan,
                                groups=parts[0][3]))
    pd.DataFrame(score_rows, columns=SCORE_COLUMNS).to_csv(folder / "scores.csv", index=False)
    pd.DataFrame(metric_rows, columns=METRIC_COLUMNS).to_csv(folder / "metrics.csv", index=False)
    n_groups = {t: len(set(g)) for t, g in (groups or {}).items()}
    run_cells = [dict(method=m, train=tr, test=te, seed=s, status="ok", reason="", n=len(v), lower_better=m in lower_better,
                      groups=n_groups.get(te, len(v))) for (m, tr, te, s), v in cells.items()]
    run_cells += [dict(method=m, train=tr, test=te, seed=0, status="failed", reason="stub failure on purpose", n=0, lower_better=False)
                  for m, tr, te in failed]
    env = {"diqa_bench": "0.1.0", "torch": "2.14.1", "pyiqa": "0.1.16", "device": "cpu", "gpu": None,
           "machine": {"platform": "Linux", "processor": "x86_64", "cpus": 2}, "git": {"commit": "abc", "dirty": False}}
    env.update(environment or {})
    run_info = {
        "name": "handmade", "config_hash": config_hash, "config_path": "bench.yaml",
        "config": {"test_domains": list(mos), **({"train_sets": train_sets} if train_sets else {})},
        "environment": env,
        "protocol": {"test_ratio": 0.3, "seeds": sorted({k[3] for k in cells}), "bootstrap": bootstrap, "confidence": 0.95, "stats_seed": 0,
                     "normalise_mos": "range", "bad_input": "skip", "acceptability": acceptability, "use_split_column": True,
                     "resampling": "content groups"},
        "domains": {t: {"datasets": [dict(name=n, type="handmade", images=k, content_hash=h, error=None, mos_range=[1.0, 5.0],
                                          pseudo_mos=False, lower_better=low) for n, k, low, h in sets],
                        "pseudo_mos": False, "synthetic": True} for t, sets in datasets.items()},
        "skipped": [], "cells": run_cells, "failed_cells": [c for c in run_cells if c["status"] != "ok"],
    }
    (folder / "run.json").write_text(json.dumps(run_info, indent=1))
    return folder


_BUILT: dict = {}  # session-wide: the fixtures below are imported by other test modules too


def _once(key: str, make):
    """Build a shared fixture once per session, whichever module asks first (a fixture function
    imported into another module would otherwise be a second fixture, built again)."""
    if key not in _BUILT:
        _BUILT[key] = make()
    return _BUILT[key]


def png_size(path: Path) -> tuple[int, int]:
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def mixed_run(folder: Path) -> Path:
    """Two test domains; 'skin' mixes a MOS and a DMOS dataset; a lower-is-better method; a failed
    entry; long train-set labels; distortion labels."""
    rng = np.random.default_rng(3)
    n = 40
    mos = {"skin": rng.uniform(1, 5, n), "natural": rng.uniform(1, 5, n)}
    quality = {t: np.where(np.arange(n) < 25, m, 6 - m) for t, m in mos.items()}  # skin's 15 last images are DMOS
    quality["natural"] = mos["natural"]
    cells = {}
    for seed in (0, 1):
        for test in mos:
            cells[("brisque", "-", test, seed)] = -quality[test] + rng.normal(0, 0.8, n)  # lower is better
            for train in ("skin", "natural", "skin+natural"):
                cells[("cross-domain", train, test, seed)] = quality[test] + rng.normal(0, 0.3 if train == "skin+natural" else 1.0, n)
    return write_run(folder, cells, mos, lower_better={"brisque"},
                     datasets={"skin": [("derm-mos", 25, False, "h1"), ("derm-dmos", 15, True, "h2")], "natural": [("koniq", n, False, "h3")]},
                     failed=[("musiq", "-", "skin"), ("musiq", "-", "natural")],
                     distortion=[["blur", "noise", "jpeg compression", "defocus"][i % 4] for i in range(n)], level=[str(1 + i % 3) for i in range(n)])


def test_stored_cells_reproduce_stored_srocc_with_direction_and_mixed_domains(tmp_path):
    from diqa_bench.report.stored import load_run, srocc

    run = load_run(mixed_run(tmp_path))
    m = run.metrics
    for (method, train, test, seed), cell in run.cells().items():
        stored = m[(m.method == method) & (m.train == train) & (m.test == test) & (m.seed == seed) & (m.statistic == "SROCC")].value.iloc[0]
        assert srocc(cell.aligned_score, cell.eval_mos) == pytest.approx(stored, abs=1e-9)
    assert m[(m.method == "brisque") & (m.seed == "all") & (m.statistic == "SROCC")].value.min() > 0.5  # negated, not abs()


@pytest.fixture(scope="session")
def mixed_report(tmp_path_factory):
    """The results folder of ``mixed_run`` with its report built (shared with the Chromium test)."""
    from diqa_bench.report import build_report

    def make():
        folder = mixed_run(tmp_path_factory.mktemp("mixed") / "results")
        (folder / "written.txt").write_text("\n".join(str(p) for p in build_report(folder)))
        return folder

    return _once("mixed_report", make)


def test_build_report_from_handmade_run(mixed_report):
    folder = mixed_report
    written = [Path(p) for p in (folder / "written.txt").read_text().splitlines()]
    names = {p.name for p in written}
    assert {"transfer_srocc.png", "transfer_deltas.png", "scatter_skin.png", "scatter_natural.png", "per_distortion_skin.png",
            "per_distortion.csv", "significance.csv", "transfer.csv", "transfer.json", "report.html"} <= names
    for p in written:
        if p.suffix == ".png":
            w, h = png_size(p)
            assert 300 < w < 4000 and 200 < h < 4000, (p.name, w, h)
    table = pd.read_csv(folder / "per_distortion.csv")
    assert set(table["by"]) == {"distortion", "level"}
    assert set(table[table.by == "distortion"]["group"]) == {"blur", "noise", "jpeg compression", "defocus"}
    assert table["SROCC"].notna().all()
    assert (table[table.by == "distortion"]["n"] == 10).all()
    page = (folder / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 6
    assert 'id="transfer-skin"' in page and "Does the train set matter?" in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch: opens offline
    assert "failed: stub failure on purpose" in page
    assert "synthetic images" in page


def test_transfer_table_of_the_handmade_run(mixed_report):
    """cross-domain was trained on skin, natural and skin+natural; skin+natural's predictions are
    much less noisy (0.3 vs 1.0), so mixed training is better than each single domain."""
    import json

    table = pd.read_csv(mixed_report / "transfer.csv", dtype={"seeds": str}, keep_default_na=False)
    assert list(table.columns[:12]) == ["method", "test", "train", "reference_train", "statistic", "value", "ci_low", "ci_high",
                                        "n_images", "n_groups", "seeds", "verdict"]
    assert set(table.method) == {"cross-domain"}  # zero-shot methods have no train set to compare
    skin = table[table.test == "skin"]
    pairs = set(zip(skin.train, skin.reference_train, skin.comparison))
    assert pairs == {("skin+natural", "skin", "mixed vs single"), ("skin+natural", "natural", "mixed vs single"),
                     ("natural", "skin", "transfer loss")}
    assert set(skin.statistic) == {"SROCC", "PLCC"} and (skin.seeds == "0 1").all() and (skin.n_images == 40).all()
    mixed = table[table.comparison == "mixed vs single"]
    assert (mixed.verdict == "better").all() and (mixed.ci_low > 0).all() and (mixed.value > 0).all()
    for r in table.itertuples():
        assert r.ci_low <= r.value <= r.ci_high
        assert r.value == pytest.approx(r.train_value - r.reference_value, abs=1e-9)
    rows = json.loads((mixed_report / "transfer.json").read_text())
    assert len(rows) == len(table) and rows[0]["seeds"] == [0, 1]
    # Holm within each test domain and statistic: 3 comparisons per family, never below the raw p
    assert (table.family_size == 3).all() and (table.adjust == "holm").all() and (table.p_adjusted >= table.p_value).all()
    for r in table.itertuples():
        assert r.verdict == stats.adjusted_verdict(r.ci_low, r.ci_high, r.p_adjusted)


def test_transfer_verdicts_without_adjustment_are_the_intervals(mixed_report):
    from diqa_bench.report.transfer import transfer

    raw = transfer(mixed_report, adjust="none")
    assert (raw.p_adjusted == raw.p_value).all()
    assert list(raw.verdict) == [stats.verdict(lo, hi) for lo, hi in zip(raw.ci_low, raw.ci_high)]


def test_report_without_distortion_labels_has_no_breakdown(tmp_path):
    from diqa_bench.report import build_report

    rng = np.random.default_rng(0)
    mos = {"skin": rng.uniform(1, 5, 20)}
    folder = write_run(tmp_path, {("a", "-", "skin", 0): mos["skin"] + rng.normal(0, 1, 20), ("b", "-", "skin", 0): rng.normal(size=20)}, mos)
    names = {p.name for p in build_report(folder)}
    assert "per_distortion.csv" not in names and not any(n.startswith("per_distortion") for n in names)
    assert {"transfer_srocc.png", "scatter_skin.png", "report.html"} <= names


def test_report_needs_a_results_folder_and_directions(tmp_path):
    from diqa_bench.report import build_report

    with pytest.raises(UserError, match="no metrics.csv"):
        build_report(tmp_path)
    folder = mixed_run(tmp_path / "run")
    info = json.loads((folder / "run.json").read_text())
    for c in info["cells"]:
        del c["lower_better"]
    (folder / "run.json").write_text(json.dumps(info))
    with pytest.raises(UserError, match="lower_better"):
        build_report(folder)


@pytest.fixture(scope="session")
def stub_runs(tmp_path_factory):
    """Two real (stub) benchmark runs whose configs differ only in the bootstrap size; the second
    reuses the first one's score cache, so both scored the same images with the same scores. One
    split seed and two train sets keep them quick. Shared with test_compare."""
    from diqa_bench.testing import run_tiny_benchmark, stub_config

    def make():
        tmp = tmp_path_factory.mktemp("stub-runs")
        with pytest.MonkeyPatch.context() as mp:  # a module-scoped fixture: no monkeypatch fixture here
            mp.setenv("DIQA_BENCH_PLUGINS", "")  # the stub plugins alone
            common = dict(seeds=[0], train_sets=[["a"], ["a", "b"]])
            for name, size in (("a", 50), ("b", 60)):
                (tmp / name).mkdir()
                run_tiny_benchmark(tmp / name, stub_config(statistics={"bootstrap": size}, **common), cache_dir=tmp / "cache")
        return tmp / "a" / "results", tmp / "b" / "results"

    return _once("stub_runs", make)


def test_report_rerenders_from_stored_results_without_running_a_method(stub_runs, tmp_path, monkeypatch):
    import diqa_bench.images
    from diqa_bench.methods import Method
    from diqa_bench.report import build_report
    from diqa_bench.report.significance import significance
    from diqa_bench.testing import StubLinear, StubNoise

    def refuse(*args, **kwargs):
        raise AssertionError("the report ran a method or decoded an image")

    for owner, name in [(StubNoise, "score_batch"), (StubLinear, "score_batch"), (StubLinear, "fit"), (Method, "setup"), (diqa_bench.images, "decode")]:
        monkeypatch.setattr(owner, name, refuse)
    # A copy of the stored tables alone: no fitted models, no cache next to it.
    folder = tmp_path / "results"
    shutil.copytree(stub_runs[0], folder, ignore=shutil.ignore_patterns("models", "figures", "report.html"))
    before = {p: p.read_bytes() for p in (folder / "scores.csv", folder / "metrics.csv", folder / "run.json")}
    written = build_report(folder)
    assert (folder / "figures" / "transfer_srocc.png") in written and (folder / "report.html") in written
    assert {p.name for p in written} >= {"scatter_a.png", "scatter_b.png", "per_distortion_a.png", "per_distortion.csv"}
    assert all(p.read_bytes() == data for p, data in before.items())  # stored results untouched
    sig = pd.read_csv(folder / "significance.csv", dtype={"seed": str})
    assert set(sig["test"]) == {"a", "b"} and (sig["seed"] == "all").any()
    pd.testing.assert_frame_equal(significance(folder), significance(folder))  # seeded: re-rendering gives the same tables


def test_cached_report_restores_tables_and_figures_and_renders_a_new_page(tmp_path, monkeypatch):
    """A report cache entry (diqa_bench.derived) gives the same tables and figures without drawing
    anything; report.html is rendered again."""
    import shutil

    from diqa_bench.report import build_report
    from diqa_bench.report import figures as fig

    first = mixed_run(tmp_path / "first")
    entry = tmp_path / "cache" / "derived" / "report" / "k"
    built = {p.relative_to(first): p.read_bytes() for p in build_report(first, entry) if p.name != "report.html"}
    second = tmp_path / "second"
    shutil.copytree(first, second, ignore=shutil.ignore_patterns("figures", "*.png", "significance.csv", "transfer.*", "per_distortion.csv", "report.html"))
    monkeypatch.setattr(fig, "scatter_grid", lambda *a, **k: pytest.fail("a cached report draws nothing"))
    restored = build_report(second, entry)
    assert {p.relative_to(second): p.read_bytes() for p in restored if p.name != "report.html"} == built
    assert (second / "report.html").stat().st_size > 1000


def _screened_run(folder: Path, screening: dict | None) -> Path:
    rng = np.random.default_rng(0)
    mos = {"skin": rng.uniform(1, 5, 20)}
    folder = write_run(folder, {("a", "-", "skin", 0): mos["skin"] + rng.normal(0, 1, 20)}, mos)
    if screening is not None:
        info = json.loads((folder / "run.json").read_text())
        info["screening"] = screening
        (folder / "run.json").write_text(json.dumps(info))
    return folder


def test_report_html_shows_rater_screening_escaped(tmp_path):
    from diqa_bench.mos import compute_mos
    from diqa_bench.report import build_report

    # Six attentive raters and one answering at random, whose id is hostile markup from a user file.
    rng = np.random.default_rng(1)
    truth = rng.uniform(1.5, 4.5, 30)
    rows = [(f"i{i:02d}", f"r{o}", float(np.clip(np.round(t + rng.normal(0, 0.5)), 1, 5))) for o in range(6) for i, t in enumerate(truth)]
    hostile = "<script>alert(1)</script>"
    rows += [(f"i{i:02d}", hostile, float(rng.integers(1, 6))) for i in range(30)]
    _, report = compute_mos(pd.DataFrame(rows, columns=["image", "observer", "rating"]), scale=(1, 5))
    assert [r.observer for r in report.rejected] == [hostile]
    screening = report.as_dict()
    folder = _screened_run(tmp_path / "rated", {"derm <b>": screening})
    build_report(folder)
    page = (folder / "report.html").read_text()
    assert "<h2>Data and raters</h2>" in page and "<h3>Raters of derm &lt;b&gt;</h3>" in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "7 raters, 30 images, 210 ratings on the scale 1 to 5" in page
    assert html.escape(screening["rejected"][0]["reason"]) in page  # why it was rejected
    rel = screening["reliability"]
    assert f"{rel['value']:.3f} (95% bootstrap interval {rel['ci_low']:.3f} to {rel['ci_high']:.3f} over 30 images" in page
    # LEADERBOARD.md's section states the same facts
    from diqa_bench.leaderboard import data_section

    board = "\n".join(data_section(json.loads((folder / "run.json").read_text())))
    assert "Raters of derm &lt;b&gt;: 7 raters, 30 images, 210 ratings on the scale 1 to 5" in board
    assert html.escape(screening["rejected"][0]["reason"], quote=False) in board
    assert "<script>" not in board and "&lt;script&gt;alert(1)&lt;/script&gt;" in board  # shown as text, not run as markup

    # A panel where nobody is rejected says so, and a run without raters has no such section.
    kept = _screened_run(tmp_path / "kept", {"derm": {**screening, "rejected": []}})
    build_report(kept)
    assert "No rater rejected." in (kept / "report.html").read_text()
    plain = _screened_run(tmp_path / "plain", None)
    build_report(plain)
    assert "Data and raters" not in (plain / "report.html").read_text()
