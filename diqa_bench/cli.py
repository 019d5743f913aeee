"""The ``diqa-bench`` command line.

``--help``, ``list``, ``plugins`` and ``validate`` import no torch: they answer in well under a
second. User errors print one line and exit 2; some failed cells exit 1; all done exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from pathlib import Path

from diqa_bench.version import __version__
from diqa_bench.errors import DataError, UserError
from diqa_bench.extensions import resolve
from diqa_bench.licences import declared
from diqa_bench.files import check_output_file, frame_csv, write_output

EXIT_OK, EXIT_CELLS_FAILED, EXIT_USAGE = 0, 1, 2


def _parser(registry=None) -> argparse.ArgumentParser:
    """The parser, with a subcommand for each command the plugins registered (``registry``)."""
    p = argparse.ArgumentParser(prog="diqa-bench", description="Cross-domain benchmark for no-reference image quality assessment.")
    p.add_argument("--version", action="version", version=f"diqa-bench {__version__}")
    p.add_argument("--strict-plugins", action="store_true", help="a plugin that fails to load is fatal (also DIQA_BENCH_STRICT_PLUGINS=1)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="run a benchmark config and write its leaderboard")
    r.add_argument("config", help="benchmark YAML, e.g. benchmarks/cross_domain.yaml")
    r.add_argument("--out", help="results folder (default: the config's output, else results/<config name>/)")
    r.add_argument("--device", default=None, help="auto (default: cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    r.add_argument("--workers", type=int, default=None, help="image-decoding worker processes (default: min(4, CPUs); min(8, CPUs) on CUDA)")
    r.add_argument("--batch-size", type=int, default=None, help="images per batch (default 16)")
    r.add_argument("--processes", type=int, default=None,
                   help="CPU only: score zero-shot methods in N single-threaded processes (default: one per CPU core)")
    r.add_argument("--decode", choices=["auto", "cpu", "gpu"], default=None,
                   help="where JPEGs are decoded: auto or cpu (default: PIL, identical scores on every machine), gpu (nvJPEG: faster, scores differ slightly)")
    r.add_argument("--cache-dir", help="cache folder (default: $DIQA_BENCH_CACHE, else ~/.cache/diqa-bench)")
    r.add_argument("--weights-dir", help="folder of pretrained weight files (default: config weights_dir, else $DIQA_BENCH_WEIGHTS)")
    r.add_argument("--only", nargs="+", metavar="METHOD", help="run only these methods (names or labels)")
    r.add_argument("--no-progress", action="store_true", help="plain log lines instead of progress bars")
    r.add_argument("--no-report", action="store_true", help="tables only: no figures, significance or report.html")
    r.add_argument("--executor", metavar="NAME", help="where cells run: a registered executor, e.g. local or ray (default: the config's executor, else local)")
    r.add_argument("--ray-address", metavar="HOST:PORT", help="an existing Ray cluster (default: start a local one)")

    v = sub.add_parser("validate", help="check a config (schema, names, options, data) without running it")
    v.add_argument("config", nargs="?")
    v.add_argument("--schema", action="store_true", help="print the config JSON schema and exit")

    ls = sub.add_parser("list", help="list registered methods or datasets")
    ls.add_argument("what", choices=["methods", "datasets"])
    ls.add_argument("--options", action="store_true", help="also each one's options (from its options_schema): type, allowed values, description")

    pl = sub.add_parser("plugins", help="list loaded plugins, their versions and what they registered")
    pl.add_argument("--json", action="store_true")
    pl.add_argument("--all", action="store_true", help="also the core plugin (diqa-bench's own statistics, figures, executors and commands)")

    rep = sub.add_parser("report", help="re-render the leaderboard, figures and report.html of a results folder (no rescoring)")
    rep.add_argument("dir")
    rep.add_argument("--no-figures", action="store_true", help="only LEADERBOARD.md")

    cmp_ = sub.add_parser("compare", help="per method x train x test: how each statistic changed between two runs, and whether significantly")
    cmp_.add_argument("dir_a")
    cmp_.add_argument("dir_b")
    cmp_.add_argument("-o", "--output", help="also write the table: .csv (one row per entry and statistic) or .md (as printed)")
    cmp_.add_argument("--adjust", choices=["holm", "bh", "none"],
                      help="multiplicity adjustment over the rows of one test domain and statistic (default: run A's statistics.adjust, else holm)")

    sc = sub.add_parser("score", help="score image files or folders with one method; writes a path,score,better CSV",
                        description="Score image files or folders with one method. Writes path,score,better[,decision],skipped rows. "
                                    "Exit 0: every image scored; 1: some images skipped (reason in the CSV and on stderr), the rest scored; "
                                    "2: usage error.")
    sc.add_argument("-m", "--method", required=True)
    sc.add_argument("paths", nargs="+")
    sc.add_argument("--weights", help="weights file (zero-shot methods) or saved fit (trainable methods)")
    sc.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="method option (YAML value), repeatable")
    sc.add_argument("-o", "--output", help="CSV file (default: stdout)")
    sc.add_argument("--threshold", help="also print accept/reject per image: accept when the score is at least as good as T; "
                    "'auto' (or auto:DOMAIN) uses the cut a run chose on the train split (threshold.json next to --weights, "
                    "or for a zero-shot method the run folder's thresholds.json: --run)")
    sc.add_argument("--run", help="results folder whose thresholds.json holds the cut --threshold auto uses for a zero-shot method")
    sc.add_argument("--device", default=None)
    sc.add_argument("--batch-size", type=int, default=16)
    sc.add_argument("--workers", type=int, default=0, help="image-decoding worker processes for the in-process path (default 0)")
    sc.add_argument("--processes", type=int, default=None,
                    help="CPU only: score zero-shot methods in N single-threaded processes (default: one per CPU core)")
    sc.add_argument("--cache-dir", help="score cache folder (default: $DIQA_BENCH_CACHE, else ~/.cache/diqa-bench)")
    sc.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    sc.add_argument("--weights-dir")
    sc.add_argument("--max-pixels", type=int, default=None, metavar="N",
                    help="larger images are skipped, checked before decoding (default 40000000, or $DIQA_BENCH_MAX_PIXELS)")
    sc.add_argument("--decode", choices=["auto", "cpu", "gpu"], default=None,
                   help="where JPEGs are decoded: auto or cpu (default: PIL, identical scores on every machine), gpu (nvJPEG: faster, scores differ slightly)")

    mo = sub.add_parser("mos", help="per-image MOS from raw observer ratings (image,observer,rating), with BT.500 screening")
    mo.add_argument("ratings")
    mo.add_argument("-o", "--output", help="MOS CSV (default: stdout)")
    mo.add_argument("--no-screening", action="store_true", help="keep every observer")
    mo.add_argument("--scale", nargs=2, metavar=("LOW", "HIGH"),
                    help="the rating scale, e.g. --scale 1 5: a rating off it is an error, and the 95%% intervals are clipped to it (default: no scale, nothing checked or clipped)")
    mo.add_argument("--drop-rater", action="append", default=[], metavar="ID", help="leave this rater's ratings out (repeatable)")
    mo.add_argument("--rescale-rater", nargs=3, action="append", default=[], metavar=("ID", "LOW", "HIGH"),
                    help="map this rater's ratings linearly from the scale they used, LOW to HIGH, onto --scale (repeatable)")

    for name, entry in (registry.commands if registry is not None else {}).items():

        if name in COMMANDS:
            import warnings

            from diqa_bench.plugins import PluginWarning  # lazy: loads importlib.metadata (plugin discovery)

            warnings.warn(f"plugin {entry.plugin!r} registers the command {name!r}, which is built in; it is ignored", PluginWarning, stacklevel=2)
            continue
        command = entry.cls
        cp = sub.add_parser(name, help=command.help, description=command.description)
        if command.add_arguments is not None:
            resolve(command.add_arguments)(cp)  # argparse only: --help stays fast
    return p


def main(argv: list[str] | None = None) -> int:
    from diqa_bench.plugins import install_cli_warning_format  # lazy: loads importlib.metadata (plugin discovery)

    install_cli_warning_format()
    argv = sys.argv[1:] if argv is None else list(argv)
    # the plugins' commands are part of the parser, so the registry loads first (once: commands reuse it)
    early = argparse.Namespace(strict_plugins="--strict-plugins" in argv)
    try:
        registry = _registry(early)
    except (UserError, DataError) as exc:
        print(f"diqa-bench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    parser = _parser(registry)
    args = parser.parse_args(argv)
    args.registry = registry
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        if args.command in COMMANDS:
            return COMMANDS[args.command](args)

        return resolve(registry.commands[args.command].cls.handler)(args)
    except (UserError, DataError) as exc:
        print(f"diqa-bench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("diqa-bench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `diqa-bench plugins --json | head`: the reader left; not an error of ours
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail again
        except (OSError, ValueError):
            pass
        return 141


# The plugin registry every command uses instead of the installed plugins, when set: what tests
# and scripts embedding the CLI set (e.g. to a registry of stub plugins). None: load the plugins.
REGISTRY = None


def _registry(args):
    if getattr(args, "registry", None) is not None:  # loaded once by main()
        return args.registry
    if REGISTRY is not None:
        return REGISTRY
    from diqa_bench.plugins import load_plugins  # lazy: loads importlib.metadata (plugin discovery)

    return load_plugins(strict=True if args.strict_plugins else None)


def cmd_list(args) -> int:

    reg = _registry(args)
    table = reg.methods if args.what == "methods" else reg.datasets
    hidden = [name for name in table if getattr(table[name].cls, "unusable", None)]
    for name in sorted(set(table) - set(hidden)):
        e = table[name]
        cls = e.cls
        extra = f"  [{cls.kind()}{', lower is better' if cls.lower_better is True else ''}]" if args.what == "methods" else ""
        desc = (cls.description or "").strip().splitlines()[0] if cls.description else ""
        print(f"{name:<22} {desc}{extra}  (plugin: {e.plugin})")
        print(f"    licences: {declared(cls)}")
        if args.options:
            for opt, schema in (cls.options_schema or {}).items():
                print(f"    {opt}: {_describe_option(schema)}")
    if hidden:
        print(f"({len(hidden)} more names are known but not usable here, e.g. full-reference pyiqa metrics: {', '.join(sorted(hidden)[:6])}, ...)")
    return EXIT_OK


def _describe_option(schema: dict) -> str:
    """One line for a JSON-schema property: type or allowed values, bounds, description."""
    if "enum" in schema:
        kind = " | ".join(map(str, schema["enum"]))
    else:
        types = schema.get("type", "any")
        kind = " or ".join(types) if isinstance(types, list) else str(types)
    bounds = [f"{word} {schema[key]}" for key, word in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"))
              if key in schema]
    parts = [kind + (f" ({', '.join(bounds)})" if bounds else "")]
    if schema.get("description"):
        parts.append(schema["description"])
    return "; ".join(parts)


def cmd_plugins(args) -> int:
    reg = _registry(args)
    infos = ([reg.core.as_dict()] if args.all and reg.core is not None else []) + [p.as_dict() for p in reg.plugins.values()]
    if args.json:
        print(json.dumps(infos, indent=2))
        return EXIT_OK
    for p in infos:
        ver = f" {p['version']}" if p["version"] else ""
        status = f"FAILED: {p['error']}" if p["error"] else f"datasets: {', '.join(p['datasets']) or '-'}; methods: {', '.join(p['methods']) or '-'}"
        if not p["error"]:  # the other hooks' entries, where there are any
            status += "".join(f"; {kind}: {', '.join(p[kind])}" for kind in ("statistics", "figures", "executors", "commands") if p.get(kind))
        print(f"{p['name']}{ver} ({p['module']}): {status}")
    return EXIT_OK


def cmd_validate(args) -> int:
    from diqa_bench import config as cfgmod  # lazy: loads numpy, yaml, importlib.metadata (plugin discovery)

    if args.schema:
        print(json.dumps(cfgmod.SCHEMA, indent=2))
        return EXIT_OK
    if not args.config:
        raise UserError("validate: give a CONFIG file (or --schema to print the config schema)")
    reg = _registry(args)
    cfg = cfgmod.parse(args.config, reg)
    if "extends" in cfg.raw:  # what the run will use: the parent's keys with this file's on top
        import yaml

        print(f"{cfg.path}: extends {cfg.raw['extends']}; resolved config:")
        print(yaml.safe_dump(cfg.raw, sort_keys=False).rstrip())
    problems = []
    train_images: dict[str, int | None] = {}  # domain -> images on the train side (None: hashed split, never empty)
    for dom, specs in cfg.domains.items():
        for s in specs:
            try:
                obj = reg.dataset(s.type)(**s.options)
                found = obj.check()
                if not found and hasattr(obj, "describe"):  # reads the metadata as the run does, opens no image
                    line, errors, n_train = _describe_dataset(obj.describe(), cfg)
                    print(f"{cfg.path}: domains.{dom}: dataset {s.name}: {line}")
                    found += errors
                    train_images[dom] = None if n_train is None or train_images.get(dom, 0) is None else train_images.get(dom, 0) + n_train
                problems += [f"domains.{dom}: dataset {s.name}: {p}" for p in found]
            except Exception as exc:
                problems.append(f"domains.{dom}: dataset {s.name}: {exc}")
    for ts in cfg.train_sets:
        if all(train_images.get(d, None) == 0 for d in ts):
            problems.append(f"train set {'+'.join(ts)} has no images: its datasets' own splits put none on the train side")
    from diqa_bench.grid import cells, expand  # lazy: loads numpy, yaml, importlib.metadata (plugin discovery)

    units = expand(cfg, {m.name: reg.method(m.name).trainable for m in cfg.methods})
    n_cells = len(cells(units))
    if problems:
        for p in problems:
            print(f"{cfg.path}: {p}", file=sys.stderr)
        print(f"{cfg.path}: config is valid, but {len(problems)} dataset(s) are not available (see above)", file=sys.stderr)
        return EXIT_USAGE
    print(f"{cfg.path}: OK ({len(cfg.methods)} methods, {len(cfg.domains)} domains, {len(cfg.train_sets)} train sets, {len(cfg.seeds)} seeds: {n_cells} cells), "
          f"run as {len(units)} units (method x train set x seed, each scoring every test domain)"
          + (f"; a validation phase on {cfg.validation:g} of the train groups runs each unit again" if cfg.validation > 0 else "")
          + (f", each once per cross-validation fold (folds: {cfg.folds})" if cfg.folds is not None else "")
          + (f"; deploy: {cfg.deploy_folds} folds + 1 fit on all train content per trainable method and train set" if cfg.deploy_folds else ""))
    return EXIT_OK


def _describe_dataset(summary: dict, cfg) -> tuple[str, list[str], int | None]:
    """One line about a dataset's metadata for ``validate``, the errors the run would stop on
    (under the config's bad_input policy), and its train-side image count (None: hashed split)."""
    rows, splits = summary["rows"], dict(summary.get("splits") or {})
    errors: list[str] = []
    parts = [f"{rows} rows"]
    labelled = rows > 0 and "unsplit" not in splits
    n_train: int | None = None
    if cfg.protocol == "full":
        parts.append("all scored (protocol full)")
        n_train = 0
    elif labelled and cfg.use_split_column:
        n_train = splits.get("train", 0)
        shown = [f"train {n_train}", f"val {splits.get('val', 0)} (not used)", f"test {splits.get('test', 0)}"]
        if splits.get("unused"):
            shown.append(f"unused {splits['unused']}")
        parts.append(", ".join(shown) + (f" from {summary['split_source']}" if summary.get("split_source") else ""))
        if not splits.get("test"):
            errors.append("its own split puts no image on the test side")
    else:
        parts.append(f"hashed group split, test ratio {cfg.test_ratio}, {summary.get('groups', rows)} groups")
    if summary.get("preprocessing"):
        parts.append(summary["preprocessing"])
    for key, what in (("missing", "image files missing or empty"), ("bad_mos", "MOS values blank, not numbers or outside the range"), ("duplicates", "duplicate image ids"),
                      ("escapes", "image paths escaping the dataset root")):
        n = summary.get(key, 0)
        if not n:
            continue
        first = ", ".join(map(str, summary.get(f"{key}_first", [])))
        text = f"{n} {what} (first: {first})"
        if cfg.bad_input == "error":
            errors.append(text + "; bad_input: error stops the run on the first")
        else:
            parts.append(text + "; the run skips them")
    bad = summary.get("missing", 0) + summary.get("bad_mos", 0) + summary.get("escapes", 0)
    if rows == 0 or bad >= rows:
        errors.append("no usable images")
    return "; ".join(parts), errors, n_train


def cmd_run(args) -> int:
    from diqa_bench import config as cfgmod  # lazy: loads numpy, yaml, importlib.metadata (plugin discovery)

    reg = _registry(args)
    cfg = cfgmod.parse(args.config, reg)
    from diqa_bench.cache import default_cache_dir  # lazy: loads numpy, sqlite3
    from diqa_bench.leaderboard import render_terminal  # lazy: loads scipy, numpy, yaml
    from diqa_bench.store import load_results  # lazy: loads filelock
    from diqa_bench.runner import RunOptions, run_benchmark  # lazy: loads scipy, numpy, yaml

    out = Path(args.out or cfg.output or Path("results") / cfg.name).expanduser()  # a quoted '~' is the home folder, not ./~
    ro = cfg.run_options
    opts = RunOptions(
        out=out,
        cache_dir=Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir(),
        device=args.device or ro.get("device", "auto"),
        workers=args.workers if args.workers is not None else ro.get("workers"),
        batch_size=args.batch_size or ro.get("batch_size", 16),
        only=args.only,
        weights_dir=args.weights_dir,
        progress=False if args.no_progress else None,
        reports=not args.no_report,
        processes=args.processes if args.processes is not None else (os.cpu_count() or 1),
        decode=args.decode or ro.get("decode", "auto"),
    )
    if args.only:
        known = {m.label for m in cfg.methods} | {m.name for m in cfg.methods}
        unknown = [o for o in args.only if o not in known]
        if unknown:
            raise UserError(f"--only: {', '.join(unknown)} not in the config's methods ({', '.join(sorted(known))})")
    executor = _executor(reg, cfg, args)
    with _sigterm_as_interrupt():
        outcomes, paths = run_benchmark(cfg, reg, opts, executor=executor)
    out = paths["run"].parent  # where the results went: beside --out when a folder of the user's appeared there meanwhile
    metrics, info = load_results(out)
    from diqa_bench.report.transfer import read_transfer  # lazy: loads scipy, numpy, yaml

    from diqa_bench.report.ablation import read_ablation  # lazy: loads scipy, numpy, yaml

    print(render_terminal(metrics, info, transfer=read_transfer(out), ablation=read_ablation(out)))
    missing = [o for o in outcomes if o.status != "ok"]
    if missing:
        print(f"\n{len(missing)} of {len(outcomes)} cells have no result:")
        grouped: dict[tuple[str, str, str], list[str]] = {}
        for o in missing:
            phase = "" if o.phase == "test" else f" ({o.phase})"  # splits.validation: the validation phase's cells
            grouped.setdefault((o.method, o.train, f"{o.status}: {o.reason}"), []).append(f"{o.test}/seed {o.seed}{phase}")
        for (method, train, why), where in grouped.items():
            print(f"  {method} @ {train} ({len(where)} cell{'s' if len(where) > 1 else ''}: {', '.join(where)}): {why}")
    # "not run" (a method that cannot run on this machine, e.g. missing weights) is reported but is
    # not a failure of the run; a cell that crashed, or produced NaN scores, is.
    failed = [o for o in outcomes if o.status == "failed"]
    if info.get("skipped"):
        print(f"\n{len(info['skipped'])} images skipped (listed in run.json)")
    print(f"\nResults: {out}/ (LEADERBOARD.md, report.html, metrics.csv, scores.csv, run.json)")
    return EXIT_CELLS_FAILED if failed else EXIT_OK


def _executor(reg, cfg, args):
    """The registered executor ``--executor`` (else the config's ``executor.type``, else local) names,
    built with the config's other ``executor:`` keys, which it must declare."""
    from diqa_bench.config import validate_options  # lazy: loads numpy, yaml, importlib.metadata (plugin discovery)

    options = {**cfg.executor, **({"address": args.ray_address} if args.ray_address else {})}
    name = args.executor or options.pop("type", None) or "local"
    options.pop("type", None)
    spec = reg.executor(name)  # unknown: one line listing the registered ones
    if args.ray_address and "address" not in spec.options_schema:
        raise UserError(f"--ray-address: the {name!r} executor takes no address; add --executor ray (or set executor.type in the config)")
    validate_options(options, spec.options_schema, [], "executor", str(cfg.path))
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731  (as the runner logs)
    return resolve(spec.factory)(progress=not args.no_progress and sys.stderr.isatty(), log=log, **options)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (``kill``, a scheduler's time limit, ``docker stop``) stops a run as Ctrl-C does: the
    finished cells are written (to ``<out>.partial`` when finished results exist) and no staging
    folder is left behind."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (an embedding program): leave its handling alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_report(args) -> int:
    from diqa_bench.leaderboard import render_terminal  # lazy: loads scipy, numpy, yaml
    from diqa_bench.results import render_leaderboard  # lazy: loads scipy, numpy, yaml
    from diqa_bench.store import load_results  # lazy: loads filelock

    folder = Path(args.dir)
    metrics, info = load_results(folder)
    with _registry(args).in_use():  # the figures of the plugins loaded here
        render_leaderboard(folder, metrics, info, build_figures=not args.no_figures)
    from diqa_bench.report.transfer import read_transfer  # lazy: loads scipy, numpy, yaml

    from diqa_bench.report.ablation import read_ablation  # lazy: loads scipy, numpy, yaml

    print(render_terminal(metrics, info, transfer=read_transfer(folder), ablation=read_ablation(folder)))
    print(f"\nRe-rendered {folder / 'LEADERBOARD.md'}" + ("" if args.no_figures else f", {folder / 'report.html'} and {folder / 'figures'}/"))
    return EXIT_OK


def cmd_compare(args) -> int:
    from diqa_bench.report import compare_runs, compare_transfer, format_comparison  # lazy: loads scipy, numpy, yaml

    out = None
    if args.output:  # checked before the comparison's bootstraps run
        out = Path(args.output)
        if out.suffix.lower() not in (".csv", ".md"):
            raise UserError(f"-o {out}: use a .csv or .md file name")
        out = check_output_file(out, "-o")
    with _registry(args).in_use():  # the statistics of the plugins loaded here, where both runs stored them
        df, warnings_ = compare_runs(Path(args.dir_a), Path(args.dir_b), adjust=args.adjust)
        text = format_comparison(df, warnings_, transfer=compare_transfer(Path(args.dir_a), Path(args.dir_b)))
    if out is not None:
        write_output(out, frame_csv(df) if out.suffix.lower() == ".csv" else text, "-o")
        print(f"wrote {out}", file=sys.stderr)
    print(text)
    return EXIT_OK


def cmd_score(args) -> int:
    from diqa_bench.scoring import score_paths  # lazy: loads numpy, yaml, importlib.metadata (plugin discovery)
    from diqa_bench.thresholds import prefer_deploy, read_cut  # lazy: loads numpy

    args.weights = prefer_deploy(args.weights)  # models/<method>@<train>: its deploy/ model when there is one
    cut = read_cut(args.threshold, args.weights, args.run, args.method)
    args.threshold, args.cut = cut.value, cut
    if cut.note:
        print(f"diqa-bench: warning: {cut.note}", file=sys.stderr)
    return score_paths(args, _registry(args))


def cmd_mos(args) -> int:
    from diqa_bench.mos import compute_mos, format_report, read_ratings  # lazy: loads pandas, numpy

    scale = None
    if args.scale is not None:
        try:
            scale = tuple(float(v) for v in args.scale)
        except ValueError:
            raise UserError(f"--scale LOW HIGH must be two numbers, got {' '.join(args.scale)!r}") from None
        if not (all(math.isfinite(v) for v in scale) and scale[0] < scale[1]):
            raise UserError(f"--scale LOW HIGH needs finite numbers with LOW < HIGH, got {' '.join(args.scale)!r}")
    path = Path(args.ratings)
    if not path.is_file():
        raise UserError(f"{path}: ratings file not found")

    output = check_output_file(args.output, "-o") if args.output else None
    rescale = {}
    for who, low, high in args.rescale_rater:
        try:
            rescale[who] = (float(low), float(high))
        except ValueError:
            raise UserError(f"--rescale-rater ID LOW HIGH: LOW and HIGH must be numbers, got {low!r} {high!r}") from None
    mos, report = compute_mos(read_ratings(path), screening=not args.no_screening, label=str(path), scale=scale,
                              drop_raters=args.drop_rater, rescale_raters=rescale)
    print(format_report(report), file=sys.stderr)
    if output is not None:
        write_output(output, frame_csv(mos), "-o")
        print(f"wrote {len(mos)} images to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(frame_csv(mos))
    return EXIT_OK


COMMANDS = {
    "run": cmd_run,
    "validate": cmd_validate,
    "list": cmd_list,
    "plugins": cmd_plugins,
    "report": cmd_report,
    "compare": cmd_compare,
    "score": cmd_score,
    "mos": cmd_mos,
}  # besides these, the commands plugins register (the core plugin's ``study`` among them)


if __name__ == "__main__":
    sys.exit(main())
