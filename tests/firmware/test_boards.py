"""Boards as data (shared/tiny/boards.py) and the STM32F4 target: the table's rows are consistent, a board build
writes .elf/.bin/.hex with a size report and refuses an image that does not fit, the flash command is the right one
for each probe (openocd parses each row's configuration), and the STM32F405 image under QEMU -M netduinoplus2 reads
its sensor windows from the emulated USART and writes the host build's messages on it, through the gateway into
Mosquitto. Windows from flash (the self-contained demo) give the same messages."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time

import pytest

from shared.protocol import messages
from shared.tiny.boards import BOARDS, CORES, STM32_USARTS, Board, get
from shared.tiny.frames import KIND_LOG, FrameDecoder
from tests._tools import require_tool
from tests.firmware import _fw

pytestmark = pytest.mark.firmware
DEVICE = "stm32-dev-1"
N_WINDOWS = 3  # ~3 s each through the emulated USART (tlsensor text at ~20 KB/s under QEMU)


# ---- the table -------------------------------------------------------------------------------------

def test_every_row_validates_and_names_its_target():
    for b in BOARDS.values():
        b.validate()
        assert b.core in CORES and b.dsp and b.fpu
        v = b.make_vars()
        assert f"-mcpu={CORES[b.core]['cpu']}" in v["BOARD_ARCH"]
        assert int(v["FLASH_KB"]) == b.flash_kb and int(v["RAM_KB"]) == b.ram_kb
        if b.family == "stm32f4":
            assert b.pll_hz() == b.clock_hz and b.usart in STM32_USARTS and b.flash_origin == 0x0800_0000
            assert "-DTL_BOARD_USART=" in v["BOARD_DEFS"] and (b.openocd and b.pyocd)
    assert {"netduinoplus2", "mps2-an500", "mps2-an505"} <= set(BOARDS)
    assert {BOARDS["mps2-an500"].core, BOARDS["mps2-an505"].core} == {"cortex-m7", "cortex-m33"}
    assert any(b.part.startswith(("STM32F407", "STM32F401")) and not b.qemu_machine for b in BOARDS.values())


@pytest.mark.parametrize("change, match", [
    ({"pll": (8, 336, 3, 7)}, "outside RM0090"),
    ({"pll": (4, 336, 2, 7)}, "PLL input"),
    ({"clock_hz": 100_000_000}, "gives 168000000 Hz"),
    ({"console": "USART3"}, "USART3"),
    ({"apb1_div": 2}, "APB1"),
    ({"core": "cortex-m85"}, "core"),
    ({"stack_kb": 4096}, "stack_kb"),
])
def test_an_inconsistent_row_is_refused(change, match):
    bad = dataclasses.replace(get("stm32f4-discovery"), **change)
    with pytest.raises(ValueError, match=match):
        bad.validate()


def test_unknown_board_is_named():
    with pytest.raises(ValueError, match="expected one of .*netduinoplus2"):
        get("arduino-uno")


# ---- flashing ------------------------------------------------------------------------------------

def test_flash_commands_per_probe(tmp_path):
    from shared.tiny.board_build import flash_command
    from shared.tiny.targets import FirmwareError

    elf = tmp_path / "healthcare.elf"
    assert flash_command("stm32f4-discovery", elf, "openocd") == [
        "openocd", "-f", "board/stm32f4discovery.cfg", "-c", f"program {elf} verify reset exit"]
    assert flash_command("netduinoplus2", elf, "openocd")[:5] == [
        "openocd", "-f", "interface/stlink.cfg", "-f", "target/stm32f4x.cfg"]
    assert flash_command("nucleo-f401re", elf, "pyocd") == ["pyocd", "flash", "--target", "stm32f401retx", str(elf)]
    assert flash_command("nucleo-f401re", elf, "st-flash") == [
        "st-flash", "--reset", "write", str(tmp_path / "healthcare.bin"), "0x8000000"]
    with pytest.raises(FirmwareError, match="microSD"):
        flash_command("mps2-an505", elf)
    with pytest.raises(FirmwareError, match="does not apply"):
        flash_command("netduinoplus2", elf, "st-flash")


def test_flash_cli_dry_run_prints_the_command(tmp_path):
    elf = tmp_path / "img.elf"
    elf.write_bytes(b"\x7fELF")
    cli = [sys.executable, "-m", "shared.tiny.firmware", "flash"]
    out = subprocess.run([*cli, "--board", "stm32f4-discovery", "--image", str(elf), "--tool", "pyocd", "--dry-run"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"pyocd flash --target stm32f407vg {elf}"
    missing = subprocess.run([*cli, "--board", "nucleo-f401re", "--app", "healthcare", "--out", str(tmp_path)],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "build it first" in missing.stderr
    mps2 = subprocess.run([*cli, "--board", "mps2-an500", "--image", str(elf), "--dry-run"],
                          capture_output=True, text=True, timeout=60)
    assert mps2.returncode == 2 and "microSD" in mps2.stderr


@pytest.mark.parametrize("name", [n for n, b in BOARDS.items() if b.openocd])
def test_openocd_knows_each_rows_configuration(name):
    """openocd reads the row's interface/target/board scripts and stops before touching a probe."""
    require_tool("openocd")
    cfg = [a for c in get(name).openocd.split() for a in ("-f", c)]
    res = subprocess.run(["openocd", *cfg, "-c", "shutdown"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr[-600:]
    bogus = subprocess.run(["openocd", "-f", "board/no_such_board.cfg", "-c", "shutdown"], capture_output=True,
                           text=True, timeout=30)
    assert bogus.returncode != 0


# ---- builds --------------------------------------------------------------------------------------

def _sensor_text(n: int = N_WINDOWS) -> bytes:
    from shared.tiny.firmware import write_windows

    path = _fw.workdir() / f"stm32_sensors_{n}.txt"
    if not path.exists():
        write_windows(path, "healthcare", _fw.windows()[:n], _fw.START_MS)
    return path.read_bytes()


@pytest.fixture(scope="module")
def stm32():
    require_tool("make")
    require_tool("arm-none-eabi-gcc")
    from shared.tiny.board_build import build_board
    from shared.tiny.targets import FirmwareModel

    return build_board("netduinoplus2", "healthcare", [FirmwareModel(_fw.model(), "hc_tiny", _fw.MODEL_ID)],
                       _fw.workdir() / "boards", fw_args=["--device", DEVICE, "--seq-start", "0"])


def test_board_build_writes_elf_bin_hex_and_a_size_report(stm32):
    a, size = stm32.artifacts, stm32.size
    assert all(a[k].exists() for k in ("elf", "bin", "hex", "map"))
    board = get("netduinoplus2")
    assert size.fits() and size.flash_total == 1024 * 1024 and size.ram_total == 128 * 1024
    assert a["bin"].stat().st_size == size.flash_used  # the .bin is the flash image: code + .data's load image
    words = a["bin"].read_bytes()[:8]
    sp, reset = int.from_bytes(words[:4], "little"), int.from_bytes(words[4:], "little")
    assert sp == board.ram_origin + board.ram_kb * 1024  # initial SP: top of SRAM
    assert reset & 1 and board.flash_origin < reset < board.flash_origin + size.flash_used  # Thumb, in flash
    hex_lines = a["hex"].read_text().split()
    assert hex_lines[0] == ":020000040800F2" and hex_lines[-1] == ":00000001FF"  # extended address 0x0800xxxx
    assert "netduinoplus2: flash" in size.text() and size.ram_free > 0


@pytest.mark.slow  # a full board build (~25 s on 2 cores); .ci/run runs it
def test_an_image_that_does_not_fit_is_refused(tmp_path):
    require_tool("arm-none-eabi-gcc")
    from shared.tiny.board_build import build_board
    from shared.tiny.targets import FirmwareError, FirmwareModel

    tiny = dataclasses.replace(get("nucleo-f401re"), name="f401-16k", flash_kb=16)
    with pytest.raises(FirmwareError, match=r"does not fit board f401-16k .*FLASH \(16 KB\) overflowed by \d+ bytes"):
        build_board(tiny, "healthcare", [FirmwareModel(_fw.model(), "hc_tiny", _fw.MODEL_ID)], tmp_path)


def _frames(serial: bytes) -> tuple[list[tuple[str, dict]], list[str]]:
    dec = FrameDecoder()
    msgs, logs = [], []
    for frame in dec.feed(serial):
        if frame.kind == KIND_LOG:
            logs.append(frame.payload.decode())
            continue
        stream, body = frame.message()
        msgs.append((stream, messages.decode("healthcare", stream, body)))
    assert dec.bad == 0 and dec.skipped_bytes == 0
    return msgs, logs


def _host_inference(text: bytes) -> list[dict]:
    app = _fw.built("host").artifacts["app"]
    out = subprocess.run([str(app), "--input", "-", "--device", DEVICE, "--seq-start", "0"], input=text,
                         capture_output=True, timeout=60, check=True).stdout
    return [m for s, m in _frames(out)[0] if s == "inference"]


def _assert_same_messages(got: list[dict], want: list[dict]) -> None:
    """The Cortex-M4 test's tolerances (test_targets.py): same class/seq/ts, vitals to print precision, scores
    at most one int8 output step apart (x86-64 and the M4 FPU round the DSP's floats differently)."""
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert (a["class"], a["seq"], a["ts"], a["device"], a["model"]) == (
            b["class"], b["seq"], b["ts"], b["device"], b["model"])
        for k, v in b["vitals"].items():
            assert (v is None) == (a["vitals"][k] is None), k
            if v is not None:
                assert abs(a["vitals"][k] - v) <= 0.011 + 1e-3 * abs(v), (k, a["vitals"][k], v)
        for k, p in b["scores"].items():
            assert abs(a["scores"][k] - p) <= 0.0040, k


def test_stm32f405_under_qemu_reads_the_usart_and_writes_the_hosts_messages(stm32):
    require_tool("qemu-system-arm")
    from shared.tiny.board_build import run_board_qemu

    text = _sensor_text()
    run = run_board_qemu("netduinoplus2", stm32.artifacts["elf"], text, timeout_s=120)
    assert run.returncode == 0, run.stderr[-1000:]
    msgs, logs = _frames(run.serial)
    assert [s for s, _ in msgs] == ["status"] + ["inference"] * N_WINDOWS + ["status"]
    assert msgs[-1][1]["state"] == "offline" and msgs[-1][1]["counts"] == {
        "windows": N_WINDOWS, "published": N_WINDOWS, "errors": 0}
    _assert_same_messages([m for s, m in msgs if s == "inference"], _host_inference(text))
    # the shutdown log: the stack stayed inside its reserve, the clock is the row's, no byte was lost
    stats = [ln for ln in logs if ln.startswith("stm32f4: stack high-water")]
    assert len(stats) == 1, logs
    used, reserved = (int(x) for x in re.search(r"high-water (\d+) of (\d+) bytes", stats[0]).groups())
    assert 0 < used < reserved == get("netduinoplus2").stack_kb * 1024
    assert "sysclk 168000000 Hz" in stats[0] and stats[0].endswith("rx overruns 0")


@pytest.mark.slow  # a full board build (~25 s on 2 cores); .ci/run runs it
def test_windows_from_flash_give_the_same_messages(tmp_path):
    require_tool("qemu-system-arm")
    from shared.tiny.board_build import build_board, run_board_qemu
    from shared.tiny.targets import FirmwareModel

    text = _sensor_text(2)
    (tmp_path / "w.txt").write_bytes(text)
    res = build_board("netduinoplus2", "healthcare", [FirmwareModel(_fw.model(), "hc_tiny", _fw.MODEL_ID)], tmp_path,
                      fw_args=["--device", DEVICE, "--seq-start", "0"], sensor_file=tmp_path / "w.txt")
    assert res.size.flash_used > len(text)
    run = run_board_qemu("netduinoplus2", res.artifacts["elf"], b"", timeout_s=60)  # nothing on the USART's RX
    assert run.returncode == 0, run.stderr[-1000:]
    _assert_same_messages([m for s, m in _frames(run.serial)[0] if s == "inference"], _host_inference(text))


@pytest.mark.broker
def test_gateway_bridges_the_stm32_usart_to_mosquitto(stm32, mosquitto, tmp_path):
    require_tool("qemu-system-arm")
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    got: list = []
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"stm32-sub-{time.monotonic_ns()}",
                      protocol=paho.MQTTv311)
    sub.on_message = lambda c, u, m: got.append(m)
    sub.connect("127.0.0.1", mosquitto.port)
    sub.subscribe(f"tinylarge/healthcare/{DEVICE}/#", qos=1)
    sub.loop_start()
    time.sleep(0.3)
    sensors = tmp_path / "w.txt"
    sensors.write_bytes(_sensor_text())
    try:
        res = subprocess.run([sys.executable, "-m", "shared.tiny.firmware", "gateway", "--qemu",
                              str(stm32.artifacts["elf"]), "--board", "netduinoplus2", "--qemu-input", str(sensors),
                              "--mqtt", mosquitto.url, "--domain", "healthcare", "--client-id", "stm32-gw"],
                             capture_output=True, text=True, timeout=150, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        assert res.returncode == 0, res.stderr[-1500:]
        end = time.monotonic() + 10
        while time.monotonic() < end and sum(m.topic.endswith("/inference") for m in got) < N_WINDOWS:
            time.sleep(0.05)
    finally:
        sub.loop_stop()
        sub.disconnect()
    summary = json.loads(res.stdout)
    assert summary["counts"]["forwarded_inference"] == N_WINDOWS and summary["counts"]["all_acked"] == 1
    inf = [json.loads(m.payload) for m in got if m.topic.endswith("/inference")]
    _assert_same_messages(inf, _host_inference(_sensor_text()))


@pytest.mark.slow  # a full board build (~25 s on 2 cores); .ci/run runs it
def test_board_cli_builds_and_reports(tmp_path):
    require_tool("arm-none-eabi-gcc")
    model = _fw.model()
    res = subprocess.run([sys.executable, "-m", "shared.tiny.firmware", "build", "--board", "nucleo-f401re", "--app",
                          "healthcare", "--model", str(model), "--model-id", _fw.MODEL_ID, "--out", str(tmp_path),
                          "--device-args", "--device nucleo-1"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-1500:]
    lines = dict(ln.split(": ", 1) for ln in res.stdout.splitlines() if ln.split(":")[0] in ("elf", "bin", "hex"))
    assert all(os.path.exists(p) for p in lines.values())
    assert "nucleo-f401re: flash" in res.stdout and "/ 524288 B" in res.stdout and "/ 98304 B" in res.stdout
    both = subprocess.run([sys.executable, "-m", "shared.tiny.firmware", "build", "--board", "nucleo-f401re",
                           "--target", "host", "--app", "healthcare"], capture_output=True, text=True, timeout=60)
    assert both.returncode == 2 and "exclude each other" in both.stderr


def test_a_board_object_is_a_row_not_code():
    """A new board is a Board(...) row: a copy of a row with another name and memory builds without new files."""
    row = dataclasses.replace(get("nucleo-f401re"), name="my-f411", part="STM32F411RE", ram_kb=128)
    assert isinstance(row, Board) and row.make_vars()["RAM_KB"] == "128"
