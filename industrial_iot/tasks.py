"""industrial_iot's adapters for the integration strategies (:mod:`shared.integration`)."""

from __future__ import annotations

from pathlib import Path
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


def distill_task(quick: bool = False, models_dir: Path | None = None) -> Any:
    """The failure-risk transformer as a teacher for the sensor node (``shared.integration.distill``): per
    step before the functional failure, of the training and held-out fleets, the device's input vector
    (``features.to_vector``), the transformer's risk given the machine's history up to that step, the
    truth (failure within the horizon) and the machine. Trains the models if needed; cached per stamp."""
    import json

    import numpy as np
    import torch

    from industrial_iot import train as iot_train
    from industrial_iot._dataset import load_fleet
    from industrial_iot.large import MODEL_NAME, RiskTransformer, _predict, machine_steps
    from industrial_iot.tiny import TinyModels
    from shared.integration.distill import DistillTask
    from shared.runtime.training import cached_arrays

    models = Path(models_dir or iot_train.DEFAULT_MODELS_DIR)
    iot_train.ensure_trained(models, quick=quick)
    stamp = json.loads((models / "stamp.json").read_text())
    cfg = iot_train.TrainConfig.quick() if stamp.get("quick") else iot_train.TrainConfig()

    def build() -> dict[str, Any]:
        model = RiskTransformer.from_pretrained(str(models / "large")).eval()
        tm = TinyModels.load(models)
        torch.set_num_threads(cfg.large.threads)
        horizon = float(model.config.horizon_h)
        cols: dict[str, list] = {"x": [], "teacher": [], "y": [], "groups": [], "train": []}
        for is_train, fleet in ((True, cfg.train_fleet), (False, cfg.test_fleet)):
            table = load_fleet(fleet, models / "cache", cfg.workers)
            steps = machine_steps(table, tm.scores(table.vector), tm.anomaly(table.vector))
            risks, _ = _predict(model, steps)
            for s, risk in zip(steps, risks, strict=True):
                rows = table.rows_of(s.machine)
                rows = rows[table.t_s[rows] < s.failure_s]
                cols["x"].append(table.vector[rows])
                cols["teacher"].append(risk)
                cols["y"].append(s.labels(horizon))
                cols["groups"].append(np.full(len(rows), s.machine))
                cols["train"].append(np.full(len(rows), is_train))
        return {k: np.concatenate(v) for k, v in cols.items()}

    arrays = cached_arrays(models / "cache" / f"distill-{stamp['key']}.npz", build)
    return DistillTask("industrial_iot", arrays["x"], arrays["teacher"], arrays["y"], arrays["groups"],
                       arrays["train"], tuple(cfg.tiny.hidden), "iot-risk-tiny", f"failure {cfg.large.horizon_h:g}h",
                       f"{MODEL_NAME}@{cfg.large.version}", extra={"models_dir": str(models),
                                                                  "quick_models": bool(stamp.get("quick"))})
