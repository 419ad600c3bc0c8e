"""The generic cloud consumer every domain service uses, and the device-side publisher.

:class:`Consumer` subscribes ``tinylarge/<domain>/+/<stream>`` for each stream it has a handler
for, decodes and validates every message (:func:`shared.messages.decode`), checks that the envelope
``device`` is the topic's device, and calls the handler. Whatever is refused, and whatever makes a
handler raise, goes to ``tinylarge/_deadletter/<domain>`` with the reason; the consumer keeps going.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from shared import messages
from shared.messages import MessageError, Topic
from shared.transport import MqttClient

log = logging.getLogger(__name__)

MessageHandler = Callable[[Topic, dict], None]

#: reason prefixes (from shared.messages and this module) -> short keys for the per-reason counts
_REASON_KEYS = (
    ("bad JSON", "bad_json"),
    ("schema", "schema"),
    ("oversize", "oversize"),
    ("non-finite", "non_finite"),
    ("unknown schema version", "version"),
    ("invalid UTF-8", "utf8"),
    ("message nested deeper", "too_deep"),
    ("message must be a JSON object", "not_object"),
    ("device mismatch", "device_mismatch"),
    ("handler error", "handler_error"),
    ("unexpected topic", "topic"),
    ("not a ", "topic"),
    ("invalid ", "topic"),
    ("unknown domain", "topic"),
)


def reason_key(reason: str) -> str:
    """A short, stable key for a dead-letter reason, e.g. ``schema`` or ``device_mismatch``."""
    for prefix, key in _REASON_KEYS:
        if reason.startswith(prefix):
            return key
    return "other"


class Consumer:
    """Validate and dispatch one domain's device streams; dead-letter what is refused."""

    def __init__(self, client: MqttClient, domain: str, handlers: dict[str, MessageHandler]):
        if domain not in messages.DOMAINS:
            raise ValueError(f"unknown domain {domain!r}; expected one of {', '.join(messages.DOMAINS)}")
        if not handlers:
            raise ValueError("handlers is empty: give at least one stream -> handler")
        for stream in handlers:
            messages.topic(domain, "x", stream)  # MessageError (a ValueError) for a bad stream name
        self.client = client
        self.domain = domain
        self.handlers = dict(handlers)
        self.deadletter_topic = messages.deadletter_topic(domain)
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter({"received": 0, "accepted": 0, "deadletters": 0})

    def filters(self) -> list[str]:
        return [f"{messages.TOPIC_ROOT}/{self.domain}/+/{stream}" for stream in self.handlers]

    def start(self) -> None:
        """Subscribe (QoS 1) to ``tinylarge/<domain>/+/<stream>`` for every handled stream."""
        for topic_filter in self.filters():
            self.client.subscribe(topic_filter, self._on_message, qos=1)
        log.info("consumer for %s subscribed to %s", self.domain, ", ".join(self.filters()))

    @property
    def counts(self) -> dict[str, int]:
        """received, accepted, deadletters, and ``deadletter_<reason key>`` per reason."""
        with self._lock:
            return dict(self._counts)

    def _on_message(self, topic_name: str, payload: bytes) -> None:
        with self._lock:
            self._counts["received"] += 1
        try:
            where = messages.parse_topic(topic_name)
            if where.domain != self.domain or where.stream not in self.handlers:
                raise MessageError(f"unexpected topic {topic_name[:120]!r} for the {self.domain} consumer")
            msg = messages.decode(self.domain, where.stream, payload)
            if msg["device"] != where.device:
                raise MessageError(
                    f"device mismatch: envelope device {msg['device']!r} on topic device {where.device!r}"
                )
        except MessageError as exc:
            self._deadletter(topic_name, exc.reason, payload)
            return
        try:
            self.handlers[where.stream](where, msg)
        except Exception as exc:
            log.exception("%s handler for %s raised", self.domain, topic_name)
            self._deadletter(topic_name, f"handler error: {type(exc).__name__}: {exc}", payload)
            return
        with self._lock:
            self._counts["accepted"] += 1

    def _deadletter(self, topic_name: str, reason: str, payload: bytes) -> None:
        with self._lock:
            self._counts["deadletters"] += 1
            self._counts[f"deadletter_{reason_key(reason)}"] += 1
        log.warning("dead-letter %s: %s", topic_name[:120], reason[:200])
        record = messages.deadletter(self.domain, topic_name, reason, payload, int(time.time() * 1000))
        self.client.publish(self.deadletter_topic, record, qos=1)


class Publisher:
    """Device side: validate, encode and publish messages at QoS 1."""

    def __init__(self, client: MqttClient):
        self.client = client

    def publish_msg(self, domain: str, device: str, stream: str, msg: dict, retain: bool = False,
                    timeout_s: float | None = None) -> bool:
        """Encode (validating against the stream's schema) and publish at QoS 1; False if dropped.

        Raises MessageError for a message that does not validate, or whose ``device`` is not ``device``.
        """
        if msg.get("device") != device:
            got = msg.get("device")
            raise MessageError(f"device mismatch: envelope device {got!r}, topic device {device!r}")
        data = messages.encode(domain, stream, msg)
        return self.client.publish(messages.topic(domain, device, stream), data, qos=1, retain=retain,
                                   timeout_s=timeout_s)

    @staticmethod
    def status_will(domain: str, device: str, model: str, seq: int = 0) -> tuple[str, bytes]:
        """(topic, payload) of the retained last will: a ``status`` message with state ``offline``.

        Put them in :class:`shared.transport.MqttConfig` (``will_topic``, ``will_payload``). The will is
        fixed when the client connects, so ``ts`` is the connect time.
        """
        return status_will(domain, device, model, seq)


def status_will(domain: str, device: str, model: str, seq: int = 0) -> tuple[str, bytes]:
    """See :meth:`Publisher.status_will`."""
    msg = {"v": messages.SCHEMA_VERSION, "device": device, "seq": seq, "ts": int(time.time() * 1000),
           "model": model, "state": "offline"}
    return messages.topic(domain, device, "status"), messages.encode(domain, "status", msg)
