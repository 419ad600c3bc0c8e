"""A domain's firmware fleet with board units (``tinylarge demo DOMAIN --firmware N --qemu K --board ROW``): the
last K subjects run the board row's app image under QEMU (STM32F405: windows on its emulated USART as they come,
frames back through the gateway into Mosquitto), fed in lockstep with the host units; every window of every unit
arrives on the broker, and the board unit's messages equal the host unit's build on the same windows."""

from __future__ import annotations

import shutil
import time
import uuid

import pytest

from shared.protocol import messages
from tests._tools import require_tool
from tests.firmware import _fw
from tests.firmware.test_boards_apps import _close, _models

pytestmark = [pytest.mark.firmware, pytest.mark.broker]
APP = "metaverse_eeg"
N_TICKS = 3


def test_fleet_runs_a_unit_as_the_stm32_image_behind_the_gateway(mosquitto, tmp_path):
    for tool in ("make", "gcc", "arm-none-eabi-gcc", "qemu-system-arm"):
        require_tool(tool)
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from shared.domain import get
    from shared.runtime.firmware_fleet import FirmwareFleet, ticks

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(_models(APP)[0].path, models / "tiny.tflite")
    d = get(APP)
    subjects = list(d.hooks.simulate(2, 1.0, 5))[:2]
    got: dict[str, list[dict]] = {}
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"fleet-sub-{uuid.uuid4().hex[:8]}",
                      protocol=paho.MQTTv311)
    sub.on_message = lambda c, u, m: got.setdefault(m.topic.split("/")[2], []).append(
        messages.decode(APP, "inference", m.payload))
    sub.connect("127.0.0.1", mosquitto.port)
    sub.subscribe(f"tinylarge/{APP}/+/inference", qos=1)
    sub.loop_start()
    time.sleep(0.2)
    fw = FirmwareFleet(APP, mosquitto.url, subjects, models, _fw.START_MS, tmp_path / "fw", qemu=1,
                       board="netduinoplus2")
    assert [x.target for x in fw.devices] == ["host", "board"]
    try:
        fw.start()
        for t in ticks(d, 1.0)[:N_TICKS]:
            fw.step_all(t)
        published = fw.stop(timeout_s=120)
        end = time.monotonic() + 10
        while time.monotonic() < end and sum(len(v) for v in got.values()) < 2 * N_TICKS:
            time.sleep(0.05)
    finally:
        fw.abort()
        sub.loop_stop()
        sub.disconnect()
    host, board = fw.devices
    assert published == 2 * N_TICKS and board.published == N_TICKS
    assert board.gateway_summary["counts"]["all_acked"] == 1
    mine = sorted(got[board.device], key=lambda m: m["seq"])
    assert [m["seq"] for m in mine] == list(range(board.seq_start, board.seq_start + N_TICKS))
    assert len(got[host.device]) == N_TICKS
    # the board unit's windows through the fleet's host build, as that unit: the same messages
    import io
    import subprocess

    from shared.tiny.frames import FrameDecoder, write_sensor_window

    buf = io.StringIO()
    for t in ticks(d, 1.0)[:N_TICKS]:
        ts = board.start_ms + int(round(t * 1000))
        write_sensor_window(buf, d.hooks.window_channels(board.subject.window(t)), ts)
    out = subprocess.run([str(fw.builds["host"].artifacts["app"]), "--input", "-", "--device", board.device,
                          "--seq-start", str(board.seq_start)], input=buf.getvalue().encode(), capture_output=True,
                         timeout=120, check=True).stdout
    want = [messages.decode(APP, s, b) for s, b in (f.message() for f in FrameDecoder().feed(out)) if s == "inference"]
    assert len(want) == N_TICKS
    for a, b in zip(mine, want, strict=True):
        _close(a, b)
