"""Where NATS 2.9's MQTT PUBACK puts a device's QoS 1 message (the design of shared.cluster rests on it).

Measured: the PUBACK comes after the message is stored in NATS's own ``$MQTT_msgs`` under the already
partitioned subject; a user stream capturing the same subjects is fed asynchronously and does not hold the
PUBACK back; without quorum for ``$MQTT_msgs`` no PUBACK comes, and it does once quorum is back.
"""

from __future__ import annotations

import asyncio

import pytest

from shared.cluster import MQTT_PREFIX, MQTT_STREAM, PART_ROOT
from shared.cluster._js import device_partition
from tests.shared.cluster._fleet import Fleet

pytestmark = pytest.mark.cluster


async def _js(cluster, work):
    import nats

    nc = await nats.connect(servers=cluster.queue.removeprefix("nats://").split(","))
    try:
        return await work(nc.jetstream())
    finally:
        await nc.close()


def test_puback_means_stored_in_mqtt_msgs_not_in_a_user_stream(nats_cluster):
    from nats.js.api import DiscardPolicy, StreamConfig

    cluster = nats_cluster(nodes=1, partitions=4)

    async def full_stream(js):  # a user stream on the device subjects that refuses all but 3 messages
        await js.add_stream(StreamConfig(name="USER", subjects=[f"{PART_ROOT}.>"], max_msgs=3,
                                         discard=DiscardPolicy.NEW))

    asyncio.run(_js(cluster, full_stream))
    fleet = Fleet(cluster.mqtt_ports, 10).start()
    try:
        fleet.send(1)
        assert fleet.wait_acked(10)  # every one PUBACKed ...
    finally:
        fleet.stop()

    async def look(js):
        user = await js.stream_info("USER")
        mq = await js.stream_info(MQTT_STREAM)
        subjects = [(await js.get_msg(MQTT_STREAM, s)).subject
                    for s in range(mq.state.first_seq, mq.state.last_seq + 1)]
        return user.state.messages, subjects

    in_user, subjects = asyncio.run(_js(cluster, look))
    assert in_user == 3  # ... though the user stream kept 3 of 10
    want = {f"{MQTT_PREFIX}.{PART_ROOT}.{device_partition('healthcare', d, 4)}.healthcare.{d}.inference"
            for d in fleet.devices}
    assert want <= set(subjects)  # all 10 in $MQTT_msgs, on the partition Python computes


def test_no_puback_without_quorum_and_nothing_lost_once_it_is_back(nats_cluster):
    cluster = nats_cluster(nodes=3, partitions=4)
    fleet = Fleet(cluster.mqtt_ports[:1], 5).start()
    try:
        fleet.send(1)
        assert fleet.wait_acked(20)
        cluster.kill("n2")
        cluster.kill("n3")
        fleet.send(1)
        assert not fleet.wait_acked(5)  # node 1 alone: no quorum, no PUBACK
        cluster.start_node(1)
        cluster.start_node(2)
        assert fleet.wait_acked(60)  # quorum back: the device's client resent, and it was stored
    finally:
        fleet.stop()

    async def count(js):
        info = await js.stream_info(MQTT_STREAM)
        return info.state.messages

    assert asyncio.run(_js(cluster, count)) >= 10  # nobody consumed them: all 10 still held (interest retention)
