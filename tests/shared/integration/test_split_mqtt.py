"""Split learning, SplitFed and split inference through a real Mosquitto on a free loopback port.

Small configurations of the quick industrial_iot task (about 530 training windows, 4 clients).
A client that dies mid-epoch is skipped after the timeout and leaves no trace in the model: the run
ends with exactly the weights of a run in which it died before its first batch.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from shared.integration.split import wire
from shared.integration.split.cli import split_main
from shared.integration.split.inference import split_inference
from shared.integration.split.train import SplitConfig, prepare, train_centralised, train_sl, train_splitfed
from shared.integration.task import load_task
from shared.protocol import messages
from shared.transport.mqtt import MqttClient, MqttConfig

pytestmark = pytest.mark.broker
DOMAIN = "industrial_iot"


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    """A private Mosquitto with TCP_NODELAY (one request waits for one answer: no Nagle delays)."""
    from tests.fixtures.mqtt import MosquittoServer, _mosquitto_exe

    server = MosquittoServer(_mosquitto_exe(), tmp_path_factory.mktemp("split-mosquitto"), persistence=False,
                             conf_extra="set_tcp_nodelay true")
    server.start()
    yield server.url
    server.kill()


@pytest.fixture(scope="module")
def data():
    return prepare(load_task(DOMAIN, quick=True), 4, test_fraction=0.25, seed=0)


def _weights(res):
    return [w.copy() for w in res.device.get_weights()]


def test_sl_over_mqtt_learns_and_both_ends_count_the_same_bytes(url, data):
    seen: list[dict] = []
    lock = threading.Lock()

    def sniff(topic: str, payload: bytes) -> None:
        msg = messages.decode(DOMAIN, wire.SMASHED, payload)  # every message on the wire validates
        with lock:
            seen.append(msg)

    sniffer = MqttClient(MqttConfig(url=url, client_id="split-sniffer", clean_session=True))
    sniffer.start()
    sniffer.subscribe(f"tinylarge/{DOMAIN}/+/{wire.SMASHED}", sniff)
    cfg = SplitConfig(epochs=3, batch=32, timeout_s=10)
    try:
        res = train_sl(data, cfg, url)
    finally:
        sniffer.stop()
    central = train_centralised(prepare(data.task, 1, 0.25, 0), cfg)
    majority = np.bincount(data.y_test).max() / len(data.y_test)
    assert res.dead == []
    assert res.acc > majority + 0.05 and res.acc >= central.acc - 0.08, (res.acc, central.acc, majority)
    n_train = sum(len(c[1]) for c in data.clients)
    batches = sum(-(-len(c[1]) // cfg.batch) for c in data.clients) * cfg.epochs
    assert len(seen) == batches
    assert sum(m["shape"][0] for m in seen) == n_train * cfg.epochs
    assert {m["dtype"] for m in seen} == {"float16"} and all(len(m["labels"]) == m["shape"][0] for m in seen)
    # float16 activations: 2 bytes per value, base64 4/3, plus the envelope; same for the gradients
    width = data.task.hidden[-1]
    raw = n_train * cfg.epochs * width * 2
    assert raw * 4 / 3 < sum(res.bytes_up) < raw * 4 / 3 + batches * 700
    assert raw * 4 / 3 < sum(res.bytes_down) < raw * 4 / 3 + batches * 500


def test_splitfed_learns_over_rounds(url, data):
    cfg = SplitConfig(epochs=4, batch=16, lr=5e-3, timeout_s=10)
    res = train_splitfed(data, cfg, url)
    majority = np.bincount(data.y_test).max() / len(data.y_test)
    assert res.dead == [] and len(res.per_epoch_acc) == 4
    assert res.acc > majority, (res.per_epoch_acc, majority)
    # each client moved the client-side weights twice per round (down, up) and its own batches
    assert all(w == 2 * 4 * (21 * 16 + 16) * 4 for w in res.weight_bytes)


@pytest.mark.parametrize("train", [train_splitfed, train_sl], ids=["splitfed", "sl"])
def test_a_client_dying_mid_epoch_is_skipped_and_leaves_the_model_untouched(url, data, train):
    mid = SplitConfig(epochs=1, batch=32, timeout_s=3.0, die_after={1: 3})
    died = train(data, mid, url)
    assert died.dead == [(0, 1)]
    assert died.bytes_up[1] > 0  # it did send batches before dying
    early = SplitConfig(epochs=1, batch=32, timeout_s=3.0, die_after={1: 0})
    ref = train(data, early, url)
    assert ref.dead == [(0, 1)] and ref.bytes_up[1] == 0
    for a, b in zip(_weights(died), _weights(ref), strict=True):
        assert np.array_equal(a, b)
    x = data.x_test[:50]
    acts = died.device.forward(x)
    assert np.array_equal(died.server.predict(acts, died.server_key), ref.server.predict(acts, ref.server_key))
    # and the run goes on: the dead client is back (on a new connection) in the next epoch
    again = train(data, SplitConfig(epochs=2, batch=32, timeout_s=3.0, die_after={1: 3}), url)
    assert again.dead == [(0, 1)] and len(again.per_epoch_acc) == 2


def test_split_inference_int8_over_mqtt(url, data):
    cfg = SplitConfig(epochs=3, batch=32)
    central = train_centralised(data, cfg)
    out = split_inference(central, data, url, n_devices=2, batch=16)
    assert out["acc_int8"] == out["acc_int8_in_process"]  # int8 crosses the wire exactly
    assert abs(out["acc_int8"] - out["acc_float"]) <= 0.05, out
    assert out["device_macs"] == 21 * 16
    # one window: 16 int8 values in base64 plus envelope up, one class plus envelope down
    assert 200 < out["bytes_per_window_single"] < 700
    assert out["bytes_per_window_batched"] < out["bytes_per_window_single"]


def test_cli_runs_splitfed_end_to_end(url, capsys):
    assert split_main([DOMAIN, "--mode", "splitfed", "--clients", "2", "--epochs", "1", "--quick",
                       "--mqtt", url, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == "splitfed" and out["dead"] == [] and 0 <= out["acc"] <= 1
    assert out["bytes_per_client_epoch"] > out["activation_grad_bytes_per_client_epoch"] > 0
    assert out["fl_bytes_per_client_round"] == 2 * 4 * (21 * 16 + 16 + 16 * 7 + 7)


def test_cloud_answers_only_current_devices_and_rounds_and_each_batch_once(url):
    from shared.integration.split.cloud import CloudServer
    from shared.integration.split.link import CloudService, DeviceLink, LinkTimeout

    server = CloudServer(4, 3)
    cloud = CloudService(url, DOMAIN, server, "t@1", "split-test-cloud", lambda d: "k").start()
    links = []
    try:
        cloud.round = 1
        cloud.admit("split-t-dev")
        link = DeviceLink(url, DOMAIN, "split-t-dev", "t@1", "float32", timeout_s=1.0).start()
        stranger = DeviceLink(url, DOMAIN, "split-t-stranger", "t@1", "float32", timeout_s=1.0).start()
        links += [link, stranger]
        acts, labels = np.ones((2, 4), np.float32), np.array([0, 2])
        with pytest.raises(LinkTimeout):
            link.exchange(0, 0, acts, labels)  # a straggler's batch of another round
        with pytest.raises(LinkTimeout):
            stranger.exchange(1, 0, acts, labels)  # not a device of this run
        grad, loss = link.exchange(1, 0, acts, labels)
        assert grad.shape == (2, 4) and loss > 0 and server.steps == 1
        again, _ = link.exchange(1, 0, acts, labels)  # redelivered: same answer, no second step
        assert np.array_equal(again, grad) and server.steps == 1
        bad = b'{"v":1,"device":"split-t-dev","seq":1,"ts":1,"model":"t@1","round":1}'
        link.client.publish(messages.topic(DOMAIN, "split-t-dev", wire.SMASHED), bad, qos=1)
        link.exchange(1, 1, acts, labels)  # answered after the bad one was refused (in order)
        assert server.steps == 2 and any("schema" in e for e in cloud.errors)
    finally:
        for lk in links:
            lk.stop()
        cloud.stop()
