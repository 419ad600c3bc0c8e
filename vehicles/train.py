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
    """Full config: 160 training and 80 held-out vehicles x 24 trip segments (the classifier learns from all
    the training vehicles' candidate windows); 12 vehicles x 10 crash-rich trips."""

    train_fleet: FleetConfig = field(default_factory=lambda: FleetConfig(n_vehicles=160, seed=101))
    test_fleet: FleetConfig = field(default_factory=lambda: FleetConfig(n_vehicles=80, seed=202))
    n_trips: int = 24
    crash_fleet: FleetConfig = field(default_factory=lambda: FleetConfig(n_vehicles=12, seed=303))
    crash_trips: int = 10
    tiny_vehicles: int = 160  #: the classifier trains on the windows of this many training vehicles
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
                   tiny=TinyConfig(epochs=40, representative_n=200),
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
    res = tiny.train_tiny(cfg.tiny, x, y, groups, te.w_vector, te.w_label.astype(int),
                          objective=_event_objective([(tr, np.flatnonzero(keep)), (cr, np.arange(len(cr.w_label)))]))
    tiny.save_tiny(res, models_dir)
    model = tiny.TinyModel(res.tflite, version=cfg.tiny.version)
    pred_tr = model.scores(tr.w_vector).argmax(1)
    pred_te = model.scores(te.w_vector).argmax(1)
    t_tiny = time.monotonic() - t0 - t_data
    # events on every trip of the held-out vehicles: tiny (candidates classified) and rules vs the simulator's truth
    f1 = event_scores(te, pred_te)

    vehicles = {v.id: v for fc in (cfg.train_fleet, cfg.test_fleet) for v in simulate_fleet(fc)}
    h = cfg.large.horizon_trips
    fu = cfg.large.follow_up_trips
    train_seq = large.sequences(tr, tiny_counts(tr, pred_tr), vehicles, h, fu)
    test_seq = large.sequences(te, tiny_counts(te, pred_te), vehicles, h, fu)
    lc = cfg.large
    with progress(total=lc.epochs * min(lc.samples_per_epoch, sum(len(s["y"]) for s in train_seq)),
              desc="risk transformer", unit="sample") as bar:
        risk_model, lm = large.train_large(lc, train_seq, test_seq, bar=bar, vehicles=vehicles)
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
                              "alert_threshold", "alert_windows", "horizon_trips", "test_positive_rate",
                              "oracle_auroc", "oracle_gain_ci95", "aggression_oracle_auroc",
                              "aggression_oracle_gain_ci95", "aggression_oracle_gain_mean",
                              "observable_oracle_auroc", "observable_oracle_gain_ci95")},
        "risk_model_id": lm["model_id"], "train_vehicles": cfg.train_fleet.n_vehicles,
        "test_vehicles": cfg.test_fleet.n_vehicles, "trips_per_vehicle": cfg.n_trips,
        "train_windows": int(len(y)), "test_windows": int(len(te.w_label)),
        "time_data_s": round(t_data, 1), "time_tiny_s": round(t_tiny, 1),
        "time_large_s": round(t_total - t_data - t_tiny, 1), "time_total_s": round(t_total, 1),
        "quick": quick, "tiny": m, "large": lm,
    }
    write_stamp(models_dir, cfg.key(), json.loads(json.dumps(metrics, default=_json_default)), quick)
    return json.loads((models_dir / "metrics.json").read_text())


def _match(truth: list[tuple[int, float, float]], found: list[tuple[int, float, float]]) -> int:
    """True positives as `event_f1` counts them: each found event takes the first unmatched true event of
    its kind that overlaps it within 1 s."""
    used: set[int] = set()
    for kind, a, b in found:
        for j, (k2, c, d) in enumerate(truth):
            if j not in used and k2 == kind and c - 1.0 <= b and a <= d + 1.0:
                used.add(j)
                break
    return len(used)


def event_counts(tables: Any, pred: np.ndarray, only: Any = None) -> dict[str, np.ndarray]:
    """Per vehicle (in first-seen order) of `tables`: true events, the classifier's events (candidates it
    put in an event class, `pred`), the rules' events, and each one's true positives (`_match` per trip).
    ``only``: count the trips of these vehicles only (the others stay 0)."""
    vids = list(dict.fromkeys(tables.vehicle.tolist()))
    at = {v: i for i, v in enumerate(vids)}
    out = {k: np.zeros(len(vids), dtype=np.int64) for k in ("n_true", "tiny_found", "tiny_tp", "rule_found", "rule_tp")}

    def by_row(rows: np.ndarray, kinds: np.ndarray, t: np.ndarray) -> dict[int, list]:
        d: dict[int, list] = {}
        for r, k, (a, b) in zip(rows.tolist(), kinds.tolist(), t.tolist(), strict=True):
            d.setdefault(r, []).append((int(k), a, b))
        return d

    ev = by_row(tables.e_row, tables.e_kind, tables.e_t)
    rule = by_row(tables.r_row, tables.r_kind, tables.r_t)
    hit = np.asarray(pred) > 0
    tiny = by_row(tables.w_row[hit], np.asarray(pred)[hit], tables.w_t[hit])
    trips = range(len(tables)) if only is None else np.flatnonzero(np.isin(tables.vehicle, list(only))).tolist()
    for r in trips:
        i = at[tables.vehicle[r]]
        truth = ev.get(r, [])
        out["n_true"][i] += len(truth)
        for name, found in (("tiny", tiny.get(r, [])), ("rule", rule.get(r, []))):
            out[f"{name}_found"][i] += len(found)
            out[f"{name}_tp"][i] += _match(truth, found)
    return out


def _event_objective(parts: list[tuple[Any, np.ndarray]]) -> Any:
    """``objective(rows, pred)`` for `tiny.train_tiny`: the event F1 (as `event_scores` counts it) on the
    trips of the vehicles whose windows ``rows`` are, the classifier predicting ``pred`` on them. ``parts``:
    (tables, window indices) in the order the training windows were concatenated."""
    starts = np.cumsum([0] + [len(idx) for _, idx in parts])

    def objective(rows: np.ndarray, pred: np.ndarray) -> float:
        tot = np.zeros(3)
        for (tables, idx), lo, hi in zip(parts, starts[:-1], starts[1:], strict=True):
            sel = (rows >= lo) & (rows < hi)
            if not sel.any():
                continue
            w = idx[rows[sel] - lo]
            full = np.zeros(len(tables.w_label), dtype=np.int64)
            full[w] = pred[sel]
            c = event_counts(tables, full, only=set(tables.vehicle[tables.w_row[w]].tolist()))
            tot += (c["tiny_tp"].sum(), c["tiny_found"].sum(), c["n_true"].sum())
        return _f1(*tot)

    return objective


def _f1(tp: float, found: float, true: float) -> float:
    return float(2.0 * tp / (found + true)) if found + true else 0.0


def event_scores(tables: Any, pred: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Event F1 (micro over kinds, `event_f1`'s matching) of the classifier on candidates and of the threshold
    rules, over every trip of `tables`; 95 % intervals by a bootstrap over VEHICLES (drivers), paired."""
    c = event_counts(tables, pred)
    res: dict[str, Any] = {}
    for name, key in (("tiny", "event"), ("rule", "rule_event")):
        tp, fo, tr = c[f"{name}_tp"].sum(), c[f"{name}_found"].sum(), c["n_true"].sum()
        res[f"{key}_f1"] = round(_f1(tp, fo, tr), 4)
        res[f"{key}_precision"] = round(float(tp / fo), 4) if fo else 0.0
        res[f"{key}_recall"] = round(float(tp / tr), 4) if tr else 0.0
    rng = np.random.default_rng(seed)
    n = len(c["n_true"])
    pick = rng.integers(0, n, (n_boot, n))
    s = {k: v[pick].sum(1).astype(float) for k, v in c.items()}
    den_t, den_r = s["tiny_found"] + s["n_true"], s["rule_found"] + s["n_true"]
    f_t = np.where(den_t > 0, 2 * s["tiny_tp"] / np.maximum(den_t, 1), 0.0)
    f_r = np.where(den_r > 0, 2 * s["rule_tp"] / np.maximum(den_r, 1), 0.0)

    def ci(v: np.ndarray) -> list[float]:
        return [round(float(np.percentile(v, 2.5)), 4), round(float(np.percentile(v, 97.5)), 4)]

    res.update({"event_f1_ci95": ci(f_t), "rule_event_f1_ci95": ci(f_r), "event_f1_gain_ci95": ci(f_t - f_r),
                "p_tiny_beats_rules": round(float(np.mean(f_t > f_r)), 3), "event_vehicles": n,
                "event_trips": len(tables), "true_events": int(c["n_true"].sum())})
    return res


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
