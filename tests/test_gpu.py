"""CUDA checks: run only where torch sees a CUDA device (CI has none; benchmarks/gpu_check.sh runs
them on a GPU machine). Each prints the numbers it measured (``pytest -s`` shows them).

- nvJPEG (GPU) vs PIL (CPU) decoding of the same JPEGs, in 0-255 levels;
- BRISQUE, NIQE and PIQE in float64 on CUDA vs CPU, on the same pixels;
- the same metrics end to end from nvJPEG vs PIL pixels (the cache keeps them apart; how far apart?);
- MUSIQ (random weights) and the cross-domain model (fit and score) on CUDA;
- a whole benchmark through the runner on CUDA with the nvJPEG decoder.
"""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device: these checks run on a GPU machine (benchmarks/gpu_check.sh)", allow_module_level=True)

from diqa_bench.images import iter_batches, nvjpeg_available  # noqa: E402
from diqa_bench.methods import MethodContext  # noqa: E402

WEIGHTS = Path(__file__).resolve().parents[1].parent / "shared" / "weights"


def _weights_dir() -> Path | None:
    import os

    env = os.environ.get("DIQA_BENCH_WEIGHTS")
    for cand in (Path(env) if env else None, WEIGHTS):
        if cand is not None and (cand / "brisque_svm_weights.pth").is_file():
            return cand
    return None


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    """24 photo-like JPEGs, 512x384, qualities 40-95 (crops of scikit-image's bundled photos)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from perf import make_jpegs

    return [str(p) for p in make_jpegs(tmp_path_factory.mktemp("jpegs"), 24, (512, 384))]


def _pixels(paths, decoder, device="cuda"):
    out = {}
    for b in iter_batches(paths, paths, range(len(paths)), batch_size=8, device=device, decoder=decoder, workers=2):
        assert b.images.device.type == torch.device(device).type
        for j, i in enumerate(b.indices):
            out[i] = b.images[j].float().cpu()
    return torch.stack([out[i] for i in range(len(paths))])


def _scores(name, images, device, float64=True):
    from diqa_bench.methods import Batch
    from diqa_bench.plugins import load_plugins

    method = load_plugins().method(name)(precision="float64" if float64 else "float32")
    method.setup(MethodContext(device=device, weights_dir=_weights_dir()))
    n = images.shape[0]
    return np.asarray(method.score_batch(Batch(images=images.to(device), keys=[str(i) for i in range(n)], paths=[""] * n, indices=list(range(n)))), dtype=np.float64)


def test_nvjpeg_pixels_match_pil_closely(jpegs):
    assert nvjpeg_available("cuda")
    pil = _pixels(jpegs, "pil")
    nv = _pixels(jpegs, "nvjpeg")
    diff = (nv - pil).abs() * 255
    print(f"\nnvJPEG vs PIL, {len(jpegs)} JPEGs 512x384: max {diff.max():.0f} levels, mean {diff.mean():.3f}, "
          f"99.9th percentile {diff.flatten().kthvalue(int(0.999 * diff.numel())).values:.0f}, identical pixels {(diff == 0).float().mean():.1%}")
    assert pil.shape == nv.shape
    assert diff.mean() < 1.0  # decoders may round differently, never disagree on content


@pytest.mark.parametrize("name", ["brisque", "niqe", "piqe"])
def test_classical_metrics_agree_between_cpu_and_cuda_in_float64(jpegs, name):
    if name != "piqe" and _weights_dir() is None:
        pytest.skip("LIVE parameter files not found (DIQA_BENCH_WEIGHTS or ../shared/weights)")
    pixels = _pixels(jpegs[:12], "pil")
    cpu = _scores(name, pixels, "cpu")
    gpu = _scores(name, pixels, "cuda")
    gpu32 = _scores(name, pixels, "cuda", float64=False)
    cpu32 = _scores(name, pixels, "cpu", float64=False)
    print(f"\n{name}: float64 CUDA vs CPU max abs diff {np.abs(gpu - cpu).max():.3g}; "
          f"float32 CUDA vs CPU {np.abs(gpu32 - cpu32).max():.3g}; float32 vs float64 on CUDA {np.abs(gpu32 - gpu).max():.3g}")
    np.testing.assert_allclose(gpu, cpu, rtol=1e-5, atol=1e-6)  # NIQE: 1.5e-6 relative on an H200 (pyiqa has float32 steps)


@pytest.mark.parametrize("name", ["brisque", "niqe", "piqe"])
def test_scores_from_nvjpeg_pixels_stay_close_to_pil_pixels(jpegs, name):
    from scipy.stats import spearmanr

    if name != "piqe" and _weights_dir() is None:
        pytest.skip("LIVE parameter files not found (DIQA_BENCH_WEIGHTS or ../shared/weights)")
    pil = _scores(name, _pixels(jpegs, "pil"), "cuda")
    nv = _scores(name, _pixels(jpegs, "nvjpeg"), "cuda")
    rho = spearmanr(pil, nv)[0]
    spread = pil.max() - pil.min()
    print(f"\n{name} float64 on CUDA, nvJPEG vs PIL pixels: max abs diff {np.abs(nv - pil).max():.3g} "
          f"(score spread {spread:.3g}), SROCC between them {rho:.4f}")
    assert rho > 0.98


def test_musiq_random_weights_scores_on_cuda(jpegs):
    from diqa_bench.plugins import load_plugins

    method = load_plugins().method("musiq")()
    method.build("cuda", None)
    batch = next(iter(iter_batches(jpegs[:4], jpegs[:4], range(4), batch_size=4, device="cuda", decoder="nvjpeg")))
    scores = method.score_batch(batch)
    assert scores.shape == (4,) and torch.isfinite(scores).all()


@pytest.mark.parametrize("mode", ["head", "finetune"])
def test_cross_domain_fits_and_scores_on_cuda(tmp_path, mode):
    from diqa_cross_domain.method import CrossDomain

    from diqa_bench.images import training_loader
    from diqa_bench.methods import TrainingData

    sys_path = Path(__file__).resolve().parents[1] / "benchmarks"
    import sys

    sys.path.insert(0, str(sys_path))
    from cross_domain_speed import make_images

    samples = make_images(tmp_path, 40, 128)
    ctx = MethodContext(device="cuda", batch_size=8, cache_dir=tmp_path / "cache", decoder="nvjpeg")
    method = CrossDomain(mode=mode, epochs=2, val_ratio=0)
    method.setup(ctx)
    method.fit(TrainingData(samples=samples, loader=training_loader(ctx)), ctx)
    paths = [s.path for s in samples[:8]]
    batch = next(iter(iter_batches(paths, [s.key for s in samples[:8]], range(8), batch_size=8, device="cuda", decoder="nvjpeg")))
    scores = method.score_batch(batch)
    assert scores.shape == (8,) and torch.isfinite(scores).all()
    method.save(tmp_path / "fit")
    again = CrossDomain(mode=mode, epochs=2, val_ratio=0)
    again.setup(ctx)
    again.load(tmp_path / "fit")
    torch.testing.assert_close(again.score_batch(batch), scores, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("decode, decoder", [("auto", "pil"), ("gpu", "nvjpeg")])
def test_tiny_benchmark_runs_on_cuda(tmp_path, decode, decoder):
    """A whole run on CUDA (the stub images are PNG: this checks the plumbing and the keys)."""
    from diqa_bench.testing import run_tiny_benchmark

    res = run_tiny_benchmark(tmp_path, device="cuda", workers=2, decode=decode)
    assert res.exit_code == 0
    assert res.run["protocol"]["decoder"] == decoder
    assert str(res.run["environment"]["device"]).startswith("cuda")
    assert np.isfinite(res.value("stub-linear", "a+b", "a"))
