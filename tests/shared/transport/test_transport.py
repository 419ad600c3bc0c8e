"""shared.transport.mqtt.MqttClient against real brokers: the embedded amqtt one and Mosquitto.

Each test narrates the exchange: who connects, who publishes what at which QoS, what the broker
does, what arrives.
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import pytest

from shared.transport.consumer import Publisher
from shared.transport.mqtt import MqttClient, MqttConfig
from tests.fixtures.mqtt import MosquittoServer, free_port, wait_for
from tests.shared._support import uid

BROKERS = ["embedded_broker", pytest.param("mosquitto", marks=pytest.mark.broker)]


def broker_url(request: pytest.FixtureRequest, name: str) -> str:
    value = request.getfixturevalue(name)
    return value if isinstance(value, str) else value.url


class Inbox:
    """A handler that records (topic, payload) in arrival order, and on which thread it ran."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []
        self.threads: set[str] = set()

    def __call__(self, topic: str, payload: bytes) -> None:
        self.threads.add(threading.current_thread().name)
        self.items.append((topic, payload))

    @property
    def payloads(self) -> list[bytes]:
        return [p for _, p in self.items]


@pytest.fixture
def clients():
    made: list[MqttClient] = []

    def make(url: str, client_id: str, **kw: object) -> MqttClient:
        c = MqttClient(MqttConfig(url, client_id, reconnect_max_s=1.0, **kw))  # type: ignore[arg-type]
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop(flush_timeout_s=1)


@pytest.mark.parametrize("broker", BROKERS)
def test_qos1_round_trip_in_order_off_the_network_thread(request, clients, broker):
    url = broker_url(request, broker)
    topic = f"tinylarge/healthcare/{uid('dev')}/inference"
    # consumer: CONNECT(clean=0) -> CONNACK; SUBSCRIBE qos1 -> SUBACK (subscribe() waits for it)
    sub = clients(url, uid("consumer"))
    sub.start()
    inbox = Inbox()
    sub.subscribe(topic, inbox)
    # device: 50 x PUBLISH qos1 -> 50 x PUBACK
    pub = clients(url, uid("device"))
    pub.start()
    sent = [f"m{i}".encode() for i in range(50)]
    for payload in sent:
        assert pub.publish(topic, payload)
    assert pub.wait_all_acked(10)
    # broker -> consumer: 50 x PUBLISH qos1, each PUBACKed after the handler returned
    assert wait_for(lambda: len(inbox.items) == len(sent))
    assert inbox.payloads == sent
    assert {t for t, _ in inbox.items} == {topic}
    assert inbox.threads and all(name.startswith("mqtt-worker") for name in inbox.threads)
    assert pub.counts["published"] == pub.counts["acked"] == len(sent)
    assert wait_for(lambda: sub.counts["handled"] == len(sent))
    assert sub.counts["received"] == len(sent) and sub.counts["handler_errors"] == 0


@pytest.mark.parametrize("broker", BROKERS)
def test_retained_status_and_last_will_offline(request, clients, broker):
    url = broker_url(request, broker)
    device = uid("wear")
    will_topic, will_payload = Publisher.status_will("healthcare", device, "hc-tiny@1")
    assert json.loads(will_payload)["state"] == "offline"
    # device: CONNECT with will (status offline, qos1, retained); PUBLISH status online retained
    dev = clients(url, uid("device"), will_topic=will_topic, will_payload=will_payload)
    dev.start()
    online = {"v": 1, "device": device, "seq": 1, "ts": 1_700_000_000_000, "model": "hc-tiny@1",
              "state": "online"}
    assert Publisher(dev).publish_msg("healthcare", device, "status", online, retain=True)
    assert dev.wait_all_acked(5)
    # a dashboard subscribing afterwards gets the retained "online" at once
    dash = clients(url, uid("dash"), clean_session=True)
    dash.start()
    inbox = Inbox()
    dash.subscribe(will_topic, inbox)
    assert wait_for(lambda: len(inbox.items) == 1)
    assert json.loads(inbox.payloads[0])["state"] == "online"
    # the device dies without DISCONNECT (socket closed): the broker publishes the will
    dev.abort()
    assert wait_for(lambda: len(inbox.items) == 2)
    assert json.loads(inbox.payloads[1])["state"] == "offline"
    # and keeps it retained for the next subscriber
    late = clients(url, uid("late"), clean_session=True)
    late.start()
    late_inbox = Inbox()
    late.subscribe(will_topic, late_inbox)
    assert wait_for(lambda: len(late_inbox.items) >= 1)
    assert json.loads(late_inbox.payloads[-1])["state"] == "offline"


def test_handler_exception_is_counted_and_the_worker_goes_on(embedded_broker, clients):
    topic = f"t/{uid('x')}"
    sub = clients(embedded_broker, uid("sub"))
    sub.start()
    seen: list[bytes] = []

    def handler(_topic: str, payload: bytes) -> None:
        if payload == b"boom":
            raise RuntimeError("handler failed on purpose")
        seen.append(payload)

    sub.subscribe(topic, handler)
    pub = clients(embedded_broker, uid("pub"))
    pub.start()
    for payload in (b"a", b"boom", b"b"):
        pub.publish(topic, payload)
    assert wait_for(lambda: seen == [b"a", b"b"])
    assert wait_for(lambda: sub.counts["handler_errors"] == 1)
    assert sub.counts["handled"] == 2


def test_unreachable_broker_is_a_connection_error():
    port = free_port()
    with pytest.raises(ConnectionError, match=f"unreachable at mqtt://127.0.0.1:{port}"):
        MqttClient(MqttConfig(f"mqtt://127.0.0.1:{port}", "c1")).start(timeout_s=2)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="scheme"):
        MqttConfig("tcp://h:1", "c")
    with pytest.raises(ValueError, match="max_queue"):
        MqttConfig("mqtt://h", "c", max_queue=0)
    with pytest.raises(ValueError, match="will_topic"):
        MqttConfig("mqtt://h", "c", will_topic="x")
    with pytest.raises(ValueError, match="mqtts://"):
        MqttClient(MqttConfig("mqtt://h", "c", ca="/tmp/ca.pem"))
    with pytest.raises(ValueError, match="topic filter"):
        MqttClient(MqttConfig("mqtt://h", "c")).subscribe("a/#/b", lambda t, p: None)


@pytest.mark.broker
def test_refused_connection_names_the_reason(mosquitto_factory, tmp_path: Path):
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "alice", "right"], check=True,
                   capture_output=True)
    server: MosquittoServer = mosquitto_factory(conf_extra=f"allow_anonymous false\npassword_file {passwd}")
    host = f"127.0.0.1:{server.port}"
    with pytest.raises(ConnectionError, match="refused.*([Nn]ot authori[sz]ed|[Bb]ad user name or password)"):
        MqttClient(MqttConfig(f"mqtt://{host}", "anon")).start(timeout_s=5)
    with pytest.raises(ConnectionError, match="refused") as info:
        MqttClient(MqttConfig(f"mqtt://alice:wrong@{host}", "bad")).start(timeout_s=5)
    assert "wrong" not in str(info.value)
    good = MqttClient(MqttConfig(f"mqtt://alice:right@{host}", "good"))
    good.start(timeout_s=5)
    assert good.connected
    good.stop()


@pytest.mark.broker
def test_bounded_queue_while_the_broker_is_down(mosquitto_factory, clients):
    server: MosquittoServer = mosquitto_factory()
    topic = f"t/{uid('q')}"
    # a persistent consumer subscribes; its session is saved when mosquitto shuts down cleanly
    sub = clients(server.url, uid("sub"))
    sub.start()
    inbox = Inbox()
    sub.subscribe(topic, inbox)
    pub = clients(server.url, uid("pub"), max_queue=5)
    pub.start()
    server.stop()
    assert wait_for(lambda: not pub.connected)
    # disconnected: QoS 1 publishes wait in paho's queue, up to max_queue
    for i in range(5):
        assert pub.publish(topic, f"m{i}".encode(), timeout_s=0.1)
    assert not pub.publish(topic, b"m5", timeout_s=0.2)  # queue full: blocked 0.2 s, then dropped
    assert pub.counts["dropped"] == 1 and pub.counts["published"] == 5
    # a publisher that may wait blocks until the broker is back and PUBACKs free room
    result: list[bool] = []
    blocked = threading.Thread(target=lambda: result.append(pub.publish(topic, b"m6", timeout_s=20)))
    blocked.start()
    blocked.join(0.3)
    assert blocked.is_alive()
    server.start()  # same port, same persistence: both clients reconnect with their sessions
    blocked.join(20)
    assert result == [True]
    assert pub.wait_all_acked(10)
    assert pub.counts["acked"] == 6 and pub.counts["reconnects"] >= 1
    expected = [b"m0", b"m1", b"m2", b"m3", b"m4", b"m6"]
    assert wait_for(lambda: len(inbox.items) >= len(expected))
    assert inbox.payloads == expected


@pytest.mark.broker
def test_subscriptions_come_back_when_the_broker_lost_the_session(mosquitto_factory, clients):
    server: MosquittoServer = mosquitto_factory(persistence=False)
    topic = f"t/{uid('s')}"
    sub = clients(server.url, uid("sub"))
    sub.start()
    inbox = Inbox()
    sub.subscribe(topic, inbox)
    server.stop()
    server.start()  # no persistence: the broker forgot the session and the subscription
    assert wait_for(lambda: sub.connected and sub.counts["reconnects"] == 1)
    pub = clients(server.url, uid("pub"))
    pub.start()
    assert wait_for(lambda: (pub.publish(topic, b"again") and False) or len(inbox.items) > 0, timeout_s=10,
                    interval_s=0.2)
    assert set(inbox.payloads) == {b"again"}


@pytest.mark.broker
def test_messages_arriving_before_subscribe_wait_for_their_handler(mosquitto, clients):
    topic, sub_id = f"t/{uid('p')}", uid("sub")
    first = clients(mosquitto.url, sub_id)
    first.start()
    first.subscribe(topic, Inbox())
    first.stop()
    pub = clients(mosquitto.url, uid("pub"))
    pub.start()
    sent = [f"m{i}".encode() for i in range(10)]
    for payload in sent:
        pub.publish(topic, payload)
    assert pub.wait_all_acked(5)
    # same client id, session kept: mosquitto sends the 10 right after CONNACK, before any subscribe()
    again = clients(mosquitto.url, sub_id)
    again.start()
    assert wait_for(lambda: again.counts["parked"] == len(sent))
    inbox = Inbox()
    again.subscribe(topic, inbox)  # the handler arrives: parked messages are handled in order, then PUBACKed
    assert wait_for(lambda: len(inbox.items) == len(sent))
    assert inbox.payloads == sent
    assert again.counts["parked"] == 0 and again.counts["handled"] == len(sent)
