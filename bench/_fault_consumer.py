"""A cloud consumer as its own process, for fault injection: MQTT inference stream -> store.

    python -m bench._fault_consumer --mqtt URL --store URL --client-id ID [--domain healthcare]

It runs :class:`shared.transport.consumer.Consumer` for the ``inference`` stream on an
:class:`shared.transport.mqtt.MqttClient` with a persistent session (``--client-id`` fixed, so a restarted
process receives what it missed), and writes every accepted message as one
:class:`shared.storage.base.Point` (measurement ``inference``, the message's vitals as fields) to the store.
The handler returns (and the message is acknowledged) only after ``Store.write`` returned.

Output on stdout, one JSON object per line: ``{"event": "ready", ...}`` once subscribed, and on SIGTERM
(or SIGINT) ``{"event": "final", ...}`` with the consumer's counts, ``redelivered`` (messages handled
again in this process: at-least-once delivery, absorbed by the store) and the store's counts. While
running it also publishes a retained ``status`` message with the counts every ``--status-every-s``
to ``tinylarge/<domain>/<client-id>/status`` (last will: ``offline``).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time

from shared.protocol import messages
from shared.protocol.messages import Topic
from shared.storage.base import Point, Store
from shared.storage.factory import open_store
from shared.transport.consumer import Consumer, status_will
from shared.transport.mqtt import MqttClient, MqttConfig

MEASUREMENT = "inference"
STATUS_MODEL = "fault-consumer@1"


class InferenceSink:
    """The handler: one Point per accepted message, written before the handler returns."""

    def __init__(self, store: Store):
        self.store = store
        self.seen: set[tuple[str, int]] = set()
        self.handled = 0
        self.redelivered = 0
        self._lock = threading.Lock()

    def __call__(self, where: Topic, msg: dict) -> None:
        key = (where.device, int(msg["seq"]))
        point = Point(MEASUREMENT, where.device, key[1], int(msg["ts"]), dict(msg["vitals"]))
        self.store.write([point])
        with self._lock:
            self.handled += 1
            if key in self.seen:
                self.redelivered += 1
            self.seen.add(key)


def _counts(consumer: Consumer, sink: InferenceSink, store: Store) -> dict[str, int]:
    out = {k: v for k, v in consumer.counts.items() if isinstance(v, int)}
    out["handled"] = sink.handled
    out["redelivered"] = sink.redelivered
    out.update({f"store_{k}": v for k, v in store.counts.items()})
    return out


def _emit(event: str, **fields: object) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}, sort_keys=True) + "\n")
    sys.stdout.flush()


def run(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench._fault_consumer", description=__doc__.splitlines()[0])
    ap.add_argument("--mqtt", required=True, help="broker URL, mqtt://host:port")
    ap.add_argument("--store", required=True,
                    help="store URL, sqlite:///path.db or influx+http://host:port/bucket")
    ap.add_argument("--client-id", required=True,
                    help="fixed MQTT client id (also the status topic's device id)")
    ap.add_argument("--domain", default="healthcare", choices=messages.domains())
    ap.add_argument("--status-every-s", type=float, default=1.0, help="retained status period (0: off)")
    ap.add_argument("--reconnect-max-s", type=float, default=1.0, help="longest wait between reconnect tries")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s consumer %(levelname)s %(name)s: %(message)s")
    messages.check_id(args.client_id, "client")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    will_topic, will_payload = status_will(args.domain, args.client_id, STATUS_MODEL)
    client = MqttClient(MqttConfig(args.mqtt, args.client_id, clean_session=False,
                                   reconnect_max_s=args.reconnect_max_s,
                                   will_topic=will_topic, will_payload=will_payload))
    store = open_store(args.store)
    sink = InferenceSink(store)
    consumer = Consumer(client, args.domain, {"inference": sink})
    client.start(timeout_s=30)
    consumer.start()
    _emit("ready", client_id=args.client_id, filters=consumer.filters())

    seq = 0
    while not stop.wait(args.status_every_s if args.status_every_s > 0 else None):
        seq += 1
        status = {"v": messages.SCHEMA_VERSION, "device": args.client_id, "seq": seq,
                  "ts": int(time.time() * 1000), "model": STATUS_MODEL, "state": "online",
                  "counts": _counts(consumer, sink, store)}
        if client.connected:
            client.publish(will_topic, messages.encode(args.domain, "status", status), qos=1, retain=True,
                           timeout_s=0.5)

    client.stop(flush_timeout_s=10)  # handles what was received, acknowledges, disconnects
    store.flush(timeout_s=30)
    counts = _counts(consumer, sink, store)
    store.close()
    _emit("final", client_id=args.client_id, counts=counts)
    return 0


if __name__ == "__main__":
    sys.exit(run())
