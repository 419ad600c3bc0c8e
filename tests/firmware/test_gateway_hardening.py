"""Issue 23 item 6 (and 10): the gateway against the Mosquitto configuration `tinylarge broker config` writes.

The gateway runs as device ``dev1`` (its user, over TLS with ``--ca``) and bridges a line that carries
its own status and inference, the same for another device, four invalid frames and a log frame that
tries to forge a log line. An operator subscribed to every stream and the dead letters counts what the
broker accepted. Before: the gateway reported 4 messages forwarded where the broker accepted 2 (the ACL
dropped the other device's frames silently), the 4 invalid frames left no dead letter (the ACL gave a
device none), and the log frame wrote a second log line and a raw escape character.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.tiny.frames import KIND_LOG, encode_frame, encode_message
from shared.tiny.gateway import GatewayConfig, main
from tests.shared.security.test_security_broker import DOMAIN_OF, Broker, Client, _free_port, _make_broker

pytestmark = pytest.mark.broker

DOMAIN = DOMAIN_OF["dev1"]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = _make_broker(tmp_path, operator_users=("ops",), plain_port=_free_port())
    b.start()
    yield b
    b.stop()


def _status(device: str, seq: int) -> bytes:
    return json.dumps({"v": 1, "device": device, "seq": seq, "ts": 1_700_000_000_000, "model": "hc-tiny@1",
                       "state": "online"}).encode()


def _inference(device: str, seq: int) -> bytes:
    vitals = {"hr_bpm": 72, "hrv_rmssd_ms": 40, "hrv_sdnn_ms": 50, "spo2_pct": 97, "rr_bpm": 14, "temp_c": 36.8,
              "motion_g": 0.1, "quality": 0.9}
    return json.dumps({"v": 1, "device": device, "seq": seq, "ts": 1_700_000_000_000, "model": "hc-tiny@1",
                       "window_s": 30, "vitals": vitals, "class": "normal", "scores": {"normal": 0.9}}).encode()


FORGED_LOG = "boot ok\nINFO device log: dev2 firmware verified\x1b[2K"


def _line(tmp_path: Path) -> Path:
    frames = [
        encode_message("status", _status("dev1", 1)),
        encode_message("inference", _inference("dev1", 2)),
        encode_message("status", _status("dev2", 1)),  # another device: the gateway does not speak for it
        encode_message("inference", _inference("dev2", 2)),
        encode_message("inference", b'{"v":1,"device":"dev1"}'),  # schema
        encode_message("inference", b"not json"),
        encode_message("model", _status("dev1", 3)),  # a cloud -> device stream
        encode_frame(0x33, b"what is this"),  # unknown kind
        encode_frame(KIND_LOG, FORGED_LOG.encode()),
    ]
    path = tmp_path / "line.bin"
    path.write_bytes(b"".join(frames))
    return path


@pytest.mark.parametrize("listener", ["tls", "plain"])
def test_gateway_forwards_what_the_broker_accepts_and_dead_letters_the_rest(broker: Broker, tmp_path: Path,
                                                                              capsys, caplog, listener: str) -> None:
    ops = Client(broker, "ops", broker.files.passwords["ops"])
    assert ops.connect() == "Success"
    try:
        ops.subscribe("tinylarge/#")
        password = broker.files.passwords["dev1"]
        if listener == "tls":
            endpoint = [f"--mqtt=mqtts://dev1:{password}@127.0.0.1:{broker.port}", "--ca", str(broker.pki / "ca.crt")]
        else:  # the loopback listener, same users and ACL
            port = broker.files.conf.read_text().split("listener ")[2].split()[0]
            endpoint = [f"--mqtt=mqtt://dev1:{password}@127.0.0.1:{port}"]
        with caplog.at_level(logging.INFO, logger="shared.tiny.gateway"):
            code = main(["--pipe", f"cat {_line(tmp_path)}", *endpoint, "--domain", DOMAIN])
        summary = json.loads(capsys.readouterr().out)
        # the gateway's offline status for dev1 is its last message: everything before it has arrived
        got = ops.receive_until(f"tinylarge/{DOMAIN}/dev1/status", None)
        while b'"offline"' not in got[-1][1]:
            got += ops.receive_until(f"tinylarge/{DOMAIN}/dev1/status", None)
    finally:
        ops.close()
    counts = summary["counts"]
    device_msgs = [t for t, _, _ in got if not t.startswith("tinylarge/_deadletter/")]
    letters = [json.loads(p) for t, p, _ in got if t == f"tinylarge/_deadletter/{DOMAIN}"]
    assert code == 1  # invalid frames were seen
    assert counts["forwarded"] == 2, counts
    assert sorted(device_msgs) == sorted([f"tinylarge/{DOMAIN}/dev1/status", f"tinylarge/{DOMAIN}/dev1/inference",
                                          f"tinylarge/{DOMAIN}/dev1/status"])  # online, inference, offline
    assert counts["forwarded"] + counts["offline_sent"] == len(device_msgs)
    assert counts["invalid"] == 6 == len(letters), (counts, letters)
    reasons = [lt["reason"] for lt in letters]
    assert sum("speaks only for device 'dev1'" in r for r in reasons) == 2, reasons
    for needle in ("schema", "bad JSON", "cloud -> device", "unknown frame kind"):
        assert any(needle in r for r in reasons), (needle, reasons)
    # one log record for the log frame, on one line, with the device's control characters escaped
    device_logs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("device log:")]
    assert len(device_logs) == 1
    assert "\n" not in device_logs[0] and "\x1b" not in device_logs[0], device_logs
    assert "\\n" in device_logs[0] and "\\x1b" in device_logs[0]
    assert all("\n" not in r.getMessage() and "\x1b" not in r.getMessage() for r in caplog.records)


def test_gateway_identity_and_tls_options(tmp_path: Path) -> None:
    from shared.security.pki import create_ca, issue

    create_ca(tmp_path)
    issue(tmp_path, "w7", kind="client")
    by_user = GatewayConfig("mqtts://p001:pw@127.0.0.1:8883", "healthcare")
    assert by_user.own_devices == ("p001",)
    by_cert = GatewayConfig("mqtts://127.0.0.1:8883", "healthcare", ca=str(tmp_path / "ca.crt"),
                            certfile=str(tmp_path / "w7.crt"), keyfile=str(tmp_path / "w7.key"))
    assert by_cert.own_devices == ("w7",)
    listed = GatewayConfig("mqtt://127.0.0.1:1883", "healthcare", devices=("a1", "a2"))
    assert listed.own_devices == ("a1", "a2")
    assert GatewayConfig("mqtt://127.0.0.1:1883", "healthcare").own_devices == ()  # open broker: any device
    with pytest.raises(ValueError, match="mqtts"):
        GatewayConfig("mqtt://127.0.0.1:1883", "healthcare", ca=str(tmp_path / "ca.crt"))
