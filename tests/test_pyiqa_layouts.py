"""The six public databases from pyiqa's real meta-info files: headers, value conventions, split
codes, split files and split columns exactly as pyiqa (and the databases) ship them.

Headers checked against chaofengc/IQA-PyTorch ``pyiqa/data/meta_info/*.csv``:
KonIQ-10k ``img_name,mos,std,split,c1..c5,c_total`` (split 0/1/2 in the 2022 file, training /
validation / test in another), SPAQ ``Image name,MOS,Brightness,...`` (no std; two Brightness
columns), LIVE Challenge ``img_name,mos,std``, KADID-10k ``ref_name,dist_name,dmos,std`` (std holds
dmos.csv's variance; the database's own file is ``dist_img,ref_img,dmos,var``), CSIQ
``ref_name,dist_name,dmos``, TID2013 ``ref_name,dist_name,mos,std``.
"""

import math
import pickle

import numpy as np
import pytest
from diqa_datasets.public import CSIQ, SPAQ, TID2013, KADID10k, KonIQ10k, LIVEChallenge
from PIL import Image

from diqa_bench.datasets import DatasetContext, check_records
from diqa_bench.errors import DataError
from diqa_bench.splits import read_split_file, split_records

KONIQ_HEADER = ["img_name", "mos", "std", "split", "c1", "c2", "c3", "c4", "c5", "c_total"]
SPAQ_HEADER = ["Image name", "MOS", "Brightness", "Colorfulness", "Contrast", "Noisiness", "Sharpness", "Animal", "Cityscape", "Human",
               "Indoor scene", "Landscape", "Night scene", "Plant", "Still-life", "Others", "Focal length", "F-number", "Exposure time",
               "ISO", "Brightness", "Flash", "Time0", "Time1"]


@pytest.fixture
def ctx(tmp_path):
    return DatasetContext(cache_dir=tmp_path / "cache")


def _touch(path, payload=b"\xff\xd8jpeg"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)


def _image(path, size=(24, 20), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def _meta(tmp_path, cls, lines):
    meta = tmp_path / "datasets" / "meta_info"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / cls.meta_file).write_text("\n".join(lines) + "\n")
    return tmp_path / "datasets" / cls.name


# -- KonIQ-10k: the official 7058 / 1000 / 2015 split in every layout pyiqa has used ----------------
KONIQ_COUNTS = {"0": 7058, "1": 1000, "2": 2015}


def _koniq(tmp_path, codes=("0", "1", "2"), column="split", folder="512x384"):
    base = tmp_path / "datasets" / "koniq10k"
    names = []
    lines = [",".join(KONIQ_HEADER if column == "split" else [*KONIQ_HEADER[:3], *KONIQ_HEADER[4:], column])]
    i = 0
    for code, value in zip(("0", "1", "2"), codes):
        for _ in range(KONIQ_COUNTS[code]):
            name = f"{1000000 + i}.jpg"
            names.append(name)
            mos = 5 + (i * 37 % 9000) / 100  # 5..95, the MOS_zscore scale
            cells = [name, f"{mos:.4f}", "0.52"] + ([value] if column == "split" else []) + ["0.0", "0.1", "0.5", "0.4", "0.0", "101"] + ([] if column == "split" else [value])
            lines.append(",".join(cells))
            i += 1
    (tmp_path / "datasets" / "meta_info").mkdir(parents=True, exist_ok=True)
    (tmp_path / "datasets" / "meta_info" / KonIQ10k.meta_file).write_text("\n".join(lines) + "\n")
    for n in names:
        _touch(base / folder / n)
    return base


@pytest.mark.parametrize("codes, column", [(("0", "1", "2"), "split"), (("training", "validation", "test"), "split"), (("train", "val", "test"), "official_split")],
                         ids=["2022-codes", "words", "official_split-column"])
def test_koniq_official_split_counts_in_every_layout(tmp_path, ctx, codes, column):
    base = _koniq(tmp_path, codes, column)
    ds = KonIQ10k(root=str(base), official_split=True)
    recs = check_records(ds.load(ctx), ds, "koniq10k").records
    assert len(recs) == 10073
    train, test = split_records(recs, 0.3, seed=0)
    assert (len(train), len(test)) == (7058, 2015)  # the 1000 validation images are on neither side
    assert not {r.id for r in train} & {r.id for r in test}
    assert ds.mos_range == (0.0, 100.0) and ds.lower_better is False
    assert recs[0].std == pytest.approx(0.52 * 25)  # the 1-5 SD, expressed on the 0-100 MOS scale
    assert ds.split_source == f"column {column!r} of {KonIQ10k.meta_file}"
    # asked for, the validation images join a side
    train_v, _ = split_records(KonIQ10k(root=str(base), official_split=True, validation="train").load(ctx), 0.3, seed=0)
    _, test_v = split_records(KonIQ10k(root=str(base), official_split=True, validation="test").load(ctx), 0.3, seed=0)
    assert (len(train_v), len(test_v)) == (8058, 3015)


def test_koniq_full_protocol_scores_every_image_and_1024_folder(tmp_path, ctx):
    base = _koniq(tmp_path, folder="1024x768")
    assert any("512x384" in p for p in KonIQ10k(root=str(base)).check())
    ds = KonIQ10k(root=str(base), image_dir="1024x768", official_split=True)
    assert ds.check() == []
    recs = check_records(ds.load(ctx), ds, "koniq10k").records
    assert all("1024x768" in r.path for r in recs[:3])
    train, test = split_records(recs, 0.3, seed=0, protocol="full")
    assert (len(train), len(test)) == (0, 10073)
    with pytest.raises(DataError, match="image_dir '2048' is not one of"):
        KonIQ10k(root=str(base), image_dir="2048")


def test_koniq_split_value_that_is_not_a_split_is_named(tmp_path, ctx):
    base = _meta(tmp_path, KonIQ10k, [",".join(KONIQ_HEADER), "1.jpg,50,0.5,0,0,0,1,0,0,100", "2.jpg,60,0.5,holdout,0,0,1,0,0,100"])
    _touch(base / "512x384" / "1.jpg")
    _touch(base / "512x384" / "2.jpg")
    with pytest.raises(DataError, match=r"row 3: split value 'holdout'"):
        KonIQ10k(root=str(base), official_split=True).load(ctx)
    with pytest.raises(DataError, match="no 'official_split' or 'split' column"):
        _meta(tmp_path, KonIQ10k, ["img_name,mos,std", "1.jpg,50,0.5"])
        KonIQ10k(root=str(base), official_split=True).load(ctx)


# -- SPAQ: no std, resized as pyiqa does, split files -------------------------------------------------
def _spaq(tmp_path, n=10, size=(64, 48)):
    base = tmp_path / "datasets" / "spaq"
    lines = [",".join(SPAQ_HEADER)]
    for i in range(n):
        name = f"{i + 1:05d}.jpg"
        _image(base / "TestImage" / name, size, seed=i)
        lines.append(f"{name},{10 + 7 * i}.5,{40 + i}.1,55.57,55.71,37.86,42.57,0.0,0.33,0.0,0.0,0.0,0.33,0.0,0.33,0.0,4.2,1.7,0.1,200,-1.21,0,-0.96,-0.25")
    _meta(tmp_path, SPAQ, lines)
    return base


def test_spaq_has_no_std_and_is_resized_to_a_448_short_side(tmp_path, ctx):
    base = _spaq(tmp_path, n=3, size=(600, 450))
    ds = SPAQ(root=str(base))
    recs = check_records(ds.load(ctx), ds, "spaq").records
    assert [r.mos for r in recs] == [10.5, 17.5, 24.5]
    assert all(r.std is None for r in recs)  # the Brightness column is an attribute, not a spread
    with Image.open(recs[0].path) as img:
        assert img.size == (597, 448)  # torchvision Resize(448): long side int(448 * 600 / 450)
    assert ds.preprocessing["resize_short_side"] == 448 and ds.preprocessing["made_now"] == 3
    again = SPAQ(root=str(base))
    again.load(ctx)
    assert again.preprocessing["made_now"] == 0  # made once, reused
    original = SPAQ(root=str(base), resize=None)
    assert original.load(ctx)[0].path == "00001.jpg" and original.preprocessing is None


def test_spaq_pyiqa_split_file(tmp_path, ctx):
    base = _spaq(tmp_path)
    split = tmp_path / "spaq_seed123.pkl"
    split.write_bytes(pickle.dumps({1: {"train": [0, 1, 2, 3, 4, 5], "val": [6, 7], "test": [8, 9]}, 2: {"train": [9, 8, 7, 6, 5, 4], "val": [], "test": [0, 1, 2, 3]}}))
    ds = SPAQ(root=str(base), resize=None, split_file=str(split))
    train, test = split_records(check_records(ds.load(ctx), ds, "spaq").records, 0.3, seed=0)
    assert [r.id for r in test] == ["00009.jpg", "00010.jpg"] and len(train) == 6
    ds2 = SPAQ(root=str(base), resize=None, split_file=str(split), split_index=2)
    train, test = split_records(ds2.load(ctx), 0.3, seed=0)
    assert [r.id for r in test] == ["00001.jpg", "00002.jpg", "00003.jpg", "00004.jpg"] and len(train) == 6
    with pytest.raises(DataError, match="has no split 7"):
        SPAQ(root=str(base), resize=None, split_file=str(split), split_index=7).load(ctx)
    split.write_bytes(pickle.dumps({1: {"train": [0, 1], "test": [1, 40]}}))
    with pytest.raises(DataError, match="row 1 is listed in both train and test"):
        SPAQ(root=str(base), resize=None, split_file=str(split)).load(ctx)


class _Payload:
    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(_Payload.target),))


def test_split_files_load_without_running_code(tmp_path):
    _Payload.target = str(tmp_path / "ran")
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({1: {"train": [0], "test": [_Payload()]}}))
    with pytest.raises(DataError, match="refused to load pathlib"):
        read_split_file(evil, 1)
    assert not (tmp_path / "ran").exists()
    numpy_pickle = tmp_path / "np.pkl"
    numpy_pickle.write_bytes(pickle.dumps({1: {"train": np.arange(3)}}))
    with pytest.raises(DataError, match="refused to load numpy"):
        read_split_file(numpy_pickle, 1)
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="not a readable pickle"):
        read_split_file(tmp_path / "junk.pkl", 1)


# -- LIVE Challenge: split-file rows count after the 7 training images are dropped --------------------
def test_livec_split_file_rows_follow_pyiqa(tmp_path, ctx):
    names = [f"trainingImages/t{i}.bmp" for i in range(1, 8)] + [f"{i}.bmp" for i in range(100, 110)]
    base = tmp_path / "datasets" / "livec"
    for n in names:
        _touch(base / "Images" / n)
    _meta(tmp_path, LIVEChallenge, ["img_name,mos,std"] + [f"{n},{40 + i}.25,19.1" for i, n in enumerate(names)])
    split = tmp_path / "livechallenge_seed123.pkl"
    split.write_bytes(pickle.dumps({1: {"train": list(range(8)), "val": [], "test": [8, 9]}}))
    ds = LIVEChallenge(root=str(base), split_file=str(split))
    recs = check_records(ds.load(ctx), ds, "livec").records
    assert len(recs) == 10 and recs[0].id == "100.bmp" and recs[0].std == 19.1
    train, test = split_records(recs, 0.3, seed=0)
    assert [r.id for r in test] == ["108.bmp", "109.bmp"] and len(train) == 8
    assert ds.mos_range == (0.0, 100.0) and ds.lower_better is False


# -- KADID-10k: both files, variance -> std, groups and labels, pyiqa's numbered split columns --------
@pytest.mark.parametrize("header, row", [("ref_name,dist_name,dmos,std", "{ref},{dist},{mos},{var}"),
                                         ("dist_img,ref_img,dmos,var", "{dist},{ref},{mos},{var}")], ids=["pyiqa", "kadid-dmos.csv"])
def test_kadid_both_layouts(tmp_path, ctx, header, row):
    base = tmp_path / "datasets" / "kadid10k"
    lines = [header]
    for ref in (1, 2, 3):
        for kind in (1, 7, 25):
            for level in (1, 5):
                dist = f"I{ref:02d}_{kind:02d}_{level:02d}.png"
                _touch(base / "images" / dist)
                lines.append(row.format(ref=f"I{ref:02d}.png", dist=dist, mos=round(5 - level * 0.7, 2), var=0.496))
    _meta(tmp_path, KADID10k, lines)
    ds = KADID10k(root=str(base))
    recs = check_records(ds.load(ctx), ds, "kadid10k").records
    assert len(recs) == 18
    assert recs[0].id == "I01_01_01.png" and recs[0].group == "I01.png" and recs[0].mos == 4.3
    assert recs[0].std == pytest.approx(math.sqrt(0.496))
    assert {(r.distortion, r.level) for r in recs} == {(f"kadid{k:02d}", lv) for k in (1, 7, 25) for lv in (1, 5)}
    assert ds.mos_range == (1.0, 5.0) and ds.lower_better is False
    train, test = split_records(recs, 0.34, seed=2)
    assert {r.group for r in train}.isdisjoint({r.group for r in test}) and train and test


def test_kadid_numbered_split_column_and_group_leak(tmp_path, ctx):
    base = tmp_path / "datasets" / "kadid10k"
    lines = ["ref_name,dist_name,dmos,std,ratio802_seed123_split_00,ratio802_seed123_split_03"]
    for ref in (1, 2):
        for level in (1, 2):
            dist = f"I{ref:02d}_01_{level:02d}.png"
            _touch(base / "images" / dist)
            lines.append(f"I{ref:02d}.png,{dist},3.0,0.5,{'train' if ref == 1 else 'test'},{'train' if level == 1 else 'test'}")
    _meta(tmp_path, KADID10k, lines)
    train, test = split_records(KADID10k(root=str(base), split_index=0).load(ctx), 0.3, seed=0)
    assert {r.group for r in train} == {"I01.png"} and {r.group for r in test} == {"I02.png"}
    with pytest.raises(DataError, match="puts reference image 'I01.png' on both train and test"):
        KADID10k(root=str(base), split_index=3).load(ctx)
    assert len(KADID10k(root=str(base), split_index=3, allow_group_leak=True).load(ctx)) == 4
    with pytest.raises(DataError, match="'ratio802_seed123_split_05' is not a column"):
        KADID10k(root=str(base), split_index=5).load(ctx)


# -- CSIQ: distortion and level from the names, DMOS lower-is-better, release sub-folders ------------
def test_csiq_distortion_level_and_folders(tmp_path, ctx):
    base = tmp_path / "datasets" / "csiq"
    rows = [("1600.png", "1600.AWGN.1.png", 0.062), ("1600.png", "1600.JPEG.5.png", 0.78), ("aerial_city.png", "aerial_city.jpeg2000.3.png", 0.4),
            ("aerial_city.png", "aerial_city.BLUR.2.png", 0.2), ("sunset_sparrow.png", "sunset_sparrow.fnoise.4.png", 0.5),
            ("sunset_sparrow.png", "sunset_sparrow.contrast.2.png", 0.1)]
    for ref, dist, _ in rows:  # the CSIQ release: one sub-folder per distortion
        _touch(base / "dst_imgs" / dist.split(".")[-3].lower() / dist)
    _meta(tmp_path, CSIQ, ["ref_name,dist_name,dmos"] + [f"{r},{d},{m}" for r, d, m in rows])
    ds = CSIQ(root=str(base))
    recs = check_records(ds.load(ctx), ds, "csiq").records
    assert [(r.distortion, r.level) for r in recs] == [("awgn", 1), ("jpeg", 5), ("jpeg2000", 3), ("blur", 2), ("fnoise", 4), ("contrast", 2)]
    assert [r.group for r in recs[::2]] == ["1600.png", "aerial_city.png", "sunset_sparrow.png"]
    assert recs[0].path.endswith("awgn/1600.AWGN.1.png") and recs[0].std is None
    assert ds.lower_better is True and ds.mos_range == (0.0, 1.0)


# -- TID2013: mixed-case names, groups folded, labels -------------------------------------------------
def test_tid2013_real_names(tmp_path, ctx):
    base = tmp_path / "datasets" / "tid2013"
    rows = [("I01.BMP", "I01_01_1.bmp", 5.51429, 0.13013), ("I01.BMP", "i01_11_5.bmp", 1.45946, 0.11839), ("I01.BMP", "I01_13_1.BMP", 5.45946, 0.13565),
            ("I02.BMP", "i02_24_5.bmp", 0.89189, 0.12552), ("i25.bmp", "i25_08_3.bmp", 4.1, 0.1)]
    for _, dist, _, _ in rows:
        _touch(base / "distorted_images" / dist)
    _meta(tmp_path, TID2013, ["ref_name,dist_name,mos,std"] + [",".join(map(str, r)) for r in rows])
    ds = TID2013(root=str(base))
    recs = check_records(ds.load(ctx), ds, "tid2013").records
    assert [(r.distortion, r.level) for r in recs] == [("tid01", 1), ("tid11", 5), ("tid13", 1), ("tid24", 5), ("tid08", 3)]
    assert [r.group for r in recs] == ["i01.bmp"] * 3 + ["i02.bmp", "i25.bmp"]
    assert recs[0].std == 0.13013 and ds.mos_range == (0.0, 9.0) and not ds.lower_better


def test_headerless_meta_info_is_named(tmp_path, ctx):
    base = _meta(tmp_path, CSIQ, ["1600.png,1600.AWGN.1.png,0.062"])
    _touch(base / "dst_imgs" / "1600.AWGN.1.png")
    with pytest.raises(DataError, match="is data, not a header"):
        CSIQ(root=str(base)).load(ctx)


def test_describe_counts_splits_and_missing_files_without_opening_images(tmp_path):
    base = _koniq(tmp_path)
    for name in ("1000000.jpg", "1000001.jpg", "1000002.jpg"):
        (base / "512x384" / name).unlink()
    (base / "512x384" / "1000003.jpg").write_bytes(b"")  # empty: the run would skip it too
    summary = KonIQ10k(root=str(base), official_split=True).describe()
    assert summary["rows"] == 10073
    assert summary["splits"] == {"train": 7058, "val": 1000, "test": 2015}
    assert summary["missing"] == 4 and summary["missing_first"][:3] == ["1000000.jpg", "1000001.jpg", "1000002.jpg"]
    assert summary["bad_mos"] == 0 and summary["duplicates"] == 0
