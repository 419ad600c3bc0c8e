"""``tinylarge cluster config``: nats-server configurations for an N-node JetStream cluster on loopback.

For node i (1..N) it writes ``<out>/n<i>.conf`` with:

- ``server_name tl-n<i>`` (JetStream in a cluster needs a unique one), the client listener, the monitor
  (``http``), a route listener and routes to every other node (cluster ``tinylarge``);
- JetStream with its own store folder per node (``<out>/n<i>/js``) and limits on memory and file store;
- an ``mqtt {}`` listener (devices and paho clients connect unchanged; QoS 0 and 1) whose own streams
  (``$MQTT_msgs`` among them: where a QoS 1 message is stored before its PUBACK, see
  :mod:`shared.cluster`) have ``stream_replicas`` = min(3, N);
- the subject mapping of every upward stream of every registered domain but ``status``:
  ``tinylarge.<domain>.<device>.<stream>`` (MQTT topic ``tinylarge/<domain>/<device>/<stream>``) becomes
  ``tinylarge.part.<p>.<domain>.<device>.<stream>`` with ``p = partition(P, domain, device)`` (NATS's
  FNV-1a of the two tokens, modulo P): every message of one device lands on one partition, and the same
  one after any restart as long as P is unchanged. ``$MQTT.msgs.tinylarge.<domain>.<device>.<stream>``
  (a NATS-native publisher's JetStream publish into the same stream) is mapped the same way.

``cluster.json`` beside them records the layout (ports, P, replicas) that ``cluster up`` and the workers
read. TLS and per-device users (``--pki``) are not written yet: this is the plain loopback form (see the
issue's remaining items); ``--pki`` is refused with a line that says so.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from shared.cluster import MQTT_PREFIX, PART_ROOT
from shared.security.brokerconf import SPLIT_UP

LAYOUT_NAME = "cluster.json"


class ClusterConfigError(ValueError):
    """A cluster configuration that cannot be written; the message names the option."""


@dataclass(frozen=True)
class ClusterConfig:
    """N nodes on ``host``; node i (0-based) listens on ``<base>_port + i`` unless explicit ports are given."""

    out_dir: Path
    nodes: int = 3
    partitions: int = 8
    host: str = "127.0.0.1"
    client_port: int = 4222
    route_port: int = 6222
    mqtt_port: int = 1883
    http_port: int = 8222
    ports: dict[str, list[int]] = field(default_factory=dict)  #: kind -> one port per node (overrides bases)
    max_memory_store: str = "256MB"
    max_file_store: str = "4GB"
    mqtt_ack_wait_s: float = 30.0  #: QoS 1 redelivery to MQTT subscribers (devices reading their results)
    max_payload_bytes: int = 1024 * 1024  #: a signed model message plus headroom (as the Mosquitto config)

    @property
    def replicas(self) -> int:
        return min(3, self.nodes)

    def node_ports(self, kind: str) -> list[int]:
        if kind in self.ports:
            return list(self.ports[kind])
        base = {"client": self.client_port, "route": self.route_port, "mqtt": self.mqtt_port,
                "http": self.http_port}[kind]
        return [base + i for i in range(self.nodes)]


def upward_streams() -> list[str]:
    """The upward streams the domain services consume: all but ``status`` (retained, read as is by dashboards)
    and split learning's ``smashed`` (its own server reads it)."""
    from shared.domain import registry

    out: list[str] = []
    for d in registry().values():
        for name, st in d.streams.items():
            if st.direction == "up" and name not in ("status", *SPLIT_UP) and name not in out:
                out.append(name)
    return out


def mapping_lines(partitions: int) -> list[str]:
    """The ``mappings {}`` entries: each upward stream of a device onto one of ``partitions`` partitions."""
    lines = []
    for stream in upward_streams():
        target = (f"{PART_ROOT}.{{{{partition({partitions},1,2)}}}}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}"
                  f".{stream}")
        lines.append(f'  "tinylarge.*.*.{stream}": "{target}"')
        lines.append(f'  "{MQTT_PREFIX}.tinylarge.*.*.{stream}": "{MQTT_PREFIX}.{target}"')
    return lines


def _check(cfg: ClusterConfig) -> None:
    if not 1 <= cfg.nodes <= 32:
        raise ClusterConfigError(f"--nodes must be in 1..32, got {cfg.nodes}")
    if not 1 <= cfg.partitions <= 1024:
        raise ClusterConfigError(f"--partitions must be in 1..1024, got {cfg.partitions}")
    seen: set[int] = set()
    for kind in ("client", "route", "mqtt", "http"):
        ports = cfg.node_ports(kind)
        if len(ports) != cfg.nodes:
            raise ClusterConfigError(f"{kind} ports: give one per node ({cfg.nodes}), got {len(ports)}")
        for port in ports:
            if not 1 <= port <= 65535:
                raise ClusterConfigError(f"{kind} port {port} is not in 1..65535; choose other base ports")
            if port in seen:
                raise ClusterConfigError(f"{kind} port {port} is used twice; choose base ports further apart")
            seen.add(port)


def node_conf(cfg: ClusterConfig, i: int, out: Path) -> str:
    """The configuration text of node ``i`` (0-based)."""
    h = cfg.host
    client, route, mqtt, http = (cfg.node_ports(k)[i] for k in ("client", "route", "mqtt", "http"))
    routes = [f"nats-route://{h}:{p}" for j, p in enumerate(cfg.node_ports("route")) if j != i]
    lines = [
        "# TinyLarge NATS node (generated by `tinylarge cluster config`; plain loopback form, no TLS)",
        f"server_name: tl-n{i + 1}",
        f"listen: {h}:{client}",
        f"http: {h}:{http}",
        f"max_payload: {cfg.max_payload_bytes}",
        "jetstream {",
        f'  store_dir: "{out / f"n{i + 1}" / "js"}"',
        f"  max_memory_store: {cfg.max_memory_store}",
        f"  max_file_store: {cfg.max_file_store}",
        "}",
    ]
    if cfg.nodes > 1:
        lines += ["cluster {", "  name: tinylarge", f"  listen: {h}:{route}",
                  "  routes: [", *[f"    {r}" for r in routes], "  ]", "}"]
    lines += [
        "mqtt {",
        f"  listen: {h}:{mqtt}",
        f"  stream_replicas: {cfg.replicas}",
        f'  ack_wait: "{cfg.mqtt_ack_wait_s:g}s"',
        "}",
        "mappings {",
        *mapping_lines(cfg.partitions),
        "}",
    ]
    return "\n".join(lines) + "\n"


def layout(cfg: ClusterConfig, out: Path) -> dict:
    """What ``cluster up`` and the tests need to start and reach the nodes."""
    return {"nodes": cfg.nodes, "partitions": cfg.partitions, "replicas": cfg.replicas, "host": cfg.host,
            "conf": [str(out / f"n{i + 1}.conf") for i in range(cfg.nodes)],
            "store_dirs": [str(out / f"n{i + 1}" / "js") for i in range(cfg.nodes)],
            **{f"{k}_ports": cfg.node_ports(k) for k in ("client", "route", "mqtt", "http")},
            "config": {k: v for k, v in asdict(cfg).items() if k not in ("out_dir", "ports")}}


def write_cluster_config(cfg: ClusterConfig) -> dict:
    """Write ``n<i>.conf`` for every node and ``cluster.json``; returns the layout."""
    _check(cfg)
    out = cfg.out_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for i in range(cfg.nodes):
        (out / f"n{i + 1}" / "js").mkdir(parents=True, exist_ok=True)
        (out / f"n{i + 1}.conf").write_text(node_conf(cfg, i, out))
    info = layout(cfg, out)
    tmp = out / (LAYOUT_NAME + ".tmp")
    tmp.write_text(json.dumps(info, indent=1) + "\n")
    os.replace(tmp, out / LAYOUT_NAME)
    return info


def read_layout(out_dir: str | os.PathLike[str]) -> dict:
    path = Path(out_dir) / LAYOUT_NAME
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        from shared.errors import UserError

        raise UserError(f"{path} is missing: write the cluster first (tinylarge cluster config --out "
                        f"{out_dir})") from None


def queue_url(info: dict) -> str:
    """``nats://host:port,host:port,...``: every node's client listener (what ``--queue`` takes)."""
    return "nats://" + ",".join(f"{info['host']}:{p}" for p in info["client_ports"])


def add_config_args(p: argparse.ArgumentParser) -> None:
    d = ClusterConfig(Path())
    p.add_argument("--nodes", type=int, default=d.nodes, help="NATS nodes (JetStream replicas: min(3, nodes))")
    p.add_argument("--partitions", type=int, default=d.partitions,
                   help="partitions P; a device's partition is NATS's partition(P, domain, device): keep P fixed")
    p.add_argument("--client-port", type=int, default=d.client_port, help="NATS client port of node 1 (+i)")
    p.add_argument("--route-port", type=int, default=d.route_port, help="route port of node 1 (+i)")
    p.add_argument("--mqtt-port", type=int, default=d.mqtt_port, help="MQTT port of node 1 (+i)")
    p.add_argument("--http-port", type=int, default=d.http_port, help="monitoring port of node 1 (+i)")


def config_from_args(args: argparse.Namespace, out: Path) -> ClusterConfig:
    return ClusterConfig(out_dir=out, nodes=args.nodes, partitions=args.partitions, client_port=args.client_port,
                         route_port=args.route_port, mqtt_port=args.mqtt_port, http_port=args.http_port)


def config_main(argv: Sequence[str] | None = None) -> int:
    """``tinylarge cluster config``."""
    from shared.cli import HelpFormatter
    from shared.errors import UserError

    ap = argparse.ArgumentParser(prog="tinylarge cluster config", formatter_class=HelpFormatter,
                                 description="write nats-server configurations for an N-node JetStream cluster "
                                             "on loopback, partitioned by device (plain form, no TLS yet)")
    ap.add_argument("--out", required=True, type=Path, help="output folder")
    add_config_args(ap)
    ap.add_argument("--pki", type=Path, default=None, help="TLS and per-device users: not written yet")
    ap.add_argument("--device", action="append", default=[], metavar="DOMAIN:ID", help="(with --pki; not yet)")
    args = ap.parse_args(argv)
    if args.pki is not None or args.device:
        raise UserError("cluster config: --pki/--device (TLS and per-device users) are not written yet; "
                        "write the plain loopback form without them, or use `tinylarge broker config` for a "
                        "secured single broker")
    try:
        info = write_cluster_config(config_from_args(args, args.out))
    except ClusterConfigError as exc:
        raise UserError(f"cluster config: {exc}") from None
    for conf in info["conf"]:
        print(f"wrote {conf}")
    print(f"{info['nodes']} nodes, {info['partitions']} partitions, replicas {info['replicas']}; "
          f"start each with: nats-server -c CONF; workers: --queue {queue_url(info)}")
    return 0
