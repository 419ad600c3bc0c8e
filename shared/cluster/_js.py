"""JetStream set-up shared by ``cluster up`` / ``cluster init`` and the workers (used only inside the package).

:func:`ensure_partitions` creates, idempotently, the durable pull consumers (one per registered domain and
partition) on ``$MQTT_msgs`` (the stream NATS's MQTT listener stores QoS 1 messages in before the PUBACK:
see :mod:`shared.cluster`), the lease bucket (a KV bucket whose TTL is the lease) and the layout bucket that records P.
"""

from __future__ import annotations

import json
from typing import Any

from shared.cluster import LEASE_BUCKET, MQTT_STREAM, consumer_name, partition_filter

LAYOUT_BUCKET = "tl_layout"


def device_partition(domain: str, device: str, partitions: int) -> int:
    """The partition NATS's ``partition(P, 1, 2)`` mapping gives ``tinylarge.<domain>.<device>.*``: FNV-1a
    (32 bit) of the two tokens concatenated, modulo P (checked against the server in the tests)."""
    h = 0x811C9DC5
    for byte in (domain + device).encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h % partitions


async def ensure_mqtt_streams(nc: Any, mqtt: tuple[str, int] | None, timeout_s: float = 20.0) -> None:
    """NATS creates ``$MQTT_msgs`` when the first MQTT client connects: connect one (``mqtt``: host, port)
    and wait for the stream."""
    import asyncio
    import time

    js = nc.jetstream()
    deadline = time.monotonic() + timeout_s
    poked = False
    while True:
        try:
            await js.stream_info(MQTT_STREAM)
            return
        except Exception:  # noqa: BLE001 - not there yet
            if mqtt is None or time.monotonic() > deadline:
                raise LookupError(f"{MQTT_STREAM} does not exist yet: connect one MQTT client to the cluster "
                                  "first") from None
        if not poked:
            await asyncio.get_running_loop().run_in_executor(None, _poke_mqtt, *mqtt)
            poked = True
        await asyncio.sleep(0.2)


def _poke_mqtt(host: str, port: int) -> None:
    import paho.mqtt.client as paho

    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="tinylarge-cluster-init", clean_session=True)
    c.connect(host, port)
    c.loop_start()
    c.publish("tinylarge/_cluster/init", b"", qos=1).wait_for_publish(10)
    c.loop_stop()
    c.disconnect()


async def ensure_partitions(nc: Any, partitions: int, replicas: int, ack_wait_s: float = 30.0,
                            lease_s: float = 6.0, max_ack_pending: int = 4096,
                            mqtt: tuple[str, int] | None = None) -> dict:
    """Consumers ``tl_part_<p>``, the lease bucket and the layout; returns the layout. A layout already
    there with another P is refused (the device-to-partition mapping would move)."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, KeyValueConfig
    from nats.js.errors import BucketNotFoundError, KeyNotFoundError

    js = nc.jetstream()
    try:
        kv = await js.key_value(LAYOUT_BUCKET)
    except BucketNotFoundError:
        kv = await js.create_key_value(KeyValueConfig(bucket=LAYOUT_BUCKET, replicas=replicas))
    want = {"partitions": partitions, "ack_wait_s": ack_wait_s, "lease_s": lease_s}
    try:
        have = json.loads((await kv.get("layout")).value)
        if have["partitions"] != partitions:
            raise ValueError(f"the cluster has {have['partitions']} partitions, not {partitions}: keep P fixed "
                             "(it decides every device's partition)")
        want = have
    except KeyNotFoundError:
        await kv.put("layout", json.dumps(want).encode())
    await ensure_mqtt_streams(nc, mqtt)
    from shared.domain import names

    for domain in names():
        for p in range(partitions):
            cfg = ConsumerConfig(durable_name=consumer_name(domain, p), ack_policy=AckPolicy.ALL,
                                 deliver_policy=DeliverPolicy.ALL, filter_subject=partition_filter(domain, p),
                                 ack_wait=float(want["ack_wait_s"]), max_ack_pending=max_ack_pending,
                                 num_replicas=replicas)
            try:
                await js.consumer_info(MQTT_STREAM, consumer_name(domain, p))
            except Exception:  # noqa: BLE001 - missing: create it
                await js.add_consumer(MQTT_STREAM, cfg)
    try:
        await js.key_value(LEASE_BUCKET)
    except BucketNotFoundError:
        await js.create_key_value(KeyValueConfig(bucket=LEASE_BUCKET, ttl=float(want["lease_s"]),
                                                 replicas=replicas))
    return want


async def read_layout(nc: Any) -> dict:
    """The layout ``ensure_partitions`` recorded; LookupError when the cluster was never initialised."""
    from nats.js.errors import BucketNotFoundError, KeyNotFoundError

    js = nc.jetstream()
    try:
        kv = await js.key_value(LAYOUT_BUCKET)
        return json.loads((await kv.get("layout")).value)
    except (BucketNotFoundError, KeyNotFoundError):
        raise LookupError("the cluster has no partitions yet: run `tinylarge cluster init --queue URL "
                          "--partitions P` (cluster up does it)") from None
