"""The dashboard in a real headless Chromium, fed by a real Mosquitto: live fleet, results, alerts, dead
letters (from the real consumer), last will, a broker restart, and the store-backed history view."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from shared.dashboard.server import Dashboard
from shared.domain import registry
from shared.protocol import messages
from shared.storage.base import Point
from shared.storage.factory import open_store
from shared.transport.consumer import Consumer, status_will
from shared.transport.mqtt import MqttClient, MqttConfig
from tests.fixtures.mqtt import wait_for

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
