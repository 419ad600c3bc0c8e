"""The dashboard's HTTP side against a real Mosquitto: history from the store, bad parameters, the token,
the Host check (DNS rebinding), the paged state and the first state inlined in the page."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from shared.dashboard.app import HISTORY_LIMIT
from shared.dashboard.server import Dashboard, dashboard_main
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
            assert wait_for(lambda: dash.bridge.state.snapshot()["domains"]["healthcare"]["summary"][
                "deadletters_total"] == 1)
            status, body, _ = _get(dash.url + "api/state")
            assert body["broker"]["url"] == f"mqtts://ops:***@127.0.0.1:{broker.port}"
    finally:
        broker.stop()


def _raw(port: int, path: str, host: str) -> tuple[int, str]:
    """One request with exactly this Host header, as a page served from ``host`` would send it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def _publish_status(url: str, device: str) -> None:
    from shared.transport.mqtt import MqttClient, MqttConfig

    c = MqttClient(MqttConfig(url=url, client_id=f"dash-test-{device}", clean_session=True))
    c.start()
    c.publish(f"tinylarge/healthcare/{device}/status", json.dumps(
        {"v": 1, "device": device, "seq": 1, "ts": int(time.time() * 1000), "model": "hc-tiny@1",
         "state": "online"}).encode(), qos=1)  # not retained: later tests share the broker
    c.stop(2.0)


def test_a_forged_host_header_is_refused_on_every_route(mosquitto, stored):
    """Issue 23.1: with ``Host: attacker.example`` the API answered 200 with a patient's vitals, which a web
    page the user visits can read through DNS rebinding. Only the names the dashboard serves are answered."""
    from tests.fixtures.mqtt import wait_for

    with Dashboard(mosquitto.url, stored, port=0) as dash:
        _publish_status(mosquitto.url, "p1")
        assert wait_for(lambda: dash.bridge.state.device("healthcare", "p1") is not None)
        paths = ["/", "/api/state", "/api/domains", "/api/history?domain=healthcare&device=p1",
                 "/api/devices?domain=healthcare", "/static/app.js", "/healthz"]
        for path in paths:
            for host in ("attacker.example", f"attacker.example:{dash.port}", "127.0.0.1.attacker.example",
                         "localhost.", "", f"127.0.0.1:{dash.port}:1"):
                status, body = _raw(dash.port, path, host)
                if host == "localhost.":  # the same name with its root dot
                    assert status == 200, (path, host)
                    continue
                assert status == 403 and "is not served here" in body and "p1" not in body, (path, host, status)
            for host in (f"127.0.0.1:{dash.port}", f"localhost:{dash.port}", "LOCALHOST", f"[::1]:{dash.port}"):
                assert _raw(dash.port, path, host)[0] == 200, (path, host)
        status, body = _raw(dash.port, "/api/history?domain=healthcare&device=p1", f"localhost:{dash.port}")
        assert json.loads(body)["count"] == 10


def test_allowed_hosts_are_served_and_bad_ones_are_refused_at_start(mosquitto, capsys, monkeypatch):
    with Dashboard(mosquitto.url, None, port=0, allowed_hosts=["Dash.Example.org", "[fd00::5]"]) as dash:
        assert dash.allowed_hosts == ("localhost", "127.0.0.1", "::1", "dash.example.org", "fd00::5")
        for host in ("dash.example.org", f"dash.example.org:{dash.port}", f"[fd00::5]:{dash.port}"):
            assert _raw(dash.port, "/api/state", host)[0] == 200, host
        assert _raw(dash.port, "/api/state", "example.org")[0] == 403
    for bad in ("http://dash.example.org", "dash.example.org:8765", "a b", "x/y"):
        with pytest.raises(ValueError, match="--allowed-host"):
            Dashboard(mosquitto.url, None, port=0, allowed_hosts=[bad])
    monkeypatch.setenv("TINYLARGE_MQTT", mosquitto.url)
    assert dashboard_main(["--allowed-host", "https://x.example", "--port", "0"]) == 2
    assert "is not a host name or IP address" in capsys.readouterr().out


def test_a_token_dashboard_bound_to_an_address_serves_that_address(mosquitto):
    token = "t0ken-for-the-dashboard-test"
    dash = Dashboard(mosquitto.url, None, host="127.0.0.2", port=0, token=token)
    assert dash.allowed_hosts[-1] == "127.0.0.2"
    dash = Dashboard(mosquitto.url, None, host="0.0.0.0", port=0, token=token)
    assert dash.allowed_hosts == ("localhost", "127.0.0.1", "::1") and dash.url.startswith("http://127.0.0.1:")


@pytest.mark.parametrize("query, says", [
    ("limit=0", "limit must be 1..200"),
    ("since=-1", "since must be >= 0"),
    ("since=yesterday", "since must be an integer"),
    ("offset.nowhere=5", "unknown domain 'nowhere'"),
    ("offset.healthcare=x", "offset.healthcare must be an integer"),
    ("q.healthcare=a/b", "not the start of a device id"),
    ("only.healthcare=everything", "only.healthcare must be one of"),
])
def test_bad_state_requests_say_what_is_wrong(mosquitto, query, says):
    with Dashboard(mosquitto.url, None, port=0) as dash:
        status, body, _ = _get(dash.url + "api/state?" + query)
        assert status == 400 and says in body["error"]


def test_the_page_carries_its_first_state_so_it_shows_the_fleet_on_load(mosquitto_factory):
    """Issue 24: a screenshot taken on load showed only 'loading...': the first state is in the page. A broker
    of its own: the session's broker holds other tests' retained statuses, which the dashboard would show."""
    from tests.fixtures.mqtt import wait_for

    mosquitto = mosquitto_factory(persistence=False)
    with Dashboard(mosquitto.url, None, port=0) as dash:
        _publish_status(mosquitto.url, "p7")
        assert wait_for(lambda: dash.bridge.state.device("healthcare", "p7") is not None)
        status, html, headers = _get(dash.url)
        assert status == 200 and "loading" not in html
        start = html.index('<script type="application/json" id="tl-initial">') + len(
            '<script type="application/json" id="tl-initial">')
        initial = json.loads(html[start:html.index("</script>", start)])
        assert initial["state"]["domains"]["healthcare"]["page"]["ids"] == ["p7"]
        assert initial["domains"]["vehicles"]["fields"]["vendor_points_per_100km"] == {
            "label": "vendor points", "unit": "per 100 km", "description": "", "baseline": True}
        assert "script-src 'self'" in headers["content-security-policy"]
