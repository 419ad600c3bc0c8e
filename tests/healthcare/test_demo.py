"""End to end: wearables -> embedded broker -> service -> SQLite, through the real CLI entry point."""

from __future__ import annotations

import json
import sqlite3

import pytest


@pytest.mark.firmware
def test_demo_stores_every_published_window_once_and_deadletters_the_bad(quick_models, tmp_path):
    """4 wearables: 2 simulated in Python, 1 C firmware on the host, 1 Cortex-M4 under QEMU via the gateway."""
    from shared.cli import main

    out = tmp_path / "demo"
    code = main(["demo", "healthcare", "--quick", "--models", str(quick_models), "--firmware", "2", "--qemu", "1",
                 "--out", str(out), "--store", f"sqlite:///{tmp_path / 'demo.db'}"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    windows_per_patient = int((6 * 3600 - 30) // 300) + 1
    assert summary["published"] == 4 * windows_per_patient
    assert summary["stored"] == summary["published"]
    assert summary["received"] == summary["published"]
    assert summary["deadletters"] == summary["deadletters_injected"] == 3
    assert summary["devices"] == 4 and summary["simulated_h"] == 6
    assert summary["risk_messages"] == summary["published"]
    # the live loop: the student distilled mid-run reached every simulated wearable's second slot (the
    # factory classifier stays in the first: its scores feed the cloud's transformer); the forged copy was refused
    assert summary["published_by_firmware"] == 2 * windows_per_patient
    assert summary["model_updates_accepted"] == 2  # the simulated wearables (firmware reflashes from its slot)
    assert summary["model_updates_rejected"] == 1
    assert summary["active_models"] == ["hc-tiny@1"]
    assert summary["live_loop"] == "closed" and summary["live_loop_devices_installed"] == 2
    assert summary["model_before"].startswith("hc-tiny@1 sha256:")
    assert summary["model_after"].startswith("healthcare-risk-tiny@1 sha256:")
    assert summary["charts"] == summary["site_messages"] > 0
    assert summary["p50_ms"] is not None and summary["p99_ms"] >= summary["p50_ms"]
    for key in ("devices", "alerts", "tiny_float_acc", "tiny_int8_acc", "risk_auroc", "news2_auroc",
                "lead_time_min"):
        assert key in summary
    assert (out / summary["plot"].split("/")[-1]).stat().st_size > 10_000
    # count straight from the database file: one inference and one vitals row per published window
    with sqlite3.connect(tmp_path / "demo.db") as db:
        rows = dict(db.execute("select measurement, count(*) from points group by measurement").fetchall())
        devices = {r[0] for r in db.execute("select distinct device from points where measurement='inference'")}
    assert rows["inference"] == rows["vitals"] == summary["published"]
    assert rows["risk"] == summary["risk_messages"] == summary["published"]  # one risk per window
    assert devices == {f"p{i:03d}" for i in range(4)}


@pytest.mark.firmware
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_stopped_demo_leaves_no_firmware_process_behind(quick_models, tmp_path, sig, request):
    """SIGTERM or Ctrl-C to a demo's own PID while its host and QEMU firmware run: one line, and no process
    with the demo's folder on its command line is left (the QEMU image, the host app)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests._tools import require_tool

    require_tool("qemu-system-arm")
    request_cleanup: list = []
    request.addfinalizer(lambda: [f() for f in request_cleanup])
    out = tmp_path / "demo"
    proc = subprocess.Popen([sys.executable, "-m", "shared.cli", "demo", "healthcare", "--quick", "--models",
                             str(quick_models), "--firmware", "2", "--qemu", "1", "--out", str(out), "--speed",
                             "30", "--no-dashboard"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TINYLARGE_DEBUG": "0"})

    def ours() -> list[str]:
        ps = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True).stdout.splitlines()
        return [ln for ln in ps if str(out) in ln]

    def kill_ours() -> None:  # a failing run must not leave its demo running either
        for ln in ours():
            try:
                os.kill(int(ln.split()[0]), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass

    request_cleanup.append(kill_ours)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not any("qemu-system-arm" in ln for ln in ours()):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.5)
    assert any("qemu-system-arm" in ln for ln in ours()), "QEMU never started"
    time.sleep(2.0)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (130, -signal.SIGTERM, -signal.SIGINT), err[-2000:]
    assert "tinylarge: interrupted" in err and "Traceback" not in err, err[-2000:]
    time.sleep(1.0)
    assert ours() == []
