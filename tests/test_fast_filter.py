"""The float64 Gaussian filter of the classical metrics (diqa_pyiqa.fast_filter) gives pyiqa's values."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pyiqa")


@pytest.mark.parametrize("padding", ["replicate", "same", "symmetric"])
@pytest.mark.parametrize("shape", [(1, 1, 45, 67), (3, 1, 40, 33), (1, 1, 7, 100)])
def test_same_values_as_pyiqa_imfilter(padding, shape):
    from pyiqa.matlab_utils import fspecial, imfilter

    from diqa_pyiqa import fast_filter

    fast_filter.install()
    g = torch.Generator().manual_seed(0)
    img = torch.rand(shape, generator=g, dtype=torch.float64) * 255
    kernel = fspecial(7, 7 / 6, 1).to(img)
    expected = imfilter(img, kernel, padding=padding)
    got = fast_filter.imfilter(img, kernel, padding=padding)
    assert got.shape == expected.shape and got.dtype == torch.float64
    assert torch.allclose(got, expected, rtol=1e-13, atol=1e-10)
    # float32 is not this function's business: it gets pyiqa's result exactly
    assert torch.equal(fast_filter.imfilter(img.float(), kernel.float(), padding=padding), imfilter(img.float(), kernel.float(), padding=padding))


def test_piqe_scores_and_brisque_features_unchanged_in_float64():
    import pyiqa.archs.func_util as func_util

    from diqa_pyiqa import fast_filter
    from pyiqa.archs.brisque_arch import natural_scene_statistics
    from pyiqa.archs.piqe_arch import piqe

    fast_filter.install()
    g = torch.Generator().manual_seed(1)
    img = torch.rand(2, 3, 96, 128, generator=g, dtype=torch.float64)
    img[1] = img[1].clamp(0.3, 0.6)  # a flatter image
    fast = piqe(img)[0]
    func_util.imfilter = fast_filter.pyiqa_imfilter  # pyiqa's own convolution
    try:
        slow = piqe(img)[0]
        slow_b = natural_scene_statistics(img[:1, :1] * 255)
    finally:
        fast_filter.install()
    assert func_util.imfilter is fast_filter.imfilter
    assert torch.allclose(fast, slow, rtol=1e-12, atol=1e-9)
    assert torch.allclose(natural_scene_statistics(img[:1, :1] * 255), slow_b, rtol=1e-10, atol=1e-12)
