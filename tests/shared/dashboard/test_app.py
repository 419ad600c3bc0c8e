"""The dashboard's HTTP side against a real Mosquitto: history from the store, bad parameters, the token."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from shared.dashboard.app import HISTORY_LIMIT
from shared.dashboard.server import Dashboard
from shared.storage.base import Point
from shared.storage.factory import open_store

pytestmark = pytest.mark.broker


def _get(url: str, headers: dict | None = None) -> tuple[int, dict | str, dict]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read().decode()
            status, hdrs = r.status, dict(r.headers)
    except urllib.error.HTTPError as exc:
        body, status, hdrs = exc.read().decode(), exc.code, dict(exc.headers)
    try:
        return status, json.loads(body), hdrs
    except ValueError:
        return status, body, hdrs


@pytest.fixture
def stored(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'tl.db'}"
    with open_store(url) as store:
        store.write([Point("risk", "p1", i, 1_000_000 + 60_000 * i, {"risk": i / 10, "alert": i >= 8, "news2": i},
                           {"domain": "healthcare"}) for i in range(10)])
        store.write([Point("risk", "p2", 0, 1_000_000, {"risk": 0.5}, {"domain": "healthcare"}),
                     Point("action", "m1", 0, 1_000_000, {"risk": 0.3, "action": "watch"},
                           {"domain": "industrial_iot"}),
                     Point("risk", "p1", 99, 1_000_000, {"risk": 0.9}, {"domain": "vehicles"})])  # another domain
    return url


def test_history_returns_what_the_store_holds(mosquitto, stored):
    with Dashboard(mosquitto.url, stored, port=0) as dash:
        base = dash.url + "api/history?domain=healthcare&device=p1"
        status, body, _ = _get(base)
        assert status == 200 and body["measurement"] == "risk" and body["count"] == 10
        assert [p["seq"] for p in body["points"]] == list(range(10))
        assert body["points"][3] == {"ts": 1_180_000, "seq": 3, "fields": {"risk": 0.3, "alert": False, "news2": 3}}
        status, body, _ = _get(base + "&start=1120000&end=1240000")
        assert [p["seq"] for p in body["points"]] == [2, 3, 4]
        status, body, _ = _get(base + "&limit=4")
        assert body["count"] == 10 and body["truncated"] and [p["seq"] for p in body["points"]] == [6, 7, 8, 9]
        status, body, _ = _get(dash.url + "api/history?domain=industrial_iot&device=m1&measurement=action")
        assert body["points"][0]["fields"] == {"risk": 0.3, "action": "watch"}
        status, body, _ = _get(dash.url + "api/devices?domain=healthcare")
        assert body["devices"] == ["p1", "p2"]


@pytest.mark.parametrize("query, says", [
    ("domain=nowhere&device=p1", "unknown domain 'nowhere'"),
    ("domain=healthcare&device=a/b", "invalid device id"),
    ("domain=healthcare&device=p1&start=yesterday", "start must be an integer"),
    ("domain=healthcare&device=p1&start=5&end=4", "start 5 is after end 4"),
    ("domain=healthcare&device=p1&measurement=DROP%20TABLE", "not a valid measurement"),
    ("domain=healthcare&device=p1&limit=0", f"limit must be 1..{HISTORY_LIMIT}"),
])
def test_bad_history_requests_say_what_is_wrong(mosquitto, stored, query, says):
    with Dashboard(mosquitto.url, stored, port=0) as dash:
        status, body, _ = _get(dash.url + "api/history?" + query)
        assert status == 400 and says in body["error"]


def test_binding_beyond_loopback_needs_a_token(mosquitto):
    with pytest.raises(ValueError, match="needs a token"):
        Dashboard(mosquitto.url, None, host="0.0.0.0", port=0)
    with pytest.raises(ValueError, match="at least 16"):
        Dashboard(mosquitto.url, None, host="0.0.0.0", port=0, token="short")


def test_the_token_gates_every_route_but_healthz_and_is_kept_in_a_cookie(mosquitto):
    token = "t0ken-for-the-dashboard-test"
    with Dashboard("mqtt://operator:s3cret@" + mosquitto.url.split("//")[1], None, port=0, token=token,
                   client_id="operator-test") as dash:
        assert _get(dash.url + "healthz")[0] == 200
        assert _get(dash.url + "api/state")[0] == 401
        assert _get(dash.url + "api/state", {"Authorization": "Bearer wrong-token-wrong-token"})[0] == 401
        status, body, _ = _get(dash.url + "api/state", {"Authorization": f"Bearer {token}"})
        assert status == 200 and body["broker"]["connected"]
        assert "s3cret" not in json.dumps(body) and body["broker"]["url"].startswith("mqtt://operator:***@")
        status, _, headers = _get(dash.url + f"?token={token}")
        assert status == 200 and f"tl_dashboard_token={token}" in headers["set-cookie"]
        assert "HttpOnly" in headers["set-cookie"] and "default-src 'self'" in headers["content-security-policy"]
        assert _get(dash.url + "api/state", {"Cookie": f"tl_dashboard_token={token}"})[0] == 200


def test_cli_without_a_broker_says_so(capsys, monkeypatch):
    from shared.dashboard.server import dashboard_main

    monkeypatch.delenv("TINYLARGE_MQTT", raising=False)
    assert dashboard_main([]) == 2
    assert "no broker" in capsys.readouterr().out


def test_beside_demo_prints_its_url_moves_off_a_taken_port_and_can_be_turned_off(mosquitto, capsys):
    import argparse
    import socket

    from shared.dashboard.demo import add_dashboard_args, beside_demo

    ap = argparse.ArgumentParser()
    add_dashboard_args(ap)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ap.parse_args(["--dashboard-port", str(port)])
        with beside_demo(args, mosquitto.url, None) as dash:
            assert dash is not None and dash.port != port
            assert _get(dash.url + "healthz")[0] == 200
            assert _get(dash.url + "api/state")[1]["broker"]["client_id"] == "tinylarge-dashboard"
        assert f"dashboard: {dash.url}" in capsys.readouterr().out
    with beside_demo(ap.parse_args(["--no-dashboard"]), mosquitto.url, None) as dash:
        assert dash is None


def test_reads_as_the_operator_of_the_generated_broker_config(tmp_path):
    """Against `tinylarge broker config --operator-user ops` (TLS, passwords, ACLs): every subscription is
    granted, a device's status and a dead letter arrive, and the operator's client id is its user name."""
    from shared.transport.mqtt import MqttClient, MqttConfig
    from tests.fixtures.mqtt import wait_for
    from tests.shared.security.test_security_broker import DEVICES, _make_broker

    broker = _make_broker(tmp_path, operator_users=("ops",))
    broker.start()
    try:
        url = f"mqtts://ops:{broker.files.passwords['ops']}@127.0.0.1:{broker.port}"
        with Dashboard(url, None, port=0, ca=str(broker.pki / "ca.crt")) as dash:
            assert dash.bridge.client_id == "ops"
            dev = DEVICES[0]
            device = MqttClient(MqttConfig(url=f"mqtts://{dev}:{broker.files.passwords[dev]}@127.0.0.1:{broker.port}",
                                           client_id=dev, clean_session=True, ca=str(broker.pki / "ca.crt")))
            device.start()
            device.publish(f"tinylarge/healthcare/{dev}/status", json.dumps(
                {"v": 1, "device": dev, "seq": 1, "ts": 1, "model": "hc-tiny@1", "state": "online"}).encode(),
                retain=True)
            device.stop(2.0)
            cloud = MqttClient(MqttConfig(url=f"mqtts://cloud:{broker.files.passwords['cloud']}@127.0.0.1:"
                                          f"{broker.port}", client_id="cloud", clean_session=True,
                                          ca=str(broker.pki / "ca.crt")))
            cloud.start()
            cloud.publish("tinylarge/_deadletter/healthcare", json.dumps(
                {"v": 1, "domain": "healthcare", "topic": "tinylarge/healthcare/x/inference", "reason": "schema: y",
                 "ts": 2, "payload": "{}", "payload_bytes": 2}).encode())
            cloud.stop(2.0)
            assert wait_for(lambda: (dash.bridge.state.device("healthcare", dev) or {}).get("state") == "online")
            assert wait_for(lambda: dash.bridge.state.snapshot()["domains"]["healthcare"]["deadletters_total"] == 1)
            status, body, _ = _get(dash.url + "api/state")
            assert body["broker"]["url"] == f"mqtts://ops:***@127.0.0.1:{broker.port}"
    finally:
        broker.stop()
