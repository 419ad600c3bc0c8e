"""Private: simulated trips -> tables for training and evaluation, cached as .npz.

`load_fleet(cfg, n_trips)` runs every trip segment of every vehicle of a fleet through the device DSP
(calibration, rule events, candidate windows and their features) and keeps, per TRIP: the vehicle,
the trip index, km, the trip statistics, the rule event counts and the incident; per CANDIDATE WINDOW:
the trip row it belongs to, its to_vector, its true label (the simulator's event overlapping the
candidate; crash > road anomaly > harsh maneuver; none: normal) and its start/end time; per EVENT, the
simulator's and the threshold rules' (trip row, kind, start/end), so event F1 is scored from the tables. `extra_crash`
turns every n-th trip into a crash trip (crash windows are rare; only for the classifier's tables).
Trips run in a fork pool; the tables are cached under a key of the config and the sources.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from shared.runtime.training import cached_arrays, config_key, source_hash
from vehicles.features import (
    EVENT_KINDS,
    TRIP_STATS,
    candidates,
    detect_in,
    to_vector,
    trip_speed,
    vehicle_signals,
    window_features,
)
from vehicles.signals import LABELS, FleetConfig, Trip, Vehicle, simulate_fleet

DATASET_VERSION = 2
PRIORITY = {"crash": 0, "pothole": 1, "speed_bump": 1, "harsh_brake": 2, "harsh_accel": 2, "harsh_corner": 2}


@dataclass
class Tables:
    vehicle: np.ndarray  # (T,) str
    trip: np.ndarray  # (T,) int
    km: np.ndarray  # (T,)
    stats: np.ndarray  # (T, len(TRIP_STATS))
    rule_counts: np.ndarray  # (T, len(EVENT_KINDS))
    true_counts: np.ndarray  # (T, len(EVENT_KINDS))
    incident: np.ndarray  # (T,) int: 0 none, 1 near miss, 2 crash
    risk: np.ndarray  # (T,) the driver's latent risk (analysis only)
    w_row: np.ndarray  # (W,) trip row of each candidate window
    w_vector: np.ndarray  # (W, 16)
    w_label: np.ndarray  # (W,) index into LABELS
    w_t: np.ndarray  # (W, 2) start, end (s)
    e_row: np.ndarray  # (E,) trip row of each true event (the simulator's)
    e_kind: np.ndarray  # (E,) index into LABELS
    e_t: np.ndarray  # (E, 2) start, end (s)
    r_row: np.ndarray  # (R,) trip row of each event the threshold rules found
    r_kind: np.ndarray  # (R,) index into LABELS
    r_t: np.ndarray  # (R, 2) start, end (s)

    def __len__(self) -> int:
        return len(self.trip)


def label_windows(trip: Trip, cands: list[tuple[int, int, int]], fs: float) -> list[int]:
    """The true label of each candidate: the highest-priority true event overlapping it (+-0.5 s)."""
    out = []
    for lo, hi, _ in cands:
        t0, t1 = lo / fs - 0.5, hi / fs + 0.5
        best = None
        for e in trip.events:
            if e.t_end_s >= t0 and e.t_start_s <= t1 and (best is None or PRIORITY[e.kind] < PRIORITY[best]):
                best = e.kind
        out.append(LABELS.index(best) if best else 0)
    return out


def process_trip(trip: Trip) -> dict:
    """Device DSP on one trip: stats, rule counts, candidate windows (vectors, spans)."""
    from vehicles.features import trip_stats

    vs = vehicle_signals(trip.acc_mps2, trip.gyro_rads, trip_speed(trip), trip.fs_hz)
    rule = detect_in(vs)
    cands = candidates(vs)
    vec = np.array([to_vector(window_features(vs, c)) for _, _, c in cands], dtype=np.float32).reshape(-1, 16)
    st = trip_stats(vs)
    return {"stats": np.array([st[k] for k in TRIP_STATS]),
            "rule": np.array([sum(e.kind == k for e in rule) for k in EVENT_KINDS]),
            "true": np.array([sum(e.kind == k for e in trip.events) for k in EVENT_KINDS]),
            "vec": vec, "label": np.array(label_windows(trip, cands, trip.fs_hz), dtype=np.int8),
            "t": np.array([(lo / trip.fs_hz, hi / trip.fs_hz) for lo, hi, _ in cands]).reshape(-1, 2),
            "truth": _spans(trip.events), "rule_ev": _spans(rule),
            "km": trip.distance_km, "incident": {None: 0, "near_miss": 1, "crash": 2}[trip.incident]}


def _spans(events: list) -> np.ndarray:
    """(n, 3) kind index into LABELS, start, end (s) of events (true or found)."""
    return np.array([(LABELS.index(e.kind), e.t_start_s, e.t_end_s) for e in events], dtype=np.float64).reshape(-1, 3)


_JOB: tuple = ()


def _one(item: tuple[int, int]) -> dict:
    vehicles, extra_crash = _JOB
    i, k = item
    v: Vehicle = vehicles[i]
    forced = "crash" if extra_crash and (i * 131 + k) % extra_crash == 0 else True
    return process_trip(v.trip(k, forced))


def build(cfg: FleetConfig, n_trips: int, extra_crash: int = 0, workers: int = 2, desc: str = "trips") -> Tables:
    from shared.progress import progress
    from shared.runtime.training import fork_pool

    global _JOB
    vehicles = simulate_fleet(cfg)
    items = [(i, k) for i in range(len(vehicles)) for k in range(n_trips)]
    _JOB = (vehicles, extra_crash)
    if workers > 1 and sys.platform.startswith("linux"):
        with fork_pool(workers) as pool:
            res = list(progress(pool.imap(_one, items, chunksize=8), total=len(items), desc=desc))
    else:
        res = [_one(it) for it in progress(items, desc=desc)]
    rows = np.concatenate([np.full(len(r["label"]), j) for j, r in enumerate(res)]).astype(np.int64)
    ev = {k: (np.concatenate([np.full(len(r[k]), j) for j, r in enumerate(res)]).astype(np.int64),
              np.concatenate([r[k] for r in res])) for k in ("truth", "rule_ev")}
    return Tables(np.array([vehicles[i].id for i, _ in items]), np.array([k for _, k in items]),
                  np.array([r["km"] for r in res]), np.stack([r["stats"] for r in res]),
                  np.stack([r["rule"] for r in res]), np.stack([r["true"] for r in res]),
                  np.array([r["incident"] for r in res]), np.array([vehicles[i].risk for i, _ in items]),
                  rows, np.concatenate([r["vec"] for r in res]), np.concatenate([r["label"] for r in res]),
                  np.concatenate([r["t"] for r in res]),
                  *(a for k in ("truth", "rule_ev")
                    for a in (ev[k][0], ev[k][1][:, 0].astype(np.int8), ev[k][1][:, 1:])))


def load_fleet(cfg: FleetConfig, n_trips: int, cache: Path, extra_crash: int = 0, workers: int = 2,
               desc: str = "trips") -> Tables:
    here = Path(__file__).parent
    key = config_key({"cfg": asdict(cfg), "n": n_trips, "crash": extra_crash, "v": DATASET_VERSION,
                      "src": source_hash([here / "signals.py", here / "features.py", here / "_dataset.py"])})
    workers = min(workers, os.cpu_count() or 1)
    arrays = cached_arrays(Path(cache) / f"trips-{key}.npz",
                           lambda: {k: np.asarray(v) for k, v in
                                    asdict(build(cfg, n_trips, extra_crash, workers, desc)).items()})
    return Tables(**arrays)
