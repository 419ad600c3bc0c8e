"""The streaming vehicles app on the STM32F405 (netduinoplus2): `build_board("netduinoplus2", "vehicles")` fits
its 128 KB SRAM with room to spare (the calibration's raw prefix in the 64 KB core-coupled RAM, where app.mk
puts it), and the image under QEMU -M netduinoplus2, reading simulated drives (random mounting, a crash)
from flash, writes the host build's messages on its USART: the same calibration flag, counts, rule counts
and event kinds, numbers within the host/Python parity test's tolerances (tests/vehicles/test_firmware_app.py).

The drives are 40 s trip segments (the app built with -DVEH_TRIP_S=40, the simulator with trip_s=40), so
three of them fit the board's flash as tlsensor text; the app's definitions do not depend on the length
beyond the calibration's 25 s prefix. The model is an untrained stand-in of the classifier's interface
(the comparison is C against C; which classes it picks does not matter)."""

from __future__ import annotations

import io
import re
import subprocess

import pytest

from shared.protocol import messages
from shared.tiny.frames import KIND_LOG, FrameDecoder, write_sensor_window
from tests._tools import require_tool
from tests.vehicles.test_firmware_app import assert_same_message

pytestmark = pytest.mark.firmware
DEVICE, START_MS, TRIP_S = "stm32-veh-1", 1_700_000_000_000, 40
DEFINES = (f"VEH_TRIP_S={TRIP_S}",)
SCORE_STEP = 1 / 256 + 1e-4  # one step of an int8 softmax output


@pytest.fixture(scope="module")
def sensor_text() -> bytes:
    from vehicles.device import window_channels
    from vehicles.signals import FleetConfig, simulate_fleet

    v = simulate_fleet(FleetConfig(n_vehicles=2, seed=31, trip_s=float(TRIP_S)))[1]
    buf = io.StringIO()
    for k, incident in enumerate((True, "crash", True)):
        write_sensor_window(buf, window_channels(v.trip(k, incident)), START_MS + k * 3_600_000)
    return buf.getvalue().encode("ascii")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    pytest.importorskip("tensorflow")
    from shared.tiny.board_build import app_models

    return app_models("vehicles", tmp_path_factory.mktemp("veh_standin"), trained=False)


@pytest.fixture(scope="module")
def board(models, sensor_text, tmp_path_factory):
    require_tool("make")
    require_tool("arm-none-eabi-gcc")
    from shared.tiny.board_build import build_board

    work = tmp_path_factory.mktemp("veh_board")
    (work / "drives.txt").write_bytes(sensor_text)
    return build_board("netduinoplus2", "vehicles", models, work, fw_args=["--device", DEVICE, "--seq-start", "0"],
                       sensor_file=work / "drives.txt", defines=DEFINES)


def _frames(serial: bytes) -> tuple[list[dict], list[str]]:
    dec = FrameDecoder()
    inf, logs = [], []
    for frame in dec.feed(serial):
        if frame.kind == KIND_LOG:
            logs.append(frame.payload.decode())
            continue
        stream, body = frame.message()
        msg = messages.decode("vehicles", stream, body)  # validates against the schema
        if stream == "inference":
            inf.append(msg)
    assert dec.bad == 0
    return inf, logs


def test_the_streaming_app_fits_the_stm32f405(board):
    size = board.size
    assert size.fits() and size.ram_total == 128 * 1024 and size.ccm_total == 64 * 1024
    assert size.ram_free >= 16 * 1024, size.text()  # room to spare in SRAM beyond the 16 KB stack reserve
    assert 0 < size.ccm_used <= 64 * 1024 and size.flash_used < 1024 * 1024


def test_the_stm32f405_under_qemu_writes_the_host_builds_messages(board, models, sensor_text, tmp_path):
    require_tool("qemu-system-arm")
    from shared.tiny.board_build import run_board_qemu
    from shared.tiny.targets import BuildConfig, build

    run = run_board_qemu("netduinoplus2", board.artifacts["elf"], b"", timeout_s=240)  # the drives are in flash
    assert run.returncode == 0, run.stderr[-1000:]
    got, logs = _frames(run.serial)
    host = build(BuildConfig("vehicles", "host", models, tmp_path, defines=DEFINES)).artifacts["app"]
    res = subprocess.run([str(host), "--input", "-", "--device", DEVICE, "--seq-start", "0"], input=sensor_text,
                         capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr.decode(errors="replace")[-1000:]
    want, _ = _frames(res.stdout)
    assert len(got) == len(want) == 3
    for a, b in zip(got, want, strict=True):
        assert a["trip_s"] == TRIP_S
        assert_same_message(a, b, SCORE_STEP)
    assert sum(m["rule_counts"]["crash"] for m in got) >= 1 and any(m["events"] for m in got)
    assert any(m["calibrated"] for m in got)
    stats = [ln for ln in logs if ln.startswith("stm32f4: stack high-water")]
    assert len(stats) == 1, logs
    used, reserved = (int(x) for x in re.search(r"high-water (\d+) of (\d+) bytes", stats[0]).groups())
    assert 0 < used < reserved
