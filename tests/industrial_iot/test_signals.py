"""industrial_iot.signals: the fleet simulator's determinism, ground truth and physics."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from industrial_iot import features as F
from industrial_iot import signals as S
from industrial_iot.iso10816 import zone

CFG = S.FleetConfig(n_machines=12, duration_h=14 * 24.0, seed=3)


@pytest.fixture(scope="module")
def fleet() -> list[S.Machine]:
    return S.simulate_fleet(CFG)


def test_fleet_make_up(fleet):
    assert [m.id for m in fleet] == [f"m{i:03d}" for i in range(1, 13)]
    faulty = [m for m in fleet if m.fault is not None]
    assert len(faulty) == round(CFG.fault_share * CFG.n_machines)
    assert {m.fault for m in faulty} == set(S.LABELS[1:])  # every fault type is represented
    for m in fleet:
        assert m.kind in S.KINDS and m.iso_group in (1, 2) and m.foundation in ("rigid", "flexible")
        assert 15.0 <= m.nominal_hz <= 50.0 and 2000.0 <= m.resonance_hz <= 3500.0
        assert (m.iso_group == 1) == (m.power_kw > 300)
        assert m.bearing in S.BEARINGS.values()
        if m.fault is None:
            assert math.isinf(m.fault_onset_h) and math.isinf(m.failure_h)
        else:
            assert 0 <= m.fault_onset_h < m.failure_h


def test_some_machines_fail_within_the_span_and_some_after():
    fleet = S.simulate_fleet(S.FleetConfig(n_machines=30, seed=1))
    span = S.FleetConfig().duration_h
    failures = [m.failure_h for m in fleet if m.fault]
    assert any(f <= span for f in failures) and any(f > span for f in failures)


def test_windows_are_deterministic_and_independent_of_order(fleet):
    m = fleet[0]
    a, b = m.window(7200.0), m.window(3600.0)
    again = S.simulate_fleet(CFG)[0]
    assert np.array_equal(again.window(3600.0).accel_g, b.accel_g)
    assert np.array_equal(again.window(7200.0).accel_g, a.accel_g)
    other = S.simulate_fleet(replace(CFG, seed=4))[0]
    assert not np.array_equal(other.window(3600.0).accel_g, b.accel_g)


def test_window_fields(fleet):
    w = fleet[1].window(5 * 3600.0)
    assert w.accel_g.dtype == np.float32 and w.accel_g.shape == (CFG.n_samples,) == (F.WINDOW_SAMPLES,)
    assert w.fs_hz == F.FS_HZ and w.t_s == 5 * 3600.0 and w.machine_id == "m002"
    assert isinstance(w.rpm, int) and w.shaft_hz == w.rpm / 60
    assert abs(w.shaft_hz - fleet[1].speed_hz(w.t_s)) <= 0.5 / 60
    assert w.label in S.LABELS and 0.0 <= w.severity <= 1.0
    assert set(w.bearing) == {"n_balls", "ball_d", "pitch_d", "contact_deg"}


def test_fault_grows_from_onset_to_failure(fleet):
    m = next(f for f in fleet if f.fault is not None)
    t_on, t_fail = m.fault_onset_h * 3600, m.failure_h * 3600
    assert m.label(t_on - 1) == "normal" and m.severity(t_on - 1) == 0.0
    assert m.label(t_on) == m.fault and m.severity(t_on) == pytest.approx(S.SEVERITY_ONSET)
    ts = np.linspace(t_on, t_fail, 20)
    sev = [m.severity(t) for t in ts]
    assert all(b > a for a, b in zip(sev, sev[1:], strict=False))
    assert sev[-1] == pytest.approx(1.0)
    assert m.severity(t_fail + 3600) == 1.0 and m.hours_to_failure(t_fail + 3600) == 0.0
    assert m.hours_to_failure(t_on) == pytest.approx(m.failure_h - m.fault_onset_h)
    healthy = next(f for f in fleet if f.fault is None)
    assert math.isinf(healthy.window(3600.0).hours_to_failure)


def test_speed_follows_load_within_the_drive_range(fleet):
    for m in fleet:
        speeds = np.array([m.speed_hz(t) for t in np.arange(0, 3 * 86400, 1800.0)])
        lo, hi = (0.6 * m.nominal_hz, m.nominal_hz) if m.vfd else (0.98 * m.nominal_hz, 0.995 * m.nominal_hz)
        assert np.all(speeds >= lo - 1e-9) and np.all(speeds <= hi + 1e-9)
        assert speeds.std() > 0


def machine_with(fault: str | None, issue: str | None = None, seed: int = 0) -> S.Machine:
    """The first machine of a fleet, reshaped: fault from hour 0, failing at hour 100."""
    m = S.simulate_fleet(S.FleetConfig(n_machines=1, seed=seed, fault_share=0.0, sensor_issue_share=0.0))[0]
    onset, fail = (0.0, 100.0) if fault else (math.inf, math.inf)
    return replace(m, fault=fault, fault_onset_h=onset, failure_h=fail, sensor_issue=issue,
                   sensor_issue_h=0.0 if issue else math.inf)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fault", ["imbalance", "misalignment", "looseness"])
def test_a_shaft_fault_takes_iso_zone_from_a_b_to_d_at_failure(fault, seed):
    m = machine_with(fault, seed=seed)
    early = F.extract_window(m.window(3600.0))
    late = F.extract_window(m.window(100 * 3600.0))
    assert zone(early.v_rms_mm_s, m.iso_group, m.foundation) in ("A", "B")
    assert zone(late.v_rms_mm_s, m.iso_group, m.foundation) == "D"


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fault", ["outer_race", "inner_race", "rolling_element"])
def test_a_bearing_fault_shows_in_the_envelope_long_before_iso_sees_it(fault, seed):
    m = machine_with(fault, seed=seed)
    healthy = F.extract_window(machine_with(None, seed=seed).window(3600.0))
    mid = F.extract_window(m.window(50 * 3600.0))  # severity ~0.17
    late = F.extract_window(m.window(100 * 3600.0))
    assert zone(mid.v_rms_mm_s, m.iso_group, m.foundation) in ("A", "B")
    assert mid.env_rms_g > 5 * healthy.env_rms_g
    assert zone(late.v_rms_mm_s, m.iso_group, m.foundation) in ("C", "D")


def test_saturating_sensor_clips_at_its_range():
    m = machine_with("outer_race", issue="saturating")
    w = m.window(100 * 3600.0)
    assert w.sensor_issue == "saturating"
    assert np.max(np.abs(w.accel_g)) <= 2.0 + 1e-6
    assert np.count_nonzero(np.abs(w.accel_g) >= 2.0 - 1e-3) > 5


def test_loose_sensor_loses_the_resonance_band():
    ok = F.extract_window(machine_with("outer_race").window(60 * 3600.0))
    loose = F.extract_window(machine_with("outer_race", issue="loose").window(60 * 3600.0))
    assert loose.a_2k_4k_g < 0.3 * ok.a_2k_4k_g


def test_sensor_issue_starts_at_its_hour(fleet):
    cfg = replace(CFG, sensor_issue_share=0.5)
    machines = [m for m in S.simulate_fleet(cfg) if m.sensor_issue]
    assert {m.sensor_issue for m in machines} == {"loose", "saturating"}
    m = machines[0]
    assert m.window(max(0.0, m.sensor_issue_h * 3600 - 1)).sensor_issue is None or m.sensor_issue_h == 0
    assert m.window(m.sensor_issue_h * 3600 + 1).sensor_issue == m.sensor_issue


def test_times_cover_the_span_once_per_window_period():
    assert CFG.times_s[0] == 3600.0 and CFG.times_s[-1] == CFG.duration_h * 3600
    assert len(CFG.times_s) == CFG.duration_h


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"n_machines": 0}, "n_machines"), ({"duration_h": -1.0}, "duration_h"), ({"fs_hz": math.nan}, "fs_hz"),
    ({"fault_share": 1.5}, "fault_share"), ({"growth_h": (10.0, 5.0)}, "growth_h"),
    ({"onset_frac": (0.5, 1.2)}, "onset_frac"), ({"window_s": 0.001}, "window_s"), ({"seed": "x"}, "seed"),
])
def test_config_errors_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=f"FleetConfig.{key}"):
        S.FleetConfig(**kwargs)


def test_training_windows_are_balanced_deterministic_and_labelled():
    ws = S.training_windows(21, seed=2)
    assert [w.label for w in ws] == list(S.LABELS) * 3
    assert all(w.severity == 0.0 for w in ws if w.label == "normal")
    assert all(0.1 <= w.severity <= 1.0 for w in ws if w.label != "normal")
    again = S.training_windows(21, seed=2)
    assert all(np.array_equal(a.accel_g, b.accel_g) for a, b in zip(ws, again, strict=True))
    assert len({w.bearing["pitch_d"] for w in ws}) > 1  # many machines, many geometries
    sub = S.training_windows(4, seed=2, labels=("normal", "inner_race"), severity=(0.5, 0.5))
    assert [w.label for w in sub] == ["normal", "inner_race"] * 2 and sub[1].severity == 0.5


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"n": -1}, "n"), ({"labels": ("normal", "broken")}, "labels"), ({"severity": (0.5, 0.2)}, "severity"),
])
def test_training_windows_errors_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        S.training_windows(**({"n": 3, "seed": 0} | kwargs))
