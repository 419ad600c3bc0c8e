"""InfluxDB 2 / VictoriaMetrics backend of :mod:`shared.storage`, with an on-disk spool.

Writing: ``write()`` encodes points as line protocol (see :mod:`shared._influx_io` for the
mapping) and queues them; one worker thread sends them in batches (``batch_size`` lines or
``flush_interval_ms``, whichever comes first) through influxdb-client's synchronous write API
to ``/api/v2/write`` with millisecond precision, retrying a failed batch with exponential backoff
(``retry_interval_ms * exponential_base**attempt``, capped at ``max_retry_delay_ms``, at most
``max_retries`` times). The batching and retry loop are ours rather than influxdb-client's
``WriteType.batching`` because its ``flush()`` is a no-op and a batch in its retry loop stays in
memory for up to ``max_retry_time``; here a batch the server refuses goes to disk at once.

Spool: when the server cannot take a batch (connection refused, timeout, 429 or 5xx after the
retries), the batch goes to a bounded, append-only spool file (:class:`shared._spool.Spool`);
while the spool holds anything, new batches are appended behind it, so order is kept. The
worker drains the spool head-first, one batch per attempt, probing every ``drain_interval_ms``
(growing with backoff) while the server is down. When the spool is full, further points are
counted as ``dropped`` and a warning is logged for each refused batch. ``close()`` sends what it
can within ``close_timeout_s`` and leaves the rest in the spool; a new store on the same spool
folder drains it. A 4xx answer other than 408/429 (bad token, unknown bucket, bad line) cannot
succeed later: the batch is counted as ``errors``/``dropped`` and logged as an error.

Idempotency: InfluxDB keeps one value per series and timestamp; VictoriaMetrics needs
``-dedup.minScrapeInterval=1ms`` for the same effect. ``write()`` also remembers the keys it has
seen in this process (up to ``seen_capacity``) and returns how many points were new to it.

Reading: against VictoriaMetrics with ``/api/v1/export``, against InfluxDB 2 with Flux. The
server kind comes from the URL (``?flavor=vm|influxdb``) or, with ``flavor=auto``, from its
``/health`` answer on the first read. Only the VictoriaMetrics path is exercised by the tests
(no InfluxDB 2 server is available there). Points written a moment ago may take about a second
to become visible on VictoriaMetrics (its in-memory buffers), so a read after this store has
sent points first asks it to flush them (``/internal/force_flush``, best effort).

Counts: ``written`` (acknowledged by the server on first send), ``spooled``, ``drained``
(acknowledged from the spool), ``dropped``, ``duplicates`` (seen before in this process),
``retries`` and ``errors``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from shared._influx_io import FluxReader, VmReader, detect_flavor, encode_line
from shared._spool import Spool
from shared.storage import InfluxURL, Point, Store

log = logging.getLogger(__name__)

ORG_ENV = "INFLUX_ORG"
TOKEN_ENV = "INFLUX_TOKEN"


class PermanentWriteError(Exception):
    """The server refused a batch for a reason retrying cannot fix."""


@dataclass(frozen=True)
class InfluxOptions:
    """Tuning of the Influx store (URL parameters override the first five)."""

    spool_dir: str | None = None  # default: out/spool/<bucket>
    spool_max_bytes: int = 64 * 1024 * 1024  # bound of the spool file on disk
    batch_size: int = 500  # lines per write request
    flush_interval_ms: int = 200  # longest a queued point waits for its batch to fill
    flavor: str = "auto"  # "vm", "influxdb", or "auto" (ask /health on first read)
    timeout_ms: int = 5_000  # per HTTP request
    max_retries: int = 3  # retries of one batch before it is spooled
    retry_interval_ms: int = 200  # first retry delay
    exponential_base: float = 2.0  # retry delay growth
    max_retry_delay_ms: int = 5_000  # cap of one retry delay / drain probe period
    drain_interval_ms: int = 500  # first drain probe delay after a failure
    queue_max_points: int = 100_000  # in-memory queue bound; beyond it write() spools directly
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
        self._cv = threading.Condition()
        self._queue: deque[bytes] = deque()
        self._first_queued_at = 0.0
        self._busy = False
        self._flush_requested = 0
        self._stopping = False
        self._closed = False
        self._next_drain_at = 0.0
        self._drain_delay_s = opts.drain_interval_ms / 1000
        self._counts_lock = threading.Lock()
        self._seen: OrderedDict[tuple[str, str, int], None] = OrderedDict()
        if self.spool.pending_lines:
            log.info("spool %s holds %d points from before; draining", spool_dir, self.spool.pending_lines)
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
        lines = [(p.key, encode_line(p)) for p in points]  # raises before anything is queued
        overflow: list[bytes] = []
        new = 0
        with self._cv:
            if self._closed or self._stopping:
                raise RuntimeError(f"Influx store {self.url.base_url}/{self.url.bucket} is closed")
            for key, line in lines:
                if key in self._seen:
                    self._seen.move_to_end(key)
                    self._bump("duplicates", 1)
                    continue
                self._seen[key] = None
                if len(self._seen) > self.options.seen_capacity:
                    self._seen.popitem(last=False)
                new += 1
                if len(self._queue) >= self.options.queue_max_points:
                    overflow.append(line)
                    continue
                if not self._queue:
                    self._first_queued_at = time.monotonic()
                self._queue.append(line)
            self._cv.notify_all()
        if overflow:
            log.warning("Influx write queue full (%d points): spooling %d", len(self._queue), len(overflow))
            self._to_spool(overflow)
        return new

    def _post(self, lines: list[bytes]) -> None:
        self._write_api.write(
            bucket=self.url.bucket, org=self.org, record=b"\n".join(lines), write_precision=WritePrecision.MS
        )

    def _post_with_retry(self, lines: list[bytes]) -> bool:
        """Send one batch; True when acknowledged, False when the server stayed unavailable."""
        opts = self.options
        for attempt in range(opts.max_retries + 1):
            try:
                self._post(lines)
                return True
            except Exception as exc:  # noqa: BLE001 - classified below
                if not _is_retryable(exc):
                    raise PermanentWriteError(str(exc)) from exc
                if attempt == opts.max_retries or self._stopping:
                    log.warning(
                        "Influx server %s unavailable (%s); spooling %d points",
                        self.url.base_url,
                        _short(exc),
                        len(lines),
                    )
                    return False
                self._bump("retries", 1)
                delay_ms = min(opts.retry_interval_ms * opts.exponential_base**attempt, opts.max_retry_delay_ms)
                time.sleep(delay_ms / 1000)
        return False

    def _to_spool(self, lines: list[bytes]) -> None:
        try:
            accepted = self.spool.append(lines)
        except (OSError, RuntimeError) as exc:  # disk full, spool closed under a stuck worker
            self._bump("errors", 1)
            self._bump("dropped", len(lines))
            log.error("Influx spool %s cannot take %d points, dropped: %s", self.spool.folder, len(lines), exc)
            return
        self._bump("spooled", accepted)
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

    def _deliver(self, lines: list[bytes]) -> None:
        if self.spool.pending_lines:  # keep order: behind what is already waiting
            self._to_spool(lines)
            return
        try:
            ok = self._post_with_retry(lines)
        except PermanentWriteError as exc:
            self._reject(lines, exc)
            return
        if ok:
            self._bump("written", len(lines))
            self._unflushed = True
        else:
            self._to_spool(lines)
            self._schedule_drain(failed=False)

    def _reject(self, lines: list[bytes], exc: Exception) -> None:
        self._bump("errors", 1)
        self._bump("dropped", len(lines))
        log.error("Influx server %s refused %d points, dropped: %s", self.url.base_url, len(lines), _short(exc))

    def _schedule_drain(self, failed: bool) -> None:
        opts = self.options
        if failed:
            self._drain_delay_s = min(self._drain_delay_s * opts.exponential_base, opts.max_retry_delay_ms / 1000)
        else:
            self._drain_delay_s = opts.drain_interval_ms / 1000
        self._next_drain_at = time.monotonic() + self._drain_delay_s

    def _drain_step(self) -> bool:
        """Send the spool's head batch once; True when it was delivered (or rejected for good)."""
        lines, end = self.spool.peek(self.options.batch_size)
        if not lines:
            return True
        try:
            self._post(lines)
        except Exception as exc:  # noqa: BLE001 - classified below
            if not _is_retryable(exc):
                self._reject(lines, exc)
                self.spool.commit(end)
                return True
            self._bump("retries", 1)
            self._schedule_drain(failed=True)
            log.debug("spool drain: server still unavailable (%s)", _short(exc))
            return False
        self.spool.commit(end)
        self._bump("drained", len(lines))
        self._unflushed = True
        self._drain_delay_s = self.options.drain_interval_ms / 1000
        self._next_drain_at = 0.0
        if not self.spool.pending_lines:
            log.info("Influx spool %s drained", self.spool.folder)
        return True

    def _drain_due(self) -> bool:
        return bool(self.spool.pending_lines) and time.monotonic() >= self._next_drain_at

    def _take_batch(self) -> list[bytes] | None:
        """Wait for work; None when stopping with nothing left to send."""
        opts = self.options
        with self._cv:
            while not self._queue and not self._stopping and not self._drain_due():
                wait = self._next_drain_at - time.monotonic() if self.spool.pending_lines else None
                self._cv.wait(timeout=max(wait, 0.001) if wait is not None else None)
            if self._queue and len(self._queue) < opts.batch_size:
                deadline = self._first_queued_at + opts.flush_interval_ms / 1000
                while (
                    len(self._queue) < opts.batch_size
                    and not self._stopping
                    and not self._flush_requested
                    and (remaining := deadline - time.monotonic()) > 0
                ):
                    self._cv.wait(timeout=remaining)
            n = min(len(self._queue), opts.batch_size)
            batch = [self._queue.popleft() for _ in range(n)]
            if self._queue:
                self._first_queued_at = time.monotonic()
            if not batch and self._stopping:
                return None
            self._busy = True
            return batch

    def _run(self) -> None:
        try:
            while True:
                batch = self._take_batch()
                if batch is None:
                    break
                try:
                    if batch:
                        self._deliver(batch)
                    if self._drain_due():
                        self._drain_step()
                except Exception:  # noqa: BLE001 - keep the worker alive, but say so
                    self._bump("errors", 1)
                    log.exception("Influx writer: unexpected error")
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
        while self.spool.pending_lines and time.monotonic() < deadline:
            if not self._drain_step():
                break

    def _settled(self) -> bool:
        """Nothing queued or in flight, and the spool empty or waiting for the server."""
        if self._queue or self._busy:
            return False
        return not self.spool.pending_lines or time.monotonic() < self._next_drain_at

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until queued points are on the server or, while it is down, in the spool.

        A spool waiting for the server is probed at once rather than after its backoff delay.
        """
        deadline = time.monotonic() + timeout_s
        with self._cv:
            self._flush_requested += 1
            if self.spool.pending_lines:
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
        """Counts plus the queue and spool state."""
        with self._cv:
            queued = len(self._queue)
        return {
            "url": f"{self.url.base_url}/{self.url.bucket}",
            "queued": queued,
            "spool_dir": str(self.spool.folder),
            "spool_pending_points": self.spool.pending_lines,
            "spool_bytes": self.spool.size_bytes,
            "counts": self.counts,
        }

    def close(self) -> None:
        """Send what can be sent within close_timeout_s; keep the rest in the spool."""
        with self._cv:
            if self._closed:
                return
            self._stopping = True
            self._cv.notify_all()
        self._worker.join(timeout=self.options.close_timeout_s + 2 * self.options.timeout_ms / 1000)
        with self._cv:
            self._closed = True
            leftover = list(self._queue)
            self._queue.clear()
        if leftover:  # the worker is stuck on a hung server: keep these for the next start
            self._to_spool(leftover)
        if self.spool.pending_lines:
            log.warning("Influx store closed with %d points in spool %s", self.spool.pending_lines, self.spool.folder)
        self.spool.close()
        self._client.close()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
