"""Train the vehicles models: the tiny event-window classifier (int8) then the driver risk transformer.

``train_all`` simulates a TRAINING fleet and a HELD-OUT fleet (other seed, other drivers, the same
road network), runs every trip segment through the device DSP (cached under ``<models>/cache``),
trains the classifier on the candidate windows of the training vehicles (plus a table with extra
crash trips, crashes being rare), scores every window with the int8 model as the units would, builds
each vehicle's trip sequence and trains the transformer; everything is evaluated on the held-out
vehicles, the transformer beside the points-per-100-km score and the tiny model beside the threshold
rules (event F1 against the simulator's events). Writes into ``models_dir``: tiny.tflite,
labels.json, tiny_metrics.json, large/ (save_pretrained), metrics.json, stamp.json.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vehicles.large import LargeConfig
from vehicles.signals import FleetConfig
from vehicles.tiny import TinyConfig

DEFAULT_MODELS_DIR = Path("models/vehicles")
FORMAT_VERSION = 1
OUTPUTS = ("tiny.tflite", "labels.json", "large/config.json")


@dataclass
class TrainConfig:
    """Full config: 160 training and 80 held-out vehicles x 24 trip segments (the classifier learns from 64
    of the training vehicles); 12 vehicles x 10 crash-rich trips."""

    train_fleet: FleetConfig = field(default_factory=lambda: FleetConfig(n_vehicles=160, seed=101))
    test_fleet: FleetConfig = field(default_factory=lambda: FleetConfig(n_vehicles=80, seed=202))
    n_trips: int = 24
    crash_fleet: FleetConfig = field(default_factory=lambda: FleetConfig(n_vehicles=12, seed=303))
    crash_trips: int = 10
    tiny_vehicles: int = 64  #: the classifier trains on the windows of this many training vehicles
    tiny: TinyConfig = field(default_factory=TinyConfig)
    large: LargeConfig = field(default_factory=LargeConfig)
    workers: int = 2

    def __post_init__(self) -> None:
        seeds = {self.train_fleet.seed, self.test_fleet.seed, self.crash_fleet.seed}
        if len(seeds) != 3:
            raise ValueError("TrainConfig: the training, held-out and crash fleets need different seeds")
        if self.n_trips < 2 or self.workers < 1:
            raise ValueError(f"TrainConfig: n_trips >= 2 and workers >= 1, got {self.n_trips}, {self.workers}")

    @classmethod
    def quick(cls) -> TrainConfig:
        return cls(train_fleet=FleetConfig(n_vehicles=20, seed=11), test_fleet=FleetConfig(n_vehicles=10, seed=12),
                   n_trips=10, crash_fleet=FleetConfig(n_vehicles=6, seed=13), crash_trips=5,
                   tiny=TinyConfig(hidden=(16,), epochs=30, representative_n=200),
                   large=LargeConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, seq_len=8, epochs=1,
                                     samples_per_epoch=256, batch_size=64))

    def key(self) -> str:
        from shared.runtime.training import config_key, source_hash

        here = Path(__file__).parent
        src = source_hash([here / n for n in ("signals.py", "features.py", "_dataset.py", "tiny.py", "large.py")])
        return config_key({"cfg": asdict(self), "src": src, "v": FORMAT_VERSION})


def event_f1(true_spans: list[tuple[str, float, float]], found: list[tuple[str, float, float]]) -> dict:
    """Micro F1 over event kinds: a found event matches an unmatched true one of the same kind that
    overlaps it within 1 s."""
    used = set()
    tp = 0
    for kind, a, b in found:
        for j, (k2, c, d) in enumerate(true_spans):
            if j not in used and k2 == kind and c - 1.0 <= b and a <= d + 1.0:
                used.add(j)
                tp += 1
                break
    p = tp / len(found) if found else 0.0
    r = tp / len(true_spans) if true_spans else 0.0
    return {"f1": round(2 * p * r / (p + r), 4) if p + r else 0.0, "precision": round(p, 4), "recall": round(r, 4)}


def tiny_counts(tables: Any, pred: np.ndarray) -> np.ndarray:
    """(trips, 6) counts of windows the classifier put in each event class."""
    out = np.zeros((len(tables), 6), dtype=np.int64)
    np.add.at(out, (tables.w_row[pred > 0], pred[pred > 0] - 1), 1)
    return out


def train_all(models_dir: Path = DEFAULT_MODELS_DIR, cfg: TrainConfig | None = None, quick: bool = False
              ) -> dict[str, Any]:
    from shared.progress import progress
    from shared.runtime.training import write_stamp
    from vehicles import large, tiny
    from vehicles._dataset import load_fleet
    from vehicles.signals import simulate_fleet

    cfg = cfg or (TrainConfig.quick() if quick else TrainConfig())
    quick = quick or cfg == TrainConfig.quick()
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    cache = models_dir / "cache"
    tr = load_fleet(cfg.train_fleet, cfg.n_trips, cache, workers=cfg.workers, desc="trips (training fleet)")
    te = load_fleet(cfg.test_fleet, cfg.n_trips, cache, workers=cfg.workers, desc="trips (held-out fleet)")
    cr = load_fleet(cfg.crash_fleet, cfg.crash_trips, cache, extra_crash=3, workers=cfg.workers,
                    desc="trips (crash-rich)")
    t_data = time.monotonic() - t0
    # the classifier learns from the windows of the first tiny_vehicles training vehicles (more add little
    # but time); the transformer reads every training vehicle's trips
    keep = np.isin(tr.vehicle[tr.w_row], [v.id for v in simulate_fleet(cfg.train_fleet)[:cfg.tiny_vehicles]])
    x = np.concatenate([tr.w_vector[keep], cr.w_vector])
    y = np.concatenate([tr.w_label[keep], cr.w_label]).astype(int)
    groups = np.concatenate([tr.vehicle[tr.w_row][keep], cr.vehicle[cr.w_row]])
    res = tiny.train_tiny(cfg.tiny, x, y, groups, te.w_vector, te.w_label.astype(int))
    tiny.save_tiny(res, models_dir)
    model = tiny.TinyModel(res.tflite, version=cfg.tiny.version)
    pred_tr = model.scores(tr.w_vector).argmax(1)
    pred_te = model.scores(te.w_vector).argmax(1)
    t_tiny = time.monotonic() - t0 - t_data
    # events on held-out vehicles: tiny (candidates classified) and rules vs the simulator's truth
    f1 = _event_scores(cfg.test_fleet, te, pred_te)

    vehicles = {v.id: v for fc in (cfg.train_fleet, cfg.test_fleet) for v in simulate_fleet(fc)}
    h = cfg.large.horizon_trips
    fu = cfg.large.follow_up_trips
    train_seq = large.sequences(tr, tiny_counts(tr, pred_tr), vehicles, h, fu)
    test_seq = large.sequences(te, tiny_counts(te, pred_te), vehicles, h, fu)
    lc = cfg.large
    with progress(total=lc.epochs * min(lc.samples_per_epoch, sum(len(s["y"]) for s in train_seq)),
              desc="risk transformer", unit="sample") as bar:
        risk_model, lm = large.train_large(lc, train_seq, test_seq, bar=bar)
    risk_model.save_pretrained(str(models_dir / "large"))
    t_total = time.monotonic() - t0
    m = res.metrics
    metrics = {
        "tiny_float_acc": m["float_acc"], "tiny_int8_acc": m["int8_acc"], "tiny_float_macro_f1": m["float_macro_f1"],
        "tiny_int8_macro_f1": m["int8_macro_f1"], "tiny_int8_recall": m["int8_recall"],
        "tiny_weights_bytes": m["weights_bytes"], "tiny_arena_bytes": m["arena_bytes"], "tiny_ops": m["ops"],
        "tiny_model_id": m["model_id"], **f1,
        **{k: lm[k] for k in ("risk_auroc", "baseline_auroc", "risk_auroc_ci95", "baseline_auroc_ci95",
                              "auroc_gain_ci95", "auroc_gain_mean", "p_risk_beats_baseline", "latent_risk_auroc",
                              "val_risk_auroc", "val_baseline_auroc", "risk_brier",
                              "baseline_brier", "risk_ece", "baseline_ece", "driver_latent_risk_corr",
                              "alert_threshold", "alert_windows", "horizon_trips", "test_positive_rate")},
        "risk_model_id": lm["model_id"], "train_vehicles": cfg.train_fleet.n_vehicles,
        "test_vehicles": cfg.test_fleet.n_vehicles, "trips_per_vehicle": cfg.n_trips,
        "train_windows": int(len(y)), "test_windows": int(len(te.w_label)),
        "time_data_s": round(t_data, 1), "time_tiny_s": round(t_tiny, 1),
        "time_large_s": round(t_total - t_data - t_tiny, 1), "time_total_s": round(t_total, 1),
        "quick": quick, "tiny": m, "large": lm,
    }
    write_stamp(models_dir, cfg.key(), json.loads(json.dumps(metrics, default=_json_default)), quick)
    return json.loads((models_dir / "metrics.json").read_text())


def _event_scores(fleet: FleetConfig, te: Any, pred: np.ndarray) -> dict:
    """event_f1 (int8 classifier on candidates) and rule_event_f1 (thresholds) on the first 4 trips of
    each held-out vehicle (re-simulated: the truth spans are not in the cached tables)."""
    from vehicles.features import detect_in, vehicle_signals
    from vehicles.signals import LABELS, simulate_fleet

    truth, tiny_found, rule_found = [], [], []
    for v in simulate_fleet(fleet):
        for k in range(min(4, int(te.trip.max()) + 1)):
            row = int(np.flatnonzero((te.vehicle == v.id) & (te.trip == k))[0])
            trip = v.trip(k)
            off = 1000.0 * len(truth) + row * 1000.0  # keeps trips apart on one time axis
            truth += [(e.kind, e.t_start_s + off, e.t_end_s + off) for e in trip.events]
            rule_found += [(e.kind, e.t_start_s + off, e.t_end_s + off) for e in detect_in(
                vehicle_signals(trip.acc_mps2, trip.gyro_rads, trip.speed_mps, trip.fs_hz))]
            for w in np.flatnonzero(te.w_row == row):
                if pred[w] > 0:
                    tiny_found.append((LABELS[pred[w]], te.w_t[w, 0] + off, te.w_t[w, 1] + off))
    t, r = event_f1(truth, tiny_found), event_f1(truth, rule_found)
    return {"event_f1": t["f1"], "event_precision": t["precision"], "event_recall": t["recall"],
            "rule_event_f1": r["f1"], "rule_event_precision": r["precision"], "rule_event_recall": r["recall"]}


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"not JSON-serialisable: {type(v).__name__}")


def ensure_trained(models_dir: Path = DEFAULT_MODELS_DIR, quick: bool = False, cfg: TrainConfig | None = None
                   ) -> dict[str, Any]:
    """Metrics of the models in `models_dir`, training first if the stamp is missing or stale (with
    `quick`, fully trained models are accepted too)."""
    from shared.runtime import training

    cfg = cfg or (TrainConfig.quick() if quick else TrainConfig())
    also = {TrainConfig().key()} if quick else set()
    return training.ensure_trained(Path(models_dir), cfg.key(), lambda: train_all(models_dir, cfg, quick=quick),
                                   OUTPUTS, also)
