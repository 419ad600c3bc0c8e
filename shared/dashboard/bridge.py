"""The dashboard's read-only MQTT side: subscribe to every domain's streams, feed :class:`FleetState`.

It connects with the operator identity (``mqtt://USER:PASS@host:port`` or a client certificate; the
client id is the user name, as the generated ACL expects, else ``tinylarge-dashboard``), never
publishes and leaves no last will. It subscribes, for every registered domain, to
``tinylarge/<domain>/+/<stream>`` for each declared stream and ``status`` (not ``model``: signed
model images are large and say nothing an operator reads), and ``tinylarge/_deadletter/<domain>``.
A clean session: retained statuses arrive again on every (re)connect, so the page is right after a
broker restart without replaying what it missed; paho reconnects with a short backoff.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.dashboard.state import FleetState
from shared.domain import Domain
from shared.protocol.endpoints import parse_mqtt_url
from shared.protocol.messages import DEADLETTER_ROOT, TOPIC_ROOT
from shared.transport.mqtt import MqttClient, MqttConfig

log = logging.getLogger(__name__)
DEFAULT_CLIENT_ID = "tinylarge-dashboard"


def subscriptions(domains: dict[str, Domain]) -> list[str]:
    """The topic filters the dashboard reads (each covered by the operator role's ACL)."""
    filters: list[str] = []
    for name, d in domains.items():
        streams = sorted({*d.streams, "status"} - {"model"})
        filters += [f"{TOPIC_ROOT}/{name}/+/{s}" for s in streams]
        filters.append(f"{DEADLETTER_ROOT}/{name}")
    return filters


class MqttBridge:
    """Broker -> :class:`FleetState` (on the MQTT worker thread). ``rules``: per domain the alert rule its
    service runs (:func:`shared.dashboard.meta.alert_rules`)."""

    def __init__(self, url: str, domains: dict[str, Domain], client_id: str | None = None,
                 ca: str | None = None, certfile: str | None = None, keyfile: str | None = None,
                 rules: dict[str, dict[str, Any]] | None = None):
        endpoint = parse_mqtt_url(url)
        self.broker = str(endpoint)  # password shown as ***
        self.domains = domains
        self.state = FleetState(domains, {n: d.result_stream for n, d in domains.items()},
                                large_models={n: d.large_model for n, d in domains.items()}, rules=rules)
        self.client_id = client_id or endpoint.username or DEFAULT_CLIENT_ID
        self.client = MqttClient(MqttConfig(url=url, client_id=self.client_id, clean_session=True, ca=ca,
                                            certfile=certfile, keyfile=keyfile, keepalive_s=10,
                                            reconnect_min_s=0.2, reconnect_max_s=2.0))

    @property
    def connected(self) -> bool:
        return self.client.connected

    def start(self, timeout_s: float = 10.0) -> None:
        """Subscribe (made on every connect), then connect; ConnectionError if the broker is not there."""
        for f in subscriptions(self.domains):
            self.client.subscribe(f, self._on_message, qos=1)
        self.client.start(timeout_s)

    def stop(self) -> None:
        self.client.stop(flush_timeout_s=1.0)

    def _on_message(self, topic: str, payload: bytes) -> None:
        self.state.ingest(topic, payload, detail=False)
