"""Pipeline benchmark: devices -> broker -> healthcare service -> store, against the broker's raw rate.

Three phases on the same broker, with the same load generator (a separate process publishing QoS 1
``inference`` messages from N devices, one paho client each):

1. **raw**: as fast as the broker acknowledges, to a paho subscriber that only counts;
2. **saturated**: the same flood to the real cloud service, as ``tinylarge serve`` runs it (consumer,
   schema validation and dead-letter checks, SQLite writes of vitals and inferences, per-patient history,
   batched transformer risk, risk published and stored);
3. **paced**: the service again, the load paced at half the rate phase 2 measured.

It reports sustained messages per second (first publish to last message stored) of phases 1 and 2, their
ratio (goal >= 0.8), latency percentiles from publish to the risk published for it (phase 3: the
latency a service not running flat out gives; goal p99 <= 50 ms), exact loss/duplication/dead-letter
counts from the store and the service, and where the service's CPU went (:mod:`bench._stages`: CPU
microseconds per message by stage, of the broker and the load generator too). Output: tables on stdout
and ``out/bench/pipeline.json``. The exit status is 1 when any phase lost, duplicated or dead-lettered a
message, or left a stored window without a result (scored or superseded), whatever the rates.

    python -m bench.pipeline [--devices 50] [--messages 100] [--paced-s 10] [--mqtt URL] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bench import _stages
from healthcare.device import inference_message
from healthcare.signals import LABELS

DOMAIN = "healthcare"
RATIO_GOAL = 0.8  #: the service's rate over the broker's raw rate
P99_GOAL_MS = 50.0  #: publish -> risk, at half the saturated rate


def _payloads(device: str, n: int, t0_ms: int, rng: np.random.Generator) -> list[bytes]:
    from shared.protocol import messages

    out = []
    for seq in range(n):
        p = rng.dirichlet(np.ones(len(LABELS)))
        vitals = {"hr_bpm": rng.normal(80, 10), "hrv_rmssd_ms": rng.uniform(10, 60), "hrv_sdnn_ms": rng.uniform(20, 80),
                  "spo2_pct": rng.uniform(90, 99), "rr_bpm": rng.uniform(12, 24), "temp_c": rng.uniform(35.5, 37.5),
                  "motion_g": rng.uniform(0, 0.1), "quality": rng.uniform(0.5, 1)}
        msg = inference_message(device, seq, t0_ms + seq * 300_000, "hc-tiny@1", 30.0, vitals,
                                LABELS[int(p.argmax())], dict(zip(LABELS, p.tolist(), strict=True)))
        out.append(messages.encode(DOMAIN, "inference", msg))
    return out


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _load(url: str, devices: int, per_device: int, rate_hz: float | None, stamps: mp.Queue, go: Any) -> None:
    """Load generator process: one client per device, round robin over the devices, as fast as the broker
    takes them (``rate_hz`` None) or paced; sends back the wall time of each publish and its own CPU time."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from shared.protocol.endpoints import parse_mqtt_url

    ep = parse_mqtt_url(url)
    rng = np.random.default_rng(1)
    # dated in the past, 5 min apart, the last a minute ago: the service dead-letters ts more than 300 s ahead
    t0_ms = int(time.time() * 1000) - per_device * 300_000 - 60_000
    ids = [f"b{i:04d}" for i in range(devices)]
    data = {d: _payloads(d, per_device, t0_ms, rng) for d in ids}
    clients = []
    for d in ids:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{d}", clean_session=True,
                        protocol=paho.MQTTv311)
        c.max_inflight_messages_set(64)
        c.connect(ep.host, ep.port)
        c.loop_start()
        clients.append(c)
    go.wait()
    cpu0 = _cpu_s()
    sent: list[tuple[str, int, float]] = []
    infos = []
    start = time.time()
    for seq in range(per_device):
        for d, c in zip(ids, clients, strict=True):
            now = time.time()
            if rate_hz:
                ahead = start + len(sent) / rate_hz - now
                if ahead > 0.001:
                    time.sleep(ahead)
                    now = time.time()
            sent.append((d, seq, now))
            infos.append(c.publish(f"tinylarge/{DOMAIN}/{d}/inference", data[d][seq], qos=1))
    for info in infos:
        info.wait_for_publish(timeout=120)
    stamps.put((sent, _cpu_s() - cpu0))
    for c in clients:
        c.disconnect()
        c.loop_stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _broker(url: str | None) -> Iterator[tuple[str, str, int | None]]:
    """The broker to measure (url, kind, pid if ours): the given one, else Mosquitto if installed, else amqtt."""
    if url:
        yield url, "external", None
        return
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if exe is None:
        from shared.transport.broker import EmbeddedBroker

        with EmbeddedBroker() as b:
            yield b.url, "embedded amqtt", None
        return
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "m.conf"
        from shared.security.brokerconf import delivery_lines

        # the generated configuration's delivery settings (tinylarge broker config), on loopback without auth
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n" + "\n".join(delivery_lines()) + "\n")
        proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            yield f"mqtt://127.0.0.1:{port}", "mosquitto", proc.pid
        finally:
            proc.terminate()
            proc.wait(timeout=10)


class _Load:
    """The load generator process of one phase: built and connected first, started by :meth:`go`."""

    def __init__(self, url: str, devices: int, per_device: int, rate_hz: float | None = None):
        ctx = mp.get_context("spawn")
        self.stamps, self._go = ctx.Queue(), ctx.Event()
        self.proc = ctx.Process(target=_load, args=(url, devices, per_device, rate_hz, self.stamps, self._go),
                                daemon=True)
        self.proc.start()
        time.sleep(2.0 + devices * 0.01)  # let it build the payloads and connect

    def go(self) -> None:
        self._go.set()

    def result(self) -> tuple[list[tuple[str, int, float]], float]:
        sent, cpu_s = self.stamps.get(timeout=600)
        self.proc.join(timeout=30)
        return sent, cpu_s


def raw_phase(url: str, devices: int, per_device: int) -> dict:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from shared.protocol.endpoints import parse_mqtt_url

    total = devices * per_device
    done = threading.Event()
    got = {"n": 0, "last": 0.0}

    def on_message(client, userdata, msg) -> None:  # noqa: ANN001 - paho callback
        got["n"] += 1
        if got["n"] >= total:
            got["last"] = time.time()
            done.set()

    ep = parse_mqtt_url(url)
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw", clean_session=True, protocol=paho.MQTTv311)
    sub.on_message = on_message
    sub.connect(ep.host, ep.port)
    sub.subscribe(f"tinylarge/{DOMAIN}/+/inference", qos=1)
    sub.loop_start()
    time.sleep(0.5)
    load = _Load(url, devices, per_device)
    load.go()
    sent, _ = load.result()
    done.wait(timeout=120)
    sub.disconnect()
    sub.loop_stop()
    first = sent[0][2]
    return {"received": got["n"], "msgs_per_s": got["n"] / max(1e-9, (got["last"] or time.time()) - first)}


def service_phase(url: str, devices: int, per_device: int, models: Path, db: Path, rate_hz: float | None = None,
                  broker_pid: int | None = None, py_spy: Path | None = None) -> dict:
    """The real service (``run_cloud``, as ``tinylarge serve`` builds it) under the load; counts and profile."""
    from shared.runtime.cloud import run_cloud

    total = devices * per_device
    handled_at: dict[tuple[str, int], float] = {}
    lock = threading.Lock()

    def on_risk(msg: dict) -> None:
        with lock:
            handled_at[(msg["device"], msg["source_seq"])] = time.time()

    clock = _stages.StageClock()
    args = argparse.Namespace(ca=None, cert=None, key=None)
    with run_cloud(DOMAIN, args, url, f"sqlite:///{db}", models, on_result=on_risk,
                   client_id="bench-service") as cloud:
        _stages.instrument(clock, cloud)
        load = _Load(url, devices, per_device, rate_hz)
        spy = _py_spy(py_spy)
        clock.start({"broker": broker_pid} if broker_pid else {})
        load.go()
        sent, load_cpu_s = load.result()
        deadline = time.time() + 300
        while time.time() < deadline:  # cheap: the consumer's counters, not a COUNT(*) racing the writer
            c = cloud.consumer.counts
            if c["accepted"] + c["deadletters"] >= total and cloud.service.idle:
                break
            time.sleep(0.01)
        last_stored = time.time()
        time.sleep(0.3)  # the last batch's results
        clock.stop()
        _stop_py_spy(spy)
        clock.extra_cpu_s["load_generator"] += load_cpu_s
        stored = cloud.store.count("inference")
        duplicates = cloud.service.counts["duplicates"]
        superseded = cloud.service.counts["superseded"]
        scored = cloud.service.counts["scored"]
        deadletters = cloud.consumer.counts.get("deadletters", 0)
    sent_at = {(d, s): t for d, s, t in sent}
    lat = np.array([1000 * (handled_at[k] - sent_at[k]) for k in handled_at if k in sent_at])
    both = [k for k in handled_at if k in sent_at and k in clock.queued_at]
    lat_in = np.array([1000 * (clock.queued_at[k] - sent_at[k]) for k in both])  # broker, consumer, store
    lat_score = np.array([1000 * (handled_at[k] - clock.queued_at[k]) for k in both])  # scorer queue, model
    first = sent[0][2]
    return {"stored": stored, "msgs_per_s": stored / max(1e-9, last_stored - first), "lost": total - stored,
            "offered_per_s": len(sent) / max(1e-9, sent[-1][2] - first),
            "duplicated": duplicates, "deadletters": deadletters, "risk_messages": len(handled_at),
            "scored": scored, "superseded": superseded,
            "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99), "max_ms": _pct(lat, 100),
            "queued_p50_ms": _pct(lat_in, 50), "queued_p99_ms": _pct(lat_in, 99),
            "scored_p50_ms": _pct(lat_score, 50), "scored_p99_ms": _pct(lat_score, 99),
            "profile": clock.profile(stored)}


def _pct(a: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(a, q)), 1) if len(a) else None


def _py_spy(out: Path | None) -> subprocess.Popen | None:
    """``py-spy record`` on this process (the service's threads) for the phase, if asked and installed."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if out is None or not os.access(exe, os.X_OK):
        return None
    return subprocess.Popen([exe, "record", "--pid", str(os.getpid()), "--threads", "--rate", "100",
                             "--format", "raw", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop_py_spy(proc: subprocess.Popen | None) -> None:
    if proc is not None:
        proc.send_signal(2)  # py-spy writes its file on SIGINT
        proc.wait(timeout=30)


def failures(result: dict[str, Any]) -> list[str]:
    """What no run may show, whatever its speed: loss, duplicates, dead letters, windows without a result."""
    bad = []
    if result["raw_received"] != result["messages"]:
        bad.append(f"raw: {result['raw_received']} of {result['messages']} received")
    for phase in ("saturated", "paced"):
        p = result[phase]
        n = p["messages"]
        for key in ("lost", "duplicated", "deadletters"):
            if p[key]:
                bad.append(f"{phase}: {p[key]} {key}")
        if p["scored"] + p["superseded"] != p["stored"] or p["risk_messages"] != p["scored"]:
            bad.append(f"{phase}: {p['stored']} stored of {n}, {p['scored']} scored + {p['superseded']} superseded, "
                       f"{p['risk_messages']} risk messages")
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=None, help="devices (default 50; --quick 20)")
    ap.add_argument("--messages", type=int, default=None, help="messages per device (default 100; --quick 50)")
    ap.add_argument("--paced-s", type=float, default=None, help="length of the paced phase (default 10; --quick 4)")
    ap.add_argument("--quick", action="store_true", help="a short run for CI (under a minute): fails on any loss, "
                    "duplicate or dead letter, as every run does; writes pipeline-quick.json")
    ap.add_argument("--mqtt", help="measure this broker instead of starting one")
    ap.add_argument("--models", type=Path, default=Path("models/healthcare"))
    ap.add_argument("--out", type=Path, default=Path("out/bench"))
    ap.add_argument("--py-spy", type=Path, default=None, metavar="FILE",
                    help="also sample the saturated phase with py-spy (if installed) into FILE (raw format)")
    args = ap.parse_args(argv)
    devices = args.devices or (20 if args.quick else 50)
    per_device = args.messages or (50 if args.quick else 100)
    paced_s = args.paced_s or (4.0 if args.quick else 10.0)
    from healthcare.train import ensure_trained

    ensure_trained(args.models, quick=args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    total = devices * per_device
    with _broker(args.mqtt) as (url, kind, pid), tempfile.TemporaryDirectory() as tmp:
        print(f"broker: {kind} at {url}; {devices} devices x {per_device} messages = {total}", flush=True)
        print("phase 1/3: raw (a subscriber that only counts)", flush=True)
        raw = raw_phase(url, devices, per_device)
        print(f"  {raw['msgs_per_s']:.0f} msgs/s; phase 2/3: the service, saturated", flush=True)
        sat = service_phase(url, devices, per_device, args.models, Path(tmp) / "sat.db", broker_pid=pid,
                            py_spy=args.py_spy)
        rate = 0.5 * sat["msgs_per_s"]
        paced_per_device = max(2, math.ceil(rate * paced_s / devices))
        print(f"  {sat['msgs_per_s']:.0f} msgs/s; phase 3/3: the service at {rate:.0f} msgs/s "
              f"({devices} x {paced_per_device})", flush=True)
        paced = service_phase(url, devices, paced_per_device, args.models, Path(tmp) / "paced.db", rate_hz=rate,
                              broker_pid=pid)
    sat["messages"], paced["messages"] = total, devices * paced_per_device
    paced["rate_hz"] = round(rate, 1)
    result: dict[str, Any] = {
        "broker": kind, "devices": devices, "messages": total, "quick": args.quick,
        "msgs_per_s": round(sat["msgs_per_s"], 1), "raw_msgs_per_s": round(raw["msgs_per_s"], 1),
        "ratio": round(sat["msgs_per_s"] / raw["msgs_per_s"], 3) if raw["msgs_per_s"] else None,
        "p50_ms": sat["p50_ms"], "p99_ms": sat["p99_ms"],
        "paced_msgs_per_s": paced["rate_hz"], "paced_p50_ms": paced["p50_ms"], "paced_p99_ms": paced["p99_ms"],
        "lost": sat["lost"] + paced["lost"], "duplicated": sat["duplicated"] + paced["duplicated"],
        "deadletters": sat["deadletters"] + paced["deadletters"], "raw_received": raw["received"],
        "stored": sat["stored"], "risk_messages": sat["risk_messages"], "superseded": sat["superseded"],
        "saturated": {k: v for k, v in sat.items() if k != "profile"},
        "paced": {k: v for k, v in paced.items() if k != "profile"},
        "profile": sat["profile"], "profile_paced": paced["profile"],
    }
    out = args.out / ("pipeline-quick.json" if args.quick else "pipeline.json")  # docs read the full run's
    out.write_text(json.dumps(result, indent=2) + "\n")
    flat = {k: v for k, v in result.items() if not isinstance(v, dict)}
    width = max(len(k) for k in flat)
    print("-" * (width + 20))
    for k, v in flat.items():
        print(f"{k:<{width}}  {v!s:>16}")
    print("-" * (width + 20))
    print("saturated phase, " + _stages.table(result["profile"]))
    print(f"paced latency by stage: publish -> stored and queued p50/p99 {paced['queued_p50_ms']}/"
          f"{paced['queued_p99_ms']} ms; queued -> result published {paced['scored_p50_ms']}/"
          f"{paced['scored_p99_ms']} ms")
    print(f"goals: ratio >= {RATIO_GOAL} ({result['ratio']}), paced p99 <= {P99_GOAL_MS:g} ms "
          f"({result['paced_p99_ms']})")
    print(f"wrote {out}")
    bad = failures(result)
    for line in bad:
        print(f"FAILED: {line}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
