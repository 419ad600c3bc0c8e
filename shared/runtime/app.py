"""Wiring that every domain's service, device and demo share: endpoints -> clients -> store.

A domain supplies only what differs (its handlers and its models); this module resolves the broker
and store URLs (flags, then environment, then the embedded defaults), builds MQTT clients with the
right TLS settings and last will, and publishes schema-checked messages.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from shared.protocol import messages
from shared.protocol.endpoints import mqtt_url, store_url
from shared.transport.broker import broker_for
from shared.transport.consumer import Publisher
from shared.transport.mqtt import MqttClient, MqttConfig

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
    """Resolve ``--mqtt`` / ``--store`` (flag, then env, then ``default_store``, then the project default);
    start the embedded broker when no broker is given."""
    store = store_url(getattr(args, "store", None)) if default_store is None else (
        getattr(args, "store", None) or os.environ.get("TINYLARGE_STORE") or default_store)
    with broker_for(mqtt_url(getattr(args, "mqtt", None))) as url:
        yield Endpoints(url, store)


class StatusReporter:
    """Publishes a retained ``status`` with running counts every ``every_s`` seconds, and once at stop.

    ``collect`` returns the counts of every stage (received, accepted, dead-lettered, stored, dropped ...),
    so an operator sees them on ``tinylarge/<domain>/<device>/status`` without asking the process.
    """

    def __init__(self, publish: Publish, device: str, model: str, collect: Callable[[], dict[str, int]],
                 every_s: float = 10.0):
        import threading

        self._publish, self.device, self.model, self._collect = publish, device, model, collect
        self.every_s = every_s
        self.seq = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"status-{device}", daemon=True)

    def report(self, state: str = "online") -> None:
        self.seq += 1
        counts = {k: max(0, int(v)) for k, v in self._collect().items()}
        self._publish(self.device, "status", status_message(self.device, self.seq, self.model, state, counts))

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.report()
            except Exception:  # noqa: BLE001 - a status hiccup must not stop the service
                import logging

                logging.getLogger(__name__).warning("status report failed", exc_info=True)

    def start(self) -> None:
        self.report()
        self._thread.start()

    def stop(self, state: str = "offline") -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.report(state)


def check_endpoints(args: argparse.Namespace) -> None:
    """The endpoint flags (or their environment variables) checked before anything starts: a UserError names
    the flag and what is wrong."""
    from pathlib import Path

    from shared.errors import UserError
    from shared.protocol.endpoints import parse_mqtt_url
    from shared.storage.base import parse_store_url

    url = mqtt_url(getattr(args, "mqtt", None))
    if url:
        try:
            parse_mqtt_url(url)
        except ValueError as exc:
            raise UserError(f"--mqtt: {exc}") from None
    store = getattr(args, "store", None) or os.environ.get("TINYLARGE_STORE")
    if store:
        try:
            parse_store_url(store)
        except ValueError as exc:
            raise UserError(f"--store: {exc}") from None
    for flag in ("ca", "cert", "key"):
        path = getattr(args, flag, None)
        if path and not Path(path).is_file():
            raise UserError(f"--{flag}: no such file {path}")
    _check_tls_files(getattr(args, "ca", None), getattr(args, "cert", None), getattr(args, "key", None))
    if store:
        _check_sqlite_file(store)
        _check_postgres(store)


#: the first 16 bytes of every SQLite 3 database file
_SQLITE_MAGIC = b"SQLite format 3\x00"


def _check_sqlite_file(url: str) -> None:
    """A ``sqlite:///`` store that names an existing, non-empty file that is not a SQLite database: a UserError
    (SQLite itself would only say so at the first write, after the models have loaded)."""
    from pathlib import Path

    from shared.errors import UserError
    from shared.storage.base import SqliteURL, parse_store_url

    parsed = parse_store_url(url)
    if not isinstance(parsed, SqliteURL) or parsed.path == ":memory:":
        return
    path = Path(parsed.path)
    if path.is_dir():
        raise UserError(f"--store: {path} is a folder; name a database file (sqlite:///{path}/tinylarge.db)")
    if path.is_file() and path.stat().st_size > 0:
        with open(path, "rb") as f:
            if f.read(16) != _SQLITE_MAGIC:
                raise UserError(f"--store: {path} is not a SQLite database; name a new file or a database "
                                "that tinylarge wrote")


def _check_postgres(url: str) -> None:
    """A ``postgresql://`` store is opened once (connection, login, database, the table made on first use) and
    closed, before the models load: a UserError naming the URL (password hidden) when it cannot be."""
    from shared.storage.base import PostgresURL, parse_store_url

    if isinstance(parse_store_url(url), PostgresURL):
        from shared.storage.postgres import PostgresStore

        PostgresStore(url, retry_s=0).close()


def _check_tls_files(ca: str | None, cert: str | None, key: str | None) -> None:
    """``--ca`` must hold PEM certificates, ``--cert``/``--key`` a certificate and its private key."""
    import ssl

    from shared.errors import UserError

    if key and not cert:
        raise UserError("--key: give --cert too (the client certificate the key belongs to)")
    if ca:
        try:
            ssl.create_default_context(cafile=ca)
        except (ssl.SSLError, ValueError, UnicodeDecodeError) as exc:
            raise UserError(f"--ca: {ca} holds no PEM certificate ({_ssl_reason(exc)}); give the CA certificate "
                            "(ca.crt of tinylarge pki init)") from None
    if cert:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key)
        except (ssl.SSLError, ValueError, UnicodeDecodeError) as exc:
            both = f"{cert} and {key}" if key else cert
            raise UserError(f"--cert/--key: {both} are not a PEM certificate and its private key "
                            f"({_ssl_reason(exc)})") from None


def _ssl_reason(exc: BaseException) -> str:
    import ssl

    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def check_broker(args: argparse.Namespace | None, url: str, role: str = "check") -> None:
    """Connect to the broker at ``url`` once (TLS and credentials included) and disconnect, before any long
    work needs it later: a refused, unreachable or untrusted broker is a ConnectionError, one line."""
    import logging

    client = MqttClient(client_config(args, url, f"tinylarge-{role}-{os.getpid()}", clean_session=True,
                                      takeover_check_s=0.0))
    quiet = logging.getLogger("shared.transport.mqtt")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the ConnectionError is the one line; no warning beside it
    try:
        client.start(timeout_s=10.0)
        client.stop()
    finally:
        quiet.setLevel(level)


def require_models(domain: str, models_dir: Any, quick: bool) -> None:
    """Before ``serve``/``device`` start: a models folder with no trained models is a UserError naming the
    command that trains them, unless ``quick``, which trains quick ones first, and says so."""
    from pathlib import Path

    from shared.errors import UserError
    from shared.runtime.training import STAMP_NAME

    folder = Path(models_dir)
    if (folder / STAMP_NAME).is_file():
        return
    if not quick:
        what = "does not exist" if not folder.exists() else "holds no trained models"
        raise UserError(f"{folder} {what}: train them first with tinylarge train {domain} --models {folder} "
                        "(or add --quick to train quick ones now)")
    print(f"{domain}: no trained models in {folder}; training quick ones first (about a minute)", flush=True)


def models_do_not_load(domain: str, models_dir: Any, exc: BaseException) -> Exception:
    """The UserError for trained models that are there but do not load (a corrupt or missing file)."""
    from shared.errors import UserError

    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return UserError(f"the models in {models_dir} do not load ({type(exc).__name__}: {first}); retrain them: "
                     f"tinylarge train {domain} --models {models_dir}")
