"""Train the industrial_iot models: tiny (device: classifier + anomaly autoencoder, int8) then large
(cloud: failure-risk and RUL transformer), with a stamp.

``train_all`` simulates a TRAINING fleet and a separate HELD-OUT fleet (other seed, other machines),
extracts every window's features with the device DSP (cached as .npz under ``<models>/cache``), plus
class-balanced labelled windows from independent random machines (`signals.training_windows`, one
machine each, again a training and a held-out set). It trains and exports the tiny models on the
training machines, scores every fleet window with the int8 tiny models (as the devices would), trains
the risk transformer on the training fleet's message histories and evaluates everything on the
held-out machines, the transformer beside the ISO 10816-3 zone rule and the anomaly-score rule.
It writes into ``models_dir``:

    tiny.tflite  anomaly.tflite  labels.json  tiny_metrics.json   the device models
    large/ (config.json, model.safetensors)                       the cloud model (save_pretrained)
    metrics.json                                                  headline figures
    stamp.json                                                    config hash of what was trained

``ensure_trained`` retrains only when the stamp is missing or its hash differs (config, simulator and
DSP sources, step-vector layout). The full config trains in about 5 minutes on 2 CPU cores (most of it
the DSP over ~27 000 windows); ``TrainConfig.quick()`` in well under a minute.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from industrial_iot.large import LargeConfig
from industrial_iot.signals import FleetConfig
from industrial_iot.tiny import TinyConfig

DEFAULT_MODELS_DIR = Path("models/industrial_iot")
FORMAT_VERSION = 1  # bump when the saved layout or the step vector changes
OUTPUTS = ("tiny.tflite", "anomaly.tflite", "labels.json", "large/config.json")


def _fleet(n: int, seed: int) -> FleetConfig:
    return FleetConfig(n_machines=n, duration_h=36 * 24.0, window_every_s=4 * 3600.0, seed=seed)


@dataclass
class TrainConfig:
    """Everything `train_all` needs (defaults: the full models; `TrainConfig.quick()` for tests).

    Fleets: 36 simulated days, one window per machine every 4 h (216 windows per machine); half the
    machines develop a fault (the six types evenly) that grows over 72-480 h to a functional failure.
    """

    train_fleet: FleetConfig = field(default_factory=lambda: _fleet(80, 101))  #: fleet the models learn from
    test_fleet: FleetConfig = field(default_factory=lambda: _fleet(48, 202))  #: held-out machines (other seed)
    labelled_train_n: int = 2100  #: class-balanced labelled windows (one random machine each) for training
    labelled_test_n: int = 1050  #: class-balanced labelled windows of other machines for the tiny test
    labelled_seeds: tuple[int, int] = (103, 203)  #: seeds of the labelled training and test windows
    min_severity: float = 0.1  #: fleet fault windows below this severity do not train or test the classifier
    tiny: TinyConfig = field(default_factory=TinyConfig)
    large: LargeConfig = field(default_factory=LargeConfig)
    workers: int = 2  #: processes for feature extraction

    def __post_init__(self) -> None:
        if self.train_fleet.seed == self.test_fleet.seed:
            raise ValueError("TrainConfig.test_fleet: seed must differ from train_fleet's (other machines)")
        if self.labelled_seeds[0] == self.labelled_seeds[1]:
            raise ValueError("TrainConfig.labelled_seeds: the training and test seeds must differ")
        for key in ("labelled_train_n", "labelled_test_n", "workers"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ValueError(f"TrainConfig.{key}: must be an integer >= 1, got {getattr(self, key)!r}")
        if not 0.0 <= self.min_severity < 1.0:
            raise ValueError(f"TrainConfig.min_severity: must be in [0, 1), got {self.min_severity!r}")

    @classmethod
    def quick(cls) -> TrainConfig:
        """Small fleets, few epochs: well under a minute, for tests and the quick demo."""
        fleet = dict(duration_h=10 * 24.0, window_every_s=6 * 3600.0, growth_h=(48.0, 120.0), onset_frac=(0.0, 0.5))
        return cls(train_fleet=FleetConfig(n_machines=12, seed=11, **fleet),
                   test_fleet=FleetConfig(n_machines=6, seed=12, **fleet),
                   labelled_train_n=140, labelled_test_n=70, labelled_seeds=(13, 14),
                   tiny=TinyConfig(hidden=(16,), epochs=8, ae_hidden=(12, 6, 12), ae_epochs=8, batch_size=64,
                                   representative_n=200),
                   large=LargeConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, seq_len=20, epochs=1,
                                     samples_per_epoch=256, batch_size=64, alert_fpr=0.05, val_fraction=0.25))

    def key(self) -> str:
        """Hash of the config, the tables' keys (simulator/DSP sources) and the layout version."""
        from industrial_iot._dataset import fleet_key, labelled_key
        from industrial_iot.large import INPUT_NAMES
        from shared.runtime.training import config_key

        return config_key({"cfg": asdict(self), "train": fleet_key(self.train_fleet),
                           "test": fleet_key(self.test_fleet),
                           "labelled": [labelled_key(self.labelled_train_n, self.labelled_seeds[0], (0.1, 1.0)),
                                        labelled_key(self.labelled_test_n, self.labelled_seeds[1], (0.1, 1.0))],
                           "inputs": INPUT_NAMES, "v": FORMAT_VERSION})


def _stage_bar(desc: str, stages: list[str]) -> Any:
    from shared.progress import progress as progress_bar

    bar = progress_bar(total=len(stages), desc=desc, unit="stage")

    def progress(stage: str) -> None:
        bar.set_postfix_str(stage)
        if stage != stages[0]:
            bar.update(1)

    return bar, progress


def train_all(models_dir: Path = DEFAULT_MODELS_DIR, cfg: TrainConfig | None = None, quick: bool = False
              ) -> dict[str, Any]:
    """Train tiny then large; write the models, metrics.json and the stamp; return the metrics."""
    from industrial_iot import large, tiny
    from industrial_iot._dataset import concat, load_fleet, load_labelled
    from shared.progress import progress as progress_bar
    from shared.runtime.training import write_stamp

    cfg = cfg or (TrainConfig.quick() if quick else TrainConfig())
    quick = quick or cfg == TrainConfig.quick()
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    cache = models_dir / "cache"
    tr = load_fleet(cfg.train_fleet, cache, cfg.workers, desc="features (training fleet)")
    te = load_fleet(cfg.test_fleet, cache, cfg.workers, desc="features (held-out fleet)")
    lab_tr = load_labelled(cfg.labelled_train_n, cfg.labelled_seeds[0], cache, workers=cfg.workers,
                           desc="features (labelled, training)")
    lab_te = load_labelled(cfg.labelled_test_n, cfg.labelled_seeds[1], cache, workers=cfg.workers,
                           desc="features (labelled, held-out)")
    t_data = time.monotonic() - t0

    def clear(t: Any) -> Any:  # normal windows and faults past min_severity
        return (t.label == 0) | (t.severity >= cfg.min_severity)

    tiny_tr = concat(lab_tr, tr.subset(clear(tr)))
    fleet_te = te.subset(clear(te))
    data = tiny.TinyData(tiny_tr.vector, tiny_tr.label.astype(int), tiny_tr.machine,
                         lab_te.vector, lab_te.label.astype(int), lab_te.machine,
                         fleet_te.vector, fleet_te.label.astype(int), fleet_te.machine)
    stages = ["classifier", "autoencoder", "int8", "evaluate"]
    bar, progress = _stage_bar("tiny models", stages)
    with bar:
        res = tiny.train_tiny(cfg.tiny, data, progress=progress)
        bar.update(1)
    tiny.save_tiny(res, models_dir)
    t_tiny = time.monotonic() - t0 - t_data

    tm = tiny.TinyModels(res.tflite, res.anomaly_tflite, res.anomaly_threshold, version=cfg.tiny.version)
    train_steps = large.machine_steps(tr, tm.scores(tr.vector), tm.anomaly(tr.vector))
    test_steps = large.machine_steps(te, tm.scores(te.vector), tm.anomaly(te.vector))
    lc = cfg.large
    n_fit = lc.epochs * min(lc.samples_per_epoch, int(sum(len(s.t_s) for s in train_steps) * (1 - lc.val_fraction)))
    n_pred = sum(len(s.t_s) for s in train_steps + test_steps)
    with progress_bar(total=n_fit + n_pred, desc="risk transformer", unit="sample") as tbar:
        model, lm = large.train_large(lc, train_steps, test_steps, res.anomaly_threshold, bar=tbar)
    model.save_pretrained(str(models_dir / "large"))
    t_total = time.monotonic() - t0

    m = res.metrics
    metrics = {
        "tiny_float_acc": m["float_acc"], "tiny_int8_acc": m["int8_acc"],
        "tiny_float_macro_f1": m["float_macro_f1"], "tiny_int8_macro_f1": m["int8_macro_f1"],
        "tiny_int8_recall": m["test"]["int8_recall"],
        "tiny_fleet_int8_acc": m["fleet_test"]["int8_acc"],
        "tiny_fleet_int8_macro_f1": m["fleet_test"]["int8_macro_f1"],
        "anomaly_auroc": m["anomaly_auroc"], "anomaly_float_auroc": m["anomaly_float_auroc"],
        "anomaly_fleet_auroc": m["fleet_test"]["anomaly_auroc"], "anomaly_threshold": m["anomaly_threshold"],
        "tiny_weights_bytes": m["weights_bytes"], "tiny_arena_bytes": m["arena_bytes"],
        "anomaly_weights_bytes": m["anomaly_weights_bytes"], "anomaly_arena_bytes": m["anomaly_arena_bytes"],
        "tiny_ops": sorted(set(m["ops"]) | set(m["anomaly_ops"])),
        "tiny_model_id": m["model_id"], "anomaly_model_id": m["anomaly_model_id"],
        **{k: lm[k] for k in ("risk_auroc", "iso_auroc", "anomaly_rule_auroc", "lead_time_h", "iso_lead_time_h",
                              "anomaly_lead_time_h", "rul_mae_h", "alert_threshold", "horizon_h", "rul_cap_h",
                              "alert_windows", "alert_span_h", "events_test", "risk_detected", "iso_detected",
                              "anomaly_detected", "false_alert_machines", "iso_false_alert_machines",
                              "anomaly_false_alert_machines", "lead_time_spread", "iso_lead_time_spread",
                              "anomaly_lead_time_spread", "rul_mae_spread", "val_risk_auroc", "val_iso_auroc",
                              "val_lead_time_h", "val_iso_lead_time_h")},
        "risk_model_id": lm["model_id"], "step_s": lc.step_s,
        "train_machines": cfg.train_fleet.n_machines, "test_machines": cfg.test_fleet.n_machines,
        "train_windows": len(tr), "test_windows": len(te),
        "labelled_train_windows": len(lab_tr), "labelled_test_windows": len(lab_te),
        "time_data_s": round(t_data, 1), "time_tiny_s": round(t_tiny, 1),
        "time_large_s": round(t_total - t_data - t_tiny, 1), "time_total_s": round(t_total, 1),
        "quick": quick,
        "tiny": m, "large": lm,
    }
    write_stamp(models_dir, cfg.key(), json.loads(json.dumps(metrics, default=_json_default)), quick)
    return json.loads((models_dir / "metrics.json").read_text())


def _json_default(v: Any) -> Any:
    import numpy as np

    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"not JSON-serialisable: {type(v).__name__}")


def ensure_trained(models_dir: Path = DEFAULT_MODELS_DIR, quick: bool = False, cfg: TrainConfig | None = None
                   ) -> dict[str, Any]:
    """Metrics of the models in `models_dir`, training them first if the stamp is missing or stale.

    With `quick`, models trained with the full config are accepted too (never replaced by quick ones).
    """
    from shared.runtime import training

    cfg = cfg or (TrainConfig.quick() if quick else TrainConfig())
    also = {TrainConfig().key()} if quick else set()
    return training.ensure_trained(Path(models_dir), cfg.key(), lambda: train_all(models_dir, cfg, quick=quick),
                                   OUTPUTS, also)
