"""The industrial_iot cloud model: each machine's message history -> failure risk and remaining useful life.

Each device inference message (one vibration window) becomes one step vector (`step_vector`, used
identically in training and by the cloud service): the 21 window features standardised exactly like
`features.to_vector` (null -> 0) and the share of null features; the tiny classifier's 7 class
scores; the tiny anomaly score (log10); the velocity RMS relative to the machine's ISO 10816-3 zone
C/D boundary (log2) and the ISO zone index; the machine's ISO group and foundation; and the hours since
the previous step. A `shared.large.transformer.RiskTransformer` with two outputs reads the last
`seq_len` steps (30 x 4 h = 5 days at the trained cadence):

* output 0: the logit of a functional failure within the next `horizon_h` hours (168 h = 7 days);
* output 1: the remaining useful life as log1p(min(RUL_h, rul_cap_h)) / log1p(rul_cap_h) (0..1), with
  rul_cap_h = 336 h. Trained on EVERY step before failure, of every machine: the simulator knows every
  machine's failure time (inf for machines that never fail), so the capped target is exact everywhere
  ("more than 14 days" is a true statement about a healthy machine); no mask is needed.

Steps at or after the functional failure are left out (the machine is down for repair).

Training (`train_large`) holds out `val_fraction` of the TRAINING machines: the alert threshold is
chosen on them (`alert_fpr` of their steps without a failure within the horizon may reach it), and the
figures every design decision was taken on are theirs (`val_*`). Test figures are measured on a
separate fleet (other seed, other machines), beside two rules a reliability engineer uses today:
the ISO 10816-3 zone (alert at zone C or D; the zone index 0..3 as the ranking score) and the tiny
anomaly score against its threshold. All three alert with the one `shared.runtime.alerts.AlertRule`
(`alert_windows` consecutive windows); a lead time counts alerts within `horizon_h` before the failure.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from industrial_iot.features import FEATURE_NAMES, Features, to_vector
from industrial_iot.iso10816 import boundaries, zone_index
from industrial_iot.signals import LABELS
from shared.large.multitask import fit_event_time, predict_outputs
from shared.large.transformer import FitConfig, RiskConfig, RiskTransformer
from shared.runtime.alerts import AlertRule, AlertState
from shared.runtime.metrics import auroc_or_none, median_or_none, spread, threshold_at_fpr
from shared.runtime.training import subject_split

MODEL_NAME = "iot-risk"
HORIZON_H = 168.0
RUL_CAP_H = 336.0
ISO_ALERT_ZONE = 2  # zone C: "unsatisfactory for long-term continuous operation"
INPUT_NAMES: tuple[str, ...] = (
    tuple(f"x_{k}" for k in FEATURE_NAMES) + ("missing_frac",) + tuple(f"p_{k}" for k in LABELS)
    + ("anomaly_log10", "anomaly_missing", "v_rel_cd_log2", "iso_zone", "iso_group2", "flexible", "dt_days"))
N_INPUTS = len(INPUT_NAMES)


def _num(x: Any) -> float:
    """float, NaN for None / non-numeric / non-finite."""
    if x is None or isinstance(x, bool):
        return math.nan
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def step_vector(msg: dict, dt_h: float | None = 0.0) -> np.ndarray:
    """One history step (float32[N_INPUTS], names in INPUT_NAMES) from one device inference message.

    msg: {"features": {FEATURE_NAMES: number | None}, "scores": {label: p}, "anomaly": float | None,
    "iso_group": 1 | 2, "foundation": "rigid" | "flexible", ...} (other envelope fields are ignored).
    dt_h: hours since the machine's previous step (None or 0 for the first).
    """
    if not isinstance(msg, dict):
        raise TypeError(f"step_vector: msg must be a dict, got {type(msg).__name__}")
    feats, scores = msg.get("features"), msg.get("scores") or {}
    if not isinstance(feats, dict) or not isinstance(scores, dict):
        raise ValueError("step_vector: msg.features and msg.scores must be objects")
    group, foundation = msg.get("iso_group"), msg.get("foundation")
    cd = boundaries(group, foundation)[2]  # raises ValueError naming group / foundation
    raw = {k: _num(feats.get(k)) for k in FEATURE_NAMES}
    x = to_vector(Features(**raw))
    missing = float(np.mean([math.isnan(v) for v in raw.values()]))
    probs = [_num(scores.get(k)) for k in LABELS]
    probs = [0.0 if math.isnan(p) else min(1.0, max(0.0, p)) for p in probs]
    a = _num(msg.get("anomaly"))
    a_log = 0.0 if math.isnan(a) else float(np.clip(math.log10(max(a, 0.0) + 1e-3), -3.0, 3.0))
    v = raw["v_rms_mm_s"]
    ok_v = not math.isnan(v) and v >= 0
    v_rel = float(np.clip(math.log2(v / cd + 1e-3), -8.0, 3.0)) if ok_v else 0.0
    zone = zone_index(v, group, foundation) / 3.0 if ok_v else 0.0
    dt = _num(dt_h)
    dt_days = 0.0 if math.isnan(dt) else float(np.clip(dt / 24.0, 0.0, 7.0))
    tail = [a_log, float(math.isnan(a)), v_rel, zone, float(group == 2), float(foundation == "flexible"), dt_days]
    return np.concatenate([x, [missing], probs, tail]).astype(np.float32)


def rul_target(hours_to_failure: np.ndarray, cap_h: float) -> np.ndarray:
    """Output 1's target: log1p(min(RUL_h, cap_h)) / log1p(cap_h)."""
    return (np.log1p(np.minimum(np.asarray(hours_to_failure, dtype=np.float64), cap_h)) / math.log1p(cap_h)
            ).astype(np.float32)


def rul_hours(output: np.ndarray, cap_h: float) -> np.ndarray:
    """Inverse of `rul_target` (clipped to 0..cap_h)."""
    return np.expm1(np.clip(np.asarray(output, dtype=np.float64), 0.0, 1.0) * math.log1p(cap_h))


class RiskPredictor:
    """Batched CPU inference of the saved risk transformer (what the cloud service calls)."""

    def __init__(self, model: RiskTransformer, threads: int = 2):
        if model.config.n_inputs != N_INPUTS or model.config.n_outputs != 2:
            raise ValueError(f"risk model has {model.config.n_inputs} inputs and {model.config.n_outputs} outputs; "
                             f"step_vector makes {N_INPUTS} and the predictor needs 2 outputs")
        self.model = model.eval()
        self.threads = threads

    @classmethod
    def load(cls, model_dir: str | Path, threads: int = 2) -> RiskPredictor:
        d = Path(model_dir)
        if not (d / "config.json").exists():
            raise FileNotFoundError(f"{d}/config.json not found: train first (tinylarge train industrial_iot)")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        return cls(RiskTransformer.from_pretrained(str(d)), threads)

    horizon_h = property(lambda self: float(self.model.config.horizon_h))
    alert_threshold = property(lambda self: float(self.model.config.alert_threshold))
    seq_len = property(lambda self: int(self.model.config.seq_len))
    rul_cap_h = property(lambda self: float(getattr(self.model.config, "rul_cap_h", RUL_CAP_H)))
    alert_windows = property(lambda self: int(getattr(self.model.config, "alert_windows", 2)))
    step_s = property(lambda self: float(self.model.config.step_s))

    def predict_batch(self, histories: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(risk (n,), rul_h (n,)) for n histories (T_i, N_INPUTS); the last seq_len steps are used."""
        if len(histories) == 0:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.float64)
        torch.set_num_threads(self.threads)
        risk, out1 = predict_outputs(self.model, histories)
        return risk, rul_hours(out1, self.rul_cap_h)


@dataclass
class LargeConfig:
    """Risk transformer and training settings (defaults: the trained model)."""

    d_model: int = 32  #: encoder width
    n_layers: int = 2  #: encoder layers
    n_heads: int = 4  #: attention heads
    d_ff: int = 64  #: feed-forward width
    seq_len: int = 30  #: steps of history (30 x 4 h = 5 days)
    dropout: float = 0.1  #: dropout
    horizon_h: float = HORIZON_H  #: output 0 predicts a functional failure within this many hours
    rul_cap_h: float = RUL_CAP_H  #: output 1 regresses the RUL capped at this many hours
    rul_weight: float = 1.0  #: weight of the RUL loss beside the failure BCE
    epochs: int = 6  #: training epochs
    samples_per_epoch: int = 10000  #: (machine, step) samples drawn per epoch (all if fewer)
    batch_size: int = 128  #: samples per optimizer step
    lr: float = 2e-3  #: AdamW peak learning rate
    pos_weight: float | None = 1.0  #: BCE positive weight (1: risk is a calibrated probability; None: n_neg / n_pos)
    alert_fpr: float = 0.01  #: share of no-failure-within-horizon steps of VALIDATION machines allowed to alert
    alert_windows: int = 2  #: consecutive windows at or above a threshold before any rule alerts
    val_fraction: float = 0.2  #: share of training machines held out (threshold, validation figures)
    step_s: float = 4 * 3600.0  #: nominal time between steps (the trained cadence)
    threads: int = 2  #: torch CPU threads
    version: str = "1"  #: model version ("iot-risk@1")
    seed: int = 0  #: initialisation and sampling

    def __post_init__(self) -> None:
        checks = {"epochs": self.epochs >= 1, "samples_per_epoch": self.samples_per_epoch >= 1,
                  "batch_size": self.batch_size >= 1, "lr": self.lr > 0, "alert_fpr": 0 < self.alert_fpr < 1,
                  "alert_windows": self.alert_windows >= 1, "val_fraction": 0 < self.val_fraction < 1,
                  "threads": self.threads >= 1, "horizon_h": self.horizon_h > 0,
                  "rul_cap_h": self.rul_cap_h >= self.horizon_h, "rul_weight": self.rul_weight >= 0,
                  "seq_len": self.seq_len >= 1, "step_s": self.step_s > 0}
        for key, ok in checks.items():
            if not ok:
                raise ValueError(f"LargeConfig.{key}: invalid value {getattr(self, key)!r}")


@dataclass
class MachineSteps:
    """One machine's steps before its functional failure, with the ground truth and the baselines."""

    machine: str
    t_s: np.ndarray  # (T,) window times
    x: np.ndarray  # (T, N_INPUTS) step vectors
    hours_to_failure: np.ndarray  # (T,) inf for a machine that never fails
    iso: np.ndarray  # (T,) ISO zone index 0..3 (-1: not measurable)
    anomaly: np.ndarray  # (T,) tiny anomaly score
    failure_s: float  # functional failure (s from the start; inf: none)
    observed: bool  # the failure happens inside the simulated span (an event with a lead time)
    healthy: np.ndarray | None = None  # (T,) bool, no fault has started yet (None: healthy unless failing)

    def __post_init__(self) -> None:
        if self.healthy is None:
            self.healthy = ~np.isfinite(np.asarray(self.hours_to_failure, dtype=np.float64))

    def labels(self, horizon_h: float) -> np.ndarray:
        return (self.hours_to_failure <= horizon_h).astype(np.float32)


def inference_message(machine: str, seq: int, t_s: float, features: dict, shaft_hz: float, iso_group: int,
                      foundation: str, scores: dict, anomaly: float, version: str = "1") -> dict:
    """The device's inference message for one window (the schema the service validates)."""
    return {"v": 1, "device": machine.split("/")[-1], "seq": seq, "ts": int(round(t_s * 1000)),
            "model": f"iot-tiny@{version}", "window_s": 0.8, "shaft_hz": shaft_hz, "iso_group": iso_group,
            "foundation": foundation, "features": features, "class": max(scores, key=scores.get),
            "scores": scores, "anomaly": anomaly, "anomaly_model": f"iot-anomaly@{version}"}


def machine_steps(table: Any, tiny_scores: np.ndarray, anomaly: np.ndarray) -> list[MachineSteps]:
    """Per-machine step sequences of a fleet `_dataset.WindowTable`, built through `step_vector` from the
    messages a device would send (class scores (n, 7) and anomaly scores (n,) of the int8 tiny models)."""
    from industrial_iot.iso10816 import FOUNDATIONS

    out = []
    t_end = float(np.max(table.t_s)) if len(table) else 0.0
    for mid in table.machines.tolist():
        rows = table.rows_of(mid)
        failure_s = float(table.failure_h[rows[0]]) * 3600.0
        rows = rows[table.t_s[rows] < failure_s]
        if len(rows) == 0:
            continue
        xs, prev = [], None
        for seq, r in enumerate(rows.tolist()):
            feats = {k: (None if math.isnan(v) else float(v)) for k, v in zip(FEATURE_NAMES, table.features[r],
                                                                              strict=True)}
            scores = {k: float(p) for k, p in zip(LABELS, tiny_scores[r], strict=True)}
            msg = inference_message(mid, seq, float(table.t_s[r]), feats, feats["shaft_hz"] or 0.0,
                                    int(table.iso_group[r]), FOUNDATIONS[int(table.foundation[r])], scores,
                                    float(anomaly[r]))
            dt_h = 0.0 if prev is None else (float(table.t_s[r]) - prev) / 3600.0
            xs.append(step_vector(msg, dt_h))
            prev = float(table.t_s[r])
        out.append(MachineSteps(mid, table.t_s[rows], np.stack(xs), table.hours_to_failure[rows],
                                table.iso_zone[rows].astype(np.float64), np.asarray(anomaly, np.float64)[rows],
                                failure_s, failure_s <= t_end, table.label[rows] == 0))
    return out


def _predict(model: RiskTransformer, seqs: list[MachineSteps], progress: Any = None
             ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(risk, rul_h) at every step of each machine, from its history up to that step."""
    L, cap = model.config.seq_len, float(model.config.rul_cap_h)
    risks, ruls = [], []
    for s in seqs:
        r, o = predict_outputs(model, [s.x[max(0, t - L + 1): t + 1] for t in range(len(s.t_s))], batch_size=512)
        risks.append(r.astype(np.float64))
        ruls.append(rul_hours(o, cap))
        if progress is not None:
            progress(len(s.t_s))
    return risks, ruls


def rule_report(seqs: list[MachineSteps], scores: list[np.ndarray], threshold: float, windows: int,
                horizon_h: float) -> dict[str, Any]:
    """One alert rule over machines: AUROC of the score for "failure within horizon_h" over all steps,
    lead times (first alert within horizon_h before an observed failure), detected events, and the
    machines with a false alert (an alert raised while the machine is healthy: on a machine that never
    develops a fault, or before its fault starts). Alerts on a developing fault more than horizon_h
    before the failure are not false, but give no lead time (only alerts within the span count)."""
    rule = AlertRule(threshold, windows=windows)
    span_s = horizon_h * 3600.0
    y = np.concatenate([s.labels(horizon_h) for s in seqs])
    sc = np.concatenate(scores)
    leads: list[float | None] = []
    lead_by_machine: dict[str, float | None] = {}
    false_machines = []
    for s, score in zip(seqs, scores, strict=True):
        clean = np.nan_to_num(score, nan=-np.inf)
        if s.observed:
            lead = rule.lead_s(s.t_s, clean, s.failure_s, span_s)
            leads.append(None if lead is None else lead / 3600.0)
            lead_by_machine[s.machine] = leads[-1]
        state = AlertState()
        for v, ok in zip(clean.tolist(), s.healthy.tolist(), strict=True):
            if rule.update(state, v) and ok:
                false_machines.append(s.machine)
                break
    return {"auroc": auroc_or_none(y, np.nan_to_num(sc, nan=-1.0)),
            "lead_time_h": median_or_none(leads, 1), "lead_time_spread": spread(leads, 1),
            "detected": sum(v is not None for v in leads), "events": len(leads),
            "false_alert_machines": len(false_machines), "machines": len(seqs),
            "sensitivity": round(float((sc[y == 1] >= threshold).mean()), 4) if (y == 1).any() else None,
            "step_fpr": round(float((sc[y == 0] >= threshold).mean()), 4) if (y == 0).any() else None,
            "lead_by_machine": lead_by_machine}


def rul_report(seqs: list[MachineSteps], ruls: list[np.ndarray], cap_h: float) -> dict[str, Any]:
    """RUL MAE (hours) over steps with a true RUL below the cap, overall and per machine."""
    errs, per_machine = [], []
    for s, r in zip(seqs, ruls, strict=True):
        m = s.hours_to_failure < cap_h
        if m.any():
            e = np.abs(r[m] - s.hours_to_failure[m])
            errs.append(e)
            per_machine.append(float(e.mean()))
    e = np.concatenate(errs) if errs else np.zeros(0)
    return {"rul_mae_h": round(float(e.mean()), 1) if len(e) else None, "rul_steps": len(e),
            "rul_mae_spread": spread(per_machine, 1)}


def evaluate(seqs: list[MachineSteps], risk: list[np.ndarray], ruls: list[np.ndarray], alert_threshold: float,
             anomaly_threshold: float, cfg: LargeConfig) -> dict[str, Any]:
    """The transformer beside the ISO 10816 zone rule and the anomaly-score rule on `seqs`."""
    h, w = cfg.horizon_h, cfg.alert_windows
    return {"risk": rule_report(seqs, risk, alert_threshold, w, h),
            "iso": rule_report(seqs, [s.iso for s in seqs], ISO_ALERT_ZONE, w, h),
            "anomaly": rule_report(seqs, [s.anomaly for s in seqs], anomaly_threshold, w, h),
            **rul_report(seqs, ruls, cfg.rul_cap_h),
            "steps": int(sum(len(s.t_s) for s in seqs)),
            "positive_rate": round(float(np.concatenate([s.labels(h) for s in seqs]).mean()), 4)}


def train_large(cfg: LargeConfig, train_steps: list[MachineSteps], test_steps: list[MachineSteps],
                anomaly_threshold: float = math.inf, bar: Any = None) -> tuple[RiskTransformer, dict[str, Any]]:
    """Train on the training machines (less a validation share), choose the alert threshold on the
    validation machines, evaluate on the held-out machines of `test_steps`."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    both = {s.machine for s in train_steps} & {s.machine for s in test_steps}
    if both:
        raise ValueError(f"train_large: machines in both fleets: {sorted(both)[:5]}")
    ids = np.array([s.machine for s in train_steps])
    fit_mask, val_mask = subject_split(ids, cfg.val_fraction, cfg.seed)
    fit = [s for s, k in zip(train_steps, fit_mask, strict=True) if k]
    val = [s for s, k in zip(train_steps, val_mask, strict=True) if k]
    rc = RiskConfig(n_inputs=N_INPUTS, d_model=cfg.d_model, n_layers=cfg.n_layers, n_heads=cfg.n_heads,
                    d_ff=cfg.d_ff, seq_len=cfg.seq_len, dropout=cfg.dropout, n_outputs=2, horizon_h=cfg.horizon_h,
                    step_s=cfg.step_s, input_names=list(INPUT_NAMES), rul_cap_h=cfg.rul_cap_h,
                    alert_windows=cfg.alert_windows, model_id=f"{MODEL_NAME}@{cfg.version}")
    model = RiskTransformer(rc)
    samples = np.array([(i, t) for i, s in enumerate(fit) for t in range(len(s.t_s))], dtype=np.int64)
    labels = np.concatenate([s.labels(cfg.horizon_h) for s in fit])
    targets = np.concatenate([rul_target(s.hours_to_failure, cfg.rul_cap_h) for s in fit])
    fc = FitConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, threads=cfg.threads, seed=cfg.seed,
                   samples_per_epoch=cfg.samples_per_epoch, pos_weight=cfg.pos_weight)
    update = None if bar is None else bar.update
    losses = fit_event_time(model, [s.x for s in fit], samples, labels, targets, fc, cfg.rul_weight, update)

    val_risk, val_rul = _predict(model, val, update)
    val_y = np.concatenate([s.labels(cfg.horizon_h) for s in val])
    thr = threshold_at_fpr(val_y, np.concatenate(val_risk), cfg.alert_fpr)
    model.config.alert_threshold = thr
    v = evaluate(val, val_risk, val_rul, thr, anomaly_threshold, cfg)
    te_risk, te_rul = _predict(model, test_steps, update)
    t = evaluate(test_steps, te_risk, te_rul, thr, anomaly_threshold, cfg)

    metrics = {
        "model_id": f"{MODEL_NAME}@{cfg.version}",
        "risk_auroc": t["risk"]["auroc"], "iso_auroc": t["iso"]["auroc"], "anomaly_rule_auroc": t["anomaly"]["auroc"],
        "lead_time_h": t["risk"]["lead_time_h"], "iso_lead_time_h": t["iso"]["lead_time_h"],
        "anomaly_lead_time_h": t["anomaly"]["lead_time_h"], "rul_mae_h": t["rul_mae_h"],
        "events_test": t["risk"]["events"], "risk_detected": t["risk"]["detected"],
        "iso_detected": t["iso"]["detected"], "anomaly_detected": t["anomaly"]["detected"],
        "false_alert_machines": t["risk"]["false_alert_machines"],
        "iso_false_alert_machines": t["iso"]["false_alert_machines"],
        "anomaly_false_alert_machines": t["anomaly"]["false_alert_machines"],
        "lead_time_spread": t["risk"]["lead_time_spread"], "iso_lead_time_spread": t["iso"]["lead_time_spread"],
        "anomaly_lead_time_spread": t["anomaly"]["lead_time_spread"], "rul_mae_spread": t["rul_mae_spread"],
        "alert_threshold": thr, "alert_fpr_val": cfg.alert_fpr, "alert_windows": cfg.alert_windows,
        "alert_span_h": cfg.horizon_h, "horizon_h": cfg.horizon_h, "rul_cap_h": cfg.rul_cap_h,
        "iso_alert_zone": "C", "anomaly_threshold": anomaly_threshold,
        "val_risk_auroc": v["risk"]["auroc"], "val_iso_auroc": v["iso"]["auroc"],
        "val_anomaly_rule_auroc": v["anomaly"]["auroc"], "val_lead_time_h": v["risk"]["lead_time_h"],
        "val_iso_lead_time_h": v["iso"]["lead_time_h"], "val_rul_mae_h": v["rul_mae_h"],
        "test": t, "val": v,
        "n_fit_machines": len(fit), "n_val_machines": len(val), "n_test_machines": len(test_steps),
        "n_train_samples": len(samples), "train_positive_rate": round(float(labels.mean()), 4),
        "train_losses": [round(x, 4) for x in losses],
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "config": asdict(cfg),
    }
    return model, metrics
