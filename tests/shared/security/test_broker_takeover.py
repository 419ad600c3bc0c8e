"""Issue 23 item 8: two processes with one user against the Mosquitto configuration `tinylarge broker config`
writes (``use_username_as_clientid``: the client id is the user name).

Before: the second process connected, the broker closed the first one's connection, the first reconnected
and closed the second's, and so on (267 "lost its connection; reconnecting" lines in 120 s). Now the second
process fails at start with one line naming the user, and the first keeps its connection; a client that
gets past the start check (``takeover_check_s=0``) stops after three short-lived connections instead of
looping.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.errors import UserError
from shared.transport.mqtt import TAKEOVER_LIMIT, MqttClient, MqttConfig
from tests.shared.security.test_security_broker import Broker, _make_broker, _wait

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[3]
HOLDER = """
import sys
from shared.transport.mqtt import MqttClient, MqttConfig
c = MqttClient(MqttConfig(url=sys.argv[1], client_id="holder", clean_session=True, ca=sys.argv[2]))
c.start()
print("ready", flush=True)
sys.stdin.read()  # until the test closes stdin
print("connected" if c.connected else "not connected", c.counts["reconnects"], flush=True)
c.stop(2.0)
"""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = _make_broker(tmp_path, service_users=("svc1",))
    b.start()
    yield b
    b.stop()


def _url(broker: Broker, user: str) -> str:
    return f"mqtts://{user}:{broker.files.passwords[user]}@127.0.0.1:{broker.port}"


def _takeovers(broker: Broker) -> int:
    return broker.log().count("already connected, closing old connection")


def test_a_second_process_with_the_same_user_fails_at_start_and_the_first_keeps_its_connection(
        broker: Broker) -> None:
    ca = str(broker.pki / "ca.crt")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, _url(broker, "svc1"), ca], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        second = MqttClient(MqttConfig(url=_url(broker, "svc1"), client_id="second", clean_session=True, ca=ca))
        with pytest.raises(UserError) as err:
            second.start()
        line = str(err.value)
        assert "another process" in line and "'svc1'" in line and "--service-user" in line
        assert "\n" not in line and broker.files.passwords["svc1"] not in line
        settled = _takeovers(broker)
        assert settled in (1, 2), broker.log()[-2000:]  # the second's connect, and the holder's reconnect
        # nothing fights any more: a third client's whole session comes and goes, and no new takeover is logged
        probe = MqttClient(MqttConfig(url=_url(broker, "cloud"), client_id="probe", clean_session=True, ca=ca))
        probe.start()
        probe.stop(2.0)
        time.sleep(1.5)  # several reconnect delays of a loop (0.2 s): none must happen
        assert _takeovers(broker) == settled
        out, err_text = holder.communicate("", timeout=20)
    finally:
        if holder.poll() is None:
            holder.kill()
    state, reconnects = out.split()[-2:] if out.strip().endswith(tuple("0123456789")) else ("?", "?")
    assert out.strip().splitlines()[-1].startswith("connected"), (out, err_text)
    assert int(reconnects) <= 1, (out, err_text)
    assert err_text.count("lost its connection") <= 1, err_text


def test_a_client_past_the_start_check_stops_instead_of_looping(broker: Broker, monkeypatch) -> None:
    import shared.transport.mqtt as mqtt_module

    monkeypatch.setattr(mqtt_module, "TAKEOVER_WINDOW_S", 1.0)  # "within seconds of connecting", shorter
    ca = str(broker.pki / "ca.crt")
    first = MqttClient(MqttConfig(url=_url(broker, "svc1"), client_id="a", clean_session=True, ca=ca))
    first.start()
    time.sleep(1.2)  # the first has run for longer than the window: its connection was not short-lived
    second = MqttClient(MqttConfig(url=_url(broker, "svc1"), client_id="b", clean_session=True, ca=ca,
                                   takeover_check_s=0))
    try:
        second.start()  # no check: the takeover loop begins
        _wait(lambda: second.fatal is not None, "the second client to give up", timeout_s=20)
        assert "'svc1'" in (second.fatal or "")
        assert first.wait_connected(10)
        settled = _takeovers(broker)
        assert settled <= 2 * TAKEOVER_LIMIT + 1
        time.sleep(1.5)
        assert _takeovers(broker) == settled and first.connected
        assert second.publish("tinylarge/healthcare/dev1/risk", b"{}") is False
        assert not second.wait_connected(0.5)
    finally:
        second.stop(1.0)
        first.stop(2.0)
