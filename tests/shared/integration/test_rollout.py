"""shared.integration.rollout: any model -> full int8 -> C that compiles -> signed -> retained on `model`."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from shared.integration import rollout
from shared.security.model_update import ModelSlot, generate_keypair
from tests._tools import require_tool
from tests.fixtures.mqtt import wait_for

DOMAIN = "healthcare"


@pytest.fixture(scope="module")
def keras_model():
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((8,))
    h = keras.layers.Dense(16, activation="relu")(inp)
    out = keras.layers.Softmax()(keras.layers.Dense(2)(h))
    return keras.Model(inp, out)


@pytest.fixture(scope="module")
def rep():
    return np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)


@pytest.fixture(scope="module")
def int8_blob(keras_model, rep):
    return rollout.to_int8(keras_model, rep)


def test_to_int8_accepts_keras_and_int8_bytes_refuses_the_rest(keras_model, rep, int8_blob, tmp_path):
    assert int8_blob[4:8] == b"TFL3"
    assert rollout.to_int8(int8_blob) == int8_blob
    (tmp_path / "m.tflite").write_bytes(int8_blob)
    assert rollout.to_int8(tmp_path / "m.tflite") == int8_blob
    with pytest.raises(rollout.RolloutError, match="representative"):
        rollout.to_int8(keras_model)
    with pytest.raises(rollout.RolloutError, match="not a TFLite"):
        rollout.to_int8(b"\x00" * 64)
    with pytest.raises(rollout.RolloutError, match="not found"):
        rollout.to_int8(tmp_path / "missing.tflite")
    import tensorflow as tf

    float_blob = tf.lite.TFLiteConverter.from_keras_model(keras_model).convert()
    with pytest.raises(rollout.RolloutError, match="not full int8"):
        rollout.to_int8(float_blob)


@pytest.mark.parametrize("bad", ["nover", "x@", "@2", "x@02", "x@v2"])
def test_model_id_must_name_a_version(bad):
    with pytest.raises(rollout.RolloutError, match="NAME@VERSION"):
        rollout.split_model_id(bad)


def test_generated_c_compiles_with_strict_flags(int8_blob, tmp_path):
    require_tool("gcc")
    c = rollout.compile_c(int8_blob, "risk_student", tmp_path, labels=["no_event", "event"], model_id="risk-student@2")
    assert c.compiler is not None
    assert (tmp_path / "risk_student.o").stat().st_size > 0
    assert c.model.macs == 8 * 16 + 16 * 2
    assert '"risk-student@2"' in (tmp_path / "risk_student_metadata.h").read_text()


def test_generated_c_that_does_not_compile_is_refused(int8_blob, tmp_path, monkeypatch):
    """A compiler that rejects the source (here: a flag it does not know) stops the rollout."""
    require_tool("gcc")
    monkeypatch.setattr(rollout, "STRICT_CFLAGS", (*rollout.STRICT_CFLAGS, "-fno-such-flag-tinylarge"))
    with pytest.raises(rollout.RolloutError, match="does not compile"):
        rollout.compile_c(int8_blob, "risk_student", tmp_path)


def test_over_budget_model_is_not_published(keras_model, rep, tmp_path):
    priv, _ = generate_keypair(tmp_path / "keys")
    sent = []
    with pytest.raises(rollout.RolloutError, match="over budget"):
        rollout.roll_out(keras_model, domain=DOMAIN, devices=["p001"], model_id="risk-student@2", private_key=priv,
                         out_dir=tmp_path / "out", representative=rep, weights_max=64,
                         publish=lambda *a: sent.append(a))
    assert sent == []


@pytest.mark.broker
def test_roll_out_publishes_retained_signed_updates_devices_verify(keras_model, rep, mosquitto, tmp_path):
    """End to end on a real broker: devices that subscribe AFTER the rollout get the retained update,
    verify signature, hash and version with their ModelSlot, and install the exact int8 bytes; a copy
    with one changed byte and a replay of the same version are refused."""
    from shared.transport.mqtt import MqttClient, MqttConfig

    priv, pub = generate_keypair(tmp_path / "keys")
    devices = ["p001", "p002", "p003"]
    done = rollout.roll_out(keras_model, domain=DOMAIN, devices=devices, model_id="hc-risk-tiny@2", private_key=priv,
                            out_dir=tmp_path / "out", representative=rep, mqtt=mosquitto.url,
                            labels=["no_event", "event"])
    assert done.messages == 3 and done.version == 2 and done.model_name == "hc-risk-tiny"
    assert done.bytes_on_wire > len(done.tflite) * 4 // 3  # base64 of the model plus the envelope
    assert done.budget["weights_bytes"] < 1024 and done.compiled.macs == 8 * 16 + 16 * 2
    assert (tmp_path / "out" / "hc-risk-tiny@2.tflite").read_bytes() == done.tflite

    slots = {d: ModelSlot(DOMAIN, d, pub, active_version=1, active_model_id="hc-tiny") for d in devices}
    got: dict[str, bytes] = {}
    lock = threading.Lock()

    def on_model(topic: str, payload: bytes) -> None:
        device = topic.split("/")[2]
        ok, reason = slots[device].offer(payload)
        assert ok, reason
        with lock:
            got[device] = payload

    client = MqttClient(MqttConfig(url=mosquitto.url, client_id="test-rollout-fleet", clean_session=True))
    client.start()
    try:
        client.subscribe(f"tinylarge/{DOMAIN}/+/model", on_model)
        assert wait_for(lambda: len(got) == 3, 20.0), f"retained updates received: {sorted(got)}"
    finally:
        client.stop()
    for d in devices:
        assert slots[d].active_bytes == done.tflite and slots[d].active_model == "hc-risk-tiny@2"
    msg = json.loads(got["p001"])
    assert msg["device"] == "p001" and msg["model"] == "hc-risk-tiny@2"
    ok, reason = slots["p001"].offer(got["p001"])
    assert not ok and "stale version" in reason
    fresh = ModelSlot(DOMAIN, "p001", pub, active_version=1)
    b64 = msg["tflite_b64"]
    msg["tflite_b64"] = b64[:40] + ("A" if b64[40] != "A" else "B") + b64[41:]
    ok, reason = fresh.offer(json.dumps(msg).encode())
    assert not ok and fresh.active_bytes is None


@pytest.mark.broker
def test_closed_loop_demo_installs_the_distilled_student(quick_models, mosquitto, tmp_path):
    """python -m shared.integration.loop: held-out patients' devices start on the factory classifier, the
    cloud distils the transformer, rolls the student out signed; every device installs it, the forged
    copy is refused, and the fleet's AUROC before and after is reported on the same windows."""
    from shared.integration import loop

    out = tmp_path / "loop"
    rc = loop.main(["healthcare", "--quick", "--models", str(quick_models), "--devices", "3", "--out", str(out),
                    "--mqtt", mosquitto.url])
    s = json.loads((out / "summary.json").read_text())
    assert rc == 0
    assert s["devices"] == 3 and s["updates_accepted"] == 3 and s["updates_rejected"] == 1
    assert s["rejected_reasons"] == ["sha256 mismatch: model bytes differ from the signed hash"]
    assert s["model_before"] == "hc-tiny@1" and s["active_models"] == ["hc-risk-tiny@2"]
    for k in ("fleet_auroc_before", "fleet_auroc_after", "teacher_auroc_same_windows"):
        assert s[k] is None or 0.0 <= s[k] <= 1.0, k
    assert s["fleet_auroc_before"] != s["fleet_auroc_after"]  # a different model, not a new version number
    assert s["device_macs_per_inference"] == 8 * 16 + 16 * 8 + 8 * 2
    assert (out / "update" / "hc-risk-tiny@2.tflite").read_bytes()[4:8] == b"TFL3"
