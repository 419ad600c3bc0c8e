"""shared.transport.consumer: validation and dead-letters, persistent sessions, and a consumer killed mid-stream."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shared.protocol import messages
from shared.protocol.messages import MessageError, Topic
from shared.transport.consumer import Consumer, Publisher, reason_key, status_will
from shared.transport.mqtt import MqttClient, MqttConfig
from tests.fixtures.mqtt import wait_for
from tests.shared._support import count_rows, inference, uid

REPO = Path(__file__).resolve().parents[3]


def client(url: str, client_id: str, **kw: object) -> MqttClient:
    c = MqttClient(MqttConfig(url, client_id, reconnect_max_s=1.0, **kw))  # type: ignore[arg-type]
    c.start()
    return c


def test_reason_keys():
    assert reason_key("schema: vitals/hr_bpm: 400 is greater than 250") == "schema"
    assert reason_key("device mismatch: envelope device 'a', topic device 'b'") == "device_mismatch"
    assert reason_key("something new") == "other"


def test_consumer_refuses_bad_configuration():
    c = MqttClient(MqttConfig("mqtt://127.0.0.1:1", "x"))
    with pytest.raises(ValueError, match="unknown domain"):
        Consumer(c, "nodomain", {"inference": lambda t, m: None})
    with pytest.raises(ValueError, match="stream"):
        Consumer(c, "healthcare", {"Bad/Stream": lambda t, m: None})


def test_publisher_validates_before_sending():
    pub = Publisher(MqttClient(MqttConfig("mqtt://127.0.0.1:1", "x")))  # never connected: nothing is sent
    with pytest.raises(MessageError, match="hr_bpm"):
        pub.publish_msg("healthcare", "d1", "inference", inference("d1", 0, hr_bpm=999.0))
    with pytest.raises(MessageError, match="device mismatch"):
        pub.publish_msg("healthcare", "d2", "inference", inference("d1", 0))
    topic, payload = status_will("healthcare", "d1", "hc-tiny@1")
    assert topic == "tinylarge/healthcare/d1/status"
    assert messages.decode("healthcare", "status", payload)["state"] == "offline"


def test_every_kind_of_bad_message_is_dead_lettered_and_the_next_good_one_handled(embedded_broker):
    device = uid("wear")
    topic = messages.topic("healthcare", device, "inference")
    # the service: consumer for healthcare/inference with a handler that raises for seq 99
    svc = client(embedded_broker, uid("svc"))
    handled: list[tuple[Topic, dict]] = []

    def handle(where: Topic, msg: dict) -> None:
        if msg["seq"] == 99:
            raise RuntimeError("store is down")
        handled.append((where, msg))

    consumer = Consumer(svc, "healthcare", {"inference": handle})
    consumer.start()
    # an operator watches the dead-letter topic
    watch = client(embedded_broker, uid("ops"))
    dead: list[dict] = []
    watch.subscribe(messages.deadletter_topic("healthcare"), lambda _t, p: dead.append(json.loads(p)))
    good = inference(device, 1)
    bad = [
        (b"{oops", "bad_json"),
        (json.dumps({**good, "seq": "one"}).encode(), "schema"),
        (json.dumps(good).replace("72.0", "NaN").encode(), "non_finite"),
        (json.dumps(inference(device, 2, hr_bpm=400.0)).encode(), "schema"),
        (json.dumps({**good, "pad": "x" * messages.MAX_BYTES}).encode(), "oversize"),
        (json.dumps({**good, "v": 9}).encode(), "version"),
        (json.dumps(inference("someone-else", 3)).encode(), "device_mismatch"),
        (json.dumps(inference(device, 99)).encode(), "handler_error"),
    ]
    raw = client(embedded_broker, uid("dev"))
    for payload, _ in bad:
        assert raw.publish(topic, payload)
    assert raw.publish(topic, messages.encode("healthcare", "inference", good))
    assert raw.wait_all_acked(5)

    assert wait_for(lambda: len(handled) == 1 and len(dead) == len(bad))
    assert handled == [(Topic("healthcare", device, "inference"), good)]
    assert [reason_key(d["reason"]) for d in dead] == [key for _, key in bad]
    assert all(d["topic"] == topic and d["domain"] == "healthcare" for d in dead)
    assert dead[3]["reason"].startswith("schema: vitals/hr_bpm")
    assert dead[4]["payload_bytes"] > messages.MAX_BYTES and len(dead[4]["payload"]) == 1024
    assert "store is down" in dead[7]["reason"]
    counts = consumer.counts
    assert counts["received"] == len(bad) + 1 and counts["accepted"] == 1
    assert counts["deadletters"] == len(bad)
    assert counts["deadletter_schema"] == 2 and counts["deadletter_device_mismatch"] == 1
    for c in (raw, watch, svc):
        c.stop(1)


@pytest.mark.broker
def test_restarted_consumer_gets_what_was_published_meanwhile(mosquitto):
    device, svc_id = uid("wear"), uid("svc")
    got: list[int] = []
    # the service connects with a persistent session, subscribes, and goes away cleanly (DISCONNECT)
    svc = client(mosquitto.url, svc_id)
    Consumer(svc, "healthcare", {"inference": lambda _t, m: got.append(m["seq"])}).start()
    svc.stop()
    # the device keeps publishing; mosquitto queues for the absent session
    dev = client(mosquitto.url, uid("dev"))
    pub = Publisher(dev)
    for seq in range(100):
        assert pub.publish_msg("healthcare", device, "inference", inference(device, seq))
    assert dev.wait_all_acked(10)
    # the service comes back under the same client id: everything arrives, in order
    svc = client(mosquitto.url, svc_id)
    consumer = Consumer(svc, "healthcare", {"inference": lambda _t, m: got.append(m["seq"])})
    consumer.start()
    assert wait_for(lambda: len(got) >= 100)
    assert got == list(range(100))
    assert consumer.counts["accepted"] == 100 and consumer.counts["deadletters"] == 0
    svc.stop()
    dev.stop()


CONSUMER_SCRIPT = textwrap.dedent("""
    import sqlite3, sys, time
    from shared.transport.consumer import Consumer
    from shared.transport.mqtt import MqttClient, MqttConfig

    url, db, client_id = sys.argv[1:4]
    con = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE IF NOT EXISTS stored (device TEXT, seq INTEGER, PRIMARY KEY (device, seq))")
    con.execute("CREATE TABLE IF NOT EXISTS handled (device TEXT, seq INTEGER)")

    def store(topic, msg):
        con.execute("INSERT INTO handled VALUES (?, ?)", (msg["device"], msg["seq"]))
        con.execute("INSERT OR IGNORE INTO stored VALUES (?, ?)", (msg["device"], msg["seq"]))
        time.sleep(0.003)  # a store that takes a moment, so the kill lands mid-stream

    client = MqttClient(MqttConfig(url, client_id, clean_session=False))
    client.start()
    Consumer(client, "healthcare", {"inference": store}).start()
    print("ready", flush=True)
    while True:
        time.sleep(1)
""")


def _start_consumer(script: Path, url: str, db: Path, client_id: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(script), url, str(db), client_id], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


@pytest.mark.broker
def test_consumer_killed_mid_stream_stores_every_message_exactly_once(mosquitto, tmp_path: Path):
    script = tmp_path / "consumer.py"
    script.write_text(CONSUMER_SCRIPT)
    db = tmp_path / "store.db"
    device, svc_id, n_before, n_while_down = uid("wear"), uid("svc"), 300, 100
    n = n_before + n_while_down
    proc = _start_consumer(script, mosquitto.url, db, svc_id)
    dev = client(mosquitto.url, uid("dev"))
    pub = Publisher(dev)
    try:
        for seq in range(n_before):
            assert pub.publish_msg("healthcare", device, "inference", inference(device, seq))
        assert dev.wait_all_acked(10)  # all 300 are at the broker
        # SIGKILL once a quarter is stored: no DISCONNECT, in-flight messages never PUBACKed
        assert wait_for(lambda: count_rows(db, "SELECT COUNT(*) FROM stored") >= n_before // 4, timeout_s=30)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        stored_at_kill = count_rows(db, "SELECT COUNT(*) FROM stored")
        assert stored_at_kill < n_before, "the consumer finished before the kill; the test tested nothing"
        # the device goes on while the consumer is dead
        for seq in range(n_before, n):
            assert pub.publish_msg("healthcare", device, "inference", inference(device, seq))
        assert dev.wait_all_acked(10)
        # restart under the same client id: the session re-sends the unacknowledged and the queued
        proc = _start_consumer(script, mosquitto.url, db, svc_id)
        assert wait_for(lambda: count_rows(db, "SELECT COUNT(*) FROM stored") >= n, timeout_s=60)
    finally:
        proc.kill()
        proc.wait(10)
        dev.stop(1)
    with sqlite3.connect(db) as con:
        seqs = [row[0] for row in con.execute("SELECT seq FROM stored WHERE device = ? ORDER BY seq", (device,))]
        handled = con.execute("SELECT COUNT(*) FROM handled").fetchone()[0]
    assert seqs == list(range(n))  # every message exactly once in the store
    assert handled >= n  # at least once at the handler: redeliveries are absorbed by the key
