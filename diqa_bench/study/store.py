"""The study's SQLite file (``study.sqlite`` in the study folder).

Every rating is one INSERT committed before the server answers (WAL journal, ``synchronous=FULL``),
so a crash, a killed server or a closed tab loses nothing that was acknowledged; the page keeps an
unacknowledged rating and sends it again, and ``(rater, position)`` is unique, so a rating sent
twice is stored once. Tokens are stored as SHA-256 hashes: the file alone does not let anyone rate
as someone else.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any

from diqa_bench.errors import UserError

DB_FILE = "study.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS raters (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    plan TEXT NOT NULL,            -- JSON list: the ACR presentation plan, or the PC training pairs
    setup TEXT,                    -- JSON: the viewing setup the rater declared
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    rater_id INTEGER NOT NULL REFERENCES raters(id),
    started REAL NOT NULL,
    ended REAL,                    -- paused, or stopped at the session limit
    reason TEXT
);
CREATE TABLE IF NOT EXISTS assignments (   -- PC: the pair shown at each position (chosen adaptively)
    rater_id INTEGER NOT NULL REFERENCES raters(id),
    position INTEGER NOT NULL,
    phase TEXT NOT NULL,
    stimulus TEXT NOT NULL,        -- left
    stimulus_b TEXT NOT NULL,      -- right
    PRIMARY KEY (rater_id, position)
);
CREATE TABLE IF NOT EXISTS ratings (
    id INTEGER PRIMARY KEY,
    rater_id INTEGER NOT NULL REFERENCES raters(id),
    position INTEGER NOT NULL,
    phase TEXT NOT NULL,           -- training or rating
    stimulus TEXT NOT NULL,        -- ACR: the image; PC: the left image
    stimulus_b TEXT,               -- PC: the right image
    answer REAL NOT NULL,          -- ACR: 1..5; PC: 0 = left better, 1 = right better
    repeat INTEGER NOT NULL DEFAULT 0,
    ms INTEGER,                    -- time from the image appearing to the answer
    screen_w INTEGER, screen_h INTEGER, viewport_w INTEGER, viewport_h INTEGER, dpr REAL,
    setup TEXT,                    -- JSON: the declared viewing setup at the time
    session_id INTEGER,
    received REAL NOT NULL,
    UNIQUE (rater_id, position)
);
"""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class Store:
    def __init__(self, folder: Path, create: bool = True) -> None:
        self.path = Path(folder) / DB_FILE
        if not create and not self.path.is_file():
            raise UserError(f"{self.path}: the study database is missing")
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            if create:
                self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.path}: cannot open the study database ({exc})") from None

    def close(self) -> None:
        self.db.close()

    # -- raters --------------------------------------------------------------------------------
    def add_rater(self, name: str, plan: list[dict[str, Any]]) -> str:
        """Register a rater with a fresh token (returned once, stored hashed)."""
        if not name or len(name) > 64 or any(c in name for c in ",\n\r\"") or name != name.strip():
            raise UserError(f"rater name {name!r}: 1-64 characters, no commas, quotes or line breaks, no outer spaces")
        token = secrets.token_urlsafe(18)
        try:
            self.db.execute("INSERT INTO raters (name, token_hash, plan, created) VALUES (?, ?, ?, ?)",
                            (name, token_hash(token), json.dumps(plan), time.time()))
        except sqlite3.IntegrityError:
            raise UserError(f"rater {name!r} already exists in this study") from None
        return token

    def rater_count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM raters").fetchone()[0]

    def rater_by_token(self, token: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM raters WHERE token_hash = ?", (token_hash(token),)).fetchone()

    def raters(self) -> list[sqlite3.Row]:
        return self.db.execute("SELECT * FROM raters ORDER BY id").fetchall()

    def set_setup(self, rater_id: int, setup: dict[str, Any]) -> None:
        self.db.execute("UPDATE raters SET setup = ? WHERE id = ?", (json.dumps(setup), rater_id))

    # -- sessions ------------------------------------------------------------------------------
    def open_session(self, rater_id: int) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM sessions WHERE rater_id = ? AND ended IS NULL ORDER BY id DESC LIMIT 1", (rater_id,)).fetchone()

    def last_session(self, rater_id: int) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM sessions WHERE rater_id = ? ORDER BY id DESC LIMIT 1", (rater_id,)).fetchone()

    def start_session(self, rater_id: int) -> int:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute("UPDATE sessions SET ended = ?, reason = 'replaced' WHERE rater_id = ? AND ended IS NULL", (time.time(), rater_id))
            cur = self.db.execute("INSERT INTO sessions (rater_id, started) VALUES (?, ?)", (rater_id, time.time()))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return int(cur.lastrowid)

    def end_session(self, session_id: int, reason: str, when: float | None = None) -> None:
        self.db.execute("UPDATE sessions SET ended = ?, reason = ? WHERE id = ? AND ended IS NULL", (when or time.time(), reason, session_id))

    # -- ratings -------------------------------------------------------------------------------
    def next_position(self, rater_id: int) -> int:
        row = self.db.execute("SELECT MAX(position) FROM ratings WHERE rater_id = ?", (rater_id,)).fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def rating_at(self, rater_id: int, position: int) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM ratings WHERE rater_id = ? AND position = ?", (rater_id, position)).fetchone()

    def add_rating(self, **row: Any) -> bool:
        """Insert one rating; False when this (rater, position) is already stored (a resend)."""
        row.setdefault("received", time.time())
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        try:
            self.db.execute(f"INSERT INTO ratings ({cols}) VALUES ({marks})", tuple(row.values()))
        except sqlite3.IntegrityError:
            return False
        return True

    def ratings(self, rater_id: int | None = None) -> list[sqlite3.Row]:
        if rater_id is None:
            return self.db.execute("SELECT ratings.*, raters.name AS rater FROM ratings JOIN raters ON raters.id = ratings.rater_id ORDER BY ratings.id").fetchall()
        return self.db.execute("SELECT * FROM ratings WHERE rater_id = ? ORDER BY position", (rater_id,)).fetchall()

    # -- paired comparison ---------------------------------------------------------------------
    def assignment(self, rater_id: int, position: int) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM assignments WHERE rater_id = ? AND position = ?", (rater_id, position)).fetchone()

    def assign(self, rater_id: int, position: int, phase: str, left: str, right: str) -> sqlite3.Row:
        """Store the pair for this position unless one is there already (two tabs at once): the
        stored one wins, so a reload always shows the same pair."""
        self.db.execute("INSERT OR IGNORE INTO assignments VALUES (?, ?, ?, ?, ?)", (rater_id, position, phase, left, right))
        return self.assignment(rater_id, position)
