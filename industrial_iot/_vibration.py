"""The physics of one simulated vibration window (used by industrial_iot.signals only).

Everything is acceleration in g at the accelerometer on the bearing housing, one radial axis.
Shaft-rate components are written as velocity RMS (mm/s, the unit of ISO 10816 and of a vibration
analyst's spectrum) and converted: a sine of velocity RMS v at f Hz has acceleration amplitude
sqrt(2) v 1e-3 2 pi f / G g. Impacts (bearing defects, a rattling loose part) excite the machine's
structural resonance: each is a decaying sinusoid exp(-zeta w t) sin(w sqrt(1 - zeta^2) t), applied by
an FFT convolution of the impulse train with that kernel.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

G = 9.80665
SQRT2 = math.sqrt(2.0)
#: relative velocity RMS (x v_fail at severity 1) of each order, by fault
IMBALANCE_1X = 1.0
MISALIGN = {1.0: 0.45, 2.0: 0.75, 3.0: 0.25}
LOOSE_DECAY = 0.8
BEARING_LATE_1X = 0.5
BEARING_LATE_RUMBLE = 0.8


def tone(v_rms_mm_s: float, f_hz: float, t: np.ndarray, phase: float) -> np.ndarray:
    """Acceleration (g) of a sine whose velocity RMS is v_rms_mm_s at f_hz."""
    amp = SQRT2 * v_rms_mm_s * 1e-3 * 2.0 * math.pi * f_hz / G
    return amp * np.sin(2.0 * math.pi * f_hz * t + phase)


@lru_cache(maxsize=256)
def resonance_response(n: int, fs_hz: float, f_hz: float, zeta: float) -> tuple[np.ndarray, float]:
    """rfft (length n) of the resonance's impulse response, normalised to a peak of 1, and the
    response's energy (sum of squares) so that white noise of std 1 comes out with RMS sqrt(energy)."""
    w = 2.0 * math.pi * f_hz
    length = min(n, int(math.log(1000.0) / (zeta * w) * fs_hz) + 1)
    t = np.arange(length) / fs_hz
    k = np.exp(-zeta * w * t) * np.sin(w * math.sqrt(1.0 - zeta * zeta) * t)
    k /= np.max(np.abs(k))
    return np.fft.rfft(k, n), float(np.sum(k * k))


def impact_times(rng: np.random.Generator, rate_hz: float, duration_s: float, jitter: float) -> np.ndarray:
    """Impact instants (s) at rate_hz with a random start and Gaussian period jitter (fraction)."""
    if rate_hz <= 0:
        return np.zeros(0)
    period = 1.0 / rate_hz
    count = int(duration_s * rate_hz) + 2
    steps = period * (1.0 + jitter * rng.standard_normal(count))
    times = rng.uniform(0.0, period) + np.concatenate([[0.0], np.cumsum(steps[:-1])])
    return times[times < duration_s]


def bearing_impacts(rng: np.random.Generator, fault: str, fr_hz: float, defects: dict, amp_g: float,
                    duration_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Impact times and amplitudes (g) of a localised bearing defect.

    Outer race: fixed in the load zone, impacts at bpfo of nearly constant strength. Inner race: the
    defect turns with the shaft through the load zone, so its impacts at bpfi are amplitude-modulated
    at shaft speed. Rolling element: a ball defect hits both races, impacts at 2 bsf, modulated at the
    cage speed ftf as the ball is carried through the load zone. Rolling elements slip: the rates are
    1-2 % below the kinematic ones and jitter by 1 % from impact to impact.
    """
    slip = 1.0 - rng.uniform(0.01, 0.02)
    if fault == "outer_race":
        rate, mod_hz, depth = defects["bpfo"] * fr_hz, 0.0, 0.0
    elif fault == "inner_race":
        rate, mod_hz, depth = defects["bpfi"] * fr_hz, fr_hz, 0.8
    else:
        rate, mod_hz, depth = 2.0 * defects["bsf"] * fr_hz, defects["ftf"] * fr_hz * slip, 0.8
    times = impact_times(rng, rate * slip, duration_s, 0.01)
    mod = 1.0 - depth + depth * (0.5 + 0.5 * np.cos(2.0 * math.pi * mod_hz * times + rng.uniform(0, 2 * math.pi)))
    amps = amp_g * mod * (1.0 + 0.1 * rng.standard_normal(times.size))
    return times, amps


def impulse_train(times_s: np.ndarray, amps: np.ndarray, n: int, fs_hz: float) -> np.ndarray:
    x = np.zeros(n)
    idx = np.minimum((times_s * fs_hz).astype(np.int64), n - 1)
    np.add.at(x, idx, amps)
    return x


def shaft_orders(fault: str | None, severity: float, v_fail: float) -> dict[float, float]:
    """Velocity RMS (mm/s) a fault of `severity` adds at each order (multiple of shaft speed)."""
    s = severity
    if fault == "imbalance":
        return {1.0: IMBALANCE_1X * s * v_fail}
    if fault == "misalignment":
        return {o: r * s * v_fail for o, r in MISALIGN.items()}
    if fault == "looseness":
        out = {float(h): 0.55 * s * v_fail * h ** -LOOSE_DECAY for h in range(1, 11)}
        out.update({h + 0.5: 0.3 * s * v_fail * (h + 0.5) ** -LOOSE_DECAY for h in range(6)})
        return out
    if fault in ("outer_race", "inner_race", "rolling_element"):
        return {1.0: BEARING_LATE_1X * s * s * v_fail}  # late-stage wear: clearance, rubbing
    return {}


def velocity_noise(rng: np.random.Generator, v_rms_mm_s: float, n: int, fs_hz: float,
                   band_hz: tuple[float, float] = (10.0, 1000.0)) -> np.ndarray:
    """Acceleration (g) of random vibration whose velocity spectrum is flat over band_hz with total
    velocity RMS v_rms_mm_s (the rumble of worn bearings, turbulence)."""
    f = np.fft.rfftfreq(n, 1.0 / fs_hz)
    inband = (f >= band_hz[0]) & (f <= band_hz[1])
    spec = np.zeros(f.size, dtype=np.complex128)
    m = int(inband.sum())
    if m == 0 or v_rms_mm_s <= 0:
        return np.zeros(n)
    # per-bin velocity RMS c: total^2 = m c^2; acceleration = velocity * 2 pi f (m/s -> g)
    c = v_rms_mm_s / math.sqrt(m)
    phase = rng.uniform(0, 2 * math.pi, m)
    amp = c * SQRT2 * 1e-3 * 2.0 * math.pi * f[inband] / G  # amplitude in g
    spec[inband] = amp * np.exp(1j * phase) * n / 2.0
    return np.fft.irfft(spec, n)


def loose_mount(x: np.ndarray, fs_hz: float, f_mount_hz: float, q: float) -> np.ndarray:
    """A loosely mounted sensor: its mounted resonance drops to f_mount_hz (a second-order low-pass
    with quality factor q); what lies above is lost, what lies near it is exaggerated."""
    f = np.fft.rfftfreq(x.size, 1.0 / fs_hz)
    r = f / f_mount_hz
    h = 1.0 / (1.0 - r * r + 1j * r / q)
    return np.fft.irfft(np.fft.rfft(x) * h, x.size)
