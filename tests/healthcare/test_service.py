"""The healthcare cloud service: history per patient, NEWS2 beside the transformer, restarts.

The predictor is the real risk transformer (quick-trained); the store is the real SQLite backend.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from healthcare.device import chart_message, inference_message
from healthcare.service import HealthcareService, ServiceConfig
from healthcare.signals import LABELS, ChartObs
from shared.protocol.messages import parse_topic, topic
from shared.storage.factory import open_store

T0_MS = 1_763_700_000_000


@pytest.fixture()
def predictor(quick_models):
    from healthcare.large import RiskPredictor

    return RiskPredictor.load(quick_models / "large")


def _inference(device: str, seq: int, hr: float | None = 80.0, spo2: float = 97.0) -> dict:
    vitals = {"hr_bpm": hr, "hrv_rmssd_ms": 30.0, "hrv_sdnn_ms": 40.0, "spo2_pct": spo2, "rr_bpm": 16.0,
              "temp_c": 36.8, "motion_g": 0.01, "quality": 0.95}
    scores = dict.fromkeys(LABELS, 0.0) | {"normal": 1.0}
    return inference_message(device, seq, T0_MS + seq * 300_000, "hc-tiny@1", 30.0, vitals, "normal", scores)


def _service(tmp_path: Path, predictor, published: list, threshold: float = 0.5) -> HealthcareService:
    store = open_store(f"sqlite:///{tmp_path / 'svc.db'}")
    ward = frozenset(f"p{i:03d}" for i in range(100))  # the deployment's patients: their charts are stored
    return HealthcareService(store, predictor, lambda d, s, m: published.append((d, s, m)),
                             ServiceConfig(alert_threshold=threshold, subjects=ward))


def _deliver(svc: HealthcareService, stream: str, msg: dict) -> None:
    handler = svc.handlers()[stream]
    handler(parse_topic(topic("healthcare", msg["device"], stream)), msg)


def test_each_window_is_stored_scored_once_and_redelivery_is_ignored(tmp_path, predictor):
    published: list = []
    svc = _service(tmp_path, predictor, published)
    for seq in range(5):
        _deliver(svc, "inference", _inference("p001", seq))
    _deliver(svc, "inference", _inference("p001", 3))  # redelivered after a reconnect
    assert svc.counts["duplicates"] == 1
    assert len(svc.patients["p001"].steps) == 5
    assert svc.score_due() == 5  # one batch: every window scored once, each on the history up to it
    assert svc.store.count("vitals") == svc.store.count("inference") == svc.store.count("risk") == 5
    assert [(d, s, m["source_seq"], m["windows"]) for d, s, m in published] == [
        ("p001", "risk", seq, seq + 1) for seq in range(5)]
    assert all(0.0 <= m["risk"] <= 1.0 for _, _, m in published)
    assert all(m["news2"] is None for _, _, m in published)  # no chart: NEWS2 needs blood pressure
    svc.store.close()


def test_news2_beside_risk_uses_the_latest_chart_and_device_vitals(tmp_path, predictor):
    published: list = []
    svc = _service(tmp_path, predictor, published)
    obs = ChartObs("p002", 10.0, sbp_mmhg=95.0, consciousness="A", on_oxygen=True, rr_bpm=22.0, temp_c=38.4)
    _deliver(svc, "chart", chart_message("p002", 0, T0_MS, obs))
    _deliver(svc, "inference", _inference("p002", 0, hr=118.0, spo2=93.0))
    svc.score_due()
    msg = published[-1][2]
    # RR 16 from the device (0), SpO2 93 (2), oxygen (2), SBP 95 (2), HR 118 (2), alert (0), temp 36.8 (0)
    assert msg["news2"] == 8 and msg["news2_band"] == "high"
    svc.store.close()


def test_alert_fires_once_after_three_windows_above_threshold(tmp_path, predictor):
    published: list = []
    svc = _service(tmp_path, predictor, published, threshold=0.0)  # every risk is at or above zero
    for seq in range(5):
        _deliver(svc, "inference", _inference("p003", seq))
        svc.score_due()
    assert [m["alert"] for _, _, m in published] == [False, False, True, False, False]
    assert svc.counts["alerts"] == 1
    svc.store.close()


def test_a_restarted_service_rebuilds_history_from_the_store(tmp_path, predictor):
    published: list = []
    svc = _service(tmp_path, predictor, published)
    obs = ChartObs("p004", 10.0, sbp_mmhg=120.0, consciousness="A", on_oxygen=False, rr_bpm=16.0, temp_c=36.8)
    _deliver(svc, "chart", chart_message("p004", 0, T0_MS, obs))
    for seq in range(7):
        _deliver(svc, "inference", _inference("p004", seq))
    before = np.stack(list(svc.patients["p004"].steps))
    svc.store.close()

    again: list = []
    svc2 = _service(tmp_path, predictor, again)
    assert svc2.rebuild() == 7
    p = svc2.patients["p004"]
    assert p.last_seq == 6 and p.extra["chart"]["sbp_mmhg"] == 120.0
    np.testing.assert_allclose(np.stack(list(p.steps)), before, atol=1e-6)
    _deliver(svc2, "inference", _inference("p004", 6))  # the unacknowledged last one, redelivered
    assert svc2.counts["duplicates"] == 1 and svc2.idle
    _deliver(svc2, "inference", _inference("p004", 7))
    assert svc2.score_due() == 1 and again[-1][2]["windows"] == 8
    svc2.store.close()


@pytest.mark.broker
def test_service_killed_mid_stream_and_restarted_loses_nothing_and_stores_nothing_twice(
        tmp_path, quick_models, mosquitto_factory):
    """SIGKILL the real `tinylarge serve healthcare` process while devices publish; restart it."""
    from shared.runtime.app import publisher
    from shared.transport.mqtt import MqttClient, MqttConfig

    broker = mosquitto_factory(persistence=True)
    db = tmp_path / "kill.db"
    cmd = [sys.executable, "-m", "shared.cli", "serve", "healthcare", "--mqtt", broker.url,
           "--store", f"sqlite:///{db}", "--models", str(quick_models), "--client-id", "svc-kill-test", "--quick"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def start() -> subprocess.Popen:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for line in proc.stdout:  # wait until it is subscribed
            if line.startswith("serving healthcare"):
                return proc
        raise AssertionError(f"service did not start (exit {proc.wait()})")

    def stored() -> int:
        if not db.exists():
            return 0
        with sqlite3.connect(db) as con:
            return con.execute("select count(*) from points where measurement='inference'").fetchone()[0]

    devices, per_device = [f"k{i:02d}" for i in range(10)], 40
    client = MqttClient(MqttConfig(url=broker.url, client_id="kill-test-devices"))
    client.start()
    publish = publisher(client, "healthcare")
    service = start()
    try:
        for seq in range(per_device):
            for d in devices:
                publish(d, "inference", _inference(d, seq))
            if seq == per_device // 3:
                deadline = time.monotonic() + 30
                while stored() == 0 and time.monotonic() < deadline:
                    time.sleep(0.05)
                service.send_signal(signal.SIGKILL)  # mid-stream, no goodbye
                service.wait()
            if seq == 2 * per_device // 3:
                service = start()
        assert client.wait_all_acked(30)
        total = len(devices) * per_device
        deadline = time.monotonic() + 60
        while stored() < total and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        client.stop()
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=30)
    with sqlite3.connect(db) as con:
        rows = con.execute("select device, seq from points where measurement='inference'").fetchall()
    assert len(rows) == total, f"stored {len(rows)} of {total}"
    assert set(rows) == {(d, s) for d in devices for s in range(per_device)}


def test_the_service_reports_its_counts_on_its_retained_status(tmp_path, quick_models, embedded_broker):
    """Every stage's counts (received, accepted, dead-lettered, stored ...) reach the status topic."""
    import argparse
    import json
    import threading

    from shared.runtime.app import publisher
    from shared.runtime.cloud import run_cloud
    from shared.transport.mqtt import MqttClient, MqttConfig

    seen: list[dict] = []
    got_offline = threading.Event()

    def on_status(_topic: str, payload: bytes) -> None:
        msg = json.loads(payload)
        seen.append(msg)
        if msg["state"] == "offline":
            got_offline.set()

    watcher = MqttClient(MqttConfig(url=embedded_broker, client_id="status-watcher", clean_session=True))
    watcher.start()
    watcher.subscribe("tinylarge/healthcare/cloud/status", on_status)
    args = argparse.Namespace(ca=None, cert=None, key=None)
    with run_cloud("healthcare", args, embedded_broker, f"sqlite:///{tmp_path / 's.db'}", quick_models,
                   client_id="status-svc") as cloud:
        devices = MqttClient(MqttConfig(url=embedded_broker, client_id="status-devices"))
        devices.start()
        publish = publisher(devices, "healthcare")
        for seq in range(3):
            publish("p010", "inference", _inference("p010", seq))
        devices.publish("tinylarge/healthcare/p010/inference", b"{broken", qos=1)
        assert devices.wait_all_acked(10)
        devices.stop()
        deadline = time.monotonic() + 20
        while cloud.consumer.counts.get("received", 0) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert got_offline.wait(10)
    watcher.stop()
    final = seen[-1]["counts"]
    assert (final["received"], final["accepted"], final["deadletters"]) == (4, 3, 1)
    assert final["scored"] >= 1 and final["dropped"] == 0
    assert final["stored_points"] == 2 * 3 + final["scored"]  # vitals + inference per window, one risk per scoring


def test_a_batch_is_stored_in_one_write_and_treated_as_one_by_one(tmp_path, predictor):
    """on_inference_batch: one store transaction, then the same history, dedup and scoring as on_inference."""
    msgs = [_inference(d, seq, hr=70.0 + seq) for seq in range(4) for d in ("p020", "p021")]
    (tmp_path / "one").mkdir()
    (tmp_path / "many").mkdir()
    one: list = []
    single = _service(tmp_path / "one", predictor, one)
    for msg in msgs:
        _deliver(single, "inference", msg)
    many: list = []
    batched = _service(tmp_path / "many", predictor, many)
    writes: list[int] = []
    write = batched.store.write

    def counted_write(points: list) -> int:  # the real write, counted: one call is one transaction
        writes.append(len(points))
        return write(points)

    batched.store.write = counted_write
    batched.batch_handlers()["inference"]([(parse_topic(topic("healthcare", m["device"], "inference")), m)
                                           for m in msgs])
    assert writes == [2 * len(msgs)]  # vitals + inference of every message in ONE write
    for device in ("p020", "p021"):
        np.testing.assert_array_equal(np.stack(list(batched.patients[device].steps)),
                                      np.stack(list(single.patients[device].steps)))
    assert batched.counts["inferences"] == single.counts["inferences"] == len(msgs)
    assert batched.score_due() == single.score_due() == len(msgs)
    assert [(d, m["source_seq"], m["windows"]) for d, _, m in many] == [
        (d, m["source_seq"], m["windows"]) for d, _, m in one]
    # a redelivered batch (after a restart) is recognised message by message: nothing twice in history
    writes.clear()
    redelivered = [(parse_topic(topic("healthcare", m["device"], "inference")), m) for m in msgs[-3:]]
    batched.on_inference_batch([*redelivered, (redelivered[0][0], _inference("p021", 4))])
    assert batched.counts["duplicates"] == 3 and batched.counts["inferences"] == len(msgs) + 1
    assert len(batched.patients["p021"].steps) == 5 and batched.store.count("inference") == len(msgs) + 1
    for svc in (single, batched):
        svc.store.close()


def test_a_withheld_hr_is_stored_with_its_flag_and_news2_keeps_the_last_valid_one(tmp_path, predictor):
    """Issue 23 item 11: a window whose beats are poor carries HR and HRV null with hr_quality "low". The
    service stores the flag beside the vitals, does not take the null for a reading (NEWS2 scores the HR
    of the last good window, 5 min before) and rebuilds the same history after a restart."""
    published: list = []
    svc = _service(tmp_path, predictor, published)
    obs = ChartObs("p005", 10.0, sbp_mmhg=120.0, consciousness="A", on_oxygen=False, rr_bpm=16.0, temp_c=36.8)
    _deliver(svc, "chart", chart_message("p005", 0, T0_MS, obs))
    _deliver(svc, "inference", _inference("p005", 0, hr=135.0))  # HR 135: NEWS2 3 points
    low = _inference("p005", 1, hr=None)
    low["vitals"].update(hrv_rmssd_ms=None, hrv_sdnn_ms=None)
    assert low["hr_quality"] == "low"
    _deliver(svc, "inference", low)
    svc.score_due()
    assert [m["news2"] for _, _, m in published] == [3, 3]  # the withheld window keeps the carried HR
    stored = {pt.seq: pt.fields for pt in svc.store.query("vitals", "p005")}
    assert stored[0]["hr_quality"] == "good" and stored[0]["hr_bpm"] == 135.0
    assert stored[1]["hr_quality"] == "low" and stored[1].get("hr_bpm") is None  # the store drops nulls
    before = np.stack(list(svc.patients["p005"].steps))
    svc.store.close()
    svc2 = _service(tmp_path, predictor, [])
    assert svc2.rebuild() == 2
    np.testing.assert_allclose(np.stack(list(svc2.patients["p005"].steps)), before, atol=1e-6)
    assert svc2.patients["p005"].extra["vitals"]["hr_bpm"][0] == 135.0
    svc2.store.close()
