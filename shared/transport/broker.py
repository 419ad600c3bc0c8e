"""The embedded MQTT broker for local demos: amqtt (MQTT 3.1.1) in-process, on its own thread.

Deployments point ``--mqtt`` (or ``TINYLARGE_MQTT``) at a real broker such as Mosquitto; with none
given, :func:`broker_for` starts an :class:`EmbeddedBroker` on 127.0.0.1 and a free port.

What amqtt 0.12 does with QoS 1 and persistent sessions (checked by tests/shared/test_broker.py):

* ``clean_session=False`` sessions persist across disconnects and queue QoS 1 messages published
  while their client is away; they are delivered when it reconnects (subscriptions are kept too).
  This needs :class:`shared.transport._amqtt.LocalDemoAuthPlugin`: amqtt's stock anonymous plugin marks
  every session anonymous, and anonymous sessions get no offline queue.
* A QoS 1 message already sent to a client but not yet PUBACKed when the connection drops is
  *forgotten* by amqtt (it stops waiting and drops it from the session), so a consumer killed
  mid-stream loses its in-flight messages on amqtt. amqtt has no in-flight window either: it pushes
  everything it has to a connected consumer at once, so a consumer SIGKILLed after storing 75 of 300
  delivered messages loses the other 225 (Mosquitto, window 20, re-sends them and all 400 of that
  scenario are stored). Use Mosquitto where exactly-once storage after crashes matters.
* Queued messages are re-sent with the retain flag set, and on reconnect amqtt also replays retained
  messages matching any filter known to the broker (at QoS 0); :class:`shared.transport.mqtt.MqttClient`
  parks messages no handler matches instead of dispatching them.
* Sessions and retained messages live in memory only: they are gone when the broker stops.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

NOTICE = ("embedded MQTT broker for local demos only (no TLS, no auth) — "
          "use --mqtt with a real broker for deployments")
_notice_shown = False
_notice_lock = threading.Lock()


def _show_notice_once() -> None:
    global _notice_shown
    with _notice_lock:
        if _notice_shown:
            return
        _notice_shown = True
    log.warning(NOTICE)  # with no logging configured, Python's last-resort handler prints it to stderr


def _quiet_amqtt() -> None:
    """amqtt logs every connection at INFO and client hiccups as warnings; keep only errors."""
    for name in ("amqtt", "transitions"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.ERROR)


class EmbeddedBroker:
    """amqtt running in this process on a daemon thread with its own asyncio loop.

    ``port=0`` picks a free port. ``session_expiry_s`` drops persistent sessions (and their queued
    messages) of clients that stay away longer than that; None keeps them while the broker runs.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, session_expiry_s: int | None = 3600):
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} out of range 0-65535 (0 picks a free port)")
        self.host = host
        self.port = port
        self.session_expiry_s = session_expiry_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None

    @property
    def running(self) -> bool:
        return self._broker is not None

    @property
    def url(self) -> str:
        if not self.running:
            raise RuntimeError("embedded broker is not running")
        return f"mqtt://{self.host}:{self.port}"

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "session_expiry_interval": self.session_expiry_s,
            "plugins": {"shared.transport._amqtt.LocalDemoAuthPlugin": {}},
        }

    async def _astart(self) -> int:
        from amqtt.broker import Broker

        broker = Broker(self._config(), loop=asyncio.get_running_loop())
        await broker.start()
        server = broker._servers["default"].instance  # amqtt keeps the asyncio.Server here
        port = int(server.sockets[0].getsockname()[1])
        self._broker = broker
        return port

    async def _ashutdown(self, timeout_s: float) -> None:
        broker = self._broker
        # stop accepting first: amqtt closes its listener last, so clients that reconnect at once
        # would otherwise open new sessions in the middle of its shutdown (and can stall it)
        for server in broker._servers.values():
            if server.instance is not None:
                server.instance.close()
        # drop the client connections too: amqtt 0.12's shutdown can wait forever for a reader task
        # that a connected client keeps busy
        for _session, handler in list(broker._sessions.values()):
            writer = getattr(getattr(handler, "writer", None), "_writer", None)
            if writer is not None:
                writer.transport.abort()
        await asyncio.sleep(0)
        shutdown = asyncio.ensure_future(broker.shutdown())
        done, _ = await asyncio.wait([shutdown], timeout=timeout_s)
        if not done:
            log.warning("embedded broker did not shut down within %g s; cancelling its tasks", timeout_s)
        # amqtt leaves per-client tasks behind; finish them here, not in the garbage collector
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        for task in tasks:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: no "exception never retrieved" at garbage collection
        await asyncio.get_running_loop().shutdown_asyncgens()

    def start(self, timeout_s: float = 10.0) -> str:
        """Start listening; return ``mqtt://HOST:PORT``."""
        if self.running:
            return self.url
        _quiet_amqtt()
        _show_notice_once()
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="tinylarge-amqtt", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self.port = asyncio.run_coroutine_threadsafe(self._astart(), loop).result(timeout_s)
        except BaseException:
            self._stop_loop()
            raise
        log.info("embedded MQTT broker listening on %s", self.url)
        return self.url

    def stop(self, timeout_s: float = 10.0) -> None:
        """Shut the broker down (disconnecting clients, without sending their last wills)."""
        if self._loop is None:
            return
        if self._broker is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._ashutdown(timeout_s / 2), self._loop).result(timeout_s)
            except Exception as exc:  # shutting down: report it, then free the thread anyway
                log.warning("embedded broker shutdown: %r", exc)
            self._broker = None
        self._stop_loop()

    def _stop_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)
        if not loop.is_running():
            loop.close()

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def broker_for(url: str | None) -> Iterator[str]:
    """Yield ``url`` if given; otherwise run an :class:`EmbeddedBroker` for the block and yield its URL."""
    if url:
        yield url
        return
    with EmbeddedBroker() as broker:
        yield broker.url
