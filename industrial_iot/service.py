"""The industrial_iot cloud service: each machine's history -> failure risk, remaining life, an action.

For every accepted ``inference`` message the platform's subject service (:mod:`shared.runtime.service`)
stores it, appends one step (``industrial_iot.large.step_vector``) to the machine's history, and scores
the histories of all machines in batches with the fleet transformer. This module holds what is the
domain's:

* measurements ``vibration`` (the 21 DSP features and the reported speed) and ``inference`` (class,
  class scores, anomaly score, the machine's ISO 10816-3 group and foundation);
* the baseline beside the model: the ISO 10816-3 zone of the window's velocity RMS;
* the result, published on ``tinylarge/industrial_iot/<machine>/action`` and stored as ``action``:
  ``risk`` (functional failure within ``horizon_h``), ``rul_h`` (remaining useful life), the ISO zone,
  the anomaly score, ``alert`` (the platform's alert rule on risk) and the maintenance ``action``:

  ==================  =======================================================================
  maintain_now        ISO zone D, or an alert with remaining life under ``MAINTAIN_NOW_H``
  plan_maintenance    an alert (risk at or above the trained threshold on consecutive windows),
                      or risk at or above it while an alert is active
  watch               risk above half the threshold, ISO zone C, or an anomaly above the
                      device's threshold
  none                otherwise
  ==================  =======================================================================
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from industrial_iot import DOMAIN, iso10816
from shared.protocol.messages import SCHEMA_VERSION
from shared.runtime.service import Job, ServiceConfig, Subject, SubjectService

MAINTAIN_NOW_H = 48.0  #: remaining useful life under which an alert means "maintain now"

__all__ = ["IotService", "service_factory", "action_for"]


def action_for(risk: float, threshold: float, alerting: bool, alert: bool, rul_h: float | None,
               zone: str | None, anomaly: float | None, anomaly_threshold: float) -> tuple[str, str]:
    """(action, reason) for one scored window; see the module docstring's table."""
    if zone == "D":
        return "maintain_now", "ISO 10816-3 zone D"
    if (alert or alerting) and rul_h is not None and rul_h < MAINTAIN_NOW_H:
        return "maintain_now", f"failure risk alert, remaining life {rul_h:.0f} h"
    if alert or (alerting and risk >= threshold):
        return "plan_maintenance", f"failure risk {risk:.2f} >= {threshold:.2f} on consecutive windows"
    if risk >= threshold / 2:
        return "watch", f"failure risk {risk:.2f}"
    if zone == "C":
        return "watch", "ISO 10816-3 zone C"
    if anomaly is not None and anomaly >= anomaly_threshold:
        return "watch", f"anomaly score {anomaly:.3g} above the device's threshold"
    return "none", ""


class IotService(SubjectService):
    """industrial_iot's hooks on the platform's subject service."""

    domain = DOMAIN.name

    def __init__(self, store: Any, predictor: Any, publish: Callable[[str, str, dict], None],
                 cfg: ServiceConfig | None = None, anomaly_threshold: float = float("inf"),
                 on_action: Callable[[dict], None] | None = None):
        from industrial_iot.large import step_vector  # torch import only when a service is built

        self._step_vector = step_vector
        self.anomaly_threshold = anomaly_threshold
        super().__init__(store, predictor, publish, cfg, model_id=DOMAIN.model_ids[1], result_stream="action",
                         on_result=on_action)

    def inference_points(self, msg: dict) -> list:
        from shared.storage.base import Point

        device, seq, ts = msg["device"], msg["seq"], msg["ts"]
        tags = {"domain": DOMAIN.name, "model": msg["model"]}
        vib = {**msg["features"], "shaft_hz": msg["shaft_hz"]}
        inf = {"class": msg["class"], "anomaly": msg["anomaly"], "iso_group": msg["iso_group"],
               "foundation": msg["foundation"], "window_s": msg["window_s"],
               **{f"p_{k}": v for k, v in msg["scores"].items()}}
        return [Point("vibration", device, seq, ts, vib, tags), Point("inference", device, seq, ts, inf, tags)]

    def step(self, s: Subject, msg: dict) -> np.ndarray:
        dt_h = 0.0 if s.last_seq < 0 else max(0.0, (msg["ts"] - s.last_ts) / 3.6e6)
        return self._step_vector(msg, dt_h)

    def baseline(self, s: Subject, msg: dict) -> str | None:
        v = msg["features"].get("v_rms_mm_s")
        if v is None or not np.isfinite(v):
            return None
        return iso10816.zone(float(v), int(msg["iso_group"]), str(msg["foundation"]))

    def score_of(self, output: Any) -> float:
        risk = float(output[0]) if isinstance(output, tuple | list) else float(output)
        return risk if np.isfinite(risk) else 0.0

    def result(self, s: Subject, job: Job, output: Any, alert: bool) -> tuple[dict, list]:
        from shared.storage.base import Point

        risk = self.score_of(output)
        rul = float(output[1]) if isinstance(output, tuple | list) and len(output) > 1 else float("nan")
        rul_h = round(max(0.0, rul), 1) if np.isfinite(rul) else None
        anomaly = job.msg.get("anomaly")
        action, reason = action_for(risk, self.rule.threshold, s.alert.alerting, alert, rul_h, job.baseline,
                                    anomaly, self.anomaly_threshold)
        msg = {"v": SCHEMA_VERSION, "device": s.device, "seq": job.msg["seq"], "ts": job.msg["ts"],
               "model": self.model_id, "risk": round(risk, 5),
               "horizon_h": float(getattr(self.predictor, "horizon_h", 168.0)), "rul_h": rul_h,
               "iso_zone": job.baseline, "anomaly": anomaly, "alert": alert, "action": action, "reason": reason,
               "windows": len(job.history), "source_seq": job.msg["seq"]}
        point = Point("action", s.device, job.msg["seq"], job.msg["ts"],
                      {"risk": msg["risk"], "rul_h": rul_h, "iso_zone": job.baseline, "alert": alert,
                       "action": action}, {"domain": DOMAIN.name})
        return msg, [point]

    def rebuild_subject(self, device: str) -> int:
        inferences = self.store.query("inference", device)[-self.cfg.history_steps:]
        if not inferences:
            return 0
        vib = {pt.seq: pt for pt in self.store.query("vibration", device, start_ms=inferences[0].ts_ms)}
        s = self.subject(device)
        loaded = 0
        for inf in inferences:
            v = vib.get(inf.seq)
            if v is None:
                continue
            f = dict(v.fields)
            shaft_hz = f.get("shaft_hz")
            msg = {"seq": inf.seq, "ts": inf.ts_ms, "features": f, "shaft_hz": shaft_hz,
                   "class": inf.fields.get("class"), "anomaly": inf.fields.get("anomaly"),
                   "iso_group": inf.fields.get("iso_group"), "foundation": inf.fields.get("foundation"),
                   "scores": {k[2:]: val for k, val in inf.fields.items() if k.startswith("p_")}}
            self.append(s, msg)
            loaded += 1
        return loaded


def service_settings(models_dir: Path) -> tuple[ServiceConfig, float]:
    """The service settings and the anomaly threshold, from the training run (metrics.json)."""
    cfg = ServiceConfig(history_steps=72)
    anomaly_threshold = float("inf")
    metrics_path = Path(models_dir) / "metrics.json"
    if metrics_path.exists():
        m = json.loads(metrics_path.read_text())
        cfg.alert_threshold = float(m.get("alert_threshold", cfg.alert_threshold))
        cfg.alert_windows = int(m.get("alert_windows", cfg.alert_windows))
        anomaly_threshold = float(m.get("anomaly_threshold", anomaly_threshold))
    return cfg, anomaly_threshold


def service_factory(models_dir: Path) -> Callable[..., IotService]:
    """``build(store, publish, on_result)``: the service on the fleet transformer of ``models_dir``."""
    from industrial_iot.large import RiskPredictor

    cfg, anomaly_threshold = service_settings(models_dir)
    predictor = RiskPredictor.load(Path(models_dir) / "large", threads=cfg.torch_threads)
    cfg.history_steps = int(predictor.model.config.seq_len)

    def build(store: Any, publish: Callable[[str, str, dict], None], on_result: Any = None) -> IotService:
        return IotService(store, predictor, publish, cfg, anomaly_threshold, on_action=on_result)

    return build
