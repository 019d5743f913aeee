"""The quality gate as a library: what a teledermatology service loads once and calls per upload.

:func:`load_gate` builds a method (a zero-shot one by name, or a trainable one from a run's model
folder) and returns a :class:`Gate`, which scores images given as paths, bytes, PIL images or numpy
arrays. It is ``diqa-bench score`` without the process: the same method set-up and validation
(:func:`diqa_bench.scoring.prepare`), the same decoding, pixel limit and skip reasons for files and
bytes (:func:`diqa_bench.scoring.score_files`), the same conversion for images already in memory
(:func:`diqa_bench.images.in_memory_pixels`, :func:`diqa_bench.scoring.score_pixels`), and the
same threshold rule (:func:`diqa_bench.scoring.accepts`). So the gate and ``score`` give identical
numbers on the same files.

A gate is safe to call from several threads: one lock serialises the calls to the method (a
method is not required to be thread-safe, and on one device parallel calls would only compete).
Decoding happens under that lock too, in the calling thread.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from diqa_bench.errors import UserError
from diqa_bench.batch_loop import without_path
from diqa_bench.licences import Licence, restricted


@dataclass(frozen=True)
class GateResult:
    """One image's verdict. ``score`` is None when the image has none, and then ``skipped`` says
    why (it could not be decoded, exceeds the pixel limit, or the method cannot score it) and
    ``accepted`` is None. ``accepted`` is also None when the gate has no threshold.

    ``predicted_mos`` and ``p_acceptable`` read the score on a stated scale, when the threshold
    file carries one (a deployable cut: config ``deploy``), else None: the MOS the VQEG logistic
    fitted from score to MOS predicts, and the probability that the photo's MOS is at least as good
    as the acceptability threshold given its score (a logistic regression of that label on the
    score), both fitted on the out-of-fold scores that chose the cut (:class:`diqa_bench.thresholds.Scale`)."""

    score: float | None
    accepted: bool | None
    skipped: str | None
    threshold: float | None
    better: str  # "lower" or "higher": which way is better quality for this method
    predicted_mos: float | None = None
    p_acceptable: float | None = None


class Gate:
    """A loaded method and its threshold; see :func:`load_gate`."""

    def __init__(self, prepared, registry, threshold: float | None, cache_dir: Path | None) -> None:
        self._p = prepared
        self._registry = registry
        self._cache_dir = cache_dir
        self._lock = threading.Lock()
        self.threshold = threshold
        self.method = prepared.cls.name
        self.threshold_note = ""  # says when the cut accepts (or rejects) every image of its train split
        self.threshold_source = ""  # which cut: a deployable one (deploy/) or a split seed's, and its file
        self.scale = None  # thresholds.Scale: predicted_mos and p_acceptable, when the threshold file states one
        self.sizes = None  # the sizes of the images the cut was chosen on, when its file records them
        self.size_note = ""  # the first input far outside those sizes (reported once)
        self.licences: list = []  # what the method declares of its code, weights and data licences (load_gate fills it)

    @property
    def better(self) -> str:
        return self._p.better

    def __call__(self, image: Any) -> GateResult:
        return self.score(image)

    def score(self, image: Any) -> GateResult:
        """Score one image: a path (str or PathLike), bytes (an encoded file, as uploaded), a PIL
        image, or a numpy array (RGB)."""
        return self.score_many([image])[0]

    def score_many(self, images: Iterable[Any]) -> list[GateResult]:
        """Score a batch of images (any mix of the kinds :meth:`score` takes), in order."""
        from diqa_bench.scoring import score_files, score_pixels  # lazy: loads numpy, yaml, importlib.metadata (plugin discovery)

        images = list(images)
        found: list[tuple[float | None, str] | None] = [None] * len(images)
        files: dict[int, str] = {}
        pixels: dict[int, Any] = {}
        with tempfile.TemporaryDirectory(prefix="diqa-gate-") as tmp:
            for i, obj in enumerate(images):
                if isinstance(obj, (bytes, bytearray, memoryview)):
                    files[i] = os.path.join(tmp, f"upload{i}")
                    with open(files[i], "wb") as f:
                        f.write(obj)
                elif isinstance(obj, (str, os.PathLike)):
                    files[i] = os.fspath(obj)  # a missing file, a folder or a FIFO: score_files says why, as score does
                else:
                    pixels[i] = obj
            with self._lock:
                if files:
                    cache = None
                    if self._cache_dir is not None:
                        from diqa_bench.cache import ScoreCache  # lazy: loads numpy, sqlite3

                        cache = ScoreCache(self._cache_dir)  # a connection per call: sqlite's belong to one thread
                    for i, (s, why) in zip(files, score_files(self._p, self._registry, list(files.values()), cache=cache, processes=1)):
                        for path in files.values():  # identical files are scored once: the reason names the first
                            why = without_path(why, path)
                        found[i] = (s, why)
                if pixels:
                    for i, res in zip(pixels, score_pixels(self._p, list(pixels.values()))):
                        found[i] = res
                if self.sizes and not self.size_note:
                    self._check_sizes([files[i] for i in files if found[i][0] is not None],  # type: ignore[index]
                                      [pixels[i] for i in pixels if found[i][0] is not None])  # type: ignore[index]
        return [self._verdict(s, why) for s, why in found]  # type: ignore[misc]

    def _check_sizes(self, paths: list[str], arrays: list) -> None:
        """One warning per gate when a scored input is far from the sizes its cut was chosen on."""
        from diqa_bench.images import probe_size  # lazy: loads numpy, PIL
        from diqa_bench.thresholds import size_note  # lazy: loads numpy

        sizes = []
        for path in paths:
            try:
                h, w = probe_size(path)
            except Exception:  # noqa: BLE001 - it was scored; a header read again is only a check
                continue
            sizes.append((w, h))
        for obj in arrays:
            shape = getattr(obj, "shape", None)
            size = (shape[1], shape[0]) if shape is not None and len(shape) >= 2 else getattr(obj, "size", None)
            if size:
                sizes.append(tuple(size))
        for w, h in sizes:
            note = size_note(w, h, self.sizes)
            if note:
                self.size_note = note
                logging.getLogger("diqa_bench.gate").warning("diqa-bench: %s", note)
                return

    def _verdict(self, s: float | None, why: str) -> GateResult:
        from diqa_bench.scoring import accepts  # lazy: loads numpy, yaml, importlib.metadata (plugin discovery)

        if s is None:
            return GateResult(None, None, why or "not scored", self.threshold, self.better)
        ok = None if self.threshold is None else accepts(s, self.threshold, self._p.lower_better)
        if self.scale is None:
            return GateResult(s, ok, None, self.threshold, self.better)
        return GateResult(s, ok, None, self.threshold, self.better, self.scale.predicted_mos(s), self.scale.p_acceptable(s))


def load_gate(method_or_model_folder: str | os.PathLike, threshold: float | str | None = None, device: str = "auto", *,
              options: dict | None = None, weights: str | os.PathLike | None = None, method: str | None = None,
              batch_size: int = 16, cache_dir: str | os.PathLike | None = None, max_pixels: int | None = None,
              weights_dir: str | os.PathLike | None = None, run: str | os.PathLike | None = None, registry=None) -> Gate:
    """Load a quality gate once; score uploads with the returned :class:`Gate`.

    ``method_or_model_folder``: a method name (``"piqe"``, ``"brisque"``), or a model folder a run
    saved (``<results>/models/<method>@<train>/deploy`` or ``.../seed<k>``; ``<method>@<train>``
    itself loads its ``deploy/`` model when the run made one; ``method=`` names the method when the
    folder's label is not one). ``gate.threshold_source`` says which cut was used (a deployable one
    or a split seed's) and from which file; a deployable cut also brings ``predicted_mos`` and
    ``p_acceptable`` (see :class:`GateResult`) and the sizes it was chosen on: the first input
    with more than 4x the pixels of the largest (or under 1/4 of the smallest) is reported in one
    warning line (logging, ``gate.size_note``). ``threshold``: a number, ``"auto"`` or ``"auto:DOMAIN"`` (the cut
    a run chose: from the model folder's ``threshold.json``, or for a zero-shot method from the
    results folder ``run``'s ``thresholds.json``), or None for scores alone. A cut that accepts
    (or rejects) every image of its train split is reported in one warning line and in
    ``gate.threshold_note``.
    ``options``, ``weights``, ``device``, ``batch_size``, ``weights_dir`` are ``score``'s.
    ``cache_dir``: keep scores in that score cache (default: none: a service rarely sees a photo
    twice). ``max_pixels`` sets the pixel limit for this process (default 40 MP, or
    ``$DIQA_BENCH_MAX_PIXELS``). Usage errors raise :class:`diqa_bench.errors.UserError`.
    """
    from diqa_bench.scoring import prepare  # lazy: loads numpy, yaml, importlib.metadata (plugin discovery)
    from diqa_bench.thresholds import prefer_deploy, read_cut  # lazy: loads numpy

    target = Path(method_or_model_folder)
    if target.is_dir():
        target = Path(prefer_deploy(target) or target)
    name = str(method_or_model_folder)
    if target.is_dir():
        weights = weights or target
        name = method or _method_of(target)
    elif method:
        raise UserError(f"load_gate: method={method!r} is for a model folder; {name!r} is not one")
    if max_pixels is not None:
        if int(max_pixels) < 1:
            raise UserError(f"max_pixels {max_pixels}: expected a positive number of pixels")
        from diqa_bench.images import set_image_limits  # lazy: loads numpy, PIL

        set_image_limits(int(max_pixels))
    if registry is None:
        from diqa_bench.plugins import load_plugins  # lazy: loads importlib.metadata (plugin discovery)

        registry = load_plugins()
    weights_str = os.fspath(weights) if weights else None
    resolved = read_cut(threshold, weights_str, os.fspath(run) if run else None, name)
    cut, note = resolved.value, resolved.note
    cache = Path(cache_dir).expanduser() if cache_dir else None
    # workers=0: decoding in the calling thread; a pool of decoding processes per upload costs more than it saves.
    # No cache folder for the method: its feature caches would hold a sqlite connection of the loading thread.
    p = prepare(registry, name, options, weights_str, device=device, batch_size=batch_size, workers=0, cache_dir=None,
                weights_dir=os.fspath(weights_dir) if weights_dir else None)
    gate = Gate(p, registry, cut, cache)
    gate.threshold_note = note
    gate.threshold_source, gate.scale, gate.sizes = resolved.source, resolved.scale, resolved.sizes
    if resolved.source and resolved.source != "given":
        logging.getLogger("diqa_bench.gate").info("diqa-bench: threshold %g from %s", cut, resolved.source)
    if note:
        print(f"diqa-bench: warning: {note}", file=sys.stderr)
    _warn_licences(gate, p.cls, {**(options or {}), **({"weights": weights_str} if weights_str else {})})
    return gate


def _warn_licences(gate: Gate, cls, options: dict) -> None:
    """One line on stderr when the gate depends on a component marked non-commercial or unknown
    (``gate.licences`` holds every fact, with its source)."""

    try:
        gate.licences = list(cls.licences(options))
    except Exception as exc:  # noqa: BLE001 - third-party code
        gate.licences = [Licence("code", f"method {cls.name}", source=f"licences() failed: {type(exc).__name__}")]
    flagged = restricted(gate.licences)
    if flagged:
        print(f"diqa-bench: the {cls.name} gate depends on components not known to allow commercial use: "
              + "; ".join(f.short() for f in flagged) + " (gate.licences has the sources)", file=sys.stderr)


def _method_of(folder: Path) -> str:
    """The method of a run's model folder: ``threshold.json``'s label, else the folder name
    ``<label>@<train>`` (or its parent's, for ``seed<k>`` and ``deploy``)."""
    try:
        label = str(json.loads((folder / "threshold.json").read_text())["method"])
    except (OSError, ValueError, KeyError, TypeError):
        named = folder.parent if folder.name.startswith("seed") or folder.name == "deploy" else folder
        label = named.name.split("@", 1)[0]
    return label
