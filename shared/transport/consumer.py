"""The generic cloud consumer every domain service uses, and the device-side publisher.

:class:`Consumer` subscribes ``tinylarge/<domain>/+/<stream>`` for each stream it has a handler
for, decodes and validates every message (:func:`shared.protocol.messages.decode`), checks that the envelope
``device`` is the topic's device, and calls the handler. Whatever is refused, and whatever makes a
handler raise, goes to ``tinylarge/_deadletter/<domain>`` with the reason; the consumer keeps going.

A stream may have a batch handler instead: the transport hands over the messages already queued
(:meth:`shared.transport.mqtt.MqttClient.subscribe_batch`), each is decoded and checked as above (the
refused ones dead-lettered one by one), and the valid ones go to ``batch_handler([(topic, msg), ...])``
in one call, in arrival order, so that it can store them in one transaction before any is
acknowledged. If that call raises, each message is handed over alone, and only those that still make
it raise are dead-lettered.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from shared.protocol import messages
from shared.protocol.messages import MessageError, Topic
from shared.transport.mqtt import MqttClient

log = logging.getLogger(__name__)

MessageHandler = Callable[[Topic, dict], None]
BatchMessageHandler = Callable[[list[tuple[Topic, dict]]], None]

#: reason prefixes (from shared.protocol.messages and this module) -> short keys for the per-reason counts
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
    ("implausible ts", "ts"),
    ("seq conflict", "seq_conflict"),
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

    def __init__(self, client: MqttClient, domain: str, handlers: dict[str, MessageHandler],
                 batch_handlers: dict[str, BatchMessageHandler] | None = None, max_batch: int = 256,
                 max_future_skew_s: float | None = None, min_ts_ms: int | None = None):
        """``handlers``: stream -> ``handler(topic, msg)``; ``batch_handlers``: stream ->
        ``handler([(topic, msg), ...])``, which takes over that stream from ``handlers``.
        ``max_future_skew_s`` / ``min_ts_ms``: dead-letter a message whose ``ts`` is further ahead of this
        machine's clock, or older (:func:`shared.protocol.messages.check_ts`); None: no check."""
        if domain not in messages.domains():
            raise ValueError(f"unknown domain {domain!r}; expected one of {', '.join(messages.domains())}")
        if not handlers and not batch_handlers:
            raise ValueError("handlers is empty: give at least one stream -> handler")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.batch_handlers = dict(batch_handlers or {})
        for stream in {**handlers, **self.batch_handlers}:
            messages.topic(domain, "x", stream)  # MessageError (a ValueError) for a bad stream name
        self.client = client
        self.domain = domain
        self.handlers = {s: h for s, h in handlers.items() if s not in self.batch_handlers}
        self.max_batch = max_batch
        self.max_future_skew_s, self.min_ts_ms = max_future_skew_s, min_ts_ms
        self.deadletter_topic = messages.deadletter_topic(domain)
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter({"received": 0, "accepted": 0, "deadletters": 0})

    def filters(self) -> list[str]:
        return [self._filter(stream) for stream in self.streams()]

    def streams(self) -> list[str]:
        return [*self.handlers, *self.batch_handlers]

    def _filter(self, stream: str) -> str:
        return f"{messages.TOPIC_ROOT}/{self.domain}/+/{stream}"

    def start(self) -> None:
        """Subscribe (QoS 1) to ``tinylarge/<domain>/+/<stream>`` for every handled stream."""
        for stream in self.handlers:
            self.client.subscribe(self._filter(stream), self._on_message, qos=1)
        for stream in self.batch_handlers:
            self.client.subscribe_batch(self._filter(stream), functools.partial(self._on_batch, stream), qos=1,
                                        max_batch=self.max_batch)
        log.info("consumer for %s subscribed to %s", self.domain, ", ".join(self.filters()))

    @property
    def counts(self) -> dict[str, int]:
        """received, accepted, deadletters, and ``deadletter_<reason key>`` per reason."""
        with self._lock:
            return dict(self._counts)

    def _decode(self, topic_name: str, payload: bytes, streams: dict) -> tuple[Topic, dict] | str:
        """(topic, message) if valid for one of ``streams``; else the reason to dead-letter it."""
        try:
            where = messages.parse_topic(topic_name)
            if where.domain != self.domain or where.stream not in streams:
                raise MessageError(f"unexpected topic {topic_name[:120]!r} for the {self.domain} consumer")
            msg = messages.decode(self.domain, where.stream, payload)
            if msg["device"] != where.device:
                raise MessageError(
                    f"device mismatch: envelope device {msg['device']!r} on topic device {where.device!r}"
                )
            if self.max_future_skew_s is not None or self.min_ts_ms is not None:
                messages.check_ts(msg, int(time.time() * 1000), self.max_future_skew_s, self.min_ts_ms)
        except MessageError as exc:
            return exc.reason
        return where, msg

    def _on_batch(self, stream: str, items: list[tuple[str, bytes]]) -> None:
        """Decode all, hand the valid ones over at once, dead-letter the rest; count the batch at the end,
        so that ``received`` never runs ahead of ``accepted`` + ``deadletters``."""
        valid: list[tuple[Topic, dict]] = []
        raw: list[tuple[str, bytes]] = []
        refused: list[tuple[str, str, bytes]] = []  # (topic, reason, payload)
        for topic_name, payload in items:
            decoded = self._decode(topic_name, payload, {stream: None})
            if isinstance(decoded, str):
                refused.append((topic_name, decoded, payload))
            else:
                valid.append(decoded)
                raw.append((topic_name, payload))
        accepted = 0
        if valid:
            handler = self.batch_handlers[stream]
            try:
                handler(valid)
                accepted = len(valid)
            except Exception as exc:
                if len(valid) > 1:
                    log.exception("%s batch handler raised on %d messages; retrying them one by one",
                                  self.domain, len(valid))
                    for one, (topic_name, payload) in zip(valid, raw, strict=True):
                        try:
                            handler([one])
                            accepted += 1
                        except Exception as one_exc:
                            refused.append((topic_name, self._handler_error(topic_name, one_exc), payload))
                else:
                    topic_name, payload = raw[0]
                    refused.append((topic_name, self._handler_error(topic_name, exc), payload))
        for topic_name, reason, payload in refused:
            self._deadletter(topic_name, reason, payload)
        with self._lock:
            self._counts["received"] += len(items)
            self._counts["accepted"] += accepted

    def _handler_error(self, topic_name: str, exc: Exception) -> str:
        if isinstance(exc, MessageError):  # the handler refused the message (e.g. a seq conflict): its reason
            return exc.reason
        log.exception("%s handler for %s raised", self.domain, topic_name)
        return f"handler error: {type(exc).__name__}: {exc}"

    def _on_message(self, topic_name: str, payload: bytes) -> None:
        with self._lock:
            self._counts["received"] += 1
        decoded = self._decode(topic_name, payload, self.handlers)
        if isinstance(decoded, str):
            self._deadletter(topic_name, decoded, payload)
            return
        where, msg = decoded
        try:
            self.handlers[where.stream](where, msg)
        except Exception as exc:
            self._deadletter(topic_name, self._handler_error(topic_name, exc), payload)
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

        Put them in :class:`shared.transport.mqtt.MqttConfig` (``will_topic``, ``will_payload``). The will is
        fixed when the client connects, so ``ts`` is the connect time.
        """
        return status_will(domain, device, model, seq)


def status_will(domain: str, device: str, model: str, seq: int = 0) -> tuple[str, bytes]:
    """See :meth:`Publisher.status_will`."""
    msg = {"v": messages.SCHEMA_VERSION, "device": device, "seq": seq, "ts": int(time.time() * 1000),
           "model": model, "state": "offline"}
    return messages.topic(domain, device, "status"), messages.encode(domain, "status", msg)
