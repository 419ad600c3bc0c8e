"""``tinylarge cluster config|init|up``: the NATS JetStream cluster of the scale-out path (:mod:`shared.cluster`)."""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

USAGE = """usage: tinylarge cluster {config,init,up} ...

  config   write nats-server configurations for N nodes on loopback, partitioned by device
  init     create the partition consumers, lease bucket and layout on a running cluster (idempotent)
  up       for demos and tests: a local N-node cluster, a throwaway PostgreSQL store and workers; Ctrl-C stops
           everything
"""


def cluster_main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    verb, rest = argv[0], argv[1:]
    if verb == "config":
        from shared.cluster.config import config_main

        return config_main(rest)
    if verb == "init":
        return init_main(rest)
    if verb == "up":
        return up_main(rest)
    print(f"tinylarge cluster: unknown verb {verb!r}; expected config, init or up", file=sys.stderr)
    return 2


def init_main(argv: Sequence[str]) -> int:
    from shared.cli import HelpFormatter
    from shared.cluster._js import ensure_partitions
    from shared.cluster.worker import connect
    from shared.errors import UserError

    ap = argparse.ArgumentParser(prog="tinylarge cluster init", formatter_class=HelpFormatter,
                                 description="create the per-partition consumers on $MQTT_msgs, the lease bucket "
                                             "and the layout (idempotent; before any device publishes)")
    ap.add_argument("--queue", required=True, help="nats://host:port[,host:port]")
    ap.add_argument("--partitions", type=int, required=True, help="P, as in `cluster config` (never change it)")
    ap.add_argument("--replicas", type=int, default=3, help="consumer and bucket replicas (min(3, nodes))")
    ap.add_argument("--mqtt", default=None, metavar="HOST:PORT", help="an MQTT listener of the cluster (to make "
                    "NATS create its MQTT streams when no client connected yet)")
    ap.add_argument("--ack-wait-s", type=float, default=30.0, help="redelivery time of an unacknowledged batch")
    ap.add_argument("--lease-s", type=float, default=6.0, help="partition lease TTL (a dead worker's partitions "
                    "move after this plus ack_wait)")
    args = ap.parse_args(argv)
    mqtt = None
    if args.mqtt:
        host, _, port = args.mqtt.rpartition(":")
        if not host or not port.isdigit():
            raise UserError(f"--mqtt takes HOST:PORT, got {args.mqtt!r}")
        mqtt = (host, int(port))

    async def run() -> dict:
        nc = await connect(args.queue, "tinylarge-cluster-init")
        try:
            return await ensure_partitions(nc, args.partitions, args.replicas, args.ack_wait_s, args.lease_s, mqtt=mqtt)
        finally:
            await nc.close()

    try:
        layout = asyncio.run(run())
    except (ValueError, LookupError) as exc:
        raise UserError(f"cluster init: {exc}") from None
    print(f"cluster ready: {layout}")
    return 0


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def up_main(argv: Sequence[str]) -> int:
    from shared.cli import HelpFormatter
    from shared.cluster.runner import LocalCluster
    from shared.domain import get
    from shared.runtime.scenario import parse_duration

    ap = argparse.ArgumentParser(prog="tinylarge cluster up", formatter_class=HelpFormatter,
                                 description="FOR DEMOS AND TESTS: a local NATS JetStream cluster on loopback, a "
                                             "throwaway PostgreSQL store (or --store) and N scoring workers of one "
                                             "domain; everything stops on exit, Ctrl-C or SIGTERM")
    ap.add_argument("--nodes", type=int, default=3, help="NATS nodes")
    ap.add_argument("--partitions", type=int, default=8, help="partitions P")
    ap.add_argument("--workers", type=int, default=2, help="scoring workers (static shares k/N)")
    ap.add_argument("--domain", required=True, help="the domain the workers serve")
    ap.add_argument("--out", type=Path, default=Path("out/cluster"), help="configs, JetStream stores, logs, store")
    ap.add_argument("--store", default=None, help="store URL (default: a throwaway PostgreSQL server "
                    "of this run, removed on exit; sqlite:///PATH for SQLite)")
    ap.add_argument("--models", type=Path, default=None, help="trained models (default: the domain's)")
    ap.add_argument("--quick", action="store_true", help="if the models are missing, train quick ones first")
    ap.add_argument("--duration", default=None, help="stop after this long (30s, 10m); default: until Ctrl-C")
    args = ap.parse_args(argv)
    d = get(args.domain)
    limit_s = math.inf if args.duration is None else parse_duration(args.duration)
    models = args.models or d.models_dir
    from shared.runtime.app import require_models

    require_models(d.name, models, args.quick)
    d.hooks.ensure_trained(models, quick=args.quick)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    cluster = LocalCluster(args.out, nodes=args.nodes, partitions=args.partitions)
    pg = None
    try:
        store = args.store
        if store is None:
            print("starting a throwaway PostgreSQL server ...", file=sys.stderr, flush=True)
            pg, store = start_postgres(cluster.workdir)
        print(f"starting {args.nodes} NATS nodes ...", file=sys.stderr, flush=True)
        cluster.start()
        cluster.init()
        for k in range(args.workers):
            cluster.start_worker(d.name, k, args.workers, store, models, quick=args.quick)
        mqtt = ", ".join(f"mqtt://127.0.0.1:{p}" for p in cluster.mqtt_ports)
        print(f"cluster up: devices -> {mqtt}; workers --queue {cluster.queue}; store {store}; logs "
              f"{cluster.workdir / 'logs'}; Ctrl-C to stop", flush=True)
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping the cluster ...", file=sys.stderr, flush=True)
        cluster.close()  # the workers first: they commit and let go of the store
        if pg is not None:
            pg.cleanup()
    return 0


def start_postgres(workdir: Path) -> tuple[Any, str]:
    """A throwaway PostgreSQL server for ``cluster up`` and its store URL (database ``tinylarge``).

    Its data lives in a temporary folder (PostgreSQL refuses root, and the server's user must reach its folder),
    removed by ``cleanup()``; ``cluster_name`` carries ``workdir``, so the server and its backends show the
    run's folder on their command lines like every other process of the run.
    """
    from shared.errors import UserError
    from shared.storage.pg_local import LocalPostgres, find_pg_bin

    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise UserError("PostgreSQL is not installed (no initdb/postgres): apt-get install postgresql (Debian), "
                        "set PG_BIN to its bin folder, or pass --store sqlite:///PATH")
    from shared.cluster.runner import _die_with_parent

    # PR_SET_PDEATHSIG: a SIGKILLed `cluster up` (no handler runs) takes its server along; the backends follow it
    server = LocalPostgres(bin_dir, settings={"cluster_name": f"tinylarge-cluster-up:{workdir}"},
                           preexec_fn=_die_with_parent())
    try:
        server.start()
        return server, server.create_database("tinylarge")
    except BaseException:
        server.cleanup()
        raise
