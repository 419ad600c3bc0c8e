"""``tinylarge cluster up`` as a user runs it: its own process (3 NATS nodes, a throwaway PostgreSQL server, 2
scoring workers), devices as real MQTT clients on its MQTT listeners, then SIGTERM.

Checks: every PUBACKed message is in PostgreSQL exactly once, and after the stop no process with the run's
folder on its command line is left (the nodes, the workers, the PostgreSQL server and its backends).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.fixtures.mqtt import wait_for
from tests.fixtures.postgres import require_postgres
from tests.shared.cluster._fleet import Fleet

pytestmark = [pytest.mark.cluster]


def _ours(folder: Path) -> list[str]:
    ps = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True).stdout.splitlines()
    return [ln for ln in ps if str(folder) in ln and int(ln.split()[0]) != os.getpid()]


def _stored(url: str) -> Counter[tuple[str, int]]:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            rows = conn.execute("SELECT device, seq FROM points WHERE measurement = 'inference'").fetchall()
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable):
        return Counter()
    return Counter((str(d), int(s)) for d, s in rows)


def test_cluster_up_stores_every_acked_message_once_in_postgres_and_stops_everything(quick_models, tmp_path,
                                                                                    request):
    if not os.access("/usr/sbin/nats-server", os.X_OK):
        from tests._tools import require_tool

        require_tool("nats-server")
    require_postgres()
    out = (tmp_path / "run").resolve()
    request.addfinalizer(lambda: [os.kill(int(ln.split()[0]), signal.SIGKILL) for ln in _ours(out)])
    proc = subprocess.Popen([sys.executable, "-m", "shared.cli", "cluster", "up", "--domain", "healthcare",
                             "--nodes", "3", "--partitions", "4", "--workers", "2", "--models", str(quick_models),
                             "--quick", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    request.addfinalizer(lambda: proc.poll() is None and proc.kill())
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    assert wait_for(lambda: any(ln.startswith("cluster up:") for ln in lines) or proc.poll() is not None, 120, 0.2)
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    up = next(ln for ln in lines if ln.startswith("cluster up:"))
    ports = [int(p) for p in re.findall(r"mqtt://127\.0\.0\.1:(\d+)", up)]
    url = re.search(r"store (postgresql://\S+?);", up).group(1)  # type: ignore[union-attr]
    assert len(ports) == 3

    def serving() -> bool:
        logs = "".join((out / "logs" / f"w{k}.log").read_text(errors="replace")
                       for k in range(2) if (out / "logs" / f"w{k}.log").exists())
        return all(f"serves partition {p}" in logs for p in range(4))

    assert wait_for(serving, 120, 0.2), [(out / "logs" / f"w{k}.log").read_text()[-1500:] for k in range(2)]
    fleet = Fleet(ports, 8).start()
    try:
        fleet.send(3)
        assert fleet.wait_acked(30)
        assert wait_for(lambda: sum(_stored(url).values()) >= fleet.total(), 60, 0.2), _stored(url)
        have = _stored(url)
    finally:
        fleet.stop()
    published = Counter((d, s) for d, seqs in fleet.published.items() for s in seqs)
    assert have == published  # every PUBACKed message, each once, nothing else
    assert len(published) == 8 * 3
    assert _ours(out), "the run's processes should show its folder"
    assert len([ln for ln in _ours(out) if "postgres" in ln]) >= 1

    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode == 0, proc.stderr.read()[-3000:]
    assert wait_for(lambda: _ours(out) == [], 10, 0.2), _ours(out)
    time.sleep(0.5)
    assert _ours(out) == []


def test_a_sigkilled_cluster_up_leaves_nothing_running(quick_models, tmp_path, request):
    """kill -9 of ``cluster up`` itself (no handler runs): its NATS nodes and its PostgreSQL server die with it
    (PR_SET_PDEATHSIG set in each child; PostgreSQL's backends follow their postmaster)."""
    if not os.access("/usr/sbin/nats-server", os.X_OK):
        from tests._tools import require_tool

        require_tool("nats-server")
    require_postgres()
    out = (tmp_path / "run").resolve()
    request.addfinalizer(lambda: [os.kill(int(ln.split()[0]), signal.SIGKILL) for ln in _ours(out)])
    proc = subprocess.Popen([sys.executable, "-m", "shared.cli", "cluster", "up", "--domain", "healthcare",
                             "--nodes", "3", "--partitions", "2", "--workers", "0", "--models", str(quick_models),
                             "--quick", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    request.addfinalizer(lambda: proc.poll() is None and proc.kill())
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    assert wait_for(lambda: any(ln.startswith("cluster up:") for ln in lines) or proc.poll() is not None, 120, 0.2)
    assert proc.poll() is None
    assert any("postgres" in ln for ln in _ours(out)) and any("nats-server" in ln for ln in _ours(out))
    proc.kill()
    proc.wait(timeout=10)
    assert wait_for(lambda: _ours(out) == [], 15, 0.2), _ours(out)
