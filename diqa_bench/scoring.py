"""``diqa-bench score``: score image files or folders with one method, outside any benchmark.

What a teledermatology service puts in front of its upload form. It writes one CSV row per image:
``path, score, better`` (``lower`` or ``higher``: which way is better quality for this method),
``decision`` (with ``--threshold``: accept / reject / error) and ``skipped`` (why an image has no
score: it could not be decoded, or the method cannot score it, e.g. smaller than NIQE's 96x96
minimum). One bad image never costs the others their scores.

Exit codes: 0 every image scored; 1 some images skipped (the CSV is still written, the reasons are
in it and on stderr); 2 usage error, or a method that cannot run here or returns the wrong number
of scores (one line on stderr, no CSV).

Speed: images go through the scoring session, as in ``run`` (:class:`diqa_bench.session.ScoringSession`:
the one batch loop, or on the CPU one single-threaded process per core for zero-shot methods, and
only those processes build the method, so the parent never imports the method's library).
Scores are cached by method configuration and image content (``--cache-dir``, as ``run``): a
photo scored before is answered from the cache. Only what the chosen method needs is imported.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml

from diqa_bench.config import safe_yaml
from diqa_bench.batch_loop import ScoreCountError, without_path, score_batches
from diqa_bench.errors import MethodUnavailable, UserError, DataError
from diqa_bench.session import Prepared, ScoringSession  # noqa: F401 - Prepared: the name the gate and scripts import from here
from diqa_bench.cache import file_hash, ScoreCache, default_cache_dir
from diqa_bench.files import image_file_problem, check_output_file, csv_cell, write_output
from diqa_bench.methods import Batch
from diqa_bench.thresholds import size_note, read_cut


def _parse_options(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"--option {pair!r}: expected KEY=VALUE")
        k, v = pair.split("=", 1)
        try:
            out[k.strip()] = safe_yaml(v)
        except (ValueError, yaml.YAMLError) as exc:
            problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
            raise UserError(f"--option {pair!r}: the value is not valid YAML: {problem}") from None
    return out


def _progress(enabled: bool, total: int, initial: int, name: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="img", desc=f"score ({name})", file=sys.stderr, dynamic_ncols=True)


def prepare(registry, name: str, options: dict | None = None, weights: str | None = None, *, device: str | None = "auto",
            batch_size: int = 16, workers: int = 0, cache_dir: Path | None = None, weights_dir: str | None = None,
            decode: str | None = "auto", processes: int = 1) -> Prepared:
    """Build method ``name`` with ``options`` (and ``weights``: a zero-shot method's weights file
    or a trainable method's saved fit) as ``score`` does, in a :class:`ScoringSession` of these
    settings; usage errors raise UserError."""
    session = ScoringSession.open(registry, device=device, decode=decode, batch_size=batch_size, workers=workers, cache_dir=cache_dir,
                                  weights_dir=weights_dir, processes=processes)
    return session.prepare(name, options, weights)


def score_files(p: Prepared, registry, paths: Sequence[str | Path], *, cache=None, processes: int = 1, progress: bool = False) -> list[tuple[float | None, str]]:
    """``(score, "")`` or ``(None, why it has no score)`` for each of ``paths``: decoded, limited,
    scored and cached through :meth:`ScoringSession.score` (``cache`` (``cache``: a ScoreCache,
    or None) as ``score`` does. Identical files are scored once. A method that cannot run here or
    returns the wrong number of scores raises UserError: no score can be trusted."""
    from diqa_bench.images import check_pixel_limit  # lazy: loads PIL

    # Identical files are scored once: work is per content hash, rows are per path. Only regular
    # files are read (a FIFO or /dev/zero would never end); the others are skipped with the reason.
    errors: dict[str, str] = {}  # key -> why it has no score
    keys = []
    for i, path in enumerate(paths):
        why = image_file_problem(path)
        if why is None:
            try:
                keys.append(file_hash(path))
                continue
            except OSError as exc:
                why = f"cannot read: {exc.strerror or exc}"
        keys.append(f"unread:{i}")
        errors[keys[-1]] = why
    path_of: dict[str, str] = {}
    for path, k in zip(paths, keys):
        if k not in errors:
            path_of.setdefault(k, str(path))
    for k, path in path_of.items():  # before the cache is read: a limit lowered since applies to cached images too
        try:
            check_pixel_limit(path)
        except DataError as exc:
            errors[k] = str(exc)
    usable = [k for k in path_of if k not in errors]
    bar = _progress(progress, len(path_of), 0, p.cls.name)

    def on_error(key: str, msg: str) -> None:
        errors[key] = msg
        if bar is not None:
            bar.update(1)

    session = p.session or ScoringSession(registry, str(p.ctx.device), p.ctx.decoder, p.ctx.batch_size, p.ctx.workers, p.ctx.cache_dir,
                                          p.ctx.weights_dir)
    try:
        scores = session.score(p.method, p.token, usable, [path_of[k] for k in usable], ensure_setup=p.ready, on_error=on_error, cache=cache,
                               ctx=p.ctx, processes=processes, skip_failing=True, costs=_pixels if processes > 1 else None, commit_every=64,
                               on_scores=(lambda found: bar.update(len(found))) if bar is not None else None)
    except MethodUnavailable as exc:
        raise UserError(f"{p.cls.name}: {exc}") from None
    except ScoreCountError as exc:  # the method's bug, not the images': no score can be trusted
        raise UserError(str(exc)) from None
    finally:
        if bar is not None:
            bar.close()
    return [outcome(scores.get(k), errors.get(k)) for k in keys]


def score_pixels(p: Prepared, images: Sequence[Any]) -> list[tuple[float | None, str]]:
    """:func:`score_files` for images already in memory (PIL images, numpy arrays): converted as
    a decoded file of the same pixels (:func:`diqa_bench.images.in_memory_pixels`), resized to the
    method's input size as the batch loop does, scored one at a time through the same loop (a
    method failing on one image skips that image). Not cached."""
    import hashlib

    import numpy as np

    from diqa_bench.images import resize_pixels, in_memory_pixels  # lazy: loads PIL

    results: list[tuple[float | None, str]] = [(None, "not scored")] * len(images)
    errors: dict[int, str] = {}

    def batches():
        import torch

        for i, obj in enumerate(images):
            try:
                arr = in_memory_pixels(obj, f"image {i}" if len(images) > 1 else "image")
            except DataError as exc:
                errors[i] = str(exc)
                continue
            key = "px-" + hashlib.blake2b(np.ascontiguousarray(arr).tobytes() + repr(arr.shape).encode(), digest_size=8).hexdigest()
            t = resize_pixels(torch.from_numpy(arr).permute(2, 0, 1)[None], p.method.input_size)
            if str(p.ctx.device) != "cpu":
                t = t.to(p.ctx.device)
            yield Batch(images=t, keys=[key], paths=[f"<image {i}>"], indices=[i])

    try:
        p.ready()
        for batch, values in score_batches(p.method, batches(), lambda i, msg: errors.__setitem__(i, msg)):
            for i, v in zip(batch.indices, values):
                results[i] = outcome(v, None)
    except MethodUnavailable as exc:
        raise UserError(f"{p.cls.name}: {exc}") from None
    except ScoreCountError as exc:
        raise UserError(str(exc)) from None
    for i, msg in errors.items():
        results[i] = (None, msg)
    return results


def outcome(s: float | None, error: str | None) -> tuple[float | None, str]:
    """One image's ``(score, "")``, or ``(None, reason)`` when it has no usable score."""
    if s is not None and s == s:
        return float(s), ""
    return None, error or ("score is NaN" if s is not None else "not scored")


def accepts(score: float, threshold: float, lower_better: bool) -> bool:
    """The gate's rule: accept when the score is at least as good as the threshold."""
    return score <= threshold if lower_better else score >= threshold


def score_paths(args, registry) -> int:
    from diqa_bench.images import list_images  # lazy: loads PIL

    if args.max_pixels is not None:
        if args.max_pixels < 1:
            raise UserError(f"--max-pixels {args.max_pixels}: expected a positive number of pixels")
        from diqa_bench.images import set_image_limits  # lazy: loads PIL

        set_image_limits(args.max_pixels)
    output = check_output_file(args.output, "-o") if args.output else None  # before any image is scored
    cache_dir = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
    p = prepare(registry, args.method, _parse_options(args.option), args.weights, device=args.device, batch_size=args.batch_size,
                workers=args.workers, cache_dir=cache_dir, weights_dir=args.weights_dir, decode=args.decode)
    try:
        paths = list_images(args.paths)
    except Exception as exc:
        raise UserError(str(exc)) from None
    if not paths:
        raise UserError("no image files found in " + " ".join(args.paths))

    processes = max(1, args.processes if args.processes is not None else (os.cpu_count() or 1))
    results = score_files(p, registry, paths, cache=ScoreCache(cache_dir), processes=processes,
                          progress=not args.no_progress and sys.stderr.isatty())

    better = p.better
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cut = getattr(args, "cut", None)  # thresholds.Cut: a deployable cut states a scale and the sizes it was chosen on
    scale = cut.scale if cut is not None else None
    w.writerow(["path", "score", "better"] + (["decision"] if args.threshold is not None else []) + ["skipped"]
               + (["predicted_mos", "p_acceptable"] if scale is not None else []))
    decided: list[bool] = []
    for path, (s, why) in zip(paths, results):
        row: list[Any] = [csv_cell(str(path)), f"{s:.6g}" if s is not None else "", better]
        if args.threshold is not None:
            if s is not None:
                ok = accepts(s, args.threshold, p.lower_better)
                decided.append(ok)
                row.append("accept" if ok else "reject")
            else:
                row.append("error")
        w.writerow(row + [csv_cell(why)] + ([] if scale is None else [f"{scale.predicted_mos(s):.6g}", f"{scale.p_acceptable(s):.4g}"]
                                            if s is not None else ["", ""]))
    if output is not None:
        write_output(output, buf.getvalue(), "-o")
    else:
        sys.stdout.write(buf.getvalue())
    skipped = [(path, why) for path, (s, why) in zip(paths, results) if s is None]
    for path, why in skipped:
        print(f"diqa-bench: skipped {path}: {without_path(why, path)}", file=sys.stderr)
    summary = f"{p.cls.name}: {len(paths) - len(skipped)} of {len(paths)} images scored; {better} score is better"
    if args.threshold is not None:
        summary += f"; {sum(decided)} accepted, {len(decided) - sum(decided)} rejected (threshold {args.threshold}"
        summary += f" from {cut.source})" if cut is not None and cut.source not in ("", "given") else ")"
    if cut is not None and cut.sizes:
        _warn_sizes([p for p, (s, _) in zip(paths, results) if s is not None], cut.sizes)
    print(summary, file=sys.stderr)
    return 1 if skipped else 0


def _warn_sizes(paths, sizes: dict) -> None:
    """One line on stderr for the first image far from the sizes the cut was chosen on."""
    from diqa_bench.images import probe_size  # lazy: loads PIL

    for path in paths:
        try:
            h, w = probe_size(path)
        except (DataError, OSError):
            continue
        note = size_note(w, h, sizes)
        if note:
            print(f"diqa-bench: warning: {note}", file=sys.stderr)
            return


def _pixels(paths: list[str]) -> list[float]:
    """Pixels per image from the file headers (cheap): the pool's work estimate. Photos from phones
    and dermatoscopes differ a hundredfold in size."""
    from diqa_bench.images import probe_size  # lazy: loads PIL

    out = []
    for p in paths:
        try:
            w, h = probe_size(p)
        except (DataError, OSError):
            w = h = 1  # the worker reports why it cannot decode it
        out.append(float(w * h))
    return out


def resolve_threshold(value: str | float | None, weights: str | None, run: str | None = None, method: str | None = None) -> float | None:
    """The threshold of :func:`resolve_cut`, without its note."""
    return resolve_cut(value, weights, run, method)[0]


def resolve_cut(value: str | float | None, weights: str | None, run: str | None = None, method: str | None = None) -> tuple[float | None, str]:
    """``score --threshold`` resolved to (cut, note): :func:`diqa_bench.thresholds.read_cut`, which
    also tells where the cut came from and what its file states besides."""

    cut = read_cut(value, weights, run, method)
    return cut.value, cut.note
