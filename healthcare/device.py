"""A simulated wrist wearable: signals -> on-device DSP -> int8 model -> one MQTT message per window.

It does what the C firmware does (healthcare/firmware), in Python: every ``window_every_s`` it takes a
30 s window of PPG (red, infrared), accelerometer and skin temperature, extracts the features of
``healthcare.features``, classifies them with the int8 TFLite model through the LiteRT interpreter and
publishes an ``inference`` message (QoS 1). The cloud cannot tell it from the firmware: both emit the
same schema (healthcare/schemas/inference.json). The wearables run on the platform's fleet
(:class:`shared.runtime.fleet.DeviceFleet`); the ward EHR's nurse charts are the scenario's site feed
(:func:`chart_feed`).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from healthcare import DOMAIN
from healthcare.features import extract_window, to_vector
from healthcare.signals import ChartObs, Patient, Window
from shared.protocol.messages import SCHEMA_VERSION
from shared.runtime.fleet import DeviceFleet, SimDevice

EHR_MODEL = "ehr@1"


def _round(v: float | None, nd: int = 2) -> float | None:
    return None if v is None else round(float(v), nd)


def inference_message(device: str, seq: int, ts_ms: int, model_id: str, window_s: float,
                      vitals: dict[str, float | None], label: str, scores: dict[str, float],
                      hr_quality: str | None = None) -> dict:
    """The healthcare ``inference`` message (the firmware builds the very same object). ``vitals``: as sent
    (`Features.message_vitals`: HR and HRV None when withheld); ``hr_quality``: "good" or "low"
    (healthcare.features step 10; None: "good" exactly when ``vitals`` carries an HR)."""
    if hr_quality is None:
        hr_quality = "low" if vitals.get("hr_bpm") is None else "good"
    return {
        "v": SCHEMA_VERSION, "device": device, "seq": seq, "ts": ts_ms, "model": model_id,
        "window_s": window_s,
        "vitals": {k: _round(v, 4 if k == "quality" else 2) for k, v in vitals.items()},
        "hr_quality": hr_quality,
        "class": label,
        "scores": {k: round(float(v), 4) for k, v in scores.items()},
    }


def chart_message(device: str, seq: int, ts_ms: int, obs: ChartObs) -> dict:
    """What the ward's EHR publishes when a nurse charts observations."""
    return {"v": SCHEMA_VERSION, "device": device, "seq": seq, "ts": ts_ms, "model": EHR_MODEL,
            "sbp_mmhg": round(obs.sbp_mmhg, 1), "consciousness": obs.consciousness,
            "on_oxygen": bool(obs.on_oxygen), "rr_bpm": round(obs.rr_bpm, 1), "temp_c": round(obs.temp_c, 2)}


def window_message(d: SimDevice, t_end_s: float) -> dict:
    """DSP + int8 inference on the window of ``d``'s patient ending at ``t_end_s``; the ``inference``
    message with ``d.seq`` (not yet published; the fleet counts ``seq`` on)."""
    w: Window = d.subject.window(t_end_s)
    feats = extract_window(w)
    labels, scores = d.model.classify(to_vector(feats)[None, :])
    return inference_message(d.id, d.seq, d.ts_ms(w.t_end_s), d.model.model_id, len(w.ppg_ir) / w.fs_hz,
                             feats.message_vitals(), labels[0], scores[0], feats.hr_quality)


def reload(d: SimDevice, tflite: bytes, version: int) -> Any:
    """The wearable's model from a signed update's bytes (input/output checked by ``TinyModel``)."""
    from healthcare.tiny import TinyModel

    return TinyModel(tflite, d.model.labels, str(version))


def admission_epoch_ms(patient: Patient, day0_ms: int) -> int:
    """Epoch ms of the patient's t = 0, on the day starting at ``day0_ms`` (UTC midnight), at the
    patient's admission clock time, so that message timestamps carry the simulator's time of day."""
    return day0_ms + int(round(patient.clock_h(0.0) * 3.6e6))


def fleet(args: argparse.Namespace | None, mqtt: str, patients: Sequence[Patient], models_dir: Path,
          start_ms: Mapping[str, int], on_publish: Any = None, trusted_key: Path | None = None) -> DeviceFleet:
    """Simulated wearables on ``patients`` (one MQTT client each, the int8 model of ``models_dir``); a
    patient's t = 0 is ``start_ms[id]`` (the scenario's: :func:`admission_epoch_ms`). With ``trusted_key``
    they accept signed model updates."""
    from healthcare.tiny import TinyModel

    return DeviceFleet(DOMAIN.name, args, mqtt, patients, TinyModel.load(models_dir), dict(start_ms), window_message,
                       reload=reload, on_publish=on_publish, trusted_key=trusted_key)


def window_channels(w: Window) -> dict[str, Any]:
    """The firmware's sensor table for one window (healthcare/firmware): channel -> samples."""
    import numpy as np

    acc = np.asarray(w.acc_g)
    return {"ppg_red": w.ppg_red, "ppg_ir": w.ppg_ir, "acc_x": acc[:, 0], "acc_y": acc[:, 1], "acc_z": acc[:, 2],
            "temp": float(w.temp_c)}


def chart_feed(patients: Sequence[Patient], start_ms: dict[str, int]) -> list[tuple[float, str, str, dict]]:
    """The ward EHR's nurse charts for ``patients``, in time order: the scenario's site feed (and the firmware
    fleet's ``site`` hook), ``(t_s, device, "chart", message)`` with seq from 0 per patient."""
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
        d = SimDevice(p.id, p, tiny, 1_700_000_000_000, lambda *_: None)
        for t in (600.0, 1200.0):
            out["inference"].append(window_message(d, t))
            d.seq += 1
        out["chart"] += [chart_message(p.id, k, 1_700_000_000_000 + int(c.t_s * 1000), c)
                         for k, c in enumerate(p.charts()[:2])]
    return out
