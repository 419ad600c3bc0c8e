"""MQTT transport on paho-mqtt 2 (MQTT 3.1.1, so it talks to amqtt and Mosquitto alike).

The exchange, top to bottom, for one device and one consumer::

    device  --CONNECT(clean=0, will=status offline, retained)-->  broker  --CONNACK-->  device
    device  --PUBLISH qos1 mid=7 .../inference-->                 broker  --PUBACK 7-->  device
    broker  --PUBLISH qos1 mid=3 .../inference-->  consumer: worker thread runs the handler,
                                                   then  --PUBACK 3-->  broker
    consumer killed before PUBACK 3: the broker keeps mid 3 in the session and re-sends it (DUP)
    when the same client id reconnects with clean_session=0.

:class:`MqttClient` keeps a bounded outgoing queue (QoS >= 1 messages not yet PUBACKed, including
those published while disconnected, which paho sends after it reconnects with exponential backoff),
acknowledges incoming QoS 1 messages only after their handler returned, and re-subscribes when the
broker lost the session. Delivery is at least once: a message can be handled twice around a
reconnect, so handlers must be idempotent (store on (device, seq)).

A batch subscription (:meth:`MqttClient.subscribe_batch`) lets the worker take one message, drain the
consecutive ones already queued for the same route (up to ``max_batch``), and hand them over in one
call, in arrival order; all of them are PUBACKed after that call returned. A consumer can then store
a whole batch in one transaction before any of it is acknowledged.

On the hot path (shared/transport/_paho.py) paho reads its socket through a buffer (a burst of messages in one
read), a handled batch is PUBACKed in one write, and ``MqttConfig.tcp_nodelay`` (default on) sends each packet
at once instead of letting Nagle's algorithm hold it for the peer's delayed ACK.

One client id, one connection: a broker closes a connection when another one arrives with its client id
(with ``use_username_as_clientid``, as ``tinylarge broker config`` writes it, the client id is the user
name), and two processes that both reconnect would knock each other off for ever. So :meth:`MqttClient.start`
of a client that logs in (a user name or a client certificate) watches its new connection for
``takeover_check_s`` (default 1 s): if the broker closes it meanwhile, the other process reconnected, and
start raises :class:`shared.errors.UserError` naming the user instead of fighting it. Later, a connection
the broker closes within seconds of its CONNACK, three times in a row, means the same; the client stops
reconnecting, logs one error line and refuses to publish (:attr:`MqttClient.fatal`). (The embedded amqtt
broker does not close the older connection on a takeover; it stops delivering to it.)
"""

from __future__ import annotations

import collections
import logging
import queue
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from shared.protocol.endpoints import MqttEndpoint, parse_mqtt_url
from shared.transport._paho import BufferedClient, set_nodelay
from shared.transport._worker import MAX_BATCH, BatchHandler, Handler, _Route, _Sink, _Worker, _WorkItem

log = logging.getLogger(__name__)

#: QoS >= 1 messages paho keeps unacknowledged on the wire at once (the rest wait in its queue)
MAX_INFLIGHT = 32
#: how long subscribe() waits for the broker's SUBACK
SUBACK_TIMEOUT_S = 10.0
#: a connection the broker closes within this many seconds of its CONNACK counts as taken over
TAKEOVER_WINDOW_S = 5.0
#: that many in a row, after start: another client holds our client id; stop instead of knocking it off in turn
TAKEOVER_LIMIT = 3
#: how long start() watches a new connection that logs in for a takeover by a process already connected
TAKEOVER_CHECK_S = 1.0
COUNT_KEYS = ("published", "acked", "received", "handled", "handler_errors", "dropped", "reconnects",
              "parked")


@dataclass
class MqttConfig:
    """How one client connects. Defaults suit a device or a consumer on a local network."""

    url: str  #: mqtt://[user:pass@]host:port or mqtts://...
    client_id: str  #: fixed per process role, so a persistent session survives restarts
    clean_session: bool = False  #: False: persistent session, a restarted consumer receives what it missed
    keepalive_s: int = 30  #: PINGREQ interval; the broker declares the client dead after 1.5x this
    ca: str | None = None  #: CA certificate (PEM) for mqtts://; None uses the system's CAs
    certfile: str | None = None  #: client certificate (PEM) for mutual TLS
    keyfile: str | None = None  #: client private key (PEM) for mutual TLS
    max_queue: int = 10_000  #: bounded outgoing queue: QoS >= 1 messages not yet PUBACKed
    reconnect_min_s: float = 0.2  #: first reconnect delay; doubles on each failure ...
    reconnect_max_s: float = 30.0  #: ... up to this
    will_topic: str | None = None  #: retained last will, published by the broker if we vanish
    will_payload: bytes | None = None
    #: seconds start() watches the new connection for a takeover (None: TAKEOVER_CHECK_S for a client that
    #: logs in with a user name or a certificate, where the broker's client id is the identity; else 0)
    takeover_check_s: float | None = None
    #: TCP_NODELAY on every socket of this client (reconnects included): each packet leaves at once instead of
    #: waiting, under Nagle's algorithm, for the peer to acknowledge the previous one (which its delayed ACK
    #: can hold back up to 40 ms). MQTT is small request/response packets (PUBLISH/PUBACK), so on by default;
    #: False lets the kernel coalesce small packets on a link where their count matters more than latency.
    tcp_nodelay: bool = True

    def __post_init__(self) -> None:
        parse_mqtt_url(self.url)  # raises ValueError naming what is wrong
        if not self.client_id or len(self.client_id) > 128:
            raise ValueError(f"client_id must be 1-128 characters, got {self.client_id!r}")
        if self.keepalive_s < 1:
            raise ValueError(f"keepalive_s must be >= 1, got {self.keepalive_s}")
        if self.max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {self.max_queue}")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise ValueError(
                "need 0 < reconnect_min_s <= reconnect_max_s, "
                f"got {self.reconnect_min_s}, {self.reconnect_max_s}"
            )
        if (self.will_topic is None) != (self.will_payload is None):
            raise ValueError("will_topic and will_payload must be given together")
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("certfile and keyfile must be given together")
        if self.takeover_check_s is not None and self.takeover_check_s < 0:
            raise ValueError(f"takeover_check_s must be >= 0, got {self.takeover_check_s}")


def _check_filter(topic_filter: str) -> None:
    """ValueError unless ``topic_filter`` is a valid MQTT filter ('+' a whole level, '#' only last)."""
    levels = topic_filter.split("/") if topic_filter else []
    if not levels or len(topic_filter.encode()) > 65535:
        raise ValueError(f"invalid topic filter {topic_filter!r}: empty or too long")
    for i, level in enumerate(levels):
        if ("+" in level and level != "+") or ("#" in level and (level != "#" or i != len(levels) - 1)):
            raise ValueError(f"invalid topic filter {topic_filter!r}: '+' must fill a level, '#' come last")


class MqttClient(_Worker):
    """A paho client with a bounded outgoing queue, ordered off-thread handlers and acks after handling."""

    def __init__(self, cfg: MqttConfig):
        self.cfg = cfg
        self.endpoint: MqttEndpoint = parse_mqtt_url(cfg.url)
        if not self.endpoint.tls and (cfg.ca or cfg.certfile):
            raise ValueError(f"ca/certfile given but {self.endpoint} is not TLS: use mqtts://")
        c = BufferedClient(  # paho's, reading its socket through a buffer (shared.transport._paho)
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            clean_session=cfg.clean_session,
            protocol=paho.MQTTv311,
        )
        if self.endpoint.username is not None:
            c.username_pw_set(self.endpoint.username, self.endpoint.password)
        if self.endpoint.tls:
            c.tls_set(ca_certs=cfg.ca, certfile=cfg.certfile, keyfile=cfg.keyfile)
        if cfg.will_topic is not None:
            c.will_set(cfg.will_topic, cfg.will_payload, qos=1, retain=True)
        c.max_inflight_messages_set(min(MAX_INFLIGHT, cfg.max_queue))
        c.max_queued_messages_set(cfg.max_queue)
        c.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)  # type: ignore[arg-type]  # floats work
        c.manual_ack_set(True)
        if cfg.tcp_nodelay:
            c.on_socket_open = set_nodelay  # paho calls it for every new socket, reconnects included
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._on_connect_fail
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        self._paho = c

        self._cond = threading.Condition()  # guards everything below; never held while calling paho
        self._counts: Counter[str] = Counter({k: 0 for k in COUNT_KEYS})
        self._unacked: set[int] = set()  # mids of our QoS >= 1 publishes awaiting PUBACK
        self._early_acks: set[int] = set()  # PUBACKs that raced ahead of publish() returning
        self._subs: dict[str, tuple[_Sink, int]] = {}  # filter -> (sink, qos), for (re)subscribing
        self._routes: dict[str, _Sink] = {}  # the worker's own copy, updated in queue order
        self._matches: dict[str, tuple[str, ...]] = {}  # the worker's topic -> matching routes
        self._parked: collections.deque[tuple[int, paho.MQTTMessage]] = collections.deque()
        self._suback: dict[int, list[Any]] = {}
        self._connected = False
        self._connect_error: str | None = None
        self._connects = 0
        self._generation = 0  # bumped per connection; acks go only to the connection that delivered
        self._connected_at: float | None = None  # monotonic time of the last CONNACK
        self._short_lived = 0  # connections in a row the broker closed within TAKEOVER_WINDOW_S
        self._checking = False  # start() is watching the first connection for a takeover
        self._fatal: str | None = None  # why this client stopped for good (another holds its client id)
        self._started = False
        self._accepting = True
        self._work: queue.Queue[_WorkItem] = queue.Queue()
        self._worker: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout_s: float = 10.0) -> None:
        """Connect, start the network loop and the handler worker; ConnectionError says why it failed."""
        if self._started:
            return
        ep = self.endpoint
        self._worker = threading.Thread(target=self._work_loop, name=f"mqtt-worker-{self.cfg.client_id}",
                                        daemon=True)
        self._worker.start()
        try:
            self._paho.connect(ep.host, ep.port, keepalive=self.cfg.keepalive_s)
        except ssl.SSLError as exc:
            self._stop_worker()
            raise ConnectionError(f"TLS handshake with {ep} failed: {exc}") from exc
        except OSError as exc:
            self._stop_worker()
            raise ConnectionError(f"broker unreachable at {ep}: {exc.strerror or exc}") from exc
        self._paho.loop_start()
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._connected and self._connect_error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            ok, error = self._connected, self._connect_error
        if not ok:
            self._paho.disconnect()
            self._paho.loop_stop()
            self._stop_worker()
            if error is not None:
                raise ConnectionError(f"broker {ep} refused the connection: {error}")
            raise ConnectionError(f"no CONNACK from {ep} within {timeout_s:g} s")
        self._check_takeover()
        self._started = True
        log.info("MQTT client %s connected to %s", self.cfg.client_id, ep)

    def _check_takeover(self) -> None:
        """Watch the new connection for ``takeover_check_s``; UserError if another client took it back."""
        from shared.errors import UserError

        check_s = self.cfg.takeover_check_s
        if check_s is None:
            check_s = TAKEOVER_CHECK_S if (self.endpoint.username is not None or self.cfg.certfile) else 0.0
        if check_s <= 0:
            return
        deadline = time.monotonic() + check_s
        with self._cond:
            self._checking = True
            while self._connected and self._fatal is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            self._checking = False
            fatal = self._fatal
        if fatal is not None:
            self._paho.loop_stop()
            self._stop_worker()
            raise UserError(fatal)

    def _identity(self) -> str:
        if self.endpoint.username is not None:
            return f"MQTT user {self.endpoint.username!r}"
        if self.cfg.certfile:
            return f"the identity of certificate {self.cfg.certfile}"
        return f"client id {self.cfg.client_id!r}"

    def _takeover_message(self, times: int) -> str:
        how = ("when the other reconnected" if times <= 1
               else f"{times} times within seconds of connecting, as the other reconnected")
        return (f"another process is connected to {self.endpoint} as {self._identity()}: the broker closed this "
                f"connection {how} (one identity holds one connection); give this process its own user "
                f"(`tinylarge broker config --service-user NAME`, or the device's own id) or stop the other")

    @property
    def fatal(self) -> str | None:
        """Why this client stopped for good (another process holds its identity), else None."""
        with self._cond:
            return self._fatal

    def stop(self, flush_timeout_s: float = 10.0) -> None:
        """Wait for outstanding PUBACKs and queued handlers (up to the timeout), then DISCONNECT."""
        if not self._started:
            return
        deadline = time.monotonic() + flush_timeout_s
        if not self.wait_all_acked(flush_timeout_s):
            log.warning("MQTT client %s stopping with %d message(s) not acknowledged",
                        self.cfg.client_id, len(self._unacked))
        with self._cond:
            self._accepting = False  # later deliveries stay unacked: the session re-sends them
        self._work.put(None)
        if self._worker is not None:
            self._worker.join(max(0.0, deadline - time.monotonic()))
        self._paho.disconnect()
        self._paho.loop_stop()
        with self._cond:
            self._connected = False
        self._started = False

    def abort(self) -> None:
        """Drop the connection WITHOUT a DISCONNECT, as a crash would: the broker publishes our last will.

        For fault tests and demos; the client is unusable afterwards.
        """
        self._accepting = False
        self._paho.loop_stop()  # stop the network thread first, so it cannot reconnect
        sock = self._paho.socket()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
        self._work.put(None)
        with self._cond:
            self._connected = False
        self._started = False

    def __enter__(self) -> MqttClient:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def connected(self) -> bool:
        return self._connected

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until connected (e.g. after the broker came back); False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._connected:
                left = deadline - time.monotonic()
                if left <= 0 or self._fatal is not None:
                    return False
                self._cond.wait(left)
            return True

    @property
    def counts(self) -> dict[str, int]:
        """published, acked, received, handled, handler_errors, dropped, reconnects, and parked

        (messages waiting, unacknowledged, for a handler to be subscribed)."""
        with self._cond:
            return dict(self._counts)

    # ------------------------------------------------------------------ publish
    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
                timeout_s: float | None = None) -> bool:
        """Queue a message; True once paho holds it (sent, or kept for sending after a reconnect).

        While the outgoing queue is full, blocks until PUBACKs free room, up to ``timeout_s`` (None:
        no limit); then returns False and counts a drop. A QoS 0 message cannot wait for a
        connection: while disconnected it is dropped (False).
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            if self._fatal is not None:
                with self._cond:
                    self._counts["dropped"] += 1
                return False
            info = self._paho.publish(topic, payload, qos=qos, retain=retain)
            rc = info.rc
            if rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                with self._cond:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        self._counts["dropped"] += 1
                        return False
                    # woken by a PUBACK; re-check at least every 100 ms
                    self._cond.wait(0.1 if left is None else min(left, 0.1))
                continue
            with self._cond:
                if rc == MQTTErrorCode.MQTT_ERR_SUCCESS or (rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos > 0):
                    self._counts["published"] += 1
                    if qos > 0:
                        if info.mid in self._early_acks:
                            self._early_acks.discard(info.mid)
                            self._counts["acked"] += 1
                        else:
                            self._unacked.add(info.mid)
                    else:
                        self._early_acks.discard(info.mid)
                    return True
                self._counts["dropped"] += 1
            log.warning("MQTT publish to %s dropped: %s", topic, paho.error_string(rc))
            return False

    def wait_all_acked(self, timeout_s: float) -> bool:
        """True once every QoS >= 1 message published so far has been PUBACKed."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._unacked:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    # ------------------------------------------------------------------ subscribe
    def subscribe(self, topic_filter: str, handler: Handler, qos: int = 1) -> None:
        """Call ``handler(topic, payload)`` for matching messages, in arrival order, on the worker thread.

        Blocks for the SUBACK when connected (RuntimeError if the broker refuses the filter); when not
        connected, the subscription is made on the next connect.
        """
        self._subscribe(topic_filter, _Sink(handler), qos)

    def subscribe_batch(self, topic_filter: str, handler: BatchHandler, qos: int = 1,
                        max_batch: int = MAX_BATCH) -> None:
        """Call ``handler([(topic, payload), ...])`` with up to ``max_batch`` matching messages at once.

        The worker takes one message, then those already queued right behind it for the same route,
        without waiting for more; they come in arrival order and are PUBACKed only after the handler
        returned. If the handler raises, each message of the batch is retried alone (a batch of one),
        so one bad message cannot sink the others; a message whose retry raises too is counted in
        ``handler_errors`` and acknowledged, as with :meth:`subscribe`. Otherwise as :meth:`subscribe`.
        """
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._subscribe(topic_filter, _Sink(handler, batch=True, max_batch=max_batch), qos)

    def _subscribe(self, topic_filter: str, sink: _Sink, qos: int) -> None:
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos}")
        _check_filter(topic_filter)
        with self._cond:
            self._subs[topic_filter] = (sink, qos)
            connected = self._connected
        self._work.put(_Route(topic_filter, sink))  # before SUBSCRIBE: the worker routes in order
        if not connected:
            return
        rc, mid = self._paho.subscribe(topic_filter, qos)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            return  # lost the connection meanwhile: _on_connect subscribes again
        deadline = time.monotonic() + SUBACK_TIMEOUT_S
        with self._cond:  # the SUBACK may have arrived already: _on_subscribe records every one
            while mid not in self._suback and time.monotonic() < deadline and self._connected:
                self._cond.wait(0.1)
            granted = self._suback.pop(mid, None)
        if granted is None:
            log.warning("no SUBACK for %s yet; it will be retried on reconnect", topic_filter)
            return
        if any(getattr(g, "is_failure", False) for g in granted):
            with self._cond:
                self._subs.pop(topic_filter, None)
            self._work.put(_Route(topic_filter, None))
            raise RuntimeError(f"broker {self.endpoint} refused the subscription to {topic_filter!r}")

    # ------------------------------------------------------------------ paho callbacks (network thread)
    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        if reason_code.is_failure:
            with self._cond:
                self._connect_error = str(reason_code)
                self._cond.notify_all()
            log.warning("MQTT %s: connection refused: %s", self.cfg.client_id, reason_code)
            return
        with self._cond:
            self._connects += 1
            if self._connects > 1:
                self._counts["reconnects"] += 1
            self._generation += 1
            self._connected = True
            self._connected_at = time.monotonic()
            self._connect_error = None
            first = self._connects == 1
            subs = [(f, q) for f, (_, q) in self._subs.items()]
            self._cond.notify_all()
        if subs and (first or self.cfg.clean_session or not flags.session_present):
            client.subscribe(subs)  # the session was lost (or is new): subscribe again; SUBACK not awaited
        if not first:
            log.info("MQTT %s reconnected (session %s)", self.cfg.client_id,
                     "kept" if flags.session_present else "new")

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        now = time.monotonic()
        with self._cond:
            self._connected = False
            unexpected = self._accepting and (self._started or self._checking) and self._fatal is None
            if unexpected:
                quick = self._connected_at is not None and now - self._connected_at < TAKEOVER_WINDOW_S
                self._short_lived = self._short_lived + 1 if quick else 0
                if self._checking or self._short_lived >= TAKEOVER_LIMIT:
                    self._fatal = self._takeover_message(1 if self._checking else self._short_lived)
            fatal = self._fatal if unexpected else None
            self._cond.notify_all()
        if fatal is not None:
            # paho's loop must end instead of reconnecting; loop_stop() joins the network thread (this one)
            threading.Thread(target=client.loop_stop, name="mqtt-stop-on-takeover", daemon=True).start()
            if self._started:
                log.error("MQTT %s stopped: %s", self.cfg.client_id, fatal)
        elif unexpected:
            log.warning("MQTT %s lost its connection (%s); reconnecting", self.cfg.client_id, reason_code)

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        with self._cond:
            self._short_lived = 0  # the broker was away (a restart), not busy with another client of our id

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason_code: Any,
                    properties: Any) -> None:
        with self._cond:
            if mid in self._unacked:
                self._unacked.discard(mid)
                self._counts["acked"] += 1
            else:
                self._early_acks.add(mid)
            self._cond.notify_all()

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reason_codes: list[Any],
                      properties: Any) -> None:
        with self._cond:
            self._suback[mid] = list(reason_codes)
            while len(self._suback) > 1000:  # SUBACKs of re-subscriptions nobody waits for
                self._suback.pop(next(iter(self._suback)))
            for rc in reason_codes:
                if rc.is_failure:
                    log.error("MQTT %s: broker refused a subscription (mid %d)", self.cfg.client_id, mid)
            self._cond.notify_all()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._cond:
            if not self._accepting:
                return  # stopping: left unacknowledged, so the persistent session delivers it again
            self._counts["received"] += 1
            generation = self._generation
        self._work.put((generation, msg))

    def _stop_worker(self) -> None:
        self._work.put(None)
        if self._worker is not None:
            self._worker.join(5)
        self._worker = None
