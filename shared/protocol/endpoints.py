"""Endpoints by URL, from command-line flags or the environment.

``--mqtt mqtt://[user:pass@]host:port`` (``mqtts://`` for TLS), env ``TINYLARGE_MQTT``; with none
given the caller starts the embedded broker (see :mod:`shared.transport.broker`).
``--store URL``, env ``TINYLARGE_STORE``, default a SQLite file under ``out/``; the storage module
parses store URLs, this module only resolves which string applies.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from urllib.parse import unquote

MQTT_ENV = "TINYLARGE_MQTT"
STORE_ENV = "TINYLARGE_STORE"
DEFAULT_STORE_URL = "sqlite:///out/tinylarge.db"
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
#: URL delimiters that must be percent-encoded in a user name or password
USERINFO_DELIMS = "/?#[]"


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
    """Parse ``mqtt://[user[:pass]@]host[:port][/]`` or ``mqtts://...``; ValueError names what is wrong.

    The user info is split off at the last ``@`` before any other parsing. User and password are
    percent-decoded; the URL delimiters ``/ ? # [ ]`` must be percent-encoded in them (``%2F %3F
    %23 %5B %5D``; RFC 3986), an ``@`` may be (``%40``) but need not. An IPv6 host goes in brackets
    (``mqtt://[::1]:1883``). No error message ever shows the password: each quotes the URL with the
    password replaced by ``***``.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError("MQTT URL is empty; expected mqtt://[user:pass@]host:port")
    text = url.strip()
    shown = _redact(text)
    scheme_text, sep, rest = _split_scheme(text)
    scheme = scheme_text.lower()
    if not sep:
        lead = text.split(":", 1)[0].lower()
        if lead in DEFAULT_PORTS and not text.lower().startswith(f"{lead}://"):
            raise ValueError(f"MQTT URL {shown!r}: '//' missing after '{lead}:'; expected {lead}://host:port")
        raise ValueError(f"MQTT URL {shown!r} has no scheme; expected mqtt://[user:pass@]host:port or mqtts://...")
    if scheme not in DEFAULT_PORTS:
        raise ValueError(
            f"MQTT URL {shown!r}: scheme {scheme_text or '(none)'!r} is not supported; "
            "use mqtt:// (plain) or mqtts:// (TLS)"
        )
    userinfo, at, hostpart = rest.rpartition("@")
    if at and any(c in userinfo for c in USERINFO_DELIMS):
        raise ValueError(
            f"MQTT URL {shown!r}: the user name or password holds one of / ? # [ ]; "
            "percent-encode them (%2F %3F %23 %5B %5D)"
        )
    end = min((i for i in (hostpart.find(c) for c in "/?#") if i >= 0), default=len(hostpart))
    hostport, tail = hostpart[:end], hostpart[end:]
    if tail not in ("", "/"):
        raise ValueError(f"MQTT URL {shown!r}: unexpected path, query or fragment after host:port")
    host, port_text = _split_host_port(hostport, shown)
    port = DEFAULT_PORTS[scheme]
    if port_text:
        if not (port_text.isascii() and port_text.isdigit()):
            raise ValueError(f"MQTT URL {shown!r}: bad port {port_text!r} (expected an integer 1-65535)")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ValueError(f"MQTT URL {shown!r}: bad port {port} (expected 1-65535)")
    username: str | None = None
    password: str | None = None
    if at:
        user_text, colon, password_text = userinfo.partition(":")
        username = unquote(user_text)
        password = unquote(password_text) if colon else None
        if username == "":
            raise ValueError(f"MQTT URL {shown!r}: empty user name before '@'")
    return MqttEndpoint(scheme, host, port, username, password)


def _split_host_port(hostport: str, shown: str) -> tuple[str, str]:
    """``(host, port text)`` of ``host[:port]`` or ``[ipv6][:port]``; `shown` is the redacted URL."""
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise ValueError(f"MQTT URL {shown!r}: '[' opens an IPv6 address but no ']' closes it")
        inside, after = hostport[1:close], hostport[close + 1 :]
        if after and not after.startswith(":"):
            raise ValueError(f"MQTT URL {shown!r}: unexpected {after!r} after the bracketed IPv6 address")
        try:
            host = str(ipaddress.IPv6Address(unquote(inside)))
        except ValueError:
            raise ValueError(f"MQTT URL {shown!r}: {inside!r} in brackets is not an IPv6 address") from None
        return host, after[1:]
    host, colon, port_text = hostport.rpartition(":")
    if not colon:
        host, port_text = hostport, ""
    if ":" in host:
        raise ValueError(f"MQTT URL {shown!r}: an IPv6 host must be in brackets, e.g. mqtt://[::1]:1883")
    if not host:
        raise ValueError(f"MQTT URL {shown!r}: missing host")
    if "[" in host or "]" in host or any(c.isspace() or not c.isprintable() for c in host):
        raise ValueError(f"MQTT URL {shown!r}: host {host!r} holds a bracket, a space or a control character")
    return host.lower(), port_text


def _split_scheme(text: str) -> tuple[str, str, str]:
    """``(scheme, "://", rest)``, or ``("", "", text)`` when what precedes the first ``://`` cannot be a
    scheme (RFC 3986 letters, digits, ``+-.``; e.g. it is part of a password)."""
    head, sep, rest = text.partition("://")
    if sep and all(c.isascii() and (c.isalnum() or c in "+-.") for c in head):
        return head, sep, rest
    return "", "", text


def _redact(url: str) -> str:
    """The URL with any password replaced by ``***``, for error messages.

    Everything before the last ``@`` counts as user info (as :func:`parse_mqtt_url` reads it), and
    everything in it after the first ``:`` as the password, wherever the URL is malformed.
    """
    head, sep, rest = _split_scheme(url)
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        return url
    if ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    return f"{head}{sep}{userinfo}@{hostpart}"


def redact_url(url: str) -> str:
    """The URL as it may be printed or logged: any password replaced by ``***`` (user name kept)."""
    return _redact(url)


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
