"""The ``diqa-bench study`` command group. Building the parser imports nothing heavy."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from diqa_bench.errors import UserError

LINKS_FILE = "links.txt"


def add_arguments(st) -> None:
    """The ``study`` command's steps (registered as a command by :mod:`diqa_bench.core_plugin`)."""
    ss = st.add_subparsers(dest="study_command", metavar="STEP", required=True)

    c = ss.add_parser("create", help="build a study folder: stimuli from your photos and the distortion generator, protocol, rater plans")
    c.add_argument("photos", nargs="+", help="photo files or folders (each photo is one content group)")
    c.add_argument("-o", "--out", required=True, help="the new study folder")
    c.add_argument("--method", choices=["acr", "pc"], default="acr",
                   help="acr: absolute category rating 1-5 (ITU-T P.910, default); pc: paired comparison with adaptive pairs")
    c.add_argument("--distortions", nargs="+", metavar="NAME", help="distortions to apply (default: all the generator has)")
    c.add_argument("--levels", nargs="+", type=int, metavar="L", help="levels of each distortion, 1..5 (default 1 3 5)")
    c.add_argument("--size", type=int, default=512, help="longest side of the stimuli in pixels (default 512; photos are never enlarged)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--repeats", type=int, default=5, help="ACR: stimuli shown a second time to measure each rater's consistency (default 5)")
    c.add_argument("--training", type=int, default=5, help="training items before the counted ones, anchors at both ends first (default 5)")
    c.add_argument("--session-minutes", type=float, default=20.0, help="a session stops after this long (default 20)")
    c.add_argument("--break-minutes", type=float, default=5.0, help="break required after a session reached its limit (default 5)")
    c.add_argument("--pairs-per-rater", type=int, help="pc: comparisons per rater after training (default: half the stimuli)")
    c.add_argument("--own", metavar="FOLDER", help="your own distorted images too: FOLDER/<photo name>/*.jpg joins that photo's content group")
    c.add_argument("--raters", nargs="+", default=[], metavar="NAME", help="raters to add now (also: study add-rater)")

    a = ss.add_parser("add-rater", help="add raters; prints each one's personal link (also appended to STUDY/links.txt)")
    a.add_argument("study")
    a.add_argument("names", nargs="+")

    s = ss.add_parser("serve", help="serve the rating page (127.0.0.1 unless --host says otherwise)")
    s.add_argument("study")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this computer only)")
    s.add_argument("--port", type=int, default=8765)

    t = ss.add_parser("status", help="how far each rater is")
    t.add_argument("study")

    e = ss.add_parser("export", help="ACR: derm-ratings CSV (image, observer, rating, group); PC: pairs CSV and Bradley-Terry scale")
    e.add_argument("study")
    e.add_argument("-o", "--out", help="export folder (default STUDY/export)")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)


def add_raters(folder: Path, names: list[str], host: str = "127.0.0.1", port: int = 8765) -> list[tuple[str, str]]:
    from .plan import load_protocol, rater_plan  # lazy: loads numpy
    from .store import Store  # lazy: loads sqlite3

    protocol = load_protocol(folder)
    st = Store(folder, create=False)
    made = []
    try:
        for name in names:
            index = st.rater_count()
            if protocol["method"] == "acr":
                plan = rater_plan(protocol, index)
            else:
                plan = [{"pair": t["pair"], "phase": "training"} for t in protocol["training_stimuli"]]
            made.append((name, st.add_rater(name, plan)))
    finally:
        st.close()
    links = Path(folder) / LINKS_FILE
    fd = os.open(links, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # the links are the raters' keys
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        for name, token in made:
            f.write(f"{name}\thttp://{host}:{port}/r/{token}\n")
    return made


def run(args: argparse.Namespace) -> int:
    step = args.study_command
    if step == "create":
        from .plan import create_study  # lazy: loads numpy

        out = Path(args.out)
        protocol = create_study(args.photos, out, method=args.method, distortions=args.distortions, levels=args.levels, size=args.size,
                                seed=args.seed, repeats=args.repeats, training=args.training, session_minutes=args.session_minutes,
                                break_minutes=args.break_minutes, pairs_per_rater=args.pairs_per_rater, own=args.own, log=_log)
        _log(f"study {out}: {len(protocol['stimuli'])} stimuli from {len(protocol['groups'])} photos "
             f"({len(protocol['skipped'])} skipped), method {protocol['method']}")
        if args.raters:
            for name, token in add_raters(out, args.raters):
                print(f"{name}\thttp://127.0.0.1:8765/r/{token}")
        return 0
    if step == "add-rater":
        for name, token in add_raters(Path(args.study), args.names):
            print(f"{name}\thttp://127.0.0.1:8765/r/{token}")
        return 0
    if step == "serve":
        from .server import serve  # lazy: loads flask, numpy, sqlite3

        if not 0 < args.port < 65536:
            raise UserError(f"--port must be 1-65535, got {args.port}")
        try:
            serve(Path(args.study), args.host, args.port, log=_log)
        except OSError as exc:
            raise UserError(f"cannot serve on {args.host}:{args.port} ({exc.strerror or exc})") from None
        return 0
    if step == "status":
        from .export import format_status, status_rows  # lazy: loads numpy, sqlite3

        print(format_status(status_rows(Path(args.study))))
        return 0
    if step == "export":
        from .export import export  # lazy: loads numpy, sqlite3

        for path in export(Path(args.study), Path(args.out) if args.out else None, log=_log):
            print(path)
        return 0
    raise UserError(f"unknown study step {step!r}")
