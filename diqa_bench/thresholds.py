"""Acceptability cuts of a run, as files a gate reads.

- ``<run>/thresholds.json``: every cell's cut, zero-shot methods included (:func:`write_run_thresholds`);
- ``models/<method>@<train>/seed<k>/threshold.json``: the cuts of each saved fitted model
  (:func:`write_thresholds`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diqa_bench.files import atomic_write
from diqa_bench.errors import DataError, UserError


RUN_THRESHOLDS = "thresholds.json"


def train_accept_rate(train_scores, cut: float, lower_better: bool) -> float:
    """:func:`diqa_bench.metrics.train_accept_rate` (imported on call: ``score`` reads cuts without scipy)."""
    from diqa_bench.metrics import train_accept_rate as rate  # lazy: loads scipy, importlib.metadata (plugin discovery)

    return rate(train_scores, cut, lower_better)


def write_run_thresholds(out: Path, outcomes, details: dict) -> Path | None:
    """``<out>/thresholds.json``: every cell's acceptability cut, zero-shot methods included
    (they have no model folder), with the share of its train split it accepts; what ``score
    --threshold auto:DOMAIN --run <out>`` and ``load_gate(..., run=<out>)`` read."""
    cuts = []
    for o in outcomes:
        info = details.get((o.method, o.train, o.test, o.seed), {})
        if o.status != "ok" or info.get("threshold") is None:
            continue
        cuts.append({"method": o.method, "train": o.train, "test": o.test, "seed": o.seed, "threshold": info["threshold"],
                     "lower_better": bool(o.lower_better), "train_accept": info.get("train_accept")})
    if not cuts:
        return None
    doc = {"rule": "accept when the score is at least as good as the threshold (>= when higher is better, <= when lower is better)",
           "chosen_on": "the train split of each test domain (best accuracy there), per split seed",
           "train_accept": "share of that train split the cut accepts: 1.0 accepts everything, 0.0 rejects everything",
           "cuts": cuts}
    path = out / RUN_THRESHOLDS
    atomic_write(path, json.dumps(doc, indent=1))
    return path


def write_thresholds(out: Path, outcomes, details: dict) -> list[Path]:
    """``models/<method>@<train>/seed<k>/threshold.json`` for every fitted model the run saved:
    the acceptability cut chosen on each test domain's train split, in the method's score units,
    for ``diqa-bench score --threshold auto``."""
    grouped: dict[tuple[str, str, int], dict[str, Any]] = {}
    accepted: dict[tuple[str, str, int], dict[str, Any]] = {}
    lower: dict[tuple[str, str, int], bool] = {}
    for o in outcomes:
        info = details.get((o.method, o.train, o.test, o.seed), {})
        cut = info.get("threshold")
        if o.train == "-" or o.status != "ok" or cut is None:
            continue
        grouped.setdefault((o.method, o.train, o.seed), {})[o.test] = cut
        accepted.setdefault((o.method, o.train, o.seed), {})[o.test] = info.get("train_accept")
        lower[(o.method, o.train, o.seed)] = bool(o.lower_better)
    written = []
    for (method, train, seed), cuts in grouped.items():
        from diqa_bench.grid import model_folder  # lazy: loads yaml, importlib.metadata (plugin discovery)

        folder = out / "models" / model_folder(method, train) / f"seed{seed}"
        if not folder.is_dir():  # no saved model here (e.g. fitted elsewhere): the cut stays in metrics.csv
            continue
        doc = {"method": method, "train": train, "seed": seed, "lower_better": lower[(method, train, seed)],
               "rule": "accept when the score is at least as good as the threshold (>= when higher is better, <= when lower is better)",
               "chosen_on": "the train split of each test domain (best accuracy there)", "thresholds": cuts,
               "train_accept": accepted[(method, train, seed)]}
        atomic_write(folder / "threshold.json", json.dumps(doc, indent=1))
        written.append(folder / "threshold.json")
    return written


# -- deployable models (config ``deploy``) ------------------------------------------------------------
DEPLOY = "deploy"  # models/<method>@<train>/deploy/, and the key of thresholds.json's zero-shot deployable cuts
DEPLOY_CHOSEN_ON = "k-fold cross-validation over content groups of all train content"
RULE = "accept when the score is at least as good as the threshold (>= when higher is better, <= when lower is better)"
SIZE_FACTOR = 4.0  # an input whose pixel count is this far outside the sizes a cut was chosen on is reported


def image_sizes(paths) -> dict[str, Any] | None:
    """The sizes of the images a cut was chosen on, from their headers: pixel counts (min, median,
    max) and the smallest and largest as ``WxH``; None when no header could be read."""
    from diqa_bench.images import probe_size  # lazy: loads PIL

    found = []
    for p in dict.fromkeys(paths):
        try:
            h, w = probe_size(p)
        except (DataError, OSError):
            continue
        found.append((w * h, w, h))
    if not found:
        return None
    found.sort()
    px = np.array([f[0] for f in found], float)
    return {"images": len(found), "pixels": {"min": int(px.min()), "median": float(np.median(px)), "max": int(px.max())},
            "smallest": f"{found[0][1]}x{found[0][2]}", "largest": f"{found[-1][1]}x{found[-1][2]}"}


def size_note(width: int, height: int, sizes: dict[str, Any] | None, factor: float = SIZE_FACTOR) -> str:
    """One line when an input of ``width`` x ``height`` has more than ``factor`` times the pixels
    of the largest image the cut was chosen on, or less than 1/``factor`` of the smallest; else ""."""
    try:
        low, high = float(sizes["pixels"]["min"]), float(sizes["pixels"]["max"])
    except (TypeError, KeyError, ValueError):
        return ""
    px = float(width) * float(height)
    if low / factor <= px <= high * factor:
        return ""
    return (f"cut chosen on {sizes.get('smallest', '?')}..{sizes.get('largest', '?')} images; this one is {width}x{height}: "
            "the score scale may differ")


@dataclass
class Scale:
    """A method's score read on a stated scale, fitted on the scores that chose its cut.

    ``predicted_mos(s) = mos_sign * f(score_sign * s)``, with ``f`` the monotonically increasing
    VQEG logistic (:func:`diqa_bench.stats.fit_logistic`, the PLCC mapping; its linear fallback
    when the logistic cannot be fitted) from direction-aligned score to direction-aligned MOS.
    ``p_acceptable(s) = 1 / (1 + exp(-(a + b z)))``, ``z = (score_sign * s - mu) / sd``: a
    logistic regression of the accept label (MOS at least as good as the acceptability threshold)
    on the score, maximum likelihood with ``b >= 0`` (never decreasing in the aligned score) and
    ``b <= 50`` per standard deviation (finite when the labels are perfectly separated).
    ``score_sign`` is -1 for lower-is-better methods, ``mos_sign`` -1 for DMOS-style labels."""

    score_sign: float
    mos_sign: float
    mapping: Any  # _StoredMapping: stats.Mapping's kind and params, evaluated without scipy
    a: float
    b: float
    mu: float
    sd: float

    def predicted_mos(self, score: float) -> float:
        return float(self.mos_sign * self.mapping(np.asarray([self.score_sign * score], float))[0])

    def p_acceptable(self, score: float) -> float:
        z = (self.score_sign * score - self.mu) / self.sd
        return float(1.0 / (1.0 + np.exp(-np.clip(self.a + self.b * z, -500, 500))))

    @classmethod
    def from_doc(cls, doc: Any) -> "Scale | None":
        """The scale stored in a threshold file (``scale`` of one domain), or None when absent or unreadable."""
        try:
            m, p = doc["mos_mapping"], doc["p_acceptable"]
            scale = cls(float(doc["score_sign"]), float(doc["mos_sign"]), _StoredMapping(str(m["kind"]), [float(v) for v in m["params"]]),
                        float(p["a"]), float(p["b"]), float(p["mu"]), float(p["sd"]))
        except (TypeError, KeyError, ValueError):
            return None
        values = [scale.score_sign, scale.mos_sign, scale.a, scale.b, scale.mu, scale.sd, *scale.mapping.params]
        return scale if all(np.isfinite(values)) and scale.sd > 0 and scale.mapping.kind in ("logistic4", "linear") else None


@dataclass
class _StoredMapping:
    """A stored :class:`diqa_bench.stats.Mapping` (same formulas), evaluated with numpy alone."""

    kind: str
    params: list[float]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "logistic4":
            b1, b2, b3, b4 = self.params
            return b2 + (b1 - b2) / (1.0 + np.exp(np.clip(-(x - b3) / abs(b4), -500, 500)))
        return self.params[0] * x + self.params[1]


def fit_scale(scores, mos, mos_lower_better, threshold: float, lower_better: bool) -> dict[str, Any] | None:
    """The stored form of a :class:`Scale` fitted on ``scores`` and their ``mos`` (each image's own
    dataset scale and direction; ``threshold``: the acceptability threshold on it); None when the
    labels mix directions or fewer than 3 scores are finite."""
    from scipy import optimize

    from diqa_bench.stats import fit_logistic, unacceptable  # lazy: loads scipy, importlib.metadata (plugin discovery)

    s, m = np.asarray(scores, float), np.asarray(mos, float)
    flip = np.broadcast_to(np.asarray(mos_lower_better, bool), m.shape)
    ok = np.isfinite(s) & np.isfinite(m)
    if ok.sum() < 3 or len(set(flip[ok].tolist())) > 1:
        return None
    s, m, flip = s[ok], m[ok], flip[ok]
    score_sign, mos_sign = (-1.0 if lower_better else 1.0), (-1.0 if flip[0] else 1.0)
    x = score_sign * s
    mapping = fit_logistic(x, mos_sign * m)
    good = ~unacceptable(m, threshold, flip)
    mu, sd = float(x.mean()), float(x.std()) or 1.0
    z = (x - mu) / sd

    def nll(ab):
        t = ab[0] + ab[1] * z
        return float(np.sum(np.logaddexp(0.0, t) - good * t))

    def grad(ab):
        r = 1.0 / (1.0 + np.exp(-np.clip(ab[0] + ab[1] * z, -500, 500))) - good
        return np.array([r.sum(), (r * z).sum()])

    rate = float(np.clip(good.mean(), 1e-3, 1 - 1e-3))
    fit = optimize.minimize(nll, [np.log(rate / (1 - rate)), 1.0], jac=grad, method="L-BFGS-B", bounds=[(-50.0, 50.0), (0.0, 50.0)])
    return {"score_sign": score_sign, "mos_sign": mos_sign,
            "mos_mapping": {"kind": mapping.kind, "params": [float(v) for v in mapping.params], "note": mapping.reason},
            "p_acceptable": {"a": float(fit.x[0]), "b": float(fit.x[1]), "mu": mu, "sd": sd},
            "acceptability_threshold": float(threshold), "mos_direction": "lower is better" if flip[0] else "higher is better",
            "fitted_on": len(s),
            "model": "predicted_mos = mos_sign * VQEG logistic(score_sign * score) (stats.fit_logistic); p_acceptable = "
                     "1 / (1 + exp(-(a + b * (score_sign * score - mu) / sd))), maximum likelihood, 0 <= b <= 50"}


def _deploy_entry(label: str, train: str, outcomes, config, plan, log) -> dict[str, Any] | None:
    """The deployable cut, scale and sizes of one method and train set (or a zero-shot method,
    ``train`` "-") per train domain, from the deploy phase's ``outcomes`` (the folds' out-of-fold
    scores; a zero-shot method's scores of all content). None, with a log line, when a fold failed."""
    from diqa_bench.grid import DEPLOY_ALL  # lazy: loads yaml, importlib.metadata (plugin discovery)
    from diqa_bench.stats import gate_threshold, unacceptable  # lazy: loads scipy, importlib.metadata (plugin discovery)

    by_domain: dict[str, list] = {}
    for o in outcomes:
        if o.status != "ok":
            if not o.images and "has no test images" in o.reason:
                continue  # a domain with fewer content groups than folds: that fold holds none of it
            log(f"deploy: {label} @ {train}: no deployable cut ({o.test}, {'all content' if o.seed == DEPLOY_ALL else f'fold {o.seed}'}: {o.status}: {o.reason})")
            return None
        by_domain.setdefault(o.test, []).append(o)
    doc: dict[str, Any] = {"thresholds": {}, "train_accept": {}, "images": {}, "groups": {}, "sizes": {}, "scale": {}}
    for domain, cells in by_domain.items():
        refs = [r for o in cells for r in o.images]
        scores = np.array([s for o in cells for s in o.scores], float)
        lower = bool(cells[0].lower_better)
        flips = [r.mos_lower_better for r in refs]
        bad = unacceptable([r.mos for r in refs], config.acceptability, flips)
        cut = gate_threshold(scores, bad, lower_better=lower)
        if not np.isfinite(cut):
            continue
        doc["thresholds"][domain] = float(cut)
        doc["train_accept"][domain] = train_accept_rate(scores, cut, lower)
        doc["images"][domain], doc["groups"][domain] = len(refs), len({r.group for r in refs})
        doc["sizes"][domain] = image_sizes([r.path for r in refs])
        doc["scale"][domain] = fit_scale(scores, [r.mos for r in refs], flips, config.acceptability, lower)
        doc["lower_better"] = lower
    return doc if doc["thresholds"] else None


def write_deploy(out: Path, plan, outcomes, config, log=print) -> list[dict[str, Any]]:
    """The deploy phase's files: ``threshold.json`` in every ``models/<method>@<train>/deploy/``
    (the model fitted on all train content; its cut per train domain chosen on the pooled
    out-of-fold scores of a K-fold cross-validation over content groups, with the sizes of those
    images and the stated scale), and the zero-shot methods' deployable cuts under ``deploy`` in
    ``<out>/thresholds.json`` (old readers read only its ``cuts``). Returns the entries written."""
    from diqa_bench.grid import model_folder  # lazy: loads yaml, importlib.metadata (plugin discovery)

    grouped: dict[tuple[str, str], list] = {}
    for o in outcomes:
        grouped.setdefault((o.method, o.train), []).append(o)
    folds = plan.deploy_folds
    written, zero_shot = [], []
    for (label, train), cells in grouped.items():
        entry = _deploy_entry(label, train, cells, config, plan, log)
        if entry is None:
            continue
        base = {"method": label, "train": train, "seed": DEPLOY, "lower_better": entry.pop("lower_better"), "rule": RULE}
        if train == "-":
            for domain, cut in entry["thresholds"].items():
                zero_shot.append({**base, "test": domain, "threshold": cut, "train_accept": entry["train_accept"][domain],
                                  "chosen_on": f"all content of {domain} (a zero-shot method is not fitted: the cut with the best accuracy on every image)",
                                  "images": entry["images"][domain], "groups": entry["groups"][domain],
                                  "sizes": entry["sizes"][domain], "scale": entry["scale"][domain]})
            continue
        folder = out / "models" / model_folder(label, train) / DEPLOY
        if not (folder / "DONE").is_file():
            log(f"deploy: {label} @ {train}: the fit on all train content failed (its reason is in the log above); no deployable model")
            continue
        doc = {**base, "folds": folds, "chosen_on": f"{DEPLOY_CHOSEN_ON}: {folds} folds; the model in this folder is fitted on all of it, the cut "
                                    "(per train domain) is the best-accuracy cut on the pooled out-of-fold scores", **entry}
        atomic_write(folder / "threshold.json", json.dumps(doc, indent=1))
        written.append(doc)
    path = out / RUN_THRESHOLDS
    if zero_shot and path.is_file():
        doc = json.loads(path.read_text())
        doc[DEPLOY] = zero_shot
        doc["deploy_note"] = ("deploy: per zero-shot method and train domain, the cut with the best accuracy on all its content "
                              "(prefer it to the mean of the split seeds' cuts)")
        atomic_write(path, json.dumps(doc, indent=1))
    return written + zero_shot


# -- reading a cut back (score --threshold, load_gate) -------------------------------------------
@dataclass
class Cut:
    """A resolved ``--threshold``: the cut, the note when it accepts or rejects its whole train
    split, where it came from (``source``: one line), and what its file states besides: the
    :class:`Scale` and the sizes of the images it was chosen on (deployable cuts), else None."""

    value: float | None
    note: str = ""
    source: str = ""
    scale: Scale | None = None
    sizes: dict[str, Any] | None = None


def prefer_deploy(folder: str | Path | None) -> str | None:
    """A model path as given, except a ``models/<method>@<train>`` folder that holds no model of
    its own but a ``deploy/`` one: that one."""
    if not folder:
        return None
    path = Path(folder)
    if path.is_dir() and not (path / "DONE").exists() and (path / DEPLOY / "DONE").is_file():
        return str(path / DEPLOY)
    return str(folder)


def read_cut(value: str | float | None, weights: str | None, run: str | None = None, method: str | None = None) -> Cut:
    """``score --threshold``: a number, or ``auto`` / ``auto:DOMAIN`` for the cut a run chose:
    from ``threshold.json`` in the ``--weights`` model folder (a ``deploy/`` folder's is chosen by
    cross-validation over all train content; a ``seed<k>/`` one's on that seed's train split), or,
    with ``run`` (a results folder; zero-shot methods have no model folder), from its
    ``thresholds.json`` for ``method`` (its label in the run): its deployable cut when the run has
    one (config ``deploy``), else the mean of the split seeds' cuts. ``auto`` picks the only
    domain, else the model's own train domain; several candidates need a DOMAIN. The note (else "")
    says when the cut accepts or rejects every image of its train split: such a "gate" decides nothing."""

    if value is None:
        return Cut(None)
    text = str(value).strip()
    if not text.lower().startswith("auto"):
        try:
            cut = float(text)
        except ValueError:
            raise UserError(f"--threshold {text}: expected a number, auto or auto:DOMAIN") from None
        if not math.isfinite(cut):  # a NaN cut rejects every photo, an infinite one accepts or rejects all
            raise UserError(f"--threshold {text}: not a finite number; expected a number, auto or auto:DOMAIN")
        return Cut(cut, source="given")
    domain = text.split(":", 1)[1].strip() if ":" in text else None
    if run and not weights:
        return _run_cut(Path(run), method or "", domain)
    path = Path(weights or "") / "threshold.json"
    if not weights or not path.is_file():
        raise UserError(f"--threshold auto: {'no --weights or --run given' if not weights else f'{weights} has no threshold.json'} "
                        "(a run writes one into models/<method>@<train>/seed<k>/ (and deploy/), and thresholds.json into its folder, "
                        "when its config declares acceptability)")
    try:
        doc = json.loads(path.read_text())
        cuts = {str(k): float(v) for k, v in doc["thresholds"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{path}: not a diqa-bench threshold file ({type(exc).__name__})") from None
    bad = sorted(k for k, v in cuts.items() if not math.isfinite(v))
    if bad:
        raise UserError(f"{path}: the threshold for {', '.join(bad)} is not a finite number; re-run the benchmark to rewrite it")
    if domain is None:
        own = str(doc.get("train", ""))
        if len(cuts) == 1:
            domain = next(iter(cuts))
        elif own in cuts:
            domain = own
        else:
            raise UserError(f"--threshold auto: {path} holds a threshold per test domain ({', '.join(sorted(cuts))}); choose one with --threshold auto:DOMAIN")
    if domain not in cuts:
        raise UserError(f"--threshold auto:{domain}: {path} has thresholds for {', '.join(sorted(cuts)) or 'no domain'}")
    accepted = (doc.get("train_accept") or {}).get(domain) if isinstance(doc.get("train_accept"), dict) else None
    deploy = doc.get("seed") == DEPLOY
    source = (f"{path} ({'deployable cut: ' + DEPLOY_CHOSEN_ON if deploy else 'chosen on the train split of seed ' + str(doc.get('seed'))}, {domain})")
    return Cut(cuts[domain], degenerate_note(cuts[domain], [accepted], domain), source, *_stated(doc, domain))


def _stated(doc: dict, domain: str) -> tuple[Scale | None, dict | None]:
    scale = doc.get("scale") if isinstance(doc.get("scale"), dict) else {}
    sizes = doc.get("sizes") if isinstance(doc.get("sizes"), dict) else {}
    return Scale.from_doc(scale.get(domain)), sizes.get(domain) if isinstance(sizes.get(domain), dict) else None


def _run_cut(run: Path, method: str, domain: str | None) -> Cut:

    path = run / RUN_THRESHOLDS
    if not path.is_file():
        raise UserError(f"--threshold auto: {run} has no {RUN_THRESHOLDS} (a run writes one when its config declares acceptability)")
    try:
        doc = json.loads(path.read_text())
        cuts = [c for c in doc["cuts"] if c["method"] == method and c["train"] == "-"]
        deploy = [c for c in doc.get(DEPLOY) or [] if c["method"] == method]
        for c in cuts + deploy:
            c["threshold"] = float(c["threshold"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{path}: not a diqa-bench thresholds file ({type(exc).__name__})") from None
    domains = sorted({str(c["test"]) for c in cuts + deploy})
    if not domains:
        raise UserError(f"--threshold auto: {path} has no zero-shot cut for {method!r} (a trained method's cut is in its model folder: pass --weights)")
    if domain is None:
        if len(domains) > 1:
            raise UserError(f"--threshold auto: {path} holds a threshold per test domain ({', '.join(domains)}); choose one with --threshold auto:DOMAIN")
        domain = domains[0]
    chosen = [c for c in deploy if str(c["test"]) == domain]
    if chosen:  # the deployable cut, chosen on all the domain's content
        c = chosen[0]
        if not math.isfinite(c["threshold"]):
            raise UserError(f"{path}: the threshold of {method} for {domain} is not a finite number; re-run the benchmark to rewrite it")
        return Cut(c["threshold"], degenerate_note(c["threshold"], [c.get("train_accept")], domain),
                   f"{path} (deployable cut of {method} for {domain}: chosen on all its content)", Scale.from_doc(c.get("scale")),
                   c.get("sizes") if isinstance(c.get("sizes"), dict) else None)
    mine = [c for c in cuts if str(c["test"]) == domain]
    if not mine:
        raise UserError(f"--threshold auto:{domain}: {path} has thresholds of {method} for {', '.join(domains)}")
    cut = float(sum(c["threshold"] for c in mine) / len(mine))  # the leaderboard's seed = all THRESHOLD
    if not math.isfinite(cut):
        raise UserError(f"{path}: the threshold of {method} for {domain} is not a finite number; re-run the benchmark to rewrite it")
    return Cut(cut, degenerate_note(cut, [c.get("train_accept") for c in mine], domain),
               f"{path} (mean of {len(mine)} split seeds' cuts of {method} for {domain})")


def degenerate_note(cut: float, accepted: list, domain: str) -> str:
    known = [float(a) for a in accepted if a is not None]
    if known and all(a >= 1.0 for a in known):
        return f"the threshold {cut:g} accepts every image of its train split on {domain}: this gate accepts everything it was chosen on"
    if known and all(a <= 0.0 for a in known):
        return f"the threshold {cut:g} rejects every image of its train split on {domain}: this gate rejects everything it was chosen on"
    return ""
