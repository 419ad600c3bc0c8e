"""How the Influx store treats a server that answers with an error status.

No InfluxDB 2 runs here and VictoriaMetrics cannot be made to answer 401 or 503 on demand, so a
minimal HTTP endpoint plays the write API's status codes: a permanent refusal (401) must be counted
and logged, never retried into the spool; an overloaded server (503) must send points to the spool.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from shared.storage.base import Point
from shared.storage.factory import open_store

FAST = {"retry_interval_ms": 10, "max_retries": 2, "drain_interval_ms": 5000}


class _Answer(BaseHTTPRequestHandler):
    status = 204
    requests: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).requests.append(self.path)
        self.send_response(self.status)
        body = b'{"code":"x","message":"refused by test server"}' if self.status >= 400 else b""
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Answer]]]:
    handler = type("Handler", (_Answer,), {"requests": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"influx+http://127.0.0.1:{httpd.server_address[1]}/tinylarge?flavor=vm", handler
    httpd.shutdown()
    httpd.server_close()


def points(n: int) -> list[Point]:
    return [Point("vitals", "d", i, 1_000 + i, {"hr": 1.0}) for i in range(n)]


def test_unauthorized_is_dropped_loudly_not_spooled(
    server: tuple[str, type[_Answer]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, handler = server
    handler.status = 401
    with open_store(url, spool_dir=str(tmp_path), **FAST) as store:
        store.write(points(5))
        store.flush()
        counts = store.counts
    assert (counts["errors"], counts["dropped"], counts["spooled"], counts["written"]) == (1, 5, 0, 0)
    assert counts["retries"] == 0
    assert len(handler.requests) == 1
    assert "bucket=tinylarge" in handler.requests[0] and "precision=ms" in handler.requests[0]
    assert any(r.levelno == logging.ERROR and "refused 5 points" in r.getMessage() for r in caplog.records)


def test_service_unavailable_is_retried_then_spooled(server: tuple[str, type[_Answer]], tmp_path: Path) -> None:
    url, handler = server
    handler.status = 503
    with open_store(url, spool_dir=str(tmp_path), close_timeout_s=0.2, **FAST) as store:
        store.write(points(5))
        store.flush()
        counts = store.counts
        assert (counts["spooled"], counts["retries"], counts["dropped"]) == (5, 2, 0)
        assert len(handler.requests) == 3  # first try + 2 retries
        handler.status = 204
        store.flush()  # probes the server at once
        assert store.counts["drained"] == 5
