"""A simulated EEG headset: 8 channels at 128 Hz -> headset DSP -> int8 affect model -> one MQTT message.

It does what the C firmware does (metaverse_eeg/firmware), in Python: every ``window_every_s`` it
takes the last 4 s of EEG, extracts the features of ``metaverse_eeg.features``, estimates the valence x
arousal quadrant with the int8 model and publishes an ``inference`` message (QoS 1, schema
metaverse_eeg/schemas/inference.json).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metaverse_eeg import CHANNELS, DOMAIN
from metaverse_eeg.features import extract_window, to_vector
from metaverse_eeg.signals import Window
from shared.protocol.messages import SCHEMA_VERSION
from shared.runtime.fleet import DeviceFleet, SimDevice


def _num(v: float) -> float | None:
    return float(f"{float(v):.6g}") if np.isfinite(v) else None


def inference_message(device: str, seq: int, ts_ms: int, w: Window, tiny: Any) -> dict:
    """DSP + the int8 model on one window: the ``inference`` message (not yet published)."""
    from metaverse_eeg.tiny import valence_arousal

    feats = extract_window(w)
    scores = tiny.scores(to_vector(feats)[None, :])
    pv, pa = valence_arousal(scores)
    s = np.clip(scores[0], 0.0, 1.0)
    return {"v": SCHEMA_VERSION, "device": device, "seq": seq, "ts": ts_ms, "model": tiny.model_id,
            "window_s": round(w.eeg.shape[1] / w.fs_hz, 6),
            "features": {k: _num(v) for k, v in feats.as_dict().items()},
            "class": tiny.labels[int(np.argmax(scores[0]))],
            "scores": {lab: round(float(p), 4) for lab, p in zip(tiny.labels, s, strict=True)},
            "valence": round(min(1.0, max(0.0, float(pv[0]))), 4),
            "arousal": round(min(1.0, max(0.0, float(pa[0]))), 4),
            "artefact": bool(feats.blink or feats.emg or feats.bad_channels)}


def window_channels(w: Window) -> dict[str, Any]:
    """The firmware's sensor table for one window (metaverse_eeg/firmware): channel -> samples (uV)."""
    eeg = np.asarray(w.eeg, dtype=np.float64)
    return {c: eeg[i] for i, c in enumerate(CHANNELS)}


def fleet(args: argparse.Namespace | None, mqtt: str, users: Sequence[Any], models_dir: Path,
          start_ms: Mapping[str, int], on_publish: Any = None, trusted_key: Path | None = None) -> DeviceFleet:
    """Simulated headsets on ``users`` (one MQTT client each); a user's t = 0 is ``start_ms[id]``. Each
    headset advances its user's affect to the window's end first (a no-op where the world already did)."""
    from metaverse_eeg.tiny import TinyModel

    tiny = TinyModel.load(models_dir)

    def process(d: SimDevice, t_end_s: float) -> dict:
        d.subject.advance(t_end_s)
        return inference_message(d.id, d.seq, d.ts_ms(t_end_s), d.subject.window(t_end_s), d.model)

    def reload(d: SimDevice, tflite: bytes, version: int) -> Any:
        return TinyModel(tflite, d.model.labels, str(version))

    return DeviceFleet(DOMAIN.name, args, mqtt, users, tiny, dict(start_ms), process, reload=reload,
                       on_publish=on_publish, trusted_key=trusted_key)


def sample_messages(models_dir: Path) -> dict[str, list[dict]]:
    """Messages made the way headsets and the world make them (the contract suite validates them)."""
    from metaverse_eeg.signals import SessionConfig, simulate_users
    from metaverse_eeg.tiny import TinyModel

    tiny = TinyModel.load(models_dir)
    users = simulate_users(SessionConfig(n_users=3, duration_h=0.1, seed=5))
    msgs, scenes = [], []
    for u in users:
        for k, t in enumerate((4.0, 64.0)):
            u.advance(t)
            ts = 1_700_000_000_000 + int(t * 1000)
            msgs.append(inference_message(u.id, k, ts, u.window(t), tiny))
            scenes.append(scene_message(u, k, ts, "none"))
    return {"inference": msgs, "scene": scenes}


def scene_message(user: Any, seq: int, ts_ms: int, applied: str) -> dict:
    """The world's ``scene`` message for one user (the world publishes it after applying actions)."""
    return {"v": SCHEMA_VERSION, "device": user.id, "seq": seq, "ts": ts_ms, "model": "world@1",
            **user.scene.as_dict(), "since_change_s": round(float(user.scene.since_change_s), 1), "applied": applied}

