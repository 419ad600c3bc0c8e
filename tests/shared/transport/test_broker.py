"""shared.transport.broker: the embedded amqtt broker, and what it does with QoS 1 persistent sessions."""

from __future__ import annotations

import logging
import socket
import uuid

import pytest

import shared.transport.broker as broker_mod
from shared.protocol.endpoints import parse_mqtt_url
from shared.transport.broker import EmbeddedBroker, broker_for
from shared.transport.mqtt import MqttClient, MqttConfig
from tests.fixtures.mqtt import wait_for


def _listening(url: str) -> bool:
    ep = parse_mqtt_url(url)
    try:
        with socket.create_connection((ep.host, ep.port), timeout=0.5):
            return True
    except OSError:
        return False


def test_start_picks_a_free_port_and_stop_frees_it():
    with EmbeddedBroker() as a, EmbeddedBroker() as b:
        assert a.url != b.url
        assert a.url.startswith("mqtt://127.0.0.1:") and a.port > 0
        assert _listening(a.url) and _listening(b.url)
        url = a.url
    assert not _listening(url)
    with pytest.raises(RuntimeError, match="not running"):
        _ = a.url


def test_notice_is_logged_once(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    monkeypatch.setattr(broker_mod, "_notice_shown", False)
    with caplog.at_level(logging.WARNING, logger="shared.transport.broker"):
        with EmbeddedBroker(), EmbeddedBroker():
            pass
    notices = [r for r in caplog.records if "local demos only" in r.getMessage()]
    assert len(notices) == 1
    assert "--mqtt" in notices[0].getMessage()


def test_broker_for_uses_the_given_url_or_runs_one():
    with broker_for("mqtt://example.invalid:1883") as url:
        assert url == "mqtt://example.invalid:1883"
    with broker_for(None) as url:
        assert _listening(url)
    assert not _listening(url)


def _client(url: str, client_id: str, clean_session: bool = False) -> MqttClient:
    return MqttClient(MqttConfig(url, client_id, clean_session=clean_session, reconnect_max_s=1.0))


@pytest.mark.parametrize("clean_session", [False, True])
def test_offline_queue_for_persistent_sessions_only(embedded_broker, clean_session: bool):
    """amqtt 0.12 queues QoS 1 messages for a disconnected clean_session=0 client (given our auth plugin)."""
    topic = f"tinylarge/healthcare/{uuid.uuid4().hex[:8]}/inference"
    consumer_id = f"svc-{uuid.uuid4().hex[:8]}"
    got: list[bytes] = []
    # consumer: CONNECT(clean=?) SUBSCRIBE qos1, then DISCONNECT
    consumer = _client(embedded_broker, consumer_id, clean_session)
    consumer.start()
    consumer.subscribe(topic, lambda _t, p: got.append(p))
    consumer.stop()
    # device publishes 20 x qos1 while the consumer is away
    device = _client(embedded_broker, f"dev-{uuid.uuid4().hex[:8]}")
    device.start()
    sent = [f"m{i}".encode() for i in range(20)]
    for payload in sent:
        device.publish(topic, payload)
    assert device.wait_all_acked(5)
    # consumer comes back with the same id and the same handler
    again = _client(embedded_broker, consumer_id, clean_session)
    again.subscribe(topic, lambda _t, p: got.append(p))  # registers the handler; subscribes on connect
    again.start()
    try:
        if clean_session:
            # the SUBSCRIBE sent on connect is not awaited: publish until one arrives
            assert wait_for(lambda: device.publish(topic, b"after") and b"after" in got, interval_s=0.1)
            assert set(got) == {b"after"}  # nothing was kept for a clean session
        else:
            assert wait_for(lambda: len(got) >= len(sent))
            assert got == sent
    finally:
        again.stop()
        device.stop()
