"""The files of a paired-preference domain: ``pairs.csv`` (every pair of every pair test domain,
once) written beside scores.csv, and PAIR_ACC recomputed from a stored run's files alone."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

from diqa_bench.files import atomic_write, frame_csv, read_csv
from diqa_bench.pairs import PAIR_COLUMNS, Pair, evaluate
from diqa_bench.store import load_results


def pairs_frame(paired: list[Any]):
    """pairs.csv: every pair of every pair test domain, once."""
    import pandas as pd  # only when a run writes its tables

    rows, seen = [], set()
    for o in paired:
        if o.test in seen:
            continue
        seen.add(o.test)
        rows.extend((o.test, name, p.better, p.worse, p.group, p.category) for name, p in o.pairs)
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def write_pair_files(out, paired: list[Any]) -> dict[str, Any]:
    """Write pairs.csv into ``out`` when the run has pair-domain cells; returns its path by key."""
    if not paired:
        return {}
    path = out / "pairs.csv"
    atomic_write(path, frame_csv(pairs_frame(paired)))
    return {"pairs": path}


def recompute(folder, bootstrap: int | None = None) -> Any:
    """PAIR_ACC rows of a stored run recomputed from scores.csv, pairs.csv and run.json alone (no
    method runs): what ``diqa-bench report`` would need if metrics.csv were lost."""
    folder = Path(folder)
    _, info = load_results(folder)
    scores = read_csv(folder / "scores.csv", dtype={"image": str, "dataset": str, "domain": str, "method": str, "train": str, "seed": str},
                         keep_default_na=False, na_values={"score": [""]})
    table = read_csv(folder / "pairs.csv", dtype=str, keep_default_na=False)
    p = info.get("protocol", {})
    config = types.SimpleNamespace(bootstrap=p.get("bootstrap", 1000) if bootstrap is None else bootstrap, confidence=p.get("confidence", 0.95),
                                   stats_seed=p.get("stats_seed", 0))
    lower = {(c["method"], c["train"]): bool(c.get("lower_better")) for c in info.get("cells", [])}
    outcomes = []
    for (method, train, test, seed), rows in scores.groupby(["method", "train", "domain", "seed"], sort=False):
        sub = table[table["domain"] == test]
        if sub.empty:
            continue
        images = [types.SimpleNamespace(dataset=d, id=i) for d, i in zip(rows["dataset"], rows["image"])]
        pairs = [(r.dataset, Pair(r.better, r.worse, r.group, r.category)) for r in sub.itertuples(index=False)]
        outcomes.append(types.SimpleNamespace(method=method, train=train, test=test, seed=seed, status="ok", images=images,
                                              scores=rows["score"].astype(float).tolist(), lower_better=lower.get((method, train), False), pairs=pairs))
    return evaluate(outcomes, config)[0]
