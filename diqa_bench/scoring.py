"""``diqa-bench score``: score image files or folders with one method, outside any benchmark.

Writes ``path,score`` rows (plus ``decision`` with ``--threshold``): what a teledermatology
service needs to gate incoming photos. Images that cannot be decoded get an empty score and the
reason on stderr; the exit code is then 1.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from pathlib import Path

import yaml

from diqa_bench.config import safe_yaml
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


def score_paths(args, registry) -> int:
    from diqa_bench.cache import file_hash
    from diqa_bench.config import validate_options
    from diqa_bench.images import iter_batches, list_images, resolve_decoder
    from diqa_bench.methods import MethodContext
    from diqa_bench.runner import _to_floats, resolve_device

    if args.max_pixels is not None:
        if args.max_pixels < 1:
            raise UserError(f"--max-pixels {args.max_pixels}: expected a positive number of pixels")
        from diqa_bench.images import set_image_limits

        set_image_limits(args.max_pixels)
    cls = registry.method(args.method)
    options = _parse_options(args.option)
    if args.weights and not cls.trainable:
        if "weights" not in cls.options_schema:
            raise UserError(f"method {cls.name!r} takes no weights file")
        options["weights"] = args.weights
    validate_options(options, cls.options_schema, cls.required_options, f"method {cls.name} options", "score")
    if cls.trainable and not args.weights:
        raise UserError(f"method {cls.name!r} is trainable: pass --weights with a saved fit (a run saves them under <results>/models/)")
    try:
        paths = list_images(args.paths)
    except Exception as exc:
        raise UserError(str(exc)) from None
    if not paths:
        raise UserError("no image files found in " + " ".join(args.paths))

    weights_dir = args.weights_dir or os.environ.get("DIQA_BENCH_WEIGHTS")
    device = resolve_device(args.device)
    ctx = MethodContext(device=device, batch_size=args.batch_size, workers=args.workers,
                        weights_dir=Path(weights_dir) if weights_dir else None, decoder=resolve_decoder(args.decode, device))
    method = cls(**options)
    try:
        method.setup(ctx)
        if cls.trainable:
            if not Path(args.weights).exists():
                raise UserError(f"--weights {args.weights}: no such file or folder")
            method.load(Path(args.weights))
    except MethodUnavailable as exc:
        raise UserError(f"{cls.name}: {exc}") from None

    scores: dict[int, float] = {}
    errors: dict[int, str] = {}
    keys = [file_hash(p) if p.exists() else "" for p in paths]
    for batch in iter_batches([str(p) for p in paths], keys, range(len(paths)), batch_size=ctx.batch_size, device=ctx.device,
                              workers=ctx.workers, size=method.input_size, on_error=lambda pos, msg: errors.__setitem__(pos, msg),
                              decoder=ctx.decoder):
        scores.update(zip(batch.indices, _to_floats(method.score_batch(batch))))

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    header = ["path", "score"] + (["decision"] if args.threshold is not None else [])
    w.writerow(header)
    lower = bool(method.lower_better)
    for i, p in enumerate(paths):
        s = scores.get(i)
        row = [str(p), "" if s is None else f"{s:.6g}"]
        if args.threshold is not None:
            if s is None or s != s:
                row.append("error")
            else:
                ok = s <= args.threshold if lower else s >= args.threshold
                row.append("accept" if ok else "reject")
        w.writerow(row)
    if args.output:
        from diqa_bench.results import atomic_write

        atomic_write(Path(args.output), buf.getvalue())
    else:
        sys.stdout.write(buf.getvalue())
    for i, msg in errors.items():
        print(f"diqa-bench: skipped {msg}", file=sys.stderr)
    if args.threshold is not None:
        decided = [r for r in scores.values() if r == r]
        n_rej = sum(1 for s in decided if not (s <= args.threshold if lower else s >= args.threshold))
        print(f"{len(decided) - n_rej} accepted, {n_rej} rejected ({'lower' if lower else 'higher'} score is better; threshold {args.threshold})", file=sys.stderr)
    return 1 if errors else 0
