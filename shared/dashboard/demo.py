"""The dashboard beside ``make demo-<domain>``: two calls in a domain's demo.

    add_dashboard_args(parser)                       # --no-dashboard, --dashboard-port
    with beside_demo(args, ep.mqtt, ep.store, {d.name: cloud.service.rule}):   # starts it, prints its URL,
        ...                                                                     # stops it at the end

A demo must run without it: when the dashboard cannot start (its packages missing, the broker
refusing the operator), the demo says why and goes on.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

DEFAULT_PORT = 8765


def add_dashboard_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--no-dashboard", action="store_true", help="do not start the live dashboard beside the demo")
    ap.add_argument("--dashboard-port", type=int, default=DEFAULT_PORT,
                    help=f"port of the dashboard on 127.0.0.1 (default {DEFAULT_PORT}; another free one if taken)")


@contextmanager
def beside_demo(args: argparse.Namespace, mqtt: str, store: str | None, rules: dict[str, Any] | None = None
                ) -> Iterator[Any]:
    """Yield the running :class:`shared.dashboard.server.Dashboard` (None when turned off or unavailable).
    ``rules``: per domain the :class:`shared.runtime.alerts.AlertRule` the demo's service runs, so that
    "alerting now" on the page is that rule."""
    if getattr(args, "no_dashboard", False):
        yield None
        return
    port = getattr(args, "dashboard_port", DEFAULT_PORT)
    try:
        from shared.dashboard.server import Dashboard

        given = {d: {"rule": r, "source": "the demo's service"} for d, r in (rules or {}).items()}
        try:
            dash = Dashboard(mqtt, store, port=port, rules=given).start()
        except OSError:  # the port is taken (another demo's dashboard): any free one
            dash = Dashboard(mqtt, store, port=0, rules=given).start()
    except (ImportError, OSError, ConnectionError, RuntimeError, ValueError) as exc:
        print(f"dashboard: not started ({exc}); the demo goes on without it", flush=True)
        yield None
        return
    print(f"dashboard: {dash.url}  (live fleet; --no-dashboard turns it off)", flush=True)
    try:
        yield dash
    finally:
        dash.stop()
