"""The vehicles data source: a simulator of vehicle dynamics on a road network, and CSV log readers.

Road network (`RoadNetwork`): a grid of streets (blocks of `block_m`), every third street an arterial
(70 km/h), the others 50 or 30 km/h. Road hazards sit at fixed places on the streets: potholes,
speed bumps and rough patches; every vehicle that drives over one feels it.

Drivers (`Vehicle`): each has a latent style: `aggression` (harder acceleration, braking and
cornering, faster cruising) and `distraction` (late, abrupt braking behind traffic, lane wander). The
latent `risk` = 0.5 aggression + 0.5 distraction sets the chance of an incident on a trip,
p = P_BASE + P_RISK risk^2 per trip segment; an incident is a near miss (an emergency brake of
7-9 m/s^2) or, one time in four, a crash (a 3-6 g horizontal impact, then the vehicle stands still).
The vendor-style score sees only what crosses its thresholds (aggression); distraction shows in the
statistics below the thresholds, which the cloud transformer can learn.

A trip segment (`Vehicle.trip(k)`, `TRIP_S` seconds): a random walk on the grid; per street a speed
profile (accelerate from a stop or a turn, cruise near the driver's speed with traffic fluctuations,
brake for a stop, a turn or a speed bump), integrated at 10 Hz and interpolated to the IMU rate.
Vehicle frame x forward, y left, z up; the accelerometer measures specific force (+g on z at rest).
Turns (radius 12 m) give a_lat = v^2/R and yaw rate v/R; the road adds vertical vibration growing with
speed, the engine a 25-45 Hz hum; potholes a sharp down-up pulse, speed bumps a slower pair of bumps
(front and rear axle) with pitch, rough patches broadband vertical shaking. The IMU is mounted with a
random rotation per unit (`Vehicle.mount`, sensor = mount @ vehicle), with bias and white noise. GNSS
at 1 Hz: position noise 2.5 m, speed noise 0.1 m/s, dropouts (NaN; a burst of 5-20 s on some trips).

Ground truth per trip: `Trip.events` (kind, t_start, t_end, peak) for harsh maneuvers (the commanded
acceleration beyond the default thresholds of `features.EventConfig` for at least its minimum
duration), road hazards driven over, the crash; `Trip.incident` (None, "near_miss", "crash").
Deterministic per (seed, vehicle index, trip index). `Vehicle.incident(k)` draws only the incident,
cheaply, so labels of future trips need no simulation.

Readers (in _readers.py, re-exported here): `read_imu_csv`, `read_gnss_csv` (columns and units in their
docstrings); `trip_from_csv` makes a Trip of both logs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vehicles._readers import GNSS_COLUMNS, IMU_COLUMNS, read_gnss_csv, read_imu_csv, read_trip_csv

FS_HZ = 100.0
TRIP_S = 120.0
G = 9.80665
KIN_HZ = 10.0
TURN_R_M = 12.0
LAT0, LON0 = 48.137, 11.575  #: origin of the local metric grid (degrees)
M_PER_DEG = 111_320.0
P_BASE, P_RISK = 0.003, 0.22
HAZARD_KINDS = ("pothole", "speed_bump", "rough")
EVENT_KINDS = ("harsh_brake", "harsh_accel", "harsh_corner", "pothole", "speed_bump", "crash")
LABELS = ("normal", *EVENT_KINDS)
#: truth thresholds: the defaults of features.EventConfig (brake, accel, corner m/s^2; min duration s)
TRUE_BRAKE, TRUE_ACCEL, TRUE_CORNER, TRUE_MIN_S = 3.5, 3.0, 3.5, 0.5


@dataclass(frozen=True)
class Hazard:
    id: int
    kind: str
    x_m: float
    y_m: float


@dataclass(frozen=True)
class TrueEvent:
    kind: str
    t_start_s: float
    t_end_s: float
    peak_mps2: float


def xy_to_latlon(x_m: np.ndarray | float, y_m: np.ndarray | float) -> tuple:
    lat = LAT0 + np.asarray(y_m) / M_PER_DEG
    lon = LON0 + np.asarray(x_m) / (M_PER_DEG * math.cos(math.radians(LAT0)))
    return lat, lon


def latlon_to_xy(lat: np.ndarray | float, lon: np.ndarray | float) -> tuple:
    y = (np.asarray(lat) - LAT0) * M_PER_DEG
    x = (np.asarray(lon) - LON0) * M_PER_DEG * math.cos(math.radians(LAT0))
    return x, y


class RoadNetwork:
    """An n x n grid of intersections `block_m` apart, with hazards at fixed places on its streets."""

    def __init__(self, n: int = 8, block_m: float = 250.0, n_hazards: int = 24, seed: int = 0):
        if n < 2 or block_m <= 30 or n_hazards < 0:
            raise ValueError(f"RoadNetwork: need n >= 2, block_m > 30, n_hazards >= 0; got {n}, {block_m}, "
                             f"{n_hazards}")
        self.n, self.block_m = n, block_m
        rng = np.random.default_rng([seed, 7])
        # speed limit (m/s) per row street (y = j) and column street (x = i)
        self.row_limit = np.array([70 / 3.6 if j % 3 == 0 else (50 / 3.6 if rng.random() < 0.7 else 30 / 3.6)
                                   for j in range(n)])
        self.col_limit = np.array([70 / 3.6 if i % 3 == 0 else (50 / 3.6 if rng.random() < 0.7 else 30 / 3.6)
                                   for i in range(n)])
        self.hazards: list[Hazard] = []
        self._on_edge: dict[tuple, list[tuple[float, Hazard]]] = {}
        for h in range(n_hazards):
            kind = HAZARD_KINDS[h % len(HAZARD_KINDS)]
            horizontal = rng.random() < 0.5
            a, b = int(rng.integers(0, n - 1)), int(rng.integers(0, n))
            d = float(rng.uniform(40.0, block_m - 40.0))
            start = (a, b) if horizontal else (b, a)
            end = (a + 1, b) if horizontal else (b, a + 1)
            x = start[0] * block_m + (d if horizontal else 0.0)
            y = start[1] * block_m + (0.0 if horizontal else d)
            hz = Hazard(h, kind, x, y)
            self.hazards.append(hz)
            self._on_edge.setdefault((start, end), []).append((d, hz))

    def limit(self, a: tuple[int, int], b: tuple[int, int]) -> float:
        return float(self.row_limit[a[1]] if a[1] == b[1] else self.col_limit[a[0]])

    def edge_hazards(self, a: tuple[int, int], b: tuple[int, int]) -> list[tuple[float, Hazard]]:
        """Hazards on the street a -> b as (distance from a in m, hazard), nearest first."""
        if (a, b) in self._on_edge:
            return sorted(self._on_edge[(a, b)], key=lambda p: p[0])
        return sorted(((self.block_m - d, h) for d, h in self._on_edge.get((b, a), [])), key=lambda p: p[0])

    def neighbours(self, a: tuple[int, int]) -> list[tuple[int, int]]:
        i, j = a
        return [(i + di, j + dj) for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1))
                if 0 <= i + di < self.n and 0 <= j + dj < self.n]


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3-D rotation matrix (QR of a Gaussian matrix, signs fixed, det +1)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


@dataclass
class Trip:
    """One trip segment as the unit records it, with the simulator's ground truth."""

    vehicle: str
    index: int
    fs_hz: float
    acc_mps2: np.ndarray  #: (n, 3) sensor frame, specific force
    gyro_rads: np.ndarray  #: (n, 3) sensor frame
    gnss: np.ndarray  #: (m, 4) 1 Hz: t_s, lat_deg, lon_deg, speed_mps (NaN: no fix)
    events: list[TrueEvent] = field(default_factory=list)
    hazards_hit: list[tuple[float, int]] = field(default_factory=list)  #: (t_s, hazard id)
    incident: str | None = None
    distance_km: float = 0.0
    true_speed: np.ndarray | None = None  #: (n,) m/s
    true_acc_v: np.ndarray | None = None  #: (n, 3) vehicle frame, gravity removed

    @property
    def speed_mps(self) -> np.ndarray:
        """Per-IMU-sample speed the device holds: GNSS speed interpolated between fixes (dropouts bridged)."""
        return gnss_speed_per_sample(self.gnss, len(self.acc_mps2), self.fs_hz)


def gnss_speed_per_sample(gnss: np.ndarray, n: int, fs_hz: float) -> np.ndarray:
    t = np.arange(n) / fs_hz
    ok = np.isfinite(gnss[:, 3])
    if not ok.any():
        return np.full(n, np.nan)
    return np.interp(t, gnss[ok, 0], gnss[ok, 3])


@dataclass
class Vehicle:
    """One vehicle, its driver's latent style and its unit's mounting."""

    id: str
    index: int
    seed: int
    network: RoadNetwork
    aggression: float
    distraction: float
    mount: np.ndarray  #: sensor-from-vehicle rotation
    acc_bias: np.ndarray
    gyro_bias: np.ndarray
    fs_hz: float = FS_HZ
    trip_s: float = TRIP_S

    @property
    def risk(self) -> float:
        return 0.5 * self.aggression + 0.5 * self.distraction

    def incident_p(self) -> float:
        return P_BASE + P_RISK * self.risk ** 2

    def incident(self, k: int) -> str | None:
        rng = np.random.default_rng([self.seed, self.index, k, 99])
        u, v = rng.random(), rng.random()
        return None if u >= self.incident_p() else ("crash" if v < 0.25 else "near_miss")

    def trip(self, k: int, incident: str | None | bool = True) -> Trip:
        """Trip segment k; `incident` overrides the drawn incident (True: as drawn)."""
        return simulate_trip(self, k, incident)

    def windows(self, n_trips: int = 24) -> Iterator[Trip]:
        """The unit's windows: trip segments 0 .. n_trips - 1 (one an hour over a day by default)."""
        for k in range(n_trips):
            yield self.trip(k)


@dataclass(frozen=True)
class FleetConfig:
    """A simulated fleet: n_vehicles, the road network (grid n, hazards), seeds."""

    n_vehicles: int = 16
    seed: int = 0
    network_seed: int = 1
    grid_n: int = 8
    n_hazards: int = 24
    trip_s: float = TRIP_S
    fs_hz: float = FS_HZ


def simulate_fleet(cfg: FleetConfig | None = None) -> list[Vehicle]:
    """The vehicles of a fleet (drivers from calm to aggressive, random mounting per unit)."""
    cfg = cfg or FleetConfig()
    if cfg.n_vehicles < 1 or not cfg.trip_s >= 20 or not cfg.fs_hz >= 50:
        raise ValueError(f"FleetConfig: need n_vehicles >= 1, trip_s >= 20, fs_hz >= 50; got {cfg}")
    net = RoadNetwork(cfg.grid_n, n_hazards=cfg.n_hazards, seed=cfg.network_seed)
    out = []
    for i in range(cfg.n_vehicles):
        rng = np.random.default_rng([cfg.seed, i, 1])
        out.append(Vehicle(f"s{cfg.seed}v{i:03d}", i, cfg.seed, net, float(rng.beta(1.3, 2.0)),
                           float(rng.beta(1.3, 2.0)), random_rotation(rng), rng.normal(0, 0.05, 3),
                           rng.normal(0, 0.003, 3), cfg.fs_hz, cfg.trip_s))
    return out


def _kinematics(v: Vehicle, rng: np.random.Generator, incident: str | None) -> dict:
    """10 Hz longitudinal/lateral kinematics along a random walk; hazard crossings; maneuver log."""
    net, dt, n = v.network, 1.0 / KIN_HZ, int(v.trip_s * KIN_HZ) + 1
    a_long, a_lat, yaw, speed = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    xs, ys = np.zeros(n), np.zeros(n)
    hits: list[tuple[float, Hazard]] = []
    node = (int(rng.integers(0, net.n)), int(rng.integers(0, net.n)))
    prev = None
    k, vel, crash_k = 0, 0.0, -1
    cruise_f = 0.92 + 0.22 * v.aggression + rng.normal(0, 0.03)
    late_rate = 0.004 + 0.03 * v.distraction  # abrupt brakes per second behind traffic
    incident_k = int(rng.uniform(0.3, 0.85) * n) if incident else -1
    lat_max = 1.8 + 2.6 * v.aggression
    while k < n - 1:
        options = [b for b in net.neighbours(node) if b != prev] or net.neighbours(node)
        nxt = options[int(rng.integers(0, len(options)))]
        after = [b for b in net.neighbours(nxt) if b != node] or [node]
        nxt2 = after[int(rng.integers(0, len(after)))]
        turn = (nxt2[0] - nxt[0], nxt2[1] - nxt[1]) != (nxt[0] - node[0], nxt[1] - node[1])
        limit = net.limit(node, nxt)
        v_c = limit * cruise_f
        v_turn = math.sqrt(lat_max * TURN_R_M)
        stops = rng.random() < 0.35
        v_end = 0.0 if stops else (min(v_c, v_turn) if turn else v_c)
        targets = [(d, h) for d, h in net.edge_hazards(node, nxt)]
        a_acc = max(0.8, 1.1 + 2.4 * v.aggression + rng.normal(0, 0.45))
        a_dec = max(1.0, 1.5 + 2.9 * v.aggression + rng.normal(0, 0.5))
        dx, dy = nxt[0] - node[0], nxt[1] - node[1]
        s, length = 0.0, net.block_m
        ti = 0
        while s < length and k < n - 1:
            # the next speed constraint: a speed bump ahead, else the end of the street
            goal_d, goal_v = length, v_end
            for d, h in targets[ti:]:
                if h.kind == "speed_bump" and d > s:
                    goal_d, goal_v = d, 2.5 + 3.0 * v.aggression
                    break
            rem = goal_d - s
            need = (vel * vel - goal_v * goal_v) / (2 * a_dec) if vel > goal_v else 0.0
            if vel > goal_v and rem <= need + vel * dt:
                acc = -min(9.0, (vel * vel - goal_v * goal_v) / (2 * max(rem, 0.3)))
            elif vel < v_c - 0.3:
                acc = a_acc * min(1.0, (v_c - vel) / 2.0)
            else:
                acc = 0.8 * (v_c - vel) + rng.normal(0, 0.25)
            if vel > 5 and rng.random() < late_rate * dt:  # traffic ahead brakes: the driver reacts late
                acc = -(2.4 + 1.6 * v.distraction + abs(rng.normal(0, 0.5)))
            if crash_k >= 0:
                acc = -vel / dt if vel > 0 else 0.0
            if k == incident_k and incident == "near_miss":
                acc = -rng.uniform(7.0, 9.0)
            if k == incident_k and incident == "crash":
                crash_k = k
            vel_new = max(0.0, vel + acc * dt)
            acc = (vel_new - vel) / dt
            wander = rng.normal(0, 0.05 + 0.5 * v.distraction) if vel > 3 else 0.0
            a_long[k], a_lat[k], speed[k] = acc, wander * 0.3, vel
            yaw[k] = wander * 0.3 / max(vel, 3.0)
            step = vel * dt + 0.5 * acc * dt * dt
            while ti < len(targets) and targets[ti][0] <= s + step:
                if targets[ti][0] > s:
                    hits.append((k * dt + dt * (targets[ti][0] - s) / max(step, 1e-6), targets[ti][1]))
                ti += 1
            s += step
            xs[k], ys[k] = node[0] * net.block_m + dx * s, node[1] * net.block_m + dy * s
            vel = vel_new
            k += 1
            if vel == 0.0 and s < length and goal_v == 0.0 and rem < 1.0:
                break
            if vel == 0.0 and goal_v == 0.0 and s >= length - 1.0:
                break
        # stop: stand 1-4 s; turn: a quarter circle at the turn speed
        if stops or vel < 0.5:
            for _ in range(int(rng.uniform(1, 4) / dt)):
                if k >= n - 1:
                    break
                xs[k], ys[k], speed[k] = nxt[0] * net.block_m, nxt[1] * net.block_m, 0.0
                k += 1
            vel = 0.0
        if turn and k < n - 1:
            cross = (nxt[0] - node[0]) * (nxt2[1] - nxt[1]) - (nxt[1] - node[1]) * (nxt2[0] - nxt[0])
            sign = 1.0 if cross > 0 else -1.0
            vt = max(vel, 2.0)
            for _ in range(int(0.5 * math.pi * TURN_R_M / vt / dt)):
                if k >= n - 1:
                    break
                a_long[k], a_lat[k], yaw[k], speed[k] = 0.0, sign * vt * vt / TURN_R_M, sign * vt / TURN_R_M, vt
                xs[k], ys[k] = nxt[0] * net.block_m, nxt[1] * net.block_m
                k += 1
            vel = vt
        prev, node = node, nxt
    speed[-1] = speed[-2]
    xs[-1], ys[-1] = xs[-2], ys[-2]
    return {"a_long": a_long, "a_lat": a_lat, "yaw": yaw, "speed": speed, "x": xs, "y": ys, "hits": hits,
            "crash_t": crash_k * dt if crash_k >= 0 else None}


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end exclusive) of the True runs."""
    d = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1), strict=True))


def simulate_trip(v: Vehicle, k: int, incident: str | None | bool = True) -> Trip:
    """Trip segment `k` of vehicle `v` (see the module docstring); `incident` True: as drawn."""
    rng = np.random.default_rng([v.seed, v.index, k, 1])
    if incident is True:
        incident = v.incident(k)
    elif incident not in (None, "near_miss", "crash"):
        raise ValueError(f"incident: must be True, None, 'near_miss' or 'crash', got {incident!r}")
    kin = _kinematics(v, rng, incident)
    fs, n = v.fs_hz, int(round(v.trip_s * v.fs_hz))
    t = np.arange(n) / fs
    tk = np.arange(len(kin["speed"])) / KIN_HZ
    # the 10 Hz commands are steps; a 0.2 s ramp between them (the vehicle's response)
    along = np.interp(t, tk + 0.05, kin["a_long"])
    alat = np.interp(t, tk + 0.05, kin["a_lat"])
    yaw = np.interp(t, tk + 0.05, kin["yaw"])
    speed = np.interp(t, tk, kin["speed"])
    vert = np.zeros(n)
    pitch, roll = np.zeros(n), np.zeros(n)
    events: list[TrueEvent] = []
    hits = []
    for th, hz in kin["hits"]:
        i0 = int(th * fs)
        if i0 >= n - 10:
            continue
        vel = max(speed[i0], 1.0)
        hits.append((float(th), hz.id))
        if hz.kind == "pothole":
            amp = rng.uniform(0.6, 1.2) * (4.0 + 0.6 * vel)
            w = max(3, int(0.04 * fs))
            for axle in (0.0, 2.7 / vel):
                j = i0 + int(axle * fs)
                if j + 2 * w < n:
                    vert[j:j + w] -= amp * np.sin(np.pi * np.arange(w) / w)
                    vert[j + w:j + 2 * w] += 1.2 * amp * np.sin(np.pi * np.arange(w) / w)
                    roll[j:j + 2 * w] += rng.choice([-1, 1]) * 0.15 * np.sin(np.pi * np.arange(2 * w) / (2 * w))
            events.append(TrueEvent("pothole", float(th), float(th + 2.7 / vel + 0.1), float(amp)))
        elif hz.kind == "speed_bump":
            w = max(4, int(0.5 / vel * fs))
            amp = 1.5 + 0.35 * vel * vel
            for axle in (0.0, 2.7 / vel):
                j = i0 + int(axle * fs)
                if j + w < n:
                    shape = np.sin(2 * np.pi * np.arange(w) / w)
                    vert[j:j + w] += amp * shape
                    pitch[j:j + w] += (0.5 if axle == 0 else -0.5) * vel / 3.0 * np.sin(np.pi * np.arange(w) / w)
            events.append(TrueEvent("speed_bump", float(th), float(th + 3.2 / vel), float(amp)))
        else:
            span = int(40.0 / vel * fs)
            j1 = min(n, i0 + span)
            vert[i0:j1] += rng.normal(0, 1.2 + 0.08 * vel, j1 - i0)
    if kin["crash_t"] is not None:
        i0 = int(kin["crash_t"] * fs)
        w = max(5, int(0.12 * fs))
        if i0 + w < n:
            amp = rng.uniform(3.0, 6.0) * G
            ang = rng.uniform(0, 2 * np.pi)
            pulse = amp * np.sin(np.pi * np.arange(w) / w)
            along[i0:i0 + w] += math.cos(ang) * pulse
            alat[i0:i0 + w] += math.sin(ang) * pulse
            events.append(TrueEvent("crash", i0 / fs, (i0 + w) / fs, float(amp)))
    # harsh maneuvers: the commanded (vibration-free) acceleration beyond the default thresholds
    lp = np.convolve(along, np.ones(int(0.5 * fs)) / int(0.5 * fs), mode="same")
    lpl = np.convolve(alat, np.ones(int(0.5 * fs)) / int(0.5 * fs), mode="same")
    crash_mask = np.zeros(n, bool)
    for e in events:
        if e.kind == "crash":
            crash_mask[max(0, int(e.t_start_s * fs) - int(fs)):int(e.t_end_s * fs) + int(fs)] = True
    for kind, sig, thr in (("harsh_brake", -lp, TRUE_BRAKE), ("harsh_accel", lp, TRUE_ACCEL),
                           ("harsh_corner", np.abs(lpl), TRUE_CORNER)):
        for a, b in _runs((sig >= thr) & ~crash_mask):
            if (b - a) / fs >= TRUE_MIN_S:
                events.append(TrueEvent(kind, float(a / fs), float(b / fs), float(sig[a:b].max())))
    events.sort(key=lambda e: e.t_start_s)
    # vibration: road (grows with speed), engine hum, sensor noise; then the mounting rotation
    moving = speed > 0.2
    vert = vert + rng.normal(0, 1, n) * (0.05 + 0.02 * speed)
    hum_hz = rng.uniform(25, 45)
    hum = 0.12 * np.sin(2 * np.pi * hum_hz * t + rng.uniform(0, 6.3))[:, None] * rng.normal(0, 1, 3)
    acc_v = np.stack([along, alat, vert], axis=1)
    gyro_v = np.stack([roll + 0.01 * rng.normal(0, 1, n) * moving, pitch, yaw], axis=1)
    f_v = acc_v + np.array([0.0, 0.0, G])
    acc_s = f_v @ v.mount.T + hum + v.acc_bias + rng.normal(0, 0.04, (n, 3))
    gyro_s = gyro_v @ v.mount.T + v.gyro_bias + rng.normal(0, 0.004, (n, 3))
    # GNSS at 1 Hz
    m = int(v.trip_s)
    tg = np.arange(m, dtype=float)
    ig = np.minimum((tg * fs).astype(int), n - 1)
    xk = np.interp(tg, tk, kin["x"]) + rng.normal(0, 2.5, m)
    yk = np.interp(tg, tk, kin["y"]) + rng.normal(0, 2.5, m)
    lat, lon = xy_to_latlon(xk, yk)
    sp = np.maximum(0.0, speed[ig] + rng.normal(0, 0.1, m))
    gnss = np.stack([tg, lat, lon, sp], axis=1)
    drop = rng.random(m) < 0.01
    if rng.random() < 0.2:
        a = int(rng.integers(0, max(1, m - 20)))
        drop[a:a + int(rng.integers(5, 20))] = True
    drop[0] = drop[-1] = False
    gnss[drop, 1:] = np.nan
    return Trip(v.id, k, fs, acc_s, gyro_s, gnss, events, hits, incident,
                float(np.sum(speed) / fs / 1000.0), speed, acc_v)


def trip_from_csv(imu_path: str | Path, gnss_path: str | Path, vehicle: str = "csv") -> Trip:
    """A Trip (no ground truth) from an IMU log and a GNSS log; times relative to the IMU's start."""
    acc, gyro, fs, gnss = read_trip_csv(imu_path, gnss_path)
    return Trip(vehicle, 0, fs, acc, gyro, gnss)


__all__ = ["EVENT_KINDS", "GNSS_COLUMNS", "HAZARD_KINDS", "IMU_COLUMNS", "LABELS", "FleetConfig", "Hazard",
           "RoadNetwork", "TrueEvent", "Trip", "Vehicle", "random_rotation", "read_gnss_csv", "read_imu_csv",
           "simulate_fleet", "simulate_trip", "trip_from_csv"]
