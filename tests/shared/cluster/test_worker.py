"""Scoring workers on a real 3-node NATS cluster (nats-server processes, worker processes started with
``tinylarge serve healthcare --queue ...``, devices as real MQTT clients on the cluster's MQTT listeners).

Every test checks: nothing lost (every PUBACKed message is in the store), nothing duplicated and no backward
seq within a device (the results as an MQTT subscriber receives them).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections import defaultdict

import pytest

from shared.cluster import MQTT_STREAM
from shared.cluster._js import device_partition
from shared.dashboard.server import Dashboard
from tests.fixtures.mqtt import wait_for
from tests.shared.cluster._fleet import Fleet, Results, check_nothing_lost, stored_count

# the worker-kill test runs in the default run (about 40 s here: two workers start, one is killed); the
# stream-leader and restart-everything tests stay `slow` (each starts and stops its workers more than once)
pytestmark = [pytest.mark.cluster]


def _serving(cluster, name: str, partitions: set[int]) -> bool:
    log = cluster.log(name)
    return all(f"serves partition {p}" in log for p in partitions)


def _settle(cluster, fleet: Fleet, db, results: Results, timeout_s: float = 60.0) -> None:
    assert fleet.wait_acked(timeout_s)
    assert wait_for(lambda: stored_count(db) >= fleet.total(), timeout_s, 0.2), (
        f"stored {stored_count(db)} of {fleet.total()}; logs: {[cluster.log(n)[-1500:] for n in cluster.procs]}")
    check_nothing_lost(fleet, db)
    wait_for(lambda: results.count() >= fleet.total(), 10, 0.2)
    results.check()


def test_kill_9_a_worker_its_partitions_are_taken_over(nats_cluster, quick_models, tmp_path):
    cluster = nats_cluster(nodes=3, partitions=4)
    db = tmp_path / "store.db"
    for k in range(2):
        cluster.start_worker("healthcare", k, 2, f"sqlite:///{db}", quick_models, quick=True)
    assert wait_for(lambda: _serving(cluster, "w0", {0, 2}) and _serving(cluster, "w1", {1, 3}), 90, 0.2)
    results = Results(cluster.mqtt_ports[0]).start()
    fleet = Fleet(cluster.mqtt_ports, 16).start()
    dash = Dashboard(f"mqtt://127.0.0.1:{cluster.mqtt_ports[1]}", None, port=0).start()
    try:
        assert wait_for(lambda: _workers(dash).get("cluster-w1", {}).get("partitions") == [1, 3], 20, 0.2), (
            _workers(dash))
        fleet.send(3)
        cluster.kill("w1")  # kill -9, with whatever it had fetched and not acknowledged
        fleet.send(3)
        _settle(cluster, fleet, db, results)
        assert "took over partition 1" in cluster.log("w0") and "took over partition 3" in cluster.log("w0")
        # the dashboard shows the takeover: w0 alive with every partition, w1 dead (no heartbeat)
        assert wait_for(lambda: _workers(dash)["cluster-w0"]["partitions"] == [0, 1, 2, 3]
                        and not _workers(dash)["cluster-w1"]["alive"], 20, 0.2), _workers(dash)
        w0 = _workers(dash)["cluster-w0"]
        assert w0["alive"] and w0["takeovers"] >= 2 and w0["handled"] > 0  # 2 more if it held them before w1 came
    finally:
        dash.stop()
        fleet.stop()
        results.stop()


def _workers(dash: Dashboard) -> dict[str, dict]:
    """The cluster's workers as the dashboard's /api/state shows them (id -> worker)."""
    with urllib.request.urlopen(dash.url + "api/state", timeout=10) as r:
        stages = json.loads(r.read())["domains"]["healthcare"]["stages"]
    return {i: s["worker"] for i, s in stages.items() if "worker" in s}


@pytest.mark.slow
def test_kill_9_the_stream_leader(nats_cluster, quick_models, tmp_path):
    cluster = nats_cluster(nodes=3, partitions=4)
    db = tmp_path / "store.db"
    cluster.start_worker("healthcare", 0, 1, f"sqlite:///{db}", quick_models, quick=True)
    assert wait_for(lambda: _serving(cluster, "w0", {0, 1, 2, 3}), 90, 0.2)

    async def leader(js):
        return (await js.stream_info(MQTT_STREAM)).cluster.leader

    name = asyncio.run(_js(cluster, leader))
    i = int(name.removeprefix("tl-n")) - 1
    others = [p for j, p in enumerate(cluster.mqtt_ports) if j != i]
    results = Results(others[0]).start()
    fleet = Fleet(others, 16).start()
    try:
        fleet.send(3)
        cluster.kill(f"n{i + 1}")
        fleet.send(3)
        _settle(cluster, fleet, db, results)
        assert asyncio.run(_js(cluster, leader)) != name
    finally:
        fleet.stop()
        results.stop()


@pytest.mark.slow
def test_restart_everything_keeps_each_device_on_its_partition(nats_cluster, quick_models, tmp_path):
    cluster = nats_cluster(nodes=3, partitions=4)
    db = tmp_path / "store.db"
    seen: dict[str, set[int]] = defaultdict(set)
    watcher = _PartitionWatcher(cluster, seen)

    def round_trip(fleet: Fleet, results: Results) -> None:
        cluster.start_worker("healthcare", 0, 1, f"sqlite:///{db}", quick_models, quick=True)
        assert wait_for(lambda: _serving(cluster, "w0", {0, 1, 2, 3}), 90, 0.2)
        fleet.send(3)
        _settle(cluster, fleet, db, results)

    fleet = Fleet(cluster.mqtt_ports, 12)
    watcher.start()
    fleet.start()
    results = Results(cluster.mqtt_ports[0]).start()
    round_trip(fleet, results)
    watcher.stop()
    fleet.stop()
    results.stop()
    cluster.close()  # every node and the worker, cleanly
    cluster.procs.clear()
    cluster.start()
    watcher.start()
    fleet2 = Fleet(cluster.mqtt_ports, 12)
    fleet2.published, fleet2.next_seq = fleet.published, fleet.next_seq  # the same devices, seq counting on
    fleet2.start()
    results2 = Results(cluster.mqtt_ports[1]).start()
    try:
        round_trip(fleet2, results2)
    finally:
        watcher.stop()
        fleet2.stop()
        results2.stop()
    assert set(seen) == set(fleet.devices)
    for device, parts in seen.items():
        assert parts == {device_partition("healthcare", device, 4)}, f"{device} moved: {parts}"


async def _js(cluster, work):
    import nats

    nc = await nats.connect(servers=cluster.queue.removeprefix("nats://").split(","))
    try:
        return await work(nc.jetstream())
    finally:
        await nc.close()


class _PartitionWatcher:
    """A core NATS subscriber on tinylarge.part.>: which partition each device's messages were mapped to."""

    def __init__(self, cluster, seen: dict[str, set[int]]):
        self.cluster, self.seen = cluster, seen
        self._stop = threading.Event()
        self._ready = threading.Event()

    def start(self) -> None:
        self._stop.clear()
        self._ready.clear()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        assert self._ready.wait(20)

    async def _run(self) -> None:
        import nats

        nc = await nats.connect(servers=self.cluster.queue.removeprefix("nats://").split(","))

        async def on(msg) -> None:
            tokens = msg.subject.split(".")  # tinylarge.part.<p>.<domain>.<device>.<stream>
            self.seen[tokens[4]].add(int(tokens[2]))

        await nc.subscribe("tinylarge.part.>", cb=on)
        await nc.flush()
        self._ready.set()
        while not self._stop.is_set():
            await asyncio.sleep(0.1)
        await nc.close()

    def stop(self) -> None:
        time.sleep(0.5)
        self._stop.set()
        self._thread.join(10)
