"""Every bad-input case that concerns loading gets a clear error (or, with policy 'skip', a
counted skip with its reason): through the core's check_records and decode, fed by this plugin's
loaders. Also decodes the real photos in ../shared/data when that folder is present."""

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from diqa_datasets.tabular import CsvDataset
from PIL import Image

from diqa_bench.datasets import DatasetContext, check_records
from diqa_bench.errors import DataError
from diqa_bench.images import decode

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _rgb(h=20, w=30, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def _dataset(tmp_path, rows, mos_range=(1, 5)):
    """A csv dataset over tmp_path/imgs from (image, mos) rows."""
    (tmp_path / "imgs").mkdir(exist_ok=True)
    pd.DataFrame(rows, columns=["image", "mos"]).to_csv(tmp_path / "labels.csv", index=False)
    ds = CsvDataset(csv=str(tmp_path / "labels.csv"), root=str(tmp_path / "imgs"), mos_range=list(mos_range))
    return ds, ds.load(DatasetContext(tmp_path / "cache"))


def _good(tmp_path, name="ok.png", seed=0):
    (tmp_path / "imgs").mkdir(exist_ok=True)
    Image.fromarray(_rgb(seed=seed)).save(tmp_path / "imgs" / name)
    return name


# -- labels and paths: check_records ------------------------------------------------------------


@pytest.mark.parametrize(
    "image, mos, message",
    [
        ("missing.png", 3, "image file not found"),
        ("ok.png", "", "MOS is blank or NaN"),
        ("ok.png", "nan", "MOS is blank or NaN"),
        ("ok.png", "good", "MOS 'good' is not a number"),
        ("ok.png", 7.5, r"MOS 7.5 is outside the declared range \[1, 5\]"),
        ("ok.png", 0, r"outside the declared range"),
        ("../escape.png", 3, "path escapes the dataset root"),
        ("sub/../../escape.png", 3, "path escapes the dataset root"),
    ],
)
def test_bad_labels_and_paths_raise_one_line_errors(tmp_path, image, mos, message):
    _good(tmp_path)
    Image.fromarray(_rgb()).save(tmp_path / "escape.png")  # exists, but outside the root
    ds, records = _dataset(tmp_path, [(image, mos)])
    with pytest.raises(DataError, match=message) as info:
        check_records(records, ds, "mine")
    assert "\n" not in str(info.value) and "mine" in str(info.value)


def test_absolute_path_outside_root_is_refused(tmp_path):
    Image.fromarray(_rgb()).save(tmp_path / "elsewhere.png")
    ds, records = _dataset(tmp_path, [(str(tmp_path / "elsewhere.png"), 3)])
    with pytest.raises(DataError, match="escapes the dataset root"):
        check_records(records, ds, "mine")


def test_zero_byte_file(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "empty.jpg").write_bytes(b"")
    ds, records = _dataset(tmp_path, [("empty.jpg", 3)])
    with pytest.raises(DataError, match=r"empty \(0 bytes\)"):
        check_records(records, ds, "mine")
    with pytest.raises(DataError, match="0 bytes"):
        decode(tmp_path / "imgs" / "empty.jpg")


def test_duplicate_ids(tmp_path):
    _good(tmp_path)
    ds, records = _dataset(tmp_path, [("ok.png", 3), ("ok.png", 4)])
    with pytest.raises(DataError, match="duplicate image id"):
        check_records(records, ds, "mine")


def test_empty_domain(tmp_path):
    ds, records = _dataset(tmp_path, [])
    assert records == []
    with pytest.raises(DataError, match="no usable images"):
        check_records(records, ds, "mine")


def test_skip_policy_counts_and_lists_every_bad_record(tmp_path):
    _good(tmp_path, "a.png", 1)
    _good(tmp_path, "b.png", 2)
    ds, records = _dataset(tmp_path, [("a.png", 3), ("b.png", ""), ("b.png", 4), ("gone.png", 2), ("../x.png", 2), ("a.png", 9)])
    checked = check_records(records, ds, "mine", policy="skip")
    assert [r.id for r in checked.records] == ["a.png"]
    reasons = [(s.image, s.reason) for s in checked.skips]
    assert len(reasons) == 5  # nothing dropped silently: 6 rows = 1 kept + 5 listed
    assert ("b.png", "MOS is blank or NaN") in reasons
    assert any(i == "gone.png" and "not found" in r for i, r in reasons)
    assert any(i == "../x.png" and "escapes" in r for i, r in reasons)
    assert ("a.png", "duplicate image id") in reasons
    assert ("b.png", "duplicate image id") in reasons  # a repeated row is a problem even after a bad first one


def test_all_records_bad_under_skip_is_still_an_error(tmp_path):
    ds, records = _dataset(tmp_path, [("gone.png", 3)])
    with pytest.raises(DataError, match=r"no usable images \(1 skipped\)"):
        check_records(records, ds, "mine", policy="skip")


# -- image files: decode ------------------------------------------------------------------------


def _jpeg_bytes(arr, **kw):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90, **kw)
    return buf.getvalue()


def test_truncated_jpeg(tmp_path):
    data = _jpeg_bytes(_rgb(64, 64))
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.jpg: cannot decode"):
        decode(tmp_path / "cut.jpg")


def test_corrupt_jpeg_header(tmp_path):
    data = bytearray(_jpeg_bytes(_rgb(64, 64)))
    data[2:40] = b"\x00" * 38  # JPEG marker segments destroyed right after SOI
    (tmp_path / "bad.jpg").write_bytes(bytes(data))
    with pytest.raises(DataError, match="bad.jpg"):
        decode(tmp_path / "bad.jpg")


def test_not_an_image(tmp_path):
    (tmp_path / "notes.jpg").write_text("this is a text file, not a photo\n")
    with pytest.raises(DataError, match="notes.jpg: not an image"):
        decode(tmp_path / "notes.jpg")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        decode(tmp_path / "nope.png")


def _check_rgb(arr, h, w):
    assert arr.shape == (h, w, 3) and arr.dtype == np.float32
    assert 0.0 <= arr.min() and arr.max() <= 1.0


def test_greyscale_becomes_rgb(tmp_path):
    grey = _rgb()[..., 0]
    Image.fromarray(grey, mode="L").save(tmp_path / "g.png")
    arr = decode(tmp_path / "g.png")
    _check_rgb(arr, 20, 30)
    assert np.allclose(arr[..., 0], grey / 255.0) and np.allclose(arr[..., 0], arr[..., 2])


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    Image.fromarray(_rgb()).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    _check_rgb(decode(tmp_path / "c.jpg"), 20, 30)


def test_sixteen_bit_png_keeps_precision(tmp_path):
    values = np.linspace(0, 65535, 20 * 30).reshape(20, 30).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    arr = decode(tmp_path / "d.png")
    _check_rgb(arr, 20, 30)
    assert np.allclose(arr[..., 1], values / 65535.0, atol=1e-6)  # finer than 8-bit steps


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_alpha_and_palette_images_become_rgb(tmp_path, mode):
    img = Image.fromarray(_rgb()).convert("RGBA")
    img.putalpha(128)
    img.convert(mode).save(tmp_path / "a.png")
    _check_rgb(decode(tmp_path / "a.png"), 20, 30)


def test_exif_rotated_photo_is_turned_upright(tmp_path):
    arr = _rgb(20, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    (tmp_path / "r.jpg").write_bytes(_jpeg_bytes(arr, exif=exif.tobytes()))
    assert Image.open(tmp_path / "r.jpg").size == (40, 20)
    _check_rgb(decode(tmp_path / "r.jpg"), 40, 20)


# -- real photos ---------------------------------------------------------------------------------


def _real_images():
    if not SHARED_DATA.is_dir():
        return []
    phone = sorted((SHARED_DATA / "derm-healthy-skin-agppga" / "consented_images").glob("*.jpg"))
    dermoscopy = sorted((SHARED_DATA / "derm-ham10000-sample70").rglob("*.jpg"))[::10]
    crops = sorted((SHARED_DATA / "derm-artefacts-ham10000").rglob("*.png"))[:6]
    return phone + dermoscopy + crops


def test_real_photos_decode_upright(tmp_path):
    images = _real_images()
    if not images:
        pytest.skip(f"real photos not present at {SHARED_DATA} (project-local test data)")
    rotated = 0
    for path in images:
        arr = decode(path)
        with Image.open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
        if orientation in (5, 6, 7, 8):
            rotated += 1
            w, h = h, w
        _check_rgb(arr, h, w)
        assert not math.isnan(float(arr.mean()))
    assert rotated >= 1  # the phone set carries EXIF-rotated photos

    # And through a csv dataset pointing at them, every record validates.
    folder = SHARED_DATA / "derm-healthy-skin-agppga" / "consented_images"
    rows = [(p.name, 3.0) for p in sorted(folder.glob("*.jpg"))]
    pd.DataFrame(rows, columns=["image", "mos"]).to_csv(tmp_path / "labels.csv", index=False)
    ds = CsvDataset(csv=str(tmp_path / "labels.csv"), root=str(folder), mos_range=[1, 5])
    assert len(check_records(ds.load(DatasetContext(tmp_path)), ds, "real").records) == len(rows)
