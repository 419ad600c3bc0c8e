"""The cloud's road-hazard map: road anomalies many vehicles felt at the same place, merged.

Every pothole or speed bump a unit reports (its int8 classifier's class, with the GNSS position at
the event) joins the nearest report cluster of the same kind within MERGE_M metres (its position the
running mean of its reports) or starts one. A cluster is a confirmed hazard once MIN_VEHICLES
distinct vehicles reported it: one vehicle's misreading (a rough patch, a kerb) does not make a
hazard. `near` lists the confirmed hazards within a radius of a position (what the cloud sends a
vehicle heading there); `score` compares the map with the simulator's true hazards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from vehicles.signals import latlon_to_xy, xy_to_latlon

MERGE_M = 25.0
MIN_VEHICLES = 2
MATCH_M = 30.0
KINDS = ("pothole", "speed_bump")


@dataclass
class Cluster:
    id: int
    kind: str
    x_m: float
    y_m: float
    reports: int = 0
    vehicles: set = field(default_factory=set)

    def as_dict(self, distance_m: float | None = None) -> dict:
        lat, lon = xy_to_latlon(self.x_m, self.y_m)
        out = {"id": self.id, "kind": self.kind, "lat": round(float(lat), 6), "lon": round(float(lon), 6),
               "vehicles": len(self.vehicles), "reports": self.reports}
        if distance_m is not None:
            out["distance_m"] = round(distance_m, 1)
        return out


class HazardMap:
    def __init__(self, merge_m: float = MERGE_M, min_vehicles: int = MIN_VEHICLES):
        if not merge_m > 0 or min_vehicles < 1:
            raise ValueError(f"HazardMap: merge_m > 0 and min_vehicles >= 1, got {merge_m}, {min_vehicles}")
        self.merge_m, self.min_vehicles = merge_m, min_vehicles
        self.clusters: list[Cluster] = []

    def add(self, device: str, kind: str, lat: float | None, lon: float | None) -> Cluster | None:
        """One report; None when it has no position or is not a road anomaly."""
        if kind not in KINDS or lat is None or lon is None or not (math.isfinite(lat) and math.isfinite(lon)):
            return None
        x, y = (float(v) for v in latlon_to_xy(lat, lon))
        best, best_d = None, self.merge_m
        for c in self.clusters:
            d = math.hypot(c.x_m - x, c.y_m - y)
            if c.kind == kind and d <= best_d:
                best, best_d = c, d
        if best is None:
            best = Cluster(len(self.clusters), kind, x, y)
            self.clusters.append(best)
        best.reports += 1
        best.x_m += (x - best.x_m) / best.reports
        best.y_m += (y - best.y_m) / best.reports
        best.vehicles.add(device)
        return best

    def confirmed(self) -> list[Cluster]:
        return [c for c in self.clusters if len(c.vehicles) >= self.min_vehicles]

    def near(self, lat: float | None, lon: float | None, radius_m: float = 500.0, limit: int = 10) -> list[dict]:
        if lat is None or lon is None:
            return []
        x, y = (float(v) for v in latlon_to_xy(lat, lon))
        got = sorted((math.hypot(c.x_m - x, c.y_m - y), c) for c in self.confirmed()
                     if math.hypot(c.x_m - x, c.y_m - y) <= radius_m)
        return [c.as_dict(d) for d, c in got[:limit]]

    def score(self, hazards: list, felt: dict[int, set] | None = None) -> dict:
        """Precision: confirmed hazards within MATCH_M of a true pothole or speed bump of the same kind.
        Recall: over the true potholes and bumps that at least MIN_VEHICLES vehicles drove over (`felt`:
        hazard id -> vehicles), or all of them when `felt` is None."""
        targets = [h for h in hazards if h.kind in KINDS]
        if felt is not None:
            targets = [h for h in targets if len(felt.get(h.id, ())) >= self.min_vehicles]
        conf = self.confirmed()

        def hit(c: Cluster, h) -> bool:
            return c.kind == h.kind and math.hypot(c.x_m - h.x_m, c.y_m - h.y_m) <= MATCH_M

        tp = sum(any(hit(c, h) for h in hazards) for c in conf)
        found = sum(any(hit(c, h) for c in conf) for h in targets)
        return {"hazards_confirmed": len(conf), "hazards_true": len(targets),
                "hazard_precision": round(tp / len(conf), 4) if conf else None,
                "hazard_recall": round(found / len(targets), 4) if targets else None}
