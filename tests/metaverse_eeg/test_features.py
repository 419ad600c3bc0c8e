"""The headset DSP: Welch band power against MNE, differential entropy, asymmetry, artefact flags."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metaverse_eeg import BANDS, CHANNELS, FEATURE_NAMES, FS_HZ, WINDOW_SAMPLES
from metaverse_eeg import features as F
from metaverse_eeg.signals import UserParams, eeg_window

RNG = np.random.default_rng(3)
T = np.arange(WINDOW_SAMPLES) / FS_HZ


def _window(seed: int = 0, v: float = 0.0, a: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = UserParams.draw(rng)
    p.bad_channel, p.blink_rate, p.emg_rate, p.move_rate = -1, 0.0, 0.0, 0.0
    return eeg_window(p, v, a, rng)


def test_welch_matches_mne_psd_array_welch():
    from mne.time_frequency import psd_array_welch

    x = _window(1)
    f, p = F.welch_psd(x)
    want, fm = psd_array_welch(x, FS_HZ, fmin=0.0, fmax=FS_HZ / 2, n_fft=F.NPERSEG, n_per_seg=F.NPERSEG,
                               n_overlap=F.NOVERLAP, window="hann", average="mean", verbose="error")
    np.testing.assert_allclose(fm, f)
    # MNE's one-sided density doubles every bin but DC and Nyquist too: compare the bins the bands use
    inner = (f > 0) & (f < FS_HZ / 2)
    np.testing.assert_allclose(p[:, inner], want[:, inner], rtol=1e-9, atol=1e-12)


def test_band_power_of_a_sinusoid_is_its_variance():
    amp = 10.0
    x = np.tile(amp * np.sin(2 * np.pi * 10.0 * T), (len(CHANNELS), 1))
    bp = F.band_powers(x)
    alpha = [b[0] for b in BANDS].index("alpha")
    np.testing.assert_allclose(bp[:, alpha], amp ** 2 / 2, rtol=0.02)
    assert np.all(bp[:, [i for i in range(5) if i != alpha]] < 1e-3 * bp[:, [alpha]])


def test_differential_entropy_is_the_gaussian_formula():
    x = RNG.normal(0, 3.0, 100_000)
    assert F.differential_entropy(x) == pytest.approx(0.5 * np.log(2 * np.pi * np.e * np.var(x)))
    assert F.differential_entropy(x) == pytest.approx(0.5 * np.log(2 * np.pi * np.e * 9.0), abs=0.01)
    with pytest.raises(ValueError, match="zero variance"):
        F.differential_entropy(np.ones(10))


def test_band_variance_by_parseval_is_the_variance_of_the_band_passed_signal():
    x = _window(2)
    var = F.band_variances(x)
    for b, (_, lo, hi) in enumerate(BANDS):
        np.testing.assert_allclose(var[:, b], F.bandpass(x, lo, hi).var(axis=1), rtol=1e-9)
    fe = F.extract_window(x)
    np.testing.assert_allclose(fe.de[3, 2], F.differential_entropy(F.bandpass(x[3], 8.0, 14.0)), atol=1e-6)


def test_vector_layout_and_bad_input():
    fe = F.extract_window(_window(4))
    assert list(fe.as_dict()) == list(FEATURE_NAMES)
    v = F.to_vector(fe)
    assert v.shape == (len(FEATURE_NAMES),) and v.dtype == np.float32 and np.all(np.abs(v) <= F.VECTOR_CLIP)
    with pytest.raises(ValueError, match=r"expected shape \(8, 512\)"):
        F.extract_window(np.zeros((8, 100)))
    x = _window(4)
    x[2, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        F.extract_window(x)


def test_frontal_alpha_asymmetry_follows_valence():
    pos = np.mean([F.extract_window(_window(s, v=0.9)).faa_f for s in range(20)])
    neg = np.mean([F.extract_window(_window(s, v=-0.9)).faa_f for s in range(20)])
    assert pos - neg > 0.5


def test_arousal_lowers_alpha_and_raises_beta():
    hi = np.mean([F.extract_window(_window(s, a=0.9)).bp for s in range(10)], axis=0)
    lo = np.mean([F.extract_window(_window(s, a=-0.9)).bp for s in range(10)], axis=0)
    assert np.all(hi[:, 2] < lo[:, 2]) and np.all(hi[:, 3] > lo[:, 3])


def test_artefact_flags():
    clean = F.extract_window(_window(5))
    assert (clean.blink, clean.emg, clean.bad_channels) == (0.0, 0.0, 0.0)
    x = _window(5)
    x[:2] += 200 * np.exp(-0.5 * ((T - 2.0) / 0.07) ** 2)  # a blink on AF3, AF4
    assert F.extract_window(x).blink == 1.0
    x = _window(5)
    x[3] = RNG.normal(0, 0.05, WINDOW_SAMPLES)  # flat F4
    x[6] = RNG.normal(0, 400, WINDOW_SAMPLES)  # wild P7
    assert F.extract_window(x).bad_channels == 2.0
    x = _window(5)
    spec = np.fft.rfft(RNG.normal(size=(2, WINDOW_SAMPLES)), axis=1)
    spec[:, np.fft.rfftfreq(WINDOW_SAMPLES, 1 / FS_HZ) < 31] = 0
    x[4:6] += 30 * np.fft.irfft(spec, n=WINDOW_SAMPLES, axis=1) / np.fft.irfft(spec, n=WINDOW_SAMPLES).std()
    assert F.extract_window(x).emg == 1.0


@settings(max_examples=40, deadline=None)
@given(st.floats(0.1, 500.0), st.integers(0, 2**31 - 1))
def test_any_finite_window_gives_finite_features(scale, seed):
    x = np.random.default_rng(seed).normal(0, scale, (len(CHANNELS), WINDOW_SAMPLES))
    v = F.to_vector(F.extract_window(x))
    assert np.all(np.isfinite(v))
