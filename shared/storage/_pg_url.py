"""Parsing of ``postgresql://`` store URLs (kept apart from :mod:`shared.storage.base`, which re-exports it).

``postgresql://[user[:password]@][host[:port][,host[:port]...]][/dbname][?param=value&...]``, the URI form
libpq reads. Several hosts (a primary and its standbys) are tried in order; with none, libpq's default
applies (``PGHOST``, else the local socket). User, password and host are percent-decoded; the URL delimiters
``/ ? # [ ]`` must be percent-encoded in the user info. The password is better left out of the URL: libpq
reads ``PGPASSWORD`` (or ``~/.pgpass``) from the environment. ``postgres://`` is refused with a pointer to
the one spelling tinylarge uses.

Parameters: the libpq connection parameters in :data:`PG_LIBPQ_PARAMS` pass through unchanged (``sslmode``,
``sslrootcert``, ``connect_timeout``, ``application_name``, ``target_session_attrs`` ...), and ``retry_s`` is
tinylarge's own: how long (seconds, default 30) an operation keeps reconnecting to a server that went away
(a restart, a failover) before it raises.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote

PG_SCHEME = "postgresql"
PG_DEFAULT_PORT = 5432
PG_DEFAULT_RETRY_S = 30.0
#: libpq connection parameters a URL may carry in its query (passed to the driver as they are)
PG_LIBPQ_PARAMS = (
    "sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "sslcompression", "channel_binding", "gssencmode",
    "connect_timeout", "application_name", "target_session_attrs", "keepalives", "keepalives_idle",
    "keepalives_interval", "keepalives_count", "tcp_user_timeout", "host", "options",
)
PG_OWN_PARAMS = ("retry_s",)
_USERINFO_DELIMS = "/?#[]"


@dataclass(frozen=True)
class PostgresURL:
    """A parsed ``postgresql://`` URL. ``password`` never appears in ``str()`` or ``repr()``."""

    hosts: tuple[tuple[str, int], ...]  # (host, port) in the order libpq tries them; () = libpq's default
    dbname: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    params: tuple[tuple[str, str], ...] = ()  # libpq parameters from the query, in order
    retry_s: float = PG_DEFAULT_RETRY_S

    def connect_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``psycopg.connect`` (libpq parameter names)."""
        kwargs: dict[str, str] = dict(self.params)
        if self.hosts:
            kwargs["host"] = ",".join(h for h, _ in self.hosts)
            kwargs["port"] = ",".join(str(p) for _, p in self.hosts)
        for name in ("dbname", "user", "password"):
            value = getattr(self, name)
            if value is not None:
                kwargs[name] = value
        return kwargs

    def __str__(self) -> str:
        user = ""
        if self.user is not None:
            user = quote(self.user, safe="") + (":***" if self.password is not None else "") + "@"
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{quote(h, safe='')}:{p}" for h, p in self.hosts)
        query = "&".join(f"{k}={v}" for k, v in self.params)
        if self.retry_s != PG_DEFAULT_RETRY_S:
            query += ("&" if query else "") + f"retry_s={self.retry_s:g}"
        db = quote(self.dbname, safe="") if self.dbname is not None else ""
        return f"{PG_SCHEME}://{user}{hosts}/{db}" + (f"?{query}" if query else "")

    def __repr__(self) -> str:
        return f"PostgresURL({str(self)!r})"


def redact_pg(url: str) -> str:
    """``url`` as it may be printed: the password in the user info replaced by ``***``, whatever else is wrong."""
    head, sep, rest = url.partition("://")
    if not sep:
        return url
    at = rest.rfind("@", 0, _first_of(rest, "?#"))
    if at < 0:
        return url
    userinfo = rest[:at]
    if ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    return f"{head}{sep}{userinfo}{rest[at:]}"


def _first_of(text: str, chars: str) -> int:
    found = [i for i in (text.find(c) for c in chars) if i >= 0]
    return min(found) if found else len(text)


def parse_postgres_url(url: str) -> PostgresURL:
    """Parse a ``postgresql://`` URL (module doc); ValueError quoting the URL with its password hidden."""
    shown = redact_pg(url)
    scheme, _, rest = url.partition("://")
    if scheme.lower() == "postgres":
        raise ValueError(f"store URL scheme 'postgres' is not supported; write {PG_SCHEME}://... "
                         f"(the one spelling tinylarge uses): {shown!r}")
    if scheme.lower() != PG_SCHEME:
        raise ValueError(f"store URL {shown!r} is not a {PG_SCHEME}:// URL")
    if "#" in rest:
        raise ValueError(f"postgresql store URL {shown!r} must not have a fragment (#...)")
    before_query, _, query = rest.partition("?")
    at = before_query.rfind("@")
    userinfo, hostpath = (before_query[:at], before_query[at + 1 :]) if at >= 0 else (None, before_query)
    if userinfo is not None and any(c in userinfo for c in _USERINFO_DELIMS):
        raise ValueError(f"postgresql store URL {shown!r}: the user name or password holds one of / ? # [ ]; "
                         "percent-encode them (%2F %3F %23 %5B %5D), or give the password in PGPASSWORD")
    user = password = None
    if userinfo is not None:
        user_text, colon, password_text = userinfo.partition(":")
        user = unquote(user_text)
        password = unquote(password_text) if colon else None
        if not user:
            raise ValueError(f"postgresql store URL {shown!r}: empty user name before '@'")
    hostlist, slash, path = hostpath.partition("/")
    hosts = _hosts(hostlist, shown)
    dbname = unquote(path) if slash and path else None
    if dbname is not None and "/" in dbname:
        raise ValueError(f"postgresql store URL {shown!r}: the path must name one database, e.g. /tinylarge")
    params, retry_s = _params(query, shown, have_host=bool(hosts))
    return PostgresURL(hosts, dbname, user, password, params, retry_s)


def _hosts(text: str, shown: str) -> tuple[tuple[str, int], ...]:
    if not text:
        return ()
    out = []
    for item in text.split(","):
        host, port_text = _host_port(item, shown)
        if not host:
            raise ValueError(f"postgresql store URL {shown!r}: empty host in {text!r}")
        port = PG_DEFAULT_PORT
        if port_text:
            if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
                raise ValueError(f"postgresql store URL {shown!r}: bad port {port_text!r} (expected 1-65535)")
            port = int(port_text)
        out.append((host, port))
    return tuple(out)


def _host_port(item: str, shown: str) -> tuple[str, str]:
    if item.startswith("["):
        close = item.find("]")
        after = item[close + 1 :] if close >= 0 else ""
        if close < 0 or (after and not after.startswith(":")):
            raise ValueError(f"postgresql store URL {shown!r}: bad bracketed IPv6 host {item!r}")
        try:
            return str(ipaddress.IPv6Address(item[1:close])), after[1:]
        except ValueError:
            raise ValueError(f"postgresql store URL {shown!r}: {item[1:close]!r} is not an IPv6 address") from None
    host, colon, port_text = item.rpartition(":")
    if not colon:
        return unquote(item), ""
    return unquote(host), port_text


def _params(query: str, shown: str, have_host: bool) -> tuple[tuple[tuple[str, str], ...], float]:
    params: list[tuple[str, str]] = []
    retry_s = PG_DEFAULT_RETRY_S
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ValueError(f"postgresql store URL {shown!r}: malformed query {query!r}; use ?name=value&...") from None
    for name, value in pairs:
        if name == "retry_s":
            try:
                retry_s = float(value)
            except ValueError:
                retry_s = -1.0
            if not 0 <= retry_s < float("inf"):
                raise ValueError(f"postgresql store URL parameter 'retry_s' must be a number of seconds >= 0, "
                                 f"got {value!r}")
            continue
        if name not in PG_LIBPQ_PARAMS:
            known = ", ".join(PG_LIBPQ_PARAMS + PG_OWN_PARAMS)
            hint = "; put the password in PGPASSWORD" if name == "password" else ""
            raise ValueError(f"postgresql store URL parameter {name!r} is unknown{hint}; known: {known}")
        if name == "host" and have_host:
            raise ValueError(f"postgresql store URL {shown!r} names its host twice (before the path and in ?host=)")
        if name == "connect_timeout" and not (value.isascii() and value.isdigit()):
            raise ValueError(f"postgresql store URL parameter 'connect_timeout' must be whole seconds, got {value!r}")
        params.append((name, value))
    return tuple(params), retry_s
