"""Real firmware wearables beside simulated ones, on one broker, consumed by the healthcare service.

The scenario (once per module): quick-trained models, a real Mosquitto, the cloud service
(``shared.runtime.cloud.run_cloud`` with SQLite), two host-firmware wearables publishing with the firmware's own MQTT
client, one Cortex-M4 image under QEMU whose serial frames the firmware gateway bridges, and one
simulated wearable (the platform's device fleet), all fed the same simulator's windows on the same clock
for two simulated hours; the ward EHR charts every patient.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from dataclasses import dataclass, field

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from healthcare.signals import CohortConfig, simulate_cohort
from shared.protocol import messages
from shared.runtime.firmware_fleet import FirmwareFleet, ticks
from tests._tools import require_tool
from tests.firmware.test_app_features import TOLERANCES  # the C DSP port's stated tolerances

pytestmark = [pytest.mark.firmware, pytest.mark.broker]

HOURS = 2.0
MEASUREMENTS = ("inference", "vitals", "risk")


def _have_qemu() -> bool:
    return shutil.which("qemu-system-arm") is not None and shutil.which("arm-none-eabi-gcc") is not None


class _Capture:
    """Every inference message on the broker, as the service receives it."""

    def __init__(self, port: int):
        self.msgs: dict[str, list[dict]] = {}
        self.c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"fw-capture-{uuid.uuid4().hex[:8]}",
                             protocol=paho.MQTTv311)
        self.c.on_message = lambda _c, _u, m: self.msgs.setdefault(m.topic.split("/")[2], []).append(
            messages.decode("healthcare", "inference", m.payload))
        self.c.connect("127.0.0.1", port)
        self.c.subscribe("tinylarge/healthcare/+/inference", qos=1)
        self.c.loop_start()
        time.sleep(0.2)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@dataclass
class Scenario:
    fw: FirmwareFleet
    sim_devices: list[str]
    ticks: list[float]
    start_ms: dict[str, int]
    rows: dict[str, dict[str, list]] = field(default_factory=dict)  # measurement -> device -> Points
    risks: list[dict] = field(default_factory=list)
    raw: dict[str, list[dict]] = field(default_factory=dict)

    def devices(self, target: str) -> list[str]:
        return [d.device for d in self.fw.devices if d.target == target]

    def seqs(self, device: str) -> list[int]:
        """The seqs of every window of a firmware device: from its provisioned start, one per tick."""
        (start,) = [d.seq_start for d in self.fw.devices if d.device == device]
        return list(range(start, start + len(self.ticks)))


@pytest.fixture(scope="module")
def scenario(quick_models, mosquitto, tmp_path_factory) -> Scenario:
    from healthcare.device import admission_epoch_ms, chart_feed, fleet
    from shared.runtime.cloud import run_cloud
    from shared.runtime.fleet import utc_midnight_ms

    require_tool("make")
    require_tool("gcc")
    qemu = 1 if _have_qemu() else 0
    tmp = tmp_path_factory.mktemp("fw-devices")
    cfg = CohortConfig(n_patients=4, duration_h=HOURS, deteriorating_fraction=0.5, seed=41)
    cohort = simulate_cohort(cfg)
    fw_patients, sim_patients = cohort[:2 + qemu], cohort[3:]
    day0_ms = utc_midnight_ms(days_ago=2)
    start_ms = {p.id: admission_epoch_ms(p, day0_ms) for p in [*fw_patients, *sim_patients]}
    risks: list[dict] = []
    capture = _Capture(mosquitto.port)
    # the ward EHR (the firmware fleet's site client) charts every patient, the simulated one too
    fw = FirmwareFleet("healthcare", mosquitto.url, fw_patients, quick_models, day0_ms, tmp / "fw", qemu=qemu,
                       start_ms=admission_epoch_ms, site=lambda _patients, _start: chart_feed(
                           [*fw_patients, *sim_patients], start_ms))
    fw.build()
    try:
        with run_cloud("healthcare", None, mosquitto.url, f"sqlite:///{tmp / 'store.db'}", quick_models,
                       on_result=risks.append, client_id=f"svc-{uuid.uuid4().hex[:8]}") as cloud:
            sim = fleet(None, mosquitto.url, sim_patients, quick_models, start_ms)
            sim.start()
            fw.start()
            all_ticks = ticks(cfg)
            for t_s in all_ticks:
                fw.step_all(t_s)  # the site's charts due by t_s first, as the platform's demo does
                sim.step_all(t_s)
            sim.stop()
            fw.stop()
            sc = Scenario(fw, [p.id for p in sim_patients], all_ticks, start_ms)
            mine = [*sc.start_ms]
            expected = fw.published + sim.published

            def done() -> bool:
                return sum(cloud.store.count("inference", d) for d in mine) >= expected and cloud.service.idle

            deadline = time.monotonic() + 60
            while not done() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)  # the last batch's risk messages
            sc.rows = {m: {d: cloud.store.query(m, d) for d in mine} for m in MEASUREMENTS}
    finally:
        capture.close()
    sc.risks = [r for r in risks if r["device"] in sc.start_ms]
    sc.raw = {d: sorted(capture.msgs.get(d, []), key=lambda m: m["seq"]) for d in sc.start_ms}
    return sc


def _kind(value: object) -> str:
    """JSON's view of a field: a number is a number (the C writes 0 where Python writes 0.0)."""
    return "bool" if isinstance(value, bool) else "number" if isinstance(value, int | float) else type(value).__name__


def _shape(points: list) -> tuple[set, set]:
    """(field name/kind pairs, tag dicts) over a device's stored points."""
    return ({(k, _kind(v)) for p in points for k, v in p.fields.items()},
            {json.dumps(p.tags, sort_keys=True) for p in points})


def test_every_firmware_message_is_stored_and_scored(scenario):
    n = len(scenario.ticks)
    host = scenario.devices("host")
    assert len(host) == 2
    assert scenario.fw.published == n * len(scenario.fw.devices)
    for d in host:
        inf = scenario.rows["inference"][d]
        assert [p.seq for p in inf] == scenario.seqs(d), d  # from seq_start, one row per window, none twice
        assert [p.ts_ms for p in inf] == [scenario.start_ms[d] + int(round(t * 1000)) for t in scenario.ticks]
        assert [p.seq for p in scenario.rows["vitals"][d]] == scenario.seqs(d)
        scored = {r["source_seq"] for r in scenario.risks if r["device"] == d}
        assert scenario.seqs(d)[-1] in scored, f"{d}: no risk published for its last window"
        assert len(scenario.rows["risk"][d]) == len(scored)


def test_service_cannot_tell_firmware_from_simulated_devices(scenario):
    sim = scenario.sim_devices[0]
    assert len(scenario.rows["inference"][sim]) == len(scenario.ticks)
    for measurement in MEASUREMENTS:
        fields_sim, tags_sim = _shape(scenario.rows[measurement][sim])
        for d in (x.device for x in scenario.fw.devices):
            fields_fw, tags_fw = _shape(scenario.rows[measurement][d])
            assert tags_fw == tags_sim, (measurement, d, tags_fw, tags_sim)
            if measurement == "inference":  # class + one probability per label, on every row
                assert fields_fw == fields_sim, (measurement, d)
            else:  # a vital the DSP could not measure is left out of its row: compare names and kinds
                assert {k for k, _ in fields_fw} <= {k for k, _ in fields_sim} | _vital_names(), (measurement, d)
                assert {kind for _, kind in fields_fw} == {kind for _, kind in fields_sim}, (measurement, d)
    assert json.loads(next(iter(_shape(scenario.rows["inference"][sim])[1])))["model"] == "hc-tiny@1"
    # the messages on the wire: the same keys at every level
    shape = {(k, tuple(sorted(v)) if isinstance(v, dict) else None) for k, v in scenario.raw[sim][0].items()}
    for d in (x.device for x in scenario.fw.devices):
        assert len(scenario.raw[d]) == len(scenario.ticks)
        for m in scenario.raw[d]:
            assert {(k, tuple(sorted(v)) if isinstance(v, dict) else None) for k, v in m.items()} == shape


def _vital_names() -> set[str]:
    return set(TOLERANCES)


def test_qemu_cortex_m4_messages_arrive_through_the_gateway_and_are_stored(scenario):
    """Issue 3, "what it must show": the Cortex-M4 firmware (QEMU) -> serial frames -> gateway -> MQTT ->
    the service stores and scores it like any other device."""
    require_tool("qemu-system-arm")
    require_tool("arm-none-eabi-gcc")
    (d,) = [x for x in scenario.fw.devices if x.target == "cortex-m4"]
    n = len(scenario.ticks)
    counts = d.gateway_summary["counts"]
    assert counts["forwarded_inference"] == n and counts.get("invalid", 0) == 0 and counts["bad_frames"] == 0
    assert counts["forwarded_status"] == 2 and counts["all_acked"] == 1  # online, then offline at the end
    assert d.returncode == 0 and d.published == n
    inf = scenario.rows["inference"][d.device]
    assert [p.seq for p in inf] == scenario.seqs(d.device)
    assert [p.ts_ms for p in inf] == [scenario.start_ms[d.device] + int(round(t * 1000)) for t in scenario.ticks]
    assert _shape(inf) == _shape(scenario.rows["inference"][scenario.sim_devices[0]])
    assert scenario.seqs(d.device)[-1] in {r["source_seq"] for r in scenario.risks if r["device"] == d.device}


def test_firmware_messages_match_the_python_wearable(quick_models, mosquitto, tmp_path):
    """The C app (DSP + compiled int8 model) against the Python wearable (healthcare.device) on the same windows."""
    from healthcare.device import window_message
    from healthcare.tiny import TinyModel
    from shared.runtime.fleet import SimDevice, utc_midnight_ms

    require_tool("make")
    require_tool("gcc")
    cfg = CohortConfig(n_patients=4, duration_h=8.0, deteriorating_fraction=0.5, seed=23)
    cohort = simulate_cohort(cfg)
    capture = _Capture(mosquitto.port)
    try:
        fw = FirmwareFleet("healthcare", mosquitto.url, cohort, quick_models, utc_midnight_ms(), tmp_path / "fw")
        published = fw.run()
        assert published == len(cohort) * len(ticks(cfg))
        deadline = time.monotonic() + 10
        while sum(len(v) for k, v in capture.msgs.items() if k in fw.start_ms) < published:
            assert time.monotonic() < deadline, "not every firmware message reached the subscriber"
            time.sleep(0.05)
    finally:
        capture.close()
    tiny = TinyModel.load(quick_models)
    total = same_class = low = 0
    for p in cohort:
        (seq0,) = [d.seq_start for d in fw.devices if d.device == p.id]
        wearable = SimDevice(p.id, p, tiny, fw.start_ms[p.id], lambda *a: None, seq=seq0)
        c_msgs = sorted(capture.msgs[p.id], key=lambda m: m["seq"])
        for t_s, c in zip(ticks(cfg), c_msgs, strict=True):
            py = window_message(wearable, t_s)
            wearable.seq += 1
            for key in ("device", "seq", "ts", "model", "window_s"):
                assert py[key] == c[key], (p.id, key)
            total += 1
            same_class += py["class"] == c["class"]
            assert py["hr_quality"] == c["hr_quality"], (p.id, c["seq"])  # features step 10, same verdict
            low += c["hr_quality"] == "low"
            for name, (atol, rtol) in TOLERANCES.items():
                pv, cv = py["vitals"][name], c["vitals"][name]
                assert (pv is None) == (cv is None), (p.id, c["seq"], name, pv, cv)
                step = 1e-4 if name == "quality" else 1e-2  # both sides round to this in the message
                if pv is not None:
                    assert abs(pv - cv) <= max(atol, rtol * abs(pv)) + step + 1e-9, (p.id, c["seq"], name, pv, cv)
            if py["class"] == c["class"]:  # same int8 output, up to one output step and the 4-decimal rounding
                assert max(abs(py["scores"][k] - c["scores"][k]) for k in py["scores"]) <= 1 / 256 + 1e-4
    assert total == published
    assert same_class / total >= 0.99, f"class agreement {same_class}/{total}"
    assert 0 < low < total  # both verdicts occur: HR withheld (null) on some windows, not on all


def test_a_device_that_cannot_reach_the_broker_fails_loudly(quick_models, tmp_path):
    from shared.runtime.firmware_fleet import FirmwareError
    from tests.fixtures.mqtt import free_port

    require_tool("make")
    require_tool("gcc")
    cohort = simulate_cohort(CohortConfig(n_patients=1, duration_h=0.5, seed=3))
    fw = FirmwareFleet("healthcare", f"mqtt://127.0.0.1:{free_port()}", cohort, quick_models, 0, tmp_path / "fw")
    with pytest.raises(FirmwareError, match="cannot connect to 127.0.0.1") as exc:
        fw.run()
    assert cohort[0].id in str(exc.value)


def test_bad_fleet_arguments_name_what_is_wrong(quick_models, tmp_path):
    cohort = simulate_cohort(CohortConfig(n_patients=2, duration_h=0.5, seed=3))
    with pytest.raises(ValueError, match="mqtt_url: the host firmware speaks plain MQTT"):
        FirmwareFleet("healthcare", "mqtts://broker:8883", cohort, quick_models, 0, tmp_path)
    with pytest.raises(ValueError, match="qemu: must be between 0 and 2"):
        FirmwareFleet("healthcare", "mqtt://127.0.0.1:1883", cohort, quick_models, 0, tmp_path, qemu=3)
    with pytest.raises(ValueError, match="patients: need at least one"):
        FirmwareFleet("healthcare", "mqtt://127.0.0.1:1883", [], quick_models, 0, tmp_path)
    with pytest.raises(FileNotFoundError, match="tiny.tflite not found"):
        FirmwareFleet("healthcare", "mqtt://127.0.0.1:1883", cohort, tmp_path / "nothing", 0, tmp_path).build()
