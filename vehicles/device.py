"""A simulated telematics unit: IMU + GNSS -> calibration, events, int8 classifier -> one MQTT message per trip.

What firmware would run, in Python: at the end of each trip segment the unit calibrates its mounting
(gravity, forward axis), detects events with the threshold rules, classifies every candidate window
with the int8 model, summarises the drive and publishes an ``inference`` message (QoS 1, schema
vehicles/schemas/inference.json) with the classified events and their GNSS positions.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shared.protocol.messages import SCHEMA_VERSION
from shared.runtime.fleet import DeviceFleet, SimDevice
from vehicles import DOMAIN
from vehicles.features import (
    EVENT_KINDS,
    TRIP_STATS,
    candidates,
    detect_in,
    to_vector,
    trip_speed,
    trip_stats,
    vehicle_signals,
    window_features,
)
from vehicles.signals import Trip, Vehicle

MAX_EVENTS = 20  #: events per message (the firmware app keeps its messages under 4 KB)


def _num(v: float | None, digits: int = 6) -> float | None:
    if v is None or not np.isfinite(v):
        return None
    return float(f"{float(v):.{digits}g}")


def position_at(gnss: np.ndarray, t_s: float, max_gap_s: float = 3.0) -> tuple[float | None, float | None]:
    """GNSS position at t_s, interpolated between fixes no more than max_gap_s away; (None, None) otherwise."""
    ok = np.isfinite(gnss[:, 1]) & np.isfinite(gnss[:, 2])
    t = gnss[ok, 0]
    if len(t) == 0 or np.min(np.abs(t - t_s)) > max_gap_s:
        return None, None
    return float(np.interp(t_s, t, gnss[ok, 1])), float(np.interp(t_s, t, gnss[ok, 2]))


def inference_message(device: str, seq: int, ts_ms: int, trip: Trip, model: Any) -> dict:
    """Calibration, rule events, int8 classification of the candidate windows; the ``inference`` message."""
    speed = trip_speed(trip)
    vs = vehicle_signals(trip.acc_mps2, trip.gyro_rads, speed, trip.fs_hz)
    rule = detect_in(vs)
    cands = candidates(vs)
    vec = np.array([to_vector(window_features(vs, c)) for _, _, c in cands], dtype=np.float32).reshape(-1, 16)
    scores = model.scores(vec)
    events = []
    for (lo, hi, c), p in zip(cands, scores, strict=True):
        k = int(np.argmax(p))
        if k == 0:
            continue
        lat, lon = position_at(trip.gnss, c / trip.fs_hz)
        events.append({"kind": model.labels[k], "t_s": round(lo / trip.fs_hz, 2),
                       "dur_s": round((hi - lo) / trip.fs_hz, 2),
                       "peak_mps2": round(float(max(abs(vs.long[c]), abs(vs.lat[c]), abs(vs.vert[c]),
                                                    vs.raw_h[c])), 3),
                       "score": round(min(1.0, max(0.0, float(p[k]))), 4),
                       "lat": None if lat is None else round(lat, 6), "lon": None if lon is None else round(lon, 6)})
    st = trip_stats(vs)
    fixes = np.isfinite(trip.gnss[:, 1])
    lat_end, lon_end = position_at(trip.gnss, float(trip.gnss[-1, 0]))
    return {"v": SCHEMA_VERSION, "device": device, "seq": seq, "ts": ts_ms, "model": model.model_id,
            "trip_s": round(len(trip.acc_mps2) / trip.fs_hz, 3),
            "distance_km": round(float(np.nan_to_num(speed).sum() / trip.fs_hz / 1000.0), 4),
            "calibrated": bool(vs.cal.ok), "gnss_fix_frac": round(float(fixes.mean()), 4),
            "lat": None if lat_end is None else round(lat_end, 6),
            "lon": None if lon_end is None else round(lon_end, 6),
            "stats": {k: _num(st[k]) for k in TRIP_STATS},
            "counts": {k: sum(e["kind"] == k for e in events) for k in EVENT_KINDS},
            "rule_counts": {k: sum(e.kind == k for e in rule) for k in EVENT_KINDS},
            "events": events[:MAX_EVENTS]}


#: the unit's sensor table (vehicles/firmware/veh_spec.c): IMU axes at fs_hz, GNSS at 1 Hz
CHANNELS = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z", "speed", "lat", "lon")


class SensorTable(dict):
    """A trip segment's sensor table (channel -> samples) with ``blocks``: the same samples as the
    streaming firmware app reads them, one device window per second (``fs_hz`` IMU samples per axis and
    that second's GNSS fix); `shared.tiny.frames.write_sensor_window` writes the blocks."""

    blocks: list[dict[str, Any]]


def window_channels(trip: Trip) -> SensorTable:
    """The unit's sensor table for one trip segment: channel -> samples (CHANNELS order; the GNSS
    channels hold one fix per second, NaN where there was none), and its one-second ``blocks``."""
    acc, gyro = np.asarray(trip.acc_mps2), np.asarray(trip.gyro_rads)
    out = SensorTable({f"acc_{a}": acc[:, i].copy() for i, a in enumerate("xyz")})
    out.update({f"gyro_{a}": gyro[:, i].copy() for i, a in enumerate("xyz")})
    out.update({"speed": trip.gnss[:, 3].copy(), "lat": trip.gnss[:, 1].copy(), "lon": trip.gnss[:, 2].copy()})
    fs, m = int(round(trip.fs_hz)), len(trip.gnss)
    if fs != trip.fs_hz or len(acc) != m * fs:
        raise ValueError(f"trip {trip.vehicle}/{trip.index}: the unit streams whole seconds at an integer rate; "
                         f"got {len(acc)} samples at {trip.fs_hz} Hz with {m} GNSS fixes")
    out.blocks = [{ch: (v[b * fs:(b + 1) * fs] if len(v) == len(acc) else v[b:b + 1]) for ch, v in out.items()}
                  for b in range(m)]
    return out


class UnitFleet(DeviceFleet):
    """The simulated units; ``on_trip(vehicle, trip)``, when set, sees every trip they simulate (a demo's
    ground truth)."""

    on_trip: Callable[[Vehicle, Trip], None] | None = None


def fleet(args: argparse.Namespace | None, mqtt: str, vehicles: Sequence[Vehicle], models_dir: Path,
          start_ms: Mapping[str, int], on_publish: Any = None, trusted_key: Path | None = None,
          on_trip: Callable[[Vehicle, Trip], None] | None = None) -> UnitFleet:
    """Simulated units on `vehicles` (a vehicle's t = 0 is ``start_ms[id]``); the trip segment index is the
    message seq (consecutive per unit, so "the next 10 segments" are seq + 1 .. seq + 10). A signed update
    swaps the classifier. ``on_trip`` sets the fleet's ``on_trip`` (settable later too)."""
    from vehicles.tiny import TinyModel

    model = TinyModel.load(models_dir)

    def process(d: SimDevice, t_end_s: float) -> dict:
        trip = d.subject.trip(d.seq)
        if units.on_trip is not None:
            units.on_trip(d.subject, trip)
        return inference_message(d.id, d.seq, d.ts_ms(t_end_s), trip, d.model)

    def reload(d: SimDevice, tflite: bytes, version: int) -> Any:
        return TinyModel(tflite, d.model.labels, str(version))

    units = UnitFleet(DOMAIN.name, args, mqtt, vehicles, model, dict(start_ms), process, reload=reload,
                      on_publish=on_publish, trusted_key=trusted_key)
    units.on_trip = on_trip
    return units


class FirmwareUnit:
    """A vehicle as `shared.runtime.firmware_fleet.FirmwareFleet` sees a subject: ``id`` and
    ``window(t_end_s)`` -> the trip segment the firmware unit records. As for the simulated units the
    trip index is the message seq: set ``first_seq`` to the device's provisioned ``--seq-start`` after
    the fleet started; the window ending at ``t_end_s`` is tick ``round(t_end_s / every_s) - 1``.
    ``on_trip(vehicle, trip)`` sees every trip (the demo's ground truth)."""

    def __init__(self, vehicle: Vehicle, every_s: float, on_trip: Callable[[Vehicle, Trip], None] | None = None):
        if not every_s > 0:
            raise ValueError(f"every_s: must be > 0, got {every_s!r}")
        self.vehicle, self.every_s, self.on_trip = vehicle, float(every_s), on_trip
        self.id = vehicle.id
        self.first_seq: int | None = None

    def window(self, t_end_s: float) -> Trip:
        if self.first_seq is None:
            raise RuntimeError(f"{self.id}: first_seq not set (the firmware fleet's --seq-start)")
        trip = self.vehicle.trip(self.first_seq + int(round(t_end_s / self.every_s)) - 1)
        if self.on_trip is not None:
            self.on_trip(self.vehicle, trip)
        return trip


def sample_messages(models_dir: Path) -> dict[str, list[dict]]:
    """Inference messages made as the units make them, including a crash trip (for the contract suite)."""
    from vehicles.signals import FleetConfig, simulate_fleet
    from vehicles.tiny import TinyModel

    model = TinyModel.load(models_dir)
    vs = simulate_fleet(FleetConfig(n_vehicles=3, seed=5))
    msgs = [inference_message(v.id, k, 1_700_000_000_000 + k * 3_600_000, v.trip(k, "crash" if k else True), model)
            for v in vs for k in range(2)]
    return {"inference": msgs}
