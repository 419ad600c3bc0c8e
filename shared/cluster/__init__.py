"""Past one machine: the cloud on a NATS JetStream cluster, partitioned by device.

The pieces (DESIGN.md, "One machine, and past it"):

- :mod:`shared.cluster.config`: ``tinylarge cluster config``: nats-server configurations for N nodes on
  loopback (routes, JetStream, an MQTT listener per node), the subject mapping that puts each device's
  upward streams on one of P partitions, and the per-partition durable consumers (:func:`ensure_partitions`);
- :mod:`shared.cluster.worker`: ``tinylarge serve DOMAIN --queue nats://...``: a scoring worker that owns
  partitions (a static share ``--worker k/n`` plus leases in a JetStream KV bucket) and runs the domain's
  own service on them;
- :mod:`shared.cluster.runner`: ``tinylarge cluster up``: a local cluster, its store and workers, for demos
  and tests only.

Where a device's QoS 1 message is durable (measured on nats-server 2.9.10, the experiment in
tests/shared/cluster/test_puback.py): NATS answers an MQTT QoS 1 PUBLISH with PUBACK after it stored the
message in its own ``$MQTT_msgs`` stream (subject ``$MQTT.msgs.<NATS subject>``), and it applies the
account's subject mapping first, so the stored subject is already the partitioned one
(``$MQTT.msgs.tinylarge.part.<p>.<domain>.<device>.<stream>``). A user stream that captures the same
subjects is fed asynchronously and does NOT hold the PUBACK back: with a user stream that refused 7 of 10
messages (max_msgs 3, discard new) all 10 were acknowledged to the device. When ``$MQTT_msgs`` has no
quorum, the device gets no PUBACK (its client keeps the message and retries).

So the workers read the partitions straight out of ``$MQTT_msgs``, through one durable pull consumer per
domain and partition (``tl_<domain>_p<p>``, filter ``$MQTT.msgs.tinylarge.part.<p>.<domain>.>``): the
stream the PUBACK covers is the stream a worker reads, and nothing sits between them. ``$MQTT_msgs`` has
interest retention: a message stays until every consumer whose filter matches it acknowledged it, so the
partition consumers must exist before the devices publish (``cluster init``, which ``cluster up`` runs first);
a message published while no consumer matched would be dropped after its PUBACK. Its replicas come from
the ``mqtt { stream_replicas }`` setting, min(3, N). NATS-native publishers can publish with a JetStream
PubAck into the same stream (``$MQTT.msgs.tinylarge.<domain>.<device>.<stream>`` is mapped onto the
partitions too) with ``Nats-Msg-Id: <domain>/<device>/<seq>`` (the stream's duplicate window); MQTT 3.1.1
carries no headers, so the worker and the store drop redeliveries by (device, seq) in every case.
"""

#: NATS subject root of the partitioned upward streams: tinylarge.part.<p>.<domain>.<device>.<stream>
PART_ROOT = "tinylarge.part"
#: the stream NATS's MQTT listener stores QoS 1 messages in, and its subject prefix
MQTT_STREAM, MQTT_PREFIX = "$MQTT_msgs", "$MQTT.msgs"
#: the KV bucket of partition leases and worker heartbeats
LEASE_BUCKET = "tl_leases"


def consumer_name(domain: str, partition: int) -> str:
    """The durable consumer that reads one domain's messages on one partition."""
    return f"tl_{domain}_p{partition}"


def partition_filter(domain: str, partition: int) -> str:
    return f"{MQTT_PREFIX}.{PART_ROOT}.{partition}.{domain}.>"
