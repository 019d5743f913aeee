"""The human-agreement table of each rated test domain (:mod:`diqa_bench.agreement`): noise
ceiling, each entry's distance to it, and the false-ranking analysis; ``agreement.csv``.

A run keeps the raters' scores of every dataset rated from raw ratings in ``ratings.csv``
(:func:`write_ratings`). Per test domain whose datasets all have them, entry and split seed:
the statistics on the cell's test images, their mean over seeds and a content-group bootstrap
interval from the cell's own draws (those of metrics.csv's intervals), so the ceiling, the
entry's SROCC / PLCC and their distance are paired. An entry "performs like one human rater" when
the upper end of its SROCC interval reaches the ceiling's SROCC.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diqa_bench import agreement as ag
from diqa_bench import stats
from diqa_bench.report.stored import StoredRun, load_run
from diqa_bench.files import atomic_write, frame_csv, read_csv

RATINGS_FILE = "ratings.csv"
TABLE_COLUMNS = ["test", "method", "train", "statistic", "value", "ci_low", "ci_high", "seeds", "images", "raters", "pairs_different",
                 "pairs_similar", "like_one_rater"]
# statistic names of agreement.csv: the entry's own, the ceiling, the distance (ceiling - entry), the pair statistics
STATISTICS = ("SROCC", "PLCC", "CEILING_SROCC", "CEILING_PLCC", "DIST_SROCC", "DIST_PLCC", *ag.PAIR_STATISTICS)
NO_RATER_DATA = "no per-rater data"


def write_ratings(folder: Path, plan) -> Path | None:
    """``ratings.csv`` (dataset, image, observer, rating) of every dataset of the plan that kept
    its raters' scores (``rater_scores``); None when none did."""
    import pandas as pd

    parts = [t.assign(dataset=name)[["dataset", "image", "observer", "rating"]]
             for name, t in sorted((getattr(plan, "ratings", None) or {}).items())]
    if not parts:
        return None
    path = Path(folder) / RATINGS_FILE
    atomic_write(path, frame_csv(pd.concat(parts, ignore_index=True)))
    return path


def read_ratings(folder: Path):
    """The stored ratings.csv, or None."""
    path = Path(folder) / RATINGS_FILE
    if not path.is_file():
        return None
    return read_csv(path, dtype={"dataset": str, "image": str, "observer": str}, keep_default_na=False)


def rated_domains(run: StoredRun, ratings) -> list[str]:
    """The test domains whose datasets all have per-rater data."""
    if ratings is None or not len(ratings):
        return []
    have = set(ratings["dataset"])
    return [t for t in run.test_domains() if run.domain_datasets(t) and all(d["name"] in have for d in run.domain_datasets(t))]


def agreement(folder_or_run: Path | StoredRun, bootstrap: int | None = None, confidence: float | None = None, seed: int | None = None):
    """Tidy DataFrame (:data:`TABLE_COLUMNS`, statistics :data:`STATISTICS`) of every entry of
    every rated test domain; empty without per-rater data."""
    import pandas as pd

    run = folder_or_run if isinstance(folder_or_run, StoredRun) else load_run(folder_or_run)
    bootstrap, confidence, seed = run.bootstrap_settings(bootstrap, confidence, seed)
    ratings = read_ratings(run.folder)
    tests = set(rated_domains(run, ratings))
    rows = []
    entries: dict[tuple[str, str, str], list[str]] = {}
    cells = run.cells()
    for method, train, test, s in cells:
        if test in tests:
            entries.setdefault((method, train, test), []).append(s)
    for (method, train, test), seeds in entries.items():
        parts: dict[str, list[tuple[float, np.ndarray]]] = {}
        sizes = []
        for s in seeds:
            cell = cells[(method, train, test, s)]
            sample = cell.sample()
            matrix = ag.ratings_matrix(cell.images, ratings)
            rated = ~np.isnan(matrix)
            n = rated.sum(1)
            with np.errstate(all="ignore"):  # an image without ratings (or with one) tests as different from none
                mean = np.nansum(matrix, 1) / n
                std = np.sqrt(np.nansum((matrix - mean[:, None]) ** 2, 1) / (n - 1))
            i, j, different = ag.significant_pairs(mean, std, n, confidence, same=[d for d, _ in cell.images])
            sizes.append((sample.n, int((rated.any(0)).sum()), int(different.sum()), int((~different).sum())))
            w = (stats.group_weights(sample.codes, bootstrap, stats.seed_rng(seed, stats.draw_seed(s, run.shared_draws)))
                 if bootstrap > 0 and sample.n >= 3 and sample.n_groups > 1 else None)
            point_ceiling, rep_ceiling = ag.noise_ceiling(matrix, sample.codes), ag.noise_ceiling(matrix, sample.codes, w) if w is not None else None
            point_pairs, rep_pairs = ag.false_ranking(sample.score, sample.mos, i, j, different), (
                ag.false_ranking(sample.score, sample.mos, i, j, different, w) if w is not None else None)
            for name in ("SROCC", "PLCC"):
                own = float(stats.statistic(name, sample)[0])
                own_rep = stats.statistic(name, sample, w) if w is not None else None
                ceil = float(point_ceiling[name][0])
                ceil_rep = rep_ceiling[name] if w is not None else None
                parts.setdefault(name, []).append((own, own_rep))
                parts.setdefault(f"CEILING_{name}", []).append((ceil, ceil_rep))
                parts.setdefault(f"DIST_{name}", []).append((ceil - own, None if w is None else ceil_rep - own_rep))
            for name in ag.PAIR_STATISTICS:
                parts.setdefault(name, []).append((float(point_pairs[name][0]), None if w is None else rep_pairs[name]))
        mean_size = [int(round(np.mean([x[k] for x in sizes]))) for k in range(4)]
        values = {}
        for name in STATISTICS:
            got = parts[name]
            value = float(np.mean([p for p, _ in got]))
            if all(r is not None for _, r in got):
                lo, hi = stats.quantile_ci(stats.seed_mean([r for _, r in got]), confidence)
            else:
                lo = hi = float("nan")
            values[name] = (value, lo, hi)
        like = bool(np.isfinite(values["SROCC"][2]) and values["SROCC"][2] >= values["CEILING_SROCC"][0])
        for name, (value, lo, hi) in values.items():
            rows.append(dict(test=test, method=method, train=train, statistic=name, value=value, ci_low=lo, ci_high=hi, seeds=len(seeds),
                             images=mean_size[0], raters=mean_size[1], pairs_different=mean_size[2], pairs_similar=mean_size[3],
                             like_one_rater=like))
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def read_agreement(folder: Path):
    """The stored agreement.csv, or None."""
    path = Path(folder) / "agreement.csv"
    if not path.is_file():
        return None
    table = read_csv(path, dtype={"method": str, "train": str, "test": str, "statistic": str}, keep_default_na=False,
                     na_values={c: [""] for c in ("value", "ci_low", "ci_high")})
    table["like_one_rater"] = table["like_one_rater"].astype(str).str.lower() == "true"
    return table


def _cell(value: float, lo: float = float("nan"), hi: float = float("nan")) -> str:
    if value != value:
        return "n/a"
    return f"{value:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo == lo and hi == hi else "")


def agreement_rows(table, test: str) -> tuple[str, list[str], list[list[str]]]:
    """(sentence naming the ceiling, header, rows) of one test domain's agreement table; empty
    when the domain has none."""
    if table is None or not len(table):
        return "", [], []
    sub = table[table["test"] == test]
    if not len(sub):
        return "", [], []
    header = ["Method @ train set", "SROCC [CI]", "Ceiling - SROCC [CI]", "PLCC [CI]", "Ceiling - PLCC [CI]", "Like one rater",
              "False ranking [CI]", "Ties", "C0", "AUC better/worse", "AUC different/similar"]
    rows, sentence = [], ""
    for (method, train), g in sub.groupby(["method", "train"], sort=False):
        by = {r.statistic: r for r in g.itertuples(index=False)}
        c = lambda name, ci=True: _cell(by[name].value, by[name].ci_low, by[name].ci_high) if ci else _cell(by[name].value)  # noqa: E731
        if not sentence:
            first = by["CEILING_SROCC"]
            sentence = (f"Noise ceiling (one rater against the mean of the others, leave-one-rater-out, mean over {first.raters} raters): "
                        f"SROCC {c('CEILING_SROCC')}, PLCC {c('CEILING_PLCC')}; {first.pairs_different} of "
                        f"{first.pairs_different + first.pairs_similar} image pairs differ significantly")
        rows.append([f"{method} @ {train}", c("SROCC"), c("DIST_SROCC"), c("PLCC"), c("DIST_PLCC"),
                     "performs like one human rater" if by["SROCC"].like_one_rater else "",
                     c("FALSE_RANK"), c("TIE", False), c("C0", False), c("AUC_BW"), c("AUC_DS")])
    return sentence, header, rows


def agreement_lines(table, run_info: dict, test: str) -> list[str]:
    """Markdown of one MOS test domain's human-agreement section: the table, or one line saying
    there is no per-rater data."""
    from tabulate import tabulate

    sentence, header, rows = agreement_rows(table, test)
    if not rows:
        pseudo = " (pseudo-MOS labels)" if run_info.get("domains", {}).get(test, {}).get("pseudo_mos") else ""
        return [f"Human agreement on {test}: {NO_RATER_DATA}{pseudo}, so no noise ceiling or false-ranking analysis.", ""]
    conf = int(round(100 * run_info.get("protocol", {}).get("confidence", 0.95)))
    return [f"### Human agreement on {test}", "",
            f"{sentence} (Welch t-test on each image's ratings at {conf}%). Mean over split seeds [{conf}% content-group bootstrap "
            "interval, the same draws for the ceiling and the entry]. *Like one rater*: the SROCC interval reaches the ceiling. *False "
            "ranking*, *ties*, *C0*: shares of the significantly different pairs the method ranks the wrong way round, ties, ranks right; "
            "AUCs after Krasula et al. (QoMEX 2016). All values: agreement.csv.", "",
            tabulate(rows, headers=header, tablefmt="github", disable_numparse=True), ""]
