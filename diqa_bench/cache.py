"""On-disk caches, keyed by everything a result depends on.

One SQLite file per kind of result under the cache folder (``--cache-dir``, else
``$DIQA_BENCH_CACHE``, else ``$XDG_CACHE_HOME/diqa-bench`` or ``~/.cache/diqa-bench``):

- ``scores.sqlite``: one score per (method cache token, image content hash). A zero-shot method
  scores each image once, whatever cells, seeds or runs ask for it; a killed run resumes from what
  was committed.
- ``features.sqlite``: per-image feature arrays for methods that extract features (namespace chosen
  by the method, so it must include what the features depend on).

SQLite gives atomic commits and safe concurrent readers for free.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from diqa_bench.batch import FeatureCache
from diqa_bench.errors import UserError


def default_cache_dir() -> Path:
    env = os.environ.get("DIQA_BENCH_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "diqa-bench"


def file_hash(path: str | Path) -> str:
    """Content hash of a file (BLAKE2b, 16 hex digits): the image's identity in every cache."""
    h = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_SHA256: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """sha256 of a file (hex), computed once per process for each (real path, size, mtime):
    weight files are hundreds of megabytes, and every cell asks."""
    real = os.path.realpath(path)
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns)
    if key not in _SHA256:
        h = hashlib.sha256()
        with open(real, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _SHA256[key] = h.hexdigest()
    return _SHA256[key]


def weights_used(method: Any, ctx: Any) -> list[dict[str, str]]:
    """The weight files ``method`` loads in ``ctx`` (:meth:`Method.weight_files`), each with its
    sha256: what run.json records."""
    return [{"path": str(p), "sha256": file_sha256(p)} for p in method.weight_files(ctx) if Path(p).is_file()]


def weights_token(method: Any, ctx: Any) -> str:
    """``method.cache_token()`` plus the content of every weight file it loads: other weights, or a
    file overwritten in place, never get the scores (or the fit) cached for the old ones. A method
    without weight files keeps its plain token."""
    token = method.cache_token()
    files = weights_used(method, ctx)
    return token if not files else "w:" + stable_hash([token, [f["sha256"] for f in files]])


def stable_hash(obj: Any, n: int = 16) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:n]


class CacheWarning(UserWarning):
    pass


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """Whether an SQLite error says the file itself is damaged (not locked, full or read-only)."""
    message = str(exc)
    return (getattr(exc, "sqlite_errorname", "") in ("SQLITE_CORRUPT", "SQLITE_NOTADB")
            or "malformed" in message or "not a database" in message)


def _connect(path: Path, schema: str) -> sqlite3.Connection:
    """Open (creating if needed) one cache database with its table. A cache is disposable: a file
    that is not a database any more (a crash of the disk, a stray write) is renamed aside with a
    one-line warning and started afresh; a folder that cannot be written is a one-line UserError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cache folder {path.parent}: cannot be created: {exc.strerror or exc} (set --cache-dir or $DIQA_BENCH_CACHE)") from None
    for attempt in range(2):
        try:
            return _open(path, schema)
        except sqlite3.DatabaseError as exc:
            damaged = not isinstance(exc, sqlite3.OperationalError) or _damaged(exc)
            if not damaged or attempt:
                raise UserError(f"cache {path}: {exc} (set --cache-dir or $DIQA_BENCH_CACHE to a writable folder with free space)") from None
            _set_aside_damaged(path, exc)
    raise AssertionError("unreachable")


def _set_aside_damaged(path: Path, exc: Exception) -> None:
    import warnings

    aside = set_aside(path, suffixes=("", "-wal", "-shm"))
    warnings.warn(f"cache {path} was damaged ({exc}); moved to {aside.name} and rebuilt (results already computed will be recomputed)",
                  CacheWarning, stacklevel=4)


class _Database:
    """One cache database. Damage can show only when a page is read or written (the header and
    schema may still be intact): the operation that meets it sets the file aside, with the
    one-line warning, and runs again on a fresh database, so the run goes on."""

    def __init__(self, path: Path, schema: str) -> None:
        self.path, self.schema = Path(path), schema
        self.con = _connect(self.path, schema)
        self.inode = _inode(self.path)

    def run(self, operation):
        try:
            return operation(self.con)
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):
                raise
            try:
                self.con.close()
            except sqlite3.Error:
                pass
            if _inode(self.path) == self.inode:  # else another process has set it aside already
                _set_aside_damaged(self.path, exc)
            self.con = _connect(self.path, self.schema)
            self.inode = _inode(self.path)
        return operation(self.con)


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _open(path: Path, schema: str) -> sqlite3.Connection:
    con = sqlite3.connect(str(path), timeout=60)
    try:
        # WAL suits many processes on one machine; network file systems need a rollback journal
        # (DIQA_BENCH_SQLITE_JOURNAL=DELETE), since WAL relies on shared memory between processes.
        journal = os.environ.get("DIQA_BENCH_SQLITE_JOURNAL", "WAL").upper()
        if journal not in ("WAL", "DELETE", "TRUNCATE", "PERSIST"):
            raise ValueError(f"DIQA_BENCH_SQLITE_JOURNAL={journal!r}: use WAL, DELETE, TRUNCATE or PERSIST")
        con.execute(f"PRAGMA journal_mode={journal}")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute(schema)
        con.commit()
    except BaseException:
        con.close()
        raise
    return con


def set_aside(path: Path, suffixes: tuple[str, ...] = ("",)) -> Path:
    """Rename a damaged cache entry (a database with its WAL files, a model folder) to
    ``<name>.damaged-<time>-<pid>`` beside it, so it is rebuilt and can still be inspected."""
    import time

    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.damaged-{stamp}-{os.getpid()}")
    for suffix in suffixes:
        src = path.with_name(path.name + suffix)
        if src.exists():
            os.replace(src, aside.with_name(aside.name + suffix))
    return aside


class ScoreCache:
    """Per-image scores of one method configuration (its cache token)."""

    def __init__(self, folder: Path) -> None:
        self.db = _Database(Path(folder) / "scores.sqlite", "CREATE TABLE IF NOT EXISTS scores (method TEXT, image TEXT, score REAL, PRIMARY KEY (method, image))")

    @property
    def con(self) -> sqlite3.Connection:
        return self.db.con

    def get_many(self, method: str, keys: Sequence[str]) -> dict[str, float]:
        keys = list(dict.fromkeys(keys))

        def read(con: sqlite3.Connection) -> dict[str, float]:
            out: dict[str, float] = {}
            for s in range(0, len(keys), 500):
                chunk = keys[s : s + 500]
                q = f"SELECT image, score FROM scores WHERE method=? AND image IN ({','.join('?' * len(chunk))})"
                for image, score in con.execute(q, [method, *chunk]):
                    out[image] = float("nan") if score is None else score
            return out

        return self.db.run(read)

    def put_many(self, method: str, items: dict[str, float]) -> None:
        rows = [(method, k, None if v != v else float(v)) for k, v in items.items()]

        def write(con: sqlite3.Connection) -> None:
            with con:  # a failed write is rolled back, so a retry starts clean
                con.executemany("INSERT OR REPLACE INTO scores VALUES (?,?,?)", rows)

        self.db.run(write)


class SqliteFeatureCache(FeatureCache):
    def __init__(self, path: Path, namespace: str) -> None:
        self.namespace = namespace
        self.db = _Database(Path(path), "CREATE TABLE IF NOT EXISTS features (ns TEXT, image TEXT, value BLOB, PRIMARY KEY (ns, image))")

    @property
    def con(self) -> sqlite3.Connection:
        return self.db.con

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        keys = list(dict.fromkeys(keys))

        def read(con: sqlite3.Connection) -> dict[str, np.ndarray]:
            out: dict[str, np.ndarray] = {}
            for s in range(0, len(keys), 500):
                chunk = keys[s : s + 500]
                q = f"SELECT image, value FROM features WHERE ns=? AND image IN ({','.join('?' * len(chunk))})"
                for image, blob in con.execute(q, [self.namespace, *chunk]):
                    out[image] = np.load(io.BytesIO(blob), allow_pickle=False)
            return out

        return self.db.run(read)

    def put_many(self, items: dict[str, Any]) -> None:
        rows = []
        for k, v in items.items():
            buf = io.BytesIO()
            np.save(buf, np.asarray(v), allow_pickle=False)
            rows.append((self.namespace, k, buf.getvalue()))

        def write(con: sqlite3.Connection) -> None:
            with con:
                con.executemany("INSERT OR REPLACE INTO features VALUES (?,?,?)", rows)

        self.db.run(write)


class MemoryFeatureCache(FeatureCache):
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        return {k: self.data[k] for k in keys if k in self.data}

    def put_many(self, items: dict[str, Any]) -> None:
        self.data.update(items)
