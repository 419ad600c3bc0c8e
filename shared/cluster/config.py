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
read. Without ``--pki`` this is the plain loopback form (no users, no TLS: demos and tests). With ``--pki DIR
--device DOMAIN:ID ...`` every node also includes ``accounts.conf`` (the users, their permissions and the
mapping, in one account: :mod:`shared.cluster.auth`, the same rules as ``tinylarge broker config``) and serves
TLS on its client and MQTT listeners with the certificates ``tinylarge pki`` issued.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from shared.cluster import MQTT_PREFIX, PART_ROOT
from shared.security.brokerconf import SPLIT_UP, BrokerConfig, BrokerConfigError

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
    auth: BrokerConfig | None = None  #: users, permissions and TLS (--pki); None: the plain loopback form

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
    form = "users and TLS from --pki" if cfg.auth else "plain loopback form, no TLS"
    lines = [
        f"# TinyLarge NATS node (generated by `tinylarge cluster config`; {form})",
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
    if cfg.auth is not None:
        from shared.cluster.auth import ACCOUNTS_NAME, tls_lines

        lines += [f'include "{ACCOUNTS_NAME}"', *tls_lines(cfg.auth, indent="")]
    if cfg.nodes > 1:
        lines += ["cluster {", "  name: tinylarge", f"  listen: {h}:{route}",
                  "  routes: [", *[f"    {r}" for r in routes], "  ]", "}"]
    lines += [
        "mqtt {",
        f"  listen: {h}:{mqtt}",
        f"  stream_replicas: {cfg.replicas}",
        f'  ack_wait: "{cfg.mqtt_ack_wait_s:g}s"',
    ]
    if cfg.auth is not None:  # the mapping lives in the users' account (accounts.conf)
        from shared.cluster.auth import tls_lines

        return "\n".join([*lines, *tls_lines(cfg.auth), "}"]) + "\n"
    lines += ["}", "mappings {", *mapping_lines(cfg.partitions), "}"]
    return "\n".join(lines) + "\n"


def layout(cfg: ClusterConfig, out: Path) -> dict:
    """What ``cluster up`` and the tests need to start and reach the nodes."""
    return {"nodes": cfg.nodes, "partitions": cfg.partitions, "replicas": cfg.replicas, "host": cfg.host,
            "conf": [str(out / f"n{i + 1}.conf") for i in range(cfg.nodes)],
            "store_dirs": [str(out / f"n{i + 1}" / "js") for i in range(cfg.nodes)],
            **{f"{k}_ports": cfg.node_ports(k) for k in ("client", "route", "mqtt", "http")},
            "tls": cfg.auth is not None,
            "ca": str((cfg.auth.pki_dir / "ca.crt").resolve()) if cfg.auth else None,
            "config": {k: v for k, v in asdict(cfg).items() if k not in ("out_dir", "ports", "auth")}}


def write_cluster_config(cfg: ClusterConfig, env: Mapping[str, str] | None = None) -> dict:
    """Write ``n<i>.conf`` for every node and ``cluster.json`` (with ``cfg.auth``: also ``accounts.conf`` and
    ``secrets.env``, mode 0600; passwords from ``env``, default the process's); returns the layout."""
    _check(cfg)
    out = cfg.out_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if cfg.auth is not None:
        from shared.cluster.auth import write_auth

        try:
            write_auth(cfg.auth, out, cfg.partitions, os.environ if env is None else env)
        except BrokerConfigError as exc:
            raise ClusterConfigError(str(exc)) from None
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


def add_auth_args(p: argparse.ArgumentParser) -> None:
    """Users, permissions and TLS: the options of ``tinylarge broker config`` that apply to a cluster."""
    p.add_argument("--pki", type=Path, default=None, help="PKI folder (tinylarge pki init/issue): TLS and users")
    p.add_argument("--device", action="append", default=[], metavar="DOMAIN:ID",
                   help="a device and its domain, repeatable (with --pki); it publishes and reads only its own streams")
    p.add_argument("--domain", default=None, help="the domain of every --device given without one")
    p.add_argument("--cloud-user", default="cloud", help="the cloud's user (default: %(default)s)")
    p.add_argument("--service-user", action="append", default=[], metavar="NAME",
                   help="another user with the cloud's rights (one per scoring worker), repeatable")
    p.add_argument("--operator-user", action="append", default=[], metavar="NAME",
                   help="read-only operator (dashboard): every stream, status and dead letters, repeatable")
    p.add_argument("--app-user", action="append", default=[], metavar="NAME", help="reads results and status")
    p.add_argument("--ehr-user", action="append", default=[], metavar="NAME", help="writes healthcare chart")
    p.add_argument("--site-user", action="append", default=[], metavar="ROLE:NAME",
                   help="writes the streams a site role publishes (e.g. world:world-1), repeatable")
    p.add_argument("--server-cert", default="broker", help="certificate basename in --pki (%(default)s)")
    p.add_argument("--require-certificate", action="store_true", help="clients must present a CA-signed cert")


def auth_from_args(args: argparse.Namespace, out: Path) -> BrokerConfig | None:
    """The users and TLS from ``--pki``/``--device`` (None: the plain form); UserError on a half-given set."""
    from shared.errors import UserError

    if args.pki is None:
        if args.device or args.service_user or args.operator_user or args.app_user or args.site_user:
            raise UserError("cluster config: users need TLS: give --pki DIR (tinylarge pki init --dir DIR; "
                            "tinylarge pki issue broker --kind server --dir DIR) with --device")
        return None
    sites = []
    for text in args.site_user:
        role, sep, user = text.partition(":")
        if not sep or not role or not user:
            raise UserError(f"cluster config: --site-user takes ROLE:NAME (e.g. world:world-1), got {text!r}")
        sites.append((role, user))
    return BrokerConfig(pki_dir=args.pki, out_dir=out, devices=tuple(args.device), device_domain=args.domain,
                        cloud_user=args.cloud_user, service_users=tuple(args.service_user),
                        operator_users=tuple(args.operator_user), app_users=tuple(args.app_user),
                        ehr_users=tuple(args.ehr_user), site_users=tuple(sites), server_cert=args.server_cert,
                        require_certificate=args.require_certificate)


def config_from_args(args: argparse.Namespace, out: Path) -> ClusterConfig:
    auth = auth_from_args(args, out) if hasattr(args, "pki") else None
    return ClusterConfig(out_dir=out, nodes=args.nodes, partitions=args.partitions, client_port=args.client_port,
                         route_port=args.route_port, mqtt_port=args.mqtt_port, http_port=args.http_port, auth=auth)


def config_main(argv: Sequence[str] | None = None) -> int:
    """``tinylarge cluster config``."""
    from shared.cli import HelpFormatter
    from shared.errors import UserError

    ap = argparse.ArgumentParser(prog="tinylarge cluster config", formatter_class=HelpFormatter,
                                 description="write nats-server configurations for an N-node JetStream cluster "
                                             "on loopback, partitioned by device; with --pki and --device also "
                                             "users, permissions and TLS (the rules of `tinylarge broker config`)")
    ap.add_argument("--out", required=True, type=Path, help="output folder")
    add_config_args(ap)
    add_auth_args(ap)
    args = ap.parse_args(argv)
    cfg = config_from_args(args, args.out)
    try:
        info = write_cluster_config(cfg)
    except ClusterConfigError as exc:
        raise UserError(f"cluster config: {exc}") from None
    for conf in info["conf"]:
        print(f"wrote {conf}")
    if cfg.auth is not None:
        print(f"users and permissions in {info['conf'][0].rsplit('/', 1)[0]}/accounts.conf; their passwords in "
              "secrets.env (both mode 0600; not shown); TLS on the client and MQTT listeners")
    print(f"{info['nodes']} nodes, {info['partitions']} partitions, replicas {info['replicas']}; "
          f"start each with: nats-server -c CONF; workers: --queue {queue_url(info)}")
    return 0
