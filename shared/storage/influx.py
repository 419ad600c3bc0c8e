"""InfluxDB 2 / VictoriaMetrics backend of :mod:`shared.storage.base`, with an on-disk write-ahead spool.

Writing (write-ahead): ``write()`` encodes points as line protocol (see :mod:`shared.storage._influx_io`
for the mapping), appends them to the spool file (:class:`shared.storage._spool.Spool`) and syncs it to
disk before it returns, so a caller that acknowledges a message after ``write()`` returned (the
MQTT consumers do) never acknowledges a point that a killed process or a power loss could lose.
Concurrent ``write()`` calls share one ``fdatasync`` (group commit); ``durability="os"`` skips the
sync (the records are then safe from a killed process, not from a power loss or kernel crash) for
slow disks. One worker thread ships the spool head-first in batches (``batch_size`` lines or
``flush_interval_ms`` after the first waiting line, whichever comes first) through influxdb-client's
synchronous write API to ``/api/v2/write`` with millisecond precision, and advances the spool's
offset only after the server acknowledged the batch. A failed batch is retried with exponential
backoff (``retry_interval_ms * exponential_base**attempt``, capped at ``max_retry_delay_ms``, at
most ``max_retries`` times); after that the server counts as unavailable, and the worker probes it
with one batch every ``drain_interval_ms`` (growing with backoff) while ``write()`` goes on
appending. Order is the spool's order. The batching and retry loop are ours rather than
influxdb-client's ``WriteType.batching``, whose ``flush()`` is a no-op and whose batches wait in
memory.

Bound: the spool holds at most ``spool_max_bytes``. When it is full, ``write()`` waits up to
``full_wait_ms`` for the worker to free room while the server takes points; what still does not
fit (at once, while the server is unavailable) is counted as ``dropped``, not stored, not counted
in the return value, and a warning is logged. A 4xx answer other than 408/429 (bad token, unknown
bucket, bad line) cannot succeed later: the batch is counted as ``errors``/``dropped`` and logged as
an error. ``close()`` ships what it can within ``close_timeout_s`` and leaves the rest in the
spool; a new store on the same spool folder ships it first (a torn last line, from a process
killed inside ``write()``, so never acknowledged, is cut off).

Duplicates: a process killed after the server acknowledged a batch but before the spool's offset
moved re-sends that batch on restart, and an MQTT redelivery writes a point again; the server
removes them: InfluxDB keeps one value per series and timestamp, VictoriaMetrics does the same
with ``-dedup.minScrapeInterval=1ms`` (run it so). ``write()`` also remembers the keys it has
spooled in this process (up to ``seen_capacity``) with a digest of each point's line, skips those
(the first point under a key stays) and returns how many were new; :meth:`InfluxStore.conflict` compares
a skipped point's line with the remembered digest, so a different point under a key written by this
process is told from a redelivery without asking the server. Keys written before this process started
are not checked (that would take a server read per write).

Reading: against VictoriaMetrics with ``/api/v1/export``, against InfluxDB 2 with Flux. The
server kind comes from the URL (``?flavor=vm|influxdb``) or, with ``flavor=auto``, from its
``/health`` answer on the first read. Only the VictoriaMetrics path is exercised by the tests
(no InfluxDB 2 server is available there). Points written a moment ago may take about a second
to become visible on VictoriaMetrics (its in-memory buffers), so a read after this store has
sent points first asks it to flush them (``/internal/force_flush``, best effort).

Counts: ``written`` (acknowledged by the server without waiting out an outage), ``spooled``
(points that had to wait out an outage: in the spool when the server was found unavailable, or
written while it was), ``drained`` (of those, and of points an earlier process left in the spool,
acknowledged later), ``dropped``, ``duplicates`` (seen before in this process), ``retries`` and
``errors``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from shared.storage._influx_io import FluxReader, VmReader, detect_flavor, encode_line
from shared.storage._spool import Spool
from shared.storage.base import InfluxURL, Point, Store

log = logging.getLogger(__name__)

ORG_ENV = "INFLUX_ORG"
TOKEN_ENV = "INFLUX_TOKEN"
DURABILITY = ("fsync", "os")


class PermanentWriteError(Exception):
    """The server refused a batch for a reason retrying cannot fix."""


@dataclass(frozen=True)
class InfluxOptions:
    """Tuning of the Influx store (URL parameters override the first five)."""

    spool_dir: str | None = None  # default: out/spool/<bucket>
    spool_max_bytes: int = 64 * 1024 * 1024  # bound of the spool file on disk
    batch_size: int = 500  # lines per write request
    flush_interval_ms: int = 200  # longest a spooled point waits for its batch to fill
    flavor: str = "auto"  # "vm", "influxdb", or "auto" (ask /health on first read)
    timeout_ms: int = 5_000  # per HTTP request
    max_retries: int = 3  # retries of one batch before the server counts as unavailable
    retry_interval_ms: int = 200  # first retry delay
    exponential_base: float = 2.0  # retry delay growth
    max_retry_delay_ms: int = 5_000  # cap of one retry delay / drain probe period
    drain_interval_ms: int = 500  # first probe delay after the server was found unavailable
    durability: str = "fsync"  # "fsync": write() returns after fdatasync; "os": after the write(2)
    full_wait_ms: int = 5_000  # how long write() waits for room in a full spool while the server is up
    seen_capacity: int = 200_000  # keys remembered for write()'s return value
    close_timeout_s: float = 10.0  # how long close() tries to deliver before leaving it spooled


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, ApiException):
        return exc.status is None or exc.status in (408, 429) or exc.status >= 500
    return True  # connection refused/reset, timeouts, DNS: the server may come back


class InfluxStore(Store):
    """Store on an InfluxDB 2 or VictoriaMetrics server (see the module docstring)."""

    def __init__(self, url: InfluxURL, org: str = "", token: str = "", options: InfluxOptions | None = None):
        super().__init__()
        self.url = url
        self.org = org
        self.token = token
        self.options = opts = options or InfluxOptions()
        if opts.flavor not in ("auto", "vm", "influxdb"):
            raise ValueError(f"flavor must be auto, vm or influxdb, got {opts.flavor!r}")
        if opts.durability not in DURABILITY:
            raise ValueError(f"durability must be one of {DURABILITY}, got {opts.durability!r}")
        self._flavor: str | None = None if opts.flavor == "auto" else opts.flavor
        if self._flavor == "influxdb":
            self._check_influx_credentials()
        spool_dir = Path(opts.spool_dir or Path("out") / "spool" / url.bucket)
        self.spool = Spool(spool_dir, opts.spool_max_bytes)
        try:
            self._client = InfluxDBClient(url=url.base_url, token=token, org=org, timeout=opts.timeout_ms)
            self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        except BaseException:
            self.spool.close()
            raise
        self._reader: VmReader | FluxReader | None = None
        self._unflushed = False  # VictoriaMetrics may still buffer points we sent
        self._cv = threading.Condition()  # guards the state below and every spool append
        self._first_pending_at = time.monotonic()
        self._busy = False
        self._flush_requested = 0
        self._stopping = False
        self._closed = False
        self._down = False  # the server was found unavailable and has not acknowledged since
        self._spooled_upto = self.spool.appended_lines  # spool line index below which counted spooled
        self._next_drain_at = 0.0
        self._drain_delay_s = opts.drain_interval_ms / 1000
        self._counts_lock = threading.Lock()
        self._seen: OrderedDict[tuple[str, str, int], bytes] = OrderedDict()  # key -> digest of its line
        if self.spool.pending_lines:
            log.info("spool %s holds %d points from before; shipping them first", spool_dir, self.spool.pending_lines)
        self._worker = threading.Thread(target=self._run, name=f"influx-writer-{url.bucket}", daemon=True)
        self._worker.start()

    @classmethod
    def from_url(cls, url: InfluxURL, **overrides: object) -> InfluxStore:
        """Build from a parsed URL, org/token from the environment; `overrides` set InfluxOptions fields."""
        base = {
            "flavor": url.flavor,
            "spool_dir": url.spool_dir,
            "spool_max_bytes": url.spool_max_bytes,
            "batch_size": url.batch_size,
            "flush_interval_ms": url.flush_interval_ms,
        }
        known = set(InfluxOptions.__dataclass_fields__)
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown Influx store option(s) {unknown}; known: {sorted(known)}")
        base.update({k: v for k, v in overrides.items() if v is not None or k not in base})
        org = os.environ.get(ORG_ENV, "")
        token = os.environ.get(TOKEN_ENV, "")
        return cls(url, org=org, token=token, options=InfluxOptions(**base))  # type: ignore[arg-type]

    def _bump(self, key: str, n: int = 1) -> None:
        with self._counts_lock:
            self._counts[key] += n

    def _check_influx_credentials(self) -> None:
        missing = [name for name, value in ((ORG_ENV, self.org), (TOKEN_ENV, self.token)) if not value]
        if missing:
            raise ValueError(f"InfluxDB 2 at {self.url.base_url} needs {' and '.join(missing)} set in the environment")

    # -- writing ---------------------------------------------------------------------------------

    def write(self, points: Sequence[Point]) -> int:
        """Spool `points` durably (see the module docstring); return how many were new and stored."""
        lines = [(p.key, encode_line(p)) for p in points]  # raises before anything is spooled
        with self._cv:
            if self._closed or self._stopping:
                raise RuntimeError(f"Influx store {self.url.base_url}/{self.url.bucket} is closed")
            fresh: dict[tuple[str, str, int], bytes] = {}
            for key, line in lines:
                if key in self._seen or key in fresh:
                    if key in self._seen:
                        self._seen.move_to_end(key)
                    self._bump("duplicates", 1)
                    continue
                fresh[key] = line
            accepted = self._append(list(fresh.values())) if fresh else 0
            for key in list(fresh)[:accepted]:
                self._seen[key] = _digest(fresh[key])
                if len(self._seen) > self.options.seen_capacity:
                    self._seen.popitem(last=False)
            mark = self.spool.mark
        if self.options.durability == "fsync":
            try:
                self.spool.sync(mark)
            except OSError:
                self._bump("errors", 1)
                log.exception("Influx spool %s: sync failed; the points may not be durable", self.spool.folder)
                raise
        return accepted

    def conflict(self, point: Point) -> str | None:
        """A different point under ``point.key`` among the keys this process wrote (see the module doc)."""
        line = encode_line(point)
        with self._cv:
            seen = self._seen.get(point.key)
        if seen is None or seen == _digest(line):
            return None
        return "stored (by this process) with other content"

    def _append(self, lines: list[bytes]) -> int:
        """Append to the spool, waiting a while for room when full (called holding ``_cv``)."""
        accepted = self._append_once(lines)
        deadline = time.monotonic() + self.options.full_wait_ms / 1000
        self._flush_requested += 1  # the worker ships at once rather than waiting for a full batch
        try:
            while accepted < len(lines) and not self._down and not self._stopping and self._worker.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.spool.pending_lines:
                    break
                self._cv.wait(timeout=min(remaining, 0.05))
                accepted += self._append_once(lines[accepted:])
        finally:
            self._flush_requested -= 1
        dropped = len(lines) - accepted
        if dropped:
            self._bump("dropped", dropped)
            log.warning(
                "Influx spool %s is full (%d of %d bytes): dropped %d points (%d dropped in all)",
                self.spool.folder,
                self.spool.size_bytes,
                self.spool.max_bytes,
                dropped,
                self._counts["dropped"],
            )
        return accepted

    def _append_once(self, lines: list[bytes]) -> int:
        was_empty = not self.spool.pending_lines
        try:
            accepted = self.spool.append(lines)
        except OSError as exc:  # disk full, I/O error: nothing of it is durable
            self._bump("errors", 1)
            log.error("Influx spool %s cannot take %d points: %s", self.spool.folder, len(lines), exc)
            return 0
        if accepted:
            if was_empty:
                self._first_pending_at = time.monotonic()
            if self._down:
                self._bump("spooled", accepted)
                self._spooled_upto = self.spool.appended_lines
            self._cv.notify_all()
        return accepted

    def _post(self, lines: list[bytes]) -> None:
        self._write_api.write(
            bucket=self.url.bucket, org=self.org, record=b"\n".join(lines), write_precision=WritePrecision.MS
        )

    def _ship(self) -> bool:
        """Send the spool's head batch (retrying unless the server is known to be down); True when it
        was acknowledged (or refused for good), False when the server is unavailable."""
        opts = self.options
        lines, end = self.spool.peek(opts.batch_size)
        if not lines:
            return True
        first = self.spool.delivered_lines
        attempts = 1 if self._down or self._stopping else opts.max_retries + 1
        for attempt in range(attempts):
            try:
                self._post(lines)
                break
            except Exception as exc:  # noqa: BLE001 - classified below
                if not _is_retryable(exc):
                    self.spool.commit(end)
                    self._bump("errors", 1)
                    self._bump("dropped", len(lines))
                    log.error(
                        "Influx server %s refused %d points, dropped: %s", self.url.base_url, len(lines), _short(exc)
                    )
                    return True
                if attempt + 1 < attempts and not self._stopping:
                    self._bump("retries", 1)
                    delay_ms = min(opts.retry_interval_ms * opts.exponential_base**attempt, opts.max_retry_delay_ms)
                    time.sleep(delay_ms / 1000)
                    continue
                self._server_down(exc, first_failure=attempts > 1)
                return False
        self.spool.commit(end)
        self._unflushed = True
        with self._cv:
            was_down, self._down = self._down, False
            from_spool = max(0, min(first + len(lines), self._spooled_upto) - first)
            self._next_drain_at = 0.0
            self._drain_delay_s = opts.drain_interval_ms / 1000
            if self.spool.pending_lines:
                self._first_pending_at = time.monotonic()
        self._bump("drained", from_spool)
        self._bump("written", len(lines) - from_spool)
        if was_down and not self.spool.pending_lines:
            log.info("Influx spool %s drained", self.spool.folder)
        return True

    def _server_down(self, exc: BaseException, first_failure: bool) -> None:
        """Count what waits in the spool as spooled and schedule the next probe."""
        opts = self.options
        with self._cv:
            if not self._down:
                self._down = True
                waiting = self.spool.appended_lines - max(self._spooled_upto, self.spool.delivered_lines)
                self._bump("spooled", waiting)
                self._spooled_upto = self.spool.appended_lines
                log.warning(
                    "Influx server %s unavailable (%s); %d points wait in spool %s",
                    self.url.base_url,
                    _short(exc),
                    self.spool.pending_lines,
                    self.spool.folder,
                )
            else:
                self._bump("retries", 1)
                log.debug("spool drain: server still unavailable (%s)", _short(exc))
            if first_failure:
                self._drain_delay_s = opts.drain_interval_ms / 1000
            else:
                self._drain_delay_s = min(self._drain_delay_s * opts.exponential_base, opts.max_retry_delay_ms / 1000)
            self._next_drain_at = time.monotonic() + self._drain_delay_s
            self._cv.notify_all()

    def _due_at(self) -> float | None:
        """When the worker should ship next (monotonic time), None when there is nothing to ship."""
        if not self.spool.pending_lines:
            return None
        if self._down:
            return self._next_drain_at
        if self.spool.pending_lines >= self.options.batch_size or self._flush_requested:
            return 0.0
        return self._first_pending_at + self.options.flush_interval_ms / 1000

    def _run(self) -> None:
        try:
            while True:
                with self._cv:
                    while not self._stopping:
                        due = self._due_at()
                        now = time.monotonic()
                        if due is not None and due <= now:
                            break
                        self._cv.wait(timeout=None if due is None else max(due - now, 0.001))
                    if self._stopping:
                        break
                    self._busy = True
                try:
                    self._ship()
                except Exception:  # noqa: BLE001 - keep the worker alive, but say so
                    if self._closed:  # close() gave up waiting for a hung request: what is left stays spooled
                        return
                    self._bump("errors", 1)
                    log.exception("Influx writer: unexpected error")
                    time.sleep(0.1)
                finally:
                    with self._cv:
                        self._busy = False
                        self._cv.notify_all()
            self._final_drain()
        finally:
            with self._cv:
                self._busy = False
                self._cv.notify_all()

    def _final_drain(self) -> None:
        deadline = time.monotonic() + self.options.close_timeout_s
        try:
            while self.spool.pending_lines and time.monotonic() < deadline:
                if not self._ship():
                    break
        except Exception:  # noqa: BLE001 - what is left stays in the spool for the next start
            if not self._closed:
                self._bump("errors", 1)
                log.exception("Influx writer: unexpected error while closing")

    def _settled(self) -> bool:
        """Nothing in flight, and the spool empty or waiting for the server."""
        if self._busy:
            return False
        return not self.spool.pending_lines or (self._down and time.monotonic() < self._next_drain_at)

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until spooled points are on the server or, while it is down, until it was probed.

        A spool waiting for the server is probed at once rather than after its backoff delay.
        """
        deadline = time.monotonic() + timeout_s
        with self._cv:
            self._flush_requested += 1
            if self._down:
                self._next_drain_at = 0.0
            self._cv.notify_all()
            try:
                while not self._settled() and self._worker.is_alive():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cv.wait(timeout=min(remaining, 0.05))
            finally:
                self._flush_requested -= 1

    # -- reading ---------------------------------------------------------------------------------

    @property
    def flavor(self) -> str:
        """``"vm"`` or ``"influxdb"``; asks the server's /health when the URL said auto."""
        if self._flavor is None:
            flavor = detect_flavor(self.url.base_url, timeout_s=self.options.timeout_ms / 1000)
            if flavor == "influxdb":
                self._check_influx_credentials()
            self._flavor = flavor
        return self._flavor

    def _read(self) -> VmReader | FluxReader:
        if self._reader is None:
            if self.flavor == "vm":
                self._reader = VmReader(self.url.base_url, self.token, self.options.timeout_ms / 1000)
            else:
                self._reader = FluxReader(self._client, self.url.bucket, self.org)
        if self._unflushed and isinstance(self._reader, VmReader):
            self._unflushed = False
            self._reader.force_flush()
        return self._reader

    def query(
        self,
        measurement: str,
        device: str | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[Point]:
        return self._read().query(measurement, device, start_ms, end_ms)

    def count(self, measurement: str, device: str | None = None) -> int:
        return self._read().count(measurement, device)

    def devices(self, measurement: str) -> list[str]:
        return self._read().devices(measurement)

    def stats(self) -> dict[str, object]:
        """Counts plus the spool state."""
        return {
            "url": f"{self.url.base_url}/{self.url.bucket}",
            "server_down": self._down,
            "spool_dir": str(self.spool.folder),
            "spool_pending_points": self.spool.pending_lines,
            "spool_bytes": self.spool.size_bytes,
            "counts": self.counts,
        }

    def close(self) -> None:
        """Ship what can be shipped within close_timeout_s; the rest stays in the spool for the next start."""
        with self._cv:
            if self._closed:
                return
            self._stopping = True
            self._cv.notify_all()
        self._worker.join(timeout=self.options.close_timeout_s + 2 * self.options.timeout_ms / 1000)
        with self._cv:
            self._closed = True
        if self.spool.pending_lines:
            log.warning("Influx store closed with %d points in spool %s", self.spool.pending_lines, self.spool.folder)
        self.spool.close()  # syncs; a worker stuck on a hung server finds it closed and gives up
        self._client.close()


def _digest(line: bytes) -> bytes:
    return hashlib.blake2b(line, digest_size=12).digest()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
