"""vehicles' adapters for the integration strategies (:mod:`shared.integration`).

The tiny model's task: every candidate window (``features.candidates``) of the training, held-out and
crash-rich fleets, its ``to_vector`` and its true label, grouped by VEHICLE (one driver per vehicle), so
the strategies' splits keep a driver's windows together. The distillation task: the same windows,
with the driver-risk transformer's probability of an incident within ``horizon_trips`` segments at
the window's trip as the teacher, the observed incident as the truth.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vehicles.train import DEFAULT_MODELS_DIR, TrainConfig


def tiny_task(quick: bool = False) -> Any:
    """The event classifier's candidate windows of the training, crash-rich and held-out fleets, by vehicle."""
    import numpy as np

    from shared.integration.task import TinyTask
    from vehicles import tiny
    from vehicles._dataset import load_fleet
    from vehicles.signals import LABELS

    cfg = TrainConfig.quick() if quick else TrainConfig()
    cache = DEFAULT_MODELS_DIR / "cache"
    parts = [load_fleet(cfg.train_fleet, cfg.n_trips, cache, workers=cfg.workers, desc="trips (training fleet)"),
             load_fleet(cfg.crash_fleet, cfg.crash_trips, cache, extra_crash=3, workers=cfg.workers,
                        desc="trips (crash-rich)"),
             load_fleet(cfg.test_fleet, cfg.n_trips, cache, workers=cfg.workers, desc="trips (held-out fleet)")]
    return TinyTask("vehicles", np.concatenate([t.w_vector for t in parts]),
                    np.concatenate([t.w_label for t in parts]).astype(int),
                    np.concatenate([t.vehicle[t.w_row] for t in parts]), tuple(LABELS), tuple(cfg.tiny.hidden),
                    tiny.MODEL_NAME)


def distill_task(quick: bool = False, models_dir: Path | None = None) -> Any:
    """The driver-risk transformer as a teacher for the unit (``shared.integration.distill``): per candidate
    window of the training and held-out fleets, the unit's input vector, the transformer's risk at that
    window's trip given the vehicle's history up to it, the truth (an incident within the horizon) and
    the vehicle. Trains the models if needed; cached per stamp."""
    import numpy as np

    from shared.integration.distill import DistillTask
    from shared.runtime.training import cached_arrays
    from vehicles import large
    from vehicles import train as veh_train
    from vehicles._dataset import load_fleet
    from vehicles.signals import simulate_fleet
    from vehicles.tiny import TinyModel

    models = Path(models_dir or DEFAULT_MODELS_DIR)
    veh_train.ensure_trained(models, quick=quick)
    stamp = json.loads((models / "stamp.json").read_text())
    cfg = TrainConfig.quick() if stamp.get("quick") else TrainConfig()

    def build() -> dict[str, Any]:
        predictor = large.RiskPredictor.load(models / "large", threads=cfg.large.threads)
        tm = TinyModel.load(models)
        cols: dict[str, list] = {"x": [], "teacher": [], "y": [], "groups": [], "train": []}
        for is_train, fleet in ((True, cfg.train_fleet), (False, cfg.test_fleet)):
            tables = load_fleet(fleet, cfg.n_trips, models / "cache", workers=cfg.workers)
            pred = tm.scores(tables.w_vector).argmax(1) if len(tables.w_vector) else np.zeros(0, int)
            vehicles = {v.id: v for v in simulate_fleet(fleet)}
            seqs = large.sequences(tables, veh_train.tiny_counts(tables, pred), vehicles, predictor.horizon_trips,
                                   cfg.large.follow_up_trips)
            risk = predictor.predict_batch([s["x"][: t + 1] for s in seqs for t in range(len(s["y"]))])
            at = 0
            for s in seqs:
                rows = np.flatnonzero(tables.vehicle == s["vehicle"])
                rows = rows[np.argsort(tables.trip[rows])]
                for t, r in enumerate(rows):
                    w = np.flatnonzero(tables.w_row == r)
                    cols["x"].append(tables.w_vector[w])
                    cols["teacher"].append(np.full(len(w), float(risk[at + t])))
                    cols["y"].append(np.full(len(w), int(s["y"][t])))
                    cols["groups"].append(np.full(len(w), s["vehicle"]))
                    cols["train"].append(np.full(len(w), is_train))
                at += len(rows)
        return {k: np.concatenate(v) for k, v in cols.items()}

    arrays = cached_arrays(models / "cache" / f"distill-{stamp['key']}.npz", build)
    return DistillTask("vehicles", arrays["x"], np.clip(arrays["teacher"], 0.0, 1.0), arrays["y"], arrays["groups"],
                       arrays["train"], tuple(cfg.tiny.hidden), "veh-risk-tiny",
                       f"incident within {cfg.large.horizon_trips} segments",
                       f"{large.MODEL_NAME}@{cfg.large.version}",
                       extra={"models_dir": str(models), "quick_models": bool(stamp.get("quick"))})
