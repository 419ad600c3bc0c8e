"""healthcare's adapters for the integration strategies (:mod:`shared.integration`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from healthcare.train import DEFAULT_MODELS_DIR, TrainConfig


def tiny_task(quick: bool = False) -> Any:
    """The tiny model's windows over the training and held-out cohorts, by patient (integration strategies)."""
    import numpy as np

    from healthcare import tiny
    from healthcare._dataset import load_table
    from healthcare.signals import LABELS
    from shared.integration.task import TinyTask

    cfg = TrainConfig.quick() if quick else TrainConfig()
    cache = DEFAULT_MODELS_DIR / "cache"
    tables = [load_table(c, cache, cfg.workers, desc=f"features (cohort {c.seed})")
              for c in (cfg.train_cohort, cfg.test_cohort)]
    return TinyTask("healthcare", np.concatenate([t.vector for t in tables]),
                    np.concatenate([t.label for t in tables]).astype(int),
                    np.concatenate([t.patient for t in tables]), tuple(LABELS), tuple(cfg.tiny.hidden),
                    tiny.MODEL_NAME)


def distill_task(quick: bool = False, models_dir: Path | None = None) -> Any:
    """The risk transformer as a teacher for the wearable (``shared.integration.distill``): per eligible
    window (before the event) of the training and held-out cohorts, the device's input vector, the
    transformer's risk given the patient's history up to that window, the truth (event within the
    horizon) and the patient. Trains the models if needed; the teacher's outputs are cached per stamp.
    With the full models, every 2nd window of a training patient (10 min apart) is kept (half the teacher's
    CPU time); held-out patients keep every window."""
    import json

    import numpy as np
    import torch

    from healthcare import large
    from healthcare._dataset import load_table
    from healthcare.tiny import TinyModel
    from healthcare.train import ensure_trained
    from shared.integration.distill import DistillTask
    from shared.runtime.training import cached_arrays

    models = Path(models_dir or DEFAULT_MODELS_DIR)
    ensure_trained(models, quick=quick)
    stamp = json.loads((models / "stamp.json").read_text())
    cfg = TrainConfig.quick() if stamp.get("quick") else TrainConfig()
    train_stride = 1 if stamp.get("quick") else 2

    def build() -> dict[str, np.ndarray]:
        model = large.RiskTransformer.from_pretrained(str(models / "large")).eval()
        tm = TinyModel.load(models)
        torch.set_num_threads(cfg.large.threads)
        cols: dict[str, list] = {"x": [], "teacher": [], "y": [], "groups": [], "train": []}
        for is_train, cohort in ((True, cfg.train_cohort), (False, cfg.test_cohort)):
            table = load_table(cohort, models / "cache", cfg.workers)
            steps = large.patient_steps(table, tm.scores(table.vector), float(model.config.horizon_h))
            stride = train_stride if is_train else 1
            for s, risk in zip(steps, large.predict_steps(model, steps, stride=stride), strict=True):
                keep = ~np.isnan(risk)  # eligible (before the event), every stride-th
                rows = table.rows_of(s.patient)[keep]
                cols["x"].append(table.vector[rows])
                cols["teacher"].append(risk[keep])
                cols["y"].append(s.y[keep])
                cols["groups"].append(np.full(len(rows), s.patient))
                cols["train"].append(np.full(len(rows), is_train))
        return {k: np.concatenate(v) for k, v in cols.items()}

    arrays = cached_arrays(models / "cache" / f"distill-{stamp['key']}-{train_stride}.npz", build)
    horizon = cfg.large.horizon_h
    return DistillTask("healthcare", arrays["x"], arrays["teacher"], arrays["y"], arrays["groups"], arrays["train"],
                       tuple(cfg.tiny.hidden), "hc-risk-tiny", f"deterioration {horizon:g}h",
                       f"{large.MODEL_NAME}@{cfg.large.version}",
                       extra={"models_dir": str(models), "quick_models": bool(stamp.get("quick"))})
