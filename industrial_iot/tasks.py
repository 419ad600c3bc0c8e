"""industrial_iot's adapters for the integration strategies (:mod:`shared.integration`)."""

from __future__ import annotations

from typing import Any

from industrial_iot.train import DEFAULT_MODELS_DIR, TrainConfig


def tiny_task(quick: bool = False) -> Any:
    """The classifier's windows of the training and held-out fleets, by machine (integration strategies).

    Normal windows and faults past ``min_severity`` (the windows the tiny model is trained and judged
    on); each machine carries its own history, so per-machine data is non-IID by construction.
    """
    import numpy as np

    from industrial_iot import tiny
    from industrial_iot._dataset import load_fleet
    from industrial_iot.signals import LABELS
    from shared.integration.task import TinyTask

    cfg = TrainConfig.quick() if quick else TrainConfig()
    cache = DEFAULT_MODELS_DIR / "cache"
    parts = []
    for fleet in (cfg.train_fleet, cfg.test_fleet):
        t = load_fleet(fleet, cache, cfg.workers, desc=f"features (fleet {fleet.seed})")
        parts.append(t.subset((t.label == 0) | (t.severity >= cfg.min_severity)))
    return TinyTask("industrial_iot", np.concatenate([t.vector for t in parts]),
                    np.concatenate([t.label for t in parts]).astype(int),
                    np.concatenate([t.machine for t in parts]), tuple(LABELS), tuple(cfg.tiny.hidden),
                    tiny.MODEL_NAME)
