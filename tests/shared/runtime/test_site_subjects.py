"""Issue 23 items 2 and 3 through the real pipeline: Mosquitto -> consumer -> healthcare service -> store.

* item 2: a site writer (the ward EHR) floods charts for invented patients; only subjects the deployment
  knows (on its list, or whose device sent a status or an inference) get charts stored, every invented one
  is dead-lettered as ``unknown subject``, and what was accepted before the flood is still there;
* item 3: a chart re-sent under a stored (device, seq) with other content (systolic 90 instead of 120) is
  dead-lettered as a ``seq conflict`` and the store keeps 120, on SQLite and on the Influx-API store
  (VictoriaMetrics); a true redelivery is absorbed without a dead letter.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from healthcare.device import chart_message
from healthcare.signals import ChartObs
from shared.runtime.app import status_message
from shared.transport.consumer import Publisher
from shared.transport.mqtt import MqttClient, MqttConfig
from tests.fixtures.mqtt import wait_for
from tests.shared._support import uid
from tests.shared.runtime.test_service_hardening import _msg

T0_MS = int(time.time() * 1000) - 3_600_000
FLOOD = 2_000


def _chart(device: str, seq: int, sbp: float = 120.0) -> dict:
    return chart_message(device, seq, T0_MS + seq * 60_000, ChartObs(device, 0.0, sbp, "A", False, 16.0, 36.8))


class Site:
    """The EHR's and the devices' clients, and a listener on the dead letters."""

    def __init__(self, url: str):
        self.client = MqttClient(MqttConfig(url=url, client_id=uid("site-pub"), clean_session=True))
        self.dl_client = MqttClient(MqttConfig(url=url, client_id=uid("site-dl"), clean_session=True))
        self.pub = Publisher(self.client)
        self.dead: list[dict] = []
        self.lock = threading.Lock()

    def on_dl(self, _topic: str, payload: bytes) -> None:
        with self.lock:
            self.dead.append(json.loads(payload))

    def send(self, stream: str, msg: dict, retain: bool = False) -> None:
        assert self.pub.publish_msg("healthcare", msg["device"], stream, msg, retain=retain, timeout_s=10)

    def reasons(self, device: str) -> list[str]:
        with self.lock:
            return [d["reason"] for d in self.dead if f"/{device}/" in d["topic"]]


@contextmanager
def _cloud(url: str, store_url: str, models: Path, subjects: list[str] | None = None) -> Iterator[tuple]:
    from shared.runtime.cloud import run_cloud

    site = Site(url)
    site.dl_client.start()
    site.dl_client.subscribe("tinylarge/_deadletter/healthcare", site.on_dl)
    site.client.start()
    try:
        with run_cloud("healthcare", None, url, store_url, models, client_id=uid("site-svc"),
                       subjects=subjects) as cloud:
            yield cloud, site
    finally:
        site.client.stop()
        site.dl_client.stop()


def _settled(cloud, received: int, timeout_s: float = 60) -> bool:
    return wait_for(lambda: cloud.consumer.counts.get("received", 0) >= received, timeout_s)


@pytest.mark.broker
def test_a_flood_of_invented_patients_is_dead_lettered_and_known_ones_are_stored(mosquitto, quick_models, tmp_path):
    by_status, by_inference, listed = uid("st"), uid("inf"), uid("list")
    with _cloud(mosquitto.url, f"sqlite:///{tmp_path / 'svc.db'}", quick_models, subjects=[listed]) as (cloud, site):
        base = cloud.consumer.counts.get("received", 0)
        site.send("status", status_message(by_status, 1, "hc-tiny@1", "online"), retain=True)  # a device connects
        site.send("inference", _msg(by_inference, 0))
        assert wait_for(lambda: cloud.store.count("inference", by_inference) == 1, 30)
        for device in (by_status, by_inference, listed):
            site.send("chart", _chart(device, 0))  # accepted before the flood
        assert _settled(cloud, base + 4)
        invented = [uid("fake") for _ in range(FLOOD)]
        t0 = time.monotonic()
        for k, device in enumerate(invented):
            site.send("chart", _chart(device, 0))
            if k % 500 == 0:  # the known patients go on being charted during the flood
                for known in (by_status, by_inference, listed):
                    site.send("chart", _chart(known, 1 + k // 500))
        sent_known = 3 * (1 + (FLOOD + 499) // 500)
        assert _settled(cloud, base + 1 + FLOOD + sent_known, 120), cloud.consumer.counts
        print(f"\n{FLOOD} invented patients' charts handled in {time.monotonic() - t0:.1f} s")
        charted = set(cloud.store.devices("chart"))
        assert not charted & set(invented), f"{len(charted & set(invented))} invented patients stored"
        for known in (by_status, by_inference, listed):  # nothing accepted is lost, before or during the flood
            assert cloud.store.count("chart", known) == 1 + (FLOOD + 499) // 500, known
        assert cloud.service.counts["unknown_subject"] == FLOOD
        assert cloud.consumer.counts["deadletters"] >= FLOOD
        assert wait_for(lambda: len(site.reasons(invented[0])) == 1, 20)
        assert site.reasons(invented[0])[0].startswith("unknown subject: chart for")
        assert site.reasons(listed) == [] and site.reasons(by_status) == []


def _conflict(url: str, store_url: str, models: Path) -> None:
    patient = uid("conf")
    with _cloud(url, store_url, models, subjects=[patient]) as (cloud, site):
        base = cloud.consumer.counts.get("received", 0)
        site.send("chart", _chart(patient, 0, sbp=120.0))
        site.send("chart", _chart(patient, 0, sbp=120.0))  # a redelivery: absorbed
        site.send("chart", _chart(patient, 0, sbp=90.0))  # a different chart under the same (device, seq)
        site.send("chart", _chart(patient, 1, sbp=118.0))
        assert _settled(cloud, base + 4)
        assert wait_for(lambda: len(site.reasons(patient)) >= 1, 20)
        time.sleep(0.3)
        reasons = site.reasons(patient)
        assert len(reasons) == 1 and reasons[0].startswith("seq conflict: chart"), reasons
        cloud.store.flush()
        assert wait_for(lambda: [p.fields.get("sbp_mmhg") for p in cloud.store.query("chart", patient)]
                        == [120.0, 118.0], 20), cloud.store.query("chart", patient)
        assert cloud.service.subjects[patient].extra["chart"]["sbp_mmhg"] == 118.0


@pytest.mark.broker
def test_a_conflicting_chart_is_dead_lettered_on_sqlite(mosquitto, quick_models, tmp_path):
    _conflict(mosquitto.url, f"sqlite:///{tmp_path / 'svc.db'}", quick_models)


@pytest.mark.broker
@pytest.mark.influx
def test_a_conflicting_chart_is_dead_lettered_on_the_influx_store(mosquitto, quick_models, victoria_metrics,
                                                                  tmp_path):
    _conflict(mosquitto.url, f"{victoria_metrics.store_url}?spool={tmp_path / 'spool'}", quick_models)
