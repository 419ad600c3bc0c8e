"""The firmware's MQTT 3.1.1 client (firmware/net/tl_mqtt.c), driven by the host app.

1. Against a real Mosquitto: every message a paho subscriber receives passes shared.protocol.messages.decode;
   the status is retained; killing the device makes the broker publish its last will (offline).
2. Against a scripted broker on a socket, the exchange top to bottom:
     device --CONNECT(client id, keepalive 1 s, will retained QoS 1 status offline)--> broker
     broker --CONNACK 0--> device
     device --PUBLISH qos1 retain .../status (online)--> broker --PUBACK--> device
     device --PUBLISH qos1 .../inference id=N--> broker stays silent ...
     device --PUBLISH qos1 DUP .../inference id=N--> (after retry_ms) broker --PUBACK N--> device
     ... idle between windows longer than 3/4 keepalive: device --PINGREQ--> broker --PINGRESP-->
     device --DISCONNECT-->
3. The packet decoder on malformed input (truncated remaining length, five length bytes, oversize,
   bad CONNACK) and, with clang, libFuzzer runs over the decoder, the frame decoder and the JSON writer.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from shared.protocol import messages
from tests._tools import require_tool
from tests.firmware import _fw

pytestmark = pytest.mark.firmware
FW = _fw.__file__.rsplit("/tests/", 1)[0] + "/firmware"


class Subscriber:
    def __init__(self, url_port: int, device: str = "+", keep_retained: bool = False):
        self.got: list[paho.MQTTMessage] = []
        self.c = paho.Client(CallbackAPIVersion.VERSION2, client_id="fw-test-sub", protocol=paho.MQTTv311)
        # retained messages left on the shared broker by earlier runs are not this run's traffic
        self.c.on_message = lambda c, u, m: None if m.retain and not keep_retained else self.got.append(m)
        self.c.connect("127.0.0.1", url_port)
        self.c.subscribe(f"tinylarge/healthcare/{device}/#", qos=1)
        self.c.loop_start()
        time.sleep(0.3)

    def wait(self, pred, timeout_s: float = 15.0) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if pred():
                return True
            time.sleep(0.05)
        return pred()

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


@pytest.mark.broker
def test_host_app_publishes_valid_messages_to_mosquitto(mosquitto):
    app = _fw.built("host").artifacts["app"]
    sub = Subscriber(mosquitto.port, "fw-mqtt-1")
    try:
        res = subprocess.run([str(app), "--input", str(_fw.sensor_file()), "--device", "fw-mqtt-1",
                              "--mqtt", mosquitto.url], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        n = len(_fw.windows())
        assert sub.wait(lambda: len(sub.got) >= n + 2)
    finally:
        sub.close()
    streams = [m.topic.rsplit("/", 1)[1] for m in sub.got]
    assert streams.count("inference") == n and streams.count("status") == 2
    for m in sub.got:
        t = messages.parse_topic(m.topic)
        msg = messages.decode("healthcare", t.stream, m.payload)
        assert msg["device"] == t.device == "fw-mqtt-1"
    assert f"published {n + 2}, acked {n + 2}" in res.stderr
    # the status is retained: a late subscriber still gets the final (offline) state
    late = Subscriber(mosquitto.port, "fw-mqtt-1", keep_retained=True)
    try:
        assert late.wait(lambda: any(m.topic.endswith("fw-mqtt-1/status") for m in late.got), 5)
        st = [m for m in late.got if m.topic.endswith("fw-mqtt-1/status")][-1]
        assert st.retain and messages.decode("healthcare", "status", st.payload)["state"] == "offline"
    finally:
        late.close()


@pytest.mark.broker
def test_killed_device_gets_its_last_will(mosquitto):
    app = _fw.built("host").artifacts["app"]
    sub = Subscriber(mosquitto.port, "fw-will-1")
    proc = subprocess.Popen([str(app), "--input", str(_fw.sensor_file()), "--device", "fw-will-1",
                             "--mqtt", mosquitto.url, "--keepalive-s", "2", "--interval-ms", "30000"],
                            stderr=subprocess.PIPE)
    try:
        assert sub.wait(lambda: any(m.topic.endswith("fw-will-1/inference") for m in sub.got))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert sub.wait(lambda: any(m.topic.endswith("fw-will-1/status") and b'"offline"' in m.payload
                                    for m in sub.got), 10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()  # type: ignore[union-attr]
        sub.close()
    will = [m for m in sub.got if m.topic.endswith("fw-will-1/status") and b'"offline"' in m.payload][-1]
    assert messages.decode("healthcare", "status", will.payload)["state"] == "offline"


# ---- scripted broker -------------------------------------------------------------------------------

def _read_packet(conn: socket.socket) -> tuple[int, bytes]:
    head = conn.recv(1)
    if not head:
        raise EOFError
    mult, rem = 1, 0
    while True:
        b = conn.recv(1)[0]
        rem += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    body = b""
    while len(body) < rem:
        body += conn.recv(rem - len(body))
    return head[0], body


def _string(body: bytes, off: int) -> tuple[bytes, int]:
    n = struct.unpack(">H", body[off: off + 2])[0]
    return body[off + 2: off + 2 + n], off + 2 + n


def test_protocol_exchange_connect_retransmit_ping(tmp_path):
    app = _fw.built("host").artifacts["app"]
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    # two windows only, 1.2 s apart, keepalive 1 s: a PINGREQ is due between them
    sensors = tmp_path / "two.txt"
    sensors.write_text("".join(_fw.sensor_file().read_text().partition("\nt ")[0:1]) + "\n")
    log: list[tuple[str, object]] = []

    def broker():
        conn, _ = srv.accept()
        conn.settimeout(20)
        withheld = False
        try:
            while True:
                first, body = _read_packet(conn)
                kind = first >> 4
                if kind == 1:  # CONNECT
                    proto, off = _string(body, 0)
                    level, flags, keepalive = body[off], body[off + 1], struct.unpack(">H", body[off + 2: off + 4])[0]
                    cid, off = _string(body, off + 4)
                    wtopic, off = _string(body, off)
                    wmsg, off = _string(body, off)
                    log.append(("CONNECT", (proto, level, flags, keepalive, cid, wtopic, wmsg)))
                    conn.sendall(b"\x20\x02\x00\x00")
                elif kind == 3:  # PUBLISH
                    topic, off = _string(body, 0)
                    pid = struct.unpack(">H", body[off: off + 2])[0]
                    log.append(("PUBLISH", (topic.decode(), pid, bool(first & 0x08), bool(first & 0x01))))
                    if topic.endswith(b"/inference") and not withheld:
                        withheld = True  # say nothing: the device must re-send with DUP
                        continue
                    conn.sendall(bytes([0x40, 2]) + struct.pack(">H", pid))
                elif kind == 12:
                    log.append(("PINGREQ", None))
                    conn.sendall(b"\xd0\x00")
                elif kind == 14:
                    log.append(("DISCONNECT", None))
                    return
        except (EOFError, OSError):
            return
        finally:
            conn.close()

    th = threading.Thread(target=broker, daemon=True)
    th.start()
    res = subprocess.run([str(app), "--input", str(sensors), "--device", "fw-proto-1", "--mqtt",
                          f"mqtt://127.0.0.1:{port}", "--keepalive-s", "1", "--retry-ms", "300",
                          "--interval-ms", "1200", "--client-id", "proto-client"],
                         capture_output=True, text=True, timeout=30)
    th.join(10)
    srv.close()
    assert res.returncode == 0, res.stderr
    kinds = [k for k, _ in log]
    assert kinds[0] == "CONNECT" and kinds[-1] == "DISCONNECT"
    proto, level, flags, keepalive, cid, wtopic, wmsg = log[0][1]  # type: ignore[misc]
    assert (proto, level, keepalive, cid) == (b"MQTT", 4, 1, b"proto-client")
    assert flags & 0x04 and flags & 0x20 and (flags >> 3) & 3 == 1 and flags & 0x02  # will, retained, QoS 1, clean
    assert wtopic == b"tinylarge/healthcare/fw-proto-1/status"
    assert messages.decode("healthcare", "status", wmsg)["state"] == "offline"
    pubs = [v for k, v in log if k == "PUBLISH"]
    first_inf = [p for p in pubs if p[0].endswith("/inference")][:2]
    assert first_inf[0][1] == first_inf[1][1] and not first_inf[0][2] and first_inf[1][2]  # same id, DUP on resend
    assert pubs[0][0].endswith("/status") and pubs[0][3]  # status is retained
    assert "PINGREQ" in kinds
    assert "retransmits 1" in res.stderr


# ---- malformed packets (deterministic) and fuzzing ---------------------------------------------------

@pytest.fixture(scope="module")
def parse_tool(tmp_path_factory):
    gcc = require_tool("gcc")
    exe = tmp_path_factory.mktemp("mqttparse") / "parse"
    subprocess.run([gcc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-g", "-fsanitize=address,undefined",
                    "-DTL_STANDALONE", f"-I{FW}/net", f"{FW}/net/fuzz/fuzz_mqtt.c", f"{FW}/net/tl_mqtt.c",
                    "-o", str(exe)], check=True)
    return lambda data: subprocess.run([str(exe)], input=data, capture_output=True, check=True).stdout.decode()


@pytest.mark.parametrize(("packet", "expected"), [
    (b"\x20\x02\x00\x00", "rc=4 type=2"),  # CONNACK accepted
    (b"\x20\x02\x00\x05", "return_code=5"),  # CONNACK refused: not authorised (still well formed)
    (b"\x20\x80", "rc=0"),  # truncated remaining length: need more bytes
    (b"\x30\x05\x00\x03ab", "rc=0"),  # truncated body: need more bytes
    (b"\x30\xff\xff\xff\xff\x01", "rc=-1"),  # five remaining-length bytes: malformed
    (b"\x30\xa0\x9f\x01" + b"\x00" * 8, "rc=-2"),  # 20000-byte PUBLISH: oversize
    (b"\x20\x03\x00\x00\x00", "rc=-1"),  # CONNACK with remaining length 3
    (b"\x20\x02\x02\x00", "rc=-1"),  # CONNACK with reserved ack flags set
    (b"\x20\x02\x00\x06", "rc=-1"),  # CONNACK return code 6 does not exist
    (b"\x21\x02\x00\x00", "rc=-1"),  # CONNACK with fixed-header flags
    (b"\x36\x05\x00\x01t\x00\x01", "rc=-1"),  # PUBLISH QoS 3
    (b"\x32\x05\x00\x01t\x00\x00", "rc=-1"),  # PUBLISH QoS 1 with packet id 0
    (b"\x30\x03\x00\x05t", "rc=-1"),  # topic length beyond the packet
    (b"\x10\x00", "rc=-6"),  # CONNECT from a server: protocol error
    (b"\x32\x07\x00\x01t\x12\x34hi", "packet_id=4660 qos=1 topic_len=1 payload_len=2"),
])
def test_malformed_packets_are_refused(parse_tool, packet, expected):
    assert expected in parse_tool(packet)


FUZZ_S = int(os.environ.get("TINYLARGE_FUZZ_S", "3"))


@pytest.fixture(scope="module")
def fuzzers(tmp_path_factory):
    require_tool("clang")
    out = tmp_path_factory.mktemp("fuzz")
    res = subprocess.run(["make", "-s", "-C", FW, "fuzz", f"OUT={out}"], capture_output=True, text=True)
    if res.returncode != 0:
        if "libclang_rt" in res.stderr or "cannot find" in res.stderr:
            msg = "clang without libFuzzer/ASan runtime (apt-get install libclang-rt-14-dev)"
            if os.environ.get("TINYLARGE_REQUIRE_ALL") == "1":
                pytest.fail(msg)
            pytest.skip(msg)
        pytest.fail(res.stderr)
    return out


@pytest.mark.parametrize("name", ["mqtt", "frame", "json"])
def test_libfuzzer_finds_no_crash(fuzzers, name, tmp_path):
    res = subprocess.run([str(fuzzers / f"fuzz_{name}"), f"-max_total_time={FUZZ_S}", "-max_len=600",
                          str(tmp_path)], capture_output=True, text=True, timeout=FUZZ_S + 60, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = int(re.search(r"Done (\d+) runs", res.stderr).group(1))
    assert runs > 1000


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mqtt", "frame", "json"])
def test_libfuzzer_20s(fuzzers, name, tmp_path):
    res = subprocess.run([str(fuzzers / f"fuzz_{name}"), "-max_total_time=20", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]

