"""A simulated wrist wearable: signals -> on-device DSP -> int8 model -> one MQTT message per window.

It does what the C firmware does (firmware/apps/healthcare), in Python: every ``window_every_s`` it takes
a 30 s window of PPG (red, infrared), accelerometer and skin temperature, extracts the features of
``healthcare.features``, classifies them with the int8 TFLite model through the LiteRT interpreter and
publishes an ``inference`` message (QoS 1). The cloud cannot tell it from the firmware: both emit the
same schema (shared/schemas/healthcare.inference.json).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from healthcare.features import extract_window, to_vector
from healthcare.signals import ChartObs, Patient, Window
from shared.protocol.messages import SCHEMA_VERSION, boot_seq

DOMAIN = "healthcare"
EHR_MODEL = "ehr@1"


def _round(v: float | None, nd: int = 2) -> float | None:
    return None if v is None else round(float(v), nd)


def inference_message(device: str, seq: int, ts_ms: int, model_id: str, window_s: float,
                      vitals: dict[str, float | None], label: str, scores: dict[str, float]) -> dict:
    """The healthcare ``inference`` message (the firmware builds the very same object)."""
    return {
        "v": SCHEMA_VERSION, "device": device, "seq": seq, "ts": ts_ms, "model": model_id,
        "window_s": window_s,
        "vitals": {k: _round(v, 4 if k == "quality" else 2) for k, v in vitals.items()},
        "class": label,
        "scores": {k: round(float(v), 4) for k, v in scores.items()},
    }


def chart_message(device: str, seq: int, ts_ms: int, obs: ChartObs) -> dict:
    """What the ward's EHR publishes when a nurse charts observations."""
    return {"v": SCHEMA_VERSION, "device": device, "seq": seq, "ts": ts_ms, "model": EHR_MODEL,
            "sbp_mmhg": round(obs.sbp_mmhg, 1), "consciousness": obs.consciousness,
            "on_oxygen": bool(obs.on_oxygen), "rr_bpm": round(obs.rr_bpm, 1), "temp_c": round(obs.temp_c, 2)}


@dataclass
class Wearable:
    """One simulated device on one patient.

    With a ``slot`` (a :class:`shared.security.model_update.ModelSlot` holding the trusted cloud key), the
    wearable accepts signed model updates from its retained ``model`` topic: it verifies signature,
    hash and version before swapping models, keeps the old model otherwise, and reports the active
    model in its retained status.
    """

    patient: Patient
    tiny: Any  # healthcare.tiny.TinyModel
    publish: Callable[[str, str, dict], None]  # (device, stream, message)
    start_epoch_ms: int
    seq: int = 0  #: next seq; the fleets start it at messages.boot_seq() so a restart reuses none
    slot: Any = None  # shared.security.model_update.ModelSlot
    first_seq: int = field(init=False, default=0)
    updates: dict[str, int] = field(default_factory=lambda: {"accepted": 0, "rejected": 0})
    status_seq: int = 0

    def __post_init__(self) -> None:
        self.first_seq = self.seq

    @property
    def device(self) -> str:
        return self.patient.id

    def publish_status(self, state: str = "online") -> None:
        from shared.runtime.app import status_message

        self.status_seq += 1
        self.publish(self.device, "status", status_message(
            self.device, self.status_seq, self.tiny.model_id, state, counts={"published": self.seq - self.first_seq,
                    **self.updates},
            active_model=self.tiny.model_id))

    def offer_update(self, payload: bytes) -> tuple[bool, str]:
        """A ``model`` message arrived: verify, swap the int8 model if valid and newer, report in status."""
        if self.slot is None:
            return False, "this wearable accepts no model updates (no trusted key)"
        from healthcare.tiny import TinyModel

        labels = self.tiny.labels
        # loaded (input/output shapes checked by TinyModel) before the slot installs or persists anything
        ok, reason = self.slot.offer(payload, load=lambda data: TinyModel(data, labels, "0"))
        if ok:
            self.tiny = TinyModel(self.slot.active_bytes, labels, str(self.slot.active_version))
        self.updates["accepted" if ok else "rejected"] += 1
        self.publish_status()
        return ok, reason

    def process(self, w: Window) -> dict:
        """DSP + int8 inference on one window; returns the message (not yet published)."""
        feats = extract_window(w)
        labels, scores = self.tiny.classify(to_vector(feats)[None, :])
        ts_ms = self.start_epoch_ms + int(round(w.t_end_s * 1000))
        msg = inference_message(self.device, self.seq, ts_ms, self.tiny.model_id, len(w.ppg_ir) / w.fs_hz,
                                feats.as_dict(), labels[0], scores[0])
        self.seq += 1
        return msg

    def step(self, t_end_s: float) -> dict:
        msg = self.process(self.patient.window(t_end_s))
        self.publish(self.device, "inference", msg)
        return msg


def utc_midnight_ms(days_ago: int = 1) -> int:
    """Epoch ms of UTC midnight ``days_ago`` days before today."""
    day_ms = 86_400_000
    return (int(time.time() * 1000) // day_ms - days_ago) * day_ms


def admission_epoch_ms(patient: Patient, day0_ms: int) -> int:
    """Epoch ms of the patient's t = 0, on the day starting at ``day0_ms`` (UTC midnight), at the
    patient's admission clock time, so that message timestamps carry the simulator's time of day."""
    return day0_ms + int(round(patient.clock_h(0.0) * 3.6e6))


class Fleet:
    """Wearables (one MQTT client each, with a retained status and last will) and the ward EHR.

    ``start_ms`` maps each device to the epoch ms of its patient's t = 0 (see :func:`admission_epoch_ms`).
    """

    def __init__(self, args: argparse.Namespace | None, mqtt: str, cohort: Sequence[Patient], tiny: Any,
                 day0_ms: int, on_publish: Callable[[str, int], None] | None = None,
                 trusted_key: Path | None = None, slot_dir: Path | None = None):
        from shared.runtime.app import client_config, publisher
        from shared.transport.consumer import status_will
        from shared.transport.mqtt import MqttClient

        self.cohort = list(cohort)
        self.start_ms = {p.id: admission_epoch_ms(p, day0_ms) for p in self.cohort}
        self.on_publish = on_publish
        self.published = 0
        self.charts_published = 0
        self._clients: dict[str, Any] = {}
        self.wearables: list[Wearable] = []
        for p in self.cohort:
            client = MqttClient(client_config(args, mqtt, f"tinylarge-hc-{p.id}",
                                              will=status_will(DOMAIN, p.id, tiny.model_id)))
            self._clients[p.id] = client
            slot = None
            if trusted_key is not None:
                from shared.runtime.fleet import slot_path
                from shared.security.model_update import ModelSlot

                slot = ModelSlot(DOMAIN, p.id, trusted_key, active_version=int(tiny.version),
                                 active_model_id=tiny.model_id.rpartition("@")[0],
                                 path=slot_path(slot_dir, trusted_key, DOMAIN, p.id))
            w_tiny = tiny
            if slot is not None and slot.active_bytes is not None:  # a model installed before a restart
                from healthcare.tiny import TinyModel

                w_tiny = TinyModel(slot.active_bytes, tiny.labels, str(slot.active_version))
            self.wearables.append(Wearable(p, w_tiny, publisher(client, DOMAIN), self.start_ms[p.id],
                                           seq=boot_seq(), slot=slot))
        self._ehr = MqttClient(client_config(args, mqtt, "tinylarge-hc-ehr"))
        self._ehr_publish = publisher(self._ehr, DOMAIN)
        self._charts = sorted(((c.t_s, p.id, c) for p in self.cohort for c in p.charts()), key=lambda x: x[0])
        self._chart_seq: dict[str, int] = {}

    def start(self) -> None:
        from shared.protocol.messages import topic

        for w in self.wearables:
            client = self._clients[w.device]
            client.start()
            if w.slot is not None:
                client.subscribe(topic(DOMAIN, w.device, "model"), lambda _t, payload, w=w: w.offer_update(payload))
            w.publish_status()
        self._ehr.start()

    @property
    def updates(self) -> dict[str, int]:
        """Model updates accepted and rejected, over all wearables."""
        return {k: sum(w.updates[k] for w in self.wearables) for k in ("accepted", "rejected")}

    def step_all(self, t_end_s: float) -> int:
        """Publish the charts due by ``t_end_s``, then every wearable's window ending at ``t_end_s``."""
        while self._charts and self._charts[0][0] <= t_end_s:
            t_s, device, obs = self._charts.pop(0)
            seq = self._chart_seq.get(device, 0)
            self._chart_seq[device] = seq + 1
            ts_ms = self.start_ms[device] + int(round(t_s * 1000))
            self._ehr_publish(device, "chart", chart_message(device, seq, ts_ms, obs))
            self.charts_published += 1
        for w in self.wearables:
            msg = w.process(w.patient.window(t_end_s))
            w.publish(w.device, "inference", msg)
            self.published += 1
            if self.on_publish is not None:
                self.on_publish(w.device, msg["seq"])
        return len(self.wearables)

    def stop(self, flush_timeout_s: float = 30.0) -> None:
        for w in self.wearables:
            w.publish_status("offline")
        for client in [*self._clients.values(), self._ehr]:
            client.stop(flush_timeout_s=flush_timeout_s)


def main(argv: Sequence[str] | None = None) -> int:
    """``tinylarge device healthcare``: run N simulated wearables against a broker."""
    import os

    from healthcare.signals import CohortConfig, simulate_cohort
    from healthcare.tiny import TinyModel
    from healthcare.train import ensure_trained
    from shared.cli import add_endpoint_args

    ap = argparse.ArgumentParser(prog="tinylarge device healthcare", description=__doc__.splitlines()[0])
    add_endpoint_args(ap)
    ap.add_argument("--models", type=Path, default=Path("models/healthcare"))
    ap.add_argument("--patients", type=int, default=5, help="number of wearables")
    ap.add_argument("--hours", type=float, default=1.0, help="simulated hours to run")
    ap.add_argument("--speed", type=float, default=60.0, help="simulated seconds per wall second")
    ap.add_argument("--seed", type=int, default=7, help="cohort seed")
    ap.add_argument("--quick-train", action="store_true", help="if models are missing, train small ones fast")
    args = ap.parse_args(argv)
    mqtt = args.mqtt or os.environ.get("TINYLARGE_MQTT")
    if not mqtt:
        ap.error("--mqtt (or TINYLARGE_MQTT) is required: devices connect to the broker the service uses")
    ensure_trained(args.models, quick=args.quick_train)
    cfg = CohortConfig(n_patients=args.patients, duration_h=args.hours, seed=args.seed)
    fleet = Fleet(args, mqtt, simulate_cohort(cfg), TinyModel.load(args.models), utc_midnight_ms())
    fleet.start()
    try:
        t_s, t0 = cfg.window_s, time.monotonic()
        while t_s <= cfg.duration_h * 3600:
            fleet.step_all(t_s)
            t_s += cfg.window_every_s
            time.sleep(max(0.0, t0 + t_s / args.speed - time.monotonic()))
    finally:
        fleet.stop()
    print(f"published {fleet.published} inferences and {fleet.charts_published} charts "
          f"from {len(fleet.cohort)} wearables", flush=True)
    return 0


def window_channels(w: Window) -> dict[str, Any]:
    """The firmware's sensor table for one window (firmware/apps/healthcare): channel -> samples."""
    import numpy as np

    acc = np.asarray(w.acc_g)
    return {"ppg_red": w.ppg_red, "ppg_ir": w.ppg_ir, "acc_x": acc[:, 0], "acc_y": acc[:, 1], "acc_z": acc[:, 2],
            "temp": float(w.temp_c)}


def chart_feed(patients: Sequence[Patient], start_ms: dict[str, int]) -> list[tuple[float, str, str, dict]]:
    """The ward EHR's nurse charts for ``patients``, in time order: the firmware fleet's ``site`` hook
    (shared.runtime.firmware_fleet), ``(t_s, device, "chart", message)`` with seq from 0 per patient."""
    due = sorted(((c.t_s, p.id, c) for p in patients for c in p.charts()), key=lambda x: x[0])
    seq: dict[str, int] = {}
    out = []
    for t_s, device, obs in due:
        seq[device] = seq.get(device, -1) + 1
        out.append((t_s, device, "chart", chart_message(device, seq[device], start_ms[device] + int(round(t_s * 1000)),
                                                        obs)))
    return out


def sample_messages(models_dir: Path) -> dict[str, list[dict]]:
    """Messages of every upward stream, made the way devices and the EHR make them (the contract suite
    validates them against the schemas): two patients' first windows and charts."""
    from healthcare.signals import CohortConfig, simulate_cohort
    from healthcare.tiny import TinyModel

    tiny = TinyModel.load(models_dir)
    cohort = simulate_cohort(CohortConfig(n_patients=2, duration_h=1.0, seed=5))
    out: dict[str, list[dict]] = {"inference": [], "chart": []}
    for p in cohort:
        w = Wearable(p, tiny, lambda *_: None, 1_700_000_000_000)
        out["inference"] += [w.process(p.window(t)) for t in (600.0, 1200.0)]
        out["chart"] += [chart_message(p.id, k, 1_700_000_000_000 + int(c.t_s * 1000), c)
                         for k, c in enumerate(p.charts()[:2])]
    return out
