"""``tinylarge cluster up``: a local NATS cluster, its store and scoring workers on loopback. For demos and
tests only: one machine gains no capacity from it; a deployment runs the nodes and workers on their own
machines from ``tinylarge cluster config`` and ``tinylarge serve DOMAIN --queue ...``.

:class:`LocalCluster` starts every process in its own process group, with ``PR_SET_PDEATHSIG`` (SIGKILL
when this process dies, even by SIGKILL) set between fork and exec, and :meth:`LocalCluster.close` stops
them all (SIGTERM, then SIGKILL after a grace period): on exit, on an exception, on Ctrl-C and on SIGTERM
(``cluster up`` turns SIGTERM into KeyboardInterrupt). Nothing is left running. ``cluster up``'s store is a
throwaway PostgreSQL server (:mod:`shared.storage.pg_local`, stopped and removed after the workers), or the
``--store`` given (``sqlite:///PATH``: one file the workers share).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.cluster.config import ClusterConfig, queue_url, write_cluster_config

NATS_SERVER = "nats-server"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def find_nats_server() -> str:
    import shutil

    for path in (shutil.which(NATS_SERVER), "/usr/sbin/nats-server", "/usr/bin/nats-server"):
        if path and os.access(path, os.X_OK):
            return path
    from shared.errors import UserError

    raise UserError("nats-server is not installed: apt-get install nats-server (Debian), or put it on PATH")


def _die_with_parent() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports nobody listens on right now."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(int(s.getsockname()[1]))
    finally:
        for s in socks:
            s.close()
    return ports


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class LocalCluster:
    """N nats-server nodes (and workers) under ``workdir``, on free loopback ports."""

    def __init__(self, workdir: Path, nodes: int = 3, partitions: int = 8, ack_wait_s: float = 30.0,
                 lease_s: float = 6.0):
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        ports = free_ports(4 * nodes)
        self.cfg = ClusterConfig(self.workdir / "nats", nodes=nodes, partitions=partitions,
                                 ports={k: ports[i * nodes:(i + 1) * nodes]
                                        for i, k in enumerate(("client", "route", "mqtt", "http"))})
        self.info = write_cluster_config(self.cfg)
        self.ack_wait_s, self.lease_s = ack_wait_s, lease_s
        self.exe = find_nats_server()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.workers: set[str] = set()  #: the names of the worker processes (stopped first)
        self._preexec = _die_with_parent()
        (self.workdir / "logs").mkdir(exist_ok=True)

    @property
    def queue(self) -> str:
        return queue_url(self.info)

    @property
    def mqtt_ports(self) -> list[int]:
        return list(self.info["mqtt_ports"])

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        old = self.procs.get(name)
        if old is not None and old.poll() is None:
            raise RuntimeError(f"{name} is running already")
        log = open(self.workdir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                                    start_new_session=True, preexec_fn=self._preexec)
        finally:
            log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.workdir / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- nodes -------------------------------------------------------------------------------------------
    def start_node(self, i: int) -> None:
        self.spawn(f"n{i + 1}", [self.exe, "-c", self.info["conf"][i]])

    def start(self, timeout_s: float = 30.0) -> None:
        for i in range(self.cfg.nodes):
            self.start_node(i)
        self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Every running node accepts clients and JetStream answers (a meta leader was elected)."""
        deadline = time.monotonic() + timeout_s
        for i, port in enumerate(self.info["client_ports"]):
            if self.procs.get(f"n{i + 1}") is None or self.procs[f"n{i + 1}"].poll() is not None:
                continue
            while not (_accepts(port) and _accepts(self.info["mqtt_ports"][i])):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"NATS node {i + 1} did not start: {self.log(f'n{i + 1}')[-2000:]}")
                time.sleep(0.1)
        asyncio.run(self._js_ready(deadline))

    async def _js_ready(self, deadline: float) -> None:
        import nats

        nc = await nats.connect(servers=self.queue.removeprefix("nats://").split(","), connect_timeout=5)
        try:
            js = nc.jetstream()
            while True:
                try:
                    await js.account_info()
                    return
                except Exception:  # noqa: BLE001 - no meta leader yet
                    if time.monotonic() > deadline:
                        raise TimeoutError("JetStream did not come up on the cluster") from None
                    await asyncio.sleep(0.25)
        finally:
            await nc.close()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)

    def init(self) -> dict:
        """Create the partition consumers, the lease bucket and the layout (idempotent)."""
        from shared.cluster._js import ensure_partitions

        async def run() -> dict:
            import nats

            nc = await nats.connect(servers=self.queue.removeprefix("nats://").split(","), connect_timeout=5)
            try:
                return await ensure_partitions(nc, self.cfg.partitions, self.cfg.replicas, self.ack_wait_s,
                                               self.lease_s, mqtt=("127.0.0.1", self.mqtt_ports[0]))
            finally:
                await nc.close()

        for attempt in range(20):
            try:
                return asyncio.run(run())
            except Exception:  # noqa: BLE001 - streams still electing leaders right after start
                if attempt == 19:
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")

    # -- workers -----------------------------------------------------------------------------------------
    def start_worker(self, domain: str, k: int, n: int, store: str, models: Path | str, quick: bool = False,
                     extra: list[str] | None = None, name: str | None = None) -> subprocess.Popen[bytes]:
        """``tinylarge serve DOMAIN --queue ... --worker k/n`` (``quick``: the models are quick ones) as process
        ``name`` (default ``w<k>``; several domains' workers need their own names, e.g. ``healthcare-w0``)."""
        argv = [sys.executable, "-m", "shared.cli", "serve", domain, "--queue", self.queue, "--worker", f"{k}/{n}",
                "--store", store, "--models", str(models), *(["--quick"] if quick else []), *(extra or [])]
        name = name or f"w{k}"
        self.workers.add(name)
        return self.spawn(name, argv)

    def close(self, grace_s: float = 5.0) -> None:
        """SIGTERM the workers (so they acknowledge their last batch and release their leases), wait for them,
        then SIGTERM every other process group; SIGKILL whatever is left after the grace period."""
        workers = [n for n in self.procs if n in self.workers]
        for group in (workers, [n for n in self.procs if n not in self.workers]):
            for name in group:
                if self.procs[name].poll() is None:
                    try:
                        os.killpg(self.procs[name].pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + grace_s
            for name in group:
                proc = self.procs[name]
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait(timeout=5)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
