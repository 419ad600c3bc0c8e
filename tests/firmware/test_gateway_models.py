"""Signed model updates through the firmware gateway (issue 4 item 2), against a real Mosquitto.

The gateway bridges a device's serial line (here: a pipe we write frames into). For every device it
bridges it subscribes to ``tinylarge/healthcare/<device>/model``, verifies each update with a
ModelSlot holding the trusted public key, keeps the old model on a bad hash, an unknown key or an old
version, writes an accepted one to ``<model-dir>/<device>/`` and reports ``active_model`` in the
device's retained status. The next firmware build takes the model from there (``build --slot``).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from shared.protocol import messages
from shared.security.model_update import generate_keypair, model_topic, sign_update
from shared.tiny.frames import FrameDecoder, encode_message
from shared.tiny.gateway import SLOT_FILE, Gateway, GatewayConfig, ModelAgent, run
from tests._tools import require_tool
from tests.firmware import _fw
from tests.fixtures.mqtt import wait_for

pytestmark = pytest.mark.firmware
DOMAIN = "healthcare"


def _device() -> str:
    return f"gwm-{uuid.uuid4().hex[:10]}"


def _status(device: str, seq: int, state: str = "online", model: str = "hc-tiny@1") -> dict:
    return {"v": 1, "device": device, "seq": seq, "ts": int(time.time() * 1000), "model": model, "state": state}


class _Line:
    """A device's serial line: frames written here reach a gateway running ``run()`` in a thread."""

    def __init__(self, cfg: GatewayConfig):
        r, w = os.pipe()
        self.reader, self.writer = os.fdopen(r, "rb", buffering=0), os.fdopen(w, "wb", buffering=0)
        self.summary: dict | None = None
        self.thread = threading.Thread(target=self._run, args=(cfg,), daemon=True)
        self.thread.start()

    def _run(self, cfg: GatewayConfig) -> None:
        self.summary = run(cfg, self.reader)  # type: ignore[arg-type]

    def send(self, stream: str, msg: dict) -> None:
        self.writer.write(encode_message(stream, json.dumps(msg).encode()))

    def close(self) -> dict:
        self.writer.close()
        self.thread.join(30)
        self.reader.close()
        assert self.summary is not None, "gateway did not finish"
        return self.summary


class _Broker:
    """The cloud side: publishes (retained) model updates, records statuses and dead letters."""

    def __init__(self, port: int, device: str):
        self.statuses: list[dict] = []
        self.dead: list[dict] = []
        self.device = device
        self.c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"cloud-{device}", protocol=paho.MQTTv311)
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.subscribe([(messages.topic(DOMAIN, device, "status"), 1), (messages.deadletter_topic(DOMAIN), 1)])
        self.c.loop_start()
        time.sleep(0.2)

    def _on_message(self, _c, _u, m) -> None:
        if not m.payload:
            return  # a retained message being cleared
        if m.topic.endswith("/status"):
            self.statuses.append(messages.decode(DOMAIN, "status", m.payload))
        elif self.device.encode() in m.payload:
            self.dead.append(json.loads(m.payload))

    def offer(self, msg: dict) -> None:
        payload = json.dumps(msg).encode()
        self.c.publish(model_topic(DOMAIN, self.device), payload, qos=1, retain=True).wait_for_publish(5)

    def status_with(self, **want) -> dict:
        ok = wait_for(lambda: any(all(_get(s, k) == v for k, v in want.items()) for s in self.statuses))
        assert ok, f"no status with {want}; got {self.statuses[-3:]}"
        return next(s for s in reversed(self.statuses) if all(_get(s, k) == v for k, v in want.items()))

    def close(self) -> None:
        self.c.publish(model_topic(DOMAIN, self.device), b"", qos=1, retain=True).wait_for_publish(5)
        self.c.publish(messages.topic(DOMAIN, self.device, "status"), b"", qos=1, retain=True).wait_for_publish(5)
        self.c.loop_stop()
        self.c.disconnect()


def _get(status: dict, key: str):
    if key in ("accepted", "rejected"):
        return status.get("counts", {}).get(key)
    return status.get(key)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    base = tmp_path_factory.mktemp("keys")
    return generate_keypair(base / "cloud"), generate_keypair(base / "rogue")


@pytest.fixture(scope="module")
def tflite() -> bytes:
    return Path(_fw.model()).read_bytes()


@pytest.mark.broker
def test_valid_update_accepted_tampered_and_forged_rejected_old_kept(mosquitto, keys, tflite, tmp_path):
    (private, public), (rogue_private, _) = keys
    device, slots = _device(), tmp_path / "slots"
    cloud = _Broker(mosquitto.port, device)
    line = _Line(GatewayConfig(mosquitto.url, DOMAIN, f"gw-{device}", trusted_keys=(public,), model_dir=slots))
    try:
        line.send("status", _status(device, 0))
        cloud.status_with(state="online", active_model="hc-tiny@1", accepted=0, rejected=0)

        # the model bytes altered after signing: hash mismatch, refused, dead-lettered
        tampered = sign_update(DOMAIN, device, "hc-tiny", 2, tflite, private, seq=1, ts_ms=1)
        altered = bytearray(tflite)
        altered[len(altered) // 2] ^= 0x01
        tampered["tflite_b64"] = base64.b64encode(bytes(altered)).decode()
        cloud.offer(tampered)
        st = cloud.status_with(rejected=1)
        assert st["active_model"] == "hc-tiny@1" and st["counts"]["accepted"] == 0
        assert wait_for(lambda: any("sha256 mismatch" in d["reason"] for d in cloud.dead))
        assert not (slots / device / SLOT_FILE).exists()

        # signed by a key the gateway does not trust
        cloud.offer(sign_update(DOMAIN, device, "hc-tiny", 2, tflite, rogue_private, seq=2, ts_ms=2))
        assert cloud.status_with(rejected=2)["active_model"] == "hc-tiny@1"
        assert wait_for(lambda: any("unknown signing key" in d["reason"] for d in cloud.dead))

        # the genuine update: installed, reported, written where the next build takes it
        cloud.offer(sign_update(DOMAIN, device, "hc-tiny", 2, tflite, private, seq=3, ts_ms=3))
        st = cloud.status_with(active_model="hc-tiny@2", accepted=1)
        assert st["state"] == "online" and st["model"] == "hc-tiny@1"  # the image still runs the old one
        assert (slots / device / SLOT_FILE).read_bytes() == tflite
        assert json.loads((slots / device / f"{SLOT_FILE}.json").read_text())["version"] == 2

        # a replay of an older, genuinely signed version: refused, v2 stays
        cloud.offer(sign_update(DOMAIN, device, "hc-tiny", 1, tflite, private, seq=4, ts_ms=4))
        assert cloud.status_with(rejected=3)["active_model"] == "hc-tiny@2"
        assert wait_for(lambda: any("stale version" in d["reason"] for d in cloud.dead))
        assert (slots / device / SLOT_FILE).read_bytes() == tflite
    finally:
        summary = line.close()
        cloud.close()
    assert summary["counts"]["model_accepted"] == 1 and summary["counts"]["model_rejected"] == 3
    assert summary["models"]["active_models"] == {device: "hc-tiny@2"}
    # the line ended while the device was online: its offline status still reports the installed model
    assert any(s["state"] == "offline" and s["active_model"] == "hc-tiny@2" for s in cloud.statuses)


@pytest.mark.broker
def test_update_waiting_for_the_device_then_the_next_build_runs_it(mosquitto, keys, tflite, tmp_path):
    from shared.tiny.firmware import BuildConfig, FirmwareModel, build, slot_model
    from shared.transport.mqtt import MqttClient, MqttConfig

    (private, public), _ = keys
    device, slots = _device(), tmp_path / "slots"
    cloud = _Broker(mosquitto.port, device)
    cloud.offer(sign_update(DOMAIN, device, "hc-tiny", 3, tflite, private, seq=1, ts_ms=1))  # retained
    client = MqttClient(MqttConfig(url=mosquitto.url, client_id=f"gw-{device}", clean_session=True))
    client.start()
    try:
        def publish(t: str, p: bytes, q: int, r: bool) -> bool:
            return client.publish(t, p, qos=q, retain=r)

        agent = ModelAgent(DOMAIN, [public], slots, publish, lambda f, h: client.subscribe(f, h))
        gw = Gateway(DOMAIN, publish, models=agent)
        agent.watch([device])  # named with --device: watched before it speaks
        assert wait_for(lambda: agent.counts["model_pending"] == 1)
        assert not (slots / device / SLOT_FILE).exists()  # not verified against a device it has not seen
        gw.feed(encode_message("status", json.dumps(_status(device, 0)).encode()))
        assert agent.slots[device].active_model == "hc-tiny@3"
        cloud.status_with(active_model="hc-tiny@3", accepted=1)
        gw.close()
        client.wait_all_acked(10)
    finally:
        client.stop()
        cloud.close()

    # a restarted gateway reloads the slot: the running image's older id does not reopen a downgrade
    again = ModelAgent(DOMAIN, [public], slots, lambda *a: True)
    again.see(_status(device, 0))
    assert again.slots[device].active_model == "hc-tiny@3"

    # the next build takes the installed model; its messages name it
    model, model_id = slot_model(slots / device)
    assert model_id == "hc-tiny@3"
    require_tool("make")
    require_tool("gcc")
    res = build(BuildConfig(DOMAIN, "host", [FirmwareModel(model, "hc_tiny", model_id)], tmp_path / "fw"))
    out = subprocess.run([str(res.artifacts["app"]), "--input", str(_fw.sensor_file()), "--device", device],
                         capture_output=True, timeout=60, check=True).stdout
    msgs = [messages.decode(DOMAIN, *f.message()) for f in FrameDecoder().feed(out)]
    assert len(msgs) == len(_fw.windows()) + 2
    assert {m["model"] for m in msgs} == {"hc-tiny@3"}


def test_slot_model_refuses_an_altered_file(keys, tflite, tmp_path):
    from shared.tiny.firmware import FirmwareError, slot_model

    (private, public), _ = keys
    device = _device()
    agent = ModelAgent(DOMAIN, [public], tmp_path, lambda *a: True)
    agent.see(_status(device, 0))
    agent.on_model(model_topic(DOMAIN, device),
                   json.dumps(sign_update(DOMAIN, device, "hc-tiny", 2, tflite, private, seq=1, ts_ms=1)).encode())
    assert slot_model(tmp_path / device)[1] == "hc-tiny@2"
    (tmp_path / device / SLOT_FILE).write_bytes(tflite + b"\0")
    with pytest.raises(FirmwareError, match="differ from the verified sha256"):
        slot_model(tmp_path / device)
    with pytest.raises(FirmwareError, match="no installed model"):
        slot_model(tmp_path / "nobody")


def test_device_line_cannot_publish_cloud_streams():
    sent: list[tuple[str, bytes, int, bool]] = []
    gw = Gateway(DOMAIN, lambda t, p, q, r: sent.append((t, p, q, r)) or True)
    fake = {"v": 1, "device": "dev-x", "seq": 0, "ts": 1, "model": "hc-tiny@9"}
    for stream in ("model", "risk"):
        gw.feed(encode_message(stream, json.dumps(fake).encode()))
    assert gw.counts["invalid"] == 2 and gw.counts.get("forwarded", 0) == 0
    assert {t for t, *_ in sent} == {messages.deadletter_topic(DOMAIN)}
    assert all("cloud -> device" in r for r in gw.reasons)


def test_gateway_cli_needs_key_and_model_dir_together(keys, tmp_path, capsys):
    from shared.tiny.gateway import main

    (_, public), _ = keys
    with pytest.raises(SystemExit) as exc:
        main(["--pipe", "true", "--mqtt", "mqtt://127.0.0.1:1", "--trusted-key", str(public)])
    assert exc.value.code == 2 and "--model-dir" in capsys.readouterr().err
    with pytest.raises(ValueError, match="trusted_keys: .* is not a file"):
        GatewayConfig("mqtt://127.0.0.1:1", "healthcare", trusted_keys=(tmp_path / "missing.pub",), model_dir=tmp_path)
