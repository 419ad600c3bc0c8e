"""A simulated EEG headset: 8 channels at 128 Hz -> headset DSP -> int8 affect model -> one MQTT message.

It does what the C firmware does (firmware/apps/metaverse_eeg), in Python: every ``window_every_s`` it
takes the last 4 s of EEG, extracts the features of ``metaverse_eeg.features``, estimates the valence x
arousal quadrant with the int8 model and publishes an ``inference`` message (QoS 1, schema
metaverse_eeg/schemas/inference.json).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metaverse_eeg import CHANNELS
from metaverse_eeg.features import extract_window, to_vector
from metaverse_eeg.signals import Window
from shared.protocol.messages import SCHEMA_VERSION
from shared.runtime.fleet import DeviceFleet, SimDevice, utc_midnight_ms

DOMAIN = "metaverse_eeg"


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
    """The firmware's sensor table for one window (firmware/apps/metaverse_eeg): channel -> samples (uV)."""
    eeg = np.asarray(w.eeg, dtype=np.float64)
    return {c: eeg[i] for i, c in enumerate(CHANNELS)}


def fleet(args: argparse.Namespace | None, mqtt: str, users: Sequence[Any], models_dir: Path, day0_ms: int,
          on_publish: Any = None, trusted_key: Path | None = None) -> DeviceFleet:
    """Simulated headsets on ``users`` (one MQTT client each); t = 0 is ``day0_ms``. The caller advances
    the users' affect before each ``step_all``."""
    from metaverse_eeg.tiny import TinyModel

    tiny = TinyModel.load(models_dir)

    def process(d: SimDevice, t_end_s: float) -> dict:
        return inference_message(d.id, d.seq, d.ts_ms(t_end_s), d.subject.window(t_end_s), d.model)

    def reload(d: SimDevice, tflite: bytes, version: int) -> Any:
        return TinyModel(tflite, d.model.labels, str(version))

    return DeviceFleet(DOMAIN, args, mqtt, users, tiny, {u.id: day0_ms for u in users}, process, reload=reload,
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


def main(argv: Sequence[str] | None = None) -> int:
    """``tinylarge device metaverse_eeg``: run N simulated headsets against a broker (no world feedback)."""
    import os

    from metaverse_eeg.signals import SessionConfig, simulate_users
    from metaverse_eeg.train import ensure_trained
    from shared.cli import add_endpoint_args

    ap = argparse.ArgumentParser(prog="tinylarge device metaverse_eeg", description=__doc__.splitlines()[0])
    add_endpoint_args(ap)
    ap.add_argument("--models", type=Path, default=Path("models/metaverse_eeg"))
    ap.add_argument("--users", type=int, default=4, help="number of users (one headset each)")
    ap.add_argument("--minutes", type=float, default=10.0, help="simulated minutes to run")
    ap.add_argument("--speed", type=float, default=10.0, help="simulated seconds per wall second")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--quick-train", action="store_true", help="if models are missing, train small ones fast")
    args = ap.parse_args(argv)
    mqtt = args.mqtt or os.environ.get("TINYLARGE_MQTT")
    if not mqtt:
        ap.error("--mqtt (or TINYLARGE_MQTT) is required: headsets connect to the broker the service uses")
    if args.users < 1 or not args.minutes > 0:
        ap.error("--users must be >= 1 and --minutes > 0")
    ensure_trained(args.models, quick=args.quick_train)
    cfg = SessionConfig(n_users=args.users, duration_h=args.minutes / 60.0, seed=args.seed)
    users = simulate_users(cfg)
    nodes = fleet(args, mqtt, users, args.models, utc_midnight_ms())
    nodes.start()
    try:
        t0 = time.monotonic()
        for t_s in cfg.times_s:
            for u in users:
                u.advance(float(t_s))
            nodes.step_all(float(t_s))
            time.sleep(max(0.0, t0 + float(t_s) / args.speed - time.monotonic()))
    finally:
        nodes.stop()
    print(f"published {nodes.published} inferences from {len(users)} headsets", flush=True)
    return 0
