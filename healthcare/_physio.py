"""Private physiology model behind `signals`: per-patient baselines, episodes and vital signs at a time.

Everything here is a deterministic function of (cohort seed, patient index, time); no state is mutated
after construction, so `vitals()` can be evaluated at any time in any order.

Vital sign at time t (end of a window) = baseline + circadian + slow random drift + episode effects
+ deterioration drift, then clipped to physiological limits (HR below 45 is compressed to
45 - 0.3 (45 - HR)). Rules (all times in seconds):

* circadian: c = cos(2 pi (clock_h - 16) / 24) (peak 16:00, trough 04:00); HR += a_hr c (a_hr 3-10 bpm),
  RR += 1.0 c, temp += 0.3 c, SBP += 6 c.
* slow drift: per vital, the sum of three sinusoids with periods 0.3-3 h and random phases.
* episodes (Poisson in time; rates per hour of the allowed day/night time in EPISODES): motion,
  off-wrist, exercise, anxiety, transient tachycardia / bradycardia / desaturation, night-time sleep
  bradycardia, paroxysmal AF. Additive effects
  ramp in and out over min(60 s, duration/4). A window is flagged `motion` / `off_wrist` when an episode
  overlaps it by at least FLAG_OVERLAP_S (motion) or at all (off-wrist).
* deterioration (sepsis-like): p = s^1.5 with severity s = (t - onset) / (event - onset) rising to 1
  at the event (the `deteriorating` flag is true for onset < t <= event); after the event the patient
  is treated (oxygen) and s falls back linearly to 0 over RECOVERY_S (8 h);
  HR += 25-45 p, RR += 6-14 p, temp += 1.0-2.2 p, SpO2 -= 6-12 p, SBP -= 20-45 p;
  oxygen is started at 80 % of the way (+2 SpO2); in 60 % of these patients consciousness becomes "C"
  late (at 75-95 % of the way).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

FLAG_OVERLAP_S = 3.0
NIGHT_START_H, NIGHT_END_H = 23.0, 7.0
NIGHT_HOURS = 8.0
RECOVERY_S = 8 * 3600.0  # after the event the patient is treated and recovers over this time


@dataclass(frozen=True)
class EpisodeKind:
    rate_per_h: float
    min_s: float
    max_s: float
    when: str = "any"  # "any" | "day" | "night"
    mag: tuple[float, float] = (0.0, 0.0)  # uniform range of the effect size


# name -> kind. Effects: exercise/anxiety/transient_tachy add HR (bpm); sleep_brady/transient_brady
# subtract HR; transient_desat subtracts SpO2; RR effects of exercise/anxiety are mag * RR_PER_HR.
EPISODES: dict[str, EpisodeKind] = {
    "motion": EpisodeKind(1.4, 30.0, 300.0, "day"),
    "off_wrist": EpisodeKind(0.07, 600.0, 2700.0, "any"),
    "exercise": EpisodeKind(0.25, 300.0, 1200.0, "day", (20.0, 35.0)),
    "anxiety": EpisodeKind(0.07, 900.0, 3600.0, "any", (20.0, 35.0)),
    "transient_tachy": EpisodeKind(0.15, 60.0, 180.0, "any", (30.0, 45.0)),
    "transient_brady": EpisodeKind(0.2, 60.0, 240.0, "any", (20.0, 30.0)),
    "sleep_brady": EpisodeKind(0.45, 1200.0, 3600.0, "night", (10.0, 20.0)),
    "transient_desat": EpisodeKind(0.5, 60.0, 300.0, "any", (5.0, 10.0)),
    "paroxysmal_af": EpisodeKind(0.03, 1800.0, 7200.0, "any", (5.0, 15.0)),
}
RR_PER_HR = 0.18  # breaths/min added per bpm of exercise / anxiety HR rise
HR_SOFT_FLOOR = 45.0
CLIP = {"hr": (35.0, 190.0), "rr": (4.0, 45.0), "spo2": (70.0, 100.0), "temp": (34.0, 41.5),
        "sbp": (60.0, 220.0)}
SLOW_AMP = {"hr": 3.0, "rr": 0.8, "spo2": 0.6, "temp": 0.08, "sbp": 4.0}


@dataclass
class Episodes:
    start: np.ndarray
    end: np.ndarray
    mag: np.ndarray

    def level(self, t: float) -> float:
        """Sum of trapezoid-shaped effects at time t (magnitude units)."""
        if self.start.size == 0:
            return 0.0
        ramp = np.minimum(60.0, 0.25 * (self.end - self.start))
        v = np.clip(np.minimum(t - self.start, self.end - t) / ramp, 0.0, 1.0)
        return float(np.dot(v, self.mag))

    def overlap_s(self, t0: float, t1: float) -> float:
        if self.start.size == 0:
            return 0.0
        return float(np.max(np.minimum(self.end, t1) - np.maximum(self.start, t0)))

    def active(self, t0: float, t1: float) -> np.ndarray:
        """Indices of episodes overlapping [t0, t1]."""
        return np.flatnonzero((self.start < t1) & (self.end > t0))


@dataclass
class PatientModel:
    index: int
    seed: int
    duration_s: float
    hr0: float
    rr0: float
    spo2_0: float
    temp0: float
    sbp0: float
    clock0_h: float
    circ_hr: float
    slow: dict[str, np.ndarray]  # vital -> (3, 3) rows of (amplitude, period_s, phase)
    chronic_irregular: bool
    chronic_oxygen: bool
    event_s: float | None
    onset_s: float | None
    det: dict[str, float]
    confusion_at: float | None
    rmssd_ms: float
    episodes: dict[str, Episodes] = field(default_factory=dict)

    def clock_h(self, t: float) -> float:
        return (self.clock0_h + t / 3600.0) % 24.0


def _is_night(clock_h: np.ndarray) -> np.ndarray:
    return (clock_h >= NIGHT_START_H) | (clock_h < NIGHT_END_H)


def _draw_episodes(rng: np.random.Generator, kind: EpisodeKind, duration_s: float, clock0_h: float,
                   rate_scale: float) -> Episodes:
    allowed_h = {"any": 24.0, "day": 24.0 - NIGHT_HOURS, "night": NIGHT_HOURS}[kind.when]
    n = rng.poisson(kind.rate_per_h * rate_scale * duration_s / 3600.0 * 24.0 / allowed_h)
    start = np.sort(rng.uniform(0.0, duration_s, n))
    dur = rng.uniform(kind.min_s, kind.max_s, n)
    mag = rng.uniform(kind.mag[0], kind.mag[1], n)
    if kind.when != "any":
        night = _is_night((clock0_h + start / 3600.0) % 24.0)
        keep = night if kind.when == "night" else ~night
        start, dur, mag = start[keep], dur[keep], mag[keep]
    return Episodes(start, np.minimum(start + dur, duration_s + kind.max_s), mag)


def make_patient(index: int, seed: int, duration_s: float, deteriorating: bool, chronic_irregular: bool
                 ) -> PatientModel:
    """Draw one patient's parameters and episodes from Generator([seed, index, 0])."""
    rng = np.random.default_rng([seed, index, 0])
    slow = {k: np.column_stack([rng.uniform(0.3, 1.0, 3) * a / 1.9, rng.uniform(0.3, 3.0, 3) * 3600.0,
                                rng.uniform(0.0, 2 * math.pi, 3)]) for k, a in SLOW_AMP.items()}
    event_s = onset_s = confusion_at = None
    det: dict[str, float] = {}
    if deteriorating:
        lo = min(8 * 3600.0, 0.5 * duration_s)
        hi = max(lo, 0.95 * duration_s)
        event_s = float(rng.uniform(lo, hi))
        onset_s = float(max(0.1 * duration_s, event_s - rng.uniform(4.0, 8.0) * 3600.0))
        det = {"hr": rng.uniform(25, 45), "rr": rng.uniform(6, 14), "temp": rng.uniform(1.0, 2.2),
               "spo2": rng.uniform(6, 12), "sbp": rng.uniform(20, 45)}
        if rng.random() < 0.6:
            confusion_at = float(rng.uniform(0.75, 0.95))
    m = PatientModel(
        index=index, seed=seed, duration_s=duration_s,
        hr0=rng.uniform(55, 95), rr0=rng.uniform(12, 18), spo2_0=rng.uniform(95, 99),
        temp0=rng.uniform(36.2, 37.2), sbp0=rng.uniform(105, 145), clock0_h=rng.uniform(0, 24),
        circ_hr=rng.uniform(3, 10), slow=slow, chronic_irregular=chronic_irregular,
        chronic_oxygen=bool(rng.random() < 0.1), event_s=event_s, onset_s=onset_s, det=det,
        confusion_at=confusion_at, rmssd_ms=rng.uniform(15, 60),
    )
    motion_scale = rng.uniform(0.5, 1.5)
    for name, kind in EPISODES.items():
        scale = motion_scale if name == "motion" else 1.0
        if name == "paroxysmal_af" and chronic_irregular:
            scale = 0.0
        m.episodes[name] = _draw_episodes(rng, kind, duration_s, m.clock0_h, scale)
    return m


def progress(m: PatientModel, t: float) -> float:
    """Deterioration severity 0..1: rises linearly from onset to the event, then (treatment) falls back
    linearly over RECOVERY_S. 0 before onset or when not deteriorating."""
    if m.event_s is None or m.onset_s is None or t <= m.onset_s:
        return 0.0
    if t <= m.event_s:
        return (t - m.onset_s) / (m.event_s - m.onset_s)
    return max(0.0, 1.0 - (t - m.event_s) / RECOVERY_S)


def vitals(m: PatientModel, t: float, window_s: float) -> dict:
    """All ground-truth quantities for the window (t - window_s, t]."""
    c = math.cos(2 * math.pi * (m.clock_h(t) - 16.0) / 24.0)
    v = {"hr": m.hr0 + m.circ_hr * c, "rr": m.rr0 + 1.0 * c, "spo2": m.spo2_0,
         "temp": m.temp0 + 0.3 * c, "sbp": m.sbp0 + 6.0 * c}
    for k, rows in m.slow.items():
        v[k] += float(np.sum(rows[:, 0] * np.sin(2 * math.pi * t / rows[:, 1] + rows[:, 2])))
    ep = m.episodes
    t0 = t - window_s
    ex, anx = ep["exercise"].level(t), ep["anxiety"].level(t)
    v["hr"] += ex + anx + ep["transient_tachy"].level(t) - ep["transient_brady"].level(t)
    v["hr"] -= ep["sleep_brady"].level(t)
    v["rr"] += RR_PER_HR * (ex + anx)
    v["spo2"] -= ep["transient_desat"].level(t)
    af = m.chronic_irregular or ep["paroxysmal_af"].overlap_s(t0, t) > FLAG_OVERLAP_S
    v["hr"] += ep["paroxysmal_af"].level(t)
    p_lin = progress(m, t)
    p = p_lin ** 1.5
    for k, d in m.det.items():
        v[k] += -d * p if k in ("spo2", "sbp") else d * p
    treated = m.event_s is not None and t > m.event_s and p_lin > 0.0
    on_oxygen = m.chronic_oxygen or p_lin >= 0.8 or treated
    if p_lin >= 0.8 or treated:
        v["spo2"] += 2.0
    if v["hr"] < HR_SOFT_FLOOR:  # benign bradycardia flattens out in the low 40s
        v["hr"] = HR_SOFT_FLOOR - 0.3 * (HR_SOFT_FLOOR - v["hr"])
    for k, (lo, hi) in CLIP.items():
        v[k] = min(hi, max(lo, v[k]))
    confounder = "exercise" if ex > 0 else ("anxiety" if anx > 0 else None)
    return {
        **v,
        "consciousness": "C" if (m.confusion_at is not None and p_lin >= m.confusion_at) else "A",
        "on_oxygen": bool(on_oxygen),
        "irregular": bool(af),
        "motion": ep["motion"].overlap_s(t0, t) >= FLAG_OVERLAP_S,
        "off_wrist": ep["off_wrist"].overlap_s(t0, t) > 0.0,
        "confounder": confounder,
        "deteriorating": m.event_s is not None and p_lin > 0.0 and t <= m.event_s,
        "exercise_level": ex,
        "progress": p_lin,
    }
