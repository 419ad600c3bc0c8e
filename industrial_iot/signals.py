"""The industrial_iot data source: a physically grounded fleet simulator, and readers for real recordings.

A plant runs a fleet of rotating machines (induction motors, centrifugal pumps, fans); an
accelerometer on each bearing housing samples one radial axis in g. `simulate_fleet(FleetConfig)`
returns `Machine`s; `machine.window(t_s)` synthesises the window the sensor records at simulated time
t_s (seconds from the start of the simulation), with its ground truth.

Physics per window (see _vibration.py for the formulas):
- Shaft speed: each machine has a nominal speed (2-, 4- or 6-pole motor: 49.5, 24.75 or 16.5 Hz; fans and
  pumps on a variable-frequency drive anywhere in 15-50 Hz) and a load that follows a daily cycle plus a
  slower one; a direct-on-line motor slips 0.5-2 % with load, a drive-fed one runs at 60-100 % of
  nominal. The drive reports whole rpm (like the Case Western data's RPM variable): `Window.rpm`,
  `Window.shaft_hz` = rpm / 60.
- Healthy vibration: residual imbalance (1x) and a little 2x, 3x; blade pass (fans, 6-12 blades) or vane
  pass (pumps, 5-7 vanes); broadband structural noise that rings the machine's resonance (2-3.5 kHz,
  damping ratio 2-8 %); sensor noise (white, 1-4 mg RMS), a sensitivity error of +-3 %, 16-bit
  quantisation over the sensor's range.
- Faults (`LABELS`): imbalance (1x); misalignment (2x above 1x, some 3x); mechanical looseness (1x-10x
  harmonics and the half orders 0.5x-5.5x); outer race (impacts at bpfo), inner race (at bpfi,
  amplitude-modulated at shaft speed), rolling element (at 2 bsf, modulated at the cage speed ftf), each
  impact ringing the structural resonance, with 1-2 % slip and 1 % jitter; bearing faults late in life
  also raise 1x and a broadband rumble, so ISO 10816 notices them only near the end.
- Growth: a fault starts at `fault_onset_h` with severity 0.03 and grows exponentially to 1 at
  `failure_h`, the ground-truth functional failure, where the machine's velocity RMS reaches about
  1.25 times its ISO 10816-3 zone C/D boundary (shaft faults) or its bearing impacts reach 4-10 g. After
  failure the machine keeps running at severity 1 (hours_to_failure 0).
- Sensor trouble on some machines, from some hour on: "loose" (the mounting resonance drops to ~1 kHz:
  less above, more near it, plus rattling at 1x) or "saturating" (a +-2 g part clips the impacts).

Deterministic: a machine's parameters depend on (seed, machine index), a window's noise on
(seed, machine index, t_s), so windows can be drawn in any order. `training_windows` draws a labelled,
class-balanced set quickly from independent random machines for training the classifier.

Readers (`read_cwru_mat`, `read_csv`) are in _readers.py and re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from industrial_iot import _vibration as vib
from industrial_iot._readers import Recording, read_csv, read_cwru_mat, recording_windows
from industrial_iot.features import FS_HZ, WINDOW_S, bearing_frequencies
from industrial_iot.iso10816 import boundaries

__all__ = ["BEARINGS", "KINDS", "LABELS", "Bearing", "FleetConfig", "Machine", "Recording", "Window",
           "read_csv", "read_cwru_mat", "recording_windows", "simulate_fleet", "training_windows"]

LABELS = ("normal", "imbalance", "misalignment", "looseness", "outer_race", "inner_race", "rolling_element")
FAULTS = LABELS[1:]
BEARING_FAULTS = ("outer_race", "inner_race", "rolling_element")
KINDS = ("motor", "pump", "fan")
SEVERITY_ONSET = 0.03
SENSOR_ISSUES = ("loose", "saturating")


@dataclass(frozen=True)
class Bearing:
    """A deep-groove ball bearing: designation, ball count, ball and pitch diameters (mm), contact angle."""

    designation: str
    n_balls: int
    ball_d_mm: float
    pitch_d_mm: float
    contact_deg: float = 0.0

    def as_dict(self) -> dict:
        """The `bearing` mapping that features.extract and bearing_frequencies take."""
        return {"n_balls": self.n_balls, "ball_d": self.ball_d_mm, "pitch_d": self.pitch_d_mm,
                "contact_deg": self.contact_deg}


#: common deep-groove sizes (6205: the SKF 6205-2RS JEM of the Case Western drive end)
BEARINGS = {
    "6203": Bearing("6203", 8, 6.75, 28.5),
    "6205": Bearing("6205", 9, 7.94, 39.04),
    "6206": Bearing("6206", 9, 9.53, 46.5),
    "6308": Bearing("6308", 8, 15.08, 65.0),
    "6309": Bearing("6309", 8, 17.46, 72.5),
}


@dataclass(frozen=True)
class FleetConfig:
    """A simulated plant.

    n_machines: machines in the fleet. duration_h: simulated span (hours). window_every_s: one window per
    machine every this many seconds (3600: hourly). fs_hz, window_s: the sensor's sample rate and window
    (defaults: the device geometry of industrial_iot.features, 10 240 Hz x 0.8 s = 8192 samples).
    seed: everything is deterministic per seed. fault_share: share of machines that develop a fault (the
    fault types are spread evenly over them). growth_h: (min, max) hours from fault onset to functional
    failure. onset_frac: (min, max) of the onset time as a fraction of duration_h (so some machines fail
    inside the span and some after it). sensor_issue_share: share of machines whose sensor comes loose or
    saturates.
    """

    n_machines: int = 24
    duration_h: float = 21 * 24.0
    window_every_s: float = 3600.0
    fs_hz: float = FS_HZ
    window_s: float = WINDOW_S
    seed: int = 0
    fault_share: float = 0.5
    growth_h: tuple[float, float] = (72.0, 480.0)
    onset_frac: tuple[float, float] = (0.0, 0.75)
    sensor_issue_share: float = 0.1

    def __post_init__(self) -> None:
        def need(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise ValueError(f"FleetConfig.{key}: {what}, got {getattr(self, key)!r}")

        need(isinstance(self.n_machines, int) and self.n_machines >= 1, "n_machines", "must be an integer >= 1")
        for key in ("duration_h", "window_every_s", "fs_hz", "window_s"):
            v = getattr(self, key)
            need(isinstance(v, int | float) and math.isfinite(v) and v > 0, key, "must be a finite number > 0")
        need(isinstance(self.seed, int), "seed", "must be an integer")
        for key in ("fault_share", "sensor_issue_share"):
            v = getattr(self, key)
            need(isinstance(v, int | float) and 0 <= v <= 1, key, "must be in [0, 1]")
        lo, hi = self.growth_h
        need(0 < lo <= hi, "growth_h", "must be (min, max) hours with 0 < min <= max")
        lo, hi = self.onset_frac
        need(0 <= lo <= hi <= 1, "onset_frac", "must be (min, max) with 0 <= min <= max <= 1")
        need(self.n_samples >= 256, "window_s", "fs_hz * window_s must give at least 256 samples")

    @property
    def n_samples(self) -> int:
        return int(round(self.fs_hz * self.window_s))

    @property
    def times_s(self) -> np.ndarray:
        """Window times (end of each window, s from the simulation start)."""
        return np.arange(self.window_every_s, self.duration_h * 3600.0 + 1e-9, self.window_every_s)


@dataclass
class Window:
    """One recorded window and its ground truth."""

    machine_id: str
    t_s: float                # simulated time of the window (s from the simulation start)
    accel_g: np.ndarray       # float32[n], acceleration in g
    fs_hz: float
    rpm: int                  # shaft speed as the drive reports it (whole rpm)
    shaft_hz: float           # rpm / 60
    bearing: dict             # the monitored bearing's geometry (features.extract's `bearing`)
    label: str                # ground-truth condition, one of LABELS
    severity: float           # 0 (healthy) .. 1 (functional failure)
    hours_to_failure: float   # inf for a machine that never fails; 0 once failed
    sensor_issue: str | None = None   # "loose" / "saturating" while the sensor is in trouble


@dataclass
class Machine:
    """One machine of the fleet: its make-up, its fault history and its sensor."""

    id: str
    index: int
    kind: str                 # motor / pump / fan
    power_kw: float
    iso_group: int            # ISO 10816-3 group: 1 (300 kW - 50 MW) or 2 (15 - 300 kW)
    foundation: str           # "rigid" / "flexible"
    nominal_hz: float         # shaft speed at no load (DOL) or at full drive output (VFD)
    vfd: bool                 # on a variable-frequency drive
    bearing: Bearing
    resonance_hz: float
    damping: float            # damping ratio of the structural resonance
    fault: str | None
    fault_onset_h: float      # inf when no fault
    failure_h: float          # ground-truth functional failure time (inf when no fault)
    sensor_issue: str | None = None
    sensor_issue_h: float = math.inf
    seed: int = 0
    fs_hz: float = FS_HZ
    window_s: float = WINDOW_S
    params: dict = field(default_factory=dict)   # baseline levels and phases of the load cycle

    @property
    def v_fail_mm_s(self) -> float:
        """Velocity RMS at functional failure: 1.25 x the machine's zone C/D boundary."""
        return 1.25 * boundaries(self.iso_group, self.foundation)[2]

    def load(self, t_s: float) -> float:
        """Load 0..1: a daily cycle and a slower one."""
        p = self.params
        day = math.sin(2 * math.pi * t_s / 86400.0 + p["load_phase"])
        slow = math.sin(2 * math.pi * t_s / (3.7 * 86400.0) + p["load_phase2"])
        return min(1.0, max(0.0, p["load_mean"] + 0.25 * day + 0.1 * slow))

    def speed_hz(self, t_s: float) -> float:
        """True shaft speed (Hz) at t_s."""
        ld = self.load(t_s)
        if self.vfd:
            return self.nominal_hz * (0.6 + 0.4 * ld)
        return self.nominal_hz * (1.0 - 0.005 - 0.015 * ld)

    def severity(self, t_s: float) -> float:
        t_h = t_s / 3600.0
        if self.fault is None or t_h < self.fault_onset_h:
            return 0.0
        if t_h >= self.failure_h:
            return 1.0
        rate = math.log(1.0 / SEVERITY_ONSET) / (self.failure_h - self.fault_onset_h)
        return SEVERITY_ONSET * math.exp(rate * (t_h - self.fault_onset_h))

    def hours_to_failure(self, t_s: float) -> float:
        return max(0.0, self.failure_h - t_s / 3600.0) if math.isfinite(self.failure_h) else math.inf

    def label(self, t_s: float) -> str:
        return self.fault if self.fault is not None and t_s / 3600.0 >= self.fault_onset_h else "normal"

    def window(self, t_s: float) -> Window:
        """The window the sensor records at t_s (deterministic per seed, machine and t_s)."""
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, self.index, 2, int(round(t_s * 1000))])
        fr = self.speed_hz(t_s)
        issue = self.sensor_issue if t_s / 3600.0 >= self.sensor_issue_h else None
        label = self.label(t_s)
        sev = self.severity(t_s)
        x = synthesize(self, rng, fr, label if label != "normal" else None, sev, issue)
        rpm = int(round(fr * 60.0))
        return Window(self.id, float(t_s), x, float(self.fs_hz), rpm, rpm / 60.0, self.bearing.as_dict(), label,
                      sev, self.hours_to_failure(t_s), issue)

    def windows(self, every_s: float = 4 * 3600.0, duration_h: float = 24.0) -> Iterator[Window]:
        """The windows the sensor records every ``every_s`` over the first ``duration_h`` hours."""
        for k in range(1, int(duration_h * 3600.0 // every_s) + 1):
            yield self.window(k * every_s)


def synthesize(m: Machine, rng: np.random.Generator, fr: float, fault: str | None, severity: float,
               issue: str | None) -> np.ndarray:
    """float32 acceleration (g) of machine m running at fr Hz with `fault` at `severity`."""
    p = m.params
    n = int(round(m.fs_hz * m.window_s))
    fs = float(m.fs_hz)
    t = np.arange(n) / fs
    speed_ratio = fr / m.nominal_hz
    orders = {1.0: p["v1x"] * speed_ratio, 2.0: p["v2x"], 3.0: p["v3x"]}
    added = vib.shaft_orders(fault, severity, m.v_fail_mm_s)
    x = np.zeros(n)
    for o in sorted(set(orders) | set(added)):
        # a fault's vector adds to the residual at a fixed relative phase
        v = math.hypot(orders.get(o, 0.0) + added.get(o, 0.0) * math.cos(p["fault_phase"]),
                       added.get(o, 0.0) * math.sin(p["fault_phase"]))
        if o * fr < fs / 2:
            x += vib.tone(v, o * fr, t, rng.uniform(0, 2 * math.pi))
    if p["blades"]:
        x += vib.tone(p["v_bpf"] * speed_ratio ** 2, p["blades"] * fr, t, rng.uniform(0, 2 * math.pi))
    x += vib.velocity_noise(rng, p["v_floor"], n, fs)
    if fault in BEARING_FAULTS:
        x += vib.velocity_noise(rng, vib.BEARING_LATE_RUMBLE * severity**2 * m.v_fail_mm_s, n, fs)
    # everything that rings the structural resonance: flow noise and impacts
    h, energy = vib.resonance_response(n, fs, m.resonance_hz, m.damping)
    drive = rng.standard_normal(n) * (p["res_noise_g"] / math.sqrt(energy))
    if fault in BEARING_FAULTS:
        defects = bearing_frequencies(1.0, **m.bearing.as_dict())
        times, amps = vib.bearing_impacts(rng, fault, fr, defects, severity * p["impact_fail_g"], n / fs)
        drive += vib.impulse_train(times, amps, n, fs)
    if fault == "looseness":  # a rattling part: one knock per revolution
        times = vib.impact_times(rng, fr, n / fs, 0.05)
        drive += vib.impulse_train(times, 0.4 * severity * rng.uniform(0.5, 1.0, times.size), n, fs)
    x += np.fft.irfft(np.fft.rfft(drive) * h, n)
    if issue == "loose":
        times = vib.impact_times(rng, fr, n / fs, 0.1)
        x += vib.impulse_train(times, rng.uniform(0.05, 0.3, times.size), n, fs)
        x = vib.loose_mount(x, fs, p["mount_hz"], 4.0)
    x = x * p["gain"] + rng.standard_normal(n) * p["sensor_noise_g"]
    rng_g = 2.0 if issue == "saturating" else p["range_g"]
    q = rng_g / 32768.0
    return (np.clip(np.round(x / q), -32768, 32767) * q).astype(np.float32)


def _make_machine(rng: np.random.Generator, index: int, mid: str, seed: int, fault: str | None, onset_h: float,
                  failure_h: float, issue: str | None, issue_h: float, fs_hz: float, window_s: float) -> Machine:
    kind = KINDS[int(rng.integers(3))]
    power = float(math.exp(rng.uniform(math.log(15.0), math.log(2000.0))))
    group = 1 if power > 300.0 else 2
    foundation = "flexible" if rng.uniform() < 0.3 else "rigid"
    vfd = kind != "motor" and rng.uniform() < 0.6
    nominal = float(rng.uniform(25.0, 50.0)) if vfd else float([49.5, 24.75, 16.5][int(rng.integers(3))])
    small = ("6203", "6205", "6206")
    big = ("6206", "6308", "6309")
    bearing = BEARINGS[(small if power < 75 else big)[int(rng.integers(3))]]
    ab = boundaries(group, foundation)[0]
    params = {
        "load_mean": float(rng.uniform(0.35, 0.65)), "load_phase": float(rng.uniform(0, 2 * math.pi)),
        "load_phase2": float(rng.uniform(0, 2 * math.pi)), "fault_phase": float(rng.uniform(0, 2 * math.pi)),
        "v1x": float(rng.uniform(0.2, 0.5) * ab), "v2x": float(rng.uniform(0.05, 0.15) * ab),
        "v3x": float(rng.uniform(0.02, 0.06) * ab), "v_floor": float(rng.uniform(0.05, 0.15) * ab),
        "blades": 0 if kind == "motor" else int(rng.integers(5, 8) if kind == "pump" else rng.integers(6, 13)),
        "v_bpf": float(rng.uniform(0.1, 0.3) * ab),
        "res_noise_g": float(rng.uniform(0.005, 0.02)), "impact_fail_g": float(rng.uniform(4.0, 10.0)),
        "gain": float(rng.uniform(0.97, 1.03)), "sensor_noise_g": float(rng.uniform(0.001, 0.004)),
        "range_g": float([16.0, 50.0][int(rng.integers(2))]), "mount_hz": float(rng.uniform(800.0, 1200.0)),
    }
    return Machine(mid, index, kind, power, group, foundation, nominal, vfd, bearing,
                   float(rng.uniform(2000.0, 3500.0)), float(rng.uniform(0.02, 0.08)), fault, onset_h, failure_h,
                   issue, issue_h, seed, fs_hz, window_s, params)


def simulate_fleet(cfg: FleetConfig) -> list[Machine]:
    """The fleet of cfg: machines m001, m002, ...; round(fault_share n) of them develop a fault."""
    pick = np.random.default_rng([cfg.seed & 0xFFFFFFFF, 0xF1EE7])
    n = cfg.n_machines
    order = pick.permutation(n)
    n_faulty = int(round(cfg.fault_share * n))
    faults: dict[int, str] = {int(i): FAULTS[k % len(FAULTS)] for k, i in enumerate(order[:n_faulty])}
    n_issues = int(round(cfg.sensor_issue_share * n))
    issues = {int(i): SENSOR_ISSUES[k % 2] for k, i in enumerate(pick.permutation(n)[:n_issues])}
    machines = []
    for i in range(n):
        rng = np.random.default_rng([cfg.seed & 0xFFFFFFFF, i, 1])
        fault = faults.get(i)
        onset = failure = math.inf
        if fault is not None:
            onset = float(rng.uniform(*cfg.onset_frac) * cfg.duration_h)
            failure = onset + float(rng.uniform(*cfg.growth_h))
        issue = issues.get(i)
        issue_h = float(rng.uniform(0.0, cfg.duration_h)) if issue else math.inf
        machines.append(_make_machine(rng, i, f"m{i + 1:03d}", cfg.seed, fault, onset, failure, issue, issue_h,
                                      cfg.fs_hz, cfg.window_s))
    return machines


def training_windows(n: int, seed: int, fs_hz: float = FS_HZ, window_s: float = WINDOW_S,
                     labels: tuple[str, ...] = LABELS, severity: tuple[float, float] = (0.1, 1.0),
                     sensor_issue_share: float = 0.05) -> list[Window]:
    """n labelled windows from n independent random machines, the labels cycling through `labels`
    (balanced), fault severity uniform in `severity`, a random load; some with sensor trouble."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n: must be an integer >= 0, got {n!r}")
    unknown = [lb for lb in labels if lb not in LABELS]
    if unknown or not labels:
        raise ValueError(f"labels: must be a non-empty subset of {LABELS}, got {labels!r}")
    lo, hi = severity
    if not 0 <= lo <= hi <= 1:
        raise ValueError(f"severity: must be (min, max) with 0 <= min <= max <= 1, got {severity!r}")
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed & 0xFFFFFFFF, i, 7])
        label = labels[i % len(labels)]
        fault = None if label == "normal" else label
        sev = float(rng.uniform(lo, hi)) if fault else 0.0
        issue = SENSOR_ISSUES[int(rng.integers(2))] if rng.uniform() < sensor_issue_share else None
        m = _make_machine(rng, i, f"t{i:05d}", seed, fault, -math.inf if fault else math.inf,
                          math.inf, issue, 0.0 if issue else math.inf, fs_hz, window_s)
        t_s = float(rng.uniform(0.0, 7 * 86400.0))
        fr = m.speed_hz(t_s)
        x = synthesize(m, rng, fr, fault, sev, issue)
        rpm = int(round(fr * 60.0))
        out.append(Window(m.id, t_s, x, float(fs_hz), rpm, rpm / 60.0, m.bearing.as_dict(), label, sev,
                          math.inf, issue))
    return out
