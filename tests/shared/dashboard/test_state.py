"""FleetState: what the dashboard makes of broker messages (no I/O), including hostile ones."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from shared.dashboard.state import FEED_ITEMS, HISTORY_POINTS, MAX_PAYLOAD, PAGE_MAX, FleetState, View
from shared.runtime.alerts import AlertRule


def _state(rule: AlertRule | None = None) -> FleetState:
    rules = {"healthcare": {"rule": rule or AlertRule(0.6, 3), "source": "test"}}
    return FleetState(["healthcare", "industrial_iot"], {"healthcare": "risk", "industrial_iot": "action"},
                      clock_ms=lambda: 1_000_000, large_models={"healthcare": "hc-risk", "industrial_iot": "iot-risk"},
                      rules=rules)


def _msg(device: str, **kw) -> bytes:
    return json.dumps({"v": 1, "device": device, "seq": kw.pop("seq", 1), "ts": kw.pop("ts", 5), "model": "m@1",
                       **kw}).encode()


def _dom(s: FleetState, name: str = "healthcare", **kw) -> dict:
    return s.view(kw.pop("since", 0), default=View(**kw))["domains"][name]


def test_status_then_last_will_flip_the_device_offline_and_keep_its_counts():
    s = _state()
    ev = s.ingest("tinylarge/healthcare/p1/status", _msg("p1", state="online", counts={"published": 3},
                                                         active_model="hc-tiny@2"))
    assert ev[0]["type"] == "device" and ev[0]["device"]["state"] == "online"
    assert ev[0]["device"]["status_counts"] == {"published": 3} and ev[0]["device"]["active_model"] == "hc-tiny@2"
    assert ev[0]["device"]["last_ms"] == 1_000_000
    s.ingest("tinylarge/healthcare/p1/status", _msg("p1", state="offline"))
    row = s.device("healthcare", "p1")
    assert row["state"] == "offline" and row["status_counts"] == {"published": 3} and row["active_model"] == "hc-tiny@2"
    assert _dom(s)["summary"] == {"subjects": 1, "stages": 0, "online": 0, "offline": 1, "alerting": 0,
                                 "alerts_total": 0, "deadletters_total": 0}


def test_inference_and_result_history_and_alert_on_the_rising_edge_only():
    s = _state()
    s.ingest("tinylarge/healthcare/p1/inference", _msg("p1", **{"class": "tachycardia"},
                                                       scores={"normal": 0.1, "tachycardia": 0.9}))
    assert s.device("healthcare", "p1")["inference"] == {"class": "tachycardia", "score": 0.9, "events": None,
                                                         "distance_km": None, "ts": 5, "seq": 1}
    events = [s.ingest("tinylarge/healthcare/p1/risk", _msg("p1", seq=i, ts=10 + i, risk=0.2 + 0.1 * i,
                                                            alert=i >= 3, news2=4, horizon_h=6.0))
              for i in range(6)]
    alerts = [e for evs in events for e in evs if e["type"] == "alert"]
    assert len(alerts) == 1 and alerts[0]["alert"]["device"] == "p1" and alerts[0]["alert"]["ts"] == 13
    row = s.device("healthcare", "p1")
    assert [p[0] for p in row["history"]] == [10, 11, 12, 13, 14, 15]
    assert row["result"]["fields"] == {"risk": 0.7, "alert": True, "news2": 4, "horizon_h": 6.0}
    for i in range(HISTORY_POINTS + 5):
        s.ingest("tinylarge/healthcare/p1/risk", _msg("p1", seq=100 + i, ts=100 + i, risk=0.1, alert=False))
    assert len(s.device("healthcare", "p1")["history"]) == HISTORY_POINTS


def test_alerting_now_is_the_services_rule_not_the_flag_of_the_last_window():
    """Issue 24: '0 alerting now' while three patients sat at risk 0.97-0.99 with three alerts listed. The
    service sets ``alert`` only on the window that raises it; the subject stays alerting until re-armed."""
    s = _state(AlertRule(0.6, windows=3))
    for k, dev in enumerate(("p1", "p2", "p3")):
        for i, risk in enumerate((0.97, 0.98, 0.99, 0.98, 0.97)):
            s.ingest(f"tinylarge/healthcare/{dev}/risk", _msg(dev, seq=i, ts=100 + i, risk=risk + k / 1000,
                                                              alert=i == 2))
    s.ingest("tinylarge/healthcare/p4/risk", _msg("p4", risk=0.99, alert=False))  # one window: not yet
    dom = _dom(s)
    assert dom["summary"]["alerting"] == 3 and dom["summary"]["alerts_total"] == 3
    assert [d for d, row in dom["devices"].items() if row["alerting"]] == ["p1", "p2", "p3"]
    assert dom["rule"] == {"threshold": 0.6, "windows": 3, "rearm_fraction": 0.5, "source": "test", "scored": True}
    s.ingest("tinylarge/healthcare/p2/risk", _msg("p2", seq=9, ts=109, risk=0.45, alert=False))  # above 0.3: still
    assert _dom(s)["summary"]["alerting"] == 3
    s.ingest("tinylarge/healthcare/p2/risk", _msg("p2", seq=10, ts=110, risk=0.2, alert=False))  # re-armed
    assert _dom(s)["summary"]["alerting"] == 2 and not s.device("healthcare", "p2")["alerting"]
    assert [r["device"] for r in _dom(s, only="alerting")["devices"].values()] == ["p1", "p3"]


def test_a_result_without_a_risk_is_alerting_on_the_services_flag_of_that_window():
    s = _state()
    s.ingest("tinylarge/industrial_iot/m1/action", _msg("m1", action="inspect", alert=True))
    assert _dom(s, "industrial_iot")["summary"]["alerting"] == 1
    s.ingest("tinylarge/industrial_iot/m1/action", _msg("m1", action="none", alert=False))
    assert _dom(s, "industrial_iot")["summary"]["alerting"] == 0


def test_a_new_action_is_an_alert_even_without_the_alert_flag():
    s = _state()
    assert not [e for e in s.ingest("tinylarge/industrial_iot/m1/action", _msg("m1", risk=0.1, action="none",
                                                                                 alert=False)) if e["type"] == "alert"]
    ev = s.ingest("tinylarge/industrial_iot/m1/action", _msg("m1", risk=0.6, action="inspect", alert=False))
    assert [e["alert"]["action"] for e in ev if e["type"] == "alert"] == ["inspect"]


def test_counts_count_what_the_dashboard_saw_published_accepted_rejected():
    """Issue 24: every device read 'published 0, accepted 0, rejected 0' (its status, sent once at start;
    accepted/rejected there are model updates)."""
    s = _state()
    s.ingest("tinylarge/healthcare/p1/status", _msg("p1", state="online", counts={"published": 0, "accepted": 0,
                                                                                  "rejected": 0}))
    for i in range(5):
        s.ingest("tinylarge/healthcare/p1/inference", _msg("p1", seq=i, **{"class": "normal"}, scores={"normal": 1}))
    for i in range(4):
        s.ingest("tinylarge/healthcare/p1/risk", _msg("p1", seq=i, risk=0.1, alert=False))
    record = {"v": 1, "domain": "healthcare", "topic": "tinylarge/healthcare/p1/inference", "reason": "schema: x",
              "ts": 7, "payload": "{}", "payload_bytes": 2}
    s.ingest("tinylarge/_deadletter/healthcare", json.dumps(record).encode())
    s.ingest("tinylarge/_deadletter/healthcare", json.dumps({**record, "topic": "tinylarge/healthcare/p9/x"}).encode())
    assert s.device("healthcare", "p1")["counts"] == {"published": 5, "accepted": 4, "rejected": 1}
    s.ingest("tinylarge/healthcare/p1/status", _msg("p1", state="online", counts={"published": 9}))
    assert s.device("healthcare", "p1")["counts"]["published"] == 9  # the device's own count, when it is more


def test_vehicles_tiny_output_is_its_event_counts_over_a_distance():
    s = FleetState(["vehicles"], {"vehicles": "action"})
    s.ingest("tinylarge/vehicles/v1/inference", _msg("v1", trip_s=120.0, distance_km=1.04, counts={
        "harsh_brake": 2, "harsh_accel": 0, "pothole": 1, "crash": 0}, rule_counts={}, stats={}, events=[]))
    inf = s.device("vehicles", "v1")["inference"]
    assert inf["class"] is None and inf["events"] == {"harsh_brake": 2, "pothole": 1} and inf["distance_km"] == 1.04
    s.ingest("tinylarge/vehicles/v1/action", _msg("v1", risk=0.4, vendor_points_per_100km=5843.2, level="low",
                                                  hazards_ahead=[{"id": 1}, {"id": 2}], alert=False))
    fields = s.device("vehicles", "v1")["result"]["fields"]
    assert fields["vendor_points_per_100km"] == 5843.2 and fields["hazards_ahead"] == 2


def test_deadletters_keep_reason_are_bounded_and_carry_the_fleet_clock():
    s = _state()
    s.ingest("tinylarge/healthcare/p1/risk", _msg("p1", ts=1_796_364_000_000, risk=0.1, alert=False))
    for i in range(FEED_ITEMS + 3):
        record = {"v": 1, "domain": "healthcare", "topic": "tinylarge/healthcare/p9/inference",
                  "reason": f"schema: bad {i}", "ts": i, "payload": "{", "payload_bytes": 1}
        ev = s.ingest("tinylarge/_deadletter/healthcare", json.dumps(record).encode())
    assert ev[0]["total"] == FEED_ITEMS + 3
    got = ev[0]["deadletter"]
    assert (got["reason"], got["ts"], got["device"]) == (f"schema: bad {FEED_ITEMS + 2}", FEED_ITEMS + 2, "p9")
    assert got["fleet_ts"] == 1_796_364_000_000 and got["received_ms"] == 1_000_000
    dom = _dom(s)
    assert len(dom["deadletters"]) == FEED_ITEMS and dom["summary"]["deadletters_total"] == FEED_ITEMS + 3
    assert dom["clock"] == {"fleet_ms": 1_796_364_000_000, "wall_ms": 1_000_000}


def test_the_cloud_is_a_stage_not_a_subject():
    s = _state()
    s.ingest("tinylarge/healthcare/cloud/status", _msg("cloud", state="online", counts={"alerts": 1}))
    s.ingest("tinylarge/healthcare/p1/status", _msg("p1", state="online"))
    dom = _dom(s)
    assert dom["page"]["ids"] == ["p1"] and list(dom["stages"]) == ["cloud"]
    assert dom["summary"]["subjects"] == 1 and dom["summary"]["online"] == 1 and dom["summary"]["stages"] == 1


def test_twenty_thousand_subjects_one_bounded_page_and_only_what_changed():
    """Issue 23.2: 20,003 rows made /api/state 3.3 MB. A view is one page per domain, whatever the fleet."""
    small, big = _state(), _state()
    for s, n in ((small, 60), (big, 20_000)):
        for i in range(n):
            dev = f"p{i:05d}"
            s.ingest(f"tinylarge/healthcare/{dev}/status", _msg(dev, state="online"))
            s.ingest(f"tinylarge/healthcare/{dev}/risk", _msg(dev, risk=0.1, alert=False))
    full_small, full_big = (len(json.dumps(s.view(0))) for s in (small, big))
    assert full_big < full_small * 1.1, (full_small, full_big)
    dom = _dom(big, offset=19_990, limit=25)
    assert dom["page"]["ids"] == [f"p{i:05d}" for i in range(19_975, 20_000)]  # clamped onto the last page
    assert dom["page"]["total"] == 20_000 and dom["summary"]["online"] == 20_000
    assert _dom(big, q="p1234")["page"]["ids"] == [f"p1234{i}" for i in range(10)]
    version = big.view(0)["version"]
    assert _dom(big, since=version)["devices"] == {}
    big.ingest("tinylarge/healthcare/p00003/status", _msg("p00003", state="offline"))
    changed = big.view(version)
    assert not changed["full"] and list(changed["domains"]["healthcare"]["devices"]) == ["p00003"]
    assert big.view(version + 10**6)["full"]  # a version it never reached (it restarted): all again
    assert len(_dom(big, limit=PAGE_MAX)["devices"]) == PAGE_MAX


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
    assert all(not d["devices"] and not d["page"]["ids"] for d in s.snapshot()["domains"].values())


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                    max_size=6), max_leaves=20)


@given(stream=st.sampled_from(["status", "inference", "risk", "chart", "model", "x"]),
       device=st.sampled_from(["p1", "p-2", "", "a/b", "+", "cloud"]),
       body=st.dictionaries(st.sampled_from(["v", "device", "seq", "ts", "state", "counts", "scores", "class",
                                             "risk", "alert", "action", "model", "active_model", "reason",
                                             "topic", "distance_km"]),
                            _json, max_size=10))
def test_any_json_object_on_any_topic_never_raises_and_the_view_stays_json(stream, device, body):
    s = _state()
    for topic in (f"tinylarge/healthcare/{device}/{stream}", "tinylarge/_deadletter/healthcare"):
        events = s.ingest(topic, json.dumps(body).encode())
        json.dumps(events, allow_nan=False)
    view = s.view(0)
    json.dumps(view, allow_nan=False)
    dom = view["domains"]["healthcare"]
    assert dom["summary"]["subjects"] == len(dom["page"]["ids"]) and dom["summary"]["alerting"] <= 1


@given(st.binary(max_size=300), st.text(max_size=60))
def test_any_bytes_on_any_topic_never_raise(payload, topic):
    s = _state()
    json.dumps(s.ingest(topic, payload), allow_nan=False)
