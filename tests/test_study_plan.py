"""`study create`: stimuli, protocol and the per-rater presentation plans (randomisation constraints,
repeats, training anchors), and the bad photos it skips with a reason."""

import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from diqa_bench.cli import main
from diqa_bench.errors import UserError
from diqa_bench.study.plan import create_study, load_protocol, rater_plan, shuffle_no_adjacent, training_stimuli


def _photo(path, seed, size=(96, 80)):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def _protocol(groups=6, per_group=7, repeats=5, training=5, seed=0):
    stimuli = []
    for g in range(groups):
        for k in range(per_group):
            stimuli.append({"id": f"s{len(stimuli):03d}", "path": f"stimuli/g{g}/{k}.png", "group": f"g{g}",
                            "distortion": None if k == 0 else "blur", "level": 0 if k == 0 else (k - 1) % 3 * 2 + 1})
    return {"seed": seed, "stimuli": stimuli, "repeats": repeats,
            "training_stimuli": training_stimuli(stimuli, training, "acr", np.random.default_rng(1))}


@pytest.mark.parametrize("sizes", [[5, 5], [1, 1, 1, 1], [9, 4, 4], [3, 2, 1, 1, 1], [20, 19], [2, 27, 3, 3, 3, 3, 3, 3, 3, 3]])  # the last: one group one more than all others
def test_shuffle_never_puts_one_group_twice_in_a_row(sizes):
    items = [(g, k) for g, n in enumerate(sizes) for k in range(n)]
    orders = set()
    for seed in range(40):
        out = shuffle_no_adjacent(items, lambda it: it[0], np.random.default_rng(seed))
        assert sorted(out) == sorted(items)  # a permutation: nothing lost, nothing doubled
        assert all(a[0] != b[0] for a, b in zip(out, out[1:])), out
        orders.add(tuple(out))
    assert len(orders) > 1 or len(items) <= 2  # random, not one fixed interleaving


def test_shuffle_respects_the_previous_group():
    items = [("a", 0), ("a", 1), ("b", 0)]
    for seed in range(20):
        out = shuffle_no_adjacent(items, lambda it: it[0], np.random.default_rng(seed), previous="b")
        assert out[0][0] == "a" and out[1][0] == "b" and out[2][0] == "a"


def test_rater_plan_constraints():
    protocol = _protocol()
    group = {s["id"]: s["group"] for s in protocol["stimuli"]}
    plan = rater_plan(protocol, 0)
    training = [e for e in plan if e["phase"] == "training"]
    rating = [e for e in plan if e["phase"] == "rating"]
    # training comes first, with anchors at both ends of the scale before anything else
    assert plan[: len(training)] == training and len(training) == 5
    assert [e["anchor"] for e in training[:4]] == ["top", "bottom", "top", "bottom"]
    by_id = {s["id"]: s for s in protocol["stimuli"]}
    assert all(by_id[e["stimulus"]]["distortion"] is None for e in training if e["anchor"] == "top")
    assert all(by_id[e["stimulus"]]["level"] == 5 for e in training if e["anchor"] == "bottom")
    # every stimulus rated once, plus exactly `repeats` second showings, each after its first
    counts = Counter(e["stimulus"] for e in rating)
    assert set(counts) == set(by_id) and sum(counts.values()) == len(by_id) + 5
    assert sorted(c for c in counts.values() if c > 1) == [2] * 5
    seen = set()
    for e in rating:
        assert bool(e.get("repeat")) == (e["stimulus"] in seen)
        seen.add(e["stimulus"])
    # no two consecutive stimuli from one source photo, across the training/rating boundary too
    groups = [group[e["stimulus"]] for e in plan]
    assert all(a != b for a, b in zip(groups, groups[1:]))


def test_rater_plans_differ_between_raters_and_are_reproducible():
    protocol = _protocol()
    a, b = rater_plan(protocol, 0), rater_plan(protocol, 1)
    assert a == rater_plan(protocol, 0)
    assert [e["stimulus"] for e in a] != [e["stimulus"] for e in b]


def test_create_study_writes_stimuli_and_skips_bad_photos(tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        _photo(photos / f"p{i}.png", i)
    (photos / "z_copy.png").write_bytes((photos / "p0.png").read_bytes())
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    _photo(photos / "huge.png", 9, size=(400, 400))
    monkeypatch.setenv("DIQA_BENCH_MAX_PIXELS", "100000")
    lines = []
    protocol = create_study([str(photos)], tmp_path / "study", distortions=["jpeg", "defocus_blur"], levels=[1, 5], size=64, log=lines.append)
    reasons = {line.split(":")[0].rsplit("/", 1)[-1]: line for line in lines}
    assert set(reasons) == {"z_copy.png", "broken.jpg", "huge.png"}, lines  # the first of two copies is kept
    assert "duplicate of" in reasons["z_copy.png"] and reasons["z_copy.png"].endswith("p0.png")
    assert "exceed the limit" in reasons["huge.png"]
    assert "not an image" in reasons["broken.jpg"] or "cannot decode" in reasons["broken.jpg"]
    assert len(protocol["skipped"]) == 3
    assert protocol["groups"] == ["p0", "p1", "p2"]
    assert len(protocol["stimuli"]) == 3 * (1 + 2 * 2)
    for s in protocol["stimuli"]:
        with Image.open(tmp_path / "study" / s["path"]) as img:
            assert max(img.size) == 64  # 96x80 downscaled to a longest side of 64
    assert load_protocol(tmp_path / "study") == protocol


def test_create_refuses_a_used_folder_and_too_few_photos(tmp_path):
    _photo(tmp_path / "one.png", 0)
    with pytest.raises(UserError, match="at least 2 source photos"):
        create_study([str(tmp_path / "one.png")], tmp_path / "s1", distortions=["jpeg"], levels=[1], size=64, log=lambda m: None)
    used = tmp_path / "used"
    used.mkdir()
    (used / "x").write_text("ratings")
    with pytest.raises(UserError, match="not empty"):
        create_study([str(tmp_path)], used, log=lambda m: None)
    with pytest.raises(UserError, match="unknown distortion"):
        create_study([str(tmp_path)], tmp_path / "s2", distortions=["sepia"], log=lambda m: None)


def test_cli_create_and_add_rater(tmp_path, capsys):
    for i in range(2):
        _photo(tmp_path / f"p{i}.png", i)
    out = tmp_path / "study"
    assert main(["study", "create", str(tmp_path / "p0.png"), str(tmp_path / "p1.png"), "-o", str(out), "--distortions", "jpeg",
                 "--levels", "3", "--size", "64", "--raters", "ann"]) == 0
    assert main(["study", "add-rater", str(out), "ben"]) == 0
    links = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in links] == ["ann", "ben"]
    assert (out / "links.txt").read_text().splitlines() == links
    assert (out / "links.txt").stat().st_mode & 0o077 == 0  # the links are the raters' keys
    assert main(["study", "add-rater", str(out), "ann"]) == 2  # a name twice: one line, exit 2
    assert "already exists" in capsys.readouterr().err
    assert json.loads((out / "study.json").read_text())["method"] == "acr"


def test_own_distorted_images_join_their_source_group(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        _photo(photos / f"p{i}.png", i)
    own = tmp_path / "own"
    (own / "p1").mkdir(parents=True)
    (own / "stranger").mkdir()
    _photo(own / "p1" / "phone blur.png", 5)
    _photo(own / "stranger" / "x.png", 6)
    (own / "p1" / "z_again.png").write_bytes((own / "p1" / "phone blur.png").read_bytes())
    lines = []
    protocol = create_study([str(photos)], tmp_path / "study", distortions=["jpeg"], levels=[5], size=64, own=str(own), log=lines.append)
    mine = [s for s in protocol["stimuli"] if s["distortion"] == "own"]
    assert [(s["group"], s["path"], s["level"]) for s in mine] == [("p1", "stimuli/p1/own_phone_blur.png", 0)]
    assert (tmp_path / "study" / mine[0]["path"]).is_file()
    assert any("names no source photo" in line for line in lines) and any("duplicate of" in line for line in lines)
    # own images are never training anchors: those need a known place on the scale
    assert all(t["stimulus"] != mine[0]["id"] for t in protocol["training_stimuli"])


def test_a_full_disk_while_writing_stimuli_is_one_line(tmp_path, monkeypatch, capsys):
    for i in range(2):
        _photo(tmp_path / f"p{i}.png", i)

    def full(self, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    assert main(["study", "create", str(tmp_path / "p0.png"), str(tmp_path / "p1.png"), "-o", str(tmp_path / "s"), "--size", "64",
                 "--distortions", "defocus_blur", "--levels", "1"]) == 2
    assert "No space left on device" in capsys.readouterr().err
