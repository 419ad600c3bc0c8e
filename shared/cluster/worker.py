"""A scoring worker on the cluster: ``tinylarge serve DOMAIN --queue nats://... --worker k/n``.

It runs the domain's own service (``domain.hooks.service(models_dir)``, the same object the MQTT path runs:
validation, dead letters, the store, batched scoring, the alert rule) on the partitions it owns, reading
each through its durable pull consumer on ``$MQTT_msgs`` (see :mod:`shared.cluster`):

- **ownership**: partition p belongs by default to worker ``p % n`` (the static share ``k/n``). A worker
  holds a partition through a lease, key ``<domain>.part.<p>`` in the KV bucket ``tl_leases`` whose TTL is the lease
  time, renewed (compare-and-set on its revision) every third of it; a worker that cannot renew a lease
  stops reading that partition at once. Each worker also keeps ``<domain>.worker.<k>`` alive in the bucket;
- **takeover**: a partition whose lease has expired, and whose static owner is not alive, is taken by the
  first live worker that creates its key. If the consumer still has deliveries nobody acknowledged (the
  dead worker's), the taker waits the consumer's ``ack_wait`` first, so those are redelivered before
  anything newer: a device's messages are never handled out of order. A partition released cleanly (its
  holder finished and acknowledged its last batch) is taken at once. When the static owner comes back,
  the worker that took its partition over finishes its batch, acknowledges it and releases the lease;
- **per batch**: fetch up to ``batch`` messages of one partition, rebuild from the store the history of
  any device this worker does not hold yet (:meth:`SubjectService.rebuild_subject`; held devices of a
  partition are forgotten each time the partition is acquired, because another worker may have moved
  them on), hand the batch to the service through :class:`shared.transport.consumer.Consumer`
  (validation, dead letters, one store transaction), and acknowledge (AckAll on the last message) only
  after the store committed. A redelivery is dropped by (device, seq): the store's key and the service's
  ``last_seq``. Deliveries are numbered by the consumer (``sequence.consumer``); a batch that does not follow
  the last one (deliveries lost in flight when a node died: seen in make demo-scale, where AckAll on the next
  batch acknowledged them unread) is neither handled nor acknowledged: after ``ack_wait`` the consumer
  redelivers everything past its ack floor, in stream order;
- **results** (risk/action) and dead letters go back through the cluster as NATS subjects
  (``tinylarge.<domain>.<device>.risk``), which NATS delivers to the MQTT topics
  ``tinylarge/<domain>/<device>/risk`` (to MQTT subscribers at QoS 0: a NATS publish carries no QoS);
- **heartbeat**: every lease round it publishes a ``status`` as ``cluster-w<k>`` (model ``cluster-worker@1``;
  counts: ``p<i>`` per partition held, ``msgs_per_s``, ``handled``, ``takeovers``, ``heartbeat_ms``), and
  ``offline`` when it stops cleanly; the dashboard shows these among the cluster's workers (a worker whose
  heartbeat is three intervals old is shown dead: a kill -9 sends nothing).

The fetch timeout (0.5 s) is far below the lease time minus the renewal interval, so a dead worker's last
pull request has expired before its lease does; nothing can still be delivered to it after a takeover.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from shared.cluster import LEASE_BUCKET, MQTT_PREFIX, MQTT_STREAM, PART_ROOT, consumer_name
from shared.transport.consumer import Consumer

log = logging.getLogger("tinylarge.cluster.worker")

FETCH_TIMEOUT_S = 0.5
#: the ``model`` of a worker's heartbeat status (``tinylarge/<domain>/cluster-w<k>/status``): the dashboard
#: shows such a publisher among the cluster's workers
WORKER_MODEL = "cluster-worker@1"


@dataclass(frozen=True)
class Share:
    k: int
    n: int

    @classmethod
    def parse(cls, text: str) -> Share:
        k, sep, n = text.partition("/")
        try:
            share = cls(int(k), int(n))
        except ValueError:
            share = cls(-1, 0)
        if not sep or share.n < 1 or not 0 <= share.k < share.n:
            raise ValueError(f"--worker takes k/n with 0 <= k < n (e.g. 0/2 and 1/2 for two workers), got {text!r}")
        return share

    def owns(self, partition: int) -> bool:
        return partition % self.n == self.k


def topic_of(subject: str) -> str:
    """``$MQTT.msgs.tinylarge.part.<p>.<domain>.<device>.<stream>`` -> ``tinylarge/<domain>/<device>/<stream>``
    (ids are [A-Za-z0-9_-], so no MQTT/NATS escaping is involved)."""
    rest = subject.removeprefix(MQTT_PREFIX + ".").removeprefix(PART_ROOT + ".")
    _, _, rest = rest.partition(".")
    return "tinylarge/" + rest.replace(".", "/")


class NatsLink:
    """The ``client`` the service's publisher and the Consumer's dead letters use: publish from any thread
    onto the worker's event loop, as a NATS subject (MQTT topic levels become tokens)."""

    def __init__(self, nc: Any, loop: asyncio.AbstractEventLoop):
        self.nc, self.loop = nc, loop
        self.counts: Counter[str] = Counter()

    @property
    def connected(self) -> bool:
        return bool(self.nc.is_connected)

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False,
                timeout_s: float | None = None) -> bool:
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        fut = asyncio.run_coroutine_threadsafe(self.nc.publish(topic.replace("/", "."), data), self.loop)
        try:
            fut.result(timeout=timeout_s or 30.0)
        except Exception:  # noqa: BLE001 - counted; the caller decides (publisher raises TimeoutError)
            self.counts["dropped"] += 1
            return False
        self.counts["published"] += 1
        return True


@dataclass
class _Held:
    revision: int
    stop: asyncio.Event
    task: asyncio.Task


class PartitionWorker:
    """Owns partitions and feeds their messages, in order, to one domain service."""

    def __init__(self, domain: str, service: Any, nc: Any, share: Share, layout: dict, name: str,
                 link: NatsLink | None = None, batch: int = 256, max_future_skew_s: float | None = None,
                 min_ts_ms: int | None = None):
        self.domain, self.service, self.nc, self.share = domain, service, nc, share
        self.partitions = int(layout["partitions"])
        self.lease_s = float(layout["lease_s"])
        self.ack_wait_s = float(layout["ack_wait_s"])
        self.name, self.batch = name, batch
        self.loop = asyncio.get_running_loop()
        self.link = link or NatsLink(nc, self.loop)
        self.consumer = Consumer(self.link, domain, service.handlers(), service.batch_handlers(),  # type: ignore[arg-type]
                                 max_batch=batch, max_future_skew_s=max_future_skew_s, min_ts_ms=min_ts_ms)
        self.js = nc.jetstream()
        self.held: dict[int, _Held] = {}
        self.counts: Counter[str] = Counter()
        self._absent_since: dict[int, float] = {}
        self._known: set[str] = set()
        self._part_of: dict[str, int] = {}
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"{domain}-partitions")
        self._lock = threading.Lock()
        self.status_id = f"cluster-w{share.k}"  #: the id of its heartbeat status (stable over restarts)
        self._status_seq = 0
        self._rate_at: tuple[float, int] | None = None

    # -- the message path (one executor thread: the service sees one caller, as on the MQTT path) --------
    def _handle(self, partition: int, items: list[tuple[str, bytes]]) -> None:
        for topic, _ in items:
            device = topic.split("/")[2]
            self._part_of[device] = partition
            if device not in self._known:
                self.service.rebuild_subject(device)
                self._known.add(device)
        run: list[tuple[str, bytes]] = []
        stream = None
        for topic, payload in items:
            s = topic.rsplit("/", 1)[1]
            if run and s != stream:
                self._deliver(stream, run)
                run = []
            stream = s
            run.append((topic, payload))
        if run:
            self._deliver(stream, run)
        with self._lock:
            self.counts["handled"] += len(items)

    def _deliver(self, stream: str | None, items: list[tuple[str, bytes]]) -> None:
        if stream in self.consumer.batch_handlers:
            self.consumer._on_batch(stream, items)
        else:
            for topic, payload in items:
                self.consumer._on_message(topic, payload)

    def _forget(self, partition: int) -> None:
        """Drop the in-memory history of the devices last seen on ``partition`` (rebuilt from the store)."""
        for device in [d for d, p in self._part_of.items() if p == partition]:
            self.service.subjects.pop(device, None)
            self._known.discard(device)
            del self._part_of[device]

    async def _serve(self, partition: int, stop: asyncio.Event) -> None:
        from nats.errors import TimeoutError as NatsTimeout

        await self.loop.run_in_executor(self._executor, self._forget, partition)
        sub = await self.js.pull_subscribe_bind(consumer_name(self.domain, partition), stream=MQTT_STREAM)
        log.info("%s serves partition %d", self.name, partition)
        # the consumer sequence of the next delivery, from the consumer itself: a first batch that does not
        # follow what the consumer has delivered so far (its first fetch lost with a node, make demo-scale --quick
        # in CI) is a gap like any other; deliveries still pending from a previous holder come back first
        expect: int | None = None
        try:
            info = await self.js.consumer_info(MQTT_STREAM, consumer_name(self.domain, partition))
            expect = int(info.delivered.consumer_seq) + 1
            if info.num_ack_pending:
                log.info("%s partition %d: %d deliveries pending; waiting %.0f s for their redelivery",
                         self.name, partition, info.num_ack_pending, self.ack_wait_s)
                expect = None
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.ack_wait_s)
                except TimeoutError:
                    pass
        except Exception:  # noqa: BLE001 - no answer (node change): the first batch is then unchecked
            log.warning("%s partition %d: consumer info failed", self.name, partition, exc_info=True)
        try:
            while not stop.is_set():
                try:
                    msgs = await sub.fetch(self.batch, timeout=FETCH_TIMEOUT_S)
                except (TimeoutError, NatsTimeout):
                    continue
                except Exception:  # noqa: BLE001 - a node went away: the client reconnects
                    log.warning("%s partition %d: fetch failed", self.name, partition, exc_info=True)
                    await asyncio.sleep(0.5)
                    continue
                if not msgs:
                    continue
                dseq = [m.metadata.sequence.consumer for m in msgs]
                if (expect is not None and dseq[0] != expect) or any(b != a + 1 for a, b in pairwise(dseq)):
                    # deliveries that never arrived (lost in flight with a node): handling and acknowledging
                    # (AckAll) what came after them would acknowledge them unread. Leave it all unacknowledged
                    # instead: after ack_wait the consumer redelivers everything past its ack floor, in order.
                    self.counts["delivery_gaps"] += 1
                    log.warning("%s partition %d: deliveries %s..%d missing; waiting %.0f s for their redelivery",
                                self.name, partition, expect, dseq[0] - 1, self.ack_wait_s)
                    expect = None
                    try:
                        await asyncio.wait_for(stop.wait(), timeout=self.ack_wait_s)
                    except TimeoutError:
                        pass
                    continue
                expect = dseq[-1] + 1
                items = [(topic_of(m.subject), m.data) for m in msgs]
                await self.loop.run_in_executor(self._executor, self._handle, partition, items)
                await self._ack(msgs[-1])  # AckAll: the batch, after the store committed
                self.counts[f"p{partition}"] += len(msgs)
        finally:
            try:
                await sub.unsubscribe()
            except Exception:  # noqa: BLE001 - connection gone
                pass

    async def _ack(self, msg: Any) -> None:
        for _ in range(20):
            try:
                await msg.ack_sync(timeout=2.0)
                return
            except Exception:  # noqa: BLE001 - leader change: retry; a lost ack is a redelivery, dropped
                await asyncio.sleep(0.25)

    # -- ownership ----------------------------------------------------------------------------------------
    async def _alive(self, kv: Any, k: int) -> bool:
        return await _get(kv, f"{self.domain}.worker.{k}") is not None

    async def _acquire(self, partition: int, revision: int) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(self._serve(partition, stop))
        self.held[partition] = _Held(revision, stop, task)
        self.counts["acquired"] += 1
        if not self.share.owns(partition):
            self.counts["takeovers"] += 1
            log.info("%s took over partition %d", self.name, partition)

    async def _drop(self, kv: Any, partition: int, release: bool) -> None:
        held = self.held.pop(partition)
        held.stop.set()
        await held.task  # the current batch is handled and acknowledged first
        if release:
            try:
                await kv.delete(f"{self.domain}.part.{partition}", last=None)
            except Exception:  # noqa: BLE001 - expires anyway
                pass
        log.info("%s %s partition %d", self.name, "released" if release else "lost", partition)

    def status(self, state: str = "online") -> dict:
        """The heartbeat ``status`` message (the dashboard's cluster workers): the partitions held (``p<i>``:
        messages handled on it), messages/s since the last heartbeat, the share and the heartbeat interval."""
        now = time.monotonic()
        with self._lock:
            handled = int(self.counts["handled"])
        rate = 0
        if self._rate_at is not None and now > self._rate_at[0]:
            rate = round((handled - self._rate_at[1]) / (now - self._rate_at[0]))
        self._rate_at = (now, handled)
        counts = {f"p{p}": int(self.counts[f"p{p}"]) for p in sorted(self.held)}
        counts.update(partitions_held=len(self.held), handled=handled, msgs_per_s=max(0, rate),
                      takeovers=int(self.counts["takeovers"]), share_k=self.share.k, share_n=self.share.n,
                      heartbeat_ms=round(1000 * self.lease_s / 3), pid=os.getpid())
        self._status_seq += 1
        return {"v": 1, "device": self.status_id, "seq": self._status_seq, "ts": int(time.time() * 1000),
                "model": WORKER_MODEL, "state": state, "counts": counts}

    async def _heartbeat(self, state: str = "online") -> None:
        from shared.protocol.messages import encode, topic

        try:
            data = encode(self.domain, "status", self.status(state))
            await self.nc.publish(topic(self.domain, self.status_id, "status").replace("/", "."), data)
        except Exception:  # noqa: BLE001 - a heartbeat is best effort (the lease is what counts)
            log.debug("%s heartbeat not published", self.name, exc_info=True)

    async def _tick(self, kv: Any) -> None:
        await kv.put(f"{self.domain}.worker.{self.share.k}", self.name.encode())
        me = self.name.encode()
        for p in range(self.partitions):
            key = f"{self.domain}.part.{p}"
            if p in self.held:
                try:
                    self.held[p].revision = await kv.update(key, me, last=self.held[p].revision)
                except Exception:  # noqa: BLE001 - lease lost (expired, or someone else holds it)
                    await self._drop(kv, p, release=False)
                    continue
                if not self.share.owns(p) and await self._alive(kv, p % self.share.n):
                    await self._drop(kv, p, release=True)
                continue
            if await _get(kv, key) is not None:
                self._absent_since.pop(p, None)
                continue
            if not self.share.owns(p) and await self._alive(kv, p % self.share.n):
                continue
            first = self._absent_since.setdefault(p, time.monotonic())
            info = await self.js.consumer_info(MQTT_STREAM, consumer_name(self.domain, p))
            if info.num_ack_pending and time.monotonic() - first < self.ack_wait_s:
                continue  # the dead holder's deliveries come back after ack_wait: let them come first
            try:
                revision = await kv.create(key, me)
            except Exception:  # noqa: BLE001 - another worker was faster
                continue
            self._absent_since.pop(p, None)
            await self._acquire(p, revision)

    async def run(self, stop: asyncio.Event) -> None:
        kv = await self.js.key_value(LEASE_BUCKET)
        every_s = self.lease_s / 3
        try:
            while not stop.is_set():
                try:
                    await self._tick(kv)
                except Exception:  # noqa: BLE001 - no quorum for a while: keep trying; leases expire
                    log.warning("%s lease round failed", self.name, exc_info=True)
                await self._heartbeat()
                try:
                    await asyncio.wait_for(stop.wait(), timeout=every_s)
                except TimeoutError:
                    pass
        finally:
            for p in list(self.held):
                await self._drop(kv, p, release=True)
            try:
                await kv.delete(f"{self.domain}.worker.{self.share.k}")
            except Exception:  # noqa: BLE001
                pass
            await self._heartbeat("offline")
            self._executor.shutdown(wait=True)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            counts = dict(self.counts)
        return {"worker": self.name, "held": sorted(self.held), **counts, "consumer": self.consumer.counts,
                "service": dict(self.service.counts), "store": dict(self.service.store.counts)}


async def _get(kv: Any, key: str) -> Any:
    from nats.js.errors import KeyDeletedError, KeyNotFoundError

    try:
        return await kv.get(key)
    except (KeyNotFoundError, KeyDeletedError):
        return None


def parse_queue_url(url: str) -> list[str]:
    """``nats://[user@]h:p[,h:p...]`` (or ``tls://``, TLS checked with ``--ca``) -> server URLs for nats-py;
    ValueError names what is wrong. The user's password comes from ``TINYLARGE_MQTT_PASSWORD_<USER>`` (the
    ``secrets.env`` that ``tinylarge cluster config --pki`` wrote), never from the URL."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("nats", "tls"):
        raise ValueError(f"--queue takes nats://host:port[,host:port...] (tls:// with --ca), got {url!r}")
    user, at, rest = rest.rpartition("@")
    if at and (not user or ":" in user):
        raise ValueError("--queue: give only the user (nats://USER@host:port); the password goes in "
                         "TINYLARGE_MQTT_PASSWORD_<USER> (cluster config's secrets.env)")
    servers = []
    for part in rest.split(","):
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"--queue: {part!r} is not host:port")
        servers.append(f"{scheme}://{host}:{port}")
    return servers


def queue_credentials(url: str, ca: str | None = None) -> dict[str, Any]:
    """nats-py's user, password and TLS options for ``url``; ValueError when the user's password is not set."""
    from shared.security.brokerconf import password_env

    parse_queue_url(url)
    kw: dict[str, Any] = {}
    user, at, _ = url.partition("://")[2].rpartition("@")
    if at:
        password = os.environ.get(password_env(user))
        if not password:
            raise ValueError(f"--queue: user {user!r} has no password: set {password_env(user)} (from the "
                             "secrets.env that `tinylarge cluster config --pki` wrote)")
        kw.update(user=user, password=password)
    if url.startswith("tls://") or ca:
        import ssl

        kw["tls"] = ssl.create_default_context(cafile=ca)
    return kw


async def connect(url: str, name: str, ca: str | None = None) -> Any:
    import nats

    return await nats.connect(servers=parse_queue_url(url), name=name, max_reconnect_attempts=-1,
                              reconnect_time_wait=0.5, connect_timeout=5, **queue_credentials(url, ca))


def serve_queue(domain: Any, args: Any, store_url: str, build_service: Callable, limit_s: float) -> int:
    """Run one worker until SIGTERM/Ctrl-C (the caller maps SIGTERM to KeyboardInterrupt) or ``limit_s``."""
    from shared.storage.factory import open_store

    share = Share.parse(args.worker)
    name = f"{domain.name}-w{share.k}-{os.getpid()}"
    ca = getattr(args, "ca", None)
    try:
        queue_credentials(args.queue, ca)
    except ValueError as exc:
        from shared.errors import UserError

        raise UserError(f"serve {domain.name}: {exc}") from None
    store = open_store(store_url)

    async def main() -> dict:
        import signal

        from shared.cluster._js import read_layout
        from shared.runtime.app import publisher

        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        nc = await connect(args.queue, name, ca)
        try:
            layout = await read_layout(nc)
            link = NatsLink(nc, loop)
            service = build_service(store, publisher(link, domain.name), None)  # type: ignore[arg-type]
            skew = service.cfg.max_future_skew_s if args.max_ts_skew_s is None else args.max_ts_skew_s
            worker = PartitionWorker(domain.name, service, nc, share, layout, name, link=link,
                                     max_future_skew_s=skew, min_ts_ms=service.cfg.min_ts_ms)
            service.start()
            runner = asyncio.create_task(worker.run(stop))
            print(f"worker {name} ({share.k}/{share.n}) on {len(parse_queue_url(args.queue))} nodes, "
                  f"{layout['partitions']} partitions; Ctrl-C to stop", flush=True)
            try:
                await asyncio.wait_for(stop.wait(), timeout=None if limit_s == float("inf") else limit_s)
            except TimeoutError:
                pass
            stop.set()
            await runner
            await loop.run_in_executor(None, service.stop)
            return worker.summary()
        finally:
            if nc.is_connected:
                await nc.drain()
            else:
                await nc.close()

    try:
        summary = asyncio.run(main())
        print(json.dumps({"summary": summary}), flush=True)
    finally:
        store.close()
    return 0
