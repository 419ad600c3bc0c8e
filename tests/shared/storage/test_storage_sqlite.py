"""SQLite store: idempotent writes, ordered and filtered reads, threads, and a writer killed mid-write."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from shared.storage.base import Point, Store
from shared.storage.factory import open_store
from shared.storage.sqlite import SqliteStore

REPO = Path(__file__).resolve().parents[3]


def vitals(device: str, seq: int, ts_ms: int, **fields: object) -> Point:
    return Point("vitals", device, seq, ts_ms, dict(fields or {"hr": 60.0 + seq}), {"domain": "healthcare"})


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = open_store(f"sqlite:///{tmp_path}/db/points.db")
    yield s
    s.close()


def test_open_store_creates_parent_folders_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "points.db"
    with open_store(f"sqlite:///{path}") as s:
        assert isinstance(s, SqliteStore)
        s.write([vitals("d1", 0, 1000)])
    assert path.exists()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    conn.close()


def test_relative_path_is_relative_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_store("sqlite:///rel/dir/x.db") as s:
        s.write([vitals("d1", 0, 1000)])
    assert (tmp_path / "rel" / "dir" / "x.db").exists()


def test_same_points_twice_are_stored_once(store: Store) -> None:
    points = [vitals("d1", seq, 1000 + seq) for seq in range(50)]
    assert store.write(points) == 50
    assert store.write(points) == 0
    assert store.write(points[10:20] + [vitals("d1", 50, 2000)]) == 1
    assert store.count("vitals") == 51
    assert store.counts["written"] == 51
    assert store.counts["duplicates"] == 60


def test_redelivery_with_other_content_keeps_the_first(store: Store) -> None:
    store.write([vitals("d1", 7, 1000, hr=70.0)])
    assert store.write([vitals("d1", 7, 9999, hr=99.0)]) == 0
    (only,) = store.query("vitals", "d1")
    assert (only.ts_ms, only.fields["hr"]) == (1000, 70.0)


def test_same_seq_in_other_measurement_or_device_is_distinct(store: Store) -> None:
    assert store.write([vitals("d1", 1, 1000), vitals("d2", 1, 1000), Point("risk", "d1", 1, 1000, {"p": 0.5})]) == 3


def test_round_trip_keeps_types_and_leaves_out_unmeasured(store: Store) -> None:
    p = Point(
        "inference",
        "w-01",
        3,
        1_700_000_000_123,
        {"hr_bpm": 72, "spo2": 97.5, "motion": True, "label": "AF", "temp_c": None, "bad": float("nan")},
        {"domain": "healthcare", "model": "hr@1"},
    )
    store.write([p])
    (back,) = store.query("inference")
    assert back.fields == {"hr_bpm": 72, "spo2": 97.5, "motion": True, "label": "AF"}
    assert type(back.fields["hr_bpm"]) is int and type(back.fields["motion"]) is bool
    assert back.tags == p.tags and back.key == p.key and back.ts_ms == p.ts_ms


def test_query_orders_by_time_and_filters(store: Store) -> None:
    # written out of order, across two devices
    ts = [5000, 1000, 3000, 2000, 4000]
    store.write([vitals("d1", i, t) for i, t in enumerate(ts)])
    store.write([vitals("d2", i, t + 500) for i, t in enumerate(ts)])
    d1 = store.query("vitals", "d1")
    assert [p.ts_ms for p in d1] == sorted(ts)
    assert {p.device for p in d1} == {"d1"}
    both = store.query("vitals")
    assert [p.ts_ms for p in both] == sorted(ts + [t + 500 for t in ts])
    window = store.query("vitals", start_ms=2000, end_ms=4000)
    assert [p.ts_ms for p in window] == [2000, 2500, 3000, 3500, 4000]
    assert store.query("vitals", "d2", start_ms=4600) == [p for p in both if p.device == "d2" and p.ts_ms >= 4600]
    assert store.query("nothing") == []
    assert store.devices("vitals") == ["d1", "d2"]
    assert store.count("vitals", "d2") == 5
    assert store.count("vitals", "nobody") == 0


def test_in_memory_store() -> None:
    with open_store("sqlite://:memory:") as s:
        assert s.write([vitals("d", 0, 1)]) == 1
        assert s.count("vitals") == 1


def test_concurrent_writers_from_threads(store: Store) -> None:
    n_threads, per_thread = 8, 250
    errors: list[BaseException] = []
    new_counts = [0] * n_threads

    def writer(k: int) -> None:
        try:
            for start in range(0, per_thread, 25):
                # every thread also redelivers thread 0's points: shared keys contend
                batch = [vitals(f"d{k}", s, s) for s in range(start, start + 25)]
                batch += [vitals("d0", s, s) for s in range(start, start + 5)]
                new_counts[k] += store.write(batch)
                store.query("vitals", f"d{k}", start_ms=start)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(new_counts) == n_threads * per_thread  # each key counted new exactly once
    assert store.count("vitals") == n_threads * per_thread
    assert store.devices("vitals") == sorted(f"d{k}" for k in range(n_threads))


_WRITER = r"""
import sys
from shared.storage.base import Point
from shared.storage.factory import open_store
store = open_store(sys.argv[1])
seq = 0
while True:
    batch = [Point("vitals", "dev", seq + i, 1000 + seq + i, {"hr": float(i)}) for i in range(50)]
    store.write(batch)
    seq += 50
    print(seq - 1, flush=True)  # everything up to here is committed
"""


def test_writer_killed_mid_write_loses_nothing_committed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/kill.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, url], stdout=subprocess.PIPE, env=env, text=True)
    last_committed = -1
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            last_committed = int(line)
            if last_committed >= 3000:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert last_committed >= 3000
    with open_store(url) as s:
        stored = [p.seq for p in s.query("vitals", "dev")]
        # every committed point is there, once, and nothing torn: whole batches only
        assert stored[: last_committed + 1] == list(range(last_committed + 1))
        assert stored == list(range(len(stored)))
        assert len(stored) % 50 == 0
        assert s.write([Point("vitals", "dev", len(stored), 0, {"hr": 1.0})]) == 1


def test_closed_store_refuses(tmp_path: Path) -> None:
    s = open_store(f"sqlite:///{tmp_path}/c.db")
    s.close()
    s.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        s.write([vitals("d", 0, 0)])


def test_stats_reports_points_per_measurement(store: Store) -> None:
    store.write([vitals("d", i, i) for i in range(3)] + [Point("risk", "d", 0, 0, {"p": 0.1})])
    stats = store.stats()  # type: ignore[attr-defined]
    assert stats["points"] == {"vitals": 3, "risk": 1}
    assert stats["bytes"] > 0
