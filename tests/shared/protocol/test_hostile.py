"""Hostile input: what an attacker (or a broken device) can send never stops the cloud consumer.

Part 1 goes through a real Mosquitto to a running :class:`shared.transport.consumer.Consumer`: a raw paho
client publishes oversized, deeply nested, non-UTF-8, non-finite and schema-breaking payloads and
topic-injection attempts; each must come back on ``tinylarge/_deadletter/healthcare`` with a reason,
in order, and a valid message sent after all of them must still be handled. Part 2 is property tests
on the parsers that tests/shared/test_messages.py, test_endpoints.py, test_storage_url.py and
test_model_update.py do not already fuzz: ``parse_topic`` on any text, ``parse_mqtt_url`` on any text
and on URL-shaped compositions, the consumer's whole decode path on any (topic, payload), and the
serial frame decoder on any byte stream.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import uuid

import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from bench._fault_load import make_payload
from shared.protocol import messages
from shared.protocol.endpoints import parse_mqtt_url
from shared.protocol.messages import MessageError, Topic
from shared.tiny.frames import FrameDecoder, encode_message
from shared.transport.consumer import Consumer, reason_key
from shared.transport.mqtt import MqttClient, MqttConfig
from tests.fixtures.mqtt import wait_for

DOMAIN = "healthcare"


def _valid(device: str, seq: int = 0) -> bytes:
    import random

    return make_payload(device, seq, 1_700_000_000_000 + seq, random.Random(seq))


def _msg(base: str, **changes: object) -> bytes:
    """A valid message of device ``base`` with fields changed (not validated: it is meant to be bad)."""
    msg = json.loads(_valid(base))
    msg.update(changes)
    return json.dumps(msg).encode()


#: (case, topic device level, payload, expected dead-letter reason key)
HOSTILE: list[tuple[str, str, bytes, str]] = [
    ("oversized", "d1", b'{"v":1,"pad":"' + b"x" * messages.MAX_BYTES + b'"}', "oversize"),
    ("deeply nested arrays", "d1", b"[" * 5000 + b"]" * 5000, "too_deep"),
    ("nested past MAX_DEPTH", "d1", _msg("d1", vitals=json.loads('{"a":' * 12 + "1" + "}" * 12)), "too_deep"),
    ("invalid UTF-8", "d1", b'{"v":1,"device":"\xff\xfe"}', "utf8"),
    ("overlong UTF-8 slash", "d1", b'{"device":"\xc0\xaf"}', "utf8"),
    ("NaN", "d1", b'{"v":1,"device":"d1","seq":NaN}', "non_finite"),
    ("Infinity", "d1", b'{"v":1,"hr":-Infinity}', "non_finite"),
    ("truncated JSON", "d1", b'{"v":1,"device":', "bad_json"),
    ("empty payload", "d1", b"", "bad_json"),
    ("4300+ digit integer", "d1", b'{"v":1,"seq":' + b"9" * 5000 + b"}", "bad_json"),
    ("not an object", "d1", b"[1,2,3]", "not_object"),
    ("missing fields", "d1", b'{"v":1,"device":"d1"}', "schema"),
    ("future schema version", "d1", _msg("d1", v=2), "version"),
    ("extra field", "d1", _msg("d1", evil="x"), "schema"),
    ("envelope device with a slash", "d1", _msg("d1", device="d1/../d2"), "schema"),
    ("envelope device wildcard", "d1", _msg("d1", device="+"), "schema"),
    ("envelope device for another topic", "d1", _valid("d2"), "device_mismatch"),
    ("topic device '..'", "..", _msg("d1", device=".."), "topic"),
    ("topic device empty", "", _valid("d1"), "topic"),
    ("topic device unicode", "dév", _valid("d1"), "topic"),
    ("topic device with a space", "d 1", _valid("d1"), "topic"),
    ("topic device of 65 chars", "x" * 65, _valid("d1"), "topic"),
]


class DeadLetters:
    def __init__(self) -> None:
        self.records: list[dict] = []
        self._lock = threading.Lock()

    def __call__(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self.records.append(json.loads(payload))


@pytest.fixture
def running(mosquitto):
    """A Consumer on Mosquitto with a recording handler, a dead-letter listener and a raw publisher."""
    tag = uuid.uuid4().hex[:8]
    handled: list[tuple[Topic, dict]] = []
    boom = {"device": None}

    def handler(where: Topic, msg: dict) -> None:
        if where.device == boom["device"]:
            raise RuntimeError("store refused it")
        handled.append((where, msg))

    consumer_client = MqttClient(MqttConfig(mosquitto.url, f"hostile-con-{tag}", clean_session=True))
    listener = MqttClient(MqttConfig(mosquitto.url, f"hostile-dl-{tag}", clean_session=True))
    dead = DeadLetters()
    consumer = Consumer(consumer_client, DOMAIN, {"inference": handler})
    consumer_client.start()
    listener.start()
    listener.subscribe(messages.deadletter_topic(DOMAIN), dead)
    consumer.start()
    raw = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"hostile-pub-{tag}", protocol=paho.MQTTv311)
    ep = parse_mqtt_url(mosquitto.url)
    raw.connect(ep.host, ep.port)
    raw.loop_start()
    yield consumer, handled, dead, raw, boom, mosquitto
    raw.disconnect()
    raw.loop_stop()
    listener.stop(1)
    consumer_client.stop(1)


def _publish(raw: paho.Client, topic: str, payload: bytes) -> None:
    raw.publish(topic, payload, qos=1).wait_for_publish(5)


@pytest.mark.broker
def test_every_hostile_message_is_deadlettered_with_its_reason_and_the_consumer_goes_on(running) -> None:
    consumer, handled, dead, raw, _, _ = running
    for _, device, payload, _ in HOSTILE:
        _publish(raw, f"tinylarge/{DOMAIN}/{device}/inference", payload)
    _publish(raw, f"tinylarge/{DOMAIN}/ok1/inference", _valid("ok1", 3))
    assert wait_for(lambda: len(dead.records) >= len(HOSTILE) and handled, timeout_s=20), (
        len(dead.records), consumer.counts)
    assert [(w.device, m["seq"]) for w, m in handled] == [("ok1", 3)]
    got = [(r["topic"].split("/")[2], reason_key(r["reason"])) for r in dead.records]
    want = [(device, key) for _, device, _, key in HOSTILE]
    assert got == want, "\n".join(f"{case}: got {g}, want {w}" for (case, *_), g, w in
                                  zip(HOSTILE, got, want, strict=True) if g != w)
    for record, (case, _, payload, _) in zip(dead.records, HOSTILE, strict=True):
        assert record["reason"].strip(), case
        assert record["payload_bytes"] == len(payload), case
        assert len(record["payload"].encode()) <= 4 * 1024, case  # only the start travels on
    counts = consumer.counts
    assert counts["accepted"] == 1 and counts["deadletters"] == len(HOSTILE)
    assert counts["received"] == counts["accepted"] + counts["deadletters"]


@pytest.mark.broker
def test_a_handler_that_raises_is_deadlettered_and_the_next_message_is_handled(running) -> None:
    consumer, handled, dead, raw, boom, _ = running
    boom["device"] = "bad1"
    _publish(raw, f"tinylarge/{DOMAIN}/bad1/inference", _valid("bad1"))
    _publish(raw, f"tinylarge/{DOMAIN}/ok2/inference", _valid("ok2"))
    assert wait_for(lambda: dead.records and handled, timeout_s=10)
    assert reason_key(dead.records[0]["reason"]) == "handler_error"
    assert "store refused it" in dead.records[0]["reason"]
    assert handled[0][0].device == "ok2"


def _mqtt_string(text: bytes) -> bytes:
    return struct.pack("!H", len(text)) + text


def _packet(kind: int, body: bytes) -> bytes:
    n, length = len(body), b""
    while True:  # MQTT variable-length "remaining length"
        byte, n = n % 128, n // 128
        length += bytes([byte | (0x80 if n else 0)])
        if not n:
            return bytes([kind]) + length + body


@pytest.mark.broker
@pytest.mark.parametrize("topic", [b"tinylarge/healthcare/+/inference", b"tinylarge/healthcare/#",
                                   b"tinylarge/healthcare/d\x001/inference",
                                   b"tinylarge/healthcare/d\x01/inference", b"\xff/inference", b""])
def test_broker_drops_a_client_publishing_to_a_wildcard_or_malformed_topic(running, topic: bytes) -> None:
    """paho refuses to build such a PUBLISH, so this speaks MQTT 3.1.1 on a raw socket:

    client --CONNECT(clean)--> broker --CONNACK 0--> client --PUBLISH qos0 <bad topic>--> broker: closes
    the connection; nothing reaches the consumer, which then handles the next valid message.
    """
    consumer, handled, dead, raw, _, mosquitto = running
    if not topic or b"+" in topic or b"#" in topic:
        with pytest.raises(ValueError):
            raw.publish(topic.decode(), b"{}", qos=1)  # the client library refuses these too
    with socket.create_connection(("127.0.0.1", mosquitto.port), timeout=5) as s:
        client_id = f"hostile-raw-{uuid.uuid4().hex[:6]}".encode()
        s.sendall(_packet(0x10, _mqtt_string(b"MQTT") + bytes([4, 0x02, 0, 30]) + _mqtt_string(client_id)))
        assert s.recv(4) == b"\x20\x02\x00\x00"  # CONNACK, accepted
        s.sendall(_packet(0x30, _mqtt_string(topic) + _valid("d1")))
        assert s.recv(16) == b""  # the broker hung up
    _publish(raw, f"tinylarge/{DOMAIN}/ok3/inference", _valid("ok3"))
    assert wait_for(lambda: handled, timeout_s=10)
    assert [w.device for w, _ in handled] == ["ok3"] and not dead.records


# ---------------------------------------------------------------------------------------- properties
@given(st.text(max_size=200))
def test_parse_topic_of_any_text_raises_only_message_error(name: str) -> None:
    try:
        where = messages.parse_topic(name)
    except MessageError as exc:
        assert exc.reason
        return
    assert str(where) == name  # what it accepts is exactly a well-formed device topic
    assert not any(c in where.device for c in "+#/") and where.domain in messages.domains()


@given(st.text(max_size=120))
def test_parse_mqtt_url_of_any_text_raises_only_value_error(url: str) -> None:
    try:
        parse_mqtt_url(url)
    except ValueError as exc:
        assert str(exc)


_url_parts = st.fixed_dictionaries({
    "scheme": st.sampled_from(["mqtt", "mqtts", "MQTT", "http", "", "mqtt+ws"]),
    "user": st.none() | st.text(alphabet=st.characters(blacklist_characters="["), max_size=8),
    # recognisable in any output; '[' in the user info is left out: the known issue tested below
    "password": st.none() | st.text(alphabet=st.characters(blacklist_characters="["), max_size=8).map(
        lambda t: f"Pw{t}Zq9"),
    "host": st.sampled_from(["localhost", "127.0.0.1", "[::1]", "", "h_st", "ex ample", "[::1"]),
    "port": st.none() | st.integers(-5, 70000).map(str) | st.text(max_size=6),
    "tail": st.sampled_from(["", "/", "/x", "?a=b", "#f", "//"]),
})


@given(_url_parts)
def test_parse_mqtt_url_of_url_shaped_text_never_leaks_the_password(parts: dict) -> None:
    """Either a clear ValueError that does not show the password, or an endpoint whose str() hides it."""
    auth = ""
    if parts["user"] is not None:
        auth = parts["user"] + (f":{parts['password']}" if parts["password"] is not None else "") + "@"
    port = f":{parts['port']}" if parts["port"] is not None else ""
    url = f"{parts['scheme']}://{auth}{parts['host']}{port}{parts['tail']}"
    secret = parts["password"]
    try:
        ep = parse_mqtt_url(url)
    except ValueError as exc:
        if secret is not None and "@" not in secret and "/" not in secret:  # else it is not a password field
            assert "Zq9" not in str(exc), str(exc)
        return
    assert 1 <= ep.port <= 65535 and ep.scheme in ("mqtt", "mqtts") and ep.host
    if secret is not None and ep.password == secret:
        assert secret not in str(ep) and secret not in repr(ep)


def test_parse_mqtt_url_error_hides_a_password_containing_a_bracket() -> None:
    with pytest.raises(ValueError) as info:
        parse_mqtt_url("mqtt://user:se[cret@[::1]:1883")
    assert "cret" not in str(info.value), str(info.value)


# Mosquitto drops a client whose topic has '+', '#', NUL or control characters (tested above)
_levels = st.text(alphabet=st.characters(blacklist_characters="/+#", blacklist_categories=("Cs", "Cc")),
                  max_size=70)


@pytest.mark.broker
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(device=_levels | st.sampled_from(["d1", "ok", "..", ""]),
       payload=st.binary(max_size=300) | st.sampled_from([_valid("d1"), _msg("d1", seq=-1), _valid("d9")]))
def test_consumer_accounts_for_any_message_through_the_broker(running, device: str, payload: bytes) -> None:
    """Any device level and payload: the consumer either accepts or dead-letters it, exactly once."""
    consumer, handled, dead, raw, _, _ = running
    before = consumer.counts
    _publish(raw, f"tinylarge/{DOMAIN}/{device}/inference", payload)
    assert wait_for(lambda: consumer.counts["received"] == before["received"] + 1, timeout_s=10)
    after = consumer.counts
    accepted = after["accepted"] - before["accepted"]
    rejected = after["deadletters"] - before["deadletters"]
    assert accepted + rejected == 1
    if accepted:
        assert handled[-1][0].device == device and handled[-1][1]["device"] == device


@settings(max_examples=200)
@given(noise=st.lists(st.binary(max_size=40), max_size=6),
       bodies=st.lists(st.binary(min_size=1, max_size=60), min_size=1, max_size=4), cut=st.integers(1, 7))
def test_frame_decoder_never_raises_and_recovers_frames_between_garbage(
        noise: list[bytes], bodies: list[bytes], cut: int) -> None:
    frames = [encode_message("inference", b) for b in bodies]
    padded = noise + [b""] * max(0, len(frames) - len(noise))
    stream = b"".join(n + f for n, f in zip(padded, frames, strict=False)) + b"".join(noise[len(frames):])
    decoder = FrameDecoder()
    got = []
    for i in range(0, len(stream), cut):  # split feeds at arbitrary points
        got += [f.message() for f in decoder.feed(stream[i:i + cut])]
    # garbage may swallow a frame's opening flag, never invent one with a valid CRC out of real frames
    assert all(g in [("inference", b) for b in bodies] for g in got)
    assert decoder.ok == len(got)
    if not any(noise):
        assert got == [("inference", b) for b in bodies]


@given(st.binary(max_size=600))
def test_frame_decoder_on_arbitrary_bytes(data: bytes) -> None:
    decoder = FrameDecoder()
    for frame in decoder.feed(data):
        try:
            frame.message()
        except ValueError:
            pass  # a log frame, or a message frame without the stream prefix: documented
