"""shared.transport.mqtt batch subscriptions: what is queued is handed over at once, in order, acked after.

The exchange: the broker sends N x PUBLISH qos1; the worker takes the first, drains those already
queued behind it (up to max_batch) and calls the batch handler once; only after it returned does the
client send the N PUBACKs. A consumer killed while the batch handler runs has PUBACKed none of them,
so the broker re-sends the whole batch to the restarted consumer.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from shared.transport.mqtt import MqttClient, MqttConfig
from tests.fixtures.mqtt import wait_for
from tests.shared._support import count_rows, uid

REPO = Path(__file__).resolve().parents[3]


def client(url: str, client_id: str, **kw: object) -> MqttClient:
    c = MqttClient(MqttConfig(url, client_id, reconnect_max_s=1.0, **kw))  # type: ignore[arg-type]
    c.start()
    return c


class GatedBatches:
    """A batch handler that holds its first call until ``gate`` is set, and records every batch."""

    def __init__(self, fail_on: bytes | None = None) -> None:
        self.gate = threading.Event()
        self.batches: list[list[tuple[str, bytes]]] = []
        self.fail_on = fail_on

    def __call__(self, items: list[tuple[str, bytes]]) -> None:
        self.gate.wait(10)
        self.batches.append(list(items))
        if self.fail_on is not None and any(p == self.fail_on for _, p in items):
            raise RuntimeError("bad message in the batch")

    @property
    def payloads(self) -> list[bytes]:
        return [p for batch in self.batches for _, p in batch]


def test_queued_messages_arrive_in_batches_in_order_and_are_counted(embedded_broker):
    topic = f"t/{uid('b')}"
    sub = client(embedded_broker, uid("sub"))
    handler = GatedBatches()
    sub.subscribe_batch(topic, handler, max_batch=64)
    pub = client(embedded_broker, uid("pub"))
    sent = [f"m{i:03d}".encode() for i in range(200)]
    for payload in sent:
        assert pub.publish(topic, payload)
    assert pub.wait_all_acked(10)
    # the first call holds the worker; meanwhile the rest queue up behind it
    assert wait_for(lambda: sub.counts["received"] == len(sent))
    handler.gate.set()
    assert wait_for(lambda: sub.counts["handled"] == len(sent))
    assert handler.payloads == sent
    sizes = [len(b) for b in handler.batches]
    assert max(sizes) > 1 and max(sizes) <= 64
    assert all(t == topic for b in handler.batches for t, _ in b)
    assert sub.counts["handler_errors"] == 0
    for c in (pub, sub):
        c.stop(1)


def test_a_failing_batch_is_retried_message_by_message(embedded_broker):
    topic = f"t/{uid('f')}"
    sub = client(embedded_broker, uid("sub"))
    handler = GatedBatches(fail_on=b"boom")
    sub.subscribe_batch(topic, handler)
    pub = client(embedded_broker, uid("pub"))
    sent = [b"a", b"b", b"boom", b"c", b"d"]
    for payload in sent:
        assert pub.publish(topic, payload)
    assert wait_for(lambda: sub.counts["received"] == len(sent))
    handler.gate.set()
    assert wait_for(lambda: sub.counts["handled"] + sub.counts["handler_errors"] == len(sent))
    assert sub.counts["handler_errors"] == 1 and sub.counts["handled"] == len(sent) - 1
    # the batch that held "boom" failed; retried one by one, every other message went through, in order
    assert any(len(b) > 1 and (topic, b"boom") in b for b in handler.batches)
    ok = [p for b in handler.batches if (topic, b"boom") not in b for _, p in b]
    assert ok == [b"a", b"b", b"c", b"d"]
    assert handler.payloads.count(b"boom") == 2  # once in its batch, once alone
    for c in (pub, sub):
        c.stop(1)


def test_subscribe_batch_refuses_a_bad_max_batch():
    with pytest.raises(ValueError, match="max_batch"):
        MqttClient(MqttConfig("mqtt://h", "c")).subscribe_batch("t/x", lambda items: None, max_batch=0)


BATCH_SCRIPT = textwrap.dedent("""
    import sqlite3, sys, time
    from shared.transport.mqtt import MqttClient, MqttConfig

    url, db, client_id, topic, mode = sys.argv[1:6]
    con = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE IF NOT EXISTS delivered (payload TEXT, batch INTEGER, mode TEXT)")
    con.execute("CREATE TABLE IF NOT EXISTS stored (payload TEXT PRIMARY KEY)")
    calls = [0]

    def handle(items):
        calls[0] += 1
        con.executemany("INSERT INTO delivered VALUES (?, ?, ?)", [(p.decode(), calls[0], mode) for _, p in items])
        if mode == "hang":
            time.sleep(3600)  # killed in here: delivered, never stored, never acknowledged
        con.execute("BEGIN")
        con.executemany("INSERT OR IGNORE INTO stored VALUES (?)", [(p.decode(),) for _, p in items])
        con.execute("COMMIT")

    client = MqttClient(MqttConfig(url, client_id, clean_session=False))
    client.start()
    client.subscribe_batch(topic, handle)
    print("ready", flush=True)
    while True:
        time.sleep(1)
""")


@pytest.mark.broker
def test_a_batch_killed_before_its_handler_returned_is_delivered_again(mosquitto, tmp_path: Path):
    script, db = tmp_path / "batch_consumer.py", tmp_path / "store.db"
    script.write_text(BATCH_SCRIPT)
    topic, svc_id = f"t/{uid('k')}", uid("svc")
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def start(mode: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, str(script), mosquitto.url, str(db), svc_id, topic, mode],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return proc

    proc = start("hang")
    pub = client(mosquitto.url, uid("pub"))
    sent = [f"m{i:03d}" for i in range(100)]
    try:
        for payload in sent:
            assert pub.publish(topic, payload.encode())
        assert pub.wait_all_acked(10)
        # the first batch reached the handler, which hangs: SIGKILL it there, before any PUBACK
        assert wait_for(lambda: count_rows(db, "SELECT COUNT(*) FROM delivered") >= 1, timeout_s=20)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        with sqlite3.connect(db) as con:
            first = [r[0] for r in con.execute("SELECT payload FROM delivered WHERE mode = 'hang' ORDER BY rowid")]
        assert first and first == sent[:len(first)]  # in arrival order
        assert count_rows(db, "SELECT COUNT(*) FROM stored") == 0
        # restarted under the same client id: the session re-sends every unacknowledged message
        proc = start("store")
        assert wait_for(lambda: count_rows(db, "SELECT COUNT(*) FROM stored") >= len(sent), timeout_s=30)
    finally:
        proc.kill()
        proc.wait(10)
        pub.stop(1)
    with sqlite3.connect(db) as con:
        stored = [r[0] for r in con.execute("SELECT payload FROM stored ORDER BY payload")]
        again = {r[0] for r in con.execute("SELECT payload FROM delivered WHERE mode = 'store'")}
    assert stored == sent
    assert set(first) <= again  # the killed batch came back
