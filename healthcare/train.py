"""Train the healthcare models: tiny (device, int8) then large (cloud transformer), with a stamp.

``train_all`` simulates a TRAINING cohort and a separate HELD-OUT cohort (other seed, other
patients), extracts every window's features (cached as .npz under ``<models>/cache``), trains and
exports the tiny model, scores every window with the int8 tiny model, trains the risk transformer on
the training cohort and evaluates both models on the held-out one. It writes into ``models_dir``:

    tiny.tflite  tiny.keras  labels.json  tiny_metrics.json   the device model
    large/ (config.json, model.safetensors)                   the cloud model (save_pretrained)
    metrics.json                                              headline figures (see below)
    stamp.json                                                config hash of what was trained

``ensure_trained`` retrains only when the stamp is missing or its hash differs (config, simulator
and DSP sources, step-vector layout).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from healthcare.large import LargeConfig
from healthcare.signals import CohortConfig
from healthcare.tiny import TinyConfig

DEFAULT_MODELS_DIR = Path("models/healthcare")
FORMAT_VERSION = 1  # bump when the saved layout or the step vector changes


@dataclass
class TrainConfig:
    """Everything `train_all` needs (defaults: the full models; `TrainConfig.quick()` for tests)."""

    train_cohort: CohortConfig = field(default_factory=lambda: CohortConfig(n_patients=160, duration_h=36.0, seed=1))
    test_cohort: CohortConfig = field(default_factory=lambda: CohortConfig(n_patients=60, duration_h=36.0, seed=2))
    tiny: TinyConfig = field(default_factory=TinyConfig)
    large: LargeConfig = field(default_factory=LargeConfig)
    workers: int = 2  #: processes for feature extraction

    def __post_init__(self) -> None:
        if self.train_cohort.seed == self.test_cohort.seed:
            raise ValueError("TrainConfig.test_cohort: seed must differ from train_cohort's (other patients)")
        if self.workers < 1:
            raise ValueError(f"TrainConfig.workers: must be >= 1, got {self.workers!r}")

    @classmethod
    def quick(cls) -> TrainConfig:
        """Small cohorts and 1-2 epochs: seconds, for tests and `--quick`."""
        return cls(train_cohort=CohortConfig(n_patients=8, duration_h=10.0, deteriorating_fraction=0.5, seed=11),
                   test_cohort=CohortConfig(n_patients=4, duration_h=10.0, deteriorating_fraction=0.5, seed=12),
                   tiny=TinyConfig(hidden=(16, 8), teacher_hidden=(32,), teacher_epochs=3, epochs=3,
                                   batch_size=32, representative_n=200),
                   large=LargeConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, epochs=1, samples_per_epoch=256,
                                     batch_size=64, alert_fpr=0.1))

    def key(self) -> str:
        """Hash of the config, the cohort tables' keys (simulator/DSP sources) and the layout version."""
        from healthcare._dataset import cohort_key
        from healthcare.large import INPUT_NAMES

        blob = json.dumps({"cfg": asdict(self), "train": cohort_key(self.train_cohort),
                           "test": cohort_key(self.test_cohort), "inputs": INPUT_NAMES, "v": FORMAT_VERSION},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def train_all(models_dir: Path = DEFAULT_MODELS_DIR, cfg: TrainConfig | None = None, quick: bool = False
              ) -> dict[str, Any]:
    """Train tiny then large; write the models, metrics.json and the stamp; return the metrics."""
    import numpy as np

    from healthcare import large, tiny
    from healthcare._dataset import load_table
    from shared.progress import progress as progress_bar

    cfg = cfg or (TrainConfig.quick() if quick else TrainConfig())
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    cache = models_dir / "cache"
    tr = load_table(cfg.train_cohort, cache, cfg.workers, desc="features (train cohort)")
    te = load_table(cfg.test_cohort, cache, cfg.workers, desc="features (held-out cohort)")
    t_data = time.monotonic() - t0

    stages = ["teacher", "student", "int8", "evaluate"]
    with progress_bar(total=len(stages), desc="tiny model", unit="stage") as bar:
        def progress(stage: str) -> None:
            bar.set_postfix_str(stage)
            if stage != stages[0]:
                bar.update(1)

        data = tiny.TinyData(tr.vector, tr.label.astype(int), tr.patient, te.vector, te.label.astype(int), te.patient)
        res = tiny.train_tiny(cfg.tiny, data, progress=progress)
        bar.update(1)
    tiny.save_tiny(res, models_dir)
    t_tiny = time.monotonic() - t0 - t_data

    tm = tiny.TinyModel(res.tflite, version=cfg.tiny.version)
    train_steps = large.patient_steps(tr, tm.scores(tr.vector), cfg.large.horizon_h)
    test_steps = large.patient_steps(te, tm.scores(te.vector), cfg.large.horizon_h)
    lc = cfg.large
    n_fit = lc.epochs * min(lc.samples_per_epoch, int(sum(s.eligible.sum() for s in train_steps)))
    n_pred = sum(len(np.flatnonzero(s.eligible)[::3]) for s in train_steps) + sum(
        int(s.eligible.sum()) for s in test_steps)
    with progress_bar(total=n_fit + n_pred, desc="risk transformer", unit="sample") as bar:
        model, lm = large.train_large(lc, train_steps, test_steps, bar=bar)
    model.save_pretrained(str(models_dir / "large"))
    t_total = time.monotonic() - t0

    m = res.metrics
    metrics = {
        "tiny_float_acc": m["float_acc"], "tiny_int8_acc": m["int8_acc"], "tiny_teacher_acc": m["teacher_acc"],
        "tiny_float_macro_f1": m["float_macro_f1"], "tiny_int8_macro_f1": m["int8_macro_f1"],
        "tiny_weights_bytes": m["weights_bytes"], "tiny_arena_bytes": m["arena_bytes"], "tiny_ops": m["ops"],
        "tiny_model_id": m["model_id"],
        **{k: lm[k] for k in ("risk_auroc", "news2_auroc", "risk_auroc_all_steps", "lead_time_min",
                              "news2_lead_time_min", "risk_detected", "news2_detected", "events_test",
                              "alert_threshold", "risk_fpr_test", "news2_fpr_test", "risk_sensitivity_test",
                              "news2_sensitivity_test", "horizon_h", "model_id")},
        "train_patients": cfg.train_cohort.n_patients, "test_patients": cfg.test_cohort.n_patients,
        "train_windows": len(tr.t_s), "test_windows": len(te.t_s),
        "time_data_s": round(t_data, 1), "time_tiny_s": round(t_tiny, 1), "time_total_s": round(t_total, 1),
        "quick": quick or cfg == TrainConfig.quick(),
        "large": lm,
    }
    from shared.runtime.training import write_stamp

    write_stamp(models_dir, cfg.key(), metrics, quick=metrics["quick"])
    return metrics


_OUTPUTS = ("tiny.tflite", "labels.json", "metrics.json", "large/config.json")


def ensure_trained(models_dir: Path = DEFAULT_MODELS_DIR, quick: bool = False, cfg: TrainConfig | None = None
                   ) -> dict[str, Any]:
    """Metrics of the models in `models_dir`, training them first if the stamp is missing or stale.

    With `quick`, models trained with the full config are accepted too (never replaced by quick ones).
    """
    from shared.runtime.training import ensure_trained as ensure

    cfg = cfg or (TrainConfig.quick() if quick else TrainConfig())
    return ensure(Path(models_dir), cfg.key(), lambda: train_all(models_dir, cfg, quick=quick), _OUTPUTS,
                  also_accept={TrainConfig().key()} if quick else ())

