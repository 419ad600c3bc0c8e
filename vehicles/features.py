"""The vehicle unit's DSP (what firmware would run): mounting calibration, event detection, window features.

Conventions: vehicle frame x forward, y left, z up; the accelerometer reads specific force (+g on the
up axis at rest). Inputs are the raw sensor-frame arrays acc (n, 3) m/s^2, gyro (n, 3) rad/s and the
per-sample speed (m/s; NaN where there was no fix yet).

The definitions are those of a unit that streams (vehicles/firmware/veh_features.c runs them on a ring
of samples as they arrive, three seconds behind its GNSS): nothing below needs more of the segment than
its first CAL_S seconds (held raw until the calibration is fixed) and a few seconds around the sample
at hand; the trip statistics are sums, run counts and histograms.

0. Speed (`unit_speed`): the 1 Hz GNSS speed interpolated between fixes at most SPEED_GAP_S apart (the
   unit runs that much less a second behind), a longer dropout bridged by the last fix, NaN before the
   first fix.
1. Calibration (`calibrate`), whatever the unit's mounting, on the segment's first CAL_S seconds:
   - up: the mean specific force over still periods (speed < STILL_SPEED and |gyro| < STILL_GYRO for at
     least STILL_MIN_S); with none, the mean over the prefix less its mean linear acceleration,
     dv/T f + mean(v w) x f (the GNSS speed's change over the prefix along the forward axis, the
     centripetal acceleration of the turns), solved with the forward axis below in CAL_ITER rounds.
     u = that / |that|, g_est = its norm.
   - forward: the specific force a averaged per second, against the change of the GNSS speed over the
     same second, dv (seconds with |dv| >= 0.3 m/s): fit = sum of dv a; and the turns: (M u) x u with
     M = sum over samples of v a g^T / fs (a left turn's centripetal force points left, l x u = f). In
     an orthonormal basis (e1, e2) of the horizontal plane, c = ((fit + (M u) x u).e1, (...).e2) and
     f = (c1 e1 + c2 e2) / |c|: braking and accelerating agree with the speed's change only along the
     forward axis. The fit needs CAL_MIN_SECONDS seconds with a speed change; otherwise the
     calibration is not `ok` and e1 is used (a prefix that cruises straight holds no forward axis).
   - left l = u x f; the rotation's rows are (f, l, u): vehicle = R @ sensor.
2. Event detection (`detect_events`, thresholds in `EventConfig`): the longitudinal and lateral
   acceleration smoothed over `smooth_s` (moving average), a run beyond the threshold for at least
   `min_duration_s` is a harsh brake / acceleration / corner. Vertical: hf = a_z - g_est - its 1 s
   moving average; an excursion |hf| >= `road_mps2` at speed >= `road_min_speed_mps` is a road anomaly
   (peaks closer than 1 s are one), a speed bump when its mean speed is below `bump_max_speed_mps`
   (drivers slow for bumps) else a pothole. A crash: the raw horizontal magnitude >= `crash_mps2`.
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
CAL_S = 25.0  #: the calibration reads the segment's first CAL_S seconds, then holds
CAL_ITER = 2  #: rounds of the moving-mean correction of the up axis
SPEED_GAP_S = 4  #: the unit's speed interpolates between fixes at most this far apart (it lags the GNSS by 3 s)
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


def unit_speed(gnss_speed: np.ndarray, n: int, fs_hz: float) -> np.ndarray:
    """The per-sample speed the streaming unit holds (step 0): sample i (t = i / fs_hz) between the last
    fix a <= t and the next fix b > t (fix j at t = j s, NaN: none) is interpolated linearly when b - a <=
    SPEED_GAP_S, so the unit runs SPEED_GAP_S - 1 seconds behind its GNSS; otherwise fix a is held (a long
    dropout is bridged by the last speed, not by a fix that has not arrived yet); NaN before the first fix."""
    gs = np.asarray(gnss_speed, dtype=np.float64).reshape(-1)
    out = np.full(int(n), math.nan)
    m = len(gs)
    if m == 0 or n == 0:
        return out
    t = np.arange(int(n)) / float(fs_hz)
    k = np.minimum(np.floor(t).astype(np.int64), m - 1)
    fin = np.isfinite(gs)
    last = np.maximum.accumulate(np.where(fin, np.arange(m), -1))
    nxt = np.minimum.accumulate(np.where(fin, np.arange(m), m)[::-1])[::-1]  # first fix at or after j
    a = last[k]
    b = np.where(k + 1 < m, nxt[np.minimum(k + 1, m - 1)], m)
    has = a >= 0
    out[has] = gs[a[has]]
    lerp = has & (b < m) & (b - a <= SPEED_GAP_S) & (t > a)
    ai, bi = a[lerp], b[lerp]
    out[lerp] = (gs[bi] - gs[ai]) / (bi - ai) * (t[lerp] - ai) + gs[ai]
    return out


def _basis(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    e1 = np.cross(u, [1.0, 0.0, 0.0])
    if np.linalg.norm(e1) < 0.3:
        e1 = np.cross(u, [0.0, 1.0, 0.0])
    e1 = e1 / np.linalg.norm(e1)
    return e1, np.cross(u, e1)


def _forward(u: np.ndarray, fit: np.ndarray, turn: np.ndarray, rows: int) -> tuple[np.ndarray, bool]:
    e1, e2 = _basis(u)
    c3 = fit + np.cross(turn @ u, u)
    c = np.array([c3 @ e1, c3 @ e2])
    if rows < CAL_MIN_SECONDS or np.linalg.norm(c) <= 1e-6:
        return e1, False
    return (c[0] * e1 + c[1] * e2) / np.linalg.norm(c), True


def calibrate(acc_mps2: np.ndarray, gyro_rads: np.ndarray, speed_mps: np.ndarray, fs_hz: float) -> Calibration:
    """Step 1 of the module docstring, on the segment's first CAL_S seconds."""
    a, g, s = _check(acc_mps2, gyro_rads, speed_mps, fs_hz)
    fs = float(fs_hz)
    n = min(len(a), int(round(CAL_S * fs)))
    a, g, s = a[:n], g[:n], s[:n]
    still = (np.nan_to_num(s, nan=99.0) < STILL_SPEED) & (np.linalg.norm(g, axis=1) < STILL_GYRO)
    mask = np.zeros(n, bool)
    for lo, hi in _runs(still):
        if hi - lo >= STILL_MIN_S * fs:
            mask[lo:hi] = True
    mean = a[mask].sum(axis=0) / mask.sum() if mask.any() else a.sum(axis=0) / n
    sv = np.nan_to_num(s, nan=0.0)
    turn = np.einsum("i,ij,ik->jk", sv, a, g) / fs  # sum of v a g^T: (turn @ u) x u points forward in turns
    fit, rows = np.zeros(3), 0
    for k in range(int(n // fs) - 1):
        i0, i1 = int(round(k * fs)), int(round((k + 1) * fs))
        if i1 >= n or not (np.isfinite(s[i0]) and np.isfinite(s[i1])):
            continue
        d = s[i1] - s[i0]
        if abs(d) < 0.3:
            continue
        fit += (d * fs / (i1 - i0)) * (a[i0:i1].sum(axis=0) / (i1 - i0))
        rows += 1
    gu = mean
    u = gu / np.linalg.norm(gu)
    if not mask.any():  # moving throughout: take the mean linear acceleration out of the mean
        vw = (sv[:, None] * g).sum(axis=0) / n
        fin = np.flatnonzero(np.isfinite(s))
        dvt = (s[fin[-1]] - s[fin[0]]) * fs / (fin[-1] - fin[0]) if len(fin) > 1 else 0.0
        for _ in range(CAL_ITER):
            f, ok = _forward(u, fit, turn, rows)
            if not ok:
                break
            gu = mean - np.cross(vw, f) - dvt * f
            u = gu / np.linalg.norm(gu)
    f, ok = _forward(u, fit, turn, rows)
    left = np.cross(u, f)
    return Calibration(np.stack([f, left, u]), float(np.linalg.norm(gu)), float(mask.sum() / fs), rows, ok)


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
        kind = "speed_bump" if float(vs.speed[lo:hi].sum() / (hi - lo)) < cfg.bump_max_speed_mps else "pothole"
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


#: the histograms trip_stats takes its percentiles from (the unit counts into them as samples arrive):
#: lowest edge, bin width, bins; values beyond the range count in the first or last bin
HIST = {"speed": (0.0, 0.1, 800), "long": (-20.0, 0.02, 2000), "lat": (0.0, 0.02, 1000), "jerk": (0.0, 0.05, 1600)}


def hist_percentile(x: np.ndarray, q: float, hist: tuple[float, float, int]) -> float:
    """The q-th percentile of x as the unit reads it from a histogram: the centre of the bin that holds
    the sample of rank floor(q (m - 1) / 100 + 0.5) (0-based, ascending); NaN for no samples."""
    lo, width, nb = hist
    m = len(x)
    if m == 0:
        return math.nan
    counts = np.bincount(np.clip(np.floor((np.asarray(x, np.float64) - lo) / width), 0, nb - 1).astype(np.int64),
                         minlength=nb)
    rank = math.floor(q * (m - 1) / 100.0 + 0.5)
    b = int(np.searchsorted(np.cumsum(counts), rank, side="right"))
    return lo + (b + 0.5) * width


def trip_stats(vs: VehicleSignals) -> dict[str, float]:
    """Per-segment driving statistics (TRIP_STATS) the cloud reads beside the events: they hold what the
    thresholds miss (moderate abrupt brakes, jerk, lane wander). Accumulated as the samples arrive:
    sums, run counts, and percentiles from the HIST histograms (`hist_percentile`)."""
    fs = vs.fs_hz
    moving = vs.speed > 2.0
    km = float(vs.speed.sum() / fs / 1000.0)
    if not moving.any():
        return {k: 0.0 for k in TRIP_STATS}
    lg, lt = vs.long[moving], vs.lat[moving]
    jerk = np.abs(np.diff(_movavg(vs.long, int(fs)))) * fs
    brakes = [r for r in _runs(-vs.long >= 2.0) if (r[1] - r[0]) / fs >= 0.3]
    yaw = vs.gyro[moving, 2]
    m = len(yaw)
    yaw_var = float(np.sum(yaw * yaw) / m - (np.sum(yaw) / m) ** 2)
    return {"speed_mean_mps": float(vs.speed[moving].sum() / m),
            "speed_p95_mps": hist_percentile(vs.speed, 95, HIST["speed"]),
            "long_p05_mps2": hist_percentile(lg, 5, HIST["long"]),
            "long_p95_mps2": hist_percentile(lg, 95, HIST["long"]),
            "lat_p95_mps2": hist_percentile(np.abs(lt), 95, HIST["lat"]),
            "jerk_p95_mps3": hist_percentile(jerk[moving[1:]], 95, HIST["jerk"]),
            "yaw_std_rads": math.sqrt(max(0.0, yaw_var)),
            "vert_rms_mps2": float(np.sqrt(np.sum(vs.vert ** 2) / len(vs.vert))),
            "brakes_2_per_km": len(brakes) / max(km, 0.1), "moving_s": float(moving.sum() / fs)}


def extract_trip(trip) -> VehicleSignals:
    """`vehicle_signals` of a `vehicles.signals.Trip` (the contract's ``extract``)."""
    return vehicle_signals(trip.acc_mps2, trip.gyro_rads, trip_speed(trip), trip.fs_hz)


def trip_speed(trip) -> np.ndarray:
    """`unit_speed` of a trip's GNSS (its 1 Hz speed column)."""
    return unit_speed(trip.gnss[:, 3], len(trip.acc_mps2), trip.fs_hz)
