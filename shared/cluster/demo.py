"""``make demo-scale`` (``python -m shared.cluster.demo``): thousands of simulated devices of every domain through a
local cluster (:class:`shared.cluster.runner.LocalCluster`: 3 NATS nodes, a throwaway PostgreSQL server, n scoring
workers per domain), with a worker and a NATS node killed -9 mid-run.

The devices' messages are each domain's own (``hooks.sample_messages``: windows its tiny model scored, the way its
devices make them), given each simulated device's id, a seq counting from 0 and a timestamp one duty cycle
(``window_every_s``) apart, and published at QoS 1 with :class:`shared.transport.consumer.Publisher` over a few
MQTT connections on each of the two nodes that are not killed (each connection carries many devices,
keeps what was not acknowledged and resends it after a reconnect, as a device's spool does). Once a third of the
messages are out, one worker is killed -9; at half, a node holding a replica of ``$MQTT_msgs`` but not leading it
is killed -9 (``--kill-leader``: the leader's node), and
restarted a few seconds later; the devices' nodes may time out some stores meanwhile and drop their connections,
which reconnect and resend. The results (risk/action) and the workers' heartbeats are read on
a devices' node, and the dashboard runs beside it (``--no-dashboard`` turns it off).

The summary (printed, and ``out/demo-scale/summary.json``): published, stored (PostgreSQL rows), lost (published,
not stored), duplicated (a result delivered twice), the worst reorder within a device (how far a device's seq went
back in the order its results arrived), p50/p99 end to end (publish -> the result at the subscriber), and
messages/s per worker (its count at its last heartbeat over the time from the first publish to the heartbeat
that last saw it grow). The exit status is 1 on any loss, duplicate or reorder.
Everything it started is stopped on exit, on an exception, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

NODES, PARTITIONS = 3, 8


class _Tap:
    """The results (``tinylarge/<domain>/+/<result stream>``) and the workers' heartbeats, on one node."""

    def __init__(self, port: int, domains: list[Any]):
        from shared.transport.mqtt import MqttClient, MqttConfig

        self.lock = threading.Lock()
        self.arrived: dict[tuple[str, str, int], list[float]] = defaultdict(list)
        self.order: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.beats: dict[tuple[str, str], dict] = {}
        self.client = MqttClient(MqttConfig(url=f"mqtt://127.0.0.1:{port}", client_id=f"demo-scale-tap-{os.getpid()}",
                                            clean_session=True))
        for d in domains:
            # QoS 0: the workers' NATS publishes reach MQTT subscribers at QoS 0 anyway, and a QoS 1 subscription
            # is a JetStream consumer that a node's kill can hold up
            self.client.subscribe(f"tinylarge/{d.name}/+/{d.result_stream}", self._on_result, qos=0)
            self.client.subscribe(f"tinylarge/{d.name}/+/status", self._on_status, qos=0)

    def _on_result(self, topic: str, payload: bytes) -> None:
        now = time.time()
        _, domain, device, _ = topic.split("/")
        body = json.loads(payload)
        seq = int(body.get("source_seq", body["seq"]))
        with self.lock:
            self.arrived[(domain, device, seq)].append(now)
            self.order[(domain, device)].append(seq)

    def _on_status(self, topic: str, payload: bytes) -> None:
        _, domain, who, _ = topic.split("/")
        if not who.startswith("cluster-w") or not payload:
            return
        counts = json.loads(payload).get("counts", {})
        with self.lock:
            before = self.beats.get((domain, who), {})
            changed = before.get("changed", 0.0) if counts.get("handled") == before.get("handled") else time.time()
            self.beats[(domain, who)] = {**counts, "changed": changed}


def _templates(domains: list[Any], models: dict[str, Path]) -> dict[str, list[dict]]:
    return {d.name: d.hooks.sample_messages(models[d.name])["inference"] for d in domains}


def _message(template: dict, device: str, seq: int, ts_ms: int) -> dict:
    return {**template, "device": device, "seq": seq, "ts": ts_ms}


def _worst_reorder(order: dict[tuple[str, str], list[int]]) -> int:
    """The largest step back of a device's seq (0: every device's results came in seq order)."""
    worst = 0
    for seqs in order.values():
        top = -1
        for s in seqs:
            worst = max(worst, top - s)
            top = max(top, s)
    return worst


def _stored(url: str, domain_of: dict[str, str]) -> dict[tuple[str, str, int], int]:
    """(domain, device, seq) -> rows of the store's inference points (the key is (measurement, device, seq):
    the demo's device ids carry their domain's prefix, so they are distinct across domains)."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT device, seq, count(*) FROM points WHERE measurement = 'inference' "
                            "GROUP BY 1, 2").fetchall()
    return {(domain_of.get(str(dev), "?"), str(dev), int(s)): int(n) for dev, s, n in rows}


def _stream_leader(cluster: Any) -> int:
    import asyncio

    from shared.cluster import MQTT_STREAM

    async def ask() -> str:
        import nats

        nc = await nats.connect(servers=cluster.queue.removeprefix("nats://").split(","), connect_timeout=5)
        try:
            return (await nc.jetstream().stream_info(MQTT_STREAM)).cluster.leader
        finally:
            await nc.close()

    return int(asyncio.run(ask()).removeprefix("tl-n")) - 1


def _serving(cluster: Any, domain: str, workers: int) -> bool:
    logs = "".join(cluster.log(f"{domain}-w{k}") for k in range(workers))
    return all(f"serves partition {p}" in logs for p in range(PARTITIONS))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from shared.cluster.cli import start_postgres
    from shared.cluster.runner import LocalCluster
    from shared.dashboard.demo import beside_demo
    from shared.domain import get, names
    from shared.runtime.app import require_models
    from shared.transport.consumer import Publisher
    from shared.transport.mqtt import MqttClient, MqttConfig

    domains = [get(n) for n in (args.domains or names())]
    models = {d.name: (args.models / d.name if args.models else d.models_dir) for d in domains}
    for d in domains:  # quick models where none are trained (announced), full ones used where they are
        require_models(d.name, models[d.name], True)
        d.hooks.ensure_trained(models[d.name], quick=True)
    templates = _templates(domains, models)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    per_domain = max(1, args.devices // len(domains))
    devices = [(d, f"{d.name[:3]}{i:05d}") for d in domains for i in range(per_domain)]
    domain_of = {device: d.name for d, device in devices}
    total = len(devices) * args.messages
    print(f"demo-scale: {len(devices)} devices ({per_domain} per domain: {', '.join(d.name for d in domains)}) x "
          f"{args.messages} messages = {total}; {NODES} NATS nodes, {PARTITIONS} partitions, {args.workers} "
          "workers per domain, PostgreSQL", flush=True)
    cluster = LocalCluster(out / "cluster", nodes=NODES, partitions=PARTITIONS, ack_wait_s=4.0, lease_s=3.0)
    pg = None
    clients: list[Any] = []
    tap = None
    try:
        pg, store = start_postgres(cluster.workdir)
        cluster.start()
        cluster.init()
        for d in domains:
            for k in range(args.workers):
                cluster.start_worker(d.name, k, args.workers, store, models[d.name], quick=True,
                                     name=f"{d.name}-w{k}")
        deadline = time.monotonic() + 300
        while not all(_serving(cluster, d.name, args.workers) for d in domains):
            dead = [n for n in cluster.workers if cluster.procs[n].poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"workers did not start ({dead or 'timeout'}): "
                                   + " | ".join(cluster.log(n)[-600:] for n in sorted(cluster.workers)))
            time.sleep(0.3)
        leader = _stream_leader(cluster)
        victim_node = leader if args.kill_leader else (leader + 1) % NODES
        others = [p for i, p in enumerate(cluster.mqtt_ports) if i != victim_node]  # the devices' nodes
        tap = _Tap(others[0], domains)
        tap.client.start()
        time.sleep(0.5)
        with beside_demo(args, f"mqtt://127.0.0.1:{others[-1]}", store) as dash:
            clients = [MqttClient(MqttConfig(url=f"mqtt://127.0.0.1:{others[i % len(others)]}",
                                             client_id=f"demo-scale-c{i}-{os.getpid()}", clean_session=False,
                                             reconnect_max_s=1.0))
                       for i in range(args.connections * len(others))]
            for c in clients:
                c.start()
            pubs = [Publisher(c) for c in clients]
            t0_ms = int(time.time() * 1000) - 60_000
            sent: dict[tuple[str, str, int], float] = {}
            events: list[str] = []
            victim = f"{domains[0].name}-w{args.workers - 1}"
            kill_worker_at, kill_node_at = total // 3, total // 2
            node_back_at: float | None = None
            start = time.time()
            n = 0
            for seq in range(args.messages):
                for i, (d, device) in enumerate(devices):
                    tmpl = templates[d.name][(i + seq) % len(templates[d.name])]
                    ts = t0_ms - int((args.messages - seq) * d.window_every_s * 1000)
                    sent[(d.name, device, seq)] = time.time()
                    if not pubs[i % len(pubs)].publish_msg(d.name, device, "inference",
                                                           _message(tmpl, device, seq, ts), timeout_s=120):
                        raise RuntimeError(f"{d.name}/{device} seq {seq}: the client's queue stayed full")
                    n += 1
                    if n == kill_worker_at and args.workers > 1:
                        cluster.kill(victim)
                        events.append(f"{time.time() - start:.1f} s: kill -9 worker {victim}")
                        print(f"demo-scale: {events[-1]}", flush=True)
                    if n == kill_node_at:
                        cluster.kill(f"n{victim_node + 1}")
                        node_back_at = time.monotonic() + args.node_down_s
                        what = "the $MQTT_msgs stream leader" if args.kill_leader else "a $MQTT_msgs replica"
                        events.append(f"{time.time() - start:.1f} s: kill -9 NATS node n{victim_node + 1} ({what})")
                        print(f"demo-scale: {events[-1]}", flush=True)
                    if node_back_at is not None and time.monotonic() >= node_back_at:
                        cluster.start_node(victim_node)
                        node_back_at = None
                        events.append(f"{time.time() - start:.1f} s: NATS node n{victim_node + 1} restarted")
                        print(f"demo-scale: {events[-1]}", flush=True)
            if node_back_at is not None:
                time.sleep(max(0.0, node_back_at - time.monotonic()))
                cluster.start_node(victim_node)
                events.append(f"{time.time() - start:.1f} s: NATS node n{victim_node + 1} restarted")
                print(f"demo-scale: {events[-1]}", flush=True)
            published_s = time.time() - start
            print(f"demo-scale: {total} published in {published_s:.1f} s; waiting for every PUBACK and row ...",
                  flush=True)
            acked = all(c.wait_all_acked(180) for c in clients)
            deadline = time.monotonic() + args.settle_s
            have = _stored(store, domain_of)
            while len(have) < total and time.monotonic() < deadline:
                time.sleep(0.5)
                have = _stored(store, domain_of)
            stored_s = time.time() - start
            wait = time.monotonic() + 10
            while time.monotonic() < wait and len(tap.arrived) < total:
                time.sleep(0.2)
            time.sleep(1.5)  # one more heartbeat: the workers' final counts
            dashboard = None
            if dash is not None:
                st = dash.bridge.state.view(0)["domains"]
                dashboard = {name: {i: s["worker"] for i, s in dom["stages"].items() if "worker" in s}
                             for name, dom in st.items()}
        with tap.lock:
            lat = sorted(1000 * (min(ts) - sent[k]) for k, ts in tap.arrived.items() if k in sent)
            duplicated = sum(len(ts) - 1 for ts in tap.arrived.values())
            reorder = _worst_reorder(tap.order)
            results = len(tap.arrived)
            beats = dict(tap.beats)
    finally:
        for c in clients:
            c.stop()
        if tap is not None:
            tap.client.stop()
        cluster.close()
        if pg is not None:
            pg.cleanup()
    lost = sorted(set(sent) - set(have))
    def rate(b: dict) -> float:  # over the publish start -> the heartbeat that last saw its count grow
        return round(b.get("handled", 0) / max(1.0, b.get("changed", 0.0) - start), 1)

    workers = {f"{d}/{w}": {"handled": b.get("handled", 0), "msgs_per_s": rate(b),
                            "partitions": sorted(int(k[1:]) for k in b if k[:1] == "p" and k[1:].isdigit()),
                            "takeovers": b.get("takeovers", 0)} for (d, w), b in sorted(beats.items())}

    def pct(q: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(q / 100 * len(lat)))], 1) if lat else None

    return {"devices": len(devices), "domains": [d.name for d in domains], "messages_per_device": args.messages,
            "nodes": NODES, "partitions": PARTITIONS, "workers_per_domain": args.workers,
            "published": total, "acked": acked, "stored": sum(1 for k in sent if k in have), "lost": len(lost),
            "lost_examples": [list(k) for k in lost[:5]], "stored_twice": sum(1 for v in have.values() if v > 1),
            "duplicated": duplicated, "worst_reorder": reorder, "results": results,
            "p50_ms": pct(50), "p99_ms": pct(99), "published_s": round(published_s, 1),
            "stored_s": round(stored_s, 1), "msgs_per_s": round(total / stored_s, 1), "events": events,
            "workers": workers, "dashboard_workers": dashboard, "loadavg_1m": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    from shared.dashboard.demo import add_dashboard_args

    ap = argparse.ArgumentParser(prog="python -m shared.cluster.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CI's short run: 400 devices x 2 messages")
    ap.add_argument("--devices", type=int, default=None, help="devices over all domains (default 2,000)")
    ap.add_argument("--messages", type=int, default=None, help="messages per device (default 3; --quick 2)")
    ap.add_argument("--workers", type=int, default=2, help="scoring workers per domain (one is killed: >= 2)")
    ap.add_argument("--connections", type=int, default=2, help="MQTT connections per node carrying the devices")
    ap.add_argument("--domains", nargs="*", default=None, help="default: every registered domain")
    ap.add_argument("--models", type=Path, default=None, help="folder of <domain>/ models (default: each domain's)")
    ap.add_argument("--kill-leader", action="store_true", help="kill the $MQTT_msgs stream leader's node instead of "
                    "a follower's")
    ap.add_argument("--node-down-s", type=float, default=5.0, help="how long the killed NATS node stays down")
    ap.add_argument("--settle-s", type=float, default=180.0, help="longest wait for the last rows")
    ap.add_argument("--out", type=Path, default=Path("out/demo-scale"))
    add_dashboard_args(ap)
    args = ap.parse_args(argv)
    args.devices = args.devices or (400 if args.quick else 2000)
    args.messages = args.messages or (2 if args.quick else 3)
    if args.workers < 2 or args.devices < 1 or args.messages < 1:
        from shared.errors import UserError

        raise UserError("demo-scale: --workers must be at least 2 (one is killed), --devices and --messages at "
                        "least 1")

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        s = run(args)
    except KeyboardInterrupt:
        print("demo-scale: stopped; everything it started is stopped", file=sys.stderr)
        return 130
    (args.out / "summary.json").write_text(json.dumps(s, indent=2) + "\n")
    print(f"demo-scale: {s['devices']} devices, {s['published']} published, {s['stored']} stored, lost {s['lost']}, "
          f"duplicated {s['duplicated']}, worst reorder {s['worst_reorder']}, p50 {s['p50_ms']} ms, p99 "
          f"{s['p99_ms']} ms, {s['msgs_per_s']} msgs/s published -> stored (load {s['loadavg_1m']:.1f})")
    for name, w in s["workers"].items():
        print(f"  {name}: {w['handled']} handled, {w['msgs_per_s']} msgs/s, partitions {w['partitions']}, "
              f"takeovers {w['takeovers']}")
    for e in s["events"]:
        print(f"  event: {e}")
    print(f"wrote {args.out / 'summary.json'}")
    bad = s["lost"] or s["duplicated"] or s["worst_reorder"] or s["stored_twice"] or not s["acked"]
    if bad:
        print(f"FAIL: lost {s['lost']} {s['lost_examples']}, duplicated {s['duplicated']}, worst reorder "
              f"{s['worst_reorder']}, stored twice {s['stored_twice']}, all acked {s['acked']}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    from shared.errors import UserError

    try:
        raise SystemExit(main())
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
