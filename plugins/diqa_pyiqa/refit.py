"""Classical models refitted on a train set: the classical side of cross-domain training.

- ``brisque-fit``: pyiqa's BRISQUE features -> [-1, 1] min-max scaling -> epsilon-SVR (RBF kernel,
  scikit-learn) on the normalised MOS. C, gamma and epsilon are chosen by group-aware k-fold
  cross-validation on the train set only (``diqa_bench.splits.group_kfold``), by the Spearman
  correlation of the pooled out-of-fold predictions (ties: lower RMSE).
- ``niqe-fit``: pyiqa's NIQE block features of the train images whose normalised MOS is at or above
  a quantile (the train set's "pristine" images) -> a new mean and covariance; scores are NIQE
  distances to that Gaussian (lower is better, as NIQE). Unlike the original NIQE training, every
  96x96 block of those images is used (no sharpness-based patch selection).

Features are computed once per image (float64) and cached by image content hash under a namespace
naming the extractor and pyiqa version, so refitting on another train set extracts nothing new.
Fitted models are saved as plain arrays (``model.npz`` + ``model.json``), not pickles, and both
fitting and loading score through the same numpy code.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from diqa_bench.errors import UserError
from diqa_bench.methods import Batch, Method, MethodContext, TrainingData

from . import features
from .metadata import metric_info
from .zero_shot import compute_device

DEFAULT_C_GRID = [1.0, 10.0, 100.0]
DEFAULT_GAMMA_GRID = [0.01, 0.05, 0.2]
DEFAULT_EPSILON_GRID = [0.01, 0.05, 0.1]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def _grid_option(description: str) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 1, "description": description}


class _RefitMethod(Method):
    trainable = True
    kind_name: ClassVar[str] = ""  # feature cache kind
    model_file = "model.npz"
    meta_file = "model.json"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.cache = None
        self.device = "cpu"
        self.fitted = False

    @classmethod
    def licences(cls, options=None):
        from .licences import pyiqa_code

        return [pyiqa_code()]  # features computed by pyiqa's code; the fit is the run's own

    def setup(self, ctx: MethodContext) -> None:
        self.device = compute_device(ctx.device, True)
        self.batch_size = ctx.batch_size
        self.cache = ctx.feature_cache(features.feature_namespace(self.kind_name))

    def _features_of(self, batch: Batch) -> list[np.ndarray]:
        if self.cache is None:
            raise RuntimeError(f"{self.name}: setup() was not called")
        if not self.fitted:
            raise RuntimeError(f"{self.name}: fit() or load() first")
        return features.cached_batch_features(self.cache, self.extract, batch, self.device)

    def score_batch(self, batch: Batch):
        return self._score_features(self._features_of(batch))

    def score_from_cache(self, keys: list[str]) -> dict[str, float]:
        # features were cached when the image was seen by any fit or cell: no decoding needed
        if self.cache is None or not self.fitted:
            return {}
        found = self.cache.get_many(keys)
        have = [k for k in dict.fromkeys(keys) if k in found]
        if not have:
            return {}
        return dict(zip(have, map(float, self._score_features([np.asarray(found[k]) for k in have]))))

    def _score_features(self, feats: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def _train_features(self, data: TrainingData, ctx: MethodContext) -> list[np.ndarray]:
        if self.cache is None:
            self.setup(ctx)
        if len(data) == 0:
            raise UserError(f"{self.name}: the train set is empty")
        return features.training_features(self.cache, self.extract, data, self.device, ctx.batch_size)

    def _write(self, folder: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / self.model_file, **arrays)
        meta = {"method": self.name, "version": self.version, "features": features.feature_namespace(self.kind_name), **meta}
        (folder / self.meta_file).write_text(json.dumps(meta, indent=2, sort_keys=True))

    def _read(self, folder: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        folder = Path(folder)
        if not (folder / self.model_file).is_file() or not (folder / self.meta_file).is_file():
            raise UserError(f"{folder}: not a saved {self.name} model (needs {self.model_file} and {self.meta_file})")
        try:
            meta = json.loads((folder / self.meta_file).read_text())
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise UserError(f"{folder / self.meta_file}: damaged model file ({type(exc).__name__}: {_one_line(exc)})") from None
        if meta.get("method") != self.name:
            raise UserError(f"{folder}: holds a {meta.get('method')} model, not {self.name}")
        try:
            with np.load(folder / self.model_file, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # truncated or overwritten
            raise UserError(f"{folder / self.model_file}: damaged model file ({type(exc).__name__}: {_one_line(exc)})") from None
        self.fitted = True
        return arrays, meta


class BrisqueFit(_RefitMethod):
    name = "brisque-fit"
    version = "1"
    description = "BRISQUE features + epsilon-SVR refitted on the train set (group-aware CV)"
    lower_better = False  # predicts the normalised MOS: higher is better
    score_range = (0.0, 1.0)
    kind_name = "brisque-features"
    options_schema: ClassVar[dict[str, Any]] = {
        "cv_folds": {"type": "integer", "minimum": 2, "description": "group-aware CV folds for the hyperparameters"},
        "C_grid": _grid_option("SVR C values to try"),
        "gamma_grid": _grid_option("RBF gamma values to try (features scaled to [-1, 1])"),
        "epsilon_grid": _grid_option("SVR epsilon values to try (target: MOS normalised to [0, 1])"),
    }
    extract = staticmethod(lambda images, paths: features.brisque_features(images, paths))

    def __init__(self, cv_folds: int = 5, C_grid=None, gamma_grid=None, epsilon_grid=None, **options: Any) -> None:
        super().__init__(cv_folds=cv_folds, C_grid=C_grid, gamma_grid=gamma_grid, epsilon_grid=epsilon_grid, **options)
        self.cv_folds = cv_folds
        self.grid = [
            (c, g, e)
            for c in (C_grid or DEFAULT_C_GRID)
            for g in (gamma_grid or DEFAULT_GAMMA_GRID)
            for e in (epsilon_grid or DEFAULT_EPSILON_GRID)
        ]

    def fit(self, data: TrainingData, ctx: MethodContext) -> None:
        X = np.stack(self._train_features(data, ctx))
        y = np.array([s.mos_norm for s in data.samples], dtype=np.float64)
        groups = [s.group for s in data.samples]
        self.cv_report = self._select(X, y, groups, ctx.seed)
        C, gamma, epsilon = self.cv_report["C"], self.cv_report["gamma"], self.cv_report["epsilon"]
        self._set_model(*_fit_svr(X, y, C, gamma, epsilon))
        self.n_train = len(y)

    def _select(self, X: np.ndarray, y: np.ndarray, groups: list[str], seed: int) -> dict[str, Any]:
        from scipy.stats import spearmanr

        from diqa_bench.splits import group_kfold

        if len(set(groups)) < 2:  # no held-out group to validate on: the grid's middle values
            C, gamma, epsilon = self.grid[len(self.grid) // 2]
            return {"C": C, "gamma": gamma, "epsilon": epsilon, "cv_srocc": None, "cv_rmse": None}
        folds = group_kfold(groups, self.cv_folds, seed)
        best: tuple | None = None
        for C, gamma, epsilon in self.grid:
            pred = np.empty_like(y)
            for train, val in folds:
                pred[val] = _predict(X[val], *_fit_svr(X[train], y[train], C, gamma, epsilon))
            srocc = spearmanr(pred, y).statistic if np.ptp(pred) > 0 else -1.0
            srocc = -1.0 if np.isnan(srocc) else float(srocc)
            rmse = float(np.sqrt(np.mean((pred - y) ** 2)))
            if best is None or (srocc, -rmse) > (best[0], -best[1]):
                best = (srocc, rmse, C, gamma, epsilon)
        srocc, rmse, C, gamma, epsilon = best
        return {"C": C, "gamma": gamma, "epsilon": epsilon, "cv_srocc": srocc, "cv_rmse": rmse, "cv_folds": len(folds)}

    def _set_model(self, lo, scale, sv, coef, intercept, gamma) -> None:
        self.params = (np.asarray(lo), np.asarray(scale), np.asarray(sv), np.asarray(coef), float(intercept), float(gamma))
        self.fitted = True

    def _score_features(self, feats: list[np.ndarray]) -> np.ndarray:
        return _predict(np.stack(feats), *self.params)

    def save(self, folder: Path) -> None:
        lo, scale, sv, coef, intercept, gamma = self.params
        arrays = {"feature_min": lo, "feature_scale": scale, "support_vectors": sv, "dual_coef": coef, "intercept": np.array(intercept), "gamma": np.array(gamma)}
        self._write(folder, arrays, {"cv": getattr(self, "cv_report", None), "n_train": getattr(self, "n_train", None)})

    def load(self, folder: Path) -> None:
        a, meta = self._read(folder)
        self._set_model(a["feature_min"], a["feature_scale"], a["support_vectors"], a["dual_coef"], a["intercept"], a["gamma"])
        self.cv_report = meta.get("cv")


def _fit_svr(X: np.ndarray, y: np.ndarray, C: float, gamma: float, epsilon: float):
    """Fit min-max scaling to [-1, 1] and an RBF epsilon-SVR; return plain arrays for ``_predict``."""
    from sklearn.svm import SVR

    lo, hi = X.min(axis=0), X.max(axis=0)
    scale = 2.0 / np.where(hi > lo, hi - lo, 1.0)
    Xs = (X - lo) * scale - 1.0
    svr = SVR(kernel="rbf", C=C, gamma=gamma, epsilon=epsilon).fit(Xs, y)
    return lo, scale, svr.support_vectors_, svr.dual_coef_.ravel(), float(svr.intercept_[0]), gamma


def _predict(X, lo, scale, sv, coef, intercept, gamma) -> np.ndarray:
    Xs = (np.asarray(X, dtype=np.float64) - lo) * scale - 1.0
    sq = (Xs**2).sum(1)[:, None] + (sv**2).sum(1)[None, :] - 2.0 * Xs @ sv.T
    return np.exp(-gamma * np.maximum(sq, 0.0)) @ coef + intercept


class NiqeFit(_RefitMethod):
    name = "niqe-fit"
    version = "1"
    description = "NIQE with its pristine Gaussian refitted on the train set's best-rated images"
    lower_better = metric_info("niqe").lower_better
    score_range = metric_info("niqe").score_range
    kind_name = "niqe-block-features"
    options_schema: ClassVar[dict[str, Any]] = {
        "quantile": {"type": "number", "minimum": 0, "maximum": 1, "description": "pristine = normalised MOS at or above this quantile"},
    }
    extract = staticmethod(lambda images, paths: list(features.niqe_block_features(images, paths)))

    def __init__(self, quantile: float = 0.75, **options: Any) -> None:
        super().__init__(quantile=quantile, **options)
        self.quantile = quantile

    def fit(self, data: TrainingData, ctx: MethodContext) -> None:
        feats = self._train_features(data, ctx)
        mos = np.array([s.mos_norm for s in data.samples], dtype=np.float64)
        threshold = float(np.quantile(mos, self.quantile))
        chosen = [f for f, m in zip(feats, mos) if m >= threshold]
        blocks = np.concatenate(chosen)
        blocks = blocks[~np.isnan(blocks).any(axis=1)]
        if len(blocks) <= blocks.shape[1]:
            raise UserError(
                f"niqe-fit: {len(chosen)} images at or above the {self.quantile} MOS quantile give {len(blocks)} "
                f"usable 96x96 blocks; at least {blocks.shape[1] + 1} are needed (lower quantile or larger images)"
            )
        self.mu, self.cov = blocks.mean(axis=0), np.cov(blocks, rowvar=False)
        self.fit_info = {"pristine_images": len(chosen), "blocks": len(blocks), "mos_norm_threshold": threshold}
        self.fitted = True

    def set_model(self, mu: np.ndarray, cov: np.ndarray) -> None:
        """Use a given pristine Gaussian (e.g. pyiqa's LIVE parameters)."""
        self.mu, self.cov = np.ravel(np.asarray(mu, dtype=np.float64)), np.asarray(cov, dtype=np.float64)
        self.fitted = True

    def _score_features(self, feats: list[np.ndarray]) -> np.ndarray:
        return np.array([features.niqe_distance(f, self.mu, self.cov) for f in feats])

    def save(self, folder: Path) -> None:
        self._write(folder, {"mu_prisparam": self.mu, "cov_prisparam": self.cov}, {"fit": getattr(self, "fit_info", None), "quantile": self.quantile})

    def load(self, folder: Path) -> None:
        a, _ = self._read(folder)
        self.set_model(a["mu_prisparam"], a["cov_prisparam"])
