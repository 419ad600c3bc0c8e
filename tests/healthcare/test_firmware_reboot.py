"""Issue 13 item 3 for the C firmware: a host firmware wearable that is killed and started again keeps
every reading, through the real broker, the healthcare service and SQLite.

Before the fix the firmware counted ``seq`` from 0 at every start, so after a restart each new reading
reused a stored (device, seq): the service dead-lettered it as a ``seq conflict`` and stored none of
them. Now :class:`FirmwareFleet` provisions ``--seq-start`` (``boot_seq()``) at each start, and the app
itself starts from its epoch clock (``now_ms x 1000``) when nothing is provisioned.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from healthcare.signals import CohortConfig, simulate_cohort
from shared.protocol.messages import SEQ_PER_MS
from shared.runtime.firmware_fleet import FirmwareFleet, ticks
from shared.transport.mqtt import MqttClient, MqttConfig
from tests._tools import require_tool
from tests.fixtures.mqtt import wait_for
from tests.shared._support import uid

pytestmark = [pytest.mark.firmware, pytest.mark.broker]

PER_BOOT = 6  # windows each boot publishes


def _fleet(mqtt_url: str, patient, models: Path, day0_ms: int, workdir: Path, builds: dict | None):
    from healthcare.device import admission_epoch_ms

    fw = FirmwareFleet("healthcare", mqtt_url, [patient], models, day0_ms, workdir, start_ms=admission_epoch_ms)
    if builds:
        fw.builds = builds  # the same image as before the reset
    return fw


def test_host_firmware_restart_keeps_every_reading(quick_models: Path, mosquitto, tmp_path: Path) -> None:
    from shared.runtime.cloud import run_cloud
    from shared.runtime.fleet import utc_midnight_ms

    require_tool("make")
    require_tool("gcc")
    patient = simulate_cohort(CohortConfig(n_patients=1, duration_h=1.0, seed=23))[0]
    device = patient.id
    all_ticks = ticks(patient.cfg)
    assert len(all_ticks) >= 2 * PER_BOOT
    day0_ms = utc_midnight_ms(days_ago=1)
    dead: list[dict] = []
    lock = threading.Lock()

    def on_dead(_topic: str, payload: bytes) -> None:
        with lock:
            dead.append(json.loads(payload))

    dl = MqttClient(MqttConfig(url=mosquitto.url, client_id=uid("reboot-dl"), clean_session=True))
    dl.start()
    dl.subscribe("tinylarge/_deadletter/healthcare", on_dead)
    try:
        with run_cloud("healthcare", None, mosquitto.url, f"sqlite:///{tmp_path / 'store.db'}", quick_models,
                       client_id=uid("reboot-svc")) as cloud:
            def stored() -> list[int]:
                return [p.seq for p in cloud.store.query("inference", device)]

            # first boot: publish, then a reset (SIGKILL: no offline status, nothing flushed)
            first = _fleet(mosquitto.url, patient, quick_models, day0_ms, tmp_path / "fw", None)
            first.start()
            for t_s in all_ticks[:PER_BOOT]:
                first.step_all(t_s)
            assert wait_for(lambda: len(stored()) == PER_BOOT, 30), stored()
            proc = first.devices[0].proc
            assert proc is not None
            proc.kill()
            proc.wait()
            first._kill_all()
            before = stored()

            # second boot: the same device, the same image, the readings that follow
            second = _fleet(mosquitto.url, patient, quick_models, day0_ms, tmp_path / "fw", first.builds)
            second.start()
            for t_s in all_ticks[PER_BOOT:2 * PER_BOOT]:
                second.step_all(t_s)
            assert second.stop() == PER_BOOT
            assert wait_for(lambda: len(stored()) >= 2 * PER_BOOT and cloud.service.idle, 30), stored()
            time.sleep(0.3)  # a dead letter for the last reading, if any
            rows = cloud.store.query("inference", device)
    finally:
        dl.stop()

    s1, s2 = first.devices[0].seq_start, second.devices[0].seq_start
    assert before == list(range(s1, s1 + PER_BOOT))
    assert s2 >= s1 + PER_BOOT, (s1, s2)
    assert [p.seq for p in rows] == [*range(s1, s1 + PER_BOOT), *range(s2, s2 + PER_BOOT)]
    start = first.start_ms[device]
    assert [p.ts_ms for p in rows] == [start + int(round(t * 1000)) for t in all_ticks[:2 * PER_BOOT]]
    with lock:
        mine = [d["reason"] for d in dead if f"/{device}/" in d["topic"]]
    assert mine == []


def test_unprovisioned_firmware_counts_from_its_epoch_clock(tmp_path: Path) -> None:
    """Without --seq-start the host app starts at now_ms x SEQ_PER_MS (the Python devices' boot_seq), so a
    second run continues above the first; a malformed --seq-start is refused with its name."""
    import subprocess

    from shared.tiny.frames import FrameDecoder
    from tests.firmware import _fw

    app = _fw.built("host").artifacts["app"]

    def run(*extra: str) -> tuple[int, list[int], str]:
        t0 = int(time.time() * 1000) * SEQ_PER_MS
        proc = subprocess.run([str(app), "--input", str(_fw.sensor_file()), "--device", "rb-1", *extra],
                              capture_output=True, timeout=60)
        dec = FrameDecoder()
        msgs = [f.message() for f in dec.feed(proc.stdout)]
        seqs = [json.loads(body)["seq"] for stream, body in msgs if stream == "inference"]
        return t0, seqs, proc.stderr.decode(errors="replace")

    t0, seqs, _ = run()
    n = len(_fw.windows())
    assert len(seqs) == n
    assert seqs == list(range(seqs[0], seqs[0] + n))
    assert t0 <= seqs[0] <= int(time.time() * 1000) * SEQ_PER_MS
    time.sleep(0.01)
    _, again, _ = run()
    assert again[0] > seqs[-1]
    _, given, _ = run("--seq-start", "42")
    assert given == list(range(42, 42 + n))
    for bad in ("-1", "x1", "9007199254740992"):
        _, none, err = run("--seq-start", bad)
        assert none == [] and "--seq-start" in err, (bad, err)
