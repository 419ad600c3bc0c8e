"""Firmware targets: the host build is warning-free, the Cortex-M4 image runs under QEMU and emits
framed messages that validate, and the Cortex-M0+ build shows the integer inference path's size."""

from __future__ import annotations

import re
import subprocess

import pytest

from shared.protocol import messages
from shared.tiny.firmware import FrameDecoder, run_qemu
from tests._tools import require_tool
from tests.firmware import _fw

pytestmark = pytest.mark.firmware


def _messages(serial: bytes) -> list[tuple[str, dict]]:
    dec = FrameDecoder()
    out = []
    for frame in dec.feed(serial):
        stream, body = frame.message()
        out.append((stream, messages.decode("healthcare", stream, body)))
    assert dec.bad == 0
    return out


def test_host_build_is_warning_free_under_werror():
    res = _fw.built("host")
    assert res.artifacts["app"].exists()
    # the Makefile compiles with -Wall -Wextra -Werror -Wshadow: rebuilding from scratch must print nothing
    app = res.artifacts["app"]
    app.unlink()
    from shared.tiny.firmware import make

    make("host", res.model_dir, res.models, res.out_dir, "healthcare")
    assert app.exists()


def test_the_makefile_builds_an_app_from_any_folder_and_names_what_is_missing(tmp_path):
    """APP_DIR is a folder anywhere (a domain's package, installed or not): the app builds from a copy of
    healthcare/firmware outside the repository; a missing or empty folder is named."""
    import shutil

    from shared.domain import get
    from shared.tiny.firmware import FIRMWARE_DIR

    res = _fw.built("host")
    app = tmp_path / "elsewhere" / "firmware"
    shutil.copytree(get("healthcare").firmware_dir, app)
    base = ["make", "-s", "-C", str(FIRMWARE_DIR), "host", f"MODEL_DIR={res.model_dir}",
            f"MODELS={' '.join(res.models)}", f"OUT={tmp_path / 'out'}"]
    done = subprocess.run([*base, f"APP_DIR={app}"], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr, done.stderr
    assert (tmp_path / "out" / "app").exists()
    for extra, needle in (([], "APP_DIR is required for host"),
                          ([f"APP_DIR={tmp_path / 'nope'}"], "no such folder"),
                          ([f"APP_DIR={tmp_path}"], "no *.c in")):
        bad = subprocess.run([*base, *extra], capture_output=True, text=True)
        assert bad.returncode != 0 and needle in bad.stderr, bad.stderr


def test_host_app_frames_validate():
    app = _fw.built("host").artifacts["app"]
    out = subprocess.run([str(app), "--input", str(_fw.sensor_file()), "--device", _fw.DEVICE, "--seq-start", "0"],
                         capture_output=True, timeout=60, check=True)
    msgs = _messages(out.stdout)
    streams = [s for s, _ in msgs]
    assert streams[0] == "status" and streams[-1] == "status"
    assert streams.count("inference") == len(_fw.windows())
    assert msgs[0][1]["state"] == "online" and msgs[-1][1]["state"] == "offline"
    assert msgs[-1][1]["counts"]["published"] == len(_fw.windows())
    inf = [m for s, m in msgs if s == "inference"]
    assert [m["seq"] for m in inf] == list(range(len(inf)))
    assert inf[0]["ts"] == _fw.START_MS + int(_fw.windows()[0].t_end_s * 1000)
    assert all(m["device"] == _fw.DEVICE and m["model"] == _fw.MODEL_ID for _, m in msgs)


def test_cortex_m4_under_qemu_emits_the_same_messages_as_the_host():
    require_tool("qemu-system-arm")
    elf = _fw.built("cortex-m4").artifacts["app.elf"]
    run = run_qemu(elf, ["--input", str(_fw.sensor_file()), "--device", _fw.DEVICE, "--seq-start", "0"], timeout_s=120)
    assert run.returncode == 0, run.stderr
    m4 = [m for s, m in _messages(run.serial) if s == "inference"]
    host_out = subprocess.run([str(_fw.built("host").artifacts["app"]), "--input", str(_fw.sensor_file()),
                               "--device", _fw.DEVICE, "--seq-start", "0"], capture_output=True, timeout=60,
                              check=True).stdout
    host = [m for s, m in _messages(host_out) if s == "inference"]
    assert len(m4) == len(host) == len(_fw.windows())
    for a, b in zip(m4, host, strict=True):
        assert a["class"] == b["class"] and a["seq"] == b["seq"] and a["ts"] == b["ts"]
        for k, v in b["vitals"].items():
            assert (v is None) == (a["vitals"][k] is None), k
            if v is not None:
                assert abs(a["vitals"][k] - v) <= 0.011 + 1e-3 * abs(v), (k, a["vitals"][k], v)
        for k, p in b["scores"].items():
            assert abs(a["scores"][k] - p) <= 0.0040, k  # at most one int8 output step apart


def test_cortex_m0plus_inference_builds_without_fpu(capsys):
    res = _fw.built("cortex-m0plus")
    size_txt = res.artifacts["model_runtime.size"].read_text()
    total = re.search(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+\d+\s+\w+\s+\(TOTALS\)", size_txt, re.M)
    assert total, size_txt
    text, data, bss = (int(g) for g in total.groups())
    assert text > 0
    objdump = require_tool("arm-none-eabi-objdump")
    dis = subprocess.run([objdump, "-d", str(res.artifacts["model_runtime.a"])], capture_output=True, text=True,
                         check=True).stdout
    assert not re.search(r"\tv(add|mul|ldr|str|mov|cvt)\.?", dis), "FPU instruction in a Cortex-M0+ build"
    nm = subprocess.run([require_tool("arm-none-eabi-nm"), "-u", str(res.artifacts["model_runtime.a"])],
                        capture_output=True, text=True, check=True).stdout
    soft = sorted({s.split()[-1] for s in nm.splitlines() if "__aeabi_f" in s or "__aeabi_i2f" in s})
    with capsys.disabled():
        print(f"\n[cortex-m0plus] model+runtime text={text} data={data} bss={bss} bytes; "
              f"soft-float helpers referenced: {', '.join(soft) or 'none'}")
