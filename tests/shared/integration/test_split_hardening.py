"""Issue 23 item 5: split learning on the secured broker, and a cloud end that dead-letters hostile arrays.

* Against the Mosquitto configuration `tinylarge broker config` writes (TLS, passwords, per-device ACL), a
  device user and a service user run one split exchange (over TLS with the deployment's CA, and on the
  loopback plain listener with the same ACL). Before: the ACL had no split streams, the batch never
  reached the cloud and the device timed out.
* On an open broker, hostile ``smashed`` messages from an admitted device (bad schema, another device's
  envelope, data shorter than its shape, the wrong width, labels out of range, too few labels, NaN) each
  produce one dead letter on ``tinylarge/_deadletter/<domain>`` with a reason; the handler raises nothing
  and the cloud model is not touched; a good batch after them is answered. Before: length, width and
  labels raised tracebacks in the handler and nothing was dead-lettered.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shared.integration.split import wire
from shared.integration.split.cloud import CloudServer
from shared.integration.split.link import CloudService, DeviceLink
from shared.protocol import messages
from shared.transport.mqtt import MqttClient, MqttConfig
from tests.shared.security.test_security_broker import DOMAIN_OF, Broker, _free_port, _make_broker, _wait

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = _make_broker(tmp_path_factory.mktemp("split-secured"), service_users=("svc1",), plain_port=_free_port())
    b.start()
    yield b
    b.stop()


@pytest.mark.parametrize("listener", ["tls", "plain"])
def test_split_exchange_between_a_device_and_a_service_user_on_the_secured_broker(secured: Broker,
                                                                                   listener: str) -> None:
    domain, pw = DOMAIN_OF["dev1"], secured.files.passwords
    if listener == "tls":
        base, tls = f"mqtts://{{}}@127.0.0.1:{secured.port}", {"ca": str(secured.pki / "ca.crt")}
    else:
        port = next(int(line.split()[1]) for line in secured.files.conf.read_text().splitlines()
                    if line.startswith("listener ") and line.endswith(" 127.0.0.1") and str(secured.port) not in line)
        base, tls = f"mqtt://{{}}@127.0.0.1:{port}", {}
    server = CloudServer(4, 3)
    cloud = CloudService(base.format(f"svc1:{pw['svc1']}"), domain, server, "t@1", "split-cloud", lambda d: "k",
                         **tls).start()
    link = None
    try:
        cloud.admit("dev1")
        link = DeviceLink(base.format(f"dev1:{pw['dev1']}"), domain, "dev1", "t@1", "float32", timeout_s=30.0,
                          **tls).start()
        grad, loss = link.exchange(0, 0, np.ones((2, 4), np.float32), np.array([0, 2]))
        assert grad.shape == (2, 4) and loss > 0 and server.steps == 1
        pred = link.infer(0, 1, np.full((3, 4), 5, np.int8), 0.1, 0)
        assert pred.shape == (3,)
    finally:
        if link is not None:
            link.stop()
        cloud.stop()
    assert cloud.errors == []


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    from tests.fixtures.mqtt import MosquittoServer, _mosquitto_exe

    server = MosquittoServer(_mosquitto_exe(), tmp_path_factory.mktemp("split-open"), persistence=False)
    server.start()
    yield server.url
    server.kill()


def _smashed(device: str, seq: int, batch: int, **over) -> bytes:
    acts = np.ones((2, 4), np.float32)
    msg = {"v": 1, "device": device, "seq": seq, "ts": 1_700_000_000_000, "model": "t@1", "round": 0,
           "batch": batch, "phase": "train", **wire.pack(acts, "float32"), "labels": [0, 2], **over}
    return json.dumps(msg).encode()


def _f32(rows: int, width: int, value: float = 1.0) -> str:
    return base64.b64encode(np.full((rows, width), value, "<f4").tobytes()).decode()


HOSTILE = {
    "schema": b'{"v":1,"device":"hx","seq":1,"ts":1,"model":"t@1","round":0}',
    "device": None,  # built below: another device's envelope on hx's topic
    "length": {"shape": [2, 4], "data": _f32(1, 4)},
    "width": {"shape": [2, 5], "data": _f32(2, 5)},
    "labels": {"labels": [0, 9]},
    "label count": {"labels": [1]},
    "nan": {"data": _f32(2, 4, float("nan"))},
}


def test_hostile_arrays_are_dead_lettered_with_a_reason_and_raise_nothing(url: str) -> None:
    domain, device = "industrial_iot", "hx"
    server = CloudServer(4, 3)
    cloud = CloudService(url, domain, server, "t@1", "split-hostile-cloud", lambda d: "k").start()
    letters: list[dict] = []
    lock = threading.Lock()

    def on_letter(_topic: str, payload: bytes) -> None:
        with lock:
            letters.append(json.loads(payload))

    watcher = MqttClient(MqttConfig(url=url, client_id="split-hostile-watch", clean_session=True))
    watcher.start()
    watcher.subscribe(messages.deadletter_topic(domain), on_letter)
    link = DeviceLink(url, domain, device, "t@1", "float32", timeout_s=30.0).start()
    try:
        cloud.round = 0
        cloud.admit(device)
        topic = messages.topic(domain, device, wire.SMASHED)
        for i, (name, spec) in enumerate(HOSTILE.items()):
            if name == "schema":
                body = spec
            elif name == "device":
                body = _smashed("other-dev", 100 + i, 50 + i)
            else:
                body = _smashed(device, 100 + i, 50 + i, **spec)
            assert link.client.publish(topic, body, qos=1)
        # a good batch after them is answered (messages from one publisher arrive in order)
        grad, _ = link.exchange(0, 0, np.ones((2, 4), np.float32), np.array([0, 1]))
        assert grad.shape == (2, 4)
        _wait(lambda: len(letters) >= len(HOSTILE), f"{len(HOSTILE)} dead letters (got {len(letters)})")
    finally:
        link.stop()
        watcher.stop()
        cloud.stop()
    assert cloud.client.counts["handler_errors"] == 0, "a hostile message raised in the cloud handler"
    assert server.steps == 1, "a hostile batch touched the model"
    assert len(letters) == len(HOSTILE) == len(cloud.errors)
    reasons = [lt["reason"] for lt in letters]
    assert all(lt["topic"] == messages.topic(domain, device, wire.SMASHED) for lt in letters)
    for needle in ("schema", "other-dev", "bytes", "width 5", "labels outside 0..2", "1 labels for 2", "non-finite"):
        assert any(needle in r for r in reasons), (needle, reasons)


def test_link_refuses_tls_settings_on_a_plain_url(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mqtts"):
        DeviceLink("mqtt://127.0.0.1:1", "healthcare", "d1", "t@1", ca=str(tmp_path / "ca.crt"))
