"""The dashboard in a real headless Chromium, fed by a real Mosquitto: live fleet, results, alerts, dead
letters (from the real consumer), last will, a broker restart, and the store-backed history view."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from shared.dashboard.server import Dashboard
from shared.domain import registry
from shared.protocol import messages
from shared.runtime.alerts import AlertRule
from shared.storage.base import Point
from shared.storage.factory import open_store
from shared.transport.consumer import Consumer, status_will
from shared.transport.mqtt import MqttClient, MqttConfig
from tests.fixtures.mqtt import MosquittoServer, _mosquitto_exe, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.broker]
SCREENSHOT = Path(os.environ.get("TINYLARGE_DASHBOARD_SCREENSHOT", "out/dashboard/dashboard.png"))


def _until(driver, predicate, what: str, timeout_s: float = 15.0):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate(driver)
            if last:
                return last
        except Exception as exc:  # element not there yet, or replaced while reading it
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"the page never showed {what} within {timeout_s} s (last: {last!r})")


def _cell(driver, domain: str, device: str, cls: str) -> str:
    return driver.find_element("css selector", f'#fleet-{domain} tr[data-device="{device}"] td.{cls}').text


def _client(url: str, client_id: str, device: str | None = None) -> MqttClient:
    will = status_will("healthcare", device, "hc-tiny@1") if device else None
    c = MqttClient(MqttConfig(url=url, client_id=client_id, clean_session=True, keepalive_s=5,
                              reconnect_max_s=1.0, will_topic=will[0] if will else None,
                              will_payload=will[1] if will else None))
    c.start()
    return c


def _publish(c: MqttClient, device: str, stream: str, msg: dict, retain: bool = False) -> None:
    msg = {"v": 1, "device": device, "ts": int(time.time() * 1000), "model": "hc-tiny@1", **msg}
    c.publish(messages.topic("healthcare", device, stream), messages.encode("healthcare", stream, msg), qos=1,
              retain=retain)


def test_live_fleet_in_a_real_browser(browser, mosquitto_factory, tmp_path):
    broker = mosquitto_factory()
    store_url = f"sqlite:///{tmp_path / 'tl.db'}"
    now = int(time.time() * 1000)
    with open_store(store_url) as store:
        store.write([Point("risk", "p1", i, now - 3_600_000 + 60_000 * i, {"risk": 0.1 * i, "alert": False},
                           {"domain": "healthcare"}) for i in range(7)])
    with Dashboard(broker.url, store_url, port=0) as dash:
        browser.get(dash.url)
        for name in registry():  # every registered domain renders, with no dashboard change
            _until(browser, lambda d, n=name: d.find_element("id", f"fleet-{n}"), f"the {name} section")
        _until(browser, lambda d: d.find_element("id", "live").text == "page: live", "the live stream")

        # a wearable comes online and publishes an inference; the cloud answers with a risk
        device = _client(broker.url, "dash-test-p1", "p1")
        _publish(device, "p1", "status", {"seq": 1, "state": "online", "counts": {"published": 1},
                                          "active_model": "hc-tiny@2"}, retain=True)
        _publish(device, "p1", "inference", {"seq": 1, "window_s": 30, "class": "tachycardia",
                                             "scores": {"normal": 0.08, "tachycardia": 0.92},
                                             "vitals": {"hr_bpm": 131, "hrv_rmssd_ms": 20, "hrv_sdnn_ms": 30,
                                                        "spo2_pct": 96, "rr_bpm": 18, "temp_c": 37.2,
                                                        "motion_g": 0.1, "quality": 0.9}})
        _until(browser, lambda d: _cell(d, "healthcare", "p1", "state") == "online", "p1 online")
        _until(browser, lambda d: _cell(d, "healthcare", "p1", "tiny") == "tachycardia, p = 0.92", "the inference")
        assert "hc-tiny@2" in _cell(browser, "healthcare", "p1", "model")
        assert _cell(browser, "healthcare", "p1", "counts") == "1 · 0 · 0"  # published · accepted · rejected

        cloud = _client(broker.url, "dash-test-cloud")
        _publish(cloud, "cloud", "status", {"seq": 1, "state": "online", "model": "hc-risk@1",
                                            "counts": {"received": 2, "deadletters": 0}}, retain=True)
        _until(browser, lambda d: d.find_element("css selector", '#stages-healthcare tr[data-device="cloud"] '
                                                 'td.counts').text == "received 2, deadletters 0", "the cloud's counts")
        assert not browser.find_elements("css selector", '#fleet-healthcare tr[data-device="cloud"]')
        for seq, (risk, alert) in enumerate([(0.31, False), (0.82, True)], start=1):
            _publish(cloud, "p1", "risk", {"seq": seq, "risk": risk, "horizon_h": 6.0, "news2": 5,
                                           "news2_band": "medium", "alert": alert, "windows": 12, "source_seq": seq})
        _until(browser, lambda d: _cell(d, "healthcare", "p1", "cloud").startswith("risk 0.820 within 6 h"), "the risk")
        assert _cell(browser, "healthcare", "p1", "baseline") == "news2 5 · news2 band medium"
        _until(browser, lambda d: "p1" in d.find_element("id", "alerts-healthcare").text, "the alert")
        points = browser.find_elements("css selector", '#fleet-healthcare tr[data-device="p1"] svg.spark polyline')
        assert len(points) == 1 and len(points[0].get_attribute("points").split()) == 2

        # a malformed message: the real consumer dead-letters it; the page shows the reason
        consumer_client = _client(broker.url, "dash-test-consumer")
        Consumer(consumer_client, "healthcare", {"inference": lambda t, m: None}).start()
        time.sleep(0.3)
        cloud.publish("tinylarge/healthcare/p9/inference", b"{not json", qos=1)
        _until(browser, lambda d: "bad JSON" in d.find_element("id", "dl-healthcare").text, "the dead letter")
        assert "tinylarge/healthcare/p9/inference" in browser.find_element("id", "dl-healthcare").text
        assert browser.find_element("id", "dlcount-healthcare").text == "1"

        # the wearable vanishes: the broker publishes its last will
        device.abort()
        _until(browser, lambda d: _cell(d, "healthcare", "p1", "state") == "offline", "p1 offline (last will)")

        # the broker restarts; the dashboard reconnects and the page keeps following
        broker.stop()
        _until(browser, lambda d: d.find_element("id", "broker").text == "broker: reconnecting", "broker down")
        broker.start()
        _until(browser, lambda d: d.find_element("id", "broker").text == "broker: connected", "broker back",
               timeout_s=20)
        assert wait_for(lambda: cloud.connected, 20.0), "the test's cloud client did not reconnect"
        _publish(cloud, "p2", "status", {"seq": 1, "state": "online"}, retain=True)
        _until(browser, lambda d: _cell(d, "healthcare", "p2", "state") == "online", "p2 after the restart")
        assert _cell(browser, "healthcare", "p1", "state") == "offline"  # retained will, read again

        # the history view reads the store for one subject and time range
        form = browser.find_element("id", "hform-healthcare")
        form.find_element("name", "device").send_keys("p1")
        form.find_element("css selector", "button").click()
        _until(browser, lambda d: d.find_element("css selector", "#history-healthcare .hcount").text.startswith(
            "7 point(s) of risk for p1"), "the stored history")
        rows = browser.find_elements("css selector", "#history-healthcare .htable tbody tr")
        assert len(rows) == 7 and rows[0].find_elements("tag name", "td")[1].text == "6"
        assert browser.find_elements("css selector", "#history-healthcare svg.chart polyline")

        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(SCREENSHOT))
        errors = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
        assert not errors, json.dumps(errors)
        for c in (cloud, consumer_client):
            c.stop(1.0)


# ------------------------------------------------------------------------------ issue 24: the page tells the truth
DAY0_MS = 1_796_342_400_000  # 2026-12-04 00:00 UTC: a demo's simulated fleet clock, far from the wall clock
RULES = {"healthcare": {"rule": AlertRule(0.6, 3), "source": "the test's rule"},
         "vehicles": {"rule": AlertRule(0.45, 2), "source": "the test's rule"}}


def _raw_publish(c: MqttClient, domain: str, device: str, stream: str, msg: dict, retain: bool = False) -> None:
    body = {"v": 1, "device": device, "model": "m@1", "seq": 1, "ts": DAY0_MS, **msg}
    c.publish(messages.topic(domain, device, stream), json.dumps(body).encode(), qos=1, retain=retain)


@pytest.fixture(scope="module")
def truth(tmp_path_factory):
    """A dashboard fed, over a private Mosquitto, what a demo sends: three patients at risk 0.97-0.99 whose
    alert was raised on one window, one patient at low risk, the cloud stage, a dead letter, and a vehicle."""
    broker = MosquittoServer(_mosquitto_exe(), tmp_path_factory.mktemp("truth-broker"))
    broker.start()
    dash = Dashboard(broker.url, None, port=0, rules=RULES).start()
    c = MqttClient(MqttConfig(url=broker.url, client_id="dash-truth", clean_session=True))
    c.start()
    try:
        for k, p in enumerate(("p1", "p2", "p3", "p4")):
            _raw_publish(c, "healthcare", p, "status", {"state": "online", "counts": {"published": 0, "accepted": 0,
                                                                                       "rejected": 0}}, retain=True)
            _raw_publish(c, "healthcare", p, "inference", {"class": "tachycardia", "window_s": 30,
                                                           "scores": {"normal": 0.08, "tachycardia": 0.92}})
            risks = (0.2, 0.21) if p == "p4" else (0.97, 0.98, 0.99, 0.98, 0.97)
            for i, risk in enumerate(risks):
                _raw_publish(c, "healthcare", p, "risk", {
                    "seq": i, "ts": DAY0_MS + 300_000 * i, "risk": round(risk + k / 1000, 3), "horizon_h": 6.0,
                    "news2": 7, "news2_band": "high", "alert": i == 2, "windows": 12, "source_seq": i})
        _raw_publish(c, "healthcare", "cloud", "status", {"model": "hc-risk@1", "state": "online",
                                                          "counts": {"received": 12, "alerts": 1}}, retain=True)
        c.publish("tinylarge/_deadletter/healthcare", json.dumps({
            "v": 1, "domain": "healthcare", "topic": "tinylarge/healthcare/p1/inference", "reason": "schema: bad",
            "ts": int(time.time() * 1000), "payload": "{}", "payload_bytes": 2}).encode(), qos=1)
        _raw_publish(c, "vehicles", "v1", "status", {"state": "online"}, retain=True)
        _raw_publish(c, "vehicles", "v1", "inference", {
            "trip_s": 120.0, "distance_km": 1.04, "calibrated": True, "gnss_fix_frac": 1.0, "lat": 48.1, "lon": 11.6,
            "stats": {}, "counts": {"normal": 0, "harsh_brake": 2, "harsh_accel": 0, "harsh_corner": 0, "pothole": 1,
                                    "speed_bump": 0, "crash": 0}, "rule_counts": {}, "events": []})
        _raw_publish(c, "vehicles", "v1", "action", {
            "risk": 0.41, "horizon_trips": 10, "vendor_points_per_100km": 5843.21, "alert": False, "level": "low",
            "hazards_ahead": [{"id": 1}, {"id": 2}], "windows": 3, "source_seq": 1})
        state = dash.bridge.state
        assert wait_for(lambda: (state.device("vehicles", "v1") or {}).get("result") is not None
                        and state.view()["domains"]["healthcare"]["summary"]["deadletters_total"] == 1
                        and (state.device("healthcare", "p4") or {}).get("counts", {}).get("accepted") == 2
                        and all((state.device("healthcare", p) or {}).get("counts", {}).get("accepted") == 5
                                for p in ("p1", "p2", "p3"))), "the dashboard did not receive the test's messages"
        yield dash
    finally:
        c.stop(1.0)
        dash.stop()
        broker.kill()


def _text(driver, css: str) -> str:
    return driver.find_element("css selector", css).text


def _ids(driver, domain: str) -> list[str]:
    return [r.get_attribute("data-device") for r in driver.find_elements("css selector", f"#fleet-{domain} tbody tr")]


def test_a_screenshot_on_load_shows_the_fleet_not_loading(browser, truth):
    browser.get(truth.url)  # returns at the load event; nothing waited for after it
    assert _ids(browser, "healthcare") == ["p1", "p2", "p3", "p4"]
    assert "loading" not in browser.find_element("tag name", "body").text.lower()
    assert _text(browser, "#summary-healthcare .alerting-now b") == "3"
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT.with_name("on-load.png")))


def test_alerting_now_is_the_alert_rule_on_each_current_risk(browser, truth):
    browser.get(truth.url)
    alerting = browser.find_elements("css selector", "#fleet-healthcare tbody tr.alerting")
    assert [r.get_attribute("data-device") for r in alerting] == ["p1", "p2", "p3"]
    assert _text(browser, "#summary-healthcare .alerting-now").endswith("3 alerting now")
    assert len(browser.find_elements("css selector", "#alerts-healthcare li")) == 3
    assert "at or above 0.600 on 3 consecutive window(s), until it falls below 0.300 (the test's rule)" in _text(
        browser, "#rule-healthcare")
    # the cloud's own count is shown as what it is: its last status, beside the rule's truth
    assert _text(browser, '#stages-healthcare tr[data-device="cloud"] td.counts') == "received 12, alerts 1"
    browser.find_element("css selector", "#pager-healthcare .only-alerting").click()
    _until(browser, lambda d: _text(d, "#pager-healthcare .range") == "1–3 of 3 alerting", "the alerting filter")


def test_one_clock_for_alerts_and_dead_letters(browser, truth):
    from datetime import datetime

    browser.get(truth.url)
    clock = _text(browser, "#clock-healthcare")
    newest = datetime.fromtimestamp((DAY0_MS + 4 * 300_000) / 1000).strftime("%Y-%m-%d %H:%M:%S")
    assert clock.startswith(f"Fleet clock (simulated time): {newest},")
    assert re.search(r", [\d.]+ (min|h|days|years) (ahead of|behind) the wall clock\.", clock), clock
    raised = datetime.fromtimestamp((DAY0_MS + 2 * 300_000) / 1000).strftime("%Y-%m-%d %H:%M:%S")
    whens = [e.text for e in browser.find_elements("css selector", "#alerts-healthcare .when")]
    assert whens == [f"sim {raised}"] * 3
    assert _text(browser, "#dl-healthcare .when") == f"sim ≈ {newest}"  # the consumer's wall time, on the fleet clock


def test_per_device_counts_count_what_was_published_accepted_rejected(browser, truth):
    browser.get(truth.url)
    assert _cell(browser, "healthcare", "p1", "counts") == "1 · 5 · 1"
    assert _cell(browser, "healthcare", "p4", "counts") == "1 · 2 · 0"
    assert _cell(browser, "vehicles", "v1", "counts") == "1 · 1 · 0"


def test_every_domains_tiny_output_and_baseline_with_units(browser, truth):
    browser.get(truth.url)
    assert _cell(browser, "vehicles", "v1", "tiny") == "harsh_brake 2, pothole 1 over 1.04 km"
    assert _cell(browser, "vehicles", "v1", "baseline") == "vendor points 5,843 per 100 km"
    assert _cell(browser, "vehicles", "v1", "cloud") == "risk 0.410 within 10 trips · level low · hazards ahead 2"
    assert "baseline: points per 100 km" in _text(browser, "#fleet-vehicles thead th.baseline")
    assert _cell(browser, "healthcare", "p4", "tiny") == "tachycardia, p = 0.92"
    assert _cell(browser, "healthcare", "p4", "cloud") == "risk 0.213 within 6 h"
    assert _cell(browser, "healthcare", "p4", "baseline") == "news2 7 · news2 band high"


def test_empty_domains_fold_to_one_line(browser, truth):
    browser.get(truth.url)
    for name in ("industrial_iot", "metaverse_eeg"):
        sec = browser.find_element("id", f"domain-{name}")
        assert sec.get_attribute("open") is None and sec.size["height"] < 60, (name, sec.size)
        assert re.search(r"\nno (machine|user)s, stages or dead letters yet$", sec.text), sec.text
    for name in ("healthcare", "vehicles"):
        assert browser.find_element("id", f"domain-{name}").get_attribute("open") == "true"


# ------------------------------------------------------------------------------ issue 23.2: 20,000 subjects
def test_twenty_thousand_subjects_page_and_the_page_keeps_answering(browser, mosquitto_factory):
    n = 20_000
    mosquitto = mosquitto_factory(persistence=False)  # of its own: no other test's retained statuses
    with Dashboard(mosquitto.url, None, port=0, rules=RULES) as dash:
        state = dash.bridge.state
        for i in range(n):
            dev = f"p{i:05d}"
            state.ingest(f"tinylarge/healthcare/{dev}/status", json.dumps(
                {"v": 1, "device": dev, "seq": 1, "ts": DAY0_MS, "model": "hc-tiny@1", "state": "online"}).encode())
        for i in range(0, n, 1000):  # every 1000th patient is alerting (the rule: 3 windows at or above 0.6)
            for k in range(3):
                dev = f"p{i:05d}"
                state.ingest(f"tinylarge/healthcare/{dev}/risk", json.dumps(
                    {"v": 1, "device": dev, "seq": k, "ts": DAY0_MS + k, "model": "hc-risk@1", "risk": 0.9,
                     "alert": k == 2}).encode())
        browser.get(dash.url)
        assert len(browser.find_elements("css selector", "#fleet-healthcare tbody tr")) == 50
        assert _text(browser, "#pager-healthcare .range") == "1–50 of 20,000"
        assert _text(browser, "#summary-healthcare .subjects") == "20,000 patients"
        assert _text(browser, "#summary-healthcare .alerting-now b") == "20"

        browser.find_element("css selector", "#pager-healthcare .next").click()
        _until(browser, lambda d: _text(d, "#pager-healthcare .range") == "51–100 of 20,000", "the second page")
        assert _cell(browser, "healthcare", "p00050", "device") == "p00050"
        # a change on the page shown arrives with the next poll (only what changed since the page's version)
        state.ingest("tinylarge/healthcare/p00051/status", json.dumps(
            {"v": 1, "device": "p00051", "seq": 2, "ts": DAY0_MS, "model": "hc-tiny@1", "state": "offline"}).encode())
        answer = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "window.tinylarge.refresh().then(() => done(["
            " document.querySelectorAll('#fleet-healthcare tbody tr').length,"
            " document.querySelector('#fleet-healthcare tr[data-device=\"p00051\"] td.state').textContent]));")
        assert answer == [50, "offline"]

        filt = browser.find_element("css selector", "#pager-healthcare .filter")
        filt.send_keys("p1999")
        _until(browser, lambda d: _text(d, "#pager-healthcare .range") == "1–10 of 10", "the id filter")
        ids = _ids(browser, "healthcare")
        assert ids == [f"p1999{k}" for k in range(10)]
        filt.clear()
        filt.send_keys("p")  # clear() fires no input event; typing does
        browser.find_element("css selector", "#pager-healthcare .only-alerting").click()
        _until(browser, lambda d: _text(d, "#pager-healthcare .range") == "1–20 of 20 alerting", "the alerting filter")
        ids = _ids(browser, "healthcare")
        assert ids == [f"p{i:05d}" for i in range(0, n, 1000)]
        size = len(json.dumps(state.view()))
        assert size < 200_000, size  # one page per domain, whatever the fleet
