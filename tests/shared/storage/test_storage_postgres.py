"""PostgreSQL store on a real server: the Store contract SQLite passes, writer processes at once, a server
restarted or crashed under a writer, and the errors a user sees at open time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from shared.errors import UserError
from shared.storage.base import Point, Store
from shared.storage.factory import open_store
from shared.storage.postgres import PostgresStore

# the contract tests SqliteStore passes, collected again here over this module's `store` (PostgreSQL)
from tests.shared.storage.test_storage_sqlite import (  # noqa: F401 - collected by pytest
    test_concurrent_writers_from_threads,
    test_query_orders_by_time_and_filters,
    test_redelivery_with_other_content_keeps_the_first,
    test_round_trip_keeps_types_and_leaves_out_unmeasured,
    test_same_points_twice_are_stored_once,
    test_same_seq_in_other_measurement_or_device_is_distinct,
    test_stats_reports_points_per_measurement,
    vitals,
)

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[3]
SECRET = "Pw-not-for-logs-4e2b"


@pytest.fixture
def store(postgres_url: str) -> Store:
    s = open_store(postgres_url)
    yield s
    s.close()


def test_open_store_makes_the_table_with_its_key_and_history_index(postgres_url: str) -> None:
    with open_store(postgres_url) as s:
        assert isinstance(s, PostgresStore)
        conn = s._connection()  # noqa: SLF001 - looking at the schema the store made
        key = conn.execute("SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'points'::regclass "
                           "AND indisprimary").fetchone()[0]
        indexes = {r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'points'")}
    assert key.endswith("(measurement, device, seq)")
    assert any(d.endswith("(measurement, device, ts_ms)") for d in indexes)
    with open_store(postgres_url) as again:  # a second open finds the table and keeps its rows
        assert again.write([vitals("d", 0, 0)]) == 1
    with open_store(postgres_url) as third:
        assert third.count("vitals") == 1


def test_conflict_tells_a_redelivery_from_another_point_under_the_key(store: Store) -> None:
    first = Point("inference", "w1", 5, 1_000, {"hr": 1e300, "spo2": 97.25, "n": 3, "ok": True, "x": None})
    assert store.write([first]) == 1
    same = Point("inference", "w1", 5, 1_000, {"hr": 1e300, "spo2": 97.25, "n": 3, "ok": True})
    assert store.write([same]) == 0 and store.conflict(same) is None  # floats and types read back exactly
    for other in (Point("inference", "w1", 5, 1_001, same.fields), Point("inference", "w1", 5, 1_000, {"hr": 2.0}),
                  Point("inference", "w1", 5, 1_000, {**same.fields, "spo2": 97.250001})):
        assert store.write([other]) == 0
        assert store.conflict(other) == "stored with ts 1000 and other content"
    assert store.get("inference", "w1", 5) == Point("inference", "w1", 5, 1_000, same.fields)
    assert store.get("inference", "w1", 6) is None


def test_a_batch_with_a_key_twice_keeps_the_first(store: Store) -> None:
    assert store.write([vitals("d", 1, 10, hr=1.0), vitals("d", 0, 5), vitals("d", 1, 99, hr=2.0)]) == 2
    assert [(p.seq, p.ts_ms, p.fields) for p in store.query("vitals", "d")] == [(0, 5, {"hr": 60.0}),
                                                                               (1, 10, {"hr": 1.0})]


_WORKER = r"""
import json, random, sys, time
from pathlib import Path
from shared.storage.base import Point
from shared.storage.factory import open_store
url, k, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
liar = k == 3  # writes other content under every tenth key
keys = [(f"d{d}", s) for d in range(8) for s in range(250) if not liar or s % 10 == 0]
random.Random(k).shuffle(keys)
store = open_store(url)
while not go.exists():
    time.sleep(0.01)
new, conflicts = 0, []
for i in range(0, len(keys), 50):
    batch = [Point("vitals", d, s, 1000 * s, {"v": -1.0 if liar else float(s)}) for d, s in keys[i:i + 50]]
    got = store.write(batch)
    new += got
    if got < len(batch):
        conflicts += [[p.device, p.seq] for p in batch if store.conflict(p) is not None]
print(json.dumps({"new": new, "conflicts": conflicts, "counts": store.counts}))
store.close()
"""


def test_writer_processes_at_once_store_each_key_once_and_report_every_conflict(postgres_url: str,
                                                                                 tmp_path: Path) -> None:
    """Four processes write 2,000 keys in shuffled, overlapping batches; one of them writes other content under
    200 of the keys. Each key is stored once and counted new by one writer; every writer whose point differs
    from the stored one is told so by conflict(), and no other."""
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, postgres_url, str(k), str(go)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for k in range(4)]
    time.sleep(1.0)  # let them import and connect, then start them together
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out))
    with open_store(postgres_url) as s:
        stored = {(p.device, p.seq): p.fields["v"] for p in s.query("vitals")}
        assert len(stored) == s.count("vitals") == 8 * 250
        assert s.devices("vitals") == [f"d{d}" for d in range(8)]
        for d in range(8):  # a device's history by time is its seqs in order, each once
            assert [p.seq for p in s.query("vitals", f"d{d}")] == list(range(250))
    assert sum(r["new"] for r in results) == 8 * 250
    assert all(r["counts"]["errors"] == 0 for r in results)
    for k, r in enumerate(results):
        mine = -1.0 if k == 3 else None
        expected = {key for key, v in stored.items() if (mine is not None and key[1] % 10 == 0 and v != mine)
                    or (mine is None and v != float(key[1]))}
        assert {tuple(c) for c in r["conflicts"]} == expected, f"writer {k}"
    lied = {key for key, v in stored.items() if v == -1.0}
    assert 0 < len(lied) + len(results[3]["conflicts"]) == 200  # each liar key: stored its way, or refused


def test_a_server_restart_under_a_writer_loses_nothing_it_acknowledged(postgres_factory) -> None:
    """The server stops (fast shutdown) and comes back 1 s later while a thread writes: the writes in between
    wait and go through on a new connection; nothing acknowledged is missing, nothing is stored twice."""
    server = postgres_factory()
    url = server.create_database("restart")
    acked: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    with open_store(url) as s:
        def writer() -> None:
            seq = 0
            while not stop.is_set():
                try:
                    s.write([vitals("dev", seq + i, seq + i) for i in range(20)])
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)
                    return
                acked.extend(range(seq, seq + 20))
                seq += 20

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            assert _wait(lambda: len(acked) >= 200)
            server.stop()
            before = len(acked)
            time.sleep(1.0)
            assert len(acked) - before <= 20  # writes did not go anywhere while it was down
            server.start()
            assert _wait(lambda: len(acked) >= before + 200)
        finally:
            stop.set()
            thread.join(timeout=60)
        assert not errors, errors
        assert s.counts["retries"] >= 1
        stored = [p.seq for p in s.query("vitals", "dev")]
    assert stored == sorted(set(stored))
    assert stored[: len(acked)] == acked == list(range(len(acked)))


_SPOOLER = r"""
import sys
from shared.storage.base import Point
from shared.storage.factory import open_store
store = open_store(sys.argv[1])
seq = 0
while True:
    store.write([Point("vitals", "dev", seq + i, seq + i, {"hr": float(i)}) for i in range(50)])
    seq += 50
    print(seq - 1, flush=True)  # everything up to here is acknowledged
"""


def test_a_server_crash_under_a_writer_process_loses_nothing_it_acknowledged(postgres_factory) -> None:
    """SIGKILL to the whole server (a crash) mid-stream; it recovers from its WAL on start; the writer process
    goes on through it; every acknowledged point is there once, and only whole batches."""
    server = postgres_factory()
    url = server.create_database("crash")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", _SPOOLER, url], stdout=subprocess.PIPE, text=True, env=env)
    last, crashes = -1, 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            last = int(line)
            if last >= 1_000 * (crashes + 1) and crashes < 2:  # twice: at 1,000 and at 2,000 points
                server.kill()
                crashes += 1
                server.start()
            if last >= 3_000:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert last >= 3_000 and crashes == 2
    with open_store(url) as s:
        stored = [p.seq for p in s.query("vitals", "dev")]
    assert stored[: last + 1] == list(range(last + 1))
    assert stored == list(range(len(stored))) and len(stored) % 50 == 0


def test_a_write_that_cannot_reach_the_server_raises_and_the_store_recovers(postgres_factory) -> None:
    server = postgres_factory()
    url = server.create_database("down")
    with open_store(url + "?retry_s=0.5") as s:
        assert s.write([vitals("d", 0, 0)]) == 1
        server.stop()
        with pytest.raises(ConnectionError, match=r"PostgreSQL store postgresql://postgres@127\.0\.0\.1:\d+/down"):
            s.write([vitals("d", 1, 1)])  # not acknowledged: the caller must not ack the message
        assert s.counts["errors"] == 1
        server.start()
        assert s.write([vitals("d", 1, 1), vitals("d", 0, 0)]) == 1
        assert [p.seq for p in s.query("vitals", "d")] == [0, 1]


def test_open_refuses_an_unreachable_server_or_a_missing_database_in_one_line(postgres_server) -> None:
    from shared.storage.pg_local import free_port

    dead = f"postgresql://tl:{SECRET}@127.0.0.1:{free_port()}/tinylarge"
    with pytest.raises(UserError) as info:
        open_store(dead)
    text = str(info.value)
    assert text.startswith(f"store postgresql://tl:***@127.0.0.1:{dead.split(':')[3]}")
    assert "Connection refused" in text and SECRET not in text and "\n" not in text
    with pytest.raises(UserError, match='database "no_such_db" does not exist'):
        open_store(postgres_server.url("no_such_db"))


def test_serve_refuses_an_unreachable_store_before_anything_starts(tmp_path: Path) -> None:
    from shared.storage.pg_local import free_port

    url = f"postgresql://tl:{SECRET}@127.0.0.1:{free_port()}/tinylarge"
    out = subprocess.run([sys.executable, "-m", "shared.cli", "serve", "healthcare", "--store", url, "--models",
                          str(tmp_path / "none"), "--duration", "1s"], capture_output=True, text=True, timeout=120,
                         cwd=REPO)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinylarge: store postgresql://tl:***@127.0.0.1:"), lines
    assert SECRET not in out.stdout + out.stderr


def _wait(predicate, timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
