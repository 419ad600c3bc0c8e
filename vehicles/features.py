"""The vehicle unit's DSP (what firmware would run): mounting calibration, event detection, window features.

Conventions: vehicle frame x forward, y left, z up; the accelerometer reads specific force (+g on the
up axis at rest). Inputs are the raw sensor-frame arrays acc (n, 3) m/s^2, gyro (n, 3) rad/s and the
per-sample speed (m/s, GNSS interpolated; NaN where there was no fix yet).

1. Calibration (`calibrate`), whatever the unit's mounting:
   - up: the mean specific force over still periods (speed < STILL_SPEED and |gyro| < STILL_GYRO for at
     least STILL_MIN_S); with none, the mean over the whole segment (the horizontal accelerations of a
     drive average out, gravity does not). u = mean / |mean|, g_est = |mean|.
   - forward: the horizontal specific force h = a - (a.u) u, averaged per second, against the change of
     the GNSS speed over the same second, dv (seconds with |dv| >= 0.3 m/s). In an orthonormal basis
     (e1, e2) of the horizontal plane, c = sum over those seconds of dv (h.e1, h.e2) and
     f = (c1 e1 + c2 e2) / |c|: braking and accelerating agree with the speed's change only along the
     forward axis, lateral acceleration does not correlate with dv. The fit needs
     CAL_MIN_SECONDS seconds with a speed change; otherwise the calibration is not `ok` and e1 is used.
   - left l = u x f; the rotation's rows are (f, l, u): vehicle = R @ sensor.
2. Event detection (`detect_events`, thresholds in `EventConfig`): the longitudinal and lateral
   acceleration smoothed over `smooth_s` (moving average), a run beyond the threshold for at least
   `min_duration_s` is a harsh brake / acceleration / corner. Vertical: hf = a_z - g_est - its 1 s
   moving average; an excursion |hf| >= `road_mps2` at speed >= `road_min_speed_mps` is a road anomaly
   (peaks closer than 1 s are one), a speed bump when the speed is below `bump_max_speed_mps` (drivers
   slow for bumps) else a pothole. A crash: the raw horizontal magnitude >= `crash_mps2`.
3. Window features (`window_features`, the tiny model's input, FEATURE_NAMES) on WINDOW_S around a
   candidate (`candidates`: the same signals beyond CANDIDATE_FRACTION of the thresholds).
4. `to_vector`: asinh(value / VECTOR_SCALE), clipped to +-VECTOR_CLIP, NaN -> 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

FEATURE_NAMES = ("long_min_mps2", "long_max_mps2", "lat_max_mps2", "long_run_s", "lat_run_s", "vert_min_mps2",
                 "vert_max_mps2", "vert_rms_mps2", "vert_width_s", "pitch_max_rads", "roll_max_rads",
                 "yaw_max_rads", "horiz_peak_mps2", "jerk_max_mps3", "speed_mps", "speed_change_mps")
VECTOR_SCALE = np.array([2.0, 2.0, 2.0, 0.5, 0.5, 2.0, 2.0, 1.0, 0.1, 0.2, 0.2, 0.2, 5.0, 10.0, 5.0, 2.0],
                        dtype=np.float32)
VECTOR_CLIP = 8.0
STILL_SPEED, STILL_GYRO, STILL_MIN_S = 0.3, 0.05, 1.0
CAL_MIN_SECONDS = 5
WINDOW_S = 2.56
CANDIDATE_FRACTION = 0.6
RUN_MPS2 = 2.5  #: long_run_s / lat_run_s count time with |smoothed a| above this
VERT_WIDTH_MPS2 = 2.0
EVENT_KINDS = ("harsh_brake", "harsh_accel", "harsh_corner", "pothole", "speed_bump", "crash")


@dataclass(frozen=True)
class EventConfig:
    """Event thresholds. Defaults: harsh brake 3.5 m/s^2 (0.36 g), harsh acceleration 3.0 m/s^2 (0.31 g),
    harsh cornering 3.5 m/s^2, held 0.5 s: inside the 0.3-0.5 g range that fleet-telematics vendors
    document for their configurable harsh-driving rules for light vehicles; crash 2.5 g horizontal, the
    order of the impact triggers of event data recorders; road anomalies 4 m/s^2 vertical."""

    brake_mps2: float = 3.5
    accel_mps2: float = 3.0
    corner_mps2: float = 3.5
    min_duration_s: float = 0.5
    smooth_s: float = 0.5
    road_mps2: float = 4.0
    road_min_speed_mps: float = 1.5
    bump_max_speed_mps: float = 6.0
    crash_mps2: float = 2.5 * 9.80665

    def __post_init__(self) -> None:
        for k in ("brake_mps2", "accel_mps2", "corner_mps2", "min_duration_s", "smooth_s", "road_mps2",
                  "crash_mps2"):
            v = getattr(self, k)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(f"EventConfig.{k}: must be a finite number > 0, got {v!r}")


@dataclass(frozen=True)
class Event:
    kind: str
    t_start_s: float
    t_end_s: float
    peak_mps2: float  #: largest magnitude of the detecting signal (vehicle frame), positive

    def as_dict(self) -> dict:
        return {"kind": self.kind, "t_start_s": round(self.t_start_s, 2), "t_end_s": round(self.t_end_s, 2),
                "peak_mps2": round(self.peak_mps2, 3)}


@dataclass
class Calibration:
    rotation: np.ndarray  #: (3, 3) vehicle = rotation @ sensor
    gravity_mps2: float
    still_s: float
    fit_seconds: int
    ok: bool


@dataclass
class VehicleSignals:
    """The segment in the vehicle frame (what detection and features read)."""

    fs_hz: float
    long: np.ndarray  #: smoothed longitudinal m/s^2
    lat: np.ndarray  #: smoothed lateral m/s^2
    raw_h: np.ndarray  #: raw horizontal magnitude m/s^2
    vert: np.ndarray  #: vertical high-pass m/s^2
    gyro: np.ndarray  #: (n, 3) roll, pitch, yaw rate
    speed: np.ndarray
    cal: Calibration
    cfg: EventConfig = field(default_factory=EventConfig)


def _check(acc: np.ndarray, gyro: np.ndarray, speed: np.ndarray, fs_hz: float) -> tuple:
    if isinstance(fs_hz, bool) or not (isinstance(fs_hz, int | float | np.integer | np.floating)
                                       and math.isfinite(fs_hz) and fs_hz >= 20):
        raise ValueError(f"fs_hz: must be a finite number >= 20, got {fs_hz!r}")
    a, g = np.asarray(acc, dtype=np.float64), np.asarray(gyro, dtype=np.float64)
    s = np.asarray(speed, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"acc_mps2: must have shape (n, 3), got {a.shape}")
    if g.shape != a.shape:
        raise ValueError(f"gyro_rads: must have the shape of acc_mps2 {a.shape}, got {g.shape}")
    if s.shape != (len(a),):
        raise ValueError(f"speed_mps: must have shape ({len(a)},), got {s.shape}")
    if len(a) < 2 * fs_hz:
        raise ValueError(f"acc_mps2: need at least 2 s of samples ({int(2 * fs_hz)}), got {len(a)}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(g))):
        raise ValueError("acc_mps2 / gyro_rads: samples must be finite")
    return a, g, s


def _movavg(x: np.ndarray, w: int) -> np.ndarray:
    w = max(1, int(w))
    c = np.cumsum(np.concatenate(([0.0], x)))
    half = w // 2
    idx = np.arange(len(x))
    lo, hi = np.maximum(0, idx - half), np.minimum(len(x), idx - half + w)
    return (c[hi] - c[lo]) / (hi - lo)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    d = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


def calibrate(acc_mps2: np.ndarray, gyro_rads: np.ndarray, speed_mps: np.ndarray, fs_hz: float) -> Calibration:
    """Step 1 of the module docstring."""
    a, g, s = _check(acc_mps2, gyro_rads, speed_mps, fs_hz)
    fs = float(fs_hz)
    still = (np.nan_to_num(s, nan=99.0) < STILL_SPEED) & (np.linalg.norm(g, axis=1) < STILL_GYRO)
    mask = np.zeros(len(a), bool)
    for lo, hi in _runs(still):
        if hi - lo >= STILL_MIN_S * fs:
            mask[lo:hi] = True
    mean = a[mask].mean(axis=0) if mask.any() else a.mean(axis=0)
    g_est = float(np.linalg.norm(mean))
    u = mean / g_est
    e1 = np.cross(u, [1.0, 0.0, 0.0])
    if np.linalg.norm(e1) < 0.3:
        e1 = np.cross(u, [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(u, e1)
    sec = int(len(a) // fs)
    rows, dv = [], []
    for k in range(sec - 1):
        i0, i1 = int(round(k * fs)), int(round((k + 1) * fs))
        if i1 >= len(a) or not (np.isfinite(s[i0]) and np.isfinite(s[i1])):
            continue
        d = s[i1] - s[i0]
        if abs(d) < 0.3:
            continue
        h = a[i0:i1].mean(axis=0)
        rows.append((h @ e1, h @ e2))
        dv.append(d * fs / (i1 - i0))
    ok = len(rows) >= CAL_MIN_SECONDS
    f = e1
    if ok:
        c = np.array(dv) @ np.array(rows)  # sum of dv h: the axis whose acceleration agrees with dv
        if np.linalg.norm(c) > 1e-6:
            f = (c[0] * e1 + c[1] * e2) / np.linalg.norm(c)
        else:
            ok = False
    left = np.cross(u, f)
    return Calibration(np.stack([f, left, u]), g_est, float(mask.sum() / fs), len(rows), ok)


def vehicle_signals(acc_mps2: np.ndarray, gyro_rads: np.ndarray, speed_mps: np.ndarray, fs_hz: float,
                    config: EventConfig | None = None, cal: Calibration | None = None) -> VehicleSignals:
    """Calibrate (unless given) and rotate into the vehicle frame; smooth and high-pass as step 2."""
    a, g, s = _check(acc_mps2, gyro_rads, speed_mps, fs_hz)
    cfg = config or EventConfig()
    cal = cal or calibrate(a, g, s, fs_hz)
    av, gv = a @ cal.rotation.T, g @ cal.rotation.T
    w = int(round(cfg.smooth_s * fs_hz))
    vz = av[:, 2] - cal.gravity_mps2
    return VehicleSignals(float(fs_hz), _movavg(av[:, 0], w), _movavg(av[:, 1], w), np.hypot(av[:, 0], av[:, 1]),
                          vz - _movavg(vz, int(fs_hz)), gv, np.nan_to_num(s, nan=0.0), cal, cfg)


def detect_in(vs: VehicleSignals) -> list[Event]:
    """Step 2 on vehicle-frame signals."""
    cfg, fs = vs.cfg, vs.fs_hz
    out: list[Event] = []
    crash_mask = np.zeros(len(vs.long), bool)
    for lo, hi in _merge(_runs(vs.raw_h >= cfg.crash_mps2), int(fs)):
        out.append(Event("crash", lo / fs, hi / fs, float(vs.raw_h[lo:hi].max())))
        crash_mask[max(0, lo - int(fs)):hi + int(fs)] = True
    for kind, sig, thr in (("harsh_brake", -vs.long, cfg.brake_mps2), ("harsh_accel", vs.long, cfg.accel_mps2),
                           ("harsh_corner", np.abs(vs.lat), cfg.corner_mps2)):
        for lo, hi in _runs((sig >= thr) & ~crash_mask):
            if (hi - lo) / fs >= cfg.min_duration_s:
                out.append(Event(kind, lo / fs, hi / fs, float(sig[lo:hi].max())))
    road = (np.abs(vs.vert) >= cfg.road_mps2) & (vs.speed >= cfg.road_min_speed_mps) & ~crash_mask
    for lo, hi in _merge(_runs(road), int(fs)):
        kind = "speed_bump" if float(np.median(vs.speed[lo:hi])) < cfg.bump_max_speed_mps else "pothole"
        out.append(Event(kind, lo / fs, hi / fs, float(np.abs(vs.vert[lo:hi]).max())))
    return sorted(out, key=lambda e: e.t_start_s)


def _merge(runs: list[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for lo, hi in runs:
        if out and lo - out[-1][1] <= gap:
            out[-1][1] = hi
        else:
            out.append([lo, hi])
    return [(a, b) for a, b in out]


def detect_events(acc_mps2: np.ndarray, gyro_rads: np.ndarray, speed_mps: np.ndarray, fs_hz: float,
                  config: EventConfig | None = None) -> list[Event]:
    """Driving events and road anomalies of one segment, in the vehicle frame whatever the mounting."""
    return detect_in(vehicle_signals(acc_mps2, gyro_rads, speed_mps, fs_hz, config))


def candidates(vs: VehicleSignals) -> list[tuple[int, int, int]]:
    """Step 3: (start, end, centre) sample indices of candidate windows (peaks beyond CANDIDATE_FRACTION of
    the thresholds; runs closer than 1 s merged)."""
    cfg, k = vs.cfg, CANDIDATE_FRACTION
    score = np.maximum.reduce([-vs.long / cfg.brake_mps2, vs.long / cfg.accel_mps2, np.abs(vs.lat) / cfg.corner_mps2,
                               np.abs(vs.vert) / cfg.road_mps2 * (vs.speed >= cfg.road_min_speed_mps),
                               vs.raw_h / cfg.crash_mps2])
    out = []
    for lo, hi in _merge(_runs(score >= k), int(vs.fs_hz)):
        out.append((lo, hi, lo + int(np.argmax(score[lo:hi]))))
    return out


def window_features(vs: VehicleSignals, centre: int) -> dict[str, float]:
    """The FEATURE_NAMES of the WINDOW_S window centred on sample `centre` (clipped to the segment)."""
    fs = vs.fs_hz
    half = int(round(WINDOW_S * fs / 2))
    lo, hi = max(0, centre - half), min(len(vs.long), centre + half)
    lg, lt, vz = vs.long[lo:hi], vs.lat[lo:hi], vs.vert[lo:hi]
    gy, sp = vs.gyro[lo:hi], vs.speed[lo:hi]
    jerk = np.abs(np.diff(lg)) * fs if hi - lo > 1 else np.zeros(1)
    return {"long_min_mps2": float(lg.min()), "long_max_mps2": float(lg.max()),
            "lat_max_mps2": float(np.abs(lt).max()), "long_run_s": float((np.abs(lg) >= RUN_MPS2).sum() / fs),
            "lat_run_s": float((np.abs(lt) >= RUN_MPS2).sum() / fs), "vert_min_mps2": float(vz.min()),
            "vert_max_mps2": float(vz.max()), "vert_rms_mps2": float(np.sqrt(np.mean(vz * vz))),
            "vert_width_s": float((np.abs(vz) >= VERT_WIDTH_MPS2).sum() / fs),
            "pitch_max_rads": float(np.abs(gy[:, 1]).max()), "roll_max_rads": float(np.abs(gy[:, 0]).max()),
            "yaw_max_rads": float(np.abs(gy[:, 2]).max()), "horiz_peak_mps2": float(vs.raw_h[lo:hi].max()),
            "jerk_max_mps3": float(jerk.max()), "speed_mps": float(sp.mean()),
            "speed_change_mps": float(sp[-1] - sp[0])}


def to_vector(f: dict[str, float]) -> np.ndarray:
    """float32[16]: asinh(value / VECTOR_SCALE), clipped to +-VECTOR_CLIP, NaN -> 0."""
    x = np.array([f.get(n, math.nan) if f.get(n) is not None else math.nan for n in FEATURE_NAMES],
                 dtype=np.float64)
    v = np.clip(np.arcsinh(x / VECTOR_SCALE), -VECTOR_CLIP, VECTOR_CLIP)
    return np.where(np.isnan(v), 0.0, v).astype(np.float32)


TRIP_STATS = ("speed_mean_mps", "speed_p95_mps", "long_p05_mps2", "long_p95_mps2", "lat_p95_mps2",
              "jerk_p95_mps3", "yaw_std_rads", "vert_rms_mps2", "brakes_2_per_km", "moving_s")


def trip_stats(vs: VehicleSignals) -> dict[str, float]:
    """Per-segment driving statistics (TRIP_STATS) the cloud reads beside the events: they hold what the
    thresholds miss (moderate abrupt brakes, jerk, lane wander)."""
    fs = vs.fs_hz
    moving = vs.speed > 2.0
    km = float(vs.speed.sum() / fs / 1000.0)
    if not moving.any():
        return {k: 0.0 for k in TRIP_STATS}
    lg, lt = vs.long[moving], vs.lat[moving]
    jerk = np.abs(np.diff(_movavg(vs.long, int(fs)))) * fs
    brakes = [r for r in _runs(-vs.long >= 2.0) if (r[1] - r[0]) / fs >= 0.3]
    return {"speed_mean_mps": float(vs.speed[moving].mean()), "speed_p95_mps": float(np.percentile(vs.speed, 95)),
            "long_p05_mps2": float(np.percentile(lg, 5)), "long_p95_mps2": float(np.percentile(lg, 95)),
            "lat_p95_mps2": float(np.percentile(np.abs(lt), 95)),
            "jerk_p95_mps3": float(np.percentile(jerk[moving[1:]], 95)),
            "yaw_std_rads": float(np.std(vs.gyro[moving, 2])), "vert_rms_mps2": float(np.sqrt(np.mean(vs.vert ** 2))),
            "brakes_2_per_km": len(brakes) / max(km, 0.1), "moving_s": float(moving.sum() / fs)}


def extract_trip(trip) -> VehicleSignals:
    """`vehicle_signals` of a `vehicles.signals.Trip` (the contract's ``extract``)."""
    return vehicle_signals(trip.acc_mps2, trip.gyro_rads, trip.speed_mps, trip.fs_hz)
