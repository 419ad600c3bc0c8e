"""The MQTT client's worker thread: routes, batches, handlers, and acknowledgements after them.

Mixed into :class:`shared.transport.mqtt.MqttClient`, whose state it uses: ``_work`` (the queue the paho
network thread fills), ``_routes``, ``_parked``, ``_cond``, ``_counts``, ``_generation``,
``_connected``, ``_paho`` and ``cfg``. Everything here runs on the one worker thread, so handlers see
messages in arrival order and a PUBACK leaves only after the handler returned.
"""

from __future__ import annotations

import collections
import logging
import queue
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho

from shared.transport._paho import BufferedClient

log = logging.getLogger("shared.transport.mqtt")

Handler = Callable[[str, bytes], None]
BatchHandler = Callable[[list[tuple[str, bytes]]], None]

#: messages with no handler (yet) kept unacknowledged; beyond this the oldest is acknowledged and dropped
MAX_PARKED = 10_000
#: default for the most messages one batch handler call receives
MAX_BATCH = 256
#: topics whose matching routes the worker remembers (one per device and stream); beyond this it starts over
MAX_MATCHES = 100_000


@dataclass(frozen=True)
class _Sink:
    """Where a route delivers: ``handler(topic, payload)``, or ``handler([(topic, payload), ...])``."""

    handler: Handler | BatchHandler
    batch: bool = False
    max_batch: int = 1


@dataclass(frozen=True)
class _Route:
    """Work-queue marker: from here on, route ``topic_filter`` to ``sink`` (None: stop routing)."""

    topic_filter: str
    sink: _Sink | None


_WorkItem = tuple[int, paho.MQTTMessage] | _Route | None


class _Empty:
    """The worker's 'nothing drained ahead' marker (None already means 'stop')."""


_EMPTY = _Empty()


class _Worker:
    """The worker-thread half of MqttClient (see the module docstring for the state it uses)."""

    _work: queue.Queue
    _routes: dict[str, _Sink]
    _matches: dict[str, tuple[str, ...]]  #: topic -> the route filters it matches (cleared when routes change)
    _parked: collections.deque
    _cond: Any
    _counts: Any
    _generation: int
    _connected: bool
    _paho: BufferedClient
    cfg: Any

    def _work_loop(self) -> None:
        pending: _WorkItem | _Empty = _EMPTY  # an item drained ahead that did not fit the batch
        while True:
            if isinstance(pending, _Empty):
                item = self._work.get()
            else:
                item, pending = pending, _EMPTY
            if item is None:
                return
            if isinstance(item, _Route):
                self._add_route(item)
                continue
            generation, msg = item
            filters = self._matching(msg.topic)
            if not filters:
                self._park(generation, msg)
                continue
            batch = [(generation, msg)]
            limit = min(self._routes[f].max_batch if self._routes[f].batch else 1 for f in filters)
            while len(batch) < limit:  # drain what is already queued for the same route, without waiting
                try:
                    nxt = self._work.get_nowait()
                except queue.Empty:
                    break
                if nxt is None or isinstance(nxt, _Route) or self._matching(nxt[1].topic) != filters:
                    pending = nxt
                    break
                batch.append(nxt)
            self._dispatch(batch, [self._routes[f] for f in filters])

    def _matching(self, topic: str) -> tuple[str, ...]:
        found = self._matches.get(topic)
        if found is None:  # paho builds a matcher per call: look each topic up once
            if len(self._matches) >= MAX_MATCHES:
                self._matches.clear()
            found = self._matches[topic] = tuple(f for f in self._routes if paho.topic_matches_sub(f, topic))
        return found

    def _add_route(self, route: _Route) -> None:
        """Register (or drop) a route, then deliver parked messages it matches, in arrival order."""
        self._matches.clear()
        if route.sink is None:
            self._routes.pop(route.topic_filter, None)
            return
        self._routes[route.topic_filter] = route.sink
        still: collections.deque[tuple[int, paho.MQTTMessage]] = collections.deque()
        matched: list[tuple[int, paho.MQTTMessage]] = []
        while self._parked:
            generation, msg = self._parked.popleft()
            if paho.topic_matches_sub(route.topic_filter, msg.topic):
                matched.append((generation, msg))
            else:
                still.append((generation, msg))
        self._parked = still
        with self._cond:
            self._counts["parked"] -= len(matched)
        step = route.sink.max_batch if route.sink.batch else 1
        for i in range(0, len(matched), step):
            self._dispatch(matched[i:i + step], [route.sink])

    def _park(self, generation: int, msg: paho.MQTTMessage) -> None:
        """Hold a message no handler matches yet, unacknowledged.

        A persistent session delivers what it kept right after CONNACK, before the application had a
        chance to call subscribe(); those messages wait here for their handler. (amqtt also replays
        retained messages of other clients' filters on reconnect; those are QoS 0 and never matched.)
        """
        with self._cond:
            self._counts["parked"] += 1
        self._parked.append((generation, msg))
        if len(self._parked) > MAX_PARKED:
            old_generation, old = self._parked.popleft()
            log.warning("MQTT %s: no handler for %s; dropped", self.cfg.client_id, old.topic)
            self._ack(old_generation, old)

    def _dispatch(self, batch: list[tuple[int, paho.MQTTMessage]], sinks: list[_Sink]) -> None:
        """Run every sink on the batch (in order), count, then PUBACK each message."""
        failed = [False] * len(batch)
        for sink in sinks:
            if sink.batch:
                self._run_batch(sink.handler, batch, failed)  # type: ignore[arg-type]
                continue
            for i, (_, msg) in enumerate(batch):
                try:
                    sink.handler(msg.topic, msg.payload)  # type: ignore[call-arg]
                except Exception:
                    failed[i] = True
                    log.exception("MQTT handler for %s raised; message acknowledged and skipped", msg.topic)
        with self._cond:
            self._counts["handler_errors"] += sum(failed)
            self._counts["handled"] += len(batch) - sum(failed)
        self._ack_all(batch)

    @staticmethod
    def _run_batch(handler: BatchHandler, batch: list[tuple[int, paho.MQTTMessage]], failed: list[bool]) -> None:
        try:
            handler([(msg.topic, msg.payload) for _, msg in batch])
            return
        except Exception:
            if len(batch) == 1:
                failed[0] = True
                log.exception("MQTT batch handler for %s raised; message acknowledged and skipped",
                              batch[0][1].topic)
                return
            log.exception("MQTT batch handler raised on %d messages; retrying them one by one", len(batch))
        for i, (_, msg) in enumerate(batch):
            try:
                handler([(msg.topic, msg.payload)])
            except Exception:
                failed[i] = True
                log.exception("MQTT batch handler for %s raised; message acknowledged and skipped", msg.topic)

    def _ack_all(self, batch: list[tuple[int, paho.MQTTMessage]]) -> None:
        """PUBACK a handled batch in one write (QoS 2: one by one), as :meth:`_ack` does each."""
        with self._cond:
            current = self._generation if self._connected else None
        self._paho.ack_many([msg.mid for generation, msg in batch if msg.qos == 1 and generation == current])
        for generation, msg in batch:
            if msg.qos == 2:
                self._ack(generation, msg)

    def _ack(self, generation: int, msg: paho.MQTTMessage) -> None:
        """PUBACK now, unless the connection that delivered it is gone (the session re-sends it)."""
        with self._cond:
            current = generation == self._generation and self._connected
        if msg.qos > 0 and current:
            self._paho.ack(msg.mid, msg.qos)

