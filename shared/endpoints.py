"""Endpoints by URL, from command-line flags or the environment.

``--mqtt mqtt://[user:pass@]host:port`` (``mqtts://`` for TLS), env ``TINYLARGE_MQTT``; with none
given the caller starts the embedded broker (see :mod:`shared.broker`).
``--store URL``, env ``TINYLARGE_STORE``, default a SQLite file under ``out/``; the storage module
parses store URLs, this module only resolves which string applies.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

MQTT_ENV = "TINYLARGE_MQTT"
STORE_ENV = "TINYLARGE_STORE"
DEFAULT_STORE_URL = "sqlite:///out/tinylarge.db"
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class MqttEndpoint:
    """A parsed MQTT broker URL. ``password`` never appears in ``str()`` or ``repr()``."""

    scheme: str  # "mqtt" or "mqtts"
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @property
    def tls(self) -> bool:
        return self.scheme == "mqtts"

    def __str__(self) -> str:
        user = ""
        if self.username is not None:
            user = self.username + (":***" if self.password is not None else "") + "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{user}{host}:{self.port}"

    def __repr__(self) -> str:
        return f"MqttEndpoint({str(self)!r})"


def parse_mqtt_url(url: str) -> MqttEndpoint:
    """Parse ``mqtt://[user:pass@]host[:port]`` or ``mqtts://...``; ValueError names what is wrong."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError("MQTT URL is empty; expected mqtt://[user:pass@]host:port")
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(
            f"MQTT URL {_redact(url)!r}: scheme {parts.scheme or '(none)'!r} is not supported; "
            "use mqtt:// (plain) or mqtts:// (TLS)"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"MQTT URL {_redact(url)!r}: unexpected path, query or fragment after host:port")
    host = parts.hostname
    if not host:
        raise ValueError(f"MQTT URL {_redact(url)!r}: missing host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"MQTT URL {_redact(url)!r}: bad port (expected an integer 1-65535)") from None
    if port is None:
        port = DEFAULT_PORTS[scheme]
    if not 1 <= port <= 65535:
        raise ValueError(f"MQTT URL {_redact(url)!r}: bad port {port} (expected 1-65535)")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if username == "":
        raise ValueError(f"MQTT URL {_redact(url)!r}: empty user name before '@'")
    return MqttEndpoint(scheme, host, port, username, password)


def _redact(url: str) -> str:
    """The URL with any password replaced, for error messages."""
    head, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, hostpart = rest.rpartition("@")
    if ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    return f"{head}://{userinfo}@{hostpart}"


def mqtt_url(flag: str | None) -> str | None:
    """The broker URL: the flag, else env TINYLARGE_MQTT, else None (= start the embedded broker)."""
    if flag:
        return flag
    return os.environ.get(MQTT_ENV) or None


def store_url(flag: str | None) -> str:
    """The store URL: the flag, else env TINYLARGE_STORE, else ``sqlite:///out/tinylarge.db``."""
    if flag:
        return flag
    return os.environ.get(STORE_ENV) or DEFAULT_STORE_URL
