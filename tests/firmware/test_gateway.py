"""The gateway: frames from QEMU (or any pipe) -> shared.protocol.messages.decode -> MQTT at QoS 1.
Invalid messages are counted and dead-lettered, never forwarded to the device topic."""

from __future__ import annotations

import json
import time

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from shared.protocol import messages
from shared.tiny.frames import encode_message
from shared.tiny.gateway import Gateway, GatewayConfig, run
from tests._tools import require_tool
from tests.firmware import _fw

pytestmark = pytest.mark.firmware


def _subscribe(port: int, got: list):
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"gw-sub-{time.monotonic_ns()}", protocol=paho.MQTTv311)
    c.on_message = lambda cl, u, m: got.append(m)
    c.connect("127.0.0.1", port)
    c.subscribe("tinylarge/#", qos=1)
    c.loop_start()
    time.sleep(0.3)
    return c


def _wait(pred, timeout_s=10.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and not pred():
        time.sleep(0.05)
    return pred()


def _status(device: str, seq: int, state: str) -> bytes:
    return json.dumps({"v": 1, "device": device, "seq": seq, "ts": 1, "model": "m@1", "state": state}).encode()


def test_gateway_forwards_valid_and_rejects_invalid():
    sent: list[tuple[str, bytes, int, bool]] = []
    gw = Gateway("healthcare", lambda t, p, q, r: sent.append((t, p, q, r)) or True)
    gw.feed(encode_message("status", _status("dev-a", 0, "online")))
    gw.feed(encode_message("inference", b'{"v":1,"device":"dev-a"}'))  # schema violation
    gw.feed(encode_message("inference", b"not json"))
    gw.close()
    assert gw.counts["forwarded"] == 1 and gw.counts["invalid"] == 2
    topics = [t for t, *_ in sent]
    assert topics[0] == "tinylarge/healthcare/dev-a/status" and sent[0][3] is True
    assert topics.count(messages.deadletter_topic("healthcare")) == 2
    assert not any(t.endswith("/inference") for t in topics)
    # the line ended while dev-a was online: its offline status goes out retained, like a last will
    assert topics[-1] == "tinylarge/healthcare/dev-a/status" and b'"offline"' in sent[-1][1] and sent[-1][3]
    assert any("schema" in r for r in gw.reasons) and any("bad JSON" in r for r in gw.reasons)


@pytest.mark.broker
def test_qemu_to_gateway_to_mosquitto(mosquitto):
    require_tool("qemu-system-arm")
    import subprocess

    from shared.tiny.firmware import qemu_command

    elf = _fw.built("cortex-m4").artifacts["app.elf"]
    got: list = []
    sub = _subscribe(mosquitto.port, got)
    proc = subprocess.Popen(qemu_command(elf, ["--input", str(_fw.sensor_file()), "--device", "qemu-dev-1"]),
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        summary = run(GatewayConfig(mosquitto.url, "healthcare", "fw-gw-test"), proc.stdout)  # type: ignore[arg-type]
        proc.wait(30)
        n = len(_fw.windows())
        assert _wait(lambda: len([m for m in got if m.topic.startswith("tinylarge/healthcare/qemu-dev-1/")]) >= n + 2)
    finally:
        sub.loop_stop()
        sub.disconnect()
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()  # type: ignore[union-attr]
    assert summary["counts"]["forwarded_inference"] == n and summary["counts"].get("invalid", 0) == 0
    assert summary["counts"]["all_acked"] == 1
    mine = [m for m in got if m.topic.startswith("tinylarge/healthcare/qemu-dev-1/")]  # the broker is shared
    for m in mine:
        t = messages.parse_topic(m.topic)
        assert messages.decode("healthcare", t.stream, m.payload)["device"] == "qemu-dev-1"
    assert [m.topic.rsplit("/", 1)[1] for m in mine].count("inference") == n
