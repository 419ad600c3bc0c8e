"""The generated PKI, Mosquitto configuration and ACL against a real Mosquitto 2 over TLS.

Each test narrates the exchange: who connects with what, what the broker answers, and what a
subscriber with full read rights did (or did not) receive. Messages from one publisher arrive in
order, so "the marker published after the forged message arrived, the forged one did not" proves a
silent drop without waiting on a clock.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from shared.protocol.messages import encode
from shared.security.brokerconf import BrokerConfig, BrokerFiles, write_broker_config
from shared.security.model_update import ModelSlot, generate_keypair, model_topic, sign_update
from shared.security.pki import create_ca, issue
from tests._tools import require_tool

pytestmark = pytest.mark.broker

TIMEOUT_S = 10.0
DEVICES = ("dev1", "dev2")
#: each device identity belongs to one domain (issue 23 item 7)
DOMAIN_OF = {"dev1": "healthcare", "dev2": "industrial_iot"}
V311, V5 = mqtt.MQTTv311, mqtt.MQTTv5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(pred: Callable[[], bool], what: str, timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@dataclass
class Broker:
    port: int
    pki: Path
    files: BrokerFiles
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        exe = require_tool("mosquitto")
        log = open(self.files.conf.parent / "mosquitto.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([exe, "-c", str(self.files.conf)], stdout=log, stderr=log)
        self._log = log

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited ({self.proc.returncode}): {self.log()[-2000:]}")
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        _wait(listening, "mosquitto to listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=TIMEOUT_S)
        self.proc = None
        self._log.close()

    def log(self) -> str:
        return (self.files.conf.parent / "mosquitto.log").read_text(errors="replace")


def _make_broker(tmp: Path, **overrides) -> Broker:
    pki = tmp / "pki"
    if not (pki / "ca.crt").exists():
        create_ca(pki)
        issue(pki, "broker", kind="server")
        for name in (*DEVICES, "cloud"):
            issue(pki, name, kind="client")
    port = _free_port()
    overrides.setdefault("devices", tuple(f"{DOMAIN_OF[d]}:{d}" for d in DEVICES))
    cfg = BrokerConfig(
        pki_dir=pki, out_dir=tmp / "broker", port=port, bind_address="127.0.0.1",
        run_as_user="root" if os.geteuid() == 0 else None, **overrides,
    )
    return Broker(port, pki, write_broker_config(cfg, env={}))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = _make_broker(tmp_path_factory.mktemp("mosq"))
    b.start()
    yield b
    b.stop()


class Client:
    """A paho-mqtt 2 client that records CONNACK, PUBACK and SUBACK reason codes and received messages."""

    def __init__(self, broker: Broker, user: str | None, password: str | None = None, protocol: int = V311,
                 ca: bool = True, cert: str | None = None):
        self.connack: mqtt.ReasonCode | None = None
        self.disconnects = 0
        self.pubacks: dict[int, mqtt.ReasonCode] = {}
        self.subacks: dict[int, list[mqtt.ReasonCode]] = {}
        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
        certfile = str(broker.pki / f"{cert}.crt") if cert else None
        keyfile = str(broker.pki / f"{cert}.key") if cert else None
        # ca=False: trust only the system store, which does not hold the deployment's CA
        c.tls_set(ca_certs=str(broker.pki / "ca.crt") if ca else None, certfile=certfile, keyfile=keyfile)
        if user is not None:
            c.username_pw_set(user, password)
        c.on_connect = lambda _c, _u, _f, rc, _p: setattr(self, "connack", rc)
        c.on_publish = lambda _c, _u, mid, rc, _p: self.pubacks.__setitem__(mid, rc)
        c.on_subscribe = lambda _c, _u, mid, rcs, _p: self.subacks.__setitem__(mid, list(rcs))
        c.on_disconnect = lambda *_a: setattr(self, "disconnects", self.disconnects + 1)
        c.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload, bool(m.retain)))
        self.client, self.broker = c, broker

    def connect(self) -> mqtt.ReasonCode:
        self.client.connect("127.0.0.1", self.broker.port, keepalive=30)
        self.client.loop_start()
        _wait(lambda: self.connack is not None, "CONNACK")
        assert self.connack is not None
        return self.connack

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> mqtt.ReasonCode:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(TIMEOUT_S)
        return self.pubacks[info.mid]

    def subscribe(self, topic: str, qos: int = 1) -> list[mqtt.ReasonCode]:
        _, mid = self.client.subscribe(topic, qos=qos)
        _wait(lambda: mid in self.subacks, f"SUBACK for {topic}")
        return self.subacks[mid]

    def receive_until(self, topic: str, payload: bytes | None = None) -> list[tuple[str, bytes, bool]]:
        """Every message received up to and including the first on ``topic`` (with ``payload`` if given)."""
        seen = []
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no message on {topic}; got {seen}")
            try:
                msg = self.messages.get(timeout=remaining)
            except queue.Empty:
                continue
            seen.append(msg)
            if msg[0] == topic and (payload is None or msg[1] == payload):
                return seen

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients(broker: Broker) -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(user: str | None, password: str | None = None, connect: bool = True, **kw) -> Client:
        if user is not None and password is None:
            password = broker.files.passwords[user]
        c = Client(broker, user, password, **kw)
        made.append(c)
        if connect:
            assert c.connect() == "Success", f"{user} refused: {c.connack}"
        return c

    yield make
    for c in made:
        c.close()


@pytest.mark.parametrize("protocol", [V311, V5], ids=["mqtt311", "mqtt5"])
def test_device_cannot_publish_as_another_device(clients, protocol: int) -> None:
    cloud = clients("cloud")
    cloud.subscribe("tinylarge/+/+/inference")
    dev1 = clients("dev1", protocol=protocol)
    own, forged = "tinylarge/healthcare/dev1/inference", "tinylarge/healthcare/dev2/inference"
    tag = f"p{protocol}".encode()

    assert dev1.publish(own, b"own-" + tag) == "Success"
    forged_ack = dev1.publish(forged, b"forged-" + tag)
    assert dev1.publish(own, b"marker-" + tag) == "Success"

    if protocol == V5:
        # MQTT 5: the broker says so in the PUBACK reason code (0x87)
        assert forged_ack == "Not authorized" and forged_ack.value == 0x87
    else:
        # MQTT 3.1.1 has no PUBACK reason codes: Mosquitto acknowledges and silently drops
        assert forged_ack == "Success"
    got = cloud.receive_until(own, b"marker-" + tag)
    payloads = [p for _, p, _ in got]
    assert b"own-" + tag in payloads
    assert not [m for m in got if m[0] == forged], f"forged message delivered: {got}"


def test_device_cannot_overwrite_its_own_model_topic(clients) -> None:
    cloud = clients("cloud")
    cloud.subscribe("tinylarge/+/+/model")
    dev1 = clients("dev1", protocol=V5)
    assert dev1.publish("tinylarge/healthcare/dev1/model", b"{}", retain=True) == "Not authorized"
    assert dev1.publish("tinylarge/healthcare/dev1/risk", b"{}") == "Not authorized"
    assert cloud.publish("tinylarge/vehicles/dev1/model", b"from-cloud", retain=True) == "Success"
    got = cloud.receive_until("tinylarge/vehicles/dev1/model", b"from-cloud")
    assert all(p != b"{}" for _, p, _ in got)


@pytest.mark.parametrize("protocol", [V311, V5], ids=["mqtt311", "mqtt5"])
def test_anonymous_client_is_refused(clients, protocol: int) -> None:
    anon = clients(None, connect=False, protocol=protocol)
    rc = anon.connect()
    # 3.1.1 CONNACK return code 5 and MQTT 5 reason 0x87 both surface as "Not authorized" in paho 2
    assert rc.is_failure and rc == "Not authorized"


@pytest.mark.parametrize("protocol", [V311, V5], ids=["mqtt311", "mqtt5"])
def test_wrong_password_is_refused(clients, broker: Broker, protocol: int) -> None:
    wrong = broker.files.passwords["dev1"] + "x"
    rc = clients("dev1", password=wrong, connect=False, protocol=protocol).connect()
    assert rc.is_failure
    other = clients("dev1", password=broker.files.passwords["dev2"], connect=False, protocol=protocol).connect()
    assert other.is_failure, "dev2's password must not open dev1's account"


def test_client_without_the_ca_cannot_connect(clients) -> None:
    c = clients("dev1", connect=False, ca=False)
    with pytest.raises(ssl.SSLCertVerificationError):
        c.client.connect("127.0.0.1", c.broker.port)


def test_device_reads_only_its_own_model_topic(clients) -> None:
    cloud = clients("cloud")
    assert cloud.publish("tinylarge/healthcare/dev2/model", b"model-for-dev2", retain=True) == "Success"
    assert cloud.publish("tinylarge/healthcare/dev1/model", b"model-for-dev1", retain=True) == "Success"
    dev1 = clients("dev1")
    # Mosquitto 2.0 grants the SUBACK either way and filters on delivery, so look at what arrives:
    # retained messages are sent in subscription order, the denied topic first.
    dev1.subscribe("tinylarge/healthcare/dev2/model")
    dev1.subscribe("tinylarge/#")
    dev1.subscribe("tinylarge/healthcare/dev1/model")
    got = dev1.receive_until("tinylarge/healthcare/dev1/model", b"model-for-dev1")
    # (other tests may have left dev1 models retained in other domains: those are dev1's too)
    assert all(t.split("/")[2] == "dev1" for t, _, _ in got), got
    assert all(p != b"model-for-dev2" for _, p, _ in got)


def test_signed_model_update_travels_retained_over_tls(clients, broker: Broker, tmp_path: Path) -> None:
    private, public = generate_keypair(tmp_path / "keys")
    from shared.tiny.targets import domain_tflite

    real = domain_tflite("industrial_iot", tmp_path / "models").read_bytes()  # the slot loads what it installs
    model = real + os.urandom(2048)
    topic = model_topic("industrial_iot", "dev2")
    msg = sign_update("industrial_iot", "dev2", "iot-tiny", 7, model, private, seq=1, ts_ms=1_700_000_000_000)
    cloud = clients("cloud")
    assert cloud.publish(topic, encode("industrial_iot", "model", msg), retain=True) == "Success"
    # the device connects afterwards: the update reaches it because it is retained
    dev2 = clients("dev2")
    dev2.subscribe(topic)
    (_, payload, retained), = dev2.receive_until(topic)
    assert retained
    slot = ModelSlot("industrial_iot", "dev2", public, path=tmp_path / "dev2.tflite")
    accepted, reason = slot.offer(payload)
    assert accepted, reason
    assert msg["model"] in reason
    assert slot.active_version == 7 and slot.active_bytes == model
    assert (tmp_path / "dev2.tflite").read_bytes() == model

    # replaying an older signed version live is refused and the installed model stays
    old = sign_update("industrial_iot", "dev2", "iot-tiny", 6, real + b"old" * 20, private, 2, 1)
    assert cloud.publish(topic, encode("industrial_iot", "model", old), retain=True) == "Success"
    (_, replay, _), = dev2.receive_until(topic)
    accepted, reason = slot.offer(replay)
    assert not accepted and "stale version 6" in reason
    assert slot.active_version == 7 and (tmp_path / "dev2.tflite").read_bytes() == model


def test_retained_model_survives_a_broker_restart(tmp_path: Path) -> None:
    b = _make_broker(tmp_path)
    b.start()
    try:
        cloud = Client(b, "cloud", b.files.passwords["cloud"])
        cloud.connect()
        assert cloud.publish("tinylarge/healthcare/dev1/model", b"kept", retain=True) == "Success"
        cloud.close()
        b.stop()  # SIGTERM: Mosquitto writes data/mosquitto.db on a clean shutdown
        assert (b.files.data_dir / "mosquitto.db").stat().st_size > 0
        b.start()
        dev1 = Client(b, "dev1", b.files.passwords["dev1"])
        dev1.connect()
        dev1.subscribe("tinylarge/healthcare/dev1/model")
        (_, payload, retained), = dev1.receive_until("tinylarge/healthcare/dev1/model")
        dev1.close()
        assert payload == b"kept" and retained
    finally:
        b.stop()


def test_mutual_tls_with_certificate_identity(tmp_path: Path) -> None:
    b = _make_broker(tmp_path, require_certificate=True, identity_as_username=True)
    b.start()
    made: list[Client] = []
    try:
        # no client certificate: the TLS handshake itself fails (or the broker drops the socket)
        # (with TLS 1.3 the client's handshake completes first and the broker's alert ends the connection)
        bare = Client(b, None)
        try:
            bare.client.connect("127.0.0.1", b.port)
        except (ssl.SSLError, OSError):
            pass
        else:
            bare.client.loop_start()
            _wait(lambda: bare.disconnects > 0 or bare.connack is not None, "the broker to close the connection")
            bare.client.loop_stop()
            assert bare.connack is None, f"connected without a certificate: {bare.connack}"
        assert "did not return a certificate" in b.log()
        cloud = Client(b, None, cert="cloud")
        dev1 = Client(b, None, protocol=V5, cert="dev1")
        made += [cloud, dev1]
        assert cloud.connect() == "Success" and dev1.connect() == "Success"
        cloud.subscribe("tinylarge/+/+/inference")
        # the CN is the username, so the %u patterns apply to the certificate's identity
        assert dev1.publish("tinylarge/healthcare/dev2/inference", b"forged") == "Not authorized"
        assert dev1.publish("tinylarge/healthcare/dev1/inference", b"own") == "Success"
        got = cloud.receive_until("tinylarge/healthcare/dev1/inference", b"own")
        assert [p for _, p, _ in got] == [b"own"]
    finally:
        for c in made:
            c.close()
        b.stop()
