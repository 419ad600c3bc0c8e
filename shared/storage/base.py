"""Time-series storage: one interface, an embedded SQLite backend (default), PostgreSQL and an InfluxDB backend.

Every service stores what it receives and what it computes as :class:`Point` objects and reads
history back per device. Pick the backend with a URL (flag ``--store`` or env ``TINYLARGE_STORE``)::

    sqlite:///out/tinylarge.db        relative path (parent folders are created)
    sqlite:////var/lib/tl/points.db   absolute path
    sqlite://:memory:                 in-memory database (tests)
    postgresql://tl@db1:5432/tinylarge   PostgreSQL, the store many writers (worker processes) share
    influx+http://host:8086/bucket    InfluxDB 2 / VictoriaMetrics over HTTP (influx+https for TLS)

PostgreSQL URLs: ``postgresql://[user[:password]@][host[:port][,host2[:port]...]][/dbname][?param=value]``
(libpq's URI form; default port 5432; several hosts are tried in order). Leave the password out and set
``PGPASSWORD`` (or use ``~/.pgpass``); printed URLs show it as ``***``. Query parameters: libpq's
(``sslmode``, ``sslrootcert``, ``sslcert``, ``sslkey``, ``connect_timeout``, ``application_name``,
``target_session_attrs``, ``keepalives*``, ``host`` for a socket folder ...) and ``retry_s`` (default 30:
how long an operation reconnects to a server that went away before it raises). ``postgres://`` is refused
with a pointer to ``postgresql://``. The table is created on first use; see :mod:`shared.storage.postgres`.

Influx URL query parameters (all optional): ``flavor=auto|vm|influxdb`` (server kind; ``auto`` asks
``/health`` on first read), ``spool=DIR`` (on-disk spool folder, default ``out/spool/<bucket>``),
``spool_max_bytes=N`` (spool bound, default 64 MiB), ``batch_size=N`` (default 500),
``flush_interval_ms=N`` (default 200). Organization and token come from the environment
(``INFLUX_ORG``, ``INFLUX_TOKEN``); both are required for InfluxDB 2 and may be unset for
VictoriaMetrics. See :mod:`shared.storage.influx` for the mapping of points to series.

Idempotency: a point is identified by ``(measurement, device, seq)``; writing it again (an MQTT
redelivery) stores it once, and the first point stays. :meth:`Store.conflict` tells a redelivery from a
different point under the same key (which the services dead-letter as a seq conflict). SQLite enforces
this with its primary key; InfluxDB overwrites an identical series + timestamp, and VictoriaMetrics must
run with ``-dedup.minScrapeInterval=1ms``.
"""

from __future__ import annotations

import json
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from shared.storage._pg_url import PostgresURL, parse_postgres_url

FieldValue = float | int | bool | str | None

STORE_ENV = "TINYLARGE_STORE"
DEFAULT_STORE_URL = "sqlite:///out/tinylarge.db"
COUNT_KEYS = ("written", "duplicates", "spooled", "drained", "dropped", "retries", "errors")
INFLUX_PARAMS = ("flavor", "spool", "spool_max_bytes", "batch_size", "flush_interval_ms")
FLAVORS = ("auto", "vm", "influxdb")


@dataclass(frozen=True)
class Point:
    """One stored record: a message (or a result) of one device at one time.

    ``fields`` values of ``None`` mean "not measured" and are not written; non-finite floats
    (NaN, inf) are treated the same way, since neither backend can hold them faithfully.
    """

    measurement: str
    device: str
    seq: int
    ts_ms: int
    fields: dict[str, FieldValue]
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("measurement", "device"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"Point.{name} must be a non-empty string, got {value!r}")
        for name in ("seq", "ts_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"Point.{name} must be an int, got {type(value).__name__} {value!r}")
        if self.seq < 0:
            raise ValueError(f"Point.seq must be >= 0, got {self.seq}")
        if not isinstance(self.fields, dict):
            raise ValueError(f"Point.fields must be a dict, got {type(self.fields).__name__}")
        for key, value in self.fields.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"Point.fields keys must be non-empty strings, got {key!r}")
            if value is not None and not isinstance(value, float | int | bool | str):
                raise ValueError(
                    f"Point.fields[{key!r}] must be float, int, bool, str or None, got {type(value).__name__}"
                )
        if not isinstance(self.tags, dict):
            raise ValueError(f"Point.tags must be a dict, got {type(self.tags).__name__}")
        for key, value in self.tags.items():
            if not isinstance(key, str) or not key or not isinstance(value, str):
                raise ValueError(f"Point.tags must map non-empty strings to strings, got {key!r}: {value!r}")
            if key == "device":
                raise ValueError("Point.tags must not contain 'device' (it is Point.device)")

    @property
    def key(self) -> tuple[str, str, int]:
        """The identity used for idempotent writes."""
        return (self.measurement, self.device, self.seq)

    def measured_fields(self) -> dict[str, float | int | bool | str]:
        """The fields that carry a value (``None`` and non-finite floats left out)."""
        out: dict[str, float | int | bool | str] = {}
        for key, value in self.fields.items():
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                continue
            out[key] = value
        return out


def sql_range(measurement: str, device: str | None, start_ms: int | None, end_ms: int | None,
              mark: str) -> tuple[str, list[object]]:
    """The WHERE clause (without the keyword) and its arguments of :meth:`Store.query` for the SQL stores;
    ``mark`` is the driver's placeholder (``?`` for sqlite3, ``%s`` for psycopg)."""
    where, args = [f"measurement = {mark}"], [measurement]
    for column, value in (("device =", device), ("ts_ms >=", None if start_ms is None else int(start_ms)),
                          ("ts_ms <=", None if end_ms is None else int(end_ms))):
        if value is not None:
            where.append(f"{column} {mark}")
            args.append(value)
    return " AND ".join(where), args


class Store(ABC):
    """A time-series store of :class:`Point` objects; thread-safe.

    ``counts`` holds running totals: written (new points accepted), duplicates (already stored),
    spooled, drained (from the spool to the server), dropped, retries and errors.
    """

    def __init__(self) -> None:
        self._counts: dict[str, int] = dict.fromkeys(COUNT_KEYS, 0)

    @property
    def counts(self) -> dict[str, int]:
        """A copy of the running totals."""
        return dict(self._counts)

    @abstractmethod
    def write(self, points: Sequence[Point]) -> int:
        """Store `points`; return how many were new (redelivered points are stored once)."""

    @abstractmethod
    def query(
        self,
        measurement: str,
        device: str | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[Point]:
        """Points of `measurement` (optionally one device) with start_ms <= ts <= end_ms, by time."""

    @abstractmethod
    def count(self, measurement: str, device: str | None = None) -> int:
        """How many points of `measurement` (optionally of one device) are stored."""

    def get(self, measurement: str, device: str, seq: int) -> Point | None:
        """The stored point with this key, or None; stores that cannot look one up raise NotImplementedError."""
        raise NotImplementedError

    def conflict(self, point: Point) -> str | None:
        """What is stored under ``point.key`` when it is a *different* point (e.g. ``"stored with ts 1 and other
        content"``), None when nothing or the same point (timestamp and measured fields) is stored there.
        Default: through :meth:`get`; a store that cannot tell raises NotImplementedError."""
        old = self.get(point.measurement, point.device, point.seq)
        if old is None:
            return None
        mine = json.loads(json.dumps(point.measured_fields(), sort_keys=True))
        if old.ts_ms == point.ts_ms and old.fields == mine:
            return None
        return f"stored with ts {old.ts_ms} and other content"

    @abstractmethod
    def devices(self, measurement: str) -> list[str]:
        """The sorted device ids that have points of `measurement`."""

    def flush(self, timeout_s: float = 10.0) -> None:  # noqa: B027 - optional hook
        """Push buffered points to durable storage (no-op where writes are synchronous)."""

    @abstractmethod
    def close(self) -> None:
        """Flush and release resources; the store is unusable afterwards."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class SqliteURL:
    """A parsed ``sqlite://`` URL; ``path`` is ``":memory:"`` or a filesystem path."""

    path: str


@dataclass(frozen=True)
class InfluxURL:
    """A parsed ``influx+http(s)://`` URL with its options (defaults documented in the module)."""

    scheme: str  # "http" or "https"
    host: str
    port: int
    bucket: str
    flavor: str = "auto"
    spool_dir: str | None = None
    spool_max_bytes: int = 64 * 1024 * 1024
    batch_size: int = 500
    flush_interval_ms: int = 200

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def _positive_int(name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"store URL parameter {name!r} must be an integer, got {text!r}") from None
    if value <= 0:
        raise ValueError(f"store URL parameter {name!r} must be > 0, got {value}")
    return value


def parse_store_url(url: str) -> SqliteURL | InfluxURL | PostgresURL:
    """Parse a store URL (see the module docstring); raise ValueError naming what is wrong."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError("store URL is empty; expected sqlite:///path.db, postgresql://host:port/db or "
                         "influx+http://host:port/bucket")
    if "://" not in url:
        raise ValueError(f"store URL {url!r} has no scheme; expected sqlite://, postgresql:// or influx+http(s)://")
    scheme = url.split("://", 1)[0].lower()
    if scheme == "sqlite":
        return _parse_sqlite(url)
    if scheme in ("postgresql", "postgres"):
        return parse_postgres_url(url)
    if scheme in ("influx+http", "influx+https"):
        return _parse_influx(url, scheme.split("+", 1)[1])
    raise ValueError(f"store URL scheme {scheme!r} is not supported; use sqlite, postgresql, influx+http or "
                     "influx+https")


def _parse_sqlite(url: str) -> SqliteURL:
    rest = url.split("://", 1)[1]
    if "?" in rest or "#" in rest:
        raise ValueError(f"sqlite store URL {url!r} takes no query or fragment")
    if rest in (":memory:", "/:memory:"):
        return SqliteURL(":memory:")
    if not rest.startswith("/"):
        raise ValueError(
            f"sqlite store URL {url!r} has a host part {rest.split('/', 1)[0]!r}; "
            "use sqlite:///relative.db, sqlite:////abs/path.db or sqlite://:memory:"
        )
    path = rest[1:]
    if not path or path.endswith("/"):
        raise ValueError(f"sqlite store URL {url!r} names no database file")
    if "\x00" in path:
        raise ValueError(f"sqlite store URL {url!r} contains a NUL character")
    return SqliteURL(path)


def _parse_influx(url: str, http_scheme: str) -> InfluxURL:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"influx store URL {url!r} is malformed: {exc}") from None
    if parts.username or parts.password:
        raise ValueError(f"influx store URL {url!r} must not carry credentials; set INFLUX_TOKEN instead")
    if not parts.hostname:
        raise ValueError(f"influx store URL {url!r} has no host")
    if parts.fragment:
        raise ValueError(f"influx store URL {url!r} must not have a fragment")
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) != 1:
        raise ValueError(f"influx store URL {url!r} must name exactly one bucket as its path, e.g. /tinylarge")
    options: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if name not in INFLUX_PARAMS:
            raise ValueError(f"influx store URL parameter {name!r} is unknown; known: {', '.join(INFLUX_PARAMS)}")
        options[name] = value
    flavor = options.get("flavor", "auto")
    if flavor not in FLAVORS:
        raise ValueError(f"influx store URL parameter 'flavor' must be one of {FLAVORS}, got {flavor!r}")
    spool = options.get("spool")
    if spool is not None and not spool:
        raise ValueError("influx store URL parameter 'spool' is empty; give a folder")
    kwargs: dict[str, int] = {
        name: _positive_int(name, options[name])
        for name in ("spool_max_bytes", "batch_size", "flush_interval_ms")
        if name in options
    }
    return InfluxURL(
        scheme=http_scheme,
        host=parts.hostname,
        port=port if port is not None else 8086,
        bucket=segments[0],
        flavor=flavor,
        spool_dir=spool,
        **kwargs,
    )


def resolve_store_url(flag: str | None = None) -> str:
    """The store URL to use: the flag, else env ``TINYLARGE_STORE``, else the SQLite default."""
    return flag or os.environ.get(STORE_ENV) or DEFAULT_STORE_URL
