"""Zero-shot pyiqa metrics: ``brisque``, ``niqe``, ``piqe``, ``musiq`` (+ ``-spaq``, ``-ava``,
``-paq2piq``) and ``pyiqa`` (any pyiqa no-reference metric by name).

Numerics: metrics without learned parameters (BRISQUE, NIQE, PIQE: the classical ones) run in
float64. In float32, pyiqa's BRISQUE depends on the device and on the batch size: its local
normalisation computes a variance as E[x^2] - E[x]^2 on 0..255 pixel values, which cancels
catastrophically in flat regions, so the summation order (CPU vs GPU, batch of 1 vs 5) moves scores
by up to ~9 points on pyiqa's own calibration images (issue 4, measured on an H200). Doing only that
normalisation in float64 already gives the float64 scores (checked here on the calibration images),
so float32 is the error, not float64: every classical score here is the float64 one. Cost, CPU time
per image on one thread (float64 vs float32): BRISQUE 75 vs 16 ms at 256x256 and 256 vs 64 ms at
512x384; NIQE unchanged (pyiqa already runs it in float64); PIQE on the CPU goes through
:mod:`diqa_pyiqa.fast_piqe` (pyiqa's float64 scores, bit for bit): 4.3 and 9.5 ms, pyiqa's float32
7.0 and 19 ms; BRISQUE and NIQE on the CPU through :mod:`diqa_pyiqa.fast_brisque` and
:mod:`diqa_pyiqa.fast_niqe` (pyiqa's float64 scores within 1e-10 relative, without importing pyiqa).
On consumer GPUs float64 is much slower than float32; correctness wins. The MUSIQ
family and other learned metrics keep float32 (their weights are float32).
Where float64 is unsupported (Apple MPS) the classical metrics run on the CPU.

Direction (``lower_better``) and ``score_range`` come from pyiqa's ``DEFAULT_CONFIGS``.
Weights are resolved offline first and never unpickled as code (see :mod:`diqa_pyiqa.weights`).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, ClassVar

from diqa_bench.errors import DataError, MethodUnavailable, UserError, WeightsRefused
from diqa_bench.methods import Batch, Method, MethodContext

from .metadata import default_configs, metric_info, no_reference_metrics
from .weights import (
    DEFAULT_DOWNLOAD_TIMEOUT_S,
    find_weights,
    load_tensors,
    resolve_weights,
    safe_pyiqa_build,
    where_to_put,
)

WEIGHTS_OPTION = {"type": ["string", "null"], "description": "weights file (or folder holding it) under pyiqa's file name"}
TIMEOUT_OPTION = {"type": "number", "minimum": 1, "description": "seconds before a stalled weights download gives up"}
BRISQUE_FEATURES = 36  # per image: 18 NSS features at each of two scales
NIQE_FEATURES = 36
PRECISION_OPTION = {"enum": ["auto", "float32", "float64"], "description": "auto: float64 for metrics without learned parameters"}


def compute_device(device: str, float64: bool) -> str:
    return "cpu" if float64 and str(device).startswith("mps") else str(device)


class PyiqaMetric(Method):
    """One pyiqa metric. Subclasses set ``name``, ``metric`` (pyiqa's name) and ``checkpoint``
    (pyiqa's weight file name, from the arch's ``default_model_urls``; None when it has none)."""

    version = "1"
    metric: ClassVar[str | None] = None
    checkpoint: ClassVar[str | None] = None
    float64: ClassVar[bool] = False
    options_schema: ClassVar[dict[str, Any]] = {"weights": WEIGHTS_OPTION, "download_timeout": TIMEOUT_OPTION, "precision": PRECISION_OPTION}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.metric:
            info = metric_info(cls.metric)
            cls.lower_better = info.lower_better
            cls.score_range = info.score_range
            cls.description = f"pyiqa {cls.metric}" + (f" ({cls.checkpoint})" if cls.checkpoint else "")

    def __init__(self, weights: str | None = None, download_timeout: float = DEFAULT_DOWNLOAD_TIMEOUT_S, **options: Any) -> None:
        super().__init__(**({"weights": weights} if weights else {}), **options)
        if options.get("precision", "auto") != "auto":  # e.g. float32, to compare with pyiqa as shipped
            self.float64 = options["precision"] == "float64"
        self.weights = weights
        self.download_timeout = download_timeout
        self.model = None

    def weight_files(self, ctx: MethodContext) -> list[Path]:
        if not self.checkpoint:
            return []
        try:
            found = find_weights(self.checkpoint, self.weights, ctx.weights_dir)
        except MethodUnavailable:
            return []  # setup says why
        return [found] if found is not None else []

    @classmethod
    def licences(cls, options=None):
        from .licences import method_licences

        return method_licences(cls.checkpoint, options)

    # -- building ------------------------------------------------------------------------------
    def metric_kwargs(self, checkpoint_path) -> dict[str, Any]:
        """Arguments for ``pyiqa.create_metric`` given a local checkpoint (or None)."""
        return {"pretrained_model_path": str(checkpoint_path)} if checkpoint_path else {}

    def setup(self, ctx: MethodContext) -> None:
        path = None
        if self.checkpoint:
            path = resolve_weights(self.checkpoint, self.weights, ctx.weights_dir, self.download_timeout)
        try:
            self.build(ctx.device, path, ctx.weights_dir)
        except MethodUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - a malformed weights file fails inside pyiqa in many ways
            if path is None:
                raise
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise WeightsRefused(f"weights file {path} does not fit {self.name}: {reason}") from None

    def load_checkpoint(self, checkpoint_path) -> None:
        """Put the checkpoint's parameters into the built model (metrics that take a state dict)."""

    def build(self, device: str, checkpoint_path=None, weights_dir=None, **overrides: Any) -> None:
        """Create the pyiqa model on ``device``. Tests call this directly to get an architecture
        without a checkpoint (``overrides``: extra ``create_metric`` arguments, e.g. fewer layers)."""
        import pyiqa  # seconds to import: only when a pyiqa method actually runs
        import torch

        from .fast_filter import install

        install()  # float64 Gaussian normalisation without torch's slow float64 convolution (same values)
        self.device = compute_device(device, self.float64)
        # pyiqa prints progress to stdout, where ``score`` writes its CSV.
        with contextlib.redirect_stdout(sys.stderr), safe_pyiqa_build(weights_dir, self.download_timeout, self.metric):
            self.model = pyiqa.create_metric(self.metric, device=self.device, **self.metric_kwargs(checkpoint_path), **overrides)
        if checkpoint_path is not None:
            self.load_checkpoint(checkpoint_path)
        self.model.eval()
        self.dtype = torch.float64 if self.float64 else torch.float32

    def score_batch(self, batch: Batch):
        import torch

        if self.model is None:
            raise RuntimeError(f"{self.name}: setup() was not called")
        images = batch.images.to(self.device, self.dtype)
        with torch.inference_mode():
            scores = self.model(images, **self.forward_kwargs(batch))
        return scores.reshape(images.shape[0]).to("cpu", torch.float64)

    def forward_kwargs(self, batch: Batch) -> dict[str, Any]:
        """Extra keyword arguments for the pyiqa model's forward (pyiqa passes them to its network)."""
        return {}

    def teardown(self) -> None:
        self.model = None
        if str(getattr(self, "device", "cpu")).startswith("cuda"):
            import torch

            torch.cuda.empty_cache()


def _size(batch: Batch) -> tuple[int, int]:
    """(height, width) of a batch's images: a tensor [B, C, H, W] or numpy pixels [B, H, W, C]."""
    images = batch.images
    return tuple(images.shape[1:3]) if type(images).__module__ == "numpy" else tuple(images.shape[-2:])


def _cpu(images):
    return images if type(images).__module__ == "numpy" else images.to("cpu")


def _as_runner_scores(scores):
    """Scores of numpy pixels rounded as the runner rounds a tensor of scores (float32:
    :func:`diqa_bench.batch_loop.to_floats`), so that a file, bytes or a PIL image of the same
    pixels get the same number, the one these methods always gave."""
    if type(scores).__module__ == "numpy":
        return scores.astype("float32")
    return scores


def _as_tensors(batch: Batch) -> Batch:
    """A batch of numpy pixels (:meth:`Method.numpy_pixels`) as the runner's tensors would hold
    it (float32 [B, 3, H, W] in [0, 1]: uint8 / 255 in float32), for pyiqa's own function."""
    if type(batch.images).__module__ != "numpy":
        return batch
    import dataclasses

    import numpy as np
    import torch

    pixels = batch.images
    if pixels.dtype == np.uint8:
        pixels = np.divide(pixels, np.float32(255.0), dtype=np.float32)
    return dataclasses.replace(batch, images=torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).permute(0, 3, 1, 2).contiguous())


def read_brisque_weights(checkpoint_path):
    """BRISQUE's SVR parameters (coefficients (n,), support vectors (n, 36)), read as tensors only
    and shape-checked: a file that does not fit is refused once, with one line."""
    from diqa_bench.torch_files import load_arrays

    content = load_arrays(checkpoint_path)  # numpy arrays, without importing torch
    if content is None:
        content = load_tensors(checkpoint_path)
    if not (isinstance(content, (tuple, list)) and len(content) == 2 and all(hasattr(t, "shape") for t in content)):
        raise WeightsRefused(f"weights file {checkpoint_path} is not BRISQUE's (expected a pair of tensors: SVM coefficients, support vectors)")
    # Refused once here, not as a shape error on every image: n coefficients, n x 36 support vectors.
    coef, vectors = content
    if not (coef.ndim == 1 and vectors.ndim == 2 and vectors.shape == (coef.shape[0], BRISQUE_FEATURES) and coef.shape[0] > 0):
        raise WeightsRefused(f"weights file {checkpoint_path} is not BRISQUE's: tensors of shape {tuple(coef.shape)} and {tuple(vectors.shape)}, "
                             f"expected (n,) and (n, {BRISQUE_FEATURES})")
    return coef, vectors


class Brisque(PyiqaMetric):
    name = "brisque"
    metric = "brisque"
    checkpoint = "brisque_svm_weights.pth"
    float64 = True

    def metric_kwargs(self, checkpoint_path) -> dict[str, Any]:
        if checkpoint_path is None:
            return {}
        # Checked here, with one line if it does not fit; pyiqa then reads the same file, with
        # torch.load forced to weights_only=True.
        read_brisque_weights(checkpoint_path)
        return {"pretrained_model_path": str(checkpoint_path)}

    def setup(self, ctx: MethodContext) -> None:
        # float64 on the CPU: fast_brisque gives pyiqa's scores without pyiqa, whose import costs
        # every scoring process seconds, nor torch; pyiqa's model is built only for a batch it declines.
        self.device = compute_device(ctx.device, self.float64)
        self._ctx, self.svr_params = ctx, None
        if not self._fast_path:
            super().setup(ctx)
            return
        path = resolve_weights(self.checkpoint, self.weights, ctx.weights_dir, self.download_timeout)
        self.svr_params = read_brisque_weights(path)

    @property
    def _fast_path(self) -> bool:
        return self.float64 and str(self.device) == "cpu"

    def numpy_pixels(self) -> bool:
        return getattr(self, "svr_params", None) is not None

    def score_batch(self, batch: Batch):
        height, width = _size(batch)
        from .features import BRISQUE_MIN

        if min(height, width) < BRISQUE_MIN:
            raise DataError(f"{batch.paths[0]}: BRISQUE needs at least {BRISQUE_MIN}x{BRISQUE_MIN} pixels, got {height}x{width}")
        if getattr(self, "svr_params", None) is not None:
            from .fast_brisque import brisque_scores

            # pixels go in as they are (uint8, float32): widened a strip of one channel at a time
            scores = brisque_scores(_cpu(batch.images), *self.svr_params)
            if scores is not None:
                return _as_runner_scores(scores)
            if self.model is None:  # pyiqa's own function for what the fast path declines
                super().setup(self._ctx)
        return super().score_batch(_as_tensors(batch))


def read_niqe_params(checkpoint_path):
    """NIQE's pristine model (mean (36,), covariance (36, 36)) from its MATLAB file, shape-checked:
    a file that does not fit is refused once, with one line."""
    import numpy as np

    from .matfile import read_numeric

    params = read_numeric(checkpoint_path)  # without importing scipy (seconds); None: scipy reads it, or says why not
    try:
        if params is None:
            import scipy.io

            params = scipy.io.loadmat(str(checkpoint_path))
    except Exception as exc:  # noqa: BLE001 - a file that is no MATLAB file fails in many ways
        raise WeightsRefused(f"weights file {checkpoint_path} is not NIQE's: not a readable MATLAB file ({' '.join(str(exc).split())[:120] or type(exc).__name__})") from None
    mu, cov = params.get("mu_prisparam"), params.get("cov_prisparam")
    if not (isinstance(mu, np.ndarray) and isinstance(cov, np.ndarray) and mu.size == NIQE_FEATURES and cov.shape == (NIQE_FEATURES, NIQE_FEATURES)
            and np.issubdtype(mu.dtype, np.number) and np.issubdtype(cov.dtype, np.number)):
        found = ", ".join(f"{k} {getattr(v, 'shape', '?')}" for k, v in params.items() if not k.startswith("__")) or "nothing"
        raise WeightsRefused(f"weights file {checkpoint_path} is not NIQE's: expected mu_prisparam (1, {NIQE_FEATURES}) and "
                             f"cov_prisparam ({NIQE_FEATURES}, {NIQE_FEATURES}), found {found}")
    return np.ravel(mu), cov


class Niqe(PyiqaMetric):
    name = "niqe"
    metric = "niqe"
    checkpoint = "niqe_modelparameters.mat"
    float64 = True

    def metric_kwargs(self, checkpoint_path) -> dict[str, Any]:
        if checkpoint_path is None:
            return {}
        # Refused once here, not as a shape error on every image: the pristine model's mean (36)
        # and covariance (36 x 36) of the NSS features.
        read_niqe_params(checkpoint_path)
        return {"pretrained_model_path": str(checkpoint_path)}

    def setup(self, ctx: MethodContext) -> None:
        # float64 on the CPU: fast_niqe gives pyiqa's scores without pyiqa or torch (as Brisque does)
        self.device = compute_device(ctx.device, self.float64)
        self._ctx, self.pristine_params = ctx, None
        if not self._fast_path:
            super().setup(ctx)
            return
        path = resolve_weights(self.checkpoint, self.weights, ctx.weights_dir, self.download_timeout)
        self.pristine_params = read_niqe_params(path)

    @property
    def _fast_path(self) -> bool:
        return self.float64 and str(self.device) == "cpu"

    def numpy_pixels(self) -> bool:
        return getattr(self, "pristine_params", None) is not None

    def score_batch(self, batch: Batch):
        height, width = _size(batch)
        if min(height, width) < 96:  # NIQE fits a Gaussian to 96x96 blocks; pyiqa fails obscurely below
            raise DataError(f"{batch.paths[0]}: NIQE needs at least 96x96 pixels, got {height}x{width}")
        if getattr(self, "pristine_params", None) is not None:
            from .fast_niqe import niqe_scores

            scores = niqe_scores(_cpu(batch.images), *self.pristine_params)
            if scores is not None:
                return _as_runner_scores(scores)
            if self.model is None:  # pyiqa's own function for what the fast path declines
                super().setup(self._ctx)
        return super().score_batch(_as_tensors(batch))


class Piqe(PyiqaMetric):
    name = "piqe"
    metric = "piqe"
    float64 = True
    options_schema: ClassVar[dict[str, Any]] = {"precision": PRECISION_OPTION}  # PIQE has no parameters to load

    def setup(self, ctx: MethodContext) -> None:
        # float64 on the CPU: fast_piqe gives pyiqa's scores without pyiqa, whose import costs every
        # scoring process seconds, nor torch for numpy pixels; pyiqa's model is built only for a
        # batch the fast path declines.
        self.device = compute_device(ctx.device, self.float64)
        self._ctx = ctx
        if not self._fast_path:
            super().setup(ctx)

    @property
    def _fast_path(self) -> bool:
        return self.float64 and str(self.device) == "cpu"

    def build(self, device: str, checkpoint_path=None, weights_dir=None, **overrides: Any) -> None:
        super().build(device, checkpoint_path, weights_dir, **overrides)
        from .fast_piqe import install

        install(self.model.net)  # float64 on the CPU: pyiqa's scores without its masks and copies

    def numpy_pixels(self) -> bool:
        return getattr(self, "_ctx", None) is not None and self._fast_path

    def score_batch(self, batch: Batch):
        height, width = _size(batch)
        if min(height, width) < 8:  # pyiqa pads by the remainder of 16: below 8 pixels no block is left, and it fails obscurely
            raise DataError(f"{batch.paths[0]}: PIQE needs at least 8x8 pixels, got {height}x{width}")
        if self.numpy_pixels() and type(batch.images).__module__ == "numpy":
            from .fast_piqe import piqe_scores

            scores = piqe_scores(batch.images)
            if scores is not None:
                return _as_runner_scores(scores)
            batch = _as_tensors(batch)  # pyiqa's own function for what the fast path declines
        if getattr(self, "_ctx", None) is not None and self._fast_path:
            import torch

            from .fast_piqe import piqe_scores

            with torch.inference_mode():
                scores = piqe_scores(batch.images.to("cpu", torch.float64), batch.images.dtype == torch.float32)
            if scores is not None:
                return scores
            if self.model is None:  # pyiqa's own function for what the fast path declines (e.g. tiny images)
                super().setup(self._ctx)
        return super().score_batch(batch)

    def forward_kwargs(self, batch: Batch) -> dict[str, Any]:
        import torch

        # float32 pixels widened to float64: the fast path's RGB->Y then matches pyiqa's for batches too
        return {"float32_pixels": batch.images.dtype == torch.float32}


class Musiq(PyiqaMetric):
    """MUSIQ (multi-scale transformer) with KonIQ-10k weights. Accepts any image size natively."""

    name = "musiq"
    metric = "musiq"
    checkpoint = "musiq_koniq_ckpt-e95806b9.pth"
    head_classes: ClassVar[int] = 1  # AVA predicts a 10-bin score distribution

    def metric_kwargs(self, checkpoint_path) -> dict[str, Any]:
        # The state dict is loaded by load_checkpoint, never by pyiqa (which unpickles it unsafely);
        # with an explicit head size and pretrained=False pyiqa downloads nothing either.
        return {"pretrained": False, "num_class": self.head_classes}

    def load_checkpoint(self, checkpoint_path) -> None:
        from pyiqa.archs.arch_util import clean_state_dict

        state = load_tensors(checkpoint_path)
        if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
            raise WeightsRefused(f"weights file {checkpoint_path} is not a MUSIQ state dict (expected parameter name -> tensor)")
        try:
            self.model.net.load_state_dict(clean_state_dict(state), strict=True)
        except RuntimeError as exc:
            reason = " ".join(str(exc).split())[:200]
            raise WeightsRefused(f"weights file {checkpoint_path} does not fit {self.name}: {reason}") from None


class MusiqSpaq(Musiq):
    name = "musiq-spaq"
    metric = "musiq-spaq"
    checkpoint = "musiq_spaq_ckpt-358bb6af.pth"


class MusiqAva(Musiq):
    name = "musiq-ava"
    metric = "musiq-ava"
    checkpoint = "musiq_ava_ckpt-e8d3f067.pth"
    head_classes = 10


class MusiqPaq2piq(Musiq):
    name = "musiq-paq2piq"
    metric = "musiq-paq2piq"
    checkpoint = "musiq_paq2piq_ckpt-364c0c84.pth"


class PyiqaAny(PyiqaMetric):
    """Any pyiqa no-reference metric: ``{name: pyiqa, options: {metric: topiq_nr, metric_options: {...}}}``.

    Weights: the ``weights`` option is passed as ``pretrained_model_path``; any other file pyiqa
    asks for is read in place from the weights folder, diqa-bench's download folder or pyiqa's cache,
    refused when offline, and downloaded with a timeout otherwise. Every torch file is loaded with
    ``weights_only=True`` (see :func:`diqa_pyiqa.weights.safe_pyiqa_build`)."""

    name = "pyiqa"
    description = "any pyiqa no-reference metric (option metric)"
    options_schema: ClassVar[dict[str, Any]] = {
        "metric": {"type": "string", "description": "pyiqa metric name, e.g. topiq_nr"},
        "metric_options": {"type": "object", "description": "keyword arguments for pyiqa.create_metric"},
        "precision": PRECISION_OPTION,
        "weights": WEIGHTS_OPTION,
        "download_timeout": TIMEOUT_OPTION,
    }
    required_options: ClassVar[list[str]] = ["metric"]

    def __init__(self, metric: str, metric_options: dict | None = None, precision: str = "auto", **options: Any) -> None:
        if metric not in default_configs():
            raise UserError(f"pyiqa has no metric {metric!r}; no-reference metrics: {', '.join(no_reference_metrics())}")
        info = metric_info(metric)
        if info.mode != "NR":
            raise UserError(f"pyiqa metric {metric!r} is full-reference; diqa-bench scores without reference images")
        super().__init__(metric=metric, metric_options=dict(metric_options or {}), precision=precision, **options)
        self.metric = metric
        self.metric_options = dict(metric_options or {})
        self.precision = precision
        self.lower_better = info.lower_better
        self.score_range = info.score_range

    def weight_files(self, ctx: MethodContext) -> list[Path]:
        """The ``weights`` file, and every file of the metric's pyiqa architecture found where
        setup would look (pyiqa picks among them by its options, unknown before it is built)."""
        from .metadata import arch_weight_files

        explicit = [Path(self.weights).expanduser()] if self.weights else []
        found = [find_weights(name, None, ctx.weights_dir) for name in arch_weight_files(self.metric)]
        return [p for p in explicit if p.is_file()] + [p for p in found if p is not None]

    def metric_kwargs(self, checkpoint_path) -> dict[str, Any]:
        kwargs = dict(self.metric_options)
        if checkpoint_path:
            kwargs["pretrained_model_path"] = str(checkpoint_path)
        return kwargs

    def setup(self, ctx: MethodContext) -> None:
        path = _explicit_file(self.weights) if self.weights else None
        try:
            self.build(ctx.device, path, ctx.weights_dir)
        except MethodUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - pyiqa reports missing backbones, files and packages in many ways
            reason = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise MethodUnavailable(f"pyiqa {self.metric} cannot be created: {reason}") from None

    def build(self, device: str, checkpoint_path=None, weights_dir=None, **overrides: Any) -> None:
        self.float64 = self.precision == "float64"
        super().build(device, checkpoint_path, weights_dir, **overrides)
        if self.precision == "auto" and not any(p.numel() for p in self.model.net.parameters()):
            import torch

            self.float64, self.dtype = True, torch.float64
            self.device = compute_device(self.device, True)
            self.model.to(self.device)


def _explicit_file(path: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise MethodUnavailable(f"weights file {p} not found")
    return p


ZERO_SHOT_METHODS = [Brisque, Niqe, Piqe, Musiq, MusiqSpaq, MusiqAva, MusiqPaq2piq, PyiqaAny]
__all__ = [cls.__name__ for cls in ZERO_SHOT_METHODS] + ["PyiqaMetric", "where_to_put"]
