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
