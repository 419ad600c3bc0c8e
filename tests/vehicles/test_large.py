"""The cloud's step vector, the vendor-style baseline and the calibration measures."""

from __future__ import annotations

import numpy as np
import pytest

from vehicles import large as L
from vehicles.features import EVENT_KINDS, TRIP_STATS


def msg(**rule) -> dict:
    return {"distance_km": 2.0, "stats": dict.fromkeys(TRIP_STATS, 1.0), "counts": dict.fromkeys(EVENT_KINDS, 0),
            "rule_counts": {k: rule.get(k, 0) for k in EVENT_KINDS}}


def test_vendor_points_per_100km():
    pts = L.trip_points({"harsh_brake": 2, "harsh_accel": 1, "harsh_corner": 0, "crash": 0, "pothole": 9})
    assert pts == 25.0  # road anomalies earn no points
    assert L.vendor_points(pts, 5.0) == pytest.approx(500.0)
    assert L.vendor_points(10.0, 0.0) == 0.0


def test_step_vector_layout():
    x = L.step_vector(msg(harsh_brake=1))
    assert x.shape == (L.N_INPUTS,) and x.dtype == np.float32 and len(L.INPUT_NAMES) == L.N_INPUTS
    assert x[L.INPUT_NAMES.index("rule_harsh_brake")] == pytest.approx(np.arcsinh(1.0))
    assert x[L.INPUT_NAMES.index("vendor_points_per_100km")] == pytest.approx(np.arcsinh(5.0))
    m = msg()
    m["stats"]["jerk_p95_mps3"] = None
    assert np.all(np.isfinite(L.step_vector(m)))


def test_ece_and_platt():
    rng = np.random.default_rng(0)
    p = rng.random(20000)
    y = rng.random(20000) < p
    assert L.ece(y, p) < 0.02
    assert L.ece(y, np.clip(p + 0.3, 0, 1)) > 0.2
    score = rng.gamma(2.0, 100.0, 5000)
    y2 = rng.random(5000) < 1 / (1 + np.exp(-(2.0 * np.arcsinh(score / 100.0) - 3.0)))
    a, b = L.platt(score, y2, iters=3000)
    assert a > 0.5 and b < 0


def test_with_history_appends_the_running_mean():
    rng = np.random.default_rng(1)
    h = rng.normal(size=(5, L.N_INPUTS)).astype(np.float32)
    x = L.with_history(h)
    assert x.shape == (5, L.N_MODEL_INPUTS) and len(L.MODEL_INPUT_NAMES) == L.N_MODEL_INPUTS
    np.testing.assert_allclose(x[:, :L.N_INPUTS], h)
    np.testing.assert_allclose(x[3, L.N_INPUTS:], h[:4].mean(axis=0), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="step vectors"):
        L.with_history(h[:, :3])


def test_follow_up_target_follows_the_incident_record():
    from vehicles.signals import FleetConfig, simulate_fleet

    vs = simulate_fleet(FleetConfig(n_vehicles=40, seed=9))
    t = np.array([L.follow_up_target(v, 200, 10) for v in vs])
    assert np.all((t > 0) & (t < 1))
    assert np.corrcoef(t, [v.risk for v in vs])[0, 1] > 0.5  # the record reflects the latent risk
    with pytest.raises(ValueError, match="target"):
        L.LargeConfig(target="oracle")


def test_bootstrap_over_vehicles_brackets_the_difference():
    rng = np.random.default_rng(2)
    groups = []
    for _ in range(60):
        r = rng.random()
        y = (rng.random(20) < r).astype(int)
        groups.append((y, np.full(20, r) + rng.normal(0, 0.05, 20), rng.random(20)))  # model knows r, baseline not
    b = L.bootstrap_auroc(groups, n=300)
    lo, hi = b["auroc_gain_ci95"]
    assert 0 < lo < hi and b["p_risk_beats_baseline"] == 1.0
    assert b["baseline_auroc_ci95"][0] < 0.5 < b["baseline_auroc_ci95"][1]
