"""Embedded SQLite backend of :mod:`shared.storage.base` (the default store).

One table ``points`` keyed by ``(measurement, device, seq)``; fields and tags are JSON text.
``INSERT OR IGNORE`` makes writes idempotent, and each ``write()`` call is one transaction, so a
batch is committed (and durable against a killed process) when ``write()`` returns. The database
runs in WAL mode with ``synchronous=NORMAL``: a process killed mid-write loses at most the
transaction in progress, never a committed one. One connection is shared by all threads behind
a lock, so the store can be written from a worker thread and read from another.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from shared.storage.base import Point, Store, sql_range

_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    measurement TEXT NOT NULL,
    device      TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    ts_ms       INTEGER NOT NULL,
    fields      TEXT NOT NULL,
    tags        TEXT NOT NULL,
    PRIMARY KEY (measurement, device, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS points_by_device_ts ON points (measurement, device, ts_ms);
CREATE INDEX IF NOT EXISTS points_by_ts ON points (measurement, ts_ms);
"""

_INSERT = "INSERT OR IGNORE INTO points (measurement, device, seq, ts_ms, fields, tags) VALUES (?, ?, ?, ?, ?, ?)"
#: one encoder for every row (``json.dumps`` with options builds a new one per call: a third of a row's cost)
_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


class SqliteStore(Store):
    """SQLite store at `path` (``":memory:"`` for a private in-memory database).

    ``busy_timeout_ms`` is how long a write waits for another process holding the write lock.
    """

    def __init__(self, path: str | Path, busy_timeout_ms: int = 10_000) -> None:
        super().__init__()
        self.path = str(path)
        self._lock = threading.Lock()
        self._closed = False
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        with self._lock:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            if self.path != ":memory:":
                mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise RuntimeError(f"SQLite store {self.path}: could not enable WAL (journal_mode={mode})")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.executescript(_SCHEMA)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"SQLite store {self.path} is closed")

    def write(self, points: Sequence[Point]) -> int:
        rows = [
            (
                p.measurement,
                p.device,
                p.seq,
                p.ts_ms,
                _JSON(p.measured_fields()),
                _JSON(p.tags),
            )
            for p in points
        ]
        if not rows:
            return 0
        with self._lock:
            self._check_open()
            before = self._conn.total_changes
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany(_INSERT, rows)
                self._conn.execute("COMMIT")
            except sqlite3.Error:
                self._counts["errors"] += 1
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            new = self._conn.total_changes - before
        self._counts["written"] += new
        self._counts["duplicates"] += len(rows) - new
        return new

    def _select(self, sql: str, args: Sequence[object]) -> list[tuple]:
        with self._lock:
            self._check_open()
            return self._conn.execute(sql, tuple(args)).fetchall()

    def query(
        self,
        measurement: str,
        device: str | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[Point]:
        where, args = sql_range(measurement, device, start_ms, end_ms, "?")
        sql = (f"SELECT measurement, device, seq, ts_ms, fields, tags FROM points WHERE {where} "
               "ORDER BY ts_ms, device, seq")
        return [Point(m, d, s, t, json.loads(f), json.loads(g)) for (m, d, s, t, f, g) in self._select(sql, args)]

    def get(self, measurement: str, device: str, seq: int) -> Point | None:
        rows = self._select("SELECT measurement, device, seq, ts_ms, fields, tags FROM points "
                            "WHERE measurement = ? AND device = ? AND seq = ?", [measurement, device, int(seq)])
        return None if not rows else Point(*rows[0][:4], json.loads(rows[0][4]), json.loads(rows[0][5]))

    def count(self, measurement: str, device: str | None = None) -> int:
        if device is None:
            return int(self._select("SELECT COUNT(*) FROM points WHERE measurement = ?", [measurement])[0][0])
        sql = "SELECT COUNT(*) FROM points WHERE measurement = ? AND device = ?"
        return int(self._select(sql, [measurement, device])[0][0])

    def devices(self, measurement: str) -> list[str]:
        sql = "SELECT DISTINCT device FROM points WHERE measurement = ? ORDER BY device"
        return [row[0] for row in self._select(sql, [measurement])]

    def measurements(self) -> list[str]:
        """The sorted measurement names present."""
        return [row[0] for row in self._select("SELECT DISTINCT measurement FROM points ORDER BY 1", [])]

    def stats(self) -> dict[str, object]:
        """Path, points per measurement, database size and the running counts."""
        per = dict(self._select("SELECT measurement, COUNT(*) FROM points GROUP BY measurement", []))
        size = 0
        if self.path != ":memory:":
            for suffix in ("", "-wal"):
                p = Path(self.path + suffix)
                size += p.stat().st_size if p.exists() else 0
        return {"path": self.path, "points": per, "bytes": size, "counts": self.counts}

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self.path != ":memory:":
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                self._conn.close()
