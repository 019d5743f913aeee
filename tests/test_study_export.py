"""`study status` and `study export`: ACR to the raw derm-ratings format that `diqa-bench mos` and a
derm-ratings domain read; paired comparisons to a pairs dataset plus a scale."""

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("flask", reason="the study server needs flask (pip install -e '.[test]')")

from test_study_server import make_study, rate, start  # noqa: E402

from diqa_bench.cli import main  # noqa: E402
from diqa_bench.datasets import DatasetContext  # noqa: E402
from diqa_bench.study.cli import add_raters  # noqa: E402
from diqa_bench.study.server import create_app  # noqa: E402


def _acr_answer(stimulus, rng):
    """A simulated attentive rater: worse for higher distortion levels, with some noise."""
    return int(np.clip(round(5 - 0.8 * stimulus["level"] + rng.normal(0, 0.5)), 1, 5))


@pytest.fixture
def rated_acr(tmp_path):
    folder = make_study(tmp_path, levels=[1, 3, 5])
    names = ["ann", "ben", "cat", "dan"]
    tokens = dict(add_raters(folder, names))
    stimuli = {s["id"]: s for s in json.loads((folder / "study.json").read_text())["stimuli"]}
    client = create_app(folder).test_client()
    rng = np.random.default_rng(0)
    for name in names:
        st = start(client, tokens[name])
        stop = None if name != "dan" else 8  # dan stops after training and a few ratings
        while not st["done"] and (stop is None or st["position"] < stop):
            st = rate(client, tokens[name], st["item"], _acr_answer(stimuli[st["item"]["stimulus"]], rng)).json
    return folder, stimuli


def test_status_shows_each_raters_progress(rated_acr, capsys):
    folder, stimuli = rated_acr
    assert main(["study", "status", str(folder)]) == 0
    out = capsys.readouterr().out.splitlines()
    total = 3 + len(stimuli) + 2
    rows = {line.split()[0]: line for line in out[1:]}
    assert set(rows) == {"ann", "ben", "cat", "dan"}
    assert f"{total} / {total}" in rows["ann"] and "(done)" in rows["ann"]
    assert f"8 / {total}" in rows["dan"] and "(done)" not in rows["dan"]


def test_acr_export_is_a_derm_ratings_set(rated_acr, capsys):
    folder, stimuli = rated_acr
    assert main(["study", "export", str(folder)]) == 0
    ratings = pd.read_csv(folder / "export" / "ratings.csv")
    assert list(ratings.columns) == ["image", "observer", "rating", "group"]
    # first showings only: every stimulus once per rater who finished, no training answers, no repeats
    per = ratings.groupby("observer").size().to_dict()
    assert per["ann"] == per["ben"] == per["cat"] == len(stimuli) and per["dan"] == 8 - 3
    assert not ratings.duplicated(["image", "observer"]).any()
    by_path = {s["path"]: s for s in stimuli.values()}
    assert all(by_path[i]["group"] == g for i, g in zip(ratings["image"], ratings["group"]))
    consistency = pd.read_csv(folder / "export" / "consistency.csv")
    assert consistency.groupby("observer").size().to_dict() == {"ann": 2, "ben": 2, "cat": 2}
    # `diqa-bench mos` reads it as any raw ratings file
    assert main(["mos", str(folder / "export" / "ratings.csv"), "--scale", "1", "5", "-o", str(folder / "mos.csv")]) == 0
    mos = pd.read_csv(folder / "mos.csv")
    assert len(mos) == len(stimuli)
    # and so does a derm-ratings domain, with the source photos as content groups
    from diqa_datasets.derm import DermRatingsDataset

    snippet = (folder / "export" / "derm-ratings.yaml").read_text()
    import yaml

    options = yaml.safe_load(snippet)[0]["options"]
    records = DermRatingsDataset(**options).load(DatasetContext(cache_dir=folder / "cache"))
    assert {r.group for r in records} == {"p0", "p1", "p2"} and len(records) == len(stimuli)
    pristine = np.mean([r.mos for r in records if r.id.endswith("pristine.png")])
    worst = np.mean([r.mos for r in records if r.id.endswith("_5.png")])
    assert pristine > worst + 2


def test_export_with_no_ratings_is_one_line(tmp_path, capsys):
    folder = make_study(tmp_path)
    add_raters(folder, ["ann"])
    assert main(["study", "export", str(folder)]) == 2
    assert "no ratings yet" in capsys.readouterr().err
    assert main(["study", "status", str(tmp_path)]) == 2
    assert "not a study folder" in capsys.readouterr().err


def test_pc_export_is_a_pairs_dataset_with_a_scale(tmp_path):
    folder = make_study(tmp_path, method="pc", levels=[1, 3, 5], pairs_per_rater=30, training=2)
    tokens = dict(add_raters(folder, ["ann", "ben"]))
    stimuli = {s["id"]: s for s in json.loads((folder / "study.json").read_text())["stimuli"]}
    client = create_app(folder).test_client()
    rng = np.random.default_rng(1)
    quality = {sid: 5 - s["level"] + rng.normal(0, 0.3) for sid, s in stimuli.items()}
    for tok in tokens.values():
        st = start(client, tok)
        while not st["done"]:
            it = st["item"]
            st = rate(client, tok, it, int(quality[it["stimulus_b"]] > quality[it["stimulus"]])).json
    assert main(["study", "export", str(folder), "-o", str(tmp_path / "out")]) == 0
    pairs = pd.read_csv(tmp_path / "out" / "pairs.csv")
    assert len(pairs) == 60 and {"better", "worse", "group"} <= set(pairs.columns)
    from diqa_datasets.pairs import PairsDataset

    ds = PairsDataset(csv=str(tmp_path / "out" / "pairs.csv"), root=str(folder))
    records = ds.load(DatasetContext(cache_dir=tmp_path / "cache"))
    assert len(ds.pairs) == 60 and all((folder / r.path).is_file() for r in records)
    scale = pd.read_csv(tmp_path / "out" / "scale.csv")
    assert scale["mos"].min() == pytest.approx(1) and scale["mos"].max() == pytest.approx(5)
    assert (scale["jod_low"] < scale["jod"]).all() and (scale["jod"] < scale["jod_high"]).all()
    level = scale["image"].map({s["path"]: s["level"] for s in stimuli.values()})
    assert scale.groupby(level)["mos"].mean().is_monotonic_decreasing  # pristine on top, level 5 at the bottom
    # the scale is a precomputed MOS table for derm-ratings, with the photos as content groups
    from diqa_datasets.derm import DermRatingsDataset

    records = DermRatingsDataset(root=str(folder), mos=str(tmp_path / "out" / "scale.csv"), patient_column="group").load(None)
    assert len(records) == len(scale) and {r.group for r in records} == {"p0", "p1", "p2"}
    assert all((folder / r.path).is_file() and 1 <= r.mos <= 5 for r in records)
