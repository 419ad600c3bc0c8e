"""Pipeline benchmark: devices -> broker -> healthcare service -> store, against the broker's raw rate.

Two phases on the same broker, with the same load generator (a separate process publishing QoS 1
``inference`` messages from N devices as fast as the broker acknowledges them):

1. **raw**: a paho subscriber that only counts (it acknowledges, nothing else);
2. **pipeline**: the real cloud service (schema validation, dead-letter checks, SQLite writes of vitals
   and inferences, per-patient history, batched transformer risk, risk published and stored).

It reports sustained messages per second (first publish to last message handled) for each, their ratio
(goal >= 0.5), latency percentiles from publish to the stored risk, and exact loss/duplication counts
from the store. Output: a table on stdout and ``out/bench/pipeline.json``.

    python -m bench.pipeline [--devices 50] [--messages 100] [--mqtt URL]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from healthcare.device import inference_message
from healthcare.signals import LABELS

DOMAIN = "healthcare"


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


def _load(url: str, devices: int, per_device: int, stamps: mp.Queue, go: mp.Event) -> None:
    """Load generator process: one client per device; records the wall time of each publish."""
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
    sent: list[tuple[str, int, float]] = []
    infos = []
    for seq in range(per_device):
        for d, c in zip(ids, clients, strict=True):
            sent.append((d, seq, time.time()))
            infos.append(c.publish(f"tinylarge/{DOMAIN}/{d}/inference", data[d][seq], qos=1))
    for info in infos:
        info.wait_for_publish(timeout=120)
    stamps.put(sent)
    for c in clients:
        c.disconnect()
        c.loop_stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _broker(url: str | None) -> Iterator[tuple[str, str]]:
    """The broker to measure: the given one, else Mosquitto if installed, else the embedded amqtt."""
    if url:
        yield url, "external"
        return
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if exe is None:
        from shared.transport.broker import EmbeddedBroker

        with EmbeddedBroker() as b:
            yield b.url, "embedded amqtt"
        return
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "m.conf"
        from shared.security.brokerconf import delivery_lines

        # the generated configuration's queue limits (tinylarge broker config), on loopback without auth
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n" + "\n".join(delivery_lines()) + "\n")
        proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            yield f"mqtt://127.0.0.1:{port}", "mosquitto"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def _start_load(url: str, devices: int, per_device: int) -> tuple[mp.Process, mp.Queue, mp.Event]:
    ctx = mp.get_context("spawn")
    stamps, go = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=_load, args=(url, devices, per_device, stamps, go), daemon=True)
    proc.start()
    return proc, stamps, go


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
    proc, stamps, go = _start_load(url, devices, per_device)
    time.sleep(2.0 + devices * 0.01)  # let the load process build payloads and connect
    go.set()
    sent = stamps.get(timeout=600)
    done.wait(timeout=120)
    proc.join(timeout=30)
    sub.disconnect()
    sub.loop_stop()
    first = sent[0][2]
    return {"received": got["n"], "msgs_per_s": got["n"] / max(1e-9, (got["last"] or time.time()) - first)}


def pipeline_phase(url: str, devices: int, per_device: int, models: Path, workdir: Path) -> dict:
    from shared.runtime.cloud import run_cloud

    total = devices * per_device
    handled_at: dict[tuple[str, int], float] = {}
    lock = threading.Lock()

    def on_risk(msg: dict) -> None:
        with lock:
            handled_at[(msg["device"], msg["source_seq"])] = time.time()

    db = workdir / "bench.db"
    args = argparse.Namespace(ca=None, cert=None, key=None)
    with run_cloud(DOMAIN, args, url, f"sqlite:///{db}", models, on_result=on_risk,
                   client_id="bench-service") as cloud:
        proc, stamps, go = _start_load(url, devices, per_device)
        time.sleep(2.0 + devices * 0.01)
        go.set()
        sent = stamps.get(timeout=600)
        deadline = time.time() + 300
        while time.time() < deadline:
            if cloud.store.count("inference") >= total and cloud.service.idle:
                break
            time.sleep(0.02)
        last_stored = time.time()
        time.sleep(0.5)
        proc.join(timeout=30)
        stored = cloud.store.count("inference")
        duplicates = cloud.service.counts["duplicates"]
        superseded = cloud.service.counts["superseded"]
        deadletters = cloud.consumer.counts.get("deadletters", 0)
    sent_at = {(d, s): t for d, s, t in sent}
    lat = np.array([1000 * (handled_at[k] - sent_at[k]) for k in handled_at if k in sent_at])
    first = sent[0][2]
    return {"stored": stored, "msgs_per_s": stored / max(1e-9, last_stored - first), "lost": total - stored,
            "duplicated": duplicates, "deadletters": deadletters, "risk_messages": len(handled_at),
            "superseded": superseded,
            "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
            "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--messages", type=int, default=100, help="messages per device")
    ap.add_argument("--mqtt", help="measure this broker instead of starting one")
    ap.add_argument("--models", type=Path, default=Path("models/healthcare"))
    ap.add_argument("--out", type=Path, default=Path("out/bench"))
    args = ap.parse_args(argv)
    from healthcare.train import ensure_trained

    ensure_trained(args.models)
    args.out.mkdir(parents=True, exist_ok=True)
    total = args.devices * args.messages
    with _broker(args.mqtt) as (url, kind), tempfile.TemporaryDirectory() as tmp:
        print(f"broker: {kind} at {url}; {args.devices} devices x {args.messages} messages = {total}", flush=True)
        raw = raw_phase(url, args.devices, args.messages)
        pipe = pipeline_phase(url, args.devices, args.messages, args.models, Path(tmp))
    result = {
        "broker": kind, "devices": args.devices, "messages": total,
        "msgs_per_s": round(pipe["msgs_per_s"], 1), "raw_msgs_per_s": round(raw["msgs_per_s"], 1),
        "ratio": round(pipe["msgs_per_s"] / raw["msgs_per_s"], 3) if raw["msgs_per_s"] else None,
        "p50_ms": None if pipe["p50_ms"] is None else round(pipe["p50_ms"], 1),
        "p99_ms": None if pipe["p99_ms"] is None else round(pipe["p99_ms"], 1),
        "lost": pipe["lost"], "duplicated": pipe["duplicated"], "raw_received": raw["received"],
        "stored": pipe["stored"], "risk_messages": pipe["risk_messages"], "superseded": pipe["superseded"],
        "deadletters": pipe["deadletters"],
    }
    (args.out / "pipeline.json").write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(k) for k in result)
    print("-" * (width + 20))
    for k, v in result.items():
        print(f"{k:<{width}}  {v!s:>16}")
    print("-" * (width + 20))
    print(f"wrote {args.out / 'pipeline.json'}")
    return 0 if result["lost"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
