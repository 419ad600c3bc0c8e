"""Wiring that every domain's service, device and demo share: endpoints -> clients -> store.

A domain supplies only what differs (its handlers and its models); this module resolves the broker
and store URLs (flags, then environment, then the embedded defaults), builds MQTT clients with the
right TLS settings and last will, and publishes schema-checked messages.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from shared import messages
from shared.broker import broker_for
from shared.consumer import Publisher
from shared.endpoints import mqtt_url, store_url
from shared.transport import MqttClient, MqttConfig

Publish = Callable[[str, str, dict], None]


def client_config(args: argparse.Namespace | None, url: str, client_id: str,
                  will: tuple[str, bytes] | None = None, **overrides: Any) -> MqttConfig:
    """An MqttConfig from the common endpoint flags (``--ca``, ``--cert``, ``--key``)."""
    ca = getattr(args, "ca", None)
    cert = getattr(args, "cert", None)
    key = getattr(args, "key", None)
    return MqttConfig(url=url, client_id=client_id, ca=ca, certfile=cert, keyfile=key,
                      will_topic=will[0] if will else None, will_payload=will[1] if will else None, **overrides)


def status_message(device: str, seq: int, model: str, state: str, counts: dict[str, int] | None = None,
                   active_model: str | None = None) -> dict:
    msg: dict[str, Any] = {"v": messages.SCHEMA_VERSION, "device": device, "seq": seq,
                           "ts": int(time.time() * 1000), "model": model, "state": state}
    if counts is not None:
        msg["counts"] = {k: int(v) for k, v in list(counts.items())[:32]}
    if active_model is not None:
        msg["active_model"] = active_model
    return msg


def publisher(client: MqttClient, domain: str, timeout_s: float | None = 30.0) -> Publish:
    """``publish(device, stream, msg)``: validate, encode and publish at QoS 1 (status and model retained)."""
    pub = Publisher(client)

    def publish(device: str, stream: str, msg: dict) -> None:
        if not pub.publish_msg(domain, device, stream, msg, retain=stream in ("status", "model"),
                               timeout_s=timeout_s):
            raise TimeoutError(f"outgoing queue full: {domain}/{device}/{stream} seq={msg.get('seq')} dropped")

    return publish


@dataclass
class Endpoints:
    mqtt: str
    store: str


@contextmanager
def endpoints(args: argparse.Namespace, default_store: str | None = None) -> Iterator[Endpoints]:
    """Resolve ``--mqtt`` / ``--store`` (or env); start the embedded broker when no broker is given."""
    flag_store = getattr(args, "store", None)
    store = store_url(flag_store) if (flag_store or default_store is None) else None
    if store is None:
        import os

        store = os.environ.get("TINYLARGE_STORE") or default_store
    with broker_for(mqtt_url(getattr(args, "mqtt", None))) as url:
        yield Endpoints(url, store)
