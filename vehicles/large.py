"""The cloud's driver risk model: a transformer over each vehicle's sequence of trip segments.

One step per ``inference`` message (`step_vector`): km, moving time, the tiny model's event counts,
the rule (threshold) counts, the driving statistics of `features.TRIP_STATS` and the trip's vendor
points. Output: the probability of an incident (crash or near miss) within the next `horizon_trips`
trip segments (`shared.large.transformer.RiskTransformer`, one output, trained with plain BCE so that
its probabilities stay calibrated).

The baseline (`vendor_points`): the points-per-100-km scorecard of fleet vendors: points per harsh
brake, harsh acceleration, harsh corner and crash detected by the thresholds, summed over the
driver's history and divided by its km. The weights are ours (VENDOR_POINTS); the shape, fixed
points per thresholded event normalised by distance, is that of common fleet safety scorecards.

Evaluation on vehicles none of the models saw (split by vehicle): AUROC of both, and calibration:
Brier score and expected calibration error (10 bins) of the transformer's probability beside the
vendor score mapped to a probability by a logistic fit on the training vehicles.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared.large.transformer import FitConfig, RiskConfig, RiskTransformer, fit_binary, predict_histories
from shared.runtime.metrics import auroc_or_none, threshold_at_fpr
from shared.runtime.training import subject_split
from vehicles.features import EVENT_KINDS, TRIP_STATS

MODEL_NAME = "veh-risk"
VENDOR_POINTS = {"harsh_brake": 10.0, "harsh_accel": 5.0, "harsh_corner": 8.0, "crash": 100.0}
STAT_SCALE = {"speed_mean_mps": 10.0, "speed_p95_mps": 10.0, "long_p05_mps2": 1.0, "long_p95_mps2": 1.0,
              "lat_p95_mps2": 1.0, "jerk_p95_mps3": 1.0, "yaw_std_rads": 0.05, "vert_rms_mps2": 0.5,
              "brakes_2_per_km": 2.0, "moving_s": 100.0}
INPUT_NAMES = ("log_km", *(f"tiny_{k}" for k in EVENT_KINDS), *(f"rule_{k}" for k in EVENT_KINDS[:3]),
               *TRIP_STATS, "vendor_points_per_100km")
N_INPUTS = len(INPUT_NAMES)
#: what the transformer reads per step: the step vector, then its running mean over the history so far
MODEL_INPUT_NAMES = (*INPUT_NAMES, *(f"mean_{n}" for n in INPUT_NAMES))
N_MODEL_INPUTS = len(MODEL_INPUT_NAMES)


def trip_points(rule_counts: dict) -> float:
    return float(sum(VENDOR_POINTS.get(k, 0.0) * float(rule_counts.get(k, 0) or 0) for k in VENDOR_POINTS))


def vendor_points(points: float, km: float) -> float:
    """Points per 100 km (the baseline) from summed points and km; 0 before any distance."""
    return 100.0 * points / km if km > 0.05 else 0.0


def step_vector(msg: dict) -> np.ndarray:
    """float32[N_INPUTS] from one inference message (INPUT_NAMES order)."""
    km = float(msg["distance_km"])
    st, tc, rc = msg["stats"], msg["counts"], msg["rule_counts"]
    x = [math.log1p(km)] + [math.asinh(float(tc.get(k, 0))) for k in EVENT_KINDS]
    x += [math.asinh(float(rc.get(k, 0))) for k in EVENT_KINDS[:3]]
    x += [math.asinh(float(st.get(k) or 0.0) / STAT_SCALE[k]) for k in TRIP_STATS]
    x.append(math.asinh(vendor_points(trip_points(rc), km) / 100.0))
    return np.nan_to_num(np.array(x, dtype=np.float32))


def with_history(hist: np.ndarray) -> np.ndarray:
    """(T, N_INPUTS) step vectors -> (T, N_MODEL_INPUTS): each step beside the running mean of the steps
    up to it. A driver's style shows in averages over many trips more than in any one trip; the mean
    gives the transformer that average directly, so it need not learn it from few drivers."""
    hist = np.asarray(hist, dtype=np.float32)
    if hist.ndim != 2 or hist.shape[1] != N_INPUTS:
        raise ValueError(f"history: expected (T, {N_INPUTS}) step vectors, got shape {hist.shape}")
    mean = np.cumsum(hist, axis=0) / np.arange(1, len(hist) + 1, dtype=np.float32)[:, None]
    return np.concatenate([hist, mean], axis=1).astype(np.float32)


def follow_up_target(vehicle: Any, follow_up_trips: int, horizon: int) -> float:
    """Training target from a vehicle's incident record over `follow_up_trips` segments: the observed
    incident rate (with one pseudo-incident in 20 segments as prior) turned into the chance of at least
    one incident within `horizon` segments. Incidents are rare random draws, so one driver's next-10
    label is mostly noise; the rate over a longer record is the signal the label is drawn from."""
    n = sum(vehicle.incident(k) is not None for k in range(follow_up_trips))
    rate = (n + 0.05) / (follow_up_trips + 1.0)
    return float(1.0 - (1.0 - rate) ** horizon)


@dataclass
class LargeConfig:
    d_model: int = 32
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 64
    seq_len: int = 24  #: trip segments of history
    dropout: float = 0.1
    horizon_trips: int = 10  #: predict an incident within this many next trip segments
    epochs: int = 3
    samples_per_epoch: int = 3000
    batch_size: int = 128
    lr: float = 2e-3
    #: training target: "follow_up" (incident rate over the fitting vehicles' follow_up_trips record,
    #: see follow_up_target) or "next" (the evaluation label itself: an incident within horizon_trips)
    target: str = "follow_up"
    follow_up_trips: int = 120
    weight_decay: float = 0.05
    alert_fpr: float = 0.1  #: alert threshold at this false-positive rate on validation vehicles
    alert_windows: int = 2
    val_fraction: float = 0.2
    threads: int = 2
    seed: int = 0
    version: str = "2"

    def __post_init__(self) -> None:
        if self.target not in ("follow_up", "next"):
            raise ValueError(f"LargeConfig.target: 'follow_up' or 'next', got {self.target!r}")
        if self.follow_up_trips < 1 or self.horizon_trips < 1 or self.seq_len < 1:
            raise ValueError("LargeConfig: follow_up_trips, horizon_trips and seq_len must be >= 1")


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: sum over equal-width bins of |mean p - mean y| weighted by the bin's share."""
    y, p = np.asarray(y, float), np.clip(np.asarray(p, float), 0, 1)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    return float(sum(abs(p[idx == b].mean() - y[idx == b].mean()) * (idx == b).mean()
                     for b in range(bins) if (idx == b).any()))


def platt(score: np.ndarray, y: np.ndarray, iters: int = 500) -> tuple[float, float]:
    """Logistic fit p = sigmoid(a z + b) of z = asinh(score / 100) by gradient descent."""
    z, y = np.arcsinh(np.asarray(score, float) / 100.0), np.asarray(y, float)
    a, b = 0.0, 0.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(a * z + b)))
        a -= 0.5 * float(np.mean((p - y) * z))
        b -= 0.5 * float(np.mean(p - y))
    return a, b


class RiskPredictor:
    """Batched CPU inference of the saved transformer (what the cloud service calls)."""

    def __init__(self, model: RiskTransformer, threads: int = 1):
        if model.config.n_inputs != N_MODEL_INPUTS:
            raise ValueError(f"risk model has {model.config.n_inputs} inputs; with_history makes {N_MODEL_INPUTS}"
                             " (retrain: tinylarge train vehicles)")
        self.model, self.threads = model.eval(), threads

    @classmethod
    def load(cls, model_dir: str | Path, threads: int = 1) -> RiskPredictor:
        d = Path(model_dir)
        if not (d / "config.json").exists():
            raise FileNotFoundError(f"{d}/config.json not found: train first (tinylarge train vehicles)")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        return cls(RiskTransformer.from_pretrained(str(d)), threads)

    seq_len = property(lambda self: int(self.model.config.seq_len))
    horizon_trips = property(lambda self: int(getattr(self.model.config, "horizon_trips", 10)))

    def predict_batch(self, histories: list[np.ndarray]) -> np.ndarray:
        if not histories:
            return np.zeros(0, dtype=np.float32)
        torch.set_num_threads(self.threads)
        return predict_histories(self.model, [with_history(h[-self.seq_len:]) for h in histories])


def sequences(tables: Any, tiny_counts: np.ndarray, vehicles: dict, horizon: int, follow_up_trips: int = 120
              ) -> list[dict]:
    """Per vehicle: x (T, N_INPUTS), y (T,) incident within the next `horizon` trips, vendor score (T,)
    over the history so far, `target` (follow_up_target; used for fitting vehicles only) and the latent
    `risk` and `aggression` (analysis only: `ceilings`). `tiny_counts` (trips, 6): the int8 model's event
    counts per trip."""
    out = []
    for vid in dict.fromkeys(tables.vehicle.tolist()):
        rows = np.flatnonzero(tables.vehicle == vid)
        rows = rows[np.argsort(tables.trip[rows])]
        xs, vendor, pts, km = [], [], 0.0, 0.0
        for r in rows:
            rc = dict(zip(EVENT_KINDS, tables.rule_counts[r].tolist(), strict=True))
            msg = {"distance_km": float(tables.km[r]), "stats": dict(zip(TRIP_STATS, tables.stats[r], strict=True)),
                   "counts": dict(zip(EVENT_KINDS, tiny_counts[r].tolist(), strict=True)), "rule_counts": rc}
            xs.append(step_vector(msg))
            pts, km = pts + trip_points(rc), km + float(tables.km[r])
            vendor.append(vendor_points(pts, km))
        v = vehicles[vid]
        y = [int(any(v.incident(int(k) + j) is not None for j in range(1, horizon + 1))) for k in tables.trip[rows]]
        out.append({"vehicle": vid, "x": np.stack(xs), "y": np.array(y), "vendor": np.array(vendor),
                    "target": follow_up_target(v, follow_up_trips, horizon), "risk": v.risk,
                    "aggression": v.aggression})
    return out


def windows(seqs: list[dict], seq_len: int) -> list[np.ndarray]:
    """Every step of every sequence as the service sees it: the last `seq_len` steps, with_history."""
    return [with_history(s["x"][max(0, t - seq_len + 1):t + 1]) for s in seqs for t in range(len(s["y"]))]


def bootstrap_auroc(groups: list[tuple[np.ndarray, np.ndarray, np.ndarray]], n: int = 1000, seed: int = 0
                    ) -> dict[str, Any]:
    """Spread over held-out vehicles: resample VEHICLES with replacement (`groups`: per vehicle labels,
    model scores, baseline scores) and recompute both AUROCs. 95 % intervals of each and of their
    difference, and the share of resamples where the model wins."""
    from shared.runtime.metrics import auroc

    rng = np.random.default_rng(seed)
    a, b = [], []
    for _ in range(n):
        pick = [groups[i] for i in rng.integers(0, len(groups), len(groups))]
        y = np.concatenate([g[0] for g in pick])
        if y.min() == y.max():
            continue
        a.append(auroc(y, np.concatenate([g[1] for g in pick])))
        b.append(auroc(y, np.concatenate([g[2] for g in pick])))
    a_, b_ = np.array(a), np.array(b)

    def ci(v: np.ndarray) -> list[float]:
        return [round(float(np.percentile(v, 2.5)), 4), round(float(np.percentile(v, 97.5)), 4)]

    return {"risk_auroc_ci95": ci(a_), "baseline_auroc_ci95": ci(b_), "auroc_gain_ci95": ci(a_ - b_),
            "auroc_gain_mean": round(float(np.mean(a_ - b_)), 4),
            "p_risk_beats_baseline": round(float(np.mean(a_ > b_)), 3),
            "bootstrap_n": len(a_)}


def ceilings(test: list[dict], n: int = 1000, seed: int = 0, vehicles: dict | None = None,
             horizon: int = 10) -> dict[str, Any]:
    """What no model reading the units' messages can beat, on the same held-out vehicles and resamples as
    `bootstrap_auroc` (same seed: paired). The simulator draws incidents from the latent risk alone
    (``signals.Vehicle.incident``: p = P_BASE + P_RISK risk^2, risk = (aggression + distraction) / 2,
    independent of the trips driven), so the score p(risk) orders the label "incident within the
    horizon" best: ``oracle_*`` (an oracle that knows both latent parameters). The messages show
    aggression (harder maneuvers, faster cruising) but next to nothing of distraction (docs/vehicles.md:
    a ridge fit of the latent parameters on the per-vehicle means of the step vectors), and with
    distraction unseen the best score is E[p | aggression], increasing in aggression: ``aggression_oracle_*``
    (an oracle that knows the driver's true aggression exactly, which the messages only estimate). With
    ``vehicles`` (id -> signals.Vehicle): ``observable_oracle_*``, `observable_oracle`'s score."""
    out: dict[str, Any] = {}
    scores = {"oracle": [np.full(len(s["y"]), float(s["risk"])) for s in test],
              "aggression_oracle": [np.full(len(s["y"]), float(s["aggression"])) for s in test]}
    if vehicles is not None:
        scores["observable_oracle"] = observable_oracle(test, vehicles, horizon)
    for name, sc in scores.items():
        groups = [(s["y"], x, s["vendor"]) for s, x in zip(test, sc, strict=True)]
        b = bootstrap_auroc(groups, n, seed)
        y = np.concatenate([g[0] for g in groups])
        out[f"{name}_auroc"] = auroc_or_none(y, np.concatenate([g[1] for g in groups]))
        out[f"{name}_auroc_ci95"] = b["risk_auroc_ci95"]
        out[f"{name}_gain_ci95"] = b["auroc_gain_ci95"]
        out[f"{name}_gain_mean"] = b["auroc_gain_mean"]
    return out


#: the simulator's prior of a driver's distraction (vehicles.signals.simulate_fleet draws Beta(1.3, 2.0))
DISTRACTION_BETA = (1.3, 2.0)


def observable_oracle(seqs: list[dict], vehicles: dict, horizon: int) -> list[np.ndarray]:
    """Per sequence, per step t: P(incident within `horizon` segments | the driver's TRUE aggression and every
    incident of segments 0..t), distraction integrated over the simulator's prior (1,000-point grid). More
    than any model reading the messages knows (they only estimate aggression, and show a near miss as an
    emergency brake the rules may or may not flag): its ranking bounds theirs."""
    from vehicles.signals import P_BASE, P_RISK

    d = np.linspace(0.0005, 0.9995, 1000)
    a_, b_ = DISTRACTION_BETA
    prior = d ** (a_ - 1) * (1 - d) ** (b_ - 1)
    out = []
    for s in seqs:
        v = vehicles[s["vehicle"]]
        p = P_BASE + P_RISK * (0.5 * v.aggression + 0.5 * d) ** 2
        hit = 1 - (1 - p) ** horizon
        n, scores = 0, []
        for k in range(len(s["y"])):
            n += v.incident(k) is not None
            post = prior * p ** n * (1 - p) ** (k + 1 - n)
            scores.append(float((post * hit).sum() / post.sum()))
        out.append(np.array(scores))
    return out


def train_large(cfg: LargeConfig, train: list[dict], test: list[dict], bar: Any = None,
                vehicles: dict | None = None) -> tuple[RiskTransformer, dict[str, Any]]:
    """Fit on training vehicles (less a validation share), threshold on validation, evaluate on `test`
    (beside the ceilings; ``vehicles``: id -> signals.Vehicle of the test vehicles, for the observable one)."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    both = {s["vehicle"] for s in train} & {s["vehicle"] for s in test}
    if both:
        raise ValueError(f"train_large: vehicles in both train and test: {sorted(both)[:5]}")
    fit_m, val_m = subject_split(np.array([s["vehicle"] for s in train]), cfg.val_fraction, cfg.seed)
    fit = [s for s, k in zip(train, fit_m, strict=True) if k]
    val = [s for s, k in zip(train, val_m, strict=True) if k]
    rc = RiskConfig(n_inputs=N_MODEL_INPUTS, d_model=cfg.d_model, n_layers=cfg.n_layers, n_heads=cfg.n_heads,
                    d_ff=cfg.d_ff, seq_len=cfg.seq_len, dropout=cfg.dropout, n_outputs=1,
                    horizon_h=float(cfg.horizon_trips), step_s=3600.0, input_names=list(MODEL_INPUT_NAMES),
                    horizon_trips=cfg.horizon_trips, alert_windows=cfg.alert_windows,
                    model_id=f"{MODEL_NAME}@{cfg.version}")
    model = RiskTransformer(rc)
    fit_windows = windows(fit, cfg.seq_len)
    samples = np.array([(i, len(w) - 1) for i, w in enumerate(fit_windows)], dtype=np.int64)
    labels = np.concatenate([np.full(len(s["y"]), s["target"]) if cfg.target == "follow_up" else s["y"]
                             for s in fit]).astype(np.float32)
    fc = FitConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, threads=cfg.threads, seed=cfg.seed,
                   samples_per_epoch=cfg.samples_per_epoch, pos_weight=1.0, weight_decay=cfg.weight_decay)
    losses = fit_binary(model, fit_windows, samples, labels, fc, None if bar is None else bar.update)

    def predict(seqs: list[dict]) -> np.ndarray:
        return predict_histories(model, windows(seqs, cfg.seq_len))

    def cat(seqs: list[dict], key: str) -> np.ndarray:
        return np.concatenate([s[key] for s in seqs])

    p_val, y_val = predict(val), cat(val, "y")
    thr = threshold_at_fpr(y_val, p_val, cfg.alert_fpr)
    model.config.alert_threshold = thr
    a, b = platt(cat(fit, "vendor"), cat(fit, "y"))
    p_te, y_te, v_te = predict(test), cat(test, "y"), cat(test, "vendor")
    v_prob = 1 / (1 + np.exp(-(a * np.arcsinh(v_te / 100.0) + b)))
    bounds = np.cumsum([0] + [len(s["y"]) for s in test])
    per_vehicle_risk = [float(np.mean(p_te[bounds[i]:bounds[i + 1]])) for i in range(len(test))]
    groups = [(s["y"], p_te[bounds[i]:bounds[i + 1]], s["vendor"]) for i, s in enumerate(test)]
    latent = np.concatenate([np.full(len(s["y"]), s["risk"]) for s in test])
    metrics = {
        "model_id": f"{MODEL_NAME}@{cfg.version}", "risk_auroc": auroc_or_none(y_te, p_te),
        "baseline_auroc": auroc_or_none(y_te, v_te), "val_risk_auroc": auroc_or_none(y_val, p_val),
        "val_baseline_auroc": auroc_or_none(y_val, cat(val, "vendor")),
        "latent_risk_auroc": auroc_or_none(y_te, latent),
        **bootstrap_auroc(groups, seed=cfg.seed), **ceilings(test, seed=cfg.seed, vehicles=vehicles,
                                                            horizon=cfg.horizon_trips),
        "risk_brier": round(float(np.mean((p_te - y_te) ** 2)), 4),
        "baseline_brier": round(float(np.mean((v_prob - y_te) ** 2)), 4),
        "risk_ece": round(ece(y_te, p_te), 4), "baseline_ece": round(ece(y_te, v_prob), 4),
        "driver_latent_risk_corr": round(float(np.corrcoef(per_vehicle_risk, [s["risk"] for s in test])[0, 1]), 4)
        if len(test) > 2 else None,
        "alert_threshold": thr, "alert_windows": cfg.alert_windows, "horizon_trips": cfg.horizon_trips,
        "vendor_platt": [a, b], "test_positive_rate": round(float(y_te.mean()), 4), "n_test_trips": len(y_te),
        "n_test_vehicles": len(test), "n_fit_vehicles": len(fit), "n_val_vehicles": len(val),
        "train_losses": [round(x, 4) for x in losses],
        "n_parameters": sum(p.numel() for p in model.parameters()), "config": asdict(cfg),
    }
    return model, metrics
