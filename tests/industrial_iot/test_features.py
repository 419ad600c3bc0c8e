"""industrial_iot.features: defect frequencies against published bearing tables, each DSP step
against analytic values, and the features of simulated faults against healthy windows."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from industrial_iot import features as F
from industrial_iot import signals as S

FS = F.FS_HZ
N = F.WINDOW_SAMPLES
T = np.arange(N) / FS
B6205 = S.BEARINGS["6205"].as_dict()


def sine(amp_g: float, f_hz: float, phase: float = 0.3) -> np.ndarray:
    return amp_g * np.sin(2 * math.pi * f_hz * T + phase)


def velocity_rms_mm_s(amp_g: float, f_hz: float) -> float:
    return amp_g * F.G * 1000.0 / (2 * math.pi * f_hz) / math.sqrt(2)


# --- bearing_frequencies ------------------------------------------------------------------------

def test_6205_defect_frequencies_match_the_published_table():
    """SKF 6205-2RS JEM (Case Western drive end): 9 balls, d = 7.94 mm, D = 39.04 mm; published
    multiples of shaft speed BPFO 3.5848, BPFI 5.4152, BSF 2.357 (ball spin, the standard
    (D/2d)(1 - (d/D cos a)^2) convention), FTF 0.39828."""
    f = F.bearing_frequencies(1.0, 9, 7.94, 39.04)
    assert f["bpfo"] == pytest.approx(3.5848, rel=1e-4)
    assert f["bpfi"] == pytest.approx(5.4152, rel=1e-4)
    assert f["bsf"] == pytest.approx(2.357, rel=2e-4)
    assert f["ftf"] == pytest.approx(0.39828, rel=2e-4)


def test_defect_frequencies_scale_with_shaft_speed_and_obey_identities():
    fr = 1797 / 60
    f = F.bearing_frequencies(fr, 9, 7.94, 39.04, contact_deg=15.0)
    unit = F.bearing_frequencies(1.0, 9, 7.94, 39.04, contact_deg=15.0)
    for k in f:
        assert f[k] == pytest.approx(unit[k] * fr, rel=1e-12)
    assert f["bpfo"] + f["bpfi"] == pytest.approx(9 * fr)  # n balls pass the two races in one turn
    assert f["bpfo"] == pytest.approx(9 * f["ftf"])        # the cage carries the balls over the outer race
    flat = F.bearing_frequencies(fr, 9, 7.94, 39.04)
    assert f["bpfo"] > flat["bpfo"] and f["bpfi"] < flat["bpfi"]  # a contact angle shrinks d/D cos a


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"n_balls": 2}, "n_balls"), ({"n_balls": 9.5}, "n_balls"), ({"ball_d": 0.0}, "ball_d"),
    ({"ball_d": 40.0}, "ball_d"), ({"contact_deg": 90.0}, "contact_deg"), ({"shaft_hz": -1.0}, "shaft_hz"),
    ({"pitch_d": math.nan}, "pitch_d"),
])
def test_bad_geometry_is_named(kwargs, name):
    args = {"shaft_hz": 25.0, "n_balls": 9, "ball_d": 7.94, "pitch_d": 39.04, "contact_deg": 0.0} | kwargs
    with pytest.raises(ValueError, match=name):
        F.bearing_frequencies(**args)


# --- DSP steps against analytic values --------------------------------------------------------------

@pytest.mark.parametrize(("amp_g", "f_hz"), [(0.05, 24.3), (0.2, 50.0), (0.1, 157.7), (1.0, 600.1), (0.01, 13.3)])
def test_velocity_rms_of_a_sine_is_analytic_within_2_percent(amp_g, f_hz):
    ft = F.extract(sine(amp_g, f_hz), FS, 25.0, B6205)
    assert ft.v_rms_mm_s == pytest.approx(velocity_rms_mm_s(amp_g, f_hz), rel=0.02)


def test_velocity_band_excludes_what_lies_outside_10_to_1000_hz():
    ft = F.extract(sine(1.0, 2500.0), FS, 25.0, B6205)
    assert ft.v_rms_mm_s < 0.01 * velocity_rms_mm_s(1.0, 2500.0)


@pytest.mark.parametrize("fr", [15.0, 24.6, 49.4])
def test_order_lines_measure_each_harmonic(fr):
    amps = {0.5: 0.005, 1.0: 0.04, 2.0: 0.03, 3.0: 0.02}
    x = sum(sine(a, o * fr, phase=o) for o, a in amps.items())
    ft = F.extract(x, FS, fr, B6205)
    got = {0.5: ft.v_0p5x_mm_s, 1.0: ft.v_1x_mm_s, 2.0: ft.v_2x_mm_s, 3.0: ft.v_3x_mm_s}
    for o, a in amps.items():
        assert got[o] == pytest.approx(velocity_rms_mm_s(a, o * fr), rel=0.02), o
    assert ft.v_4_8x_mm_s < 0.01 * ft.v_1x_mm_s


def test_line_search_absorbs_slip_of_the_reported_speed():
    ft = F.extract(sine(0.05, 30.0 * 0.985), FS, 30.0, B6205)  # true speed 1.5 % below the reported one
    assert ft.v_1x_mm_s == pytest.approx(velocity_rms_mm_s(0.05, 29.55), rel=0.02)


def test_band_rms_and_time_domain_statistics_of_a_sine():
    ft = F.extract(sine(0.8, 1500.0) + 0.3, FS, 25.0, B6205)  # a DC offset is removed first
    assert ft.a_1k_2k_g == pytest.approx(0.8 / math.sqrt(2), rel=0.01)
    assert ft.a_rms_g == pytest.approx(0.8 / math.sqrt(2), rel=1e-3)
    assert ft.peak_g == pytest.approx(0.8, rel=1e-3)
    assert ft.crest == pytest.approx(math.sqrt(2), rel=1e-3)
    assert ft.kurtosis == pytest.approx(1.5, rel=1e-3)
    assert ft.a_10_1k_g < 1e-3 and ft.a_2k_4k_g < 1e-3


def test_gaussian_noise_has_kurtosis_3():
    x = np.random.default_rng(0).standard_normal(N) * 0.1
    ft = F.extract(x, FS, 25.0, B6205)
    assert ft.kurtosis == pytest.approx(3.0, abs=0.2)
    assert ft.a_rms_g == pytest.approx(0.1, rel=0.03)


def test_envelope_of_an_am_carrier_recovers_the_modulation():
    """A 3 kHz carrier A (1 + m cos(2 pi f_m t)) has the envelope A (1 + m cos): a line of RMS A m / sqrt(2)
    at f_m. With f_m = the 6205's BPFO at 29.95 Hz shaft speed, that is env_bpfo_g."""
    fr = 29.95
    fm = F.bearing_frequencies(fr, **B6205)["bpfo"]
    a, m = 0.5, 0.4
    x = a * (1 + m * np.cos(2 * math.pi * fm * T)) * np.sin(2 * math.pi * 3000.0 * T)
    ft = F.extract(x, FS, fr, B6205)
    assert ft.env_bpfo_g == pytest.approx(a * m / math.sqrt(2), rel=0.02)
    assert ft.env_rms_g == pytest.approx(a * m / math.sqrt(2), rel=0.03)
    assert ft.env_bpfi_g < 0.02 * ft.env_bpfo_g and ft.env_bsf2_g < 0.02 * ft.env_bpfo_g


def test_envelope_ignores_vibration_outside_the_resonance_band():
    ft = F.extract(sine(1.0, 100.0) * (1 + 0.5 * np.cos(2 * math.pi * 20 * T)), FS, 20.0, B6205)
    assert ft.env_rms_g < 1e-3


def test_envelope_matches_hilbert_of_the_band_passed_signal():
    from scipy.signal import hilbert

    x = np.random.default_rng(1).standard_normal(N)
    x0 = x - x.mean()
    k_lo, k_hi, m = F.envelope_bins(N, FS)
    spec = np.fft.rfft(x0)
    keep = np.zeros_like(spec)
    keep[k_lo: k_hi + 1] = spec[k_lo: k_hi + 1]
    ref = np.abs(hilbert(np.fft.irfft(keep, N)))[:: N // m]
    np.testing.assert_allclose(F.envelope(x0, FS), ref, rtol=1e-9, atol=1e-12)


# --- validation and missing values ----------------------------------------------------------------

def test_non_finite_samples_give_nan_features_but_shaft_speed():
    x = sine(0.1, 30.0)
    x[100] = np.nan
    d = F.extract(x, FS, 30.0, B6205).as_dict()
    assert d["shaft_hz"] == 30.0
    assert all(v is None for k, v in d.items() if k != "shaft_hz")


@pytest.mark.parametrize("shaft", [0.0, -5.0, math.nan])
def test_no_shaft_speed_gives_nan_lines_only(shaft):
    d = F.extract(sine(0.1, 30.0), FS, shaft, B6205).as_dict()
    assert d["shaft_hz"] is None and d["v_1x_mm_s"] is None and d["env_bpfo_g"] is None
    assert d["v_rms_mm_s"] is not None and d["env_rms_g"] is not None and d["kurtosis"] is not None


@pytest.mark.parametrize(("args", "name"), [
    ((np.zeros(1000), FS), "accel_g"), ((np.zeros((2, 4096)), FS), "accel_g"), ((np.zeros(N), 0), "fs_hz"),
    ((np.zeros(N), 6000), "fs_hz"),  # the envelope band 1.5-4 kHz does not fit below 3 kHz
])
def test_bad_input_is_named(args, name):
    with pytest.raises(ValueError, match=name):
        F.extract(*args, 25.0, B6205)


def test_missing_bearing_key_is_named():
    with pytest.raises(ValueError, match="bearing"):
        F.extract(np.zeros(N), FS, 25.0, {"n_balls": 9})


def test_other_power_of_two_windows_and_rates_work():
    x = np.random.default_rng(2).standard_normal(4096) * 0.05
    ft = F.extract(x, 12000, 29.95, B6205)  # the Case Western 12 kHz rate
    assert all(v is not None for v in ft.as_dict().values())


# --- simulated faults --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def simulated():
    ws = S.training_windows(84, seed=11, severity=(0.3, 0.7), sensor_issue_share=0.0)
    out: dict[str, list[F.Features]] = {}
    for w in ws:
        out.setdefault(w.label, []).append(F.extract_window(w))
    return out


def med(fts, name):
    return float(np.median([getattr(f, name) for f in fts]))


def test_outer_race_fault_raises_bpfo_in_the_envelope(simulated):
    fault, normal = simulated["outer_race"], simulated["normal"]
    assert med(fault, "env_bpfo_g") > 20 * med(normal, "env_bpfo_g")
    assert med(fault, "kurtosis") > 5  # impacts: a peaky signal (Gaussian noise: 3)
    for f in fault:
        assert f.env_bpfo_g > max(f.env_bpfi_g, f.env_bsf2_g)
        assert f.kurtosis > 3


def test_inner_race_fault_raises_bpfi_and_its_shaft_modulation(simulated):
    fault, normal = simulated["inner_race"], simulated["normal"]
    assert med(fault, "env_bpfi_g") > 20 * med(normal, "env_bpfi_g")
    assert med(fault, "env_1x_g") > 10 * med(normal, "env_1x_g")
    for f in fault:
        assert f.env_bpfi_g > max(f.env_bpfo_g, f.env_bsf2_g)


def test_rolling_element_fault_raises_2bsf_and_the_cage_modulation(simulated):
    fault, normal = simulated["rolling_element"], simulated["normal"]
    assert med(fault, "env_bsf2_g") > 20 * med(normal, "env_bsf2_g")
    assert med(fault, "env_ftf_g") > 10 * med(normal, "env_ftf_g")
    for f in fault:
        assert f.env_bsf2_g > max(f.env_bpfo_g, f.env_bpfi_g)


def test_imbalance_raises_1x(simulated):
    fault, normal = simulated["imbalance"], simulated["normal"]
    assert med(fault, "v_1x_mm_s") > 3 * med(normal, "v_1x_mm_s")
    for f in fault:
        assert f.v_1x_mm_s > 3 * max(f.v_2x_mm_s, f.v_3x_mm_s)


def test_misalignment_raises_2x_above_1x(simulated):
    fault, normal = simulated["misalignment"], simulated["normal"]
    assert med(fault, "v_2x_mm_s") > 5 * med(normal, "v_2x_mm_s")
    assert np.median([f.v_2x_mm_s / f.v_1x_mm_s for f in fault]) > 1.0
    assert np.median([f.v_2x_mm_s / f.v_1x_mm_s for f in normal]) < 0.6


def test_looseness_raises_half_orders_and_high_harmonics(simulated):
    fault, normal = simulated["looseness"], simulated["normal"]
    assert med(fault, "v_halfx_mm_s") > 10 * med(normal, "v_halfx_mm_s")
    assert med(fault, "v_0p5x_mm_s") > 10 * med(normal, "v_0p5x_mm_s")
    # (healthy pumps and fans have vane / blade pass among 4x-8x too)
    assert med(fault, "v_4_8x_mm_s") > 3 * med(normal, "v_4_8x_mm_s")


def test_model_vector_is_small_finite_and_centred_on_healthy_machines(simulated):
    vs = np.array([F.to_vector(f) for fts in simulated.values() for f in fts])
    assert vs.dtype == np.float32 and vs.shape[1] == len(F.FEATURE_NAMES)
    assert np.all(np.isfinite(vs)) and np.all(np.abs(vs) <= F.VECTOR_CLIP)
    healthy = np.array([F.to_vector(f) for f in simulated["normal"]])
    assert np.all(np.abs(healthy.mean(axis=0)) < 1.0)


def test_to_vector_maps_nan_to_zero_and_clips():
    d = dict.fromkeys(F.FEATURE_NAMES, math.nan) | {"shaft_hz": 1e6, "kurtosis": 1e30}
    v = F.to_vector(F.Features(**d))
    assert v[0] == F.VECTOR_CLIP and v[F.FEATURE_NAMES.index("kurtosis")] == F.VECTOR_CLIP
    assert np.count_nonzero(v) == 2


# --- real recordings ------------------------------------------------------------------------------------

def test_real_cwru_recordings_if_provided():
    """No package on PyPI ships real vibration recordings (cwru, cwru-py3, bearing-datasets and
    fpt-bearings download them at run time; this machine cannot), so this runs only where
    TINYLARGE_CWRU_DIR names a folder of Case Western drive-end files (12 kHz series)."""
    folder = os.environ.get("TINYLARGE_CWRU_DIR")
    if not folder:
        pytest.skip("no real recordings: set TINYLARGE_CWRU_DIR to a folder of Case Western .mat files")
    files = sorted(Path(folder).glob("*.mat"))
    if not files:
        pytest.skip(f"TINYLARGE_CWRU_DIR={folder} holds no .mat file")
    for path in files:
        rec = S.read_cwru_mat(path, 12000)
        shaft = rec.shaft_hz if rec.rpm else 1797 / 60
        for x in list(S.recording_windows(rec, 8192))[:3]:
            ft = F.extract(x, rec.fs_hz, shaft, B6205)
            assert all(v is not None for v in ft.as_dict().values()), path
