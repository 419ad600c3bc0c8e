"""Cohort simulator and WFDB loader: API shape, determinism, realism rules, label rule, round trip."""

from __future__ import annotations

import collections
import math

import numpy as np
import pytest

from healthcare.features import extract_window
from healthcare.signals import (
    LABELS,
    CohortConfig,
    Truth,
    Window,
    label_of,
    load_wfdb,
    simulate_cohort,
)


@pytest.fixture(scope="module")
def cohort():
    return simulate_cohort(CohortConfig())


def window_times(cfg: CohortConfig) -> np.ndarray:
    n = int((cfg.duration_h * 3600 - cfg.window_s) // cfg.window_every_s) + 1
    return cfg.window_s + cfg.window_every_s * np.arange(n)


def test_default_cohort_has_every_label(cohort):
    counts = collections.Counter(p.state(float(t)).label for p in cohort for t in window_times(CohortConfig()))
    total = sum(counts.values())
    assert total == 20 * 288
    for label in LABELS:
        assert counts[label] / total >= 0.03, (label, counts)
    assert counts["normal"] / total > 0.4


def test_deterioration_episodes(cohort):
    det = [p for p in cohort if p.event_time_s is not None]
    assert len(det) == round(0.4 * 20)
    for p in det:
        assert p.event_time_s >= 8 * 3600 and p.event_time_s <= 24 * 3600
        assert p.onset_time_s is not None and 0 < p.onset_time_s < p.event_time_s
        before, at = p.state(p.onset_time_s - 1.0), p.state(p.event_time_s)
        assert not before.deteriorating and at.deteriorating
        assert at.on_oxygen
    onset = [p.state(p.onset_time_s - 1.0) for p in det]
    event = [p.state(p.event_time_s) for p in det]
    mean = lambda xs, k: float(np.mean([getattr(x, k) for x in xs]))  # noqa: E731
    assert mean(event, "hr_bpm") > mean(onset, "hr_bpm") + 15
    assert mean(event, "rr_bpm") > mean(onset, "rr_bpm") + 4
    assert mean(event, "temp_c") > mean(onset, "temp_c") + 0.6
    assert mean(event, "spo2_pct") < mean(onset, "spo2_pct") - 2
    assert mean(event, "sbp_mmhg") < mean(onset, "sbp_mmhg") - 10
    for p in cohort:
        if p.event_time_s is None:
            assert p.onset_time_s is None
            assert not any(p.state(float(t)).deteriorating for t in window_times(CohortConfig())[::6])


def test_confounders_and_baselines_vary(cohort):
    states = [p.state(float(t)) for p in cohort for t in window_times(CohortConfig())]
    conf = collections.Counter(s.confounder for s in states)
    assert conf["exercise"] > 0 and conf["anxiety"] > 0
    # confounders raise HR without being deterioration
    ex = [s for s in states if s.confounder == "exercise" and not s.deteriorating]
    calm = [s for s in states if s.confounder is None and not s.deteriorating]
    assert np.mean([s.hr_bpm for s in ex]) > np.mean([s.hr_bpm for s in calm]) + 10
    first = [p.state(600.0) for p in cohort]
    assert np.ptp([s.hr_bpm for s in first]) > 15
    assert np.ptp([s.sbp_mmhg for s in first]) > 15
    assert any(p.chronic_irregular for p in cohort)
    assert {s.consciousness for s in states} <= {"A", "C"} and "C" in {s.consciousness for s in states}


def test_window_shapes_and_determinism():
    cfg = CohortConfig(n_patients=2, duration_h=2.0, seed=3)
    a, b = simulate_cohort(cfg), simulate_cohort(cfg)
    w1 = a[1].window(3630.0)
    _ = a[1].window(630.0)  # evaluation order does not matter
    w2 = b[1].window(3630.0)
    assert isinstance(w1, Window) and w1.patient == "p001" and w1.fs_hz == 25.0
    n = int(cfg.window_s * cfg.fs_hz)
    assert w1.ppg_red.shape == w1.ppg_ir.shape == (n,) and w1.acc_g.shape == (n, 3)
    assert w1.ppg_ir.dtype == w1.ppg_red.dtype == w1.acc_g.dtype == np.float32
    np.testing.assert_array_equal(w1.ppg_ir, w2.ppg_ir)
    np.testing.assert_array_equal(w1.acc_g, w2.acc_g)
    assert w1.truth == w2.truth
    other = simulate_cohort(CohortConfig(n_patients=2, duration_h=2.0, seed=4))[1].window(3630.0)
    assert not np.array_equal(other.ppg_ir, w1.ppg_ir)
    ws = list(a[0].windows())
    assert len(ws) == 24 and ws[0].t_end_s == 30.0 and ws[-1].t_end_s == 30.0 + 23 * 300.0


def test_artefacts_show_in_signals(cohort):
    seen = collections.Counter()
    for p in cohort[:8]:
        for t in window_times(CohortConfig()):
            s = p.state(float(t))
            if s.off_wrist and p.state(float(t) - 300).off_wrist and p.state(float(t) + 30).off_wrist:
                # the whole window lies well inside an off-wrist episode
                w = p.window(float(t))
                assert float(np.mean(w.ppg_ir)) < 5000
                assert w.temp_c < s.temp_c - 3
                seen["off"] += 1
            elif s.motion and seen["motion"] < 10:
                w = p.window(float(t))
                assert float(np.std(np.linalg.norm(w.acc_g, axis=1))) > 0.05
                seen["motion"] += 1
            elif not (s.motion or s.off_wrist) and seen["clean"] < 10:
                w = p.window(float(t))
                mag = np.linalg.norm(w.acc_g, axis=1)
                assert abs(float(np.mean(mag)) - 1.0) < 0.05 and float(np.std(mag)) < 0.05
                assert abs(w.temp_c - s.temp_c) < 0.6
                seen["clean"] += 1
    assert seen["off"] > 0 and seen["motion"] > 0 and seen["clean"] > 0


def make_truth(**kw) -> Truth:
    base = dict(hr_bpm=70.0, rr_bpm=15.0, spo2_pct=97.0, temp_c=37.0, sbp_mmhg=120.0, consciousness="A",
                on_oxygen=False, irregular=False, motion=False, off_wrist=False, confounder=None,
                deteriorating=False, label="")
    return Truth(**{**base, **kw})


@pytest.mark.parametrize(("kw", "label"), [
    ({}, "normal"),
    ({"off_wrist": True, "spo2_pct": 80.0}, "unreliable"),
    ({"motion": True, "hr_bpm": 130.0}, "unreliable"),
    ({"spo2_pct": 91.9, "irregular": True, "hr_bpm": 130.0}, "desaturation"),
    ({"spo2_pct": 92.0}, "normal"),
    ({"irregular": True, "hr_bpm": 130.0}, "irregular"),
    ({"hr_bpm": 100.1}, "tachycardia"),
    ({"hr_bpm": 100.0}, "normal"),
    ({"hr_bpm": 49.9}, "bradycardia"),
    ({"hr_bpm": 50.0}, "normal"),
])
def test_label_rule(kw, label):
    assert label_of(make_truth(**kw)) == label


def test_charts(cohort):
    p = cohort[0]
    charts = p.charts()
    assert 5 <= len(charts) <= 7
    gaps = np.diff([c.t_s for c in charts])
    assert np.all((gaps > 3 * 3600) & (gaps < 5 * 3600))
    for c in charts:
        s = p.state(c.t_s)
        assert c.patient == p.id and c.consciousness == s.consciousness and c.on_oxygen == s.on_oxygen
        assert abs(c.sbp_mmhg - s.sbp_mmhg) < 20 and abs(c.rr_bpm - s.rr_bpm) < 6
        assert abs(c.temp_c - s.temp_c) < 1.0 and c.rr_bpm == round(c.rr_bpm)
    assert p.charts() == charts


@pytest.mark.parametrize(("field", "value"), [
    ("n_patients", 0), ("duration_h", -1.0), ("window_s", 0.0), ("window_every_s", 0.0), ("fs_hz", 0.0),
    ("deteriorating_fraction", 1.5), ("chart_every_h", 0.0), ("seed", -1), ("duration_h", float("nan")),
])
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        CohortConfig(**{field: value})


def test_window_rejects_bad_time(cohort):
    with pytest.raises(ValueError, match="t_end_s"):
        cohort[0].window(10.0)


def _write_record(tmp_path, windows: list[Window], fs_out: float) -> str:
    import wfdb
    from scipy.signal import resample_poly

    up = int(fs_out / windows[0].fs_hz)
    red = np.concatenate([w.ppg_red for w in windows]).astype(np.float64)
    ir = np.concatenate([w.ppg_ir for w in windows]).astype(np.float64)
    acc = np.concatenate([w.acc_g for w in windows]).astype(np.float64)
    temp = np.concatenate([np.full(w.ppg_ir.size, w.temp_c) for w in windows])
    sig = np.column_stack([resample_poly(x, up, 1) for x in (red, ir, *acc.T)] + [np.repeat(temp, up)])
    wfdb.wrsamp("rec", fs=fs_out, units=["adu", "adu", "g", "g", "g", "degC"],
                sig_name=["PLETH_RED", "PLETH_IR", "ACC_X", "ACC_Y", "ACC_Z", "TEMP"], p_signal=sig,
                fmt=["32", "32", "16", "16", "16", "16"], adc_gain=[100.0, 100.0, 10000.0, 10000.0, 10000.0, 100.0],
                baseline=[0, 0, 0, 0, 0, 0], write_dir=str(tmp_path))
    return str(tmp_path / "rec")


def test_load_wfdb_round_trip(tmp_path):
    p = simulate_cohort(CohortConfig(n_patients=1, duration_h=1.0, seed=5))[0]
    src = [p.window(30.0 * (k + 1)) for k in range(8)]
    rec = _write_record(tmp_path, src, fs_out=100.0)
    got = load_wfdb(rec, acc=("ACC_X", "ACC_Y", "ACC_Z"), temp="TEMP", fs_hz=25.0, window_s=30.0)
    assert len(got) == len(src)
    for a, b in zip(src, got, strict=True):
        assert b.patient == "rec" and b.t_end_s == pytest.approx(a.t_end_s) and b.fs_hz == 25.0
        assert b.ppg_ir.shape == a.ppg_ir.shape and b.acc_g.shape == a.acc_g.shape
        assert b.ppg_ir.dtype == np.float32
        inner = slice(25, -25)  # resampling edge effects
        scale = float(np.ptp(a.ppg_ir[inner]))
        assert np.max(np.abs(a.ppg_ir[inner] - b.ppg_ir[inner])) < 0.1 * scale
        assert b.temp_c == pytest.approx(a.temp_c, abs=0.01)
        assert b.truth.label == "" and math.isnan(b.truth.hr_bpm)
        if not (a.truth.motion or a.truth.off_wrist):
            assert extract_window(b).hr_bpm == pytest.approx(a.truth.hr_bpm, abs=3.0)
    no_acc = load_wfdb(rec, fs_hz=25.0, window_s=10.0, window_every_s=20.0)
    assert len(no_acc) == 12 and np.isnan(no_acc[0].acc_g).all() and math.isnan(no_acc[0].temp_c)


def test_load_wfdb_missing_channel_is_named(tmp_path):
    p = simulate_cohort(CohortConfig(n_patients=1, duration_h=1.0, seed=5))[0]
    rec = _write_record(tmp_path, [p.window(30.0)], fs_out=50.0)
    with pytest.raises(ValueError, match="PPG_GREEN"):
        load_wfdb(rec, ir="PPG_GREEN")
    with pytest.raises(ValueError, match="ACC_W"):
        load_wfdb(rec, acc=("ACC_X", "ACC_Y", "ACC_W"))
    with pytest.raises(ValueError, match="fs_hz"):
        load_wfdb(rec, fs_hz=0)
