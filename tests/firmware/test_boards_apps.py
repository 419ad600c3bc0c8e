"""Every domain's app on the dev boards: built for the STM32F405 (``-M netduinoplus2``, windows on its USART)
and the MPS2 Cortex-M7 / M33 rows (windows over semihosting, frames on UART0), run under QEMU, and its messages
equal to the host build's on the same windows; the gateway carries a board's messages into Mosquitto.

The models are untrained stand-ins with the apps' interfaces (:func:`shared.tiny.board_build.app_models`):
what is checked is the C app on the board against the same C app on the host, not the model's skill. An app
that does not fit a board is reported by the build (FirmwareError naming the region); every app fits the
rows tested here (vehicles since its streaming port)."""

from __future__ import annotations

import functools
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.protocol import messages
from shared.tiny.frames import KIND_LOG, FrameDecoder, write_sensor_window
from tests._tools import require_tool
from tests.firmware import _fw

pytestmark = pytest.mark.firmware
DEVICE = "board-app-1"
START_MS = 1_700_000_000_000
APPS = ("healthcare", "industrial_iot", "metaverse_eeg", "vehicles")
N_WINDOWS = 2


def _n(app: str) -> int:
    """Windows per run: one vehicles trip segment is ~940 KB of tlsensor text, ~45 s through QEMU's USART."""
    return 1 if app == "vehicles" else N_WINDOWS


@functools.cache
def _models(app: str) -> tuple:
    from shared.tiny.board_build import app_models

    pytest.importorskip("tensorflow")
    return tuple(app_models(app, _fw.workdir() / "standins", trained=False))


@functools.cache
def _sensor_text(app: str) -> bytes:
    """_n(app) windows of one simulated subject, as tlsensor text (by time, or its first trips for a subject that
    draws them by index: vehicles)."""
    import itertools

    from shared.domain import get

    d = get(app)
    subject = d.hooks.simulate(2, 2.0, 7)[0]
    times = [d.window_s + 60.0 * (k + 1) for k in range(_n(app))]
    wins = ([subject.window(t) for t in times] if hasattr(subject, "window")
            else list(itertools.islice(subject.windows(), _n(app))))
    buf = io.StringIO()
    for t, w in zip(times, wins, strict=True):
        write_sensor_window(buf, d.hooks.window_channels(w), START_MS + int(t * 1000))
    return buf.getvalue().encode("ascii")


@functools.cache
def _board_build(app: str, board: str):
    from shared.tiny.board_build import build_board

    require_tool("make")
    require_tool("arm-none-eabi-gcc")
    return build_board(board, app, _models(app), _fw.workdir() / "board-apps",
                       fw_args=["--device", DEVICE, "--seq-start", "0"])


def _frames(app: str, serial: bytes) -> tuple[list[tuple[str, dict]], list[str]]:
    dec = FrameDecoder()
    msgs, logs = [], []
    for frame in dec.feed(serial):
        if frame.kind == KIND_LOG:
            logs.append(frame.payload.decode())
            continue
        stream, body = frame.message()
        msgs.append((stream, messages.decode(app, stream, body)))  # validates against the domain's schema
    assert dec.bad == 0 and dec.skipped_bytes == 0
    return msgs, logs


@functools.cache
def _host_messages(app: str) -> tuple:
    from shared.tiny.targets import BuildConfig, build

    require_tool("make")
    require_tool("gcc")
    res = build(BuildConfig(app, "host", _models(app), _fw.workdir() / "board-apps-host"))
    out = subprocess.run([str(res.artifacts["app"]), "--input", "-", "--device", DEVICE, "--seq-start", "0"],
                         input=_sensor_text(app), capture_output=True, timeout=120, check=True).stdout
    return tuple(m for s, m in _frames(app, out)[0] if s == "inference")


def _close(a, b, path: str = "") -> None:
    """Same structure, same strings/ints/bools; floats to the printed precision of the DSP (x86-64 and the Arm
    FPU, glibc and newlib round a float op or a libm call differently) and int8 scores one output step apart."""
    if isinstance(b, dict):
        assert isinstance(a, dict) and a.keys() == b.keys(), (path, a, b)
        for k in b:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(b, list):
        assert isinstance(a, list) and len(a) == len(b), (path, a, b)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(b, float) or isinstance(a, float):
        assert isinstance(a, (int, float)) and not isinstance(a, bool), (path, a, b)
        assert abs(a - b) <= 0.011 + 2e-3 * abs(b), (path, a, b)
    else:
        assert a == b, (path, a, b)


def _assert_same(app: str, got: list[dict], want: tuple) -> None:
    assert len(got) == len(want) == _n(app)
    for a, b in zip(got, want, strict=True):
        for k in ("device", "seq", "ts", "model"):
            assert a[k] == b[k], k
        _close(a, b)


def _check_run(app: str, serial: bytes) -> list[str]:
    msgs, logs = _frames(app, serial)
    n = _n(app)
    assert [s for s, _ in msgs] == ["status"] + ["inference"] * n + ["status"]
    assert msgs[-1][1]["counts"] == {"windows": n, "published": n, "errors": 0}
    _assert_same(app, [m for s, m in msgs if s == "inference"], _host_messages(app))
    return logs


@pytest.mark.parametrize("app", [pytest.param(a, marks=pytest.mark.slow) if a in ("healthcare", "vehicles") else a
                                 for a in APPS])
def test_app_on_the_stm32f405_under_qemu_gives_the_hosts_messages(app):
    """(healthcare is also in test_boards.py's default run, and a vehicles segment takes ~45 s through the
    emulated USART: both with the slow ones)"""
    require_tool("qemu-system-arm")
    from shared.tiny.board_build import run_board_qemu
    from shared.tiny.boards import get

    res = _board_build(app, "netduinoplus2")
    assert res.size.fits() and res.size.ram_free >= 0
    run = run_board_qemu("netduinoplus2", res.artifacts["elf"], _sensor_text(app), timeout_s=180)
    assert run.returncode == 0, run.stderr[-1000:]
    logs = _check_run(app, run.serial)
    stats = [ln for ln in logs if ln.startswith("stm32f4: stack high-water")]
    assert len(stats) == 1 and stats[0].endswith("rx overruns 0"), logs
    assert int(stats[0].split()[3]) < get("netduinoplus2").stack_kb * 1024


def _mps2_run(app: str, board: str, tmp_path: Path) -> None:
    require_tool("qemu-system-arm")
    from shared.tiny.targets import run_qemu

    res = _board_build(app, board)
    assert res.artifacts["elf"].name == f"{app}.elf" and res.size.fits()
    sensors = tmp_path / "windows.txt"
    sensors.write_bytes(_sensor_text(app))
    run = run_qemu(res.artifacts["elf"], ["--input", str(sensors), "--device", DEVICE, "--seq-start", "0"],
                   timeout_s=180, machine=res.board.qemu_machine)
    assert run.returncode == 0, run.stderr[-1000:]
    _check_run(app, run.serial)


@pytest.mark.parametrize("board", ["mps2-an500", "mps2-an505"])
def test_eeg_app_image_on_cortex_m7_and_m33(board, tmp_path):
    """The M7 (AN500) and M33 (AN505, Secure state, UART0 at 0x50200000) app images, one app in the default run."""
    _mps2_run("metaverse_eeg", board, tmp_path)


@pytest.mark.slow  # a build per app per core; .ci/run runs it
@pytest.mark.parametrize("board", ["mps2-an500", "mps2-an505"])
@pytest.mark.parametrize("app", [a for a in APPS if a != "metaverse_eeg"])
def test_every_app_image_on_cortex_m7_and_m33(app, board, tmp_path):
    _mps2_run(app, board, tmp_path)


@pytest.mark.broker
@pytest.mark.parametrize("app, board", [("industrial_iot", "netduinoplus2"), ("metaverse_eeg", "mps2-an505"),
                                        pytest.param("metaverse_eeg", "netduinoplus2", marks=pytest.mark.slow)])
def test_gateway_carries_the_boards_messages_to_mosquitto(app, board, mosquitto, tmp_path):
    """The STM32F405's USART, and the M33's UART0 (Secure alias 0x50200000), through the gateway to the broker."""
    require_tool("qemu-system-arm")
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    res = _board_build(app, board)
    got: list = []
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"board-sub-{time.monotonic_ns()}",
                      protocol=paho.MQTTv311)
    sub.on_message = lambda c, u, m: got.append(m)
    sub.connect("127.0.0.1", mosquitto.port)
    sub.subscribe(f"tinylarge/{app}/{DEVICE}/#", qos=1)
    sub.loop_start()
    time.sleep(0.3)
    sensors = tmp_path / "w.txt"
    sensors.write_bytes(_sensor_text(app))
    try:
        gw = subprocess.run([sys.executable, "-m", "shared.tiny.firmware", "gateway", "--qemu",
                             str(res.artifacts["elf"]), "--board", board, "--qemu-input", str(sensors),
                             "--qemu-args", f"--device {DEVICE} --seq-start 0",
                             "--mqtt", mosquitto.url, "--domain", app, "--client-id", f"gw-{app}-{board}"],
                            capture_output=True, text=True, timeout=200, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        assert gw.returncode == 0, gw.stderr[-1500:]
        end = time.monotonic() + 10
        while time.monotonic() < end and sum(m.topic.endswith("/inference") for m in got) < _n(app):
            time.sleep(0.05)
    finally:
        sub.loop_stop()
        sub.disconnect()
    summary = json.loads(gw.stdout)
    assert summary["counts"]["forwarded_inference"] == _n(app) and summary["counts"]["all_acked"] == 1
    _assert_same(app, [json.loads(m.payload) for m in got if m.topic.endswith("/inference")], _host_messages(app))
