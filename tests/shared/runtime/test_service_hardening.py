"""Issue 13 items 3, 4 and 6 through the real pipeline: Mosquitto -> consumer -> healthcare service -> SQLite.

* item 6: a late message followed by a redelivery of a newer one gets no second result (every window
  exactly one ``risk``): the service's clock no longer moves backwards on a late message;
* item 4: a message dated beyond the skew window (default 300 s ahead) is dead-lettered; NEWS2's
  freshness test ignores vitals dated after the latest message;
* item 3: a different message under an existing (device, seq) (a device restarted its counter) is
  dead-lettered as a ``seq conflict``; a true redelivery (same content) is absorbed silently.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from healthcare.device import inference_message
from healthcare.signals import LABELS
from shared.runtime.service import Subject
from shared.transport.consumer import Publisher
from shared.transport.mqtt import MqttClient, MqttConfig
from tests.fixtures.mqtt import wait_for
from tests.shared._support import uid

pytestmark = pytest.mark.broker

T0_MS = int(time.time() * 1000) - 3_600_000  # an hour ago: inside every plausibility window


def _msg(device: str, seq: int, hr: float = 80.0, ts_ms: int | None = None) -> dict:
    vitals = {"hr_bpm": hr, "hrv_rmssd_ms": 30.0, "hrv_sdnn_ms": 40.0, "spo2_pct": 97.0, "rr_bpm": 16.0,
              "temp_c": 36.8, "motion_g": 0.01, "quality": 0.95}
    scores = dict.fromkeys(LABELS, 0.0) | {"normal": 1.0}
    ts = T0_MS + seq * 60_000 if ts_ms is None else ts_ms
    return inference_message(device, seq, ts, "hc-tiny@1", 30.0, vitals, "normal", scores)


class Pipeline:
    def __init__(self, url: str):
        self.risks: list[dict] = []
        self.deadletters: list[dict] = []
        self.lock = threading.Lock()
        self.pub_client = MqttClient(MqttConfig(url=url, client_id=uid("hard-pub"), clean_session=True))
        self.dl_client = MqttClient(MqttConfig(url=url, client_id=uid("hard-dl"), clean_session=True))
        self.pub = Publisher(self.pub_client)

    def on_risk(self, msg: dict) -> None:
        with self.lock:
            self.risks.append(msg)

    def on_dl(self, _topic: str, payload: bytes) -> None:
        with self.lock:
            self.deadletters.append(json.loads(payload))

    def send(self, msg: dict) -> None:
        assert self.pub.publish_msg("healthcare", msg["device"], "inference", msg, timeout_s=10)

    def results(self, device: str) -> Counter:
        with self.lock:
            return Counter(r["source_seq"] for r in self.risks if r["device"] == device)

    def dead(self, device: str) -> list[str]:
        with self.lock:
            return [d["reason"] for d in self.deadletters if f"/{device}/" in d["topic"]]


@pytest.fixture
def pipeline(mosquitto, quick_models: Path, tmp_path: Path) -> Iterator[Pipeline]:
    from shared.runtime.cloud import run_cloud

    p = Pipeline(mosquitto.url)
    p.dl_client.start()
    p.dl_client.subscribe("tinylarge/_deadletter/healthcare", p.on_dl)
    p.pub_client.start()
    with run_cloud("healthcare", None, mosquitto.url, f"sqlite:///{tmp_path / 'svc.db'}", quick_models,
                   on_result=p.on_risk, client_id=uid("hard-svc")):
        yield p
    p.pub_client.stop()
    p.dl_client.stop()


def test_late_message_then_redelivery_gets_exactly_one_result_per_window(pipeline: Pipeline) -> None:
    dev = uid("late")
    for seq in (0, 1, 3):
        pipeline.send(_msg(dev, seq))
    assert wait_for(lambda: sum(pipeline.results(dev).values()) == 3, 30)
    pipeline.send(_msg(dev, 2))  # late: window 2 arrives after window 3
    assert wait_for(lambda: pipeline.results(dev)[2] == 1, 30)
    pipeline.send(_msg(dev, 3))  # window 3 redelivered (e.g. after a reconnect)
    pipeline.send(_msg(dev, 4))
    assert wait_for(lambda: pipeline.results(dev)[4] == 1, 30)
    time.sleep(0.5)  # a second result for window 3, if any, is scored in the same or the next batch
    assert pipeline.results(dev) == Counter({0: 1, 1: 1, 2: 1, 3: 1, 4: 1})
    assert pipeline.dead(dev) == []


def test_future_timestamp_is_dead_lettered(pipeline: Pipeline) -> None:
    dev = uid("future")
    year_2999 = 32_000_000_000_000
    pipeline.send(_msg(dev, 0, ts_ms=year_2999))
    pipeline.send(_msg(dev, 1, ts_ms=int(time.time() * 1000) + 3_600_000))  # an hour ahead
    pipeline.send(_msg(dev, 2, ts_ms=int(time.time() * 1000) + 60_000))  # within the 300 s skew: accepted
    pipeline.send(_msg(dev, 3, ts_ms=0))  # a clock never set
    assert wait_for(lambda: len(pipeline.dead(dev)) == 3 and pipeline.results(dev)[2] == 1, 30)
    assert all(r.startswith("implausible ts") for r in pipeline.dead(dev))
    assert set(pipeline.results(dev)) == {2}


def test_news2_freshness_is_bounded_on_both_sides() -> None:
    from healthcare.service import HealthcareService

    svc = HealthcareService.__new__(HealthcareService)
    chart = {"sbp_mmhg": 120.0, "on_oxygen": False, "consciousness": "A", "rr_bpm": 16.0, "spo2_scale": 1}
    now = T0_MS
    vitals = {"rr_bpm": 16.0, "spo2_pct": 97.0, "hr_bpm": 80.0, "temp_c": 36.8}
    s = Subject("p", last_ts=now, extra={"chart": chart, "vitals": {k: (v, now) for k, v in vitals.items()}})
    assert svc.news2_for(s) is not None
    s.extra["vitals"]["hr_bpm"] = (80.0, now + 2 * 3_600_000)  # dated two hours after the latest message
    assert svc.news2_for(s) is None


def test_same_key_with_other_content_is_dead_lettered_and_redelivery_is_not(pipeline: Pipeline) -> None:
    dev = uid("reboot")
    first = _msg(dev, 0, hr=80.0)
    pipeline.send(first)
    assert wait_for(lambda: pipeline.results(dev)[0] == 1, 30)
    pipeline.send(first)  # redelivery: same content, absorbed
    pipeline.send(_msg(dev, 0, hr=120.0, ts_ms=first["ts"] + 600_000))  # the device restarted at seq 0
    pipeline.send(_msg(dev, 1))
    assert wait_for(lambda: pipeline.results(dev)[1] == 1 and len(pipeline.dead(dev)) >= 1, 30)
    time.sleep(0.3)
    reasons = pipeline.dead(dev)
    assert len(reasons) == 1 and reasons[0].startswith("seq conflict"), reasons
    assert pipeline.results(dev) == Counter({0: 1, 1: 1})


def test_a_restarted_wearable_keeps_every_reading(pipeline: Pipeline, quick_models: Path) -> None:
    """Item 3: the fleet starts a wearable's seq at messages.boot_seq(), so the readings after a restart
    get new (device, seq) keys and are all stored and scored; a wearable restarted at seq 0 (the old way)
    would have every reading refused as a seq conflict (dead-lettered, not silently dropped)."""
    from healthcare.device import window_message
    from healthcare.signals import CohortConfig, simulate_cohort
    from healthcare.tiny import TinyModel
    from shared.protocol.messages import boot_seq
    from shared.runtime.fleet import SimDevice

    tiny = TinyModel.load(quick_models)
    patient = simulate_cohort(CohortConfig(n_patients=1, duration_h=1.0, seed=3))[0]
    dev = patient.id
    sent = []
    for boot, times in enumerate(((300.0, 600.0, 900.0), (1200.0, 1500.0, 1800.0))):
        if boot:
            time.sleep(0.01)  # the restart: a new process, a later boot time
        w = SimDevice(dev, patient, tiny, T0_MS, lambda *_: None, seq=boot_seq())
        for t in times:
            msg = window_message(w, t)
            w.seq += 1
            sent.append(msg["seq"])
            pipeline.send(msg)
    assert len(set(sent)) == 6 and sent == sorted(sent)
    assert wait_for(lambda: sum(pipeline.results(dev).values()) == 6, 30)
    assert sorted(pipeline.results(dev)) == sent and pipeline.dead(dev) == []
    # the same readings from a wearable that restarts its counter at 0: refused with a reason, not dropped
    old = SimDevice(dev, patient, tiny, T0_MS + 60_000, lambda *_: None, seq=sent[0])
    pipeline.send(window_message(old, 2100.0))
    assert wait_for(lambda: len(pipeline.dead(dev)) == 1, 30)
    assert pipeline.dead(dev)[0].startswith("seq conflict")
