"""Image decoding (EXIF, modes, bit depth, broken files) and size-bucketed batching."""

import numpy as np
import pytest
from PIL import Image

from diqa_bench.errors import DataError
from diqa_bench.images import decode, iter_batches, list_images, probe_size, size_buckets


def _rgb(h, w, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def test_exif_orientation_is_applied(tmp_path):
    arr = _rgb(20, 40)
    arr[:, :20] = 0  # left half black, right half white: shows where the image went
    arr[:, 20:] = 255
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif.tobytes(), quality=95)
    out = decode(path)
    assert out.shape == (40, 20, 3)  # height and width swapped
    assert probe_size(path) == (40, 20)
    # after a clockwise turn the left (black) half is on top
    assert out[:15].mean() < 0.1 and out[-15:].mean() > 0.9
    plain = tmp_path / "plain.jpg"
    img.save(plain, quality=95)
    assert decode(plain).shape == (20, 40, 3) and probe_size(plain) == (20, 40)


def test_rgb_png_roundtrip_is_exact(tmp_path):
    arr = _rgb(7, 9)
    Image.fromarray(arr).save(tmp_path / "x.png")
    out = decode(tmp_path / "x.png")
    assert out.dtype == np.float32 and out.shape == (7, 9, 3)
    np.testing.assert_array_equal(np.round(out * 255).astype(np.uint8), arr)


@pytest.mark.parametrize(
    "make, expected_pixel",
    [
        (lambda: Image.fromarray(np.full((6, 5), 128, np.uint8), "L"), [128 / 255] * 3),
        (lambda: Image.new("CMYK", (5, 6), (0, 255, 255, 0)), [1.0, 0.0, 0.0]),  # pure red ink mix
        (lambda: Image.new("RGBA", (5, 6), (10, 20, 30, 0)), [10 / 255, 20 / 255, 30 / 255]),  # alpha dropped
        (lambda: Image.new("P", (5, 6), 0), None),
        (lambda: Image.new("1", (5, 6), 1), [1.0, 1.0, 1.0]),
        (lambda: Image.new("LA", (5, 6), (200, 50)), [200 / 255] * 3),
    ],
)
def test_modes_become_rgb_float(tmp_path, make, expected_pixel):
    img = make()
    path = tmp_path / ("x.tif" if img.mode == "CMYK" else "x.png")
    img.save(path)
    out = decode(path)
    assert out.shape == (6, 5, 3) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    if expected_pixel is not None:
        np.testing.assert_allclose(out[0, 0], expected_pixel, atol=1e-6)


def test_16_bit_keeps_precision(tmp_path):
    arr = np.array([[0, 1000, 40000, 65535]], dtype=np.uint16).repeat(3, 0)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    out = decode(tmp_path / "deep.png")
    assert out.shape == (3, 4, 3)
    np.testing.assert_allclose(out[0, :, 0], arr[0] / 65535.0, atol=1e-6)
    # 1000/65535 is not representable in 8 bits: the precision survived
    assert abs(out[0, 1, 0] * 255 - round(out[0, 1, 0] * 255)) > 1e-3


def test_truncated_jpeg_raises_data_error_with_path(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(_rgb(64, 64)).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as info:
        decode(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content, reason", [(b"", "0 bytes"), (b"plain text, not pixels", "not an image")])
def test_empty_and_non_image_files_raise_data_error(tmp_path, content, reason):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        decode(path)
    assert str(path) in str(info.value) and reason in str(info.value)
    with pytest.raises(DataError, match="bad.png"):
        probe_size(path)


def test_missing_file_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        decode(tmp_path / "nope.png")


def test_list_images_expands_folders_sorted(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ("b/z.PNG", "a.jpg", "b/c.jpeg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images([tmp_path])] == ["a.jpg", "b/c.jpeg", "b/z.PNG"]
    with pytest.raises(DataError, match="no such file or folder"):
        list_images([tmp_path / "missing"])


def test_size_buckets_group_by_size_in_first_seen_order():
    sizes = {0: (4, 4), 1: (8, 8), 2: (4, 4), 3: (4, 4), 4: (8, 8)}
    assert size_buckets([0, 1, 2, 3, 4], sizes, batch_size=2) == [[0, 2], [3], [1, 4]]


def _write_set(folder, shapes):
    paths = []
    for i, (h, w) in enumerate(shapes):
        p = folder / f"i{i}.png"
        Image.fromarray(_rgb(h, w, seed=i)).save(p)
        paths.append(str(p))
    return paths


def test_iter_batches_groups_sizes_and_reports_bad_files(tmp_path):
    paths = _write_set(tmp_path, [(8, 8), (6, 10), (8, 8), (8, 8), (6, 10)])
    (tmp_path / "i2.png").write_bytes(b"garbage")  # unreadable header: caught when sizing
    data = (tmp_path / "i3.png").read_bytes()
    (tmp_path / "i3.png").write_bytes(data[: len(data) // 2])  # header fine, pixels cut: caught when decoding
    keys = [f"k{i}" for i in range(5)]
    errors = {}
    batches = list(iter_batches(paths, keys, range(5), batch_size=4, on_error=lambda pos, msg: errors.__setitem__(pos, msg)))
    assert sorted(errors) == [2, 3] and "i2.png" in errors[2] and "i3.png" in errors[3]
    seen = sorted(i for b in batches for i in b.indices)
    assert seen == [0, 1, 4]  # the rest is not lost
    for b in batches:
        assert b.images.dtype.is_floating_point and b.images.shape[1] == 3
        assert len({tuple(decode(paths[i]).shape) for i in b.indices}) == 1  # one size per batch
        assert b.keys == [keys[i] for i in b.indices] and b.paths == [paths[i] for i in b.indices]
        for j, i in enumerate(b.indices):
            np.testing.assert_allclose(b.images[j].permute(1, 2, 0).numpy(), decode(paths[i]))
    assert sorted(tuple(b.images.shape[2:]) for b in batches) == [(6, 10), (8, 8)]


def test_iter_batches_raises_without_error_handler(tmp_path):
    paths = _write_set(tmp_path, [(8, 8), (8, 8)])
    (tmp_path / "i1.png").write_bytes(b"")
    with pytest.raises(DataError, match="i1.png"):
        list(iter_batches(paths, ["a", "b"], [0, 1], batch_size=2))


def test_iter_batches_resizes_to_fixed_input_size_and_respects_batch_size(tmp_path):
    paths = _write_set(tmp_path, [(8, 8), (6, 10), (12, 5)])
    batches = list(iter_batches(paths, ["a", "b", "c"], [2, 0, 1], batch_size=2, size=(4, 4)))
    assert [b.indices for b in batches] == [[2, 0], [1]]
    assert all(tuple(b.images.shape[1:]) == (3, 4, 4) for b in batches)
    assert all(0.0 <= float(b.images.min()) and float(b.images.max()) <= 1.0 for b in batches)


def test_iter_batches_shuffle_is_seeded(tmp_path):
    paths = _write_set(tmp_path, [(4, 4)] * 6)
    keys = list("abcdef")

    def order(seed):
        return [i for b in iter_batches(paths, keys, range(6), batch_size=6, shuffle=True, seed=seed) for i in b.indices]

    assert order(1) == order(1)
    assert sorted(order(1)) == list(range(6))
    assert order(1) != order(2) or order(1) != order(3)


def test_iter_batches_with_worker_processes_matches_in_process(tmp_path):
    paths = _write_set(tmp_path, [(8, 8)] * 3 + [(6, 6)])
    (tmp_path / "i1.png").write_bytes(b"not png")
    keys = list("abcd")

    def collect(workers):
        errs = []
        out = {i: b.images[j].numpy() for b in iter_batches(paths, keys, range(4), batch_size=2, workers=workers, on_error=lambda p, m: errs.append(p)) for j, i in enumerate(b.indices)}
        return out, errs

    single, errs0 = collect(0)
    multi, errs2 = collect(2)
    assert errs0 == errs2 == [1]
    assert single.keys() == multi.keys() == {0, 2, 3}
    for i in single:
        np.testing.assert_array_equal(single[i], multi[i])
