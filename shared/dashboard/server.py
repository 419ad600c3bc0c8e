"""``tinylarge dashboard``: serve the live fleet page (uvicorn in a thread), and its command line.

    tinylarge dashboard --mqtt mqtt://operator:PASS@broker:1883 [--store URL] [--host H] [--port P]
                        [--allowed-host NAME ...] [--models DIR]

Security: it binds to 127.0.0.1 by default. Binding to any other address needs a token in the
environment (``TINYLARGE_DASHBOARD_TOKEN``); the page then wants it (see :mod:`shared.dashboard.app`).
It answers only requests addressed to a name it serves (the ``Host`` header): the loopback names, the
address it binds (when not a wildcard) and each ``--allowed-host``; others get 403 (DNS rebinding).
It reads the broker with its own identity (the operator role of ``tinylarge broker config``, whose
client id is its user name) and never publishes; the broker URL it shows has the password as ``***``.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TOKEN_ENV = "TINYLARGE_DASHBOARD_TOKEN"
DEFAULT_PORT = 8765
log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Dashboard:
    """The bridge, the store and the web server together; ``start()`` returns once the page is served."""

    def __init__(self, mqtt: str, store: str | None = None, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 token: str | None = None, client_id: str | None = None, ca: str | None = None,
                 certfile: str | None = None, keyfile: str | None = None, allowed_hosts: Sequence[str] = (),
                 models: Path | None = None, rules: dict[str, dict[str, Any]] | None = None):
        """``allowed_hosts``: Host names served beside the loopback ones and ``host``; ``models``: the folder
        holding ``<domain>/metrics.json`` (the alert rule of each domain's service; default ``models``);
        ``rules``: per domain ``{"rule": AlertRule, "source": text}``, over what ``models`` gives."""
        if not is_loopback(host) and not token:
            raise ValueError(f"dashboard: binding to {host} (beyond loopback) needs a token: set {TOKEN_ENV}")
        if token is not None and len(token) < 16:
            raise ValueError(f"dashboard: the token ({TOKEN_ENV}) must be at least 16 characters")
        from shared.dashboard.app import LOOPBACK_HOSTS, normalize_host
        from shared.dashboard.bridge import MqttBridge
        from shared.dashboard.meta import alert_rules
        from shared.domain import registry

        wildcard = host in ("0.0.0.0", "::", "")
        try:
            extra = [normalize_host(h) for h in (*(() if wildcard else (host,)), *allowed_hosts)]
        except ValueError as exc:
            raise ValueError(f"dashboard: --allowed-host {exc}") from None
        self.allowed_hosts = tuple(dict.fromkeys((*LOOPBACK_HOSTS, *extra)))
        self.host, self.port, self.token = host, port, token
        domains = registry()
        self.rules = {**alert_rules(domains, models), **(rules or {})}
        self.bridge = MqttBridge(mqtt, domains, client_id=client_id, ca=ca, certfile=certfile, keyfile=keyfile,
                                 rules=self.rules)
        self.store_url = store
        self.store = None
        self._server = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)  # noqa: S104
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    def start(self, timeout_s: float = 15.0) -> Dashboard:
        import asyncio

        import uvicorn

        from shared.dashboard.app import create_app

        if self.store_url:
            from shared.storage.factory import open_store

            self.store = open_store(self.store_url)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:  # the port first (OSError if taken), so that a failed start leaves no MQTT client behind
            self._sock.bind((self.host, self.port))
            self.port = self._sock.getsockname()[1]
            self.bridge.start(timeout_s)  # ConnectionError if the broker is not there
        except BaseException:
            self._sock.close()
            self._sock = None
            if self.store is not None:
                self.store.close()
                self.store = None
            raise
        app = create_app(self.bridge, self.store, self.token, self.allowed_hosts)
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2, lifespan="off",
                                access_log=False)
        self._server = server = uvicorn.Server(config)
        sock = self._sock
        self._thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])),
                                        name="dashboard-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise RuntimeError(f"dashboard: the web server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        if self._sock is not None:
            self._sock.close()
        self.bridge.stop()
        if self.store is not None:
            self.store.close()
            self.store = None

    def __enter__(self) -> Dashboard:
        return self if self._server is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    from shared.cli import add_endpoint_args

    ap = argparse.ArgumentParser(prog="tinylarge dashboard", description="serve the live fleet page (read-only)")
    add_endpoint_args(ap, embedded_broker=False)
    ap.add_argument("--host", default="127.0.0.1", help=f"address to bind (default 127.0.0.1; any other needs "
                    f"{TOKEN_ENV})")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free)")
    ap.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                    help="also answer requests for this host name or address (repeatable; always: localhost, "
                    "127.0.0.1, ::1 and the --host address); any other Host header gets 403")
    ap.add_argument("--models", type=Path, default=None, help="folder of the trained models, one <domain>/ each "
                    "(default models): the alert rule of each domain's service is read from its metrics.json")
    ap.add_argument("--client-id", help="MQTT client id (default: the URL's user name, else tinylarge-dashboard)")
    ap.add_argument("--no-store", action="store_true", help="no historical views (do not open the store)")
    return ap.parse_args(argv)


def dashboard_main(argv: Sequence[str] | None = None) -> int:
    from shared.protocol.endpoints import mqtt_url, store_url

    args = _args(argv)
    url = mqtt_url(args.mqtt)
    if not url:
        print("tinylarge dashboard: no broker: give --mqtt mqtt://USER:PASS@host:port (or set TINYLARGE_MQTT)",
              flush=True)
        return 2
    try:
        dash = Dashboard(url, None if args.no_store else store_url(args.store), args.host, args.port,
                         token=os.environ.get(TOKEN_ENV) or None, client_id=args.client_id, ca=args.ca,
                         certfile=args.cert, keyfile=args.key, allowed_hosts=args.allowed_host,
                         models=args.models)
    except ValueError as exc:
        print(f"tinylarge dashboard: {exc}", flush=True)
        return 2
    try:
        dash.start()
    except ConnectionError as exc:
        print(f"tinylarge dashboard: {exc}", flush=True)
        return 1
    with dash:
        print(f"dashboard: {dash.url}   (broker {dash.bridge.broker}; Ctrl-C stops)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0
