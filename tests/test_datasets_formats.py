"""Each dataset format on tiny generated fixtures: generic CSV, the pyiqa-layout public databases,
dermatology ratings (raw per-observer and precomputed MOS)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from diqa_datasets.derm import DermRatingsDataset
from diqa_datasets.public import CSIQ, SPAQ, TID2013, KADID10k, KonIQ10k, LIVEChallenge
from diqa_datasets.tabular import CsvDataset
from PIL import Image

from diqa_bench.datasets import DatasetContext, check_records
from diqa_bench.errors import DataError
from diqa_bench.splits import split_records


def _image(path, seed=0, size=(24, 20)):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)


@pytest.fixture
def ctx(tmp_path):
    return DatasetContext(cache_dir=tmp_path / "cache")


def test_csv_dataset_reads_renamed_columns(tmp_path, ctx):
    for i in range(4):
        _image(tmp_path / "imgs" / f"a{i}.png", i)
    pd.DataFrame(
        {"file": [f"a{i}.png" for i in range(4)], "score": [10, 20, 30, 40], "ref": ["r0", "r0", "r1", "r1"],
         "kind": ["blur"] * 4, "lvl": [1, 2, 1, 2], "sd": [1.0, "", 2.0, 3.0]}
    ).to_csv(tmp_path / "labels.csv", index=False)
    ds = CsvDataset(csv=str(tmp_path / "labels.csv"), root=str(tmp_path / "imgs"), image_column="file", mos_column="score",
                    group_column="ref", distortion_column="kind", level_column="lvl", std_column="sd", mos_range=[0, 100], lower_better=True)
    assert ds.check() == []
    recs = check_records(ds.load(ctx), ds, "csv").records
    assert [r.mos for r in recs] == [10, 20, 30, 40]
    assert [r.group for r in recs] == ["r0", "r0", "r1", "r1"]
    assert recs[1].level == 2 and recs[0].distortion == "blur" and recs[1].std is None and recs[2].std == 2.0
    assert ds.lower_better and ds.mos_range == (0, 100)
    train, test = split_records(recs, 0.5, seed=0)
    assert {r.group for r in train}.isdisjoint({r.group for r in test})


def test_csv_dataset_names_a_missing_column(tmp_path, ctx):
    pd.DataFrame({"image": ["a.png"], "quality": [3]}).to_csv(tmp_path / "l.csv", index=False)
    ds = CsvDataset(csv=str(tmp_path / "l.csv"), mos_range=[1, 5])
    with pytest.raises(DataError, match="missing column 'mos'"):
        ds.load(ctx)


def test_csv_dataset_split_column_is_kept(tmp_path, ctx):
    for i in range(4):
        _image(tmp_path / f"{i}.png", i)
    pd.DataFrame({"image": [f"{i}.png" for i in range(4)], "mos": [1, 2, 3, 4], "split": ["train", "train", "test", "test"]}).to_csv(
        tmp_path / "l.csv", index=False)
    ds = CsvDataset(csv=str(tmp_path / "l.csv"), split_column="split", mos_range=[1, 5])
    _, test = split_records(ds.load(ctx), 0.3, seed=5)
    assert [r.id for r in test] == ["2.png", "3.png"]


def _pyiqa_layout(tmp_path, cls, header, rows, image_names):
    base = tmp_path / "datasets" / cls.name
    for i, name in enumerate(image_names):
        _image(base / cls.image_dir / name, i)
    meta = tmp_path / "datasets" / "meta_info"
    meta.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=header).to_csv(meta / cls.meta_file, index=False)
    return base


@pytest.mark.parametrize(
    "cls, header, rows, names, mos_range, lower_better",
    [
        (KonIQ10k, ["img_name", "mos", "std", "split", "c1", "c2", "c3", "c4", "c5", "c_total"],
         [["1.jpg", 55.0, 0.5, 0, 0.0, 0.1, 0.5, 0.4, 0.0, 100], ["2.jpg", 70.0, 0.6, 2, 0.0, 0.0, 0.3, 0.6, 0.1, 104]], ["1.jpg", "2.jpg"], (0, 100), False),
        (SPAQ, ["Image name", "MOS", "Brightness"], [["00001.png", 42.0, 40.0], ["00002.png", 81.0, 70.0]], ["00001.png", "00002.png"], (0, 100), False),
        (KADID10k, ["ref_name", "dist_name", "dmos", "std"], [["I01.png", "I01_01_01.png", 4.5, 0.1], ["I01.png", "I01_01_05.png", 1.9, 0.2], ["I02.png", "I02_03_02.png", 3.0, 0.3]],
         ["I01_01_01.png", "I01_01_05.png", "I02_03_02.png"], (1, 5), False),
        (CSIQ, ["ref_name", "dist_name", "dmos"], [["1600.png", "1600.AWGN.1.png", 0.06], ["1600.png", "1600.AWGN.5.png", 0.7], ["aerial_city.png", "aerial_city.BLUR.2.png", 0.2]],
         ["1600.AWGN.1.png", "1600.AWGN.5.png", "aerial_city.BLUR.2.png"], (0, 1), True),
        (TID2013, ["ref_name", "dist_name", "mos", "std"], [["I01.BMP", "i01_01_1.bmp", 5.5, 0.1], ["I01.BMP", "i01_01_5.bmp", 3.1, 0.2], ["I02.BMP", "i02_08_3.bmp", 4.0, 0.3]],
         ["i01_01_1.bmp", "i01_01_5.bmp", "i02_08_3.bmp"], (0, 9), False),
    ],
)
def test_public_databases_in_pyiqa_layout(tmp_path, ctx, cls, header, rows, names, mos_range, lower_better):
    base = _pyiqa_layout(tmp_path, cls, header, rows, names)
    ds = cls(root=str(base), **({"resize": None} if cls is SPAQ else {}))
    assert ds.check() == []
    recs = check_records(ds.load(ctx), ds, cls.name).records
    assert [r.id for r in recs] == names
    assert [r.mos for r in recs] == [row[2 if cls.full_reference else 1] for row in rows]
    assert ds.mos_range == mos_range and ds.lower_better is lower_better
    if cls.full_reference:  # content group = reference image: no reference on both sides of a split
        assert len({r.group for r in recs}) == 2
        train, test = split_records(recs, 0.5, seed=1)
        assert {r.group for r in train}.isdisjoint({r.group for r in test})


def test_kadid_and_tid_carry_distortion_and_level(tmp_path, ctx):
    base = _pyiqa_layout(tmp_path, KADID10k, ["ref", "dist", "mos"], [["I01.png", "I01_07_03.png", 3.0]], ["I01_07_03.png"])
    (rec,) = KADID10k(root=str(base)).load(ctx)
    assert (rec.distortion, rec.level) == ("kadid07", 3)


def test_koniq_on_the_1_to_5_scale_declares_it(tmp_path, ctx):
    base = _pyiqa_layout(tmp_path, KonIQ10k, ["img_name", "mos", "std"], [["1.jpg", 3.2, 0.5], ["2.jpg", 4.1, 0.4]], ["1.jpg", "2.jpg"])
    ds = KonIQ10k(root=str(base))
    ds.load(ctx)
    assert ds.mos_range == (1.0, 5.0)


def test_koniq_official_split(tmp_path, ctx):
    base = _pyiqa_layout(tmp_path, KonIQ10k, ["img_name", "mos", "std", "split"], [["1.jpg", 55.0, 1, 0], ["2.jpg", 70.0, 1, 2], ["3.jpg", 60.0, 1, 1]],
                         ["1.jpg", "2.jpg", "3.jpg"])
    recs = KonIQ10k(root=str(base), official_split=True).load(ctx)
    assert [r.split for r in recs] == ["train", "test", "val"]
    assert [r.split for r in KonIQ10k(root=str(base)).load(ctx)] == [None, None, None]
    train, test = split_records(recs, 0.3, seed=0)
    assert [r.id for r in train] == ["1.jpg"] and [r.id for r in test] == ["2.jpg"]  # validation: neither side


def test_livec_drops_the_seven_training_images(tmp_path, ctx):
    names = [f"t{i}.bmp" for i in range(1, 8)] + ["100.bmp", "101.bmp"]
    base = tmp_path / "LIVEC"
    for i, n in enumerate(names):
        _image(base / "Images" / n, i)
    (base / "meta_info").mkdir()
    pd.DataFrame({"img_name": names, "mos": [50.0] * 9, "std": [1.0] * 9}).to_csv(base / "meta_info" / LIVEChallenge.meta_file, index=False)
    ds = LIVEChallenge(root=str(base))
    recs = check_records(ds.load(ctx), ds, "livec").records
    assert [r.id for r in recs] == ["100.bmp", "101.bmp"]


def test_public_database_problems_name_the_file_and_the_source(tmp_path, monkeypatch):
    monkeypatch.delenv("DIQA_KONIQ10K_ROOT", raising=False)
    (msg,) = KonIQ10k().check()
    assert "DIQA_KONIQ10K_ROOT" in msg and "database.mmsp-kn.de" in msg
    (tmp_path / "koniq10k").mkdir()
    monkeypatch.setenv("DIQA_KONIQ10K_ROOT", str(tmp_path / "koniq10k"))
    problems = KonIQ10k().check()
    assert any("meta_info_KonIQ10kDataset.csv" in p and "IQA-PyTorch-Datasets-metainfo" in p for p in problems)
    assert any("512x384" in p for p in problems)
    (msg,) = CSIQ(root=str(tmp_path / "nowhere")).check()
    assert "root folder not found" in msg and "csiq" in msg.lower()


def test_env_variable_names_per_database():
    assert [c.env_var() for c in (KonIQ10k, SPAQ, LIVEChallenge, KADID10k, CSIQ, TID2013)] == [
        "DIQA_KONIQ10K_ROOT", "DIQA_SPAQ_ROOT", "DIQA_LIVEC_ROOT", "DIQA_KADID10K_ROOT", "DIQA_CSIQ_ROOT", "DIQA_TID2013_ROOT"]


def _ratings_fixture(tmp_path, outlier=True):
    rng = np.random.default_rng(3)
    rows = []
    truth = {f"p{p}_{k}.jpg": rng.uniform(1.5, 4.5) for p in range(4) for k in range(5)}
    for name in truth:
        _image(tmp_path / "photos" / name, len(rows) + int(name[1]))
    for o in range(12):
        for i, (name, t) in enumerate(truth.items()):
            r = (1 if i % 2 else 5) if (outlier and o == 11) else int(np.clip(np.round(t + rng.normal(0, 0.3)), 1, 5))
            rows.append((name, f"rater{o:02d}", r, name.split("_")[0]))
    pd.DataFrame(rows, columns=["image", "observer", "rating", "patient"]).to_csv(tmp_path / "ratings.csv", index=False)
    return truth


def test_derm_ratings_from_raw_ratings_with_screening(tmp_path, ctx):
    truth = _ratings_fixture(tmp_path)
    ds = DermRatingsDataset(root=str(tmp_path / "photos"), ratings=str(tmp_path / "ratings.csv"), group_column="patient")
    assert ds.check() == []
    recs = check_records(ds.load(ctx), ds, "derm").records
    assert len(recs) == len(truth)
    assert [r["observer"] for r in ds.screening["rejected"]] == ["rater11"]
    assert "reason" in ds.screening["rejected"][0]
    assert {r.group for r in recs} == {"p0", "p1", "p2", "p3"}
    assert all(r.std is not None for r in recs)
    train, test = split_records(recs, 0.5, seed=0)
    assert {r.group for r in train}.isdisjoint({r.group for r in test})


def test_derm_ratings_precomputed_mos_with_metadata_groups(tmp_path, ctx):
    for i in range(3):
        _image(tmp_path / f"x{i}.png", i)
    pd.DataFrame({"image": ["x0.png", "x1.png", "x2.png"], "mos": [2.5, 3.0, 4.5], "std": [0.5, 0.4, 0.2]}).to_csv(tmp_path / "mos.csv", index=False)
    pd.DataFrame({"image": ["x0.png", "x1.png", "x2.png"], "patient_id": ["A", "A", "B"]}).to_csv(tmp_path / "meta.csv", index=False)
    ds = DermRatingsDataset(root=str(tmp_path), mos="mos.csv", metadata="meta.csv", group_column="patient_id")
    recs = check_records(ds.load(ctx), ds, "derm").records
    assert [(r.mos, r.group) for r in recs] == [(2.5, "A"), (3.0, "A"), (4.5, "B")]
    assert ds.screening is None


def test_derm_ratings_rejects_ratings_off_the_scale(tmp_path, ctx):
    _ratings_fixture(tmp_path, outlier=False)
    ds = DermRatingsDataset(root=str(tmp_path / "photos"), ratings=str(tmp_path / "ratings.csv"), scale=[0, 3])
    with pytest.raises(DataError, match="outside the scale"):
        ds.load(ctx)


def test_derm_ratings_needs_exactly_one_label_source(tmp_path):
    with pytest.raises(DataError, match="exactly one"):
        DermRatingsDataset(root=str(tmp_path))
    assert any("ratings CSV not found" in p for p in DermRatingsDataset(root=str(tmp_path), ratings="missing.csv").check())


def test_derm_ratings_root_from_environment(tmp_path, ctx, monkeypatch):
    _ratings_fixture(tmp_path, outlier=False)
    monkeypatch.delenv("DIQA_DERM_RATINGS_ROOT", raising=False)
    (msg,) = DermRatingsDataset(ratings="ratings.csv").check()
    assert "DIQA_DERM_RATINGS_ROOT" in msg
    monkeypatch.setenv("DIQA_DERM_RATINGS_ROOT", str(tmp_path / "photos"))
    (tmp_path / "ratings.csv").rename(tmp_path / "photos" / "ratings.csv")
    ds = DermRatingsDataset(ratings="ratings.csv")
    assert ds.check() == []
    assert len(check_records(ds.load(ctx), ds, "derm").records) == 20


HAM = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "derm-ham10000-sample70"


@pytest.mark.skipif(not (HAM / "HAM10000_metadata_sample.csv").is_file(), reason=f"real HAM10000 sample not present at {HAM} (project-local test data)")
def test_derm_ratings_with_ham10000_metadata_as_published(tmp_path, ctx):
    """HAM10000's own metadata (lesion_id, image_id without extension) names the patient-level
    group: the lesion. Ratings are made up; images and metadata are the real files, read in place."""
    images = sorted(p.relative_to(HAM).as_posix() for p in HAM.glob("*/*.jpg"))
    rng = np.random.default_rng(0)
    rows = [(img, f"r{o}", int(rng.integers(1, 6))) for img in images for o in range(3)]
    pd.DataFrame(rows, columns=["image", "observer", "rating"]).to_csv(tmp_path / "ratings.csv", index=False)
    ds = DermRatingsDataset(root=str(HAM), ratings=str(tmp_path / "ratings.csv"), metadata=str(HAM / "HAM10000_metadata_sample.csv"),
                            image_column="image_id", patient_column="lesion_id", screening=False)
    recs = check_records(ds.load(ctx), ds, "ham").records
    meta = pd.read_csv(HAM / "HAM10000_metadata_sample.csv")
    lesion_of = dict(zip(meta.image_id, meta.lesion_id))
    assert len(recs) == len(images) == 70
    assert all(r.group == lesion_of[Path(r.id).stem] for r in recs)
    assert ds.screening["reliability"]["images"] == 70
    summary = ds.describe()
    assert summary["rows"] == 70 and summary["missing"] == 0 and summary["groups"] == len({lesion_of[Path(i).stem] for i in images})
    with pytest.raises(DataError, match="missing column 'image' \\(image\\)"):
        DermRatingsDataset(root=str(HAM), ratings=str(tmp_path / "ratings.csv"), metadata=str(HAM / "HAM10000_metadata_sample.csv"),
                           patient_column="lesion_id").load(ctx)


def test_mos_normalisation_puts_higher_better_first_on_one_scale():
    from diqa_bench.datasets import Dataset, normalise_mos, scale_mos

    class Dmos(Dataset):
        name = "dmos"
        mos_range = (0.0, 100.0)
        lower_better = True

    assert normalise_mos([0.0, 25.0, 100.0], Dmos()) == [1.0, 0.75, 0.0]  # DMOS flipped: 0 is the best image
    z = normalise_mos([10.0, 20.0, 30.0], Dmos(), "zscore")
    assert z[0] > 0 > z[2] and abs(sum(z)) < 1e-12
    assert scale_mos([3.0], (1.0, 5.0), False).tolist() == [0.5]
    assert scale_mos([7.0, 7.0], None, False, "zscore").tolist() == [0.0, 0.0]  # constant labels: no division by zero
    with pytest.raises(ValueError, match="needs the dataset's mos_range"):
        scale_mos([1.0], None, False, "range")
    with pytest.raises(ValueError, match="unknown MOS normalisation 'rank'"):
        scale_mos([1.0], (0.0, 1.0), False, "rank")


def test_derm_ratings_drops_or_rescales_a_rater_on_another_scale(tmp_path, ctx):
    _ratings_fixture(tmp_path, outlier=False)
    table = pd.read_csv(tmp_path / "ratings.csv")
    table["rating"] = table["rating"].astype(float)
    wide = table.observer == "rater05"
    table.loc[wide, "rating"] = (table.loc[wide, "rating"] - 1) * 2.5  # this rater used 0-10
    table.to_csv(tmp_path / "ratings.csv", index=False)
    photos, ratings = str(tmp_path / "photos"), str(tmp_path / "ratings.csv")
    with pytest.raises(DataError, match="all by observer 'rater05'"):
        DermRatingsDataset(root=photos, ratings=ratings).load(ctx)
    dropped = DermRatingsDataset(root=photos, ratings=ratings, drop_raters=["rater05"])
    assert all(r.std is not None for r in dropped.load(ctx)) and dropped.screening["dropped"] == ["rater05"]
    rescaled = DermRatingsDataset(root=photos, ratings=ratings, rescale_raters={"rater05": [0, 10]})
    same = DermRatingsDataset(root=photos, ratings=str(tmp_path / "ratings.csv"), drop_raters=[])
    mos = {r.id: r.mos for r in rescaled.load(ctx)}
    assert rescaled.screening["rescaled"] == {"rater05": [0.0, 10.0]} and rescaled.screening["flagged"] == []
    assert min(mos.values()) >= 1 and max(mos.values()) <= 5 and same.drop_raters == []
