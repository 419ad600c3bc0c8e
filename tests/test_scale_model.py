"""docs/results.md's scale tables and capacity model come from out/bench/scale.json (bench/_scale_model.py)."""

from __future__ import annotations

from typing import Any

from bench import _scale_model as m


def _data(lost: int = 0) -> dict[str, Any]:
    row = {"nodes": 3, "workers": 2, "partitions": 8, "messages": 1000, "msgs_per_s": 500.0, "cores_used": 0.8,
           "msgs_per_s_per_core": 600.0, "p50_ms": 10.0, "p99_ms": 20.0, "lost": lost, "duplicated": 0,
           "reordered": 0, "loadavg_1m": 3.0, "cpu_us_per_msg_total": 2000.0,
           "cpu_us_per_msg": {"nats": 500.0, "workers": 1400.0, "store": 100.0}}
    return {"cpus": 2, "loadavg": [3.0, 2.0, 1.0], "quick_models": False, "configurations": [row],
            "window_every_s": {"healthcare": 300.0, "metaverse_eeg": 10.0}}


def test_the_capacity_model_is_rate_times_measured_cost() -> None:
    rows = {(r["domain"], r["devices"]): r for r in m.capacity(_data())}
    big = rows[("healthcare", 1_000_000)]
    assert big["msgs_per_s"] == 1_000_000 / 300
    # 3,333 msgs/s x 1,400 µs = 4.67 cores of workers, at 70 %: 7 workers; partitions >= 4 per worker: 32
    assert big["workers"] == 7 and big["partitions"] == 32
    assert rows[("healthcare", 10_000)]["workers"] == 1 and rows[("healthcare", 10_000)]["partitions"] == 8
    eeg = rows[("metaverse_eeg", 1_000_000)]  # 100,000 msgs/s x 500 µs = 50 NATS cores
    assert eeg["nats_nodes"] == 3 * -(-50 // (3 * m.UTIL * m.CORES_PER_MACHINE))


def test_the_tables_and_headlines_quote_the_json() -> None:
    table = "\n".join(m.scale_table(_data()))
    assert "| 3 | 2 | 8 | 1,000 | 500 |" in table and "1,400" in table
    assert "reordered: 0" in m.scale_headline(_data())
    assert "reordered: 3" in m.scale_headline(_data(lost=3))
    assert "healthcare 7 workers" in m.capacity_headline(_data())
