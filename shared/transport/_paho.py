"""paho's client with the socket settings :class:`shared.transport.mqtt.MqttClient` uses on its hot path.

paho reads every MQTT packet with three ``recv`` calls (the command byte, the length bytes, the rest),
each a system call; :class:`BufferedSocket` serves them from one large read and tells paho's loop
(through ``pending()``, which paho already asks of TLS sockets) that bytes are waiting, so the loop does
not wait in ``select`` for data it holds. :func:`set_nodelay` is the ``on_socket_open`` callback that
sets TCP_NODELAY (``MqttConfig.tcp_nodelay``). :meth:`BufferedClient.ack_many` acknowledges a handled
batch in one write. The socket settings apply to every socket paho opens, reconnects
included; only the paho version pinned in pyproject.toml is tested (``_create_socket`` is paho's own).
"""

from __future__ import annotations

import logging
import socket
import struct
from typing import Any

import paho.mqtt.client as paho

log = logging.getLogger("shared.transport.mqtt")

_PUBACK = struct.Struct("!BBH")  #: fixed header (type, remaining length 2) and the message id
#: bytes asked of the kernel per read (a burst of messages arrives in one read)
READ_BYTES = 64 * 1024


class BufferedSocket:
    """A connected socket (plain or TLS) whose ``recv`` reads ahead; everything else is the socket's."""

    __slots__ = ("_sock", "_buf", "_pos")

    def __init__(self, sock: Any):
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        """Up to ``bufsize`` bytes: from the buffer, else from one read of up to READ_BYTES (which raises, or
        returns b'' at the end of the stream, exactly as the socket's own recv)."""
        if self._pos >= len(self._buf):
            data = self._sock.recv(max(bufsize, READ_BYTES))
            if len(data) <= bufsize:
                return data
            self._buf, self._pos = data, 0
        start = self._pos
        self._pos = min(start + bufsize, len(self._buf))
        return self._buf[start:self._pos]

    def pending(self) -> int:
        """Bytes readable without the kernel: the buffer's, and a TLS socket's decrypted ones."""
        inner = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return len(self._buf) - self._pos + inner

    def fileno(self) -> int:
        return self._sock.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class BufferedClient(paho.Client):
    """paho's client reading through a :class:`BufferedSocket`, and acknowledging many messages in one write."""

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())

    def ack_many(self, mids: list[int]) -> None:
        """PUBACK the QoS 1 messages ``mids`` (manual acknowledgement, MQTT 3.1.1) as one queued write: what
        ``ack(mid, 1)`` sends for each, without a wake-up of the network loop and a send per message."""
        if mids:
            self._packet_queue(paho.PUBACK, b"".join(_PUBACK.pack(paho.PUBACK, 2, mid) for mid in mids), 0, 0)


def set_nodelay(client: paho.Client, userdata: Any, sock: Any) -> None:
    """paho's ``on_socket_open``: disable Nagle's algorithm on the new socket (MqttConfig.tcp_nodelay)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # not a TCP socket (a unix socket, a websocket wrapper)
        log.debug("MQTT: TCP_NODELAY not set on %r", sock)
