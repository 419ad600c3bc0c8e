"""Private PPG helpers shared by the simulator and the DSP: SpO2 calibration and beat synthesis.

SpO2 calibration (used by both sides, so the simulator and `features` agree):

    R = (AC_red / DC_red) / (AC_ir / DC_ir)        (ratio of ratios)
    SpO2 [%] = SPO2_A - SPO2_B * R = 110 - 25 R     (the classic linear empirical fit)

so SpO2 97 % <-> R = 0.52 and SpO2 85 % <-> R = 1.0.
"""

from __future__ import annotations

import numpy as np

SPO2_A = 110.0
SPO2_B = 25.0
SYSTOLE_PHASE = 0.35  # share of the template beat taken by systole (foot to past the systolic peak)
TEMPLATE_POINTS = 101  # samples of one template beat over phase 0..1 (both ends are the foot, value 0)


def spo2_from_ratio(r: float | np.ndarray) -> float | np.ndarray:
    """SpO2 in percent from the ratio of ratios R (no clipping)."""
    return SPO2_A - SPO2_B * r


def ratio_from_spo2(spo2_pct: float | np.ndarray) -> float | np.ndarray:
    """Inverse of `spo2_from_ratio`: the R a given SpO2 produces."""
    return (SPO2_A - spo2_pct) / SPO2_B


def template_beat(heart_rate_bpm: float, seed: int) -> np.ndarray:
    """One PPG beat (foot to foot) from neurokit2's simulator, normalised to 0..1 over TEMPLATE_POINTS.

    Called once per simulated patient; neurokit2 is imported lazily because it is slow to import.
    """
    import neurokit2 as nk

    fs = 250
    sig = np.asarray(
        nk.ppg_simulate(duration=6, sampling_rate=fs, heart_rate=heart_rate_bpm, frequency_modulation=0.0,
                        ibi_randomness=0.0, drift=0.0, motion_amplitude=0.0, powerline_amplitude=0.0,
                        random_state=seed),
        dtype=np.float64,
    )
    lo, hi = float(sig.min()), float(sig.max())
    mid = sig[1:-1]
    is_min = (mid < sig[:-2]) & (mid <= sig[2:]) & (mid < lo + 0.3 * (hi - lo))
    feet = np.flatnonzero(is_min) + 1
    if feet.size < 3:
        raise RuntimeError("neurokit2 template: fewer than 3 beat feet found")
    seg = sig[feet[1]: feet[2] + 1]
    line = np.linspace(seg[0], seg[-1], seg.size)
    seg = seg - line
    seg = seg / seg.max()
    phase = np.linspace(0.0, 1.0, seg.size)
    out = np.interp(np.linspace(0.0, 1.0, TEMPLATE_POINTS), phase, seg)
    out[0] = out[-1] = 0.0
    return out


def beat_train(t_s: np.ndarray, beats_s: np.ndarray, amps: np.ndarray, template: np.ndarray,
               template_period_s: float) -> np.ndarray:
    """Pulse waveform at sample times `t_s`: template beats placed between consecutive beat onsets.

    beats_s: increasing beat-onset times covering t_s (beats_s[0] <= t_s[0], beats_s[-1] > t_s[-1]);
    amps: amplitude of each beat (len(beats_s)). The systolic part of the template (its first
    SYSTOLE_PHASE) lasts SYSTOLE_PHASE * T0 * (L / T0)^0.4 (at most 0.6 L) for a beat of length L
    (T0 = template_period_s), so systole changes little with heart rate and diastole takes up the rest,
    as in real pulses. Returns a 0..~1 waveform (float64).
    """
    k = np.searchsorted(beats_s, t_s, side="right") - 1
    start = beats_s[k]
    length = beats_s[k + 1] - start
    tau = t_s - start
    d_sys = np.minimum(0.6 * length, SYSTOLE_PHASE * template_period_s * (length / template_period_s) ** 0.4)
    phase = np.where(tau < d_sys, SYSTOLE_PHASE * tau / d_sys,
                     SYSTOLE_PHASE + (1.0 - SYSTOLE_PHASE) * (tau - d_sys) / (length - d_sys))
    idx = phase * (template.size - 1)
    i0 = np.minimum(idx.astype(np.int64), template.size - 2)
    frac = idx - i0
    wave = template[i0] * (1.0 - frac) + template[i0 + 1] * frac
    return wave * amps[k]
