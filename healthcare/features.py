"""On-device DSP for one healthcare window: the arithmetic the C99 firmware ports step by step.

Inputs: ppg_red, ppg_ir (n samples, ADC counts, blood-volume polarity unless ``polarity`` = -1), acc_g
(n x 3, g), temp_c, fs_hz. Everything below uses only: first-order IIR filters run sample by sample, centred moving
averages, means / standard deviations, and a DFT evaluated at a fixed grid of candidate frequencies.
Python runs it in float64; the float32 C port matches within the tolerances stated in its tests.

Step by step (constants are the module-level names in CAPITALS):

1. DC. dc_ir = mean(ppg_ir), dc_red = mean(ppg_red). If dc_ir < OFF_WRIST_DC (10 000 counts, for the
   device's 18-bit front end) the device is off the wrist: HR, HRV, SpO2, RR and temperature are NaN,
   quality is 0 (motion is still computed).
2. Band-pass each channel (then times ``polarity``: 1 for a PPG that rises with blood volume, the
   device's front end; -1 for raw light intensity, which falls with it; the PPG's own polarity cannot be
   told reliably from its shape, so it is the device's documented setting, firmware --ppg-polarity):
   two exponential moving averages (EMA) started at the first sample,
   ``e[0] = x[0];  e[i] = e[i-1] + a * (x[i] - e[i-1])`` with ``a = 1 - exp(-2 pi fc / fs_hz)``,
   fc = BP_HIGH_HZ (4.0) for the fast one and BP_LOW_HZ (0.5) for the slow one; bp = fast - slow.
3. Beats (on the IR channel; `beat_times_s`): an adaptive-threshold detector on the upstroke slope, with
   a refractory period. d[0] = 0, d[i] = bp[i] - bp[i-1]; z[i] = max(d[i], 0)^2; ma_peak = centred moving
   average of z over W1 = 2 round(0.055 fs) + 1 samples, ma_beat = the same over W2 = 2 round(0.333 fs)
   + 1 samples (near the edges: the mean of the samples available); threshold = ma_beat + BETA (0.02)
   * mean(z). Each maximal run of samples with ma_peak > threshold at least W1 samples long is an
   upstroke; u = index of its largest d (first on ties). Its systolic peak p is the first index in
   [max(u, 1), min(u + S, n - 1)) with bp[p] >= bp[p+1], S = round(PEAK_SEARCH_S (0.3) * fs) (no such
   index: no beat). Pulse amplitude a = bp[p] - min(bp[max(0, u - S) .. u]). With the candidates'
   amplitudes sorted ascending, ref = sorted[(3 (count - 1)) // 4] (integer division); candidates with
   a < PEAK_FRAC (0.35) * ref are dropped (diastolic waves, noise). Going forward in time, a candidate
   closer than REFRACTORY_S (0.3 s, in samples: p - p_prev < 0.3 fs) to the previous kept beat replaces
   it only if its amplitude is larger, else it is dropped; one closer than D = max(0.3 fs,
   min(REFRACTORY_FRAC (0.65) K, REFRACTORY_MAX_S (0.6) fs)) samples (K: the beat period of step 3a, 0
   if none) whose height bp[p] is below DIASTOLIC_HEIGHT (0.45) x bp[p_prev] is the previous beat's
   diastolic wave and is dropped (a premature beat stands higher: it is kept).
   Beat time = (p + o) / fs with the parabolic offset o = 0.5 (y[-1] - y[+1]) / (y[-1] - 2 y[0] + y[+1])
   of the bp samples around p (o = 0 when the denominator is >= 0), clipped to +-0.5.
3a. Beat period K (samples): r(k) = sum_i bp[i] bp[i+k] (float64, via the FFT) for k from max(1, ceil(IBI_MIN_S fs))
   to min(n - 1, floor(IBI_MAX_S fs)) (K = 0 if that is fewer than 3 lags). Peaks: the lags with both
   neighbours in range, r[k-1] < r[k] >= r[k+1] and r[k] > 0 (none: K = 0). K = the shortest peak lag with
   r >= PERIOD_FRAC (0.8) x the largest peak's r (a beat train correlates at twice its period too, often
   as much when the pulse alternates in size).
4. Intervals ibi = diff(beat times). Valid: IBI_MIN_S (0.27) <= ibi <= IBI_MAX_S (2.0). Fewer than
   MIN_BEATS (5) beats or fewer than MIN_BEATS - 1 valid intervals: HR, HRV, SpO2, RR are NaN and
   quality is 0. Otherwise hr_bpm = 60 / mean(valid ibi); hrv_sdnn_ms = 1000 * std(valid ibi, ddof=1);
   hrv_rmssd_ms = 1000 * sqrt(mean((ibi[k+1] - ibi[k])^2)) over pairs with both intervals valid (NaN if
   there are none).
5. SpO2: for every beat k >= 1 with a valid preceding interval, per channel
   ac_k = bp[p_k] - min(bp[p_{k-1} .. p_k]) at the IR beat indices p; AC = mean of ac_k. If
   AC_ir < MIN_PERFUSION (0.0005) * dc_ir there is no pulsatile signal (the beats are noise): as in
   step 4, HR, HRV, SpO2, RR are NaN and quality is 0. Otherwise
   R = (AC_red / dc_red) / (AC_ir / dc_ir); spo2_pct = min(100, max(0, 110 - 25 R)).
6. Respiratory rate (spectral fusion of baseline wander and amplitude modulation):
   L = max(1, round(median(valid ibi) * fs)); bw = centred moving average of ppg_ir over L samples
   (edges as above), minus its least-squares straight line, times the Hann window
   h[i] = 0.5 - 0.5 cos(2 pi i / (n - 1)). am = the ac_k of step 5 (IR) minus their mean, times
   0.5 - 0.5 cos(2 pi (t_k - t_0) / (t_last - t_0)) at the beat times t_k. For every candidate
   f in RR_GRID_BPM (6.0, 6.5, ..., 36.0 per minute): P_bw(f) = |sum_i bw[i] exp(-j 2 pi f i / (60 fs))|^2,
   P_am(f) = |sum_k am[k] exp(-j 2 pi f t_k / 60)|^2; S = P_bw / max(P_bw) + P_am / max(P_am) (a term
   whose max is 0 is dropped). rr_bpm = the grid frequency of max S, refined by the parabolic offset
   of step 3 on S (times the 0.5 grid step) when the max is not at an end of the grid.
7. motion_g = population std (ddof=0) of |acc| = sqrt(x^2 + y^2 + z^2) (NaN if acc has NaN).
8. quality = q_ibi * q_corr * q_motion, each 0..1:
   q_ibi = share of intervals that are valid and within 0.5..1.5 x median(valid ibi);
   q_corr = max(0, mean Pearson correlation of each beat's segment of IR bp with the mean segment),
   the segment starting round(0.25 m fs) samples before the beat and round(0.6 m fs) samples long
   (m = median valid ibi), beats whose segment leaves the window skipped, 0 if fewer than 3 remain;
   q_motion = clip((MOTION_BAD_G - motion_g) / (MOTION_BAD_G - MOTION_OK_G), 0, 1) with 0.1 g / 0.3 g
   (1 when motion_g is NaN).
9. temp_c is passed through (NaN when off the wrist).
10. HR quality (`Features.hr_quality`, the message's ``hr_quality``): "good" when HR was measured (step 4)
   and its beats pass every check below, else "low"; a low window's message carries HR and HRV as null
   (`Features.message_vitals`: HR withheld rather than a wrong rate), while the tiny model's input
   (`to_vector`) keeps them (its "irregular" class needs irregular windows). With m the median valid
   interval: q_ibi >= HR_Q_IBI_MIN (0.94); q_corr >= HR_Q_CORR_MIN (0.86, Orphanidou et al. 2015's
   template threshold); the beat period K of step 3a found and |60 fs / K / hr_bpm - 1| <=
   HR_PERIOD_TOL (0.15: two estimates of the rate agree, after Li & Clifford 2012); no interval longer
   than HR_GAP_MAX (1.5) x m (a missed beat); neither the first beat's time nor the time from the last
   beat to the window's end (n / fs) longer than HR_EDGE_MAX (2.0) x m (a dropout at an edge); q_motion > 0
   (the accelerometer's motion_g below MOTION_BAD_G: a periodic movement makes regular, alike "beats" at its
   own rate, which no check on the beats themselves can tell from a pulse).
   Measured on real recordings by ``python -m healthcare.ppg_eval`` (docs/healthcare_ppg.md).

`to_vector` turns Features into the tiny model's input: (value - VECTOR_CENTER) / VECTOR_SCALE per
feature, clipped to +-VECTOR_CLIP (8), NaN -> 0 (the centre value; quality 0 tells the model why).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from scipy.signal import lfilter

from healthcare._ppg import spo2_from_ratio

if TYPE_CHECKING:
    from healthcare.signals import Window

FEATURE_NAMES: tuple[str, ...] = ("hr_bpm", "hrv_rmssd_ms", "hrv_sdnn_ms", "spo2_pct", "rr_bpm", "temp_c",
                                  "motion_g", "quality")
OFF_WRIST_DC = 10_000.0
BP_HIGH_HZ = 4.0
BP_LOW_HZ = 0.5
BETA = 0.02
REFRACTORY_S = 0.3
REFRACTORY_FRAC = 0.65
REFRACTORY_MAX_S = 0.6
PERIOD_FRAC = 0.8
DIASTOLIC_HEIGHT = 0.45
PEAK_SEARCH_S = 0.3
PEAK_FRAC = 0.35
IBI_MIN_S = 0.27
IBI_MAX_S = 2.0
MIN_BEATS = 5
MIN_PERFUSION = 0.0005
MIN_WINDOW_S = 8.0
RR_GRID_BPM = np.arange(6.0, 36.0 + 1e-9, 0.5)
MOTION_OK_G = 0.1
MOTION_BAD_G = 0.3
HR_Q_IBI_MIN = 0.94
HR_Q_CORR_MIN = 0.86
HR_PERIOD_TOL = 0.15
HR_GAP_MAX = 1.5
HR_EDGE_MAX = 2.0
#: the vitals a low-quality window's message withholds (they come from the beat intervals)
HR_VITALS: tuple[str, ...] = ("hr_bpm", "hrv_rmssd_ms", "hrv_sdnn_ms")
VECTOR_CENTER = np.array([75.0, 40.0, 50.0, 96.0, 16.0, 36.8, 0.05, 0.5], dtype=np.float32)
VECTOR_SCALE = np.array([25.0, 40.0, 40.0, 4.0, 6.0, 1.0, 0.1, 0.5], dtype=np.float32)
VECTOR_CLIP = 8.0


@dataclass
class Features:
    """One window's features; NaN where not measurable."""

    hr_bpm: float
    hrv_rmssd_ms: float
    hrv_sdnn_ms: float
    spo2_pct: float
    rr_bpm: float
    temp_c: float
    motion_g: float
    quality: float
    hr_quality: str = "low"  #: step 10: "good" (HR reported) or "low" (HR withheld); not a model input

    def as_dict(self) -> dict[str, float | None]:
        """The FEATURE_NAMES, JSON-ready: NaN -> None."""
        return {name: (None if math.isnan(v := float(getattr(self, name))) else v) for name in FEATURE_NAMES}

    def message_vitals(self) -> dict[str, float | None]:
        """What the ``inference`` message carries: `as_dict` with HR_VITALS None when hr_quality is low."""
        d = self.as_dict()
        if self.hr_quality != "good":
            d.update(dict.fromkeys(HR_VITALS))
        return d


def ema(x: np.ndarray, fc_hz: float, fs_hz: float) -> np.ndarray:
    """First-order IIR low-pass, state started at x[0] (step 2)."""
    a = 1.0 - math.exp(-2.0 * math.pi * fc_hz / fs_hz)
    return lfilter([a], [1.0, a - 1.0], x, zi=[(1.0 - a) * x[0]])[0]


def bandpass(x: np.ndarray, fs_hz: float) -> np.ndarray:
    return ema(x, BP_HIGH_HZ, fs_hz) - ema(x, BP_LOW_HZ, fs_hz)


def centred_mean(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over `width` (odd) samples; near the edges, the mean of those available."""
    h = width // 2
    c = np.concatenate([[0.0], np.cumsum(x)])
    i = np.arange(x.size)
    lo = np.maximum(i - h, 0)
    hi = np.minimum(i + h + 1, x.size)
    return (c[hi] - c[lo]) / (hi - lo)


def _parabolic(y_m: float, y_0: float, y_p: float) -> float:
    den = y_m - 2.0 * y_0 + y_p
    if den >= 0.0:
        return 0.0
    return min(0.5, max(-0.5, 0.5 * (y_m - y_p) / den))


def period_lag(bp: np.ndarray, fs_hz: float) -> int:
    """Step 3a: the beat period of a band-passed PPG in samples (0: none found); see the module docstring."""
    n = bp.size
    k_lo = max(1, int(math.ceil(IBI_MIN_S * fs_hz)))
    k_hi = min(n - 1, int(math.floor(IBI_MAX_S * fs_hz)))
    if k_hi - k_lo < 2:
        return 0
    spec = np.fft.rfft(bp, 2 * n)  # r(k) for every lag at once (the C port sums directly)
    r = np.fft.irfft(spec.real ** 2 + spec.imag ** 2, 2 * n)[k_lo: k_hi + 1]
    peak = np.flatnonzero((r[1:-1] > r[:-2]) & (r[1:-1] >= r[2:]) & (r[1:-1] > 0.0)) + 1
    if peak.size == 0:
        return 0
    best = float(r[peak].max())
    return k_lo + int(peak[np.flatnonzero(r[peak] >= PERIOD_FRAC * best)[0]])


def _detect(bp: np.ndarray, fs_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Step 3: beat sample indices and sub-sample beat times (s) of a band-passed PPG."""
    n = bp.size
    d = np.concatenate([[0.0], np.diff(bp)])
    z = np.maximum(d, 0.0) ** 2
    w1 = 2 * int(round(0.055 * fs_hz)) + 1
    w2 = 2 * int(round(0.333 * fs_hz)) + 1
    thr = centred_mean(z, w2) + BETA * float(np.mean(z))
    above = np.concatenate([[False], centred_mean(z, w1) > thr, [False]])
    edges = np.flatnonzero(above[1:] != above[:-1])
    search = int(round(PEAK_SEARCH_S * fs_hz))
    cand: list[tuple[int, float]] = []  # (peak index, pulse amplitude from the preceding foot)
    for s, e in zip(edges[0::2], edges[1::2], strict=True):
        if e - s < w1:
            continue
        u = s + int(np.argmax(d[s:e]))
        for p in range(max(u, 1), min(u + search, n - 1)):
            if bp[p] >= bp[p + 1]:
                cand.append((p, float(bp[p] - bp[max(0, u - search): u + 1].min())))
                break
    if not cand:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    amps = sorted(a for _, a in cand)
    min_amp = PEAK_FRAC * amps[(3 * (len(amps) - 1)) // 4]
    refractory = REFRACTORY_S * fs_hz
    diastolic = max(refractory, min(REFRACTORY_FRAC * period_lag(bp, fs_hz), REFRACTORY_MAX_S * fs_hz))
    kept: list[int] = []
    kept_amp: list[float] = []
    for p, a in cand:
        if a < min_amp:
            continue
        if kept and p - kept[-1] < refractory:
            if a > kept_amp[-1]:
                kept[-1], kept_amp[-1] = p, a
            continue
        if kept and p - kept[-1] < diastolic and bp[p] < DIASTOLIC_HEIGHT * bp[kept[-1]]:
            continue  # the diastolic wave of the previous beat
        kept.append(p)
        kept_amp.append(a)
    idx = np.asarray(kept, dtype=np.int64)
    times = np.array([(p + _parabolic(bp[p - 1], bp[p], bp[p + 1])) / fs_hz for p in kept])
    return idx, times


def _check_fs(fs_hz: float) -> float:
    if not (isinstance(fs_hz, int | float) and math.isfinite(fs_hz) and fs_hz > 0):
        raise ValueError(f"fs_hz: must be a finite number > 0, got {fs_hz!r}")
    return float(fs_hz)


def _check_polarity(polarity: int) -> int:
    if isinstance(polarity, bool) or polarity not in (1, -1):
        raise ValueError(f"polarity: must be 1 (the signal rises with blood volume) or -1 (it falls: raw "
                         f"light intensity), got {polarity!r}")
    return int(polarity)


def beat_times_s(ppg: np.ndarray, fs_hz: float, polarity: int = 1) -> np.ndarray:
    """Systolic peak times (s from the first sample) of one PPG channel (band-pass + step 3); ``polarity``
    as in `extract`."""
    fs = _check_fs(fs_hz)
    sign = _check_polarity(polarity)
    x = np.asarray(ppg, dtype=np.float64)
    if x.ndim != 1 or x.size < 3:
        raise ValueError(f"ppg: need a 1-D array of at least 3 samples, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("ppg: contains NaN or infinite samples")
    return _detect(sign * bandpass(x, fs), fs)[1]


@lru_cache(maxsize=16)
def _dft_basis(n: int, fs_hz: float) -> tuple[np.ndarray, np.ndarray]:
    arg = 2.0 * math.pi * np.outer(RR_GRID_BPM / 60.0, np.arange(n) / fs_hz)
    return np.cos(arg), np.sin(arg)


def _hann(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2.0 * math.pi * np.arange(n) / (n - 1))


def _resp_rate(ir: np.ndarray, fs_hz: float, m_ibi: float, t_beats: np.ndarray, am: np.ndarray) -> float:
    """Step 6."""
    n = ir.size
    bw = centred_mean(ir, max(1, int(round(m_ibi * fs_hz))))
    i = np.arange(n, dtype=np.float64)
    slope, icept = np.polyfit(i, bw, 1)
    bw = (bw - (slope * i + icept)) * _hann(n)
    cos_b, sin_b = _dft_basis(n, fs_hz)
    score = np.zeros(RR_GRID_BPM.size)
    p_bw = (cos_b @ bw) ** 2 + (sin_b @ bw) ** 2
    if p_bw.max() > 0:
        score += p_bw / p_bw.max()
    if am.size >= 4 and t_beats[-1] > t_beats[0]:
        a = (am - am.mean()) * (0.5 - 0.5 * np.cos(2 * math.pi * (t_beats - t_beats[0]) / (t_beats[-1] - t_beats[0])))
        arg = 2.0 * math.pi * np.outer(RR_GRID_BPM / 60.0, t_beats)
        p_am = (np.cos(arg) @ a) ** 2 + (np.sin(arg) @ a) ** 2
        if p_am.max() > 0:
            score += p_am / p_am.max()
    k = int(np.argmax(score))
    step = float(RR_GRID_BPM[1] - RR_GRID_BPM[0])
    if 0 < k < score.size - 1:
        return float(RR_GRID_BPM[k] + step * _parabolic(score[k - 1], score[k], score[k + 1]))
    return float(RR_GRID_BPM[k])


def _segment_corr(bp: np.ndarray, idx: np.ndarray, m_ibi: float, fs_hz: float) -> float:
    pre = int(round(0.25 * m_ibi * fs_hz))
    length = int(round(0.6 * m_ibi * fs_hz))
    starts = idx - pre
    ok = (starts >= 0) & (starts + length <= bp.size)
    if ok.sum() < 3 or length < 3:
        return 0.0
    seg = bp[starts[ok][:, None] + np.arange(length)[None, :]]
    seg = seg - seg.mean(axis=1, keepdims=True)
    tmpl = seg.mean(axis=0)
    tmpl = tmpl - tmpl.mean()
    den = np.sqrt((seg**2).sum(axis=1) * (tmpl**2).sum())
    r = np.where(den > 0, (seg @ tmpl) / np.where(den > 0, den, 1.0), 0.0)
    return max(0.0, float(r.mean()))


def _validate(ppg_red, ppg_ir, acc_g, temp_c, fs_hz) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    fs = _check_fs(fs_hz)
    red = np.asarray(ppg_red, dtype=np.float64)
    ir = np.asarray(ppg_ir, dtype=np.float64)
    acc = np.asarray(acc_g, dtype=np.float64)
    if ir.ndim != 1:
        raise ValueError(f"ppg_ir: must be 1-D, got shape {ir.shape}")
    if red.shape != ir.shape:
        raise ValueError(f"ppg_red: shape {red.shape} differs from ppg_ir {ir.shape}")
    if acc.shape != (ir.size, 3):
        raise ValueError(f"acc_g: must have shape ({ir.size}, 3), got {acc.shape}")
    if ir.size < MIN_WINDOW_S * fs:
        raise ValueError(f"ppg_ir: too short ({ir.size} samples < {MIN_WINDOW_S} s at {fs} Hz)")
    for name, x in (("ppg_red", red), ("ppg_ir", ir)):
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name}: contains NaN or infinite samples")
    try:
        temp = float(temp_c)
    except (TypeError, ValueError):
        raise ValueError(f"temp_c: must be a number, got {temp_c!r}") from None
    return red, ir, acc, temp, fs


def extract(ppg_red: np.ndarray, ppg_ir: np.ndarray, acc_g: np.ndarray, temp_c: float, fs_hz: float,
            polarity: int = 1) -> Features:
    """All features of one window (steps 1-9 of the module docstring). ``polarity``: 1 if the PPG rises with
    blood volume (the device's front end, the simulator), -1 if it falls (raw light intensity, e.g. an
    unconditioned photodiode); the band-passed signals are multiplied by it (step 2)."""
    sign = _check_polarity(polarity)
    red, ir, acc, temp, fs = _validate(ppg_red, ppg_ir, acc_g, temp_c, fs_hz)
    nan = float("nan")
    mag = np.sqrt(np.sum(acc * acc, axis=1))
    motion = float(np.std(mag)) if np.all(np.isfinite(mag)) else nan
    q_motion = 1.0 if math.isnan(motion) else min(1.0, max(0.0, (MOTION_BAD_G - motion) / (MOTION_BAD_G - MOTION_OK_G)))
    dc_ir, dc_red = float(np.mean(ir)), float(np.mean(red))
    if not dc_ir >= OFF_WRIST_DC:
        return Features(nan, nan, nan, nan, nan, nan, motion, 0.0)
    temp = temp if math.isfinite(temp) else nan
    bp_ir, bp_red = sign * bandpass(ir, fs), sign * bandpass(red, fs)
    idx, t = _detect(bp_ir, fs)
    ibi = np.diff(t)
    valid = (ibi >= IBI_MIN_S) & (ibi <= IBI_MAX_S)
    if idx.size < MIN_BEATS or valid.sum() < MIN_BEATS - 1:
        return Features(nan, nan, nan, nan, nan, temp, motion, 0.0)
    ks = np.flatnonzero(valid) + 1  # beats with a valid preceding interval (step 5)
    ac_ir = np.array([bp_ir[idx[k]] - bp_ir[idx[k - 1]: idx[k] + 1].min() for k in ks])
    if not float(ac_ir.mean()) >= MIN_PERFUSION * dc_ir:  # no pulsatile signal: noise beats
        return Features(nan, nan, nan, nan, nan, temp, motion, 0.0)
    good = ibi[valid]
    hr = 60.0 / float(good.mean())
    sdnn = 1000.0 * float(np.std(good, ddof=1))
    pair = valid[1:] & valid[:-1]
    rmssd = 1000.0 * math.sqrt(float(np.mean(np.diff(ibi)[pair] ** 2))) if pair.any() else nan
    ac_red = np.array([bp_red[idx[k]] - bp_red[idx[k - 1]: idx[k] + 1].min() for k in ks])
    ratio = (ac_red.mean() / dc_red) / (ac_ir.mean() / dc_ir) if dc_red > 0 else nan
    spo2 = min(100.0, max(0.0, float(spo2_from_ratio(ratio)))) if math.isfinite(ratio) else nan
    m_ibi = float(np.median(good))
    rr = _resp_rate(ir, fs, m_ibi, t[ks], ac_ir)
    q_ibi = float(np.mean(valid & (ibi >= 0.5 * m_ibi) & (ibi <= 1.5 * m_ibi)))
    q_corr = _segment_corr(bp_ir, idx, m_ibi, fs)
    hr_ok = q_motion > 0.0 and hr_good(hr, q_ibi, q_corr, period_lag(bp_ir, fs), fs, ibi, t[0], ir.size / fs - t[-1],
                                       m_ibi)
    return Features(hr, rmssd, sdnn, spo2, rr, temp, motion, q_ibi * q_corr * q_motion, "good" if hr_ok else "low")


def hr_good(hr_bpm: float, q_ibi: float, q_corr: float, period: int, fs_hz: float, ibi: np.ndarray,
            lead_s: float, tail_s: float, m_ibi: float) -> bool:
    """Step 10 but its motion check: the window's beats give a reportable HR. ``period``: K of step 3a
    (samples, 0: none); ``ibi``: every interval; ``lead_s`` / ``tail_s``: the time before the first beat and
    after the last."""
    return (q_ibi >= HR_Q_IBI_MIN and q_corr >= HR_Q_CORR_MIN and period > 0
            and abs(60.0 * fs_hz / period / hr_bpm - 1.0) <= HR_PERIOD_TOL
            and float(np.max(ibi)) <= HR_GAP_MAX * m_ibi and max(lead_s, tail_s) <= HR_EDGE_MAX * m_ibi)


def extract_window(w: Window) -> Features:
    """`extract` applied to a `healthcare.signals.Window`."""
    return extract(w.ppg_red, w.ppg_ir, w.acc_g, w.temp_c, w.fs_hz)


def to_vector(f: Features) -> np.ndarray:
    """float32[len(FEATURE_NAMES)]: (value - VECTOR_CENTER) / VECTOR_SCALE, clipped to +-VECTOR_CLIP,
    NaN -> 0."""
    x = np.array([getattr(f, n) for n in FEATURE_NAMES], dtype=np.float32)
    v = np.clip((x - VECTOR_CENTER) / VECTOR_SCALE, -VECTOR_CLIP, VECTOR_CLIP)
    return np.where(np.isnan(v), np.float32(0.0), v).astype(np.float32)
