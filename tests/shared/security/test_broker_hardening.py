"""Issue 13 items 1, 2 and 9 against a real Mosquitto running the configuration `tinylarge broker config` writes.

* a burst of QoS 1 messages queued for the cloud's persistent session is delivered in full (before: Mosquitto's
  default ``max_queued_messages 1000`` dropped everything beyond it);
* a device that connects with the cloud's client id gets its own session, not the cloud's
  (``use_username_as_clientid``); the cloud stays connected and receives every message;
* the operator user reads dead letters and every stream, and may publish nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.shared.security.test_security_broker import V5, Broker, Client, _make_broker, _wait

pytestmark = pytest.mark.broker

CLOUD_ID = "tinylarge-healthcare-service"


class Session:
    """A paho client with an explicit client id and a persistent session; counts messages per topic."""

    def __init__(self, broker: Broker, user: str, client_id: str):
        self.received: list[tuple[str, bytes]] = []
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.disconnects = 0
        self._lock = threading.Lock()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                        protocol=mqtt.MQTTv311)
        c.tls_set(ca_certs=str(broker.pki / "ca.crt"))
        c.username_pw_set(user, broker.files.passwords[user])
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(0)
        c.on_connect = lambda *_a: self.connected.set()
        c.on_disconnect = lambda *_a: self._gone()
        c.on_subscribe = lambda *_a: self.subscribed.set()
        c.on_message = lambda _c, _u, m: self._got(m.topic, m.payload)
        self.client, self.broker = c, broker

    def _gone(self) -> None:
        self.disconnects += 1
        self.connected.clear()

    def _got(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self.received.append((topic, payload))

    def count(self, topic: str) -> int:
        with self._lock:
            return sum(1 for t, _ in self.received if t == topic)

    def connect(self) -> Session:
        self.client.connect("127.0.0.1", self.broker.port, keepalive=30)
        self.client.loop_start()
        assert self.connected.wait(10), "no CONNACK"
        return self

    def subscribe(self, topic: str) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self.subscribed.wait(10), "no SUBACK"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _burst(broker: Broker, device: str, topic: str, n: int) -> None:
    """``n`` QoS 1 messages from ``device`` as fast as the broker acknowledges them; all PUBACKed."""
    pub = Session(broker, device, f"{device}-burst").connect()
    infos = [pub.client.publish(topic, str(i).encode(), qos=1) for i in range(n)]
    for info in infos:
        info.wait_for_publish(30)
    assert all(info.is_published() for info in infos)
    pub.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = _make_broker(tmp_path, operator_users=("ops",), app_users=("dash",))
    b.start()
    yield b
    b.stop()


def test_burst_queued_for_an_offline_cloud_session_is_delivered_in_full(broker: Broker) -> None:
    topic, n = "tinylarge/healthcare/dev1/inference", 5000
    cloud = Session(broker, "cloud", CLOUD_ID).connect()
    cloud.subscribe("tinylarge/+/+/inference")
    cloud.close()  # persistent session: the broker queues for it
    _burst(broker, "dev1", topic, n)
    cloud = Session(broker, "cloud", CLOUD_ID).connect()
    try:
        _wait(lambda: cloud.count(topic) >= n, f"{n} messages (got {cloud.count(topic)})", timeout_s=30)
    finally:
        cloud.close()
    assert cloud.count(topic) == n
    assert "Outgoing messages are being dropped" not in broker.log()


def test_a_device_using_the_cloud_client_id_does_not_take_its_session(broker: Broker) -> None:
    topic, n = "tinylarge/industrial_iot/dev2/inference", 300
    cloud = Session(broker, "cloud", CLOUD_ID).connect()
    cloud.subscribe("tinylarge/+/+/inference")
    thief = Session(broker, "dev1", CLOUD_ID).connect()  # dev1's own valid password, the cloud's client id
    try:
        _burst(broker, "dev2", topic, n)
        _wait(lambda: cloud.count(topic) >= n, f"{n} messages (got {cloud.count(topic)})", timeout_s=30)
        assert cloud.disconnects == 0, "the device's CONNECT took over the cloud's session"
        assert thief.count(topic) == 0
    finally:
        thief.close()
        cloud.close()
    assert cloud.count(topic) == n


def test_operator_reads_dead_letters_and_streams_and_writes_nothing(broker: Broker) -> None:
    made: list[Client] = []

    def client(user: str, **kw) -> Client:
        c = Client(broker, user, broker.files.passwords[user], **kw)
        made.append(c)
        assert c.connect() == "Success"
        return c

    try:
        ops, dash, cloud, dev1 = client("ops", protocol=V5), client("dash"), client("cloud"), client("dev1")
        for c in (ops, dash):
            c.subscribe("tinylarge/_deadletter/#")
            c.subscribe("tinylarge/+/+/inference")
        dash.subscribe("tinylarge/+/+/status")
        dl = "tinylarge/_deadletter/healthcare"
        assert cloud.publish(dl, b"refused-message") == "Success"
        assert dev1.publish("tinylarge/healthcare/dev1/inference", b"reading") == "Success"
        got = ops.receive_until("tinylarge/healthcare/dev1/inference", b"reading")
        assert (dl, b"refused-message", False) in got
        # the application user (risk/action/status only) still sees neither
        assert cloud.publish("tinylarge/healthcare/dev1/status", b"marker") == "Success"
        seen = dash.receive_until("tinylarge/healthcare/dev1/status", b"marker")
        assert all(t != dl and not t.endswith("/inference") for t, _, _ in seen)
        for topic in (dl, "tinylarge/healthcare/dev1/risk", "tinylarge/healthcare/dev1/model",
                      "tinylarge/healthcare/ops/inference"):
            assert ops.publish(topic, b"x") == "Not authorized", topic
    finally:
        for c in made:
            c.close()
