"""Losing quorum with a worker running: 2 of 3 NATS nodes killed (-9) while devices publish.

The devices (real MQTT clients on the surviving node, each with its outgoing spool) get no PUBACK while
``$MQTT_msgs`` has no quorum and keep their messages; once the two nodes are back, their clients resend,
the worker (which lost its leases meanwhile) takes its partitions back, and: nothing is lost, nothing is
duplicated (the store holds each (device, seq) once; the results arrive once each), and no device's seq
goes backward in the order the worker scored and stored them (its results).
"""

from __future__ import annotations

import pytest

from tests.fixtures.mqtt import wait_for
from tests.shared.cluster._fleet import Fleet, Results, check_nothing_lost, stored, stored_count

pytestmark = [pytest.mark.cluster]  # in the default run: about 50 s here (one worker, two nodes killed)


def test_devices_keep_retrying_without_quorum_and_nothing_is_lost_once_it_is_back(nats_cluster, quick_models,
                                                                                   tmp_path):
    cluster = nats_cluster(nodes=3, partitions=4)
    db = tmp_path / "store.db"
    cluster.start_worker("healthcare", 0, 1, f"sqlite:///{db}", quick_models, quick=True)
    assert wait_for(lambda: all(f"serves partition {p}" in cluster.log("w0") for p in range(4)), 90, 0.2)
    port = cluster.mqtt_ports[0]
    results = Results(port).start()
    fleet = Fleet([port], 8).start()
    try:
        fleet.send(2)
        assert fleet.wait_acked(20)
        assert wait_for(lambda: stored_count(db) >= fleet.total(), 30, 0.2)
        before = stored_count(db)
        cluster.kill("n2")
        cluster.kill("n3")
        fleet.send(3)  # into the devices' spools: node 1 alone cannot store them
        assert not fleet.wait_acked(5)  # no PUBACK without quorum
        assert stored_count(db) == before  # and nothing reached the worker either
        cluster.start_node(1)
        cluster.start_node(2)
        assert fleet.wait_acked(90), "the devices' messages were never acknowledged after quorum came back"
        assert wait_for(lambda: stored_count(db) >= fleet.total(), 90, 0.2), (
            f"stored {stored_count(db)} of {fleet.total()}; worker log: {cluster.log('w0')[-2000:]}")
        check_nothing_lost(fleet, db)
        # the worker noticed the outage: its lease rounds failed, and where its leases (3 s) ran out before it
        # renewed them it lost and retook its partitions (which of the two depends on the nodes' timing)
        assert "lease round failed" in cluster.log("w0") or "lost partition" in cluster.log("w0")
        have = stored(db)
        assert {d: sorted(s) for d, s in have.items()} == dict(fleet.published)  # exactly what was sent, once
        assert wait_for(lambda: results.count() >= fleet.total(), 20, 0.2)
        results.check()  # in the order the worker scored them: no duplicate, no backward seq within a device
    finally:
        fleet.stop()
        results.stop()
