"""Where the pipeline benchmark's CPU went: per-thread CPU clocks and timed stages of the running service.

:class:`StageClock` wraps a few methods of the live service objects (the consumer's decode and
validation, the store's write, the history step, the model, the result publish, the PUBACKs) with a
per-thread CPU clock (``time.thread_time``), and reads the CPU clock of each of the service's threads
(``pthread_getcpuclockid``) and of other processes (``/proc/<pid>/stat``) at the start and the end of a
phase. Nothing in the service changes: the same code runs, each wrapped call costs two clock reads.
The profile is CPU microseconds per message by stage, and the share of the service's CPU.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")

#: thread name prefix -> role in the profile
THREAD_ROLES = (("paho-mqtt-client-", "network"), ("mqtt-worker-", "worker"), ("status-", "status"))


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (0.0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * _TICK_S  # utime, stime (fields 14, 15 of stat(5))


def _role(name: str) -> str | None:
    if name.endswith("-scorer"):
        return "scorer"
    for prefix, role in THREAD_ROLES:
        if name.startswith(prefix):
            return role
    return None


def _thread_cpu_s(thread: threading.Thread) -> float:
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident or 0))
    except (OSError, AttributeError):
        return 0.0


class StageClock:
    """CPU seconds per (thread role, stage) of one in-process service, between :meth:`start` and :meth:`stop`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stage: Counter[str] = Counter()
        self._threads: dict[threading.Thread, float] = {}
        self._thread_cpu: Counter[str] = Counter()
        self._pids: dict[str, tuple[int, float]] = {}
        self.extra_cpu_s: Counter[str] = Counter()  #: CPU seconds reported from elsewhere (the load generator)
        self.running = False
        #: (device, seq) -> wall time its window was queued for scoring (stored, history step taken): splits each
        #: message's latency into publish -> queued (broker, consumer, store) and queued -> result (scorer)
        self.queued_at: dict[tuple[str, int], float] = {}

    def wrap(self, obj: Any, attr: str, stage: str | Callable[[], str]) -> None:
        """Time every call of ``obj.attr`` (an instance attribute shadows the method) as ``stage``."""
        fn = getattr(obj, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                if self.running:
                    name = stage if isinstance(stage, str) else stage()
                    dt = time.thread_time() - t0
                    with self._lock:
                        self._stage[name] += dt

        setattr(obj, attr, timed)

    def start(self, pids: dict[str, int]) -> None:
        """From now on: the service's threads (found by name) and the processes ``pids`` (label -> pid)."""
        self._threads = {t: _thread_cpu_s(t) for t in threading.enumerate() if _role(t.name)}
        self._pids = {label: (pid, process_cpu_s(pid)) for label, pid in pids.items()}
        with self._lock:
            self._stage.clear()
        self.running = True

    def stop(self) -> None:
        self.running = False
        for t, t0 in self._threads.items():
            self._thread_cpu[_role(t.name) or "other"] += _thread_cpu_s(t) - t0
        for label, (pid, c0) in self._pids.items():
            self.extra_cpu_s[label] += max(0.0, process_cpu_s(pid) - c0)

    def profile(self, messages: int) -> dict[str, Any]:
        """CPU microseconds per message: each stage, each thread's rest, the other processes, and shares."""
        per = 1e6 / max(1, messages)
        with self._lock:
            stages = dict(self._stage)
        rows: dict[str, float] = {}
        for role in ("network", "worker", "scorer", "status"):
            inside = {k: v for k, v in stages.items() if k.startswith(f"{role}: ")}
            rows.update(inside)
            rest = self._thread_cpu.get(role, 0.0) - sum(inside.values())
            label = "network: paho (socket I/O, MQTT packets)" if role == "network" else f"{role}: other"
            rows[label] = max(0.0, rest)
        service = sum(self._thread_cpu.values())
        out: dict[str, Any] = {"service_us_per_msg": round(service * per, 1)}
        out.update({f"{k}_us_per_msg": round(v * per, 1) for k, v in self.extra_cpu_s.items()})
        out["stages_us_per_msg"] = {k: round(v * per, 1) for k, v in sorted(rows.items(), key=lambda kv: -kv[1])}
        out["stages_share"] = {k: round(v / service, 3) if service else None
                               for k, v in sorted(rows.items(), key=lambda kv: -kv[1])}
        return out


def instrument(clock: StageClock, cloud: Any) -> None:
    """Wrap the stages of a running :class:`shared.runtime.cloud.Cloud` (bench.pipeline's service)."""

    def who() -> str:
        return _role(threading.current_thread().name) or "other"

    service, consumer, client = cloud.service, cloud.consumer, cloud.client
    clock.wrap(consumer, "_decode", "worker: decode + validate")
    clock.wrap(service, "_take", "worker: history step + NEWS2 + queue")
    take = service._take

    def stamped(msg: dict, new: int) -> None:
        take(msg, new)
        clock.queued_at[(msg["device"], msg["seq"])] = time.time()

    service._take = stamped
    clock.wrap(service.store, "write", lambda: f"{who()}: store write (SQLite)")
    clock.wrap(client, "_ack_all", "worker: PUBACK hand-over to paho")
    clock.wrap(service.predictor, "predict_batch", "scorer: large model (batched)")
    clock.wrap(service, "result", "scorer: result message + alert rule")
    clock.wrap(service, "publish", "scorer: result publish (encode + validate + paho)")


def table(profile: dict[str, Any]) -> str:
    lines = [f"{'CPU per message':<52} {'us':>8} {'share':>6}"]
    shares = profile.get("stages_share", {})
    for k, v in profile.get("stages_us_per_msg", {}).items():
        share = shares.get(k)
        lines.append(f"  {k:<50} {v:>8.1f} {'' if share is None else f'{100 * share:5.1f}%':>6}")
    lines.append(f"  {'= service process (all its threads)':<50} {profile.get('service_us_per_msg', 0):>8.1f}")
    for k, v in profile.items():
        if k.endswith("_us_per_msg") and k != "service_us_per_msg" and not isinstance(v, dict):
            lines.append(f"  {k.removesuffix('_us_per_msg'):<50} {v:>8.1f}")
    return "\n".join(lines)
