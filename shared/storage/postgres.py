"""PostgreSQL backend of :mod:`shared.storage.base`: the store many writers (worker processes) share.

URL: ``postgresql://[user@]host[:port][,host2...]/dbname[?sslmode=...&retry_s=30]``, password from
``PGPASSWORD`` (or in the URL; printed as ``***``); the full grammar is in :mod:`shared.storage._pg_url`.

Schema, created on first use (``CREATE ... IF NOT EXISTS`` under an advisory lock, so that workers
starting together do not race): one table ``points`` with the primary key ``(measurement, device, seq)``,
an index ``(measurement, device, ts_ms)`` for a device's history and one ``(measurement, ts_ms)`` for
reads across devices. ``fields`` and ``tags`` are ``json`` (kept as written: a float reads back as the
same float, an int as an int). Text columns use the ``"C"`` collation, so devices sort as Python sorts them.

Writes: each ``write()`` is one transaction holding one ``INSERT ... SELECT FROM json_array_elements(batch)
ON CONFLICT DO NOTHING`` (the batch travels as one JSON text); ``write()`` returns after COMMIT, and the
session runs with ``synchronous_commit = on``, so a point the store acknowledged is in the server's
write-ahead log on disk. Idempotency is the primary
key's: a redelivered point is skipped and not counted new, and the first point under a key stays.
A different point under a stored key (a seq conflict) is told from a redelivery by
:meth:`Store.conflict` (through :meth:`PostgresStore.get`), as on SQLite; the service dead-letters it.

Many writers: when two processes write the same key at once, PostgreSQL makes the second wait for the
first to commit and then skips the row, so it is stored once and counted new by exactly one writer.
Rows go in key order, so two batches with overlapping keys take their row locks in the same order
(no deadlock); a deadlock or serialization failure would be retried all the same.

Outages: a lost connection (a server restart, a failover to the next host of the URL, the network) is
reopened and the whole operation retried (writes are idempotent) for up to ``retry_s`` seconds (URL
parameter, default 30); then it raises ConnectionError, so the caller does not acknowledge the message
and it comes again. A connection that breaks during COMMIT leaves the outcome unknown to the client: the
retry then finds the rows stored and counts them as duplicates, which is what they are. Opening the
store connects at once: an unreachable server, a wrong database or a refused login is a UserError naming
the URL (password hidden).

Threads: one connection per store, behind a lock (each worker process opens its own store).
Counts: ``written``, ``duplicates``, ``retries`` (operations retried after a lost connection), ``errors``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg

from shared.errors import UserError
from shared.storage.base import Point, PostgresURL, Store, parse_store_url, sql_range

T = TypeVar("T")

#: advisory lock key held while the schema is created (any constant: "tinylarge" in ASCII, truncated)
_SCHEMA_LOCK = 0x74696E796C617267

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS points (
        measurement text COLLATE "C" NOT NULL,
        device      text COLLATE "C" NOT NULL,
        seq         bigint NOT NULL,
        ts_ms       bigint NOT NULL,
        fields      json NOT NULL,
        tags        json NOT NULL,
        PRIMARY KEY (measurement, device, seq)
    )""",
    "CREATE INDEX IF NOT EXISTS points_by_device_ts ON points (measurement, device, ts_ms)",
    "CREATE INDEX IF NOT EXISTS points_by_ts ON points (measurement, ts_ms)",
)

_INSERT = """
INSERT INTO points (measurement, device, seq, ts_ms, fields, tags)
SELECT r->>0, r->>1, (r->>2)::int8, (r->>3)::int8, r->4, r->5
FROM json_array_elements(%s::json) WITH ORDINALITY AS e(r, o)
ORDER BY o
ON CONFLICT (measurement, device, seq) DO NOTHING
"""

_COLUMNS = "measurement, device, seq, ts_ms, fields, tags"


class PostgresStore(Store):
    """The store in the PostgreSQL database ``url`` names (a URL string or a parsed :class:`PostgresURL`).

    ``retry_s`` overrides the URL's; ``connect_timeout_s`` bounds one connection attempt (unless the URL
    sets ``connect_timeout``).
    """

    def __init__(self, url: PostgresURL | str, retry_s: float | None = None, connect_timeout_s: int = 5) -> None:
        super().__init__()
        parsed = parse_store_url(url) if isinstance(url, str) else url
        if not isinstance(parsed, PostgresURL):
            raise ValueError(f"PostgresStore needs a postgresql:// URL, got {parsed}")
        self.url = parsed
        self.retry_s = parsed.retry_s if retry_s is None else float(retry_s)
        self.connect_timeout_s = int(connect_timeout_s)
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._schema_ready = False
        self._closed = False
        try:
            with self._lock:
                self._connection()
        except psycopg.Error as exc:
            raise UserError(f"store {self.url}: cannot open the PostgreSQL store ({self._reason(exc)}); start the "
                            "server or fix the URL (host, port, database, user; the password in PGPASSWORD)") from None

    # -- the connection ---------------------------------------------------------------------------------
    def _connection(self) -> psycopg.Connection[Any]:
        """The open connection, or a new one (schema checked on the first); call holding the lock."""
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        self._drop()
        kwargs = self.url.connect_kwargs()
        kwargs.setdefault("connect_timeout", str(self.connect_timeout_s))
        kwargs.setdefault("application_name", "tinylarge")
        conn = psycopg.connect(autocommit=True, **kwargs)
        try:
            conn.execute("SET synchronous_commit TO on")  # acknowledged = on the server's disk
            if not self._schema_ready:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                    for statement in _SCHEMA:
                        conn.execute(statement)
                self._schema_ready = True
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    def _reason(self, exc: BaseException) -> str:
        """The first line of a driver error, with the password (should the server echo it) hidden."""
        lines = str(exc).strip().splitlines()
        text = lines[0] if lines else type(exc).__name__
        if self.url.password:
            text = text.replace(self.url.password, "***")
        return text

    def _run(self, op: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``op(connection)``, reconnected and retried on a lost connection (or a deadlock) for ``retry_s``."""
        deadline = time.monotonic() + self.retry_s
        delay_s = 0.05
        while True:
            with self._lock:
                self._check_open()
                try:
                    return op(self._connection())
                except psycopg.OperationalError as exc:
                    conn = self._conn
                    if conn is None or conn.closed or conn.broken:
                        self._drop()
                    if time.monotonic() + delay_s > deadline:
                        self._counts["errors"] += 1
                        raise ConnectionError(f"PostgreSQL store {self.url}: {self._reason(exc)} (gave up after "
                                              f"retrying for {self.retry_s:g} s)") from exc
                    self._counts["retries"] += 1
                except psycopg.Error:
                    self._counts["errors"] += 1
                    raise
            time.sleep(delay_s)
            delay_s = min(2 * delay_s, 1.0)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"PostgreSQL store {self.url} is closed")

    def _select(self, sql: str, args: Sequence[object]) -> list[tuple[Any, ...]]:
        return self._run(lambda conn: conn.execute(sql, tuple(args)).fetchall())

    # -- the Store interface ----------------------------------------------------------------------------
    def write(self, points: Sequence[Point]) -> int:
        rows = sorted(
            ([p.measurement, p.device, p.seq, p.ts_ms, p.measured_fields(), p.tags] for p in points),
            key=lambda r: (r[0], r[1], r[2]),  # stable: the first of equal keys stays first, and wins
        )
        if not rows:
            return 0
        # the batch as one JSON array of rows: one parameter, encoded by the json module in C (psycopg's
        # array adaptation of six lists cost 3/4 of a write's time)
        payload = json.dumps(rows, separators=(",", ":"), sort_keys=True, allow_nan=False)

        def insert(conn: psycopg.Connection[Any]) -> int:
            with conn.transaction():
                return conn.execute(_INSERT, (payload,)).rowcount

        new = self._run(insert)
        with self._lock:
            self._counts["written"] += new
            self._counts["duplicates"] += len(rows) - new
        return new

    def query(
        self,
        measurement: str,
        device: str | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[Point]:
        where, args = sql_range(measurement, device, start_ms, end_ms, "%s")
        sql = f"SELECT {_COLUMNS} FROM points WHERE {where} ORDER BY ts_ms, device, seq"
        return [Point(m, d, s, t, f, g) for (m, d, s, t, f, g) in self._select(sql, args)]

    def get(self, measurement: str, device: str, seq: int) -> Point | None:
        rows = self._select(f"SELECT {_COLUMNS} FROM points WHERE measurement = %s AND device = %s AND seq = %s",
                            [measurement, device, int(seq)])
        return Point(*rows[0]) if rows else None

    def count(self, measurement: str, device: str | None = None) -> int:
        if device is None:
            return int(self._select("SELECT count(*) FROM points WHERE measurement = %s", [measurement])[0][0])
        sql = "SELECT count(*) FROM points WHERE measurement = %s AND device = %s"
        return int(self._select(sql, [measurement, device])[0][0])

    def devices(self, measurement: str) -> list[str]:
        sql = "SELECT DISTINCT device FROM points WHERE measurement = %s ORDER BY device"
        return [row[0] for row in self._select(sql, [measurement])]

    def measurements(self) -> list[str]:
        """The sorted measurement names present."""
        return [row[0] for row in self._select("SELECT DISTINCT measurement FROM points ORDER BY 1", [])]

    def stats(self) -> dict[str, object]:
        """URL (password hidden), points per measurement, the table's size on disk and the running counts."""
        per = dict(self._select("SELECT measurement, count(*) FROM points GROUP BY measurement", []))
        size = int(self._select("SELECT pg_total_relation_size('points')", [])[0][0])
        return {"url": str(self.url), "points": per, "bytes": size, "counts": self.counts}

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._drop()
