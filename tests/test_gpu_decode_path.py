"""The GPU-oriented data path, exercised on the CPU: JPEG bytes decoded in batches by torchvision
(nvJPEG on CUDA, libjpeg here) with EXIF orientation applied on the tensor, uint8 pixels finished
on the device, and the decoder kept in every cache key. tests/test_gpu.py runs the CUDA half."""

import numpy as np
import pytest
from PIL import Image

from diqa_bench.errors import UserError
from diqa_bench.images import iter_batches, resolve_decoder
from diqa_bench.methods import MethodContext


def _photo(h, w, seed=0):
    """Smooth content with a little texture: JPEG-like, and every orientation looks different."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / w, yy / h, (xx + 2 * yy) % 17 / 17], axis=2) * 200
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def _collect(paths, decoder, size=None, batch_size=4, workers=0):
    errors = {}
    out = {}
    for b in iter_batches([str(p) for p in paths], [f"k{i}" for i in range(len(paths))], range(len(paths)), batch_size=batch_size,
                          decoder=decoder, size=size, workers=workers, on_error=lambda pos, msg: errors.__setitem__(pos, msg)):
        assert b.images.dtype.is_floating_point
        for j, i in enumerate(b.indices):
            out[i] = b.images[j].numpy()
    return out, errors


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_on_tensors_matches_pil(tmp_path, orientation):
    img = Image.fromarray(_photo(24, 40, orientation))
    exif = img.getexif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    img.save(path, exif=exif.tobytes(), quality=90)
    pil, _ = _collect([path], "pil")
    raw, _ = _collect([path], "nvjpeg")
    assert raw[0].shape == pil[0].shape == ((3, 40, 24) if orientation >= 5 else (3, 24, 40))
    np.testing.assert_array_equal(raw[0], pil[0])


def test_byte_path_matches_pil_on_a_mixed_folder(tmp_path):
    """JPEGs (4:4:4, 4:2:2, 4:2:0, progressive) take the byte path; PNG, greyscale and CMYK JPEGs
    take PIL's; a corrupt JPEG gets PIL's one-line error. Pixels are identical either way here."""
    paths = []
    for i, kw in enumerate([{"subsampling": 0}, {"subsampling": 1}, {"subsampling": 2}, {"progressive": True}]):
        p = tmp_path / f"j{i}.jpg"
        Image.fromarray(_photo(32, 48, i)).save(p, quality=80, **kw)
        paths.append(p)
    Image.fromarray(_photo(32, 48, 9)).save(tmp_path / "p.png")
    Image.fromarray(_photo(32, 48, 10)[:, :, 0]).save(tmp_path / "grey.jpg")
    Image.fromarray(_photo(32, 48, 11)).convert("CMYK").save(tmp_path / "cmyk.jpg")
    good = tmp_path / "j0.jpg"
    (tmp_path / "broken.jpg").write_bytes(good.read_bytes()[:300])
    paths += [tmp_path / n for n in ("p.png", "grey.jpg", "cmyk.jpg", "broken.jpg")]
    pil, pil_err = _collect(paths, "pil", batch_size=8)
    raw, raw_err = _collect(paths, "nvjpeg", batch_size=8, workers=2)
    assert set(pil_err) == set(raw_err) == {7}
    assert raw_err[7] == pil_err[7] and "broken.jpg" in raw_err[7]
    assert raw.keys() == pil.keys() == set(range(7))
    for i in raw:
        np.testing.assert_array_equal(raw[i], pil[i])


def test_byte_path_resizes_after_decoding(tmp_path):
    paths = []
    for i, (h, w) in enumerate([(30, 50), (64, 40)]):
        p = tmp_path / f"r{i}.jpg"
        Image.fromarray(_photo(h, w, i)).save(p, quality=85)
        paths.append(p)
    pil, _ = _collect(paths, "pil", size=(16, 16))
    raw, _ = _collect(paths, "nvjpeg", size=(16, 16))
    for i in (0, 1):
        assert raw[i].shape == (3, 16, 16)
        assert raw[i].min() >= 0 and raw[i].max() <= 1
        np.testing.assert_allclose(raw[i], pil[i], atol=1e-5)  # same interpolation, other side of the pipe


def test_resolve_decoder():
    assert resolve_decoder("auto", "cuda") == "pil"  # nvJPEG only when asked: it moves scores a little
    assert resolve_decoder("auto", "cpu") == "pil"
    assert resolve_decoder(None, "cpu") == "pil"
    assert resolve_decoder("cpu", "cpu") == "pil"
    with pytest.raises(UserError, match="needs a CUDA device"):
        resolve_decoder("gpu", "cpu")
    with pytest.raises(UserError, match="choose one of"):
        resolve_decoder("nvjpeg", "cpu")


def test_decoder_is_part_of_feature_cache_keys(tmp_path):
    pil = MethodContext(cache_dir=tmp_path).feature_cache("m/f1")
    pil.put_many({"img": np.ones(3, dtype=np.float32)})
    gpu = MethodContext(cache_dir=tmp_path, decoder="nvjpeg").feature_cache("m/f1")
    assert gpu.get_many(["img"]) == {}
    assert list(MethodContext(cache_dir=tmp_path).feature_cache("m/f1").get_many(["img"])) == ["img"]


@pytest.mark.parametrize("decoder", ["pil", "nvjpeg"])
def test_thread_loader_matches_process_loader(tmp_path, decoder):
    """The CUDA default (a thread pool in this process) gives what DataLoader processes give,
    errors included, and a consumer that stops early leaves nothing hanging."""
    paths = []
    for i, shape in enumerate([(32, 48)] * 5 + [(40, 24)] * 3):
        p = tmp_path / f"t{i}.jpg"
        Image.fromarray(_photo(*shape, i)).save(p, quality=85)
        paths.append(str(p))
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    paths.append(str(tmp_path / "bad.jpg"))
    keys = [f"k{i}" for i in range(len(paths))]

    def collect(loader, workers):
        errs, out = {}, {}
        for b in iter_batches(paths, keys, range(len(paths)), batch_size=3, workers=workers, decoder=decoder, loader=loader,
                              on_error=lambda pos, msg: errs.__setitem__(pos, msg)):
            for j, i in enumerate(b.indices):
                out[i] = b.images[j].numpy()
        return out, errs

    threads, t_err = collect("threads", 3)
    procs, p_err = collect("processes", 2)
    assert t_err == p_err and list(t_err) == [8]
    assert threads.keys() == procs.keys() == set(range(8))
    for i in threads:
        np.testing.assert_array_equal(threads[i], procs[i])
    first = next(iter(iter_batches(paths, keys, range(8), batch_size=2, workers=2, decoder=decoder, loader="threads")))
    assert len(first.keys) == 2
