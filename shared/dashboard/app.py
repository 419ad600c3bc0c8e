"""The dashboard's ASGI app (Starlette): the page, its paged live state and the store-backed history.

Routes::

    GET /                      the page (static/index.html, with the first state and the domains inlined as
                               a JSON data block, so it shows the fleet on load; plain HTML, JS and CSS)
    GET /static/...            its script and style
    GET /api/state?since=V&limit=N&offset.D=O&q.D=PREFIX&only.D=alerting
                               per domain: summary, alert rule, fleet clock, one page of subjects (N of
                               them, from O, optionally those whose id starts with PREFIX, or only those
                               alerting), stages, alerts and dead letters; with ``since`` only what changed
                               after version V (FleetState.view); the page polls it each second
    GET /api/domains           the registered domains: title, subject word, streams, result fields (label,
                               unit, baseline or not)
    GET /api/history?domain=D&device=X[&measurement=M][&start=MS][&end=MS][&limit=N]
                               stored points of one subject from the store (Store.query)
    GET /api/devices?domain=D[&measurement=M]   the subjects the store holds (Store.devices)
    GET /healthz               ok

Every route answers only requests whose ``Host`` is one the dashboard serves (loopback names, the
address it binds, and those given with ``--allowed-host``): anything else is 403, so a web page the
user visits cannot read the fleet through DNS rebinding. With a token set (required when binding
beyond loopback, see :mod:`shared.dashboard.server`), every route but ``/healthz`` wants it:
``Authorization: Bearer T``, or ``?token=T`` once (it is then kept in an HttpOnly cookie).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
from collections.abc import Iterable
from importlib.resources import files
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.dashboard.bridge import MqttBridge
from shared.dashboard.meta import domain_meta
from shared.dashboard.state import ONLY, PAGE_DEFAULT, PAGE_MAX, View
from shared.domain import Domain
from shared.protocol.messages import MessageError, check_id

COOKIE = "tl_dashboard_token"
HISTORY_LIMIT = 5000  #: most points one history request returns (the newest ones)
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
_MEASUREMENT_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_-]{0,64}$")
_HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
STATIC_DIR = files("shared.dashboard") / "static"
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'"
INITIAL_MARK = "<!--initial-state-->"


def normalize_host(name: str) -> str:
    """A host name or IP address as the Host check compares it (lower case, no brackets, no trailing dot);
    ValueError for anything else (a port, a scheme, a path)."""
    text = name.strip().lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.rstrip(".")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if not _HOSTNAME_RE.match(text) or len(text) > 253:
        raise ValueError(f"{name[:80]!r} is not a host name or IP address (give it without scheme or port)")
    return text


def _host_of(header: str) -> str | None:
    """The host of a Host header (``name``, ``name:port``, ``[v6]:port``), normalized; None if malformed."""
    text = header.strip()
    if text.startswith("["):
        end = text.find("]")
        host, rest = text[:end + 1], text[end + 1:]
        if end < 0 or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
    else:
        host, sep, port = text.partition(":")
        if sep and not port.isdigit():
            return None
    try:
        return normalize_host(host)
    except ValueError:
        return None


class HostGate:
    """ASGI middleware: 403 unless the request's Host is one this dashboard serves (no DNS rebinding)."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str]):
        self.app = app
        self.allowed = frozenset(normalize_host(h) for h in allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        host = _host_of(raw)
        if host is None or host not in self.allowed:
            shown = raw[:100] if raw else "(none)"
            await PlainTextResponse(
                f"dashboard: Host {shown!r} is not served here (serves {', '.join(sorted(self.allowed))}); "
                f"start it with --allowed-host NAME to serve another name", status_code=403)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class TokenGate:
    """ASGI middleware: without the token, 401 (``/healthz`` stays open)."""

    def __init__(self, app: ASGIApp, token: str | None):
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.token or scope["path"] == "/healthz":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = request.query_params.get("token")
        auth = request.headers.get("authorization", "")
        candidates = [given, request.cookies.get(COOKIE), auth[7:] if auth.lower().startswith("bearer ") else None]
        if not any(c and hmac.compare_digest(c.encode(), self.token.encode()) for c in candidates):
            await PlainTextResponse("dashboard token required (Authorization: Bearer, or ?token=)",
                                    status_code=401)(scope, receive, send)
            return
        if given:
            async def send_with_cookie(message: dict) -> None:
                if message["type"] == "http.response.start":
                    cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/".encode()
                    message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie)]
                await send(message)

            await self.app(scope, receive, send_with_cookie)
            return
        await self.app(scope, receive, send)


class SecurityHeaders:
    """ASGI middleware: a strict CSP (the page loads nothing from elsewhere) and no framing."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def wrapped(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"content-security-policy", CSP.encode()),
                                      (b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
                                      (b"referrer-policy", b"no-referrer"), (b"cache-control", b"no-store")]
            await send(message)

        await self.app(scope, receive, wrapped if scope["type"] == "http" else send)


class _BadRequest(ValueError):
    pass


def _int_param(request: Request, name: str, default: int | None, what: str = "milliseconds since the epoch"
               ) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise _BadRequest(f"{name} must be an integer ({what}), got {text[:40]!r}") from None


def _views(request: Request, domains: dict[str, Domain]) -> tuple[int, View, dict[str, View]]:
    """``since``, the default view and each domain's (``offset.D``, ``q.D``, ``only.D``) from the query."""
    since = _int_param(request, "since", 0, "a version from an earlier answer") or 0
    limit = _int_param(request, "limit", PAGE_DEFAULT, "subjects per page")
    if since < 0:
        raise _BadRequest(f"since must be >= 0, got {since}")
    if limit is None or not 1 <= limit <= PAGE_MAX:
        raise _BadRequest(f"limit must be 1..{PAGE_MAX}, got {limit}")
    per: dict[str, dict[str, Any]] = {}
    for key, value in request.query_params.multi_items():
        kind, dot, name = key.partition(".")
        if not dot or kind not in ("offset", "q", "only"):
            continue
        if name not in domains:
            raise _BadRequest(f"{key}: unknown domain {name[:40]!r}; registered: {', '.join(domains)}")
        if kind == "offset":
            try:
                per.setdefault(name, {})["offset"] = max(0, int(value))
            except ValueError:
                raise _BadRequest(f"{key} must be an integer, got {value[:40]!r}") from None
        elif kind == "q":
            if not _PREFIX_RE.match(value):
                raise _BadRequest(f"{key}: {value[:40]!r} is not the start of a device id ([A-Za-z0-9_-])")
            per.setdefault(name, {})["q"] = value
        else:
            if value not in ONLY:
                raise _BadRequest(f"{key} must be one of {', '.join(repr(o) for o in ONLY)}, got {value[:40]!r}")
            per.setdefault(name, {})["only"] = value
    return since, View(limit=limit), {n: View(limit=limit, **kw) for n, kw in per.items()}


def _json_for_html(data: Any) -> str:
    """JSON that is safe inside a ``<script type="application/json">`` element."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def create_app(bridge: MqttBridge, store: Any = None, token: str | None = None,
               allowed_hosts: Iterable[str] | None = None) -> Starlette:
    """The app over a started (or starting) bridge; ``store`` (a :class:`shared.storage.base.Store`) for history;
    ``allowed_hosts``: the Host names it answers (default: the loopback names)."""
    domains: dict[str, Domain] = bridge.domains
    meta = {n: domain_meta(d) for n, d in domains.items()}
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    if INITIAL_MARK not in page:
        raise RuntimeError(f"dashboard: static/index.html lacks {INITIAL_MARK}")

    def state(since: int = 0, default: View | None = None, views: dict[str, View] | None = None) -> dict:
        snap = bridge.state.view(since, views, default)
        snap["broker"] = {"url": bridge.broker, "connected": bridge.connected, "client_id": bridge.client_id}
        snap["store"] = store is not None
        return snap

    async def index(request: Request) -> Response:
        initial = _json_for_html({"domains": meta, "state": state()})
        block = f'<script type="application/json" id="tl-initial">{initial}</script>'
        return HTMLResponse(page.replace(INITIAL_MARK, block))

    async def api_domains(request: Request) -> Response:
        return JSONResponse(meta)

    async def api_state(request: Request) -> Response:
        try:
            since, default, views = _views(request, domains)
        except _BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(state(since, default, views))

    def _domain(request: Request) -> Domain:
        name = request.query_params.get("domain", "")
        if name not in domains:
            raise _BadRequest(f"unknown domain {name[:40]!r}; registered: {', '.join(domains)}")
        return domains[name]

    def _measurement(request: Request, d: Domain) -> str:
        m = request.query_params.get("measurement") or d.result_stream
        if not _MEASUREMENT_RE.match(m):
            raise _BadRequest(f"measurement {m[:40]!r} is not a valid measurement name")
        return m

    async def api_history(request: Request) -> Response:
        if store is None:
            return JSONResponse({"error": "no store configured (--store)"}, status_code=503)
        try:
            d = _domain(request)
            device = request.query_params.get("device", "")
            try:
                check_id(device)
            except MessageError as exc:
                raise _BadRequest(str(exc)) from None
            m = _measurement(request, d)
            start, end = _int_param(request, "start", None), _int_param(request, "end", None)
            limit = _int_param(request, "limit", HISTORY_LIMIT)
            if start is not None and end is not None and start > end:
                raise _BadRequest(f"start {start} is after end {end}")
            if limit is None or not 1 <= limit <= HISTORY_LIMIT:
                raise _BadRequest(f"limit must be 1..{HISTORY_LIMIT}, got {limit}")
        except _BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        points = await run_in_threadpool(store.query, m, device, start, end)
        points = [p for p in points if p.tags.get("domain", d.name) == d.name]
        shown = points[-limit:]
        return JSONResponse({"domain": d.name, "device": device, "measurement": m, "count": len(points),
                             "truncated": len(points) > len(shown),
                             "points": [{"ts": p.ts_ms, "seq": p.seq, "fields": p.measured_fields()} for p in shown]})

    async def api_devices(request: Request) -> Response:
        if store is None:
            return JSONResponse({"error": "no store configured (--store)"}, status_code=503)
        try:
            d = _domain(request)
            m = _measurement(request, d)
        except _BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"domain": d.name, "measurement": m,
                             "devices": await run_in_threadpool(store.devices, m)})

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [
        Route("/", index), Route("/api/state", api_state), Route("/api/domains", api_domains),
        Route("/api/history", api_history), Route("/api/devices", api_devices),
        Route("/healthz", healthz), Mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static"),
    ]
    hosts = LOOPBACK_HOSTS if allowed_hosts is None else tuple(allowed_hosts)
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders), Middleware(HostGate, allowed=hosts),
                                                Middleware(TokenGate, token=token)])
