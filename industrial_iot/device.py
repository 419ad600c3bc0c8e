"""A simulated vibration sensor node: accelerometer -> on-device DSP -> two int8 models -> one MQTT message.

It does what the C firmware does (industrial_iot/firmware), in Python: every ``window_every_s`` it
records a 0.8 s window on the bearing housing, extracts the features of ``industrial_iot.features`` for
the machine's bearing at the speed the drive reports, classifies the condition with the int8 classifier,
scores how unusual the window is with the int8 autoencoder (reconstruction error) and publishes an
``inference`` message (QoS 1, schema industrial_iot/schemas/inference.json).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from industrial_iot import DOMAIN
from industrial_iot.features import extract_window, to_vector
from industrial_iot.signals import Machine, Window
from shared.protocol.messages import SCHEMA_VERSION
from shared.runtime.fleet import DeviceFleet, SimDevice


def _num(v: float | None, digits: int = 6) -> float | None:
    if v is None or not np.isfinite(v):
        return None
    return float(f"{float(v):.{digits}g}")


def inference_message(device: str, seq: int, ts_ms: int, machine: Machine, w: Window, models: Any) -> dict:
    """DSP + both int8 models on one window; the ``inference`` message (not yet published)."""
    feats = extract_window(w)
    vec = to_vector(feats)[None, :]
    labels, scores = models.classify(vec)
    anomaly = float(models.anomaly(vec)[0])
    return {"v": SCHEMA_VERSION, "device": device, "seq": seq, "ts": ts_ms, "model": models.model_id,
            "window_s": round(len(w.accel_g) / w.fs_hz, 6), "shaft_hz": _num(w.shaft_hz),
            "iso_group": int(machine.iso_group), "foundation": machine.foundation,
            "features": {k: _num(v) for k, v in feats.as_dict().items()},
            "class": labels[0], "scores": {k: round(min(1.0, max(0.0, float(p))), 4) for k, p in scores[0].items()},
            "anomaly": round(max(0.0, anomaly), 6), "anomaly_model": models.anomaly_model_id}


def window_channels(w: Window) -> dict[str, Any]:
    """The firmware's sensor table for one window (industrial_iot/firmware): channel -> samples."""
    return {"accel": np.asarray(w.accel_g, dtype=np.float64), "shaft_hz": float(w.shaft_hz)}


def fleet(args: argparse.Namespace | None, mqtt: str, machines: Sequence[Machine], models_dir: Path,
          start_ms: Mapping[str, int], on_publish: Any = None, trusted_key: Path | None = None) -> DeviceFleet:
    """Simulated sensor nodes on ``machines`` (one MQTT client each, the models of ``models_dir``); a machine's
    t = 0 is ``start_ms[id]``. A signed update replaces the condition classifier; the autoencoder stays."""
    from industrial_iot.tiny import TinyModels

    models = TinyModels.load(models_dir)
    anomaly_tflite = (Path(models_dir) / "anomaly.tflite").read_bytes()

    def process(d: SimDevice, t_end_s: float) -> dict:
        return inference_message(d.id, d.seq, d.ts_ms(t_end_s), d.subject, d.subject.window(t_end_s), d.model)

    def reload(d: SimDevice, tflite: bytes, version: int) -> Any:
        m = d.model
        return TinyModels(tflite, anomaly_tflite, m.anomaly_threshold, m.labels, str(version))

    return DeviceFleet(DOMAIN.name, args, mqtt, machines, models, dict(start_ms), process,
                       reload=reload, on_publish=on_publish, trusted_key=trusted_key)


def sample_messages(models_dir: Path) -> dict[str, list[dict]]:
    """Inference messages made the way the sensor nodes make them (the contract suite validates them
    against the schema): windows of healthy and faulty machines."""
    from industrial_iot.signals import FleetConfig, simulate_fleet
    from industrial_iot.tiny import TinyModels

    models = TinyModels.load(models_dir)
    machines = simulate_fleet(FleetConfig(n_machines=4, duration_h=48.0, seed=5, fault_share=0.5))
    msgs = [inference_message(m.id, k, 1_700_000_000_000 + int(t * 1000), m, m.window(t), models)
            for m in machines for k, t in enumerate((3600.0, 40 * 3600.0))]
    return {"inference": msgs}
