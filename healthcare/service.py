"""The healthcare cloud service: consume wearable inferences per patient, keep history, raise risk.

Data flow for every accepted ``inference`` message (QoS 1, acknowledged only after this returns):

1. store the vitals (measurement ``vitals``, with the device's ``hr_quality``) and the tiny model's verdict
   (measurement ``inference``); a withheld HR (null, ``hr_quality`` "low") is no reading: NEWS2 keeps the
   last valid one for CARRY_VITALS_S;
2. append one step (``healthcare.large.step_vector``) to the patient's history, with the latest charted
   observations (``chart`` stream: blood pressure, consciousness, oxygen) carried forward;
3. queue the window for scoring with a snapshot of the history up to it and NEWS2 from the same
   vitals and chart.

Batched scoring, overload handling, the alert rule (risk at or above the threshold chosen at training
time on ``alert_windows`` consecutive windows, 15 min by default; re-armed below half of it) and the
rebuild after a restart are the platform's (:mod:`shared.runtime.service`); this module holds what is
healthcare's: the points stored, the step vector with charts carried forward, NEWS2 beside the model,
and the ``risk`` message published on ``tinylarge/healthcare/<device>/risk``. Charts are a site stream
(the ``ehr`` role): stored only for patients the service knows, and a chart re-sent under a stored
``(device, seq)`` with other content is dead-lettered as a seq conflict (:mod:`shared.runtime.service`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from healthcare import DOMAIN, news2
from shared.protocol.messages import SCHEMA_VERSION, Topic
from shared.runtime.service import Job, ServiceConfig, Subject, SubjectService

CARRY_VITALS_S = 1800.0  #: last valid vitals are carried this long for NEWS2 over unreliable windows

__all__ = ["HealthcareService", "ServiceConfig", "service_config", "service_factory"]


class HealthcareService(SubjectService):
    """Healthcare's hooks on the platform's subject service: vitals, charts, NEWS2, risk messages."""

    domain = DOMAIN.name
    counts_extra = ("charts",)

    def __init__(self, store: Any, predictor: Any, publish: Callable[[str, str, dict], None],
                 cfg: ServiceConfig | None = None, on_risk: Callable[[dict], None] | None = None):
        from healthcare.large import step_vector  # torch import only when a service is built

        self._step_vector = step_vector
        super().__init__(store, predictor, publish, cfg, model_id=DOMAIN.model_ids[1], result_stream="risk",
                         on_result=on_risk)

    @property
    def patients(self) -> dict[str, Subject]:
        return self.subjects

    # -- hooks -----------------------------------------------------------------------------------------
    def extra_handlers(self) -> dict[str, Callable[[Topic, dict], None]]:
        return {"chart": self.on_chart}

    def on_chart(self, topic: Topic, msg: dict) -> None:
        from shared.storage.base import Point

        fields = {k: msg.get(k) for k in ("sbp_mmhg", "consciousness", "on_oxygen", "rr_bpm", "temp_c")}
        fields["spo2_scale"] = msg.get("spo2_scale", 1)
        # a chart re-sent with other content under a stored (device, seq) raises (dead-lettered: seq conflict)
        self.write_points([Point("chart", msg["device"], msg["seq"], msg["ts"], fields, {"domain": DOMAIN.name})])
        with self._lock:
            s = self.subject(msg["device"])
            chart = s.extra.get("chart")
            if chart is None or msg["ts"] >= chart["ts"]:
                s.extra["chart"] = {**fields, "ts": msg["ts"]}
            self.counts["charts"] += 1

    def inference_points(self, msg: dict) -> list:
        from shared.storage.base import Point

        device, seq, ts = msg["device"], msg["seq"], msg["ts"]
        tags = {"domain": DOMAIN.name, "model": msg["model"]}
        return [
            # hr_quality "low": HR and HRV withheld by the device (null); absent from older devices' messages
            Point("vitals", device, seq, ts, {**msg["vitals"], "hr_quality": msg.get("hr_quality")}, tags),
            Point("inference", device, seq, ts, {"class": msg["class"], **{
                f"p_{k}": v for k, v in msg["scores"].items()}}, tags),
        ]

    def step(self, s: Subject, msg: dict) -> np.ndarray:
        chart = s.extra.get("chart")
        if chart is not None:
            chart = {**chart, "hours_since": (msg["ts"] - chart["ts"]) / 3.6e6}
        vitals = s.extra.setdefault("vitals", {})  # last valid value and its ts per vital
        for k, v in msg["vitals"].items():
            if v is not None:
                vitals[k] = (v, msg["ts"])
        return self._step_vector(msg["vitals"], msg["scores"], chart, msg["ts"] / 1000.0)

    def baseline(self, s: Subject, msg: dict) -> news2.News2 | None:
        return self.news2_for(s)

    def news2_for(self, s: Subject) -> news2.News2 | None:
        """NEWS2 from the latest device vitals (carried over short gaps) and the latest chart."""
        chart = s.extra.get("chart")
        if chart is None:
            return None
        fresh = {k: v for k, (v, ts) in s.extra.get("vitals", {}).items()  # bounded on both sides: a reading
                 if 0 <= s.last_ts - ts <= CARRY_VITALS_S * 1000}  # dated after the latest is not fresh
        if not all(k in fresh for k in ("rr_bpm", "spo2_pct", "hr_bpm", "temp_c")):
            return None
        rr = chart.get("rr_bpm") if fresh.get("rr_bpm") is None else fresh["rr_bpm"]
        return news2.score(rr=rr, spo2=fresh["spo2_pct"], on_oxygen=bool(chart["on_oxygen"]),
                           sbp=chart["sbp_mmhg"], hr=fresh["hr_bpm"],
                           consciousness=chart["consciousness"], temp_c=fresh["temp_c"],
                           spo2_scale=int(chart.get("spo2_scale") or 1))

    def score_of(self, output: Any) -> float:
        risk = float(output)
        return risk if np.isfinite(risk) else 0.0

    def result(self, s: Subject, job: Job, output: Any, alert: bool) -> tuple[dict, list]:
        from shared.storage.base import Point

        risk, n2, msg_in = self.score_of(output), job.baseline, job.msg
        msg = {"v": SCHEMA_VERSION, "device": s.device, "seq": msg_in["seq"], "ts": msg_in["ts"],
               "model": self.model_id, "risk": round(risk, 5),
               "horizon_h": float(getattr(self.predictor, "horizon_h", 6.0)),
               "news2": None if n2 is None else n2.score, "news2_band": None if n2 is None else n2.band,
               "alert": alert, "windows": len(job.history), "source_seq": msg_in["seq"]}
        point = Point("risk", s.device, msg_in["seq"], msg_in["ts"],
                      {"risk": msg["risk"], "news2": msg["news2"], "alert": alert}, {"domain": DOMAIN.name})
        return msg, [point]

    def rebuild_subject(self, device: str) -> int:
        charts = self.store.query("chart", device)
        inferences = self.store.query("inference", device)[-self.cfg.history_steps:]
        if not inferences:
            return 0
        vitals = {pt.seq: pt for pt in self.store.query("vitals", device, start_ms=inferences[0].ts_ms)}
        s = self.subject(device)
        loaded = 0
        for inf in inferences:
            while charts and charts[0].ts_ms <= inf.ts_ms:
                c = charts.pop(0)
                s.extra["chart"] = {**c.fields, "ts": c.ts_ms}
            vit = vitals.get(inf.seq)
            if vit is None:
                continue
            scores = {k[2:]: v for k, v in inf.fields.items() if k.startswith("p_")}
            sent = {k: v for k, v in vit.fields.items() if k != "hr_quality"}  # the message's vitals
            self.append(s, {"vitals": sent, "scores": scores, "seq": inf.seq, "ts": inf.ts_ms})
            loaded += 1
        return loaded


def service_config(models_dir: Path) -> ServiceConfig:
    """The service settings, with the alert threshold the training run chose (metrics.json)."""
    cfg = ServiceConfig()
    metrics_path = Path(models_dir) / "metrics.json"
    if metrics_path.exists():
        cfg.alert_threshold = float(json.loads(metrics_path.read_text()).get("alert_threshold",
                                                                            cfg.alert_threshold))
    return cfg


def service_factory(models_dir: Path) -> Callable[..., HealthcareService]:
    """``build(store, publish, on_result)``: the service on the risk transformer of ``models_dir``."""
    from healthcare.large import RiskPredictor

    cfg = service_config(models_dir)
    predictor = RiskPredictor.load(Path(models_dir) / "large", threads=cfg.torch_threads)

    def build(store: Any, publish: Callable[[str, str, dict], None], on_result: Any = None) -> HealthcareService:
        return HealthcareService(store, predictor, publish, cfg, on_risk=on_result)

    return build
