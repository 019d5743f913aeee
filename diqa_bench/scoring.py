"""``diqa-bench score``: score image files or folders with one method, outside any benchmark.

What a teledermatology service puts in front of its upload form. It writes one CSV row per image:
``path, score, better`` (``lower`` or ``higher``: which way is better quality for this method),
``decision`` (with ``--threshold``: accept / reject / error) and ``skipped`` (why an image has no
score: it could not be decoded, or the method cannot score it, e.g. smaller than NIQE's 96x96
minimum). One bad image never costs the others their scores.

Exit codes: 0 every image scored; 1 some images skipped (the CSV is still written, the reasons are
in it and on stderr); 2 usage error, or a method that cannot run here or returns the wrong number
of scores (one line on stderr, no CSV).

Speed: images go through the scorer's path, as in ``run`` (:func:`diqa_bench.scorer.compute_scores`:
the one batch loop, or on the CPU one single-threaded process per core for zero-shot methods, and
only those processes build the method, so the parent never imports the method's library).
Scores are cached by method configuration and image content (``--cache-dir``, as ``run``): a
photo scored before is answered from the cache. Only what the chosen method needs is imported.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from diqa_bench.config import safe_yaml
from diqa_bench.batch_loop import ScoreCountError, without_path
from diqa_bench.errors import MethodUnavailable, UserError


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


def score_token(method, weights: str | None, decoder: str, ctx=None) -> str:
    """The score-cache token: the method's configuration and the content of its weight files
    (with ``ctx``), plus the content of a loaded fit (a trainable method's scores depend on its
    saved files), plus a non-PIL decoder (its pixels differ slightly, as in ``run``)."""
    from diqa_bench.cache import file_hash, stable_hash, weights_token

    token = weights_token(method, ctx) if ctx is not None else method.cache_token()
    if method.trainable and weights:
        root = Path(weights)
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        token = "fit-file:" + stable_hash([token, [(str(p.relative_to(root)) if root.is_dir() else p.name, file_hash(p)) for p in files]])
    return token if decoder == "pil" else f"{token}|{decoder}"


def _progress(enabled: bool, total: int, initial: int, name: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="img", desc=f"score ({name})", file=sys.stderr, dynamic_ncols=True)


def score_paths(args, registry) -> int:
    from diqa_bench.cache import ScoreCache, default_cache_dir, file_hash
    from diqa_bench.config import validate_options
    from diqa_bench.errors import DataError
    from diqa_bench.files import check_output_file, csv_cell, image_file_problem, write_output
    from diqa_bench.images import check_pixel_limit, list_images, resolve_decoder
    from diqa_bench.methods import MethodContext
    from diqa_bench.scorer import resolve_device

    if args.max_pixels is not None:
        if args.max_pixels < 1:
            raise UserError(f"--max-pixels {args.max_pixels}: expected a positive number of pixels")
        from diqa_bench.images import set_image_limits

        set_image_limits(args.max_pixels)
    output = check_output_file(args.output, "-o") if args.output else None  # before any image is scored
    cls = registry.method(args.method)
    options = _parse_options(args.option)
    if args.weights and not cls.trainable:
        if "weights" not in cls.options_schema:
            raise UserError(f"method {cls.name!r} takes no weights file")
        options["weights"] = args.weights
    validate_options(options, cls.options_schema, cls.required_options, f"method {cls.name} options", "score")
    if cls.trainable and not args.weights:
        raise UserError(f"method {cls.name!r} is trainable: pass --weights with a saved fit (a run saves them under <results>/models/)")
    if cls.trainable and not Path(args.weights).exists():
        raise UserError(f"--weights {args.weights}: no such file or folder")
    try:
        paths = list_images(args.paths)
    except Exception as exc:
        raise UserError(str(exc)) from None
    if not paths:
        raise UserError("no image files found in " + " ".join(args.paths))

    weights_dir = args.weights_dir or os.environ.get("DIQA_BENCH_WEIGHTS")
    device = resolve_device(args.device)
    cache_dir = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
    ctx = MethodContext(device=device, batch_size=args.batch_size, workers=args.workers, cache_dir=cache_dir,
                        weights_dir=Path(weights_dir) if weights_dir else None, decoder=resolve_decoder(args.decode, device))
    method = cls(**options)
    progress = not args.no_progress and sys.stderr.isatty()

    # Identical files are scored once: work is per content hash, rows are per path. Only regular
    # files are read (a FIFO or /dev/zero would never end); the others are skipped with the reason.
    errors: dict[str, str] = {}  # key -> why it has no score
    keys = []
    for i, p in enumerate(paths):
        why = image_file_problem(p)
        if why is None:
            try:
                keys.append(file_hash(p))
                continue
            except OSError as exc:
                why = f"cannot read: {exc.strerror or exc}"
        keys.append(f"unread:{i}")
        errors[keys[-1]] = why
    path_of: dict[str, str] = {}
    for p, k in zip(paths, keys):
        if k not in errors:
            path_of.setdefault(k, str(p))
    cache = ScoreCache(cache_dir)
    token = score_token(method, args.weights, ctx.decoder, ctx)
    for k, p in path_of.items():  # before the cache is read: a limit lowered since applies to cached images too
        try:
            check_pixel_limit(p)
        except DataError as exc:
            errors[k] = str(exc)
    scores: dict[str, float] = cache.get_many(token, [k for k in path_of if k not in errors])
    todo = [k for k in path_of if k not in scores and k not in errors]
    bar = _progress(progress, len(path_of), len(path_of) - len(todo), cls.name)
    try:
        if todo:
            _score(method, registry, ctx, args, todo, path_of, scores, errors, cache, token, bar)
    except MethodUnavailable as exc:
        raise UserError(f"{cls.name}: {exc}") from None
    except ScoreCountError as exc:  # the method's bug, not the images': no score can be trusted
        raise UserError(str(exc)) from None
    finally:
        if bar is not None:
            bar.close()

    lower = bool(method.lower_better)
    better = "lower" if lower else "higher"
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "score", "better"] + (["decision"] if args.threshold is not None else []) + ["skipped"])
    decided: list[bool] = []
    for p, k in zip(paths, keys):
        s = scores.get(k)
        usable = s is not None and s == s
        why = "" if usable else errors.get(k) or ("score is NaN" if s is not None else "not scored")
        row: list[Any] = [csv_cell(str(p)), f"{s:.6g}" if usable else "", better]
        if args.threshold is not None:
            if usable:
                ok = s <= args.threshold if lower else s >= args.threshold
                decided.append(ok)
                row.append("accept" if ok else "reject")
            else:
                row.append("error")
        w.writerow(row + [csv_cell(why)])
    if args.output:
        write_output(output, buf.getvalue(), "-o")
    else:
        sys.stdout.write(buf.getvalue())
    skipped = [(p, k) for p, k in zip(paths, keys) if not (scores.get(k) is not None and scores[k] == scores[k])]
    for p, k in skipped:
        why = errors.get(k, "score is NaN")
        print(f"diqa-bench: skipped {p}: {without_path(why, p)}", file=sys.stderr)
    summary = f"{cls.name}: {len(paths) - len(skipped)} of {len(paths)} images scored; {better} score is better"
    if args.threshold is not None:
        summary += f"; {sum(decided)} accepted, {len(decided) - sum(decided)} rejected (threshold {args.threshold})"
    print(summary, file=sys.stderr)
    return 1 if skipped else 0


def _pixels(paths: list[str]) -> list[float]:
    """Pixels per image from the file headers (cheap): the pool's work estimate. Photos from phones
    and dermatoscopes differ a hundredfold in size."""
    from diqa_bench.errors import DataError
    from diqa_bench.images import probe_size

    out = []
    for p in paths:
        try:
            w, h = probe_size(p)
        except (DataError, OSError):
            w = h = 1  # the worker reports why it cannot decode it
        out.append(float(w * h))
    return out


def _score(method, registry, ctx, args, todo: list[str], path_of: dict[str, str], scores: dict[str, float], errors: dict[str, str],
           cache, token: str, bar) -> None:
    """Score the images ``todo`` (content keys) into ``scores``; those that cannot be scored go to
    ``errors`` with the reason. Committed to the cache as they come."""
    from diqa_bench.scorer import compute_scores

    def on_error(pos: int, msg: str) -> None:
        errors[todo[pos]] = msg
        if bar is not None:
            bar.update(1)

    def commit(found: dict[str, float]) -> None:
        cache.put_many(token, found)
        scores.update(found)
        if bar is not None:
            bar.update(len(found))

    def setup() -> None:  # only on the in-process path: pool workers build their own method
        method.setup(ctx)
        if method.trainable:
            from diqa_bench.scorer import model_damage

            damage = model_damage(Path(args.weights)) if Path(args.weights).is_dir() else None
            if damage is not None:  # a model folder a run exported, changed since
                raise UserError(f"--weights {args.weights}: damaged model ({damage})")
            method.load(Path(args.weights))

    paths = [path_of[k] for k in todo]
    processes = max(1, args.processes if args.processes is not None else (os.cpu_count() or 1))
    compute_scores(method, ctx, paths, todo, registry=registry, processes=processes, on_error=on_error, commit=commit, ensure_setup=setup,
                   skip_failing=True, costs=_pixels(paths) if processes > 1 else None, commit_every=64)


def resolve_threshold(value: str | float | None, weights: str | None) -> float | None:
    """``score --threshold``: a number, or ``auto`` / ``auto:DOMAIN`` for the cut a run chose on
    the train split, read from ``threshold.json`` in the ``--weights`` model folder. ``auto``
    picks the only domain, else the model's own train domain; several candidates need a DOMAIN."""
    from diqa_bench.errors import UserError

    if value is None:
        return None
    text = str(value).strip()
    if not text.lower().startswith("auto"):
        try:
            cut = float(text)
        except ValueError:
            raise UserError(f"--threshold {text}: expected a number, auto or auto:DOMAIN") from None
        if not math.isfinite(cut):  # a NaN cut rejects every photo, an infinite one accepts or rejects all
            raise UserError(f"--threshold {text}: not a finite number; expected a number, auto or auto:DOMAIN")
        return cut
    domain = text.split(":", 1)[1].strip() if ":" in text else None
    path = Path(weights or "") / "threshold.json"
    if not weights or not path.is_file():
        raise UserError(f"--threshold auto: {'no --weights given' if not weights else f'{weights} has no threshold.json'} "
                        "(a run writes one into models/<method>@<train>/seed<k>/ when its config declares acceptability)")
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
    return cuts[domain]
