"""Influx store against a real VictoriaMetrics: series naming, idempotency, reads, and the spool
through an outage. (No InfluxDB 2 server is available to the suite: its Flux path is untested.)"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from shared.storage._spool import DATA_NAME
from shared.storage.base import Point, Store
from shared.storage.factory import open_store
from shared.storage.influx import InfluxStore
from tests.fixtures.influx import VictoriaMetrics

pytestmark = pytest.mark.influx

FAST = {"retry_interval_ms": 20, "max_retries": 2, "drain_interval_ms": 50, "max_retry_delay_ms": 200}
T0 = 1_700_000_000_000
REPO = Path(__file__).resolve().parents[3]


def open_vm_store(vm: VictoriaMetrics, spool: Path, **options: object) -> Store:
    return open_store(vm.store_url, spool_dir=str(spool), **{**FAST, **options})


def vitals(device: str, seq: int, **fields: object) -> Point:
    return Point(
        "vitals", device, seq, T0 + 1000 * seq + 7, dict(fields or {"hr": 60.0 + seq}), {"domain": "healthcare"}
    )


def test_field_becomes_series_measurement_underscore_field(victoria_metrics: VictoriaMetrics, tmp_path: Path) -> None:
    with open_vm_store(victoria_metrics, tmp_path / "spool") as store:
        assert store.write([vitals("w-01", 3, hr=72.5, spo2=97, motion=True, label="AF", temp_c=None)]) == 1
        store.flush()
        assert store.counts["written"] == 1
    rows = victoria_metrics.export('{__name__=~"vitals_.*",device="w-01"}')
    by_name = {row["metric"]["__name__"]: row for row in rows}
    assert set(by_name) == {"vitals_hr", "vitals_spo2", "vitals_motion", "vitals_seq"}  # None not written
    hr = by_name["vitals_hr"]
    assert hr["metric"]["device"] == "w-01"
    assert hr["metric"]["domain"] == "healthcare"
    assert hr["metric"]["str_label"] == "AF"  # string field carried as a tag
    assert hr["values"] == [72.5]
    assert hr["timestamps"] == [T0 + 3007]  # millisecond precision kept
    assert by_name["vitals_seq"]["values"] == [3]
    assert by_name["vitals_motion"]["values"] == [1]


def test_duplicates_are_exported_once(victoria_metrics: VictoriaMetrics, tmp_path: Path) -> None:
    points = [vitals("d1", seq) for seq in range(20)]
    with open_vm_store(victoria_metrics, tmp_path / "s1") as store:
        assert store.write(points) == 20
        assert store.write(points) == 0  # same process: known duplicates
        store.flush()
        assert store.counts["duplicates"] == 20
    with open_vm_store(victoria_metrics, tmp_path / "s2") as again:  # a redelivery after a restart
        assert again.write(points[:10]) == 10
        again.flush()
        assert again.counts["written"] == 10
    rows = victoria_metrics.export('{__name__="vitals_hr",device="d1"}')
    assert len(rows) == 1
    assert rows[0]["timestamps"] == [p.ts_ms for p in points]
    assert rows[0]["values"] == [p.fields["hr"] for p in points]


def test_query_count_devices_read_back(victoria_metrics: VictoriaMetrics, tmp_path: Path) -> None:
    with open_vm_store(victoria_metrics, tmp_path / "spool") as store:
        assert isinstance(store, InfluxStore)
        store.write([vitals("b", s, hr=50.0 + s, label="ok") for s in (4, 0, 2)])
        store.write([vitals("a", s, hr=80.0 + s) for s in (1, 3)])
        store.write([Point("vitals_extra", "a", 0, T0, {"hr": 1.0})])  # same prefix, other measurement
        store.flush()
        assert store.flavor == "vm"
        everything = store.query("vitals")
        assert [(p.device, p.seq) for p in everything] == [("b", 0), ("a", 1), ("b", 2), ("a", 3), ("b", 4)]
        b2 = everything[2]
        assert b2.fields == {"hr": 52.0, "label": "ok"}
        assert b2.tags == {"domain": "healthcare"}
        assert b2.ts_ms == T0 + 2007
        window = store.query("vitals", "b", start_ms=T0 + 2007, end_ms=T0 + 4007)
        assert [p.seq for p in window] == [2, 4]
        assert store.count("vitals") == 5
        assert store.count("vitals", "a") == 2
        assert store.devices("vitals") == ["a", "b"]
        assert store.count("risk") == 0


def test_outage_spools_then_delivers_each_point_once(victoria_metrics: VictoriaMetrics, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    n = 300
    with open_vm_store(victoria_metrics, spool, batch_size=50) as store:
        store.write([vitals("up", 0)])
        store.flush()
        victoria_metrics.stop()
        assert store.write([vitals("dev", s) for s in range(n)]) == n
        store.flush()
        assert store.counts["spooled"] == n
        assert store.counts["dropped"] == 0
        assert (spool / DATA_NAME).stat().st_size > 0
        store.write([vitals("dev", s) for s in range(n - 50, n + 50)])  # redelivery overlapping the outage
        store.flush()
        victoria_metrics.start()
        store.flush(timeout_s=30)
        assert store.counts["drained"] == n + 50
        assert store.stats()["spool_pending_points"] == 0  # type: ignore[attr-defined]
    assert (spool / DATA_NAME).stat().st_size == 0
    assert victoria_metrics.sample_count('{__name__="vitals_seq",device="dev"}') == n + 50
    rows = victoria_metrics.export('{__name__="vitals_seq",device="dev"}')
    assert sorted(rows[0]["values"]) == list(range(n + 50))


def test_close_while_down_keeps_the_spool_for_the_next_start(victoria_metrics: VictoriaMetrics, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    victoria_metrics.stop()
    store = open_vm_store(victoria_metrics, spool, close_timeout_s=0.5)
    store.write([vitals("late", s) for s in range(40)])
    store.close()
    assert store.counts["spooled"] == 40
    assert (spool / DATA_NAME).stat().st_size > 0
    victoria_metrics.start()
    with open_vm_store(victoria_metrics, spool) as second:  # same spool folder: drains it
        second.flush(timeout_s=30)
        assert second.counts["drained"] == 40
        assert second.count("vitals", "late") == 40
    assert (spool / DATA_NAME).stat().st_size == 0


def test_full_spool_counts_dropped_and_warns(
    victoria_metrics: VictoriaMetrics, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    victoria_metrics.stop()
    caplog.set_level(logging.WARNING, logger="shared.storage.influx")
    with open_vm_store(victoria_metrics, tmp_path / "spool", spool_max_bytes=2000, batch_size=20) as store:
        store.write([vitals("d", s) for s in range(100)])
        store.flush()
        counts = store.counts
        assert counts["dropped"] > 0
        assert counts["spooled"] + counts["dropped"] == 100
        assert any("is full" in r.getMessage() and "dropped" in r.getMessage() for r in caplog.records)
        victoria_metrics.start()
        store.flush(timeout_s=30)
        assert store.counts["drained"] == counts["spooled"]
    assert victoria_metrics.sample_count('{__name__="vitals_seq",device="d"}') == counts["spooled"]


def test_reserved_names_are_refused(victoria_metrics: VictoriaMetrics, tmp_path: Path) -> None:
    with open_vm_store(victoria_metrics, tmp_path / "spool") as store:
        with pytest.raises(ValueError, match="'seq' is reserved"):
            store.write([Point("vitals", "d", 0, T0, {"seq": 1})])
        with pytest.raises(ValueError, match="reserved"):
            store.write([Point("vitals", "d", 0, T0, {"hr": 1.0}, {"str_x": "y"})])
        with pytest.raises(ValueError, match="line break"):
            store.write([Point("vitals", "d\n", 0, T0, {"hr": 1.0})])
        assert store.counts["written"] == 0


# A writer process that prints each seq once write() returned for it, as the MQTT consumer acknowledges.
_WRITER = """
import sys
from shared.storage.base import Point
from shared.storage.factory import open_store
store = open_store(sys.argv[1], spool_dir=sys.argv[2], batch_size=50, flush_interval_ms=60_000)
for seq in range(100_000):
    store.write([Point("vitals", "k", seq, 1_700_000_000_000 + 1000 * seq, {"hr": 60.0})])
    print(seq, flush=True)
"""


def test_a_killed_writer_loses_nothing_it_returned_from(victoria_metrics: VictoriaMetrics, tmp_path: Path) -> None:
    """write() is write-ahead: SIGKILL the writing process; a new store on its spool ships every point
    whose write() had returned (batches the server took before the kill may come again: deduplicated)."""
    spool = tmp_path / "spool"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, victoria_metrics.store_url + "?flavor=vm", str(spool)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path,
    )
    try:
        assert child.stdout is not None
        returned = [int(child.stdout.readline()) for _ in range(173)]  # 3 full batches shipped, 23 waiting
        child.send_signal(signal.SIGKILL)
        returned += [int(line) for line in child.stdout.read().split()]  # printed before it died
    finally:
        child.kill()
        child.wait()
    assert returned == list(range(len(returned)))
    with open_vm_store(victoria_metrics, spool) as store:
        left = store.stats()["spool_pending_points"]  # type: ignore[attr-defined]
        store.flush(timeout_s=30)
        assert store.counts["drained"] == left and store.counts["dropped"] == 0
        assert store.stats()["spool_pending_points"] == 0  # type: ignore[attr-defined]
    rows = victoria_metrics.export('{__name__="vitals_seq",device="k"}')
    stored = sorted(int(v) for v in rows[0]["values"])
    assert set(returned) <= set(stored)  # nothing that was acknowledged is missing
    assert len(stored) == len(set(stored))  # and nothing is stored twice


def test_full_spool_waits_for_room_while_the_server_takes_points(
    victoria_metrics: VictoriaMetrics, tmp_path: Path
) -> None:
    with open_vm_store(victoria_metrics, tmp_path / "spool", spool_max_bytes=2000, batch_size=10) as store:
        assert store.write([vitals("full", s) for s in range(100)]) == 100  # ~25 fit at a time
        store.flush()
        counts = store.counts
        assert counts["written"] == 100 and counts["dropped"] == 0 and counts["spooled"] == 0
    assert victoria_metrics.sample_count('{__name__="vitals_seq",device="full"}') == 100


def test_durability_option_is_checked(victoria_metrics: VictoriaMetrics, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="durability"):
        open_vm_store(victoria_metrics, tmp_path / "spool", durability="sometimes")
    with open_vm_store(victoria_metrics, tmp_path / "spool", durability="os") as store:
        assert store.write([vitals("os", s) for s in range(5)]) == 5
        store.flush()
        assert store.counts["written"] == 5
