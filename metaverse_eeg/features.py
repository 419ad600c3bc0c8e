"""The headset DSP (ported to C in metaverse_eeg/firmware/eeg_features.c): one 4 s window of 8 EEG
channels at 128 Hz (microvolts) -> 85 features.

Parameters (the C port uses the same):

* **Bands** (``metaverse_eeg.BANDS``), half-open on the frequency grid: delta [1, 4), theta [4, 8),
  alpha [8, 14), beta [14, 31), gamma [31, 50) Hz.
* **Band power** by Welch's method: segments of ``NPERSEG`` = 256 samples (2 s, 0.5 Hz bins) with
  ``NOVERLAP`` = 128, a periodic Hann window, each segment's mean removed, one-sided power spectral
  density in uV^2/Hz (``2 |X_k|^2 / (fs sum w^2)`` for 0 < k < N/2), averaged over the 3 segments;
  band power = sum of the PSD over the bins in the band times the bin width (uV^2). Feature
  ``bp_<ch>_<band>`` = log10(band power + 1e-3). ``mne.time_frequency.psd_array_welch`` with the same
  parameters gives the same PSD (tests/metaverse_eeg/test_features.py).
* **Differential entropy** of the band-passed signal: the whole window (mean removed) band-passed by
  zeroing its FFT outside the band (an ideal filter), then ``differential_entropy(x) = 0.5 ln(2 pi e
  var(x))`` (natural log, the Gaussian DE). The variance comes from the spectrum by Parseval, which is
  what the firmware computes; ``de_<ch>_<band>`` = DE of var + 1e-6.
* **Frontal alpha asymmetry** ``faa_f`` = ln alpha(F4) - ln alpha(F3), ``faa_af`` = ln alpha(AF4) -
  ln alpha(AF3) (band powers + 1e-3; higher = relatively more LEFT frontal activity, linked to
  approach / positive valence).
* **Artefact flags**: ``blink`` 1 when the mean of AF3 and AF4 (mean removed) reaches ``BLINK_UV``
  = 90 uV; ``emg`` 1 when the gamma share of the 1-50 Hz power, averaged over T7 and T8, reaches
  ``EMG_SHARE`` = 0.3; ``bad_channels`` = how many channels are flat (standard deviation below
  ``FLAT_UV`` = 0.5 uV) or saturated / disconnected (above ``WILD_UV`` = 150 uV).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metaverse_eeg import BANDS, CHANNELS, FEATURE_NAMES, FS_HZ, WINDOW_SAMPLES

NPERSEG = 256
NOVERLAP = 128
BLINK_UV = 90.0
EMG_SHARE = 0.3
FLAT_UV = 0.5
WILD_UV = 150.0
BP_FLOOR = 1e-3
VAR_FLOOR = 1e-6
N_FEATURES = len(FEATURE_NAMES)
VECTOR_CLIP = 8.0
_CH = {c: i for i, c in enumerate(CHANNELS)}


def hann(n: int) -> np.ndarray:
    """Periodic Hann window of length n (scipy.signal.get_window('hann', n))."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def welch_psd(x: np.ndarray, fs: float = FS_HZ, nperseg: int = NPERSEG, noverlap: int = NOVERLAP
              ) -> tuple[np.ndarray, np.ndarray]:
    """(freqs, psd) of each row of x (channels, samples): the one-sided Welch PSD described above."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if x.shape[-1] < nperseg:
        raise ValueError(f"x: need at least nperseg={nperseg} samples per channel, got {x.shape[-1]}")
    step = nperseg - noverlap
    starts = range(0, x.shape[-1] - nperseg + 1, step)
    w = hann(nperseg)
    scale = 1.0 / (fs * np.sum(w * w))
    acc = np.zeros((x.shape[0], nperseg // 2 + 1))
    n = 0
    for s in starts:
        seg = x[:, s:s + nperseg]
        seg = seg - seg.mean(axis=1, keepdims=True)
        spec = np.abs(np.fft.rfft(seg * w, axis=1)) ** 2 * scale
        spec[:, 1:-1] *= 2.0  # one-sided: every bin but DC and Nyquist counts twice
        acc += spec
        n += 1
    return np.fft.rfftfreq(nperseg, 1.0 / fs), acc / n


def band_mask(freqs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (freqs >= lo) & (freqs < hi)


def band_powers(x: np.ndarray, fs: float = FS_HZ) -> np.ndarray:
    """(channels, 5) band powers in uV^2 (Welch PSD summed over the band's bins times the bin width)."""
    f, p = welch_psd(x, fs)
    df = f[1] - f[0]
    return np.stack([p[:, band_mask(f, lo, hi)].sum(axis=1) * df for _, lo, hi in BANDS], axis=1)


def bandpass(x: np.ndarray, lo: float, hi: float, fs: float = FS_HZ) -> np.ndarray:
    """x (mean removed) with its FFT zeroed outside [lo, hi) Hz: an ideal band-pass of one window."""
    x = np.asarray(x, dtype=np.float64)
    spec = np.fft.rfft(x - x.mean(axis=-1, keepdims=True), axis=-1)
    spec[..., ~band_mask(np.fft.rfftfreq(x.shape[-1], 1.0 / fs), lo, hi)] = 0.0
    return np.fft.irfft(spec, n=x.shape[-1], axis=-1)


def differential_entropy(x: np.ndarray) -> float:
    """0.5 ln(2 pi e var(x)) of one band signal (natural log): the differential entropy of a Gaussian."""
    v = float(np.var(np.asarray(x, dtype=np.float64)))
    if not v > 0:
        raise ValueError("differential_entropy: x has zero variance")
    return 0.5 * np.log(2.0 * np.pi * np.e * v)


def band_variances(x: np.ndarray, fs: float = FS_HZ) -> np.ndarray:
    """(channels, 5) variance of each channel's band-passed window, from its spectrum (Parseval)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    n = x.shape[-1]
    spec = np.abs(np.fft.rfft(x - x.mean(axis=1, keepdims=True), axis=1)) ** 2
    weight = np.full(spec.shape[1], 2.0)
    weight[0] = 1.0
    if n % 2 == 0:
        weight[-1] = 1.0
    f = np.fft.rfftfreq(n, 1.0 / fs)
    return np.stack([(spec[:, band_mask(f, lo, hi)] * weight[band_mask(f, lo, hi)]).sum(axis=1) / (n * n)
                     for _, lo, hi in BANDS], axis=1)


@dataclass
class EegFeatures:
    """The DSP's outputs for one window."""

    bp: np.ndarray  #: (8, 5) log10 band power
    de: np.ndarray  #: (8, 5) differential entropy (nats)
    faa_f: float
    faa_af: float
    blink: float
    emg: float
    bad_channels: float
    emg_share: float = 0.0  #: the value the emg flag thresholds (not in the vector)

    def as_dict(self) -> dict[str, float]:
        return dict(zip(FEATURE_NAMES, to_vector_raw(self).tolist(), strict=True))


def extract_window(w) -> EegFeatures:
    """One window (an object with ``eeg`` (8, 512) uV, or the array itself) -> EegFeatures."""
    x = np.asarray(getattr(w, "eeg", w), dtype=np.float64)
    if x.shape != (len(CHANNELS), WINDOW_SAMPLES):
        raise ValueError(f"eeg window: expected shape ({len(CHANNELS)}, {WINDOW_SAMPLES}) uV, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("eeg window: contains NaN or infinite samples")
    bp = band_powers(x)
    de = 0.5 * np.log(2.0 * np.pi * np.e * (band_variances(x) + VAR_FLOOR))
    alpha = [b[0] for b in BANDS].index("alpha")
    la = np.log(bp[:, alpha] + BP_FLOOR)
    frontal = x[[_CH["AF3"], _CH["AF4"]]]
    frontal = (frontal - frontal.mean(axis=1, keepdims=True)).mean(axis=0)
    total = bp.sum(axis=1) + BP_FLOOR
    share = float(np.mean(bp[[_CH["T7"], _CH["T8"]], -1] / total[[_CH["T7"], _CH["T8"]]]))
    sd = x.std(axis=1)
    return EegFeatures(bp=np.log10(bp + BP_FLOOR), de=de, faa_f=float(la[_CH["F4"]] - la[_CH["F3"]]),
                       faa_af=float(la[_CH["AF4"]] - la[_CH["AF3"]]),
                       blink=float(np.max(np.abs(frontal)) >= BLINK_UV), emg=float(share >= EMG_SHARE),
                       bad_channels=float(np.sum((sd < FLAT_UV) | (sd > WILD_UV))), emg_share=share)


def to_vector_raw(f: EegFeatures) -> np.ndarray:
    """The 85 features in FEATURE_NAMES order, unscaled."""
    return np.concatenate([f.bp.ravel(), f.de.ravel(),
                           [f.faa_f, f.faa_af, f.blink, f.emg, f.bad_channels]]).astype(np.float64)


#: fixed standardisation of the vector (centre, scale), chosen from the simulator's ranges and kept in C
_CENTER = np.concatenate([np.full(40, 1.0), np.full(40, 3.3), [0.0, 0.0, 0.0, 0.0, 0.0]])
_SCALE = np.concatenate([np.full(40, 0.8), np.full(40, 0.8), [1.5, 1.5, 1.0, 1.0, 1.0]])


def to_vector(f: EegFeatures) -> np.ndarray:
    """The tiny model's input: (raw - centre) / scale, NaN -> 0, clipped to +-8, float32."""
    v = (to_vector_raw(f) - _CENTER) / _SCALE
    return np.clip(np.nan_to_num(v, nan=0.0), -VECTOR_CLIP, VECTOR_CLIP).astype(np.float32)
