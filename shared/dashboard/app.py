"""The dashboard's ASGI app (Starlette): the page, the live event stream and the store-backed history.

Routes::

    GET /                      the page (static/index.html; plain HTML, JS and CSS, no build step)
    GET /static/...            its script and style
    GET /api/state             everything the dashboard knows now (FleetState.snapshot + broker state)
    GET /api/events            server-sent events: one ``snapshot``, then ``device``, ``alert``,
                               ``deadletter`` as messages arrive, and ``tick`` (broker up or not) each second
    GET /api/domains           the registered domains: title, subject word, streams, result stream
    GET /api/history?domain=D&device=X[&measurement=M][&start=MS][&end=MS][&limit=N]
                               stored points of one subject from the store (Store.query)
    GET /api/devices?domain=D[&measurement=M]   the subjects the store holds (Store.devices)
    GET /healthz               ok

With a token set (required when binding beyond loopback, see :mod:`shared.dashboard.server`), every
route but ``/healthz`` wants it: ``Authorization: Bearer T``, or ``?token=T`` once (it is then kept
in an HttpOnly cookie, since EventSource cannot send headers).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import threading
from collections.abc import AsyncIterator
from importlib.resources import files
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.dashboard.bridge import MqttBridge
from shared.domain import Domain
from shared.protocol.messages import MessageError, check_id

COOKIE = "tl_dashboard_token"
HISTORY_LIMIT = 5000  #: most points one history request returns (the newest ones)
_MEASUREMENT_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
STATIC_DIR = files("shared.dashboard") / "static"
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'"


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
                                      (b"referrer-policy", b"no-referrer")]
            await send(message)

        await self.app(scope, receive, wrapped if scope["type"] == "http" else send)


class _BadRequest(ValueError):
    pass


def _int_param(request: Request, name: str, default: int | None) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise _BadRequest(f"{name} must be an integer (milliseconds since the epoch), got {text[:40]!r}") from None


def create_app(bridge: MqttBridge, store: Any = None, token: str | None = None,
               closing: threading.Event | None = None) -> Starlette:
    """The app over a started (or starting) bridge; ``store`` (a :class:`shared.storage.base.Store`) for history."""
    domains: dict[str, Domain] = bridge.domains
    closing = closing or threading.Event()

    def snapshot() -> dict:
        snap = bridge.state.snapshot()
        snap["broker"] = {"url": bridge.broker, "connected": bridge.connected, "client_id": bridge.client_id}
        snap["store"] = store is not None
        return snap

    async def index(request: Request) -> Response:
        return FileResponse(str(STATIC_DIR / "index.html"), media_type="text/html")

    async def api_domains(request: Request) -> Response:
        return JSONResponse({n: {"title": d.title, "subject": d.subject, "result_stream": d.result_stream,
                                 "streams": sorted(d.streams), "labels": list(d.labels),
                                 "tiny_model": d.tiny_model, "large_model": d.large_model, "baseline": d.baseline}
                             for n, d in domains.items()})

    async def api_state(request: Request) -> Response:
        return JSONResponse(snapshot())

    async def api_events(request: Request) -> Response:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[list[dict]] = asyncio.Queue(maxsize=10_000)

        def listener(events: list[dict]) -> None:  # MQTT worker thread
            def put() -> None:
                if not queue.full():
                    queue.put_nowait(events)
            loop.call_soon_threadsafe(put)

        async def stream() -> AsyncIterator[str]:
            bridge.add_listener(listener)
            try:
                yield "retry: 1000\n\n"
                yield _sse("snapshot", snapshot())
                while not closing.is_set():
                    try:
                        events = await asyncio.wait_for(queue.get(), timeout=1.0)
                    except TimeoutError:
                        if await request.is_disconnected():
                            return
                        yield _sse("tick", {"connected": bridge.connected, "now_ms": bridge.state.now_ms()})
                        continue
                    for ev in events:
                        yield _sse(ev["type"], ev)
            finally:
                bridge.remove_listener(listener)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"cache-control": "no-store", "x-accel-buffering": "no"})

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
        Route("/", index), Route("/api/state", api_state), Route("/api/events", api_events),
        Route("/api/domains", api_domains), Route("/api/history", api_history), Route("/api/devices", api_devices),
        Route("/healthz", healthz), Mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders), Middleware(TokenGate, token=token)])


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"
