"""FleetState: what the dashboard makes of broker messages (no I/O), including hostile ones."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from shared.dashboard.state import FEED_ITEMS, HISTORY_POINTS, MAX_PAYLOAD, FleetState


def _state() -> FleetState:
    return FleetState(["healthcare", "industrial_iot"], {"healthcare": "risk", "industrial_iot": "action"},
                      clock_ms=lambda: 1_000_000)


def _msg(device: str, **kw) -> bytes:
    return json.dumps({"v": 1, "device": device, "seq": kw.pop("seq", 1), "ts": kw.pop("ts", 5), "model": "m@1",
                       **kw}).encode()


def test_status_then_last_will_flip_the_device_offline_and_keep_its_counts():
    s = _state()
    ev = s.ingest("tinylarge/healthcare/p1/status", _msg("p1", state="online", counts={"published": 3},
                                                         active_model="hc-tiny@2"))
    assert ev[0]["type"] == "device" and ev[0]["device"]["state"] == "online"
    assert ev[0]["device"]["counts"] == {"published": 3} and ev[0]["device"]["active_model"] == "hc-tiny@2"
    assert ev[0]["device"]["last_ms"] == 1_000_000
    s.ingest("tinylarge/healthcare/p1/status", _msg("p1", state="offline"))
    row = s.device("healthcare", "p1")
    assert row["state"] == "offline" and row["counts"] == {"published": 3} and row["active_model"] == "hc-tiny@2"


def test_inference_and_result_history_and_alert_on_the_rising_edge_only():
    s = _state()
    s.ingest("tinylarge/healthcare/p1/inference", _msg("p1", **{"class": "tachycardia"},
                                                       scores={"normal": 0.1, "tachycardia": 0.9}))
    assert s.device("healthcare", "p1")["inference"] == {"class": "tachycardia", "score": 0.9, "ts": 5, "seq": 1}
    events = [s.ingest("tinylarge/healthcare/p1/risk", _msg("p1", seq=i, ts=10 + i, risk=0.2 + 0.1 * i,
                                                            alert=i >= 3, news2=4))
              for i in range(6)]
    alerts = [e for evs in events for e in evs if e["type"] == "alert"]
    assert len(alerts) == 1 and alerts[0]["alert"]["device"] == "p1" and alerts[0]["alert"]["ts"] == 13
    row = s.device("healthcare", "p1")
    assert [p[0] for p in row["history"]] == [10, 11, 12, 13, 14, 15]
    assert row["result"]["fields"] == {"risk": 0.7, "alert": True, "news2": 4}
    for i in range(HISTORY_POINTS + 5):
        s.ingest("tinylarge/healthcare/p1/risk", _msg("p1", seq=100 + i, ts=100 + i, risk=0.1, alert=False))
    assert len(s.device("healthcare", "p1")["history"]) == HISTORY_POINTS


def test_a_new_action_is_an_alert_even_without_the_alert_flag():
    s = _state()
    assert not [e for e in s.ingest("tinylarge/industrial_iot/m1/action", _msg("m1", risk=0.1, action="none",
                                                                                 alert=False)) if e["type"] == "alert"]
    ev = s.ingest("tinylarge/industrial_iot/m1/action", _msg("m1", risk=0.6, action="inspect", alert=False))
    assert [e["alert"]["action"] for e in ev if e["type"] == "alert"] == ["inspect"]


def test_deadletters_keep_reason_and_are_bounded():
    s = _state()
    for i in range(FEED_ITEMS + 3):
        record = {"v": 1, "domain": "healthcare", "topic": "tinylarge/healthcare/p9/inference",
                  "reason": f"schema: bad {i}", "ts": i, "payload": "{", "payload_bytes": 1}
        ev = s.ingest("tinylarge/_deadletter/healthcare", json.dumps(record).encode())
    assert ev == [{"type": "deadletter", "domain": "healthcare", "total": FEED_ITEMS + 3,
                   "deadletter": {"ts": FEED_ITEMS + 2, "topic": "tinylarge/healthcare/p9/inference",
                                  "reason": f"schema: bad {FEED_ITEMS + 2}", "payload": "{", "payload_bytes": 1}}]
    snap = s.snapshot()["domains"]["healthcare"]
    assert len(snap["deadletters"]) == FEED_ITEMS and snap["deadletters_total"] == FEED_ITEMS + 3


def test_unreadable_or_foreign_messages_are_ignored_and_counted():
    s = _state()
    bad = [("tinylarge/healthcare/p1/status", b"{not json"),
           ("tinylarge/healthcare/p1/status", b"[1, 2]"),
           ("tinylarge/healthcare/p1/status", _msg("p2", state="online")),  # device mismatch
           ("tinylarge/vehicles/v1/status", _msg("v1", state="online")),  # not a registered domain here
           ("tinylarge/healthcare/../status", _msg("..", state="online")),
           ("tinylarge/_deadletter/nowhere", b"{}"),
           ("tinylarge/healthcare/p1/status", b"{" * (MAX_PAYLOAD + 1)),
           ("tinylarge/healthcare/p1/status", b"\xff\xfe")]
    for topic, payload in bad:
        assert s.ingest(topic, payload) == []
    assert s.ignored == len(bad)
    assert all(not d["devices"] for d in s.snapshot()["domains"].values())


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                    max_size=6), max_leaves=20)


@given(stream=st.sampled_from(["status", "inference", "risk", "chart", "model", "x"]),
       device=st.sampled_from(["p1", "p-2", "", "a/b", "+"]),
       body=st.dictionaries(st.sampled_from(["v", "device", "seq", "ts", "state", "counts", "scores", "class",
                                             "risk", "alert", "action", "model", "active_model", "reason"]),
                            _json, max_size=10))
def test_any_json_object_on_any_topic_never_raises_and_snapshot_stays_json(stream, device, body):
    s = _state()
    for topic in (f"tinylarge/healthcare/{device}/{stream}", "tinylarge/_deadletter/healthcare"):
        events = s.ingest(topic, json.dumps(body).encode())
        json.dumps(events, allow_nan=False)
    json.dumps(s.snapshot(), allow_nan=False)


@given(st.binary(max_size=300), st.text(max_size=60))
def test_any_bytes_on_any_topic_never_raise(payload, topic):
    s = _state()
    json.dumps(s.ingest(topic, payload), allow_nan=False)
