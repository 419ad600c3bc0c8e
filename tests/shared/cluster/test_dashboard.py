"""The dashboard shows the cluster's workers: each worker's heartbeat status (``cluster-w<k>``, model
``cluster-worker@1``) is a stage with ``worker``: the partitions it holds, messages/s, its last heartbeat and
whether it is alive (a worker killed -9 sends no offline status: three missed heartbeats make it dead)."""

from __future__ import annotations

import json

from shared.dashboard.state import FleetState
from shared.protocol.messages import encode


def _beat(k: int, parts: list[int], state: str = "online", seq: int = 1) -> bytes:
    counts = {**{f"p{p}": 10 * p for p in parts}, "partitions_held": len(parts), "handled": 99, "msgs_per_s": 42,
              "takeovers": 0, "share_k": k, "share_n": 2, "heartbeat_ms": 1000}
    return encode("healthcare", "status", {"v": 1, "device": f"cluster-w{k}", "seq": seq, "ts": 1_000_000,
                                           "model": "cluster-worker@1", "state": state, "counts": counts})


def test_worker_heartbeats_are_stages_with_partitions_rate_and_liveness():
    clock = [1_000_000.0]
    fs = FleetState(["healthcare"], clock_ms=lambda: clock[0])
    fs.ingest("tinylarge/healthcare/cluster-w0/status", _beat(0, [0, 2]))
    fs.ingest("tinylarge/healthcare/cluster-w1/status", _beat(1, [1, 3]))
    dom = fs.view(0)["domains"]["healthcare"]
    assert dom["page"]["total"] == 0  # workers are no subjects
    w0, w1 = dom["stages"]["cluster-w0"]["worker"], dom["stages"]["cluster-w1"]["worker"]
    assert w0["partitions"] == [0, 2] and w1["partitions"] == [1, 3]
    assert w0["msgs_per_s"] == 42 and w0["alive"] and w1["alive"]
    assert w0["last_heartbeat_ms"] == 1_000_000
    clock[0] += 2500  # w1 beats on, w0 (killed -9) does not
    fs.ingest("tinylarge/healthcare/cluster-w1/status", _beat(1, [0, 1, 2, 3], seq=2))
    clock[0] += 1000
    dom = fs.view(0)["domains"]["healthcare"]
    assert not dom["stages"]["cluster-w0"]["worker"]["alive"]
    assert dom["stages"]["cluster-w1"]["worker"] | {"last_heartbeat_ms": 0} == {
        "partitions": [0, 1, 2, 3], "msgs_per_s": 42, "handled": 99, "takeovers": 0, "last_heartbeat_ms": 0,
        "alive": True}
    fs.ingest("tinylarge/healthcare/cluster-w1/status", _beat(1, [], state="offline", seq=3))  # a clean stop
    assert not fs.view(0)["domains"]["healthcare"]["stages"]["cluster-w1"]["worker"]["alive"]
    assert "worker" not in json.dumps(fs.view(0)["domains"]["healthcare"]["devices"])
