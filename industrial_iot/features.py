"""On-device DSP for one vibration window: the arithmetic the C99 firmware ports step by step
(industrial_iot/firmware/iot_features.c; its step numbers are these).

Inputs: accel_g (n samples of acceleration in g from the accelerometer on a bearing housing, n a power
of two >= 256), fs_hz, shaft_hz (the shaft speed the drive or tachometer reports for the window) and
the bearing's geometry (`bearing`: n_balls, ball_d, pitch_d in the same length unit, contact_deg).
Python runs it in float64 with numpy's FFT; the C port keeps float32 samples and spectra, accumulates
sums in double and uses its own iterative radix-2 FFT; they agree within the tolerances stated in
tests/firmware/test_iot_features.py.

Window geometry (the device's, `FS_HZ`, `WINDOW_SAMPLES`): fs = 10 240 Hz, n = 8192 samples (0.8 s).
Why: the structural resonances that bearing impacts excite sit at 2-3.5 kHz, so the envelope band
(1.5-4 kHz) needs a Nyquist frequency above 4 kHz with room for the accelerometer's anti-alias roll-off;
n = 8192 is a power of two for the radix-2 FFT and gives a frequency resolution df = fs / n = 1.25 Hz,
fine enough to separate 0.5x from 1x at the slowest shaft (15 Hz -> 7.5 Hz apart, 6 bins) and the
defect lines of one bearing from each other. On a Cortex-M4 the window (32 KiB of float32) plus the
scratch (3 n floats, 96 KiB) fits a 192 KiB STM32F4-class part; -DIOT_WINDOW_SAMPLES=4096 halves both
(df = 2.5 Hz). Any power-of-two n and any fs whose Nyquist frequency is above the envelope band work.

Notation: FFT_N(y)[k] = sum_{i<N} y[i] exp(-2 pi j i k / N) (numpy's sign and scale); df = fs / n;
the periodic Hann window h_N[i] = 0.5 - 0.5 cos(2 pi i / N), for which sum h = N / 2 and
sum h^2 = 3 N / 8 exactly; G = 9.80665 m/s^2 per g. Constants are the module-level CAPITALS.

1. Validate. If any sample is NaN or infinite every feature but shaft_hz is NaN. x0 = x - mean(x).
2. Time domain: a_rms_g = sqrt(mean(x0^2)); peak_g = max |x0|; crest = peak_g / a_rms_g;
   kurtosis = mean(x0^4) / a_rms_g^4 (3 for Gaussian noise); crest and kurtosis are NaN if a_rms_g = 0.
3. Acceleration spectrum: X = FFT_n(x0 * h_n); for bins k = 1 .. n/2 - 1 the power of the component
   as a mean square, S[k] = 2 |X[k]|^2 / (n * 3n/8) (g^2; a sine of amplitude A on bin k gives
   S[k-1] + S[k] + S[k+1] = A^2 / 2). Bin k is at f_k = k df.
4. Band sets: the bins of a band [lo, hi] Hz are k = max(1, ceil(lo / df)) .. min(n/2 - 1, floor(hi / df)).
   Band RMS: sqrt(sum of the band's S). a_10_1k_g, a_1k_2k_g, a_2k_4k_g are the band RMS of S over
   BANDS_HZ (NaN if a band has no bin).
5. Velocity: Sv[k] = S[k] * (1000 G / (2 pi f_k))^2 (mm/s squared; integration in the frequency domain).
   v_rms_mm_s = sqrt(sum of Sv over V_BAND_HZ (10-1000 Hz)), the ISO 10816 measure.
6. Lines (amplitude of a spectral line near a target frequency f, tolerant of slip and of the reported
   speed's error): tol = max(TOL_BINS df, TOL_FRAC f); the line's bins are the band [f - tol, f + tol]
   of step 4 (with the spectrum's own last bin); its power P(f) = the sum of the spectrum over them
   (0 if the band has no bin). A feature made of several lines f_1 .. f_m is sqrt(sum P(f_i)) (NaN if
   no line has a bin). Orders of the velocity spectrum Sv at shaft speed fr = shaft_hz:
   v_0p5x_mm_s {0.5 fr}, v_1x_mm_s {fr}, v_2x_mm_s {2 fr}, v_3x_mm_s {3 fr}, v_halfx_mm_s
   {1.5, 2.5, 3.5 fr}, v_4_8x_mm_s {4, 5, 6, 7, 8 fr}. If shaft_hz is not a number > 0, every line
   feature (here and in step 8) is NaN.
7. Envelope (demodulation by a band-limited analytic signal, decimated in the frequency domain):
   X' = FFT_n(x0) (no window). Envelope band bins k_lo = ceil(ENV_BAND_HZ[0] / df),
   k_hi = floor(ENV_BAND_HZ[1] / df) (must satisfy 1 <= k_lo <= k_hi <= n/2 - 1), K = k_hi - k_lo + 1,
   M = the smallest power of two >= max(K, 4) (M <= n/2). B[q] = X'[k_lo + q] for q < K, 0 for K <= q < M;
   z[m] = (2 / n) sum_{q<M} B[q] exp(+2 pi j q m / M), m < M; env[m] = |z[m]|. This is exactly the
   Hilbert envelope of x0 band-passed to [k_lo, k_hi] (a brick wall over whole bins), sampled every
   n / M input samples, i.e. at M df Hz (2560 Hz for the device geometry, up to 1280 Hz of envelope
   spectrum at the same df). env_rms_g = sqrt(mean((env - mean(env))^2)).
8. Envelope spectrum: E = FFT_M((env - mean(env)) * h_M); Se[k] = 2 |E[k]|^2 / (M * 3M/8), k = 1 .. M/2 - 1
   (g^2 at f_k = k df). With the defect frequencies of `bearing_frequencies(shaft_hz, ...)`, lines as in
   step 6 on Se: env_1x_g {fr}, env_ftf_g {ftf}, env_bpfo_g {1, 2, 3 x bpfo}, env_bpfi_g
   {1, 2, 3 x bpfi}, env_bsf2_g {1, 2, 3 x 2 bsf} (a ball defect strikes both races once per ball
   revolution, so its impacts repeat at 2 bsf).
9. shaft_hz is passed through (NaN if not a number > 0).

`to_vector` turns Features into the tiny model's input: y = log10(value + VECTOR_EPS) for the features
with VECTOR_EPS > 0 (amplitudes span decades), y = value for the others (eps 0: shaft_hz); then
(y - VECTOR_CENTER) / VECTOR_SCALE, clipped to +-VECTOR_CLIP (8), NaN -> 0 (the centre value).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from industrial_iot.signals import Window

FS_HZ = 10240
WINDOW_SAMPLES = 8192
WINDOW_S = WINDOW_SAMPLES / FS_HZ
G = 9.80665
V_BAND_HZ = (10.0, 1000.0)
BANDS_HZ = ((10.0, 1000.0), (1000.0, 2000.0), (2000.0, 4000.0))
ENV_BAND_HZ = (1500.0, 4000.0)
TOL_BINS = 2.0
TOL_FRAC = 0.02
MIN_SAMPLES = 256
ENV_HARMONICS = 3

FEATURE_NAMES: tuple[str, ...] = (
    "shaft_hz", "v_rms_mm_s", "a_rms_g", "peak_g", "crest", "kurtosis",
    "v_0p5x_mm_s", "v_1x_mm_s", "v_2x_mm_s", "v_3x_mm_s", "v_halfx_mm_s", "v_4_8x_mm_s",
    "a_10_1k_g", "a_1k_2k_g", "a_2k_4k_g",
    "env_rms_g", "env_1x_g", "env_ftf_g", "env_bpfo_g", "env_bpfi_g", "env_bsf2_g",
)
#: orders (multiples of shaft speed) of each velocity line feature (step 6)
ORDERS: dict[str, tuple[float, ...]] = {
    "v_0p5x_mm_s": (0.5,), "v_1x_mm_s": (1.0,), "v_2x_mm_s": (2.0,), "v_3x_mm_s": (3.0,),
    "v_halfx_mm_s": (1.5, 2.5, 3.5), "v_4_8x_mm_s": (4.0, 5.0, 6.0, 7.0, 8.0),
}
# to_vector, per feature in FEATURE_NAMES order: log10 offset (0: linear), centre, scale
VECTOR_EPS = np.array([0.0, 0.01, 1e-4, 1e-4, 1e-3, 1e-3, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01,
                       1e-4, 1e-4, 1e-4, 1e-5, 1e-5, 1e-5, 1e-5, 1e-5, 1e-5])
VECTOR_CENTER = np.array([30.0, -0.1, -1.1, -0.5, 0.6, 0.5, -1.5, -0.2, -0.7, -1.0, -1.5, -1.0,
                          -1.1, -2.2, -1.9, -2.1, -3.1, -3.1, -2.8, -2.8, -2.8], dtype=np.float32)
VECTOR_SCALE = np.array([15.0, 0.5, 0.5, 0.5, 0.2, 0.3, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5,
                         0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5], dtype=np.float32)
VECTOR_CLIP = 8.0


@dataclass
class Features:
    """One window's features (FEATURE_NAMES order); NaN where not measurable."""

    shaft_hz: float
    v_rms_mm_s: float
    a_rms_g: float
    peak_g: float
    crest: float
    kurtosis: float
    v_0p5x_mm_s: float
    v_1x_mm_s: float
    v_2x_mm_s: float
    v_3x_mm_s: float
    v_halfx_mm_s: float
    v_4_8x_mm_s: float
    a_10_1k_g: float
    a_1k_2k_g: float
    a_2k_4k_g: float
    env_rms_g: float
    env_1x_g: float
    env_ftf_g: float
    env_bpfo_g: float
    env_bpfi_g: float
    env_bsf2_g: float

    def as_dict(self) -> dict[str, float | None]:
        """JSON-ready: NaN -> None."""
        return {f.name: (None if math.isnan(v := float(getattr(self, f.name))) else v) for f in fields(self)}


def bearing_frequencies(shaft_hz: float, n_balls: int, ball_d: float, pitch_d: float,
                        contact_deg: float = 0.0) -> dict[str, float]:
    """Defect frequencies (Hz) of a rolling-element bearing with a stationary outer race.

    With r = (ball_d / pitch_d) cos(contact angle) and shaft speed fr:
    bpfo = (n/2) fr (1 - r) (ball pass, outer race), bpfi = (n/2) fr (1 + r) (ball pass, inner race),
    ftf = (fr/2) (1 - r) (cage, fundamental train), bsf = (pitch_d / (2 ball_d)) fr (1 - r^2), the ball
    spin frequency: one revolution of a ball about its own axis relative to the cage (the convention of
    SKF's and the Case Western data's tables; a ball defect strikes the races at 2 bsf).
    """
    vals = {"shaft_hz": shaft_hz, "ball_d": ball_d, "pitch_d": pitch_d, "contact_deg": contact_deg}
    for name, v in vals.items():
        if not (isinstance(v, int | float | np.floating | np.integer) and math.isfinite(v)):
            raise ValueError(f"{name}: must be a finite number, got {v!r}")
    if isinstance(n_balls, bool) or not isinstance(n_balls, int | np.integer) or n_balls < 3:
        raise ValueError(f"n_balls: must be an integer >= 3, got {n_balls!r}")
    if shaft_hz < 0:
        raise ValueError(f"shaft_hz: must be >= 0, got {shaft_hz!r}")
    if not 0 < ball_d < pitch_d:
        raise ValueError(f"ball_d: must be > 0 and smaller than pitch_d ({pitch_d!r}), got {ball_d!r}")
    if not 0 <= contact_deg < 90:
        raise ValueError(f"contact_deg: must be in [0, 90), got {contact_deg!r}")
    r = ball_d / pitch_d * math.cos(math.radians(contact_deg))
    fr = float(shaft_hz)
    return {"bpfo": 0.5 * n_balls * fr * (1.0 - r), "bpfi": 0.5 * n_balls * fr * (1.0 + r),
            "bsf": pitch_d / (2.0 * ball_d) * fr * (1.0 - r * r), "ftf": 0.5 * fr * (1.0 - r)}


@lru_cache(maxsize=8)
def _hann(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2.0 * math.pi * np.arange(n) / n)


def band_bins(lo_hz: float, hi_hz: float, df_hz: float, k_max: int) -> tuple[int, int]:
    """Step 4: first and last bin of [lo_hz, hi_hz] (first > last when the band holds no bin)."""
    return max(1, math.ceil(lo_hz / df_hz)), min(k_max, math.floor(hi_hz / df_hz))


def _band_rms(s: np.ndarray, lo_hz: float, hi_hz: float, df_hz: float) -> float:
    k0, k1 = band_bins(lo_hz, hi_hz, df_hz, s.size - 1)
    return math.sqrt(float(np.sum(s[k0:k1 + 1]))) if k0 <= k1 else math.nan


def _lines(s: np.ndarray, targets_hz: list[float], df_hz: float) -> float:
    """Step 6: sqrt of the summed line powers of `s` (index = bin, s[0] unused) at the targets."""
    total, hit = 0.0, False
    for f in targets_hz:
        tol = max(TOL_BINS * df_hz, TOL_FRAC * f)
        k0, k1 = band_bins(f - tol, f + tol, df_hz, s.size - 1)
        if k0 <= k1:
            total += float(np.sum(s[k0:k1 + 1]))
            hit = True
    return math.sqrt(total) if hit else math.nan


def _check(accel_g: Any, fs_hz: Any, shaft_hz: Any) -> tuple[np.ndarray, float, float]:
    if isinstance(fs_hz, bool) or not (isinstance(fs_hz, int | float | np.integer | np.floating)
                                       and math.isfinite(fs_hz) and fs_hz > 0):
        raise ValueError(f"fs_hz: must be a finite number > 0, got {fs_hz!r}")
    x = np.asarray(accel_g, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"accel_g: must be 1-D, got shape {x.shape}")
    if x.size < MIN_SAMPLES or x.size & (x.size - 1):
        raise ValueError(f"accel_g: length must be a power of two >= {MIN_SAMPLES}, got {x.size}")
    try:
        fr = float(shaft_hz)
    except (TypeError, ValueError):
        raise ValueError(f"shaft_hz: must be a number, got {shaft_hz!r}") from None
    return x, float(fs_hz), (fr if math.isfinite(fr) and fr > 0 else math.nan)


def envelope_bins(n: int, fs_hz: float) -> tuple[int, int, int]:
    """Step 7: (k_lo, k_hi, M) of the envelope band for a window of n samples at fs_hz."""
    df = fs_hz / n
    k_lo, k_hi = math.ceil(ENV_BAND_HZ[0] / df), math.floor(ENV_BAND_HZ[1] / df)
    if not 1 <= k_lo <= k_hi <= n // 2 - 1:
        raise ValueError(f"fs_hz: the envelope band {ENV_BAND_HZ} Hz must lie below the Nyquist frequency "
                         f"{fs_hz / 2} Hz with n = {n}")
    m = 4
    while m < k_hi - k_lo + 1:
        m *= 2
    return k_lo, k_hi, m


def envelope(x0: np.ndarray, fs_hz: float) -> np.ndarray:
    """Step 7: the band-limited Hilbert envelope (g) of a mean-free window, M samples at M fs / n Hz."""
    n = x0.size
    k_lo, k_hi, m = envelope_bins(n, fs_hz)
    b = np.zeros(m, dtype=np.complex128)
    b[: k_hi - k_lo + 1] = np.fft.fft(x0)[k_lo: k_hi + 1]
    return np.abs(np.fft.ifft(b) * (2.0 * m / n))


def envelope_spectrum(env: np.ndarray) -> np.ndarray:
    """Step 8: Se[k] (g^2), k = 0 .. M/2 - 1 (Se[0] = 0), at k df."""
    m = env.size
    e = np.fft.fft((env - env.mean()) * _hann(m))[: m // 2]
    se = 2.0 * np.abs(e) ** 2 / (m * 3.0 * m / 8.0)
    se[0] = 0.0
    return se


def accel_spectrum(x0: np.ndarray) -> np.ndarray:
    """Step 3: S[k] (g^2), k = 0 .. n/2 - 1 (S[0] = 0)."""
    n = x0.size
    s = 2.0 * np.abs(np.fft.fft(x0 * _hann(n))[: n // 2]) ** 2 / (n * 3.0 * n / 8.0)
    s[0] = 0.0
    return s


def velocity_spectrum(s: np.ndarray, df_hz: float) -> np.ndarray:
    """Step 5: Sv[k] ((mm/s)^2) from S[k]."""
    f = np.arange(s.size) * df_hz
    f[0] = 1.0
    sv = s * (1000.0 * G / (2.0 * math.pi * f)) ** 2
    sv[0] = 0.0
    return sv


def extract(accel_g: np.ndarray, fs_hz: float, shaft_hz: float, bearing: dict) -> Features:
    """All features of one window (steps 1-9 of the module docstring). `bearing`: a mapping with
    n_balls, ball_d, pitch_d and optionally contact_deg (the arguments of `bearing_frequencies`)."""
    x, fs, fr = _check(accel_g, fs_hz, shaft_hz)
    try:
        geo = (int(bearing["n_balls"]), float(bearing["ball_d"]), float(bearing["pitch_d"]),
               float(bearing.get("contact_deg", 0.0)))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"bearing: needs n_balls, ball_d, pitch_d (and optionally contact_deg): {e!r}") from None
    defects = bearing_frequencies(1.0, *geo)  # per unit shaft speed (also validates the geometry)
    n = x.size
    envelope_bins(n, fs)  # validates the geometry before any early return
    nan = math.nan
    vals = dict.fromkeys(FEATURE_NAMES, nan)
    vals["shaft_hz"] = fr
    if not np.all(np.isfinite(x)):
        return Features(**vals)
    df = fs / n
    x0 = x - x.mean()
    rms = math.sqrt(float(np.mean(x0 * x0)))
    vals["a_rms_g"] = rms
    vals["peak_g"] = float(np.max(np.abs(x0)))
    if rms > 0:
        vals["crest"] = vals["peak_g"] / rms
        vals["kurtosis"] = float(np.mean(x0**4)) / rms**4
    s = accel_spectrum(x0)
    for name, (lo, hi) in zip(("a_10_1k_g", "a_1k_2k_g", "a_2k_4k_g"), BANDS_HZ, strict=True):
        vals[name] = _band_rms(s, lo, hi, df)
    sv = velocity_spectrum(s, df)
    vals["v_rms_mm_s"] = _band_rms(sv, *V_BAND_HZ, df)
    env = envelope(x0, fs)
    vals["env_rms_g"] = float(np.std(env))
    if not math.isnan(fr):
        for name, orders in ORDERS.items():
            vals[name] = _lines(sv, [o * fr for o in orders], df)
        se = envelope_spectrum(env)
        h = range(1, ENV_HARMONICS + 1)
        vals["env_1x_g"] = _lines(se, [fr], df)
        vals["env_ftf_g"] = _lines(se, [defects["ftf"] * fr], df)
        vals["env_bpfo_g"] = _lines(se, [i * defects["bpfo"] * fr for i in h], df)
        vals["env_bpfi_g"] = _lines(se, [i * defects["bpfi"] * fr for i in h], df)
        vals["env_bsf2_g"] = _lines(se, [i * 2.0 * defects["bsf"] * fr for i in h], df)
    return Features(**vals)


def extract_window(w: Window) -> Features:
    """`extract` applied to an `industrial_iot.signals.Window`."""
    return extract(w.accel_g, w.fs_hz, w.shaft_hz, w.bearing)


def to_vector(f: Features) -> np.ndarray:
    """float32[len(FEATURE_NAMES)]: log10(value + VECTOR_EPS) where VECTOR_EPS > 0, then
    (y - VECTOR_CENTER) / VECTOR_SCALE, clipped to +-VECTOR_CLIP, NaN -> 0."""
    x = np.array([getattr(f, n) for n in FEATURE_NAMES], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where(VECTOR_EPS > 0, np.log10(np.maximum(x, 0.0) + VECTOR_EPS), x)
        v = np.clip((y - VECTOR_CENTER) / VECTOR_SCALE, -VECTOR_CLIP, VECTOR_CLIP)
    return np.where(np.isnan(v), 0.0, v).astype(np.float32)
