"""The vehicles cloud service: each vehicle's trip history -> driver crash risk, and the road-hazard map.

For every accepted ``inference`` message the platform's subject service (:mod:`shared.runtime.service`)
stores it (measurements ``trip``: distance, statistics and event counts; ``inference``: the unit's
model, calibration, GNSS coverage), appends one step (``vehicles.large.step_vector``) to the
vehicle's history and scores all vehicles' histories in batches with the transformer. This module holds
what is the domain's:

* the baseline beside the model: points per 100 km over the vehicle's history (`large.vendor_points`);
* the hazard map (`vehicles.hazards.HazardMap`): every pothole and speed bump reported with a position
  joins it; hazards confirmed by several vehicles within HAZARD_RADIUS_M of where the vehicle is now
  go back to it in the result;
* the result on ``tinylarge/vehicles/<vehicle>/action`` (stored as ``action``): ``risk`` (crash or
  near miss within the next ``horizon_trips`` trip segments), the vendor score, ``alert`` (the
  platform's alert rule on risk), ``level`` (high: alerting; elevated: risk above half the threshold;
  else low) and ``hazards_ahead``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from shared.protocol.messages import SCHEMA_VERSION
from shared.runtime.service import Job, ServiceConfig, Subject, SubjectService
from vehicles import DOMAIN
from vehicles.features import EVENT_KINDS, TRIP_STATS
from vehicles.hazards import HazardMap
from vehicles.large import step_vector, trip_points, vendor_points

HAZARD_RADIUS_M = 600.0

__all__ = ["VehService", "service_factory", "service_settings"]


class VehService(SubjectService):
    domain = DOMAIN.name
    counts_extra = ("hazard_reports",)

    def __init__(self, store: Any, predictor: Any, publish: Callable[[str, str, dict], None],
                 cfg: ServiceConfig | None = None, horizon_trips: int = 10,
                 on_action: Callable[[dict], None] | None = None):
        self.hazards = HazardMap()
        self.horizon_trips = horizon_trips
        super().__init__(store, predictor, publish, cfg, model_id=DOMAIN.model_ids[1], result_stream="action",
                         on_result=on_action)

    def inference_points(self, msg: dict) -> list:
        from shared.storage.base import Point

        device, seq, ts = msg["device"], msg["seq"], msg["ts"]
        tags = {"domain": DOMAIN.name, "model": msg["model"]}
        trip = {"distance_km": msg["distance_km"], **msg["stats"], **{f"n_{k}": v for k, v in msg["counts"].items()},
                **{f"rule_{k}": v for k, v in msg["rule_counts"].items()}}
        inf = {"trip_s": msg["trip_s"], "calibrated": msg["calibrated"], "gnss_fix_frac": msg["gnss_fix_frac"],
               "lat": msg["lat"], "lon": msg["lon"], "events": len(msg["events"])}
        return [Point("trip", device, seq, ts, trip, tags), Point("inference", device, seq, ts, inf, tags)]

    def step(self, s: Subject, msg: dict) -> np.ndarray:
        s.extra["points"] = s.extra.get("points", 0.0) + trip_points(msg["rule_counts"])
        s.extra["km"] = s.extra.get("km", 0.0) + float(msg["distance_km"])
        s.extra["pos"] = (msg.get("lat"), msg.get("lon"))
        for e in msg.get("events", []):
            if self.hazards.add(s.device, e["kind"], e.get("lat"), e.get("lon")) is not None:
                self.counts["hazard_reports"] += 1
        return step_vector(msg)

    def baseline(self, s: Subject, msg: dict) -> float:
        return vendor_points(s.extra.get("points", 0.0), s.extra.get("km", 0.0))

    def result(self, s: Subject, job: Job, output: Any, alert: bool) -> tuple[dict, list]:
        from shared.storage.base import Point

        risk = self.score_of(output)
        risk = min(1.0, max(0.0, risk if np.isfinite(risk) else 0.0))
        thr = self.rule.threshold
        level = "high" if (alert or s.alert.alerting) else ("elevated" if risk >= thr / 2 else "low")
        ahead = self.hazards.near(job.msg.get("lat"), job.msg.get("lon"), HAZARD_RADIUS_M)  # lock held by caller
        msg = {"v": SCHEMA_VERSION, "device": s.device, "seq": job.msg["seq"], "ts": job.msg["ts"],
               "model": self.model_id, "risk": round(risk, 5), "horizon_trips": self.horizon_trips,
               "vendor_points_per_100km": round(float(job.baseline), 2), "alert": alert, "level": level,
               "hazards_ahead": ahead, "windows": len(job.history), "source_seq": job.msg["seq"]}
        point = Point("action", s.device, job.msg["seq"], job.msg["ts"],
                      {"risk": msg["risk"], "vendor_points_per_100km": msg["vendor_points_per_100km"],
                       "alert": alert, "level": level, "hazards_ahead": len(ahead)}, {"domain": DOMAIN.name})
        return msg, [point]

    def rebuild_subject(self, device: str) -> int:
        trips = self.store.query("trip", device)[-self.cfg.history_steps:]
        s = self.subject(device)
        for pt in trips:
            f = dict(pt.fields)
            msg = {"seq": pt.seq, "ts": pt.ts_ms, "distance_km": f.get("distance_km", 0.0),
                   "stats": {k: f.get(k) for k in TRIP_STATS},
                   "counts": {k: int(f.get(f"n_{k}", 0) or 0) for k in EVENT_KINDS},
                   "rule_counts": {k: int(f.get(f"rule_{k}", 0) or 0) for k in EVENT_KINDS}, "events": []}
            self.append(s, msg)
        return len(trips)


def service_settings(models_dir: Path) -> tuple[ServiceConfig, int]:
    """The service settings and the risk horizon (trip segments), from the training run (metrics.json)."""
    cfg = ServiceConfig(history_steps=24)
    horizon = 10
    path = Path(models_dir) / "metrics.json"
    if path.exists():
        m = json.loads(path.read_text())
        cfg.alert_threshold = float(m.get("alert_threshold", cfg.alert_threshold))
        cfg.alert_windows = int(m.get("alert_windows", 2))
        horizon = int(m.get("horizon_trips", horizon))
    return cfg, horizon


def service_factory(models_dir: Path) -> Callable[..., VehService]:
    """``build(store, publish, on_result)``: the service (risk transformer, hazard map) on the models of
    ``models_dir``."""
    from vehicles.large import RiskPredictor

    cfg, horizon = service_settings(models_dir)
    predictor = RiskPredictor.load(Path(models_dir) / "large", threads=cfg.torch_threads)
    cfg.history_steps = predictor.seq_len

    def build(store: Any, publish: Callable[[str, str, dict], None], on_result: Any = None) -> VehService:
        return VehService(store, predictor, publish, cfg, horizon, on_action=on_result)

    return build
