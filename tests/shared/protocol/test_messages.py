"""shared.protocol.messages: envelope, topics, encode/decode and the dead-letter record, incl. property tests."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.protocol import messages as m
from shared.protocol.messages import MessageError


def inference(device: str = "wearable-01", seq: int = 7, **vitals: float | None) -> dict:
    v = {"hr_bpm": 72.0, "hrv_rmssd_ms": 40.0, "hrv_sdnn_ms": 50.0, "spo2_pct": 97.0, "rr_bpm": 14.0,
         "temp_c": 36.8, "motion_g": 0.02, "quality": 0.9}
    v.update(vitals)
    return {"v": 1, "device": device, "seq": seq, "ts": 1_700_000_000_000, "model": "hc-tiny@1.0",
            "window_s": 30.0, "vitals": v, "class": "normal", "scores": {"normal": 0.9, "irregular": 0.1}}


# ---------------------------------------------------------------- encode / decode
def test_encode_then_decode_returns_the_same_object():
    msg = inference()
    data = m.encode("healthcare", "inference", msg)
    assert b" " not in data  # compact separators
    assert m.decode("healthcare", "inference", data) == msg


def test_encode_refuses_what_decode_would_refuse():
    with pytest.raises(MessageError, match="hr_bpm"):
        m.encode("healthcare", "inference", inference(hr_bpm=400.0))
    with pytest.raises(MessageError, match="non-finite"):
        m.encode("healthcare", "inference", inference(hr_bpm=float("nan")))


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "bad JSON"),
        (b"\xff\xfe", "invalid UTF-8"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"v": NaN}', "non-finite"),
        (b'{"v": 1e999}', "non-finite"),
        (json.dumps({**inference(), "v": 2}).encode(), "unknown schema version"),
        (json.dumps({**inference(), "seq": "7"}).encode(), "schema: seq"),
        (json.dumps(inference(spo2_pct=120.0)).encode(), "schema: vitals/spo2_pct"),
        (json.dumps({**inference(), "extra": 1}).encode(), "schema"),
        (b"[" * 20 + b"]" * 20, "must be a JSON object"),
        (b'{"a":' * 20 + b"1" + b"}" * 20, "nested deeper"),
        (b" " * (m.MAX_BYTES + 1), "oversize"),
        (b'{"v": ' + b"1" * 5000 + b"}", "bad JSON"),
    ],
)
def test_decode_refuses_with_a_reason(payload: bytes, reason: str):
    with pytest.raises(MessageError) as info:
        m.decode("healthcare", "inference", payload)
    assert reason in info.value.reason


def test_decode_unknown_stream_names_the_missing_schema():
    with pytest.raises(MessageError, match="no schema"):
        m.decode("healthcare", "nosuchstream", json.dumps(inference()).encode())


def test_status_is_shared_by_every_domain():
    status = {"v": 1, "device": "d1", "seq": 0, "ts": 1, "model": "x@1", "state": "offline"}
    for domain in m.domains():
        assert m.decode(domain, "status", m.encode(domain, "status", status)) == status


def test_deadletter_record_keeps_reason_and_payload_start():
    payload = b"\xff" + b"x" * 2000
    record = json.loads(m.deadletter("healthcare", "tinylarge/healthcare/d1/inference", "bad JSON: x", payload, 5))
    assert record["reason"] == "bad JSON: x"
    assert record["payload_bytes"] == len(payload)
    assert len(record["payload"]) == 1024  # the start only, invalid bytes replaced
    assert record["topic"] == "tinylarge/healthcare/d1/inference"
    assert record["ts"] == 5 and record["v"] == m.SCHEMA_VERSION


# ---------------------------------------------------------------- topics
def test_topic_and_parse_topic():
    name = m.topic("healthcare", "wearable-01", "inference")
    assert name == "tinylarge/healthcare/wearable-01/inference"
    assert m.parse_topic(name) == m.Topic("healthcare", "wearable-01", "inference")
    assert m.deadletter_topic("healthcare") == "tinylarge/_deadletter/healthcare"


@pytest.mark.parametrize("device", ["+", "#", "a/b", "..", "a+", "", "x" * 65, "dev ice", "dév"])
def test_topic_refuses_unsafe_device_ids(device: str):
    with pytest.raises(MessageError, match="invalid device id"):
        m.topic("healthcare", device, "inference")


@pytest.mark.parametrize(
    "name",
    ["tinylarge/healthcare/d1", "tinylarge/healthcare/d1/inference/x", "other/healthcare/d1/inference",
     "tinylarge/nodomain/d1/inference", "tinylarge/healthcare/+/inference", "tinylarge/healthcare/d1/#",
     "tinylarge/healthcare/../inference", "tinylarge/_deadletter/healthcare"],
)
def test_parse_topic_refuses(name: str):
    with pytest.raises(MessageError):
        m.parse_topic(name)


# ---------------------------------------------------------------- properties
ids = st.text(alphabet="ABCxyz019_-", min_size=1, max_size=64)
streams = st.from_regex(r"\A[a-z][a-z0-9_]{0,31}\Z")


@given(domain=st.sampled_from(m.domains()), device=ids, stream=streams)
def test_topic_round_trips(domain: str, device: str, stream: str):
    assert m.parse_topic(m.topic(domain, device, stream)) == m.Topic(domain, device, stream)


unsafe_ids = st.one_of(
    st.builds(lambda a, c, b: a + c + b, st.text(max_size=30), st.sampled_from(list("+#/.")), st.text(max_size=30)),
    st.text(alphabet="abc", min_size=65, max_size=70),
)


@given(device=unsafe_ids)
def test_topic_refuses_any_id_with_wildcards_separators_or_dots(device: str):
    with pytest.raises(MessageError):
        m.topic("healthcare", device, "inference")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.binary(max_size=2048), stream=st.sampled_from(["inference", "risk", "status", "chart"]))
def test_decode_of_arbitrary_bytes_raises_only_message_error(payload: bytes, stream: str):
    try:
        m.decode("healthcare", stream, payload)
    except MessageError as exc:
        assert exc.reason


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(doc=json_values, big=st.integers(min_value=0, max_value=6000))
def test_decode_of_arbitrary_json_raises_only_message_error(doc: object, big: int):
    payload = json.dumps(doc, allow_nan=True).encode()
    for data in (payload, payload.replace(b"0", b"0" * (big // 100 + 1), 1)):
        try:
            m.decode("healthcare", "inference", data)
        except MessageError as exc:
            assert exc.reason


@given(msg=st.fixed_dictionaries({}, optional={
    "v": st.integers(0, 3), "device": ids, "seq": st.integers(-2, 2**60), "ts": st.integers(-1, 2**50),
    "model": st.sampled_from(["a@1", "bad", "x@"]), "state": st.sampled_from(["online", "offline", "?"]),
}))
def test_encode_output_always_decodes_to_the_same(msg: dict):
    try:
        data = m.encode("healthcare", "status", msg)
    except MessageError:
        return
    assert m.decode("healthcare", "status", data) == msg
