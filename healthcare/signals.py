"""Healthcare data source: a ward-patient cohort simulator and a loader for real WFDB recordings.

A patient wears a wrist device with a red + infrared PPG, a 3-axis accelerometer (in g, gravity
included) and a skin temperature sensor. Every `window_every_s` the device records `window_s` of
signals at `fs_hz` and classifies the window. Nurses chart observations every `chart_every_h`.

Simulation (all deterministic for `CohortConfig.seed`; every patient, window and chart draws from its
own `numpy.random.Generator` seeded with (seed, patient index, stream[, window end in ms])):

* physiology: see `healthcare._physio` (baselines per patient, circadian drift, confounders such as
  exercise and anxiety, benign transient abnormal windows, motion and off-wrist episodes, chronic or
  paroxysmal AF, and sepsis-like deterioration episodes ending at a ground-truth event time at least
  8 h into a 24 h stay). Vitals are held constant over a window at their end-of-window value.
* PPG: one template beat per patient from `neurokit2.ppg_simulate`; each window places amplitude-
  scaled copies of it between beat onsets (RR intervals with HRV, or irregularly irregular when AF),
  adds respiratory baseline wander and amplitude modulation at `rr_bpm`, then sets
  ``signal = DC * (1 + wander) + AC * pulse`` per channel with AC_ir / DC_ir = perfusion index and
  AC_red / DC_red = R * AC_ir / DC_ir, where R = (110 - SpO2) / 25 (the calibration
  SpO2 = 110 - 25 R that `features` inverts). Signals are in blood-volume polarity (systole up), in
  18-bit ADC-like counts (DC 40 000-120 000 on the wrist, a few hundred off it).
* motion artefact: large random 0.3-3 Hz modulation of both PPG channels plus 0.5-4 Hz accelerations;
  exercise adds a walking cadence (1.6-2.0 Hz) to the accelerometer and a small one to the PPG.
* off wrist: PPG is ambient light plus noise, the accelerometer lies still, skin temperature decays
  towards ambient (time constant 120 s) and recovers (180 s) after the device is put back.

Labels (rule applied to `Truth`, first match wins, see `label_of`): "unreliable" if off_wrist or
motion; "desaturation" if spo2 < 92; "irregular" if irregular; "tachycardia" if hr > 100;
"bradycardia" if hr < 50; else "normal".
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from healthcare import _physio
from healthcare._ppg import beat_train, ratio_from_spo2, template_beat

LABELS: tuple[str, ...] = ("normal", "tachycardia", "bradycardia", "desaturation", "irregular", "unreliable")
CHRONIC_IRREGULAR_FRACTION = 0.1  # share of patients with chronic AF-like rhythm


@dataclass(frozen=True)
class CohortConfig:
    """Cohort simulation settings (defaults: 20 patients, 24 h, one 30 s window every 5 min at 25 Hz)."""

    n_patients: int = 20
    duration_h: float = 24.0
    window_s: float = 30.0  # length of one device window
    window_every_s: float = 300.0  # device duty cycle: one window every 5 min
    fs_hz: float = 25.0  # PPG and accelerometer sample rate
    deteriorating_fraction: float = 0.4
    chart_every_h: float = 4.0  # nurse observations cadence
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "n_patients": self.n_patients >= 1,
            "duration_h": self.duration_h > 0,
            "window_s": 0 < self.window_s <= self.duration_h * 3600.0,
            "window_every_s": self.window_every_s > 0,
            "fs_hz": self.fs_hz > 0 and self.window_s * self.fs_hz >= 8,
            "deteriorating_fraction": 0.0 <= self.deteriorating_fraction <= 1.0,
            "chart_every_h": self.chart_every_h > 0,
            "seed": self.seed >= 0,
        }
        for name, ok in checks.items():
            value = getattr(self, name)
            if not ok or (isinstance(value, float) and not math.isfinite(value)):
                raise ValueError(f"CohortConfig.{name}: invalid value {value!r}")


@dataclass
class Truth:
    """Ground truth at the END of a window. NaN / "" where unknown (real recordings)."""

    hr_bpm: float
    rr_bpm: float
    spo2_pct: float
    temp_c: float
    sbp_mmhg: float
    consciousness: str  # "A" alert, or "C", "V", "P", "U"; "" unknown
    on_oxygen: bool
    irregular: bool  # AF-like irregular rhythm in this window
    motion: bool  # strong motion artefact in this window
    off_wrist: bool
    confounder: str | None  # "exercise" | "anxiety" | None
    deteriorating: bool  # inside a deterioration episode (after its onset)
    label: str  # one of LABELS, or "" when unknown


@dataclass
class Window:
    patient: str
    t_end_s: float
    fs_hz: float
    ppg_red: np.ndarray  # float32 (n,)
    ppg_ir: np.ndarray  # float32 (n,)
    acc_g: np.ndarray  # float32 (n, 3), g, gravity included
    temp_c: float  # skin temperature reading for the window
    truth: Truth


@dataclass
class ChartObs:
    """One set of nurse observations."""

    patient: str
    t_s: float
    sbp_mmhg: float
    consciousness: str
    on_oxygen: bool
    rr_bpm: float
    temp_c: float


def label_of(t: Truth) -> str:
    """The documented per-window label rule (first match wins)."""
    if t.off_wrist or t.motion:
        return "unreliable"
    if t.spo2_pct < 92.0:
        return "desaturation"
    if t.irregular:
        return "irregular"
    if t.hr_bpm > 100.0:
        return "tachycardia"
    if t.hr_bpm < 50.0:
        return "bradycardia"
    return "normal"


@dataclass(frozen=True)
class _Device:
    """Per-patient sensor parameters."""

    template: np.ndarray
    perfusion: float  # AC_ir / DC_ir
    dc_ir: float
    dc_red: float
    wander: float  # respiratory baseline wander, relative to AC
    am_depth: float  # respiratory amplitude modulation depth
    noise: float  # white noise std relative to AC
    temp_bias_c: float
    ambient_c: float
    gravity: np.ndarray  # resting orientation, unit vector


class Patient:
    """One simulated patient; every method is a pure function of time (any order, repeatable)."""

    def __init__(self, cfg: CohortConfig, model: _physio.PatientModel) -> None:
        self.cfg = cfg
        self._m = model
        self.id = f"p{model.index:03d}"
        self.event_time_s: float | None = model.event_s
        self.onset_time_s: float | None = model.onset_s
        self.chronic_irregular: bool = model.chronic_irregular
        rng = np.random.default_rng([cfg.seed, model.index, 3])
        g = rng.normal(size=3) + np.array([0.0, 0.0, 2.0])
        dc_ir = rng.uniform(40e3, 120e3)
        self._dev = _Device(
            template=template_beat(model.hr0, seed=(cfg.seed * 7919 + model.index) % (2**31)),
            perfusion=rng.uniform(0.006, 0.02), dc_ir=dc_ir,
            dc_red=dc_ir * rng.uniform(0.5, 0.9), wander=rng.uniform(0.2, 0.5),
            am_depth=rng.uniform(0.05, 0.15),
            noise=rng.uniform(0.01, 0.03), temp_bias_c=rng.normal(0.0, 0.1),
            ambient_c=rng.uniform(21.0, 25.0), gravity=g / np.linalg.norm(g),
        )

    def __repr__(self) -> str:
        return f"Patient({self.id}, event_time_s={self.event_time_s})"

    def clock_h(self, t_s: float) -> float:
        """Local clock time (hours, 0-24) at t_s into the stay; the circadian rhythm follows it."""
        return float(self._m.clock_h(float(t_s)))

    def _vitals(self, t_s: float) -> dict:
        if not math.isfinite(t_s):
            raise ValueError(f"t_s: must be finite, got {t_s!r}")
        return _physio.vitals(self._m, float(t_s), self.cfg.window_s)

    @staticmethod
    def _truth(v: dict) -> Truth:
        t = Truth(hr_bpm=v["hr"], rr_bpm=v["rr"], spo2_pct=v["spo2"], temp_c=v["temp"], sbp_mmhg=v["sbp"],
                  consciousness=v["consciousness"], on_oxygen=v["on_oxygen"], irregular=v["irregular"],
                  motion=v["motion"], off_wrist=v["off_wrist"], confounder=v["confounder"],
                  deteriorating=v["deteriorating"], label="")
        t.label = label_of(t)
        return t

    def state(self, t_s: float) -> Truth:
        """Ground truth for the window ending at t_s."""
        return self._truth(self._vitals(t_s))

    def window(self, t_end_s: float) -> Window:
        """Synthesise the device window ending at t_end_s (needs t_end_s >= window_s)."""
        if not (math.isfinite(t_end_s) and t_end_s >= self.cfg.window_s):
            raise ValueError(f"t_end_s: must be >= window_s ({self.cfg.window_s}), got {t_end_s!r}")
        v = self._vitals(t_end_s)
        red, ir, acc, temp = self._synth(float(t_end_s), v)
        return Window(self.id, float(t_end_s), self.cfg.fs_hz, red, ir, acc, temp, self._truth(v))

    def windows(self) -> Iterator[Window]:
        """Every window_every_s over the stay: t_end = window_s + k * window_every_s <= duration."""
        cfg = self.cfg
        n = int(math.floor((cfg.duration_h * 3600.0 - cfg.window_s) / cfg.window_every_s + 1e-9)) + 1
        for k in range(n):
            yield self.window(cfg.window_s + k * cfg.window_every_s)

    def charts(self) -> list[ChartObs]:
        """Nurse observations every chart_every_h (first at a random phase, +-10 min jitter)."""
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, self._m.index, 2])
        every_s = cfg.chart_every_h * 3600.0
        t = rng.uniform(0.25, 1.0) * every_s
        out: list[ChartObs] = []
        while t <= cfg.duration_h * 3600.0:
            ts = float(max(cfg.window_s, t + rng.uniform(-600.0, 600.0)))
            v = self._vitals(ts)
            out.append(ChartObs(self.id, ts, float(round(v["sbp"] + rng.normal(0, 4.0))), v["consciousness"],
                                v["on_oxygen"], float(round(v["rr"] + rng.normal(0, 1.0))),
                                float(round(v["temp"] + rng.normal(0, 0.15), 1))))
            t += every_s
        return out

    # ---------------------------------------------------------------- synthesis
    def _synth(self, t_end: float, v: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        cfg, d, m = self.cfg, self._dev, self._m
        rng = np.random.default_rng([cfg.seed, m.index, 1, int(round(t_end * 1000.0))])
        n = int(round(cfg.window_s * cfg.fs_hz))
        t0 = t_end - cfg.window_s
        t = t0 + np.arange(n) / cfg.fs_hz
        mean_ibi = 60.0 / v["hr"]
        f_r = v["rr"] / 60.0
        phi_r = rng.uniform(0, 2 * math.pi)
        nb = int((cfg.window_s + 2.0) / (0.5 * mean_ibi)) + 4
        if v["irregular"]:
            ibi = mean_ibi * np.clip(1.0 + 0.2 * rng.normal(size=nb), 0.5, 1.8)
        else:
            rmssd_s = m.rmssd_ms / 1000.0 * (1.0 - 0.6 * v["progress"]) * min(1.5, max(0.4, 75.0 / v["hr"]))
            k = np.arange(nb)
            ibi = mean_ibi * (1.0 + 0.02 * np.sin(2 * math.pi * f_r * k * mean_ibi + phi_r))
            ibi = np.maximum(ibi + rng.normal(0.0, rmssd_s / math.sqrt(2.0), nb), 0.5 * mean_ibi)
        beats = t[0] - rng.uniform(0.0, mean_ibi) + np.concatenate([[0.0], np.cumsum(ibi)])
        amps = 1.0 + d.am_depth * np.sin(2 * math.pi * f_r * beats + phi_r)
        amps *= 1.0 + 0.03 * rng.normal(size=nb + 1)
        pulse = beat_train(t, beats, amps, d.template, 60.0 / m.hr0)
        resp = np.sin(2 * math.pi * f_r * t + phi_r)
        rel = 1.0 + d.wander * d.perfusion * resp
        r = float(ratio_from_spo2(v["spo2"]))
        ir = d.dc_ir * (rel + d.perfusion * pulse + d.noise * d.perfusion * rng.normal(size=n))
        red = d.dc_red * (rel + r * d.perfusion * pulse + d.noise * r * d.perfusion * rng.normal(size=n))
        tilt = rng.normal(0.0, 0.05, 3)
        g = d.gravity + tilt - np.dot(tilt, d.gravity) * d.gravity
        g = g / np.linalg.norm(g)
        acc = g[None, :] * (1.0 + 0.002 * resp[:, None]) + rng.normal(0.0, 0.004, (n, 3))
        if v["exercise_level"] > 0:
            f_step = rng.uniform(1.6, 2.0)
            step = np.sin(2 * math.pi * f_step * t) + 0.3 * np.sin(4 * math.pi * f_step * t)
            acc += 0.12 * step[:, None] * g[None, :]
            art = 0.1 * d.perfusion * np.sin(2 * math.pi * f_step * t + rng.uniform(0, 6.3))
            ir += d.dc_ir * art
            red += d.dc_red * art
        mask = self._episode_mask(t, "motion")
        if mask.any():
            art = np.zeros(n)
            for _ in range(4):
                art += rng.uniform(1.0, 4.0) * d.perfusion * np.sin(
                    2 * math.pi * rng.uniform(0.3, 3.0) * t + rng.uniform(0, 6.3))
            ir[mask] *= 1.0 + art[mask]
            red[mask] *= 1.0 + art[mask] * rng.uniform(0.8, 1.2)
            jerk = np.zeros((n, 3))
            for _ in range(3):
                jerk += rng.uniform(0.1, 0.5, 3) * np.sin(
                    2 * math.pi * rng.uniform(0.5, 4.0, 3) * t[:, None] + rng.uniform(0, 6.3, 3))
            acc[mask] += jerk[mask]
        off = self._episode_mask(t, "off_wrist")
        if off.any():
            amb = rng.uniform(200.0, 1500.0)
            ir[off] = amb + rng.normal(0.0, 5.0, int(off.sum()))
            red[off] = 0.8 * amb + rng.normal(0.0, 5.0, int(off.sum()))
            acc[off] = np.array([0.0, 0.0, 1.0]) + rng.normal(0.0, 0.002, (int(off.sum()), 3))
        temp = self._skin_temp(t_end, v["temp"]) + rng.normal(0.0, 0.05)
        return red.astype(np.float32), ir.astype(np.float32), acc.astype(np.float32), float(temp)

    def _episode_mask(self, t: np.ndarray, kind: str) -> np.ndarray:
        ep = self._m.episodes[kind]
        mask = np.zeros(t.size, dtype=bool)
        for i in ep.active(float(t[0]), float(t[-1])):
            mask |= (t >= ep.start[i]) & (t < ep.end[i])
        return mask

    def _skin_temp(self, t: float, body_c: float) -> float:
        d = self._dev
        skin = body_c + d.temp_bias_c
        ep = self._m.episodes["off_wrist"]
        on = np.flatnonzero((ep.start <= t) & (ep.end > t))
        if on.size:
            return float(d.ambient_c + (skin - d.ambient_c) * math.exp(-(t - ep.start[on[0]]) / 120.0))
        ended = ep.end[(ep.end <= t) & (ep.end > t - 1800.0)]
        if ended.size:
            return float(skin - (skin - d.ambient_c) * math.exp(-(t - ended.max()) / 180.0))
        return float(skin)


def simulate_cohort(cfg: CohortConfig | None = None) -> list[Patient]:
    """Build the cohort: round(deteriorating_fraction * n) deteriorating patients and
    round(0.1 * n) with chronic irregular rhythm, chosen by a seeded permutation."""
    cfg = cfg or CohortConfig()
    n = cfg.n_patients
    rng = np.random.default_rng([cfg.seed, 1_000_003])
    det = set(rng.permutation(n)[: int(round(cfg.deteriorating_fraction * n))].tolist())
    irr = set(rng.permutation(n)[: int(round(CHRONIC_IRREGULAR_FRACTION * n))].tolist())
    duration_s = cfg.duration_h * 3600.0
    return [Patient(cfg, _physio.make_patient(i, cfg.seed, duration_s, i in det, i in irr)) for i in range(n)]


# ---------------------------------------------------------------------------------------- WFDB loader
def _unknown_truth() -> Truth:
    nan = float("nan")
    return Truth(nan, nan, nan, nan, nan, "", False, False, False, False, None, False, "")


def _resample(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    if abs(fs_in - fs_out) < 1e-9:
        return x.astype(np.float64)
    from scipy.signal import resample_poly

    frac = Fraction(fs_out / fs_in).limit_denominator(1000)
    return resample_poly(x.astype(np.float64), frac.numerator, frac.denominator, padtype="line")


def load_wfdb(record: str | Path, red: str = "PLETH_RED", ir: str = "PLETH_IR",
              acc: Sequence[str] | None = None, temp: str | None = None, fs_hz: float = 25.0,
              window_s: float = 30.0, window_every_s: float | None = None,
              patient: str | None = None) -> list[Window]:
    """Read a WFDB record (path without extension) into device windows.

    red / ir: PPG channel names (required). acc: three accelerometer channel names in g, or None
    (then `acc_g` is NaN and motion is unknown). temp: skin temperature channel in C, or None (NaN).
    Channels are resampled to fs_hz (polyphase, scipy.signal.resample_poly) and cut into windows of
    window_s every window_every_s (default: back to back). Truth is unknown: NaN vitals, "" for
    consciousness and label, False flags. A missing channel raises ValueError naming it.
    """
    import wfdb

    if not fs_hz > 0:
        raise ValueError(f"fs_hz: must be > 0, got {fs_hz!r}")
    if not window_s > 0:
        raise ValueError(f"window_s: must be > 0, got {window_s!r}")
    every = window_s if window_every_s is None else window_every_s
    if not every > 0:
        raise ValueError(f"window_every_s: must be > 0, got {window_every_s!r}")
    if acc is not None and len(acc) != 3:
        raise ValueError(f"acc: need three channel names, got {acc!r}")
    rec = wfdb.rdrecord(str(record))
    names = list(rec.sig_name)
    sig = np.asarray(rec.p_signal, dtype=np.float64)

    def channel(name: str, arg: str) -> np.ndarray:
        if name not in names:
            raise ValueError(f"{arg}: channel {name!r} not in record {record} (has {names})")
        return _resample(sig[:, names.index(name)], float(rec.fs), fs_hz)

    red_x, ir_x = channel(red, "red"), channel(ir, "ir")
    n_total = min(red_x.size, ir_x.size)
    acc_x = (np.column_stack([channel(c, "acc") for c in acc])[:n_total] if acc is not None
             else np.full((n_total, 3), np.nan))
    temp_x = channel(temp, "temp")[:n_total] if temp is not None else None
    n = int(round(window_s * fs_hz))
    step = every * fs_hz
    pid = patient or Path(str(record)).name
    out: list[Window] = []
    k = 0
    while int(round(k * step)) + n <= n_total:
        a = int(round(k * step))
        tc = float(np.mean(temp_x[a: a + n])) if temp_x is not None else float("nan")
        out.append(Window(pid, (a + n) / fs_hz, fs_hz, red_x[a: a + n].astype(np.float32),
                          ir_x[a: a + n].astype(np.float32), acc_x[a: a + n].astype(np.float32), tc,
                          _unknown_truth()))
        k += 1
    return out


__all__ = ["LABELS", "ChartObs", "CohortConfig", "Patient", "Truth", "Window", "label_of", "load_wfdb",
           "simulate_cohort"]
