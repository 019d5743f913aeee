"""``study status`` and ``study export``.

ACR exports the raw ``derm-ratings`` format: ``ratings.csv`` with ``image, observer, rating,
group`` (the image path relative to the study folder, the rater's name, 1-5, the source photo as
content group), first showings only: training answers and the repeats are left out (the repeats
measure each rater's consistency, reported by ``status`` and in ``consistency.csv``). A
``derm-ratings.yaml`` beside it is a domain block for a benchmark config.

PC exports ``pairs.csv`` (``better, worse, group``: one row per answer of the rating phase, the
chosen image as better; group is the two sources joined when they differ) for the ``pairs``
dataset, and ``scale.csv``: the Bradley-Terry scale of every stimulus in JOD with its 95% interval,
and ``mos``: the scale mapped linearly onto 1-5 (lowest stimulus 1, highest 5), with ``std`` the
standard error in those units, readable as a precomputed MOS by ``derm-ratings`` (``mos:``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from diqa_bench.errors import UserError

from .plan import load_protocol
from .store import Store
from diqa_bench.files import atomic_write
from .scaling import bradley_terry, win_matrix


def _store(folder: Path) -> Store:
    return Store(folder, create=False)


def status_rows(folder: Path) -> list[dict[str, Any]]:
    protocol = load_protocol(folder)
    st = _store(folder)
    try:
        out = []
        for r in st.raters():
            plan = json.loads(r["plan"])
            total = len(plan) + (int(protocol["pairs_per_rater"]) if protocol["method"] == "pc" else 0)
            rows = st.ratings(r["id"])
            rated = [x for x in rows if x["phase"] == "rating"]
            last = max((x["received"] for x in rows), default=None)
            sessions = st.db.execute("SELECT COUNT(*) FROM sessions WHERE rater_id = ?", (r["id"],)).fetchone()[0]
            out.append({
                "rater": r["name"], "answered": len(rows), "total": total,
                "training_done": sum(1 for x in rows if x["phase"] == "training"),
                "ratings": len(rated), "sessions": sessions,
                "repeat_mean_abs_diff": consistency(rows)[0] if protocol["method"] == "acr" else None,
                "setup": json.loads(r["setup"]) if r["setup"] else None,
                "last": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last)) if last else None,
            })
        return out
    finally:
        st.close()


def consistency(rows) -> tuple[float | None, list[tuple[str, float, float]]]:
    """Mean absolute difference between a stimulus' first rating and its repeat (0 = perfectly
    consistent), and the pairs it is computed from."""
    first: dict[str, float] = {}
    pairs = []
    for x in sorted(rows, key=lambda x: x["position"]):
        if x["phase"] != "rating":
            continue
        if x["repeat"]:
            if x["stimulus"] in first:
                pairs.append((x["stimulus"], first[x["stimulus"]], x["answer"]))
        else:
            first.setdefault(x["stimulus"], x["answer"])
    if not pairs:
        return None, pairs
    return sum(abs(a - b) for _, a, b in pairs) / len(pairs), pairs


def format_status(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no raters yet: add them with `diqa-bench study add-rater STUDY NAME`"
    lines = [f"{'rater':<16} {'answered':>12} {'training':>8} {'sessions':>8} {'repeat |Δ|':>10}  last answer"]
    for r in rows:
        rep = "-" if r["repeat_mean_abs_diff"] is None else f"{r['repeat_mean_abs_diff']:.2f}"
        state = " (done)" if r["answered"] >= r["total"] else ""
        lines.append(f"{r['rater']:<16} {r['answered']:>5} / {r['total']:<4} {r['training_done']:>8} {r['sessions']:>8} {rep:>10}  {r['last'] or '-'}{state}")
    return "\n".join(lines)


def export(folder: Path, out: Path | None = None, log=print) -> list[Path]:
    """Write the export files into ``out`` (default: ``<study>/export``); returns their paths."""
    import pandas as pd

    folder = Path(folder)
    protocol = load_protocol(folder)
    out = Path(out) if out else folder / "export"
    stimuli = {s["id"]: s for s in protocol["stimuli"]}
    st = _store(folder)
    try:
        rows = st.ratings()
    finally:
        st.close()
    rated = [x for x in rows if x["phase"] == "rating"]
    if not rated:
        raise UserError(f"{folder}: no ratings yet (training answers are not exported)")
    written: list[Path] = []
    if protocol["method"] == "acr":
        seen: set[tuple[str, str]] = set()
        table, cons = [], []
        for x in sorted(rated, key=lambda x: (x["rater"], x["position"])):
            key = (x["rater"], x["stimulus"])
            s = stimuli[x["stimulus"]]
            if key in seen:
                continue
            seen.add(key)
            table.append({"image": s["path"], "observer": x["rater"], "rating": int(x["answer"]), "group": s["group"]})
        for name in sorted({x["rater"] for x in rated}):
            _, pairs = consistency([x for x in rated if x["rater"] == name])
            cons += [{"observer": name, "image": stimuli[sid]["path"], "first": a, "repeat": b} for sid, a, b in pairs]
        df = pd.DataFrame(table)
        atomic_write(out / "ratings.csv", df.to_csv(index=False))
        written.append(out / "ratings.csv")
        atomic_write(out / "consistency.csv", pd.DataFrame(cons, columns=["observer", "image", "first", "repeat"]).to_csv(index=False))
        written.append(out / "consistency.csv")
        snippet = (f"# a domain of human ratings from the study in {folder.resolve()}\n"
                   f"- dataset: derm-ratings\n  options:\n    root: {folder.resolve()}\n    ratings: {(out / 'ratings.csv').resolve()}\n"
                   f"    patient_column: group\n    scale: [{protocol['scale'][0]}, {protocol['scale'][1]}]\n")
        atomic_write(out / "derm-ratings.yaml", snippet)
        written.append(out / "derm-ratings.yaml")
        log(f"exported {len(df)} ratings of {df['image'].nunique()} images by {df['observer'].nunique()} raters "
            f"({len(rated) - len(df)} repeats left out, {len(rows) - len(rated)} training answers left out)")
        return written
    return written + _export_pairs(protocol, stimuli, rated, folder, out, log)


def _export_pairs(protocol, stimuli, rated, folder: Path, out: Path, log) -> list[Path]:
    import numpy as np
    import pandas as pd

    ids = list(stimuli)
    index = {sid: k for k, sid in enumerate(ids)}
    pairs, winners, losers = [], [], []
    for x in rated:
        a, b = x["stimulus"], x["stimulus_b"]
        better, worse = (b, a) if x["answer"] >= 0.5 else (a, b)
        ga, gb = stimuli[better]["group"], stimuli[worse]["group"]
        pairs.append({"better": stimuli[better]["path"], "worse": stimuli[worse]["path"], "group": ga if ga == gb else "+".join(sorted((ga, gb))),
                      "observer": x["rater"]})
        winners.append(index[better])
        losers.append(index[worse])
    atomic_write(out / "pairs.csv", pd.DataFrame(pairs).to_csv(index=False))
    wins = win_matrix(len(ids), winners, losers)
    compared = np.flatnonzero((wins + wins.T).sum(axis=1) > 0)
    sub = wins[np.ix_(compared, compared)]
    scale = bradley_terry(sub, prior=0.1)  # a weak prior keeps a stimulus that always won finite
    lo, hi = float(scale.score.min()), float(scale.score.max())
    span = (hi - lo) or 1.0

    def to_mos(v: float) -> float:
        return 1.0 + 4.0 * (v - lo) / span

    rows = []
    for k, i in enumerate(compared):
        s = stimuli[ids[i]]
        rows.append({"image": s["path"], "jod": round(float(scale.score[k]), 4), "jod_low": round(float(scale.low[k]), 4),
                     "jod_high": round(float(scale.high[k]), 4), "mos": round(to_mos(float(scale.score[k])), 4),
                     "std": round(4.0 * float(scale.se[k]) / span, 4), "comparisons": int(scale.comparisons[k]), "group": s["group"]})
    atomic_write(out / "scale.csv", pd.DataFrame(rows).to_csv(index=False))
    log(f"exported {len(pairs)} comparisons (pairs.csv) and the scale of {len(rows)} of {len(ids)} stimuli (scale.csv, JOD and 1-5)")
    return [out / "pairs.csv", out / "scale.csv"]
