"""Scale-out benchmark: the healthcare cloud on a NATS JetStream cluster (``tinylarge cluster config/up``'s layout).

For each configuration (1, 2 and 4 scoring workers on 1 and 3 NATS nodes) it starts the nodes with
:class:`shared.cluster.runner.LocalCluster` (the configuration ``tinylarge cluster config`` writes), a throwaway
PostgreSQL server (one database per configuration) and ``tinylarge serve healthcare --queue ... --worker k/n``
processes; devices are real MQTT clients (paho, one per device) publishing QoS 1 to the cluster's MQTT
listeners, round robin over the nodes, as fast as the cluster acknowledges. It measures

- messages/s: published -> stored in PostgreSQL (the first publish to the last row);
- messages/s per core used: messages over the CPU seconds of every NATS node, worker and PostgreSQL process
  from the first publish to the last result (cores used: those CPU seconds over the publish -> stored time);
- end to end p50/p99: publish -> the worker's risk message back at an MQTT subscriber;
- lost (PUBACKed, not stored), duplicated (a risk message twice), reordered (a backward seq within a device
  among the results): all must be 0, the exit status is 1 otherwise;
- CPU microseconds per message by stage, from each process's /proc clocks: the NATS servers (MQTT, JetStream
  replication, delivery), the workers (decode, validation, history, scoring and result publish, one
  process), the store (PostgreSQL server and backends).

The machine's load average is recorded beside the figures (the machine is shared). Two cores cannot show a
speed-up from more workers: the figures to read are the costs per message (docs/scale.md's capacity model).

    python -m bench.scale [--quick] [--quick-models] [--devices 40] [--messages 50] [--models models/healthcare]

Writes ``out/bench/scale.json`` (``--quick``: ``scale-quick.json``, fewer configurations and messages) and a plot.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

DOMAIN = "healthcare"
FULL = [(1, 1), (1, 2), (1, 4), (3, 1), (3, 2), (3, 4)]  #: (nodes, workers)
QUICK = [(1, 1), (3, 2)]
PARTITIONS = 8


def _cpu(pids: dict[str, list[int]]) -> dict[int, tuple[str, float]]:
    import psutil

    out: dict[int, tuple[str, float]] = {}
    for group, roots in pids.items():
        for pid in roots:
            try:
                proc = psutil.Process(pid)
                for p in [proc, *proc.children(recursive=True)]:
                    t = p.cpu_times()
                    out[p.pid] = (group, t.user + t.system)
            except psutil.Error:
                continue
    return out


def _cpu_delta(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for pid, (group, t) in after.items():
        out[group] += t - before.get(pid, (group, 0.0))[1]
    return dict(out)


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _last_state(log: str, partition: int) -> str | None:
    """The worker's last word on ``partition`` in its log: serves, took, released or lost (None: never)."""
    last = None
    for line in log.splitlines():
        words = line.split()
        if len(words) >= 2 and words[-2:] == ["partition", str(partition)]:
            last = words[-3] if words[-3] != "over" else "took"
    return last


def _steady(cluster: Any, workers: int) -> bool:
    """Each worker serves its static share (p % n == k) and no other holds it: no takeover or handback
    under way when the load starts (a handback waits for the batch in flight; measured apart, not here)."""
    logs = [cluster.log(f"w{k}") for k in range(workers)]
    for p in range(PARTITIONS):
        for k, log in enumerate(logs):
            state = _last_state(log, p)
            if (k == p % workers) != (state in ("serves", "took")):
                return False
    return True


def run_config(nodes: int, workers: int, devices: int, per_device: int, models: Path, quick: bool, pg: Any,
               workdir: Path) -> dict[str, Any]:
    import paho.mqtt.client as paho
    import psycopg
    from paho.mqtt.enums import CallbackAPIVersion

    from bench.pipeline import _payloads
    from shared.cluster.runner import LocalCluster

    url = pg.create_database(f"scale_{nodes}n_{workers}w")
    with LocalCluster(workdir / f"{nodes}n{workers}w", nodes=nodes, partitions=PARTITIONS) as cluster:
        cluster.start()
        cluster.init()
        for k in range(workers):
            cluster.start_worker(DOMAIN, k, workers, url, models, quick=quick)
        deadline = time.monotonic() + 240
        while not _steady(cluster, workers):
            if time.monotonic() > deadline:
                raise TimeoutError("workers did not take their partitions: "
                                   + " | ".join(cluster.log(f"w{k}")[-800:] for k in range(workers)))
            time.sleep(0.2)
        ports = cluster.mqtt_ports
        lock = threading.Lock()
        arrived: dict[tuple[str, int], list[float]] = defaultdict(list)
        order: dict[str, list[int]] = defaultdict(list)

        def on_result(client: Any, userdata: Any, msg: Any) -> None:
            now = time.time()
            body = json.loads(msg.payload)
            with lock:
                arrived[(body["device"], int(body["seq"]))].append(now)
                order[body["device"]].append(int(body["seq"]))

        sub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"scale-results-{nodes}-{workers}",
                          clean_session=True, protocol=paho.MQTTv311)
        sub.on_message = on_result
        sub.connect("127.0.0.1", ports[0])
        sub.subscribe(f"tinylarge/{DOMAIN}/+/risk", qos=1)
        sub.loop_start()
        rng = np.random.default_rng(1)
        t0_ms = int(time.time() * 1000) - per_device * 300_000 - 60_000
        ids = [f"s{nodes}{workers}d{i:04d}" for i in range(devices)]
        data = {d: _payloads(d, per_device, t0_ms, rng) for d in ids}
        clients = []
        for i, d in enumerate(ids):
            c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"scale-{d}", clean_session=True,
                            protocol=paho.MQTTv311)
            c.max_inflight_messages_set(64)
            c.connect("127.0.0.1", ports[i % len(ports)])
            c.loop_start()
            clients.append(c)
        time.sleep(1.0)
        pids = {"nats": [p.pid for n, p in cluster.procs.items() if n.startswith("n")],
                "workers": [p.pid for n, p in cluster.procs.items() if n.startswith("w")],
                "store": [pg.proc.pid]}
        total = devices * per_device
        cpu0 = _cpu(pids)
        sent: dict[tuple[str, int], float] = {}
        infos = []
        start = time.time()
        for seq in range(per_device):
            for d, c in zip(ids, clients, strict=True):
                sent[(d, seq)] = time.time()
                infos.append(c.publish(f"tinylarge/{DOMAIN}/{d}/inference", data[d][seq], qos=1))
        for info in infos:
            info.wait_for_publish(timeout=120)
        acked = sum(1 for info in infos if info.is_published())
        stored: set[tuple[str, int]] = set()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with psycopg.connect(url) as conn:
                stored = {(str(d), int(s)) for d, s in conn.execute(
                    "SELECT device, seq FROM points WHERE measurement = 'inference'").fetchall()}
            if len(stored) >= total:
                break
            time.sleep(0.1)
        end = time.time()
        wait_results = time.monotonic() + 15
        while time.monotonic() < wait_results and len(arrived) < total:
            time.sleep(0.1)
        cpu = _cpu_delta(cpu0, _cpu(pids))  # after the results: scoring follows the store's commit
        for c in [*clients, sub]:
            c.disconnect()
            c.loop_stop()
    wall = end - start
    with lock:
        lat = [1000 * (min(ts) - sent[k]) for k, ts in arrived.items() if k in sent]
        dup = sum(len(ts) - 1 for ts in arrived.values())
        reordered = sum(1 for seqs in order.values() for a, b in zip(seqs, seqs[1:], strict=False) if b < a)
        results = len(arrived)
    cpu_total = sum(cpu.values())
    return {"nodes": nodes, "workers": workers, "partitions": PARTITIONS, "devices": devices, "messages": total,
            "acked": acked, "stored": len(stored & set(sent)), "lost": len(set(sent) - stored),
            "duplicated": dup, "reordered": reordered, "results": results,
            "msgs_per_s": total / wall, "cores_used": cpu_total / wall,
            "msgs_per_s_per_core": total / cpu_total if cpu_total else None,
            "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99),
            "cpu_us_per_msg": {k: 1e6 * v / total for k, v in sorted(cpu.items())},
            "cpu_us_per_msg_total": 1e6 * cpu_total / total}


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for nodes in sorted({r["nodes"] for r in rows}):
        rs = [r for r in rows if r["nodes"] == nodes]
        a.plot([r["workers"] for r in rs], [r["msgs_per_s"] for r in rs], "o-", label=f"{nodes} NATS node(s)")
    a.set_xlabel("scoring workers")
    a.set_ylabel("messages/s (published -> stored)")
    a.legend()
    labels = [f"{r['nodes']}n/{r['workers']}w" for r in rows]
    bottom = np.zeros(len(rows))
    for stage in ("nats", "workers", "store"):
        vals = np.array([r["cpu_us_per_msg"].get(stage, 0.0) for r in rows])
        b.bar(labels, vals, bottom=bottom, label=stage)
        bottom += vals
    b.set_ylabel("CPU µs per message")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CI's short run: 2 configurations, few messages; "
                    "writes scale-quick.json; fails on any loss, duplicate or reorder like every run")
    ap.add_argument("--devices", type=int, default=None, help="devices (default 40; --quick 8)")
    ap.add_argument("--messages", type=int, default=None, help="messages per device (default 50; --quick 10)")
    ap.add_argument("--models", type=Path, default=Path("models/healthcare"))
    ap.add_argument("--quick-models", action="store_true", help="every configuration, with quick models (the "
                    "cost of the quick transformer, not the full one's; recorded in the JSON)")
    ap.add_argument("--out", type=Path, default=Path("out/bench"))
    args = ap.parse_args(argv)
    from healthcare.train import ensure_trained
    from shared.cluster.cli import start_postgres
    from shared.domain import registry

    devices = args.devices or (8 if args.quick else 40)
    per_device = args.messages or (10 if args.quick else 50)
    quick_models = args.quick or args.quick_models
    ensure_trained(args.models, quick=quick_models)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tinylarge-scale-") as tmp:
        pg, _ = start_postgres(Path(tmp))
        try:
            for nodes, workers in QUICK if args.quick else FULL:
                print(f"{nodes} node(s), {workers} worker(s): {devices} devices x {per_device} messages ...",
                      flush=True)
                r = run_config(nodes, workers, devices, per_device, args.models, quick_models, pg, Path(tmp))
                r["loadavg_1m"] = os.getloadavg()[0]
                rows.append(r)
                print(f"  {r['msgs_per_s']:.0f} msgs/s, {r['cores_used']:.2f} cores, p50 {r['p50_ms']} ms, "
                      f"p99 {r['p99_ms']} ms, CPU µs/msg {r['cpu_us_per_msg']}; lost {r['lost']} duplicated "
                      f"{r['duplicated']} reordered {r['reordered']}; load {r['loadavg_1m']:.1f}", flush=True)
        finally:
            pg.cleanup()
    name = "scale-quick" if args.quick else "scale"
    result = {"domain": DOMAIN, "quick_run": args.quick, "quick_models": quick_models, "cpus": os.cpu_count(),
              "loadavg": list(os.getloadavg()),
              "window_every_s": {d.name: d.window_every_s for d in registry().values()},  # the capacity model's
              "configurations": rows, "plot": str(args.out / f"{name}.png")}
    plot(rows, args.out / f"{name}.png")
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    bad = [r for r in rows if r["lost"] or r["duplicated"] or r["reordered"] or r["stored"] != r["messages"]]
    for r in bad:
        print(f"FAIL {r['nodes']}n/{r['workers']}w: lost {r['lost']}, duplicated {r['duplicated']}, reordered "
              f"{r['reordered']}, stored {r['stored']} of {r['messages']}", file=sys.stderr)
    print(f"wrote {args.out / f'{name}.json'}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
