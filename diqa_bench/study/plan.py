"""``study create``: the stimuli, the protocol and the per-rater presentation plans.

Stimuli are the user's photos (each one a content group, named after its file) downscaled to a
longest side of ``size`` pixels, plus the project's distortions of each at the chosen levels, as
the default benchmark generates them (``plugins/diqa_datasets/embedded/distortions.py``, called by
name). The protocol follows ITU-T P.910 (absolute category rating, ACR, 5 levels) and ITU-R
BT.500 (paired comparison): ``study.json`` holds it, with every stimulus, its group, distortion
and level.

A rater's plan (ACR) is a training block, then every stimulus once and ``repeats`` of them a second
time, shuffled so that no two consecutive stimuli come from one source photo (a rater would
otherwise compare the two instead of judging each), seeded by the study seed and the rater's
number. The training block shows anchors at both ends of the scale (pristine photos and the most
severe distortions) before the ratings that count.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diqa_bench.errors import DataError, UserError
from .store import Store
from diqa_bench.files import atomic_write

STUDY_FILE = "study.json"
STIMULI_DIR = "stimuli"
METHODS = ("acr", "pc")
ACR_LABELS = ["Bad", "Poor", "Fair", "Good", "Excellent"]  # ITU-T P.910 five-level scale, 1..5
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
PRISTINE = "pristine"


@dataclass
class Skipped:
    path: str
    reason: str


def find_photos(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise UserError(f"{p}: no such file or folder")
    return out


def _group_name(path: Path, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem).strip("._") or "photo"
    name, k = base, 2
    while name in taken:  # two photos named alike in different folders stay two groups
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


def _load_photo(path: Path, size: int) -> np.ndarray:
    """Float RGB in [0, 1], longest side ``size`` (never enlarged); DataError with a reason."""
    from PIL import Image

    from diqa_bench.images import decode  # lazy: loads PIL

    pixels = decode(path)  # pixel limit on the header, EXIF rotation, any mode to RGB; DataError otherwise
    h, w = pixels.shape[:2]
    if min(h, w) < 32:
        raise DataError(f"{path}: {w}x{h} pixels is too small to rate")
    scale = min(1.0, size / max(h, w))
    if scale < 1.0:
        img = Image.fromarray((pixels * 255.0 + 0.5).astype(np.uint8))
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
        pixels = np.asarray(img, dtype=np.float32) / 255.0
    return pixels


def _distortions() -> dict[str, Any]:
    from diqa_datasets.embedded.distortions import DISTORTIONS

    return DISTORTIONS


def create_study(
    photos: list[str],
    out: Path,
    *,
    method: str = "acr",
    distortions: list[str] | None = None,
    levels: list[int] | None = None,
    size: int = 512,
    seed: int = 0,
    repeats: int = 5,
    training: int = 5,
    session_minutes: float = 20.0,
    break_minutes: float = 0.0,
    pairs_per_rater: int | None = None,
    own: str | None = None,
    log=print,
) -> dict[str, Any]:
    """Write the study folder (stimuli, study.json, an empty study.sqlite); returns the protocol.

    ``own``: a folder of the user's own distorted images, one sub-folder per source photo named as
    the photo's file (without extension): ``own/<photo>/<anything>.jpg`` joins that photo's group
    as distortion ``own``, level 0 (not a generator level)."""
    from PIL import Image

    if method not in METHODS:
        raise UserError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    table = _distortions()
    distortions = list(table) if distortions is None else list(distortions)
    unknown = [d for d in distortions if d not in table]
    if unknown:
        raise UserError(f"unknown distortion(s) {', '.join(unknown)}; known: {', '.join(table)}")
    levels = sorted(set(levels or [1, 3, 5]))
    if not levels or levels[0] < 1 or levels[-1] > 5:
        raise UserError(f"--levels must lie in 1..5, got {levels}")
    if size < 64:
        raise UserError(f"--size must be at least 64 pixels, got {size}")
    if repeats < 0 or training < 2:
        raise UserError("--repeats must be >= 0 and --training >= 2 (one anchor at each end of the scale)")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: folder exists and is not empty (a study folder holds its ratings: choose a new one)")
    files = find_photos(photos)
    if not files:
        raise UserError(f"no photos ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {' '.join(photos)}")

    skipped: list[Skipped] = []
    seen: dict[str, Path] = {}
    sources: list[tuple[str, Path, np.ndarray]] = []
    groups: set[str] = set()

    def admit(f: Path) -> np.ndarray | None:
        """The photo's pixels, or None when it is a duplicate or does not load (listed as skipped)."""
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        if digest in seen:
            skipped.append(Skipped(str(f), f"duplicate of {seen[digest]}"))
            return None
        try:
            pixels = _load_photo(f, size)
        except DataError as exc:
            skipped.append(Skipped(str(f), str(exc)))
            return None
        seen[digest] = f
        return pixels

    for f in files:
        if (pixels := admit(f)) is not None:
            sources.append((_group_name(f, groups), f, pixels))
    own_images: list[tuple[str, str, np.ndarray]] = []
    if own:
        by_group = {g for g, _, _ in sources}
        for f in find_photos([own]):
            group = f.parent.name
            if group not in by_group:
                skipped.append(Skipped(str(f), f"its folder {group!r} names no source photo (expected one of the photos' names)"))
                continue
            if (pixels := admit(f)) is None:
                continue
            stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f.stem).strip("._") or "image"
            own_images.append((group, stem, pixels))
    for s in skipped:
        log(f"skipped {s.path}: {s.reason}")
    if len(sources) < 2:
        raise UserError(f"{len(sources)} usable photo(s) of {len(files)}: a study needs at least 2 source photos")

    stim_dir = out / STIMULI_DIR
    stim_dir.mkdir(parents=True, exist_ok=True)
    stimuli: list[dict[str, Any]] = []
    for k, (group, path, pixels) in enumerate(sources):
        (stim_dir / group).mkdir(exist_ok=True)
        variants: list[tuple[str | None, int, np.ndarray]] = [(None, 0, (np.clip(pixels, 0, 1) * 255 + 0.5).astype(np.uint8))]
        for dist in distortions:
            for level in levels:
                # seeded by names, not positions: the same photo and distortion give the same image in any study
                rng = np.random.default_rng([seed, zlib.crc32(group.encode()), zlib.crc32(dist.encode()), level])
                variants.append((dist, level, table[dist](pixels, level, rng)))
        taken: set[str] = set()
        for _, stem, own_pixels in (o for o in own_images if o[0] == group):
            name = _group_name(Path(f"own_{stem}"), taken)
            variants.append((name, 0, (np.clip(own_pixels, 0, 1) * 255 + 0.5).astype(np.uint8)))
        for dist, level, img in variants:
            stem = PRISTINE if dist is None else (dist if level == 0 else f"{dist}_{level}")
            if level == 0 and dist is not None:
                dist = "own"
            rel = f"{STIMULI_DIR}/{group}/{stem}.png"
            try:
                Image.fromarray(img).save(out / rel, format="PNG", compress_level=3)
            except OSError as exc:  # a full disk or a read-only folder: nothing is rated yet, so nothing is lost
                raise UserError(f"{out / rel}: cannot write the stimulus ({exc.strerror or exc}); the study folder is incomplete, delete it") from None
            stimuli.append({"id": f"s{len(stimuli) + 1:04d}", "path": rel, "group": group, "source": str(path),
                            "distortion": dist, "level": level})
    protocol: dict[str, Any] = {
        "format": 1,
        "method": method,
        "scale": [1, 5] if method == "acr" else None,
        "labels": ACR_LABELS if method == "acr" else None,
        "standard": "ITU-T P.910 absolute category rating (ACR), 5 levels" if method == "acr"
        else "ITU-R BT.500 paired comparison (two images side by side, which is better?)",
        "seed": seed,
        "size": size,
        "distortions": distortions,
        "levels": levels,
        "repeats": repeats if method == "acr" else 0,
        "training": training,
        "session_minutes": session_minutes,
        "break_minutes": break_minutes,
        "pairs_per_rater": (pairs_per_rater or max(10, len(stimuli) // 2)) if method == "pc" else None,
        "groups": sorted({s["group"] for s in stimuli}),
        "stimuli": stimuli,
        "training_stimuli": training_stimuli(stimuli, training, method, np.random.default_rng([seed, 1])),
        "skipped": [s.__dict__ for s in skipped],
    }

    atomic_write(out / STUDY_FILE, json.dumps(protocol, indent=1) + "\n")
    Store(out).close()  # creates the database and its tables
    return protocol


def load_protocol(folder: Path) -> dict[str, Any]:
    path = Path(folder) / STUDY_FILE
    if not path.is_file():
        raise UserError(f"{folder}: not a study folder (no {STUDY_FILE}; make one with `diqa-bench study create`)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: damaged ({exc})") from None


def training_stimuli(stimuli: list[dict], n: int, method: str, rng: np.random.Generator) -> list[dict[str, Any]]:
    """The training block: anchors at both ends of the scale, from different source photos.

    ACR: entries ``{"stimulus", "anchor"}`` alternating top (a pristine photo) and bottom (the most
    severe level of a distortion), then mid-scale ones if n > 4. PC: pairs of a pristine photo and
    its most severe distortion (an obvious answer: it teaches the task, not the scale)."""
    top = [s for s in stimuli if s["distortion"] is None]
    worst_level = max((s["level"] for s in stimuli), default=0)
    bottom = [s for s in stimuli if s["distortion"] is not None and s["level"] == worst_level]
    mid = [s for s in stimuli if s["distortion"] is not None and 0 < s["level"] < worst_level]
    order = {k: list(rng.permutation(len(v))) for k, v in (("top", top), ("bottom", bottom), ("mid", mid))}
    pools = {"top": top, "bottom": bottom, "mid": mid}
    out: list[dict[str, Any]] = []
    if method == "pc":
        for i in order["top"][:n]:
            worst = [b for b in bottom if b["group"] == top[i]["group"]]
            if worst:
                pair = [top[i]["id"], worst[int(rng.integers(len(worst)))]["id"]]
                if rng.random() < 0.5:
                    pair.reverse()
                out.append({"pair": pair, "anchor": "obvious"})
        return out
    kinds = ["top", "bottom"] * n
    if n > 4:
        kinds = ["top", "bottom", "top", "bottom"] + ["mid"] * (n - 4)
    used_groups: list[str] = []
    for kind in kinds[:n]:
        pool = pools[kind] if pools[kind] else pools["top"]
        picks = order[kind] if pools[kind] else order["top"]
        for j, idx in enumerate(picks):
            s = pool[idx]
            if not used_groups or s["group"] != used_groups[-1]:
                out.append({"stimulus": s["id"], "anchor": kind})
                used_groups.append(s["group"])
                picks.pop(j)
                break
    return out


def shuffle_no_adjacent(items: list[Any], group_of, rng: np.random.Generator, previous: str | None = None) -> list[Any]:
    """A random order of ``items`` in which no two consecutive items share a group (nor the first
    with ``previous``), when one exists: at each step a random item from another group than the
    last, except that a group holding more than half of what is left must go now (else it could
    not be interleaved any more)."""
    remaining: dict[str, list[Any]] = {}
    for it in items:
        remaining.setdefault(group_of(it), []).append(it)
    for g in remaining:
        remaining[g] = [remaining[g][i] for i in rng.permutation(len(remaining[g]))]
    out: list[Any] = []
    last = previous
    left = len(items)
    while left:
        counts = {g: len(v) for g, v in remaining.items() if v}
        big = max(counts, key=lambda g: (counts[g], g))
        if 2 * counts[big] > left and big != last:
            group = big
        else:
            eligible = [g for g in counts if g != last] or list(counts)  # no choice left: infeasible input
            weights = np.array([counts[g] for g in eligible], dtype=float)
            group = eligible[int(rng.choice(len(eligible), p=weights / weights.sum()))]
        out.append(remaining[group].pop())
        last = group
        left -= 1
    return out


def rater_plan(protocol: dict[str, Any], rater_index: int) -> list[dict[str, Any]]:
    """The ACR presentation plan of one rater: entries ``{"stimulus", "phase", "anchor"?, "repeat"?}``
    in presentation order (phase ``training`` first, then ``rating``)."""
    rng = np.random.default_rng([int(protocol["seed"]), 2, int(rater_index)])
    by_id = {s["id"]: s for s in protocol["stimuli"]}
    plan = [{"stimulus": t["stimulus"], "phase": "training", "anchor": t["anchor"]} for t in protocol["training_stimuli"]]
    main = [{"stimulus": s["id"], "phase": "rating"} for s in protocol["stimuli"]]
    n_rep = min(int(protocol.get("repeats") or 0), len(main))
    for i in sorted(rng.choice(len(main), size=n_rep, replace=False)) if n_rep else []:
        main.append({"stimulus": main[i]["stimulus"], "phase": "rating", "repeat": True})
    previous = by_id[plan[-1]["stimulus"]]["group"] if plan else None
    plan += shuffle_no_adjacent(main, lambda e: by_id[e["stimulus"]]["group"], rng, previous)
    # A repeat must come after its first showing (it measures consistency, not a first impression).
    first_seen: set[str] = set()
    for e in plan:
        if e["phase"] != "rating":
            continue
        if e["stimulus"] in first_seen:
            e["repeat"] = True
        else:
            e.pop("repeat", None)
            first_seen.add(e["stimulus"])
    return plan
