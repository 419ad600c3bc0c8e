"""Fault scenarios against real processes: devices -> Mosquitto -> consumer process -> store.

Every scenario runs the same pipeline and differs only in the fault injected while the load runs:

==========================  ======================================================================
``broker-restart``          Mosquitto (persistence on) stopped with SIGTERM, which saves its database,
                            and started again on the same port and persistence folder
``broker-kill``             Mosquitto killed with SIGKILL and started again; it saves its database after
                            every change (``autosave_interval 1`` + ``autosave_on_changes true``)
``consumer-kill``           the consumer process killed with SIGKILL and started again with the same
                            client id (persistent session); SQLite store
``consumer-kill-influx``    the same with the ``influx+http`` store (VictoriaMetrics); the restarted
                            consumer's store ships what the killed one left in its on-disk spool
``store-outage``            VictoriaMetrics stopped (SIGTERM) while the consumer writes to the
                            ``influx+http`` store, started again after ``store_outage_s``; the store's
                            on-disk spool takes the points meanwhile and drains afterwards
``network-cut``             the publishers reach the broker through a loopback TCP proxy, which drops
                            every connection and stops listening for ``outage_s``, then listens again
``burst``                   no fault: ``burst_messages`` published as fast as the broker takes them, so
                            the broker queues for the consumer (Mosquitto's default queue limit, 1000,
                            dropped acknowledged messages here; the generated config's limits do not)
==========================  ======================================================================

Counting is exact and comes from both ends: ``published`` is every (device, seq) the load generator
handed to :meth:`MqttClient.publish` (and that the broker PUBACKed in the end); ``stored`` is the
distinct (device, seq) found in the store's raw rows (SQLite table, or VictoriaMetrics
``/api/v1/export`` of the ``inference_seq`` series); ``lost`` = published but not stored;
``duplicated`` = rows beyond one per (device, seq). ``recovery_s`` is the time from the end of the
fault (broker / consumer / server back, link restored) until every message published before that
moment is in the store (the store is polled every 0.1 s, VictoriaMetrics every 0.3 s).

What each scenario guarantees (measured in tests/shared/test_faults.py and ``python -m bench.faults``):

* ``broker-restart``, ``consumer-kill``, ``consumer-kill-influx``, ``store-outage``, ``network-cut``:
  nothing lost, nothing stored twice. QoS 1 + persistent sessions + acknowledging only after
  ``Store.write`` returned make delivery at-least-once; the store's (measurement, device, seq)
  identity makes it exactly-once in the store (``redelivered`` counts the writes it absorbed).
  SQLite commits inside ``write``; ``InfluxStore.write`` returns once the points are synced to its
  on-disk spool (write-ahead), and a batch the server took just before the kill, sent again from
  the spool after the restart, is deduplicated by VictoriaMetrics (``-dedup.minScrapeInterval=1ms``).
* ``broker-kill``: Mosquitto 2.0 PUBACKs a message before it is on disk, and ``autosave_on_changes``
  counts only *queued* messages (not ones in flight to a connected subscriber) as changes, so a
  SIGKILL can lose the few messages that were acknowledged and in flight at that instant (0-3 of
  1000 in our runs); nothing is duplicated. Use SIGTERM (``broker-restart``) for a lossless restart.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from bench._fault_load import LoadConfig, LoadGenerator
from bench._fault_proxy import TcpProxy

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = ("broker-restart", "broker-kill", "consumer-kill", "consumer-kill-influx", "store-outage",
             "network-cut", "burst")
LOSSLESS = ("broker-restart", "consumer-kill", "consumer-kill-influx", "store-outage", "network-cut", "burst")
#: measured by the benchmark, not promised (none at present): see the module docstring
EXTRA_SCENARIOS: tuple[str, ...] = ()
#: Mosquitto saves its persistence file after every change (the count below) instead of every 30 min
AUTOSAVE_EVERY_CHANGE = "autosave_interval 1\nautosave_on_changes true\n"


class Broker(Protocol):
    url: str
    port: int

    def start(self) -> Any: ...
    def stop(self) -> None: ...
    def kill(self) -> None: ...


class TsdbServer(Protocol):
    store_url: str

    def start(self) -> Any: ...
    def stop(self) -> None: ...
    def export(self, match: str) -> list[dict]: ...


BrokerFactory = Callable[..., Broker]  # (persistence: bool, conf_extra: str) -> started broker
TsdbFactory = Callable[[], TsdbServer]


@dataclass
class ScenarioConfig:
    """Size and timing of one scenario run (defaults: the benchmark; tests pass smaller ones)."""

    devices: int = 200  #: device ids of the load generator
    messages: int = 10_000  #: messages published per scenario
    rate_hz: float = 600.0  #: publish rate, all devices together
    publishers: int = 4  #: MQTT connections carrying the device ids
    fault_at: float = 0.2  #: the fault starts when this fraction of the messages is published
    outage_s: float = 2.0  #: how long the broker / consumer / link stays down
    store_outage_s: float = 10.0  #: how long VictoriaMetrics stays down
    settle_timeout_s: float = 120.0  #: longest wait for the pipeline to catch up after the load
    quiet_s: float = 15.0  #: after the load, stop waiting when the store gained nothing for this long
    burst_messages: int = 20_000  #: messages of the ``burst`` scenario, published without pacing


@dataclass
class FaultResult:
    """One row of the reliability report; ``detail`` holds the counts behind it."""

    scenario: str
    published: int
    stored: int
    lost: int
    duplicated: int
    recovery_s: float | None
    deadletters: int = 0
    phantom: int = 0  #: stored keys nobody published (must be 0)
    ts_mismatch: int = 0  #: stored points whose ts differs from the published message's (must be 0)
    #: writes of a key already stored, absorbed by the store (at-least-once delivery), last consumer run
    redelivered: int = 0
    promised: bool = True  #: whether the design promises lost == 0 for this fault (module docstring)
    detail: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("detail")
        return out


# ---------------------------------------------------------------------------------------- store readers
class SqliteRows:
    """Raw rows of the consumer's SQLite store, read-only (the consumer process writes it)."""

    def __init__(self, path: Path):
        self.path = path

    def rows(self) -> list[tuple[str, int, int]] | None:
        if not self.path.exists():
            return None
        try:
            with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5) as conn:
                return conn.execute(
                    "SELECT device, seq, ts_ms FROM points WHERE measurement = 'inference'").fetchall()
        except sqlite3.Error:
            return None


class VmRows:
    """Raw samples of the ``inference_seq`` series as VictoriaMetrics exports them (after a force flush)."""

    def __init__(self, server: TsdbServer):
        self.server = server

    def rows(self) -> list[tuple[str, int, int]] | None:
        try:
            exported = self.server.export('{__name__="inference_seq"}')
        except (OSError, ValueError):
            return None  # down
        return [(row["metric"].get("device", "?"), int(value), int(ts))
                for row in exported for value, ts in zip(row["values"], row["timestamps"], strict=True)]


class StoreWatcher:
    """Polls the store's raw rows on a thread and records when each (device, seq) was first seen."""

    def __init__(self, reader: SqliteRows | VmRows, interval_s: float):
        self.reader = reader
        self.interval_s = interval_s
        self.first_seen: dict[tuple[str, int], float] = {}
        self.last_change = time.monotonic()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-watch", daemon=True)

    def start(self) -> StoreWatcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            rows = self.reader.rows()
            now = time.monotonic()
            if rows is not None:
                with self._cond:
                    for device, seq, _ in rows:
                        if (device, seq) not in self.first_seen:
                            self.first_seen[(device, seq)] = now
                            self.last_change = now
                    self._cond.notify_all()
            self._stop.wait(self.interval_s)

    def wait_for(self, keys: set[tuple[str, int]], quiet_s: float, timeout_s: float) -> bool:
        """True once every key was seen; False after ``quiet_s`` without a new key, or ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not keys <= self.first_seen.keys():
                now = time.monotonic()
                if now > deadline or now - self.last_change > quiet_s:
                    return False
                self._cond.wait(0.2)
            return True

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


# ---------------------------------------------------------------------------------------- consumer process
class ConsumerProcess:
    """``python -m bench._fault_consumer`` as a child process that can be killed and started again."""

    def __init__(self, mqtt_url: str, store_url: str, client_id: str, workdir: Path):
        self.argv = [sys.executable, "-m", "bench._fault_consumer", "--mqtt", mqtt_url, "--store", store_url,
                     "--client-id", client_id, "--domain", "healthcare"]
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.finals: list[dict[str, Any]] = []

    def _out(self, run: int) -> Path:
        return self.workdir / f"consumer{run}.out"

    def start(self, timeout_s: float = 60.0) -> None:
        self.runs += 1
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH"))
                                                          if p))
        out = self._out(self.runs)
        with open(out, "wb") as stdout, open(self.workdir / f"consumer{self.runs}.err", "wb") as stderr:
            self.proc = subprocess.Popen(self.argv, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                                         cwd=self.workdir, env=env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(e.get("event") == "ready" for e in self._events(self.runs)):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        err = (self.workdir / f"consumer{self.runs}.err").read_text(errors="replace")[-3000:]
        self.kill()
        raise RuntimeError(f"consumer process did not become ready:\n{err}")

    def _events(self, run: int) -> list[dict[str, Any]]:
        out = []
        for line in self._out(run).read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def kill(self) -> None:
        """SIGKILL: no goodbye, nothing acknowledged that was not handled yet."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def terminate(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """SIGTERM, wait, and return the final counts it printed."""
        if self.proc is None:
            return {}
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError("consumer process ignored SIGTERM") from None
        self.proc = None
        finals = [e for e in self._events(self.runs) if e.get("event") == "final"]
        if not finals:
            err = (self.workdir / f"consumer{self.runs}.err").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"consumer process printed no final counts:\n{err}")
        self.finals.append(finals[-1]["counts"])
        return finals[-1]["counts"]


# ---------------------------------------------------------------------------------------- the driver
@dataclass
class _Fault:
    begin: Callable[[], None]
    end: Callable[[], None]
    outage_s: float


def _drive(name: str, workdir: Path, cfg: ScenarioConfig, pub_url: str, con_url: str, store: str,
           reader: SqliteRows | VmRows, fault_for: Callable[[ConsumerProcess], _Fault],
           progress: Callable[[str], None]) -> FaultResult:
    tag = uuid.uuid4().hex[:8]
    consumer = ConsumerProcess(con_url, store, f"fault-con-{tag}", workdir)
    consumer.start()
    load = LoadGenerator(pub_url, LoadConfig(devices=cfg.devices, messages=cfg.messages, rate_hz=cfg.rate_hz,
                                             publishers=cfg.publishers, client_prefix=f"fault-pub-{tag}"))
    watcher = StoreWatcher(reader, 0.1 if isinstance(reader, SqliteRows) else 0.3).start()
    try:
        load.connect()
        load.start()
        if not load.wait_count(int(cfg.fault_at * cfg.messages), timeout_s=cfg.settle_timeout_s):
            raise RuntimeError(f"{name}: load generator stalled before the fault ({load.count} published)")
        fault = fault_for(consumer)
        n_begin = load.count
        fault.begin()
        n_down = load.count
        progress(f"{name}: fault after {n_begin} published")
        time.sleep(fault.outage_s)
        fault.end()
        t_end = time.monotonic()
        before = set(load.keys_so_far())
        progress(f"{name}: fault over after {fault.outage_s:g} s ({len(before)} published)")
        load.join(cfg.settle_timeout_s)
        acked = load.wait_acked(cfg.settle_timeout_s)
        progress(f"{name}: load done ({load.count} published, all acknowledged: {acked})")
        settled = watcher.wait_for(set(load.published), cfg.quiet_s, cfg.settle_timeout_s)
        progress(f"{name}: store {'caught up' if settled else 'stopped growing'}; stopping the consumer")
        final = consumer.terminate()
        rows = reader.rows() or []
    finally:
        watcher.stop()
        load.close()
        consumer.kill()
    published = dict(load.published)
    stored_ts: dict[tuple[str, int], int] = {}
    for device, seq, ts in rows:
        stored_ts.setdefault((device, seq), ts)
    stored = set(stored_ts)
    return FaultResult(
        scenario=name,
        published=len(published),
        stored=len(stored),
        lost=len(set(published) - stored),
        duplicated=len(rows) - len(stored),
        recovery_s=_recovery_s(watcher.first_seen, before & stored, t_end),
        deadletters=int(final.get("deadletters", 0)),
        phantom=len(stored - set(published)),
        ts_mismatch=sum(1 for k in stored & set(published) if stored_ts[k] != published[k]),
        redelivered=int(final.get("store_duplicates", 0)),
        promised=name in LOSSLESS,
        detail={"lost_at": sorted(load.order.index(k) for k in set(published) - stored),
                "fault_at": [n_begin, n_down, len(before)], "publisher_acked_all": acked,
                "publisher_refused": load.refused, "publisher": load.counts(),
                "consumer_runs": consumer.runs, "consumer_final": final},
    )


def _recovery_s(first_seen: dict[tuple[str, int], float], keys: set[tuple[str, int]],
                t_end: float) -> float | None:
    """Seconds from ``t_end`` until the last of ``keys`` (published before it, stored in the end) was seen."""
    times = [first_seen[k] for k in keys if k in first_seen]
    if not times:
        return None
    return round(max(0.0, max(times) - t_end), 3)


# ---------------------------------------------------------------------------------------- the scenarios
def run_scenario(name: str, workdir: Path, cfg: ScenarioConfig, make_broker: BrokerFactory,
                 make_tsdb: TsdbFactory | None = None,
                 progress: Callable[[str], None] = lambda _: None) -> FaultResult:
    """Run one scenario of :data:`SCENARIOS` on fresh servers made by the factories."""
    if name not in SCENARIOS + EXTRA_SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; expected one of {', '.join(SCENARIOS)}")
    workdir = Path(workdir) / name
    workdir.mkdir(parents=True, exist_ok=True)
    sqlite_path = workdir / "store.db"
    sqlite_url = f"sqlite:///{sqlite_path}"
    if name in ("broker-restart", "broker-kill"):
        extra = AUTOSAVE_EVERY_CHANGE if name == "broker-kill" else ""
        broker = make_broker(persistence=True, conf_extra=extra)

        def broker_fault(_: ConsumerProcess) -> _Fault:
            down = broker.kill if name == "broker-kill" else broker.stop
            return _Fault(down, broker.start, cfg.outage_s)

        return _drive(name, workdir, cfg, broker.url, broker.url, sqlite_url, SqliteRows(sqlite_path),
                      broker_fault, progress)
    if name == "consumer-kill":
        broker = make_broker(persistence=True, conf_extra="")
        return _drive(name, workdir, cfg, broker.url, broker.url, sqlite_url, SqliteRows(sqlite_path),
                      lambda c: _Fault(c.kill, c.start, cfg.outage_s), progress)
    if name in ("store-outage", "consumer-kill-influx"):
        if make_tsdb is None:
            raise ValueError(f"{name} needs a VictoriaMetrics factory")
        broker = make_broker(persistence=True, conf_extra="")
        tsdb = make_tsdb()
        store_url = f"{tsdb.store_url}?flavor=vm&spool={workdir / 'spool'}"
        if name == "consumer-kill-influx":
            return _drive(name, workdir, cfg, broker.url, broker.url, store_url, VmRows(tsdb),
                          lambda c: _Fault(c.kill, c.start, cfg.outage_s), progress)
        return _drive(name, workdir, cfg, broker.url, broker.url, store_url, VmRows(tsdb),
                      lambda _: _Fault(tsdb.stop, tsdb.start, cfg.store_outage_s), progress)
    if name == "burst":
        broker = make_broker(persistence=True, conf_extra="")
        burst = replace(cfg, messages=cfg.burst_messages, rate_hz=1e9)
        return _drive(name, workdir, burst, broker.url, broker.url, sqlite_url, SqliteRows(sqlite_path),
                      lambda _: _Fault(lambda: None, lambda: None, 0.0), progress)
    broker = make_broker(persistence=True, conf_extra="")
    port = int(broker.url.rsplit(":", 1)[1])
    with TcpProxy("127.0.0.1", port) as proxy:
        return _drive(name, workdir, cfg, proxy.url, broker.url, sqlite_url, SqliteRows(sqlite_path),
                      lambda _: _Fault(proxy.cut, proxy.restore, cfg.outage_s), progress)
