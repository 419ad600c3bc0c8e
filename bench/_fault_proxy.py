"""A small TCP proxy on loopback whose link can be cut and restored, for network-fault scenarios.

    client --TCP--> proxy (127.0.0.1:port) --TCP--> upstream (the broker)

:meth:`TcpProxy.cut` closes the listening socket and every relayed connection at once (both sides
see the connection drop, as with a pulled cable followed by a timeout); :meth:`TcpProxy.restore`
listens again on the SAME port, so clients reconnect to the address they know. Bytes in flight
inside the proxy when it is cut are lost, which is what a real cut does to them.
"""

from __future__ import annotations

import selectors
import socket
import threading

_CHUNK = 64 * 1024


class TcpProxy:
    """Relay 127.0.0.1:``port`` to ``upstream_host:upstream_port`` on one background thread."""

    def __init__(self, upstream_host: str, upstream_port: int, port: int = 0):
        self.upstream = (upstream_host, upstream_port)
        self.port = port
        self._sel = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._peer: dict[socket.socket, socket.socket] = {}
        self._thread: threading.Thread | None = None
        self._running = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self.connections = 0  # accepted in all
        self.cuts = 0

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> TcpProxy:
        self._running = True
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._listen()
        self._thread = threading.Thread(target=self._loop, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def _listen(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(512)
        s.setblocking(False)
        self.port = s.getsockname()[1]
        with self._lock:
            self._listener = s
            self._sel.register(s, selectors.EVENT_READ, "accept")
        self._wake()

    def cut(self) -> None:
        """Stop listening and drop every relayed connection (both directions)."""
        with self._lock:
            if self._listener is not None:
                self._sel.unregister(self._listener)
                self._listener.close()
                self._listener = None
            for s in list(self._peer):
                self._close_pair(s)
            self.cuts += 1
        self._wake()

    def restore(self) -> None:
        """Listen again on the same port."""
        if self._listener is None:
            self._listen()

    def stop(self) -> None:
        self.cut()
        self._running = False
        self._wake()
        if self._thread is not None:
            self._thread.join(5)
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ relay
    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _close_pair(self, s: socket.socket) -> None:
        """Close ``s`` and its peer; the caller holds the lock."""
        other = self._peer.pop(s, None)
        for sock in (s, other):
            if sock is None:
                continue
            self._peer.pop(sock, None)
            try:
                self._sel.unregister(sock)
            except (KeyError, ValueError):
                pass
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self) -> None:
        with self._lock:
            if self._listener is None:
                return
            try:
                client, _ = self._listener.accept()
            except BlockingIOError:
                return
        try:
            upstream = socket.create_connection(self.upstream, timeout=2)
        except OSError:
            client.close()  # upstream down: the client sees its connection refused-ish and retries
            return
        for s in (client, upstream):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._peer[client] = upstream
            self._peer[upstream] = client
            self._sel.register(client, selectors.EVENT_READ, "relay")
            self._sel.register(upstream, selectors.EVENT_READ, "relay")
            self.connections += 1

    def _relay(self, s: socket.socket) -> None:
        with self._lock:
            other = self._peer.get(s)
            if other is None:
                return
            try:
                data = s.recv(_CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._close_pair(s)
                return
            try:
                other.setblocking(True)  # loopback: a short blocking send keeps the relay simple
                other.settimeout(5)
                other.sendall(data)
                other.setblocking(False)
            except OSError:
                self._close_pair(s)

    def _loop(self) -> None:
        while self._running:
            for key, _ in self._sel.select(timeout=0.5):
                if key.data == "wake":
                    try:
                        self._wake_r.recv(4096)
                    except OSError:
                        pass
                elif key.data == "accept":
                    self._accept()
                else:
                    self._relay(key.fileobj)  # type: ignore[arg-type]
