"""The healthcare cloud model: per-patient history of device windows -> risk of deterioration.

Each 5-min device window becomes one step vector (`step_vector`, used identically in training and by
the cloud service): the window's vitals (standardised like `features.to_vector`, with a missing-mask),
the tiny model's class scores, the latest charted observations carried forward (SBP, consciousness,
oxygen, RR, temperature, hours since charting, or a no-chart flag), the NEWS2 of the window's vitals
with that chart, and the time of day. A `shared.large.transformer.RiskTransformer` reads the last `seq_len`
steps (6 h) and outputs the probability of a deterioration event within the next `horizon_h` hours.

Training (`train_large`) and evaluation use different simulated cohorts (different patients); the
alert threshold is chosen on the TRAINING cohort at a fixed false-alert rate, then lead times and
AUROC are measured on the held-out cohort, beside NEWS2 computed the way the service does.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from healthcare import DOMAIN, news2
from healthcare.features import FEATURE_NAMES, VECTOR_CENTER, VECTOR_CLIP, VECTOR_SCALE
from healthcare.signals import LABELS
from shared.large.transformer import (
    FitConfig,
    RiskConfig,
    RiskTransformer,
    fit_binary,
    predict_histories,
)
from shared.runtime.alerts import AlertRule
from shared.runtime.metrics import auroc, median_or_none, threshold_at_fpr

MODEL_NAME = DOMAIN.large_model  #: "hc-risk", declared in healthcare/__init__.py
CONSCIOUSNESS = ("A", "C", "V", "P", "U")
CHART_NAMES = ("chart_sbp", "chart_not_alert", "chart_on_oxygen", "chart_rr", "chart_temp", "chart_age",
               "chart_missing")
INPUT_NAMES: tuple[str, ...] = (
    tuple(f"v_{k}" for k in FEATURE_NAMES) + tuple(f"missing_{k}" for k in FEATURE_NAMES)
    + tuple(f"p_{k}" for k in LABELS) + CHART_NAMES + ("news2", "news2_missing", "tod_sin", "tod_cos"))
N_INPUTS = len(INPUT_NAMES)
NEWS2_ALERT = 5  # NEWS2 >= 5: "medium" clinical risk, urgent review (the usual trigger)
CARRY_VITALS_S = 1800.0  # NEWS2 beside the model: last valid device vitals carried this long (as the service)


def _num(x: Any) -> float:
    """float, NaN for None / missing / non-finite."""
    if x is None:
        return math.nan
    v = float(x)
    return v if math.isfinite(v) else math.nan


def step_vector(vitals: dict, scores: dict, chart: dict | None, t_s: float) -> np.ndarray:
    """One step's input vector (float32[N_INPUTS], names in INPUT_NAMES).

    vitals: the device message's vitals (FEATURE_NAMES -> number or None). scores: label -> tiny
    probability. chart: the latest chart (sbp_mmhg, consciousness, on_oxygen, rr_bpm, temp_c and
    hours_since, or t_s to compute it) or None. t_s: window end in epoch seconds (time of day, UTC).
    """
    if not isinstance(vitals, dict) or not isinstance(scores, dict):
        raise TypeError("step_vector: vitals and scores must be dicts")
    if not math.isfinite(float(t_s)):
        raise ValueError(f"t_s: must be finite, got {t_s!r}")
    raw = np.array([_num(vitals.get(k)) for k in FEATURE_NAMES], dtype=np.float64)
    missing = np.isnan(raw)
    z = np.clip((raw - VECTOR_CENTER) / VECTOR_SCALE, -VECTOR_CLIP, VECTOR_CLIP)
    z[missing] = 0.0
    probs = np.array([_num(scores.get(k)) for k in LABELS], dtype=np.float64)
    probs = np.where(np.isnan(probs), 0.0, probs)
    ch = np.zeros(len(CHART_NAMES))
    n2, n2_missing = 0.0, 1.0
    if chart is None:
        ch[-1] = 1.0
    else:
        sbp, rr_c, temp_c = _num(chart.get("sbp_mmhg")), _num(chart.get("rr_bpm")), _num(chart.get("temp_c"))
        cons = str(chart.get("consciousness") or "A")
        if cons not in CONSCIOUSNESS:
            raise ValueError(f"chart.consciousness: must be one of {CONSCIOUSNESS}, got {cons!r}")
        age_h = _num(chart.get("hours_since"))
        if math.isnan(age_h) and chart.get("t_s") is not None:
            age_h = (float(t_s) - float(chart["t_s"])) / 3600.0
        on_o2 = bool(chart.get("on_oxygen"))
        ch[:6] = [0.0 if math.isnan(sbp) else np.clip((sbp - 120.0) / 20.0, -4, 4), float(cons != "A"),
                  float(on_o2), 0.0 if math.isnan(rr_c) else np.clip((rr_c - 16.0) / 6.0, -4, 4),
                  0.0 if math.isnan(temp_c) else np.clip(temp_c - 36.8, -4, 4),
                  0.0 if math.isnan(age_h) else np.clip(age_h / 12.0, 0.0, 3.0)]
        rr = raw[4] if not missing[4] else rr_c
        vals = (rr, raw[3], sbp, raw[0], raw[5])
        if all(math.isfinite(v) for v in vals):
            try:
                s = news2.score(rr=rr, spo2=raw[3], on_oxygen=on_o2, sbp=sbp, hr=raw[0], consciousness=cons,
                                temp_c=raw[5], spo2_scale=int(chart.get("spo2_scale") or 1))
                n2, n2_missing = s.score / 10.0, 0.0
            except ValueError:
                pass
    tod = 2.0 * math.pi * (float(t_s) % 86400.0) / 86400.0
    out = np.concatenate([z, missing.astype(float), probs, ch, [n2, n2_missing, math.sin(tod), math.cos(tod)]])
    return out.astype(np.float32)


class RiskPredictor:
    """Batched CPU inference of the saved risk transformer (what the cloud service calls)."""

    def __init__(self, model: RiskTransformer, threads: int = 2):
        if model.config.n_inputs != N_INPUTS:
            raise ValueError(f"risk model expects {model.config.n_inputs} inputs, step_vector makes {N_INPUTS}")
        self.model = model.eval()
        self.threads = threads

    @classmethod
    def load(cls, model_dir: str | Path, threads: int = 2) -> RiskPredictor:
        d = Path(model_dir)
        if not (d / "config.json").exists():
            raise FileNotFoundError(f"{d}/config.json not found: train first (tinylarge train healthcare)")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar in service logs
        return cls(RiskTransformer.from_pretrained(str(d)), threads)

    horizon_h = property(lambda self: float(self.model.config.horizon_h))
    alert_threshold = property(lambda self: float(self.model.config.alert_threshold))
    seq_len = property(lambda self: int(self.model.config.seq_len))

    def predict_batch(self, histories: list[np.ndarray]) -> np.ndarray:
        """Risks (n,) for n histories (T_i, N_INPUTS), T_i may differ; the last seq_len steps are used."""
        if len(histories) == 0:
            return np.zeros(0, dtype=np.float32)
        torch.set_num_threads(self.threads)
        return predict_histories(self.model, histories)


@dataclass
class LargeConfig:
    """Risk transformer and training settings (defaults: the trained model)."""

    d_model: int = 64  #: encoder width
    n_layers: int = 2  #: encoder layers
    n_heads: int = 4  #: attention heads
    d_ff: int = 128  #: feed-forward width
    seq_len: int = 72  #: steps of history (72 x 5 min = 6 h)
    dropout: float = 0.1  #: dropout
    horizon_h: float = 6.0  #: predict an event within this many hours
    epochs: int = 4  #: training epochs
    samples_per_epoch: int = 20000  #: (patient, step) samples drawn per epoch (all if fewer)
    batch_size: int = 256  #: samples per optimizer step
    lr: float = 2e-3  #: AdamW peak learning rate
    alert_fpr: float = 0.02  #: share of non-event steps of the TRAINING cohort allowed to alert
    threads: int = 2  #: torch CPU threads
    version: str = "1"  #: model version ("hc-risk@1")
    seed: int = 0  #: initialisation and sampling

    def __post_init__(self) -> None:
        checks = {"epochs": self.epochs >= 1, "samples_per_epoch": self.samples_per_epoch >= 1,
                  "batch_size": self.batch_size >= 1, "lr": self.lr > 0, "alert_fpr": 0 < self.alert_fpr < 1,
                  "threads": self.threads >= 1, "horizon_h": self.horizon_h > 0, "seq_len": self.seq_len >= 1}
        for key, ok in checks.items():
            if not ok:
                raise ValueError(f"LargeConfig.{key}: invalid value {getattr(self, key)!r}")


@dataclass
class PatientSteps:
    """One patient's steps: inputs (T, N_INPUTS), times, labels, NEWS2 as the service computes it."""

    patient: str
    t_s: np.ndarray
    x: np.ndarray
    y: np.ndarray  # 1 if the event falls in (t, t + horizon]
    eligible: np.ndarray  # steps before the event (after it, the patient is being treated)
    news2: np.ndarray  # float, NaN where the service would have none (no chart yet / stale vitals)
    event_s: float


def patient_steps(table: Any, tiny_scores: np.ndarray, horizon_h: float) -> list[PatientSteps]:
    """Per-patient step sequences from a `_dataset.CohortTable` and the tiny model's scores (n, 6)."""
    horizon_s = horizon_h * 3600.0
    events = dict(zip(table.patients.tolist(), table.event_s.tolist(), strict=True))
    out = []
    for pid in table.patients.tolist():
        rows = table.rows_of(pid)
        xs, n2s, last = [], [], {}
        for r in rows:
            vit = {k: (None if math.isnan(v) else float(v)) for k, v in zip(FEATURE_NAMES, table.features[r],
                                                                              strict=True)}
            c = table.chart[r]
            chart = None
            if not math.isnan(c[5]):
                chart = {"sbp_mmhg": c[0], "consciousness": CONSCIOUSNESS[int(c[1])], "on_oxygen": bool(c[2]),
                         "rr_bpm": c[3], "temp_c": c[4], "hours_since": (table.t_s[r] - c[5]) / 3600.0}
            scores = dict(zip(LABELS, tiny_scores[r].tolist(), strict=True))
            xs.append(step_vector(vit, scores, chart, float(table.clock_s[r])))
            for k, v in vit.items():
                if v is not None:
                    last[k] = (v, table.t_s[r])
            n2s.append(_service_news2(last, chart, table.t_s[r]))
        t = table.t_s[rows]
        ev = events[pid]
        y = (ev - t > 0) & (ev - t <= horizon_s) if not math.isnan(ev) else np.zeros(len(t), bool)
        eligible = t < ev if not math.isnan(ev) else np.ones(len(t), bool)
        out.append(PatientSteps(pid, t, np.stack(xs), y.astype(np.float32), eligible, np.array(n2s), ev))
    return out


def _service_news2(last: dict, chart: dict | None, t_s: float) -> float:
    """NEWS2 from the latest device vitals (carried CARRY_VITALS_S) and the chart, like the service."""
    if chart is None:
        return math.nan
    fresh = {k: v for k, (v, ts) in last.items() if t_s - ts <= CARRY_VITALS_S}
    if not all(k in fresh for k in ("rr_bpm", "spo2_pct", "hr_bpm", "temp_c")):
        return math.nan
    return float(news2.score(rr=fresh["rr_bpm"], spo2=fresh["spo2_pct"], on_oxygen=chart["on_oxygen"],
                             sbp=chart["sbp_mmhg"], hr=fresh["hr_bpm"], consciousness=chart["consciousness"],
                             temp_c=fresh["temp_c"]).score)


def predict_steps(model: RiskTransformer, seqs: list[PatientSteps], stride: int = 1,
                  progress: Any = None) -> list[np.ndarray]:
    """Risk at every `stride`-th eligible step of each patient (NaN elsewhere)."""
    L = model.config.seq_len
    out = []
    for s in seqs:
        r = np.full(len(s.t_s), np.nan)
        idx = np.flatnonzero(s.eligible)[::stride]
        if len(idx):
            r[idx] = predict_histories(model, [s.x[max(0, t - L + 1): t + 1] for t in idx], batch_size=512)
        out.append(r)
        if progress is not None:
            progress(len(idx))
    return out


def _lead_times(seqs: list[PatientSteps], scores: list[np.ndarray], thr: float, horizon_s: float) -> list:
    leads = []
    for s, sc in zip(seqs, scores, strict=True):
        if math.isnan(s.event_s):
            continue
        lead = AlertRule(thr, windows=1).lead_s(s.t_s, sc, s.event_s, span_s=horizon_s)
        leads.append(None if lead is None else lead / 60.0)
    return leads


def train_large(cfg: LargeConfig, train: list[PatientSteps], test: list[PatientSteps],
                bar: Any = None) -> tuple[RiskTransformer, dict[str, Any]]:
    """Train on `train` patients, choose the alert threshold on them, evaluate on `test` patients."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    both = {s.patient for s in train} & {s.patient for s in test}
    if both:
        raise ValueError(f"train_large: patients in both cohorts: {sorted(both)[:5]}")
    rc = RiskConfig(n_inputs=N_INPUTS, d_model=cfg.d_model, n_layers=cfg.n_layers, n_heads=cfg.n_heads,
                    d_ff=cfg.d_ff, seq_len=cfg.seq_len, dropout=cfg.dropout, horizon_h=cfg.horizon_h,
                    input_names=list(INPUT_NAMES))
    model = RiskTransformer(rc)
    samples = np.array([(i, t) for i, s in enumerate(train) for t in np.flatnonzero(s.eligible)], dtype=np.int64)
    labels = np.array([train[i].y[t] for i, t in samples], dtype=np.float32)
    fit = FitConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, threads=cfg.threads, seed=cfg.seed,
                    samples_per_epoch=cfg.samples_per_epoch)
    update = None if bar is None else bar.update
    losses = fit_binary(model, [s.x for s in train], samples, labels, fit, progress=update)

    horizon_s = cfg.horizon_h * 3600.0
    tr_risk = predict_steps(model, train, stride=3, progress=update)
    tr_mask = [~np.isnan(r) for r in tr_risk]
    tr_y = np.concatenate([s.y[m] for s, m in zip(train, tr_mask, strict=True)])
    thr = threshold_at_fpr(tr_y, np.concatenate([r[m] for r, m in zip(tr_risk, tr_mask, strict=True)]), cfg.alert_fpr)
    model.config.alert_threshold = thr

    te_risk = predict_steps(model, test, progress=update)
    y = np.concatenate([s.y[s.eligible] for s in test])
    risk = np.concatenate([r[s.eligible] for s, r in zip(test, te_risk, strict=True)])
    n2 = np.concatenate([s.news2[s.eligible] for s in test])
    has_n2 = ~np.isnan(n2)
    neg = y == 0
    risk_leads = _lead_times(test, te_risk, thr, horizon_s)
    n2_leads = _lead_times(test, [s.news2 for s in test], NEWS2_ALERT, horizon_s)

    metrics = {
        "model_id": f"{MODEL_NAME}@{cfg.version}",
        "risk_auroc": auroc(y[has_n2], risk[has_n2]), "news2_auroc": auroc(y[has_n2], n2[has_n2]),
        "risk_auroc_all_steps": auroc(y, risk),
        "alert_threshold": thr, "alert_fpr_train": cfg.alert_fpr,
        "risk_fpr_test": float((risk[neg] >= thr).mean()),
        "news2_fpr_test": float((n2[neg & has_n2] >= NEWS2_ALERT).mean()),
        "risk_sensitivity_test": float((risk[~neg] >= thr).mean()),
        "news2_sensitivity_test": float((n2[~neg & has_n2] >= NEWS2_ALERT).mean()),
        "lead_time_min": median_or_none(risk_leads), "news2_lead_time_min": median_or_none(n2_leads),
        "risk_detected": sum(v is not None for v in risk_leads), "news2_detected": sum(v is not None for v in n2_leads),
        "events_test": len(risk_leads), "horizon_h": cfg.horizon_h, "news2_alert": NEWS2_ALERT,
        "n_test_steps": len(y), "n_test_steps_with_news2": int(has_n2.sum()), "test_positive_rate": float(y.mean()),
        "n_train_samples": len(samples), "train_positive_rate": float(labels.mean()),
        "train_losses": [round(v, 4) for v in losses],
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "config": asdict(cfg),
    }
    return model, metrics

