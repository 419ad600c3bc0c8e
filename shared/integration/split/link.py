"""The two ends of the cut over MQTT (QoS 1), and an in-process stand-in for the centralised baseline.

* :class:`CloudService` subscribes to ``tinylarge/<domain>/+/smashed``; for each training batch it runs
  the device's server-side model (``key_of(device)``) one step and publishes the gradient on the
  device's ``cutgrad`` topic; for an inference batch it publishes the classes on ``splitpred``. It
  answers only devices of the current run, handles a redelivered batch once (it re-sends the cached
  answer), and records when it last heard from each device, which is how a run notices a dead one. A
  message it cannot use (schema, another device's envelope, data that does not fill its shape, the wrong
  width, labels outside the classes or not one per sample, non-finite values) goes to
  ``tinylarge/_deadletter/<domain>`` with the reason, before any model is touched.
* :class:`DeviceLink` is one device's connection: :meth:`DeviceLink.exchange` publishes a batch and
  waits (``timeout_s``) for the matching answer. Both ends count the payload bytes they send and receive.
* :class:`LocalLink` calls the server directly, nothing on any wire (the centralised baseline).

Both MQTT ends take ``ca``, ``cert`` and ``key`` (PEM paths) for ``mqtts://`` brokers, as every ``--ca``,
``--cert``, ``--key`` option does. On the broker ``tinylarge broker config`` writes, a device user may write
only its own ``smashed`` and read its own ``cutgrad``/``splitpred`` in its own domain; the cloud end runs as
the cloud user or a ``--service-user``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

from shared.integration.split import wire
from shared.integration.split.cloud import CloudServer
from shared.protocol import messages
from shared.transport.mqtt import MqttClient, MqttConfig

log = logging.getLogger(__name__)


def _client(url: str, client_id: str, ca: str | None = None, cert: str | None = None,
            key: str | None = None) -> MqttClient:
    """An MQTT client whose sockets send at once (TCP_NODELAY); ``ca``/``cert``/``key`` for ``mqtts://``.

    One batch waits for one answer, so Nagle's algorithm holding a small packet until the previous one
    is acknowledged (which the peer's delayed ACK holds back up to 40 ms) would dominate each exchange.
    """
    client = MqttClient(MqttConfig(url=url, client_id=client_id, clean_session=True, ca=ca, certfile=cert,
                                   keyfile=key))

    def nodelay(_client: Any, _userdata: Any, sock: Any) -> None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    client._paho.on_socket_open = nodelay  # paho calls it for every socket, reconnects included
    return client


class LinkTimeout(TimeoutError):
    """No answer across the cut within the timeout."""


class CloudService:
    """The cloud end: smashed in, cutgrad / splitpred out, for the devices in :attr:`devices`."""

    def __init__(self, url: str, domain: str, server: CloudServer, model: str, client_id: str,
                 key_of: Callable[[str], str], grad_dtype: str = "float16", infer_key: str | None = None,
                 ca: str | None = None, cert: str | None = None, key: str | None = None):
        self.domain, self.server, self.key_of, self.grad_dtype = domain, server, key_of, grad_dtype
        self.infer_key = infer_key  #: the server-side model answering inference batches (None: the global one)
        self.envelope = wire.Envelope(client_id, model)
        self.devices: set[str] = set()
        self.last_seen: dict[str, float] = {}
        self.bytes_in: defaultdict[str, int] = defaultdict(int)
        self.bytes_out: defaultdict[str, int] = defaultdict(int)
        self.errors: list[str] = []
        self.round: int | None = None  #: the round (epoch) being trained; batches of others are ignored
        self._answered: dict[str, tuple[tuple[int, int, str], str, bytes]] = {}
        self._lock = threading.Lock()
        self.client = _client(url, client_id, ca, cert, key)

    def start(self) -> CloudService:
        self.client.start()
        self.client.subscribe(f"{messages.TOPIC_ROOT}/{self.domain}/+/{wire.SMASHED}", self._on_smashed, qos=1)
        return self

    def stop(self) -> None:
        self.client.stop(flush_timeout_s=5.0)

    def admit(self, device: str) -> None:
        """Answer ``device`` and restart its inactivity clock (a run does this when a turn or round starts)."""
        with self._lock:
            self.devices.add(device)
            self.last_seen[device] = time.monotonic()

    def evict(self, device: str) -> None:
        """Stop answering ``device`` (declared dead): its late batches can no longer change a model."""
        with self._lock:
            self.devices.discard(device)

    def idle_s(self, device: str) -> float:
        with self._lock:
            return time.monotonic() - self.last_seen.get(device, 0.0)

    def _on_smashed(self, topic: str, payload: bytes) -> None:
        try:
            device = messages.parse_topic(topic).device
            msg = messages.decode(self.domain, wire.SMASHED, payload)
            if msg["device"] != device:
                raise messages.MessageError(f"envelope device {msg['device']!r} != topic device {device!r}")
        except messages.MessageError as exc:
            self._refuse(topic, payload, exc.reason)
            return
        with self._lock:
            if device not in self.devices:
                return  # another run's device, or a dead one's late message
            self.last_seen[device] = time.monotonic()
            self.bytes_in[device] += len(payload)
            if self.round is not None and msg["round"] != self.round:
                return  # a batch of another round (a straggler's): it must not touch this round's models
            ident = (msg["round"], msg["batch"], msg["phase"])
            cached = self._answered.get(device)
        if cached is not None and cached[0] == ident:  # a redelivery: answer again, learn nothing twice
            self._send(device, cached[1], cached[2])
            return
        if cached is not None and ident[:2] < cached[0][:2]:
            return  # an older batch redelivered: its device has moved on, nothing waits for it
        try:
            acts, labels = self._arrays(msg)
            base = {"round": msg["round"], "batch": msg["batch"]}
            if labels is not None:
                grad, loss = self.server.step(self.key_of(device), acts, labels)
                out = {**self.envelope.next(), **base, **wire.pack(grad, self.grad_dtype), "loss": max(loss, 0.0)}
                stream = wire.CUTGRAD
            else:
                classes = self.server.predict(acts, key=self.infer_key)
                out = {**self.envelope.next(), **base, "classes": [int(c) for c in classes]}
                stream = wire.SPLITPRED
        except ValueError as exc:  # MessageError is one; the server's own checks are the last line
            self._refuse(topic, payload, getattr(exc, "reason", str(exc)))
            return
        data = messages.encode(self.domain, stream, out)
        with self._lock:
            self._answered[device] = (ident, stream, data)
        self._send(device, stream, data)

    def _arrays(self, msg: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
        """(activations, labels or None for inference) of a decoded message; MessageError if they cannot be used."""
        acts = wire.unpack(msg)  # data that does not fill its shape, bad base64, non-finite values
        if acts.shape[1] != self.server.in_width:
            raise messages.MessageError(f"activations of width {acts.shape[1]}; the cloud model takes width "
                                        f"{self.server.in_width}")
        if msg["phase"] != "train":
            return acts, None
        labels = np.asarray(msg.get("labels", []), np.int64)
        if len(labels) != len(acts):
            raise messages.MessageError(f"{len(labels)} labels for {len(acts)} samples")
        if labels.min() < 0 or labels.max() >= self.server.n_classes:
            raise messages.MessageError(f"labels outside 0..{self.server.n_classes - 1}")
        return acts, labels

    def _refuse(self, topic: str, payload: bytes, reason: str) -> None:
        """Record ``reason`` and dead-letter the message (nothing of it reached a model)."""
        with self._lock:
            self.errors.append(reason)
        log.warning("split cloud: refused a smashed message on %r: %s", topic[:120], reason)
        record = messages.deadletter(self.domain, topic, reason, payload, int(time.time() * 1000))
        self.client.publish(messages.deadletter_topic(self.domain), record, qos=1)

    def _send(self, device: str, stream: str, data: bytes) -> None:
        with self._lock:
            self.bytes_out[device] += len(data)
        self.client.publish(messages.topic(self.domain, device, stream), data, qos=1)


class DeviceLink:
    """One device's MQTT connection across the cut."""

    def __init__(self, url: str, domain: str, device: str, model: str, dtype: str = "float16",
                 timeout_s: float = 10.0, ca: str | None = None, cert: str | None = None, key: str | None = None):
        if dtype not in wire.WIRE_DTYPES:
            raise ValueError(f"wire dtype {dtype!r}: expected one of {', '.join(wire.WIRE_DTYPES)}")
        self.domain, self.device, self.dtype, self.timeout_s = domain, device, dtype, timeout_s
        self.envelope = wire.Envelope(device, model)
        self.bytes_up = 0
        self.bytes_down = 0
        self.messages = 0
        self._replies: dict[tuple[int, int], dict[str, Any]] = {}
        self._cond = threading.Condition()
        self.client = _client(url, f"split-{device}", ca, cert, key)

    def start(self) -> DeviceLink:
        self.client.start()
        for stream in (wire.CUTGRAD, wire.SPLITPRED):
            self.client.subscribe(messages.topic(self.domain, self.device, stream), self._on_reply(stream), qos=1)
        return self

    def stop(self) -> None:
        self.client.stop(flush_timeout_s=2.0)

    def abort(self) -> None:
        """Vanish as a crashed device would (no DISCONNECT)."""
        self.client.abort()

    def _on_reply(self, stream: str) -> Callable[[str, bytes], None]:
        def handle(topic: str, payload: bytes) -> None:
            try:
                msg = messages.decode(self.domain, stream, payload)
            except messages.MessageError as exc:
                log.warning("split device %s: refused a %s message: %s", self.device, stream, exc.reason)
                return
            with self._cond:
                key = (msg["round"], msg["batch"])
                if key not in self._replies:
                    self.bytes_down += len(payload)
                self._replies[key] = msg
                self._cond.notify_all()
        return handle

    def _send(self, rnd: int, batch: int, fields: dict[str, Any], phase: str) -> dict[str, Any]:
        msg = {**self.envelope.next(), "round": rnd, "batch": batch, "phase": phase, **fields}
        data = messages.encode(self.domain, wire.SMASHED, msg)
        if not self.client.publish(messages.topic(self.domain, self.device, wire.SMASHED), data, qos=1,
                                   timeout_s=self.timeout_s):
            raise LinkTimeout(f"{self.device}: could not queue batch {rnd}/{batch}")
        self.bytes_up += len(data)
        self.messages += 1
        deadline = time.monotonic() + self.timeout_s
        with self._cond:
            while (rnd, batch) not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LinkTimeout(f"{self.device}: no answer to batch {rnd}/{batch} within {self.timeout_s:g} s")
                self._cond.wait(left)
            return self._replies.pop((rnd, batch))

    def exchange(self, rnd: int, batch: int, acts: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
        """Send a training batch's activations and labels; return (gradient at the cut, loss)."""
        fields = {**wire.pack(acts, self.dtype), "labels": [int(v) for v in labels]}
        reply = self._send(rnd, batch, fields, "train")
        return wire.unpack(reply), float(reply["loss"])

    def infer(self, rnd: int, batch: int, q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
        """Send int8 activations (with their scale and zero point); return the cloud's classes."""
        reply = self._send(rnd, batch, wire.pack(q, "int8", scale, zero_point), "infer")
        return np.asarray(reply["classes"], np.int64)


class LocalLink:
    """The server called in-process: the centralised baseline (no wire, no bytes)."""

    bytes_up = bytes_down = messages = 0

    def __init__(self, server: CloudServer, key: str):
        self.server, self.key = server, key

    def exchange(self, rnd: int, batch: int, acts: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
        return self.server.step(self.key, acts, labels)
