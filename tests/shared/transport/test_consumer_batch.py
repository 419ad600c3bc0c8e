"""shared.transport.consumer batch handlers: refused messages inside a batch are dead-lettered one by one,
the valid rest reach the batch handler in one call, in order, and land in the store."""

from __future__ import annotations

import json
import threading

import pytest

from shared.protocol import messages
from shared.protocol.messages import Topic
from shared.storage.base import Point
from shared.storage.factory import open_store
from shared.transport.consumer import Consumer, reason_key
from shared.transport.mqtt import MqttClient, MqttConfig
from tests.fixtures.mqtt import wait_for
from tests.shared._support import inference, uid


def client(url: str, client_id: str) -> MqttClient:
    c = MqttClient(MqttConfig(url, client_id, reconnect_max_s=1.0))
    c.start()
    return c


def test_a_bad_message_inside_a_batch_is_dead_lettered_and_the_rest_stored(embedded_broker, tmp_path):
    device = uid("wear")
    topic = messages.topic("healthcare", device, "inference")
    store = open_store(f"sqlite:///{tmp_path / 'batch.db'}")
    gate = threading.Event()
    batches: list[list[int]] = []

    def store_batch(items: list[tuple[Topic, dict]]) -> None:
        gate.wait(10)  # the first call holds the worker until everything is queued behind it
        batches.append([m["seq"] for _, m in items])
        if any(m["seq"] == 99 for _, m in items):
            raise RuntimeError("store is down")
        store.write([Point("inference", m["device"], m["seq"], m["ts"], {"hr_bpm": m["vitals"]["hr_bpm"]}, {})
                     for _, m in items])

    svc = client(embedded_broker, uid("svc"))
    consumer = Consumer(svc, "healthcare", {}, {"inference": store_batch})
    assert consumer.filters() == ["tinylarge/healthcare/+/inference"]
    consumer.start()
    watch = client(embedded_broker, uid("ops"))
    dead: list[dict] = []
    watch.subscribe(messages.deadletter_topic("healthcare"), lambda _t, p: dead.append(json.loads(p)))
    good = [messages.encode("healthcare", "inference", inference(device, seq)) for seq in range(6)]
    sent = [good[0], good[1], b"{oops", good[2], json.dumps(inference("someone-else", 3)).encode(), good[3],
            json.dumps(inference(device, 99)).encode(), good[4], good[5]]
    raw = client(embedded_broker, uid("dev"))
    for payload in sent:
        assert raw.publish(topic, payload)
    assert raw.wait_all_acked(5)
    assert wait_for(lambda: svc.counts["received"] == len(sent))
    gate.set()
    assert wait_for(lambda: store.count("inference") == 6 and len(dead) == 3)
    assert [p.seq for p in store.query("inference", device)] == list(range(6))
    assert [reason_key(d["reason"]) for d in dead] == ["bad_json", "device_mismatch", "handler_error"]
    assert "store is down" in dead[2]["reason"]
    assert any(len(b) > 1 for b in batches)  # the queued messages did come as a batch
    # the failing batch was retried message by message: 99 alone, its neighbours alone and stored
    assert [99] in batches and all(s in sum(batches, []) for s in range(6))
    counts = consumer.counts
    assert counts["received"] == len(sent) and counts["accepted"] == 6 and counts["deadletters"] == 3
    assert svc.counts["handled"] == len(sent) and svc.counts["handler_errors"] == 0
    for c in (raw, watch, svc):
        c.stop(1)
    store.close()


def test_a_stream_with_a_batch_handler_is_no_longer_routed_one_by_one():
    c = MqttClient(MqttConfig("mqtt://127.0.0.1:1", "x"))
    consumer = Consumer(c, "healthcare", {"inference": lambda t, m: None, "chart": lambda t, m: None},
                        {"inference": lambda items: None})
    assert list(consumer.handlers) == ["chart"] and list(consumer.batch_handlers) == ["inference"]
    assert consumer.filters() == ["tinylarge/healthcare/+/chart", "tinylarge/healthcare/+/inference"]
    with pytest.raises(ValueError, match="stream"):
        Consumer(c, "healthcare", {}, {"Bad/Stream": lambda items: None})
    with pytest.raises(ValueError, match="handlers is empty"):
        Consumer(c, "healthcare", {}, {})
